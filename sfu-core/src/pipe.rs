//! Pipes: one producer's packets carried from the worker that receives them to other workers
//! of the same process, so that a room can have subscribers on more than one worker (core).
//!
//! The source worker keeps the publisher's transport, SRTP, NACK toward the publisher and the
//! receive statistics. For every other worker that has subscribers of the producer, that
//! worker holds a *copy*: a producer with the same parameters but no transport
//! ([`crate::Worker::create_pipe_producer`]), fed by [`PipeMessage::Packet`]s that carry the
//! decrypted packet (a shared [`Bytes`], never copied), its parsed header (retransmissions
//! already turned back into the media packet they repair) and which stream it belongs to. The
//! copy's consumers then work exactly as local ones: their own headers, keys, histories and
//! layer choices. Keyframe requests go back the other way, and closing either end tells the
//! other.
//!
//! This module only defines what crosses between workers. The worker produces and consumes
//! the messages ([`crate::Worker::poll_pipe`], [`crate::Worker::handle_pipe_message`]); the
//! driver ([`crate::driver`]) carries them between threads in batches. Workers are named by
//! their index in the embedder's pool: the worker itself never learns its own index, the
//! driver stamps it on what it forwards.

use bytes::Bytes;

use crate::ProducerId;
use crate::rtp_packet::RtpHeader;

/// One end of a pipe: a producer on a worker, the worker named by its index in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PipeEndpoint {
    /// The worker's index in the pool.
    pub worker: usize,
    /// The producer on that worker.
    pub producer: ProducerId,
}

/// Where a copy's packets come from ([`crate::Worker::create_pipe_producer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeSource {
    /// The source producer and its worker.
    pub endpoint: PipeEndpoint,
    /// The publisher's transport on the source worker: copies of one publisher's tracks share
    /// it, so that the destination worker can tell which tracks belong together (the active
    /// speaker's video is favoured by congestion control).
    pub publisher: crate::TransportId,
}

/// A forwarded packet on its way to a copy.
#[derive(Debug, Clone)]
pub struct PipedPacket {
    /// The copy it is for (on the receiving worker).
    pub producer: ProducerId,
    /// Which of the producer's streams (encodings) it belongs to.
    pub stream: usize,
    /// Its header as forwarded: a retransmission has already been turned back into the media
    /// packet it repairs (sequence number, payload type, SSRC). Extension offsets point into
    /// `packet`.
    pub header: RtpHeader,
    /// The decrypted packet as it arrived (shared with the source worker's histories).
    pub packet: Bytes,
    /// Where the media payload starts in `packet`.
    pub payload_start: usize,
    /// Where it ends (padding excluded).
    pub payload_end: usize,
}

/// What one worker tells another about a pipe.
#[derive(Debug, Clone)]
pub enum PipeMessage {
    /// Source → copy: a packet to forward.
    Packet(PipedPacket),
    /// Source → copy: the source producer closed; close the copy (and its consumers).
    SourceClosed {
        /// The copy.
        producer: ProducerId,
    },
    /// Copy → source: the copy's subscribers need a keyframe of one stream (`Some(index)`) or
    /// of every stream.
    KeyframeRequest {
        /// The source producer.
        producer: ProducerId,
        /// The stream, or all.
        stream: Option<usize>,
    },
    /// Copy → source: the copy closed; stop sending to it.
    CopyClosed {
        /// The source producer.
        producer: ProducerId,
        /// The copy that closed.
        copy: ProducerId,
    },
}

/// A message the worker queued for another worker ([`crate::Worker::poll_pipe`]).
#[derive(Debug, Clone)]
pub struct PipeOutput {
    /// The receiving worker's index.
    pub worker: usize,
    /// The message.
    pub message: PipeMessage,
}

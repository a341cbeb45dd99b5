//! # sfu-core: the media plane of a WebRTC SFU
//!
//! Browsers publish audio and video over WebRTC; this crate receives it on one UDP port and
//! forwards every packet to every subscriber without decoding it.
//!
//! ## The objects (mediasoup's vocabulary)
//!
//! * [`Worker`] — everything of one thread: routers, transports, producers, consumers. A
//!   sans-I/O state machine; [`driver::WorkerHandle`] runs one on a thread with a UDP socket.
//! * [`router::Router`] — one room's media on a worker.
//! * [`webrtc_transport::WebRtcTransport`] — one peer's ICE-lite + DTLS + SRTP session. All
//!   transports of a worker share its UDP port: STUN is demultiplexed by ICE ufrag, the rest
//!   by the 5-tuple ICE validated.
//! * [`producer::Producer`] — a track a peer publishes.
//! * [`consumer::Consumer`] — one subscriber's copy of a producer, with its own SSRC,
//!   sequence numbers, timestamps, payload types and header-extension ids.
//!
//! ## A tour: forwarding between two peers
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use sfu_core::driver::WorkerHandle;
//! use sfu_core::{RtpCapabilities, RtpParameters, WebRtcTransportOptions, WorkerConfig};
//!
//! # fn doc(publisher_fp: sfu_core::Fingerprint, subscriber_fp: sfu_core::Fingerprint,
//! #        published: RtpParameters, subscriber_caps: RtpCapabilities) -> Result<(), Box<dyn std::error::Error>> {
//! let bind: SocketAddr = "127.0.0.1:0".parse()?;
//! let (worker, mut events) = WorkerHandle::spawn(bind, WorkerConfig::default())?;
//! // Control calls are closures run on the worker thread; `now` is the driver's clock.
//! let (publisher, subscriber, consumer_parameters) = worker.call_blocking(move |w, now| {
//!     let room = w.create_router();
//!     let options = |fp| WebRtcTransportOptions { remote_fingerprint: Some(fp), ..Default::default() };
//!     // Each info carries ICE ufrag/pwd, our fingerprint and candidates: signal them to the peer.
//!     let publisher = w.create_webrtc_transport(now, room, options(publisher_fp))?;
//!     let subscriber = w.create_webrtc_transport(now, room, options(subscriber_fp))?;
//!     let producer = w.produce(publisher.id, published)?;
//!     let (_consumer, parameters) = w.consume(now, subscriber.id, producer, &subscriber_caps, Some("0".into()))?;
//!     Ok::<_, sfu_core::WorkerError>((publisher, subscriber, parameters))
//! })??;
//! // Describe `consumer_parameters` (SSRC, payload types, extension ids) to the subscriber,
//! // then watch `events` for `TransportConnected` / `TransportClosed`.
//! # let _ = (publisher, subscriber, consumer_parameters, events.try_recv());
//! # Ok(()) }
//! ```
//!
//! ## How time works
//!
//! No state machine here reads a clock: every input takes `now`, and
//! [`Worker::poll_timeout`] says when [`Worker::handle_timeout`] is next due. Tests drive a
//! whole room on virtual time; only [`driver`] uses `Instant::now()` and sockets.
//!
//! ## The packet path
//!
//! A datagram is demultiplexed by its first byte (RFC 7983). STUN goes to the ICE-lite agent
//! of the transport its ufrag names; DTLS and SRTP are accepted only from a tuple that agent
//! has validated. SRTP is authenticated and decrypted in place before any per-SSRC state is
//! created; the RTP header is parsed as a view; the payload is frozen into shared `Bytes`.
//! Each consumer writes its rewritten header and the payload into a pooled egress buffer and
//! the subscriber's SRTP context protects it in place: one copy per subscriber, no
//! allocation at steady state. See `docs/architecture.md`.

#![warn(missing_docs)]

pub mod active_speaker;
pub mod allocator;
pub mod bandwidth_estimator;
pub mod bitrate_meter;
pub mod buffer_pool;
pub mod client_hello;
pub mod codecs;
pub mod congestion_controller;
pub mod consumer;
pub mod driver;
pub mod drops;
pub mod dtls;
#[cfg(any(test, feature = "sim"))]
pub mod fuzzing;
pub mod ice_lite;
pub mod layer_selector;
pub mod nack_generator;
pub mod pacer;
pub mod packet_cache;
pub mod pipe;
pub mod producer;
pub mod residence_time;
pub mod retransmission_buffer;
pub mod router;
pub mod rtcp;
pub mod rtp_packet;
pub mod rtp_parameters;
pub mod seq_manager;
#[cfg(any(test, feature = "sim"))]
pub mod sim_peer;
pub mod srtp;
pub mod stun;
pub mod twcc;
pub mod udp_socket;
pub mod webrtc_transport;
pub mod worker;
pub mod worker_pool;

pub use drops::{DropCounters, DropReason};
pub use dtls::Fingerprint;
pub use rtp_parameters::{
    MediaKind, RtcpFeedback, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters,
    RtpHeaderExtension, RtpParameters,
};
pub use srtp::SrtpProfile;
pub use webrtc_transport::{TransportState, WebRtcTransportInfo, WebRtcTransportOptions};
pub use worker::{CloseReason, Transmit, Worker, WorkerConfig, WorkerError, WorkerEvent};

macro_rules! ids {
    ($($name:ident: $doc:literal),*) => {$(
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);
    )*};
}

ids!(
    RouterId: "Identifies a router within its worker.",
    TransportId: "Identifies a transport within its worker.",
    ProducerId: "Identifies a producer within its worker.",
    ConsumerId: "Identifies a consumer within its worker."
);

//! A consumer: one subscriber's copy of one producer.
//!
//! The consumer owns what makes the subscriber's stream its own: SSRC, continuous sequence
//! numbers and timestamps ([`crate::seq_manager`]), the subscriber's payload types and
//! header-extension ids, and the counters its sender reports need. Writing a packet for the
//! subscriber is the one copy on the packet path: header and shared payload go into the
//! egress buffer, which the transport then protects in place. It never touches keys or sockets.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::codecs::vp8::{Vp8Descriptor, Vp8Rewriter, Vp8Rewritten};
use crate::codecs::{Codec, PacketInfo};
use crate::layer_selector::{Decision, LayerSelector};
use crate::producer::ProducerStream;
use crate::retransmission_buffer::{RetransmissionBuffer, StoredPacket};
use crate::rtcp::ReceptionReport;
use crate::rtp_packet::{OutgoingHeader, RtpHeader, write_header};
use crate::rtp_parameters::{MediaKind, RtpParameters, extension_uri};
use crate::seq_manager::{SeqRewriter, TimestampRewriter};
use crate::{ConsumerId, ProducerId, TransportId};

/// Send-side counters for sender reports and stats.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendStats {
    /// Packets sent.
    pub packets: u64,
    /// Payload octets sent.
    pub bytes: u64,
    /// The last RTP timestamp sent and when.
    pub last_timestamp: Option<(u32, Instant)>,
    /// The subscriber's latest report about this stream.
    pub last_report: Option<ReceptionReport>,
    /// Round-trip time to the subscriber, from its reports.
    pub rtt: Option<Duration>,
    /// Packets retransmitted after a NACK.
    pub retransmitted: u64,
}

/// The top simulcast layer's height assumed before any keyframe told the real one.
const ASSUMED_TOP_HEIGHT: u16 = 720;

/// The mid header-extension element the subscriber gets, if it negotiated the extension.
fn mid_element(id: Option<u8>, parameters: &RtpParameters) -> Option<(u8, &[u8])> {
    Some((id?, parameters.mid.as_deref()?.as_bytes()))
}

/// The value of the transport-wide sequence number element until the transport stamps it at
/// send time (the pacer decides the send order).
const TRANSPORT_CC_PLACEHOLDER: [u8; 2] = [0, 0];

/// The elements the SFU writes itself on this leg: the subscriber's mid and, with congestion
/// control, a transport-wide sequence number to be stamped at send time.
fn own_elements(mid: Option<(u8, &[u8])>, transport_cc: Option<u8>) -> ([(u8, &[u8]); 2], usize) {
    let mut elements: [(u8, &[u8]); 2] = [(0, &[]); 2];
    let mut n = 0;
    for e in mid
        .into_iter()
        .chain(transport_cc.map(|id| (id, &TRANSPORT_CC_PLACEHOLDER[..])))
    {
        if let Some(slot) = elements.get_mut(n) {
            *slot = e;
            n += 1;
        }
    }
    (elements, n)
}

/// Padding bytes in one probe padding packet (the RTP padding count is one byte).
pub const MAX_PADDING: usize = 255;

/// Video history: about a second of 2.5 Mbit/s video.
pub(crate) const HISTORY_SLOTS: usize = 512;
pub(crate) const HISTORY_AGE: Duration = Duration::from_secs(1);
/// Assumed round-trip time before the subscriber has reported one.
const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// The RTX stream of a consumer (RFC 4588).
struct RtxStream {
    ssrc: u32,
    seq: SeqRewriter,
    next_input: u16,
}

/// One subscriber's copy of a producer.
pub struct Consumer {
    /// Its id.
    pub id: ConsumerId,
    /// The subscriber's transport.
    pub transport: TransportId,
    /// The producer it forwards.
    pub producer: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// What the subscriber receives (payload types, ids, SSRC).
    pub parameters: RtpParameters,
    /// The consumer's SSRC.
    pub ssrc: u32,
    /// Whether forwarding is paused.
    pub paused: bool,
    /// Clock rate of the forwarded codec.
    pub clock_rate: u32,
    /// Counters.
    pub stats: SendStats,
    payload_types: [u8; 128],
    extension_ids: [u8; 256],
    mid_extension: Option<u8>,
    /// The subscriber's transport-wide sequence number extension: congestion control is on.
    transport_cc_extension: Option<u8>,
    seq: SeqRewriter,
    timestamps: TimestampRewriter,
    history: Option<RetransmissionBuffer>,
    rtx: Option<RtxStream>,
    /// Video: which stream and temporal layer go out (simulcast, and keyframe-gated resume).
    selector: Option<LayerSelector>,
    /// VP8: picture ids kept continuous across switches and dropped frames.
    vp8: Option<Vp8Rewriter>,
    /// What the subscriber asked for.
    pub preferences: ConsumerPreferences,
    /// The highest simulcast stream the subscriber's bandwidth allows (congestion control's
    /// allocation); `None`: no limit.
    pub allowed_stream: Option<usize>,
    /// Video paused because the subscriber's bandwidth does not fit even its lowest layer.
    pub congestion_paused: bool,
}

/// What a subscriber wants of one video track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerPreferences {
    /// Highest simulcast stream (0 = lowest); `None`: the best available.
    pub max_spatial: Option<usize>,
    /// Highest temporal layer; `None`: all.
    pub max_temporal: Option<u8>,
    /// The height the video is shown at, in pixels; the stream closest above it is chosen.
    pub max_height: Option<u16>,
}

/// Marks "no mapping" in the lookup tables.
const UNMAPPED: u8 = 0xff;

impl Consumer {
    /// Creates a consumer. `producer_parameters` are the publisher's; `parameters` the
    /// subscriber's as derived by [`RtpParameters::for_consumer`]. `initial_sequence` and
    /// `timestamp_offset` should be random.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ConsumerId,
        transport: TransportId,
        producer: ProducerId,
        kind: MediaKind,
        producer_parameters: &RtpParameters,
        parameters: RtpParameters,
        initial_sequence: u16,
        timestamp_offset: u32,
    ) -> Self {
        let mut payload_types = [UNMAPPED; 128];
        for pc in &producer_parameters.codecs {
            if let Some(cc) = parameters.codecs.iter().find(|cc| cc.matches(pc))
                && let Some(slot) = payload_types.get_mut(usize::from(pc.payload_type))
            {
                *slot = cc.payload_type;
            }
        }
        let mut extension_ids = [UNMAPPED; 256];
        for pe in &producer_parameters.header_extensions {
            // The mid and the transport-wide sequence number are per leg: the subscriber's own
            // values are written instead.
            if pe.uri == extension_uri::MID || pe.uri == extension_uri::TRANSPORT_CC {
                continue;
            }
            if let Some(id) = parameters.extension_id(&pe.uri)
                && let Some(slot) = extension_ids.get_mut(usize::from(pe.id))
            {
                *slot = id;
            }
        }
        let mid_extension = parameters
            .mid
            .as_ref()
            .and(parameters.extension_id(extension_uri::MID));
        let transport_cc_extension = parameters.extension_id(extension_uri::TRANSPORT_CC);
        let ssrc = parameters
            .encodings
            .first()
            .and_then(|e| e.ssrc)
            .unwrap_or(0);
        let clock_rate = parameters.codecs.first().map_or(90_000, |c| c.clock_rate);
        // Several source streams (simulcast) need a selector, and VP8 picture ids made continuous
        // across switches. A single stream is forwarded as it comes.
        let simulcast = kind == MediaKind::Video && producer_parameters.encodings.len() > 1;
        let vp8 = (simulcast
            && Codec::from_mime_type(
                parameters
                    .codecs
                    .first()
                    .map_or("", |c| c.mime_type.as_str()),
            ) == Codec::Vp8)
            .then(Vp8Rewriter::new);
        // NACKs are answered only where the subscriber negotiated them.
        let nack = parameters.codecs.iter().any(|c| c.has_feedback("nack", ""));
        let history = nack.then(|| RetransmissionBuffer::new(HISTORY_SLOTS, HISTORY_AGE));
        let rtx = parameters
            .encodings
            .first()
            .and_then(|e| e.rtx_ssrc)
            .filter(|_| {
                nack && parameters
                    .codecs
                    .iter()
                    .any(|c| c.rtx_payload_type.is_some())
            })
            .map(|ssrc| RtxStream {
                ssrc,
                seq: SeqRewriter::new(initial_sequence.wrapping_add(0x8000)),
                next_input: 0,
            });
        Self {
            id,
            transport,
            producer,
            kind,
            parameters,
            ssrc,
            paused: false,
            clock_rate,
            stats: SendStats::default(),
            payload_types,
            extension_ids,
            mid_extension,
            transport_cc_extension,
            seq: SeqRewriter::new(initial_sequence),
            timestamps: TimestampRewriter::new(timestamp_offset),
            history,
            rtx,
            selector: simulcast.then(LayerSelector::new),
            vp8,
            preferences: ConsumerPreferences::default(),
            allowed_stream: None,
            congestion_paused: false,
        }
    }

    /// The subscriber's transport-wide sequence number extension id, when it negotiated one
    /// (and so gets the SFU's congestion control).
    pub fn transport_cc_extension(&self) -> Option<u8> {
        self.transport_cc_extension
    }

    /// Where the transport-wide sequence number goes in a packet this consumer wrote (before
    /// SRTP protection), if it carries one.
    pub fn transport_cc_offset(&self, packet: &[u8]) -> Option<usize> {
        let id = self.transport_cc_extension?;
        let header = RtpHeader::parse(packet).ok()?;
        let e = header.extensions().iter().find(|e| e.id == id)?;
        (e.len == 2).then_some(usize::from(e.offset))
    }

    /// The stream this consumer should receive given its preferences and which of the
    /// producer's `streams` are active (simulcast streams are ordered lowest quality first).
    /// A single-stream producer always gives stream 0.
    pub fn choose_stream(&self, streams: &[ProducerStream], now: Instant) -> Option<usize> {
        self.choose_stream_within(streams, now, self.allowed_stream)
    }

    /// The stream the subscriber's preferences alone give (the most congestion control may
    /// allow).
    pub fn preferred_stream(&self, streams: &[ProducerStream], now: Instant) -> Option<usize> {
        self.choose_stream_within(streams, now, None)
    }

    fn choose_stream_within(
        &self,
        streams: &[ProducerStream],
        now: Instant,
        allowed: Option<usize>,
    ) -> Option<usize> {
        if streams.len() <= 1 {
            return Some(0);
        }
        let active: Vec<usize> = (0..streams.len())
            .filter(|&i| streams.get(i).is_some_and(|s| s.is_active(now)))
            .collect();
        let lowest = *active.first()?;
        let mut limit = self
            .preferences
            .max_spatial
            .unwrap_or(usize::MAX)
            .min(allowed.unwrap_or(usize::MAX));
        if let Some(wanted) = self.preferences.max_height {
            // Heights from keyframes where known; otherwise assume each stream halves the next.
            // No size known yet (a codec whose keyframes do not tell, or none seen): assume the
            // usual 720p top layer, each lower one half the height.
            let top = streams
                .iter()
                .rev()
                .find_map(|s| s.resolution.map(|(_, h)| (h, streams.len())))
                .or(Some((ASSUMED_TOP_HEIGHT, streams.len())));
            let height = |i: usize| -> Option<u32> {
                if let Some((_, h)) = streams.get(i).and_then(|s| s.resolution) {
                    return Some(u32::from(h));
                }
                let (top_h, _) = top?;
                let steps = streams.len().saturating_sub(1 + i) as u32;
                Some(u32::from(top_h) >> steps.min(31))
            };
            let needed = u32::from(wanted) * 9 / 10;
            let enough = (0..streams.len()).find(|&i| height(i).is_some_and(|h| h >= needed));
            if let Some(i) = enough {
                limit = limit.min(i);
            } else if top.is_some() {
                limit = limit.min(streams.len() - 1);
            }
        }
        Some(
            active
                .iter()
                .copied()
                .filter(|&i| i <= limit)
                .max()
                .unwrap_or(lowest),
        )
    }

    /// Sets the stream to receive; returns true when a keyframe of it is needed.
    pub fn set_target_stream(&mut self, stream: Option<usize>) -> bool {
        match &mut self.selector {
            Some(selector) if selector.target() != stream => selector.set_target(stream),
            Some(selector) => selector.needs_keyframe(),
            None => false,
        }
    }

    /// The stream wanted and not yet reached (a keyframe of it is awaited).
    pub fn awaited_stream(&self) -> Option<usize> {
        self.selector
            .as_ref()
            .filter(|s| s.needs_keyframe())
            .and_then(LayerSelector::target)
    }

    /// Stops forwarding the current stream at once: nothing goes out until a keyframe of the
    /// target (congestion control leaving a stream the link cannot carry).
    pub fn cut_to_target(&mut self) {
        if let Some(selector) = &mut self.selector {
            selector.reset();
        }
    }

    /// Whether this consumer chooses among several streams.
    pub fn has_selector(&self) -> bool {
        self.selector.is_some()
    }

    /// The stream being forwarded (0 for audio and single-stream video).
    pub fn current_stream(&self) -> Option<usize> {
        match &self.selector {
            Some(s) => s.current(),
            None => Some(0),
        }
    }

    /// Applies new preferences (the caller then re-chooses the stream).
    pub fn set_preferences(&mut self, preferences: ConsumerPreferences) {
        self.preferences = preferences;
        if let Some(selector) = &mut self.selector {
            selector.set_max_temporal(
                preferences
                    .max_temporal
                    .unwrap_or(crate::layer_selector::ALL_TEMPORAL_LAYERS),
            );
        }
    }

    /// Whether it keeps a retransmission history (the subscriber negotiated NACK): its
    /// producer's streams must then keep their packets ([`crate::packet_cache`]).
    pub fn keeps_history(&self) -> bool {
        self.history.is_some()
    }

    /// Whether its packets' payload is sent as it arrived (no VP8 ids rewritten).
    pub fn sends_payload_unchanged(&self) -> bool {
        self.vp8.is_none()
    }

    /// The RTX SSRC, if the subscriber negotiated RTX.
    pub fn rtx_ssrc(&self) -> Option<u32> {
        self.rtx.as_ref().map(|r| r.ssrc)
    }

    /// Writes the subscriber's version of a packet into `out`: rewritten header, then the
    /// payload. With `fuse`, when the payload goes out unchanged
    /// ([`Self::sends_payload_unchanged`]), only the header is written: the caller encrypts the
    /// payload from where it lies ([`crate::srtp::SrtpContext::protect_rtp_from`]). Returns
    /// `(header_len, srtp_roc)`, or `None` if the subscriber cannot take the packet's payload
    /// type.
    #[allow(clippy::too_many_arguments)]
    pub fn write_packet(
        &mut self,
        now: Instant,
        stream: usize,
        info: Option<&PacketInfo>,
        header: &RtpHeader,
        packet: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
        fuse: bool,
    ) -> Option<(usize, u32)> {
        let payload_type = *self.payload_types.get(usize::from(header.payload_type))?;
        if payload_type == UNMAPPED {
            return None;
        }
        let mut switched = false;
        if let Some(selector) = &mut self.selector {
            match selector.on_packet(stream, info) {
                Decision::Ignore => return None,
                Decision::DropInStream => {
                    self.seq.skip(header.sequence_number);
                    if let (Some(vp8), Some(d)) = (&mut self.vp8, Vp8Descriptor::parse(payload)) {
                        vp8.drop_frame(&d);
                    }
                    return None;
                }
                Decision::Forward { switched: s } => switched = s,
            }
        }
        if switched {
            // A new source: sequence numbers continue after the last sent; the timestamp line
            // continues too, advanced by the time since the last packet.
            self.seq.rebase();
            let next = match self.stats.last_timestamp {
                Some((ts, at)) => {
                    let elapsed = now.saturating_duration_since(at).as_secs_f64()
                        * f64::from(self.clock_rate);
                    ts.wrapping_add((elapsed as u32).max(1))
                }
                None => self.timestamps.rewrite(header.timestamp),
            };
            self.timestamps.align(header.timestamp, next);
        }
        // Kept so that a packet refused below gives its sequence number back (no gap).
        let seq_before = self.vp8.is_some().then(|| self.seq.clone());
        let (sequence_number, roc) = self.seq.rewrite(header.sequence_number);
        if roc == u32::MAX {
            // Older than the first packet the subscriber got, across a wrap of the sequence
            // number: its SRTP index would be negative, so no receiver could decrypt it.
            return None;
        }
        let timestamp = self.timestamps.rewrite(header.timestamp);
        let outgoing = OutgoingHeader {
            marker: header.marker,
            payload_type,
            sequence_number,
            timestamp,
            ssrc: self.ssrc,
        };
        let ids = &self.extension_ids;
        // The subscriber's own mid and transport-wide sequence number, written by the SFU.
        let mid = mid_element(self.mid_extension, &self.parameters);
        let (elements, n) = own_elements(mid, self.transport_cc_extension);
        let extra = elements.get(..n).unwrap_or(&[]);
        let header_len = write_header(
            out,
            &outgoing,
            header,
            packet,
            |id| ids.get(usize::from(id)).copied().filter(|&v| v != UNMAPPED),
            extra,
        );
        if !(fuse && self.vp8.is_none()) {
            out.extend_from_slice(payload);
        }
        let Ok(vp8_ids) = self.rewrite_vp8(out, header_len, switched) else {
            // The rewriter cannot place this packet (too old, or its frame was dropped): it is
            // not sent, and the number it took is closed up like any dropped packet's.
            if let Some(before) = seq_before {
                self.seq = before;
                self.seq.skip(header.sequence_number);
            }
            return None;
        };
        self.stats.packets += 1;
        self.stats.bytes += payload.len() as u64;
        self.stats.last_timestamp = Some((timestamp, now));
        if let Some(history) = &mut self.history {
            history.insert(StoredPacket {
                stream: u8::try_from(stream).unwrap_or(u8::MAX),
                source_sequence: header.sequence_number,
                vp8_ids,
                first_sent_at: now,
                sequence_number,
                roc,
                timestamp,
                payload_type,
                marker: header.marker,
                sent_at: now,
                resends: 0,
            });
        }
        Some((header_len, roc))
    }

    /// Rebuilds the packet the subscriber NACKed as `sequence_number` into `out`: on the RTX
    /// stream when negotiated (RFC 4588: RTX SSRC and sequence, original sequence number
    /// prepended), else as it was. Returns `(header_len, srtp_roc)`, or `None` if the packet
    /// is gone, too old, resent too often, or was resent less than an RTT ago.
    pub fn write_retransmission(
        &mut self,
        now: Instant,
        sequence_number: u16,
        streams: &[ProducerStream],
        out: &mut Vec<u8>,
    ) -> Option<(usize, u32)> {
        let rtt = self.stats.rtt.unwrap_or(DEFAULT_RTT);
        let stored = self
            .history
            .as_mut()?
            .take_for_resend(sequence_number, now, rtt)?;
        // The packet itself is the producer stream's (gone from there: nothing to resend).
        let cached = streams
            .get(usize::from(stored.stream))?
            .cache
            .as_ref()?
            .get(stored.source_sequence, now)?;
        let source = RtpHeader::parse(cached.packet).ok()?;
        let payload = cached.payload;
        let ids = &self.extension_ids;
        // The subscriber's own mid and transport-wide sequence number, written by the SFU.
        let mid = mid_element(self.mid_extension, &self.parameters);
        let (elements, n) = own_elements(mid, self.transport_cc_extension);
        let extra = elements.get(..n).unwrap_or(&[]);
        let map = |id: u8| ids.get(usize::from(id)).copied().filter(|&v| v != UNMAPPED);
        let rtx_payload_type = self
            .parameters
            .codecs
            .iter()
            .find(|c| c.payload_type == stored.payload_type)
            .and_then(|c| c.rtx_payload_type);
        let result = match (&mut self.rtx, rtx_payload_type) {
            (Some(rtx), Some(rtx_pt)) => {
                let input = rtx.next_input;
                rtx.next_input = rtx.next_input.wrapping_add(1);
                let (rtx_seq, roc) = rtx.seq.rewrite(input);
                let outgoing = OutgoingHeader {
                    marker: stored.marker,
                    payload_type: rtx_pt,
                    sequence_number: rtx_seq,
                    timestamp: stored.timestamp,
                    ssrc: rtx.ssrc,
                };
                let header_len = write_header(out, &outgoing, &source, cached.packet, map, extra);
                out.extend_from_slice(&stored.sequence_number.to_be_bytes());
                out.extend_from_slice(payload);
                (header_len, roc, header_len + 2)
            }
            _ => {
                let outgoing = OutgoingHeader {
                    marker: stored.marker,
                    payload_type: stored.payload_type,
                    sequence_number: stored.sequence_number,
                    timestamp: stored.timestamp,
                    ssrc: self.ssrc,
                };
                let header_len = write_header(out, &outgoing, &source, cached.packet, map, extra);
                out.extend_from_slice(payload);
                (header_len, stored.roc, header_len)
            }
        };
        let (header_len, roc, payload_at) = result;
        // The payload is the source's: give it the ids it was first sent with.
        if let Some(ids) = &stored.vp8_ids
            && let Some(body) = out.get_mut(payload_at..)
            && let Some(descriptor) = Vp8Descriptor::parse(body)
        {
            crate::codecs::vp8::write_ids(body, &descriptor, ids);
        }
        self.stats.retransmitted += 1;
        Some((header_len, roc))
    }

    /// Writes a padding-only packet of about `size` bytes on the RTX stream (what browsers send
    /// to probe bandwidth: RTX header, no payload, RTP padding), for a probe of the subscriber's
    /// bandwidth. Returns `(header_len, srtp_roc)`, or `None` without RTX or before the first
    /// media packet.
    pub fn write_padding(&mut self, size: usize, out: &mut Vec<u8>) -> Option<(usize, u32)> {
        let (timestamp, _) = self.stats.last_timestamp?;
        let rtx_payload_type = self.parameters.codecs.first()?.rtx_payload_type?;
        let rtx = self.rtx.as_mut()?;
        let input = rtx.next_input;
        rtx.next_input = rtx.next_input.wrapping_add(1);
        let (sequence_number, roc) = rtx.seq.rewrite(input);
        let outgoing = OutgoingHeader {
            marker: false,
            payload_type: rtx_payload_type,
            sequence_number,
            timestamp,
            ssrc: rtx.ssrc,
        };
        let (elements, n) = own_elements(None, self.transport_cc_extension);
        let extra = elements.get(..n).unwrap_or(&[]);
        let empty = RtpHeader::default();
        let header_len = write_header(out, &outgoing, &empty, &[], |_| None, extra);
        if let Some(b0) = out.first_mut() {
            *b0 |= 0x20;
        }
        let padding = size.saturating_sub(header_len).clamp(1, MAX_PADDING);
        out.resize(header_len + padding - 1, 0);
        out.push(padding as u8);
        Some((header_len, roc))
    }

    /// The RTP timestamp matching `now` on this consumer's timeline, extrapolated from the
    /// last packet sent (for sender reports).
    pub fn rtp_time_at(&self, now: Instant) -> Option<u32> {
        let (ts, at) = self.stats.last_timestamp?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        Some(ts.wrapping_add((elapsed * f64::from(self.clock_rate)) as u32))
    }

    /// Rewrites the VP8 picture id and TL0PICIDX of the payload just written at
    /// `out[header_len..]`; returns the ids written (`None` when the consumer does not rewrite
    /// or the packet has none), or `Err` if the packet must not be sent.
    fn rewrite_vp8(
        &mut self,
        out: &mut [u8],
        header_len: usize,
        switched: bool,
    ) -> Result<Option<Vp8Rewritten>, ()> {
        let Some(vp8) = &mut self.vp8 else {
            return Ok(None);
        };
        let Some(body) = out.get_mut(header_len..) else {
            return Err(());
        };
        let Some(descriptor) = Vp8Descriptor::parse(body) else {
            return Ok(None);
        };
        vp8.rewrite(body, &descriptor, switched)
            .map(Some)
            .map_err(|_| ())
    }

    /// After a pause: the next packet continues the output line regardless of its input
    /// numbering, and video waits for a keyframe (the decoder lost its references).
    pub fn rebase(&mut self) {
        self.seq.rebase();
        if let Some(selector) = &mut self.selector {
            selector.reset();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::rtp_parameters::{
        RtpCapabilities, RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtension,
    };
    use bytes::Bytes;

    fn codec(pt: u8) -> RtpCodecParameters {
        RtpCodecParameters {
            mime_type: "audio/opus".into(),
            payload_type: pt,
            clock_rate: 48_000,
            channels: Some(2),
            parameters: vec![],
            rtcp_feedback: vec![],
            rtx_payload_type: None,
        }
    }

    #[test]
    fn writes_subscriber_ssrc_pt_mid_and_mapped_extensions() {
        let producer = RtpParameters {
            mid: Some("0".into()),
            codecs: vec![codec(111)],
            header_extensions: vec![
                RtpHeaderExtension {
                    uri: extension_uri::MID.into(),
                    id: 4,
                },
                RtpHeaderExtension {
                    uri: extension_uri::AUDIO_LEVEL.into(),
                    id: 1,
                },
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(1111),
                ..Default::default()
            }],
            cname: None,
        };
        let caps = RtpCapabilities {
            codecs: vec![codec(109)],
            header_extensions: vec![
                RtpHeaderExtension {
                    uri: extension_uri::MID.into(),
                    id: 9,
                },
                RtpHeaderExtension {
                    uri: extension_uri::AUDIO_LEVEL.into(),
                    id: 10,
                },
            ],
        };
        let params = producer
            .for_consumer(&caps, Some("7".into()), 2222, 3333)
            .unwrap();
        let mut c = Consumer::new(
            ConsumerId(1),
            TransportId(1),
            ProducerId(1),
            MediaKind::Audio,
            &producer,
            params,
            100,
            1000,
        );
        // Publisher packet: pt 111, mid "0" (id 4), audio level 0x85 (id 1).
        let mut p = vec![0x90, 111, 0, 5, 0, 0, 0, 10, 0, 0, 0x04, 0x57];
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x40, b'0', 0x10, 0x85]);
        p.extend_from_slice(b"opus");
        let p = Bytes::from(p);
        let h = RtpHeader::parse(&p).unwrap();
        let mut out = Vec::new();
        let (hl, roc) = c
            .write_packet(Instant::now(), 0, None, &h, &p, b"opus", &mut out, false)
            .unwrap();
        let o = RtpHeader::parse(&out).unwrap();
        assert_eq!(o.header_len, hl);
        assert_eq!(roc, 0);
        assert_eq!(
            (o.ssrc, o.payload_type, o.sequence_number, o.timestamp),
            (2222, 109, 100, 1010)
        );
        assert_eq!(
            o.extension(&out, 9),
            Some(&b"7"[..]),
            "the subscriber's mid"
        );
        assert_eq!(o.extension(&out, 10), Some(&[0x85][..]));
        assert_eq!(o.extension(&out, 4), None);
        assert_eq!(&out[hl..], b"opus");
        // An undeclared payload type for the subscriber is not written.
        let mut p = p.to_vec();
        p[1] = 96;
        let p = Bytes::from(p);
        let h = RtpHeader::parse(&p).unwrap();
        assert!(
            c.write_packet(Instant::now(), 0, None, &h, &p, b"x", &mut out, false)
                .is_none()
        );
        // Reordered before the first packet (out 100): 50 before is sent on ROC 0…
        let at = |input: u16| {
            let mut q = p.to_vec();
            q[1] = 111;
            q[2..4].copy_from_slice(&input.to_be_bytes());
            Bytes::from(q)
        };
        let q = at(5u16.wrapping_sub(50));
        let h = RtpHeader::parse(&q).unwrap();
        let (_, roc) = c
            .write_packet(Instant::now(), 0, None, &h, &q, b"opus", &mut out, false)
            .unwrap();
        assert_eq!(
            (RtpHeader::parse(&out).unwrap().sequence_number, roc),
            (50, 0)
        );
        // …but 200 before crosses the wrap and would need SRTP index -1: not sent.
        let q = at(5u16.wrapping_sub(200));
        let h = RtpHeader::parse(&q).unwrap();
        assert!(
            c.write_packet(Instant::now(), 0, None, &h, &q, b"opus", &mut out, false)
                .is_none()
        );
    }

    #[test]
    fn a_packet_the_vp8_rewriter_refuses_leaves_no_sequence_gap() {
        use crate::codecs::vp8::tests::{keyframe_packet, packet};
        let vp8 = RtpCodecParameters {
            mime_type: "video/VP8".into(),
            payload_type: 96,
            clock_rate: 90_000,
            channels: None,
            parameters: vec![],
            rtcp_feedback: vec![],
            rtx_payload_type: None,
        };
        let producer = RtpParameters {
            mid: Some("1".into()),
            codecs: vec![vp8.clone()],
            header_extensions: vec![],
            encodings: ["q", "h", "f"]
                .iter()
                .map(|r| RtpEncodingParameters {
                    rid: Some((*r).into()),
                    ..Default::default()
                })
                .collect(),
            cname: None,
        };
        let caps = RtpCapabilities {
            codecs: vec![vp8],
            header_extensions: vec![],
        };
        let params = producer.for_consumer(&caps, None, 7, 8).unwrap();
        let mut c = Consumer::new(
            ConsumerId(1),
            TransportId(1),
            ProducerId(1),
            MediaKind::Video,
            &producer,
            params,
            500,
            0,
        );
        c.set_target_stream(Some(0));
        let now = Instant::now();
        let mut out = Vec::new();
        let mut send = |c: &mut Consumer, seq: u16, payload: Vec<u8>| {
            let mut p = vec![0x80, 96];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 1]);
            p.extend_from_slice(&payload);
            let p = Bytes::from(p);
            let h = RtpHeader::parse(&p).unwrap();
            let info = crate::codecs::describe(Codec::Vp8, &p[12..]);
            c.write_packet(now, 0, info.as_ref(), &h, &p, &p[12..], &mut out, false)
                .map(|_| RtpHeader::parse(&out).unwrap().sequence_number)
        };
        assert_eq!(
            send(&mut c, 10, keyframe_packet(Some((1000, true)), None, None)),
            Some(500)
        );
        for (i, pid) in (1001..1041u16).enumerate() {
            assert_eq!(
                send(
                    &mut c,
                    11 + i as u16,
                    packet(Some((pid, true)), None, None, &[0x31, 0x10, 0x00])
                ),
                Some(501 + i as u16)
            );
        }
        // In sequence, but its frame is older than the rewriter remembers: refused...
        assert_eq!(
            send(
                &mut c,
                51,
                packet(Some((1001, true)), None, None, &[0x31, 0x10, 0x00])
            ),
            None
        );
        // ...and the next packet takes the number it would have had: no gap.
        assert_eq!(
            send(
                &mut c,
                52,
                packet(Some((1041, true)), None, None, &[0x31, 0x10, 0x00])
            ),
            Some(541)
        );
    }
}

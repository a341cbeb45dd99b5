//! A producer: one incoming track of a publisher, and its RTP streams (one per encoding).
//!
//! The producer recognises its streams (by SSRC, or by mid/rid once a packet has
//! authenticated), keeps reception statistics for the receiver reports sent to the publisher,
//! and throttles keyframe requests so that many subscribers asking at once reach the
//! publisher at most twice a second. It does not send anything itself.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::codecs::Codec;
use crate::codecs::dependency_descriptor::DependencyDescriptorReader;
use crate::nack_generator::NackGenerator;
use crate::rtcp::ReceptionReport;
use crate::rtp_parameters::{MediaKind, RtpParameters};
use crate::seq_manager::extend_sequence;
use crate::{ConsumerId, ProducerId, RouterId, TransportId};

/// Minimum interval between two keyframe requests sent to a publisher for one producer.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Reception statistics of one incoming stream (RFC 3550 §6.4.1, Appendix A.3 and A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    base_sequence: u64,
    highest: Option<u64>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    jitter: f64,
    last_transit: Option<i64>,
    /// Bytes of payload received.
    pub bytes: u64,
    last_sender_report: Option<(u32, Instant)>,
}

impl ReceiveStats {
    /// Records a packet; `arrival` is in the stream's clock-rate units.
    pub fn on_packet(
        &mut self,
        sequence: u16,
        rtp_timestamp: u32,
        arrival: i64,
        payload_len: usize,
    ) {
        let ext = match self.highest {
            None => {
                self.base_sequence = 0x1_0000 | u64::from(sequence);
                self.highest = Some(self.base_sequence);
                self.base_sequence
            }
            Some(h) => {
                let e = extend_sequence(h, sequence);
                if e > h {
                    self.highest = Some(e);
                }
                e
            }
        };
        let _ = ext;
        self.received += 1;
        self.bytes += payload_len as u64;
        let transit = arrival - i64::from(rtp_timestamp);
        if let Some(last) = self.last_transit {
            // Transit differences beyond half the 32-bit range are timestamp jumps, not jitter.
            let d = (transit - last).unsigned_abs() as f64;
            if d < f64::from(u32::MAX / 2) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Records a sender report from the publisher (its NTP time and when it arrived).
    pub fn on_sender_report(&mut self, ntp_time: u64, now: Instant) {
        self.last_sender_report = Some(((ntp_time >> 16) as u32, now));
    }

    /// Builds the report block for this stream and starts a new reporting interval.
    pub fn report(&mut self, ssrc: u32, now: Instant) -> Option<ReceptionReport> {
        let highest = self.highest?;
        let expected = highest - self.base_sequence + 1;
        let lost = expected.saturating_sub(self.received);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sender_report, delay) = match self.last_sender_report {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, (d.as_secs_f64() * 65536.0) as u32)
            }
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc,
            fraction_lost,
            total_lost: lost.min(0x7f_ffff) as u32,
            highest_sequence: (highest - 0x1_0000) as u32,
            jitter: self.jitter as u32,
            last_sender_report,
            delay_since_last_sender_report: delay,
        })
    }

    /// Packets received.
    pub fn packets(&self) -> u64 {
        self.received
    }
}

/// One RTP stream of a producer (an encoding).
#[derive(Debug, Clone)]
pub struct ProducerStream {
    /// The SSRC, once known (signalled, or learned from an authenticated packet).
    pub ssrc: Option<u32>,
    /// The rid, for rid-based simulcast.
    pub rid: Option<String>,
    /// Reception statistics.
    pub stats: ReceiveStats,
    /// The RTX SSRC, once known.
    pub rtx_ssrc: Option<u32>,
    /// Loss detection for NACKs toward the publisher.
    pub nack: NackGenerator,
    /// Keyframe requests for this stream, throttled.
    pub keyframe_requests: KeyframeRequestThrottle,
    /// When the last packet arrived (a stream silent for [`STREAM_INACTIVE_AFTER`] is not
    /// selected for anyone).
    pub last_packet_at: Option<Instant>,
    /// Width and height from the last keyframe, when the codec tells (VP8).
    pub resolution: Option<(u16, u16)>,
    /// The dependency-descriptor structure this stream's packets refer to.
    pub dependency_descriptor: Option<Box<DependencyDescriptorReader>>,
    /// What the stream costs, for the allocator.
    pub bitrate: crate::bitrate_meter::BitrateMeter,
    /// The stream's packets as received, for consumers' retransmissions; kept only once a
    /// consumer that can ask for them exists.
    pub cache: Option<crate::packet_cache::PacketCache>,
}

/// A stream without packets for this long counts as stopped (a publisher dropping a layer).
pub const STREAM_INACTIVE_AFTER: Duration = Duration::from_millis(1500);

impl ProducerStream {
    pub(crate) fn new(ssrc: Option<u32>, rid: Option<String>, rtx_ssrc: Option<u32>) -> Self {
        Self {
            ssrc,
            rid,
            stats: ReceiveStats::default(),
            rtx_ssrc,
            nack: NackGenerator::default(),
            keyframe_requests: KeyframeRequestThrottle::default(),
            last_packet_at: None,
            resolution: None,
            dependency_descriptor: None,
            bitrate: Default::default(),
            cache: None,
        }
    }

    /// Starts keeping the stream's packets for retransmission (a no-op when it already does).
    /// They are kept a little longer than a consumer's history, whose age counts from when
    /// it sent the packet (after any pacing delay), not from when it arrived.
    pub fn keep_packets(&mut self) {
        self.cache.get_or_insert_with(|| {
            crate::packet_cache::PacketCache::new(
                crate::consumer::HISTORY_SLOTS,
                crate::consumer::HISTORY_AGE + std::time::Duration::from_millis(500),
            )
        });
    }

    /// Whether packets arrived recently.
    pub fn is_active(&self, now: Instant) -> bool {
        self.last_packet_at
            .is_some_and(|t| now.saturating_duration_since(t) < STREAM_INACTIVE_AFTER)
    }
}

/// Decides when a keyframe request may go to the publisher.
#[derive(Debug, Clone, Default)]
pub struct KeyframeRequestThrottle {
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeRequestThrottle {
    /// A subscriber asked for a keyframe. Returns true when the request should be sent now;
    /// otherwise it is remembered and [`Self::poll`] releases it when the interval has passed.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now < t + KEYFRAME_REQUEST_INTERVAL => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// A keyframe arrived: a deferred request is no longer needed.
    pub fn on_keyframe(&mut self) {
        self.pending = false;
    }

    /// Whether a deferred request is due now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.next_due().is_some_and(|due| now >= due) {
            self.pending = false;
            self.last_sent = Some(now);
            return true;
        }
        false
    }

    /// When a deferred request becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        if self.pending {
            self.last_sent.map(|t| t + KEYFRAME_REQUEST_INTERVAL)
        } else {
            None
        }
    }
}

/// An incoming track.
pub struct Producer {
    /// Its id.
    pub id: ProducerId,
    /// The publisher's transport.
    pub transport: TransportId,
    /// The router it belongs to.
    pub router: RouterId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The parameters the publisher sends with.
    pub parameters: RtpParameters,
    /// One stream per encoding.
    pub streams: Vec<ProducerStream>,
    /// Consumers forwarding this producer.
    pub consumers: Vec<ConsumerId>,
    /// The codec of each payload type (for reading payloads: keyframes, layers).
    pub(crate) codecs_by_payload_type: [Codec; 128],
    /// Clock rate of the first codec (for jitter).
    pub clock_rate: u32,
    /// Whether the publisher negotiated NACK (so losses on the way in are asked for).
    pub nack_enabled: bool,
    /// The id of the RFC 6464 audio-level extension, if negotiated.
    pub audio_level_extension: Option<u8>,
    /// The id of the dependency-descriptor extension, if negotiated.
    pub dependency_descriptor_extension: Option<u8>,
    /// A shared screen: subscribers' bandwidth goes to it first.
    pub screen: bool,
    /// The copies of this producer on other workers, which get every forwarded packet.
    pub pipes: Vec<crate::pipe::PipeEndpoint>,
    /// For a copy ([`crate::Worker::create_pipe_producer`]): the producer it copies. A copy's
    /// `transport` names no transport of this worker (it stands for the remote publisher).
    pub pipe_source: Option<crate::pipe::PipeSource>,
}

impl Producer {
    /// Creates a producer from validated parameters.
    pub fn new(
        id: ProducerId,
        transport: TransportId,
        router: RouterId,
        kind: MediaKind,
        parameters: RtpParameters,
    ) -> Self {
        let mut streams: Vec<ProducerStream> = parameters
            .encodings
            .iter()
            .map(|e| ProducerStream::new(e.ssrc, e.rid.clone(), e.rtx_ssrc))
            .collect();
        if streams.is_empty() {
            // Mid-only: one stream, SSRC learned from the first authenticated packet.
            streams.push(ProducerStream::new(None, None, None));
        }
        let clock_rate = parameters.codecs.first().map_or(90_000, |c| c.clock_rate);
        let nack_enabled = parameters.codecs.iter().any(|c| c.has_feedback("nack", ""));
        let mut codecs_by_payload_type = [Codec::Other; 128];
        for c in &parameters.codecs {
            if let Some(slot) = codecs_by_payload_type.get_mut(usize::from(c.payload_type)) {
                *slot = Codec::from_mime_type(&c.mime_type);
            }
        }
        let audio_level_extension =
            parameters.extension_id(crate::rtp_parameters::extension_uri::AUDIO_LEVEL);
        let dependency_descriptor_extension =
            parameters.extension_id(crate::rtp_parameters::extension_uri::DEPENDENCY_DESCRIPTOR);
        Self {
            dependency_descriptor_extension,
            screen: false,
            audio_level_extension,
            nack_enabled,
            codecs_by_payload_type,
            id,
            transport,
            router,
            kind,
            parameters,
            streams,
            consumers: Vec::new(),
            clock_rate,
            pipes: Vec::new(),
            pipe_source: None,
        }
    }

    /// The stream an authenticated packet with an unbound SSRC belongs to, binding it: a media
    /// SSRC by its rid (or the single rid-less stream), an RTX SSRC (`rtx`) by its repaired rid
    /// (or the single stream). Returns `None` when nothing the publisher declared matches.
    pub fn bind_stream(&mut self, ssrc: u32, rid: Option<&[u8]>, rtx: bool) -> Option<usize> {
        let named = |s: &ProducerStream| s.rid.as_deref().map(str::as_bytes) == rid;
        let index = if rid.is_some() {
            self.streams.iter().position(|s| {
                named(s)
                    && if rtx {
                        s.rtx_ssrc.is_none()
                    } else {
                        s.ssrc.is_none()
                    }
            })?
        } else {
            // Without a rid only a single, rid-less stream can be meant.
            let mut candidates = self.streams.iter().enumerate().filter(|(_, s)| {
                s.rid.is_none()
                    && if rtx {
                        s.rtx_ssrc.is_none()
                    } else {
                        s.ssrc.is_none()
                    }
            });
            let (i, _) = candidates.next()?;
            if candidates.next().is_some() || self.streams.len() > 1 {
                return None;
            }
            i
        };
        let stream = self.streams.get_mut(index)?;
        if rtx {
            stream.rtx_ssrc = Some(ssrc);
        } else {
            stream.ssrc = Some(ssrc);
        }
        Some(index)
    }

    /// The codec a media payload type carries.
    pub fn codec(&self, payload_type: u8) -> Codec {
        self.codecs_by_payload_type
            .get(usize::from(payload_type))
            .copied()
            .unwrap_or(Codec::Other)
    }

    /// Whether the producer has several streams to choose from (simulcast).
    pub fn is_simulcast(&self) -> bool {
        self.streams.len() > 1
    }

    /// The media payload type an RTX payload type repairs.
    pub fn rtx_apt(&self, rtx_pt: u8) -> Option<u8> {
        self.parameters
            .codecs
            .iter()
            .find(|c| c.rtx_payload_type == Some(rtx_pt))
            .map(|c| c.payload_type)
    }

    /// Whether `pt` is one of the payload types the publisher declared (media, not RTX).
    pub fn accepts_payload_type(&self, pt: u8) -> bool {
        self.parameters.codecs.iter().any(|c| c.payload_type == pt)
    }

    /// Whether `pt` is a declared RTX payload type.
    pub fn is_rtx_payload_type(&self, pt: u8) -> bool {
        self.parameters
            .codecs
            .iter()
            .any(|c| c.rtx_payload_type == Some(pt))
    }

    /// The SSRCs of the streams currently known.
    pub fn known_ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams.iter().filter_map(|s| s.ssrc)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn throttle_allows_two_per_second_under_a_storm() {
        let mut t = KeyframeRequestThrottle::default();
        let start = Instant::now();
        let mut sent = 0;
        // 100 subscribers each asking every 10 ms for one second.
        for ms in 0..1000u64 {
            let now = start + Duration::from_millis(ms);
            if ms % 10 == 0 {
                for _ in 0..100 {
                    if t.request(now) {
                        sent += 1;
                    }
                }
            }
            if t.poll(now) {
                sent += 1;
            }
        }
        assert!((1..=2).contains(&sent), "sent {sent}");
    }

    #[test]
    fn deferred_request_is_released_after_interval() {
        let mut t = KeyframeRequestThrottle::default();
        let now = Instant::now();
        assert!(t.request(now));
        assert!(!t.request(now + Duration::from_millis(10)));
        assert_eq!(t.next_due(), Some(now + KEYFRAME_REQUEST_INTERVAL));
        assert!(!t.poll(now + Duration::from_millis(499)));
        assert!(t.poll(now + KEYFRAME_REQUEST_INTERVAL));
        assert!(!t.poll(now + Duration::from_secs(2)), "released once");
    }

    #[test]
    fn receive_stats_report_loss_and_sequence() {
        let mut s = ReceiveStats::default();
        let now = Instant::now();
        for seq in [65_530u16, 65_531, 65_533, 65_535, 0, 1] {
            s.on_packet(seq, 0, 0, 100);
        }
        let r = s.report(9, now).unwrap();
        assert_eq!(r.total_lost, 2);
        assert_eq!(r.highest_sequence, 0x1_0001);
        assert_eq!(r.fraction_lost, (2 * 256 / 8) as u8);
        for seq in 2u16..10 {
            s.on_packet(seq, 0, 0, 100);
        }
        let r = s.report(9, now).unwrap();
        assert_eq!(r.fraction_lost, 0, "no loss in the second interval");
        assert_eq!(r.total_lost, 2);
    }
}

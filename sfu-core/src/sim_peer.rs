//! A sans-I/O WebRTC client ("a browser") and an in-memory network, for tests, benches and
//! simulations of a [`Worker`] on virtual time.
//!
//! [`SimPeer`] plays the browser side of one transport with the crate's own pieces: it sends
//! ICE connectivity checks (controlling, aggressive nomination) with [`crate::stun`], runs a
//! DTLS *client* on `rtc-dtls` with its own self-signed certificate and verifies the server's
//! fingerprint, exports the DTLS-SRTP keys in the client role into two [`SrtpContext`]s, and
//! then protects the RTP and RTCP a test asks it to send and unprotects and records everything
//! it receives. Like a browser, a peer can also ask for what it misses on a stream
//! ([`SimPeer::enable_nack`]: generic NACKs, RTX unwrapping, de-duplication counts) and repair
//! what it sent from its own history on RTX ([`SimPeer::enable_rtx`]), and report the
//! arrival of every packet stamped with a transport-wide sequence number in transport-wide
//! congestion control feedback ([`SimPeer::enable_twcc_feedback`]), which is what the SFU's
//! send-side bandwidth estimator reads. [`SimNetwork`] owns a
//! worker and several peers, carries datagrams between them by address (optionally losing some,
//! from seeded generators, everywhere or on one leg, and optionally after a fixed latency) and
//! advances virtual time from one deadline to the next. Each direction of a peer's link can
//! also be given a [`LinkConfig`] ([`SimNetwork::set_link`]): a bottleneck of limited capacity
//! with a tail-drop buffer, propagation delay with jitter, and loss, with per-link counters,
//! queueing-delay percentiles and a time series ([`SimNetwork::link_report`]). Nothing here reads a clock (apart from one `Instant::now()` that
//! anchors a network's virtual time), touches a socket or sleeps; all randomness that shapes
//! behaviour is seeded, so a simulation replays identically. No input from the network can
//! make anything here panic. Compiled for tests and with the `sim` feature only.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;

use crate::dtls::Fingerprint;
use crate::rtcp::{self, ReceptionReport, RtcpPart, RtcpReader};
use crate::rtp_packet::RtpHeader;
use crate::seq_manager::extend_sequence;
use crate::srtp::{DtlsRole, SrtpContext, SrtpError, SrtpProfile};
use crate::stun::{IceRole, IntegrityKey, StunClass, StunMessage, write_binding_request};
use crate::twcc::{MAX_FEEDBACK_SIZE, TwccRecorder, feedback_packets};
use crate::webrtc_transport::{WebRtcTransportInfo, WebRtcTransportOptions};
use crate::worker::{Worker, WorkerConfig, WorkerError, WorkerEvent};
use crate::{RouterId, TransportId};

const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// PRIORITY of the checks: a host candidate's (type preference 126).
const CHECK_PRIORITY: u32 = 0x7E7F_1EFF;
/// Transactions remembered so that a late response to a retransmitted check still counts.
const MAX_OUTSTANDING_CHECKS: usize = 16;

/// A small deterministic generator (SplitMix64): test data and simulated loss without
/// depending on a global RNG.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform value in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(bytes) {
                *d = s;
            }
        }
    }
}

/// Why a [`SimPeer`] could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimPeerError {
    /// Certificate or DTLS configuration failed.
    #[error("sim peer configuration: {0}")]
    Config(String),
    /// The transport info names no candidate to connect to.
    #[error("the transport info has no candidate")]
    NoCandidate,
    /// `connect` has not been called.
    #[error("not connected to a transport yet")]
    NoTransport,
    /// DTLS has not produced SRTP keys yet.
    #[error("SRTP keys are not available yet")]
    NotConnected,
    /// The DTLS client failed.
    #[error("DTLS: {0}")]
    Dtls(String),
    /// SRTP protection failed.
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
    /// A header extension that fits neither RFC 8285 form.
    #[error("invalid header extension id {id} with {len} bytes")]
    BadExtension {
        /// The id.
        id: u8,
        /// The value length.
        len: usize,
    },
    /// The packet would exceed the 1500-byte datagram limit.
    #[error("packet too large: {0} bytes")]
    TooLarge(usize),
    /// STUN encoding failed.
    #[error("STUN: {0}")]
    Stun(String),
}

/// How a [`SimPeer`] behaves.
#[derive(Debug, Clone)]
pub struct SimPeerConfig {
    /// SRTP profiles offered in the ClientHello, in this order (Chrome: AES-CM first, then GCM).
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Interval of consent-freshness checks once connected (RFC 7675); `None` sends none.
    pub consent_interval: Option<Duration>,
    /// Retransmission interval of a check that got no answer.
    pub check_retransmit: Duration,
    /// Whether checks carry USE-CANDIDATE (aggressive nomination, as browsers do with ICE-lite).
    pub nominate: bool,
    /// Seeds the peer's ufrag, transaction ids and tie-breaker; `None` derives it from the address.
    pub seed: Option<u64>,
    /// The SSRC the peer sends RTCP feedback from.
    pub rtcp_ssrc: u32,
    /// Initial DTLS retransmission interval; `None` keeps `rtc-dtls`'s default (1 s). Chrome's
    /// is much shorter, so its retransmissions reach the server before the server's own.
    pub dtls_retransmit_interval: Option<Duration>,
}

impl Default for SimPeerConfig {
    fn default() -> Self {
        Self {
            srtp_profiles: vec![SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes128Gcm],
            consent_interval: Some(Duration::from_secs(5)),
            check_retransmit: Duration::from_millis(500),
            nominate: true,
            seed: None,
            rtcp_ssrc: 0x5151_0001,
            dtls_retransmit_interval: None,
        }
    }
}

/// Where the peer's DTLS client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimDtlsState {
    /// Not started (ICE has not succeeded yet).
    Idle,
    /// ClientHello sent, handshake under way.
    Handshaking,
    /// Handshake done; SRTP keys in place.
    Connected(SrtpProfile),
    /// The handshake or the connection failed.
    Failed(String),
    /// Closed by either side.
    Closed,
}

/// One RTP packet the peer received and authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    /// When it arrived.
    pub at: Instant,
    /// SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Header extensions `(id, value)` in packet order.
    pub extensions: Vec<(u8, Vec<u8>)>,
    /// The payload, padding removed.
    pub payload: Vec<u8>,
}

impl ReceivedRtp {
    /// The value of header extension `id`.
    pub fn extension(&self, id: u8) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_slice())
    }
}

/// What the peer received as RTCP, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedRtcp {
    /// Transport-wide CC feedback packets received (raw RTCP packets, with arrival time).
    pub twcc_feedback: Vec<(Instant, Vec<u8>)>,
    /// Compound packets authenticated.
    pub packets: u64,
    /// Sender reports by sender SSRC.
    pub sender_reports: HashMap<u32, u64>,
    /// Receiver reports received.
    pub receiver_reports: u64,
    /// Reception-report blocks by the SSRC they are about.
    pub report_blocks: HashMap<u32, u64>,
    /// PLIs by media SSRC.
    pub plis: HashMap<u32, u64>,
    /// FIR entries by media SSRC.
    pub firs: HashMap<u32, u64>,
    /// NACKs by media SSRC.
    pub nacks: HashMap<u32, u64>,
    /// Every generic NACK, in arrival order, with the sequence numbers it names.
    pub nack_requests: Vec<NackRequest>,
    /// Other packet types.
    pub other: u64,
    /// REMB messages: when, and the bitrate (bit/s).
    pub remb: Vec<(Instant, u64)>,
}

/// One generic NACK (RFC 4585 §6.2.1) a [`SimPeer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackRequest {
    /// When it arrived.
    pub at: Instant,
    /// Sender of the feedback.
    pub sender_ssrc: u32,
    /// The media source the packets are missing from.
    pub media_ssrc: u32,
    /// The sequence numbers it names, in FCI order.
    pub sequences: Vec<u16>,
}

impl ReceivedRtcp {
    /// Every sequence number NACKed for `media_ssrc`, in arrival order, repeats included.
    pub fn nacked_sequences(&self, media_ssrc: u32) -> impl Iterator<Item = u16> + '_ {
        self.nack_requests
            .iter()
            .filter(move |r| r.media_ssrc == media_ssrc)
            .flat_map(|r| r.sequences.iter().copied())
    }
}

/// How a [`SimPeer`] asks for the packets it misses on one stream, like a browser's receiver
/// (libwebrtc's `NackRequester`): generic NACKs (RFC 4585) in a compound packet led by a
/// receiver report, for a gap as soon as it is seen and then periodically, never twice
/// within [`Self::rtt`], at most [`Self::max_retries`] times and not after [`Self::max_age`].
/// Repairs are accepted on the media SSRC (a retransmission without RTX) or on the RTX
/// stream (RFC 4588: the original sequence number leads the payload).
#[derive(Debug, Clone)]
pub struct NackConfig {
    /// The media SSRC to watch (a consumer's SSRC).
    pub media_ssrc: u32,
    /// The RTX SSRC and payload type repairs arrive with, when RTX is negotiated.
    pub rtx: Option<(u32, u8)>,
    /// NACK newly missing packets at once, when the gap is seen.
    pub nack_on_gap: bool,
    /// Interval of the periodic NACK of packets still missing.
    pub interval: Duration,
    /// No packet is NACKed again sooner than this (the round-trip time the receiver assumes).
    pub rtt: Duration,
    /// NACKs per packet before giving up on it.
    pub max_retries: u8,
    /// A packet missing for longer than this is given up.
    pub max_age: Duration,
    /// Interval of standalone receiver reports (with LSR/DLSR, so that the sender can measure
    /// the round-trip time); `None` sends reports only at the head of NACK packets.
    pub report_interval: Option<Duration>,
}

impl NackConfig {
    /// Browser-like defaults for `media_ssrc`: NACK on gap, then every 20 ms, at most 10 times
    /// per packet, not within 100 ms of the last NACK, give up after 1 s; a report every second.
    pub fn new(media_ssrc: u32, rtx: Option<(u32, u8)>) -> Self {
        Self {
            media_ssrc,
            rtx,
            nack_on_gap: true,
            interval: Duration::from_millis(20),
            rtt: Duration::from_millis(100),
            max_retries: 10,
            max_age: Duration::from_secs(1),
            report_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// What a [`SimPeer`]'s NACK generator saw and did (see [`NackConfig`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    /// Packets received on the media SSRC in order (new highest sequence numbers).
    pub media_packets: u64,
    /// Packets received on the RTX SSRC with the RTX payload type.
    pub rtx_packets: u64,
    /// Sequence numbers found missing (gaps).
    pub gaps: u64,
    /// Missing packets filled by RTX.
    pub recovered_rtx: u64,
    /// Missing packets filled by a late packet on the media SSRC (a retransmission without
    /// RTX, or reordering).
    pub recovered_media: u64,
    /// Packets (media or RTX) for a sequence number already received: the de-duplication count.
    pub duplicates: u64,
    /// Repairs of packets already given up or older than anything tracked.
    pub late: u64,
    /// RTX packets for a sequence number never seen missing (ahead of the highest received,
    /// or before the first one), or too short to carry one.
    pub unsolicited_rtx: u64,
    /// Missing packets given up (retries or age exhausted).
    pub given_up: u64,
    /// RTCP compound packets with a NACK sent.
    pub nack_packets: u64,
    /// Sequence numbers requested, repeats included.
    pub nack_items: u64,
    /// Receiver reports sent (standalone or leading a NACK).
    pub receiver_reports: u64,
}

#[derive(Debug, Clone, Copy)]
struct MissingPacket {
    detected: Instant,
    last_nack: Option<Instant>,
    retries: u8,
}

/// Distinct received sequence numbers remembered below the highest, for de-duplication.
const RECEIVED_MEMORY: u64 = 8192;
/// A larger gap is not tracked packet by packet (a receiver would ask for a keyframe).
const MAX_TRACKED_GAP: u64 = 1000;

#[derive(Debug, Clone)]
struct NackReceiver {
    config: NackConfig,
    highest: Option<u64>,
    received: BTreeSet<u64>,
    missing: BTreeMap<u64, MissingPacket>,
    next_poll: Option<Instant>,
    next_report: Option<Instant>,
    stats: NackStats,
}

impl NackReceiver {
    fn new(now: Instant, config: NackConfig) -> Self {
        let next_report = config.report_interval.map(|i| now + i);
        Self {
            config,
            highest: None,
            received: BTreeSet::new(),
            missing: BTreeMap::new(),
            next_poll: None,
            next_report,
            stats: NackStats::default(),
        }
    }

    /// Records a received packet; returns the sequence numbers to NACK at once.
    fn on_rtp(&mut self, now: Instant, packet: &ReceivedRtp) -> Vec<u16> {
        let is_rtx = self
            .config
            .rtx
            .is_some_and(|(ssrc, pt)| packet.ssrc == ssrc && packet.payload_type == pt);
        if is_rtx {
            self.stats.rtx_packets += 1;
            let osn = packet
                .payload
                .get(..2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok());
            let (Some(highest), Some(osn)) = (self.highest, osn) else {
                self.stats.unsolicited_rtx += 1;
                return Vec::new();
            };
            let ext = extend_sequence(highest, u16::from_be_bytes(osn));
            if ext > highest {
                self.stats.unsolicited_rtx += 1;
            } else if self.missing.remove(&ext).is_some() {
                self.stats.recovered_rtx += 1;
                self.received.insert(ext);
            } else if self.received.contains(&ext) {
                self.stats.duplicates += 1;
            } else {
                self.stats.late += 1;
            }
            return Vec::new();
        }
        if packet.ssrc != self.config.media_ssrc {
            return Vec::new();
        }
        let Some(highest) = self.highest else {
            let ext = 0x1_0000 | u64::from(packet.sequence_number);
            self.highest = Some(ext);
            self.received.insert(ext);
            self.stats.media_packets += 1;
            return Vec::new();
        };
        let ext = extend_sequence(highest, packet.sequence_number);
        if ext <= highest {
            if self.missing.remove(&ext).is_some() {
                self.stats.recovered_media += 1;
                self.received.insert(ext);
            } else if self.received.contains(&ext) {
                self.stats.duplicates += 1;
            } else {
                self.stats.late += 1;
            }
            return Vec::new();
        }
        self.highest = Some(ext);
        self.received.insert(ext);
        self.stats.media_packets += 1;
        while self
            .received
            .first()
            .is_some_and(|&f| f + RECEIVED_MEMORY < ext)
        {
            self.received.pop_first();
        }
        let gap = ext - highest - 1;
        if gap == 0 || gap > MAX_TRACKED_GAP {
            return Vec::new();
        }
        self.stats.gaps += gap;
        let mut now_nacked = Vec::new();
        for lost in highest + 1..ext {
            let mut m = MissingPacket {
                detected: now,
                last_nack: None,
                retries: 0,
            };
            if self.config.nack_on_gap {
                m.last_nack = Some(now);
                m.retries = 1;
                now_nacked.push(lost as u16);
            }
            self.missing.insert(lost, m);
        }
        if self.next_poll.is_none() {
            self.next_poll = Some(now + self.config.interval);
        }
        now_nacked
    }

    /// The sequence numbers to NACK now; gives up on the hopeless ones.
    fn poll(&mut self, now: Instant) -> Vec<u16> {
        let (max_age, max_retries, rtt) = (
            self.config.max_age,
            self.config.max_retries,
            self.config.rtt,
        );
        let before = self.missing.len();
        self.missing.retain(|_, m| {
            now.saturating_duration_since(m.detected) <= max_age && m.retries < max_retries
        });
        self.stats.given_up += (before - self.missing.len()) as u64;
        let mut out = Vec::new();
        for (ext, m) in &mut self.missing {
            if m.last_nack
                .is_some_and(|t| now.saturating_duration_since(t) < rtt)
            {
                continue;
            }
            m.last_nack = Some(now);
            m.retries += 1;
            out.push(*ext as u16);
        }
        out
    }

    fn report_block(
        &self,
        now: Instant,
        last_sr: Option<(u32, Instant)>,
    ) -> Option<ReceptionReport> {
        let highest = self.highest?;
        let (lsr, dlsr) = match last_sr {
            Some((lsr, at)) => (
                lsr,
                (now.saturating_duration_since(at).as_secs_f64() * 65_536.0) as u32,
            ),
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc: self.config.media_ssrc,
            highest_sequence: (highest - 0x1_0000) as u32,
            last_sender_report: lsr,
            delay_since_last_sender_report: dlsr,
            ..ReceptionReport::default()
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let poll = self.next_poll.filter(|_| !self.missing.is_empty());
        [poll, self.next_report].into_iter().flatten().min()
    }
}

impl TwccReceiver {
    fn on_rtp(&mut self, now: Instant, packet: &ReceivedRtp) {
        let seq = packet
            .extension(self.extension_id)
            .and_then(|v| <[u8; 2]>::try_from(v).ok());
        let Some(seq) = seq else {
            self.stats.unstamped += 1;
            return;
        };
        self.stats.stamped += 1;
        self.media_ssrc.get_or_insert(packet.ssrc);
        self.recorder.record(u16::from_be_bytes(seq), now);
    }
}

/// How a [`SimPeer`] answers NACKs for a stream it sends, like a browser's sender: it keeps the
/// last [`Self::history`] packets of [`Self::media_ssrc`] and repairs a NACKed one on the RTX
/// stream (RFC 4588: RTX SSRC and payload type, its own sequence numbers, the original
/// sequence number prepended to the payload, the original timestamp, marker and extensions).
#[derive(Debug, Clone)]
pub struct RtxConfig {
    /// The media SSRC whose packets are kept.
    pub media_ssrc: u32,
    /// The RTX SSRC.
    pub rtx_ssrc: u32,
    /// `(media payload type, RTX payload type)` pairs.
    pub payload_types: Vec<(u8, u8)>,
    /// Packets kept.
    pub history: usize,
    /// Whether NACKs are answered automatically (otherwise only [`SimPeer::send_rtx`] repairs).
    pub answer_nacks: bool,
    /// The first RTX sequence number.
    pub initial_sequence: u16,
}

impl RtxConfig {
    /// Answers NACKs for `media_ssrc` on `rtx_ssrc`, one RTX payload type, 1024 packets of history.
    pub fn new(media_ssrc: u32, rtx_ssrc: u32, media_pt: u8, rtx_pt: u8) -> Self {
        Self {
            media_ssrc,
            rtx_ssrc,
            payload_types: vec![(media_pt, rtx_pt)],
            history: 1024,
            answer_nacks: true,
            initial_sequence: 1000,
        }
    }
}

/// What a [`SimPeer`]'s RTX sender did (see [`RtxConfig`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtxStats {
    /// Sequence numbers NACKed for the media SSRC, repeats included.
    pub nacked: u64,
    /// RTX packets sent.
    pub sent: u64,
    /// Repairs asked for that the history no longer (or never) held.
    pub unavailable: u64,
}

#[derive(Debug, Clone)]
struct SentPacket {
    sequence_number: u16,
    payload_type: u8,
    timestamp: u32,
    marker: bool,
    extensions: Vec<(u8, Vec<u8>)>,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct RtxSender {
    config: RtxConfig,
    history: VecDeque<SentPacket>,
    next_sequence: u16,
    stats: RtxStats,
}

/// What a [`SimPeer`]'s transport-wide feedback did (see [`SimPeer::enable_twcc_feedback`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwccFeedbackStats {
    /// RTP packets received with a two-byte transport-wide sequence number, all recorded.
    pub stamped: u64,
    /// RTP packets received without the extension (or with a value that is not two bytes).
    pub unstamped: u64,
    /// Transport-wide feedback packets (RTPFB/15) sent.
    pub feedback_packets: u64,
    /// SRTCP datagrams they went in.
    pub feedback_datagrams: u64,
}

/// A browser's receive side of transport-wide congestion control: it records the arrival of
/// every stamped packet and reports them every `interval`.
#[derive(Debug, Clone)]
struct TwccReceiver {
    extension_id: u8,
    interval: Duration,
    recorder: TwccRecorder,
    next_feedback: Instant,
    /// The first media SSRC received: what libwebrtc puts in the media-source field.
    media_ssrc: Option<u32>,
    stats: TwccFeedbackStats,
}

/// The peer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimPeerStats {
    /// Datagrams handed to [`SimPeer::handle_datagram`].
    pub datagrams_in: u64,
    /// Datagrams queued for sending.
    pub datagrams_out: u64,
    /// ICE checks sent.
    pub checks_sent: u64,
    /// Authenticated binding success responses.
    pub check_responses: u64,
    /// STUN that was not an authenticated answer to one of our checks.
    pub stun_ignored: u64,
    /// DTLS datagrams received.
    pub dtls_in: u64,
    /// SRTP packets that failed to unprotect (auth, replay) or did not parse.
    pub srtp_errors: u64,
    /// SRTCP packets that failed to unprotect or did not parse.
    pub srtcp_errors: u64,
    /// SRTP/SRTCP received before keys were available.
    pub srtp_before_keys: u64,
    /// Datagrams in no RFC 7983 range.
    pub unknown: u64,
}

struct Server {
    addr: SocketAddr,
    ufrag: String,
    key: IntegrityKey,
    fingerprint: Fingerprint,
}

/// A simulated browser: ICE (controlling), DTLS client, SRTP. See the module documentation.
pub struct SimPeer {
    addr: SocketAddr,
    config: SimPeerConfig,
    rng: SimRng,
    ufrag: String,
    tie_breaker: u64,
    certificate: Certificate,
    fingerprint: Fingerprint,
    server: Option<Server>,
    outstanding: VecDeque<[u8; 12]>,
    ice_connected: bool,
    next_check: Option<Instant>,
    last_check_sent: Option<Instant>,
    last_check_answered: Option<Instant>,
    mapped_address: Option<SocketAddr>,
    dtls: Option<Endpoint>,
    dtls_state: SimDtlsState,
    srtp_out: Option<SrtpContext>,
    srtp_in: Option<SrtpContext>,
    /// Extended highest sequence number sent per SSRC: the outbound ROC.
    sent_index: HashMap<u32, u64>,
    outgoing: VecDeque<(SocketAddr, Vec<u8>)>,
    received_rtp: Vec<ReceivedRtp>,
    received_rtcp: ReceivedRtcp,
    stats: SimPeerStats,
    nack_receiver: Option<NackReceiver>,
    rtx_sender: Option<RtxSender>,
    twcc: Option<TwccReceiver>,
    /// Middle 32 bits of the NTP time of the last sender report per SSRC, and its arrival.
    last_sender_reports: HashMap<u32, (u32, Instant)>,
}

impl std::fmt::Debug for SimPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPeer")
            .field("addr", &self.addr)
            .field("ice_connected", &self.ice_connected)
            .field("dtls_state", &self.dtls_state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn seed_from_addr(addr: SocketAddr) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in addr.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

impl SimPeer {
    /// A peer at `addr` with the default configuration.
    pub fn new(addr: SocketAddr, now: Instant) -> Result<Self, SimPeerError> {
        Self::with_config(addr, now, SimPeerConfig::default())
    }

    /// A peer at `addr` configured by `config`.
    pub fn with_config(
        addr: SocketAddr,
        _now: Instant,
        config: SimPeerConfig,
    ) -> Result<Self, SimPeerError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| SimPeerError::Config(e.to_string()))?;
        let certificate =
            Certificate::generate_self_signed(vec!["sim-peer".to_owned()], provider.crypto())
                .map_err(|e| SimPeerError::Config(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| SimPeerError::Config("empty certificate chain".into()))?;
        let fingerprint = Fingerprint::of_der(der.as_ref());
        let mut rng = SimRng::new(config.seed.unwrap_or_else(|| seed_from_addr(addr)));
        let ufrag = format!("sim{:08x}", rng.next_u32());
        let tie_breaker = rng.next_u64();
        Ok(Self {
            addr,
            config,
            rng,
            ufrag,
            tie_breaker,
            certificate,
            fingerprint,
            server: None,
            outstanding: VecDeque::new(),
            ice_connected: false,
            next_check: None,
            last_check_sent: None,
            last_check_answered: None,
            mapped_address: None,
            dtls: None,
            dtls_state: SimDtlsState::Idle,
            srtp_out: None,
            srtp_in: None,
            sent_index: HashMap::new(),
            outgoing: VecDeque::new(),
            received_rtp: Vec::new(),
            received_rtcp: ReceivedRtcp::default(),
            stats: SimPeerStats::default(),
            nack_receiver: None,
            rtx_sender: None,
            twcc: None,
            last_sender_reports: HashMap::new(),
        })
    }

    /// The peer's current address (where it sends from and receives at).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The peer's certificate fingerprint, for [`WebRtcTransportOptions::remote_fingerprint`].
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint.clone()
    }

    /// The peer's ICE ufrag.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// The SSRC the peer sends RTCP from.
    pub fn rtcp_ssrc(&self) -> u32 {
        self.config.rtcp_ssrc
    }

    /// Starts ICE towards the first candidate of `info`: a check goes out at once.
    pub fn connect(
        &mut self,
        now: Instant,
        info: &WebRtcTransportInfo,
    ) -> Result<(), SimPeerError> {
        let addr = *info.candidates.first().ok_or(SimPeerError::NoCandidate)?;
        self.connect_to(now, addr, info)
    }

    /// Starts ICE towards `server` with the credentials and fingerprint of `info`.
    pub fn connect_to(
        &mut self,
        now: Instant,
        server: SocketAddr,
        info: &WebRtcTransportInfo,
    ) -> Result<(), SimPeerError> {
        self.server = Some(Server {
            addr: server,
            ufrag: info.ice_ufrag.clone(),
            key: IntegrityKey::new(info.ice_pwd.as_bytes()),
            fingerprint: info.fingerprint.clone(),
        });
        self.send_check(now)
    }

    /// Moves the peer to `addr` (a network change) and nominates the new path at once.
    pub fn migrate(&mut self, now: Instant, addr: SocketAddr) -> Result<(), SimPeerError> {
        self.addr = addr;
        self.send_check(now)
    }

    /// Turns consent-freshness checks on (with `interval`) or off (`None`).
    pub fn set_consent_interval(&mut self, now: Instant, interval: Option<Duration>) {
        self.config.consent_interval = interval;
        self.next_check = match interval {
            Some(i) if self.ice_connected => Some(now + i),
            Some(_) => self.next_check,
            None if self.ice_connected => None,
            None => self.next_check,
        };
    }

    /// Sends one connectivity check now (with USE-CANDIDATE when nominating).
    pub fn send_check(&mut self, now: Instant) -> Result<(), SimPeerError> {
        let server = self.server.as_ref().ok_or(SimPeerError::NoTransport)?;
        let mut transaction_id = [0u8; 12];
        self.rng.fill(&mut transaction_id);
        let username = format!("{}:{}", server.ufrag, self.ufrag);
        let mut out = Vec::new();
        write_binding_request(
            &transaction_id,
            username.as_bytes(),
            &server.key,
            CHECK_PRIORITY,
            Some(IceRole::Controlling(self.tie_breaker)),
            self.config.nominate,
            &mut out,
        )
        .map_err(|e| SimPeerError::Stun(e.to_string()))?;
        let dest = server.addr;
        if self.outstanding.len() >= MAX_OUTSTANDING_CHECKS {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back(transaction_id);
        self.stats.checks_sent += 1;
        self.last_check_sent = Some(now);
        self.next_check = if self.ice_connected {
            self.config.consent_interval.map(|i| now + i)
        } else {
            Some(now + self.config.check_retransmit)
        };
        self.queue(dest, out);
        Ok(())
    }

    /// Starts the DTLS client now, whatever ICE says (normally this happens on the first
    /// successful check). An attacker in a test uses it to send a ClientHello unvalidated.
    pub fn start_dtls(&mut self, now: Instant) -> Result<(), SimPeerError> {
        if self.dtls.is_some() {
            return Ok(());
        }
        let server = self.server.as_ref().ok_or(SimPeerError::NoTransport)?;
        let server_addr = server.addr;
        let expected = server.fingerprint.clone();
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| SimPeerError::Config(e.to_string()))?;
        let profiles = self
            .config
            .srtp_profiles
            .iter()
            .map(|p| match p {
                SrtpProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProfile::Aes128CmHmacSha1_80 => {
                    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80
                }
            })
            .collect();
        let mut builder = ConfigBuilder::default();
        if let Some(interval) = self.config.dtls_retransmit_interval {
            builder = builder.with_flight_interval(interval);
        }
        let config = builder
            .with_crypto_provider(provider)
            .with_certificates(vec![self.certificate.clone()])
            .with_srtp_protection_profiles(profiles)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(Arc::new(move |certs: &[Vec<u8>], _| {
                let presented = certs
                    .first()
                    .map(|der| Fingerprint::of_der(der))
                    .ok_or(rtc_shared::error::Error::ErrInvalidCertificate)?;
                if presented == expected {
                    Ok(())
                } else {
                    Err(rtc_shared::error::Error::Other(format!(
                        "server fingerprint {presented:?} is not the signalled {expected:?}"
                    )))
                }
            })))
            .build(true, None)
            .map_err(|e| SimPeerError::Config(e.to_string()))?;
        let mut endpoint = Endpoint::new(self.addr, TransportProtocol::UDP, None);
        let result = endpoint.connect(now, server_addr, Arc::new(config), None);
        self.dtls = Some(endpoint);
        match result {
            Ok(()) => {
                self.dtls_state = SimDtlsState::Handshaking;
                self.drain_dtls();
                Ok(())
            }
            Err(e) => {
                self.dtls_state = SimDtlsState::Failed(e.to_string());
                Err(SimPeerError::Dtls(e.to_string()))
            }
        }
    }

    /// Sends DTLS close_notify.
    pub fn close_dtls(&mut self, now: Instant) {
        if let Some(endpoint) = self.dtls.as_mut() {
            let _ = endpoint.close(now);
            self.dtls_state = SimDtlsState::Closed;
            self.srtp_in = None;
            self.srtp_out = None;
        }
        self.drain_dtls();
    }

    fn drain_dtls(&mut self) {
        let Some(endpoint) = self.dtls.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = endpoint.poll_transmit() {
            out.push((t.transport.peer_addr, t.message.to_vec()));
        }
        for (dest, data) in out {
            self.queue(dest, data);
        }
    }

    fn queue(&mut self, dest: SocketAddr, data: Vec<u8>) {
        self.stats.datagrams_out += 1;
        self.outgoing.push_back((dest, data));
    }

    /// Queues raw bytes for the server (anything: replays, garbage).
    pub fn send_raw(&mut self, data: Vec<u8>) -> Result<(), SimPeerError> {
        let dest = self.server.as_ref().ok_or(SimPeerError::NoTransport)?.addr;
        self.queue(dest, data);
        Ok(())
    }

    /// Whether ICE has succeeded and DTLS produced SRTP keys.
    pub fn is_connected(&self) -> bool {
        self.ice_connected && matches!(self.dtls_state, SimDtlsState::Connected(_))
    }

    /// Whether a check has been answered.
    pub fn is_ice_connected(&self) -> bool {
        self.ice_connected
    }

    /// The DTLS client's state.
    pub fn dtls_state(&self) -> &SimDtlsState {
        &self.dtls_state
    }

    /// The negotiated SRTP profile, once connected.
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        match self.dtls_state {
            SimDtlsState::Connected(p) => Some(p),
            _ => None,
        }
    }

    /// The XOR-MAPPED-ADDRESS of the last answered check.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.mapped_address
    }

    /// When the last check was sent.
    pub fn last_check_sent(&self) -> Option<Instant> {
        self.last_check_sent
    }

    /// When the last check was answered.
    pub fn last_check_answered(&self) -> Option<Instant> {
        self.last_check_answered
    }

    /// Next datagram to send: `(destination, bytes)`; the source is [`Self::addr`].
    pub fn poll_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outgoing.pop_front()
    }

    /// Datagrams queued and not yet polled.
    pub fn pending_datagrams(&self) -> usize {
        self.outgoing.len()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dtls = match (&self.dtls, &self.server) {
            (Some(e), Some(s)) if self.dtls_state == SimDtlsState::Handshaking => {
                e.poll_timeout(&s.addr)
            }
            _ => None,
        };
        let nack = self
            .nack_receiver
            .as_ref()
            .and_then(NackReceiver::poll_timeout);
        let twcc = self.twcc.as_ref().map(|t| t.next_feedback);
        [self.next_check, dtls, nack, twcc]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances timers: check retransmission, consent checks, DTLS retransmission.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_check.is_some_and(|t| now >= t) {
            // Only fails without a transport, and then there is no timer.
            if self.send_check(now).is_err() {
                self.next_check = None;
            }
        }
        if self.dtls_state == SimDtlsState::Handshaking
            && let (Some(endpoint), Some(server)) = (self.dtls.as_mut(), self.server.as_ref())
            && let Err(e) = endpoint.handle_timeout(server.addr, now)
        {
            self.dtls_state = SimDtlsState::Failed(e.to_string());
        }
        self.drain_dtls();
        self.nack_timeout(now);
        self.twcc_timeout(now);
    }

    /// Feeds one received datagram (the network delivers only what is addressed to
    /// [`Self::addr`]). Never fails: what cannot be used is counted in [`Self::stats`].
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        self.stats.datagrams_in += 1;
        match data.first() {
            Some(0..=3) => self.handle_stun(now, data),
            Some(20..=63) => self.handle_dtls(now, data),
            Some(128..=191) => self.handle_srtp(now, data),
            _ => self.stats.unknown += 1,
        }
    }

    fn handle_stun(&mut self, now: Instant, data: &[u8]) {
        let answered = (|| {
            let msg = StunMessage::parse(data).ok()?;
            let server = self.server.as_ref()?;
            if msg.class() != StunClass::SuccessResponse || !msg.verify_fingerprint() {
                return None;
            }
            let position = self
                .outstanding
                .iter()
                .position(|t| *t == msg.transaction_id())?;
            if !msg.verify_integrity_with(&server.key) {
                return None;
            }
            Some((position, msg.xor_mapped_address()))
        })();
        let Some((position, mapped)) = answered else {
            self.stats.stun_ignored += 1;
            return;
        };
        self.outstanding.remove(position);
        self.stats.check_responses += 1;
        self.last_check_answered = Some(now);
        self.mapped_address = mapped;
        if !self.ice_connected {
            self.ice_connected = true;
            self.next_check = self.config.consent_interval.map(|i| now + i);
        }
        if self.dtls.is_none() && self.start_dtls(now).is_err() {
            // Recorded in `dtls_state`.
        }
    }

    fn handle_dtls(&mut self, now: Instant, data: &[u8]) {
        self.stats.dtls_in += 1;
        let (Some(endpoint), Some(server)) = (self.dtls.as_mut(), self.server.as_ref()) else {
            return;
        };
        let server_addr = server.addr;
        let result = endpoint.read(now, server_addr, None, BytesMut::from(data));
        self.drain_dtls();
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                if !matches!(self.dtls_state, SimDtlsState::Connected(_)) {
                    self.dtls_state = SimDtlsState::Failed(e.to_string());
                }
                return;
            }
        };
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => match self.export_keys(server_addr) {
                    Ok((profile, outbound, inbound)) => {
                        self.srtp_out = Some(outbound);
                        self.srtp_in = Some(inbound);
                        self.dtls_state = SimDtlsState::Connected(profile);
                    }
                    Err(e) => self.dtls_state = SimDtlsState::Failed(e.to_string()),
                },
                EndpointEvent::PeerClosed => {
                    self.dtls_state = SimDtlsState::Closed;
                    self.srtp_in = None;
                    self.srtp_out = None;
                }
                _ => {}
            }
        }
    }

    fn export_keys(
        &self,
        server_addr: SocketAddr,
    ) -> Result<(SrtpProfile, SrtpContext, SrtpContext), SimPeerError> {
        let endpoint = self.dtls.as_ref().ok_or(SimPeerError::NotConnected)?;
        let state = endpoint
            .get_connection_state(server_addr)
            .ok_or_else(|| SimPeerError::Dtls("no association state".into()))?;
        let profile = SrtpProfile::from_dtls_id(state.srtp_protection_profile() as u16)
            .ok_or_else(|| SimPeerError::Dtls("unsupported SRTP profile negotiated".into()))?;
        let material = state
            .export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.keying_material_len())
            .map_err(|e| SimPeerError::Dtls(e.to_string()))?;
        let (outbound, inbound) =
            SrtpContext::from_keying_material(profile, material.as_ref(), DtlsRole::Client)?;
        Ok((profile, outbound, inbound))
    }

    fn handle_srtp(&mut self, now: Instant, data: &[u8]) {
        let Some(srtp) = self.srtp_in.as_mut() else {
            self.stats.srtp_before_keys += 1;
            return;
        };
        let mut buf = data.to_vec();
        if data.get(1).is_some_and(|pt| (192..=223).contains(pt)) {
            let Ok(len) = srtp.unprotect_rtcp(&mut buf) else {
                self.stats.srtcp_errors += 1;
                return;
            };
            buf.truncate(len);
            if rtcp::validate_compound(&buf).is_err() {
                self.stats.srtcp_errors += 1;
                return;
            }
            let first_new = self.received_rtcp.nack_requests.len();
            self.record_rtcp(now, &buf);
            self.answer_nacks(now, first_new);
            return;
        }
        let Ok(header) = RtpHeader::parse(&buf) else {
            self.stats.srtp_errors += 1;
            return;
        };
        let Ok(len) = srtp.unprotect_rtp(&mut buf, header.header_len) else {
            self.stats.srtp_errors += 1;
            return;
        };
        buf.truncate(len);
        let Ok((start, end)) = header.payload_range(&buf) else {
            self.stats.srtp_errors += 1;
            return;
        };
        let extensions = header
            .extensions()
            .iter()
            .filter_map(|e| header.extension(&buf, e.id).map(|v| (e.id, v.to_vec())))
            .collect();
        self.received_rtp.push(ReceivedRtp {
            at: now,
            ssrc: header.ssrc,
            payload_type: header.payload_type,
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            marker: header.marker,
            extensions,
            payload: buf.get(start..end).unwrap_or(&[]).to_vec(),
        });
        if let (Some(twcc), Some(packet)) = (self.twcc.as_mut(), self.received_rtp.last()) {
            twcc.on_rtp(now, packet);
        }
        let nack_now = match (self.nack_receiver.as_mut(), self.received_rtp.last()) {
            (Some(receiver), Some(packet)) => receiver.on_rtp(now, packet),
            _ => Vec::new(),
        };
        if !nack_now.is_empty() {
            self.send_feedback(now, &nack_now);
        }
    }

    fn record_rtcp(&mut self, now: Instant, buf: &[u8]) {
        let r = &mut self.received_rtcp;
        r.packets += 1;
        for feedback in crate::twcc::feedback_packets(buf) {
            r.twcc_feedback.push((now, feedback.to_vec()));
        }
        let mut rest = buf;
        while let Some(len_field) = rest.get(2..4) {
            let Ok(len_field) = <[u8; 2]>::try_from(len_field) else {
                break;
            };
            let len = (usize::from(u16::from_be_bytes(len_field)) + 1) * 4;
            let Some(packet) = rest.get(..len) else { break };
            if let Some((bitrate, _)) = rtcp::parse_remb(packet) {
                r.remb.push((now, bitrate));
            }
            rest = rest.get(len..).unwrap_or(&[]);
        }
        for part in RtcpReader::new(buf).flatten() {
            match part {
                RtcpPart::SenderReport {
                    ssrc,
                    ntp_time,
                    reports,
                    ..
                } => {
                    self.last_sender_reports
                        .insert(ssrc, ((ntp_time >> 16) as u32, now));
                    *r.sender_reports.entry(ssrc).or_default() += 1;
                    for block in rtcp::reception_reports(reports) {
                        *r.report_blocks.entry(block.ssrc).or_default() += 1;
                    }
                }
                RtcpPart::ReceiverReport { reports, .. } => {
                    r.receiver_reports += 1;
                    for block in rtcp::reception_reports(reports) {
                        *r.report_blocks.entry(block.ssrc).or_default() += 1;
                    }
                }
                RtcpPart::Pli { media_ssrc, .. } => *r.plis.entry(media_ssrc).or_default() += 1,
                RtcpPart::Fir { entries, .. } => {
                    for ssrc in rtcp::fir_ssrcs(entries) {
                        *r.firs.entry(ssrc).or_default() += 1;
                    }
                }
                RtcpPart::Nack {
                    sender_ssrc,
                    media_ssrc,
                    fci,
                } => {
                    *r.nacks.entry(media_ssrc).or_default() += 1;
                    r.nack_requests.push(NackRequest {
                        at: now,
                        sender_ssrc,
                        media_ssrc,
                        sequences: rtcp::nacked_sequences(fci).collect(),
                    });
                }
                RtcpPart::Other { .. } => r.other += 1,
            }
        }
    }

    /// Builds and protects an RTP packet (the ROC of `ssrc` is tracked from the sequence
    /// numbers sent so far) and returns the datagram without queuing it.
    ///
    /// Protecting the same `(ssrc, seq)` twice reuses an SRTP nonce: to resend a packet, send
    /// the returned bytes again (see [`Self::send_raw`]). Every packet built counts for the ROC,
    /// delivered or not, as in a browser: a later sequence number more than 2^15 behind the
    /// highest built is taken to be after a wrap.
    #[allow(clippy::too_many_arguments)]
    pub fn protect_rtp(
        &mut self,
        ssrc: u32,
        payload_type: u8,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        extensions: &[(u8, &[u8])],
        payload: &[u8],
    ) -> Result<Vec<u8>, SimPeerError> {
        let (mut packet, header_len) = write_rtp_packet(
            ssrc,
            payload_type,
            sequence_number,
            timestamp,
            marker,
            extensions,
            payload,
        )?;
        let srtp = self.srtp_out.as_mut().ok_or(SimPeerError::NotConnected)?;
        let index = match self.sent_index.get(&ssrc) {
            Some(&highest) => extend_sequence(highest, sequence_number),
            None => u64::from(sequence_number),
        };
        srtp.protect_rtp(&mut packet, header_len, (index >> 16) as u32)?;
        let highest = self.sent_index.entry(ssrc).or_insert(index);
        if index > *highest {
            *highest = index;
        }
        if let Some(rtx) = self
            .rtx_sender
            .as_mut()
            .filter(|r| r.config.media_ssrc == ssrc)
        {
            if rtx.history.len() >= rtx.config.history.max(1) {
                rtx.history.pop_front();
            }
            rtx.history.push_back(SentPacket {
                sequence_number,
                payload_type,
                timestamp,
                marker,
                extensions: extensions.iter().map(|(id, v)| (*id, v.to_vec())).collect(),
                payload: payload.to_vec(),
            });
        }
        Ok(packet)
    }

    /// Builds, protects and queues an RTP packet for the server.
    #[allow(clippy::too_many_arguments)]
    pub fn send_rtp(
        &mut self,
        _now: Instant,
        ssrc: u32,
        payload_type: u8,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        extensions: &[(u8, &[u8])],
        payload: &[u8],
    ) -> Result<(), SimPeerError> {
        let packet = self.protect_rtp(
            ssrc,
            payload_type,
            sequence_number,
            timestamp,
            marker,
            extensions,
            payload,
        )?;
        self.send_raw(packet)
    }

    /// Protects a plaintext compound RTCP packet and returns the datagram without queuing it.
    pub fn protect_rtcp(&mut self, plaintext_compound: &[u8]) -> Result<Vec<u8>, SimPeerError> {
        let srtp = self.srtp_out.as_mut().ok_or(SimPeerError::NotConnected)?;
        let mut packet = plaintext_compound.to_vec();
        srtp.protect_rtcp(&mut packet)?;
        Ok(packet)
    }

    /// Protects and queues a plaintext compound RTCP packet (PLI, RR, …).
    pub fn send_rtcp(
        &mut self,
        _now: Instant,
        plaintext_compound: &[u8],
    ) -> Result<(), SimPeerError> {
        let packet = self.protect_rtcp(plaintext_compound)?;
        self.send_raw(packet)
    }

    /// Sends a PLI for `media_ssrc` from [`Self::rtcp_ssrc`].
    pub fn send_pli(&mut self, now: Instant, media_ssrc: u32) -> Result<(), SimPeerError> {
        let mut buf = Vec::new();
        rtcp::write_pli(&mut buf, self.config.rtcp_ssrc, media_ssrc);
        self.send_rtcp(now, &buf)
    }

    /// RTP packets received and authenticated, in arrival order.
    pub fn received_rtp(&self) -> &[ReceivedRtp] {
        &self.received_rtp
    }

    /// RTP packets received for `ssrc`.
    pub fn received_rtp_for(&self, ssrc: u32) -> impl Iterator<Item = &ReceivedRtp> + '_ {
        self.received_rtp.iter().filter(move |p| p.ssrc == ssrc)
    }

    /// RTCP received, by kind.
    pub fn received_rtcp(&self) -> &ReceivedRtcp {
        &self.received_rtcp
    }

    /// PLIs received for `media_ssrc`.
    pub fn received_plis(&self, media_ssrc: u32) -> u64 {
        self.received_rtcp
            .plis
            .get(&media_ssrc)
            .copied()
            .unwrap_or(0)
    }

    /// Sends a generic NACK for `lost` (ascending, modulo wrap) of `media_ssrc`, in a compound
    /// packet led by an empty receiver report.
    pub fn send_nack(
        &mut self,
        now: Instant,
        media_ssrc: u32,
        lost: &[u16],
    ) -> Result<(), SimPeerError> {
        let mut buf = Vec::new();
        rtcp::write_receiver_report(&mut buf, self.config.rtcp_ssrc, &[]);
        rtcp::write_nack(&mut buf, self.config.rtcp_ssrc, media_ssrc, lost);
        self.send_rtcp(now, &buf)
    }

    /// Starts asking for the packets missing on a stream (see [`NackConfig`]); replaces an
    /// earlier configuration and its state.
    pub fn enable_nack(&mut self, now: Instant, config: NackConfig) {
        self.nack_receiver = Some(NackReceiver::new(now, config));
    }

    /// The NACK generator's counters, once [`Self::enable_nack`] was called.
    pub fn nack_stats(&self) -> Option<NackStats> {
        self.nack_receiver.as_ref().map(|n| n.stats)
    }

    /// Sequence numbers the NACK generator still waits for (given-up ones are not included).
    pub fn missing_sequences(&self) -> Vec<u16> {
        self.nack_receiver
            .as_ref()
            .map(|n| n.missing.keys().map(|&e| e as u16).collect())
            .unwrap_or_default()
    }

    /// Starts keeping sent packets of a stream and repairing them on RTX (see [`RtxConfig`]);
    /// replaces an earlier configuration and its history.
    pub fn enable_rtx(&mut self, config: RtxConfig) {
        self.rtx_sender = Some(RtxSender {
            next_sequence: config.initial_sequence,
            config,
            history: VecDeque::new(),
            stats: RtxStats::default(),
        });
    }

    /// The RTX sender's counters, once [`Self::enable_rtx`] was called.
    pub fn rtx_stats(&self) -> Option<RtxStats> {
        self.rtx_sender.as_ref().map(|r| r.stats)
    }

    /// Starts reporting received packets in transport-wide congestion control feedback, like
    /// a browser that negotiated `transport-cc`: every authenticated RTP packet whose header
    /// extension `extension_id` holds a two-byte transport-wide sequence number is recorded
    /// with its arrival time (a [`TwccRecorder`]), and every `interval` (browsers: 50–100 ms)
    /// what was recorded since the last report is sent as RTPFB/15 feedback from
    /// [`Self::rtcp_ssrc`], as many protected SRTCP datagrams as needed (each at most
    /// [`MAX_FEEDBACK_SIZE`] bytes of RTCP). Nothing is sent while nothing new arrived.
    /// Replaces an earlier configuration and its state.
    pub fn enable_twcc_feedback(&mut self, now: Instant, extension_id: u8, interval: Duration) {
        let interval = interval.max(Duration::from_millis(1));
        self.twcc = Some(TwccReceiver {
            extension_id,
            interval,
            recorder: TwccRecorder::new(),
            next_feedback: now + interval,
            media_ssrc: None,
            stats: TwccFeedbackStats::default(),
        });
    }

    /// The transport-wide feedback counters, once [`Self::enable_twcc_feedback`] was called.
    pub fn twcc_stats(&self) -> Option<TwccFeedbackStats> {
        self.twcc.as_ref().map(|t| t.stats)
    }

    fn twcc_timeout(&mut self, now: Instant) {
        let rtcp_ssrc = self.config.rtcp_ssrc;
        let connected = self.srtp_out.is_some();
        let Some(twcc) = self.twcc.as_mut() else {
            return;
        };
        if now < twcc.next_feedback {
            return;
        }
        // Keep the cadence, but never schedule into the past after a long jump of time.
        twcc.next_feedback =
            (twcc.next_feedback + twcc.interval).max(now + Duration::from_millis(1));
        if !connected || !twcc.recorder.has_unreported() {
            return;
        }
        let mut out = Vec::new();
        let media_ssrc = twcc.media_ssrc.unwrap_or(0);
        if !twcc
            .recorder
            .build_feedback(now, rtcp_ssrc, media_ssrc, &mut out)
        {
            return;
        }
        // One datagram per packet group that fits the size limit, as libwebrtc sends them.
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        for packet in feedback_packets(&out) {
            twcc.stats.feedback_packets += 1;
            if !current.is_empty() && current.len() + packet.len() > MAX_FEEDBACK_SIZE {
                datagrams.push(std::mem::take(&mut current));
            }
            current.extend_from_slice(packet);
        }
        if !current.is_empty() {
            datagrams.push(current);
        }
        twcc.stats.feedback_datagrams += datagrams.len() as u64;
        for compound in datagrams {
            // Only fails before keys exist, checked above.
            let _ = self.send_rtcp(now, &compound);
        }
    }

    /// Sends the packet first sent as `sequence_number` again, on the RTX stream, now (each
    /// call a new RTX packet, so calling it twice makes a duplicate repair). Returns whether the
    /// history still held it.
    pub fn send_rtx(&mut self, now: Instant, sequence_number: u16) -> Result<bool, SimPeerError> {
        let Some(rtx) = self.rtx_sender.as_mut() else {
            return Ok(false);
        };
        let Some(original) = rtx
            .history
            .iter()
            .rev()
            .find(|p| p.sequence_number == sequence_number)
            .cloned()
        else {
            rtx.stats.unavailable += 1;
            return Ok(false);
        };
        let Some(&(_, rtx_pt)) = rtx
            .config
            .payload_types
            .iter()
            .find(|(media, _)| *media == original.payload_type)
        else {
            rtx.stats.unavailable += 1;
            return Ok(false);
        };
        let rtx_ssrc = rtx.config.rtx_ssrc;
        let rtx_seq = rtx.next_sequence;
        rtx.next_sequence = rtx.next_sequence.wrapping_add(1);
        rtx.stats.sent += 1;
        let mut payload = Vec::with_capacity(original.payload.len() + 2);
        payload.extend_from_slice(&sequence_number.to_be_bytes());
        payload.extend_from_slice(&original.payload);
        let extensions: Vec<(u8, &[u8])> = original
            .extensions
            .iter()
            .map(|(id, v)| (*id, v.as_slice()))
            .collect();
        self.send_rtp(
            now,
            rtx_ssrc,
            rtx_pt,
            rtx_seq,
            original.timestamp,
            original.marker,
            &extensions,
            &payload,
        )?;
        Ok(true)
    }

    /// Answers the NACKs recorded from index `first_new` on, if the RTX sender is on.
    fn answer_nacks(&mut self, now: Instant, first_new: usize) {
        let Some(rtx) = self.rtx_sender.as_mut() else {
            return;
        };
        let media_ssrc = rtx.config.media_ssrc;
        let wanted: Vec<u16> = self
            .received_rtcp
            .nack_requests
            .get(first_new..)
            .unwrap_or(&[])
            .iter()
            .filter(|r| r.media_ssrc == media_ssrc)
            .flat_map(|r| r.sequences.iter().copied())
            .collect();
        rtx.stats.nacked += wanted.len() as u64;
        if !rtx.config.answer_nacks {
            return;
        }
        for seq in wanted {
            // Only fails before keys exist; the NACK could not have arrived then.
            let _ = self.send_rtx(now, seq);
        }
    }

    /// Sends a receiver report about the watched stream, with a NACK for `lost` if any.
    fn send_feedback(&mut self, now: Instant, lost: &[u16]) {
        let rtcp_ssrc = self.config.rtcp_ssrc;
        let Some(receiver) = self.nack_receiver.as_mut() else {
            return;
        };
        let media_ssrc = receiver.config.media_ssrc;
        let last_sr = self.last_sender_reports.get(&media_ssrc).copied();
        let block = receiver.report_block(now, last_sr);
        let mut buf = Vec::new();
        rtcp::write_receiver_report(&mut buf, rtcp_ssrc, block.as_slice());
        receiver.stats.receiver_reports += 1;
        if !lost.is_empty() {
            rtcp::write_nack(&mut buf, rtcp_ssrc, media_ssrc, lost);
            receiver.stats.nack_packets += 1;
            receiver.stats.nack_items += lost.len() as u64;
        }
        // Only fails before keys exist.
        let _ = self.send_rtcp(now, &buf);
    }

    fn nack_timeout(&mut self, now: Instant) {
        let Some(receiver) = self.nack_receiver.as_mut() else {
            return;
        };
        let mut lost = Vec::new();
        let mut report = false;
        if receiver.next_poll.is_some_and(|t| now >= t) {
            lost = receiver.poll(now);
            receiver.next_poll =
                (!receiver.missing.is_empty()).then(|| now + receiver.config.interval);
        }
        if let (Some(at), Some(interval)) = (receiver.next_report, receiver.config.report_interval)
            && now >= at
        {
            receiver.next_report = Some(now + interval);
            report = true;
        }
        if (report || !lost.is_empty()) && self.srtp_out.is_some() {
            self.send_feedback(now, &lost);
        }
    }

    /// Forgets received RTP and RTCP (counters in [`Self::stats`] stay).
    pub fn clear_received(&mut self) {
        self.received_rtp.clear();
        self.received_rtcp = ReceivedRtcp::default();
    }

    /// Counters.
    pub fn stats(&self) -> SimPeerStats {
        self.stats
    }
}

/// Writes a plaintext RTP packet; returns it and its header length. Extensions use the
/// one-byte form (RFC 8285) when every id is 1..=14 and every value 1..=16 bytes long,
/// otherwise the two-byte form.
pub fn write_rtp_packet(
    ssrc: u32,
    payload_type: u8,
    sequence_number: u16,
    timestamp: u32,
    marker: bool,
    extensions: &[(u8, &[u8])],
    payload: &[u8],
) -> Result<(Vec<u8>, usize), SimPeerError> {
    let mut out = Vec::with_capacity(12 + payload.len() + 64);
    out.push(if extensions.is_empty() { 0x80 } else { 0x90 });
    out.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.extend_from_slice(&sequence_number.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if !extensions.is_empty() {
        let one_byte = extensions
            .iter()
            .all(|(id, v)| (1..=14).contains(id) && (1..=16).contains(&v.len()));
        for (id, v) in extensions {
            if *id == 0 || (one_byte && *id == 15) || v.len() > 255 {
                return Err(SimPeerError::BadExtension {
                    id: *id,
                    len: v.len(),
                });
            }
        }
        let block_start = out.len();
        out.extend_from_slice(if one_byte {
            &[0xBE, 0xDE]
        } else {
            &[0x10, 0x00]
        });
        out.extend_from_slice(&[0, 0]);
        for (id, v) in extensions {
            if one_byte {
                out.push((id << 4) | ((v.len() - 1) as u8 & 0x0f));
            } else {
                out.push(*id);
                out.push(v.len() as u8);
            }
            out.extend_from_slice(v);
        }
        while (out.len() - block_start) % 4 != 0 {
            out.push(0);
        }
        let words = u16::try_from((out.len() - block_start - 4) / 4)
            .map_err(|_| SimPeerError::TooLarge(out.len()))?;
        if let Some(field) = out.get_mut(block_start + 2..block_start + 4) {
            field.copy_from_slice(&words.to_be_bytes());
        }
    }
    let header_len = out.len();
    out.extend_from_slice(payload);
    if out.len() > 1500 {
        return Err(SimPeerError::TooLarge(out.len()));
    }
    Ok((out, header_len))
}

/// A peer's index in a [`SimNetwork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub usize);

/// Counters of a [`SimNetwork`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Datagrams delivered to the worker.
    pub to_worker: u64,
    /// Datagrams delivered to peers.
    pub to_peers: u64,
    /// Datagrams lost on purpose (simulated loss or the drop filter).
    pub lost: u64,
    /// Datagrams addressed to nobody on the network.
    pub undeliverable: u64,
    /// Datagrams tail-dropped by the bottleneck buffer of a link ([`SimNetwork::set_link`]).
    /// Random loss on a link counts in [`Self::lost`].
    pub queue_dropped: u64,
    /// Times time had to be forced forward because a deadline did not move.
    pub stuck_timers: u64,
}

/// A datagram in flight, as a [`SimNetwork`] drop filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Sender.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: &'a [u8],
}

/// Decides whether to drop a datagram (`true` drops it): targeted loss for tests.
pub type DropFilter = Box<dyn FnMut(&Datagram<'_>) -> bool + Send>;

/// One direction of the link between a peer and the rest of the network (see
/// [`SimNetwork::set_link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Datagrams addressed to the peer: its downlink (worker → peer).
    ToPeer,
    /// Datagrams the peer sends: its uplink (peer → worker).
    FromPeer,
}

/// A simulated link: a bottleneck FIFO serialising datagrams at [`Self::capacity_bps`] with a
/// tail-drop buffer of [`Self::queue_bytes`], then [`Self::delay`] ± [`Self::jitter`] of
/// propagation, then random [`Self::loss`]. Attach one to a direction of a peer's address with
/// [`SimNetwork::set_link`]. All randomness comes from generators seeded by [`Self::seed`], so
/// a link replays the same datagram schedule for the same traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Bottleneck rate in bits per second; `None` is unlimited (no serialisation, no queue).
    /// A datagram of `n` bytes occupies the bottleneck for `n * 8 / capacity_bps` seconds.
    /// `Some(0)` is taken as 1 bit/s: a stalled link (its queue fills, then tail-drops).
    pub capacity_bps: Option<u64>,
    /// One-way propagation delay after the bottleneck (added to [`SimNetwork::set_latency`]).
    pub delay: Duration,
    /// Each datagram's propagation delay is `delay + j`, `j` uniform in `[-jitter, +jitter]`
    /// (never below zero: with `jitter > delay` the low end is clamped at `delay - delay`).
    /// Unless [`Self::allow_reordering`], a datagram never arrives before the one sent ahead
    /// of it on the link (it waits for it, as behind a FIFO), which keeps every arrival within
    /// `delay ± jitter` of its departure from the bottleneck.
    pub jitter: Duration,
    /// Lets jitter reorder datagrams: each one keeps its own `delay + j`, so a datagram can be
    /// overtaken only by one that left the bottleneck less than `2 * jitter` after it.
    pub allow_reordering: bool,
    /// Probability that a datagram that went through the bottleneck is lost on the way
    /// (it still occupied the bottleneck).
    pub loss: f64,
    /// Tail-drop limit of the bottleneck buffer: a datagram is dropped when the bytes not yet
    /// serialised (the rest of the one on the wire included) plus its own would exceed this.
    /// The waiting time before serialisation therefore stays below `queue_bytes * 8 /
    /// capacity_bps`. `usize::MAX` (the default) never drops. Unused without a capacity.
    pub queue_bytes: usize,
    /// Seeds the jitter and loss generators (two independent streams).
    pub seed: u64,
    /// Interval of the link's time series ([`SimNetwork::link_series`]); 100 ms by default.
    /// Intervals are aligned on the network's start, so series of different links line up.
    pub sample_interval: Duration,
}

impl Default for LinkConfig {
    /// An unlimited, instantaneous, lossless link (behaves as no link at all, but counts).
    fn default() -> Self {
        Self {
            capacity_bps: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            allow_reordering: false,
            loss: 0.0,
            queue_bytes: usize::MAX,
            seed: 1,
            sample_interval: Duration::from_millis(100),
        }
    }
}

impl LinkConfig {
    /// A bottleneck of `capacity_bps` with a buffer of `queue_bytes`, no delay, no loss.
    pub fn bottleneck(capacity_bps: u64, queue_bytes: usize) -> Self {
        Self {
            capacity_bps: Some(capacity_bps),
            queue_bytes,
            ..Self::default()
        }
    }

    /// The buffer that holds `queue_delay` worth of data at `capacity_bps`.
    pub fn queue_bytes_for(capacity_bps: u64, queue_delay: Duration) -> usize {
        let bytes = u128::from(capacity_bps) * queue_delay.as_nanos() / 8_000_000_000;
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

/// Counters of one direction of a link, since [`SimNetwork::set_link`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams handed to the link.
    pub offered_datagrams: u64,
    /// Bytes handed to the link.
    pub offered_bytes: u64,
    /// Datagrams that came out of the link at their destination.
    pub delivered_datagrams: u64,
    /// Bytes that came out of the link.
    pub delivered_bytes: u64,
    /// Datagrams tail-dropped by the bottleneck buffer.
    pub queue_dropped_datagrams: u64,
    /// Bytes tail-dropped by the bottleneck buffer.
    pub queue_dropped_bytes: u64,
    /// Datagrams lost after the bottleneck ([`LinkConfig::loss`]).
    pub lost_datagrams: u64,
    /// Bytes lost after the bottleneck.
    pub lost_bytes: u64,
}

/// Distribution of the queueing delays (waiting time in the bottleneck buffer before
/// serialisation starts) of the datagrams a link accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelaySummary {
    /// Samples (datagrams accepted by the buffer).
    pub count: usize,
    /// Median (nearest rank).
    pub p50: Duration,
    /// 95th percentile (nearest rank).
    pub p95: Duration,
    /// Largest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

impl DelaySummary {
    /// The summary of `samples` (all zero when there are none).
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * sorted.len() as f64).ceil() as usize).saturating_sub(1);
            sorted.get(i).copied().unwrap_or_default()
        };
        let total: u128 = sorted.iter().map(Duration::as_nanos).sum();
        let mean = total / sorted.len() as u128;
        Self {
            count: sorted.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            max: sorted.last().copied().unwrap_or_default(),
            mean: Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX)),
        }
    }
}

/// One interval of a link's time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSample {
    /// Start of the interval, since the network's start ([`SimNetwork::elapsed`]).
    pub start: Duration,
    /// Length of the interval.
    pub duration: Duration,
    /// Bytes offered to the link during the interval.
    pub offered_bytes: u64,
    /// Bytes that came out of the link during the interval.
    pub delivered_bytes: u64,
    /// Datagrams that came out of the link during the interval.
    pub delivered_datagrams: u64,
    /// Delivered bits per second over the interval.
    pub delivered_bps: u64,
    /// Datagrams tail-dropped during the interval.
    pub queue_dropped: u64,
    /// Datagrams lost after the bottleneck during the interval.
    pub lost: u64,
    /// Queueing delay at the end of the interval: how long a datagram offered then would
    /// wait before its serialisation starts.
    pub queue_delay: Duration,
    /// Bytes not yet serialised at the end of the interval.
    pub queue_bytes: usize,
    /// The bottleneck's capacity at the end of the interval.
    pub capacity_bps: Option<u64>,
}

/// Everything known about one direction of a link, for scenario reports (its `Display` is a
/// small table).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkReport {
    /// The peer address the link is attached to.
    pub addr: SocketAddr,
    /// The direction.
    pub direction: Direction,
    /// The current configuration.
    pub config: LinkConfig,
    /// Counters.
    pub stats: LinkStats,
    /// Queueing delays of the accepted datagrams.
    pub queue_delay: DelaySummary,
    /// The completed intervals of the time series.
    pub series: Vec<LinkSample>,
}

impl std::fmt::Display for LinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        let capacity = self
            .config
            .capacity_bps
            .map_or_else(|| "unlimited".to_owned(), |c| format!("{c} bit/s"));
        writeln!(
            f,
            "link {} {:?}: {capacity}, delay {:?} ± {:?}, loss {}, queue {} B",
            self.addr,
            self.direction,
            self.config.delay,
            self.config.jitter,
            self.config.loss,
            self.config.queue_bytes
        )?;
        writeln!(
            f,
            "  offered {} dgrams / {} B, delivered {} / {} B, queue-dropped {} / {} B, lost {} / {} B",
            s.offered_datagrams,
            s.offered_bytes,
            s.delivered_datagrams,
            s.delivered_bytes,
            s.queue_dropped_datagrams,
            s.queue_dropped_bytes,
            s.lost_datagrams,
            s.lost_bytes
        )?;
        let d = &self.queue_delay;
        writeln!(
            f,
            "  queueing delay: {} samples, p50 {:?}, p95 {:?}, max {:?}, mean {:?}",
            d.count, d.p50, d.p95, d.max, d.mean
        )?;
        writeln!(
            f,
            "  {:>9} {:>12} {:>8} {:>6} {:>12} {:>9}",
            "t (s)", "kbit/s", "drops", "lost", "queue delay", "queue B"
        )?;
        for x in &self.series {
            writeln!(
                f,
                "  {:>9.3} {:>12.1} {:>8} {:>6} {:>12?} {:>9}",
                x.start.as_secs_f64(),
                x.delivered_bps as f64 / 1000.0,
                x.queue_dropped,
                x.lost,
                x.queue_delay,
                x.queue_bytes
            )?;
        }
        Ok(())
    }
}

/// A datagram accepted by a capacity-limited link and not yet fully serialised.
#[derive(Debug, Clone)]
struct Queued {
    offered: Instant,
    /// Serialisation start and end.
    start: Instant,
    end: Instant,
    bytes: usize,
    /// The drawn jitter, in nanoseconds.
    jitter_ns: i64,
    /// When it leaves the link (kept for lost datagrams too, for the order of the next ones).
    arrival: Instant,
    /// Its key in [`SimNetwork::in_flight`] and the network latency added to `arrival`
    /// there; `None` when lost after the bottleneck.
    flight: Option<((Instant, u64), Duration)>,
    /// Its queueing-delay sample.
    sample: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    offered_bytes: u64,
    delivered_bytes: u64,
    delivered_datagrams: u64,
    queue_dropped: u64,
    lost: u64,
}

/// What a link did with a datagram.
enum LinkOutcome {
    /// Tail-dropped by the bottleneck buffer.
    QueueDropped,
    /// Lost after the bottleneck.
    Lost,
    /// Leaves the link at this instant.
    Arrives(Instant),
}

/// One direction of a link and its state.
#[derive(Debug, Clone)]
struct Link {
    config: LinkConfig,
    jitter_rng: SimRng,
    loss_rng: SimRng,
    /// Accepted datagrams whose serialisation has not ended (capacity-limited links only).
    queue: VecDeque<Queued>,
    /// Bytes of the datagrams in `queue`.
    queued_bytes: usize,
    /// Arrival of the last datagram that left `queue` (or of the last one on an unlimited link).
    settled_arrival: Option<Instant>,
    stats: LinkStats,
    delay_samples: Vec<Duration>,
    series: Vec<LinkSample>,
    bucket: Bucket,
    bucket_start: Instant,
    origin: Instant,
}

fn loss_seed(seed: u64) -> u64 {
    SimRng::new(seed ^ 0x6C6F_7373_5F72_6E67).next_u64()
}

/// Nanoseconds to serialise `bits` at `capacity` bit/s, rounded up (capacity 0 counts as 1).
fn serialisation_time(bits: u128, capacity: u64) -> Duration {
    let nanos = (bits * 1_000_000_000).div_ceil(u128::from(capacity.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn sanitize(mut config: LinkConfig) -> LinkConfig {
    config.loss = if config.loss.is_nan() {
        0.0
    } else {
        config.loss.clamp(0.0, 1.0)
    };
    if config.sample_interval.is_zero() {
        config.sample_interval = Duration::from_millis(100);
    }
    config
}

impl Link {
    fn new(config: LinkConfig, now: Instant, origin: Instant) -> Self {
        let config = sanitize(config);
        let interval = config.sample_interval.as_nanos().max(1);
        let since = now.saturating_duration_since(origin).as_nanos();
        let aligned = since - since % interval;
        let bucket_start = origin + Duration::from_nanos(u64::try_from(aligned).unwrap_or(0));
        Self {
            jitter_rng: SimRng::new(config.seed),
            loss_rng: SimRng::new(loss_seed(config.seed)),
            config,
            queue: VecDeque::new(),
            queued_bytes: 0,
            settled_arrival: None,
            stats: LinkStats::default(),
            delay_samples: Vec::new(),
            series: Vec::new(),
            bucket: Bucket::default(),
            bucket_start,
            origin,
        }
    }

    /// Forgets the datagrams whose serialisation ended by `now`.
    fn pop_finished(&mut self, now: Instant) {
        while let Some(q) = self.queue.front() {
            if q.end > now {
                break;
            }
            self.queued_bytes = self.queued_bytes.saturating_sub(q.bytes);
            self.settled_arrival = Some(q.arrival);
            self.queue.pop_front();
        }
    }

    /// Bytes not yet serialised at `at` (which must not be before the last change).
    fn backlog_at(&self, at: Instant) -> usize {
        let capacity = self.config.capacity_bps.unwrap_or(u64::MAX).max(1);
        let mut total = 0usize;
        for q in &self.queue {
            if q.end <= at {
                continue;
            }
            if q.start < at {
                let bits = (q.end - at).as_nanos() * u128::from(capacity);
                let bytes = usize::try_from(bits.div_ceil(8_000_000_000)).unwrap_or(usize::MAX);
                total = total.saturating_add(bytes.min(q.bytes));
            } else {
                total = total.saturating_add(q.bytes);
            }
        }
        total
    }

    /// The queueing delay a datagram offered at `at` would see.
    fn queue_delay_at(&self, at: Instant) -> Duration {
        self.queue
            .back()
            .map_or(Duration::ZERO, |q| q.end.saturating_duration_since(at))
    }

    /// Closes the time-series intervals that ended by `now`.
    fn roll(&mut self, now: Instant) {
        let interval = self.config.sample_interval;
        while self.bucket_start + interval <= now {
            let end = self.bucket_start + interval;
            let b = std::mem::take(&mut self.bucket);
            let bps =
                u128::from(b.delivered_bytes) * 8 * 1_000_000_000 / interval.as_nanos().max(1);
            self.series.push(LinkSample {
                start: self.bucket_start.saturating_duration_since(self.origin),
                duration: interval,
                offered_bytes: b.offered_bytes,
                delivered_bytes: b.delivered_bytes,
                delivered_datagrams: b.delivered_datagrams,
                delivered_bps: u64::try_from(bps).unwrap_or(u64::MAX),
                queue_dropped: b.queue_dropped,
                lost: b.lost,
                queue_delay: self.queue_delay_at(end),
                queue_bytes: self.backlog_at(end),
                capacity_bps: self.config.capacity_bps,
            });
            self.bucket_start = end;
        }
    }

    /// When a datagram that left the bottleneck at `departure` with jitter `jitter_ns`
    /// arrives, the previous datagram on the link arriving at `previous`.
    fn arrival(&self, departure: Instant, jitter_ns: i64, previous: Option<Instant>) -> Instant {
        let delay = self.config.delay.as_nanos() as i128 + i128::from(jitter_ns);
        let delay = Duration::from_nanos(u64::try_from(delay.max(0)).unwrap_or(u64::MAX));
        let at = departure + delay;
        match previous {
            Some(p) if !self.config.allow_reordering && p > at => p,
            _ => at,
        }
    }

    fn previous_arrival(&self) -> Option<Instant> {
        self.queue
            .back()
            .map(|q| q.arrival)
            .or(self.settled_arrival)
    }

    /// Takes a datagram of `bytes` at `now`.
    fn offer(&mut self, now: Instant, bytes: usize) -> LinkOutcome {
        self.roll(now);
        self.pop_finished(now);
        let size = bytes as u64;
        self.stats.offered_datagrams += 1;
        self.stats.offered_bytes += size;
        self.bucket.offered_bytes += size;
        let (departure, wait, start) = match self.config.capacity_bps {
            Some(capacity) => {
                if self.backlog_at(now).saturating_add(bytes) > self.config.queue_bytes {
                    self.stats.queue_dropped_datagrams += 1;
                    self.stats.queue_dropped_bytes += size;
                    self.bucket.queue_dropped += 1;
                    return LinkOutcome::QueueDropped;
                }
                let start = self.queue.back().map_or(now, |q| q.end.max(now));
                let end = start + serialisation_time(u128::from(size) * 8, capacity);
                (end, start - now, start)
            }
            None => (now, Duration::ZERO, now),
        };
        let jitter = i64::try_from(self.config.jitter.as_nanos()).unwrap_or(i64::MAX / 2);
        let jitter_ns = if jitter > 0 {
            let span = (jitter as u64).saturating_mul(2).saturating_add(1);
            self.jitter_rng.below(span) as i64 - jitter
        } else {
            0
        };
        let arrival = self.arrival(departure, jitter_ns, self.previous_arrival());
        let lost = self.config.loss > 0.0 && self.loss_rng.next_f64() < self.config.loss;
        let sample = self.delay_samples.len();
        self.delay_samples.push(wait);
        if self.config.capacity_bps.is_some() {
            self.queued_bytes = self.queued_bytes.saturating_add(bytes);
            self.queue.push_back(Queued {
                offered: now,
                start,
                end: departure,
                bytes,
                jitter_ns,
                arrival,
                flight: None,
                sample,
            });
        } else {
            self.settled_arrival = Some(arrival);
        }
        if lost {
            self.stats.lost_datagrams += 1;
            self.stats.lost_bytes += size;
            self.bucket.lost += 1;
            return LinkOutcome::Lost;
        }
        LinkOutcome::Arrives(arrival)
    }

    /// Records where the datagram just offered waits in the network's in-flight map.
    fn attach_flight(&mut self, key: (Instant, u64), latency: Duration) {
        if let Some(q) = self.queue.back_mut() {
            q.flight = Some((key, latency));
        }
    }

    /// Counts a datagram that came out of the link at `at`.
    fn delivered(&mut self, at: Instant, bytes: usize) {
        self.roll(at);
        self.stats.delivered_datagrams += 1;
        self.stats.delivered_bytes += bytes as u64;
        self.bucket.delivered_bytes += bytes as u64;
        self.bucket.delivered_datagrams += 1;
    }

    /// Applies `config` from `now` on: the datagrams still in the bottleneck are serialised
    /// at the new capacity (the one on the wire keeps the part already sent) and propagate
    /// with the new delay. Returns the in-flight keys to move (old, new).
    fn reconfigure(
        &mut self,
        now: Instant,
        config: LinkConfig,
    ) -> Vec<((Instant, u64), (Instant, u64))> {
        self.roll(now);
        self.pop_finished(now);
        let old_capacity = self.config.capacity_bps;
        let mut config = sanitize(config);
        // The series keeps its intervals.
        config.sample_interval = self.config.sample_interval;
        self.config = config;
        let mut moves = Vec::new();
        let mut previous = self.settled_arrival;
        let mut t = now;
        let mut queue = std::mem::take(&mut self.queue);
        for (i, q) in queue.iter_mut().enumerate() {
            let on_wire = i == 0 && q.start < now;
            let bits = if on_wire {
                let capacity = old_capacity.unwrap_or(u64::MAX).max(1);
                ((q.end - now).as_nanos() * u128::from(capacity))
                    .div_ceil(1_000_000_000)
                    .min(q.bytes as u128 * 8)
            } else {
                q.start = t;
                if let Some(s) = self.delay_samples.get_mut(q.sample) {
                    *s = t.saturating_duration_since(q.offered);
                }
                q.bytes as u128 * 8
            };
            q.end = match self.config.capacity_bps {
                Some(capacity) => t + serialisation_time(bits, capacity),
                None => t,
            };
            t = q.end;
            let arrival = self.arrival(q.end, q.jitter_ns, previous);
            previous = Some(arrival);
            q.arrival = arrival;
            if let Some((key, latency)) = q.flight {
                let new_key = (arrival + latency, key.1);
                if new_key != key {
                    moves.push((key, new_key));
                    q.flight = Some((new_key, latency));
                }
            }
        }
        self.queue = queue;
        self.pop_finished(now);
        moves
    }
}

/// The worker, its peers and the wires between them, on virtual time.
pub struct SimNetwork {
    worker: Worker,
    worker_addr: SocketAddr,
    peers: Vec<SimPeer>,
    now: Instant,
    start: Instant,
    events: Vec<(Instant, WorkerEvent)>,
    loss: f64,
    rng: SimRng,
    stats: NetworkStats,
    sent_to: HashMap<SocketAddr, u64>,
    filter: Option<DropFilter>,
    link_loss: Vec<LinkLoss>,
    latency: Duration,
    /// Delayed datagrams by arrival time (and order of sending, to keep FIFO per instant).
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    flights: u64,
    /// Link models by peer address and direction.
    links: BTreeMap<(SocketAddr, Direction), Link>,
}

/// Random loss on the datagrams of one direction of one link.
struct LinkLoss {
    from: Option<SocketAddr>,
    to: Option<SocketAddr>,
    probability: f64,
    rng: SimRng,
}

struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
    /// The link it crosses, whose delivery counters it updates when it arrives.
    link: Option<(SocketAddr, Direction)>,
}

/// Deliveries in one [`SimNetwork::deliver`] before it gives up (a ping-pong that never ends).
const MAX_DELIVERY_ROUNDS: usize = 100_000;
/// Timeouts handled at one instant before time is forced forward.
const MAX_SPINS: u32 = 10_000;

impl SimNetwork {
    /// A network with a fresh worker reachable at `worker_addr` (its only announced address).
    pub fn new(worker_addr: SocketAddr) -> Result<Self, WorkerError> {
        let now = Instant::now();
        let config = WorkerConfig {
            announced_addresses: vec![worker_addr],
            ..WorkerConfig::default()
        };
        let worker = Worker::new(config, now, sim_wall_clock())?;
        Ok(Self::with_worker(worker, worker_addr, now))
    }

    /// A network around an existing worker; virtual time starts at `now`.
    pub fn with_worker(worker: Worker, worker_addr: SocketAddr, now: Instant) -> Self {
        Self {
            worker,
            worker_addr,
            peers: Vec::new(),
            now,
            start: now,
            events: Vec::new(),
            loss: 0.0,
            rng: SimRng::new(1),
            stats: NetworkStats::default(),
            sent_to: HashMap::new(),
            filter: None,
            link_loss: Vec::new(),
            latency: Duration::ZERO,
            in_flight: BTreeMap::new(),
            flights: 0,
            links: BTreeMap::new(),
        }
    }

    /// Loses each datagram (either direction) with `probability`, drawn from `seed`.
    pub fn set_loss(&mut self, probability: f64, seed: u64) {
        self.loss = probability.clamp(0.0, 1.0);
        self.rng = SimRng::new(seed);
    }

    /// Also loses each datagram sent by `from` (any sender when `None`) to `to` (any
    /// destination when `None`) with `probability`, drawn from its own generator seeded by
    /// `seed`: loss on one leg only (e.g. from the worker to one subscriber). Rules add up.
    pub fn add_link_loss(
        &mut self,
        from: Option<SocketAddr>,
        to: Option<SocketAddr>,
        probability: f64,
        seed: u64,
    ) {
        self.link_loss.push(LinkLoss {
            from,
            to,
            probability: probability.clamp(0.0, 1.0),
            rng: SimRng::new(seed),
        });
    }

    /// Removes every [`Self::add_link_loss`] rule.
    pub fn clear_link_loss(&mut self) {
        self.link_loss.clear();
    }

    /// Delays every datagram sent from now on by `latency` (one way; zero, the default,
    /// delivers at once). The round-trip time between a peer and the worker is twice this.
    /// A datagram crossing a link ([`Self::set_link`]) gets this on top of the link's delay.
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Datagrams sent and not yet arrived (with a latency or a link).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Attaches a link model to one direction of the peer address `addr` (see [`LinkConfig`]):
    /// [`Direction::ToPeer`] shapes the datagrams addressed to `addr`, [`Direction::FromPeer`]
    /// those it sends (a datagram crosses at most one link: its sender's uplink if it has one,
    /// otherwise its destination's downlink). A datagram first meets the network-wide loss,
    /// drop filter and [`Self::add_link_loss`] rules when it is sent, then the link: the
    /// bottleneck FIFO (tail drop), propagation delay and jitter, link loss, and arrives at
    /// its computed instant plus [`Self::set_latency`]; [`Self::advance`], [`Self::step`],
    /// [`Self::run_until`] and [`Self::next_timeout`] honour those instants. A link is tied to
    /// the address, not to the peer: a peer that migrates leaves it behind.
    ///
    /// Replacing an existing link keeps its counters and series, restarts its generators from
    /// the new seed and applies the new capacity and delay to the datagrams still in its
    /// bottleneck, as [`Self::update_link_capacity`] does (its series interval stays).
    pub fn set_link(&mut self, addr: SocketAddr, direction: Direction, config: LinkConfig) {
        let now = self.now;
        let key = (addr, direction);
        if let Some(link) = self.links.get_mut(&key) {
            link.jitter_rng = SimRng::new(config.seed);
            link.loss_rng = SimRng::new(loss_seed(config.seed));
            let moves = link.reconfigure(now, config);
            self.move_flights(moves);
        } else {
            self.links.insert(key, Link::new(config, now, self.start));
        }
    }

    /// Changes the capacity of a link from now on (`None`: unlimited): the datagrams still in
    /// its bottleneck are serialised at the new rate (the one being sent keeps the part
    /// already sent), so the delivered rate follows the step at once (after the propagation
    /// delay). Returns whether the link exists.
    pub fn update_link_capacity(
        &mut self,
        addr: SocketAddr,
        direction: Direction,
        capacity_bps: Option<u64>,
    ) -> bool {
        let now = self.now;
        let Some(link) = self.links.get_mut(&(addr, direction)) else {
            return false;
        };
        let config = LinkConfig {
            capacity_bps,
            ..link.config.clone()
        };
        let moves = link.reconfigure(now, config);
        self.move_flights(moves);
        true
    }

    /// Removes a link and returns its final report. Datagrams it already scheduled still
    /// arrive when they were due (uncounted).
    pub fn remove_link(&mut self, addr: SocketAddr, direction: Direction) -> Option<LinkReport> {
        let report = self.link_report(addr, direction);
        self.links.remove(&(addr, direction));
        report
    }

    /// A link's configuration.
    pub fn link_config(&self, addr: SocketAddr, direction: Direction) -> Option<&LinkConfig> {
        self.links.get(&(addr, direction)).map(|l| &l.config)
    }

    /// A link's counters.
    pub fn link_stats(&self, addr: SocketAddr, direction: Direction) -> Option<LinkStats> {
        self.links.get(&(addr, direction)).map(|l| l.stats)
    }

    /// The queueing delay of every datagram a link's buffer accepted, in order of offer
    /// (zero on an unlimited link).
    pub fn link_queue_delays(&self, addr: SocketAddr, direction: Direction) -> Option<&[Duration]> {
        self.links
            .get(&(addr, direction))
            .map(|l| l.delay_samples.as_slice())
    }

    /// p50/p95/max/mean of a link's queueing delays.
    pub fn link_queue_delay(&self, addr: SocketAddr, direction: Direction) -> Option<DelaySummary> {
        self.links
            .get(&(addr, direction))
            .map(|l| DelaySummary::of(&l.delay_samples))
    }

    /// A link's time series: one sample per completed [`LinkConfig::sample_interval`] (up to
    /// virtual now as of the last advance).
    pub fn link_series(&self, addr: SocketAddr, direction: Direction) -> Option<&[LinkSample]> {
        self.links
            .get(&(addr, direction))
            .map(|l| l.series.as_slice())
    }

    /// A link's bottleneck now: bytes not yet serialised, and the queueing delay a datagram
    /// offered now would see.
    pub fn link_backlog(
        &self,
        addr: SocketAddr,
        direction: Direction,
    ) -> Option<(usize, Duration)> {
        self.links
            .get(&(addr, direction))
            .map(|l| (l.backlog_at(self.now), l.queue_delay_at(self.now)))
    }

    /// Everything about one link, for a scenario report.
    pub fn link_report(&self, addr: SocketAddr, direction: Direction) -> Option<LinkReport> {
        self.links.get(&(addr, direction)).map(|l| LinkReport {
            addr,
            direction,
            config: l.config.clone(),
            stats: l.stats,
            queue_delay: DelaySummary::of(&l.delay_samples),
            series: l.series.clone(),
        })
    }

    /// Reports of every link, by address then direction.
    pub fn link_reports(&self) -> Vec<LinkReport> {
        self.links
            .keys()
            .filter_map(|(addr, direction)| self.link_report(*addr, *direction))
            .collect()
    }

    fn move_flights(&mut self, moves: Vec<((Instant, u64), (Instant, u64))>) {
        let moved: Vec<_> = moves
            .into_iter()
            .filter_map(|(old, new)| self.in_flight.remove(&old).map(|f| (new, f)))
            .collect();
        for (new, f) in moved {
            self.in_flight.insert(new, f);
        }
    }

    /// Closes the links' time-series intervals that ended by now.
    fn sync_links(&mut self) {
        let now = self.now;
        for link in self.links.values_mut() {
            link.roll(now);
        }
    }

    /// Drops every datagram `filter` returns `true` for (counted as lost), in addition to
    /// random loss; `None` removes the filter. The filter sees every datagram, when it is sent.
    pub fn set_drop_filter(&mut self, filter: Option<DropFilter>) {
        self.filter = filter;
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the network was created.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// The worker.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The worker, for control calls (use [`Self::now`] as their `now`).
    pub fn worker_mut(&mut self) -> &mut Worker {
        &mut self.worker
    }

    /// The worker's address.
    pub fn worker_addr(&self) -> SocketAddr {
        self.worker_addr
    }

    /// Adds a default peer at `addr`.
    pub fn add_peer(&mut self, addr: SocketAddr) -> Result<PeerId, SimPeerError> {
        let peer = SimPeer::new(addr, self.now)?;
        Ok(self.add(peer))
    }

    /// Adds a peer configured by `config`.
    pub fn add_peer_with(
        &mut self,
        addr: SocketAddr,
        config: SimPeerConfig,
    ) -> Result<PeerId, SimPeerError> {
        let peer = SimPeer::with_config(addr, self.now, config)?;
        Ok(self.add(peer))
    }

    /// Adds a peer built elsewhere.
    pub fn add(&mut self, peer: SimPeer) -> PeerId {
        self.peers.push(peer);
        PeerId(self.peers.len() - 1)
    }

    /// A peer.
    pub fn peer(&self, id: PeerId) -> Option<&SimPeer> {
        self.peers.get(id.0)
    }

    /// A peer, to make it act.
    pub fn peer_mut(&mut self, id: PeerId) -> Option<&mut SimPeer> {
        self.peers.get_mut(id.0)
    }

    /// Creates a transport on `router` for peer `id` (its fingerprint signalled, default options).
    pub fn create_transport(
        &mut self,
        id: PeerId,
        router: RouterId,
    ) -> Result<WebRtcTransportInfo, WorkerError> {
        let fingerprint = self.peers.get(id.0).map(SimPeer::fingerprint);
        let options = WebRtcTransportOptions {
            remote_fingerprint: fingerprint,
            ..WebRtcTransportOptions::default()
        };
        self.worker
            .create_webrtc_transport(self.now, router, options)
    }

    /// Makes peer `id` start ICE towards the transport of `info`.
    pub fn connect(&mut self, id: PeerId, info: &WebRtcTransportInfo) -> Result<(), SimPeerError> {
        let now = self.now;
        let peer = self.peers.get_mut(id.0).ok_or(SimPeerError::NoTransport)?;
        peer.connect(now, info)
    }

    /// Worker events so far, with when they happened.
    pub fn events(&self) -> &[(Instant, WorkerEvent)] {
        &self.events
    }

    /// Takes the worker events recorded so far.
    pub fn take_events(&mut self) -> Vec<(Instant, WorkerEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Whether `TransportConnected` was reported for `transport`, and with which profile.
    pub fn connected_profile(&self, transport: TransportId) -> Option<SrtpProfile> {
        self.events.iter().find_map(|(_, e)| match e {
            WorkerEvent::TransportConnected {
                transport: t,
                srtp_profile,
            } if *t == transport => Some(*srtp_profile),
            _ => None,
        })
    }

    /// When and why `transport` closed, if it did.
    pub fn closed(&self, transport: TransportId) -> Option<(Instant, crate::CloseReason)> {
        self.events.iter().find_map(|(at, e)| match e {
            WorkerEvent::TransportClosed {
                transport: t,
                reason,
            } if *t == transport => Some((*at, reason.clone())),
            _ => None,
        })
    }

    /// Counters.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    /// Datagrams the worker sent to `addr` (delivered, lost or undeliverable).
    pub fn datagrams_to(&self, addr: SocketAddr) -> u64 {
        self.sent_to.get(&addr).copied().unwrap_or(0)
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.worker.poll_event() {
            self.events.push((self.now, e));
        }
    }

    fn lose(&mut self, datagram: &Datagram<'_>) -> bool {
        let filtered = self.filter.as_mut().is_some_and(|f| f(datagram));
        if filtered || (self.loss > 0.0 && self.rng.next_f64() < self.loss) {
            self.stats.lost += 1;
            return true;
        }
        let mut lost = false;
        for rule in &mut self.link_loss {
            if rule.from.is_none_or(|a| a == datagram.from)
                && rule.to.is_none_or(|a| a == datagram.to)
                && rule.probability > 0.0
                && rule.rng.next_f64() < rule.probability
            {
                lost = true;
            }
        }
        if lost {
            self.stats.lost += 1;
        }
        lost
    }

    /// Delivers a datagram that has arrived at `to`.
    fn arrive(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let now = self.now;
        if to == self.worker_addr {
            self.stats.to_worker += 1;
            self.worker.handle_datagram(now, from, BytesMut::from(data));
        } else if let Some(peer) = self.peers.iter_mut().find(|p| p.addr() == to) {
            self.stats.to_peers += 1;
            peer.handle_datagram(now, data);
        } else {
            self.stats.undeliverable += 1;
        }
    }

    /// The link a datagram from `from` to `to` crosses.
    fn link_for(&self, from: SocketAddr, to: SocketAddr) -> Option<(SocketAddr, Direction)> {
        if self.links.is_empty() {
            return None;
        }
        [(from, Direction::FromPeer), (to, Direction::ToPeer)]
            .into_iter()
            .find(|key| self.links.contains_key(key))
    }

    /// Puts a datagram through link `key`: dropped, lost, or scheduled for its arrival.
    fn send_on_link(
        &mut self,
        key: (SocketAddr, Direction),
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) {
        let now = self.now;
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        match link.offer(now, data.len()) {
            LinkOutcome::QueueDropped => self.stats.queue_dropped += 1,
            LinkOutcome::Lost => self.stats.lost += 1,
            LinkOutcome::Arrives(arrival) => {
                let at = arrival + self.latency;
                if at <= now {
                    link.delivered(now, data.len());
                    self.arrive(from, to, data);
                } else {
                    self.flights += 1;
                    let flight = (at, self.flights);
                    link.attach_flight(flight, self.latency);
                    self.in_flight.insert(
                        flight,
                        InFlight {
                            from,
                            to,
                            data: data.to_vec(),
                            link: Some(key),
                        },
                    );
                }
            }
        }
    }

    /// Delivers a datagram that survived loss: through its link if it crosses one, else at
    /// once or after the latency.
    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        if let Some(key) = self.link_for(from, to) {
            self.send_on_link(key, from, to, data);
        } else if self.latency.is_zero() {
            self.arrive(from, to, data);
        } else {
            self.flights += 1;
            self.in_flight.insert(
                (self.now + self.latency, self.flights),
                InFlight {
                    from,
                    to,
                    data: data.to_vec(),
                    link: None,
                },
            );
        }
    }

    /// Hands `data` to the worker as if it came from `source`, now (no loss applied).
    /// Whatever the worker answers is delivered by the next [`Self::deliver`].
    pub fn inject(&mut self, source: SocketAddr, data: &[u8]) {
        self.stats.to_worker += 1;
        self.worker
            .handle_datagram(self.now, source, BytesMut::from(data));
        self.collect_events();
    }

    /// Moves every datagram queued right now one hop (worker → peers, peers → worker).
    /// Returns how many moved.
    pub fn deliver_round(&mut self) -> usize {
        let mut moved = 0;
        let now = self.now;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), f) = entry.remove_entry();
            moved += 1;
            if let Some(link) = f.link.and_then(|k| self.links.get_mut(&k)) {
                link.delivered(at, f.data.len());
            }
            self.arrive(f.from, f.to, &f.data);
        }
        while let Some(t) = self.worker.poll_transmit() {
            moved += 1;
            *self.sent_to.entry(t.destination).or_default() += 1;
            let datagram = Datagram {
                from: self.worker_addr,
                to: t.destination,
                data: &t.contents,
            };
            if !self.lose(&datagram) {
                let from = self.worker_addr;
                self.send(from, t.destination, &t.contents);
            }
            self.worker.recycle(t.contents);
        }
        let mut from_peers = Vec::new();
        for peer in &mut self.peers {
            let source = peer.addr();
            while let Some((dest, data)) = peer.poll_datagram() {
                from_peers.push((source, dest, data));
            }
        }
        for (source, dest, data) in from_peers {
            moved += 1;
            if self.lose(&Datagram {
                from: source,
                to: dest,
                data: &data,
            }) {
                continue;
            }
            self.send(source, dest, &data);
        }
        self.collect_events();
        moved
    }

    /// Delivers until nothing is in flight. Returns the datagrams moved.
    pub fn deliver(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..MAX_DELIVERY_ROUNDS {
            let moved = self.deliver_round();
            if moved == 0 {
                break;
            }
            total += moved;
        }
        total
    }

    /// The earliest deadline of the worker and the peers, or arrival of a delayed datagram.
    pub fn next_timeout(&self) -> Option<Instant> {
        let peers = self.peers.iter().filter_map(SimPeer::poll_timeout);
        let arrival = self.in_flight.keys().next().map(|(at, _)| *at);
        self.worker
            .poll_timeout()
            .into_iter()
            .chain(peers)
            .chain(arrival)
            .min()
    }

    fn fire_timeouts(&mut self) {
        let now = self.now;
        if self.worker.poll_timeout().is_some_and(|t| t <= now) {
            self.worker.handle_timeout(now);
            self.collect_events();
        }
        for peer in &mut self.peers {
            if peer.poll_timeout().is_some_and(|t| t <= now) {
                peer.handle_timeout(now);
            }
        }
    }

    /// Runs everything up to `target`: delivers, handles each deadline in order, and ends
    /// with virtual time at `target` (or later, if it already was).
    pub fn advance_to(&mut self, target: Instant) {
        let mut spins = 0u32;
        loop {
            self.deliver();
            let Some(next) = self.next_timeout() else {
                break;
            };
            if next > target {
                break;
            }
            if next <= self.now {
                spins += 1;
                if spins > MAX_SPINS {
                    // A deadline that handling does not move: step past it rather than spin.
                    self.stats.stuck_timers += 1;
                    spins = 0;
                    let forced = self.now + Duration::from_millis(1);
                    if forced > target {
                        break;
                    }
                    self.now = forced;
                }
            } else {
                spins = 0;
                self.now = next;
            }
            self.fire_timeouts();
        }
        if target > self.now {
            self.now = target;
        }
        self.fire_timeouts();
        self.deliver();
        self.sync_links();
    }

    /// [`Self::advance_to`] `now + duration`.
    pub fn advance(&mut self, duration: Duration) {
        let target = self.now + duration;
        self.advance_to(target);
    }

    /// Delivers what is in flight, then jumps to the next deadline and handles it. Returns
    /// the new virtual time, or `None` when nothing is scheduled.
    pub fn step(&mut self) -> Option<Instant> {
        self.deliver();
        let next = self.next_timeout()?;
        self.advance_to(next.max(self.now));
        Some(self.now)
    }

    /// Advances in steps until `done` holds or `limit` of virtual time has passed; returns
    /// whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.now + limit;
        self.deliver();
        loop {
            if done(self) {
                return true;
            }
            if self.now >= deadline {
                return false;
            }
            let next = self
                .next_timeout()
                .map_or(deadline, |t| t.clamp(self.now, deadline));
            // Never stand still: a deadline in the past is handled by advance_to itself.
            let target = if next <= self.now {
                (self.now + Duration::from_millis(1)).min(deadline)
            } else {
                next
            };
            self.advance_to(target);
        }
    }

    /// Runs until every peer in `ids` is connected, or `limit` passes.
    pub fn run_until_connected(&mut self, ids: &[PeerId], limit: Duration) -> bool {
        self.run_until(limit, |net| {
            ids.iter()
                .all(|id| net.peer(*id).is_some_and(SimPeer::is_connected))
        })
    }
}

/// A fixed wall clock for simulations: 2023-11-14T22:13:20Z.
pub fn sim_wall_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::twcc::TwccFeedback;

    const SERVER: &str = "127.0.0.1:4443";
    const TWCC_ID: u8 = 5;
    const MEDIA_SSRC: u32 = 0x4D45_4449;

    /// A peer with SRTP keys in place (no ICE or DTLS run), and the server's two contexts
    /// for the same keying material: what the peer receives is protected with the first, what
    /// it sends is unprotected with the second.
    fn keyed_peer(now: Instant) -> (SimPeer, SrtpContext, SrtpContext) {
        let profile = SrtpProfile::AeadAes128Gcm;
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| i as u8)
            .collect();
        let (client_out, client_in) =
            SrtpContext::from_keying_material(profile, &material, DtlsRole::Client).unwrap();
        let (server_out, server_in) =
            SrtpContext::from_keying_material(profile, &material, DtlsRole::Server).unwrap();
        let config = SimPeerConfig {
            consent_interval: None,
            ..SimPeerConfig::default()
        };
        let mut peer =
            SimPeer::with_config("127.0.0.1:5000".parse().unwrap(), now, config).unwrap();
        peer.server = Some(Server {
            addr: SERVER.parse().unwrap(),
            ufrag: "server".into(),
            key: IntegrityKey::new(b"server password"),
            fingerprint: peer.fingerprint(),
        });
        peer.ice_connected = true;
        peer.dtls_state = SimDtlsState::Connected(profile);
        peer.srtp_out = Some(client_out);
        peer.srtp_in = Some(client_in);
        (peer, server_out, server_in)
    }

    /// An SRTP packet from the server, stamped with `transport_seq` when given.
    fn server_rtp(srtp: &mut SrtpContext, seq: u16, transport_seq: Option<u16>) -> Vec<u8> {
        let value = transport_seq.map(u16::to_be_bytes);
        let extensions: Vec<(u8, &[u8])> = value
            .as_ref()
            .map(|v| vec![(TWCC_ID, v.as_slice())])
            .unwrap_or_default();
        let (mut packet, header_len) = write_rtp_packet(
            MEDIA_SSRC,
            96,
            seq,
            u32::from(seq) * 3000,
            false,
            &extensions,
            &[0x42; 200],
        )
        .unwrap();
        srtp.protect_rtp(&mut packet, header_len, 0).unwrap();
        packet
    }

    /// Runs the peer's timers up to `until` and returns the SRTCP datagrams it sent, decrypted.
    fn run_timers(peer: &mut SimPeer, server_in: &mut SrtpContext, until: Instant) -> Vec<Vec<u8>> {
        while let Some(t) = peer.poll_timeout().filter(|t| *t <= until) {
            peer.handle_timeout(t);
        }
        let mut out = Vec::new();
        while let Some((dest, mut data)) = peer.poll_datagram() {
            assert_eq!(dest, SERVER.parse::<SocketAddr>().unwrap());
            let len = server_in.unprotect_rtcp(&mut data).unwrap();
            data.truncate(len);
            out.push(data);
        }
        out
    }

    /// Every `(transport_seq, arrival µs)` status in `datagrams`, with the packets' sender
    /// SSRC checked.
    fn statuses(datagrams: &[Vec<u8>], sender: u32) -> Vec<(u16, Option<i64>)> {
        let mut all = Vec::new();
        for d in datagrams {
            assert!(d.len() <= MAX_FEEDBACK_SIZE, "{} bytes", d.len());
            for packet in feedback_packets(d) {
                let fb = TwccFeedback::parse(packet).unwrap();
                assert_eq!(fb.sender_ssrc, sender);
                assert_eq!(fb.media_ssrc, MEDIA_SSRC);
                all.extend(fb.arrivals());
            }
        }
        all
    }

    #[test]
    fn twcc_feedback_reports_each_stamped_arrival_once_per_interval() {
        let t0 = Instant::now();
        let (mut peer, mut server_out, mut server_in) = keyed_peer(t0);
        let interval = Duration::from_millis(50);
        peer.enable_twcc_feedback(t0, TWCC_ID, interval);
        assert_eq!(peer.poll_timeout(), Some(t0 + interval));

        // Transport sequence numbers 100..110 arrive 3 ms apart, 104 never does; one packet
        // without the extension must not disturb anything.
        for (i, tseq) in (100u16..110).enumerate() {
            if tseq == 104 {
                continue;
            }
            let at = t0 + Duration::from_millis(3 * i as u64);
            peer.handle_datagram(at, &server_rtp(&mut server_out, i as u16, Some(tseq)));
        }
        peer.handle_datagram(
            t0 + Duration::from_millis(31),
            &server_rtp(&mut server_out, 50, None),
        );
        // Nothing before the interval is up.
        assert!(run_timers(&mut peer, &mut server_in, t0 + Duration::from_millis(49)).is_empty());

        let datagrams = run_timers(&mut peer, &mut server_in, t0 + interval);
        assert_eq!(datagrams.len(), 1);
        let got = statuses(&datagrams, peer.rtcp_ssrc());
        let seqs: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (100..110).collect::<Vec<_>>());
        let first = got[0].1.unwrap();
        for (i, (tseq, arrival)) in got.iter().enumerate() {
            if *tseq == 104 {
                assert_eq!(*arrival, None, "104 was lost");
            } else {
                // Arrivals are exact to the 250 µs tick: 3 ms apart.
                assert_eq!(arrival.unwrap() - first, 3_000 * i as i64, "{tseq}");
            }
        }
        let stats = peer.twcc_stats().unwrap();
        assert_eq!((stats.stamped, stats.unstamped), (9, 1));
        assert_eq!((stats.feedback_packets, stats.feedback_datagrams), (1, 1));

        // An interval with nothing new sends nothing; the next arrival is reported alone.
        assert!(run_timers(&mut peer, &mut server_in, t0 + 2 * interval).is_empty());
        peer.handle_datagram(
            t0 + Duration::from_millis(120),
            &server_rtp(&mut server_out, 11, Some(110)),
        );
        let datagrams = run_timers(&mut peer, &mut server_in, t0 + 3 * interval);
        let got = statuses(&datagrams, peer.rtcp_ssrc());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 110);
        assert_eq!(got[0].1.unwrap() - first, 120_000);
    }

    #[test]
    fn twcc_feedback_splits_a_large_report_into_datagrams_that_fit() {
        let t0 = Instant::now();
        let (mut peer, mut server_out, mut server_in) = keyed_peer(t0);
        let interval = Duration::from_millis(100);
        peer.enable_twcc_feedback(t0, TWCC_ID, interval);
        // 2000 packets in 100 ms with irregular spacing (many large deltas) and a loss every
        // seventh: more statuses and deltas than one 1200-byte packet holds.
        let mut expected = Vec::new();
        for i in 0..2000u16 {
            let tseq = 65_000u16.wrapping_add(i); // across the wrap
            let at = t0 + Duration::from_micros(u64::from(i) * 40 + u64::from(i % 3) * 900);
            if i % 7 == 3 {
                expected.push((tseq, false));
                continue;
            }
            expected.push((tseq, true));
            peer.handle_datagram(at, &server_rtp(&mut server_out, i, Some(tseq)));
        }
        let datagrams = run_timers(&mut peer, &mut server_in, t0 + interval);
        assert!(datagrams.len() > 1, "one datagram for 2000 statuses");
        let got: Vec<(u16, bool)> = statuses(&datagrams, peer.rtcp_ssrc())
            .into_iter()
            .map(|(s, a)| (s, a.is_some()))
            .collect();
        assert_eq!(got, expected);
        let stats = peer.twcc_stats().unwrap();
        assert_eq!(stats.feedback_datagrams, datagrams.len() as u64);
        assert!(stats.feedback_packets >= stats.feedback_datagrams);
    }
}

//! One remote peer's ICE-lite + DTLS + SRTP session.
//!
//! The transport owns the security state of a peer: its ICE agent (which tuples are
//! validated, where media goes), its DTLS session and the two SRTP contexts. It also keeps
//! the SSRC → producer bindings learned from authenticated packets. It does not route media:
//! the [`crate::Worker`] does that, because routing spans transports.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::congestion_controller::CongestionController;
use crate::dtls::{DtlsCertificate, DtlsSession, Fingerprint};
use crate::ice_lite::IceLiteAgent;
use crate::srtp::{SrtpContext, SrtpProfile};
use crate::twcc::TwccRecorder;
use crate::{ConsumerId, ProducerId, RouterId, TransportId};

/// Which producer stream an incoming SSRC belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBinding {
    /// The producer.
    pub producer: ProducerId,
    /// Index of the stream (encoding) in the producer.
    pub stream: usize,
    /// Whether the SSRC is the stream's RTX (retransmission) SSRC.
    pub rtx: bool,
}

/// Time allowed from creation to DTLS completion.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Lifecycle of a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// Waiting for ICE and DTLS.
    Connecting,
    /// DTLS done, SRTP keys in place: media flows.
    Connected,
    /// DTLS failed, consent expired or closed: no media in or out.
    Closed,
}

/// What the embedder chooses when creating a transport.
#[derive(Debug, Clone)]
pub struct WebRtcTransportOptions {
    /// The peer's certificate fingerprint, if already known (from an offer).
    pub remote_fingerprint: Option<Fingerprint>,
    /// SRTP profiles in our preference order.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Whether the connect deadlines (ICE's first check, DTLS completion: 30 s each) run from
    /// creation. `false` for a transport created ahead of the offer that describes it (a
    /// subscriber's receive transport before anyone publishes): its deadlines start when
    /// [`crate::Worker::rearm_transport`] is called, so waiting for signaling never closes it.
    pub armed: bool,
}

impl Default for WebRtcTransportOptions {
    fn default() -> Self {
        Self {
            remote_fingerprint: None,
            srtp_profiles: vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
            armed: true,
        }
    }
}

/// What a signaling layer needs to describe the transport to the peer.
#[derive(Debug, Clone)]
pub struct WebRtcTransportInfo {
    /// The transport id.
    pub id: TransportId,
    /// Local ICE username fragment.
    pub ice_ufrag: String,
    /// Local ICE password.
    pub ice_pwd: String,
    /// Our DTLS fingerprint.
    pub fingerprint: Fingerprint,
    /// Our (ICE-lite, host) candidates: the worker's announced addresses.
    pub candidates: Vec<SocketAddr>,
}

/// Byte and packet counters of a transport.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransportStats {
    /// Datagrams received (any kind, accepted or not).
    pub datagrams_in: u64,
    /// RTP packets accepted.
    pub rtp_in: u64,
    /// RTP packets sent.
    pub rtp_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// RTCP packets accepted.
    pub rtcp_in: u64,
    /// RTCP packets sent.
    pub rtcp_out: u64,
}

/// One remote peer's transport.
pub struct WebRtcTransport {
    /// Its id.
    pub id: TransportId,
    /// The router it belongs to.
    pub router: RouterId,
    /// The ICE-lite agent.
    pub ice: IceLiteAgent,
    /// The DTLS session.
    pub dtls: DtlsSession,
    /// Inbound SRTP (the peer's keys), once DTLS is done.
    pub srtp_in: Option<SrtpContext>,
    /// Outbound SRTP (our keys), once DTLS is done.
    pub srtp_out: Option<SrtpContext>,
    /// Lifecycle.
    pub state: TransportState,
    /// Producers published over this transport.
    pub producers: Vec<ProducerId>,
    /// Consumers sending over this transport.
    pub consumers: Vec<ConsumerId>,
    /// SSRC → producer stream, bound only after a packet authenticated (or from signalling).
    pub ssrc_bindings: HashMap<u32, StreamBinding>,
    /// Consumer SSRC → consumer, for feedback from the subscriber.
    pub consumer_ssrcs: HashMap<u32, ConsumerId>,
    /// SSRC we use as RTCP sender for feedback and receiver reports.
    pub rtcp_ssrc: u32,
    /// When the next RTCP report is due.
    pub next_report: Instant,
    /// Whether the connect deadlines run (see [`WebRtcTransportOptions::armed`]).
    pub armed: bool,
    /// A transport not connected by then is closed (a stalled or abandoned handshake).
    pub connect_deadline: Instant,
    /// Arrivals of the publisher's transport-wide sequence numbers, for TWCC feedback.
    pub twcc: TwccRecorder,
    /// The transport-wide CC header extension id the publisher uses, if negotiated.
    pub twcc_extension: Option<u8>,
    /// When the next TWCC feedback is due.
    pub next_twcc_feedback: Instant,
    /// Byte and packet counters.
    pub stats: TransportStats,
    /// Congestion control toward the peer as a subscriber, once a consumer negotiated
    /// transport-wide sequence numbers.
    pub congestion: Option<Box<CongestionController>>,
    /// The bitrate last told to the peer as a publisher in REMB, if any.
    pub remb_estimate: Option<u64>,
}

impl WebRtcTransport {
    /// A new transport in the `Connecting` state.
    pub fn new(
        id: TransportId,
        router: RouterId,
        ice: IceLiteAgent,
        certificate: Arc<DtlsCertificate>,
        options: &WebRtcTransportOptions,
        rtcp_ssrc: u32,
        now: Instant,
    ) -> Self {
        Self {
            id,
            router,
            ice,
            dtls: DtlsSession::new(
                certificate,
                options.remote_fingerprint.clone(),
                options.srtp_profiles.clone(),
            ),
            srtp_in: None,
            srtp_out: None,
            state: TransportState::Connecting,
            producers: Vec::new(),
            consumers: Vec::new(),
            ssrc_bindings: HashMap::new(),
            consumer_ssrcs: HashMap::new(),
            rtcp_ssrc,
            next_report: now,
            armed: options.armed,
            connect_deadline: now + CONNECT_TIMEOUT,
            twcc: TwccRecorder::new(),
            twcc_extension: None,
            next_twcc_feedback: now,
            stats: TransportStats::default(),
            congestion: None,
            remb_estimate: None,
        }
    }

    /// Where packets for the peer go: the ICE-selected tuple, while the transport is open.
    pub fn destination(&self) -> Option<SocketAddr> {
        if self.state == TransportState::Closed {
            return None;
        }
        self.ice.selected_tuple()
    }

    /// Whether media can flow.
    pub fn is_connected(&self) -> bool {
        self.state == TransportState::Connected
    }
}

//! A lean WebRTC client for load: ICE (controlling, aggressive nomination), a DTLS client and
//! the SRTP keys it exports — the part of a browser a load generator needs, and nothing that
//! costs per packet.
//!
//! [`Handshake`] is sans-I/O: feed it datagrams and timeouts, take the datagrams it wants sent,
//! and once [`Handshake::is_done`] turn it into a [`Session`] (the two SRTP contexts and the
//! ICE credentials for consent checks). The DTLS endpoint is dropped then, so a connected
//! client costs a few hundred bytes. Unlike `sfu_core::sim_peer::SimPeer` nothing is recorded
//! per received packet: the caller checks packets in place. It must not open sockets or read
//! clocks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use sfu_core::Fingerprint;
use sfu_core::srtp::{DtlsRole, SrtpContext, SrtpProfile};
use sfu_core::stun::{IceRole, IntegrityKey, StunClass, StunMessage, write_binding_request};
use sfu_core::webrtc_transport::WebRtcTransportInfo;

const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// A host candidate's priority (type preference 126).
const CHECK_PRIORITY: u32 = 0x7E7F_1EFF;
/// Retransmission interval of an unanswered check.
const CHECK_RETRANSMIT: Duration = Duration::from_millis(200);
/// Short DTLS flights, as Chrome's: a lost flight during a mass connect costs 100 ms, not 1 s.
const DTLS_FLIGHT_INTERVAL: Duration = Duration::from_millis(100);

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Certificate or DTLS configuration failed.
    #[error("client configuration: {0}")]
    Config(String),
    /// The DTLS handshake failed.
    #[error("DTLS: {0}")]
    Dtls(String),
    /// The exported keys did not make SRTP contexts.
    #[error("SRTP: {0}")]
    Srtp(#[from] sfu_core::srtp::SrtpError),
    /// STUN encoding failed.
    #[error("STUN: {0}")]
    Stun(String),
}

/// A client's identity: its certificate, made once and shared by all clients of a run (the
/// SFU checks each transport's fingerprint, and all may be the same).
#[derive(Clone)]
pub struct ClientIdentity {
    certificate: Certificate,
    fingerprint: Fingerprint,
}

impl ClientIdentity {
    /// A fresh self-signed certificate.
    pub fn generate() -> Result<Self, ClientError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let certificate =
            Certificate::generate_self_signed(vec!["sfu-loadgen".to_owned()], provider.crypto())
                .map_err(|e| ClientError::Config(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| ClientError::Config("empty certificate chain".into()))?;
        let fingerprint = Fingerprint::of_der(der.as_ref());
        Ok(Self {
            certificate,
            fingerprint,
        })
    }

    /// The fingerprint to give the SFU (`WebRtcTransportOptions::remote_fingerprint`).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint.clone()
    }
}

/// What a client needs to know of its transport on the SFU, however it learnt it: from the
/// embedding API ([`WebRtcTransportInfo`]) or from the SDP the signaling server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransport {
    /// The SFU's ICE username fragment.
    pub ice_ufrag: String,
    /// The SFU's ICE password.
    pub ice_pwd: String,
    /// The SFU's DTLS certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// The SFU's (ICE-lite host) candidate the client talks to.
    pub address: SocketAddr,
}

impl ServerTransport {
    /// From what the worker answered; its first candidate is the one used.
    pub fn from_info(info: &WebRtcTransportInfo) -> Result<Self, ClientError> {
        let address = *info
            .candidates
            .first()
            .ok_or_else(|| ClientError::Config("the transport has no candidate".into()))?;
        Ok(Self {
            ice_ufrag: info.ice_ufrag.clone(),
            ice_pwd: info.ice_pwd.clone(),
            fingerprint: info.fingerprint.clone(),
            address,
        })
    }
}

/// ICE credentials toward the server, kept for consent checks after the handshake.
pub struct IceCredentials {
    username: String,
    key: IntegrityKey,
    tie_breaker: u64,
    next_transaction: u64,
}

impl IceCredentials {
    /// Writes a binding request (with USE-CANDIDATE) into `out`.
    pub fn write_check(&mut self, out: &mut Vec<u8>) -> Result<[u8; 12], ClientError> {
        self.next_transaction += 1;
        let mut transaction_id = [0u8; 12];
        transaction_id[..8].copy_from_slice(&self.tie_breaker.to_be_bytes());
        transaction_id[8..].copy_from_slice(&(self.next_transaction as u32).to_be_bytes());
        write_binding_request(
            &transaction_id,
            self.username.as_bytes(),
            &self.key,
            CHECK_PRIORITY,
            Some(IceRole::Controlling(self.tie_breaker)),
            true,
            out,
        )
        .map_err(|e| ClientError::Stun(e.to_string()))?;
        Ok(transaction_id)
    }

    /// Whether `data` is an authenticated success response to one of our checks.
    pub fn is_answer(&self, data: &[u8]) -> bool {
        StunMessage::parse(data).is_ok_and(|m| {
            m.class() == StunClass::SuccessResponse
                && m.verify_fingerprint()
                && m.transaction_id().get(..8) == Some(&self.tie_breaker.to_be_bytes()[..])
                && m.verify_integrity_with(&self.key)
        })
    }
}

/// A connected client: what media needs.
pub struct Session {
    /// The negotiated profile.
    pub profile: SrtpProfile,
    /// Protects what we send.
    pub srtp_out: SrtpContext,
    /// Unprotects what the SFU sends.
    pub srtp_in: SrtpContext,
    /// For consent checks.
    pub ice: IceCredentials,
}

/// The ICE + DTLS handshake of one client toward one SFU transport.
pub struct Handshake {
    local: SocketAddr,
    server: SocketAddr,
    identity: ClientIdentity,
    expected: Fingerprint,
    profiles: Vec<SrtpProfile>,
    ice: IceCredentials,
    ice_connected: bool,
    next_check: Option<Instant>,
    dtls: Option<Endpoint>,
    outgoing: VecDeque<Vec<u8>>,
    done: Option<(SrtpProfile, SrtpContext, SrtpContext)>,
    failed: Option<String>,
}

impl Handshake {
    /// Starts toward `server` from `local`, offering `profiles` in that order. The first
    /// check is queued at once. The client's ICE ufrag is [`Self::local_ufrag`]`(seed)`.
    pub fn start(
        now: Instant,
        local: SocketAddr,
        server: &ServerTransport,
        identity: ClientIdentity,
        profiles: Vec<SrtpProfile>,
        seed: u64,
    ) -> Result<Self, ClientError> {
        let info = server;
        let server = info.address;
        let ice = IceCredentials {
            username: format!("{}:{}", info.ice_ufrag, Self::local_ufrag(seed)),
            key: IntegrityKey::new(info.ice_pwd.as_bytes()),
            // Distinct per client so answers cannot be mistaken across clients.
            tie_breaker: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            next_transaction: 0,
        };
        let mut h = Self {
            local,
            server,
            identity,
            expected: info.fingerprint.clone(),
            profiles,
            ice,
            ice_connected: false,
            next_check: None,
            dtls: None,
            outgoing: VecDeque::new(),
            done: None,
            failed: None,
        };
        h.send_check(now)?;
        Ok(h)
    }

    /// The ICE username fragment a client started with `seed` uses (to put in its SDP).
    pub fn local_ufrag(seed: u64) -> String {
        format!("lg{seed:08x}")
    }

    /// The SFU's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    fn send_check(&mut self, now: Instant) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(128);
        self.ice.write_check(&mut out)?;
        self.outgoing.push_back(out);
        self.next_check = Some(now + CHECK_RETRANSMIT);
        Ok(())
    }

    fn start_dtls(&mut self, now: Instant) -> Result<(), ClientError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let profiles = self
            .profiles
            .iter()
            .map(|p| match p {
                SrtpProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProfile::Aes128CmHmacSha1_80 => {
                    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80
                }
            })
            .collect();
        let expected = self.expected.clone();
        let config = ConfigBuilder::default()
            .with_flight_interval(DTLS_FLIGHT_INTERVAL)
            .with_crypto_provider(provider)
            .with_certificates(vec![self.identity.certificate.clone()])
            .with_srtp_protection_profiles(profiles)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            // The server's certificate is self-signed: it is checked against the signalled
            // fingerprint instead, as a browser does.
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(Arc::new(move |certs: &[Vec<u8>], _| {
                let presented = certs
                    .first()
                    .map(|der| Fingerprint::of_der(der))
                    .ok_or(rtc_shared::error::Error::ErrInvalidCertificate)?;
                if presented == expected {
                    Ok(())
                } else {
                    Err(rtc_shared::error::Error::Other(
                        "server fingerprint is not the signalled one".into(),
                    ))
                }
            })))
            .build(true, None)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let mut endpoint = Endpoint::new(self.local, TransportProtocol::UDP, None);
        endpoint
            .connect(now, self.server, Arc::new(config), None)
            .map_err(|e| ClientError::Dtls(e.to_string()))?;
        self.dtls = Some(endpoint);
        self.drain_dtls();
        Ok(())
    }

    fn drain_dtls(&mut self) {
        if let Some(endpoint) = self.dtls.as_mut() {
            while let Some(t) = endpoint.poll_transmit() {
                self.outgoing.push_back(t.message.to_vec());
            }
        }
    }

    /// Next datagram to send to [`Self::server`].
    pub fn poll_datagram(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done.is_some() || self.failed.is_some() {
            return None;
        }
        let dtls = self
            .dtls
            .as_ref()
            .and_then(|e| e.poll_timeout(&self.server));
        [self.next_check.filter(|_| !self.ice_connected), dtls]
            .into_iter()
            .flatten()
            .min()
    }

    /// Retransmits what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.ice_connected
            && self.next_check.is_some_and(|t| now >= t)
            && let Err(e) = self.send_check(now)
        {
            self.failed = Some(e.to_string());
        }
        if let Some(endpoint) = self.dtls.as_mut()
            && self.done.is_none()
            && let Err(e) = endpoint.handle_timeout(self.server, now)
        {
            self.failed = Some(e.to_string());
        }
        self.drain_dtls();
    }

    /// Feeds a datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        match data.first() {
            Some(0..=3) if !self.ice_connected && self.ice.is_answer(data) => {
                self.ice_connected = true;
                if let Err(e) = self.start_dtls(now) {
                    self.failed = Some(e.to_string());
                }
            }
            Some(20..=63) => self.handle_dtls(now, data),
            _ => {}
        }
    }

    fn handle_dtls(&mut self, now: Instant, data: &[u8]) {
        let Some(endpoint) = self.dtls.as_mut() else {
            return;
        };
        let result = endpoint.read(now, self.server, None, BytesMut::from(data));
        self.drain_dtls();
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                if self.done.is_none() {
                    self.failed = Some(e.to_string());
                }
                return;
            }
        };
        for event in events {
            if let EndpointEvent::HandshakeComplete = event {
                match self.export_keys() {
                    Ok(keys) => self.done = Some(keys),
                    Err(e) => self.failed = Some(e.to_string()),
                }
            }
        }
    }

    fn export_keys(&self) -> Result<(SrtpProfile, SrtpContext, SrtpContext), ClientError> {
        let endpoint = self
            .dtls
            .as_ref()
            .ok_or_else(|| ClientError::Dtls("no DTLS endpoint".into()))?;
        let state = endpoint
            .get_connection_state(self.server)
            .ok_or_else(|| ClientError::Dtls("no association state".into()))?;
        let profile = SrtpProfile::from_dtls_id(state.srtp_protection_profile() as u16)
            .ok_or_else(|| ClientError::Dtls("unsupported SRTP profile negotiated".into()))?;
        let material = state
            .export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.keying_material_len())
            .map_err(|e| ClientError::Dtls(e.to_string()))?;
        let (outbound, inbound) =
            SrtpContext::from_keying_material(profile, material.as_ref(), DtlsRole::Client)?;
        Ok((profile, outbound, inbound))
    }

    /// Whether the keys are there.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Why the handshake failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The session, once done (the DTLS state is dropped). `Err(self)` while not done.
    pub fn into_session(self) -> Result<Session, Box<Self>> {
        match self.done {
            Some((profile, srtp_out, srtp_in)) => Ok(Session {
                profile,
                srtp_out,
                srtp_in,
                ice: self.ice,
            }),
            None => Err(Box::new(self)),
        }
    }
}

//! The DTLS server side of one transport (RFC 6347, DTLS-SRTP RFC 5764), on `rtc-dtls`.
//!
//! [`DtlsSession`] is fed only datagrams the ICE agent has validated the source of; it does not
//! look at addresses at all (the transport decides where its output goes). It reads the
//! ClientHello first to choose the SRTP profile by *our* preference (see [`crate::client_hello`]),
//! verifies the peer certificate against the signalled fingerprint, and on completion hands
//! out the SRTP master keys. It must not touch media.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::digest;
use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;

use crate::client_hello::{ClientHelloAssembler, ClientHelloProgress};
use crate::srtp::SrtpProfile;

/// `rtc-dtls` keys associations by address; ours has exactly one, whatever path ICE picked,
/// so it is filed under this fixed placeholder (TEST-NET-1, never used on the wire).
const PEER_KEY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);
const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// Datagrams kept while the ClientHello is being reassembled.
const MAX_BUFFERED_HELLO_DATAGRAMS: usize = 8;

/// Why DTLS failed or a datagram was refused.
#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    /// The datagram could not be read as (part of) a ClientHello before the handshake began.
    #[error("malformed ClientHello")]
    BadClientHello,
    /// The client offered no SRTP profile we support.
    #[error("no common SRTP protection profile")]
    NoCommonProfile,
    /// The handshake failed (includes a certificate that does not match the fingerprint).
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    /// The session has already failed or closed.
    #[error("DTLS session is closed")]
    Closed,
    /// Certificate generation or configuration failed.
    #[error("DTLS configuration: {0}")]
    Config(String),
}

/// A certificate fingerprint (`a=fingerprint`), SHA-256 only.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The SHA-256 digest of the DER certificate.
    pub sha256: [u8; 32],
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, der);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(d.as_ref());
        Self { sha256 }
    }

    /// Parses `sha-256 AB:CD:…` (algorithm optional, case-insensitive hex).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let hex = match s.split_once(' ') {
            Some((alg, rest)) if alg.eq_ignore_ascii_case("sha-256") => rest.trim(),
            Some(_) => return None,
            None => s,
        };
        let mut sha256 = [0u8; 32];
        let mut parts = hex.split(':');
        for byte in sha256.iter_mut() {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Self { sha256 })
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.sha256.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha-256 {self}")
    }
}

/// The worker's DTLS identity: one self-signed certificate shared by its transports.
pub struct DtlsCertificate {
    certificate: Certificate,
    fingerprint: Fingerprint,
}

impl DtlsCertificate {
    /// Generates a fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Self, DtlsError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        let certificate =
            Certificate::generate_self_signed(vec!["sfu".to_owned()], provider.crypto())
                .map_err(|e| DtlsError::Config(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| DtlsError::Config("empty certificate chain".into()))?;
        let fingerprint = Fingerprint::of_der(der.as_ref());
        Ok(Self {
            certificate,
            fingerprint,
        })
    }

    /// The fingerprint to signal in `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// SRTP master keys exported from a finished handshake, split for the server role.
pub struct SrtpKeys {
    /// The negotiated profile.
    pub profile: SrtpProfile,
    /// Key and salt for what we send.
    pub local_key: Vec<u8>,
    /// Salt for what we send.
    pub local_salt: Vec<u8>,
    /// Key for what we receive.
    pub remote_key: Vec<u8>,
    /// Salt for what we receive.
    pub remote_salt: Vec<u8>,
}

/// What the session reports.
pub enum DtlsEvent {
    /// The handshake completed; SRTP can start.
    Connected(SrtpKeys),
    /// The peer sent close_notify.
    Closed,
}

enum Stage {
    AwaitingHello {
        hello: ClientHelloAssembler,
        buffered: Vec<Vec<u8>>,
        /// Set once the ClientHello is whole; the handshake starts when the fingerprint is known.
        chosen: Option<SrtpProfile>,
    },
    Handshaking(Box<Endpoint>),
    Connected(Box<Endpoint>),
    Finished,
}

/// The DTLS server session of one transport.
pub struct DtlsSession {
    certificate: Arc<DtlsCertificate>,
    remote_fingerprint: Option<Fingerprint>,
    profiles: Vec<SrtpProfile>,
    stage: Stage,
    outgoing: VecDeque<BytesMut>,
    /// Our last handshake flight, kept to answer a peer that repeats its own (see `feed`).
    last_flight: Vec<BytesMut>,
    flight_resends: u32,
}

/// Times our last flight is resent because the peer repeated its previous one.
const MAX_FLIGHT_RESENDS: u32 = 10;

impl DtlsSession {
    /// A session that will accept only a client whose certificate matches `remote_fingerprint`,
    /// negotiating the first of `profiles` (our preference order) the client offers. Without a
    /// fingerprint yet (we sent the offer and await the answer) the ClientHello is held until
    /// [`Self::set_remote_fingerprint`].
    pub fn new(
        certificate: Arc<DtlsCertificate>,
        remote_fingerprint: Option<Fingerprint>,
        profiles: Vec<SrtpProfile>,
    ) -> Self {
        Self {
            certificate,
            remote_fingerprint,
            profiles,
            stage: Stage::AwaitingHello {
                hello: ClientHelloAssembler::default(),
                buffered: Vec::new(),
                chosen: None,
            },
            outgoing: VecDeque::new(),
            last_flight: Vec::new(),
            flight_resends: 0,
        }
    }

    /// Sets the peer's fingerprint (from its answer) and starts a held handshake.
    pub fn set_remote_fingerprint(
        &mut self,
        now: Instant,
        fingerprint: Fingerprint,
    ) -> Result<Option<DtlsEvent>, DtlsError> {
        if self.remote_fingerprint.is_some() {
            return Ok(None); // fixed once known: an answer cannot swap the peer's identity
        }
        self.remote_fingerprint = Some(fingerprint);
        if let Stage::AwaitingHello {
            chosen: Some(profile),
            buffered,
            ..
        } = &mut self.stage
        {
            let (profile, buffered) = (*profile, std::mem::take(buffered));
            return self.begin(now, profile, buffered);
        }
        Ok(None)
    }

    fn begin(
        &mut self,
        now: Instant,
        profile: SrtpProfile,
        buffered: Vec<Vec<u8>>,
    ) -> Result<Option<DtlsEvent>, DtlsError> {
        let endpoint = self.start(profile)?;
        self.stage = Stage::Handshaking(Box::new(endpoint));
        let mut event = None;
        for d in buffered {
            event = self.feed(now, &d)?.or(event);
        }
        Ok(event)
    }

    /// Whether the handshake has completed and the session is open.
    pub fn is_connected(&self) -> bool {
        matches!(self.stage, Stage::Connected(_))
    }

    /// Whether the session has failed or closed.
    pub fn is_finished(&self) -> bool {
        matches!(self.stage, Stage::Finished)
    }

    /// Next datagram to send to the peer.
    pub fn poll_datagram(&mut self) -> Option<BytesMut> {
        self.outgoing.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due (handshake retransmission).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Handshaking(e) => e.poll_timeout(&PEER_KEY),
            _ => None,
        }
    }

    /// Drives retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if let Stage::Handshaking(endpoint) = &mut self.stage {
            let result = endpoint.handle_timeout(PEER_KEY, now);
            let mut sent = Vec::new();
            while let Some(t) = endpoint.poll_transmit() {
                sent.push(t.message);
            }
            if !sent.is_empty() {
                self.last_flight.clone_from(&sent);
                self.outgoing.extend(sent);
            }
            if let Err(e) = result {
                self.stage = Stage::Finished;
                return Err(DtlsError::Handshake(e.to_string()));
            }
        }
        Ok(())
    }

    /// Feeds one DTLS datagram (from the ICE-validated peer only).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<Option<DtlsEvent>, DtlsError> {
        match &mut self.stage {
            Stage::Finished => Err(DtlsError::Closed),
            Stage::AwaitingHello {
                hello,
                buffered,
                chosen,
            } => {
                if buffered.len() >= MAX_BUFFERED_HELLO_DATAGRAMS {
                    // Retransmissions while we wait for the answer: the latest ones are the
                    // same flight, so dropping keeps memory bounded and loses nothing.
                    return Ok(None);
                }
                if chosen.is_some() {
                    buffered.push(datagram.to_vec());
                    return Ok(None);
                }
                let progress = hello
                    .push(datagram)
                    .map_err(|_| DtlsError::BadClientHello)?;
                buffered.push(datagram.to_vec());
                let ClientHelloProgress::Complete(offered) = progress else {
                    return Ok(None);
                };
                let Some(profile) = self
                    .profiles
                    .iter()
                    .copied()
                    .find(|p| offered.contains(&p.dtls_id()))
                else {
                    self.stage = Stage::Finished;
                    return Err(DtlsError::NoCommonProfile);
                };
                if self.remote_fingerprint.is_none() {
                    *chosen = Some(profile);
                    return Ok(None);
                }
                let buffered = std::mem::take(buffered);
                self.begin(now, profile, buffered)
            }
            Stage::Handshaking(_) | Stage::Connected(_) => self.feed(now, datagram),
        }
    }

    fn start(&self, profile: SrtpProfile) -> Result<Endpoint, DtlsError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        let expected = self.remote_fingerprint.clone().ok_or(DtlsError::Closed)?;
        let dtls_profile = match profile {
            SrtpProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProfile::Aes128CmHmacSha1_80 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        };
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![self.certificate.certificate.clone()])
            .with_srtp_protection_profiles(vec![dtls_profile])
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(Arc::new(move |certs: &[Vec<u8>], _| {
                let presented = certs
                    .first()
                    .map(|der| Fingerprint::of_der(der))
                    .ok_or(rtc_shared::error::Error::ErrInvalidCertificate)?;
                if aws_lc_rs::constant_time::verify_slices_are_equal(&presented.sha256, &expected.sha256).is_ok() {
                    Ok(())
                } else {
                    Err(rtc_shared::error::Error::Other(format!(
                        "certificate fingerprint {presented:?} does not match the signalled {expected:?}"
                    )))
                }
            })))
            .build(false, None)
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        Ok(Endpoint::new(
            PEER_KEY,
            TransportProtocol::UDP,
            Some(Arc::new(config)),
        ))
    }

    fn feed(&mut self, now: Instant, datagram: &[u8]) -> Result<Option<DtlsEvent>, DtlsError> {
        let handshaking = matches!(self.stage, Stage::Handshaking(_));
        let endpoint = match &mut self.stage {
            Stage::Handshaking(e) | Stage::Connected(e) => e,
            _ => return Err(DtlsError::Closed),
        };
        let result = endpoint.read(now, PEER_KEY, None, BytesMut::from(datagram));
        let mut sent = Vec::new();
        while let Some(t) = endpoint.poll_transmit() {
            sent.push(t.message);
        }
        if handshaking {
            if !sent.is_empty() {
                self.last_flight.clone_from(&sent);
            } else if result.is_ok()
                && datagram.first() == Some(&22)
                && endpoint.poll_timeout(&PEER_KEY).is_none()
                && self.flight_resends < MAX_FLIGHT_RESENDS
            {
                // rtc-dtls 0.21 clears its retransmission timer when any handshake record
                // arrives, even one that does not complete the peer's next flight. If our flight
                // was lost and the peer repeats its previous one, nothing would ever resend ours
                // (RFC 6347 §4.2.4 says to): do it here, a bounded number of times.
                self.flight_resends += 1;
                sent.clone_from(&self.last_flight);
            }
        }
        self.outgoing.extend(sent);
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                let was_connected = matches!(self.stage, Stage::Connected(_));
                if was_connected {
                    // A bad record after the handshake (e.g. a replayed or forged one) is dropped;
                    // the association stays up.
                    return Err(DtlsError::Handshake(e.to_string()));
                }
                self.stage = Stage::Finished;
                return Err(DtlsError::Handshake(e.to_string()));
            }
        };
        let mut out = None;
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => {
                    let keys = self.export_keys()?;
                    if let Stage::Handshaking(e) =
                        std::mem::replace(&mut self.stage, Stage::Finished)
                    {
                        self.stage = Stage::Connected(e);
                    }
                    out = Some(DtlsEvent::Connected(keys));
                }
                EndpointEvent::PeerClosed => {
                    self.stage = Stage::Finished;
                    return Ok(Some(DtlsEvent::Closed));
                }
                _ => {} // application data: no data channels on this transport yet
            }
        }
        Ok(out)
    }

    fn export_keys(&mut self) -> Result<SrtpKeys, DtlsError> {
        let Stage::Handshaking(endpoint) = &self.stage else {
            return Err(DtlsError::Closed);
        };
        let state = endpoint
            .get_connection_state(PEER_KEY)
            .ok_or_else(|| DtlsError::Handshake("no association state".into()))?;
        let profile = SrtpProfile::from_dtls_id(state.srtp_protection_profile() as u16)
            .ok_or(DtlsError::NoCommonProfile)?;
        let material = state
            .export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.keying_material_len())
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        let m: &[u8] = material.as_ref();
        let (k, s) = (profile.key_len(), profile.salt_len());
        let part = |from: usize, len: usize| {
            m.get(from..from + len)
                .map(<[u8]>::to_vec)
                .ok_or(DtlsError::NoCommonProfile)
        };
        // RFC 5764 §4.2: client key, server key, client salt, server salt. We are the server.
        Ok(SrtpKeys {
            profile,
            remote_key: part(0, k)?,
            local_key: part(k, k)?,
            remote_salt: part(2 * k, s)?,
            local_salt: part(2 * k + s, s)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_and_rejects_garbage() {
        let f = Fingerprint::of_der(b"certificate");
        let text = format!("sha-256 {f}");
        assert_eq!(Fingerprint::parse(&text), Some(f.clone()));
        assert_eq!(
            Fingerprint::parse(&f.to_string().to_lowercase()),
            Some(f.clone())
        );
        assert_eq!(Fingerprint::parse("sha-1 AB:CD"), None);
        assert_eq!(Fingerprint::parse(&format!("{f}:00")), None);
        assert_eq!(Fingerprint::parse("zz"), None);
    }

    /// Runs a client/server handshake in memory; returns the server's negotiated profile or error.
    fn handshake(
        offer: Vec<SrtpProtectionProfile>,
        ours: Vec<SrtpProfile>,
        tamper_fp: bool,
    ) -> Result<SrtpProfile, String> {
        let server_cert = Arc::new(DtlsCertificate::generate().unwrap());
        let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
        let cert = Certificate::generate_self_signed(vec!["client".to_owned()], provider.crypto())
            .unwrap();
        let mut expected = Fingerprint::of_der(cert.certificate[0].as_ref());
        if tamper_fp {
            expected.sha256[0] ^= 1;
        }
        let mut server = DtlsSession::new(server_cert, Some(expected), ours);
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(offer)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_insecure_skip_verify(true)
            .build(true, None)
            .unwrap();
        let mut client_ep = Endpoint::new(
            "127.0.0.1:5000".parse().unwrap(),
            TransportProtocol::UDP,
            None,
        );
        let server_addr: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let now = Instant::now();
        client_ep
            .connect(now, server_addr, Arc::new(config), None)
            .unwrap();
        let mut keys = None;
        for _ in 0..20 {
            while let Some(t) = client_ep.poll_transmit() {
                match server.handle_datagram(now, &t.message) {
                    Ok(Some(DtlsEvent::Connected(k))) => keys = Some(k),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            while let Some(d) = server.poll_datagram() {
                let _ = client_ep.read(now, server_addr, None, d);
            }
            if let Some(k) = &keys {
                let state = client_ep.get_connection_state(server_addr).unwrap();
                let profile =
                    SrtpProfile::from_dtls_id(state.srtp_protection_profile() as u16).unwrap();
                let m = state
                    .export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.keying_material_len())
                    .unwrap();
                let m: &[u8] = m.as_ref();
                let (kl, sl) = (profile.key_len(), profile.salt_len());
                assert_eq!(
                    &m[..kl],
                    &k.remote_key[..],
                    "client write key is our remote key"
                );
                assert_eq!(&m[kl..2 * kl], &k.local_key[..]);
                assert_eq!(&m[2 * kl + sl..2 * kl + 2 * sl], &k.local_salt[..]);
                return Ok(k.profile);
            }
        }
        Err("handshake did not complete".into())
    }

    #[test]
    fn server_preference_picks_gcm_even_when_client_lists_aes_cm_first() {
        // Chrome's order: AES-CM first, GCM later.
        let offer = vec![
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ];
        let ours = vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];
        assert_eq!(
            handshake(offer, ours, false),
            Ok(SrtpProfile::AeadAes128Gcm)
        );
    }

    #[test]
    fn aes_cm_when_the_client_offers_only_that() {
        let offer = vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];
        let ours = vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];
        assert_eq!(
            handshake(offer, ours, false),
            Ok(SrtpProfile::Aes128CmHmacSha1_80)
        );
    }

    #[test]
    fn no_common_profile_fails() {
        let offer = vec![SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm];
        let err = handshake(offer, vec![SrtpProfile::AeadAes128Gcm], false).unwrap_err();
        assert!(err.contains("no common SRTP"), "{err}");
    }

    #[test]
    fn fingerprint_mismatch_fails_the_handshake() {
        let offer = vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm];
        let err = handshake(offer, vec![SrtpProfile::AeadAes128Gcm], true).unwrap_err();
        assert!(err.contains("handshake failed"), "{err}");
    }
}

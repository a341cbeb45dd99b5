//! ICE-lite agent of one transport (RFC 8445 lite implementation, RFC 7675
//! consent freshness), sans-I/O.
//!
//! This module owns the decision of which remote transport addresses
//! ("tuples") are allowed to receive media: it answers authenticated Binding
//! requests, tracks per-tuple consent, follows the controlling peer's
//! nomination (USE-CANDIDATE) to choose the selected tuple, and reports when
//! consent is lost. It never sends checks of its own, never answers
//! unauthenticated input (drops are returned as [`IceDrop`] for counting, with
//! no response, so nothing can be amplified or reflected), never lets
//! unauthenticated input change state (RTP Bleed), never reads a clock (`now`
//! is always a parameter), never touches a socket and never panics on network
//! input. Demultiplexing datagrams to an agent (by the local ufrag, see
//! [`username_local_ufrag`]) belongs to the caller, as does STUN framing
//! (`crate::stun`).
//!
//! Known limit, inherent to ICE: the source address is not covered by
//! MESSAGE-INTEGRITY, so an on-path attacker that replays a captured
//! authenticated check from another address gets that address validated.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;

use crate::stun::{IntegrityKey, StunClass, StunMessage, StunMethod, write_binding_success};

/// RFC 7675: consent for a tuple lapses this long after its last authenticated check.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A transport that receives no authenticated check this long after creation expires.
pub const INITIAL_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many validated tuples are remembered; the least recently
/// checked one (never the selected one) is evicted to make room.
pub const MAX_VALIDATED_TUPLES: usize = 8;
/// Length of a generated ufrag (RFC 8839: at least 4 ice-chars).
pub const UFRAG_LEN: usize = 8;
/// Length of a generated password (RFC 8839: at least 22 ice-chars); 144 bits.
pub const PWD_LEN: usize = 24;

/// RFC 8839 `ice-char`: ALPHA / DIGIT / "+" / "/" (exactly 64 symbols).
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Local ICE credentials for one transport, as put in the SDP answer.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd` (secret).
    pub pwd: String,
}

impl IceCredentials {
    /// Fresh random credentials from the thread-local CSPRNG:
    /// [`UFRAG_LEN`]-char ufrag, [`PWD_LEN`]-char password.
    ///
    /// The ufrag is random, not unique: the caller registering it for
    /// demultiplexing must reject (and regenerate) a ufrag already in use.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rng())
    }

    /// Same as [`Self::generate`] with the given random source (for tests).
    pub fn generate_with<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        Self {
            ufrag: random_ice_string(rng, UFRAG_LEN),
            pwd: random_ice_string(rng, PWD_LEN),
        }
    }
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

fn random_ice_string<R: rand::Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    (0..len)
        .filter_map(|_| ICE_CHARS.choose(rng))
        .map(|&c| char::from(c))
        .collect()
}

/// The local ufrag a check is addressed to: USERNAME up to the first ':'
/// (a check's USERNAME is `"<receiver ufrag>:<sender ufrag>"`). `None` without ':'.
#[must_use]
pub fn username_local_ufrag(username: &[u8]) -> Option<&[u8]> {
    split_username(username).map(|(local, _)| local)
}

fn split_username(username: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = username.iter().position(|&b| b == b':')?;
    let (local, rest) = username.split_at_checked(colon)?;
    Some((local, rest.get(1..)?))
}

/// Why a datagram handed to [`IceLiteAgent::handle_binding_request`] got no
/// response. Every drop leaves the agent's state untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum IceDrop {
    /// A Binding indication (a keepalive): benign, never answered.
    #[error("binding indication")]
    BindingIndication,
    /// Not a Binding request (a response, or another method).
    #[error("not a binding request")]
    NotBindingRequest,
    /// No USERNAME attribute.
    #[error("missing USERNAME")]
    MissingUsername,
    /// USERNAME has no ':' separating the two ufrags.
    #[error("malformed USERNAME")]
    MalformedUsername,
    /// USERNAME is not addressed to this agent's local ufrag.
    #[error("unknown local ufrag")]
    UnknownUfrag,
    /// The remote ufrag is known and USERNAME carries another one.
    #[error("remote ufrag mismatch")]
    RemoteUfragMismatch,
    /// No FINGERPRINT attribute (mandatory for ICE checks).
    #[error("missing FINGERPRINT")]
    MissingFingerprint,
    /// FINGERPRINT does not match.
    #[error("bad FINGERPRINT")]
    BadFingerprint,
    /// No MESSAGE-INTEGRITY attribute.
    #[error("missing MESSAGE-INTEGRITY")]
    MissingIntegrity,
    /// MESSAGE-INTEGRITY does not verify with the local password.
    #[error("bad MESSAGE-INTEGRITY")]
    BadIntegrity,
    /// The peer claims ICE-CONTROLLED, but a lite agent is always controlled
    /// (RFC 8445 §6.1.1: the full agent must take the controlling role).
    #[error("role conflict: peer claims ICE-CONTROLLED")]
    RoleConflict,
    /// No PRIORITY attribute (mandatory in checks, RFC 8445 §7.1.1).
    #[error("missing PRIORITY")]
    MissingPriority,
    /// An unknown comprehension-required attribute (RFC 8489 would answer 420;
    /// no ICE implementation sends one, so it is dropped).
    #[error("unknown comprehension-required attribute")]
    UnknownComprehensionRequired,
    /// Consent has expired: the agent is finished and answers nothing.
    #[error("consent expired")]
    ConsentExpired,
}

impl IceDrop {
    /// A stable snake_case label, for metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BindingIndication => "binding_indication",
            Self::NotBindingRequest => "not_binding_request",
            Self::MissingUsername => "missing_username",
            Self::MalformedUsername => "malformed_username",
            Self::UnknownUfrag => "unknown_ufrag",
            Self::RemoteUfragMismatch => "remote_ufrag_mismatch",
            Self::MissingFingerprint => "missing_fingerprint",
            Self::BadFingerprint => "bad_fingerprint",
            Self::MissingIntegrity => "missing_integrity",
            Self::BadIntegrity => "bad_integrity",
            Self::RoleConflict => "role_conflict",
            Self::MissingPriority => "missing_priority",
            Self::UnknownComprehensionRequired => "unknown_comprehension_required",
            Self::ConsentExpired => "consent_expired",
        }
    }
}

/// What the agent tells its owner, via [`IceLiteAgent::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// Media must now go to this tuple (the first one selected, or a new one).
    SelectedTupleChanged(SocketAddr),
    /// No tuple has consent any more (or none was ever validated in time):
    /// stop sending and tear the transport down. Emitted once; terminal.
    ConsentExpired,
}

#[derive(Debug, Clone, Copy)]
struct ValidatedTuple {
    remote: SocketAddr,
    last_check: Instant,
}

/// The ICE-lite agent of one transport. See the module documentation.
pub struct IceLiteAgent {
    local_ufrag: String,
    local_pwd: String,
    integrity_key: IntegrityKey,
    remote_ufrag: Option<String>,
    created_at: Instant,
    ever_validated: bool,
    /// At most [`MAX_VALIDATED_TUPLES`], all with consent as of the last
    /// `handle_timeout`; capacity reserved up front, so it never reallocates.
    tuples: Vec<ValidatedTuple>,
    selected: Option<SocketAddr>,
    expired: bool,
    pending_selected: Option<SocketAddr>,
    pending_consent_expired: bool,
}

impl fmt::Debug for IceLiteAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceLiteAgent")
            .field("local_ufrag", &self.local_ufrag)
            .field("remote_ufrag", &self.remote_ufrag)
            .field("tuples", &self.tuples)
            .field("selected", &self.selected)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl IceLiteAgent {
    /// A new agent answering checks addressed to `local_ufrag`, authenticated
    /// with `local_pwd`. The initial-check deadline starts at `now`.
    #[must_use]
    pub fn new(local_ufrag: String, local_pwd: String, now: Instant) -> Self {
        let integrity_key = IntegrityKey::new(local_pwd.as_bytes());
        Self {
            local_ufrag,
            local_pwd,
            integrity_key,
            remote_ufrag: None,
            created_at: now,
            ever_validated: false,
            tuples: Vec::with_capacity(MAX_VALIDATED_TUPLES),
            selected: None,
            expired: false,
            pending_selected: None,
            pending_consent_expired: false,
        }
    }

    /// [`Self::new`] from generated or signalled credentials.
    #[must_use]
    pub fn from_credentials(credentials: IceCredentials, now: Instant) -> Self {
        Self::new(credentials.ufrag, credentials.pwd, now)
    }

    /// The local ufrag (demultiplexing key).
    #[must_use]
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// The local password (for the SDP answer).
    #[must_use]
    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    /// The remote ufrag, if signalled.
    #[must_use]
    pub fn remote_ufrag(&self) -> Option<&str> {
        self.remote_ufrag.as_deref()
    }

    /// Once set, USERNAME must be exactly `"<local>:<remote>"`; `None`
    /// accepts any remote part (the offer may not have arrived yet).
    pub fn set_remote_ufrag(&mut self, ufrag: Option<String>) {
        self.remote_ufrag = ufrag;
    }

    /// Handles one STUN message from `source` (normally a Binding request the
    /// caller routed here by local ufrag).
    ///
    /// On success `out` holds the Binding success response to send back to
    /// `source` (XOR-MAPPED-ADDRESS = `source`, MESSAGE-INTEGRITY with the
    /// local password, FINGERPRINT), `source` is validated with fresh consent,
    /// and the selected tuple may change (see [`Self::poll_event`]).
    ///
    /// # Errors
    /// The [`IceDrop`] reason; `out` is then empty (send nothing) and the
    /// agent's state is unchanged, apart from time-driven expiry up to `now`.
    pub fn handle_binding_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        msg: &StunMessage<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), IceDrop> {
        out.clear();
        self.handle_timeout(now);
        if self.expired {
            return Err(IceDrop::ConsentExpired);
        }
        self.authenticate(msg)?;
        write_binding_success(&msg.transaction_id(), source, &self.integrity_key, out);
        self.record_authenticated_check(now, source, msg.use_candidate());
        Ok(())
    }

    fn authenticate(&self, msg: &StunMessage<'_>) -> Result<(), IceDrop> {
        if msg.method() != StunMethod::BINDING {
            return Err(IceDrop::NotBindingRequest);
        }
        match msg.class() {
            StunClass::Request => {}
            StunClass::Indication => return Err(IceDrop::BindingIndication),
            StunClass::SuccessResponse | StunClass::ErrorResponse => {
                return Err(IceDrop::NotBindingRequest);
            }
        }
        let username = msg.username().ok_or(IceDrop::MissingUsername)?;
        let (local, remote) = split_username(username).ok_or(IceDrop::MalformedUsername)?;
        if local != self.local_ufrag.as_bytes() {
            return Err(IceDrop::UnknownUfrag);
        }
        if let Some(expected) = &self.remote_ufrag
            && remote != expected.as_bytes()
        {
            return Err(IceDrop::RemoteUfragMismatch);
        }
        if msg.fingerprint().is_none() {
            return Err(IceDrop::MissingFingerprint);
        }
        if !msg.verify_fingerprint() {
            return Err(IceDrop::BadFingerprint);
        }
        if msg.message_integrity_offset().is_none() {
            return Err(IceDrop::MissingIntegrity);
        }
        if !msg.verify_integrity_with(&self.integrity_key) {
            return Err(IceDrop::BadIntegrity);
        }
        // Authenticated from here on.
        if msg.ice_controlled().is_some() {
            return Err(IceDrop::RoleConflict);
        }
        if msg.priority().is_none() {
            return Err(IceDrop::MissingPriority);
        }
        if !msg.unknown_comprehension_required().is_empty() {
            return Err(IceDrop::UnknownComprehensionRequired);
        }
        Ok(())
    }

    fn record_authenticated_check(
        &mut self,
        now: Instant,
        source: SocketAddr,
        use_candidate: bool,
    ) {
        self.ever_validated = true;
        if let Some(tuple) = self.tuples.iter_mut().find(|t| t.remote == source) {
            tuple.last_check = now;
        } else {
            if self.tuples.len() >= MAX_VALIDATED_TUPLES {
                let selected = self.selected;
                let victim = self
                    .tuples
                    .iter()
                    .filter(|t| Some(t.remote) != selected)
                    .min_by_key(|t| t.last_check)
                    .map(|t| t.remote);
                self.tuples.retain(|t| Some(t.remote) != victim);
            }
            self.tuples.push(ValidatedTuple {
                remote: source,
                last_check: now,
            });
        }
        if use_candidate || self.selected.is_none() {
            self.select(source);
        }
    }

    fn select(&mut self, remote: SocketAddr) {
        if self.selected != Some(remote) {
            self.selected = Some(remote);
            self.pending_selected = Some(remote);
        }
    }

    fn expire(&mut self) {
        self.expired = true;
        self.selected = None;
        self.tuples.clear();
        self.pending_selected = None;
        self.pending_consent_expired = true;
    }

    /// Did `source` send an authenticated check within the consent window
    /// (as of the last `handle_timeout` / `handle_binding_request`)?
    /// Only validated tuples may be sent media or accepted as DTLS/SRTP peers.
    #[must_use]
    pub fn is_validated(&self, source: SocketAddr) -> bool {
        !self.expired && self.tuples.iter().any(|t| t.remote == source)
    }

    /// Where media goes: the most recently nominated tuple, or before any
    /// nomination the first validated one. `None` before validation and after expiry.
    #[must_use]
    pub fn selected_tuple(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// Next event for the owner. A selection change comes before
    /// `ConsentExpired`; several changes between polls collapse into the latest.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        if let Some(remote) = self.pending_selected.take() {
            return Some(IceEvent::SelectedTupleChanged(remote));
        }
        if self.pending_consent_expired {
            self.pending_consent_expired = false;
            return Some(IceEvent::ConsentExpired);
        }
        None
    }

    /// Applies time: tuples whose consent lapsed (30 s without an
    /// authenticated check) stop being validated; if the selected one lapsed,
    /// media moves to the most recently checked fresh tuple, and with none
    /// left the agent expires. Also enforces the initial-check deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.expired {
            return;
        }
        if !self.ever_validated {
            if now.saturating_duration_since(self.created_at) >= INITIAL_CHECK_TIMEOUT {
                self.expire();
            }
            return;
        }
        self.tuples
            .retain(|t| now.saturating_duration_since(t.last_check) < CONSENT_TIMEOUT);
        let selected_fresh = self
            .selected
            .is_some_and(|selected| self.tuples.iter().any(|t| t.remote == selected));
        if !selected_fresh {
            match self.tuples.iter().max_by_key(|t| t.last_check) {
                Some(freshest) => {
                    let remote = freshest.remote;
                    self.select(remote);
                }
                None => self.expire(),
            }
        }
    }

    /// The next instant at which [`Self::handle_timeout`] would change
    /// something (a tuple's consent lapsing, or the initial deadline);
    /// `None` once expired.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.expired {
            return None;
        }
        if !self.ever_validated {
            return self.created_at.checked_add(INITIAL_CHECK_TIMEOUT);
        }
        self.tuples
            .iter()
            .filter_map(|t| t.last_check.checked_add(CONSENT_TIMEOUT))
            .min()
    }

    /// Has consent been lost for good (terminal)?
    #[must_use]
    pub fn is_expired(&self) -> bool {
        self.expired
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::stun::{IceRole, attr, write_binding_request};
    use aws_lc_rs::hmac;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const LOCAL_UFRAG: &str = "sfuUfrag";
    const LOCAL_PWD: &str = "sfuPassword0123456789abc";
    const REMOTE_UFRAG: &str = "peer";
    const TX: [u8; 12] = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn agent(now: Instant) -> IceLiteAgent {
        IceLiteAgent::new(LOCAL_UFRAG.into(), LOCAL_PWD.into(), now)
    }

    fn check_from(
        username: &str,
        pwd: &str,
        use_candidate: bool,
        role: Option<IceRole>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        write_binding_request(
            &TX,
            username.as_bytes(),
            &IntegrityKey::new(pwd.as_bytes()),
            0x6e00_01ff,
            role,
            use_candidate,
            &mut out,
        )
        .unwrap();
        out
    }

    fn valid_check(use_candidate: bool) -> Vec<u8> {
        check_from(
            &format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"),
            LOCAL_PWD,
            use_candidate,
            Some(IceRole::Controlling(77)),
        )
    }

    /// Hand-built request: given attributes, then optional MESSAGE-INTEGRITY
    /// (with `key`) and optional FINGERPRINT.
    fn craft(attrs: &[(u16, &[u8])], key: Option<&[u8]>, fingerprint: bool) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&TX);
        let push = |m: &mut Vec<u8>, t: u16, v: &[u8]| {
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&(v.len() as u16).to_be_bytes());
            m.extend_from_slice(v);
            m.resize(m.len().next_multiple_of(4), 0);
        };
        let set_len = |m: &mut Vec<u8>, extra: usize| {
            let len = (m.len() + extra - 20) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
        };
        for (t, v) in attrs {
            push(&mut m, *t, v);
        }
        if let Some(key) = key {
            set_len(&mut m, 24);
            let tag = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key),
                &m,
            );
            push(&mut m, attr::MESSAGE_INTEGRITY, tag.as_ref());
        }
        if fingerprint {
            set_len(&mut m, 8);
            let crc = crc32fast::hash(&m) ^ 0x5354_554E;
            push(&mut m, attr::FINGERPRINT, &crc.to_be_bytes());
        }
        set_len(&mut m, 0);
        m
    }

    fn username_attr() -> Vec<u8> {
        format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}").into_bytes()
    }

    /// Feeds `bytes` from `source`; asserts the no-response contract on drops.
    fn feed(
        agent: &mut IceLiteAgent,
        now: Instant,
        source: SocketAddr,
        bytes: &[u8],
    ) -> Result<Vec<u8>, IceDrop> {
        let msg = StunMessage::parse(bytes).unwrap();
        let mut out = vec![0xEE; 3]; // stale bytes the agent must clear
        let result = agent.handle_binding_request(now, source, &msg, &mut out);
        match result {
            Ok(()) => {
                assert!(!out.is_empty());
                Ok(out)
            }
            Err(drop) => {
                assert!(
                    out.is_empty(),
                    "a drop ({drop:?}) must not produce a response"
                );
                Err(drop)
            }
        }
    }

    fn events(agent: &mut IceLiteAgent) -> Vec<IceEvent> {
        std::iter::from_fn(|| agent.poll_event()).collect()
    }

    fn assert_drop_changes_nothing(bytes: &[u8], expected: IceDrop) {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let source = addr("198.51.100.7:5000");
        assert_eq!(feed(&mut a, t0, source, bytes), Err(expected));
        assert!(!a.is_validated(source));
        assert_eq!(a.selected_tuple(), None);
        assert_eq!(events(&mut a), vec![]);
        assert_eq!(a.poll_timeout(), Some(t0 + INITIAL_CHECK_TIMEOUT));
    }

    #[test]
    fn unknown_ufrag_is_dropped_silently() {
        assert_drop_changes_nothing(
            &check_from(
                "someoneElse:peer",
                LOCAL_PWD,
                true,
                Some(IceRole::Controlling(1)),
            ),
            IceDrop::UnknownUfrag,
        );
        assert_drop_changes_nothing(
            &check_from(
                "sfuUfragX:peer",
                LOCAL_PWD,
                true,
                Some(IceRole::Controlling(1)),
            ),
            IceDrop::UnknownUfrag,
        );
        assert_drop_changes_nothing(
            &check_from(LOCAL_UFRAG, LOCAL_PWD, true, Some(IceRole::Controlling(1))),
            IceDrop::MalformedUsername,
        );
        let no_username = craft(
            &[(attr::PRIORITY, &[0, 0, 0, 1])],
            Some(LOCAL_PWD.as_bytes()),
            true,
        );
        assert_drop_changes_nothing(&no_username, IceDrop::MissingUsername);
    }

    #[test]
    fn bad_integrity_is_dropped_silently() {
        let bytes = check_from(
            &format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"),
            "notThePassword0123456789",
            true,
            Some(IceRole::Controlling(1)),
        );
        assert_drop_changes_nothing(&bytes, IceDrop::BadIntegrity);
        let user = username_attr();
        let no_integrity = craft(
            &[(attr::USERNAME, &user), (attr::PRIORITY, &[0, 0, 0, 1])],
            None,
            true,
        );
        assert_drop_changes_nothing(&no_integrity, IceDrop::MissingIntegrity);
    }

    #[test]
    fn missing_or_bad_fingerprint_is_dropped_silently() {
        let user = username_attr();
        let attrs: [(u16, &[u8]); 2] = [(attr::USERNAME, &user), (attr::PRIORITY, &[0, 0, 0, 1])];
        let no_fingerprint = craft(&attrs, Some(LOCAL_PWD.as_bytes()), false);
        // Integrity alone is fine; only the missing FINGERPRINT is wrong.
        assert!(
            StunMessage::parse(&no_fingerprint)
                .unwrap()
                .verify_integrity(LOCAL_PWD.as_bytes())
        );
        assert_drop_changes_nothing(&no_fingerprint, IceDrop::MissingFingerprint);

        let mut bad_fingerprint = valid_check(true);
        let last = bad_fingerprint.len() - 1;
        bad_fingerprint[last] ^= 1;
        assert_drop_changes_nothing(&bad_fingerprint, IceDrop::BadFingerprint);
    }

    #[test]
    fn other_drops() {
        let user = username_attr();
        let pwd = Some(LOCAL_PWD.as_bytes());
        assert_drop_changes_nothing(
            &check_from(
                &format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"),
                LOCAL_PWD,
                true,
                Some(IceRole::Controlled(1)),
            ),
            IceDrop::RoleConflict,
        );
        assert_drop_changes_nothing(
            &craft(&[(attr::USERNAME, &user)], pwd, true),
            IceDrop::MissingPriority,
        );
        assert_drop_changes_nothing(
            &craft(
                &[
                    (attr::USERNAME, &user),
                    (attr::PRIORITY, &[0, 0, 0, 1]),
                    (0x7FFF, b"?"),
                ],
                pwd,
                true,
            ),
            IceDrop::UnknownComprehensionRequired,
        );
        let mut indication = valid_check(false);
        indication[1] = 0x11;
        assert_drop_changes_nothing(&indication, IceDrop::BindingIndication);
        let mut response = valid_check(false);
        response[0] = 0x01;
        assert_drop_changes_nothing(&response, IceDrop::NotBindingRequest);
        // Minimal valid request (no role attribute at all) is accepted.
        let t0 = Instant::now();
        let mut a = agent(t0);
        let minimal = craft(
            &[(attr::USERNAME, &user), (attr::PRIORITY, &[0, 0, 0, 1])],
            pwd,
            true,
        );
        assert!(feed(&mut a, t0, addr("192.0.2.1:1"), &minimal).is_ok());
    }

    #[test]
    fn remote_ufrag_is_enforced_once_known() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let source = addr("192.0.2.10:4000");
        let other_remote = check_from(&format!("{LOCAL_UFRAG}:intruder"), LOCAL_PWD, false, None);
        assert!(feed(&mut a, t0, source, &other_remote).is_ok());
        a.set_remote_ufrag(Some(REMOTE_UFRAG.into()));
        assert_eq!(a.remote_ufrag(), Some(REMOTE_UFRAG));
        assert_eq!(
            feed(&mut a, t0, addr("192.0.2.10:4001"), &other_remote),
            Err(IceDrop::RemoteUfragMismatch)
        );
        assert!(!a.is_validated(addr("192.0.2.10:4001")));
        assert!(feed(&mut a, t0, source, &valid_check(false)).is_ok());
    }

    #[test]
    fn valid_check_is_answered_and_validates_the_source() {
        for source in ["203.0.113.9:54321", "[2001:db8::42]:6000"] {
            let source = addr(source);
            let t0 = Instant::now();
            let mut a = agent(t0);
            let response = feed(&mut a, t0, source, &valid_check(false)).unwrap();
            let msg = StunMessage::parse(&response).unwrap();
            assert_eq!(msg.class(), StunClass::SuccessResponse);
            assert_eq!(msg.method(), StunMethod::BINDING);
            assert_eq!(msg.transaction_id(), TX);
            assert_eq!(msg.xor_mapped_address(), Some(source));
            assert!(msg.verify_fingerprint());
            assert!(msg.verify_integrity(LOCAL_PWD.as_bytes()));
            assert!(!msg.verify_integrity(b"some other password!!!"));

            assert!(a.is_validated(source));
            assert!(!a.is_validated(addr("203.0.113.9:54322")));
            assert_eq!(a.selected_tuple(), Some(source));
            assert_eq!(events(&mut a), vec![IceEvent::SelectedTupleChanged(source)]);
            assert_eq!(a.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));
            assert!(!a.is_expired());
        }
    }

    #[test]
    fn nomination_switches_tuple_but_unauthenticated_input_does_not() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let first = addr("10.0.0.1:1000");
        let second = addr("198.51.100.2:2000");
        let attacker = addr("203.0.113.66:6666");

        feed(&mut a, t0, first, &valid_check(false)).unwrap();
        assert_eq!(events(&mut a), vec![IceEvent::SelectedTupleChanged(first)]);

        // A second tuple's plain check validates it but does not move media.
        let t1 = t0 + Duration::from_secs(1);
        feed(&mut a, t1, second, &valid_check(false)).unwrap();
        assert!(a.is_validated(second));
        assert_eq!(a.selected_tuple(), Some(first));
        assert_eq!(events(&mut a), vec![]);

        // The controlling peer nominates the second tuple: switch.
        feed(&mut a, t1, second, &valid_check(true)).unwrap();
        assert_eq!(a.selected_tuple(), Some(second));
        assert_eq!(events(&mut a), vec![IceEvent::SelectedTupleChanged(second)]);
        // Re-nominating the same tuple is not a change.
        feed(&mut a, t1, second, &valid_check(true)).unwrap();
        assert_eq!(events(&mut a), vec![]);

        // Unauthenticated USE-CANDIDATE from a third tuple, and from the old
        // tuple: nothing changes.
        let forged = check_from(
            &format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"),
            "guessedPassword000000000",
            true,
            Some(IceRole::Controlling(1)),
        );
        for source in [attacker, first] {
            assert_eq!(
                feed(&mut a, t1, source, &forged),
                Err(IceDrop::BadIntegrity)
            );
        }
        assert!(!a.is_validated(attacker));
        assert_eq!(a.selected_tuple(), Some(second));
        assert_eq!(events(&mut a), vec![]);

        // An authenticated nomination back to the first tuple is honoured.
        feed(&mut a, t1, first, &valid_check(true)).unwrap();
        assert_eq!(a.selected_tuple(), Some(first));
        assert_eq!(events(&mut a), vec![IceEvent::SelectedTupleChanged(first)]);
    }

    #[test]
    fn consent_expires_after_30_s_of_silence() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let source = addr("192.0.2.50:3478");
        feed(&mut a, t0, source, &valid_check(true)).unwrap();
        events(&mut a);

        // Unauthenticated traffic from the tuple does not refresh consent.
        let t20 = t0 + Duration::from_secs(20);
        let forged = check_from(
            &format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"),
            "x".repeat(24).as_str(),
            false,
            None,
        );
        assert_eq!(
            feed(&mut a, t20, source, &forged),
            Err(IceDrop::BadIntegrity)
        );

        assert_eq!(a.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));
        a.handle_timeout(t0 + CONSENT_TIMEOUT - Duration::from_millis(1));
        assert!(a.is_validated(source));
        assert!(!a.is_expired());
        assert_eq!(events(&mut a), vec![]);

        a.handle_timeout(t0 + CONSENT_TIMEOUT);
        assert!(a.is_expired());
        assert!(!a.is_validated(source));
        assert_eq!(a.selected_tuple(), None);
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(events(&mut a), vec![IceEvent::ConsentExpired]);
        a.handle_timeout(t0 + CONSENT_TIMEOUT * 3);
        assert_eq!(events(&mut a), vec![], "ConsentExpired is emitted once");

        // Terminal: even a valid check is not answered any more.
        let late = t0 + CONSENT_TIMEOUT + Duration::from_secs(1);
        assert_eq!(
            feed(&mut a, late, source, &valid_check(true)),
            Err(IceDrop::ConsentExpired)
        );
        assert!(!a.is_validated(source));
    }

    #[test]
    fn expiry_is_applied_before_a_late_check() {
        // The caller never called handle_timeout: a check arriving after the
        // deadline still finds consent already lost.
        let t0 = Instant::now();
        let mut a = agent(t0);
        let source = addr("192.0.2.51:3478");
        feed(&mut a, t0, source, &valid_check(false)).unwrap();
        let late = t0 + CONSENT_TIMEOUT + Duration::from_secs(5);
        assert_eq!(
            feed(&mut a, late, source, &valid_check(false)),
            Err(IceDrop::ConsentExpired)
        );
        // The unpolled selection change is moot once consent is gone.
        assert_eq!(events(&mut a), vec![IceEvent::ConsentExpired]);
        assert!(!a.is_validated(source));
    }

    #[test]
    fn continuing_checks_keep_consent_alive() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let source = addr("192.0.2.60:9");
        for step in 0..=24u32 {
            let now = t0 + Duration::from_secs(5) * step;
            feed(&mut a, now, source, &valid_check(step == 0)).unwrap();
            assert_eq!(a.poll_timeout(), Some(now + CONSENT_TIMEOUT));
            a.handle_timeout(now + Duration::from_secs(4));
            assert!(a.is_validated(source));
            assert!(!a.is_expired());
        }
        assert_eq!(events(&mut a), vec![IceEvent::SelectedTupleChanged(source)]);
        let last = t0 + Duration::from_secs(5 * 24);
        a.handle_timeout(last + CONSENT_TIMEOUT);
        assert!(a.is_expired());
    }

    #[test]
    fn selected_tuple_falls_back_to_a_fresh_one() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let nominated = addr("10.1.1.1:1");
        let backup = addr("10.2.2.2:2");
        feed(&mut a, t0, nominated, &valid_check(true)).unwrap();
        feed(
            &mut a,
            t0 + Duration::from_secs(20),
            backup,
            &valid_check(false),
        )
        .unwrap();
        assert_eq!(
            events(&mut a),
            vec![IceEvent::SelectedTupleChanged(nominated)]
        );

        assert_eq!(a.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));
        a.handle_timeout(t0 + CONSENT_TIMEOUT);
        assert!(!a.is_validated(nominated));
        assert!(a.is_validated(backup));
        assert_eq!(a.selected_tuple(), Some(backup));
        assert!(!a.is_expired());
        assert_eq!(events(&mut a), vec![IceEvent::SelectedTupleChanged(backup)]);

        let backup_deadline = t0 + Duration::from_secs(20) + CONSENT_TIMEOUT;
        assert_eq!(a.poll_timeout(), Some(backup_deadline));
        a.handle_timeout(backup_deadline);
        assert!(a.is_expired());
        assert_eq!(events(&mut a), vec![IceEvent::ConsentExpired]);
    }

    #[test]
    fn initial_deadline_expires_an_unused_transport() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        assert_eq!(a.poll_timeout(), Some(t0 + INITIAL_CHECK_TIMEOUT));
        // Rejected checks do not count.
        let bad = check_from("nope:peer", LOCAL_PWD, true, None);
        let _ = feed(
            &mut a,
            t0 + Duration::from_secs(10),
            addr("192.0.2.1:1"),
            &bad,
        );
        assert_eq!(a.poll_timeout(), Some(t0 + INITIAL_CHECK_TIMEOUT));
        a.handle_timeout(t0 + INITIAL_CHECK_TIMEOUT - Duration::from_millis(1));
        assert!(!a.is_expired());
        assert_eq!(events(&mut a), vec![]);
        a.handle_timeout(t0 + INITIAL_CHECK_TIMEOUT);
        assert!(a.is_expired());
        assert_eq!(events(&mut a), vec![IceEvent::ConsentExpired]);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn poll_timeout_is_consistent_with_handle_timeout() {
        // At every reported deadline something changes, and just before it nothing does.
        let t0 = Instant::now();
        let mut a = agent(t0);
        let tuples: Vec<SocketAddr> = (1..=4).map(|i| addr(&format!("10.0.0.{i}:5000"))).collect();
        for (i, &tuple) in tuples.iter().enumerate() {
            let now = t0 + Duration::from_secs(3) * u32::try_from(i).unwrap();
            feed(&mut a, now, tuple, &valid_check(i == 0)).unwrap();
        }
        events(&mut a);
        let mut deadlines = 0;
        while let Some(deadline) = a.poll_timeout() {
            let before: Vec<bool> = tuples.iter().map(|&t| a.is_validated(t)).collect();
            a.handle_timeout(deadline - Duration::from_nanos(1));
            let just_before: Vec<bool> = tuples.iter().map(|&t| a.is_validated(t)).collect();
            assert_eq!(before, just_before);
            assert_eq!(a.poll_timeout(), Some(deadline));
            a.handle_timeout(deadline);
            let after: Vec<bool> = tuples.iter().map(|&t| a.is_validated(t)).collect();
            assert!(
                before != after || a.is_expired(),
                "nothing happened at {deadline:?}"
            );
            assert!(a.poll_timeout().is_none_or(|next| next > deadline));
            deadlines += 1;
        }
        assert_eq!(deadlines, 4);
        assert!(a.is_expired());
    }

    #[test]
    fn validated_tuples_are_bounded_and_keep_the_selected_one() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let selected = addr("10.9.9.9:9");
        feed(&mut a, t0, selected, &valid_check(true)).unwrap();
        let others: Vec<SocketAddr> = (1..=20).map(|i| addr(&format!("192.0.2.{i}:7"))).collect();
        for (i, &tuple) in others.iter().enumerate() {
            let now = t0 + Duration::from_millis(10) * u32::try_from(i + 1).unwrap();
            feed(&mut a, now, tuple, &valid_check(false)).unwrap();
        }
        assert_eq!(a.tuples.len(), MAX_VALIDATED_TUPLES);
        assert_eq!(a.tuples.capacity(), MAX_VALIDATED_TUPLES);
        assert!(
            a.is_validated(selected),
            "the selected tuple is never evicted"
        );
        let validated = others.iter().filter(|&&t| a.is_validated(t)).count();
        assert_eq!(validated, MAX_VALIDATED_TUPLES - 1);
        // The survivors are the most recently checked ones.
        for &tuple in &others[others.len() - (MAX_VALIDATED_TUPLES - 1)..] {
            assert!(a.is_validated(tuple));
        }
        assert_eq!(a.selected_tuple(), Some(selected));
    }

    #[test]
    fn credentials_are_random_ice_chars() {
        let a = IceCredentials::generate();
        let b = IceCredentials::generate();
        assert_ne!(a, b);
        for creds in [&a, &b] {
            assert_eq!(creds.ufrag.len(), UFRAG_LEN);
            assert_eq!(creds.pwd.len(), PWD_LEN);
            assert!(
                creds
                    .ufrag
                    .bytes()
                    .chain(creds.pwd.bytes())
                    .all(|c| ICE_CHARS.contains(&c))
            );
        }
        assert!(!format!("{a:?}").contains(&a.pwd));
        // Deterministic with a seeded source, and every ice-char is reachable.
        let mut rng = StdRng::seed_from_u64(7);
        let seeded = IceCredentials::generate_with(&mut rng);
        assert_eq!(
            seeded,
            IceCredentials::generate_with(&mut StdRng::seed_from_u64(7))
        );
        let mut seen = [false; 256];
        for _ in 0..200 {
            for c in IceCredentials::generate_with(&mut rng).pwd.bytes() {
                seen[usize::from(c)] = true;
            }
        }
        assert!(ICE_CHARS.iter().all(|&c| seen[usize::from(c)]));
        // The generated credentials work end to end.
        let t0 = Instant::now();
        let mut agent = IceLiteAgent::from_credentials(seeded.clone(), t0);
        assert_eq!(agent.local_ufrag(), seeded.ufrag);
        assert_eq!(agent.local_pwd(), seeded.pwd);
        let check = check_from(&format!("{}:x", seeded.ufrag), &seeded.pwd, false, None);
        assert!(feed(&mut agent, t0, addr("192.0.2.1:2"), &check).is_ok());
    }

    #[test]
    fn username_local_ufrag_splits_at_the_first_colon() {
        assert_eq!(username_local_ufrag(b"abcd:efgh"), Some(&b"abcd"[..]));
        assert_eq!(username_local_ufrag(b"abcd:ef:gh"), Some(&b"abcd"[..]));
        assert_eq!(username_local_ufrag(b":x"), Some(&b""[..]));
        assert_eq!(username_local_ufrag(b"abcd:"), Some(&b"abcd"[..]));
        assert_eq!(username_local_ufrag(b"abcd"), None);
        assert_eq!(username_local_ufrag(b""), None);
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let a = agent(Instant::now());
        assert!(!format!("{a:?}").contains(LOCAL_PWD));
        assert_eq!(IceDrop::BadIntegrity.as_str(), "bad_integrity");
    }
}

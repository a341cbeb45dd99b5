//! Access tokens: JWTs signed with an API key's secret (HMAC), in three kinds.
//!
//! This module owns the token format, the keyring ([`ApiKeys`]) and the rules a token must pass
//! before anything in the server trusts it. It must not look at rooms, sessions or storage:
//! callers pass in what they know (the room they expect, the time) and get typed claims or a
//! typed [`TokenError`] back.
//!
//! # Kinds
//!
//! The `aud` claim says what a token is for, so one kind can never stand in for another:
//!
//! | kind | `aud` | minted by | verified by | yields |
//! |---|---|---|---|---|
//! | join | `join` | [`ApiKeys::mint_join`] | [`ApiKeys::verify_join`] | [`Claims`] |
//! | admin | `admin` | [`ApiKeys::mint_admin`] | [`ApiKeys::verify_admin`] | [`AdminClaims`] |
//! | guest invitation | `invitation` | [`ApiKeys::mint_invitation`] | [`ApiKeys::admit_guest`] | [`Claims`] of a fresh guest |
//!
//! # Wire format
//!
//! Header `{"alg":"HS256","typ":"JWT","kid":"<key id>"}`; payload
//! `{"iss":"<key id>","sub":"alice","aud":"join","name":"Alice","room":"standup",
//! "grants":{"join":true,"subscribe":true,…},"nbf":…,"exp":…,"jti":"…"}`.
//! Required: `iss` (equal to `kid`), `sub`, `aud`, `nbf`, `exp`, `jti`; `room` and `grants` for
//! join tokens; `room` and `role` for invitations; `grants` for admin tokens (whose `room` is
//! optional: absent means every room). Unknown claims are ignored; unknown grants are not granted.
//!
//! # What verification refuses
//!
//! In this order, each with its own [`TokenError`] variant: tokens longer than
//! [`TokenPolicy::max_token_len`]; anything but three non-empty base64url segments (no padding,
//! canonical encoding); a header or payload that is not a JSON object or that repeats a key at
//! any depth (serde would silently keep the last one, so a signed-looking `"room"` could hide
//! a second one); `alg` outside [`TokenPolicy::algorithms`] (`none`, `RS256` and every
//! asymmetric algorithm can never be configured: keys are shared secrets, so RS/HS confusion
//! has nothing to confuse); a `crit` header; a missing or unknown `kid`; a bad signature
//! (constant-time HMAC compare, aws-lc-rs); missing or malformed claims; `iss` ≠ `kid`; the
//! wrong kind; `nbf`/`exp` against the caller's `now` with [`TokenPolicy::leeway`]; a lifetime
//! (`exp - nbf`) above the cap for the kind; names that break [`crate::names`]; and finally a
//! room other than the one the caller expects.
//!
//! # Key rotation without downtime
//!
//! [`ApiKeys`] is a shared keyring: every clone sees the same keys, and keys can be added and
//! retired at run time through any clone. To rotate: [`ApiKeys::insert`] the new key (tokens of
//! both keys now verify), [`ApiKeys::set_signing_key`] to the new one (new tokens use it), wait
//! for the longest token lifetime of the old key to pass, then [`ApiKeys::remove`] the old one.
//!
//! # Time
//!
//! Every check takes `now` (seconds since the Unix epoch) as a parameter so tests and the
//! room actor can pin it; [`unix_now`] is the one place that reads the clock, for callers that
//! have no `now` of their own.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::names;

/// The current time in seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// What a token allows. Every grant defaults to `false`, so an unknown or missing grant is
/// never granted.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(default)]
pub struct Grants {
    /// May join the room.
    pub join: bool,
    /// May publish tracks.
    pub publish: bool,
    /// May receive others' tracks.
    pub subscribe: bool,
    /// May send data (data channels, chat).
    pub publish_data: bool,
    /// May administer the room: remove or mute participants, change grants, invite guests.
    pub room_admin: bool,
    /// May create the room if it does not exist (on join, or through the admin API).
    pub room_create: bool,
    /// Present in the room without being shown to the other participants.
    pub hidden: bool,
    /// A recorder: a bot that subscribes on behalf of a recording service.
    pub recorder: bool,
}

impl Grants {
    /// A full participant: join, publish, subscribe and publish data.
    pub fn participant() -> Self {
        Self {
            join: true,
            publish: true,
            subscribe: true,
            publish_data: true,
            ..Self::default()
        }
    }

    /// Whether every grant of `self` is also in `other` (a delegation may not widen rights).
    pub fn is_subset_of(&self, other: &Grants) -> bool {
        let pairs = [
            (self.join, other.join),
            (self.publish, other.publish),
            (self.subscribe, other.subscribe),
            (self.publish_data, other.publish_data),
            (self.room_admin, other.room_admin),
            (self.room_create, other.room_create),
            (self.hidden, other.hidden),
            (self.recorder, other.recorder),
        ];
        pairs.iter().all(|&(mine, theirs)| !mine || theirs)
    }
}

/// What a token is for (its `aud` claim).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Joins one room over the signaling WebSocket.
    Join,
    /// Calls the admin REST API.
    Admin,
    /// A guest invitation: exchanged, with a meeting code, for a guest's [`Claims`].
    Invitation,
}

impl TokenKind {
    /// The `aud` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Join => "join",
            TokenKind::Admin => "admin",
            TokenKind::Invitation => "invitation",
        }
    }

    fn parse(aud: &str) -> Option<Self> {
        match aud {
            "join" => Some(TokenKind::Join),
            "admin" => Some(TokenKind::Admin),
            "invitation" => Some(TokenKind::Invitation),
            _ => None,
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified claims of a join token (or of a guest admitted by an invitation): who joins
/// which room with which grants. This is what the room actor trusts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The API key that signed it (for a guest: the key that signed the invitation).
    pub iss: String,
    /// Identity, unique in the room (a guest's is generated: `guest-<random>`).
    pub sub: String,
    /// Display name (may be empty).
    #[serde(default)]
    pub name: String,
    /// Room.
    pub room: String,
    /// Grants.
    pub grants: Grants,
    /// Not before (seconds since the Unix epoch).
    pub nbf: u64,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
    /// Token id. For a guest this is the invitation's `jti`, so revoking an invitation can
    /// find every guest it admitted.
    pub jti: String,
}

/// The verified claims of an admin token (for the admin REST API; never accepted to join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClaims {
    /// The API key that signed it.
    pub iss: String,
    /// Who acts (for audit logs).
    pub sub: String,
    /// The one room this token administers, or `None` for every room.
    pub room: Option<String>,
    /// Grants (`room_admin`, `room_create`, and the media grants it may delegate to guests).
    pub grants: Grants,
    /// Not before (seconds since the Unix epoch).
    pub nbf: u64,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
    /// Token id.
    pub jti: String,
}

/// The verified claims of a guest invitation, before a guest is admitted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The API key that signed it.
    pub iss: String,
    /// The identity of the host who minted it.
    pub invited_by: String,
    /// The one room (meeting) it admits to.
    pub room: String,
    /// The role guests get.
    pub role: GuestRole,
    /// Not before (seconds since the Unix epoch).
    pub nbf: u64,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
    /// Token id (to revoke the invitation).
    pub jti: String,
}

/// What an invited guest may do. Never includes `room_admin`, `room_create`, `hidden` or
/// `recorder`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum GuestRole {
    /// Watches and listens: join + subscribe.
    Viewer,
    /// Takes part: join + subscribe + publish + publish data.
    Speaker,
}

impl GuestRole {
    /// Exactly the grants of the role.
    pub fn grants(self) -> Grants {
        match self {
            GuestRole::Viewer => Grants {
                join: true,
                subscribe: true,
                ..Grants::default()
            },
            GuestRole::Speaker => Grants {
                join: true,
                subscribe: true,
                publish: true,
                publish_data: true,
                ..Grants::default()
            },
        }
    }
}

/// Someone whose verified token carries grants in rooms: a host minting an invitation.
pub trait Principal {
    /// The verified identity.
    fn identity(&self) -> &str;
    /// The grants this principal holds in `room` (none if its token is for another room).
    fn grants_in(&self, room: &str) -> Grants;
}

impl Principal for Claims {
    fn identity(&self) -> &str {
        &self.sub
    }
    fn grants_in(&self, room: &str) -> Grants {
        if self.room == room {
            self.grants
        } else {
            Grants::default()
        }
    }
}

impl Principal for AdminClaims {
    fn identity(&self) -> &str {
        &self.sub
    }
    fn grants_in(&self, room: &str) -> Grants {
        match &self.room {
            Some(mine) if mine != room => Grants::default(),
            _ => self.grants,
        }
    }
}

/// An HMAC algorithm a token may be signed with. Asymmetric algorithms cannot be expressed:
/// API keys are shared secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// HMAC-SHA256.
    Hs256,
    /// HMAC-SHA384.
    Hs384,
    /// HMAC-SHA512.
    Hs512,
}

impl SigningAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Hs256 => "HS256",
            SigningAlgorithm::Hs384 => "HS384",
            SigningAlgorithm::Hs512 => "HS512",
        }
    }

    fn parse(alg: &str) -> Option<Self> {
        match alg {
            "HS256" => Some(SigningAlgorithm::Hs256),
            "HS384" => Some(SigningAlgorithm::Hs384),
            "HS512" => Some(SigningAlgorithm::Hs512),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            SigningAlgorithm::Hs256 => Algorithm::HS256,
            SigningAlgorithm::Hs384 => Algorithm::HS384,
            SigningAlgorithm::Hs512 => Algorithm::HS512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            SigningAlgorithm::Hs256 => hmac::HMAC_SHA256,
            SigningAlgorithm::Hs384 => hmac::HMAC_SHA384,
            SigningAlgorithm::Hs512 => hmac::HMAC_SHA512,
        }
    }
}

/// How tokens are minted and what verification accepts. Fixed when the [`ApiKeys`] is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The `alg` values verification accepts (default: HS256 only).
    pub algorithms: Vec<SigningAlgorithm>,
    /// The algorithm new tokens are signed with; must be in `algorithms`.
    pub signing_algorithm: SigningAlgorithm,
    /// Longest join token (`exp - nbf`), minted or accepted (default 10 minutes). A join
    /// token only has to live until the WebSocket is open.
    pub max_join_ttl: Duration,
    /// Longest admin token (default 1 hour).
    pub max_admin_ttl: Duration,
    /// Longest guest invitation (default 7 days: a link sent ahead of a meeting).
    pub max_invitation_ttl: Duration,
    /// Clock skew tolerated on `nbf` and `exp` between the minting and the verifying host
    /// (default 5 s).
    pub leeway: Duration,
    /// Longest token accepted, in bytes (default 8 KiB), checked before any decoding.
    pub max_token_len: usize,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            algorithms: vec![SigningAlgorithm::Hs256],
            signing_algorithm: SigningAlgorithm::Hs256,
            max_join_ttl: Duration::from_secs(600),
            max_admin_ttl: Duration::from_secs(3600),
            max_invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            leeway: Duration::from_secs(5),
            max_token_len: 8 * 1024,
        }
    }
}

impl TokenPolicy {
    fn max_ttl(&self, kind: TokenKind) -> Duration {
        match kind {
            TokenKind::Join => self.max_join_ttl,
            TokenKind::Admin => self.max_admin_ttl,
            TokenKind::Invitation => self.max_invitation_ttl,
        }
    }
}

/// The part of a token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPart {
    /// The JOSE header.
    Header,
    /// The claims.
    Payload,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenPart::Header => "header",
            TokenPart::Payload => "payload",
        })
    }
}

/// Why a token was refused. Every message starts with "the token", so it reads well after
/// "cannot join: ". [`TokenError::code`] gives a stable machine code per variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`TokenPolicy::max_token_len`].
    #[error("the token does not verify: {len} bytes is more than the {max} allowed")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not three base64url segments of JSON objects.
    #[error("the token does not verify: malformed ({0})")]
    Malformed(&'static str),
    /// A JSON key appears twice in one object.
    #[error("the token does not verify: its {part} repeats the key {key:?}")]
    DuplicateKey {
        /// Header or payload.
        part: TokenPart,
        /// The repeated key.
        key: String,
    },
    /// `alg` is not in the allow-list (includes `none` and every asymmetric algorithm).
    #[error("the token does not verify: algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// A required header field or claim is absent.
    #[error("the token does not verify: it has no {0:?}")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unacceptable value.
    #[error("the token does not verify: {claim:?} is invalid: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// Why.
        reason: String,
    },
    /// `kid` names no key in the keyring (never existed, or retired).
    #[error("the token is signed by an unknown key")]
    UnknownKey,
    /// `iss` is not the `kid` that signed it.
    #[error("the token does not verify: its issuer is not its signing key")]
    WrongIssuer,
    /// The signature does not match.
    #[error("the token does not verify: bad signature")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `exp - nbf` is longer than allowed for its kind.
    #[error("the token lives longer than the {max_secs} s allowed for a {kind} token")]
    LifetimeTooLong {
        /// Its kind.
        kind: TokenKind,
        /// The cap in seconds.
        max_secs: u64,
    },
    /// A token of another kind (e.g. an admin token presented to join).
    #[error("the token is a {found} token, not a {expected} token")]
    WrongKind {
        /// What the caller needed.
        expected: TokenKind,
        /// What it is.
        found: TokenKind,
    },
    /// For a room other than the one the caller expects.
    #[error("the token is for room {found:?}, not {expected:?}")]
    WrongRoom {
        /// The room the caller expected.
        expected: String,
        /// The room in the token.
        found: String,
    },
}

impl TokenError {
    /// A stable snake_case code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::DuplicateKey { .. } => "token_duplicate_key",
            TokenError::AlgorithmNotAllowed(_) => "token_algorithm_not_allowed",
            TokenError::MissingClaim(_) => "token_missing_claim",
            TokenError::InvalidClaim { .. } => "token_invalid_claim",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::LifetimeTooLong { .. } => "token_lifetime_too_long",
            TokenError::WrongKind { .. } => "token_wrong_kind",
            TokenError::WrongRoom { .. } => "token_wrong_room",
        }
    }
}

/// Why a token could not be minted. [`MintError::NotRoomAdmin`] and
/// [`MintError::RoleExceedsGrants`] are the caller's fault (HTTP 403); name and TTL errors are
/// bad input (400); the rest are configuration problems (500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// No key to sign with: the keyring is empty or the signing key was removed.
    #[error("no signing key is configured")]
    NoSigningKey,
    /// The named key is not in the keyring.
    #[error("unknown API key {0:?}")]
    UnknownKey(String),
    /// [`TokenPolicy::signing_algorithm`] is not in [`TokenPolicy::algorithms`].
    #[error("the signing algorithm is not in the allow-list")]
    AlgorithmNotAllowed,
    /// Asked for a longer lifetime than the kind allows (or zero).
    #[error("a {kind} token may live 1 to {max_secs} s, not {requested_secs} s")]
    TtlOutOfRange {
        /// The kind.
        kind: TokenKind,
        /// What was asked.
        requested_secs: u64,
        /// The cap.
        max_secs: u64,
    },
    /// A room, identity or display name breaks [`crate::names`].
    #[error("invalid {field}: {reason}")]
    InvalidName {
        /// `room`, `identity` or `name`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The host has no `room_admin` grant in the room.
    #[error("only a room admin of {0:?} may invite guests to it")]
    NotRoomAdmin(String),
    /// The role would give guests grants the host does not hold.
    #[error("the {0:?} role grants more than the host holds")]
    RoleExceedsGrants(GuestRole),
    /// The JWT library refused to encode (should not happen with HMAC keys).
    #[error("cannot encode the token: {0}")]
    Encode(String),
}

/// Why a guest could not be admitted with an invitation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The invitation does not verify, or is for another meeting ([`TokenError::WrongRoom`]).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The display name the guest typed breaks [`crate::names`] or is blank.
    #[error("invalid display name: {0}")]
    DisplayName(String),
}

struct Keyring {
    secrets: HashMap<String, Vec<u8>>,
    signing: Option<String>,
}

/// The API keys that may sign tokens, and the [`TokenPolicy`]. Cheap to clone; clones share
/// the keys, so a rotation through one clone is seen by all (see the module docs).
#[derive(Clone)]
pub struct ApiKeys {
    ring: Arc<RwLock<Keyring>>,
    policy: Arc<TokenPolicy>,
}

impl Default for ApiKeys {
    fn default() -> Self {
        Self::new(TokenPolicy::default())
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<&String> = ring.secrets.keys().collect();
        ids.sort();
        f.debug_struct("ApiKeys")
            .field("keys", &ids)
            .field("signing", &ring.signing)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The payload as sent: every claim optional so a missing one is reported by name.
#[derive(Serialize, Deserialize, Default)]
struct WireClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grants: Option<Grants>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<GuestRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

#[derive(Deserialize)]
struct WireHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<IgnoredAny>,
}

/// Checked claims common to every kind.
struct Verified {
    iss: String,
    sub: String,
    nbf: u64,
    exp: u64,
    jti: String,
    rest: WireClaims,
}

impl ApiKeys {
    /// An empty keyring with `policy`.
    pub fn new(policy: TokenPolicy) -> Self {
        Self {
            ring: Arc::new(RwLock::new(Keyring {
                secrets: HashMap::new(),
                signing: None,
            })),
            policy: Arc::new(policy),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Adds (or replaces) a key. The first key added becomes the signing key. Use secrets of
    /// at least 32 random bytes.
    pub fn insert(&self, key: impl Into<String>, secret: impl Into<Vec<u8>>) {
        let key = key.into();
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        if ring.signing.is_none() {
            ring.signing = Some(key.clone());
        }
        ring.secrets.insert(key, secret.into());
    }

    /// Retires a key: tokens it signed stop verifying at once. If it was the signing key,
    /// there is no signing key until [`ApiKeys::set_signing_key`]. Returns whether it existed.
    pub fn remove(&self, key: &str) -> bool {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        if ring.signing.as_deref() == Some(key) {
            ring.signing = None;
        }
        ring.secrets.remove(key).is_some()
    }

    /// Makes `key` (already inserted) the key new tokens are signed with.
    pub fn set_signing_key(&self, key: &str) -> Result<(), MintError> {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        if !ring.secrets.contains_key(key) {
            return Err(MintError::UnknownKey(key.to_owned()));
        }
        ring.signing = Some(key.to_owned());
        Ok(())
    }

    /// The key new tokens are signed with.
    pub fn signing_key(&self) -> Option<String> {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .signing
            .clone()
    }

    /// The ids of every key that verifies, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<String> = ring.secrets.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .secrets
            .is_empty()
    }

    fn secret(&self, key: &str) -> Option<Vec<u8>> {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .secrets
            .get(key)
            .cloned()
    }

    // ----- minting -----

    /// Mints a join token for `identity` (display `name`) in `room` with the signing key,
    /// valid from `now` for `ttl` (1 s to [`TokenPolicy::max_join_ttl`]).
    pub fn mint_join(
        &self,
        identity: &str,
        name: &str,
        room: &str,
        grants: Grants,
        ttl: Duration,
        now: u64,
    ) -> Result<String, MintError> {
        let key = self.signing_key().ok_or(MintError::NoSigningKey)?;
        self.mint_join_with(&key, identity, name, room, grants, ttl, now)
    }

    /// Mints a join token with the current time and a named key (kept for the dev endpoint,
    /// examples and tests; prefer [`ApiKeys::mint_join`]).
    pub fn mint(
        &self,
        key: &str,
        identity: &str,
        name: &str,
        room: &str,
        grants: Grants,
        ttl: Duration,
    ) -> Result<String, MintError> {
        self.mint_join_with(key, identity, name, room, grants, ttl, unix_now())
    }

    #[allow(clippy::too_many_arguments)]
    fn mint_join_with(
        &self,
        key: &str,
        identity: &str,
        name: &str,
        room: &str,
        grants: Grants,
        ttl: Duration,
        now: u64,
    ) -> Result<String, MintError> {
        check_name("identity", names::validate_identity(identity))?;
        check_name("room", names::validate_room(room))?;
        check_name("name", names::validate_display_name(name))?;
        let claims = WireClaims {
            sub: Some(identity.to_owned()),
            name: Some(name.to_owned()),
            room: Some(room.to_owned()),
            grants: Some(grants),
            ..WireClaims::default()
        };
        self.sign(key, TokenKind::Join, claims, ttl, now)
    }

    /// Mints an admin token for the REST API: `room` limits it to one room (`None`: every
    /// room). Valid from `now` for `ttl` (1 s to [`TokenPolicy::max_admin_ttl`]).
    pub fn mint_admin(
        &self,
        identity: &str,
        room: Option<&str>,
        grants: Grants,
        ttl: Duration,
        now: u64,
    ) -> Result<String, MintError> {
        let key = self.signing_key().ok_or(MintError::NoSigningKey)?;
        check_name("identity", names::validate_identity(identity))?;
        if let Some(room) = room {
            check_name("room", names::validate_room(room))?;
        }
        let claims = WireClaims {
            sub: Some(identity.to_owned()),
            room: room.map(str::to_owned),
            grants: Some(grants),
            ..WireClaims::default()
        };
        self.sign(&key, TokenKind::Admin, claims, ttl, now)
    }

    /// Mints a guest invitation to `room` with `role`, on behalf of `host` (whose token was
    /// verified by the caller). Refused unless the host holds `room_admin` in `room` and every
    /// grant of the role. Valid from `now` for `ttl` (1 s to
    /// [`TokenPolicy::max_invitation_ttl`]); any number of guests may use it until then.
    pub fn mint_invitation(
        &self,
        host: &impl Principal,
        room: &str,
        role: GuestRole,
        ttl: Duration,
        now: u64,
    ) -> Result<String, MintError> {
        check_name("room", names::validate_room(room))?;
        let held = host.grants_in(room);
        if !held.room_admin {
            return Err(MintError::NotRoomAdmin(room.to_owned()));
        }
        if !role.grants().is_subset_of(&held) {
            return Err(MintError::RoleExceedsGrants(role));
        }
        let key = self.signing_key().ok_or(MintError::NoSigningKey)?;
        let claims = WireClaims {
            sub: Some(host.identity().to_owned()),
            room: Some(room.to_owned()),
            role: Some(role),
            ..WireClaims::default()
        };
        self.sign(&key, TokenKind::Invitation, claims, ttl, now)
    }

    fn sign(
        &self,
        key: &str,
        kind: TokenKind,
        mut claims: WireClaims,
        ttl: Duration,
        now: u64,
    ) -> Result<String, MintError> {
        let max = self.policy.max_ttl(kind);
        if ttl.is_zero() || ttl > max {
            return Err(MintError::TtlOutOfRange {
                kind,
                requested_secs: ttl.as_secs(),
                max_secs: max.as_secs(),
            });
        }
        let alg = self.policy.signing_algorithm;
        if !self.policy.algorithms.contains(&alg) {
            return Err(MintError::AlgorithmNotAllowed);
        }
        let secret = self
            .secret(key)
            .ok_or_else(|| MintError::UnknownKey(key.to_owned()))?;
        claims.iss = Some(key.to_owned());
        claims.aud = Some(kind.as_str().to_owned());
        claims.nbf = Some(now);
        claims.exp = Some(now.saturating_add(ttl.as_secs()));
        claims.jti = Some(random_id(24));
        let mut header = Header::new(alg.jwt());
        header.kid = Some(key.to_owned());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
            .map_err(|e| MintError::Encode(e.to_string()))
    }

    // ----- verification -----

    /// Verifies a join token as of `now`. With `expected_room`, a token for another room is
    /// refused with [`TokenError::WrongRoom`]. Admin tokens and invitations are refused with
    /// [`TokenError::WrongKind`].
    pub fn verify_join(
        &self,
        token: &str,
        expected_room: Option<&str>,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let v = self.verify_kind(token, TokenKind::Join, now)?;
        let room = v.rest.room.ok_or(TokenError::MissingClaim("room"))?;
        claim_name("room", names::validate_room(&room))?;
        let grants = v.rest.grants.ok_or(TokenError::MissingClaim("grants"))?;
        let name = v.rest.name.unwrap_or_default();
        claim_name("name", names::validate_display_name(&name))?;
        if let Some(expected) = expected_room
            && expected != room
        {
            return Err(TokenError::WrongRoom {
                expected: expected.to_owned(),
                found: room,
            });
        }
        Ok(Claims {
            iss: v.iss,
            sub: v.sub,
            name,
            room,
            grants,
            nbf: v.nbf,
            exp: v.exp,
            jti: v.jti,
        })
    }

    /// Verifies a join token at the current time, for any room. Callers that know the room
    /// or the time should use [`ApiKeys::verify_join`].
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_join(token, None, unix_now())
    }

    /// Verifies a join token as of `now` (seconds since the Unix epoch), for any room.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        self.verify_join(token, None, now)
    }

    /// Verifies an admin token as of `now`. Join tokens and invitations are refused.
    pub fn verify_admin(&self, token: &str, now: u64) -> Result<AdminClaims, TokenError> {
        let v = self.verify_kind(token, TokenKind::Admin, now)?;
        if let Some(room) = &v.rest.room {
            claim_name("room", names::validate_room(room))?;
        }
        let grants = v.rest.grants.ok_or(TokenError::MissingClaim("grants"))?;
        Ok(AdminClaims {
            iss: v.iss,
            sub: v.sub,
            room: v.rest.room,
            grants,
            nbf: v.nbf,
            exp: v.exp,
            jti: v.jti,
        })
    }

    /// Verifies a guest invitation as of `now` and checks it is for `meeting_room` (the room
    /// the caller resolved from the meeting code the guest typed).
    pub fn verify_invitation(
        &self,
        token: &str,
        meeting_room: &str,
        now: u64,
    ) -> Result<Invitation, TokenError> {
        let v = self.verify_kind(token, TokenKind::Invitation, now)?;
        let room = v.rest.room.ok_or(TokenError::MissingClaim("room"))?;
        claim_name("room", names::validate_room(&room))?;
        let role = v.rest.role.ok_or(TokenError::MissingClaim("role"))?;
        if room != meeting_room {
            return Err(TokenError::WrongRoom {
                expected: meeting_room.to_owned(),
                found: room,
            });
        }
        Ok(Invitation {
            iss: v.iss,
            invited_by: v.sub,
            room,
            role,
            nbf: v.nbf,
            exp: v.exp,
            jti: v.jti,
        })
    }

    /// Admits a guest: verifies `invitation` for `meeting_room` (resolved by the caller from
    /// the meeting code) as of `now`, and returns the claims the guest joins with: a fresh
    /// identity `guest-<16 random letters/digits>`, `display_name` (trimmed; 1–128 characters,
    /// no control characters), exactly the role's grants, and an expiry of the invitation's
    /// or `now` + [`TokenPolicy::max_join_ttl`], whichever comes first. Each call makes a new
    /// guest; the claims go straight to the room, no token is minted.
    pub fn admit_guest(
        &self,
        invitation: &str,
        meeting_room: &str,
        display_name: &str,
        now: u64,
    ) -> Result<Claims, GuestError> {
        let name = display_name.trim();
        if name.is_empty() {
            return Err(GuestError::DisplayName(
                "a guest must give a display name".into(),
            ));
        }
        names::validate_display_name(name).map_err(GuestError::DisplayName)?;
        let inv = self.verify_invitation(invitation, meeting_room, now)?;
        let join_end = now.saturating_add(self.policy.max_join_ttl.as_secs());
        Ok(Claims {
            iss: inv.iss,
            sub: format!("guest-{}", random_id(16)),
            name: name.to_owned(),
            room: inv.room,
            grants: inv.role.grants(),
            nbf: now,
            exp: inv.exp.min(join_end),
            jti: inv.jti,
        })
    }

    /// Everything up to and including the checks common to all kinds.
    fn verify_kind(&self, token: &str, kind: TokenKind, now: u64) -> Result<Verified, TokenError> {
        let max = self.policy.max_token_len;
        if token.len() > max {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated segments"));
        };
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(TokenError::Malformed("an empty segment"));
        }
        let header_json =
            base64url_decode(header_b64).ok_or(TokenError::Malformed("header is not base64url"))?;
        check_json_object(&header_json, TokenPart::Header)?;
        let header: WireHeader = serde_json::from_slice(&header_json)
            .map_err(|_| TokenError::Malformed("header fields have the wrong types"))?;
        let alg_name = header.alg.ok_or(TokenError::MissingClaim("alg"))?;
        let alg = SigningAlgorithm::parse(&alg_name)
            .filter(|a| self.policy.algorithms.contains(a))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(alg_name.chars().take(32).collect()))?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed("critical header extensions"));
        }
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(TokenError::Malformed("typ is not JWT"));
        }
        // Checked after `alg` so an unsigned `alg: none` token is reported as what it is.
        if signature_b64.is_empty() {
            return Err(TokenError::Malformed("no signature"));
        }
        let kid = header.kid.ok_or(TokenError::MissingClaim("kid"))?;
        let secret = self.secret(&kid).ok_or(TokenError::UnknownKey)?;
        let signature = base64url_decode(signature_b64)
            .ok_or(TokenError::Malformed("signature is not base64url"))?;
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let signed = token
            .get(..signed_len)
            .ok_or(TokenError::Malformed("truncated"))?;
        hmac::verify(
            &hmac::Key::new(alg.hmac(), &secret),
            signed.as_bytes(),
            &signature,
        )
        .map_err(|_| TokenError::BadSignature)?;

        let payload_json = base64url_decode(payload_b64)
            .ok_or(TokenError::Malformed("payload is not base64url"))?;
        check_json_object(&payload_json, TokenPart::Payload)?;
        let mut claims: WireClaims =
            serde_json::from_slice(&payload_json).map_err(|e| TokenError::InvalidClaim {
                claim: "payload",
                reason: e.to_string(),
            })?;
        let iss = claims.iss.take().ok_or(TokenError::MissingClaim("iss"))?;
        let sub = claims.sub.take().ok_or(TokenError::MissingClaim("sub"))?;
        let aud = claims.aud.take().ok_or(TokenError::MissingClaim("aud"))?;
        let nbf = claims.nbf.take().ok_or(TokenError::MissingClaim("nbf"))?;
        let exp = claims.exp.take().ok_or(TokenError::MissingClaim("exp"))?;
        let jti = claims.jti.take().ok_or(TokenError::MissingClaim("jti"))?;
        if iss != kid {
            return Err(TokenError::WrongIssuer);
        }
        let found = TokenKind::parse(&aud).ok_or_else(|| TokenError::InvalidClaim {
            claim: "aud",
            reason: "not join, admin or invitation".into(),
        })?;
        if found != kind {
            return Err(TokenError::WrongKind {
                expected: kind,
                found,
            });
        }
        let leeway = self.policy.leeway.as_secs();
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if now.saturating_add(leeway) < nbf {
            return Err(TokenError::NotYetValid);
        }
        let max_ttl = self.policy.max_ttl(kind).as_secs();
        if exp.saturating_sub(nbf) > max_ttl {
            return Err(TokenError::LifetimeTooLong {
                kind,
                max_secs: max_ttl,
            });
        }
        claim_name("sub", names::validate_identity(&sub))?;
        if jti.is_empty() || jti.len() > 128 || !jti.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::InvalidClaim {
                claim: "jti",
                reason: "must be 1 to 128 printable ASCII characters".into(),
            });
        }
        Ok(Verified {
            iss,
            sub,
            nbf,
            exp,
            jti,
            rest: claims,
        })
    }
}

fn check_name(field: &'static str, result: Result<(), String>) -> Result<(), MintError> {
    result.map_err(|reason| MintError::InvalidName { field, reason })
}

fn claim_name(claim: &'static str, result: Result<(), String>) -> Result<(), TokenError> {
    result.map_err(|reason| TokenError::InvalidClaim { claim, reason })
}

/// `len` random lowercase letters and digits (5.17 bits each) from the thread's CSPRNG, safe
/// in identities, logs and URLs.
fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| {
            let i = rng.random_range(0..ALPHABET.len());
            ALPHABET.get(i).map_or('x', |&b| char::from(b))
        })
        .collect()
}

/// Strict base64url without padding: canonical (unused trailing bits must be zero), so one
/// token has exactly one spelling.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// Refuses JSON that is not an object, or that repeats a key in any object at any depth.
fn check_json_object(json: &[u8], part: TokenPart) -> Result<(), TokenError> {
    let malformed = match part {
        TokenPart::Header => "header is not a JSON object",
        TokenPart::Payload => "payload is not a JSON object",
    };
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(TokenError::Malformed(malformed));
    }
    let scan: DuplicateScan =
        serde_json::from_slice(json).map_err(|_| TokenError::Malformed(malformed))?;
    match scan.0 {
        Some(key) => Err(TokenError::DuplicateKey {
            part,
            key: key.chars().take(64).collect(),
        }),
        None => Ok(()),
    }
}

/// Walks any JSON value and remembers the first key repeated within one object (after
/// unescaping, so `"room"` and `"\u0072oom"` are the same key).
struct DuplicateScan(Option<String>);

impl<'de> Deserialize<'de> for DuplicateScan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DuplicateVisitor)
    }
}

struct DuplicateVisitor;

impl<'de> Visitor<'de> for DuplicateVisitor {
    type Value = DuplicateScan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(DuplicateScan(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(DuplicateScan(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(DuplicateScan(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(DuplicateScan(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(DuplicateScan(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(DuplicateScan(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = None;
        while let Some(DuplicateScan(found)) = seq.next_element::<DuplicateScan>()? {
            first = first.or(found);
        }
        Ok(DuplicateScan(first))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut first = None;
        while let Some(key) = map.next_key::<String>()? {
            let DuplicateScan(inner) = map.next_value::<DuplicateScan>()?;
            if first.is_none() && seen.contains(&key) {
                first = Some(key);
            } else {
                first = first.or(inner);
                seen.insert(key);
            }
        }
        Ok(DuplicateScan(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_strict_and_canonical() {
        assert_eq!(base64url_decode("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64url_decode("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64url_decode("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64url_decode("").as_deref(), Some(&b""[..]));
        // Non-canonical trailing bits, padding, the standard alphabet and a lone char.
        for bad in ["YR", "YQ==", "a+b/", "Y", "YW J"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
        assert_eq!(
            base64url_decode("-_-_").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_after_unescaping() {
        let dup = |s: &str| check_json_object(s.as_bytes(), TokenPart::Payload);
        assert_eq!(dup(r#"{"a":1,"b":{"c":[1,{"d":2}]}}"#), Ok(()));
        for (json, key) in [
            (r#"{"a":1,"a":2}"#, "a"),
            (r#"{"g":{"x":true,"x":false}}"#, "x"),
            (r#"{"l":[{"y":1,"y":1}]}"#, "y"),
            (r#"{"room":"a","\u0072oom":"b"}"#, "room"),
        ] {
            assert_eq!(
                dup(json),
                Err(TokenError::DuplicateKey {
                    part: TokenPart::Payload,
                    key: key.into()
                }),
                "{json}"
            );
        }
        assert!(matches!(dup("[1,2]"), Err(TokenError::Malformed(_))));
        assert!(matches!(dup("{"), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn guest_roles_never_carry_admin_grants() {
        for role in [GuestRole::Viewer, GuestRole::Speaker] {
            let g = role.grants();
            assert!(g.join && g.subscribe);
            assert!(!g.room_admin && !g.room_create && !g.recorder && !g.hidden);
        }
        assert!(!GuestRole::Viewer.grants().publish);
        assert!(GuestRole::Speaker.grants().publish);
        assert!(
            GuestRole::Viewer
                .grants()
                .is_subset_of(&GuestRole::Speaker.grants())
        );
        assert!(
            !GuestRole::Speaker
                .grants()
                .is_subset_of(&GuestRole::Viewer.grants())
        );
    }
}

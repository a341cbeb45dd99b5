//! Bodies of the signaling-side `cargo fuzz` targets in `fuzz/`, and the generator of their
//! seed corpora.
//!
//! Each target is a `pub fn(&[u8])` here so that the libFuzzer binaries in
//! `fuzz/fuzz_targets/` are one-liners and the very same code runs every checked-in corpus and
//! regression input as an ordinary stable-Rust test (`signaling/tests/fuzz_corpus.rs`), as
//! `sfu_core::fuzzing` does for the media core. A target returns normally on any input the
//! code under test rejects with a typed error; it panics (through `assert!`, the fuzz oracle)
//! only when an invariant breaks: a token that verifies without having been signed by the
//! test key or with claims the rules forbid, an SDP answer that does not parse back to what the
//! server accepted, a frame rejected with an error of the wrong kind. Time is the fixed
//! [`NOW`] and every key is fixed, so every run replays exactly. This module must not open
//! sockets or spawn tasks: the session's socket loop and the room actor are not driven here
//! (the `signaling_frames` target replays the session's ordering rules over the real parse
//! and validation functions instead; see [`signaling_frames`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::borrow::Cow;
use std::io::Cursor;
use std::net::SocketAddr;

use aws_lc_rs::hmac;
use rtc_sdp::description::session::SessionDescription;
use serde_json::Value;
use sfu_core::{Fingerprint, RtpParameters};

use crate::access_token::{
    AdminClaims, ApiKeys, Claims, GuestError, GuestRole, SigningAlgorithm, TokenError, TokenPolicy,
};
use crate::meeting_code::MeetingCode;
use crate::names;
use crate::protocol::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ProtocolError, RequestId, parse_client_message,
};
use crate::sdp::{self, Direction, LocalTransport, RemoteDescription, SdpError};
use crate::session::SessionLimits;

/// A fuzz target: takes the raw fuzzer input, panics only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by its name in `fuzz/fuzz_targets/`, `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("access_token", access_token),
    ("sdp", sdp),
    ("signaling_frames", signaling_frames),
];

/// The time every verification runs at (seconds since the Unix epoch).
pub const NOW: u64 = 1_767_225_600;
/// The id of the key the fuzz inputs are signed with.
pub const KEY_ID: &str = "fuzz-key";
/// Its secret.
pub const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123";
/// A second key of the keyring (tokens may name either).
pub const OTHER_KEY_ID: &str = "fuzz-key-2";
/// Its secret.
pub const OTHER_SECRET: &[u8] = b"fuzz-secret-2-0123456789abcdef-01";
/// A secret no key of the keyring has: structured inputs can ask to be signed with it.
pub const FORGER_SECRET: &[u8] = b"not-the-secret-0123456789abcdef-0";
/// The room the seeds' tokens are for, and the room [`MEETING_CODE`] resolves to.
pub const ROOM: &str = "fuzz-room";
/// The one meeting code the `signaling_frames` target resolves (the real server asks storage).
pub const MEETING_CODE: &str = "abc-defg-hjk";
/// Separates the fields of an input (tokens, names, frames). Never part of UTF-8 text.
pub const SEPARATOR: u8 = 0xFF;
/// Frames of one `signaling_frames` input beyond this are ignored (bounds the run time).
pub const MAX_FRAMES: usize = 32;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The keyring every token target verifies with: [`KEY_ID`] and [`OTHER_KEY_ID`], under the
/// default policy (HS256 only) or, with `every_hmac`, one that allows HS384 and HS512 too.
pub fn keyring(every_hmac: bool) -> ApiKeys {
    let policy = if every_hmac {
        TokenPolicy {
            algorithms: vec![
                SigningAlgorithm::Hs256,
                SigningAlgorithm::Hs384,
                SigningAlgorithm::Hs512,
            ],
            ..TokenPolicy::default()
        }
    } else {
        TokenPolicy::default()
    };
    let keys = ApiKeys::new(policy);
    keys.insert(KEY_ID, SECRET.to_vec());
    keys.insert(OTHER_KEY_ID, OTHER_SECRET.to_vec());
    keys
}

fn secret_of(kid: &str) -> Option<&'static [u8]> {
    match kid {
        KEY_ID => Some(SECRET),
        OTHER_KEY_ID => Some(OTHER_SECRET),
        _ => None,
    }
}

fn hmac_of(alg: &str) -> Option<hmac::Algorithm> {
    match alg {
        "HS256" => Some(hmac::HMAC_SHA256),
        "HS384" => Some(hmac::HMAC_SHA384),
        "HS512" => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (the JWT encoding).
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..=chunk.len() {
            let index = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(BASE64URL.get(index).map_or('A', |&b| char::from(b)));
        }
    }
    out
}

/// Base64url decoding for the oracle (lenient: the verifier has already checked the form).
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = BASE64URL.iter().position(|&a| a == c)?;
        acc = (acc << 6) | u32::try_from(v).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A JWT of exactly these header and payload texts (duplicate keys and odd spacing survive),
/// signed with HMAC `alg` under `secret`.
pub fn sign_token(header: &str, payload: &str, alg: hmac::Algorithm, secret: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        base64url(header.as_bytes()),
        base64url(payload.as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(alg, secret), signed.as_bytes());
    format!("{signed}.{}", base64url(tag.as_ref()))
}

/// The input's fields: split on [`SEPARATOR`], each read as (lossy) UTF-8.
fn fields(data: &[u8]) -> impl Iterator<Item = Cow<'_, str>> {
    data.split(|&b| b == SEPARATOR).map(String::from_utf8_lossy)
}

/// FNV-1a: picks derived choices (which character to change) so that they replay.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// `token` with the character at `seed % len` replaced by another base64url character (or a
/// dot by a letter): one token has one spelling, so any such change must stop it verifying.
fn change_one_character(token: &str, seed: u64) -> Option<String> {
    let len = token.len() as u64;
    if len == 0 || !token.is_ascii() {
        return None;
    }
    let at = usize::try_from(seed % len).ok()?;
    let old = *token.as_bytes().get(at)?;
    let mut pick = usize::try_from((seed >> 32) % 63).ok()?;
    let new = loop {
        let candidate = *BASE64URL.get(pick % 64)?;
        if candidate != old {
            break candidate;
        }
        pick += 1;
    };
    let mut bytes = token.as_bytes().to_vec();
    *bytes.get_mut(at)? = new;
    String::from_utf8(bytes).ok()
}

// ---------------------------------------------------------------------------------------------
// access_token
// ---------------------------------------------------------------------------------------------

/// What an `access_token` input asks for, decoded from its bytes.
#[derive(Debug, Clone)]
pub struct TokenInput {
    /// The keyring (default policy or every HMAC allowed).
    pub keys: ApiKeys,
    /// The token string.
    pub token: String,
    /// The room `verify_join` expects (`None`: any) and `verify_invitation` / `admit_guest`
    /// resolve from the meeting code.
    pub expected_room: Option<String>,
    /// The room of the meeting the invitation is used for.
    pub meeting_room: String,
    /// The display name a guest types.
    pub display_name: String,
}

/// Decodes an `access_token` input.
///
/// Byte 0 holds flags, the rest are fields separated by [`SEPARATOR`]:
///
/// * bit 0 clear (raw): `token ⟨FF⟩ room ⟨FF⟩ display name`; the token is the text as it is.
/// * bit 0 set (structured): `header JSON ⟨FF⟩ payload JSON ⟨FF⟩ room ⟨FF⟩ display name`. The
///   token is those two texts, base64url-encoded and signed with the secret of the header's
///   `kid` (the first key if it names none) under the header's `alg` (HS256 if it names no
///   HMAC), so the fuzzer gets past the signature to the claim checks. With bit 3 set the
///   token is signed with [`FORGER_SECRET`] instead.
/// * bit 1: the keyring allows HS384 and HS512 besides HS256.
/// * bit 2: `verify_join` is called without an expected room.
///
/// A missing room is [`ROOM`]; a missing display name is `Fuzz Guest`.
pub fn decode_token_input(data: &[u8]) -> Option<TokenInput> {
    let (&flags, rest) = data.split_first()?;
    let mut fields = fields(rest);
    let token = if flags & 1 != 0 {
        let header = fields.next().unwrap_or_default();
        let payload = fields.next().unwrap_or_default();
        let lenient: Value = serde_json::from_str(&header).unwrap_or(Value::Null);
        let kid = lenient.get("kid").and_then(Value::as_str).unwrap_or(KEY_ID);
        let alg = lenient
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or("HS256");
        let secret = if flags & 8 != 0 {
            FORGER_SECRET
        } else {
            secret_of(kid).unwrap_or(SECRET)
        };
        sign_token(
            &header,
            &payload,
            hmac_of(alg).unwrap_or(hmac::HMAC_SHA256),
            secret,
        )
    } else {
        fields.next().unwrap_or_default().into_owned()
    };
    let room = fields
        .next()
        .map_or_else(|| ROOM.to_owned(), Cow::into_owned);
    let display_name = fields
        .next()
        .map_or_else(|| "Fuzz Guest".to_owned(), Cow::into_owned);
    Some(TokenInput {
        keys: keyring(flags & 2 != 0),
        token,
        expected_room: (flags & 4 == 0).then(|| room.clone()),
        meeting_room: room,
        display_name,
    })
}

/// Arbitrary bytes as an access token, or header and payload JSON signed with the test key
/// (layout: [`decode_token_input`]), through `verify_join`, `verify_admin`,
/// `verify_invitation` and `admit_guest` at [`NOW`].
///
/// Oracle: nothing panics. Every error has a `token_*` code and reads "the token …". Whatever
/// verifies was signed by a key of the keyring under an allowed algorithm (the signature is
/// recomputed here) and carries exactly the claims of its payload, with `iss` = `kid`, the
/// right `aud`, `nbf - leeway ≤ now < exp + leeway`, a lifetime within the kind's cap, valid
/// names and the expected room. At most one kind verifies. `verify_join` with a room agrees
/// with `verify_join` without one. `admit_guest` succeeds exactly when the invitation verifies
/// and the name is valid, and gives a fresh `guest-…` identity with exactly the role's grants,
/// expiring no later than the invitation or a join token. Changing any one character of a
/// token that verifies makes it fail.
pub fn access_token(data: &[u8]) {
    let Some(input) = decode_token_input(data) else {
        return;
    };
    let verified = check_token(&input);
    if verified && let Some(changed) = change_one_character(&input.token, fnv(data)) {
        let changed = TokenInput {
            token: changed,
            ..input.clone()
        };
        assert!(
            !check_token(&changed),
            "a token still verifies after one character changed: {:?} -> {:?}",
            input.token,
            changed.token
        );
    }
}

/// The token's parts as the oracle reads them: header and payload JSON.
struct TokenParts {
    header: Value,
    payload: Value,
}

fn token_parts(token: &str) -> TokenParts {
    let mut segments = token.split('.');
    let mut json = || -> Value {
        segments
            .next()
            .and_then(base64url_decode)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    };
    let header = json();
    let payload = json();
    TokenParts { header, payload }
}

fn check_error(e: &TokenError) {
    assert!(e.code().starts_with("token_"), "{e:?}: {}", e.code());
    assert!(e.to_string().starts_with("the token"), "{e}");
}

/// The checks every verified token passes, whatever its kind; returns its payload.
fn check_common(
    keys: &ApiKeys,
    token: &str,
    aud: &str,
    max_ttl: u64,
    (iss, sub, nbf, exp, jti): (&str, &str, u64, u64, &str),
) -> Value {
    let parts = token_parts(token);
    let kid = parts.header.get("kid").and_then(Value::as_str);
    assert_eq!(kid, Some(iss), "iss is the kid that signed");
    let secret = secret_of(iss).unwrap_or_else(|| panic!("verified under unknown key {iss:?}"));
    let alg_name = parts
        .header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("");
    let allowed = keys
        .policy()
        .algorithms
        .iter()
        .any(|a| a.as_str() == alg_name);
    assert!(allowed, "verified under algorithm {alg_name:?}");
    let alg = hmac_of(alg_name).unwrap_or_else(|| panic!("no HMAC {alg_name:?}"));
    let (signed, signature) = token.rsplit_once('.').unwrap_or(("", ""));
    let expected = hmac::sign(&hmac::Key::new(alg, secret), signed.as_bytes());
    assert_eq!(
        signature,
        base64url(expected.as_ref()),
        "verified without the key's signature"
    );
    let p = parts.payload;
    assert!(p.is_object(), "verified a payload that is not an object");
    assert_eq!(p.get("aud").and_then(Value::as_str), Some(aud));
    assert_eq!(p.get("iss").and_then(Value::as_str), Some(iss));
    assert_eq!(p.get("sub").and_then(Value::as_str), Some(sub));
    assert_eq!(p.get("nbf").and_then(Value::as_u64), Some(nbf));
    assert_eq!(p.get("exp").and_then(Value::as_u64), Some(exp));
    assert_eq!(p.get("jti").and_then(Value::as_str), Some(jti));
    let leeway = keys.policy().leeway.as_secs();
    assert!(NOW < exp.saturating_add(leeway), "expired: exp {exp}");
    assert!(
        nbf <= NOW.saturating_add(leeway),
        "not yet valid: nbf {nbf}"
    );
    assert!(exp.saturating_sub(nbf) <= max_ttl, "lifetime {nbf}..{exp}");
    assert_eq!(names::validate_identity(sub), Ok(()));
    assert!(
        (1..=128).contains(&jti.len()) && jti.bytes().all(|b| b.is_ascii_graphic()),
        "jti {jti:?}"
    );
    p
}

fn check_grants(grants: &crate::access_token::Grants, p: &Value) {
    let g = p.get("grants").unwrap_or(&Value::Null);
    let flag = |name: &str| g.get(name).and_then(Value::as_bool).unwrap_or(false);
    assert_eq!(
        [
            grants.join,
            grants.publish,
            grants.subscribe,
            grants.publish_data,
            grants.room_admin,
            grants.room_create,
            grants.hidden,
            grants.recorder,
        ],
        [
            flag("join"),
            flag("publish"),
            flag("subscribe"),
            flag("publish_data"),
            flag("room_admin"),
            flag("room_create"),
            flag("hidden"),
            flag("recorder"),
        ],
        "grants differ from the payload's"
    );
}

fn check_join(keys: &ApiKeys, token: &str, c: &Claims, expected_room: Option<&str>) {
    let p = check_common(
        keys,
        token,
        "join",
        keys.policy().max_join_ttl.as_secs(),
        (&c.iss, &c.sub, c.nbf, c.exp, &c.jti),
    );
    assert_eq!(p.get("room").and_then(Value::as_str), Some(c.room.as_str()));
    assert_eq!(
        p.get("name").and_then(Value::as_str).unwrap_or(""),
        c.name,
        "name"
    );
    assert!(p.get("grants").is_some_and(Value::is_object), "no grants");
    check_grants(&c.grants, &p);
    assert_eq!(names::validate_room(&c.room), Ok(()));
    assert_eq!(names::validate_display_name(&c.name), Ok(()));
    if let Some(room) = expected_room {
        assert_eq!(c.room, room, "verified for another room");
    }
}

fn check_admin(keys: &ApiKeys, token: &str, a: &AdminClaims) {
    let p = check_common(
        keys,
        token,
        "admin",
        keys.policy().max_admin_ttl.as_secs(),
        (&a.iss, &a.sub, a.nbf, a.exp, &a.jti),
    );
    assert_eq!(
        p.get("room").and_then(Value::as_str),
        a.room.as_deref(),
        "admin room"
    );
    if let Some(room) = &a.room {
        assert_eq!(names::validate_room(room), Ok(()));
    }
    assert!(p.get("grants").is_some_and(Value::is_object), "no grants");
    check_grants(&a.grants, &p);
}

/// Runs every verifier on `input`; returns whether any kind verified.
fn check_token(input: &TokenInput) -> bool {
    let TokenInput {
        keys,
        token,
        expected_room,
        meeting_room,
        display_name,
    } = input;
    let join_any = keys.verify_join(token, None, NOW);
    assert_eq!(
        join_any,
        keys.verify_join(token, None, NOW),
        "verification is not deterministic"
    );
    let join = keys.verify_join(token, expected_room.as_deref(), NOW);
    match (&join_any, &join, expected_room) {
        (Ok(any), Ok(this), _) => assert_eq!(any, this),
        (Ok(any), Err(TokenError::WrongRoom { expected, found }), Some(room)) => {
            assert_ne!(&any.room, room);
            assert_eq!((expected, found), (room, &any.room));
        }
        (Err(a), Err(b), _) => assert_eq!(a, b, "the expected room changed the error"),
        (a, b, room) => panic!("verify_join disagrees with itself for {room:?}: {a:?} vs {b:?}"),
    }
    let admin = keys.verify_admin(token, NOW);
    let invitation = keys.verify_invitation(token, meeting_room, NOW);
    let guest = keys.admit_guest(token, meeting_room, display_name, NOW);

    if let Ok(c) = &join {
        check_join(keys, token, c, expected_room.as_deref());
    }
    if let Ok(c) = &join_any {
        check_join(keys, token, c, None);
    }
    if let Ok(a) = &admin {
        check_admin(keys, token, a);
    }
    if let Ok(inv) = &invitation {
        let p = check_common(
            keys,
            token,
            "invitation",
            keys.policy().max_invitation_ttl.as_secs(),
            (&inv.iss, &inv.invited_by, inv.nbf, inv.exp, &inv.jti),
        );
        assert_eq!(&inv.room, meeting_room, "invitation for another meeting");
        assert_eq!(
            p.get("room").and_then(Value::as_str),
            Some(inv.room.as_str())
        );
        let role = p
            .get("role")
            .and_then(|r| serde_json::from_value::<GuestRole>(r.clone()).ok());
        assert_eq!(role, Some(inv.role));
    }
    for e in [&join_any, &join]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
        .chain(admin.as_ref().err())
        .chain(invitation.as_ref().err())
    {
        check_error(e);
    }
    let name = display_name.trim();
    let name_ok = !name.is_empty() && names::validate_display_name(name).is_ok();
    match (&guest, &invitation) {
        (Ok(g), Ok(inv)) => {
            assert!(name_ok, "admitted a guest named {display_name:?}");
            let random = g.sub.strip_prefix("guest-").unwrap_or("");
            assert_eq!(random.len(), 16, "guest identity {:?}", g.sub);
            assert_eq!(names::validate_identity(&g.sub), Ok(()));
            assert_eq!(g.name, name);
            assert_eq!(&g.room, meeting_room);
            assert_eq!(g.grants, inv.role.grants());
            let grants = g.grants;
            assert!(!grants.room_admin && !grants.room_create && !grants.hidden);
            assert!(!grants.recorder);
            assert_eq!(
                (g.iss.as_str(), g.jti.as_str()),
                (inv.iss.as_str(), inv.jti.as_str())
            );
            assert_eq!(g.nbf, NOW);
            let join_end = NOW.saturating_add(keys.policy().max_join_ttl.as_secs());
            assert_eq!(g.exp, inv.exp.min(join_end), "guest expiry");
        }
        (Ok(_), Err(e)) => panic!("admitted a guest with an invitation that fails: {e:?}"),
        (Err(GuestError::DisplayName(reason)), _) => {
            assert!(!name_ok, "refused the name {display_name:?}: {reason}");
        }
        (Err(GuestError::Token(e)), Err(inv_err)) => {
            assert!(name_ok);
            assert_eq!(e, inv_err, "admit_guest and verify_invitation disagree");
        }
        (Err(GuestError::Token(e)), Ok(_)) => {
            panic!("a guest was refused ({e:?}) with an invitation that verifies")
        }
    }
    let kinds = [join_any.is_ok(), admin.is_ok(), invitation.is_ok()];
    assert!(
        kinds.iter().filter(|&&k| k).count() <= 1,
        "one token verified as two kinds: {kinds:?}"
    );
    kinds.contains(&true)
}

// ---------------------------------------------------------------------------------------------
// sdp
// ---------------------------------------------------------------------------------------------

/// The server's side of the transport in every answer the targets write.
pub fn local_transport() -> LocalTransport {
    LocalTransport {
        ice_ufrag: "fuzzufrag".into(),
        ice_pwd: "fuzz-ice-password-0123456".into(),
        fingerprint: Fingerprint { sha256: [0x5A; 32] },
        candidates: vec![SocketAddr::from(([127, 0, 0, 1], 40_000))],
    }
}

/// What the server does with a publish offer.
#[derive(Debug, Clone)]
pub enum PublishOutcome {
    /// The offer does not parse (answered `invalid_sdp`).
    Unparsed(SdpError),
    /// It parses but a sending section is refused (`no_supported_codec` or `invalid_sdp`).
    Refused(ProtocolError),
    /// The answer the server writes.
    Answered(String),
}

/// Handles a publish offer as the room does before it creates anything: parse, take every
/// sending audio/video section's [`sdp::publish_parameters`], validate them for a producer,
/// and write the answer (unsent sections rejected). Checks the answer (see [`sdp`]).
pub fn publish(offer_text: &str) -> PublishOutcome {
    let offer = match sdp::parse_description(offer_text) {
        Ok(offer) => offer,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return PublishOutcome::Unparsed(e);
        }
    };
    let mut accepted = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        let sending = !m.rejected
            && matches!(m.direction, Direction::SendOnly | Direction::SendRecv)
            && m.kind.is_some();
        if !sending {
            accepted.push(None);
            continue;
        }
        let params = match sdp::publish_parameters(m) {
            Ok(params) => params,
            Err(e) => {
                assert_eq!(
                    e,
                    SdpError::NoSupportedCodec { mid: m.mid.clone() },
                    "publish_parameters fails only for want of a codec"
                );
                return PublishOutcome::Refused(ProtocolError::new(
                    ErrorCode::NoSupportedCodec,
                    e.to_string(),
                ));
            }
        };
        check_publish_parameters(m, &params);
        if let Err(e) = params.validate_for_producer() {
            return PublishOutcome::Refused(ProtocolError::new(
                ErrorCode::InvalidSdp,
                e.to_string(),
            ));
        }
        accepted.push(Some(params));
    }
    let answer = sdp::write_publish_answer(&offer, &accepted, &local_transport(), 1);
    check_answer(&offer, &accepted, &answer);
    PublishOutcome::Answered(answer)
}

/// What the server receives is a subset of what was offered: forwarded codecs with the
/// feedback it honours, offered extensions, the offer's streams.
fn check_publish_parameters(m: &sdp::RemoteMedia, params: &RtpParameters) {
    assert_eq!(params.mid.as_deref(), Some(m.mid.as_str()));
    assert!(!params.codecs.is_empty());
    for c in &params.codecs {
        let offered = m
            .codecs
            .iter()
            .find(|o| o.payload_type == c.payload_type && o.mime_type == c.mime_type);
        let offered = offered.unwrap_or_else(|| panic!("codec {c:?} was not offered"));
        assert_eq!(
            (c.clock_rate, c.channels, &c.parameters, c.rtx_payload_type),
            (
                offered.clock_rate,
                offered.channels,
                &offered.parameters,
                offered.rtx_payload_type
            )
        );
        assert_eq!(
            c.kind(),
            m.kind,
            "a {:?} codec in a {:?} section",
            c.kind(),
            m.kind
        );
        for fb in &c.rtcp_feedback {
            assert!(
                offered.rtcp_feedback.contains(fb),
                "feedback {fb:?} not offered"
            );
        }
    }
    for e in &params.header_extensions {
        assert!(m.extensions.contains(e), "extension {e:?} not offered");
    }
    for e in &params.encodings {
        assert!(e.rid.is_some() != e.ssrc.is_some(), "encoding {e:?}");
        if let Some(rid) = &e.rid {
            assert!(m.rids.contains(rid));
        }
    }
}

/// The answer parses; it keeps the offer's sections in order with their mids and media types;
/// an accepted section is `recvonly` with exactly the accepted codecs (payload types, rates,
/// parameters, feedback, RTX) and extensions, on the server's transport; the rest are
/// rejected and `inactive`.
fn check_answer(offer: &RemoteDescription, accepted: &[Option<RtpParameters>], answer: &str) {
    let session = SessionDescription::unmarshal(&mut Cursor::new(answer.as_bytes()))
        .unwrap_or_else(|e| panic!("the answer does not parse ({e}):\n{answer}"));
    assert_eq!(session.media_descriptions.len(), offer.media.len());
    if accepted.iter().all(Option::is_none) {
        // Nothing sent, so no transport is offered: nothing more to read back.
        return;
    }
    let transport = local_transport();
    let parsed = sdp::parse_description(answer)
        .unwrap_or_else(|e| panic!("the answer does not parse ({e}):\n{answer}"));
    assert_eq!(
        (parsed.ice_ufrag.as_str(), parsed.ice_pwd.as_str()),
        (transport.ice_ufrag.as_str(), transport.ice_pwd.as_str())
    );
    assert_eq!(parsed.fingerprint, transport.fingerprint);
    assert_eq!(parsed.setup.as_deref(), Some("passive"));
    assert_eq!(parsed.media.len(), offer.media.len());
    for ((theirs, ours), params) in offer.media.iter().zip(&parsed.media).zip(accepted) {
        assert_eq!(ours.mid, theirs.mid, "mid changed in the answer:\n{answer}");
        assert_eq!(ours.media_type, theirs.media_type);
        match params {
            Some(p) => {
                assert!(!ours.rejected, "accepted section {} rejected", ours.mid);
                // RFC 8285: one id names one extension, or the receiver reads the wrong one.
                for (i, e) in p.header_extensions.iter().enumerate() {
                    let again = p
                        .header_extensions
                        .iter()
                        .skip(i + 1)
                        .find(|o| o.id == e.id);
                    assert!(again.is_none(), "extmap id {} used twice:\n{answer}", e.id);
                }
                assert_eq!(ours.direction, Direction::RecvOnly);
                assert_eq!(ours.codecs, p.codecs, "codecs of {}:\n{answer}", ours.mid);
                assert_eq!(
                    ours.extensions, p.header_extensions,
                    "extensions of {}:\n{answer}",
                    ours.mid
                );
            }
            None => {
                assert!(
                    ours.rejected,
                    "section {} not rejected:\n{answer}",
                    ours.mid
                );
                assert_eq!(ours.direction, Direction::Inactive);
            }
        }
    }
}

/// Arbitrary text (lossy UTF-8) as a publish offer through [`sdp::parse_description`] and, if
/// the server would accept it, [`sdp::publish_parameters`] and [`sdp::write_publish_answer`];
/// the answer goes back through the parser (see [`publish`]).
///
/// Oracle: nothing panics; a refusal is a typed [`SdpError`]; what is accepted is a subset of
/// what was offered; the answer parses back to the sections, mids, codecs and extensions the
/// server accepted, on its own ICE credentials and fingerprint.
pub fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = publish(&text);
}

// ---------------------------------------------------------------------------------------------
// signaling_frames
// ---------------------------------------------------------------------------------------------

/// The request types this module knows (the protocol may know more).
const REQUEST_TYPES: &[&str] = &[
    "join",
    "join_guest",
    "chat",
    "remove_participant",
    "publish",
    "subscribe_answer",
    "mute",
    "unpublish",
    "set_subscription",
    "leave",
    "ping",
];

/// What the session did with one frame, as the `signaling_frames` target replays it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `pong`.
    Pong,
    /// Joined the room (the token's or the meeting's).
    Joined {
        /// The room.
        room: String,
    },
    /// A publish offer the room would answer.
    PublishAnswer,
    /// A subscribe answer that parses.
    SubscribeAnswerAccepted,
    /// A request handed on to the room actor (track and participant requests, chat).
    ToRoom {
        /// Its type.
        request: String,
    },
    /// A typed error; the session goes on unless the code is fatal.
    Error(ErrorCode),
    /// The session ends (`leave`, a fatal error, a failed guest join, a frame too large).
    Closed,
}

fn error_reply(e: &ProtocolError, id: Option<RequestId>) -> Reply {
    assert!(ErrorCode::ALL.contains(&e.code));
    assert!(!e.message.is_empty(), "{:?} without a message", e.code);
    let frame = serde_json::to_value(e.to_message(id.clone()))
        .unwrap_or_else(|err| panic!("error frame does not serialise: {err}"));
    assert_eq!(frame.get("type").and_then(Value::as_str), Some("error"));
    assert_eq!(
        frame.get("code").and_then(Value::as_str),
        Some(e.code.as_str())
    );
    assert_eq!(
        frame.get("id"),
        id.as_ref(),
        "the error does not echo the id"
    );
    Reply::Error(e.code)
}

/// Parses one text frame and checks what the parser says about it.
fn parse_frame(text: &str) -> Result<ClientMessage, (ProtocolError, Option<RequestId>)> {
    let parsed = parse_client_message(text);
    let value: Option<Value> = serde_json::from_str(text).ok();
    let object = value.as_ref().and_then(Value::as_object);
    match &parsed {
        Ok(message) => {
            let object = object.unwrap_or_else(|| panic!("a non-object parsed: {text:?}"));
            let ty = object.get("type").and_then(Value::as_str).unwrap_or("");
            assert!(
                !ty.is_empty() && ty.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "parsed as type {ty:?}"
            );
            assert_eq!(
                object.get("id").unwrap_or(&Value::Null),
                message.id(),
                "the request id is not the frame's"
            );
        }
        Err((e, id)) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::BadRequest
                ),
                "a frame refused with {:?}",
                e.code
            );
            assert!(!e.code.is_fatal());
            match object {
                None => {
                    assert_eq!(e.code, ErrorCode::BadJson);
                    assert_eq!(id, &None);
                }
                Some(object) => {
                    assert_eq!(id.as_ref(), object.get("id"), "the id was not kept");
                    let ty = object.get("type").and_then(Value::as_str);
                    match e.code {
                        ErrorCode::BadJson => assert_eq!(ty, None),
                        ErrorCode::UnknownType => {
                            let ty = ty.unwrap_or_else(|| panic!("unknown type without a type"));
                            assert!(!REQUEST_TYPES.contains(&ty), "{ty:?} called unknown");
                        }
                        _ => assert!(ty.is_some()),
                    }
                }
            }
        }
    }
    parsed
}

/// What a session knows about itself between frames.
enum SessionState {
    Unjoined,
    Joined(Claims),
}

/// A `join`, as the session checks it before handing the claims to the room.
fn join(token: &str, protocol: u32, room: Option<&str>) -> Result<Claims, ProtocolError> {
    if protocol != PROTOCOL_VERSION {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedProtocol,
            format!("this server speaks protocol {PROTOCOL_VERSION}"),
        ));
    }
    let claims = keyring(false)
        .verify_join(token, None, NOW)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidToken, e.to_string()))?;
    if let Some(room) = room
        && room != claims.room
    {
        return Err(ProtocolError::new(
            ErrorCode::WrongRoom,
            format!("this token is for room {:?}", claims.room),
        ));
    }
    admit(claims)
}

fn admit(claims: Claims) -> Result<Claims, ProtocolError> {
    if !claims.grants.join {
        return Err(ProtocolError::new(
            ErrorCode::PermissionDenied,
            "this token does not allow joining",
        ));
    }
    Ok(claims)
}

/// A `join_guest`, read from the frame's JSON (the parser has checked its fields): the
/// meeting code resolves to [`ROOM`] when it is [`MEETING_CODE`], the invitation admits a
/// guest there.
fn join_guest(frame: &Value) -> Result<Claims, ProtocolError> {
    let field = |name: &str| frame.get(name).and_then(Value::as_str).unwrap_or("");
    let protocol = frame.get("protocol").and_then(Value::as_u64);
    if protocol != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedProtocol,
            format!("this server speaks protocol {PROTOCOL_VERSION}"),
        ));
    }
    let code = MeetingCode::parse(field("meeting_code"))
        .map_err(|e| ProtocolError::new(ErrorCode::RoomNotFound, e.to_string()))?;
    if code.as_str() != MEETING_CODE {
        return Err(ProtocolError::new(
            ErrorCode::RoomNotFound,
            "no meeting has this code",
        ));
    }
    let claims = keyring(false)
        .admit_guest(field("invitation"), ROOM, field("name"), NOW)
        .map_err(|e| match e {
            GuestError::Token(e) => ProtocolError::new(ErrorCode::InvalidToken, e.to_string()),
            GuestError::DisplayName(reason) => ProtocolError::new(ErrorCode::BadRequest, reason),
        })?;
    admit(claims)
}

/// A sequence of WebSocket frames, split on [`SEPARATOR`] (at most [`MAX_FRAMES`]); a frame
/// that is not UTF-8 stands for a binary frame. Returns what the session did with each.
///
/// The session's ordering rules are replayed here over the real functions (the socket loop
/// and the room actor are not run): a frame over the size limit ends the session; every text
/// frame goes through [`parse_client_message`]; `ping` is answered in any state; before a
/// join only `join` and `join_guest` do anything (else `not_joined`); `join` checks the
/// protocol version, verifies the token at [`NOW`] with [`keyring`] and the room; `join_guest`
/// parses the meeting code and admits the guest; a second join is `already_joined`; once
/// joined, `publish` needs the grant and goes through [`publish`], `subscribe_answer` through
/// [`sdp::parse_description`], and the other requests go to the room; `leave` and every fatal
/// error end the session.
pub fn session_replies(data: &[u8]) -> Vec<Reply> {
    let limits = SessionLimits::default();
    let mut state = SessionState::Unjoined;
    let mut replies = Vec::new();
    for frame in data.split(|&b| b == SEPARATOR).take(MAX_FRAMES) {
        let Ok(text) = std::str::from_utf8(frame) else {
            let e = ProtocolError::new(ErrorCode::BadJson, "frames must be JSON text");
            replies.push(error_reply(&e, None));
            continue;
        };
        if text.len() > limits.max_frame {
            let e = ProtocolError::new(ErrorCode::FrameTooLarge, "frame too large");
            replies.push(error_reply(&e, None));
            replies.push(Reply::Closed);
            break;
        }
        let message = match parse_frame(text) {
            Ok(message) => message,
            Err((e, id)) => {
                replies.push(error_reply(&e, id));
                continue;
            }
        };
        let id = message.id().clone();
        let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let ty = frame.get("type").and_then(Value::as_str).unwrap_or("");
        let outcome: Result<Reply, ProtocolError> = match (&state, &message) {
            (_, ClientMessage::Ping { .. }) => Ok(Reply::Pong),
            (
                SessionState::Unjoined,
                ClientMessage::Join {
                    token,
                    protocol,
                    room,
                    ..
                },
            ) => join(token, *protocol, room.as_deref()).map(|claims| {
                let room = claims.room.clone();
                state = SessionState::Joined(claims);
                Reply::Joined { room }
            }),
            (SessionState::Unjoined, _) if ty == "join_guest" => match join_guest(&frame) {
                Ok(claims) => {
                    let room = claims.room.clone();
                    state = SessionState::Joined(claims);
                    Ok(Reply::Joined { room })
                }
                Err(e) => {
                    // Every failed guest join closes: codes cannot be tried one after another.
                    replies.push(error_reply(&e, Some(id)));
                    replies.push(Reply::Closed);
                    break;
                }
            },
            (SessionState::Joined(_), ClientMessage::Join { .. }) => Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "already joined",
            )),
            (SessionState::Joined(_), _) if ty == "join_guest" => Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "already joined",
            )),
            (SessionState::Unjoined, _) => {
                Err(ProtocolError::new(ErrorCode::NotJoined, "send join first"))
            }
            (SessionState::Joined(_), ClientMessage::Leave { .. }) => {
                replies.push(Reply::Closed);
                break;
            }
            (SessionState::Joined(claims), ClientMessage::Publish { sdp, .. }) => {
                if claims.grants.publish {
                    match publish(sdp) {
                        PublishOutcome::Unparsed(e) => {
                            Err(ProtocolError::new(ErrorCode::InvalidSdp, e.to_string()))
                        }
                        PublishOutcome::Refused(e) => Err(e),
                        PublishOutcome::Answered(_) => Ok(Reply::PublishAnswer),
                    }
                } else {
                    Err(ProtocolError::new(
                        ErrorCode::PermissionDenied,
                        "your token does not allow publishing",
                    ))
                }
            }
            (SessionState::Joined(_), ClientMessage::SubscribeAnswer { sdp, .. }) => {
                sdp::parse_description(sdp)
                    .map(|_| Reply::SubscribeAnswerAccepted)
                    .map_err(|e| ProtocolError::new(ErrorCode::InvalidSdp, e.to_string()))
            }
            (SessionState::Joined(_), _) => Ok(Reply::ToRoom {
                request: ty.to_owned(),
            }),
        };
        match outcome {
            Ok(reply) => replies.push(reply),
            Err(e) => {
                let fatal = e.code.is_fatal();
                replies.push(error_reply(&e, Some(id)));
                if fatal {
                    replies.push(Reply::Closed);
                    break;
                }
            }
        }
    }
    replies
}

/// A signaling session as a sequence of frames (layout and rules: [`session_replies`]).
///
/// Oracle: nothing panics. A frame the parser takes is a JSON object whose `id` is the
/// request's; a frame it refuses gets `bad_json`, `unknown_type` or `bad_request` (never a
/// fatal code), with the frame's `id` when it has one; every rejection on the way (token,
/// meeting code, SDP, order) is a typed [`ProtocolError`] whose error frame serialises with
/// its code and the request id; publish offers meet the [`sdp`] target's oracle.
pub fn signaling_frames(data: &[u8]) {
    let replies = session_replies(data);
    let closed = replies.iter().filter(|r| **r == Reply::Closed).count();
    assert!(closed <= 1 && (closed == 0 || replies.last() == Some(&Reply::Closed)));
}

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

/// One seed file of `fuzz/corpus/<target>/<name>`.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target (folder).
    pub target: &'static str,
    /// The file name.
    pub name: &'static str,
    /// The contents.
    pub bytes: Vec<u8>,
}

fn join_payload(room: &str, nbf: u64, exp: u64) -> String {
    format!(
        r#"{{"iss":"{KEY_ID}","sub":"alice","aud":"join","name":"Alice","room":"{room}","grants":{{"join":true,"publish":true,"subscribe":true}},"nbf":{nbf},"exp":{exp},"jti":"seed-join-1"}}"#
    )
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"fuzz-key"}"#;

fn structured(flags: u8, header: &str, payload: &str, rest: &[&str]) -> Vec<u8> {
    let mut out = vec![flags | 1];
    out.extend_from_slice(header.as_bytes());
    for field in std::iter::once(payload).chain(rest.iter().copied()) {
        out.push(SEPARATOR);
        out.extend_from_slice(field.as_bytes());
    }
    out
}

fn raw(flags: u8, token: &str, rest: &[&str]) -> Vec<u8> {
    let mut out = vec![flags & !1];
    out.extend_from_slice(token.as_bytes());
    for field in rest {
        out.push(SEPARATOR);
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// A join token for alice in [`ROOM`] (publish and subscribe), valid at [`NOW`].
pub fn seed_join_token() -> String {
    sign_token(
        HEADER,
        &join_payload(ROOM, NOW - 10, NOW + 300),
        hmac::HMAC_SHA256,
        SECRET,
    )
}

/// A speaker invitation to [`ROOM`], valid at [`NOW`].
pub fn seed_invitation() -> String {
    let payload = format!(
        r#"{{"iss":"{KEY_ID}","sub":"host","aud":"invitation","room":"{ROOM}","role":"speaker","nbf":{},"exp":{},"jti":"seed-invite-1"}}"#,
        NOW - 60,
        NOW + 3600
    );
    sign_token(HEADER, &payload, hmac::HMAC_SHA256, SECRET)
}

fn access_token_seeds() -> Vec<Seed> {
    let seed = |name, bytes| Seed {
        target: "access_token",
        name,
        bytes,
    };
    let join = join_payload(ROOM, NOW - 10, NOW + 300);
    let admin = format!(
        r#"{{"iss":"{KEY_ID}","sub":"ops","aud":"admin","grants":{{"room_admin":true,"room_create":true}},"nbf":{},"exp":{},"jti":"seed-admin-1"}}"#,
        NOW - 10,
        NOW + 600
    );
    let invitation = |role: &str| {
        format!(
            r#"{{"iss":"{KEY_ID}","sub":"host","aud":"invitation","room":"{ROOM}","role":"{role}","nbf":{},"exp":{},"jti":"seed-invite-1"}}"#,
            NOW - 60,
            NOW + 3600
        )
    };
    let other_header = r#"{"alg":"HS512","kid":"fuzz-key-2"}"#;
    let other_join = join.replace(r#""iss":"fuzz-key""#, r#""iss":"fuzz-key-2""#);
    vec![
        seed(
            "accepted-join.bin",
            structured(0, HEADER, &join, &[ROOM, "Guest"]),
        ),
        seed(
            "accepted-join-any-room.bin",
            structured(4, HEADER, &join, &["elsewhere"]),
        ),
        seed("accepted-admin.bin", structured(0, HEADER, &admin, &[ROOM])),
        seed(
            "accepted-invitation-speaker.bin",
            structured(
                0,
                HEADER,
                &invitation("speaker"),
                &[ROOM, "  Zoë Ångström "],
            ),
        ),
        seed(
            "accepted-invitation-viewer.bin",
            structured(0, HEADER, &invitation("viewer"), &[ROOM, "Viewer"]),
        ),
        seed(
            "accepted-hs512-second-key.bin",
            structured(2, other_header, &other_join, &[ROOM]),
        ),
        seed("accepted-raw-join.bin", raw(0, &seed_join_token(), &[ROOM])),
        seed(
            "refused-hs512-not-allowed.bin",
            structured(0, other_header, &other_join, &[ROOM]),
        ),
        seed("refused-forged.bin", structured(8, HEADER, &join, &[ROOM])),
        seed(
            "refused-expired.bin",
            structured(
                0,
                HEADER,
                &join_payload(ROOM, NOW - 400, NOW - 100),
                &[ROOM],
            ),
        ),
        seed(
            "refused-lifetime.bin",
            structured(0, HEADER, &join_payload(ROOM, NOW, NOW + 100_000), &[ROOM]),
        ),
        seed(
            "refused-wrong-room.bin",
            structured(0, HEADER, &join, &["other-room"]),
        ),
        seed(
            "refused-duplicate-room.bin",
            structured(
                0,
                HEADER,
                &join.replace(r#""room":"#, r#""room":"x","\u0072oom":"#),
                &[ROOM],
            ),
        ),
        seed(
            "refused-alg-none.bin",
            raw(
                0,
                &format!(
                    "{}.{}.",
                    base64url(br#"{"alg":"none","kid":"fuzz-key"}"#),
                    base64url(join.as_bytes())
                ),
                &[ROOM],
            ),
        ),
        seed(
            "refused-unknown-kid.bin",
            structured(0, r#"{"alg":"HS256","kid":"nobody"}"#, &join, &[ROOM]),
        ),
        seed(
            "refused-guest-blank-name.bin",
            structured(0, HEADER, &invitation("speaker"), &[ROOM, " \t "]),
        ),
        seed("refused-garbage.bin", raw(0, "a.b.c", &[ROOM])),
    ]
}

/// A Chrome-like publish offer: opus, and VP8 (with RTX) plus H264 on a video section.
pub fn seed_offer() -> String {
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:someufrag",
        "a=ice-pwd:somepassword0123456789ab",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {}", ["AB"; 32].join(":")),
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendonly",
        "a=msid:stream audio0",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=ssrc:1001 cname:seedcname",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:someufrag",
        "a=ice-pwd:somepassword0123456789ab",
        &format!("a=fingerprint:sha-256 {}", ["AB"; 32].join(":")),
        "a=setup:actpass",
        "a=mid:1",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:13 urn:3gpp:video-orientation",
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtcp-fb:96 ccm fir",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=rtcp-fb:* transport-cc",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=ssrc-group:FID 2001 2002",
        "a=ssrc:2001 cname:seedcname",
        "a=ssrc:2002 cname:seedcname",
        "",
    ]
    .join("\r\n")
}

fn offer_with(edit: impl Fn(String) -> String) -> Vec<u8> {
    edit(seed_offer()).into_bytes()
}

fn sdp_seeds() -> Vec<Seed> {
    let seed = |name, bytes| Seed {
        target: "sdp",
        name,
        bytes,
    };
    vec![
        seed("publish-audio-video.sdp", seed_offer().into_bytes()),
        seed(
            "publish-simulcast-rids.sdp",
            offer_with(|o| {
                o.replace(
                    "a=ssrc-group:FID 2001 2002\r\n",
                    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
                     a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;~f\r\n",
                )
            }),
        ),
        seed(
            "publish-simulcast-ssrc-group.sdp",
            offer_with(|o| {
                o.replace(
                    "a=ssrc-group:FID 2001 2002\r\n",
                    "a=ssrc-group:SIM 2001 2003\r\na=ssrc-group:FID 2001 2002\r\n\
                     a=ssrc-group:FID 2003 2004\r\na=ssrc:2003 cname:c\r\na=ssrc:2004 cname:c\r\n",
                )
            }),
        ),
        seed(
            "publish-audio-only-video-recvonly.sdp",
            offer_with(|o| o.replacen("a=mid:1\r\n", "a=mid:1\r\na=recvonly\r\n", 1)),
        ),
        seed(
            "publish-with-datachannel.sdp",
            offer_with(|o| {
                o + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
                     a=mid:2\r\na=sctp-port:5000\r\n"
            }),
        ),
        seed(
            "refused-no-forwarded-codec.sdp",
            offer_with(|o| o.replace("111 opus/48000/2", "111 G722/8000")),
        ),
        seed(
            "refused-duplicate-payload-type.sdp",
            offer_with(|o| o.replace("SAVPF 96 97 102 103", "SAVPF 96 97 96 103")),
        ),
        seed(
            "refused-duplicate-extension-id.sdp",
            offer_with(|o| o.replace("a=extmap:13 urn:3gpp", "a=extmap:4 urn:3gpp")),
        ),
        seed(
            "unparsed-no-fingerprint.sdp",
            offer_with(|o| o.replace("a=fingerprint:sha-256", "a=x-fingerprint:sha-256")),
        ),
        seed(
            "rejected-all.sdp",
            offer_with(|o| {
                o.replace("m=audio 9", "m=audio 0")
                    .replace("m=video 9", "m=video 0")
            }),
        ),
    ]
}

/// Joins the frames with [`SEPARATOR`].
fn frames(frames: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.extend_from_slice(frame.as_bytes());
    }
    out
}

fn json(value: &Value) -> String {
    value.to_string()
}

fn signaling_frames_seeds() -> Vec<Seed> {
    use serde_json::json;
    let seed = |name, bytes| Seed {
        target: "signaling_frames",
        name,
        bytes,
    };
    let join = json(&json!({"type":"join","id":1,"token":seed_join_token(),"protocol":1}));
    let ping = json(&json!({"type":"ping","id":"p"}));
    let leave = json(&json!({"type":"leave","id":9}));
    let small_offer = seed_offer()
        .split("m=video")
        .next()
        .unwrap_or_default()
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    vec![
        seed(
            "join-publish-leave.bin",
            frames(&[
                ping.clone(),
                join.clone(),
                json(&json!({"type":"publish","id":2,"sdp":small_offer,
                    "tracks":[{"mid":"0","source":"microphone"}]})),
                json(&json!({"type":"mute","id":3,"track":"TR_1","muted":true})),
                json(&json!({"type":"set_subscription","id":4,"track":"TR_2",
                    "max_spatial":1,"max_temporal":2,"max_height":360,"paused":false})),
                json(&json!({"type":"unpublish","id":5,"track":"TR_1"})),
                json(&json!({"type":"subscribe_answer","id":6,"sdp":small_offer,"version":1})),
                json(&json!({"type":"chat","id":7,"text":"hello","to":"PA_1"})),
                json(&json!({"type":"remove_participant","id":8,"participant":"PA_2"})),
                join.clone(),
                leave.clone(),
            ]),
        ),
        seed(
            "bad-frames-before-join.bin",
            frames(&[
                "{not json".into(),
                "[1,2]".into(),
                r#"{"id":5}"#.into(),
                r#"{"type":7,"id":6}"#.into(),
                r#"{"type":"dance","id":"x"}"#.into(),
                r#"{"type":"mute","id":6,"track":"x"}"#.into(),
                json(&json!({"type":"publish","id":2,"sdp":"v=0"})),
                json(&json!({"type":"leave","id":3})),
                ping.clone(),
            ]),
        ),
        seed("binary-frame.bin", vec![0xC3, 0x28, SEPARATOR, b'{', b'}']),
        seed(
            "join-wrong-protocol.bin",
            frames(&[
                json(&json!({"type":"join","id":1,"token":seed_join_token(),"protocol":2})),
                ping.clone(),
            ]),
        ),
        seed(
            "join-wrong-room.bin",
            frames(&[json(
                &json!({"type":"join","id":1,"token":seed_join_token(),"protocol":1,"room":"other"}),
            )]),
        ),
        seed(
            "join-bad-token.bin",
            frames(&[json(
                &json!({"type":"join","id":1,"token":"a.b.c","protocol":1}),
            )]),
        ),
        seed(
            "join-guest-publish.bin",
            frames(&[
                json(
                    &json!({"type":"join_guest","id":1,"meeting_code":" ABCDEFGHJK ",
                    "invitation":seed_invitation(),"name":"Guest","protocol":1}),
                ),
                json(&json!({"type":"publish","id":2,"sdp":seed_offer()})),
                leave.clone(),
            ]),
        ),
        seed(
            "join-guest-unknown-code.bin",
            frames(&[json(
                &json!({"type":"join_guest","id":1,"meeting_code":"abc-defg-hij",
                "invitation":seed_invitation(),"name":"Guest","protocol":1}),
            )]),
        ),
        seed(
            "publish-bad-sdp.bin",
            frames(&[
                join,
                json(&json!({"type":"publish","id":2,"sdp":"v=0\r\nnonsense"})),
                json(&json!({"type":"subscribe_answer","id":3,"sdp":"","version":1})),
                ping,
            ]),
        ),
    ]
}

/// The seed corpora of every target, as written to `fuzz/corpus/<target>/<name>`.
pub fn seeds() -> Vec<Seed> {
    let mut all = access_token_seeds();
    all.extend(sdp_seeds());
    all.extend(signaling_frames_seeds());
    all
}

/// Which kinds of token an `access_token` input verifies as: `[join, admin, invitation]`.
pub fn token_kinds(data: &[u8]) -> [bool; 3] {
    let Some(input) = decode_token_input(data) else {
        return [false; 3];
    };
    let keys = &input.keys;
    [
        keys.verify_join(&input.token, input.expected_room.as_deref(), NOW)
            .is_ok(),
        keys.verify_admin(&input.token, NOW).is_ok(),
        keys.admit_guest(&input.token, &input.meeting_room, &input.display_name, NOW)
            .is_ok(),
    ]
}

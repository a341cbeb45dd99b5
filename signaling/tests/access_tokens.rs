//! The forged-token matrix (security.md, "Tokens and rooms (A)"): every way a token can be
//! forged or misused is refused, each by its own test with the typed error a caller maps to a
//! code. Forged tokens are built by hand (header and payload JSON, base64url, HMAC) so each
//! test changes exactly one thing from a token that verifies.

use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::{Value, json};
use signaling::access_token::{
    AdminClaims, ApiKeys, Claims, Grants, GuestError, GuestRole, MintError, SigningAlgorithm,
    TokenError, TokenKind, TokenPart, TokenPolicy,
};

const NOW: u64 = 1_767_225_600;
const SECRET1: &[u8] = b"secret-one-0123456789abcdef-0123";
const SECRET2: &[u8] = b"secret-two-0123456789abcdef-0123";
/// What an attacker knows in the RS/HS confusion: a public key (any PEM will do; we have none).
const PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwJSv+1jVVwHDVpR5q/R7
KKDJv1UCZUpsrPVb3FeCkROsbQ3sS+ZSiNgwwCSvJIkqn4F3XtsJYZ4hwKS8Vfa/
-----END PUBLIC KEY-----
";

fn keys() -> ApiKeys {
    let k = ApiKeys::default();
    k.insert("key1", SECRET1.to_vec());
    k.insert("key2", SECRET2.to_vec());
    k
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Signs `header.payload` (raw JSON text, so duplicates survive) with HMAC.
fn forge_raw(header: &str, payload: &str, alg: hmac::Algorithm, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let tag = hmac::sign(&hmac::Key::new(alg, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn forge(header: &Value, payload: &Value) -> String {
    forge_raw(
        &header.to_string(),
        &payload.to_string(),
        hmac::HMAC_SHA256,
        SECRET1,
    )
}

fn header() -> Value {
    json!({"alg":"HS256","typ":"JWT","kid":"key1"})
}

/// The payload of a valid join token for alice in "standup", signed by key1.
fn payload() -> Value {
    json!({
        "iss":"key1","sub":"alice","aud":"join","name":"Alice","room":"standup",
        "grants":{"join":true,"subscribe":true},
        "nbf":NOW,"exp":NOW + 300,"jti":"t-1"
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn join(token: &str) -> Result<Claims, TokenError> {
    keys().verify_join(token, None, NOW)
}

#[test]
fn the_unforged_baseline_verifies() {
    let c = join(&forge(&header(), &payload())).unwrap();
    assert_eq!((c.sub.as_str(), c.room.as_str()), ("alice", "standup"));
    assert_eq!((c.iss.as_str(), c.jti.as_str()), ("key1", "t-1"));
    assert!(c.grants.join && c.grants.subscribe && !c.grants.publish);
}

#[test]
fn minted_tokens_round_trip_with_either_key_and_the_expected_room() {
    let k = keys();
    for key in ["key1", "key2"] {
        k.set_signing_key(key).unwrap();
        let t = k
            .mint_join(
                "alice",
                "Alice",
                "standup",
                Grants::participant(),
                Duration::from_secs(60),
                NOW,
            )
            .unwrap();
        let c = k.verify_join(&t, Some("standup"), NOW + 30).unwrap();
        assert_eq!(c.iss, key);
        assert_eq!(c.grants, Grants::participant());
        assert_eq!((c.nbf, c.exp), (NOW, NOW + 60));
        assert_eq!(c.jti.len(), 24);
    }
    let a = k
        .mint_join(
            "a",
            "",
            "r",
            Grants::default(),
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    let b = k
        .mint_join(
            "a",
            "",
            "r",
            Grants::default(),
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    assert_ne!(
        join_at(&k, &a).jti,
        join_at(&k, &b).jti,
        "every token gets its own jti"
    );
}

fn join_at(k: &ApiKeys, t: &str) -> Claims {
    k.verify_join(t, None, NOW).unwrap()
}

#[test]
fn tokens_from_a_stock_jwt_library_interoperate() {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("key2".into());
    let p = with(payload(), "iss", json!("key2"));
    let t = jsonwebtoken::encode(&h, &p, &jsonwebtoken::EncodingKey::from_secret(SECRET2)).unwrap();
    assert_eq!(join(&t).unwrap().iss, "key2");
}

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = with(header(), "alg", json!(alg));
        let unsigned = format!(
            "{}.{}.",
            b64(h.to_string().as_bytes()),
            b64(payload().to_string().as_bytes())
        );
        assert_eq!(
            join(&unsigned),
            Err(TokenError::AlgorithmNotAllowed(alg.into())),
            "{alg}"
        );
        // With a signature tacked on, still refused for the algorithm.
        let signed = forge(&h, &payload());
        assert_eq!(
            join(&signed),
            Err(TokenError::AlgorithmNotAllowed(alg.into()))
        );
    }
}

#[test]
fn rs256_header_signed_with_the_public_key_is_refused() {
    // The classic confusion (Jitsi CVE-2021-39215): RS256 in the header, HMAC with the
    // public key as the secret. RS256 is not even expressible in the allow-list.
    let h = with(header(), "alg", json!("RS256"));
    let t = forge_raw(
        &h.to_string(),
        &payload().to_string(),
        hmac::HMAC_SHA256,
        PUBLIC_KEY_PEM.as_bytes(),
    );
    assert_eq!(
        join(&t),
        Err(TokenError::AlgorithmNotAllowed("RS256".into()))
    );
}

#[test]
fn hs256_signed_with_a_public_key_is_a_bad_signature() {
    let t = forge_raw(
        &header().to_string(),
        &payload().to_string(),
        hmac::HMAC_SHA256,
        PUBLIC_KEY_PEM.as_bytes(),
    );
    assert_eq!(join(&t), Err(TokenError::BadSignature));
}

#[test]
fn algorithms_outside_the_allow_list_are_refused() {
    // Correctly signed HS384/HS512 tokens are refused while the policy allows only HS256.
    for (alg, hmac_alg) in [("HS384", hmac::HMAC_SHA384), ("HS512", hmac::HMAC_SHA512)] {
        let h = with(header(), "alg", json!(alg));
        let t = forge_raw(&h.to_string(), &payload().to_string(), hmac_alg, SECRET1);
        assert_eq!(join(&t), Err(TokenError::AlgorithmNotAllowed(alg.into())));
        // … and accepted once configured.
        let policy = TokenPolicy {
            algorithms: vec![
                SigningAlgorithm::Hs256,
                SigningAlgorithm::Hs384,
                SigningAlgorithm::Hs512,
            ],
            ..TokenPolicy::default()
        };
        let k = ApiKeys::new(policy);
        k.insert("key1", SECRET1.to_vec());
        assert_eq!(k.verify_join(&t, None, NOW).unwrap().sub, "alice");
    }
    for alg in ["ES256", "PS256", "EdDSA", "RS512", "hs256", "HS256 ", ""] {
        let t = forge(&with(header(), "alg", json!(alg)), &payload());
        assert_eq!(
            join(&t),
            Err(TokenError::AlgorithmNotAllowed(alg.into())),
            "{alg:?}"
        );
    }
    let t = forge(&with(header(), "alg", json!(256)), &payload());
    assert!(matches!(join(&t), Err(TokenError::Malformed(_))));
}

#[test]
fn a_signing_algorithm_outside_the_allow_list_is_not_minted() {
    let k = ApiKeys::new(TokenPolicy {
        signing_algorithm: SigningAlgorithm::Hs512,
        ..TokenPolicy::default()
    });
    k.insert("key1", SECRET1.to_vec());
    assert_eq!(
        k.mint_join(
            "a",
            "",
            "r",
            Grants::default(),
            Duration::from_secs(60),
            NOW
        ),
        Err(MintError::AlgorithmNotAllowed)
    );
}

#[test]
fn bad_signatures_are_refused() {
    let good = forge(&header(), &payload());
    let (input, sig) = good.rsplit_once('.').unwrap();
    // One flipped character in the signature (keep it canonical base64url: change the first).
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    let flipped = format!("{input}.{first}{}", &sig[1..]);
    assert_eq!(join(&flipped), Err(TokenError::BadSignature));
    // The right kid, the wrong secret.
    let t = forge_raw(
        &header().to_string(),
        &payload().to_string(),
        hmac::HMAC_SHA256,
        b"not the secret",
    );
    assert_eq!(join(&t), Err(TokenError::BadSignature));
    // A valid signature from another token, spliced onto a changed payload.
    let other = with(payload(), "sub", json!("mallory"));
    let spliced = format!(
        "{}.{}.{sig}",
        b64(header().to_string().as_bytes()),
        b64(other.to_string().as_bytes())
    );
    assert_eq!(join(&spliced), Err(TokenError::BadSignature));
    // A truncated signature.
    let short = format!("{input}.{}", &sig[..20]);
    assert_eq!(join(&short), Err(TokenError::BadSignature));
}

#[test]
fn expired_tokens_are_refused() {
    let t = forge(&header(), &payload());
    let leeway = TokenPolicy::default().leeway.as_secs();
    let exp = NOW + 300;
    assert!(keys().verify_join(&t, None, exp + leeway - 1).is_ok());
    assert_eq!(
        keys().verify_join(&t, None, exp + leeway),
        Err(TokenError::Expired)
    );
    assert_eq!(
        keys().verify_join(&t, None, u64::MAX),
        Err(TokenError::Expired)
    );
}

#[test]
fn tokens_not_yet_valid_are_refused() {
    let t = forge(&header(), &payload());
    let leeway = TokenPolicy::default().leeway.as_secs();
    assert!(keys().verify_join(&t, None, NOW - leeway).is_ok());
    assert_eq!(
        keys().verify_join(&t, None, NOW - leeway - 1),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        keys().verify_join(&t, None, 0),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn an_issuer_other_than_the_signing_key_is_refused() {
    // Signed by key1 but claiming key2 issued it.
    let t = forge(&header(), &with(payload(), "iss", json!("key2")));
    assert_eq!(join(&t), Err(TokenError::WrongIssuer));
}

#[test]
fn unknown_and_retired_key_ids_are_refused() {
    let t = forge(
        &with(header(), "kid", json!("key9")),
        &with(payload(), "iss", json!("key9")),
    );
    assert_eq!(join(&t), Err(TokenError::UnknownKey));
    let k = keys();
    let good = forge(&header(), &payload());
    assert!(k.remove("key1"));
    assert_eq!(k.verify_join(&good, None, NOW), Err(TokenError::UnknownKey));
}

#[test]
fn a_token_for_another_room_is_refused() {
    let t = forge(&header(), &payload());
    assert_eq!(
        keys().verify_join(&t, Some("other-room"), NOW),
        Err(TokenError::WrongRoom {
            expected: "other-room".into(),
            found: "standup".into()
        })
    );
    assert!(keys().verify_join(&t, Some("standup"), NOW).is_ok());
}

#[test]
fn each_missing_required_claim_is_named() {
    for claim in ["iss", "sub", "aud", "nbf", "exp", "jti", "room", "grants"] {
        let t = forge(&header(), &without(payload(), claim));
        assert_eq!(join(&t), Err(TokenError::MissingClaim(claim)), "{claim}");
    }
    let t = forge(&without(header(), "kid"), &payload());
    assert_eq!(join(&t), Err(TokenError::MissingClaim("kid")));
    let t = forge(&without(header(), "alg"), &payload());
    assert_eq!(join(&t), Err(TokenError::MissingClaim("alg")));
    // `name` is optional.
    assert_eq!(
        join(&forge(&header(), &without(payload(), "name")))
            .unwrap()
            .name,
        ""
    );
}

#[test]
fn invalid_claim_values_are_refused() {
    for (claim, value, named) in [
        ("sub", json!("../etc/passwd"), "sub"),
        ("sub", json!(""), "sub"),
        ("room", json!("a/b"), "room"),
        ("room", json!("x".repeat(65)), "room"),
        ("name", json!("evil\nname"), "name"),
        ("jti", json!(""), "jti"),
        ("jti", json!("a b"), "jti"),
        ("aud", json!("superuser"), "aud"),
        ("exp", json!(1.5e9), "payload"),
        ("exp", json!("tomorrow"), "payload"),
        ("nbf", json!(-1), "payload"),
        ("grants", json!("all"), "payload"),
    ] {
        let t = forge(&header(), &with(payload(), claim, value.clone()));
        match join(&t) {
            Err(TokenError::InvalidClaim { claim: c, .. }) => {
                assert_eq!(c, named, "{claim}={value}")
            }
            other => panic!("{claim}={value}: {other:?}"),
        }
    }
    let t = forge(&with(header(), "typ", json!("at+jwt")), &payload());
    assert!(matches!(join(&t), Err(TokenError::Malformed(_))));
    let t = forge(&with(header(), "crit", json!(["exp"])), &payload());
    assert!(matches!(join(&t), Err(TokenError::Malformed(_))));
    // Unknown grants are not granted; unknown claims are ignored.
    let p = with(payload(), "grants", json!({"join":true,"superpower":true}));
    let p = with(p, "extra", json!({"nested":[1,2]}));
    assert_eq!(
        join(&forge(&header(), &p)).unwrap().grants,
        Grants {
            join: true,
            ..Grants::default()
        }
    );
}

#[test]
fn duplicate_keys_in_the_header_are_refused() {
    // A verifier that kept the first `kid` and a library that kept the last would disagree.
    let h = r#"{"alg":"HS256","kid":"key2","kid":"key1"}"#;
    let t = forge_raw(h, &payload().to_string(), hmac::HMAC_SHA256, SECRET1);
    assert_eq!(
        join(&t),
        Err(TokenError::DuplicateKey {
            part: TokenPart::Header,
            key: "kid".into()
        })
    );
    let h = r#"{"alg":"none","alg":"HS256","kid":"key1"}"#;
    let t = forge_raw(h, &payload().to_string(), hmac::HMAC_SHA256, SECRET1);
    assert!(matches!(
        join(&t),
        Err(TokenError::DuplicateKey {
            part: TokenPart::Header,
            ..
        })
    ));
}

#[test]
fn duplicate_keys_in_the_payload_are_refused() {
    let base = payload().to_string();
    for (extra, key) in [
        (r#","room":"boardroom""#, "room"),
        (r#","\u0073ub":"bob""#, "sub"),
        (r#","grants":{"join":true,"room_admin":true}"#, "grants"),
    ] {
        let p = format!("{}{extra}}}", &base[..base.len() - 1]);
        let t = forge_raw(&header().to_string(), &p, hmac::HMAC_SHA256, SECRET1);
        assert_eq!(
            join(&t),
            Err(TokenError::DuplicateKey {
                part: TokenPart::Payload,
                key: key.into()
            }),
            "{p}"
        );
    }
    // Inside a nested object too.
    let p = base.replace(r#""join":true"#, r#""join":false,"join":true"#);
    assert_ne!(p, base);
    let t = forge_raw(&header().to_string(), &p, hmac::HMAC_SHA256, SECRET1);
    assert_eq!(
        join(&t),
        Err(TokenError::DuplicateKey {
            part: TokenPart::Payload,
            key: "join".into()
        })
    );
}

#[test]
fn trailing_garbage_and_extra_segments_are_refused() {
    let good = forge(&header(), &payload());
    assert!(join(&good).is_ok());
    for bad in [
        format!("{good}."),
        format!("{good}.AAAA"),
        format!("{good} "),
        format!(" {good}"),
        format!("{good}\n"),
        format!("{good}="),
        format!("{good}=="),
        good.replacen('.', "..", 1),
        good.replacen('.', ". ", 1),
        format!(".{good}"),
        "a.b".to_owned(),
        "..".to_owned(),
        "".to_owned(),
        "garbage".to_owned(),
        good.split('.').take(2).collect::<Vec<_>>().join("."),
    ] {
        let r = join(&bad);
        assert!(
            matches!(
                r,
                Err(TokenError::Malformed(_)) | Err(TokenError::BadSignature)
            ),
            "{bad:?}: {r:?}"
        );
    }
    // JSON that is not an object, and JSON with trailing bytes after the object.
    for (h, p) in [
        (r#"["HS256","key1"]"#.to_owned(), payload().to_string()),
        (header().to_string(), format!("{} x", payload())),
        (header().to_string(), "null".to_owned()),
    ] {
        let t = forge_raw(&h, &p, hmac::HMAC_SHA256, SECRET1);
        assert!(matches!(join(&t), Err(TokenError::Malformed(_))), "{h} {p}");
    }
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let max = TokenPolicy::default().max_token_len;
    assert_eq!(max, 8 * 1024);
    let huge = "A".repeat(max + 1);
    assert_eq!(join(&huge), Err(TokenError::TooLarge { len: max + 1, max }));
    // A correctly signed token with a bloated claim.
    let t = forge(&header(), &with(payload(), "pad", json!("x".repeat(max))));
    assert!(matches!(join(&t), Err(TokenError::TooLarge { .. })));
    assert!(
        keys()
            .verify_join(&"A".repeat(10 << 20), None, NOW)
            .is_err()
    );
}

#[test]
fn one_kind_of_token_never_stands_in_for_another() {
    let k = keys();
    let admin = k
        .mint_admin(
            "ops",
            None,
            Grants {
                room_admin: true,
                ..Grants::default()
            },
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    assert_eq!(
        k.verify_join(&admin, None, NOW).unwrap_err(),
        TokenError::WrongKind {
            expected: TokenKind::Join,
            found: TokenKind::Admin
        }
    );
    let joining = k
        .mint_join(
            "a",
            "",
            "r",
            Grants::participant(),
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    assert_eq!(
        k.verify_admin(&joining, NOW).unwrap_err(),
        TokenError::WrongKind {
            expected: TokenKind::Admin,
            found: TokenKind::Join
        }
    );
    let host = host_claims(
        "r",
        Grants {
            room_admin: true,
            ..Grants::participant()
        },
    );
    let invitation = k
        .mint_invitation(&host, "r", GuestRole::Viewer, Duration::from_secs(60), NOW)
        .unwrap();
    assert!(matches!(
        k.verify_join(&invitation, None, NOW),
        Err(TokenError::WrongKind {
            found: TokenKind::Invitation,
            ..
        })
    ));
    assert!(matches!(
        k.verify_admin(&invitation, NOW),
        Err(TokenError::WrongKind {
            found: TokenKind::Invitation,
            ..
        })
    ));
    assert!(matches!(
        k.admit_guest(&joining, "r", "Guest", NOW),
        Err(GuestError::Token(TokenError::WrongKind {
            found: TokenKind::Join,
            ..
        }))
    ));
}

#[test]
fn join_tokens_are_short_lived() {
    let k = keys();
    let cap = k.policy().max_join_ttl;
    assert!(cap <= Duration::from_secs(600));
    assert!(matches!(
        k.mint_join(
            "a",
            "",
            "r",
            Grants::participant(),
            cap + Duration::from_secs(1),
            NOW
        ),
        Err(MintError::TtlOutOfRange {
            kind: TokenKind::Join,
            ..
        })
    ));
    assert!(matches!(
        k.mint_join("a", "", "r", Grants::participant(), Duration::ZERO, NOW),
        Err(MintError::TtlOutOfRange { .. })
    ));
    assert!(
        k.mint_join("a", "", "r", Grants::participant(), cap, NOW)
            .is_ok()
    );
    // A key holder minting elsewhere cannot make a day-long join token either.
    let t = forge(&header(), &with(payload(), "exp", json!(NOW + 86_400)));
    assert_eq!(
        join(&t),
        Err(TokenError::LifetimeTooLong {
            kind: TokenKind::Join,
            max_secs: cap.as_secs()
        })
    );
    // The cap is configuration.
    let k = ApiKeys::new(TokenPolicy {
        max_join_ttl: Duration::from_secs(60),
        ..TokenPolicy::default()
    });
    k.insert("key1", SECRET1.to_vec());
    assert!(matches!(
        k.verify_join(&forge(&header(), &payload()), None, NOW),
        Err(TokenError::LifetimeTooLong { .. })
    ));
}

#[test]
fn keys_rotate_without_downtime() {
    let k = keys();
    let server_view = k.clone(); // what the running server holds
    let old = k
        .mint_join(
            "a",
            "",
            "r",
            Grants::participant(),
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    assert_eq!(
        server_view.verify_join(&old, None, NOW).unwrap().iss,
        "key1"
    );
    // 1. Add the new key: both verify.
    k.insert("key3", b"secret-three-0123456789abcdef-012".to_vec());
    // 2. Sign with it.
    k.set_signing_key("key3").unwrap();
    let new = k
        .mint_join(
            "a",
            "",
            "r",
            Grants::participant(),
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    assert_eq!(
        server_view.verify_join(&new, None, NOW).unwrap().iss,
        "key3"
    );
    assert!(server_view.verify_join(&old, None, NOW).is_ok());
    // 3. Retire the old one once its tokens have expired.
    assert!(k.remove("key1"));
    assert_eq!(
        server_view.verify_join(&old, None, NOW),
        Err(TokenError::UnknownKey)
    );
    assert!(server_view.verify_join(&new, None, NOW).is_ok());
    assert_eq!(
        server_view.key_ids(),
        vec!["key2".to_owned(), "key3".to_owned()]
    );
    // Retiring the signing key leaves nothing to sign with until another is chosen.
    assert!(k.remove("key3"));
    assert_eq!(
        k.mint_join(
            "a",
            "",
            "r",
            Grants::participant(),
            Duration::from_secs(60),
            NOW
        ),
        Err(MintError::NoSigningKey)
    );
    assert_eq!(
        k.set_signing_key("nope"),
        Err(MintError::UnknownKey("nope".into()))
    );
}

#[test]
fn mutated_tokens_never_verify_and_never_panic() {
    use rand::{Rng, SeedableRng};
    let good = forge(&header(), &payload());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    const CHARS: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \0\xff";
    for _ in 0..5000 {
        let mut bytes = good.clone().into_bytes();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[i] = CHARS[rng.random_range(0..CHARS.len())],
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, CHARS[rng.random_range(0..CHARS.len())]),
            }
        }
        let Ok(token) = String::from_utf8(bytes) else {
            continue;
        };
        if token != good {
            assert!(join(&token).is_err(), "{token}");
        }
    }
}

#[test]
fn error_codes_are_stable_and_distinct() {
    let errors = [
        TokenError::TooLarge { len: 1, max: 0 },
        TokenError::Malformed("x"),
        TokenError::DuplicateKey {
            part: TokenPart::Header,
            key: "k".into(),
        },
        TokenError::AlgorithmNotAllowed("none".into()),
        TokenError::MissingClaim("sub"),
        TokenError::InvalidClaim {
            claim: "sub",
            reason: String::new(),
        },
        TokenError::UnknownKey,
        TokenError::WrongIssuer,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::LifetimeTooLong {
            kind: TokenKind::Join,
            max_secs: 1,
        },
        TokenError::WrongKind {
            expected: TokenKind::Join,
            found: TokenKind::Admin,
        },
        TokenError::WrongRoom {
            expected: "a".into(),
            found: "b".into(),
        },
    ];
    let codes: std::collections::HashSet<&str> = errors.iter().map(TokenError::code).collect();
    assert_eq!(codes.len(), errors.len());
    assert_eq!(TokenError::Expired.code(), "token_expired");
    for e in &errors {
        assert!(e.to_string().starts_with("the token"), "{e}");
    }
}

// ----- guest invitations -----

fn host_claims(room: &str, grants: Grants) -> Claims {
    Claims {
        iss: "key1".into(),
        sub: "host".into(),
        name: "Host".into(),
        room: room.into(),
        grants,
        nbf: NOW,
        exp: NOW + 60,
        jti: "h".into(),
    }
}

fn admin() -> Grants {
    Grants {
        room_admin: true,
        ..Grants::participant()
    }
}

#[test]
fn a_room_admin_invites_and_guests_get_exactly_the_role() {
    let k = keys();
    let host = host_claims("standup", admin());
    for role in [GuestRole::Viewer, GuestRole::Speaker] {
        let inv = k
            .mint_invitation(&host, "standup", role, Duration::from_secs(3600), NOW)
            .unwrap();
        let details = k.verify_invitation(&inv, "standup", NOW).unwrap();
        assert_eq!((details.role, details.invited_by.as_str()), (role, "host"));
        let a = k
            .admit_guest(&inv, "standup", "  Zoë Guest ", NOW + 10)
            .unwrap();
        let b = k.admit_guest(&inv, "standup", "Other", NOW + 10).unwrap();
        assert_eq!(a.grants, role.grants());
        assert!(!a.grants.room_admin && !a.grants.room_create && !a.grants.recorder);
        assert_eq!(a.room, "standup");
        assert_eq!(a.name, "Zoë Guest");
        assert!(
            a.sub.starts_with("guest-") && a.sub.len() == 22,
            "{}",
            a.sub
        );
        assert!(signaling::names::validate_identity(&a.sub).is_ok());
        assert_ne!(a.sub, b.sub, "each guest is a new identity");
        assert_eq!(
            a.jti, details.jti,
            "guests carry the invitation's jti for revocation"
        );
        // Admitted for at most a join token's lifetime, never beyond the invitation.
        assert_eq!(a.exp, NOW + 10 + k.policy().max_join_ttl.as_secs());
    }
    assert_eq!(
        GuestRole::Viewer.grants(),
        Grants {
            join: true,
            subscribe: true,
            ..Grants::default()
        }
    );
}

#[test]
fn an_invitation_admits_only_to_its_own_meeting() {
    let k = keys();
    let inv = k
        .mint_invitation(
            &host_claims("standup", admin()),
            "standup",
            GuestRole::Speaker,
            Duration::from_secs(600),
            NOW,
        )
        .unwrap();
    assert_eq!(
        k.admit_guest(&inv, "boardroom", "Guest", NOW),
        Err(GuestError::Token(TokenError::WrongRoom {
            expected: "boardroom".into(),
            found: "standup".into()
        }))
    );
}

#[test]
fn only_a_room_admin_of_that_room_may_invite() {
    let k = keys();
    let ttl = Duration::from_secs(600);
    let plain = host_claims("standup", Grants::participant());
    assert_eq!(
        k.mint_invitation(&plain, "standup", GuestRole::Viewer, ttl, NOW),
        Err(MintError::NotRoomAdmin("standup".into()))
    );
    let elsewhere = host_claims("boardroom", admin());
    assert_eq!(
        k.mint_invitation(&elsewhere, "standup", GuestRole::Viewer, ttl, NOW),
        Err(MintError::NotRoomAdmin("standup".into()))
    );
    // An admin token: scoped to one room, or to all.
    let scoped = AdminClaims {
        iss: "key1".into(),
        sub: "ops".into(),
        room: Some("boardroom".into()),
        grants: admin(),
        nbf: NOW,
        exp: NOW + 60,
        jti: "a".into(),
    };
    assert_eq!(
        k.mint_invitation(&scoped, "standup", GuestRole::Viewer, ttl, NOW),
        Err(MintError::NotRoomAdmin("standup".into()))
    );
    let global = AdminClaims {
        room: None,
        ..scoped
    };
    assert!(
        k.mint_invitation(&global, "standup", GuestRole::Speaker, ttl, NOW)
            .is_ok()
    );
    // Through a real admin token.
    let token = k
        .mint_admin("ops", Some("standup"), admin(), ttl, NOW)
        .unwrap();
    let verified = k.verify_admin(&token, NOW).unwrap();
    assert!(
        k.mint_invitation(&verified, "standup", GuestRole::Viewer, ttl, NOW)
            .is_ok()
    );
}

#[test]
fn a_host_cannot_hand_out_more_than_it_holds() {
    let k = keys();
    let ttl = Duration::from_secs(600);
    let viewer_admin = host_claims(
        "standup",
        Grants {
            room_admin: true,
            join: true,
            subscribe: true,
            ..Grants::default()
        },
    );
    assert_eq!(
        k.mint_invitation(&viewer_admin, "standup", GuestRole::Speaker, ttl, NOW),
        Err(MintError::RoleExceedsGrants(GuestRole::Speaker))
    );
    assert!(
        k.mint_invitation(&viewer_admin, "standup", GuestRole::Viewer, ttl, NOW)
            .is_ok()
    );
    let bare_admin = host_claims(
        "standup",
        Grants {
            room_admin: true,
            ..Grants::default()
        },
    );
    assert_eq!(
        k.mint_invitation(&bare_admin, "standup", GuestRole::Viewer, ttl, NOW),
        Err(MintError::RoleExceedsGrants(GuestRole::Viewer))
    );
}

#[test]
fn forged_invitations_cannot_widen_the_role() {
    let inv = |p: Value| forge(&header(), &p);
    let base = json!({
        "iss":"key1","sub":"host","aud":"invitation","room":"standup","role":"viewer",
        "nbf":NOW,"exp":NOW + 600,"jti":"i-1"
    });
    let k = keys();
    assert_eq!(
        k.admit_guest(&inv(base.clone()), "standup", "G", NOW)
            .unwrap()
            .grants,
        GuestRole::Viewer.grants()
    );
    // Grants smuggled next to the role are ignored: the role alone decides.
    let smuggled = with(
        base.clone(),
        "grants",
        json!({"room_admin":true,"publish":true}),
    );
    assert_eq!(
        k.admit_guest(&inv(smuggled), "standup", "G", NOW)
            .unwrap()
            .grants,
        GuestRole::Viewer.grants()
    );
    // A role that does not exist.
    assert!(matches!(
        k.admit_guest(
            &inv(with(base.clone(), "role", json!("admin"))),
            "standup",
            "G",
            NOW
        ),
        Err(GuestError::Token(TokenError::InvalidClaim {
            claim: "payload",
            ..
        }))
    ));
    assert_eq!(
        k.admit_guest(&inv(without(base.clone(), "role")), "standup", "G", NOW),
        Err(GuestError::Token(TokenError::MissingClaim("role")))
    );
    // An expired invitation.
    assert_eq!(
        k.admit_guest(&inv(base), "standup", "G", NOW + 700),
        Err(GuestError::Token(TokenError::Expired))
    );
}

#[test]
fn guest_display_names_follow_the_name_rules() {
    let k = keys();
    let inv = k
        .mint_invitation(
            &host_claims("standup", admin()),
            "standup",
            GuestRole::Viewer,
            Duration::from_secs(600),
            NOW,
        )
        .unwrap();
    for bad in ["", "   ", "evil\nname", "tab\there", &"é".repeat(129)] {
        assert!(
            matches!(
                k.admit_guest(&inv, "standup", bad, NOW),
                Err(GuestError::DisplayName(_))
            ),
            "{bad:?}"
        );
    }
    assert!(
        k.admit_guest(&inv, "standup", &"é".repeat(128), NOW)
            .is_ok()
    );
}

#[test]
fn invitations_have_their_own_expiry_cap() {
    let k = keys();
    let host = host_claims("standup", admin());
    let cap = k.policy().max_invitation_ttl;
    assert!(
        k.mint_invitation(&host, "standup", GuestRole::Viewer, cap, NOW)
            .is_ok()
    );
    assert!(matches!(
        k.mint_invitation(
            &host,
            "standup",
            GuestRole::Viewer,
            cap + Duration::from_secs(1),
            NOW
        ),
        Err(MintError::TtlOutOfRange {
            kind: TokenKind::Invitation,
            ..
        })
    ));
    // A short invitation bounds the guest's admission.
    let inv = k
        .mint_invitation(
            &host,
            "standup",
            GuestRole::Viewer,
            Duration::from_secs(30),
            NOW,
        )
        .unwrap();
    assert_eq!(
        k.admit_guest(&inv, "standup", "G", NOW).unwrap().exp,
        NOW + 30
    );
}

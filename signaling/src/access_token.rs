//! Access tokens: JWTs signed with HS256 by an API key's secret.
//!
//! A token names its key in `kid` (and `iss`); [`ApiKeys`] holds every key that may sign, so
//! a key can be rotated by adding the new one before removing the old. Verification accepts
//! exactly HS256 (an explicit allow-list: `alg: none`, RS/HS confusion and anything else is
//! refused) and requires `exp`, `nbf`, `sub` and `room`. Identity, name, room and grants come
//! only from a verified token.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Grants {
    /// May join the room.
    pub join: bool,
    /// May publish tracks.
    pub publish: bool,
    /// May receive others' tracks.
    pub subscribe: bool,
}

impl Grants {
    /// Join, publish and subscribe.
    pub fn participant() -> Self {
        Self {
            join: true,
            publish: true,
            subscribe: true,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The API key that signed it.
    pub iss: String,
    /// Identity.
    pub sub: String,
    /// Display name.
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
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, wrong algorithm, bad signature, missing claims…
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `kid` names no known key.
    #[error("unknown API key")]
    UnknownKey,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
}

/// The API keys that may sign tokens.
#[derive(Clone, Default)]
pub struct ApiKeys {
    secrets: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl ApiKeys {
    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: impl Into<String>, secret: impl Into<Vec<u8>>) {
        self.secrets.insert(key.into(), secret.into());
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Mints a token with `key` valid for `ttl` from now.
    pub fn mint(
        &self,
        key: &str,
        identity: &str,
        name: &str,
        room: &str,
        grants: Grants,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let secret = self.secrets.get(key).ok_or(TokenError::UnknownKey)?;
        let now = unix_now();
        let claims = Claims {
            iss: key.to_owned(),
            sub: identity.to_owned(),
            name: name.to_owned(),
            room: room.to_owned(),
            grants,
            nbf: now.saturating_sub(5),
            exp: now + ttl.as_secs(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.to_owned());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Verifies a token at the current time.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, unix_now())
    }

    /// Verifies a token as of `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("no key id".into()))?;
        let secret = self.secrets.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        // Time is checked below against `now`, so tests can pin it.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "nbf", "sub", "iss"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        validation.set_issuer(&[kid.as_str()]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
                .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if claims.sub.is_empty() || claims.room.is_empty() {
            return Err(TokenError::Invalid("empty identity or room".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let mut k = ApiKeys::default();
        k.insert("key1", b"secret-one-0123456789abcdef".to_vec());
        k.insert("key2", b"secret-two-0123456789abcdef".to_vec());
        k
    }

    fn b64(s: &str) -> String {
        use std::fmt::Write;
        // Minimal base64url without padding, enough for forged test tokens.
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..(chunk.len() + 1) {
                let _ = out.write_char(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn mint_and_verify_round_trip_with_either_key() {
        let k = keys();
        for key in ["key1", "key2"] {
            let t = k
                .mint(
                    key,
                    "alice",
                    "Alice",
                    "standup",
                    Grants::participant(),
                    Duration::from_secs(60),
                )
                .unwrap();
            let c = k.verify(&t).unwrap();
            assert_eq!(
                (
                    c.sub.as_str(),
                    c.name.as_str(),
                    c.room.as_str(),
                    c.iss.as_str()
                ),
                ("alice", "Alice", "standup", key)
            );
            assert_eq!(c.grants, Grants::participant());
        }
    }

    #[test]
    fn expired_not_yet_valid_and_bad_signature_are_refused() {
        let k = keys();
        let t = k
            .mint(
                "key1",
                "a",
                "A",
                "r",
                Grants::participant(),
                Duration::from_secs(60),
            )
            .unwrap();
        let now = unix_now();
        assert_eq!(k.verify_at(&t, now + 120), Err(TokenError::Expired));
        assert_eq!(k.verify_at(&t, now - 3600), Err(TokenError::NotYetValid));
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(k.verify(&forged), Err(TokenError::Invalid(_))));
        // Signed by a key we do not know.
        let mut other = ApiKeys::default();
        other.insert("key3", b"x".to_vec());
        let t3 = other
            .mint(
                "key3",
                "a",
                "A",
                "r",
                Grants::participant(),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(k.verify(&t3), Err(TokenError::UnknownKey));
        // Same kid, wrong secret.
        let mut impostor = ApiKeys::default();
        impostor.insert("key1", b"not-the-secret".to_vec());
        let t4 = impostor
            .mint(
                "key1",
                "a",
                "A",
                "r",
                Grants::participant(),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(matches!(k.verify(&t4), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let k = keys();
        let claims = format!(
            r#"{{"iss":"key1","sub":"a","name":"A","room":"r","grants":{{"join":true}},"nbf":0,"exp":{}}}"#,
            unix_now() + 60
        );
        for alg in ["none", "HS512", "RS256", "ES256"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"key1"}}"#);
            let token = format!("{}.{}.", b64(&header), b64(&claims));
            assert!(
                matches!(k.verify(&token), Err(TokenError::Invalid(_))),
                "{alg}"
            );
        }
        assert!(matches!(
            k.verify("not-a-token"),
            Err(TokenError::Invalid(_))
        ));
    }
}

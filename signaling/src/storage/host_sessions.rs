//! Host sessions: the sign-in state behind the host cookie (issue 7, item 8).
//!
//! A session token is 256 bits from the operating system's generator, handed to the caller once
//! as 64 lowercase hex characters. Only its SHA-256 is stored, so a copy of the database (a
//! backup, a dump, a read-only SQL injection) lets nobody sign in: a hash is not a token, and a
//! 256-bit token cannot be found from its hash. Authentication hashes the presented token, finds
//! the row by hash and compares the hashes again in constant time.
//!
//! The cookie itself (HttpOnly, Secure, SameSite) is the HTTP layer's; this module never sees a
//! request.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::is_unique_violation_of;
use super::{SessionRefusal, Storage, StorageError};
use crate::names;

/// Random bytes in a session token.
pub const HOST_SESSION_TOKEN_BYTES: usize = 32;
/// Longest session lifetime: 30 days.
pub const MAX_HOST_SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// A raw session token. Its `Debug` does not print it, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct HostSessionToken(String);

impl HostSessionToken {
    /// The token, to put in the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for HostSessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostSessionToken(<redacted>)")
    }
}

/// A stored host session (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSession {
    /// Row id, for listing and auditing.
    pub id: i64,
    /// Who signed in.
    pub subject: String,
    /// When it was created (unix ms).
    pub created_at_ms: i64,
    /// First instant it no longer authenticates (unix ms).
    pub expires_at_ms: i64,
}

/// What [`Storage::create_host_session`] returns: the raw token, this one time, and the session.
#[derive(Debug)]
pub struct NewHostSession {
    /// The token to hand to the client. It is not stored anywhere.
    pub token: HostSessionToken,
    /// The stored session.
    pub session: HostSession,
}

fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The token's bytes, or `None` if it is not exactly 64 lowercase hex characters.
fn decode_token(token: &str) -> Option<[u8; HOST_SESSION_TOKEN_BYTES]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if token.len() != HOST_SESSION_TOKEN_BYTES * 2 {
        return None;
    }
    let mut bytes = [0u8; HOST_SESSION_TOKEN_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(token.as_bytes().chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = nibble(*high)? << 4 | nibble(*low)?;
    }
    Some(bytes)
}

fn token_hash(token: &[u8; HOST_SESSION_TOKEN_BYTES]) -> Vec<u8> {
    digest(&SHA256, token).as_ref().to_vec()
}

fn session_from_row(row: &AnyRow) -> Result<HostSession, StorageError> {
    Ok(HostSession {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
    })
}

impl Storage {
    /// Creates a session for `subject` that authenticates until `now_ms + ttl_ms`, and returns
    /// its token (the only time it exists outside the client).
    pub async fn create_host_session(
        &self,
        subject: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<NewHostSession, StorageError> {
        names::validate_identity(subject)
            .map_err(|reason| StorageError::invalid("subject", reason))?;
        if !(1..=MAX_HOST_SESSION_TTL_MS).contains(&ttl_ms) {
            return Err(StorageError::invalid(
                "ttl_ms",
                format!("must be 1 to {MAX_HOST_SESSION_TTL_MS}"),
            ));
        }
        let expires_at_ms = now_ms
            .checked_add(ttl_ms)
            .ok_or_else(|| StorageError::invalid("now_ms", "too far in the future"))?;
        let mut secret = [0u8; HOST_SESSION_TOKEN_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| StorageError::Backend("the system random generator failed".into()))?;
        let row = sqlx::query(
            "INSERT INTO host_sessions (token_sha256, subject, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4) RETURNING id, subject, created_at_ms, expires_at_ms",
        )
        .bind(token_hash(&secret))
        .bind(subject)
        .bind(now_ms)
        .bind(expires_at_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(|error| {
            // 2^-256: a collision means the generator is broken, not bad luck.
            if is_unique_violation_of(&error, "host_sessions") {
                StorageError::Backend("a fresh session token collided with a stored one".into())
            } else {
                error.into()
            }
        })?;
        Ok(NewHostSession {
            token: HostSessionToken(encode_hex(&secret)),
            session: session_from_row(&row)?,
        })
    }

    /// The session `token` belongs to, if it is neither expired nor revoked at `now_ms`;
    /// otherwise [`StorageError::Unauthenticated`] with the reason.
    pub async fn authenticate_host_session(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<HostSession, StorageError> {
        let refused = |reason| StorageError::Unauthenticated { reason };
        let secret = decode_token(token).ok_or(refused(SessionRefusal::Malformed))?;
        let hash = token_hash(&secret);
        let row = sqlx::query(
            "SELECT id, token_sha256, subject, created_at_ms, expires_at_ms, revoked_at_ms \
             FROM host_sessions WHERE token_sha256 = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(refused(SessionRefusal::Unknown))?;
        let stored: Vec<u8> = row.try_get("token_sha256")?;
        // The index lookup already matched; comparing again in constant time keeps the decision
        // itself free of timing that depends on secret bytes, whatever the database does.
        verify_slices_are_equal(&stored, &hash).map_err(|_| refused(SessionRefusal::Unknown))?;
        if row.try_get::<Option<i64>, _>("revoked_at_ms")?.is_some() {
            return Err(refused(SessionRefusal::Revoked));
        }
        let session = session_from_row(&row)?;
        if now_ms >= session.expires_at_ms {
            return Err(refused(SessionRefusal::Expired));
        }
        Ok(session)
    }

    /// Revokes the session of `token` (sign-out). Returns whether a live session was revoked;
    /// an unknown, malformed or already revoked token changes nothing.
    pub async fn revoke_host_session(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let Some(secret) = decode_token(token) else {
            return Ok(false);
        };
        let result = sqlx::query(
            "UPDATE host_sessions SET revoked_at_ms = $2 \
             WHERE token_sha256 = $1 AND revoked_at_ms IS NULL",
        )
        .bind(token_hash(&secret))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Revokes every session of `subject` (sign out everywhere). Returns how many.
    pub async fn revoke_host_sessions_of(
        &self,
        subject: &str,
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        names::validate_identity(subject)
            .map_err(|reason| StorageError::invalid("subject", reason))?;
        let result = sqlx::query(
            "UPDATE host_sessions SET revoked_at_ms = $2 \
             WHERE subject = $1 AND revoked_at_ms IS NULL",
        )
        .bind(subject)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Deletes sessions that can never authenticate again (expired at `now_ms`, or revoked).
    /// Returns how many.
    pub async fn purge_expired_host_sessions(&self, now_ms: i64) -> Result<u64, StorageError> {
        let result = sqlx::query(
            "DELETE FROM host_sessions WHERE expires_at_ms <= $1 OR revoked_at_ms IS NOT NULL",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let text = encode_hex(&bytes);
        assert_eq!(text.len(), 64);
        assert_eq!(decode_token(&text), Some(bytes));
        assert_eq!(decode_token(&text.to_uppercase()), None);
        assert_eq!(decode_token(&text[..63]), None);
        assert_eq!(decode_token(&format!("{text}0")), None);
        assert_eq!(decode_token(&"g".repeat(64)), None);
        // 64 bytes but not 64 characters of ASCII.
        assert_eq!(decode_token(&"é".repeat(32)), None);
        assert_eq!(decode_token(""), None);
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = HostSessionToken("ab".repeat(32));
        assert!(!format!("{token:?}").contains("abab"));
    }
}

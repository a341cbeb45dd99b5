//! The one error type of [`crate::storage`]: what went wrong, in terms the admin API can turn
//! into an HTTP status (404, 409, 400, 401, 500) without looking at backend messages.

use std::fmt;

/// Why a host session token was refused. Callers answer every case the same way (401); the
/// reason is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// Not the shape of a token we issue (length, alphabet).
    Malformed,
    /// No stored session has this token's hash (never issued, or purged).
    Unknown,
    /// The session's expiry has passed.
    Expired,
    /// The session was revoked.
    Revoked,
}

impl fmt::Display for SessionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed token",
            Self::Unknown => "unknown token",
            Self::Expired => "session expired",
            Self::Revoked => "session revoked",
        })
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The thing asked for does not exist (HTTP 404).
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. "room".
        what: &'static str,
    },
    /// The write collides with existing state (HTTP 409): a taken room name or meeting code, a
    /// second running meeting of a room, a meeting that already ended.
    #[error("conflict: {what}")]
    Conflict {
        /// What collided, e.g. "room name already taken".
        what: &'static str,
    },
    /// An input is out of range or of the wrong shape (HTTP 400). Nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The input field, e.g. "name" or "metadata".
        field: &'static str,
        /// What is wrong with it, in words a user can act on.
        reason: String,
    },
    /// A host session token did not authenticate (HTTP 401).
    #[error("host session refused: {reason}")]
    Unauthenticated {
        /// Why; not to be shown to the client.
        reason: SessionRefusal,
    },
    /// The schema migrations could not be applied at connect.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The database failed or is unreachable (HTTP 500/503). The message is for logs only.
    #[error("database error: {0}")]
    Backend(String),
}

impl StorageError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        Self::Backend(error.to_string())
    }
}

/// True when `error` is a unique-constraint violation whose constraint, index or message names
/// `needle` (PostgreSQL reports the constraint name, SQLite the `table.column` in its message).
pub(crate) fn is_unique_violation_of(error: &sqlx::Error, needle: &str) -> bool {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            db.constraint().is_some_and(|c| c.contains(needle)) || db.message().contains(needle)
        }
        _ => false,
    }
}

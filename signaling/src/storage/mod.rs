//! # storage: the durable state of the room service
//!
//! Owns what must survive a restart: [rooms](Storage::create_room) (name, meeting code, limits,
//! metadata), [meetings](Storage::start_meeting) (each run of a room, with every participant's
//! join and leave times and the peak and total counts), and
//! [host sessions](Storage::create_host_session) (stored only as the SHA-256 of their token).
//!
//! What it must not do: read a clock (every time is a `now_ms: i64` in unix milliseconds passed
//! by the caller), store media or chat (chat lives in the room's memory for the meeting only:
//! there is no chat table), use a name as a file path, or leave a half-written change behind
//! (every multi-row write is one transaction). It validates lengths and charsets again even
//! though the API above does, so a bug there cannot put unbounded or path-like data in the
//! database.
//!
//! ## One SQL text, two databases: why the `Any` driver
//!
//! [`Storage::connect`] takes `sqlite://path` (the file is created if missing), `sqlite::memory:`
//! or `postgres://…`. Queries go through sqlx's `Any` driver rather than an enum over
//! `SqlitePool`/`PgPool`: the queries are small and portable (`$1` placeholders, `RETURNING`,
//! partial unique indexes work on both), so one text per query keeps each operation written
//! once, where an enum would duplicate every query and its row decoding. The price is `Any`'s
//! small type set, which this schema fits: integers are `BIGINT` on PostgreSQL, the only blob is
//! the token hash. Where the SQL must differ (the migrations, a collation) the code picks the
//! text by [`Backend`].
//!
//! SQLite runs on one connection: SQLite has a single writer anyway, and one connection rules
//! out `SQLITE_BUSY` when a read transaction upgrades to a write. `sqlite::memory:` needs it too
//! (each new connection would open a new, empty database).
//!
//! ```no_run
//! # async fn doc() -> Result<(), signaling::storage::StorageError> {
//! use signaling::storage::{NewRoom, Storage};
//!
//! let storage = Storage::connect("sqlite://sfu.db").await?;
//! let now_ms = 1_700_000_000_000;
//! storage
//!     .create_room(
//!         &NewRoom {
//!             name: "standup".into(),
//!             meeting_code: "abc-defg-hij".into(),
//!             max_participants: 50,
//!             empty_timeout_secs: 300,
//!             metadata: String::new(),
//!         },
//!         now_ms,
//!     )
//!     .await?;
//! let meeting = storage.start_meeting("standup", now_ms).await?;
//! storage.record_join(meeting.id, "alice", "Alice", now_ms + 10).await?;
//! storage.record_leave(meeting.id, "alice", now_ms + 60_000).await?;
//! let ended = storage.end_meeting(meeting.id, now_ms + 61_000).await?;
//! assert_eq!(ended.total_participants, Some(1));
//! # Ok(()) }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod error;
mod host_sessions;
mod meetings;
mod rooms;

pub use error::{SessionRefusal, StorageError};
pub use host_sessions::{
    HOST_SESSION_TOKEN_BYTES, HostSession, HostSessionToken, MAX_HOST_SESSION_TTL_MS,
    NewHostSession,
};
pub use meetings::{Meeting, MeetingDetail, MeetingId, ParticipantSession};
pub use rooms::{
    MAX_EMPTY_TIMEOUT_SECS, MAX_MEETING_CODE, MAX_METADATA, MAX_PAGE, MAX_PARTICIPANTS, NewRoom,
    Room, RoomPage, RoomUpdate, validate_meeting_code, validate_metadata,
};

use std::borrow::Cow;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::SqlSafeStr;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Which database a [`Storage`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the embedded default) or an in-memory SQLite database.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Migrations, one list per backend: the SQL differs (identity columns, `BYTEA`), the schema
/// does not. Embedded in the binary so the server needs no files beside it.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "rooms meetings host sessions",
    include_str!("../../migrations/sqlite/0001_rooms_meetings_host_sessions.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "rooms meetings host sessions",
    include_str!("../../migrations/postgres/0001_rooms_meetings_host_sessions.sql"),
)];

/// A handle on the database. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Storage {
    pool: AnyPool,
    backend: Backend,
}

impl Storage {
    /// Connects to `url` and applies any pending migrations.
    ///
    /// * `sqlite://path/to/file.db` — created if missing (its directory must exist).
    /// * `sqlite::memory:` — private to this `Storage` and gone when it is dropped.
    /// * `postgres://user:password@host:port/database` (or `postgresql://`).
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = Self::normalise_url(url)?;
        let options = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        }
        .acquire_timeout(Duration::from_secs(30));
        let pool = options.connect(&url).await?;
        let storage = Self { pool, backend };
        storage.migrate().await?;
        Ok(storage)
    }

    /// The database this handle talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; later calls fail with [`StorageError::Backend`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn normalise_url(url: &str) -> Result<(Backend, Cow<'_, str>), StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok((Backend::Postgres, Cow::Borrowed(url)));
        }
        if !url.starts_with("sqlite:") {
            return Err(StorageError::invalid(
                "database url",
                "must start with sqlite:// , sqlite::memory: or postgres://",
            ));
        }
        let in_memory = url.starts_with("sqlite::memory:") || url.contains("mode=memory");
        let query = url.split_once('?').map(|(_, query)| query);
        let has_mode = query.is_some_and(|q| q.split('&').any(|pair| pair.starts_with("mode=")));
        if in_memory || has_mode {
            return Ok((Backend::Sqlite, Cow::Borrowed(url)));
        }
        // sqlx opens an existing file only, unless told to create it.
        let separator = if query.is_some() { '&' } else { '?' };
        Ok((
            Backend::Sqlite,
            Cow::Owned(format!("{url}{separator}mode=rwc")),
        ))
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        let list = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|error| StorageError::Migration(error.to_string()))
    }
}

/// A page size: 1 to [`MAX_PAGE`].
fn page_limit(limit: u32) -> Result<i64, StorageError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(StorageError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(i64::from(limit))
}

/// Reads a stored count back into its API type; a value out of range means the row was not
/// written by this code.
fn stored<T: TryFrom<i64>>(value: i64, column: &'static str) -> Result<T, StorageError> {
    T::try_from(value).map_err(|_| StorageError::Backend(format!("stored {column} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file_unless_a_mode_is_given() {
        let cases = [
            ("sqlite://a.db", "sqlite://a.db?mode=rwc"),
            (
                "sqlite://a.db?cache=shared",
                "sqlite://a.db?cache=shared&mode=rwc",
            ),
            ("sqlite://a.db?mode=ro", "sqlite://a.db?mode=ro"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (given, expected) in cases {
            let (backend, url) = Storage::normalise_url(given)
                .map_err(|e| e.to_string())
                .unwrap();
            assert_eq!(backend, Backend::Sqlite);
            assert_eq!(url, expected);
        }
        assert!(matches!(
            Storage::normalise_url("postgresql://u@h/db"),
            Ok((Backend::Postgres, _))
        ));
        for bad in ["mysql://u@h/db", "", "/etc/passwd", "file:x.db"] {
            assert!(matches!(
                Storage::normalise_url(bad),
                Err(StorageError::Invalid {
                    field: "database url",
                    ..
                })
            ));
        }
    }
}

//! Stored rooms: a unique name, a unique meeting code, limits and metadata.
//!
//! The meeting code is generated elsewhere and only checked for shape here; lookups take the
//! code as the caller normalised it. A room's running state (participants, tracks) is not here:
//! that is the room actor's.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::is_unique_violation_of;
use super::{Backend, Storage, StorageError, page_limit, stored};
use crate::names;

/// Longest room metadata, in bytes.
pub const MAX_METADATA: usize = 4096;
/// Longest meeting code, in bytes.
pub const MAX_MEETING_CODE: usize = 32;
/// Largest `max_participants` a room may have.
pub const MAX_PARTICIPANTS: u32 = 10_000;
/// Longest empty timeout: a week.
pub const MAX_EMPTY_TIMEOUT_SECS: u32 = 7 * 24 * 3600;
/// Largest page a list returns.
pub const MAX_PAGE: u32 = 500;

/// What [`Storage::create_room`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoom {
    /// Unique name ([`names::validate_room`]).
    pub name: String,
    /// Unique meeting code ([`validate_meeting_code`]).
    pub meeting_code: String,
    /// 1 to [`MAX_PARTICIPANTS`].
    pub max_participants: u32,
    /// Seconds an empty room lives on; 0 to [`MAX_EMPTY_TIMEOUT_SECS`].
    pub empty_timeout_secs: u32,
    /// Free text for the application ([`validate_metadata`]).
    pub metadata: String,
}

/// A partial change to a room; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomUpdate {
    /// New participant limit.
    pub max_participants: Option<u32>,
    /// New empty timeout.
    pub empty_timeout_secs: Option<u32>,
    /// New metadata.
    pub metadata: Option<String>,
}

/// A stored room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Room {
    /// Unique name.
    pub name: String,
    /// Unique human-friendly code that resolves to this room.
    pub meeting_code: String,
    /// Participant limit.
    pub max_participants: u32,
    /// Seconds an empty room lives on.
    pub empty_timeout_secs: u32,
    /// Application metadata.
    pub metadata: String,
    /// When it was created (unix ms).
    pub created_at_ms: i64,
    /// When it was last changed (unix ms).
    pub updated_at_ms: i64,
}

/// One page of [`Storage::list_rooms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomPage {
    /// Rooms in name order (bytewise).
    pub rooms: Vec<Room>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A meeting code: 3 to [`MAX_MEETING_CODE`] of `[a-z0-9-]`, not starting or ending with `-`.
pub fn validate_meeting_code(code: &str) -> Result<(), String> {
    if code.len() < 3 || code.len() > MAX_MEETING_CODE {
        return Err(format!(
            "a meeting code must be 3 to {MAX_MEETING_CODE} characters"
        ));
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || code.starts_with('-')
        || code.ends_with('-')
    {
        return Err("a meeting code may use only a-z, 0-9 and '-' (not first or last)".into());
    }
    Ok(())
}

/// Room metadata: at most [`MAX_METADATA`] bytes, no control characters except tab and line
/// breaks (so JSON fits, NUL and terminal escapes do not).
pub fn validate_metadata(metadata: &str) -> Result<(), String> {
    if metadata.len() > MAX_METADATA {
        return Err(format!("metadata is at most {MAX_METADATA} bytes"));
    }
    if metadata
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err("metadata cannot contain control characters".into());
    }
    Ok(())
}

fn check_room_name(name: &str) -> Result<(), StorageError> {
    names::validate_room(name).map_err(|reason| StorageError::invalid("name", reason))
}

fn check_meeting_code(code: &str) -> Result<(), StorageError> {
    validate_meeting_code(code).map_err(|reason| StorageError::invalid("meeting_code", reason))
}

fn check_limits(
    max_participants: Option<u32>,
    empty_timeout_secs: Option<u32>,
    metadata: Option<&str>,
) -> Result<(), StorageError> {
    if let Some(max) = max_participants
        && !(1..=MAX_PARTICIPANTS).contains(&max)
    {
        return Err(StorageError::invalid(
            "max_participants",
            format!("must be 1 to {MAX_PARTICIPANTS}"),
        ));
    }
    if let Some(timeout) = empty_timeout_secs
        && timeout > MAX_EMPTY_TIMEOUT_SECS
    {
        return Err(StorageError::invalid(
            "empty_timeout_secs",
            format!("must be 0 to {MAX_EMPTY_TIMEOUT_SECS}"),
        ));
    }
    if let Some(metadata) = metadata {
        validate_metadata(metadata).map_err(|reason| StorageError::invalid("metadata", reason))?;
    }
    Ok(())
}

const ROOM_COLUMNS: &str = "name, meeting_code, max_participants, empty_timeout_secs, metadata, created_at_ms, updated_at_ms";

fn room_from_row(row: &AnyRow) -> Result<Room, StorageError> {
    Ok(Room {
        name: row.try_get("name")?,
        meeting_code: row.try_get("meeting_code")?,
        max_participants: stored(row.try_get("max_participants")?, "max_participants")?,
        empty_timeout_secs: stored(row.try_get("empty_timeout_secs")?, "empty_timeout_secs")?,
        metadata: row.try_get("metadata")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Maps a unique violation on insert to the field that collided.
fn room_conflict(error: sqlx::Error) -> StorageError {
    if is_unique_violation_of(&error, "meeting_code") {
        StorageError::Conflict {
            what: "meeting code already in use",
        }
    } else if is_unique_violation_of(&error, "name") {
        StorageError::Conflict {
            what: "room name already taken",
        }
    } else {
        error.into()
    }
}

impl Storage {
    /// Creates a room. A taken name or code is [`StorageError::Conflict`].
    pub async fn create_room(&self, room: &NewRoom, now_ms: i64) -> Result<Room, StorageError> {
        check_room_name(&room.name)?;
        check_meeting_code(&room.meeting_code)?;
        check_limits(
            Some(room.max_participants),
            Some(room.empty_timeout_secs),
            Some(&room.metadata),
        )?;
        let row = sqlx::query(
            "INSERT INTO rooms (name, meeting_code, max_participants, empty_timeout_secs, \
             metadata, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6) \
             RETURNING name, meeting_code, max_participants, empty_timeout_secs, metadata, \
             created_at_ms, updated_at_ms",
        )
        .bind(&room.name)
        .bind(&room.meeting_code)
        .bind(i64::from(room.max_participants))
        .bind(i64::from(room.empty_timeout_secs))
        .bind(&room.metadata)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(room_conflict)?;
        room_from_row(&row)
    }

    /// The room called `name`.
    pub async fn room_by_name(&self, name: &str) -> Result<Room, StorageError> {
        check_room_name(name)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(room_from_row)
            .ok_or(StorageError::NotFound { what: "room" })?
    }

    /// The room whose meeting code is `code` (exactly; normalising what a user typed is the
    /// caller's job).
    pub async fn room_by_meeting_code(&self, code: &str) -> Result<Room, StorageError> {
        check_meeting_code(code)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE meeting_code = $1"
        )))
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(room_from_row)
            .ok_or(StorageError::NotFound { what: "room" })?
    }

    /// Up to `limit` rooms in bytewise name order, starting after the name `after`.
    pub async fn list_rooms(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<RoomPage, StorageError> {
        let limit = page_limit(limit)?;
        if let Some(after) = after {
            names::validate_room(after)
                .map_err(|reason| StorageError::invalid("cursor", reason))?;
        }
        // Bytewise order on both backends: PostgreSQL would otherwise sort by the database's
        // locale and pages would differ between backends.
        let collate = match self.backend {
            Backend::Sqlite => "BINARY",
            Backend::Postgres => "\"C\"",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms \
             WHERE $1 IS NULL OR name COLLATE {collate} > $1 \
             ORDER BY name COLLATE {collate} LIMIT $2"
        )))
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut rooms = rows
            .iter()
            .map(room_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = i64::try_from(rooms.len()).is_ok_and(|n| n > limit);
        if more {
            rooms.pop();
        }
        let next_cursor = if more {
            rooms.last().map(|room| room.name.clone())
        } else {
            None
        };
        Ok(RoomPage { rooms, next_cursor })
    }

    /// Changes a room's limits or metadata and returns it as stored.
    pub async fn update_room(
        &self,
        name: &str,
        update: &RoomUpdate,
        now_ms: i64,
    ) -> Result<Room, StorageError> {
        check_room_name(name)?;
        check_limits(
            update.max_participants,
            update.empty_timeout_secs,
            update.metadata.as_deref(),
        )?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE rooms SET \
             max_participants = COALESCE($2, max_participants), \
             empty_timeout_secs = COALESCE($3, empty_timeout_secs), \
             metadata = COALESCE($4, metadata), \
             updated_at_ms = $5 \
             WHERE name = $1 RETURNING {ROOM_COLUMNS}"
        )))
        .bind(name)
        .bind(update.max_participants.map(i64::from))
        .bind(update.empty_timeout_secs.map(i64::from))
        .bind(update.metadata.as_deref())
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(room_from_row)
            .ok_or(StorageError::NotFound { what: "room" })?
    }

    /// Deletes a room with its meetings history.
    pub async fn delete_room(&self, name: &str) -> Result<(), StorageError> {
        check_room_name(name)?;
        let result = sqlx::query("DELETE FROM rooms WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound { what: "room" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_code_shape() {
        for good in ["abc-defg-hij", "abc", "a1b2c3"] {
            assert!(validate_meeting_code(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "ABC-DEFG-HIJ",
            "abc defg",
            "-abc",
            "abc-",
            "../etc",
            "abc\0def",
            &"a".repeat(MAX_MEETING_CODE + 1),
        ] {
            assert!(validate_meeting_code(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_shape() {
        assert!(validate_metadata("").is_ok());
        assert!(validate_metadata("{\"topic\":\"plan\",\n\t\"ok\":true}").is_ok());
        assert!(validate_metadata(&"x".repeat(MAX_METADATA)).is_ok());
        assert!(validate_metadata(&"x".repeat(MAX_METADATA + 1)).is_err());
        assert!(validate_metadata("a\0b").is_err());
        assert!(validate_metadata("\u{1b}[31mred").is_err());
    }
}

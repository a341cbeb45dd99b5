//! Meetings: each run of a room, from its first participant to its end, with every
//! participant's join and leave times. The peak and total participant counts are computed from
//! those rows when the meeting ends, so they can never disagree with them.
//!
//! Nothing said or shown in a meeting is stored: no media, no chat.
//!
//! Writes to a meeting begin by updating its own row: on PostgreSQL that row lock orders a join
//! against a concurrent end (the join waits, then sees the meeting ended), on SQLite the write
//! lock does the same.

use std::collections::HashSet;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::error::is_unique_violation_of;
use super::{Storage, StorageError, page_limit, stored};
use crate::names;

/// A meeting's id: unique across rooms, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MeetingId(pub i64);

/// One run of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meeting {
    /// Its id.
    pub id: MeetingId,
    /// The room's name.
    pub room: String,
    /// When it started (unix ms).
    pub started_at_ms: i64,
    /// When it ended; `None` while it runs.
    pub ended_at_ms: Option<i64>,
    /// Most participants present at once; set when it ends.
    pub peak_participants: Option<u32>,
    /// Distinct identities that joined; set when it ends.
    pub total_participants: Option<u32>,
}

/// One stay of a participant in a meeting; a rejoin is another stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantSession {
    /// The identity from the participant's token.
    pub identity: String,
    /// The display name it joined with.
    pub display_name: String,
    /// When it joined (unix ms).
    pub joined_at_ms: i64,
    /// When it left; `None` while present. Ending the meeting closes every open stay.
    pub left_at_ms: Option<i64>,
}

/// A meeting with every participant stay, in join order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeetingDetail {
    /// The meeting.
    pub meeting: Meeting,
    /// Its participants' stays.
    pub participants: Vec<ParticipantSession>,
}

const MEETING_SELECT: &str = "SELECT m.id, r.name AS room, m.started_at_ms, m.ended_at_ms, \
     m.peak_participants, m.total_participants FROM meetings m JOIN rooms r ON r.id = m.room_id";

fn meeting_from_row(row: &AnyRow) -> Result<Meeting, StorageError> {
    let count = |column: &'static str| -> Result<Option<u32>, StorageError> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|value| stored(value, column))
            .transpose()
    };
    Ok(Meeting {
        id: MeetingId(row.try_get("id")?),
        room: row.try_get("room")?,
        started_at_ms: row.try_get("started_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        peak_participants: count("peak_participants")?,
        total_participants: count("total_participants")?,
    })
}

fn participant_from_row(row: &AnyRow) -> Result<ParticipantSession, StorageError> {
    Ok(ParticipantSession {
        identity: row.try_get("identity")?,
        display_name: row.try_get("display_name")?,
        joined_at_ms: row.try_get("joined_at_ms")?,
        left_at_ms: row.try_get("left_at_ms")?,
    })
}

/// Peak concurrent and total distinct participants of finished stays. A stay covers
/// `[joined, left)`, so one who leaves as another joins in the same millisecond does not overlap;
/// a stay of zero length counts as one millisecond (the participant was there).
fn peak_and_total(stays: &[ParticipantSession]) -> (u32, u32) {
    let mut edges: Vec<(i64, i32)> = Vec::with_capacity(stays.len() * 2);
    for stay in stays {
        let left = stay
            .left_at_ms
            .unwrap_or(i64::MAX)
            .max(stay.joined_at_ms.saturating_add(1));
        edges.push((stay.joined_at_ms, 1));
        edges.push((left, -1));
    }
    // At equal times leaves (-1) sort before joins (+1).
    edges.sort_unstable();
    let (mut present, mut peak) = (0i64, 0i64);
    for (_, delta) in edges {
        present += i64::from(delta);
        peak = peak.max(present);
    }
    let total = stays
        .iter()
        .map(|stay| stay.identity.as_str())
        .collect::<HashSet<_>>()
        .len();
    (
        u32::try_from(peak).unwrap_or(u32::MAX),
        u32::try_from(total).unwrap_or(u32::MAX),
    )
}

fn check_identity(identity: &str) -> Result<(), StorageError> {
    names::validate_identity(identity).map_err(|reason| StorageError::invalid("identity", reason))
}

/// Locks a running meeting's row for this transaction and returns its start time; distinguishes
/// a missing meeting from an ended one.
async fn lock_running(
    tx: &mut Transaction<'static, Any>,
    meeting: MeetingId,
) -> Result<i64, StorageError> {
    let started: Option<i64> = sqlx::query_scalar(
        "UPDATE meetings SET ended_at_ms = ended_at_ms WHERE id = $1 AND ended_at_ms IS NULL \
         RETURNING started_at_ms",
    )
    .bind(meeting.0)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(started) = started {
        return Ok(started);
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM meetings WHERE id = $1")
        .bind(meeting.0)
        .fetch_optional(&mut **tx)
        .await?;
    Err(match exists {
        Some(_) => StorageError::Conflict {
            what: "meeting already ended",
        },
        None => StorageError::NotFound { what: "meeting" },
    })
}

impl Storage {
    /// Starts a meeting of `room`. A room has at most one running meeting: a second start is
    /// [`StorageError::Conflict`].
    pub async fn start_meeting(&self, room: &str, now_ms: i64) -> Result<Meeting, StorageError> {
        names::validate_room(room).map_err(|reason| StorageError::invalid("room", reason))?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO meetings (room_id, started_at_ms) \
             SELECT id, $2 FROM rooms WHERE name = $1 RETURNING id",
        )
        .bind(room)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| {
            if is_unique_violation_of(&error, "meetings") {
                StorageError::Conflict {
                    what: "the room already has a running meeting",
                }
            } else {
                error.into()
            }
        })?;
        let id = id.ok_or(StorageError::NotFound { what: "room" })?;
        Ok(Meeting {
            id: MeetingId(id),
            room: room.to_owned(),
            started_at_ms: now_ms,
            ended_at_ms: None,
            peak_participants: None,
            total_participants: None,
        })
    }

    /// The running meeting of `room`, if any (after a restart, to carry on recording it).
    pub async fn running_meeting(&self, room: &str) -> Result<Option<Meeting>, StorageError> {
        names::validate_room(room).map_err(|reason| StorageError::invalid("room", reason))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEETING_SELECT} WHERE r.name = $1 AND m.ended_at_ms IS NULL"
        )))
        .bind(room)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(meeting_from_row).transpose()
    }

    /// Records that `identity` joined a running meeting. An identity already present is
    /// [`StorageError::Conflict`] (record its leave first).
    pub async fn record_join(
        &self,
        meeting: MeetingId,
        identity: &str,
        display_name: &str,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        check_identity(identity)?;
        names::validate_display_name(display_name)
            .map_err(|reason| StorageError::invalid("display_name", reason))?;
        let mut tx = self.pool.begin().await?;
        let started = lock_running(&mut tx, meeting).await?;
        if now_ms < started {
            return Err(StorageError::invalid(
                "joined_at_ms",
                "before the meeting started",
            ));
        }
        sqlx::query(
            "INSERT INTO meeting_participants (meeting_id, identity, display_name, joined_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(meeting.0)
        .bind(identity)
        .bind(display_name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|error| {
            if is_unique_violation_of(&error, "meeting_participants") {
                StorageError::Conflict {
                    what: "the identity is already in the meeting",
                }
            } else {
                error.into()
            }
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `identity` left a running meeting.
    pub async fn record_leave(
        &self,
        meeting: MeetingId,
        identity: &str,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        check_identity(identity)?;
        let mut tx = self.pool.begin().await?;
        lock_running(&mut tx, meeting).await?;
        let joined: Option<i64> = sqlx::query_scalar(
            "SELECT joined_at_ms FROM meeting_participants \
             WHERE meeting_id = $1 AND identity = $2 AND left_at_ms IS NULL",
        )
        .bind(meeting.0)
        .bind(identity)
        .fetch_optional(&mut *tx)
        .await?;
        let joined = joined.ok_or(StorageError::NotFound {
            what: "participant in the meeting",
        })?;
        if now_ms < joined {
            return Err(StorageError::invalid("left_at_ms", "before the join"));
        }
        sqlx::query(
            "UPDATE meeting_participants SET left_at_ms = $3 \
             WHERE meeting_id = $1 AND identity = $2 AND left_at_ms IS NULL",
        )
        .bind(meeting.0)
        .bind(identity)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a running meeting: closes every open stay at `now_ms`, then stores the end time and
    /// the peak and total counts computed from the stays. All or nothing.
    pub async fn end_meeting(
        &self,
        meeting: MeetingId,
        now_ms: i64,
    ) -> Result<Meeting, StorageError> {
        let mut tx = self.pool.begin().await?;
        let started = lock_running(&mut tx, meeting).await?;
        let last_join: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(joined_at_ms) FROM meeting_participants WHERE meeting_id = $1",
        )
        .bind(meeting.0)
        .fetch_one(&mut *tx)
        .await?;
        if now_ms < started.max(last_join.unwrap_or(started)) {
            return Err(StorageError::invalid(
                "ended_at_ms",
                "before the start or a join",
            ));
        }
        sqlx::query(
            "UPDATE meeting_participants SET left_at_ms = $2 \
             WHERE meeting_id = $1 AND left_at_ms IS NULL",
        )
        .bind(meeting.0)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let stays = sqlx::query(
            "SELECT identity, display_name, joined_at_ms, left_at_ms FROM meeting_participants \
             WHERE meeting_id = $1",
        )
        .bind(meeting.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(participant_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let (peak, total) = peak_and_total(&stays);
        sqlx::query(
            "UPDATE meetings SET ended_at_ms = $2, peak_participants = $3, \
             total_participants = $4 WHERE id = $1",
        )
        .bind(meeting.0)
        .bind(now_ms)
        .bind(i64::from(peak))
        .bind(i64::from(total))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEETING_SELECT} WHERE m.id = $1"
        )))
        .bind(meeting.0)
        .fetch_one(&mut *tx)
        .await?;
        let ended = meeting_from_row(&row)?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Up to `limit` meetings of `room`, newest first.
    pub async fn list_meetings(
        &self,
        room: &str,
        limit: u32,
    ) -> Result<Vec<Meeting>, StorageError> {
        names::validate_room(room).map_err(|reason| StorageError::invalid("room", reason))?;
        let limit = page_limit(limit)?;
        let room_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM rooms WHERE name = $1")
            .bind(room)
            .fetch_optional(&self.pool)
            .await?;
        if room_exists.is_none() {
            return Err(StorageError::NotFound { what: "room" });
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEETING_SELECT} WHERE r.name = $1 \
             ORDER BY m.started_at_ms DESC, m.id DESC LIMIT $2"
        )))
        .bind(room)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(meeting_from_row).collect()
    }

    /// One meeting with every participant stay in join order.
    pub async fn meeting(&self, meeting: MeetingId) -> Result<MeetingDetail, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEETING_SELECT} WHERE m.id = $1"
        )))
        .bind(meeting.0)
        .fetch_optional(&self.pool)
        .await?;
        let meeting_row = row
            .as_ref()
            .map(meeting_from_row)
            .ok_or(StorageError::NotFound { what: "meeting" })??;
        let participants = sqlx::query(
            "SELECT identity, display_name, joined_at_ms, left_at_ms FROM meeting_participants \
             WHERE meeting_id = $1 ORDER BY joined_at_ms, id",
        )
        .bind(meeting.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(participant_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(MeetingDetail {
            meeting: meeting_row,
            participants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stay(identity: &str, joined: i64, left: i64) -> ParticipantSession {
        ParticipantSession {
            identity: identity.into(),
            display_name: String::new(),
            joined_at_ms: joined,
            left_at_ms: Some(left),
        }
    }

    #[test]
    fn peak_counts_overlaps_not_handovers() {
        assert_eq!(peak_and_total(&[]), (0, 0));
        // b leaves as c joins: never three at once; a's rejoin is the same person.
        let stays = [
            stay("a", 0, 10),
            stay("b", 5, 20),
            stay("c", 20, 30),
            stay("a", 25, 40),
        ];
        assert_eq!(peak_and_total(&stays), (2, 3));
        assert_eq!(peak_and_total(&[stay("a", 7, 7)]), (1, 1));
        assert_eq!(
            peak_and_total(&[stay("a", 0, 100), stay("b", 1, 99), stay("c", 2, 3)]),
            (3, 3)
        );
    }
}

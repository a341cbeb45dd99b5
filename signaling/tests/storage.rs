//! The storage layer against real databases.
//!
//! Every scenario runs twice: on a SQLite file in its own temp directory, and on PostgreSQL in
//! a database of its own created from `SFU_TEST_POSTGRES_URL` (start one with
//! `scripts/postgres.sh`). Without that URL the PostgreSQL half is skipped, unless
//! `SFU_REQUIRE_POSTGRES=1` (set by `scripts/test.sh`), where it fails instead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use signaling::storage::{
    Backend, MAX_METADATA, MeetingId, NewRoom, RoomUpdate, SessionRefusal, Storage, StorageError,
};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};

const T0: i64 = 1_700_000_000_000;

fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, database: String },
}

/// One test's own database and a [`Storage`] on it.
struct Db {
    url: String,
    storage: Storage,
    cleanup: Cleanup,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(unique_name("sfu_storage_test"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("sfu.db").display());
        let storage = Storage::connect(&url).await.unwrap();
        assert_eq!(storage.backend(), Backend::Sqlite);
        Db {
            url,
            storage,
            cleanup: Cleanup::Dir(dir),
        }
    }

    async fn postgres() -> Option<Db> {
        let admin_url = match std::env::var("SFU_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("SFU_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "SFU_REQUIRE_POSTGRES=1 but SFU_TEST_POSTGRES_URL is not set \
                     (start a server with scripts/postgres.sh)"
                );
                eprintln!("PostgreSQL half skipped: SFU_TEST_POSTGRES_URL is not set");
                return None;
            }
        };
        sqlx::any::install_default_drivers();
        let database = unique_name("sfu_test");
        let mut admin = AnyConnection::connect(&admin_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &database);
        let storage = Storage::connect(&url).await.unwrap();
        assert_eq!(storage.backend(), Backend::Postgres);
        Some(Db {
            url,
            storage,
            cleanup: Cleanup::Postgres {
                admin_url,
                database,
            },
        })
    }

    /// A separate connection to the same database, for looking behind the API.
    async fn raw(&self) -> AnyConnection {
        AnyConnection::connect(&self.url).await.unwrap()
    }

    async fn finish(self) {
        self.storage.close().await;
        match self.cleanup {
            Cleanup::Dir(dir) => std::fs::remove_dir_all(dir).unwrap(),
            Cleanup::Postgres {
                admin_url,
                database,
            } => {
                let mut admin = AnyConnection::connect(&admin_url).await.unwrap();
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE {database} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        }
    }
}

/// One `#[tokio::test]` per backend for each scenario, so they run in parallel.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                let db = super::Db::sqlite().await;
                super::$scenario(&db).await;
                db.finish().await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$scenario(&db).await;
                    db.finish().await;
                }
            }
        }
    )*};
}

on_both_backends!(
    room_crud,
    taken_name_or_code_is_a_typed_conflict,
    rooms_list_in_byte_order_page_by_page,
    meeting_lifecycle_counts_peak_and_total,
    meetings_list_newest_first,
    deleting_a_room_deletes_its_history,
    joins_racing_the_end_leave_no_open_stay,
    host_session_authenticates_until_expiry_or_revocation,
    no_stored_value_authenticates,
    failed_end_of_meeting_writes_nothing,
    malformed_and_oversized_input_is_invalid,
    data_survives_a_reconnect,
);

fn new_room(name: &str, code: &str) -> NewRoom {
    NewRoom {
        name: name.into(),
        meeting_code: code.into(),
        max_participants: 20,
        empty_timeout_secs: 300,
        metadata: String::new(),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StorageError>) {
    assert!(
        matches!(result, Err(StorageError::NotFound { .. })),
        "{result:?}"
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StorageError>, expected: &str) {
    match result {
        Err(StorageError::Conflict { what }) => assert!(what.contains(expected), "{what}"),
        other => panic!("expected a conflict about {expected}, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StorageError>, expected_field: &str) {
    match result {
        Err(StorageError::Invalid { field, .. }) => assert_eq!(field, expected_field),
        other => panic!("expected {expected_field} to be invalid, got {other:?}"),
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, StorageError>, expected: SessionRefusal) {
    match result {
        Err(StorageError::Unauthenticated { reason }) => assert_eq!(reason, expected),
        other => panic!("expected refusal {expected:?}, got {other:?}"),
    }
}

async fn room_crud(db: &Db) {
    let s = &db.storage;
    let mut spec = new_room("standup", "abc-defg-hij");
    spec.metadata = "{\"topic\": \"planning\"}".into();
    let created = s.create_room(&spec, T0).await.unwrap();
    assert_eq!(created.name, "standup");
    assert_eq!(created.meeting_code, "abc-defg-hij");
    assert_eq!(created.max_participants, 20);
    assert_eq!(created.empty_timeout_secs, 300);
    assert_eq!(created.metadata, spec.metadata);
    assert_eq!((created.created_at_ms, created.updated_at_ms), (T0, T0));

    assert_eq!(s.room_by_name("standup").await.unwrap(), created);
    assert_eq!(
        s.room_by_meeting_code("abc-defg-hij").await.unwrap(),
        created
    );
    assert_not_found(s.room_by_name("retro").await);
    assert_not_found(s.room_by_meeting_code("zzz-zzzz-zzz").await);

    // Only the given fields change.
    let updated = s
        .update_room(
            "standup",
            &RoomUpdate {
                max_participants: Some(5),
                metadata: Some(String::new()),
                ..RoomUpdate::default()
            },
            T0 + 1000,
        )
        .await
        .unwrap();
    assert_eq!(updated.max_participants, 5);
    assert_eq!(updated.empty_timeout_secs, 300);
    assert_eq!(updated.metadata, "");
    assert_eq!(
        (updated.created_at_ms, updated.updated_at_ms),
        (T0, T0 + 1000)
    );
    assert_eq!(s.room_by_name("standup").await.unwrap(), updated);
    let updated = s
        .update_room(
            "standup",
            &RoomUpdate {
                empty_timeout_secs: Some(0),
                ..RoomUpdate::default()
            },
            T0 + 2000,
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.max_participants, updated.empty_timeout_secs),
        (5, 0)
    );
    assert_not_found(s.update_room("retro", &RoomUpdate::default(), T0).await);

    s.delete_room("standup").await.unwrap();
    assert_not_found(s.room_by_name("standup").await);
    assert_not_found(s.room_by_meeting_code("abc-defg-hij").await);
    assert_not_found(s.delete_room("standup").await);
    // Name and code are free again.
    s.create_room(&spec, T0 + 3000).await.unwrap();
}

async fn taken_name_or_code_is_a_typed_conflict(db: &Db) {
    let s = &db.storage;
    let first = s
        .create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    assert_conflict(
        s.create_room(&new_room("standup", "xyz-wxyz-xyz"), T0)
            .await,
        "room name",
    );
    assert_conflict(
        s.create_room(&new_room("retro", "abc-defg-hij"), T0).await,
        "meeting code",
    );
    // The refused rooms left nothing behind, and the first is untouched.
    let page = s.list_rooms(None, 10).await.unwrap();
    assert_eq!(page.rooms, vec![first]);
    assert_not_found(s.room_by_meeting_code("xyz-wxyz-xyz").await);
    s.create_room(&new_room("retro", "xyz-wxyz-xyz"), T0)
        .await
        .unwrap();
}

async fn rooms_list_in_byte_order_page_by_page(db: &Db) {
    let s = &db.storage;
    // Case and punctuation differ: a locale collation would order these differently.
    let names = ["b", "Z9", "a_b", "a.b", "B", "a-b", "a", "zz"];
    for (i, name) in names.iter().enumerate() {
        s.create_room(&new_room(name, &format!("code-{i}")), T0)
            .await
            .unwrap();
    }
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s.list_rooms(cursor.as_deref(), 3).await.unwrap();
        pages += 1;
        assert!(page.rooms.len() <= 3);
        seen.extend(page.rooms.iter().map(|room| room.name.clone()));
        match page.next_cursor {
            Some(next) => {
                assert_eq!(Some(&next), seen.last());
                cursor = Some(next);
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    // An exact fit has no next page.
    let all = s.list_rooms(None, 8).await.unwrap();
    assert_eq!(all.rooms.len(), 8);
    assert_eq!(all.next_cursor, None);
    assert_invalid(s.list_rooms(None, 0).await, "limit");
    assert_invalid(s.list_rooms(None, 501).await, "limit");
}

async fn meeting_lifecycle_counts_peak_and_total(db: &Db) {
    let s = &db.storage;
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    let meeting = s.start_meeting("standup", T0 + 100).await.unwrap();
    assert_eq!(meeting.room, "standup");
    assert_eq!(meeting.ended_at_ms, None);
    assert_eq!(
        s.running_meeting("standup").await.unwrap(),
        Some(meeting.clone())
    );
    assert_conflict(
        s.start_meeting("standup", T0 + 150).await,
        "running meeting",
    );
    assert_not_found(s.start_meeting("retro", T0).await);

    let id = meeting.id;
    s.record_join(id, "alice", "Alice", T0 + 100).await.unwrap();
    s.record_join(id, "bob", "Bob 🎥", T0 + 200).await.unwrap();
    assert_conflict(
        s.record_join(id, "bob", "Bob again", T0 + 250).await,
        "already in the meeting",
    );
    // Alice leaves as Carol joins: a handover, never three at once.
    s.record_leave(id, "alice", T0 + 300).await.unwrap();
    s.record_join(id, "carol", "Carol", T0 + 300).await.unwrap();
    // Alice rejoins: now three at once (bob, carol, alice).
    s.record_join(id, "alice", "Alice (phone)", T0 + 400)
        .await
        .unwrap();
    s.record_leave(id, "bob", T0 + 500).await.unwrap();
    assert_not_found(s.record_leave(id, "bob", T0 + 510).await);
    assert_not_found(s.record_leave(id, "dave", T0 + 510).await);
    assert_invalid(s.record_leave(id, "carol", T0 + 299).await, "left_at_ms");
    assert_invalid(
        s.record_join(id, "erin", "Erin", T0 + 50).await,
        "joined_at_ms",
    );

    // Before the end the counts are not known yet.
    let running = s.meeting(id).await.unwrap();
    assert_eq!(running.meeting.peak_participants, None);
    assert_eq!(running.participants.len(), 4);

    assert_invalid(s.end_meeting(id, T0 + 399).await, "ended_at_ms");
    let ended = s.end_meeting(id, T0 + 600).await.unwrap();
    assert_eq!(ended.id, id);
    assert_eq!(ended.ended_at_ms, Some(T0 + 600));
    assert_eq!(ended.peak_participants, Some(3));
    assert_eq!(ended.total_participants, Some(3));
    assert_eq!(s.running_meeting("standup").await.unwrap(), None);

    let detail = s.meeting(id).await.unwrap();
    assert_eq!(detail.meeting, ended);
    let stays: Vec<(&str, &str, i64, Option<i64>)> = detail
        .participants
        .iter()
        .map(|p| {
            (
                p.identity.as_str(),
                p.display_name.as_str(),
                p.joined_at_ms - T0,
                p.left_at_ms.map(|t| t - T0),
            )
        })
        .collect();
    assert_eq!(
        stays,
        vec![
            ("alice", "Alice", 100, Some(300)),
            ("bob", "Bob 🎥", 200, Some(500)),
            ("carol", "Carol", 300, Some(600)),
            ("alice", "Alice (phone)", 400, Some(600)),
        ]
    );

    // An ended meeting takes no more changes.
    assert_conflict(s.end_meeting(id, T0 + 700).await, "ended");
    assert_conflict(s.record_join(id, "dave", "Dave", T0 + 700).await, "ended");
    assert_conflict(s.record_leave(id, "alice", T0 + 700).await, "ended");
    assert_not_found(s.meeting(MeetingId(id.0 + 1000)).await);
    assert_not_found(s.end_meeting(MeetingId(id.0 + 1000), T0).await);
    assert_not_found(s.record_join(MeetingId(-1), "dave", "Dave", T0).await);

    // The next run of the room is a new meeting.
    let next = s.start_meeting("standup", T0 + 1000).await.unwrap();
    assert_ne!(next.id, id);
    let empty = s.end_meeting(next.id, T0 + 1000).await.unwrap();
    assert_eq!(
        (empty.peak_participants, empty.total_participants),
        (Some(0), Some(0))
    );
}

async fn meetings_list_newest_first(db: &Db) {
    let s = &db.storage;
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    s.create_room(&new_room("retro", "xyz-wxyz-xyz"), T0)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let meeting = s.start_meeting("standup", T0 + i * 1000).await.unwrap();
        s.record_join(meeting.id, "alice", "Alice", T0 + i * 1000)
            .await
            .unwrap();
        s.end_meeting(meeting.id, T0 + i * 1000 + 500)
            .await
            .unwrap();
        ids.push(meeting.id);
    }
    let other = s.start_meeting("retro", T0 + 10_000).await.unwrap();

    let listed = s.list_meetings("standup", 3).await.unwrap();
    let listed_ids: Vec<MeetingId> = listed.iter().map(|m| m.id).collect();
    assert_eq!(listed_ids, vec![ids[4], ids[3], ids[2]]);
    assert!(listed.iter().all(|m| m.room == "standup"
        && m.peak_participants == Some(1)
        && m.total_participants == Some(1)));
    assert_eq!(s.list_meetings("standup", 500).await.unwrap().len(), 5);
    let retro = s.list_meetings("retro", 10).await.unwrap();
    assert_eq!(retro.len(), 1);
    assert_eq!(retro[0].id, other.id);
    assert_eq!(retro[0].ended_at_ms, None);
    assert_not_found(s.list_meetings("nowhere", 10).await);
    assert_invalid(s.list_meetings("standup", 0).await, "limit");
}

async fn deleting_a_room_deletes_its_history(db: &Db) {
    let s = &db.storage;
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    let meeting = s.start_meeting("standup", T0).await.unwrap();
    s.record_join(meeting.id, "alice", "Alice", T0)
        .await
        .unwrap();
    s.delete_room("standup").await.unwrap();
    assert_not_found(s.meeting(meeting.id).await);
    let mut raw = db.raw().await;
    for table in ["meetings", "meeting_participants"] {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut raw)
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table}");
    }
    // A new room with the same name starts with an empty history.
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    assert!(s.list_meetings("standup", 10).await.unwrap().is_empty());
}

async fn joins_racing_the_end_leave_no_open_stay(db: &Db) {
    let s = &db.storage;
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    let identities: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
    // Several rounds: on PostgreSQL the joins and the end run on separate connections, and a
    // join that slipped past the end would leave a stay open in an ended meeting.
    for round in 0..8 {
        let t = T0 + round * 1000;
        let meeting = s.start_meeting("standup", t).await.unwrap();
        let joins = identities
            .iter()
            .map(|identity| async move { s.record_join(meeting.id, identity, "", t + 10).await });
        let end = async { s.end_meeting(meeting.id, t + 20).await };
        let (joined, ended) =
            futures_util::future::join(futures_util::future::join_all(joins), end).await;
        let ended = ended.unwrap();
        let mut admitted = 0;
        for result in joined {
            match result {
                Ok(()) => admitted += 1,
                Err(StorageError::Conflict { what }) => assert!(what.contains("ended"), "{what}"),
                Err(other) => panic!("{other:?}"),
            }
        }
        let detail = s.meeting(meeting.id).await.unwrap();
        assert_eq!(detail.participants.len(), admitted);
        assert!(
            detail
                .participants
                .iter()
                .all(|p| p.left_at_ms == Some(t + 20)),
            "round {round}: a stay is open in an ended meeting"
        );
        let admitted = u32::try_from(admitted).unwrap();
        assert_eq!(ended.total_participants, Some(admitted));
        assert_eq!(ended.peak_participants, Some(admitted));
    }
}

async fn host_session_authenticates_until_expiry_or_revocation(db: &Db) {
    let s = &db.storage;
    let ttl = 3_600_000;
    let first = s.create_host_session("alice", ttl, T0).await.unwrap();
    let token = first.token.as_str();
    assert_eq!(token.len(), 64);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(first.session.subject, "alice");
    assert_eq!(first.session.expires_at_ms, T0 + ttl);

    let session = s.authenticate_host_session(token, T0).await.unwrap();
    assert_eq!(session, first.session);
    s.authenticate_host_session(token, T0 + ttl - 1)
        .await
        .unwrap();
    assert_refused(
        s.authenticate_host_session(token, T0 + ttl).await,
        SessionRefusal::Expired,
    );

    // A second session of the same subject has its own token; revoking one keeps the other.
    let second = s.create_host_session("alice", ttl, T0).await.unwrap();
    assert_ne!(second.token, first.token);
    assert!(s.revoke_host_session(token, T0 + 10).await.unwrap());
    assert!(!s.revoke_host_session(token, T0 + 11).await.unwrap());
    assert_refused(
        s.authenticate_host_session(token, T0 + 20).await,
        SessionRefusal::Revoked,
    );
    s.authenticate_host_session(second.token.as_str(), T0 + 20)
        .await
        .unwrap();

    // Sign out everywhere reaches only that subject.
    let third = s.create_host_session("alice", ttl, T0).await.unwrap();
    let bob = s.create_host_session("bob", ttl, T0).await.unwrap();
    assert_eq!(
        s.revoke_host_sessions_of("alice", T0 + 30).await.unwrap(),
        2
    );
    for token in [&second.token, &third.token] {
        assert_refused(
            s.authenticate_host_session(token.as_str(), T0 + 40).await,
            SessionRefusal::Revoked,
        );
    }
    s.authenticate_host_session(bob.token.as_str(), T0 + 40)
        .await
        .unwrap();

    // Tokens we never issued, or no longer keep.
    let mut forged = bob.token.as_str().to_owned();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(63.., last);
    assert_refused(
        s.authenticate_host_session(&forged, T0 + 40).await,
        SessionRefusal::Unknown,
    );
    assert_eq!(s.purge_expired_host_sessions(T0 + 40).await.unwrap(), 3);
    assert_refused(
        s.authenticate_host_session(token, T0 + 40).await,
        SessionRefusal::Unknown,
    );
    s.authenticate_host_session(bob.token.as_str(), T0 + 40)
        .await
        .unwrap();
    assert_eq!(s.purge_expired_host_sessions(T0 + ttl).await.unwrap(), 1);
    assert_refused(
        s.authenticate_host_session(bob.token.as_str(), T0).await,
        SessionRefusal::Unknown,
    );
}

/// Every value of every column of every table, as text.
async fn dump_every_value(db: &Db) -> Vec<(String, String, String)> {
    let mut raw = db.raw().await;
    let (columns_sql, value_sql): (&str, fn(&str, &str) -> String) = match db.storage.backend() {
        Backend::Sqlite => (
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid",
            |t, c| format!("SELECT quote(\"{c}\") AS v FROM \"{t}\""),
        ),
        Backend::Postgres => (
            "SELECT CAST(table_name AS TEXT) AS t, CAST(column_name AS TEXT) AS c \
             FROM information_schema.columns WHERE table_schema = 'public' \
             ORDER BY table_name, ordinal_position",
            |t, c| format!("SELECT CAST(\"{c}\" AS TEXT) AS v FROM \"{t}\""),
        ),
    };
    let columns: Vec<(String, String)> = sqlx::query(columns_sql)
        .fetch_all(&mut raw)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("t"), row.get("c")))
        .collect();
    let mut values = Vec::new();
    for (table, column) in columns {
        let rows = sqlx::query(AssertSqlSafe(value_sql(&table, &column)))
            .fetch_all(&mut raw)
            .await
            .unwrap();
        for row in rows {
            let value: Option<String> = row.get("v");
            values.push((table.clone(), column.clone(), value.unwrap_or_default()));
        }
    }
    values
}

/// The strings a thief could try from one dumped value: as is, unquoted, and a blob's hex.
fn candidate_tokens(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned(), value.to_lowercase()];
    out.push(value.trim_matches('\'').to_owned());
    let blob_hex = value
        .strip_prefix("X'")
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| value.strip_prefix("\\x"));
    if let Some(hex) = blob_hex {
        out.push(hex.to_owned());
        out.push(hex.to_lowercase());
    }
    out
}

async fn no_stored_value_authenticates(db: &Db) {
    let s = &db.storage;
    // Rows in every table, so the dump covers them all.
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    let meeting = s.start_meeting("standup", T0).await.unwrap();
    s.record_join(meeting.id, "alice", "Alice", T0)
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for subject in ["alice", "alice", "bob"] {
        let new = s.create_host_session(subject, 3_600_000, T0).await.unwrap();
        tokens.push(new.token.into_string());
    }
    for token in &tokens {
        s.authenticate_host_session(token, T0 + 1).await.unwrap();
    }

    let dump = dump_every_value(db).await;
    let tables: std::collections::HashSet<&str> =
        dump.iter().map(|(table, _, _)| table.as_str()).collect();
    for table in ["rooms", "meetings", "meeting_participants", "host_sessions"] {
        assert!(tables.contains(table), "{table} missing from the dump");
    }

    let mut tried = 0;
    for (table, column, value) in &dump {
        for token in &tokens {
            assert!(
                !value.to_lowercase().contains(token),
                "{table}.{column} holds a raw token"
            );
        }
        for candidate in candidate_tokens(value) {
            tried += 1;
            assert!(
                matches!(
                    s.authenticate_host_session(&candidate, T0 + 1).await,
                    Err(StorageError::Unauthenticated { .. })
                ),
                "{table}.{column} value {value:?} authenticates"
            );
        }
    }
    // The dump did see the hashes: each token's SHA-256 is one of the values.
    for token in &tokens {
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&token[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let hash_hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            dump.iter()
                .any(|(table, column, value)| table == "host_sessions"
                    && column == "token_sha256"
                    && candidate_tokens(value).contains(&hash_hex)),
            "the dump does not show a stored hash"
        );
        // A hash is shaped like a token and still does not authenticate.
        assert_refused(
            s.authenticate_host_session(&hash_hex, T0 + 1).await,
            SessionRefusal::Unknown,
        );
    }
    assert!(tried > 50, "only {tried} candidates tried");
    eprintln!(
        "{:?}: tried {tried} candidates from {} stored values",
        db.storage.backend(),
        dump.len()
    );
}

async fn failed_end_of_meeting_writes_nothing(db: &Db) {
    let s = &db.storage;
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    let meeting = s.start_meeting("standup", T0).await.unwrap();
    s.record_join(meeting.id, "alice", "Alice", T0 + 10)
        .await
        .unwrap();
    s.record_join(meeting.id, "bob", "Bob", T0 + 20)
        .await
        .unwrap();
    let before = s.meeting(meeting.id).await.unwrap();

    // Make the last write of `end_meeting` (the counts) fail inside the database, after the
    // stays have been closed and the end time set in the same transaction.
    let mut raw = db.raw().await;
    let (inject, remove) = match db.storage.backend() {
        Backend::Sqlite => (
            "CREATE TRIGGER refuse_counts BEFORE UPDATE OF peak_participants ON meetings \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            "DROP TRIGGER refuse_counts",
        ),
        Backend::Postgres => (
            "CREATE FUNCTION refuse_counts() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
             CREATE TRIGGER refuse_counts BEFORE UPDATE OF peak_participants ON meetings \
             FOR EACH ROW EXECUTE FUNCTION refuse_counts()",
            "DROP TRIGGER refuse_counts ON meetings",
        ),
    };
    sqlx::raw_sql(AssertSqlSafe(inject))
        .execute(&mut raw)
        .await
        .unwrap();

    match s.end_meeting(meeting.id, T0 + 100).await {
        Err(StorageError::Backend(message)) => {
            assert!(message.contains("injected failure"), "{message}")
        }
        other => panic!("expected the injected failure, got {other:?}"),
    }
    // Nothing of it stayed: the meeting runs, both stays are open.
    let after = s.meeting(meeting.id).await.unwrap();
    assert_eq!(after, before);
    assert!(after.participants.iter().all(|p| p.left_at_ms.is_none()));
    assert_eq!(after.meeting.ended_at_ms, None);
    assert_eq!(
        s.running_meeting("standup").await.unwrap().map(|m| m.id),
        Some(meeting.id)
    );

    sqlx::raw_sql(AssertSqlSafe(remove))
        .execute(&mut raw)
        .await
        .unwrap();
    let ended = s.end_meeting(meeting.id, T0 + 100).await.unwrap();
    assert_eq!(
        (ended.peak_participants, ended.total_participants),
        (Some(2), Some(2))
    );
}

async fn malformed_and_oversized_input_is_invalid(db: &Db) {
    let s = &db.storage;
    let huge = "x".repeat(100_000);
    for name in [
        "",
        "../etc/passwd",
        "a/b",
        "a\0b",
        ".hidden",
        "sp ace",
        huge.as_str(),
    ] {
        assert_invalid(
            s.create_room(&new_room(name, "abc-defg-hij"), T0).await,
            "name",
        );
        assert_invalid(s.room_by_name(name).await, "name");
        assert_invalid(s.delete_room(name).await, "name");
        assert_invalid(s.start_meeting(name, T0).await, "room");
    }
    for code in [
        "",
        "ABC-DEFG-HIJ",
        "abc defg",
        "-abc",
        "../x",
        huge.as_str(),
    ] {
        assert_invalid(
            s.create_room(&new_room("standup", code), T0).await,
            "meeting_code",
        );
        assert_invalid(s.room_by_meeting_code(code).await, "meeting_code");
    }
    let mut room = new_room("standup", "abc-defg-hij");
    room.metadata = "x".repeat(MAX_METADATA + 1);
    assert_invalid(s.create_room(&room, T0).await, "metadata");
    room.metadata = "nul\0inside".into();
    assert_invalid(s.create_room(&room, T0).await, "metadata");
    room.metadata = String::new();
    room.max_participants = 0;
    assert_invalid(s.create_room(&room, T0).await, "max_participants");
    room.max_participants = 1_000_000;
    assert_invalid(s.create_room(&room, T0).await, "max_participants");
    room.max_participants = 10;
    room.empty_timeout_secs = u32::MAX;
    assert_invalid(s.create_room(&room, T0).await, "empty_timeout_secs");
    // None of those wrote anything.
    assert!(s.list_rooms(None, 10).await.unwrap().rooms.is_empty());

    room.empty_timeout_secs = 60;
    s.create_room(&room, T0).await.unwrap();
    let update = RoomUpdate {
        max_participants: Some(7),
        metadata: Some(huge.clone()),
        ..RoomUpdate::default()
    };
    assert_invalid(s.update_room("standup", &update, T0 + 1).await, "metadata");
    assert_eq!(
        s.room_by_name("standup").await.unwrap().max_participants,
        10
    );
    assert_invalid(s.list_rooms(Some("../x"), 10).await, "cursor");

    let meeting = s.start_meeting("standup", T0).await.unwrap();
    assert_invalid(
        s.record_join(meeting.id, "bad identity", "Name", T0).await,
        "identity",
    );
    assert_invalid(
        s.record_join(meeting.id, &huge, "Name", T0).await,
        "identity",
    );
    assert_invalid(
        s.record_join(meeting.id, "alice", "line\nbreak", T0).await,
        "display_name",
    );
    assert_invalid(
        s.record_join(meeting.id, "alice", &"é".repeat(129), T0)
            .await,
        "display_name",
    );
    assert_invalid(s.record_leave(meeting.id, "a/b", T0).await, "identity");
    assert!(s.meeting(meeting.id).await.unwrap().participants.is_empty());

    assert_invalid(
        s.create_host_session("bad subject", 1000, T0).await,
        "subject",
    );
    assert_invalid(s.create_host_session("alice", 0, T0).await, "ttl_ms");
    assert_invalid(s.create_host_session("alice", -5, T0).await, "ttl_ms");
    assert_invalid(s.create_host_session("alice", i64::MAX, T0).await, "ttl_ms");
    assert_invalid(
        s.create_host_session("alice", 1000, i64::MAX - 10).await,
        "now_ms",
    );
    assert_invalid(s.revoke_host_sessions_of("../x", T0).await, "subject");
    for token in [
        "",
        "short",
        &"A".repeat(64),
        &"g".repeat(64),
        &huge,
        &"é".repeat(32),
    ] {
        assert_refused(
            s.authenticate_host_session(token, T0).await,
            SessionRefusal::Malformed,
        );
        assert!(!s.revoke_host_session(token, T0).await.unwrap());
    }
}

async fn data_survives_a_reconnect(db: &Db) {
    let s = &db.storage;
    s.create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    let meeting = s.start_meeting("standup", T0).await.unwrap();
    s.record_join(meeting.id, "alice", "Alice", T0)
        .await
        .unwrap();
    let session = s.create_host_session("alice", 60_000, T0).await.unwrap();

    // A second handle runs the migrations again (a no-op) and sees everything.
    let again = Storage::connect(&db.url).await.unwrap();
    assert_eq!(
        again
            .room_by_meeting_code("abc-defg-hij")
            .await
            .unwrap()
            .name,
        "standup"
    );
    assert_eq!(
        again
            .running_meeting("standup")
            .await
            .unwrap()
            .map(|m| m.id),
        Some(meeting.id)
    );
    assert_eq!(
        again
            .authenticate_host_session(session.token.as_str(), T0 + 1)
            .await
            .unwrap(),
        session.session
    );
    again.close().await;
}

#[tokio::test]
async fn in_memory_sqlite_works_and_is_private() {
    let first = Storage::connect("sqlite::memory:").await.unwrap();
    let second = Storage::connect("sqlite::memory:").await.unwrap();
    first
        .create_room(&new_room("standup", "abc-defg-hij"), T0)
        .await
        .unwrap();
    // The one pooled connection keeps the database alive across calls and clones.
    let clone = first.clone();
    assert_eq!(clone.room_by_name("standup").await.unwrap().name, "standup");
    assert_not_found(second.room_by_name("standup").await);
}

#[tokio::test]
async fn bad_database_urls_are_typed_errors() {
    for url in [
        "mysql://u@localhost/db",
        "",
        "/var/lib/sfu.db",
        "file:sfu.db",
    ] {
        assert_invalid(Storage::connect(url).await.map(|_| ()), "database url");
    }
    let missing_dir = std::env::temp_dir()
        .join(unique_name("no_such_dir"))
        .join("sfu.db");
    let result = Storage::connect(&format!("sqlite://{}", missing_dir.display())).await;
    assert!(
        matches!(result, Err(StorageError::Backend(_))),
        "{:?}",
        result.map(|_| ())
    );
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:5432/sfu_test", "x"),
        "postgres://u:p@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

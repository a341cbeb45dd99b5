//! Rooms and meetings over real WebSockets and a real SQLite database: a room opens only if
//! it is stored or the token may create it, a stored room's limits apply, every run is
//! recorded with its participants, a restart carries on the running meeting, a database that
//! fails does not break a live meeting, and a room deleted while live closes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use signaling::access_token::Grants;
use signaling::storage::{MeetingId, Storage};

#[tokio::test]
async fn a_room_opens_only_if_stored_or_with_room_create() {
    let s = start().await;
    let mut ws = connect(&s.url).await;
    send(&mut ws, json!({"type":"join","id":1,"token":token("nowhere","a",Grants::participant()),"protocol":1})).await;
    let e = answer(&mut ws, 1).await;
    assert_eq!(e["code"], "room_not_found", "{e}");
    assert!(
        s.storage.room_by_name("nowhere").await.is_err(),
        "nothing stored"
    );
    assert!(s.rooms.list_rooms().await.is_empty(), "no room live");
    // The session survives: a token that may create the room opens it, and it is stored with
    // a meeting code the joiner is told.
    send(
        &mut ws,
        json!({"type":"join","id":2,"token":token("nowhere","a",creator()),"protocol":1}),
    )
    .await;
    let j = answer(&mut ws, 2).await;
    assert_eq!(j["type"], "joined", "{j}");
    let stored = s.storage.room_by_name("nowhere").await.unwrap();
    assert_eq!(j["meeting_code"], stored.meeting_code);
    assert_eq!(j["grants"]["room_create"], true);
    // Now that it exists, a plain participant may join.
    let (_b, _) = join(&s.url, &token("nowhere", "b", Grants::participant())).await;
    // A stored room needs no room_create.
    store_room(&s.storage, "stored", 10).await;
    let (_c, _) = join(&s.url, &token("stored", "c", Grants::participant())).await;
}

#[tokio::test]
async fn stored_limits_apply_and_an_update_is_honoured_live() {
    let s = start().await;
    store_room(&s.storage, "small", 1).await;
    let (_a, _) = join(&s.url, &token("small", "a", Grants::participant())).await;
    let mut b = connect(&s.url).await;
    send(
        &mut b,
        json!({"type":"join","id":1,"token":token("small","b",Grants::participant()),"protocol":1}),
    )
    .await;
    assert_eq!(answer(&mut b, 1).await["code"], "room_full");
    let update = signaling::storage::RoomUpdate {
        max_participants: Some(2),
        ..Default::default()
    };
    s.storage.update_room("small", &update, 1).await.unwrap();
    s.rooms.room_updated("small").await;
    assert_eq!(
        s.rooms.room_info("small").await.unwrap().max_participants,
        2
    );
    let (_b, _) = join(&s.url, &token("small", "b", Grants::participant())).await;
}

async fn meetings_of(storage: &Storage, room: &str) -> Vec<signaling::storage::Meeting> {
    storage.list_meetings(room, 100).await.unwrap_or_default()
}

#[tokio::test]
async fn each_run_of_a_room_is_a_recorded_meeting() {
    let s = start().await;
    store_room(&s.storage, "standup", 10).await;
    let (mut a, _) = join(&s.url, &token("standup", "alice", Grants::participant())).await;
    let (mut b, _) = join(&s.url, &token("standup", "bob", Grants::participant())).await;
    // Bob in a second tab: still one identity in the meeting.
    let (mut b2, _) = join(&s.url, &token("standup", "bob", Grants::participant())).await;
    eventually("a running meeting with two present", || async {
        let Some(m) = meetings_of(&s.storage, "standup").await.first().cloned() else {
            return false;
        };
        let d = s.storage.meeting(m.id).await.unwrap();
        d.participants.len() == 2 && d.meeting.ended_at_ms.is_none()
    })
    .await;
    for ws in [&mut a, &mut b, &mut b2] {
        send(ws, json!({"type":"leave","id":9})).await;
        closed(ws).await;
    }
    eventually("the meeting ended", || async {
        meetings_of(&s.storage, "standup")
            .await
            .first()
            .is_some_and(|m| m.ended_at_ms.is_some())
    })
    .await;
    let m = meetings_of(&s.storage, "standup").await.remove(0);
    assert_eq!(m.total_participants, Some(2));
    assert_eq!(m.peak_participants, Some(2));
    let d = s.storage.meeting(m.id).await.unwrap();
    assert!(d.participants.iter().all(|p| p.left_at_ms.is_some()));
    // A second run is a second meeting.
    let (mut c, _) = join(&s.url, &token("standup", "carol", Grants::participant())).await;
    eventually("a second meeting", || async {
        meetings_of(&s.storage, "standup").await.len() == 2
    })
    .await;
    send(&mut c, json!({"type":"leave","id":9})).await;
    closed(&mut c).await;
}

#[tokio::test]
async fn a_meeting_left_running_by_a_restart_is_carried_on() {
    let storage = Storage::connect("sqlite::memory:").await.unwrap();
    store_room(&storage, "r", 10).await;
    // What a crash leaves: a running meeting with someone still "present".
    let before = storage.start_meeting("r", 1_000).await.unwrap();
    storage
        .record_join(before.id, "alice", "Alice", 1_001)
        .await
        .unwrap();
    let s = start_with(storage, None).await;
    let (mut a, _) = join(&s.url, &token("r", "alice", Grants::participant())).await;
    send(&mut a, json!({"type":"leave","id":9})).await;
    closed(&mut a).await;
    eventually("the same meeting ended", || async {
        s.storage
            .meeting(before.id)
            .await
            .is_ok_and(|d| d.meeting.ended_at_ms.is_some())
    })
    .await;
    let all = meetings_of(&s.storage, "r").await;
    assert_eq!(all.len(), 1, "no second meeting: {all:?}");
    let d = s.storage.meeting(MeetingId(before.id.0)).await.unwrap();
    assert_eq!(
        d.participants.len(),
        2,
        "the stale stay was closed, a new one opened"
    );
}

#[tokio::test]
async fn a_failing_database_does_not_break_a_live_meeting() {
    let s = start().await;
    store_room(&s.storage, "r", 10).await;
    let (mut a, _) = join(&s.url, &token("r", "alice", Grants::participant())).await;
    eventually("the meeting started", || async {
        !meetings_of(&s.storage, "r").await.is_empty()
    })
    .await;
    s.storage.close().await;
    let before = s.rooms.storage_failures();
    // Joins, chat and media negotiation go on; the failures are counted.
    let (mut b, _) = join(&s.url, &token("r", "bob", Grants::participant())).await;
    publish(&mut b, 2).await;
    send(&mut a, json!({"type":"chat","id":3,"text":"still here"})).await;
    assert_eq!(answer(&mut a, 3).await["type"], "ok");
    assert_eq!(
        recv_type(&mut b, "chat").await["message"]["text"],
        "still here"
    );
    send(&mut b, json!({"type":"leave","id":4})).await;
    closed(&mut b).await;
    eventually("failures counted", || async {
        s.rooms.storage_failures() > before
    })
    .await;
    send(&mut a, json!({"type":"ping","id":5})).await;
    assert_eq!(answer(&mut a, 5).await["type"], "pong");
}

#[tokio::test]
async fn a_room_deleted_while_live_closes() {
    let s = start().await;
    store_room(&s.storage, "doomed", 10).await;
    let (mut a, _) = join(&s.url, &token("doomed", "alice", Grants::participant())).await;
    s.storage.delete_room("doomed").await.unwrap();
    s.rooms.room_deleted("doomed").await;
    let reason = tokio::time::timeout(Duration::from_secs(1), closed(&mut a))
        .await
        .expect("closed within 1 s");
    assert_eq!(reason.as_deref(), Some("the room was deleted"));
    eventually("the room is gone", || async {
        s.rooms.list_rooms().await.is_empty()
    })
    .await;
    // It does not come back for a token that may not create it.
    let mut b = connect(&s.url).await;
    send(&mut b, json!({"type":"join","id":1,"token":token("doomed","b",Grants::participant()),"protocol":1})).await;
    assert_eq!(answer(&mut b, 1).await["code"], "room_not_found");
}

//! In-meeting chat over real WebSockets: to everyone or to one participant, history for late
//! joiners (private messages only for their two identities), typed errors at the limits, and
//! nothing left when the meeting ends: not in memory (the next meeting starts empty) and not
//! in storage (every table of the SQLite file dumped, and its bytes searched).

mod common;

use common::*;
use serde_json::json;
use signaling::access_token::{Grants, GuestRole};
use signaling::storage::Storage;
use sqlx::{Column, Row};

#[tokio::test]
async fn chat_to_all_and_to_one_with_history_for_late_joiners() {
    let s = start().await;
    store_room(&s.storage, "r", 10).await;
    let (mut a, ja) = join(&s.url, &token("r", "alice", Grants::participant())).await;
    let (mut b, jb) = join(&s.url, &token("r", "bob", Grants::participant())).await;
    let (mut c, _) = join(&s.url, &token("r", "carol", Grants::participant())).await;
    let (a_sid, b_sid) = (
        ja["participant"]["sid"].as_str().unwrap().to_owned(),
        jb["participant"]["sid"].as_str().unwrap().to_owned(),
    );
    send(&mut a, json!({"type":"chat","id":2,"text":"hello all"})).await;
    let echo = recv_type(&mut a, "chat").await;
    assert_eq!(answer(&mut a, 2).await["type"], "ok");
    assert_eq!(echo["message"]["text"], "hello all");
    assert_eq!(echo["message"]["participant"], a_sid);
    assert_eq!(
        echo["message"]["name"], "alice",
        "the name comes from the token"
    );
    for ws in [&mut b, &mut c] {
        assert_eq!(recv_type(ws, "chat").await["message"]["text"], "hello all");
    }
    send(
        &mut a,
        json!({"type":"chat","id":3,"text":"psst bob","to":b_sid}),
    )
    .await;
    assert_eq!(answer(&mut a, 3).await["type"], "ok");
    let private = recv_type(&mut b, "chat").await;
    assert_eq!(private["message"]["text"], "psst bob");
    assert_eq!(private["message"]["to"], b_sid);
    // Carol never sees it: her next chat frame is the one after.
    send(&mut b, json!({"type":"chat","id":4,"text":"public again"})).await;
    assert_eq!(
        recv_type(&mut c, "chat").await["message"]["text"],
        "public again"
    );
    // To a participant who is not there.
    send(
        &mut a,
        json!({"type":"chat","id":5,"text":"x","to":"PA_nobody"}),
    )
    .await;
    assert_eq!(answer(&mut a, 5).await["code"], "unknown_participant");
    // Late joiners get the history they may see, right after `joined`.
    let (mut d, _) = join(&s.url, &token("r", "dave", Grants::participant())).await;
    let h = recv_type(&mut d, "chat_history").await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello all", "public again"]);
    // Bob in a second tab sees the private message too (same identity).
    let (mut b2, _) = join(&s.url, &token("r", "bob", Grants::participant())).await;
    let h = recv_type(&mut b2, "chat_history").await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn chat_needs_publish_data_and_respects_the_limits() {
    let s = start().await;
    let code = store_room(&s.storage, "r", 10).await;
    let (mut viewer, a) =
        join_guest(&s.url, &code, &invitation("r", GuestRole::Viewer), "Vera").await;
    assert_eq!(a["type"], "joined");
    send(&mut viewer, json!({"type":"chat","id":2,"text":"hi"})).await;
    assert_eq!(answer(&mut viewer, 2).await["code"], "permission_denied");
    let (mut a, _) = join(&s.url, &token("r", "alice", Grants::participant())).await;
    let big = "x".repeat(signaling::chat::MAX_CHAT_TEXT + 1);
    send(&mut a, json!({"type":"chat","id":3,"text":big})).await;
    assert_eq!(answer(&mut a, 3).await["code"], "chat_too_long");
    send(&mut a, json!({"type":"chat","id":4,"text":"   "})).await;
    assert_eq!(answer(&mut a, 4).await["code"], "chat_too_long");
    send(&mut a, json!({"type":"chat","id":5,"text":"bell\u{7}"})).await;
    assert_eq!(answer(&mut a, 5).await["code"], "bad_request");
    // The session is still there.
    send(&mut a, json!({"type":"chat","id":6,"text":"fine"})).await;
    assert_eq!(answer(&mut a, 6).await["type"], "ok");
}

#[tokio::test]
async fn a_full_history_is_a_typed_error() {
    let storage = Storage::connect("sqlite::memory:").await.unwrap();
    let (worker, events) =
        sfu_core::driver::WorkerHandle::spawn("127.0.0.1:0".parse().unwrap(), Default::default())
            .unwrap();
    let rooms =
        signaling::room_service::RoomService::new(signaling::room_service::RoomServiceConfig {
            storage: Some(storage.clone()),
            chat: signaling::chat::ChatLimits {
                max_messages: 3,
                ..Default::default()
            },
            ..Default::default()
        });
    let config = signaling::server::SignalingConfig {
        keys: keys(),
        room: signaling::room::RoomSettings {
            service: rooms,
            ..Default::default()
        },
        ..Default::default()
    };
    let server =
        signaling::server::SignalingServer::new(config, std::sync::Arc::new(worker), events);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    let (mut a, _) = join(&url, &token("r", "alice", creator())).await;
    for id in 1..=3 {
        send(&mut a, json!({"type":"chat","id":10 + id,"text":"m"})).await;
        assert_eq!(answer(&mut a, 10 + id).await["type"], "ok");
    }
    send(&mut a, json!({"type":"chat","id":20,"text":"one too many"})).await;
    assert_eq!(answer(&mut a, 20).await["code"], "chat_full");
}

#[tokio::test]
async fn chat_is_gone_from_memory_and_storage_when_the_meeting_ends() {
    let dir = std::env::temp_dir().join(format!("sfu-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("rooms.db");
    let _ = std::fs::remove_file(&db);
    let url = format!("sqlite://{}", db.display());
    let storage = Storage::connect(&url).await.unwrap();
    let s = start_with(storage, None).await;
    store_room(&s.storage, "r", 10).await;
    const SECRET_TEXT: &str = "the launch code is ZEBRA-4417";
    let (mut a, _) = join(&s.url, &token("r", "alice", Grants::participant())).await;
    let (mut b, jb) = join(&s.url, &token("r", "bob", Grants::participant())).await;
    send(&mut a, json!({"type":"chat","id":2,"text":SECRET_TEXT})).await;
    assert_eq!(answer(&mut a, 2).await["type"], "ok");
    let b_sid = jb["participant"]["sid"].as_str().unwrap();
    send(
        &mut a,
        json!({"type":"chat","id":3,"text":format!("private {SECRET_TEXT}"),"to":b_sid}),
    )
    .await;
    assert_eq!(answer(&mut a, 3).await["type"], "ok");
    // While the meeting runs, a late joiner gets it.
    let (mut c, _) = join(&s.url, &token("r", "carol", Grants::participant())).await;
    recv_type(&mut c, "chat_history").await;
    for ws in [&mut a, &mut b, &mut c] {
        send(ws, json!({"type":"leave","id":9})).await;
        closed(ws).await;
    }
    eventually("the meeting ended", || async {
        s.storage
            .list_meetings("r", 10)
            .await
            .is_ok_and(|m| m.len() == 1 && m[0].ended_at_ms.is_some())
    })
    .await;
    // Memory: the next meeting of the room starts with no history at all.
    let (mut d, _) = join(&s.url, &token("r", "alice", Grants::participant())).await;
    send(&mut d, json!({"type":"ping","id":4})).await;
    loop {
        let v = recv(&mut d).await.unwrap();
        assert_ne!(v["type"], "chat_history", "{v}");
        if v["id"] == 4 {
            break;
        }
    }
    // Storage: no table holds the text, in any column.
    let tables: Vec<String> =
        sqlx::query_scalar::<_, String>("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&sqlx::SqlitePool::connect(&url).await.unwrap())
            .await
            .unwrap();
    assert!(tables.iter().any(|t| t == "meetings"), "{tables:?}");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut cells = 0;
    for table in &tables {
        // The table names come from sqlite_master, not from input.
        let sql = sqlx::AssertSqlSafe(format!("SELECT * FROM \"{table}\""));
        for row in sqlx::query(sql).fetch_all(&pool).await.unwrap() {
            for (i, column) in row.columns().iter().enumerate() {
                cells += 1;
                let text: Option<String> = row.try_get(i).ok().flatten();
                assert!(
                    !text.unwrap_or_default().contains("ZEBRA"),
                    "chat text in {table}.{}",
                    column.name()
                );
            }
        }
    }
    assert!(cells > 10, "the dump read the meeting rows ({cells} cells)");
    // And not in the file's bytes either (free pages included).
    s.storage.close().await;
    pool.close().await;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(5).any(|w| w == b"ZEBRA"),
            "chat text in the database files"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

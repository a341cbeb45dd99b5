//! Guests over real WebSockets: a meeting code and an invitation admit a guest to exactly the
//! invited room with exactly the role's grants and the name it typed; anything else is a typed
//! error that closes the connection; the room's participant limit holds for guests too.

mod common;

use common::*;
use serde_json::json;
use signaling::access_token::{Grants, GuestRole};

#[tokio::test]
async fn a_guest_joins_with_the_roles_grants_and_its_own_name() {
    let s = start().await;
    let code = store_room(&s.storage, "standup", 10).await;
    let (mut host, _) = join(&s.url, &token("standup", "host", admin())).await;
    // Typed loosely: upper case, spaces, no dashes.
    let typed = format!(" {} ", code.to_uppercase().replace('-', ""));
    let (mut guest, j) = join_guest(
        &s.url,
        &typed,
        &invitation("standup", GuestRole::Viewer),
        "  Zoë  ",
    )
    .await;
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["room"], "standup");
    assert_eq!(j["participant"]["name"], "Zoë");
    assert!(
        j["participant"]["identity"]
            .as_str()
            .unwrap()
            .starts_with("guest-")
    );
    assert_eq!(
        j["grants"],
        json!({"join":true,"publish":false,"subscribe":true,"publish_data":false,
               "room_admin":false,"room_create":false,"hidden":false,"recorder":false})
    );
    let seen = recv_type(&mut host, "participant_joined").await;
    assert_eq!(seen["participant"]["name"], "Zoë");
    // A viewer cannot publish.
    send(&mut guest, json!({"type":"publish","id":2,"sdp":OFFER})).await;
    assert_eq!(answer(&mut guest, 2).await["code"], "permission_denied");
    // A speaker can.
    let (mut speaker, j) = join_guest(
        &s.url,
        &code,
        &invitation("standup", GuestRole::Speaker),
        "Sam",
    )
    .await;
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(publish(&mut speaker, 2).await.len(), 2);
    let details = s.rooms.list_participants("standup").await.unwrap();
    let sam = details.iter().find(|p| p.name == "Sam").unwrap();
    assert_eq!(sam.grants, GuestRole::Speaker.grants());
    assert_eq!(sam.tracks.len(), 2);
}

#[tokio::test]
async fn bad_guest_joins_are_typed_errors_that_close_the_connection() {
    let s = start().await;
    let code = store_room(&s.storage, "standup", 10).await;
    store_room(&s.storage, "other", 10).await;
    let viewer = invitation("standup", GuestRole::Viewer);
    let cases = [
        (
            "bbb-bbbb-bbb".to_owned(),
            viewer.clone(),
            "Ann",
            "room_not_found",
        ),
        (
            "not a code!".to_owned(),
            viewer.clone(),
            "Ann",
            "bad_request",
        ),
        (
            code.clone(),
            invitation("other", GuestRole::Viewer),
            "Ann",
            "invalid_token",
        ),
        (
            code.clone(),
            token("standup", "x", Grants::participant()),
            "Ann",
            "invalid_token",
        ),
        (code.clone(), "garbage".to_owned(), "Ann", "invalid_token"),
        (code.clone(), viewer.clone(), "   ", "bad_request"),
        (code.clone(), viewer.clone(), "evil\nname", "bad_request"),
    ];
    for (code, inv, name, expected) in cases {
        let (mut ws, a) = join_guest(&s.url, &code, &inv, name).await;
        assert_eq!(a["code"], expected, "{code} {name:?}: {a}");
        closed(&mut ws).await;
    }
    assert!(s.rooms.list_rooms().await.is_empty(), "no room opened");
}

#[tokio::test]
async fn the_participant_limit_holds_for_guests() {
    let s = start().await;
    let code = store_room(&s.storage, "tiny", 2).await;
    let inv = invitation("tiny", GuestRole::Speaker);
    let (_a, j) = join_guest(&s.url, &code, &inv, "A").await;
    assert_eq!(j["type"], "joined");
    let (_b, j) = join_guest(&s.url, &code, &inv, "B").await;
    assert_eq!(j["type"], "joined");
    let (mut c, j) = join_guest(&s.url, &code, &inv, "C").await;
    assert_eq!(j["code"], "room_full");
    closed(&mut c).await;
    assert_eq!(s.rooms.list_participants("tiny").await.unwrap().len(), 2);
}

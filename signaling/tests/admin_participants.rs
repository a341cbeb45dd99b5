//! The admin API's live-participant endpoints against a real signaling server: a worker, rooms
//! as actors, participants over real WebSockets, and the admin API on its own port over the
//! same room service. Every reply is checked against the OpenAPI document (`admin_support`).
//!
//! Revocation through the API takes effect within a second: a removed participant's socket
//! closes and its old token cannot rejoin; a participant whose `publish` grant is taken away
//! has its tracks ended.

mod admin_support;
mod common;

use std::time::{Duration, Instant};

use admin_support::{Api, Auth, Body, Db, assert_error};
use serde_json::{Value, json};
use signaling::access_token::Grants;
use signaling::admin_api::AdminApi;

const ONE_SECOND: Duration = Duration::from_secs(1);

const PARTICIPANT: &str = "/api/v1/rooms/{name}/participants/{identity}";
const PARTICIPANTS: &str = "/api/v1/rooms/{name}/participants";
const MUTE: &str = "/api/v1/rooms/{name}/participants/{identity}/tracks/{track}/mute";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let db = Db::sqlite().await;
    live_participants_through_the_api(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    if let Some(db) = Db::postgres().await {
        live_participants_through_the_api(&db).await;
        db.finish().await;
    }
}

fn identities(reply: &Value) -> Vec<String> {
    let mut ids: Vec<String> = reply["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identity"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn live_participants_through_the_api(db: &Db) {
    let s = common::start_with(db.storage.clone(), None).await;
    let api = Api::serve(
        AdminApi::with_rooms(common::keys(), s.rooms.clone()).router(),
        common::keys(),
    )
    .await;
    let full = api.full();
    common::store_room(&s.storage, "standup", 10).await;
    common::store_room(&s.storage, "empty", 10).await;

    // The signaling server mounts the same API on its own router, over the same rooms.
    let mounted = s
        .url
        .replace("ws://", "http://")
        .replace("/ws", "/api/v1/rooms/standup");
    let Auth::Bearer(token) = &full else {
        unreachable!()
    };
    let response = api
        .http
        .get(&mounted)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{mounted}");
    let room: Value = response.json().await.unwrap();
    assert_eq!(room["name"], "standup");

    let alice_token = common::token("standup", "alice", Grants::participant());
    let (mut alice, _) = common::join(&s.url, &alice_token).await;
    let tracks = common::publish(&mut alice, 2).await;
    let bob_token = common::token("standup", "bob", Grants::participant());
    let (mut bob, _) = common::join(&s.url, &bob_token).await;

    // List: the live room has both; a stored room nobody is in has none; an unknown room is 404.
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANTS),
            "/api/v1/rooms/standup/participants",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(identities(reply.json()), ["alice", "bob"]);
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANTS),
            "/api/v1/rooms/empty/participants",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (200, &json!({"participants": []}))
    );
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANTS),
            "/api/v1/rooms/nosuch/participants",
            &full,
            Body::None,
        )
        .await;
    assert_error(&reply, 404, "room_not_found", "unknown room");

    // Get, with stats.
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANT),
            "/api/v1/rooms/standup/participants/alice",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let alice_view = reply.json();
    assert_eq!(alice_view["participant"]["identity"], "alice");
    assert_eq!(
        alice_view["participant"]["tracks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(alice_view["stats"]["sid"], alice_view["participant"]["sid"]);
    assert!(
        alice_view["stats"]["publish"].is_object(),
        "alice published"
    );
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANT),
            "/api/v1/rooms/standup/participants/carol",
            &full,
            Body::None,
        )
        .await;
    assert_error(&reply, 404, "participant_not_found", "unknown identity");

    // Mute one of alice's tracks: bob is told, the listing shows it.
    let track = &tracks[0];
    let reply = api
        .call(
            "POST",
            Some(MUTE),
            &format!("/api/v1/rooms/standup/participants/alice/tracks/{track}/mute"),
            &full,
            Body::Json(json!({"muted": true})),
        )
        .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let muted = common::recv_type(&mut bob, "track_muted").await;
    assert_eq!(muted["track"], track.as_str(), "{muted}");
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANT),
            "/api/v1/rooms/standup/participants/alice",
            &full,
            Body::None,
        )
        .await;
    let shown = reply.json()["participant"]["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == track.as_str())
        .unwrap()
        .clone();
    assert_eq!(shown["muted"], true);
    let reply = api
        .call(
            "POST",
            Some(MUTE),
            "/api/v1/rooms/standup/participants/alice/tracks/TR_nosuch/mute",
            &full,
            Body::Json(json!({"muted": true})),
        )
        .await;
    assert_error(&reply, 404, "track_not_found", "unknown track");

    // Grants: no widening beyond the caller, join is required, a downgrade ends alice's media
    // within a second.
    let scoped_host = Auth::Bearer(api.admin(
        Some("standup"),
        Grants {
            room_admin: true,
            ..Grants::participant()
        },
    ));
    let patch = |auth: Auth, grants: Value| {
        let api = &api;
        async move {
            api.call(
                "PATCH",
                Some(PARTICIPANT),
                "/api/v1/rooms/standup/participants/alice",
                &auth,
                Body::Json(json!({ "grants": grants })),
            )
            .await
        }
    };
    let reply = patch(scoped_host.clone(), json!({"join": true, "recorder": true})).await;
    assert_error(&reply, 403, "missing_grant", "recorder beyond the host");
    let reply = patch(full.clone(), json!({"subscribe": true})).await;
    assert_error(&reply, 422, "invalid_field", "no join");
    let reply = patch(full.clone(), json!({"join": true, "publsh": true})).await;
    assert_error(&reply, 422, "invalid_body", "misspelt grant");
    let t0 = Instant::now();
    let reply = patch(
        scoped_host.clone(),
        json!({"join": true, "subscribe": true, "publish_data": true}),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["grants"]["publish"], false);
    assert_eq!(reply.json()["tracks"], json!([]));
    tokio::time::timeout(ONE_SECOND, async {
        common::recv_type(&mut bob, "track_unpublished").await;
        common::recv_type(&mut bob, "track_unpublished").await;
    })
    .await
    .expect("alice's tracks ended within 1 s of the PATCH");
    let downgrade_ms = t0.elapsed().as_millis();
    let changed = common::recv_type(&mut alice, "grants_changed").await;
    assert_eq!(changed["grants"]["publish"], false);

    // Remove bob: his socket closes within a second and his old token cannot rejoin.
    let t0 = Instant::now();
    let reply = api
        .call(
            "DELETE",
            Some(PARTICIPANT),
            "/api/v1/rooms/standup/participants/bob",
            &scoped_host,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let reason = tokio::time::timeout(ONE_SECOND, common::closed(&mut bob))
        .await
        .expect("bob's socket closed within 1 s of the DELETE");
    let remove_ms = t0.elapsed().as_millis();
    assert_eq!(reason.as_deref(), Some("removed from the room"));
    let mut again = common::connect(&s.url).await;
    common::send(
        &mut again,
        json!({"type":"join","id":1,"token":bob_token,"protocol":1}),
    )
    .await;
    assert_eq!(common::answer(&mut again, 1).await["code"], "token_revoked");
    let reply = api
        .call(
            "DELETE",
            Some(PARTICIPANT),
            "/api/v1/rooms/standup/participants/bob",
            &full,
            Body::None,
        )
        .await;
    assert_error(&reply, 404, "participant_not_found", "second removal");
    let reply = api
        .call(
            "GET",
            Some(PARTICIPANTS),
            "/api/v1/rooms/standup/participants",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(identities(reply.json()), ["alice"]);

    // A host of another room reaches nobody here.
    let other_host = Auth::Bearer(api.admin(
        Some("empty"),
        Grants {
            room_admin: true,
            ..Grants::participant()
        },
    ));
    let reply = api
        .call(
            "DELETE",
            Some(PARTICIPANT),
            "/api/v1/rooms/standup/participants/alice",
            &other_host,
            Body::None,
        )
        .await;
    assert_error(&reply, 403, "room_not_in_scope", "host of another room");

    // Deleting the stored room closes the live one.
    let reply = api
        .call(
            "DELETE",
            Some("/api/v1/rooms/{name}"),
            "/api/v1/rooms/standup",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 204);
    let reason = tokio::time::timeout(Duration::from_secs(5), common::closed(&mut alice))
        .await
        .expect("alice's socket closed after the room was deleted");
    assert!(reason.is_some(), "alice was told why");
    eprintln!(
        "{:?}: downgrade ended media in {downgrade_ms} ms, removal closed the socket in {remove_ms} ms",
        db.storage.backend()
    );
}

//! The admin operations of `RoomService` on live rooms over real WebSockets, and revocation:
//! removing a participant or taking a grant away takes effect within a second (socket closed,
//! or the media the grant allowed stopped) and rejoining with the old token fails.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use signaling::access_token::Grants;
use signaling::room_service::RoomServiceError;

const ONE_SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn listing_rooms_and_participants() {
    let s = start().await;
    store_room(&s.storage, "a", 10).await;
    let (_x, jx) = join(&s.url, &token("a", "xena", Grants::participant())).await;
    let (mut y, _) = join(&s.url, &token("b", "yann", creator())).await;
    let tracks = publish(&mut y, 2).await;
    let (_r, _) = join(&s.url, &token("b", "rec", recorder())).await;
    let rooms = s.rooms.list_rooms().await;
    let names: Vec<&str> = rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(rooms[1].participants, 2, "hidden ones count for admins");
    assert_eq!(rooms[1].tracks, 2);
    assert!(rooms[0].meeting_code.is_some() && rooms[0].started_at_ms.is_some());
    let a = s.rooms.list_participants("a").await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].sid, jx["participant"]["sid"]);
    assert_eq!(
        (a[0].identity.as_str(), a[0].name.as_str()),
        ("xena", "xena")
    );
    assert_eq!(a[0].grants, Grants::participant());
    assert!(a[0].joined_at_ms > 0);
    let b = s.rooms.list_participants("b").await.unwrap();
    let yann = b.iter().find(|p| p.identity == "yann").unwrap();
    let mut ids: Vec<String> = yann.tracks.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    let mut want = tracks.clone();
    want.sort();
    assert_eq!(ids, want);
    assert!(b.iter().any(|p| p.identity == "rec" && p.grants.hidden));
    assert!(matches!(
        s.rooms.list_participants("nope").await,
        Err(RoomServiceError::RoomNotLive(_))
    ));
    let stats = s.rooms.participant_stats("b", &yann.sid).await.unwrap();
    assert!(stats.publish.is_some(), "it published");
    assert!(matches!(
        s.rooms.participant_stats("b", "PA_nobody").await,
        Err(RoomServiceError::UnknownParticipant(_))
    ));
}

#[tokio::test]
async fn a_removed_participant_is_cut_within_a_second_and_cannot_rejoin() {
    let s = start().await;
    store_room(&s.storage, "r", 10).await;
    let old = token("r", "mallory", Grants::participant());
    let (mut m, jm) = join(&s.url, &old).await;
    let (mut other, _) = join(&s.url, &token("r", "olga", Grants::participant())).await;
    let sid = jm["participant"]["sid"].as_str().unwrap().to_owned();
    publish(&mut m, 2).await;
    recv_type(&mut other, "track_published").await;
    let t0 = Instant::now();
    s.rooms.remove_participant("r", &sid).await.unwrap();
    let reason = tokio::time::timeout(ONE_SECOND, closed(&mut m))
        .await
        .expect("socket closed within 1 s");
    assert!(t0.elapsed() < ONE_SECOND);
    assert_eq!(reason.as_deref(), Some("removed from the room"));
    // Media stopped for the others: the tracks ended, the participant left.
    recv_type(&mut other, "track_unpublished").await;
    recv_type(&mut other, "participant_left").await;
    // The old token is refused, and so is the identity (until the token's expiry).
    let mut again = connect(&s.url).await;
    send(
        &mut again,
        json!({"type":"join","id":1,"token":old,"protocol":1}),
    )
    .await;
    assert_eq!(answer(&mut again, 1).await["code"], "token_revoked");
    closed(&mut again).await;
    let mut fresh = connect(&s.url).await;
    send(&mut fresh, json!({"type":"join","id":1,"token":token("r","mallory",Grants::participant()),"protocol":1})).await;
    assert_eq!(answer(&mut fresh, 1).await["code"], "token_revoked");
    // Others are not affected.
    let (_n, _) = join(&s.url, &token("r", "nina", Grants::participant())).await;
}

#[tokio::test]
async fn taking_publish_away_stops_the_media_within_a_second() {
    let s = start().await;
    store_room(&s.storage, "r", 10).await;
    let old = token("r", "pat", Grants::participant());
    let (mut p, jp) = join(&s.url, &old).await;
    let (mut viewer, _) = join(&s.url, &token("r", "vic", Grants::participant())).await;
    let sid = jp["participant"]["sid"].as_str().unwrap().to_owned();
    publish(&mut p, 2).await;
    recv_type(&mut viewer, "track_published").await;
    let t0 = Instant::now();
    let downgraded = Grants {
        publish: false,
        ..Grants::participant()
    };
    let details = s.rooms.update_grants("r", &sid, downgraded).await.unwrap();
    assert!(details.tracks.is_empty());
    assert_eq!(details.grants, downgraded);
    tokio::time::timeout(ONE_SECOND, async {
        recv_type(&mut viewer, "track_unpublished").await;
        recv_type(&mut viewer, "track_unpublished").await;
    })
    .await
    .expect("both tracks ended within 1 s");
    assert!(t0.elapsed() < ONE_SECOND);
    let changed = recv_type(&mut p, "grants_changed").await;
    assert_eq!(changed["grants"]["publish"], false);
    let stats = s.rooms.participant_stats("r", &sid).await.unwrap();
    assert!(stats.publish.is_none(), "the publish connection is closed");
    // The session lives on without the grant.
    send(&mut p, json!({"type":"publish","id":3,"sdp":OFFER})).await;
    assert_eq!(answer(&mut p, 3).await["code"], "permission_denied");
    // Rejoining with the old token (which still says publish) fails.
    let mut again = connect(&s.url).await;
    send(
        &mut again,
        json!({"type":"join","id":1,"token":old,"protocol":1}),
    )
    .await;
    assert_eq!(answer(&mut again, 1).await["code"], "token_revoked");
}

#[tokio::test]
async fn taking_subscribe_away_closes_the_consumers() {
    let s = start().await;
    store_room(&s.storage, "r", 10).await;
    let (mut pubr, _) = join(&s.url, &token("r", "pub", Grants::participant())).await;
    publish(&mut pubr, 2).await;
    let (mut sub, js) = join(&s.url, &token("r", "sub", Grants::participant())).await;
    let offer = recv_type(&mut sub, "subscribe_offer").await;
    assert_eq!(offer["tracks"].as_array().unwrap().len(), 2);
    let sid = js["participant"]["sid"].as_str().unwrap();
    let before = s.rooms.participant_stats("r", sid).await.unwrap();
    assert_eq!(before.consumers.len(), 2, "it receives both tracks");
    let no_subscribe = Grants {
        subscribe: false,
        ..Grants::participant()
    };
    let t0 = Instant::now();
    s.rooms.update_grants("r", sid, no_subscribe).await.unwrap();
    // The consumers are closed at once (the next offer, after the client answers this one,
    // maps no track).
    let stats = s.rooms.participant_stats("r", sid).await.unwrap();
    assert!(t0.elapsed() < ONE_SECOND);
    assert!(stats.consumers.is_empty());
    send(
        &mut sub,
        json!({"type":"set_subscription","id":6,"track":"TR_x","paused":true}),
    )
    .await;
    assert_eq!(answer(&mut sub, 6).await["code"], "permission_denied");
}

#[tokio::test]
async fn admins_mute_and_remove_others_and_close_rooms() {
    let s = start().await;
    store_room(&s.storage, "r", 10).await;
    let (mut host, _) = join(&s.url, &token("r", "host", admin())).await;
    let (mut p, jp) = join(&s.url, &token("r", "pia", Grants::participant())).await;
    let sid = jp["participant"]["sid"].as_str().unwrap().to_owned();
    let tracks = publish(&mut p, 2).await;
    // Over the API: the publisher learns it was muted.
    s.rooms
        .mute_track("r", &sid, &tracks[0], true)
        .await
        .unwrap();
    let muted = recv_type(&mut p, "track_muted").await;
    assert_eq!(
        (muted["track"].as_str(), muted["muted"].as_bool()),
        (Some(tracks[0].as_str()), Some(true))
    );
    assert!(matches!(
        s.rooms.mute_track("r", &sid, "TR_nope", true).await,
        Err(RoomServiceError::UnknownTrack(_))
    ));
    // Over signaling: a plain participant may not mute or remove others, an admin may.
    let (mut q, _) = join(&s.url, &token("r", "quinn", Grants::participant())).await;
    send(
        &mut q,
        json!({"type":"mute","id":2,"track":tracks[1],"muted":true}),
    )
    .await;
    assert_eq!(answer(&mut q, 2).await["code"], "permission_denied");
    send(
        &mut q,
        json!({"type":"remove_participant","id":3,"participant":sid}),
    )
    .await;
    assert_eq!(answer(&mut q, 3).await["code"], "permission_denied");
    send(
        &mut host,
        json!({"type":"mute","id":4,"track":tracks[1],"muted":true}),
    )
    .await;
    assert_eq!(answer(&mut host, 4).await["type"], "ok");
    send(
        &mut host,
        json!({"type":"remove_participant","id":5,"participant":"PA_nobody"}),
    )
    .await;
    assert_eq!(answer(&mut host, 5).await["code"], "unknown_participant");
    send(
        &mut host,
        json!({"type":"remove_participant","id":6,"participant":sid}),
    )
    .await;
    assert_eq!(answer(&mut host, 6).await["type"], "ok");
    tokio::time::timeout(ONE_SECOND, closed(&mut p))
        .await
        .expect("removed within 1 s");
    // Closing the room tells everyone.
    s.rooms
        .close_room("r", "the host ended the meeting")
        .await
        .unwrap();
    for ws in [&mut host, &mut q] {
        let reason = tokio::time::timeout(ONE_SECOND, closed(ws)).await.unwrap();
        assert_eq!(reason.as_deref(), Some("the host ended the meeting"));
    }
    eventually("the room is gone", || async {
        s.rooms.list_rooms().await.is_empty()
    })
    .await;
}

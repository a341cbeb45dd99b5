//! The signaling session over a real WebSocket: bad input gets typed errors, tokens are checked,
//! limits hold, and the session survives where it safely can.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sfu_core::driver::WorkerHandle;
use signaling::access_token::{ApiKeys, Grants};
use signaling::server::{SignalingConfig, SignalingServer};
use signaling::session::SessionLimits;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "testkey";
const SECRET: &[u8] = b"test-secret-0123456789abcdef0123";
const OFFER: &str = include_str!("fixtures/chrome-publish-offer.sdp");

fn keys() -> ApiKeys {
    let k = ApiKeys::default();
    k.insert(KEY, SECRET.to_vec());
    k
}

/// A join token; it may open its room (rooms are not stored beforehand in these tests).
fn token(room: &str, identity: &str, grants: Grants) -> String {
    let grants = Grants {
        room_create: true,
        ..grants
    };
    keys()
        .mint(
            KEY,
            identity,
            identity,
            room,
            grants,
            Duration::from_secs(60),
        )
        .unwrap()
}

/// Starts a worker and a signaling server on free ports; returns the WebSocket URL.
async fn start(limits: SessionLimits) -> String {
    start_with_shutdown(limits, std::future::pending()).await
}

async fn start_with_shutdown(
    limits: SessionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> String {
    let (worker, events) =
        WorkerHandle::spawn("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let config = SignalingConfig {
        keys: keys(),
        dev_key: None,
        web_root: None,
        limits,
        room: Default::default(),
    };
    let server = SignalingServer::new(config, Arc::new(worker), events);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, shutdown));
    format!("ws://{addr}/ws")
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON frame, or `None` when the socket closed. Fails the test after 10 s.
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame within 10 s");
        match next {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Receives frames until one of `ty` arrives (others are returned too, for inspection).
async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = recv(ws)
            .await
            .unwrap_or_else(|| panic!("socket closed while waiting for {ty}"));
        if v["type"] == ty {
            return v;
        }
    }
}

async fn expect_error(ws: &mut Ws, code: &str) -> Value {
    let v = recv_type(ws, "error").await;
    assert_eq!(v["code"], code, "{v}");
    v
}

async fn expect_closed(ws: &mut Ws) {
    loop {
        match recv(ws).await {
            None => return,
            Some(v) if v["type"] == "closing" => continue,
            Some(v) => panic!("expected the socket to close, got {v}"),
        }
    }
}

async fn joined(url: &str, room: &str, identity: &str) -> Ws {
    let mut ws = connect(url).await;
    send(&mut ws, json!({"type":"join","id":1,"token":token(room, identity, Grants::participant()),"protocol":1})).await;
    let j = recv_type(&mut ws, "joined").await;
    assert_eq!(j["room"], room);
    assert_eq!(j["participant"]["identity"], identity);
    ws
}

#[tokio::test]
async fn malformed_frames_get_typed_errors_and_the_session_survives() {
    let url = start(SessionLimits::default()).await;
    let mut ws = connect(&url).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    expect_error(&mut ws, "bad_json").await;
    ws.send(Message::Text("[1,2,3]".into())).await.unwrap();
    expect_error(&mut ws, "bad_json").await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    expect_error(&mut ws, "bad_json").await;
    send(&mut ws, json!({"type":"teleport","id":9})).await;
    assert_eq!(expect_error(&mut ws, "unknown_type").await["id"], 9);
    send(&mut ws, json!({"type":"publish","id":10,"sdp":OFFER})).await;
    assert_eq!(expect_error(&mut ws, "not_joined").await["id"], 10);
    send(&mut ws, json!({"type":"join","id":11})).await;
    assert_eq!(expect_error(&mut ws, "bad_request").await["id"], 11);
    // Still alive: ping works, and a proper join succeeds.
    send(&mut ws, json!({"type":"ping","id":12})).await;
    assert_eq!(recv_type(&mut ws, "pong").await["id"], 12);
    send(&mut ws, json!({"type":"join","id":13,"token":token("r1","alice",Grants::participant()),"protocol":1})).await;
    recv_type(&mut ws, "joined").await;
    send(&mut ws, json!({"type":"join","id":14,"token":token("r1","alice",Grants::participant()),"protocol":1})).await;
    expect_error(&mut ws, "already_joined").await;
    send(
        &mut ws,
        json!({"type":"publish","id":15,"sdp":"this is not sdp"}),
    )
    .await;
    assert_eq!(expect_error(&mut ws, "invalid_sdp").await["id"], 15);
    let no_codec: String = OFFER
        .lines()
        .filter(|l| !l.starts_with("a=rtpmap:111") && !l.starts_with("a=fmtp:111"))
        .map(|l| l.replace(" 111 63 9 0 8 13 110 126", " 9 0 8 13 110 126") + "\r\n")
        .collect();
    // Audio with only G.722/PCMU/PCMA: nothing the server forwards.
    let only_pcm: String = no_codec
        .lines()
        .filter(|l| !l.starts_with("a=rtpmap:63"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    send(&mut ws, json!({"type":"publish","id":16,"sdp":only_pcm})).await;
    assert_eq!(expect_error(&mut ws, "no_supported_codec").await["id"], 16);
    send(
        &mut ws,
        json!({"type":"subscribe_answer","id":17,"sdp":OFFER,"version":5}),
    )
    .await;
    expect_error(&mut ws, "out_of_order").await;
    send(
        &mut ws,
        json!({"type":"mute","id":18,"track":"TR_nope","muted":true}),
    )
    .await;
    expect_error(&mut ws, "unknown_track").await;
    // After all that the session still serves: a valid publish gets an answer.
    send(&mut ws, json!({"type":"publish","id":19,"sdp":OFFER,"tracks":[{"mid":"0","source":"microphone"},{"mid":"1","source":"camera"}]})).await;
    let answer = recv_type(&mut ws, "publish_answer").await;
    assert_eq!(answer["id"], 19);
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(
        sdp.contains("a=ice-lite") && sdp.contains("a=setup:passive"),
        "{sdp}"
    );
    assert_eq!(answer["tracks"].as_array().unwrap().len(), 2);
    send(&mut ws, json!({"type":"leave","id":20})).await;
    assert_eq!(recv_type(&mut ws, "ok").await["id"], 20);
    expect_closed(&mut ws).await;
}

#[tokio::test]
async fn oversize_frames_are_refused_and_close_the_session() {
    let url = start(SessionLimits::default()).await;
    let mut ws = connect(&url).await;
    let big = format!(
        r#"{{"type":"ping","id":1,"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    ws.send(Message::Text(big.into())).await.unwrap();
    expect_error(&mut ws, "frame_too_large").await;
    expect_closed(&mut ws).await;
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let url = start(SessionLimits::default()).await;
    // Minted an hour ago for a minute: expired well beyond the verifier's leeway.
    let expired = keys()
        .mint_join(
            "a",
            "A",
            "r",
            Grants::participant(),
            Duration::from_secs(60),
            signaling::access_token::unix_now() - 3600,
        )
        .unwrap();
    let other = ApiKeys::default();
    other.insert(KEY, b"a different secret entirely".to_vec());
    let badly_signed = other
        .mint(
            KEY,
            "a",
            "A",
            "r",
            Grants::participant(),
            Duration::from_secs(60),
        )
        .unwrap();
    for (token, expect) in [
        (expired, "expired"),
        (badly_signed, "does not verify"),
        ("garbage".to_owned(), "does not verify"),
    ] {
        let mut ws = connect(&url).await;
        send(
            &mut ws,
            json!({"type":"join","id":1,"token":token,"protocol":1}),
        )
        .await;
        let e = expect_error(&mut ws, "invalid_token").await;
        assert!(e["message"].as_str().unwrap().contains(expect), "{e}");
        expect_closed(&mut ws).await;
    }
    // A token for room X cannot join room Y.
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type":"join","id":1,"token":token("room-x","a",Grants::participant()),"protocol":1,"room":"room-y"})).await;
    expect_error(&mut ws, "wrong_room").await;
    expect_closed(&mut ws).await;
    // A token without the join grant.
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type":"join","id":1,"token":token("r","a",Grants { join: false, ..Grants::participant() }),"protocol":1})).await;
    expect_error(&mut ws, "permission_denied").await;
    // Wrong protocol version.
    let mut ws = connect(&url).await;
    send(
        &mut ws,
        json!({"type":"join","id":1,"token":token("r","a",Grants::participant()),"protocol":2}),
    )
    .await;
    expect_error(&mut ws, "unsupported_protocol").await;
    expect_closed(&mut ws).await;
}

#[tokio::test]
async fn grants_are_enforced() {
    let url = start(SessionLimits::default()).await;
    let mut ws = connect(&url).await;
    let viewer = Grants {
        publish: false,
        ..Grants::participant()
    };
    send(
        &mut ws,
        json!({"type":"join","id":1,"token":token("g","viewer",viewer),"protocol":1}),
    )
    .await;
    recv_type(&mut ws, "joined").await;
    send(&mut ws, json!({"type":"publish","id":2,"sdp":OFFER})).await;
    expect_error(&mut ws, "permission_denied").await;
    send(&mut ws, json!({"type":"ping","id":3})).await;
    recv_type(&mut ws, "pong").await;
}

#[tokio::test]
async fn rate_limit_and_join_deadline() {
    let limits = SessionLimits {
        rate_per_second: 5.0,
        burst: 10.0,
        join_deadline: Duration::from_millis(500),
        ..Default::default()
    };
    let url = start(limits).await;
    let mut ws = connect(&url).await;
    for i in 0..30 {
        if ws
            .send(Message::Text(
                json!({"type":"ping","id":i}).to_string().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    expect_error(&mut ws, "rate_limited").await;
    expect_closed(&mut ws).await;
    let mut idle = connect(&url).await;
    let closing = recv_type(&mut idle, "closing").await;
    assert_eq!(closing["reason"], "join deadline passed");
}

#[tokio::test]
async fn participants_see_each_other_join_publish_and_leave() {
    let url = start(SessionLimits::default()).await;
    let mut alice = joined(&url, "meet", "alice").await;
    let mut bob = joined(&url, "meet", "bob").await;
    let j = recv_type(&mut alice, "participant_joined").await;
    assert_eq!(j["participant"]["identity"], "bob");
    send(
        &mut bob,
        json!({"type":"publish","id":2,"sdp":OFFER,"tracks":[{"mid":"1","source":"camera"}]}),
    )
    .await;
    let answer = recv_type(&mut bob, "publish_answer").await;
    let video = answer["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "video")
        .unwrap()
        .clone();
    assert_eq!(video["source"], "camera");
    let published = recv_type(&mut alice, "track_published").await;
    assert_eq!(published["track"]["participant"], j["participant"]["sid"]);
    // Bob published audio and video: the first offer carries the first track; the second waits
    // for Alice's answer (one offer outstanding at a time) and then carries both.
    let offer = recv_type(&mut alice, "subscribe_offer").await;
    assert_eq!(offer["version"], 1);
    let sdp = offer["sdp"].as_str().unwrap();
    assert_eq!(sdp.matches("m=").count(), 1, "{sdp}");
    assert!(sdp.contains("a=sendonly") && sdp.contains("a=setup:actpass"));
    let answer = OFFER.replace("a=setup:actpass", "a=setup:active");
    send(
        &mut alice,
        json!({"type":"subscribe_answer","id":5,"sdp":answer,"version":1}),
    )
    .await;
    assert_eq!(recv_type(&mut alice, "ok").await["id"], 5);
    let offer = recv_type(&mut alice, "subscribe_offer").await;
    assert_eq!(offer["version"], 2);
    assert_eq!(offer["sdp"].as_str().unwrap().matches("m=").count(), 2);
    assert_eq!(offer["tracks"].as_array().unwrap().len(), 2);
    // Subscription controls: only for a track you receive.
    send(
        &mut alice,
        json!({"type":"set_subscription","id":6,"track":"TR_nope","max_height":180}),
    )
    .await;
    assert_eq!(expect_error(&mut alice, "unknown_track").await["id"], 6);
    send(&mut alice, json!({"type":"set_subscription","id":7,"track":video["id"],"max_spatial":0,"max_temporal":1,"paused":true})).await;
    assert_eq!(recv_type(&mut alice, "ok").await["id"], 7);
    send(
        &mut alice,
        json!({"type":"set_subscription","id":8,"track":video["id"],"max_height":"tall"}),
    )
    .await;
    assert_eq!(expect_error(&mut alice, "bad_request").await["id"], 8);
    // Muting is seen by the other side.
    send(
        &mut bob,
        json!({"type":"mute","id":3,"track":video["id"],"muted":true}),
    )
    .await;
    recv_type(&mut bob, "ok").await;
    let muted = recv_type(&mut alice, "track_muted").await;
    assert_eq!(
        (muted["track"].clone(), muted["muted"].clone()),
        (video["id"].clone(), json!(true))
    );
    // Bob disconnects without a goodbye: Alice sees his tracks end and him leave.
    drop(bob);
    recv_type(&mut alice, "track_unpublished").await;
    let left = recv_type(&mut alice, "participant_left").await;
    assert_eq!(left["participant"], j["participant"]["sid"]);
}

/// Answers every subscribe offer with a stand-in answer until one with `sections` m-lines and
/// `tracks` live tracks arrives; returns it.
async fn offer_with(ws: &mut Ws, sections: usize, tracks: usize) -> Value {
    let answer = OFFER.replace("a=setup:actpass", "a=setup:active");
    loop {
        let offer = recv_type(ws, "subscribe_offer").await;
        let version = offer["version"].clone();
        send(
            ws,
            json!({"type":"subscribe_answer","id":"a","sdp":answer,"version":version}),
        )
        .await;
        let m = offer["sdp"].as_str().unwrap().matches("m=").count();
        if m == sections && offer["tracks"].as_array().unwrap().len() == tracks {
            return offer;
        }
        assert!(m <= sections, "the offer grew to {m} sections");
    }
}

#[tokio::test]
async fn finished_sections_are_reused_so_the_offer_does_not_grow() {
    let url = start(SessionLimits::default()).await;
    let mut host = joined(&url, "long-meeting", "host").await;
    for round in 0..4 {
        let mut guest = joined(&url, "long-meeting", &format!("guest{round}")).await;
        send(&mut guest, json!({"type":"publish","id":1,"sdp":OFFER})).await;
        recv_type(&mut guest, "publish_answer").await;
        offer_with(&mut host, 2, 2).await;
        send(&mut guest, json!({"type":"leave","id":2})).await;
        let emptied = offer_with(&mut host, 2, 0).await;
        assert!(emptied["sdp"].as_str().unwrap().contains("a=inactive"));
    }
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let url = start(limits).await;
    let mut ws = joined(&url, "quiet", "sleepy").await;
    let closing = recv_type(&mut ws, "closing").await;
    assert_eq!(closing["reason"], "idle timeout");
    expect_closed(&mut ws).await;
}

#[tokio::test]
async fn graceful_shutdown_tells_every_client() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let url = start_with_shutdown(SessionLimits::default(), async move {
        let _ = stopped.await;
    })
    .await;
    let mut a = joined(&url, "s", "a").await;
    let mut b = connect(&url).await; // not even joined yet
    send(&mut b, json!({"type":"ping","id":1})).await;
    recv_type(&mut b, "pong").await;
    stop.send(()).unwrap();
    for ws in [&mut a, &mut b] {
        let closing = recv_type(ws, "closing").await;
        assert_eq!(closing["reason"], "server shutting down");
        expect_closed(ws).await;
    }
}

#[tokio::test]
async fn unjoined_connections_per_ip_are_limited() {
    let limits = SessionLimits {
        max_unjoined_per_ip: 2,
        ..Default::default()
    };
    let url = start(limits).await;
    let mut first = connect(&url).await;
    let _second = connect(&url).await;
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!(
            "a third unjoined connection was accepted: {:?}",
            other.map(|_| ())
        ),
    }
    // Joining frees the slot.
    send(
        &mut first,
        json!({"type":"join","id":1,"token":token("ip","a",Grants::participant()),"protocol":1}),
    )
    .await;
    recv_type(&mut first, "joined").await;
    let mut third = connect(&url).await;
    send(&mut third, json!({"type":"ping","id":2})).await;
    recv_type(&mut third, "pong").await;
}

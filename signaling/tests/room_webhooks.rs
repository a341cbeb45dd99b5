//! A real signaling session emits the room lifecycle as webhooks, received in order by a real
//! local HTTP receiver (axum on 127.0.0.1:0) that checks every signature.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::json;
use signaling::access_token::Grants;
use signaling::storage::Storage;
use signaling::webhooks::{
    SIGNATURE_HEADER, WebhookConfig, WebhookDispatcher, WebhookEndpoint, WebhookEvent,
    WebhookEventKind, verify_signature,
};

const HOOK_SECRET: &[u8] = b"hook-secret-0123456789abcdef0123";

type Seen = Arc<Mutex<Vec<WebhookEvent>>>;

async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = signaling::access_token::unix_now();
    if verify_signature(HOOK_SECRET, signature, &body, now, Duration::from_secs(300)).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<WebhookEvent>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    seen.lock().unwrap().push(event);
    StatusCode::OK
}

#[tokio::test]
async fn a_real_session_emits_the_lifecycle_in_order() {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dispatcher = WebhookDispatcher::spawn(WebhookConfig {
        endpoints: vec![WebhookEndpoint::new(hook_url, HOOK_SECRET.to_vec())],
        ..WebhookConfig::default()
    })
    .unwrap();
    let storage = Storage::connect("sqlite::memory:").await.unwrap();
    let s = start_with(storage, Some(dispatcher.sender())).await;

    let (mut alice, _) = join(&s.url, &token("hooks", "alice", creator())).await;
    let (mut bob, _) = join(&s.url, &token("hooks", "bob", Grants::participant())).await;
    let tracks = publish(&mut bob, 2).await;
    send(
        &mut bob,
        json!({"type":"unpublish","id":3,"track":tracks[0]}),
    )
    .await;
    assert_eq!(answer(&mut bob, 3).await["type"], "ok");
    send(&mut bob, json!({"type":"leave","id":4})).await;
    closed(&mut bob).await;
    send(&mut alice, json!({"type":"leave","id":5})).await;
    closed(&mut alice).await;

    use WebhookEventKind::*;
    let expected = [
        (RoomStarted, None),
        (ParticipantJoined, Some("alice")),
        (ParticipantJoined, Some("bob")),
        (TrackPublished, Some("bob")),
        (TrackPublished, Some("bob")),
        (TrackUnpublished, Some("bob")),
        // Leaving ends bob's remaining track first.
        (TrackUnpublished, Some("bob")),
        (ParticipantLeft, Some("bob")),
        (ParticipantLeft, Some("alice")),
        (RoomFinished, None),
    ];
    eventually("every event delivered", || async {
        seen.lock().unwrap().len() >= expected.len()
    })
    .await;
    let got: Vec<(WebhookEventKind, Option<String>)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.event, e.participant.as_ref().map(|p| p.identity.clone())))
        .collect();
    let want: Vec<(WebhookEventKind, Option<String>)> = expected
        .iter()
        .map(|(k, who)| (*k, who.map(str::to_owned)))
        .collect();
    assert_eq!(got, want);
    let events = seen.lock().unwrap().clone();
    assert!(events.iter().all(|e| e.room == "hooks"));
    let published: Vec<&str> = events
        .iter()
        .filter(|e| e.event == TrackPublished)
        .filter_map(|e| e.track.as_ref().map(|t| t.id.as_str()))
        .collect();
    assert_eq!(published.len(), 2);
    assert!(tracks.iter().all(|t| published.contains(&t.as_str())));
    assert!(
        events
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at),
        "timestamps in order"
    );
}

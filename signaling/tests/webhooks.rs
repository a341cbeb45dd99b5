//! Webhook delivery against real local HTTP receivers (axum on 127.0.0.1:0): signatures,
//! order per room under failures and timeouts, isolation between rooms and endpoints, the
//! retry cap, bounded memory and shutdown. Backoffs are milliseconds so the tests are fast;
//! every wait is on a channel or a counter with a generous deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use signaling::protocol::TrackSource;
use signaling::webhooks::{
    RetryPolicy, SignatureError, WebhookConfig, WebhookDispatcher, WebhookEndpoint, WebhookError,
    WebhookEvent, WebhookEventKind, WebhookParticipant, WebhookStats, WebhookTrack,
    verify_signature,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

const SECRET: &[u8] = b"webhook-secret-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(20);
const TOLERANCE: Duration = Duration::from_secs(300);

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Status(u16),
    /// Never answers: the sender's request timeout fires.
    Stall,
}

/// What the receiver saw.
#[derive(Debug, Clone)]
struct Hit {
    event: WebhookEvent,
    id_header: String,
    signature: String,
    content_type: String,
    body: Bytes,
    answer: Answer,
}

#[derive(Default)]
struct Script {
    /// Per room: answers to use first, one per request.
    first: HashMap<String, VecDeque<Answer>>,
    /// Per room: the answer once `first` is used up (default 200).
    then: HashMap<String, Answer>,
}

#[derive(Clone)]
struct Receiver {
    hits: mpsc::UnboundedSender<Hit>,
    script: Arc<Mutex<Script>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let event: WebhookEvent = serde_json::from_slice(&body).expect("the body is an event");
    let answer = {
        let mut script = r.script.lock().unwrap();
        let scripted = script
            .first
            .get_mut(&event.room)
            .and_then(VecDeque::pop_front);
        scripted
            .or_else(|| script.then.get(&event.room).copied())
            .unwrap_or(Answer::Status(200))
    };
    let _ = r.hits.send(Hit {
        event,
        id_header: header("webhook-id"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body,
        answer,
    });
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Stall => std::future::pending().await,
    }
}

struct Endpoint {
    url: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    script: Arc<Mutex<Script>>,
}

impl Endpoint {
    async fn start() -> Self {
        let (tx, hits) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(Receiver {
                hits: tx,
                script: script.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, hits, script }
    }

    fn first(&self, room: &str, answers: &[Answer]) {
        self.script
            .lock()
            .unwrap()
            .first
            .insert(room.into(), answers.iter().copied().collect());
    }

    fn then(&self, room: &str, answer: Option<Answer>) {
        let mut script = self.script.lock().unwrap();
        match answer {
            Some(a) => script.then.insert(room.into(), a),
            None => script.then.remove(room),
        };
    }

    fn endpoint(&self) -> WebhookEndpoint {
        WebhookEndpoint::new(self.url.clone(), SECRET.to_vec())
    }

    async fn next(&mut self) -> Hit {
        timeout(DEADLINE, self.hits.recv())
            .await
            .expect("a webhook request within the deadline")
            .expect("receiver alive")
    }

    /// Hits until `n` successful deliveries have been seen (within one overall deadline,
    /// so endless retries of something else cannot keep the test waiting); returns every hit
    /// on the way.
    async fn until_delivered(&mut self, n: usize, room: Option<&str>) -> Vec<Hit> {
        let deadline = Instant::now() + DEADLINE;
        let mut hits = Vec::new();
        let mut delivered = 0;
        while delivered < n {
            let hit = tokio::time::timeout_at(deadline, self.hits.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("only {delivered} of {n} delivered within the deadline: {hits:?}")
                })
                .expect("receiver alive");
            if hit.answer == Answer::Status(200) && room.is_none_or(|r| hit.event.room == r) {
                delivered += 1;
            }
            hits.push(hit);
        }
        hits
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10_000,
        max_age: Duration::from_secs(60),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
    }
}

fn config(endpoints: Vec<WebhookEndpoint>) -> WebhookConfig {
    WebhookConfig {
        endpoints,
        request_timeout: Duration::from_millis(300),
        retry: fast_retry(),
        ..WebhookConfig::default()
    }
}

fn alice() -> WebhookParticipant {
    WebhookParticipant {
        identity: "alice".into(),
        name: "Alice".into(),
    }
}

fn now_ms() -> u64 {
    signaling::webhooks::unix_millis()
}

fn now_s() -> u64 {
    now_ms() / 1000
}

/// A room's life as events, in order.
fn room_life(room: &str) -> Vec<WebhookEvent> {
    let track = WebhookTrack {
        id: "TR_1".into(),
        kind: "audio".into(),
        source: TrackSource::Microphone,
    };
    vec![
        WebhookEvent::room_started(room, now_ms()),
        WebhookEvent::participant_joined(room, alice(), now_ms()),
        WebhookEvent::track_published(room, alice(), track.clone(), now_ms()),
        WebhookEvent::track_unpublished(room, alice(), track, now_ms()),
        WebhookEvent::participant_left(room, alice(), now_ms()),
        WebhookEvent::room_finished(room, now_ms()),
    ]
}

async fn wait_stats(
    stats: &mut watch::Receiver<WebhookStats>,
    what: &str,
    done: impl FnMut(&WebhookStats) -> bool,
) -> WebhookStats {
    let reached = match timeout(DEADLINE, stats.wait_for(done)).await {
        Ok(Ok(s)) => Some(*s),
        _ => None,
    };
    reached.unwrap_or_else(|| panic!("stats never reached: {what}; now {:?}", *stats.borrow()))
}

fn ids(events: &[WebhookEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn deliveries_are_signed_and_a_tampered_body_fails() {
    let mut receiver = Endpoint::start().await;
    let dispatcher = WebhookDispatcher::spawn(config(vec![receiver.endpoint()])).unwrap();
    let event = WebhookEvent::participant_joined("standup", alice(), now_ms());
    assert!(dispatcher.sender().send(event.clone()));
    let hit = receiver.next().await;

    assert_eq!(hit.event, event);
    assert_eq!(hit.id_header, event.id);
    assert!(event.id.starts_with("evt_"));
    assert_eq!(hit.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["event"], "participant_joined");
    assert_eq!(body["room"], "standup");
    assert_eq!(body["participant"]["identity"], "alice");
    assert!(body.get("track").is_none());
    assert!(body["created_at"].as_u64().unwrap() > 1_700_000_000_000);

    let t = verify_signature(SECRET, &hit.signature, &hit.body, now_s(), TOLERANCE).unwrap();
    assert!(now_s().abs_diff(t) < 60);
    let mut tampered = hit.body.to_vec();
    let at = tampered.iter().position(|&b| b == b'a').unwrap();
    tampered[at] = b'b';
    assert_eq!(
        verify_signature(SECRET, &hit.signature, &tampered, now_s(), TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(
            b"another secret",
            &hit.signature,
            &hit.body,
            now_s(),
            TOLERANCE
        ),
        Err(SignatureError::Mismatch)
    );
    // A replay long after: outside the tolerance even with the right body.
    assert_eq!(
        verify_signature(SECRET, &hit.signature, &hit.body, now_s() + 3600, TOLERANCE),
        Err(SignatureError::OutsideTolerance)
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = hit.signature.replacen("t=", "t=1", 1);
    let moved_t: u64 = moved[2..moved.find(',').unwrap()].parse().unwrap();
    assert_eq!(
        verify_signature(SECRET, &moved, &hit.body, moved_t, TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    // A receiver that knows two secrets during a rotation accepts either v1.
    let both = format!("{},v1={}", hit.signature, "00".repeat(32));
    assert!(verify_signature(SECRET, &both, &hit.body, now_s(), TOLERANCE).is_ok());

    let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats.delivered, stats.attempts, stats.dropped()),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_failing_room_keeps_its_order_and_never_blocks_another_room() {
    let mut flaky = Endpoint::start().await;
    let mut healthy = Endpoint::start().await;
    // On the flaky endpoint room alpha times out, then errors, and keeps failing with 500
    // until the test releases it; room beta fails once.
    flaky.first(
        "alpha",
        &[Answer::Stall, Answer::Status(503), Answer::Status(429)],
    );
    flaky.then("alpha", Some(Answer::Status(500)));
    flaky.first("beta", &[Answer::Status(500)]);
    let dispatcher =
        WebhookDispatcher::spawn(config(vec![flaky.endpoint(), healthy.endpoint()])).unwrap();
    let mut stats = dispatcher.watch_stats();
    let sender = dispatcher.sender();
    let alpha = room_life("alpha");
    let beta = room_life("beta");
    for (a, b) in alpha.iter().zip(&beta) {
        assert!(sender.send(a.clone()));
        assert!(sender.send(b.clone()));
    }

    // Beta is delivered in full on the flaky endpoint while alpha is still failing.
    let hits = flaky.until_delivered(beta.len(), Some("beta")).await;
    let delivered_beta: Vec<String> = hits
        .iter()
        .filter(|h| h.event.room == "beta" && h.answer == Answer::Status(200))
        .map(|h| h.event.id.clone())
        .collect();
    assert_eq!(delivered_beta, ids(&beta), "beta in order");
    let alpha_so_far: Vec<&Hit> = hits.iter().filter(|h| h.event.room == "alpha").collect();
    assert!(
        alpha_so_far
            .iter()
            .all(|h| h.answer != Answer::Status(200) && h.event.id == alpha[0].id),
        "alpha only ever retried its first event meanwhile: {alpha_so_far:?}"
    );

    // The healthy endpoint got everything, in order per room, without waiting for the flaky one.
    let healthy_hits = healthy
        .until_delivered(alpha.len() + beta.len(), None)
        .await;
    for (room, events) in [("alpha", &alpha), ("beta", &beta)] {
        let got: Vec<String> = healthy_hits
            .iter()
            .filter(|h| h.event.room == room)
            .map(|h| h.event.id.clone())
            .collect();
        assert_eq!(got, ids(events), "{room} on the healthy endpoint");
    }

    // Release alpha: its events arrive in order, each only after the previous one succeeded.
    flaky.then("alpha", None);
    let mut alpha_hits: Vec<Hit> = alpha_so_far.into_iter().cloned().collect();
    alpha_hits.extend(flaky.until_delivered(alpha.len(), Some("alpha")).await);
    let mut head = 0;
    for hit in &alpha_hits {
        let index = alpha.iter().position(|e| e.id == hit.event.id).unwrap();
        assert_eq!(
            index, head,
            "a request for event {index} while {head} was pending"
        );
        if hit.answer == Answer::Status(200) {
            head += 1;
        }
    }
    assert_eq!(head, alpha.len());
    let answers: Vec<Answer> = alpha_hits.iter().map(|h| h.answer).collect();
    assert!(answers.contains(&Answer::Stall) && answers.contains(&Answer::Status(503)));

    let s = wait_stats(&mut stats, "all delivered", |s| s.delivered == 24).await;
    assert_eq!(s.dropped(), 0);
    assert_eq!(s.pending, 0);
    assert!(s.failed_attempts >= 4, "{s:?}");
    assert_eq!(s.attempts, s.delivered + s.failed_attempts);
    assert_eq!(s.accepted, 12);
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn retries_stop_at_the_cap_and_are_counted() {
    let mut receiver = Endpoint::start().await;
    receiver.then("gamma", Some(Answer::Status(500)));
    let mut cfg = config(vec![receiver.endpoint()]);
    cfg.retry.max_attempts = 4;
    let dispatcher = WebhookDispatcher::spawn(cfg).unwrap();
    let mut stats = dispatcher.watch_stats();
    let events = room_life("gamma");
    let events = &events[..2];
    for e in events {
        assert!(dispatcher.sender().send(e.clone()));
    }
    let s = wait_stats(&mut stats, "two given up", |s| {
        s.dropped_retries_exhausted == 2
    })
    .await;
    assert_eq!(
        (s.attempts, s.failed_attempts, s.delivered, s.pending),
        (8, 8, 0, 0)
    );
    // Every hit was sent before its 500 was seen, so all eight are in the channel now.
    let mut seen = Vec::new();
    while let Ok(hit) = receiver.hits.try_recv() {
        seen.push(hit.event.id);
    }
    let mut want = vec![events[0].id.clone(); 4];
    want.extend(vec![events[1].id.clone(); 4]);
    assert_eq!(seen, want, "four attempts each, in order, then given up");
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn retries_stop_at_the_maximum_age() {
    let receiver = Endpoint::start().await;
    receiver.then("delta", Some(Answer::Status(503)));
    let mut cfg = config(vec![receiver.endpoint()]);
    cfg.retry.max_age = Duration::from_millis(100);
    cfg.retry.initial_backoff = Duration::from_millis(20);
    let dispatcher = WebhookDispatcher::spawn(cfg).unwrap();
    let mut stats = dispatcher.watch_stats();
    dispatcher
        .sender()
        .send(WebhookEvent::room_started("delta", now_ms()));
    let s = wait_stats(&mut stats, "given up by age", |s| {
        s.dropped_retries_exhausted == 1
    })
    .await;
    assert!(s.attempts >= 2 && s.attempts < 20, "{s:?}");
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let mut receiver = Endpoint::start().await;
    receiver.then("epsilon", Some(Answer::Status(400)));
    let dispatcher = WebhookDispatcher::spawn(config(vec![receiver.endpoint()])).unwrap();
    let mut stats = dispatcher.watch_stats();
    let events = room_life("epsilon");
    for e in &events[..2] {
        dispatcher.sender().send(e.clone());
    }
    let s = wait_stats(&mut stats, "both refused", |s| s.dropped_rejected == 2).await;
    assert_eq!((s.attempts, s.delivered), (2, 0));
    assert_eq!(receiver.next().await.event.id, events[0].id);
    assert_eq!(receiver.next().await.event.id, events[1].id);
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn memory_is_bounded_and_shutdown_gives_up_within_its_deadline() {
    let mut receiver = Endpoint::start().await;
    receiver.then("zeta", Some(Answer::Stall));
    let cfg = WebhookConfig {
        queue_capacity: 4,
        max_pending_per_endpoint: 3,
        request_timeout: Duration::from_secs(60),
        ..config(vec![receiver.endpoint()])
    };
    let dispatcher = WebhookDispatcher::spawn(cfg).unwrap();
    let mut stats = dispatcher.watch_stats();
    let sender = dispatcher.sender();
    // The test runtime is single-threaded: these 50 sends run before the dispatcher does.
    let sent = (0..50)
        .filter(|_| sender.send(WebhookEvent::room_started("zeta", now_ms())))
        .count();
    assert_eq!(sent, 4);
    let s = wait_stats(&mut stats, "queue drained", |s| s.accepted == 4).await;
    assert_eq!(
        (s.dropped_queue_full, s.dropped_backlog, s.pending),
        (46, 1, 3)
    );
    // The head is in flight and stalled.
    assert_eq!(receiver.next().await.answer, Answer::Stall);

    let started = Instant::now();
    let s = dispatcher.shutdown(Duration::from_millis(200)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!((s.dropped_shutdown, s.pending, s.delivered), (3, 0, 0));
    // After shutdown, sending is refused and counted, never blocks.
    assert!(!sender.send(WebhookEvent::room_finished("zeta", now_ms())));
}

#[tokio::test]
async fn shutdown_flushes_pending_events_with_their_retries() {
    let mut receiver = Endpoint::start().await;
    receiver.first("eta", &[Answer::Status(500), Answer::Status(502)]);
    let dispatcher = WebhookDispatcher::spawn(config(vec![receiver.endpoint()])).unwrap();
    let sender = dispatcher.sender();
    let mut events = room_life("eta");
    events.extend(room_life("theta"));
    for e in &events {
        assert!(sender.send(e.clone()));
    }
    let s = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert_eq!((s.delivered, s.dropped(), s.pending), (12, 0, 0));
    assert_eq!(s.failed_attempts, 2);
    let hits = receiver.until_delivered(12, None).await;
    let eta: Vec<String> = hits
        .iter()
        .filter(|h| h.event.room == "eta" && h.answer == Answer::Status(200))
        .map(|h| h.event.id.clone())
        .collect();
    assert_eq!(eta, ids(&events[..6]));
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    for url in ["ftp://example.com/hook", "not a url", "file:///etc/passwd"] {
        let r = WebhookDispatcher::spawn(config(vec![WebhookEndpoint::new(url, SECRET.to_vec())]));
        assert!(
            matches!(r, Err(WebhookError::InvalidUrl { .. })),
            "{url}: {r:?}"
        );
    }
    let r = WebhookDispatcher::spawn(WebhookConfig {
        queue_capacity: 0,
        ..WebhookConfig::default()
    });
    assert!(matches!(r, Err(WebhookError::InvalidConfig(_))));
    let mut cfg = WebhookConfig::default();
    cfg.retry.max_attempts = 0;
    assert!(matches!(
        WebhookDispatcher::spawn(cfg),
        Err(WebhookError::InvalidConfig(_))
    ));
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        WebhookDispatcher::spawn(WebhookConfig::default()),
        Err(WebhookError::NoRuntime)
    ));
}

#[test]
fn event_json_has_the_documented_shape() {
    let track = WebhookTrack {
        id: "TR_v".into(),
        kind: "video".into(),
        source: TrackSource::Screen,
    };
    let e = WebhookEvent::track_published("standup", alice(), track, 1_767_225_600_000);
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["event"], "track_published");
    assert_eq!(v["created_at"], 1_767_225_600_000u64);
    assert_eq!(
        v["track"],
        serde_json::json!({"id":"TR_v","kind":"video","source":"screen"})
    );
    assert_eq!(
        v["participant"],
        serde_json::json!({"identity":"alice","name":"Alice"})
    );
    let kinds = [
        WebhookEventKind::RoomStarted,
        WebhookEventKind::RoomFinished,
        WebhookEventKind::ParticipantJoined,
        WebhookEventKind::ParticipantLeft,
        WebhookEventKind::TrackPublished,
        WebhookEventKind::TrackUnpublished,
    ];
    let names: Vec<String> = kinds
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "room_started",
            "room_finished",
            "participant_joined",
            "participant_left",
            "track_published",
            "track_unpublished"
        ]
    );
    let a = WebhookEvent::room_started("r", 0);
    let b = WebhookEvent::room_started("r", 0);
    assert_ne!(a.id, b.id);
}

//! Webhooks: signed lifecycle events POSTed to the host's HTTP endpoints, in order per room.
//!
//! This module owns the event format ([`WebhookEvent`]), the signature ([`sign`],
//! [`verify_signature`]) and the delivery task ([`WebhookDispatcher`]). It must never slow a
//! room down: rooms hand events to a [`WebhookSender`] that never waits (a full queue drops the
//! event and counts it), and a dead endpoint costs bounded memory. It knows nothing about rooms
//! beyond the room name that orders delivery.
//!
//! # Wiring it in
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use signaling::webhooks::{WebhookConfig, WebhookDispatcher, WebhookEndpoint, WebhookEvent};
//!
//! let config = WebhookConfig {
//!     endpoints: vec![WebhookEndpoint::new("https://example.com/hooks", b"shared secret".to_vec())],
//!     ..WebhookConfig::default()
//! };
//! let dispatcher = WebhookDispatcher::spawn(config)?;
//! let sender = dispatcher.sender(); // clone into every room actor
//! sender.send(WebhookEvent::room_started("standup", signaling::webhooks::unix_millis()));
//! // … on server shutdown: deliver what is pending, for at most 5 s.
//! let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
//! println!("delivered {}, dropped {}", stats.delivered, stats.dropped());
//! # Ok(()) }
//! ```
//!
//! # What a receiver gets
//!
//! `POST <url>` with `Content-Type: application/json`, the event as the body,
//! `Webhook-Id: <event id>` (the same on every retry: receivers deduplicate on it) and
//! `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, signed
//! afresh on each attempt so a retry after a long backoff is still inside the receiver's
//! tolerance. Receivers check it with [`verify_signature`].
//!
//! # Delivery
//!
//! Each endpoint has one lane per room. A lane sends one event at a time: the next event of a
//! room waits until the previous one is delivered or given up, so a receiver sees a room's
//! events in order. Lanes never wait for each other, so a failing room (or endpoint) does not
//! delay the others. A 2xx is success; connection errors, timeouts, 408, 429 and 5xx are
//! retried with exponential backoff and jitter ([`RetryPolicy`]) until
//! [`RetryPolicy::max_attempts`] or [`RetryPolicy::max_age`], then the event is dropped with a
//! counter and a log line; any other status (4xx, 3xx: redirects are not followed) drops it at
//! once. Counters are in [`WebhookStats`], observable live with
//! [`WebhookDispatcher::watch_stats`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::protocol::TrackSource;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Webhook-Signature";
/// The header carrying the event id.
pub const ID_HEADER: &str = "Webhook-Id";
/// Longest signature header [`verify_signature`] reads.
const MAX_SIGNATURE_HEADER: usize = 4096;

/// Milliseconds since the Unix epoch, for [`WebhookEvent::created_at`].
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn unix_secs() -> u64 {
    unix_millis() / 1000
}

/// What happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEventKind {
    /// A room opened (its first participant joined, or it was created).
    RoomStarted,
    /// A room closed.
    RoomFinished,
    /// A participant joined.
    ParticipantJoined,
    /// A participant left (or was removed).
    ParticipantLeft,
    /// A track was published.
    TrackPublished,
    /// A track was unpublished.
    TrackUnpublished,
}

/// The participant an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookParticipant {
    /// Identity (from the verified token).
    pub identity: String,
    /// Display name.
    pub name: String,
}

/// The track an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookTrack {
    /// Track id.
    pub id: String,
    /// `audio` or `video`.
    pub kind: String,
    /// Camera, microphone, screen…
    pub source: TrackSource,
}

/// One event, as POSTed (the JSON body).
///
/// ```json
/// {"id":"evt_…","event":"participant_joined","created_at":1767225600000,"room":"standup",
///  "participant":{"identity":"alice","name":"Alice"}}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Unique event id (`evt_` + 24 random characters); also sent as `Webhook-Id`.
    pub id: String,
    /// What happened.
    pub event: WebhookEventKind,
    /// When, in milliseconds since the Unix epoch.
    pub created_at: u64,
    /// The room's name; events of one room are delivered in order.
    pub room: String,
    /// For participant and track events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<WebhookParticipant>,
    /// For track events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<WebhookTrack>,
}

impl WebhookEvent {
    /// An event with a fresh id and no participant or track.
    pub fn new(event: WebhookEventKind, room: impl Into<String>, created_at: u64) -> Self {
        Self {
            id: format!("evt_{}", random_alnum(24)),
            event,
            created_at,
            room: room.into(),
            participant: None,
            track: None,
        }
    }

    /// `room_started`.
    pub fn room_started(room: impl Into<String>, created_at: u64) -> Self {
        Self::new(WebhookEventKind::RoomStarted, room, created_at)
    }

    /// `room_finished`.
    pub fn room_finished(room: impl Into<String>, created_at: u64) -> Self {
        Self::new(WebhookEventKind::RoomFinished, room, created_at)
    }

    /// `participant_joined`.
    pub fn participant_joined(
        room: impl Into<String>,
        participant: WebhookParticipant,
        created_at: u64,
    ) -> Self {
        Self {
            participant: Some(participant),
            ..Self::new(WebhookEventKind::ParticipantJoined, room, created_at)
        }
    }

    /// `participant_left`.
    pub fn participant_left(
        room: impl Into<String>,
        participant: WebhookParticipant,
        created_at: u64,
    ) -> Self {
        Self {
            participant: Some(participant),
            ..Self::new(WebhookEventKind::ParticipantLeft, room, created_at)
        }
    }

    /// `track_published`.
    pub fn track_published(
        room: impl Into<String>,
        participant: WebhookParticipant,
        track: WebhookTrack,
        created_at: u64,
    ) -> Self {
        Self {
            participant: Some(participant),
            track: Some(track),
            ..Self::new(WebhookEventKind::TrackPublished, room, created_at)
        }
    }

    /// `track_unpublished`.
    pub fn track_unpublished(
        room: impl Into<String>,
        participant: WebhookParticipant,
        track: WebhookTrack,
        created_at: u64,
    ) -> Self {
        Self {
            participant: Some(participant),
            track: Some(track),
            ..Self::new(WebhookEventKind::TrackUnpublished, room, created_at)
        }
    }
}

fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| {
            ALPHABET
                .get(rng.random_range(0..ALPHABET.len()))
                .map_or('x', |&b| char::from(b))
        })
        .collect()
}

// ----- signatures -----

/// The `Webhook-Signature` value for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut value = format!("t={timestamp},v1=");
    for byte in tag.as_ref() {
        value.push_str(&format!("{byte:02x}"));
    }
    value
}

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<digits>,v1=<hex>[,v1=<hex>…]`, or over 4 KiB.
    #[error("malformed webhook signature header")]
    Malformed,
    /// No `v1` signature.
    #[error("no v1 signature in the webhook signature header")]
    NoSignature,
    /// The timestamp is further than the tolerance from now (a replay, or a skewed clock).
    #[error("the webhook signature timestamp is outside the tolerance")]
    OutsideTolerance,
    /// No `v1` signature matches the body.
    #[error("the webhook signature does not match the body")]
    Mismatch,
}

/// Checks a `Webhook-Signature` header for `body` (the raw bytes received, before any JSON
/// parsing) against `secret`, at `now` (Unix seconds), accepting timestamps within
/// `tolerance` either way. Several `v1=` entries are allowed (one per secret during a
/// rotation); one match suffices. The compare is constant-time. Returns the signed timestamp.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<u64, SignatureError> {
    if header.len() > MAX_SIGNATURE_HEADER {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                if timestamp.is_some()
                    || value.is_empty()
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "v1" => signatures.push(hex_decode(value).ok_or(SignatureError::Malformed)?),
            // Later schemes (v2, …) are ignored so senders can add them without breaking us.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = Vec::with_capacity(body.len() + 21);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    if signatures
        .iter()
        .any(|tag| hmac::verify(&key, &signed, tag).is_ok())
    {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

// ----- configuration -----

/// One receiver.
#[derive(Clone)]
pub struct WebhookEndpoint {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// The HMAC-SHA256 key events to this endpoint are signed with.
    pub secret: Vec<u8>,
}

impl WebhookEndpoint {
    /// An endpoint.
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
        }
    }
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// When to retry a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per event and endpoint, the first included (default 8).
    pub max_attempts: u32,
    /// An event not delivered this long after its first attempt is given up (default 30 min).
    pub max_age: Duration,
    /// Backoff after the first failure (default 500 ms); doubles after each further failure.
    pub initial_backoff: Duration,
    /// Longest backoff (default 60 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_age: Duration::from_secs(30 * 60),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed attempt (1-based): the exponential step
    /// `initial × 2^(failures-1)` capped at `max_backoff`, of which the upper half is random
    /// (`jitter` in `[0, 1)`), so endpoints recovering from an outage are not hit in lockstep.
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let step = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Receivers; each gets every event, with its own lanes, retries and counters.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Events waiting between the rooms and the dispatcher task (default 1024); beyond it
    /// [`WebhookSender::send`] drops and counts.
    pub queue_capacity: usize,
    /// Events waiting for delivery to one endpoint, over all its rooms (default 10 000);
    /// beyond it new events for that endpoint are dropped and counted.
    pub max_pending_per_endpoint: usize,
    /// Whole-request timeout (default 10 s).
    pub request_timeout: Duration,
    /// Connection timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            queue_capacity: 1024,
            max_pending_per_endpoint: 10_000,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why the dispatcher could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// An endpoint URL that does not parse or is not http(s).
    #[error("invalid webhook URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A queue capacity or attempt count of zero.
    #[error("invalid webhook configuration: {0}")]
    InvalidConfig(&'static str),
    /// Not called inside a tokio runtime.
    #[error("the webhook dispatcher must be started inside a tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Delivery counters, over all endpoints (an event sent to two endpoints counts twice in
/// `delivered`, `attempts` and the per-endpoint drops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Events taken from the queue by the dispatcher.
    pub accepted: u64,
    /// Events a receiver answered with 2xx.
    pub delivered: u64,
    /// HTTP attempts made.
    pub attempts: u64,
    /// Attempts that failed (error, timeout or non-2xx).
    pub failed_attempts: u64,
    /// Events dropped because the queue into the dispatcher was full.
    pub dropped_queue_full: u64,
    /// Events dropped because an endpoint had `max_pending_per_endpoint` waiting.
    pub dropped_backlog: u64,
    /// Events given up after `max_attempts` or `max_age`.
    pub dropped_retries_exhausted: u64,
    /// Events refused by a receiver with a status that is not retried (4xx, 3xx).
    pub dropped_rejected: u64,
    /// Events still pending when shutdown gave up, or sent after it began.
    pub dropped_shutdown: u64,
    /// Events waiting for delivery now, over all endpoints.
    pub pending: u64,
}

impl WebhookStats {
    /// Every drop, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_backlog
            + self.dropped_retries_exhausted
            + self.dropped_rejected
            + self.dropped_shutdown
    }
}

// ----- the sender and the dispatcher -----

/// The rooms' handle: cheap to clone, never waits.
#[derive(Clone)]
pub struct WebhookSender {
    queue: mpsc::Sender<WebhookEvent>,
    stats: Arc<watch::Sender<WebhookStats>>,
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender").finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// Queues an event for every endpoint. Returns `false` (and counts the drop) if the
    /// queue is full or the dispatcher has shut down; never blocks the caller.
    pub fn send(&self, event: WebhookEvent) -> bool {
        match self.queue.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::warn!(room = %event.room, id = %event.id, "webhook queue full, event dropped");
                self.stats.send_modify(|s| s.dropped_queue_full += 1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.send_modify(|s| s.dropped_shutdown += 1);
                false
            }
        }
    }
}

/// The delivery task. Dropping it without [`WebhookDispatcher::shutdown`] stops delivery at
/// once (pending events are counted as `dropped_shutdown`).
pub struct WebhookDispatcher {
    sender: WebhookSender,
    stats: watch::Receiver<WebhookStats>,
    shutdown: Option<oneshot::Sender<Instant>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for WebhookDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookDispatcher")
            .field("stats", &*self.stats.borrow())
            .finish_non_exhaustive()
    }
}

impl WebhookDispatcher {
    /// Validates `config` and starts the delivery task on the current tokio runtime.
    pub fn spawn(config: WebhookConfig) -> Result<Self, WebhookError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        if config.queue_capacity == 0 {
            return Err(WebhookError::InvalidConfig(
                "queue_capacity must be at least 1",
            ));
        }
        if config.max_pending_per_endpoint == 0 {
            return Err(WebhookError::InvalidConfig(
                "max_pending_per_endpoint must be at least 1",
            ));
        }
        if config.retry.max_attempts == 0 {
            return Err(WebhookError::InvalidConfig(
                "max_attempts must be at least 1",
            ));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let url = reqwest::Url::parse(&endpoint.url).map_err(|e| WebhookError::InvalidUrl {
                url: endpoint.url.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(WebhookError::InvalidUrl {
                    url: endpoint.url.clone(),
                    reason: "only http and https are allowed".into(),
                });
            }
            endpoints.push(Target {
                url,
                secret: endpoint.secret.clone().into(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // A redirect would re-send a signed body somewhere the host did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let (queue, events) = mpsc::channel(config.queue_capacity);
        let (stats_tx, stats) = watch::channel(WebhookStats::default());
        let stats_tx = Arc::new(stats_tx);
        let (shutdown, shutdown_rx) = oneshot::channel();
        let delivery = Delivery {
            endpoints,
            client,
            retry: config.retry,
            max_pending: config.max_pending_per_endpoint,
            stats: stats_tx.clone(),
            lanes: HashMap::new(),
            pending: vec![0; config.endpoints.len()],
            in_flight: JoinSet::new(),
            tasks: HashMap::new(),
        };
        let task = runtime.spawn(delivery.run(events, shutdown_rx));
        Ok(Self {
            sender: WebhookSender {
                queue,
                stats: stats_tx,
            },
            stats,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// A handle for rooms to send events with.
    pub fn sender(&self) -> WebhookSender {
        self.sender.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> WebhookStats {
        *self.stats.borrow()
    }

    /// A receiver that sees every change of the counters (for metrics, or to wait in tests:
    /// `watch.wait_for(|s| s.delivered >= 3)`).
    pub fn watch_stats(&self) -> watch::Receiver<WebhookStats> {
        self.stats.clone()
    }

    /// Stops taking events, delivers what is queued and pending (retries included) for at
    /// most `grace`, then gives up on the rest (counted in `dropped_shutdown`). Returns the
    /// final counters.
    pub async fn shutdown(mut self, grace: Duration) -> WebhookStats {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(Instant::now() + grace);
        }
        if let Some(task) = self.task.take() {
            // The task honours the deadline itself; a panic in it is logged, not propagated.
            if let Err(e) = task.await {
                tracing::error!(error = %e, "webhook dispatcher task failed");
            }
        }
        *self.stats.borrow()
    }
}

impl Drop for WebhookDispatcher {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(Instant::now());
        }
    }
}

struct Target {
    url: reqwest::Url,
    secret: Arc<[u8]>,
}

/// One event prepared for sending: serialized once, shared by its endpoints' lanes.
struct Prepared {
    id: Arc<str>,
    body: Arc<[u8]>,
}

struct Pending {
    event: Arc<Prepared>,
    /// Failed attempts so far.
    failures: u32,
    /// When the first attempt started (for `max_age`).
    first_attempt: Option<Instant>,
}

/// Events of one room for one endpoint, delivered one at a time.
struct Lane {
    queue: VecDeque<Pending>,
}

type LaneKey = (usize, Arc<str>);

enum Outcome {
    Delivered,
    /// Worth retrying (connection error, timeout, 408, 429, 5xx).
    Failed(String),
    /// Not worth retrying (other statuses).
    Rejected(u16),
}

/// The task's state; owned by the task alone, so no locks.
struct Delivery {
    endpoints: Vec<Target>,
    client: reqwest::Client,
    retry: RetryPolicy,
    max_pending: usize,
    stats: Arc<watch::Sender<WebhookStats>>,
    /// Lanes with at least one event; the head of each is in flight (or waiting its backoff).
    lanes: HashMap<LaneKey, Lane>,
    /// Events pending per endpoint.
    pending: Vec<usize>,
    in_flight: JoinSet<Outcome>,
    tasks: HashMap<Id, LaneKey>,
}

impl Delivery {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<WebhookEvent>,
        mut shutdown: oneshot::Receiver<Instant>,
    ) {
        let mut deadline: Option<Instant> = None;
        let mut events_done = false;
        loop {
            if deadline.is_some() && events_done && self.lanes.is_empty() {
                break;
            }
            let give_up = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
            );
            tokio::select! {
                () = give_up, if deadline.is_some() => {
                    self.give_up();
                    break;
                }
                at = &mut shutdown, if deadline.is_none() => {
                    // A dropped dispatcher handle means: stop now.
                    deadline = Some(at.unwrap_or_else(|_| Instant::now()));
                    events.close();
                }
                event = events.recv(), if !events_done => match event {
                    Some(event) => self.accept(event),
                    None => events_done = true,
                },
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    match done {
                        Ok((id, outcome)) => self.finish(id, outcome),
                        Err(e) => self.finish(e.id(), Outcome::Failed(format!("delivery task failed: {e}"))),
                    }
                }
            }
        }
        self.in_flight.abort_all();
    }

    fn accept(&mut self, event: WebhookEvent) {
        let body = match serde_json::to_vec(&event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "webhook event does not serialize, dropped");
                return;
            }
        };
        let room: Arc<str> = event.room.as_str().into();
        let prepared = Arc::new(Prepared {
            id: event.id.as_str().into(),
            body: body.into(),
        });
        let mut added = 0;
        let mut backlogged = 0;
        for endpoint in 0..self.endpoints.len() {
            let full = self
                .pending
                .get(endpoint)
                .is_none_or(|&pending| pending >= self.max_pending);
            if full {
                backlogged += 1;
                tracing::warn!(endpoint = %self.url(endpoint), room = %room, id = %event.id, "webhook backlog full, event dropped");
                continue;
            }
            if let Some(pending) = self.pending.get_mut(endpoint) {
                *pending += 1;
            }
            added += 1;
            let key = (endpoint, room.clone());
            let lane = self.lanes.entry(key.clone()).or_insert_with(|| Lane {
                queue: VecDeque::new(),
            });
            lane.queue.push_back(Pending {
                event: prepared.clone(),
                failures: 0,
                first_attempt: None,
            });
            // A lane with more than this event already has its head in flight.
            if lane.queue.len() == 1 {
                self.start(key, Duration::ZERO);
            }
        }
        self.stats.send_modify(|s| {
            s.accepted += 1;
            s.dropped_backlog += backlogged;
            s.pending += added;
        });
    }

    fn url(&self, endpoint: usize) -> &str {
        self.endpoints.get(endpoint).map_or("?", |t| t.url.as_str())
    }

    /// Sends the head of a lane after `delay`.
    fn start(&mut self, key: LaneKey, delay: Duration) {
        let (Some(lane), Some(target)) = (self.lanes.get_mut(&key), self.endpoints.get(key.0))
        else {
            return;
        };
        let Some(head) = lane.queue.front_mut() else {
            return;
        };
        let event = head.event.clone();
        let client = self.client.clone();
        let url = target.url.clone();
        let secret = target.secret.clone();
        head.first_attempt
            .get_or_insert_with(|| Instant::now() + delay);
        let handle = self.in_flight.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            post(&client, url, &secret, &event).await
        });
        self.tasks.insert(handle.id(), key);
    }

    fn finish(&mut self, id: Id, outcome: Outcome) {
        let Some(key) = self.tasks.remove(&id) else {
            return;
        };
        let endpoint = self.url(key.0).to_owned();
        let Some(lane) = self.lanes.get_mut(&key) else {
            return;
        };
        let Some(head) = lane.queue.front_mut() else {
            return;
        };
        let mut dropped_exhausted = 0;
        let mut dropped_rejected = 0;
        let mut delivered = 0;
        let mut failed = 0;
        let retry_in = match outcome {
            Outcome::Delivered => {
                delivered = 1;
                None
            }
            Outcome::Rejected(status) => {
                failed = 1;
                dropped_rejected = 1;
                tracing::warn!(%endpoint, room = %key.1, id = %head.event.id, status, "webhook refused by the receiver, dropped");
                None
            }
            Outcome::Failed(reason) => {
                failed = 1;
                head.failures += 1;
                let delay = self
                    .retry
                    .backoff(head.failures, rand::rng().random::<f64>());
                let age = head
                    .first_attempt
                    .map(|t| t.elapsed())
                    .unwrap_or_default()
                    .saturating_add(delay);
                if head.failures >= self.retry.max_attempts || age > self.retry.max_age {
                    dropped_exhausted = 1;
                    tracing::warn!(%endpoint, room = %key.1, id = %head.event.id, attempts = head.failures, %reason, "webhook retries exhausted, dropped");
                    None
                } else {
                    tracing::debug!(%endpoint, room = %key.1, id = %head.event.id, attempts = head.failures, %reason, ?delay, "webhook attempt failed, retrying");
                    Some(delay)
                }
            }
        };
        let mut done = 0;
        if retry_in.is_none() {
            lane.queue.pop_front();
            done = 1;
            if let Some(pending) = self.pending.get_mut(key.0) {
                *pending = pending.saturating_sub(1);
            }
        }
        let lane_empty = lane.queue.is_empty();
        self.stats.send_modify(|s| {
            s.attempts += 1;
            s.failed_attempts += failed;
            s.delivered += delivered;
            s.dropped_rejected += dropped_rejected;
            s.dropped_retries_exhausted += dropped_exhausted;
            s.pending = s.pending.saturating_sub(done);
        });
        match retry_in {
            Some(delay) => self.start(key, delay),
            None if lane_empty => {
                self.lanes.remove(&key);
            }
            None => self.start(key, Duration::ZERO),
        }
    }

    fn give_up(&mut self) {
        let left: usize = self.lanes.values().map(|l| l.queue.len()).sum();
        if left > 0 {
            tracing::warn!(
                events = left,
                "webhook shutdown deadline reached, pending events dropped"
            );
        }
        self.lanes.clear();
        self.in_flight.abort_all();
        let left = u64::try_from(left).unwrap_or(u64::MAX);
        self.stats.send_modify(|s| {
            s.dropped_shutdown += left;
            s.pending = 0;
        });
    }
}

async fn post(
    client: &reqwest::Client,
    url: reqwest::Url,
    secret: &[u8],
    event: &Prepared,
) -> Outcome {
    let signature = sign(secret, unix_secs(), &event.body);
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(ID_HEADER, &*event.id)
        .header(SIGNATURE_HEADER, signature)
        .body(event.body.to_vec())
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) if r.status().is_server_error() || matches!(r.status().as_u16(), 408 | 429) => {
            Outcome::Failed(format!("HTTP {}", r.status()))
        }
        Ok(r) => Outcome::Rejected(r.status().as_u16()),
        Err(e) if e.is_timeout() => Outcome::Failed("timed out".into()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(4, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(5, 1.0), Duration::from_millis(1000));
        assert_eq!(p.backoff(u32::MAX, 0.0), Duration::from_millis(500));
        for failures in 1..40 {
            let lo = p.backoff(failures, 0.0);
            let hi = p.backoff(failures, 0.999);
            assert!(
                lo <= hi && hi <= p.max_backoff && lo * 2 >= hi,
                "{failures}"
            );
        }
    }

    #[test]
    fn signature_round_trip_and_strict_header_parsing() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(b"k", 1000, body);
        assert!(header.starts_with("t=1000,v1="));
        assert_eq!(header.len(), "t=1000,v1=".len() + 64);
        let tol = Duration::from_secs(300);
        assert_eq!(verify_signature(b"k", &header, body, 1000, tol), Ok(1000));
        for bad in [
            "",
            "t=1000",
            "v1=00",
            "t=,v1=00",
            "t=-1,v1=00",
            "t=1,t=1,v1=00",
            "t=1,v1=0g",
            "t=1,v1=abc",
            "garbage",
        ] {
            assert!(
                verify_signature(b"k", bad, body, 1000, tol).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            verify_signature(b"k", "t=1000,v2=00", body, 1000, tol),
            Err(SignatureError::NoSignature)
        );
        let long = format!("{header},{}", "v9=0,".repeat(1000));
        assert_eq!(
            verify_signature(b"k", &long, body, 1000, tol),
            Err(SignatureError::Malformed)
        );
    }
}

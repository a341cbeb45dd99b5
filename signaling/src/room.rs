//! A room: its participants, their tracks, and the media objects behind them.
//!
//! Each room is an actor: one tokio task owning the room's state and processing
//! [`RoomCommand`]s one at a time, so no lock is held across the awaits on the media worker
//! and one room's failure cannot touch another. The actor turns signaling requests into
//! worker calls (transports, producers, consumers), writes the SDP, and pushes every frame a
//! participant must see into that participant's outbound queue, in order. A participant whose
//! queue is full (a slow reader) is removed.
//!
//! Every request is checked against the sender's grants *as they are now* (an admin can change
//! them while it is in the room, see [`crate::room_service`]): publishing needs `publish`, the
//! subscribe side `subscribe`, chat `publish_data`, muting or removing others `room_admin`.
//! `hidden` participants are never announced to the others and may not publish or chat. A
//! room that is not stored opens only for a token with `room_create` (and is then stored with
//! a fresh meeting code); a stored room's settings (participant limit, empty timeout) apply.
//!
//! A room can span workers (cores). It starts on its *home* worker, where the registry placed
//! it; once each of its workers holds [`RoomSettings::participants_per_worker`] of its
//! participants, a newcomer's transports go to one more worker of the pool
//! ([`WorkerPool::place_room_extension`]; when the room is on every worker already, to its
//! least-populated one), where the room has a router of its own. Everything of a participant
//! lives on its worker, and ids are only unique per worker, so every worker call goes to the
//! participant's worker. A subscriber on another worker than the publisher consumes a *copy*
//! of the track on its own worker ([`sfu_core::pipe`]), created when a subscriber there first
//! needs it and reused by the next; the copies close by themselves with the track. Speaker
//! events come from the home worker only, which therefore holds a copy of every audio track.
//! An extension worker left without participants is given back (its router closes).
//!
//! The actor also owns the meeting: it is recorded through a
//! [`MeetingRecorder`](crate::meeting_recorder::MeetingRecorder) (never waited for), its chat
//! lives in a [`ChatLog`] for the meeting only, and lifecycle events go to the webhooks. A room
//! empty for its empty timeout ends its meeting (chat gone, `room_finished`) and closes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sfu_core::driver::WorkerHandle;
use sfu_core::pipe::{PipeEndpoint, PipeSource};
use sfu_core::worker_pool::{RoomPlacement, WorkerPool};
use sfu_core::{
    ConsumerId, MediaKind, ProducerId, RouterId, RtpParameters, TransportId, WebRtcTransportInfo,
    WebRtcTransportOptions, Worker,
};
use tokio::sync::{mpsc, oneshot};

use crate::access_token::{Claims, Grants, unix_now};
use crate::chat::{ChatAddressee, ChatLog, ChatSender};
use crate::meeting_recorder::MeetingEvent;
use crate::metrics::Live;
use crate::protocol::{
    ErrorCode, ParticipantInfo, ProtocolError, PublishTrack, PublishedTrack, ServerMessage,
    SubscribedTrack, TrackInfo, TrackSource,
};
use crate::registry::Registry;
use crate::room_service::{
    AdminRequest, CongestionSnapshot, ConsumerCounters, LiveRoomInfo, ParticipantDetails,
    ParticipantStats, RoomService, RoomServiceError, TrackAllocation, TransportCounters,
};
use crate::sdp::{self, Direction, LocalTransport, SubscribeSection};
use crate::storage::{MAX_EMPTY_TIMEOUT_SECS, MAX_PARTICIPANTS};
use crate::webhooks::{WebhookEvent, WebhookParticipant, WebhookTrack, unix_millis};

/// What a session sends on its outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// A frame to send.
    Frame(ServerMessage),
    /// Send `closing` with this reason, then close the socket.
    Close(String),
}

/// A session's outbound queue.
pub type OutboundQueue = mpsc::Sender<Outbound>;

/// Requests to a room actor.
#[derive(Debug)]
pub enum RoomCommand {
    /// A verified participant enters. The reply carries its sid.
    Join {
        /// Request id of the `join` frame.
        id: Value,
        /// Verified token claims.
        claims: Claims,
        /// The session's outbound queue.
        outbound: OutboundQueue,
        /// Fired (with a reason) when the room removes this participant for reading too slowly:
        /// its queue is full, so the session must close the socket itself.
        kick: oneshot::Sender<String>,
        /// Where to report the sid (or why not).
        reply: oneshot::Sender<Result<String, ProtocolError>>,
    },
    /// A signaling request from a joined participant.
    Request {
        /// Who.
        sid: String,
        /// Its request id.
        id: Value,
        /// What.
        request: ParticipantRequest,
    },
    /// The participant's session ended.
    Leave {
        /// Who.
        sid: String,
    },
    /// A media transport of this room closed on its worker.
    TransportClosed {
        /// The worker (pool index): transport ids are only unique per worker.
        worker: usize,
        /// Which.
        transport: TransportId,
        /// Why.
        reason: String,
    },
    /// The room's dominant speaker changed on its home worker.
    ActiveSpeaker {
        /// The audio producer speaking (on the home worker), if any.
        producer: Option<ProducerId>,
    },
    /// The server shuts down: tell everyone and stop.
    Shutdown,
    /// An admin operation (from [`RoomService`]).
    Admin(AdminRequest),
}

/// Requests a joined participant can make.
#[derive(Debug)]
pub enum ParticipantRequest {
    /// Publish offer.
    Publish {
        /// SDP offer.
        sdp: String,
        /// Mid → source.
        tracks: Vec<PublishTrack>,
    },
    /// Subscribe answer.
    SubscribeAnswer {
        /// SDP answer.
        sdp: String,
        /// Answered version.
        version: u64,
    },
    /// Mute a track.
    Mute {
        /// Track id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// Unpublish a track.
    Unpublish {
        /// Track id.
        track: String,
    },
    /// A chat message.
    Chat {
        /// The text.
        text: String,
        /// The addressee's sid, or everyone.
        to: Option<String>,
    },
    /// Remove another participant (room admins only).
    RemoveParticipant {
        /// Its sid.
        participant: String,
    },
    /// Change what this participant receives of a track.
    SetSubscription {
        /// Track id.
        track: String,
        /// Layer preferences.
        preferences: sfu_core::consumer::ConsumerPreferences,
        /// Pause (true) or resume (false).
        paused: Option<bool>,
    },
}

/// Room settings: the defaults of rooms that are not stored (a stored room's own limits
/// replace them), and the service every room shares.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Maximum participants at once.
    pub max_participants: usize,
    /// How many of a room's participants one worker takes before the room spreads to one
    /// more worker of the pool (only matters with two workers or more; 0 counts as 1).
    pub participants_per_worker: usize,
    /// How long an empty room stays open (its meeting running) before it closes.
    pub empty_timeout: Duration,
    /// Storage, webhooks, revocations and the admin directory.
    pub service: RoomService,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            max_participants: 100,
            participants_per_worker: DEFAULT_PARTICIPANTS_PER_WORKER,
            empty_timeout: Duration::ZERO,
            service: RoomService::default(),
        }
    }
}

/// [`RoomSettings::participants_per_worker`] unless configured: a worker (one core) forwards
/// a 50-person meeting of camera and microphone tracks (about 2,500 consumers) comfortably,
/// and rooms that size rarely need the pipes a second worker costs.
pub const DEFAULT_PARTICIPANTS_PER_WORKER: usize = 50;

struct Track {
    info: TrackInfo,
    /// The producer on its publisher's worker.
    producer: ProducerId,
    /// That worker (pool index).
    worker: usize,
    /// The publisher's transport there: copies of one publisher's tracks name it.
    publisher_transport: TransportId,
    /// Its parameters as produced, which its copies on other workers take.
    parameters: RtpParameters,
    /// Its copies on the room's other workers, by pool index: created when a subscriber on
    /// that worker first needs it (and on the home worker for every audio track, for the
    /// active speaker); they close with the producer.
    copies: BTreeMap<usize, ProducerId>,
    publish_mid: String,
    /// Counts the track in `sfu_tracks` while it exists.
    _live: Live,
}

impl Track {
    /// The producer that carries this track on `worker`, if there is one yet.
    fn producer_on(&self, worker: usize) -> Option<ProducerId> {
        if worker == self.worker {
            Some(self.producer)
        } else {
            self.copies.get(&worker).copied()
        }
    }
}

/// The room's media on one worker of the pool: a router of its own (ids are per worker).
struct RoomWorker {
    /// Index in the pool.
    index: usize,
    handle: Arc<WorkerHandle>,
    router: RouterId,
    /// The room's share of an extension worker's load, held while the room uses it. `None`
    /// for the home worker, whose placement the registry holds for the room's whole life.
    _placement: Option<RoomPlacement>,
}

struct Slot {
    mid: String,
    kind: MediaKind,
    track: String,
    publisher: String,
    consumer: Option<ConsumerId>,
    parameters: Option<RtpParameters>,
    /// The subscriber asked not to receive it (independent of the publisher's mute).
    paused_by_subscriber: bool,
}

struct Subscription {
    transport: WebRtcTransportInfo,
    slots: Vec<Slot>,
    version: u64,
    awaiting_answer: bool,
    dirty: bool,
    fingerprint_known: bool,
}

struct Publication {
    transport: WebRtcTransportInfo,
    fingerprint: sfu_core::Fingerprint,
    /// Per mid, what was accepted in the last answer.
    accepted: BTreeMap<String, Option<RtpParameters>>,
    answers: u64,
}

struct Participant {
    info: ParticipantInfo,
    /// The worker (pool index) holding its transports, producers and consumers.
    worker: usize,
    grants: Grants,
    /// The verified token it joined with (identity, `jti` and expiry, for revocation).
    claims: Claims,
    /// When it joined (unix ms).
    joined_at_ms: u64,
    outbound: OutboundQueue,
    kick: Option<oneshot::Sender<String>>,
    subscription: Subscription,
    publication: Option<Publication>,
    /// Counts the participant in `sfu_participants` while it is in the room.
    _live: Live,
}

/// The room actor's state.
pub struct Room {
    name: String,
    /// The workers the room is on, in the order it took them; the first is its home (where
    /// it was placed, whose active-speaker detector speaks for the room) and stays while the
    /// room lives.
    workers: Vec<RoomWorker>,
    registry: Registry,
    settings: RoomSettings,
    participants: BTreeMap<String, Participant>,
    tracks: BTreeMap<String, Track>,
    /// Participants whose queue overflowed, removed after the current command.
    evicted: Vec<String>,
    /// The sid of the current dominant speaker.
    active_speaker: Option<String>,
    /// The service every room shares.
    service: RoomService,
    /// This actor's entry in the service's directory, and its admin channel.
    generation: u64,
    admin: Option<mpsc::UnboundedReceiver<RoomCommand>>,
    /// Whether the stored room was looked up yet, and what it is.
    loaded: bool,
    stored: Option<crate::storage::Room>,
    /// When the current meeting started (unix ms); `None` between meetings.
    meeting_started: Option<u64>,
    /// Closed by an admin: joins are refused until the actor stops.
    closing: bool,
    /// This meeting's chat.
    chat: ChatLog,
    /// Sessions per identity: a meeting records an identity's first join and last leave.
    presence: HashMap<String, usize>,
    /// Counts the room in `sfu_rooms` while the actor lives.
    _live: Live,
}

fn local(info: &WebRtcTransportInfo) -> LocalTransport {
    LocalTransport {
        ice_ufrag: info.ice_ufrag.clone(),
        ice_pwd: info.ice_pwd.clone(),
        fingerprint: info.fingerprint.clone(),
        candidates: info.candidates.clone(),
    }
}

fn internal(e: impl std::fmt::Display) -> ProtocolError {
    tracing::warn!("room internal error: {e}");
    ProtocolError::new(ErrorCode::Internal, "internal server error")
}

impl Room {
    /// Creates the room's router on its home worker (`home`, the pool's worker `index`) and
    /// returns the actor state.
    pub async fn create(
        name: String,
        index: usize,
        home: Arc<WorkerHandle>,
        registry: Registry,
        settings: RoomSettings,
    ) -> Result<Self, ProtocolError> {
        let router = home
            .call(|w, _| w.create_router())
            .await
            .map_err(internal)?;
        registry.watch_router(index, router, &name);
        let live = registry.metrics().room();
        let service = settings.service.clone();
        let (generation, admin) = service.register(&name);
        Ok(Self {
            name,
            workers: vec![RoomWorker {
                index,
                handle: home,
                router,
                _placement: None,
            }],
            registry,
            settings,
            participants: BTreeMap::new(),
            tracks: BTreeMap::new(),
            evicted: Vec::new(),
            active_speaker: None,
            chat: ChatLog::new(service.chat_limits()),
            service,
            generation,
            admin: Some(admin),
            loaded: false,
            stored: None,
            meeting_started: None,
            closing: false,
            presence: HashMap::new(),
            _live: live,
        })
    }

    /// Processes commands until the room is empty for its empty timeout (or closed, or shut
    /// down), then ends its meeting and closes its router.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<RoomCommand>) {
        let mut admin = self.admin.take();
        let mut empty_since: Option<tokio::time::Instant> = None;
        loop {
            let deadline = empty_since.map(|t| t + self.settings.empty_timeout);
            let command = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                Some(command) = async {
                    match admin.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => command,
                () = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    empty_since = None;
                    if self.close_if_idle(&commands).await {
                        break;
                    }
                    continue;
                }
            };
            self.handle(command).await;
            for sid in std::mem::take(&mut self.evicted) {
                if let Some(kick) = self.participants.get_mut(&sid).and_then(|p| p.kick.take()) {
                    let _ = kick.send("too slow: frames were not read".into());
                }
                self.remove_participant(&sid).await;
            }
            if !self.participants.is_empty() {
                empty_since = None;
            } else if self.settings.empty_timeout.is_zero()
                || self.closing
                || self.meeting_started.is_none()
            {
                if self.close_if_idle(&commands).await {
                    break;
                }
            } else if empty_since.is_none() {
                empty_since = Some(tokio::time::Instant::now());
            }
        }
        self.end_meeting();
        self.service.deregister(&self.name, self.generation);
        // Extensions first: their copies then close on their own side, not by message.
        for w in self.workers.drain(..).rev() {
            let router = w.router;
            let _ = w.handle.call(move |w, _| w.close_router(router)).await;
        }
        tracing::info!(room = %self.name, "room closed");
    }

    /// The room's part on the pool's worker `index`.
    fn room_worker(&self, index: usize) -> Result<&RoomWorker, ProtocolError> {
        self.workers
            .iter()
            .find(|w| w.index == index)
            .ok_or_else(|| internal(format!("the room is not on worker {index}")))
    }

    /// The pool index of the room's home worker.
    fn home(&self) -> usize {
        self.workers.first().map_or(0, |w| w.index)
    }

    /// Runs `f` on the pool's worker `index` (one the room is on).
    async fn on_worker<R: Send + 'static>(
        &self,
        index: usize,
        f: impl FnOnce(&mut Worker, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ProtocolError> {
        let handle = self.room_worker(index)?.handle.clone();
        handle.call(f).await.map_err(internal)
    }

    /// How many of the room's participants are on the pool's worker `index`.
    fn population(&self, index: usize) -> usize {
        self.participants
            .values()
            .filter(|p| p.worker == index)
            .count()
    }

    /// Where a newcomer's media goes: the first of the room's workers (in the order the room
    /// took them) with fewer than [`RoomSettings::participants_per_worker`] participants; else
    /// one more worker of the pool; else (the room is on every worker) its least-populated.
    async fn worker_for_newcomer(&mut self) -> Result<usize, ProtocolError> {
        let per_worker = self.settings.participants_per_worker.max(1);
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| self.population(w.index) < per_worker)
        {
            return Ok(w.index);
        }
        let pool: Arc<WorkerPool> = self.registry.pool().clone();
        let on: Vec<usize> = self.workers.iter().map(|w| w.index).collect();
        if pool.len() > on.len() {
            pool.refresh_load().await;
        }
        if let Some(placement) = pool.place_room_extension(&on) {
            let handle = placement.worker().clone();
            match handle.call(|w, _| w.create_router()).await {
                Ok(router) => {
                    let index = placement.index();
                    tracing::info!(room = %self.name, worker = index, "room extended to another worker");
                    self.workers.push(RoomWorker {
                        index,
                        handle,
                        router,
                        _placement: Some(placement),
                    });
                    return Ok(index);
                }
                Err(e) => tracing::warn!(room = %self.name, "cannot extend the room: {e}"),
            }
        }
        self.workers
            .iter()
            .min_by_key(|w| self.population(w.index))
            .map(|w| w.index)
            .ok_or_else(|| internal("a room without workers"))
    }

    /// Gives back every extension worker without participants: its router closes (with the
    /// copies on it, which tell their sources to stop) and the room's share of its load goes.
    async fn release_idle_workers(&mut self) {
        let home = self.home();
        let idle: Vec<usize> = self
            .workers
            .iter()
            .map(|w| w.index)
            .filter(|&i| i != home && self.population(i) == 0)
            .collect();
        for index in idle {
            let Some(at) = self.workers.iter().position(|w| w.index == index) else {
                continue;
            };
            let w = self.workers.remove(at);
            let router = w.router;
            if let Err(e) = w.handle.call(move |w, _| w.close_router(router)).await {
                tracing::warn!(room = %self.name, worker = index, "closing the room's router: {e}");
            }
            for t in self.tracks.values_mut() {
                t.copies.remove(&index);
            }
            tracing::info!(room = %self.name, worker = index, "room left an idle worker");
        }
    }

    /// The producer carrying `track` on the pool's worker `worker`: the track's own there, or
    /// its copy, created and connected to the source on first need.
    async fn producer_on(
        &mut self,
        track: &str,
        worker: usize,
    ) -> Result<ProducerId, ProtocolError> {
        let t = self
            .tracks
            .get(track)
            .ok_or_else(|| internal("track vanished"))?;
        if let Some(p) = t.producer_on(worker) {
            return Ok(p);
        }
        let source = PipeSource {
            endpoint: PipeEndpoint {
                worker: t.worker,
                producer: t.producer,
            },
            publisher: t.publisher_transport,
        };
        let parameters = t.parameters.clone();
        let screen = t.info.source == TrackSource::Screen;
        let source_worker = t.worker;
        let router = self.room_worker(worker)?.router;
        let copy = self
            .on_worker(worker, move |w, _| {
                let copy = w.create_pipe_producer(router, source, parameters)?;
                // Subscribers' bandwidth goes to a shared screen first, on every worker.
                if screen && let Err(e) = w.set_producer_screen(copy, true) {
                    let _ = w.close_producer(copy);
                    return Err(e);
                }
                Ok(copy)
            })
            .await?
            .map_err(internal)?;
        let to = PipeEndpoint {
            worker,
            producer: copy,
        };
        let connected = self
            .on_worker(source_worker, move |w, now| {
                w.connect_pipe(now, source.endpoint.producer, to)
            })
            .await;
        if !matches!(connected, Ok(Ok(()))) {
            // The source is gone (its transport closed meanwhile): no packet will ever come.
            let _ = self
                .on_worker(worker, move |w, _| w.close_producer(copy))
                .await;
            return Err(internal(format!(
                "cannot pipe track {track} to worker {worker}"
            )));
        }
        if let Some(t) = self.tracks.get_mut(track) {
            t.copies.insert(worker, copy);
        }
        tracing::debug!(room = %self.name, %track, from = source_worker, to = worker, "track piped");
        Ok(copy)
    }

    /// Ends the meeting, then removes the room unless commands are queued (a join arrived: it
    /// will start the next meeting).
    async fn close_if_idle(&mut self, commands: &mpsc::UnboundedReceiver<RoomCommand>) -> bool {
        // Ended before the registry forgets the room, so the next actor of this name starts
        // its meeting (and its webhooks) after this one's end.
        self.end_meeting();
        self.registry.remove_if_idle(&self.name, commands).await
    }

    async fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join {
                id,
                claims,
                outbound,
                kick,
                reply,
            } => {
                let result = self.join(id, claims, outbound, kick).await;
                let _ = reply.send(result);
            }
            RoomCommand::Request { sid, id, request } => {
                if let Err(e) = self.request(&sid, id.clone(), request).await {
                    self.registry.metrics().count_error(e.code);
                    self.send(&sid, e.to_message(Some(id)));
                }
            }
            RoomCommand::Leave { sid } => self.remove_participant(&sid).await,
            RoomCommand::TransportClosed {
                worker,
                transport,
                reason,
            } => {
                let owner = self.participants.iter().find(|(_, p)| {
                    p.worker == worker
                        && (p.subscription.transport.id == transport
                            || p.publication
                                .as_ref()
                                .is_some_and(|x| x.transport.id == transport))
                });
                if let Some((sid, p)) = owner {
                    let sid = sid.clone();
                    let _ = p.outbound.try_send(Outbound::Close(format!(
                        "media connection closed: {reason}"
                    )));
                    self.remove_participant(&sid).await;
                }
            }
            RoomCommand::ActiveSpeaker { producer } => {
                // The home worker names its own producer: a track's, or a copy of one.
                let home = self.home();
                let participant = producer
                    .and_then(|p| {
                        self.tracks
                            .values()
                            .find(|t| t.producer_on(home) == Some(p))
                    })
                    .map(|t| t.info.participant.clone());
                self.active_speaker.clone_from(&participant);
                self.broadcast("", &ServerMessage::ActiveSpeaker { participant });
            }
            RoomCommand::Shutdown => {
                for p in self.participants.values() {
                    let _ = p
                        .outbound
                        .try_send(Outbound::Close("server shutting down".into()));
                }
                self.participants.clear();
            }
            RoomCommand::Admin(request) => self.admin(request).await,
        }
    }

    /// Starts the meeting at the first join: recorded in storage (if the room is stored),
    /// announced by webhook.
    fn start_meeting(&mut self) {
        if self.meeting_started.is_some() {
            return;
        }
        let now = unix_millis();
        self.meeting_started = Some(now);
        if self.stored.is_some() {
            self.service
                .recorder(&self.name)
                .record(MeetingEvent::Start {
                    at_ms: millis_i64(now),
                });
        }
        self.webhook(WebhookEvent::room_started(&self.name, now));
    }

    /// Ends the meeting: storage computes its peak and total, the chat is forgotten.
    fn end_meeting(&mut self) {
        if self.meeting_started.take().is_none() {
            return;
        }
        let now = unix_millis();
        if self.stored.is_some() {
            self.service.recorder(&self.name).record(MeetingEvent::End {
                at_ms: millis_i64(now),
                done: None,
            });
        }
        self.chat.clear();
        self.presence.clear();
        self.webhook(WebhookEvent::room_finished(&self.name, now));
    }

    fn webhook(&self, event: WebhookEvent) {
        if let Some(hooks) = self.service.webhooks() {
            hooks.send(event);
        }
    }

    /// Looks the room up in storage once per actor (and again on [`AdminRequest::Reload`]),
    /// applying its limits.
    async fn load_stored(&mut self) -> Result<(), ProtocolError> {
        self.loaded = true;
        match self.service.stored_room(&self.name).await {
            Ok(stored) => {
                self.apply_stored(stored);
                Ok(())
            }
            Err(e) => {
                self.service.count_storage_failure("looking up a room", &e);
                Err(ProtocolError::new(
                    ErrorCode::Internal,
                    "cannot look the room up right now",
                ))
            }
        }
    }

    fn apply_stored(&mut self, stored: Option<crate::storage::Room>) {
        if let Some(room) = &stored {
            self.settings.max_participants =
                usize::try_from(room.max_participants).unwrap_or(usize::MAX);
            self.settings.empty_timeout = Duration::from_secs(room.empty_timeout_secs.into());
        }
        self.stored = stored;
    }

    /// Queues a frame for a participant; a full queue means a slow reader, who is dropped.
    fn send(&mut self, sid: &str, message: ServerMessage) {
        let Some(p) = self.participants.get(sid) else {
            return;
        };
        if p.outbound.try_send(Outbound::Frame(message)).is_err()
            && !self.evicted.iter().any(|s| s == sid)
        {
            // A slow reader is disconnected, never buffered without end.
            tracing::info!(room = %self.name, %sid, "outbound queue full: removing participant");
            self.evicted.push(sid.to_owned());
        }
    }

    fn broadcast(&mut self, except: &str, message: &ServerMessage) {
        let sids: Vec<String> = self
            .participants
            .keys()
            .filter(|s| s.as_str() != except)
            .cloned()
            .collect();
        for sid in sids {
            self.send(&sid, message.clone());
        }
    }

    async fn join(
        &mut self,
        id: Value,
        claims: Claims,
        outbound: OutboundQueue,
        kick: oneshot::Sender<String>,
    ) -> Result<String, ProtocolError> {
        if self.closing {
            return Err(ProtocolError::new(
                ErrorCode::RoomNotFound,
                "the room is closing",
            ));
        }
        if self
            .service
            .is_revoked(&self.name, &claims.sub, &claims.jti, unix_now())
        {
            return Err(ProtocolError::new(
                ErrorCode::TokenRevoked,
                "this token was revoked in this room",
            ));
        }
        if !self.loaded
            && let Err(e) = self.load_stored().await
        {
            // Fail closed: without storage only a token that may create the room opens it
            // (live only, unrecorded); look again next time.
            self.loaded = false;
            if !claims.grants.room_create {
                return Err(e);
            }
        }
        if self.meeting_started.is_none() && self.stored.is_none() {
            if !claims.grants.room_create {
                return Err(ProtocolError::new(
                    ErrorCode::RoomNotFound,
                    format!(
                        "room {:?} does not exist and this token may not create it",
                        self.name
                    ),
                ));
            }
            if self.loaded {
                let max = u32::try_from(self.settings.max_participants)
                    .unwrap_or(MAX_PARTICIPANTS)
                    .clamp(1, MAX_PARTICIPANTS);
                let empty = u32::try_from(self.settings.empty_timeout.as_secs())
                    .unwrap_or(MAX_EMPTY_TIMEOUT_SECS)
                    .min(MAX_EMPTY_TIMEOUT_SECS);
                match self
                    .service
                    .create_stored_room(&self.name, max, empty, millis_i64(unix_millis()))
                    .await
                {
                    Ok(room) => self.apply_stored(Some(room)),
                    Err(e) => self.service.count_storage_failure("storing a new room", &e),
                }
            }
        }
        if self.participants.len() >= self.settings.max_participants {
            return Err(ProtocolError::new(ErrorCode::RoomFull, "the room is full"));
        }
        let sid = format!("PA_{}", random_id());
        let worker = self.worker_for_newcomer().await?;
        let router = self.room_worker(worker)?.router;
        let created = self
            .on_worker(worker, move |w, now| {
                // Unarmed: its connect deadlines start with its first offer (see add_slot), so a
                // participant alone in the room is not cut after 30 s.
                let options = WebRtcTransportOptions {
                    armed: false,
                    ..Default::default()
                };
                w.create_webrtc_transport(now, router, options)
            })
            .await
            .and_then(|r| r.map_err(internal));
        let transport = match created {
            Ok(t) => t,
            Err(e) => {
                // A worker taken for this newcomer alone is given back.
                self.release_idle_workers().await;
                return Err(e);
            }
        };
        self.registry
            .watch_transport(worker, transport.id, &self.name);
        let info = ParticipantInfo {
            sid: sid.clone(),
            identity: claims.sub.clone(),
            name: claims.name.clone(),
        };
        let joined_at_ms = unix_millis();
        let hidden = claims.grants.hidden;
        let participant = Participant {
            info: info.clone(),
            worker,
            grants: claims.grants,
            claims: claims.clone(),
            joined_at_ms,
            outbound,
            kick: Some(kick),
            subscription: Subscription {
                transport,
                slots: Vec::new(),
                version: 0,
                awaiting_answer: false,
                dirty: false,
                fingerprint_known: false,
            },
            publication: None,
            _live: self.registry.metrics().participant(),
        };
        let others: Vec<ParticipantInfo> = self
            .participants
            .values()
            .filter(|p| !p.grants.hidden)
            .map(|p| p.info.clone())
            .collect();
        let tracks: Vec<TrackInfo> = self.tracks.values().map(|t| t.info.clone()).collect();
        self.participants.insert(sid.clone(), participant);
        self.start_meeting();
        let sessions = self.presence.entry(claims.sub.clone()).or_insert(0);
        *sessions += 1;
        if *sessions == 1 && self.stored.is_some() {
            self.service
                .recorder(&self.name)
                .record(MeetingEvent::Join {
                    identity: claims.sub.clone(),
                    name: claims.name.clone(),
                    at_ms: millis_i64(joined_at_ms),
                });
        }
        self.webhook(WebhookEvent::participant_joined(
            &self.name,
            webhook_participant(&info),
            joined_at_ms,
        ));
        self.send(
            &sid,
            ServerMessage::Joined {
                id,
                room: self.name.clone(),
                participant: info.clone(),
                participants: others,
                tracks,
                grants: claims.grants,
                meeting_code: self.stored.as_ref().map(|r| r.meeting_code.clone()),
            },
        );
        let history = self.chat.history_for(&claims.sub);
        if !history.is_empty() {
            self.send(&sid, ServerMessage::ChatHistory { messages: history });
        }
        if !hidden {
            self.broadcast(
                &sid,
                &ServerMessage::ParticipantJoined { participant: info },
            );
        }
        // A newcomer learns who is speaking now, not only at the next change.
        if let Some(speaker) = self.active_speaker.clone() {
            self.send(
                &sid,
                ServerMessage::ActiveSpeaker {
                    participant: Some(speaker),
                },
            );
        }
        if claims.grants.subscribe {
            let track_ids: Vec<String> = self.tracks.keys().cloned().collect();
            for t in track_ids {
                self.add_slot(&sid, &t).await;
            }
            self.renegotiate(&sid);
        }
        tracing::info!(room = %self.name, %sid, identity = %claims.sub, "joined");
        Ok(sid)
    }

    async fn request(
        &mut self,
        sid: &str,
        id: Value,
        request: ParticipantRequest,
    ) -> Result<(), ProtocolError> {
        let Some(p) = self.participants.get(sid) else {
            // Removed while this frame was on its way; the socket is closing.
            return Err(ProtocolError::new(ErrorCode::NotJoined, "not in the room"));
        };
        // The grants as they are now: an admin may have changed them since the join.
        let grants = p.grants;
        let awaiting_answer = p.subscription.awaiting_answer;
        let denied = |what: &str| {
            Err(ProtocolError::new(
                ErrorCode::PermissionDenied,
                format!("your grants do not allow {what}"),
            ))
        };
        match request {
            ParticipantRequest::Publish { sdp, tracks } => {
                if !grants.publish {
                    return denied("publishing");
                }
                if grants.hidden {
                    return denied("publishing while hidden");
                }
                self.publish(sid, id, &sdp, &tracks).await
            }
            ParticipantRequest::SubscribeAnswer { sdp, version } => {
                // The answer to an offer already sent is allowed even after `subscribe` was
                // taken away: that offer is the one that stopped the media.
                if !grants.subscribe && !awaiting_answer {
                    return denied("subscribing");
                }
                self.subscribe_answer(sid, id, &sdp, version).await
            }
            ParticipantRequest::Mute { track, muted } => {
                self.mute(sid, Some(id), &track, muted, grants.room_admin)
                    .await
            }
            ParticipantRequest::Chat { text, to } => {
                if !grants.publish_data {
                    return denied("sending chat messages");
                }
                if grants.hidden {
                    return denied("chatting while hidden");
                }
                self.post_chat(sid, id, &text, to.as_deref())
            }
            ParticipantRequest::RemoveParticipant { participant } => {
                if !grants.room_admin {
                    return denied("removing participants");
                }
                if !self.participants.contains_key(&participant) {
                    return Err(ProtocolError::new(
                        ErrorCode::UnknownParticipant,
                        format!("no participant {participant:?}"),
                    ));
                }
                self.send(sid, ServerMessage::Ok { id });
                self.expel(&participant, "removed from the room by an admin")
                    .await;
                Ok(())
            }
            ParticipantRequest::SetSubscription {
                track,
                preferences,
                paused,
            } => {
                if !grants.subscribe {
                    return denied("subscribing");
                }
                self.set_subscription(sid, &track, preferences, paused)
                    .await?;
                self.send(sid, ServerMessage::Ok { id });
                Ok(())
            }
            ParticipantRequest::Unpublish { track } => {
                self.owned_track(sid, &track)?;
                self.unpublish(&track).await;
                self.send(sid, ServerMessage::Ok { id });
                Ok(())
            }
        }
    }

    fn owned_track(&self, sid: &str, track: &str) -> Result<(), ProtocolError> {
        match self.tracks.get(track) {
            Some(t) if t.info.participant == sid => Ok(()),
            _ => Err(ProtocolError::new(
                ErrorCode::UnknownTrack,
                format!("no track {track:?} of yours"),
            )),
        }
    }

    async fn publish(
        &mut self,
        sid: &str,
        id: Value,
        sdp_text: &str,
        sources: &[PublishTrack],
    ) -> Result<(), ProtocolError> {
        let p = self
            .participants
            .get(sid)
            .ok_or_else(|| internal("publisher vanished"))?;
        if !p.grants.publish {
            return Err(ProtocolError::new(
                ErrorCode::PermissionDenied,
                "your token does not allow publishing",
            ));
        }
        let offer = sdp::parse_description(sdp_text)
            .map_err(|e| ProtocolError::new(ErrorCode::InvalidSdp, e.to_string()))?;
        if let Some(publication) = &p.publication
            && publication.fingerprint != offer.fingerprint
        {
            return Err(ProtocolError::new(
                ErrorCode::InvalidSdp,
                "the DTLS fingerprint cannot change within a session",
            ));
        }
        // Validate every new sending section before creating anything.
        let previous = p
            .publication
            .as_ref()
            .map(|x| x.accepted.clone())
            .unwrap_or_default();
        let mut plan: Vec<(usize, Option<RtpParameters>, bool)> = Vec::new();
        for (i, m) in offer.media.iter().enumerate() {
            let sending = !m.rejected
                && matches!(m.direction, Direction::SendOnly | Direction::SendRecv)
                && m.kind.is_some();
            if !sending {
                plan.push((i, None, false));
                continue;
            }
            match previous.get(&m.mid) {
                Some(Some(params)) => plan.push((i, Some(params.clone()), false)),
                _ => {
                    let params = sdp::publish_parameters(m).map_err(|e| {
                        ProtocolError::new(ErrorCode::NoSupportedCodec, e.to_string())
                    })?;
                    params
                        .validate_for_producer()
                        .map_err(|e| ProtocolError::new(ErrorCode::InvalidSdp, e.to_string()))?;
                    plan.push((i, Some(params), true));
                }
            }
        }
        let worker = p.worker;
        // The transport, once.
        if p.publication.is_none() {
            let router = self.room_worker(worker)?.router;
            let fingerprint = offer.fingerprint.clone();
            let options = WebRtcTransportOptions {
                remote_fingerprint: Some(fingerprint.clone()),
                ..Default::default()
            };
            let transport = self
                .on_worker(worker, move |w, now| {
                    w.create_webrtc_transport(now, router, options)
                })
                .await?
                .map_err(internal)?;
            self.registry
                .watch_transport(worker, transport.id, &self.name);
            if let Some(p) = self.participants.get_mut(sid) {
                p.publication = Some(Publication {
                    transport,
                    fingerprint,
                    accepted: BTreeMap::new(),
                    answers: 0,
                });
            }
        }
        let transport_id = self
            .participants
            .get(sid)
            .and_then(|p| p.publication.as_ref())
            .map(|x| x.transport.id)
            .ok_or_else(|| internal("no publication"))?;
        // Tracks whose section stopped sending end.
        let ended: Vec<String> = self
            .tracks
            .values()
            .filter(|t| t.info.participant == sid)
            .filter(|t| {
                !plan.iter().any(|(i, params, _)| {
                    params.is_some() && offer.media.get(*i).is_some_and(|m| m.mid == t.publish_mid)
                })
            })
            .map(|t| t.info.id.clone())
            .collect();
        for t in ended {
            self.unpublish(&t).await;
        }
        let mut created = Vec::new();
        let mut answered = Vec::new();
        let mut accepted = Vec::new();
        for (i, params, new) in plan {
            let Some(m) = offer.media.get(i) else {
                continue;
            };
            accepted.push(params.clone());
            let Some(params) = params else { continue };
            let kind = m.kind.unwrap_or(MediaKind::Audio);
            let track_id = if new {
                let for_worker = params.clone();
                let producer = self
                    .on_worker(worker, move |w, _| w.produce(transport_id, for_worker))
                    .await?
                    .map_err(|e| ProtocolError::new(ErrorCode::InvalidSdp, e.to_string()))?;
                let source = sources
                    .iter()
                    .find(|s| s.mid == m.mid)
                    .map(|s| s.source)
                    .unwrap_or(match kind {
                        MediaKind::Audio => TrackSource::Microphone,
                        MediaKind::Video => TrackSource::Camera,
                    });
                if source == TrackSource::Screen {
                    // Subscribers' bandwidth goes to a shared screen first.
                    self.on_worker(worker, move |w, _| w.set_producer_screen(producer, true))
                        .await?
                        .map_err(|e| ProtocolError::new(ErrorCode::Internal, e.to_string()))?;
                }
                let track_id = format!("TR_{}", random_id());
                let info = TrackInfo {
                    id: track_id.clone(),
                    participant: sid.to_owned(),
                    kind: kind.to_string(),
                    source,
                    muted: false,
                };
                self.tracks.insert(
                    track_id.clone(),
                    Track {
                        info,
                        producer,
                        worker,
                        publisher_transport: transport_id,
                        parameters: params,
                        copies: BTreeMap::new(),
                        publish_mid: m.mid.clone(),
                        _live: self.registry.metrics().track(kind),
                    },
                );
                // The home worker's detector speaks for the room: it must hear every voice.
                let home = self.home();
                if kind == MediaKind::Audio
                    && worker != home
                    && let Err(e) = self.producer_on(&track_id, home).await
                {
                    tracing::warn!(room = %self.name, track = %track_id, "no active speaker detection for it: {}", e.message);
                }
                created.push(track_id.clone());
                track_id
            } else {
                self.tracks
                    .values()
                    .find(|t| t.info.participant == sid && t.publish_mid == m.mid)
                    .map(|t| t.info.id.clone())
                    .unwrap_or_default()
            };
            if let Some(t) = self.tracks.get(&track_id) {
                answered.push(PublishedTrack {
                    id: track_id.clone(),
                    mid: m.mid.clone(),
                    kind: kind.to_string(),
                    source: t.info.source,
                });
            }
        }
        let p = self
            .participants
            .get_mut(sid)
            .ok_or_else(|| internal("publisher vanished"))?;
        let publication = p
            .publication
            .as_mut()
            .ok_or_else(|| internal("no publication"))?;
        publication.answers += 1;
        publication.accepted = offer
            .media
            .iter()
            .zip(&accepted)
            .map(|(m, a)| (m.mid.clone(), a.clone()))
            .collect();
        let answer = sdp::write_publish_answer(
            &offer,
            &accepted,
            &local(&publication.transport),
            publication.answers,
        );
        self.send(
            sid,
            ServerMessage::PublishAnswer {
                id,
                sdp: answer,
                tracks: answered,
            },
        );
        for track in created {
            let Some(info) = self.tracks.get(&track).map(|t| t.info.clone()) else {
                continue;
            };
            if let Some(p) = self.participants.get(sid) {
                self.webhook(WebhookEvent::track_published(
                    &self.name,
                    webhook_participant(&p.info),
                    webhook_track(&info),
                    unix_millis(),
                ));
            }
            self.broadcast(sid, &ServerMessage::TrackPublished { track: info });
            let subscribers: Vec<String> = self
                .participants
                .iter()
                .filter(|(s, p)| s.as_str() != sid && p.grants.subscribe)
                .map(|(s, _)| s.clone())
                .collect();
            for s in subscribers {
                self.add_slot(&s, &track).await;
                self.renegotiate(&s);
            }
        }
        Ok(())
    }

    /// Creates a consumer of `track` for subscriber `sid` in a new section.
    async fn add_slot(&mut self, sid: &str, track: &str) {
        let Some(t) = self.tracks.get(track) else {
            return;
        };
        let Some(worker) = self.participants.get(sid).map(|p| p.worker) else {
            return;
        };
        let (muted, publisher) = (t.info.muted, t.info.participant.clone());
        let kind = if t.info.kind == "audio" {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        // Consumed where the subscriber is: a copy when the publisher is on another worker.
        let producer = match self.producer_on(track, worker).await {
            Ok(p) => p,
            Err(e) => {
                return tracing::warn!(room = %self.name, %sid, %track, "cannot consume: {}", e.message);
            }
        };
        let Some(p) = self.participants.get(sid) else {
            return;
        };
        // A finished section of the same kind is reused: the SDP would otherwise grow with
        // every track that ever ended (a long meeting would outgrow the frame limit).
        let reuse = p
            .subscription
            .slots
            .iter()
            .position(|s| s.parameters.is_none() && s.kind == kind);
        let mid = match reuse {
            Some(i) => p
                .subscription
                .slots
                .get(i)
                .map(|s| s.mid.clone())
                .unwrap_or_default(),
            None => p.subscription.slots.len().to_string(),
        };
        let transport = p.subscription.transport.id;
        let caps = sdp::subscriber_capabilities();
        let consumer_mid = mid.clone();
        // The receive transport was created at join, idle until its first offer: its connect
        // deadlines start now, not at join (a participant alone for a minute must not be cut).
        let first_offer = p.subscription.version == 0;
        let result = self
            .on_worker(worker, move |w, now| {
                if first_offer {
                    w.rearm_transport(now, transport)?;
                }
                let (id, params) =
                    w.consume(now, transport, producer, &caps, Some(consumer_mid))?;
                if muted {
                    w.set_consumer_paused(now, id, true)?;
                }
                Ok::<_, sfu_core::WorkerError>((id, params))
            })
            .await;
        let (consumer, parameters) = match result {
            Ok(Ok((id, params))) => (Some(id), Some(params)),
            Ok(Err(e)) => {
                tracing::warn!(room = %self.name, %sid, %track, "cannot consume: {e}");
                return;
            }
            Err(e) => return tracing::warn!("worker gone: {}", e.message),
        };
        if let Some(p) = self.participants.get_mut(sid) {
            let slot = Slot {
                mid,
                kind,
                track: track.to_owned(),
                publisher,
                consumer,
                parameters,
                paused_by_subscriber: false,
            };
            match reuse.and_then(|i| p.subscription.slots.get_mut(i)) {
                Some(old) => *old = slot,
                None => p.subscription.slots.push(slot),
            }
        }
    }

    /// Sends a new subscribe offer, or marks one as needed if an answer is outstanding.
    fn renegotiate(&mut self, sid: &str) {
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        let sub = &mut p.subscription;
        if sub.awaiting_answer {
            sub.dirty = true;
            return;
        }
        if sub.slots.is_empty() {
            return;
        }
        sub.version += 1;
        sub.awaiting_answer = true;
        sub.dirty = false;
        let sections: Vec<SubscribeSection> = sub
            .slots
            .iter()
            .map(|s| SubscribeSection {
                mid: s.mid.clone(),
                kind: s.kind,
                parameters: s.parameters.clone(),
                stream_id: s.publisher.clone(),
                track_id: s.track.clone(),
            })
            .collect();
        let tracks = sub
            .slots
            .iter()
            .filter(|s| s.parameters.is_some())
            .map(|s| SubscribedTrack {
                id: s.track.clone(),
                mid: s.mid.clone(),
                participant: s.publisher.clone(),
            })
            .collect();
        let offer = sdp::write_subscribe_offer(&sections, &local(&sub.transport), sub.version);
        let version = sub.version;
        self.send(
            sid,
            ServerMessage::SubscribeOffer {
                sdp: offer,
                version,
                tracks,
            },
        );
    }

    async fn subscribe_answer(
        &mut self,
        sid: &str,
        id: Value,
        sdp_text: &str,
        version: u64,
    ) -> Result<(), ProtocolError> {
        let p = self
            .participants
            .get(sid)
            .ok_or_else(|| internal("subscriber vanished"))?;
        let sub = &p.subscription;
        if !sub.awaiting_answer || sub.version != version {
            return Err(ProtocolError::new(
                ErrorCode::OutOfOrder,
                format!("no outstanding subscribe offer with version {version}"),
            ));
        }
        let answer = sdp::parse_description(sdp_text)
            .map_err(|e| ProtocolError::new(ErrorCode::InvalidSdp, e.to_string()))?;
        if answer.setup.as_deref() == Some("passive") {
            return Err(ProtocolError::new(
                ErrorCode::InvalidSdp,
                "the server is the DTLS server: answer with a=setup:active",
            ));
        }
        if !sub.fingerprint_known {
            let transport = sub.transport.id;
            let fingerprint = answer.fingerprint.clone();
            self.on_worker(p.worker, move |w, now| {
                w.set_remote_fingerprint(now, transport, fingerprint)
            })
            .await?
            .map_err(internal)?;
        }
        let Some(p) = self.participants.get_mut(sid) else {
            return Ok(());
        };
        p.subscription.fingerprint_known = true;
        p.subscription.awaiting_answer = false;
        let dirty = p.subscription.dirty;
        self.send(sid, ServerMessage::Ok { id });
        if dirty {
            self.renegotiate(sid);
        }
        Ok(())
    }

    async fn set_subscription(
        &mut self,
        sid: &str,
        track: &str,
        preferences: sfu_core::consumer::ConsumerPreferences,
        paused: Option<bool>,
    ) -> Result<(), ProtocolError> {
        let worker = self
            .participants
            .get(sid)
            .map(|p| p.worker)
            .ok_or_else(|| internal("subscriber vanished"))?;
        let slot = self
            .participants
            .get_mut(sid)
            .and_then(|p| {
                p.subscription
                    .slots
                    .iter_mut()
                    .find(|s| s.track == track && s.consumer.is_some())
            })
            .ok_or_else(|| {
                ProtocolError::new(
                    ErrorCode::UnknownTrack,
                    format!("you do not receive track {track:?}"),
                )
            })?;
        if let Some(paused) = paused {
            slot.paused_by_subscriber = paused;
        }
        let consumer = slot
            .consumer
            .ok_or_else(|| internal("slot without consumer"))?;
        // A track its publisher muted stays paused whatever the subscriber asks.
        let muted = self.tracks.get(track).is_some_and(|t| t.info.muted);
        self.on_worker(worker, move |w, now| {
            w.set_consumer_preferences(now, consumer, preferences)?;
            if let Some(paused) = paused {
                w.set_consumer_paused(now, consumer, paused || muted)?;
            }
            Ok::<_, sfu_core::WorkerError>(())
        })
        .await?
        .map_err(internal)
    }

    /// Mutes a track: the requester's own, or anyone's for a room admin (`by_admin`). `id` is
    /// the request to answer (`None`: an admin operation from the service).
    async fn mute(
        &mut self,
        sid: &str,
        id: Option<Value>,
        track: &str,
        muted: bool,
        by_admin: bool,
    ) -> Result<(), ProtocolError> {
        match self.tracks.get(track) {
            Some(t) if t.info.participant == sid || by_admin => {}
            Some(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::PermissionDenied,
                    "muting another participant's track needs room_admin",
                ));
            }
            None => {
                return Err(ProtocolError::new(
                    ErrorCode::UnknownTrack,
                    format!("no track {track:?}"),
                ));
            }
        }
        // Each subscriber's consumer is on the subscriber's worker.
        let mut consumers: BTreeMap<usize, Vec<ConsumerId>> = BTreeMap::new();
        for p in self.participants.values() {
            for s in &p.subscription.slots {
                if s.track == track
                    && !s.paused_by_subscriber
                    && let Some(c) = s.consumer
                {
                    consumers.entry(p.worker).or_default().push(c);
                }
            }
        }
        // Muted media is not forwarded at all: the subscribers' bandwidth is saved.
        for (worker, consumers) in consumers {
            self.on_worker(worker, move |w, now| {
                for c in consumers {
                    let _ = w.set_consumer_paused(now, c, muted);
                }
            })
            .await?;
        }
        if let Some(t) = self.tracks.get_mut(track) {
            t.info.muted = muted;
        }
        // Everyone but the requester: a publisher muted by an admin learns it here.
        let except = match id {
            Some(id) => {
                self.send(sid, ServerMessage::Ok { id });
                sid.to_owned()
            }
            None => String::new(),
        };
        self.broadcast(
            &except,
            &ServerMessage::TrackMuted {
                track: track.to_owned(),
                muted,
            },
        );
        Ok(())
    }

    async fn unpublish(&mut self, track: &str) {
        let Some(t) = self.tracks.remove(track) else {
            return;
        };
        // Its copies on other workers close with it (and their consumers with them).
        let producer = t.producer;
        let _ = self
            .on_worker(t.worker, move |w, _| w.close_producer(producer))
            .await;
        if let Some(p) = self.participants.get(&t.info.participant) {
            self.webhook(WebhookEvent::track_unpublished(
                &self.name,
                webhook_participant(&p.info),
                webhook_track(&t.info),
                unix_millis(),
            ));
        }
        let subscribers: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.subscription
                    .slots
                    .iter()
                    .any(|s| s.track == track && s.parameters.is_some())
            })
            .map(|(s, _)| s.clone())
            .collect();
        self.broadcast(
            &t.info.participant,
            &ServerMessage::TrackUnpublished {
                track: track.to_owned(),
            },
        );
        for s in subscribers {
            if let Some(p) = self.participants.get_mut(&s) {
                for slot in p
                    .subscription
                    .slots
                    .iter_mut()
                    .filter(|slot| slot.track == track)
                {
                    slot.consumer = None;
                    slot.parameters = None;
                }
            }
            self.renegotiate(&s);
        }
    }

    async fn remove_participant(&mut self, sid: &str) {
        if !self.participants.contains_key(sid) {
            return;
        }
        let own: Vec<String> = self
            .tracks
            .values()
            .filter(|t| t.info.participant == sid)
            .map(|t| t.info.id.clone())
            .collect();
        for t in own {
            self.unpublish(&t).await;
        }
        let Some(p) = self.participants.remove(sid) else {
            return;
        };
        let worker = p.worker;
        let mut transports = vec![p.subscription.transport.id];
        transports.extend(p.publication.map(|x| x.transport.id));
        for t in &transports {
            self.registry.unwatch_transport(worker, *t);
        }
        let metrics = self.registry.metrics().clone();
        let _ = self
            .on_worker(worker, move |w, _| {
                for t in transports {
                    // Its counters leave the worker's sums with it: keep them in the totals.
                    if let Some(last) = w.transport_stats(t) {
                        metrics.retire_transport(t, last);
                    }
                    w.close_transport(t);
                }
            })
            .await;
        self.release_idle_workers().await;
        if !p.grants.hidden {
            self.broadcast(
                sid,
                &ServerMessage::ParticipantLeft {
                    participant: sid.to_owned(),
                },
            );
        }
        let now = unix_millis();
        let identity = &p.claims.sub;
        let last = match self.presence.get_mut(identity) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.presence.remove(identity);
                true
            }
            None => false,
        };
        if last && self.stored.is_some() && self.meeting_started.is_some() {
            self.service
                .recorder(&self.name)
                .record(MeetingEvent::Leave {
                    identity: identity.clone(),
                    at_ms: millis_i64(now),
                });
        }
        self.webhook(WebhookEvent::participant_left(
            &self.name,
            webhook_participant(&p.info),
            now,
        ));
        tracing::info!(room = %self.name, %sid, "left");
    }

    /// Removes a participant against its will: its token and identity are denied here until
    /// the token expires, its socket is closed with `reason`, then it leaves like anyone.
    async fn expel(&mut self, sid: &str, reason: &str) {
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        self.service.revoke(
            &self.name,
            Some(&p.claims.sub),
            Some(&p.claims.jti),
            p.claims.exp,
        );
        let _ = p.outbound.try_send(Outbound::Close(reason.to_owned()));
        // The session stops reading at once (not at the client's next frame).
        if let Some(kick) = p.kick.take() {
            let _ = kick.send(reason.to_owned());
        }
        self.remove_participant(sid).await;
    }

    fn post_chat(
        &mut self,
        sid: &str,
        id: Value,
        text: &str,
        to: Option<&str>,
    ) -> Result<(), ProtocolError> {
        let p = self
            .participants
            .get(sid)
            .ok_or_else(|| internal("sender vanished"))?;
        let addressee = match to {
            None => None,
            Some(to) => match self.participants.get(to) {
                // Hidden participants are not there as far as the others know.
                Some(a) if !a.grants.hidden || p.grants.room_admin => Some(ChatAddressee {
                    sid: to,
                    identity: &a.claims.sub,
                }),
                _ => {
                    return Err(ProtocolError::new(
                        ErrorCode::UnknownParticipant,
                        format!("no participant {to:?}"),
                    ));
                }
            },
        };
        let sender = ChatSender {
            sid,
            identity: &p.claims.sub,
            name: &p.info.name,
        };
        let message = self.chat.post(sender, addressee, text, unix_millis())?;
        let recipients: Vec<String> = match to {
            None => self.participants.keys().cloned().collect(),
            Some(to) if to == sid => vec![sid.to_owned()],
            Some(to) => vec![sid.to_owned(), to.to_owned()],
        };
        for r in recipients {
            self.send(
                &r,
                ServerMessage::Chat {
                    message: message.clone(),
                },
            );
        }
        self.send(sid, ServerMessage::Ok { id });
        Ok(())
    }
}

impl Room {
    async fn admin(&mut self, request: AdminRequest) {
        match request {
            AdminRequest::Info(reply) => {
                let _ = reply.send(LiveRoomInfo {
                    name: self.name.clone(),
                    meeting_code: self.stored.as_ref().map(|r| r.meeting_code.clone()),
                    participants: self.participants.len(),
                    tracks: self.tracks.len(),
                    max_participants: self.settings.max_participants,
                    started_at_ms: self.meeting_started,
                });
            }
            AdminRequest::Participants(reply) => {
                let list = self
                    .participants
                    .keys()
                    .filter_map(|sid| self.details(sid))
                    .collect();
                let _ = reply.send(list);
            }
            AdminRequest::Remove { sid, reply } => {
                let result = if self.participants.contains_key(&sid) {
                    self.expel(&sid, "removed from the room").await;
                    Ok(())
                } else {
                    Err(RoomServiceError::UnknownParticipant(sid))
                };
                let _ = reply.send(result);
            }
            AdminRequest::Mute {
                sid,
                track,
                muted,
                reply,
            } => {
                let owned = self
                    .tracks
                    .get(&track)
                    .is_some_and(|t| t.info.participant == sid);
                let result = if !self.participants.contains_key(&sid) {
                    Err(RoomServiceError::UnknownParticipant(sid))
                } else if !owned {
                    Err(RoomServiceError::UnknownTrack(track))
                } else {
                    self.mute(&sid, None, &track, muted, true)
                        .await
                        .map_err(|e| RoomServiceError::Worker(e.message))
                };
                let _ = reply.send(result);
            }
            AdminRequest::UpdateGrants { sid, grants, reply } => {
                let result = self.update_grants(&sid, grants).await;
                let _ = reply.send(result);
            }
            AdminRequest::Stats { sid, reply } => {
                let result = self.stats(&sid).await;
                let _ = reply.send(result);
            }
            AdminRequest::Close { reason, reply } => {
                self.closing = true;
                let sids: Vec<String> = self.participants.keys().cloned().collect();
                for sid in sids {
                    if let Some(p) = self.participants.get_mut(&sid) {
                        let _ = p.outbound.try_send(Outbound::Close(reason.clone()));
                        if let Some(kick) = p.kick.take() {
                            let _ = kick.send(reason.clone());
                        }
                    }
                    self.remove_participant(&sid).await;
                }
                let _ = reply.send(());
            }
            AdminRequest::Reload(reply) => {
                match self.service.stored_room(&self.name).await {
                    Ok(Some(room)) => self.apply_stored(Some(room)),
                    Ok(None) if self.stored.is_some() => {
                        // Deleted while live: the room closes.
                        self.stored = None;
                        let (tx, _) = tokio::sync::oneshot::channel();
                        Box::pin(self.admin(AdminRequest::Close {
                            reason: "the room was deleted".into(),
                            reply: tx,
                        }))
                        .await;
                    }
                    Ok(None) => {}
                    Err(e) => self.service.count_storage_failure("reloading a room", &e),
                }
                let _ = reply.send(());
            }
        }
    }

    fn details(&self, sid: &str) -> Option<ParticipantDetails> {
        let p = self.participants.get(sid)?;
        Some(ParticipantDetails {
            sid: sid.to_owned(),
            identity: p.info.identity.clone(),
            name: p.info.name.clone(),
            grants: p.grants,
            joined_at_ms: p.joined_at_ms,
            tracks: self
                .tracks
                .values()
                .filter(|t| t.info.participant == sid)
                .map(|t| t.info.clone())
                .collect(),
        })
    }

    /// Applies new grants at once. What they no longer allow stops: tracks end and the publish
    /// connection closes (`publish`), consumers close (`subscribe`), the others see the
    /// participant leave (`hidden`). A downgrade revokes the token it joined with.
    async fn update_grants(
        &mut self,
        sid: &str,
        grants: Grants,
    ) -> Result<ParticipantDetails, RoomServiceError> {
        let p = self
            .participants
            .get_mut(sid)
            .ok_or_else(|| RoomServiceError::UnknownParticipant(sid.to_owned()))?;
        let old = p.grants;
        p.grants = grants;
        if !old.is_subset_of(&grants) {
            self.service
                .revoke(&self.name, None, Some(&p.claims.jti), p.claims.exp);
        }
        let info = p.info.clone();
        let worker = p.worker;
        if !grants.join {
            self.expel(sid, "removed from the room").await;
            return Err(RoomServiceError::UnknownParticipant(sid.to_owned()));
        }
        if (old.publish && !grants.publish) || (!old.hidden && grants.hidden) {
            let own: Vec<String> = self
                .tracks
                .values()
                .filter(|t| t.info.participant == sid)
                .map(|t| t.info.id.clone())
                .collect();
            for t in own {
                self.unpublish(&t).await;
            }
            let publication = self
                .participants
                .get_mut(sid)
                .and_then(|p| p.publication.take());
            if let Some(publication) = publication {
                let transport = publication.transport.id;
                self.registry.unwatch_transport(worker, transport);
                let metrics = self.registry.metrics().clone();
                let _ = self
                    .on_worker(worker, move |w, _| {
                        if let Some(last) = w.transport_stats(transport) {
                            metrics.retire_transport(transport, last);
                        }
                        w.close_transport(transport);
                    })
                    .await;
            }
        }
        if old.subscribe && !grants.subscribe {
            let consumers: Vec<ConsumerId> = self
                .participants
                .get_mut(sid)
                .map(|p| {
                    p.subscription
                        .slots
                        .iter_mut()
                        .filter_map(|slot| {
                            slot.parameters = None;
                            slot.consumer.take()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let _ = self
                .on_worker(worker, move |w, _| {
                    for c in consumers {
                        let _ = w.close_consumer(c);
                    }
                })
                .await;
            self.renegotiate(sid);
        } else if !old.subscribe && grants.subscribe {
            let track_ids: Vec<String> = self
                .tracks
                .values()
                .filter(|t| t.info.participant != sid)
                .map(|t| t.info.id.clone())
                .collect();
            for t in track_ids {
                self.add_slot(sid, &t).await;
            }
            self.renegotiate(sid);
        }
        if old.hidden != grants.hidden {
            let message = if grants.hidden {
                ServerMessage::ParticipantLeft {
                    participant: sid.to_owned(),
                }
            } else {
                ServerMessage::ParticipantJoined { participant: info }
            };
            self.broadcast(sid, &message);
        }
        self.send(sid, ServerMessage::GrantsChanged { grants });
        self.details(sid)
            .ok_or_else(|| RoomServiceError::UnknownParticipant(sid.to_owned()))
    }

    async fn stats(&self, sid: &str) -> Result<ParticipantStats, RoomServiceError> {
        let p = self
            .participants
            .get(sid)
            .ok_or_else(|| RoomServiceError::UnknownParticipant(sid.to_owned()))?;
        let publish = p.publication.as_ref().map(|x| x.transport.id);
        let subscribe = p.subscription.transport.id;
        let slots: Vec<(ConsumerId, String)> = p
            .subscription
            .slots
            .iter()
            .filter_map(|s| s.consumer.map(|c| (c, s.track.clone())))
            .collect();
        let sid = sid.to_owned();
        let handle = self
            .room_worker(p.worker)
            .map_err(|e| RoomServiceError::Worker(e.message))?
            .handle
            .clone();
        handle
            .call(move |w, now| {
                let consumers = slots
                    .iter()
                    .filter_map(|(c, track)| {
                        let stats = w.consumer_stats(*c)?;
                        Some(ConsumerCounters {
                            track: track.clone(),
                            packets: stats.packets,
                            bytes: stats.bytes,
                            retransmitted: stats.retransmitted,
                            rtt_ms: stats.rtt.map(duration_ms),
                            stream: w.consumer_stream(*c),
                        })
                    })
                    .collect();
                let congestion = w
                    .congestion_stats(now, subscribe)
                    .map(|cc| CongestionSnapshot {
                        estimate_bps: cc.estimate.0,
                        rtt_ms: cc.rtt.map(duration_ms),
                        loss_rate: cc.loss_rate,
                        pacer_queue_packets: cc.pacer_queue_packets,
                        pacer_queue_bytes: cc.pacer_queue_bytes,
                        pacer_queue_delay_ms: duration_ms(cc.pacer_queue_delay),
                        allocations: cc
                            .allocations
                            .iter()
                            .filter_map(|(c, stream)| {
                                let track = slots.iter().find(|(id, _)| id == c)?.1.clone();
                                Some(TrackAllocation {
                                    track,
                                    stream: *stream,
                                })
                            })
                            .collect(),
                    });
                ParticipantStats {
                    sid,
                    publish: publish
                        .and_then(|t| w.transport_stats(t))
                        .map(TransportCounters::from),
                    subscribe: w
                        .transport_stats(subscribe)
                        .map(TransportCounters::from)
                        .unwrap_or_default(),
                    consumers,
                    congestion,
                }
            })
            .await
            .map_err(|e| RoomServiceError::Worker(e.to_string()))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Unix ms as storage takes them.
fn millis_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn webhook_participant(info: &ParticipantInfo) -> WebhookParticipant {
    WebhookParticipant {
        identity: info.identity.clone(),
        name: info.name.clone(),
    }
}

fn webhook_track(info: &TrackInfo) -> WebhookTrack {
    WebhookTrack {
        id: info.id.clone(),
        kind: info.kind.clone(),
        source: info.source,
    }
}

/// A random id suffix: 12 base-62 characters.
pub fn random_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

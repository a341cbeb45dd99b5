//! The room service: what every room of a server shares beyond the media worker, and the
//! operations an admin (the REST API) performs on live rooms.
//!
//! A [`RoomService`] holds the [`Storage`] (rooms with their stored settings, meeting
//! history), the [`WebhookSender`] rooms emit lifecycle events through, the chat limits, the
//! per-room deny-list of revoked tokens and identities, and a directory of the live room
//! actors. It is cheap to clone (clones share everything) and travels to every room inside
//! [`RoomSettings`](crate::room::RoomSettings).
//!
//! What it must not do: hold room state (each room actor owns its participants, tracks and
//! chat; the admin operations here are requests to that actor, answered within
//! [`ADMIN_TIMEOUT`]), or make a room wait for storage (writes go through a
//! [`MeetingRecorder`](crate::meeting_recorder::MeetingRecorder), lookups are bounded by
//! [`RoomServiceConfig::storage_timeout`]).
//!
//! # Admin operations
//!
//! | method | what |
//! |---|---|
//! | [`RoomService::list_rooms`] | the live rooms, with counts |
//! | [`RoomService::list_participants`] | a room's participants (hidden ones too): identity, name, sid, grants, joined_at, tracks |
//! | [`RoomService::remove_participant`] | closes its socket, stops its media, revokes its token |
//! | [`RoomService::mute_track`] | mutes or unmutes one of its tracks (nothing is forwarded while muted) |
//! | [`RoomService::update_grants`] | changes its grants at once; a downgrade revokes its token |
//! | [`RoomService::participant_stats`] | bytes/packets in and out, per consumer, and the subscriber's congestion control |
//! | [`RoomService::close_room`] | tells everyone, closes the room and ends its meeting |
//! | [`RoomService::room_deleted`] / [`RoomService::room_updated`] | after a storage change to a live room |
//!
//! Storage-backed room CRUD is done on [`Storage`] directly; call [`RoomService::room_deleted`]
//! after deleting a room and [`RoomService::room_updated`] after changing its settings, so a
//! live room closes or applies its new limits at once.
//!
//! # Revocation
//!
//! Removing a participant denies its token's `jti` and its identity in that room; a downgrade
//! of its grants denies the `jti`. A denial lasts until the token would have expired anyway,
//! so the deny-list stays small, and it survives the room closing (it lives here, not in the
//! actor). A guest's `jti` is its invitation's: removing or downgrading a guest revokes the
//! invitation it came with (mint a new one for the others).
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use signaling::room_service::{RoomService, RoomServiceConfig};
//! use signaling::storage::Storage;
//!
//! let storage = Storage::connect("sqlite://sfu.db").await?;
//! let rooms = RoomService::new(RoomServiceConfig { storage: Some(storage), ..Default::default() });
//! for room in rooms.list_rooms().await {
//!     for p in rooms.list_participants(&room.name).await? {
//!         println!("{} {} in {}", p.sid, p.identity, room.name);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::access_token::Grants;
use crate::chat::ChatLimits;
use crate::meeting_code::MeetingCode;
use crate::meeting_recorder::{MeetingRecorder, RecorderStats};
use crate::protocol::{ErrorCode, ProtocolError, TrackInfo};
use crate::room::RoomCommand;
use crate::storage::{self, NewRoom, Storage, StorageError};
use crate::webhooks::WebhookSender;

/// How long an admin operation waits for the room actor's answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`RoomService`] is set up.
#[derive(Clone)]
pub struct RoomServiceConfig {
    /// The database; `None`: a private in-memory SQLite database, opened on first use (tests
    /// and development).
    pub storage: Option<Storage>,
    /// Where lifecycle events go; `None`: no webhooks.
    pub webhooks: Option<WebhookSender>,
    /// Longest a storage lookup or write may take before the room carries on without it.
    pub storage_timeout: Duration,
    /// Bounds of each meeting's chat.
    pub chat: ChatLimits,
}

impl Default for RoomServiceConfig {
    fn default() -> Self {
        Self {
            storage: None,
            webhooks: None,
            storage_timeout: Duration::from_secs(2),
            chat: ChatLimits::default(),
        }
    }
}

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomServiceError {
    /// No live room of that name.
    #[error("room {0:?} is not live")]
    RoomNotLive(String),
    /// No participant with that sid in the room.
    #[error("no participant {0:?} in the room")]
    UnknownParticipant(String),
    /// The participant has no track with that id.
    #[error("the participant has no track {0:?}")]
    UnknownTrack(String),
    /// Grants without `join`: use [`RoomService::remove_participant`].
    #[error("grants must include join (to take it away, remove the participant)")]
    InvalidGrants,
    /// The room did not answer within [`ADMIN_TIMEOUT`], or closed meanwhile.
    #[error("the room did not answer")]
    Unavailable,
    /// The media worker failed.
    #[error("media worker error: {0}")]
    Worker(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A live room, for listings.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveRoomInfo {
    /// Its name.
    pub name: String,
    /// Its meeting code, when it is stored.
    pub meeting_code: Option<String>,
    /// Participants now, hidden ones included.
    pub participants: usize,
    /// Tracks published now.
    pub tracks: usize,
    /// Its participant limit now.
    pub max_participants: usize,
    /// When its current meeting started (unix ms), if someone has joined.
    pub started_at_ms: Option<u64>,
}

/// A participant, as an admin sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ParticipantDetails {
    /// Session id (what the other operations take).
    pub sid: String,
    /// Identity from its token.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Its grants now.
    pub grants: Grants,
    /// When it joined (unix ms).
    pub joined_at_ms: u64,
    /// Its published tracks.
    pub tracks: Vec<TrackInfo>,
}

/// One transport's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TransportCounters {
    /// RTP packets received.
    pub packets_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// Bytes received (all datagrams).
    pub bytes_in: u64,
    /// Bytes sent (all datagrams).
    pub bytes_out: u64,
    /// RTCP packets received.
    pub rtcp_in: u64,
    /// RTCP packets sent.
    pub rtcp_out: u64,
}

impl From<sfu_core::webrtc_transport::TransportStats> for TransportCounters {
    fn from(s: sfu_core::webrtc_transport::TransportStats) -> Self {
        Self {
            packets_in: s.rtp_in,
            packets_out: s.rtp_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            rtcp_in: s.rtcp_in,
            rtcp_out: s.rtcp_out,
        }
    }
}

/// What one of the participant's consumers sent it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsumerCounters {
    /// The track it receives.
    pub track: String,
    /// RTP packets sent.
    pub packets: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Packets retransmitted after a NACK.
    pub retransmitted: u64,
    /// Round-trip time from the subscriber's reports, ms.
    pub rtt_ms: Option<u64>,
    /// The simulcast stream forwarded now (0 = lowest), if any.
    pub stream: Option<usize>,
}

/// The subscriber side's congestion control.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CongestionSnapshot {
    /// The bandwidth estimate the allocation fits in, bits/s.
    pub estimate_bps: u64,
    /// Round-trip time, ms.
    pub rtt_ms: Option<u64>,
    /// Loss fraction of the last window (0–1).
    pub loss_rate: f64,
    /// Packets waiting in the pacer.
    pub pacer_queue_packets: usize,
    /// Bytes waiting in the pacer.
    pub pacer_queue_bytes: usize,
    /// How long the oldest packet in the pacer has waited, ms.
    pub pacer_queue_delay_ms: u64,
    /// Per received track: the highest stream allowed (`None`: paused for lack of bandwidth).
    pub allocations: Vec<TrackAllocation>,
}

/// One consumer's share of the estimate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrackAllocation {
    /// The track.
    pub track: String,
    /// The highest stream allowed, `None` when paused for lack of bandwidth.
    pub stream: Option<usize>,
}

/// Per-participant stats.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParticipantStats {
    /// The participant.
    pub sid: String,
    /// What it sends us (its publish transport), once it published.
    pub publish: Option<TransportCounters>,
    /// What we send it (its subscribe transport).
    pub subscribe: TransportCounters,
    /// Per received track.
    pub consumers: Vec<ConsumerCounters>,
    /// Congestion control toward it, once it runs.
    pub congestion: Option<CongestionSnapshot>,
}

/// Requests from the service to a room actor.
#[derive(Debug)]
pub enum AdminRequest {
    /// Counts for listings.
    Info(oneshot::Sender<LiveRoomInfo>),
    /// Every participant.
    Participants(oneshot::Sender<Vec<ParticipantDetails>>),
    /// Remove a participant (and revoke its token).
    Remove {
        /// Its sid.
        sid: String,
        /// The answer.
        reply: oneshot::Sender<Result<(), RoomServiceError>>,
    },
    /// Mute or unmute a participant's track.
    Mute {
        /// Its sid.
        sid: String,
        /// The track.
        track: String,
        /// New state.
        muted: bool,
        /// The answer.
        reply: oneshot::Sender<Result<(), RoomServiceError>>,
    },
    /// Replace a participant's grants.
    UpdateGrants {
        /// Its sid.
        sid: String,
        /// New grants.
        grants: Grants,
        /// The answer.
        reply: oneshot::Sender<Result<ParticipantDetails, RoomServiceError>>,
    },
    /// A participant's stats.
    Stats {
        /// Its sid.
        sid: String,
        /// The answer.
        reply: oneshot::Sender<Result<ParticipantStats, RoomServiceError>>,
    },
    /// Close the room.
    Close {
        /// Told to every participant.
        reason: String,
        /// Answered once everyone was told.
        reply: oneshot::Sender<()>,
    },
    /// The stored settings changed (or the stored room is gone): read them again.
    Reload(oneshot::Sender<()>),
}

struct LiveRoom {
    generation: u64,
    commands: mpsc::UnboundedSender<RoomCommand>,
}

/// One denial: a token id or an identity, until a time (unix seconds).
struct Denial {
    jti: Option<String>,
    identity: Option<String>,
    until: u64,
}

struct Inner {
    storage: OnceCell<Storage>,
    webhooks: Option<WebhookSender>,
    storage_timeout: Duration,
    chat: ChatLimits,
    live: Mutex<HashMap<String, LiveRoom>>,
    denied: Mutex<HashMap<String, Vec<Denial>>>,
    generation: AtomicU64,
    recorder: Arc<RecorderStats>,
    /// One per room name, so the meetings of successive actors of a room are written in order.
    recorders: Mutex<HashMap<String, MeetingRecorder>>,
}

/// The room service (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct RoomService {
    inner: Arc<Inner>,
}

impl Default for RoomService {
    fn default() -> Self {
        Self::new(RoomServiceConfig::default())
    }
}

impl fmt::Debug for RoomService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomService")
            .field("storage", &self.inner.storage.get().map(Storage::backend))
            .field("webhooks", &self.inner.webhooks.is_some())
            .finish_non_exhaustive()
    }
}

impl RoomService {
    /// A service with `config`.
    pub fn new(config: RoomServiceConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage: OnceCell::new_with(config.storage),
                webhooks: config.webhooks,
                storage_timeout: config.storage_timeout,
                chat: config.chat,
                live: Mutex::default(),
                denied: Mutex::default(),
                generation: AtomicU64::new(1),
                recorder: Arc::default(),
                recorders: Mutex::default(),
            }),
        }
    }

    /// The database (opening the in-memory default on first use).
    pub async fn storage(&self) -> Result<Storage, StorageError> {
        self.inner
            .storage
            .get_or_try_init(|| Storage::connect("sqlite::memory:"))
            .await
            .cloned()
    }

    /// Where rooms send lifecycle events, if webhooks are configured.
    pub fn webhooks(&self) -> Option<&WebhookSender> {
        self.inner.webhooks.as_ref()
    }

    /// The bounds of each meeting's chat.
    pub fn chat_limits(&self) -> ChatLimits {
        self.inner.chat
    }

    /// Longest a storage call may hold up a room.
    pub fn storage_timeout(&self) -> Duration {
        self.inner.storage_timeout
    }

    /// Counters of the meeting recorders (storage writes given up).
    pub fn recorder_stats(&self) -> &Arc<RecorderStats> {
        &self.inner.recorder
    }

    /// Storage lookups or writes that failed or timed out, over every room.
    pub fn storage_failures(&self) -> u64 {
        self.inner.recorder.failures()
    }

    /// The meeting recorder of `room` (started on first use).
    pub(crate) fn recorder(&self, room: &str) -> MeetingRecorder {
        self.inner
            .recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(room.to_owned())
            .or_insert_with(|| MeetingRecorder::spawn(room.to_owned(), self.clone()))
            .clone()
    }

    pub(crate) fn count_storage_failure(&self, what: &str, error: &dyn fmt::Display) {
        self.inner.recorder.count_failure();
        tracing::warn!("storage: {what}: {error}");
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.inner.storage_timeout, call)
            .await
            .unwrap_or_else(|_| Err(StorageError::Backend("timed out".into())))
    }

    /// The stored room `name`, `None` if there is none. Bounded by the storage timeout.
    pub async fn stored_room(&self, name: &str) -> Result<Option<storage::Room>, StorageError> {
        let storage = self.bounded(self.storage()).await?;
        match self.bounded(storage.room_by_name(name)).await {
            Ok(room) => Ok(Some(room)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores a room created by a join with `room_create`, with a fresh meeting code. A room
    /// stored meanwhile under the same name is returned as it is.
    pub async fn create_stored_room(
        &self,
        name: &str,
        max_participants: u32,
        empty_timeout_secs: u32,
        now_ms: i64,
    ) -> Result<storage::Room, StorageError> {
        let storage = self.bounded(self.storage()).await?;
        let mut last = StorageError::Conflict {
            what: "meeting code",
        };
        // A code collision (1 in 4·10¹³ per live room) is retried with a new code.
        for _ in 0..3 {
            let new = NewRoom {
                name: name.to_owned(),
                meeting_code: MeetingCode::generate().as_str().to_owned(),
                max_participants,
                empty_timeout_secs,
                metadata: String::new(),
            };
            match self.bounded(storage.create_room(&new, now_ms)).await {
                Ok(room) => return Ok(room),
                Err(e @ StorageError::Conflict { .. }) => {
                    if let Ok(room) = self.bounded(storage.room_by_name(name)).await {
                        return Ok(room);
                    }
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Resolves what a guest typed as a meeting code to the room's name.
    pub async fn resolve_meeting_code(&self, typed: &str) -> Result<String, ProtocolError> {
        let code: MeetingCode = typed.parse().map_err(|e| {
            ProtocolError::new(ErrorCode::BadRequest, format!("invalid meeting code: {e}"))
        })?;
        let storage = self.bounded(self.storage()).await.map_err(|e| {
            self.count_storage_failure("resolving a meeting code", &e);
            ProtocolError::new(ErrorCode::Internal, "cannot look up the meeting code")
        })?;
        match self
            .bounded(storage.room_by_meeting_code(code.as_str()))
            .await
        {
            Ok(room) => Ok(room.name),
            Err(StorageError::NotFound { .. }) => Err(ProtocolError::new(
                ErrorCode::RoomNotFound,
                "no meeting has this code",
            )),
            Err(e) => {
                self.count_storage_failure("resolving a meeting code", &e);
                Err(ProtocolError::new(
                    ErrorCode::Internal,
                    "cannot look up the meeting code",
                ))
            }
        }
    }

    // ----- revocation -----

    /// Denies `jti` and/or `identity` in `room` until `until` (unix seconds).
    pub fn revoke(&self, room: &str, identity: Option<&str>, jti: Option<&str>, until: u64) {
        let mut denied = self
            .inner
            .denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        denied.entry(room.to_owned()).or_default().push(Denial {
            jti: jti.map(str::to_owned),
            identity: identity.map(str::to_owned),
            until,
        });
    }

    /// Whether a token with `jti` for `identity` was revoked in `room`, as of `now` (unix
    /// seconds). Expired denials are dropped on the way.
    pub fn is_revoked(&self, room: &str, identity: &str, jti: &str, now: u64) -> bool {
        let mut denied = self
            .inner
            .denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(list) = denied.get_mut(room) else {
            return false;
        };
        list.retain(|d| d.until >= now);
        let hit = list
            .iter()
            .any(|d| d.jti.as_deref() == Some(jti) || d.identity.as_deref() == Some(identity));
        if list.is_empty() {
            denied.remove(room);
        }
        hit
    }

    // ----- the directory of live rooms -----

    /// Files a new room actor; returns its generation and its admin channel.
    pub(crate) fn register(&self, room: &str) -> (u64, mpsc::UnboundedReceiver<RoomCommand>) {
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::unbounded_channel();
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                room.to_owned(),
                LiveRoom {
                    generation,
                    commands,
                },
            );
        (generation, receiver)
    }

    /// Forgets a room actor that stopped (unless a newer one took its name).
    pub(crate) fn deregister(&self, room: &str, generation: u64) {
        let mut live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if live.get(room).is_some_and(|r| r.generation == generation) {
            live.remove(room);
        }
    }

    fn sender(&self, room: &str) -> Option<mpsc::UnboundedSender<RoomCommand>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(room)
            .map(|r| r.commands.clone())
    }

    async fn ask<T>(
        &self,
        room: &str,
        request: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
    ) -> Result<T, RoomServiceError> {
        let sender = self
            .sender(room)
            .ok_or_else(|| RoomServiceError::RoomNotLive(room.to_owned()))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(RoomCommand::Admin(request(reply)))
            .map_err(|_| RoomServiceError::RoomNotLive(room.to_owned()))?;
        match tokio::time::timeout(ADMIN_TIMEOUT, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(RoomServiceError::RoomNotLive(room.to_owned())),
            Err(_) => Err(RoomServiceError::Unavailable),
        }
    }

    // ----- admin operations -----

    /// Every live room, in name order.
    pub async fn list_rooms(&self) -> Vec<LiveRoomInfo> {
        let mut names: Vec<String> = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        names.sort();
        let mut rooms = Vec::with_capacity(names.len());
        for name in names {
            // A room closing meanwhile is simply not listed.
            if let Ok(info) = self.ask(&name, AdminRequest::Info).await {
                rooms.push(info);
            }
        }
        rooms
    }

    /// One live room.
    pub async fn room_info(&self, room: &str) -> Result<LiveRoomInfo, RoomServiceError> {
        self.ask(room, AdminRequest::Info).await
    }

    /// The participants of a live room (hidden ones included), in join order.
    pub async fn list_participants(
        &self,
        room: &str,
    ) -> Result<Vec<ParticipantDetails>, RoomServiceError> {
        self.ask(room, AdminRequest::Participants).await
    }

    /// Removes a participant: its socket is closed (`closing` with reason "removed from the
    /// room"), its tracks end, and its token and identity are denied in this room until the
    /// token's expiry, so rejoining with it fails with `token_revoked`.
    pub async fn remove_participant(&self, room: &str, sid: &str) -> Result<(), RoomServiceError> {
        let sid = sid.to_owned();
        self.ask(room, |reply| AdminRequest::Remove { sid, reply })
            .await?
    }

    /// Mutes (or unmutes) one of a participant's tracks; its subscribers are told
    /// (`track_muted`), the publisher too.
    pub async fn mute_track(
        &self,
        room: &str,
        sid: &str,
        track: &str,
        muted: bool,
    ) -> Result<(), RoomServiceError> {
        let (sid, track) = (sid.to_owned(), track.to_owned());
        self.ask(room, |reply| AdminRequest::Mute {
            sid,
            track,
            muted,
            reply,
        })
        .await?
    }

    /// Replaces a participant's grants, effective at once: without `publish` its tracks end
    /// and its publish connection closes; without `subscribe` its consumers close; with
    /// `hidden` it disappears from the others' view. The participant gets `grants_changed`.
    /// If any grant was taken away, its token is denied in this room until expiry.
    pub async fn update_grants(
        &self,
        room: &str,
        sid: &str,
        grants: Grants,
    ) -> Result<ParticipantDetails, RoomServiceError> {
        if !grants.join {
            return Err(RoomServiceError::InvalidGrants);
        }
        let sid = sid.to_owned();
        self.ask(room, |reply| AdminRequest::UpdateGrants {
            sid,
            grants,
            reply,
        })
        .await?
    }

    /// A participant's counters: its publish and subscribe transports, each consumer, and
    /// the congestion control toward it (`Worker::congestion_stats`).
    pub async fn participant_stats(
        &self,
        room: &str,
        sid: &str,
    ) -> Result<ParticipantStats, RoomServiceError> {
        let sid = sid.to_owned();
        self.ask(room, |reply| AdminRequest::Stats { sid, reply })
            .await?
    }

    /// Closes a live room: everyone gets `closing` with `reason`, the meeting ends, the room's
    /// chat is gone. Joins that arrive while it closes are refused; a later join opens it again
    /// (if it is still stored, or with `room_create`).
    pub async fn close_room(&self, room: &str, reason: &str) -> Result<(), RoomServiceError> {
        let reason = reason.to_owned();
        self.ask(room, |reply| AdminRequest::Close { reason, reply })
            .await
    }

    /// Call after deleting a stored room: if it is live, it closes (not live: nothing to do).
    pub async fn room_deleted(&self, room: &str) {
        match self.close_room(room, "the room was deleted").await {
            Ok(()) | Err(RoomServiceError::RoomNotLive(_)) => {}
            Err(e) => tracing::warn!(%room, "closing a deleted room: {e}"),
        }
    }

    /// Call after changing a stored room's settings: a live room reads them again (a new
    /// participant limit applies to the next join).
    pub async fn room_updated(&self, room: &str) {
        match self.ask(room, AdminRequest::Reload).await {
            Ok(()) | Err(RoomServiceError::RoomNotLive(_)) => {}
            Err(e) => tracing::warn!(%room, "reloading a room's settings: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_match_jti_or_identity_and_expire() {
        let s = RoomService::default();
        s.revoke("r", Some("alice"), Some("j1"), 100);
        s.revoke("r", None, Some("j2"), 50);
        assert!(s.is_revoked("r", "alice", "other", 10));
        assert!(s.is_revoked("r", "bob", "j1", 10));
        assert!(s.is_revoked("r", "bob", "j2", 50));
        assert!(!s.is_revoked("r", "bob", "j2", 51), "expired");
        assert!(!s.is_revoked("other-room", "alice", "j1", 10));
        assert!(!s.is_revoked("r", "alice", "j1", 101));
        assert!(s.inner.denied.lock().unwrap().is_empty(), "pruned");
    }
}

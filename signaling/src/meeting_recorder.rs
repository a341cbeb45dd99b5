//! Writes one room's meeting history to storage, off the room actor.
//!
//! A [`MeetingRecorder`] is a small task per room with an unbounded queue of [`MeetingEvent`]s
//! applied in order: start (or carry on with the meeting left running by a restart), each
//! participant's join and leave, and the end. The room actor only queues: it never waits for
//! the database, so a slow or failing database cannot stall a live meeting. Each write has a
//! bounded timeout; a failure is logged and counted ([`RecorderStats`]) and the meeting goes on.
//! This module must not decide what a meeting is (the room actor does) and stores nothing
//! said or shown in a meeting (no chat, no media).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::room_service::RoomService;
use crate::storage::{MeetingId, StorageError};

/// Counters of storage writes the recorders gave up on, shared by every room of a server.
#[derive(Debug, Default)]
pub struct RecorderStats {
    failures: AtomicU64,
}

impl RecorderStats {
    /// Storage writes that failed or timed out.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// What happened to a meeting, in the order it happened.
#[derive(Debug)]
pub enum MeetingEvent {
    /// The room opened: reuse its running meeting (after a restart) or start one.
    Start {
        /// Unix ms.
        at_ms: i64,
    },
    /// An identity is now present (its first session in the room).
    Join {
        /// Identity.
        identity: String,
        /// Display name.
        name: String,
        /// Unix ms.
        at_ms: i64,
    },
    /// An identity is no longer present (its last session left).
    Leave {
        /// Identity.
        identity: String,
        /// Unix ms.
        at_ms: i64,
    },
    /// The room closed: end the meeting (peak and total are computed by storage).
    End {
        /// Unix ms.
        at_ms: i64,
        /// Told when the end is written (or given up).
        done: Option<oneshot::Sender<()>>,
    },
}

/// The room actor's handle on its recorder. Dropping it lets the task finish what is queued.
#[derive(Debug, Clone)]
pub struct MeetingRecorder {
    queue: mpsc::UnboundedSender<MeetingEvent>,
}

impl MeetingRecorder {
    /// Starts the recorder task of `room`, writing to `service`'s storage; every write gives
    /// up after the service's storage timeout.
    pub fn spawn(room: String, service: RoomService) -> Self {
        let (queue, events) = mpsc::unbounded_channel();
        tokio::spawn(run(room, service, events));
        Self { queue }
    }

    /// Queues an event; never waits.
    pub fn record(&self, event: MeetingEvent) {
        let _ = self.queue.send(event);
    }
}

async fn run(
    room: String,
    service: RoomService,
    mut events: mpsc::UnboundedReceiver<MeetingEvent>,
) {
    let timeout = service.storage_timeout();
    let stats = service.recorder_stats().clone();
    let mut meeting: Option<MeetingId> = None;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        stats.count_failure();
        tracing::warn!(%room, "meeting history: cannot record {what}: {e}");
    };
    while let Some(event) = events.recv().await {
        let storage = match bounded(timeout, service.storage()).await {
            Ok(storage) => storage,
            Err(e) => {
                fail("anything (no database)", &e);
                if let MeetingEvent::End {
                    done: Some(done), ..
                } = event
                {
                    let _ = done.send(());
                }
                continue;
            }
        };
        match event {
            MeetingEvent::Start { at_ms } => {
                let started = bounded(timeout, async {
                    match storage.running_meeting(&room).await? {
                        Some(m) => Ok(m),
                        None => storage.start_meeting(&room, at_ms).await,
                    }
                })
                .await;
                match started {
                    Ok(m) => {
                        tracing::info!(%room, meeting = m.id.0, "meeting recorded");
                        meeting = Some(m.id);
                    }
                    Err(e) => fail("the start", &e),
                }
            }
            MeetingEvent::Join {
                identity,
                name,
                at_ms,
            } => {
                let Some(id) = meeting else { continue };
                let result = bounded(timeout, async {
                    match storage.record_join(id, &identity, &name, at_ms).await {
                        // Still open from before a restart: close that stay, open this one.
                        Err(StorageError::Conflict { .. }) => {
                            storage.record_leave(id, &identity, at_ms).await?;
                            storage.record_join(id, &identity, &name, at_ms).await
                        }
                        other => other,
                    }
                })
                .await;
                if let Err(e) = result {
                    fail("a join", &e);
                }
            }
            MeetingEvent::Leave { identity, at_ms } => {
                let Some(id) = meeting else { continue };
                if let Err(e) = bounded(timeout, storage.record_leave(id, &identity, at_ms)).await {
                    fail("a leave", &e);
                }
            }
            MeetingEvent::End { at_ms, done } => {
                if let Some(id) = meeting.take()
                    && let Err(e) = bounded(timeout, storage.end_meeting(id, at_ms)).await
                {
                    fail("the end", &e);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}

async fn bounded<T>(
    timeout: Duration,
    write: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(timeout, write)
        .await
        .unwrap_or_else(|_| Err(StorageError::Backend("timed out".into())))
}

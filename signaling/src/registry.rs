//! The live rooms of this server, by name: where each room's media lives (which worker of
//! the pool) and which room owns each media transport.
//!
//! A session joins through [`Registry::join`], which creates the room actor on first use and
//! places it on the least-loaded worker of the [`WorkerPool`] (measured at that moment): the
//! room's *home* worker. The room's [`RoomPlacement`] there is held here while the room
//! lives, so closing the room frees its share of the worker's load; a room that outgrows its
//! home takes more workers itself (see [`crate::room`]) and holds those placements. A room
//! actor removes itself when its last participant leaves, under the same lock, so a join can
//! never land in a room that is shutting down. Worker events (a transport's consent expired,
//! DTLS failed) are routed to the room owning the transport, active-speaker changes to the
//! room whose home router they name (only home routers are filed: the home worker's detector
//! speaks for the room). Transport and router ids are only unique within a worker, so every
//! id is filed with its worker's index.
//!
//! This module decides where rooms start; it must not talk to the media plane beyond that
//! (the room actors do).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use sfu_core::driver::WorkerHandle;
use sfu_core::worker_pool::{RoomPlacement, WorkerPool};
use sfu_core::{RouterId, TransportId, WorkerEvent};
use tokio::sync::{Mutex, mpsc};

use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, ProtocolError};
use crate::room::{Room, RoomCommand, RoomSettings};

type RoomSender = mpsc::UnboundedSender<RoomCommand>;

/// A live room: its actor's channel and its place on a worker.
struct LiveRoom {
    sender: RoomSender,
    placement: RoomPlacement,
}

/// The rooms of one server.
#[derive(Clone)]
pub struct Registry {
    rooms: Arc<Mutex<HashMap<String, LiveRoom>>>,
    transports: Arc<StdMutex<HashMap<(usize, TransportId), String>>>,
    routers: Arc<StdMutex<HashMap<(usize, RouterId), String>>>,
    pool: Arc<WorkerPool>,
    settings: RoomSettings,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// An empty registry whose rooms live on `worker`, with metrics of its own.
    pub fn new(worker: Arc<WorkerHandle>, settings: RoomSettings) -> Self {
        Self::with_metrics(worker, settings, Arc::default())
    }

    /// An empty registry whose rooms live on `worker` and count themselves in `metrics`.
    pub fn with_metrics(
        worker: Arc<WorkerHandle>,
        settings: RoomSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_pool(
            Arc::new(WorkerPool::from_workers(vec![worker])),
            settings,
            metrics,
        )
    }

    /// An empty registry placing its rooms on the workers of `pool`.
    pub fn with_pool(pool: Arc<WorkerPool>, settings: RoomSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            rooms: Arc::default(),
            transports: Arc::default(),
            routers: Arc::default(),
            pool,
            settings,
            metrics,
        }
    }

    /// The metrics the rooms count themselves in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The workers the rooms are placed on.
    pub fn pool(&self) -> &Arc<WorkerPool> {
        &self.pool
    }

    /// The index in the pool of `room`'s home worker (where it was placed), while it is open.
    pub async fn room_worker(&self, room: &str) -> Option<usize> {
        self.rooms
            .lock()
            .await
            .get(room)
            .filter(|r| !r.sender.is_closed())
            .map(|r| r.placement.index())
    }

    /// Sends a `Join` to `room`, creating the room if needed (on the least-loaded worker);
    /// returns the room's command channel.
    pub async fn join(
        &self,
        room: &str,
        command: RoomCommand,
    ) -> Result<RoomSender, ProtocolError> {
        let mut rooms = self.rooms.lock().await;
        if let Some(live) = rooms.get(room)
            && !live.sender.is_closed()
        {
            live.sender
                .send(command)
                .map_err(|_| ProtocolError::new(ErrorCode::Internal, "room unavailable"))?;
            return Ok(live.sender.clone());
        }
        let placement = self
            .pool
            .place_room_measured()
            .await
            .ok_or_else(|| ProtocolError::new(ErrorCode::Internal, "no media worker"))?;
        let actor = Room::create(
            room.to_owned(),
            placement.index(),
            placement.worker().clone(),
            self.clone(),
            self.settings.clone(),
        )
        .await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(actor.run(receiver));
        sender
            .send(command)
            .map_err(|_| ProtocolError::new(ErrorCode::Internal, "room unavailable"))?;
        let worker = placement.index();
        rooms.insert(
            room.to_owned(),
            LiveRoom {
                sender: sender.clone(),
                placement,
            },
        );
        tracing::info!(%room, worker, "room created");
        Ok(sender)
    }

    /// Called by an empty room: removes it unless commands are still queued for it.
    pub async fn remove_if_idle(
        &self,
        room: &str,
        commands: &mpsc::UnboundedReceiver<RoomCommand>,
    ) -> bool {
        let mut rooms = self.rooms.lock().await;
        if !commands.is_empty() {
            return false;
        }
        // Dropping the placement takes the room off its worker's load.
        rooms.remove(room);
        if let Ok(mut r) = self.routers.lock() {
            r.retain(|_, name| name != room);
        }
        true
    }

    /// Number of live rooms.
    pub async fn room_count(&self) -> usize {
        self.rooms.lock().await.len()
    }

    /// Records that `transport` on the pool's worker `worker` belongs to `room`.
    pub fn watch_transport(&self, worker: usize, transport: TransportId, room: &str) {
        if let Ok(mut t) = self.transports.lock() {
            t.insert((worker, transport), room.to_owned());
        }
    }

    /// Records that `router` on the pool's worker `worker` is `room`'s home router: its
    /// active-speaker changes are the room's.
    pub fn watch_router(&self, worker: usize, router: RouterId, room: &str) {
        if let Ok(mut r) = self.routers.lock() {
            r.insert((worker, router), room.to_owned());
        }
    }

    /// Forgets a transport of the pool's worker `worker`.
    pub fn unwatch_transport(&self, worker: usize, transport: TransportId) {
        if let Ok(mut t) = self.transports.lock() {
            t.remove(&(worker, transport));
        }
    }

    /// Routes the events of the pool's worker `worker` to rooms until that worker stops.
    pub async fn dispatch_worker_events(
        self,
        worker: usize,
        mut events: mpsc::UnboundedReceiver<WorkerEvent>,
    ) {
        while let Some(event) = events.recv().await {
            let (room, command) = match event {
                WorkerEvent::TransportClosed { transport, reason } => (
                    self.transports
                        .lock()
                        .ok()
                        .and_then(|mut t| t.remove(&(worker, transport))),
                    RoomCommand::TransportClosed {
                        worker,
                        transport,
                        reason: format!("{reason:?}"),
                    },
                ),
                WorkerEvent::ActiveSpeakerChanged { router, producer } => (
                    self.routers
                        .lock()
                        .ok()
                        .and_then(|r| r.get(&(worker, router)).cloned()),
                    RoomCommand::ActiveSpeaker { producer },
                ),
                _ => continue,
            };
            if let Some(room) = room
                && let Some(live) = self.rooms.lock().await.get(&room)
            {
                let _ = live.sender.send(command);
            }
        }
    }

    /// Tells every room to close its sessions.
    pub async fn shutdown(&self) {
        for live in self.rooms.lock().await.values() {
            let _ = live.sender.send(RoomCommand::Shutdown);
        }
    }
}

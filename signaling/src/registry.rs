//! The live rooms of this server, by name, and which room owns each media transport.
//!
//! A session joins through [`Registry::join`], which creates the room actor on first use. A
//! room actor removes itself when its last participant leaves, under the same lock, so a join
//! can never land in a room that is shutting down. Worker events (a transport's consent
//! expired, DTLS failed) are routed to the room owning the transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use sfu_core::driver::WorkerHandle;
use sfu_core::{RouterId, TransportId, WorkerEvent};
use tokio::sync::{Mutex, mpsc};

use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, ProtocolError};
use crate::room::{Room, RoomCommand, RoomSettings};

type RoomSender = mpsc::UnboundedSender<RoomCommand>;

/// The rooms of one server.
#[derive(Clone)]
pub struct Registry {
    rooms: Arc<Mutex<HashMap<String, RoomSender>>>,
    transports: Arc<StdMutex<HashMap<TransportId, String>>>,
    routers: Arc<StdMutex<HashMap<RouterId, String>>>,
    worker: Arc<WorkerHandle>,
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
        Self {
            rooms: Arc::default(),
            transports: Arc::default(),
            routers: Arc::default(),
            worker,
            settings,
            metrics,
        }
    }

    /// The metrics the rooms count themselves in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The worker the rooms live on.
    pub fn worker(&self) -> &Arc<WorkerHandle> {
        &self.worker
    }

    /// Sends a `Join` to `room`, creating the room if needed; returns the room's command channel.
    pub async fn join(
        &self,
        room: &str,
        command: RoomCommand,
    ) -> Result<RoomSender, ProtocolError> {
        let mut rooms = self.rooms.lock().await;
        if let Some(sender) = rooms.get(room)
            && !sender.is_closed()
        {
            sender
                .send(command)
                .map_err(|_| ProtocolError::new(ErrorCode::Internal, "room unavailable"))?;
            return Ok(sender.clone());
        }
        let actor = Room::create(
            room.to_owned(),
            self.worker.clone(),
            self.clone(),
            self.settings.clone(),
        )
        .await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(actor.run(receiver));
        sender
            .send(command)
            .map_err(|_| ProtocolError::new(ErrorCode::Internal, "room unavailable"))?;
        rooms.insert(room.to_owned(), sender.clone());
        tracing::info!(%room, "room created");
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

    /// Records that `transport` belongs to `room`.
    pub fn watch_transport(&self, transport: TransportId, room: &str) {
        if let Ok(mut t) = self.transports.lock() {
            t.insert(transport, room.to_owned());
        }
    }

    /// Records that `router` is `room`'s.
    pub fn watch_router(&self, router: RouterId, room: &str) {
        if let Ok(mut r) = self.routers.lock() {
            r.insert(router, room.to_owned());
        }
    }

    /// Forgets a transport.
    pub fn unwatch_transport(&self, transport: TransportId) {
        if let Ok(mut t) = self.transports.lock() {
            t.remove(&transport);
        }
    }

    /// Routes worker events to rooms until the worker stops.
    pub async fn dispatch_worker_events(self, mut events: mpsc::UnboundedReceiver<WorkerEvent>) {
        while let Some(event) = events.recv().await {
            let (room, command) = match event {
                WorkerEvent::TransportClosed { transport, reason } => (
                    self.transports
                        .lock()
                        .ok()
                        .and_then(|mut t| t.remove(&transport)),
                    RoomCommand::TransportClosed {
                        transport,
                        reason: format!("{reason:?}"),
                    },
                ),
                WorkerEvent::ActiveSpeakerChanged { router, producer } => (
                    self.routers
                        .lock()
                        .ok()
                        .and_then(|r| r.get(&router).cloned()),
                    RoomCommand::ActiveSpeaker { producer },
                ),
                _ => continue,
            };
            if let Some(room) = room
                && let Some(sender) = self.rooms.lock().await.get(&room)
            {
                let _ = sender.send(command);
            }
        }
    }

    /// Tells every room to close its sessions.
    pub async fn shutdown(&self) {
        for sender in self.rooms.lock().await.values() {
            let _ = sender.send(RoomCommand::Shutdown);
        }
    }
}

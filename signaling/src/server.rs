//! The HTTP side: the WebSocket endpoint, health check, Prometheus metrics, development tokens
//! and the web client.
//!
//! [`SignalingServer`] wires a [`Registry`] of rooms to an axum router. It owns no media: the
//! rooms talk to the `sfu-core` worker. Shutdown tells every session (`closing`) before the
//! listener stops.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sfu_core::WorkerEvent;
use sfu_core::driver::WorkerHandle;
use sfu_core::worker_pool::WorkerPool;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_http::services::ServeDir;

use crate::access_token::{ApiKeys, Grants};
use crate::admin_api::AdminApi;
use crate::metrics::{self, Metrics};
use crate::registry::Registry;
use crate::room::RoomSettings;
use crate::room_service::RoomService;
use crate::session::{self, SessionLimits};

/// Read buffer and write batching of each signaling WebSocket, bytes.
const WS_BUFFER: usize = 8 * 1024;

/// Everything the signaling server needs to know.
#[derive(Debug, Clone, Default)]
pub struct SignalingConfig {
    /// API keys that may sign access tokens.
    pub keys: ApiKeys,
    /// The key `/dev/token` signs with; `None` disables the endpoint.
    pub dev_key: Option<String>,
    /// Folder served at `/` (the web client), if any.
    pub web_root: Option<PathBuf>,
    /// Session limits.
    pub limits: SessionLimits,
    /// Room settings, with the room service (storage, webhooks) every room shares.
    pub room: RoomSettings,
}

/// State shared by every request and session.
pub struct ServerContext {
    pub(crate) registry: Registry,
    pub(crate) keys: ApiKeys,
    pub(crate) limits: SessionLimits,
    pub(crate) rooms: RoomService,
    dev_key: Option<String>,
    unjoined: Mutex<HashMap<IpAddr, usize>>,
    shutdown: watch::Receiver<bool>,
    pub(crate) metrics: Arc<Metrics>,
}

impl ServerContext {
    fn reserve_unjoined(&self, ip: IpAddr) -> bool {
        let Ok(mut map) = self.unjoined.lock() else {
            return false;
        };
        let n = map.entry(ip).or_insert(0);
        if *n >= self.limits.max_unjoined_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    pub(crate) fn release_unjoined(&self, ip: IpAddr) {
        if let Ok(mut map) = self.unjoined.lock()
            && let Some(n) = map.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    pub(crate) fn count_frame(&self) {
        self.metrics.count_frame();
    }
}

/// The signaling server.
pub struct SignalingServer {
    ctx: Arc<ServerContext>,
    shutdown: watch::Sender<bool>,
    web_root: Option<PathBuf>,
}

impl SignalingServer {
    /// Creates the server for rooms on `worker`; `events` is the worker's event stream.
    pub fn new(
        config: SignalingConfig,
        worker: Arc<WorkerHandle>,
        events: mpsc::UnboundedReceiver<WorkerEvent>,
    ) -> Self {
        Self::with_pool(
            config,
            Arc::new(WorkerPool::from_workers(vec![worker])),
            vec![events],
        )
    }

    /// Creates the server for rooms placed on the workers of `pool`; `events` are the
    /// workers' event streams, in pool order.
    pub fn with_pool(
        config: SignalingConfig,
        pool: Arc<WorkerPool>,
        events: Vec<mpsc::UnboundedReceiver<WorkerEvent>>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::with_pool(pool, config.room.clone(), metrics.clone());
        for (worker, events) in events.into_iter().enumerate() {
            tokio::spawn(registry.clone().dispatch_worker_events(worker, events));
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(ServerContext {
            registry,
            keys: config.keys,
            limits: config.limits,
            rooms: config.room.service.clone(),
            dev_key: config.dev_key,
            unjoined: Mutex::default(),
            shutdown: shutdown_rx,
            metrics,
        });
        Self {
            ctx,
            shutdown,
            web_root: config.web_root,
        }
    }

    /// The room service of this server: the admin operations on its live rooms.
    pub fn rooms(&self) -> &RoomService {
        &self.ctx.rooms
    }

    /// The axum router.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/ws", get(websocket))
            .route("/healthz", get(|| async { "ok" }))
            .route("/metrics", get(prometheus_metrics))
            .route("/dev/token", get(dev_token))
            .with_state(self.ctx.clone())
            .merge(AdminApi::with_rooms(self.ctx.keys.clone(), self.ctx.rooms.clone()).router());
        if let Some(root) = &self.web_root {
            router = router.fallback_service(ServeDir::new(root));
        }
        router
    }

    /// Serves until `shutdown` completes, then tells every session and stops.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let sessions = self.shutdown.clone();
        let registry = self.ctx.registry.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: closing sessions");
                let _ = sessions.send(true);
                registry.shutdown().await;
                // Give sessions a moment to flush their `closing` frames.
                tokio::time::sleep(Duration::from_millis(200)).await;
            })
            .await
    }
}

async fn websocket(
    upgrade: WebSocketUpgrade,
    State(ctx): State<Arc<ServerContext>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let ip = peer.ip();
    if !ctx.reserve_unjoined(ip) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections that have not joined",
        )
            .into_response();
    }
    let shutdown = ctx.shutdown.clone();
    // Frames larger than our limit get a typed error; far larger ones are cut by the transport.
    // Signaling frames are a few KiB: tungstenite's default 128 KiB read buffer (allocated per
    // connection) and 128 KiB write batching would make each participant cost a quarter of a
    // MiB of memory for nothing.
    upgrade
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_message_size(4 * ctx.limits.max_frame)
        .on_failed_upgrade({
            let ctx = ctx.clone();
            move |_| ctx.release_unjoined(ip)
        })
        .on_upgrade(move |socket| session::run(socket, ctx, ip, shutdown))
}

/// `GET /metrics`: the Prometheus text exposition of this server (`docs/operations.md`).
async fn prometheus_metrics(State(ctx): State<Arc<ServerContext>>) -> Response {
    let text = ctx.metrics.render(ctx.registry.pool().workers()).await;
    (
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

#[derive(Deserialize)]
struct DevTokenQuery {
    room: String,
    identity: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(serde::Serialize)]
struct TokenBody {
    token: String,
}

#[derive(serde::Serialize)]
struct ErrorBody {
    error: String,
}

async fn dev_token(
    State(ctx): State<Arc<ServerContext>>,
    query: Result<Query<DevTokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(key) = &ctx.dev_key else {
        return (
            StatusCode::NOT_FOUND,
            Json(ErrorBody {
                error: "development tokens are disabled".into(),
            }),
        )
            .into_response();
    };
    let Ok(Query(q)) = query else {
        return (
            StatusCode::BAD_REQUEST,
            Json(ErrorBody {
                error: "room and identity are required".into(),
            }),
        )
            .into_response();
    };
    let name = q.name.unwrap_or_else(|| q.identity.clone());
    let checks = [
        crate::names::validate_room(&q.room),
        crate::names::validate_identity(&q.identity),
        crate::names::validate_display_name(&name),
    ];
    if let Some(Err(e)) = checks.into_iter().find(Result::is_err) {
        return (StatusCode::BAD_REQUEST, Json(ErrorBody { error: e })).into_response();
    }
    match ctx.keys.mint(
        key,
        &q.identity,
        &name,
        &q.room,
        // Development tokens open any room by name, as the web client expects.
        Grants {
            room_create: true,
            ..Grants::participant()
        },
        Duration::from_secs(600),
    ) {
        Ok(token) => Json(TokenBody { token }).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody {
                error: e.to_string(),
            }),
        )
            .into_response(),
    }
}

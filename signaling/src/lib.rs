//! # signaling: the control plane of the SFU
//!
//! Browsers talk to the server over one WebSocket each (protocol v1, `docs/protocol.md`).
//! This crate turns that conversation into media objects on an `sfu-core` worker:
//!
//! * [`server`] — the axum router: `/ws`, `/healthz`, `/metrics`, `/dev/token`, the web client.
//! * [`metrics`] — the Prometheus metrics of one server (`docs/operations.md`).
//! * [`session`] — one WebSocket: limits, authentication, frame dispatch.
//! * [`registry`] and [`room`] — the rooms; each room is an actor owning its participants,
//!   tracks, transports, producers and consumers, its meeting and its [`chat`].
//! * [`room_service`] — what rooms share (storage, webhooks, revocations) and the admin
//!   operations on live rooms; [`meeting_recorder`] writes meetings to storage off the actor.
//! * [`sdp`] — SDP ↔ `sfu-core` RTP parameters (the core never sees SDP).
//! * [`access_token`] — HMAC-signed JWTs (join, admin, guest invitation) carrying identity,
//!   room and grants; the API keyring and its rotation.
//! * [`meeting_code`] — human-friendly room codes like `abc-defg-hij`.
//! * [`webhooks`] — signed lifecycle events delivered in order per room, with retries.
//! * [`protocol`] — the frames as Rust types, with typed error codes.
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use signaling::server::{SignalingConfig, SignalingServer};
//! use sfu_core::driver::WorkerHandle;
//!
//! let (worker, events) = WorkerHandle::spawn("127.0.0.1:0".parse()?, Default::default())?;
//! let mut config = SignalingConfig::default();
//! config.keys.insert("key", b"a long random secret".to_vec());
//! let server = SignalingServer::new(config, Arc::new(worker), events);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7880").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod access_token;
pub mod admin_api;
pub mod chat;
pub mod fuzzing;
pub mod meeting_code;
pub mod meeting_recorder;
pub mod metrics;
pub mod names;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod room_service;
pub mod sdp;
pub mod server;
pub mod session;
pub mod storage;
pub mod webhooks;

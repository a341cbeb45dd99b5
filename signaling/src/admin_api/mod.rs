//! # admin_api: the admin REST API under `/api/v1` (issue 7, items 2, 3, 6, 8)
//!
//! Owns the HTTP face of the room service: rooms and their meeting codes, guest invitations,
//! meeting history, live participants, host sessions, and the OpenAPI document that describes
//! all of it (`GET /api/v1/openapi.json`, kept in `openapi.json` beside this file and checked
//! against real responses by `tests/admin_api.rs`). `docs/admin-api.md` is the guide.
//!
//! What it must not do: hold state of its own (rooms and sessions are in
//! [`Storage`](crate::storage::Storage), live rooms in their actors), trust anything in a body
//! for identity or rights (those come from the verified token or session, see [`auth`]), or
//! answer in anything but its JSON error shape ([`error`]). Every input is checked before it is
//! used ([`input`]); every change is one storage call, so a failed request writes nothing.
//!
//! Order of checks, the same on every endpoint: authentication (401), path and query (400),
//! scope and grants (403), body size, media type, syntax and shape (413, 415, 400, 422), then
//! the operation (404, 409). A caller without rights therefore learns nothing from its body.
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use signaling::access_token::ApiKeys;
//! use signaling::admin_api::AdminApi;
//! use signaling::storage::Storage;
//!
//! let keys = ApiKeys::default();
//! keys.insert("key", b"a long random secret".to_vec());
//! let storage = Storage::connect("sqlite://sfu.db").await?;
//! let router = AdminApi::new(keys, storage).router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7880").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod auth;
pub mod error;
pub mod input;
mod participants;
mod rooms;
mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};

use crate::access_token::ApiKeys;
use crate::room_service::RoomService;
use crate::storage::Storage;

pub use auth::{Caller, Credential, HOST_SESSION_GRANTS, Need, SESSION_COOKIE};
pub use error::{ApiError, ErrorCode};
pub use input::MAX_BODY;
pub use rooms::{
    DEFAULT_EMPTY_TIMEOUT_SECS, DEFAULT_INVITATION_TTL_SECS, DEFAULT_MAX_PARTICIPANTS, DEFAULT_PAGE,
};
pub use sessions::{DEFAULT_SESSION_TTL_SECS, MAX_SESSION_TTL_SECS, MIN_SESSION_TTL_SECS};

/// The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Every route: method and path template (OpenAPI spelling). The OpenAPI test checks this list,
/// the router and the document agree.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions/current"),
    ("POST", "/api/v1/rooms"),
    ("GET", "/api/v1/rooms"),
    ("GET", "/api/v1/rooms/{name}"),
    ("PATCH", "/api/v1/rooms/{name}"),
    ("DELETE", "/api/v1/rooms/{name}"),
    ("GET", "/api/v1/meeting-codes/{code}"),
    ("POST", "/api/v1/rooms/{name}/invitations"),
    ("GET", "/api/v1/rooms/{name}/meetings"),
    ("GET", "/api/v1/meetings/{id}"),
    ("GET", "/api/v1/rooms/{name}/participants"),
    ("GET", "/api/v1/rooms/{name}/participants/{identity}"),
    ("PATCH", "/api/v1/rooms/{name}/participants/{identity}"),
    ("DELETE", "/api/v1/rooms/{name}/participants/{identity}"),
    (
        "POST",
        "/api/v1/rooms/{name}/participants/{identity}/tracks/{track}/mute",
    ),
];

/// Where the database comes from.
enum StorageSource {
    /// Given directly (an API without live rooms).
    Direct(Storage),
    /// The room service's, opened on first use: the same database the rooms record into.
    Rooms(RoomService),
}

/// What every handler shares.
pub struct AdminState {
    pub(crate) keys: ApiKeys,
    storage: StorageSource,
    /// The live rooms; `None` when this API runs without them (participant endpoints answer
    /// `unavailable`).
    pub(crate) rooms: Option<RoomService>,
}

impl AdminState {
    pub(crate) async fn storage(&self) -> Result<Storage, ApiError> {
        match &self.storage {
            StorageSource::Direct(storage) => Ok(storage.clone()),
            StorageSource::Rooms(rooms) => Ok(rooms.storage().await?),
        }
    }
}

/// The admin API of one server.
#[derive(Clone)]
pub struct AdminApi {
    state: Arc<AdminState>,
}

impl AdminApi {
    /// The API over `storage` alone, trusting admin tokens signed by `keys`. The participant
    /// endpoints answer `unavailable`: there are no live rooms to reach.
    pub fn new(keys: ApiKeys, storage: Storage) -> Self {
        Self {
            state: Arc::new(AdminState {
                keys,
                storage: StorageSource::Direct(storage),
                rooms: None,
            }),
        }
    }

    /// The API of a signaling server: its room service's storage and live rooms.
    pub fn with_rooms(keys: ApiKeys, rooms: RoomService) -> Self {
        Self {
            state: Arc::new(AdminState {
                keys,
                storage: StorageSource::Rooms(rooms.clone()),
                rooms: Some(rooms),
            }),
        }
    }

    /// The router, with every path under `/api/v1`; merge it into the server's router. Unknown
    /// paths under `/api/v1` and wrong methods get JSON errors too.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/openapi.json", get(openapi))
            .route("/sessions", post(sessions::create))
            .route("/sessions/current", delete(sessions::delete_current))
            .route("/rooms", post(rooms::create).get(rooms::list))
            .route(
                "/rooms/{name}",
                get(rooms::get).patch(rooms::update).delete(rooms::delete),
            )
            .route("/meeting-codes/{code}", get(rooms::resolve_meeting_code))
            .route("/rooms/{name}/invitations", post(rooms::invite))
            .route("/rooms/{name}/meetings", get(rooms::meetings))
            .route("/meetings/{id}", get(rooms::meeting))
            .route("/rooms/{name}/participants", get(participants::list))
            .route(
                "/rooms/{name}/participants/{identity}",
                get(participants::get)
                    .patch(participants::update)
                    .delete(participants::remove),
            )
            .route(
                "/rooms/{name}/participants/{identity}/tracks/{track}/mute",
                post(participants::mute),
            )
            .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
            .method_not_allowed_fallback(|| async {
                ApiError::new(
                    ErrorCode::MethodNotAllowed,
                    "this endpoint has no such method",
                )
            })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.state.clone());
        Router::new().nest("/api/v1", api)
    }
}

/// `GET /api/v1/openapi.json`: public, like any API description.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

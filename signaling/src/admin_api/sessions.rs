//! Host sessions over HTTP (issue 7, item 8): exchange an admin token for a session cookie, and
//! sign out.
//!
//! The cookie is `sfu_session=<64 hex>; HttpOnly; Secure; SameSite=Strict; Path=/api;
//! Max-Age=<ttl>`: scripts cannot read it, it never travels over plain HTTP (browsers treat
//! `http://localhost` as secure, so local development still works), and no other site can make
//! a browser send it. The raw token appears once, in `Set-Cookie`, never in a body; the
//! database holds only its SHA-256 ([`crate::storage::Storage::create_host_session`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::auth::{
    Caller, Credential, HOST_SESSION_GRANTS, SESSION_COOKIE, session_cookie, unix_now_ms,
};
use super::error::{ApiError, ErrorCode};
use super::input::{self, RawBody};
use crate::storage::MAX_HOST_SESSION_TTL_MS;

/// Session lifetime when the request names none: 8 hours (a working day).
pub const DEFAULT_SESSION_TTL_SECS: u32 = 8 * 3600;
/// Shortest session a client may ask for.
pub const MIN_SESSION_TTL_SECS: u32 = 60;
/// Longest session a client may ask for (the storage cap, 30 days).
pub const MAX_SESSION_TTL_SECS: u32 = (MAX_HOST_SESSION_TTL_MS / 1000) as u32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSession {
    #[serde(default)]
    ttl_secs: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct SessionCreated {
    subject: String,
    created_at_ms: i64,
    expires_at_ms: i64,
}

/// The `Set-Cookie` value for a session token living `max_age` seconds (0 clears it).
fn cookie(value: &str, max_age: u32) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/api; Max-Age={max_age}"
    ))
    .map_err(ApiError::internal)
}

/// `POST /api/v1/sessions`: an unscoped admin token holding every grant of a host session
/// buys a session cookie. Body (optional): `{"ttl_secs": 60..=2592000}`.
pub(crate) async fn create(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    if caller.credential != Credential::AdminToken {
        return Err(ApiError::new(
            ErrorCode::MissingGrant,
            "a session is created from an admin token, not from another session",
        ));
    }
    if let Some(room) = &caller.room {
        return Err(ApiError::new(
            ErrorCode::RoomNotInScope,
            format!("a host session acts on every room; this token is for room {room:?} only"),
        ));
    }
    if !HOST_SESSION_GRANTS.is_subset_of(&caller.grants) {
        return Err(ApiError::new(
            ErrorCode::MissingGrant,
            "a host session needs a token with join, publish, subscribe, publish_data, \
             room_admin and room_create",
        ));
    }
    let request: Option<CreateSession> = input::json_body(&headers, body, true)?;
    let ttl_secs = request
        .and_then(|r| r.ttl_secs)
        .unwrap_or(DEFAULT_SESSION_TTL_SECS);
    if !(MIN_SESSION_TTL_SECS..=MAX_SESSION_TTL_SECS).contains(&ttl_secs) {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("ttl_secs must be {MIN_SESSION_TTL_SECS} to {MAX_SESSION_TTL_SECS}"),
        ));
    }
    let created = state
        .storage()
        .await?
        .create_host_session(&caller.subject, i64::from(ttl_secs) * 1000, unix_now_ms())
        .await?;
    tracing::info!(subject = %caller.subject, session = created.session.id, "host session created");
    let set_cookie = cookie(created.token.as_str(), ttl_secs)?;
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, set_cookie)],
        Json(SessionCreated {
            subject: created.session.subject,
            created_at_ms: created.session.created_at_ms,
            expires_at_ms: created.session.expires_at_ms,
        }),
    )
        .into_response())
}

/// `DELETE /api/v1/sessions/current`: signs out the session of the cookie sent, and tells the
/// browser to drop the cookie.
pub(crate) async fn delete_current(
    State(state): State<Arc<AdminState>>,
    parts: Parts,
    body: RawBody,
) -> Result<Response, ApiError> {
    let Some(token) = session_cookie(&parts) else {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "send the session cookie to sign out",
        ));
    };
    let now = unix_now_ms();
    let session = state
        .storage()
        .await?
        .authenticate_host_session(token, now)
        .await?;
    input::no_body(body)?;
    state
        .storage()
        .await?
        .revoke_host_session(token, now)
        .await?;
    tracing::info!(subject = %session.subject, session = session.id, "host session revoked");
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie("", 0)?)],
    )
        .into_response())
}

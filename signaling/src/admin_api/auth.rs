//! Who is calling: an admin token (`Authorization: Bearer …`) or a host-session cookie
//! (`sfu_session`), turned into a [`Caller`] with the grants it holds in which rooms.
//!
//! An admin token is verified by [`ApiKeys::verify_admin`](crate::access_token::ApiKeys::verify_admin)
//! (algorithm allow-list, kind, lifetime, …); its `room` claim scopes it to one room. A host
//! session is exchanged for an unscoped admin token holding every grant in
//! [`HOST_SESSION_GRANTS`] and acts with exactly those (the session row stores only who signed
//! in, so the grants are fixed rather than copied from the token). When both are sent the
//! bearer token decides: a bad one is refused, never silently replaced by the cookie.
//!
//! This module authenticates and checks grants; it must not read bodies or touch rooms.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AdminState;
use super::error::{ApiError, ErrorCode};
use crate::access_token::{Grants, Principal, unix_now};

/// The cookie a host session travels in.
pub const SESSION_COOKIE: &str = "sfu_session";

/// The grants a host session acts with; the admin token exchanged for it must hold them all.
pub const HOST_SESSION_GRANTS: Grants = Grants {
    join: true,
    publish: true,
    subscribe: true,
    publish_data: true,
    room_admin: true,
    room_create: true,
    hidden: false,
    recorder: false,
};

/// How the caller authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer admin token.
    AdminToken,
    /// A host-session cookie; the raw token is kept to revoke it.
    HostSession {
        /// The stored session's id.
        id: i64,
        /// The raw cookie value (redacted from `Debug`).
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::AdminToken => f.write_str("AdminToken"),
            Credential::HostSession { id, .. } => f
                .debug_struct("HostSession")
                .field("id", id)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who acts (the token's `sub`, or the session's subject).
    pub subject: String,
    /// The one room it may act on, or `None` for every room.
    pub room: Option<String>,
    /// What it may do there.
    pub grants: Grants,
    /// How it authenticated.
    pub credential: Credential,
}

/// A grant an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Administer the room: read it, change it, its participants, invitations.
    RoomAdmin,
    /// Create rooms.
    RoomCreate,
}

impl Need {
    fn held(self, grants: &Grants) -> bool {
        match self {
            Need::RoomAdmin => grants.room_admin,
            Need::RoomCreate => grants.room_create,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Need::RoomAdmin => "room_admin",
            Need::RoomCreate => "room_create",
        }
    }
}

impl Principal for Caller {
    fn identity(&self) -> &str {
        &self.subject
    }

    fn grants_in(&self, room: &str) -> Grants {
        match &self.room {
            Some(mine) if mine != room => Grants::default(),
            _ => self.grants,
        }
    }
}

impl Caller {
    /// Refuses unless the caller may act on `room` with `need`.
    pub fn require(&self, room: &str, need: Need) -> Result<(), ApiError> {
        if let Some(mine) = &self.room
            && mine != room
        {
            return Err(ApiError::new(
                ErrorCode::RoomNotInScope,
                format!("these credentials are for room {mine:?} only"),
            ));
        }
        self.require_grant(need)
    }

    /// Refuses unless the caller may act on every room (listing them) with `need`.
    pub fn require_every_room(&self, need: Need) -> Result<(), ApiError> {
        if let Some(mine) = &self.room {
            return Err(ApiError::new(
                ErrorCode::RoomNotInScope,
                format!("these credentials are for room {mine:?} only, not for every room"),
            ));
        }
        self.require_grant(need)
    }

    fn require_grant(&self, need: Need) -> Result<(), ApiError> {
        if need.held(&self.grants) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::MissingGrant,
                format!("this needs the {} grant", need.name()),
            ))
        }
    }
}

/// The value of the `sfu_session` cookie, if the request carries one.
pub(crate) fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then_some(value)
        })
}

/// The token of an `Authorization: Bearer` header; `Some(Err)` if the header is there but is
/// not a bearer token.
fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let malformed = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "the Authorization header must be \"Bearer <admin token>\"",
        )
    };
    let Ok(value) = value.to_str() else {
        return Some(Err(malformed()));
    };
    Some(match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim())
        }
        _ => Err(malformed()),
    })
}

/// Milliseconds since the Unix epoch (the storage layer's unit).
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl FromRequestParts<Arc<AdminState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(parts) {
            let claims = state.keys.verify_admin(token?, unix_now())?;
            return Ok(Caller {
                subject: claims.sub,
                room: claims.room,
                grants: claims.grants,
                credential: Credential::AdminToken,
            });
        }
        if let Some(token) = session_cookie(parts) {
            let session = state
                .storage()
                .await?
                .authenticate_host_session(token, unix_now_ms())
                .await?;
            return Ok(Caller {
                subject: session.subject,
                room: None,
                grants: HOST_SESSION_GRANTS,
                credential: Credential::HostSession {
                    id: session.id,
                    token: token.to_owned(),
                },
            });
        }
        Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "send an admin token as Authorization: Bearer <token>, or sign in for a session \
             cookie",
        ))
    }
}

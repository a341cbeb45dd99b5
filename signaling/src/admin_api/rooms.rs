//! Rooms, their meeting codes, guest invitations and meeting history.
//!
//! Every write is one storage call, which is one statement or one transaction: a request that
//! fails leaves nothing behind. A new room gets a fresh [`MeetingCode`]; a code collision
//! (about one in 4·10¹³ per existing room) is retried with another code, never reported.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::auth::{Caller, Need, unix_now_ms};
use super::error::{ApiError, ErrorCode};
use super::input::{self, RawBody};
use crate::access_token::{GuestRole, unix_now};
use crate::meeting_code::MeetingCode;
use crate::storage::{
    MAX_PAGE, MeetingId, NewRoom, Room, RoomUpdate, StorageError, validate_meeting_code,
};

/// `max_participants` of a room created without one.
pub const DEFAULT_MAX_PARTICIPANTS: u32 = 100;
/// `empty_timeout_secs` of a room created without one.
pub const DEFAULT_EMPTY_TIMEOUT_SECS: u32 = 300;
/// Page size of a list without `limit`.
pub const DEFAULT_PAGE: u32 = 50;
/// Lifetime of an invitation minted without `ttl_secs`: a day.
pub const DEFAULT_INVITATION_TTL_SECS: u64 = 24 * 3600;
/// Fresh meeting codes tried before giving up (a collision is already rare).
const CODE_ATTEMPTS: usize = 8;

/// A path's parameters, or `invalid_parameter`.
pub(crate) fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("the path is not accepted: {}", rejection.body_text()),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRoom {
    name: String,
    #[serde(default)]
    max_participants: Option<u32>,
    #[serde(default)]
    empty_timeout_secs: Option<u32>,
    #[serde(default)]
    metadata: Option<String>,
}

/// `POST /api/v1/rooms`
pub(crate) async fn create(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let request: CreateRoom = input::required_json(&headers, body)?;
    input::field("name", crate::names::validate_room(&request.name))?;
    caller.require(&request.name, Need::RoomCreate)?;
    let mut new = NewRoom {
        name: request.name,
        meeting_code: String::new(),
        max_participants: request.max_participants.unwrap_or(DEFAULT_MAX_PARTICIPANTS),
        empty_timeout_secs: request
            .empty_timeout_secs
            .unwrap_or(DEFAULT_EMPTY_TIMEOUT_SECS),
        metadata: request.metadata.unwrap_or_default(),
    };
    for _ in 0..CODE_ATTEMPTS {
        new.meeting_code = MeetingCode::generate().as_str().to_owned();
        match state
            .storage()
            .await?
            .create_room(&new, unix_now_ms())
            .await
        {
            Ok(room) => {
                tracing::info!(room = %room.name, by = %caller.subject, "room created");
                let location = format!("/api/v1/rooms/{}", room.name);
                return Ok((
                    StatusCode::CREATED,
                    [(header::LOCATION, location)],
                    Json(room),
                )
                    .into_response());
            }
            Err(StorageError::Conflict {
                what: "meeting code already in use",
            }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::internal(
        "no free meeting code after several attempts",
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// `GET /api/v1/rooms?limit=&cursor=`
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_every_room(Need::RoomAdmin)?;
    let query = input::query(query)?;
    let limit = page_size(query.limit)?;
    if let Some(cursor) = &query.cursor {
        crate::names::validate_room(cursor).map_err(|reason| {
            ApiError::new(ErrorCode::InvalidParameter, format!("cursor: {reason}"))
        })?;
    }
    let page = state
        .storage()
        .await?
        .list_rooms(query.cursor.as_deref(), limit)
        .await?;
    Ok(Json(page).into_response())
}

/// `GET /api/v1/rooms/{name}`
pub(crate) async fn get(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Room>, ApiError> {
    let name = path(name)?;
    input::room_name(&name)?;
    caller.require(&name, Need::RoomAdmin)?;
    Ok(Json(state.storage().await?.room_by_name(&name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateRoom {
    #[serde(default)]
    max_participants: Option<u32>,
    #[serde(default)]
    empty_timeout_secs: Option<u32>,
    #[serde(default)]
    metadata: Option<String>,
}

/// `PATCH /api/v1/rooms/{name}`
pub(crate) async fn update(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<Room>, ApiError> {
    let name = path(name)?;
    input::room_name(&name)?;
    caller.require(&name, Need::RoomAdmin)?;
    let request: UpdateRoom = input::required_json(&headers, body)?;
    let update = RoomUpdate {
        max_participants: request.max_participants,
        empty_timeout_secs: request.empty_timeout_secs,
        metadata: request.metadata,
    };
    if update == RoomUpdate::default() {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "nothing to change: give max_participants, empty_timeout_secs or metadata",
        ));
    }
    let room = state
        .storage()
        .await?
        .update_room(&name, &update, unix_now_ms())
        .await?;
    if let Some(rooms) = &state.rooms {
        rooms.room_updated(&name).await;
    }
    Ok(Json(room))
}

/// `DELETE /api/v1/rooms/{name}`: the stored room and its meeting history; a live meeting in
/// it is closed after the row is gone (so a failed delete closes nothing).
pub(crate) async fn delete(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    body: RawBody,
) -> Result<StatusCode, ApiError> {
    let name = path(name)?;
    input::room_name(&name)?;
    caller.require(&name, Need::RoomAdmin)?;
    input::no_body(body)?;
    state.storage().await?.delete_room(&name).await?;
    if let Some(rooms) = &state.rooms {
        rooms.room_deleted(&name).await;
    }
    tracing::info!(room = %name, by = %caller.subject, "room deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// What `GET /api/v1/meeting-codes/{code}` tells anyone: the room's name, nothing else.
#[derive(Serialize)]
pub(crate) struct MeetingCodeTarget {
    room: String,
    meeting_code: String,
}

/// `GET /api/v1/meeting-codes/{code}`: public, for the guest page. Accepts what a person typed
/// (any case, dashes optional).
pub(crate) async fn resolve_meeting_code(
    State(state): State<Arc<AdminState>>,
    code: Result<Path<String>, PathRejection>,
) -> Result<Json<MeetingCodeTarget>, ApiError> {
    let typed = path(code)?;
    let code = match MeetingCode::parse(&typed) {
        Ok(code) => code.as_str().to_owned(),
        // Rooms stored by other means may carry any code of the stored shape.
        Err(error) => {
            validate_meeting_code(&typed).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("meeting code: {error}"),
                )
            })?;
            typed
        }
    };
    let room = state.storage().await?.room_by_meeting_code(&code).await?;
    Ok(Json(MeetingCodeTarget {
        room: room.name,
        meeting_code: room.meeting_code,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateInvitation {
    role: GuestRole,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct InvitationCreated {
    invitation: String,
    room: String,
    meeting_code: String,
    role: GuestRole,
    expires_at: u64,
}

/// `POST /api/v1/rooms/{name}/invitations`: a guest invitation bound to the room and a role,
/// which the caller's own grants must cover.
pub(crate) async fn invite(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    input::room_name(&name)?;
    caller.require(&name, Need::RoomAdmin)?;
    let request: CreateInvitation = input::required_json(&headers, body)?;
    let ttl_secs = request.ttl_secs.unwrap_or(DEFAULT_INVITATION_TTL_SECS);
    let room = state.storage().await?.room_by_name(&name).await?;
    let now = unix_now();
    let invitation = state.keys.mint_invitation(
        &caller,
        &room.name,
        request.role,
        Duration::from_secs(ttl_secs),
        now,
    )?;
    tracing::info!(room = %room.name, by = %caller.subject, role = ?request.role, "invitation minted");
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            invitation,
            room: room.name,
            meeting_code: room.meeting_code,
            role: request.role,
            expires_at: now.saturating_add(ttl_secs),
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeetingsQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/rooms/{name}/meetings?limit=`: newest first.
pub(crate) async fn meetings(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<MeetingsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    input::room_name(&name)?;
    caller.require(&name, Need::RoomAdmin)?;
    let limit = page_size(input::query(query)?.limit)?;
    let meetings = state.storage().await?.list_meetings(&name, limit).await?;
    Ok(Json(serde_json::json!({ "meetings": meetings })).into_response())
}

/// `GET /api/v1/meetings/{id}`: one meeting with every participant's join and leave.
pub(crate) async fn meeting(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let id: i64 = id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "a meeting id is a positive integer",
        )
    })?;
    let detail = state.storage().await?.meeting(MeetingId(id)).await?;
    caller.require(&detail.meeting.room, Need::RoomAdmin)?;
    Ok(Json(detail).into_response())
}

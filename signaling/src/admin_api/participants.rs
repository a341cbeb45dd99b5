//! Live participants: list, inspect (with stats), remove, mute a track, change grants.
//!
//! These act on running room actors through [`RoomService`]; nothing here is stored, so there
//! is nothing to roll back. Participants are addressed by identity (unique in a room, and what
//! an admin knows); the room service addresses them by session id, so each call looks the
//! identity up first. A removal or a downgrade revokes the participant's token in that room
//! (see [`RoomService::remove_participant`] and [`RoomService::update_grants`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::auth::{Caller, Need};
use super::error::{ApiError, ErrorCode};
use super::input::{self, RawBody};
use super::rooms::path;
use crate::access_token::{Grants, Principal};
use crate::room_service::{ParticipantDetails, ParticipantStats, RoomService, RoomServiceError};

impl From<RoomServiceError> for ApiError {
    fn from(error: RoomServiceError) -> Self {
        match error {
            RoomServiceError::RoomNotLive(_) | RoomServiceError::UnknownParticipant(_) => {
                Self::new(ErrorCode::ParticipantNotFound, error.to_string())
            }
            RoomServiceError::UnknownTrack(_) => {
                Self::new(ErrorCode::TrackNotFound, error.to_string())
            }
            RoomServiceError::InvalidGrants => {
                Self::new(ErrorCode::InvalidField, format!("grants: {error}"))
            }
            RoomServiceError::Unavailable => Self::new(ErrorCode::Unavailable, error.to_string()),
            RoomServiceError::Worker(_) => Self::internal(error),
            RoomServiceError::Storage(error) => error.into(),
        }
    }
}

fn live(state: &AdminState) -> Result<&RoomService, ApiError> {
    state.rooms.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "this server runs no rooms: live participants cannot be reached here",
        )
    })
}

/// The live participants of `room`; an empty list for a stored room nobody is in, and
/// `room_not_found` for a room that is neither stored nor live.
async fn participants_of(
    state: &AdminState,
    rooms: &RoomService,
    room: &str,
) -> Result<Vec<ParticipantDetails>, ApiError> {
    match rooms.list_participants(room).await {
        Ok(list) => Ok(list),
        Err(RoomServiceError::RoomNotLive(_)) => {
            state.storage().await?.room_by_name(room).await?;
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

/// The participant called `identity` in the live `room`.
async fn find(
    state: &AdminState,
    rooms: &RoomService,
    room: &str,
    identity: &str,
) -> Result<ParticipantDetails, ApiError> {
    participants_of(state, rooms, room)
        .await?
        .into_iter()
        .find(|p| p.identity == identity)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ParticipantNotFound,
                format!("no participant {identity:?} in room {room:?}"),
            )
        })
}

/// Checks the room and identity of a participant path and the caller's rights on the room.
fn participant_path(
    caller: &Caller,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let (room, identity) = path(params)?;
    input::room_name(&room)?;
    input::identity(&identity)?;
    caller.require(&room, Need::RoomAdmin)?;
    Ok((room, identity))
}

#[derive(Serialize)]
pub(crate) struct ParticipantList {
    participants: Vec<ParticipantDetails>,
}

/// `GET /api/v1/rooms/{name}/participants`
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ParticipantList>, ApiError> {
    let name = path(name)?;
    input::room_name(&name)?;
    caller.require(&name, Need::RoomAdmin)?;
    let rooms = live(&state)?;
    Ok(Json(ParticipantList {
        participants: participants_of(&state, rooms, &name).await?,
    }))
}

#[derive(Serialize)]
pub(crate) struct ParticipantWithStats {
    participant: ParticipantDetails,
    stats: ParticipantStats,
}

/// `GET /api/v1/rooms/{name}/participants/{identity}`: the participant and its counters,
/// including the congestion control toward it.
pub(crate) async fn get(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ParticipantWithStats>, ApiError> {
    let (room, identity) = participant_path(&caller, params)?;
    let rooms = live(&state)?;
    let participant = find(&state, rooms, &room, &identity).await?;
    let stats = rooms.participant_stats(&room, &participant.sid).await?;
    Ok(Json(ParticipantWithStats { participant, stats }))
}

/// `DELETE /api/v1/rooms/{name}/participants/{identity}`: closes its socket, stops its media
/// and revokes its token in the room.
pub(crate) async fn remove(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    params: Result<Path<(String, String)>, PathRejection>,
    body: RawBody,
) -> Result<StatusCode, ApiError> {
    let (room, identity) = participant_path(&caller, params)?;
    input::no_body(body)?;
    let rooms = live(&state)?;
    let participant = find(&state, rooms, &room, &identity).await?;
    rooms.remove_participant(&room, &participant.sid).await?;
    tracing::info!(%room, %identity, by = %caller.subject, "participant removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateParticipant {
    grants: GrantsBody,
}

/// Grants as a request spells them: every one named is set, every one left out is false,
/// and a misspelt one is an error rather than silently not granted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsBody {
    #[serde(default)]
    join: bool,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    subscribe: bool,
    #[serde(default)]
    publish_data: bool,
    #[serde(default)]
    room_admin: bool,
    #[serde(default)]
    room_create: bool,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    recorder: bool,
}

impl From<GrantsBody> for Grants {
    fn from(g: GrantsBody) -> Self {
        Grants {
            join: g.join,
            publish: g.publish,
            subscribe: g.subscribe,
            publish_data: g.publish_data,
            room_admin: g.room_admin,
            room_create: g.room_create,
            hidden: g.hidden,
            recorder: g.recorder,
        }
    }
}

/// `PATCH /api/v1/rooms/{name}/participants/{identity}` with `{"grants":{…}}`: replaces its
/// grants at once. A caller may not hand out a grant it does not hold itself.
pub(crate) async fn update(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    params: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<ParticipantDetails>, ApiError> {
    let (room, identity) = participant_path(&caller, params)?;
    let request: UpdateParticipant = input::required_json(&headers, body)?;
    let grants = Grants::from(request.grants);
    if !grants.is_subset_of(&caller.grants_in(&room)) {
        return Err(ApiError::new(
            ErrorCode::MissingGrant,
            "the new grants include one these credentials do not hold",
        ));
    }
    let rooms = live(&state)?;
    let participant = find(&state, rooms, &room, &identity).await?;
    let updated = rooms.update_grants(&room, &participant.sid, grants).await?;
    tracing::info!(%room, %identity, by = %caller.subject, ?grants, "participant grants changed");
    Ok(Json(updated))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MuteTrack {
    muted: bool,
}

/// `POST /api/v1/rooms/{name}/participants/{identity}/tracks/{track}/mute` with
/// `{"muted":true|false}`.
pub(crate) async fn mute(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let (room, identity, track) = path(params)?;
    input::room_name(&room)?;
    input::identity(&identity)?;
    crate::names::validate_identity(&track).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "track: 1 to 64 of letters, digits, '-', '_' and '.'",
        )
    })?;
    caller.require(&room, Need::RoomAdmin)?;
    let request: MuteTrack = input::required_json(&headers, body)?;
    let rooms = live(&state)?;
    let participant = find(&state, rooms, &room, &identity).await?;
    rooms
        .mute_track(&room, &participant.sid, &track, request.muted)
        .await?;
    tracing::info!(%room, %identity, %track, muted = request.muted, by = %caller.subject, "track mute set by an admin");
    Ok(StatusCode::NO_CONTENT.into_response())
}

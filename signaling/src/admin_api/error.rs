//! The one error answer of the admin API: `{"error":{"code":"…","message":"…"}}` with the HTTP
//! status its [`ErrorCode`] maps to.
//!
//! Codes are stable snake_case strings a client can branch on; messages are for people and may
//! change. Database failures are logged here and answered with a bare `internal`: a backend
//! message can carry SQL or file names and never reaches the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access_token::{MintError, TokenError};
use crate::storage::StorageError;

/// What went wrong, as a stable code with a fixed HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON (syntax error, truncated, empty where one is required).
    MalformedJson,
    /// 400: a path segment or query parameter is out of shape (room name, meeting code, id,
    /// cursor, limit, unknown query parameter).
    InvalidParameter,
    /// 400: a body was sent to an endpoint that takes none.
    UnexpectedBody,
    /// 401: no credentials (no `Authorization: Bearer`, no session cookie).
    Unauthenticated,
    /// 401: the bearer token does not verify as an admin token (the message says why).
    InvalidToken,
    /// 401: the session cookie does not authenticate (unknown, expired, revoked, malformed).
    InvalidSession,
    /// 403: the credentials lack a grant the operation needs.
    MissingGrant,
    /// 403: a room-scoped credential acting on another room, or on every room.
    RoomNotInScope,
    /// 404: no such route.
    NotFound,
    /// 404: no such room.
    RoomNotFound,
    /// 404: no such meeting.
    MeetingNotFound,
    /// 404: no such participant in the live room.
    ParticipantNotFound,
    /// 404: no such track of that participant.
    TrackNotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the change collides with stored state (a taken room name).
    Conflict,
    /// 413: the body is larger than the limit.
    BodyTooLarge,
    /// 415: a body whose `Content-Type` is not `application/json`.
    UnsupportedMediaType,
    /// 422: JSON of the wrong shape: wrong types, unknown or missing fields.
    InvalidBody,
    /// 422: a field has the right type but an unacceptable value (range, length, charset).
    InvalidField,
    /// 500: a failure on our side; details are in the server log only.
    Internal,
    /// 503: live-room operations are not available on this server.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::InvalidParameter | Self::UnexpectedBody => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated | Self::InvalidToken | Self::InvalidSession => {
                StatusCode::UNAUTHORIZED
            }
            Self::MissingGrant | Self::RoomNotInScope => StatusCode::FORBIDDEN,
            Self::NotFound
            | Self::RoomNotFound
            | Self::MeetingNotFound
            | Self::ParticipantNotFound
            | Self::TrackNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidBody | Self::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Every code, for the OpenAPI document test.
    pub const ALL: [ErrorCode; 21] = [
        Self::MalformedJson,
        Self::InvalidParameter,
        Self::UnexpectedBody,
        Self::Unauthenticated,
        Self::InvalidToken,
        Self::InvalidSession,
        Self::MissingGrant,
        Self::RoomNotInScope,
        Self::NotFound,
        Self::RoomNotFound,
        Self::MeetingNotFound,
        Self::ParticipantNotFound,
        Self::TrackNotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::BodyTooLarge,
        Self::UnsupportedMediaType,
        Self::InvalidBody,
        Self::InvalidField,
        Self::Internal,
        Self::Unavailable,
    ];

    /// The wire string, e.g. `room_not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidParameter => "invalid_parameter",
            Self::UnexpectedBody => "unexpected_body",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::InvalidSession => "invalid_session",
            Self::MissingGrant => "missing_grant",
            Self::RoomNotInScope => "room_not_in_scope",
            Self::NotFound => "not_found",
            Self::RoomNotFound => "room_not_found",
            Self::MeetingNotFound => "meeting_not_found",
            Self::ParticipantNotFound => "participant_not_found",
            Self::TrackNotFound => "track_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidBody => "invalid_body",
            Self::InvalidField => "invalid_field",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }
}

/// An error answer: a code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// The stable code (decides the status).
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A 500 whose cause is logged, not sent.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "admin API internal error");
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: &self.message,
            },
        };
        (self.code.status(), Json(body)).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound { what } => {
                let code = match what {
                    "room" => ErrorCode::RoomNotFound,
                    "meeting" => ErrorCode::MeetingNotFound,
                    _ => ErrorCode::NotFound,
                };
                Self::new(code, format!("{what} not found"))
            }
            StorageError::Conflict { what } => Self::new(ErrorCode::Conflict, what),
            StorageError::Invalid { field, reason } => {
                Self::new(ErrorCode::InvalidField, format!("{field}: {reason}"))
            }
            StorageError::Unauthenticated { .. } => Self::new(
                ErrorCode::InvalidSession,
                "the session cookie does not authenticate; sign in again",
            ),
            error @ (StorageError::Migration(_) | StorageError::Backend(_)) => {
                Self::internal(error)
            }
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        Self::new(
            ErrorCode::InvalidToken,
            format!("{error} ({})", error.code()),
        )
    }
}

impl From<MintError> for ApiError {
    fn from(error: MintError) -> Self {
        match error {
            MintError::NotRoomAdmin(_) | MintError::RoleExceedsGrants(_) => {
                Self::new(ErrorCode::MissingGrant, error.to_string())
            }
            MintError::TtlOutOfRange { .. } | MintError::InvalidName { .. } => {
                Self::new(ErrorCode::InvalidField, error.to_string())
            }
            MintError::NoSigningKey
            | MintError::UnknownKey(_)
            | MintError::AlgorithmNotAllowed
            | MintError::Encode(_) => Self::internal(error),
        }
    }
}

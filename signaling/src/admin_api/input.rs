//! Reading request input into typed values, or a typed [`ApiError`]: JSON bodies, path segments
//! and query strings.
//!
//! Handlers take the body as raw bytes and parse it here *after* authentication and
//! authorisation, so a caller without rights learns nothing from how its body was judged, and
//! so every rejection (size, media type, syntax, shape) is one of our JSON errors rather than
//! axum's plain-text ones. Names from paths are checked with [`crate::names`] before anything
//! looks them up; nothing here ever touches the file system.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};
use crate::names;

/// Largest request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The raw body, as axum hands it over (its rejection is kept for [`json_body`] to answer).
pub type RawBody = Result<Bytes, BytesRejection>;

fn read(body: RawBody) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("the body is larger than {MAX_BODY} bytes"),
            )
        } else {
            ApiError::new(ErrorCode::MalformedJson, "the body could not be read")
        }
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses a JSON body into `T` (whose fields deny unknown ones). `None` for an empty body when
/// `optional`; an empty body otherwise is malformed JSON.
pub fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: RawBody,
    optional: bool,
) -> Result<Option<T>, ApiError> {
    let bytes = read(body)?;
    if bytes.is_empty() && optional {
        return Ok(None);
    }
    if !is_json(headers) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ));
    }
    // Syntax first, so "not JSON" and "JSON of the wrong shape" get their own codes whatever
    // the field order; then the top level must be an object, because serde would otherwise
    // read `[600]` as a struct with its fields in declaration order.
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not JSON: {error}"),
        ));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "the body must be a JSON object",
        ));
    }
    match serde_json::from_slice::<T>(&bytes) {
        Ok(value) => Ok(Some(value)),
        Err(error) => {
            let code = match error.classify() {
                serde_json::error::Category::Data => ErrorCode::InvalidBody,
                serde_json::error::Category::Io
                | serde_json::error::Category::Syntax
                | serde_json::error::Category::Eof => ErrorCode::MalformedJson,
            };
            Err(ApiError::new(
                code,
                format!("the body is not accepted: {error}"),
            ))
        }
    }
}

/// A required JSON body.
pub fn required_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: RawBody,
) -> Result<T, ApiError> {
    json_body(headers, body, false)?
        .ok_or_else(|| ApiError::new(ErrorCode::MalformedJson, "a JSON body is required"))
}

/// For endpoints that take no body: refuses one, so a client that thinks it is sending
/// options learns that they are ignored.
pub fn no_body(body: RawBody) -> Result<(), ApiError> {
    if read(body)?.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnexpectedBody,
            "this endpoint takes no body",
        ))
    }
}

/// A parsed query string, or `invalid_parameter`.
pub fn query<T>(query: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|axum::extract::Query(value)| value)
        .map_err(|rejection| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "the query string is not accepted: {}",
                    rejection.body_text()
                ),
            )
        })
}

/// A room name from the path.
pub fn room_name(name: &str) -> Result<(), ApiError> {
    names::validate_room(name).map_err(|reason| {
        ApiError::new(ErrorCode::InvalidParameter, format!("room name: {reason}"))
    })
}

/// An identity from the path.
pub fn identity(identity: &str) -> Result<(), ApiError> {
    names::validate_identity(identity)
        .map_err(|reason| ApiError::new(ErrorCode::InvalidParameter, format!("identity: {reason}")))
}

/// A value for a body field that fails a check becomes `invalid_field`.
pub fn field(name: &str, check: Result<(), String>) -> Result<(), ApiError> {
    check.map_err(|reason| ApiError::new(ErrorCode::InvalidField, format!("{name}: {reason}")))
}

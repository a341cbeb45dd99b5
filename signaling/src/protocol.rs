//! Signaling protocol v1: the JSON frames of `docs/protocol.md`, as Rust types.
//!
//! Parsing is two-step so that every bad frame gets the right typed error: first the frame
//! must be a JSON object with a string `type` ([`ErrorCode::BadJson`]), then the type must be
//! known ([`ErrorCode::UnknownType`]) and its fields well-formed ([`ErrorCode::BadRequest`]).
//! This module knows nothing of rooms or media.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access_token::Grants;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request id, echoed in the answer.
pub type RequestId = Value;

/// Frames a client sends.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Authenticate and enter the token's room.
    Join {
        /// Request id.
        id: RequestId,
        /// The access token.
        token: String,
        /// Must be [`PROTOCOL_VERSION`].
        protocol: u32,
        /// If present, must equal the token's room.
        #[serde(default)]
        room: Option<String>,
    },
    /// Enter a meeting as an invited guest: the meeting code names the room, the invitation
    /// (minted by a host with `room_admin`) gives the role, and the name is the guest's own.
    JoinGuest {
        /// Request id.
        id: RequestId,
        /// The meeting code as typed, e.g. `abc-defg-hij` (case, spaces and dashes are
        /// forgiven).
        meeting_code: String,
        /// The guest invitation token.
        invitation: String,
        /// The display name the guest chose.
        name: String,
        /// Must be [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// Offer of the publish connection.
    Publish {
        /// Request id.
        id: RequestId,
        /// SDP offer.
        sdp: String,
        /// What each sending mid carries.
        #[serde(default)]
        tracks: Vec<PublishTrack>,
    },
    /// Answer to the latest subscribe offer.
    SubscribeAnswer {
        /// Request id.
        id: RequestId,
        /// SDP answer.
        sdp: String,
        /// The offer version answered.
        version: u64,
    },
    /// Mute or unmute one of your tracks.
    Mute {
        /// Request id.
        id: RequestId,
        /// Track id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// Stop publishing one of your tracks.
    Unpublish {
        /// Request id.
        id: RequestId,
        /// Track id.
        track: String,
    },
    /// What you want of a track you receive: a simulcast layer, a temporal layer, the size it
    /// is shown at, or to pause it.
    SetSubscription {
        /// Request id.
        id: RequestId,
        /// Track id.
        track: String,
        /// Highest simulcast layer (0 = lowest).
        #[serde(default)]
        max_spatial: Option<usize>,
        /// Highest temporal layer.
        #[serde(default)]
        max_temporal: Option<u8>,
        /// Height the video is shown at, in pixels.
        #[serde(default)]
        max_height: Option<u16>,
        /// Stop (true) or resume (false) receiving it.
        #[serde(default)]
        paused: Option<bool>,
    },
    /// A chat message to everyone, or only to the participant `to` (a sid). Needs the
    /// `publish_data` grant.
    Chat {
        /// Request id.
        id: RequestId,
        /// The text (1 to [`crate::chat::MAX_CHAT_TEXT`] bytes of UTF-8).
        text: String,
        /// The addressee's sid; absent: everyone.
        #[serde(default)]
        to: Option<String>,
    },
    /// Remove another participant from the room. Needs the `room_admin` grant.
    RemoveParticipant {
        /// Request id.
        id: RequestId,
        /// The participant's sid.
        participant: String,
    },
    /// Leave the room.
    Leave {
        /// Request id.
        id: RequestId,
    },
    /// Keep-alive.
    Ping {
        /// Request id.
        id: RequestId,
    },
}

impl ClientMessage {
    /// The request id.
    pub fn id(&self) -> &RequestId {
        match self {
            ClientMessage::Join { id, .. }
            | ClientMessage::JoinGuest { id, .. }
            | ClientMessage::Chat { id, .. }
            | ClientMessage::RemoveParticipant { id, .. }
            | ClientMessage::Publish { id, .. }
            | ClientMessage::SubscribeAnswer { id, .. }
            | ClientMessage::Mute { id, .. }
            | ClientMessage::Unpublish { id, .. }
            | ClientMessage::SetSubscription { id, .. }
            | ClientMessage::Leave { id }
            | ClientMessage::Ping { id } => id,
        }
    }
}

/// What a sending mid carries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PublishTrack {
    /// The transceiver's mid.
    pub mid: String,
    /// `camera`, `microphone`, `screen` or `screen_audio`.
    pub source: TrackSource,
}

/// Where a track comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// A camera.
    Camera,
    /// A microphone.
    Microphone,
    /// A shared screen.
    Screen,
    /// The audio of a shared screen.
    ScreenAudio,
    /// Unspecified.
    Unknown,
}

/// A participant as others see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Server-assigned session id.
    pub sid: String,
    /// Identity from the token.
    pub identity: String,
    /// Display name from the token.
    pub name: String,
}

/// A published track as others see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrackInfo {
    /// Track id.
    pub id: String,
    /// Publisher's sid.
    pub participant: String,
    /// `audio` or `video`.
    pub kind: String,
    /// Source.
    pub source: TrackSource,
    /// Muted by its publisher.
    pub muted: bool,
}

/// One chat message as participants see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// Message id (`CH_…`).
    pub id: String,
    /// The sender's sid at the time it was sent.
    pub participant: String,
    /// The sender's identity.
    pub identity: String,
    /// The sender's display name.
    pub name: String,
    /// The addressee's sid for a private message; absent for everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The text.
    pub text: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub sent_at: u64,
}

/// A published track in the publish answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedTrack {
    /// Track id.
    pub id: String,
    /// The publish connection's mid.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// Source.
    pub source: TrackSource,
}

/// Maps a receiving mid to a track.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscribedTrack {
    /// Track id.
    pub id: String,
    /// The subscribe connection's mid.
    pub mid: String,
    /// Publisher's sid.
    pub participant: String,
}

/// Frames the server sends.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `join`.
    Joined {
        /// Request id.
        id: RequestId,
        /// Room name.
        room: String,
        /// You.
        participant: ParticipantInfo,
        /// Everyone else.
        participants: Vec<ParticipantInfo>,
        /// Everyone else's tracks.
        tracks: Vec<TrackInfo>,
        /// What you may do here.
        grants: Grants,
        /// The room's meeting code, when the room is stored (share it with guests).
        #[serde(skip_serializing_if = "Option::is_none")]
        meeting_code: Option<String>,
    },
    /// Answer to `publish`.
    PublishAnswer {
        /// Request id.
        id: RequestId,
        /// SDP answer.
        sdp: String,
        /// Tracks created.
        tracks: Vec<PublishedTrack>,
    },
    /// A new offer for the subscribe connection.
    SubscribeOffer {
        /// SDP offer.
        sdp: String,
        /// Increasing version.
        version: u64,
        /// Receiving mids and their tracks.
        tracks: Vec<SubscribedTrack>,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Their sid.
        participant: String,
    },
    /// A track was published.
    TrackPublished {
        /// The track.
        track: TrackInfo,
    },
    /// A track ended.
    TrackUnpublished {
        /// Its id.
        track: String,
    },
    /// A track was muted or unmuted.
    TrackMuted {
        /// Its id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// The dominant speaker changed (`None`: nobody is speaking).
    ActiveSpeaker {
        /// The speaking participant's sid.
        participant: Option<String>,
    },
    /// A chat message (sent right after `joined`: the meeting's history you may see).
    ChatHistory {
        /// Oldest first.
        messages: Vec<ChatMessage>,
    },
    /// A new chat message (also echoed to its sender).
    Chat {
        /// The message.
        message: ChatMessage,
    },
    /// An admin changed your grants; requests they no longer allow are refused, and media
    /// they no longer allow has stopped.
    GrantsChanged {
        /// Your grants now.
        grants: Grants,
    },
    /// Success with nothing to return.
    Ok {
        /// Request id.
        id: RequestId,
    },
    /// Answer to `ping`.
    Pong {
        /// Request id.
        id: RequestId,
    },
    /// An error.
    Error {
        /// The request it answers, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The server is closing this session.
    Closing {
        /// Why.
        reason: String,
    },
}

/// Error codes of the protocol.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object with a string `type`.
    BadJson,
    /// Unknown `type`.
    UnknownType,
    /// Missing or mistyped field.
    BadRequest,
    /// Request before `join`.
    NotJoined,
    /// Second `join`.
    AlreadyJoined,
    /// Token does not verify.
    InvalidToken,
    /// `join` named another room than the token's.
    WrongRoom,
    /// Unsupported protocol version.
    UnsupportedProtocol,
    /// Grants do not allow this.
    PermissionDenied,
    /// SDP does not parse or lacks required attributes.
    InvalidSdp,
    /// No forwardable codec in an offered section.
    NoSupportedCodec,
    /// No such track.
    UnknownTrack,
    /// Out of order.
    OutOfOrder,
    /// Frame over the size limit.
    FrameTooLarge,
    /// Over the rate limit.
    RateLimited,
    /// Room at its participant limit.
    RoomFull,
    /// Server fault.
    Internal,
    /// The room does not exist (and the token may not create it), or the meeting code names
    /// no room.
    RoomNotFound,
    /// The token (or the identity) was revoked in this room by an admin.
    TokenRevoked,
    /// No such participant in the room.
    UnknownParticipant,
    /// A chat message over the size limit, or empty.
    ChatTooLong,
    /// The meeting's chat history is full (count or bytes).
    ChatFull,
}

impl ErrorCode {
    /// Every code, in declaration order (`ALL[code as usize] == code`).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadRequest,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::InvalidToken,
        ErrorCode::WrongRoom,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::PermissionDenied,
        ErrorCode::InvalidSdp,
        ErrorCode::NoSupportedCodec,
        ErrorCode::UnknownTrack,
        ErrorCode::OutOfOrder,
        ErrorCode::FrameTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::RoomFull,
        ErrorCode::Internal,
        ErrorCode::RoomNotFound,
        ErrorCode::TokenRevoked,
        ErrorCode::UnknownParticipant,
        ErrorCode::ChatTooLong,
        ErrorCode::ChatFull,
    ];

    /// Whether the server closes the session after sending this error.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidToken
                | ErrorCode::WrongRoom
                | ErrorCode::UnsupportedProtocol
                | ErrorCode::FrameTooLarge
                | ErrorCode::RateLimited
                | ErrorCode::RoomFull
                | ErrorCode::TokenRevoked
        )
    }

    /// The code as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::NoSupportedCodec => "no_supported_codec",
            ErrorCode::UnknownTrack => "unknown_track",
            ErrorCode::OutOfOrder => "out_of_order",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Internal => "internal",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::UnknownParticipant => "unknown_participant",
            ErrorCode::ChatTooLong => "chat_too_long",
            ErrorCode::ChatFull => "chat_full",
        }
    }
}

/// A protocol error: what to answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtocolError {
    /// The code.
    pub code: ErrorCode,
    /// Detail for the client.
    pub message: String,
}

impl ProtocolError {
    /// Shorthand constructor.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error frame answering request `id`.
    pub fn to_message(&self, id: Option<RequestId>) -> ServerMessage {
        ServerMessage::Error {
            id,
            code: self.code,
            message: self.message.clone(),
        }
    }
}

const KNOWN_TYPES: &[&str] = &[
    "join",
    "join_guest",
    "chat",
    "remove_participant",
    "publish",
    "subscribe_answer",
    "mute",
    "unpublish",
    "set_subscription",
    "leave",
    "ping",
];

/// Parses a client frame; on error returns the error and the request id if one could be read.
pub fn parse_client_message(
    text: &str,
) -> Result<ClientMessage, (ProtocolError, Option<RequestId>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            ProtocolError::new(ErrorCode::BadJson, format!("not JSON: {e}")),
            None,
        )
    })?;
    let Value::Object(map) = &value else {
        return Err((
            ProtocolError::new(ErrorCode::BadJson, "a frame must be a JSON object"),
            None,
        ));
    };
    let id = map.get("id").cloned();
    let Some(Value::String(ty)) = map.get("type") else {
        return Err((
            ProtocolError::new(ErrorCode::BadJson, "a frame needs a string \"type\""),
            id,
        ));
    };
    if !KNOWN_TYPES.contains(&ty.as_str()) {
        return Err((
            ProtocolError::new(ErrorCode::UnknownType, format!("unknown type {ty:?}")),
            id,
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| (ProtocolError::new(ErrorCode::BadRequest, e.to_string()), id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_request_type() {
        let join =
            parse_client_message(r#"{"type":"join","id":1,"token":"t","protocol":1}"#).unwrap();
        assert_eq!(
            join,
            ClientMessage::Join {
                id: json!(1),
                token: "t".into(),
                protocol: 1,
                room: None
            }
        );
        let publish = parse_client_message(
            r#"{"type":"publish","id":"a","sdp":"v=0","tracks":[{"mid":"0","source":"camera"}]}"#,
        )
        .unwrap();
        assert!(
            matches!(publish, ClientMessage::Publish { ref tracks, .. } if tracks[0].source == TrackSource::Camera)
        );
        for frame in [
            r#"{"type":"subscribe_answer","id":2,"sdp":"x","version":3}"#,
            r#"{"type":"mute","id":2,"track":"TR_1","muted":true}"#,
            r#"{"type":"unpublish","id":2,"track":"TR_1"}"#,
            r#"{"type":"leave","id":2}"#,
            r#"{"type":"ping","id":2}"#,
            r#"{"type":"chat","id":2,"text":"hi"}"#,
            r#"{"type":"chat","id":2,"text":"psst","to":"PA_1"}"#,
            r#"{"type":"remove_participant","id":2,"participant":"PA_1"}"#,
            r#"{"type":"join_guest","id":2,"meeting_code":"abc-defg-hij","invitation":"t","name":"G","protocol":1}"#,
        ] {
            assert_eq!(
                parse_client_message(frame).unwrap().id(),
                &json!(2),
                "{frame}"
            );
        }
    }

    #[test]
    fn bad_frames_get_the_right_code_and_keep_the_id() {
        let code = |t: &str| parse_client_message(t).unwrap_err();
        assert_eq!(code("{not json").0.code, ErrorCode::BadJson);
        assert_eq!(code("[1,2]").0.code, ErrorCode::BadJson);
        assert_eq!(code(r#"{"id":5}"#).0.code, ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":7}"#).0.code, ErrorCode::BadJson);
        let (e, id) = code(r#"{"type":"dance","id":5}"#);
        assert_eq!((e.code, id), (ErrorCode::UnknownType, Some(json!(5))));
        let (e, id) = code(r#"{"type":"mute","id":6,"track":"x"}"#);
        assert_eq!((e.code, id), (ErrorCode::BadRequest, Some(json!(6))));
        assert_eq!(
            code(r#"{"type":"publish","id":1,"sdp":"v","tracks":[{"mid":"0","source":"moon"}]}"#)
                .0
                .code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn all_lists_every_code_once_in_declaration_order() {
        // Adding a variant breaks this match: add it to `ErrorCode::ALL` too.
        let listed = |c: ErrorCode| match c {
            ErrorCode::BadJson
            | ErrorCode::UnknownType
            | ErrorCode::BadRequest
            | ErrorCode::NotJoined
            | ErrorCode::AlreadyJoined
            | ErrorCode::InvalidToken
            | ErrorCode::WrongRoom
            | ErrorCode::UnsupportedProtocol
            | ErrorCode::PermissionDenied
            | ErrorCode::InvalidSdp
            | ErrorCode::NoSupportedCodec
            | ErrorCode::UnknownTrack
            | ErrorCode::OutOfOrder
            | ErrorCode::FrameTooLarge
            | ErrorCode::RateLimited
            | ErrorCode::RoomFull
            | ErrorCode::Internal
            | ErrorCode::RoomNotFound
            | ErrorCode::TokenRevoked
            | ErrorCode::UnknownParticipant
            | ErrorCode::ChatTooLong
            | ErrorCode::ChatFull => ErrorCode::ALL.contains(&c),
        };
        assert_eq!(ErrorCode::ALL.len(), 22);
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert!(listed(*c));
            assert_eq!(*c as usize, i, "{c:?}");
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
    }

    #[test]
    fn server_frames_serialise_as_documented() {
        let e = ProtocolError::new(ErrorCode::InvalidSdp, "nope").to_message(Some(json!(7)));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type":"error","id":7,"code":"invalid_sdp","message":"nope"})
        );
        let left = ServerMessage::ParticipantLeft {
            participant: "PA_1".into(),
        };
        assert_eq!(
            serde_json::to_value(&left).unwrap(),
            json!({"type":"participant_left","participant":"PA_1"})
        );
        assert_eq!(ErrorCode::NoSupportedCodec.as_str(), "no_supported_codec");
        assert_eq!(
            serde_json::to_value(ErrorCode::NoSupportedCodec).unwrap(),
            json!("no_supported_codec")
        );
    }
}

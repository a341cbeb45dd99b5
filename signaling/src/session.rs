//! One participant's WebSocket session: limits, authentication, and frame dispatch.
//!
//! The session enforces the limits of `docs/protocol.md` (frame size, frame rate, join
//! deadline, idle timeout, bounded outbound queue), turns frames into room commands, and
//! answers malformed or out-of-order frames with typed errors, keeping the session where that
//! is safe. Identity, name, room and grants come only from the verified token (or, for a
//! guest, from the invitation and the meeting code resolved through storage); nothing in a
//! later frame can change them, and the room actor checks every request against the grants.
//! All frames to the client, the room's and the session's own, go through one bounded queue
//! so their order is kept.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::access_token::{Claims, GuestError, unix_now};
use crate::protocol::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ProtocolError, ServerMessage, parse_client_message,
};
use crate::room::{Outbound, ParticipantRequest, RoomCommand};
use crate::server::ServerContext;

/// Limits applied to every session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Largest accepted frame, bytes.
    pub max_frame: usize,
    /// Sustained frames per second.
    pub rate_per_second: f64,
    /// Burst of frames allowed above the rate.
    pub burst: f64,
    /// Time allowed between connecting and `join`.
    pub join_deadline: Duration,
    /// A session silent this long is closed.
    pub idle_timeout: Duration,
    /// Frames queued toward a client before it counts as a slow reader.
    pub outbound_queue: usize,
    /// Connections per IP that have not joined yet.
    pub max_unjoined_per_ip: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_frame: 64 * 1024,
            rate_per_second: 50.0,
            burst: 100.0,
            join_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            outbound_queue: 256,
            max_unjoined_per_ip: 20,
        }
    }
}

/// A token bucket.
struct RateLimiter {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
            rate,
            burst,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum State {
    Unjoined,
    Joined {
        sid: String,
        room: mpsc::UnboundedSender<RoomCommand>,
    },
}

/// Releases the per-IP unjoined slot once.
struct UnjoinedSlot {
    ctx: Arc<ServerContext>,
    ip: IpAddr,
    held: bool,
}

impl UnjoinedSlot {
    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.ctx.release_unjoined(self.ip);
        }
    }
}

impl Drop for UnjoinedSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs a session to its end. The caller has already reserved an unjoined slot for `ip`.
pub async fn run(
    socket: WebSocket,
    ctx: Arc<ServerContext>,
    ip: IpAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = ctx.limits.clone();
    let _open = ctx.metrics.session();
    let mut slot = UnjoinedSlot {
        ctx: ctx.clone(),
        ip,
        held: true,
    };
    let (mut sink, mut stream) = socket.split();
    let (outbound, mut queue) = mpsc::channel::<Outbound>(limits.outbound_queue);
    let writer = tokio::spawn(async move {
        while let Some(item) = queue.recv().await {
            match item {
                Outbound::Frame(message) => {
                    let Ok(text) = serde_json::to_string(&message) else {
                        continue;
                    };
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Outbound::Close(reason) => {
                    if let Ok(text) = serde_json::to_string(&ServerMessage::Closing { reason }) {
                        let _ = sink.send(Message::Text(text.into())).await;
                    }
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    });
    let started = Instant::now();
    let mut limiter = RateLimiter::new(limits.rate_per_second, limits.burst, started);
    let mut state = State::Unjoined;
    let mut kicked: Option<oneshot::Receiver<String>> = None;
    let mut last_frame = started;
    loop {
        let deadline = match state {
            State::Unjoined => {
                (started + limits.join_deadline).min(last_frame + limits.idle_timeout)
            }
            State::Joined { .. } => last_frame + limits.idle_timeout,
        };
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = tokio::time::sleep_until(deadline.into()) => {
                let reason = if matches!(state, State::Unjoined) { "join deadline passed" } else { "idle timeout" };
                let _ = outbound.try_send(Outbound::Close(reason.into()));
                break;
            }
            _ = shutdown.changed() => {
                let _ = outbound.try_send(Outbound::Close("server shutting down".into()));
                break;
            }
            reason = async {
                match kicked.as_mut() {
                    Some(rx) => rx.await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                // The room removed us (too slow a reader, removed by an admin, room closed): it
                // queued `closing` if the queue had room; the writer flushes it below, bounded.
                tracing::info!(reason = reason.as_deref().unwrap_or("kicked"), "room closed this session");
                state = State::Unjoined;
                break;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                last_frame = Instant::now();
                ctx.count_frame();
                let e = ProtocolError::new(ErrorCode::BadJson, "frames must be JSON text");
                if !reply_error(&ctx, &outbound, e, None) {
                    break;
                }
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                last_frame = Instant::now();
                continue;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
        };
        let now = Instant::now();
        last_frame = now;
        ctx.count_frame();
        if text.len() > limits.max_frame {
            let e = ProtocolError::new(
                ErrorCode::FrameTooLarge,
                format!("frames are limited to {} bytes", limits.max_frame),
            );
            reply_error(&ctx, &outbound, e, None);
            break;
        }
        if !limiter.allow(now) {
            let e = ProtocolError::new(ErrorCode::RateLimited, "too many frames");
            reply_error(&ctx, &outbound, e, None);
            break;
        }
        let message = match parse_client_message(&text) {
            Ok(m) => m,
            Err((e, id)) => {
                if !reply_error(&ctx, &outbound, e, id) {
                    break;
                }
                continue;
            }
        };
        let keep_going = match (&state, message) {
            (_, ClientMessage::Ping { id }) => send(&outbound, ServerMessage::Pong { id }),
            (
                State::Unjoined,
                ClientMessage::Join {
                    id,
                    token,
                    protocol,
                    room,
                },
            ) => match join(&ctx, &outbound, id.clone(), &token, protocol, room).await {
                Ok((joined, kick)) => {
                    slot.release();
                    state = joined;
                    kicked = Some(kick);
                    true
                }
                Err(e) => reply_error(&ctx, &outbound, e, Some(id)),
            },
            (
                State::Unjoined,
                ClientMessage::JoinGuest {
                    id,
                    meeting_code,
                    invitation,
                    name,
                    protocol,
                },
            ) => {
                let guest = GuestJoin {
                    meeting_code: &meeting_code,
                    invitation: &invitation,
                    name: &name,
                    protocol,
                };
                match join_guest(&ctx, &outbound, id.clone(), guest).await {
                    Ok((joined, kick)) => {
                        slot.release();
                        state = joined;
                        kicked = Some(kick);
                        true
                    }
                    Err(e) => {
                        // Every failed guest join closes the connection: meeting codes cannot
                        // be tried one after another on one socket.
                        let fatal = e.code.is_fatal();
                        let message = e.message.clone();
                        reply_error(&ctx, &outbound, e, Some(id));
                        if !fatal {
                            let _ = outbound.try_send(Outbound::Close(message));
                        }
                        false
                    }
                }
            }
            (
                State::Joined { .. },
                ClientMessage::Join { id, .. } | ClientMessage::JoinGuest { id, .. },
            ) => reply_error(
                &ctx,
                &outbound,
                ProtocolError::new(ErrorCode::AlreadyJoined, "already joined"),
                Some(id),
            ),
            (State::Unjoined, other) => {
                let id = other.id().clone();
                reply_error(
                    &ctx,
                    &outbound,
                    ProtocolError::new(ErrorCode::NotJoined, "send join first"),
                    Some(id),
                )
            }
            (State::Joined { sid, room }, ClientMessage::Leave { id }) => {
                let _ = room.send(RoomCommand::Leave { sid: sid.clone() });
                state = State::Unjoined;
                send(&outbound, ServerMessage::Ok { id });
                let _ = outbound.try_send(Outbound::Close("left".into()));
                break;
            }
            (State::Joined { sid, room }, message) => {
                let id = message.id().clone();
                let request = match message {
                    ClientMessage::Publish { sdp, tracks, .. } => {
                        ParticipantRequest::Publish { sdp, tracks }
                    }
                    ClientMessage::SubscribeAnswer { sdp, version, .. } => {
                        ParticipantRequest::SubscribeAnswer { sdp, version }
                    }
                    ClientMessage::Mute { track, muted, .. } => {
                        ParticipantRequest::Mute { track, muted }
                    }
                    ClientMessage::Unpublish { track, .. } => {
                        ParticipantRequest::Unpublish { track }
                    }
                    ClientMessage::Chat { text, to, .. } => ParticipantRequest::Chat { text, to },
                    ClientMessage::RemoveParticipant { participant, .. } => {
                        ParticipantRequest::RemoveParticipant { participant }
                    }
                    ClientMessage::SetSubscription {
                        track,
                        max_spatial,
                        max_temporal,
                        max_height,
                        paused,
                        ..
                    } => ParticipantRequest::SetSubscription {
                        track,
                        preferences: sfu_core::consumer::ConsumerPreferences {
                            max_spatial,
                            max_temporal,
                            max_height,
                        },
                        paused,
                    },
                    ClientMessage::Join { .. }
                    | ClientMessage::JoinGuest { .. }
                    | ClientMessage::Leave { .. }
                    | ClientMessage::Ping { .. } => continue,
                };
                room.send(RoomCommand::Request {
                    sid: sid.clone(),
                    id,
                    request,
                })
                .is_ok()
            }
        };
        if !keep_going {
            break;
        }
    }
    if let State::Joined { sid, room } = state {
        let _ = room.send(RoomCommand::Leave { sid });
    }
    drop(outbound);
    // A slow reader's socket may never take the last frames: close it anyway.
    let mut writer = writer;
    if tokio::time::timeout(WRITER_FLUSH, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// How long the last frames (`closing`) may take to reach the client after the session ends.
const WRITER_FLUSH: Duration = Duration::from_secs(1);

fn send(outbound: &mpsc::Sender<Outbound>, message: ServerMessage) -> bool {
    outbound.try_send(Outbound::Frame(message)).is_ok()
}

/// Sends an error (and counts it); returns whether the session continues.
fn reply_error(
    ctx: &ServerContext,
    outbound: &mpsc::Sender<Outbound>,
    error: ProtocolError,
    id: Option<Value>,
) -> bool {
    ctx.metrics.count_error(error.code);
    let fatal = error.code.is_fatal();
    let sent = send(outbound, error.to_message(id));
    if fatal {
        let _ = outbound.try_send(Outbound::Close(error.message));
    }
    sent && !fatal
}

async fn join(
    ctx: &Arc<ServerContext>,
    outbound: &mpsc::Sender<Outbound>,
    id: Value,
    token: &str,
    protocol: u32,
    room: Option<String>,
) -> Result<(State, oneshot::Receiver<String>), ProtocolError> {
    if protocol != PROTOCOL_VERSION {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedProtocol,
            format!("this server speaks protocol {PROTOCOL_VERSION}"),
        ));
    }
    let claims = ctx
        .keys
        .verify_join(token, None, unix_now())
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidToken, e.to_string()))?;
    crate::names::validate_room(&claims.room)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidToken, e))?;
    crate::names::validate_identity(&claims.sub)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidToken, e))?;
    crate::names::validate_display_name(&claims.name)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidToken, e))?;
    if let Some(room) = room
        && room != claims.room
    {
        return Err(ProtocolError::new(
            ErrorCode::WrongRoom,
            format!("this token is for room {:?}", claims.room),
        ));
    }
    enter(ctx, outbound, id, claims).await
}

/// What a guest sent in `join_guest`.
struct GuestJoin<'a> {
    meeting_code: &'a str,
    invitation: &'a str,
    name: &'a str,
    protocol: u32,
}

/// A guest's join: the meeting code resolves to a stored room, the invitation must be for that
/// room, and the guest joins with exactly its role's grants and the name it typed.
async fn join_guest(
    ctx: &Arc<ServerContext>,
    outbound: &mpsc::Sender<Outbound>,
    id: Value,
    guest: GuestJoin<'_>,
) -> Result<(State, oneshot::Receiver<String>), ProtocolError> {
    if guest.protocol != PROTOCOL_VERSION {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedProtocol,
            format!("this server speaks protocol {PROTOCOL_VERSION}"),
        ));
    }
    let room = ctx.rooms.resolve_meeting_code(guest.meeting_code).await?;
    let claims = ctx
        .keys
        .admit_guest(guest.invitation, &room, guest.name, unix_now())
        .map_err(|e| match e {
            GuestError::Token(e) => ProtocolError::new(ErrorCode::InvalidToken, e.to_string()),
            GuestError::DisplayName(reason) => ProtocolError::new(ErrorCode::BadRequest, reason),
        })?;
    enter(ctx, outbound, id, claims).await
}

/// Hands verified claims to their room.
async fn enter(
    ctx: &Arc<ServerContext>,
    outbound: &mpsc::Sender<Outbound>,
    id: Value,
    claims: Claims,
) -> Result<(State, oneshot::Receiver<String>), ProtocolError> {
    if !claims.grants.join {
        return Err(ProtocolError::new(
            ErrorCode::PermissionDenied,
            "this token does not allow joining",
        ));
    }
    let (reply, answer) = oneshot::channel();
    let (kick, kicked) = oneshot::channel();
    let room_name = claims.room.clone();
    let command = RoomCommand::Join {
        id,
        claims,
        outbound: outbound.clone(),
        kick,
        reply,
    };
    let room = ctx.registry.join(&room_name, command).await?;
    let sid = answer
        .await
        .map_err(|_| ProtocolError::new(ErrorCode::Internal, "room closed"))??;
    Ok((State::Joined { sid, room }, kicked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_burst_then_rate() {
        let start = Instant::now();
        let mut l = RateLimiter::new(50.0, 100.0, start);
        let allowed = (0..150).filter(|_| l.allow(start)).count();
        assert_eq!(allowed, 100, "the burst");
        assert!(!l.allow(start));
        assert!(
            l.allow(start + Duration::from_millis(25)),
            "refills at the rate"
        );
        let later = start + Duration::from_secs(10);
        let allowed = (0..150).filter(|_| l.allow(later)).count();
        assert_eq!(allowed, 100, "never above the burst");
    }
}

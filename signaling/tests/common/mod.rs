//! Helpers shared by the room-service tests: a real server (worker + signaling on 127.0.0.1:0)
//! with its own storage, WebSocket clients, tokens of every role, and waits with deadlines.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sfu_core::driver::WorkerHandle;
use signaling::access_token::{ApiKeys, Grants, GuestRole, Principal};
use signaling::room::RoomSettings;
use signaling::room_service::{RoomService, RoomServiceConfig};
use signaling::server::{SignalingConfig, SignalingServer};
use signaling::storage::{NewRoom, Storage};
use signaling::webhooks::WebhookSender;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const KEY: &str = "testkey";
pub const SECRET: &[u8] = b"test-secret-0123456789abcdef0123";
pub const OFFER: &str = include_str!("../fixtures/chrome-publish-offer.sdp");
/// Every wait on the server gives up after this (generous: the machine is shared).
pub const DEADLINE: Duration = Duration::from_secs(15);

pub fn keys() -> ApiKeys {
    let k = ApiKeys::default();
    k.insert(KEY, SECRET.to_vec());
    k.set_signing_key(KEY).unwrap();
    k
}

/// A join token for `identity` in `room`.
pub fn token(room: &str, identity: &str, grants: Grants) -> String {
    keys()
        .mint(
            KEY,
            identity,
            identity,
            room,
            grants,
            Duration::from_secs(300),
        )
        .unwrap()
}

/// A participant that may also create the room.
pub fn creator() -> Grants {
    Grants {
        room_create: true,
        ..Grants::participant()
    }
}

/// A room admin (who may also create the room).
pub fn admin() -> Grants {
    Grants {
        room_admin: true,
        room_create: true,
        ..Grants::participant()
    }
}

/// A hidden recorder: joins and subscribes, unseen.
pub fn recorder() -> Grants {
    Grants {
        join: true,
        subscribe: true,
        hidden: true,
        recorder: true,
        ..Grants::default()
    }
}

struct Host {
    room: String,
}

impl Principal for Host {
    fn identity(&self) -> &str {
        "host"
    }
    fn grants_in(&self, room: &str) -> Grants {
        if room == self.room {
            admin()
        } else {
            Grants::default()
        }
    }
}

/// A guest invitation to `room` with `role`, minted for a host with `room_admin`.
pub fn invitation(room: &str, role: GuestRole) -> String {
    keys()
        .mint_invitation(
            &Host { room: room.into() },
            room,
            role,
            Duration::from_secs(600),
            signaling::access_token::unix_now(),
        )
        .unwrap()
}

/// A running server.
pub struct Server {
    pub url: String,
    pub rooms: RoomService,
    pub storage: Storage,
}

/// Starts a worker and a signaling server whose rooms use `storage` (and `webhooks`).
pub async fn start_with(storage: Storage, webhooks: Option<WebhookSender>) -> Server {
    start_with_settings(storage, webhooks, |_| {}).await
}

pub async fn start_with_settings(
    storage: Storage,
    webhooks: Option<WebhookSender>,
    adjust: impl FnOnce(&mut RoomSettings),
) -> Server {
    let (worker, events) =
        WorkerHandle::spawn("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let rooms = RoomService::new(RoomServiceConfig {
        storage: Some(storage.clone()),
        webhooks,
        ..Default::default()
    });
    let mut room = RoomSettings {
        service: rooms.clone(),
        ..Default::default()
    };
    adjust(&mut room);
    let config = SignalingConfig {
        keys: keys(),
        room,
        ..Default::default()
    };
    let server = SignalingServer::new(config, Arc::new(worker), events);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    Server {
        url: format!("ws://{addr}/ws"),
        rooms,
        storage,
    }
}

/// A server on a private in-memory database.
pub async fn start() -> Server {
    start_with(Storage::connect("sqlite::memory:").await.unwrap(), None).await
}

/// Stores a room; returns its meeting code.
pub async fn store_room(storage: &Storage, name: &str, max_participants: u32) -> String {
    let code = signaling::meeting_code::MeetingCode::generate();
    storage
        .create_room(
            &NewRoom {
                name: name.into(),
                meeting_code: code.as_str().into(),
                max_participants,
                empty_timeout_secs: 0,
                metadata: String::new(),
            },
            0,
        )
        .await
        .unwrap();
    code.as_str().to_owned()
}

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON frame, or `None` when the socket closed.
pub async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        let next = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("no frame in time");
        match next {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Frames until one of type `ty` (the others are dropped).
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = recv(ws)
            .await
            .unwrap_or_else(|| panic!("socket closed while waiting for {ty}"));
        if v["type"] == ty {
            return v;
        }
    }
}

/// Frames until the answer to request `id` (success or error).
pub async fn answer(ws: &mut Ws, id: u64) -> Value {
    loop {
        let v = recv(ws)
            .await
            .unwrap_or_else(|| panic!("socket closed while waiting for the answer to {id}"));
        if v["id"] == id {
            return v;
        }
    }
}

/// Reads until the socket closes; returns the `closing` reason if one came.
pub async fn closed(ws: &mut Ws) -> Option<String> {
    let mut reason = None;
    while let Some(v) = recv(ws).await {
        if v["type"] == "closing" {
            reason = v["reason"].as_str().map(str::to_owned);
        }
    }
    reason
}

/// Joins with `token`; returns the socket and the `joined` frame.
pub async fn join(url: &str, token: &str) -> (Ws, Value) {
    let mut ws = connect(url).await;
    send(
        &mut ws,
        json!({"type":"join","id":1,"token":token,"protocol":1}),
    )
    .await;
    let joined = answer(&mut ws, 1).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    (ws, joined)
}

/// Joins as a guest; returns the socket and the answer (joined or error).
pub async fn join_guest(url: &str, code: &str, invitation: &str, name: &str) -> (Ws, Value) {
    let mut ws = connect(url).await;
    send(
        &mut ws,
        json!({"type":"join_guest","id":1,"meeting_code":code,"invitation":invitation,"name":name,"protocol":1}),
    )
    .await;
    let a = answer(&mut ws, 1).await;
    (ws, a)
}

/// Publishes the Chrome fixture (audio + video); returns the track ids.
pub async fn publish(ws: &mut Ws, id: u64) -> Vec<String> {
    send(ws, json!({"type":"publish","id":id,"sdp":OFFER,"tracks":[{"mid":"0","source":"microphone"},{"mid":"1","source":"camera"}]})).await;
    let a = answer(ws, id).await;
    assert_eq!(a["type"], "publish_answer", "{a}");
    a["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `check` every 20 ms until it holds; fails after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

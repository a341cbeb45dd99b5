//! The signaling mode: the load goes through a real `sfu-server` and its WebSocket API
//! (`docs/protocol.md`), as browsers' does.
//!
//! Owns what a browser's page would do before media flows: minting access tokens (HS256,
//! `docs/protocol.md` § Access tokens), joining every client over its own WebSocket, the
//! publish offer / answer of each publisher and the answer to each subscriber's subscribe
//! offer, and keeping those sockets alive (reading every event, `ping` every 20 s) while the
//! media runs. Media then runs exactly as in the embedded mode ([`crate::traffic::drive`]);
//! the server's CPU and RSS come from `/proc/<pid>` and its drops and consumers from its
//! `/metrics` ([`crate::server_process`]). It must not reach into the server any other way.
//!
//! Unlike the embedded mode, the server congestion-controls every subscriber (it always
//! negotiates transport-wide feedback), so subscribers send transport-wide feedback as a
//! browser does, and the server's estimate of each one starts at 1 Mbit/s and is probed up:
//! give the warm-up a few seconds at high rates.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{ClientIdentity, Handshake};
use crate::client_sdp::{self, ClientTransport, ServerDescription};
use crate::config::{LoadConfig, RunError};
use crate::proc_stats::{self, CpuTime};
use crate::report::Report;
use crate::server_process::{self, MediaMetrics, ServerLaunch, ServerProcess};
use crate::traffic::{
    Before, Plan, PublisherPlan, RTP_HEADER, SfuCounters, SfuProbe, SubscriberPlan, drive,
};

/// Longest wait for one answer of the signaling server.
const SIGNALING_TIMEOUT: Duration = Duration::from_secs(20);
/// `ping` interval (the server closes a connection silent for 60 s).
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Token lifetime: the server refuses more than 10 minutes between `nbf` and `exp`.
const TOKEN_LIFETIME: u64 = 600;
/// How long publishers send at [`ramp_rate`] before the warm-up: the server's first probe
/// of a subscriber's bandwidth takes about a second.
const RAMP_UP: Duration = Duration::from_secs(2);
/// Each subscriber's stream during the ramp-up, bit/s (under the server's initial 1 Mbit/s).
const RAMP_BITS_PER_SECOND: f64 = 700_000.0;
/// The ICE password clients put in their SDP (the ICE-lite server never checks toward them).
const CLIENT_ICE_PWD: &str = "sfuloadgensfuloadgen0123";

/// Which server to load.
#[derive(Debug, Clone)]
pub enum ServerTarget {
    /// Start `sfu-server` (this binary, or the one found next to the load generator) with its
    /// own ports, API key and temporary data directory, and stop it at the end.
    Spawn {
        /// The binary; `None`: [`server_process::find_server_binary`].
        binary: Option<PathBuf>,
    },
    /// A server already running.
    Connect {
        /// Its WebSocket URL (`ws://host:port/ws`).
        url: String,
        /// An API key it accepts.
        api_key: String,
        /// That key's secret.
        api_secret: String,
        /// Its process id on this machine, to read its CPU and RSS (none: not reported).
        pid: Option<u32>,
    },
}

/// Runs one load test through a real server's signaling and reports on its window.
pub fn run(config: &LoadConfig, target: &ServerTarget) -> Result<Report, RunError> {
    config.validate()?;
    if config.effective_fan_out() != config.publishers {
        return Err(RunError::Config(
            "in the signaling mode every subscriber receives every publisher of its room \
             (--fan-out is for the embedded mode)"
                .into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_async(config.clone(), target.clone()))
}

/// The server's side, as seen from outside.
struct ServerProbe {
    pid: Option<u32>,
    http: SocketAddr,
    /// Metrics at the start: an external server's counters do not start at zero.
    metrics_before: MediaMetrics,
}

impl SfuProbe for ServerProbe {
    fn cpu(&self) -> Vec<(String, CpuTime)> {
        self.pid.map(server_process::server_cpu).unwrap_or_default()
    }

    fn rss(&self) -> u64 {
        self.pid.and_then(proc_stats::rss_bytes).unwrap_or(0)
    }

    async fn counters(&self) -> Result<SfuCounters, RunError> {
        let now = server_process::scrape(self.http).await?;
        Ok(SfuCounters {
            drops: now.drops_since(&self.metrics_before),
            consumers: now.consumers,
            congestion_paused: now.congestion_paused,
        })
    }
}

/// A rate whose stream fits what the server first assumes of every subscriber (1 Mbit/s):
/// a single-layer stream above it is paused at once, and a paused consumer gives the
/// server's bandwidth probing nothing to measure, so it would stay paused.
fn ramp_rate(config: &LoadConfig) -> f64 {
    let datagram = (RTP_HEADER + config.packet_size + config.srtp_profile.rtp_tag_len()) as f64;
    let per_packet = datagram * 8.0 * config.effective_fan_out() as f64;
    (RAMP_BITS_PER_SECOND / per_packet).min(config.packet_rate)
}

/// The ceiling the server should allow each subscriber (its congestion control's maximum):
/// what it receives, with room for probing and RTCP.
fn subscriber_kbps(config: &LoadConfig) -> u64 {
    let datagram = (RTP_HEADER + config.packet_size + config.srtp_profile.rtp_tag_len()) as f64;
    let bps = config.packet_rate * config.effective_fan_out() as f64 * datagram * 8.0;
    ((bps * 1.5 / 1000.0).ceil() as u64).max(20_000)
}

async fn run_async(config: LoadConfig, target: ServerTarget) -> Result<Report, RunError> {
    let own_tid = proc_stats::current_tid();
    let (server, url, api_key, api_secret, pid, http) = match target {
        ServerTarget::Spawn { binary } => {
            let binary = match binary {
                Some(b) => b,
                None => server_process::find_server_binary()?,
            };
            let server = ServerProcess::start(&ServerLaunch {
                binary,
                workers: config.workers,
                max_participants: config.publishers + config.subscribers + 1,
                subscriber_max_kbps: subscriber_kbps(&config),
            })?;
            let (url, key, secret, pid, http) = (
                server.ws_url(),
                server.api_key.clone(),
                server.api_secret.clone(),
                server.pid,
                server.http,
            );
            (Some(server), url, key, secret, Some(pid), http)
        }
        ServerTarget::Connect {
            url,
            api_key,
            api_secret,
            pid,
        } => {
            let http = http_address(&url).await?;
            (None, url, api_key, api_secret, pid, http)
        }
    };
    let media: Vec<SocketAddr> = server.as_ref().map(|s| s.media.clone()).unwrap_or_default();
    let mut pinning = "not pinned (--no-pin)".to_owned();
    if config.pin {
        pinning = match pid {
            Some(pid) => pin(pid, own_tid),
            None => "not pinned (the server's pid is unknown)".into(),
        };
    }
    let probe = ServerProbe {
        pid,
        http,
        metrics_before: server_process::scrape(http).await?,
    };
    let rss_bare = probe.rss();
    let identity = ClientIdentity::generate()?;
    let tokens = TokenMinter {
        key: api_key,
        secret: api_secret,
    };
    let run_id = format!("{}-{}", std::process::id(), unix_now() % 100_000);

    let setup_started = Instant::now();
    let mut plan = Plan::default();
    let mut sockets = Vec::new();
    for room in 0..config.rooms {
        let name = format!("loadgen-{run_id}-{room}");
        // Publishers first, so each subscriber's first offer carries every track.
        let mut tracks: HashMap<String, u32> = HashMap::new();
        for p in 0..config.publishers {
            let index = plan.publishers.len() as u32;
            let seed = 1 + u64::from(index);
            let ssrc = 0x1000_0000 + index;
            let token = tokens.mint(&name, &format!("pub-{room}-{p}"), Role::Publisher)?;
            let mut ws = Signaling::join(&url, &token).await?;
            let offer = client_sdp::publish_offer(
                &client_transport(&identity, seed),
                ssrc,
                &format!("publisher-{room}-{p}"),
                config.nack,
            );
            let answer = ws
                .request(json!({
                    "type": "publish",
                    "sdp": offer,
                    "tracks": [{"mid": "0", "source": "camera"}],
                }))
                .await?;
            let sdp = answer.get("sdp").and_then(Value::as_str).unwrap_or("");
            let description = client_sdp::parse_server(sdp)?;
            let track = answer
                .get("tracks")
                .and_then(|t| t.get(0))
                .and_then(|t| t.get("id"))
                .and_then(Value::as_str)
                .ok_or_else(|| RunError::Signaling("publish_answer without a track".into()))?;
            tracks.insert(track.to_owned(), index);
            plan.publishers.push(PublisherPlan {
                transport: description.transport,
                ssrc,
                seed,
            });
            sockets.push(ws);
        }
        for s in 0..config.subscribers {
            let seed = (1 << 32) + plan.subscribers.len() as u64;
            let token = tokens.mint(&name, &format!("sub-{room}-{s}"), Role::Subscriber)?;
            let mut ws = Signaling::join(&url, &token).await?;
            let (offer, streams, version) = loop {
                let event = ws.event("subscribe_offer").await?;
                let sdp = event.get("sdp").and_then(Value::as_str).unwrap_or("");
                let version = event.get("version").cloned().unwrap_or(Value::Null);
                let offer = client_sdp::parse_server(sdp)?;
                let streams = streams_of(&offer, &event, &tracks);
                if streams.len() >= config.publishers {
                    break (offer, streams, version);
                }
                // An offer made before every track was there: answer it and wait for the next.
                let answer =
                    client_sdp::subscribe_answer(&offer, &client_transport(&identity, seed));
                ws.request(json!({"type": "subscribe_answer", "sdp": answer, "version": version}))
                    .await?;
            };
            let answer = client_sdp::subscribe_answer(&offer, &client_transport(&identity, seed));
            ws.request(json!({"type": "subscribe_answer", "sdp": answer, "version": version}))
                .await?;
            let worker = media
                .iter()
                .position(|a| *a == offer.transport.address)
                .unwrap_or(0);
            let transport_cc = offer
                .sections
                .iter()
                .find(|s| !s.inactive && s.transport_cc.is_some())
                .and_then(|s| s.transport_cc);
            plan.subscribers.push(SubscriberPlan {
                transport: offer.transport.clone(),
                streams,
                worker,
                seed,
                side_ssrcs: offer.sections.iter().filter_map(|s| s.rtx_ssrc).collect(),
                transport_cc,
            });
            sockets.push(ws);
        }
    }
    // Every socket keeps being read (the server disconnects a client that does not read) and
    // pinged until the run ends.
    let keepalive: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::task::spawn_local(ws.keep_alive()))
        .collect();
    let start_rate = ramp_rate(&config);
    let before = Before {
        setup_started,
        rss_start: rss_bare,
        rss_bare,
        pinning,
        own_tid,
        mode: "signaling",
        ramp: (start_rate < config.packet_rate).then_some((start_rate, RAMP_UP)),
    };
    let report = drive(&config, plan, &identity, &probe, before).await;
    for k in &keepalive {
        k.abort();
    }
    drop(server);
    report
}

/// Consumer SSRC → publisher index for every section of a subscribe offer that carries a
/// track of a known publisher (the offer's `tracks` maps mids to tracks).
fn streams_of(
    offer: &ServerDescription,
    event: &Value,
    publishers: &HashMap<String, u32>,
) -> Vec<(u32, u32)> {
    let mids: HashMap<&str, &str> = event
        .get("tracks")
        .and_then(Value::as_array)
        .map(|tracks| {
            tracks
                .iter()
                .filter_map(|t| Some((t.get("mid")?.as_str()?, t.get("id")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    offer
        .sections
        .iter()
        .filter(|s| !s.inactive)
        .filter_map(|s| {
            let track = mids.get(s.mid.as_str())?;
            Some((s.ssrc?, *publishers.get(*track)?))
        })
        .collect()
}

fn client_transport(identity: &ClientIdentity, seed: u64) -> ClientTransport {
    ClientTransport {
        ice_ufrag: Handshake::local_ufrag(seed),
        ice_pwd: CLIENT_ICE_PWD.into(),
        fingerprint: identity.fingerprint(),
    }
}

/// Pins the server's threads to every CPU but the last and the load generator to the last.
fn pin(pid: u32, own_tid: Option<u32>) -> String {
    let cpus = proc_stats::cpu_count();
    if cpus < 2 {
        return "not pinned (one CPU)".into();
    }
    let loadgen_cpu = cpus - 1;
    let server_cpus = if loadgen_cpu == 1 {
        "0".to_owned()
    } else {
        format!("0-{}", loadgen_cpu - 1)
    };
    let mut ok = true;
    for tid in server_process::server_threads(pid) {
        ok &= proc_stats::pin_thread_to(tid, &server_cpus).is_ok();
    }
    ok &= own_tid.is_some_and(|tid| proc_stats::pin_thread(tid, loadgen_cpu).is_ok());
    if ok {
        format!("sfu-server threads on CPU {server_cpus}, load generator on CPU {loadgen_cpu}")
    } else {
        "pinning failed (taskset)".into()
    }
}

/// The HTTP address of a `ws://host:port/…` URL (for `/metrics`).
async fn http_address(url: &str) -> Result<SocketAddr, RunError> {
    let bad = || RunError::Config(format!("not a ws://host:port URL: {url}"));
    let rest = url.strip_prefix("ws://").ok_or_else(bad)?;
    let host = rest.split('/').next().ok_or_else(bad)?;
    tokio::net::lookup_host(host)
        .await
        .map_err(|e| RunError::Config(format!("{url}: {e}")))?
        .next()
        .ok_or_else(bad)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Subscriber,
}

/// Mints join tokens with one API key.
struct TokenMinter {
    key: String,
    secret: String,
}

#[derive(Serialize)]
struct Grants {
    join: bool,
    publish: bool,
    subscribe: bool,
    room_create: bool,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    name: &'a str,
    room: &'a str,
    grants: Grants,
    nbf: u64,
    exp: u64,
    jti: String,
}

impl TokenMinter {
    /// A join token for `identity` in `room`. Publishers may create the room (the first one
    /// opens it) and do not subscribe (a subscribe connection they never connect would be
    /// closed after 30 s); subscribers only subscribe.
    fn mint(&self, room: &str, identity: &str, role: Role) -> Result<String, RunError> {
        let nbf = unix_now().saturating_sub(5);
        let claims = Claims {
            iss: &self.key,
            sub: identity,
            aud: "join",
            name: identity,
            room,
            grants: Grants {
                join: true,
                publish: role == Role::Publisher,
                subscribe: role == Role::Subscriber,
                room_create: role == Role::Publisher,
            },
            nbf,
            exp: nbf + TOKEN_LIFETIME,
            jti: format!("{room}/{identity}/{nbf}"),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(self.key.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .map_err(|e| RunError::Signaling(format!("minting a token: {e}")))
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One client's signaling connection.
struct Signaling {
    ws: Socket,
    next_id: u64,
    /// Events read while waiting for an answer.
    events: VecDeque<Value>,
}

impl Signaling {
    /// Connects and joins with `token`.
    async fn join(url: &str, token: &str) -> Result<Self, RunError> {
        let (ws, _) =
            tokio::time::timeout(SIGNALING_TIMEOUT, tokio_tungstenite::connect_async(url))
                .await
                .map_err(|_| RunError::Signaling(format!("{url}: connect timed out")))?
                .map_err(|e| RunError::Signaling(format!("{url}: {e}")))?;
        let mut s = Self {
            ws,
            next_id: 1,
            events: VecDeque::new(),
        };
        s.request(json!({"type": "join", "token": token, "protocol": 1}))
            .await?;
        Ok(s)
    }

    async fn send(&mut self, frame: &Value) -> Result<(), RunError> {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .map_err(|e| RunError::Signaling(e.to_string()))
    }

    /// The next frame from the server.
    async fn read(&mut self) -> Result<Value, RunError> {
        loop {
            let message = tokio::time::timeout(SIGNALING_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| RunError::Signaling("the server did not answer in time".into()))?
                .ok_or_else(|| RunError::Signaling("the server closed the connection".into()))?
                .map_err(|e| RunError::Signaling(e.to_string()))?;
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str())
                    .map_err(|e| RunError::Signaling(format!("a frame that is not JSON: {e}")));
            }
        }
    }

    /// Sends `frame` with a fresh `id` and returns the answer with that id (an `error`
    /// answer is an error). Events read meanwhile are kept.
    async fn request(&mut self, mut frame: Value) -> Result<Value, RunError> {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(object) = frame.as_object_mut() {
            object.insert("id".into(), id.into());
        }
        self.send(&frame).await?;
        loop {
            let answer = self.read().await?;
            if answer.get("id").and_then(Value::as_u64) != Some(id) {
                self.events.push_back(answer);
                continue;
            }
            if answer.get("type").and_then(Value::as_str) == Some("error") {
                return Err(RunError::Signaling(format!(
                    "{} answered {}",
                    frame.get("type").and_then(Value::as_str).unwrap_or("?"),
                    answer
                )));
            }
            return Ok(answer);
        }
    }

    /// The next event of type `kind` (others are dropped; `closing` is an error).
    async fn event(&mut self, kind: &str) -> Result<Value, RunError> {
        loop {
            let event = match self.events.pop_front() {
                Some(e) => e,
                None => self.read().await?,
            };
            match event.get("type").and_then(Value::as_str) {
                Some(k) if k == kind => return Ok(event),
                Some("closing") => {
                    return Err(RunError::Signaling(format!("the server closed: {event}")));
                }
                _ => {}
            }
        }
    }

    /// Reads and drops every frame, pinging every [`PING_INTERVAL`], until the socket closes.
    async fn keep_alive(mut self) {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        loop {
            tokio::select! {
                frame = self.ws.next() => match frame {
                    Some(Ok(_)) => {}
                    _ => return,
                },
                _ = ping.tick() => {
                    let id = self.next_id;
                    self.next_id += 1;
                    if self.send(&json!({"type": "ping", "id": id})).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_what_the_server_requires() {
        let minter = TokenMinter {
            key: "k".into(),
            secret: "s".into(),
        };
        let token = minter.mint("room", "pub-0-0", Role::Publisher).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["join"]);
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.header.kid.as_deref(), Some("k"));
        let c = data.claims;
        assert_eq!(c["iss"], "k");
        assert_eq!(c["room"], "room");
        assert_eq!(c["grants"]["publish"], true);
        assert_eq!(c["grants"]["subscribe"], false);
        assert_eq!(c["grants"]["room_create"], true);
        let lifetime = c["exp"].as_u64().unwrap() - c["nbf"].as_u64().unwrap();
        assert!(lifetime <= 600);
        let sub = minter.mint("room", "sub-0-0", Role::Subscriber).unwrap();
        assert_ne!(sub, token);
    }

    #[test]
    fn the_subscriber_ceiling_covers_the_stream() {
        let config = LoadConfig {
            packet_rate: 10_000.0,
            publishers: 2,
            ..LoadConfig::default()
        };
        // 2 × 10k × 1228 B × 8 = 196 Mbit/s, with half again of room.
        assert_eq!(subscriber_kbps(&config), 294_720);
        assert_eq!(
            subscriber_kbps(&LoadConfig {
                packet_rate: 1.0,
                ..LoadConfig::default()
            }),
            20_000
        );
    }
}

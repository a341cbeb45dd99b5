//! `GET /metrics` over real HTTP: the Prometheus numbers follow what happens on the server —
//! joins, publishes, bad frames, UDP datagrams the worker counts or drops, and a participant
//! leaving (whose transports' traffic must stay in the totals).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sfu_core::DropReason;
use sfu_core::driver::WorkerHandle;
use sfu_core::stun::{IceRole, IntegrityKey, StunClass, StunMessage, write_binding_request};
use signaling::access_token::{ApiKeys, Grants};
use signaling::protocol::ErrorCode;
use signaling::server::{SignalingConfig, SignalingServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "testkey";
const SECRET: &[u8] = b"test-secret-0123456789abcdef0123";
const OFFER: &str = include_str!("fixtures/chrome-publish-offer.sdp");
/// The fixture offer's ICE ufrag (the browser's).
const OFFER_UFRAG: &str = "QqjB";

fn keys() -> ApiKeys {
    let k = ApiKeys::default();
    k.insert(KEY, SECRET.to_vec());
    k
}

fn token(room: &str, identity: &str) -> String {
    keys()
        .mint(
            KEY,
            identity,
            identity,
            room,
            // Opens the room it joins (rooms are not stored beforehand here).
            Grants {
                room_create: true,
                ..Grants::participant()
            },
            Duration::from_secs(60),
        )
        .unwrap()
}

struct Server {
    http: SocketAddr,
    media: SocketAddr,
}

impl Server {
    fn ws(&self) -> String {
        format!("ws://{}/ws", self.http)
    }
}

/// Starts a worker and a signaling server on free ports.
async fn start() -> Server {
    let (worker, events) =
        WorkerHandle::spawn("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let media = worker.local_addr();
    let config = SignalingConfig {
        keys: keys(),
        ..Default::default()
    };
    let server = SignalingServer::new(config, Arc::new(worker), events);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    Server { http, media }
}

/// A scrape: series (`name` or `name{k="v",…}` with labels sorted) → value.
#[derive(Debug)]
struct Scrape {
    series: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    /// The value of `name` with exactly these labels; fails the test if absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = series_key(name, labels);
        match self.series.get(&key) {
            Some(v) => *v,
            None => panic!("no series {key} in\n{}", self.text),
        }
    }
}

fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// Parses the text exposition format (the subset it uses: no escapes in label values).
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let key = match series.split_once('{') {
            None => series.to_owned(),
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                let pairs: Vec<(&str, &str)> = labels
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label=value");
                        (k, v.trim_matches('"'))
                    })
                    .collect();
                series_key(name, &pairs)
            }
        };
        assert!(out.insert(key, value).is_none(), "duplicate series: {line}");
    }
    out
}

/// `GET /metrics` over a plain TCP connection.
async fn scrape(server: &Server) -> Scrape {
    let mut tcp = TcpStream::connect(server.http).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: sfu\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("a response within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("\r\ncontent-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    Scrape {
        series: parse(body),
        text: body.to_owned(),
    }
}

/// Scrapes until `ready` holds (the session and room tasks finish asynchronously).
async fn scrape_until(server: &Server, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..200 {
        let s = scrape(server).await;
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s\n{}", scrape(server).await.text);
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next frame of type `ty`; fails on a closed socket or after 10 s.
async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} within 10 s"));
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == ty {
                    return v;
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                panic!("socket closed while waiting for {ty}")
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn join(server: &Server, room: &str, identity: &str) -> Ws {
    let mut ws = connect(&server.ws()).await;
    send(
        &mut ws,
        json!({"type":"join","id":1,"token":token(room, identity),"protocol":1}),
    )
    .await;
    recv_type(&mut ws, "joined").await;
    ws
}

fn sdp_attribute<'a>(sdp: &'a str, name: &str) -> &'a str {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no a={name} in\n{sdp}"))
        .trim()
}

/// Sends an ICE connectivity check to the publish transport and waits for its success
/// response; returns (request length, response length).
async fn connectivity_check(
    udp: &UdpSocket,
    server: &Server,
    ufrag: &str,
    pwd: &str,
    transaction: u8,
) -> (usize, usize) {
    let mut request = Vec::new();
    write_binding_request(
        &[transaction; 12],
        format!("{ufrag}:{OFFER_UFRAG}").as_bytes(),
        &IntegrityKey::new(pwd.as_bytes()),
        0x7E7F_1EFF,
        Some(IceRole::Controlling(7)),
        true,
        &mut request,
    )
    .unwrap();
    udp.send_to(&request, server.media).await.unwrap();
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(10), udp.recv_from(&mut buf))
        .await
        .expect("a binding response within 10 s")
        .unwrap();
    let response = StunMessage::parse(&buf[..len]).unwrap();
    assert_eq!(response.class(), StunClass::SuccessResponse);
    (request.len(), len)
}

#[tokio::test]
async fn metrics_follow_rooms_tracks_errors_and_media() {
    let server = start().await;

    // Before anything: every series exists, at zero.
    let s = scrape(&server).await;
    for (name, value) in [
        ("sfu_rooms", 0.0),
        ("sfu_participants", 0.0),
        ("sfu_sessions", 0.0),
        ("sfu_transports", 0.0),
        ("sfu_signaling_frames_received_total", 0.0),
        ("sfu_worker_up", 1.0),
        ("sfu_residence_seconds_count", 0.0),
        ("sfu_udp_receive_calls_total", 0.0),
        ("sfu_udp_datagrams_received_total", 0.0),
        ("sfu_udp_send_calls_total", 0.0),
        ("sfu_udp_datagrams_sent_total", 0.0),
        ("sfu_udp_gso_sends_total", 0.0),
        ("sfu_udp_gso_fallbacks_total", 0.0),
        ("sfu_udp_send_errors_total", 0.0),
    ] {
        assert_eq!(s.get(name, &[]), value, "{name}");
    }
    for code in ErrorCode::ALL {
        assert_eq!(
            s.get("sfu_signaling_errors_total", &[("code", code.as_str())]),
            0.0
        );
    }
    for reason in DropReason::ALL {
        assert_eq!(s.get("sfu_drops_total", &[("reason", reason.name())]), 0.0);
    }
    assert!(
        s.text.contains("# TYPE sfu_drops_total counter")
            && s.text.contains("# TYPE sfu_participants gauge"),
        "{}",
        s.text
    );

    // Two participants; alice publishes the fixture (one audio, one video track).
    let mut alice = join(&server, "metrics", "alice").await;
    let mut bob = join(&server, "metrics", "bob").await;
    send(&mut alice, json!({"type":"publish","id":2,"sdp":OFFER,"tracks":[{"mid":"0","source":"microphone"},{"mid":"1","source":"camera"}]})).await;
    let answer = recv_type(&mut alice, "publish_answer").await;
    let answer_sdp = answer["sdp"].as_str().unwrap().to_owned();
    recv_type(&mut bob, "subscribe_offer").await;
    // A malformed frame (bad_json, from the session) and an unknown track (from the room).
    // The room actor answers bob's request only after it has finished alice's publish, so
    // once bob has his error both of his consumers exist.
    alice.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(recv_type(&mut alice, "error").await["code"], "bad_json");
    send(
        &mut bob,
        json!({"type":"mute","id":3,"track":"TR_nope","muted":true}),
    )
    .await;
    assert_eq!(recv_type(&mut bob, "error").await["code"], "unknown_track");

    // Media: one authenticated ICE check on alice's publish transport, answered.
    let (ufrag, pwd) = (
        sdp_attribute(&answer_sdp, "ice-ufrag"),
        sdp_attribute(&answer_sdp, "ice-pwd"),
    );
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (check, response) = connectivity_check(&udp, &server, ufrag, pwd, 1).await;
    // Datagrams no transport accepts: counted as drops only.
    let stray = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stray
        .send_to(b"P not a protocol", server.media)
        .await
        .unwrap();
    stray.send_to(&[], server.media).await.unwrap();

    let s = scrape_until(&server, "the stray datagrams dropped", |s| {
        s.get("sfu_drops_total", &[("reason", "empty")]) >= 1.0
            && s.get("sfu_residence_seconds_count", &[]) >= 1.0
    })
    .await;
    // The check's answer is the one datagram sent after a receive: its time inside the SFU
    // is counted (well under a second), and the histogram adds up.
    let residence = |s: &Scrape, le: &str| s.get("sfu_residence_seconds_bucket", &[("le", le)]);
    assert_eq!(s.get("sfu_residence_seconds_count", &[]), 1.0, "{}", s.text);
    // The socket counters saw the check, the two stray datagrams and the one answer.
    assert!(
        s.get("sfu_udp_datagrams_received_total", &[]) >= 3.0,
        "{}",
        s.text
    );
    assert!(s.get("sfu_udp_receive_calls_total", &[]) >= 1.0);
    assert_eq!(
        s.get("sfu_udp_datagrams_sent_total", &[]),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(s.get("sfu_udp_send_calls_total", &[]), 1.0);
    assert_eq!(s.get("sfu_udp_send_errors_total", &[]), 0.0);
    assert_eq!(residence(&s, "+Inf"), 1.0);
    assert_eq!(residence(&s, "1.048576"), 1.0);
    assert!(residence(&s, "0.000064") <= residence(&s, "0.001024"));
    let sum = s.get("sfu_residence_seconds_sum", &[]);
    assert!((0.0..1.0).contains(&sum), "{sum}");
    assert_eq!(s.get("sfu_rooms", &[]), 1.0);
    assert_eq!(s.get("sfu_routers", &[]), 1.0);
    assert_eq!(s.get("sfu_participants", &[]), 2.0);
    assert_eq!(s.get("sfu_sessions", &[]), 2.0);
    assert_eq!(s.get("sfu_tracks", &[("kind", "audio")]), 1.0);
    assert_eq!(s.get("sfu_tracks", &[("kind", "video")]), 1.0);
    // Alice: subscribe and publish transports; bob: subscribe. Alice's two producers, each
    // consumed by bob.
    assert_eq!(s.get("sfu_transports", &[]), 3.0);
    assert_eq!(s.get("sfu_producers", &[]), 2.0);
    assert_eq!(s.get("sfu_consumers", &[]), 2.0);
    // Bob's subscribe transport negotiated transport-cc: the server estimates his bandwidth,
    // starting from its configured initial guess.
    assert_eq!(s.get("sfu_congestion_controlled_subscribers", &[]), 1.0);
    assert_eq!(
        s.get("sfu_subscriber_estimate_bps_min", &[]),
        sfu_core::congestion_controller::CongestionConfig::default()
            .estimator
            .initial
            .0 as f64
    );
    assert_eq!(s.get("sfu_consumers_congestion_paused", &[]), 0.0);
    let error = |s: &Scrape, code: &str| s.get("sfu_signaling_errors_total", &[("code", code)]);
    assert_eq!(error(&s, "bad_json"), 1.0);
    assert_eq!(error(&s, "unknown_track"), 1.0);
    assert_eq!(error(&s, "not_joined"), 0.0);
    // join, publish, the bad frame (alice); join, mute (bob).
    assert_eq!(s.get("sfu_signaling_frames_received_total", &[]), 5.0);
    let drop = |s: &Scrape, reason: &str| s.get("sfu_drops_total", &[("reason", reason)]);
    assert_eq!(drop(&s, "unknown_protocol"), 1.0);
    assert_eq!(drop(&s, "empty"), 1.0);
    let drops: f64 = DropReason::ALL.iter().map(|r| drop(&s, r.name())).sum();
    assert_eq!(drops, 2.0, "{}", s.text);
    let media = |s: &Scrape, name: &str, direction: &str| s.get(name, &[("direction", direction)]);
    assert_eq!(media(&s, "sfu_datagrams_total", "in"), 1.0);
    assert_eq!(media(&s, "sfu_bytes_total", "in"), check as f64);
    assert_eq!(media(&s, "sfu_bytes_total", "out"), response as f64);
    for (direction, protocol) in [
        ("in", "rtp"),
        ("out", "rtp"),
        ("in", "rtcp"),
        ("out", "rtcp"),
    ] {
        assert_eq!(
            s.get(
                "sfu_packets_total",
                &[("direction", direction), ("protocol", protocol)]
            ),
            0.0
        );
    }

    // More traffic on alice's transport that no scrape sees live: SRTP before DTLS (dropped
    // after the transport counted it), then a second check. Its answer means the worker has
    // read both. Then alice leaves: the room closes her transports, and their counters must
    // stay in the totals.
    udp.send_to(&[0x80; 40], server.media).await.unwrap();
    let (check2, response2) = connectivity_check(&udp, &server, ufrag, pwd, 2).await;
    send(&mut alice, json!({"type":"leave","id":4})).await;
    recv_type(&mut alice, "ok").await;
    let s = scrape_until(&server, "alice gone", |s| {
        s.get("sfu_transports", &[]) == 1.0 && s.get("sfu_sessions", &[]) == 1.0
    })
    .await;
    assert_eq!(s.get("sfu_participants", &[]), 1.0);
    assert_eq!(s.get("sfu_rooms", &[]), 1.0);
    assert_eq!(s.get("sfu_tracks", &[("kind", "audio")]), 0.0);
    assert_eq!(s.get("sfu_tracks", &[("kind", "video")]), 0.0);
    assert_eq!(s.get("sfu_producers", &[]), 0.0);
    assert_eq!(s.get("sfu_consumers", &[]), 0.0);
    assert_eq!(media(&s, "sfu_datagrams_total", "in"), 3.0);
    assert_eq!(
        media(&s, "sfu_bytes_total", "in"),
        (check + 40 + check2) as f64
    );
    assert_eq!(
        media(&s, "sfu_bytes_total", "out"),
        (response + response2) as f64
    );
    assert_eq!(drop(&s, "srtp_not_ready"), 1.0);
    assert_eq!(s.get("sfu_signaling_frames_received_total", &[]), 6.0);

    // The last one out closes the room.
    drop_ws(bob).await;
    let s = scrape_until(&server, "room closed", |s| {
        s.get("sfu_rooms", &[]) == 0.0 && s.get("sfu_sessions", &[]) == 0.0
    })
    .await;
    assert_eq!(s.get("sfu_participants", &[]), 0.0);
    assert_eq!(s.get("sfu_transports", &[]), 0.0);
    assert_eq!(media(&s, "sfu_datagrams_total", "in"), 3.0, "never lower");
}

async fn drop_ws(mut ws: Ws) {
    let _ = ws.close(None).await;
}

#[tokio::test]
async fn servers_in_one_process_count_only_their_own() {
    let (a, b) = (start().await, start().await);
    let _alice = join(&a, "one", "alice").await;
    let _carol = join(&a, "two", "carol").await;
    let sa = scrape(&a).await;
    let sb = scrape(&b).await;
    assert_eq!(sa.get("sfu_participants", &[]), 2.0);
    assert_eq!(sa.get("sfu_rooms", &[]), 2.0);
    assert_eq!(sb.get("sfu_participants", &[]), 0.0);
    assert_eq!(sb.get("sfu_rooms", &[]), 0.0);
    assert_eq!(sb.get("sfu_signaling_frames_received_total", &[]), 0.0);
}

#[tokio::test]
async fn process_basics_are_exported() {
    let server = start().await;
    let s = scrape(&server).await;
    if std::path::Path::new("/proc/self/stat").exists() {
        assert!(s.get("process_resident_memory_bytes", &[]) > 0.0);
        assert!(s.get("process_open_fds", &[]) > 0.0);
        assert!(s.get("process_cpu_seconds_total", &[]) >= 0.0);
        assert!(s.get("process_start_time_seconds", &[]) > 1.0e9);
    }
    assert_eq!(
        s.get("sfu_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
}

//! Rooms are placed on the workers of a real pool (threads, UDP sockets) by load: new rooms
//! go to the least-loaded worker, every participant of a room lands on the room's worker
//! (below the participants-per-worker setting; beyond it see `room_across_workers.rs`),
//! closing a room frees its worker's share, and the metrics add every worker up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sfu_core::WorkerConfig;
use sfu_core::udp_socket::UdpSocketConfig;
use sfu_core::worker_pool::WorkerPool;
use signaling::access_token::{Claims, Grants};
use signaling::metrics::Metrics;
use signaling::registry::Registry;
use signaling::room::{Outbound, RoomCommand};
use tokio::sync::{mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(10);

fn claims(room: &str, identity: &str) -> Claims {
    Claims {
        iss: "k".into(),
        sub: identity.into(),
        name: identity.into(),
        room: room.into(),
        // Rooms here are opened by their first joiner (none is stored beforehand).
        grants: Grants {
            room_create: true,
            ..Grants::participant()
        },
        nbf: 0,
        exp: u64::MAX,
        jti: format!("test-{room}-{identity}"),
    }
}

/// A joined participant: its sid, the room's channel, and its frame queue (kept open so the
/// room does not take it for a slow reader).
struct Joined {
    sid: String,
    room: mpsc::UnboundedSender<RoomCommand>,
    _frames: mpsc::Receiver<Outbound>,
    _kick: oneshot::Receiver<String>,
}

async fn join(registry: &Registry, room: &str, identity: &str) -> Joined {
    let (outbound, frames) = mpsc::channel(256);
    let (kick, kicked) = oneshot::channel();
    let (reply, sid) = oneshot::channel();
    let command = RoomCommand::Join {
        id: json!(1),
        claims: claims(room, identity),
        outbound,
        kick,
        reply,
    };
    let sender = registry.join(room, command).await.unwrap();
    Joined {
        sid: sid.await.unwrap().unwrap(),
        room: sender,
        _frames: frames,
        _kick: kicked,
    }
}

fn setup(workers: usize) -> (Arc<WorkerPool>, Registry) {
    let (pool, _events) = WorkerPool::spawn(
        workers,
        "127.0.0.1:0".parse().unwrap(),
        WorkerConfig::default(),
        UdpSocketConfig::default(),
    )
    .unwrap();
    let pool = Arc::new(pool);
    let registry = Registry::with_pool(pool.clone(), Default::default(), Arc::new(Metrics::new()));
    (pool, registry)
}

/// Transports on each worker, asked of the workers themselves.
async fn transports_per_worker(pool: &WorkerPool) -> Vec<usize> {
    let mut out = Vec::new();
    for w in pool.workers() {
        out.push(w.call(|w, _| w.counts().0).await.unwrap());
    }
    out
}

async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn rooms_spread_by_load_and_participants_land_on_their_rooms_worker() {
    let (pool, registry) = setup(3);
    let mut people = Vec::new();
    for i in 0..4 {
        people.push(join(&registry, "big", &format!("b{i}")).await);
    }
    let big = registry.room_worker("big").await.unwrap();
    people.push(join(&registry, "small", "s0").await);
    let small = registry.room_worker("small").await.unwrap();
    people.push(join(&registry, "third", "t0").await);
    let third = registry.room_worker("third").await.unwrap();
    let mut used = vec![big, small, third];
    used.sort_unstable();
    assert_eq!(used, vec![0, 1, 2], "three rooms on three workers");

    // One subscribe transport per participant, each on its room's worker and nowhere else.
    let mut want = vec![0; 3];
    want[big] = 4;
    want[small] = 1;
    want[third] = 1;
    assert_eq!(transports_per_worker(&pool).await, want);

    // Worker costs are now big 1+4, small 1+1, third 1+1: the next room avoids `big`'s
    // worker and takes the lower-indexed of the other two.
    people.push(join(&registry, "fourth", "f0").await);
    let fourth = registry.room_worker("fourth").await.unwrap();
    assert_ne!(fourth, big);
    assert_eq!(fourth, small.min(third));
    // More participants of an existing room follow the room, whatever the load.
    people.push(join(&registry, "big", "b4").await);
    want[big] += 1;
    want[fourth] += 1;
    assert_eq!(transports_per_worker(&pool).await, want);

    // The metrics add every worker up.
    let text = registry.metrics().render(pool.workers()).await;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    };
    assert_eq!(value("sfu_transports"), 8.0, "5 + 1 + 1 + 1");
    assert_eq!(value("sfu_routers"), 4.0);
    assert_eq!(value("sfu_worker_up"), 1.0);
}

#[tokio::test]
async fn closing_a_room_frees_its_workers_load() {
    let (pool, registry) = setup(2);
    let a1 = join(&registry, "a", "a1").await;
    let a2 = join(&registry, "a", "a2").await;
    let a = registry.room_worker("a").await.unwrap();
    let b1 = join(&registry, "b", "b1").await;
    let b = registry.room_worker("b").await.unwrap();
    assert_ne!(a, b);
    assert_eq!(pool.loads()[a].rooms, 1);

    for p in [&a1, &a2] {
        p.room
            .send(RoomCommand::Leave { sid: p.sid.clone() })
            .unwrap();
    }
    wait_for("room a to close", || async {
        registry.room_worker("a").await.is_none()
    })
    .await;
    assert_eq!(pool.loads()[a].rooms, 0, "the room's share is freed");
    wait_for("a's transports to close", || async {
        transports_per_worker(&pool).await[a] == 0
    })
    .await;
    pool.refresh_load().await;
    assert_eq!(pool.loads()[a].transports, 0);
    assert_eq!(pool.loads()[b].transports, 1);

    // The freed worker is now the least loaded: the next room goes there.
    let _c1 = join(&registry, "c", "c1").await;
    assert_eq!(registry.room_worker("c").await, Some(a));
    drop(b1);
}

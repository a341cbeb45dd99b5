//! A room larger than one worker, on a real pool (threads, UDP sockets) with one participant
//! per worker: the second participant lands on another worker, subscribing there makes copies
//! of the first one's tracks (one per track and worker, reused by later subscribers), the home
//! worker gets a copy of every audio track for the active speaker, a track's copies close with
//! it, the admin API reads and removes a participant on its own worker, and the extension
//! worker is given back (router closed, load freed) once it is empty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sfu_core::WorkerConfig;
use sfu_core::udp_socket::UdpSocketConfig;
use sfu_core::worker_pool::WorkerPool;
use signaling::access_token::{Claims, Grants};
use signaling::metrics::Metrics;
use signaling::protocol::ServerMessage;
use signaling::registry::Registry;
use signaling::room::{Outbound, ParticipantRequest, RoomCommand, RoomSettings};
use signaling::room_service::AdminRequest;
use tokio::sync::{mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(15);
const OFFER: &str = include_str!("fixtures/chrome-publish-offer.sdp");

fn claims(room: &str, identity: &str) -> Claims {
    claims_with(
        room,
        identity,
        Grants {
            room_create: true,
            ..Grants::participant()
        },
    )
}

fn claims_with(room: &str, identity: &str, grants: Grants) -> Claims {
    Claims {
        iss: "k".into(),
        sub: identity.into(),
        name: identity.into(),
        room: room.into(),
        grants,
        nbf: 0,
        exp: u64::MAX,
        jti: format!("test-{room}-{identity}"),
    }
}

struct Joined {
    sid: String,
    room: mpsc::UnboundedSender<RoomCommand>,
    frames: mpsc::Receiver<Outbound>,
    _kick: oneshot::Receiver<String>,
}

impl Joined {
    /// The next frame matching `pick` (others are skipped).
    async fn frame<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(ServerMessage) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.frames.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} in time"));
            match next {
                Some(Outbound::Frame(m)) => {
                    if let Some(t) = pick(m) {
                        return t;
                    }
                }
                other => panic!("queue ended before {what}: {other:?}"),
            }
        }
    }

    async fn publish(&mut self) {
        self.room
            .send(RoomCommand::Request {
                sid: self.sid.clone(),
                id: json!("publish"),
                request: ParticipantRequest::Publish {
                    sdp: OFFER.into(),
                    tracks: Vec::new(),
                },
            })
            .unwrap();
        let tracks = self
            .frame("publish answer", |m| match m {
                ServerMessage::PublishAnswer { tracks, .. } => Some(tracks),
                ServerMessage::Error { .. } => panic!("publish refused: {m:?}"),
                _ => None,
            })
            .await;
        assert_eq!(tracks.len(), 2, "audio and video published");
    }

    fn leave(&self) {
        self.room
            .send(RoomCommand::Leave {
                sid: self.sid.clone(),
            })
            .unwrap();
    }
}

async fn join(registry: &Registry, room: &str, identity: &str) -> Joined {
    join_as(registry, claims(room, identity)).await
}

async fn join_as(registry: &Registry, claims: Claims) -> Joined {
    let room = claims.room.clone();
    let (outbound, frames) = mpsc::channel(256);
    let (kick, kicked) = oneshot::channel();
    let (reply, sid) = oneshot::channel();
    let command = RoomCommand::Join {
        id: json!(1),
        claims,
        outbound,
        kick,
        reply,
    };
    let sender = registry.join(&room, command).await.unwrap();
    Joined {
        sid: sid.await.unwrap().unwrap(),
        room: sender,
        frames,
        _kick: kicked,
    }
}

fn setup(workers: usize, participants_per_worker: usize) -> (Arc<WorkerPool>, Registry) {
    let (pool, _events) = WorkerPool::spawn(
        workers,
        "127.0.0.1:0".parse().unwrap(),
        WorkerConfig::default(),
        UdpSocketConfig::default(),
    )
    .unwrap();
    let pool = Arc::new(pool);
    let settings = RoomSettings {
        participants_per_worker,
        ..Default::default()
    };
    let registry = Registry::with_pool(pool.clone(), settings, Arc::new(Metrics::new()));
    (pool, registry)
}

/// What one worker holds: routers, transports, producers, consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    routers: usize,
    transports: usize,
    producers: usize,
    consumers: usize,
}

async fn held(pool: &WorkerPool, worker: usize) -> Held {
    pool.worker(worker)
        .unwrap()
        .call(|w, _| {
            let (transports, producers, consumers) = w.counts();
            Held {
                routers: w.stats().routers,
                transports,
                producers,
                consumers,
            }
        })
        .await
        .unwrap()
}

/// Waits until worker `worker` holds `want` (the copies close by message between threads).
async fn wait_held(pool: &WorkerPool, worker: usize, want: Held, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = held(pool, worker).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: worker {worker} holds {now:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn held_(routers: usize, transports: usize, producers: usize, consumers: usize) -> Held {
    Held {
        routers,
        transports,
        producers,
        consumers,
    }
}

#[tokio::test]
async fn a_room_spreads_to_a_second_worker_and_pipes_tracks_between_them() {
    let (pool, registry) = setup(2, 1);
    let mut alice = join(&registry, "big", "alice").await;
    let home = registry.room_worker("big").await.unwrap();
    let other = 1 - home;
    alice.publish().await;
    wait_held(&pool, home, held_(1, 2, 2, 0), "alice publishes at home").await;
    wait_held(&pool, other, held_(0, 0, 0, 0), "nothing elsewhere yet").await;

    // Home holds one participant already: Bob's media goes to the other worker, where the
    // room gets a router, and his subscription to Alice's two tracks makes two copies there.
    let mut bob = join(&registry, "big", "bob").await;
    assert_eq!(pool.loads()[other].rooms, 1, "the room holds a share of it");
    wait_held(
        &pool,
        other,
        held_(1, 1, 2, 2),
        "bob subscribes through copies",
    )
    .await;
    wait_held(&pool, home, held_(1, 2, 2, 0), "no consumer at home").await;
    // Bob's client is told the other worker's address.
    let offer = bob
        .frame("subscribe offer", |m| match m {
            ServerMessage::SubscribeOffer { sdp, .. } => Some(sdp),
            _ => None,
        })
        .await;
    let port = pool.worker(other).unwrap().local_addr().port();
    assert!(
        offer.contains(&format!(" {port} typ host")),
        "the offer names worker {other}'s port {port}:\n{offer}"
    );

    // Bob publishes on his worker. His audio gets a copy at home at once (the home worker's
    // active-speaker detector hears everyone); Alice's subscription then reuses that copy and
    // adds one for his video: two copies at home, not three.
    bob.publish().await;
    wait_held(
        &pool,
        other,
        held_(1, 2, 4, 2),
        "bob publishes on his worker",
    )
    .await;
    wait_held(&pool, home, held_(1, 2, 4, 2), "alice subscribes to copies").await;
    // The admin API's stats of Bob are read on his worker (ids are only unique per worker).
    let (reply, stats) = oneshot::channel();
    bob.room
        .send(RoomCommand::Admin(AdminRequest::Stats {
            sid: bob.sid.clone(),
            reply,
        }))
        .unwrap();
    let stats = stats.await.unwrap().unwrap();
    assert!(
        stats.publish.is_some(),
        "bob's publish transport: {stats:?}"
    );
    assert_eq!(
        stats.consumers.len(),
        2,
        "bob's consumers of alice's copies: {stats:?}"
    );

    // The pool has no third worker: Carol fills the least-populated of the room's workers
    // (a tie: the home worker, taken first) and reuses the copies there.
    let _carol = join(&registry, "big", "carol").await;
    wait_held(
        &pool,
        home,
        held_(1, 3, 4, 6),
        "carol reuses the copies at home",
    )
    .await;
    wait_held(&pool, other, held_(1, 2, 4, 2), "nothing new elsewhere").await;

    // Alice leaves: her tracks end, and their copies on Bob's worker close with them (and
    // Bob's consumers of them), with no call from signaling to that worker for them.
    alice.leave();
    wait_held(&pool, other, held_(1, 2, 2, 0), "alice's copies closed").await;
    wait_held(&pool, home, held_(1, 1, 2, 2), "carol still receives bob").await;

    // An admin removes Bob: the extension worker has nobody left; the room gives it back
    // (router closed, share freed) and the copies of Bob's tracks at home close.
    let (reply, removed) = oneshot::channel();
    bob.room
        .send(RoomCommand::Admin(AdminRequest::Remove {
            sid: bob.sid.clone(),
            reply,
        }))
        .unwrap();
    removed.await.unwrap().unwrap();
    wait_held(
        &pool,
        other,
        held_(0, 0, 0, 0),
        "the extension worker is empty",
    )
    .await;
    wait_held(&pool, home, held_(1, 1, 0, 0), "carol alone at home").await;
    assert_eq!(pool.loads()[other].rooms, 0, "the room's share is freed");
    assert_eq!(registry.room_worker("big").await, Some(home));

    // Home holds Carol, one already: Dave takes the freed worker again, with a fresh router.
    let _dave = join(&registry, "big", "dave").await;
    wait_held(&pool, other, held_(1, 1, 0, 0), "dave on a fresh extension").await;
    assert_eq!(pool.loads()[other].rooms, 1);
}

#[tokio::test]
async fn below_the_setting_a_room_stays_on_one_worker() {
    let (pool, registry) = setup(2, 3);
    let mut people = Vec::new();
    for name in ["a", "b", "c"] {
        people.push(join(&registry, "r", name).await);
    }
    let home = registry.room_worker("r").await.unwrap();
    people[0].publish().await;
    wait_held(&pool, home, held_(1, 4, 2, 4), "three on the home worker").await;
    wait_held(&pool, 1 - home, held_(0, 0, 0, 0), "no extension").await;
    // The fourth participant is one too many for one worker.
    people.push(join(&registry, "r", "d").await);
    wait_held(
        &pool,
        1 - home,
        held_(1, 1, 2, 2),
        "the fourth goes elsewhere",
    )
    .await;
}

#[tokio::test]
async fn the_home_worker_gets_a_copy_of_every_voice_even_without_subscribers_there() {
    let (pool, registry) = setup(2, 1);
    // The home worker's only participant publishes and subscribes to nothing: no subscription
    // there would ever ask for a copy.
    let stage = Grants {
        room_create: true,
        subscribe: false,
        publish: false,
        ..Grants::participant()
    };
    let _host = join_as(&registry, claims_with("talk", "host", stage)).await;
    let home = registry.room_worker("talk").await.unwrap();
    let mut speaker = join(&registry, "talk", "speaker").await;
    speaker.publish().await;
    wait_held(
        &pool,
        1 - home,
        held_(1, 2, 2, 0),
        "speaker publishes on the second worker",
    )
    .await;
    // Audio only: the video is piped only when someone there subscribes.
    wait_held(
        &pool,
        home,
        held_(1, 1, 1, 0),
        "a copy of the speaker's audio at home",
    )
    .await;
}

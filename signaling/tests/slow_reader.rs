//! A participant that does not read its frames is removed from the room, never buffered
//! without end: the room's queue toward it is bounded, and when it overflows the session is
//! kicked and everyone else sees the participant leave.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sfu_core::driver::WorkerHandle;
use signaling::access_token::{Claims, Grants};
use signaling::protocol::ServerMessage;
use signaling::registry::Registry;
use signaling::room::{Outbound, RoomCommand};
use tokio::sync::{mpsc, oneshot};

fn claims(identity: &str) -> Claims {
    Claims {
        iss: "k".into(),
        sub: identity.into(),
        name: identity.into(),
        room: "r".into(),
        // Opens the room it joins (rooms are not stored beforehand here).
        grants: Grants {
            room_create: true,
            ..Grants::participant()
        },
        nbf: 0,
        exp: u64::MAX,
        jti: format!("test-{identity}"),
    }
}

async fn join(
    registry: &Registry,
    identity: &str,
    queue: usize,
) -> (String, mpsc::Receiver<Outbound>, oneshot::Receiver<String>) {
    let (outbound, frames) = mpsc::channel(queue);
    let (kick, kicked) = oneshot::channel();
    let (reply, sid) = oneshot::channel();
    let command = RoomCommand::Join {
        id: json!(1),
        claims: claims(identity),
        outbound,
        kick,
        reply,
    };
    registry.join("r", command).await.unwrap();
    (sid.await.unwrap().unwrap(), frames, kicked)
}

#[tokio::test]
async fn a_participant_that_does_not_read_is_removed_and_kicked() {
    let (worker, _events) =
        WorkerHandle::spawn("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let registry = Registry::new(Arc::new(worker), Default::default());
    // The slow one's queue holds two frames: `joined`, then one event.
    let (slow_sid, _never_read, kicked) = join(&registry, "slow", 2).await;
    let (_, mut watcher, _) = join(&registry, "watcher", 64).await;
    for i in 0..3 {
        let _ = join(&registry, &format!("p{i}"), 64).await;
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), kicked)
        .await
        .expect("kicked in time")
        .unwrap();
    assert!(reason.contains("too slow"), "{reason}");
    // Everyone else is told the slow participant left.
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = watcher.recv().await {
            if let Outbound::Frame(ServerMessage::ParticipantLeft { participant }) = frame {
                return participant;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert_eq!(left, slow_sid);
}

//! Keyframe requests: a subscriber's PLI reaches the publisher rewritten to the producer's
//! SSRC, and a storm of them is throttled to about two a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use sfu_core::sim_peer::{PeerId, SimNetwork};

const VIDEO_SSRC: u32 = 0x3333_0003;

#[test]
fn subscriber_pli_for_the_consumer_ssrc_reaches_the_publisher_for_the_producer_ssrc() {
    let mut room = Room::new();
    // Learn the mid-only VP8 SSRC first: a PLI can only name a known SSRC.
    room.send_video(1, 0, true, b"keyframe");
    // Let the throttle forget the requests made at consume/connect time.
    room.net.advance(Duration::from_secs(2));
    room.publisher().clear_received();
    let consumer_ssrc = room.video_ssrc_out();
    let now = room.net.now();
    room.subscriber().send_pli(now, consumer_ssrc).unwrap();
    room.net.deliver();
    assert_eq!(
        room.publ().received_plis(VP8_SSRC),
        1,
        "forwarded at once: {:?}",
        room.publ().received_rtcp()
    );
    assert_eq!(
        room.publ().received_rtcp().plis.len(),
        1,
        "only for the producer's SSRC"
    );
    assert_eq!(
        room.publ().received_plis(consumer_ssrc),
        0,
        "the consumer SSRC is not leaked upstream"
    );

    // A PLI naming an SSRC the subscriber does not receive asks nothing of anyone.
    room.net.advance(Duration::from_secs(2));
    room.publisher().clear_received();
    let now = room.net.now();
    room.subscriber().send_pli(now, 0xDEAD_BEEF).unwrap();
    room.subscriber().send_pli(now, VP8_SSRC).unwrap(); // the producer's own SSRC is not the subscriber's to name
    room.net.advance(Duration::from_secs(1));
    assert_eq!(
        room.publ().received_rtcp().plis.len(),
        0,
        "{:?}",
        room.publ().received_rtcp()
    );

    // A PLI for the audio consumer is not turned into anything (audio has no keyframes).
    let audio_ssrc = room.audio_ssrc_out();
    let now = room.net.now();
    room.subscriber().send_pli(now, audio_ssrc).unwrap();
    room.net.advance(Duration::from_secs(1));
    assert_eq!(room.publ().received_rtcp().plis.len(), 0);
}

/// `subscribers` subscribers each send `per_tick` PLIs every 10 ms for 2 s; returns the PLIs
/// the publisher got in that window.
fn storm(subscribers: usize, per_tick: usize) -> u64 {
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let publisher = net.add_peer(peer_addr(0)).unwrap();
    let info = net.create_transport(publisher, router).unwrap();
    let producer = net
        .worker_mut()
        .produce(info.id, vp8_params("0", VIDEO_SSRC))
        .unwrap();
    net.connect(publisher, &info).unwrap();
    let mut subs: Vec<(PeerId, u32)> = Vec::new();
    for i in 0..subscribers {
        let peer = net.add_peer(peer_addr(i + 1)).unwrap();
        let sub_info = net.create_transport(peer, router).unwrap();
        let now = net.now();
        let (_, params) = net
            .worker_mut()
            .consume(
                now,
                sub_info.id,
                producer,
                &subscriber_caps(),
                Some("0".into()),
            )
            .unwrap();
        net.connect(peer, &sub_info).unwrap();
        subs.push((peer, consumer_ssrc(&params)));
    }
    let mut all: Vec<PeerId> = subs.iter().map(|(p, _)| *p).collect();
    all.push(publisher);
    assert!(net.run_until_connected(&all, CONNECT_LIMIT));
    net.advance(Duration::from_secs(2));
    net.peer_mut(publisher).unwrap().clear_received();

    let mut requests = 0u64;
    for _tick in 0..200 {
        let now = net.now();
        for (peer, ssrc) in &subs {
            for _ in 0..per_tick {
                net.peer_mut(*peer).unwrap().send_pli(now, *ssrc).unwrap();
                requests += 1;
            }
        }
        net.advance(Duration::from_millis(10));
    }
    assert_eq!(requests, 200 * (subscribers * per_tick) as u64);
    let received = net.peer(publisher).unwrap().received_plis(VIDEO_SSRC);
    assert_eq!(
        net.worker().drops().total(),
        0,
        "every PLI was accepted: {:?}",
        net.worker().drops()
    );
    received
}

#[test]
fn a_pli_storm_from_100_subscribers_reaches_the_publisher_at_most_twice_a_second() {
    let received = storm(100, 1);
    assert!(
        (3..=5).contains(&received),
        "20,000 PLIs over 2 s became {received} at the publisher"
    );
}

#[test]
fn a_pli_storm_of_100_per_10_ms_from_four_subscribers_is_throttled_the_same_way() {
    let received = storm(4, 25);
    assert!(
        (3..=5).contains(&received),
        "20,000 PLIs over 2 s became {received} at the publisher"
    );
}

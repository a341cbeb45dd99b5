//! ICE consent freshness (RFC 7675) and path changes: a peer that stops answering loses its
//! transport after 30 s, a peer that keeps checking keeps it, and a newly nominated path gets
//! the media.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use sfu_core::{CloseReason, DropReason, TransportState, WorkerEvent};

#[test]
fn a_peer_that_stops_consent_checks_is_closed_after_30_seconds_even_while_sending_media() {
    let mut room = Room::new();
    room.net.advance(Duration::from_secs(3));
    let now = room.net.now();
    room.publisher().set_consent_interval(now, None);
    let last_check = room.publ().last_check_answered().unwrap();
    // Media keeps flowing for a while: SRTP is not consent.
    let mut seq = 0u16;
    while room.net.now() < last_check + Duration::from_secs(29) {
        room.send_audio(seq, u32::from(seq) * 960, b"still talking");
        seq += 1;
        room.net.advance(Duration::from_millis(100));
    }
    assert_eq!(
        room.net.worker().transport_state(room.publisher_info.id),
        Some(TransportState::Connected),
        "not before 30 s"
    );
    assert!(room.net.run_until(Duration::from_secs(10), |n| {
        n.closed(room.publisher_info.id).is_some()
    }));
    let (at, reason) = room.net.closed(room.publisher_info.id).unwrap();
    assert_eq!(reason, CloseReason::ConsentExpired);
    let after = at.duration_since(last_check);
    assert!(
        after >= Duration::from_secs(30) && after <= Duration::from_secs(31),
        "closed {after:?} after the last check"
    );
    // The producers went with it; the subscriber, which kept checking, is fine.
    let closed_consumers = room
        .net
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, WorkerEvent::ConsumerClosed { .. }))
        .count();
    assert_eq!(closed_consumers, 2);
    assert_eq!(
        room.net.worker().transport_state(room.subscriber_info.id),
        Some(TransportState::Connected)
    );
    assert_eq!(room.net.worker().counts(), (1, 0, 0));
    let received = room.sub().received_rtp().len();
    assert!(received > 250, "media flowed until then: {received}");
    let before = room.net.worker().drops().clone();
    room.send_audio(seq, 0, b"too late");
    assert_eq!(
        room.net.worker().drops().get(DropReason::RtpWrongSource),
        before.get(DropReason::RtpWrongSource) + 1
    );
    assert_eq!(room.sub().received_rtp().len(), received);
}

#[test]
fn peers_that_keep_checking_stay_connected_for_minutes() {
    let mut room = Room::new();
    let mut seq = 0u16;
    for _ in 0..12 {
        room.net.advance(Duration::from_secs(10));
        assert_eq!(room.audio_flows(seq, 5), 5);
        seq += 5;
    }
    assert!(room.net.elapsed() >= Duration::from_secs(120));
    for id in [room.publisher_info.id, room.subscriber_info.id] {
        assert_eq!(
            room.net.worker().transport_state(id),
            Some(TransportState::Connected)
        );
        assert!(room.net.closed(id).is_none());
    }
    assert!(
        room.publ().stats().check_responses >= 20,
        "{:?}",
        room.publ().stats()
    );
}

#[test]
fn a_peer_that_nominates_a_new_address_gets_its_media_there() {
    let mut room = Room::new();
    assert_eq!(room.audio_flows(0, 5), 5);
    let old = room.sub().addr();
    let new = addr("127.0.7.7:61000");
    let now = room.net.now();
    room.subscriber().migrate(now, new).unwrap();
    room.net.deliver();
    assert!(
        room.net.events().iter().any(|(_, e)| *e
            == WorkerEvent::TransportTupleChanged {
                transport: room.subscriber_info.id,
                remote: new
            }),
        "{:?}",
        room.net.events()
    );
    assert_eq!(room.sub().mapped_address(), Some(new));
    let to_old = room.net.datagrams_to(old);
    assert_eq!(room.audio_flows(5, 10), 10, "media reaches the new address");
    assert_eq!(
        room.net.datagrams_to(old),
        to_old,
        "and nothing goes to the old one"
    );
    // The publisher moves too: media from its new, nominated address is accepted.
    let now = room.net.now();
    room.publisher()
        .migrate(now, addr("127.0.7.8:62000"))
        .unwrap();
    room.net.deliver();
    assert_eq!(room.audio_flows(15, 10), 10);
    // Long after the old paths' consent lapsed, the new ones carry on.
    room.net.advance(Duration::from_secs(45));
    assert_eq!(room.audio_flows(25, 10), 10);
    assert_eq!(room.net.datagrams_to(old), to_old);
    assert!(
        room.net.closed(room.subscriber_info.id).is_none()
            && room.net.closed(room.publisher_info.id).is_none()
    );
}

/// Drives a bare worker the way the driver does: each deadline it reports, in order, until
/// none is left before `until`.
fn drive_timers(
    worker: &mut sfu_core::Worker,
    from: std::time::Instant,
    until: std::time::Instant,
) {
    let mut now = from;
    for _ in 0..1000 {
        match worker.poll_timeout() {
            Some(t) if t <= until => {
                now = now.max(t);
                worker.handle_timeout(now);
            }
            _ => break,
        }
    }
}

/// A check that arrives once consent has lapsed but before the worker's timer ran (a busy or
/// late driver) must not leave a transport behind that no timer will ever close.
#[test]
fn a_check_arriving_after_the_consent_deadline_still_gets_the_transport_closed() {
    use sfu_core::sim_peer::sim_wall_clock;
    use sfu_core::stun::{IceRole, IntegrityKey, write_binding_request};
    use sfu_core::{WebRtcTransportOptions, Worker, WorkerConfig};

    let start = std::time::Instant::now();
    let config = WorkerConfig {
        announced_addresses: vec![addr(WORKER)],
        ..WorkerConfig::default()
    };
    let mut worker = Worker::new(config, start, sim_wall_clock()).unwrap();
    let router = worker.create_router();
    // No fingerprint yet (the answer has not arrived): DTLS has no timer of its own.
    let info = worker
        .create_webrtc_transport(start, router, WebRtcTransportOptions::default())
        .unwrap();
    let check = |id: u8| {
        let mut out = Vec::new();
        let username = format!("{}:peer", info.ice_ufrag);
        let key = IntegrityKey::new(info.ice_pwd.as_bytes());
        write_binding_request(
            &[id; 12],
            username.as_bytes(),
            &key,
            1,
            Some(IceRole::Controlling(1)),
            true,
            &mut out,
        )
        .unwrap();
        bytes::BytesMut::from(out.as_slice())
    };
    let peer = peer_addr(0);
    worker.handle_datagram(start, peer, check(1));
    let answer = worker.poll_transmit().unwrap();
    assert_eq!(answer.destination, peer);
    worker.recycle(answer.contents);
    let deadline = worker.poll_timeout().unwrap();
    assert_eq!(deadline, start + sfu_core::ice_lite::CONSENT_TIMEOUT);

    // The peer's next check arrives just as consent lapses, before handle_timeout ran.
    worker.handle_datagram(deadline, peer, check(2));
    assert!(
        worker.poll_transmit().is_none(),
        "consent has lapsed: no answer"
    );
    drive_timers(
        &mut worker,
        deadline,
        deadline + std::time::Duration::from_secs(60),
    );
    let mut events = Vec::new();
    while let Some(e) = worker.poll_event() {
        events.push(e);
    }
    assert!(
        events.contains(&WorkerEvent::TransportClosed {
            transport: info.id,
            reason: CloseReason::ConsentExpired
        }),
        "the transport must be closed and reported, not left behind with no timer: events {events:?}, \
         transports {:?}, next timeout {:?}",
        worker.counts(),
        worker.poll_timeout()
    );
    assert_eq!(worker.counts().0, 0);
}

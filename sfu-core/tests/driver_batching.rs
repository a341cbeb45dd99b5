//! The driver over real UDP sockets: a publisher sends bursts (as GSO sends, so a worker with
//! GRO receives them as one buffer), the worker receives them in batches, forwards every
//! packet, and sends each subscriber's run as one GSO send, or one by one when GSO is off.
//! Nothing may be lost, reordered or altered on either path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::udp_peer::UdpPeer;
use common::*;
use sfu_core::driver::WorkerHandle;
use sfu_core::sim_peer::SimRng;
use sfu_core::udp_socket::UdpSocketConfig;
use sfu_core::{WebRtcTransportOptions, WorkerConfig};

const DEADLINE: Duration = Duration::from_secs(20);
const BURST: usize = 16;
const BURSTS: usize = 40;
const PAYLOAD: usize = 1000;

struct Forwarding {
    worker: WorkerHandle,
    publisher: UdpPeer,
    subscriber: UdpPeer,
    video_out: u32,
}

fn connect(gso: bool) -> Forwarding {
    connect_with(UdpSocketConfig {
        gso,
        ..Default::default()
    })
}

fn connect_with(socket: UdpSocketConfig) -> Forwarding {
    let (worker, _events) =
        WorkerHandle::spawn_with_socket(addr("127.0.0.1:0"), WorkerConfig::default(), socket)
            .unwrap();
    let mut publisher = UdpPeer::new();
    let mut subscriber = UdpPeer::new();
    let (pub_fp, sub_fp) = (publisher.peer.fingerprint(), subscriber.peer.fingerprint());
    let (pub_info, sub_info, consumer) = worker
        .call_blocking(move |w, now| {
            let room = w.create_router();
            let options = |fp| WebRtcTransportOptions {
                remote_fingerprint: Some(fp),
                ..Default::default()
            };
            let p = w
                .create_webrtc_transport(now, room, options(pub_fp))
                .unwrap();
            let s = w
                .create_webrtc_transport(now, room, options(sub_fp))
                .unwrap();
            let video = w.produce(p.id, vp8_params("1", VP8_SSRC)).unwrap();
            let (_, consumer) = w
                .consume(now, s.id, video, &subscriber_caps(), Some("1".into()))
                .unwrap();
            (p, s, consumer)
        })
        .unwrap();
    let now = Instant::now();
    publisher.peer.connect(now, &pub_info).unwrap();
    subscriber.peer.connect(now, &sub_info).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !(publisher.peer.is_connected() && subscriber.peer.is_connected()) {
        assert!(
            Instant::now() < deadline,
            "not connected: {:?} {:?}",
            publisher.peer,
            subscriber.peer
        );
        publisher.pump(Duration::from_millis(5));
        subscriber.pump(Duration::from_millis(5));
    }
    Forwarding {
        worker,
        publisher,
        subscriber,
        video_out: consumer_ssrc(&consumer),
    }
}

/// Sends `BURSTS` bursts of `BURST` equal-sized packets, waiting for each burst to arrive
/// before the next (a moderate rate: at most one burst in flight), and checks every packet.
fn forward_bursts(f: &mut Forwarding) {
    let server = f.worker.local_addr();
    let mut rng = SimRng::new(11);
    let mut sent = Vec::new();
    for burst in 0..BURSTS {
        let mut packets = Vec::with_capacity(BURST);
        for i in 0..BURST {
            let seq = (burst * BURST + i) as u16;
            let mut payload = vec![0u8; PAYLOAD];
            rng.fill(&mut payload);
            packets.push(
                f.publisher
                    .peer
                    .protect_rtp(
                        VP8_SSRC,
                        VP8_PT,
                        seq,
                        u32::from(seq) * 3000,
                        false,
                        &[(PUB_MID_ID, b"1")],
                        &payload,
                    )
                    .unwrap(),
            );
            sent.push(payload);
        }
        f.publisher.send_burst(server, &packets);
        let deadline = Instant::now() + DEADLINE;
        while f.subscriber.peer.received_rtp_for(f.video_out).count() < sent.len() {
            assert!(
                Instant::now() < deadline,
                "burst {burst}: {} of {} arrived; io {:?}",
                f.subscriber.peer.received_rtp_for(f.video_out).count(),
                sent.len(),
                f.worker.io_stats()
            );
            f.subscriber.pump(Duration::from_millis(5));
            f.publisher.pump(Duration::ZERO);
        }
    }
    let got: Vec<_> = f.subscriber.peer.received_rtp_for(f.video_out).collect();
    assert_eq!(got.len(), sent.len(), "each packet exactly once");
    for (w, (received, payload)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(&received.payload, payload, "packet {w} intact");
        if w > 0 {
            assert_eq!(
                received.sequence_number,
                got[w - 1].sequence_number.wrapping_add(1),
                "in order, without gaps"
            );
        }
    }
    assert_eq!(f.subscriber.peer.stats().srtp_errors, 0);
}

#[test]
fn bursts_are_received_in_batches_and_sent_as_gso_runs() {
    let mut f = connect(true);
    let before = f.worker.io_stats();
    forward_bursts(&mut f);
    let io = f.worker.io_stats();
    let datagrams_in = io.datagrams_in - before.datagrams_in;
    let calls = io.receive_calls - before.receive_calls;
    assert!(datagrams_in >= (BURST * BURSTS) as u64, "{io:?}");
    let caps = f.worker.socket_capabilities();
    eprintln!("{caps:?} {io:?}");
    // Every forwarded packet was sent after a receive: its time in the SFU is counted.
    let residence = io.residence.since(&before.residence);
    assert!(
        residence.count() >= (BURST * BURSTS) as u64,
        "{} of {} forwarded packets have a residence time",
        residence.count(),
        BURST * BURSTS
    );
    // Generous: a sanity bound, not a speed check (the machine may be loaded).
    assert!(
        residence
            .quantile(0.5)
            .is_some_and(|p50| p50 < Duration::from_secs(1))
    );
    if f.publisher.state.max_gso_segments() > 1 {
        // Each burst reaches the socket at once (one GRO buffer, or all its segments queued
        // together), so a receive call carries several datagrams on average.
        assert!(
            calls * 2 <= datagrams_in,
            "{calls} receive calls for {datagrams_in} datagrams: {io:?}"
        );
        if caps.gro_segments > 1 {
            assert!(io.gro_buffers > 0, "GRO buffers were split: {io:?}");
        }
    }
    if caps.max_gso_segments > 1 {
        assert!(
            io.gso_sends > 0,
            "the subscriber's runs went out as GSO: {io:?}"
        );
        assert!(
            io.send_calls < io.datagrams_out,
            "fewer sends than datagrams: {io:?}"
        );
    } else {
        eprintln!("no GSO on this platform: only the one-by-one path ran");
    }
    assert_eq!(io.gso_fallbacks, 0, "{io:?}");
    assert_eq!(io.send_errors, 0, "{io:?}");
}

/// A receive call's output is sent part-way once `send_early_after` datagrams wait, and
/// nothing is lost or reordered by it. (With GRO a burst arrives as one call; without the
/// early send its sixteen packets would go out as one batch.)
#[test]
fn a_large_receive_batch_is_sent_in_parts() {
    let mut f = connect_with(UdpSocketConfig {
        send_early_after: 4,
        ..Default::default()
    });
    forward_bursts(&mut f);
    let io = f.worker.io_stats();
    eprintln!("{io:?}");
    assert!(io.largest_send_batch > 0, "{io:?}");
    // Four forwarded packets, plus whatever RTCP the same turn queued.
    assert!(
        io.largest_send_batch <= 6,
        "a send batch of {} datagrams: {io:?}",
        io.largest_send_batch
    );

    // The default sends a burst's packets together when they came in one receive call.
    let mut f = connect(true);
    forward_bursts(&mut f);
    let io = f.worker.io_stats();
    if io.datagrams_in >= 4 * io.receive_calls {
        assert!(
            io.largest_send_batch >= 8,
            "bursts arrived together but left apart: {io:?}"
        );
    }
}

#[test]
fn with_gso_off_every_datagram_is_sent_on_its_own_and_nothing_is_lost() {
    let mut f = connect(false);
    assert_eq!(f.worker.socket_capabilities().max_gso_segments, 1);
    forward_bursts(&mut f);
    let io = f.worker.io_stats();
    assert_eq!(io.gso_sends, 0, "{io:?}");
    assert_eq!(
        io.send_calls, io.datagrams_out,
        "one send per datagram: {io:?}"
    );
    assert!(io.datagrams_out >= (BURST * BURSTS) as u64, "{io:?}");
    assert_eq!(io.send_errors, 0, "{io:?}");
}

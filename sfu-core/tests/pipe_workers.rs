//! Pipes between worker threads of one pool, over real UDP sockets: a publisher on worker 0, a
//! subscriber on worker 1 consuming a copy of the publisher's track. The pool links its
//! workers' drivers at start; nothing else carries the packets from one thread to the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::udp_peer::UdpPeer;
use common::*;
use sfu_core::pipe::{PipeEndpoint, PipeSource};
use sfu_core::udp_socket::UdpSocketConfig;
use sfu_core::worker_pool::WorkerPool;
use sfu_core::{DropReason, WebRtcTransportOptions, WorkerConfig};

const DEADLINE: Duration = Duration::from_secs(20);
const PACKETS: u16 = 200;

#[test]
fn a_subscriber_on_another_worker_thread_gets_the_publishers_packets_through_a_pipe() {
    let (pool, _events) = WorkerPool::spawn(
        2,
        addr("127.0.0.1:0"),
        WorkerConfig::default(),
        UdpSocketConfig::default(),
    )
    .unwrap();
    let (source, destination) = (pool.worker(0).unwrap(), pool.worker(1).unwrap());
    let mut publisher = UdpPeer::new();
    let mut subscriber = UdpPeer::new();
    let (pub_fp, sub_fp) = (publisher.peer.fingerprint(), subscriber.peer.fingerprint());
    let options = |fp| WebRtcTransportOptions {
        remote_fingerprint: Some(fp),
        ..Default::default()
    };
    let (pub_info, video) = source
        .call_blocking(move |w, now| {
            let room = w.create_router();
            let p = w
                .create_webrtc_transport(now, room, options(pub_fp))
                .unwrap();
            let video = w.produce(p.id, vp8_params("1", VP8_SSRC)).unwrap();
            (p, video)
        })
        .unwrap();
    let publisher_transport = pub_info.id;
    let (sub_info, copy, consumer) = destination
        .call_blocking(move |w, now| {
            let room = w.create_router();
            let s = w
                .create_webrtc_transport(now, room, options(sub_fp))
                .unwrap();
            let source = PipeSource {
                endpoint: PipeEndpoint {
                    worker: 0,
                    producer: video,
                },
                publisher: publisher_transport,
            };
            let copy = w
                .create_pipe_producer(room, source, vp8_params("1", VP8_SSRC))
                .unwrap();
            let (_, consumer) = w
                .consume(now, s.id, copy, &subscriber_caps(), Some("1".into()))
                .unwrap();
            (s, copy, consumer)
        })
        .unwrap();
    source
        .call_blocking(move |w, now| {
            w.connect_pipe(
                now,
                video,
                PipeEndpoint {
                    worker: 1,
                    producer: copy,
                },
            )
        })
        .unwrap()
        .unwrap();
    let now = Instant::now();
    publisher.peer.connect(now, &pub_info).unwrap();
    subscriber.peer.connect(now, &sub_info).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !(publisher.peer.is_connected() && subscriber.peer.is_connected()) {
        assert!(Instant::now() < deadline, "not connected");
        publisher.pump(Duration::from_millis(5));
        subscriber.pump(Duration::from_millis(5));
    }

    let video_out = consumer_ssrc(&consumer);
    let server = source.local_addr();
    for seq in 0..PACKETS {
        let payload = format!("piped packet {seq}").repeat(20);
        let packet = publisher
            .peer
            .protect_rtp(
                VP8_SSRC,
                VP8_PT,
                seq,
                u32::from(seq) * 3000,
                false,
                &[(PUB_MID_ID, b"1")],
                payload.as_bytes(),
            )
            .unwrap();
        publisher.send_burst(server, &[packet]);
        if seq % 20 == 19 {
            // At most 20 in flight: the subscriber's socket buffer is never the limit.
            let want = usize::from(seq) + 1;
            let deadline = Instant::now() + DEADLINE;
            while subscriber.peer.received_rtp_for(video_out).count() < want {
                assert!(
                    Instant::now() < deadline,
                    "{} of {want} crossed; drops {:?}",
                    subscriber.peer.received_rtp_for(video_out).count(),
                    destination.call_blocking(|w, _| w.drops().clone()).unwrap()
                );
                subscriber.pump(Duration::from_millis(5));
                publisher.pump(Duration::ZERO);
            }
        }
    }
    let got: Vec<_> = subscriber.peer.received_rtp_for(video_out).collect();
    assert_eq!(got.len(), usize::from(PACKETS), "each packet exactly once");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.payload, format!("piped packet {i}").repeat(20).as_bytes());
    }
    let (piped_out, _) = source.call_blocking(|w, _| w.pipe_packet_counts()).unwrap();
    let (_, piped_in) = destination
        .call_blocking(|w, _| w.pipe_packet_counts())
        .unwrap();
    assert_eq!((piped_out, piped_in), (200, 200));

    // The subscriber's keyframe request crosses back to the publisher's worker.
    let before = publisher.peer.received_plis(VP8_SSRC);
    let deadline = Instant::now() + DEADLINE;
    while publisher.peer.received_plis(VP8_SSRC) == before {
        assert!(
            Instant::now() < deadline,
            "no PLI reached the publisher: {:?}",
            publisher.peer.received_rtcp()
        );
        subscriber.peer.send_pli(Instant::now(), video_out).unwrap();
        subscriber.pump(Duration::from_millis(50));
        publisher.pump(Duration::from_millis(50));
    }
    let drops = destination.call_blocking(|w, _| w.drops().clone()).unwrap();
    assert_eq!(drops.get(DropReason::PipeBackpressure), 0);
    assert_eq!(drops.get(DropReason::PipeUnknownProducer), 0);
}

//! Pipes between workers, sans-I/O: a room whose publisher is on worker 0 and one subscriber
//! on worker 1. Worker 1 holds copies of the publisher's producers; the test carries what each
//! worker queues for the other (what the driver does between threads) and checks that the
//! remote subscriber gets every packet intact, that its keyframe requests reach the publisher,
//! and that closing either end closes or stops the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use sfu_core::pipe::{PipeEndpoint, PipeMessage, PipeSource, PipedPacket};
use sfu_core::sim_peer::{PeerId, SimNetwork};
use sfu_core::{ConsumerId, DropReason, ProducerId, RouterId, RtpParameters, WorkerEvent};

const SOURCE: usize = 0;
const DESTINATION: usize = 1;

/// The publisher's worker (with a local subscriber, from [`Room`]) and a second worker with a
/// subscriber of copies of both tracks.
struct TwoWorkers {
    room: Room,
    remote: SimNetwork,
    remote_router: RouterId,
    remote_subscriber: PeerId,
    audio_copy: ProducerId,
    video_copy: ProducerId,
    audio_consumer: (ConsumerId, RtpParameters),
    video_consumer: (ConsumerId, RtpParameters),
}

impl TwoWorkers {
    fn new() -> Self {
        let room = Room::new();
        let mut remote = SimNetwork::new(addr("127.0.0.1:4444")).unwrap();
        let remote_router = remote.worker_mut().create_router();
        let remote_subscriber = remote.add_peer(peer_addr(7)).unwrap();
        let info = remote
            .create_transport(remote_subscriber, remote_router)
            .unwrap();
        let publisher = room.publisher_info.id;
        let copy = |remote: &mut SimNetwork, producer: ProducerId, params: RtpParameters| {
            let source = PipeSource {
                endpoint: PipeEndpoint {
                    worker: SOURCE,
                    producer,
                },
                publisher,
            };
            remote
                .worker_mut()
                .create_pipe_producer(remote_router, source, params)
                .unwrap()
        };
        let audio_copy = copy(&mut remote, room.audio, opus_params(OPUS_SSRC));
        let video_copy = copy(&mut remote, room.video, vp8_mid_params("1"));
        let now = remote.now();
        let caps = subscriber_caps();
        let audio_consumer = remote
            .worker_mut()
            .consume(now, info.id, audio_copy, &caps, Some("0".into()))
            .unwrap();
        let video_consumer = remote
            .worker_mut()
            .consume(now, info.id, video_copy, &caps, Some("1".into()))
            .unwrap();
        remote.connect(remote_subscriber, &info).unwrap();
        assert!(
            remote.run_until_connected(&[remote_subscriber], CONNECT_LIMIT),
            "remote subscriber did not connect: {:?}",
            remote.events()
        );
        let mut w = Self {
            room,
            remote,
            remote_router,
            remote_subscriber,
            audio_copy,
            video_copy,
            audio_consumer,
            video_consumer,
        };
        w.connect_pipe(w.room.audio, w.audio_copy);
        w.connect_pipe(w.room.video, w.video_copy);
        w
    }

    fn connect_pipe(&mut self, source: ProducerId, copy: ProducerId) {
        let now = self.room.net.now();
        self.room
            .net
            .worker_mut()
            .connect_pipe(
                now,
                source,
                PipeEndpoint {
                    worker: DESTINATION,
                    producer: copy,
                },
            )
            .unwrap();
    }

    /// Carries pipe messages both ways and delivers datagrams on both networks until nothing
    /// moves. Returns the messages carried from the source to the destination.
    fn pump(&mut self) -> usize {
        let mut carried = 0;
        loop {
            let mut moved = self.room.net.deliver() + self.remote.deliver();
            while let Some(out) = self.room.net.worker_mut().poll_pipe() {
                assert_eq!(out.worker, DESTINATION);
                let now = self.remote.now();
                self.remote
                    .worker_mut()
                    .handle_pipe_message(now, SOURCE, out.message);
                moved += 1;
                carried += 1;
            }
            while let Some(out) = self.remote.worker_mut().poll_pipe() {
                assert_eq!(out.worker, SOURCE);
                let now = self.room.net.now();
                self.room
                    .net
                    .worker_mut()
                    .handle_pipe_message(now, DESTINATION, out.message);
                moved += 1;
            }
            if moved == 0 {
                return carried;
            }
        }
    }

    fn remote_sub(&self) -> &sfu_core::sim_peer::SimPeer {
        self.remote.peer(self.remote_subscriber).unwrap()
    }
}

#[test]
fn a_subscriber_on_another_worker_gets_every_packet_of_the_publisher_intact() {
    let mut w = TwoWorkers::new();
    let audio_out = consumer_ssrc(&w.audio_consumer.1);
    let video_out = consumer_ssrc(&w.video_consumer.1);
    for seq in 1..=50u16 {
        w.room
            .send_audio(seq, u32::from(seq) * 960, format!("opus {seq}").as_bytes());
        w.room.send_video(
            seq,
            u32::from(seq) * 3000,
            seq % 5 == 0,
            format!("vp8 {seq}").as_bytes(),
        );
        w.pump();
    }
    let remote = w.remote_sub();
    let audio: Vec<_> = remote.received_rtp_for(audio_out).collect();
    let video: Vec<_> = remote.received_rtp_for(video_out).collect();
    assert_eq!(audio.len(), 50, "every audio packet crossed the pipe");
    assert_eq!(video.len(), 50, "every video packet crossed the pipe");
    for (i, p) in audio.iter().enumerate() {
        assert_eq!(p.payload, format!("opus {}", i + 1).as_bytes());
        assert_eq!(
            p.payload_type, SUB_OPUS_PT,
            "the remote consumer's own payload type"
        );
        assert_eq!(
            p.extension(SUB_AUDIO_LEVEL_ID),
            Some(&[0x85][..]),
            "extensions are read from the piped packet and rewritten to the subscriber's ids"
        );
    }
    for pair in audio.windows(2).chain(video.windows(2)) {
        assert_eq!(
            pair[1].sequence_number,
            pair[0].sequence_number.wrapping_add(1),
            "no gap in the remote consumer's numbering"
        );
    }
    for (i, p) in video.iter().enumerate() {
        assert_eq!(p.payload, format!("vp8 {}", i + 1).as_bytes());
        assert_eq!(p.marker, (i + 1) % 5 == 0);
    }
    // The local subscriber is served as before.
    assert_eq!(
        w.room
            .sub()
            .received_rtp_for(w.room.audio_ssrc_out())
            .count(),
        50
    );
    let (out, _) = w.room.net.worker().pipe_packet_counts();
    let (_, into) = w.remote.worker().pipe_packet_counts();
    assert_eq!((out, into), (100, 100));
    assert_eq!(
        w.remote.worker().drops().total(),
        0,
        "{:?}",
        w.remote.worker().drops()
    );
}

#[test]
fn a_keyframe_request_from_the_remote_subscriber_reaches_the_publisher() {
    let mut w = TwoWorkers::new();
    // The mid-only VP8 SSRC is learned from the first packet.
    w.room.send_video(1, 0, true, b"keyframe");
    w.pump();
    // Let both workers' throttles forget the requests made when the pipe was connected.
    w.room.net.advance(Duration::from_secs(2));
    w.remote.advance(Duration::from_secs(2));
    w.pump();
    w.room.publisher().clear_received();
    let now = w.remote.now();
    let consumer_ssrc = consumer_ssrc(&w.video_consumer.1);
    w.remote
        .peer_mut(w.remote_subscriber)
        .unwrap()
        .send_pli(now, consumer_ssrc)
        .unwrap();
    w.pump();
    assert_eq!(
        w.room.publ().received_plis(VP8_SSRC),
        1,
        "the PLI crossed the pipe as a keyframe request: {:?}",
        w.room.publ().received_rtcp()
    );
    // A storm from the remote side is throttled on both workers.
    for _ in 0..20 {
        let now = w.remote.now();
        w.remote
            .peer_mut(w.remote_subscriber)
            .unwrap()
            .send_pli(now, consumer_ssrc)
            .unwrap();
        w.pump();
        w.room.net.advance(Duration::from_millis(10));
        w.remote.advance(Duration::from_millis(10));
        w.pump();
    }
    assert!(
        w.room.publ().received_plis(VP8_SSRC) <= 2,
        "{:?}",
        w.room.publ().received_rtcp()
    );
}

#[test]
fn connecting_a_pipe_asks_the_publisher_for_a_keyframe() {
    let mut w = TwoWorkers::new();
    w.room.send_video(1, 0, true, b"keyframe");
    w.pump();
    w.room.net.advance(Duration::from_secs(2));
    w.room.publisher().clear_received();
    // A second copy (as for a third worker) starts with a keyframe request.
    w.connect_pipe(w.room.video, w.video_copy);
    w.room.net.deliver();
    assert_eq!(w.room.publ().received_plis(VP8_SSRC), 1);
}

#[test]
fn closing_the_source_closes_the_copy_and_its_consumers() {
    let mut w = TwoWorkers::new();
    w.room
        .net
        .worker_mut()
        .close_producer(w.room.video)
        .unwrap();
    w.pump();
    let video_consumer = w.video_consumer.0;
    assert!(
        w.remote.events().iter().any(|(_, e)| *e
            == WorkerEvent::ConsumerClosed {
                consumer: video_consumer
            }),
        "{:?}",
        w.remote.events()
    );
    assert_eq!(
        w.remote.worker().counts().1,
        1,
        "only the audio copy is left"
    );
    // Audio still flows.
    w.room.send_audio(1, 960, b"still here");
    w.pump();
    assert_eq!(
        w.remote_sub()
            .received_rtp_for(consumer_ssrc(&w.audio_consumer.1))
            .count(),
        1
    );
}

#[test]
fn closing_the_copy_stops_the_source_sending_to_it() {
    let mut w = TwoWorkers::new();
    w.room.send_audio(1, 960, b"one");
    assert_eq!(w.pump(), 1);
    w.remote.worker_mut().close_producer(w.audio_copy).unwrap();
    w.pump();
    let (before, _) = w.room.net.worker().pipe_packet_counts();
    w.room.send_audio(2, 1920, b"two");
    w.pump();
    let (after, _) = w.room.net.worker().pipe_packet_counts();
    assert_eq!(after, before, "nothing is piped to a closed copy");
    assert_eq!(
        w.room
            .sub()
            .received_rtp_for(w.room.audio_ssrc_out())
            .count(),
        2,
        "the local subscriber is unaffected"
    );
}

#[test]
fn closing_the_remote_router_closes_its_copies_and_tells_the_source() {
    let mut w = TwoWorkers::new();
    let router = w.remote_router;
    w.remote.worker_mut().close_router(router);
    w.pump();
    assert_eq!(w.remote.worker().counts(), (0, 0, 0));
    let (before, _) = w.room.net.worker().pipe_packet_counts();
    w.room.send_audio(1, 960, b"one");
    w.pump();
    assert_eq!(w.room.net.worker().pipe_packet_counts().0, before);
}

#[test]
fn pipe_messages_from_the_wrong_worker_or_for_unknown_producers_are_dropped_and_counted() {
    let mut w = TwoWorkers::new();
    w.room.send_audio(1, 960, b"one");
    let mut messages = Vec::new();
    w.room.net.deliver();
    while let Some(out) = w.room.net.worker_mut().poll_pipe() {
        messages.push(out.message);
    }
    let Some(PipeMessage::Packet(packet)) = messages.pop() else {
        panic!("expected a piped packet, got {messages:?}");
    };
    let now = w.remote.now();
    let remote = w.remote.worker_mut();
    // From a worker that is not the copy's source.
    remote.handle_pipe_message(now, 5, PipeMessage::Packet(packet.clone()));
    // For a producer that does not exist.
    let mut unknown = packet.clone();
    unknown.producer = ProducerId(999_999);
    remote.handle_pipe_message(now, SOURCE, PipeMessage::Packet(unknown));
    // Ranges that do not fit.
    let bad: Vec<PipedPacket> = vec![
        PipedPacket {
            stream: 7,
            ..packet.clone()
        },
        PipedPacket {
            payload_end: packet.packet.len() + 1,
            ..packet.clone()
        },
        PipedPacket {
            payload_start: packet.payload_end + 1,
            ..packet.clone()
        },
        PipedPacket {
            payload_start: 0,
            ..packet.clone()
        },
    ];
    for p in bad {
        remote.handle_pipe_message(now, SOURCE, PipeMessage::Packet(p));
    }
    // A close for a copy from the wrong worker closes nothing.
    remote.handle_pipe_message(
        now,
        5,
        PipeMessage::SourceClosed {
            producer: w.audio_copy,
        },
    );
    let drops = remote.drops();
    assert_eq!(drops.get(DropReason::PipeUnknownProducer), 3, "{drops:?}");
    assert_eq!(drops.get(DropReason::PipeMalformed), 4, "{drops:?}");
    assert_eq!(remote.counts().1, 2, "both copies still open");
    assert_eq!(
        w.remote_sub()
            .received_rtp_for(consumer_ssrc(&w.audio_consumer.1))
            .count(),
        0,
        "nothing was forwarded"
    );
    // The genuine packet still goes through.
    let now = w.remote.now();
    w.remote
        .worker_mut()
        .handle_pipe_message(now, SOURCE, PipeMessage::Packet(packet));
    w.remote.deliver();
    assert_eq!(
        w.remote_sub()
            .received_rtp_for(consumer_ssrc(&w.audio_consumer.1))
            .count(),
        1
    );
}

#[test]
fn the_remote_subscriber_is_answered_from_the_copys_own_packet_cache() {
    let mut w = TwoWorkers::new();
    let video_out = consumer_ssrc(&w.video_consumer.1);
    for seq in 1..=10u16 {
        w.room.send_video(
            seq,
            u32::from(seq) * 3000,
            false,
            format!("vp8 {seq}").as_bytes(),
        );
        w.pump();
    }
    let sent: Vec<_> = w
        .remote_sub()
        .received_rtp_for(video_out)
        .cloned()
        .collect();
    assert_eq!(sent.len(), 10);
    let lost = &sent[4];
    assert_eq!(lost.payload, b"vp8 5");
    let (source_before, _) = w.room.net.worker().pipe_packet_counts();
    let stats = |w: &TwoWorkers| {
        w.remote
            .worker()
            .consumer_stats(w.video_consumer.0)
            .unwrap()
            .retransmitted
    };
    let now = w.remote.now();
    w.remote
        .peer_mut(w.remote_subscriber)
        .unwrap()
        .send_nack(now, video_out, &[lost.sequence_number])
        .unwrap();
    w.pump();
    // Without RTX the resend repeats the SRTP index, which the subscriber's replay window
    // drops (as a browser's would): what the worker did is read from its counters.
    assert_eq!(stats(&w), 1, "resent from the copy's cache");
    assert_eq!(
        w.room.net.worker().pipe_packet_counts().0,
        source_before,
        "the source worker was not involved"
    );
    // Once the cache has let it go, a NACK is not answered.
    w.remote.advance(Duration::from_secs(3));
    let now = w.remote.now();
    w.remote
        .peer_mut(w.remote_subscriber)
        .unwrap()
        .send_nack(now, video_out, &[sent[6].sequence_number])
        .unwrap();
    w.pump();
    assert_eq!(stats(&w), 1, "too old to resend");
}

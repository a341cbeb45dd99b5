//! The egress side of congestion control on a simulated network: a subscriber that negotiated
//! transport-wide sequence numbers gets every packet stamped, in send order, through the pacer
//! (audio at once, video paced, probe padding on RTX); one that did not gets packets as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::sim_peer::{Direction, LinkConfig};
use sfu_core::{RtpCapabilities, RtpHeaderExtension};

const SUB_TRANSPORT_CC_ID: u8 = 5;
const SUB_RTX_PT: u8 = 101;

fn caps_with_transport_cc() -> RtpCapabilities {
    let mut caps = subscriber_caps();
    caps.header_extensions.push(RtpHeaderExtension {
        uri: extension_uri::TRANSPORT_CC.into(),
        id: SUB_TRANSPORT_CC_ID,
    });
    for c in &mut caps.codecs {
        c.rtcp_feedback
            .push(sfu_core::RtcpFeedback::new("transport-cc", ""));
        if c.mime_type == "video/VP8" {
            c.rtx_payload_type = Some(SUB_RTX_PT);
        }
    }
    caps
}

/// The shared room, but with the subscriber's consumers re-made with `caps`.
fn room_with(caps: &RtpCapabilities) -> Room {
    let mut room = Room::setup(Default::default(), Default::default());
    let now = room.net.now();
    let w = room.net.worker_mut();
    w.close_consumer(room.audio_consumer.0).unwrap();
    w.close_consumer(room.video_consumer.0).unwrap();
    room.audio_consumer = w
        .consume(
            now,
            room.subscriber_info.id,
            room.audio,
            caps,
            Some("0".into()),
        )
        .unwrap();
    room.video_consumer = w
        .consume(
            now,
            room.subscriber_info.id,
            room.video,
            caps,
            Some("1".into()),
        )
        .unwrap();
    room.connect_all();
    room
}

/// 20 ms of media: one audio packet and a 4-packet video frame of 1100-byte packets (1.8
/// Mbit/s, under the pacing rate of the initial estimate).
fn send_media(room: &mut Room, round: u16) {
    room.send_audio(round, u32::from(round) * 960, b"opus");
    for i in 0..4u16 {
        let seq = round * 4 + i;
        // A VP8 descriptor (S bit on the first packet) and a body.
        let mut payload = vec![if i == 0 { 0x10 } else { 0x00 }];
        payload.extend(std::iter::repeat_n(0xab, 1100));
        room.send_video(seq, u32::from(round) * 1800, i == 3, &payload);
    }
}

#[test]
fn every_packet_to_a_congestion_controlled_subscriber_is_stamped_in_send_order() {
    let mut room = room_with(&caps_with_transport_cc());
    for round in 0..50u16 {
        send_media(&mut room, round);
        room.net.advance(Duration::from_millis(20));
    }
    room.net.advance(Duration::from_millis(500));
    let received = room.sub().received_rtp();
    let stats = room
        .net
        .worker()
        .congestion_stats(room.net.now(), room.subscriber_info.id)
        .expect("congestion control is on");
    assert!(
        received.len() > 250,
        "received {}: {stats:#?}",
        received.len()
    );
    let seqs: Vec<u16> = received
        .iter()
        .map(|p| {
            let v = p
                .extension(SUB_TRANSPORT_CC_ID)
                .expect("every packet carries a transport-wide sequence number");
            u16::from_be_bytes([v[0], v[1]])
        })
        .collect();
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0].wrapping_add(1),
            "transport-wide sequence numbers follow the send order: {seqs:?}"
        );
    }
    // Nothing of the publisher's leg leaks through: the subscriber's payload is intact.
    let video = room.video_ssrc_out();
    let frames = received.iter().filter(|p| p.ssrc == video).count();
    assert_eq!(
        frames, 200,
        "every video packet arrives (the link is not limited)"
    );
    // Probe padding rides on the RTX stream as padding-only packets.
    let rtx = room.video_consumer.1.encodings[0].rtx_ssrc.unwrap();
    let padding = received
        .iter()
        .filter(|p| p.ssrc == rtx && p.payload.is_empty())
        .count();
    assert!(padding > 0, "the start-up probes sent padding");
    assert!(stats.pacer.probes_started > 0, "{stats:?}");
    assert_eq!(stats.pacer_queue_packets, 0, "{stats:?}");
}

#[test]
fn audio_is_not_held_by_the_pacer() {
    let mut room = room_with(&caps_with_transport_cc());
    room.net.advance(Duration::from_millis(100));
    let audio = room.audio_ssrc_out();
    for round in 0..20u16 {
        // A burst of video well above the pacing rate, then audio: audio goes first.
        for i in 0..30u16 {
            let mut payload = vec![0x00];
            payload.extend(std::iter::repeat_n(0xcd, 1100));
            room.send_video(round * 30 + i, u32::from(round) * 1800, false, &payload);
        }
        let before = room.sub().received_rtp_for(audio).count();
        room.send_audio(round, u32::from(round) * 960, b"opus");
        assert_eq!(
            room.sub().received_rtp_for(audio).count(),
            before + 1,
            "audio arrives at once, ahead of queued video"
        );
        room.net.advance(Duration::from_millis(20));
    }
}

#[test]
fn a_subscriber_without_transport_cc_gets_packets_unstamped_and_unpaced() {
    let mut room = room_with(&subscriber_caps());
    room.net.advance(Duration::from_millis(100));
    let video = room.video_ssrc_out();
    let before = room.sub().received_rtp_for(video).count();
    for i in 0..30u16 {
        let mut payload = vec![0x00];
        payload.extend(std::iter::repeat_n(0xcd, 1100));
        room.send_video(i, 0, false, &payload);
    }
    // No time passed: nothing was held back.
    assert_eq!(room.sub().received_rtp_for(video).count(), before + 30);
    assert!(
        room.sub()
            .received_rtp()
            .iter()
            .all(|p| p.extension(SUB_TRANSPORT_CC_ID).is_none())
    );
    assert!(
        room.net
            .worker()
            .congestion_stats(room.net.now(), room.subscriber_info.id)
            .is_none()
    );
}

/// Sends `rounds` × 20 ms of [`send_media`], advancing time; returns the video packets the
/// subscriber received in the last second.
fn run_media(room: &mut Room, first_round: u16, rounds: u16) -> usize {
    for round in first_round..first_round + rounds {
        send_media(room, round);
        room.net.advance(Duration::from_millis(20));
    }
    let end = room.net.now();
    let video = room.video_ssrc_out();
    room.sub()
        .received_rtp_for(video)
        .filter(|p| end.duration_since(p.at) < Duration::from_secs(1))
        .count()
}

/// A subscriber with transport-wide feedback but without RTX cannot be probed (probes are
/// padding on the RTX stream). Once a bottleneck made its estimate fall below its only video
/// layer, pausing that video would leave nothing to measure the link by: the video would
/// never come back after the link recovered. Such a subscriber keeps its lowest layer.
#[test]
fn video_a_subscriber_cannot_be_probed_for_comes_back_after_congestion() {
    let mut caps = caps_with_transport_cc();
    for c in &mut caps.codecs {
        c.rtx_payload_type = None;
    }
    let mut room = room_with(&caps);
    let now = room.net.now();
    room.subscriber()
        .enable_twcc_feedback(now, SUB_TRANSPORT_CC_ID, Duration::from_millis(50));
    let subscriber = room.sub().addr();
    // 1.8 Mbit/s of video into a 300 kbit/s downlink for 5 s: the estimate falls below it.
    room.net.set_link(
        subscriber,
        Direction::ToPeer,
        LinkConfig::bottleneck(
            300_000,
            LinkConfig::queue_bytes_for(300_000, Duration::from_millis(200)),
        ),
    );
    run_media(&mut room, 0, 250);
    let stats = room
        .net
        .worker()
        .congestion_stats(room.net.now(), room.subscriber_info.id)
        .unwrap();
    assert!(
        stats.estimate.as_bps() < 1_500_000,
        "the bottleneck was noticed: {stats:#?}"
    );
    // The link recovers; the video must too.
    room.net
        .set_link(subscriber, Direction::ToPeer, LinkConfig::default());
    // Without probes the estimate climbs back only as fast as the loss-based controller lets
    // it (8 % a second, as GCC): the video is not all there yet, but it flows.
    let last_second = run_media(&mut room, 250, 500);
    let end = room.net.now();
    assert!(
        last_second > 50,
        "video flows again 10 s after the link recovered: {last_second} packets in the last \
         second; {:#?}",
        room.net
            .worker()
            .congestion_stats(end, room.subscriber_info.id)
    );
    assert_eq!(
        room.net.worker().congestion_summary(end).congestion_paused,
        0
    );
}

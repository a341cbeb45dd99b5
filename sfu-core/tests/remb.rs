//! REMB to publishers, the option beside transport-wide feedback: with `WorkerConfig::remb`
//! set, a publisher that negotiated `goog-remb` gets a REMB with each receiver report, capped
//! by the configured maximum and lowered when its uplink loses packets; without the option, or
//! without the negotiation, it gets none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use sfu_core::bandwidth_estimator::Bitrate;
use sfu_core::sim_peer::{Direction, LinkConfig, PeerId, SimNetwork};
use sfu_core::worker::{RembConfig, Worker, WorkerConfig};
use sfu_core::{RtcpFeedback, RtpParameters};

const VIDEO_SSRC: u32 = 0x5150_0001;

struct Publisher {
    net: SimNetwork,
    peer: PeerId,
}

fn publisher(remb: Option<RembConfig>, negotiate: bool) -> Publisher {
    let now = Instant::now();
    let config = WorkerConfig {
        announced_addresses: vec![addr(WORKER)],
        remb,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(config, now, SystemTime::now()).unwrap();
    let mut net = SimNetwork::with_worker(worker, addr(WORKER), now);
    let router = net.worker_mut().create_router();
    let peer = net.add_peer(peer_addr(0)).unwrap();
    let info = net.create_transport(peer, router).unwrap();
    let mut params: RtpParameters = vp8_params("0", VIDEO_SSRC);
    if negotiate {
        params.codecs[0]
            .rtcp_feedback
            .push(RtcpFeedback::new("goog-remb", ""));
    }
    net.worker_mut().produce(info.id, params).unwrap();
    net.connect(peer, &info).unwrap();
    assert!(net.run_until_connected(&[peer], CONNECT_LIMIT));
    Publisher { net, peer }
}

/// Sends about 1 Mbit/s of VP8 (100 packets of 1250 bytes a second) for `seconds`.
fn send_video(p: &mut Publisher, first_seq: u16, seconds: u64) -> u16 {
    let mut seq = first_seq;
    for _ in 0..seconds * 100 {
        let now = p.net.now();
        let mut payload = vec![0x10];
        payload.extend(std::iter::repeat_n(0x42, 1250));
        p.net
            .peer_mut(p.peer)
            .unwrap()
            .send_rtp(
                now,
                VIDEO_SSRC,
                VP8_PT,
                seq,
                u32::from(seq) * 900,
                true,
                &[],
                &payload,
            )
            .unwrap();
        seq = seq.wrapping_add(1);
        p.net.advance(Duration::from_millis(10));
    }
    seq
}

fn rembs(p: &Publisher) -> Vec<u64> {
    p.net
        .peer(p.peer)
        .unwrap()
        .received_rtcp()
        .remb
        .iter()
        .map(|(_, b)| *b)
        .collect()
}

#[test]
fn a_publisher_gets_the_configured_cap_and_less_when_its_uplink_loses() {
    let max = Bitrate::kbps(800);
    let mut p = publisher(
        Some(RembConfig {
            max,
            min: Bitrate::kbps(100),
        }),
        true,
    );
    let seq = send_video(&mut p, 1, 3);
    let clean = rembs(&p);
    assert!(clean.len() >= 2, "a REMB with every report: {clean:?}");
    // The 18-bit mantissa rounds down by at most 2^-17.
    assert!(
        clean
            .iter()
            .all(|&b| b <= max.0 && b >= max.0 - (max.0 >> 17)),
        "the cap on a clean uplink: {clean:?}"
    );
    // 30 % of the uplink lost: the next reports tell less than what arrives.
    let uplink = LinkConfig {
        loss: 0.3,
        seed: 7,
        ..LinkConfig::default()
    };
    p.net.set_link(peer_addr(0), Direction::FromPeer, uplink);
    send_video(&mut p, seq, 3);
    let lossy = rembs(&p);
    let last = *lossy.last().unwrap();
    assert!(
        last < 800_000 * 3 / 4,
        "loss lowers the REMB below what the publisher sends: {lossy:?}"
    );
    assert!(last >= 100_000, "never below the minimum: {lossy:?}");
}

#[test]
fn no_remb_without_the_option_or_without_negotiation() {
    for (remb, negotiate) in [(None, true), (Some(RembConfig::default()), false)] {
        let mut p = publisher(remb, negotiate);
        send_video(&mut p, 1, 3);
        let r = p.net.peer(p.peer).unwrap().received_rtcp();
        assert!(r.receiver_reports > 0, "reports flow");
        assert!(
            r.remb.is_empty(),
            "remb {remb:?}, negotiated {negotiate}: {:?}",
            r.remb
        );
    }
}

//! Transport-wide congestion-control feedback to publishers: every packet carrying the
//! transport-wide sequence number is reported back (received or lost, with arrival times)
//! every 50 ms, so the browser's own estimator can adapt its sending rate.

mod common;

use std::time::Duration;

use common::*;
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::sim_peer::{SimNetwork, SimPeerConfig};
use sfu_core::twcc::TwccFeedback;

const TWCC_ID: u8 = 5;

#[test]
fn publishers_get_twcc_feedback_for_every_packet_including_losses() {
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let publisher = net
        .add_peer_with(peer_addr(0), SimPeerConfig::default())
        .unwrap();
    let info = net.create_transport(publisher, router).unwrap();
    let mut params = opus_params(OPUS_SSRC);
    params.header_extensions.push(sfu_core::RtpHeaderExtension {
        uri: extension_uri::TRANSPORT_CC.into(),
        id: TWCC_ID,
    });
    net.worker_mut().produce(info.id, params).unwrap();
    net.connect(publisher, &info).unwrap();
    assert!(net.run_until_connected(&[publisher], CONNECT_LIMIT));

    // 100 packets, 10 ms apart; transport-wide sequence numbers cross 65535 → 0 and every
    // tenth packet is lost on the way.
    let first = 65_500u16;
    let mut lost = Vec::new();
    for i in 0..100u16 {
        let twcc = first.wrapping_add(i);
        let now = net.now();
        let peer = net.peer_mut(publisher).unwrap();
        let packet = peer
            .protect_rtp(
                OPUS_SSRC,
                OPUS_PT,
                i,
                u32::from(i) * 480,
                false,
                &[(PUB_MID_ID, b"0"), (TWCC_ID, &twcc.to_be_bytes())],
                b"opus",
            )
            .unwrap();
        if i % 10 == 5 {
            lost.push(twcc);
        } else {
            let _ = now;
            peer.send_raw(packet).unwrap();
        }
        net.deliver();
        net.advance(Duration::from_millis(10));
    }
    net.advance(Duration::from_millis(200));

    let feedback = &net.peer(publisher).unwrap().received_rtcp().twcc_feedback;
    assert!(
        feedback.len() >= 15,
        "about one feedback per 50 ms over 1.2 s, got {}",
        feedback.len()
    );
    let mut received = std::collections::BTreeMap::new();
    let mut reported_lost = std::collections::BTreeSet::new();
    for (_, packet) in feedback {
        let f = TwccFeedback::parse(packet).expect("the worker's feedback parses");
        for (seq, delta) in f.arrivals() {
            match delta {
                Some(d) => {
                    received.insert(seq, d);
                }
                None => {
                    reported_lost.insert(seq);
                }
            }
        }
    }
    for i in 0..100u16 {
        let seq = first.wrapping_add(i);
        if lost.contains(&seq) {
            assert!(!received.contains_key(&seq), "{seq} was never sent");
        } else {
            assert!(received.contains_key(&seq), "arrival of {seq} not reported");
        }
    }
    for seq in &lost {
        assert!(reported_lost.contains(seq), "loss of {seq} not reported");
    }
}

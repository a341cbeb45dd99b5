//! A transport that nobody uses is closed 30 s after creation, unless it is re-armed (a
//! receive transport waiting for its first offer): then the 30 s count from the re-arming.

mod common;

use std::time::Duration;

use common::*;
use sfu_core::sim_peer::SimNetwork;
use sfu_core::{CloseReason, WebRtcTransportOptions};

#[test]
fn an_unused_transport_closes_after_30_s_and_rearming_restarts_the_count() {
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let now = net.now();
    let idle = net
        .worker_mut()
        .create_webrtc_transport(now, router, WebRtcTransportOptions::default())
        .unwrap();
    let waiting = net
        .worker_mut()
        .create_webrtc_transport(now, router, WebRtcTransportOptions::default())
        .unwrap();
    net.advance(Duration::from_secs(25));
    let now = net.now();
    net.worker_mut().rearm_transport(now, waiting.id).unwrap();
    net.advance(Duration::from_secs(10));
    let (closed_at, reason) = net.closed(idle.id).expect("the unused transport is closed");
    assert!(
        closed_at.duration_since(now) <= Duration::from_secs(6),
        "closed around 30 s"
    );
    assert!(
        matches!(
            reason,
            CloseReason::ConsentExpired | CloseReason::DtlsFailed(_)
        ),
        "{reason:?}"
    );
    assert!(
        net.closed(waiting.id).is_none(),
        "re-armed: still open at 35 s"
    );
    net.advance(Duration::from_secs(30));
    assert!(
        net.closed(waiting.id).is_some(),
        "closed 30 s after re-arming"
    );
}

#[test]
fn an_unarmed_transport_waits_for_its_offer_and_then_gets_the_usual_30_s() {
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let now = net.now();
    let options = WebRtcTransportOptions {
        armed: false,
        ..Default::default()
    };
    let waiting = net
        .worker_mut()
        .create_webrtc_transport(now, router, options)
        .unwrap();
    net.advance(Duration::from_secs(120));
    assert!(
        net.closed(waiting.id).is_none(),
        "unarmed: still open after two minutes"
    );
    let armed_at = net.now();
    net.worker_mut()
        .rearm_transport(armed_at, waiting.id)
        .unwrap();
    net.advance(Duration::from_secs(29));
    assert!(net.closed(waiting.id).is_none(), "29 s after arming");
    net.advance(Duration::from_secs(3));
    assert!(
        net.closed(waiting.id).is_some(),
        "closed 30 s after arming, nobody checked"
    );
}

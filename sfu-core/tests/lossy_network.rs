//! Loss on the wire (seeded or targeted, so every run is the same): handshake retransmission,
//! and forwarding that stays intact and in order when packets go missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sfu_core::sim_peer::{Datagram, SimPeerConfig};

fn is_dtls(d: &Datagram<'_>) -> bool {
    matches!(d.data.first(), Some(20..=63))
}

/// The handshake type of the first record of a DTLS datagram (plaintext epoch 0 only).
fn handshake_type(d: &Datagram<'_>) -> Option<u8> {
    (d.data.first() == Some(&22) && d.data.get(3..5) == Some(&[0, 0][..]))
        .then(|| d.data.get(13).copied())
        .flatten()
}

/// Sets up the room, loses the `k`-th DTLS datagram in one direction of the publisher's leg,
/// and runs up to 30 s. Returns whether both peers connected, and the DTLS datagrams seen
/// (`(from_worker, handshake type)`).
fn connect_losing(
    k: usize,
    from_worker: bool,
    client: SimPeerConfig,
) -> (bool, Vec<(bool, Option<u8>)>, String) {
    let mut room = Room::setup(client.clone(), client);
    let (worker, publisher) = (room.net.worker_addr(), room.publ().addr());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut count = 0usize;
    room.net
        .set_drop_filter(Some(Box::new(move |d: &Datagram<'_>| {
            if !is_dtls(d) || (d.from != publisher && d.to != publisher) {
                return false;
            }
            let worker_sent = d.from == worker;
            log.lock().unwrap().push((worker_sent, handshake_type(d)));
            if worker_sent == from_worker {
                count += 1;
                return count == k;
            }
            false
        })));
    let (p, s) = (room.publisher, room.subscriber);
    let (pi, si) = (room.publisher_info.clone(), room.subscriber_info.clone());
    room.net.connect(p, &pi).unwrap();
    room.net.connect(s, &si).unwrap();
    let connected = room
        .net
        .run_until_connected(&[p, s], Duration::from_secs(30));
    let state = format!(
        "client {:?}, worker events {:?}",
        room.publ().dtls_state(),
        room.net.events()
    );
    let seen = seen.lock().unwrap().clone();
    (connected, seen, state)
}

#[test]
fn the_handshake_survives_the_loss_of_any_one_dtls_datagram() {
    for from_worker in [true, false] {
        for k in 1..=3 {
            let (connected, seen, state) = connect_losing(k, from_worker, SimPeerConfig::default());
            assert!(
                connected,
                "losing DTLS datagram {k} from the {}: {seen:?} {state}",
                if from_worker { "worker" } else { "client" }
            );
        }
    }
}

/// A client that retransmits sooner than the server (Chrome derives its first DTLS timeout
/// from the ICE round trip, as low as 50 ms) repeats its ClientHello when the server's
/// ServerHello flight is lost. The server must send that flight again.
///
/// Fails with rtc-dtls 0.21.1: receiving the repeated ClientHello while waiting for the
/// client's next flight clears the server's retransmission timer (`handshaker.rs`, `wait()`
/// sets `current_retransmit_timer = None` before `Flight4::parse` finds flight 5 incomplete),
/// and nothing ever resends the flight, so the handshake never completes.
#[test]
fn a_lost_server_hello_flight_is_resent_when_the_client_repeats_its_hello_first() {
    let fast = SimPeerConfig {
        dtls_retransmit_interval: Some(Duration::from_millis(250)),
        ..SimPeerConfig::default()
    };
    // Worker datagram 1 is the HelloVerifyRequest, 2 the ServerHello … ServerHelloDone flight.
    let (connected, seen, state) = connect_losing(2, true, fast);
    let server_hellos = seen.iter().filter(|(w, t)| *w && *t == Some(2)).count();
    let client_hellos = seen.iter().filter(|(w, t)| !*w && *t == Some(1)).count();
    assert!(
        client_hellos >= 3,
        "the client did repeat its hello: {seen:?}"
    );
    assert!(
        server_hellos >= 2,
        "the lost ServerHello flight was never sent again: {seen:?} {state}"
    );
    assert!(connected, "{seen:?} {state}");
}

#[test]
fn forwarding_through_20_percent_loss_keeps_order_spacing_and_payloads() {
    for seed in 1..=8u64 {
        let mut room = Room::new();
        room.net.set_loss(0.2, seed);
        let ssrc = room.audio_ssrc_out();
        for seq in 0..300u16 {
            room.send_audio(seq, u32::from(seq) * 960, &seq.to_be_bytes());
            room.net.advance(Duration::from_millis(20));
        }
        assert!(
            room.net.stats().lost > 30,
            "seed {seed}: the network did lose datagrams"
        );
        let got: Vec<_> = room.sub().received_rtp_for(ssrc).collect();
        assert!(
            got.len() > 180 && got.len() < 290,
            "seed {seed}: {} of 300 arrived",
            got.len()
        );
        // Each packet keeps its place: output sequence and timestamp advance with the input's.
        let first_in = u16::from_be_bytes([got[0].payload[0], got[0].payload[1]]);
        for p in &got {
            let input = u16::from_be_bytes([p.payload[0], p.payload[1]]);
            assert_eq!(
                p.sequence_number.wrapping_sub(got[0].sequence_number),
                input - first_in,
                "seed {seed}"
            );
            assert_eq!(
                p.timestamp.wrapping_sub(got[0].timestamp),
                u32::from(input - first_in) * 960,
                "seed {seed}"
            );
        }
        let mut inputs: Vec<u16> = got
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
            .collect();
        let n = inputs.len();
        inputs.dedup();
        assert_eq!(inputs.len(), n, "seed {seed}: no duplicates");
        assert_eq!(room.sub().stats().srtp_errors, 0);
        // Consent checks were lost too, but not six in a row: everyone is still connected.
        assert!(
            room.net.closed(room.publisher_info.id).is_none()
                && room.net.closed(room.subscriber_info.id).is_none()
        );
    }
}

//! Hostile and broken datagrams into a live, connected room: nothing panics, every datagram is
//! dropped and counted exactly once, nothing is answered to a stranger, and media still flows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sfu_core::sim_peer::{SimPeer, SimRng, write_rtp_packet};
use sfu_core::stun::{IceRole, IntegrityKey, write_binding_request};
use sfu_core::{DropReason, TransportState, WorkerEvent};

const STRANGER: &str = "127.0.9.9:40000";

/// The first-byte classes of RFC 7983 plus the gaps between them; the second element forces
/// the second byte into the RTCP packet-type range where that matters.
const CLASSES: &[(&str, std::ops::RangeInclusive<u8>, bool)] = &[
    ("stun", 0..=3, false),
    ("gap-4-19", 4..=19, false),
    ("dtls", 20..=63, false),
    ("gap-64-127", 64..=127, false),
    ("rtp", 128..=191, false),
    ("rtcp", 128..=191, true),
    ("gap-192-255", 192..=255, false),
];

struct Sweep<'a> {
    room: &'a mut Room,
    source: SocketAddr,
    sent: u64,
    failures: Vec<String>,
}

impl Sweep<'_> {
    fn send(&mut self, label: &str, data: &[u8]) {
        let before = self.room.net.worker().drops().clone();
        self.room.net.inject(self.source, data);
        self.sent += 1;
        let after = self.room.net.worker().drops();
        if after.total() != before.total() + 1 && self.failures.len() < 20 {
            let changed: Vec<_> = after
                .nonzero()
                .filter(|(r, c)| *c != before.get(*r))
                .map(|(r, c)| format!("{}+{}", r.name(), c - before.get(r)))
                .collect();
            self.failures.push(format!(
                "{label} len {} head {:02x?} from {}: drops rose by {} ({changed:?})",
                data.len(),
                &data[..data.len().min(8)],
                self.source,
                after.total() - before.total()
            ));
        }
    }
}

fn valid_check(room: &Room) -> Vec<u8> {
    let info = &room.publisher_info;
    let mut out = Vec::new();
    let username = format!("{}:{}", info.ice_ufrag, room.publ().ufrag());
    write_binding_request(
        &[7; 12],
        username.as_bytes(),
        &IntegrityKey::new(info.ice_pwd.as_bytes()),
        0x7E7F_1EFF,
        Some(IceRole::Controlling(42)),
        true,
        &mut out,
    )
    .unwrap();
    out
}

/// Every datagram kind the sweep sends from `source`.
fn sweep(room: &mut Room, source: SocketAddr, seed: u64) -> (u64, Vec<String>) {
    let mut rng = SimRng::new(seed);
    // Valid packets to truncate: a check, SRTP, SRTCP and a DTLS ClientHello.
    let check = valid_check(room);
    let rtp = room
        .publisher()
        .protect_rtp(
            OPUS_SSRC,
            OPUS_PT,
            100,
            0,
            false,
            &[(PUB_MID_ID, b"0")],
            &[0xAB; 160],
        )
        .unwrap();
    let mut pli = Vec::new();
    sfu_core::rtcp::write_pli(&mut pli, 1, VP8_SSRC);
    let rtcp = room.publisher().protect_rtcp(&pli).unwrap();
    let hello = {
        let now = room.net.now();
        let mut other = SimPeer::new(addr("127.0.8.8:1000"), now).unwrap();
        other.connect(now, &room.publisher_info).unwrap();
        other.poll_datagram().unwrap(); // its check
        other.start_dtls(now).unwrap();
        other.poll_datagram().unwrap().1
    };
    assert_eq!(hello[0], 22, "a DTLS handshake record");

    let mut s = Sweep {
        room,
        source,
        sent: 0,
        failures: Vec::new(),
    };
    for len in 0..=1500usize {
        s.send("zeros", &vec![0u8; len]);
        s.send("0xff", &vec![0xFFu8; len]);
        if len == 0 {
            continue;
        }
        for (label, first, rtcp_type) in CLASSES {
            let mut d = vec![0u8; len];
            rng.fill(&mut d);
            d[0] = first.start() + (rng.below(u64::from(first.end() - first.start()) + 1) as u8);
            if d.len() > 1 {
                d[1] = if *rtcp_type {
                    192 + rng.below(32) as u8
                } else {
                    d[1] & 0x7f
                };
            }
            s.send(label, &d);
        }
    }
    for len in [1501usize, 2000, 9000, 65_507] {
        s.send("oversize", &vec![0x80u8; len]);
    }
    for (label, valid) in [
        ("stun", &check),
        ("srtp", &rtp),
        ("srtcp", &rtcp),
        ("dtls-hello", &hello),
    ] {
        for len in 0..valid.len() {
            s.send(&format!("truncated {label}"), &valid[..len]);
        }
    }
    // Single-bit corruptions of authenticated packets.
    for (label, valid) in [("srtp", &rtp), ("srtcp", &rtcp)] {
        for bit in 0..valid.len() * 8 {
            let mut d = valid.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            s.send(&format!("bit-flipped {label} bit {bit}"), &d);
        }
    }
    (s.sent, s.failures)
}

fn assert_room_still_works(room: &mut Room, first_seq: u16) {
    room.net.advance(Duration::from_secs(1));
    assert_eq!(
        room.net.worker().transport_state(room.publisher_info.id),
        Some(TransportState::Connected)
    );
    assert_eq!(
        room.net.worker().transport_state(room.subscriber_info.id),
        Some(TransportState::Connected)
    );
    let closed: Vec<_> = room
        .net
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, WorkerEvent::TransportClosed { .. }))
        .collect();
    assert!(closed.is_empty(), "{closed:?}");
    assert_eq!(
        room.audio_flows(first_seq, 20),
        20,
        "media still flows end to end"
    );
    let video_before = room.sub().received_rtp_for(room.video_ssrc_out()).count();
    // After any video the room sent before (the flood test's was 500): a packet hundreds
    // behind the first one a subscriber got can need SRTP index -1 and is never sent.
    room.send_video(501, 0, true, b"vp8 after the storm");
    assert_eq!(
        room.sub().received_rtp_for(room.video_ssrc_out()).count(),
        video_before + 1
    );
}

#[test]
fn malformed_datagrams_from_the_validated_tuple_are_each_dropped_and_counted() {
    let mut room = Room::new();
    let source = room.publ().addr();
    room.net.deliver();
    let to_publisher = room.net.datagrams_to(source);
    let (sent, failures) = sweep(&mut room, source, 1);
    assert!(sent > 10_000);
    assert!(
        failures.is_empty(),
        "{} datagrams not counted exactly once:\n{}",
        failures.len(),
        failures.join("\n")
    );
    room.net.deliver();
    assert_eq!(
        room.net.datagrams_to(source),
        to_publisher,
        "nothing answered the garbage"
    );
    assert_room_still_works(&mut room, 200);
}

#[test]
fn malformed_datagrams_from_a_stranger_are_each_dropped_counted_and_never_answered() {
    let mut room = Room::new();
    let stranger = addr(STRANGER);
    let (sent, failures) = sweep(&mut room, stranger, 2);
    assert!(sent > 10_000);
    assert!(
        failures.is_empty(),
        "{} datagrams not counted exactly once:\n{}",
        failures.len(),
        failures.join("\n")
    );
    room.net.deliver();
    assert_eq!(
        room.net.datagrams_to(stranger),
        0,
        "a stranger gets no response at all"
    );
    let drops = room.net.worker().drops();
    assert!(
        drops.get(DropReason::DtlsWrongSource) > 0 && drops.get(DropReason::RtpWrongSource) > 0,
        "{drops:?}"
    );
    assert_room_still_works(&mut room, 300);
}

#[test]
fn a_flood_of_forged_srtp_with_random_ssrcs_binds_nothing_and_leaves_the_transport_working() {
    let mut room = Room::new();
    let source = room.publ().addr();
    let (transports, producers, consumers) = room.net.worker().counts();
    let rtp_in = room
        .net
        .worker()
        .transport_stats(room.publisher_info.id)
        .unwrap()
        .rtp_in;
    let before = room.net.worker().drops().clone();
    let mut rng = SimRng::new(99);
    const FLOOD: u64 = 100_000;
    for i in 0..FLOOD {
        // Each names the unbound mid-only video track: an accepted one would bind its SSRC.
        let mut payload = vec![0u8; 40 + (i % 120) as usize];
        rng.fill(&mut payload);
        let (mut packet, _) = write_rtp_packet(
            rng.next_u32(),
            VP8_PT,
            rng.next_u32() as u16,
            rng.next_u32(),
            false,
            &[(PUB_MID_ID, b"1")],
            &payload,
        )
        .unwrap();
        let mut tag = [0u8; 16];
        rng.fill(&mut tag);
        packet.extend_from_slice(&tag);
        room.net.inject(source, &packet);
    }
    let drops = room.net.worker().drops();
    assert_eq!(drops.total() - before.total(), FLOOD, "{drops:?}");
    assert_eq!(
        drops.get(DropReason::SrtpAuthFail) - before.get(DropReason::SrtpAuthFail),
        FLOOD,
        "all refused at authentication, before any per-SSRC state: {drops:?}"
    );
    assert_eq!(drops.get(DropReason::SrtpTooManyStreams), 0);
    assert_eq!(
        room.net.worker().counts(),
        (transports, producers, consumers)
    );
    assert_eq!(
        room.net
            .worker()
            .transport_stats(room.publisher_info.id)
            .unwrap()
            .rtp_in,
        rtp_in
    );
    room.net.deliver();
    assert!(
        room.sub().received_rtp().is_empty(),
        "nothing forged was forwarded"
    );
    // The mid-only track is still unbound: the real VP8 SSRC binds it and flows.
    room.send_video(500, 0, true, b"the real keyframe");
    let video: Vec<_> = room.sub().received_rtp_for(room.video_ssrc_out()).collect();
    assert_eq!(video.len(), 1);
    assert_eq!(video[0].payload, b"the real keyframe");
    assert_room_still_works(&mut room, 400);
}

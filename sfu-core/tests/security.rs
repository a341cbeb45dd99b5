//! What an attacker on the network, or a misbehaving participant, can and cannot do: DTLS from
//! unvalidated addresses, a wrong certificate, unauthenticated STUN, SRTP replay, and sending
//! streams that were not declared or that belong to someone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use sfu_core::sim_peer::{SimDtlsState, SimNetwork, SimPeer, SimPeerConfig};
use sfu_core::stun::{IceRole, IntegrityKey, write_binding_request};
use sfu_core::{CloseReason, DropReason, TransportState, WebRtcTransportOptions, WorkerEvent};

const STRANGER: &str = "127.0.9.9:40000";

fn drop_delta(
    before: &sfu_core::DropCounters,
    after: &sfu_core::DropCounters,
    reason: DropReason,
) -> u64 {
    after.get(reason) - before.get(reason)
}

/// FreeSWITCH CVE-2023-51443: a ClientHello from an address ICE has not validated must not
/// touch the transport's DTLS state, before, during or after the real handshake.
#[test]
fn dtls_from_an_unvalidated_address_is_ignored_and_does_not_disturb_the_real_handshake() {
    let mut room = Room::setup(SimPeerConfig::default(), SimPeerConfig::default());
    let now = room.net.now();
    // The attacker knows the transport's ufrag and the worker's address, not the ICE password.
    let mut stolen = room.publisher_info.clone();
    stolen.ice_pwd = "not-the-password-at-all!".into();
    let attacker = room.net.add_peer(addr(STRANGER)).unwrap();
    room.net
        .peer_mut(attacker)
        .unwrap()
        .connect(now, &stolen)
        .unwrap();
    room.net
        .peer_mut(attacker)
        .unwrap()
        .start_dtls(now)
        .unwrap();
    // Its check and ClientHello arrive before the real peer has even started ICE.
    room.net.deliver();
    let subscriber = room.subscriber;
    room.net
        .connect(subscriber, &room.subscriber_info.clone())
        .unwrap();

    // The real publisher: its check validates its address ...
    let publisher_info = room.publisher_info.clone();
    room.publisher().connect(now, &publisher_info).unwrap();
    let (_, check) = room.publisher().poll_datagram().unwrap();
    let publisher_addr = room.publ().addr();
    room.net.inject(publisher_addr, &check);
    let response = room.net.worker_mut().poll_transmit().unwrap();
    assert_eq!(response.destination, publisher_addr);
    room.publisher().handle_datagram(now, &response.contents);
    room.net.worker_mut().recycle(response.contents);
    // ... and its ClientHello is ready. The attacker replays it from its own address first,
    // and sends its own ClientHello again, before the real one arrives.
    let (_, hello) = room.publisher().poll_datagram().unwrap();
    let before = room.net.worker().drops().clone();
    room.net.inject(addr(STRANGER), &hello);
    let mut attacker_hello = Vec::new();
    {
        let mut fresh = SimPeer::new(addr(STRANGER), now).unwrap();
        fresh.connect(now, &stolen).unwrap();
        fresh.poll_datagram().unwrap();
        fresh.start_dtls(now).unwrap();
        while let Some((_, d)) = fresh.poll_datagram() {
            attacker_hello = d;
            room.net.inject(addr(STRANGER), &attacker_hello);
        }
    }
    assert_eq!(
        drop_delta(
            &before,
            room.net.worker().drops(),
            DropReason::DtlsWrongSource
        ),
        2
    );
    assert!(
        room.net.worker_mut().poll_transmit().is_none(),
        "nothing answers a stranger's DTLS"
    );
    room.net.inject(publisher_addr, &hello);
    // The attacker keeps retransmitting its flight while the handshake runs, and after it.
    for _ in 0..3 {
        room.net.inject(addr(STRANGER), &attacker_hello);
        room.net.inject(addr(STRANGER), &hello);
        room.net.deliver_round();
    }
    assert!(
        room.net
            .run_until_connected(&[room.publisher, room.subscriber], CONNECT_LIMIT),
        "{:?}",
        room.net.events()
    );
    room.net.advance(Duration::from_secs(5));
    room.net.inject(addr(STRANGER), &hello);

    assert_eq!(
        room.net.connected_profile(room.publisher_info.id),
        room.publ().srtp_profile()
    );
    let a = room.net.peer(attacker).unwrap();
    assert!(!a.is_connected() && !a.is_ice_connected());
    assert_eq!(
        a.stats().datagrams_in,
        0,
        "the attacker got nothing back: {:?}",
        a.stats()
    );
    assert_eq!(room.net.datagrams_to(addr(STRANGER)), 0);
    let dtls_from_attacker_peer = a.stats().datagrams_out - a.stats().checks_sent;
    assert!(
        dtls_from_attacker_peer >= 2,
        "the attacker peer retransmitted its hello"
    );
    let drops = room.net.worker().drops();
    assert_eq!(
        drops.get(DropReason::DtlsWrongSource),
        dtls_from_attacker_peer + 2 + 6 + 1,
        "{drops:?}"
    );
    assert_eq!(
        drops.get(DropReason::StunBadIntegrity),
        a.stats().checks_sent,
        "{drops:?}"
    );
    assert_eq!(drops.get(DropReason::DtlsMalformed), 0, "{drops:?}");
    assert_eq!(
        room.audio_flows(1, 10),
        10,
        "the real session carries media"
    );
}

#[test]
fn a_client_whose_certificate_does_not_match_the_signalled_fingerprint_fails_and_forwards_nothing()
{
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let publisher = net.add_peer(peer_addr(0)).unwrap();
    let subscriber = net.add_peer(peer_addr(1)).unwrap();
    // Signalling says the publisher has someone else's certificate.
    let impostor = SimPeer::new(peer_addr(2), net.now()).unwrap();
    let now = net.now();
    let options = WebRtcTransportOptions {
        remote_fingerprint: Some(impostor.fingerprint()),
        ..Default::default()
    };
    let pub_info = net
        .worker_mut()
        .create_webrtc_transport(now, router, options)
        .unwrap();
    let sub_info = net.create_transport(subscriber, router).unwrap();
    let producer = net
        .worker_mut()
        .produce(pub_info.id, opus_params(OPUS_SSRC))
        .unwrap();
    let (consumer, _) = net
        .worker_mut()
        .consume(
            now,
            sub_info.id,
            producer,
            &subscriber_caps(),
            Some("0".into()),
        )
        .unwrap();
    net.connect(publisher, &pub_info).unwrap();
    net.connect(subscriber, &sub_info).unwrap();
    assert!(net.run_until_connected(&[subscriber], CONNECT_LIMIT));
    assert!(
        net.run_until(CONNECT_LIMIT, |n| n.closed(pub_info.id).is_some()),
        "{:?}",
        net.events()
    );

    let (_, reason) = net.closed(pub_info.id).unwrap();
    assert!(matches!(reason, CloseReason::DtlsFailed(_)), "{reason:?}");
    assert!(
        net.events()
            .iter()
            .any(|(_, e)| *e == WorkerEvent::ConsumerClosed { consumer }),
        "{:?}",
        net.events()
    );
    assert_eq!(net.connected_profile(pub_info.id), None, "never connected");
    assert_eq!(
        net.worker().transport_state(pub_info.id),
        None,
        "the transport is gone"
    );
    let p = net.peer(publisher).unwrap();
    assert!(!p.is_connected(), "{:?}", p.dtls_state());
    // Whatever the failed peer sends now goes nowhere.
    let publisher_addr = p.addr();
    let before = net.worker().drops().clone();
    let (packet, _) =
        sfu_core::sim_peer::write_rtp_packet(OPUS_SSRC, OPUS_PT, 1, 0, false, &[], &[1; 100])
            .unwrap();
    net.inject(publisher_addr, &packet);
    assert_eq!(
        drop_delta(&before, net.worker().drops(), DropReason::RtpWrongSource),
        1
    );
    net.advance(Duration::from_secs(3));
    assert!(
        net.peer(subscriber).unwrap().received_rtp().is_empty(),
        "no media forwarded"
    );
    assert_eq!(
        net.worker().transport_state(sub_info.id),
        Some(TransportState::Connected),
        "the subscriber is unaffected"
    );
}

#[test]
fn the_sim_client_rejects_a_server_whose_certificate_is_not_the_signalled_one() {
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let peer = net.add_peer(peer_addr(0)).unwrap();
    let mut info = net.create_transport(peer, router).unwrap();
    info.fingerprint.sha256[0] ^= 0x01;
    net.connect(peer, &info).unwrap();
    net.run_until(CONNECT_LIMIT, |n| {
        matches!(n.peer(peer).unwrap().dtls_state(), SimDtlsState::Failed(_))
    });
    let p = net.peer(peer).unwrap();
    assert!(p.is_ice_connected());
    assert!(
        matches!(p.dtls_state(), SimDtlsState::Failed(_)),
        "{:?}",
        p.dtls_state()
    );
    assert!(!p.is_connected());
}

fn check_from(username: &str, pwd: &str, role: IceRole) -> Vec<u8> {
    let mut out = Vec::new();
    write_binding_request(
        &[3; 12],
        username.as_bytes(),
        &IntegrityKey::new(pwd.as_bytes()),
        1234,
        Some(role),
        true,
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn stun_with_an_unknown_ufrag_or_bad_integrity_gets_no_response_and_is_counted() {
    let mut room = Room::new();
    room.net.deliver();
    let stranger = addr(STRANGER);
    let publisher_addr = room.publ().addr();
    let info = room.publisher_info.clone();
    let own = room.publ().ufrag().to_owned();
    let controlling = IceRole::Controlling(7);
    let to_publisher = room.net.datagrams_to(publisher_addr);
    let before = room.net.worker().drops().clone();
    for source in [stranger, publisher_addr] {
        room.net.inject(
            source,
            &check_from(&format!("nosuchufrag:{own}"), &info.ice_pwd, controlling),
        );
        room.net.inject(
            source,
            &check_from(
                &format!("{}x:{own}", info.ice_ufrag),
                &info.ice_pwd,
                controlling,
            ),
        );
        room.net
            .inject(source, &check_from("nocolon", &info.ice_pwd, controlling));
        room.net.inject(
            source,
            &check_from(
                &format!("{}:{own}", info.ice_ufrag),
                "wrong-password-wrong-password",
                controlling,
            ),
        );
        let mut tampered = check_from(
            &format!("{}:{own}", info.ice_ufrag),
            &info.ice_pwd,
            controlling,
        );
        // Flip a bit of the ICE-CONTROLLING tie-breaker (before MESSAGE-INTEGRITY, which with
        // USE-CANDIDATE and FINGERPRINT makes up the last 36 bytes).
        let tie_breaker_at = tampered.len() - 36 - 4;
        tampered[tie_breaker_at] ^= 0x40;
        // Re-seal FINGERPRINT so only MESSAGE-INTEGRITY is wrong.
        let fp_at = tampered.len() - 4;
        let crc = crc32fast::hash(&tampered[..tampered.len() - 8]) ^ 0x5354_554E;
        tampered[fp_at..].copy_from_slice(&crc.to_be_bytes());
        room.net.inject(source, &tampered);
    }
    room.net.deliver();
    let after = room.net.worker().drops().clone();
    assert_eq!(
        drop_delta(&before, &after, DropReason::StunUnknownUfrag),
        6,
        "{after:?}"
    );
    assert_eq!(
        drop_delta(&before, &after, DropReason::StunBadIntegrity),
        4,
        "{after:?}"
    );
    assert_eq!(after.total() - before.total(), 10);
    assert_eq!(room.net.datagrams_to(stranger), 0, "no response at all");
    assert_eq!(
        room.net.datagrams_to(publisher_addr),
        to_publisher,
        "no response at all"
    );
    let tuple_changes = room
        .net
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, WorkerEvent::TransportTupleChanged { .. }))
        .count();
    // The stranger is still not validated: its DTLS and SRTP are refused.
    room.net
        .inject(stranger, &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    room.net.inject(
        stranger,
        &[
            0x80, 111, 0, 1, 0, 0, 0, 0, 0x11, 0x11, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ],
    );
    let now_drops = room.net.worker().drops();
    assert_eq!(
        drop_delta(&after, now_drops, DropReason::DtlsWrongSource),
        1
    );
    assert_eq!(drop_delta(&after, now_drops, DropReason::RtpWrongSource), 1);
    // Control: the same check with the right password *is* answered (so silence above meant refusal).
    let mut good = check_from(
        &format!("{}:{own}", info.ice_ufrag),
        &info.ice_pwd,
        controlling,
    );
    room.net.inject(stranger, &good);
    room.net.deliver();
    assert_eq!(room.net.datagrams_to(stranger), 1);
    // A valid check claiming the controlled role is refused too (RFC 8445 role conflict, lite side).
    good = check_from(
        &format!("{}:{own}", info.ice_ufrag),
        &info.ice_pwd,
        IceRole::Controlled(7),
    );
    let before = room.net.worker().drops().clone();
    room.net.inject(addr("127.0.9.10:1"), &good);
    room.net.deliver();
    assert_eq!(
        drop_delta(
            &before,
            room.net.worker().drops(),
            DropReason::StunRoleConflict
        ),
        1
    );
    assert_eq!(room.net.datagrams_to(addr("127.0.9.10:1")), 0);
    assert!(tuple_changes >= 2);
}

#[test]
fn a_replayed_srtp_packet_is_counted_and_forwarded_once() {
    let mut room = Room::new();
    let ssrc_out = room.audio_ssrc_out();
    let packet = room
        .publisher()
        .protect_rtp(
            OPUS_SSRC,
            OPUS_PT,
            10,
            0,
            false,
            &[(PUB_MID_ID, b"0")],
            b"only once",
        )
        .unwrap();
    let before = room.net.worker().drops().clone();
    room.publisher().send_raw(packet.clone()).unwrap();
    room.publisher().send_raw(packet.clone()).unwrap();
    room.net.deliver();
    assert_eq!(
        drop_delta(&before, room.net.worker().drops(), DropReason::SrtpReplay),
        1
    );
    assert_eq!(room.net.worker().drops().total() - before.total(), 1);
    let got: Vec<_> = room.sub().received_rtp_for(ssrc_out).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"only once");
    // Newer packets, then the old one again: still a replay, still not forwarded.
    for seq in 11..15 {
        room.send_audio(seq, 0, b"newer");
    }
    room.publisher().send_raw(packet).unwrap();
    room.net.deliver();
    assert_eq!(
        drop_delta(&before, room.net.worker().drops(), DropReason::SrtpReplay),
        2
    );
    assert_eq!(room.sub().received_rtp_for(ssrc_out).count(), 5);
    // SRTCP replays are refused the same way.
    let mut pli = Vec::new();
    sfu_core::rtcp::write_pli(&mut pli, room.sub().rtcp_ssrc(), room.video_ssrc_out());
    let pli = room.subscriber().protect_rtcp(&pli).unwrap();
    room.subscriber().send_raw(pli.clone()).unwrap();
    room.subscriber().send_raw(pli).unwrap();
    room.net.deliver();
    assert_eq!(
        drop_delta(&before, room.net.worker().drops(), DropReason::SrtpReplay),
        3
    );
}

#[test]
fn a_publisher_cannot_send_undeclared_streams_or_inject_into_another_participants_producer() {
    let mut room = Room::setup(SimPeerConfig::default(), SimPeerConfig::default());
    // A second publisher, B, with a declared Opus SSRC and a mid-only VP8 track (mid "5").
    const B_OPUS_SSRC: u32 = 0x0B0B_0001;
    let b = room.net.add_peer(peer_addr(5)).unwrap();
    let b_info = room.net.create_transport(b, room.router).unwrap();
    let b_audio = room
        .net
        .worker_mut()
        .produce(b_info.id, opus_params(B_OPUS_SSRC))
        .unwrap();
    let b_video = room
        .net
        .worker_mut()
        .produce(b_info.id, vp8_mid_params("5"))
        .unwrap();
    let now = room.net.now();
    let caps = subscriber_caps();
    let sub_id = room.subscriber_info.id;
    let (_, b_audio_out) = room
        .net
        .worker_mut()
        .consume(now, sub_id, b_audio, &caps, Some("2".into()))
        .unwrap();
    let (_, b_video_out) = room
        .net
        .worker_mut()
        .consume(now, sub_id, b_video, &caps, Some("3".into()))
        .unwrap();
    let (b_audio_out, b_video_out) = (consumer_ssrc(&b_audio_out), consumer_ssrc(&b_video_out));
    room.connect_all();
    room.net.connect(b, &b_info).unwrap();
    assert!(room.net.run_until_connected(&[b], CONNECT_LIMIT));
    room.send_video(1, 0, true, b"A's own video binds A's mid-only track");
    room.subscriber().clear_received();

    let before = room.net.worker().drops().clone();
    let now = room.net.now();
    // (SSRC, payload type, header extensions) of each attempt.
    type Attempt = (u32, u8, Vec<(u8, Vec<u8>)>);
    let attempts: Vec<Attempt> = vec![
        (0x9999_0001, OPUS_PT, vec![]), // undeclared SSRC, no mid
        (0x9999_0002, OPUS_PT, vec![(PUB_MID_ID, b"7".to_vec())]), // a mid A never declared
        (0x9999_0003, VP8_PT, vec![(PUB_MID_ID, b"1".to_vec())]), // A's mid-only track is already bound
        (B_OPUS_SSRC, OPUS_PT, vec![(PUB_MID_ID, b"0".to_vec())]), // B's declared SSRC
        (0x9999_0004, VP8_PT, vec![(PUB_MID_ID, b"5".to_vec())]), // B's mid-only track
    ];
    for (i, (ssrc, pt, ext)) in attempts.iter().enumerate() {
        let ext: Vec<(u8, &[u8])> = ext.iter().map(|(id, v)| (*id, v.as_slice())).collect();
        room.publisher()
            .send_rtp(now, *ssrc, *pt, 100 + i as u16, 0, false, &ext, b"injected")
            .unwrap();
    }
    room.net.deliver();
    let after = room.net.worker().drops().clone();
    assert_eq!(
        drop_delta(&before, &after, DropReason::RtpUnknownSsrc),
        attempts.len() as u64,
        "{after:?}"
    );
    // A declared SSRC with a payload type it did not declare is refused as well.
    room.publisher()
        .send_rtp(now, OPUS_SSRC, 100, 200, 0, false, &[], b"wrong pt")
        .unwrap();
    room.net.deliver();
    assert_eq!(
        drop_delta(
            &after,
            room.net.worker().drops(),
            DropReason::RtpUnknownPayloadType
        ),
        1
    );
    assert!(
        room.sub().received_rtp().is_empty(),
        "nothing injected reached the subscriber: {:?}",
        room.sub().received_rtp()
    );

    // B's own media still flows, and its mid-only track binds to B's SSRC, not A's attempt.
    let now = room.net.now();
    let bp = room.net.peer_mut(b).unwrap();
    bp.send_rtp(
        now,
        B_OPUS_SSRC,
        OPUS_PT,
        1,
        0,
        false,
        &[(PUB_MID_ID, b"0")],
        b"B audio",
    )
    .unwrap();
    bp.send_rtp(
        now,
        0x0B0B_0002,
        VP8_PT,
        1,
        0,
        true,
        &[(PUB_MID_ID, b"5")],
        b"B video",
    )
    .unwrap();
    room.net.deliver();
    let got: Vec<_> = room
        .sub()
        .received_rtp()
        .iter()
        .map(|p| (p.ssrc, p.payload.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (b_audio_out, b"B audio".to_vec()),
            (b_video_out, b"B video".to_vec())
        ]
    );
}

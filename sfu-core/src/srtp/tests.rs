//! Behaviour of `SrtpContext`: key handling, replay, rollover, forgery resistance, robustness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const PROFILES: [SrtpProfile; 2] = [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];

fn master_key(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    (
        (0..profile.key_len()).map(|i| 0x40 ^ i as u8).collect(),
        (0..profile.salt_len()).map(|i| 0xA0 ^ i as u8).collect(),
    )
}

/// A sender and receiver sharing one master key.
fn pair(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let (key, salt) = master_key(profile);
    (
        SrtpContext::new(profile, &key, &salt).unwrap(),
        SrtpContext::new(profile, &key, &salt).unwrap(),
    )
}

/// A plaintext RTP packet; with `extended`, two CSRCs and a one-byte-header extension.
fn rtp_packet(
    ssrc: u32,
    sequence_number: u16,
    payload_len: usize,
    extended: bool,
) -> (Vec<u8>, usize) {
    let mut packet = vec![if extended { 0x92 } else { 0x80 }, 96];
    packet.extend_from_slice(&sequence_number.to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    if extended {
        packet.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAB, 0, 0]);
    }
    let header_len = packet.len();
    packet.extend((0..payload_len).map(|i| {
        (i as u8)
            .wrapping_mul(7)
            .wrapping_add(sequence_number as u8)
    }));
    (packet, header_len)
}

/// A sender report with no report blocks: 28 octets.
fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 200, 0, 6];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[0x11; 20]);
    packet
}

fn protect(
    sender: &mut SrtpContext,
    ssrc: u32,
    sequence_number: u16,
    roc: u32,
) -> (Vec<u8>, Vec<u8>, usize) {
    let (plain, header_len) = rtp_packet(ssrc, sequence_number, 40, false);
    let mut protected = plain.clone();
    sender.protect_rtp(&mut protected, header_len, roc).unwrap();
    (plain, protected, header_len)
}

fn unprotect(
    receiver: &mut SrtpContext,
    protected: &[u8],
    header_len: usize,
) -> Result<Vec<u8>, SrtpError> {
    let mut buf = protected.to_vec();
    let len = receiver.unprotect_rtp(&mut buf, header_len)?;
    buf.truncate(len);
    Ok(buf)
}

#[test]
fn profiles_carry_their_dtls_ids_and_lengths() {
    assert_eq!(
        SrtpProfile::from_dtls_id(0x0007),
        Some(SrtpProfile::AeadAes128Gcm)
    );
    assert_eq!(
        SrtpProfile::from_dtls_id(0x0001),
        Some(SrtpProfile::Aes128CmHmacSha1_80)
    );
    for unsupported in [0x0000, 0x0002, 0x0005, 0x0008, 0xFFFF] {
        assert_eq!(SrtpProfile::from_dtls_id(unsupported), None);
    }
    for profile in PROFILES {
        assert_eq!(SrtpProfile::from_dtls_id(profile.dtls_id()), Some(profile));
    }
    let gcm = SrtpProfile::AeadAes128Gcm;
    assert_eq!(
        (gcm.key_len(), gcm.salt_len(), gcm.keying_material_len()),
        (16, 12, 56)
    );
    assert_eq!((gcm.rtp_tag_len(), gcm.rtcp_overhead()), (16, 20));
    let cm = SrtpProfile::Aes128CmHmacSha1_80;
    assert_eq!(
        (cm.key_len(), cm.salt_len(), cm.keying_material_len()),
        (16, 14, 60)
    );
    assert_eq!((cm.rtp_tag_len(), cm.rtcp_overhead()), (10, 14));
}

#[test]
fn keying_material_splits_per_rfc5764_for_each_role() {
    for profile in PROFILES {
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let (k, s) = (profile.key_len(), profile.salt_len());
        let client_key = &material[..k];
        let server_key = &material[k..2 * k];
        let client_salt = &material[2 * k..2 * k + s];
        let server_salt = &material[2 * k + s..];

        let server = profile
            .split_keying_material(&material, DtlsRole::Server)
            .unwrap();
        assert_eq!(
            (server.local.key, server.local.salt),
            (server_key, server_salt)
        );
        assert_eq!(
            (server.remote.key, server.remote.salt),
            (client_key, client_salt)
        );

        let client = profile
            .split_keying_material(&material, DtlsRole::Client)
            .unwrap();
        assert_eq!(client.local, server.remote);
        assert_eq!(client.remote, server.local);

        for wrong in [0, material.len() - 1, material.len() + 1] {
            let other: Vec<u8> = vec![0; wrong];
            assert_eq!(
                profile.split_keying_material(&other, DtlsRole::Server),
                Err(SrtpError::BadKeyLength)
            );
        }
    }
}

#[test]
fn server_and_client_contexts_from_one_export_talk_to_each_other() {
    for profile in PROFILES {
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| (i * 13) as u8)
            .collect();
        let (mut server_out, mut server_in) =
            SrtpContext::from_keying_material(profile, &material, DtlsRole::Server).unwrap();
        let (mut client_out, mut client_in) =
            SrtpContext::from_keying_material(profile, &material, DtlsRole::Client).unwrap();

        let (plain, protected, header_len) = protect(&mut server_out, 1, 1, 0);
        assert_eq!(
            unprotect(&mut client_in, &protected, header_len).unwrap(),
            plain
        );
        // Our own inbound keys are the other direction's: our packets must not verify there.
        assert_eq!(
            unprotect(&mut server_in, &protected, header_len),
            Err(SrtpError::AuthFailed)
        );

        let (plain, protected, header_len) = protect(&mut client_out, 2, 1, 0);
        assert_eq!(
            unprotect(&mut server_in, &protected, header_len).unwrap(),
            plain
        );
    }
}

#[test]
fn wrong_master_key_or_salt_lengths_are_refused() {
    for profile in PROFILES {
        let (key, salt) = master_key(profile);
        assert!(SrtpContext::new(profile, &key, &salt).is_ok());
        for (bad_key, bad_salt) in [
            (&key[..15], &salt[..]),
            (&[0u8; 32][..], &salt[..]),
            (&key[..], &salt[..salt.len() - 1]),
            (&key[..], &[0u8; 16][..]),
            (&[][..], &[][..]),
        ] {
            assert_eq!(
                SrtpContext::new(profile, bad_key, bad_salt).err(),
                Some(SrtpError::BadKeyLength)
            );
        }
    }
    // Each profile's salt length is wrong for the other.
    let (key, gcm_salt) = master_key(SrtpProfile::AeadAes128Gcm);
    assert!(SrtpContext::new(SrtpProfile::Aes128CmHmacSha1_80, &key, &gcm_salt).is_err());
}

#[test]
fn rtp_round_trips_with_csrcs_extensions_and_empty_payloads() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        for (sequence_number, payload_len, extended) in [
            (1u16, 0usize, false),
            (2, 1, true),
            (3, 160, false),
            (4, 1200, true),
            (5, 0, true),
        ] {
            let (plain, header_len) = rtp_packet(0xCAFE, sequence_number, payload_len, extended);
            let mut protected = plain.clone();
            sender.protect_rtp(&mut protected, header_len, 0).unwrap();
            assert_eq!(protected.len(), plain.len() + profile.rtp_tag_len());
            assert_eq!(
                protected[..header_len],
                plain[..header_len],
                "header stays clear"
            );
            if payload_len > 4 {
                assert_ne!(protected[header_len..plain.len()], plain[header_len..]);
            }
            assert_eq!(
                unprotect(&mut receiver, &protected, header_len).unwrap(),
                plain
            );
        }
        assert_eq!(receiver.inbound_stream_count(), 1);
        assert_eq!(
            sender.inbound_stream_count(),
            0,
            "protect never creates inbound state"
        );
    }
}

#[test]
fn protect_appends_in_place_without_reallocating_when_capacity_is_reserved() {
    for profile in PROFILES {
        let (mut sender, _) = pair(profile);
        let (plain, header_len) = rtp_packet(9, 9, 1200, false);
        let mut buf = Vec::with_capacity(plain.len() + profile.rtp_tag_len());
        buf.extend_from_slice(&plain);
        let before = buf.as_ptr();
        sender.protect_rtp(&mut buf, header_len, 0).unwrap();
        assert_eq!(buf.as_ptr(), before);

        let rtcp = rtcp_packet(9);
        let mut buf = Vec::with_capacity(rtcp.len() + profile.rtcp_overhead());
        buf.extend_from_slice(&rtcp);
        let before = buf.as_ptr();
        sender.protect_rtcp(&mut buf).unwrap();
        assert_eq!(buf.as_ptr(), before);
    }
}

#[test]
fn the_same_packet_twice_is_a_replay_and_is_left_untouched() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let (_, protected, header_len) = protect(&mut sender, 7, 100, 0);
        unprotect(&mut receiver, &protected, header_len).unwrap();
        let mut again = protected.clone();
        assert_eq!(
            receiver.unprotect_rtp(&mut again, header_len),
            Err(SrtpError::Replayed)
        );
        assert_eq!(
            again, protected,
            "a replay is refused before any decryption"
        );
    }
}

#[test]
fn packets_older_than_the_window_are_replays_and_reordering_within_it_is_accepted() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let packets: Vec<(Vec<u8>, Vec<u8>, usize)> = (0..=2000u16)
            .map(|seq| protect(&mut sender, 7, seq, 0))
            .collect();

        // Deliver the newest first, then older ones.
        let (_, newest, header_len) = &packets[2000];
        unprotect(&mut receiver, newest, *header_len).unwrap();

        let oldest_in_window = 2000 - REPLAY_WINDOW_SIZE as usize + 1;
        for seq in [1999, 1500, 1001, oldest_in_window, 1990] {
            let (plain, protected, header_len) = &packets[seq];
            assert_eq!(
                &unprotect(&mut receiver, protected, *header_len).unwrap(),
                plain,
                "seq {seq}"
            );
        }
        for seq in [oldest_in_window - 1, 500, 0] {
            let (_, protected, header_len) = &packets[seq];
            assert_eq!(
                unprotect(&mut receiver, protected, *header_len),
                Err(SrtpError::Replayed),
                "seq {seq}"
            );
        }
        // Accepted out-of-order packets are replays the second time.
        let (_, protected, header_len) = &packets[1500];
        assert_eq!(
            unprotect(&mut receiver, protected, *header_len),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn the_rollover_counter_follows_a_sequence_number_wrap_even_reordered() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let mut sent = Vec::new();
        for seq in 65530..=65535u16 {
            sent.push(protect(&mut sender, 3, seq, 0));
        }
        for seq in 0..=5u16 {
            sent.push(protect(&mut sender, 3, seq, 1));
        }
        // 65530..65533, then 0 (ROC 1) before the late 65534/65535 (ROC 0), then the rest.
        for position in [0, 1, 2, 3, 6, 4, 5, 7, 8, 9, 10, 11] {
            let (plain, protected, header_len) = &sent[position];
            assert_eq!(
                &unprotect(&mut receiver, protected, *header_len).unwrap(),
                plain,
                "position {position}"
            );
        }
        assert_eq!(receiver.rtp_streams[&3].highest(), (1 << 16) | 5);

        // A packet of the new ROC protected as if the ROC had not rolled does not verify.
        let (_, stale, header_len) = protect(&mut sender, 3, 6, 0);
        assert_eq!(
            unprotect(&mut receiver, &stale, header_len),
            Err(SrtpError::AuthFailed)
        );
        let (plain, fresh, header_len) = protect(&mut sender, 3, 6, 1);
        assert_eq!(unprotect(&mut receiver, &fresh, header_len).unwrap(), plain);
    }
}

#[test]
fn the_index_estimate_follows_rfc3711_appendix_a() {
    // Same ROC, previous ROC, next ROC.
    assert_eq!(estimate_srtp_index(0x0001_0005, 3), Ok(0x0001_0003));
    assert_eq!(estimate_srtp_index(0x0001_0005, 0x9000), Ok(0x0000_9000));
    assert_eq!(estimate_srtp_index(0x0001_F000, 2), Ok(0x0002_0002));
    assert_eq!(estimate_srtp_index(0x0001_F000, 0x7001), Ok(0x0001_7001));
    // Nothing precedes ROC 0.
    assert_eq!(estimate_srtp_index(5, 0x9000), Err(SrtpError::Replayed));
    // The 48-bit index cannot go beyond ROC 2^32 - 1.
    assert_eq!(
        estimate_srtp_index(MAX_SRTP_INDEX - 0x100, 2),
        Err(SrtpError::IndexExhausted)
    );
}

#[test]
fn tampering_with_tag_payload_or_header_fails_authentication_and_leaves_no_state() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let (plain, header_len) = rtp_packet(0x5555, 10, 100, true);
        let mut protected = plain.clone();
        sender.protect_rtp(&mut protected, header_len, 0).unwrap();
        let last = protected.len() - 1;
        for (what, at) in [
            ("tag", last),
            ("payload", header_len + 3),
            ("header", 1),
            ("extension", header_len - 1),
        ] {
            let mut tampered = protected.clone();
            tampered[at] ^= 0x01;
            assert_eq!(
                receiver.unprotect_rtp(&mut tampered, header_len),
                Err(SrtpError::AuthFailed),
                "{what}"
            );
        }
        // A truncated tag is a different packet, not a shorter valid one.
        let mut truncated = protected[..protected.len() - 1].to_vec();
        assert_eq!(
            receiver.unprotect_rtp(&mut truncated, header_len),
            Err(SrtpError::AuthFailed)
        );
        assert_eq!(receiver.inbound_stream_count(), 0);
        assert_eq!(
            unprotect(&mut receiver, &protected, header_len).unwrap(),
            plain
        );

        let mut rtcp = rtcp_packet(0x5555);
        sender.protect_rtcp(&mut rtcp).unwrap();
        let rtcp_last = rtcp.len() - 1;
        for at in [0, 4, 9, rtcp_last - profile.rtp_tag_len(), rtcp_last] {
            let mut tampered = rtcp.clone();
            tampered[at] ^= 0x80;
            assert_eq!(
                receiver.unprotect_rtcp(&mut tampered),
                Err(SrtpError::AuthFailed),
                "rtcp octet {at}"
            );
        }
        assert_eq!(
            receiver.inbound_stream_count(),
            1,
            "only the RTP stream so far"
        );
    }
}

#[test]
fn a_forged_packet_from_a_known_ssrc_does_not_move_its_window() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let (_, first, header_len) = protect(&mut sender, 8, 100, 0);
        unprotect(&mut receiver, &first, header_len).unwrap();

        // Far ahead, bad tag: had it moved the ROC estimate or window, the next real packet
        // would be refused.
        let (_, mut forged, header_len) = protect(&mut sender, 8, 30_000, 0);
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(
            receiver.unprotect_rtp(&mut forged, header_len),
            Err(SrtpError::AuthFailed)
        );
        assert_eq!(receiver.rtp_streams[&8].highest(), 100);

        let (plain, next, header_len) = protect(&mut sender, 8, 101, 0);
        assert_eq!(unprotect(&mut receiver, &next, header_len).unwrap(), plain);
    }
}

#[test]
fn ten_thousand_forged_packets_with_random_ssrcs_create_no_inbound_state() {
    let mut rng = StdRng::seed_from_u64(0x5EED);
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        for _ in 0..10_000 {
            let ssrc: u32 = rng.random();
            let sequence_number: u16 = rng.random();
            let (_, mut protected, header_len) = protect(&mut sender, ssrc, sequence_number, 0);
            // A well-formed packet with a bad tag, as an attacker without the key would send.
            let tag_start = protected.len() - profile.rtp_tag_len();
            rng.fill(&mut protected[tag_start..]);
            assert_eq!(
                receiver.unprotect_rtp(&mut protected, header_len),
                Err(SrtpError::AuthFailed)
            );

            let mut rtcp = rtcp_packet(ssrc);
            sender.protect_rtcp(&mut rtcp).unwrap();
            let index_len = if profile == SrtpProfile::AeadAes128Gcm {
                4
            } else {
                0
            };
            let tag_end = rtcp.len() - index_len;
            rng.fill(&mut rtcp[tag_end - profile.rtp_tag_len()..tag_end]);
            assert_eq!(
                receiver.unprotect_rtcp(&mut rtcp),
                Err(SrtpError::AuthFailed)
            );
        }
        assert_eq!(receiver.inbound_stream_count(), 0);
        assert_eq!(
            receiver.rtp_streams.capacity(),
            0,
            "the maps never even allocated"
        );
        assert_eq!(receiver.rtcp_streams.capacity(), 0);
    }
}

#[test]
fn authenticated_streams_beyond_the_limit_are_refused_and_existing_ones_keep_working() {
    let profile = SrtpProfile::AeadAes128Gcm;
    let (mut sender, mut receiver) = pair(profile);
    for ssrc in 0..MAX_INBOUND_STREAMS as u32 {
        let (_, protected, header_len) = protect(&mut sender, ssrc, 1, 0);
        unprotect(&mut receiver, &protected, header_len).unwrap();
        let mut rtcp = rtcp_packet(ssrc);
        sender.protect_rtcp(&mut rtcp).unwrap();
        receiver.unprotect_rtcp(&mut rtcp).unwrap();
    }
    assert_eq!(receiver.inbound_stream_count(), 2 * MAX_INBOUND_STREAMS);

    let newcomer = MAX_INBOUND_STREAMS as u32;
    let (_, protected, header_len) = protect(&mut sender, newcomer, 1, 0);
    assert_eq!(
        unprotect(&mut receiver, &protected, header_len),
        Err(SrtpError::TooManyStreams)
    );
    let mut rtcp = rtcp_packet(newcomer);
    sender.protect_rtcp(&mut rtcp).unwrap();
    assert_eq!(
        receiver.unprotect_rtcp(&mut rtcp),
        Err(SrtpError::TooManyStreams)
    );

    let (plain, protected, header_len) = protect(&mut sender, 0, 2, 0);
    assert_eq!(
        unprotect(&mut receiver, &protected, header_len).unwrap(),
        plain
    );
    assert_eq!(receiver.inbound_stream_count(), 2 * MAX_INBOUND_STREAMS);
}

#[test]
fn rtcp_round_trips_with_an_incrementing_index_and_the_e_bit() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        let mut sent = Vec::new();
        for expected_index in 1..=5u32 {
            let plain = rtcp_packet(0xB0B);
            let mut protected = plain.clone();
            sender.protect_rtcp(&mut protected).unwrap();
            assert_eq!(protected.len(), plain.len() + profile.rtcp_overhead());
            assert_eq!(
                protected[..8],
                plain[..8],
                "header and sender SSRC stay clear"
            );
            assert_ne!(protected[8..plain.len()], plain[8..]);
            let index_at = match profile {
                SrtpProfile::AeadAes128Gcm => protected.len() - 4,
                SrtpProfile::Aes128CmHmacSha1_80 => plain.len(),
            };
            assert_eq!(
                protected[index_at..index_at + 4],
                (SRTCP_E_BIT | expected_index).to_be_bytes()
            );
            sent.push((plain, protected));
        }
        // Out of order within the window is fine, a repeat is not.
        for position in [1, 0, 4, 2, 3] {
            let (plain, protected) = &sent[position];
            let mut buf = protected.clone();
            let len = receiver.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(&buf[..len], &plain[..]);
        }
        let mut again = sent[2].1.clone();
        assert_eq!(
            receiver.unprotect_rtcp(&mut again),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn the_srtcp_index_runs_out_after_2_pow_31_packets() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        sender.next_srtcp_index = MAX_SRTCP_INDEX;
        let mut last = rtcp_packet(1);
        sender.protect_rtcp(&mut last).unwrap();
        receiver.unprotect_rtcp(&mut last).unwrap();
        let mut refused = rtcp_packet(1);
        assert_eq!(
            sender.protect_rtcp(&mut refused),
            Err(SrtpError::IndexExhausted)
        );
        assert_eq!(refused, rtcp_packet(1), "a refused packet is not modified");
    }
}

#[test]
fn protect_refuses_bad_lengths_without_touching_the_buffer() {
    for profile in PROFILES {
        let (mut sender, _) = pair(profile);
        let (plain, _) = rtp_packet(1, 1, 20, false);
        for header_len in [0, 11, plain.len() + 1, usize::MAX] {
            let mut buf = plain.clone();
            assert_eq!(
                sender.protect_rtp(&mut buf, header_len, 0),
                Err(SrtpError::TooShort)
            );
            assert_eq!(buf, plain);
        }
        for len in 0..8 {
            let mut buf = vec![0x80; len];
            assert_eq!(sender.protect_rtcp(&mut buf), Err(SrtpError::TooShort));
            assert_eq!(buf.len(), len);
        }
        assert_eq!(
            sender.next_srtcp_index, 1,
            "failed protects consume no index"
        );
    }
}

#[test]
fn unprotect_never_panics_on_any_length_content_or_header_len() {
    let mut rng = StdRng::seed_from_u64(0xF00D);
    for profile in PROFILES {
        let (mut sender, mut receiver) = pair(profile);
        // Known streams for SSRCs 0 and 0xFFFFFFFF so the estimate/replay paths run too.
        for ssrc in [0, u32::MAX] {
            let (_, protected, header_len) = protect(&mut sender, ssrc, 0x8000, 0);
            unprotect(&mut receiver, &protected, header_len).unwrap();
            let mut rtcp = rtcp_packet(ssrc);
            sender.protect_rtcp(&mut rtcp).unwrap();
            receiver.unprotect_rtcp(&mut rtcp).unwrap();
        }
        for len in 0..=1500usize {
            let mut random = vec![0u8; len];
            rng.fill(&mut random[..]);
            for content in [vec![0u8; len], vec![0xFF; len], random] {
                let header_lens: Vec<usize> = if len <= 48 {
                    (0..=len + 4).collect()
                } else {
                    let tag = profile.rtp_tag_len();
                    let mut sample = vec![
                        0,
                        1,
                        11,
                        12,
                        13,
                        len / 2,
                        len - tag - 1,
                        len - tag,
                        len - tag + 1,
                    ];
                    sample.extend([
                        len - 1,
                        len,
                        len + 1,
                        len + 4,
                        rng.random_range(0..=len + 4),
                    ]);
                    sample
                };
                for header_len in header_lens {
                    let mut buf = content.clone();
                    let result = receiver.unprotect_rtp(&mut buf, header_len);
                    assert!(result.is_err(), "len {len} header_len {header_len}");
                }
                let mut buf = content.clone();
                assert!(receiver.unprotect_rtcp(&mut buf).is_err(), "rtcp len {len}");
            }
        }
        assert_eq!(receiver.inbound_stream_count(), 4);
    }
}

#[test]
fn contexts_do_not_print_keys() {
    let (key, salt) = master_key(SrtpProfile::AeadAes128Gcm);
    let context = SrtpContext::new(SrtpProfile::AeadAes128Gcm, &key, &salt).unwrap();
    let printed = format!("{context:?}");
    assert!(printed.contains("AeadAes128Gcm"));
    let material = vec![0x42u8; 56];
    let keys = SrtpProfile::AeadAes128Gcm
        .split_keying_material(&material, DtlsRole::Server)
        .unwrap();
    assert!(
        !format!("{keys:?}").contains("66"),
        "0x42 = 66 must not be printed"
    );
}

/// Encrypting the payload from where it lies gives byte for byte what copying it after the
/// header and protecting in place gives, for both profiles, with and without header
/// extensions, across rollovers; and a receiver decrypts it.
#[test]
fn protecting_from_a_separate_payload_equals_protecting_in_place() {
    for profile in PROFILES {
        let (mut a, mut receiver) = pair(profile);
        let (mut b, _) = pair(profile);
        for (i, (seq, roc)) in [(1u16, 0u32), (65_535, 0), (0, 1), (77, 1)]
            .into_iter()
            .enumerate()
        {
            let (packet, header_len) = rtp_packet(0x1111, seq, 100 + i * 300, i % 2 == 1);
            let mut in_place = packet.clone();
            a.protect_rtp(&mut in_place, header_len, roc).unwrap();
            let mut from = packet[..header_len].to_vec();
            b.protect_rtp_from(&mut from, header_len, roc, &packet[header_len..])
                .unwrap();
            assert_eq!(from, in_place, "{profile:?} seq {seq}");
            if i == 0 {
                // (Later ones jump across rollovers no receiver would follow.)
                let len = receiver.unprotect_rtp(&mut from, header_len).unwrap();
                assert_eq!(&from[..len], &packet[..], "{profile:?} seq {seq}");
            }
        }
        // The buffer must hold exactly the header.
        let (packet, header_len) = rtp_packet(0x1111, 5, 10, false);
        let mut too_long = packet.clone();
        assert_eq!(
            b.protect_rtp_from(&mut too_long, header_len, 0, b"x"),
            Err(SrtpError::TooShort)
        );
    }
}

//! Cross-checks against the `rtc-srtp` crate (webrtc-rs): what we protect it unprotects and vice
//! versa, byte-identical where both sides use the same index, for both profiles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

use super::*;

const PROFILES: [SrtpProfile; 2] = [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];

fn their_profile(profile: SrtpProfile) -> ProtectionProfile {
    match profile {
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
    }
}

fn master_key(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    (
        (0..profile.key_len())
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(3))
            .collect(),
        (0..profile.salt_len())
            .map(|i| (i as u8).wrapping_mul(17).wrapping_add(200))
            .collect(),
    )
}

fn ours(profile: SrtpProfile) -> SrtpContext {
    let (key, salt) = master_key(profile);
    SrtpContext::new(profile, &key, &salt).unwrap()
}

fn theirs(profile: SrtpProfile) -> Context {
    let (key, salt) = master_key(profile);
    let provider = rtc_srtp::crypto::default_provider().unwrap();
    Context::new(
        &key,
        &salt,
        their_profile(profile),
        Some(srtp_replay_protection(1024)),
        Some(srtcp_replay_protection(1024)),
        provider.crypto(),
    )
    .unwrap()
}

/// Sequence numbers 65530..=65535 (ROC 0) then 0..=5 (ROC 1), with their ROC.
fn across_the_wrap() -> impl Iterator<Item = (u16, u32)> {
    (65530..=65535u16)
        .map(|seq| (seq, 0))
        .chain((0..=5u16).map(|seq| (seq, 1)))
}

/// Alternates plain headers and headers with two CSRCs and a one-byte extension.
fn rtp_packet(sequence_number: u16) -> (Vec<u8>, usize) {
    let extended = sequence_number.is_multiple_of(2);
    let mut packet = vec![if extended { 0x92 } else { 0x80 }, 0x60];
    packet.extend_from_slice(&sequence_number.to_be_bytes());
    packet.extend_from_slice(&(u32::from(sequence_number) * 960).to_be_bytes());
    packet.extend_from_slice(&0x1122_3344u32.to_be_bytes());
    if extended {
        packet.extend_from_slice(&[0xAA, 0, 0, 1, 0xBB, 0, 0, 2]);
        packet.extend_from_slice(&[
            0xBE, 0xDE, 0, 2, 0x12, 0x01, 0x02, 0x03, 0x21, 0x0F, 0x0E, 0,
        ]);
    }
    let header_len = packet.len();
    packet
        .extend((0..100 + sequence_number as usize % 50).map(|i| i as u8 ^ sequence_number as u8));
    (packet, header_len)
}

/// A receiver report with one report block, then an SDES chunk: a small compound packet.
fn rtcp_packet(ssrc: u32, seed: u8) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0, 7];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[seed; 24]);
    packet.extend_from_slice(&[0x81, 202, 0, 2]);
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[1, 2, b'h', b'i']);
    packet
}

#[test]
fn rtp_we_protect_is_byte_identical_to_theirs_and_they_unprotect_it_across_the_wrap() {
    for profile in PROFILES {
        let mut our_sender = ours(profile);
        let mut their_sender = theirs(profile);
        let mut their_receiver = theirs(profile);
        for (sequence_number, roc) in across_the_wrap() {
            let (plain, header_len) = rtp_packet(sequence_number);
            let mut protected = plain.clone();
            our_sender
                .protect_rtp(&mut protected, header_len, roc)
                .unwrap();

            let their_protected = their_sender.encrypt_rtp(&plain).unwrap();
            assert_eq!(
                &their_protected[..],
                &protected[..],
                "{profile:?} seq {sequence_number}"
            );

            let decrypted = their_receiver.decrypt_rtp(&protected).unwrap();
            assert_eq!(
                &decrypted[..],
                &plain[..],
                "{profile:?} seq {sequence_number}"
            );
        }
    }
}

#[test]
fn rtp_they_protect_we_unprotect_across_the_wrap_and_reject_their_replays() {
    for profile in PROFILES {
        let mut their_sender = theirs(profile);
        let mut our_receiver = ours(profile);
        let mut sent = Vec::new();
        for (sequence_number, _) in across_the_wrap() {
            let (plain, header_len) = rtp_packet(sequence_number);
            let protected = their_sender.encrypt_rtp(&plain).unwrap().to_vec();
            sent.push((plain, protected, header_len));
        }
        for (plain, protected, header_len) in &sent {
            let mut buf = protected.clone();
            let len = our_receiver.unprotect_rtp(&mut buf, *header_len).unwrap();
            assert_eq!(&buf[..len], &plain[..], "{profile:?}");
        }
        for (_, protected, header_len) in &sent {
            let mut buf = protected.clone();
            assert_eq!(
                our_receiver.unprotect_rtp(&mut buf, *header_len),
                Err(SrtpError::Replayed)
            );
        }
    }
}

#[test]
fn rtcp_we_protect_is_byte_identical_to_theirs_and_they_unprotect_it() {
    for profile in PROFILES {
        let mut our_sender = ours(profile);
        let mut their_sender = theirs(profile);
        let mut their_receiver = theirs(profile);
        for seed in 0..20u8 {
            let plain = rtcp_packet(0xD00D, seed);
            let mut protected = plain.clone();
            our_sender.protect_rtcp(&mut protected).unwrap();

            // Both start the SRTCP index at 1 and count up, so the packets must match exactly.
            let their_protected = their_sender.encrypt_rtcp(&plain).unwrap();
            assert_eq!(
                &their_protected[..],
                &protected[..],
                "{profile:?} packet {seed}"
            );

            let decrypted = their_receiver.decrypt_rtcp(&protected).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "{profile:?} packet {seed}");
        }
    }
}

#[test]
fn rtcp_they_protect_we_unprotect_for_several_senders() {
    for profile in PROFILES {
        let mut their_sender = theirs(profile);
        let mut our_receiver = ours(profile);
        for seed in 0..20u8 {
            let ssrc = 0x1000 + u32::from(seed % 3);
            let plain = rtcp_packet(ssrc, seed);
            let protected = their_sender.encrypt_rtcp(&plain).unwrap().to_vec();
            let mut buf = protected.clone();
            let len = our_receiver.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(&buf[..len], &plain[..], "{profile:?} packet {seed}");
            let mut again = protected.clone();
            assert_eq!(
                our_receiver.unprotect_rtcp(&mut again),
                Err(SrtpError::Replayed)
            );
        }
        assert_eq!(our_receiver.inbound_stream_count(), 3);
    }
}

#[test]
fn keys_split_from_keying_material_match_theirs() {
    use rtc_srtp::config::Config;
    for profile in PROFILES {
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| (i * 7 + 1) as u8)
            .collect();
        for (role, is_client) in [(DtlsRole::Server, false), (DtlsRole::Client, true)] {
            let mut config = Config {
                profile: their_profile(profile),
                ..Default::default()
            };
            config
                .set_session_keys_from_keying_material(&material, is_client)
                .unwrap();
            let keys = profile.split_keying_material(&material, role).unwrap();
            assert_eq!(keys.local.key, &config.keys.local_master_key[..]);
            assert_eq!(keys.local.salt, &config.keys.local_master_salt[..]);
            assert_eq!(keys.remote.key, &config.keys.remote_master_key[..]);
            assert_eq!(keys.remote.salt, &config.keys.remote_master_salt[..]);
        }
    }
}

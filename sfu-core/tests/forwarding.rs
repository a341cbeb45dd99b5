//! Media forwarding end to end between simulated browsers: payloads, SSRCs, payload types,
//! sequence numbers, header-extension ids, and both SRTP profiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use sfu_core::SrtpProfile;
use sfu_core::sim_peer::{ReceivedRtp, SimPeerConfig, SimRng};

fn random_payload(rng: &mut SimRng, min: usize, max: usize) -> Vec<u8> {
    let len = min + rng.below((max - min + 1) as u64) as usize;
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn assert_continuous(packets: &[&ReceivedRtp]) {
    for w in packets.windows(2) {
        assert_eq!(
            w[1].sequence_number,
            w[0].sequence_number.wrapping_add(1),
            "sequence numbers must be continuous"
        );
    }
}

#[test]
fn opus_and_mid_only_vp8_are_forwarded_intact_with_the_consumers_ssrc_pt_and_extension_ids() {
    let mut room = Room::new();
    let mut rng = SimRng::new(7);
    let (audio_out, video_out) = (room.audio_ssrc_out(), room.video_ssrc_out());
    assert_ne!(audio_out, OPUS_SSRC);
    let mut sent_audio = Vec::new();
    let mut sent_video = Vec::new();
    // Audio starts just before the 16-bit wrap so both SRTP legs must carry the ROC over.
    for i in 0..120u16 {
        let seq = 65_480u16.wrapping_add(i);
        let ts = 1_000_000u32.wrapping_add(u32::from(i) * 960);
        let payload = random_payload(&mut rng, 20, 200);
        room.send_audio(seq, ts, &payload);
        sent_audio.push((seq, ts, payload));
        if i % 2 == 0 {
            let vseq = 30_000u16.wrapping_add(i / 2);
            let vts = 5_000u32.wrapping_add(u32::from(i / 2) * 3000);
            let marker = i % 10 == 0;
            let payload = random_payload(&mut rng, 100, 1100);
            room.send_video(vseq, vts, marker, &payload);
            sent_video.push((vseq, vts, marker, payload));
        }
        room.net.advance(Duration::from_millis(20));
    }

    let sub = room.sub();
    let audio: Vec<&ReceivedRtp> = sub.received_rtp_for(audio_out).collect();
    assert_eq!(
        audio.len(),
        sent_audio.len(),
        "every Opus packet arrives once"
    );
    assert_continuous(&audio);
    let ts_offset = audio[0].timestamp.wrapping_sub(sent_audio[0].1);
    for (got, (_, ts, payload)) in audio.iter().zip(&sent_audio) {
        assert_eq!(got.payload_type, SUB_OPUS_PT);
        assert_eq!(&got.payload, payload, "payload byte-identical");
        assert_eq!(
            got.timestamp.wrapping_sub(*ts),
            ts_offset,
            "timestamps keep their spacing"
        );
        assert_eq!(
            got.extension(SUB_AUDIO_LEVEL_ID),
            Some(&[0x85][..]),
            "audio level under the subscriber's id"
        );
        assert_eq!(
            got.extension(SUB_MID_ID),
            Some(&b"0"[..]),
            "the subscriber's mid"
        );
        assert_eq!(
            got.extension(PUB_AUDIO_LEVEL_ID),
            None,
            "publisher ids do not leak"
        );
        assert_eq!(got.extension(PUB_MID_ID), None);
    }

    let video: Vec<&ReceivedRtp> = sub.received_rtp_for(video_out).collect();
    assert_eq!(
        video.len(),
        sent_video.len(),
        "every VP8 packet arrives once (the mid bound the SSRC)"
    );
    assert_continuous(&video);
    let ts_offset = video[0].timestamp.wrapping_sub(sent_video[0].1);
    for (got, (_, ts, marker, payload)) in video.iter().zip(&sent_video) {
        assert_eq!(got.payload_type, SUB_VP8_PT);
        assert_eq!(got.marker, *marker);
        assert_eq!(&got.payload, payload, "payload byte-identical");
        assert_eq!(got.timestamp.wrapping_sub(*ts), ts_offset);
        assert_eq!(got.extension(SUB_ORIENTATION_ID), Some(&[0x01][..]));
        assert_eq!(got.extension(SUB_MID_ID), Some(&b"1"[..]));
        assert_eq!(got.extension(PUB_ORIENTATION_ID), None);
    }
    assert_eq!(
        sub.received_rtp().len(),
        audio.len() + video.len(),
        "nothing else arrives"
    );
    assert_eq!(sub.stats().srtp_errors, 0);
    assert_eq!(sub.stats().srtcp_errors, 0);

    // RTCP flows on both legs: sender reports for the consumers, receiver reports about
    // the producer streams (including the learned VP8 SSRC) to the publisher.
    let rtcp = room.sub().received_rtcp().clone();
    assert!(
        rtcp.sender_reports.get(&audio_out).copied().unwrap_or(0) >= 1,
        "{rtcp:?}"
    );
    let rtcp = room.publ().received_rtcp().clone();
    assert!(
        rtcp.report_blocks.get(&OPUS_SSRC).copied().unwrap_or(0) >= 1,
        "{rtcp:?}"
    );
    assert!(
        rtcp.report_blocks.get(&VP8_SSRC).copied().unwrap_or(0) >= 1,
        "{rtcp:?}"
    );
    assert_eq!(
        room.net.worker().drops().total(),
        0,
        "no drops: {:?}",
        room.net.worker().drops()
    );
}

fn profiles_room(publisher_offer: Vec<SrtpProfile>, subscriber_offer: Vec<SrtpProfile>) -> Room {
    let config = |offer| SimPeerConfig {
        srtp_profiles: offer,
        ..SimPeerConfig::default()
    };
    Room::with_configs(config(publisher_offer), config(subscriber_offer))
}

#[test]
fn server_prefers_gcm_over_a_chrome_style_offer_and_accepts_aes_cm_only_clients() {
    use SrtpProfile::{AeadAes128Gcm as Gcm, Aes128CmHmacSha1_80 as AesCm};
    for (publisher_offer, subscriber_offer, expected_pub, expected_sub) in [
        (vec![AesCm, Gcm], vec![AesCm], Gcm, AesCm),
        (vec![AesCm], vec![AesCm, Gcm], AesCm, Gcm),
        (vec![Gcm], vec![Gcm, AesCm], Gcm, Gcm),
    ] {
        let mut room = profiles_room(publisher_offer.clone(), subscriber_offer.clone());
        let (pub_id, sub_id) = (room.publisher_info.id, room.subscriber_info.id);
        assert_eq!(
            room.net.connected_profile(pub_id),
            Some(expected_pub),
            "publisher offered {publisher_offer:?}"
        );
        assert_eq!(
            room.net.connected_profile(sub_id),
            Some(expected_sub),
            "subscriber offered {subscriber_offer:?}"
        );
        assert_eq!(
            room.publ().srtp_profile(),
            Some(expected_pub),
            "both ends agree"
        );
        assert_eq!(room.sub().srtp_profile(), Some(expected_sub));
        assert_eq!(
            room.audio_flows(100, 20),
            20,
            "media flows from {expected_pub:?} to {expected_sub:?}"
        );
        room.net.advance(Duration::from_millis(1500));
        let ssrc = room.audio_ssrc_out();
        assert!(
            room.sub()
                .received_rtcp()
                .sender_reports
                .contains_key(&ssrc),
            "SRTCP decrypts too"
        );
        assert_eq!(
            room.sub().stats().srtp_errors + room.sub().stats().srtcp_errors,
            0
        );
    }
}

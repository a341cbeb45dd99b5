//! Active-speaker detection through the real worker: two publishers in one room send Opus
//! every 20 ms tagged with the RFC 6464 audio-level extension, and the worker must report
//! `WorkerEvent::ActiveSpeakerChanged` for the right producer at the right (virtual) times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sfu_core::sim_peer::{PeerId, SimNetwork};
use sfu_core::{ProducerId, RouterId, WorkerEvent};

const PACKET_INTERVAL: Duration = Duration::from_millis(20);
const SSRC_A: u32 = 0x0A0A_0001;
const SSRC_B: u32 = 0x0B0B_0002;

/// The audio-level byte of a speech packet at `-dbov` dBov (V = 1).
fn voice(dbov: u8) -> u8 {
    0x80 | (dbov & 0x7f)
}

/// The audio-level byte of a silent packet (V = 0, -127 dBov).
const SILENCE: u8 = 0x7f;

struct Talker {
    peer: PeerId,
    producer: ProducerId,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

struct Room {
    net: SimNetwork,
    router: RouterId,
    a: Talker,
    b: Talker,
    start: Instant,
}

impl Room {
    fn new() -> Self {
        let mut net = SimNetwork::new(addr(WORKER)).unwrap();
        let router = net.worker_mut().create_router();
        let talker = |i: usize, ssrc: u32, net: &mut SimNetwork| {
            let peer = net.add_peer(peer_addr(i)).unwrap();
            let info = net.create_transport(peer, router).unwrap();
            let producer = net
                .worker_mut()
                .produce(info.id, opus_params(ssrc))
                .unwrap();
            net.connect(peer, &info).unwrap();
            Talker {
                peer,
                producer,
                ssrc,
                seq: 1000 * i as u16,
                ts: 50_000 * i as u32,
            }
        };
        let a = talker(0, SSRC_A, &mut net);
        let b = talker(1, SSRC_B, &mut net);
        assert!(
            net.run_until_connected(&[a.peer, b.peer], CONNECT_LIMIT),
            "room did not connect: {:?}",
            net.events()
        );
        net.take_events();
        let start = net.now();
        Self {
            net,
            router,
            a,
            b,
            start,
        }
    }

    /// Sends `duration` of audio, one packet per talker every 20 ms, with these levels.
    fn talk(&mut self, duration: Duration, level_a: u8, level_b: u8) {
        self.talk_with(duration, |_| (level_a, level_b));
    }

    /// As [`Self::talk`], with the levels of the i-th packet pair given by `levels(i)`.
    fn talk_with(&mut self, duration: Duration, levels: impl Fn(u32) -> (u8, u8)) {
        let packets = (duration.as_millis() / PACKET_INTERVAL.as_millis()) as u32;
        for i in 0..packets {
            let (level_a, level_b) = levels(i);
            let now = self.net.now();
            for (t, level) in [(&mut self.a, level_a), (&mut self.b, level_b)] {
                self.net
                    .peer_mut(t.peer)
                    .unwrap()
                    .send_rtp(
                        now,
                        t.ssrc,
                        OPUS_PT,
                        t.seq,
                        t.ts,
                        false,
                        &[(PUB_MID_ID, b"0"), (PUB_AUDIO_LEVEL_ID, &[level])],
                        b"opus frame",
                    )
                    .unwrap();
                t.seq = t.seq.wrapping_add(1);
                t.ts = t.ts.wrapping_add(960);
            }
            self.net.deliver();
            self.net.advance(PACKET_INTERVAL);
        }
    }

    fn elapsed(&self) -> Duration {
        self.net.now().duration_since(self.start)
    }

    /// Every speaker change so far: when (since the start) and to whom.
    fn changes(&self) -> Vec<(Duration, Option<ProducerId>)> {
        self.net
            .events()
            .iter()
            .filter_map(|(at, e)| match e {
                WorkerEvent::ActiveSpeakerChanged { router, producer } => {
                    assert_eq!(*router, self.router, "the room's router");
                    Some((at.duration_since(self.start), *producer))
                }
                _ => None,
            })
            .collect()
    }
}

#[test]
fn the_loudest_sustained_speaker_is_reported_and_short_bursts_and_silence_are_handled() {
    let mut room = Room::new();
    let (a, b) = (room.a.producer, room.b.producer);

    // Nobody talks but for a 300 ms burst from B (a cough, a door): nobody gets the floor.
    room.talk(Duration::from_millis(300), SILENCE, voice(5));
    room.talk(Duration::from_millis(1700), SILENCE, SILENCE);
    assert_eq!(
        room.changes(),
        vec![],
        "a 300 ms burst took the empty floor"
    );

    // A talks (-30 dBov, voice), B is silent.
    let a_from = room.elapsed();
    room.talk(Duration::from_millis(2500), voice(30), SILENCE);
    let changes = room.changes();
    assert_eq!(changes.len(), 1, "one change, to A: {changes:?}");
    let (at, speaker) = changes[0];
    assert_eq!(speaker, Some(a), "{changes:?}");
    assert!(
        at - a_from <= Duration::from_millis(1500),
        "A reported {:?} after starting to talk",
        at - a_from
    );

    // B coughs: a 300 ms burst much louder than A. Nothing changes.
    room.talk(Duration::from_millis(300), voice(30), voice(5));
    room.talk(Duration::from_millis(1700), voice(30), SILENCE);
    assert_eq!(
        room.changes().len(),
        1,
        "a 300 ms burst took the floor: {:?}",
        room.changes()
    );

    // B interjects for 900 ms, loud and long enough to count as speech, but not sustained.
    room.talk(Duration::from_millis(900), voice(30), voice(0));
    room.talk(Duration::from_millis(2000), voice(30), SILENCE);
    assert_eq!(
        room.changes().len(),
        1,
        "a 900 ms interjection took the floor: {:?}",
        room.changes()
    );

    // B talks louder than A, steadily, for 3 s: the floor passes to B.
    let b_from = room.elapsed();
    room.talk(Duration::from_secs(3), voice(30), voice(5));
    let b_until = room.elapsed();
    let changes = room.changes();
    assert_eq!(changes.len(), 2, "one more change, to B: {changes:?}");
    let (at, speaker) = changes[1];
    assert_eq!(speaker, Some(b), "{changes:?}");
    assert!(
        at > b_from + Duration::from_millis(500) && at <= b_until,
        "B took the floor at {at:?} (talking from {b_from:?} to {b_until:?})"
    );

    // Both fall silent (the packets keep coming): nobody has the floor after the 2 s hold.
    room.talk(Duration::from_secs(4), SILENCE, SILENCE);
    let changes = room.changes();
    assert_eq!(changes.len(), 3, "one more change, to nobody: {changes:?}");
    let (at, speaker) = changes[2];
    assert_eq!(speaker, None, "{changes:?}");
    let silent_for = at - b_until;
    assert!(
        silent_for >= Duration::from_millis(1900) && silent_for <= Duration::from_millis(2700),
        "floor released {silent_for:?} after the last speech"
    );
}

#[test]
fn two_people_at_similar_levels_do_not_make_the_floor_flap() {
    let mut room = Room::new();
    let a = room.a.producer;
    room.talk(Duration::from_secs(2), voice(20), SILENCE);
    // B joins at about the same level (-18 vs -20 dBov: 0.64 vs 0.6, below the 1.25 ratio).
    room.talk(Duration::from_secs(5), voice(20), voice(18));
    let changes = room.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].1, Some(a));
}

#[test]
fn a_closed_speaker_loses_the_floor() {
    let mut room = Room::new();
    let (a, b) = (room.a.producer, room.b.producer);
    room.talk(Duration::from_secs(2), voice(10), voice(30));
    assert_eq!(room.changes().last().map(|c| c.1), Some(Some(a)));
    room.net.worker_mut().close_producer(a).unwrap();
    let closed_at = room.elapsed();
    // Only B is heard now (A's packets are dropped as unknown).
    room.talk(Duration::from_secs(2), voice(10), voice(30));
    let changes = room.changes();
    let (at, speaker) = *changes.last().unwrap();
    assert_eq!(speaker, Some(b), "{changes:?}");
    assert!(
        at - closed_at <= Duration::from_millis(700),
        "floor passed {:?} after the close",
        at - closed_at
    );
}

#[test]
fn sparse_voice_flagged_packets_in_noise_never_take_the_floor() {
    let mut room = Room::new();
    // One packet in five flagged as loud speech, for 4 s: a run of "speech" that never stops
    // (gaps of 100 ms), but 20 % activity.
    room.talk_with(Duration::from_secs(4), |i| {
        (SILENCE, if i % 5 == 0 { voice(10) } else { SILENCE })
    });
    assert_eq!(room.changes(), vec![]);
}

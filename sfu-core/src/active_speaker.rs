//! Audio levels and active-speaker detection from the RFC 6464 audio-level header extension.
//!
//! Publishers tag every audio packet with `urn:ietf:params:rtp-hdrext:ssrc-audio-level`: one
//! byte holding a voice-activity flag (the V bit, the top bit) and the level in -dBov (0 is
//! the loudest, 127 silence). [`parse_audio_level`] reads it; an [`ActiveSpeakerDetector`]
//! turns a stream of levels per participant into smoothed per-participant loudness
//! ([`ActiveSpeakerDetector::levels`]) and the *dominant speaker*
//! ([`ActiveSpeakerDetector::poll`]), with hysteresis so the highlight neither flaps between
//! two people talking over each other nor jumps to a cough or a click. Sans-I/O: every call
//! takes `now`, nothing reads a clock.
//!
//! ## The algorithm
//!
//! It is the smoothed-level-with-threshold scheme of LiveKit combined with the "sustained
//! dominance" idea of Jitsi's dominant speaker identification, in three stages:
//!
//! 1. **Per packet** ([`ActiveSpeakerDetector::record`], O(1)). A packet is *speech* when its
//!    V bit is set and it is louder than [`SpeakerConfig::silence_threshold_dbov`] (default
//!    50: anything at -50 dBov or quieter is noise). Speech maps to a loudness in `0..=1`
//!    linear in dB above that threshold (0 dBov → 1.0, -25 dBov → 0.5); anything else counts
//!    0. The packet adds to the key's accumulators of the current evaluation interval (packets,
//!    speech packets, loudness sum). It also tracks the key's *speech run*: consecutive speech
//!    packets separated by less than [`SpeakerConfig::gap_tolerance`] (400 ms, the pauses
//!    between words) form one run; its length is measured on packet times, not on the
//!    evaluation grid.
//! 2. **Per evaluation** (every [`SpeakerConfig::interval`], 300 ms, see
//!    [`ActiveSpeakerDetector::poll_timeout`]). Each key's interval is folded into two
//!    exponential moving averages with time constant [`SpeakerConfig::smoothing`] (600 ms,
//!    roughly a one-second window): *activity*, the fraction of packets that were speech, and
//!    *loudness*, the mean loudness per packet (silence and missing packets pull it down). The
//!    smoothed loudness is what [`ActiveSpeakerDetector::levels`] reports.
//! 3. **The decision.** A key is *speaking* while its speech run is alive, and *eligible* for
//!    the floor when that run has lasted at least [`SpeakerConfig::min_speech`] (500 ms) and
//!    its smoothed activity is at least [`SpeakerConfig::min_activity`] (0.3). So a cough, a
//!    click or any burst shorter than 500 ms can never take the floor, and sparse stray
//!    "speech" packets in noise cannot either.
//!    * Nobody has the floor: the loudest eligible key takes it (a lead time of roughly
//!      `min_speech` plus one interval).
//!    * Someone has it and is still talking: a challenger (the loudest other speaking key)
//!      must be louder than the current speaker by [`SpeakerConfig::dominance_ratio`] (×1.25)
//!      at *every* evaluation for [`SpeakerConfig::dominance_period`] (1.2 s) and be eligible
//!      before the floor passes. Two people talking over each other at similar levels, or a
//!      short louder interjection, reset the challenge and change nothing.
//!    * The current speaker has been silent (no speech packet) for
//!      [`SpeakerConfig::silence_hold`] (2 s): the floor passes at once to the loudest
//!      eligible key, or to nobody.
//!    * The current speaker was [removed](ActiveSpeakerDetector::remove): same, at the next
//!      evaluation.
//!
//! With the defaults, someone speaking steadily and clearly louder than the current speaker
//! takes the floor after about 1.5–1.9 s (smoothing lag + dominance period + one interval);
//! a single speaker is highlighted after 0.5–0.8 s and un-highlighted 2–2.3 s after they stop.
//!
//! ## Cost
//!
//! `record` is one hash lookup and a few arithmetic operations; a key's slot is allocated the
//! first time it is seen and never again. An evaluation walks all keys once. Keys are kept in
//! insertion order, so the detector is deterministic for a given input.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The header extension URI carrying [`AudioLevel`] (RFC 6464, client-to-mixer).
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// One packet's RFC 6464 client-to-mixer audio level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioLevel {
    /// The level in -dBov: 0 is the loudest, 127 silence. Values above 127 count as silence.
    pub level_dbov: u8,
    /// The V bit: the sender's voice-activity detector says this packet is speech.
    pub voice: bool,
}

/// Parses the audio-level extension's element data (one-byte or two-byte form: the first byte
/// is the level, further bytes are padding and ignored). `None` when empty.
pub fn parse_audio_level(ext: &[u8]) -> Option<AudioLevel> {
    ext.first().map(|&b| AudioLevel {
        level_dbov: b & 0x7F,
        voice: b & 0x80 != 0,
    })
}

/// Tuning of an [`ActiveSpeakerDetector`]; see the [module documentation](self) for how each
/// value is used. [`Default`] gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerConfig {
    /// How often the decision is evaluated (clamped to at least 10 ms).
    pub interval: Duration,
    /// Packets at this level or quieter (in -dBov) are not speech, whatever their V bit.
    pub silence_threshold_dbov: u8,
    /// Time constant of the activity and loudness moving averages.
    pub smoothing: Duration,
    /// Speech packets closer together than this belong to the same speech run.
    pub gap_tolerance: Duration,
    /// How long a speech run must last before its key may take the floor.
    pub min_speech: Duration,
    /// The smoothed fraction of speech packets a key needs to take the floor.
    pub min_activity: f32,
    /// How much louder than the current speaker a challenger must be.
    pub dominance_ratio: f32,
    /// How long a challenger must dominate without interruption to take the floor.
    pub dominance_period: Duration,
    /// How long the current speaker may be silent before losing the floor unchallenged.
    pub silence_hold: Duration,
    /// A key that sent no packet for this long reports a level of 0.
    pub level_stale: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(300),
            silence_threshold_dbov: 50,
            smoothing: Duration::from_millis(600),
            gap_tolerance: Duration::from_millis(400),
            min_speech: Duration::from_millis(500),
            min_activity: 0.3,
            dominance_ratio: 1.25,
            dominance_period: Duration::from_millis(1200),
            silence_hold: Duration::from_secs(2),
            level_stale: Duration::from_millis(500),
        }
    }
}

/// The dominant speaker changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerChange<K> {
    /// Who had the floor.
    pub previous: Option<K>,
    /// Who has it now; `None` after a period of silence.
    pub speaker: Option<K>,
}

#[derive(Debug, Clone)]
struct Slot<K> {
    key: K,
    // The open evaluation interval.
    packets: u32,
    speech_packets: u32,
    loudness_sum: f32,
    // Smoothed over evaluations.
    activity: f32,
    loudness: f32,
    last_packet: Instant,
    last_speech: Option<Instant>,
    run_start: Option<Instant>,
}

impl<K> Slot<K> {
    fn new(key: K, now: Instant) -> Self {
        Self {
            key,
            packets: 0,
            speech_packets: 0,
            loudness_sum: 0.0,
            activity: 0.0,
            loudness: 0.0,
            last_packet: now,
            last_speech: None,
            run_start: None,
        }
    }

    /// Whether the key's speech run is still alive at `now`.
    fn speaking(&self, now: Instant, config: &SpeakerConfig) -> bool {
        self.last_speech
            .is_some_and(|t| now.saturating_duration_since(t) <= config.gap_tolerance)
    }

    /// Whether the key may take the floor at `now`.
    fn eligible(&self, now: Instant, config: &SpeakerConfig) -> bool {
        let run = match (self.run_start, self.last_speech) {
            (Some(start), Some(last)) => last.saturating_duration_since(start),
            _ => Duration::ZERO,
        };
        self.speaking(now, config)
            && run >= config.min_speech
            && self.activity >= config.min_activity
    }

    fn silent_for(&self, now: Instant, hold: Duration) -> bool {
        self.last_speech
            .is_none_or(|t| now.saturating_duration_since(t) >= hold)
    }
}

/// Per-participant audio levels and the dominant speaker; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct ActiveSpeakerDetector<K: Copy + Eq + Hash> {
    config: SpeakerConfig,
    index: HashMap<K, usize>,
    slots: Vec<Slot<K>>,
    current: Option<K>,
    /// The key currently challenging `current` and since when it has dominated.
    challenge: Option<(K, Instant)>,
    last_eval: Option<Instant>,
    next_eval: Option<Instant>,
}

impl<K: Copy + Eq + Hash> Default for ActiveSpeakerDetector<K> {
    fn default() -> Self {
        Self::new(SpeakerConfig::default())
    }
}

impl<K: Copy + Eq + Hash> ActiveSpeakerDetector<K> {
    /// A detector with the given tuning.
    pub fn new(mut config: SpeakerConfig) -> Self {
        config.interval = config.interval.max(Duration::from_millis(10));
        Self {
            config,
            index: HashMap::new(),
            slots: Vec::new(),
            current: None,
            challenge: None,
            last_eval: None,
            next_eval: None,
        }
    }

    /// The tuning in use.
    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    /// Who has the floor, as last reported by [`poll`](Self::poll).
    pub fn current(&self) -> Option<K> {
        self.current
    }

    /// Records one packet's level. O(1); allocates only the first time `key` is seen.
    pub fn record(&mut self, now: Instant, key: K, level: AudioLevel) {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.slots.push(Slot::new(key, now));
                let i = self.slots.len() - 1;
                self.index.insert(key, i);
                i
            }
        };
        if self.next_eval.is_none() {
            self.next_eval = Some(now.checked_add(self.config.interval).unwrap_or(now));
        }
        let loudness = loudness(level, self.config.silence_threshold_dbov);
        let gap_tolerance = self.config.gap_tolerance;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.packets = slot.packets.saturating_add(1);
        slot.last_packet = now;
        if let Some(loudness) = loudness {
            slot.speech_packets = slot.speech_packets.saturating_add(1);
            slot.loudness_sum += loudness;
            let run_continues = slot.run_start.is_some()
                && slot
                    .last_speech
                    .is_some_and(|t| now.saturating_duration_since(t) <= gap_tolerance);
            if !run_continues {
                slot.run_start = Some(now);
            }
            slot.last_speech = Some(now);
        }
    }

    /// Forgets a key (its producer closed). If it had the floor, the next evaluation reports
    /// the floor passing to someone else or to nobody.
    pub fn remove(&mut self, key: K) {
        let Some(i) = self.index.remove(&key) else {
            return;
        };
        if i < self.slots.len() {
            self.slots.swap_remove(i);
            if let Some(moved) = self.slots.get(i) {
                self.index.insert(moved.key, i);
            }
        }
        if self.challenge.is_some_and(|(k, _)| k == key) {
            self.challenge = None;
        }
    }

    /// When [`poll`](Self::poll) next evaluates; `None` while there is nothing to evaluate.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_eval
    }

    /// Evaluates if due (`now` at or after [`poll_timeout`](Self::poll_timeout)) and returns
    /// the change of dominant speaker, if any. Before the due time it does nothing.
    pub fn poll(&mut self, now: Instant) -> Option<SpeakerChange<K>> {
        let due = self.next_eval?;
        if now < due {
            return None;
        }
        let change = self.evaluate(now);
        if self.slots.is_empty() && self.current.is_none() {
            self.next_eval = None;
            self.last_eval = None;
        } else {
            self.next_eval = Some(now.checked_add(self.config.interval).unwrap_or(now));
        }
        change
    }

    /// Smoothed loudness per key, in `0..=1` (0 for a key silent or not heard from lately), as
    /// of the last evaluation.
    pub fn levels(&self, now: Instant) -> impl Iterator<Item = (K, f32)> {
        let stale = self.config.level_stale;
        self.slots.iter().map(move |s| {
            let level = if now.saturating_duration_since(s.last_packet) > stale {
                0.0
            } else {
                s.loudness.clamp(0.0, 1.0)
            };
            (s.key, level)
        })
    }

    fn evaluate(&mut self, now: Instant) -> Option<SpeakerChange<K>> {
        let config = self.config;
        let dt = self
            .last_eval
            .map_or(config.interval, |t| now.saturating_duration_since(t));
        self.last_eval = Some(now);
        let alpha = if config.smoothing.is_zero() {
            1.0
        } else {
            1.0 - (-dt.as_secs_f32() / config.smoothing.as_secs_f32()).exp()
        };
        for s in &mut self.slots {
            let (activity, loudness) = if s.packets == 0 {
                (0.0, 0.0)
            } else {
                let n = s.packets as f32;
                (s.speech_packets as f32 / n, s.loudness_sum / n)
            };
            s.activity += alpha * (activity - s.activity);
            s.loudness += alpha * (loudness - s.loudness);
            s.packets = 0;
            s.speech_packets = 0;
            s.loudness_sum = 0.0;
        }

        let loudest = |pred: &dyn Fn(&Slot<K>) -> bool| {
            self.slots
                .iter()
                .filter(|s| pred(s))
                .fold(None::<&Slot<K>>, |best, s| match best {
                    Some(b) if b.loudness >= s.loudness => Some(b),
                    _ => Some(s),
                })
        };
        let candidate = loudest(&|s| s.eligible(now, &config)).map(|s| s.key);
        let current = self
            .current
            .and_then(|k| self.index.get(&k))
            .and_then(|&i| self.slots.get(i));

        let next = match current {
            None => {
                self.challenge = None;
                candidate
            }
            Some(c) if c.silent_for(now, config.silence_hold) => {
                self.challenge = None;
                candidate
            }
            Some(c) => {
                let threshold = c.loudness * config.dominance_ratio;
                let challenger = loudest(&|s| s.key != c.key && s.speaking(now, &config))
                    .filter(|s| s.loudness > threshold);
                match challenger {
                    None => {
                        self.challenge = None;
                        Some(c.key)
                    }
                    Some(ch) => {
                        let since = match self.challenge {
                            Some((k, since)) if k == ch.key => since,
                            _ => now,
                        };
                        self.challenge = Some((ch.key, since));
                        if now.saturating_duration_since(since) >= config.dominance_period
                            && ch.eligible(now, &config)
                        {
                            Some(ch.key)
                        } else {
                            Some(c.key)
                        }
                    }
                }
            }
        };

        if next == self.current {
            return None;
        }
        let change = SpeakerChange {
            previous: self.current,
            speaker: next,
        };
        self.current = next;
        self.challenge = None;
        Some(change)
    }
}

/// The loudness of a speech packet in `0..=1`, `None` for non-speech.
fn loudness(level: AudioLevel, threshold: u8) -> Option<f32> {
    if !level.voice || level.level_dbov >= threshold {
        return None;
    }
    Some(f32::from(threshold - level.level_dbov) / f32::from(threshold))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const PACKET: Duration = Duration::from_millis(20);

    fn speech(level_dbov: u8) -> AudioLevel {
        AudioLevel {
            level_dbov,
            voice: true,
        }
    }

    const SILENCE: AudioLevel = AudioLevel {
        level_dbov: 127,
        voice: false,
    };

    /// Drives a detector on virtual time: every 20 ms each key sends the level `script`
    /// returns for it (`None`: no packet), polls at every due time, and records the changes
    /// with the time (ms since start) they happened.
    struct Sim {
        det: ActiveSpeakerDetector<u32>,
        t0: Instant,
        now: Instant,
        changes: Vec<(u64, SpeakerChange<u32>)>,
    }

    impl Sim {
        fn new() -> Self {
            let t0 = Instant::now();
            Self {
                det: ActiveSpeakerDetector::default(),
                t0,
                now: t0,
                changes: Vec::new(),
            }
        }

        fn ms(&self) -> u64 {
            (self.now - self.t0).as_millis() as u64
        }

        /// Runs until `until_ms`; `script(ms, key)` for keys 0..keys.
        fn run(
            &mut self,
            until_ms: u64,
            keys: u32,
            script: impl Fn(u64, u32) -> Option<AudioLevel>,
        ) {
            while self.ms() < until_ms {
                let ms = self.ms();
                for key in 0..keys {
                    if let Some(level) = script(ms, key) {
                        self.det.record(self.now, key, level);
                    }
                }
                let next_packet = self.now + PACKET;
                // Poll at every due time before the next packet.
                while let Some(due) = self.det.poll_timeout() {
                    if due >= next_packet {
                        break;
                    }
                    self.now = self.now.max(due);
                    if let Some(c) = self.det.poll(self.now) {
                        self.changes.push((self.ms(), c));
                    }
                }
                self.now = next_packet;
            }
        }

        fn speakers(&self) -> Vec<(u64, Option<u32>)> {
            self.changes.iter().map(|(t, c)| (*t, c.speaker)).collect()
        }
    }

    #[test]
    fn parse_reads_level_and_voice_bit() {
        assert_eq!(
            parse_audio_level(&[0x80 | 30]),
            Some(AudioLevel {
                level_dbov: 30,
                voice: true
            })
        );
        assert_eq!(
            parse_audio_level(&[127]),
            Some(AudioLevel {
                level_dbov: 127,
                voice: false
            })
        );
        assert_eq!(
            parse_audio_level(&[0xFF]),
            Some(AudioLevel {
                level_dbov: 127,
                voice: true
            })
        );
        // Two-byte form with padding: extra bytes ignored.
        assert_eq!(
            parse_audio_level(&[0x85, 0, 0]),
            Some(AudioLevel {
                level_dbov: 5,
                voice: true
            })
        );
        assert_eq!(parse_audio_level(&[]), None);
    }

    #[test]
    fn single_speaker_becomes_active_then_silence_clears() {
        let mut sim = Sim::new();
        // Speaks 0..3 s, then sends silence packets (no DTX).
        sim.run(8000, 1, |ms, _| {
            Some(if ms < 3000 { speech(30) } else { SILENCE })
        });
        let speakers = sim.speakers();
        assert_eq!(speakers.len(), 2, "{speakers:?}");
        let (on, who) = speakers[0];
        assert_eq!(who, Some(0));
        assert!((500..=900).contains(&on), "lead time {on} ms");
        let (off, who) = speakers[1];
        assert_eq!(who, None);
        // Last speech packet at 2980 ms; the hold is 2 s; evaluations every 300 ms.
        assert!((4980..=5300).contains(&off), "released at {off} ms");
        assert_eq!(sim.changes[1].1.previous, Some(0));
    }

    #[test]
    fn speaker_who_stops_sending_is_released_too() {
        let mut sim = Sim::new();
        // Muted: packets stop altogether after 2 s, but key stays known.
        sim.run(6000, 1, |ms, _| (ms < 2000).then_some(speech(20)));
        let speakers = sim.speakers();
        assert_eq!(
            speakers.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![Some(0), None]
        );
        assert!(speakers[1].0 <= 4300, "{speakers:?}");
    }

    #[test]
    fn alternating_similar_speakers_do_not_flap() {
        for (la, lb) in [(30, 30), (30, 33), (33, 30), (20, 24)] {
            let mut sim = Sim::new();
            // 200 ms slices: A, B, A, B, ... for 10 s; the idle one sends silence.
            sim.run(10_000, 2, |ms, key| {
                let turn = ((ms / 200) % 2) as u32;
                Some(match (key == turn, key) {
                    (true, 0) => speech(la),
                    (true, _) => speech(lb),
                    (false, _) => SILENCE,
                })
            });
            let speakers = sim.speakers();
            assert!(!speakers.is_empty(), "somebody must be highlighted");
            assert!(
                speakers.len() <= 2,
                "levels {la}/{lb}: flapping {speakers:?}"
            );
        }
    }

    #[test]
    fn cough_does_not_take_the_floor() {
        for a_level in [30, 45] {
            let mut sim = Sim::new();
            // A speaks throughout; B coughs at full loudness for 300 ms at 3 s.
            sim.run(8000, 2, |ms, key| {
                Some(match key {
                    0 => speech(a_level),
                    _ if (3000..3300).contains(&ms) => speech(0),
                    _ => SILENCE,
                })
            });
            assert_eq!(
                sim.speakers().iter().map(|s| s.1).collect::<Vec<_>>(),
                vec![Some(0)],
                "A at {a_level}"
            );
        }
    }

    #[test]
    fn cough_in_a_silent_room_does_not_take_the_floor() {
        let mut sim = Sim::new();
        // Nobody speaks; B coughs for 300 ms at 2 s and clicks (60 ms) at 5 s.
        sim.run(8000, 2, |ms, key| {
            Some(match key {
                1 if (2000..2300).contains(&ms) || (5000..5060).contains(&ms) => speech(0),
                _ => SILENCE,
            })
        });
        assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    }

    #[test]
    fn overlapping_speakers_at_similar_levels_keep_the_floor() {
        for lb in [26, 28, 30] {
            let mut sim = Sim::new();
            // A at -30 dBov throughout; B joins at 2 s slightly louder and talks over A.
            sim.run(12_000, 2, |ms, key| {
                Some(match key {
                    0 => speech(30),
                    _ if ms >= 2000 => speech(lb),
                    _ => SILENCE,
                })
            });
            assert_eq!(
                sim.speakers().iter().map(|s| s.1).collect::<Vec<_>>(),
                vec![Some(0)],
                "B at {lb}"
            );
        }
    }

    #[test]
    fn louder_sustained_speaker_takes_the_floor_within_bounds() {
        let mut sim = Sim::new();
        // A at -35 dBov throughout; B at -10 dBov from 3 s to 5 s only.
        sim.run(8000, 2, |ms, key| {
            Some(match key {
                0 => speech(35),
                _ if (3000..5000).contains(&ms) => speech(10),
                _ => SILENCE,
            })
        });
        let speakers = sim.speakers();
        assert_eq!(speakers[0].1, Some(0));
        let Some(&(t, who)) = speakers.get(1) else {
            panic!("B must take the floor: {speakers:?}")
        };
        assert_eq!(who, Some(1));
        let latency = t - 3000;
        assert!(
            (1000..=2000).contains(&latency),
            "switch latency {latency} ms"
        );
        // B stopped at 5 s and A kept talking: the floor returns to A.
        assert_eq!(speakers.get(2).map(|s| s.1), Some(Some(0)), "{speakers:?}");
        assert_eq!(speakers.len(), 3, "{speakers:?}");
    }

    #[test]
    fn noise_never_makes_a_speaker() {
        let mut sim = Sim::new();
        sim.run(10_000, 3, |ms, key| {
            Some(match key {
                // Loud but flagged non-speech.
                0 => AudioLevel {
                    level_dbov: 5,
                    voice: false,
                },
                // Flagged speech but below the threshold.
                1 => speech(50 + (ms % 7) as u8),
                // Sparse stray speech packets in silence: one every 300 ms.
                _ if ms % 300 == 0 => speech(20),
                _ => SILENCE,
            })
        });
        assert!(sim.changes.is_empty(), "{:?}", sim.changes);
        let levels: Vec<_> = sim.det.levels(sim.now).collect();
        assert_eq!(levels.len(), 3);
        assert!(levels.iter().all(|&(_, l)| l < 0.1), "{levels:?}");
    }

    #[test]
    fn levels_reflect_loudness_and_remove_drops_key() {
        let mut sim = Sim::new();
        sim.run(3000, 3, |_, key| match key {
            0 => Some(speech(10)),
            1 => Some(speech(40)),
            _ => Some(SILENCE),
        });
        let level = |sim: &Sim, key| {
            sim.det
                .levels(sim.now)
                .find(|&(k, _)| k == key)
                .map(|(_, l)| l)
        };
        let (a, b, c) = (
            level(&sim, 0).unwrap(),
            level(&sim, 1).unwrap(),
            level(&sim, 2).unwrap(),
        );
        assert!((0.7..=0.85).contains(&a), "a {a}");
        assert!((0.1..=0.25).contains(&b), "b {b}");
        assert_eq!(c, 0.0);
        assert_eq!(sim.det.current(), Some(0));

        // Removing a non-speaker: gone from levels, no change.
        sim.det.remove(2);
        assert_eq!(level(&sim, 2), None);
        assert_eq!(sim.det.levels(sim.now).count(), 2);
        let before = sim.changes.len();
        sim.run(3500, 2, |_, key| {
            Some(if key == 0 { speech(10) } else { speech(40) })
        });
        assert_eq!(sim.changes.len(), before);

        // Removing the current speaker: the next evaluation hands the floor to B.
        sim.det.remove(0);
        assert_eq!(level(&sim, 0), None);
        let removed_at = sim.ms();
        sim.run(4000, 2, |_, key| (key == 1).then_some(speech(40)));
        let (t, change) = *sim.changes.last().unwrap();
        assert_eq!(
            change,
            SpeakerChange {
                previous: Some(0),
                speaker: Some(1)
            }
        );
        assert!(t - removed_at <= 300);

        // Removing the last key: a change to nobody, then the detector idles.
        sim.det.remove(1);
        let due = sim.det.poll_timeout().unwrap();
        assert_eq!(
            sim.det.poll(due),
            Some(SpeakerChange {
                previous: Some(1),
                speaker: None
            })
        );
        assert_eq!(sim.det.poll_timeout(), None);
        assert_eq!(sim.det.levels(due).count(), 0);
        // Removing an unknown key is harmless.
        sim.det.remove(42);
    }

    #[test]
    fn poll_before_due_does_nothing_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut det = ActiveSpeakerDetector::<u8>::default();
        assert_eq!(det.poll_timeout(), None);
        assert_eq!(det.poll(t0), None);
        det.record(t0, 1, speech(0));
        let due = det.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_millis(300));
        assert_eq!(det.poll(t0), None);
        assert_eq!(det.poll_timeout(), Some(due));
        det.record(
            t0 - Duration::from_secs(5),
            1,
            AudioLevel {
                level_dbov: 255,
                voice: true,
            },
        );
        det.record(
            t0,
            2,
            AudioLevel {
                level_dbov: 200,
                voice: true,
            },
        );
        assert_eq!(det.poll(due), None);
        let _ = det.poll(t0 - Duration::from_secs(9));
        for (_, l) in det.levels(t0 - Duration::from_secs(9)) {
            assert!((0.0..=1.0).contains(&l));
        }
        // A degenerate configuration does not panic either.
        let mut det = ActiveSpeakerDetector::<u8>::new(SpeakerConfig {
            interval: Duration::ZERO,
            silence_threshold_dbov: 0,
            smoothing: Duration::ZERO,
            ..SpeakerConfig::default()
        });
        det.record(t0, 1, speech(0));
        assert_eq!(det.poll_timeout(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(det.poll(t0 + Duration::from_secs(1)), None);
    }

    /// xorshift64*: a tiny seeded generator, so the test is reproducible without dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_sequences_keep_invariants() {
        const KEYS: usize = 5;
        for seed in 1..=16u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut det = ActiveSpeakerDetector::<usize>::default();
            let t0 = Instant::now();
            let mut now = t0;
            let end = t0 + Duration::from_secs(60);
            // Per key: talking?, level, when the state flips, present?, last speech packet.
            let mut talking = [false; KEYS];
            let mut level = [30u8; KEYS];
            let mut flip_at = [t0; KEYS];
            let mut present = [true; KEYS];
            let mut last_speech: [Option<Instant>; KEYS] = [None; KEYS];
            let mut speaker: Option<usize> = None;
            let mut changes = 0;
            while now < end {
                for k in 0..KEYS {
                    if now >= flip_at[k] {
                        talking[k] = !talking[k];
                        level[k] = rng.below(128) as u8;
                        // Bursts from 20 ms to 4 s, silences up to 6 s.
                        let ms = if talking[k] {
                            20 + rng.below(4000)
                        } else {
                            rng.below(6000)
                        };
                        flip_at[k] = now + Duration::from_millis(ms);
                        // Occasionally a producer closes, or comes back.
                        if rng.below(20) == 0 {
                            present[k] = !present[k];
                            if !present[k] {
                                det.remove(k);
                                last_speech[k] = None;
                                if det.levels(now).any(|(key, _)| key == k) {
                                    panic!("seed {seed}: removed key {k} still reported");
                                }
                            }
                        }
                    }
                    if !present[k] || rng.below(10) == 0 {
                        continue; // loss / DTX
                    }
                    let jitter = rng.below(9) as u8;
                    let l = if talking[k] {
                        AudioLevel {
                            level_dbov: level[k].saturating_add(jitter),
                            voice: rng.below(8) != 0,
                        }
                    } else {
                        AudioLevel {
                            level_dbov: rng.below(256) as u8,
                            voice: rng.below(4) == 0,
                        }
                    };
                    if l.voice && l.level_dbov < det.config().silence_threshold_dbov {
                        last_speech[k] = Some(now);
                    }
                    det.record(now, k, l);
                }
                // Poll at random instants, sometimes early.
                let due = det.poll_timeout();
                let result = det.poll(now);
                if let Some(change) = result {
                    changes += 1;
                    assert!(
                        due.is_some_and(|d| now >= d),
                        "seed {seed}: change off a poll instant"
                    );
                    assert_eq!(change.previous, speaker, "seed {seed}");
                    assert_ne!(change.previous, change.speaker, "seed {seed}");
                    if let Some(k) = change.speaker {
                        assert!(present[k], "seed {seed}: removed key {k} became speaker");
                        let recent =
                            last_speech[k].is_some_and(|t| now - t <= Duration::from_millis(400));
                        assert!(recent, "seed {seed}: key {k} has not spoken recently");
                    }
                    speaker = change.speaker;
                } else if due.is_none_or(|d| now < d) {
                    assert_eq!(
                        det.poll_timeout(),
                        due,
                        "seed {seed}: early poll moved the timer"
                    );
                }
                assert_eq!(det.current(), speaker, "seed {seed}");
                for (k, l) in det.levels(now) {
                    assert!(present[k], "seed {seed}");
                    assert!(
                        l.is_finite() && (0.0..=1.0).contains(&l),
                        "seed {seed}: level {l}"
                    );
                }
                now += Duration::from_millis(1 + rng.below(40));
            }
            // Speakers come and go, but hysteresis keeps the change rate well below the
            // evaluation rate (200 evaluations in 60 s).
            assert!(changes < 60, "seed {seed}: {changes} changes");
        }
    }
}

//! Loss detection on a publisher's stream and the NACKs that ask for retransmission.
//!
//! Packets lost between the publisher and the SFU are lost for every subscriber, so the SFU
//! asks the publisher itself (RFC 4585 generic NACK). The generator watches the extended
//! sequence numbers arriving on one stream, remembers the gaps (bounded), and says which to
//! NACK now: never twice within a round-trip time, at most [`MAX_NACK_RETRIES`] times, and not
//! after [`MAX_MISSING_AGE`] when the packet would be useless anyway.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::seq_manager::extend_sequence;

/// Times one packet is NACKed before giving up.
pub const MAX_NACK_RETRIES: u8 = 10;
/// A missing packet older than this is forgotten.
pub const MAX_MISSING_AGE: Duration = Duration::from_millis(1000);
/// Missing packets tracked at most; a larger gap means a keyframe is needed instead.
pub const MAX_MISSING: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Missing {
    detected: Instant,
    last_nack: Option<Instant>,
    retries: u8,
}

/// What a received packet meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next packet, or one after a gap that is now being tracked.
    InOrder,
    /// A packet that had been missing: a retransmission or reordering filled the gap.
    Recovered,
    /// A duplicate or a packet older than anything tracked.
    Old,
    /// The gap was too large to track: ask for a keyframe instead.
    GapTooLarge,
}

/// Tracks the gaps of one incoming stream.
#[derive(Debug, Default, Clone)]
pub struct NackGenerator {
    highest: Option<u64>,
    missing: BTreeMap<u64, Missing>,
}

impl NackGenerator {
    /// Records an arriving sequence number.
    pub fn on_packet(&mut self, now: Instant, sequence: u16) -> Arrival {
        let Some(highest) = self.highest else {
            self.highest = Some(0x1_0000 | u64::from(sequence));
            return Arrival::InOrder;
        };
        let ext = extend_sequence(highest, sequence);
        if ext <= highest {
            return if self.missing.remove(&ext).is_some() {
                Arrival::Recovered
            } else {
                Arrival::Old
            };
        }
        self.highest = Some(ext);
        let gap = ext - highest - 1;
        if gap as usize > MAX_MISSING {
            self.missing.clear();
            return Arrival::GapTooLarge;
        }
        for lost in highest + 1..ext {
            self.missing.insert(
                lost,
                Missing {
                    detected: now,
                    last_nack: None,
                    retries: 0,
                },
            );
        }
        while self.missing.len() > MAX_MISSING {
            self.missing.pop_first();
        }
        Arrival::InOrder
    }

    /// The sequence numbers to NACK now (ascending), given the round-trip time; marks them sent.
    pub fn poll_nacks(&mut self, now: Instant, rtt: Duration, out: &mut Vec<u16>) {
        self.missing.retain(|_, m| {
            now.saturating_duration_since(m.detected) <= MAX_MISSING_AGE
                && m.retries < MAX_NACK_RETRIES
        });
        for (ext, m) in self.missing.iter_mut() {
            if m.last_nack
                .is_some_and(|t| now.saturating_duration_since(t) < rtt)
            {
                continue;
            }
            m.last_nack = Some(now);
            m.retries += 1;
            out.push(*ext as u16);
        }
    }

    /// Packets currently missing.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_nacked_once_per_rtt_until_recovered() {
        let now = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut g = NackGenerator::default();
        for seq in [65_533u16, 65_534, 1, 2] {
            assert_eq!(g.on_packet(now, seq), Arrival::InOrder);
        }
        let mut out = Vec::new();
        g.poll_nacks(now, rtt, &mut out);
        assert_eq!(out, vec![65_535, 0], "the two lost across the wrap");
        out.clear();
        g.poll_nacks(now + Duration::from_millis(10), rtt, &mut out);
        assert!(out.is_empty(), "not again within an RTT");
        assert_eq!(g.on_packet(now, 0), Arrival::Recovered);
        g.poll_nacks(now + Duration::from_millis(60), rtt, &mut out);
        assert_eq!(out, vec![65_535]);
        assert_eq!(g.on_packet(now, 2), Arrival::Old, "duplicate");
    }

    #[test]
    fn gives_up_after_retries_or_age_and_bounds_memory() {
        let now = Instant::now();
        let mut g = NackGenerator::default();
        g.on_packet(now, 10);
        g.on_packet(now, 12);
        let mut out = Vec::new();
        for i in 0..20u64 {
            g.poll_nacks(
                now + Duration::from_millis(i * 10),
                Duration::ZERO,
                &mut out,
            );
        }
        assert_eq!(out.len(), usize::from(MAX_NACK_RETRIES));
        g.on_packet(now, 14);
        out.clear();
        g.poll_nacks(now + Duration::from_secs(2), Duration::ZERO, &mut out);
        assert!(out.is_empty(), "too old to be worth asking for");
        assert_eq!(g.on_packet(now, 14 + 5000), Arrival::GapTooLarge);
        assert_eq!(g.missing(), 0);
    }
}

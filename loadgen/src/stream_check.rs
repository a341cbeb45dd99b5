//! Continuity of one received stream: which of a publisher's packets a subscriber got, in
//! which order, and how many twice.
//!
//! Owns the per-stream bookkeeping on the publisher's 64-bit packet counter (carried in the
//! payload, so losses inside the SFU count as much as losses on the wire) and a check that the
//! SFU's rewritten RTP sequence numbers advance exactly as the counters do. It must not do
//! I/O or decide what the measurement window is: callers give the window when they read.

/// Counters remembered below the highest one, to tell a late packet from a duplicate.
const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// One subscriber's view of one publisher's stream.
#[derive(Debug, Clone)]
pub struct StreamCheck {
    highest: Option<u64>,
    /// Bit `c % WINDOW` set: counter `c` (within `WINDOW` of `highest`) was received.
    seen: [u64; WORDS],
    /// Highest RTP sequence number and counter pair, to check the SFU's rewriting.
    last_rtp: Option<(u16, u64)>,
    /// Unique packets received with a counter in the measurement window.
    pub received_in_window: u64,
    /// Unique packets received at all.
    pub received: u64,
    /// Packets received a second time.
    pub duplicates: u64,
    /// Packets that arrived after a higher counter.
    pub reordered: u64,
    /// Packets too far behind the highest to be checked for duplication (counted as received).
    pub too_late: u64,
    /// In-order packets whose RTP sequence number did not advance as their counter did.
    pub sequence_mismatches: u64,
    /// The first counter received.
    pub first: Option<u64>,
}

impl Default for StreamCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamCheck {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self {
            highest: None,
            seen: [0; WORDS],
            last_rtp: None,
            received_in_window: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            too_late: 0,
            sequence_mismatches: 0,
            first: None,
        }
    }

    fn bit(counter: u64) -> (usize, u64) {
        let slot = counter % WINDOW;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    fn mark(&mut self, counter: u64) -> bool {
        let (word, mask) = Self::bit(counter);
        match self.seen.get_mut(word) {
            Some(w) if *w & mask != 0 => false,
            Some(w) => {
                *w |= mask;
                true
            }
            None => false,
        }
    }

    fn clear(&mut self, counter: u64) {
        let (word, mask) = Self::bit(counter);
        if let Some(w) = self.seen.get_mut(word) {
            *w &= !mask;
        }
    }

    /// Records packet `counter` carried with RTP sequence number `rtp_seq`; `in_window` says
    /// whether the counter belongs to the measurement window. Returns false for a duplicate.
    pub fn on_packet(&mut self, counter: u64, rtp_seq: u16, in_window: bool) -> bool {
        let fresh = match self.highest {
            None => {
                self.first = Some(counter);
                self.highest = Some(counter);
                self.mark(counter)
            }
            Some(h) if counter > h => {
                // Forget the slots the window slides over before they are reused.
                let forget = (counter - h).min(WINDOW);
                for c in (counter - forget + 1)..=counter {
                    self.clear(c);
                }
                self.highest = Some(counter);
                self.mark(counter)
            }
            Some(h) if h - counter >= WINDOW => {
                self.too_late += 1;
                true
            }
            Some(_) => {
                let fresh = self.mark(counter);
                if fresh {
                    self.reordered += 1;
                }
                fresh
            }
        };
        if !fresh {
            self.duplicates += 1;
            return false;
        }
        self.received += 1;
        if in_window {
            self.received_in_window += 1;
        }
        match self.last_rtp {
            Some((seq, c)) if counter > c => {
                // The SFU numbers only what it forwards, so with nothing lost the sequence
                // numbers advance exactly as the counters do.
                if rtp_seq != seq.wrapping_add((counter - c) as u16) {
                    self.sequence_mismatches += 1;
                }
                self.last_rtp = Some((rtp_seq, counter));
            }
            None => self.last_rtp = Some((rtp_seq, counter)),
            Some(_) => {}
        }
        true
    }

    /// The highest counter received.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let mut s = StreamCheck::new();
        for c in [10u64, 11, 13, 12, 12, 14, 20] {
            s.on_packet(c, 1000u16.wrapping_add((c - 10) as u16), true);
        }
        assert_eq!(s.received, 6);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.highest(), Some(20));
        assert_eq!(s.first, Some(10));
        assert_eq!(s.sequence_mismatches, 0);
        // 15..=19 missing: 11 expected, 6 unique.
        assert_eq!(20 - 10 + 1 - s.received, 5);
    }

    #[test]
    fn window_slides_without_false_duplicates() {
        let mut s = StreamCheck::new();
        for c in 0..10_000u64 {
            assert!(s.on_packet(c, c as u16, c >= 100));
        }
        assert_eq!(s.received, 10_000);
        assert_eq!(s.received_in_window, 9_900);
        assert_eq!(s.duplicates, 0);
        // A jump larger than the window, then an old packet.
        assert!(s.on_packet(20_000, 20_000u16, true));
        assert!(!s.on_packet(20_000, 20_000u16, true));
        assert!(s.on_packet(5, 5, true));
        assert_eq!(s.too_late, 1);
        assert_eq!(s.sequence_mismatches, 0);
        assert!(s.on_packet(20_001, 7, true));
        assert_eq!(s.sequence_mismatches, 1, "a rewriting gap is seen");
    }
}

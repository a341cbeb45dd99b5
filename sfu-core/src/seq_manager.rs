//! Sequence-number and timestamp rewriting for one consumer.
//!
//! A consumer sends its own stream: the subscriber must see continuous 16-bit sequence
//! numbers and a continuous 32-bit timestamp line even when the source changes (a simulcast
//! switch, a pause) or wraps. [`SeqRewriter`] keeps an offset and the extended (48-bit)
//! highest output sequence, which also yields the SRTP rollover counter. It knows nothing
//! of packets or codecs.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// Extends a 16-bit sequence number to 64 bits relative to the highest extended value seen
/// (RFC 3550 Appendix A.1 style: the candidate closest to `highest`).
pub fn extend_sequence(highest: u64, seq: u16) -> u64 {
    let base = highest & !0xffff;
    let candidate = base | u64::from(seq);
    let low = highest as u16;
    if seq < low && low - seq > 0x8000 {
        candidate + 0x1_0000
    } else if seq > low && seq - low > 0x8000 && base > 0 {
        candidate - 0x1_0000
    } else {
        candidate
    }
}

/// Maps an input stream's sequence numbers onto the consumer's continuous output line.
#[derive(Debug, Clone)]
pub struct SeqRewriter {
    offset: u16,
    /// Extended highest output sequence number; `None` before the first packet.
    highest_out: Option<u64>,
    /// Output sequence the next source's first packet must take (after a rebase).
    pending_rebase: bool,
    initial_out: u16,
}

impl SeqRewriter {
    /// A rewriter whose first output sequence number is `initial` (random per consumer).
    pub fn new(initial: u16) -> Self {
        Self {
            offset: 0,
            highest_out: None,
            pending_rebase: true,
            initial_out: initial,
        }
    }

    /// Makes the next input packet continue the output line right after the highest one sent,
    /// whatever its input sequence number (used when the source stream changes).
    pub fn rebase(&mut self) {
        self.pending_rebase = true;
    }

    /// Rewrites `input`; returns the output sequence number and the SRTP rollover counter
    /// for it. Out-of-order inputs stay out of order by the same distance.
    pub fn rewrite(&mut self, input: u16) -> (u16, u32) {
        if self.pending_rebase {
            let next = match self.highest_out {
                Some(h) => (h + 1) as u16,
                None => self.initial_out,
            };
            self.offset = next.wrapping_sub(input);
            self.pending_rebase = false;
        }
        let out = input.wrapping_add(self.offset);
        let extended = match self.highest_out {
            // Start at ROC 1 so that a reordered packet just before the first never needs ROC -1.
            None => 0x1_0000 | u64::from(out),
            Some(h) => extend_sequence(h, out),
        };
        if self.highest_out.is_none_or(|h| extended > h) {
            self.highest_out = Some(extended);
        }
        (out, ((extended >> 16) as u32).wrapping_sub(1))
    }

    /// Records that `input` is dropped on purpose (a temporal layer the subscriber does not
    /// get, a packet of a layer being left): when it is the next packet of the line, later
    /// inputs move down by one so the subscriber sees no gap. A dropped packet out of order
    /// leaves a gap instead, never a collision with a sequence number already sent.
    pub fn skip(&mut self, input: u16) {
        if self.pending_rebase {
            return;
        }
        let Some(highest) = self.highest_out else {
            return;
        };
        if input.wrapping_add(self.offset) == (highest + 1) as u16 {
            self.offset = self.offset.wrapping_sub(1);
        }
    }

    /// The highest output sequence number sent, if any.
    pub fn highest_out(&self) -> Option<u16> {
        self.highest_out.map(|h| h as u16)
    }
}

/// Maps input timestamps onto the consumer's timestamp line.
#[derive(Debug, Clone, Copy)]
pub struct TimestampRewriter {
    offset: u32,
}

impl TimestampRewriter {
    /// A rewriter adding `offset` (random per consumer) to every timestamp.
    pub fn new(offset: u32) -> Self {
        Self { offset }
    }

    /// Rewrites a timestamp, wrapping at 2^32.
    pub fn rewrite(&self, input: u32) -> u32 {
        input.wrapping_add(self.offset)
    }

    /// Changes the offset so that `input` maps to `output` (used at a source switch).
    pub fn align(&mut self, input: u32, output: u32) {
        self.offset = output.wrapping_sub(input);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn extends_across_wrap_both_ways() {
        assert_eq!(extend_sequence(0x1_fff0, 0x0005), 0x2_0005);
        assert_eq!(extend_sequence(0x2_0005, 0xfff0), 0x1_fff0);
        assert_eq!(extend_sequence(0x2_0005, 0x0003), 0x2_0003);
        assert_eq!(
            extend_sequence(0x0_0005, 0xfff0),
            0x0_fff0,
            "no negative cycle"
        );
    }

    #[test]
    fn output_is_continuous_across_16_bit_wrap_and_roc_increments() {
        let mut r = SeqRewriter::new(65_530);
        let mut outs = vec![];
        for input in 1000u16..1012 {
            outs.push(r.rewrite(input));
        }
        let seqs: Vec<u16> = outs.iter().map(|o| o.0).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        assert_eq!(outs[0], (65_530, 0));
        assert_eq!(outs[5], (65_535, 0));
        assert_eq!(outs[6], (0, 1), "rollover counter increments at the wrap");
        assert_eq!(outs[11], (5, 1));
    }

    #[test]
    fn input_wrap_keeps_output_continuous() {
        let mut r = SeqRewriter::new(100);
        let a = r.rewrite(65_535);
        let b = r.rewrite(0);
        assert_eq!(a.0 + 1, b.0);
        assert_eq!(a.1, b.1);
    }

    #[test]
    fn reordered_packet_keeps_its_distance_and_roc() {
        let mut r = SeqRewriter::new(0);
        let first = r.rewrite(500);
        let third = r.rewrite(502);
        let second = r.rewrite(501);
        assert_eq!(first, (0, 0));
        assert_eq!(third, (2, 0));
        assert_eq!(second, (1, 0));
        // Reordered across the output wrap: the late one belongs to the earlier cycle.
        let mut r = SeqRewriter::new(65_535);
        assert_eq!(r.rewrite(10), (65_535, 0));
        assert_eq!(r.rewrite(12), (1, 1));
        assert_eq!(r.rewrite(11), (0, 1));
        let mut r = SeqRewriter::new(0);
        assert_eq!(r.rewrite(10), (0, 0));
        assert_eq!(
            r.rewrite(9),
            (65_535, u32::MAX),
            "before the first packet: previous cycle"
        );
    }

    #[test]
    fn rebase_continues_after_highest_output() {
        let mut r = SeqRewriter::new(7);
        r.rewrite(40_000);
        r.rewrite(40_001);
        r.rebase();
        assert_eq!(r.rewrite(3).0, 9, "new source continues the line");
        assert_eq!(r.rewrite(4).0, 10);
    }

    #[test]
    fn skipped_packets_leave_no_gap_when_in_order() {
        let mut r = SeqRewriter::new(1000);
        assert_eq!(r.rewrite(5).0, 1000);
        r.skip(6);
        r.skip(7);
        assert_eq!(r.rewrite(8).0, 1001, "two dropped packets leave no hole");
        assert_eq!(r.rewrite(9).0, 1002);
        // Out of order (10 not yet seen): skipping 11 keeps a hole rather than risk a collision.
        r.skip(11);
        assert_eq!(r.rewrite(12).0, 1005);
        assert_eq!(r.rewrite(10).0, 1003, "the late packet keeps its own slot");
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut t = TimestampRewriter::new(u32::MAX - 10);
        assert_eq!(t.rewrite(5), u32::MAX - 5);
        assert_eq!(t.rewrite(11), 0);
        assert_eq!(t.rewrite(20), 9);
        t.align(1000, 3);
        assert_eq!(t.rewrite(1000), 3);
        assert_eq!(t.rewrite(997), 0);
        assert_eq!(t.rewrite(996), u32::MAX);
    }
}

//! Sliding replay window over 48-bit SRTP / 31-bit SRTCP packet indices (RFC 3711 §3.3.2).
//!
//! Owns only the bookkeeping of which recent indices were accepted. It must not decide whether a
//! packet is authentic: `check` is read-only so it can run before authentication, and `accept` is
//! called only after the packet authenticated, so forged packets never move the window.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::SrtpError;

/// How many indices behind the highest accepted one are still accepted once, out of order.
///
/// RFC 3711 asks for at least 64; libsrtp defaults to 128 and browsers configure 1024, because a
/// video keyframe burst reordered by the network easily spans a few hundred packets.
pub const REPLAY_WINDOW_SIZE: u64 = 1024;

const WORD_BITS: u64 = u64::BITS as u64;
/// One word more than the window: a window that does not start on a word boundary touches
/// `REPLAY_WINDOW_SIZE / 64 + 1` words.
const WORDS: usize = (REPLAY_WINDOW_SIZE / WORD_BITS) as usize + 1;

/// A ring-buffer bitmap (the scheme of RFC 6479): bit `index % 64` of word `(index / 64) % WORDS`
/// records `index`. Advancing only clears the words being reused, so sliding never shifts the
/// whole bitmap.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    highest: u64,
    bitmap: [u64; WORDS],
}

impl ReplayWindow {
    /// The window of a stream whose first authenticated packet had `first_index`.
    pub fn new(first_index: u64) -> Self {
        let mut window = Self {
            highest: first_index,
            bitmap: [0; WORDS],
        };
        window.mark(first_index);
        window
    }

    /// The highest index accepted so far; the ROC estimate of RFC 3711 §3.3.1 is relative to it.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` may still be accepted. Read-only so it can run before authentication.
    pub fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        if self.highest - index >= REPLAY_WINDOW_SIZE {
            return Err(SrtpError::Replayed);
        }
        let (slot, bit) = Self::position(index);
        match self.bitmap.get(slot) {
            Some(word) if word & bit == 0 => Ok(()),
            _ => Err(SrtpError::Replayed),
        }
    }

    /// Records an authenticated `index`, sliding the window forward if it is the new highest.
    /// The caller must have called `check` first; accepting an index outside the window is a no-op
    /// for the bitmap.
    pub fn accept(&mut self, index: u64) {
        if index > self.highest {
            let current_word = self.highest / WORD_BITS;
            let new_word = index / WORD_BITS;
            // Clear the words the window slides onto; after a jump of a whole window all are stale.
            let advance = (new_word - current_word).min(WORDS as u64);
            for step in 1..=advance {
                let slot = ((current_word + step) % WORDS as u64) as usize;
                if let Some(word) = self.bitmap.get_mut(slot) {
                    *word = 0;
                }
            }
            self.highest = index;
        } else if self.highest - index >= REPLAY_WINDOW_SIZE {
            return;
        }
        self.mark(index);
    }

    fn mark(&mut self, index: u64) {
        let (slot, bit) = Self::position(index);
        if let Some(word) = self.bitmap.get_mut(slot) {
            *word |= bit;
        }
    }

    fn position(index: u64) -> (usize, u64) {
        let slot = ((index / WORD_BITS) % WORDS as u64) as usize;
        (slot, 1u64 << (index % WORD_BITS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_index_is_already_seen() {
        let window = ReplayWindow::new(1000);
        assert_eq!(window.check(1000), Err(SrtpError::Replayed));
        assert_eq!(window.check(1001), Ok(()));
        assert_eq!(window.check(999), Ok(()));
    }

    #[test]
    fn each_index_is_accepted_once_even_out_of_order() {
        let mut window = ReplayWindow::new(0);
        for index in [5u64, 3, 4, 1, 2, 200, 100, 150] {
            assert_eq!(window.check(index), Ok(()), "index {index}");
            window.accept(index);
            assert_eq!(
                window.check(index),
                Err(SrtpError::Replayed),
                "index {index}"
            );
        }
        assert_eq!(window.highest(), 200);
    }

    #[test]
    fn indices_older_than_the_window_are_refused() {
        let mut window = ReplayWindow::new(0);
        window.accept(5000);
        assert_eq!(
            window.check(5000 - REPLAY_WINDOW_SIZE),
            Err(SrtpError::Replayed)
        );
        assert_eq!(window.check(5000 - REPLAY_WINDOW_SIZE + 1), Ok(()));
    }

    #[test]
    fn the_whole_window_is_usable_and_slides_without_stale_bits() {
        // Compare against a naive set-based model over a long pseudo-random walk.
        let mut window = ReplayWindow::new(0);
        let mut seen = std::collections::BTreeSet::from([0u64]);
        let mut highest = 0u64;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let jump = state % 2200;
            let index = (highest + jump).saturating_sub(1100);
            let model_ok =
                !seen.contains(&index) && (index > highest || highest - index < REPLAY_WINDOW_SIZE);
            assert_eq!(
                window.check(index).is_ok(),
                model_ok,
                "index {index} highest {highest}"
            );
            if model_ok {
                window.accept(index);
                seen.insert(index);
                highest = highest.max(index);
            }
        }
    }
}

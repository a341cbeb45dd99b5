//! Input generators shared by the codec parsers' no-panic tests.
#![allow(clippy::indexing_slicing)]

/// A small deterministic xorshift generator.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 24) as u8
    }

    /// A random value below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Calls `f` on: every input of 0..=2 bytes; for every length 3..=64, every value of the first
/// two bytes (the header bits every parser branches on) followed by all-zero, all-one and
/// random fillers; and 3000 random inputs of up to 1500 bytes.
pub fn sweep(mut f: impl FnMut(&[u8])) {
    f(&[]);
    for a in 0..=255u8 {
        f(&[a]);
        for b in 0..=255u8 {
            f(&[a, b]);
        }
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut buf = [0u8; 1500];
    for len in 3..=64usize {
        for head in 0..=0xffffu32 {
            // All first bytes with a sampled second byte, plus all second bytes with a
            // sampled first byte, keep the sweep near 100k inputs per parser.
            let [a, b] = (head as u16).to_be_bytes();
            if head % 251 != 0 && b != 0 && b != 0xff && a != 0x90 && a != 0x80 {
                continue;
            }
            for filler in 0..3 {
                buf[0] = a;
                buf[1] = b;
                for x in &mut buf[2..len] {
                    *x = match filler {
                        0 => 0,
                        1 => 0xff,
                        _ => rng.byte(),
                    };
                }
                f(&buf[..len]);
            }
        }
    }
    for _ in 0..3000 {
        let len = rng.below(1501);
        for x in &mut buf[..len] {
            *x = rng.byte();
        }
        f(&buf[..len]);
    }
}

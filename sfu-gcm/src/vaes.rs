//! AES-128-GCM in one pass per packet with VAES and VPCLMULQDQ on 512-bit vectors (Intel Ice
//! Lake and later, AMD Zen 4 and later).
//!
//! Why it exists: through aws-lc's one-shot AEAD call a 1200-byte SRTP packet cost ~200 ns, of
//! which ~85 ns was per call rather than per byte (a 300-byte GCM context zeroed and copied,
//! the IV block, the AAD and the length block each a separate GHASH call). Here the key
//! schedule and sixteen powers of H are expanded once per key, and each call is one function:
//! counters, AES rounds and GHASH of four blocks per instruction, a single reduction per 256
//! bytes, masked loads and stores for the tail.
//!
//! GHASH works on byte-reflected blocks, with H pre-multiplied by x so a carry-less product
//! needs no shift, and a two-step Montgomery-style folding by the constant
//! `0xc2000000_00000000` (x^63 + x^62 + x^57). This is the approach of Gueron and Kounavis
//! ("Intel Carry-Less Multiplication Instruction and its Usage for Computing the GCM Mode")
//! as refined in Eric Biggers' AVX10 GCM; the tests check it against aws-lc for every length.
//!
//! Only this module holds `unsafe`: the loads and stores through pointers, and calls into
//! `#[target_feature]` functions, which are sound because a [`Key`] is only ever built after
//! [`supported`] returned true.

#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, __m512i, _MM_PERM_BADC, _mm_add_epi64, _mm_aesenc_si128, _mm_aesenclast_si128,
    _mm_aeskeygenassist_si128, _mm_clmulepi64_si128, _mm_loadu_si128, _mm_set_epi8, _mm_set_epi64x,
    _mm_setzero_si128, _mm_shuffle_epi8, _mm_shuffle_epi32, _mm_slli_si128, _mm_srai_epi32,
    _mm_storeu_si128, _mm_ternarylogic_epi32, _mm_test_all_zeros, _mm_xor_si128,
    _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_xor_si256, _mm512_add_epi32,
    _mm512_aesenc_epi128, _mm512_aesenclast_epi128, _mm512_broadcast_i32x4, _mm512_castsi512_si128,
    _mm512_clmulepi64_epi128, _mm512_extracti64x4_epi64, _mm512_loadu_si512,
    _mm512_mask_storeu_epi8, _mm512_maskz_loadu_epi8, _mm512_maskz_loadu_epi64,
    _mm512_maskz_mov_epi8, _mm512_set_epi32, _mm512_setzero_si512, _mm512_shuffle_epi8,
    _mm512_shuffle_epi32, _mm512_storeu_si512, _mm512_ternarylogic_epi32, _mm512_xor_si512,
    _mm512_zextsi128_si512,
};

/// Bytes per main-loop step: sixteen blocks, four per vector, one GHASH reduction.
const STEP: usize = 256;
/// Powers of H kept: H^16 … H^1.
const POWERS: usize = 16;

/// Whether this CPU (and OS) runs the kernel. Checked once per key; `std` caches the answer.
pub fn supported() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("vaes")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
        && std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
}

/// An expanded AES-128-GCM key: the eleven round keys and H^16 … H^1 in GHASH's form (432
/// bytes; every SRTP session holds four).
pub struct Key {
    round_keys: [__m128i; 11],
    h_powers: [__m128i; POWERS],
}

impl Key {
    /// Expands `key`, or returns `None` when the CPU lacks the instructions.
    pub fn new(key: &[u8; 16]) -> Option<Self> {
        if !supported() {
            return None;
        }
        // SAFETY: `supported()` checked every feature `expand` is compiled for.
        Some(unsafe { expand(key) })
    }

    /// Encrypts `input` into `output` (equal lengths; the caller checks) and returns the tag.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], input: &[u8], output: &mut [u8]) -> [u8; 16] {
        let len = input.len().min(output.len());
        // SAFETY: a `Key` exists only where `supported()` held; both pointers are valid for
        // `len` bytes and `crypt` reads each chunk before it writes it.
        unsafe { crypt::<true>(self, nonce, aad, input.as_ptr(), output.as_mut_ptr(), len) }
    }

    /// Appends the encryption of `plaintext` and then the tag to `out`, with what `out`
    /// already holds as the AAD. The ciphertext is written straight into `out`'s spare
    /// capacity: no zero-fill first.
    pub fn seal_append(&self, nonce: &[u8; 12], plaintext: &[u8], out: &mut Vec<u8>) {
        let aad_len = out.len();
        out.reserve(plaintext.len() + 16);
        let base = out.as_mut_ptr();
        // SAFETY: a `Key` exists only where `supported()` held. `reserve` made room for
        // `aad_len + plaintext.len()` bytes and more; the AAD is the initialized prefix, read
        // through a shared slice that does not overlap the region written; `crypt` writes
        // every one of the `plaintext.len()` bytes after it (masked stores write only bytes
        // in range) and never reads them, and only then does `set_len` cover them.
        unsafe {
            let aad = std::slice::from_raw_parts(base.cast_const(), aad_len);
            let tag = crypt::<true>(
                self,
                nonce,
                aad,
                plaintext.as_ptr(),
                base.add(aad_len),
                plaintext.len(),
            );
            out.set_len(aad_len + plaintext.len());
            out.extend_from_slice(&tag);
        }
    }

    /// Encrypts `data` in place and returns the tag.
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let ptr = data.as_mut_ptr();
        // SAFETY: as in `seal`; source and destination are the same buffer, which `crypt`
        // allows (each 64-byte chunk is loaded before it is stored).
        unsafe { crypt::<true>(self, nonce, aad, ptr, ptr, data.len()) }
    }

    /// Decrypts `data` in place and returns the tag computed over the ciphertext it held.
    pub fn open_in_place(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let ptr = data.as_mut_ptr();
        // SAFETY: as in `seal_in_place`.
        unsafe { crypt::<false>(self, nonce, aad, ptr, ptr, data.len()) }
    }
}

impl Key {
    /// h_powers[index], H^(POWERS - index); zero past the table.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
    fn power(&self, index: usize) -> __m128i {
        self.h_powers
            .get(index)
            .copied()
            .unwrap_or(_mm_setzero_si128())
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: a `Key` exists only where `supported()` held.
        unsafe { wipe(self) };
        std::hint::black_box(&self.round_keys);
    }
}

/// Whether two tags are equal, without an early exit on the first differing byte.
pub fn tags_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    // SAFETY: both arrays are 16 bytes; `_mm_loadu_si128` has no alignment requirement and
    // SSE4.1 (`ptest`) is part of every x86-64 CPU that passes `supported()`, the only place
    // this is called from.
    unsafe { tags_equal_sse(a, b) }
}

#[target_feature(enable = "sse4.1")]
unsafe fn tags_equal_sse(a: &[u8; 16], b: &[u8; 16]) -> bool {
    // SAFETY: 16 readable bytes each.
    let (a, b) = unsafe {
        (
            _mm_loadu_si128(a.as_ptr().cast()),
            _mm_loadu_si128(b.as_ptr().cast()),
        )
    };
    let diff = _mm_xor_si128(a, b);
    _mm_test_all_zeros(diff, diff) == 1
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn wipe(key: &mut Key) {
    key.round_keys = [_mm_setzero_si128(); 11];
    key.h_powers = [_mm_setzero_si128(); POWERS];
}

/// Reverses the bytes of each 128-bit lane: GCM's big-endian blocks to GHASH's reflected form
/// and back.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn byte_reverse_128() -> __m128i {
    _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

/// The reduction constant x^63 + x^62 + x^57 in the high half of each lane (the low half, 1,
/// is the x^0 term of the whole polynomial and unused by the multiplications).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn gf_poly() -> __m512i {
    _mm512_broadcast_i32x4(_mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 1))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
unsafe fn expand(key: &[u8; 16]) -> Key {
    // SAFETY: 16 readable bytes.
    let k0 = unsafe { _mm_loadu_si128(key.as_ptr().cast()) };
    let mut round_keys = [k0; 11];
    macro_rules! round {
        ($i:literal, $rcon:literal) => {
            round_keys[$i] = next_round_key(
                round_keys[$i - 1],
                _mm_aeskeygenassist_si128::<$rcon>(round_keys[$i - 1]),
            );
        };
    }
    round!(1, 0x01);
    round!(2, 0x02);
    round!(3, 0x04);
    round!(4, 0x08);
    round!(5, 0x10);
    round!(6, 0x20);
    round!(7, 0x40);
    round!(8, 0x80);
    round!(9, 0x1b);
    round!(10, 0x36);

    let mut key = Key {
        round_keys,
        h_powers: [_mm_setzero_si128(); POWERS],
    };

    // H = AES_K(0^128), byte-reflected, then multiplied by x: a one-bit left shift of the
    // 128-bit value, folding a carried-out bit back with the polynomial. There is no 128-bit
    // shift, so each 64-bit half is doubled and the carry between halves put back by the XOR.
    let h = _mm_shuffle_epi8(encrypt_block(&key, _mm_setzero_si128()), byte_reverse_128());
    let carries = _mm_srai_epi32::<31>(_mm_shuffle_epi32::<0xd3>(h));
    let doubled = _mm_add_epi64(h, h);
    let poly_and_carry = _mm_set_epi64x(0xc200_0000_0000_0001_u64 as i64, 1);
    // doubled ^ (carries & poly_and_carry)
    let h1 = _mm_ternarylogic_epi32::<0x78>(doubled, carries, poly_and_carry);

    let h1_wide = _mm512_broadcast_i32x4(h1);
    let poly = gf_poly();
    let mut power = h1;
    for k in 1..=POWERS {
        // h_powers[POWERS - k] = H^k
        if let Some(slot) = key.h_powers.get_mut(POWERS - k) {
            *slot = power;
        }
        power = _mm512_castsi512_si128(gf_mul(_mm512_zextsi128_si512(power), h1_wide, poly));
    }
    key
}

/// One step of the AES-128 key schedule, given `assist = aeskeygenassist(prev, rcon)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn next_round_key(prev: __m128i, assist: __m128i) -> __m128i {
    let assist = _mm_shuffle_epi32::<0xff>(assist);
    let mut k = prev;
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    _mm_xor_si128(k, assist)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn encrypt_block(key: &Key, block: __m128i) -> __m128i {
    let [first, middle @ .., last] = &key.round_keys;
    let mut x = _mm_xor_si128(block, *first);
    for round_key in middle {
        x = _mm_aesenc_si128(x, *round_key);
    }
    _mm_aesenclast_si128(x, *last)
}

/// Four blocks through AES-128 with round keys already broadcast to every lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn encrypt4(round_keys: &[__m512i; 11], blocks: __m512i) -> __m512i {
    let [first, middle @ .., last] = round_keys;
    let mut x = _mm512_xor_si512(blocks, *first);
    for round_key in middle {
        x = _mm512_aesenc_epi128(x, *round_key);
    }
    _mm512_aesenclast_epi128(x, *last)
}

/// Unreduced carry-less products summed over several multiplications: one reduction for all.
struct Products {
    lo: __m512i,
    mid: __m512i,
    hi: __m512i,
}

impl Products {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
    fn new() -> Self {
        Self {
            lo: _mm512_setzero_si512(),
            mid: _mm512_setzero_si512(),
            hi: _mm512_setzero_si512(),
        }
    }

    /// Adds a·b (each 128-bit lane) to the sums.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
    fn add(&mut self, a: __m512i, b: __m512i) {
        self.lo = _mm512_xor_si512(self.lo, _mm512_clmulepi64_epi128::<0x00>(a, b));
        self.mid = _mm512_ternarylogic_epi32::<0x96>(
            self.mid,
            _mm512_clmulepi64_epi128::<0x01>(a, b),
            _mm512_clmulepi64_epi128::<0x10>(a, b),
        );
        self.hi = _mm512_xor_si512(self.hi, _mm512_clmulepi64_epi128::<0x11>(a, b));
    }

    /// The group's GHASH result: the lanes' products summed, plus the running state `x`
    /// times the power of the group's first block, reduced once. Only this last product waits
    /// on the previous group, so the chain from one group to the next is one 128-bit
    /// multiplication and one reduction; the wide products run ahead.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
    fn finish(self, x: __m128i, x_power: __m128i) -> __m128i {
        let lo = _mm_xor_si128(sum_lanes(self.lo), _mm_clmulepi64_si128::<0x00>(x, x_power));
        let mid = _mm_ternarylogic_epi32::<0x96>(
            sum_lanes(self.mid),
            _mm_clmulepi64_si128::<0x01>(x, x_power),
            _mm_clmulepi64_si128::<0x10>(x, x_power),
        );
        let hi = _mm_xor_si128(sum_lanes(self.hi), _mm_clmulepi64_si128::<0x11>(x, x_power));
        reduce_128(lo, mid, hi)
    }
}

/// [`reduce`] for one 128-bit lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn reduce_128(lo: __m128i, mid: __m128i, hi: __m128i) -> __m128i {
    let poly = _mm512_castsi512_si128(gf_poly());
    let t = _mm_clmulepi64_si128::<0x01>(poly, lo);
    let mid = _mm_ternarylogic_epi32::<0x96>(mid, t, _mm_shuffle_epi32::<0x4e>(lo));
    let t = _mm_clmulepi64_si128::<0x01>(poly, mid);
    _mm_ternarylogic_epi32::<0x96>(hi, t, _mm_shuffle_epi32::<0x4e>(mid))
}

/// Folds LO into MID and MID into HI, each with one multiplication by x^63 + x^62 + x^57 and a
/// swap of halves.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn reduce(lo: __m512i, mid: __m512i, hi: __m512i, poly: __m512i) -> __m512i {
    let t = _mm512_clmulepi64_epi128::<0x01>(poly, lo);
    let mid = _mm512_ternarylogic_epi32::<0x96>(mid, t, _mm512_shuffle_epi32::<_MM_PERM_BADC>(lo));
    let t = _mm512_clmulepi64_epi128::<0x01>(poly, mid);
    _mm512_ternarylogic_epi32::<0x96>(hi, t, _mm512_shuffle_epi32::<_MM_PERM_BADC>(mid))
}

/// a·b in GHASH's field, lane by lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn gf_mul(a: __m512i, b: __m512i, poly: __m512i) -> __m512i {
    let mut products = Products::new();
    products.add(a, b);
    reduce(products.lo, products.mid, products.hi, poly)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn sum_lanes(x: __m512i) -> __m128i {
    let halves = _mm256_xor_si256(
        _mm512_extracti64x4_epi64::<0>(x),
        _mm512_extracti64x4_epi64::<1>(x),
    );
    _mm_xor_si128(
        _mm256_castsi256_si128(halves),
        _mm256_extracti128_si256::<1>(halves),
    )
}

/// Loads up to four consecutive powers starting at `h_powers[index]`; lanes past the end of
/// the table are zero (they only ever meet zero blocks).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn load_powers(key: &Key, index: usize) -> __m512i {
    let available = POWERS.saturating_sub(index).min(4);
    // Two 64-bit elements a power.
    let mask = ((1u16 << (2 * available)) - 1) as u8;
    // SAFETY: the mask selects only the `available` powers inside the table (none when `index`
    // is past it, in which case the pointer is never dereferenced); masked-off elements are
    // not read.
    unsafe { _mm512_maskz_loadu_epi64(mask, key.h_powers.as_ptr().wrapping_add(index).cast()) }
}

/// Powers H^(16 - 4i) … H^(13 - 4i), `i < 4`: the main loop's, always whole.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
fn four_powers(key: &Key, i: usize) -> __m512i {
    match key.h_powers.get(4 * i..4 * i + 4) {
        // SAFETY: the slice is four powers, 64 readable bytes.
        Some(four) => unsafe { _mm512_loadu_si512(four.as_ptr().cast()) },
        None => _mm512_setzero_si512(),
    }
}

/// Adds `len` bytes at `data` (zero-padded to whole blocks) into the GHASH state `x`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
unsafe fn ghash(key: &Key, mut x: __m128i, data: *const u8, len: usize) -> __m128i {
    let reverse = _mm512_broadcast_i32x4(byte_reverse_128());
    let mut offset = 0;
    while len - offset > 0 {
        let chunk = (len - offset).min(STEP);
        let first_power = POWERS - chunk.div_ceil(16);
        let mut power = first_power;
        let mut products = Products::new();
        let end = offset + chunk;
        while offset < end {
            let n = (end - offset).min(64);
            // SAFETY: the mask covers only the `n` bytes in bounds; masked-off bytes are not
            // read.
            let bytes = unsafe { _mm512_maskz_loadu_epi8(byte_mask(n), data.add(offset).cast()) };
            products.add(_mm512_shuffle_epi8(bytes, reverse), load_powers(key, power));
            power += 4;
            offset += n;
        }
        x = products.finish(x, key.power(first_power));
    }
    x
}

/// A mask of the low `n` bytes, `n <= 64`.
#[inline]
fn byte_mask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// CTR encryption (or decryption) of `len` bytes from `src` to `dst` fused with GHASH over the
/// ciphertext; returns the tag. `src` may equal `dst`: every 64-byte chunk is loaded before it
/// is stored.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmulqdq")]
unsafe fn crypt<const ENCRYPT: bool>(
    key: &Key,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    let reverse_128 = byte_reverse_128();
    let reverse = _mm512_broadcast_i32x4(reverse_128);
    let mut round_keys = [_mm512_setzero_si512(); 11];
    for (wide, narrow) in round_keys.iter_mut().zip(&key.round_keys) {
        *wide = _mm512_broadcast_i32x4(*narrow);
    }

    // J0 = nonce || 00 00 00 01. Its encryption masks the tag; the data's counters start at 2.
    // Counters are kept byte-reflected, where the 32-bit big-endian counter is the lowest
    // lane dword and `vpaddd` increments it modulo 2^32, as GCM's inc32 does.
    let mut j0 = [0u8; 16];
    j0[..12].copy_from_slice(nonce);
    j0[15] = 1;
    // SAFETY: 16 readable bytes.
    let j0 = unsafe { _mm_loadu_si128(j0.as_ptr().cast()) };
    let tag_mask = encrypt_block(key, j0);
    let mut counters = _mm512_add_epi32(
        _mm512_broadcast_i32x4(_mm_shuffle_epi8(j0, reverse_128)),
        _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1),
    );
    let four = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);

    // SAFETY: `aad` is a valid slice.
    let mut x = unsafe { ghash(key, _mm_setzero_si128(), aad.as_ptr(), aad.len()) };

    let mut offset = 0;
    // Sixteen blocks a step: four vectors of counters through AES, XOR with the input, and the
    // sixteen ciphertext blocks multiplied by H^16 … H^1 with one reduction.
    while len - offset >= STEP {
        let mut keystream = [_mm512_setzero_si512(); 4];
        for stream in &mut keystream {
            *stream = encrypt4(&round_keys, _mm512_shuffle_epi8(counters, reverse));
            counters = _mm512_add_epi32(counters, four);
        }
        let mut products = Products::new();
        for (i, stream) in keystream.into_iter().enumerate() {
            let at = offset + 64 * i;
            // SAFETY: `at + 64 <= offset + STEP <= len`; the chunk is read before written.
            let input = unsafe { _mm512_loadu_si512(src.add(at).cast()) };
            let output = _mm512_xor_si512(input, stream);
            // SAFETY: as above.
            unsafe { _mm512_storeu_si512(dst.add(at).cast(), output) };
            let ciphertext = if ENCRYPT { output } else { input };
            products.add(
                _mm512_shuffle_epi8(ciphertext, reverse),
                four_powers(key, i),
            );
        }
        x = products.finish(x, key.power(0));
        offset += STEP;
    }

    // The tail: fewer than sixteen blocks, the last possibly partial, then the length block
    // (the bit lengths of AAD and ciphertext, big-endian, here reflected). Block j of k
    // multiplies H^(k - j), which sits at h_powers[POWERS - k + j]; lanes of a group of four
    // that run past the table load as zero, against zero blocks. The length block joins the
    // tail's group when there is room (k <= 16), else it is a group of its own.
    let lengths = _mm_set_epi64x((aad.len() as u64 * 8) as i64, (len as u64 * 8) as i64);
    let tail_blocks = (len - offset).div_ceil(16);
    let mut lengths_pending = true;
    if tail_blocks > 0 {
        let group = if tail_blocks < POWERS {
            lengths_pending = false;
            tail_blocks + 1
        } else {
            tail_blocks
        };
        let first_power = POWERS - group;
        let mut power = first_power;
        let mut products = Products::new();
        while offset < len {
            let n = (len - offset).min(64);
            let mask = byte_mask(n);
            let stream = encrypt4(&round_keys, _mm512_shuffle_epi8(counters, reverse));
            counters = _mm512_add_epi32(counters, four);
            // SAFETY: the mask covers the `n <= len - offset` bytes in bounds; masked-off
            // bytes are neither read nor written.
            let input = unsafe { _mm512_maskz_loadu_epi8(mask, src.add(offset).cast()) };
            let output = _mm512_xor_si512(input, stream);
            // SAFETY: as above.
            unsafe { _mm512_mask_storeu_epi8(dst.add(offset).cast(), mask, output) };
            let ciphertext = if ENCRYPT {
                _mm512_maskz_mov_epi8(mask, output)
            } else {
                input
            };
            products.add(
                _mm512_shuffle_epi8(ciphertext, reverse),
                load_powers(key, power),
            );
            power += 4;
            offset += n;
        }
        if !lengths_pending {
            products.add(
                _mm512_zextsi128_si512(lengths),
                _mm512_zextsi128_si512(key.power(POWERS - 1)),
            );
        }
        x = products.finish(x, key.power(first_power));
    }
    if lengths_pending {
        x = Products::new().finish(_mm_xor_si128(x, lengths), key.power(POWERS - 1));
    }
    let tag = _mm_xor_si128(_mm_shuffle_epi8(x, reverse_128), tag_mask);
    let mut out = [0u8; 16];
    // SAFETY: 16 writable bytes.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), tag) };
    out
}

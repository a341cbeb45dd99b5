//! The fast kernel against NIST's GCM vectors and against aws-lc for every length and alignment
//! a packet can have.

use proptest::prelude::*;
use sfu_gcm::{Aes128Gcm, GcmError, Implementation};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Deterministic bytes (xorshift64*), so a failure names its inputs by seed.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        self.fill(&mut out);
        out
    }

    fn vec(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.fill(&mut out);
        out
    }
}

fn cpu_has_vaes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("vpclmulqdq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[test]
fn the_kernel_is_chosen_where_the_cpu_has_it() {
    let key = Aes128Gcm::new(&[0; 16]).unwrap();
    let expected = if cpu_has_vaes() {
        Implementation::Vaes
    } else {
        Implementation::AwsLc
    };
    assert_eq!(key.implementation(), expected);
    assert_eq!(
        Aes128Gcm::with_aws_lc(&[0; 16]).unwrap().implementation(),
        Implementation::AwsLc
    );
}

/// NIST's "The Galois/Counter Mode of Operation" test cases 1–4 (AES-128, 96-bit IV).
#[test]
fn nist_test_cases_1_to_4() {
    let case3_plaintext = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                           1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    let case3_ciphertext = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                            21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985";
    let cases: [(&str, &str, &str, &str, &str, &str); 4] = [
        (
            "00000000000000000000000000000000",
            "000000000000000000000000",
            "",
            "",
            "",
            "58e2fccefa7e3061367f1d57a4e7455a",
        ),
        (
            "00000000000000000000000000000000",
            "000000000000000000000000",
            "00000000000000000000000000000000",
            "",
            "0388dace60b6a392f328c2b971b2fe78",
            "ab6e47d42cec13bdf53a67b21257bddf",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            case3_plaintext,
            "",
            case3_ciphertext,
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            &case3_plaintext[..120],
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            &case3_ciphertext[..120],
            "5bc94fbc3221a5db94fae95ae7121a47",
        ),
    ];
    for (i, (key, nonce, plaintext, aad, ciphertext, tag)) in cases.into_iter().enumerate() {
        let gcm = Aes128Gcm::new(&hex(key)).unwrap();
        let nonce: [u8; 12] = hex(nonce).try_into().unwrap();
        let mut data = hex(plaintext);
        let sealed_tag = gcm.seal_in_place(&nonce, &hex(aad), &mut data).unwrap();
        assert_eq!(data, hex(ciphertext), "case {} ciphertext", i + 1);
        assert_eq!(sealed_tag.to_vec(), hex(tag), "case {} tag", i + 1);
        gcm.open_in_place(&nonce, &hex(aad), &mut data, &sealed_tag)
            .unwrap();
        assert_eq!(data, hex(plaintext), "case {} opened", i + 1);
    }
}

/// Seals, out-of-place seals and opens `plaintext` with both implementations and checks they
/// agree byte for byte; then checks a flipped bit anywhere is refused.
fn agree(seed: u64, key: &[u8; 16], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) {
    let fast = Aes128Gcm::new(key).unwrap();
    let reference = Aes128Gcm::with_aws_lc(key).unwrap();

    let mut expected = plaintext.to_vec();
    let expected_tag = reference.seal_in_place(nonce, aad, &mut expected).unwrap();

    let mut in_place = plaintext.to_vec();
    let tag = fast.seal_in_place(nonce, aad, &mut in_place).unwrap();
    assert_eq!(
        in_place,
        expected,
        "seed {seed}: in-place ciphertext, len {}",
        plaintext.len()
    );
    assert_eq!(
        tag,
        expected_tag,
        "seed {seed}: in-place tag, len {}",
        plaintext.len()
    );

    // Out of place, into a buffer at an odd offset.
    let mut out = vec![0xa5; plaintext.len() + 3];
    let tag = fast.seal(nonce, aad, plaintext, &mut out[3..]).unwrap();
    assert_eq!(
        &out[3..],
        &expected[..],
        "seed {seed}: out-of-place ciphertext"
    );
    assert_eq!(
        &out[..3],
        &[0xa5; 3],
        "seed {seed}: wrote before the output"
    );
    assert_eq!(tag, expected_tag, "seed {seed}: out-of-place tag");

    // Appended after the AAD in a vector, with and without spare capacity.
    for spare in [0, 7] {
        let mut appended = Vec::with_capacity(aad.len() + spare);
        appended.extend_from_slice(aad);
        fast.seal_append(nonce, plaintext, &mut appended).unwrap();
        assert_eq!(&appended[..aad.len()], aad, "seed {seed}: the AAD was kept");
        assert_eq!(
            &appended[aad.len()..aad.len() + plaintext.len()],
            &expected[..],
            "seed {seed}: appended ciphertext"
        );
        assert_eq!(
            &appended[aad.len() + plaintext.len()..],
            &expected_tag[..],
            "seed {seed}: appended tag"
        );
        let mut reference_appended = aad.to_vec();
        reference
            .seal_append(nonce, plaintext, &mut reference_appended)
            .unwrap();
        assert_eq!(appended, reference_appended, "seed {seed}: aws-lc's append");
    }

    let mut opened = expected.clone();
    fast.open_in_place(nonce, aad, &mut opened, &expected_tag)
        .unwrap();
    assert_eq!(opened, plaintext, "seed {seed}: opened");

    let mut bad_tag = expected_tag;
    bad_tag[(seed % 16) as usize] ^= 1 << (seed % 8);
    let mut opened = expected.clone();
    assert_eq!(
        fast.open_in_place(nonce, aad, &mut opened, &bad_tag),
        Err(GcmError::TagMismatch),
        "seed {seed}: a flipped tag bit"
    );
    assert!(
        opened.iter().all(|&b| b == 0),
        "seed {seed}: plaintext left after a mismatch"
    );

    if !expected.is_empty() {
        let mut tampered = expected.clone();
        let at = (seed as usize) % tampered.len();
        tampered[at] ^= 0x80;
        assert_eq!(
            fast.open_in_place(nonce, aad, &mut tampered, &expected_tag),
            Err(GcmError::TagMismatch),
            "seed {seed}: a flipped ciphertext bit at {at}"
        );
    }
    if !aad.is_empty() {
        let mut aad = aad.to_vec();
        let at = (seed as usize) % aad.len();
        aad[at] ^= 0x01;
        let mut opened = expected.clone();
        assert_eq!(
            fast.open_in_place(nonce, &aad, &mut opened, &expected_tag),
            Err(GcmError::TagMismatch),
            "seed {seed}: a flipped AAD bit at {at}"
        );
    }
}

/// Every plaintext length from 0 to 1,600 bytes (every tail shape, one to six 256-byte steps),
/// with AAD lengths cycling through 0–80 (RTP headers with extensions, SRTCP's 8 and 12).
#[test]
fn every_packet_length_agrees_with_aws_lc() {
    let mut bytes = Bytes(0x5eed_0001);
    for len in 0..=1600usize {
        let key = bytes.array();
        let nonce = bytes.array();
        let aad = bytes.vec(len % 81);
        let plaintext = bytes.vec(len);
        agree(len as u64, &key, &nonce, &aad, &plaintext);
    }
}

/// Long AAD (several 256-byte GHASH steps) and long messages.
#[test]
fn long_inputs_agree_with_aws_lc() {
    let mut bytes = Bytes(0x5eed_0002);
    for (aad_len, len) in [
        (256, 0),
        (257, 16),
        (600, 1200),
        (1024, 4096),
        (0, 65_535),
        (33, 9_000),
    ] {
        let key = bytes.array();
        let nonce = bytes.array();
        let aad = bytes.vec(aad_len);
        let plaintext = bytes.vec(len);
        agree(
            (aad_len * 100_000 + len) as u64,
            &key,
            &nonce,
            &aad,
            &plaintext,
        );
    }
}

/// Input at every alignment within a cache line: the kernel's loads are unaligned.
#[test]
fn every_alignment_agrees_with_aws_lc() {
    let mut bytes = Bytes(0x5eed_0003);
    let key = bytes.array();
    let nonce = bytes.array();
    let aad = bytes.vec(12);
    let backing = bytes.vec(1300 + 64);
    for start in 0..64 {
        agree(
            start as u64,
            &key,
            &nonce,
            &aad,
            &backing[start..start + 1300],
        );
    }
}

#[test]
fn bad_arguments_are_typed_errors() {
    assert_eq!(Aes128Gcm::new(&[0; 15]).err(), Some(GcmError::BadKeyLength));
    assert_eq!(Aes128Gcm::new(&[0; 32]).err(), Some(GcmError::BadKeyLength));
    let gcm = Aes128Gcm::new(&[0; 16]).unwrap();
    let mut out = [0u8; 9];
    assert_eq!(
        gcm.seal(&[0; 12], &[], &[0; 10], &mut out),
        Err(GcmError::LengthMismatch)
    );
}

/// Many keys and nonces at the usual video packet size.
#[test]
fn many_keys_and_nonces_agree_at_packet_size() {
    let mut bytes = Bytes(0x5eed_0004);
    for seed in 0..2_000 {
        let key = bytes.array();
        let nonce = bytes.array();
        let aad = bytes.vec(12 + 4 * (seed as usize % 5));
        let plaintext = bytes.vec(1_150 + seed as usize % 50);
        agree(seed, &key, &nonce, &aad, &plaintext);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn random_inputs_agree_with_aws_lc(
        key in any::<[u8; 16]>(),
        nonce in any::<[u8; 12]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..300),
        plaintext in proptest::collection::vec(any::<u8>(), 0..3000),
        seed in any::<u64>(),
    ) {
        agree(seed, &key, &nonce, &aad, &plaintext);
    }
}

//! Bodies of the `cargo fuzz` targets in `fuzz/`, and the generator of their seed corpora.
//!
//! Each target is a `pub fn(&[u8])` here so that the libFuzzer binaries in `fuzz/fuzz_targets/`
//! are one-liners and the very same code runs every checked-in corpus and regression input as
//! an ordinary stable-Rust test (`sfu-core/tests/fuzz_corpus.rs`). A target returns normally on
//! any input the code under test rejects; it panics (through `assert!`, the fuzz oracle) only
//! when an invariant breaks: a round trip that does not reproduce what was parsed, a packet
//! that authenticates after a bit flip, a datagram the worker neither dropped nor accepted.
//! Whatever a target derives from its input (split points, id maps, keys of operations) is
//! taken from the input bytes or a generator seeded by them, so every run replays exactly.
//! [`TARGETS`] lists them by the folder names of `fuzz/corpus/` and `fuzz/regressions/`;
//! [`seeds`] builds the small, meaningful seed files of `fuzz/corpus/`. Compiled for tests and
//! with the `sim` feature only (the `transport_receive` target drives a [`SimNetwork`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use crate::TransportId;
use crate::client_hello::{
    ClientHelloAssembler, ClientHelloError, ClientHelloProgress, MAX_CLIENT_HELLO,
};
use crate::rtcp::{self, ReceptionReport, RtcpPart, RtcpReader};
use crate::rtp_packet::{self, ExtensionProfile, MAX_EXTENSIONS, OutgoingHeader, RtpHeader};
use crate::rtp_parameters::{
    RtcpFeedback, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtension,
    RtpParameters, extension_uri,
};
use crate::seq_manager::SeqRewriter;
use crate::sim_peer::{PeerId, SimNetwork, SimRng, write_rtp_packet};
use crate::srtp::{SrtpContext, SrtpError, SrtpProfile};
use crate::stun::{
    self, IceRole, IntegrityKey, StunClass, StunError, StunMessage, StunMethod, attr,
};
use crate::webrtc_transport::TransportStats;

/// A fuzz target: takes the raw fuzzer input, panics only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by its name in `fuzz/fuzz_targets/`, `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("stun", stun),
    ("rtp_header", rtp_header),
    ("rtcp_compound", rtcp_compound),
    ("client_hello", client_hello),
    ("srtp_unprotect", srtp_unprotect),
    ("seq_rewriter", seq_rewriter),
    ("transport_receive", transport_receive),
];

/// The ICE password the `stun` target verifies MESSAGE-INTEGRITY with: RFC 5769's, so that the
/// RFC's sample messages in the seed corpus authenticate.
pub const STUN_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
/// The SRTP master key the `srtp_unprotect` target keys every context with.
pub const SRTP_MASTER_KEY: [u8; 16] = *b"sfu-fuzz-master!";
/// The SRTP master salt (the first 12 octets for AEAD-AES-128-GCM, all 14 for AES-CM).
pub const SRTP_MASTER_SALT: [u8; 14] = *b"sfu-fuzz-salt!";

// ---------------------------------------------------------------------------------------------
// Input helpers
// ---------------------------------------------------------------------------------------------

/// Reads numbers and slices off the front of the input; past the end it yields zeros / empty.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at_checked(n).unwrap_or((self.data, &[]));
        self.data = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// FNV-1a: seeds the per-input generator so that derived choices replay with the input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Flips bit `seed % 8` of byte `(seed >> 3) % len`.
fn flip_bit(buf: &mut [u8], seed: u64) {
    let len = buf.len() as u64;
    if len == 0 {
        return;
    }
    let at = usize::try_from((seed >> 3) % len).unwrap_or(0);
    if let Some(b) = buf.get_mut(at) {
        *b ^= 1 << (seed % 8);
    }
}

// ---------------------------------------------------------------------------------------------
// stun
// ---------------------------------------------------------------------------------------------

/// `StunMessage::parse`, both verifications with [`STUN_PASSWORD`], then write → parse round
/// trips of what parsed: a success response (always), a binding request (when the input had a
/// USERNAME) and an error response (when it had an ERROR-CODE with a UTF-8 reason). What we
/// write must parse back to the same fields, verify, and stop verifying after any bit flip.
pub fn stun(data: &[u8]) {
    let Ok(msg) = StunMessage::parse(data) else {
        return;
    };
    assert_eq!(msg.raw(), data);
    assert!(data.len() >= stun::HEADER_LEN && data.len().is_multiple_of(4));
    assert!(msg.attribute_count() <= stun::MAX_ATTRIBUTES);
    let unknown = msg.unknown_comprehension_required();
    assert!(unknown.len() <= stun::MAX_REPORTED_UNKNOWN);
    assert!(unknown.iter().all(|t| attr::is_comprehension_required(*t)));
    if let Some(fp) = msg.fingerprint() {
        assert_eq!(
            fp.offset + 8,
            data.len(),
            "FINGERPRINT must be the last attribute"
        );
    }
    if let Some(mi) = msg.message_integrity_offset() {
        assert!(mi >= stun::HEADER_LEN && mi + 4 + stun::INTEGRITY_LEN <= data.len());
        if let Some(fp) = msg.fingerprint() {
            assert!(fp.offset >= mi + 4 + stun::INTEGRITY_LEN);
        }
    }
    if let Some(e) = msg.error_code() {
        assert!((300..=699).contains(&e.code));
    }
    let key = IntegrityKey::new(STUN_PASSWORD);
    let integrity = msg.verify_integrity_with(&key);
    assert_eq!(integrity, msg.verify_integrity(STUN_PASSWORD));
    assert!(!integrity || msg.message_integrity_offset().is_some());
    assert!(!integrity || !msg.verify_integrity(b"not-the-password"));
    assert!(!msg.verify_fingerprint() || msg.fingerprint().is_some());

    let seed = fnv(data);
    let tid = msg.transaction_id();
    let mut out = vec![0xEE; 3]; // writers must clear it

    // A success response to this transaction, for the address it carried or one made up.
    let mapped = msg.xor_mapped_address().unwrap_or_else(|| {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = tid;
        let ip = Ipv6Addr::from([a, b, c, d, e, f, g, h, i, j, k, l, a, b, c, d]);
        if seed & 1 == 0 {
            SocketAddr::from(([a, b, c, d], u16::from_be_bytes([e, f])))
        } else {
            SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be_bytes([g, h]), 0, 0))
        }
    });
    stun::write_binding_success(&tid, mapped, &key, &mut out);
    let written = check_written(&out, Some(&key), StunClass::SuccessResponse, &tid, seed);
    assert_eq!(written.xor_mapped_address(), Some(mapped));

    // A binding request with the attributes the input's request carried.
    if let Some(username) = msg.username() {
        let role = match (msg.ice_controlling(), msg.ice_controlled()) {
            (Some(t), _) => Some(IceRole::Controlling(t)),
            (None, Some(t)) => Some(IceRole::Controlled(t)),
            (None, None) => None,
        };
        let priority = msg.priority().unwrap_or(seed as u32);
        let result = stun::write_binding_request(
            &tid,
            username,
            &key,
            priority,
            role,
            msg.use_candidate(),
            &mut out,
        );
        match result {
            Ok(()) => {
                let w = check_written(&out, Some(&key), StunClass::Request, &tid, seed >> 8);
                assert!(w.is_binding_request());
                assert_eq!(w.username(), Some(username));
                assert_eq!(w.priority(), Some(priority));
                assert_eq!(w.use_candidate(), msg.use_candidate());
                let written_role = match (w.ice_controlling(), w.ice_controlled()) {
                    (Some(t), None) => Some(IceRole::Controlling(t)),
                    (None, Some(t)) => Some(IceRole::Controlled(t)),
                    (None, None) => None,
                    (Some(_), Some(_)) => panic!("the writer put both role attributes in"),
                };
                assert_eq!(written_role, role);
                // The writer's output is canonical: writing what it parses gives the same bytes.
                let mut again = Vec::new();
                let rewritten = stun::write_binding_request(
                    &tid,
                    username,
                    &key,
                    priority,
                    written_role,
                    w.use_candidate(),
                    &mut again,
                );
                assert!(rewritten.is_ok());
                assert_eq!(again, out);
            }
            Err(e) => {
                assert!(matches!(e, StunError::UsernameTooLong { .. }), "{e:?}");
                assert!(username.len() > stun::MAX_USERNAME_LEN);
                assert!(out.is_empty());
            }
        }
    }

    // An error response with the input's code, reason and unknown attributes.
    if let Some(error) = msg.error_code()
        && let Ok(reason) = std::str::from_utf8(error.reason)
    {
        let with_key = seed & 2 == 0;
        let result = stun::write_binding_error(
            &tid,
            error.code,
            reason,
            unknown,
            with_key.then_some(&key),
            &mut out,
        );
        match result {
            Ok(()) => {
                let k = with_key.then_some(&key);
                let w = check_written(&out, k, StunClass::ErrorResponse, &tid, seed >> 16);
                assert_eq!(w.error_code(), Some(error));
                assert!(w.unknown_comprehension_required().is_empty());
            }
            Err(e) => {
                assert!(matches!(e, StunError::ReasonTooLong { .. }), "{e:?}");
                assert!(reason.len() > stun::MAX_REASON_LEN);
                assert!(out.is_empty());
            }
        }
    }
}

/// Parses what a writer produced and checks the envelope: class, method, transaction id,
/// alignment, FINGERPRINT, MESSAGE-INTEGRITY exactly when keyed. Then flips one bit (chosen by
/// `seed`) and checks the copy no longer verifies.
fn check_written<'a>(
    out: &'a [u8],
    key: Option<&IntegrityKey>,
    class: StunClass,
    tid: &[u8; 12],
    seed: u64,
) -> StunMessage<'a> {
    let w = match StunMessage::parse(out) {
        Ok(w) => w,
        Err(e) => panic!("a message we wrote does not parse: {e:?}"),
    };
    assert_eq!(out.len() % 4, 0);
    assert_eq!(w.class(), class);
    assert_eq!(w.method(), StunMethod::BINDING);
    assert_eq!(&w.transaction_id(), tid);
    assert!(
        w.verify_fingerprint(),
        "a message we wrote fails its FINGERPRINT"
    );
    match key {
        Some(key) => assert!(
            w.verify_integrity_with(key),
            "a message we wrote fails MESSAGE-INTEGRITY"
        ),
        None => assert!(w.message_integrity_offset().is_none()),
    }
    let mut tampered = out.to_vec();
    flip_bit(&mut tampered, seed);
    if let Ok(t) = StunMessage::parse(&tampered) {
        // CRC-32 detects every single-bit error, and FINGERPRINT is always the last 8 bytes.
        assert!(
            !t.verify_fingerprint(),
            "FINGERPRINT still verifies after a bit flip"
        );
        if let Some(key) = key {
            assert!(!(t.verify_integrity_with(key) && t.verify_fingerprint()));
        }
    }
    w
}

// ---------------------------------------------------------------------------------------------
// rtp_header
// ---------------------------------------------------------------------------------------------

/// `RtpHeader::parse`, the lookup of every extension id, `payload_range`, then `write_header`
/// with an extension-id map (and maybe one extra element) derived from the input: the written
/// header must parse back with the same fields and exactly the mapped elements, in order, in
/// the one-byte form when they all fit it and the two-byte form otherwise.
pub fn rtp_header(data: &[u8]) {
    let Ok(h) = RtpHeader::parse(data) else {
        return;
    };
    assert!(h.header_len >= 12 && h.header_len <= data.len());
    assert_eq!(h.header_len % 4, 0);
    let first = data.first().copied().unwrap_or(0);
    assert_eq!(h.extension_profile.is_some(), first & 0x10 != 0);
    assert_eq!(h.has_padding, first & 0x20 != 0);
    let exts = h.extensions();
    assert!(exts.len() <= MAX_EXTENSIONS);
    // Offsets are u16: the claim "packets are at most 1500 bytes" holds for every datagram the
    // worker accepts; larger buffers are outside the parser's contract.
    let offsets_fit = data.len() <= usize::from(u16::MAX);
    if offsets_fit {
        for e in exts {
            let start = usize::from(e.offset);
            let end = start + usize::from(e.len);
            assert!(
                start >= 16 && end <= h.header_len,
                "{e:?} outside the extension block"
            );
            match h.extension_profile {
                Some(ExtensionProfile::OneByte) => {
                    assert!(
                        (1..=14).contains(&e.id) && (1..=16).contains(&e.len),
                        "{e:?}"
                    );
                }
                Some(ExtensionProfile::TwoByte) => assert!(e.id != 0 && e.len <= 255, "{e:?}"),
                Some(ExtensionProfile::Other) | None => panic!("elements without RFC 8285 block"),
            }
        }
        for id in 0..=255u8 {
            let value = h.extension(data, id);
            let expected = match exts.iter().find(|e| e.id == id) {
                Some(e) if id != 0 => {
                    data.get(usize::from(e.offset)..usize::from(e.offset) + usize::from(e.len))
                }
                _ => None,
            };
            assert_eq!(value, expected, "extension {id}");
        }
    }
    match h.payload_range(data) {
        Ok((start, end)) => {
            assert_eq!(start, h.header_len);
            assert!(start <= end && end <= data.len());
            let pad = if h.has_padding {
                usize::from(data.last().copied().unwrap_or(0))
            } else {
                0
            };
            assert_eq!(end, data.len() - pad);
        }
        Err(e) => assert!(h.has_padding, "payload_range failed without padding: {e:?}"),
    }
    if !offsets_fit {
        return;
    }

    // write_header round trip with a map derived from the input.
    let mut rng = SimRng::new(fnv(data));
    let narrow = rng.next_u32().is_multiple_of(2); // map into 1..=14 so the one-byte form is reachable
    let mut map = [None; 256];
    for slot in map.iter_mut().skip(1) {
        let r = rng.next_u32();
        *slot = match (r % 4, narrow) {
            (0, _) => None,
            (_, true) => Some(1 + ((r >> 8) % 14) as u8),
            (_, false) => Some(1 + ((r >> 8) % 255) as u8),
        };
    }
    let extra_value = data
        .get(..(rng.below(17) as usize).min(data.len()))
        .unwrap_or(&[]);
    let extra_id = if narrow {
        1 + rng.below(14) as u8
    } else {
        1 + rng.below(255) as u8
    };
    let extra: Vec<(u8, &[u8])> = if rng.next_u32().is_multiple_of(2) {
        vec![(extra_id, extra_value)]
    } else {
        Vec::new()
    };
    let outgoing = OutgoingHeader {
        marker: !h.marker,
        payload_type: h.payload_type ^ 0x01,
        sequence_number: h.sequence_number.wrapping_add(1),
        timestamp: h.timestamp.wrapping_add(3000),
        ssrc: h.ssrc ^ 0x5A5A_5A5A,
    };
    let mapping = |id: u8| map.get(usize::from(id)).copied().flatten();
    let mut out = vec![0xEE; 5]; // must be cleared
    let written_len = rtp_packet::write_header(&mut out, &outgoing, &h, data, mapping, &extra);
    assert_eq!(written_len, out.len());
    let w = match RtpHeader::parse(&out) {
        Ok(w) => w,
        Err(e) => panic!("a header we wrote does not parse: {e:?} {out:02x?}"),
    };
    assert_eq!(w.header_len, out.len());
    assert_eq!(w.marker, outgoing.marker);
    assert_eq!(w.payload_type, outgoing.payload_type & 0x7f);
    assert_eq!(w.sequence_number, outgoing.sequence_number);
    assert_eq!(w.timestamp, outgoing.timestamp);
    assert_eq!(w.ssrc, outgoing.ssrc);
    assert!(!w.has_padding);
    let expected: Vec<(u8, &[u8])> = exts
        .iter()
        .filter_map(|e| {
            let id = mapping(e.id)?;
            let value =
                data.get(usize::from(e.offset)..usize::from(e.offset) + usize::from(e.len))?;
            Some((id, value))
        })
        .chain(extra.iter().copied())
        .collect();
    let got: Vec<(u8, &[u8])> = w
        .extensions()
        .iter()
        .map(|e| {
            let value = out
                .get(usize::from(e.offset)..usize::from(e.offset) + usize::from(e.len))
                .unwrap_or(&[]);
            (e.id, value)
        })
        .collect();
    if expected.is_empty() {
        assert_eq!(w.extension_profile, None);
        assert_eq!(out.len(), 12);
    } else {
        let one_byte = expected
            .iter()
            .all(|(id, v)| (1..=14).contains(id) && (1..=16).contains(&v.len()));
        let profile = if one_byte {
            ExtensionProfile::OneByte
        } else {
            ExtensionProfile::TwoByte
        };
        assert_eq!(w.extension_profile, Some(profile));
        let kept = expected
            .get(..expected.len().min(MAX_EXTENSIONS))
            .unwrap_or(&[]);
        assert_eq!(got, kept, "extensions do not survive write_header");
    }
}

// ---------------------------------------------------------------------------------------------
// rtcp_compound
// ---------------------------------------------------------------------------------------------

/// `validate_compound` against `RtcpReader`, the report / FIR / NACK decoders, then every part
/// the writers can write (SR, RR, PLI, FIR, NACK) re-serialised and parsed back equal, and the
/// re-serialised compound validated as a whole.
pub fn rtcp_compound(data: &[u8]) {
    let valid = rtcp::validate_compound(data).is_ok();
    let parts: Vec<_> = RtcpReader::new(data).collect();
    assert!(
        parts.len() <= data.len() / 4 + 1,
        "the reader yields more parts than words"
    );
    match parts.iter().position(Result::is_err) {
        Some(i) => {
            assert_eq!(i + 1, parts.len(), "the reader goes on after an error");
            assert!(!valid);
        }
        None => assert_eq!(valid, !data.is_empty()),
    }
    let mut compound = Vec::new();
    let mut written_parts = 0usize;
    for part in parts.iter().flatten() {
        let mut one = Vec::new();
        match *part {
            RtcpPart::SenderReport {
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
                reports,
            } => {
                let decoded = decode_reports(reports);
                rtcp::write_sender_report(
                    &mut one,
                    ssrc,
                    ntp_time,
                    rtp_time,
                    packet_count,
                    octet_count,
                    &decoded,
                );
                let RtcpPart::SenderReport {
                    ssrc: s,
                    ntp_time: n,
                    rtp_time: r,
                    packet_count: p,
                    octet_count: o,
                    reports: blocks,
                } = single_part(&one)
                else {
                    panic!("a written SR parses as something else");
                };
                assert_eq!(
                    (s, n, r, p, o),
                    (ssrc, ntp_time, rtp_time, packet_count, octet_count)
                );
                assert_eq!(rtcp::reception_reports(blocks).collect::<Vec<_>>(), decoded);
            }
            RtcpPart::ReceiverReport { ssrc, reports } => {
                let decoded = decode_reports(reports);
                rtcp::write_receiver_report(&mut one, ssrc, &decoded);
                let RtcpPart::ReceiverReport {
                    ssrc: s,
                    reports: blocks,
                } = single_part(&one)
                else {
                    panic!("a written RR parses as something else");
                };
                assert_eq!(s, ssrc);
                assert_eq!(rtcp::reception_reports(blocks).collect::<Vec<_>>(), decoded);
            }
            RtcpPart::Pli {
                sender_ssrc,
                media_ssrc,
            } => {
                rtcp::write_pli(&mut one, sender_ssrc, media_ssrc);
                assert_eq!(single_part(&one), *part);
            }
            RtcpPart::Fir {
                sender_ssrc,
                entries,
            } => {
                let ssrcs: Vec<u32> = rtcp::fir_ssrcs(entries).collect();
                assert_eq!(ssrcs.len(), entries.len() / 8);
                for (entry, media_ssrc) in entries.chunks_exact(8).zip(&ssrcs) {
                    let sequence = entry.get(4).copied().unwrap_or(0);
                    let mut fir = Vec::new();
                    rtcp::write_fir(&mut fir, sender_ssrc, *media_ssrc, sequence);
                    let RtcpPart::Fir {
                        sender_ssrc: s,
                        entries: e,
                    } = single_part(&fir)
                    else {
                        panic!("a written FIR parses as something else");
                    };
                    assert_eq!(s, sender_ssrc);
                    assert_eq!(rtcp::fir_ssrcs(e).collect::<Vec<_>>(), [*media_ssrc]);
                    assert_eq!(e.get(4), Some(&sequence));
                    one.extend_from_slice(&fir);
                    written_parts += 1;
                }
            }
            RtcpPart::Nack {
                sender_ssrc,
                media_ssrc,
                fci,
            } => {
                let lost: Vec<u16> = rtcp::nacked_sequences(fci).collect();
                assert!(lost.len() <= 17 * (fci.len() / 4));
                rtcp::write_nack(&mut one, sender_ssrc, media_ssrc, &lost);
                let RtcpPart::Nack {
                    sender_ssrc: s,
                    media_ssrc: m,
                    fci: items,
                } = single_part(&one)
                else {
                    panic!("a written NACK parses as something else");
                };
                assert_eq!((s, m), (sender_ssrc, media_ssrc));
                assert!(
                    items.len() / 4 <= lost.len(),
                    "more FCI items than sequences"
                );
                let again: HashSet<u16> = rtcp::nacked_sequences(items).collect();
                assert_eq!(again, lost.iter().copied().collect::<HashSet<u16>>());
            }
            RtcpPart::Other { .. } => {}
        }
        if !one.is_empty() && !matches!(part, RtcpPart::Fir { .. }) {
            written_parts += 1;
        }
        compound.extend_from_slice(&one);
    }
    if written_parts > 0 {
        assert_eq!(rtcp::validate_compound(&compound), Ok(()));
        assert_eq!(RtcpReader::new(&compound).count(), written_parts);
    }
}

fn decode_reports(blocks: &[u8]) -> Vec<ReceptionReport> {
    assert_eq!(blocks.len() % 24, 0);
    let decoded: Vec<ReceptionReport> = rtcp::reception_reports(blocks).collect();
    assert_eq!(decoded.len() * 24, blocks.len());
    assert!(decoded.iter().all(|r| r.total_lost <= 0x7f_ffff));
    decoded
}

/// The only part of a packet a writer produced.
fn single_part(buf: &[u8]) -> RtcpPart<'_> {
    assert_eq!(
        rtcp::validate_compound(buf),
        Ok(()),
        "a written packet does not validate"
    );
    let mut reader = RtcpReader::new(buf);
    let part = match reader.next() {
        Some(Ok(part)) => part,
        other => panic!("a written packet does not read back: {other:?}"),
    };
    assert!(
        reader.next().is_none(),
        "a written packet reads as more than one part"
    );
    part
}

// ---------------------------------------------------------------------------------------------
// client_hello
// ---------------------------------------------------------------------------------------------

/// Counts what is formatted without keeping it.
struct CharCount(usize);

impl fmt::Write for CharCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// `ClientHelloAssembler::push` over the input split into up to 8 datagrams. Input layout:
/// `[n % 8] [n × u16 split points] [records…]`. After every push the assembler's state (as its
/// `Debug` form measures it) stays within what [`MAX_CLIENT_HELLO`] allows; a completed hello
/// offers at most `MAX_CLIENT_HELLO / 2` profiles and pushing the completing datagram again
/// gives the same answer.
pub fn client_hello(data: &[u8]) {
    let mut c = Cursor::new(data);
    let splits = usize::from(c.u8() % 8);
    let raw_points: Vec<u16> = (0..splits).map(|_| c.u16()).collect();
    let stream = c.rest();
    let mut points: Vec<usize> = raw_points
        .iter()
        .map(|p| usize::from(*p) % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    points.push(stream.len());

    let mut assembler = ClientHelloAssembler::default();
    let mut start = 0;
    for end in points {
        let datagram = stream.get(start..end).unwrap_or(&[]);
        start = end;
        let result = assembler.push(datagram);
        if datagram.is_empty() {
            assert_eq!(result, Err(ClientHelloError::NotClientHello));
        }
        // A message is at most MAX_CLIENT_HELLO bytes plus one flag per byte: in Debug form at
        // most "255, " and "false, " per byte, plus the field names.
        let mut size = CharCount(0);
        let _ = write!(size, "{assembler:?}");
        assert!(
            size.0 <= 12 * MAX_CLIENT_HELLO + 256,
            "assembler state grew to {} Debug chars",
            size.0
        );
        if let Ok(ClientHelloProgress::Complete(profiles)) = &result {
            assert!(profiles.len() <= MAX_CLIENT_HELLO / 2);
            assert_eq!(
                assembler.push(datagram),
                result,
                "completing datagram pushed again"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// srtp_unprotect
// ---------------------------------------------------------------------------------------------

/// An SRTP context keyed with [`SRTP_MASTER_KEY`] / [`SRTP_MASTER_SALT`] for `profile`.
pub fn srtp_context(profile: SrtpProfile) -> SrtpContext {
    let salt = SRTP_MASTER_SALT.get(..profile.salt_len()).unwrap_or(&[]);
    match SrtpContext::new(profile, &SRTP_MASTER_KEY, salt) {
        Ok(c) => c,
        Err(e) => panic!("fixed SRTP keys rejected: {e:?}"),
    }
}

/// For both profiles, with fixed keys: `unprotect_rtp` (header length from `RtpHeader::parse`,
/// else the first input byte) and `unprotect_rtcp` of the raw input — state only when it
/// authenticates, a replay refused — then protect → unprotect round trips of the input as
/// plaintext RTP (two packets, the second across a possible sequence wrap) and RTCP, and a
/// copy with one flipped bit that must not authenticate.
pub fn srtp_unprotect(data: &[u8]) {
    let header_len = match RtpHeader::parse(data) {
        Ok(h) => h.header_len,
        Err(_) => usize::from(data.first().copied().unwrap_or(0)),
    };
    let seed = fnv(data);
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let tag = profile.rtp_tag_len();

        // The raw input as SRTP.
        let mut inbound = srtp_context(profile);
        let mut buf = data.to_vec();
        match inbound.unprotect_rtp(&mut buf, header_len) {
            Ok(len) => {
                assert_eq!(len + tag, data.len());
                assert!(len >= header_len);
                assert_eq!(buf.get(..header_len), data.get(..header_len));
                assert_eq!(inbound.inbound_stream_count(), 1);
                let mut again = data.to_vec();
                assert_eq!(
                    inbound.unprotect_rtp(&mut again, header_len),
                    Err(SrtpError::Replayed)
                );
            }
            Err(_) => assert_eq!(
                inbound.inbound_stream_count(),
                0,
                "state from a rejected packet"
            ),
        }

        // The raw input as SRTCP.
        let mut inbound = srtp_context(profile);
        let mut buf = data.to_vec();
        match inbound.unprotect_rtcp(&mut buf) {
            Ok(len) => {
                assert_eq!(len + profile.rtcp_overhead(), data.len());
                assert_eq!(buf.get(..8), data.get(..8));
                assert_eq!(inbound.inbound_stream_count(), 1);
                let mut again = data.to_vec();
                assert_eq!(inbound.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
            }
            Err(_) => assert_eq!(
                inbound.inbound_stream_count(),
                0,
                "state from a rejected packet"
            ),
        }

        // The input as plaintext RTP: protect, tamper, unprotect, replay, next packet.
        if (12..=data.len()).contains(&header_len) {
            let mut outbound = srtp_context(profile);
            let mut packet = data.to_vec();
            let protected = outbound.protect_rtp(&mut packet, header_len, 0);
            assert_eq!(
                protected,
                Ok(()),
                "protect_rtp refused a well-formed packet"
            );
            assert_eq!(packet.len(), data.len() + tag);
            assert_eq!(
                packet.get(..header_len),
                data.get(..header_len),
                "header not in clear"
            );

            let mut inbound = srtp_context(profile);
            let mut tampered = packet.clone();
            flip_bit(&mut tampered, seed);
            assert!(
                inbound.unprotect_rtp(&mut tampered, header_len).is_err(),
                "bit flip authenticated"
            );
            assert_eq!(inbound.inbound_stream_count(), 0);

            let mut received = packet.clone();
            let len = inbound.unprotect_rtp(&mut received, header_len);
            assert_eq!(len, Ok(data.len()), "our own packet does not unprotect");
            assert_eq!(received.get(..data.len()), Some(data));
            let mut replay = packet.clone();
            assert_eq!(
                inbound.unprotect_rtp(&mut replay, header_len),
                Err(SrtpError::Replayed)
            );

            // The next packet of the stream, with the ROC the sender tracks across a wrap.
            let mut next = data.to_vec();
            let seq = u16::from_be_bytes([
                data.get(2).copied().unwrap_or(0),
                data.get(3).copied().unwrap_or(0),
            ]);
            let next_seq = seq.wrapping_add(1);
            if let Some(field) = next.get_mut(2..4) {
                field.copy_from_slice(&next_seq.to_be_bytes());
            }
            let roc = u32::from(next_seq == 0);
            assert_eq!(outbound.protect_rtp(&mut next, header_len, roc), Ok(()));
            let len = inbound.unprotect_rtp(&mut next, header_len);
            assert_eq!(
                len,
                Ok(data.len()),
                "the next packet (roc {roc}) does not unprotect"
            );
        }

        // The input as plaintext RTCP.
        if data.len() >= 8 {
            let mut outbound = srtp_context(profile);
            let mut packet = data.to_vec();
            assert_eq!(outbound.protect_rtcp(&mut packet), Ok(()));
            assert_eq!(packet.len(), data.len() + profile.rtcp_overhead());
            assert_eq!(packet.get(..8), data.get(..8));

            let mut inbound = srtp_context(profile);
            let mut tampered = packet.clone();
            flip_bit(&mut tampered, seed >> 16);
            assert!(
                inbound.unprotect_rtcp(&mut tampered).is_err(),
                "bit flip authenticated"
            );
            assert_eq!(inbound.inbound_stream_count(), 0);

            let mut received = packet.clone();
            assert_eq!(inbound.unprotect_rtcp(&mut received), Ok(data.len()));
            assert_eq!(received.get(..data.len()), Some(data));
            let mut replay = packet.clone();
            assert_eq!(
                inbound.unprotect_rtcp(&mut replay),
                Err(SrtpError::Replayed)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// seq_rewriter
// ---------------------------------------------------------------------------------------------

/// How many recent outputs the duplicate check of `seq_rewriter` remembers.
const SEQ_WINDOW: usize = 512;

/// A `SeqRewriter` driven by commands. Input layout: `[initial u16] [op…]` where an op byte's
/// low 3 bits select: 0 rebase, 1 absolute input (u16 follows), 2..=5 step forward by 1..=256
/// (u8 follows), 6 step by any u16 (follows), 7 step back by 1..=256 (u8 follows).
///
/// Always: between two rewrites without a rebase the output moves by exactly what the input
/// moved; after a rebase the output continues right after the highest one; the extended output
/// (ROC and sequence) never lands more than 2^15 from the highest; `highest_out` is the highest
/// extended output. While every input since each rebase was strictly increasing (by less than
/// 2^15), the extended output strictly increases: no duplicate in the recent window and the
/// ROC never decreases.
pub fn seq_rewriter(data: &[u8]) {
    let mut c = Cursor::new(data);
    let initial = c.u16();
    let mut r = SeqRewriter::new(initial);
    let mut pending_rebase = true;
    let mut last: Option<(u16, u16)> = None; // (input, output) of the previous rewrite
    let mut highest: Option<u64> = None; // extended, as the model tracks it
    let mut previous_ext: Option<u64> = None;
    let mut previous_roc: Option<u32> = None;
    let mut monotone = true;
    let mut last_input_since_rebase: Option<u16> = None;
    let mut window: VecDeque<(u64, u16)> = VecDeque::new();
    let mut input = initial.wrapping_mul(31);
    while !c.is_empty() {
        let op = c.u8();
        input = match op % 8 {
            0 => {
                r.rebase();
                pending_rebase = true;
                last_input_since_rebase = None;
                continue;
            }
            1 => c.u16(),
            2..=5 => input.wrapping_add(1 + u16::from(c.u8())),
            6 => input.wrapping_add(c.u16()),
            _ => input.wrapping_sub(1 + u16::from(c.u8())),
        };
        if let Some(prev) = last_input_since_rebase {
            let delta = input.wrapping_sub(prev);
            if delta == 0 || delta >= 0x8000 {
                monotone = false;
            }
        }
        last_input_since_rebase = Some(input);

        let (out, roc) = r.rewrite(input);
        let ext = (u64::from(roc.wrapping_add(1)) << 16) | u64::from(out);
        match (pending_rebase, highest, last) {
            (true, None, _) => assert_eq!(out, initial, "first output is not the initial one"),
            (true, Some(h), _) => {
                assert_eq!(ext, h + 1, "a rebased source does not continue the line");
            }
            (false, _, Some((last_in, last_out))) => assert_eq!(
                out.wrapping_sub(last_out),
                input.wrapping_sub(last_in),
                "output distance differs from input distance"
            ),
            (false, _, None) => unreachable!("a rewrite without rebase follows another rewrite"),
        }
        if let Some(h) = highest {
            assert!(
                ext.abs_diff(h) <= 0x8000,
                "extended output {ext:#x} too far from {h:#x}"
            );
        }
        let h = highest.map_or(ext, |h| h.max(ext));
        highest = Some(h);
        assert_eq!(r.highest_out(), Some(h as u16));
        if monotone {
            if let Some(p) = previous_ext {
                assert!(
                    ext > p,
                    "increasing inputs gave a non-increasing output {ext:#x} after {p:#x}"
                );
            }
            if let Some(p) = previous_roc {
                assert!(
                    roc >= p,
                    "ROC went back from {p} to {roc} on increasing inputs"
                );
            }
            while window.front().is_some_and(|(e, _)| ext - e >= 0x1_0000)
                || window.len() >= SEQ_WINDOW
            {
                window.pop_front();
            }
            assert!(
                window.iter().all(|(_, o)| *o != out),
                "duplicate output {out} in the window"
            );
            window.push_back((ext, out));
        }
        previous_ext = Some(ext);
        previous_roc = Some(roc);
        pending_rebase = false;
        last = Some((input, out));
    }
}

// ---------------------------------------------------------------------------------------------
// transport_receive
// ---------------------------------------------------------------------------------------------

/// The SSRC the publisher declares for its video stream.
pub const PRODUCER_SSRC: u32 = 0x1111_0001;
/// In RTCP the subscriber sends, this word is replaced by the consumer's (random) SSRC.
pub const CONSUMER_SSRC_PLACEHOLDER: u32 = 0xC0C0_C0C0;
/// Datagrams of one input the `transport_receive` target plays at most.
const MAX_DATAGRAMS: usize = 64;
const MID_ID: u8 = 1;
const RID_ID: u8 = 2;

fn worker_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3478))
}
fn publisher_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 50_000))
}
fn subscriber_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 3], 50_000))
}
fn stranger_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 9], 40_000))
}

fn vp8(payload_type: u8, rtx: u8) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "video/VP8".into(),
        payload_type,
        clock_rate: 90_000,
        channels: None,
        parameters: Vec::new(),
        rtcp_feedback: vec![
            RtcpFeedback::new("nack", ""),
            RtcpFeedback::new("nack", "pli"),
            RtcpFeedback::new("ccm", "fir"),
        ],
        rtx_payload_type: Some(rtx),
    }
}

fn extension(uri: &str, id: u8) -> RtpHeaderExtension {
    RtpHeaderExtension {
        uri: uri.into(),
        id,
    }
}

/// A worker with a publisher and a subscriber connected over ICE + DTLS on virtual time, one
/// VP8 producer (mid "0", SSRC [`PRODUCER_SSRC`]) and a consumer of it for the subscriber.
struct Room {
    net: SimNetwork,
    publisher: PeerId,
    subscriber: PeerId,
    transports: [TransportId; 2],
    consumer_ssrc: u32,
}

fn room() -> Room {
    let Ok(mut net) = SimNetwork::new(worker_addr()) else {
        panic!("worker setup failed");
    };
    let (Ok(publisher), Ok(subscriber)) = (
        net.add_peer(publisher_addr()),
        net.add_peer(subscriber_addr()),
    ) else {
        panic!("peer setup failed");
    };
    let router = net.worker_mut().create_router();
    let (Ok(pub_info), Ok(sub_info)) = (
        net.create_transport(publisher, router),
        net.create_transport(subscriber, router),
    ) else {
        panic!("transport setup failed");
    };
    let connecting = (
        net.connect(publisher, &pub_info),
        net.connect(subscriber, &sub_info),
    );
    assert!(connecting.0.is_ok() && connecting.1.is_ok());
    assert!(
        net.run_until_connected(&[publisher, subscriber], Duration::from_secs(10)),
        "the simulated peers did not connect"
    );
    let published = RtpParameters {
        mid: Some("0".into()),
        codecs: vec![vp8(96, 97)],
        header_extensions: vec![
            extension(extension_uri::MID, MID_ID),
            extension(extension_uri::RID, RID_ID),
            extension(extension_uri::VIDEO_ORIENTATION, 4),
        ],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(PRODUCER_SSRC),
            rtx_ssrc: Some(PRODUCER_SSRC + 1),
            ..RtpEncodingParameters::default()
        }],
        cname: Some("fuzz".into()),
    };
    let caps = RtpCapabilities {
        codecs: vec![vp8(100, 101)],
        header_extensions: vec![
            extension(extension_uri::MID, 3),
            extension(extension_uri::VIDEO_ORIENTATION, 5),
        ],
    };
    let now = net.now();
    let Ok(producer) = net.worker_mut().produce(pub_info.id, published) else {
        panic!("produce failed");
    };
    let consumed = net
        .worker_mut()
        .consume(now, sub_info.id, producer, &caps, Some("0".into()));
    let Some(consumer_ssrc) = consumed
        .ok()
        .and_then(|(_, p)| p.encodings.first().and_then(|e| e.ssrc))
    else {
        panic!("consume failed");
    };
    net.deliver();
    Room {
        net,
        publisher,
        subscriber,
        transports: [pub_info.id, sub_info.id],
        consumer_ssrc,
    }
}

/// Replaces every 4-aligned [`CONSUMER_SSRC_PLACEHOLDER`] word with `ssrc`.
fn substitute_ssrc(mut plaintext: Vec<u8>, ssrc: u32) -> Vec<u8> {
    for word in plaintext.chunks_exact_mut(4) {
        if word == CONSUMER_SSRC_PLACEHOLDER.to_be_bytes() {
            word.copy_from_slice(&ssrc.to_be_bytes());
        }
    }
    plaintext
}

/// Builds an RTP packet from `body` (`[sel] [seq u16] [ts u32] [ext…] [payload…]`) and has
/// the publisher protect it; `None` when the fields do not make a packet.
fn publisher_rtp(room: &mut Room, body: &[u8]) -> Option<Vec<u8>> {
    let mut b = Cursor::new(body);
    let sel = b.u8();
    let ssrc = match sel % 4 {
        0 => PRODUCER_SSRC,
        1 => PRODUCER_SSRC + 1,
        2 => room.consumer_ssrc,
        _ => b.u32(),
    };
    let payload_type = match (sel >> 2) % 4 {
        0 => 96,
        1 => 97,
        2 => 100,
        _ => b.u8() & 0x7f,
    };
    let marker = sel & 0x80 != 0;
    let sequence_number = b.u16();
    let timestamp = b.u32();
    let rid_len = usize::from(b.u8() % 17);
    let rid = b.take(rid_len);
    let other_id = b.u8();
    let other_len = usize::from(b.u8() % 20);
    let other = b.take(other_len);
    let extensions: Vec<(u8, &[u8])> = match (sel >> 4) % 4 {
        0 => Vec::new(),
        1 => vec![(MID_ID, b"0")],
        2 => vec![(MID_ID, b"0"), (RID_ID, rid)],
        _ => vec![(other_id, other)],
    };
    let payload = b.rest();
    let peer = room.net.peer_mut(room.publisher)?;
    peer.protect_rtp(
        ssrc,
        payload_type,
        sequence_number,
        timestamp,
        marker,
        &extensions,
        payload,
    )
    .ok()
}

/// What the worker had counted before a datagram.
struct Counters {
    drops: u64,
    transports: usize,
    stats: [Option<TransportStats>; 2],
}

fn counters(room: &Room) -> Counters {
    let w = room.net.worker();
    Counters {
        drops: w.drops().total(),
        transports: w.counts().0,
        stats: room.transports.map(|id| w.transport_stats(id)),
    }
}

/// Injects one datagram and checks it was accounted for exactly once: either dropped (one
/// reason counted) or accepted by the transport it reached (its `datagrams_in` grew, nothing
/// dropped). Returns `(dropped, accepted)`.
fn inject_checked(room: &mut Room, source: SocketAddr, datagram: &[u8]) -> (u64, u64) {
    let before = counters(room);
    room.net.inject(source, datagram);
    let after = counters(room);
    let dropped = after.drops - before.drops;
    assert!(
        dropped <= 1,
        "one datagram counted {dropped} drops: {datagram:02x?}"
    );
    if after.transports != before.transports {
        // A transport went away (its DTLS session failed or closed): its counters went with it.
        return (dropped, 1 - dropped);
    }
    let mut reached = 0;
    for (b, a) in before.stats.iter().zip(&after.stats) {
        if let (Some(b), Some(a)) = (b, a) {
            reached += a.datagrams_in - b.datagrams_in;
            assert!(a.rtp_in + a.rtcp_in - b.rtp_in - b.rtcp_in <= 1);
        }
    }
    assert!(reached <= 1, "one datagram reached {reached} transports");
    assert!(
        dropped == 1 || reached == 1,
        "a datagram from {source} was neither dropped nor accepted: {datagram:02x?}"
    );
    let first = datagram.first().copied();
    if datagram.len() > crate::worker::MAX_DATAGRAM || first.is_none() {
        assert_eq!(
            (dropped, reached),
            (1, 0),
            "an oversize or empty datagram got in"
        );
    }
    if source == stranger_addr() && !matches!(first, Some(0..=3)) {
        assert_eq!(
            (dropped, reached),
            (1, 0),
            "a stranger's non-STUN datagram got in"
        );
    }
    (dropped, u64::from(dropped == 0))
}

/// A connected publisher / subscriber pair on a worker (see [`SimNetwork`]); the input is a
/// list of `[tag] [len u16] [len bytes]` records (at most 64), each one datagram or action by
/// `tag % 8`: 0 raw from the publisher's validated tuple, 1 raw from a stranger, 2 RTP built
/// from the bytes and SRTP-protected by the publisher, 3 RTCP protected by the publisher,
/// 4 RTCP protected by the subscriber (with [`CONSUMER_SSRC_PLACEHOLDER`] replaced by the
/// consumer's SSRC), 5 raw from the subscriber, 6 advance virtual time by the first two bytes
/// in ms, 7 replay the last protected datagram. Every datagram must be dropped once or
/// accepted once, and no input may panic the worker or the peers.
pub fn transport_receive(data: &[u8]) {
    let mut room = room();
    let mut c = Cursor::new(data);
    let mut last_protected: Option<(SocketAddr, Vec<u8>)> = None;
    let (mut injected, mut dropped, mut accepted) = (0u64, 0u64, 0u64);
    for _ in 0..MAX_DATAGRAMS {
        if c.is_empty() {
            break;
        }
        let tag = c.u8();
        let len = usize::from(c.u16()) % 1600;
        let body = c.take(len);
        let (source, datagram) = match tag % 8 {
            0 => (publisher_addr(), body.to_vec()),
            1 => (stranger_addr(), body.to_vec()),
            2 => match publisher_rtp(&mut room, body) {
                Some(p) => (publisher_addr(), p),
                None => (publisher_addr(), body.to_vec()),
            },
            3 | 4 => {
                let (peer, addr, plaintext) = if tag % 8 == 3 {
                    (room.publisher, publisher_addr(), body.to_vec())
                } else {
                    let plaintext = substitute_ssrc(body.to_vec(), room.consumer_ssrc);
                    (room.subscriber, subscriber_addr(), plaintext)
                };
                let protected = room
                    .net
                    .peer_mut(peer)
                    .and_then(|p| p.protect_rtcp(&plaintext).ok());
                (addr, protected.unwrap_or(plaintext))
            }
            5 => (subscriber_addr(), body.to_vec()),
            6 => {
                let mut b = Cursor::new(body);
                room.net.advance(Duration::from_millis(u64::from(b.u16())));
                continue;
            }
            _ => match &last_protected {
                Some((addr, p)) => (*addr, p.clone()),
                None => (publisher_addr(), body.to_vec()),
            },
        };
        if matches!(tag % 8, 2..=4) {
            last_protected = Some((source, datagram.clone()));
        }
        let (d, a) = inject_checked(&mut room, source, &datagram);
        injected += 1;
        dropped += d;
        accepted += a;
        room.net.deliver();
    }
    assert_eq!(dropped + accepted, injected);
    // Whatever happened, the network keeps running.
    room.net.advance(Duration::from_millis(100));
}

// ---------------------------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------------------------

/// One seed file of `fuzz/corpus/<target>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The target (folder) name.
    pub target: &'static str,
    /// The file name.
    pub name: &'static str,
    /// The contents.
    pub bytes: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|d| match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        })
        .collect();
    digits
        .chunks_exact(2)
        .map(|p| (p.first().copied().unwrap_or(0) << 4) | p.get(1).copied().unwrap_or(0))
        .collect()
}

/// RFC 5769 §2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
/// MESSAGE-INTEGRITY and FINGERPRINT.
fn rfc5769_request() -> Vec<u8> {
    hex("0001 0058 2112a442 b7e7a701 bc34d686 fa87dfae
         8022 0010 5354554e 20746573 7420636c 69656e74
         0024 0004 6e0001ff
         8029 0008 932ff9b1 51263b36
         0006 0009 6576746a 3a683676 59202020
         0008 0014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
         8028 0004 e57a3bcf")
}

fn rtp_one_byte() -> Vec<u8> {
    let mid: (u8, &[u8]) = (MID_ID, b"0");
    let level: (u8, &[u8]) = (3, &[0x8a]);
    let orientation: (u8, &[u8]) = (4, &[0x01]);
    let payload = [0x90, 0x80, 0x12, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00];
    write_rtp_packet(
        PRODUCER_SSRC,
        96,
        4660,
        90_000,
        true,
        &[mid, level, orientation],
        &payload,
    )
    .map(|(p, _)| p)
    .unwrap_or_default()
}

fn rtp_two_byte() -> Vec<u8> {
    let long = [0x42; 20];
    let elements: [(u8, &[u8]); 3] = [(MID_ID, b"0"), (20, &long), (RID_ID, b"h")];
    write_rtp_packet(PRODUCER_SSRC, 96, 65_535, 1, false, &elements, b"payload")
        .map(|(p, _)| p)
        .unwrap_or_default()
}

/// Two-byte block with a zero-length element and padding bytes between elements.
fn rtp_two_byte_zero_len() -> Vec<u8> {
    let mut p = hex("90 60 0001 00000064 11110001  1000 0003  0700 00 0501 aa 0c02 bbcc 00");
    p.extend_from_slice(b"data");
    p
}

/// Two CSRCs, no extension, 3 bytes of padding.
fn rtp_csrc_padding() -> Vec<u8> {
    hex("a2 6f 0100 0000ea60 11110001 22220001 22220002  de ad be ef  00 00 03")
}

fn client_hello_body(profiles: &[u16]) -> Vec<u8> {
    let mut b = vec![0xfe, 0xfd];
    b.extend_from_slice(&[7; 32]); // random
    b.push(0); // session id
    b.push(0); // cookie
    b.extend_from_slice(&[0, 4, 0xc0, 0x2b, 0xc0, 0x2f]); // cipher suites
    b.extend_from_slice(&[1, 0]); // compression
    let mut exts = Vec::new();
    exts.extend_from_slice(&[0x00, 0x17, 0x00, 0x00]); // extended_master_secret
    exts.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]); // groups
    exts.extend_from_slice(&[0x00, 0x33, 0x01, 0x00]); // a 256-byte key share stand-in
    exts.extend_from_slice(&[0xaa; 256]);
    exts.extend_from_slice(&14u16.to_be_bytes()); // use_srtp
    exts.extend_from_slice(&((profiles.len() * 2 + 3) as u16).to_be_bytes());
    exts.extend_from_slice(&((profiles.len() * 2) as u16).to_be_bytes());
    for p in profiles {
        exts.extend_from_slice(&p.to_be_bytes());
    }
    exts.push(0); // no MKI
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend_from_slice(&exts);
    b
}

/// One DTLS handshake record carrying `body[offset..offset + len]` of a ClientHello.
fn client_hello_record(body: &[u8], offset: usize, len: usize, sequence: u8) -> Vec<u8> {
    let be24 = |v: usize| {
        let [_, a, b, c] = (v as u32).to_be_bytes();
        [a, b, c]
    };
    let mut hs = vec![1];
    hs.extend_from_slice(&be24(body.len()));
    hs.extend_from_slice(&[0, 0]); // message_seq
    hs.extend_from_slice(&be24(offset));
    hs.extend_from_slice(&be24(len));
    hs.extend_from_slice(body.get(offset..offset + len).unwrap_or(&[]));
    let mut r = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, sequence];
    r.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    r.extend_from_slice(&hs);
    r
}

/// The `client_hello` input: split points, then the records back to back.
fn client_hello_input(records: &[Vec<u8>]) -> Vec<u8> {
    let mut input = vec![records.len().saturating_sub(1) as u8];
    let mut at = 0usize;
    for r in records.iter().take(records.len().saturating_sub(1)) {
        at += r.len();
        input.extend_from_slice(&(at as u16).to_be_bytes());
    }
    for r in records {
        input.extend_from_slice(r);
    }
    input
}

fn protected_rtp(profile: SrtpProfile, packet: &[u8]) -> Vec<u8> {
    let header_len = RtpHeader::parse(packet).map_or(12, |h| h.header_len);
    let mut p = packet.to_vec();
    match srtp_context(profile).protect_rtp(&mut p, header_len, 0) {
        Ok(()) => p,
        Err(_) => Vec::new(),
    }
}

fn protected_rtcp(profile: SrtpProfile, packet: &[u8]) -> Vec<u8> {
    let mut p = packet.to_vec();
    match srtp_context(profile).protect_rtcp(&mut p) {
        Ok(()) => p,
        Err(_) => Vec::new(),
    }
}

fn report(ssrc: u32) -> ReceptionReport {
    ReceptionReport {
        ssrc,
        fraction_lost: 12,
        total_lost: 34,
        highest_sequence: 0x0001_1234,
        jitter: 56,
        last_sender_report: 0x1234_5678,
        delay_since_last_sender_report: 0x0001_0000,
    }
}

/// SR (one block) + RR (two blocks) + PLI + NACK.
fn rtcp_sr_rr_pli_nack() -> Vec<u8> {
    let mut p = Vec::new();
    rtcp::write_sender_report(
        &mut p,
        PRODUCER_SSRC,
        0xe8d4_a510_0000_0000,
        90_000,
        10,
        12_000,
        &[report(0xC0C0_C0C0)],
    );
    rtcp::write_receiver_report(
        &mut p,
        0x5151_0001,
        &[report(PRODUCER_SSRC), report(0x2222_0001)],
    );
    rtcp::write_pli(&mut p, 0x5151_0001, CONSUMER_SSRC_PLACEHOLDER);
    rtcp::write_nack(
        &mut p,
        0x5151_0001,
        CONSUMER_SSRC_PLACEHOLDER,
        &[100, 101, 103, 116, 117, 200],
    );
    p
}

/// RR + FIR + SDES + BYE, the BYE padded.
fn rtcp_rr_fir_sdes_bye() -> Vec<u8> {
    let mut p = Vec::new();
    rtcp::write_receiver_report(&mut p, 0x5151_0001, &[]);
    rtcp::write_fir(&mut p, 0x5151_0001, CONSUMER_SSRC_PLACEHOLDER, 7);
    // SDES: one chunk, CNAME "fuzz", end, padding to the word.
    p.extend_from_slice(&hex("81ca 0003 51510001 0104 66757a7a 0000"));
    // BYE with padding (P bit, 4 bytes of padding, the last one counting them).
    p.extend_from_slice(&hex("a1cb 0002 51510001 00000004"));
    p
}

/// The `transport_receive` record `[tag] [len u16] [body]`.
fn record(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![tag];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// `[sel] [seq] [ts] [rid len] [rid] [other id] [other len] [other]` + payload for tag 2.
fn publisher_rtp_body(sel: u8, seq: u16, rid: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut b = vec![sel];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&90_000u32.to_be_bytes());
    b.push(rid.len() as u8);
    b.extend_from_slice(rid);
    b.extend_from_slice(&[0, 0]); // no other extension
    b.extend_from_slice(payload);
    b
}

/// Every seed file of `fuzz/corpus/`, generated. `sfu-core/tests/fuzz_corpus.rs` checks the
/// checked-in files match (and rewrites them with `FUZZ_WRITE_SEEDS=1`).
pub fn seeds() -> Vec<Seed> {
    let seed = |target, name, bytes| Seed {
        target,
        name,
        bytes,
    };
    let mut out = Vec::new();

    // stun
    let key = IntegrityKey::new(STUN_PASSWORD);
    let tid = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];
    out.push(seed("stun", "rfc5769-request.bin", rfc5769_request()));
    out.push(seed(
        "stun",
        "rfc5769-ipv4-response.bin",
        hex("0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
             8022 000b 74657374 20766563 746f7220
             0020 0008 0001a147 e112a643
             0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             8028 0004 c07d4c96"),
    ));
    out.push(seed(
        "stun",
        "rfc5769-ipv6-response.bin",
        hex("0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
             8022 000b 74657374 20766563 746f7220
             0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
             0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
             8028 0004 c8fb0b4c"),
    ));
    let mut request = Vec::new();
    let written = stun::write_binding_request(
        &tid,
        b"sfuUfrag:peerUfrag",
        &key,
        0x7E7F_1EFF,
        Some(IceRole::Controlling(0x0102_0304_0506_0708)),
        true,
        &mut request,
    );
    if written.is_ok() {
        out.push(seed("stun", "ice-check-use-candidate.bin", request));
    }
    let mut error = Vec::new();
    if stun::write_binding_error(
        &tid,
        420,
        "Unknown Attribute",
        &[0x0031, 0x7fff],
        Some(&key),
        &mut error,
    )
    .is_ok()
    {
        out.push(seed("stun", "error-420-unknown-attributes.bin", error));
    }

    // rtp_header
    out.push(seed(
        "rtp_header",
        "one-byte-extensions.bin",
        rtp_one_byte(),
    ));
    out.push(seed(
        "rtp_header",
        "two-byte-extensions.bin",
        rtp_two_byte(),
    ));
    out.push(seed(
        "rtp_header",
        "two-byte-zero-length.bin",
        rtp_two_byte_zero_len(),
    ));
    out.push(seed("rtp_header", "csrc-padding.bin", rtp_csrc_padding()));

    // rtcp_compound
    out.push(seed(
        "rtcp_compound",
        "sr-rr-pli-nack.bin",
        rtcp_sr_rr_pli_nack(),
    ));
    out.push(seed(
        "rtcp_compound",
        "rr-fir-sdes-bye-padded.bin",
        rtcp_rr_fir_sdes_bye(),
    ));

    // client_hello
    let body = client_hello_body(&[0x0001, 0x0007]);
    let half = body.len() / 2;
    let first = client_hello_record(&body, 0, half, 0);
    let second = client_hello_record(&body, half, body.len() - half, 1);
    out.push(seed(
        "client_hello",
        "fragmented-two-datagrams.bin",
        client_hello_input(&[first.clone(), second.clone()]),
    ));
    out.push(seed(
        "client_hello",
        "fragmented-reversed.bin",
        client_hello_input(&[second, first]),
    ));
    let whole = client_hello_record(&body, 0, body.len(), 0);
    out.push(seed(
        "client_hello",
        "whole.bin",
        client_hello_input(&[whole]),
    ));
    let body = client_hello_body(&[0x0007]);
    let third = body.len() / 3;
    let parts = [
        client_hello_record(&body, 0, third + 10, 0),
        client_hello_record(&body, third, third, 1), // overlaps the first
        client_hello_record(&body, 2 * third, body.len() - 2 * third, 2),
    ];
    out.push(seed(
        "client_hello",
        "overlapping-three.bin",
        client_hello_input(&parts),
    ));

    // srtp_unprotect
    let plain = rtp_one_byte();
    let compound = rtcp_sr_rr_pli_nack();
    out.push(seed("srtp_unprotect", "plain-rtp.bin", plain.clone()));
    for (profile, rtp_name, rtcp_name) in [
        (SrtpProfile::AeadAes128Gcm, "gcm-rtp.bin", "gcm-rtcp.bin"),
        (
            SrtpProfile::Aes128CmHmacSha1_80,
            "aes-cm-rtp.bin",
            "aes-cm-rtcp.bin",
        ),
    ] {
        out.push(seed(
            "srtp_unprotect",
            rtp_name,
            protected_rtp(profile, &plain),
        ));
        out.push(seed(
            "srtp_unprotect",
            rtcp_name,
            protected_rtcp(profile, &compound),
        ));
    }

    // seq_rewriter: [initial] then ops (see `seq_rewriter`).
    let mut steady = vec![0xff, 0xf0];
    steady.extend(std::iter::repeat_n([2, 0], 40).flatten()); // +1 forty times: wraps the output
    out.push(seed("seq_rewriter", "steady-across-wrap.bin", steady));
    out.push(seed(
        "seq_rewriter",
        "reorder-and-rebase.bin",
        vec![
            0x00, 0x07, 1, 0x9c, 0x40, 2, 0, 2, 1, 7, 0, 2, 2, 0, 1, 0x00, 0x03, 2, 0, 6, 0x7f,
            0xff, 6, 0x80, 0x00,
        ],
    ));
    out.push(seed(
        "seq_rewriter",
        "big-forward-steps.bin",
        vec![
            0x12, 0x34, 6, 0x7f, 0xff, 6, 0x7f, 0xff, 6, 0x7f, 0xff, 0, 1, 0xff, 0xff, 6, 0x40,
            0x00,
        ],
    ));

    // transport_receive: records [tag] [len] [body] (see `transport_receive`).
    let mut media = Vec::new();
    media.extend(record(
        2,
        &publisher_rtp_body(0x10, 1000, b"", b"\x90\x80\x00\x01 keyframe"),
    ));
    media.extend(record(
        2,
        &publisher_rtp_body(0x20, 1001, b"h", b"\x90\x80\x00\x02 delta"),
    ));
    media.extend(record(7, b"")); // replay
    media.extend(record(4, &rtcp_sr_rr_pli_nack()));
    media.extend(record(3, &rtcp_rr_fir_sdes_bye()));
    media.extend(record(6, &[0x03, 0xe8])); // one second: reports go out
    out.push(seed("transport_receive", "media-and-feedback.bin", media));
    let mut strangers = Vec::new();
    strangers.extend(record(1, &rfc5769_request()));
    strangers.extend(record(
        1,
        &client_hello_record(&client_hello_body(&[7]), 0, 200, 0),
    ));
    strangers.extend(record(1, &rtp_one_byte()));
    strangers.extend(record(0, &rfc5769_request()));
    // A plaintext fatal handshake_failure alert (epoch 0) from the validated tuple.
    strangers.extend(record(
        0,
        &[21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40],
    ));
    // SRTP under the wrong keys from the subscriber, then an empty datagram.
    strangers.extend(record(
        5,
        &protected_rtp(SrtpProfile::AeadAes128Gcm, &rtp_one_byte()),
    ));
    strangers.extend(record(0, &[]));
    out.push(seed(
        "transport_receive",
        "strangers-and-garbage.bin",
        strangers,
    ));
    out
}

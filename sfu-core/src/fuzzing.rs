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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client_hello::{
    ClientHelloAssembler, ClientHelloError, ClientHelloProgress, MAX_CLIENT_HELLO,
};
use crate::codecs::dependency_descriptor::{
    self as dd, ChainDiffs, DependencyDescriptor, DependencyStructure, Dti, Dtis, FrameDiffs,
    FrameTemplate, Resolution,
};
use crate::codecs::vp8::Vp8Descriptor;
use crate::codecs::{Codec, PacketInfo, describe, fuzz_entry};
use crate::consumer::{Consumer, ConsumerPreferences};
use crate::layer_selector::{ALL_TEMPORAL_LAYERS, Decision, LayerSelector};
use crate::producer::ProducerStream;
use crate::retransmission_buffer::{MAX_RESENDS, RetransmissionBuffer, StoredPacket};
use crate::rtcp::{self, ReceptionReport, RtcpPart, RtcpReader};
use crate::rtp_packet::{self, ExtensionProfile, MAX_EXTENSIONS, OutgoingHeader, RtpHeader};
use crate::rtp_parameters::MediaKind;
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
use crate::{ConsumerId, ProducerId, TransportId};

/// A fuzz target: takes the raw fuzzer input, panics only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by its name in `fuzz/fuzz_targets/`, `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("stun", stun),
    ("rtp_header", rtp_header),
    ("rtcp_compound", rtcp_compound),
    ("client_hello", client_hello),
    ("srtp_unprotect", srtp_unprotect),
    ("gcm_kernel", gcm_kernel),
    ("seq_rewriter", seq_rewriter),
    ("transport_receive", transport_receive),
    ("vp8_descriptor", vp8_descriptor),
    ("vp8_rewriter", vp8_rewriter),
    ("h264_keyframe", h264_keyframe),
    ("vp9_descriptor", vp9_descriptor),
    ("av1_aggregation", av1_aggregation),
    ("dependency_descriptor", dependency_descriptor),
    ("rtx_history", rtx_history),
    ("layer_switcher", layer_switcher),
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
// gcm_kernel
// ---------------------------------------------------------------------------------------------

/// `key[16] || nonce[12] || aad_len[1] || aad || plaintext`: the AES-128-GCM SRTP seals with
/// (`sfu_gcm`, the VAES kernel where the CPU has it) must give aws-lc's ciphertext and tag (in
/// place, out of place, appended after the AAD), open its own output, and refuse that output with the tag's first bit flipped (leaving
/// zeros, not plaintext).
pub fn gcm_kernel(data: &[u8]) {
    use sfu_gcm::{Aes128Gcm, GcmError};
    let Some((key, rest)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Some((nonce, rest)) = rest.split_first_chunk::<12>() else {
        return;
    };
    let Some((&aad_len, rest)) = rest.split_first() else {
        return;
    };
    let (aad, plaintext) = rest.split_at(usize::from(aad_len).min(rest.len()));
    let (Ok(fast), Ok(reference)) = (Aes128Gcm::new(key), Aes128Gcm::with_aws_lc(key)) else {
        panic!("a 16-byte key was refused");
    };

    let mut expected = plaintext.to_vec();
    let expected_tag = reference.seal_in_place(nonce, aad, &mut expected);
    let mut sealed = plaintext.to_vec();
    let tag = fast.seal_in_place(nonce, aad, &mut sealed);
    assert_eq!(tag, expected_tag, "tag differs from aws-lc");
    assert_eq!(sealed, expected, "ciphertext differs from aws-lc");
    let Ok(tag) = tag else {
        return;
    };

    let mut out = vec![0u8; plaintext.len()];
    assert_eq!(fast.seal(nonce, aad, plaintext, &mut out), Ok(tag));
    assert_eq!(out, sealed, "out-of-place ciphertext differs");

    let mut appended = aad.to_vec();
    assert_eq!(fast.seal_append(nonce, plaintext, &mut appended), Ok(()));
    assert_eq!(appended.get(..aad.len()), Some(aad), "the AAD was not kept");
    assert_eq!(
        appended.get(aad.len()..aad.len() + plaintext.len()),
        Some(&sealed[..]),
        "appended ciphertext differs"
    );
    assert_eq!(
        appended.get(aad.len() + plaintext.len()..),
        Some(&tag[..]),
        "appended tag differs"
    );

    let mut opened = sealed.clone();
    assert_eq!(fast.open_in_place(nonce, aad, &mut opened, &tag), Ok(()));
    assert_eq!(opened, plaintext, "open did not give the plaintext back");

    let mut bad_tag = tag;
    bad_tag[0] ^= 0x80;
    let mut refused = sealed;
    assert_eq!(
        fast.open_in_place(nonce, aad, &mut refused, &bad_tag),
        Err(GcmError::TagMismatch)
    );
    assert!(
        refused.iter().all(|&b| b == 0),
        "plaintext left after a mismatch"
    );
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
// Codec parsers (bodies and oracles in `codecs::fuzz_entry`)
// ---------------------------------------------------------------------------------------------

/// The VP8 payload descriptor parser and keyframe header, then the picture-id rewriter on the
/// same bytes read as a script ([`fuzz_entry::vp8`]).
pub fn vp8_descriptor(data: &[u8]) {
    fuzz_entry::vp8(data);
}

/// The VP8 picture-id / TL0PICIDX rewriter driven by a script of sources, frames, losses,
/// reorders and drops ([`fuzz_entry::vp8_rewriter_script`] documents the layout).
pub fn vp8_rewriter(data: &[u8]) {
    fuzz_entry::vp8_rewriter_script(data);
}

/// H264 NAL unit types (single, STAP, MTAP, FU) and keyframe detection ([`fuzz_entry::h264`]).
pub fn h264_keyframe(data: &[u8]) {
    fuzz_entry::h264(data);
}

/// The VP9 payload descriptor, flexible and non-flexible, with a scalability structure
/// ([`fuzz_entry::vp9`]).
pub fn vp9_descriptor(data: &[u8]) {
    fuzz_entry::vp9(data);
}

/// The AV1 aggregation header and the OBU elements behind it ([`fuzz_entry::av1`]).
pub fn av1_aggregation(data: &[u8]) {
    fuzz_entry::av1(data);
}

/// The dependency descriptor extension: parse, write, parse again, alone and through a
/// reader ([`fuzz_entry::dependency_descriptor`]).
pub fn dependency_descriptor(data: &[u8]) {
    fuzz_entry::dependency_descriptor(data);
}

// ---------------------------------------------------------------------------------------------
// rtx_history
// ---------------------------------------------------------------------------------------------

/// The capacity `rtx_history` asks for, from its first byte: the byte itself below `0xF0`,
/// then `2^(b - 0xF0)` (1 to 16 384), and 40 000 (above the 32 768 clamp) for `0xFF`.
fn rtx_capacity_request(b: u8) -> usize {
    match b {
        0..=0xEF => usize::from(b),
        0xFF => 40_000,
        _ => 1 << (b - 0xF0),
    }
}

/// What the `rtx_history` model knows of one inserted packet.
struct RtxRecord {
    seq: u16,
    /// When it was (first) sent, as inserted.
    sent_at: Instant,
    resends: u8,
    last_resend: Option<Instant>,
}

/// A [`RetransmissionBuffer`] driven by a script. Input layout:
/// `[capacity byte] [max_age ms u16] [first sequence u16] [op…]`, each op byte by its low two
/// bits:
///
/// * `0`: insert the next sequence number (then skip `(op >> 2) & 3` numbers), sent
///   `(op >> 4) × 16` ms ago;
/// * `1`: insert a `u16` sequence number sent `u16` ms ago (both follow);
/// * `2`: `take_for_resend` at the current time with `min_interval = (op >> 3) × 8` ms, of
///   `next - 1 - u8` (bit 2 clear) or of a `u16` (bit 2 set);
/// * `3`: advance time by `(op >> 2) × 5` ms, or by a `u16` of ms when that is 0.
///
/// Invariants: the capacity is the request rounded up to a power of two (at most 32 768) and
/// never changes, whatever is inserted. Whatever comes back is the packet last stored under
/// the sequence number asked for, unchanged but for `resends` and `sent_at = now`; a packet
/// goes out at most [`MAX_RESENDS`] times, never twice within `min_interval`, and never
/// later than `max_age` after it was sent. And a packet still held (not overwritten in its
/// slot), young enough, not yet resent that often and not within `min_interval` is resent.
pub fn rtx_history(data: &[u8]) {
    let mut c = Cursor::new(data);
    let requested = rtx_capacity_request(c.u8());
    let max_age = Duration::from_millis(u64::from(c.u16()));
    let mut next_seq = c.u16();
    let mut buffer = RetransmissionBuffer::new(requested, max_age);
    let capacity = buffer.capacity();
    assert_eq!(
        capacity,
        requested.max(1).next_power_of_two().min(32_768),
        "capacity for a request of {requested}"
    );
    let origin = Instant::now();
    // Room before "now" for insertion ages of up to 65.5 s.
    let mut clock = Duration::from_secs(100);
    let mut records: Vec<RtxRecord> = Vec::new();
    // Slot (sequence number modulo capacity) -> the record stored there last.
    let mut slots: HashMap<usize, usize> = HashMap::new();
    let slot_of = |seq: u16| usize::from(seq) & (capacity - 1);
    while !c.is_empty() {
        let now = origin + clock;
        let op = c.u8();
        match op & 3 {
            0 | 1 => {
                let (seq, age) = if op & 3 == 0 {
                    let seq = next_seq;
                    next_seq = next_seq.wrapping_add(1 + u16::from((op >> 2) & 3));
                    (seq, u64::from(op >> 4) * 16)
                } else {
                    let seq = c.u16();
                    next_seq = seq.wrapping_add(1);
                    (seq, u64::from(c.u16()))
                };
                let sent_at = now - Duration::from_millis(age);
                let id = records.len() as u32;
                buffer.insert(StoredPacket {
                    stream: (id % 4) as u8,
                    source_sequence: id as u16,
                    vp8_ids: None,
                    first_sent_at: sent_at,
                    sequence_number: seq,
                    roc: id ^ 0xA5A5_A5A5,
                    timestamp: id,
                    payload_type: (id % 128) as u8,
                    marker: id % 2 == 1,
                    sent_at,
                    resends: 0,
                });
                slots.insert(slot_of(seq), records.len());
                records.push(RtxRecord {
                    seq,
                    sent_at,
                    resends: 0,
                    last_resend: None,
                });
            }
            2 => {
                let seq = if op & 4 == 0 {
                    next_seq.wrapping_sub(1 + u16::from(c.u8()))
                } else {
                    c.u16()
                };
                let min_interval = Duration::from_millis(u64::from(op >> 3) * 8);
                let held = slots
                    .get(&slot_of(seq))
                    .copied()
                    .filter(|&i| records.get(i).is_some_and(|r| r.seq == seq));
                let result = buffer.take_for_resend(seq, now, min_interval);
                let record = held.and_then(|i| records.get_mut(i));
                match (result, record) {
                    (Some(p), Some(r)) => {
                        assert_eq!(p.sequence_number, seq, "asked for {seq}, got another");
                        let id = held.unwrap_or(0) as u32;
                        assert_eq!(
                            p.timestamp, id,
                            "{seq}: not the packet stored last under it"
                        );
                        assert_eq!(
                            (p.stream, p.source_sequence),
                            ((id % 4) as u8, id as u16),
                            "{seq}: not the source stored last under it"
                        );
                        assert_eq!(
                            (p.roc, p.payload_type, p.marker),
                            (id ^ 0xA5A5_A5A5, (id % 128) as u8, id % 2 == 1)
                        );
                        assert!(
                            r.resends < MAX_RESENDS,
                            "{seq} resent more than {MAX_RESENDS} times"
                        );
                        if let Some(last) = r.last_resend {
                            let since = now.saturating_duration_since(last);
                            assert!(
                                since >= min_interval,
                                "{seq} resent again {since:?} after the previous resend \
                                 (min_interval {min_interval:?})"
                            );
                        }
                        let age = now.saturating_duration_since(r.sent_at);
                        assert!(
                            age <= max_age,
                            "{seq} resent {age:?} after it was sent (max_age {max_age:?}, \
                             resend #{})",
                            r.resends + 1
                        );
                        r.resends += 1;
                        r.last_resend = Some(now);
                        assert_eq!(p.resends, r.resends);
                        assert_eq!(p.sent_at, now);
                    }
                    (Some(p), None) => panic!(
                        "{seq} came back ({}), but no packet is held under it",
                        p.sequence_number
                    ),
                    (None, Some(r)) => {
                        let due = r.resends < MAX_RESENDS
                            && now.saturating_duration_since(r.sent_at) <= max_age
                            && r.last_resend
                                .is_none_or(|l| now.saturating_duration_since(l) >= min_interval);
                        assert!(!due, "{seq} is held and due, but was not resent");
                    }
                    (None, None) => {}
                }
            }
            _ => {
                let step = match u64::from(op >> 2) {
                    0 => u64::from(c.u16()),
                    n => n * 5,
                };
                clock += Duration::from_millis(step);
            }
        }
        assert_eq!(buffer.capacity(), capacity, "the buffer changed size");
    }
}

// ---------------------------------------------------------------------------------------------
// layer_switcher
// ---------------------------------------------------------------------------------------------

/// Streams the `layer_switcher` script addresses: the producer's three encodings and one it
/// does not have.
const SWITCHER_STREAMS: usize = 4;
/// The simulcast encodings of the `layer_switcher` producer (lowest quality first).
const SWITCHER_RIDS: [&str; 3] = ["q", "h", "f"];
/// The consumer's SSRC and RTX SSRC in `layer_switcher`.
const SWITCHER_SSRC: u32 = 0x5EED_0001;
const SWITCHER_RTX_SSRC: u32 = 0x5EED_0002;
/// Payload types: the publisher's VP8, the subscriber's VP8 and RTX.
const SWITCHER_PT_IN: u8 = 96;
const SWITCHER_PT_OUT: u8 = 100;
const SWITCHER_PT_RTX: u8 = 101;
/// Outputs older than this are not compared for timestamp order (RTP timestamps cannot tell
/// a gap of hours from going back).
const SWITCHER_TS_HORIZON: Duration = Duration::from_secs(3600);

/// A [`LayerSelector`] next to a model of what its documentation promises, checked at every
/// call: a switch (`Forward { switched: true }`) exactly at the first keyframe start of the
/// target while it is not current; every other packet of a stream that is not current is
/// `Ignore`; in the current stream, a packet above the current temporal layer is
/// `DropInStream` unless it starts a layer-sync frame within the maximum (the layer then goes
/// up to it), and everything else is forwarded. The layer starts at the maximum at a switch
/// and goes down at once when the maximum does.
struct SelectorModel {
    selector: LayerSelector,
    current: Option<usize>,
    target: Option<usize>,
    max_temporal: u8,
    level: u8,
    name: &'static str,
}

impl SelectorModel {
    fn new(name: &'static str) -> Self {
        Self {
            selector: LayerSelector::new(),
            current: None,
            target: None,
            max_temporal: ALL_TEMPORAL_LAYERS,
            level: ALL_TEMPORAL_LAYERS,
            name,
        }
    }

    fn needs_keyframe(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    fn check_state(&self) {
        let name = self.name;
        assert_eq!(
            self.selector.current(),
            self.current,
            "{name}: current stream"
        );
        assert_eq!(self.selector.target(), self.target, "{name}: target stream");
        assert_eq!(
            self.selector.needs_keyframe(),
            self.needs_keyframe(),
            "{name}: needs_keyframe"
        );
    }

    fn set_target(&mut self, target: Option<usize>) -> bool {
        let needs = self.selector.set_target(target);
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
        assert_eq!(
            needs,
            self.needs_keyframe(),
            "{}: set_target({target:?})",
            self.name
        );
        self.check_state();
        needs
    }

    fn set_max_temporal(&mut self, max: u8) {
        self.selector.set_max_temporal(max);
        self.max_temporal = max;
        self.level = self.level.min(max);
        self.check_state();
    }

    fn reset(&mut self) {
        self.selector.reset();
        self.current = None;
        self.check_state();
    }

    fn packet(&mut self, stream: usize, info: Option<&PacketInfo>) -> Decision {
        let decision = self.selector.on_packet(stream, info);
        let name = self.name;
        let not_middle = info.is_some_and(|i| i.start_of_frame != Some(false));
        let keyframe_start = not_middle && info.is_some_and(|i| i.keyframe);
        let sync_start = not_middle && info.is_some_and(|i| i.layer_sync);
        let tid = info.and_then(|i| i.temporal_id);
        if Some(stream) == self.target && self.current != self.target && keyframe_start {
            assert_eq!(
                decision,
                Decision::Forward { switched: true },
                "{name}: keyframe start of target {stream} did not switch ({info:?})"
            );
            self.current = Some(stream);
            self.level = self.max_temporal;
        } else if Some(stream) != self.current {
            assert_eq!(
                decision,
                Decision::Ignore,
                "{name}: packet of stream {stream} while on {:?} (target {:?}): {info:?}",
                self.current,
                self.target
            );
        } else {
            match tid {
                Some(t) if t > self.level => {
                    if sync_start && t <= self.max_temporal {
                        assert_eq!(
                            decision,
                            Decision::Forward { switched: false },
                            "{name}: sync start of layer {t} (at {}, max {}) not forwarded",
                            self.level,
                            self.max_temporal
                        );
                        self.level = t;
                    } else {
                        assert_eq!(
                            decision,
                            Decision::DropInStream,
                            "{name}: layer {t} above {} (max {}) without a sync start: {info:?}",
                            self.level,
                            self.max_temporal
                        );
                    }
                }
                _ => assert_eq!(
                    decision,
                    Decision::Forward { switched: false },
                    "{name}: packet of the current stream at layer {tid:?} (at {}) not \
                     forwarded: {info:?}",
                    self.level
                ),
            }
        }
        self.check_state();
        decision
    }
}

/// The harness's view of one input stream of `layer_switcher`.
#[derive(Default)]
struct ScriptStream {
    seq: u16,
    timestamp: u32,
    picture_id: u16,
    tl0: u8,
    /// The frame being sent: (keyframe, temporal id, layer sync).
    frame: Option<(bool, u8, bool)>,
    /// Recent packets, for replays: (sequence number, timestamp, payload).
    recent: VecDeque<(u16, u32, Vec<u8>)>,
}

/// What the consumer sent under one output sequence number.
struct SentCopy {
    payload: Vec<u8>,
    timestamp: u32,
    marker: bool,
    roc: u32,
}

/// A simulcast VP8 consumer (three encodings, NACK, RTX when `rtx`), as the worker builds it.
fn switcher_consumer(rtx: bool, initial_sequence: u16, timestamp_offset: u32) -> Consumer {
    let mut subscriber_codec = vp8(SWITCHER_PT_OUT, SWITCHER_PT_RTX);
    if !rtx {
        subscriber_codec.rtx_payload_type = None;
    }
    let producer = RtpParameters {
        mid: Some("v".into()),
        codecs: vec![vp8(SWITCHER_PT_IN, 97)],
        header_extensions: vec![
            extension(extension_uri::MID, MID_ID),
            extension(extension_uri::RID, RID_ID),
        ],
        encodings: SWITCHER_RIDS
            .iter()
            .zip(0u32..)
            .map(|(rid, i)| RtpEncodingParameters {
                ssrc: Some(0x2222_0000 + i),
                rid: Some((*rid).into()),
                ..RtpEncodingParameters::default()
            })
            .collect(),
        cname: Some("fuzz".into()),
    };
    let caps = RtpCapabilities {
        codecs: vec![subscriber_codec],
        header_extensions: vec![extension(extension_uri::MID, 3)],
    };
    let Ok(parameters) =
        producer.for_consumer(&caps, Some("1".into()), SWITCHER_SSRC, SWITCHER_RTX_SSRC)
    else {
        panic!("simulcast consumer parameters refused");
    };
    Consumer::new(
        ConsumerId(1),
        TransportId(1),
        ProducerId(1),
        MediaKind::Video,
        &producer,
        parameters,
        initial_sequence,
        timestamp_offset,
    )
}

/// A VP8 payload of the harness: descriptor with `S`, a 15-bit picture id, TL0PICIDX, `TID`
/// and `Y`, then a keyframe header, a delta frame header, or (not a frame start) more data.
fn switcher_vp8(start: bool, picture_id: u16, tl0: u8, frame: (bool, u8, bool)) -> Vec<u8> {
    let (keyframe, tid, sync) = frame;
    let mut p = vec![if start { 0x90 } else { 0x80 }, 0xe0];
    p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
    p.push(tl0);
    p.push((tid << 6) | if sync { 0x20 } else { 0 });
    if !start {
        p.extend_from_slice(&[0xab, 0xcd, 0xef]);
    } else if keyframe {
        // A 640x480 keyframe header.
        p.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    } else {
        p.extend_from_slice(&[0x31, 0x10, 0x00]);
    }
    p
}

/// The `layer_switcher` harness: two selector models and a consumer driven in step.
struct Switcher {
    /// Fed the packet fields of the script as they are.
    raw: SelectorModel,
    /// Fed what `codecs::describe` reads from the payloads, like the consumer's own selector.
    shadow: SelectorModel,
    consumer: Consumer,
    /// The producer side's streams: what retransmissions take their packets from.
    producer_streams: Vec<ProducerStream>,
    rtx: bool,
    streams: Vec<ScriptStream>,
    now: Instant,
    /// Every payload so far was built by the harness and nothing was replayed.
    clean: bool,
    /// Every stream's inputs so far were strictly increasing.
    monotone: bool,
    /// No input was skipped (lost).
    lossless: bool,
    /// The last output: extended sequence number, timestamp, when.
    last_out: Option<(u64, u32, Instant)>,
    sent: HashMap<u16, SentCopy>,
    sent_order: VecDeque<u16>,
    last_rtx_seq: Option<u16>,
}

impl Switcher {
    fn set_target(&mut self, target: Option<usize>) {
        self.raw.set_target(target);
        let needs = self.consumer.set_target_stream(target);
        let shadow_needs = if self.shadow.target == target {
            self.shadow.needs_keyframe()
        } else {
            self.shadow.set_target(target)
        };
        assert_eq!(
            needs, shadow_needs,
            "consumer: set_target_stream({target:?})"
        );
        self.check_consumer_state();
    }

    fn set_max_temporal(&mut self, max: u8) {
        self.raw.set_max_temporal(max);
        self.shadow.set_max_temporal(max);
        self.consumer.set_preferences(ConsumerPreferences {
            max_temporal: (max != ALL_TEMPORAL_LAYERS).then_some(max),
            ..ConsumerPreferences::default()
        });
    }

    fn reset(&mut self) {
        self.raw.reset();
        self.shadow.reset();
        self.consumer.rebase();
        self.check_consumer_state();
    }

    fn check_consumer_state(&self) {
        assert_eq!(self.consumer.current_stream(), self.shadow.current);
        let awaited = self
            .shadow
            .needs_keyframe()
            .then_some(self.shadow.target)
            .flatten();
        assert_eq!(self.consumer.awaited_stream(), awaited);
    }

    /// The next packet of `stream` from the script: a harness VP8 payload.
    fn script_packet(&mut self, stream: usize, keyframe: bool, start: bool, tid: u8, sync: bool) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let frame = match s.frame {
            Some(frame) if !start => frame,
            previous => {
                if previous.is_some() {
                    s.picture_id = s.picture_id.wrapping_add(1) & 0x7fff;
                    s.timestamp = s.timestamp.wrapping_add(3000);
                    if tid == 0 {
                        s.tl0 = s.tl0.wrapping_add(1);
                    }
                }
                (keyframe, tid, sync)
            }
        };
        s.frame = Some(frame);
        let payload = switcher_vp8(start, s.picture_id, s.tl0, frame);
        let info = PacketInfo {
            keyframe,
            temporal_id: Some(tid),
            spatial_id: None,
            layer_sync: sync,
            start_of_frame: Some(start),
            end_of_frame: None,
        };
        self.next_packet(stream, Some(info), payload);
    }

    /// The next packet of `stream` (its next sequence number, its current timestamp).
    fn next_packet(&mut self, stream: usize, raw_info: Option<PacketInfo>, payload: Vec<u8>) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let (seq, timestamp) = (s.seq, s.timestamp);
        s.seq = s.seq.wrapping_add(1);
        if s.recent.len() >= 16 {
            s.recent.pop_front();
        }
        s.recent.push_back((seq, timestamp, payload.clone()));
        self.packet(stream, raw_info, seq, timestamp, &payload);
    }

    /// One packet through the raw model, the shadow model and the consumer.
    fn packet(
        &mut self,
        stream: usize,
        raw_info: Option<PacketInfo>,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        self.raw.packet(stream, raw_info.as_ref());
        let info = describe(Codec::Vp8, payload);
        let decision = self.shadow.packet(stream, info.as_ref());
        let ssrc = 0x2222_0000 + stream as u32;
        let marker = info.is_some_and(|i| i.keyframe);
        let mut bytes = vec![0x80, SWITCHER_PT_IN | if marker { 0x80 } else { 0 }];
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&ssrc.to_be_bytes());
        bytes.extend_from_slice(payload);
        let Ok(header) = RtpHeader::parse(&bytes) else {
            panic!("harness built an invalid RTP packet");
        };
        let packet = Bytes::from(bytes);
        let body = packet.get(12..).unwrap_or(&[]);
        if let Some(cache) = self
            .producer_streams
            .get_mut(stream)
            .and_then(|s| s.cache.as_mut())
        {
            cache.insert(self.now, seq, &packet, 12, packet.len());
        }
        let mut out = vec![0xEE; 3];
        let result = self.consumer.write_packet(
            self.now,
            stream,
            info.as_ref(),
            &header,
            &packet,
            body,
            &mut out,
            false,
        );
        let forward = matches!(decision, Decision::Forward { .. });
        if self.clean {
            assert_eq!(
                result.is_some(),
                forward,
                "consumer and selector disagree on packet {seq} of stream {stream} ({decision:?})"
            );
        } else {
            assert!(
                result.is_none() || forward,
                "consumer sent a packet its selector did not forward ({decision:?})"
            );
        }
        self.check_consumer_state();
        if let Some((header_len, roc)) = result {
            let switched = decision == (Decision::Forward { switched: true });
            self.check_output(&out, header_len, roc, payload, header.marker, switched);
        }
    }

    /// A forwarded packet: the subscriber's header and the same payload (but for the VP8
    /// picture id and TL0PICIDX); output sequence numbers strictly increase while the inputs
    /// do, without a gap while nothing was lost; timestamps never go back.
    fn check_output(
        &mut self,
        out: &[u8],
        header_len: usize,
        roc: u32,
        payload: &[u8],
        marker: bool,
        switched: bool,
    ) {
        let Ok(h) = RtpHeader::parse(out) else {
            panic!("the consumer wrote an unparsable packet: {out:02x?}");
        };
        assert_eq!(h.header_len, header_len);
        assert_eq!((h.ssrc, h.payload_type), (SWITCHER_SSRC, SWITCHER_PT_OUT));
        assert_eq!(h.marker, marker);
        let Ok((start, end)) = h.payload_range(out) else {
            panic!("the consumer wrote a bad payload range");
        };
        let body = out.get(start..end).unwrap_or(&[]);
        assert_eq!(body.len(), payload.len(), "payload length changed");
        match Vp8Descriptor::parse(payload) {
            Some(d) => {
                assert_eq!(body.get(..2), payload.get(..2));
                assert_eq!(body.get(d.header_len..), payload.get(d.header_len..));
            }
            None => assert_eq!(body, payload),
        }
        if self.monotone {
            let ext = (u64::from(roc) << 16) | u64::from(h.sequence_number);
            if let Some((previous, previous_ts, at)) = self.last_out {
                assert!(
                    ext > previous && ext - previous < 0x8000,
                    "output sequence {ext:#x} after {previous:#x} on increasing inputs"
                );
                if self.clean && self.lossless {
                    assert_eq!(ext, previous + 1, "a gap in the output sequence numbers");
                }
                if self.now.saturating_duration_since(at) < SWITCHER_TS_HORIZON {
                    let step = h.timestamp.wrapping_sub(previous_ts) as i32;
                    assert!(
                        step > 0 || (step == 0 && !switched),
                        "output timestamp {} after {previous_ts} (switch: {switched})",
                        h.timestamp
                    );
                }
            }
            self.last_out = Some((ext, h.timestamp, self.now));
        }
        self.sent.insert(
            h.sequence_number,
            SentCopy {
                payload: body.to_vec(),
                timestamp: h.timestamp,
                marker: h.marker,
                roc,
            },
        );
        if self.sent_order.len() >= 256 {
            self.sent_order.pop_front();
        }
        self.sent_order.push_back(h.sequence_number);
    }

    /// A NACK for `seq`: a retransmission carries exactly what was sent under it (on the RTX
    /// stream: the original sequence number first, RTX sequence numbers one apart).
    fn nack(&mut self, seq: u16) {
        let mut out = vec![0xEE; 3];
        let Some((header_len, roc)) =
            self.consumer
                .write_retransmission(self.now, seq, &self.producer_streams, &mut out)
        else {
            return;
        };
        let Some(sent) = self.sent.get(&seq) else {
            panic!("retransmitted {seq}, which was never sent");
        };
        let Ok(h) = RtpHeader::parse(&out) else {
            panic!("the consumer wrote an unparsable retransmission: {out:02x?}");
        };
        assert_eq!(h.header_len, header_len);
        let Ok((start, end)) = h.payload_range(&out) else {
            panic!("the consumer wrote a bad retransmission payload range");
        };
        let body = out.get(start..end).unwrap_or(&[]);
        assert_eq!(
            (h.timestamp, h.marker),
            (sent.timestamp, sent.marker),
            "retransmission of {seq}: timestamp / marker"
        );
        if self.rtx {
            assert_eq!(
                (h.ssrc, h.payload_type),
                (SWITCHER_RTX_SSRC, SWITCHER_PT_RTX)
            );
            assert_eq!(body.get(..2), Some(&seq.to_be_bytes()[..]), "RTX OSN");
            assert_eq!(
                body.get(2..),
                Some(sent.payload.as_slice()),
                "RTX retransmission of {seq} differs from what was sent"
            );
            if let Some(previous) = self.last_rtx_seq {
                assert_eq!(
                    h.sequence_number,
                    previous.wrapping_add(1),
                    "RTX sequence numbers not consecutive"
                );
            }
            self.last_rtx_seq = Some(h.sequence_number);
        } else {
            assert_eq!((h.ssrc, h.payload_type), (SWITCHER_SSRC, SWITCHER_PT_OUT));
            assert_eq!((h.sequence_number, roc), (seq, sent.roc));
            assert_eq!(
                body,
                sent.payload.as_slice(),
                "retransmission of {seq} differs from what was sent"
            );
        }
    }
}

/// A [`LayerSelector`] and a simulcast VP8 [`Consumer`] (three encodings, NACK, RTX when
/// asked) driven by a script. Input layout: `[flags] [seed u16] [op…]`. Flags: bit 0 RTX,
/// bit 1 output sequence numbers start just below the wrap, bit 2 input sequence numbers
/// too, bit 3 timestamps too, bit 4 picture ids too; the seed draws the other starting
/// values. Op bytes:
///
/// * `0b0yttkspp` (top bit clear): the next packet of stream `pp` (0..=3; the producer has
///   three): `k` keyframe, `s` start of frame, `tt` temporal id, `y` layer sync. A start
///   begins a new frame (picture id, timestamp and, for layer 0, TL0PICIDX advance); other
///   packets continue the stream's frame.
/// * `0b10cccaaa`: control `ccc` with argument `aaa`: 0 `set_target` (`aaa` < 4: that stream,
///   else none), 1 `set_max_temporal` (7: all), 2 `reset` (the consumer's `rebase`),
///   3 advance time by `aaa × 20` ms (0: by a `u16` of ms), 4 lose `1 + aaa / 4` packets of
///   stream `aaa % 4`, 5 NACK the `u8`-th latest output (`aaa` even) or a `u16` (odd),
///   6 an unreadable packet of stream `aaa % 4`, 7 replay one of the last 16 packets of
///   stream `aaa % 4` (`u8` picks it).
/// * `0b11llllpp`: a packet of stream `pp` whose payload is the next `llll` input bytes.
///
/// The raw model is fed the script's fields, the shadow model and the consumer what
/// `codecs::describe` reads from the payloads; each selector must keep its promises (see
/// [`SelectorModel`]). The consumer must forward exactly what its selector forwards (while
/// all payloads are the harness's), keep output sequence numbers strictly increasing while
/// each stream's inputs do (with no gap while nothing is lost), never send timestamps
/// backwards, and retransmit exactly what it sent.
pub fn layer_switcher(data: &[u8]) {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let mut rng = SimRng::new((u64::from(flags) << 16) | u64::from(c.u16()));
    let near_wrap = |bit: u8, value: u32, wrap: u32, rng_value: u32| {
        if flags & bit != 0 {
            wrap.wrapping_sub(value)
        } else {
            rng_value
        }
    };
    let initial = near_wrap(2, 6, 0x1_0000, rng.next_u32()) as u16;
    let timestamp_offset = rng.next_u32();
    let rtx = flags & 1 != 0;
    let consumer = switcher_consumer(rtx, initial, timestamp_offset);
    assert!(consumer.has_selector());
    assert_eq!(consumer.rtx_ssrc(), rtx.then_some(SWITCHER_RTX_SSRC));
    let streams = (0..SWITCHER_STREAMS as u32)
        .map(|i| ScriptStream {
            seq: near_wrap(4, 4 + i, 0x1_0000, rng.next_u32()) as u16,
            timestamp: near_wrap(8, 9000 * (i + 1), 0, rng.next_u32()),
            picture_id: near_wrap(16, 2 + i, 0x8000, rng.next_u32()) as u16 & 0x7fff,
            tl0: rng.next_u32() as u8,
            ..ScriptStream::default()
        })
        .collect();
    let producer_streams = (0..4)
        .map(|_| {
            let mut s = ProducerStream::new(None, None, None);
            s.keep_packets();
            s
        })
        .collect();
    let mut s = Switcher {
        raw: SelectorModel::new("raw selector"),
        shadow: SelectorModel::new("consumer's selector"),
        consumer,
        producer_streams,
        rtx,
        streams,
        now: Instant::now(),
        clean: true,
        monotone: true,
        lossless: true,
        last_out: None,
        sent: HashMap::new(),
        sent_order: VecDeque::new(),
        last_rtx_seq: None,
    };
    while !c.is_empty() {
        let op = c.u8();
        let stream = usize::from(op & 3);
        if op & 0x80 == 0 {
            s.script_packet(
                stream,
                op & 0x04 != 0,
                op & 0x08 != 0,
                (op >> 4) & 3,
                op & 0x40 != 0,
            );
            continue;
        }
        if op & 0x40 != 0 {
            let payload = c.take(usize::from((op >> 2) & 0x0f)).to_vec();
            let info = describe(Codec::Vp8, &payload);
            s.clean = false;
            s.next_packet(stream, info, payload);
            continue;
        }
        let arg = op & 7;
        let stream = usize::from(arg & 3);
        match (op >> 3) & 7 {
            0 => s.set_target((arg < 4).then_some(usize::from(arg))),
            1 => s.set_max_temporal(if arg == 7 { ALL_TEMPORAL_LAYERS } else { arg }),
            2 => s.reset(),
            3 => {
                let ms = match arg {
                    0 => u64::from(c.u16()),
                    n => u64::from(n) * 20,
                };
                s.now += Duration::from_millis(ms);
            }
            4 => {
                if let Some(st) = s.streams.get_mut(stream) {
                    st.seq = st.seq.wrapping_add(1 + u16::from(arg >> 2));
                    s.lossless = false;
                }
            }
            5 => {
                let seq = if arg & 1 == 0 {
                    let back = usize::from(c.u8());
                    match s.sent_order.iter().rev().nth(back) {
                        Some(&seq) => seq,
                        None => continue,
                    }
                } else {
                    c.u16()
                };
                s.nack(seq);
            }
            6 => s.next_packet(stream, None, vec![0x80]),
            _ => {
                let back = usize::from(c.u8());
                let Some(st) = s.streams.get(stream) else {
                    continue;
                };
                let Some((seq, timestamp, payload)) =
                    st.recent.iter().rev().nth(back % 16).cloned()
                else {
                    continue;
                };
                s.clean = false;
                s.monotone = false;
                let info = describe(Codec::Vp8, &payload);
                s.packet(stream, info, seq, timestamp, &payload);
            }
        }
    }
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

/// VP8 `layer_switcher` op: the next packet of `stream`.
fn switcher_packet(stream: u8, keyframe: bool, start: bool, tid: u8, sync: bool) -> u8 {
    (stream & 3)
        | (u8::from(keyframe) << 2)
        | (u8::from(start) << 3)
        | ((tid & 3) << 4)
        | (u8::from(sync) << 6)
}

/// VP8 `layer_switcher` op: control `code` with argument `arg`.
fn switcher_control(code: u8, arg: u8) -> u8 {
    0x80 | ((code & 7) << 3) | (arg & 7)
}

/// `layer_switcher` ops: one frame of `stream` in `packets` packets (a delta frame unless
/// `keyframe`).
fn switcher_frame(stream: u8, keyframe: bool, tid: u8, sync: bool, packets: usize) -> Vec<u8> {
    (0..packets)
        .map(|i| switcher_packet(stream, keyframe, i == 0, tid, sync))
        .collect()
}

/// libwebrtc's L1T3 as a dependency structure (template id offset 0, 640x480), and one
/// descriptor of template `template_id` against it.
fn dd_l1t3() -> Option<DependencyStructure> {
    use Dti::{Discardable as D, NotPresent as N, Switch as S};
    let template = |tid: u8, dtis: [Dti; 3], fdiffs: &[u16], chain: u8| -> Option<FrameTemplate> {
        Some(FrameTemplate {
            spatial_id: 0,
            temporal_id: tid,
            dtis: Dtis::from_slice(&dtis).ok()?,
            frame_diffs: FrameDiffs::from_slice(fdiffs).ok()?,
            chain_diffs: ChainDiffs::from_slice(&[chain]).ok()?,
        })
    };
    let templates = [
        template(0, [S, S, S], &[], 0)?,
        template(0, [S, S, S], &[4], 4)?,
        template(1, [N, D, S], &[2], 2)?,
        template(2, [N, N, D], &[1], 1)?,
        template(2, [N, N, D], &[1], 3)?,
    ];
    let resolution = Resolution {
        width: 640,
        height: 480,
    };
    DependencyStructure::new(0, 3, 1, &[0, 0, 0], &templates, &[resolution]).ok()
}

/// A dependency descriptor extension of L1T3 template `template_id` (the structure attached
/// when `attach`), its frame diffs replaced by `custom_diffs` when given.
fn dd_extension(
    template_id: u8,
    frame_number: u16,
    attach: bool,
    custom_diffs: Option<&[u16]>,
    active: Option<u32>,
) -> Vec<u8> {
    let Some(s) = dd_l1t3() else {
        return Vec::new();
    };
    let Some(t) = s.template(template_id) else {
        return Vec::new();
    };
    let frame_diffs = match custom_diffs.map(FrameDiffs::from_slice) {
        Some(Ok(diffs)) => diffs,
        Some(Err(_)) => return Vec::new(),
        None => t.frame_diffs,
    };
    let d = DependencyDescriptor {
        start_of_frame: true,
        end_of_frame: !attach,
        template_id,
        frame_number,
        spatial_id: t.spatial_id,
        temporal_id: t.temporal_id,
        dtis: t.dtis,
        frame_diffs,
        chain_diffs: t.chain_diffs,
        active_decode_targets: active,
        structure_attached: attach,
        resolution: attach.then_some(Resolution {
            width: 640,
            height: 480,
        }),
        layer_switch_point: attach,
    };
    let mut out = [0u8; 64];
    match dd::write(&mut out, &d, &s, attach) {
        Ok(n) => out.get(..n).unwrap_or(&[]).to_vec(),
        Err(_) => Vec::new(),
    }
}

/// The codec targets' seeds: real payload descriptors and a few scripts.
fn codec_seeds(out: &mut Vec<Seed>) {
    let seed = |target, name, bytes| Seed {
        target,
        name,
        bytes,
    };
    // A 640x480 VP8 keyframe header (frame tag, start code, sizes).
    let vp8_key: [u8; 10] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];

    // vp8_descriptor
    let mut key = vec![0x90, 0xe0, 0x92, 0x34, 0x56, 0x20];
    key.extend_from_slice(&vp8_key);
    out.push(seed("vp8_descriptor", "keyframe-long-id-tl0-tid.bin", key));
    out.push(seed(
        "vp8_descriptor",
        "every-field-partition-3.bin",
        vec![0xb3, 0xf0, 0x92, 0x34, 0x56, 0xb1, 0xaa],
    ));
    out.push(seed(
        "vp8_descriptor",
        "delta-short-id-keyidx.bin",
        vec![0x90, 0x90, 0x05, 0x11, 0x31, 0x10, 0x00],
    ));
    out.push(seed(
        "vp8_descriptor",
        "no-extension-continuation.bin",
        vec![0x01, 0xab, 0xcd],
    ));

    // vp8_rewriter: [width] then one byte per event (see `fuzz_entry::vp8_rewriter_script`).
    let mut steady = vec![0x00, 0x00, 0x10];
    steady.extend_from_slice(&[0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00]);
    out.push(seed("vp8_rewriter", "steady-long-ids.bin", steady));
    out.push(seed(
        "vp8_rewriter",
        "drops-losses-late.bin",
        vec![
            0x00, 0x00, 0x05, 0x00, 0x20, 0x20, 0x00, 0x04, 0x02, 0x20, 0x0a, 0x40, 0xa0, 0x00,
            0x24, 0x06, 0x00,
        ],
    ));
    let mut switches = vec![0x01, 0x00, 0x00];
    switches.extend(std::iter::repeat_n(0x00, 140)); // short ids wrap at 128
    switches.extend_from_slice(&[0x03, 0x7f, 0x00, 0x00, 0x20, 0x00, 0x07, 0x01, 0x00, 0x40]);
    out.push(seed(
        "vp8_rewriter",
        "switches-short-ids-wrap.bin",
        switches,
    ));

    // h264_keyframe
    out.push(seed(
        "h264_keyframe",
        "single-idr.bin",
        vec![0x65, 0x88, 0x84, 0x00, 0x33],
    ));
    out.push(seed(
        "h264_keyframe",
        "stap-a-sps-pps-idr.bin",
        vec![
            0x18, 0x00, 0x04, 0x67, 0x42, 0xc0, 0x1f, 0x00, 0x02, 0x68, 0xce, 0x00, 0x03, 0x65,
            0x88, 0x84,
        ],
    ));
    out.push(seed(
        "h264_keyframe",
        "fu-a-idr-start.bin",
        vec![0x7c, 0x85, 0x88, 0x84, 0x00],
    ));
    out.push(seed(
        "h264_keyframe",
        "fu-a-middle.bin",
        vec![0x7c, 0x05, 0x11, 0x22],
    ));
    out.push(seed(
        "h264_keyframe",
        "non-idr-slice.bin",
        vec![0x41, 0x9a, 0x00, 0x10],
    ));

    // vp9_descriptor
    out.push(seed(
        "vp9_descriptor",
        "keyframe-scalability-structure.bin",
        vec![
            0xaa, 0x81, 0x23, 0x00, 0x05, 0x18, 0x02, 0x80, 0x01, 0xe0, 0x01, 0x04, 0x01, 0x82,
            0x49, 0x83,
        ],
    ));
    out.push(seed(
        "vp9_descriptor",
        "flexible-two-references.bin",
        vec![0xfc, 0x81, 0x24, 0x30, 0x03, 0x04, 0x86, 0x00],
    ));
    out.push(seed("vp9_descriptor", "minimal.bin", vec![0x08, 0xaa]));

    // av1_aggregation
    out.push(seed(
        "av1_aggregation",
        "new-sequence-two-obus.bin",
        vec![0x28, 0x04, 0x08, 0x00, 0x00, 0x00, 0x30, 0x10, 0x00],
    ));
    out.push(seed(
        "av1_aggregation",
        "obu-extension-layers.bin",
        vec![0x10, 0x34, 0x28, 0x10, 0x00],
    ));
    out.push(seed(
        "av1_aggregation",
        "continuation-fragment.bin",
        vec![0xd0, 0x55, 0x66, 0x77],
    ));
    out.push(seed(
        "av1_aggregation",
        "length-prefixed.bin",
        vec![0x00, 0x02, 0x12, 0x00, 0x03, 0x30, 0x10, 0x00],
    ));

    // dependency_descriptor
    let keyframe = dd_extension(0, 100, true, None, None);
    let t2 = dd_extension(3, 103, false, None, None);
    let t1 = dd_extension(2, 102, false, None, None);
    let custom = dd_extension(1, 104, false, Some(&[4, 2]), Some(0b011));
    if !keyframe.is_empty() {
        out.push(seed(
            "dependency_descriptor",
            "l1t3-keyframe-structure.bin",
            keyframe.clone(),
        ));
    }
    if !t2.is_empty() {
        out.push(seed(
            "dependency_descriptor",
            "l1t3-t2-delta.bin",
            t2.clone(),
        ));
    }
    if !custom.is_empty() {
        out.push(seed(
            "dependency_descriptor",
            "l1t3-custom-diffs-active-targets.bin",
            custom.clone(),
        ));
    }
    let mut reader = Vec::new();
    for ext in [&keyframe, &t1, &t2, &custom] {
        reader.push(ext.len() as u8);
        reader.extend_from_slice(ext);
    }
    out.push(seed(
        "dependency_descriptor",
        "reader-key-t1-t2-custom.bin",
        reader,
    ));
}

/// The stateful targets' seeds: `rtx_history` and `layer_switcher` scripts.
fn stateful_seeds(out: &mut Vec<Seed>) {
    let seed = |target, name, bytes| Seed {
        target,
        name,
        bytes,
    };
    // rtx_history: [capacity] [max_age ms] [first seq] ops (see `rtx_history`).
    let take_recent = |interval_8ms: u8, back: u8| [2 | (interval_8ms << 3), back];
    let advance = |five_ms: u8| 3 | (five_ms << 2);
    let mut limits = vec![16, 0x03, 0xe8, 0x00, 100];
    limits.extend(std::iter::repeat_n(0x00, 20)); // 100..=119, sent now
    limits.push(advance(2));
    limits.extend(take_recent(12, 0)); // 119: first resend
    limits.extend(take_recent(12, 0)); // within 96 ms: refused
    limits.extend(take_recent(12, 3)); // 116: first resend
    for _ in 0..3 {
        limits.push(advance(20)); // 100 ms
        limits.extend(take_recent(12, 0)); // 119: second, third, then refused
    }
    limits.extend(take_recent(12, 17)); // 102: overwritten by 118
    out.push(seed("rtx_history", "resend-count-and-interval.bin", limits));

    let mut wrap = vec![8, 0x01, 0xf4, 0xff, 0xfa];
    wrap.extend(std::iter::repeat_n(0x04, 10)); // every other number across the wrap
    wrap.extend_from_slice(&[0x01, 0x00, 0x03, 0x00, 0x00]); // 3 again, overwriting its slot
    wrap.extend_from_slice(&[0x06, 0xff, 0xfc, 0x06, 0x00, 0x03, 0x06, 0x00, 0x13]);
    wrap.extend_from_slice(&[0x02, 0x00, 0x02, 0x01]);
    out.push(seed("rtx_history", "wrap-and-overwrite.bin", wrap));

    let mut aged = vec![64, 0x00, 0x32, 0x12, 0x34];
    for age in 0..16u8 {
        aged.push(age << 4); // sent 0..240 ms ago
    }
    for back in 0..16u8 {
        aged.extend(take_recent(0, back));
    }
    aged.extend_from_slice(&[0x03, 0x10, 0x00]); // 4 s later
    aged.extend(take_recent(0, 15));
    out.push(seed("rtx_history", "max-age.bin", aged));

    let mut clamped = vec![0xff, 0xff, 0xff, 0x80, 0x00];
    clamped.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00]);
    clamped.extend_from_slice(&[0x06, 0x00, 0x00, 0x06, 0x80, 0x00, 0x06, 0x00, 0x00]);
    out.push(seed("rtx_history", "clamped-capacity.bin", clamped));

    // layer_switcher: [flags] [seed] ops (see `layer_switcher`).
    let pkt = switcher_packet;
    let ctl = switcher_control;
    let frame = switcher_frame;
    // L1T3 on stream 0, the other streams alongside; max temporal layer down and up again.
    let mut temporal = vec![0x00, 0x12, 0x34, ctl(0, 0)];
    temporal.extend(frame(1, true, 0, true, 2));
    temporal.extend(frame(0, true, 0, true, 3));
    for (tid, sync) in [(2, true), (1, true), (2, false), (0, false)] {
        temporal.extend(frame(0, false, tid, sync, 2));
        temporal.push(pkt(2, false, true, tid, sync));
    }
    temporal.push(ctl(1, 0));
    for (tid, sync) in [(2, true), (1, true), (2, false), (0, false)] {
        temporal.extend(frame(0, false, tid, sync, 2));
    }
    temporal.push(ctl(1, 1));
    for (tid, sync) in [
        (2, true),
        (1, false),
        (2, false),
        (0, false),
        (2, false),
        (1, true),
    ] {
        temporal.extend(frame(0, false, tid, sync, 1));
    }
    temporal.push(ctl(1, 7));
    for (tid, sync) in [(2, true), (0, false), (2, false), (1, false)] {
        temporal.extend(frame(0, false, tid, sync, 2));
    }
    temporal.extend_from_slice(&[
        ctl(3, 1),
        ctl(5, 0),
        0,
        ctl(5, 0),
        3,
        ctl(3, 7),
        ctl(5, 0),
        0,
    ]);
    out.push(seed("layer_switcher", "temporal-layers-l1t3.bin", temporal));

    // Up to stream 2 and down to 1 at their keyframes, with RTX, near every wrap.
    let mut switching = vec![0x1f, 0xab, 0xcd, ctl(0, 0)];
    switching.extend(frame(0, true, 0, true, 2));
    for _ in 0..3 {
        for stream in 0..3 {
            switching.extend(frame(stream, false, 0, false, 2));
        }
    }
    switching.extend_from_slice(&[ctl(5, 0), 0, ctl(0, 2)]);
    switching.extend(frame(2, false, 0, false, 2)); // not a keyframe: still on 0
    switching.extend(frame(0, false, 0, false, 1));
    switching.extend(frame(2, true, 0, true, 3)); // switch
    switching.extend(frame(0, false, 0, false, 1)); // left
    switching.extend(frame(2, false, 0, false, 2));
    switching.extend_from_slice(&[ctl(5, 0), 1, ctl(5, 0), 3, ctl(0, 1)]);
    switching.extend(frame(1, true, 0, true, 1));
    switching.extend(frame(1, false, 0, false, 2));
    switching.extend_from_slice(&[ctl(3, 6), ctl(5, 0), 0, ctl(0, 4)]); // target none
    switching.extend(frame(1, false, 0, false, 1));
    switching.extend_from_slice(&[ctl(0, 0)]);
    switching.extend(frame(0, true, 0, true, 1));
    switching.extend(frame(0, false, 0, false, 1));
    out.push(seed(
        "layer_switcher",
        "switch-up-and-down-rtx.bin",
        switching,
    ));

    // Loss, unreadable and raw payloads, a replay, a reset, and a stream the producer lacks.
    let mut rough = vec![0x00, 0x00, 0x07, ctl(0, 1)];
    rough.extend(frame(1, true, 0, true, 2));
    rough.extend(frame(1, false, 1, true, 1));
    rough.push(ctl(4, 1)); // one packet of stream 1 lost
    rough.extend(frame(1, false, 0, false, 2));
    rough.push(ctl(6, 1));
    rough.extend_from_slice(&[0xc0 | (6 << 2) | 1, 0x90, 0x80, 0x12, 0x31, 0x10, 0x00]);
    rough.extend_from_slice(&[ctl(7, 1), 2, ctl(5, 1), 0x00, 0x00, ctl(2, 0)]);
    rough.extend(frame(1, false, 0, false, 1)); // after the reset: waits for a keyframe
    rough.extend(frame(1, true, 0, true, 1));
    rough.extend_from_slice(&[ctl(0, 3)]);
    rough.extend(frame(3, true, 0, true, 1));
    rough.extend(frame(1, false, 0, false, 1));
    rough.extend(frame(3, false, 2, true, 1));
    out.push(seed(
        "layer_switcher",
        "loss-garbage-replay-reset.bin",
        rough,
    ));
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

    // gcm_kernel: key, nonce, AAD length, AAD, plaintext.
    for (name, aad_len, plaintext_len) in [
        ("rtp-1200.bin", 12u8, 1200usize),
        ("rtcp-auth-only.bin", 60, 0),
        ("two-steps-and-tail.bin", 40, 256 * 2 + 63),
    ] {
        let mut input: Vec<u8> = (0u8..28).collect();
        input.push(aad_len);
        input.extend((0..usize::from(aad_len) + plaintext_len).map(|i| (i * 7 + 3) as u8));
        out.push(seed("gcm_kernel", name, input));
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

    codec_seeds(&mut out);
    stateful_seeds(&mut out);
    out
}

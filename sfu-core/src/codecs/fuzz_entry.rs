//! Fuzz target bodies for the codec parsers, one `pub fn(&[u8])` per parser, for
//! `cargo fuzz` targets to call (`fuzz_target!(|data: &[u8]| sfu_core::codecs::fuzz_entry::vp8(data))`).
//!
//! Each returns normally on any input and panics (through `assert!`, the oracle) only when an
//! invariant breaks: a descriptor that depends on bytes past its own length, a rewrite that
//! touches bytes other than the ids or breaks picture-id continuity, a dependency descriptor
//! that does not survive a write/parse round trip. Everything is derived from the input, so
//! every run replays exactly.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use super::dependency_descriptor::{
    self as dd, ChainDiffs, DependencyDescriptorReader, DependencyStructure, Dti, Dtis, FrameDiffs,
    FrameTemplate, Resolution,
};
use super::vp8::{self, Vp8Descriptor, Vp8RewriteError, Vp8Rewriter};
use super::{Codec, av1, describe, h264, is_keyframe, vp9};

/// VP8: the descriptor parser on raw input, then the rewriter driven by a script the input
/// encodes (see [`vp8_rewriter_script`]).
pub fn vp8(data: &[u8]) {
    if let Some(d) = Vp8Descriptor::parse(data) {
        assert!(d.header_len < data.len() && d.header_len <= 6);
        // The descriptor depends on its own bytes only (plus one byte of payload).
        assert_eq!(
            data.get(..d.header_len + 1).and_then(Vp8Descriptor::parse),
            Some(d)
        );
        assert_eq!(vp8::is_keyframe(data), d.is_keyframe(data));
        assert_eq!(is_keyframe(Codec::Vp8, data), d.is_keyframe(data));
        if vp8::keyframe_size(data).is_some() {
            assert!(d.is_keyframe(data));
        }
        let info = describe(Codec::Vp8, data);
        assert_eq!(info.map(|i| i.temporal_id), Some(d.temporal_id));
        // A fresh rewriter keeps the first packet's ids and touches nothing else.
        let mut copy = data.to_vec();
        let out = Vp8Rewriter::new().rewrite(&mut copy, &d, true);
        assert_eq!(
            out,
            Ok(vp8::Vp8Rewritten {
                picture_id: d.picture_id.map(|p| p.value),
                tl0_pic_idx: d.tl0_pic_idx,
            })
        );
        assert_eq!(copy, data);
        // A descriptor of other bytes is refused without writing.
        if let Some(other) = data.get(1..).and_then(Vp8Descriptor::parse)
            && other != d
        {
            let mut copy = data.to_vec();
            assert_eq!(
                Vp8Rewriter::new().rewrite(&mut copy, &other, true),
                Err(Vp8RewriteError::Mismatch)
            );
            assert_eq!(copy, data);
        }
    } else {
        assert!(!vp8::is_keyframe(data) && describe(Codec::Vp8, data).is_none());
    }
    vp8_rewriter_script(data);
}

/// What the script harness remembers of one input frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Forwarded(i64),
    Dropped,
}

/// Drives a [`Vp8Rewriter`] through sources, frames, losses, reorders and drops encoded by
/// `data` (one byte per event), checking the output picture-id line:
///
/// * packets of one frame always get the same output;
/// * within a source, outputs strictly increase with the input picture id;
/// * a new frame whose predecessors since the last forwarded frame were all dropped (none
///   lost) gets exactly the next output id;
/// * the first frame of a new source gets one past the highest output so far, and its
///   TL0PICIDX one past the highest sent; TL0PICIDX keeps a constant offset within a source;
/// * new frames are never refused; recent late frames only if dropped.
pub fn vp8_rewriter_script(data: &[u8]) {
    let long = data.first().is_none_or(|b| b & 1 == 0);
    let modulus: i64 = if long { 1 << 15 } else { 1 << 7 };
    let mut rw = Vp8Rewriter::new();
    let mut bytes = data.iter().copied().skip(1);
    // Per source: input id -> fate; first and highest input ids.
    let mut fates: BTreeMap<i64, Fate> = BTreeMap::new();
    let mut source_base: i64 = 0;
    let mut first: i64 = 0;
    let mut highest: i64 = 0;
    let mut max_out: Option<i64> = None;
    let mut max_tl0_out: Option<i64> = None;
    let mut tl0_offset: Option<i64> = None;
    let mut started = false;

    let extend = |written: i64, reference: Option<i64>, m: i64| -> i64 {
        match reference {
            None => written,
            Some(r) => {
                let d = (written - r).rem_euclid(m);
                if d >= m / 2 { r + d - m } else { r + d }
            }
        }
    };

    while let Some(op) = bytes.next() {
        let kind = op & 0x03;
        let switch = !started || kind == 3;
        let input = if switch {
            // A new source: a fresh picture-id space, starting with a keyframe.
            let base = i64::from(bytes.next().unwrap_or(0)) << 7 | i64::from(op >> 2);
            source_base = base * 3;
            fates.clear();
            first = source_base;
            highest = source_base;
            source_base
        } else if kind == 2 {
            highest - 1 - i64::from((op >> 2) & 0x07) // a late frame
        } else {
            highest + 1 + i64::from((op >> 2) & 0x01) // the next frame, maybe after a loss
        };
        let tid = match input.rem_euclid(4) {
            1 | 3 => 2,
            2 => 1,
            _ => 0,
        };
        let tl0_in = (input - source_base).div_euclid(4) + source_base / 7;
        let payload = vp8_payload(
            input.rem_euclid(modulus) as u16,
            long,
            tl0_in as u8,
            tid,
            switch,
        );
        let Some(descriptor) = Vp8Descriptor::parse(&payload) else {
            panic!("harness built an invalid VP8 payload");
        };
        let drop = !switch && op & 0x20 != 0;
        let forward_anyway = op & 0x80 != 0;
        let known = fates.get(&input).copied();
        let packets = if op & 0x40 != 0 { 2 } else { 1 };
        for packet in 0..packets {
            let is_switch = switch && packet == 0;
            let forward = match known {
                Some(Fate::Forwarded(_)) => true,
                Some(Fate::Dropped) => forward_anyway,
                None => !drop,
            };
            if !forward {
                rw.drop_frame(&descriptor);
                if input > highest || (input >= first && !fates.contains_key(&input)) {
                    fates.entry(input).or_insert(Fate::Dropped);
                }
                highest = highest.max(input);
                continue;
            }
            let mut copy = payload.clone();
            let result = rw.rewrite(&mut copy, &descriptor, is_switch);
            let fate = fates.get(&input).copied();
            let Ok(out) = result else {
                assert_eq!(copy, payload, "refused packets are untouched");
                match result {
                    Err(Vp8RewriteError::FrameDropped) => assert_eq!(fate, Some(Fate::Dropped)),
                    Err(Vp8RewriteError::TooOld) => assert!(
                        fate.is_none()
                            && input <= highest
                            && (input < first || highest - input > 16),
                        "recent frame {input} refused (first {first}, highest {highest})"
                    ),
                    _ => panic!("unexpected {result:?}"),
                }
                continue;
            };
            assert_eq!(
                copy.get(descriptor.header_len..),
                payload.get(descriptor.header_len..)
            );
            let written = i64::from(out.picture_id.unwrap_or(0));
            // A frame newer than every input so far is ahead of every output so far: extend it
            // forward (after a long loss the gap may exceed half of a 7-bit id space).
            let out_ext = match max_out {
                Some(r) if input > highest && !is_switch => {
                    let d = (written - r).rem_euclid(modulus);
                    r + if d == 0 { modulus } else { d }
                }
                _ => extend(written, max_out, modulus),
            };
            // TL0PICIDX.
            let tl0_written = i64::from(out.tl0_pic_idx.unwrap_or(0));
            let tl0_ext = extend(tl0_written, max_tl0_out, 256);
            if is_switch {
                if let Some(m) = max_tl0_out {
                    assert_eq!(tl0_ext, m + 1, "TL0PICIDX continues across a switch");
                }
                tl0_offset = Some(tl0_in - tl0_ext);
            } else if let Some(offset) = tl0_offset {
                assert_eq!(
                    (tl0_in - tl0_ext - offset).rem_euclid(256),
                    0,
                    "TL0PICIDX offset"
                );
            }
            max_tl0_out = Some(max_tl0_out.map_or(tl0_ext, |m| m.max(tl0_ext)));

            if is_switch {
                if let Some(m) = max_out {
                    assert_eq!(out_ext, m + 1, "picture ids continue across a switch");
                }
            } else if let Some(Fate::Forwarded(previous)) = fate {
                assert_eq!(out_ext, previous, "packets of a frame share their id");
            } else {
                assert_ne!(fate, Some(Fate::Dropped), "a dropped frame was forwarded");
                // Strictly between the forwarded neighbours.
                let below = fates.range(..input).rev().find_map(|(_, f)| match f {
                    Fate::Forwarded(o) => Some(*o),
                    Fate::Dropped => None,
                });
                let above = fates.range(input + 1..).find_map(|(_, f)| match f {
                    Fate::Forwarded(o) => Some(*o),
                    Fate::Dropped => None,
                });
                if let Some(b) = below {
                    assert!(out_ext > b, "output {out_ext} not above {b}");
                }
                if let Some(a) = above {
                    assert!(out_ext < a, "output {out_ext} not below {a}");
                }
                // Continuity over dropped frames.
                if input > highest
                    && let Some((&p, &Fate::Forwarded(o))) = fates
                        .range(..input)
                        .rev()
                        .find(|(_, f)| matches!(f, Fate::Forwarded(_)))
                    && (p + 1..input).all(|i| fates.get(&i) == Some(&Fate::Dropped))
                {
                    assert_eq!(out_ext, o + 1, "dropped frames leave no hole");
                }
            }
            fates.insert(input, Fate::Forwarded(out_ext));
            highest = highest.max(input);
            max_out = Some(max_out.map_or(out_ext, |m| m.max(out_ext)));
            started = true;
        }
    }
}

/// A VP8 payload with a picture id, TL0PICIDX and TID, and a one-byte (key or delta) frame.
fn vp8_payload(picture_id: u16, long: bool, tl0: u8, tid: u8, key: bool) -> Vec<u8> {
    let mut p = vec![0x90, 0xe0];
    if long {
        p.extend_from_slice(&(0x8000 | picture_id).to_be_bytes());
    } else {
        p.push(picture_id as u8 & 0x7f);
    }
    p.push(tl0);
    p.push(tid << 6);
    p.push(if key { 0x10 } else { 0x11 });
    p
}

/// H264: NAL type iteration and keyframe detection agree; types are 5-bit; the walk is
/// bounded by the input.
pub fn h264(data: &[u8]) {
    let mut n = 0usize;
    for t in h264::nal_types(data) {
        assert!((t < 32 && t != 0) || data.first().is_some_and(|b| b & 0x1f >= 24));
        n += 1;
    }
    assert!(n <= data.len());
    let key = h264::nal_types(data).any(|t| t == h264::NAL_IDR || t == h264::NAL_SPS);
    assert_eq!(h264::is_keyframe(data), key);
    assert_eq!(is_keyframe(Codec::H264, data), key);
    assert_eq!(
        describe(Codec::H264, data).map(|i| i.keyframe),
        (!data.is_empty()).then_some(key)
    );
}

/// VP9: the descriptor depends only on its own bytes; its flags are consistent.
pub fn vp9(data: &[u8]) {
    match vp9::Vp9Descriptor::parse(data) {
        Some(d) => {
            assert!(d.header_len < data.len());
            assert_eq!(
                data.get(..d.header_len + 1)
                    .and_then(vp9::Vp9Descriptor::parse),
                Some(d)
            );
            assert!(d.reference_diffs().len() <= 3);
            assert_eq!(
                d.flexible_mode && d.inter_picture_predicted,
                !d.reference_diffs().is_empty()
            );
            assert_eq!(
                d.tl0_pic_idx.is_some(),
                d.layer.is_some() && !d.flexible_mode
            );
            if d.is_keyframe() {
                assert!(d.start_of_frame && !d.inter_picture_predicted);
            }
            if let Some(ss) = d.scalability_structure {
                assert!((1..=8).contains(&ss.spatial_layers));
            }
            let info = describe(Codec::Vp9, data);
            assert_eq!(info.map(|i| i.keyframe), Some(d.is_keyframe()));
            assert_eq!(
                info.and_then(|i| i.spatial_id),
                d.layer.map(|l| l.spatial_id)
            );
        }
        None => assert!(!vp9::is_keyframe(data) && describe(Codec::Vp9, data).is_none()),
    }
}

/// AV1: OBU elements lie inside the payload, in order, at most `W` of them; keyframe
/// detection follows the aggregation header.
pub fn av1(data: &[u8]) {
    let header = av1::AggregationHeader::parse(data);
    assert_eq!(
        av1::is_keyframe(data),
        header.is_some_and(|h| h.new_coded_video_sequence && !h.continues_previous)
    );
    let mut consumed = 1usize;
    let mut count = 0usize;
    for (i, e) in av1::obus(data).enumerate() {
        let base = data.as_ptr() as usize;
        let start = e.data.as_ptr() as usize - base;
        assert!(start >= consumed && start + e.data.len() <= data.len());
        consumed = start + e.data.len();
        assert_eq!(
            e.continuation,
            i == 0 && header.is_some_and(|h| h.continues_previous)
        );
        if e.continuation {
            assert!(e.header.is_none());
        }
        count += 1;
    }
    if let Some(h) = header
        && h.obu_count > 0
    {
        assert!(count <= usize::from(h.obu_count));
    }
    assert_eq!(
        describe(Codec::Av1, data).map(|i| i.keyframe),
        header.map(|h| h.starts_coded_video_sequence())
    );
}

/// A stored L1T3 structure (libwebrtc's three temporal layers) to interpret inputs against.
fn l1t3() -> Option<DependencyStructure> {
    let template = |tid: u8, dtis: [Dti; 3], fdiffs: &[u16], chain: u8| -> Option<FrameTemplate> {
        Some(FrameTemplate {
            spatial_id: 0,
            temporal_id: tid,
            dtis: Dtis::from_slice(&dtis).ok()?,
            frame_diffs: FrameDiffs::from_slice(fdiffs).ok()?,
            chain_diffs: ChainDiffs::from_slice(&[chain]).ok()?,
        })
    };
    use Dti::{Discardable as D, NotPresent as N, Switch as S};
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

/// Dependency descriptor: every descriptor that parses survives a write/parse round trip,
/// against a stored structure, its own attached structure, and through a reader fed the
/// input as a sequence of extensions (each prefixed by its length).
pub fn dependency_descriptor(data: &[u8]) {
    let mut out = vec![0u8; data.len().max(3) + 8];
    let stored = l1t3();
    assert!(stored.is_some());
    for structure in [None, stored.as_ref()] {
        let Ok(d) = dd::parse(data, structure) else {
            continue;
        };
        assert!(d.dtis.len() <= dd::MAX_DECODE_TARGETS);
        let attached = DependencyStructure::from_extension(data);
        let against = match (&attached, structure) {
            (Ok(Some(s)), _) => s,
            (Ok(None), Some(s)) => s,
            _ => panic!("a descriptor parsed without a structure: {attached:?}"),
        };
        assert_eq!(d.structure_attached, matches!(attached, Ok(Some(_))));
        let n = dd::write(&mut out, &d, against, d.structure_attached);
        let Ok(n) = n else {
            panic!("parsed descriptor not writable: {n:?}")
        };
        let written = out.get(..n).unwrap_or(&[]);
        assert!(n <= data.len(), "the minimal form is never longer");
        assert_eq!(dd::parse(written, structure), Ok(d));
    }
    let mut reader = DependencyDescriptorReader::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (ext, tail) = tail.split_at(len);
        rest = tail;
        let Ok(d) = reader.read(ext) else { continue };
        let Some(s) = reader.structure() else {
            panic!("a descriptor was read without a structure");
        };
        let n = dd::write(&mut out, &d, s, d.structure_attached);
        let Ok(n) = n else {
            panic!("read descriptor not writable: {n:?}")
        };
        let mut again = dd::parse(out.get(..n).unwrap_or(&[]), Some(s));
        if let Ok(a) = &mut again {
            // The reader reports the stream's mask; a lone parse only what the packet carries.
            a.active_decode_targets = a.active_decode_targets.or(d.active_decode_targets);
        }
        assert_eq!(again, Ok(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::test_util::{XorShift, sweep};

    #[test]
    fn targets_accept_arbitrary_inputs() {
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 5] = [
            ("vp8", vp8),
            ("h264", h264),
            ("vp9", vp9),
            ("av1", av1),
            ("dependency_descriptor", dependency_descriptor),
        ];
        // Every 7th input of the parsers' own sweep: the targets run heavier oracles.
        for (name, target) in targets {
            let mut n = 0u32;
            sweep(|data| {
                n += 1;
                if n.is_multiple_of(7) {
                    let result = std::panic::catch_unwind(|| target(data));
                    assert!(result.is_ok(), "target {name} failed on {data:02x?}");
                }
            });
        }
    }

    #[test]
    fn rewriter_script_on_random_scripts() {
        let mut rng = XorShift(0x5eed);
        for _ in 0..3000 {
            let len = rng.below(400);
            let script: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            vp8_rewriter_script(&script);
        }
    }
}

//! VP8 over RTP (RFC 7741): the payload descriptor, keyframe detection, and the per-consumer
//! rewriting of picture ids that simulcast and temporal-layer dropping need.
//!
//! ## The payload descriptor (RFC 7741 §4.2)
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (REQUIRED)
//!      +-+-+-+-+-+-+-+-+
//! X:   |I|L|T|K| RSV   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (OPTIONAL, 7 bits, or 15 bits when M = 1)
//!      +-+-+-+-+-+-+-+-+
//!      |   PictureID   | (only when M = 1)
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! ```
//!
//! The first packet of a frame has `S = 1` and `PID = 0`; it is followed by the VP8 payload
//! header (RFC 7741 §4.3), whose inverse keyframe bit `P` is 0 for a keyframe, and for a
//! keyframe by the start code `9d 01 2a` and the 14-bit width and height with 2-bit scales.
//!
//! ## Rewriting for a subscriber
//!
//! Each simulcast layer is an independent encoder with its own picture-id and TL0PICIDX
//! spaces, and dropping a temporal layer leaves holes in picture ids. libwebrtc's receiver
//! uses both fields to find frame references, so [`Vp8Rewriter`] (one per consumer) maps them
//! onto one continuous output line, in place in the consumer's copy of the payload. It keeps
//! the descriptor's length: a 7-bit picture id stays 7-bit (the output line is then seen
//! modulo 128) and a 15-bit one stays 15-bit — as mediasoup does — so the payload never has
//! to be moved. Browsers send 15-bit picture ids.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use thiserror::Error;

use super::PictureId;

/// A parsed VP8 payload descriptor. Layout is implied by the flags: the picture id (if any)
/// starts at byte 2, TL0PICIDX follows it, then the TID/Y/KEYIDX byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// `N`: the frame is not used as a reference and may be discarded.
    pub non_reference: bool,
    /// `S`: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// `PID`: the partition index (0..=7).
    pub partition_index: u8,
    /// `PictureID` (when `I = 1`).
    pub picture_id: Option<PictureId>,
    /// `TL0PICIDX` (when `L = 1`): running index of the base temporal layer frames.
    pub tl0_pic_idx: Option<u8>,
    /// `TID` (when `T = 1`): the temporal layer.
    pub temporal_id: Option<u8>,
    /// `Y` (meaningful only when `T = 1`): the frame depends only on TL0 frames, so a
    /// receiver may switch up to its temporal layer here.
    pub layer_sync: bool,
    /// `KEYIDX` (when `K = 1`).
    pub key_index: Option<u8>,
    /// Length of the descriptor: the VP8 payload starts at this offset.
    pub header_len: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of an RTP payload. `None` if it is truncated or is
    /// not followed by at least one byte of VP8 payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            picture_id: None,
            tl0_pic_idx: None,
            temporal_id: None,
            layer_sync: false,
            key_index: None,
            header_len: 1,
        };
        if b0 & 0x80 != 0 {
            let x = *payload.get(1)?;
            let mut at = 2usize;
            if x & 0x80 != 0 {
                let pid = PictureId::read(payload.get(at..)?)?;
                at += pid.encoded_len();
                d.picture_id = Some(pid);
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(*payload.get(at)?);
                at += 1;
            }
            let (t, k) = (x & 0x20 != 0, x & 0x10 != 0);
            if t || k {
                let tk = *payload.get(at)?;
                at += 1;
                if t {
                    d.temporal_id = Some(tk >> 6);
                    d.layer_sync = tk & 0x20 != 0;
                }
                if k {
                    d.key_index = Some(tk & 0x1f);
                }
            }
            d.header_len = at;
        }
        if payload.len() <= d.header_len {
            return None;
        }
        Some(d)
    }

    /// Whether the packet is the first of a frame (`S = 1`, `PID = 0`).
    pub fn is_start_of_frame(&self) -> bool {
        self.start_of_partition && self.partition_index == 0
    }

    /// Whether `payload` (the one this descriptor was parsed from) starts a keyframe: first
    /// packet of the frame and the payload header's inverse keyframe bit `P` is 0.
    pub fn is_keyframe(&self, payload: &[u8]) -> bool {
        self.is_start_of_frame() && payload.get(self.header_len).is_some_and(|b| b & 0x01 == 0)
    }

    /// Offset of the picture id field, if present.
    fn picture_id_offset(&self) -> Option<usize> {
        self.picture_id.map(|_| 2)
    }

    /// Offset of the TL0PICIDX field, if present.
    fn tl0_pic_idx_offset(&self) -> Option<usize> {
        self.tl0_pic_idx
            .map(|_| 2 + self.picture_id.map_or(0, PictureId::encoded_len))
    }
}

/// Writes ids a [`Vp8Rewriter`] produced earlier into a copy of the same packet's payload (a
/// retransmission must carry the ids the packet was first sent with, whatever the rewriter's
/// state is now). Fields the descriptor does not have are left alone.
pub fn write_ids(payload: &mut [u8], descriptor: &Vp8Descriptor, ids: &Vp8Rewritten) {
    if let (Some(pid), Some(at), Some(value)) = (
        descriptor.picture_id,
        descriptor.picture_id_offset(),
        ids.picture_id,
    ) && let Some(field) = payload.get_mut(at..)
    {
        let _ = pid.write(field, value);
    }
    if let (Some(at), Some(value)) = (descriptor.tl0_pic_idx_offset(), ids.tl0_pic_idx)
        && let Some(b) = payload.get_mut(at)
    {
        *b = value;
    }
}

/// Whether an RTP payload starts a VP8 keyframe; see [`Vp8Descriptor::is_keyframe`].
pub fn is_keyframe(payload: &[u8]) -> bool {
    Vp8Descriptor::parse(payload).is_some_and(|d| d.is_keyframe(payload))
}

/// The frame size a keyframe header declares (RFC 6386 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8FrameSize {
    /// Width in pixels (14 bits).
    pub width: u16,
    /// Height in pixels (14 bits).
    pub height: u16,
    /// Horizontal upscaling code (2 bits).
    pub horizontal_scale: u8,
    /// Vertical upscaling code (2 bits).
    pub vertical_scale: u8,
}

/// The size declared by the keyframe starting in `payload`; `None` if the payload does not
/// start a keyframe or the keyframe header is truncated or lacks its start code.
pub fn keyframe_size(payload: &[u8]) -> Option<Vp8FrameSize> {
    let d = Vp8Descriptor::parse(payload)?;
    if !d.is_keyframe(payload) {
        return None;
    }
    let header: &[u8; 10] = payload
        .get(d.header_len..d.header_len + 10)?
        .try_into()
        .ok()?;
    let [_, _, _, s0, s1, s2, w0, w1, h0, h1] = *header;
    if [s0, s1, s2] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([w0, w1]);
    let h = u16::from_le_bytes([h0, h1]);
    Some(Vp8FrameSize {
        width: w & 0x3fff,
        height: h & 0x3fff,
        horizontal_scale: (w >> 14) as u8,
        vertical_scale: (h >> 14) as u8,
    })
}

/// Why [`Vp8Rewriter::rewrite`] refused a packet. The payload is left untouched; the packet
/// must not be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Vp8RewriteError {
    /// The payload does not parse to the descriptor given.
    #[error("VP8 descriptor does not match the payload")]
    Mismatch,
    /// The packet's frame precedes the current source's switch point, or is older than the
    /// frames the rewriter remembers.
    #[error("VP8 frame too old to place in the output picture-id line")]
    TooOld,
    /// The packet belongs to a frame reported through [`Vp8Rewriter::drop_frame`].
    #[error("VP8 frame was dropped")]
    FrameDropped,
}

/// The values [`Vp8Rewriter::rewrite`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Rewritten {
    /// The output picture id (in the packet's own 7- or 15-bit form), if it has one.
    pub picture_id: Option<u16>,
    /// The output TL0PICIDX, if the packet has one.
    pub tl0_pic_idx: Option<u8>,
}

/// Frames remembered per source: packets of these frames are rewritten exactly even when
/// reordered across drops. Older frames are refused ([`Vp8RewriteError::TooOld`]).
pub const REWRITER_HISTORY: usize = 32;

/// One frame seen on the current source (forwarded or dropped).
#[derive(Debug, Clone, Copy, Default)]
struct FrameEntry {
    /// Extended input picture id.
    input: i64,
    /// Input minus output for this frame (for a dropped frame: the offset in force before it).
    offset: i64,
    dropped: bool,
}

/// Picture-id mapping of the current source.
#[derive(Debug, Clone)]
struct PictureIdMap {
    /// Width of the source's picture ids (a change is treated as a new source).
    long: bool,
    /// Extended input id of the first frame forwarded from this source (the switch point).
    first_input: i64,
    /// Highest extended input id seen (forwarded or dropped).
    highest_input: i64,
    /// Input minus output for frames newer than `highest_input`.
    offset: i64,
    history: [FrameEntry; REWRITER_HISTORY],
    history_len: usize,
}

/// TL0PICIDX mapping of the current source.
#[derive(Debug, Clone, Copy)]
struct Tl0Map {
    highest_input: i64,
    offset: i64,
}

/// Extends `raw` (modulo `modulus`) to the value closest to `reference`.
fn unwrap(reference: i64, raw: u16, modulus: i64) -> i64 {
    let delta = (i64::from(raw) - reference).rem_euclid(modulus);
    if delta >= modulus / 2 {
        reference + delta - modulus
    } else {
        reference + delta
    }
}

impl PictureIdMap {
    fn find(&self, input: i64) -> Option<&FrameEntry> {
        self.history
            .get(..self.history_len)?
            .iter()
            .rev()
            .find(|e| e.input == input)
    }

    /// Records a frame, evicting the oldest one when full.
    fn record(&mut self, entry: FrameEntry) {
        if self.history_len < REWRITER_HISTORY {
            if let Some(slot) = self.history.get_mut(self.history_len) {
                *slot = entry;
                self.history_len += 1;
            }
            return;
        }
        if let Some(oldest) = self.history.iter_mut().min_by_key(|e| e.input) {
            *oldest = entry;
        }
    }

    /// The offset for an input older than `highest_input` that has not been seen: the one
    /// in force for the closest newer seen frame (no drop can lie between them).
    fn offset_for_unseen(&self, input: i64) -> Option<i64> {
        let seen = self.history.get(..self.history_len)?;
        if input < self.first_input {
            return None;
        }
        if self.history_len == REWRITER_HISTORY && seen.iter().all(|e| e.input > input) {
            return None; // older than what we remember: a drop may have been forgotten
        }
        seen.iter()
            .filter(|e| e.input > input)
            .min_by_key(|e| e.input)
            .map(|e| e.offset)
    }
}

/// Rewrites VP8 picture ids and TL0PICIDX for one consumer so that the subscriber sees one
/// continuous stream across simulcast switches and dropped temporal layers.
///
/// How the routing code drives it, per packet of the consumer's current source:
///
/// * a packet it forwards: [`rewrite`](Self::rewrite) the consumer's copy of the payload,
///   with `switch = true` on the first packet forwarded after any interruption that is *not*
///   a temporal-layer drop — the first packet ever, a simulcast switch, a resume after
///   pause. That packet must start a keyframe (the new source's picture ids restart the
///   output at one past the highest sent; its TL0PICIDX at one past the highest sent). On
///   `Err` the packet must not be forwarded.
/// * a packet of a frame it drops to thin temporal layers: [`drop_frame`](Self::drop_frame)
///   (every packet, or at least one per frame). Later frames then close the hole. Decide per
///   frame: once a frame's packet was forwarded, its other packets must be too, and vice
///   versa. Never drop TL0 frames this way (switch instead).
/// * packets of any other source (the simulcast layers the consumer is not on): neither
///   method — they would be taken for frames of the current source.
///
/// `KEYIDX` is not rewritten (libwebrtc does not send it); `TID`, `Y` and all other bytes
/// are left as they are.
///
/// Frames lost in the network keep their hole in the output, so the decoder still notices
/// the loss, and a retransmission of such a frame fills exactly its hole (if it arrives late
/// and is dropped, its hole is closed as long as no newer frame was forwarded yet). Packets
/// of the same frame always get the same output ids.
#[derive(Debug, Clone, Default)]
pub struct Vp8Rewriter {
    /// Highest extended output picture id sent.
    highest_picture_id: Option<i64>,
    /// Highest extended output TL0PICIDX sent.
    highest_tl0: Option<i64>,
    picture_ids: Option<PictureIdMap>,
    tl0: Option<Tl0Map>,
}

impl Vp8Rewriter {
    /// A rewriter that has sent nothing yet; the first packet keeps its own ids.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites the picture id and TL0PICIDX of `payload` (the consumer's copy; `descriptor`
    /// parsed from identical bytes) in place. `switch` marks the first packet of a new source;
    /// see the type's documentation. Descriptor length and every other byte are unchanged.
    pub fn rewrite(
        &mut self,
        payload: &mut [u8],
        descriptor: &Vp8Descriptor,
        switch: bool,
    ) -> Result<Vp8Rewritten, Vp8RewriteError> {
        if Vp8Descriptor::parse(payload).as_ref() != Some(descriptor) {
            return Err(Vp8RewriteError::Mismatch);
        }
        if switch {
            self.picture_ids = None;
            self.tl0 = None;
        }
        let picture = match (descriptor.picture_id, descriptor.picture_id_offset()) {
            (Some(pid), Some(at)) => Some((pid, at, self.map_picture_id(pid)?)),
            _ => None,
        };
        // Only after the picture id was accepted, so that a refused packet changes nothing.
        let tl0 = match (descriptor.tl0_pic_idx, descriptor.tl0_pic_idx_offset()) {
            (Some(idx), Some(at)) => Some((at, self.map_tl0(idx))),
            _ => None,
        };
        // Everything validated: commit the writes.
        let mut out = Vp8Rewritten {
            picture_id: None,
            tl0_pic_idx: None,
        };
        if let Some((pid, at, value)) = picture {
            let written = value.rem_euclid(i64::from(pid.modulus())) as u16;
            if let Some(field) = payload.get_mut(at..) {
                pid.write(field, written);
            }
            out.picture_id = Some(written);
        }
        if let Some((at, value)) = tl0 {
            let written = value.rem_euclid(256) as u8;
            if let Some(b) = payload.get_mut(at) {
                *b = written;
            }
            out.tl0_pic_idx = Some(written);
        }
        Ok(out)
    }

    /// Records that the frame of `descriptor` (a packet of the current source) is not
    /// forwarded, so that following frames close its picture-id hole. Idempotent per frame;
    /// ignored before the first forwarded packet and for frames already forwarded.
    pub fn drop_frame(&mut self, descriptor: &Vp8Descriptor) {
        let (Some(pid), Some(map)) = (descriptor.picture_id, self.picture_ids.as_mut()) else {
            return;
        };
        if pid.long != map.long {
            return;
        }
        let input = unwrap(map.highest_input, pid.value, i64::from(pid.modulus()));
        if map.find(input).is_some() {
            return;
        }
        if input > map.highest_input {
            map.record(FrameEntry {
                input,
                offset: map.offset,
                dropped: true,
            });
            map.highest_input = input;
            map.offset += 1;
        } else if let Some(offset) = map.offset_for_unseen(input) {
            // A late frame we never saw. If no newer frame was forwarded yet, its output slot
            // is still free: close it by shifting the newer (dropped) frames and the next
            // ones down by one. Otherwise its hole stays, like a loss.
            map.record(FrameEntry {
                input,
                offset,
                dropped: true,
            });
            let len = map.history_len;
            let seen = map.history.get_mut(..len).unwrap_or(&mut []);
            if !seen.iter().any(|e| e.input > input && !e.dropped) {
                for e in seen.iter_mut().filter(|e| e.input > input) {
                    e.offset += 1;
                }
                map.offset += 1;
            }
        }
    }

    /// The extended output picture id for `pid`, updating the mapping.
    fn map_picture_id(&mut self, pid: PictureId) -> Result<i64, Vp8RewriteError> {
        let modulus = i64::from(pid.modulus());
        let map = match &mut self.picture_ids {
            Some(map) if map.long == pid.long => map,
            slot => {
                // A new source (or a change of picture-id width): continue the output line.
                let input = i64::from(pid.value);
                let first_out = self.highest_picture_id.map_or(input, |h| h + 1);
                slot.insert(PictureIdMap {
                    long: pid.long,
                    first_input: input,
                    highest_input: input - 1,
                    offset: input - first_out,
                    history: [FrameEntry::default(); REWRITER_HISTORY],
                    history_len: 0,
                })
            }
        };
        let input = unwrap(map.highest_input, pid.value, modulus);
        let output = if let Some(seen) = map.find(input) {
            if seen.dropped {
                return Err(Vp8RewriteError::FrameDropped);
            }
            input - seen.offset
        } else if input > map.highest_input {
            map.record(FrameEntry {
                input,
                offset: map.offset,
                dropped: false,
            });
            map.highest_input = input;
            input - map.offset
        } else {
            let offset = map
                .offset_for_unseen(input)
                .ok_or(Vp8RewriteError::TooOld)?;
            map.record(FrameEntry {
                input,
                offset,
                dropped: false,
            });
            input - offset
        };
        self.highest_picture_id = Some(self.highest_picture_id.map_or(output, |h| h.max(output)));
        Ok(output)
    }

    /// The extended output TL0PICIDX for `idx`, updating the mapping.
    fn map_tl0(&mut self, idx: u8) -> i64 {
        let map = match &mut self.tl0 {
            Some(map) => map,
            slot => {
                let input = i64::from(idx);
                let first_out = self.highest_tl0.map_or(input, |h| h + 1);
                slot.insert(Tl0Map {
                    highest_input: input,
                    offset: input - first_out,
                })
            }
        };
        let input = unwrap(map.highest_input, u16::from(idx), 256);
        map.highest_input = map.highest_input.max(input);
        let output = input - map.offset;
        self.highest_tl0 = Some(self.highest_tl0.map_or(output, |h| h.max(output)));
        output
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use crate::codecs::test_util;

    /// A VP8 payload: descriptor with the given picture id `(value, long)`, TL0PICIDX and
    /// `(TID, Y)`, `S = 1`, `PID = 0`, then `vp8` as the VP8 payload.
    pub(crate) fn packet(
        picture_id: Option<(u16, bool)>,
        tl0: Option<u8>,
        tid: Option<(u8, bool)>,
        vp8: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0x10u8];
        let mut x = 0u8;
        let mut ext = Vec::new();
        if let Some((v, long)) = picture_id {
            x |= 0x80;
            if long {
                ext.extend_from_slice(&(0x8000 | v).to_be_bytes());
            } else {
                ext.push(v as u8 & 0x7f);
            }
        }
        if let Some(t) = tl0 {
            x |= 0x40;
            ext.push(t);
        }
        if let Some((t, y)) = tid {
            x |= 0x20;
            ext.push((t << 6) | (u8::from(y) << 5));
        }
        if x != 0 {
            p[0] |= 0x80;
            p.push(x);
            p.extend_from_slice(&ext);
        }
        p.extend_from_slice(vp8);
        p
    }

    /// The first 10 bytes of a real 640x480 keyframe: frame tag (P = 0, version 0, shown,
    /// first partition size 530), start code `9d 01 2a`, width 640, height 480 (LE, scale 0).
    pub(crate) const KEYFRAME_HEADER: [u8; 10] =
        [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];

    pub(crate) fn keyframe_packet(
        picture_id: Option<(u16, bool)>,
        tl0: Option<u8>,
        tid: Option<(u8, bool)>,
    ) -> Vec<u8> {
        packet(picture_id, tl0, tid, &KEYFRAME_HEADER)
    }

    /// A delta-frame payload (P = 1).
    const DELTA: [u8; 3] = [0x31, 0x10, 0x00];

    #[test]
    fn parses_every_descriptor_field() {
        // X N S PID=3; I L T K; 15-bit picture id 0x1234; TL0PICIDX 0x56; TID 2 Y KEYIDX 0x11.
        let p = [0xb3, 0xf0, 0x92, 0x34, 0x56, 0xb1, 0xaa];
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.non_reference && d.start_of_partition);
        assert_eq!(d.partition_index, 3);
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x1234,
                long: true
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(0x56));
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_index, Some(0x11));
        assert_eq!(d.header_len, 6);
        assert!(!d.is_start_of_frame());

        // 7-bit picture id, K only: TID/Y ignored.
        let p = [0x90, 0x90, 0x05, 0xff, 0xaa];
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 5,
                long: false
            })
        );
        assert_eq!(
            (d.temporal_id, d.layer_sync, d.key_index),
            (None, false, Some(0x1f))
        );
        assert_eq!(d.header_len, 4);

        // No X: one-byte descriptor.
        let d = Vp8Descriptor::parse(&[0x10, 0xaa]).unwrap();
        assert_eq!((d.header_len, d.picture_id, d.tl0_pic_idx), (1, None, None));
        assert!(d.is_start_of_frame());
    }

    #[test]
    fn rejects_truncated_descriptors() {
        let full = [0xb3, 0xf0, 0x92, 0x34, 0x56, 0xb1, 0xaa];
        for len in 0..full.len() {
            assert_eq!(Vp8Descriptor::parse(&full[..len]), None, "len {len}");
        }
        assert_eq!(Vp8Descriptor::parse(&[0x90, 0x80, 0x80]), None); // 15-bit id cut short
    }

    #[test]
    fn detects_keyframes_and_their_size() {
        let key = keyframe_packet(Some((100, true)), Some(3), Some((0, false)));
        assert!(is_keyframe(&key));
        assert_eq!(
            keyframe_size(&key),
            Some(Vp8FrameSize {
                width: 640,
                height: 480,
                horizontal_scale: 0,
                vertical_scale: 0
            })
        );
        // Scale bits are split off.
        let mut scaled = key.clone();
        let n = scaled.len();
        scaled[n - 3] |= 0x40; // horizontal scale 1
        scaled[n - 1] |= 0xc0; // vertical scale 3
        let size = keyframe_size(&scaled).unwrap();
        assert_eq!(
            (
                size.width,
                size.height,
                size.horizontal_scale,
                size.vertical_scale
            ),
            (640, 480, 1, 3)
        );

        let delta = packet(Some((101, true)), Some(3), Some((2, false)), &DELTA);
        assert!(!is_keyframe(&delta));
        assert_eq!(keyframe_size(&delta), None);

        // P = 0 but not the start of partition 0: not a keyframe start.
        let mut middle = key.clone();
        middle[0] &= !0x10;
        assert!(!is_keyframe(&middle));
        let mut other_partition = key.clone();
        other_partition[0] |= 0x01;
        assert!(!is_keyframe(&other_partition));

        // Bad start code or truncated header: keyframe, but no size.
        let mut bad = key.clone();
        bad[n - 5] = 0x2b;
        assert!(is_keyframe(&bad));
        assert_eq!(keyframe_size(&bad), None);
        assert_eq!(keyframe_size(&key[..n - 1]), None);
        // Descriptor without payload is not a packet.
        assert!(!is_keyframe(&key[..key.len() - KEYFRAME_HEADER.len()]));
    }

    /// Forwards `p` through `rw` and returns the rewritten ids as seen by a re-parse.
    fn forward(
        rw: &mut Vp8Rewriter,
        p: &[u8],
        switch: bool,
    ) -> Result<(Option<u16>, Option<u8>), Vp8RewriteError> {
        let d = Vp8Descriptor::parse(p).unwrap();
        let mut copy = p.to_vec();
        let result = rw.rewrite(&mut copy, &d, switch);
        if result.is_err() {
            assert_eq!(copy, p, "a refused packet is left untouched");
        }
        let out = result?;
        let again = Vp8Descriptor::parse(&copy).unwrap();
        assert_eq!(again.header_len, d.header_len);
        assert_eq!(again.temporal_id, d.temporal_id);
        assert_eq!(
            copy[d.header_len..],
            p[d.header_len..],
            "VP8 payload untouched"
        );
        let pid = again.picture_id.map(|p| p.value);
        assert_eq!(pid, out.picture_id);
        assert_eq!(again.tl0_pic_idx, out.tl0_pic_idx);
        Ok((pid, again.tl0_pic_idx))
    }

    /// Temporal pattern of libwebrtc's three-layer VP8: TID 0, 2, 1, 2, ...
    fn tid_of(frame: u16) -> u8 {
        [0, 2, 1, 2][usize::from(frame % 4)]
    }

    #[test]
    fn first_packet_keeps_its_ids_and_same_frame_packets_share_them() {
        let mut rw = Vp8Rewriter::new();
        let key = keyframe_packet(Some((1000, true)), Some(50), Some((0, false)));
        assert_eq!(forward(&mut rw, &key, true), Ok((Some(1000), Some(50))));
        let mut second = packet(Some((1000, true)), Some(50), Some((0, false)), &DELTA);
        second[0] &= !0x10; // continuation packet of the same frame
        assert_eq!(forward(&mut rw, &second, false), Ok((Some(1000), Some(50))));
        let next = packet(Some((1001, true)), Some(50), Some((2, false)), &DELTA);
        assert_eq!(forward(&mut rw, &next, false), Ok((Some(1001), Some(50))));
    }

    #[test]
    fn dropped_temporal_layers_leave_no_picture_id_gap() {
        let mut rw = Vp8Rewriter::new();
        let mut sent = Vec::new();
        for frame in 0..40u16 {
            let pid = 32_700 + frame; // wraps the 15-bit space
            let tl0 = (250 + frame / 4) as u8; // wraps the 8-bit space
            let tid = tid_of(frame);
            let p = packet(
                Some((pid & 0x7fff, true)),
                Some(tl0),
                Some((tid, tid == 1)),
                &DELTA,
            );
            // Two packets per frame.
            for packet_index in 0..2 {
                if tid == 2 {
                    rw.drop_frame(&Vp8Descriptor::parse(&p).unwrap());
                } else {
                    let out = forward(&mut rw, &p, frame == 0 && packet_index == 0).unwrap();
                    sent.push((frame, out));
                }
            }
        }
        let mut previous: Option<(u16, u8, u16)> = None;
        for (frame, (pid, tl0)) in sent {
            let (pid, tl0) = (pid.unwrap(), tl0.unwrap());
            if let Some((ppid, ptl0, pframe)) = previous {
                if pframe == frame {
                    assert_eq!((pid, tl0), (ppid, ptl0));
                } else {
                    assert_eq!(pid, (ppid + 1) & 0x7fff, "frame {frame}");
                    let expected_tl0 = if tid_of(frame) == 0 {
                        ptl0.wrapping_add(1)
                    } else {
                        ptl0
                    };
                    assert_eq!(tl0, expected_tl0, "frame {frame}");
                }
            }
            previous = Some((pid, tl0, frame));
        }
    }

    #[test]
    fn simulcast_switch_continues_both_lines() {
        let mut rw = Vp8Rewriter::new();
        // Low layer: picture ids around 5000, TL0PICIDX around 10.
        for f in 0..5u16 {
            let p = packet(
                Some((5000 + f, true)),
                Some(10 + f as u8),
                Some((0, false)),
                &DELTA,
            );
            forward(&mut rw, &p, f == 0).unwrap();
        }
        // Switch to the high layer at its keyframe: ids 20000 and 200 become 5005 and 15.
        let key = keyframe_packet(Some((20_000, true)), Some(200), Some((0, false)));
        assert_eq!(forward(&mut rw, &key, true), Ok((Some(5005), Some(15))));
        let next = packet(Some((20_001, true)), Some(200), Some((1, true)), &DELTA);
        assert_eq!(forward(&mut rw, &next, false), Ok((Some(5006), Some(15))));
        let next = packet(Some((20_002, true)), Some(201), Some((0, false)), &DELTA);
        assert_eq!(forward(&mut rw, &next, false), Ok((Some(5007), Some(16))));
        // Back down: continues again, even though the low layer's ids are far behind.
        let key = keyframe_packet(Some((5010, true)), Some(20), Some((0, false)));
        assert_eq!(forward(&mut rw, &key, true), Ok((Some(5008), Some(17))));
        // A packet of the new source older than its switch point is refused.
        let old = packet(Some((5009, true)), Some(19), Some((0, false)), &DELTA);
        assert_eq!(forward(&mut rw, &old, false), Err(Vp8RewriteError::TooOld));
    }

    #[test]
    fn seven_bit_picture_ids_wrap_at_128_and_keep_their_length() {
        let mut rw = Vp8Rewriter::new();
        let mut expected = 120u16;
        for f in 0..20u16 {
            let p = packet(Some(((120 + f) % 128, false)), None, None, &DELTA);
            let (pid, _) = forward(&mut rw, &p, f == 0).unwrap();
            assert_eq!(pid, Some(expected));
            expected = (expected + 1) % 128;
        }
        // Switching to a 15-bit source continues the same line, written in 15 bits.
        let key = keyframe_packet(Some((7000, true)), None, None);
        let (pid, _) = forward(&mut rw, &key, true).unwrap();
        assert_eq!(pid, Some(140)); // 120 + 20: the extended line, not reduced to 7 bits
        // And back to 7 bits: the line continues modulo 128.
        let key = keyframe_packet(Some((3, false)), None, None);
        assert_eq!(forward(&mut rw, &key, true).unwrap().0, Some(141 % 128));
    }

    #[test]
    fn losses_keep_their_hole_and_retransmissions_fill_it() {
        let mut rw = Vp8Rewriter::new();
        let p = |pid: u16, tid: u8| packet(Some((pid, true)), Some(0), Some((tid, false)), &DELTA);
        assert_eq!(forward(&mut rw, &p(100, 0), true).unwrap().0, Some(100));
        // 101 (TID 2) dropped, 102 lost in the network, 103 (TID 2) dropped, 104 arrives.
        rw.drop_frame(&Vp8Descriptor::parse(&p(101, 2)).unwrap());
        rw.drop_frame(&Vp8Descriptor::parse(&p(103, 2)).unwrap());
        assert_eq!(forward(&mut rw, &p(104, 0), false).unwrap().0, Some(102));
        // 102 is retransmitted: it takes the hole between 100 and 102.
        assert_eq!(forward(&mut rw, &p(102, 1), false).unwrap().0, Some(101));
        // Packets of a dropped frame stay dropped; drop_frame after forwarding is ignored.
        assert_eq!(
            forward(&mut rw, &p(103, 2), false),
            Err(Vp8RewriteError::FrameDropped)
        );
        rw.drop_frame(&Vp8Descriptor::parse(&p(104, 0)).unwrap());
        assert_eq!(forward(&mut rw, &p(104, 0), false).unwrap().0, Some(102));
        assert_eq!(forward(&mut rw, &p(105, 1), false).unwrap().0, Some(103));
    }

    #[test]
    fn a_late_dropped_frame_closes_its_hole_until_a_newer_frame_is_forwarded() {
        let mut rw = Vp8Rewriter::new();
        let p = |pid: u16| packet(Some((pid, true)), None, None, &DELTA);
        let drop =
            |rw: &mut Vp8Rewriter, pid| rw.drop_frame(&Vp8Descriptor::parse(&p(pid)).unwrap());
        assert_eq!(forward(&mut rw, &p(100), true).unwrap().0, Some(100));
        // 101 is late, 102 dropped, then 101 arrives and is dropped too: 103 follows 100.
        drop(&mut rw, 102);
        drop(&mut rw, 101);
        assert_eq!(forward(&mut rw, &p(103), false).unwrap().0, Some(101));
        // 104 late, 105 forwarded, then 104 arrives and is dropped: its hole must stay.
        assert_eq!(forward(&mut rw, &p(105), false).unwrap().0, Some(103));
        drop(&mut rw, 104);
        assert_eq!(forward(&mut rw, &p(106), false).unwrap().0, Some(104));
        assert_eq!(
            forward(&mut rw, &p(104), false),
            Err(Vp8RewriteError::FrameDropped)
        );
    }

    #[test]
    fn reordered_packets_across_a_drop_get_their_frame_ids() {
        let mut rw = Vp8Rewriter::new();
        let p = |pid: u16| packet(Some((pid, true)), None, None, &DELTA);
        forward(&mut rw, &p(10), true).unwrap();
        forward(&mut rw, &p(11), false).unwrap();
        rw.drop_frame(&Vp8Descriptor::parse(&p(12)).unwrap());
        assert_eq!(forward(&mut rw, &p(13), false).unwrap().0, Some(12));
        // A late packet of frame 11 after the drop still maps to 11.
        assert_eq!(forward(&mut rw, &p(11), false).unwrap().0, Some(11));
    }

    #[test]
    fn frames_older_than_the_history_are_refused() {
        let mut rw = Vp8Rewriter::new();
        let p = |pid: u16| packet(Some((pid, true)), None, None, &DELTA);
        forward(&mut rw, &p(0), true).unwrap();
        for f in (2..200).step_by(2) {
            forward(&mut rw, &p(f), false).unwrap();
        }
        // Frame 1 was never seen and is far behind the remembered frames.
        assert_eq!(forward(&mut rw, &p(1), false), Err(Vp8RewriteError::TooOld));
        // A recent unseen one is still placed in its hole.
        assert_eq!(forward(&mut rw, &p(197), false).unwrap().0, Some(197));
    }

    #[test]
    fn mismatched_descriptor_is_refused_without_writing() {
        let mut rw = Vp8Rewriter::new();
        let p = packet(Some((300, true)), Some(4), None, &DELTA);
        let d = Vp8Descriptor::parse(&p).unwrap();
        let mut short = p[..d.header_len].to_vec();
        assert_eq!(
            rw.rewrite(&mut short, &d, true),
            Err(Vp8RewriteError::Mismatch)
        );
        let other = packet(Some((300, false)), Some(4), None, &[0xaa, 0xbb, 0xcc]);
        let mut copy = other.clone();
        assert_eq!(
            rw.rewrite(&mut copy, &d, true),
            Err(Vp8RewriteError::Mismatch)
        );
        assert_eq!(copy, other);
    }

    #[test]
    fn packets_without_ids_pass_unchanged() {
        let mut rw = Vp8Rewriter::new();
        let p = packet(None, None, Some((1, true)), &DELTA);
        assert_eq!(forward(&mut rw, &p, true), Ok((None, None)));
        rw.drop_frame(&Vp8Descriptor::parse(&p).unwrap());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut rw = Vp8Rewriter::new();
        let mut n = 0u32;
        test_util::sweep(|data| {
            let _ = is_keyframe(data);
            let _ = keyframe_size(data);
            if let Some(d) = Vp8Descriptor::parse(data) {
                assert!(d.header_len < data.len() && d.header_len <= 6);
                n = n.wrapping_add(1);
                let mut copy = data.to_vec();
                if n.is_multiple_of(3) {
                    rw.drop_frame(&d);
                } else if rw.rewrite(&mut copy, &d, n.is_multiple_of(7)).is_ok() {
                    assert_eq!(copy.len(), data.len());
                    let again = Vp8Descriptor::parse(&copy).unwrap();
                    assert_eq!(again.header_len, d.header_len);
                }
            }
        });
    }
}

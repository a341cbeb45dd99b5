//! Transport-wide congestion control feedback, both directions
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01).
//!
//! A browser estimates its own send bandwidth from the arrival times its receiver reports for
//! every packet carrying the transport-wide sequence number header extension. The SFU is that
//! receiver for every publisher: [`TwccRecorder`] remembers the arrival time of each transport
//! sequence number (16-bit, extended to 64 bits across wraps, reordering and duplicates
//! tolerated) in a fixed ring of [`MAX_TRACKED`] entries, and
//! [`TwccRecorder::build_feedback`] turns what was not yet reported into RTCP transport-wide
//! feedback packets (RTPFB, PT = 205, FMT = 15) of at most [`MAX_FEEDBACK_SIZE`] bytes each.
//! In the other direction a subscriber's browser reports on what the SFU sent it:
//! [`TwccFeedback::parse`] validates one such packet and iterates its statuses as a view.
//!
//! This module owns the wire format and the per-transport bookkeeping only. It must not read a
//! clock (arrival and call times are passed in), send anything, decide when feedback is due
//! (the caller's timer does, every 50–100 ms), estimate bandwidth, or know about transports or
//! streams. Recording allocates nothing; building reuses the recorder's scratch buffers.
//!
//! ## Reaching a feedback packet from `crate::rtcp`
//!
//! [`crate::rtcp::RtcpReader`] reports transport-wide feedback as
//! `RtcpPart::Other { packet_type: 205, format: 15 }` without its bytes. The caller locates the
//! packet itself — [`feedback_packets`] walks a (decrypted, validated) compound packet and
//! yields each PT = 205 / FMT = 15 packet with its header — and hands those bytes to
//! [`TwccFeedback::parse`].
//!
//! ## Time on the wire
//!
//! Arrival times are quantised to 250 µs *ticks* counted from a fixed base: the arrival
//! instant of the first packet the recorder ever saw (arrivals before it count as tick 0).
//! Each feedback's 24-bit reference time is `floor(ticks of its first received packet / 256)`
//! (256 ticks = 64 ms) modulo 2^24, so it wraps every 2^32 ticks (about 12.4 days) — the
//! sender only uses differences. Receive deltas are exact tick differences: the packet with
//! ticks `t` is reconstructed as `reference time × 64 ms + Σ deltas = t × 250 µs` (modulo the
//! wrap), i.e. within 250 µs below its true arrival, with no rounding drift.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::seq_manager::extend_sequence;

/// RTCP packet type of transport-layer feedback (RTPFB).
pub const PACKET_TYPE: u8 = 205;
/// Feedback message type (FMT) of transport-wide congestion control feedback.
pub const FORMAT: u8 = 15;
/// Transport sequence numbers a recorder remembers: the ring size. Pending packets older than
/// the newest minus this are dropped unreported; late arrivals older than that are ignored.
pub const MAX_TRACKED: usize = 4096;
/// Largest feedback packet written, in bytes, header and padding included.
pub const MAX_FEEDBACK_SIZE: usize = 1200;
/// Most packet statuses one feedback may carry; [`TwccFeedback::parse`] rejects more.
/// libwebrtc's receiver tracks at most 2^15 packets, so it never reports more than this.
pub const MAX_STATUS_COUNT: u16 = 1 << 15;
/// Resolution of receive deltas.
pub const DELTA_TICK: Duration = Duration::from_micros(250);
/// Resolution of the reference time (256 delta ticks).
pub const REFERENCE_TICK: Duration = Duration::from_millis(64);

/// Separate feedback packets for late arrivals one [`TwccRecorder::build_feedback`] writes at
/// most; further ones wait for the next call.
const MAX_LATE_SEGMENTS: usize = 8;
/// Fixed part of a feedback packet: RTCP header, two SSRCs, base/count, reference/fb count.
const FIXED_LEN: usize = 20;
/// Longest run a run-length chunk encodes (13 bits).
const MAX_RUN: usize = 0x1fff;
/// Symbols in a two-bit status vector chunk.
const VECTOR_SYMBOLS: usize = 7;
/// Arrival ticks are clamped here so tick arithmetic never overflows.
const MAX_TICKS: u64 = 1 << 60;
/// Set in [`Slot::ticks`] once the arrival has been reported.
const REPORTED: u64 = 1 << 63;
/// Extended sequence number of the first packet (room to extend backwards).
const FIRST_EXT: u64 = 0x1_0000;

const SYMBOL_NOT_RECEIVED: u8 = 0;
const SYMBOL_SMALL_DELTA: u8 = 1;
const SYMBOL_LARGE_DELTA: u8 = 2;

/// One ring entry: the arrival of extended sequence number `ext` (the entry means "not
/// received" for any other sequence number mapping to the same slot).
#[derive(Debug, Clone, Copy)]
struct Slot {
    ext: u64,
    /// Arrival ticks, with [`REPORTED`] set once reported as received.
    ticks: u64,
}

const EMPTY_SLOT: Slot = Slot {
    ext: u64::MAX,
    ticks: 0,
};

/// What the ring knows about one extended sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Missing,
    Unreported(u64),
    Reported,
}

/// Receive side: arrival times of one publisher transport's packets, and the feedback on them.
///
/// Memory is one fixed ring of [`MAX_TRACKED`] entries (16 bytes each), allocated with the
/// first recorded packet (a subscriber's transport never records one, and 64 KiB for nothing
/// per transport was most of what a subscriber cost), plus scratch buffers bounded by
/// [`MAX_FEEDBACK_SIZE`]. Each packet is reported as received at most once; a
/// packet reported as not received that arrives later (and is still within the ring) is
/// reported as received by a later feedback, like libwebrtc.
#[derive(Clone)]
pub struct TwccRecorder {
    slots: Box<[Slot]>,
    /// Arrival of the first packet: tick 0. `None` before any packet.
    base: Option<Instant>,
    /// First extended sequence number not yet covered by a feedback.
    start: u64,
    /// One past the highest extended sequence number recorded.
    end: u64,
    /// Lowest late arrival (below `start`) not yet reported, if any.
    late_min: Option<u64>,
    /// Feedback packet count of the next packet written.
    fb_count: u8,
    /// Scratch: status chunks of the packet being built.
    chunks: Vec<u16>,
    /// Scratch: encoded receive deltas of the packet being built.
    deltas: Vec<u8>,
}

impl std::fmt::Debug for TwccRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwccRecorder")
            .field("base", &self.base)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("late_min", &self.late_min)
            .field("fb_count", &self.fb_count)
            .finish_non_exhaustive()
    }
}

impl Default for TwccRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl TwccRecorder {
    /// An empty recorder; the time base is fixed by the first recorded packet.
    pub fn new() -> Self {
        Self {
            slots: Box::default(),
            base: None,
            start: 0,
            end: 0,
            late_min: None,
            fb_count: 0,
            chunks: Vec::new(),
            deltas: Vec::new(),
        }
    }

    /// The instant reference time 0 stands for: the first recorded arrival.
    pub fn time_base(&self) -> Option<Instant> {
        self.base
    }

    /// Sequence numbers the next feedback's main part would cover (received or not); at most
    /// [`MAX_TRACKED`]. Late arrivals come on top.
    pub fn pending(&self) -> usize {
        usize::try_from(self.end - self.start).unwrap_or(usize::MAX)
    }

    /// Whether [`Self::build_feedback`] would write anything now.
    pub fn has_unreported(&self) -> bool {
        self.start < self.end || self.late_min.is_some()
    }

    /// Records the arrival of a packet whose transport-wide sequence number header extension
    /// (two bytes, big-endian) holds `transport_seq`. Duplicates keep the first arrival;
    /// packets older than the ring are ignored. Allocates only the ring, on the first packet.
    pub fn record(&mut self, transport_seq: u16, arrival: Instant) {
        let Some(base) = self.base else {
            self.base = Some(arrival);
            let ext = FIRST_EXT | u64::from(transport_seq);
            self.start = ext;
            self.end = ext + 1;
            self.store(ext, 0);
            return;
        };
        let ticks = ticks_since(base, arrival);
        let ext = extend_sequence(self.end - 1, transport_seq);
        if ext >= self.end {
            self.end = ext + 1;
            // Drop the oldest pending packets rather than grow.
            self.start = self.start.max(self.floor());
            self.store(ext, ticks);
            return;
        }
        if ext < self.floor() || self.state(ext) != SlotState::Missing {
            return; // too old, or a duplicate
        }
        self.store(ext, ticks);
        if ext < self.start {
            // Reported as not received (or dropped) already: report it late.
            self.late_min = Some(self.late_min.map_or(ext, |m| m.min(ext)));
        }
    }

    /// Appends RTCP transport-wide feedback packets for everything recorded since the last
    /// call (and late arrivals of packets reported as not received), then forgets it. Returns
    /// false if there was nothing to report.
    ///
    /// Usually one packet is written; more when the statuses do not fit [`MAX_FEEDBACK_SIZE`],
    /// when two consecutive arrivals are further apart than a 16-bit delta reaches (±8.19 s),
    /// and one per group of late arrivals. Each packet is a complete RTCP packet of at most
    /// [`MAX_FEEDBACK_SIZE`] bytes; a caller that sends `out` as one compound packet must split
    /// it at packet boundaries ([`feedback_packets`]) when it exceeds its MTU. `now` is the
    /// call time; the content depends only on recorded arrivals.
    pub fn build_feedback(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut Vec<u8>,
    ) -> bool {
        let _ = now;
        if self.base.is_none() {
            return false;
        }
        let ssrcs = (sender_ssrc, media_ssrc);
        let mut wrote = false;
        let floor = self.floor();
        // Late arrivals: maximal groups of unreported arrivals below `start`, separated by
        // packets already reported as received (never reported twice). Packets still missing
        // inside a group are reported as not received again, which is harmless.
        let mut open: Option<(u64, u64)> = None; // (first, last) late arrival of the group
        if let Some(late_min) = self.late_min.take() {
            let mut groups = 0;
            let mut ext = late_min.max(floor);
            while ext < self.start {
                match self.state(ext) {
                    SlotState::Unreported(_) => match &mut open {
                        Some((_, last)) => *last = ext,
                        None if groups == MAX_LATE_SEGMENTS => {
                            self.late_min = Some(ext);
                            break;
                        }
                        None => open = Some((ext, ext)),
                    },
                    SlotState::Reported => {
                        if let Some((first, last)) = open.take() {
                            self.write_range(first, last + 1, ssrcs, out);
                            groups += 1;
                            wrote = true;
                        }
                    }
                    SlotState::Missing => {}
                }
                ext += 1;
            }
        }
        // The main part, merged with a late group reaching up to it.
        match open {
            Some((first, _)) if self.start < self.end => {
                self.write_range(first, self.end, ssrcs, out)
            }
            Some((first, last)) => self.write_range(first, last + 1, ssrcs, out),
            None if self.start < self.end => self.write_range(self.start, self.end, ssrcs, out),
            None => return wrote,
        }
        self.start = self.end;
        true
    }

    /// Lowest extended sequence number the ring still holds.
    fn floor(&self) -> u64 {
        self.end.saturating_sub(MAX_TRACKED as u64)
    }

    fn index(ext: u64) -> usize {
        (ext % MAX_TRACKED as u64) as usize
    }

    fn state(&self, ext: u64) -> SlotState {
        match self.slots.get(Self::index(ext)) {
            Some(slot) if slot.ext == ext && slot.ticks & REPORTED != 0 => SlotState::Reported,
            Some(slot) if slot.ext == ext => SlotState::Unreported(slot.ticks),
            _ => SlotState::Missing,
        }
    }

    fn store(&mut self, ext: u64, ticks: u64) {
        if self.slots.is_empty() {
            self.slots = vec![EMPTY_SLOT; MAX_TRACKED].into_boxed_slice();
        }
        if let Some(slot) = self.slots.get_mut(Self::index(ext)) {
            *slot = Slot { ext, ticks };
        }
    }

    fn mark_reported(&mut self, ext: u64) {
        if let Some(slot) = self.slots.get_mut(Self::index(ext)) {
            slot.ticks |= REPORTED;
        }
    }

    /// Writes feedback packets covering extended sequence numbers `from..to` (all in the
    /// ring, none reported as received yet) and marks the received ones reported.
    fn write_range(&mut self, from: u64, to: u64, ssrcs: (u32, u32), out: &mut Vec<u8>) {
        let mut ext = from;
        while ext < to {
            let first = ext;
            self.chunks.clear();
            self.deltas.clear();
            let mut encoder = ChunkEncoder::default();
            let mut count: u16 = 0;
            // Reference time (64 ms units) and the running reconstructed arrival, in ticks.
            let mut reference: Option<u64> = None;
            let mut last: u64 = 0;
            while ext < to && count < MAX_STATUS_COUNT {
                let state = self.state(ext);
                let (symbol, delta) = match state {
                    SlotState::Unreported(ticks) => {
                        // The first received packet sets the reference time to its 64 ms
                        // floor, so its own delta is below 256.
                        let origin = if reference.is_some() {
                            last
                        } else {
                            ticks & !0xff
                        };
                        let delta = ticks as i64 - origin as i64;
                        match (u8::try_from(delta), i16::try_from(delta)) {
                            (Ok(small), _) => (SYMBOL_SMALL_DELTA, Delta::Small(small)),
                            (_, Ok(large)) => (SYMBOL_LARGE_DELTA, Delta::Large(large)),
                            // Beyond ±8.19 s of the previous one: the next packet starts here.
                            _ => break,
                        }
                    }
                    _ => (SYMBOL_NOT_RECEIVED, Delta::None),
                };
                let mut trial = encoder;
                trial.push(symbol, &mut |_| {});
                let size = FIXED_LEN + trial.bytes() + self.deltas.len() + delta.len();
                if count > 0 && size.next_multiple_of(4) > MAX_FEEDBACK_SIZE {
                    break;
                }
                let chunks = &mut self.chunks;
                encoder.push(symbol, &mut |c| chunks.push(c));
                match delta {
                    Delta::Small(d) => self.deltas.push(d),
                    Delta::Large(d) => self.deltas.extend_from_slice(&d.to_be_bytes()),
                    Delta::None => {}
                }
                if let SlotState::Unreported(ticks) = state {
                    reference.get_or_insert(ticks >> 8);
                    last = ticks;
                    self.mark_reported(ext);
                }
                count += 1;
                ext += 1;
            }
            if count == 0 {
                break; // unreachable: the first status always fits
            }
            let chunks = &mut self.chunks;
            encoder.finish(&mut |c| chunks.push(c));
            self.write_packet(first as u16, count, reference.unwrap_or(0), ssrcs, out);
        }
    }

    /// Appends one feedback packet from the scratch chunks and deltas.
    fn write_packet(
        &mut self,
        base_seq: u16,
        count: u16,
        reference: u64,
        (sender_ssrc, media_ssrc): (u32, u32),
        out: &mut Vec<u8>,
    ) {
        let len = FIXED_LEN + 2 * self.chunks.len() + self.deltas.len();
        let padded = len.next_multiple_of(4);
        let pad = padded - len;
        out.push(0x80 | (if pad > 0 { 0x20 } else { 0 }) | FORMAT);
        out.push(PACKET_TYPE);
        out.extend_from_slice(&((padded / 4 - 1) as u16).to_be_bytes());
        out.extend_from_slice(&sender_ssrc.to_be_bytes());
        out.extend_from_slice(&media_ssrc.to_be_bytes());
        out.extend_from_slice(&base_seq.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        let reference = (reference & 0xff_ffff) as u32;
        out.extend_from_slice(&((reference << 8) | u32::from(self.fb_count)).to_be_bytes());
        for chunk in &self.chunks {
            out.extend_from_slice(&chunk.to_be_bytes());
        }
        out.extend_from_slice(&self.deltas);
        if pad > 0 {
            // RTCP padding: zeros, the last octet counting the padding octets.
            out.extend(std::iter::repeat_n(0, pad - 1));
            out.push(pad as u8);
        }
        self.fb_count = self.fb_count.wrapping_add(1);
    }
}

fn ticks_since(base: Instant, arrival: Instant) -> u64 {
    let ticks = arrival.saturating_duration_since(base).as_micros() / 250;
    u64::try_from(ticks).unwrap_or(MAX_TICKS).min(MAX_TICKS)
}

#[derive(Debug, Clone, Copy)]
enum Delta {
    None,
    Small(u8),
    Large(i16),
}

impl Delta {
    fn len(self) -> usize {
        match self {
            Delta::None => 0,
            Delta::Small(_) => 1,
            Delta::Large(_) => 2,
        }
    }
}

/// Greedy packet-status chunk encoder: a run-length chunk for each run of at least seven
/// equal symbols (and for a final run), two-bit status vector chunks of seven symbols
/// otherwise. Every chunk but the last covers at least seven symbols.
#[derive(Debug, Clone, Copy, Default)]
struct ChunkEncoder {
    /// Symbols buffered (beyond seven only while they are all equal).
    len: usize,
    first: u8,
    all_same: bool,
    /// The buffered symbols as a two-bit status vector chunk.
    vector: u16,
    /// Chunks emitted so far.
    emitted: usize,
}

impl ChunkEncoder {
    fn push(&mut self, symbol: u8, sink: &mut impl FnMut(u16)) {
        if self.len >= VECTOR_SYMBOLS {
            if self.all_same && symbol == self.first && self.len < MAX_RUN {
                self.len += 1;
                return;
            }
            self.finish(sink);
        }
        if self.len == 0 {
            self.first = symbol;
            self.all_same = true;
            self.vector = 0xc000;
        } else if symbol != self.first {
            self.all_same = false;
        }
        self.vector |= u16::from(symbol & 3) << (12 - 2 * self.len);
        self.len += 1;
    }

    /// Emits the buffered symbols (the last chunk may cover fewer than seven).
    fn finish(&mut self, sink: &mut impl FnMut(u16)) {
        if self.len == 0 {
            return;
        }
        sink(if self.all_same {
            (u16::from(self.first & 3) << 13) | self.len as u16
        } else {
            self.vector
        });
        self.emitted += 1;
        self.len = 0;
    }

    /// Chunk bytes once finished.
    fn bytes(&self) -> usize {
        2 * (self.emitted + usize::from(self.len > 0))
    }
}

/// Why a transport-wide feedback packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TwccError {
    /// The buffer ends before the header, the declared length, or the data the statuses need.
    #[error("transport-wide feedback truncated")]
    Truncated,
    /// Version field is not 2.
    #[error("RTCP version is not 2")]
    BadVersion,
    /// Not PT = 205 with FMT = 15.
    #[error("not a transport-wide feedback packet")]
    NotTransportFeedback,
    /// The padding count is zero or larger than the packet allows.
    #[error("bad RTCP padding")]
    BadPadding,
    /// Packet status count is zero.
    #[error("transport-wide feedback reports no packet")]
    Empty,
    /// Packet status count above [`MAX_STATUS_COUNT`].
    #[error("transport-wide feedback reports too many packets")]
    TooManyStatuses,
    /// A status uses the reserved symbol 0b11.
    #[error("reserved packet status symbol")]
    ReservedSymbol,
}

/// A validated transport-wide feedback packet (the subscriber side), borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccFeedback<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source (not meaningful: the feedback is transport-wide).
    pub media_ssrc: u32,
    /// Transport sequence number of the first status.
    pub base_seq: u16,
    /// Number of statuses, from `base_seq` on (at least 1).
    pub status_count: u16,
    /// 24-bit reference time in multiples of 64 ms, in the feedback sender's time base.
    pub reference_time: u32,
    /// Feedback packet count (wraps at 256), for detecting lost feedback.
    pub fb_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

/// Statuses a chunk holds (before clipping to the status count) and the symbol of the
/// `i`-th one.
fn chunk_capacity(chunk: u16) -> u16 {
    match chunk >> 14 {
        0 | 1 => chunk & 0x1fff,
        2 => 14,
        _ => VECTOR_SYMBOLS as u16,
    }
}

fn chunk_symbol(chunk: u16, i: u16) -> u8 {
    match chunk >> 14 {
        0 | 1 => (chunk >> 13) as u8 & 3,
        2 => ((chunk >> 13u16.saturating_sub(i)) & 1) as u8,
        _ => ((chunk >> 12u16.saturating_sub(2 * i)) & 3) as u8,
    }
}

impl<'a> TwccFeedback<'a> {
    /// Parses one whole RTCP transport-wide feedback packet, header included. `packet` must
    /// start at that packet's header (see [`feedback_packets`]); its length field decides the
    /// extent and any bytes after it are ignored. RTCP padding (P bit) is honoured, and zero
    /// bytes after the receive deltas without it are tolerated. Every length is validated:
    /// the statuses' receive deltas are all present when this returns `Ok`. Never panics;
    /// work is bounded by the packet length and [`MAX_STATUS_COUNT`].
    pub fn parse(packet: &'a [u8]) -> Result<Self, TwccError> {
        let b0 = *packet.first().ok_or(TwccError::Truncated)?;
        let pt = *packet.get(1).ok_or(TwccError::Truncated)?;
        let words = be16(packet, 2).ok_or(TwccError::Truncated)?;
        if b0 >> 6 != 2 {
            return Err(TwccError::BadVersion);
        }
        if pt != PACKET_TYPE || b0 & 0x1f != FORMAT {
            return Err(TwccError::NotTransportFeedback);
        }
        let len = 4 * (usize::from(words) + 1);
        let mut packet = packet.get(..len).ok_or(TwccError::Truncated)?;
        if b0 & 0x20 != 0 {
            let pad = usize::from(*packet.last().ok_or(TwccError::Truncated)?);
            if pad == 0 || pad > len.saturating_sub(FIXED_LEN) {
                return Err(TwccError::BadPadding);
            }
            packet = packet.get(..len - pad).ok_or(TwccError::BadPadding)?;
        }
        let field = |at| be32(packet, at).ok_or(TwccError::Truncated);
        let (sender_ssrc, media_ssrc) = (field(4)?, field(8)?);
        let (base_and_count, reference_and_count) = (field(12)?, field(16)?);
        let status_count = base_and_count as u16;
        if status_count == 0 {
            return Err(TwccError::Empty);
        }
        if status_count > MAX_STATUS_COUNT {
            return Err(TwccError::TooManyStatuses);
        }
        let rest = packet.get(FIXED_LEN..).ok_or(TwccError::Truncated)?;
        // Walk the chunks until they cover the status count, sizing the deltas.
        let (mut at, mut statuses, mut delta_bytes) = (0usize, 0u16, 0usize);
        while statuses < status_count {
            let chunk = be16(rest, at).ok_or(TwccError::Truncated)?;
            at += 2;
            let take = chunk_capacity(chunk).min(status_count - statuses);
            if chunk >> 14 <= 1 {
                // Run length: one symbol for the whole run.
                match chunk_symbol(chunk, 0) {
                    SYMBOL_NOT_RECEIVED => {}
                    SYMBOL_SMALL_DELTA => delta_bytes += usize::from(take),
                    SYMBOL_LARGE_DELTA => delta_bytes += 2 * usize::from(take),
                    _ => return Err(TwccError::ReservedSymbol),
                }
            } else {
                for i in 0..take {
                    match chunk_symbol(chunk, i) {
                        SYMBOL_NOT_RECEIVED => {}
                        SYMBOL_SMALL_DELTA => delta_bytes += 1,
                        SYMBOL_LARGE_DELTA => delta_bytes += 2,
                        _ => return Err(TwccError::ReservedSymbol),
                    }
                }
            }
            statuses += take;
        }
        let chunks = rest.get(..at).ok_or(TwccError::Truncated)?;
        let deltas = rest.get(at..at + delta_bytes).ok_or(TwccError::Truncated)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            base_seq: (base_and_count >> 16) as u16,
            status_count,
            reference_time: reference_and_count >> 8,
            fb_count: reference_and_count as u8,
            chunks,
            deltas,
        })
    }

    /// The reference time in microseconds of the feedback sender's (wrapping) time base.
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * 64_000
    }

    /// Each status in order: `(transport_seq, Some(receive delta in µs))` for a received
    /// packet — relative to the previous received packet, or to the reference time for the
    /// first — and `(transport_seq, None)` for one not received.
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            chunks: self.chunks,
            deltas: self.deltas,
            seq: self.base_seq,
            remaining: self.status_count,
            chunk: 0,
            index: 0,
            left_in_chunk: 0,
        }
    }

    /// Like [`Self::packets`] with absolute receive times: microseconds since the feedback
    /// sender's time base (reference time plus the accumulated deltas).
    pub fn arrivals(&self) -> impl Iterator<Item = (u16, Option<i64>)> + 'a {
        let mut at = self.reference_time_us();
        self.packets().map(move |(seq, delta)| {
            (
                seq,
                delta.map(|d| {
                    at += d;
                    at
                }),
            )
        })
    }
}

/// Iterator over a [`TwccFeedback`]'s statuses: `(transport_seq, Option<delta_us>)`.
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    seq: u16,
    remaining: u16,
    chunk: u16,
    index: u16,
    left_in_chunk: u16,
}

impl Iterator for TwccPackets<'_> {
    type Item = (u16, Option<i64>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        while self.left_in_chunk == 0 {
            let (chunk, rest) = self.chunks.split_first_chunk::<2>()?;
            self.chunks = rest;
            self.chunk = u16::from_be_bytes(*chunk);
            self.index = 0;
            self.left_in_chunk = chunk_capacity(self.chunk);
        }
        let symbol = chunk_symbol(self.chunk, self.index);
        self.index += 1;
        self.left_in_chunk -= 1;
        self.remaining -= 1;
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let delta = match symbol {
            SYMBOL_SMALL_DELTA => {
                let (d, rest) = self.deltas.split_first()?;
                self.deltas = rest;
                Some(i64::from(*d))
            }
            SYMBOL_LARGE_DELTA => {
                let (d, rest) = self.deltas.split_first_chunk::<2>()?;
                self.deltas = rest;
                Some(i64::from(i16::from_be_bytes(*d)))
            }
            _ => None,
        };
        Some((seq, delta.map(|ticks| ticks * 250)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.remaining)))
    }
}

/// The transport-wide feedback packets (PT = 205, FMT = 15) of a compound RTCP packet, each
/// from its header to the end of its declared length, ready for [`TwccFeedback::parse`].
/// Stops at the first header that is malformed or runs past the buffer.
pub fn feedback_packets(compound: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = compound;
    std::iter::from_fn(move || {
        loop {
            let b0 = *rest.first()?;
            let words = be16(rest, 2)?;
            if b0 >> 6 != 2 {
                return None;
            }
            let len = 4 * (usize::from(words) + 1);
            let packet = rest.get(..len)?;
            rest = rest.get(len..).unwrap_or(&[]);
            if packet.get(1) == Some(&PACKET_TYPE) && b0 & 0x1f == FORMAT {
                return Some(packet);
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::rtcp::{RtcpPart, RtcpReader, validate_compound};

    const SENDER: u32 = 0x1122_3344;
    const MEDIA: u32 = 0x5566_7788;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Builds feedback and checks every packet's framing; returns the parsed packets' bytes.
    fn build(rec: &mut TwccRecorder, now: Instant) -> Vec<Vec<u8>> {
        let mut out = vec![0xee]; // appends after existing content
        let wrote = rec.build_feedback(now, SENDER, MEDIA, &mut out);
        assert_eq!(out[0], 0xee);
        let out = &out[1..];
        assert_eq!(wrote, !out.is_empty());
        if out.is_empty() {
            return Vec::new();
        }
        validate_compound(out).unwrap();
        for part in RtcpReader::new(out) {
            assert_eq!(
                part.unwrap(),
                RtcpPart::Other {
                    packet_type: 205,
                    format: 15
                }
            );
        }
        let packets: Vec<Vec<u8>> = feedback_packets(out).map(<[u8]>::to_vec).collect();
        assert_eq!(packets.iter().map(Vec::len).sum::<usize>(), out.len());
        for p in &packets {
            assert!(p.len() <= MAX_FEEDBACK_SIZE, "{} bytes", p.len());
            assert_eq!(p.len() % 4, 0);
            let padded = p[0] & 0x20 != 0;
            if padded {
                let pad = usize::from(*p.last().unwrap());
                assert!((1..=3).contains(&pad));
                assert!(p[p.len() - pad..p.len() - 1].iter().all(|&b| b == 0));
            }
            let fb = TwccFeedback::parse(p).unwrap();
            assert_eq!((fb.sender_ssrc, fb.media_ssrc), (SENDER, MEDIA));
            assert_eq!(fb.packets().count(), usize::from(fb.status_count));
            // Exactly the bytes needed: no slack beyond the padding.
            let needed = FIXED_LEN + fb.chunks.len() + fb.deltas.len();
            assert_eq!(needed.next_multiple_of(4), p.len());
            assert_eq!(padded, !needed.is_multiple_of(4));
        }
        packets
    }

    #[test]
    fn twcc_writes_the_hand_built_vector_byte_for_byte() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        // Tick = 250 µs; the sub-tick remainders (+123 µs) must be floored away.
        let at = |ticks: u64| t0 + us(ticks * 250 + 123);
        rec.record(65533, t0);
        assert_eq!(
            build(&mut rec, t0),
            vec![vec![
                0xaf, 0xcd, 0x00, 0x05, // V=2 P=1 FMT=15, PT=205, 5 words follow
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // sender, media SSRC
                0xff, 0xfd, 0x00, 0x01, // base 65533, 1 status
                0x00, 0x00, 0x00, 0x00, // reference 0, fb count 0
                0x20, 0x01, // run length: 1 × received small
                0x00, // delta 0
                0x01, // one padding octet
            ]]
        );
        // In arrival order; 5 and 9 are lost, 7 overtook 6.
        for (seq, ticks) in [
            (65534, 4004), // reference 15 (3840 ticks): delta 164
            (65535, 4008),
            (0, 4014),
            (1, 4015),
            (2, 4015),
            (3, 4270), // delta 255: the largest small delta
            (4, 4278),
            (7, 4658),
            (6, 4678), // +400 ticks: large
            (8, 4680),
            (10, 4700),
            (11, 4701),
        ] {
            rec.record(seq, at(ticks));
        }
        rec.record(3, at(9999)); // a duplicate keeps the first arrival
        let expected = vec![
            0xaf, 0xcd, 0x00, 0x09, // P=1, 9 words follow
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, //
            0xff, 0xfe, 0x00, 0x0e, // base 65534, 14 statuses (across the wrap)
            0x00, 0x00, 0x0f, 0x01, // reference 15 × 64 ms, fb count 1
            0x20, 0x07, // run length: 7 × received small (65534..=4)
            // 2-bit vector: lost, large, large, small, lost, small, small (5..=11)
            0xca, 0x45, //
            0xa4, 0x04, 0x06, 0x01, 0x00, 0xff, 0x08, // small deltas of 65534..=4
            0x01, 0x90, // 6: +400
            0xff, 0xec, // 7: -20 (negative: large)
            0x16, 0x14, 0x01, // 8: +22, 10: +20, 11: +1
            0x00, 0x02, // two padding octets
        ];
        assert_eq!(build(&mut rec, t0), vec![expected.clone()]);
        // And the parser reads it back.
        let fb = TwccFeedback::parse(&expected).unwrap();
        assert_eq!(
            (fb.base_seq, fb.status_count, fb.reference_time, fb.fb_count),
            (65534, 14, 15, 1)
        );
        let got: Vec<_> = fb.packets().collect();
        let d = |ticks: i64| Some(ticks * 250);
        assert_eq!(
            got,
            vec![
                (65534, d(164)),
                (65535, d(4)),
                (0, d(6)),
                (1, d(1)),
                (2, d(0)),
                (3, d(255)),
                (4, d(8)),
                (5, None),
                (6, d(400)),
                (7, d(-20)),
                (8, d(22)),
                (9, None),
                (10, d(20)),
                (11, d(1)),
            ]
        );
        assert_eq!(fb.arrivals().nth(9), Some((7, Some(4658 * 250))));
        assert!(!rec.build_feedback(t0, SENDER, MEDIA, &mut Vec::new()));
    }

    /// A packet captured from Chrome (pion/rtcp's test vector "example4"): seven small deltas
    /// in one run-length chunk, three padding octets.
    const CHROME_RUN: [u8; 32] = [
        0xaf, 0xcd, 0x00, 0x07, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x00, 0x04, 0x00,
        0x07, 0x10, 0x63, 0x6e, 0x01, 0x20, 0x07, 0x4c, 0x24, 0x24, 0x10, 0x0c, 0x0c, 0x10, 0x00,
        0x00, 0x03,
    ];

    /// Chrome (pion/rtcp "example6" of unmarshal): a two-bit vector with small deltas, a loss
    /// and a large delta, then a run-length chunk reaching past the status count; P bit set.
    const CHROME_VECTOR: [u8; 32] = [
        0xaf, 0xcd, 0x00, 0x07, 0x9b, 0x74, 0xf6, 0x1f, 0x93, 0x71, 0xdc, 0xbc, 0x85, 0x3c, 0x00,
        0x09, 0x63, 0xf9, 0x16, 0xb3, 0xd5, 0x52, 0x00, 0x30, 0x9b, 0xaa, 0x6a, 0xaa, 0x7b, 0x01,
        0x09, 0x01,
    ];

    /// pion/rtcp "example5" (as marshalled; its unmarshal copy claims three padding octets
    /// where there are two, which libwebrtc rejects too): a one-bit status vector chunk.
    const ONE_BIT_VECTOR: [u8; 28] = [
        0xaf, 0xcd, 0x00, 0x06, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x00, 0x01, 0x00,
        0x0e, 0x10, 0x63, 0x6d, 0x00, 0xba, 0x00, 0x10, 0x0c, 0x0c, 0x10, 0x00, 0x02,
    ];

    #[test]
    fn twcc_recorder_reproduces_a_chrome_packet() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        for seq in 0..4 {
            rec.record(seq, t0);
        }
        assert_eq!(build(&mut rec, t0).len(), 1); // fb count 0
        let reference = 1_074_030u64 * 256;
        let mut ticks = reference;
        for (seq, delta) in (4..).zip([76, 36, 36, 16, 12, 12, 16]) {
            ticks += delta;
            rec.record(seq, t0 + us(ticks * 250));
        }
        let mut out = Vec::new();
        assert!(rec.build_feedback(t0, 0xfa17_fa17, 0x193d_d8bb, &mut out));
        assert_eq!(out, CHROME_RUN);
    }

    #[test]
    fn twcc_parses_captured_packets() {
        let fb = TwccFeedback::parse(&CHROME_VECTOR).unwrap();
        assert_eq!(
            (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.status_count),
            (2_608_133_663, 2_473_712_828, 34108, 9)
        );
        assert_eq!((fb.reference_time, fb.fb_count), (6_551_830, 179));
        assert_eq!(
            fb.packets().collect::<Vec<_>>(),
            vec![
                (34108, Some(38750)),
                (34109, Some(42500)),
                (34110, Some(26500)),
                (34111, Some(42500)),
                (34112, Some(30750)),
                (34113, None),
                (34114, Some(66250)),
                (34115, None),
                (34116, None),
            ]
        );
        let fb = TwccFeedback::parse(&CHROME_RUN).unwrap();
        assert_eq!(
            (fb.base_seq, fb.reference_time, fb.fb_count),
            (4, 1_074_030, 1)
        );
        let deltas: Vec<_> = fb.packets().map(|(_, d)| d.unwrap()).collect();
        assert_eq!(deltas, [19000, 9000, 9000, 4000, 3000, 3000, 4000]);
        let fb = TwccFeedback::parse(&ONE_BIT_VECTOR).unwrap();
        let got: Vec<_> = fb.packets().collect();
        assert_eq!(got.len(), 14);
        assert_eq!(
            got[..6],
            [
                (1, Some(4000)),
                (2, Some(3000)),
                (3, Some(3000)),
                (4, None),
                (5, Some(4000)),
                (6, None)
            ]
        );
        assert!(got[6..].iter().all(|(_, d)| d.is_none()));
        // Found inside a compound packet, after a receiver report.
        let mut compound = Vec::new();
        crate::rtcp::write_receiver_report(&mut compound, 1, &[]);
        compound.extend_from_slice(&CHROME_VECTOR);
        crate::rtcp::write_pli(&mut compound, 1, 2);
        compound.extend_from_slice(&CHROME_RUN);
        let found: Vec<_> = feedback_packets(&compound).collect();
        assert_eq!(found, [&CHROME_VECTOR[..], &CHROME_RUN[..]]);
        // pion's "example2" uses the reserved symbol 0b11.
        let reserved = [
            0xaf, 0xcd, 0x0, 0x6, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x1, 0x74, 0x0,
            0xe, 0x45, 0xb1, 0x5a, 0x40, 0xd8, 0x0, 0xf0, 0xff, 0xd0, 0x0, 0x0, 0x3,
        ];
        assert_eq!(
            TwccFeedback::parse(&reserved),
            Err(TwccError::ReservedSymbol)
        );
    }

    /// What the test expects of each sequence number, keyed by the 16-bit value (tests stay
    /// below 65536 packets).
    #[derive(Default)]
    struct Truth {
        /// First arrival, in ticks since the first packet.
        arrival: HashMap<u16, u64>,
        /// Reported as received (at most once each).
        reported: HashMap<u16, i64>,
        /// Reported as not received and not received since.
        reported_lost: std::collections::HashSet<u16>,
        /// Had a status in some feedback.
        statused: std::collections::HashSet<u16>,
    }

    impl Truth {
        fn check(&mut self, packets: &[Vec<u8>]) -> usize {
            let mut statuses = 0;
            for p in packets {
                let fb = TwccFeedback::parse(p).unwrap();
                let mut first_received = true;
                for (seq, at) in fb.arrivals() {
                    statuses += 1;
                    self.statused.insert(seq);
                    match at {
                        Some(at_us) => {
                            if first_received {
                                // The reference time is the first arrival's 64 ms floor.
                                assert_eq!(u64::from(fb.reference_time), self.arrival[&seq] / 256);
                                first_received = false;
                            }
                            assert_eq!(at_us % 250, 0);
                            assert_eq!(
                                at_us / 250,
                                self.arrival[&seq] as i64,
                                "seq {seq}: arrival reconstructed exactly to the tick"
                            );
                            assert!(
                                self.reported.insert(seq, at_us).is_none(),
                                "seq {seq} reported twice"
                            );
                            self.reported_lost.remove(&seq);
                        }
                        None => {
                            assert!(
                                !self.reported.contains_key(&seq),
                                "{seq} lost after received"
                            );
                            self.reported_lost.insert(seq);
                        }
                    }
                }
            }
            statuses
        }
    }

    #[test]
    fn twcc_round_trips_random_arrival_patterns() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let t0 = Instant::now();
            let mut rec = TwccRecorder::new();
            let mut truth = Truth::default();
            // Start just below the wrap.
            let first = 65536 - 1 - rng.below(3000) as u32;
            let total = 2000 + rng.below(8000) as u32;
            // Send times: mostly small gaps, sometimes long (> 63.75 ms: large deltas) and
            // rarely beyond the 16-bit delta reach (8.19 s).
            let mut send = 0u64;
            let mut events: Vec<(u64, u16)> = Vec::new(); // (arrival ticks, seq)
            for i in 0..total {
                send += match rng.below(100) {
                    0 => 20_000 + rng.below(40_000),
                    1..=4 => 256 + rng.below(2000),
                    _ => rng.below(12),
                };
                let seq = (first + i) as u16;
                if rng.below(20) == 0 {
                    continue; // lost
                }
                // Jitter reorders neighbours (negative deltas); a few arrive much later.
                let late = if rng.below(50) == 0 {
                    rng.below(1200)
                } else {
                    0
                };
                let arrival = send + rng.below(30) + late;
                events.push((arrival, seq));
                if rng.below(30) == 0 {
                    events.push((arrival + rng.below(400), seq)); // duplicate
                }
            }
            events.sort_by_key(|&(arrival, _)| arrival);
            let base_ticks = events[0].0;
            let mut statuses = 0;
            let mut next_build = 0;
            for (n, &(arrival, seq)) in events.iter().enumerate() {
                let ticks = arrival - base_ticks;
                truth.arrival.entry(seq).or_insert(ticks);
                // Sub-tick offsets must not matter (the first arrival is the time base).
                let now = t0 + us(ticks * 250 + if n == 0 { 0 } else { rng.below(250) });
                rec.record(seq, now);
                if n >= next_build {
                    statuses += truth.check(&build(&mut rec, now));
                    next_build = n + 1 + rng.below(200) as usize;
                }
            }
            statuses += truth.check(&build(&mut rec, t0));
            assert!(!rec.has_unreported());
            // Every received packet reported as received exactly once, with its arrival.
            assert_eq!(truth.reported.len(), truth.arrival.len(), "seed {seed}");
            assert!(
                truth
                    .reported_lost
                    .iter()
                    .all(|s| !truth.arrival.contains_key(s))
            );
            // Every sequence number from the first arrival to the highest has a status.
            let index = |seq: u16| seq.wrapping_sub(first as u16);
            let from = index(events[0].1);
            let to = truth.arrival.keys().map(|&s| index(s)).max().unwrap();
            for i in from..=to {
                let seq = (first as u16).wrapping_add(i);
                assert!(
                    truth.statused.contains(&seq),
                    "seed {seed}: no status for {seq}"
                );
            }
            assert!(statuses > usize::from(to - from));
        }
    }

    #[test]
    fn twcc_output_is_read_alike_by_str0m() {
        // An independent reader. str0m 0.25.0 misreads a run-length chunk of *large* deltas
        // (it skips n instead of 2n delta bytes), so this pattern keeps large deltas rare
        // enough never to form a run of seven; negative deltas come from jitter.
        use str0m::rtp::rtcp::Rtcp;
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        let mut rng = Rng(7);
        let mut ticks = 1000u64;
        let mut compared = 0;
        for seq in 0..3000u16 {
            ticks += if rng.below(10) == 0 {
                300 + rng.below(2000)
            } else {
                rng.below(200)
            };
            if rng.below(10) != 0 {
                let jitter = rng.below(40);
                rec.record(seq.wrapping_add(64000), t0 + us((ticks - jitter) * 250));
            }
            if seq % 700 == 699 {
                for p in build(&mut rec, t0) {
                    let ours: Vec<_> = TwccFeedback::parse(&p).unwrap().arrivals().collect();
                    let Ok(Rtcp::Twcc(twcc)) = Rtcp::try_from(&p[..]) else {
                        panic!("str0m rejects {p:02x?}")
                    };
                    let theirs: Vec<_> = twcc
                        .into_iter(rec.time_base().unwrap(), 0x1_0000u64.into())
                        .map(|(seq, _, at)| (*seq as u16, at))
                        .collect();
                    assert_eq!(ours.len(), theirs.len());
                    for ((seq, at), (their_seq, their_at)) in ours.into_iter().zip(theirs) {
                        assert_eq!(seq, their_seq);
                        let base = rec.time_base().unwrap();
                        assert_eq!(at.map(|at| base + us(at as u64)), their_at, "seq {seq}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 2000);
    }

    #[test]
    fn twcc_late_arrival_of_a_lost_packet_is_reported_later() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        for seq in [1, 2, 4, 5, 7] {
            rec.record(seq, t0 + us(u64::from(seq) * 1000));
        }
        let first = build(&mut rec, t0);
        let fb = TwccFeedback::parse(&first[0]).unwrap();
        let lost: Vec<_> = fb
            .packets()
            .filter(|p| p.1.is_none())
            .map(|p| p.0)
            .collect();
        assert_eq!(lost, [3, 6]);
        rec.record(3, t0 + us(9000)); // late: reported as lost, now arrived
        rec.record(2, t0 + us(9000)); // duplicate of a reported packet: ignored
        rec.record(8, t0 + us(9500));
        let second = build(&mut rec, t0);
        assert_eq!(second.len(), 2, "a group for 3, then the main part");
        let late = TwccFeedback::parse(&second[0]).unwrap();
        assert_eq!(
            late.arrivals().collect::<Vec<_>>(),
            [(3, Some(8000))], // since the time base: 1's arrival
        );
        let main = TwccFeedback::parse(&second[1]).unwrap();
        assert_eq!(main.packets().map(|p| p.0).collect::<Vec<_>>(), [8]);
        assert_eq!(main.fb_count, late.fb_count.wrapping_add(1));
        // 6 arrives: its group ends before 7, which was reported already.
        rec.record(6, t0 + us(10_000));
        let third = build(&mut rec, t0);
        assert_eq!(third.len(), 1);
        let fb = TwccFeedback::parse(&third[0]).unwrap();
        assert_eq!((fb.base_seq, fb.status_count), (6, 1));
        assert!(!rec.build_feedback(t0, SENDER, MEDIA, &mut Vec::new()));
    }

    #[test]
    fn twcc_packets_before_the_first_merge_with_the_main_part() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        rec.record(5, t0);
        rec.record(3, t0 + us(1000)); // overtaken by 5; 4 is lost
        let packets = build(&mut rec, t0);
        assert_eq!(packets.len(), 1);
        let fb = TwccFeedback::parse(&packets[0]).unwrap();
        assert_eq!(
            fb.arrivals().collect::<Vec<_>>(),
            [(3, Some(1000)), (4, None), (5, Some(0))]
        );
    }

    #[test]
    fn twcc_large_gaps_and_many_large_deltas_split_into_bounded_packets() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        // MAX_TRACKED - 1 packets 100 ms apart: every delta but the first is large (2 bytes).
        let last = MAX_TRACKED as u64 - 1;
        for seq in 0..last {
            rec.record(seq as u16, t0 + Duration::from_millis(100 * seq));
        }
        // Then a 20 s silence: beyond a 16-bit delta.
        rec.record(last as u16, t0 + Duration::from_millis(100 * last + 20_000));
        assert_eq!(rec.pending(), MAX_TRACKED);
        let packets = build(&mut rec, t0);
        assert!(packets.len() >= 7, "{} packets", packets.len());
        let mut next = 0u16;
        for p in &packets {
            let fb = TwccFeedback::parse(p).unwrap();
            assert_eq!(fb.base_seq, next, "consecutive, no status twice");
            next = next.wrapping_add(fb.status_count);
        }
        assert_eq!(next, MAX_TRACKED as u16);
        let fb = TwccFeedback::parse(packets.last().unwrap()).unwrap();
        assert_eq!((fb.base_seq, fb.status_count), (last as u16, 1));
    }

    #[test]
    fn twcc_drops_the_oldest_instead_of_growing() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        rec.record(0, t0);
        rec.record(10_000, t0 + us(1000));
        assert_eq!(rec.pending(), MAX_TRACKED);
        let packets = build(&mut rec, t0);
        let fb = TwccFeedback::parse(&packets[0]).unwrap();
        assert_eq!(fb.base_seq, 10_001 - MAX_TRACKED as u16);
        rec.record(0, t0 + us(2000)); // older than the ring: ignored
        assert!(!rec.has_unreported());
    }

    #[test]
    fn twcc_reference_time_wraps_after_24_bits() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        rec.record(0, t0);
        build(&mut rec, t0);
        // 2^24 × 64 ms plus 1 s later: the reference time has wrapped to 15 (and 160 ticks).
        let later = t0 + REFERENCE_TICK * (1 << 24) + Duration::from_secs(1);
        rec.record(1, later);
        let packets = build(&mut rec, later);
        let fb = TwccFeedback::parse(&packets[0]).unwrap();
        assert_eq!(fb.reference_time, 15);
        assert_eq!(fb.arrivals().next(), Some((1, Some(1_000_000))));
    }

    #[test]
    fn twcc_parser_rejects_truncated_and_garbage_input_without_panic() {
        // Every strict prefix of a valid packet fails, with or without a length fix-up.
        for valid in [&CHROME_VECTOR[..], &CHROME_RUN[..], &ONE_BIT_VECTOR[..]] {
            for len in 0..valid.len() {
                assert!(TwccFeedback::parse(&valid[..len]).is_err(), "len {len}");
                let mut cut = valid[..len].to_vec();
                if len >= 4 {
                    let words = (len / 4).saturating_sub(1) as u16;
                    cut[0] &= !0x20; // no padding
                    cut[2..4].copy_from_slice(&words.to_be_bytes());
                    let cut = &cut[..4 * (usize::from(words) + 1).min(len / 4)];
                    if let Ok(fb) = TwccFeedback::parse(cut) {
                        panic!("{len}: {fb:?}");
                    }
                }
            }
        }
        let mut rng = Rng(99);
        for len in 0..=1500usize {
            for fill in 0..4 {
                let mut buf: Vec<u8> = (0..len)
                    .map(|_| match fill {
                        0 => 0,
                        1 => 0xff,
                        _ => rng.next() as u8,
                    })
                    .collect();
                if fill == 3 && len >= 4 {
                    // A plausible header so the body parser is exercised.
                    buf[0] = 0x8f | (rng.next() as u8 & 0x20);
                    buf[1] = 205;
                    let words = rng.below(len as u64 / 4 + 2) as u16;
                    buf[2..4].copy_from_slice(&words.to_be_bytes());
                    if len >= 16 {
                        buf[14..16].copy_from_slice(&(rng.below(64) as u16).to_be_bytes());
                    }
                }
                let _ = feedback_packets(&buf).count();
                if let Ok(fb) = TwccFeedback::parse(&buf) {
                    assert!(fb.status_count <= MAX_STATUS_COUNT);
                    assert_eq!(fb.packets().count(), usize::from(fb.status_count));
                    let _ = fb.arrivals().count();
                }
            }
        }
        assert_eq!(TwccFeedback::parse(&[]), Err(TwccError::Truncated));
        let mut not_twcc = CHROME_RUN;
        not_twcc[0] = 0xa1; // FMT 1: a NACK
        assert_eq!(
            TwccFeedback::parse(&not_twcc),
            Err(TwccError::NotTransportFeedback)
        );
        let mut bad_pad = CHROME_RUN;
        bad_pad[31] = 0;
        assert_eq!(TwccFeedback::parse(&bad_pad), Err(TwccError::BadPadding));
        let mut empty = CHROME_RUN;
        empty[14..16].copy_from_slice(&[0, 0]);
        assert_eq!(TwccFeedback::parse(&empty), Err(TwccError::Empty));
        let mut many = CHROME_RUN;
        many[14..16].copy_from_slice(&(MAX_STATUS_COUNT + 1).to_be_bytes());
        assert_eq!(TwccFeedback::parse(&many), Err(TwccError::TooManyStatuses));
        let mut version = CHROME_RUN;
        version[0] = 0x6f;
        assert_eq!(TwccFeedback::parse(&version), Err(TwccError::BadVersion));
        // Random bit flips of valid packets never panic and stay self-consistent.
        for _ in 0..20_000 {
            let mut buf = CHROME_VECTOR.to_vec();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(buf.len() as u64) as usize;
                buf[i] ^= 1 << rng.below(8);
            }
            if let Ok(fb) = TwccFeedback::parse(&buf) {
                assert_eq!(fb.packets().count(), usize::from(fb.status_count));
            }
        }
    }

    #[test]
    fn twcc_recorder_stays_bounded_under_random_sequence_numbers() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new();
        let mut rng = Rng(12345);
        let mut now = t0;
        let mut out = Vec::new();
        let mut max_out = 0;
        for n in 0..100_000u32 {
            now += us(rng.below(2000));
            rec.record(rng.next() as u16, now);
            assert!(rec.pending() <= MAX_TRACKED);
            if n % 100 == 99 {
                out.clear();
                rec.build_feedback(now, SENDER, MEDIA, &mut out);
                max_out = max_out.max(out.len());
                for p in feedback_packets(&out) {
                    assert!(p.len() <= MAX_FEEDBACK_SIZE);
                    let fb = TwccFeedback::parse(p).unwrap();
                    assert_eq!(fb.packets().count(), usize::from(fb.status_count));
                }
            }
        }
        assert_eq!(rec.slots.len(), MAX_TRACKED);
        assert!(rec.chunks.capacity() <= MAX_FEEDBACK_SIZE);
        assert!(rec.deltas.capacity() <= 2 * MAX_FEEDBACK_SIZE);
        // Bounded output per call: the ring, at most two bytes each, plus per-packet overhead.
        assert!(
            max_out <= (MAX_LATE_SEGMENTS + 1) * MAX_FEEDBACK_SIZE + 3 * MAX_TRACKED,
            "{max_out}"
        );
    }

    #[test]
    fn a_recorder_that_never_records_holds_no_ring() {
        let mut rec = TwccRecorder::new();
        assert!(
            rec.slots.is_empty(),
            "a subscriber's transport pays nothing"
        );
        let mut out = Vec::new();
        assert!(!rec.build_feedback(Instant::now(), SENDER, MEDIA, &mut out));
        rec.record(7, Instant::now());
        assert_eq!(rec.slots.len(), MAX_TRACKED);
    }

    #[test]
    fn twcc_chunk_encoder_picks_runs_and_vectors() {
        let encode = |symbols: &[u8]| {
            let mut chunks = Vec::new();
            let mut e = ChunkEncoder::default();
            for &s in symbols {
                e.push(s, &mut |c| chunks.push(c));
            }
            let bytes = e.bytes();
            e.finish(&mut |c| chunks.push(c));
            assert_eq!(bytes, 2 * chunks.len());
            chunks
        };
        assert_eq!(encode(&[1; 20]), [0x2014]);
        assert_eq!(encode(&[0; 9000]), [0x1fff, 9000 - 0x1fff]);
        assert_eq!(encode(&[1, 0, 2]), [0xc000 | 0x1000 | 0x0200]);
        assert_eq!(encode(&[2, 2, 2, 2, 2, 2, 2, 1]), [0x4007, 0x2001]);
        assert_eq!(encode(&[1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]), [0xd455, 0x2004]);
    }
}

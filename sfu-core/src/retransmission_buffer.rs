//! The packets a consumer sent recently, kept for answering the subscriber's NACKs.
//!
//! The packet itself is not kept here: every consumer of a stream forwards the same packet, which
//! the producer stream keeps once ([`crate::packet_cache`]); an entry names it by its stream and
//! source sequence number. An entry stores what is needed to rebuild exactly the packet the
//! subscriber lost: the output sequence number, timestamp, payload type and marker, plus when
//! it was sent and how often it was resent, so retransmissions stay bounded. Slots are indexed
//! by output sequence number; entries older than the maximum age are not resent.
//!
//! Memory is what a consumer costs (issue 6: at most 64 KiB each), so a slot is compact: no
//! packet reference, and the last resend is an offset from the first send. The ring starts small and doubles, up to its bound, only
//! when a packet would overwrite one still young enough to be resent: it settles at about
//! `max_age` worth of packets at the stream's rate (256 slots for 1.5 Mbit/s video) instead
//! of always holding the bound.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::codecs::vp8::Vp8Rewritten;

/// How many times one packet may be retransmitted.
pub const MAX_RESENDS: u8 = 3;

/// Slots a buffer starts with (it grows from there as the stream's rate needs).
const INITIAL_SLOTS: usize = 64;

/// One sent packet.
#[derive(Debug, Clone)]
pub struct StoredPacket {
    /// The producer stream it came from.
    pub stream: u8,
    /// Its sequence number in that stream (where the producer's packet cache files it).
    pub source_sequence: u16,
    /// VP8 ids as first sent, when the consumer rewrites them.
    pub vp8_ids: Option<Vp8Rewritten>,
    /// When it was first sent (the history age counts from here).
    pub first_sent_at: Instant,
    /// Output sequence number.
    pub sequence_number: u16,
    /// SRTP rollover counter of that sequence number.
    pub roc: u32,
    /// Output timestamp.
    pub timestamp: u32,
    /// Output payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// When it was last sent (resends are at least an RTT apart).
    pub sent_at: Instant,
    /// Times resent.
    pub resends: u8,
}

/// One slot: a [`StoredPacket`] without the second `Instant` (the last resend is kept as
/// microseconds after the first send, rounded up so that a resend is never early).
#[derive(Debug)]
struct Slot {
    first_sent_at: Instant,
    vp8_ids: Option<Vp8Rewritten>,
    roc: u32,
    timestamp: u32,
    last_sent_after_micros: u32,
    source_sequence: u16,
    sequence_number: u16,
    stream: u8,
    payload_type: u8,
    marker: bool,
    resends: u8,
}

impl Slot {
    fn sent_at(&self) -> Instant {
        self.first_sent_at + Duration::from_micros(u64::from(self.last_sent_after_micros))
    }
}

/// `later - earlier` in whole microseconds, rounded up, saturating (no 128-bit division: this
/// runs for every packet sent).
fn micros_between(earlier: Instant, later: Instant) -> u32 {
    if later <= earlier {
        return 0;
    }
    let d = later.duration_since(earlier);
    let micros = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000)));
    u32::try_from(micros).unwrap_or(u32::MAX)
}

/// A ring of recently sent packets, indexed by sequence number, growing on demand up to a
/// bound.
pub struct RetransmissionBuffer {
    slots: Vec<Option<Slot>>,
    /// The most slots the ring may grow to (a power of two).
    bound: usize,
    max_age: Duration,
}

impl RetransmissionBuffer {
    /// A buffer of at most `capacity` slots (rounded up to a power of two) keeping packets for
    /// `max_age`. No slot is allocated before the first packet.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let bound = capacity.max(1).next_power_of_two().min(32_768);
        Self {
            slots: Vec::new(),
            bound,
            max_age,
        }
    }

    fn index(&self, sequence_number: u16) -> usize {
        usize::from(sequence_number) & self.slots.len().wrapping_sub(1)
    }

    /// Stores a sent packet, replacing whatever was in its slot (after growing the ring if
    /// that one could still be resent).
    pub fn insert(&mut self, packet: StoredPacket) {
        if self.slots.is_empty() {
            self.slots
                .resize_with(INITIAL_SLOTS.min(self.bound), || None);
        }
        while self.slots.len() < self.bound {
            let i = self.index(packet.sequence_number);
            // Compared as instants: this runs for every packet until the ring is at its bound.
            let young_neighbour = self.slots.get(i).and_then(Option::as_ref).is_some_and(|s| {
                s.sequence_number != packet.sequence_number
                    && s.first_sent_at
                        .checked_add(self.max_age)
                        .is_none_or(|too_old_after| packet.first_sent_at <= too_old_after)
            });
            if !young_neighbour {
                break;
            }
            self.grow();
        }
        let i = self.index(packet.sequence_number);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(Slot {
                last_sent_after_micros: micros_between(packet.first_sent_at, packet.sent_at),
                first_sent_at: packet.first_sent_at,
                vp8_ids: packet.vp8_ids,
                roc: packet.roc,
                timestamp: packet.timestamp,
                source_sequence: packet.source_sequence,
                stream: packet.stream,
                sequence_number: packet.sequence_number,
                payload_type: packet.payload_type,
                marker: packet.marker,
                resends: packet.resends,
            });
        }
    }

    /// Doubles the ring. Entries apart in the smaller ring stay apart in the larger one.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).clamp(1, self.bound);
        let old = std::mem::take(&mut self.slots);
        self.slots.resize_with(len, || None);
        for slot in old.into_iter().flatten() {
            let i = self.index(slot.sequence_number);
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(slot);
            }
        }
    }

    /// The packet sent with `sequence_number`, if it is still held, young enough, not resent
    /// too often, and not resent within `min_interval` (an RTT: the previous resend may still
    /// be on its way). Marks it as resent at `now`.
    pub fn take_for_resend(
        &mut self,
        sequence_number: u16,
        now: Instant,
        min_interval: Duration,
    ) -> Option<StoredPacket> {
        let i = self.index(sequence_number);
        let max_age = self.max_age;
        let entry = self.slots.get_mut(i)?.as_mut()?;
        if entry.sequence_number != sequence_number
            || now.saturating_duration_since(entry.first_sent_at) > max_age
        {
            return None;
        }
        if entry.resends >= MAX_RESENDS
            || (entry.resends > 0 && now.saturating_duration_since(entry.sent_at()) < min_interval)
        {
            return None;
        }
        entry.resends += 1;
        entry.last_sent_after_micros = micros_between(entry.first_sent_at, now);
        Some(StoredPacket {
            stream: entry.stream,
            source_sequence: entry.source_sequence,
            vp8_ids: entry.vp8_ids,
            first_sent_at: entry.first_sent_at,
            sequence_number: entry.sequence_number,
            roc: entry.roc,
            timestamp: entry.timestamp,
            payload_type: entry.payload_type,
            marker: entry.marker,
            sent_at: now,
            resends: entry.resends,
        })
    }

    /// The most slots the ring may grow to.
    pub fn capacity(&self) -> usize {
        self.bound
    }

    /// Slots allocated now (0 before the first packet; grows up to [`Self::capacity`]).
    pub fn allocated_slots(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of the ring.
    pub fn footprint(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<Slot>>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stored(seq: u16, at: Instant) -> StoredPacket {
        StoredPacket {
            stream: 0,
            source_sequence: seq.wrapping_add(1000),
            vp8_ids: None,
            first_sent_at: at,
            sequence_number: seq,
            roc: 0,
            timestamp: 0,
            payload_type: 96,
            marker: false,
            sent_at: at,
            resends: 0,
        }
    }

    #[test]
    fn finds_recent_packets_and_forgets_overwritten_ones() {
        let now = Instant::now();
        let mut b = RetransmissionBuffer::new(100, Duration::from_secs(1));
        assert_eq!(b.capacity(), 128);
        for seq in 65_500u16..=65_535 {
            b.insert(stored(seq, now));
        }
        for seq in 0u16..100 {
            b.insert(stored(seq, now));
        }
        assert_eq!(b.allocated_slots(), 128, "grown to the bound");
        let p = b.take_for_resend(65_535, now, Duration::ZERO);
        assert_eq!(
            p.map(|p| p.source_sequence),
            Some(65_535u16.wrapping_add(1000))
        );
        assert!(
            b.take_for_resend(65_500, now, Duration::ZERO).is_none(),
            "overwritten by seq 92"
        );
        assert!(b.take_for_resend(92, now, Duration::ZERO).is_some());
        assert!(
            b.take_for_resend(200, now, Duration::ZERO).is_none(),
            "never sent"
        );
    }

    #[test]
    fn grows_only_to_what_max_age_needs() {
        let start = Instant::now();
        let mut b = RetransmissionBuffer::new(512, Duration::from_secs(1));
        assert_eq!(b.allocated_slots(), 0, "nothing before the first packet");
        // 150 packets a second (1.5 Mbit/s of 1200-byte packets) for 10 s.
        for n in 0u16..1500 {
            let at = start + Duration::from_micros(u64::from(n) * 6_667);
            b.insert(stored(n, at));
        }
        assert_eq!(
            b.allocated_slots(),
            256,
            "a second of packets fits 256 slots"
        );
        let now = start + Duration::from_micros(1499 * 6_667);
        // Every packet of the last second is still there.
        for n in 1350u16..1500 {
            assert!(b.take_for_resend(n, now, Duration::ZERO).is_some(), "{n}");
        }
        // 2,000 packets a second: the ring doubles up to its bound and no further.
        let mut b = RetransmissionBuffer::new(512, Duration::from_secs(1));
        for n in 0u16..4000 {
            b.insert(stored(n, start + Duration::from_micros(u64::from(n) * 500)));
        }
        assert_eq!(b.allocated_slots(), 512);
    }

    #[test]
    fn resends_are_bounded_in_count_age_and_rate() {
        let now = Instant::now();
        let rtt = Duration::from_millis(100);
        let mut b = RetransmissionBuffer::new(16, Duration::from_secs(1));
        b.insert(stored(7, now));
        assert!(b.take_for_resend(7, now, rtt).is_some());
        assert!(
            b.take_for_resend(7, now + Duration::from_millis(10), rtt)
                .is_none(),
            "within an RTT"
        );
        assert!(
            b.take_for_resend(7, now + Duration::from_millis(120), rtt)
                .is_some()
        );
        let p = b.take_for_resend(7, now + Duration::from_millis(240), rtt);
        assert_eq!(
            p.map(|p| (p.resends, p.sent_at)),
            Some((3, now + Duration::from_millis(240)))
        );
        assert!(
            b.take_for_resend(7, now + Duration::from_millis(360), rtt)
                .is_none(),
            "at most three times"
        );
        b.insert(stored(8, now));
        assert!(
            b.take_for_resend(8, now + Duration::from_secs(2), rtt)
                .is_none(),
            "too old"
        );
    }

    #[test]
    fn a_resend_is_never_early_by_rounding() {
        let now = Instant::now();
        let rtt = Duration::from_millis(100);
        let mut b = RetransmissionBuffer::new(16, Duration::from_secs(1));
        b.insert(stored(7, now));
        let first = now + Duration::from_nanos(1_500);
        assert!(b.take_for_resend(7, first, rtt).is_some());
        assert!(
            b.take_for_resend(7, first + rtt - Duration::from_nanos(1), rtt)
                .is_none()
        );
        assert!(
            b.take_for_resend(7, first + rtt + Duration::from_micros(1), rtt)
                .is_some()
        );
    }

    #[test]
    fn a_slot_is_compact() {
        assert!(
            std::mem::size_of::<Option<Slot>>() <= 48,
            "{} bytes",
            std::mem::size_of::<Option<Slot>>()
        );
    }
}

//! The packets of one producer stream as they arrived, kept for retransmission to every
//! consumer of it.
//!
//! A consumer that negotiated NACK must be able to send a packet again for about a second.
//! The packet itself is the same for every consumer (each rewrites only the header), so it is
//! kept once here, per incoming packet, and a consumer's history
//! ([`crate::retransmission_buffer`]) keeps only what it wrote differently and the source
//! sequence number to find the packet by. Besides the memory, that takes one reference count
//! increment and decrement per *forwarded* packet off the fan-out: an atomic operation there
//! waits for the kilobyte of stores the packet's copy and encryption just queued.
//!
//! The cache is a ring indexed by the source sequence number that grows (doubling, up to a
//! bound) only when a packet would overwrite one still young enough to be resent, as the
//! consumers' histories do. It must not interpret packets: the worker stores what it routed.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Slots a cache starts with.
const INITIAL_SLOTS: usize = 64;

#[derive(Clone)]
struct Entry {
    packet: Bytes,
    received_at: Instant,
    sequence_number: u16,
    payload_start: u16,
    payload_end: u16,
}

/// A packet found in the cache.
#[derive(Debug, Clone, Copy)]
pub struct CachedPacket<'a> {
    /// The packet as it arrived (decrypted); its header's extensions are read from here.
    pub packet: &'a Bytes,
    /// The payload as forwarded (after the original sequence number of a retransmission).
    pub payload: &'a [u8],
}

/// Recently received packets of one stream, by sequence number.
#[derive(Clone)]
pub struct PacketCache {
    slots: Vec<Option<Entry>>,
    /// The most slots the ring may grow to (a power of two).
    bound: usize,
    max_age: Duration,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache")
            .field("slots", &self.slots.len())
            .field("bound", &self.bound)
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl PacketCache {
    /// A cache of at most `capacity` slots (rounded up to a power of two) keeping packets for
    /// `max_age`. No slot is allocated before the first packet.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            slots: Vec::new(),
            bound: capacity.max(1).next_power_of_two().min(32_768),
            max_age,
        }
    }

    fn index(&self, sequence_number: u16) -> usize {
        usize::from(sequence_number) & self.slots.len().wrapping_sub(1)
    }

    /// Keeps `packet` (received at `now`, payload at `payload_start..payload_end`) as the
    /// stream's packet `sequence_number`. A range that does not lie within the packet is not
    /// kept.
    pub fn insert(
        &mut self,
        now: Instant,
        sequence_number: u16,
        packet: &Bytes,
        payload_start: usize,
        payload_end: usize,
    ) {
        let (Ok(start), Ok(end)) = (u16::try_from(payload_start), u16::try_from(payload_end))
        else {
            return;
        };
        if start > end || payload_end > packet.len() {
            return;
        }
        if self.slots.is_empty() {
            self.slots
                .resize_with(INITIAL_SLOTS.min(self.bound), || None);
        }
        while self.slots.len() < self.bound {
            let i = self.index(sequence_number);
            let young_neighbour = self.slots.get(i).and_then(Option::as_ref).is_some_and(|e| {
                e.sequence_number != sequence_number
                    && now.saturating_duration_since(e.received_at) <= self.max_age
            });
            if !young_neighbour {
                break;
            }
            self.grow();
        }
        let i = self.index(sequence_number);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(Entry {
                packet: packet.clone(),
                received_at: now,
                sequence_number,
                payload_start: start,
                payload_end: end,
            });
        }
    }

    /// Doubles the ring. Entries apart in the smaller ring stay apart in the larger one.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).clamp(1, self.bound);
        let old = std::mem::take(&mut self.slots);
        self.slots.resize_with(len, || None);
        for entry in old.into_iter().flatten() {
            let i = self.index(entry.sequence_number);
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(entry);
            }
        }
    }

    /// The packet `sequence_number`, if it is still held and no older than the cache's age at
    /// `now`.
    pub fn get(&self, sequence_number: u16, now: Instant) -> Option<CachedPacket<'_>> {
        let entry = self
            .slots
            .get(self.index(sequence_number))?
            .as_ref()
            .filter(|e| e.sequence_number == sequence_number)
            .filter(|e| now.saturating_duration_since(e.received_at) <= self.max_age)?;
        let payload = entry
            .packet
            .get(usize::from(entry.payload_start)..usize::from(entry.payload_end))?;
        Some(CachedPacket {
            packet: &entry.packet,
            payload,
        })
    }

    /// Slots allocated now.
    pub fn allocated_slots(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of the ring itself (the packets are shared and not counted).
    pub fn footprint(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<Entry>>()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const AGE: Duration = Duration::from_secs(1);

    fn packet(seq: u16) -> Bytes {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(format!("payload {seq}").as_bytes());
        Bytes::from(p)
    }

    #[test]
    fn finds_what_it_kept_and_not_what_was_overwritten_or_too_old() {
        let t0 = Instant::now();
        let mut cache = PacketCache::new(64, AGE);
        assert!(cache.get(1, t0).is_none(), "empty");
        for seq in 0..64u16 {
            let p = packet(seq);
            let len = p.len();
            cache.insert(t0, seq, &p, 12, len);
        }
        let found = cache.get(7, t0).unwrap();
        assert_eq!(found.payload, b"payload 7");
        assert_eq!(&found.packet[2..4], &7u16.to_be_bytes());
        // At its bound, the ring overwrites: 64 replaces 0.
        let p = packet(64);
        let len = p.len();
        cache.insert(t0, 64, &p, 12, len);
        assert!(cache.get(0, t0).is_none(), "overwritten");
        assert_eq!(cache.get(64, t0).unwrap().payload, b"payload 64");
        assert!(
            cache.get(7, t0 + AGE + Duration::from_millis(1)).is_none(),
            "too old"
        );
    }

    #[test]
    fn grows_only_while_overwritten_packets_are_young() {
        let t0 = Instant::now();
        let mut cache = PacketCache::new(1024, AGE);
        // 100 packets a second for 3 s: a second of them fits in 128 slots.
        for i in 0..300u16 {
            let p = packet(i);
            let len = p.len();
            cache.insert(
                t0 + Duration::from_millis(u64::from(i) * 10),
                i,
                &p,
                12,
                len,
            );
        }
        assert_eq!(cache.allocated_slots(), 128);
        let now = t0 + Duration::from_millis(2990);
        assert!(cache.get(299, now).is_some());
        assert!(
            cache.get(200, now).is_some(),
            "young packets survive growth"
        );
    }

    #[test]
    fn a_range_outside_the_packet_is_not_kept() {
        let t0 = Instant::now();
        let mut cache = PacketCache::new(64, AGE);
        let p = packet(1);
        cache.insert(t0, 1, &p, 12, p.len() + 1);
        cache.insert(t0, 2, &p, 14, 13);
        cache.insert(t0, 3, &p, 70_000, 70_001);
        assert!(cache.get(1, t0).is_none());
        assert!(cache.get(2, t0).is_none());
        assert!(cache.get(3, t0).is_none());
    }
}

//! The packets a consumer sent recently, kept for answering the subscriber's NACKs.
//!
//! Each entry shares the received packet's bytes (`Bytes`, reference-counted): the buffer never
//! copies media. It stores what is needed to rebuild exactly the packet the subscriber lost:
//! the output sequence number, timestamp, payload type and marker, plus when it was sent and
//! how often it was resent, so retransmissions stay bounded. Slots are indexed by output
//! sequence number; entries older than the maximum age are not resent.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::Bytes;

/// How many times one packet may be retransmitted.
pub const MAX_RESENDS: u8 = 3;

/// One sent packet.
#[derive(Debug, Clone)]
pub struct StoredPacket {
    /// The received (decrypted) packet, shared with every other consumer of it (its header
    /// extensions are written again on a resend).
    pub packet: Bytes,
    /// The payload as forwarded (a slice of `packet`; for a packet that arrived as RTX, without
    /// the original sequence number).
    pub payload: Bytes,
    /// VP8 ids as first sent, when the consumer rewrites them.
    pub vp8_ids: Option<crate::codecs::vp8::Vp8Rewritten>,
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

/// A fixed-size ring of recently sent packets.
pub struct RetransmissionBuffer {
    slots: Box<[Option<StoredPacket>]>,
    max_age: Duration,
}

impl RetransmissionBuffer {
    /// A buffer of `capacity` slots (rounded up to a power of two) keeping packets for `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.max(1).next_power_of_two().min(32_768);
        Self {
            slots: (0..capacity).map(|_| None).collect(),
            max_age,
        }
    }

    fn index(&self, sequence_number: u16) -> usize {
        usize::from(sequence_number) & (self.slots.len() - 1)
    }

    /// Stores a sent packet, replacing whatever was in its slot.
    pub fn insert(&mut self, packet: StoredPacket) {
        let i = self.index(packet.sequence_number);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(packet);
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
            || (entry.resends > 0 && now.saturating_duration_since(entry.sent_at) < min_interval)
        {
            return None;
        }
        entry.resends += 1;
        entry.sent_at = now;
        Some(entry.clone())
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stored(seq: u16, at: Instant) -> StoredPacket {
        StoredPacket {
            packet: Bytes::from_static(b"pkt"),
            payload: Bytes::from_static(b"t"),
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
        assert!(
            b.take_for_resend(65_535, now, Duration::ZERO).is_some(),
            "across the wrap"
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
        assert!(
            b.take_for_resend(7, now + Duration::from_millis(240), rtt)
                .is_some()
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
}

//! The worker's UDP socket: every platform socket trick in one place, the role `quinn-udp`
//! plays for `quinn`.
//!
//! [`MediaSocket`] receives in batches (`recvmmsg`, and GRO where the kernel offers it: one
//! buffer then holds a run of same-sized datagrams from one source) into receive buffers
//! allocated once at start-up, and sends each run of datagrams to one destination as one GSO
//! send (`UDP_SEGMENT`). It owns the socket, its buffers and its I/O counters ([`IoStats`]);
//! it must not know anything about ICE, DTLS or RTP: the driver hands it what the worker
//! queued and gives it a closure for what arrives.
//!
//! # Receive
//!
//! The kernel writes into fixed slots; each datagram is then copied once into a dense
//! ingress arena ([`IngressArena`]) and split off as its own `BytesMut`, which the worker
//! keeps (frozen into shared `Bytes`) for as long as any consumer's NACK history needs it.
//! Receiving straight into per-datagram slots would avoid that copy but pin a whole slot
//! (2 KiB, or 64 segments' worth with GRO) per retained datagram for about a second; the
//! copy costs tens of nanoseconds per *incoming* datagram, and the arena allocates once per
//! 64 KiB of traffic instead of once per datagram, reusing its allocation whenever every
//! datagram carved from it has been released.
//!
//! # Send
//!
//! The driver gathers everything the worker queued, then [`MediaSocket::send_all`] groups it
//! by destination (keeping each destination's order) and sends every run of equal-sized
//! datagrams (the last of a run may be shorter, as GSO allows) as one `sendmsg` with a segment
//! size. A run of one, a socket without GSO, or [`UdpSocketConfig::gso`] off sends datagrams
//! one by one. If a GSO send fails for any reason other than a full socket buffer, the run is
//! sent again one by one, so a NIC that refuses segmentation costs speed, never packets.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::BytesMut;
use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::residence_time::{AtomicResidenceHistogram, ResidenceHistogram};
use crate::worker::{MAX_DATAGRAM, Transmit};

/// Receive slot without GRO: larger than any datagram we accept, so an oversize one arrives
/// (truncated) still larger than [`MAX_DATAGRAM`] and is dropped as such by the worker.
const SLOT_WITHOUT_GRO: usize = 2048;
/// Size of each ingress arena allocation.
const ARENA_CAPACITY: usize = 64 * 1024;
/// Largest GSO send: the UDP payload limit over IPv4 (65,535 − 20 − 8) with some margin.
const MAX_GSO_BYTES: usize = 65_000;

/// Settings of a worker's UDP socket.
#[derive(Debug, Clone)]
pub struct UdpSocketConfig {
    /// Send runs to one destination with GSO when the kernel supports it. Off: one
    /// `sendmsg` per datagram (the fallback path, also taken when GSO fails at run time).
    pub gso: bool,
    /// Socket send and receive buffer sizes requested from the kernel (best effort).
    pub socket_buffer: usize,
    /// Datagrams the worker may queue while it handles one receive call's datagrams before
    /// the driver sends them: a receive call can bring thousands (GRO), each fanned out to
    /// every subscriber, and what is sent should still be in cache when it is copied out.
    pub send_early_after: usize,
}

impl Default for UdpSocketConfig {
    fn default() -> Self {
        Self {
            gso: true,
            socket_buffer: 4 * 1024 * 1024,
            // ~5 MB of 1200-byte packets: long GSO runs, yet no trip to memory. Measured with
            // `sfu-loadgen -p 1 -s 100`: sending only after the whole call lost packets from
            // 1.0M pkt/s on (a saturated worker's batches grew to ~100 MB); 800 cost 30 % more
            // system time at 1.0M (shorter GSO runs); 4,000 carried 1.7M without loss.
            send_early_after: 4000,
        }
    }
}

/// I/O counters of one socket, shared with the worker's handle. Updated once per batch, not
/// per datagram where it can be helped.
#[derive(Debug, Default)]
pub struct IoStats {
    receive_calls: AtomicU64,
    datagrams_in: AtomicU64,
    gro_buffers: AtomicU64,
    send_calls: AtomicU64,
    datagrams_out: AtomicU64,
    gso_sends: AtomicU64,
    gso_fallbacks: AtomicU64,
    send_errors: AtomicU64,
    largest_send_batch: AtomicU64,
    residence: AtomicResidenceHistogram,
}

/// A snapshot of [`IoStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStatsSnapshot {
    /// `recvmmsg` calls that returned data.
    pub receive_calls: u64,
    /// Datagrams received (GRO buffers counted by their segments).
    pub datagrams_in: u64,
    /// Receive buffers that held more than one datagram (GRO).
    pub gro_buffers: u64,
    /// `sendmsg` calls that succeeded (one per GSO run or single datagram).
    pub send_calls: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// GSO sends (each carried at least two datagrams).
    pub gso_sends: u64,
    /// GSO sends that failed and were sent again one by one.
    pub gso_fallbacks: u64,
    /// Datagrams the kernel refused (other than a full buffer, which is waited out).
    pub send_errors: u64,
    /// The most datagrams handed to one [`MediaSocket::send_all`].
    pub largest_send_batch: u64,
    /// Time from the receive that brought a batch to the end of the send of what the worker
    /// made of it, per datagram sent: the delay the SFU adds (see [`crate::residence_time`]).
    pub residence: ResidenceHistogram,
}

impl IoStats {
    /// The current values.
    pub fn snapshot(&self) -> IoStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoStatsSnapshot {
            receive_calls: get(&self.receive_calls),
            datagrams_in: get(&self.datagrams_in),
            gro_buffers: get(&self.gro_buffers),
            send_calls: get(&self.send_calls),
            datagrams_out: get(&self.datagrams_out),
            gso_sends: get(&self.gso_sends),
            gso_fallbacks: get(&self.gso_fallbacks),
            send_errors: get(&self.send_errors),
            largest_send_batch: get(&self.largest_send_batch),
            residence: self.residence.snapshot(),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What the platform offers this socket, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketCapabilities {
    /// Most datagrams one GSO send may carry (1: no GSO, or GSO turned off).
    pub max_gso_segments: usize,
    /// Most datagrams one receive buffer may hold (1: no GRO).
    pub gro_segments: usize,
}

/// A bound, configured UDP socket not yet registered with a runtime: built on the caller's
/// thread (so bind errors reach the caller), moved to the worker thread, then
/// [`Self::into_media_socket`] inside that thread's runtime.
pub struct BoundSocket {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    config: UdpSocketConfig,
}

impl BoundSocket {
    /// Binds `bind` with the buffer sizes of `config` and applies quinn-udp's options (GRO,
    /// packet info, no fragmentation).
    pub fn bind(bind: SocketAddr, config: UdpSocketConfig) -> io::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a small default buffer drops bursts, but a refusal is not fatal.
        let _ = socket.set_recv_buffer_size(config.socket_buffer);
        let _ = socket.set_send_buffer_size(config.socket_buffer);
        socket.set_nonblocking(true)?;
        socket.bind(&bind.into())?;
        let socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Self {
            socket,
            state,
            config,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// What the platform offers (GSO limited by the configuration).
    pub fn capabilities(&self) -> SocketCapabilities {
        capabilities(&self.state, &self.config)
    }

    /// Registers the socket with the current tokio runtime and allocates its buffers.
    pub fn into_media_socket(self, stats: Arc<IoStats>) -> io::Result<MediaSocket> {
        let io = UdpSocket::from_std(self.socket)?;
        let gro = self.state.gro_segments().max(1);
        let slot = if gro > 1 {
            (gro * MAX_DATAGRAM).max(SLOT_WITHOUT_GRO)
        } else {
            SLOT_WITHOUT_GRO
        };
        Ok(MediaSocket {
            io,
            state: self.state,
            config: self.config,
            slot,
            receive: vec![0; slot * BATCH_SIZE],
            arena: IngressArena::new(ARENA_CAPACITY),
            order: Vec::new(),
            grouping: Grouping::default(),
            gso_buffer: Vec::with_capacity(MAX_GSO_BYTES),
            max_gso_bytes: MAX_GSO_BYTES,
            stats,
        })
    }
}

fn capabilities(state: &UdpSocketState, config: &UdpSocketConfig) -> SocketCapabilities {
    SocketCapabilities {
        max_gso_segments: if config.gso {
            state.max_gso_segments().max(1)
        } else {
            1
        },
        gro_segments: state.gro_segments().max(1),
    }
}

/// The worker's socket inside its runtime: batched receive and GSO send.
pub struct MediaSocket {
    io: UdpSocket,
    state: UdpSocketState,
    config: UdpSocketConfig,
    /// Bytes per receive slot.
    slot: usize,
    /// `BATCH_SIZE` slots, allocated once.
    receive: Vec<u8>,
    arena: IngressArena,
    /// Send order scratch (indices into the transmits), reused.
    order: Vec<usize>,
    grouping: Grouping,
    /// One GSO run, contiguous, reused.
    gso_buffer: Vec<u8>,
    /// Largest GSO send ([`MAX_GSO_BYTES`]; tests raise it to make the kernel refuse one).
    max_gso_bytes: usize,
    stats: Arc<IoStats>,
}

impl MediaSocket {
    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// What the platform offers now (quinn-udp lowers GSO to 1 after a GSO failure).
    pub fn capabilities(&self) -> SocketCapabilities {
        capabilities(&self.state, &self.config)
    }

    /// See [`UdpSocketConfig::send_early_after`] (at least 1).
    pub fn send_early_after(&self) -> usize {
        self.config.send_early_after.max(1)
    }

    /// Waits until a datagram may be waiting.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// One batched receive: hands every datagram to `deliver` (source, bytes) and returns how
    /// many. `WouldBlock` when nothing is waiting; other errors (ICMP errors surface here on
    /// Linux) say nothing about other peers, and the caller should keep serving.
    pub fn try_receive(
        &mut self,
        mut deliver: impl FnMut(SocketAddr, BytesMut),
    ) -> io::Result<usize> {
        let mut metas = [RecvMeta::default(); BATCH_SIZE];
        let slot = self.slot;
        let count = {
            let mut slots = self.receive.chunks_mut(slot);
            let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
            let (io, state) = (&self.io, &self.state);
            io.try_io(Interest::READABLE, || {
                state.recv(UdpSockRef::from(io), &mut bufs, &mut metas)
            })?
        };
        let mut delivered = 0u64;
        let mut gro_buffers = 0u64;
        for (meta, buffer) in metas.iter().take(count).zip(self.receive.chunks(slot)) {
            let data = buffer.get(..meta.len).unwrap_or(buffer);
            if data.is_empty() {
                // An empty datagram is still one: the worker counts it.
                deliver(meta.addr, BytesMut::new());
                delivered += 1;
                continue;
            }
            let stride = if meta.stride == 0 {
                data.len()
            } else {
                meta.stride
            };
            if data.len() > stride {
                gro_buffers += 1;
            }
            for datagram in data.chunks(stride) {
                deliver(meta.addr, self.arena.copy(datagram));
                delivered += 1;
            }
        }
        IoStats::add(&self.stats.receive_calls, 1);
        IoStats::add(&self.stats.datagrams_in, delivered);
        IoStats::add(&self.stats.gro_buffers, gro_buffers);
        Ok(count)
    }

    /// Sends every transmit (the vector is left as it was, for the caller to recycle the
    /// buffers). Runs to one destination go out as GSO sends; a full socket buffer is waited
    /// out, other errors are counted and the datagram is given up (UDP: the peer recovers).
    /// With `received_at` (the receive call that caused them), each send's datagrams are
    /// counted in the residence histogram with the time from then to the end of that send.
    pub async fn send_all(&mut self, transmits: &[Transmit], received_at: Option<Instant>) {
        self.stats
            .largest_send_batch
            .fetch_max(transmits.len() as u64, Ordering::Relaxed);
        let max_segments = self.capabilities().max_gso_segments;
        if max_segments > 1 && transmits.len() > 1 {
            self.grouping.order(transmits, &mut self.order);
        } else {
            self.order.clear();
            self.order.extend(0..transmits.len());
        }
        let mut start = 0;
        while start < self.order.len() {
            let (end, segment) = run_end(
                transmits,
                &self.order,
                start,
                max_segments,
                self.max_gso_bytes,
            );
            let run = self.order.get(start..end).unwrap_or_default();
            let run_len = run.len();
            if run.len() > 1 {
                let mut buffer = std::mem::take(&mut self.gso_buffer);
                buffer.clear();
                for t in run.iter().filter_map(|&i| transmits.get(i)) {
                    buffer.extend_from_slice(&t.contents);
                }
                let destination = run
                    .first()
                    .and_then(|&i| transmits.get(i))
                    .map(|t| t.destination);
                let sent = match destination {
                    Some(d) => self.send_gso(d, &buffer, segment).await,
                    None => false,
                };
                self.gso_buffer = buffer;
                if !sent {
                    IoStats::add(&self.stats.gso_fallbacks, 1);
                    for t in run.iter().filter_map(|&i| transmits.get(i)) {
                        self.send_one(t.destination, &t.contents).await;
                    }
                }
            } else if let Some(t) = run.first().and_then(|&i| transmits.get(i)) {
                self.send_one(t.destination, &t.contents).await;
            }
            if let Some(at) = received_at {
                self.stats.residence.record(at.elapsed(), run_len as u64);
            }
            start = end;
        }
    }

    /// One GSO send; `false` if it failed (the caller falls back to single sends).
    async fn send_gso(&self, destination: SocketAddr, contents: &[u8], segment: usize) -> bool {
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: Some(segment),
            src_ip: None,
        };
        match self.send_transmit(&transmit).await {
            Ok(()) => {
                IoStats::add(&self.stats.send_calls, 1);
                IoStats::add(&self.stats.gso_sends, 1);
                IoStats::add(
                    &self.stats.datagrams_out,
                    contents.len().div_ceil(segment.max(1)) as u64,
                );
                true
            }
            Err(e) => {
                tracing::debug!("GSO send to {destination} failed ({e}): sending one by one");
                false
            }
        }
    }

    async fn send_one(&self, destination: SocketAddr, contents: &[u8]) {
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: None,
        };
        match self.send_transmit(&transmit).await {
            Ok(()) => {
                IoStats::add(&self.stats.send_calls, 1);
                IoStats::add(&self.stats.datagrams_out, 1);
            }
            Err(e) => {
                IoStats::add(&self.stats.send_errors, 1);
                tracing::debug!("send to {destination}: {e}");
            }
        }
    }

    /// Sends, waiting while the socket buffer is full.
    async fn send_transmit(&self, transmit: &quinn_udp::Transmit<'_>) -> io::Result<()> {
        loop {
            let result = self.io.try_io(Interest::WRITABLE, || {
                self.state.try_send(UdpSockRef::from(&self.io), transmit)
            });
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.writable().await?,
                other => return other,
            }
        }
    }

    #[cfg(test)]
    fn stats(&self) -> IoStatsSnapshot {
        self.stats.snapshot()
    }
}

/// Scratch for grouping transmits by destination, reused from one send to the next.
#[derive(Default)]
struct Grouping {
    group_of_destination: HashMap<SocketAddr, usize, BuildHasherDefault<AddressHasher>>,
    group_of_transmit: Vec<usize>,
    /// Per group: its size, then where its next index goes.
    next: Vec<usize>,
}

impl Grouping {
    /// Fills `order` with the indices of `transmits` grouped by destination: groups in the
    /// order their destination first appears, each keeping its transmits' order. A stable
    /// counting sort, linear in the batch: sorting by address instead (n log n comparisons of
    /// `SocketAddr`) took 15 % of a worker's time once it fell behind and batches grew, the
    /// moment it can least afford it.
    fn order(&mut self, transmits: &[Transmit], order: &mut Vec<usize>) {
        self.group_of_destination.clear();
        self.group_of_transmit.clear();
        self.next.clear();
        for t in transmits {
            let new_group = self.next.len();
            let group = *self
                .group_of_destination
                .entry(t.destination)
                .or_insert(new_group);
            if group == new_group {
                self.next.push(0);
            }
            if let Some(size) = self.next.get_mut(group) {
                *size += 1;
            }
            self.group_of_transmit.push(group);
        }
        let mut start = 0;
        for slot in &mut self.next {
            let size = *slot;
            *slot = start;
            start += size;
        }
        order.clear();
        order.resize(transmits.len(), 0);
        for (i, &group) in self.group_of_transmit.iter().enumerate() {
            if let Some(slot) = self.next.get_mut(group) {
                if let Some(place) = order.get_mut(*slot) {
                    *place = i;
                }
                *slot += 1;
            }
        }
    }
}

/// A multiply-rotate hasher for socket addresses (FxHash's step): the destinations are the
/// worker's own validated peers, a few hundred at most per batch, so speed matters and
/// flooding resistance does not.
#[derive(Default)]
struct AddressHasher(u64);

impl AddressHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            if let Some(prefix) = word.get_mut(..chunk.len()) {
                prefix.copy_from_slice(chunk);
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The end (exclusive, in `order`) of the GSO run starting at `start`, and its segment size:
/// same destination, every datagram the size of the first except a shorter last one, at most
/// `max_segments` datagrams and `max_bytes` bytes.
fn run_end(
    transmits: &[Transmit],
    order: &[usize],
    start: usize,
    max_segments: usize,
    max_bytes: usize,
) -> (usize, usize) {
    let at = |k: usize| order.get(k).and_then(|&i| transmits.get(i));
    let Some(first) = at(start) else {
        return (start + 1, 0);
    };
    let segment = first.contents.len();
    let mut end = start + 1;
    let mut bytes = segment;
    if segment == 0 {
        return (end, segment);
    }
    while end - start < max_segments {
        let Some(next) = at(end) else { break };
        let len = next.contents.len();
        if next.destination != first.destination
            || len > segment
            || len == 0
            || bytes + len > max_bytes
        {
            break;
        }
        end += 1;
        bytes += len;
        if len < segment {
            // Only the last segment may be shorter.
            break;
        }
    }
    (end, segment)
}

/// A dense arena for received datagrams: each is copied in and split off as its own
/// `BytesMut` sharing the arena's allocation. When the arena runs out it takes its
/// allocation back if every datagram carved from it has been dropped, and allocates a new one
/// otherwise (once per [`ARENA_CAPACITY`] bytes of traffic, not once per datagram).
pub struct IngressArena {
    free: BytesMut,
    capacity: usize,
}

impl IngressArena {
    /// An arena allocating `capacity` bytes at a time.
    pub fn new(capacity: usize) -> Self {
        Self {
            free: BytesMut::with_capacity(capacity),
            capacity,
        }
    }

    /// A copy of `datagram` in the arena.
    pub fn copy(&mut self, datagram: &[u8]) -> BytesMut {
        if self.free.capacity() < datagram.len() {
            let want = self.capacity.max(datagram.len());
            if !self.free.try_reclaim(want) {
                self.free = BytesMut::with_capacity(want);
            }
        }
        self.free.extend_from_slice(datagram);
        self.free.split()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn t(port: u16, len: usize) -> Transmit {
        Transmit {
            destination: SocketAddr::from(([127, 0, 0, 1], port)),
            contents: vec![port as u8; len],
        }
    }

    fn runs(transmits: &[Transmit], max: usize) -> Vec<(usize, usize)> {
        let order: Vec<usize> = (0..transmits.len()).collect();
        let mut out = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let (end, segment) = run_end(transmits, &order, start, max, MAX_GSO_BYTES);
            out.push((end - start, segment));
            start = end;
        }
        out
    }

    #[test]
    fn runs_break_on_destination_size_and_limits_and_allow_a_short_last_segment() {
        let ts = [
            t(1, 100),
            t(1, 100),
            t(1, 60),
            t(1, 100),
            t(2, 100),
            t(2, 120),
        ];
        assert_eq!(runs(&ts, 64), vec![(3, 100), (1, 100), (1, 100), (1, 120)]);
        assert_eq!(
            runs(&ts, 2),
            vec![(2, 100), (1, 60), (1, 100), (1, 100), (1, 120)]
        );
        let big: Vec<Transmit> = (0..64).map(|_| t(3, 1400)).collect();
        let r = runs(&big, 64);
        assert!(r.iter().all(|&(n, _)| n * 1400 <= MAX_GSO_BYTES), "{r:?}");
        assert_eq!(r.iter().map(|&(n, _)| n).sum::<usize>(), 64);
    }

    #[test]
    fn grouping_keeps_first_seen_destination_order_and_each_destinations_order() {
        let ports = [5, 7, 5, 9, 7, 5, 9, 9, 11];
        let ts: Vec<Transmit> = ports.iter().map(|&p| t(p, 10)).collect();
        let mut grouping = Grouping::default();
        let mut order = Vec::new();
        grouping.order(&ts, &mut order);
        assert_eq!(order, vec![0, 2, 5, 1, 4, 3, 6, 7, 8]);
        // Reused scratch: a second, different batch is grouped on its own.
        let ts: Vec<Transmit> = [3, 3, 1, 3].iter().map(|&p| t(p, 10)).collect();
        grouping.order(&ts, &mut order);
        assert_eq!(order, vec![0, 1, 3, 2]);
        grouping.order(&[], &mut order);
        assert!(order.is_empty());
    }

    #[test]
    fn grouping_a_large_interleaved_batch_is_a_stable_permutation() {
        // The worker's shape: packet after packet, each to every subscriber in turn, with some
        // IPv6 peers among them.
        let destinations: Vec<SocketAddr> = (0..100u16)
            .map(|i| {
                if i % 3 == 0 {
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 20_000 + i))
                } else {
                    SocketAddr::from(([127, 0, 0, 1], 20_000 + i))
                }
            })
            .collect();
        let ts: Vec<Transmit> = (0..50)
            .flat_map(|_| destinations.iter())
            .map(|&destination| Transmit {
                destination,
                contents: vec![0; 8],
            })
            .collect();
        let mut order = Vec::new();
        Grouping::default().order(&ts, &mut order);
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..ts.len()).collect::<Vec<_>>(), "a permutation");
        for (g, run) in order.chunks(50).enumerate() {
            assert!(
                run.iter().all(|&i| ts[i].destination == destinations[g]),
                "group {g} is one destination, in first-seen order"
            );
            assert!(
                run.windows(2).all(|w| w[0] < w[1]),
                "group {g} keeps its order"
            );
        }
    }

    #[test]
    fn the_arena_is_dense_and_reuses_its_allocation_once_released() {
        let mut arena = IngressArena::new(4096);
        let a = arena.copy(&[1; 1000]);
        let b = arena.copy(&[2; 1000]);
        assert_eq!(
            b.as_ptr() as usize - a.as_ptr() as usize,
            1000,
            "packed back to back"
        );
        let base = a.as_ptr();
        drop((a, b));
        let _c = arena.copy(&[3; 1000]);
        let _d = arena.copy(&[4; 1000]);
        // The arena is nearly full; once every datagram carved from it is gone, the next copy
        // takes the same allocation back instead of allocating.
        drop((_c, _d));
        let e = arena.copy(&[5; 2500]);
        assert_eq!(e.as_ptr(), base, "the released allocation is reused");
        assert_eq!(&e[..], &[5; 2500][..]);
    }

    async fn pair(gso: bool) -> (MediaSocket, std::net::UdpSocket) {
        let config = UdpSocketConfig {
            gso,
            ..Default::default()
        };
        let socket = BoundSocket::bind("127.0.0.1:0".parse().unwrap(), config)
            .unwrap()
            .into_media_socket(Arc::default())
            .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        (socket, peer)
    }

    fn receive_all(peer: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let len = peer.recv(&mut buf).expect("datagram arrives");
                buf[..len].to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_gso_send_the_kernel_refuses_is_sent_again_one_by_one() {
        let (mut socket, peer) = pair(true).await;
        if socket.capabilities().max_gso_segments < 2 {
            eprintln!("no GSO on this kernel: nothing to fall back from");
            return;
        }
        // 60 × 1,200 bytes is over the UDP payload limit: the kernel refuses the GSO send.
        socket.max_gso_bytes = 100_000;
        let transmits: Vec<Transmit> = (0..60u8)
            .map(|i| Transmit {
                destination: peer.local_addr().unwrap(),
                contents: vec![i; 1200],
            })
            .collect();
        socket.send_all(&transmits, None).await;
        let want: Vec<Vec<u8>> = transmits.iter().map(|t| t.contents.clone()).collect();
        assert_eq!(receive_all(&peer, 60), want, "every datagram, in order");
        let stats = socket.stats();
        assert_eq!(stats.gso_fallbacks, 1, "{stats:?}");
        assert_eq!(stats.gso_sends, 0, "{stats:?}");
        assert_eq!(stats.datagrams_out, 60, "{stats:?}");
    }

    #[tokio::test]
    async fn send_all_groups_by_destination_and_keeps_each_destinations_order() {
        for gso in [true, false] {
            let (mut socket, a) = pair(gso).await;
            let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            b.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut transmits = Vec::new();
            for i in 0..40u8 {
                for (peer, tag) in [(&a, 0u8), (&b, 1u8)] {
                    transmits.push(Transmit {
                        destination: peer.local_addr().unwrap(),
                        contents: vec![tag, i, 0, 0, 0, 0, 0, 0],
                    });
                }
            }
            socket.send_all(&transmits, None).await;
            for (peer, tag) in [(&a, 0u8), (&b, 1u8)] {
                let got = receive_all(peer, 40);
                let want: Vec<Vec<u8>> =
                    (0..40u8).map(|i| vec![tag, i, 0, 0, 0, 0, 0, 0]).collect();
                assert_eq!(got, want, "gso {gso}");
            }
            let stats = socket.stats();
            assert_eq!(stats.datagrams_out, 80);
            if gso && socket.capabilities().max_gso_segments > 1 {
                assert_eq!(stats.gso_sends, 2, "one run per destination: {stats:?}");
            } else {
                assert_eq!(stats.gso_sends, 0);
                assert_eq!(stats.send_calls, 80);
            }
        }
    }
}

//! The egress pacer of one subscriber transport, sans-I/O.
//!
//! The worker puts every packet for a subscriber (audio, video, retransmissions, probe padding)
//! into that transport's [`Pacer`] instead of sending it at once; [`Pacer::poll`] hands back
//! what may go now, in send order, and [`Pacer::poll_timeout`] says when to poll next. Egress
//! then follows the bandwidth estimate in bursts small enough to leave the subscriber as one
//! batch (one GSO syscall), and the pacer runs the probe clusters the estimator asks for.
//! Nothing reads a clock: every input takes `now`.
//!
//! The model is libwebrtc's `PacingController` (modules/pacing/pacing_controller.cc: a media
//! budget at a pacing rate of 2.5 × the estimate, a priority queue, probing through
//! `BitrateProber`) with the task-queue pacer's burst interval, reduced to what an SFU needs.
//!
//! ## Media: a leaky bucket
//!
//! The bucket fills at the *pacing rate* = `pacing_factor` × estimate ([`Pacer::set_rate`])
//! and holds at most one *burst* (`burst` worth of bytes at the pacing rate), so after an idle
//! period at most one burst leaves at once. A retransmission or video packet may go when it
//! fits in the bucket (a packet larger than a whole burst may go alone when the bucket is
//! full); every released packet — of any class, probes included — is taken out of the bucket,
//! which may go into debt down to [`MAX_DEBT`] worth of bytes. Long-run egress is therefore
//! exactly the pacing rate, and the non-audio bytes released by one poll never exceed
//! max(burst, one packet).
//!
//! Batching: [`Pacer::poll_timeout`] does not wake the caller as soon as one packet fits, but
//! once the bucket holds half a burst (or all that is queued, or the head packet if larger):
//! each wake-up releases between half a burst and a burst. The other half is slack: a wake-up
//! up to half a burst late loses no rate (the bucket would clip the excess otherwise). Later
//! wake-ups cost some pacing headroom, which the 2.5 pacing factor exists to absorb.
//!
//! ## Priorities and limits
//!
//! Strict priority audio > retransmission > video, FIFO within a class. **Audio is not
//! paced**: it is released at the first poll after it is enqueued (libwebrtc's default), and
//! its bytes are still taken out of the bucket so that it displaces video. Video that has
//! waited [`PacerConfig::max_queue_time`] is dropped, oldest first, instead of being sent late:
//! the caller learns it from [`Pacer::take_dropped_video`] (to request a keyframe, the stream
//! being broken) and gets the items back from [`Pacer::drain_dropped`] (to recycle buffers or
//! find which consumer lost packets). The queue holds at most
//! [`PacerConfig::max_queue_packets`]: a packet arriving at a full queue evicts the oldest
//! packet of the lowest class present that is not above its own (padding, then video, then
//! retransmissions); with nothing to evict it is dropped itself. Audio is evicted only by audio,
//! when the queue holds nothing else.
//!
//! ## Probing
//!
//! [`Pacer::start_probe`] takes a [`ProbeCluster`] from
//! [`crate::bandwidth_estimator::BandwidthEstimator::poll_probe`] (clusters given while one
//! runs wait their turn, at most [`MAX_PENDING_PROBES`]). From its start the cluster's schedule
//! replaces the bucket: a packet may go while the bytes sent for the cluster do not exceed
//! target rate × elapsed time, so packet *i* leaves at start + (bytes before it) / rate and the
//! send rate the estimator measures ((bytes − last packet) / (last send − first send)) is the
//! target. It takes retransmissions, then video, then padding; audio released meanwhile counts
//! too. Every packet released during a cluster carries its id ([`Released::probe_cluster`]).
//! When the cluster is due and nothing is queued, [`Pacer::padding_needed`] says how many bytes
//! of padding (padding-only packets or RTX of recent packets, enqueued as
//! [`PacketClass::Padding`]) would keep it going for the next [`PROBE_PADDING_AHEAD`]; a caller
//! that cannot pad is asked again every [`PROBE_RETRY`]. The cluster ends once it has lasted
//! its duration and sent its minimum packets and bytes, or [`PROBE_OVERRUN`] after its
//! duration regardless. Padding left over, or enqueued while no cluster runs, is dropped.
//!
//! ## Driving it
//!
//! ```text
//! on each packet for the subscriber:  pacer.enqueue(now, buf, len, class)
//! on the pacer timer, after enqueues: pacer.poll(now, &mut out)
//!                                     while let Some(n) = pacer.padding_needed(now) { enqueue padding ≥ n bytes; poll again }
//!                                     for each released: stamp the transport-wide seq, SRTP-protect,
//!                                       send (one batch), estimator.on_packet_sent(.., probe_cluster)
//!                                     re-arm the timer at pacer.poll_timeout()
//! on estimate change:                 pacer.set_rate(now, estimator.estimate())
//! when not probing (pacer.probing()): if let Some(c) = estimator.poll_probe(now) { pacer.start_probe(now, c) }
//! ```
//!
//! The transport-wide sequence number has to be assigned at release, in send order (the pacer
//! reorders by priority), which is why the packet is best protected after [`Pacer::poll`].
//!
//! No allocation per packet at steady state: four `VecDeque`s (one per class) and the list of
//! dropped items keep their capacity and are bounded by `max_queue_packets`; released items go
//! into the caller's vector. Budget arithmetic is in integer nano-bits, so
//! [`Pacer::poll_timeout`] is exact: polling at it always does something, and after a poll it
//! is strictly in the future (or `None`).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bandwidth_estimator::{Bitrate, ProbeCluster};

/// The deepest debt the media bucket can go into, in time at the pacing rate (libwebrtc's
/// `kMaxDebtInTime`): audio and probes beyond the pacing rate hold video back this long at most.
pub const MAX_DEBT: Duration = Duration::from_millis(500);
/// A probe cluster that has not met its minimum packets and bytes ends this long after its
/// duration anyway (the caller could not supply padding, or media ran dry).
pub const PROBE_OVERRUN: Duration = Duration::from_millis(50);
/// While a probe is due with nothing to send, the caller is asked for padding this often.
pub const PROBE_RETRY: Duration = Duration::from_millis(1);
/// [`Pacer::padding_needed`] asks for this much of the cluster's rate at a time.
pub const PROBE_PADDING_AHEAD: Duration = Duration::from_millis(2);
/// Probe clusters waiting behind a running one; more replace the oldest waiting.
pub const MAX_PENDING_PROBES: usize = 4;

/// Nano-bits (10⁻⁹ bit) in a byte: the bucket's unit, so that bit/s × ns needs no division.
const NANOBITS_PER_BYTE: i128 = 8_000_000_000;
/// Longer bursts are clamped to this.
const MAX_BURST: Duration = Duration::from_secs(1);
/// Pacing rates are clamped to this (bit/s), far above any link.
const MAX_PACING_BPS: u64 = 1 << 40;
/// The bucket refills for at most this long at once (ns): it is full well before.
const MAX_REFILL_NS: i128 = 10_000_000_000;
/// Used when the configured pacing factor is not a positive number.
const DEFAULT_PACING_FACTOR: f64 = 2.5;

/// Pacer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerConfig {
    /// The bandwidth estimate until the first [`Pacer::set_rate`].
    pub initial_estimate: Bitrate,
    /// The bucket holds this much time at the pacing rate: the largest burst (at most 1 s).
    pub burst: Duration,
    /// Pacing rate / estimate (libwebrtc: 2.5), so that a frame is not spread over its whole
    /// frame interval and a short backlog drains quickly.
    pub pacing_factor: f64,
    /// Video queued this long is dropped instead of sent (`Duration::MAX`: never).
    pub max_queue_time: Duration,
    /// Most packets queued at once, all classes together (at least 1).
    pub max_queue_packets: usize,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            initial_estimate: Bitrate::kbps(300),
            burst: Duration::from_millis(5),
            pacing_factor: DEFAULT_PACING_FACTOR,
            max_queue_time: Duration::from_millis(500),
            max_queue_packets: 2048,
        }
    }
}

/// What a queued packet is, which decides its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// Audio: first, never paced, never dropped for age.
    Audio,
    /// A retransmission (RTX): before video.
    Retransmission,
    /// Video: paced, dropped when it has waited too long.
    Video,
    /// Padding for a probe cluster: only sent while one runs.
    Padding,
}

impl PacketClass {
    /// 0 is the highest priority.
    fn rank(self) -> u8 {
        match self {
            Self::Audio => 0,
            Self::Retransmission => 1,
            Self::Video => 2,
            Self::Padding => 3,
        }
    }
}

/// A packet [`Pacer::poll`] says to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released<P> {
    /// The item given to [`Pacer::enqueue`].
    pub item: P,
    /// Its size as given to [`Pacer::enqueue`].
    pub size: usize,
    /// Its class.
    pub class: PacketClass,
    /// The probe cluster it is sent for ([`ProbeCluster::id`]): pass it on in
    /// [`crate::bandwidth_estimator::SentPacket::probe_cluster`].
    pub probe_cluster: Option<u32>,
}

/// Why the pacer dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacerDrop {
    /// Video that waited [`PacerConfig::max_queue_time`].
    Expired,
    /// The queue was full ([`PacerConfig::max_queue_packets`]).
    Overflow,
    /// Padding with no probe cluster to carry it.
    UnusedPadding,
}

/// A packet the pacer dropped, handed back by [`Pacer::drain_dropped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped<P> {
    /// The item given to [`Pacer::enqueue`].
    pub item: P,
    /// Its size.
    pub size: usize,
    /// Its class.
    pub class: PacketClass,
    /// Why it was dropped.
    pub reason: PacerDrop,
}

/// A packet count per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassCounts {
    /// Audio packets.
    pub audio: u64,
    /// Retransmissions.
    pub retransmission: u64,
    /// Video packets.
    pub video: u64,
    /// Padding packets.
    pub padding: u64,
}

impl ClassCounts {
    /// The count of `class`.
    pub fn get(&self, class: PacketClass) -> u64 {
        match class {
            PacketClass::Audio => self.audio,
            PacketClass::Retransmission => self.retransmission,
            PacketClass::Video => self.video,
            PacketClass::Padding => self.padding,
        }
    }

    /// All classes together.
    pub fn total(&self) -> u64 {
        self.audio + self.retransmission + self.video + self.padding
    }

    fn bump(&mut self, class: PacketClass) {
        let c = match class {
            PacketClass::Audio => &mut self.audio,
            PacketClass::Retransmission => &mut self.retransmission,
            PacketClass::Video => &mut self.video,
            PacketClass::Padding => &mut self.padding,
        };
        *c = c.saturating_add(1);
    }
}

/// Counters since the pacer was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacerStats {
    /// Packets released, by class.
    pub released: ClassCounts,
    /// Bytes released.
    pub released_bytes: u64,
    /// Packets dropped for any reason, by class.
    pub dropped: ClassCounts,
    /// Of those, dropped for age ([`PacerDrop::Expired`]).
    pub expired: u64,
    /// Of those, dropped for a full queue ([`PacerDrop::Overflow`]).
    pub overflowed: u64,
    /// Probe clusters started.
    pub probes_started: u64,
    /// Probe clusters that sent their minimum packets and bytes over their duration.
    pub probes_completed: u64,
    /// Probe clusters ended by [`PROBE_OVERRUN`] short of their minimums.
    pub probes_timed_out: u64,
}

#[derive(Debug)]
struct Entry<P> {
    item: P,
    size: usize,
    enqueued: Instant,
}

/// One class's FIFO and its byte count.
#[derive(Debug)]
struct Queue<P> {
    entries: VecDeque<Entry<P>>,
    bytes: usize,
}

impl<P> Queue<P> {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, entry: Entry<P>) {
        self.bytes = self.bytes.saturating_add(entry.size);
        self.entries.push_back(entry);
    }

    fn pop(&mut self) -> Option<Entry<P>> {
        let e = self.entries.pop_front()?;
        self.bytes = self.bytes.saturating_sub(e.size);
        Some(e)
    }

    fn front(&self) -> Option<&Entry<P>> {
        self.entries.front()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The probe cluster being sent.
#[derive(Debug, Clone, Copy)]
struct ActiveProbe {
    cluster: ProbeCluster,
    start: Instant,
    sent_bytes: u64,
    sent_packets: u32,
    /// Set when the cluster was due with nothing to send: ask for padding again then.
    retry_at: Option<Instant>,
}

impl ActiveProbe {
    fn rate(&self) -> i128 {
        i128::from(self.cluster.target_bitrate.as_bps())
    }

    fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    fn mins_met(&self) -> bool {
        self.sent_packets >= self.cluster.min_packets && self.sent_bytes >= self.cluster.min_bytes
    }

    fn done(&self, now: Instant) -> bool {
        let elapsed = self.elapsed(now);
        self.rate() <= 0
            || (elapsed >= self.cluster.duration && self.mins_met())
            || elapsed >= self.cluster.duration.saturating_add(PROBE_OVERRUN)
    }

    /// When [`Self::done`] becomes true if nothing more is sent.
    fn end_time(&self) -> Option<Instant> {
        let d = if self.mins_met() {
            self.cluster.duration
        } else {
            self.cluster.duration.saturating_add(PROBE_OVERRUN)
        };
        self.start.checked_add(d)
    }

    /// Whether the schedule lets another packet go: bytes sent ≤ rate × elapsed.
    fn due(&self, now: Instant) -> bool {
        let sent = bytes_to_nanobits(self.sent_bytes);
        sent <= self.rate().saturating_mul(nanos(self.elapsed(now)))
    }

    /// The first instant [`Self::due`] holds.
    fn due_time(&self) -> Option<Instant> {
        let rate = self.rate();
        if rate <= 0 {
            return None;
        }
        let ns = ceil_div(bytes_to_nanobits(self.sent_bytes), rate);
        self.start.checked_add(duration_from_nanos(ns))
    }
}

/// The egress pacer of one subscriber transport; `P` is the queued item (the worker's egress
/// buffer). See the [module documentation](self).
#[derive(Debug)]
pub struct Pacer<P> {
    config: PacerConfig,
    estimate: Bitrate,
    /// Pacing rate, bit/s.
    rate_bps: u64,
    /// Bucket level, nano-bits: `floor ≤ level ≤ cap`.
    level: i128,
    cap: i128,
    floor: i128,
    /// The latest `now` seen; the level is as of then.
    last: Instant,
    audio: Queue<P>,
    rtx: Queue<P>,
    video: Queue<P>,
    padding: Queue<P>,
    dropped: VecDeque<Dropped<P>>,
    dropped_video: u64,
    probe: Option<ActiveProbe>,
    pending: VecDeque<ProbeCluster>,
    stats: PacerStats,
}

impl<P> Pacer<P> {
    /// A pacer with an empty queue and a full bucket at `config.initial_estimate`.
    pub fn new(config: PacerConfig, now: Instant) -> Self {
        let pacing_factor = if config.pacing_factor.is_finite() && config.pacing_factor > 0.0 {
            config.pacing_factor
        } else {
            DEFAULT_PACING_FACTOR
        };
        let config = PacerConfig {
            burst: config.burst.min(MAX_BURST),
            pacing_factor,
            max_queue_packets: config.max_queue_packets.max(1),
            ..config
        };
        let mut pacer = Self {
            config,
            estimate: config.initial_estimate,
            rate_bps: 0,
            level: 0,
            cap: 0,
            floor: 0,
            last: now,
            audio: Queue::new(),
            rtx: Queue::new(),
            video: Queue::new(),
            padding: Queue::new(),
            dropped: VecDeque::new(),
            dropped_video: 0,
            probe: None,
            pending: VecDeque::with_capacity(MAX_PENDING_PROBES),
            stats: PacerStats::default(),
        };
        pacer.apply_rate(config.initial_estimate);
        pacer.level = pacer.cap;
        pacer
    }

    /// Sets the bandwidth estimate; the pacing rate becomes `pacing_factor` × it. The bucket
    /// refills at the old rate up to `now`.
    pub fn set_rate(&mut self, now: Instant, estimate: Bitrate) {
        self.advance(now);
        self.apply_rate(estimate);
    }

    /// The current estimate.
    pub fn estimate(&self) -> Bitrate {
        self.estimate
    }

    /// The current pacing rate (`pacing_factor` × the estimate).
    pub fn pacing_rate(&self) -> Bitrate {
        Bitrate::bps(self.rate_bps)
    }

    /// Queues `item` of `size` bytes (as it will be on the wire) for sending.
    pub fn enqueue(&mut self, now: Instant, item: P, size: usize, class: PacketClass) {
        self.advance(now);
        let now = self.last;
        self.expire(now);
        let entry = Entry {
            item,
            size,
            enqueued: now,
        };
        if class == PacketClass::Padding && self.probe.is_none() {
            self.discard(entry, class, PacerDrop::UnusedPadding);
            return;
        }
        if self.len() >= self.config.max_queue_packets {
            let victim = [
                PacketClass::Padding,
                PacketClass::Video,
                PacketClass::Retransmission,
                PacketClass::Audio,
            ]
            .into_iter()
            .find(|c| c.rank() >= class.rank() && !self.queue(*c).is_empty());
            match victim.and_then(|c| self.queue_mut(c).pop().map(|e| (c, e))) {
                Some((c, e)) => self.discard(e, c, PacerDrop::Overflow),
                None => {
                    self.discard(entry, class, PacerDrop::Overflow);
                    return;
                }
            }
        }
        self.queue_mut(class).push(entry);
    }

    /// Appends to `out`, in send order, the packets to send now: all queued audio, then what
    /// the running probe cluster's schedule or else the media bucket allows, retransmissions
    /// before video. Drops video that waited too long, ends a probe cluster that is done.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Released<P>>) {
        self.advance(now);
        let now = self.last;
        self.expire(now);
        self.update_probe(now);
        while let Some(e) = self.audio.pop() {
            self.release(now, e, PacketClass::Audio, out);
        }
        while self.probe.as_ref().is_some_and(|p| p.due(now)) {
            let next = [
                PacketClass::Retransmission,
                PacketClass::Video,
                PacketClass::Padding,
            ]
            .into_iter()
            .find_map(|c| self.queue_mut(c).pop().map(|e| (c, e)));
            match next {
                Some((c, e)) => self.release(now, e, c, out),
                None => {
                    if let Some(p) = &mut self.probe {
                        p.retry_at = now.checked_add(PROBE_RETRY);
                    }
                    break;
                }
            }
        }
        if self.probe.is_none() {
            while let Some(e) = self.padding.pop() {
                self.discard(e, PacketClass::Padding, PacerDrop::UnusedPadding);
            }
            while let Some((class, size)) = self.paced_head() {
                if !self.fits(size) {
                    break;
                }
                if let Some(e) = self.queue_mut(class).pop() {
                    self.release(now, e, class, out);
                }
            }
        }
    }

    /// When to call [`Self::poll`] next: `None` if nothing will be due without another input.
    /// A time at or before `now` means at once (e.g. audio is queued). Right after a poll it is
    /// strictly later than that poll's `now`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.audio.front().map(|e| e.enqueued));
        consider(
            self.video
                .front()
                .and_then(|e| e.enqueued.checked_add(self.config.max_queue_time)),
        );
        if let Some(p) = &self.probe {
            consider(p.end_time());
            let due = p.due_time();
            if self.rtx.is_empty() && self.video.is_empty() && self.padding.is_empty() {
                // Due again for padding; if the caller already declined, retry later.
                consider(match (due, p.retry_at) {
                    (Some(d), Some(r)) => Some(d.max(r)),
                    (d, _) => d,
                });
            } else {
                consider(due);
            }
        } else {
            consider(self.media_due());
        }
        next
    }

    /// Queues a probe cluster: it starts now, or when the running one ends.
    pub fn start_probe(&mut self, now: Instant, cluster: ProbeCluster) {
        self.advance(now);
        if self.pending.len() >= MAX_PENDING_PROBES {
            self.pending.pop_front();
        }
        self.pending.push_back(cluster);
        self.update_probe(self.last);
    }

    /// The id of the probe cluster being sent, if any.
    pub fn probing(&self) -> Option<u32> {
        self.probe.map(|p| p.cluster.id)
    }

    /// Bytes of padding to enqueue ([`PacketClass::Padding`]) now: `Some` when a probe cluster
    /// is due and nothing is queued. Call it after [`Self::poll`] and poll again after
    /// enqueueing; padding-only packets and RTX of recently sent packets both do.
    pub fn padding_needed(&self, now: Instant) -> Option<usize> {
        let p = self.probe.as_ref()?;
        let now = now.max(self.last);
        if p.done(now) || !p.due(now) || !self.is_empty() {
            return None;
        }
        let bytes = p.rate().saturating_mul(nanos(PROBE_PADDING_AHEAD)) / NANOBITS_PER_BYTE;
        Some(usize::try_from(bytes).unwrap_or(usize::MAX).max(1))
    }

    /// How long the oldest queued packet has waited.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        [&self.audio, &self.rtx, &self.video, &self.padding]
            .into_iter()
            .filter_map(|q| q.front().map(|e| e.enqueued))
            .min()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.audio.bytes + self.rtx.bytes + self.video.bytes + self.padding.bytes
    }

    /// Packets queued.
    pub fn len(&self) -> usize {
        self.audio.len() + self.rtx.len() + self.video.len() + self.padding.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters since creation.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Video packets dropped since the last call: if not zero, the stream the subscriber
    /// receives is broken until the next keyframe (see [`Self::drain_dropped`] for which).
    pub fn take_dropped_video(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_video)
    }

    /// The packets dropped since the last call, oldest first (at most `max_queue_packets` are
    /// kept; older ones are simply dropped).
    pub fn drain_dropped(&mut self) -> std::collections::vec_deque::Drain<'_, Dropped<P>> {
        self.dropped.drain(..)
    }

    fn apply_rate(&mut self, estimate: Bitrate) {
        self.estimate = estimate;
        let rate = (estimate.as_bps() as f64 * self.config.pacing_factor)
            .clamp(0.0, MAX_PACING_BPS as f64) as u64;
        self.rate_bps = rate;
        let rate = i128::from(rate);
        self.cap = rate.saturating_mul(nanos(self.config.burst));
        self.floor = -rate.saturating_mul(nanos(MAX_DEBT));
        self.level = self.level.clamp(self.floor, self.cap);
    }

    /// Refills the bucket up to `now` (never backwards).
    fn advance(&mut self, now: Instant) {
        if now <= self.last {
            return;
        }
        let dt = nanos(now.duration_since(self.last)).min(MAX_REFILL_NS);
        self.level = self
            .level
            .saturating_add(i128::from(self.rate_bps).saturating_mul(dt))
            .min(self.cap);
        self.last = now;
    }

    /// Drops video that has waited `max_queue_time`, oldest first.
    fn expire(&mut self, now: Instant) {
        while self.video.front().is_some_and(|e| {
            now.saturating_duration_since(e.enqueued) >= self.config.max_queue_time
        }) {
            if let Some(e) = self.video.pop() {
                self.discard(e, PacketClass::Video, PacerDrop::Expired);
            }
        }
    }

    /// Ends the probe cluster if done and starts the next waiting one.
    fn update_probe(&mut self, now: Instant) {
        loop {
            if let Some(p) = &self.probe {
                if !p.done(now) {
                    return;
                }
                if p.mins_met() {
                    self.stats.probes_completed += 1;
                } else {
                    self.stats.probes_timed_out += 1;
                }
                self.probe = None;
            }
            let Some(cluster) = self.pending.pop_front() else {
                return;
            };
            self.stats.probes_started += 1;
            self.probe = Some(ActiveProbe {
                cluster,
                start: now,
                sent_bytes: 0,
                sent_packets: 0,
                retry_at: None,
            });
        }
    }

    fn release(
        &mut self,
        now: Instant,
        e: Entry<P>,
        class: PacketClass,
        out: &mut Vec<Released<P>>,
    ) {
        self.level = self
            .level
            .saturating_sub(bytes_to_nanobits(e.size as u64))
            .max(self.floor);
        self.stats.released.bump(class);
        self.stats.released_bytes = self.stats.released_bytes.saturating_add(e.size as u64);
        let probe_cluster = self.probe.as_mut().map(|p| {
            p.sent_bytes = p.sent_bytes.saturating_add(e.size as u64);
            p.sent_packets = p.sent_packets.saturating_add(1);
            p.retry_at = None;
            p.cluster.id
        });
        out.push(Released {
            item: e.item,
            size: e.size,
            class,
            probe_cluster,
        });
        if probe_cluster.is_some() {
            self.update_probe(now);
        }
    }

    fn discard(&mut self, e: Entry<P>, class: PacketClass, reason: PacerDrop) {
        self.stats.dropped.bump(class);
        match reason {
            PacerDrop::Expired => self.stats.expired += 1,
            PacerDrop::Overflow => self.stats.overflowed += 1,
            PacerDrop::UnusedPadding => {}
        }
        if class == PacketClass::Video {
            self.dropped_video = self.dropped_video.saturating_add(1);
        }
        if self.dropped.len() < self.config.max_queue_packets {
            self.dropped.push_back(Dropped {
                item: e.item,
                size: e.size,
                class,
                reason,
            });
        }
    }

    /// The next paced (non-audio, non-padding) packet: its class and size.
    fn paced_head(&self) -> Option<(PacketClass, usize)> {
        self.rtx
            .front()
            .map(|e| (PacketClass::Retransmission, e.size))
            .or_else(|| self.video.front().map(|e| (PacketClass::Video, e.size)))
    }

    /// Whether the bucket lets a packet of `size` bytes go.
    fn fits(&self, size: usize) -> bool {
        self.rate_bps > 0
            && (bytes_to_nanobits(size as u64) <= self.level || self.level >= self.cap)
    }

    /// When the bucket holds a batch for the paced queue (see the module documentation).
    fn media_due(&self) -> Option<Instant> {
        if self.rate_bps == 0 {
            return None;
        }
        let (_, head) = self.paced_head()?;
        let head = bytes_to_nanobits(head as u64);
        let queued = bytes_to_nanobits(self.rtx.bytes.saturating_add(self.video.bytes) as u64);
        let target = self.cap.min(head.max(queued.min(self.cap / 2)));
        if self.level >= target {
            return Some(self.last);
        }
        let ns = ceil_div(target - self.level, i128::from(self.rate_bps));
        self.last.checked_add(duration_from_nanos(ns))
    }

    fn queue(&self, class: PacketClass) -> &Queue<P> {
        match class {
            PacketClass::Audio => &self.audio,
            PacketClass::Retransmission => &self.rtx,
            PacketClass::Video => &self.video,
            PacketClass::Padding => &self.padding,
        }
    }

    fn queue_mut(&mut self, class: PacketClass) -> &mut Queue<P> {
        match class {
            PacketClass::Audio => &mut self.audio,
            PacketClass::Retransmission => &mut self.rtx,
            PacketClass::Video => &mut self.video,
            PacketClass::Padding => &mut self.padding,
        }
    }
}

fn nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

fn bytes_to_nanobits(bytes: u64) -> i128 {
    i128::from(bytes).saturating_mul(NANOBITS_PER_BYTE)
}

/// ⌈a / b⌉ for a ≥ 0, b > 0.
fn ceil_div(a: i128, b: i128) -> i128 {
    if b <= 0 {
        return i128::MAX;
    }
    let a = a.max(0);
    a / b + i128::from(a % b != 0)
}

fn duration_from_nanos(ns: i128) -> Duration {
    Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::bandwidth_estimator::MIN_PROBE_PACKETS;
    use PacketClass::{Audio, Padding, Retransmission, Video};

    /// xorshift64*: deterministic test randomness.
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn config(kbps: u64) -> PacerConfig {
        PacerConfig {
            initial_estimate: Bitrate::kbps(kbps),
            ..PacerConfig::default()
        }
    }

    fn cluster(id: u32, bps: u64, duration: Duration) -> ProbeCluster {
        ProbeCluster {
            id,
            target_bitrate: Bitrate(bps),
            duration,
            min_packets: MIN_PROBE_PACKETS,
            min_bytes: Bitrate(bps).bytes_in(duration),
        }
    }

    /// Bytes the bucket holds at the current pacing rate.
    fn burst_bytes(pacer: &Pacer<u64>) -> f64 {
        pacer.pacing_rate().as_bps() as f64 * pacer.config.burst.as_secs_f64() / 8.0
    }

    fn capacities(pacer: &Pacer<u64>) -> [usize; 5] {
        [
            pacer.audio.entries.capacity(),
            pacer.rtx.entries.capacity(),
            pacer.video.entries.capacity(),
            pacer.padding.entries.capacity(),
            pacer.dropped.capacity(),
        ]
    }

    /// Keeps `depth` video packets of `size` queued and polls exactly at `poll_timeout` (plus
    /// `lateness()`) for `seconds`; returns the bytes released.
    fn saturate(
        pacer: &mut Pacer<u64>,
        now: &mut Instant,
        seconds: u64,
        size: usize,
        mut lateness: impl FnMut() -> Duration,
    ) -> (u64, u64) {
        let end = *now + Duration::from_secs(seconds);
        let mut out = Vec::new();
        let (mut bytes, mut wakeups) = (0, 0);
        let mut id = 0;
        loop {
            while pacer.len() < 40 {
                pacer.enqueue(*now, id, size, Video);
                id += 1;
            }
            let next = pacer
                .poll_timeout()
                .expect("a saturated queue has a timeout");
            let at = next.max(*now) + lateness();
            if at > end {
                *now = end;
                return (bytes, wakeups);
            }
            *now = at;
            wakeups += 1;
            out.clear();
            pacer.poll(*now, &mut out);
            assert!(!out.is_empty(), "a wake-up released nothing");
            bytes += out.iter().map(|r| r.size as u64).sum::<u64>();
        }
    }

    #[test]
    fn released_rate_follows_pacing_factor() {
        for kbps in [300, 1000, 5000] {
            let t0 = Instant::now();
            let cfg = PacerConfig {
                max_queue_time: Duration::MAX,
                ..config(kbps)
            };
            let mut pacer = Pacer::new(cfg, t0);
            let mut now = t0;
            for (estimate, seconds) in [(kbps * 1000, 5), (kbps * 2000, 5)] {
                pacer.set_rate(now, Bitrate(estimate));
                let (bytes, wakeups) =
                    saturate(&mut pacer, &mut now, seconds, 1200, || Duration::ZERO);
                let rate = bytes as f64 * 8.0 / seconds as f64;
                let expected = 2.5 * estimate as f64;
                assert!(
                    (rate / expected - 1.0).abs() < 0.05,
                    "estimate {estimate}: released {rate} bit/s, expected {expected}"
                );
                // Batches: a wake-up carries at least half a burst (less one packet), or a
                // packet when a burst is smaller.
                let per_wakeup = bytes as f64 / wakeups as f64;
                let cap = burst_bytes(&pacer);
                assert!(
                    per_wakeup >= (cap / 2.0 - 1200.0).max(1200.0),
                    "estimate {estimate}: {per_wakeup} bytes per wake-up, burst {cap}"
                );
            }
            // No allocation at steady state: the queues keep their capacity.
            let warm = capacities(&pacer);
            saturate(&mut pacer, &mut now, 2, 1200, || Duration::ZERO);
            assert_eq!(capacities(&pacer), warm);
        }
    }

    #[test]
    fn late_wakeups_within_half_a_burst_lose_no_rate() {
        let t0 = Instant::now();
        let cfg = PacerConfig {
            max_queue_time: Duration::MAX,
            ..config(5000)
        };
        let mut pacer = Pacer::new(cfg, t0);
        let mut now = t0;
        let mut rng = Rng(7);
        let half_burst = cfg.burst.as_micros() as u64 / 2;
        let (bytes, _) = saturate(&mut pacer, &mut now, 10, 1200, || us(rng.below(half_burst)));
        let rate = bytes as f64 * 8.0 / 10.0;
        assert!((rate / 12.5e6 - 1.0).abs() < 0.05, "released {rate} bit/s");
    }

    #[test]
    fn bursts_never_exceed_the_burst_size() {
        for (kbps, burst_ms, seed) in [(300, 5, 1), (1000, 5, 2), (4000, 5, 3), (20_000, 2, 4)] {
            let t0 = Instant::now();
            let cfg = PacerConfig {
                burst: ms(burst_ms),
                max_queue_time: Duration::MAX,
                ..config(kbps)
            };
            let mut pacer = Pacer::new(cfg, t0);
            let cap = burst_bytes(&pacer);
            let mut rng = Rng(seed);
            let mut now = t0;
            let mut out = Vec::new();
            let mut largest_burst = 0;
            for id in 0..20_000u64 {
                while pacer.len() < 30 {
                    let class = if rng.below(4) == 0 {
                        Retransmission
                    } else {
                        Video
                    };
                    pacer.enqueue(now, id, 60 + rng.below(1141) as usize, class);
                }
                now = match rng.below(10) {
                    // On time, late by up to 50 ms, or at some unrelated moment.
                    0..=6 => pacer.poll_timeout().unwrap().max(now),
                    7 => pacer.poll_timeout().unwrap().max(now) + us(rng.below(50_000)),
                    _ => now + us(rng.below(3_000)),
                };
                out.clear();
                pacer.poll(now, &mut out);
                let burst: usize = out.iter().map(|r| r.size).sum();
                if out.len() > 1 {
                    assert!(
                        burst as f64 <= cap,
                        "{kbps} kbit/s: burst of {burst} bytes, bucket {cap}"
                    );
                }
                largest_burst = largest_burst.max(burst);
            }
            // Batching: wake-ups carry up to a full burst when it holds several packets.
            if cap > 3000.0 {
                assert!(
                    largest_burst as f64 > cap / 2.0,
                    "largest burst {largest_burst}"
                );
            }
        }
    }

    #[test]
    fn audio_is_released_at_once_and_never_dropped() {
        let t0 = Instant::now();
        let cfg = PacerConfig {
            max_queue_time: ms(100),
            max_queue_packets: 50,
            ..config(500)
        };
        let mut pacer = Pacer::new(cfg, t0);
        let (mut next_audio, mut next_video) = (t0, t0);
        let mut now = t0;
        let end = t0 + Duration::from_secs(5);
        let mut out = Vec::new();
        let (mut audio_sent, mut audio_released, mut id) = (0u64, 0u64, 0u64);
        let mut audio_times = std::collections::HashMap::new();
        let mut polls = 0;
        while now < end {
            polls += 1;
            assert!(polls < 100_000, "busy loop");
            // Video at 3 Mbit/s into a 1.25 Mbit/s pacer: saturated, overflowing, expiring.
            let timeout = pacer.poll_timeout().unwrap_or(end);
            now = timeout.min(next_audio).min(next_video).max(now);
            if next_video <= now {
                // Every second a keyframe-sized burst overflows the queue.
                let n = if (next_video - t0).as_micros() % 1_000_000 < 3200 {
                    80
                } else {
                    1
                };
                for _ in 0..n {
                    pacer.enqueue(now, id, 1200, Video);
                    id += 1;
                }
                next_video += us(3200);
            }
            if next_audio <= now {
                audio_times.insert(id, now);
                pacer.enqueue(now, id, 100, Audio);
                id += 1;
                audio_sent += 1;
                next_audio += ms(20);
            }
            out.clear();
            pacer.poll(now, &mut out);
            for (i, r) in out.iter().enumerate() {
                if r.class == Audio {
                    assert_eq!(i, 0, "audio goes first");
                    assert_eq!(audio_times.get(&r.item), Some(&now), "audio held back");
                    audio_released += 1;
                }
            }
            assert!(pacer.drain_dropped().all(|d| d.class != Audio));
        }
        let stats = pacer.stats();
        assert_eq!(stats.dropped.audio, 0);
        assert_eq!(audio_released, audio_sent);
        assert!(
            stats.dropped.video > 100,
            "video was not saturating: {stats:?}"
        );
        assert!(stats.expired > 0 && stats.overflowed > 0, "{stats:?}");
    }

    #[test]
    fn priority_order_audio_rtx_video_fifo() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(config(5000), t0);
        let mut out = Vec::new();
        // Everything fits: the order is by class, FIFO within.
        for (id, class) in [(0, Video), (1, Retransmission), (2, Audio), (3, Video)]
            .into_iter()
            .chain([(4, Retransmission), (5, Audio)])
        {
            pacer.enqueue(t0, id, 100, class);
        }
        pacer.poll(t0, &mut out);
        let order: Vec<u64> = out.iter().map(|r| r.item).collect();
        assert_eq!(order, [2, 5, 1, 4, 0, 3]);

        // Saturated: a retransmission queued after video goes before it at the next wake-up.
        let t1 = t0 + ms(100);
        for id in 10..30 {
            pacer.enqueue(t1, id, 1200, Video);
        }
        out.clear();
        pacer.poll(t1, &mut out);
        let first = out.len();
        assert!((1..20).contains(&first), "{first} released");
        pacer.enqueue(t1, 100, 1200, Retransmission);
        pacer.enqueue(t1, 101, 100, Audio);
        out.clear();
        pacer.poll(t1, &mut out);
        assert_eq!(out.iter().map(|r| r.item).collect::<Vec<_>>(), [101]);
        let mut now = t1;
        let mut order = Vec::new();
        while let Some(t) = pacer.poll_timeout() {
            assert!(t > now, "busy loop");
            now = t;
            out.clear();
            pacer.poll(now, &mut out);
            order.extend(out.iter().map(|r| r.item));
        }
        let mut expected = vec![100];
        expected.extend(10 + first as u64..30);
        assert_eq!(order, expected);
    }

    #[test]
    fn stale_video_is_dropped_oldest_first_and_counted() {
        let t0 = Instant::now();
        let cfg = PacerConfig {
            max_queue_time: ms(500),
            ..config(100)
        };
        // 1 Mbit/s of video into a 250 kbit/s pacer for 3 s.
        let mut pacer = Pacer::new(cfg, t0);
        let mut now = t0;
        let mut next_video = t0;
        let end = t0 + Duration::from_secs(3);
        let mut out = Vec::new();
        let mut events = Vec::new(); // video ids released or dropped, in event order
        let mut enqueued_at = Vec::new();
        let (mut dropped_events, mut released) = (0u64, 0u64);
        let mut polls = 0;
        while now < end {
            polls += 1;
            assert!(polls < 100_000, "busy loop");
            now = pacer.poll_timeout().unwrap_or(end).min(next_video).max(now);
            if next_video <= now {
                pacer.enqueue(now, enqueued_at.len() as u64, 1200, Video);
                enqueued_at.push(now);
                next_video += us(9600);
                events.extend(pacer.drain_dropped().map(|d| {
                    assert_eq!((d.class, d.reason), (Video, PacerDrop::Expired));
                    d.item
                }));
            }
            out.clear();
            pacer.poll(now, &mut out);
            events.extend(pacer.drain_dropped().map(|d| {
                assert_eq!((d.class, d.reason), (Video, PacerDrop::Expired));
                assert!(
                    now - enqueued_at[d.item as usize] >= ms(500),
                    "dropped early"
                );
                d.item
            }));
            for r in &out {
                assert!(
                    now - enqueued_at[r.item as usize] < ms(500),
                    "sent stale video"
                );
                events.push(r.item);
                released += 1;
            }
            assert!(pacer.queue_delay(now) < ms(500));
            dropped_events += pacer.take_dropped_video();
        }
        assert!(events.windows(2).all(|w| w[0] < w[1]), "not oldest first");
        let stats = pacer.stats();
        assert_eq!(pacer.take_dropped_video(), 0);
        assert!(stats.expired > 100, "{stats:?}");
        assert_eq!(dropped_events, stats.dropped.video);
        assert_eq!(stats.expired, stats.dropped.video);
        assert_eq!(
            released + stats.expired + pacer.len() as u64,
            enqueued_at.len() as u64
        );
    }

    /// Drives a pacer through a probe with a caller that pads (`pad`: padding packet size, 0
    /// for none). Returns (time, size, tag) of each release and the number of polls.
    fn run_probe(
        pacer: &mut Pacer<u64>,
        t0: Instant,
        until: Duration,
        pad: usize,
    ) -> (Vec<(Instant, Released<u64>)>, usize) {
        let mut now = t0;
        let mut out = Vec::new();
        let mut log = Vec::new();
        let mut polls = 0;
        let mut id = 1_000_000;
        while let Some(t) = pacer.poll_timeout() {
            now = t.max(now);
            if now > t0 + until {
                break;
            }
            loop {
                out.clear();
                pacer.poll(now, &mut out);
                polls += 1;
                log.extend(out.drain(..).map(|r| (now, r)));
                assert!(pacer.poll_timeout().is_none_or(|t| t > now), "busy loop");
                match pacer.padding_needed(now) {
                    Some(n) if pad > 0 => {
                        for _ in 0..n.div_ceil(pad) {
                            pacer.enqueue(now, id, pad, Padding);
                            id += 1;
                        }
                    }
                    _ => break,
                }
            }
        }
        (log, polls)
    }

    /// (bytes − last) / (last send − first send), as the probe estimator measures it.
    fn send_rate(log: &[(Instant, Released<u64>)], id: u32) -> f64 {
        let sent: Vec<_> = log
            .iter()
            .filter(|(_, r)| r.probe_cluster == Some(id))
            .collect();
        let bytes: usize = sent.iter().map(|(_, r)| r.size).sum();
        let (first, last) = (sent.first().unwrap(), sent.last().unwrap());
        (bytes - last.1.size) as f64 * 8.0 / (last.0 - first.0).as_secs_f64()
    }

    #[test]
    fn probe_releases_at_target_rate_and_asks_for_padding() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(config(500), t0);
        let probe = cluster(7, 4_000_000, ms(100));
        assert_eq!(pacer.padding_needed(t0), None, "no padding without a probe");
        pacer.start_probe(t0, probe);
        assert_eq!(pacer.probing(), Some(7));
        let (log, polls) = run_probe(&mut pacer, t0, ms(300), 250);
        assert_eq!(pacer.probing(), None);
        let stats = pacer.stats();
        assert_eq!((stats.probes_completed, stats.probes_timed_out), (1, 0));
        assert!(
            log.iter()
                .all(|(_, r)| r.class == Padding && r.probe_cluster == Some(7))
        );
        let bytes: u64 = log.iter().map(|(_, r)| r.size as u64).sum();
        assert!(bytes >= probe.min_bytes && log.len() as u32 >= probe.min_packets);
        let span = log.last().unwrap().0 - t0;
        assert!(span >= ms(99) && span <= ms(101), "probe lasted {span:?}");
        let rate = send_rate(&log, 7);
        assert!(
            (rate / 4e6 - 1.0).abs() < 0.05,
            "probe sent at {rate} bit/s"
        );
        assert!(
            polls < 3 * log.len() + 10,
            "{polls} polls for {} packets",
            log.len()
        );
        // After the cluster: no padding wanted, padding given is dropped, nothing tagged.
        let later = t0 + ms(300);
        assert_eq!(pacer.padding_needed(later), None);
        pacer.enqueue(later, 1, 200, Padding);
        pacer.enqueue(later, 2, 200, Video);
        let last_drop = pacer.drain_dropped().next_back().unwrap();
        assert_eq!(
            (last_drop.item, last_drop.reason),
            (1, PacerDrop::UnusedPadding)
        );
        // The cluster's bytes were taken out of the media bucket: the video waits for it.
        let mut out = Vec::new();
        let mut now = later;
        while out.is_empty() {
            assert!(now < later + Duration::from_secs(1), "video never released");
            now = pacer.poll_timeout().unwrap().max(now);
            pacer.poll(now, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].item, out[0].probe_cluster), (2, None));
    }

    #[test]
    fn probe_sends_media_first_then_padding_all_tagged() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(config(1000), t0);
        for id in 0..10 {
            pacer.enqueue(t0, id, 1200, Video);
        }
        pacer.start_probe(t0, cluster(3, 3_000_000, ms(60)));
        // Audio arriving during the probe is sent at once and counted in it.
        let mut out = Vec::new();
        pacer.poll(t0, &mut out);
        pacer.enqueue(t0 + ms(5), 500, 100, Audio);
        let (log, _) = run_probe(&mut pacer, t0 + ms(5), ms(200), 300);
        let log: Vec<_> = out.drain(..).map(|r| (t0, r)).chain(log).collect();
        assert!(
            log.iter().all(|(_, r)| r.probe_cluster == Some(3)),
            "untagged"
        );
        let classes: Vec<_> = log.iter().map(|(_, r)| r.class).collect();
        let last_video = classes.iter().rposition(|c| *c == Video).unwrap();
        let first_padding = classes.iter().position(|c| *c == Padding).unwrap();
        assert!(
            last_video < first_padding,
            "padding before media: {classes:?}"
        );
        assert_eq!(classes.iter().filter(|c| **c == Video).count(), 10);
        let audio = log.iter().find(|(_, r)| r.class == Audio).unwrap();
        assert_eq!(audio.0, t0 + ms(5));
        let rate = send_rate(&log, 3);
        assert!(
            (rate / 3e6 - 1.0).abs() < 0.05,
            "probe sent at {rate} bit/s"
        );
    }

    #[test]
    fn probe_meets_min_packets_or_times_out() {
        // 900 kbit/s for 15 ms is 1687 bytes: two 1000-byte paddings, but six packets needed.
        let t0 = Instant::now();
        let mut pacer = Pacer::new(config(300), t0);
        pacer.start_probe(t0, cluster(1, 900_000, ms(15)));
        let (log, _) = run_probe(&mut pacer, t0, ms(200), 1000);
        assert_eq!(log.len(), 6);
        let last = log.last().unwrap().0 - t0;
        // Packet i leaves at i × 1000 bytes / 900 kbit/s.
        assert!(last >= ms(44) && last <= ms(45), "{last:?}");
        assert_eq!(pacer.stats().probes_completed, 1);

        // A caller that cannot pad: the cluster ends PROBE_OVERRUN after its duration, with
        // wake-ups every PROBE_RETRY meanwhile, never a busy loop.
        let mut pacer = Pacer::new(config(300), t0);
        pacer.start_probe(t0, cluster(2, 900_000, ms(15)));
        let (log, polls) = run_probe(&mut pacer, t0, ms(500), 0);
        assert!(log.is_empty());
        assert_eq!(pacer.probing(), None);
        assert_eq!(pacer.stats().probes_timed_out, 1);
        assert!(polls <= 70, "{polls} polls");

        // Clusters given while one runs follow it.
        let mut pacer = Pacer::new(config(300), t0);
        pacer.start_probe(t0, cluster(4, 900_000, ms(15)));
        pacer.start_probe(t0, cluster(5, 1_800_000, ms(15)));
        let (log, _) = run_probe(&mut pacer, t0, ms(500), 200);
        let ids: Vec<_> = log.iter().map(|(_, r)| r.probe_cluster.unwrap()).collect();
        let switch = ids.iter().position(|&i| i == 5).unwrap();
        assert!(ids[..switch].iter().all(|&i| i == 4) && ids[switch..].iter().all(|&i| i == 5));
        assert!((send_rate(&log, 4) / 0.9e6 - 1.0).abs() < 0.05);
        assert!((send_rate(&log, 5) / 1.8e6 - 1.0).abs() < 0.05);
        assert_eq!(pacer.stats().probes_completed, 2);
    }

    #[test]
    fn poll_timeout_is_consistent_with_poll() {
        for seed in 1..=20u64 {
            let t0 = Instant::now();
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let cfg = PacerConfig {
                max_queue_time: ms(300),
                max_queue_packets: 200,
                burst: ms(1 + rng.below(10)),
                ..config(100 + rng.below(5000))
            };
            let mut pacer = Pacer::new(cfg, t0);
            let mut now = t0;
            let mut next_input = t0;
            let mut out = Vec::new();
            let mut id = 0;
            for _ in 0..5000 {
                let timeout = pacer.poll_timeout();
                let by_timer = timeout.is_some_and(|t| t <= next_input);
                now = if by_timer {
                    timeout.unwrap()
                } else {
                    next_input
                }
                .max(now);
                if !by_timer {
                    match rng.below(100) {
                        0..=1 => pacer.set_rate(now, Bitrate(rng.below(6_000_000))),
                        2 => {
                            let c = cluster(id as u32, 200_000 + rng.below(8_000_000), ms(15));
                            pacer.start_probe(now, c);
                        }
                        r => {
                            let class = match r {
                                3..=22 => Audio,
                                23..=32 => Retransmission,
                                33..=37 => Padding,
                                _ => Video,
                            };
                            pacer.enqueue(now, id, 50 + rng.below(1150) as usize, class);
                        }
                    }
                    id += 1;
                    next_input = now + us(rng.below(8000));
                }
                let before = pacer.stats();
                out.clear();
                pacer.poll(now, &mut out);
                let after = pacer.stats();
                if by_timer {
                    let useful = !out.is_empty()
                        || after.dropped != before.dropped
                        || after.probes_completed + after.probes_timed_out
                            != before.probes_completed + before.probes_timed_out
                        || pacer.padding_needed(now).is_some();
                    assert!(useful, "seed {seed}: a wake-up did nothing");
                }
                assert!(
                    pacer.poll_timeout().is_none_or(|t| t > now),
                    "seed {seed}: timeout not in the future after a poll"
                );
                if let Some(n) = pacer.padding_needed(now)
                    && rng.below(10) < 7
                {
                    pacer.enqueue(now, id, n.min(1200), Padding);
                    id += 1;
                    out.clear();
                    pacer.poll(now, &mut out);
                    assert!(!out.is_empty(), "requested padding not sent");
                    assert!(pacer.poll_timeout().is_none_or(|t| t > now));
                }
                pacer.drain_dropped().for_each(drop);
            }
        }
    }

    #[test]
    fn memory_is_bounded_under_a_flood() {
        let t0 = Instant::now();
        let cfg = PacerConfig {
            max_queue_packets: 64,
            ..config(50)
        };
        let mut pacer = Pacer::new(cfg, t0);
        pacer.start_probe(t0, cluster(1, 100_000, ms(15)));
        let mut rng = Rng(99);
        let mut out = Vec::new();
        let mut now = t0;
        let mut released = 0;
        let n = 200_000u64;
        for id in 0..n {
            let class =
                [Audio, Retransmission, Video, Video, Video, Padding][rng.below(6) as usize];
            pacer.enqueue(now, id, 1200, class);
            assert!(pacer.len() <= 64);
            if id % 100 == 0 {
                now += us(100);
                out.clear();
                pacer.poll(now, &mut out);
                released += out.len() as u64;
            }
        }
        let stats = pacer.stats();
        assert_eq!(released + stats.dropped.total() + pacer.len() as u64, n);
        assert_eq!(
            stats.dropped.audio, 0,
            "audio evicted while other classes were queued"
        );
        assert!(stats.overflowed > n / 2, "{stats:?}");
        assert!(pacer.dropped.len() <= 64, "undrained drops are bounded");
        assert!(
            capacities(&pacer).iter().all(|&c| c <= 128),
            "{:?}",
            capacities(&pacer)
        );
        assert!(pacer.queued_bytes() <= 64 * 1200);

        // Eviction never reaches above the newcomer's class.
        let mut pacer = Pacer::new(cfg, t0);
        for id in 0..64 {
            pacer.enqueue(t0, id, 100, if id < 32 { Audio } else { Retransmission });
        }
        let evicted = |pacer: &mut Pacer<u64>, id, class| {
            pacer.enqueue(t0, id, 100, class);
            assert_eq!(pacer.len(), 64);
            let d: Vec<_> = pacer
                .drain_dropped()
                .map(|d| (d.item, d.class, d.reason))
                .collect();
            assert_eq!(d.len(), 1);
            d[0]
        };
        let overflow = PacerDrop::Overflow;
        assert_eq!(evicted(&mut pacer, 64, Video), (64, Video, overflow));
        assert_eq!(
            evicted(&mut pacer, 65, Retransmission),
            (32, Retransmission, overflow)
        );
        assert_eq!(
            evicted(&mut pacer, 66, Audio),
            (33, Retransmission, overflow)
        );
        assert_eq!(pacer.stats().dropped.audio, 0);

        // Nothing but audio and no polls: audio evicts the oldest audio, still bounded.
        let mut pacer = Pacer::new(cfg, t0);
        for id in 0..1000 {
            pacer.enqueue(t0, id, 100, Audio);
        }
        assert_eq!(pacer.len(), 64);
        assert_eq!(pacer.drain_dropped().next().map(|d| d.item), Some(0));
    }

    #[test]
    fn zero_rate_holds_video_but_not_audio() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(config(1000), t0);
        pacer.set_rate(t0, Bitrate(0));
        pacer.enqueue(t0, 1, 1200, Video);
        pacer.enqueue(t0, 2, 100, Audio);
        let mut out = Vec::new();
        pacer.poll(t0, &mut out);
        assert_eq!(out.iter().map(|r| r.item).collect::<Vec<_>>(), [2]);
        // Only the expiry deadline is left.
        assert_eq!(pacer.poll_timeout(), Some(t0 + ms(500)));
        pacer.set_rate(t0 + ms(10), Bitrate::kbps(1000));
        out.clear();
        let at = pacer.poll_timeout().unwrap();
        assert!(at > t0 + ms(10) && at < t0 + ms(20), "{at:?}");
        pacer.poll(at, &mut out);
        assert_eq!(out.iter().map(|r| r.item).collect::<Vec<_>>(), [1]);
        assert_eq!(pacer.queue_delay(at), Duration::ZERO);
    }
}

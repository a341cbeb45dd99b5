//! Prometheus metrics, served by the signaling server at `GET /metrics` (`docs/operations.md`
//! lists every metric).
//!
//! # Design
//!
//! * **One recorder per server, none global.** [`Metrics::new`] builds its own
//!   `metrics_exporter_prometheus::PrometheusRecorder` (without the exporter's HTTP listener:
//!   the axum router serves the text from [`PrometheusHandle::render`]) and registers every
//!   metric once, up front, through [`metrics::with_local_recorder`]. The resulting
//!   [`Counter`]/[`Gauge`] handles are plain shared atomics: updating one is an atomic add, with
//!   no name lookup and no thread-local. Nothing is installed as the process-wide recorder, so
//!   several servers in one process (the tests start many) each report exactly their own rooms
//!   and sessions, and an application embedding this crate keeps its global recorder to itself.
//!   Registering up front also means every label value (each error code, each drop reason, both
//!   track kinds) is exported from the first scrape, at 0, so a rate over it is defined.
//! * **Signaling numbers are maintained where they change.** Rooms, participants, tracks and
//!   sessions are gauges held by RAII guards ([`Live`]) stored in the objects they count: a
//!   `Room`, a participant, a track, a session task. Whatever path removes the object (leave,
//!   kick, transport failure, shutdown) drops the guard, so a gauge cannot drift. Frames and
//!   errors are counters incremented where a frame is read and where an error is answered.
//! * **Media-plane numbers are pulled from the worker at scrape time**, never counted on the
//!   packet path: the scrape runs one closure on the worker thread ([`Worker::stats`]) that
//!   also updates the handles, so updates are ordered with the worker's own changes. The
//!   worker sums only *live* transports (a closed transport's counters disappear with it), so
//!   [`MediaTotals`] keeps monotonic totals here: the room reads a transport's final counters
//!   just before it closes it ([`Metrics::retire_transport`], in the same worker closure), and a
//!   transport that vanished between two scrapes (closed by the worker: consent expired, DTLS
//!   failed) contributes what the previous scrape saw of it. With several workers, totals are
//!   kept per worker (transport ids are only unique within one), keyed by the worker's
//!   thread, and the exported numbers are their sums. Traffic such a transport carried
//!   after the last scrape before it failed is the only traffic not counted. Drop counters are
//!   kept by the worker for its whole life and exported as they are.
//! * **Process basics are read from `/proc` at scrape time** (Linux only) and written in the
//!   text format by hand after the exporter's output: they are per process, not per server, and
//!   CPU seconds are fractional while the exporter's counters are integers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Instant;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use sfu_core::driver::WorkerHandle;
use sfu_core::webrtc_transport::TransportStats;
use sfu_core::worker::CongestionSummary;
use sfu_core::{DropReason, MediaKind, TransportId, Worker};

use crate::protocol::ErrorCode;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A gauge held at +1 while this guard lives.
#[must_use = "the gauge goes back down when the guard is dropped"]
pub struct Live(Gauge);

impl Live {
    fn new(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Live")
    }
}

/// Monotonic media totals over live and closed transports.
#[derive(Debug, Default)]
pub struct MediaTotals {
    /// Final counters of closed transports, summed.
    retired: TransportStats,
    /// The last counters seen of each live transport.
    live: HashMap<TransportId, TransportStats>,
}

fn add(sum: &mut TransportStats, s: &TransportStats) {
    sum.datagrams_in += s.datagrams_in;
    sum.bytes_in += s.bytes_in;
    sum.bytes_out += s.bytes_out;
    sum.rtp_in += s.rtp_in;
    sum.rtp_out += s.rtp_out;
    sum.rtcp_in += s.rtcp_in;
    sum.rtcp_out += s.rtcp_out;
}

impl MediaTotals {
    /// A transport about to close, with its final counters.
    pub fn retire(&mut self, id: TransportId, last: TransportStats) {
        self.live.remove(&id);
        add(&mut self.retired, &last);
    }

    /// Takes a snapshot of every live transport and returns the totals over all transports
    /// ever seen. A transport missing from the snapshot closed without [`Self::retire`]: the
    /// counters last seen of it are kept.
    pub fn observe(&mut self, live: &[(TransportId, TransportStats)]) -> TransportStats {
        let mut next = HashMap::with_capacity(live.len());
        for (id, s) in live {
            next.insert(*id, *s);
        }
        for (id, last) in self.live.drain() {
            if !next.contains_key(&id) {
                add(&mut self.retired, &last);
            }
        }
        self.live = next;
        let mut total = self.retired;
        for s in self.live.values() {
            add(&mut total, s);
        }
        total
    }
}

/// One server's metrics.
pub struct Metrics {
    handle: PrometheusHandle,
    rooms: Gauge,
    participants: Gauge,
    tracks_audio: Gauge,
    tracks_video: Gauge,
    sessions: Gauge,
    frames: Counter,
    /// By `ErrorCode as usize`.
    errors: Vec<Counter>,
    worker_up: Gauge,
    routers: Gauge,
    transports: Gauge,
    producers: Gauge,
    consumers: Gauge,
    datagrams_in: Counter,
    rtp_in: Counter,
    rtp_out: Counter,
    rtcp_in: Counter,
    rtcp_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    drops: Vec<(DropReason, Counter)>,
    /// Per worker, keyed by the worker's thread: transport ids are only unique within a
    /// worker, and `collect` and `retire_transport` both run on the worker's own thread.
    workers: Mutex<HashMap<ThreadId, WorkerMedia>>,
    cc_subscribers: Gauge,
    cc_estimate_sum: Gauge,
    cc_estimate_min: Gauge,
    cc_queue_packets: Gauge,
    cc_queue_delay_max: Gauge,
    cc_paused: Gauge,
}

/// What the last collection saw of one worker.
#[derive(Debug, Default)]
struct WorkerMedia {
    totals: MediaTotals,
    total: TransportStats,
    routers: usize,
    transports: usize,
    producers: usize,
    consumers: usize,
    /// In the order of `Metrics::drops`.
    drops: Vec<u64>,
    congestion: CongestionSummary,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics on its own recorder, every series registered (at 0).
    pub fn new() -> Self {
        let recorder: PrometheusRecorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            use metrics::{counter, describe_counter, describe_gauge, gauge};
            describe_gauge!("sfu_rooms", "Rooms open on this server.");
            describe_gauge!("sfu_participants", "Participants joined, over all rooms.");
            describe_gauge!("sfu_tracks", "Published tracks, by kind (audio, video).");
            describe_gauge!("sfu_sessions", "WebSocket sessions open, joined or not.");
            describe_counter!(
                "sfu_signaling_frames_received_total",
                "WebSocket data frames (text or binary) received, valid or not."
            );
            describe_counter!(
                "sfu_signaling_errors_total",
                "Error frames sent to clients, by protocol error code."
            );
            describe_gauge!(
                "sfu_worker_up",
                "1 if every media worker answered the last scrape, 0 if one has stopped."
            );
            describe_gauge!("sfu_routers", "Routers (rooms' media) live on the worker.");
            describe_gauge!("sfu_transports", "WebRTC transports live on the worker.");
            describe_gauge!(
                "sfu_producers",
                "Producers (incoming tracks) live on the worker."
            );
            describe_gauge!(
                "sfu_consumers",
                "Consumers (outgoing tracks) live on the worker."
            );
            describe_counter!(
                "sfu_datagrams_total",
                "UDP datagrams received by transports (STUN, DTLS, SRTP, SRTCP)."
            );
            describe_counter!(
                "sfu_packets_total",
                "RTP and RTCP packets accepted (in) and sent (out), by protocol."
            );
            describe_counter!(
                "sfu_bytes_total",
                "UDP payload bytes received and sent by transports, all protocols."
            );
            describe_counter!(
                "sfu_drops_total",
                "Datagrams or packets the worker dropped, by reason."
            );
            describe_gauge!(
                "sfu_congestion_controlled_subscribers",
                "Subscriber transports whose bandwidth the server estimates (transport-cc negotiated)."
            );
            describe_gauge!(
                "sfu_subscriber_estimate_bps_sum",
                "Sum of the subscribers' bandwidth estimates, bit/s."
            );
            describe_gauge!(
                "sfu_subscriber_estimate_bps_min",
                "The lowest subscriber bandwidth estimate, bit/s (0 without subscribers)."
            );
            describe_gauge!(
                "sfu_pacer_queue_packets",
                "Packets waiting in the subscribers' pacers."
            );
            describe_gauge!(
                "sfu_pacer_queue_delay_seconds_max",
                "The longest time a packet has waited in any subscriber's pacer."
            );
            describe_gauge!(
                "sfu_consumers_congestion_paused",
                "Video consumers paused because their subscriber's bandwidth does not fit them."
            );
            describe_gauge!("sfu_build_info", "Always 1; the version is a label.");
            gauge!("sfu_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let packets = |direction: &'static str, protocol: &'static str| counter!("sfu_packets_total", "direction" => direction, "protocol" => protocol);
            Self {
                handle,
                rooms: gauge!("sfu_rooms"),
                participants: gauge!("sfu_participants"),
                tracks_audio: gauge!("sfu_tracks", "kind" => "audio"),
                tracks_video: gauge!("sfu_tracks", "kind" => "video"),
                sessions: gauge!("sfu_sessions"),
                frames: counter!("sfu_signaling_frames_received_total"),
                errors: ErrorCode::ALL
                    .iter()
                    .map(|c| counter!("sfu_signaling_errors_total", "code" => c.as_str()))
                    .collect(),
                worker_up: gauge!("sfu_worker_up"),
                routers: gauge!("sfu_routers"),
                transports: gauge!("sfu_transports"),
                producers: gauge!("sfu_producers"),
                consumers: gauge!("sfu_consumers"),
                datagrams_in: counter!("sfu_datagrams_total", "direction" => "in"),
                rtp_in: packets("in", "rtp"),
                rtp_out: packets("out", "rtp"),
                rtcp_in: packets("in", "rtcp"),
                rtcp_out: packets("out", "rtcp"),
                bytes_in: counter!("sfu_bytes_total", "direction" => "in"),
                bytes_out: counter!("sfu_bytes_total", "direction" => "out"),
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (*r, counter!("sfu_drops_total", "reason" => r.name())))
                    .collect(),
                workers: Mutex::default(),
                cc_subscribers: gauge!("sfu_congestion_controlled_subscribers"),
                cc_estimate_sum: gauge!("sfu_subscriber_estimate_bps_sum"),
                cc_estimate_min: gauge!("sfu_subscriber_estimate_bps_min"),
                cc_queue_packets: gauge!("sfu_pacer_queue_packets"),
                cc_queue_delay_max: gauge!("sfu_pacer_queue_delay_seconds_max"),
                cc_paused: gauge!("sfu_consumers_congestion_paused"),
            }
        })
    }

    /// Counts a room while the guard lives.
    pub fn room(&self) -> Live {
        Live::new(&self.rooms)
    }

    /// Counts a participant while the guard lives.
    pub fn participant(&self) -> Live {
        Live::new(&self.participants)
    }

    /// Counts a published track of `kind` while the guard lives.
    pub fn track(&self, kind: MediaKind) -> Live {
        Live::new(match kind {
            MediaKind::Audio => &self.tracks_audio,
            MediaKind::Video => &self.tracks_video,
        })
    }

    /// Counts an open WebSocket session while the guard lives.
    pub fn session(&self) -> Live {
        Live::new(&self.sessions)
    }

    /// Counts a WebSocket data frame received.
    pub fn count_frame(&self) {
        self.frames.increment(1);
    }

    /// Counts an error frame sent.
    pub fn count_error(&self, code: ErrorCode) {
        if let Some(c) = self.errors.get(code as usize) {
            c.increment(1);
        }
    }

    /// Records a transport's final counters; call on the worker thread, in the same closure
    /// that closes the transport.
    pub fn retire_transport(&self, id: TransportId, last: TransportStats) {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(std::thread::current().id())
            .or_default()
            .totals
            .retire(id, last);
    }

    /// Updates the media-plane metrics from `worker` (on the worker thread: each worker is
    /// known by its thread, and the exported numbers are sums over every worker seen).
    pub fn collect(&self, worker: &Worker) {
        let stats = worker.stats();
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = workers.entry(std::thread::current().id()).or_default();
        mine.total = mine.totals.observe(&stats.transports);
        mine.routers = stats.routers;
        mine.transports = stats.transports.len();
        mine.producers = stats.producers;
        mine.consumers = stats.consumers;
        mine.drops = self
            .drops
            .iter()
            .map(|(reason, _)| stats.drops.get(*reason))
            .collect();
        let mut total = TransportStats::default();
        let (mut routers, mut transports, mut producers, mut consumers) = (0, 0, 0, 0);
        let mut drops = vec![0u64; self.drops.len()];
        for w in workers.values() {
            add(&mut total, &w.total);
            routers += w.routers;
            transports += w.transports;
            producers += w.producers;
            consumers += w.consumers;
            for (sum, d) in drops.iter_mut().zip(&w.drops) {
                *sum += d;
            }
        }
        drop(workers);
        self.routers.set(routers as f64);
        self.transports.set(transports as f64);
        self.producers.set(producers as f64);
        self.consumers.set(consumers as f64);
        // `absolute` never lowers a counter (it is a fetch-max).
        self.datagrams_in.absolute(total.datagrams_in);
        self.rtp_in.absolute(total.rtp_in);
        self.rtp_out.absolute(total.rtp_out);
        self.rtcp_in.absolute(total.rtcp_in);
        self.rtcp_out.absolute(total.rtcp_out);
        self.bytes_in.absolute(total.bytes_in);
        self.bytes_out.absolute(total.bytes_out);
        for ((_, counter), sum) in self.drops.iter().zip(drops) {
            counter.absolute(sum);
        }
    }

    /// Updates the congestion-control gauges from `worker` (on the worker thread), summed
    /// over every worker seen.
    pub fn collect_congestion(&self, worker: &Worker, now: Instant) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers
            .entry(std::thread::current().id())
            .or_default()
            .congestion = worker.congestion_summary(now);
        let mut all = CongestionSummary::default();
        for w in workers.values() {
            let c = &w.congestion;
            all.subscribers += c.subscribers;
            all.estimate_sum_bps += c.estimate_sum_bps;
            all.estimate_min_bps = match (all.estimate_min_bps, c.estimate_min_bps) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            all.pacer_queue_packets += c.pacer_queue_packets;
            all.pacer_queue_delay_max = all.pacer_queue_delay_max.max(c.pacer_queue_delay_max);
            all.congestion_paused += c.congestion_paused;
        }
        drop(workers);
        self.cc_subscribers.set(all.subscribers as f64);
        self.cc_estimate_sum.set(all.estimate_sum_bps as f64);
        self.cc_estimate_min
            .set(all.estimate_min_bps.unwrap_or(0) as f64);
        self.cc_queue_packets.set(all.pacer_queue_packets as f64);
        self.cc_queue_delay_max
            .set(all.pacer_queue_delay_max.as_secs_f64());
        self.cc_paused.set(all.congestion_paused as f64);
    }

    /// The exposition text: refreshes the media-plane numbers from every worker, then
    /// renders. `sfu_worker_up` is 1 only if every worker answered.
    pub async fn render(self: &Arc<Self>, workers: &[Arc<WorkerHandle>]) -> String {
        let mut up = true;
        for worker in workers {
            let me = self.clone();
            up &= worker
                .call(move |w, now| {
                    me.collect(w);
                    me.collect_congestion(w, now);
                })
                .await
                .is_ok();
        }
        self.worker_up.set(if up { 1.0 } else { 0.0 });
        let mut text = self.handle.render();
        residence::render(&mut text, workers);
        udp::render(&mut text, workers);
        process::render(&mut text);
        text
    }
}

/// `sfu_residence_seconds`: how long packets stay inside the SFU, from the receive call that
/// brought them to the end of the send that carried them out, summed over the workers
/// ([`sfu_core::residence_time`]). Rendered by hand: the `metrics` recorder's histograms would
/// need a record per packet, where the workers already count in buckets.
mod residence {
    use std::fmt::Write;
    use std::sync::Arc;
    use std::time::Duration;

    use sfu_core::driver::WorkerHandle;

    /// Bucket bounds, µs: powers of two, so the workers' finer buckets add up exactly.
    const BOUNDS_MICROS: [u64; 12] = [
        64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 65_536, 262_144, 1_048_576,
    ];

    pub fn render(out: &mut String, workers: &[Arc<WorkerHandle>]) {
        let all = workers
            .iter()
            .map(|w| w.io_stats().residence)
            .reduce(|a, b| a.merged(&b))
            .unwrap_or_default();
        let name = "sfu_residence_seconds";
        let _ = write!(
            out,
            "# HELP {name} Time packets spent inside the SFU: from the receive call that \
             brought them to the end of the send that carried them out.\n# TYPE {name} histogram\n"
        );
        for micros in BOUNDS_MICROS {
            let count = all.count_at_most(Duration::from_micros(micros));
            let le = micros as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
        let _ = write!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n\n",
            count = all.count(),
            sum = all.sum().as_secs_f64(),
        );
    }
}

/// `sfu_udp_*`: the media sockets' batched I/O, summed over the workers
/// ([`sfu_core::udp_socket::IoStats`]): how many datagrams each `recvmmsg` and each send call
/// carried, and whether GSO works on this host. Rendered by hand from the workers' counters.
mod udp {
    use std::fmt::Write;
    use std::sync::Arc;

    use sfu_core::driver::WorkerHandle;
    use sfu_core::udp_socket::IoStatsSnapshot;

    type Field = fn(&IoStatsSnapshot) -> u64;

    const COUNTERS: [(&str, &str, Field); 7] = [
        (
            "sfu_udp_receive_calls_total",
            "Batched receive calls (recvmmsg) that returned datagrams.",
            |s| s.receive_calls,
        ),
        (
            "sfu_udp_datagrams_received_total",
            "Datagrams received on the media sockets (GRO buffers counted by their segments).",
            |s| s.datagrams_in,
        ),
        (
            "sfu_udp_send_calls_total",
            "Send calls that succeeded: one per GSO run or single datagram.",
            |s| s.send_calls,
        ),
        (
            "sfu_udp_datagrams_sent_total",
            "Datagrams sent on the media sockets.",
            |s| s.datagrams_out,
        ),
        (
            "sfu_udp_gso_sends_total",
            "Send calls that carried a GSO run of two or more datagrams.",
            |s| s.gso_sends,
        ),
        (
            "sfu_udp_gso_fallbacks_total",
            "GSO sends the kernel refused, sent again one datagram at a time.",
            |s| s.gso_fallbacks,
        ),
        (
            "sfu_udp_send_errors_total",
            "Datagrams the kernel refused to send (a full buffer is waited out, not counted).",
            |s| s.send_errors,
        ),
    ];

    pub fn render(out: &mut String, workers: &[Arc<WorkerHandle>]) {
        let stats: Vec<IoStatsSnapshot> = workers.iter().map(|w| w.io_stats()).collect();
        for (name, help, field) in COUNTERS {
            let total: u64 = stats.iter().map(field).sum();
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {total}\n\n"
            );
        }
    }
}

/// `process_*` metrics of the Prometheus client conventions, from `/proc/self` (Linux only).
mod process {
    use std::fmt::Write;

    /// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on every Linux ABI).
    const USER_HZ: f64 = 100.0;

    fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        );
    }

    /// Appends what can be read; writes nothing where `/proc` is missing.
    pub fn render(out: &mut String) {
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // The command name is in parentheses and may contain anything: fields start after
            // the last ')', at field 3 (state).
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let field = |n: usize| {
                fields
                    .get(n.wrapping_sub(3))
                    .and_then(|f| f.parse::<f64>().ok())
            };
            if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                metric(
                    out,
                    "process_cpu_seconds_total",
                    "counter",
                    "User and system CPU time spent, in seconds.",
                    (utime + stime) / USER_HZ,
                );
            }
            if let Some(threads) = field(20) {
                metric(
                    out,
                    "process_threads",
                    "gauge",
                    "OS threads of the process.",
                    threads,
                );
            }
            if let Some(vsize) = field(23) {
                metric(
                    out,
                    "process_virtual_memory_bytes",
                    "gauge",
                    "Virtual memory size, in bytes.",
                    vsize,
                );
            }
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            if let (Some(start), Some(boot)) = (field(22), boot) {
                metric(
                    out,
                    "process_start_time_seconds",
                    "gauge",
                    "Start time of the process since the Unix epoch, in seconds.",
                    boot + start / USER_HZ,
                );
            }
        }
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("VmRSS:")
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                })
            });
        if let Some(kib) = rss {
            metric(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, in bytes.",
                kib * 1024.0,
            );
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            metric(
                out,
                "process_open_fds",
                "gauge",
                "Open file descriptors.",
                dir.count() as f64,
            );
        }
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("Max open files")
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<f64>().ok())
                })
            });
        if let Some(max) = max_fds {
            metric(
                out,
                "process_max_fds",
                "gauge",
                "Limit of open file descriptors (soft).",
                max,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(n: u64) -> TransportStats {
        TransportStats {
            datagrams_in: n,
            rtp_in: n,
            rtp_out: n,
            bytes_in: 10 * n,
            bytes_out: 10 * n,
            rtcp_in: n,
            rtcp_out: n,
        }
    }

    #[test]
    fn media_totals_stay_monotonic_across_closes() {
        let (a, b) = (TransportId(1), TransportId(2));
        let mut t = MediaTotals::default();
        assert_eq!(t.observe(&[(a, stats(5)), (b, stats(1))]).rtp_in, 6);
        // `a` grows, then is closed by signaling with its final counters.
        t.retire(a, stats(8));
        assert_eq!(t.observe(&[(b, stats(2))]).rtp_in, 10, "8 retired + 2 live");
        // `b` vanishes without a retire (closed by the worker): its last seen counters stay.
        assert_eq!(t.observe(&[]).rtp_in, 10);
        assert_eq!(t.observe(&[]).bytes_out, 100);
        // A transport retired before any scrape saw it still counts, once.
        t.retire(TransportId(3), stats(4));
        assert_eq!(t.observe(&[]).datagrams_in, 14);
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_label_is_registered_and_guards_count() {
        let m = Metrics::new();
        let text = m.handle.render();
        for code in ErrorCode::ALL {
            let series = format!("sfu_signaling_errors_total{{code=\"{}\"}}", code.as_str());
            assert_eq!(value(&text, &series), Some(0.0), "{series}\n{text}");
        }
        for reason in DropReason::ALL {
            let series = format!("sfu_drops_total{{reason=\"{}\"}}", reason.name());
            assert_eq!(value(&text, &series), Some(0.0), "{series}\n{text}");
        }
        let room = m.room();
        let audio = m.track(MediaKind::Audio);
        let video = [m.track(MediaKind::Video), m.track(MediaKind::Video)];
        m.count_error(ErrorCode::Internal);
        m.count_error(ErrorCode::Internal);
        let text = m.handle.render();
        assert_eq!(value(&text, "sfu_rooms"), Some(1.0));
        assert_eq!(value(&text, "sfu_tracks{kind=\"audio\"}"), Some(1.0));
        assert_eq!(value(&text, "sfu_tracks{kind=\"video\"}"), Some(2.0));
        assert_eq!(
            value(&text, "sfu_signaling_errors_total{code=\"internal\"}"),
            Some(2.0)
        );
        drop((room, audio, video));
        let text = m.handle.render();
        assert_eq!(value(&text, "sfu_rooms"), Some(0.0));
        assert_eq!(value(&text, "sfu_tracks{kind=\"video\"}"), Some(0.0));
        // Another server's metrics are its own.
        let other = Metrics::new();
        let _p = other.participant();
        assert_eq!(value(&m.handle.render(), "sfu_participants"), Some(0.0));
        assert_eq!(value(&other.handle.render(), "sfu_participants"), Some(1.0));
    }

    #[test]
    fn process_metrics_render_where_proc_exists() {
        let mut out = String::new();
        process::render(&mut out);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(value(&out, "process_cpu_seconds_total").is_some(), "{out}");
            assert!(value(&out, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
            assert!(value(&out, "process_open_fds").is_some_and(|v| v > 0.0));
            assert!(value(&out, "process_threads").is_some_and(|v| v >= 1.0));
        }
    }
}

//! The figures of one run and how they are shown: a table for people, JSON for scripts, and
//! a CSV row for sweeps.
//!
//! Owns presentation and the host's UDP counters (`/proc/net/snmp`, which tell kernel socket
//! drops apart from SFU drops). It must not measure anything itself beyond those counters.

use serde::Serialize;

/// The host's UDP counters (all sockets of this network namespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UdpCounters {
    /// Datagrams delivered to sockets.
    pub in_datagrams: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Datagrams that could not be sent because a send buffer was full.
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    /// Reads `/proc/net/snmp` (zeros where unreadable).
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    fn parse(snmp: &str) -> Option<Self> {
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let names: Vec<&str> = udp.next()?.split_whitespace().collect();
        let values: Vec<&str> = udp.next()?.split_whitespace().collect();
        let get = |name: &str| -> u64 {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(|i| values.get(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Some(Self {
            in_datagrams: get("InDatagrams"),
            rcvbuf_errors: get("RcvbufErrors"),
            sndbuf_errors: get("SndbufErrors"),
        })
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams.saturating_sub(earlier.in_datagrams),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

/// One SFU worker's share of a run (or the whole server process, when its workers cannot be
/// told apart from outside).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerFigures {
    /// Worker index (rooms are placed round-robin: room `r` on worker `r % workers`).
    pub index: usize,
    /// What was measured: a worker thread (`worker 0, tid 1234`) or a process.
    pub label: String,
    /// Packets of the window its subscribers received.
    pub packets_out: u64,
    /// Its CPU time over the window and the drain, seconds.
    pub cpu_s: f64,
    /// `packets_out / cpu_s`.
    pub forwarded_per_cpu_s: f64,
}

/// The result of one run, over its measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// How the SFU ran: `embedded` (worker threads in this process) or `signaling` (a real
    /// `sfu-server` process, joined over its WebSocket API).
    pub mode: String,
    /// Rooms.
    pub rooms: usize,
    /// Publishers in all rooms.
    pub publishers: usize,
    /// Subscribers in all rooms.
    pub subscribers: usize,
    /// Consumers on the worker.
    pub consumers: usize,
    /// RTP payload bytes per packet.
    pub packet_size: usize,
    /// The SRTP profile used.
    pub srtp_profile: String,
    /// Packets per second each publisher was asked to send.
    pub rate_per_publisher: f64,
    /// Packets per second the SFU was asked to forward.
    pub offered_out_pps: f64,
    /// Length of the measurement window, seconds.
    pub window_s: f64,
    /// Time to set up the worker side and connect every client, seconds.
    pub setup_s: f64,
    /// Packets sent to the SFU in the window.
    pub packets_in: u64,
    /// Packets per second sent to the SFU.
    pub in_pps: f64,
    /// Mbit/s sent to the SFU (SRTP datagrams, without UDP/IP headers).
    pub in_mbps: f64,
    /// Packets subscribers should have received for the window.
    pub expected_out: u64,
    /// Unique packets subscribers received for the window.
    pub packets_out: u64,
    /// Packets per second forwarded by the SFU and received.
    pub out_pps: f64,
    /// Mbit/s received from the SFU.
    pub out_mbps: f64,
    /// `expected_out - packets_out`.
    pub lost: u64,
    /// Lost, in percent of expected.
    pub loss_pct: f64,
    /// Packets the load generator's own sockets refused (not counted as expected).
    pub unsent: u64,
    /// Packets per second the publishers were asked to send, all together.
    pub offered_in_pps: f64,
    /// Packets the publishers' schedules gave up in the window because the load generator
    /// fell behind (never built, never sent: the sequence numbers on the wire stay
    /// consecutive).
    pub given_up: u64,
    /// How far the rate sent fell short of the rate offered, percent (0 when met).
    pub in_shortfall_pct: f64,
    /// What the reader must know before trusting the figures (the offered rate was not met).
    pub warnings: Vec<String>,
    /// Packets received twice (by counter, or refused as replays by SRTP).
    pub duplicates: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// In-order packets whose rewritten RTP sequence number did not follow the counter.
    pub sequence_mismatches: u64,
    /// SRTP/SRTCP packets that did not authenticate or parse.
    pub srtp_errors: u64,
    /// RTP with an SSRC the subscriber was not told about.
    pub unknown_ssrc: u64,
    /// Payloads that are not the load generator's.
    pub foreign_payloads: u64,
    /// Payloads from another publisher than the stream's.
    pub misrouted: u64,
    /// Payloads whose checksum was verified.
    pub payloads_verified: u64,
    /// Verified payloads whose checksum failed.
    pub payloads_corrupt: u64,
    /// SRTCP packets subscribers received (sender reports).
    pub rtcp_received: u64,
    /// Datagrams publishers received (receiver reports, NACK, PLI, STUN).
    pub publisher_feedback: u64,
    /// Latency values recorded.
    pub latency_samples: u64,
    /// Median send-to-receive latency, µs (includes both ends' socket and scheduling time).
    pub latency_p50_us: u64,
    /// 99th percentile latency, µs.
    pub latency_p99_us: u64,
    /// 99.9th percentile latency, µs.
    pub latency_p999_us: u64,
    /// Largest latency, µs.
    pub latency_max_us: u64,
    /// Time inside the SFU (from the receive call that brought a packet to the end of the
    /// send that carried it out), median, µs: the delay the SFU itself adds. Only for
    /// in-process workers.
    pub sfu_residence_p50_us: Option<u64>,
    /// 99th percentile of the time inside the SFU, µs.
    pub sfu_residence_p99_us: Option<u64>,
    /// 99.9th percentile of the time inside the SFU, µs.
    pub sfu_residence_p999_us: Option<u64>,
    /// Mean latency, µs.
    pub latency_mean_us: f64,
    /// SFU user CPU time in the window (and drain), seconds.
    pub sfu_cpu_user_s: f64,
    /// SFU kernel CPU time, seconds.
    pub sfu_cpu_sys_s: f64,
    /// SFU CPU time, seconds.
    pub sfu_cpu_s: f64,
    /// SFU CPU time per wall second while sending (1.0 = one core busy).
    pub sfu_cpu_util: f64,
    /// Forwarded packets received per second of SFU CPU time.
    pub forwarded_per_cpu_s: f64,
    /// The load generator thread's CPU time in the window, seconds.
    pub loadgen_cpu_s: f64,
    /// Resident set size at the end, bytes (SFU and load generator: one process).
    pub rss_bytes: u64,
    /// RSS before anything started, bytes.
    pub rss_start_bytes: u64,
    /// RSS with the worker started and no client, bytes.
    pub rss_worker_bytes: u64,
    /// (RSS at the end - RSS with the bare worker) / consumers: an upper bound of the SFU's
    /// memory per consumer (it includes the load generator's own per-client state).
    pub rss_per_consumer_bytes: u64,
    /// The worker's drop counters by reason.
    pub sfu_drops: Vec<(String, u64)>,
    /// Consumers the SFU's congestion control had paused at the end (signaling mode: their
    /// subscriber's estimated bandwidth did not fit the stream).
    pub consumers_congestion_paused: usize,
    /// SFU workers asked for.
    pub sfu_workers: usize,
    /// Host UDP counters over the window.
    pub udp: UdpCounters,
    /// How threads were placed.
    pub pinning: String,
    /// Per worker: packets forwarded, CPU time, packets per CPU-second.
    pub workers: Vec<WorkerFigures>,
    /// Whether publishers sent GSO bursts.
    pub gso: bool,
    /// GRO segments a receive slot holds.
    pub gro_segments: usize,
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A shortfall of the rate sent below the rate offered that is worth a warning, percent.
/// The schedule is exact over the window (it integrates the rate), so only a load generator
/// that could not keep up falls short by more than the last tick's packets.
pub const SHORTFALL_WARNING_PCT: f64 = 2.0;

impl Report {
    /// Sets [`Self::in_shortfall_pct`] from the rates offered and sent, and adds a warning
    /// when the load generator did not send what was asked (the run then measured a lower
    /// load than its configuration says).
    pub fn check_offered_rate(&mut self) {
        self.in_shortfall_pct = if self.offered_in_pps > 0.0 {
            ((self.offered_in_pps - self.in_pps) / self.offered_in_pps * 100.0).max(0.0)
        } else {
            0.0
        };
        if self.consumers_congestion_paused > 0 {
            self.warnings.push(format!(
                "the SFU's congestion control paused {} of {} consumers (each subscriber's \
                 estimated bandwidth did not fit its streams): their packets are counted as \
                 lost; lower the per-publisher rate or lengthen the warm-up",
                self.consumers_congestion_paused, self.consumers
            ));
        }
        if self.in_shortfall_pct > SHORTFALL_WARNING_PCT || self.given_up > 0 {
            let busy = if self.window_s > 0.0 {
                self.loadgen_cpu_s / self.window_s
            } else {
                0.0
            };
            let why = if busy > 0.9 {
                format!(
                    "its thread was busy {:.0} % of the window (a release build, fewer \
                     subscribers, or a machine with a core to spare for it)",
                    busy * 100.0
                )
            } else {
                "its sockets or the scheduler held it back".to_owned()
            };
            self.warnings.push(format!(
                "offered {} pkt/s to the SFU but sent {} pkt/s ({:.1} % short, {} packets \
                 given up): the load generator could not keep up, so every figure is for the \
                 rate sent; {why}",
                thousands(self.offered_in_pps),
                thousands(self.in_pps),
                self.in_shortfall_pct,
                thousands(self.given_up as f64),
            ));
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            (
                "setup",
                format!(
                    "{}, {} worker(s): {} room(s), {} publishers, {} subscribers, {} consumers, {} B payload, {}",
                    if self.mode.is_empty() {
                        "embedded"
                    } else {
                        &self.mode
                    },
                    self.sfu_workers.max(1),
                    self.rooms,
                    self.publishers,
                    self.subscribers,
                    self.consumers,
                    self.packet_size,
                    self.srtp_profile
                ),
            ),
            (
                "offered",
                format!(
                    "{} pkt/s per publisher, {} pkt/s to forward",
                    thousands(self.rate_per_publisher),
                    thousands(self.offered_out_pps)
                ),
            ),
            (
                "window",
                format!(
                    "{:.2} s (connect took {:.2} s)",
                    self.window_s, self.setup_s
                ),
            ),
            (
                "in (to SFU)",
                format!(
                    "{} pkt/s of {} offered, {:.1} Mbit/s ({} packets)",
                    thousands(self.in_pps),
                    thousands(self.offered_in_pps),
                    self.in_mbps,
                    thousands(self.packets_in as f64)
                ),
            ),
            (
                "out (from SFU)",
                format!(
                    "{} pkt/s, {:.1} Mbit/s ({} packets)",
                    thousands(self.out_pps),
                    self.out_mbps,
                    thousands(self.packets_out as f64)
                ),
            ),
            (
                "loss",
                format!(
                    "{:.4} % ({} of {}), {} duplicates, {} reordered",
                    self.loss_pct,
                    self.lost,
                    thousands(self.expected_out as f64),
                    self.duplicates,
                    self.reordered
                ),
            ),
            (
                "integrity",
                format!(
                    "{} payloads verified, {} corrupt, {} misrouted, {} foreign, {} SRTP errors, {} seq. mismatches",
                    thousands(self.payloads_verified as f64),
                    self.payloads_corrupt,
                    self.misrouted,
                    self.foreign_payloads,
                    self.srtp_errors,
                    self.sequence_mismatches
                ),
            ),
            (
                "latency",
                format!(
                    "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs (mean {:.0} µs)",
                    self.latency_p50_us,
                    self.latency_p99_us,
                    self.latency_p999_us,
                    self.latency_max_us,
                    self.latency_mean_us
                ),
            ),
            (
                "inside the SFU",
                match (
                    self.sfu_residence_p50_us,
                    self.sfu_residence_p99_us,
                    self.sfu_residence_p999_us,
                ) {
                    (Some(p50), Some(p99), Some(p999)) => format!(
                        "p50 ≤ {p50} µs, p99 ≤ {p99} µs, p99.9 ≤ {p999} µs (receive call to \
                         sent, per packet)"
                    ),
                    _ => "not measured (the SFU is another process)".into(),
                },
            ),
            (
                "SFU CPU",
                format!(
                    "{:.2} s ({:.2} user + {:.2} sys), {:.0} % of a core while sending",
                    self.sfu_cpu_s,
                    self.sfu_cpu_user_s,
                    self.sfu_cpu_sys_s,
                    self.sfu_cpu_util * 100.0
                ),
            ),
            (
                "forwarded/CPU-s",
                format!(
                    "{} pkt per SFU CPU-second",
                    thousands(self.forwarded_per_cpu_s)
                ),
            ),
        ];
        if self.workers.len() > 1 {
            for w in &self.workers {
                rows.push((
                    "  per worker",
                    format!(
                        "{}: {} packets out, {:.2} s CPU, {} pkt per CPU-second",
                        w.label,
                        thousands(w.packets_out as f64),
                        w.cpu_s,
                        thousands(w.forwarded_per_cpu_s)
                    ),
                ));
            }
        }
        rows.extend([
            (
                "RSS",
                if self.mode == "signaling" {
                    format!(
                        "{:.1} MiB of the sfu-server process (at start {:.1} MiB), {:.1} KiB per consumer",
                        self.rss_bytes as f64 / 1048576.0,
                        self.rss_worker_bytes as f64 / 1048576.0,
                        self.rss_per_consumer_bytes as f64 / 1024.0
                    )
                } else {
                    format!(
                        "{:.1} MiB (bare workers {:.1} MiB), ≤ {:.1} KiB per consumer",
                        self.rss_bytes as f64 / 1048576.0,
                        self.rss_worker_bytes as f64 / 1048576.0,
                        self.rss_per_consumer_bytes as f64 / 1024.0
                    )
                },
            ),
            (
                "load generator",
                format!(
                    "{:.2} s CPU; {}; GSO {}, GRO {}",
                    self.loadgen_cpu_s,
                    self.pinning,
                    if self.gso { "on" } else { "off" },
                    self.gro_segments
                ),
            ),
            (
                "kernel UDP",
                format!(
                    "{} receive-buffer drops, {} send-buffer drops",
                    self.udp.rcvbuf_errors, self.udp.sndbuf_errors
                ),
            ),
        ]);
        if !self.sfu_drops.is_empty() {
            let drops = self
                .sfu_drops
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(", ");
            rows.push(("SFU drops", drops));
        }
        for w in &self.warnings {
            rows.push(("WARNING", w.clone()));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }

    /// The CSV header matching [`Self::csv_row`].
    pub fn csv_header() -> &'static str {
        "rooms,publishers,subscribers,consumers,rate_per_publisher,offered_out_pps,in_pps,out_pps,out_mbps,loss_pct,latency_p50_us,latency_p99_us,latency_max_us,sfu_cpu_s,sfu_cpu_util,forwarded_per_cpu_s,rss_bytes,rss_per_consumer_bytes,offered_in_pps,given_up,in_shortfall_pct,mode,workers,sfu_residence_p50_us,sfu_residence_p99_us"
    }

    /// One CSV row.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{:.1},{:.0},{:.0},{:.0},{:.1},{:.4},{},{},{},{:.3},{:.3},{:.0},{},{},{:.0},{},{:.2},{},{},{},{}",
            self.rooms,
            self.publishers,
            self.subscribers,
            self.consumers,
            self.rate_per_publisher,
            self.offered_out_pps,
            self.in_pps,
            self.out_pps,
            self.out_mbps,
            self.loss_pct,
            self.latency_p50_us,
            self.latency_p99_us,
            self.latency_max_us,
            self.sfu_cpu_s,
            self.sfu_cpu_util,
            self.forwarded_per_cpu_s,
            self.rss_bytes,
            self.rss_per_consumer_bytes,
            self.offered_in_pps,
            self.given_up,
            self.in_shortfall_pct,
            self.mode,
            self.sfu_workers,
            self.sfu_residence_p50_us
                .map_or_else(String::new, |v| v.to_string()),
            self.sfu_residence_p99_us
                .map_or_else(String::new, |v| v.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_udp_lines_are_read_by_name() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 100 2 3 4 5 6\nUdpLite: InDatagrams\nUdpLite: 0\n";
        let c = UdpCounters::parse(snmp).unwrap();
        assert_eq!(
            c,
            UdpCounters {
                in_datagrams: 100,
                rcvbuf_errors: 5,
                sndbuf_errors: 6
            }
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.0), "0");
    }

    #[test]
    fn a_rate_not_met_is_said_plainly() {
        let mut met = Report {
            offered_in_pps: 1000.0,
            in_pps: 995.0,
            ..Report::default()
        };
        met.check_offered_rate();
        assert!(met.warnings.is_empty(), "{:?}", met.warnings);
        assert!((met.in_shortfall_pct - 0.5).abs() < 1e-9);

        let mut short = Report {
            offered_in_pps: 300_000.0,
            in_pps: 120_000.0,
            given_up: 900,
            ..Report::default()
        };
        short.check_offered_rate();
        assert!((short.in_shortfall_pct - 60.0).abs() < 1e-9);
        assert_eq!(short.warnings.len(), 1);
        assert!(
            short.warnings[0].contains("300,000"),
            "{:?}",
            short.warnings
        );
        assert!(short.table().contains("WARNING"));
        assert!(
            short.csv_row().contains(",300000,900,60.00,"),
            "{}",
            short.csv_row()
        );
    }

    #[test]
    fn csv_row_has_as_many_fields_as_the_header() {
        let r = Report::default();
        assert_eq!(
            r.csv_row().split(',').count(),
            Report::csv_header().split(',').count()
        );
    }
}

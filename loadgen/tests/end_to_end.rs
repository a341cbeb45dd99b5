//! The load generator end to end: a real worker thread, real sockets, real ICE, DTLS and SRTP.
//! Short runs at low rates, where nothing may be lost and the report must add up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sfu_core::SrtpProfile;
use sfu_loadgen::embedded::{LoadConfig, RunError, run};

fn low_rate(rooms: usize, publishers: usize, subscribers: usize) -> LoadConfig {
    LoadConfig {
        rooms,
        publishers,
        subscribers,
        fan_out: None,
        packet_rate: 200.0,
        packet_size: 1200,
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs(2),
        srtp_profile: SrtpProfile::AeadAes128Gcm,
        nack: true,
        // Tests share the machine with other builds: no pinning.
        pin: false,
        verify_every: 1,
        progress: false,
        workers: 1,
    }
}

#[test]
fn two_rooms_forward_every_packet_intact_and_the_report_adds_up() {
    let config = low_rate(2, 2, 3);
    let r = run(&config).expect("run");

    assert_eq!(r.rooms, 2);
    assert_eq!(r.publishers, 4);
    assert_eq!(r.subscribers, 6);
    assert_eq!(r.consumers, 12, "each subscriber consumes both publishers");
    // The report says which AES-GCM code the in-process SFU used.
    assert!(
        ["AeadAes128Gcm (VAES kernel)", "AeadAes128Gcm (aws-lc)"]
            .contains(&r.srtp_profile.as_str()),
        "{}",
        r.srtp_profile
    );
    assert!(
        r.srtp_profile
            .contains(sfu_gcm::implementation_for_new_keys().name())
    );

    // Zero loss at a low rate, nothing duplicated, reordered, corrupt or misrouted.
    assert!(r.expected_out > 0);
    assert_eq!(r.lost, 0, "{}", r.table());
    assert_eq!(r.packets_out, r.expected_out);
    assert_eq!(r.loss_pct, 0.0);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.payloads_corrupt, 0);
    assert_eq!(r.misrouted, 0);
    assert_eq!(r.foreign_payloads, 0);
    assert_eq!(r.srtp_errors, 0);
    assert_eq!(r.unknown_ssrc, 0);
    assert_eq!(r.sequence_mismatches, 0);
    assert_eq!(r.unsent, 0);
    // Every packet was verified (verify_every = 1).
    assert!(r.payloads_verified >= r.packets_out, "{}", r.table());

    // Consistency: what each subscriber gets is what its publishers sent in the window.
    let per_consumer = r.packets_in as f64 / r.publishers as f64;
    assert!(
        (r.packets_out as f64 - per_consumer * r.consumers as f64).abs()
            <= r.consumers as f64 * 2.0,
        "out {} vs in {} × fan-out: {}",
        r.packets_out,
        r.packets_in,
        r.table()
    );
    // The rate asked for is the rate sent (within pacing granularity).
    let asked = config.packet_rate * r.publishers as f64;
    assert!(
        (r.in_pps - asked).abs() < asked * 0.1,
        "in {} pkt/s, asked {asked}",
        r.in_pps
    );
    assert!((r.out_pps - r.in_pps * 3.0).abs() < r.in_pps * 0.1);
    let datagram_bits = (12 + 1200 + 16) as f64 * 8.0;
    assert!((r.out_mbps - r.out_pps * datagram_bits / 1e6).abs() < 0.01);

    // Latency: one sample per packet in the window, ordered percentiles, sane on loopback.
    assert_eq!(r.latency_samples, r.packets_out);
    assert!(r.latency_p50_us <= r.latency_p99_us);
    assert!(r.latency_p99_us <= r.latency_max_us);
    // The in-process workers say how long packets stayed inside them.
    let (Some(inside_p50), Some(inside_p99)) = (r.sfu_residence_p50_us, r.sfu_residence_p99_us)
    else {
        panic!("no residence time from in-process workers: {}", r.table());
    };
    assert!(inside_p50 <= inside_p99);
    assert!(r.table().contains("inside the SFU"));
    assert!(
        r.latency_p50_us < 1_000_000,
        "p50 {} µs on loopback",
        r.latency_p50_us
    );

    // The SFU did the work and its CPU time was seen; memory is read.
    assert!(r.sfu_cpu_s > 0.0, "{}", r.table());
    assert!(r.forwarded_per_cpu_s > 0.0);
    assert!(
        (r.forwarded_per_cpu_s - r.packets_out as f64 / r.sfu_cpu_s).abs() < 1.0,
        "forwarded per CPU-second is packets out over CPU time"
    );
    assert!(r.rss_bytes >= r.rss_worker_bytes && r.rss_worker_bytes > 0);
    assert!(
        r.sfu_drops.is_empty(),
        "the worker dropped nothing: {:?}",
        r.sfu_drops
    );
    // Sender reports reached subscribers, receiver reports publishers: RTCP flows both ways.
    assert!(r.publisher_feedback > 0, "{}", r.table());

    // The table and JSON carry the figures.
    let table = r.table();
    for needle in ["loss", "latency", "SFU CPU", "RSS", "pkt/s"] {
        assert!(table.contains(needle), "{needle} in {table}");
    }
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["lost"], 0);
    assert_eq!(json["consumers"], 12);
}

#[test]
fn fan_out_limits_what_each_subscriber_consumes_over_aes_cm() {
    let config = LoadConfig {
        fan_out: Some(1),
        srtp_profile: SrtpProfile::Aes128CmHmacSha1_80,
        nack: false,
        ..low_rate(1, 3, 3)
    };
    let r = run(&config).expect("run");
    assert_eq!(r.consumers, 3, "one publisher per subscriber");
    assert_eq!(r.srtp_profile, "Aes128CmHmacSha1_80");
    assert_eq!(r.lost, 0, "{}", r.table());
    assert!(r.packets_out > 0);
    assert_eq!(r.misrouted, 0);
    assert_eq!(r.payloads_corrupt, 0);
}

#[test]
fn bad_configurations_are_refused_with_a_reason() {
    let zero = LoadConfig {
        subscribers: 0,
        ..low_rate(1, 1, 1)
    };
    assert!(matches!(run(&zero), Err(RunError::Config(_))));
    let too_big = LoadConfig {
        packet_size: 1480,
        ..low_rate(1, 1, 1)
    };
    let err = run(&too_big).unwrap_err();
    assert!(err.to_string().contains("packet size"), "{err}");
    let tiny = LoadConfig {
        packet_size: 8,
        ..low_rate(1, 1, 1)
    };
    assert!(matches!(run(&tiny), Err(RunError::Config(_))));
}

/// One publisher at a rate whose 1 ms bursts no longer fit one GSO send (60 packets of 1228
/// bytes is 72 KiB, over the 64 KiB a `sendmsg` may carry). The old sender built such bursts,
/// the kernel refused them, and the counters it had taken left gaps of thousands of sequence
/// numbers: almost nothing arrived, and at higher rates the SFU's SRTP index estimate broke
/// (`srtp_auth_fail`). Now every packet built reaches the wire with consecutive sequence
/// numbers, and whatever a debug build cannot send is reported as given up, not hidden.
#[test]
fn a_fast_publisher_sends_consecutive_packets_and_says_what_it_could_not_send() {
    let config = LoadConfig {
        packet_rate: 60_000.0,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        verify_every: 16,
        ..low_rate(1, 1, 1)
    };
    let r = run(&config).expect("run");
    let table = r.table();

    // Nothing refused by our own socket, nothing the SFU could not authenticate.
    assert_eq!(r.unsent, 0, "{table}");
    assert_eq!(r.srtp_errors, 0, "{table}");
    assert!(
        !r.sfu_drops
            .iter()
            .any(|(reason, _)| reason.starts_with("srtp")),
        "{table}"
    );
    assert_eq!(r.sequence_mismatches, 0, "{table}");
    assert_eq!(r.payloads_corrupt, 0, "{table}");
    assert!(r.payloads_verified > 0, "{table}");
    // What was sent arrived (a kernel receive-buffer drop on a busy machine is the only
    // excuse, and it is reported as such).
    assert!(r.packets_out > 1000, "{table}");
    assert!(r.lost == 0 || r.udp.rcvbuf_errors > 0, "{table}");

    // The schedule accounts for every offered packet: sent, given up, or still owed (at most
    // its 50 ms lag) when the window closed.
    let offered = config.packet_rate * r.window_s;
    assert!(
        (r.packets_in + r.given_up) as f64 >= offered * 0.9,
        "sent {} + given up {} of {offered} offered: {table}",
        r.packets_in,
        r.given_up
    );
    assert_eq!(r.offered_in_pps, config.packet_rate);
    // A shortfall is said plainly; no warning means the rate was met.
    if r.in_shortfall_pct > 2.0 || r.given_up > 0 {
        assert_eq!(r.warnings.len(), 1, "{table}");
        assert!(table.contains("WARNING"), "{table}");
        let shortfall = format!(",{},{:.2},", r.given_up, r.in_shortfall_pct);
        assert!(r.csv_row().contains(&shortfall), "{}", r.csv_row());
    } else {
        assert!(r.warnings.is_empty(), "{table}");
        assert!(r.in_pps >= config.packet_rate * 0.98, "{table}");
    }
}

#[test]
fn two_rooms_on_two_workers_each_forward_their_room_without_loss() {
    let config = LoadConfig {
        workers: 2,
        ..low_rate(2, 1, 2)
    };
    let r = run(&config).expect("run");
    let table = r.table();
    assert_eq!(r.workers.len(), 2, "{table}");
    assert_eq!(r.consumers, 4, "{table}");
    assert!(r.expected_out > 0);
    assert_eq!(r.lost, 0, "{table}");
    assert_eq!(r.srtp_errors, 0, "{table}");
    assert_eq!(r.payloads_corrupt, 0, "{table}");
    assert_eq!(r.misrouted, 0, "{table}");
    assert_eq!(r.sequence_mismatches, 0, "{table}");
    // One room per worker, the same shape: each forwarded half of what arrived.
    for w in &r.workers {
        assert!(w.packets_out > 0, "{table}");
        assert!(
            w.packets_out.abs_diff(r.packets_out / 2) <= r.packets_out / 20 + 4,
            "worker {} forwarded {} of {}: {table}",
            w.index,
            w.packets_out,
            r.packets_out
        );
        assert!(
            w.label.starts_with(&format!("worker {}", w.index)),
            "{table}"
        );
    }
    assert_eq!(
        r.workers.iter().map(|w| w.packets_out).sum::<u64>(),
        r.packets_out
    );
    // The SFU's CPU is the sum over its workers.
    let cpu: f64 = r.workers.iter().map(|w| w.cpu_s).sum();
    assert!((cpu - r.sfu_cpu_s).abs() < 1e-9, "{table}");
    assert!(table.contains("per worker"), "{table}");
    assert!(table.contains("2 worker(s)"), "{table}");
}

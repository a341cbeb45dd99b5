//! The signaling mode end to end: a real `sfu-server` process (built here if needed, started
//! with its own ports and temporary data directory), every client joining over its WebSocket
//! API with minted tokens, then real ICE, DTLS and SRTP to its media port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sfu_core::SrtpProfile;
use sfu_loadgen::embedded::{LoadConfig, RunError};
use sfu_loadgen::signaling_mode::{ServerTarget, run};

/// `target/<profile>/sfu-server`, built (or brought up to date) by the cargo running this
/// test: another crate's binary is not built for this crate's tests, and a stale one would
/// test old code.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/signaling-<hash>
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "-p", "sfu-server", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build -p sfu-server");
    assert!(status.success(), "cargo build -p sfu-server failed");
    let binary = profile_dir.join("sfu-server");
    assert!(binary.is_file(), "{} missing", binary.display());
    binary
}

fn config(rooms: usize, publishers: usize, subscribers: usize) -> LoadConfig {
    LoadConfig {
        rooms,
        publishers,
        subscribers,
        fan_out: None,
        packet_rate: 200.0,
        packet_size: 1200,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(2),
        srtp_profile: SrtpProfile::AeadAes128Gcm,
        nack: true,
        pin: false,
        verify_every: 1,
        progress: false,
        workers: 1,
    }
}

#[test]
fn clients_joined_over_websocket_get_every_packet_intact_from_a_real_server() {
    let binary = server_binary();
    let config = config(2, 2, 2);
    let r = run(
        &config,
        &ServerTarget::Spawn {
            binary: Some(binary),
        },
    )
    .expect("run");
    let table = r.table();
    assert_eq!(r.mode, "signaling", "{table}");
    assert_eq!(
        r.consumers, 8,
        "the server holds 2 rooms × 2 subscribers × 2: {table}"
    );
    assert!(r.expected_out > 0, "{table}");
    assert_eq!(r.lost, 0, "{table}");
    assert_eq!(r.packets_out, r.expected_out, "{table}");
    assert_eq!(r.duplicates, 0, "{table}");
    assert_eq!(r.srtp_errors, 0, "{table}");
    assert_eq!(r.payloads_corrupt, 0, "{table}");
    assert_eq!(r.misrouted, 0, "{table}");
    assert_eq!(r.unknown_ssrc, 0, "{table}");
    assert_eq!(r.sequence_mismatches, 0, "{table}");
    assert!(r.payloads_verified >= r.packets_out, "{table}");
    assert_eq!(r.consumers_congestion_paused, 0, "{table}");
    assert!(
        !r.warnings.iter().any(|w| w.contains("congestion control")),
        "{table}"
    );
    // 200 pkt/s of 1228-byte datagrams is 2 Mbit/s per subscriber: over the server's initial
    // 1 Mbit/s estimate, so the ramp-up and the subscribers' transport-wide feedback are what
    // let it through. The window runs at the full rate: every packet offered in it was sent
    // or (on a starved machine, and then reported) given up.
    assert_eq!(r.offered_in_pps, 800.0, "{table}");
    assert!(
        (r.packets_in + r.given_up) as f64 >= 800.0 * r.window_s * 0.9,
        "{table}"
    );
    // Figures of the server process, not of this one.
    assert!(r.sfu_cpu_s > 0.0, "{table}");
    assert!(r.rss_bytes > 0 && r.rss_worker_bytes > 0, "{table}");
    assert!(
        r.workers.iter().any(|w| w.label.starts_with("worker 0")),
        "{table}"
    );
    assert_eq!(
        r.workers.iter().map(|w| w.packets_out).sum::<u64>(),
        r.packets_out,
        "{table}"
    );
}

#[test]
fn a_fan_out_below_every_publisher_is_refused_in_the_signaling_mode() {
    let config = LoadConfig {
        fan_out: Some(1),
        ..config(1, 2, 1)
    };
    let err = run(
        &config,
        &ServerTarget::Spawn {
            binary: Some(PathBuf::from("/nonexistent/sfu-server")),
        },
    )
    .unwrap_err();
    assert!(matches!(err, RunError::Config(_)), "{err}");
}

#[test]
fn a_missing_server_binary_is_a_clear_error() {
    let err = run(
        &config(1, 1, 1),
        &ServerTarget::Spawn {
            binary: Some(PathBuf::from("/nonexistent/sfu-server")),
        },
    )
    .unwrap_err();
    assert!(matches!(err, RunError::Server(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/sfu-server"), "{err}");
}

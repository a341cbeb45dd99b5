//! `sfu-loadgen`: the command line of the load generator. See `docs/load-generator.md`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sfu_core::SrtpProfile;
use sfu_loadgen::embedded::{self, LoadConfig};
use sfu_loadgen::report::Report;
use sfu_loadgen::signaling_mode::{self, ServerTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// SFU workers in this process, set up through the embedding API (raw throughput).
    Embedded,
    /// A real `sfu-server` process, every client joining over its WebSocket API.
    Signaling,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    /// AEAD_AES_128_GCM (what the SFU prefers).
    Gcm,
    /// AES_CM_128_HMAC_SHA1_80.
    AesCm,
}

/// Load generator for the SFU: P publishers and S subscribers per room over real ICE, DTLS
/// and SRTP on real UDP sockets, against workers started in-process (embedding API) or a real
/// sfu-server joined over its WebSocket signaling API (--mode signaling).
#[derive(Debug, Parser)]
#[command(name = "sfu-loadgen", version)]
struct Args {
    /// Where the SFU runs: in-process workers, or a real sfu-server joined over WebSocket.
    #[arg(long, value_enum, default_value_t = Mode::Embedded)]
    mode: Mode,
    /// Signaling mode: the sfu-server binary to start (default: the one next to this binary).
    #[arg(long, conflicts_with = "server_url")]
    server_bin: Option<std::path::PathBuf>,
    /// Signaling mode: load a server already running at this WebSocket URL
    /// (ws://host:port/ws) instead of starting one; needs --api-key.
    #[arg(long, requires = "api_key")]
    server_url: Option<String>,
    /// Signaling mode with --server-url: an API key of that server, as key:secret.
    #[arg(long)]
    api_key: Option<String>,
    /// Signaling mode with --server-url: the server's process id, to read its CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Rooms, each with its own publishers and subscribers.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room (one video track each).
    #[arg(short = 'p', long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per room.
    #[arg(short = 's', long, default_value_t = 10)]
    subscribers: usize,
    /// Publishers of its room each subscriber consumes (default: all).
    #[arg(long)]
    fan_out: Option<usize>,
    /// Packets per second per publisher.
    #[arg(short = 'r', long, default_value_t = 1000.0, conflicts_with_all = ["bitrate", "out_rate"])]
    rate: f64,
    /// Per-publisher bitrate in Mbit/s of RTP payload (instead of --rate).
    #[arg(long)]
    bitrate: Option<f64>,
    /// Total packets per second the SFU should forward (instead of --rate): the per-publisher
    /// rate is derived from the number of consumers.
    #[arg(long)]
    out_rate: Option<f64>,
    /// RTP payload bytes per packet.
    #[arg(long, default_value_t = 1200)]
    packet_size: usize,
    /// Measurement window, seconds.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Traffic before the window, seconds (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// SRTP profile the clients offer.
    #[arg(long, value_enum, default_value_t = Profile::Gcm)]
    srtp: Profile,
    /// Subscribers do not negotiate NACK (the SFU keeps no retransmission history).
    #[arg(long)]
    no_nack: bool,
    /// SFU workers, each its own thread and UDP port. Embedded mode: rooms are placed on them
    /// round-robin. Signaling mode: the started server's --workers (it places rooms itself).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Do not pin the SFU and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Verify the checksum of one packet in N.
    #[arg(long, default_value_t = 16)]
    verify_every: u64,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Print one CSV line (with a header line first when --csv-header) instead of the table.
    #[arg(long)]
    csv: bool,
    /// With --csv: print the header line first.
    #[arg(long)]
    csv_header: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fan_out = args
        .fan_out
        .unwrap_or(args.publishers)
        .min(args.publishers)
        .max(1);
    let consumers = args.rooms * args.subscribers * fan_out;
    let publishers = args.rooms * args.publishers;
    let rate = if let Some(mbps) = args.bitrate {
        mbps * 1e6 / 8.0 / args.packet_size as f64
    } else if let Some(out) = args.out_rate {
        // Every consumer gets every packet of its publisher; publishers are evenly loaded
        // when fan-out divides evenly.
        out / consumers.max(1) as f64 * publishers as f64 / publishers.max(1) as f64
    } else {
        args.rate
    };
    let config = LoadConfig {
        rooms: args.rooms,
        publishers: args.publishers,
        subscribers: args.subscribers,
        fan_out: args.fan_out,
        packet_rate: rate,
        packet_size: args.packet_size,
        warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        srtp_profile: match args.srtp {
            Profile::Gcm => SrtpProfile::AeadAes128Gcm,
            Profile::AesCm => SrtpProfile::Aes128CmHmacSha1_80,
        },
        nack: !args.no_nack,
        pin: !args.no_pin,
        verify_every: args.verify_every,
        progress: !args.quiet,
        workers: args.workers,
    };
    let result = match args.mode {
        Mode::Embedded => embedded::run(&config),
        Mode::Signaling => {
            let target = match (args.server_url, args.api_key) {
                (Some(url), Some(key)) => {
                    let Some((api_key, api_secret)) = key.split_once(':') else {
                        eprintln!("sfu-loadgen: --api-key must be key:secret");
                        return ExitCode::FAILURE;
                    };
                    ServerTarget::Connect {
                        url,
                        api_key: api_key.to_owned(),
                        api_secret: api_secret.to_owned(),
                        pid: args.server_pid,
                    }
                }
                _ => ServerTarget::Spawn {
                    binary: args.server_bin,
                },
            };
            signaling_mode::run(&config, &target)
        }
    };
    match result {
        Ok(report) => {
            let out = if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => s + "\n",
                    Err(e) => {
                        eprintln!("sfu-loadgen: JSON: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else if args.csv {
                let row = report.csv_row();
                if args.csv_header {
                    format!("{}\n{row}\n", Report::csv_header())
                } else {
                    row + "\n"
                }
            } else {
                report.table()
            };
            // A reader that stops early (`| head -1`) is not an error of the run.
            match std::io::stdout().write_all(out.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sfu-loadgen: stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("sfu-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

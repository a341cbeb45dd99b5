//! `sfu-server`: a working meeting server with embedded defaults.
//!
//! `cargo run -p sfu-server` binds HTTP/WebSocket on 127.0.0.1:7880 and starts one media
//! worker per core (`--workers`), worker `i` on UDP 127.0.0.1:7882 + `i`; it serves the example web client at `/` and Prometheus metrics at `/metrics`
//! (`docs/operations.md`), and (development mode, the default when no API key is configured)
//! mints tokens at `/dev/token`. Settings come from, in order
//! of precedence: command-line flags, `SFU_*` environment variables, a TOML file
//! (`--config`), the defaults.
//!
//! Rooms and meetings are stored in a database: `--database-url` (`sqlite://…` or
//! `postgres://…`), else a SQLite file `sfu.db` in `--data-dir`, else (development mode) a
//! private in-memory database, else `./sfu-data/sfu.db`. Webhooks are sent only to the
//! endpoints listed in the TOML file (`[[webhooks]]` with `url` and `secret`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use serde::Deserialize;
use sfu_core::WorkerConfig;
use sfu_core::bandwidth_estimator::Bitrate;
use sfu_core::udp_socket::UdpSocketConfig;
use sfu_core::worker::RembConfig;
use sfu_core::worker_pool::{WorkerPool, default_worker_count};
use signaling::room::RoomSettings;
use signaling::room_service::{RoomService, RoomServiceConfig};
use signaling::server::{SignalingConfig, SignalingServer};
use signaling::storage::Storage;
use signaling::webhooks::{WebhookConfig, WebhookDispatcher, WebhookEndpoint};

/// Command line. Every flag also reads an `SFU_*` environment variable.
#[derive(Parser, Debug)]
#[command(version, about = "A WebRTC SFU meeting server")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "SFU_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "SFU_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// UDP media listen address: worker `i` listens on its port + `i` (port 0: any ports).
    #[arg(long, env = "SFU_UDP_LISTEN")]
    udp_listen: Option<SocketAddr>,
    /// Media workers (threads, one UDP port each); default: one per core.
    #[arg(long, env = "SFU_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// How many of a room's participants one worker takes before the room spreads to another
    /// worker (its producers piped there); only matters with 2+ workers. Default: 50.
    #[arg(long, env = "SFU_ROOM_PARTICIPANTS_PER_WORKER", value_parser = clap::value_parser!(u32).range(1..))]
    room_participants_per_worker: Option<u32>,
    /// Public IP announced in ICE candidates (behind NAT); defaults to the UDP listen IP.
    #[arg(long, env = "SFU_ANNOUNCE")]
    announce: Option<IpAddr>,
    /// Folder of the web client served at `/`.
    #[arg(long, env = "SFU_WEB_ROOT")]
    web_root: Option<PathBuf>,
    /// API keys as `key:secret`, comma-separated.
    #[arg(long = "api-key", env = "SFU_API_KEYS", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// Enable development mode (`/dev/token`) even with API keys configured.
    #[arg(long)]
    dev: bool,
    /// Disable development mode.
    #[arg(long, conflicts_with = "dev")]
    no_dev: bool,
    /// The most the server sends any subscriber, kbit/s (its congestion control's ceiling).
    #[arg(long, env = "SFU_SUBSCRIBER_MAX_KBPS", value_parser = clap::value_parser!(u64).range(100..))]
    subscriber_max_kbps: Option<u64>,
    /// Send publishers that negotiated goog-remb a REMB capping their uplink at this, kbit/s
    /// (lowered under uplink loss); off by default.
    #[arg(long, env = "SFU_PUBLISHER_REMB_MAX_KBPS", value_parser = clap::value_parser!(u64).range(100..))]
    publisher_remb_max_kbps: Option<u64>,
    /// SRTP's AES-GCM through this project's VAES kernel where the CPU has it (default true);
    /// false: aws-lc on every CPU.
    #[arg(long, env = "SFU_AES_GCM_KERNEL")]
    aes_gcm_kernel: Option<bool>,
    /// Database of rooms and meetings: `sqlite://path`, `sqlite::memory:` or `postgres://…`.
    #[arg(long, env = "SFU_DATABASE_URL")]
    database_url: Option<String>,
    /// Folder for the server's own files (the SQLite database `sfu.db`).
    #[arg(long, env = "SFU_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// The TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_listen: Option<SocketAddr>,
    udp_listen: Option<SocketAddr>,
    workers: Option<u16>,
    room_participants_per_worker: Option<u32>,
    announce: Option<IpAddr>,
    web_root: Option<PathBuf>,
    dev: Option<bool>,
    #[serde(default)]
    api_keys: Vec<ApiKey>,
    max_participants: Option<usize>,
    subscriber_max_kbps: Option<u64>,
    publisher_remb_max_kbps: Option<u64>,
    aes_gcm_kernel: Option<bool>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    webhooks: Vec<Webhook>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Webhook {
    url: String,
    secret: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ApiKey {
    key: String,
    secret: String,
}

const DEV_KEY: &str = "devkey";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let file: FileConfig = match &cli.config {
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?,
        None => FileConfig::default(),
    };
    let http_listen = cli
        .http_listen
        .or(file.http_listen)
        .unwrap_or(([127, 0, 0, 1], 7880).into());
    let udp_listen = cli
        .udp_listen
        .or(file.udp_listen)
        .unwrap_or(([127, 0, 0, 1], 7882).into());
    let web_root = cli
        .web_root
        .or(file.web_root)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/web")));

    let mut config = SignalingConfig::default();
    for k in &file.api_keys {
        config
            .keys
            .insert(k.key.clone(), k.secret.clone().into_bytes());
    }
    for k in &cli.api_keys {
        let (key, secret) = k.split_once(':').ok_or("--api-key takes key:secret")?;
        config.keys.insert(key, secret.as_bytes().to_vec());
    }
    let dev = if cli.no_dev {
        false
    } else {
        cli.dev || file.dev.unwrap_or(config.keys.is_empty())
    };
    if dev {
        // A fresh secret every start: development tokens never outlive the process.
        let secret: [u8; 32] = rand::random();
        config.keys.insert(DEV_KEY, secret.to_vec());
        config.dev_key = Some(DEV_KEY.to_owned());
    }
    if config.keys.is_empty() {
        return Err("no API key configured and development mode is off: nobody could join".into());
    }
    if web_root.is_dir() {
        config.web_root = Some(web_root);
    } else {
        tracing::warn!(
            "web client folder {} not found: not serving it",
            web_root.display()
        );
    }
    let database_url = match (
        cli.database_url.or(file.database_url),
        cli.data_dir.or(file.data_dir),
    ) {
        (Some(url), _) => url,
        (None, Some(dir)) => sqlite_in(&dir)?,
        (None, None) if dev => "sqlite::memory:".to_owned(),
        (None, None) => sqlite_in(&PathBuf::from("sfu-data"))?,
    };
    let webhook_endpoints: Vec<WebhookEndpoint> = file
        .webhooks
        .iter()
        .map(|w| WebhookEndpoint::new(w.url.clone(), w.secret.clone().into_bytes()))
        .collect();

    let mut worker_config = WorkerConfig::default();
    if let Some(kbps) = cli.subscriber_max_kbps.or(file.subscriber_max_kbps) {
        let max = Bitrate::kbps(kbps.max(100));
        let cc = &mut worker_config.congestion;
        cc.estimator.max = max;
        cc.estimator.initial = cc.estimator.initial.min(max);
        cc.pacer.initial_estimate = cc.estimator.initial;
    }
    if let Some(kbps) = cli.publisher_remb_max_kbps.or(file.publisher_remb_max_kbps) {
        worker_config.remb = Some(RembConfig {
            max: Bitrate::kbps(kbps.max(100)),
            ..RembConfig::default()
        });
    }
    if let Some(ip) = cli.announce.or(file.announce) {
        worker_config
            .announced_addresses
            .push(SocketAddr::new(ip, udp_listen.port()));
    }
    sfu_gcm::set_kernel_enabled(cli.aes_gcm_kernel.or(file.aes_gcm_kernel).unwrap_or(true));
    tracing::info!(
        implementation = sfu_gcm::implementation_for_new_keys().name(),
        "SRTP AES-128-GCM"
    );
    let workers = match cli.workers.or(file.workers) {
        Some(0) => return Err("workers must be at least 1".into()),
        Some(n) => usize::from(n),
        None => default_worker_count(),
    };
    let participants_per_worker = match cli
        .room_participants_per_worker
        .or(file.room_participants_per_worker)
    {
        Some(0) => return Err("room_participants_per_worker must be at least 1".into()),
        Some(n) => usize::try_from(n)?,
        None => RoomSettings::default().participants_per_worker,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let storage = Storage::connect(&database_url)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let webhooks = if webhook_endpoints.is_empty() {
            None
        } else {
            Some(WebhookDispatcher::spawn(WebhookConfig {
                endpoints: webhook_endpoints,
                ..WebhookConfig::default()
            })?)
        };
        config.room = RoomSettings {
            max_participants: file
                .max_participants
                .unwrap_or(RoomSettings::default().max_participants),
            participants_per_worker,
            service: RoomService::new(RoomServiceConfig {
                storage: Some(storage.clone()),
                webhooks: webhooks.as_ref().map(WebhookDispatcher::sender),
                ..RoomServiceConfig::default()
            }),
            ..RoomSettings::default()
        };
        let (pool, events) = WorkerPool::spawn(
            workers,
            udp_listen,
            worker_config,
            UdpSocketConfig::default(),
        )?;
        let media = pool
            .workers()
            .iter()
            .map(|w| w.local_addr().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let server = SignalingServer::with_pool(config, Arc::new(pool), events);
        let listener = tokio::net::TcpListener::bind(http_listen).await?;
        let http = listener.local_addr()?;
        println!(
            "sfu-server listening: http://{http} ({workers} media workers, UDP {media}, metrics http://{http}/metrics){}",
            if dev { ", development mode" } else { "" }
        );
        server.serve(listener, shutdown_signal()).await?;
        if let Some(webhooks) = webhooks {
            // Deliver what the last room closings queued, for a moment.
            let stats = webhooks.shutdown(std::time::Duration::from_secs(5)).await;
            tracing::info!(delivered = stats.delivered, dropped = stats.dropped(), "webhooks stopped");
        }
        storage.close().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The URL of the SQLite database in `dir` (created if missing).
fn sqlite_in(dir: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("sfu.db").display()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_config_file_parses_and_typos_are_refused() {
        let file: FileConfig = toml::from_str(
            r#"
http_listen = "0.0.0.0:7880"
udp_listen = "0.0.0.0:7882"
announce = "203.0.113.7"
dev = false
max_participants = 50
workers = 4
room_participants_per_worker = 40
subscriber_max_kbps = 8000
publisher_remb_max_kbps = 2500
aes_gcm_kernel = true
[[api_keys]]
key = "mykey"
secret = "a-long-random-secret"
"#,
        )
        .expect("the README's example parses");
        assert_eq!(file.http_listen, Some("0.0.0.0:7880".parse().unwrap()));
        assert_eq!(file.announce, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(file.dev, Some(false));
        assert_eq!(file.max_participants, Some(50));
        assert_eq!(file.workers, Some(4));
        assert_eq!(file.room_participants_per_worker, Some(40));
        assert_eq!(file.subscriber_max_kbps, Some(8000));
        assert_eq!(file.publisher_remb_max_kbps, Some(2500));
        assert_eq!(file.aes_gcm_kernel, Some(true));
        assert_eq!(file.api_keys.len(), 1);
        assert!(
            toml::from_str::<FileConfig>("http_listn = \"0.0.0.0:1\"").is_err(),
            "unknown keys are errors"
        );
    }

    #[test]
    fn flags_override_and_environment_is_read() {
        let cli = Cli::try_parse_from([
            "sfu-server",
            "--http-listen",
            "127.0.0.1:9000",
            "--api-key",
            "a:b,c:d",
            "--no-dev",
            "--workers",
            "3",
            "--publisher-remb-max-kbps",
            "1500",
            "--aes-gcm-kernel",
            "false",
        ])
        .unwrap();
        assert_eq!(cli.publisher_remb_max_kbps, Some(1500));
        assert_eq!(cli.aes_gcm_kernel, Some(false));
        assert!(
            Cli::try_parse_from(["sfu-server", "--aes-gcm-kernel", "maybe"]).is_err(),
            "true or false"
        );
        assert!(
            Cli::try_parse_from(["sfu-server", "--subscriber-max-kbps", "10"]).is_err(),
            "a ceiling too low to carry audio and the lowest layer"
        );
        assert_eq!(cli.workers, Some(3));
        assert!(
            Cli::try_parse_from(["sfu-server", "--workers", "0"]).is_err(),
            "at least one worker"
        );
        assert_eq!(cli.http_listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(cli.api_keys, vec!["a:b".to_owned(), "c:d".to_owned()]);
        assert!(cli.no_dev);
        assert!(
            Cli::try_parse_from(["sfu-server", "--dev", "--no-dev"]).is_err(),
            "contradictory flags"
        );
    }
}

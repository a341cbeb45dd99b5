//! A real `sfu-server` for the signaling mode: started as a child process with its own ports,
//! API key and temporary data directory, or one already running; and what can be read of it
//! from outside — CPU time per thread and RSS from `/proc/<pid>`, drop counters and consumers
//! from its Prometheus endpoint (`GET /metrics`, `docs/operations.md`).
//!
//! Owns the child's lifetime (it is killed and its data directory removed when the
//! [`ServerProcess`] is dropped) and the parsing of what the server prints and serves. It must
//! not speak the signaling protocol (`crate::signaling_mode` does).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proc_stats::{self, CpuTime};

/// Longest wait for a started server to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a metrics scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the server's output kept to explain a failure.
const LOG_LINES: usize = 40;
/// The prefix of the line the server prints once it listens (`sfu-server/src/main.rs`).
const LISTENING: &str = "sfu-server listening: http://";
/// Worker threads are named `sfu-worker-<port>` (`sfu_core::driver`); the kernel keeps 15
/// bytes of a name, so only the prefix is reliable.
const WORKER_THREAD: &str = "sfu-worker";

/// Why the server could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No `sfu-server` binary was given or found.
    #[error(
        "no sfu-server binary next to {0} (build it: cargo build --release -p sfu-server, or pass --server-bin)"
    )]
    NotFound(String),
    /// The process could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited or never said it listens.
    #[error("sfu-server did not start: {reason}; its last output:\n{log}")]
    Start {
        /// What went wrong.
        reason: String,
        /// Its last lines of output.
        log: String,
    },
    /// Its temporary directory could not be made.
    #[error("temporary directory: {0}")]
    TempDir(std::io::Error),
    /// The metrics endpoint did not answer.
    #[error("metrics at http://{addr}/metrics: {reason}")]
    Metrics {
        /// The server's HTTP address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerLaunch {
    /// The `sfu-server` binary.
    pub binary: PathBuf,
    /// Its media workers (`--workers`).
    pub workers: usize,
    /// Participants a room may hold (the server's default is 100).
    pub max_participants: usize,
    /// The ceiling of each subscriber's congestion-controlled bandwidth, kbit/s.
    pub subscriber_max_kbps: u64,
}

/// A started `sfu-server`: killed, and its data directory removed, on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Its HTTP and WebSocket address.
    pub http: SocketAddr,
    /// Its workers' UDP addresses, in worker order.
    pub media: Vec<SocketAddr>,
    /// The API key it was started with.
    pub api_key: String,
    /// That key's secret.
    pub api_secret: String,
    data_dir: PathBuf,
}

/// `sfu-server` beside this executable: in the same directory (the release binaries), or one
/// up (a test binary lives in `target/<profile>/deps/`).
pub fn find_server_binary() -> Result<PathBuf, ServerError> {
    let exe = std::env::current_exe().map_err(|e| ServerError::NotFound(e.to_string()))?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("sfu-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ServerError::NotFound(exe.display().to_string()))
}

/// Random hex from the kernel (the API secret of a started server).
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `http://ADDR (N media workers, UDP A, B, metrics …` from the listening line.
fn parse_listening(line: &str) -> Option<(SocketAddr, Vec<SocketAddr>)> {
    let rest = line.split_once(LISTENING)?.1;
    let (http, rest) = rest.split_once(' ')?;
    let media = rest.split_once("UDP ")?.1.split_once(", metrics")?.0;
    let media = media
        .split(", ")
        .map(|a| a.trim().parse().ok())
        .collect::<Option<Vec<SocketAddr>>>()?;
    Some((http.parse().ok()?, media))
}

impl ServerProcess {
    /// Starts a server on `127.0.0.1` with ephemeral ports, an API key of its own, no
    /// development mode and a fresh data directory, and waits until it listens.
    pub fn start(launch: &ServerLaunch) -> Result<Self, ServerError> {
        let data_dir = std::env::temp_dir().join(format!(
            "sfu-loadgen-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        std::fs::create_dir_all(&data_dir).map_err(ServerError::TempDir)?;
        let config = data_dir.join("sfu-server.toml");
        std::fs::write(
            &config,
            format!("max_participants = {}\n", launch.max_participants.max(1)),
        )
        .map_err(ServerError::TempDir)?;
        let api_key = "loadgen".to_owned();
        let api_secret = random_hex(32);
        let spawned = Command::new(&launch.binary)
            .arg("--config")
            .arg(&config)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--udp-listen",
                "127.0.0.1:0",
            ])
            .args(["--workers", &launch.workers.max(1).to_string()])
            .args(["--api-key", &format!("{api_key}:{api_secret}")])
            .arg("--no-dev")
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--subscriber-max-kbps",
                &launch.subscriber_max_kbps.max(100).to_string(),
            ])
            // Logs (tracing writes to stdout) only for warnings: the listening line is a
            // println and always comes.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(ServerError::Spawn {
                    binary: launch.binary.display().to_string(),
                    source,
                });
            }
        };
        let pid = child.id();
        // Both pipes are drained for the server's whole life (a full pipe would block its
        // logging); the last lines are kept to explain a failure.
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES)));
        let (lines_tx, lines_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain_lines(out, log.clone(), Some(lines_tx));
        }
        if let Some(err) = child.stderr.take() {
            drain_lines(err, log.clone(), None);
        }
        let mut server = Self {
            child,
            pid,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            media: Vec::new(),
            api_key,
            api_secret,
            data_dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let last_lines = |log: &Arc<Mutex<VecDeque<String>>>| {
            let log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.iter().cloned().collect::<Vec<_>>().join("\n")
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((http, media)) = parse_listening(&line) {
                        server.http = http;
                        server.media = media;
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(ServerError::Start {
                        reason: format!("no listening line within {START_TIMEOUT:?}"),
                        log: last_lines(&log),
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().ok();
                    return Err(ServerError::Start {
                        reason: format!("it exited ({status:?})"),
                        log: last_lines(&log),
                    });
                }
            }
        }
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// The server's data directory (removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn drain_lines(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line.clone());
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}

/// What `/metrics` says about drops and consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaMetrics {
    /// `sfu_drops_total` by reason.
    pub drops: Vec<(String, u64)>,
    /// `sfu_consumers`.
    pub consumers: usize,
    /// `sfu_consumers_congestion_paused`.
    pub congestion_paused: usize,
}

impl MediaMetrics {
    /// Reads the Prometheus text format (other series are ignored).
    pub fn parse(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if series == "sfu_consumers" {
                m.consumers = value as usize;
            } else if series == "sfu_consumers_congestion_paused" {
                m.congestion_paused = value as usize;
            } else if let Some(reason) = series
                .strip_prefix("sfu_drops_total{reason=\"")
                .and_then(|r| r.strip_suffix("\"}"))
            {
                m.drops.push((reason.to_owned(), value as u64));
            }
        }
        m
    }

    /// Drops since `earlier` (reasons that did not grow are left out).
    pub fn drops_since(&self, earlier: &MediaMetrics) -> Vec<(String, u64)> {
        self.drops
            .iter()
            .filter_map(|(reason, n)| {
                let before = earlier
                    .drops
                    .iter()
                    .find(|(r, _)| r == reason)
                    .map_or(0, |(_, n)| *n);
                let grew = n.saturating_sub(before);
                (grew > 0).then(|| (reason.clone(), grew))
            })
            .collect()
    }
}

/// `GET /metrics` over HTTP/1.0 (the body is then neither chunked nor kept alive).
pub async fn scrape(http: SocketAddr) -> Result<MediaMetrics, ServerError> {
    let err = |reason: String| ServerError::Metrics { addr: http, reason };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(http).await?;
        stream
            .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| err("no HTTP header".into()))?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1).is_none_or(|s| s != "200") {
        return Err(err(head.lines().next().unwrap_or("").to_owned()));
    }
    Ok(MediaMetrics::parse(body))
}

/// CPU time of a server process: each worker thread, and everything else together.
pub fn server_cpu(pid: u32) -> Vec<(String, CpuTime)> {
    let Some(total) = proc_stats::process_cpu(pid) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut workers = CpuTime::default();
    // Workers are spawned in order, so thread ids follow worker indexes.
    for (tid, name) in proc_stats::process_threads(pid) {
        if name.starts_with(WORKER_THREAD)
            && let Some(t) = proc_stats::task_cpu(pid, tid)
        {
            out.push((format!("worker {} (tid {tid})", out.len()), t));
            workers = workers.plus(&t);
        }
    }
    out.push((
        "signaling and other threads".to_owned(),
        total.since(&workers),
    ));
    out
}

/// Thread ids of a server's threads (to pin them).
pub fn server_threads(pid: u32) -> Vec<u32> {
    proc_stats::process_threads(pid)
        .into_iter()
        .map(|(tid, _)| tid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_every_address() {
        let line = "sfu-server listening: http://127.0.0.1:41234 (2 media workers, UDP 127.0.0.1:50000, 127.0.0.1:50001, metrics http://127.0.0.1:41234/metrics)";
        let (http, media) = parse_listening(line).unwrap();
        assert_eq!(http, "127.0.0.1:41234".parse::<SocketAddr>().unwrap());
        assert_eq!(
            media,
            vec![
                "127.0.0.1:50000".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:50001".parse::<SocketAddr>().unwrap()
            ]
        );
        assert!(parse_listening("2026-01-01 INFO something else").is_none());
        assert!(parse_listening(LISTENING).is_none());
    }

    #[test]
    fn metrics_are_read_by_series_name() {
        let text = "# HELP sfu_consumers consumers\n# TYPE sfu_consumers gauge\nsfu_consumers 12\n\
            sfu_drops_total{reason=\"srtp_replay\"} 3\nsfu_drops_total{reason=\"oversize\"} 0\n\
            sfu_consumers_congestion_paused 1\nsfu_drops_total{reason=\"rtp_padding\"} 7\n";
        let m = MediaMetrics::parse(text);
        assert_eq!(m.consumers, 12);
        assert_eq!(m.congestion_paused, 1);
        assert_eq!(m.drops.len(), 3);
        let earlier = MediaMetrics {
            drops: vec![("rtp_padding".into(), 7), ("srtp_replay".into(), 1)],
            ..MediaMetrics::default()
        };
        assert_eq!(m.drops_since(&earlier), vec![("srtp_replay".to_owned(), 2)]);
    }
}

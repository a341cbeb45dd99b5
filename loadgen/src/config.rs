//! What a run is asked to do ([`LoadConfig`]) and why it could not be done ([`RunError`]),
//! shared by both modes (the embedded worker and a real `sfu-server`).
//!
//! Owns the configuration's defaults, its derived figures and its validation; it must not
//! start anything.

use std::io;
use std::time::Duration;

use sfu_core::SrtpProfile;

use crate::payload;
use crate::traffic::{MAX_DATAGRAM, RTP_HEADER};

/// Everything a run is asked to do.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Rooms (routers), each with its own publishers and subscribers.
    pub rooms: usize,
    /// Publishers per room (one video track each).
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Publishers of its room each subscriber consumes; `None`: all of them.
    pub fan_out: Option<usize>,
    /// Packets per second each publisher sends.
    pub packet_rate: f64,
    /// RTP payload bytes of each packet.
    pub packet_size: usize,
    /// Traffic before the measurement window (not counted).
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// SRTP profile the clients offer (the SFU also supports the other).
    pub srtp_profile: SrtpProfile,
    /// Whether subscribers negotiate NACK (the SFU then keeps a retransmission history).
    pub nack: bool,
    /// Pin the SFU's threads and the load generator to different CPUs (via `taskset`).
    pub pin: bool,
    /// Verify the payload checksum of one packet in this many (1: every packet).
    pub verify_every: u64,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// SFU workers (embedded mode): rooms are placed on them round-robin, a room stays on
    /// one worker.
    pub workers: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            rooms: 1,
            publishers: 1,
            subscribers: 10,
            fan_out: None,
            packet_rate: 1000.0,
            packet_size: 1200,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            srtp_profile: SrtpProfile::AeadAes128Gcm,
            nack: true,
            pin: true,
            verify_every: 16,
            progress: true,
            workers: 1,
        }
    }
}

impl LoadConfig {
    /// Publishers each subscriber consumes.
    pub fn effective_fan_out(&self) -> usize {
        self.fan_out.unwrap_or(self.publishers).min(self.publishers)
    }

    /// Consumers on the worker.
    pub fn consumers(&self) -> usize {
        self.rooms * self.subscribers * self.effective_fan_out()
    }

    /// Packets per second the SFU is asked to forward.
    pub fn offered_out_rate(&self) -> f64 {
        self.consumers() as f64 * self.packet_rate
    }

    /// Refuses a configuration that cannot run, with the reason.
    pub fn validate(&self) -> Result<(), RunError> {
        let config = self;
        if config.rooms == 0 || config.publishers == 0 || config.subscribers == 0 {
            return Err(RunError::Config(
                "rooms, publishers and subscribers must be at least 1".into(),
            ));
        }
        if !(config.packet_rate > 0.0 && config.packet_rate.is_finite()) {
            return Err(RunError::Config("the packet rate must be positive".into()));
        }
        let datagram = RTP_HEADER + config.packet_size + config.srtp_profile.rtp_tag_len();
        if config.packet_size < payload::MIN_PAYLOAD || datagram > MAX_DATAGRAM {
            return Err(RunError::Config(format!(
                "packet size must be {}..={} bytes of payload",
                payload::MIN_PAYLOAD,
                MAX_DATAGRAM - RTP_HEADER - config.srtp_profile.rtp_tag_len()
            )));
        }
        if config.duration.is_zero() {
            return Err(RunError::Config("the duration must be positive".into()));
        }
        if config.fan_out == Some(0) {
            return Err(RunError::Config("fan-out must be at least 1".into()));
        }
        if config.workers == 0 {
            return Err(RunError::Config("workers must be at least 1".into()));
        }
        Ok(())
    }
}

/// Why a run could not be carried out (as opposed to a run that measured loss).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket could not be set up.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The worker thread stopped.
    #[error(transparent)]
    WorkerGone(#[from] sfu_core::driver::WorkerGone),
    /// The worker refused a control call.
    #[error("worker: {0}")]
    Worker(#[from] sfu_core::WorkerError),
    /// A client could not be built.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The `sfu-server` process could not be started or read.
    #[error(transparent)]
    Server(#[from] crate::server_process::ServerError),
    /// The signaling server refused or did not answer.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The server's SDP could not be used.
    #[error(transparent)]
    Sdp(#[from] crate::client_sdp::SdpError),
    /// Clients did not connect.
    #[error("{failed} of {total} clients did not connect: {first}")]
    Connect {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
        /// The first reason.
        first: String,
    },
}

//! # sfu-loadgen: a load generator that proves the SFU's numbers
//!
//! P publishers and S subscribers per room, R rooms, every one a real client over its own UDP
//! socket with real ICE, DTLS and SRTP (AES-GCM by default), against SFU workers started
//! in-process through the embedding API ([`embedded::run`]) or against a real `sfu-server`
//! joined over its WebSocket signaling API ([`signaling_mode::run`]). Publishers send
//! synthetic VP8-shaped RTP at a set rate ([`pacing`]); every payload carries its publisher, a
//! counter, the send time and a checksum ([`payload`]). Subscribers check every packet:
//! continuity per stream ([`stream_check`]), the checksum on a sample, latency into a
//! histogram ([`histogram`]). Both modes share the client side ([`traffic`]). A run ends with
//! a [`report::Report`]: packets/s in (and offered) and out, Mbit/s, loss, latency p50/p99,
//! the SFU's CPU time (from `/proc`, [`proc_stats`]) per worker and forwarded packets per
//! CPU-second, and RSS.
//!
//! ```no_run
//! use sfu_loadgen::embedded::{LoadConfig, run};
//! let report = run(&LoadConfig { subscribers: 50, packet_rate: 500.0, ..Default::default() })?;
//! println!("{}", report.table());
//! # Ok::<(), sfu_loadgen::embedded::RunError>(())
//! ```
//!
//! The binary (`sfu-loadgen --help`) wraps this with a CLI; `docs/load-generator.md` explains
//! the method and its limits.

pub mod client;
pub mod client_sdp;
pub mod config;
pub mod embedded;
pub mod histogram;
pub mod pacing;
pub mod payload;
pub mod proc_stats;
pub mod report;
pub mod server_process;
pub mod signaling_mode;
pub mod stream_check;
pub mod traffic;

//! The embedded mode: SFU workers started in-process through the embedding API
//! ([`sfu_core::driver::WorkerHandle`], each its own thread and UDP socket), loaded by the
//! clients of [`crate::traffic`].
//!
//! Owns the worker side of a run: starting `--workers` workers, placing rooms on them
//! round-robin (a room lives on one worker), the signaling a real server would do — routers,
//! transports, producers and consumers — done by hand through [`WorkerHandle::call`], pinning
//! threads to CPUs, and reading each worker thread's CPU time. It must not reach into a worker
//! beyond the public control API, so what it measures is what an embedder gets.

use std::time::Instant;

use sfu_core::driver::WorkerHandle;
use sfu_core::{
    RtcpFeedback, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
    WebRtcTransportInfo, WebRtcTransportOptions, WorkerConfig,
};

use crate::client::{ClientIdentity, ServerTransport};
pub use crate::config::{LoadConfig, RunError};
use crate::proc_stats::{self, CpuTime};
use crate::report::Report;
use crate::traffic::{
    Before, Plan, PublisherPlan, SfuCounters, SfuProbe, SubscriberPlan, VIDEO_PT, drive,
};

/// Runs one load test against in-process workers and reports on its measurement window.
pub fn run(config: &LoadConfig) -> Result<Report, RunError> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_async(config.clone()))
}

/// The workers of a run and their thread ids.
struct Workers {
    handles: Vec<WorkerHandle>,
    tids: Vec<Option<u32>>,
}

impl SfuProbe for Workers {
    fn cpu(&self) -> Vec<(String, CpuTime)> {
        // Each worker's own thread: counting "every other thread of the process" would also
        // count (and, when they exit, subtract) threads of whoever else runs here, e.g. tests.
        self.tids
            .iter()
            .enumerate()
            .map(|(i, tid)| {
                let label = format!("worker {i} (tid {})", tid.unwrap_or(0));
                let cpu = tid.and_then(proc_stats::thread_cpu).unwrap_or_default();
                (label, cpu)
            })
            .collect()
    }

    fn rss(&self) -> u64 {
        proc_stats::rss_bytes(proc_stats::own_pid()).unwrap_or(0)
    }

    fn residence(&self) -> Option<sfu_core::residence_time::ResidenceHistogram> {
        self.handles
            .iter()
            .map(|w| w.io_stats().residence)
            .reduce(|a, b| a.merged(&b))
    }

    async fn counters(&self) -> Result<SfuCounters, RunError> {
        let mut drops: Vec<(String, u64)> = Vec::new();
        let mut consumers = 0;
        for w in &self.handles {
            let (worker_drops, worker_consumers) = w
                .call(|w, _| {
                    let drops: Vec<(String, u64)> = w
                        .drops()
                        .nonzero()
                        .map(|(r, n)| (r.name().to_owned(), n))
                        .collect();
                    (drops, w.counts().2)
                })
                .await?;
            consumers += worker_consumers;
            for (reason, n) in worker_drops {
                match drops.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, total)) => *total += n,
                    None => drops.push((reason, n)),
                }
            }
        }
        Ok(SfuCounters {
            drops,
            consumers,
            // Subscribers negotiate no transport-cc here: nothing is congestion-controlled.
            congestion_paused: 0,
        })
    }
}

/// Pins each worker thread and the load generator's thread (via `taskset`). The load
/// generator gets the last CPU to itself; the workers share the others round-robin (with two
/// CPUs every worker is on CPU 0: the per-CPU-second figure stays right, the throughput is
/// one core's). Returns what was done, for the report.
fn pin(tids: &[Option<u32>], own_tid: Option<u32>) -> String {
    let cpus = proc_stats::cpu_count();
    if cpus < 2 {
        return "not pinned (one CPU)".into();
    }
    let loadgen_cpu = cpus - 1;
    let mut placed = Vec::new();
    let mut ok = true;
    for (i, tid) in tids.iter().enumerate() {
        let cpu = i % loadgen_cpu;
        ok &= tid.is_some_and(|tid| proc_stats::pin_thread(tid, cpu).is_ok());
        placed.push(format!("worker {i} on CPU {cpu}"));
    }
    ok &= own_tid.is_some_and(|tid| proc_stats::pin_thread(tid, loadgen_cpu).is_ok());
    if ok {
        format!("{}, load generator on CPU {loadgen_cpu}", placed.join(", "))
    } else {
        "pinning failed (taskset)".into()
    }
}

async fn run_async(config: LoadConfig) -> Result<Report, RunError> {
    let own_tid = proc_stats::current_tid();
    let rss_start = proc_stats::rss_bytes(proc_stats::own_pid()).unwrap_or(0);
    let bind = "127.0.0.1:0"
        .parse()
        .map_err(|e| RunError::Config(format!("bind address: {e}")))?;
    let mut workers = Workers {
        handles: Vec::with_capacity(config.workers),
        tids: Vec::with_capacity(config.workers),
    };
    for _ in 0..config.workers {
        let (worker, _events) = WorkerHandle::spawn(bind, WorkerConfig::default())?;
        workers
            .tids
            .push(worker.call(|_, _| proc_stats::current_tid()).await?);
        workers.handles.push(worker);
    }
    let pinning = if config.pin {
        pin(&workers.tids, own_tid)
    } else {
        "not pinned (--no-pin)".into()
    };
    let identity = ClientIdentity::generate()?;
    let rss_bare = workers.rss();

    // Signaling, done by hand: room `r` on worker `r % workers`.
    let setup_started = Instant::now();
    let mut plan = Plan::default();
    let mut seed = 1u64;
    for room in 0..config.rooms {
        let worker_index = room % workers.handles.len().max(1);
        let Some(worker) = workers.handles.get(worker_index) else {
            continue;
        };
        let setup = setup_room(worker, &config, room, &identity).await?;
        let first_publisher = plan.publishers.len() as u32;
        for (info, ssrc) in setup.publishers {
            plan.publishers.push(PublisherPlan {
                transport: ServerTransport::from_info(&info)?,
                ssrc,
                seed,
            });
            seed += 1;
        }
        for (info, streams) in setup.subscribers {
            plan.subscribers.push(SubscriberPlan {
                transport: ServerTransport::from_info(&info)?,
                streams: streams
                    .into_iter()
                    .map(|(ssrc, p)| (ssrc, first_publisher + p as u32))
                    .collect(),
                worker: worker_index,
                seed,
                side_ssrcs: Vec::new(),
                // Subscribers negotiate no transport-cc here: the worker forwards unpaced.
                transport_cc: None,
            });
            seed += 1;
        }
    }
    let before = Before {
        setup_started,
        rss_start,
        rss_bare,
        pinning,
        own_tid,
        mode: "embedded",
        ramp: None,
    };
    let report = drive(&config, plan, &identity, &workers, before).await?;
    drop(workers);
    Ok(report)
}

fn video_codec(nack: bool) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "video/VP8".into(),
        payload_type: VIDEO_PT,
        clock_rate: 90_000,
        channels: None,
        parameters: vec![],
        rtcp_feedback: if nack {
            vec![
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("nack", "pli"),
            ]
        } else {
            vec![RtcpFeedback::new("nack", "pli")]
        },
        rtx_payload_type: None,
    }
}

/// What the worker set up for one room.
struct RoomSetup {
    publishers: Vec<(WebRtcTransportInfo, u32)>,
    /// Per subscriber: its transport and (consumer SSRC, publisher index in the room).
    subscribers: Vec<(WebRtcTransportInfo, Vec<(u32, usize)>)>,
}

async fn setup_room(
    worker: &WorkerHandle,
    config: &LoadConfig,
    room: usize,
    identity: &ClientIdentity,
) -> Result<RoomSetup, RunError> {
    let (publishers, subscribers, fan_out, nack) = (
        config.publishers,
        config.subscribers,
        config.effective_fan_out(),
        config.nack,
    );
    let fingerprint = identity.fingerprint();
    let profile = config.srtp_profile;
    worker
        .call(move |w, now| {
            let router = w.create_router();
            let options = || WebRtcTransportOptions {
                remote_fingerprint: Some(fingerprint.clone()),
                srtp_profiles: vec![profile],
                ..Default::default()
            };
            let mut pubs = Vec::with_capacity(publishers);
            let mut producers = Vec::with_capacity(publishers);
            for p in 0..publishers {
                let info = w.create_webrtc_transport(now, router, options())?;
                let ssrc = 0x1000_0000 + (room * publishers + p) as u32;
                let producer = w.produce(
                    info.id,
                    RtpParameters {
                        mid: Some("0".into()),
                        codecs: vec![video_codec(nack)],
                        header_extensions: vec![],
                        encodings: vec![RtpEncodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        }],
                        cname: Some(format!("publisher-{room}-{p}")),
                    },
                )?;
                producers.push(producer);
                pubs.push((info, ssrc));
            }
            let caps = RtpCapabilities {
                codecs: vec![video_codec(nack)],
                header_extensions: vec![],
            };
            let mut subs = Vec::with_capacity(subscribers);
            for s in 0..subscribers {
                let info = w.create_webrtc_transport(now, router, options())?;
                let mut streams = Vec::with_capacity(fan_out);
                for k in 0..fan_out {
                    // Spread the consumers evenly over the room's publishers.
                    let p = (s + k) % publishers;
                    let Some(&producer) = producers.get(p) else {
                        continue;
                    };
                    let (_, parameters) =
                        w.consume(now, info.id, producer, &caps, Some(k.to_string()))?;
                    if let Some(ssrc) = parameters.encodings.first().and_then(|e| e.ssrc) {
                        streams.push((ssrc, p));
                    }
                }
                subs.push((info, streams));
            }
            Ok::<_, sfu_core::WorkerError>(RoomSetup {
                publishers: pubs,
                subscribers: subs,
            })
        })
        .await?
        .map_err(RunError::from)
}

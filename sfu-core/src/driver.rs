//! The worker's driver: the only code in `sfu-core` that reads the clock or drives a socket.
//!
//! [`WorkerHandle::spawn`] starts one OS thread with a single-threaded tokio runtime, one UDP
//! socket ([`crate::udp_socket`], where every socket trick lives) and one [`Worker`]. The
//! thread loops: gather everything the worker queued and send it in batches (GSO runs per
//! destination), then wait for datagrams (received in batches, each handed to
//! [`Worker::handle_datagram`]), a control command or the worker's next deadline. Control
//! calls from other threads arrive as closures run on the worker thread, so the worker itself
//! needs no locks. This module is glue: no protocol logic and no socket options here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::udp_socket::{
    BoundSocket, IoStats, IoStatsSnapshot, MediaSocket, SocketCapabilities, UdpSocketConfig,
};
use crate::worker::{Transmit, Worker, WorkerConfig, WorkerEvent};

type Command = Box<dyn FnOnce(&mut Worker, Instant) + Send>;

/// The worker thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the worker thread has stopped")]
pub struct WorkerGone;

/// A handle to a worker thread.
pub struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    capabilities: SocketCapabilities,
    io_stats: Arc<IoStats>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Binds `bind` and starts the worker thread. When `config.announced_addresses` is empty
    /// the bound address is announced. Returns the handle and the worker's event stream.
    pub fn spawn(
        bind: SocketAddr,
        config: WorkerConfig,
    ) -> io::Result<(Self, mpsc::UnboundedReceiver<WorkerEvent>)> {
        Self::spawn_with_socket(bind, config, UdpSocketConfig::default())
    }

    /// [`Self::spawn`] with socket settings (GSO on or off, buffer sizes).
    pub fn spawn_with_socket(
        bind: SocketAddr,
        config: WorkerConfig,
        socket_config: UdpSocketConfig,
    ) -> io::Result<(Self, mpsc::UnboundedReceiver<WorkerEvent>)> {
        Self::spawn_on(BoundSocket::bind(bind, socket_config)?, config)
    }

    /// Starts the worker thread on a socket bound by the caller (who may need its port to
    /// decide what to announce).
    pub fn spawn_on(
        socket: BoundSocket,
        mut config: WorkerConfig,
    ) -> io::Result<(Self, mpsc::UnboundedReceiver<WorkerEvent>)> {
        let local_addr = socket.local_addr()?;
        let capabilities = socket.capabilities();
        if config.announced_addresses.is_empty() {
            config.announced_addresses.push(local_addr);
        }
        let worker =
            Worker::new(config, Instant::now(), SystemTime::now()).map_err(io::Error::other)?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let io_stats = Arc::new(IoStats::default());
        let thread_stats = io_stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sfu-worker-{}", local_addr.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => return tracing::error!("worker runtime: {e}"),
                };
                runtime.block_on(async move {
                    match socket.into_media_socket(thread_stats) {
                        Ok(socket) => run(worker, socket, command_rx, events_tx).await,
                        Err(e) => tracing::error!("worker socket: {e}"),
                    }
                });
            })?;
        Ok((
            Self {
                commands,
                local_addr,
                capabilities,
                io_stats,
                thread: Some(thread),
            },
            events,
        ))
    }

    /// What the socket offers: GSO segments per send (1 when off or unsupported) and GRO
    /// segments per receive buffer, as decided at start-up.
    pub fn socket_capabilities(&self) -> SocketCapabilities {
        self.capabilities
    }

    /// The socket's I/O counters (receive calls, GSO sends, fallbacks, …).
    pub fn io_stats(&self) -> IoStatsSnapshot {
        self.io_stats.snapshot()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs `f` on the worker thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker, Instant) -> R + Send + 'static,
    ) -> Result<R, WorkerGone> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Box::new(move |w, now| {
                let _ = tx.send(f(w, now));
            }))
            .map_err(|_| WorkerGone)?;
        rx.await.map_err(|_| WorkerGone)
    }

    /// [`Self::call`] for callers outside an async runtime.
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker, Instant) -> R + Send + 'static,
    ) -> Result<R, WorkerGone> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Box::new(move |w, now| {
                let _ = tx.send(f(w, now));
            }))
            .map_err(|_| WorkerGone)?;
        rx.blocking_recv().map_err(|_| WorkerGone)
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // Closing the command channel ends the loop.
        let (closed, _) = mpsc::unbounded_channel();
        self.commands = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What woke the loop.
enum Wake {
    Command(Option<Command>),
    Readable(io::Result<()>),
    Deadline,
}

async fn run(
    mut worker: Worker,
    mut socket: MediaSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<WorkerEvent>,
) {
    // Reused for every batch: it keeps its capacity, so gathering allocates nothing.
    let mut outgoing: Vec<Transmit> = Vec::new();
    loop {
        while let Some(t) = worker.poll_transmit() {
            outgoing.push(t);
        }
        if !outgoing.is_empty() {
            socket.send_all(&outgoing).await;
            for t in outgoing.drain(..) {
                worker.recycle(t.contents);
            }
        }
        while let Some(e) = worker.poll_event() {
            let _ = events.send(e);
        }
        let now = Instant::now();
        let deadline = worker.poll_timeout();
        if deadline.is_some_and(|d| d <= now) {
            worker.handle_timeout(now);
            continue;
        }
        let sleep_until =
            tokio::time::Instant::from_std(deadline.unwrap_or(now + Duration::from_secs(3600)));
        let wake = tokio::select! {
            biased;
            command = commands.recv() => Wake::Command(command),
            readable = socket.readable() => Wake::Readable(readable),
            () = tokio::time::sleep_until(sleep_until) => Wake::Deadline,
        };
        match wake {
            Wake::Command(Some(f)) => f(&mut worker, Instant::now()),
            Wake::Command(None) | Wake::Readable(Err(_)) => break,
            Wake::Readable(Ok(())) => {
                // One clock read per batch: its datagrams arrived within microseconds.
                let now = Instant::now();
                // `WouldBlock` (a spurious wake-up) and ICMP errors (they surface as receive
                // errors on Linux and say nothing about other peers) both mean: keep serving.
                let _ =
                    socket.try_receive(|source, data| worker.handle_datagram(now, source, data));
            }
            Wake::Deadline => worker.handle_timeout(Instant::now()),
        }
    }
}

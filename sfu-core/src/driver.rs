//! The worker's driver: the only code in `sfu-core` that reads the clock or drives a socket.
//!
//! [`WorkerHandle::spawn`] starts one OS thread with a single-threaded tokio runtime, one UDP
//! socket ([`crate::udp_socket`], where every socket trick lives) and one [`Worker`]. The
//! thread loops: gather everything the worker queued and send it in batches (GSO runs per
//! destination), then wait for datagrams (received in batches, each handed to
//! [`Worker::handle_datagram`]), a control command or the worker's next deadline. Control
//! calls from other threads arrive as closures run on the worker thread, so the worker itself
//! needs no locks. Workers of one pool are linked ([`WorkerHandle::link_pipes`]): what a
//! worker queues for another worker's pipe ends ([`Worker::poll_pipe`]) is carried to that
//! worker's thread in one batch per loop turn. This module is glue: no protocol logic and no
//! socket options here.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::pipe::PipeMessage;
use crate::udp_socket::{
    BoundSocket, IoStats, IoStatsSnapshot, MediaSocket, SocketCapabilities, UdpSocketConfig,
};
use crate::worker::{Transmit, Worker, WorkerConfig, WorkerEvent};

type Command = Box<dyn FnOnce(&mut Worker, Instant) + Send>;

/// Piped packets waiting in one worker's inbox beyond which senders drop further packets
/// (counted as `pipe_backpressure`) instead of queueing without bound: a worker that falls
/// behind loses packets, as its socket would, and the others are not held up. Pipe control
/// messages (closes, keyframe requests) are never dropped.
const PIPE_INBOX_PACKETS: usize = 16_384;

/// What one worker's driver hands another's in one loop turn.
struct PipeBatch {
    from: usize,
    messages: Vec<PipeMessage>,
    packets: usize,
}

/// A worker's pipe inbox, as other drivers see it.
#[derive(Clone)]
struct PipeInbox {
    sender: mpsc::UnboundedSender<PipeBatch>,
    /// Piped packets sent and not yet handled.
    queued: Arc<AtomicUsize>,
}

/// Where a driver sends its worker's pipe messages: its own index and every peer's inbox.
struct PipeLinks {
    own: usize,
    peers: Vec<Option<PipeInbox>>,
}

/// The workers were linked already.
#[derive(Debug, thiserror::Error)]
#[error("worker {0} is already linked to a pool")]
pub struct AlreadyLinked(pub usize);

/// The worker thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the worker thread has stopped")]
pub struct WorkerGone;

/// A handle to a worker thread.
pub struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    inbox: PipeInbox,
    links: Arc<OnceLock<PipeLinks>>,
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
        let (pipe_tx, pipe_rx) = mpsc::unbounded_channel();
        let inbox = PipeInbox {
            sender: pipe_tx,
            queued: Arc::new(AtomicUsize::new(0)),
        };
        let links: Arc<OnceLock<PipeLinks>> = Arc::new(OnceLock::new());
        let pipes = Pipes {
            inbox: pipe_rx,
            queued: inbox.queued.clone(),
            links: links.clone(),
            batches: Vec::new(),
        };
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
                        Ok(socket) => run(worker, socket, command_rx, events_tx, pipes).await,
                        Err(e) => tracing::error!("worker socket: {e}"),
                    }
                });
            })?;
        Ok((
            Self {
                commands,
                inbox,
                links,
                local_addr,
                capabilities,
                io_stats,
                thread: Some(thread),
            },
            events,
        ))
    }

    /// Links the workers of a pool so that their pipes reach each other: `workers[i]` is
    /// worker `i` in every [`crate::pipe::PipeEndpoint`]. A worker belongs to one pool for
    /// its whole life.
    pub fn link_pipes(workers: &[&WorkerHandle]) -> Result<(), AlreadyLinked> {
        if let Some(i) = workers.iter().position(|w| w.links.get().is_some()) {
            return Err(AlreadyLinked(i));
        }
        for (own, w) in workers.iter().enumerate() {
            let peers = workers
                .iter()
                .enumerate()
                .map(|(i, p)| (i != own).then(|| p.inbox.clone()))
                .collect();
            w.links
                .set(PipeLinks { own, peers })
                .map_err(|_| AlreadyLinked(own))?;
        }
        Ok(())
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
    Pipe(Option<PipeBatch>),
    Deadline,
}

/// The driver's side of its worker's pipes.
struct Pipes {
    inbox: mpsc::UnboundedReceiver<PipeBatch>,
    /// Shared with the senders: piped packets in `inbox`.
    queued: Arc<AtomicUsize>,
    links: Arc<OnceLock<PipeLinks>>,
    /// What the worker queued this turn, per receiving worker.
    batches: Vec<Vec<PipeMessage>>,
}

impl Pipes {
    /// Sends what `worker` queued for other workers, one batch per receiving worker.
    fn flush(&mut self, worker: &mut Worker) {
        while let Some(out) = worker.poll_pipe() {
            if self.batches.len() <= out.worker {
                self.batches.resize_with(out.worker + 1, Vec::new);
            }
            if let Some(batch) = self.batches.get_mut(out.worker) {
                batch.push(out.message);
            }
        }
        for (to, batch) in self.batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let mut messages = std::mem::take(batch);
            let links = self.links.get();
            let peer = links.and_then(|l| l.peers.get(to)).and_then(Option::as_ref);
            let Some((links, peer)) = links.zip(peer) else {
                // No such worker: nothing can ever receive these.
                let packets = messages.iter().filter(|m| is_packet(m)).count();
                worker.count_pipe_backpressure(packets);
                continue;
            };
            if peer.queued.load(Ordering::Relaxed) >= PIPE_INBOX_PACKETS {
                let before = messages.len();
                messages.retain(|m| !is_packet(m));
                worker.count_pipe_backpressure(before - messages.len());
            }
            let packets = messages.iter().filter(|m| is_packet(m)).count();
            peer.queued.fetch_add(packets, Ordering::Relaxed);
            let batch = PipeBatch {
                from: links.own,
                messages,
                packets,
            };
            if peer.sender.send(batch).is_err() {
                // That worker has stopped.
                peer.queued.fetch_sub(packets, Ordering::Relaxed);
                worker.count_pipe_backpressure(packets);
            }
        }
    }

    /// Hands a batch from another worker to `worker`.
    fn deliver(&self, worker: &mut Worker, batch: PipeBatch, now: Instant) {
        self.queued.fetch_sub(batch.packets, Ordering::Relaxed);
        for m in batch.messages {
            worker.handle_pipe_message(now, batch.from, m);
        }
    }
}

/// Sends everything the worker queued, counting each send's residence from `received_at`,
/// and gives the buffers back.
async fn send_queued(
    worker: &mut Worker,
    socket: &mut MediaSocket,
    outgoing: &mut Vec<Transmit>,
    received_at: Option<Instant>,
) {
    while let Some(t) = worker.poll_transmit() {
        outgoing.push(t);
    }
    if outgoing.is_empty() {
        return;
    }
    socket.send_all(outgoing, received_at).await;
    for t in outgoing.drain(..) {
        worker.recycle(t.contents);
    }
}

fn is_packet(m: &PipeMessage) -> bool {
    matches!(m, PipeMessage::Packet(_))
}

async fn run(
    mut worker: Worker,
    mut socket: MediaSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<WorkerEvent>,
    mut pipes: Pipes,
) {
    // Reused for every batch: it keeps its capacity, so gathering allocates nothing.
    let mut outgoing: Vec<Transmit> = Vec::new();
    // One receive call's datagrams, handed to the worker a few at a time.
    let mut received: Vec<(SocketAddr, bytes::BytesMut)> = Vec::new();
    // When the receive whose output is not sent yet happened.
    let mut received_at: Option<Instant> = None;
    loop {
        send_queued(&mut worker, &mut socket, &mut outgoing, received_at).await;
        received_at = None;
        pipes.flush(&mut worker);
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
            batch = pipes.inbox.recv() => Wake::Pipe(batch),
            readable = socket.readable() => Wake::Readable(readable),
            () = tokio::time::sleep_until(sleep_until) => Wake::Deadline,
        };
        match wake {
            Wake::Command(Some(f)) => f(&mut worker, Instant::now()),
            // The handle keeps a sender of its own inbox: `None` means it is gone.
            Wake::Command(None) | Wake::Readable(Err(_)) | Wake::Pipe(None) => break,
            Wake::Pipe(Some(batch)) => pipes.deliver(&mut worker, batch, Instant::now()),
            Wake::Readable(Ok(())) => {
                // One clock read per batch: its datagrams arrived within microseconds.
                let now = Instant::now();
                received_at = Some(now);
                // `WouldBlock` (a spurious wake-up) and ICMP errors (they surface as receive
                // errors on Linux and say nothing about other peers) both mean: keep serving.
                let _ = socket.try_receive(|source, data| received.push((source, data)));
                // A receive call can bring thousands of datagrams (GRO coalesces up to 64 per
                // slot), each fanned out to every subscriber. Sending part-way keeps what is
                // sent in cache: gathering a whole call's output first made a saturated worker
                // copy megabytes back from memory, so each packet cost more the further
                // behind it fell.
                for (source, data) in received.drain(..) {
                    worker.handle_datagram(now, source, data);
                    if worker.queued_transmits() >= socket.send_early_after() {
                        send_queued(&mut worker, &mut socket, &mut outgoing, Some(now)).await;
                    }
                }
            }
            Wake::Deadline => worker.handle_timeout(Instant::now()),
        }
    }
}

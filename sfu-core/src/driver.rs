//! The worker's driver: the only code in `sfu-core` that reads the clock or touches a socket.
//!
//! [`WorkerHandle::spawn`] starts one OS thread with a single-threaded tokio runtime, one UDP
//! socket and one [`Worker`]. The thread loops: send what the worker queued, then wait for a
//! datagram, a control command or the worker's next deadline. Control calls from other
//! threads arrive as closures run on the worker thread, so the worker itself needs no locks.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::worker::{MAX_DATAGRAM, Worker, WorkerConfig, WorkerEvent};

type Command = Box<dyn FnOnce(&mut Worker, Instant) + Send>;

/// Datagrams read per wake-up before the worker gets to send and run timers.
const RECEIVE_BATCH: usize = 64;
/// Socket buffer size requested from the kernel.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// The worker thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the worker thread has stopped")]
pub struct WorkerGone;

/// A handle to a worker thread.
pub struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Binds `bind` and starts the worker thread. When `config.announced_addresses` is empty
    /// the bound address is announced. Returns the handle and the worker's event stream.
    pub fn spawn(
        bind: SocketAddr,
        mut config: WorkerConfig,
    ) -> io::Result<(Self, mpsc::UnboundedReceiver<WorkerEvent>)> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a small default buffer drops bursts, but a refusal is not fatal.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.set_nonblocking(true)?;
        socket.bind(&bind.into())?;
        let socket: std::net::UdpSocket = socket.into();
        let local_addr = socket.local_addr()?;
        if config.announced_addresses.is_empty() {
            config.announced_addresses.push(local_addr);
        }
        let worker =
            Worker::new(config, Instant::now(), SystemTime::now()).map_err(io::Error::other)?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
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
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => run(worker, socket, command_rx, events_tx).await,
                        Err(e) => tracing::error!("worker socket: {e}"),
                    }
                });
            })?;
        Ok((
            Self {
                commands,
                local_addr,
                thread: Some(thread),
            },
            events,
        ))
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

async fn run(
    mut worker: Worker,
    socket: UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<WorkerEvent>,
) {
    loop {
        while let Some(t) = worker.poll_transmit() {
            if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                tracing::debug!("send to {}: {e}", t.destination);
            }
            worker.recycle(t.contents);
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
        let sleep_until = tokio::time::Instant::from_std(
            deadline.unwrap_or(now + std::time::Duration::from_secs(3600)),
        );
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(f) => f(&mut worker, Instant::now()),
                None => break,
            },
            readable = socket.readable() => {
                if readable.is_err() {
                    break;
                }
                for _ in 0..RECEIVE_BATCH {
                    // Larger than any datagram we accept, so an oversize one is seen as such.
                    let mut buf = BytesMut::zeroed(MAX_DATAGRAM + 512);
                    match socket.try_recv_from(&mut buf) {
                        Ok((len, source)) => {
                            buf.truncate(len);
                            worker.handle_datagram(Instant::now(), source, buf);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors surface as receive errors on Linux; they say nothing about
                        // other peers, so keep serving.
                        Err(_) => continue,
                    }
                }
            }
            () = tokio::time::sleep_until(sleep_until) => worker.handle_timeout(Instant::now()),
        }
    }
}

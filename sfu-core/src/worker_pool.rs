//! A worker per core: the [`WorkerPool`] spawns N [`WorkerHandle`]s, shared-nothing, each on
//! its own thread with its own UDP port, and places rooms on them by load.
//!
//! The pool owns the workers and their load book; it must not know about rooms, sessions or
//! SDP (the signaling layer names rooms and decides when they end) and it never touches the
//! packet path: load is counted when rooms are placed and measured from the workers when a
//! placement is decided, never per packet.
//!
//! # Ports
//!
//! Every worker has a port of its own: ICE-lite demultiplexes by ufrag and then by 5-tuple
//! *within* a worker, and one port per worker keeps a peer's packets on the thread that owns
//! its transport without any steering. (`SO_REUSEPORT` on one port would hash each 4-tuple to
//! a socket of the kernel's choosing, which is not the worker that owns the transport.) With
//! a fixed base port `p`, worker `i` binds `p + i`; with port 0 each gets an ephemeral port.
//! An announced address with port 0 is announced with each worker's bound port, any other
//! with `port + i` (a forwarded range of consecutive ports).
//!
//! # Load and placement
//!
//! A worker's [`WorkerLoad`] is its rooms (counted by [`RoomPlacement`] guards: a room holds
//! its guard while it lives, and dropping it frees the room's share) plus the transports and
//! consumers the worker actually holds, measured by [`WorkerPool::refresh_load`]. The cost
//! of a worker is the sum of the three: consumers dominate (each forwarded packet costs one
//! encryption and one send per consumer), transports carry the DTLS, ICE and RTCP work, and
//! counting rooms spreads a burst of new, still empty rooms. A new room goes to the worker of
//! least cost (the lowest index on a tie).
//!
//! # Rooms larger than one worker
//!
//! A room starts on one worker. When the signaling layer decides that it has outgrown it, it
//! asks for another placement of the same room ([`WorkerPool::place_room_extension`]: the
//! least loaded worker the room is not on yet) and puts new participants there; every
//! producer is then consumed on the other worker through a pipe ([`crate::pipe`]), which the
//! pool makes possible by linking all its workers at start ([`WorkerHandle::link_pipes`]):
//! worker `i` of the pool is worker `i` in every pipe endpoint.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::driver::WorkerHandle;
use crate::udp_socket::{BoundSocket, UdpSocketConfig};
use crate::worker::{WorkerConfig, WorkerEvent};

/// The load of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerLoad {
    /// Rooms placed on the worker and still open.
    pub rooms: usize,
    /// Transports on the worker at the last measurement.
    pub transports: usize,
    /// Consumers on the worker at the last measurement.
    pub consumers: usize,
    /// The worker did not answer the last measurement (its thread stopped): never chosen.
    pub gone: bool,
}

impl WorkerLoad {
    /// What placement minimises: rooms + transports + consumers (`usize::MAX` when gone).
    pub fn cost(&self) -> usize {
        if self.gone {
            return usize::MAX;
        }
        self.rooms
            .saturating_add(self.transports)
            .saturating_add(self.consumers)
    }
}

/// The pool's load book, shared with the placements it handed out.
#[derive(Debug, Default)]
struct LoadBook {
    loads: Mutex<Vec<WorkerLoad>>,
}

impl LoadBook {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<WorkerLoad>) -> R) -> R {
        // A panic elsewhere cannot leave the counters half-updated: keep using them.
        f(&mut self.loads.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The workers of one server, one per core by default.
pub struct WorkerPool {
    workers: Vec<Arc<WorkerHandle>>,
    book: Arc<LoadBook>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.workers.len())
            .field("loads", &self.loads())
            .finish()
    }
}

/// The number of workers to start when none is configured: one per core the process may use.
pub fn default_worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl WorkerPool {
    /// Spawns `count` workers (at least one) bound as the module documentation says, with
    /// `config` and `socket` for each. Returns the pool and each worker's event stream, in
    /// worker order.
    pub fn spawn(
        count: usize,
        bind: SocketAddr,
        config: WorkerConfig,
        socket: UdpSocketConfig,
    ) -> io::Result<(Self, Vec<mpsc::UnboundedReceiver<WorkerEvent>>)> {
        let count = count.max(1);
        let mut workers = Vec::with_capacity(count);
        let mut events = Vec::with_capacity(count);
        for i in 0..count {
            let offset = u16::try_from(i).map_err(|_| too_many_ports(bind, count))?;
            let port = if bind.port() == 0 {
                0
            } else {
                bind.port()
                    .checked_add(offset)
                    .ok_or_else(|| too_many_ports(bind, count))?
            };
            let bound = BoundSocket::bind(SocketAddr::new(bind.ip(), port), socket.clone())?;
            let bound_port = bound.local_addr()?.port();
            let mut worker_config = config.clone();
            worker_config.announced_addresses.clear();
            for a in &config.announced_addresses {
                let p = if a.port() == 0 {
                    bound_port
                } else {
                    a.port()
                        .checked_add(offset)
                        .ok_or_else(|| too_many_ports(*a, count))?
                };
                worker_config
                    .announced_addresses
                    .push(SocketAddr::new(a.ip(), p));
            }
            let (handle, rx) = WorkerHandle::spawn_on(bound, worker_config)?;
            workers.push(Arc::new(handle));
            events.push(rx);
        }
        Ok((Self::from_workers(workers), events))
    }

    /// A pool of workers started elsewhere (an embedder's, or a single worker). Links their
    /// pipes (worker `i` is `workers[i]`) unless they already belong to another pool.
    pub fn from_workers(workers: Vec<Arc<WorkerHandle>>) -> Self {
        let handles: Vec<&WorkerHandle> = workers.iter().map(|w| w.as_ref()).collect();
        if let Err(e) = WorkerHandle::link_pipes(&handles) {
            tracing::warn!("pipes between these workers stay unlinked: {e}");
        }
        let book = LoadBook {
            loads: Mutex::new(vec![WorkerLoad::default(); workers.len()]),
        };
        Self {
            workers,
            book: Arc::new(book),
        }
    }

    /// The workers, in order.
    pub fn workers(&self) -> &[Arc<WorkerHandle>] {
        &self.workers
    }

    /// The worker at `index`.
    pub fn worker(&self, index: usize) -> Option<&Arc<WorkerHandle>> {
        self.workers.get(index)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether the pool has no worker (only a pool built from an empty list).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Each worker's load as last counted and measured.
    pub fn loads(&self) -> Vec<WorkerLoad> {
        self.book.with(|loads| loads.clone())
    }

    /// Measures the transports and consumers each worker holds (one closure on each worker
    /// thread). A worker that does not answer is marked gone.
    pub async fn refresh_load(&self) {
        for (i, worker) in self.workers.iter().enumerate() {
            let measured = worker.call(|w, _| w.counts()).await;
            self.book.with(|loads| {
                if let Some(load) = loads.get_mut(i) {
                    match measured {
                        Ok((transports, _producers, consumers)) => {
                            load.transports = transports;
                            load.consumers = consumers;
                            load.gone = false;
                        }
                        Err(_) => load.gone = true,
                    }
                }
            });
        }
    }

    /// Places a new room on the worker of least cost by the book as it stands (see
    /// [`Self::place_room_measured`] to measure first). `None` only for an empty pool.
    pub fn place_room(&self) -> Option<RoomPlacement> {
        self.place_where(|_, _| true)
    }

    /// Places a room that has outgrown the workers it is on (`on`, pool indices) on one more:
    /// the one of least cost among the others. `None` when the room is on every worker.
    pub fn place_room_extension(&self, on: &[usize]) -> Option<RoomPlacement> {
        self.place_where(|i, load| !on.contains(&i) && !load.gone)
    }

    /// Counts a room on the worker of least cost among those `eligible` (the lowest index on
    /// a tie) and returns its placement.
    fn place_where(&self, eligible: impl Fn(usize, &WorkerLoad) -> bool) -> Option<RoomPlacement> {
        let index = self.book.with(|loads| {
            let (index, load) = loads
                .iter_mut()
                .enumerate()
                .filter(|(i, l)| eligible(*i, l))
                .min_by_key(|(i, l)| (l.cost(), *i))?;
            load.rooms += 1;
            Some(index)
        })?;
        let worker = self.workers.get(index)?.clone();
        Some(RoomPlacement {
            index,
            worker,
            book: self.book.clone(),
        })
    }

    /// Measures every worker, then places a new room on the least loaded.
    pub async fn place_room_measured(&self) -> Option<RoomPlacement> {
        self.refresh_load().await;
        self.place_room()
    }
}

fn too_many_ports(bind: SocketAddr, count: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{count} workers need {count} consecutive ports from {bind}"),
    )
}

/// A room's place on a worker. The room keeps it while it lives; dropping it takes the room
/// off the worker's load.
pub struct RoomPlacement {
    index: usize,
    worker: Arc<WorkerHandle>,
    book: Arc<LoadBook>,
}

impl std::fmt::Debug for RoomPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomPlacement")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl RoomPlacement {
    /// The worker's index in the pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The worker.
    pub fn worker(&self) -> &Arc<WorkerHandle> {
        &self.worker
    }
}

impl Drop for RoomPlacement {
    fn drop(&mut self) {
        self.book.with(|loads| {
            if let Some(load) = loads.get_mut(self.index) {
                load.rooms = load.rooms.saturating_sub(1);
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pool(count: usize) -> WorkerPool {
        WorkerPool::spawn(
            count,
            "127.0.0.1:0".parse().unwrap(),
            WorkerConfig::default(),
            UdpSocketConfig::default(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn each_worker_has_its_own_port_and_announces_it() {
        let config = WorkerConfig {
            announced_addresses: vec!["203.0.113.7:0".parse().unwrap()],
            ..Default::default()
        };
        let (pool, events) = WorkerPool::spawn(
            3,
            "127.0.0.1:0".parse().unwrap(),
            config,
            UdpSocketConfig::default(),
        )
        .unwrap();
        assert_eq!(events.len(), 3);
        let ports: Vec<u16> = pool
            .workers()
            .iter()
            .map(|w| w.local_addr().port())
            .collect();
        assert!(ports.iter().all(|&p| p != 0));
        assert_ne!(ports[0], ports[1]);
        assert_ne!(ports[1], ports[2]);
        for (w, port) in pool.workers().iter().zip(&ports) {
            let candidates = w
                .call_blocking(|w, now| {
                    let r = w.create_router();
                    w.create_webrtc_transport(now, r, Default::default())
                        .map(|info| info.candidates)
                })
                .unwrap()
                .unwrap();
            assert_eq!(
                candidates,
                vec![SocketAddr::from(([203, 0, 113, 7], *port))]
            );
        }
    }

    #[test]
    fn new_rooms_spread_and_closing_a_room_frees_its_share() {
        let pool = pool(3);
        let a = pool.place_room().unwrap();
        let b = pool.place_room().unwrap();
        let c = pool.place_room().unwrap();
        let mut used = [a.index(), b.index(), c.index()];
        used.sort_unstable();
        assert_eq!(used, [0, 1, 2], "one room per worker");
        let b_index = b.index();
        drop(b);
        assert_eq!(pool.loads()[b_index].rooms, 0);
        assert_eq!(
            pool.place_room().unwrap().index(),
            b_index,
            "the freed worker is next"
        );
    }

    #[test]
    fn an_outgrown_room_extends_to_the_least_loaded_worker_it_is_not_on() {
        let pool = pool(3);
        let busy = pool.place_room_extension(&[0, 2]).unwrap();
        assert_eq!(busy.index(), 1);
        let home = pool.place_room().unwrap();
        assert_eq!(home.index(), 0, "the least loaded (lowest index on a tie)");
        let extension = pool.place_room_extension(&[home.index()]).unwrap();
        assert_eq!(
            extension.index(),
            2,
            "not the room's own worker, nor the busier one"
        );
        assert_eq!(
            pool.loads()[2].rooms,
            1,
            "the extension counts on its worker"
        );
        assert!(
            pool.place_room_extension(&[0, 1, 2]).is_none(),
            "no worker left"
        );
        drop(extension);
        assert_eq!(pool.loads()[2].rooms, 0);
    }

    #[tokio::test]
    async fn measured_transports_and_consumers_steer_placement() {
        let pool = pool(2);
        // Load worker 0 with transports behind the pool's back (an embedder's own use).
        pool.workers()[0]
            .call(|w, now| {
                let r = w.create_router();
                for _ in 0..5 {
                    w.create_webrtc_transport(now, r, Default::default())
                        .unwrap();
                }
            })
            .await
            .unwrap();
        let first = pool.place_room_measured().await.unwrap();
        assert_eq!(first.index(), 1);
        assert_eq!(pool.loads()[0].transports, 5);
        // Worker 1 now costs 1 (a room), worker 0 costs 5: the next rooms go to 1 until even.
        let more: Vec<usize> = (0..4)
            .map(|_| pool.place_room().unwrap())
            .map(|p| {
                let i = p.index();
                std::mem::forget(p);
                i
            })
            .collect();
        assert_eq!(more, vec![1, 1, 1, 1]);
        assert_eq!(
            pool.place_room().unwrap().index(),
            0,
            "tie goes to the lower index"
        );
    }
}

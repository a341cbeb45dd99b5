//! The client side of a run, whatever started the SFU: publishers and subscribers over real
//! UDP sockets with real ICE, DTLS and SRTP, toward the transports a [`Plan`] lists.
//!
//! Owns the clients' handshakes, the paced send of synthetic RTP, the checked receive, the
//! live progress line, and the measurement window that the [`Report`] covers ([`drive`]).
//! Everything runs on one thread (a current-thread tokio runtime): one task per subscriber
//! socket drains it in batches (`recvmmsg`, GRO) through `quinn-udp`, one task paces every
//! publisher (GSO bursts). It must not know how the SFU was started or signalled: the
//! embedded mode (`crate::embedded`) and the signaling mode (`crate::signaling_mode`) make
//! the [`Plan`] and an [`SfuProbe`] that reads the SFU's CPU, memory and drops.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, IoSliceMut, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use sfu_core::SrtpProfile;
use sfu_core::rtp_packet::RtpHeader;
use sfu_core::srtp::{SrtpContext, SrtpError};
use sfu_core::twcc::TwccRecorder;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::client::{ClientIdentity, Handshake, IceCredentials, ServerTransport, Session};
use crate::config::{LoadConfig, RunError};
use crate::histogram::LatencyHistogram;
use crate::pacing::{SendSchedule, gso_batch};
use crate::payload;
use crate::proc_stats::{self, CpuTime};
use crate::report::{Report, UdpCounters, WorkerFigures};
use crate::stream_check::StreamCheck;

/// Largest datagram the SFU accepts; receive slots are this times the GRO segment count.
pub(crate) const MAX_DATAGRAM: usize = 1500;
/// RTP fixed header, no CSRC, no extension.
pub(crate) const RTP_HEADER: usize = 12;
/// Payload type of the synthetic VP8 video.
pub(crate) const VIDEO_PT: u8 = 96;
/// Socket buffers asked of the kernel (it may cap them at `net.core.{r,w}mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// Handshakes in flight at once: each costs the worker a few ms of CPU, and DTLS flights
/// retransmit after 100 ms, so a larger wave only retransmits more.
const HANDSHAKE_WAVE: usize = 32;
/// Longest time for every client to connect.
const CONNECT_DEADLINE: Duration = Duration::from_secs(120);
/// Consent checks (RFC 7675) toward the SFU, well inside its 30 s consent timeout.
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
/// Publisher pacing tick: each tick sends what the rate says is due, as one GSO burst per
/// publisher.
const PACING_TICK: Duration = Duration::from_millis(1);
/// How far a publisher may fall behind its schedule before it gives packets up (counted and
/// reported) instead of catching up: a longer catch-up burst would only overflow sockets.
const MAX_LAG: Duration = Duration::from_millis(50);
/// Transport-wide feedback interval of a congestion-controlled subscriber (Chrome's is
/// 50–100 ms).
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// Sender SSRCs of subscribers' RTCP (they send no media, so any SSRC of their own).
const FEEDBACK_SSRC_BASE: u32 = 0x5EED_0000;
/// After the window closes, how long to wait without progress for stragglers.
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// Longest drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// A client's socket, with the `quinn-udp` state that batches its I/O.
struct Endpoint {
    socket: UdpSocket,
    state: UdpSocketState,
    server: SocketAddr,
}

impl Endpoint {
    fn bind(server: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(server.ip(), 0))?;
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // Best effort: a refusal only means a smaller buffer.
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&socket), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size(UdpSockRef::from(&socket), SOCKET_BUFFER);
        Ok(Self {
            socket: UdpSocket::from_std(socket)?,
            state,
            server,
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends `contents` (one datagram, or `segment` sized GSO segments) to the server.
    fn try_send(&self, contents: &[u8], segment: Option<usize>) -> io::Result<()> {
        let transmit = Transmit {
            destination: self.server,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        self.socket.try_io(Interest::WRITABLE, || {
            self.state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
        })
    }
}

/// Receive slots shared by every task (only one drains at a time on this thread).
struct RecvSlots {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

impl RecvSlots {
    fn new(slot_len: usize) -> Self {
        Self {
            bufs: (0..quinn_udp::BATCH_SIZE)
                .map(|_| vec![0u8; slot_len])
                .collect(),
            meta: vec![RecvMeta::default(); quinn_udp::BATCH_SIZE],
        }
    }
}

/// State shared between the tasks of a run.
struct Shared {
    epoch: Instant,
    slots: RefCell<RecvSlots>,
    /// Per publisher (global index): the first counter of the measurement window
    /// (`u64::MAX` before it opens).
    window_start: Vec<Cell<u64>>,
    latency: RefCell<LatencyHistogram>,
    latency_last_second: RefCell<LatencyHistogram>,
    verify_every: u64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant `now_ns` stands for.
    fn at(&self, now_ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(now_ns)
    }
}

/// One subscriber's receive-side state.
struct Subscriber {
    srtp: SrtpContext,
    /// Consumer SSRC → (publisher global index, its stream check).
    streams: HashMap<u32, (u32, StreamCheck)>,
    /// SSRCs the SFU may send besides the media (RTX, probes): counted, not checked.
    side_ssrcs: Vec<u32>,
    /// Transport-wide congestion control, when the SFU negotiated it: the extension id and
    /// the arrivals not yet reported ([`feedback_loop`] reports them).
    twcc: Option<(u8, TwccRecorder)>,
    /// Packets without media: padding-only probes, RTX.
    padding: u64,
    datagrams: u64,
    rtp: u64,
    rtcp: u64,
    other: u64,
    bytes: u64,
    srtp_errors: u64,
    replayed: u64,
    unknown_ssrc: u64,
    foreign: u64,
    misrouted: u64,
    verified: u64,
    corrupt: u64,
}

impl Subscriber {
    fn on_datagram(&mut self, data: &mut [u8], now_ns: u64, shared: &Shared) {
        self.datagrams += 1;
        self.bytes += data.len() as u64;
        match data.first() {
            Some(128..=191) => {}
            _ => {
                // STUN answers to consent checks, a late DTLS retransmission.
                self.other += 1;
                return;
            }
        }
        if data.get(1).is_some_and(|pt| (192..=223).contains(pt)) {
            // Sender reports: authenticated, otherwise unused.
            match self.srtp.unprotect_rtcp(data) {
                Ok(_) => self.rtcp += 1,
                Err(_) => self.srtp_errors += 1,
            }
            return;
        }
        let Ok(header) = RtpHeader::parse(data) else {
            self.srtp_errors += 1;
            return;
        };
        let len = match self.srtp.unprotect_rtp(data, header.header_len) {
            Ok(len) => len,
            Err(SrtpError::Replayed) => {
                // The SRTP replay window catches a duplicate before the payload is read.
                self.replayed += 1;
                return;
            }
            Err(_) => {
                self.srtp_errors += 1;
                return;
            }
        };
        let Some(plain) = data.get(..len) else {
            self.srtp_errors += 1;
            return;
        };
        if let Some((id, recorder)) = self.twcc.as_mut()
            && let Some(seq) = header
                .extension(plain, *id)
                .and_then(|v| v.get(..2))
                .and_then(|v| <[u8; 2]>::try_from(v).ok())
        {
            recorder.record(u16::from_be_bytes(seq), shared.at(now_ns));
        }
        let Ok((start, end)) = header.payload_range(plain) else {
            self.srtp_errors += 1;
            return;
        };
        let Some(body) = plain.get(start..end) else {
            self.srtp_errors += 1;
            return;
        };
        if body.is_empty() || self.side_ssrcs.contains(&header.ssrc) {
            // Bandwidth probes and retransmissions: not part of the streams checked.
            self.padding += 1;
            return;
        }
        self.rtp += 1;
        let Some((expected_publisher, check)) = self.streams.get_mut(&header.ssrc) else {
            self.unknown_ssrc += 1;
            return;
        };
        let info = if self.rtp.is_multiple_of(shared.verify_every) {
            self.verified += 1;
            match payload::verify(body) {
                Ok(i) => i,
                Err(payload::PayloadError::Corrupt) => {
                    self.corrupt += 1;
                    return;
                }
                Err(payload::PayloadError::Foreign) => {
                    self.foreign += 1;
                    return;
                }
            }
        } else {
            match payload::read(body) {
                Ok(i) => i,
                Err(_) => {
                    self.foreign += 1;
                    return;
                }
            }
        };
        if info.publisher != *expected_publisher {
            self.misrouted += 1;
            return;
        }
        let window = shared
            .window_start
            .get(info.publisher as usize)
            .map_or(u64::MAX, Cell::get);
        let in_window = info.counter >= window;
        if check.on_packet(info.counter, header.sequence_number, in_window) && in_window {
            let us = now_ns.saturating_sub(info.sent_ns) / 1000;
            shared.latency.borrow_mut().record(us);
            shared.latency_last_second.borrow_mut().record(us);
        }
    }
}

/// Drains `endpoint` until it would block, handing each datagram to `on_datagram`.
/// Datagrams are split by the GRO stride: the kernel may coalesce a burst from one source.
fn drain(
    endpoint: &Endpoint,
    slots: &mut RecvSlots,
    now_ns: impl Fn() -> u64,
    mut on_datagram: impl FnMut(&mut [u8], u64),
) -> io::Result<()> {
    let RecvSlots { bufs, meta } = slots;
    loop {
        let mut slices: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(&mut []));
        for (s, b) in slices.iter_mut().zip(bufs.iter_mut()) {
            *s = IoSliceMut::new(b);
        }
        let n = match endpoint.socket.try_io(Interest::READABLE, || {
            endpoint
                .state
                .recv(UdpSockRef::from(&endpoint.socket), &mut slices, meta)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // ICMP errors surface on receive; the socket keeps working.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let now_ns = now_ns();
        for (m, b) in meta.iter().zip(bufs.iter_mut()).take(n) {
            let stride = m.stride.max(1);
            let Some(received) = b.get_mut(..m.len) else {
                continue;
            };
            for datagram in received.chunks_mut(stride) {
                on_datagram(datagram, now_ns);
            }
        }
    }
}

/// One publisher's send-side state.
struct Publisher {
    endpoint: Rc<Endpoint>,
    srtp: SrtpContext,
    index: u32,
    ssrc: u32,
    /// What the rate says is due, what was built and what was given up.
    schedule: SendSchedule,
    /// Counter of the next packet to build: every counter below it was built exactly once.
    next_counter: u64,
    sent: u64,
    bytes: u64,
    /// Built, protected datagrams the socket did not take yet (it was full), in counter
    /// order: they go before any new packet, so what reaches the wire stays consecutive.
    pending: Vec<u8>,
    /// Datagrams at the front of `pending` already sent.
    pending_sent: usize,
    /// Where one packet is built before it joins `pending` (reused: no allocation per packet).
    scratch: Vec<u8>,
    /// Packets built but refused by the socket with an error (never on the wire).
    unsent: u64,
    unsent_in_window: u64,
}

impl Publisher {
    fn new(endpoint: Rc<Endpoint>, srtp: SrtpContext, index: u32, ssrc: u32, rate: f64) -> Self {
        Self {
            endpoint,
            srtp,
            index,
            ssrc,
            schedule: SendSchedule::new(rate, MAX_LAG),
            next_counter: 0,
            sent: 0,
            bytes: 0,
            pending: Vec::new(),
            pending_sent: 0,
            scratch: Vec::with_capacity(MAX_DATAGRAM),
            unsent: 0,
            unsent_in_window: 0,
        }
    }

    /// Datagrams built but not yet on the wire.
    fn pending_count(&self, datagram: usize) -> u64 {
        (self.pending.len() / datagram.max(1)).saturating_sub(self.pending_sent) as u64
    }

    /// Counter of the first packet not yet on the wire.
    fn first_unsent(&self, datagram: usize) -> u64 {
        self.next_counter - self.pending_count(datagram)
    }

    /// Sends what the schedule says is due by `elapsed`: first what the socket refused
    /// last time, then new packets in GSO bursts. Stops when the socket is full (what it
    /// did not take waits in `pending`).
    fn pump(&mut self, elapsed: Duration, packet_size: usize, shared: &Shared) {
        let datagram = RTP_HEADER + packet_size + self.srtp.profile().rtp_tag_len();
        if !self.flush(datagram, shared) {
            // The socket is still full: nothing new is built, but what has fallen more than
            // the allowed lag behind is given up now, so the schedule keeps accounting for
            // every offered packet however long the socket stays full.
            self.schedule.owed(elapsed);
            return;
        }
        let mut owed = self.schedule.owed(elapsed);
        while owed > 0 {
            let batch = gso_batch(datagram, self.endpoint.state.max_gso_segments());
            let n = owed.min(batch as u64);
            self.build(n, packet_size, shared);
            owed -= n;
            if !self.flush(datagram, shared) {
                return;
            }
        }
    }

    /// Builds and protects `count` packets into `pending`, taking consecutive counters.
    fn build(&mut self, count: u64, packet_size: usize, shared: &Shared) {
        let packet = &mut self.scratch;
        for _ in 0..count {
            let counter = self.next_counter;
            let seq = counter as u16;
            let roc = (counter >> 16) as u32;
            packet.clear();
            packet.push(0x80);
            // A video frame is five packets; the marker ends it.
            packet.push(if counter % 5 == 4 {
                0x80 | VIDEO_PT
            } else {
                VIDEO_PT
            });
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&((counter / 5 * 3000) as u32).to_be_bytes());
            packet.extend_from_slice(&self.ssrc.to_be_bytes());
            packet.resize(RTP_HEADER + packet_size, 0);
            if let Some(body) = packet.get_mut(RTP_HEADER..) {
                payload::write(body, self.index, counter, shared.now_ns());
            }
            if self.srtp.protect_rtp(packet, RTP_HEADER, roc).is_err() {
                // Cannot happen for a well-formed packet; the counter is not taken, so the
                // stream on the wire has no gap.
                return;
            }
            self.pending.extend_from_slice(packet);
            self.next_counter += 1;
            self.schedule.built(1);
        }
    }

    /// Sends `pending` in GSO bursts. False when the socket was full (the rest stays).
    fn flush(&mut self, datagram: usize, shared: &Shared) -> bool {
        let total = self.pending.len() / datagram.max(1);
        while self.pending_sent < total {
            let segments = self.endpoint.state.max_gso_segments();
            let n = gso_batch(datagram, segments).min(total - self.pending_sent);
            let from = self.pending_sent * datagram;
            let Some(burst) = self.pending.get(from..from + n * datagram) else {
                break;
            };
            let result = self.endpoint.try_send(burst, (n > 1).then_some(datagram));
            match result {
                Ok(()) => {
                    self.sent += n as u64;
                    self.bytes += (n * datagram) as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    // Lost on our side, and said so: not expected at the subscribers.
                    self.unsent += n as u64;
                    let window = shared
                        .window_start
                        .get(self.index as usize)
                        .map_or(u64::MAX, Cell::get);
                    let first = self.next_counter - (total - self.pending_sent) as u64;
                    let in_window = (first..first + n as u64).filter(|c| *c >= window).count();
                    self.unsent_in_window += in_window as u64;
                }
            }
            self.pending_sent += n;
        }
        self.pending.clear();
        self.pending_sent = 0;
        true
    }
}

/// Runs the ICE + DTLS handshake of one client over its socket.
async fn connect(
    endpoint: &Endpoint,
    slots: &RefCell<RecvSlots>,
    server: &ServerTransport,
    identity: ClientIdentity,
    profile: SrtpProfile,
    seed: u64,
) -> Result<Session, String> {
    let local = endpoint.local_addr().map_err(|e| e.to_string())?;
    let mut hs = Handshake::start(Instant::now(), local, server, identity, vec![profile], seed)
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        while let Some(d) = hs.poll_datagram() {
            // A lost flight is retransmitted by the handshake's own timers.
            let _ = endpoint.socket.send_to(&d, hs.server()).await;
        }
        if let Some(reason) = hs.failure() {
            return Err(reason.to_owned());
        }
        if hs.is_done() {
            return hs.into_session().map_err(|_| "not done".to_owned());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err("timed out".into());
        }
        let wake = hs.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = endpoint.socket.readable() => {
                r.map_err(|e| e.to_string())?;
                let mut slots = slots.borrow_mut();
                drain(endpoint, &mut slots, || 0, |d, _| hs.handle_datagram(Instant::now(), d))
                    .map_err(|e| e.to_string())?;
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                hs.handle_timeout(Instant::now());
            }
        }
    }
}

/// Connects clients in waves of [`HANDSHAKE_WAVE`].
async fn connect_all(
    clients: &[(Rc<Endpoint>, ServerTransport, u64)],
    identity: &ClientIdentity,
    profile: SrtpProfile,
) -> Result<Vec<Session>, RunError> {
    let mut sessions = Vec::with_capacity(clients.len());
    let mut failures = Vec::new();
    // One set of receive slots for every handshake: a set per client would be megabytes each
    // (GRO-sized slots), and the allocator keeps what it once held, inflating RSS.
    let gro = clients
        .first()
        .map_or(1, |(e, _, _)| e.state.gro_segments())
        .max(1);
    let slots = Rc::new(RefCell::new(RecvSlots::new(MAX_DATAGRAM * gro)));
    for wave in clients.chunks(HANDSHAKE_WAVE) {
        let mut tasks = Vec::with_capacity(wave.len());
        for (endpoint, info, seed) in wave {
            let (endpoint, info, identity) = (endpoint.clone(), info.clone(), identity.clone());
            let slots = slots.clone();
            let seed = *seed;
            tasks.push(tokio::task::spawn_local(async move {
                connect(&endpoint, &slots, &info, identity, profile, seed).await
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => sessions.push(s),
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    if let Some(first) = failures.first() {
        return Err(RunError::Connect {
            failed: failures.len(),
            total: clients.len(),
            first: first.clone(),
        });
    }
    Ok(sessions)
}

/// Sends a consent check from every client every [`CONSENT_INTERVAL`].
async fn consent_loop(clients: Vec<(Rc<Endpoint>, IceCredentials)>) {
    let mut clients = clients;
    let mut out = Vec::with_capacity(128);
    loop {
        tokio::time::sleep(CONSENT_INTERVAL).await;
        for (endpoint, ice) in &mut clients {
            if ice.write_check(&mut out).is_ok() {
                let _ = endpoint.try_send(&out, None);
            }
        }
    }
}

/// Sends each congestion-controlled subscriber's transport-wide feedback every
/// [`FEEDBACK_INTERVAL`], as a browser does, so the SFU's estimate of its bandwidth follows
/// what it actually receives (without it the SFU would hold every subscriber at its initial
/// estimate).
async fn feedback_loop(clients: Vec<(Rc<Endpoint>, Rc<RefCell<Subscriber>>, SrtpContext)>) {
    let mut clients = clients;
    let mut compound = Vec::with_capacity(4 * MAX_DATAGRAM);
    let mut packet = Vec::with_capacity(MAX_DATAGRAM);
    let mut ticker = tokio::time::interval(FEEDBACK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        for (i, (endpoint, subscriber, srtp)) in clients.iter_mut().enumerate() {
            compound.clear();
            {
                let mut sub = subscriber.borrow_mut();
                let Some((_, recorder)) = sub.twcc.as_mut() else {
                    continue;
                };
                let sender_ssrc = FEEDBACK_SSRC_BASE.wrapping_add(i as u32);
                if !recorder.build_feedback(now, sender_ssrc, 0, &mut compound) {
                    continue;
                }
            }
            // One feedback packet per datagram: each fits an MTU on its own.
            for fb in sfu_core::twcc::feedback_packets(&compound) {
                packet.clear();
                packet.extend_from_slice(fb);
                if srtp.protect_rtcp(&mut packet).is_ok() {
                    let _ = endpoint.try_send(&packet, None);
                }
            }
        }
    }
}

/// Receives on a subscriber socket until aborted.
async fn subscriber_loop(
    endpoint: Rc<Endpoint>,
    subscriber: Rc<RefCell<Subscriber>>,
    shared: Rc<Shared>,
    pacer: Rc<RefCell<Option<Rc<Pacer>>>>,
) {
    loop {
        if endpoint.socket.readable().await.is_err() {
            return;
        }
        {
            let mut sub = subscriber.borrow_mut();
            let mut slots = shared.slots.borrow_mut();
            let now_ns = || shared.now_ns();
            if drain(&endpoint, &mut slots, now_ns, |d, now| {
                sub.on_datagram(d, now, &shared)
            })
            .is_err()
            {
                return;
            }
        }
        let pacer = pacer.borrow().clone();
        if let Some(pacer) = pacer {
            pacer.pump_if_due();
        }
    }
}

/// Receives (and counts) what publishers get back: receiver reports, NACKs, PLIs, STUN.
async fn publisher_receive_loop(
    endpoint: Rc<Endpoint>,
    received: Rc<Cell<u64>>,
    shared: Rc<Shared>,
) {
    loop {
        if endpoint.socket.readable().await.is_err() {
            return;
        }
        let mut slots = shared.slots.borrow_mut();
        if drain(
            &endpoint,
            &mut slots,
            || 0,
            |_, _| received.set(received.get() + 1),
        )
        .is_err()
        {
            return;
        }
    }
}

/// Sends for every publisher what its schedule says is due, at the rate `rate` holds
/// (changed by the caller, e.g. after a ramp-up). Called each pacing tick and, since timer
/// ticks come late while this one thread is busy receiving, also by the subscriber tasks
/// between their receives: otherwise a late tick let a publisher owe tens of packets and send
/// them as one burst, which is not what a browser's paced sender does and which the SFU's
/// latency then measured.
struct Pacer {
    publishers: Rc<RefCell<Vec<Publisher>>>,
    packet_size: usize,
    shared: Rc<Shared>,
    rate: Rc<Cell<f64>>,
    /// Cleared when the window closes: nothing is sent after it.
    running: Rc<Cell<bool>>,
    start: Instant,
    last: Cell<Instant>,
}

impl Pacer {
    /// From the subscriber tasks: once a pacing tick has passed, as the tick would if it were
    /// on time.
    const MIN_INTERVAL: Duration = PACING_TICK;

    fn pump(&self) {
        if !self.running.get() {
            return;
        }
        let Ok(mut publishers) = self.publishers.try_borrow_mut() else {
            return;
        };
        let now = Instant::now();
        self.last.set(now);
        let elapsed = now.saturating_duration_since(self.start);
        for p in publishers.iter_mut() {
            if p.schedule.rate() != self.rate.get() {
                p.schedule.set_rate(self.rate.get(), elapsed, MAX_LAG);
            }
            p.pump(elapsed, self.packet_size, &self.shared);
        }
    }

    fn pump_if_due(&self) {
        if tick_passed(self.last.get(), Instant::now()) {
            self.pump();
        }
    }
}

/// Whether a pacing tick has passed since `last`: then the subscriber tasks pump the
/// publishers themselves.
fn tick_passed(last: Instant, now: Instant) -> bool {
    now.saturating_duration_since(last) >= Pacer::MIN_INTERVAL
}

/// Paces every publisher each tick (see [`Pacer`]).
async fn sender_loop(pacer: Rc<Pacer>) {
    let mut ticker = tokio::time::interval(PACING_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while pacer.running.get() {
        ticker.tick().await;
        pacer.pump();
    }
}

#[derive(Default, Clone, Copy)]
struct Totals {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
}

fn totals(publishers: &[Publisher], subscribers: &[Rc<RefCell<Subscriber>>]) -> Totals {
    let mut t = Totals::default();
    for p in publishers {
        t.sent += p.sent;
        t.sent_bytes += p.bytes;
    }
    for s in subscribers {
        let s = s.borrow();
        t.received += s.rtp;
        t.received_bytes += s.bytes;
    }
    t
}

/// Packets missing so far: per stream, the gap between what arrived and the highest counter.
fn live_loss(subscribers: &[Rc<RefCell<Subscriber>>]) -> u64 {
    let mut lost = 0;
    for s in subscribers {
        for (_, check) in s.borrow().streams.values() {
            if let (Some(first), Some(high)) = (check.first, check.highest()) {
                lost += (high - first + 1).saturating_sub(check.received);
            }
        }
    }
    lost
}

/// One publisher as set up on the SFU: where it sends and the SSRC it signalled.
#[derive(Debug, Clone)]
pub(crate) struct PublisherPlan {
    pub transport: ServerTransport,
    pub ssrc: u32,
    /// The client's handshake seed (its ICE ufrag is `Handshake::local_ufrag(seed)`).
    pub seed: u64,
}

/// One subscriber as set up on the SFU.
#[derive(Debug, Clone)]
pub(crate) struct SubscriberPlan {
    pub transport: ServerTransport,
    /// Per stream: the consumer's SSRC and the index (in [`Plan::publishers`]) of the
    /// publisher it forwards.
    pub streams: Vec<(u32, u32)>,
    /// Which of the SFU's workers serves it (index into what [`SfuProbe::cpu`] returns).
    pub worker: usize,
    pub seed: u64,
    /// SSRCs the SFU may also send (RTX): not checked as media.
    pub side_ssrcs: Vec<u32>,
    /// The transport-wide sequence number extension id, when the SFU congestion-controls
    /// this subscriber: it then gets transport-wide feedback, as from a browser.
    pub transport_cc: Option<u8>,
}

/// Everything the SFU was told, by whichever signaling: what the clients must now do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub publishers: Vec<PublisherPlan>,
    pub subscribers: Vec<SubscriberPlan>,
}

/// What the load generator can learn about the SFU it loads, however it runs.
pub(crate) trait SfuProbe {
    /// CPU time so far of each worker (one entry when only the whole process is known),
    /// with a label saying what was measured.
    fn cpu(&self) -> Vec<(String, CpuTime)>;
    /// The SFU's resident memory now, bytes (0 if unknown).
    fn rss(&self) -> u64;
    /// The SFU's drop counters (since the run began) and its consumers now.
    async fn counters(&self) -> Result<SfuCounters, RunError>;
    /// Its residence-time histogram so far (how long packets stayed inside it), when it can
    /// be read (only in-process workers expose it).
    fn residence(&self) -> Option<sfu_core::residence_time::ResidenceHistogram> {
        None
    }
}

/// What an SFU counts, read at the end of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct SfuCounters {
    /// Drops by reason.
    pub drops: Vec<(String, u64)>,
    /// Consumers it holds.
    pub consumers: usize,
    /// Consumers its congestion control paused (their subscriber's estimated bandwidth does
    /// not fit the stream).
    pub congestion_paused: usize,
}

/// What was measured before the clients connected.
pub(crate) struct Before {
    /// When the SFU-side setup began (rooms, transports): `setup_s` runs from here.
    pub setup_started: Instant,
    /// RSS before the SFU started (0 when it is another process).
    pub rss_start: u64,
    /// RSS of the SFU with nothing set up.
    pub rss_bare: u64,
    /// Where threads run, for the report.
    pub pinning: String,
    /// The load generator's own thread (its CPU time is reported apart).
    pub own_tid: Option<u32>,
    /// Shown in the report: `embedded` or `signaling`.
    pub mode: &'static str,
    /// Publishers first send at this rate for this long, then the warm-up starts at the
    /// configured rate (an SFU that congestion-controls subscribers must first find their
    /// bandwidth).
    pub ramp: Option<(f64, Duration)>,
}

/// Connects every client of `plan`, runs the traffic (warm-up, window, drain) and reports.
/// The caller has set up the SFU side and keeps it (and any signaling connection) alive.
pub(crate) async fn drive(
    config: &LoadConfig,
    plan: Plan,
    identity: &ClientIdentity,
    probe: &impl SfuProbe,
    before: Before,
) -> Result<Report, RunError> {
    let own_tid = before.own_tid;
    let mut pub_clients = Vec::with_capacity(plan.publishers.len());
    for p in &plan.publishers {
        pub_clients.push((
            Rc::new(Endpoint::bind(p.transport.address)?),
            p.transport.clone(),
            p.seed,
        ));
    }
    let mut sub_clients = Vec::with_capacity(plan.subscribers.len());
    for s in &plan.subscribers {
        sub_clients.push((
            Rc::new(Endpoint::bind(s.transport.address)?),
            s.transport.clone(),
            s.seed,
        ));
    }
    let pub_sessions = connect_all(&pub_clients, identity, config.srtp_profile).await?;
    let sub_sessions = connect_all(&sub_clients, identity, config.srtp_profile).await?;
    let setup_time = before.setup_started.elapsed();

    let gro = pub_clients
        .first()
        .map_or(1, |(e, _, _)| e.state.gro_segments())
        .max(1);
    let gso = pub_clients
        .first()
        .is_some_and(|(e, _, _)| e.state.max_gso_segments() > 1);
    let shared = Rc::new(Shared {
        epoch: Instant::now(),
        slots: RefCell::new(RecvSlots::new(MAX_DATAGRAM * gro)),
        window_start: (0..pub_clients.len())
            .map(|_| Cell::new(u64::MAX))
            .collect(),
        latency: RefCell::new(LatencyHistogram::new()),
        latency_last_second: RefCell::new(LatencyHistogram::new()),
        verify_every: config.verify_every.max(1),
    });

    let mut consent = Vec::new();
    let mut tasks = Vec::new();
    // Filled once the publishers exist; the subscriber tasks pace them between receives.
    let pacer_slot: Rc<RefCell<Option<Rc<Pacer>>>> = Rc::new(RefCell::new(None));
    let mut publishers = Vec::with_capacity(pub_clients.len());
    let publisher_feedback = Rc::new(Cell::new(0u64));
    for (i, ((endpoint, _, _), session)) in pub_clients.iter().zip(pub_sessions).enumerate() {
        consent.push((endpoint.clone(), session.ice));
        publishers.push(Publisher::new(
            endpoint.clone(),
            session.srtp_out,
            i as u32,
            plan.publishers.get(i).map_or(0, |p| p.ssrc),
            config.packet_rate,
        ));
        tasks.push(tokio::task::spawn_local(publisher_receive_loop(
            endpoint.clone(),
            publisher_feedback.clone(),
            shared.clone(),
        )));
    }
    let mut subscribers = Vec::with_capacity(sub_clients.len());
    let mut feedback = Vec::new();
    for (((endpoint, _, _), session), sub_plan) in
        sub_clients.iter().zip(sub_sessions).zip(&plan.subscribers)
    {
        consent.push((endpoint.clone(), session.ice));
        let streams = sub_plan
            .streams
            .iter()
            .map(|&(ssrc, publisher)| (ssrc, (publisher, StreamCheck::new())))
            .collect();
        if sub_plan.transport_cc.is_some() {
            feedback.push((endpoint.clone(), subscribers.len(), session.srtp_out));
        }
        let sub = Rc::new(RefCell::new(Subscriber {
            srtp: session.srtp_in,
            streams,
            side_ssrcs: sub_plan.side_ssrcs.clone(),
            twcc: sub_plan.transport_cc.map(|id| (id, TwccRecorder::new())),
            padding: 0,
            datagrams: 0,
            rtp: 0,
            rtcp: 0,
            other: 0,
            bytes: 0,
            srtp_errors: 0,
            replayed: 0,
            unknown_ssrc: 0,
            foreign: 0,
            misrouted: 0,
            verified: 0,
            corrupt: 0,
        }));
        subscribers.push(sub.clone());
        tasks.push(tokio::task::spawn_local(subscriber_loop(
            endpoint.clone(),
            sub,
            shared.clone(),
            pacer_slot.clone(),
        )));
    }
    tasks.push(tokio::task::spawn_local(consent_loop(consent)));
    if !feedback.is_empty() {
        let feedback = feedback
            .into_iter()
            .filter_map(|(e, i, srtp)| Some((e, subscribers.get(i)?.clone(), srtp)))
            .collect();
        tasks.push(tokio::task::spawn_local(feedback_loop(feedback)));
    }

    let publishers = Rc::new(RefCell::new(publishers));
    let running = Rc::new(Cell::new(true));
    let rate = Rc::new(Cell::new(
        before.ramp.map_or(config.packet_rate, |(r, _)| r),
    ));
    let pacer = Rc::new(Pacer {
        publishers: publishers.clone(),
        packet_size: config.packet_size,
        shared: shared.clone(),
        rate: rate.clone(),
        running: running.clone(),
        start: Instant::now(),
        last: Cell::new(Instant::now()),
    });
    *pacer_slot.borrow_mut() = Some(pacer.clone());
    let sender = tokio::task::spawn_local(sender_loop(pacer));
    if let Some((_, length)) = before.ramp {
        progress_phase(
            config,
            "ramp-up",
            length,
            &publishers,
            &subscribers,
            &shared,
        )
        .await;
        rate.set(config.packet_rate);
    }

    let offered = config.offered_out_rate();
    let datagram_len = RTP_HEADER + config.packet_size + config.srtp_profile.rtp_tag_len();
    // Warm-up, then the window opens: from here on packets count.
    progress_phase(
        config,
        "warm-up",
        config.warmup,
        &publishers,
        &subscribers,
        &shared,
    )
    .await;
    for (p, start) in publishers.borrow().iter().zip(&shared.window_start) {
        start.set(p.next_counter);
    }
    let given_up_before: u64 = publishers
        .borrow()
        .iter()
        .map(|p| p.schedule.given_up)
        .sum();
    shared.latency.borrow_mut().clear();
    let base = totals(&publishers.borrow(), &subscribers);
    let udp_before = UdpCounters::read();
    let sfu_cpu_before = probe.cpu();
    let residence_before = probe.residence();
    let own_cpu_before = own_tid.and_then(proc_stats::thread_cpu).unwrap_or_default();
    let window_opened = Instant::now();
    progress_phase(
        config,
        "measuring",
        config.duration,
        &publishers,
        &subscribers,
        &shared,
    )
    .await;
    // The window is the time packets were offered: it ends when sending stops, not when the
    // sender task next gets to run and notices (on a busy thread that can be 100+ ms later,
    // which counted as offered time in which nothing could be sent).
    running.set(false);
    let window = window_opened.elapsed();
    let _ = sender.await;
    let sent_end = totals(&publishers.borrow(), &subscribers);
    let sfu_cpu_sending = cpu_since(&probe.cpu(), &sfu_cpu_before);
    let residence = probe
        .residence()
        .zip(residence_before)
        .map(|(after, before)| after.since(&before));
    // Packets still waiting in a full socket's queue at the end never go out: the window
    // ends at the first of them.
    let window_end: Vec<u64> = publishers
        .borrow()
        .iter()
        .map(|p| p.first_unsent(datagram_len))
        .collect();
    let given_up: u64 = publishers
        .borrow()
        .iter()
        .map(|p| p.schedule.given_up)
        .sum::<u64>()
        - given_up_before;

    // Drain: wait for stragglers until quiet.
    let drain_started = Instant::now();
    let mut last = totals(&publishers.borrow(), &subscribers).received;
    let mut quiet_since = Instant::now();
    while drain_started.elapsed() < DRAIN_LIMIT && quiet_since.elapsed() < DRAIN_QUIET {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = totals(&publishers.borrow(), &subscribers).received;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let sfu_cpu = cpu_since(&probe.cpu(), &sfu_cpu_before);
    let own_cpu = own_tid
        .and_then(proc_stats::thread_cpu)
        .unwrap_or_default()
        .since(&own_cpu_before);
    let udp_after = UdpCounters::read();
    let rss_end = probe.rss();
    let SfuCounters {
        drops: sfu_drops,
        consumers: sfu_consumers,
        congestion_paused,
    } = probe.counters().await?;
    for t in &tasks {
        t.abort();
    }

    let publishers = publishers.borrow();
    let mut expected = 0u64;
    let mut received = 0u64;
    let mut per_worker = vec![0u64; sfu_cpu.len().max(1)];
    let mut report = Report::default();
    for (s, sub_plan) in subscribers.iter().zip(&plan.subscribers) {
        let s = s.borrow();
        for (publisher, check) in s.streams.values() {
            let p = *publisher as usize;
            let (Some(start), Some(end), Some(unsent)) = (
                shared.window_start.get(p).map(Cell::get),
                window_end.get(p),
                publishers.get(p).map(|p| p.unsent_in_window),
            ) else {
                continue;
            };
            expected += end.saturating_sub(start).saturating_sub(unsent);
            received += check.received_in_window;
            if let Some(w) = per_worker.get_mut(sub_plan.worker) {
                *w += check.received_in_window;
            }
            report.duplicates += check.duplicates;
            report.reordered += check.reordered + check.too_late;
            report.sequence_mismatches += check.sequence_mismatches;
        }
        report.duplicates += s.replayed;
        report.srtp_errors += s.srtp_errors;
        report.unknown_ssrc += s.unknown_ssrc;
        report.foreign_payloads += s.foreign;
        report.misrouted += s.misrouted;
        report.payloads_verified += s.verified;
        report.payloads_corrupt += s.corrupt;
        report.rtcp_received += s.rtcp;
    }
    let secs = window.as_secs_f64();
    let datagram = datagram_len as f64;
    let sent = sent_end.sent - base.sent;
    let sfu_total = sfu_cpu
        .iter()
        .fold(CpuTime::default(), |sum, (_, t)| sum.plus(t));
    let sending_total = sfu_cpu_sending
        .iter()
        .fold(CpuTime::default(), |sum, (_, t)| sum.plus(t));
    report.mode = before.mode.to_owned();
    report.rooms = config.rooms;
    report.publishers = config.rooms * config.publishers;
    report.subscribers = config.rooms * config.subscribers;
    report.consumers = sfu_consumers;
    report.packet_size = config.packet_size;
    report.srtp_profile = match (config.srtp_profile, before.mode) {
        // Embedded, the SFU's SRTP runs in this process: say which AES-GCM code it used.
        (SrtpProfile::AeadAes128Gcm, "embedded") => format!(
            "{:?} ({})",
            config.srtp_profile,
            sfu_gcm::implementation_for_new_keys().name()
        ),
        (profile, _) => format!("{profile:?}"),
    };
    report.rate_per_publisher = config.packet_rate;
    report.offered_out_pps = offered;
    report.window_s = secs;
    report.setup_s = setup_time.as_secs_f64();
    report.packets_in = sent;
    report.in_pps = sent as f64 / secs;
    report.in_mbps = sent as f64 * datagram * 8.0 / secs / 1e6;
    report.expected_out = expected;
    report.packets_out = received;
    report.out_pps = received as f64 / secs;
    report.out_mbps = received as f64 * datagram * 8.0 / secs / 1e6;
    report.lost = expected.saturating_sub(received);
    report.loss_pct = if expected == 0 {
        0.0
    } else {
        report.lost as f64 * 100.0 / expected as f64
    };
    report.unsent = publishers.iter().map(|p| p.unsent).sum();
    report.given_up = given_up;
    report.offered_in_pps = config.packet_rate * publishers.len() as f64;
    let latency = shared.latency.borrow();
    report.latency_samples = latency.count();
    report.latency_p50_us = latency.percentile(50.0);
    report.latency_p99_us = latency.percentile(99.0);
    report.latency_p999_us = latency.percentile(99.9);
    report.latency_max_us = latency.max();
    report.latency_mean_us = latency.mean();
    drop(latency);
    if let Some(r) = residence.filter(|r| r.count() > 0) {
        let us = |q: f64| r.quantile(q).map(|d| d.as_micros() as u64);
        report.sfu_residence_p50_us = us(0.5);
        report.sfu_residence_p99_us = us(0.99);
        report.sfu_residence_p999_us = us(0.999);
    }
    report.sfu_cpu_user_s = sfu_total.user.as_secs_f64();
    report.sfu_cpu_sys_s = sfu_total.system.as_secs_f64();
    report.sfu_cpu_s = sfu_total.total().as_secs_f64();
    report.sfu_cpu_util = sending_total.total().as_secs_f64() / secs;
    report.forwarded_per_cpu_s = per_cpu_second(received, report.sfu_cpu_s);
    report.workers = sfu_cpu
        .iter()
        .zip(&per_worker)
        .enumerate()
        .map(|(index, ((label, cpu), &packets_out))| {
            let cpu_s = cpu.total().as_secs_f64();
            WorkerFigures {
                index,
                label: label.clone(),
                packets_out,
                cpu_s,
                forwarded_per_cpu_s: per_cpu_second(packets_out, cpu_s),
            }
        })
        .collect();
    report.loadgen_cpu_s = own_cpu.total().as_secs_f64();
    report.rss_bytes = rss_end;
    report.rss_start_bytes = before.rss_start;
    report.rss_worker_bytes = before.rss_bare;
    report.rss_per_consumer_bytes = if sfu_consumers == 0 {
        0
    } else {
        rss_end.saturating_sub(before.rss_bare) / sfu_consumers as u64
    };
    report.sfu_drops = sfu_drops;
    report.consumers_congestion_paused = congestion_paused;
    report.sfu_workers = config.workers;
    report.publisher_feedback = publisher_feedback.get();
    report.udp = udp_after.since(&udp_before);
    report.pinning = before.pinning;
    report.gso = gso;
    report.gro_segments = gro;
    report.check_offered_rate();
    Ok(report)
}

/// Packets per second of CPU time (0 without CPU time).
fn per_cpu_second(packets: u64, cpu_s: f64) -> f64 {
    if cpu_s > 0.0 {
        packets as f64 / cpu_s
    } else {
        0.0
    }
}

/// Each labelled CPU time minus the same label's earlier value.
fn cpu_since(now: &[(String, CpuTime)], earlier: &[(String, CpuTime)]) -> Vec<(String, CpuTime)> {
    now.iter()
        .map(|(label, t)| {
            let before = earlier
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, t)| *t)
                .unwrap_or_default();
            (label.clone(), t.since(&before))
        })
        .collect()
}

/// Waits `length`, printing a progress line each second when asked.
async fn progress_phase(
    config: &LoadConfig,
    phase: &str,
    length: Duration,
    publishers: &Rc<RefCell<Vec<Publisher>>>,
    subscribers: &[Rc<RefCell<Subscriber>>],
    shared: &Shared,
) {
    let started = Instant::now();
    let mut last = totals(&publishers.borrow(), subscribers);
    let mut last_at = Instant::now();
    while started.elapsed() < length {
        let step = (length - started.elapsed()).min(Duration::from_secs(1));
        tokio::time::sleep(step).await;
        if !config.progress {
            continue;
        }
        let now = totals(&publishers.borrow(), subscribers);
        let dt = last_at.elapsed().as_secs_f64().max(1e-9);
        let mut second = shared.latency_last_second.borrow_mut();
        let line = format!(
            "[{phase:>9} {:>5.1}s] in {:>9.0} pkt/s {:>7.1} Mbit/s | out {:>9.0} pkt/s {:>7.1} Mbit/s | missing {:>7} | p99 {:>6} µs",
            started.elapsed().as_secs_f64(),
            (now.sent - last.sent) as f64 / dt,
            (now.sent_bytes - last.sent_bytes) as f64 * 8.0 / dt / 1e6,
            (now.received - last.received) as f64 / dt,
            (now.received_bytes - last.received_bytes) as f64 * 8.0 / dt / 1e6,
            live_loss(subscribers),
            second.percentile(99.0),
        );
        second.clear();
        let _ = writeln!(io::stderr(), "{line}");
        last = now;
        last_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_tick_is_made_up_by_the_receive_tasks_once_a_tick_has_passed() {
        let last = Instant::now();
        assert!(!tick_passed(last, last));
        assert!(!tick_passed(last, last + PACING_TICK / 2));
        assert!(tick_passed(last, last + PACING_TICK));
        assert!(tick_passed(last, last + 5 * PACING_TICK));
        // A clock read before `last` (another task pumped in between) is not a tick.
        assert!(!tick_passed(last + PACING_TICK, last));
    }
}

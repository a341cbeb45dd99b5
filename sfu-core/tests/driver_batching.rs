//! The driver over real UDP sockets: a publisher sends bursts (as GSO sends, so a worker with
//! GRO receives them as one buffer), the worker receives them in batches, forwards every
//! packet, and sends each subscriber's run as one GSO send, or one by one when GSO is off.
//! Nothing may be lost, reordered or altered on either path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use quinn_udp::{UdpSockRef, UdpSocketState};
use sfu_core::driver::WorkerHandle;
use sfu_core::sim_peer::{SimPeer, SimRng};
use sfu_core::udp_socket::UdpSocketConfig;
use sfu_core::{WebRtcTransportOptions, WorkerConfig};

const DEADLINE: Duration = Duration::from_secs(20);
const BURST: usize = 16;
const BURSTS: usize = 40;
const PAYLOAD: usize = 1000;

/// A simulated browser on a real socket.
struct UdpPeer {
    peer: SimPeer,
    socket: UdpSocket,
    state: UdpSocketState,
}

impl UdpPeer {
    fn new() -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        // Room for a few bursts: the test waits for each before sending the next.
        socket.set_recv_buffer_size(4 << 20).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let socket: UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&socket)).unwrap();
        // quinn-udp turns GRO on here too: `pump` splits what it reads by stride.
        let peer = SimPeer::new(socket.local_addr().unwrap(), Instant::now()).unwrap();
        Self {
            peer,
            socket,
            state,
        }
    }

    /// Sends what the peer queued, one datagram per send.
    fn flush(&mut self) {
        while let Some((dest, data)) = self.peer.poll_datagram() {
            self.socket.send_to(&data, dest).unwrap();
        }
    }

    /// Reads what arrived (waiting up to `wait` for the first datagram) and runs timers.
    fn pump(&mut self, wait: Duration) {
        self.flush();
        let now = Instant::now();
        if self.peer.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.handle_timeout(now);
            self.flush();
        }
        if wait.is_zero() {
            self.socket.set_nonblocking(true).unwrap();
        } else {
            self.socket.set_nonblocking(false).unwrap();
            self.socket.set_read_timeout(Some(wait)).unwrap();
        }
        let mut buf = vec![0u8; 65_536];
        let mut metas = [quinn_udp::RecvMeta::default(); 1];
        loop {
            let n = {
                let mut bufs = [std::io::IoSliceMut::new(&mut buf)];
                match self
                    .state
                    .recv(UdpSockRef::from(&self.socket), &mut bufs, &mut metas)
                {
                    Ok(n) => n,
                    Err(_) => break,
                }
            };
            if n == 0 {
                break;
            }
            let meta = metas[0];
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            for datagram in buf[..meta.len].chunks(stride.max(1)) {
                self.peer.handle_datagram(Instant::now(), datagram);
            }
            // Later datagrams are read without waiting.
            self.socket.set_nonblocking(true).unwrap();
        }
        self.flush();
    }

    /// Sends `packets` (all the same size) to `dest` as GSO sends of up to `BURST` datagrams
    /// when the platform has GSO, one by one otherwise.
    fn send_burst(&self, dest: SocketAddr, packets: &[Vec<u8>]) {
        let segment = packets[0].len();
        assert!(packets.iter().all(|p| p.len() == segment));
        if self.state.max_gso_segments() > 1 {
            let contents = packets.concat();
            let transmit = quinn_udp::Transmit {
                destination: dest,
                ecn: None,
                contents: &contents,
                segment_size: Some(segment),
                src_ip: None,
            };
            self.state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
                .unwrap();
        } else {
            for p in packets {
                self.socket.send_to(p, dest).unwrap();
            }
        }
    }
}

struct Forwarding {
    worker: WorkerHandle,
    publisher: UdpPeer,
    subscriber: UdpPeer,
    video_out: u32,
}

fn connect(gso: bool) -> Forwarding {
    let socket = UdpSocketConfig {
        gso,
        ..Default::default()
    };
    let (worker, _events) =
        WorkerHandle::spawn_with_socket(addr("127.0.0.1:0"), WorkerConfig::default(), socket)
            .unwrap();
    let mut publisher = UdpPeer::new();
    let mut subscriber = UdpPeer::new();
    let (pub_fp, sub_fp) = (publisher.peer.fingerprint(), subscriber.peer.fingerprint());
    let (pub_info, sub_info, consumer) = worker
        .call_blocking(move |w, now| {
            let room = w.create_router();
            let options = |fp| WebRtcTransportOptions {
                remote_fingerprint: Some(fp),
                ..Default::default()
            };
            let p = w
                .create_webrtc_transport(now, room, options(pub_fp))
                .unwrap();
            let s = w
                .create_webrtc_transport(now, room, options(sub_fp))
                .unwrap();
            let video = w.produce(p.id, vp8_params("1", VP8_SSRC)).unwrap();
            let (_, consumer) = w
                .consume(now, s.id, video, &subscriber_caps(), Some("1".into()))
                .unwrap();
            (p, s, consumer)
        })
        .unwrap();
    let now = Instant::now();
    publisher.peer.connect(now, &pub_info).unwrap();
    subscriber.peer.connect(now, &sub_info).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !(publisher.peer.is_connected() && subscriber.peer.is_connected()) {
        assert!(
            Instant::now() < deadline,
            "not connected: {:?} {:?}",
            publisher.peer,
            subscriber.peer
        );
        publisher.pump(Duration::from_millis(5));
        subscriber.pump(Duration::from_millis(5));
    }
    Forwarding {
        worker,
        publisher,
        subscriber,
        video_out: consumer_ssrc(&consumer),
    }
}

/// Sends `BURSTS` bursts of `BURST` equal-sized packets, waiting for each burst to arrive
/// before the next (a moderate rate: at most one burst in flight), and checks every packet.
fn forward_bursts(f: &mut Forwarding) {
    let server = f.worker.local_addr();
    let mut rng = SimRng::new(11);
    let mut sent = Vec::new();
    for burst in 0..BURSTS {
        let mut packets = Vec::with_capacity(BURST);
        for i in 0..BURST {
            let seq = (burst * BURST + i) as u16;
            let mut payload = vec![0u8; PAYLOAD];
            rng.fill(&mut payload);
            packets.push(
                f.publisher
                    .peer
                    .protect_rtp(
                        VP8_SSRC,
                        VP8_PT,
                        seq,
                        u32::from(seq) * 3000,
                        false,
                        &[(PUB_MID_ID, b"1")],
                        &payload,
                    )
                    .unwrap(),
            );
            sent.push(payload);
        }
        f.publisher.send_burst(server, &packets);
        let deadline = Instant::now() + DEADLINE;
        while f.subscriber.peer.received_rtp_for(f.video_out).count() < sent.len() {
            assert!(
                Instant::now() < deadline,
                "burst {burst}: {} of {} arrived; io {:?}",
                f.subscriber.peer.received_rtp_for(f.video_out).count(),
                sent.len(),
                f.worker.io_stats()
            );
            f.subscriber.pump(Duration::from_millis(5));
            f.publisher.pump(Duration::ZERO);
        }
    }
    let got: Vec<_> = f.subscriber.peer.received_rtp_for(f.video_out).collect();
    assert_eq!(got.len(), sent.len(), "each packet exactly once");
    for (w, (received, payload)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(&received.payload, payload, "packet {w} intact");
        if w > 0 {
            assert_eq!(
                received.sequence_number,
                got[w - 1].sequence_number.wrapping_add(1),
                "in order, without gaps"
            );
        }
    }
    assert_eq!(f.subscriber.peer.stats().srtp_errors, 0);
}

#[test]
fn bursts_are_received_in_batches_and_sent_as_gso_runs() {
    let mut f = connect(true);
    let before = f.worker.io_stats();
    forward_bursts(&mut f);
    let io = f.worker.io_stats();
    let datagrams_in = io.datagrams_in - before.datagrams_in;
    let calls = io.receive_calls - before.receive_calls;
    assert!(datagrams_in >= (BURST * BURSTS) as u64, "{io:?}");
    let caps = f.worker.socket_capabilities();
    eprintln!("{caps:?} {io:?}");
    if f.publisher.state.max_gso_segments() > 1 {
        // Each burst reaches the socket at once (one GRO buffer, or all its segments queued
        // together), so a receive call carries several datagrams on average.
        assert!(
            calls * 2 <= datagrams_in,
            "{calls} receive calls for {datagrams_in} datagrams: {io:?}"
        );
        if caps.gro_segments > 1 {
            assert!(io.gro_buffers > 0, "GRO buffers were split: {io:?}");
        }
    }
    if caps.max_gso_segments > 1 {
        assert!(
            io.gso_sends > 0,
            "the subscriber's runs went out as GSO: {io:?}"
        );
        assert!(
            io.send_calls < io.datagrams_out,
            "fewer sends than datagrams: {io:?}"
        );
    } else {
        eprintln!("no GSO on this platform: only the one-by-one path ran");
    }
    assert_eq!(io.gso_fallbacks, 0, "{io:?}");
    assert_eq!(io.send_errors, 0, "{io:?}");
}

#[test]
fn with_gso_off_every_datagram_is_sent_on_its_own_and_nothing_is_lost() {
    let mut f = connect(false);
    assert_eq!(f.worker.socket_capabilities().max_gso_segments, 1);
    forward_bursts(&mut f);
    let io = f.worker.io_stats();
    assert_eq!(io.gso_sends, 0, "{io:?}");
    assert_eq!(
        io.send_calls, io.datagrams_out,
        "one send per datagram: {io:?}"
    );
    assert!(io.datagrams_out >= (BURST * BURSTS) as u64, "{io:?}");
    assert_eq!(io.send_errors, 0, "{io:?}");
}

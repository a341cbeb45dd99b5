//! A simulated browser ([`SimPeer`]) on a real UDP socket, for tests against a worker
//! thread (the driver): it sends bursts as GSO sends and reads GRO buffers like the worker.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use quinn_udp::{UdpSockRef, UdpSocketState};
use sfu_core::sim_peer::SimPeer;

/// A simulated browser on a real socket.
pub struct UdpPeer {
    pub peer: SimPeer,
    pub socket: UdpSocket,
    pub state: UdpSocketState,
}

impl UdpPeer {
    pub fn new() -> Self {
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
    pub fn flush(&mut self) {
        while let Some((dest, data)) = self.peer.poll_datagram() {
            self.socket.send_to(&data, dest).unwrap();
        }
    }

    /// Reads what arrived (waiting up to `wait` for the first datagram) and runs timers.
    pub fn pump(&mut self, wait: Duration) {
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
    pub fn send_burst(&self, dest: SocketAddr, packets: &[Vec<u8>]) {
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

//! The forwarding path: one 1200-byte SRTP packet from a publisher in, one protected copy out
//! per subscriber. SRTP unprotect and protect included; sockets excluded. Reported per
//! forwarded packet (throughput = subscribers).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu_benches::Room;
use sfu_core::SrtpProfile;

fn forwarding(c: &mut Criterion) {
    for (name, profile) in [
        ("aes-gcm", SrtpProfile::AeadAes128Gcm),
        ("aes-cm-hmac", SrtpProfile::Aes128CmHmacSha1_80),
    ] {
        let mut group = c.benchmark_group(format!("forward/{name}"));
        for subscribers in [1usize, 10, 100] {
            let mut room = Room::new(subscribers, profile);
            // Sanity: every subscriber gets the packet.
            let p = room.next_packet();
            assert_eq!(room.forward(p), subscribers);
            group.throughput(Throughput::Elements(subscribers as u64));
            group.bench_function(format!("{subscribers}_subscribers"), |b| {
                b.iter_custom(|iters| {
                    // Packets are protected by the publisher outside the timed region, in chunks
                    // so memory stays small whatever the iteration count.
                    let mut elapsed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(1024);
                        left -= n;
                        let packets: Vec<_> = (0..n).map(|_| room.next_packet()).collect();
                        let start = Instant::now();
                        for p in packets {
                            black_box(room.forward(p));
                        }
                        elapsed += start.elapsed();
                    }
                    elapsed
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, forwarding);
criterion_main!(benches);

//! The forwarding path: one 1200-byte SRTP packet from a publisher in, one protected copy out
//! per subscriber. SRTP unprotect and protect included; sockets excluded. Reported per
//! forwarded packet (throughput = subscribers).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu_benches::{Room, SimulcastRoom};
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
                b.iter_custom(|iters| time_forwarding(&mut room, iters))
            });
        }
        group.finish();
    }
}

/// Forwards `iters` packets and returns the time spent forwarding. Packets are protected by
/// the publisher outside the timed region, in chunks so memory stays small whatever the
/// iteration count.
fn time_forwarding(room: &mut Room, iters: u64) -> Duration {
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
}

/// The simulcast path: the same, but each packet is read (VP8 descriptor), each consumer's
/// layer selector decides, and VP8 picture ids are rewritten. Subscribers are spread over three
/// layers, so each packet reaches a third of them; reported per forwarded packet.
fn simulcast_forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward-simulcast/aes-gcm");
    for subscribers in [3usize, 30, 99] {
        let mut room = SimulcastRoom::new(subscribers);
        let p = room.next_packet(2, false);
        assert_eq!(
            room.forward(p),
            subscribers / 3,
            "each layer reaches its third"
        );
        group.throughput(Throughput::Elements((subscribers / 3) as u64));
        group.bench_function(format!("{subscribers}_subscribers"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                let mut layer = 0;
                while left > 0 {
                    let n = left.min(1024);
                    left -= n;
                    let packets: Vec<_> = (0..n)
                        .map(|_| {
                            layer = (layer + 1) % 3;
                            room.next_packet(layer, false)
                        })
                        .collect();
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

/// The plain GCM path at 10 subscribers with aws-lc instead of the VAES kernel
/// (`sfu_gcm::set_kernel_enabled(false)` while the room's keys are made): what the kernel is
/// worth inside the forwarding path, not only in the cipher's own bench.
fn forwarding_with_aws_lc(c: &mut Criterion) {
    sfu_gcm::set_kernel_enabled(false);
    let mut room = Room::new(10, SrtpProfile::AeadAes128Gcm);
    sfu_gcm::set_kernel_enabled(true);
    let p = room.next_packet();
    assert_eq!(room.forward(p), 10);
    let mut group = c.benchmark_group("forward/aes-gcm-aws-lc");
    group.throughput(Throughput::Elements(10));
    group.bench_function("10_subscribers", |b| {
        b.iter_custom(|iters| time_forwarding(&mut room, iters))
    });
    group.finish();
}

criterion_group!(
    benches,
    forwarding,
    simulcast_forwarding,
    forwarding_with_aws_lc
);
criterion_main!(benches);

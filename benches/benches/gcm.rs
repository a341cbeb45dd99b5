//! AES-128-GCM on one 1200-byte SRTP payload with a 12-byte header as AAD: this crate's
//! kernel (`sfu-gcm`, where the CPU has VAES) against aws-lc-rs, per call.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu_gcm::Aes128Gcm;

fn gcm(c: &mut Criterion) {
    let key = [0x42; 16];
    let header = [0x80u8; 12];
    let mut group = c.benchmark_group("aes-128-gcm/1200B");
    group.throughput(Throughput::Bytes(1200));
    for (name, gcm) in [
        ("fastest", Aes128Gcm::new(&key).unwrap()),
        ("aws-lc", Aes128Gcm::with_aws_lc(&key).unwrap()),
    ] {
        let plaintext = vec![7u8; 1200];
        let mut out = vec![0u8; 1200];
        let mut sequence = 0u16;
        group.bench_function(format!("seal-out-of-place/{name}"), |b| {
            b.iter(|| {
                sequence = sequence.wrapping_add(1);
                let mut nonce = [0u8; 12];
                nonce[10..].copy_from_slice(&sequence.to_be_bytes());
                black_box(gcm.seal(&nonce, &header, &plaintext, &mut out).unwrap())
            })
        });
        let mut data = vec![7u8; 1200];
        group.bench_function(format!("seal-in-place/{name}"), |b| {
            b.iter(|| {
                sequence = sequence.wrapping_add(1);
                let mut nonce = [0u8; 12];
                nonce[10..].copy_from_slice(&sequence.to_be_bytes());
                black_box(gcm.seal_in_place(&nonce, &header, &mut data).unwrap())
            })
        });
        let nonce = [9u8; 12];
        let mut sealed = vec![7u8; 1200];
        let tag = gcm.seal_in_place(&nonce, &header, &mut sealed).unwrap();
        let mut scratch = sealed.clone();
        group.bench_function(format!("open-in-place/{name}"), |b| {
            b.iter(|| {
                scratch.copy_from_slice(&sealed);
                gcm.open_in_place(&nonce, &header, &mut scratch, &tag)
                    .unwrap();
                black_box(&scratch);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gcm);
criterion_main!(benches);

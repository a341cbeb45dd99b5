//! A profiling driver for the forwarding path: builds [`sfu_benches::Room`] (one publisher,
//! AEAD-AES-128-GCM, `--subscribers` subscribers, 10 by default) and forwards N packets, so
//! instruction counts can be taken on a shared machine where wall-clock benches are noise:
//!
//! ```sh
//! cargo build --release -p sfu-benches --bin profile_forwarding
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Room*forward*' \
//!     target/release/profile_forwarding 5000
//! callgrind_annotate callgrind.out.<pid>
//! ```
//!
//! Only `Room::forward` is counted (the publisher's protect is outside it), so the total
//! divided by the packet count is the cost of one incoming packet fanned out to every
//! subscriber. Packets are protected in chunks ahead of forwarding, as in the criterion bench.

use std::hint::black_box;

use sfu_benches::Room;
use sfu_core::SrtpProfile;

fn main() {
    let mut args = std::env::args().skip(1);
    let packets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut room = Room::new(subscribers, SrtpProfile::AeadAes128Gcm);
    let mut sent = 0;
    let mut left = packets;
    while left > 0 {
        let n = left.min(1024);
        left -= n;
        let chunk: Vec<_> = (0..n).map(|_| room.next_packet()).collect();
        for p in chunk {
            sent += black_box(room.forward(p));
        }
    }
    println!("{packets} packets in, {sent} out, {subscribers} subscribers");
}

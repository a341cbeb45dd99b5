//! The simulated link model of `SimNetwork` (`set_link`): a bottleneck of limited capacity with
//! a tail-drop buffer, propagation delay with jitter, and loss, per direction of a peer, with
//! real media going through the worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use sfu_core::sim_peer::{Direction, LinkConfig, LinkSample, NetworkStats, PeerId, SimNetwork};

const MS: Duration = Duration::from_millis(1);
/// Payload of the video packets of the steady streams: 1230-byte SRTP datagrams.
const VIDEO_PAYLOAD: usize = 1200;
/// 1230 bytes every 5 ms: 1.97 Mbit/s.
const VIDEO_INTERVAL: Duration = Duration::from_millis(5);

/// The instant the network's elapsed time counts from.
fn origin(net: &SimNetwork) -> Instant {
    net.now() - net.elapsed()
}

/// Sends a steady VP8 stream from the publisher for `duration`: a packet of [`VIDEO_PAYLOAD`]
/// bytes (its index in the first two bytes) every `interval`. Returns the send time (since the
/// network's start) of each packet index.
fn stream_video(
    room: &mut Room,
    next: &mut u16,
    interval: Duration,
    duration: Duration,
    sent_at: &mut HashMap<u16, Duration>,
) {
    let end = room.net.elapsed() + duration;
    while room.net.elapsed() < end {
        let i = *next;
        *next = next.wrapping_add(1);
        let mut payload = vec![0xAB; VIDEO_PAYLOAD];
        payload[..2].copy_from_slice(&i.to_be_bytes());
        sent_at.insert(i, room.net.elapsed());
        room.send_video(
            10_000u16.wrapping_add(i),
            u32::from(i) * 450,
            i % 10 == 9,
            &payload,
        );
        room.net.advance(interval);
    }
}

/// Delivered bits per second over the samples that lie entirely within `[from, to)`.
fn rate_between(series: &[LinkSample], from: Duration, to: Duration) -> f64 {
    let inside: Vec<_> = series
        .iter()
        .filter(|s| s.start >= from && s.start + s.duration <= to)
        .collect();
    assert!(!inside.is_empty(), "no sample in {from:?}..{to:?}");
    let bytes: u64 = inside.iter().map(|s| s.delivered_bytes).sum();
    let time: Duration = inside.iter().map(|s| s.duration).sum();
    bytes as f64 * 8.0 / time.as_secs_f64()
}

/// Offered bits per second over the samples that lie entirely within `[from, to)`.
fn offered_rate_between(series: &[LinkSample], from: Duration, to: Duration) -> f64 {
    let inside: Vec<_> = series
        .iter()
        .filter(|s| s.start >= from && s.start + s.duration <= to)
        .collect();
    assert!(!inside.is_empty(), "no sample in {from:?}..{to:?}");
    let bytes: u64 = inside.iter().map(|s| s.offered_bytes).sum();
    let time: Duration = inside.iter().map(|s| s.duration).sum();
    bytes as f64 * 8.0 / time.as_secs_f64()
}

fn within(value: f64, expected: f64, tolerance: f64) -> bool {
    (value - expected).abs() <= expected * tolerance
}

/// The index of a received test packet (first two payload bytes).
fn index_of(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn a_2_mbit_stream_over_a_1_mbit_uplink_delivers_1_mbit_and_tail_drops_the_rest() {
    let mut room = Room::new();
    let publisher = room.publ().addr();
    let queue = LinkConfig::queue_bytes_for(1_000_000, Duration::from_millis(100));
    room.net.set_link(
        publisher,
        Direction::FromPeer,
        LinkConfig::bottleneck(1_000_000, queue),
    );
    let start = room.net.elapsed();
    let mut next = 0;
    let mut sent_at = HashMap::new();
    stream_video(
        &mut room,
        &mut next,
        VIDEO_INTERVAL,
        Duration::from_secs(10),
        &mut sent_at,
    );
    let end = room.net.elapsed();
    let report = room
        .net
        .link_report(publisher, Direction::FromPeer)
        .unwrap();
    let stats = report.stats;

    let offered = offered_rate_between(&report.series, start + Duration::from_secs(1), end);
    assert!(
        within(offered, 2_000_000.0, 0.05),
        "offered {offered} bit/s\n{report}"
    );
    let delivered = rate_between(&report.series, start + Duration::from_secs(1), end);
    assert!(
        within(delivered, 1_000_000.0, 0.05),
        "delivered {delivered} bit/s\n{report}"
    );
    // Half of what was offered was tail-dropped; nothing was lost otherwise.
    let dropped = stats.queue_dropped_bytes as f64 / stats.offered_bytes as f64;
    assert!(
        (0.45..0.55).contains(&dropped),
        "dropped {dropped}\n{report}"
    );
    assert_eq!(stats.lost_datagrams, 0);
    assert_eq!(
        room.net.stats().queue_dropped,
        stats.queue_dropped_datagrams
    );
    assert_eq!(
        stats.offered_datagrams,
        stats.delivered_datagrams + stats.queue_dropped_datagrams + room.net.in_flight() as u64,
        "every datagram is delivered, dropped or still in the link"
    );
    // What the link delivered is what the worker forwarded: the subscriber got the survivors.
    let got = room.sub().received_rtp_for(room.video_ssrc_out()).count();
    let sent = sent_at.len();
    let ratio = got as f64 / sent as f64;
    assert!(
        (0.45..0.55).contains(&ratio),
        "{got} of {sent} packets forwarded"
    );
}

/// Runs a publisher uplink of 1 Mbit/s with a buffer of `queue_delay` under a 2 Mbit/s stream
/// for 6 s; returns the queueing-delay bound, the link's samples summary and the one-way
/// delays publisher → subscriber (the downlink is unlimited, the worker forwards at once).
fn overloaded_uplink(queue_delay: Duration) -> (Duration, Vec<Duration>, Room) {
    let mut room = Room::new();
    let publisher = room.publ().addr();
    let queue = LinkConfig::queue_bytes_for(1_000_000, queue_delay);
    room.net.set_link(
        publisher,
        Direction::FromPeer,
        LinkConfig::bottleneck(1_000_000, queue),
    );
    let mut next = 0;
    let mut sent_at = HashMap::new();
    stream_video(
        &mut room,
        &mut next,
        VIDEO_INTERVAL,
        Duration::from_secs(6),
        &mut sent_at,
    );
    let origin = origin(&room.net);
    let one_way = room
        .sub()
        .received_rtp_for(room.video_ssrc_out())
        .map(|p| (p.at - origin) - sent_at[&index_of(&p.payload)])
        .collect();
    let bound = Duration::from_secs_f64(queue as f64 * 8.0 / 1_000_000.0);
    (bound, one_way, room)
}

#[test]
fn queueing_delay_is_bounded_by_the_buffer_over_the_capacity() {
    // A 1230-byte datagram takes 9.84 ms at 1 Mbit/s.
    let packet_time = Duration::from_secs_f64(1230.0 * 8.0 / 1_000_000.0);
    for queue_delay in [25, 100, 300].map(Duration::from_millis) {
        let (bound, one_way, room) = overloaded_uplink(queue_delay);
        let publisher = room.publ().addr();
        let summary = room
            .net
            .link_queue_delay(publisher, Direction::FromPeer)
            .unwrap();
        let report = room
            .net
            .link_report(publisher, Direction::FromPeer)
            .unwrap();
        assert!(
            summary.max <= bound,
            "{queue_delay:?}: {summary:?} over {bound:?}"
        );
        // The buffer did fill: the largest wait is within two packets of the bound.
        assert!(
            summary.max + 2 * packet_time >= bound,
            "{queue_delay:?}: {summary:?} never approached {bound:?}"
        );
        assert!(summary.p95 <= summary.max && summary.p50 <= summary.p95);
        assert!(
            summary.p50 + 3 * packet_time >= bound,
            "{queue_delay:?}: a standing queue, {summary:?}"
        );
        for s in &report.series {
            assert!(s.queue_delay <= bound, "{s:?}");
            assert!(s.queue_bytes <= report.config.queue_bytes, "{s:?}");
        }
        // End to end, the packets saw that wait plus their own serialisation, and no more.
        let worst = one_way.iter().max().copied().unwrap();
        assert!(
            worst <= bound + packet_time + MS,
            "{queue_delay:?}: one-way {worst:?} over {bound:?}"
        );
        assert!(
            worst + 2 * packet_time >= bound,
            "{queue_delay:?}: {worst:?}"
        );
    }
}

/// Sends 2000 audio packets, one every 2 ms, to a subscriber whose downlink is `link`;
/// returns `(index, send time, arrival time)` since the network's start, in arrival order.
fn jittered_arrivals(link: LinkConfig) -> Vec<(u16, Duration, Duration)> {
    let mut room = Room::new();
    let subscriber = room.sub().addr();
    room.net.set_link(subscriber, Direction::ToPeer, link);
    let mut sent_at = HashMap::new();
    for i in 0..2000u16 {
        sent_at.insert(i, room.net.elapsed());
        room.send_audio(i, u32::from(i) * 96, &i.to_be_bytes());
        room.net.advance(2 * MS);
    }
    room.net.advance(Duration::from_millis(200));
    assert_eq!(room.net.in_flight(), 0);
    let origin = origin(&room.net);
    room.sub()
        .received_rtp_for(room.audio_ssrc_out())
        .map(|p| {
            let i = index_of(&p.payload);
            (i, sent_at[&i], p.at - origin)
        })
        .collect()
}

#[test]
fn delay_and_jitter_stay_within_bounds_reorder_only_within_the_jitter_and_replay_per_seed() {
    let delay = Duration::from_millis(40);
    let jitter = Duration::from_millis(10);
    let link = |seed, allow_reordering| LinkConfig {
        delay,
        jitter,
        allow_reordering,
        seed,
        ..LinkConfig::default()
    };

    // Independent jitter: uniform in delay ± jitter.
    let free = jittered_arrivals(link(7, true));
    assert_eq!(free.len(), 2000, "nothing is lost");
    let one_way: Vec<Duration> = free.iter().map(|(_, sent, at)| *at - *sent).collect();
    for d in &one_way {
        assert!(
            *d >= delay - jitter && *d <= delay + jitter,
            "one-way {d:?}"
        );
    }
    let min = one_way.iter().min().unwrap();
    let max = one_way.iter().max().unwrap();
    assert!(
        *min < delay - jitter + MS && *max > delay + jitter - MS,
        "{min:?}..{max:?}"
    );
    let mean = one_way.iter().sum::<Duration>() / one_way.len() as u32;
    assert!(
        mean.abs_diff(delay) < Duration::from_micros(600),
        "mean {mean:?}"
    );
    let below = one_way.iter().filter(|d| **d < delay).count() as f64 / 2000.0;
    assert!(
        (0.45..0.55).contains(&below),
        "{below} below the mean delay"
    );
    // Reordering happens, but a packet is only ever overtaken by one sent within 2 × jitter.
    let mut reordered = 0;
    for (k, (_, sent_k, _)) in free.iter().enumerate() {
        for (_, sent_j, _) in &free[k + 1..] {
            if sent_j < sent_k {
                reordered += 1;
                assert!(
                    *sent_k - *sent_j < 2 * jitter,
                    "{sent_j:?} overtaken by {sent_k:?}"
                );
            }
        }
    }
    assert!(
        reordered > 0,
        "jitter of ±10 ms reorders packets 2 ms apart"
    );

    // FIFO jitter (the default): never reordered, still within delay ± jitter.
    let fifo = jittered_arrivals(link(7, false));
    assert_eq!(fifo.len(), 2000);
    for w in fifo.windows(2) {
        assert!(w[0].0 < w[1].0 && w[0].2 <= w[1].2, "reordered: {w:?}");
    }
    for (_, sent, at) in &fifo {
        let d = *at - *sent;
        assert!(d >= delay - jitter && d <= delay + jitter, "one-way {d:?}");
    }

    // The same seed replays the same schedule; another seed does not.
    assert_eq!(jittered_arrivals(link(7, true)), free);
    assert_eq!(jittered_arrivals(link(7, false)), fifo);
    assert_ne!(jittered_arrivals(link(8, true)), free);
}

#[test]
fn a_capacity_step_changes_the_delivered_rate_within_a_bounded_time() {
    let mut room = Room::new();
    let subscriber = room.sub().addr();
    let delay = Duration::from_millis(30);
    room.net.set_link(
        subscriber,
        Direction::ToPeer,
        LinkConfig {
            delay,
            ..LinkConfig::bottleneck(4_000_000, 100_000)
        },
    );
    let mut next = 0;
    let mut sent_at = HashMap::new();
    let t0 = room.net.elapsed();
    stream_video(
        &mut room,
        &mut next,
        VIDEO_INTERVAL,
        Duration::from_secs(3),
        &mut sent_at,
    );
    // Step down below the 2 Mbit/s offered.
    let down = room.net.elapsed();
    assert!(
        room.net
            .update_link_capacity(subscriber, Direction::ToPeer, Some(800_000))
    );
    stream_video(
        &mut room,
        &mut next,
        VIDEO_INTERVAL,
        Duration::from_secs(3),
        &mut sent_at,
    );
    // A full buffer (100 kB: a second at 800 kbit/s), then a step up above the offered rate.
    let (backlog, wait) = room
        .net
        .link_backlog(subscriber, Direction::ToPeer)
        .unwrap();
    assert!(
        backlog > 90_000 && wait > Duration::from_millis(900),
        "{backlog} B, {wait:?}"
    );
    let up = room.net.elapsed();
    assert!(
        room.net
            .update_link_capacity(subscriber, Direction::ToPeer, Some(3_000_000))
    );
    stream_video(
        &mut room,
        &mut next,
        VIDEO_INTERVAL,
        Duration::from_secs(3),
        &mut sent_at,
    );
    let end = room.net.elapsed();
    let report = room.net.link_report(subscriber, Direction::ToPeer).unwrap();
    let series = &report.series;
    let bucket = Duration::from_millis(100);

    let offered = offered_rate_between(series, t0, end);
    assert!(within(offered, 2_000_000.0, 0.05), "offered {offered}");
    let before = rate_between(series, t0 + bucket, down);
    assert!(within(before, offered, 0.05), "before: {before}\n{report}");
    // The new rate holds from the first full interval after the step plus the delay.
    let settle = delay + bucket;
    let after_down = rate_between(series, down + settle, up);
    assert!(
        within(after_down, 800_000.0, 0.05),
        "after down: {after_down}\n{report}"
    );
    for s in series
        .iter()
        .filter(|s| s.start >= down + settle && s.start + bucket <= up)
    {
        assert!(
            within(s.delivered_bps as f64, 800_000.0, 0.15),
            "{s:?}\n{report}"
        );
    }
    // Stepping up drains the backlog at the new capacity at once (not at the old one)…
    let draining: Vec<_> = series
        .iter()
        .filter(|s| s.start >= up + settle && s.start + bucket <= up + Duration::from_millis(400))
        .collect();
    assert!(!draining.is_empty());
    for s in &draining {
        assert!(
            within(s.delivered_bps as f64, 3_000_000.0, 0.1),
            "{s:?}\n{report}"
        );
    }
    // …then the link carries what is offered, with an empty queue.
    let settled = rate_between(series, up + Duration::from_secs(1), end);
    assert!(
        within(settled, offered, 0.05),
        "settled: {settled}\n{report}"
    );
    assert!(series.last().unwrap().queue_delay < Duration::from_millis(5));
    assert!(report.stats.queue_dropped_datagrams > 0);
}

#[test]
fn link_loss_matches_the_configured_rate() {
    for (seed, loss) in [(1u64, 0.05), (2, 0.05), (3, 0.2)] {
        let mut room = Room::new();
        let subscriber = room.sub().addr();
        room.net.set_link(
            subscriber,
            Direction::ToPeer,
            LinkConfig {
                loss,
                seed,
                ..LinkConfig::default()
            },
        );
        let n = 6000u16;
        for i in 0..n {
            room.send_audio(i, u32::from(i) * 96, &i.to_be_bytes());
            room.net.advance(2 * MS);
        }
        let stats = room.net.link_stats(subscriber, Direction::ToPeer).unwrap();
        let measured = stats.lost_datagrams as f64 / stats.offered_datagrams as f64;
        assert!(
            (measured - loss).abs() < 0.015,
            "seed {seed}: {measured} for {loss}"
        );
        assert_eq!(
            stats.delivered_datagrams + stats.lost_datagrams,
            stats.offered_datagrams
        );
        assert_eq!(room.net.stats().lost, stats.lost_datagrams);
        let got = room.sub().received_rtp_for(room.audio_ssrc_out()).count();
        let rtp_loss = 1.0 - got as f64 / f64::from(n);
        assert!(
            (rtp_loss - loss).abs() < 0.015,
            "seed {seed}: RTP loss {rtp_loss}"
        );
    }
}

/// What a run of the standard room produced, in terms independent of random ids.
#[derive(Debug, PartialEq)]
struct Trace {
    rtp: Vec<(u32, u8, Duration, Vec<u8>)>,
    publisher_rtcp: (u64, u64, u64),
    network: NetworkStats,
    to_subscriber: u64,
    events: usize,
}

/// Connects a room (optionally with unlimited links on both directions of both peers), then
/// sends audio and video through loss and latency.
fn traffic_trace(links: bool, latency: Duration) -> Trace {
    let mut room = Room::setup(Default::default(), Default::default());
    room.net.set_latency(latency);
    if links {
        for peer in [room.publ().addr(), room.sub().addr()] {
            for direction in [Direction::ToPeer, Direction::FromPeer] {
                room.net.set_link(peer, direction, LinkConfig::default());
            }
        }
    }
    room.connect_all();
    // Loss per leg, each from its own generator: the worker emits the datagrams of different
    // transports due at one instant in no fixed order (it walks a HashMap), so one generator
    // for every datagram (`set_loss`) would not replay run to run.
    let worker = room.net.worker_addr();
    for (seed, peer) in [room.publ().addr(), room.sub().addr()]
        .into_iter()
        .enumerate()
    {
        let seed = seed as u64 * 2;
        room.net
            .add_link_loss(Some(worker), Some(peer), 0.1, seed + 5);
        room.net
            .add_link_loss(Some(peer), Some(worker), 0.1, seed + 6);
    }
    for i in 0..400u16 {
        room.send_audio(i, u32::from(i) * 960, format!("audio {i}").as_bytes());
        if i % 2 == 0 {
            room.send_video(i / 2, u32::from(i) * 1500, i % 10 == 0, &[i as u8; 700]);
        }
        room.net.advance(Duration::from_millis(10));
    }
    room.net.advance(Duration::from_secs(2));
    let origin = origin(&room.net);
    let (audio, video) = (room.audio_ssrc_out(), room.video_ssrc_out());
    let rtp = room
        .sub()
        .received_rtp()
        .iter()
        .map(|p| {
            let stream = if p.ssrc == audio {
                0
            } else if p.ssrc == video {
                1
            } else {
                2
            };
            (stream, p.payload_type, p.at - origin, p.payload.clone())
        })
        .collect();
    let r = room.publ().received_rtcp();
    Trace {
        rtp,
        publisher_rtcp: (r.packets, r.receiver_reports, r.plis.values().sum()),
        network: room.net.stats(),
        to_subscriber: room.net.datagrams_to(room.sub().addr()),
        events: room.net.events().len(),
    }
}

#[test]
fn an_unlimited_link_behaves_exactly_as_no_link() {
    for latency in [Duration::ZERO, Duration::from_millis(25)] {
        let without = traffic_trace(false, latency);
        assert!(without.rtp.len() > 300, "{latency:?}: traffic flowed");
        let with = traffic_trace(true, latency);
        assert_eq!(with, without, "latency {latency:?}");
    }
    // And the links counted everything, dropping nothing.
    let mut room = Room::new();
    let subscriber = room.sub().addr();
    room.net
        .set_link(subscriber, Direction::ToPeer, LinkConfig::default());
    let got = room.audio_flows(0, 50);
    assert_eq!(got, 50);
    let stats = room.net.link_stats(subscriber, Direction::ToPeer).unwrap();
    assert!(stats.offered_datagrams >= 50);
    assert_eq!(stats.delivered_datagrams, stats.offered_datagrams);
    assert_eq!(stats.delivered_bytes, stats.offered_bytes);
    assert_eq!(stats.queue_dropped_datagrams + stats.lost_datagrams, 0);
    assert_eq!(room.net.in_flight(), 0, "delivered at once");
}

/// A room with one publisher (Opus and VP8) and `n` subscribers consuming the video.
struct MultiRoom {
    net: SimNetwork,
    publisher: PeerId,
    subscribers: Vec<(PeerId, u32)>,
}

fn multi_room(n: usize) -> MultiRoom {
    let mut net = SimNetwork::new(addr(WORKER)).unwrap();
    let router = net.worker_mut().create_router();
    let publisher = net.add_peer(peer_addr(0)).unwrap();
    let publisher_info = net.create_transport(publisher, router).unwrap();
    let video = net
        .worker_mut()
        .produce(publisher_info.id, vp8_mid_params("1"))
        .unwrap();
    net.connect(publisher, &publisher_info).unwrap();
    let mut ids = vec![publisher];
    let mut subscribers = Vec::new();
    for i in 1..=n {
        let s = net.add_peer(peer_addr(i)).unwrap();
        let info = net.create_transport(s, router).unwrap();
        let now = net.now();
        let (_, params) = net
            .worker_mut()
            .consume(now, info.id, video, &subscriber_caps(), Some("1".into()))
            .unwrap();
        net.connect(s, &info).unwrap();
        ids.push(s);
        subscribers.push((s, consumer_ssrc(&params)));
    }
    assert!(net.run_until_connected(&ids, CONNECT_LIMIT));
    MultiRoom {
        net,
        publisher,
        subscribers,
    }
}

#[test]
fn subscribers_behind_different_downlinks_receive_what_their_links_carry() {
    let mut room = multi_room(2);
    let capacities = [1_000_000u64, 3_000_000];
    let addrs: Vec<SocketAddr> = room
        .subscribers
        .iter()
        .map(|(id, _)| room.net.peer(*id).unwrap().addr())
        .collect();
    for (addr, capacity) in addrs.iter().zip(capacities) {
        let queue = LinkConfig::queue_bytes_for(capacity, Duration::from_millis(150));
        room.net.set_link(
            *addr,
            Direction::ToPeer,
            LinkConfig {
                delay: Duration::from_millis(20),
                jitter: Duration::from_millis(2),
                seed: capacity,
                ..LinkConfig::bottleneck(capacity, queue)
            },
        );
    }
    let start = room.net.elapsed();
    let duration = Duration::from_secs(8);
    let mut sent = 0u32;
    while room.net.elapsed() < start + duration {
        let now = room.net.now();
        let payload = vec![0x5A; VIDEO_PAYLOAD];
        room.net
            .peer_mut(room.publisher)
            .unwrap()
            .send_rtp(
                now,
                VP8_SSRC,
                VP8_PT,
                sent as u16,
                sent * 450,
                sent % 10 == 9,
                &[(PUB_MID_ID, b"1")],
                &payload,
            )
            .unwrap();
        sent += 1;
        room.net.advance(VIDEO_INTERVAL);
    }
    let end = room.net.elapsed();
    let window = (start + Duration::from_secs(1), end);
    for ((addr, capacity), (id, ssrc)) in addrs.iter().zip(capacities).zip(&room.subscribers) {
        let report = room.net.link_report(*addr, Direction::ToPeer).unwrap();
        let delivered = rate_between(&report.series, window.0, window.1);
        let expected = (capacity as f64)
            .min(report.stats.offered_bytes as f64 * 8.0 / (end - start).as_secs_f64());
        assert!(
            within(delivered, expected, 0.05),
            "{delivered} for {expected}\n{report}"
        );
        // The media itself: payload bits received over the window.
        let origin = origin(&room.net);
        let payload_bits: usize = room
            .net
            .peer(*id)
            .unwrap()
            .received_rtp_for(*ssrc)
            .filter(|p| p.at - origin >= window.0)
            .map(|p| p.payload.len() * 8)
            .sum();
        let payload_rate = payload_bits as f64 / (window.1 - window.0).as_secs_f64();
        assert!(
            payload_rate <= expected && payload_rate > 0.93 * expected,
            "subscriber at {addr}: {payload_rate} bit/s of payload for {expected}\n{report}"
        );
    }
    // The 1 Mbit/s subscriber lost about half to its queue; the 3 Mbit/s one nothing.
    let slow = room.net.link_stats(addrs[0], Direction::ToPeer).unwrap();
    let fast = room.net.link_stats(addrs[1], Direction::ToPeer).unwrap();
    assert!(
        slow.queue_dropped_datagrams > u64::from(sent) / 3,
        "{slow:?}"
    );
    assert_eq!(fast.queue_dropped_datagrams, 0, "{fast:?}");
}

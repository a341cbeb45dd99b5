//! Sharing one subscriber's bandwidth estimate among the tracks it receives.
//!
//! Given the estimate and, per consumer, the bitrate of each layer it could receive, the
//! allocator picks a layer for each (or pauses video): audio first and never starved, then
//! video by priority (screen share, then the active speaker, then the rest), each video first
//! at its lowest layer, then, in priority order, each upgraded as far as the budget allows,
//! never above the layer the subscriber asked for. Hysteresis keeps layers from
//! flapping: going up needs [`UP_HEADROOM`] of spare budget, and a layer already held is kept
//! until the total is [`DOWN_TOLERANCE`] over the estimate. Pure computation: the worker feeds
//! it and applies the result.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::{ConsumerId, MediaKind};

/// Spare budget required to move a consumer up a layer (15%).
pub const UP_HEADROOM: f64 = 1.15;
/// Overshoot tolerated before a held layer is given up (5%).
pub const DOWN_TOLERANCE: f64 = 1.05;

/// How much a track matters to the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// A shared screen: text must stay readable.
    Screen = 0,
    /// The active speaker.
    ActiveSpeaker = 1,
    /// Everyone else.
    Normal = 2,
}

/// One consumer as the allocator sees it.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    /// The consumer.
    pub consumer: ConsumerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Priority.
    pub priority: Priority,
    /// Bitrate of each layer, lowest first, in bits per second (audio: one entry).
    pub layer_bitrates: Vec<u64>,
    /// Highest layer the subscriber wants.
    pub max_layer: usize,
    /// The layer it receives now.
    pub current: Option<usize>,
}

/// The allocator's choice for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The consumer.
    pub consumer: ConsumerId,
    /// The layer to receive; `None`: paused for lack of bandwidth.
    pub layer: Option<usize>,
}

fn bitrate(r: &AllocationRequest, layer: usize) -> u64 {
    r.layer_bitrates.get(layer).copied().unwrap_or(0)
}

/// Picks a layer for every request within `estimate_bps` bits per second.
pub fn allocate(estimate_bps: u64, requests: &[AllocationRequest]) -> Vec<Allocation> {
    let budget = estimate_bps as f64;
    let mut chosen: Vec<Option<usize>> = vec![None; requests.len()];
    let mut used = 0f64;
    // Audio first, always: a meeting without sound is broken, one without video is not.
    for (i, r) in requests.iter().enumerate() {
        if r.kind == MediaKind::Audio && !r.layer_bitrates.is_empty() {
            used += bitrate(r, 0) as f64;
            if let Some(c) = chosen.get_mut(i) {
                *c = Some(0);
            }
        }
    }
    let mut video: Vec<usize> = (0..requests.len())
        .filter(|&i| {
            requests
                .get(i)
                .is_some_and(|r| r.kind == MediaKind::Video && !r.layer_bitrates.is_empty())
        })
        .collect();
    video.sort_by_key(|&i| requests.get(i).map(|r| (r.priority, r.consumer)));
    // Held layers are kept while the total stays within the tolerance.
    let fits = |used: f64, extra: f64, held: bool| {
        let limit = if held {
            budget * DOWN_TOLERANCE
        } else {
            budget
        };
        used + extra <= limit
    };
    // Every video at its lowest layer, by priority.
    for &i in &video {
        let Some(r) = requests.get(i) else { continue };
        let cost = bitrate(r, 0) as f64;
        if fits(used, cost, r.current.is_some()) {
            used += cost;
            if let Some(c) = chosen.get_mut(i) {
                *c = Some(0);
            }
        }
    }
    // Then upgrades in priority order: the most important video as high as it can go
    // before the next one moves (the active speaker's face over everyone's thumbnails).
    for &i in &video {
        let Some(r) = requests.get(i) else { continue };
        while let Some(layer) = chosen.get(i).copied().flatten() {
            let next = layer + 1;
            if next > r.max_layer || next >= r.layer_bitrates.len() {
                break;
            }
            let extra = bitrate(r, next) as f64 - bitrate(r, layer) as f64;
            let held = r.current.is_some_and(|c| c >= next);
            // Up needs headroom; keeping what is held only needs to stay within tolerance.
            let ok = if held {
                fits(used, extra, true)
            } else {
                (used + extra) * UP_HEADROOM <= budget
            };
            if !ok {
                break;
            }
            used += extra;
            if let Some(c) = chosen.get_mut(i) {
                *c = Some(next);
            }
        }
    }
    requests
        .iter()
        .zip(chosen)
        .map(|(r, layer)| Allocation {
            consumer: r.consumer,
            layer,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const LAYERS: [u64; 3] = [150_000, 500_000, 2_500_000];

    fn video(id: u64, priority: Priority, current: Option<usize>) -> AllocationRequest {
        AllocationRequest {
            consumer: ConsumerId(id),
            kind: MediaKind::Video,
            priority,
            layer_bitrates: LAYERS.to_vec(),
            max_layer: 2,
            current,
        }
    }

    fn audio(id: u64) -> AllocationRequest {
        AllocationRequest {
            consumer: ConsumerId(id),
            kind: MediaKind::Audio,
            priority: Priority::Normal,
            layer_bitrates: vec![40_000],
            max_layer: 0,
            current: Some(0),
        }
    }

    fn layers(a: &[Allocation]) -> Vec<Option<usize>> {
        a.iter().map(|a| a.layer).collect()
    }

    #[test]
    fn a_wide_link_gives_everyone_the_top_layer() {
        let r = [
            audio(1),
            video(2, Priority::Normal, None),
            video(3, Priority::Normal, None),
        ];
        assert_eq!(
            layers(&allocate(20_000_000, &r)),
            vec![Some(0), Some(2), Some(2)]
        );
    }

    #[test]
    fn priority_decides_who_gets_the_best_layer_and_audio_is_never_starved() {
        let r = [
            video(1, Priority::Normal, None),
            video(2, Priority::ActiveSpeaker, None),
            audio(3),
            video(4, Priority::Screen, None),
        ];
        // 3.8 Mbit/s: the screen gets the top layer, the speaker the middle, the rest the lowest.
        let a = allocate(3_800_000, &r);
        assert_eq!(layers(&a), vec![Some(0), Some(1), Some(0), Some(2)]);
        // Almost nothing: audio still flows, video pauses from the lowest priority up.
        let a = allocate(200_000, &r);
        assert_eq!(layers(&a), vec![None, None, Some(0), Some(0)]);
        let a = allocate(10_000, &r);
        assert_eq!(a[2].layer, Some(0), "audio even above the estimate");
    }

    #[test]
    fn never_above_the_subscribers_choice() {
        let mut v = video(1, Priority::Screen, None);
        v.max_layer = 1;
        assert_eq!(layers(&allocate(50_000_000, &[v])), vec![Some(1)]);
    }

    #[test]
    fn hysteresis_keeps_layers_from_flapping() {
        // Exactly enough for the top layer (no headroom): a newcomer does not go up...
        let budget = 2_500_000 + 40_000;
        assert_eq!(
            layers(&allocate(
                budget,
                &[video(1, Priority::Normal, None), audio(2)]
            )),
            vec![Some(1), Some(0)]
        );
        // ...but a consumer already on it keeps it, even a little over the estimate.
        let held = [video(1, Priority::Normal, Some(2)), audio(2)];
        assert_eq!(layers(&allocate(budget, &held))[0], Some(2));
        assert_eq!(
            layers(&allocate(budget * 100 / 103, &held))[0],
            Some(2),
            "3% over: kept"
        );
        assert_eq!(
            layers(&allocate(budget * 100 / 110, &held))[0],
            Some(1),
            "10% over: down"
        );
        // Going up needs 15% headroom above the total.
        let up = ((2_540_000f64) * UP_HEADROOM) as u64;
        assert_eq!(
            layers(&allocate(
                up - 1000,
                &[video(1, Priority::Normal, Some(1)), audio(2)]
            ))[0],
            Some(1)
        );
        assert_eq!(
            layers(&allocate(
                up + 1000,
                &[video(1, Priority::Normal, Some(1)), audio(2)]
            ))[0],
            Some(2)
        );
    }

    #[test]
    fn total_stays_within_the_estimate_for_new_allocations() {
        let mut seed = 7u64;
        for _ in 0..500 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let n = (seed >> 60) as usize + 1;
            let estimate = (seed >> 20) % 10_000_000;
            let reqs: Vec<_> = (0..n as u64)
                .map(|i| {
                    video(
                        i,
                        if i == 0 {
                            Priority::Screen
                        } else {
                            Priority::Normal
                        },
                        None,
                    )
                })
                .chain(std::iter::once(audio(99)))
                .collect();
            let a = allocate(estimate, &reqs);
            let video_total: u64 = a
                .iter()
                .zip(&reqs)
                .filter(|(_, r)| r.kind == MediaKind::Video)
                .filter_map(|(a, _)| a.layer.map(|l| LAYERS[l]))
                .sum();
            assert!(
                video_total + 40_000 <= estimate.max(40_000) || video_total == 0,
                "{estimate}: {video_total}"
            );
        }
    }
}

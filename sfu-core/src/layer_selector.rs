//! Which simulcast stream and temporal layer one consumer forwards, packet by packet.
//!
//! A simulcast producer has several streams (encodings, lowest quality first). The subscriber
//! gets one of them: the selector forwards the *current* stream and moves to a new *target*
//! only at a keyframe of the target, so the decoder never sees a frame it cannot decode. Within
//! the current stream it drops temporal layers above the wanted one (VP8 `TID`), switching up
//! only at a layer-sync frame. The selector decides; the consumer rewrites sequence numbers,
//! timestamps and picture ids accordingly. It knows nothing of bandwidth: the target comes
//! from the caller (the subscriber's preference now, the allocator later).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::codecs::PacketInfo;

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it; `switched` is true for the first packet of a newly selected stream.
    Forward {
        /// The first packet after a stream switch (the consumer rebases its rewriting).
        switched: bool,
    },
    /// A packet of the current stream that the subscriber does not get (a temporal layer above
    /// the wanted one): drop it and close the sequence-number gap it leaves.
    DropInStream,
    /// A packet of a stream the consumer is not on: ignore it entirely.
    Ignore,
}

/// Temporal layers assumed when the subscriber did not limit them (VP8 L1T3: 0, 1, 2).
pub const ALL_TEMPORAL_LAYERS: u8 = u8::MAX;

/// The per-consumer layer state machine.
#[derive(Debug, Clone)]
pub struct LayerSelector {
    current: Option<usize>,
    target: Option<usize>,
    max_temporal: u8,
    current_temporal: u8,
}

impl LayerSelector {
    /// A selector that forwards nothing until it is given a target and a keyframe arrives.
    pub fn new() -> Self {
        Self {
            current: None,
            target: None,
            max_temporal: ALL_TEMPORAL_LAYERS,
            current_temporal: ALL_TEMPORAL_LAYERS,
        }
    }

    /// The stream being forwarded.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The stream wanted.
    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// Sets the wanted stream (`None`: forward nothing). Returns true when this needs a
    /// keyframe of the new target (the caller asks the publisher for one).
    pub fn set_target(&mut self, target: Option<usize>) -> bool {
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
        self.needs_keyframe()
    }

    /// Sets the highest temporal layer wanted.
    pub fn set_max_temporal(&mut self, max_temporal: u8) {
        self.max_temporal = max_temporal;
        // Going down is immediate; going up waits for a sync frame (see `on_packet`).
        self.current_temporal = self.current_temporal.min(max_temporal);
    }

    /// Forgets the current stream: the next packet forwarded must be a keyframe of the target
    /// (after a pause, the decoder has lost its references).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Whether the consumer waits for a keyframe of its target.
    pub fn needs_keyframe(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    /// Decides for a packet of `stream` described by `info` (`None`: the payload could not be
    /// read, so it is forwarded only within the current stream and never starts a switch).
    pub fn on_packet(&mut self, stream: usize, info: Option<&PacketInfo>) -> Decision {
        let keyframe_start = info.is_some_and(|i| i.keyframe && i.start_of_frame != Some(false));
        if Some(stream) == self.target && self.current != self.target && keyframe_start {
            self.current = Some(stream);
            self.current_temporal = self.max_temporal;
            return Decision::Forward { switched: true };
        }
        if Some(stream) != self.current {
            return Decision::Ignore;
        }
        let Some(tid) = info.and_then(|i| i.temporal_id) else {
            return Decision::Forward { switched: false };
        };
        if tid > self.current_temporal {
            // Up only at a frame that allows it; never above what is wanted.
            let sync = info.is_some_and(|i| i.layer_sync && i.start_of_frame != Some(false));
            if sync && tid <= self.max_temporal {
                self.current_temporal = tid;
            } else {
                return Decision::DropInStream;
            }
        }
        Decision::Forward { switched: false }
    }
}

impl Default for LayerSelector {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(keyframe: bool, tid: Option<u8>, sync: bool, start: bool) -> PacketInfo {
        PacketInfo {
            keyframe,
            temporal_id: tid,
            spatial_id: None,
            layer_sync: sync,
            start_of_frame: Some(start),
            end_of_frame: None,
        }
    }

    #[test]
    fn waits_for_a_keyframe_of_the_target_then_forwards_only_it() {
        let mut s = LayerSelector::new();
        assert!(s.set_target(Some(0)));
        assert_eq!(
            s.on_packet(0, Some(&info(false, None, false, true))),
            Decision::Ignore,
            "no keyframe yet"
        );
        assert_eq!(
            s.on_packet(1, Some(&info(true, None, false, true))),
            Decision::Ignore,
            "not the target"
        );
        assert_eq!(
            s.on_packet(0, Some(&info(true, None, false, false))),
            Decision::Ignore,
            "middle of a keyframe"
        );
        assert_eq!(
            s.on_packet(0, Some(&info(true, None, false, true))),
            Decision::Forward { switched: true }
        );
        assert!(!s.needs_keyframe());
        assert_eq!(
            s.on_packet(0, Some(&info(false, None, false, true))),
            Decision::Forward { switched: false }
        );
        assert_eq!(
            s.on_packet(2, Some(&info(false, None, false, true))),
            Decision::Ignore
        );
    }

    #[test]
    fn switches_streams_only_at_the_targets_keyframe_without_a_gap() {
        let mut s = LayerSelector::new();
        s.set_target(Some(2));
        assert_eq!(
            s.on_packet(2, Some(&info(true, None, false, true))),
            Decision::Forward { switched: true }
        );
        assert!(
            s.set_target(Some(0)),
            "a keyframe of the new target is needed"
        );
        // The old stream keeps flowing until the new one can start.
        assert_eq!(
            s.on_packet(2, Some(&info(false, None, false, true))),
            Decision::Forward { switched: false }
        );
        assert_eq!(
            s.on_packet(0, Some(&info(false, None, false, true))),
            Decision::Ignore
        );
        assert_eq!(
            s.on_packet(0, Some(&info(true, None, false, true))),
            Decision::Forward { switched: true }
        );
        assert_eq!(s.current(), Some(0));
        assert_eq!(
            s.on_packet(2, Some(&info(false, None, false, true))),
            Decision::Ignore,
            "old stream left"
        );
        // Unreadable payloads never start a switch.
        s.set_target(Some(1));
        assert_eq!(s.on_packet(1, None), Decision::Ignore);
        assert_eq!(s.on_packet(0, None), Decision::Forward { switched: false });
    }

    #[test]
    fn temporal_layers_drop_above_the_maximum_and_go_up_at_sync_frames() {
        let mut s = LayerSelector::new();
        s.set_target(Some(0));
        s.set_max_temporal(0);
        assert_eq!(
            s.on_packet(0, Some(&info(true, Some(0), true, true))),
            Decision::Forward { switched: true }
        );
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(2), true, true))),
            Decision::DropInStream
        );
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(1), true, true))),
            Decision::DropInStream
        );
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(0), false, true))),
            Decision::Forward { switched: false }
        );
        s.set_max_temporal(2);
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(1), false, true))),
            Decision::DropInStream,
            "no sync yet"
        );
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(1), true, true))),
            Decision::Forward { switched: false }
        );
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(2), true, true))),
            Decision::Forward { switched: false }
        );
        s.set_max_temporal(1);
        assert_eq!(
            s.on_packet(0, Some(&info(false, Some(2), true, true))),
            Decision::DropInStream,
            "down at once"
        );
    }

    #[test]
    fn reset_and_no_target_forward_nothing_until_a_keyframe() {
        let mut s = LayerSelector::new();
        s.set_target(Some(1));
        s.on_packet(1, Some(&info(true, None, false, true)));
        s.reset();
        assert!(s.needs_keyframe());
        assert_eq!(
            s.on_packet(1, Some(&info(false, None, false, true))),
            Decision::Ignore
        );
        s.set_target(None);
        assert!(!s.needs_keyframe());
        assert_eq!(
            s.on_packet(1, Some(&info(true, None, false, true))),
            Decision::Ignore
        );
    }
}

//! libFuzzer entry for `signaling::fuzzing::signaling_frames`; the body and its oracle live there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signaling::fuzzing::signaling_frames(data));

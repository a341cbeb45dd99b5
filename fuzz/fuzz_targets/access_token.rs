//! libFuzzer entry for `signaling::fuzzing::access_token`; the body and its oracle live there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signaling::fuzzing::access_token(data));

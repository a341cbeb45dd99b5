//! libFuzzer entry for `sfu_core::fuzzing::gcm_kernel`; the body and its oracle live there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sfu_core::fuzzing::gcm_kernel(data));

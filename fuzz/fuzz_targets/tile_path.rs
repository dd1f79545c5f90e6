#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier::fuzz_targets::tile_path(data));

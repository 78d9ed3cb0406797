//! `cargo +nightly fuzz run error_body`: see platos-client/src/fuzzing.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| platos_client::fuzzing::error_body(data));

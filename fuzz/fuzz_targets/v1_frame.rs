//! `cargo +nightly fuzz run v1_frame`: see platos-client/src/fuzzing.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| platos_client::fuzzing::v1_frame(data));

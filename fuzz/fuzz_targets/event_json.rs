//! `cargo +nightly fuzz run event_json`: see platos-client/src/fuzzing.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| platos_client::fuzzing::event_json(data));

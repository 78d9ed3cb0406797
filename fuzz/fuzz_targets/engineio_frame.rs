//! `cargo +nightly fuzz run engineio_frame`: see platos-client/src/fuzzing.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| platos_client::fuzzing::engineio_frame(data));

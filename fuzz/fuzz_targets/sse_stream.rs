//! `cargo +nightly fuzz run sse_stream`: see platos-client/src/fuzzing.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| platos_client::fuzzing::sse_stream(data));

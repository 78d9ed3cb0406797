//! `cargo +nightly fuzz run socketio_packet`: see platos-client/src/fuzzing.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| platos_client::fuzzing::socketio_packet(data));

//! The REST suites, one binary: credentials and refresh (`auth`), every
//! entry of `spec/conformance/rest.json` (`conformance`), error shapes and
//! classes (`errors`), compression, call timeouts and a caller's own HTTP
//! client (`network`), auto-paging (`paging`), retries and idempotency keys
//! on a paused clock (`retry`), secrets kept out of everything (`secrets`).
//! All run against the recording server of `platos_integration_tests::recorder`.
//! (`rest_logs.rs` is its own binary: it installs a process-wide subscriber.)

mod auth;
mod conformance;
mod errors;
mod hostile;
mod network;
mod paging;
mod retry;
mod secrets;
mod v1_conformance;

//! The `platos` binary, run as a process against a test server started by
//! each test (see `support.rs`).

mod approvals;
mod chat;
mod config;
mod dev_server;
mod errors;
mod events;
mod generated;
mod support;
mod terminal;

//! Shared helpers of the integration suites in `tests/`: the recording HTTP
//! server the REST suites script, and the one name → SDK call dispatcher that
//! the conformance and parity suites share.

pub mod calls;
pub mod recorder;

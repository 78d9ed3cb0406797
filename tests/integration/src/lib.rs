//! Shared helpers of the integration suites in `tests/`: the recording HTTP
//! server the REST suites script, the one name → SDK call dispatcher that
//! the conformance and parity suites share, and the realtime suites' raw
//! Engine.IO server, Node peer launcher and stream helpers.

pub mod calls;
pub mod conformance;
pub mod realtime;
pub mod recorder;

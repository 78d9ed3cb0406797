//! The V1 operator client, one binary: its REST calls against the test
//! server's V1 routes (`client`) and the resumable event-stream reader
//! (`stream`).

mod client;
mod stream;

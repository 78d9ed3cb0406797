//! The V1 operator client, one binary: its REST calls against the test
//! server's V1 routes (`client`), the resumable event-stream reader
//! (`stream`), and the raw escape hatch of both clients (`raw`).

mod client;
mod frames;
mod raw;
mod stream;

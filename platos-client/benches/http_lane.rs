//! The HTTP turn lane beside the WebSocket lane: events per second and client
//! CPU per event for the same scripted turn on the same test server, in one run.
//!
//! ```text
//! cargo bench -p platos-client --bench http_lane              # 50 000 tokens per turn
//! HTTP_LANE_BENCH_EVENTS=20000 cargo bench -p platos-client --bench http_lane
//! ```
//!
//! The server is the crate `platos-test-server` (the same scripted turn serves both
//! lanes) on its own runtime and threads (`bench-server`); the client runs on a
//! runtime of its own (one worker), so client CPU is read per thread from `/proc/self/task`
//! and the server's work is left out of it. Each turn is timed from `send` to the
//! end of the stream; lanes alternate for `ROUNDS` rounds and the best run counts.
//! The server's own pace (socketioxide's emit, axum's body) bounds both lanes; the
//! CPU column is what the client pays.

use std::time::{Duration, Instant};

use futures::StreamExt;
use platos_client::{PlatosClient, SendOptions, Transport};
use platos_events::Event;
use platos_test_server::{SEED_THREAD, TestServer};

const ROUNDS: usize = 3;
const DEFAULT_EVENTS: usize = 50_000;
const SERVER_THREAD: &str = "bench-server";

fn main() {
    let events: usize = std::env::var("HTTP_LANE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let server = server_rt
        .block_on(async { TestServer::builder().start().await })
        .expect("test server");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    client_rt.block_on(run(&server, events));
    drop(server);
}

struct Best {
    wall: Duration,
    cpu_ms: f64,
}

async fn run(server: &TestServer, events: usize) {
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        // A whole turn fits: the socket lane must not end a turn whose
        // consumer is scheduled late (the HTTP lane pushes back instead).
        .stream_buffer(events + 16)
        .build()
        .expect("client");
    let message = format!("bench [tokens={events}]");
    println!("http_lane bench: a turn of {events} token events, best of {ROUNDS}");
    let lanes = [Transport::WebSocket, Transport::Http];
    let mut best: Vec<Option<Best>> = lanes.iter().map(|_| None).collect();
    // One warm-up turn per lane (connections, allocator).
    for lane in lanes {
        turn(&client, &message, lane).await;
    }
    for _ in 0..ROUNDS {
        for (i, lane) in lanes.into_iter().enumerate() {
            let cpu_before = client_cpu_ms();
            let start = Instant::now();
            let seen = turn(&client, &message, lane).await;
            let wall = start.elapsed();
            let cpu_ms = client_cpu_ms() - cpu_before;
            assert!(seen >= events, "{lane:?}: {seen} tokens of {events}");
            if best[i].as_ref().is_none_or(|b| wall < b.wall) {
                best[i] = Some(Best { wall, cpu_ms });
            }
        }
    }
    println!("| lane | events/s | client CPU per event |");
    println!("|---|---|---|");
    for (lane, best) in lanes.iter().zip(best) {
        let Some(best) = best else { continue };
        let per_sec = events as f64 / best.wall.as_secs_f64();
        let cpu_us = best.cpu_ms * 1000.0 / events as f64;
        println!("| {lane:?} | {per_sec:.0} | {cpu_us:.2} µs |");
    }
}

/// Runs one turn to its end; the number of `token` events seen.
async fn turn(client: &PlatosClient, message: &str, lane: Transport) -> usize {
    let options = SendOptions::new().transport(lane);
    let mut stream = client.threads().send_with(SEED_THREAD, message, options);
    let mut tokens = 0;
    while let Some(item) = stream.next().await {
        if let Event::Token(_) = item.expect("no stream errors") {
            tokens += 1;
        }
    }
    tokens
}

/// User + system CPU of this process's threads that are not the server's, in ms
/// (clock ticks of 10 ms).
fn client_cpu_ms() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ticks = 0.0;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if head.contains(SERVER_THREAD) {
            continue;
        }
        // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let at = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        ticks += at(11) + at(12);
    }
    ticks * 10.0
}

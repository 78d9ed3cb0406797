//! The V1 event-stream reader beside bare reqwest on the same journal, in one
//! run: frames per second and client CPU per frame.
//!
//! ```text
//! cargo bench -p platos-client --bench v1_stream            # 100 000 frames
//! V1_STREAM_BENCH_FRAMES=20000 cargo bench -p platos-client --bench v1_stream
//! ```
//!
//! The journal is the test server's (`platos-test-server`, on its own runtime
//! and threads, `bench-server`): mostly `assistant.delta`, with a
//! `reasoning.delta`, a `tool_call.start` and a `tool_call.result` every 50
//! frames, and `turn.done` last. Both lanes read the whole stream over one
//! connection on a client runtime of one worker:
//!
//! - `bare`: reqwest, the body split into events, each `data:` parsed once
//!   into a `serde_json::Value` (the floor: one JSON parse per frame);
//! - `EventStream`: the SDK's reader (event-stream parsing, meta and
//!   admission checks, the envelope, and the typed payload).
//!
//! Client CPU is read per thread from `/proc/self/task`, leaving the server's
//! threads out. Lanes alternate for `ROUNDS` rounds; the best run counts.

use std::time::{Duration, Instant};

use futures::StreamExt;
use platos_client::v1::V1Client;
use platos_test_server::TestServer;
use serde_json::{Value, json};

const ROUNDS: usize = 5;
const DEFAULT_FRAMES: usize = 100_000;
const SERVER_THREAD: &str = "bench-server";
const STREAM: &str = "bench-stream";

fn main() {
    let frames: usize = std::env::var("V1_STREAM_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_FRAMES);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let server = server_rt
        .block_on(async { TestServer::builder().start().await })
        .expect("test server");
    let env = server.scope().environment_id.clone();
    let streams = server.v1_streams();
    for i in 0..frames.saturating_sub(1) {
        let (t, fields) = match i % 50 {
            10 => ("reasoning.delta", json!({"text": "thinking about it"})),
            20 => (
                "tool_call.start",
                json!({"callId": format!("call-{i}"), "name": "search", "entity": null}),
            ),
            21 => (
                "tool_call.result",
                json!({"callId": format!("call-{i}"), "status": "ok", "ms": 12}),
            ),
            _ => ("assistant.delta", json!({"text": "a token "})),
        };
        streams.append(&env, STREAM, t, fields);
    }
    streams.append(&env, STREAM, "turn.done", json!({"stopReason": "end_turn"}));
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    client_rt.block_on(run(&server, &env, frames));
    drop(server);
}

#[derive(Clone, Copy)]
struct Best {
    wall: Duration,
    cpu_ms: f64,
}

async fn run(server: &TestServer, env: &str, frames: usize) {
    let token = server.operator_token();
    let sdk = V1Client::builder()
        .base_url(server.base_url())
        .operator_token(token.clone())
        .build()
        .expect("client");
    let bare = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/environments/{env}/streams/{STREAM}",
        server.base_url()
    );
    println!("v1_stream bench: a stream of {frames} frames, best of {ROUNDS}");
    let lanes = ["bare", "EventStream"];
    let mut best: [Option<Best>; 2] = [None, None];
    for round in 0..=ROUNDS {
        for (i, lane) in lanes.iter().enumerate() {
            let cpu_before = client_cpu_ms();
            let start = Instant::now();
            let seen = match i {
                0 => read_bare(&bare, &url, &token).await,
                _ => read_sdk(&sdk, env).await,
            };
            let wall = start.elapsed();
            let cpu_ms = client_cpu_ms() - cpu_before;
            assert_eq!(seen, frames, "{lane}: frames read");
            // Round 0 warms up (connections, allocator).
            if round > 0 && best[i].is_none_or(|b| wall < b.wall) {
                best[i] = Some(Best { wall, cpu_ms });
            }
        }
    }
    println!("| lane | frames/s | client CPU per frame |");
    println!("|---|---|---|");
    for (lane, best) in lanes.iter().zip(best) {
        let Some(best) = best else { continue };
        let per_sec = frames as f64 / best.wall.as_secs_f64();
        let cpu_us = best.cpu_ms * 1000.0 / frames as f64;
        println!("| {lane} | {per_sec:.0} | {cpu_us:.2} µs |");
    }
    if let [Some(bare), Some(sdk)] = best {
        println!(
            "EventStream / bare: wall {:.2}x, CPU {:.2}x",
            sdk.wall.as_secs_f64() / bare.wall.as_secs_f64(),
            sdk.cpu_ms / bare.cpu_ms
        );
    }
}

/// Reads the whole stream through the SDK; the number of frames.
async fn read_sdk(client: &V1Client, env: &str) -> usize {
    let mut stream = client
        .environment_streams()
        .read(env, STREAM)
        .open()
        .expect("open");
    let mut n = 0;
    while let Some(frame) = stream.next().await {
        let frame = frame.expect("no stream errors");
        std::hint::black_box(&frame);
        n += 1;
    }
    n
}

/// Reads the whole stream with reqwest, one `Value` parse per frame.
async fn read_bare(client: &reqwest::Client, url: &str, token: &str) -> usize {
    let response = client
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("answer");
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.expect("body"));
        let mut start = 0;
        while let Some(end) = find(&buffer[start..], b"\n\n") {
            let event = &buffer[start..start + end];
            start += end + 2;
            let mut is_meta = false;
            for line in event.split(|&b| b == b'\n') {
                if line == b"event: stream_meta" {
                    is_meta = true;
                } else if let Some(data) = line.strip_prefix(b"data: ")
                    && !is_meta
                {
                    let value: Value = serde_json::from_slice(data).expect("JSON");
                    std::hint::black_box(&value);
                    n += 1;
                }
            }
        }
        buffer.drain(..start);
    }
    n
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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

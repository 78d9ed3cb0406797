//! REST overhead: the same GET through the SDK and through bare reqwest, in one
//! run, against a canned loopback server, sequentially and 32 in flight.
//!
//! ```text
//! cargo bench -p platos-client --bench rest
//! REST_BENCH_REQUESTS=20000 cargo bench -p platos-client --bench rest
//! ```
//!
//! The server is this binary again, in a child process (`REST_BENCH_SERVE`),
//! answering every request on a kept-alive connection with the same JSON
//! agent list, so its CPU is not the client's. Both clients run on one
//! current-thread runtime and send the same headers (session token, accept,
//! content type, user agent); both decode the answer into
//! `platos_client::types::AgentList` (the bare one with `serde_json`), so the
//! difference is what the SDK adds: its request type, transport (key rule,
//! retry loop, span, auth headers) and the capped body read. Client CPU is
//! every thread of this process (`/proc/self/task/*/schedstat`, ns). Rounds
//! alternate SDK and bare; the median round counts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use platos_client::PlatosClient;
use platos_client::types::AgentList;

const ROUNDS: usize = 7;
const DEFAULT_REQUESTS: usize = 4000;
const IN_FLIGHT: usize = 32;
const SERVE: &str = "REST_BENCH_SERVE";
const TOKEN: &str = "tok_bench";

fn main() {
    if std::env::var_os(SERVE).is_some() {
        serve();
        return;
    }
    let requests: usize = std::env::var("REST_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let (server, base_url) = start_server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(&base_url, requests));
    drop(server);
}

/// The server's process, ended when the bench ends (or panics).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the canned server in a child process; it prints its port.
fn start_server() -> (Server, String) {
    let exe = std::env::current_exe().expect("bench binary path");
    let mut child = Command::new(exe)
        .env(SERVE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut out = child.stdout.take().expect("server stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("server port") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let port = String::from_utf8(line).expect("port text");
    (Server(child), format!("http://127.0.0.1:{}", port.trim()))
}

fn body() -> String {
    let agents: Vec<_> = (0..5)
        .map(|i| {
            serde_json::json!({
                "id": format!("agent_{i}"),
                "name": format!("Agent number {i}"),
                "status": "active",
                "createdAt": "2026-12-01T10:00:00Z",
                "updatedAt": "2026-12-02T10:00:00Z",
                "currentVersionId": format!("ver_{i}"),
                "contextLimit": 128000,
            })
        })
        .collect();
    serde_json::json!({"agents": agents, "total": 5, "hasMore": false}).to_string()
}

/// The canned server: one thread per connection, every request answered
/// with the same agent list, connections kept alive.
fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    println!("{port}");
    let _ = std::io::stdout().flush();
    let body = body();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let answer = answer.clone();
        std::thread::spawn(move || connection(stream, &answer));
    }
}

fn connection(mut stream: TcpStream, answer: &[u8]) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // A request: its head, then as many body bytes as it declares.
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        if stream.write_all(answer).is_err() {
            return;
        }
    }
}

/// CPU time of every thread of this process, in ns.
fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

#[derive(Clone, Copy)]
enum Client {
    Sdk,
    Bare,
}

struct Clients {
    sdk: PlatosClient,
    bare: reqwest::Client,
    url: String,
}

impl Clients {
    async fn one(&self, which: Client) -> usize {
        match which {
            Client::Sdk => self.sdk.agents().list().await.expect("sdk call").len(),
            Client::Bare => {
                let response = self
                    .bare
                    .get(&self.url)
                    .header("x-platos-session-token", TOKEN)
                    .header("accept", "application/json")
                    .header("content-type", "application/json")
                    .header("user-agent", platos_client::USER_AGENT)
                    .send()
                    .await
                    .expect("bare call");
                assert!(response.status().is_success());
                let bytes = response.bytes().await.expect("bare body");
                let list: AgentList = serde_json::from_slice(&bytes).expect("bare decode");
                list.agents.len()
            }
        }
    }

    /// `requests` calls, `in_flight` at a time: (wall, CPU) per request.
    async fn round(&self, which: Client, requests: usize, in_flight: usize) -> (f64, f64) {
        let cpu = cpu_ns();
        let start = Instant::now();
        let seen: usize = futures::stream::iter(0..requests)
            .map(|_| self.one(which))
            .buffer_unordered(in_flight)
            .fold(0, |sum, n| async move { sum + n })
            .await;
        let wall = start.elapsed();
        let cpu = cpu_ns() - cpu;
        assert_eq!(seen, requests * 5);
        (
            wall.as_secs_f64() * 1e6 / requests as f64,
            cpu as f64 / 1e3 / requests as f64,
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(base_url: &str, requests: usize) {
    let clients = Clients {
        sdk: PlatosClient::builder()
            .base_url(base_url)
            .session_token(TOKEN)
            .build()
            .expect("sdk client"),
        bare: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("bare client"),
        url: format!("{base_url}/api/v1/agent/agents"),
    };
    println!(
        "rest bench: GET /agents (5 agents), {requests} requests per round, median of {ROUNDS} rounds"
    );
    println!(
        "{:<12} {:>14} {:>14} {:>14} {:>14} {:>8} {:>8}",
        "mode", "sdk wall µs", "bare wall µs", "sdk CPU µs", "bare CPU µs", "wall ×", "CPU ×"
    );
    for (mode, in_flight) in [("sequential", 1), ("32 in flight", IN_FLIGHT)] {
        // Warm-up: connections, allocator, lazily built state.
        clients.round(Client::Sdk, 500, in_flight).await;
        clients.round(Client::Bare, 500, in_flight).await;
        let (mut sdk, mut bare) = ((vec![], vec![]), (vec![], vec![]));
        for _ in 0..ROUNDS {
            let (w, c) = clients.round(Client::Sdk, requests, in_flight).await;
            sdk.0.push(w);
            sdk.1.push(c);
            let (w, c) = clients.round(Client::Bare, requests, in_flight).await;
            bare.0.push(w);
            bare.1.push(c);
        }
        let (sw, sc, bw, bc) = (median(sdk.0), median(sdk.1), median(bare.0), median(bare.1));
        println!(
            "{mode:<12} {sw:>14.1} {bw:>14.1} {sc:>14.1} {bc:>14.1} {:>8.2} {:>8.2}",
            sw / bw,
            sc / bc
        );
    }
}

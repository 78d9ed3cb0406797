//! Many concurrent turns on one `PlatosClient` against the Node socket.io
//! peer (tests/node/server.js, npm `socket.io` 4.8), with the npm
//! `socket.io-client` (one socket per turn, as the TypeScript SDK opens
//! them: tests/node/bench_client.js) as the baseline in the same run.
//!
//! ```text
//! npm ci --prefix tests/node
//! cargo bench -p platos-client --bench realtime_scale                  # 1 000 and 10 000 turns
//! REALTIME_BENCH_TURNS=1000 cargo bench -p platos-client --bench realtime_scale
//! ```
//!
//! Each client runs in a process of its own against a fresh server (turns
//! of 50 tokens 20 ms apart, every turn started at once) and reports: peak
//! RSS and its growth per concurrent turn, CPU time per event received,
//! first-token latency p50/p99 (from `send()` to the first `token`), and
//! the connections the server saw. Then, with the server's `LATENCY_MS`
//! at 25 (the namespace connect and each `message` are handled 25 ms
//! late), the time from `send()` to a turn's first event on a cold
//! connection (a new client) and on a warm one (the same client, its
//! connection kept by `idle_timeout`). `conn p99` is the turns' own time
//! to a ready connection (the `connected` item; node: the socket's
//! `connect`), the floor under first-token latency.
//!
//! Last, the burst: one turn of 100,000 tokens sent with no delay, read by
//! a consumer that only counts, CPU time of each client process, best of
//! three interleaved rounds (`REALTIME_BENCH_BURST_TOKENS` to change it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use platos_client::{PlatosClient, RealtimeConfig};
use platos_events::Event;
use serde_json::{Value, json};

const TOKENS: &str = "50";
const TOKEN_DELAY_MS: &str = "20";
const LATENCY_MS: &str = "25";
const LATENCY_ROUNDS: usize = 15;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; the parent re-runs this binary as a
    // child with `--child <base url> <turns>`.
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let url = args[at + 1].clone();
        let turns: usize = args[at + 2].parse().expect("turns");
        let report = runtime().block_on(rust_turns(url, turns));
        println!("{report}");
        return;
    }
    let node_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/node");
    assert!(
        node_dir.join("node_modules/socket.io-client").is_dir(),
        "run `npm ci --prefix tests/node` first (Node.js 18+)"
    );
    let sizes: Vec<usize> = std::env::var("REALTIME_BENCH_TURNS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    println!(
        "{:<22} {:>6} {:>9} {:>10} {:>11} {:>9} {:>9} {:>12} {:>9} {:>6} {:>6}",
        "client",
        "turns",
        "peak MB",
        "KB/turn",
        "CPU µs/ev",
        "p50 ms",
        "p99 ms",
        "conn p99 ms",
        "wall s",
        "conns",
        "done"
    );
    for &turns in &sizes {
        // REALTIME_BENCH_RUST_ONLY=1 skips the baseline (for quick tuning).
        let rust_only = std::env::var_os("REALTIME_BENCH_RUST_ONLY").is_some();
        for rust in [true, false] {
            if rust_only && !rust {
                continue;
            }
            let (report, connections) = run_client(&node_dir, rust, turns, TOKENS, TOKEN_DELAY_MS);
            print_row(&report, connections);
        }
    }
    runtime().block_on(warm_and_cold(&node_dir));
    burst(&node_dir);
}

/// One client process against a fresh server: its report, and the
/// connections the server saw.
fn run_client(
    node_dir: &std::path::Path,
    rust: bool,
    turns: usize,
    tokens: &str,
    delay_ms: &str,
) -> (Value, usize) {
    let server = NodeServer::start(
        node_dir,
        &[("TOKENS", tokens), ("TOKEN_DELAY_MS", delay_ms)],
    );
    let output = if rust {
        Command::new(std::env::current_exe().expect("exe"))
            .args(["--child", &server.url, &turns.to_string()])
            .output()
    } else {
        Command::new("node")
            .arg(node_dir.join("bench_client.js"))
            .args([&server.url, &turns.to_string()])
            .output()
    }
    .expect("client process");
    let line = String::from_utf8_lossy(&output.stdout);
    let report: Value = match line.lines().last().map(serde_json::from_str) {
        Some(Ok(report)) => report,
        _ => panic!(
            "client failed: {}\n{}",
            line,
            String::from_utf8_lossy(&output.stderr)
        ),
    };
    (report, server.connections())
}

/// CPU of each client on one turn of many tokens sent back to back.
fn burst(node_dir: &std::path::Path) {
    let tokens = std::env::var("REALTIME_BENCH_BURST_TOKENS").unwrap_or_else(|_| "100000".into());
    let (mut rust_ms, mut node_ms) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        for rust in [true, false] {
            let (report, _) = run_client(node_dir, rust, 1, &tokens, "0");
            assert_eq!(report["completed"].as_f64(), Some(1.0), "{report}");
            let cpu = report["cpu_ms"].as_f64().unwrap_or(f64::NAN);
            if rust {
                rust_ms = rust_ms.min(cpu);
            } else {
                node_ms = node_ms.min(cpu);
            }
        }
    }
    println!(
        "burst of {tokens} tokens, one turn, best of 3: CPU rust {rust_ms:.0} ms, \
         node socket.io-client {node_ms:.0} ms ({:.2}× less)",
        node_ms / rust_ms
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn print_row(r: &Value, connections: usize) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let turns = f("turns");
    let events = f("events").max(1.0);
    println!(
        "{:<22} {:>6} {:>9.1} {:>10.1} {:>11.1} {:>9.0} {:>9.0} {:>12.0} {:>9.1} {:>6} {:>6}",
        r["client"].as_str().unwrap_or("?"),
        turns,
        f("peak_rss_kb") / 1024.0,
        (f("peak_rss_kb") - f("base_rss_kb")) / turns,
        f("cpu_ms") * 1000.0 / events,
        f("first_token_p50_ms"),
        f("first_token_p99_ms"),
        f("connected_p99_ms"),
        f("wall_ms") / 1000.0,
        connections,
        f("completed"),
    );
}

/// The child: `turns` turns at once on one client; one JSON report line.
async fn rust_turns(url: String, turns: usize) -> Value {
    let base_rss_kb = status_kb("VmRSS");
    let cpu0 = cpu_ms();
    let mut config = RealtimeConfig::default();
    // Tuning knobs: REALTIME_BENCH_PER_CONNECTION, REALTIME_BENCH_CONNECTIONS,
    // REALTIME_BENCH_DIALS.
    let knob = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(turns) = knob("REALTIME_BENCH_PER_CONNECTION") {
        config = config.max_turns_per_connection(turns);
    }
    if let Some(connections) = knob("REALTIME_BENCH_CONNECTIONS") {
        config = config.max_connections(connections);
    }
    if let Some(dials) = knob("REALTIME_BENCH_DIALS") {
        config = config.max_concurrent_dials(dials);
    }
    let client = PlatosClient::builder()
        .base_url(url)
        .session_token("bench")
        .realtime(config)
        .build()
        .expect("client");
    let events = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..turns)
        .map(|i| {
            let events = events.clone();
            let mut stream = client.threads().send(format!("t{i}"), "hi");
            let sent = Instant::now();
            tokio::spawn(async move {
                let (mut first, mut up, mut done, mut n) = (None, None, false, 0);
                while let Some(item) = stream.next().await {
                    n += 1;
                    match item {
                        Ok(Event::Token(_)) if first.is_none() => first = Some(sent.elapsed()),
                        Ok(Event::Connected(_)) if up.is_none() => up = Some(sent.elapsed()),
                        Ok(Event::Done(_)) => done = true,
                        _ => {}
                    }
                }
                events.fetch_add(n, Ordering::Relaxed);
                (first, up, done)
            })
        })
        .collect();
    let mut firsts = Vec::with_capacity(turns);
    let mut ups = Vec::with_capacity(turns);
    let mut completed = 0;
    for task in tasks {
        if let Ok((first, up, done)) = task.await {
            firsts.extend(first);
            ups.extend(up);
            completed += usize::from(done);
        }
    }
    let wall = started.elapsed();
    firsts.sort();
    ups.sort();
    let pct = |v: &[Duration], p: usize| {
        v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
    };
    json!({
        "client": "rust platos-client",
        "turns": turns,
        "completed": completed,
        "events": events.load(Ordering::Relaxed),
        "base_rss_kb": base_rss_kb,
        "peak_rss_kb": status_kb("VmHWM"),
        "cpu_ms": cpu_ms() - cpu0,
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "first_token_p50_ms": pct(&firsts, 50),
        "first_token_p99_ms": pct(&firsts, 99),
        "connected_p99_ms": pct(&ups, 99),
    })
}

/// Time from `send()` to the first event, cold and warm, with the
/// server's latency knob at 25 ms.
async fn warm_and_cold(node_dir: &std::path::Path) {
    let server = NodeServer::start(node_dir, &[("TOKENS", "1"), ("LATENCY_MS", LATENCY_MS)]);
    let first_event = |client: PlatosClient, thread: String| async move {
        let sent = Instant::now();
        let mut stream = client.threads().send(thread, "hi");
        let mut first = None;
        while let Some(item) = stream.next().await {
            if first.is_none() && matches!(&item, Ok(e) if !matches!(e, Event::Connected(_))) {
                first = Some(sent.elapsed());
            }
        }
        first.expect("no event")
    };
    let config = RealtimeConfig::default().idle_timeout(Duration::from_secs(60));
    let build = || {
        PlatosClient::builder()
            .base_url(&server.url)
            .session_token("bench")
            .realtime(config.clone())
            .build()
            .expect("client")
    };
    let mut cold = Vec::new();
    for i in 0..LATENCY_ROUNDS {
        cold.push(first_event(build(), format!("cold{i}")).await);
    }
    let warm_client = build();
    first_event(warm_client.clone(), "warmup".into()).await;
    let mut warm = Vec::new();
    for i in 0..LATENCY_ROUNDS {
        warm.push(first_event(warm_client.clone(), format!("warm{i}")).await);
    }
    cold.sort();
    warm.sort();
    let median = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1000.0;
    println!(
        "send() → first event, server latency {LATENCY_MS} ms (median of {LATENCY_ROUNDS}): \
         cold connection {:.1} ms, warm connection {:.1} ms",
        median(&cold),
        median(&warm)
    );
}

/// `VmRSS`, `VmHWM`, … of this process, in KiB.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process, in ms (clock ticks of 10 ms).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) * 10.0,
        _ => f64::NAN,
    }
}

/// tests/node/server.js as a child process; counts the connections it saw.
struct NodeServer {
    child: Child,
    url: String,
    connects: Option<std::thread::JoinHandle<usize>>,
}

impl NodeServer {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> NodeServer {
        let mut child = Command::new("node")
            .arg(dir.join("server.js"))
            .env("QUIET", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().expect("server exited").expect("read");
            if let Some(port) = line.strip_prefix("LISTENING ") {
                break port.trim().to_owned();
            }
        };
        let connects = std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .filter(|line| line.starts_with("CONNECT "))
                .count()
        });
        NodeServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            connects: Some(connects),
        }
    }

    /// Stops the server and counts the connections it logged.
    fn connections(mut self) -> usize {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.connects
            .take()
            .and_then(|counter| counter.join().ok())
            .unwrap_or(0)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

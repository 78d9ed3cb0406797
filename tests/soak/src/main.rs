//! `platos-soak`: turns and REST calls for a while against the test server,
//! which a child process keeps hitting with random faults, then a verdict.
//!
//! ```text
//! cargo run -p platos-soak -- --seconds 60        # what `cargo xtask ci` runs
//! cargo run --release -p platos-soak -- --seconds 1800 --seed 7
//! ```
//!
//! Invariants (any breach fails the run, exit code 1): every turn's stream
//! keeps the rules of `check.rs` (tokens once and in order, a skip only after
//! a `stream_gap`, one end: `done`, a recovered answer or a typed error) and
//! ends within two minutes; every REST call ends within 90 s with a value or
//! a typed error; no panic anywhere in the process; resident memory and open
//! descriptors flat over the run, and every descriptor the client opened
//! closed once it is dropped (`monitor.rs`).

mod chaos;
mod check;
mod load;
mod monitor;

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use platos_client::mint::MintOptions;
use platos_client::{PlatosClient, RealtimeConfig, ReconnectConfig, RetryConfig, Scope};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(about = "Soak the client against the test server under random faults")]
struct Args {
    /// How long the load runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the fault and load choices (a run is reproducible up to timing).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Workers running turns, each on threads of its own.
    #[arg(long, default_value_t = 8)]
    turn_workers: usize,
    /// Workers running REST calls.
    #[arg(long, default_value_t = 3)]
    rest_workers: usize,
    /// Mean pause between two faults, in milliseconds.
    #[arg(long, default_value_t = 700)]
    fault_every_ms: u64,
    #[command(subcommand)]
    serve: Option<Serve>,
}

#[derive(Subcommand, Debug)]
enum Serve {
    /// (internal) The child: the test server and the fault injector.
    #[command(hide = true)]
    Serve,
}

/// Session tokens live this long, so they expire and are refreshed during a run.
const TOKEN_TTL: std::ops::Range<u64> = 8..30;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.serve {
        Some(Serve::Serve) => rt
            .block_on(chaos::serve(
                args.seed,
                Duration::from_millis(args.fault_every_ms),
            ))
            .map(|()| true),
        None => rt.block_on(run(&args)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the child's server is and how to mint tokens for it.
struct Target {
    base_url: String,
    secret: String,
    entity_id: String,
    user_id: String,
    scope: Scope,
    agent_id: String,
}

impl Target {
    fn parse(line: &str) -> anyhow::Result<Target> {
        let v: Value = serde_json::from_str(line).context("the child's first line")?;
        let s = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .with_context(|| format!("the child did not say `{k}`"))
        };
        Ok(Target {
            base_url: s("base_url")?,
            secret: s("secret")?,
            entity_id: s("entity_id")?,
            user_id: s("user_id")?,
            scope: Scope::new(
                s("organization_id")?,
                s("project_id")?,
                s("environment_id")?,
            ),
            agent_id: s("agent_id")?,
        })
    }

    /// A token that expires `ttl` from now. Minting asks for at least 60 s of
    /// life, so shorter ones are minted as issued in the past.
    fn token(&self, ttl: Duration) -> anyhow::Result<String> {
        let life = Duration::from_secs(60).max(ttl);
        let issued = std::time::SystemTime::now() - (life - ttl);
        Ok(
            MintOptions::new(self.secret.as_str(), self.entity_id.as_str())
                .with_scope(&self.scope)
                .user_id(self.user_id.as_str())
                .ttl(life)
                .issued_at(issued)
                .mint()?,
        )
    }

    /// The client under test; `refreshes` counts the tokens it asked for.
    fn client(&self, refreshes: Arc<AtomicU64>) -> anyhow::Result<PlatosClient> {
        let target = Arc::new(self.clone_fields());
        let n = refreshes;
        Ok(PlatosClient::builder()
            .base_url(&self.base_url)
            .session_token(self.token(Duration::from_secs(TOKEN_TTL.start))?)
            .on_token_refresh(move |_| {
                let (target, n) = (target.clone(), n.clone());
                async move {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    let span = TOKEN_TTL.end - TOKEN_TTL.start;
                    target
                        .token(Duration::from_secs(TOKEN_TTL.start + i * 7 % span))
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            })
            .retry(RetryConfig::default().with_max_total_wait(Duration::from_secs(10)))
            .reconnect(
                ReconnectConfig::default()
                    .with_delays(Duration::from_millis(20), Duration::from_millis(500)),
            )
            .realtime(RealtimeConfig::default().turn_check_after_reconnect(Duration::from_secs(5)))
            .stream_buffer(256)
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    fn clone_fields(&self) -> Target {
        Target {
            base_url: self.base_url.clone(),
            secret: self.secret.clone(),
            entity_id: self.entity_id.clone(),
            user_id: self.user_id.clone(),
            scope: self.scope.clone(),
            agent_id: self.agent_id.clone(),
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let panics = Arc::new(AtomicU64::new(0));
    let hook = std::panic::take_hook();
    let counted = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        hook(info);
    }));

    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--seed", &args.seed.to_string()])
        .args(["--fault-every-ms", &args.fault_every_ms.to_string()])
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the server child")?;
    let stdin = child.stdin.take().context("child stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let first = lines
        .next_line()
        .await?
        .context("the child ended before it started")?;
    let target = Target::parse(&first)?;

    // Faults the child fired, counted by name as they come.
    let faults = load::Shared::default();
    let fault_counter = faults.clone();
    let fault_reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(name) = v["fault"].as_str()
            {
                fault_counter.add(name, 1);
            }
        }
    });

    let start = Instant::now();
    let baseline = monitor::read(Duration::ZERO).context("reading /proc/self")?;
    let refreshes = Arc::new(AtomicU64::new(0));
    let client = target.client(refreshes.clone())?;
    let stats = load::Shared::default();
    let (stop_tx, stop) = watch::channel(false);
    let mut workers = Vec::new();
    for i in 0..args.turn_workers {
        workers.push(tokio::spawn(load::turn_worker(
            i,
            client.clone(),
            target.agent_id.clone(),
            stats.clone(),
            stop.clone(),
            args.seed.wrapping_mul(1000) + i as u64,
        )));
    }
    for i in 0..args.rest_workers {
        workers.push(tokio::spawn(load::rest_worker(
            client.clone(),
            target.agent_id.clone(),
            stats.clone(),
            stop.clone(),
            args.seed.wrapping_mul(1000) + 500 + i as u64,
        )));
    }

    let run_for = Duration::from_secs(args.seconds);
    let every = (run_for / 120).max(Duration::from_secs(1));
    let mut samples = Vec::new();
    while start.elapsed() < run_for {
        tokio::time::sleep(every.min(run_for.saturating_sub(start.elapsed()))).await;
        samples.extend(monitor::read(start.elapsed()));
    }
    let _ = stop_tx.send(true);
    let drain = load::TURN_DEADLINE + Duration::from_secs(10);
    for w in workers {
        match tokio::time::timeout(drain, w).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stats.violation(format!("a worker ended abnormally: {e}")),
            Err(_) => stats.violation("a worker did not stop".into()),
        }
    }
    let loaded_for = start.elapsed();
    drop(client);
    // The client's connections close in tasks of their own: wait (bounded) for them.
    let closed_by = Instant::now() + Duration::from_secs(10);
    let mut end = monitor::read(start.elapsed()).context("reading /proc/self")?;
    while end.fds > baseline.fds && Instant::now() < closed_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
        end = monitor::read(start.elapsed()).context("reading /proc/self")?;
    }
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = fault_reader.await;

    let stats = stats.take();
    let faults = faults.take();
    let mut violations = stats.violations;
    violations.extend(monitor::verdict(&samples, baseline.fds, end.fds));
    let panics = panics.load(Ordering::SeqCst);
    if panics > 0 {
        violations.push(format!("{panics} panic(s)"));
    }
    let count = |prefix: &str, suffix: &str| -> u64 {
        stats
            .counts
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
            .map(|(_, v)| v)
            .sum()
    };
    if count("turn.ws.complete", "") == 0 || count("turn.http.complete", "") == 0 {
        violations.push("no turn completed on one of the lanes: the load made no progress".into());
    }
    // The first token lives 8 s: a run that never refreshed one never
    // exercised expiry.
    if args.seconds >= 30 && refreshes.load(Ordering::Relaxed) == 0 {
        violations.push("no token expired and was refreshed during the run".into());
    }
    if count("rest.", ".ok") == 0 {
        violations.push("no REST call succeeded".into());
    }

    println!(
        "soak: {} s of load (seed {}, {} turn workers, {} REST workers, a fault every ~{} ms)",
        loaded_for.as_secs(),
        args.seed,
        args.turn_workers,
        args.rest_workers,
        args.fault_every_ms
    );
    let total_faults: u64 = faults.counts.values().sum();
    println!("faults fired: {total_faults}");
    for (k, v) in &faults.counts {
        println!("  {k:<24} {v}");
    }
    println!(
        "turns: {} ({} complete), REST calls: {} ({} ok)",
        count("turn.ws.", "") + count("turn.http.", ""),
        count("turn.ws.complete", "") + count("turn.http.complete", ""),
        count("rest.", ""),
        count("rest.", ".ok"),
    );
    for (k, v) in &stats.counts {
        println!("  {k:<40} {v}");
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let q = samples.len() / 4;
    if let (Some(early), Some(last)) = (samples.get(q), samples.last()) {
        println!(
            "memory: RSS {:.1} MiB at {} s, {:.1} MiB at {} s (peak {:.1} MiB); open fds {} → {} \
             (peak {}); {} before the client, {} after it was dropped",
            mib(early.rss_kib),
            early.at.as_secs(),
            mib(last.rss_kib),
            last.at.as_secs(),
            mib(peak),
            early.fds,
            last.fds,
            peak_fds,
            baseline.fds,
            end.fds
        );
    }
    println!("samples (s: RSS KiB, fds):");
    let stride = (samples.len() / 12).max(1);
    for s in samples.iter().step_by(stride) {
        println!("  {:>5}: {:>7} {:>4}", s.at.as_secs(), s.rss_kib, s.fds);
    }
    println!(
        "token refreshes: {} (tokens live {}–{} s)",
        refreshes.load(Ordering::Relaxed),
        TOKEN_TTL.start,
        TOKEN_TTL.end
    );
    println!("panics: {panics}");
    if violations.is_empty() {
        println!("violations: none");
        Ok(true)
    } else {
        println!("violations: {}", violations.len());
        for v in violations.iter().take(50) {
            println!("  - {v}");
        }
        Ok(false)
    }
}

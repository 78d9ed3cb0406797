//! `cargo xtask build-cost`: what platos-client adds to a user's cold debug
//! build, measured (never asserted in a test: the figure depends on the
//! machine and its load).
//!
//! Three scratch applications under `target/build-cost/`, each its own
//! workspace with its own lockfile (as a user's app is), share the same
//! third-party dependencies at their defaults (`tokio` with `full`,
//! `reqwest`, `serde`, `serde_json`):
//!
//! - `baseline`: those alone;
//! - `default`: plus `platos-client` with its default features;
//! - `rest-only`: plus `platos-client` with `rustls` only.
//!
//! Sources are fetched first, so download time is not counted; then each is
//! built cold (`cargo build`, a fresh `CARGO_TARGET_DIR`) one after the
//! other, and the table prints each wall time and its cost over the baseline.
//! `--timings` keeps cargo's HTML report of each build (where the time goes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One scratch application: its name and its `platos-client` line, if any.
struct App {
    name: &'static str,
    sdk: Option<&'static str>,
}

const APPS: [App; 3] = [
    App {
        name: "baseline",
        sdk: None,
    },
    App {
        name: "default",
        sdk: Some(""),
    },
    App {
        name: "rest-only",
        sdk: Some(r#", default-features = false, features = ["rustls"]"#),
    },
];

pub fn run(root: &Path, cargo: &str, timings: bool) -> Result<()> {
    let dir = root.join("target/build-cost");
    let sdk_path = root.join("platos-client");
    let mut rows = Vec::new();
    for app in &APPS {
        let app_dir = write_app(&dir, app, &sdk_path)?;
        // Resolved like a new user's app (newest compatible versions), once;
        // later runs reuse the lockfile so runs compare like with like.
        if !app_dir.join("Cargo.lock").exists() {
            cargo_in(cargo, &app_dir, &["generate-lockfile"], None)?;
        }
        cargo_in(cargo, &app_dir, &["fetch"], None)?;
    }
    for app in &APPS {
        let app_dir = dir.join(app.name);
        let target = dir.join(format!("target-{}", app.name));
        if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("removing {}", target.display()))?;
        }
        let mut args = vec!["build", "--offline"];
        if timings {
            args.push("--timings");
        }
        let started = Instant::now();
        cargo_in(cargo, &app_dir, &args, Some(&target))?;
        let elapsed = started.elapsed();
        let crates = count_units(&target)?;
        eprintln!(
            "{}: {:.1} s, {crates} crates",
            app.name,
            elapsed.as_secs_f64()
        );
        rows.push((app.name, elapsed, crates));
    }
    print_table(&rows);
    if timings {
        println!(
            "\ncargo's timing reports: {}/target-*/cargo-timings/",
            dir.display()
        );
    }
    Ok(())
}

fn write_app(dir: &Path, app: &App, sdk_path: &Path) -> Result<PathBuf> {
    let app_dir = dir.join(app.name);
    std::fs::create_dir_all(app_dir.join("src"))?;
    let sdk_line = match app.sdk {
        Some(extra) => format!(
            "platos-client = {{ path = {:?}{extra} }}\n",
            sdk_path.display().to_string()
        ),
        None => String::new(),
    };
    // An empty [workspace] table: the app is its own workspace, not a
    // member of ours, and keeps its own lockfile.
    let manifest = format!(
        r#"[package]
name = "build-cost-{name}"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
tokio = {{ version = "1", features = ["full"] }}
reqwest = "0.13"
serde = "1"
serde_json = "1"
{sdk_line}"#,
        name = app.name
    );
    // Every crate is used, so the link step includes it.
    let sdk_use = if app.sdk.is_some() {
        "    let _ = platos_client::PlatosClient::builder();\n"
    } else {
        ""
    };
    let main = format!(
        r#"#[tokio::main]
async fn main() {{
    let _ = reqwest::Client::new();
    let _: serde_json::Value = serde_json::from_str("{{}}").unwrap_or_default();
    let _: Option<serde::de::IgnoredAny> = serde_json::from_str("1").ok();
{sdk_use}}}
"#
    );
    write_if_changed(&app_dir.join("Cargo.toml"), &manifest)?;
    write_if_changed(&app_dir.join("src/main.rs"), &main)?;
    Ok(app_dir)
}

/// Leaves an unchanged file alone (and its lockfile valid).
fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    if path.ends_with("Cargo.toml") {
        // A new manifest needs a new resolve.
        let _ = std::fs::remove_file(path.with_file_name("Cargo.lock"));
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn cargo_in(cargo: &str, dir: &Path, args: &[&str], target: Option<&Path>) -> Result<()> {
    eprintln!("\n==> {}: cargo {}", dir.display(), args.join(" "));
    let mut command = Command::new(cargo);
    command.args(args).current_dir(dir);
    // The app is built as a user's would be: none of our workspace's
    // settings or target dir leak in.
    command
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    match target {
        Some(target) => command.env("CARGO_TARGET_DIR", target),
        None => command.env_remove("CARGO_TARGET_DIR"),
    };
    let status = command.status().context("starting cargo")?;
    if !status.success() {
        bail!(
            "cargo {} failed in {} ({status})",
            args.join(" "),
            dir.display()
        );
    }
    Ok(())
}

/// How many crates the build compiled: one fingerprint directory each.
fn count_units(target: &Path) -> Result<usize> {
    let dir = target.join("debug/.fingerprint");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .count())
}

fn print_table(rows: &[(&str, Duration, usize)]) {
    let baseline = rows.first().map(|r| r.1).unwrap_or_default();
    println!("\n| build | cold debug build | over baseline | units |");
    println!("|---|---|---|---|");
    for (name, elapsed, crates) in rows {
        let over = elapsed.as_secs_f64() - baseline.as_secs_f64();
        let over = if *name == "baseline" {
            "-".to_owned()
        } else {
            format!("{over:+.1} s")
        };
        println!(
            "| {name} | {:.1} s | {over} | {crates} |",
            elapsed.as_secs_f64()
        );
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("\n({cores} cores; `cargo build` of each scratch app with a fresh target dir)");
}

//! `cargo xtask codegen [--check]`, `cargo xtask spec-diff`, `cargo xtask ci` and
//! `cargo xtask build-cost`.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use xtask::{generate_all, workspace_root};

mod build_cost;
mod user_ci;

#[derive(Parser)]
#[command(name = "xtask", about = "Platos Rust SDK project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate the REST client and the event enum from spec/.
    Codegen {
        /// Do not write: fail with a diff when committed code differs.
        #[arg(long)]
        check: bool,
    },
    /// Compare spec/ with the operations a server serves (the runtime's
    /// inventory, its snapshot in spec/upstream/, or a test server).
    SpecDiff {
        /// An inventory file (relative to the current directory) or URL
        /// (`…/api/v1/agent/openapi.json`); default: the snapshot,
        /// spec/upstream/operations.json.
        #[arg(long, value_name = "FILE|URL")]
        from: Option<String>,
        /// Exit 1 on a difference spec/deliberate-differences.yaml does not
        /// list, or an entry that matches nothing; print only those.
        #[arg(long)]
        check: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write what --from serves to the snapshot.
        #[arg(long)]
        save: bool,
        /// Seconds a URL may take, connect to last byte.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Run every check CI runs, in order, stopping at the first failure.
    Ci {
        /// Run only one of the user-machine steps: features, msrv, package
        /// or newest-deps.
        #[arg(long)]
        step: Option<String>,
    },
    /// Measure what platos-client adds to a user's cold debug build
    /// (scratch apps under target/build-cost/).
    BuildCost {
        /// Keep cargo's `--timings` report of each build.
        #[arg(long)]
        timings: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Codegen { check } => codegen(check),
        Task::SpecDiff {
            from,
            check,
            json,
            save,
            timeout,
        } => {
            let args = xtask::spec_diff::Args {
                from,
                check,
                json,
                save,
                timeout: Duration::from_secs(timeout),
            };
            return ExitCode::from(xtask::spec_diff::main(&workspace_root(), &args));
        }
        Task::Ci { step: None } => ci(),
        Task::Ci { step: Some(step) } => user_ci::step(&step, &cargo()),
        Task::BuildCost { timings } => build_cost::run(&workspace_root(), &cargo(), timings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn codegen(check: bool) -> Result<()> {
    let root = workspace_root();
    let outputs = generate_all(&root)?;
    let mut drifted = Vec::new();
    for out in &outputs {
        let current = std::fs::read_to_string(&out.path).unwrap_or_default();
        if current == out.contents {
            continue;
        }
        let rel = out.path.strip_prefix(&root).unwrap_or(&out.path);
        if check {
            let diff = similar::TextDiff::from_lines(&current, &out.contents);
            print!(
                "{}",
                diff.unified_diff().context_radius(3).header(
                    &format!("a/{}", rel.display()),
                    &format!("b/{}", rel.display())
                )
            );
            drifted.push(rel.display().to_string());
        } else {
            if let Some(dir) = out.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out.path, &out.contents)
                .with_context(|| format!("writing {}", out.path.display()))?;
            eprintln!("wrote {}", rel.display());
        }
    }
    if !drifted.is_empty() {
        bail!(
            "generated code is out of date with spec/ ({}); run `cargo xtask codegen`",
            drifted.join(", ")
        );
    }
    Ok(())
}

/// Runs a command from the workspace root, failing on a non-zero exit.
fn run(label: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("\n==> {label}: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{label} failed ({status})");
    }
    Ok(())
}

/// The Node `socket.io` server (what Platos runs) is a test peer; its
/// packages install into tests/node/node_modules from the committed lock file.
fn install_node_peer() -> Result<()> {
    let dir = workspace_root().join("tests/node");
    if !dir.join("package-lock.json").exists() {
        return Ok(());
    }
    run(
        "node peer",
        "npm",
        &["ci", "--prefix", "tests/node", "--no-audit", "--no-fund"],
        &[],
    )
}

/// The published Python SDK is a test peer too (tests/integration/tests/parity_python.rs):
/// a venv in tests/parity/.venv, created once, with the pinned requirements installed
/// (pip makes that a no-op when they already are).
fn install_python_peer() -> Result<()> {
    let dir = workspace_root().join("tests/parity");
    if !dir.join("requirements.txt").exists() {
        return Ok(());
    }
    if !dir.join(".venv/bin/python").exists() {
        run(
            "python peer venv",
            "python3",
            &["-m", "venv", "tests/parity/.venv"],
            &[],
        )?;
    }
    run(
        "python peer",
        "tests/parity/.venv/bin/pip",
        &[
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            "tests/parity/requirements.txt",
        ],
        &[],
    )
}

/// The SDK as an application outside the workspace sees it (tests/consumer:
/// its own lockfile, reqwest and rustls at their defaults): host TLS intact,
/// real TLS and the forward proxy (needs the node peer's packages). It shares
/// the workspace's target dir, so crates built with the same features are
/// built once.
fn consumer_checks(cargo: &str) -> Result<()> {
    let target = workspace_root().join("target");
    let target = target.to_string_lossy();
    run(
        "consumer app format",
        cargo,
        &[
            "fmt",
            "--manifest-path",
            "tests/consumer/Cargo.toml",
            "--check",
        ],
        &[],
    )?;
    run(
        "consumer app (tests/consumer)",
        cargo,
        &["test", "--manifest-path", "tests/consumer/Cargo.toml"],
        &[("CARGO_TARGET_DIR", &target)],
    )
}

/// The cargo that runs us (so `cargo +toolchain xtask` keeps its toolchain).
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The cargo-semver-checks release CI installs (pinned: a new release may
/// add lints, which should show up on purpose).
const SEMVER_CHECKS_VERSION: &str = "0.51.0";

/// The public API of the published crates against the 1.0 baseline: the git
/// revision in `semver/baseline` (see `semver/README.md`). A break of the API
/// it recorded fails CI until the version says so or the baseline moves.
/// The tool is installed once (`cargo install`: 306 crates, 13 CPU-minutes)
/// and found on PATH after that.
fn semver_check(cargo: &str) -> Result<()> {
    let root = workspace_root();
    let baseline =
        std::fs::read_to_string(root.join("semver/baseline")).context("reading semver/baseline")?;
    let rev = baseline
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .context("semver/baseline names no revision")?
        .to_owned();
    let installed = Command::new(cargo)
        .args(["semver-checks", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(SEMVER_CHECKS_VERSION)
        });
    if !installed {
        run(
            "install cargo-semver-checks",
            cargo,
            &[
                "install",
                "--locked",
                "cargo-semver-checks",
                "--version",
                &format!("={SEMVER_CHECKS_VERSION}"),
            ],
            &[],
        )?;
    }
    run(
        "semver check",
        cargo,
        &[
            "semver-checks",
            "check-release",
            "--package",
            "platos-client",
            "--package",
            "platos-events",
            "--baseline-rev",
            &rev,
        ],
        &[],
    )
}

fn ci() -> Result<()> {
    let cargo = cargo();
    run("format", &cargo, &["fmt", "--all", "--check"], &[])?;
    eprintln!("\n==> codegen drift check");
    codegen(true)?;
    // Every difference between spec/ and the runtime's snapshot is listed with a reason.
    eprintln!(
        "\n==> spec-diff --check (against {})",
        xtask::spec_diff::SNAPSHOT
    );
    let spec_diff = xtask::spec_diff::Args {
        from: None,
        check: true,
        json: false,
        save: false,
        timeout: Duration::from_secs(30),
    };
    if xtask::spec_diff::main(&workspace_root(), &spec_diff) != 0 {
        bail!("spec-diff --check failed");
    }
    run(
        "clippy",
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    user_ci::feature_matrix(&cargo)?;
    user_ci::msrv_dependencies(&cargo)?;
    user_ci::package(&cargo)?;
    install_node_peer()?;
    install_python_peer()?;
    run("tests", &cargo, &["test", "--workspace"], &[])?;
    consumer_checks(&cargo)?;
    // A minute of turns and REST calls under random faults, invariants checked
    // (tests/soak); the report of a 30-minute run is in the README.
    run(
        "soak (60 s)",
        &cargo,
        &["run", "-q", "-p", "platos-soak", "--", "--seconds", "60"],
        &[],
    )?;
    run(
        "docs",
        &cargo,
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    user_ci::newest_dependencies(&cargo)?;
    semver_check(&cargo)?;
    eprintln!("\nxtask ci: all checks passed");
    Ok(())
}

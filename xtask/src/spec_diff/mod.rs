//! `cargo xtask spec-diff [--from FILE|URL] [--check] [--json] [--save]`: what
//! our spec (`spec/openapi.yaml` + `spec/v1.yaml`) says against what a server
//! serves (the runtime's operation inventory, its snapshot in
//! `spec/upstream/operations.json` (the default), or the test server's
//! `GET /api/v1/agent/openapi.json`).
//!
//! Exit codes: 0 (report printed; with `--check`, nothing unlisted), 1
//! (`--check` found an unlisted difference or a stale entry), 2 (bad input:
//! one line naming it).

pub mod compare;
pub mod facts;
pub mod listed;
pub mod report;
pub mod snapshot;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use compare::{Difference, Kind, compare};
pub use facts::{BadInput, Class, Document, Field, Operation};
pub use listed::{Entry, Listed};
pub use report::Report;
pub use snapshot::Source;

/// The snapshot, relative to the workspace root.
pub const SNAPSHOT: &str = "spec/upstream/operations.json";
/// The reviewed list of deliberate differences.
pub const DIFFERENCES: &str = "spec/deliberate-differences.yaml";
/// The largest inventory read (the runtime's is about 430 kB).
const MAX_BYTES: u64 = 32 * 1024 * 1024;

/// The command line of `cargo xtask spec-diff`.
#[derive(Debug, Clone)]
pub struct Args {
    /// A file or an `http(s)://` URL; the snapshot when `None`.
    pub from: Option<String>,
    pub check: bool,
    pub json: bool,
    pub save: bool,
    /// For a URL: the whole request, connect to last byte.
    pub timeout: Duration,
}

/// Runs the command; returns the process exit code.
pub fn main(root: &Path, args: &Args) -> u8 {
    match run(root, args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
                );
            } else {
                print!("{}", report.to_text(args.check));
            }
            if args.check && !report.passes() {
                eprintln!(
                    "xtask spec-diff: {} unlisted difference(s), {} stale entry(ies): fix spec/ or list them in {DIFFERENCES} with a reason",
                    report.unlisted().count(),
                    report.stale.len()
                );
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("xtask spec-diff: {e}");
            2
        }
    }
}

fn run(root: &Path, args: &Args) -> Result<Report, BadInput> {
    if args.save && args.from.is_none() {
        return Err(BadInput("--save needs --from FILE|URL".into()));
    }
    let from = match &args.from {
        Some(from) => from.clone(),
        None => root.join(SNAPSHOT).display().to_string(),
    };
    let (source, doc) = load(&from, args.timeout)?;
    if args.save {
        if doc.inventory != "upstream" {
            return Err(BadInput(format!(
                "--save keeps the runtime's inventory; {from} is a {} listing",
                doc.inventory
            )));
        }
        let path = root.join(SNAPSHOT);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BadInput(format!("cannot create {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, snapshot::write(&source, &doc))
            .map_err(|e| BadInput(format!("cannot write {SNAPSHOT}: {e}")))?;
        eprintln!("wrote {SNAPSHOT} ({} operations)", doc.operations.len());
    }
    diff(root, source, &doc)
}

/// Compares our spec with `doc` and applies the differences file's section for it.
pub fn diff(root: &Path, source: Source, doc: &Document) -> Result<Report, BadInput> {
    let ours = ours(root)?;
    let listed = read_text(&root.join(DIFFERENCES), DIFFERENCES)?;
    let listed = Listed::parse(&listed).map_err(|e| BadInput(format!("{DIFFERENCES}: {e}")))?;
    let mut differences = compare(&ours, &doc.operations);
    // The test server's parameter names are its handlers' variables: never on the wire.
    if doc.inventory == "test-server" {
        differences.retain(|d| d.kind != Kind::PathParams);
    }
    let stale = listed::apply(listed.section(&doc.inventory)?, &mut differences);
    Ok(Report {
        source,
        differences,
        stale,
    })
}

/// Our operations: `spec/openapi.yaml` then `spec/v1.yaml`.
pub fn ours(root: &Path) -> Result<Vec<Operation>, BadInput> {
    let mut all = Vec::new();
    for name in ["spec/openapi.yaml", "spec/v1.yaml"] {
        let text = read_text(&root.join(name), name)?;
        let doc: Value = serde_yaml::from_str(&text)
            .map_err(|e| BadInput(format!("{name}: {}", one_line(&e.to_string()))))?;
        let doc = facts::read_openapi(&doc).map_err(|e| BadInput(format!("{name}: {e}")))?;
        all.extend(doc.operations);
    }
    Ok(all)
}

/// Reads `from` (a snapshot, an OpenAPI 3.x file, or a URL serving one).
pub fn load(from: &str, timeout: Duration) -> Result<(Source, Document), BadInput> {
    let bytes = if from.starts_with("http://") || from.starts_with("https://") {
        fetch(from, timeout)?
    } else {
        std::fs::read(from).map_err(|e| BadInput(format!("cannot read {from}: {e}")))?
    };
    let doc = parse(&bytes).map_err(|e| BadInput(format!("{from}: {e}")))?;
    if snapshot::is_snapshot(&doc) {
        return snapshot::read(doc).map_err(|e| BadInput(format!("{from}: {e}")));
    }
    let document = facts::read_openapi(&doc).map_err(|e| BadInput(format!("{from}: {e}")))?;
    let source = Source {
        read_from: from.to_owned(),
        read_at: utc_now(),
        sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        title: document.title.clone(),
        version: document.version.clone(),
        inventory: document.inventory.clone(),
    };
    Ok((source, document))
}

/// JSON, or YAML (which OpenAPI documents may also be).
fn parse(bytes: &[u8]) -> Result<Value, BadInput> {
    let json_error = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    match serde_yaml::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(BadInput(format!(
            "not a JSON or YAML document ({json_error})"
        ))),
    }
}

/// GETs `url` with the credentials of the environment (`PLATOS_SESSION_TOKEN`,
/// or `PLATOS_API_KEY` with the `PLATOS_*_ID` scope), within `timeout`.
pub fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, BadInput> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url).header("accept", "application/json");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(token) = env("PLATOS_SESSION_TOKEN") {
        request = request.header("x-platos-session-token", &token);
    } else if let Some(key) = env("PLATOS_API_KEY") {
        request = request.header("authorization", &format!("Bearer {key}"));
        for (var, header) in [
            ("PLATOS_ORGANIZATION_ID", "x-platos-organization-id"),
            ("PLATOS_PROJECT_ID", "x-platos-project-id"),
            ("PLATOS_ENVIRONMENT_ID", "x-platos-environment-id"),
            ("PLATOS_USER_ID", "x-platos-user-id"),
        ] {
            if let Some(v) = env(var) {
                request = request.header(header, &v);
            }
        }
    }
    let mut response = request
        .call()
        .map_err(|e| BadInput(format!("cannot read {url}: {}", one_line(&e.to_string()))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(BadInput(format!("cannot read {url}: HTTP {status}")));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_BYTES)
        .read_to_vec()
        .map_err(|e| BadInput(format!("cannot read {url}: {}", one_line(&e.to_string()))))
}

fn read_text(path: &Path, name: &str) -> Result<String, BadInput> {
    std::fs::read_to_string(path).map_err(|e| BadInput(format!("cannot read {name}: {e}")))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Now, UTC, `2026-12-06T09:30:00Z` (no date crate for one timestamp).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

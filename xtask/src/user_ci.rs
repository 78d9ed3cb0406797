//! The CI steps that look at the SDK as a user's machine sees it: each
//! Cargo feature alone, the declared `rust-version`, the newest compatible
//! dependencies, and the crates as `cargo package` ships them. Each step is
//! one function, called in order by `ci()` in main.rs.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xtask::workspace_root;

use crate::run;

/// TLS backends of platos-client: each alone is the REST-only build (and
/// no TLS at all, `http://` only, builds too).
const TLS_FEATURES: &[&str] = &["rustls", "rustls-ring", "native-tls"];
/// The optional API features, each checked alone beside the default TLS.
const API_FEATURES: &[&str] = &["realtime", "v1", "structured", "mint"];
/// Features that only switch reqwest's decoders on (no code of ours is
/// behind them): checked together with the rest, not alone.
const CODEC_FEATURES: &str = "gzip,zstd,brotli";
/// The crates users depend on (platos-test-server declares its own, higher
/// rust-version: socketioxide needs 1.94).
const LIBRARY_CRATES: &[&str] = &["platos-client", "platos-events"];
/// The crates published to crates.io.
const PUBLISHED_CRATES: &[&str] = &["platos-client", "platos-events", "platos-test-server"];

/// One step by name (`cargo xtask ci --step <name>`).
pub fn step(name: &str, cargo: &str) -> Result<()> {
    match name {
        "features" => feature_matrix(cargo),
        "msrv" => msrv_dependencies(cargo),
        "package" => package(cargo),
        "newest-deps" => newest_dependencies(cargo),
        other => bail!("no step {other:?} (features, msrv, package, newest-deps)"),
    }
}

/// Runs `f` and prints how long it took, for the CI log.
fn timed(label: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let started = Instant::now();
    let result = f();
    eprintln!(
        "==> {label}: {:.0} s",
        started.elapsed().as_secs_f64().round()
    );
    result
}

/// `cargo check` of platos-client for each TLS backend alone (REST only),
/// each with every API feature, and each API feature alone with `rustls`;
/// then the REST-only unit tests (the default build's run in the workspace
/// tests). A check (by clippy) because a build proves nothing more here.
pub fn feature_matrix(cargo: &str) -> Result<()> {
    timed("feature matrix", || {
        let all_api = format!("{},{CODEC_FEATURES}", API_FEATURES.join(","));
        let mut combos: Vec<String> = vec![String::new()];
        for tls in TLS_FEATURES {
            combos.push((*tls).to_owned());
            combos.push(format!("{tls},{all_api}"));
        }
        for api in API_FEATURES {
            combos.push(format!("{},{api}", TLS_FEATURES[0]));
        }
        // clippy, not RUSTFLAGS: warnings (dead code a feature leaves
        // behind) are denied in our crate only, and the dependencies reuse
        // the check builds of the clippy step.
        for features in &combos {
            run(
                &format!("features {features}"),
                cargo,
                &[
                    "clippy",
                    "-q",
                    "-p",
                    "platos-client",
                    "--no-default-features",
                    "--features",
                    features,
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )?;
        }
        run(
            "REST-only unit tests",
            cargo,
            &[
                "test",
                "-q",
                "-p",
                "platos-client",
                "--lib",
                "--no-default-features",
                "--features",
                TLS_FEATURES[0],
            ],
            &[],
        )
    })
}

/// The declared `rust-version`: no toolchain of that version can be
/// installed here (rustup's servers are out of reach; Debian ships 1.85 and
/// 1.96), so what CI verifies is (1) clippy's `incompatible_msrv`, in the
/// clippy step, for our use of std, and (2) here, that every crate the
/// library crates can depend on (all features, every target) declares a
/// `rust-version` no newer than ours, in the committed lockfile. The
/// language features of our own code are not checked against it.
pub fn msrv_dependencies(cargo: &str) -> Result<()> {
    timed("msrv of dependencies", || {
        eprintln!("\n==> rust-version of the library crates' dependencies");
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--all-features",
                "--locked",
            ])
            .current_dir(workspace_root())
            .output()
            .context("running cargo metadata")?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: Value = serde_json::from_slice(&output.stdout)?;
        let too_new = newer_than_declared(&metadata)?;
        if !too_new.is_empty() {
            bail!(
                "dependencies of the library crates need a newer Rust than they declare:\n  {}",
                too_new.join("\n  ")
            );
        }
        Ok(())
    })
}

/// Each normal or build dependency (transitively) of [`LIBRARY_CRATES`]
/// whose `rust-version` is newer than its dependent library crate's.
fn newer_than_declared(metadata: &Value) -> Result<Vec<String>> {
    let packages = metadata["packages"]
        .as_array()
        .context("metadata without packages")?;
    let by_id: HashMap<&str, &Value> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .context("metadata without a resolve graph")?;
    let deps_of: HashMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|node| {
            let deps = node["deps"]
                .as_array()?
                .iter()
                .filter(|dep| {
                    // Dev-dependencies are not a user's: only normal and build.
                    dep["dep_kinds"].as_array().is_some_and(|kinds| {
                        kinds.iter().any(|k| k["kind"].as_str() != Some("dev"))
                    })
                })
                .filter_map(|dep| dep["pkg"].as_str())
                .collect();
            Some((node["id"].as_str()?, deps))
        })
        .collect();

    let mut too_new = BTreeSet::new();
    for name in LIBRARY_CRATES {
        let root = packages
            .iter()
            .find(|p| p["name"] == *name && p["source"].is_null())
            .with_context(|| format!("{name} is not in the workspace"))?;
        let declared = root["rust_version"]
            .as_str()
            .and_then(parse_version)
            .with_context(|| format!("{name} declares no rust-version"))?;
        let mut seen = BTreeSet::new();
        let mut stack = vec![root["id"].as_str().unwrap_or_default()];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(pkg) = by_id.get(id)
                && let Some(needs) = pkg["rust_version"].as_str()
                && parse_version(needs).is_some_and(|v| v > declared)
            {
                too_new.insert(format!(
                    "{} {} needs {needs} ({name} declares {}.{}.{})",
                    pkg["name"].as_str().unwrap_or("?"),
                    pkg["version"].as_str().unwrap_or("?"),
                    declared.0,
                    declared.1,
                    declared.2
                ));
            }
            stack.extend(deps_of.get(id).into_iter().flatten());
        }
        eprintln!(
            "{name}: {} crates checked against rust-version {}.{}.{}",
            seen.len(),
            declared.0,
            declared.1,
            declared.2
        );
    }
    Ok(too_new.into_iter().collect())
}

/// `1.88` or `1.88.0` as a comparable triple.
fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The newest compatible dependencies, as a new user's `cargo add` resolves
/// them today (any rust-version): a copy of the workspace's files under
/// target/newest-deps/src, `cargo update` there, and `cargo check` of the
/// published crates with every feature and warnings denied. The committed
/// lockfile is left alone.
pub fn newest_dependencies(cargo: &str) -> Result<()> {
    timed("newest dependencies", || {
        let root = workspace_root();
        let scratch = root.join("target/newest-deps");
        let copy = scratch.join("src");
        if copy.exists() {
            std::fs::remove_dir_all(&copy)
                .with_context(|| format!("removing {}", copy.display()))?;
        }
        copy_tracked_files(&root, &copy)?;
        let target = scratch.join("target");
        let target = target.to_string_lossy();
        let in_copy = |label: &str, args: &[&str], envs: &[(&str, &str)]| -> Result<()> {
            eprintln!("\n==> {label}: cargo {}", args.join(" "));
            let status = Command::new(cargo)
                .args(args)
                .envs(envs.iter().copied())
                .env("CARGO_TARGET_DIR", &*target)
                .current_dir(&copy)
                .status()
                .with_context(|| format!("starting {cargo}"))?;
            if !status.success() {
                bail!("{label} failed ({status})");
            }
            Ok(())
        };
        in_copy(
            "newest dependencies: update",
            &["update"],
            &[("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "allow")],
        )?;
        let mut args = vec!["check", "-q", "--all-features"];
        for name in PUBLISHED_CRATES {
            args.extend(["-p", name]);
        }
        in_copy(
            "newest dependencies: check",
            &args,
            &[("RUSTFLAGS", "-D warnings")],
        )
    })
}

/// Copies the files git tracks or would track (not ignored), as they are in
/// the work tree.
fn copy_tracked_files(root: &Path, to: &Path) -> Result<()> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    if !output.status.success() {
        bail!("git ls-files failed");
    }
    for rel in output.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).context("a non-UTF-8 path")?);
        let from = root.join(rel);
        // Deleted in the work tree but not yet in the index.
        if !from.is_file() {
            continue;
        }
        let dest = to.join(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&from, &dest).with_context(|| format!("copying {}", rel.display()))?;
    }
    Ok(())
}

/// `cargo package` of the published crates together (cargo resolves their
/// path dependencies on each other as one release), so a dependency without
/// a version or a missing readme fails here, not at release; then a `cargo
/// check` of the packaged sources, unpacked into a scratch workspace that
/// shares our lockfile, profiles and target dir, so a source file left out
/// of a package fails too. (`cargo package`'s own verification builds each
/// crate cold in a target dir of its own: minutes on 2 cores.)
pub fn package(cargo: &str) -> Result<()> {
    timed("package", || {
        let root = workspace_root();
        let mut args = vec!["package", "--allow-dirty", "--no-verify", "-q"];
        for name in PUBLISHED_CRATES {
            args.extend(["-p", name]);
        }
        run("package", cargo, &args, &[])?;

        let version = crate_version(&root)?;
        let scratch = root.join("target/package-check");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("removing {}", scratch.display()))?;
        }
        std::fs::create_dir_all(&scratch)?;
        let mut members = Vec::new();
        let mut patches = String::new();
        for name in PUBLISHED_CRATES {
            let dir = format!("{name}-{version}");
            let archive = root.join(format!("target/package/{dir}.crate"));
            let status = Command::new("tar")
                .arg("xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&scratch)
                .status()
                .context("starting tar")?;
            if !status.success() {
                bail!("unpacking {} failed", archive.display());
            }
            members.push(format!("{dir:?}"));
            patches.push_str(&format!("{name} = {{ path = {dir:?} }}\n"));
        }
        // Our profiles too: dependencies then match the ones already built.
        let ours = std::fs::read_to_string(root.join("Cargo.toml"))?;
        let profiles = ours.find("\n[profile").map_or("", |at| &ours[at..]);
        let manifest = format!(
            "[workspace]\nresolver = \"3\"\nmembers = [{}]\n\n[patch.crates-io]\n{patches}{profiles}",
            members.join(", ")
        );
        std::fs::write(scratch.join("Cargo.toml"), manifest)?;
        std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))?;
        eprintln!("\n==> packaged sources: cargo check --workspace (in target/package-check)");
        let status = Command::new(cargo)
            .args(["check", "-q", "--workspace"])
            .env("CARGO_TARGET_DIR", root.join("target"))
            .current_dir(&scratch)
            .status()
            .with_context(|| format!("starting {cargo}"))?;
        if !status.success() {
            bail!("the packaged crates do not build ({status})");
        }
        Ok(())
    })
}

/// The workspace's `version` (every published crate inherits it).
fn crate_version(root: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| {
            let value = l.trim().strip_prefix("version")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .context("no version in [workspace.package]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_with_missing_parts_as_zero() {
        assert_eq!(parse_version("1.88"), Some((1, 88, 0)));
        assert_eq!(parse_version("1.88.1"), Some((1, 88, 1)));
        assert!(parse_version("1.94").unwrap() > parse_version("1.88.9").unwrap());
        assert_eq!(parse_version("x"), None);
    }

    /// A graph where a normal dependency is too new, a dev-dependency is
    /// too new (ignored), and an old one is fine.
    #[test]
    fn finds_only_normal_dependencies_newer_than_declared() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "c", "name": "platos-client", "version": "0.1.0", "source": null, "rust_version": "1.88"},
                {"id": "e", "name": "platos-events", "version": "0.1.0", "source": null, "rust_version": "1.88"},
                {"id": "new", "name": "new", "version": "2.0.0", "source": "registry", "rust_version": "1.90"},
                {"id": "old", "name": "old", "version": "1.0.0", "source": "registry", "rust_version": "1.70"},
                {"id": "devonly", "name": "devonly", "version": "1.0.0", "source": "registry", "rust_version": "1.95"},
                {"id": "deep", "name": "deep", "version": "0.3.0", "source": "registry", "rust_version": "1.89.0"}
            ],
            "resolve": {"nodes": [
                {"id": "c", "deps": [
                    {"pkg": "old", "dep_kinds": [{"kind": null}]},
                    {"pkg": "devonly", "dep_kinds": [{"kind": "dev"}]}
                ]},
                {"id": "e", "deps": [{"pkg": "new", "dep_kinds": [{"kind": "build"}]}]},
                {"id": "old", "deps": [{"pkg": "deep", "dep_kinds": [{"kind": null}]}]},
                {"id": "new", "deps": []},
                {"id": "devonly", "deps": []},
                {"id": "deep", "deps": []}
            ]}
        });
        let found = newer_than_declared(&metadata).unwrap();
        assert_eq!(
            found,
            [
                "deep 0.3.0 needs 1.89.0 (platos-client declares 1.88.0)",
                "new 2.0.0 needs 1.90 (platos-events declares 1.88.0)",
            ]
        );
    }
}

//! Project tasks as a library: the generators (`rest`, `facade`, `events`,
//! `v1_frames`) and
//! [`generate_all`], and the spec-to-server comparison (`spec_diff`), shared by
//! the `xtask` binary and its tests.
//!
//! Codegen turns `spec/` into committed Rust. Every generated file starts with
//! a header naming the generator versions and the SHA-256 of the spec inputs,
//! so a reader of the file can tell which spec produced it and a reviewer can
//! see a generator bump in the diff.

pub mod cli;
pub mod events;
pub mod facade;
pub mod rest;
pub mod spec_diff;
pub mod v1_frames;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Versions of the pinned generators (keep in step with xtask/Cargo.toml).
pub const PROGENITOR_VERSION: &str = "0.15.1";
pub const TYPIFY_VERSION: &str = "0.8.0";
pub const PRETTYPLEASE_VERSION: &str = "0.2.37";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// One generated file: where it goes and what it must contain.
pub struct Output {
    pub path: PathBuf,
    pub contents: String,
}

/// Generates every output in memory. Pure: same inputs, same bytes.
pub fn generate_all(root: &Path) -> Result<Vec<Output>> {
    let openapi_path = root.join("spec/openapi.yaml");
    let events_path = root.join("spec/events.schema.json");
    let openapi = std::fs::read_to_string(&openapi_path)
        .with_context(|| format!("reading {}", openapi_path.display()))?;
    let events = std::fs::read_to_string(&events_path)
        .with_context(|| format!("reading {}", events_path.display()))?;

    let frames_path = root.join("spec/v1-frames.schema.json");
    let frames = std::fs::read_to_string(&frames_path)
        .with_context(|| format!("reading {}", frames_path.display()))?;

    let v1_path = root.join("spec/v1.yaml");
    let v1 = std::fs::read_to_string(&v1_path)
        .with_context(|| format!("reading {}", v1_path.display()))?;

    let rest_body = rest::generate(&openapi).context("generating the REST types")?;
    let v1_body = rest::generate(&v1).context("generating the V1 REST types")?;
    let v1_facade =
        facade::generate_for(&v1, &facade::V1).context("generating the V1 namespaces")?;
    let events_body = events::generate(&events).context("generating the event enum")?;
    let frames_body = v1_frames::generate(&frames).context("generating the V1 frame payloads")?;
    let facade_body = facade::generate(&openapi).context("generating the namespace layer")?;
    let cli_body = cli::generate(&openapi, &v1).context("generating the platos commands")?;

    Ok(vec![
        Output {
            path: root.join("platos-client/src/generated/mod.rs"),
            contents: with_header(
                &format!("progenitor {PROGENITOR_VERSION}, prettyplease {PRETTYPLEASE_VERSION}"),
                &[("spec/openapi.yaml", &openapi)],
                &rest_body,
            ),
        },
        Output {
            path: root.join("platos-client/src/namespaces.rs"),
            contents: with_header(
                &format!("xtask facade, prettyplease {PRETTYPLEASE_VERSION}"),
                &[("spec/openapi.yaml", &openapi)],
                &facade_body,
            ),
        },
        Output {
            path: root.join("platos-client/src/v1/generated.rs"),
            contents: with_header(
                &format!("progenitor {PROGENITOR_VERSION}, prettyplease {PRETTYPLEASE_VERSION}"),
                &[("spec/v1.yaml", &v1)],
                &v1_body,
            ),
        },
        Output {
            path: root.join("platos-client/src/v1/namespaces.rs"),
            contents: with_header(
                &format!("xtask facade, prettyplease {PRETTYPLEASE_VERSION}"),
                &[("spec/v1.yaml", &v1)],
                &v1_facade,
            ),
        },
        Output {
            path: root.join("platos-client/src/v1/payload.rs"),
            contents: with_header(
                &format!("typify {TYPIFY_VERSION}, prettyplease {PRETTYPLEASE_VERSION}"),
                &[("spec/v1-frames.schema.json", &frames)],
                &frames_body,
            ),
        },
        Output {
            path: root.join("platos-events/src/generated.rs"),
            contents: with_header(
                &format!("typify {TYPIFY_VERSION}, prettyplease {PRETTYPLEASE_VERSION}"),
                &[("spec/events.schema.json", &events)],
                &events_body,
            ),
        },
        Output {
            path: root.join("platos-cli/src/generated.rs"),
            contents: with_header(
                "xtask cli",
                &[("spec/openapi.yaml", &openapi), ("spec/v1.yaml", &v1)],
                &cli_body,
            ),
        },
    ])
}

fn with_header(generators: &str, inputs: &[(&str, &str)], body: &str) -> String {
    let mut out = String::from(
        "// @generated by `cargo xtask codegen`. Do not edit by hand: change spec/ and regenerate.\n",
    );
    out.push_str(&format!("// generators: {generators}\n"));
    for (name, text) in inputs {
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("// input: {name} sha256={hex}\n"));
    }
    out.push('\n');
    out.push_str(body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

//! The reviewed list of deliberate differences, `spec/deliberate-differences.yaml`:
//! one entry per difference, each with its reason. `spec-diff --check` fails on a
//! difference the list lacks and on an entry that no longer matches anything.
//!
//! The list has one section per kind of server: `upstream` (the runtime's
//! inventory and its snapshot) and `test-server` (the embedded test server's
//! route listing, which says `x-platos-inventory: test-server`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::compare::{Difference, Kind};
use super::facts::{BadInput, operation_shape};

/// One deliberate difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: Kind,
    /// `METHOD path`; parameter names do not matter.
    pub operation: String,
    /// The field path or parameter, for the kinds that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub reason: String,
}

impl Entry {
    fn key(&self) -> (Kind, String, Option<String>) {
        (self.kind, operation_shape(&self.operation), self.at.clone())
    }

    fn matches(&self, d: &Difference) -> bool {
        self.key() == (d.kind, operation_shape(&d.operation), d.at.clone())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listed {
    #[serde(default)]
    pub upstream: Vec<Entry>,
    #[serde(default, rename = "test-server")]
    pub test_server: Vec<Entry>,
}

impl Listed {
    /// Parses and checks the file: every entry has a reason and appears once.
    pub fn parse(text: &str) -> Result<Listed, BadInput> {
        let listed: Listed =
            serde_yaml::from_str(text).map_err(|e| BadInput(one_line(&e.to_string())))?;
        for (section, entries) in [
            ("upstream", &listed.upstream),
            ("test-server", &listed.test_server),
        ] {
            let mut seen = BTreeSet::new();
            for e in entries {
                if e.reason.trim().is_empty() {
                    return Err(BadInput(format!(
                        "{section}: `{}` has no reason",
                        e.operation
                    )));
                }
                if !seen.insert(e.key()) {
                    return Err(BadInput(format!(
                        "{section}: {} `{}`{} is listed twice",
                        e.kind.name(),
                        e.operation,
                        e.at.as_deref()
                            .map(|a| format!(" at {a}"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
        Ok(listed)
    }

    /// The section for an inventory kind (`upstream`, `test-server`).
    pub fn section(&self, inventory: &str) -> Result<&[Entry], BadInput> {
        match inventory {
            "upstream" => Ok(&self.upstream),
            "test-server" => Ok(&self.test_server),
            other => Err(BadInput(format!(
                "no section of deliberate differences for inventory {other:?}"
            ))),
        }
    }
}

/// Marks each listed difference with its reason; returns the entries that
/// matched nothing (stale).
pub fn apply(entries: &[Entry], differences: &mut [Difference]) -> Vec<Entry> {
    let mut used = vec![false; entries.len()];
    for d in differences.iter_mut() {
        if let Some(i) = entries.iter().position(|e| e.matches(d)) {
            used[i] = true;
            d.listed = Some(entries[i].reason.trim().to_owned());
        }
    }
    entries
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(e, _)| e.clone())
        .collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

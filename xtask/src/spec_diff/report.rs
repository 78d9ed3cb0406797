//! The report: a table per group of differences for a terminal, or JSON.

use serde_json::{Value, json};

use super::compare::{Difference, Kind};
use super::listed::Entry;
use super::snapshot::Source;

/// The outcome of one comparison.
#[derive(Debug)]
pub struct Report {
    /// What was compared against.
    pub source: Source,
    pub differences: Vec<Difference>,
    /// Entries of the differences file that matched nothing.
    pub stale: Vec<Entry>,
}

impl Report {
    pub fn unlisted(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|d| d.listed.is_none())
    }

    /// `--check` passes: every difference is listed and every entry is a difference.
    pub fn passes(&self) -> bool {
        self.unlisted().next().is_none() && self.stale.is_empty()
    }

    fn of(&self, kind: Kind) -> Vec<&Difference> {
        self.differences.iter().filter(|d| d.kind == kind).collect()
    }

    pub fn to_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = Kind::ALL
            .iter()
            .map(|k| {
                let all = self.of(*k);
                let listed = all.iter().filter(|d| d.listed.is_some()).count();
                (
                    k.name().to_owned(),
                    json!({"total": all.len(), "listed": listed, "unlisted": all.len() - listed}),
                )
            })
            .collect();
        json!({
            "source": self.source,
            "counts": counts,
            "unlisted": self.unlisted().count(),
            "stale": self.stale,
            "passes": self.passes(),
            "differences": self.differences,
        })
    }

    /// The terminal report; `problems_only` keeps the unlisted differences and
    /// stale entries (what `--check` prints).
    pub fn to_text(&self, problems_only: bool) -> String {
        let s = &self.source;
        let mut out = format!(
            "spec/openapi.yaml + spec/v1.yaml against {} ({} {}, read {} from {})\n",
            s.inventory, s.title, s.version, s.read_at, s.read_from
        );
        for kind in Kind::ALL {
            let all = self.of(kind);
            let listed = all.iter().filter(|d| d.listed.is_some()).count();
            let shown: Vec<&Difference> = all
                .iter()
                .copied()
                .filter(|d| !problems_only || d.listed.is_none())
                .collect();
            out.push_str(&format!(
                "\n## {} ({}: {listed} listed, {} unlisted)\n",
                kind.title(),
                all.len(),
                all.len() - listed
            ));
            if !shown.is_empty() {
                out.push_str(&table(kind, shown));
            }
        }
        if !self.stale.is_empty() {
            out.push_str(&format!(
                "\n## Listed in spec/deliberate-differences.yaml, not found ({})\n",
                self.stale.len()
            ));
            let rows = self
                .stale
                .iter()
                .map(|e| {
                    vec![
                        e.kind.name().to_owned(),
                        e.operation.clone(),
                        e.at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&render(&["kind", "operation", "at"], rows));
        }
        let unlisted = self.unlisted().count();
        out.push_str(&format!(
            "\n{} differences: {} listed, {unlisted} unlisted; {} stale entries\n",
            self.differences.len(),
            self.differences.len() - unlisted,
            self.stale.len()
        ));
        out
    }
}

fn table(kind: Kind, mut rows: Vec<&Difference>) -> String {
    let listed = |d: &Difference| {
        if d.listed.is_some() {
            "listed"
        } else {
            "UNLISTED"
        }
        .to_owned()
    };
    match kind {
        Kind::NotServed => render(
            &["operation", "listed"],
            rows.iter()
                .map(|d| vec![d.operation.clone(), listed(d)])
                .collect(),
        ),
        Kind::NotOurs => {
            // Grouped by who may call it: what SDK users can reach comes first.
            rows.sort_by(|a, b| (a.class, &a.operation).cmp(&(b.class, &b.operation)));
            render(
                &["class", "operation", "auth", "listed"],
                rows.iter()
                    .map(|d| {
                        let class = d.class.map(|c| c.label()).unwrap_or("-");
                        let deprecated = if d.deprecated { " (deprecated)" } else { "" };
                        vec![
                            format!("{class}{deprecated}"),
                            d.operation.clone(),
                            d.auth.clone().unwrap_or_default(),
                            listed(d),
                        ]
                    })
                    .collect(),
            )
        }
        Kind::Method | Kind::PathParams => render(
            &["operation", "ours", "server", "listed"],
            rows.iter()
                .map(|d| {
                    vec![
                        d.operation.clone(),
                        d.ours.clone(),
                        d.server.clone(),
                        listed(d),
                    ]
                })
                .collect(),
        ),
        Kind::Query | Kind::Request | Kind::Response => render(
            &["operation", "at", "ours", "server", "listed"],
            rows.iter()
                .map(|d| {
                    vec![
                        d.operation.clone(),
                        d.at.clone().unwrap_or_default(),
                        d.ours.clone(),
                        d.server.clone(),
                        listed(d),
                    ]
                })
                .collect(),
        ),
    }
}

/// A plain text table, columns padded to their widest cell.
fn render(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

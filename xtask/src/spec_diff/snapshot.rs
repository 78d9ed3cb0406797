//! The snapshot in `spec/upstream/`: the facts spec-diff compares, in our own
//! form (never a copy of the upstream file), with where and when they were read.
//!
//! Written by `cargo xtask spec-diff --from FILE|URL --save`; the default
//! `--from`. One line per operation, fields as `path[?]: type[|null]`, so a
//! refresh reviews as a readable diff.

use serde::{Deserialize, Serialize};

use super::facts::{BadInput, Class, Document, Field, Operation};

/// The snapshot's `format`; a different one is refused rather than misread.
pub const FORMAT: &str = "platos-spec-diff-snapshot/1";

/// Where and when the facts were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The `--from` given: a path or a URL.
    pub read_from: String,
    /// UTC, RFC 3339.
    pub read_at: String,
    /// SHA-256 of the bytes read.
    pub sha256: String,
    /// The document's `info.title` and `info.version`.
    pub title: String,
    pub version: String,
    /// `upstream` (the runtime) or `test-server`: which list of deliberate
    /// differences applies.
    pub inventory: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    source: Source,
    operations: Vec<Op>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Op {
    method: String,
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<Class>,
    #[serde(default, skip_serializing_if = "is_false")]
    deprecated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<Vec<String>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn strings(fields: &Option<Vec<Field>>) -> Option<Vec<String>> {
    fields
        .as_ref()
        .map(|f| f.iter().map(Field::to_string).collect())
}

fn parse_fields(op: &str, list: Option<Vec<String>>) -> Result<Option<Vec<Field>>, BadInput> {
    list.map(|l| {
        l.iter()
            .map(|s| {
                s.parse()
                    .map_err(|e: BadInput| BadInput(format!("{op}: {e}")))
            })
            .collect()
    })
    .transpose()
}

/// Whether a parsed JSON document is a snapshot (by its `format`).
pub fn is_snapshot(doc: &serde_json::Value) -> bool {
    doc.get("format").is_some() && doc.get("openapi").is_none()
}

/// Reads a snapshot already parsed into JSON.
pub fn read(doc: serde_json::Value) -> Result<(Source, Document), BadInput> {
    let format = doc.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(BadInput(format!(
            "snapshot format {format:?} is not {FORMAT:?}"
        )));
    }
    let file: File =
        serde_json::from_value(doc).map_err(|e| BadInput(format!("snapshot is invalid: {e}")))?;
    let mut operations = Vec::with_capacity(file.operations.len());
    for op in file.operations {
        let name = format!("{} {}", op.method, op.path);
        operations.push(Operation {
            request: parse_fields(&name, op.request)?,
            response: parse_fields(&name, op.response)?,
            query: op.query.map(|q| q.into_iter().collect()),
            method: op.method,
            path: op.path,
            auth: op.auth,
            class: op.class,
            deprecated: op.deprecated,
        });
    }
    let document = Document {
        title: file.source.title.clone(),
        version: file.source.version.clone(),
        inventory: file.source.inventory.clone(),
        operations,
    };
    Ok((file.source, document))
}

/// The snapshot's text: the header pretty-printed, one operation per line.
pub fn write(source: &Source, doc: &Document) -> String {
    let mut ops: Vec<&Operation> = doc.operations.iter().collect();
    ops.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    let lines: Vec<String> = ops
        .into_iter()
        .map(|o| {
            let op = Op {
                method: o.method.clone(),
                path: o.path.clone(),
                auth: o.auth.clone(),
                class: o.class,
                deprecated: o.deprecated,
                query: o.query.as_ref().map(|q| q.iter().cloned().collect()),
                request: strings(&o.request),
                response: strings(&o.response),
            };
            format!("    {}", serde_json::to_string(&op).unwrap_or_default())
        })
        .collect();
    let header = serde_json::to_string_pretty(source).unwrap_or_default();
    let header = header.replace('\n', "\n  ");
    format!(
        "{{\n  \"format\": {},\n  \"source\": {header},\n  \"operations\": [\n{}\n  ]\n}}\n",
        serde_json::Value::from(FORMAT),
        lines.join(",\n")
    )
}

//! What the conformance suites share: reading a fixture file of
//! `spec/conformance/`, answering with an entry's `response`, and checking
//! the one request that arrived and what the call returned (the rules of
//! `spec/conformance/README.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use platos_client::Error;
use serde_json::Value;

use crate::recorder::{Answer, Recorded};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixture document of `spec/conformance/` (`rest.json`, `v1.json`).
pub fn load(name: &str) -> Value {
    let path = repo_root().join("spec/conformance").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// A document's entries.
pub fn entries(doc: &Value) -> &[Value] {
    doc["entries"].as_array().expect("entries array")
}

/// JSON equality where numbers compare by value (`10` == `10.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The `result` comparison rule of the README: object members whose value
/// is `null`, `[]` or `{}` count as absent.
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !is_empty_member(v))
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

pub fn is_empty_member(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

pub fn answer_for(response: &Value) -> Answer {
    let status = response["status"].as_u64().expect("response.status") as u16;
    let mut answer = match response.get("rawBody") {
        Some(raw) => Answer::raw(
            status,
            raw.as_str().expect("rawBody is a string").to_owned(),
        ),
        None => Answer::json(status, response["body"].clone()),
    };
    if let Some(h) = response.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            answer = answer.header(k, v.as_str().expect("header value"));
        }
    }
    answer
}

pub fn is_uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

/// Checks one recorded request against `expected`; returns the mismatches.
pub fn check_request(expected: &Value, got: &Recorded) -> Vec<String> {
    let mut problems = Vec::new();
    let method = expected["method"].as_str().expect("request.method");
    if got.method != method {
        problems.push(format!("method: want {method}, got {}", got.method));
    }
    let path = expected["path"].as_str().expect("request.path");
    if got.path != path {
        problems.push(format!("path: want {path}, got {}", got.path));
    }

    let want_query: BTreeMap<String, String> = expected["query"]
        .as_object()
        .expect("request.query")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("query values are strings").to_owned(),
            )
        })
        .collect();
    let got_query: BTreeMap<String, String> = got.query.iter().cloned().collect();
    if got_query.len() != got.query.len() {
        problems.push(format!(
            "query: a parameter was sent twice: {:?}",
            got.query
        ));
    }
    if want_query != got_query {
        problems.push(format!(
            "query: want {want_query:?}, got {got_query:?} (raw {:?})",
            got.raw_query
        ));
    }

    // Spelling matters too: a space in a query value is `%20`, never `+`.
    if let Some(want) = expected.get("rawQueryContains").and_then(Value::as_str)
        && !got.raw_query.as_deref().is_some_and(|q| q.contains(want))
    {
        problems.push(format!(
            "raw query: want it to contain {want:?}, got {:?}",
            got.raw_query
        ));
    }

    for (name, want) in expected["headers"].as_object().expect("request.headers") {
        let want = want.as_str().expect("header values are strings");
        let value = got.header(name);
        let ok = match want {
            "<absent>" => value.is_none(),
            "<uuid>" => value.is_some_and(is_uuid_v4),
            w if w.ends_with('*') => value.is_some_and(|v| v.starts_with(&w[..w.len() - 1])),
            w => value == Some(w),
        };
        if !ok {
            problems.push(format!("header {name}: want {want}, got {value:?}"));
        }
        if value.is_some() && got.header_count(name) != 1 {
            problems.push(format!(
                "header {name} sent {} times",
                got.header_count(name)
            ));
        }
    }

    let want_body = &expected["body"];
    match (want_body.is_null(), got.json()) {
        (true, None) => {}
        (true, Some(b)) => problems.push(format!("body: want none, got {b}")),
        (false, None) => problems.push(format!("body: want {want_body}, got none")),
        (false, Some(b)) => {
            if !same(want_body, &b) {
                problems.push(format!("body: want {want_body}, got {b}"));
            }
        }
    }
    problems
}

/// Checks a call's outcome against the entry's `result` or `error`.
pub fn check_outcome(entry: &Value, outcome: Result<Value, Error>) -> Vec<String> {
    let mut problems = Vec::new();
    match (outcome, entry.get("error")) {
        (Ok(value), None) => {
            let want = normalise(&entry["result"]);
            let got = normalise(&value);
            if !same(&want, &got) {
                problems.push(format!("result:\n  want {want}\n  got  {got}"));
            }
        }
        (Ok(value), Some(err)) => problems.push(format!("want error {err}, got {value}")),
        (Err(e), None) => problems.push(format!("want a result, got error {e:?}")),
        (Err(e), Some(err)) => {
            let class = err["class"].as_str().expect("error.class");
            if e.kind() != class {
                problems.push(format!("error class: want {class}, got {e:?}"));
            }
            if let Some(status) = err.get("status").and_then(Value::as_u64)
                && e.status() != Some(status as u16)
            {
                problems.push(format!("error status: want {status}, got {:?}", e.status()));
            }
            if let Some(code) = err.get("code").and_then(Value::as_str)
                && e.code() != Some(code)
            {
                problems.push(format!("error code: want {code:?}, got {:?}", e.code()));
            }
            if let Some(m) = err.get("message").and_then(Value::as_str)
                && e.message() != m
            {
                problems.push(format!("error message: want {m:?}, got {:?}", e.message()));
            }
        }
    }
    problems
}

/// Runs every entry of `doc` through `run` (which returns its problems) and
/// fails listing every entry that has any.
pub async fn all_conform<'a, F, Fut>(doc: &'a Value, run: F)
where
    F: Fn(&'a Value) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut failures = Vec::new();
    for entry in entries(doc) {
        let problems = run(entry).await;
        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n    {}",
                entry["name"].as_str().unwrap_or("?"),
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} entries fail:\n{}",
        failures.len(),
        entries(doc).len(),
        failures.join("\n")
    );
}

//! Drives every entry of `spec/conformance/rest.json` through the real
//! client against the recording server and checks each field: the request
//! on the wire (method, raw path, decoded query, headers, body) and what the
//! SDK returns (serialised with serde_json and compared to `result`), or the
//! error class. Also checks that the entries cover every SDK call and every
//! operationId of `spec/openapi.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use platos_client::{Error, PlatosClient, Scope};
use platos_integration_tests::calls::invoke;
use platos_integration_tests::recorder::{Answer, Recorded, Recorder};
use serde_json::Value;

/// Every call the SDK exposes over REST (the list). Each must have
/// at least one entry.
const CALLS: &[&str] = &[
    "agents.list",
    "agents.get",
    "agents.list_versions",
    "threads.create",
    "threads.list",
    "threads.get",
    "threads.messages",
    "threads.artifacts",
    "threads.archive",
    "threads.unarchive",
    "threads.delete",
    "approvals.list",
    "approvals.get",
    "approvals.resolve",
    "budgets.list",
    "budgets.status",
    "monitoring.runs",
    "monitoring.traces",
    "monitoring.cost_by_agent",
    "monitoring.cost_by_scope",
    "bgo.tasks.list",
    "bgo.tasks.trigger",
    "bgo.runs.list",
    "bgo.runs.get",
    "bgo.runs.cancel",
    "bgo.runs.replay",
    "bgo.schedules.list",
    "bgo.schedules.create",
    "bgo.schedules.activate",
    "bgo.schedules.deactivate",
    "bgo.schedules.delete",
    "bgo.batches.trigger",
    "bgo.batches.get",
    "bgo.raw",
    "jobs.list",
    "jobs.create",
    "jobs.get",
    "jobs.update",
    "jobs.delete",
    "jobs.dispatch",
    "threads.ask",
    "agents.ask",
    "messages.rate",
    "messages.unrate",
    "messages.rating",
    "tools.list",
    "tools.search",
    "tools.stats",
    "tools.matrix",
    "tools.set_enabled",
    "tools.test",
    "tools.execute",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load() -> Value {
    let path = repo_root().join("spec/conformance/rest.json");
    let text = std::fs::read_to_string(&path).expect("read spec/conformance/rest.json");
    serde_json::from_str(&text).expect("rest.json is JSON")
}

fn entries(doc: &Value) -> &[Value] {
    doc["entries"].as_array().expect("entries array")
}

// ------------------------------------------------------------------ clients

fn build_client(doc: &Value, name: &str, base_url: &str) -> PlatosClient {
    let spec = &doc["clients"][name];
    assert!(spec.is_object(), "unknown client `{name}`");
    let mut b = PlatosClient::builder().base_url(base_url);
    if let Some(t) = spec["sessionToken"].as_str() {
        b = b.session_token(t);
    }
    if let Some(k) = spec["apiKey"].as_str() {
        b = b.api_key(k);
    }
    if let Some(s) = spec.get("scope") {
        let mut scope = Scope::new(
            s["organizationId"].as_str().expect("organizationId"),
            s["projectId"].as_str().expect("projectId"),
            s["environmentId"].as_str().expect("environmentId"),
        );
        if let Some(u) = s["userId"].as_str() {
            scope = scope.with_user_id(u);
        }
        if let Some(t) = s["userToken"].as_str() {
            scope = scope.with_user_token(t);
        }
        b = b.scope(scope);
    }
    b.build().expect("conformance client builds")
}

// --------------------------------------------------------------- comparing

/// JSON equality where numbers compare by value (`10` == `10.0`).
fn same(a: &Value, b: &Value) -> bool {
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
fn normalise(v: &Value) -> Value {
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

fn is_empty_member(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn answer_for(response: &Value) -> Answer {
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

fn is_uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

/// Checks one recorded request against `expected`; returns the mismatches.
fn check_request(expected: &Value, got: &Recorded) -> Vec<String> {
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

fn error_class(e: &Error) -> &'static str {
    match e {
        Error::Auth(_) => "auth",
        Error::NotFound(_) => "not_found",
        Error::Validation(_) => "validation",
        Error::RateLimited(_) => "rate_limit",
        Error::Server(_) => "server",
        Error::Refused(_) => "refused",
        Error::Network(_) => "network",
        Error::Timeout(_) => "timeout",
        Error::Decode(_) => "decode",
        Error::Config(_) => "config",
        _ => "other",
    }
}

async fn run_entry(doc: &Value, entry: &Value) -> Vec<String> {
    let recorder = Recorder::start().await;
    recorder.push(answer_for(&entry["response"]));
    let client = build_client(
        doc,
        entry["client"].as_str().expect("entry.client"),
        &recorder.url(),
    );
    let call = entry["call"].as_str().expect("entry.call");
    let outcome = invoke(&client, call, &entry["args"]).await;

    let seen = recorder.requests();
    let mut problems = match seen.as_slice() {
        [one] => check_request(&entry["request"], one),
        other => vec![format!("want exactly one request, got {}", other.len())],
    };
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
            if error_class(&e) != class {
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

#[tokio::test]
async fn every_entry_conforms() {
    let doc = load();
    let mut failures = Vec::new();
    for entry in entries(&doc) {
        let problems = run_entry(&doc, entry).await;
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
        entries(&doc).len(),
        failures.join("\n")
    );
}

#[test]
fn entries_are_well_formed() {
    let doc = load();
    let rules = idempotency_rules();
    let mut names = BTreeSet::new();
    for entry in entries(&doc) {
        let name = entry["name"].as_str().expect("entry.name");
        assert!(names.insert(name), "duplicate entry name {name}");
        for key in ["call", "client", "args", "request", "response"] {
            assert!(entry.get(key).is_some(), "{name}: missing `{key}`");
        }
        assert!(
            entry.get("result").is_some() != entry.get("error").is_some(),
            "{name}: exactly one of `result` and `error`"
        );
        let method = entry["request"]["method"].as_str().expect("method");
        let key = entry["request"]["headers"]["idempotency-key"].as_str();
        // The spec's rule: `x-platos-idempotency`, else a key on POST/PATCH.
        let rule = entry["operationId"]
            .as_str()
            .and_then(|id| rules.get(id).cloned().flatten());
        let want = match (rule.as_deref(), method) {
            (Some("key"), _) | (None, "POST" | "PATCH") => "<uuid>",
            _ => "<absent>",
        };
        assert_eq!(key, Some(want), "{name}: idempotency-key marker");
    }
}

/// `operationId` → its `x-platos-idempotency`, if it has one.
fn idempotency_rules() -> BTreeMap<String, Option<String>> {
    let yaml =
        std::fs::read_to_string(repo_root().join("spec/openapi.yaml")).expect("openapi.yaml");
    let spec: Value = serde_yaml::from_str(&yaml).expect("openapi.yaml parses");
    let mut rules = BTreeMap::new();
    for item in spec["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            if let Some(id) = op["operationId"].as_str() {
                let rule = op["x-platos-idempotency"].as_str().map(str::to_owned);
                rules.insert(id.to_owned(), rule);
            }
        }
    }
    rules
}

#[test]
fn every_call_and_operation_is_covered() {
    let doc = load();
    let mut op_of_call: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for entry in entries(&doc) {
        let call = entry["call"].as_str().expect("call");
        let op = entry["operationId"].as_str();
        if let Some(previous) = op_of_call.insert(call, op) {
            assert_eq!(previous, op, "`{call}` maps to two operationIds");
        }
    }
    let covered: BTreeSet<&str> = op_of_call.keys().copied().collect();
    let wanted: BTreeSet<&str> = CALLS.iter().copied().collect();
    let missing: Vec<_> = wanted.difference(&covered).collect();
    assert!(missing.is_empty(), "calls without an entry: {missing:?}");
    let unknown: Vec<_> = covered.difference(&wanted).collect();
    assert!(unknown.is_empty(), "entries for unknown calls: {unknown:?}");

    let yaml =
        std::fs::read_to_string(repo_root().join("spec/openapi.yaml")).expect("openapi.yaml");
    let spec_ops: BTreeSet<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("operationId:"))
        .map(str::trim)
        .collect();
    assert!(
        spec_ops.len() >= 39,
        "found only {} operationIds",
        spec_ops.len()
    );
    let entry_ops: BTreeSet<&str> = op_of_call.values().flatten().copied().collect();
    let uncovered: Vec<_> = spec_ops.difference(&entry_ops).collect();
    assert!(
        uncovered.is_empty(),
        "operationIds without an entry: {uncovered:?}"
    );
    let stray: Vec<_> = entry_ops.difference(&spec_ops).collect();
    assert!(
        stray.is_empty(),
        "entries name operationIds not in the spec: {stray:?}"
    );
}

//! Drives every entry of `spec/conformance/rest.json` through the real
//! client against the recording server and checks each field: the request
//! on the wire (method, raw path, decoded query, headers, body) and what the
//! SDK returns (serialised with serde_json and compared to `result`), or the
//! error class. Also checks that the entries cover every SDK call and every
//! operationId of `spec/openapi.yaml`.

use std::collections::{BTreeMap, BTreeSet};

use platos_client::{PlatosClient, Scope};
use platos_integration_tests::calls::invoke;
use platos_integration_tests::conformance::{
    all_conform, answer_for, check_outcome, check_request, entries, load, repo_root,
};
use platos_integration_tests::recorder::Recorder;
use serde_json::Value;

/// Every call the SDK exposes over REST (the list). Each must have
/// at least one entry.
const CALLS: &[&str] = &[
    "attachments.presign",
    "memory.create",
    "memory.delete",
    "memory.list",
    "memory.search",
    "memory.update",
    "memory.extract",
    "memory.export",
    "memory.import",
    "memory.relate",
    "memory.archive",
    "memory.restore",
    "memory.graph_entities",
    "memory.graph_relationships",
    "memory.graph_path",
    "approvals.resolve_durable",
    "monitoring.cost_thread",
    "threads.edit_and_rerun",
    "threads.fork",
    "threads.pin",
    "threads.rename",
    "threads.update",
    "threads.replies",
    "threads.reply_counts",
    "threads.retry",
    "threads.set_tags",
    "tokens.guest",
    "tokens.session",
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
    problems.extend(check_outcome(entry, outcome));
    problems
}

#[tokio::test]
async fn every_entry_conforms() {
    let doc = load("rest.json");
    all_conform(&doc, |entry| run_entry(&doc, entry)).await;
}

#[test]
fn entries_are_well_formed() {
    let doc = load("rest.json");
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
    let doc = load("rest.json");
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
    let spec: Value = serde_yaml::from_str(&yaml).expect("openapi.yaml parses");
    // Event streams have hand-written readers and their own tests (the HTTP lane).
    let spec_ops: BTreeSet<&str> = spec["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .filter(|op| op["x-platos-stream"] != true)
        .filter_map(|op| op["operationId"].as_str())
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

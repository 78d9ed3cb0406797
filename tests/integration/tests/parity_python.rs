//! REST parity with the published Python SDK (`platos-client` 0.1.0).
//!
//! The same list of calls runs once through the Python SDK (tests/parity/drive.py,
//! in the venv `cargo xtask ci` installs) against one test server, and once through
//! this SDK against a fresh, identically seeded server. Per call the recorded
//! requests are compared (method, percent-decoded path, query pairs, JSON body,
//! auth header) and so are the returned values' key fields. Every difference we
//! know of is asserted as a difference, so a change on either side shows up here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use platos_client::{Error, PlatosClient};
use platos_integration_tests::calls::invoke;
use platos_test_server::{RecordedRequest, SEED_AGENT_SUPPORT, SEED_THREAD, TestServer};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// One call both SDKs make. `args` are positional, `kwargs` are Python keyword
/// arguments; a string `"$N.field"` names a field of call N's result (ids the
/// server minted during the run). `keys` are the result fields compared (on the
/// object, or on every element of a list).
struct Call {
    name: &'static str,
    args: Value,
    kwargs: Value,
    keys: &'static [&'static str],
}

fn call(name: &'static str, args: Value, kwargs: Value, keys: &'static [&'static str]) -> Call {
    Call {
        name,
        args,
        kwargs,
        keys,
    }
}

/// An id with a path separator and a space: the Python SDK interpolates it raw.
const AWKWARD_ID: &str = "a/b c";
/// A query value with a space and an `&`.
const AWKWARD_AGENT: &str = "a b&c";

fn calls() -> Vec<Call> {
    let a = SEED_AGENT_SUPPORT;
    let t = SEED_THREAD;
    vec![
        /* 0 */ call("agents.list", json!([]), json!({}), &["id", "name"]),
        /* 1 */
        call(
            "agents.get",
            json!([a]),
            json!({}),
            &["id", "name", "model"],
        ),
        /* 2 */ call("agents.get", json!(["agent_missing"]), json!({}), &[]),
        /* 3 */
        call(
            "agents.list_versions",
            json!([a]),
            json!({}),
            &["id", "agentId"],
        ),
        /* 4 */
        call(
            "threads.create",
            json!([]),
            json!({"agent_id": a}),
            &["agentId", "title"],
        ),
        /* 5 */
        call(
            "threads.create",
            json!([]),
            json!({"agent_id": a, "title": "Parity"}),
            &["agentId", "title"],
        ),
        /* 6 */
        call(
            "threads.list",
            json!([]),
            json!({"agent_id": a, "limit": 10}),
            &["agentId", "title"],
        ),
        /* 7 */
        call(
            "threads.get",
            json!([t]),
            json!({}),
            &["id", "agentId", "title"],
        ),
        /* 8 */
        call(
            "threads.get",
            json!(["$4.id"]),
            json!({}),
            &["agentId", "status"],
        ),
        /* 9 */
        call(
            "threads.messages",
            json!([t]),
            json!({}),
            &["id", "role", "content"],
        ),
        /* 10 */ call("threads.artifacts", json!([t]), json!({}), &["id"]),
        /* 11 */ call("threads.archive", json!(["$4.id"]), json!({}), &[]),
        /* 12 */ call("threads.unarchive", json!(["$4.id"]), json!({}), &[]),
        /* 13 */ call("threads.delete", json!(["$5.id"]), json!({}), &[]),
        /* 14 */ call("threads.get", json!([AWKWARD_ID]), json!({}), &[]),
        /* 15 */
        call(
            "threads.list",
            json!([]),
            json!({"agent_id": AWKWARD_AGENT}),
            &["id"],
        ),
        /* 16 */ call("bgo.tasks.list", json!([]), json!({}), &["id"]),
        /* 17 */
        call(
            "bgo.tasks.trigger",
            json!(["send-email", {"to": "a@example.com"}]),
            json!({}),
            &[],
        ),
        /* 18 */
        call(
            "bgo.runs.list",
            json!([]),
            json!({"task_id": "send-email", "limit": 5}),
            &["taskId", "status", "payload"],
        ),
        /* 19 */
        call(
            "bgo.runs.get",
            json!(["$17.id"]),
            json!({}),
            &["id", "taskId", "payload"],
        ),
        /* 20 */ call("bgo.runs.cancel", json!(["$17.id"]), json!({}), &["status"]),
        /* 21 */ call("bgo.runs.replay", json!(["$17.id"]), json!({}), &[]),
        /* 22 */ call("bgo.runs.get", json!(["run_missing"]), json!({}), &[]),
        /* 23 */ call("bgo.schedules.list", json!([]), json!({}), &["id"]),
        /* 24 */
        call(
            "bgo.schedules.create",
            json!([]),
            json!({"task_id": "nightly-report", "cron": "0 3 * * *", "timezone": "UTC"}),
            &["taskId", "cron", "timezone"],
        ),
        /* 25 */
        call(
            "bgo.schedules.deactivate",
            json!(["$24.id"]),
            json!({}),
            &["id", "active"],
        ),
        /* 26 */
        call(
            "bgo.schedules.activate",
            json!(["$24.id"]),
            json!({}),
            &["id", "active"],
        ),
        /* 27 */ call("bgo.schedules.delete", json!(["$24.id"]), json!({}), &[]),
        /* 28 */
        call(
            "bgo.batches.trigger",
            json!(["send-email", [{"n": 1}, {"n": 2}]]),
            json!({}),
            &[],
        ),
        /* 29 */
        call(
            "bgo.batches.get",
            json!(["$28.batchId"]),
            json!({}),
            &["id", "status"],
        ),
    ]
}

/// Namespaces the seed README lists but `platos-client` 0.1.0 does not have
/// (new finding: its client only builds `agents`, `threads` and `bgo`/`trigger`).
const ABSENT_IN_PYTHON: [&str; 4] = [
    "approvals.resolve",
    "budgets.list",
    "budgets.status",
    "monitoring.runs",
];

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../parity/.venv/bin/python")
}

/// Resolves `"$N.field"` against earlier results (`{"ok": …}` / `{"error": …}`).
fn resolve(value: &Value, results: &[Value]) -> Value {
    match value {
        Value::String(s) if s.starts_with('$') => {
            let (index, field) = s[1..].split_once('.').unwrap_or(("", ""));
            let index: usize = index.parse().expect("reference index");
            results[index]["ok"][field].clone()
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, results)).collect()),
        other => other.clone(),
    }
}

/// Python's positional parameters of each call, by their wire names; its
/// keyword arguments are the snake_case of wire names. Together they give the
/// named arguments the shared dispatcher (`platos_integration_tests::calls`)
/// takes, so this suite and the conformance suite make the same Rust calls.
const POSITIONAL: &[(&str, &[&str])] = &[
    ("agents.get", &["agentId"]),
    ("agents.list_versions", &["agentId"]),
    ("threads.get", &["threadId"]),
    ("threads.messages", &["threadId"]),
    ("threads.artifacts", &["threadId"]),
    ("threads.archive", &["threadId"]),
    ("threads.unarchive", &["threadId"]),
    ("threads.delete", &["threadId"]),
    ("bgo.tasks.trigger", &["taskId", "payload"]),
    ("bgo.runs.get", &["runId"]),
    ("bgo.runs.cancel", &["runId"]),
    ("bgo.runs.replay", &["runId"]),
    ("bgo.schedules.activate", &["scheduleId"]),
    ("bgo.schedules.deactivate", &["scheduleId"]),
    ("bgo.schedules.delete", &["scheduleId"]),
    ("bgo.batches.trigger", &["taskId", "payloads"]),
    ("bgo.batches.get", &["batchId"]),
];

/// `task_id` → `taskId`.
fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

/// A call's Python arguments as the named arguments of the Rust dispatcher.
fn named(name: &str, args: &Value, kwargs: &Value) -> Value {
    let mut out = serde_json::Map::new();
    let positional = POSITIONAL
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, p)| *p);
    let values = args.as_array().map_or(&[][..], Vec::as_slice);
    assert_eq!(
        positional.len(),
        values.len(),
        "{name}: positional arguments"
    );
    for (key, value) in positional.iter().zip(values) {
        out.insert((*key).to_owned(), value.clone());
    }
    for (key, value) in kwargs.as_object().into_iter().flatten() {
        out.insert(camel(key), value.clone());
    }
    Value::Object(out)
}

fn ok(result: platos_client::Result<Value>) -> Value {
    match result {
        Ok(v) => json!({"ok": v}),
        Err(e) => json!({"error": {"type": error_kind(&e), "status": e.status()}}),
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Auth(_) => "Auth",
        Error::NotFound(_) => "NotFound",
        Error::Validation(_) => "Validation",
        Error::RateLimited(_) => "RateLimited",
        Error::Server(_) => "Server",
        Error::Refused(_) => "Refused",
        _ => "Other",
    }
}

/// The Rust side of each call in [`calls`], through the shared dispatcher.
async fn run_rust(client: &PlatosClient, c: &Call, results: &[Value]) -> Value {
    let args = named(
        c.name,
        &resolve(&c.args, results),
        &resolve(&c.kwargs, results),
    );
    ok(invoke(client, c.name, &args).await)
}

/// Runs the calls through the Python driver; one parsed result line per call.
async fn run_python(server: &TestServer, token: &str, calls: &[Value]) -> Vec<Value> {
    let python = python();
    assert!(
        python.exists(),
        "the Python SDK venv is missing ({}): run `cargo xtask ci`, which creates \
         tests/parity/.venv and installs tests/parity/requirements.txt into it",
        python.display()
    );
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../parity/drive.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(&driver)
        .arg(server.base_url())
        .env("PLATOS_SESSION_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python driver");
    let mut stdin = child.stdin.take().expect("driver stdin");
    stdin
        .write_all(&serde_json::to_vec(calls).expect("calls json"))
        .await
        .expect("write calls");
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the Python driver finished within 60 s")
        .expect("driver output");
    assert!(
        out.status.success(),
        "python driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON result per line"))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query pairs decoded the way the server (Express `qs`) reads them: `+` is a space.
fn query_map(r: &RecordedRequest) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(r.query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A recorded request with the ids this side's server minted replaced by the
/// `$N.field` reference that produced them, so both sides compare equal.
fn unmint(s: &str, minted: &[(String, String)]) -> String {
    minted.iter().fold(s.to_string(), |acc, (id, name)| {
        acc.replace(id.as_str(), name)
    })
}

fn minted_ids(calls: &[Call], results: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in calls {
        for arg in c.args.as_array().into_iter().flatten() {
            if let Some(r) = arg.as_str().filter(|s| s.starts_with('$'))
                && let Some(id) = resolve(arg, results).as_str()
            {
                out.push((id.to_string(), r.to_string()));
            }
        }
    }
    out
}

/// True when every non-null value in `rust` is in `python` too, numbers compared
/// as numbers (Rust's typed `f64` fields print `0.0` where the server sent `0`).
/// Rust's typed results drop nulls and fields its types do not model (docs/wire.md
/// header: clients may ignore unknown fields); they must never invent or change one.
fn rust_within_python(rust: &Value, python: &Value, at: &str) -> Result<(), String> {
    match (rust, python) {
        (Value::Null, _) => Ok(()),
        (Value::Number(r), Value::Number(p)) if r.as_f64() == p.as_f64() => Ok(()),
        (Value::Object(r), Value::Object(p)) => r.iter().try_for_each(|(k, v)| {
            rust_within_python(v, p.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"))
        }),
        (Value::Array(r), Value::Array(p)) if r.len() == p.len() => r
            .iter()
            .zip(p)
            .enumerate()
            .try_for_each(|(i, (r, p))| rust_within_python(r, p, &format!("{at}[{i}]"))),
        (r, p) if r == p => Ok(()),
        (r, p) => Err(format!("{at}: rust {r} vs python {p}")),
    }
}

/// The compared part of a result: the listed keys of an object, or of each
/// element of a list; `null` and errors as they are.
fn key_fields(result: &Value, keys: &[&str]) -> Value {
    let pick = |v: &Value| -> Value {
        Value::Object(
            keys.iter()
                .map(|k| (k.to_string(), v.get(*k).cloned().unwrap_or(Value::Null)))
                .collect(),
        )
    };
    match result.get("ok") {
        Some(Value::Array(items)) => json!({"ok": items.iter().map(pick).collect::<Vec<_>>()}),
        Some(Value::Object(_)) if !keys.is_empty() => json!({"ok": pick(&result["ok"])}),
        Some(Value::Object(_)) => json!({"ok": "object"}),
        Some(other) => json!({"ok": other}),
        None => json!({"error": {"status": result["error"]["status"]}}),
    }
}

#[tokio::test]
async fn python_sdk_and_rust_sdk_send_the_same_rest_requests() {
    let started = Instant::now();
    let calls = calls();
    let wire_calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"call": c.name, "args": c.args, "kwargs": c.kwargs}))
        .chain(
            ABSENT_IN_PYTHON
                .iter()
                .map(|n| json!({"call": n, "args": [], "kwargs": {}})),
        )
        .collect();

    let py_server = TestServer::start().await.expect("python-side server");
    // An operator token on both sides: agents are operator-only on the server, and the
    // Python driver speaks with one credential for the whole run.
    let py_token = py_server.operator_token();
    let py_all = run_python(&py_server, &py_token, &wire_calls).await;
    assert_eq!(py_all.len(), wire_calls.len(), "one result line per call");
    let (py_results, py_absent) = py_all.split_at(calls.len());
    let py_requests = py_server.recorder().requests();

    // The seed README's approvals/budgets/monitoring namespaces do not exist in 0.1.0.
    for (name, result) in ABSENT_IN_PYTHON.iter().zip(py_absent) {
        assert_eq!(
            result["error"]["type"], "AttributeError",
            "{name} in platos-client 0.1.0: {result}"
        );
    }

    let rust_server = TestServer::start().await.expect("rust-side server");
    let rust_token = rust_server.operator_token();
    let client = PlatosClient::builder()
        .base_url(rust_server.base_url())
        .session_token(rust_token.clone())
        .build()
        .expect("rust client");
    let mut rust_results: Vec<Value> = Vec::new();
    for c in &calls {
        let r = run_rust(&client, c, &rust_results).await;
        rust_results.push(r);
    }
    let rust_requests = rust_server.recorder().requests();

    // Without faults each call is exactly one request, on both sides.
    assert_eq!(py_requests.len(), calls.len(), "python requests");
    assert_eq!(rust_requests.len(), calls.len(), "rust requests");

    let py_minted = minted_ids(&calls, py_results);
    let rust_minted = minted_ids(&calls, &rust_results);
    for (i, c) in calls.iter().enumerate() {
        // Two failures with the same status would compare equal: only call 22
        // is meant to fail, so any other error is a broken run, not parity.
        if i != 22 {
            assert!(
                py_results[i].get("ok").is_some(),
                "call {i} python: {}",
                py_results[i]
            );
            assert!(
                rust_results[i].get("ok").is_some(),
                "call {i} rust: {}",
                rust_results[i]
            );
        }
        if std::env::var_os("PARITY_DUMP").is_some() {
            eprintln!(
                "{i} {}\n  py:   {}\n  rust: {}",
                c.name, py_results[i], rust_results[i]
            );
        }
        let (p, r) = (&py_requests[i], &rust_requests[i]);
        let what = format!("call {i} {}", c.name);

        assert_eq!(p.method, r.method, "{what}: method");
        let p_path = unmint(&p.path, &py_minted);
        let r_path = unmint(&r.path, &rust_minted);
        assert_eq!(
            percent_decode(&p_path),
            percent_decode(&r_path),
            "{what}: decoded path"
        );
        if c.args
            .as_array()
            .is_some_and(|a| a.contains(&json!(AWKWARD_ID)))
        {
            // docs/wire.md §3.3: Python interpolates path segments raw (httpx then
            // escapes only the space), Rust percent-encodes every segment.
            assert_eq!(
                p.path, "/api/v1/agent/threads/a/b%20c",
                "{what}: python raw path"
            );
            assert_eq!(
                r.path, "/api/v1/agent/threads/a%2Fb%20c",
                "{what}: rust raw path"
            );
        } else {
            assert_eq!(p_path, r_path, "{what}: raw path");
        }

        if c.kwargs["agent_id"] == json!(AWKWARD_AGENT) && c.name == "threads.list" {
            // docs/wire.md §3.3: Python does not encode query values, so `&` splits the
            // value into a second parameter; Rust sends the value intact.
            let expected_py: BTreeMap<String, String> = [("agentId", "a b"), ("c", "")]
                .map(|(k, v)| (k.into(), v.into()))
                .into();
            assert_eq!(query_map(p), expected_py, "{what}: python query");
            let expected_rust: BTreeMap<String, String> =
                [("agentId".to_string(), AWKWARD_AGENT.to_string())].into();
            assert_eq!(query_map(r), expected_rust, "{what}: rust query");
            assert_eq!(
                p.query.as_deref(),
                Some("agentId=a%20b&c"),
                "{what}: python raw query"
            );
            assert_eq!(
                r.query.as_deref(),
                Some("agentId=a%20b%26c"),
                "{what}: rust raw query"
            );
        } else {
            assert_eq!(query_map(p), query_map(r), "{what}: query");
        }

        assert_eq!(p.json(), r.json(), "{what}: JSON body");
        assert_eq!(
            p.body.is_empty(),
            r.body.is_empty(),
            "{what}: body presence"
        );

        // Same auth header, each with its own server's token.
        // (compared as booleans so a failure does not print a token)
        assert!(
            p.header("x-platos-session-token") == Some(py_token.as_str()),
            "{what}: python session token header"
        );
        assert!(
            r.header("x-platos-session-token") == Some(rust_token.as_str()),
            "{what}: rust session token header"
        );
        assert_eq!(p.header("authorization"), None, "{what}");
        assert_eq!(r.header("authorization"), None, "{what}");
        assert_eq!(
            p.header("content-type"),
            Some("application/json"),
            "{what}: python content-type"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{what}: rust content-type"
        );

        // docs/wire.md §1.1: only Rust names itself; Python sends httpx's default.
        let p_ua = p.header("user-agent").unwrap_or("");
        let r_ua = r.header("user-agent").unwrap_or("");
        assert!(
            p_ua.starts_with("python-httpx/"),
            "{what}: python UA {p_ua}"
        );
        assert!(
            r_ua.starts_with("platos-client-rust/"),
            "{what}: rust UA {r_ua}"
        );

        // docs/wire.md §2: Rust mints an idempotency key per POST/PATCH, Python none.
        assert_eq!(p.header("idempotency-key"), None, "{what}: python key");
        let rust_key = r.header("idempotency-key");
        if matches!(r.method.as_str(), "POST" | "PATCH") {
            assert!(
                rust_key.is_some_and(|k| k.len() == 36),
                "{what}: rust idempotency key {rust_key:?}"
            );
        } else {
            assert_eq!(rust_key, None, "{what}: rust key on {}", r.method);
        }

        let unmint_value = |v: &Value, minted: &[(String, String)]| -> Value {
            serde_json::from_str(&unmint(&v.to_string(), minted)).expect("json")
        };
        assert_eq!(
            key_fields(&unmint_value(&py_results[i], &py_minted), c.keys),
            key_fields(&unmint_value(&rust_results[i], &rust_minted), c.keys),
            "{what}: returned values\n python: {}\n rust: {}",
            py_results[i],
            rust_results[i]
        );
    }

    // Whole results, on one server: replay the Python run's reads through Rust
    // against the Python-side server (same ids, same timestamps).
    let py_side = PlatosClient::builder()
        .base_url(py_server.base_url())
        .session_token(py_token.clone())
        .build()
        .expect("rust client on the python-side server");
    // The reads: agents list/get/versions, a thread, its messages, the tasks.
    for i in [0, 1, 3, 7, 9, 16] {
        let rust = run_rust(&py_side, &calls[i], py_results).await;
        if let Err(e) = rust_within_python(&rust, &py_results[i], "") {
            panic!(
                "{}: Rust's result is not within Python's: {e}",
                calls[i].name
            );
        }
    }

    // docs/wire.md §3.3: Python always sends `title`, null when not given; Rust does the same.
    assert_eq!(
        py_requests[4].json(),
        Some(json!({"agentId": SEED_AGENT_SUPPORT, "title": null}))
    );
    // Python's error classes line up with ours on the one error call.
    assert_eq!(py_results[22]["error"]["type"], "PlatosNotFoundError");
    assert_eq!(rust_results[22]["error"]["type"], "NotFound");

    eprintln!(
        "parity: {} calls compared in {:?}",
        calls.len(),
        started.elapsed()
    );
}

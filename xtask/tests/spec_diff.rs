//! `cargo xtask spec-diff`: the committed snapshot and the embedded test server
//! agree with spec/ up to the listed differences; a mutated inventory fails
//! `--check` naming each mutation; bad input is one line and exit code 2.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use xtask::spec_diff::{
    self, BadInput, Class, Difference, Field, Kind, Listed, Operation, facts, snapshot,
};
use xtask::workspace_root;

const TIMEOUT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    workspace_root()
}

fn snapshot_json() -> Value {
    let text = std::fs::read_to_string(root().join(spec_diff::SNAPSHOT)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A scratch directory for this test binary's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-spec-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("spec-diff")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_committed_snapshot_passes_check() {
    let snapshot = root().join(spec_diff::SNAPSHOT);
    let (source, doc) = spec_diff::load(snapshot.to_str().unwrap(), TIMEOUT).unwrap();
    assert_eq!(source.inventory, "upstream");
    assert_eq!(
        doc.operations.len(),
        323,
        "the inventory's own operation count"
    );
    let report = spec_diff::diff(&root(), source, &doc).unwrap();
    let unlisted: Vec<&Difference> = report.unlisted().collect();
    assert!(unlisted.is_empty(), "unlisted: {unlisted:#?}");
    assert!(report.stale.is_empty(), "stale: {:#?}", report.stale);
    // The seed-era routes are the ones current servers do not serve.
    let not_served: Vec<&str> = report
        .differences
        .iter()
        .filter(|d| d.kind == Kind::NotServed)
        .map(|d| d.operation.as_str())
        .collect();
    assert!(not_served.contains(&"GET /api/v1/agent/monitoring/runs"));
    assert!(not_served.iter().all(|o| !o.contains("/threads")));
}

#[test]
fn the_snapshot_is_in_its_written_form() {
    let text = std::fs::read_to_string(root().join(spec_diff::SNAPSHOT)).unwrap();
    let (source, doc) = snapshot::read(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(snapshot::write(&source, &doc), text);
}

/// The snapshot with five mutations, one per kind a server change can cause.
fn mutated_snapshot() -> Value {
    let mut snap = snapshot_json();
    let ops = snap["operations"].as_array_mut().unwrap();
    let find = |ops: &[Value], method: &str, path: &str| {
        ops.iter()
            .position(|o| o["method"] == method && o["path"] == path)
            .unwrap_or_else(|| panic!("{method} {path} not in the snapshot"))
    };
    // 1. A route we call is gone.
    let i = find(ops, "GET", "/api/v1/agent/threads");
    ops.remove(i);
    // 2. A new end-user route.
    ops.push(
        json!({"method": "POST", "path": "/api/v1/agent/threads/{id}/share",
                    "auth": "SCOPED_USER", "class": "end-user"}),
    );
    // 3. A path parameter renamed.
    let i = find(ops, "POST", "/api/v1/agent/approvals/{approvalId}/resolve");
    ops[i]["path"] = json!("/api/v1/agent/approvals/{id}/resolve");
    // 4. A V1 request field made optional, 5. a V1 response field retyped.
    let i = find(ops, "POST", "/mcp/entity/{entityId}/tokens");
    for (list, from, to) in [
        ("request", "label: string", "label?: string"),
        ("response", "data.token: string", "data.token: number"),
    ] {
        let fields = ops[i][list].as_array_mut().unwrap();
        let at = fields.iter().position(|f| f == from).unwrap();
        fields[at] = json!(to);
    }
    snap
}

#[test]
fn check_fails_on_a_mutated_inventory_naming_each_change() {
    let path = write(
        "mutated.json",
        serde_json::to_string(&mutated_snapshot())
            .unwrap()
            .as_bytes(),
    );
    let from = path.to_str().unwrap();

    let out = xtask(&["--from", from, "--check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let unlisted: Vec<(String, String, String)> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["listed"].is_null())
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["operation"].as_str().unwrap().to_owned(),
                d["at"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let t = |k: &str, o: &str, a: &str| (k.to_owned(), o.to_owned(), a.to_owned());
    assert_eq!(
        unlisted,
        vec![
            t("not-served", "GET /api/v1/agent/threads", ""),
            t("not-ours", "POST /api/v1/agent/threads/{id}/share", ""),
            t(
                "path-params",
                "POST /api/v1/agent/approvals/{approvalId}/resolve",
                ""
            ),
            t("request", "POST /mcp/entity/{entityId}/tokens", "label"),
            t(
                "response",
                "POST /mcp/entity/{entityId}/tokens",
                "data.token"
            ),
        ]
    );
    assert_eq!(report["unlisted"], 5);
    assert_eq!(report["passes"], false);
    let share = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "not-ours" && d["listed"].is_null())
        .unwrap();
    assert_eq!(share["class"], "end-user");

    // The terminal form of --check names them too, and only them.
    let out = xtask(&["--from", from, "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("POST /api/v1/agent/threads/{id}/share"),
        "{text}"
    );
    assert!(
        text.contains("data.token  string, optional  number, required  UNLISTED"),
        "{text}"
    );
    assert!(
        !text.contains("/trigger/"),
        "listed differences are not printed: {text}"
    );
    assert_eq!(text.matches("UNLISTED").count(), 5, "{text}");

    // Without --check the report is informational.
    assert_eq!(xtask(&["--from", from]).status.code(), Some(0));
}

#[test]
fn an_entry_that_matches_nothing_fails_check() {
    let listed = Listed::parse(
        "upstream:\n  - kind: not-served\n    operation: GET /api/v1/agent/gone\n    reason: was here\n",
    )
    .unwrap();
    let mut differences = Vec::new();
    let stale = spec_diff::listed::apply(&listed.upstream, &mut differences);
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].operation, "GET /api/v1/agent/gone");
}

#[test]
fn the_differences_file_refuses_a_missing_reason_and_a_duplicate() {
    let no_reason = "upstream:\n  - kind: not-ours\n    operation: GET /x\n    reason: ' '\n";
    let e = Listed::parse(no_reason).unwrap_err();
    assert!(e.0.contains("has no reason"), "{e}");
    // Parameter names do not matter, so these two are the same entry.
    let twice = "upstream:\n  - {kind: not-ours, operation: 'GET /x/{a}', reason: r}\n  - {kind: not-ours, operation: 'GET /x/:b', reason: r}\n";
    let e = Listed::parse(twice).unwrap_err();
    assert!(e.0.contains("listed twice"), "{e}");
    let unknown = "upstream:\n  - {kind: renamed, operation: 'GET /x', reason: r}\n";
    assert!(Listed::parse(unknown).is_err());
}

fn one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("xtask spec-diff: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let missing = scratch("missing.json");
    let err = one_line_error(&xtask(&["--from", missing.to_str().unwrap()]));
    assert!(
        err.contains("cannot read") && err.contains("missing.json"),
        "{err}"
    );

    let swagger = write("swagger.json", br#"{"swagger": "2.0", "paths": {}}"#);
    let err = one_line_error(&xtask(&["--from", swagger.to_str().unwrap()]));
    assert!(err.contains("not OpenAPI 3.x"), "{err}");

    let v2 = write("v2.json", br#"{"openapi": "2.0", "paths": {}}"#);
    let err = one_line_error(&xtask(&["--from", v2.to_str().unwrap()]));
    assert!(err.contains("not OpenAPI 3.x (`openapi: 2.0`)"), "{err}");

    let garbage = write("garbage.json", b"\x00\xff{{{ not json");
    let err = one_line_error(&xtask(&["--from", garbage.to_str().unwrap()]));
    assert!(err.contains("not a JSON or YAML document"), "{err}");

    let corrupt = write(
        "corrupt-snapshot.json",
        format!(
            r#"{{"format": "{}", "source": {{}}, "operations": 7}}"#,
            snapshot::FORMAT
        )
        .as_bytes(),
    );
    let err = one_line_error(&xtask(&["--from", corrupt.to_str().unwrap()]));
    assert!(err.contains("snapshot is invalid"), "{err}");

    let future = write(
        "future-snapshot.json",
        br#"{"format": "platos-spec-diff-snapshot/9"}"#,
    );
    let err = one_line_error(&xtask(&["--from", future.to_str().unwrap()]));
    assert!(
        err.contains("is not \"platos-spec-diff-snapshot/1\""),
        "{err}"
    );

    let mut bad_field = snapshot_json();
    bad_field["operations"][0]["request"] = json!(["no separator"]);
    let bad_field = write("bad-field.json", bad_field.to_string().as_bytes());
    let err = one_line_error(&xtask(&["--from", bad_field.to_str().unwrap()]));
    assert!(err.contains("is not `path[?]: type[|null]`"), "{err}");

    let err = one_line_error(&xtask(&["--save"]));
    assert!(err.contains("--save needs --from"), "{err}");
}

#[test]
fn a_refused_url_is_one_line_and_exit_code_2() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/agent/openapi.json");
    let err = one_line_error(&xtask(&["--from", &url]));
    assert!(err.contains(&format!("cannot read {url}")), "{err}");
}

#[test]
fn a_silent_url_times_out_as_one_line_and_exit_code_2() {
    // Accepts the connection and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/api/v1/agent/openapi.json",
        listener.local_addr().unwrap()
    );
    let holder = std::thread::spawn(move || listener.accept().map(|(conn, _)| conn));
    let err = one_line_error(&xtask(&["--from", &url, "--timeout", "1"]));
    assert!(err.contains(&format!("cannot read {url}")), "{err}");
    assert!(err.to_lowercase().contains("timeout"), "{err}");
    drop(holder.join());
}

/// The embedded test server's route listing against spec/: the server our
/// tests run against answers every operation of the spec and serves nothing
/// else but the listed extras.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_server_serves_what_the_spec_declares() {
    let server = platos_test_server::TestServer::start().await.unwrap();
    let url = format!("{}/api/v1/agent/openapi.json", server.base_url());
    let root = root();
    let (source, doc) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || spec_diff::load(&url, TIMEOUT)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(source.inventory, "test-server");
    assert!(
        doc.operations
            .iter()
            .any(|o| o.name() == "GET /api/v1/agent/openapi.json"),
        "the listing lists itself"
    );
    let report = spec_diff::diff(&root, source.clone(), &doc).unwrap();
    let unlisted: Vec<&Difference> = report.unlisted().collect();
    assert!(unlisted.is_empty(), "unlisted: {unlisted:#?}");
    assert!(report.stale.is_empty(), "stale: {:#?}", report.stale);

    // A route the server stopped serving would fail the check.
    let mut fewer = doc.clone();
    fewer
        .operations
        .retain(|o| o.name() != "POST /api/v1/agent/jobs/{job_id}/dispatch");
    let report = spec_diff::diff(&root, source, &fewer).unwrap();
    let unlisted: Vec<&Difference> = report.unlisted().collect();
    assert_eq!(unlisted.len(), 1, "{unlisted:#?}");
    assert_eq!(unlisted[0].kind, Kind::NotServed);
    assert_eq!(
        unlisted[0].operation,
        "POST /api/v1/agent/jobs/{jobId}/dispatch"
    );
}

fn field(s: &str) -> Field {
    s.parse().unwrap()
}

fn fields_of(list: &[&str]) -> Vec<Field> {
    list.iter().map(|s| field(s)).collect()
}

fn fields(list: &[&str]) -> Option<Vec<Field>> {
    Some(fields_of(list))
}

#[test]
fn an_openapi_3_1_inventory_reads_into_facts() {
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "inventory", "version": "M9"},
        "components": {
            "parameters": {"Env": {"name": "environmentId", "in": "query", "required": true}},
            "schemas": {
                "Page": {"type": "object", "properties": {"cursor": {"type": ["string", "null"]},
                         "limit": {"type": "integer"}}, "required": ["limit"]},
                "Base": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                "Item": {"allOf": [{"$ref": "#/components/schemas/Base"},
                         {"properties": {"note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                         "tags": {"type": "array", "items": {"type": "string"}}}}]}
            }
        },
        "paths": {
            "/api/v1/things/:thingId": {
                "parameters": [{"name": "thingId", "in": "path", "required": true}],
                "get": {
                    "x-platos-auth-class": "OPERATOR_ADMIN_BEARER",
                    "x-platos-schema-source": "typescript-dto",
                    "parameters": [{"$ref": "#/components/parameters/Env"},
                                   {"name": "limit", "in": "query", "required": false}],
                    "responses": {"200": {"content": {"application/json": {"schema": {
                        "type": "object", "required": ["data", "page"],
                        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                                       "page": {"$ref": "#/components/schemas/Page"}}}}}}}
                },
                "delete": {
                    "x-platos-auth-class": "SOMETHING_NEW",
                    "x-platos-classification": "INTERNAL",
                    "x-platos-schema-source": "undeclared",
                    "deprecated": true,
                    "responses": {"204": {"description": "gone"}}
                }
            },
            "/oauth/token": {"post": {"x-platos-auth-class": "OAUTH_CLIENT_BODY_OR_BASIC",
                                      "x-platos-classification": "PUBLIC_TRANSPORT",
                                      "x-platos-schema-source": "undeclared", "responses": {}}},
            "/mcp/platform": {"post": {"x-platos-auth-class": "PLATFORM_MCP_BEARER", "responses": {}}},
            "/api/v1/agent/threads": {"get": {"x-platos-auth-class": "SCOPED_USER", "responses": {}}}
        }
    });
    let doc = facts::read_openapi(&doc).unwrap();
    assert_eq!(doc.inventory, "upstream");
    let op =
        |name: &str| -> &Operation { doc.operations.iter().find(|o| o.name() == name).unwrap() };
    let get = op("GET /api/v1/things/:thingId");
    assert_eq!(get.shape(), "/api/v1/things/{}");
    assert_eq!(get.path_params(), vec!["thingId"]);
    assert_eq!(get.class, Some(Class::Operator));
    assert_eq!(get.query, Some(["environmentId".to_owned()].into()));
    assert_eq!(get.request, None);
    assert_eq!(
        get.response,
        fields(&[
            "data: object[]",
            "data[].id: string",
            "data[].note?: string|null",
            "data[].tags?: string[]",
            "page: object",
            "page.cursor?: string|null",
            "page.limit: number",
        ])
    );
    let delete = op("DELETE /api/v1/things/:thingId");
    assert_eq!(
        delete.class,
        Some(Class::Internal),
        "falls back on the classification"
    );
    assert!(delete.deprecated);
    assert_eq!(delete.query, None, "undeclared: nothing to compare");
    assert_eq!(op("POST /oauth/token").class, Some(Class::Public));
    assert_eq!(op("POST /mcp/platform").class, Some(Class::Operator));
    assert_eq!(op("GET /api/v1/agent/threads").class, Some(Class::EndUser));

    // A schema made of itself ends in `any` at a bounded depth, without overflowing the stack.
    let cyclic = json!({
        "openapi": "3.0.3",
        "components": {"schemas": {
            "Loop": {"allOf": [{"$ref": "#/components/schemas/Loop"}]},
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"},
                                                      "self": {"$ref": "#/components/schemas/Loop"}}}
        }},
        "paths": {"/n": {"get": {"responses": {"200": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Node"}}}}}}}}
    });
    let cyclic = facts::read_openapi(&cyclic).unwrap();
    let fields = cyclic.operations[0].response.as_ref().unwrap();
    // A recursive type is recorded once, not entered again.
    assert_eq!(fields, &fields_of(&["next?: object", "self?: any"]));
    // Shared (not recursive) references that fan out stop at a bounded number of fields.
    let mut schemas = serde_json::Map::new();
    for level in 0..12 {
        let props: serde_json::Map<String, Value> = (0..8)
            .map(|i| {
                (
                    format!("p{i}"),
                    json!({"$ref": format!("#/components/schemas/L{}", level + 1)}),
                )
            })
            .collect();
        schemas.insert(
            format!("L{level}"),
            json!({"type": "object", "properties": props}),
        );
    }
    schemas.insert("L12".into(), json!({"type": "string"}));
    let wide = json!({"openapi": "3.1.0", "components": {"schemas": schemas},
        "paths": {"/w": {"get": {"responses": {"200": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/L0"}}}}}}}}});
    let wide = facts::read_openapi(&wide).unwrap();
    assert_eq!(wide.operations[0].response.as_ref().unwrap().len(), 10_000);

    // What --save writes reads back as the same facts.
    let source = spec_diff::Source {
        read_from: "inventory.json".into(),
        read_at: "2026-12-06T00:00:00Z".into(),
        sha256: "00".into(),
        title: doc.title.clone(),
        version: doc.version.clone(),
        inventory: doc.inventory.clone(),
    };
    let text = snapshot::write(&source, &doc);
    let (again_source, again) = snapshot::read(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(again_source, source);
    let sorted = |d: &spec_diff::Document| {
        let mut ops = d.operations.clone();
        ops.sort_by_key(|o| o.name());
        ops
    };
    assert_eq!(sorted(&again), sorted(&doc));

    let err: BadInput = facts::read_openapi(&json!({"openapi": "3.0.3"})).unwrap_err();
    assert!(err.0.contains("without a `paths` object"), "{err}");
}

fn op_with(request: &[&str], response: &[&str]) -> Operation {
    Operation {
        method: "POST".into(),
        path: "/api/v1/things/{thingId}".into(),
        auth: Some("OPERATOR".into()),
        class: Some(Class::Operator),
        deprecated: false,
        query: Some(Default::default()),
        request: fields(request),
        response: fields(response),
    }
}

#[test]
fn requests_must_match_and_responses_may_be_looser() {
    let server = op_with(
        &["name: string", "ttl: number|null", "tags?: string[]"],
        &[
            "data: object",
            "data.id: string",
            "data.at: string|null",
            "data.extra?: string",
            "data.owner: object",
            "data.owner.id: string",
            "data.owner.name: string",
        ],
    );
    // Ours: a response field optional or nullable where the server promises it is
    // our policy; everything else is a difference.
    let ours = op_with(
        &["name?: string", "ttl: number", "tags?: string[]"],
        &[
            "data: object",
            "data.id?: string",
            "data.at: string",
            "data.extra: string",
            "data.gone?: boolean",
        ],
    );
    let diffs = spec_diff::compare(&[ours], &[server]);
    let got: Vec<(Kind, &str, &str, &str)> = diffs
        .iter()
        .map(|d| {
            (
                d.kind,
                d.at.as_deref().unwrap_or(""),
                d.ours.as_str(),
                d.server.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Kind::Request,
                "name",
                "string, optional",
                "string, required"
            ),
            (
                Kind::Request,
                "ttl",
                "number, required",
                "number|null, required"
            ),
            (
                Kind::Response,
                "data.at",
                "string, required",
                "string|null, required"
            ),
            (
                Kind::Response,
                "data.extra",
                "string, required",
                "string, optional"
            ),
            (Kind::Response, "data.gone", "boolean, optional", "absent"),
            // Reported once, not once per field inside it.
            (Kind::Response, "data.owner", "absent", "object, required"),
        ]
    );
}

#[test]
fn one_method_left_on_each_side_of_a_path_is_a_method_difference() {
    let mut ours = op_with(&[], &[]);
    ours.method = "PUT".into();
    let server = op_with(&[], &[]);
    let diffs = spec_diff::compare(&[ours], &[server]);
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    assert_eq!(
        (
            diffs[0].kind,
            diffs[0].ours.as_str(),
            diffs[0].server.as_str()
        ),
        (Kind::Method, "PUT", "POST")
    );
}

#[test]
fn fields_round_trip_through_their_snapshot_form() {
    for s in ["a: string", "a.b?: number|null", "items[].tags?: string[]"] {
        assert_eq!(field(s).to_string(), s);
    }
    assert!("no-type".parse::<Field>().is_err());
}

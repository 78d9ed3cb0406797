//! REST routes under `/api/v1/agent`, answering in the real server's shapes.

// Handlers short-circuit with a ready `Response` as the error; boxing it would only add
// noise to a test server where the extra bytes on the stack do not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::{Caller, RestAuth, authenticate_rest};
use crate::record::RecordedRequest;
use crate::store::{
    IdemEntry, Store, StoredAnswer, in_scope, new_id, now_iso, resolve_approval_json, scope_fields,
};

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
type Res = Result<Response, Response>;

const MAX_BODY: usize = 4 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/agents", get(agents_list))
        .route("/agents/{agent_id}", get(agents_get))
        .route("/agents/{agent_id}/versions", get(agents_versions))
        .route("/threads", get(threads_list).post(threads_create))
        .route(
            "/threads/{thread_id}",
            get(threads_get).delete(threads_delete),
        )
        .route("/threads/{thread_id}/messages", get(threads_messages))
        .route("/threads/{thread_id}/artifacts", get(threads_artifacts))
        .route("/threads/{thread_id}/archive", post(threads_archive))
        .route("/threads/{thread_id}/unarchive", post(threads_unarchive))
        .route("/monitoring/approvals", get(approvals_list))
        .route("/monitoring/approvals/{approval_id}", get(approvals_get))
        .route("/approvals/{approval_id}/resolve", post(approvals_resolve))
        .route("/budgets", get(budgets_list))
        .route("/budgets/status", get(budgets_status))
        .route("/monitoring/runs", get(monitoring_runs))
        .route("/monitoring/trace/{thread_id}", get(monitoring_trace))
        .route("/monitoring/cost-by-agent", get(monitoring_cost_by_agent))
        .route("/monitoring/cost", get(monitoring_cost))
        .route("/jobs", get(jobs_list).post(jobs_create))
        .route(
            "/jobs/{job_id}",
            get(jobs_get).patch(jobs_update).delete(jobs_delete),
        )
        .route("/jobs/{job_id}/dispatch", post(jobs_dispatch))
        .route("/trigger/tasks", get(bgo_tasks_list))
        .route("/trigger/tasks/{task_id}/trigger", post(bgo_tasks_trigger))
        .route("/trigger/runs", get(bgo_runs_list))
        .route("/trigger/runs/{run_id}", get(bgo_runs_get))
        .route("/trigger/runs/{run_id}/cancel", post(bgo_runs_cancel))
        .route("/trigger/runs/{run_id}/replay", post(bgo_runs_replay))
        .route(
            "/trigger/schedules",
            get(bgo_schedules_list).post(bgo_schedules_create),
        )
        .route(
            "/trigger/schedules/{schedule_id}",
            axum::routing::delete(bgo_schedules_delete),
        )
        .route(
            "/trigger/schedules/{schedule_id}/activate",
            post(bgo_schedules_activate),
        )
        .route(
            "/trigger/schedules/{schedule_id}/deactivate",
            post(bgo_schedules_deactivate),
        )
        .route(
            "/trigger/batches/{id}",
            get(bgo_batches_get).post(bgo_batches_trigger),
        )
        .fallback(not_found_route);
    Router::new()
        .nest("/api/v1/agent", api)
        .merge(crate::v1_stream::routes())
        .fallback(not_found_route)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            rest_layer,
        ))
        .with_state(shared)
}

// ---------- response helpers ----------

fn json_resp(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn ok(v: Value) -> Res {
    Ok(json_resp(StatusCode::OK, v))
}

fn created(v: Value) -> Res {
    Ok(json_resp(StatusCode::CREATED, v))
}

/// NestJS default error body `{statusCode, message, error}`.
fn framework(status: StatusCode, message: &str) -> Response {
    json_resp(
        status,
        json!({"statusCode": status.as_u16(), "message": message,
               "error": status.canonical_reason().unwrap_or("Error")}),
    )
}

fn unauthorized() -> Response {
    json_resp(
        StatusCode::UNAUTHORIZED,
        json!({"statusCode": 401, "message": "Unauthorized"}),
    )
}

fn bad_request(message: &str) -> Response {
    framework(StatusCode::BAD_REQUEST, message)
}

fn operator_only() -> Response {
    json_resp(
        StatusCode::FORBIDDEN,
        json!({"error": "OPERATOR_ONLY", "message": "This route requires an operator credential (api key or operator session token)."}),
    )
}

fn invalid_pagination(message: &str) -> Response {
    json_resp(
        StatusCode::BAD_REQUEST,
        json!({"code": "INVALID_PAGINATION", "message": message}),
    )
}

/// The V1 error envelope.
pub(crate) fn v1_error(code: &str, title: &str, body: &str, retry_after: Option<u64>) -> Value {
    let mut e = json!({
        "code": code, "title": title, "body": body,
        "errorId": format!("err_{}", new_id().replace('-', "")),
        "traceRef": format!("trace_{}", &new_id()[..8]),
        "version": "1"
    });
    if let Some(r) = retry_after {
        e["retryAfterSec"] = json!(r);
    }
    json!({ "error": e })
}

fn v1(status: StatusCode, code: &str, title: &str, body: &str) -> Response {
    json_resp(status, v1_error(code, title, body, None))
}

async fn not_found_route(method: Method, uri: axum::http::Uri) -> Response {
    framework(
        StatusCode::NOT_FOUND,
        &format!("Cannot {} {}", method, uri.path()),
    )
}

// ---------- auth, parsing ----------

fn auth(s: &Shared, h: &HeaderMap) -> Result<Caller, Response> {
    match authenticate_rest(&s.cfg, h) {
        RestAuth::Ok(c) => {
            s.store().provision(&c.scope);
            Ok(c)
        }
        RestAuth::Unauthorized => Err(unauthorized()),
        RestAuth::MissingScope => Err(bad_request(
            "Missing scope headers: X-Platos-Organization-Id, X-Platos-Project-Id and X-Platos-Environment-Id are required with an api key",
        )),
    }
}

fn operator(s: &Shared, h: &HeaderMap) -> Result<Caller, Response> {
    let c = auth(s, h)?;
    if c.operator {
        Ok(c)
    } else {
        Err(operator_only())
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|_| bad_request("Body is not valid JSON"))
}

fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
    match parse_body(body)? {
        Value::Object(o) => Ok(o),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(bad_request("Body must be a JSON object")),
    }
}

struct Page {
    limit: usize,
    offset: usize,
}

fn parse_uint(q: &HashMap<String, String>, name: &str) -> Result<Option<usize>, Response> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| invalid_pagination(&format!("{name} must be a non-negative integer"))),
    }
}

fn page(
    q: &HashMap<String, String>,
    limit_name: &str,
    default_limit: usize,
) -> Result<Page, Response> {
    let limit = parse_uint(q, limit_name)?.unwrap_or(default_limit);
    if !(1..=200).contains(&limit) {
        return Err(invalid_pagination(&format!(
            "{limit_name} must be between 1 and 200"
        )));
    }
    let offset = match (parse_uint(q, "offset")?, parse_uint(q, "page")?) {
        (Some(o), _) => o,
        (None, Some(0)) => return Err(invalid_pagination("page must be >= 1")),
        (None, Some(p)) => (p - 1) * limit,
        (None, None) => 0,
    };
    Ok(Page { limit, offset })
}

/// The list envelope: named array, `items`, `total`, `limit`, `offset`, `hasMore`, `pagination`, `filters`.
fn envelope(name: &str, all: Vec<Value>, p: &Page, filters: Value) -> Value {
    let total = all.len();
    let items: Vec<Value> = all.into_iter().skip(p.offset).take(p.limit).collect();
    let has_more = p.offset + items.len() < total;
    let from = if items.is_empty() { 0 } else { p.offset + 1 };
    let to = p.offset + items.len();
    let mut v = json!({
        "items": items, "total": total, "limit": p.limit, "offset": p.offset, "hasMore": has_more,
        "pagination": {
            "page": p.offset / p.limit + 1, "pageSize": p.limit, "total": total,
            "totalPages": total.div_ceil(p.limit), "from": from, "to": to,
            "hasPrevious": p.offset > 0, "hasNext": has_more,
            "isFirstPage": p.offset == 0, "isLastPage": !has_more
        },
        "filters": filters
    });
    v[name] = v["items"].clone();
    v
}

fn q_str<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

fn contains_ci(hay: &Value, needle: &str) -> bool {
    hay.as_str()
        .is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

// ---------- middleware: recording, faults, idempotency ----------

fn idempotency_key_ok(k: &str) -> bool {
    (1..=255).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

async fn rest_layer(State(s): S, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return framework(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
    };
    let path = parts.uri.path().to_string();
    s.recorder.push_request(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: bytes.to_vec(),
    });
    let delay = s.faults.rest_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(f) = s.faults.take_rest_fault(&path) {
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = if f.body.is_null() {
            status.into_response()
        } else {
            json_resp(status, f.body)
        };
        for (k, v) in f.headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                resp.headers_mut().append(k, v);
            }
        }
        return resp;
    }

    let key = parts
        .headers
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let side_effect = parts.method == Method::POST || parts.method == Method::PATCH;
    let req = Request::from_parts(parts, Body::from(bytes.clone()));
    let (Some(key), true) = (key, side_effect) else {
        return next.run(req).await;
    };
    if !idempotency_key_ok(&key) {
        return v1(
            StatusCode::BAD_REQUEST,
            "IDEMPOTENCY_KEY_MALFORMED",
            "idempotency_key_malformed",
            "idempotency-key must be 1-255 characters from A-Z a-z 0-9 _ . : -",
        );
    }
    let caller = match authenticate_rest(&s.cfg, req.headers()) {
        RestAuth::Ok(c) => c,
        // Unauthenticated calls are refused by the handler; nothing to store.
        _ => return next.run(req).await,
    };
    let store_key = format!("{}|{key}", caller.identity);
    let fingerprint = format!(
        "{} {}\n{}",
        req.method(),
        req.uri().path(),
        String::from_utf8_lossy(&bytes)
    );
    {
        let mut st = s.store();
        match st.idempotency.get(&store_key) {
            Some(e) if e.fingerprint != fingerprint => {
                return v1(
                    StatusCode::CONFLICT,
                    "IDEMPOTENCY_REQUEST_MISMATCH",
                    "idempotency_request_mismatch",
                    "This idempotency-key was used with a different request.",
                );
            }
            Some(IdemEntry { answer: None, .. }) => {
                return v1(
                    StatusCode::CONFLICT,
                    "IDEMPOTENCY_REQUEST_IN_FLIGHT",
                    "idempotency_request_in_flight",
                    "A request with this idempotency-key is still being processed.",
                );
            }
            Some(IdemEntry {
                answer: Some(a), ..
            }) => {
                let mut resp = Response::new(Body::from(a.body.clone()));
                *resp.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
                for (k, v) in &a.headers {
                    if let (Ok(k), Ok(v)) = (
                        axum::http::HeaderName::try_from(k.as_str()),
                        HeaderValue::try_from(v.as_str()),
                    ) {
                        resp.headers_mut().append(k, v);
                    }
                }
                resp.headers_mut()
                    .insert("idempotency-replayed", HeaderValue::from_static("true"));
                return resp;
            }
            None => {
                st.idempotency.insert(
                    store_key.clone(),
                    IdemEntry {
                        fingerprint,
                        answer: None,
                    },
                );
            }
        }
    }
    let resp = next.run(req).await;
    let (rparts, rbody) = resp.into_parts();
    let body = to_bytes(rbody, MAX_BODY).await.unwrap_or_default();
    let mut st = s.store();
    if rparts.status.is_server_error() {
        // A failed attempt must not pin the key: the client's retry runs again.
        st.idempotency.remove(&store_key);
    } else if let Some(e) = st.idempotency.get_mut(&store_key) {
        e.answer = Some(StoredAnswer {
            status: rparts.status.as_u16(),
            headers: rparts
                .headers
                .iter()
                .filter(|(k, _)| *k != "content-length")
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    }
    drop(st);
    Response::from_parts(rparts, Body::from(body))
}

// ---------- agents ----------

async fn agents_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let status = q_str(&q, "status");
    if let Some(st) = status
        && st != "active"
        && st != "paused"
    {
        return Err(bad_request("status must be one of: active, paused"));
    }
    let search = q_str(&q, "search");
    let all: Vec<Value> = s
        .store()
        .agents
        .iter()
        .filter(|a| in_scope(a, &c.scope))
        .filter(|a| search.is_none_or(|t| contains_ci(&a["name"], t) || contains_ci(&a["slug"], t)))
        .filter(|a| match status {
            Some("active") => a["isActive"] == true,
            Some(_) => a["isActive"] == false,
            None => true,
        })
        .cloned()
        .collect();
    ok(envelope(
        "agents",
        all,
        &p,
        json!({"search": search, "status": status}),
    ))
}

fn agent_not_found(id: &str) -> Response {
    json_resp(
        StatusCode::NOT_FOUND,
        json!({"error": "Agent not found", "agentId": id}),
    )
}

async fn agents_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    let a = st
        .agents
        .iter()
        .find(|a| a["id"] == id.as_str() && in_scope(a, &c.scope))
        .cloned();
    drop(st);
    a.map(|a| json_resp(StatusCode::OK, a))
        .ok_or_else(|| agent_not_found(&id))
}

async fn agents_versions(State(s): S, h: HeaderMap, Path(id): Path<String>, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "take", 20)?;
    let st = s.store();
    if !st
        .agents
        .iter()
        .any(|a| a["id"] == id.as_str() && in_scope(a, &c.scope))
    {
        return Err(agent_not_found(&id));
    }
    let mut all: Vec<Value> = st
        .versions
        .iter()
        .filter(|v| v["agentId"] == id.as_str() && in_scope(v, &c.scope))
        .cloned()
        .collect();
    drop(st);
    all.sort_by_key(|v| std::cmp::Reverse(v["versionNumber"].as_u64().unwrap_or(0)));
    // `cursor` is a version id: the page starts after it.
    if let Some(cur) = q_str(&q, "cursor") {
        match all.iter().position(|v| v["id"] == cur) {
            Some(i) => {
                all.drain(..=i);
            }
            None => {
                return Err(invalid_pagination(
                    "cursor does not name a version of this agent",
                ));
            }
        }
    }
    ok(envelope(
        "versions",
        all,
        &p,
        json!({"cursor": q_str(&q, "cursor")}),
    ))
}

// ---------- threads ----------

fn thread_not_found() -> Response {
    framework(StatusCode::NOT_FOUND, "Thread not found")
}

fn visible(t: &Value, c: &Caller) -> bool {
    in_scope(t, &c.scope) && (c.operator || t["userId"].as_str() == c.user_id.as_deref())
}

/// Index of the thread if the caller may see it.
pub(crate) fn thread_index(st: &Store, id: &str, c: &Caller) -> Option<usize> {
    st.threads
        .iter()
        .position(|t| t["id"] == id && visible(t, c))
}

async fn threads_create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let agent_id = match b.get("agentId") {
        Some(Value::String(a)) if !a.trim().is_empty() => a.clone(),
        _ => return Err(bad_request("agentId is required")),
    };
    let title = match b.get("title") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(t)) => json!(t),
        Some(_) => return Err(bad_request("title must be a string or null")),
    };
    let mut st = s.store();
    if !st
        .agents
        .iter()
        .any(|a| a["id"] == agent_id.as_str() && in_scope(a, &c.scope))
    {
        return Err(agent_not_found(&agent_id));
    }
    let now = now_iso();
    let mut t = json!({
        "id": new_id(), "agentId": agent_id, "userId": c.user_id, "endUserId": c.user_id,
        "title": title, "status": "active", "turnCount": 0, "tags": [], "pinnedAt": null,
        "archivedAt": null, "parentThreadId": null, "createdAt": now, "updatedAt": now
    });
    if let Value::Object(o) = &mut t {
        o.extend(scope_fields(&c.scope));
    }
    st.threads.push(t.clone());
    drop(st);
    created(t)
}

async fn threads_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let archived = q_str(&q, "archived");
    if let Some(a) = archived
        && !matches!(a, "true" | "false" | "only")
    {
        return Err(bad_request("archived must be one of: true, false, only"));
    }
    let pinned = q_str(&q, "pinned");
    let (agent, status, tag) = (q_str(&q, "agentId"), q_str(&q, "status"), q_str(&q, "tag"));
    let all: Vec<Value> = s
        .store()
        .threads
        .iter()
        .rev()
        .filter(|t| visible(t, &c))
        .filter(|t| agent.is_none_or(|a| t["agentId"] == a))
        .filter(|t| status.is_none_or(|x| t["status"] == x))
        .filter(|t| {
            tag.is_none_or(|x| {
                t["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|g| g == x))
            })
        })
        .filter(|t| match pinned {
            Some("true") => !t["pinnedAt"].is_null(),
            Some("false") => t["pinnedAt"].is_null(),
            _ => true,
        })
        .filter(|t| {
            let is_archived = !t["archivedAt"].is_null();
            match archived {
                Some("true") => true,
                Some("only") => is_archived,
                _ => !is_archived,
            }
        })
        .cloned()
        .collect();
    ok(envelope(
        "threads",
        all,
        &p,
        json!({"agentId": agent, "status": status, "tag": tag, "pinned": pinned, "archived": archived}),
    ))
}

async fn threads_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    let t = thread_index(&st, &id, &c).map(|i| st.threads[i].clone());
    drop(st);
    t.map(|t| json_resp(StatusCode::OK, t))
        .ok_or_else(thread_not_found)
}

async fn threads_messages(State(s): S, h: HeaderMap, Path(id): Path<String>, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 100)?;
    let st = s.store();
    thread_index(&st, &id, &c).ok_or_else(thread_not_found)?;
    let all: Vec<Value> = st
        .messages
        .iter()
        .filter(|m| m["threadId"] == id.as_str())
        .cloned()
        .collect();
    drop(st);
    ok(envelope("messages", all, &p, json!({"threadId": id})))
}

async fn threads_artifacts(State(s): S, h: HeaderMap, Path(id): Path<String>, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let st = s.store();
    thread_index(&st, &id, &c).ok_or_else(thread_not_found)?;
    // Latest revision per artifact key, with how many revisions exist.
    let mut latest: Vec<Value> = Vec::new();
    for a in st.artifacts.iter().filter(|a| a["threadId"] == id.as_str()) {
        let count = st
            .artifacts
            .iter()
            .filter(|b| b["threadId"] == id.as_str() && b["artifactKey"] == a["artifactKey"])
            .count();
        if let Some(slot) = latest
            .iter_mut()
            .find(|l| l["artifactKey"] == a["artifactKey"])
        {
            *slot = a.clone();
            slot["revisionCount"] = json!(count);
        } else {
            let mut a = a.clone();
            a["revisionCount"] = json!(count);
            latest.push(a);
        }
    }
    drop(st);
    ok(envelope("artifacts", latest, &p, json!({"threadId": id})))
}

fn set_archived(s: &Shared, h: &HeaderMap, id: &str, archived: bool) -> Result<Value, Response> {
    let c = auth(s, h)?;
    let mut st = s.store();
    let i = thread_index(&st, id, &c).ok_or_else(thread_not_found)?;
    let now = now_iso();
    let t = &mut st.threads[i];
    if archived {
        if t["archivedAt"].is_null() {
            t["archivedAt"] = json!(now);
        }
        t["status"] = json!("archived");
    } else {
        t["archivedAt"] = Value::Null;
        t["status"] = json!("active");
    }
    t["updatedAt"] = json!(now);
    Ok(t.clone())
}

async fn threads_archive(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    ok(set_archived(&s, &h, &id, true)?)
}

async fn threads_unarchive(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    ok(set_archived(&s, &h, &id, false)?)
}

async fn threads_delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = set_archived(&s, &h, &id, true)?;
    ok(json!({"archived": true, "archivedAt": t["archivedAt"]}))
}

// ---------- approvals ----------

fn approval_not_found(id: &str) -> Response {
    json_resp(
        StatusCode::NOT_FOUND,
        json!({"error": "Approval not found in this scope", "approvalId": id}),
    )
}

async fn approvals_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let status = q_str(&q, "status");
    if let Some(x) = status
        && !matches!(x, "pending" | "approved" | "rejected" | "timed_out")
    {
        return Err(bad_request(
            "status must be one of: pending, approved, rejected, timed_out",
        ));
    }
    let source = q_str(&q, "source");
    if let Some(x) = source
        && !matches!(x, "request_approval" | "cancel_run" | "mcp_tool_call")
    {
        return Err(bad_request(
            "source must be one of: request_approval, cancel_run, mcp_tool_call",
        ));
    }
    let since = match q_str(&q, "sinceDays") {
        Some(d) => Some(
            d.parse::<i64>()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| bad_request("sinceDays must be an integer between 1 and 365"))?,
        ),
        None => None,
    };
    let cutoff = since.map(|d| crate::store::utc_now() - chrono::Duration::days(d));
    let (thread, agent, search) = (
        q_str(&q, "threadId"),
        q_str(&q, "agentId"),
        q_str(&q, "search"),
    );
    let st = s.store();
    let base: Vec<&Value> = st
        .approvals
        .iter()
        .rev()
        .filter(|a| in_scope(a, &c.scope))
        .filter(|a| thread.is_none_or(|x| a["threadId"] == x))
        .filter(|a| agent.is_none_or(|x| a["agentId"] == x))
        .filter(|a| source.is_none_or(|x| a["source"] == x))
        .filter(|a| search.is_none_or(|x| contains_ci(&a["action"], x) || contains_ci(&a["id"], x)))
        .filter(|a| {
            cutoff.is_none_or(|cut| {
                a["createdAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t >= cut)
            })
        })
        .collect();
    let pending = base.iter().filter(|a| a["status"] == "pending").count();
    let all: Vec<Value> = base
        .into_iter()
        .filter(|a| status.is_none_or(|x| a["status"] == x))
        .cloned()
        .collect();
    drop(st);
    let mut v = envelope(
        "rows",
        all,
        &p,
        json!({"threadId": thread, "agentId": agent, "status": status, "source": source, "sinceDays": since, "search": search}),
    );
    v["pendingCount"] = json!(pending);
    v["fetchedAt"] = json!(now_iso());
    ok(v)
}

async fn approvals_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = operator(&s, &h)?;
    let st = s.store();
    let a = st
        .approvals
        .iter()
        .find(|a| a["id"] == id.as_str() && in_scope(a, &c.scope))
        .cloned();
    drop(st);
    a.map(|a| json_resp(StatusCode::OK, a))
        .ok_or_else(|| approval_not_found(&id))
}

/// Outcome of resolving an approval, shared by REST and the socket `approval_response`.
pub(crate) enum Resolution {
    Resolved(Value),
    Already(Value),
    NotFound,
}

pub(crate) fn resolve_approval(
    s: &Shared,
    scope: &crate::Scope,
    id: &str,
    approved: bool,
    by: &str,
    comment: Option<&str>,
    edited: Option<&Value>,
) -> Resolution {
    let mut st = s.store();
    let Some(a) = st
        .approvals
        .iter_mut()
        .find(|a| a["id"] == id && in_scope(a, scope))
    else {
        return Resolution::NotFound;
    };
    if a["status"] != "pending" {
        return Resolution::Already(json!({
            "resolved": true, "approvalId": id, "approved": a["status"] == "approved",
            "status": a["status"], "persisted": true
        }));
    }
    resolve_approval_json(a, approved, by, comment, edited);
    if let Some(tx) = st.waiting.remove(id) {
        let _ = tx.send(crate::store::Decision {
            approved,
            responded_by: by.to_string(),
        });
    }
    let mut out = json!({"resolved": true, "approvalId": id, "approved": approved});
    if edited.is_some() {
        out["editedArgsApplied"] = json!(true);
    }
    Resolution::Resolved(out)
}

async fn approvals_resolve(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(approved) = b.get("approved").and_then(Value::as_bool) else {
        return Err(bad_request("approved must be a boolean"));
    };
    let comment = match b.get("comment") {
        None | Some(Value::Null) => None,
        Some(Value::String(x)) => Some(x.as_str()),
        Some(_) => return Err(bad_request("comment must be a string")),
    };
    let edited = match b.get("editedArgs") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err(bad_request("editedArgs must be an object")),
    };
    let by = c.user_id.clone().unwrap_or_else(|| "operator".into());
    match resolve_approval(&s, &c.scope, &id, approved, &by, comment, edited) {
        Resolution::Resolved(v) | Resolution::Already(v) => ok(v),
        Resolution::NotFound => Err(approval_not_found(&id)),
    }
}

// ---------- budgets ----------

fn window_key(period: &str) -> String {
    let now = crate::store::utc_now();
    match period {
        "hour" => now.format("%Y-%m-%dT%H").to_string(),
        "week" => now.format("%G-W%V").to_string(),
        "month" => now.format("%Y-%m").to_string(),
        _ => now.format("%Y-%m-%d").to_string(),
    }
}

async fn budgets_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let all: Vec<Value> = s
        .store()
        .caps
        .iter()
        .filter(|x| in_scope(x, &c.scope))
        .cloned()
        .collect();
    ok(envelope("caps", all, &p, json!({})))
}

async fn budgets_status(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let (agent, user) = (q_str(&q, "agentId"), q_str(&q, "userId"));
    let st = s.store();
    let mut blocked_reason = None;
    let caps: Vec<Value> = st
        .caps
        .iter()
        .filter(|x| in_scope(x, &c.scope) && x["enabled"] == true)
        .filter(|x| match x["scopeType"].as_str() {
            Some("agent") => agent.is_some_and(|a| x["targetId"] == a),
            Some("user") => user.is_some_and(|u| x["targetId"] == u),
            _ => true,
        })
        .map(|cap| {
            let period = cap["period"].as_str().unwrap_or("day");
            let key = window_key(period);
            let turns = st.turns.iter().filter(|t| {
                t.scope == c.scope
                    && (cap["scopeType"] != "agent" || cap["targetId"] == t.agent_id.as_str())
                    && t.created_at
                        .starts_with(key.split('W').next().unwrap_or(""))
            });
            let (spent, runs) = turns.fold((0.0, 0u64), |(s, r), t| (s + t.cost_cents, r + 1));
            let limit = cap["limitCents"].as_f64().unwrap_or(0.0);
            let blocked = limit > 0.0 && spent >= limit;
            if blocked && blocked_reason.is_none() {
                blocked_reason = Some(format!("Budget cap {} exhausted", cap["id"]));
            }
            json!({
                "cap": cap, "windowKey": key, "spentCents": spent, "runs": runs,
                "percent": if limit > 0.0 { spent / limit * 100.0 } else { 0.0 },
                "runsPercent": 0.0, "blocked": blocked, "overrideActive": false
            })
        })
        .collect();
    drop(st);
    let mut v = json!({"caps": caps, "blocked": blocked_reason.is_some()});
    if let Some(r) = blocked_reason {
        v["reason"] = json!(r);
    }
    ok(v)
}

// ---------- monitoring ----------

async fn monitoring_runs(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let (agent, thread, status) = (
        q_str(&q, "agentId"),
        q_str(&q, "threadId"),
        q_str(&q, "status"),
    );
    let all: Vec<Value> = s
        .store()
        .turns
        .iter()
        .rev()
        .filter(|t| t.scope == c.scope)
        .filter(|t| agent.is_none_or(|a| t.agent_id == a))
        .filter(|t| thread.is_none_or(|x| t.thread_id == x))
        .filter(|t| status.is_none_or(|x| t.status == x))
        .map(|t| {
            json!({"id": t.id, "agentId": t.agent_id, "threadId": t.thread_id, "status": t.status,
                   "createdAt": t.created_at,
                   "durationMs": (t.end_nanos.saturating_sub(t.start_nanos) / 1_000_000) as u64,
                   "costCents": t.cost_cents})
        })
        .collect();
    ok(envelope(
        "runs",
        all,
        &p,
        json!({"agentId": agent, "threadId": thread, "status": status}),
    ))
}

fn nanos_iso(n: u128) -> String {
    let secs = i64::try_from(n / 1_000_000_000).unwrap_or_default();
    let sub = u32::try_from(n % 1_000_000_000).unwrap_or_default();
    chrono::DateTime::from_timestamp(secs, sub)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

async fn monitoring_trace(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = operator(&s, &h)?;
    let st = s.store();
    let i = thread_index(&st, &id, &c).ok_or_else(thread_not_found)?;
    let t = &st.threads[i];
    let thread = json!({"id": t["id"], "agentId": t["agentId"], "title": t["title"], "status": t["status"],
                        "turnCount": t["turnCount"], "createdAt": t["createdAt"], "updatedAt": t["updatedAt"]});
    let messages: Vec<Value> = st
        .messages
        .iter()
        .filter(|m| m["threadId"] == id.as_str())
        .cloned()
        .collect();
    let mut spans = Vec::new();
    let mut tree = Vec::new();
    let (mut cost, mut input, mut output, mut tools) = (0.0, 0u64, 0u64, 0u64);
    for turn in st.turns.iter().filter(|x| x.thread_id == id) {
        cost += turn.cost_cents;
        input += turn.input_tokens;
        output += turn.output_tokens;
        tools += turn.tool_calls;
        let trace_id = turn.id.replace('-', "");
        let trace_id = format!("{trace_id:0>32}");
        let trace_id = &trace_id[trace_id.len() - 32..];
        let (a, b) = (turn.start_nanos, turn.end_nanos);
        let mid = a + (b - a) / 2;
        let span = |sid: &str,
                    parent: Option<&str>,
                    name: &str,
                    kind: &str,
                    s0: u128,
                    s1: u128,
                    attrs: Value| {
            let mut v = json!({
                "traceId": trace_id, "spanId": sid, "name": name, "kind": kind,
                "startTimeUnixNano": s0.to_string(), "endTimeUnixNano": s1.to_string(),
                "durationMs": ((s1 - s0) / 1_000_000) as u64,
                "status": if turn.status == "completed" { "ok" } else { "error" },
                "attributes": attrs
            });
            if let Some(p) = parent {
                v["parentSpanId"] = json!(p);
            }
            if turn.status != "completed" {
                v["errorMessage"] = json!(format!("turn {}", turn.status));
            }
            v
        };
        let root_id = format!("{:016x}", a as u64);
        let root = span(
            &root_id,
            None,
            "agent.turn",
            "server",
            a,
            b,
            json!({"agent.id": turn.agent_id, "thread.id": turn.thread_id, "cost.cents": turn.cost_cents, "streamed": true}),
        );
        let llm = span(
            &format!("{:016x}", (a as u64).wrapping_add(1)),
            Some(&root_id),
            "llm.generate",
            "client",
            mid,
            b,
            json!({"llm.model": "gpt-4o-mini", "llm.input_tokens": turn.input_tokens, "llm.output_tokens": turn.output_tokens}),
        );
        let mut children = vec![llm.clone()];
        spans.push(root.clone());
        spans.push(llm);
        if turn.tool_calls > 0 {
            let mut tool = span(
                &format!("{:016x}", (a as u64).wrapping_add(2)),
                Some(&root_id),
                "tool.lookup",
                "internal",
                a,
                mid,
                json!({"tool.name": "lookup"}),
            );
            tool["events"] = json!([{"name": "tool.result", "timeUnixNano": mid.to_string(), "attributes": {"ok": true}}]);
            spans.push(tool.clone());
            children.insert(0, tool);
        }
        let mut node = root;
        node["children"] = json!(
            children
                .into_iter()
                .map(|mut c| {
                    c["children"] = json!([]);
                    c
                })
                .collect::<Vec<_>>()
        );
        tree.push(node);
    }
    let mut timeline: Vec<(String, Value)> = messages
        .iter()
        .map(|m| {
            (
                m["createdAt"].as_str().unwrap_or("").to_string(),
                json!({"kind": "message", "timestamp": m["createdAt"], "data": m}),
            )
        })
        .collect();
    for sp in &spans {
        let n: u128 = sp["startTimeUnixNano"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let ts = nanos_iso(n);
        timeline.push((
            ts.clone(),
            json!({"kind": "span", "timestamp": ts, "data": sp}),
        ));
    }
    timeline.sort_by(|x, y| x.0.cmp(&y.0));
    let rollup = json!({
        "totalMessages": messages.len(), "totalSpans": spans.len(), "totalCostCents": cost,
        "totalInputTokens": input, "totalOutputTokens": output, "toolCallCount": tools,
        "firstMessageAt": messages.first().map(|m| m["createdAt"].clone()),
        "lastMessageAt": messages.last().map(|m| m["createdAt"].clone())
    });
    drop(st);
    ok(json!({
        "threadId": id, "thread": thread, "messages": messages, "spans": spans, "spanTree": tree,
        "timeline": timeline.into_iter().map(|x| x.1).collect::<Vec<_>>(), "rollup": rollup
    }))
}

async fn monitoring_cost_by_agent(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let days = match q_str(&q, "days") {
        None => 30,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| bad_request("days must be an integer between 1 and 3650"))?,
    };
    let p = page(&q, "limit", 50)?;
    let search = q_str(&q, "search");
    let cutoff = (crate::store::utc_now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let st = s.store();
    let mut rows: Vec<Value> = Vec::new();
    for t in st
        .turns
        .iter()
        .filter(|t| t.scope == c.scope && t.created_at >= cutoff)
    {
        let name = st
            .agents
            .iter()
            .find(|a| a["id"] == t.agent_id.as_str() && in_scope(a, &c.scope))
            .map(|a| a["name"].clone())
            .unwrap_or(Value::Null);
        let row = match rows
            .iter_mut()
            .find(|r| r["agentId"] == t.agent_id.as_str())
        {
            Some(r) => r,
            None => {
                rows.push(json!({"agentId": t.agent_id, "agentName": name, "costCents": 0.0, "costWithCacheCents": 0.0,
                    "inputTokens": 0, "outputTokens": 0, "cacheCreationInputTokens": 0, "cacheReadInputTokens": 0,
                    "tasks": 0, "threads": 0, "threadIds": []}));
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        let add = |v: &Value, x: f64| json!(v.as_f64().unwrap_or(0.0) + x);
        row["costCents"] = add(&row["costCents"], t.cost_cents);
        row["costWithCacheCents"] = add(&row["costWithCacheCents"], t.cost_cents);
        row["inputTokens"] = json!(row["inputTokens"].as_u64().unwrap_or(0) + t.input_tokens);
        row["outputTokens"] = json!(row["outputTokens"].as_u64().unwrap_or(0) + t.output_tokens);
        row["tasks"] = json!(row["tasks"].as_u64().unwrap_or(0) + 1);
        if let Some(ids) = row["threadIds"].as_array_mut()
            && !ids.iter().any(|x| x == t.thread_id.as_str())
        {
            ids.push(json!(t.thread_id));
        }
    }
    drop(st);
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            let n = r["threadIds"].as_array().map_or(0, Vec::len);
            r["threads"] = json!(n);
            if let Value::Object(o) = &mut r {
                o.remove("threadIds");
            }
            r
        })
        .filter(|r| {
            search.is_none_or(|x| contains_ci(&r["agentName"], x) || contains_ci(&r["agentId"], x))
        })
        .collect();
    let mut v = envelope("rows", rows, &p, json!({"days": days, "search": search}));
    v["fetchedAt"] = json!(now_iso());
    ok(v)
}

async fn monitoring_cost(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let date = match q_str(&q, "date") {
        None => crate::store::utc_now().format("%Y-%m-%d").to_string(),
        Some(d) => {
            if d.len() != 10 || chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                return Err(bad_request("date must be YYYY-MM-DD"));
            }
            d.to_string()
        }
    };
    let st = s.store();
    let (mut input, mut output, mut cost, mut tasks) = (0u64, 0u64, 0.0, 0u64);
    for t in st
        .turns
        .iter()
        .filter(|t| t.scope == c.scope && t.day == date)
    {
        input += t.input_tokens;
        output += t.output_tokens;
        cost += t.cost_cents;
        tasks += 1;
    }
    drop(st);
    ok(json!({
        "date": date, "inputTokens": input, "outputTokens": output, "costCents": cost, "tasks": tasks,
        "byLane": {
            "chat": {"inputTokens": input, "outputTokens": output, "costCents": cost, "tasks": tasks},
            "background": {"inputTokens": 0, "outputTokens": 0, "costCents": 0.0, "tasks": 0}
        }
    }))
}

// ---------- jobs ----------

fn job_not_found() -> Response {
    framework(StatusCode::NOT_FOUND, "Job not found")
}

const JOB_STRING_FIELDS: [&str; 6] = [
    "displayName",
    "handler",
    "description",
    "invocationType",
    "scheduleCron",
    "scheduleTimezone",
];

fn validate_job_fields(b: &serde_json::Map<String, Value>, errors: &mut Vec<String>) {
    for f in JOB_STRING_FIELDS {
        if let Some(v) = b.get(f)
            && !(v.is_string() || (v.is_null() && !matches!(f, "displayName" | "handler")))
        {
            errors.push(format!("{f} must be a string"));
        }
    }
    for f in ["timeout", "maxRetries"] {
        if let Some(v) = b.get(f)
            && !v.is_u64()
        {
            errors.push(format!("{f} must be a non-negative integer"));
        }
    }
    if let Some(v) = b.get("allowedAgentIds")
        && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        errors.push("allowedAgentIds must be an array of strings".into());
    }
    if let Some(v) = b.get("invocationType").and_then(Value::as_str)
        && !matches!(v, "manual" | "scheduled" | "agent" | "webhook")
    {
        errors.push("invocationType must be one of: manual, scheduled, agent, webhook".into());
    }
    if let Some(v) = b.get("isActive")
        && !v.is_boolean()
    {
        errors.push("isActive must be a boolean".into());
    }
}

fn validation_failed(errors: Vec<String>) -> Response {
    json_resp(
        StatusCode::BAD_REQUEST,
        json!({"statusCode": 400, "message": "Validation failed", "error": "Bad Request", "validationErrors": errors}),
    )
}

async fn jobs_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let status = q_str(&q, "status");
    if let Some(x) = status
        && !matches!(
            x,
            "PENDING" | "ACTIVE" | "SUCCEEDED" | "FAILED" | "CANCELLED"
        )
    {
        return Err(bad_request(
            "status must be one of: PENDING, ACTIVE, SUCCEEDED, FAILED, CANCELLED",
        ));
    }
    let search = q_str(&q, "search");
    let all: Vec<Value> = s
        .store()
        .jobs
        .iter()
        .filter(|j| in_scope(j, &c.scope))
        .filter(|j| {
            search.is_none_or(|x| contains_ci(&j["jobId"], x) || contains_ci(&j["displayName"], x))
        })
        .filter(|j| match status {
            None => true,
            Some("ACTIVE") => j["isActive"] == true,
            Some("CANCELLED") => j["isActive"] == false,
            Some(x) => j["lastRunStatus"] == x,
        })
        .cloned()
        .collect();
    ok(envelope(
        "jobs",
        all,
        &p,
        json!({"search": search, "status": status}),
    ))
}

async fn jobs_create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let mut errors = Vec::new();
    let job_id = b
        .get("jobId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let id_ok = !job_id.is_empty()
        && job_id.len() <= 64
        && job_id
            .bytes()
            .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == b'-' || x == b'_');
    if !id_ok {
        errors.push("jobId must be 1-64 characters from a-z 0-9 - _".into());
    }
    for f in ["displayName", "handler"] {
        if b.get(f)
            .and_then(Value::as_str)
            .is_none_or(|x| x.trim().is_empty())
        {
            errors.push(format!("{f} is required"));
        }
    }
    validate_job_fields(&b, &mut errors);
    if !errors.is_empty() {
        return Err(validation_failed(errors));
    }
    let mut st = s.store();
    if st
        .jobs
        .iter()
        .any(|j| j["jobId"] == job_id.as_str() && in_scope(j, &c.scope))
    {
        return Err(framework(
            StatusCode::CONFLICT,
            &format!("Job with jobId '{job_id}' already exists"),
        ));
    }
    let now = now_iso();
    let g = |k: &str, d: Value| b.get(k).cloned().unwrap_or(d);
    let mut job = json!({
        "id": new_id(), "jobId": job_id, "displayName": g("displayName", Value::Null),
        "description": g("description", Value::Null), "invocationType": g("invocationType", json!("manual")),
        "scheduleCron": g("scheduleCron", Value::Null), "scheduleTimezone": g("scheduleTimezone", Value::Null),
        "allowedAgentIds": g("allowedAgentIds", json!([])), "payloadSchema": g("payloadSchema", Value::Null),
        "handler": g("handler", Value::Null), "timeout": g("timeout", json!(60)), "maxRetries": g("maxRetries", json!(0)),
        "isActive": true, "handlerVersion": 1, "createdBy": c.user_id.clone().unwrap_or_else(|| "api-key".into()),
        "createdAt": now, "updatedAt": now, "lastStartedAt": null
    });
    if let Value::Object(o) = &mut job {
        o.extend(scope_fields(&c.scope));
    }
    st.jobs.push(job.clone());
    drop(st);
    created(json!({"job": job}))
}

fn find_job<'a>(st: &'a mut Store, c: &Caller, id: &str) -> Option<&'a mut Value> {
    st.jobs
        .iter_mut()
        .find(|j| j["jobId"] == id && in_scope(j, &c.scope))
}

async fn jobs_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let j = find_job(&mut st, &c, &id)
        .cloned()
        .ok_or_else(job_not_found)?;
    drop(st);
    ok(json!({"job": j}))
}

async fn jobs_update(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let mut errors = Vec::new();
    validate_job_fields(&b, &mut errors);
    if b.contains_key("jobId") {
        errors.push("jobId cannot be changed".into());
    }
    if !errors.is_empty() {
        return Err(validation_failed(errors));
    }
    let mut st = s.store();
    let j = find_job(&mut st, &c, &id).ok_or_else(job_not_found)?;
    const FIELDS: [&str; 10] = [
        "displayName",
        "handler",
        "description",
        "invocationType",
        "scheduleCron",
        "scheduleTimezone",
        "allowedAgentIds",
        "payloadSchema",
        "timeout",
        "maxRetries",
    ];
    for f in FIELDS.iter().chain(["isActive"].iter()) {
        if let Some(v) = b.get(*f) {
            if *f == "handler" && j["handler"] != *v {
                j["handlerVersion"] = json!(j["handlerVersion"].as_u64().unwrap_or(1) + 1);
            }
            j[*f] = v.clone();
        }
    }
    j["updatedAt"] = json!(now_iso());
    let out = j.clone();
    drop(st);
    ok(json!({"job": out}))
}

async fn jobs_delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let before = st.jobs.len();
    st.jobs
        .retain(|j| !(j["jobId"] == id.as_str() && in_scope(j, &c.scope)));
    if st.jobs.len() == before {
        return Err(job_not_found());
    }
    ok(json!({"deleted": true}))
}

async fn jobs_dispatch(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    if let Some(p) = b.get("payload")
        && !(p.is_object() || p.is_null())
    {
        return Err(bad_request("payload must be an object"));
    }
    let mut st = s.store();
    let j = find_job(&mut st, &c, &id).ok_or_else(job_not_found)?;
    if j["isActive"] != true {
        return ok(json!({"accepted": false, "jobId": id, "message": "Job is inactive"}));
    }
    j["lastStartedAt"] = json!(now_iso());
    ok(json!({"accepted": true, "jobId": id, "message": "Job dispatched"}))
}

// ---------- trigger (bgo) ----------

fn not_found_named(what: &str) -> Response {
    framework(StatusCode::NOT_FOUND, &format!("{what} not found"))
}

async fn bgo_tasks_list(State(s): S, h: HeaderMap) -> Res {
    let c = auth(&s, &h)?;
    let all: Vec<Value> = s
        .store()
        .tasks
        .iter()
        .filter(|t| in_scope(t, &c.scope))
        .cloned()
        .collect();
    let p = Page {
        limit: all.len().max(1),
        offset: 0,
    };
    ok(envelope("tasks", all, &p, json!({})))
}

fn new_run(c: &Caller, task: &str, payload: Value, options: Value) -> Value {
    let now = now_iso();
    let mut r = json!({
        "id": format!("run_{}", new_id().replace('-', "")), "taskId": task, "taskIdentifier": task,
        "status": "QUEUED", "payload": payload, "options": options.clone(),
        "tags": options.get("tags").cloned().unwrap_or(json!([])),
        "metadata": options.get("metadata").cloned().unwrap_or(Value::Null),
        "idempotencyKey": options.get("idempotencyKey").cloned().unwrap_or(Value::Null),
        "createdAt": now, "updatedAt": now, "isTest": false
    });
    if let Value::Object(o) = &mut r {
        o.extend(scope_fields(&c.scope));
    }
    r
}

fn run_handle(r: &Value) -> Value {
    let id = r["id"].as_str().unwrap_or("");
    let tail: String = id.chars().skip(4).take(12).collect();
    json!({"id": id, "publicAccessToken": format!("pat_{tail}")})
}

fn parse_options(b: &serde_json::Map<String, Value>) -> Result<Value, Response> {
    match b.get("options") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(o @ Value::Object(_)) => Ok(o.clone()),
        Some(_) => Err(bad_request("options must be an object")),
    }
}

async fn bgo_tasks_trigger(
    State(s): S,
    h: HeaderMap,
    Path(task): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let options = parse_options(&b)?;
    let mut st = s.store();
    if !st
        .tasks
        .iter()
        .any(|t| t["id"] == task.as_str() && in_scope(t, &c.scope))
    {
        return Err(not_found_named("Task"));
    }
    if let Some(k) = options.get("idempotencyKey").filter(|k| !k.is_null())
        && let Some(r) = st.runs.iter().find(|r| {
            r["taskId"] == task.as_str() && r["idempotencyKey"] == *k && in_scope(r, &c.scope)
        })
    {
        return ok(run_handle(r));
    }
    let r = new_run(
        &c,
        &task,
        b.get("payload").cloned().unwrap_or(Value::Null),
        options,
    );
    let handle = run_handle(&r);
    st.runs.push(r);
    created(handle)
}

async fn bgo_runs_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let (task, status) = (q_str(&q, "taskId"), q_str(&q, "status"));
    let all: Vec<Value> = s
        .store()
        .runs
        .iter()
        .rev()
        .filter(|r| in_scope(r, &c.scope))
        .filter(|r| task.is_none_or(|x| r["taskId"] == x))
        .filter(|r| status.is_none_or(|x| r["status"] == x))
        .cloned()
        .collect();
    ok(envelope(
        "runs",
        all,
        &p,
        json!({"taskId": task, "status": status}),
    ))
}

fn find_run<'a>(st: &'a mut Store, c: &Caller, id: &str) -> Option<&'a mut Value> {
    st.runs
        .iter_mut()
        .find(|r| r["id"] == id && in_scope(r, &c.scope))
}

async fn bgo_runs_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let r = find_run(&mut st, &c, &id)
        .cloned()
        .ok_or_else(|| not_found_named("Run"))?;
    ok(r)
}

async fn bgo_runs_cancel(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let r = find_run(&mut st, &c, &id).ok_or_else(|| not_found_named("Run"))?;
    r["status"] = json!("CANCELED");
    r["updatedAt"] = json!(now_iso());
    ok(json!({"status": "CANCELED"}))
}

async fn bgo_runs_replay(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let old = find_run(&mut st, &c, &id)
        .cloned()
        .ok_or_else(|| not_found_named("Run"))?;
    let mut options = old["options"].clone();
    if let Value::Object(o) = &mut options {
        o.remove("idempotencyKey");
    }
    let r = new_run(
        &c,
        old["taskId"].as_str().unwrap_or(""),
        old["payload"].clone(),
        options,
    );
    let handle = run_handle(&r);
    st.runs.push(r);
    created(handle)
}

async fn bgo_schedules_list(State(s): S, h: HeaderMap) -> Res {
    let c = auth(&s, &h)?;
    let all: Vec<Value> = s
        .store()
        .schedules
        .iter()
        .filter(|x| in_scope(x, &c.scope))
        .cloned()
        .collect();
    let p = Page {
        limit: all.len().max(1),
        offset: 0,
    };
    ok(envelope("schedules", all, &p, json!({})))
}

async fn bgo_schedules_create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let mut errors = Vec::new();
    let task = b.get("taskId").and_then(Value::as_str).unwrap_or("");
    let cron = b.get("cron").and_then(Value::as_str).unwrap_or("");
    if task.is_empty() {
        errors.push("taskId is required".to_string());
    }
    if cron.split_whitespace().count() != 5 {
        errors.push("cron must be a 5-field cron expression".to_string());
    }
    if let Some(tz) = b.get("timezone")
        && !tz.is_string()
    {
        errors.push("timezone must be a string".to_string());
    }
    if !errors.is_empty() {
        return Err(validation_failed(errors));
    }
    let mut st = s.store();
    if !st
        .tasks
        .iter()
        .any(|t| t["id"] == task && in_scope(t, &c.scope))
    {
        return Err(not_found_named("Task"));
    }
    let now = now_iso();
    let mut sched = json!({
        "id": format!("sched_{}", &new_id().replace('-', "")[..16]), "taskId": task, "cron": cron,
        "timezone": b.get("timezone").cloned().unwrap_or(json!("UTC")),
        "payload": b.get("payload").cloned().unwrap_or(Value::Null), "active": true,
        "nextRun": null, "createdAt": now, "updatedAt": now
    });
    if let Value::Object(o) = &mut sched {
        o.extend(scope_fields(&c.scope));
    }
    st.schedules.push(sched.clone());
    created(sched)
}

fn set_schedule_active(s: &Shared, h: &HeaderMap, id: &str, active: bool) -> Res {
    let c = auth(s, h)?;
    let mut st = s.store();
    let sc = st
        .schedules
        .iter_mut()
        .find(|x| x["id"] == id && in_scope(x, &c.scope))
        .ok_or_else(|| not_found_named("Schedule"))?;
    sc["active"] = json!(active);
    sc["updatedAt"] = json!(now_iso());
    ok(sc.clone())
}

async fn bgo_schedules_activate(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    set_schedule_active(&s, &h, &id, true)
}

async fn bgo_schedules_deactivate(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    set_schedule_active(&s, &h, &id, false)
}

async fn bgo_schedules_delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let before = st.schedules.len();
    st.schedules
        .retain(|x| !(x["id"] == id.as_str() && in_scope(x, &c.scope)));
    if st.schedules.len() == before {
        return Err(not_found_named("Schedule"));
    }
    ok(json!({"id": id, "deleted": true}))
}

async fn bgo_batches_trigger(
    State(s): S,
    h: HeaderMap,
    Path(task): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(payloads) = b.get("payloads").and_then(Value::as_array).cloned() else {
        return Err(bad_request("payloads must be an array"));
    };
    let options = parse_options(&b)?;
    let mut st = s.store();
    if !st
        .tasks
        .iter()
        .any(|t| t["id"] == task.as_str() && in_scope(t, &c.scope))
    {
        return Err(not_found_named("Task"));
    }
    let mut ids = Vec::new();
    for p in payloads {
        let r = new_run(&c, &task, p, options.clone());
        ids.push(r["id"].clone());
        st.runs.push(r);
    }
    let batch_id = format!("batch_{}", new_id().replace('-', ""));
    let mut batch = json!({"id": batch_id, "status": "PENDING", "runIds": ids, "taskId": task, "createdAt": now_iso()});
    if let Value::Object(o) = &mut batch {
        o.extend(scope_fields(&c.scope));
    }
    st.batches.push(batch);
    created(json!({"batchId": batch_id, "runIds": ids}))
}

async fn bgo_batches_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    let b = st
        .batches
        .iter()
        .find(|x| x["id"] == id.as_str() && in_scope(x, &c.scope))
        .cloned()
        .ok_or_else(|| not_found_named("Batch"))?;
    ok(b)
}

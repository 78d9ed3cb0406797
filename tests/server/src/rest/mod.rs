//! REST routes under `/api/v1/agent`, answering in the real server's shapes.

// Handlers short-circuit with a ready `Response` as the error; boxing it would only add
// noise to a test server where the extra bytes on the stack do not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::{Caller, RestAuth, authenticate_rest};
use crate::record::RecordedRequest;
use crate::routes::Routes;
use crate::store::{IdemEntry, StoredAnswer, new_id};

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
type Res = Result<Response, Response>;

mod agents;
mod approvals;
mod bgo;
mod body_limits;
mod budgets;
mod chat;
mod deprecation;
mod jobs;
mod memory;
mod messages;
mod monitoring;
mod stream;
mod threads;
mod tokens;
mod tools;
mod turns;

// The socket lane shares thread visibility and approval resolution with REST.
pub(crate) use approvals::{Resolution, resolve_approval};
pub(crate) use threads::thread_index;

const MAX_BODY: usize = 4 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Routes::new("/api/v1/agent")
        .get("/agents", agents::list)
        .get("/agents/{agent_id}", agents::get)
        .get("/agents/{agent_id}/versions", agents::versions)
        .post("/agents/{agent_id}/messages", turns::agents_send)
        .post("/threads/{thread_id}/stream", stream::threads_stream)
        .get("/threads", threads::list)
        .post("/threads", threads::create)
        .get("/threads/{thread_id}", threads::get)
        .delete("/threads/{thread_id}", threads::delete)
        .get("/threads/{thread_id}/messages", threads::messages)
        .post("/threads/{thread_id}/messages", turns::threads_send)
        .get("/threads/{thread_id}/artifacts", threads::artifacts)
        .post("/threads/{thread_id}/archive", threads::archive)
        .post("/threads/{thread_id}/unarchive", threads::unarchive)
        .patch("/threads/{thread_id}", chat::update)
        .patch("/threads/{thread_id}/rename", chat::rename)
        .post("/threads/{thread_id}/pin", chat::pin)
        .post("/threads/{thread_id}/tags", chat::set_tags)
        .post("/threads/{thread_id}/fork", chat::fork)
        .post(
            "/threads/{thread_id}/messages/{message_id}/edit-and-rerun",
            chat::edit_and_rerun,
        )
        .post(
            "/threads/{thread_id}/messages/{message_id}/retry",
            chat::retry,
        )
        .get(
            "/threads/{thread_id}/messages/{message_id}/replies",
            chat::replies,
        )
        .get("/threads/{thread_id}/reply-counts", chat::reply_counts)
        .post("/attachments/presigned", chat::presign)
        .get("/monitoring/approvals", approvals::list)
        .get("/monitoring/approvals/{approval_id}", approvals::get)
        .post("/approvals/{approval_id}/resolve", approvals::resolve)
        .post(
            "/durable-approvals/{token}/resolve",
            approvals::resolve_durable,
        )
        .get("/messages/{message_id}/rating", messages::rating_get)
        .post("/messages/{message_id}/rating", messages::rating_put)
        .delete("/messages/{message_id}/rating", messages::rating_delete)
        .get("/tools", tools::list)
        .get("/tools/search", tools::search)
        .get("/tools/stats", tools::stats)
        .get("/tools/matrix", tools::matrix)
        .post("/tools/execute", tools::execute)
        // One parameter name per position: the first segment is a tool id or an entity id.
        .post("/tools/{id}/test", tools::test)
        .patch("/tools/{id}/{tool_name}/enabled", tools::set_enabled)
        .get("/budgets", budgets::list)
        .get("/budgets/status", budgets::status)
        .get("/monitoring/runs", monitoring::runs)
        .get("/monitoring/trace/{thread_id}", monitoring::trace)
        .get("/monitoring/cost-by-agent", monitoring::cost_by_agent)
        .get("/monitoring/cost", monitoring::cost)
        .get(
            "/monitoring/cost/thread/{thread_id}",
            monitoring::cost_thread,
        )
        .get("/jobs", jobs::list)
        .post("/jobs", jobs::create)
        .get("/jobs/{job_id}", jobs::get)
        .patch("/jobs/{job_id}", jobs::update)
        .delete("/jobs/{job_id}", jobs::delete)
        .post("/jobs/{job_id}/dispatch", jobs::dispatch)
        .get("/trigger/tasks", bgo::tasks_list)
        .post("/trigger/tasks/{task_id}/trigger", bgo::tasks_trigger)
        .get("/trigger/runs", bgo::runs_list)
        .get("/trigger/runs/{run_id}", bgo::runs_get)
        .post("/trigger/runs/{run_id}/cancel", bgo::runs_cancel)
        .post("/trigger/runs/{run_id}/replay", bgo::runs_replay)
        .get("/trigger/schedules", bgo::schedules_list)
        .post("/trigger/schedules", bgo::schedules_create)
        .delete("/trigger/schedules/{schedule_id}", bgo::schedules_delete)
        .post(
            "/trigger/schedules/{schedule_id}/activate",
            bgo::schedules_activate,
        )
        .post(
            "/trigger/schedules/{schedule_id}/deactivate",
            bgo::schedules_deactivate,
        )
        .get("/trigger/batches/{id}", bgo::batches_get)
        .post("/trigger/batches/{id}", bgo::batches_trigger);
    let memory = deprecation::ALIASES
        .iter()
        .fold(memory::routes("/api/v1/memory"), |r, a| {
            r.merge(memory::routes(a.alias))
        });
    let others = Routes::new("/api/v1")
        .post("/public/guest-token", tokens::guest)
        .post("/entities/{entity_id}/session-tokens", tokens::session);
    api.merge(memory)
        .merge(others)
        .merge(crate::v1_stream::routes())
        .merge(crate::v1::routes())
        .with_listing()
        .fallback(not_found_route)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            rest_layer,
        ))
        .layer(axum::middleware::from_fn(deprecation::signal))
        .layer(axum::middleware::from_fn(body_limits::cap))
        .merge(crate::storage::routes())
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

/// 400 listing every field problem at once.
fn validation_failed(errors: Vec<String>) -> Response {
    json_resp(
        StatusCode::BAD_REQUEST,
        json!({"statusCode": 400, "message": "Validation failed", "error": "Bad Request", "validationErrors": errors}),
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
    // V1 operations keep their own idempotency rules, per operation class (crate::v1).
    // A streamed turn forwards its key to the turn itself; its answer cannot be stored.
    let side_effect = (parts.method == Method::POST || parts.method == Method::PATCH)
        && !crate::v1::is_v1_path(&path)
        && !path.ends_with("/stream");
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

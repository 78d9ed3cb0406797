//! Jobs: CRUD and dispatch, addressed by the job's internal `id`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::store::{Store, in_scope, new_id, now_iso, scope_fields};

use super::{
    Q, Res, S, bad_request, body_object, contains_ci, created, envelope, framework, ok, operator,
    page, q_str, validation_failed,
};

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

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
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

/// A stand-in for compiling the handler: unbalanced `{}`, `[]` or `()` is a syntax error,
/// phrased like the V8 message the real server stores. Brackets inside strings and
/// comments count too: handlers in tests are short.
pub(super) fn handler_syntax_error(src: &str) -> Option<String> {
    let mut open = Vec::new();
    for ch in src.chars() {
        match ch {
            '{' | '[' | '(' => open.push(ch),
            '}' | ']' | ')' => {
                let want = match ch {
                    '}' => '{',
                    ']' => '[',
                    _ => '(',
                };
                if open.pop() != Some(want) {
                    return Some(format!("SyntaxError: Unexpected token '{ch}'"));
                }
            }
            _ => {}
        }
    }
    (!open.is_empty()).then(|| "SyntaxError: Unexpected end of input".to_string())
}

/// `jobId` is the external key: 1-64 characters from `a-z 0-9 -`.
fn job_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == b'-')
}

fn required_str<'a>(b: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a str> {
    b.get(k)
        .and_then(Value::as_str)
        .filter(|x| !x.trim().is_empty())
}

pub(super) async fn create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = operator(&s, &h)?;
    let b = body_object(&body)?;
    // The real controller checks the three required fields one by one, in this order.
    let job_id = b.get("jobId").and_then(Value::as_str).unwrap_or("");
    if !job_id_ok(job_id) {
        return Err(bad_request(
            "jobId must be 1-64 lowercase alphanumeric + hyphens",
        ));
    }
    if required_str(&b, "displayName").is_none() {
        return Err(bad_request("displayName is required"));
    }
    let Some(handler) = required_str(&b, "handler") else {
        return Err(bad_request("handler source is required"));
    };
    let mut errors = Vec::new();
    validate_job_fields(&b, &mut errors);
    if !errors.is_empty() {
        return Err(validation_failed(errors));
    }
    let syntax_error = handler_syntax_error(handler);
    let mut st = s.store();
    if st
        .jobs
        .iter()
        .any(|j| j["jobId"] == job_id && in_scope(j, &c.scope))
    {
        return Err(framework(
            StatusCode::CONFLICT,
            "A job with this jobId already exists in this scope",
        ));
    }
    let now = now_iso();
    let g = |k: &str, d: Value| b.get(k).cloned().unwrap_or(d);
    let mut job = json!({
        "id": new_id(), "jobId": job_id, "displayName": g("displayName", Value::Null),
        "description": g("description", Value::Null), "invocationType": g("invocationType", json!("manual")),
        "scheduleCron": g("scheduleCron", Value::Null), "scheduleTimezone": g("scheduleTimezone", Value::Null),
        "allowedAgentIds": g("allowedAgentIds", json!([])), "payloadSchema": g("payloadSchema", Value::Null),
        "handler": handler, "timeout": g("timeout", json!(60)), "maxRetries": g("maxRetries", json!(0)),
        // A handler that does not compile is stored FAILED, which reads as inactive.
        "isActive": syntax_error.is_none(), "handlerVersion": 1,
        "createdBy": c.user_id.clone().unwrap_or_else(|| "api-key".into()),
        "createdAt": now, "updatedAt": now, "lastStartedAt": null
    });
    if let Value::Object(o) = &mut job {
        o.extend(scope_fields(&c.scope));
    }
    st.jobs.push(job.clone());
    drop(st);
    created(json!({"job": job, "syntaxError": syntax_error}))
}

/// Jobs are addressed by their internal `id`, not by the external `jobId` key.
fn find_job<'a>(st: &'a mut Store, c: &Caller, id: &str) -> Option<&'a mut Value> {
    st.jobs
        .iter_mut()
        .find(|j| j["id"] == id && in_scope(j, &c.scope))
}

pub(super) async fn get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = operator(&s, &h)?;
    let mut st = s.store();
    let j = find_job(&mut st, &c, &id)
        .cloned()
        .ok_or_else(job_not_found)?;
    drop(st);
    ok(json!({"job": j}))
}

pub(super) async fn update(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = operator(&s, &h)?;
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
    const FIELDS: [&str; 11] = [
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
        "isActive",
    ];
    let mut syntax_error = None;
    for f in FIELDS {
        if let Some(v) = b.get(f) {
            if f == "handler" && j["handler"] != *v {
                j["handlerVersion"] = json!(j["handlerVersion"].as_u64().unwrap_or(1) + 1);
                syntax_error = v.as_str().and_then(handler_syntax_error);
                // A handler that compiles again makes a FAILED job active, unless the
                // same call deactivates it.
                if !b.contains_key("isActive") {
                    j["isActive"] = json!(syntax_error.is_none());
                }
            }
            j[f] = v.clone();
        }
    }
    if syntax_error.is_some() {
        j["isActive"] = json!(false);
    }
    j["updatedAt"] = json!(now_iso());
    let out = j.clone();
    drop(st);
    ok(json!({"job": out, "syntaxError": syntax_error}))
}

pub(super) async fn delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = operator(&s, &h)?;
    let mut st = s.store();
    let before = st.jobs.len();
    st.jobs
        .retain(|j| !(j["id"] == id.as_str() && in_scope(j, &c.scope)));
    if st.jobs.len() == before {
        return Err(job_not_found());
    }
    ok(json!({"deleted": true}))
}

pub(super) async fn dispatch(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let c = operator(&s, &h)?;
    let b = body_object(&body)?;
    if let Some(p) = b.get("payload")
        && !(p.is_object() || p.is_null())
    {
        return Err(bad_request("payload must be an object"));
    }
    let runtime = s.cfg.job_runtime;
    let mut st = s.store();
    let j = find_job(&mut st, &c, &id)
        .filter(|j| j["isActive"] == true)
        .ok_or_else(|| framework(StatusCode::NOT_FOUND, "Job not found or inactive"))?;
    // The receipt echoes the id the caller addressed (the internal `id`).
    let job_id = j["id"].clone();
    if !runtime {
        return ok(json!({
            "accepted": false, "message": "The durable Job runtime is not configured.", "jobId": job_id
        }));
    }
    j["lastStartedAt"] = json!(now_iso());
    ok(json!({"accepted": true, "jobId": job_id}))
}

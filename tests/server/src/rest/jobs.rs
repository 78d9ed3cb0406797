//! Jobs: CRUD and dispatch, addressed by the job's internal `id`.

use super::*;

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

pub(super) async fn jobs_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
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

pub(super) async fn jobs_create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
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

pub(super) async fn jobs_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let j = find_job(&mut st, &c, &id)
        .cloned()
        .ok_or_else(job_not_found)?;
    drop(st);
    ok(json!({"job": j}))
}

pub(super) async fn jobs_update(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
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

pub(super) async fn jobs_delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
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

pub(super) async fn jobs_dispatch(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
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

//! The deprecated `/trigger/*` background-operation routes (tasks, runs, schedules, batches).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::Caller;
use crate::store::{Store, in_scope, new_id, now_iso, scope_fields};

use super::{
    Page, Q, Res, S, auth, bad_request, body_object, created, envelope, framework, ok, page, q_str,
    validation_failed,
};

fn not_found_named(what: &str) -> Response {
    framework(StatusCode::NOT_FOUND, &format!("{what} not found"))
}

pub(super) async fn tasks_list(State(s): S, h: HeaderMap) -> Res {
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

pub(super) async fn tasks_trigger(
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

pub(super) async fn runs_list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
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

pub(super) async fn runs_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let r = find_run(&mut st, &c, &id)
        .cloned()
        .ok_or_else(|| not_found_named("Run"))?;
    ok(r)
}

pub(super) async fn runs_cancel(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    let r = find_run(&mut st, &c, &id).ok_or_else(|| not_found_named("Run"))?;
    r["status"] = json!("CANCELED");
    r["updatedAt"] = json!(now_iso());
    ok(json!({"status": "CANCELED"}))
}

pub(super) async fn runs_replay(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
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

pub(super) async fn schedules_list(State(s): S, h: HeaderMap) -> Res {
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

pub(super) async fn schedules_create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
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

pub(super) async fn schedules_activate(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    set_schedule_active(&s, &h, &id, true)
}

pub(super) async fn schedules_deactivate(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    set_schedule_active(&s, &h, &id, false)
}

pub(super) async fn schedules_delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
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

pub(super) async fn batches_trigger(
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

pub(super) async fn batches_get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
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

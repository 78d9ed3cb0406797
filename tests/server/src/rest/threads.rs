//! Threads: create, list, get, messages, artifacts, archive, delete; who sees which thread.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::Caller;
use crate::store::{Store, in_scope, new_id, now_iso, scope_fields};

use super::agents::agent_not_found;
use super::{
    Q, Res, S, auth, bad_request, body_object, created, envelope, framework, json_resp, ok, page,
    q_str,
};

pub(super) fn thread_not_found() -> Response {
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

/// A fresh thread owned by the caller.
pub(super) fn new_thread(c: &Caller, agent_id: &str, title: Value) -> Value {
    let now = now_iso();
    let mut t = json!({
        "id": new_id(), "agentId": agent_id, "userId": c.user_id, "endUserId": c.user_id,
        "title": title, "status": "active", "turnCount": 0, "tags": [], "pinnedAt": null,
        "archivedAt": null, "parentThreadId": null, "createdAt": now, "updatedAt": now
    });
    if let Value::Object(o) = &mut t {
        o.extend(scope_fields(&c.scope));
    }
    t
}

pub(super) async fn create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
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
    let t = new_thread(&c, &agent_id, title);
    st.threads.push(t.clone());
    drop(st);
    created(t)
}

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
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

pub(super) async fn get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    let t = thread_index(&st, &id, &c).map(|i| st.threads[i].clone());
    drop(st);
    t.map(|t| json_resp(StatusCode::OK, t))
        .ok_or_else(thread_not_found)
}

pub(super) async fn messages(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
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

pub(super) async fn artifacts(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
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

pub(super) async fn archive(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    ok(set_archived(&s, &h, &id, true)?)
}

pub(super) async fn unarchive(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    ok(set_archived(&s, &h, &id, false)?)
}

pub(super) async fn delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = set_archived(&s, &h, &id, true)?;
    ok(json!({"archived": true, "archivedAt": t["archivedAt"]}))
}

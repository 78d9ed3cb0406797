//! `/api/v1/memory`: list, create, update, delete, search (docs/wire.md
//! §3.11). Like the runtime, failures are answered with
//! HTTP 200 `{error, status}`; end users reach only their own memories, an
//! operator may name any `userId`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::store::{in_scope, new_id, now_iso, scope_fields};

use super::{Q, Res, S, auth, body_object, ok, q_str};

const KINDS: [&str; 4] = ["fact", "preference", "event", "relationship"];

/// A refusal the way the memory routes send it: HTTP 200.
fn refusal(status: u16, error: &str) -> Res {
    ok(json!({"error": error, "status": status}))
}

/// The user a call acts for: an end user is always themself.
fn effective_user(c: &Caller, requested: Option<&str>) -> String {
    let own = c.user_id.clone().unwrap_or_default();
    if c.operator {
        requested.map(str::to_owned).unwrap_or(own)
    } else {
        own
    }
}

fn owned(m: &Value, c: &Caller, user: &str) -> bool {
    in_scope(m, &c.scope) && m["userId"] == user
}

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let user = effective_user(&c, q_str(&q, "userId"));
    let (kind, agent) = (q_str(&q, "kind"), q_str(&q, "agentId"));
    let num = |k: &str| q_str(&q, k).map(str::parse::<usize>);
    let (limit, offset) = match (num("limit"), num("offset")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return refusal(400, "limit and offset must be integers");
        }
        (l, o) => (
            l.and_then(Result::ok).unwrap_or(50),
            o.and_then(Result::ok).unwrap_or(0),
        ),
    };
    let rows: Vec<Value> = s
        .store()
        .memories
        .iter()
        .filter(|m| owned(m, &c, &user))
        .filter(|m| kind.is_none_or(|k| m["kind"] == k))
        .filter(|m| agent.is_none_or(|a| m["agentId"] == a))
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    let total = rows.len();
    ok(json!({"memories": rows, "total": total}))
}

pub(super) async fn create(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let content = b
        .get("content")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    let kind = b.get("kind").and_then(Value::as_str).unwrap_or("fact");
    let mut errors = Vec::new();
    if content.is_empty() {
        errors.push("content must be a non-empty string");
    }
    if !KINDS.contains(&kind) {
        errors.push("kind must be one of fact, preference, event, relationship");
    }
    if !errors.is_empty() {
        return ok(json!({"error": "invalid memory", "status": 400, "validationErrors": errors}));
    }
    let user = effective_user(&c, b.get("userId").and_then(Value::as_str));
    let now = now_iso();
    let mut m = json!({
        "id": new_id(), "userId": user, "agentId": b.get("agentId").cloned().unwrap_or(Value::Null),
        "kind": kind, "content": content, "metadata": b.get("metadata").cloned().unwrap_or(Value::Null),
        "visibility": b.get("visibility").cloned().unwrap_or(json!("private")),
        "agentVisible": b.get("agentVisible").cloned().unwrap_or(json!(true)),
        "source": "manual", "createdAt": now, "updatedAt": now
    });
    if let Value::Object(o) = &mut m {
        o.extend(scope_fields(&c.scope));
    }
    s.store().memories.push(m.clone());
    ok(json!({"memory": m}))
}

pub(super) async fn update(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    if matches!(
        id.as_str(),
        "extract" | "import" | "relate" | "search" | "export" | "admin"
    ) {
        return refusal(400, &format!("'{id}' is a reserved path segment"));
    }
    let b = body_object(&body)?;
    if let Some(k) = b.get("kind").and_then(Value::as_str)
        && !KINDS.contains(&k)
    {
        return refusal(
            400,
            "kind must be one of fact, preference, event, relationship",
        );
    }
    let user = effective_user(&c, None);
    let mut st = s.store();
    let Some(m) = st
        .memories
        .iter_mut()
        .find(|m| m["id"] == id.as_str() && owned(m, &c, &user))
    else {
        return refusal(404, "memory not found");
    };
    for key in ["content", "kind", "metadata", "agentVisible", "visibility"] {
        if let Some(v) = b.get(key) {
            m[key] = v.clone();
        }
    }
    m["updatedAt"] = json!(now_iso());
    ok(json!({"memory": m.clone()}))
}

pub(super) async fn delete(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let user = effective_user(&c, None);
    let mut st = s.store();
    let before = st.memories.len();
    st.memories
        .retain(|m| !(m["id"] == id.as_str() && owned(m, &c, &user)));
    ok(json!({"deleted": st.memories.len() < before}))
}

pub(super) async fn search(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let Some(query) = q_str(&q, "q") else {
        return refusal(400, "`q` query parameter is required");
    };
    let user = effective_user(&c, q_str(&q, "userId"));
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let limit = q_str(&q, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10usize);
    let min = q_str(&q, "minScore")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0f64);
    // The share of query words a memory contains stands in for similarity.
    let mut hits: Vec<(f64, Value)> = s
        .store()
        .memories
        .iter()
        .filter(|m| owned(m, &c, &user))
        .filter(|m| q_str(&q, "kind").is_none_or(|k| m["kind"] == k))
        .map(|m| {
            let text = m["content"].as_str().unwrap_or("").to_lowercase();
            let found = words.iter().filter(|w| text.contains(w.as_str())).count();
            (found as f64 / words.len().max(1) as f64, m.clone())
        })
        .filter(|(score, _)| *score > 0.0 && *score >= min)
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0));
    let hits: Vec<Value> = hits
        .into_iter()
        .take(limit)
        .map(|(score, memory)| json!({"memory": memory, "score": score}))
        .collect();
    ok(json!({"hits": hits}))
}

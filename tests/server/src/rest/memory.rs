//! `/api/v1/memory`: list, create, update, delete, search, extract, export,
//! import, archive, restore and the knowledge graph (relate, entities,
//! relationships, path) (docs/wire.md §3.11). Like the runtime, failures are answered with
//! HTTP 200 `{error, status}`; end users reach only their own memories, an
//! operator may name any `userId`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::routes::Routes;
use crate::store::{in_scope, new_id, now_iso, scope_fields};

use super::{Q, Res, S, auth, body_object, ok, q_str};

/// The memory routes under `prefix` (`/api/v1/memory`, or an alias of it).
pub(super) fn routes(prefix: &'static str) -> Routes {
    Routes::new(prefix)
        .get("", list)
        .post("", create)
        .get("/search", search)
        .post("/extract", extract)
        .get("/export", export)
        .post("/import", import)
        .post("/relate", relate)
        .post("/{id}", update)
        .delete("/{id}", delete)
        .post("/{id}/archive", archive)
        .post("/{id}/restore", restore)
        .get("/graph/entities", graph_entities)
        .get("/graph/entities/{id}/relationships", graph_relationships)
        .get("/graph/path", graph_path)
}

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
        .filter(|m| owned(m, &c, &user) && live(m))
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
        "source": "manual", "archivedAt": null, "createdAt": now, "updatedAt": now
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
        .filter(|m| owned(m, &c, &user) && live(m))
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

/// The caller's live memories (archived ones are hidden from list and search).
fn live(m: &Value) -> bool {
    m["archivedAt"].is_null()
}

fn body_str<'a>(b: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    b.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(super) async fn extract(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(thread_id) = body_str(&b, "threadId") else {
        return refusal(400, "`threadId` is required");
    };
    let mut st = s.store();
    // An end user names only a thread of their own (thread_index checks it).
    let Some(i) = crate::rest::thread_index(&st, thread_id, &c) else {
        return refusal(404, "thread not found");
    };
    let owner = st.threads[i]["userId"].as_str().unwrap_or("").to_owned();
    // Stand-in for the extractor: every user message becomes a `fact`, once.
    let said: Vec<String> = st
        .messages
        .iter()
        .filter(|m| m["threadId"] == thread_id && m["role"] == "user")
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    let (mut created, mut skipped) = (0, 0);
    for content in said {
        let known = st.memories.iter().any(|m| {
            owned(m, &c, &owner) && m["sourceThreadId"] == thread_id && m["content"] == *content
        });
        if known {
            skipped += 1;
            continue;
        }
        let now = now_iso();
        let mut m = json!({
            "id": new_id(), "userId": owner, "agentId": st.threads[i]["agentId"].clone(),
            "kind": "fact", "content": content, "metadata": null, "visibility": "agent_visible",
            "agentVisible": true, "source": "extracted", "sourceThreadId": thread_id,
            "archivedAt": null, "createdAt": now, "updatedAt": now
        });
        if let Value::Object(o) = &mut m {
            o.extend(scope_fields(&c.scope));
        }
        st.memories.push(m);
        created += 1;
    }
    ok(json!({
        "memoriesCreated": created, "entitiesCreated": 0, "relationshipsCreated": 0,
        "skipped": skipped
    }))
}

pub(super) async fn export(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let user = effective_user(&c, q_str(&q, "userId"));
    let st = s.store();
    let memories: Vec<Value> = st
        .memories
        .iter()
        .filter(|m| owned(m, &c, &user))
        .map(|m| {
            json!({
                "kind": m["kind"], "content": m["content"], "metadata": m["metadata"],
                "visibility": m["visibility"], "agentVisible": m["agentVisible"],
                "source": m["source"], "sourceThreadId": m.get("sourceThreadId").cloned().unwrap_or(Value::Null),
                "createdAt": m["createdAt"], "updatedAt": m["updatedAt"]
            })
        })
        .collect();
    let entities: Vec<&Value> = st
        .memory_entities
        .iter()
        .filter(|e| owned(e, &c, &user))
        .collect();
    let key_of = |id: &Value| {
        entities
            .iter()
            .find(|e| e["id"] == *id)
            .map(|e| e["entityKey"].clone())
    };
    let relationships: Vec<Value> = st
        .memory_relationships
        .iter()
        .filter(|r| owned(r, &c, &user))
        .filter_map(|r| {
            Some(json!({
                "fromEntityKey": key_of(&r["fromEntityId"])?, "toEntityKey": key_of(&r["toEntityId"])?,
                "relationshipType": r["relationshipType"], "weight": r["weight"],
                "metadata": r["metadata"], "createdAt": r["createdAt"]
            }))
        })
        .collect();
    let entities: Vec<Value> = entities
        .iter()
        .map(|e| {
            json!({"entityKey": e["entityKey"], "entityType": e["entityType"], "label": e["label"],
                   "aliases": e["aliases"], "metadata": e["metadata"]})
        })
        .collect();
    ok(json!({
        "version": 1, "exportedAt": now_iso(), "scope": scope_fields(&c.scope), "userId": user,
        "memories": memories, "entities": entities, "relationships": relationships
    }))
}

/// The entity of `user` with `key`, created when new; its id.
fn upsert_entity(
    st: &mut crate::store::Store,
    c: &Caller,
    user: &str,
    key: &str,
    kind: Option<&str>,
    label: Option<&str>,
) -> String {
    if let Some(e) = st
        .memory_entities
        .iter_mut()
        .find(|e| owned(e, c, user) && e["entityKey"] == key)
    {
        if let Some(k) = kind {
            e["entityType"] = json!(k);
        }
        if let Some(l) = label {
            e["label"] = json!(l);
        }
        return e["id"].as_str().unwrap_or_default().to_owned();
    }
    let now = now_iso();
    let id = new_id();
    let mut e = json!({
        "id": id, "userId": user, "entityKey": key, "entityType": kind.unwrap_or("other"),
        "label": label.unwrap_or(key), "aliases": [], "metadata": null,
        "createdAt": now, "updatedAt": now
    });
    if let Value::Object(o) = &mut e {
        o.extend(scope_fields(&c.scope));
    }
    st.memory_entities.push(e);
    id
}

fn add_relationship(
    st: &mut crate::store::Store,
    c: &Caller,
    user: &str,
    (from, to): (&str, &str),
    kind: &str,
    b: &serde_json::Map<String, Value>,
) -> String {
    let id = new_id();
    let mut r = json!({
        "id": id, "userId": user, "fromEntityId": from, "toEntityId": to,
        "relationshipType": kind, "weight": b.get("weight").cloned().unwrap_or(Value::Null),
        "metadata": b.get("metadata").cloned().unwrap_or(Value::Null),
        "sourceMemoryId": b.get("sourceMemoryId").cloned().unwrap_or(Value::Null),
        "createdAt": now_iso()
    });
    if let Value::Object(o) = &mut r {
        o.extend(scope_fields(&c.scope));
    }
    st.memory_relationships.push(r);
    id
}

pub(super) async fn import(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(bundle) = b.get("bundle").and_then(Value::as_object) else {
        return refusal(400, "`bundle` is required");
    };
    // The bundle's own userId is never read: a bundle lands with its importer.
    let user = effective_user(&c, body_str(&b, "userId"));
    let replace = b.get("mode").and_then(Value::as_str) == Some("replace");
    let list = |k: &str| {
        bundle
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut st = s.store();
    let mut deleted = 0;
    if replace {
        let before = st.memories.len();
        st.memories.retain(|m| !owned(m, &c, &user));
        deleted = before - st.memories.len();
    }
    let (mut memories, mut entities, mut relationships, mut skipped) = (0, 0, 0, 0);
    let mut ids = std::collections::HashMap::new();
    for e in list("entities") {
        let Some(key) = e["entityKey"]
            .as_str()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        else {
            skipped += 1;
            continue;
        };
        let id = upsert_entity(
            &mut st,
            &c,
            &user,
            key,
            e["entityType"].as_str(),
            e["label"].as_str(),
        );
        ids.insert(key.to_owned(), id);
        entities += 1;
    }
    for m in list("memories") {
        let content = m["content"].as_str().map(str::trim).unwrap_or("");
        let kind = m["kind"].as_str().unwrap_or("fact");
        if content.is_empty() || !KINDS.contains(&kind) {
            skipped += 1;
            continue;
        }
        let now = now_iso();
        let mut row = json!({
            "id": new_id(), "userId": user, "agentId": null, "kind": kind, "content": content,
            "metadata": m["metadata"], "visibility": m.get("visibility").cloned().unwrap_or(json!("agent_visible")),
            "agentVisible": m.get("agentVisible").cloned().unwrap_or(json!(true)),
            "source": "imported", "archivedAt": null, "createdAt": now, "updatedAt": now
        });
        if let Value::Object(o) = &mut row {
            o.extend(scope_fields(&c.scope));
        }
        st.memories.push(row);
        memories += 1;
    }
    for r in list("relationships") {
        let end = |k: &str| r[k].as_str().and_then(|key| ids.get(key.trim())).cloned();
        match (
            end("fromEntityKey"),
            end("toEntityKey"),
            r["relationshipType"].as_str(),
        ) {
            (Some(from), Some(to), Some(kind)) if !kind.trim().is_empty() => {
                let extra = r.as_object().cloned().unwrap_or_default();
                add_relationship(&mut st, &c, &user, (&from, &to), kind, &extra);
                relationships += 1;
            }
            _ => skipped += 1,
        }
    }
    ok(json!({
        "ok": true, "mode": if replace { "replace" } else { "merge" }, "memoriesDeleted": deleted,
        "memoriesImported": memories, "entitiesImported": entities,
        "relationshipsImported": relationships, "skipped": skipped
    }))
}

pub(super) async fn relate(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let (Some(from_key), Some(to_key), Some(kind)) = (
        body_str(&b, "fromEntityKey"),
        body_str(&b, "toEntityKey"),
        body_str(&b, "relationshipType"),
    ) else {
        return refusal(
            400,
            "`fromEntityKey`, `toEntityKey`, and `relationshipType` are required",
        );
    };
    let user = effective_user(&c, body_str(&b, "userId"));
    let mut st = s.store();
    let from = upsert_entity(
        &mut st,
        &c,
        &user,
        from_key,
        body_str(&b, "fromEntityType"),
        body_str(&b, "fromLabel"),
    );
    let to = upsert_entity(
        &mut st,
        &c,
        &user,
        to_key,
        body_str(&b, "toEntityType"),
        body_str(&b, "toLabel"),
    );
    let rel = add_relationship(&mut st, &c, &user, (&from, &to), kind, &b);
    ok(json!({"relationshipId": rel, "fromEntityId": from, "toEntityId": to}))
}

/// Sets or clears `archivedAt` on one of the caller's memories: `Some` archives
/// a live one, `None` restores an archived one. The changed memory, if any.
fn set_archived(
    st: &mut crate::store::Store,
    c: &Caller,
    user: &str,
    id: &str,
    at: Option<String>,
) -> Option<Value> {
    let m = st
        .memories
        .iter_mut()
        .find(|m| m["id"] == id && owned(m, c, user) && live(m) == at.is_some())?;
    m["archivedAt"] = at.map_or(Value::Null, Value::from);
    Some(m.clone())
}

pub(super) async fn archive(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let user = effective_user(&c, body_str(&b, "userId"));
    let now = now_iso();
    let changed = set_archived(&mut s.store(), &c, &user, &id, Some(now.clone()));
    ok(match changed {
        Some(_) => json!({"ok": true, "archivedAt": now}),
        None => json!({"ok": false, "archivedAt": null}),
    })
}

pub(super) async fn restore(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let user = effective_user(&c, body_str(&b, "userId"));
    let changed = set_archived(&mut s.store(), &c, &user, &id, None);
    ok(json!({"ok": changed.is_some(), "memory": changed}))
}

pub(super) async fn graph_entities(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let user = effective_user(&c, q_str(&q, "userId"));
    let kind = q_str(&q, "entityType");
    let num = |k: &str, d: usize| q_str(&q, k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let rows: Vec<Value> = s
        .store()
        .memory_entities
        .iter()
        .rev()
        .filter(|e| owned(e, &c, &user))
        .filter(|e| kind.is_none_or(|k| e["entityType"] == k))
        .skip(num("offset", 0))
        .take(num("limit", 100).clamp(1, 500))
        .cloned()
        .collect();
    let total = rows.len();
    ok(json!({"entities": rows, "total": total}))
}

pub(super) async fn graph_relationships(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
    let c = auth(&s, &h)?;
    let user = effective_user(&c, q_str(&q, "userId"));
    let st = s.store();
    let entity_of = |id: &Value| {
        st.memory_entities
            .iter()
            .find(|e| e["id"] == *id && owned(e, &c, &user))
            .cloned()
    };
    let Some(entity) = entity_of(&json!(id)) else {
        return refusal(404, "entity not found");
    };
    let mine = st
        .memory_relationships
        .iter()
        .filter(|r| owned(r, &c, &user));
    let outbound: Vec<Value> = mine
        .clone()
        .filter(|r| r["fromEntityId"] == id.as_str())
        .filter_map(|r| Some(json!({"relationship": r, "to": entity_of(&r["toEntityId"])?})))
        .collect();
    let inbound: Vec<Value> = mine
        .filter(|r| r["toEntityId"] == id.as_str())
        .filter_map(|r| Some(json!({"relationship": r, "from": entity_of(&r["fromEntityId"])?})))
        .collect();
    ok(json!({"entity": entity, "outbound": outbound, "inbound": inbound}))
}

pub(super) async fn graph_path(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let (Some(from), Some(to)) = (q_str(&q, "from"), q_str(&q, "to")) else {
        return refusal(400, "`from` and `to` query params are required");
    };
    let user = effective_user(&c, q_str(&q, "userId"));
    let max_hops = q_str(&q, "maxHops")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(4)
        .clamp(1, 6);
    let st = s.store();
    let entity = |id: &str| {
        st.memory_entities
            .iter()
            .find(|e| e["id"] == id && owned(e, &c, &user))
            .cloned()
    };
    let Some(start) = entity(from) else {
        return ok(json!({"path": null}));
    };
    let edges: Vec<&Value> = st
        .memory_relationships
        .iter()
        .filter(|r| owned(r, &c, &user))
        .collect();
    // Breadth first, relationships read both ways; each node remembers how it was reached.
    let mut came: std::collections::HashMap<String, (String, Value, &str)> =
        std::collections::HashMap::new();
    let mut frontier = vec![from.to_owned()];
    let mut found = from == to;
    for _ in 0..max_hops {
        if found || frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for node in &frontier {
            for r in &edges {
                let (other, dir) = if r["fromEntityId"] == node.as_str() {
                    (r["toEntityId"].as_str(), "out")
                } else if r["toEntityId"] == node.as_str() {
                    (r["fromEntityId"].as_str(), "in")
                } else {
                    continue;
                };
                let Some(other) = other else { continue };
                if other == from || came.contains_key(other) {
                    continue;
                }
                came.insert(other.to_owned(), (node.clone(), (*r).clone(), dir));
                found |= other == to;
                next.push(other.to_owned());
            }
        }
        frontier = next;
    }
    if !found {
        return ok(json!({"path": null}));
    }
    let mut hops = Vec::new();
    let mut at = to.to_owned();
    while let Some((prev, rel, dir)) = came.get(&at) {
        hops.push(json!({"entity": entity(&at), "relationship": rel, "direction": dir}));
        at = prev.clone();
    }
    hops.push(json!({"entity": start, "relationship": null, "direction": null}));
    hops.reverse();
    ok(json!({"path": hops}))
}

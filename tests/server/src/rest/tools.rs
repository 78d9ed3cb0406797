//! Tools: the registry (list, search, stats), the tool × entity matrix, and the operator
//! actions (enable/disable a mapping, test a tool, execute a tool).
//!
//! Reading the registry (list, search, stats, matrix) is open to any authenticated caller
//! in the scope: the real server marks only setEnabled, test and execute operator-only.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::store::{Store, in_scope, now_iso};

use super::{
    Q, Res, S, auth, bad_request, body_object, contains_ci, envelope, framework, json_resp, ok,
    operator, page, q_str,
};

/// Calls of `POST /tools/{id}/test` allowed per user and scope in one window.
const TEST_LIMIT: u32 = 20;
/// Length of the rate-limit window, in seconds.
const TEST_WINDOW_SECS: u64 = 60;
/// A mapping with this many consecutive failures is unavailable.
const FAILS_UNAVAILABLE: u64 = 3;
const SEARCH_DEFAULT_LIMIT: usize = 15;

/// Where a mapping stands, as the matrix's `status` filter and aggregates name it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Availability {
    Dispatchable,
    Disabled,
    Unavailable,
}

impl Availability {
    fn of(m: &Value) -> Self {
        if m["enabled"] != true {
            Availability::Disabled
        } else if m["callbackUrl"].is_null()
            || m["health"]["failCount"].as_u64().unwrap_or(0) >= FAILS_UNAVAILABLE
        {
            Availability::Unavailable
        } else {
            Availability::Dispatchable
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "dispatchable" => Some(Availability::Dispatchable),
            "disabled" => Some(Availability::Disabled),
            "unavailable" => Some(Availability::Unavailable),
            _ => None,
        }
    }
}

fn tool_not_found(id: &str) -> Response {
    json_resp(
        StatusCode::NOT_FOUND,
        json!({"error": "Tool not found in scope", "toolId": id}),
    )
}

/// A registry entry as `/tools` lists it: the tool plus the entities serving it.
fn tool_view(st: &Store, t: &Value) -> Value {
    let entities: Vec<Value> = st
        .tool_mappings
        .iter()
        .filter(|m| m["toolId"] == t["id"] && same_scope(m, t))
        .map(|m| m["entityId"].clone())
        .collect();
    json!({"id": t["id"], "name": t["name"], "description": t["description"],
           "category": t["category"], "paramSchema": t["paramSchema"], "entityIds": entities})
}

fn same_scope(a: &Value, b: &Value) -> bool {
    ["organizationId", "projectId", "environmentId"]
        .iter()
        .all(|k| a[*k] == b[*k])
}

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let category = q_str(&q, "category");
    let st = s.store();
    let tools: Vec<Value> = st
        .tools
        .iter()
        .filter(|t| in_scope(t, &c.scope))
        .filter(|t| category.is_none_or(|x| t["category"] == x))
        .map(|t| tool_view(&st, t))
        .collect();
    drop(st);
    ok(json!({"total": tools.len(), "tools": tools}))
}

/// How well a tool matches the query words: 3 per word in the name, 2 in the category,
/// 1 in the description.
fn score(t: &Value, words: &[String]) -> u32 {
    words
        .iter()
        .map(|w| {
            let hit = |k: &str| contains_ci(&t[k], w);
            if hit("name") {
                3
            } else if hit("category") {
                2
            } else {
                u32::from(hit("description"))
            }
        })
        .sum()
}

pub(super) async fn search(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let Some(query) = q_str(&q, "q") else {
        return Err(bad_request("q is required"));
    };
    let limit = match q_str(&q, "limit") {
        None => SEARCH_DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| bad_request("limit must be an integer between 1 and 100"))?,
    };
    // `entity` narrows to tools served by that entity (its id or its key).
    let entity = q_str(&q, "entity");
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let st = s.store();
    let mut hits: Vec<(u32, Value)> = st
        .tools
        .iter()
        .filter(|t| in_scope(t, &c.scope))
        .filter(|t| {
            entity.is_none_or(|e| {
                st.tool_mappings.iter().any(|m| {
                    m["toolId"] == t["id"]
                        && same_scope(m, t)
                        && (m["entityId"] == e || m["entityPk"] == e)
                })
            })
        })
        .map(|t| (score(t, &words), t))
        .filter(|(sc, _)| *sc > 0)
        .map(|(sc, t)| {
            let mut v = tool_view(&st, t);
            v["score"] = json!(sc);
            (sc, v)
        })
        .collect();
    drop(st);
    hits.sort_by_key(|(sc, _)| std::cmp::Reverse(*sc));
    let total = hits.len();
    let results: Vec<Value> = hits.into_iter().take(limit).map(|(_, v)| v).collect();
    ok(json!({"query": query, "results": results, "total": total}))
}

pub(super) async fn stats(State(s): S, h: HeaderMap) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    let tools: Vec<&Value> = st.tools.iter().filter(|t| in_scope(t, &c.scope)).collect();
    let mappings: Vec<&Value> = st
        .tool_mappings
        .iter()
        .filter(|m| in_scope(m, &c.scope))
        .collect();
    let mut categories = serde_json::Map::new();
    for t in &tools {
        let k = t["category"]
            .as_str()
            .unwrap_or("uncategorized")
            .to_string();
        let n = categories.get(&k).and_then(Value::as_u64).unwrap_or(0);
        categories.insert(k, json!(n + 1));
    }
    let mut entities: Vec<&Value> = mappings.iter().map(|m| &m["entityId"]).collect();
    entities.sort_by_key(|e| e.as_str().unwrap_or(""));
    entities.dedup();
    let count = |a: Availability| mappings.iter().filter(|m| Availability::of(m) == a).count();
    let v = json!({
        "totalTools": tools.len(), "totalMappings": mappings.len(), "entities": entities.len(),
        "dispatchable": count(Availability::Dispatchable), "disabled": count(Availability::Disabled),
        "unavailable": count(Availability::Unavailable), "categories": categories,
        "indexedAt": now_iso()
    });
    drop(st);
    ok(v)
}

fn matrix_row(st: &Store, m: &Value) -> Value {
    let tool = st
        .tools
        .iter()
        .find(|t| t["id"] == m["toolId"] && same_scope(t, m));
    let field = |k: &str| tool.map_or(Value::Null, |t| t[k].clone());
    json!({
        "toolId": m["toolId"], "toolName": m["toolName"], "description": field("description"),
        "category": field("category"), "paramSchema": field("paramSchema"),
        "entityId": m["entityId"], "entityPk": m["entityPk"], "callbackUrl": m["callbackUrl"],
        "enabled": m["enabled"], "dispatchable": Availability::of(m) == Availability::Dispatchable,
        "health": m["health"]
    })
}

pub(super) async fn matrix(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = auth(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let status = match q_str(&q, "status") {
        None => None,
        Some(x) => Some(Availability::parse(x).ok_or_else(|| {
            bad_request("status must be one of: dispatchable, disabled, unavailable")
        })?),
    };
    let (search, category, entity) = (
        q_str(&q, "search"),
        q_str(&q, "category"),
        q_str(&q, "entityId"),
    );
    let st = s.store();
    // Aggregates count every row the other filters keep, whatever `status` asks for.
    let base: Vec<(Availability, Value)> = st
        .tool_mappings
        .iter()
        .filter(|m| in_scope(m, &c.scope))
        .map(|m| (Availability::of(m), matrix_row(&st, m)))
        .filter(|(_, r)| entity.is_none_or(|e| r["entityId"] == e))
        .filter(|(_, r)| category.is_none_or(|x| r["category"] == x))
        .filter(|(_, r)| {
            search.is_none_or(|x| {
                contains_ci(&r["toolName"], x)
                    || contains_ci(&r["description"], x)
                    || contains_ci(&r["entityId"], x)
            })
        })
        .collect();
    drop(st);
    let count = |a: Availability| base.iter().filter(|(x, _)| *x == a).count();
    let aggregates = json!({
        "dispatchable": count(Availability::Dispatchable),
        "unavailable": count(Availability::Unavailable),
        "disabled": count(Availability::Disabled)
    });
    let rows: Vec<Value> = base
        .into_iter()
        .filter(|(a, _)| status.is_none_or(|x| *a == x))
        .map(|(_, r)| r)
        .collect();
    let mut v = envelope(
        "rows",
        rows,
        &p,
        json!({"search": search, "category": category, "status": q_str(&q, "status"), "entityId": entity}),
    );
    v["environmentId"] = json!(c.scope.environment_id);
    v["aggregates"] = aggregates;
    v["fetchedAt"] = json!(now_iso());
    ok(v)
}

pub(super) async fn set_enabled(
    State(s): S,
    h: HeaderMap,
    Path((entity, tool)): Path<(String, String)>,
    body: Bytes,
) -> Res {
    let c = operator(&s, &h)?;
    let b = body_object(&body)?;
    let Some(enabled) = b.get("enabled").and_then(Value::as_bool) else {
        return Err(bad_request("enabled must be a boolean"));
    };
    let mut st = s.store();
    let m = st
        .tool_mappings
        .iter_mut()
        .find(|m| {
            m["entityId"] == entity.as_str()
                && m["toolName"] == tool.as_str()
                && in_scope(m, &c.scope)
        })
        .ok_or_else(|| {
            framework(
                StatusCode::NOT_FOUND,
                "Tool mapping not found for this scope",
            )
        })?;
    m["enabled"] = json!(enabled);
    ok(json!({"ok": true, "entityId": entity, "toolName": tool, "enabled": enabled}))
}

/// Counts one test call for `key`; `false` once the window's allowance is spent.
fn admit_test(st: &mut Store, key: String) -> bool {
    let now = tokio::time::Instant::now();
    let window = std::time::Duration::from_secs(TEST_WINDOW_SECS);
    let slot = st.tool_tests.entry(key).or_insert((now, 0));
    if now.duration_since(slot.0) >= window {
        *slot = (now, 0);
    }
    slot.1 += 1;
    slot.1 <= TEST_LIMIT
}

/// Records one call in a mapping's health numbers.
fn record_call(m: &mut Value, ok: bool, latency_ms: u64) {
    let h = &mut m["health"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let total = n(&h["totalCalls"]) + 1;
    h["avgLatencyMs"] = json!((n(&h["avgLatencyMs"]) * (total - 1) + latency_ms) / total);
    h["totalCalls"] = json!(total);
    h["lastStatus"] = json!(if ok { "ok" } else { "error" });
    h["lastCalledAt"] = json!(now_iso());
    if ok {
        h["failCount"] = json!(0);
    } else {
        h["failCount"] = json!(n(&h["failCount"]) + 1);
        h["totalFailures"] = json!(n(&h["totalFailures"]) + 1);
    }
}

/// `POST /tools/{toolId}/test` `{params, sourceEntityId?, headers?}`: calls the tool through
/// one of its entities (the given one, else the first). A reachable entity answers 200 with
/// the params echoed; an unreachable one (no callback URL) answers 502 with `error`. The
/// call counts in the mapping's health.
pub(super) async fn test(
    State(s): S,
    h: HeaderMap,
    Path(tool_id): Path<String>,
    body: Bytes,
) -> Res {
    let c = operator(&s, &h)?;
    let b = body_object(&body)?;
    let params = match b.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(bad_request("params must be an object")),
    };
    let source = match b.get("sourceEntityId") {
        None | Some(Value::Null) => None,
        Some(Value::String(x)) => Some(x.clone()),
        Some(_) => return Err(bad_request("sourceEntityId must be a string")),
    };
    if let Some(hd) = b.get("headers")
        && !(hd.is_null()
            || hd
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_string)))
    {
        return Err(bad_request("headers must be an object of strings"));
    }
    let mut st = s.store();
    let Some(tool) = st
        .tools
        .iter()
        .find(|t| t["id"] == tool_id.as_str() && in_scope(t, &c.scope))
        .cloned()
    else {
        return Err(tool_not_found(&tool_id));
    };
    let key = format!("{}|{}", c.user_id.as_deref().unwrap_or("-"), c.scope.key());
    if !admit_test(&mut st, key) {
        return Err(json_resp(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "Rate limit exceeded for tool test", "limit": TEST_LIMIT, "retryAfter": TEST_WINDOW_SECS}),
        ));
    }
    let Some(m) = st.tool_mappings.iter_mut().find(|m| {
        m["toolId"] == tool_id.as_str()
            && in_scope(m, &c.scope)
            && source.as_deref().is_none_or(|e| m["entityId"] == e)
    }) else {
        return Err(json_resp(
            StatusCode::NOT_FOUND,
            json!({"error": "Entity not found for this tool", "toolId": tool_id}),
        ));
    };
    let answer = if m["callbackUrl"].is_null() {
        record_call(m, false, 0);
        json!({"status": 502, "headers": {}, "body": null, "durationMs": 0,
               "error": format!("Entity {} has no reachable callback URL", m["entityId"].as_str().unwrap_or(""))})
    } else {
        record_call(m, true, 42);
        json!({"status": 200, "headers": {"content-type": "application/json"},
               "body": {"ok": true, "tool": tool["name"], "entityId": m["entityId"], "params": params},
               "durationMs": 42})
    };
    ok(answer)
}

/// `POST /tools/execute` `{tool, params?, purpose?}` runs a tool by name or id through its
/// first dispatchable entity: `{ok:true, toolId, toolName, entityId, result, durationMs}`,
/// or `{ok:false, toolId, toolName, entityId:null, error, durationMs:0}` when no entity can
/// take it. Unknown tool: 404 `{error:"Tool not found in scope", tool}`.
pub(super) async fn execute(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = operator(&s, &h)?;
    let b = body_object(&body)?;
    let Some(name) = b
        .get("tool")
        .and_then(Value::as_str)
        .filter(|x| !x.trim().is_empty())
    else {
        return Err(bad_request("tool is required"));
    };
    let params = match b.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(bad_request("params must be an object")),
    };
    let purpose = match b.get("purpose") {
        None | Some(Value::Null) => Value::Null,
        Some(p @ Value::String(_)) => p.clone(),
        Some(_) => return Err(bad_request("purpose must be a string")),
    };
    let mut st = s.store();
    let Some(tool) = st
        .tools
        .iter()
        .find(|t| (t["id"] == name || t["name"] == name) && in_scope(t, &c.scope))
        .cloned()
    else {
        return Err(json_resp(
            StatusCode::NOT_FOUND,
            json!({"error": "Tool not found in scope", "tool": name}),
        ));
    };
    let m = st.tool_mappings.iter_mut().find(|m| {
        m["toolId"] == tool["id"]
            && in_scope(m, &c.scope)
            && Availability::of(m) == Availability::Dispatchable
    });
    let Some(m) = m else {
        return ok(json!({
            "ok": false, "toolId": tool["id"], "toolName": tool["name"], "entityId": null,
            "error": "No dispatchable entity serves this tool in this scope", "durationMs": 0
        }));
    };
    record_call(m, true, 42);
    ok(json!({
        "ok": true, "toolId": tool["id"], "toolName": tool["name"], "entityId": m["entityId"],
        "result": {"tool": tool["name"], "params": params, "purpose": purpose}, "durationMs": 42
    }))
}

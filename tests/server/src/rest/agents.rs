//! Agents: list, get, versions (operator-only on the real server).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::store::in_scope;

use super::{
    Q, Res, S, bad_request, contains_ci, envelope, invalid_pagination, json_resp, ok, operator,
    page, q_str,
};

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
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

pub(super) fn agent_not_found(id: &str) -> Response {
    json_resp(
        StatusCode::NOT_FOUND,
        json!({"error": "Agent not found", "agentId": id}),
    )
}

pub(super) async fn get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = operator(&s, &h)?;
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

pub(super) async fn versions(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
    let c = operator(&s, &h)?;
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

//! Budgets: caps and their current window status (read-only, operator-only).

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::store::in_scope;

use super::{Q, Res, S, envelope, ok, operator, page, q_str};

fn window_key(period: &str) -> String {
    let now = crate::store::utc_now();
    match period {
        "hour" => now.format("%Y-%m-%dT%H").to_string(),
        "week" => now.format("%G-W%V").to_string(),
        "month" => now.format("%Y-%m").to_string(),
        _ => now.format("%Y-%m-%d").to_string(),
    }
}

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
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

pub(super) async fn status(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
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

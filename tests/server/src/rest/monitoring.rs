//! Monitoring dashboards: runs, trace, cost by agent, cost by scope.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::store::{in_scope, now_iso};

use super::threads::{thread_index, thread_not_found};
use super::{Q, Res, S, auth, bad_request, contains_ci, envelope, ok, operator, page, q_str};

pub(super) async fn runs(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let (agent, thread, status) = (
        q_str(&q, "agentId"),
        q_str(&q, "threadId"),
        q_str(&q, "status"),
    );
    let all: Vec<Value> = s
        .store()
        .turns
        .iter()
        .rev()
        .filter(|t| t.scope == c.scope)
        .filter(|t| agent.is_none_or(|a| t.agent_id == a))
        .filter(|t| thread.is_none_or(|x| t.thread_id == x))
        .filter(|t| status.is_none_or(|x| t.status == x))
        .map(|t| {
            json!({"id": t.id, "agentId": t.agent_id, "threadId": t.thread_id, "status": t.status,
                   "createdAt": t.created_at,
                   "durationMs": (t.end_nanos.saturating_sub(t.start_nanos) / 1_000_000) as u64,
                   "costCents": t.cost_cents})
        })
        .collect();
    ok(envelope(
        "runs",
        all,
        &p,
        json!({"agentId": agent, "threadId": thread, "status": status}),
    ))
}

fn nanos_iso(n: u128) -> String {
    let secs = i64::try_from(n / 1_000_000_000).unwrap_or_default();
    let sub = u32::try_from(n % 1_000_000_000).unwrap_or_default();
    chrono::DateTime::from_timestamp(secs, sub)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(super) async fn trace(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    // Ownership-gated, not operator-only: the owner or an operator; anyone else gets 404.
    let c = auth(&s, &h)?;
    let st = s.store();
    let i = thread_index(&st, &id, &c).ok_or_else(thread_not_found)?;
    let t = &st.threads[i];
    let thread = json!({"id": t["id"], "agentId": t["agentId"], "title": t["title"], "status": t["status"],
                        "turnCount": t["turnCount"], "createdAt": t["createdAt"], "updatedAt": t["updatedAt"]});
    let messages: Vec<Value> = st
        .messages
        .iter()
        .filter(|m| m["threadId"] == id.as_str())
        .cloned()
        .collect();
    let mut spans = Vec::new();
    let mut tree = Vec::new();
    let (mut cost, mut input, mut output, mut tools) = (0.0, 0u64, 0u64, 0u64);
    for turn in st.turns.iter().filter(|x| x.thread_id == id) {
        cost += turn.cost_cents;
        input += turn.input_tokens;
        output += turn.output_tokens;
        tools += turn.tool_calls;
        let trace_id = turn.id.replace('-', "");
        let trace_id = format!("{trace_id:0>32}");
        let trace_id = &trace_id[trace_id.len() - 32..];
        let (a, b) = (turn.start_nanos, turn.end_nanos);
        let mid = a + (b - a) / 2;
        let span = |sid: &str,
                    parent: Option<&str>,
                    name: &str,
                    kind: &str,
                    s0: u128,
                    s1: u128,
                    attrs: Value| {
            let mut v = json!({
                "traceId": trace_id, "spanId": sid, "name": name, "kind": kind,
                "startTimeUnixNano": s0.to_string(), "endTimeUnixNano": s1.to_string(),
                "durationMs": ((s1 - s0) / 1_000_000) as u64,
                "status": if turn.status == "completed" { "ok" } else { "error" },
                "attributes": attrs
            });
            if let Some(p) = parent {
                v["parentSpanId"] = json!(p);
            }
            if turn.status != "completed" {
                v["errorMessage"] = json!(format!("turn {}", turn.status));
            }
            v
        };
        let root_id = format!("{:016x}", a as u64);
        let root = span(
            &root_id,
            None,
            "agent.turn",
            "server",
            a,
            b,
            json!({"agent.id": turn.agent_id, "thread.id": turn.thread_id, "cost.cents": turn.cost_cents, "streamed": true}),
        );
        let llm = span(
            &format!("{:016x}", (a as u64).wrapping_add(1)),
            Some(&root_id),
            "llm.generate",
            "client",
            mid,
            b,
            json!({"llm.model": "gpt-4o-mini", "llm.input_tokens": turn.input_tokens, "llm.output_tokens": turn.output_tokens}),
        );
        let mut children = vec![llm.clone()];
        spans.push(root.clone());
        spans.push(llm);
        if turn.tool_calls > 0 {
            let mut tool = span(
                &format!("{:016x}", (a as u64).wrapping_add(2)),
                Some(&root_id),
                "tool.lookup",
                "internal",
                a,
                mid,
                json!({"tool.name": "lookup"}),
            );
            tool["events"] = json!([{"name": "tool.result", "timeUnixNano": mid.to_string(), "attributes": {"ok": true}}]);
            spans.push(tool.clone());
            children.insert(0, tool);
        }
        let mut node = root;
        node["children"] = json!(
            children
                .into_iter()
                .map(|mut c| {
                    c["children"] = json!([]);
                    c
                })
                .collect::<Vec<_>>()
        );
        tree.push(node);
    }
    let mut timeline: Vec<(String, Value)> = messages
        .iter()
        .map(|m| {
            (
                m["createdAt"].as_str().unwrap_or("").to_string(),
                json!({"kind": "message", "timestamp": m["createdAt"], "data": m}),
            )
        })
        .collect();
    for sp in &spans {
        let n: u128 = sp["startTimeUnixNano"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let ts = nanos_iso(n);
        timeline.push((
            ts.clone(),
            json!({"kind": "span", "timestamp": ts, "data": sp}),
        ));
    }
    timeline.sort_by(|x, y| x.0.cmp(&y.0));
    let rollup = json!({
        "totalMessages": messages.len(), "totalSpans": spans.len(), "totalCostCents": cost,
        "totalInputTokens": input, "totalOutputTokens": output, "toolCallCount": tools,
        "firstMessageAt": messages.first().map(|m| m["createdAt"].clone()),
        "lastMessageAt": messages.last().map(|m| m["createdAt"].clone())
    });
    drop(st);
    ok(json!({
        "threadId": id, "thread": thread, "messages": messages, "spans": spans, "spanTree": tree,
        "timeline": timeline.into_iter().map(|x| x.1).collect::<Vec<_>>(), "rollup": rollup
    }))
}

pub(super) async fn cost_by_agent(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let days = match q_str(&q, "days") {
        None => 30,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| bad_request("days must be an integer between 1 and 3650"))?,
    };
    let p = page(&q, "limit", 50)?;
    let search = q_str(&q, "search");
    let cutoff = (crate::store::utc_now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let st = s.store();
    let mut rows: Vec<Value> = Vec::new();
    for t in st
        .turns
        .iter()
        .filter(|t| t.scope == c.scope && t.created_at >= cutoff)
    {
        let name = st
            .agents
            .iter()
            .find(|a| a["id"] == t.agent_id.as_str() && in_scope(a, &c.scope))
            .map(|a| a["name"].clone())
            .unwrap_or(Value::Null);
        let row = match rows
            .iter_mut()
            .find(|r| r["agentId"] == t.agent_id.as_str())
        {
            Some(r) => r,
            None => {
                rows.push(json!({"agentId": t.agent_id, "agentName": name, "costCents": 0.0, "costWithCacheCents": 0.0,
                    "inputTokens": 0, "outputTokens": 0, "cacheCreationInputTokens": 0, "cacheReadInputTokens": 0,
                    "tasks": 0, "threads": 0, "threadIds": []}));
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        let add = |v: &Value, x: f64| json!(v.as_f64().unwrap_or(0.0) + x);
        row["costCents"] = add(&row["costCents"], t.cost_cents);
        row["costWithCacheCents"] = add(&row["costWithCacheCents"], t.cost_cents);
        row["inputTokens"] = json!(row["inputTokens"].as_u64().unwrap_or(0) + t.input_tokens);
        row["outputTokens"] = json!(row["outputTokens"].as_u64().unwrap_or(0) + t.output_tokens);
        row["tasks"] = json!(row["tasks"].as_u64().unwrap_or(0) + 1);
        if let Some(ids) = row["threadIds"].as_array_mut()
            && !ids.iter().any(|x| x == t.thread_id.as_str())
        {
            ids.push(json!(t.thread_id));
        }
    }
    drop(st);
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            let n = r["threadIds"].as_array().map_or(0, Vec::len);
            r["threads"] = json!(n);
            if let Value::Object(o) = &mut r {
                o.remove("threadIds");
            }
            r
        })
        .filter(|r| {
            search.is_none_or(|x| contains_ci(&r["agentName"], x) || contains_ci(&r["agentId"], x))
        })
        .collect();
    let mut v = envelope("rows", rows, &p, json!({"days": days, "search": search}));
    v["fetchedAt"] = json!(now_iso());
    ok(v)
}

pub(super) async fn cost(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let date = match q_str(&q, "date") {
        None => crate::store::utc_now().format("%Y-%m-%d").to_string(),
        Some(d) => {
            if d.len() != 10 || chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                return Err(bad_request("date must be YYYY-MM-DD"));
            }
            d.to_string()
        }
    };
    let st = s.store();
    let (mut input, mut output, mut cost, mut tasks) = (0u64, 0u64, 0.0, 0u64);
    for t in st
        .turns
        .iter()
        .filter(|t| t.scope == c.scope && t.day == date)
    {
        input += t.input_tokens;
        output += t.output_tokens;
        cost += t.cost_cents;
        tasks += 1;
    }
    drop(st);
    ok(json!({
        "date": date, "inputTokens": input, "outputTokens": output, "costCents": cost, "tasks": tasks,
        "byLane": {
            "chat": {"inputTokens": input, "outputTokens": output, "costCents": cost, "tasks": tasks},
            "background": {"inputTokens": 0, "outputTokens": 0, "costCents": 0.0, "tasks": 0}
        }
    }))
}

/// Cost of one thread, turn by turn. Ownership-gated like the trace.
pub(super) async fn cost_thread(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    thread_index(&st, &id, &c).ok_or_else(thread_not_found)?;
    let (mut input, mut output, mut cost) = (0u64, 0u64, 0.0);
    let turns: Vec<Value> = st
        .turns
        .iter()
        .filter(|t| t.thread_id == id && t.scope == c.scope)
        .map(|t| {
            input += t.input_tokens;
            output += t.output_tokens;
            cost += t.cost_cents;
            json!({"turnId": t.id, "agentId": t.agent_id, "status": t.status, "createdAt": t.created_at,
                   "inputTokens": t.input_tokens, "outputTokens": t.output_tokens, "costCents": t.cost_cents})
        })
        .collect();
    drop(st);
    ok(json!({
        "threadId": id, "costCents": cost, "inputTokens": input, "outputTokens": output,
        "tasks": turns.len(), "turnCount": turns.len(), "turns": turns, "fetchedAt": now_iso()
    }))
}

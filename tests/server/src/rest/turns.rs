//! One-shot turns over plain HTTP: `POST /threads/{id}/messages` and
//! `POST /agents/{id}/messages` run the scripted agent to the end and answer
//! `{text, threadId, events, costCents, messageId}`.
//!
//! A repeated `idempotency-key` is answered by the REST middleware with the first result
//! (`Idempotency-Replayed: true`), so the turn runs once.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::script;
use crate::store::{Store, TurnRecord, in_scope, new_id, now_iso, now_nanos};

use super::agents::agent_not_found;
use super::threads::{new_thread, thread_index, thread_not_found};
use super::{Res, S, auth, body_object, json_resp, ok};

fn message_required() -> Response {
    json_resp(
        StatusCode::BAD_REQUEST,
        json!({"error": "message is required in the request body"}),
    )
}

fn field_error(message: &str) -> Response {
    json_resp(StatusCode::BAD_REQUEST, json!({"error": message}))
}

/// The validated body of a one-shot turn.
struct TurnBody {
    message: String,
    agent_id: Option<String>,
    thread_id: Option<String>,
}

fn opt_str(b: &serde_json::Map<String, Value>, k: &str) -> Result<Option<String>, Response> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(x)) if !x.trim().is_empty() => Ok(Some(x.clone())),
        Some(_) => Err(field_error(&format!("{k} must be a non-empty string"))),
    }
}

fn parse_turn_body(body: &Bytes) -> Result<TurnBody, Response> {
    let b = body_object(body)?;
    let message = match b.get("message") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(message_required()),
    };
    if let Some(a) = b.get("attachmentIds")
        && !(a.is_null() || a.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Err(field_error("attachmentIds must be an array of strings"));
    }
    if let Some(o) = b.get("outputSchema")
        && !(o.is_null() || o.is_object())
    {
        return Err(field_error("outputSchema must be a JSON object"));
    }
    opt_str(&b, "systemPromptOverride")?;
    opt_str(&b, "modelLabel")?;
    Ok(TurnBody {
        message,
        agent_id: opt_str(&b, "agentId")?,
        thread_id: opt_str(&b, "threadId")?,
    })
}

fn agent_exists(st: &Store, c: &Caller, id: &str) -> bool {
    st.agents
        .iter()
        .any(|a| a["id"] == id && in_scope(a, &c.scope))
}

/// Runs the scripted turn on a visible thread, persists it like the socket lane does
/// (user message, assistant message, turn record, thread counters) and answers it.
fn run_turn(st: &mut Store, c: &Caller, thread: usize, agent_id: &str, message: &str) -> Value {
    let thread_id = st.threads[thread]["id"].as_str().unwrap_or("").to_string();
    let start = now_nanos();
    let created_at = now_iso();
    let turn_id = new_id();
    let a = script::answer(&thread_id, agent_id, &turn_id, message);
    st.messages.push(json!({
        "id": new_id(), "turnId": turn_id, "threadId": thread_id, "role": "user",
        "content": message, "toolCalls": null, "thinkingContent": null, "responseJson": null,
        "createdAt": created_at
    }));
    st.messages.push(json!({
        "id": a.message_id, "turnId": turn_id, "threadId": thread_id, "role": "assistant",
        "content": a.text, "toolCalls": a.tool_calls, "thinkingContent": script::THINKING,
        "responseJson": {"model": "gpt-4o-mini",
                         "usage": {"inputTokens": a.input_tokens, "outputTokens": a.output_tokens,
                                   "totalTokens": a.input_tokens + a.output_tokens},
                         "cost_cents": a.cost_cents, "latency_ms": 420},
        "createdAt": now_iso()
    }));
    let t = &mut st.threads[thread];
    t["turnCount"] = json!(t["turnCount"].as_u64().unwrap_or(0) + 1);
    t["updatedAt"] = json!(now_iso());
    st.turns.push(TurnRecord {
        id: turn_id,
        scope: c.scope.clone(),
        thread_id: thread_id.clone(),
        agent_id: agent_id.to_string(),
        status: "completed",
        day: created_at[..10].to_string(),
        created_at,
        start_nanos: start,
        end_nanos: now_nanos().max(start + 1_000_000),
        input_tokens: a.input_tokens,
        output_tokens: a.output_tokens,
        cost_cents: a.cost_cents,
        tool_calls: 1,
    });
    json!({
        "text": a.text, "threadId": thread_id, "events": a.events,
        "costCents": a.cost_cents, "messageId": a.message_id
    })
}

/// `POST /threads/{threadId}/messages` `{message, agentId?, attachmentIds?}`.
pub(super) async fn threads_send(
    State(s): S,
    h: HeaderMap,
    Path(thread_id): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = parse_turn_body(&body)?;
    let mut st = s.store();
    let i = thread_index(&st, &thread_id, &c).ok_or_else(thread_not_found)?;
    let agent = match b.agent_id {
        Some(a) if !agent_exists(&st, &c, &a) => return Err(agent_not_found(&a)),
        Some(a) => a,
        None => st.threads[i]["agentId"].as_str().unwrap_or("").to_string(),
    };
    ok(run_turn(&mut st, &c, i, &agent, &b.message))
}

/// `POST /agents/{agentId}/messages` `{message, threadId?, attachmentIds?, outputSchema?,
/// systemPromptOverride?, modelLabel?}`; without `threadId` a new thread is created for
/// the caller.
pub(super) async fn agents_send(
    State(s): S,
    h: HeaderMap,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = parse_turn_body(&body)?;
    let mut st = s.store();
    if !agent_exists(&st, &c, &agent_id) {
        return Err(agent_not_found(&agent_id));
    }
    let i = match &b.thread_id {
        Some(t) => thread_index(&st, t, &c).ok_or_else(thread_not_found)?,
        None => {
            st.threads.push(new_thread(&c, &agent_id, Value::Null));
            st.threads.len() - 1
        }
    };
    ok(run_turn(&mut st, &c, i, &agent_id, &b.message))
}

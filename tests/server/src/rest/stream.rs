//! The HTTP turn lane: `POST /threads/{threadId}/stream` (docs/wire.md §8.2).
//!
//! The turn is the socket lane's scripted turn ([`socket::start_turn`]: the same events,
//! approvals pause included), written as SSE frames `id: n` / `data: <event + "_seq": n>`
//! with `{"type":"heartbeat","at":…}` frames every [`Faults::set_sse_heartbeat`]
//! (15 s by default) sharing the numbering. Closing the request stops the turn, like
//! the real server: the response body's drop guard aborts it.
//!
//! [`Faults::set_sse_heartbeat`]: crate::Faults::set_sse_heartbeat

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Shared;
use crate::socket::{self, Sink};

use super::agents::agent_not_found;
use super::threads::{thread_index, thread_not_found};
use super::{Res, S, auth, body_object, json_resp};

fn bad_request(message: &str) -> Response {
    json_resp(StatusCode::BAD_REQUEST, json!({"error": message}))
}

/// Stops the turn when the response body is dropped (the client went away).
struct StopOnDrop {
    sh: Arc<Shared>,
    thread_id: String,
    key: String,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let mut turns = self.sh.turns();
        if let Some(list) = turns.get_mut(&self.thread_id)
            && let Some(i) = list.iter().position(|(k, _)| *k == self.key)
        {
            let (_, abort) = list.remove(i);
            let _ = abort.send(true);
            if list.is_empty() {
                turns.remove(&self.thread_id);
            }
        }
    }
}

/// What the response body holds while it streams.
struct Stream {
    events: mpsc::Receiver<Value>,
    heartbeat: tokio::time::Interval,
    seq: u64,
    sh: Arc<Shared>,
    _stop: StopOnDrop,
}

impl Stream {
    fn frame(&mut self, mut event: Value) -> Bytes {
        self.seq += 1;
        event["_seq"] = json!(self.seq);
        Bytes::from(format!("id: {}\ndata: {event}\n\n", self.seq))
    }
}

/// `POST /threads/{threadId}/stream` `{message, agentId?, dynamicBlocks?, attachmentIds?,
/// systemPromptOverride?, outputSchema?, modelLabel?}`.
pub(super) async fn threads_stream(
    State(s): S,
    h: HeaderMap,
    Path(thread_id): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let message = match b.get("message") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(bad_request("message is required in the request body")),
    };
    let schema = match b.get("outputSchema") {
        None | Some(Value::Null) => None,
        Some(o @ Value::Object(_)) => Some(o.clone()),
        Some(_) => return Err(bad_request("outputSchema must be a JSON object")),
    };
    let agent_id = {
        let st = s.store();
        let i = thread_index(&st, &thread_id, &c).ok_or_else(thread_not_found)?;
        match b.get("agentId").and_then(Value::as_str) {
            Some(a) if !st.agents.iter().any(|x| x["id"] == a) => return Err(agent_not_found(a)),
            Some(a) => a.to_string(),
            None => st.threads[i]["agentId"].as_str().unwrap_or("").to_string(),
        }
    };
    let (tx, rx) = mpsc::channel(64);
    let key = socket::start_turn(
        &s,
        &c.scope,
        &thread_id,
        agent_id,
        None,
        &message,
        Sink::Http(tx),
        schema,
    );
    let period = s.faults.sse_heartbeat();
    let state = Stream {
        events: rx,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        seq: 0,
        sh: s.clone(),
        _stop: StopOnDrop {
            sh: s.clone(),
            thread_id,
            key,
        },
    };
    let body = futures::stream::unfold(state, |mut st| async move {
        let bytes = tokio::select! {
            event = st.events.recv() => match event {
                Some(event) => st.frame(event),
                // The turn is over (its last event was `done`).
                None => return None,
            },
            _ = st.heartbeat.tick() => {
                st.sh.faults.count_sse_heartbeat();
                let at = crate::store::utc_now().timestamp_millis();
                st.frame(json!({"type": "heartbeat", "at": at}))
            }
        };
        Some((Ok::<_, std::convert::Infallible>(bytes), st))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

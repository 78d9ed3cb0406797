//! Message ratings: `POST|DELETE|GET /messages/{messageId}/rating`.
//!
//! The rated id is the `messageId` of a turn's `message_persisted` event, i.e. an assistant
//! message in the store (socket turns and one-shot REST turns alike). A message is visible
//! when its thread is; writes are for end users only, one row per (message, end user).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::Caller;
use crate::store::{Store, in_scope, new_id, now_iso};

use super::threads::thread_index;
use super::{Res, S, auth, bad_request, body_object, json_resp, ok};

fn rating_not_found() -> Response {
    json_resp(
        StatusCode::NOT_FOUND,
        json!({"code": "MESSAGE_NOT_FOUND", "message": "Message not found"}),
    )
}

/// Operators (operator tokens and api-key callers) may read ratings but not write them.
fn end_user(s: &Shared, h: &HeaderMap) -> Result<(Caller, String), Response> {
    let c = auth(s, h)?;
    match (c.operator, c.user_id.clone()) {
        (false, Some(u)) => Ok((c, u)),
        _ => Err(json_resp(
            StatusCode::FORBIDDEN,
            json!({"code": "RATING_ACTOR_FORBIDDEN",
                   "message": "Ratings are EndUser-only: operator principals cannot rate messages."}),
        )),
    }
}

/// What a rating row needs to know about the rated message.
struct Rated {
    thread_id: String,
    agent_id: String,
    agent_version_id: Value,
}

fn rated_message(st: &Store, c: &Caller, message_id: &str) -> Result<Rated, Response> {
    let m = st
        .messages
        .iter()
        .find(|m| m["id"] == message_id && m["role"] == "assistant")
        .ok_or_else(rating_not_found)?;
    let thread_id = m["threadId"].as_str().unwrap_or("");
    let i = thread_index(st, thread_id, c).ok_or_else(rating_not_found)?;
    // The agent that answered is the turn's; the thread's agent when no turn is recorded.
    let agent_id = st
        .turns
        .iter()
        .find(|t| m["turnId"] == t.id.as_str())
        .map(|t| t.agent_id.clone())
        .or_else(|| st.threads[i]["agentId"].as_str().map(str::to_string))
        .unwrap_or_default();
    let agent_version_id = st
        .agents
        .iter()
        .find(|a| a["id"] == agent_id.as_str() && in_scope(a, &c.scope))
        .map_or(Value::Null, |a| a["currentVersionId"].clone());
    Ok(Rated {
        thread_id: thread_id.to_string(),
        agent_id,
        agent_version_id,
    })
}

fn is_row(r: &Value, message_id: &str, user: &str) -> bool {
    r["messageId"] == message_id && r["userId"] == user
}

pub(super) async fn rating_put(
    State(s): S,
    h: HeaderMap,
    Path(message_id): Path<String>,
    body: Bytes,
) -> Res {
    let (c, user) = end_user(&s, &h)?;
    let b = body_object(&body)?;
    let rating = match b.get("rating").and_then(Value::as_i64) {
        Some(r @ (1 | -1)) => r,
        _ => return Err(bad_request("rating must be 1 or -1")),
    };
    let comment = match b.get("comment") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(x)) => json!(x),
        Some(_) => return Err(bad_request("comment must be a string or null")),
    };
    let mut st = s.store();
    let m = rated_message(&st, &c, &message_id)?;
    let now = now_iso();
    let row = match st
        .ratings
        .iter_mut()
        .find(|r| is_row(r, &message_id, &user))
    {
        Some(r) => {
            r["rating"] = json!(rating);
            r["comment"] = comment;
            r["updatedAt"] = json!(now);
            r.clone()
        }
        None => {
            let r = json!({
                "id": new_id(), "messageId": message_id, "threadId": m.thread_id,
                "agentId": m.agent_id, "agentVersionId": m.agent_version_id, "userId": user,
                "rating": rating, "comment": comment, "createdAt": now, "updatedAt": now
            });
            st.ratings.push(r.clone());
            r
        }
    };
    ok(json!({ "rating": row }))
}

pub(super) async fn rating_delete(
    State(s): S,
    h: HeaderMap,
    Path(message_id): Path<String>,
) -> Res {
    let (c, user) = end_user(&s, &h)?;
    let mut st = s.store();
    rated_message(&st, &c, &message_id)?;
    let before = st.ratings.len();
    st.ratings.retain(|r| !is_row(r, &message_id, &user));
    ok(json!({"removed": st.ratings.len() < before}))
}

pub(super) async fn rating_get(State(s): S, h: HeaderMap, Path(message_id): Path<String>) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    rated_message(&st, &c, &message_id)?;
    let rows = st
        .ratings
        .iter()
        .filter(|r| r["messageId"] == message_id.as_str());
    let (ups, downs) = rows.fold((0, 0), |(u, d), r| match r["rating"].as_i64() {
        Some(1) => (u + 1, d),
        _ => (u, d + 1),
    });
    // `userRating` is the caller's own row; operators have none.
    let mine = match (c.operator, c.user_id.as_deref()) {
        (false, Some(u)) => st
            .ratings
            .iter()
            .find(|r| is_row(r, &message_id, u))
            .cloned(),
        _ => None,
    };
    ok(json!({"userRating": mine, "aggregate": {"ups": ups, "downs": downs}}))
}

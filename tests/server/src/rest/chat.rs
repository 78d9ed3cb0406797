//! What a chat app needs beyond sending: rename, pin, tags, fork, edit and
//! rerun, retry, replies, and reserving an attachment (docs/wire.md
//! §3.3 and §3.9).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::store::{new_id, now_iso, utc_now};

use super::threads::{new_thread, thread_index};
use super::{Q, Res, S, auth, bad_request, body_object, json_resp, ok, q_str};

/// Upstream's default largest attachment (`PLATOS_MAX_ATTACHMENT_BYTES`).
pub(crate) const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;
/// How long a presigned URL works (`PLATOS_ATTACHMENT_PRESIGN_TTL_SECONDS`).
const PRESIGN_TTL_SECONDS: i64 = 900;

fn coded(status: StatusCode, code: &str, message: &str) -> Response {
    json_resp(status, json!({"code": code, "message": message}))
}

pub(super) async fn rename(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let title = match b.get("title") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(t)) if (1..=200).contains(&t.trim().chars().count()) => json!(t.trim()),
        Some(_) => return Err(bad_request("title must be 1-200 characters or null")),
    };
    let mut st = s.store();
    let Some(i) = thread_index(&st, &id, &c) else {
        return Err(json_resp(
            StatusCode::NOT_FOUND,
            json!({"error": "Thread not found in scope", "threadId": id}),
        ));
    };
    st.threads[i]["title"] = title;
    st.threads[i]["updatedAt"] = json!(now_iso());
    ok(st.threads[i].clone())
}

pub(super) async fn update(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let mut st = s.store();
    let i = thread_index(&st, &id, &c).ok_or_else(super::threads::thread_not_found)?;
    let t = &mut st.threads[i];
    for key in ["title", "status"] {
        match b.get(key) {
            None => {}
            Some(Value::String(v)) => t[key] = json!(v),
            Some(_) => return Err(bad_request(&format!("{key} must be a string"))),
        }
    }
    t["updatedAt"] = json!(now_iso());
    ok(t.clone())
}

pub(super) async fn pin(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let mut st = s.store();
    // Upstream turns every failure of these metadata routes into a 400.
    let i = thread_index(&st, &id, &c).ok_or_else(|| bad_request("Thread not found"))?;
    let t = &mut st.threads[i];
    let pinned = match b.get("pinned") {
        Some(Value::Bool(p)) => *p,
        _ => t["pinnedAt"].is_null(),
    };
    t["pinnedAt"] = if pinned {
        json!(now_iso())
    } else {
        Value::Null
    };
    t["updatedAt"] = json!(now_iso());
    ok(t.clone())
}

pub(super) async fn set_tags(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(Value::Array(raw)) = b.get("tags") else {
        return Err(bad_request("tags must be an array of strings"));
    };
    let mut tags: Vec<String> = Vec::new();
    for tag in raw {
        let Some(tag) = tag.as_str() else {
            return Err(bad_request("tags must be an array of strings"));
        };
        let tag = tag.trim().to_lowercase();
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let mut st = s.store();
    let i = thread_index(&st, &id, &c).ok_or_else(|| bad_request("Thread not found"))?;
    st.threads[i]["tags"] = json!(tags);
    st.threads[i]["updatedAt"] = json!(now_iso());
    ok(st.threads[i].clone())
}

pub(super) async fn fork(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(upto) = b.get("upToMessageId").and_then(Value::as_str) else {
        return Err(bad_request("upToMessageId required"));
    };
    let mut st = s.store();
    let i = thread_index(&st, &id, &c).ok_or_else(|| {
        coded(
            StatusCode::NOT_FOUND,
            "THREAD_NOT_FOUND",
            "Thread not found",
        )
    })?;
    let history: Vec<Value> = st
        .messages
        .iter()
        .filter(|m| m["threadId"] == id.as_str())
        .cloned()
        .collect();
    let Some(end) = history.iter().position(|m| m["id"] == upto) else {
        return Err(coded(
            StatusCode::NOT_FOUND,
            "THREAD_MESSAGE_NOT_FOUND",
            "Message not found in thread",
        ));
    };
    let parent = st.threads[i].clone();
    let agent = parent["agentId"].as_str().unwrap_or_default().to_owned();
    let title = b
        .get("title")
        .filter(|t| t.is_string())
        .cloned()
        .unwrap_or_else(|| parent["title"].clone());
    let mut fork = new_thread(&c, &agent, title);
    // The fork belongs to the parent's owner (an operator may fork anyone's).
    fork["userId"] = parent["userId"].clone();
    fork["endUserId"] = parent["endUserId"].clone();
    fork["parentThreadId"] = json!(id);
    let fork_id = fork["id"].clone();
    for m in &history[..=end] {
        let mut copy = m.clone();
        copy["id"] = json!(new_id());
        copy["threadId"] = fork_id.clone();
        st.messages.push(copy);
    }
    st.threads.push(fork.clone());
    ok(fork)
}

/// The index of a message of thread `id` the caller may see, with the
/// position of every message of the thread.
fn message_in(
    st: &crate::store::Store,
    thread: &str,
    message: &str,
) -> Option<(usize, Vec<usize>)> {
    let of_thread: Vec<usize> = (0..st.messages.len())
        .filter(|&k| st.messages[k]["threadId"] == thread)
        .collect();
    let at = of_thread
        .iter()
        .position(|&k| st.messages[k]["id"] == message)?;
    Some((at, of_thread))
}

/// Removes the messages of a thread after position `keep` (of `of_thread`).
fn rewind(st: &mut crate::store::Store, of_thread: &[usize], keep: usize) -> usize {
    let gone: Vec<usize> = of_thread[keep + 1..].to_vec();
    for &k in gone.iter().rev() {
        st.messages.remove(k);
    }
    gone.len()
}

pub(super) async fn edit_and_rerun(
    State(s): S,
    h: HeaderMap,
    Path((id, mid)): Path<(String, String)>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let content = match b.get("content") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err(bad_request("content required (non-empty string)")),
    };
    let mut st = s.store();
    thread_index(&st, &id, &c).ok_or_else(|| bad_request("Thread not found"))?;
    let (at, of_thread) =
        message_in(&st, &id, &mid).ok_or_else(|| bad_request("Message not found"))?;
    if st.messages[of_thread[at]]["role"] != "user" {
        return Err(bad_request("Only user messages can be edited"));
    }
    rewind(&mut st, &of_thread, at);
    let m = &mut st.messages[of_thread[at]];
    m["content"] = json!(content);
    m["editedAt"] = json!(now_iso());
    ok(json!({"message": m.clone()}))
}

pub(super) async fn retry(
    State(s): S,
    h: HeaderMap,
    Path((id, mid)): Path<(String, String)>,
) -> Res {
    let c = auth(&s, &h)?;
    let mut st = s.store();
    thread_index(&st, &id, &c).ok_or_else(|| bad_request("Thread not found"))?;
    let (at, of_thread) =
        message_in(&st, &id, &mid).ok_or_else(|| bad_request("Message not found"))?;
    if st.messages[of_thread[at]]["role"] != "assistant" {
        return Err(bad_request("Only assistant messages can be retried"));
    }
    let Some(keep) = at.checked_sub(1) else {
        return Err(bad_request("Nothing precedes this message"));
    };
    let user = st.messages[of_thread[keep]].clone();
    let removed = rewind(&mut st, &of_thread, keep);
    ok(json!({"threadId": id, "retriedMessageId": mid, "userMessage": user, "removed": removed}))
}

pub(super) async fn replies(
    State(s): S,
    h: HeaderMap,
    Path((id, mid)): Path<(String, String)>,
) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    if thread_index(&st, &id, &c).is_none() {
        return ok(json!([]));
    }
    let replies: Vec<Value> = st
        .messages
        .iter()
        .filter(|m| m["threadId"] == id.as_str() && m["replyToMessageId"] == mid.as_str())
        .cloned()
        .collect();
    ok(json!(replies))
}

pub(super) async fn reply_counts(
    State(s): S,
    h: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): Q,
) -> Res {
    let c = auth(&s, &h)?;
    let st = s.store();
    let mut counts = serde_json::Map::new();
    if thread_index(&st, &id, &c).is_some() {
        for mid in q_str(&q, "messageIds")
            .unwrap_or("")
            .split(',')
            .filter(|m| !m.is_empty())
        {
            let n = st
                .messages
                .iter()
                .filter(|m| m["threadId"] == id.as_str() && m["replyToMessageId"] == mid)
                .count();
            if n > 0 {
                counts.insert(mid.to_owned(), json!(n));
            }
        }
    }
    ok(Value::Object(counts))
}

fn mime_ok(m: &str) -> bool {
    let Some((a, b)) = m.split_once('/') else {
        return false;
    };
    let part = |p: &str| {
        p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    m.len() <= 128 && part(a) && part(b)
}

pub(super) async fn presign(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let invalid = || {
        coded(
            StatusCode::BAD_REQUEST,
            "ATTACHMENT_INVALID",
            "Attachment metadata is invalid",
        )
    };
    let text = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (Some(agent), Some(thread), Some(mime)) =
        (text("agentId"), text("threadId"), text("mimeType"))
    else {
        return Err(invalid());
    };
    let bytes = match b.get("bytes").and_then(Value::as_u64) {
        Some(n) if n > 0 && n <= (1 << 53) => n,
        _ => return Err(invalid()),
    };
    let kind = match b.get("kind") {
        None | Some(Value::Null) => None,
        Some(Value::String(k))
            if matches!(k.as_str(), "image" | "audio" | "video" | "document") =>
        {
            Some(k.clone())
        }
        Some(_) => return Err(invalid()),
    };
    let mut st = s.store();
    let owned = thread_index(&st, thread, &c).is_some_and(|i| st.threads[i]["agentId"] == agent);
    if !owned {
        return Err(coded(
            StatusCode::NOT_FOUND,
            "THREAD_NOT_FOUND",
            "Thread not found",
        ));
    }
    let mime = mime.to_lowercase();
    let name = b
        .get("filename")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if !mime_ok(&mime) || name.is_some_and(|n| n.chars().count() > 256) {
        return Err(invalid());
    }
    let max = st
        .attachment_max_bytes
        .unwrap_or(DEFAULT_MAX_ATTACHMENT_BYTES);
    if bytes > max {
        return Err(coded(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ATTACHMENT_TOO_LARGE",
            &format!("Attachment must be at most {max} bytes"),
        ));
    }
    let kind = kind.unwrap_or_else(|| {
        let top = mime.split('/').next().unwrap_or("");
        match top {
            "image" | "audio" | "video" => top.to_owned(),
            _ => "document".to_owned(),
        }
    });
    let id = new_id();
    let expires = utc_now() + chrono::Duration::seconds(PRESIGN_TTL_SECONDS);
    let host = crate::auth::header(&h, "host").unwrap_or("127.0.0.1");
    let url = format!(
        "http://{host}{}/{id}?X-Amz-Expires={PRESIGN_TTL_SECONDS}",
        crate::storage::UPLOAD_PATH
    );
    let attachment = json!({
        "id": id, "kind": kind, "mimeType": mime, "bytes": bytes,
        "originalName": name, "createdAt": now_iso()
    });
    st.attachments.push(json!({
        "attachment": attachment, "expiresAt": expires.timestamp(), "received": null,
        "threadId": thread, "userId": c.user_id,
    }));
    drop(st);
    ok(json!({
        "attachmentId": id, "uploadUrl": url, "method": "PUT",
        "headers": {"Content-Type": mime},
        "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "maxBytes": max, "attachment": attachment
    }))
}

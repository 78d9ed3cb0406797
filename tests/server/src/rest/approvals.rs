//! Approvals: the operator dashboard (list/get) and resolve, shared with the socket.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::Shared;
use crate::store::{in_scope, now_iso, resolve_approval_json};

use super::{
    Q, Res, S, auth, bad_request, body_object, contains_ci, envelope, json_resp, ok, operator,
    page, q_str,
};

fn approval_not_found(id: &str) -> Response {
    json_resp(
        StatusCode::NOT_FOUND,
        json!({"error": "Approval not found in this scope", "approvalId": id}),
    )
}

pub(super) async fn list(State(s): S, h: HeaderMap, Query(q): Q) -> Res {
    let c = operator(&s, &h)?;
    let p = page(&q, "limit", 50)?;
    let status = q_str(&q, "status");
    if let Some(x) = status
        && !matches!(x, "pending" | "approved" | "rejected" | "timed_out")
    {
        return Err(bad_request(
            "status must be one of: pending, approved, rejected, timed_out",
        ));
    }
    let source = q_str(&q, "source");
    if let Some(x) = source
        && !matches!(x, "request_approval" | "cancel_run" | "mcp_tool_call")
    {
        return Err(bad_request(
            "source must be one of: request_approval, cancel_run, mcp_tool_call",
        ));
    }
    let since = match q_str(&q, "sinceDays") {
        Some(d) => Some(
            d.parse::<i64>()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| bad_request("sinceDays must be an integer between 1 and 365"))?,
        ),
        None => None,
    };
    let cutoff = since.map(|d| crate::store::utc_now() - chrono::Duration::days(d));
    let (thread, agent, search) = (
        q_str(&q, "threadId"),
        q_str(&q, "agentId"),
        q_str(&q, "search"),
    );
    let st = s.store();
    let base: Vec<&Value> = st
        .approvals
        .iter()
        .rev()
        .filter(|a| in_scope(a, &c.scope))
        .filter(|a| thread.is_none_or(|x| a["threadId"] == x))
        .filter(|a| agent.is_none_or(|x| a["agentId"] == x))
        .filter(|a| source.is_none_or(|x| a["source"] == x))
        .filter(|a| search.is_none_or(|x| contains_ci(&a["action"], x) || contains_ci(&a["id"], x)))
        .filter(|a| {
            cutoff.is_none_or(|cut| {
                a["createdAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t >= cut)
            })
        })
        .collect();
    let pending = base.iter().filter(|a| a["status"] == "pending").count();
    let all: Vec<Value> = base
        .into_iter()
        .filter(|a| status.is_none_or(|x| a["status"] == x))
        .cloned()
        .collect();
    drop(st);
    let mut v = envelope(
        "rows",
        all,
        &p,
        json!({"threadId": thread, "agentId": agent, "status": status, "source": source, "sinceDays": since, "search": search}),
    );
    v["pendingCount"] = json!(pending);
    v["fetchedAt"] = json!(now_iso());
    ok(v)
}

pub(super) async fn get(State(s): S, h: HeaderMap, Path(id): Path<String>) -> Res {
    let c = operator(&s, &h)?;
    let st = s.store();
    let a = st
        .approvals
        .iter()
        .find(|a| a["id"] == id.as_str() && in_scope(a, &c.scope))
        .cloned();
    drop(st);
    a.map(|a| json_resp(StatusCode::OK, a))
        .ok_or_else(|| approval_not_found(&id))
}

/// Outcome of resolving an approval, shared by REST and the socket `approval_response`.
pub(crate) enum Resolution {
    Resolved(Value),
    Already(Value),
    NotFound,
}

pub(crate) fn resolve_approval(
    s: &Shared,
    scope: &crate::Scope,
    id: &str,
    approved: bool,
    by: &str,
    comment: Option<&str>,
    edited: Option<&Value>,
) -> Resolution {
    let mut st = s.store();
    let Some(a) = st
        .approvals
        .iter_mut()
        .find(|a| a["id"] == id && in_scope(a, scope))
    else {
        return Resolution::NotFound;
    };
    if a["status"] != "pending" {
        return Resolution::Already(json!({
            "resolved": true, "approvalId": id, "approved": a["status"] == "approved",
            "status": a["status"], "persisted": true
        }));
    }
    resolve_approval_json(a, approved, by, comment, edited);
    if let Some(tx) = st.waiting.remove(id) {
        let _ = tx.send(crate::store::Decision {
            approved,
            responded_by: by.to_string(),
        });
    }
    let mut out = json!({"resolved": true, "approvalId": id, "approved": approved});
    if edited.is_some() {
        out["editedArgsApplied"] = json!(true);
    }
    Resolution::Resolved(out)
}

pub(super) async fn resolve(State(s): S, h: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let Some(approved) = b.get("approved").and_then(Value::as_bool) else {
        return Err(bad_request("approved must be a boolean"));
    };
    let comment = match b.get("comment") {
        None | Some(Value::Null) => None,
        Some(Value::String(x)) => Some(x.as_str()),
        Some(_) => return Err(bad_request("comment must be a string")),
    };
    let edited = match b.get("editedArgs") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err(bad_request("editedArgs must be an object")),
    };
    let by = c.user_id.clone().unwrap_or_else(|| "operator".into());
    match resolve_approval(&s, &c.scope, &id, approved, &by, comment, edited) {
        Resolution::Resolved(v) | Resolution::Already(v) => ok(v),
        Resolution::NotFound => Err(approval_not_found(&id)),
    }
}

/// `POST /durable-approvals/{token}/resolve`: completes a durable approval's
/// waitpoint. Upstream checks no owner (any caller in the scope), answers 503
/// without a durable engine, a refused completion as HTTP 200
/// `{resolved: false, error}`, and mirrors the approvals ledger when the body
/// names `approvalId`.
pub(super) async fn resolve_durable(
    State(s): S,
    h: HeaderMap,
    Path(token): Path<String>,
    body: Bytes,
) -> Res {
    let c = auth(&s, &h)?;
    let b = body_object(&body)?;
    let approval = b.get("approvalId").and_then(Value::as_str);
    if let Some(id) = approval
        && !s
            .store()
            .approvals
            .iter()
            .any(|a| a["id"] == id && in_scope(a, &c.scope))
    {
        return Err(approval_not_found(id));
    }
    let approved = b.get("approved").and_then(Value::as_bool).unwrap_or(false);
    let comment = b.get("comment").and_then(Value::as_str);
    let by = c.user_id.clone().unwrap_or_else(|| "operator".into());
    {
        let mut st = s.store();
        if st.durable_disabled {
            return Err(json_resp(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"resolved": false,
                       "error": "trigger.dev not configured on this agent — durable approvals disabled"}),
            ));
        }
        match st.waitpoints.get_mut(&token) {
            Some(slot @ None) => {
                *slot = Some(json!({
                    "approved": approved, "comment": comment, "respondedBy": by,
                    "respondedAt": now_iso()
                }));
            }
            Some(Some(_)) => {
                return ok(json!({"resolved": false, "error": "Waitpoint already completed"}));
            }
            None => return ok(json!({"resolved": false, "error": "Waitpoint not found"})),
        }
    }
    if let Some(id) = approval {
        resolve_approval(&s, &c.scope, id, approved, &by, comment, None);
    }
    ok(json!({"resolved": true, "token": token, "approved": approved}))
}

//! The JSON routes of the V1 operator API (`spec/v1.yaml`), in memory.
//!
//! Every handler goes through [`run`], which applies the rules all 27 operations
//! share, in this order: the `X-Platos-Session-Token` header is refused (401), the
//! operator Bearer credential is checked where the spec asks for one, the
//! `idempotency-key` is checked against the operation's class, the body is parsed,
//! a stored answer is replayed (or a mismatch refused), and only then does the
//! family's handler run, under the one lock of [`V1Data`], so a first answer and its
//! stored copy cannot race. Recording and the canned-answer faults
//! ([`crate::RestFault::v1_only`]) happen earlier, in the REST layer every route shares.

// Handlers short-circuit with a ready `Answer` as the error.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::auth::{Caller, header as header_value, verify_token};
use crate::routes::Routes;
use crate::store::{new_id, now_iso};
use crate::{Scope, Shared};

pub(crate) mod data;
mod environment;
mod identity;
mod mcp;
mod provider_keys;
mod tenancy;

pub(crate) use data::V1Data;

type S = axum::extract::State<Arc<Shared>>;
type Q = axum::extract::Query<HashMap<String, String>>;

/// The default and largest page sizes of a paged collection.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;

pub(crate) fn routes() -> Routes {
    Routes::new("")
        .post(
            "/api/v1/agent/providers/keys/{id}/rotate-secret",
            provider_keys::rotate_secret,
        )
        .post("/api/v1/bff/magic-link", identity::magic_link_start)
        .post(
            "/api/v1/bff/magic-link/complete",
            identity::magic_link_complete,
        )
        .post("/api/v1/bff/session", identity::session_exchange)
        .delete("/api/v1/bff/session", identity::session_sign_out)
        .get("/api/v1/identity/session", identity::session_get)
        .get(
            "/api/v1/environments/{environment_id}/end-users",
            environment::end_users_list,
        )
        .get(
            "/api/v1/environments/{environment_id}/variables",
            environment::variables_list,
        )
        .put(
            "/api/v1/environments/{environment_id}/variables/{key}",
            environment::variables_set,
        )
        .get(
            "/api/v1/environments/by-slugs",
            tenancy::environment_scope_resolve,
        )
        .post("/api/v1/invitations/accept", tenancy::invitations_accept)
        .get("/api/v1/organizations", tenancy::organizations_list)
        .post("/api/v1/organizations", tenancy::organizations_create)
        .post(
            "/api/v1/organizations/{organization_id}/invitations",
            tenancy::invitations_issue,
        )
        .get(
            "/api/v1/organizations/{organization_id}/members",
            tenancy::members_list,
        )
        .patch(
            "/api/v1/organizations/{organization_id}/members/{membership_id}",
            tenancy::members_change_role,
        )
        .get("/api/v1/projects", tenancy::projects_list)
        .post("/api/v1/projects", tenancy::projects_create)
        .get("/mcp/entity/{entity_id}/tokens", mcp::entity_tokens_list)
        .post("/mcp/entity/{entity_id}/tokens", mcp::entity_tokens_mint)
        .delete(
            "/mcp/entity/{entity_id}/tokens/{token_id}",
            mcp::entity_tokens_revoke,
        )
        .get(
            "/mcp/platform/environments/{environment_id}/policies",
            mcp::policies_list,
        )
        .put(
            "/mcp/platform/environments/{environment_id}/policies",
            mcp::policies_set,
        )
        .delete(
            "/mcp/platform/environments/{environment_id}/policies/{policy_id}",
            mcp::policies_remove,
        )
        .get("/mcp/platform/tokens", mcp::platform_tokens_list)
        .post("/mcp/platform/tokens", mcp::platform_tokens_mint)
        .post(
            "/mcp/platform/tokens/{id}/revoke",
            mcp::platform_tokens_revoke,
        )
}

/// Whether `path` is a V1 operator route (these, and the event stream), as opposed to
/// the `/api/v1/agent` surface: the REST layer leaves their idempotency to [`run`],
/// and [`crate::RestFault::v1_only`] faults answer only them.
pub(crate) fn is_v1_path(path: &str) -> bool {
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return !rest.starts_with("agent/") || rest.starts_with("agent/providers/");
    }
    path.starts_with("/mcp/")
}

// ---------- operator auth ----------

/// Why an operator credential was refused: `(status, code)`.
pub(crate) type AuthRefusal = (u16, &'static str);

/// The operator Bearer check every V1 route shares: `Authorization: Bearer <token>`
/// with a session token carrying `role: "operator"`. A missing or invalid token, or
/// an `X-Platos-Session-Token` header beside it, is 401 `UNAUTHENTICATED`; a valid
/// end-user token is 403 `FORBIDDEN_SCOPE`.
pub(crate) fn operator_caller(shared: &Shared, headers: &HeaderMap) -> Result<Caller, AuthRefusal> {
    no_session_token(headers)?;
    let caller = header_value(headers, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|token| verify_token(&shared.cfg, token.trim()).ok())
        .ok_or((401, "UNAUTHENTICATED"))?;
    if caller.operator {
        Ok(caller)
    } else {
        Err((403, "FORBIDDEN_SCOPE"))
    }
}

/// V1 routes never read `X-Platos-Session-Token`; one sent is refused (401
/// `UNAUTHENTICATED`), so a client that leaks the end-user lane's header is caught.
pub(crate) fn no_session_token(headers: &HeaderMap) -> Result<(), AuthRefusal> {
    if headers.contains_key("x-platos-session-token") {
        Err((401, "UNAUTHENTICATED"))
    } else {
        Ok(())
    }
}

// ---------- operations ----------

/// `x-platos-idempotency-class` of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Required,
    Accepted,
    Exempt,
    NotApplicable,
}

/// Which credential an operation needs (`security` in the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// The operator Bearer token.
    Operator,
    /// `security: []`: no credential is read.
    None,
    /// The operator token or nothing (sign-out): a bad token is not refused.
    Optional,
}

/// One operation of `spec/v1.yaml`.
#[derive(Debug)]
pub(crate) struct Op {
    pub id: &'static str,
    pub class: Class,
    pub security: Security,
}

impl Op {
    pub(crate) const fn new(id: &'static str, class: Class) -> Self {
        Op {
            id,
            class,
            security: Security::Operator,
        }
    }
    pub(crate) const fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }
}

/// What a handler sees of the request.
pub(crate) struct Cx {
    /// The authenticated operator (`None` on routes that need no credential).
    pub caller: Option<Caller>,
    /// The parsed JSON body (`Null` when there was none).
    pub body: Value,
    /// The `Authorization` Bearer token as sent, for routes that take one optionally.
    pub bearer: Option<String>,
}

impl Cx {
    /// The caller's user id (`"anonymous"` without a credential).
    pub(crate) fn user(&self) -> String {
        self.caller
            .as_ref()
            .and_then(|c| c.user_id.clone())
            .unwrap_or_else(|| "anonymous".into())
    }
}

/// A finished answer: status, JSON body (none for 204) and extra headers. Errors are
/// answers too; handlers return `Err` only to short-circuit with `?`. No `Debug`:
/// a mint's answer carries its secret.
#[derive(Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) type Out = Result<Answer, Answer>;

impl Answer {
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut resp = match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::try_from(value) {
                resp.headers_mut().append(name, v);
            }
        }
        if replayed {
            resp.headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
        }
        resp
    }
}

/// `{data, meta:{contractVersion:"1"}}` with `status`.
pub(crate) fn item(status: StatusCode, data: Value) -> Out {
    Ok(Answer {
        status,
        body: Some(json!({"data": data, "meta": {"contractVersion": "1"}})),
        headers: Vec::new(),
    })
}

/// 200 item.
pub(crate) fn ok(data: Value) -> Out {
    item(StatusCode::OK, data)
}

/// An unpaged collection: every row, `nextCursor: null`, `hasMore: false`, and
/// `limit` = `total` = the number of rows.
pub(crate) fn all(rows: Vec<Value>) -> Out {
    let n = rows.len();
    Ok(Answer {
        status: StatusCode::OK,
        body: Some(json!({"data": rows, "page": {
            "cursor": null, "nextCursor": null, "limit": n, "hasMore": false, "total": n
        }})),
        headers: Vec::new(),
    })
}

/// A refusal: the V1 envelope with `code`, `title` = the code in lower case.
pub(crate) fn refuse(status: u16, code: &str, message: &str) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body: Some(crate::rest::v1_error(
            code,
            &code.to_ascii_lowercase(),
            message,
            None,
        )),
        headers: Vec::new(),
    }
}

/// 400 `INVALID_REQUEST` with one `fields` entry per `(field, code, message)`.
pub(crate) fn invalid(fields: Vec<(String, &'static str, String)>) -> Answer {
    let mut a = refuse(400, "INVALID_REQUEST", "The request is invalid.");
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(field, code, message)| json!({"field": field, "code": code, "message": message}))
        .collect();
    if let Some(body) = &mut a.body {
        body["error"]["fields"] = Value::Array(fields);
    }
    a
}

/// 404 with `code`.
pub(crate) fn not_found(code: &str, what: &str) -> Answer {
    refuse(404, code, &format!("{what} was not found."))
}

// ---------- paging ----------

/// The `page` block's cursor: opaque to clients, an offset here.
fn encode_cursor(offset: usize) -> String {
    format!("pg1.{offset:x}")
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix("pg1.")?, 16).ok()
}

/// One page of `rows` as `cursor`/`limit` in `q` ask (400 `INVALID_REQUEST` on a bad
/// `limit`, never clamped, or a cursor this server did not issue).
pub(crate) fn paged(rows: Vec<Value>, q: &HashMap<String, String>) -> Out {
    let mut problems = Vec::new();
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(l) if (1..=MAX_LIMIT).contains(&l) => l,
            _ => {
                problems.push((
                    "query.limit".into(),
                    "out_of_range",
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        },
    };
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    let offset = match cursor.map(|c| decode_cursor(c)) {
        None => 0,
        // Past the end (the rows changed since): an empty last page, not a refusal.
        Some(Some(o)) => o.min(rows.len()),
        Some(_) => {
            problems.push((
                "query.cursor".into(),
                "invalid_cursor",
                "cursor is not one this service issued".into(),
            ));
            0
        }
    };
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let total = rows.len();
    let data: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    let end = offset + data.len();
    let has_more = end < total;
    Ok(Answer {
        status: StatusCode::OK,
        body: Some(json!({"data": data, "page": {
            "cursor": cursor,
            "nextCursor": has_more.then(|| encode_cursor(end)),
            "limit": limit, "hasMore": has_more, "total": total
        }})),
        headers: Vec::new(),
    })
}

// ---------- body checks ----------

/// Collects every problem with a request before refusing, so one 400 lists them all.
pub(crate) struct Check<'a> {
    body: &'a Value,
    problems: Vec<(String, &'static str, String)>,
}

impl<'a> Check<'a> {
    pub(crate) fn new(body: &'a Value) -> Self {
        Check {
            body,
            problems: Vec::new(),
        }
    }

    pub(crate) fn problem(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.problems
            .push((format!("body.{field}"), code, message.into()));
    }

    /// A required non-empty string.
    pub(crate) fn string(&mut self, name: &str) -> String {
        match self.body.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            None | Some(Value::Null) => {
                self.problem(name, "required", format!("{name} is required"));
                String::new()
            }
            Some(_) => {
                self.problem(
                    name,
                    "invalid",
                    format!("{name} must be a non-empty string"),
                );
                String::new()
            }
        }
    }

    /// An optional string (absent or null → `None`).
    pub(crate) fn opt_string(&mut self, name: &str) -> Option<String> {
        match self.body.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problem(name, "invalid", format!("{name} must be a string"));
                None
            }
        }
    }

    /// A member that must be sent but may be null (`mcpUserId`).
    pub(crate) fn nullable_string(&mut self, name: &str) -> Option<String> {
        if self.body.get(name).is_none() {
            self.problem(
                name,
                "required",
                format!("{name} is required (null allowed)"),
            );
        }
        self.opt_string(name)
    }

    /// A required, possibly null, positive lifetime in seconds, at most one year.
    pub(crate) fn ttl_seconds(&mut self, name: &str) -> Option<i64> {
        match self.body.get(name) {
            None => {
                self.problem(
                    name,
                    "required",
                    format!("{name} is required (null allowed)"),
                );
                None
            }
            Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(t) if (1..=365 * 24 * 3600).contains(&t) => Some(t),
                _ => {
                    self.problem(
                        name,
                        "out_of_range",
                        format!("{name} must be a whole number of seconds from 1 to one year"),
                    );
                    None
                }
            },
        }
    }

    /// A required array of strings, with at least `min` entries.
    pub(crate) fn strings(&mut self, name: &str, min: usize) -> Vec<String> {
        let items: Option<Vec<String>> =
            self.body.get(name).and_then(Value::as_array).and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            });
        match items {
            Some(v) if v.len() >= min => v,
            _ => {
                self.problem(
                    name,
                    "invalid",
                    format!("{name} must be an array of at least {min} strings"),
                );
                Vec::new()
            }
        }
    }

    /// An optional boolean (absent → `false`).
    pub(crate) fn flag(&mut self, name: &str) -> bool {
        match self.body.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(name, "invalid", format!("{name} must be a boolean"));
                false
            }
        }
    }

    /// `Err(400 INVALID_REQUEST)` when anything was wrong.
    pub(crate) fn done(self) -> Result<(), Answer> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(invalid(self.problems))
        }
    }
}

/// A required, non-empty query parameter; missing ones are collected into `problems`.
pub(crate) fn query_param(
    q: &HashMap<String, String>,
    name: &str,
    problems: &mut Vec<(String, &'static str, String)>,
) -> String {
    match q.get(name).filter(|v| !v.is_empty()) {
        Some(v) => v.clone(),
        None => {
            problems.push((
                format!("query.{name}"),
                "required",
                format!("{name} is required"),
            ));
            String::new()
        }
    }
}

// ---------- the shared pipeline ----------

fn idempotency_key_ok(k: &str) -> bool {
    (1..=255).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// A stored first answer: what it was asked (path and body) and what it answered.
#[derive(Clone)]
pub(crate) struct Stored {
    path: String,
    body: Value,
    answer: Answer,
}

/// Runs one V1 operation: the shared checks (module docs), then `handler` under the
/// data lock, storing its answer when the idempotency class keeps one.
pub(crate) fn run(
    s: &Shared,
    op: &Op,
    headers: &HeaderMap,
    path: &str,
    body: &Bytes,
    handler: impl FnOnce(&Cx, &mut V1Data) -> Out,
) -> Response {
    match prepare(s, op, headers, path, body, handler) {
        Ok((answer, replayed)) => answer.into_response(replayed),
        Err(answer) => answer.into_response(false),
    }
}

fn prepare(
    s: &Shared,
    op: &Op,
    headers: &HeaderMap,
    path: &str,
    raw: &Bytes,
    handler: impl FnOnce(&Cx, &mut V1Data) -> Out,
) -> Result<(Answer, bool), Answer> {
    no_session_token(headers).map_err(|(status, code)| {
        refuse(
            status,
            code,
            "V1 routes take an operator credential, never X-Platos-Session-Token.",
        )
    })?;
    let caller = match op.security {
        Security::Operator => Some(operator_caller(s, headers).map_err(|(status, code)| {
            refuse(status, code, "An operator credential is required.")
        })?),
        Security::Optional => operator_caller(s, headers).ok(),
        Security::None => None,
    };
    let key = match op.class {
        Class::Required | Class::Accepted => header_value(headers, "idempotency-key"),
        Class::Exempt | Class::NotApplicable => None,
    };
    match key {
        None if op.class == Class::Required => {
            return Err(refuse(
                400,
                "IDEMPOTENCY_KEY_REQUIRED",
                "This operation needs an idempotency-key header.",
            ));
        }
        Some(k) if !idempotency_key_ok(k) => {
            return Err(refuse(
                400,
                "IDEMPOTENCY_KEY_MALFORMED",
                "idempotency-key must be 1-255 characters from A-Z a-z 0-9 _ . : -",
            ));
        }
        _ => {}
    }
    let body = if raw.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(raw) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(invalid(vec![(
                    "body".into(),
                    "invalid_json",
                    "The body must be a JSON object.".into(),
                )]));
            }
        }
    };
    let bearer = header_value(headers, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let cx = Cx {
        caller,
        body,
        bearer,
    };
    let mut data = s.v1_data();
    if let Some(c) = &cx.caller {
        data.provision(c);
    }
    let store_key = key.map(|k| {
        let who = cx
            .caller
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |c| c.identity.clone());
        format!("{who}|{}|{k}", op.id)
    });
    if let Some(store_key) = &store_key
        && let Some(stored) = data.idempotency.get(store_key)
    {
        if stored.path != path || stored.body != cx.body {
            return Err(refuse(
                409,
                "IDEMPOTENCY_REQUEST_MISMATCH",
                "This idempotency-key was used with a different request.",
            ));
        }
        return Ok((stored.answer.clone(), true));
    }
    let answer = handler(&cx, &mut data).unwrap_or_else(|refusal| refusal);
    // A failed attempt must not pin the key: the client's retry runs again.
    if let Some(store_key) = store_key
        && !answer.status.is_server_error()
    {
        data.idempotency.insert(
            store_key,
            Stored {
                path: path.to_owned(),
                body: cx.body.clone(),
                answer: answer.clone(),
            },
        );
    }
    Ok((answer, false))
}

// ---------- the public handle ----------

/// The V1 operator API's in-memory data, for tests that need what only an inbox
/// would see (magic-link and invitation tokens). Cheap to clone.
#[derive(Clone, Default)]
pub struct V1Api {
    pub(crate) data: Arc<Mutex<V1Data>>,
}

impl std::fmt::Debug for V1Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V1Api").finish_non_exhaustive()
    }
}

impl V1Api {
    pub(crate) fn new(seed: bool, scope: &Scope) -> Self {
        V1Api {
            data: Arc::new(Mutex::new(V1Data::new(seed, scope))),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, V1Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token of the last sign-in link mailed to `email` and not yet spent.
    pub fn magic_link_token(&self, email: &str) -> Option<String> {
        self.lock().magic_link_token(email)
    }

    /// The token of the outstanding invitation to `email`, if any.
    pub fn invitation_token(&self, email: &str) -> Option<String> {
        self.lock().invitation_token(email)
    }

    /// How many sign-in links were mailed to `email` (replays mail none).
    pub fn mailed_links(&self, email: &str) -> usize {
        self.lock().mailed_links(email)
    }
}

/// The address this server gives an operator user.
pub(crate) fn email_of(user_id: &str) -> String {
    format!("{user_id}@example.test")
}

/// `tok_`-style secrets and ids.
pub(crate) fn short_id(prefix: &str) -> String {
    format!("{prefix}_{}", &new_id().replace('-', "")[..16])
}

/// Now, RFC 3339 with milliseconds.
pub(crate) fn now() -> String {
    now_iso()
}

/// Now plus `secs`, RFC 3339 with milliseconds.
pub(crate) fn in_secs(secs: i64) -> String {
    (crate::store::utc_now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Copies `keys` of an object (for projections that leave internal members out).
pub(crate) fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            out.insert((*k).to_owned(), x.clone());
        }
    }
    Value::Object(out)
}

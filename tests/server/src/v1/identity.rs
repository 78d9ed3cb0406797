//! Operator identity: magic-link sign-in, the BFF session cookie, the current session.
//!
//! The session cookie is `__Host-platos_session=<operator token>`: exchanging the same
//! token twice hands back the same cookie, as the spec says, and nothing is minted.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::data::MagicLink;
use super::{Answer, Check, Class, Op, S, Security, email_of, in_secs, item, ok, refuse, run};
use crate::auth::{Caller, verify_token};

const MAGIC_LINK_START: Op =
    Op::new("bff_magic_link_start", Class::Accepted).security(Security::None);
const MAGIC_LINK_COMPLETE: Op =
    Op::new("bff_magic_link_complete", Class::Exempt).security(Security::None);
const SESSION_EXCHANGE: Op =
    Op::new("bff_session_exchange", Class::Accepted).security(Security::None);
const SESSION_SIGN_OUT: Op =
    Op::new("bff_session_sign_out", Class::Accepted).security(Security::Optional);
const SESSION_GET: Op = Op::new("identity_session_get", Class::NotApplicable);

/// The cookie the BFF keeps the operator session in.
pub(crate) const SESSION_COOKIE: &str = "__Host-platos_session";
/// How long a mailed link works.
const LINK_TTL_SECS: i64 = 15 * 60;
/// How long a magic-link session lasts.
const SESSION_TTL_SECS: i64 = 12 * 3600;

fn set_cookie(value: &str, max_age: i64) -> String {
    format!("{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

/// A stable session id for a credential, never the credential itself.
fn session_id(token: &str) -> String {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    format!("ses_{:016x}", h.finish())
}

/// The `OperatorSession` of an operator token.
fn operator_session(token: &str, caller: &Caller) -> Value {
    let user = caller.user_id.clone().unwrap_or_default();
    let expires = caller
        .exp
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    json!({
        "sessionId": session_id(token), "actorUserId": user, "effectiveUserId": user,
        "email": email_of(&user), "expiresAt": expires, "mfaVerifiedAt": null,
        "impersonating": null
    })
}

/// The user an address signs in as: the local part (`user_operator@example.test` is
/// `user_operator`, the same user an operator token for `user_operator` names).
fn user_of(email: &str) -> String {
    email.split('@').next().unwrap_or_default().to_owned()
}

pub(crate) async fn magic_link_start(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &MAGIC_LINK_START, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let email = c.string("email");
        if !email.is_empty() && !email.contains('@') {
            c.problem("email", "invalid_email", "email must be an address");
        }
        c.done()?;
        d.magic_links.push(MagicLink {
            email: email.clone(),
            token: super::short_id("mlt"),
            spent: false,
        });
        item(
            StatusCode::ACCEPTED,
            json!({"email": email, "expiresAt": in_secs(LINK_TTL_SECS)}),
        )
    })
}

pub(crate) async fn magic_link_complete(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &MAGIC_LINK_COMPLETE, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let token = c.string("token");
        c.done()?;
        // Unknown, spent or expired: one answer, so the route reveals nothing.
        let link = d
            .magic_links
            .iter_mut()
            .find(|l| l.token == token && !l.spent)
            .ok_or_else(|| refuse(401, "UNAUTHENTICATED", "This sign-in link cannot be used."))?;
        link.spent = true;
        let session = super::short_id("ses");
        let answer: Answer = ok(json!({
            "userId": user_of(&link.email), "sessionId": session,
            "expiresAt": in_secs(SESSION_TTL_SECS)
        }))?;
        Ok(answer.header("set-cookie", set_cookie(&session, SESSION_TTL_SECS)))
    })
}

pub(crate) async fn session_exchange(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    let shared = s.clone();
    run(&s, &SESSION_EXCHANGE, &h, uri.path(), &b, move |cx, _| {
        let mut c = Check::new(&cx.body);
        let token = c.string("token");
        c.done()?;
        let caller = verify_token(&shared.cfg, &token)
            .ok()
            .filter(|c| c.operator)
            .ok_or_else(|| refuse(401, "UNAUTHENTICATED", "The operator token is not valid."))?;
        let max_age = caller
            .exp
            .map_or(0, |e| e - crate::store::utc_now().timestamp())
            .max(0);
        let answer = ok(operator_session(&token, &caller))?;
        Ok(answer.header("set-cookie", set_cookie(&token, max_age)))
    })
}

pub(crate) async fn session_sign_out(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &SESSION_SIGN_OUT, &h, uri.path(), &b, |_, _| {
        // 204 whether or not a live session was presented: nothing about it is revealed.
        Ok(Answer {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
        }
        .header("set-cookie", set_cookie("", 0)))
    })
}

pub(crate) async fn session_get(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &SESSION_GET, &h, uri.path(), &b, |cx, _| {
        let (Some(caller), Some(token)) = (&cx.caller, &cx.bearer) else {
            return Err(refuse(
                401,
                "UNAUTHENTICATED",
                "An operator credential is required.",
            ));
        };
        ok(operator_session(token, caller))
    })
}

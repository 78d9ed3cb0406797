//! One environment's variables and end users.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::data::{Owned, V1Data};
use super::{Check, Class, Op, Q, S, all, not_found, now, ok, paged, refuse, run};

const END_USERS_LIST: Op = Op::new("environment_end_users_list", Class::NotApplicable);
const VARIABLES_LIST: Op = Op::new("environment_variables_list", Class::NotApplicable);
const VARIABLES_SET: Op = Op::new("environment_variables_set", Class::Accepted);

/// 404 `TENANCY_NOT_FOUND` unless the caller belongs to the environment's organization.
pub(crate) fn environment_of(
    d: &V1Data,
    environment_id: &str,
    user: &str,
) -> Result<String, super::Answer> {
    d.visible_environment(environment_id, user)
        .ok_or_else(|| not_found("TENANCY_NOT_FOUND", "The environment"))
}

/// The metadata projection: a secret variable's value is never shown.
fn variable_json(v: &Value) -> Value {
    let mut v = v.clone();
    if v["kind"] == "SECRET" {
        v["value"] = Value::Null;
    }
    v
}

pub(crate) async fn end_users_list(
    State(s): S,
    Path(env): Path<String>,
    Query(q): Q,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &END_USERS_LIST, &h, uri.path(), &b, |cx, d| {
        environment_of(d, &env, &cx.user())?;
        let status = q.get("status").map(String::as_str);
        if let Some(st) = status
            && st != "active"
            && st != "disabled"
        {
            return Err(refuse(
                400,
                "INVALID_END_USER_FILTER",
                "status must be active or disabled",
            ));
        }
        let search = q.get("search").map(|s| s.to_lowercase());
        if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
            return Err(refuse(
                400,
                "INVALID_END_USER_FILTER",
                "search is at most 200 characters",
            ));
        }
        let rows = d
            .end_users
            .iter()
            .filter(|u| u.owner == env)
            .map(|u| &u.v)
            .filter(|u| match status {
                Some("active") => u["disabledAt"].is_null(),
                Some(_) => !u["disabledAt"].is_null(),
                None => true,
            })
            .filter(|u| {
                search
                    .as_deref()
                    .is_none_or(|needle| u.to_string().to_lowercase().contains(needle))
            })
            .cloned()
            .collect();
        paged(rows, &q)
    })
}

pub(crate) async fn variables_list(
    State(s): S,
    Path(env): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &VARIABLES_LIST, &h, uri.path(), &b, |cx, d| {
        environment_of(d, &env, &cx.user())?;
        all(d
            .variables
            .iter()
            .filter(|v| v.owner == env)
            .map(|v| variable_json(&v.v))
            .collect())
    })
}

pub(crate) async fn variables_set(
    State(s): S,
    Path((env, key)): Path<(String, String)>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &VARIABLES_SET, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let value = match cx.body.get("value") {
            Some(Value::String(v)) => v.clone(),
            _ => {
                c.problem("value", "required", "value is required (a string)");
                String::new()
            }
        };
        let secret = c.flag("secret");
        c.done()?;
        let org = environment_of(d, &env, &cx.user())?;
        if d.membership(&org, &cx.user())
            .is_some_and(|m| m.role == "MEMBER")
        {
            return Err(refuse(
                403,
                "TENANCY_ENVIRONMENT_FORBIDDEN",
                "Setting a variable needs secret:mutate.",
            ));
        }
        let kind = if secret { "SECRET" } else { "PLAIN" };
        let t = now();
        let user = cx.user();
        let row = match d
            .variables
            .iter_mut()
            .find(|v| v.owner == env && v.v["key"] == key.as_str())
        {
            Some(row) => {
                let version = row.v["version"].as_i64().unwrap_or(0) + 1;
                for (k, v) in [
                    ("kind", json!(kind)),
                    ("value", json!(value)),
                    ("hasSecret", json!(secret)),
                    ("version", json!(version)),
                    ("lastUpdatedBy", json!(user)),
                    ("updatedAt", json!(t)),
                ] {
                    row.v[k] = v;
                }
                row.v.clone()
            }
            None => {
                let v = json!({"id": V1Data::id("var"), "key": key, "kind": kind, "value": value,
                               "hasSecret": secret, "version": 1, "lastUpdatedBy": user,
                               "createdAt": t, "updatedAt": t});
                d.variables.push(Owned {
                    owner: env.clone(),
                    v: v.clone(),
                });
                v
            }
        };
        ok(variable_json(&row))
    })
}

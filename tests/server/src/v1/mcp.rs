//! MCP management: platform tokens, entity tokens, organization policies.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::data::{Owned, TokenRow, V1Data};
use super::environment::environment_of;
use super::{
    Answer, Check, Class, Op, Q, S, all, in_secs, invalid, item, not_found, now, ok, paged,
    query_param, refuse, run,
};

const PLATFORM_LIST: Op = Op::new("mcp_platform_tokens_list", Class::NotApplicable);
const PLATFORM_MINT: Op = Op::new("mcp_platform_tokens_mint", Class::Required);
const PLATFORM_REVOKE: Op = Op::new("mcp_platform_tokens_revoke", Class::Exempt);
const ENTITY_LIST: Op = Op::new("mcp_entity_tokens_list", Class::NotApplicable);
const ENTITY_MINT: Op = Op::new("mcp_entity_tokens_mint", Class::Required);
const ENTITY_REVOKE: Op = Op::new("mcp_entity_tokens_revoke", Class::Exempt);
const POLICIES_LIST: Op = Op::new("mcp_organization_policies_list", Class::NotApplicable);
const POLICIES_SET: Op = Op::new("mcp_organization_policies_set", Class::Accepted);
const POLICIES_REMOVE: Op = Op::new("mcp_organization_policies_remove", Class::Accepted);

/// A token's lifetime when `ttlSeconds` is null: 90 days.
const DEFAULT_TTL_SECS: i64 = 90 * 24 * 3600;

/// The required `environmentId` query parameter.
fn environment_query(q: &HashMap<String, String>) -> Result<String, Answer> {
    let mut problems = Vec::new();
    let env = query_param(q, "environmentId", &mut problems);
    if problems.is_empty() {
        Ok(env)
    } else {
        Err(invalid(problems))
    }
}

fn list(d: &V1Data, env: &str, entity: Option<&str>, q: &HashMap<String, String>) -> super::Out {
    let rows = d
        .tokens
        .iter()
        .filter(|t| t.environment_id == env && t.entity_id.as_deref() == entity)
        .map(|t| t.v.clone())
        .collect();
    paged(rows, q)
}

/// What a mint asks for.
struct NewToken {
    env: String,
    /// `None` for a platform token.
    entity: Option<String>,
    label: String,
    permissions: Vec<String>,
    principal: String,
    tier: Option<String>,
    ttl: Option<i64>,
}

/// Mints a token: the listing row is stored, the answer carries the secret once.
fn mint(d: &mut V1Data, new: NewToken) -> super::Out {
    let NewToken {
        env,
        entity,
        label,
        permissions,
        principal,
        tier,
        ttl,
    } = new;
    let id = V1Data::id("tok");
    let secret = V1Data::id(if entity.is_some() { "mcpe" } else { "mcpp" });
    let t = now();
    let expires = in_secs(ttl.unwrap_or(DEFAULT_TTL_SECS));
    d.tokens.push(TokenRow {
        environment_id: env,
        entity_id: entity,
        v: json!({"tokenId": id, "label": label, "permissions": permissions,
                  "principalId": principal, "tier": tier, "state": "active",
                  "createdAt": t, "expiresAt": expires, "lastUsedAt": null,
                  "revokedAt": null, "revokedBy": null}),
    });
    item(
        StatusCode::CREATED,
        json!({"tokenId": id, "token": secret, "label": label, "permissions": permissions,
               "tier": tier, "expiresAt": expires, "createdAt": t}),
    )
}

/// Revokes a token; a second call answers `newlyRevoked: false` and the first instant.
fn revoke(
    d: &mut V1Data,
    env: &str,
    entity: Option<&str>,
    token_id: &str,
    user: &str,
) -> super::Out {
    let row = d
        .tokens
        .iter_mut()
        .find(|t| {
            t.environment_id == env
                && t.entity_id.as_deref() == entity
                && t.v["tokenId"] == token_id
        })
        .ok_or_else(|| not_found("CREDENTIAL_NOT_FOUND", "The token"))?;
    let previous = row.v["state"].as_str().unwrap_or("active").to_owned();
    let newly = previous != "revoked";
    if newly {
        row.v["state"] = json!("revoked");
        row.v["revokedAt"] = json!(now());
        row.v["revokedBy"] = json!(user);
    }
    ok(json!({
        "tokenId": token_id, "label": row.v["label"], "revokedAt": row.v["revokedAt"],
        "newlyRevoked": newly, "previousState": previous, "revokedBy": row.v["revokedBy"]
    }))
}

pub(crate) async fn platform_tokens_list(
    State(s): S,
    Query(q): Q,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &PLATFORM_LIST, &h, uri.path(), &b, |cx, d| {
        let env = environment_query(&q)?;
        environment_of(d, &env, &cx.user())?;
        list(d, &env, None, &q)
    })
}

pub(crate) async fn platform_tokens_mint(
    State(s): S,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &PLATFORM_MINT, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let env = c.string("environmentId");
        let name = c.string("name");
        let permissions = c.strings("permissions", 1);
        let tier = c.string("tier");
        if !tier.is_empty() && tier != "scope" && tier != "admin" {
            c.problem("tier", "invalid_enum", "tier must be scope or admin");
        }
        let ttl = c.ttl_seconds("ttlSeconds");
        c.done()?;
        environment_of(d, &env, &cx.user())?;
        mint(
            d,
            NewToken {
                env,
                entity: None,
                label: name,
                permissions,
                principal: cx.user(),
                tier: Some(tier),
                ttl,
            },
        )
    })
}

pub(crate) async fn platform_tokens_revoke(
    State(s): S,
    Path(id): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &PLATFORM_REVOKE, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let env = c.string("environmentId");
        c.done()?;
        environment_of(d, &env, &cx.user())?;
        revoke(d, &env, None, &id, &cx.user())
    })
}

pub(crate) async fn entity_tokens_list(
    State(s): S,
    Path(entity): Path<String>,
    Query(q): Q,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &ENTITY_LIST, &h, uri.path(), &b, |cx, d| {
        let env = environment_query(&q)?;
        environment_of(d, &env, &cx.user())?;
        list(d, &env, Some(&entity), &q)
    })
}

pub(crate) async fn entity_tokens_mint(
    State(s): S,
    Path(entity): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &ENTITY_MINT, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let env = c.string("environmentId");
        let label = c.string("label");
        let scopes = c.strings("scopes", 0);
        let mcp_user = c.nullable_string("mcpUserId");
        let ttl = c.ttl_seconds("ttlSeconds");
        c.done()?;
        environment_of(d, &env, &cx.user())?;
        let principal = mcp_user.unwrap_or_else(|| entity.clone());
        mint(
            d,
            NewToken {
                env,
                entity: Some(entity.clone()),
                label,
                permissions: scopes,
                principal,
                tier: None,
                ttl,
            },
        )
    })
}

pub(crate) async fn entity_tokens_revoke(
    State(s): S,
    Path((entity, token_id)): Path<(String, String)>,
    Query(q): Q,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &ENTITY_REVOKE, &h, uri.path(), &b, |cx, d| {
        let env = environment_query(&q)?;
        environment_of(d, &env, &cx.user())?;
        revoke(d, &env, Some(&entity), &token_id, &cx.user())
    })
}

pub(crate) async fn policies_list(
    State(s): S,
    Path(env): Path<String>,
    Query(q): Q,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &POLICIES_LIST, &h, uri.path(), &b, |cx, d| {
        // Not paged: paging parameters are refused rather than ignored.
        let refused: Vec<_> = ["limit", "cursor"]
            .into_iter()
            .filter(|k| q.contains_key(*k))
            .map(|k| {
                (
                    format!("query.{k}"),
                    "unsupported",
                    format!("{k} is not accepted here"),
                )
            })
            .collect();
        if !refused.is_empty() {
            return Err(invalid(refused));
        }
        let org = environment_of(d, &env, &cx.user())?;
        all(d
            .policies
            .iter()
            .filter(|p| p.owner == org)
            .map(|p| p.v.clone())
            .collect())
    })
}

pub(crate) async fn policies_set(
    State(s): S,
    Path(env): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &POLICIES_SET, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let pattern = c.string("pattern");
        if pattern.chars().count() > 200 {
            c.problem("pattern", "too_long", "pattern is 1 to 200 characters");
        }
        let state = c.string("state");
        if !state.is_empty()
            && !["auto_allow", "require_approval", "block"].contains(&state.as_str())
        {
            c.problem(
                "state",
                "invalid_enum",
                "state must be auto_allow, require_approval or block",
            );
        }
        c.done()?;
        if state == "require_approval" {
            return Err(refuse(
                400,
                "TOOLS_POLICY_EFFECT_UNSUPPORTED",
                "The organization tier stores only auto_allow and block.",
            ));
        }
        let org = environment_of(d, &env, &cx.user())?;
        let t = now();
        let row = match d
            .policies
            .iter_mut()
            .find(|p| p.owner == org && p.v["pattern"] == pattern.as_str())
        {
            Some(p) => {
                p.v["state"] = json!(state);
                p.v["updatedAt"] = json!(t);
                p.v.clone()
            }
            None => {
                let v = json!({"policyId": V1Data::id("pol"), "pattern": pattern, "state": state,
                               "createdAt": t, "updatedAt": t});
                d.policies.push(Owned {
                    owner: org,
                    v: v.clone(),
                });
                v
            }
        };
        ok(row)
    })
}

pub(crate) async fn policies_remove(
    State(s): S,
    Path((env, policy_id)): Path<(String, String)>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &POLICIES_REMOVE, &h, uri.path(), &b, |cx, d| {
        let org = environment_of(d, &env, &cx.user())?;
        let before = d.policies.len();
        d.policies
            .retain(|p| !(p.owner == org && p.v["policyId"] == policy_id.as_str()));
        ok(json!({"policyId": policy_id, "deleted": d.policies.len() < before}))
    })
}

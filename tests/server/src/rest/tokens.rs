//! Tokens the server mints: `POST /api/v1/public/guest-token` (no credential)
//! and `POST /api/v1/entities/{entityId}/session-tokens` (the entity's key);
//! docs/wire.md §3.10. Both sign with the entity secret, so
//! the tokens work on this server like locally minted ones.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::Scope;
use crate::auth::{TokenSpec, header, mint_token};
use crate::store::{in_scope, utc_now};

use super::{Res, S, bad_request, body_object, framework, ok, unauthorized};

/// Guest tokens one client address gets (upstream: 20 per 5 minutes).
const GUEST_LIMIT_PER_ADDRESS: u32 = 20;
const GUEST_TTL_SECONDS: i64 = 1800;

pub(super) async fn guest(State(s): S, h: HeaderMap, body: Bytes) -> Res {
    let b = body_object(&body)?;
    let Some(agent_id) = b
        .get("agentId")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Err(bad_request("agentId is required"));
    };
    let env = b
        .get("environmentId")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty());
    let mut st = s.store();
    let public: Vec<Value> = st
        .agents
        .iter()
        .filter(|a| a["id"] == agent_id && a["visibility"] == "public-guest")
        .filter(|a| env.is_none_or(|e| a["environmentId"] == e))
        .cloned()
        .collect();
    let [agent] = public.as_slice() else {
        return Err(framework(StatusCode::NOT_FOUND, "Agent not found"));
    };
    let address = header(&h, "x-forwarded-for")
        .and_then(|x| x.split(',').next())
        .map(str::trim)
        .map(str::to_owned)
        // Every caller of this loopback server shares one address.
        .unwrap_or_else(|| "loopback".to_owned());
    let count = st.guest_tokens.entry(address).or_insert(0);
    *count += 1;
    if *count > GUEST_LIMIT_PER_ADDRESS {
        return Err(framework(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many guest tokens from this address. Retry in a few minutes.",
        ));
    }
    drop(st);
    let scope = Scope::new(
        agent["organizationId"].as_str().unwrap_or_default(),
        agent["projectId"].as_str().unwrap_or_default(),
        agent["environmentId"].as_str().unwrap_or_default(),
    );
    let guest_id = format!("guest-{}", &crate::store::new_id().replace('-', "")[..18]);
    let spec = TokenSpec::new(scope, guest_id.clone(), s.cfg.entity_id.clone())
        .times(0, GUEST_TTL_SECONDS)
        .claim("iss", json!("platos-platform"))
        .claim("agentId", json!(agent_id))
        .claim("isGuest", json!(true));
    ok(json!({
        "token": mint_token(&s.cfg.secret, &spec),
        "guestId": guest_id,
        "expiresAt": utc_now().timestamp() + GUEST_TTL_SECONDS,
        "agentId": agent_id,
    }))
}

pub(super) async fn session(
    State(s): S,
    Path(entity_id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Res {
    let valid_id = (1..=64).contains(&entity_id.len())
        && entity_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_id {
        return Err(bad_request("Invalid entityId"));
    }
    let b = body_object(&body)?;
    let text = |k: &str| b.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let (Some(org), Some(project), Some(env)) = (
        text("organizationId"),
        text("projectId"),
        text("environmentId"),
    ) else {
        return Err(bad_request(
            "Body must include organizationId, projectId, environmentId",
        ));
    };
    let Some(user) = text("userId") else {
        return Err(bad_request("Body.userId is required"));
    };
    // This server's one entity key is its api key.
    let key = header(&h, "authorization").and_then(|a| a.strip_prefix("Bearer "));
    if key.is_none() {
        return Err(unauthorized());
    }
    let scope = Scope::new(org, project, env);
    let known_scope = s.store().agents.iter().any(|a| in_scope(a, &scope));
    if key != Some(s.cfg.api_key.as_str()) || entity_id != s.cfg.entity_id || !known_scope {
        return Err(unauthorized());
    }
    let ttl = b
        .get("ttlSeconds")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite())
        .map_or(3600, |t| t.floor() as i64)
        .clamp(60, 7 * 86_400);
    let mut spec = TokenSpec::new(scope, user, entity_id).times(0, ttl);
    for key in ["userToken", "agentId", "userMeta"] {
        if let Some(v) = b.get(key) {
            spec = spec.claim(key, v.clone());
        }
    }
    ok(json!({
        "token": mint_token(&s.cfg.secret, &spec),
        "expiresAt": utc_now().timestamp() + ttl,
    }))
}

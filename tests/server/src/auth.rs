//! Gateway-style authentication: HS256 session tokens or direct api-key mode.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::{Config, Scope};

/// Who is calling, as far as the server is concerned.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub scope: Scope,
    pub user_id: Option<String>,
    /// Operators see every thread in the scope and may call operator-only routes.
    pub operator: bool,
    /// Stable identity for idempotency keys (never the raw credential).
    pub identity: String,
    /// Session-token expiry (epoch seconds); `None` in direct mode.
    pub exp: Option<i64>,
}

/// Why a credential was refused (kept for logs; the wire answer is a plain 401).
#[derive(Debug)]
pub(crate) struct Refused(#[allow(dead_code)] pub &'static str);

fn str_claim<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Verifies a session token like the gateway does: signature with the entity
/// secret, required claims, `exp` passed → refused, `iat` > 60 s ahead → refused.
pub(crate) fn verify_token(cfg: &Config, token: &str) -> Result<Caller, Refused> {
    let mut v = Validation::new(Algorithm::HS256);
    // Expiry is checked by hand below: no leeway, and `iat` needs checking too.
    v.validate_exp = false;
    v.required_spec_claims.clear();
    let key = DecodingKey::from_secret(cfg.secret.as_bytes()).map_err(|_| Refused("bad key"))?;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|_| Refused("bad signature or format"))?;
    let c = data.claims;
    let now = crate::store::utc_now().timestamp();
    let exp = c
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(Refused("no exp"))?;
    let iat = c
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(Refused("no iat"))?;
    if exp <= now {
        return Err(Refused("expired"));
    }
    if iat > now + 60 {
        return Err(Refused("iat in the future"));
    }
    let entity = str_claim(&c, "entityId").ok_or(Refused("no entityId"))?;
    if entity != cfg.entity_id {
        return Err(Refused("unknown entity"));
    }
    let org = str_claim(&c, "organizationId").ok_or(Refused("no organizationId"))?;
    let project = str_claim(&c, "projectId").ok_or(Refused("no projectId"))?;
    let env = str_claim(&c, "environmentId").ok_or(Refused("no environmentId"))?;
    let user = str_claim(&c, "userId").ok_or(Refused("no userId"))?;
    let operator = c.get("role").and_then(Value::as_str) == Some("operator");
    Ok(Caller {
        scope: Scope::new(org, project, env),
        user_id: Some(user.to_string()),
        operator,
        identity: format!("token:{entity}:{user}:{org}/{project}/{env}"),
        exp: Some(exp),
    })
}

pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(crate) fn scope_from_headers(h: &HeaderMap) -> Option<(Scope, Option<String>)> {
    Some((
        Scope::new(
            header(h, "x-platos-organization-id")?,
            header(h, "x-platos-project-id")?,
            header(h, "x-platos-environment-id")?,
        ),
        header(h, "x-platos-user-id").map(str::to_string),
    ))
}

/// REST authentication outcome.
pub(crate) enum RestAuth {
    Ok(Caller),
    Unauthorized,
    MissingScope,
}

pub(crate) fn authenticate_rest(cfg: &Config, h: &HeaderMap) -> RestAuth {
    if let Some(token) = header(h, "x-platos-session-token") {
        return match verify_token(cfg, token) {
            Ok(c) => RestAuth::Ok(c),
            Err(_) => RestAuth::Unauthorized,
        };
    }
    let Some(bearer) = header(h, "authorization").and_then(|a| a.strip_prefix("Bearer ")) else {
        return RestAuth::Unauthorized;
    };
    if bearer.trim() != cfg.api_key {
        return RestAuth::Unauthorized;
    }
    match scope_from_headers(h) {
        Some((scope, user_id)) => RestAuth::Ok(Caller {
            identity: format!("key:{}", scope.key()),
            scope,
            user_id,
            // The api key is the backend's own server-to-server credential: an operator,
            // with or without a user id (which only names the user it acts for).
            operator: true,
            exp: None,
        }),
        None => RestAuth::MissingScope,
    }
}

/// Claims for [`mint_token`]; every field is sent as given so tests can build broken tokens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenSpec {
    /// Scope tuple placed in the claims.
    pub scope: Scope,
    /// `userId` claim.
    pub user_id: String,
    /// `entityId` claim.
    pub entity_id: String,
    /// `iat` (epoch seconds).
    pub iat: i64,
    /// `exp` (epoch seconds).
    pub exp: i64,
    /// Adds `role: "operator"` (this server's operator rule).
    pub operator: bool,
    /// Extra claims merged last (may override the above).
    pub extra: serde_json::Map<String, Value>,
}

impl TokenSpec {
    /// Valid for one hour from now.
    pub fn new(scope: Scope, user_id: impl Into<String>, entity_id: impl Into<String>) -> Self {
        let now = crate::store::utc_now().timestamp();
        TokenSpec {
            scope,
            user_id: user_id.into(),
            entity_id: entity_id.into(),
            iat: now,
            exp: now + 3600,
            operator: false,
            extra: serde_json::Map::new(),
        }
    }

    /// Marks the token as an operator credential.
    pub fn operator(mut self, yes: bool) -> Self {
        self.operator = yes;
        self
    }

    /// Sets `iat`/`exp` relative to now (seconds; negative = in the past).
    pub fn times(mut self, iat_offset: i64, exp_offset: i64) -> Self {
        let now = crate::store::utc_now().timestamp();
        self.iat = now + iat_offset;
        self.exp = now + exp_offset;
        self
    }

    /// Adds or overrides one claim.
    pub fn claim(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }
}

/// Signs `spec` with `secret` (HS256), independently of the SDK's minter.
/// An empty `secret` yields an empty string.
pub fn mint_token(secret: &str, spec: &TokenSpec) -> String {
    let mut claims = json!({
        "organizationId": spec.scope.organization_id,
        "projectId": spec.scope.project_id,
        "environmentId": spec.scope.environment_id,
        "userId": spec.user_id,
        "entityId": spec.entity_id,
        "iat": spec.iat,
        "exp": spec.exp,
    });
    if spec.operator {
        claims["role"] = json!("operator");
    }
    if let Value::Object(o) = &mut claims {
        o.extend(spec.extra.clone());
    }
    // Only an empty secret can fail here; an empty token is then refused like any bad one.
    EncodingKey::from_secret(secret.as_bytes())
        .and_then(|k| jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k))
        .unwrap_or_default()
}

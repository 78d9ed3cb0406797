//! Session-token minting for your backend (feature `mint`).
//!
//! A Platos session token is a compact JWS, HS256, signed with the entity's
//! service secret (docs/wire.md §1.2). Your backend mints one per end user and hands
//! it to the untrusted client, which sends it as `X-Platos-Session-Token`.
//!
//! ```
//! use std::time::Duration;
//! use platos_client::mint::{MintOptions, mint_session_token};
//!
//! # fn run() -> Result<(), platos_client::mint::MintError> {
//! let options = MintOptions::new("a-service-secret-of-16+chars", "ent_123")
//!     .scope("org_1", "proj_1", "env_1")
//!     .user_id("user_42")
//!     .ttl(Duration::from_secs(900))
//!     .user_meta("Ada Lovelace", "ada@example.com");
//! let token = mint_session_token(&options)?;
//! assert_eq!(token.split('.').count(), 3);
//! # Ok(()) }
//! # run().unwrap();
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::config::{Scope, Secret};

/// Default token lifetime: one hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Shortest lifetime accepted: 60 s.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest lifetime accepted: 7 days.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Minimum length of the service secret, in characters.
pub const MIN_SECRET_CHARS: usize = 16;

/// The fixed JOSE header; written literally so the bytes never vary.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Why a token could not be minted. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The service secret is shorter than [`MIN_SECRET_CHARS`].
    #[error("the service secret must be at least {min} characters (got {got})")]
    SecretTooShort {
        /// Required minimum.
        min: usize,
        /// Length given.
        got: usize,
    },
    /// A required claim is empty or whitespace.
    #[error("`{0}` is required and must not be blank")]
    Blank(&'static str),
    /// The lifetime is outside [`MIN_TTL`]..=[`MAX_TTL`].
    #[error("the token lifetime must be between 60 s and 7 days (got {got_secs} s)")]
    TtlOutOfRange {
        /// Lifetime given, in whole seconds.
        got_secs: u64,
    },
    /// The issue time is before 1970 or too far in the future to encode.
    #[error("the issue time cannot be expressed in epoch seconds")]
    Clock,
}

/// Minting refusals are configuration errors of the one SDK error type, so
/// `?` works in code that returns [`crate::Result`].
impl From<MintError> for crate::Error {
    fn from(e: MintError) -> Self {
        crate::Error::config(e.to_string())
    }
}

/// End-user details surfaced to prompts as `{{user.name}}` / `{{user.email}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserMeta {
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// What goes into a session token. Build with [`MintOptions::new`] and the setters.
///
/// `Debug` never shows the secret or the user token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MintOptions {
    /// The entity's service secret (HMAC key).
    pub secret: Secret,
    /// `entityId`: the entity whose secret signs the token.
    pub entity_id: String,
    /// `organizationId`
    pub organization_id: String,
    /// `projectId`
    pub project_id: String,
    /// `environmentId`
    pub environment_id: String,
    /// `userId`: the end user the token speaks for.
    pub user_id: String,
    /// Lifetime (`exp - iat`). Default [`DEFAULT_TTL`].
    pub ttl: Duration,
    /// Optional `userMeta`.
    pub user_meta: Option<UserMeta>,
    /// Optional opaque `userToken`, passed through by the server.
    pub user_token: Option<Secret>,
    /// Issue time; `None` means now.
    pub issued_at: Option<SystemTime>,
}

impl MintOptions {
    /// Options with the secret and entity id; set the scope and user before minting.
    pub fn new(secret: impl Into<Secret>, entity_id: impl Into<String>) -> Self {
        MintOptions {
            secret: secret.into(),
            entity_id: entity_id.into(),
            organization_id: String::new(),
            project_id: String::new(),
            environment_id: String::new(),
            user_id: String::new(),
            ttl: DEFAULT_TTL,
            user_meta: None,
            user_token: None,
            issued_at: None,
        }
    }

    /// Sets the scope tuple.
    pub fn scope(
        mut self,
        organization_id: impl Into<String>,
        project_id: impl Into<String>,
        environment_id: impl Into<String>,
    ) -> Self {
        self.organization_id = organization_id.into();
        self.project_id = project_id.into();
        self.environment_id = environment_id.into();
        self
    }

    /// Takes the scope tuple, and the user id and user token when the scope has them.
    pub fn with_scope(mut self, scope: &Scope) -> Self {
        self = self.scope(
            scope.organization_id.clone(),
            scope.project_id.clone(),
            scope.environment_id.clone(),
        );
        if let Some(u) = &scope.user_id {
            self.user_id = u.clone();
        }
        if let Some(t) = &scope.user_token {
            self.user_token = Some(t.clone());
        }
        self
    }

    /// Sets the end user.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = user_id.into();
        self
    }

    /// Sets the lifetime (60 s to 7 days; whole seconds are used).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets `userMeta {name, email}`.
    pub fn user_meta(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.user_meta = Some(UserMeta {
            name: name.into(),
            email: email.into(),
        });
        self
    }

    /// Sets the opaque `userToken`.
    pub fn user_token(mut self, token: impl Into<Secret>) -> Self {
        self.user_token = Some(token.into());
        self
    }

    /// Fixes the issue time (tests, clock-skewed environments).
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// Mints the token; same as [`mint_session_token`].
    pub fn mint(&self) -> Result<String, MintError> {
        mint_session_token(self)
    }
}

fn require(value: &str, claim: &'static str) -> Result<(), MintError> {
    if value.trim().is_empty() {
        Err(MintError::Blank(claim))
    } else {
        Ok(())
    }
}

/// Mints a compact HS256 session token (docs/wire.md §1.2).
///
/// Claims: `organizationId, projectId, environmentId, userId, entityId, iat, exp`
/// (epoch seconds), plus `userMeta` and `userToken` when set. No `iss`, `aud` or `sub`.
pub fn mint_session_token(options: &MintOptions) -> Result<String, MintError> {
    let secret = options.secret.expose();
    let got = secret.chars().count();
    if got < MIN_SECRET_CHARS {
        return Err(MintError::SecretTooShort {
            min: MIN_SECRET_CHARS,
            got,
        });
    }
    require(&options.entity_id, "entityId")?;
    require(&options.organization_id, "organizationId")?;
    require(&options.project_id, "projectId")?;
    require(&options.environment_id, "environmentId")?;
    require(&options.user_id, "userId")?;
    let ttl = options.ttl.as_secs();
    if !(MIN_TTL.as_secs()..=MAX_TTL.as_secs()).contains(&ttl) {
        return Err(MintError::TtlOutOfRange { got_secs: ttl });
    }
    let iat = options
        .issued_at
        .unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .map_err(|_| MintError::Clock)?
        .as_secs();
    let exp = iat.checked_add(ttl).ok_or(MintError::Clock)?;
    if i64::try_from(exp).is_err() {
        return Err(MintError::Clock);
    }

    let mut claims = Map::new();
    claims.insert("organizationId".into(), json!(options.organization_id));
    claims.insert("projectId".into(), json!(options.project_id));
    claims.insert("environmentId".into(), json!(options.environment_id));
    claims.insert("userId".into(), json!(options.user_id));
    claims.insert("entityId".into(), json!(options.entity_id));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    if let Some(m) = &options.user_meta {
        claims.insert("userMeta".into(), json!({"name": m.name, "email": m.email}));
    }
    if let Some(t) = &options.user_token {
        claims.insert("userToken".into(), json!(t.expose()));
    }
    let payload = Value::Object(claims).to_string();

    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|_| {
        MintError::SecretTooShort {
            min: MIN_SECRET_CHARS,
            got,
        }
    })?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    fn base() -> MintOptions {
        MintOptions::new(SECRET, "ent_1")
            .scope("org", "proj", "env")
            .user_id("user")
            .issued_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn decode(part: &str) -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn token_has_the_fixed_header_claims_and_a_valid_signature() {
        let token = base().mint().expect("mint");
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).expect("header"),
            HEADER.as_bytes()
        );
        let claims = decode(parts[1]);
        assert_eq!(
            claims,
            json!({"organizationId": "org", "projectId": "proj", "environmentId": "env",
                   "userId": "user", "entityId": "ent_1", "iat": 1_700_000_000u64, "exp": 1_700_003_600u64})
        );
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("sig"))
            .expect("signature verifies");
    }

    #[test]
    fn optional_claims_only_when_set() {
        let token = base()
            .user_meta("Ada", "ada@example.com")
            .user_token("opaque-123")
            .mint()
            .expect("mint");
        let claims = decode(token.split('.').nth(1).expect("payload"));
        assert_eq!(
            claims["userMeta"],
            json!({"name": "Ada", "email": "ada@example.com"})
        );
        assert_eq!(claims["userToken"], "opaque-123");
        for absent in ["iss", "aud", "sub"] {
            assert!(claims.get(absent).is_none());
        }
    }

    #[test]
    fn ttl_bounds() {
        for (secs, ok) in [
            (59, false),
            (60, true),
            (3600, true),
            (604_800, true),
            (604_801, false),
            (0, false),
        ] {
            let r = base().ttl(Duration::from_secs(secs)).mint();
            assert_eq!(r.is_ok(), ok, "ttl {secs}");
            if !ok {
                assert_eq!(r, Err(MintError::TtlOutOfRange { got_secs: secs }));
            }
        }
        let token = base().ttl(Duration::from_secs(60)).mint().expect("mint");
        let c = decode(token.split('.').nth(1).expect("payload"));
        assert_eq!(
            c["exp"].as_u64().expect("exp") - c["iat"].as_u64().expect("iat"),
            60
        );
    }

    #[test]
    fn secret_length_counts_characters() {
        let short = MintOptions {
            secret: Secret::new("x".repeat(15)),
            ..base()
        };
        assert_eq!(
            short.mint(),
            Err(MintError::SecretTooShort { min: 16, got: 15 })
        );
        // 16 characters, 32 bytes.
        let wide = MintOptions {
            secret: Secret::new("é".repeat(16)),
            ..base()
        };
        assert!(wide.mint().is_ok());
    }

    #[test]
    fn blank_claims_are_named() {
        let cases: [(MintOptions, &str); 5] = [
            (
                MintOptions {
                    entity_id: "  ".into(),
                    ..base()
                },
                "entityId",
            ),
            (base().scope("", "p", "e"), "organizationId"),
            (base().scope("o", " ", "e"), "projectId"),
            (base().scope("o", "p", "\t"), "environmentId"),
            (base().user_id(""), "userId"),
        ];
        for (opts, claim) in cases {
            let err = opts.mint().expect_err(claim);
            assert_eq!(err, MintError::Blank(claim));
            assert!(err.to_string().contains(claim));
        }
    }

    #[test]
    fn secret_never_printed() {
        let secret = "super-secret-value-42";
        let opts = MintOptions::new(secret, "ent").user_token("user-token-value");
        let dbg = format!("{opts:?}");
        assert!(
            !dbg.contains(secret) && !dbg.contains("user-token-value"),
            "{dbg}"
        );
        let err = opts.mint().expect_err("no scope");
        assert!(!format!("{err} {err:?}").contains(secret));
        let short = MintOptions::new("tiny-secret", "ent")
            .mint()
            .expect_err("short");
        assert!(!format!("{short} {short:?}").contains("tiny-secret"));
    }

    #[test]
    fn with_scope_takes_user_and_user_token() {
        let scope = Scope::new("o", "p", "e")
            .with_user_id("u9")
            .with_user_token("tok");
        let token = MintOptions::new(SECRET, "ent")
            .with_scope(&scope)
            .mint()
            .expect("mint");
        let c = decode(token.split('.').nth(1).expect("payload"));
        assert_eq!(
            (c["userId"].as_str(), c["userToken"].as_str()),
            (Some("u9"), Some("tok"))
        );
    }

    #[test]
    fn issue_time_before_epoch_is_refused() {
        let r = base().issued_at(UNIX_EPOCH - Duration::from_secs(1)).mint();
        assert_eq!(r, Err(MintError::Clock));
    }

    #[test]
    fn refusals_convert_to_the_sdk_config_error() {
        let e: crate::Error = MintError::Blank("userId").into();
        assert!(matches!(e, crate::Error::Config(_)));
        assert!(e.message().contains("userId"));
    }
}

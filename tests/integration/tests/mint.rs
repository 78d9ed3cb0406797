//! The `mint` feature against an independent JWT implementation and the test server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use platos_client::mint::{MintError, MintOptions, mint_session_token};
use platos_test_server::TestServer;
use serde_json::{Value, json};

const SECRET: &str = "integration-secret-0123456789";

fn options() -> MintOptions {
    MintOptions::new(SECRET, "ent_it")
        .scope("org_1", "proj_1", "env_1")
        .user_id("user_1")
}

fn verify(token: &str, secret: &str) -> jsonwebtoken::errors::Result<Value> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp"]);
    let key = DecodingKey::from_secret(secret.as_bytes())?;
    jsonwebtoken::decode::<Value>(token, &key, &v).map(|d| d.claims)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn minted_token_verifies_with_jsonwebtoken() {
    let before = now();
    let token = mint_session_token(
        &options()
            .user_meta("Ada Lovelace", "ada@example.com")
            .user_token("opaque-user-token"),
    )
    .expect("mint");
    let after = now();

    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert!(header.kid.is_none() && header.cty.is_none());

    let claims = verify(&token, SECRET).expect("verifies");
    let iat = claims["iat"].as_u64().expect("iat is an integer");
    let exp = claims["exp"].as_u64().expect("exp is an integer");
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} in epoch seconds"
    );
    assert_eq!(exp - iat, 3600, "default lifetime");
    let mut rest = claims.clone();
    if let Value::Object(o) = &mut rest {
        o.remove("iat");
        o.remove("exp");
    }
    assert_eq!(
        rest,
        json!({
            "organizationId": "org_1", "projectId": "proj_1", "environmentId": "env_1",
            "userId": "user_1", "entityId": "ent_it",
            "userMeta": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "userToken": "opaque-user-token"
        })
    );

    assert!(verify(&token, "another-secret-0123456789").is_err());
    let bare = options().mint().expect("mint");
    let claims = verify(&bare, SECRET).expect("verifies");
    assert!(claims.get("userMeta").is_none() && claims.get("userToken").is_none());
}

#[test]
fn lifetime_is_honoured_and_bounded() {
    let token = options()
        .ttl(Duration::from_secs(604_800))
        .mint()
        .expect("7 days");
    let c = verify(&token, SECRET).expect("verifies");
    assert_eq!(
        c["exp"].as_u64().unwrap_or(0) - c["iat"].as_u64().unwrap_or(0),
        604_800
    );
    // An old token is expired for an independent verifier too.
    let old = options()
        .ttl(Duration::from_secs(60))
        .issued_at(SystemTime::now() - Duration::from_secs(3600))
        .mint()
        .expect("mint");
    let err = verify(&old, SECRET).expect_err("expired");
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}

#[test]
fn each_refusal() {
    let cases: Vec<(MintOptions, MintError)> = vec![
        (
            MintOptions::new("short", "ent")
                .scope("o", "p", "e")
                .user_id("u"),
            MintError::SecretTooShort { min: 16, got: 5 },
        ),
        (
            MintOptions::new(SECRET, " ")
                .scope("o", "p", "e")
                .user_id("u"),
            MintError::Blank("entityId"),
        ),
        (
            options().scope("", "p", "e"),
            MintError::Blank("organizationId"),
        ),
        (options().scope("o", "", "e"), MintError::Blank("projectId")),
        (
            options().scope("o", "p", " "),
            MintError::Blank("environmentId"),
        ),
        (options().user_id("  "), MintError::Blank("userId")),
        (
            options().ttl(Duration::from_secs(59)),
            MintError::TtlOutOfRange { got_secs: 59 },
        ),
        (
            options().ttl(Duration::from_secs(604_801)),
            MintError::TtlOutOfRange { got_secs: 604_801 },
        ),
    ];
    for (opts, want) in cases {
        let got = mint_session_token(&opts).expect_err("refused");
        assert_eq!(got, want);
        let shown = format!("{got} {got:?} {opts:?}");
        assert!(!shown.contains(SECRET), "secret leaked: {shown}");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn threads_status(server: &TestServer, token: &str) -> u16 {
    http()
        .get(format!("{}/api/v1/agent/threads", server.base_url()))
        .header("X-Platos-Session-Token", token)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn test_server_accepts_minted_tokens_and_refuses_bad_ones() {
    let server = TestServer::start().await.expect("server");
    let scope = server.scope().clone();
    let good = MintOptions::new(server.secret(), server.entity_id())
        .scope(
            &scope.organization_id,
            &scope.project_id,
            &scope.environment_id,
        )
        .user_id(server.user_id());

    let token = good.mint().expect("mint");
    let r = http()
        .get(format!("{}/api/v1/agent/threads", server.base_url()))
        .header("X-Platos-Session-Token", &token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["threads"][0]["id"], platos_test_server::SEED_THREAD);

    let mut other = good.clone();
    other.secret = "a-different-secret-0123456789".into();
    let other_secret = other.mint().expect("mint");
    assert_eq!(threads_status(&server, &other_secret).await, 401);

    let expired = good
        .clone()
        .ttl(Duration::from_secs(60))
        .issued_at(SystemTime::now() - Duration::from_secs(120))
        .mint()
        .expect("mint");
    assert_eq!(threads_status(&server, &expired).await, 401);

    let from_the_future = good
        .clone()
        .issued_at(SystemTime::now() + Duration::from_secs(300))
        .mint()
        .expect("mint");
    assert_eq!(threads_status(&server, &from_the_future).await, 401);

    let mut other = good;
    other.entity_id = "ent_unknown".into();
    let other_entity = other.mint().expect("mint");
    assert_eq!(threads_status(&server, &other_entity).await, 401);
}

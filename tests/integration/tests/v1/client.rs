//! The generated V1 REST calls against the test server: idempotency keys by
//! class (minted once per call and reused on every retry, the caller's own,
//! a factory's), replays visible on the answer, the V1 error envelope in the
//! one error, 429 retried, cursor paging, and refusals before sending.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::TryStreamExt;
use platos_client::v1::{PolicyState, TokenTier, V1Client};
use platos_client::{Error, RetryConfig};
use platos_test_server::{RestFault, SEED_POLICY, TestServer};

fn client(server: &TestServer) -> V1Client {
    V1Client::builder()
        .base_url(server.base_url())
        .operator_token(server.operator_token())
        .retry(fast_retry())
        .build()
        .expect("client")
}

fn fast_retry() -> RetryConfig {
    RetryConfig::default()
        .with_delays(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(5),
        )
        .with_jitter(0.0)
}

fn env_id(server: &TestServer) -> String {
    server.scope().environment_id.clone()
}

/// The requests the server recorded for paths containing `part`.
fn requests(server: &TestServer, part: &str) -> Vec<platos_test_server::RecordedRequest> {
    server
        .recorder()
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(part))
        .collect()
}

#[tokio::test]
async fn a_required_mint_keeps_one_key_across_retries_and_replays_on_the_same_key() {
    let server = TestServer::start().await.unwrap();
    let v1 = client(&server);
    let env = env_id(&server);
    // Two outages, then the mint goes through: three tries, one key.
    server
        .faults()
        .fail_next_rest(RestFault::shutting_down(0).times(2));
    let minted = v1
        .mcp_platform_tokens()
        .mint(&env, "ci", ["tools:read"], TokenTier::Scope)
        .ttl_seconds(3600)
        .await
        .unwrap();
    assert!(!minted.replayed());
    let token = minted
        .body()
        .data
        .token
        .clone()
        .expect("the one-time secret");
    let tries = requests(&server, "/mcp/platform/tokens");
    assert_eq!(tries.len(), 3);
    let keys: Vec<_> = tries.iter().map(|r| r.header("idempotency-key")).collect();
    assert!(keys[0].is_some_and(|k| !k.is_empty()));
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");

    // The caller's own key: the second call is a replay with the same body,
    // and nothing is minted twice.
    let first = v1
        .mcp_platform_tokens()
        .mint(&env, "deploy", ["tools:write"], TokenTier::Admin)
        .idempotency_key("deploy-2026-12-02")
        .await
        .unwrap();
    let again = v1
        .mcp_platform_tokens()
        .mint(&env, "deploy", ["tools:write"], TokenTier::Admin)
        .idempotency_key("deploy-2026-12-02")
        .await
        .unwrap();
    assert!(!first.replayed());
    assert!(again.replayed());
    assert_eq!(first.body().data.token_id, again.body().data.token_id);
    let listed = v1.mcp_platform_tokens().list(&env).await.unwrap();
    let deploys = listed
        .body()
        .data
        .iter()
        .filter(|t| t.label.as_deref() == Some("deploy"))
        .count();
    assert_eq!(deploys, 1);
    assert_ne!(token, first.body().data.token.clone().unwrap());
}

#[tokio::test]
async fn a_key_factory_names_each_call_and_exempt_calls_carry_none() {
    let server = TestServer::start().await.unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let v1 = V1Client::builder()
        .base_url(server.base_url())
        .operator_token(server.operator_token())
        .idempotency_key(move |op| {
            format!("job-42.{op}.{}", counter.fetch_add(1, Ordering::SeqCst))
        })
        .build()
        .unwrap();
    let env = env_id(&server);
    let policy = v1
        .mcp_organization_policies()
        .set(&env, "fs.*", PolicyState::Block)
        .await
        .unwrap();
    assert_eq!(policy.body().data.pattern.as_deref(), Some("fs.*"));
    let set = requests(&server, "/policies");
    assert_eq!(
        set[0].header("idempotency-key"),
        Some("job-42.mcp_organization_policies_set.0")
    );

    // `exempt` (revoke) and `not-applicable` (list) send no key.
    let minted = v1
        .mcp_platform_tokens()
        .mint(&env, "tmp", ["tools:read"], TokenTier::Scope)
        .await
        .unwrap();
    let id = minted.body().data.token_id.clone();
    let revoked = v1.mcp_platform_tokens().revoke(&id, &env).await.unwrap();
    assert_eq!(revoked.body().data.newly_revoked, Some(true));
    let revoke = requests(&server, "/revoke");
    assert_eq!(revoke[0].header("idempotency-key"), None);
    assert_eq!(n.load(Ordering::SeqCst), 2, "set + mint asked the factory");

    // A key the server's alphabet refuses is not sent at all.
    let bad = V1Client::builder()
        .base_url(server.base_url())
        .operator_token(server.operator_token())
        .idempotency_key(|_| "has space".into())
        .build()
        .unwrap();
    let before = server.recorder().requests().len();
    let e = bad
        .organizations()
        .create("Acme", "acme")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(server.recorder().requests().len(), before);
}

#[tokio::test]
async fn refusals_carry_the_v1_envelope_and_rate_limits_are_retried() {
    let server = TestServer::start().await.unwrap();
    let v1 = client(&server);
    let env = env_id(&server);

    let e = v1
        .mcp_platform_tokens()
        .revoke("tok_missing", &env)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let refusal = e.refusal().expect("a V1 envelope");
    assert!(!refusal.error_id.is_empty());
    assert_eq!(e.code(), Some(refusal.code.as_str()));

    let e = v1
        .organizations()
        .create("", "Not A Slug")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation(_)), "{e:?}");
    let fields = e.refusal().map(|r| r.fields.len()).unwrap_or(0);
    assert!(fields >= 1, "{e:?}");

    // 429 is retried (it is not a refusal), then the call goes through.
    server
        .faults()
        .fail_next_rest(RestFault::rate_limited(0).v1_only().times(1));
    let removed = v1
        .mcp_organization_policies()
        .remove(&env, SEED_POLICY)
        .await
        .unwrap();
    assert_eq!(removed.body().data.deleted, Some(true));
    assert_eq!(requests(&server, "/policies/").len(), 2, "429, then ok");

    // An empty path parameter is refused before anything is sent.
    let before = server.recorder().requests().len();
    let e = v1.organization_members().list("").await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(server.recorder().requests().len(), before);

    // Without an operator credential the server answers 401, read as auth.
    let anonymous = V1Client::builder()
        .base_url(server.base_url())
        .build()
        .unwrap();
    let e = anonymous.organizations().list().await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert_eq!(e.code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn collections_page_by_cursor_and_items_come_whole() {
    let server = TestServer::start().await.unwrap();
    let v1 = client(&server);
    let env = env_id(&server);
    let first = v1
        .environment_end_users()
        .list(&env)
        .limit(2)
        .await
        .unwrap();
    assert_eq!(first.body().data.len(), 2);
    assert_eq!(first.body().page.has_more, Some(true));
    let all: Vec<_> = v1
        .environment_end_users()
        .list(&env)
        .limit(2)
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 5, "every seeded end user, two a page");
    let pages = requests(&server, "/end-users");
    assert_eq!(pages.len(), 1 + 3);
    assert!(
        pages[2]
            .query
            .as_deref()
            .is_some_and(|q| q.contains("cursor="))
    );

    let orgs = v1.organizations().list().await.unwrap();
    assert!(!orgs.body().data.is_empty());
    let session = v1.identity_session().get().await.unwrap();
    assert!(session.body().meta.contract_version.is_some());
}

/// Three slugs would be easy to swap positionally: they are setters, and a
/// call without one is refused by name before anything is sent.
#[tokio::test]
async fn a_missing_required_setter_is_refused_unsent() {
    let server = TestServer::builder().start().await.expect("server");
    let v1 = client(&server);
    let before = requests(&server, "/by-slugs").len();
    let e = v1
        .environment_scope()
        .resolve()
        .organization_slug("acme")
        .project_slug("web")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.message().contains("environment_slug"), "{e}");
    assert_eq!(requests(&server, "/by-slugs").len(), before, "nothing sent");
}

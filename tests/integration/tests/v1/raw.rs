//! `client.raw(method, path)` and `V1Client::raw`: any route through the
//! client's own transport (auth, retries, idempotency keys, typed errors).

use platos_client::v1::V1Client;
use platos_client::{Error, PlatosClient, RetryConfig};
use platos_test_server::{RestFault, SEED_THREAD, TestServer};
use serde_json::json;

fn fast_retry() -> RetryConfig {
    RetryConfig::default()
        .with_delays(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(5),
        )
        .with_jitter(0.0)
}

fn agent_client(server: &TestServer) -> PlatosClient {
    PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .retry(fast_retry())
        .build()
        .expect("client")
}

#[tokio::test]
async fn raw_fills_the_template_and_sends_the_session_token() {
    let server = TestServer::start().await.unwrap();
    let client = agent_client(&server);
    let thread = client
        .raw("GET", "/api/v1/agent/threads/{threadId}")
        .param("threadId", SEED_THREAD)
        .send()
        .await
        .unwrap();
    assert_eq!(thread["id"], SEED_THREAD);

    // A value holding `/` stays one segment: this thread does not exist.
    let err = client
        .raw("GET", "/api/v1/agent/threads/{threadId}")
        .param("threadId", "a/b")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let sent = server.recorder().requests_to("/threads/a%2Fb");
    assert_eq!(sent.len(), 1, "{:?}", server.recorder().requests());
    assert!(sent[0].header("x-platos-session-token").is_some());

    // An unfilled parameter is refused before anything is sent.
    let before = server.recorder().requests().len();
    let err = client
        .raw("GET", "/api/v1/agent/threads/{threadId}")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(server.recorder().requests().len(), before);
}

#[tokio::test]
async fn a_raw_post_keeps_one_idempotency_key_across_retries() {
    let server = TestServer::start().await.unwrap();
    let client = agent_client(&server);
    server.faults().fail_next_rest(RestFault::unavailable());
    let thread = client
        .raw("POST", "/api/v1/agent/threads")
        .operation("threads_create")
        .query("unused", "a b")
        .body(json!({"agentId": "agent_support"}))
        .send()
        .await
        .unwrap();
    assert_eq!(thread["agentId"], "agent_support");
    let tries = server.recorder().requests_to("/api/v1/agent/threads");
    assert_eq!(tries.len(), 2, "{tries:?}");
    let keys: Vec<_> = tries.iter().map(|r| r.header("idempotency-key")).collect();
    assert!(keys[0].is_some() && keys[0] == keys[1], "{keys:?}");
    assert_eq!(tries[1].query.as_deref(), Some("unused=a%20b"));
}

#[tokio::test]
async fn v1_raw_writes_carry_a_key_and_reads_do_not() {
    let server = TestServer::start().await.unwrap();
    let v1 = V1Client::builder()
        .base_url(server.base_url())
        .operator_token(server.operator_token())
        .build()
        .unwrap();
    // A `required` route: refused without a key, so this proves one was sent.
    let minted = v1
        .raw("POST", "/mcp/platform/tokens")
        .operation("mcp_platform_tokens_mint")
        .body(json!({
            "environmentId": server.scope().environment_id,
            "name": "ci",
            "permissions": ["tools:read"],
            "tier": "scope",
            "ttlSeconds": 3600,
        }))
        .send()
        .await
        .unwrap();
    assert!(minted["data"]["token"].is_string(), "{minted}");

    let orgs = v1.raw("GET", "/api/v1/organizations").send().await.unwrap();
    assert!(orgs["data"].is_array(), "{orgs}");
    let read = server.recorder().requests_to("/api/v1/organizations");
    assert_eq!(read.len(), 1);
    assert!(read[0].header("idempotency-key").is_none());

    // Refusals are the one error, with the V1 envelope's code.
    let err = v1
        .raw("GET", "/api/v1/organizations/{organizationId}/members")
        .param("organizationId", "org_elsewhere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("TENANCY_NOT_FOUND"), "{err:?}");
}

#[tokio::test]
async fn a_raw_call_sent_once_is_not_retried_and_carries_no_key() {
    let server = TestServer::start().await.unwrap();
    let operator = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.operator_token())
        .retry(fast_retry())
        .build()
        .unwrap();
    server.faults().fail_next_rest(RestFault::unavailable());
    let err = operator
        .raw("POST", "/api/v1/agent/tools/execute")
        .operation("tools_execute")
        .once()
        .body(json!({"tool": "lookup"}))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    let sent = server.recorder().requests_to("/tools/execute");
    assert_eq!(sent.len(), 1, "sent once: {sent:?}");
    assert!(sent[0].header("idempotency-key").is_none());
}

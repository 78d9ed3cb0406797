//! Every lane through a real forward proxy (its own process) that requires
//! Basic credentials, to a host name only the proxy can resolve: a call
//! that succeeds went through the proxy.

use platos_client::{PlatosClient, SendOptions, Transport};
use platos_consumer_check::{CA_PEM, ForwardProxy, PROXY_ONLY_HOST, TlsFront};
use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

#[tokio::test]
async fn rest_and_both_turn_lanes_go_through_an_authenticating_proxy() {
    let server = TestServer::start().await.unwrap();
    let front = TlsFront::start(server.addr(), false).await;
    let proxy = ForwardProxy::start("alice", "s3cret");
    let client = PlatosClient::builder()
        .base_url(format!("https://{PROXY_ONLY_HOST}:{}", front.port))
        .session_token(server.session_token())
        .add_root_certificate(CA_PEM)
        .proxy(proxy.url("alice", "s3cret"))
        .build()
        .unwrap();
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    for transport in [Transport::WebSocket, Transport::Http] {
        let result = client
            .threads()
            .send_with(
                &thread.id,
                "through the proxy",
                SendOptions::default().transport(transport),
            )
            .collect_turn()
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        assert!(!result.text.is_empty());
    }
    let tunnel = format!("connect {PROXY_ONLY_HOST}:{} 200", front.port);
    assert!(proxy.count(&tunnel) >= 2, "{:?}", proxy.wait_for(|_| true));
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_is_a_typed_error_naming_it_not_a_retry_loop() {
    let server = TestServer::start().await.unwrap();
    let front = TlsFront::start(server.addr(), false).await;
    let proxy = ForwardProxy::start("alice", "s3cret");
    for url in [
        format!("http://127.0.0.1:{}", proxy.port),
        proxy.url("alice", "wrong"),
    ] {
        let client = PlatosClient::builder()
            .base_url(format!("https://{PROXY_ONLY_HOST}:{}", front.port))
            .session_token(server.session_token())
            .add_root_certificate(CA_PEM)
            .proxy(url)
            .build()
            .unwrap();
        let before = proxy.count("connect ");

        let e = client
            .threads()
            .create(SEED_AGENT_SUPPORT)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "proxy", "{e}");
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .contains(&format!("proxy http://127.0.0.1:{}", proxy.port)),
            "the REST error names the proxy: {e}"
        );
        assert!(!e.to_string().contains("wrong"), "credentials leaked: {e}");

        let e = client
            .threads()
            .send_with(
                "t",
                "hi",
                SendOptions::default().transport(Transport::WebSocket),
            )
            .collect_turn()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "proxy", "{e}");
        assert!(
            e.to_string().contains(&format!("127.0.0.1:{}", proxy.port)),
            "{e}"
        );
        assert!(e.to_string().contains("407"), "{e}");
        assert!(!e.to_string().contains("wrong"), "credentials leaked: {e}");

        // One tunnel asked per call: neither lane retried or reconnected.
        let asked = proxy
            .wait_for(|l| l.iter().filter(|l| l.starts_with("connect ")).count() >= before + 2);
        let refused = asked
            .iter()
            .filter(|l| l.starts_with("connect ") && l.ends_with(" 407"))
            .count();
        assert_eq!(proxy.count("connect "), before + 2, "{asked:?}");
        assert!(refused >= 2, "{asked:?}");
    }
}

/// Over plain HTTP the proxy forwards the request itself (no tunnel), so its
/// 407 arrives as an answer: still the proxy's error, naming it, not retried
/// and not mistaken for Platos refusing the caller.
#[tokio::test]
async fn a_407_answer_to_a_plain_http_request_is_the_proxys_error() {
    let server = TestServer::start().await.unwrap();
    let proxy = ForwardProxy::start("alice", "s3cret");
    let client = PlatosClient::builder()
        .base_url(format!("http://{PROXY_ONLY_HOST}:{}", server.addr().port()))
        .session_token(server.session_token())
        .proxy(proxy.url("alice", "wrong"))
        .build()
        .unwrap();
    let e = client.agents().list().await.unwrap_err();
    assert_eq!(e.kind(), "proxy", "{e}");
    assert!(e.to_string().contains("407"), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("proxy http://127.0.0.1:{}", proxy.port)),
        "{e}"
    );
    assert!(!e.to_string().contains("wrong"), "credentials leaked: {e}");
    // Asked once: a proxy's refusal is not retried.
    let seen = proxy.wait_for(|l| l.iter().any(|l| l.starts_with("request ")));
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("request ")).count(),
        1,
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.ends_with(" 407")), "{seen:?}");
}

#[test]
fn a_malformed_proxy_url_fails_build_without_echoing_it() {
    for url in ["http://user:hunter2@", "ftp://user:hunter2@proxy:21", "::"] {
        let e = PlatosClient::builder()
            .base_url("https://localhost:1")
            .session_token("t")
            .proxy(url)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), "config", "{url}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

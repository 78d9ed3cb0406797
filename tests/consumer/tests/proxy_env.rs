//! The proxy variables, as reqwest reads them, on every lane. One test in
//! its own process: it sets the environment before any client is built.

use platos_client::{PlatosClient, SendOptions, Transport};
use platos_consumer_check::{CA_PEM, ForwardProxy, PROXY_ONLY_HOST, TlsFront, both_lanes_fail};
use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

#[tokio::test]
async fn https_proxy_routes_every_lane_and_no_proxy_or_the_builder_skip_it() {
    let server = TestServer::start().await.unwrap();
    let front = TlsFront::start(server.addr(), false).await;
    let proxy = ForwardProxy::start("bob", "pa55");
    // SAFETY: set before any thread reads the environment (the runtime's
    // workers and the test server read none of these variables).
    unsafe {
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            std::env::remove_var(name);
        }
        std::env::set_var("HTTPS_PROXY", proxy.url("bob", "pa55"));
    }
    let base_url = format!("https://{PROXY_ONLY_HOST}:{}", front.port);
    let builder = || {
        PlatosClient::builder()
            .base_url(&base_url)
            .session_token(server.session_token())
            .add_root_certificate(CA_PEM)
    };

    let client = builder().build().unwrap();
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    for transport in [Transport::WebSocket, Transport::Http] {
        let result = client
            .threads()
            .send_with(
                &thread.id,
                "via HTTPS_PROXY",
                SendOptions::default().transport(transport),
            )
            .collect_turn()
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        assert!(!result.text.is_empty());
    }

    // `.no_proxy()` dials direct: the name does not resolve outside the proxy.
    let direct = builder().no_proxy().build().unwrap();
    for e in both_lanes_fail(&direct, &thread.id).await {
        assert_eq!(e.kind(), "network", "{e}");
    }

    // NO_PROXY exempts the host on both lanes.
    unsafe { std::env::set_var("NO_PROXY", PROXY_ONLY_HOST) };
    let exempt = builder().build().unwrap();
    let before = proxy.count("connect ");
    for e in both_lanes_fail(&exempt, &thread.id).await {
        assert_eq!(e.kind(), "network", "{e}");
    }
    assert_eq!(proxy.count("connect "), before, "NO_PROXY was not honoured");
}

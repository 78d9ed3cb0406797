//! The SDK inside an application that uses reqwest and rustls itself: the
//! host's TLS keeps working, and the SDK speaks real TLS on every lane.

use platos_client::{Event, PlatosClient, SendOptions, Transport};
use platos_consumer_check::{CA_PEM, CLIENT_KEY, CLIENT_PEM, TlsFront};
use platos_test_server::TestServer;

async fn turn(client: &PlatosClient, transport: Transport) -> platos_client::TurnResult {
    let thread = client
        .threads()
        .create(platos_test_server::SEED_AGENT_SUPPORT)
        .await
        .expect("thread over TLS");
    client
        .threads()
        .send_with(
            &thread.id,
            "hello over TLS",
            SendOptions::default().transport(transport),
        )
        .collect_turn()
        .await
        .expect("turn over TLS")
}

/// One test, in order, so nothing else in this process touches the
/// process-wide provider before the checks read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_streams_over_tls_and_leaves_the_hosts_tls_alone() {
    let server = TestServer::start().await.unwrap();
    let front = TlsFront::start(server.addr(), false).await;
    let client = PlatosClient::builder()
        .base_url(format!("https://localhost:{}", front.port))
        .session_token(server.session_token())
        .add_root_certificate(CA_PEM)
        .build()
        .unwrap();

    for transport in [Transport::WebSocket, Transport::Http] {
        let result = turn(&client, transport).await;
        assert!(!result.text.is_empty(), "{transport:?}: no text");
        assert!(
            result.events.iter().any(|e| matches!(e, Event::Token(_))),
            "{transport:?}: no token streamed"
        );
    }

    // The SDK named its provider; it never installed a process default.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());

    // The host's own TLS: rustls picks its provider from its crate features
    // (this panicked when the SDK turned on a second one), and reqwest's
    // default client works and trusts what the host tells it.
    let _config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let _plain = reqwest::Client::new();
    let host = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(CA_PEM).unwrap()])
        .build()
        .unwrap();
    let status = host
        .get(format!(
            "https://localhost:{}/api/v1/agent/threads",
            front.port
        ))
        .send()
        .await
        .expect("the host's reqwest over TLS")
        .status();
    assert_eq!(status.as_u16(), 401, "the server answered the host's call");
}

#[tokio::test]
async fn a_server_the_roots_do_not_vouch_for_is_refused_on_every_lane() {
    let server = TestServer::start().await.unwrap();
    let front = TlsFront::start(server.addr(), false).await;
    // Platform roots only: the throwaway CA is not among them.
    let client = PlatosClient::builder()
        .base_url(format!("https://localhost:{}", front.port))
        .session_token(server.session_token())
        .build()
        .unwrap();
    let e = client
        .threads()
        .create(platos_test_server::SEED_AGENT_SUPPORT)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "network", "{e}");
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
    assert_eq!(e.kind(), "network", "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test]
async fn a_client_identity_is_presented_on_every_lane() {
    let server = TestServer::start().await.unwrap();
    let front = TlsFront::start(server.addr(), true).await;
    let builder = || {
        PlatosClient::builder()
            .base_url(format!("https://localhost:{}", front.port))
            .session_token(server.session_token())
            .add_root_certificate(CA_PEM)
    };
    let with_identity = builder()
        .client_identity(CLIENT_PEM, String::from_utf8(CLIENT_KEY.to_vec()).unwrap())
        .build()
        .unwrap();
    for transport in [Transport::WebSocket, Transport::Http] {
        assert!(!turn(&with_identity, transport).await.text.is_empty());
    }
    let without = builder().build().unwrap();
    let e = without
        .threads()
        .create(platos_test_server::SEED_AGENT_SUPPORT)
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), "network" | "timeout"), "{e}");
}

#[test]
fn bad_certificates_and_keys_fail_build_without_echoing_the_key() {
    let builder = || {
        PlatosClient::builder()
            .base_url("https://localhost:1")
            .session_token("t")
    };
    let e = builder()
        .add_root_certificate(
            &b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"[..],
        )
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), "config", "{e}");
    let e = builder()
        .client_identity(
            CLIENT_PEM,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
        )
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), "config", "{e}");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    let shown = format!(
        "{:?}",
        builder().client_identity(CLIENT_PEM, String::from_utf8(CLIENT_KEY.to_vec()).unwrap())
    );
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

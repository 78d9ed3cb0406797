//! What the consumer checks share: a TLS front for the test server (real
//! TLS on a real socket, the throwaway CA of tests/integration/src/tls) and
//! the forward proxy process (tests/node/forward_proxy.mjs).
//!
//! The crate itself is an ordinary application's dependency set: reqwest,
//! rustls and tokio at their defaults, plus platos-client. Helpers use only
//! explicit providers (`builder_with_provider`), so any process-wide
//! default seen by a test was installed by someone else.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// The throwaway test CA: `localhost`, `127.0.0.1` and `platos.invalid`.
pub const CA_PEM: &[u8] = include_bytes!("../../integration/src/tls/ca.pem");
const SERVER_PEM: &[u8] = include_bytes!("../../integration/src/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../integration/src/tls/server.key");
/// A client certificate the CA signed, for mutual TLS.
pub const CLIENT_PEM: &[u8] = include_bytes!("../../integration/src/tls/client.pem");
/// Its private key (PKCS#8 PEM).
pub const CLIENT_KEY: &[u8] = include_bytes!("../../integration/src/tls/client.key");

/// A name nothing resolves but the forward proxy (RFC 2606 `.invalid`).
pub const PROXY_ONLY_HOST: &str = "platos.invalid";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Terminates TLS on a loopback port and relays each connection, bytes as
/// they come, to `backend` (the test server's plain port).
pub struct TlsFront {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// `client_auth`: require a client certificate the test CA signed.
    pub async fn start(backend: SocketAddr, client_auth: bool) -> TlsFront {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(SERVER_PEM)
            .collect::<Result<_, _>>()
            .expect("server cert");
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(CA_PEM) {
                roots.add(ca.expect("CA")).expect("CA root");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(certs, key).expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake just ends this connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { port, task }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The forward proxy (npm `proxy` in a Node process) with Basic auth and
/// [`PROXY_ONLY_HOST`] resolving to 127.0.0.1 inside it only. Killed on drop.
pub struct ForwardProxy {
    pub port: u16,
    child: Child,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl ForwardProxy {
    pub fn start(user: &str, password: &str) -> ForwardProxy {
        let script: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "..",
            "node",
            "forward_proxy.mjs",
        ]
        .iter()
        .collect();
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--user", user, "--password", password])
            .args(["--host", &format!("{PROXY_ONLY_HOST}=127.0.0.1")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (the forward proxy needs `npm ci --prefix tests/node`)");
        let stdout = child.stdout.take().expect("stdout");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let (lines, changed) = &*sink;
                lines.lock().expect("log").push(line);
                changed.notify_all();
            }
        });
        let mut proxy = ForwardProxy {
            port: 0,
            child,
            log,
        };
        let ready = proxy.wait_for(|lines| lines.iter().any(|l| l.starts_with("listening ")));
        let port = ready
            .iter()
            .find_map(|l| l.strip_prefix("listening "))
            .and_then(|p| p.trim().parse().ok())
            .expect("the proxy printed its port");
        proxy.port = port;
        proxy
    }

    /// `http://user:password@127.0.0.1:port`
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The proxy's log once `done` holds for it (woken by each new line;
    /// a guard of 30 s fails the test rather than hanging it).
    pub fn wait_for(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let (lines, changed) = &*self.log;
        let guard = lines.lock().expect("log");
        let (guard, timeout) = changed
            .wait_timeout_while(guard, Duration::from_secs(30), |l| !done(l))
            .expect("log");
        assert!(
            !timeout.timed_out(),
            "proxy log never matched: {:?}",
            *guard
        );
        guard.clone()
    }

    /// How many log lines start with `prefix` now.
    pub fn count(&self, prefix: &str) -> usize {
        let (lines, _) = &*self.log;
        lines
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// REST (`threads().create`) and a WebSocket turn (no reconnects) through
/// `client` both fail; their errors, in that order.
pub async fn both_lanes_fail(
    client: &platos_client::PlatosClient,
    thread_id: &str,
) -> [platos_client::Error; 2] {
    let rest = client
        .threads()
        .create(platos_test_server::SEED_AGENT_SUPPORT)
        .await
        .expect_err("REST call succeeded");
    let socket = client
        .threads()
        .send_with(
            thread_id,
            "hi",
            platos_client::SendOptions::default()
                .transport(platos_client::Transport::WebSocket)
                .reconnect_attempts(0),
        )
        .collect_turn()
        .await
        .expect_err("socket turn succeeded");
    [rest, socket]
}

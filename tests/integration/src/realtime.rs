//! Shared helpers of the realtime suites: a raw, scripted Engine.IO server
//! (for what a well-behaved Socket.IO server never does: malformed frames,
//! oversize messages, ping silence, CONNECT_ERROR), the Node socket.io
//! reference server launcher, and small stream helpers.

// The upgrade callback's signature is tungstenite's.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use platos_client::{Error, PlatosClient, ReconnectConfig};
use platos_events::Event;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Upper bound for anything a test waits on; far above what a pass needs.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A client for `base_url` with fast reconnects (1–20 ms, no jitter).
pub fn client(base_url: &str, token: &str) -> PlatosClient {
    PlatosClient::builder()
        .base_url(base_url)
        .session_token(token)
        .reconnect(fast_reconnect())
        .build()
        .expect("client config")
}

pub fn fast_reconnect() -> ReconnectConfig {
    ReconnectConfig::default()
        .with_delays(Duration::from_millis(1), Duration::from_millis(20))
        .with_jitter(0.0)
}

/// Reads a stream to its end (bounded by [`DEADLINE`]).
pub async fn collect<S>(stream: S) -> Vec<Result<Event, Error>>
where
    S: futures::Stream<Item = Result<Event, Error>>,
{
    tokio::time::timeout(DEADLINE, stream.collect::<Vec<_>>())
        .await
        .expect("stream did not end in time")
}

/// The `type` of each item, `Err(<code or class>)` for errors.
pub fn kinds(items: &[Result<Event, Error>]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Ok(event) => event.kind().to_owned(),
            Err(e) => format!("Err({})", e.code().unwrap_or(e.kind())),
        })
        .collect()
}

/// The next item, bounded by [`DEADLINE`].
pub async fn next<S>(stream: &mut S) -> Option<Result<Event, Error>>
where
    S: futures::Stream<Item = Result<Event, Error>> + Unpin,
{
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("no stream item in time")
}

// ---------------------------------------------------------------------------
// Raw scripted Engine.IO server
// ---------------------------------------------------------------------------

/// The byte stream under a raw connection: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The test CA (`common/tls`, a throwaway made for these tests) and the
/// 127.0.0.1 certificate it signed.
pub const TEST_CA_PEM: &[u8] = include_bytes!("tls/ca.pem");
const SERVER_CERT_PEM: &[u8] = include_bytes!("tls/server.pem");
const SERVER_KEY_PEM: &[u8] = include_bytes!("tls/server.key");

/// A WebSocket server whose every connection is handed to a script that
/// speaks Engine.IO text frames by hand.
pub struct RawServer {
    pub addr: std::net::SocketAddr,
    /// TCP connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    tls: bool,
}

impl RawServer {
    /// Serves connections, numbered from 0, with `script`.
    pub async fn start<F, Fut>(script: F) -> RawServer
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::serve(script, None).await
    }

    /// Like [`start`](Self::start), over TLS with the test certificate
    /// (`wss://`, base URL `https://127.0.0.1:PORT`).
    pub async fn start_tls<F, Fut>(script: F) -> RawServer
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT_PEM)
            .collect::<Result<Vec<_>, _>>()
            .expect("test certificate");
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM).expect("test key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        Self::serve(
            script,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn serve<F, Fut>(script: F, tls: Option<tokio_rustls::TlsAcceptor>) -> RawServer
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script = Arc::new(script);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let script = script.clone();
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        None => Box::new(tcp),
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => Box::new(stream),
                            Err(_) => return,
                        },
                    };
                    if let Some(conn) = RawConn::accept(io, n).await {
                        script(conn).await;
                    }
                });
            }
        });
        RawServer {
            addr,
            accepted,
            task,
            tls: is_tls,
        }
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One accepted connection of a [`RawServer`].
pub struct RawConn {
    pub ws: WebSocketStream<Box<dyn Io>>,
    /// Connection number, from 0.
    pub index: usize,
    /// The upgrade request's path and query.
    pub uri: String,
    /// The upgrade request's headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl RawConn {
    async fn accept(io: Box<dyn Io>, index: usize) -> Option<RawConn> {
        let seen = Arc::new(Mutex::new((String::new(), Vec::new())));
        let s = seen.clone();
        let callback = move |req: &Request, resp: Response| {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            *s.lock().unwrap() = (req.uri().to_string(), headers);
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(io, callback)
            .await
            .ok()?;
        let (uri, headers) = seen.lock().unwrap().clone();
        Some(RawConn {
            ws,
            index,
            uri,
            headers,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sends one text frame; false once the client is gone.
    pub async fn send(&mut self, frame: impl Into<String>) -> bool {
        self.ws.send(Message::text(frame.into())).await.is_ok()
    }

    /// The next text frame from the client; None once it closed.
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(DEADLINE, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends the open packet.
    pub async fn open(&mut self, ping_interval_ms: u64, ping_timeout_ms: u64) {
        let open = json!({
            "sid": format!("sid{}", self.index),
            "upgrades": [],
            "pingInterval": ping_interval_ms,
            "pingTimeout": ping_timeout_ms,
            "maxPayload": 1_000_000,
        });
        self.send(format!("0{open}")).await;
    }

    /// Reads the client's `40/agent,{auth}` (skipping pongs) and returns the
    /// auth payload; panics on anything else.
    pub async fn read_connect(&mut self) -> Value {
        loop {
            let frame = self.recv().await.expect("client closed before connecting");
            if frame.starts_with('3') {
                continue;
            }
            let auth = frame
                .strip_prefix("40/agent,")
                .unwrap_or_else(|| panic!("expected a namespace connect, got {frame:?}"));
            return serde_json::from_str(auth).expect("connect auth is JSON");
        }
    }

    /// The connect ack, then the gateway's `connected` event (its "ready").
    pub async fn ack(&mut self) {
        self.send(format!(r#"40/agent,{{"sid":"ns{}"}}"#, self.index))
            .await;
        self.emit(
            "connected",
            json!({"status": "ok", "socketId": format!("ns{}", self.index)}),
        )
        .await;
    }

    /// Open + connect + ack + `connected`, with the given heartbeat.
    /// Returns the auth payload.
    pub async fn handshake_with(&mut self, ping_interval_ms: u64, ping_timeout_ms: u64) -> Value {
        self.open(ping_interval_ms, ping_timeout_ms).await;
        let auth = self.read_connect().await;
        self.ack().await;
        auth
    }

    /// Handshake with a heartbeat far longer than any test.
    pub async fn handshake(&mut self) -> Value {
        self.handshake_with(60_000, 60_000).await
    }

    /// Reads client frames until an event; returns `(name, payload)`.
    /// Pongs are skipped. None when the client closed first.
    pub async fn next_event(&mut self) -> Option<(String, Value)> {
        loop {
            let frame = self.recv().await?;
            if let Some(body) = frame.strip_prefix("42/agent,") {
                let mut args: Vec<Value> = serde_json::from_str(body).expect("event JSON");
                let name = args.remove(0).as_str().expect("event name").to_owned();
                return Some((name, args.into_iter().next().unwrap_or(Value::Null)));
            }
        }
    }

    /// Reads client frames until the event `name`; panics if the client
    /// closes first.
    pub async fn expect_event(&mut self, name: &str) -> Value {
        loop {
            match self.next_event().await {
                Some((n, v)) if n == name => return v,
                Some(_) => {}
                None => panic!("client closed before sending `{name}`"),
            }
        }
    }

    /// Emits a server event on `/agent`.
    pub async fn emit(&mut self, name: &str, payload: Value) -> bool {
        self.send(format!("42/agent,{}", json!([name, payload])))
            .await
    }

    /// Emits `agent_event` with `payload`.
    pub async fn agent_event(&mut self, payload: Value) -> bool {
        self.emit("agent_event", payload).await
    }

    /// Reads until the client goes away; returns every text frame it sent.
    pub async fn drain(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv().await {
            frames.push(f);
        }
        frames
    }
}

/// A channel a raw server script reports observations on.
pub fn observations<T>() -> (mpsc::UnboundedSender<T>, mpsc::UnboundedReceiver<T>) {
    mpsc::unbounded_channel()
}

// ---------------------------------------------------------------------------
// Node socket.io reference server
// ---------------------------------------------------------------------------

/// The Node socket.io server of tests/node, run as a child process that is
/// killed on drop. Its stdout lines (`RECV <conn> <event> <json>`, …) are
/// collected for assertions.
pub struct NodeServer {
    pub port: u16,
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl NodeServer {
    /// Starts `node tests/node/server.js` with `env`. Fails the test with a
    /// clear message when Node or the npm install is missing.
    pub async fn start(env: &[(&str, &str)]) -> NodeServer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node");
        let server_js = dir.join("server.js");
        assert!(
            dir.join("node_modules/socket.io").is_dir(),
            "tests/node/node_modules is missing: run `npm ci --prefix tests/node` \
             (Node.js 18+ and npm required) before the realtime Node tests"
        );
        let mut command = tokio::process::Command::new("node");
        command
            .arg(&server_js)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "could not start `node` ({e}): the realtime Node tests need Node.js 18+ on PATH \
                 and `npm ci --prefix tests/node`"
            )
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        {
            let lines = lines.clone();
            let notify = notify.clone();
            tokio::spawn(async move {
                let mut port_tx = Some(port_tx);
                let mut reader = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let Some(port) = line.strip_prefix("LISTENING ")
                        && let Some(tx) = port_tx.take()
                    {
                        let _ = tx.send(port.trim().parse::<u16>().unwrap_or(0));
                    }
                    lines.lock().unwrap().push(line);
                    notify.notify_waiters();
                }
            });
        }
        let port = tokio::time::timeout(DEADLINE, port_rx)
            .await
            .expect("the Node server did not print its port in time")
            .expect("the Node server exited before listening");
        assert_ne!(port, 0, "the Node server printed a bad port");
        NodeServer {
            port,
            child,
            lines,
            notify,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// `(connection, payload)` of every `RECV` line for `event`.
    pub fn received(&self, event: &str) -> Vec<(u32, Value)> {
        self.lines()
            .iter()
            .filter_map(|line| {
                let rest = line.strip_prefix("RECV ")?;
                let (conn, rest) = rest.split_once(' ')?;
                let (name, json) = rest.split_once(' ')?;
                (name == event).then(|| {
                    (
                        conn.parse().unwrap_or(0),
                        serde_json::from_str(json).unwrap_or(Value::Null),
                    )
                })
            })
            .collect()
    }

    /// Waits (bounded) until `cond` holds over the output lines.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&NodeServer) -> bool) {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if cond(self) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(DEADLINE, wait).await.is_err() {
            panic!(
                "Node server: {what} did not happen; output:\n{}",
                self.lines().join("\n")
            );
        }
    }
}

impl NodeServer {
    /// Kills the process (as a crash or a deploy does) and waits for it to
    /// be gone, so its port is free for the next one.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A client like [`client`] whose turns are checked `check` after a
/// reconnect that left them silent.
pub fn lost_turn_client(base_url: &str, token: &str, check: Duration) -> PlatosClient {
    PlatosClient::builder()
        .base_url(base_url)
        .session_token(token)
        .reconnect(fast_reconnect())
        .realtime(platos_client::RealtimeConfig::default().turn_check_after_reconnect(check))
        .build()
        .expect("client config")
}

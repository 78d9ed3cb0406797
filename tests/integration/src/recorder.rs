//! A scripted, recording HTTP server for the REST suites (`tests/rest/`).
//!
//! Real HTTP/1.1 over 127.0.0.1: the SDK under test talks to it exactly as it
//! would to Platos. Each test queues the answers it wants ([`Answer`]: status,
//! headers, raw body bytes, an optional delay, or a hang-up without any
//! answer) and reads back every request as it arrived on the wire
//! ([`Recorded`]: method, the path still percent-encoded, the raw query and
//! its decoded pairs, headers, body bytes, and the tokio instant it arrived,
//! which a paused clock makes exact). [`Recorder::wait_for`] awaits "N
//! requests received" without sleeping.
//!
//! Served with hyper directly (the engine under axum) because a hang-up must
//! close the connection before any response, which only a fallible service
//! can do.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the recorder answers one request with.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long (by the tokio clock) before answering.
    pub delay: Option<Duration>,
    /// Close the connection without answering (a transport failure).
    pub hangup: bool,
}

impl Answer {
    /// A JSON answer (`content-type: application/json`).
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Answer::raw(status, serde_json::to_vec(&body).expect("JSON serialises"))
            .header("content-type", "application/json")
    }

    /// A body of raw bytes, sent as is (may be invalid or truncated JSON).
    pub fn raw(status: u16, body: impl Into<Bytes>) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
            hangup: false,
        }
    }

    /// A raw body labelled as JSON (for truncated/invalid JSON).
    pub fn raw_json(status: u16, body: impl Into<Bytes>) -> Self {
        Answer::raw(status, body).header("content-type", "application/json")
    }

    /// A plain-text body.
    pub fn text(status: u16, body: &str) -> Self {
        Answer::raw(status, body.to_owned()).header("content-type", "text/plain")
    }

    /// No body at all.
    pub fn empty(status: u16) -> Self {
        Answer::raw(status, Bytes::new())
    }

    /// Closes the connection without answering.
    pub fn hangup() -> Self {
        Answer {
            hangup: true,
            ..Answer::empty(0)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path exactly as sent (percent-encoding intact).
    pub path: String,
    /// The raw query string (without `?`), when there was one.
    pub raw_query: Option<String>,
    /// The query, form-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased, values as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// When it arrived, by the tokio clock.
    pub at: Instant,
}

impl Recorded {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many times a header was sent.
    pub fn header_count(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(k, _)| *k == name).count()
    }

    /// The body parsed as JSON; `None` when empty.
    pub fn json(&self) -> Option<serde_json::Value> {
        if self.body.is_empty() {
            return None;
        }
        Some(serde_json::from_slice(&self.body).expect("request body is JSON"))
    }
}

type Responder = Box<dyn Fn(&Recorded) -> Answer + Send + Sync>;

struct State {
    queue: Mutex<VecDeque<Answer>>,
    fallback: Mutex<Option<Responder>>,
    seen: Mutex<Vec<Recorded>>,
    count: watch::Sender<usize>,
}

/// The running server. Dropping it stops accepting connections.
pub struct Recorder {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts a recorder on 127.0.0.1 with a free port, in the current runtime.
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            queue: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { handle(state, req).await }
                    });
                    // A hang-up ends the connection with an error; nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder {
            addr,
            state,
            accept,
        }
    }

    /// `http://127.0.0.1:<port>`: the base URL to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues one answer (answers are used in order, one per request).
    pub fn push(&self, answer: Answer) -> &Self {
        self.state
            .queue
            .lock()
            .expect("recorder lock")
            .push_back(answer);
        self
    }

    /// Queues `n` copies of an answer.
    pub fn push_n(&self, n: usize, answer: Answer) -> &Self {
        for _ in 0..n {
            self.push(answer.clone());
        }
        self
    }

    /// Answers computed from the request, used once the queue is empty.
    pub fn respond_with(&self, f: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) {
        *self.state.fallback.lock().expect("recorder lock") = Some(Box::new(f));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.seen.lock().expect("recorder lock").clone()
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        *self.state.count.borrow()
    }

    /// Waits until at least `n` requests were received.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.state.count.subscribe();
        rx.wait_for(|c| *c >= n).await.expect("recorder alive");
    }

    /// The single request received; panics unless there was exactly one.
    pub fn only(&self) -> Recorded {
        let seen = self.requests();
        assert_eq!(seen.len(), 1, "expected exactly one request: {seen:#?}");
        seen.into_iter().next().expect("one request")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let raw_query = parts.uri.query().map(str::to_owned);
    let query = raw_query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        raw_query,
        query,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at,
    };
    let answer = {
        let queued = state.queue.lock().expect("recorder lock").pop_front();
        match queued {
            Some(a) => a,
            None => match &*state.fallback.lock().expect("recorder lock") {
                Some(f) => f(&recorded),
                None => Answer::text(418, "recorder: no answer queued"),
            },
        }
    };
    state.seen.lock().expect("recorder lock").push(recorded);
    state.count.send_modify(|c| *c += 1);

    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    if answer.hangup {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "recorder: scripted hang-up",
        ));
    }
    let mut response = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        response = response.header(k, v);
    }
    Ok(response
        .body(Full::new(answer.body))
        .expect("valid scripted response"))
}

//! A tiny Engine.IO v4 / Socket.IO v5 client over raw WebSocket text frames, so the
//! tests check the framing itself rather than trusting a library.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const T: Duration = Duration::from_secs(5);

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// How a read ended when no text frame came.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A WebSocket close frame arrived.
    CloseFrame,
    /// TCP ended without a close frame.
    Reset,
    /// Nothing arrived in time.
    Timeout,
}

pub struct Eio {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub open: Value,
    /// Answer pings automatically (on by default).
    pub auto_pong: bool,
    pub pings: usize,
}

impl Eio {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Eio {
        let mut req = url.into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                v.parse().expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        let mut e = Eio {
            ws,
            open: Value::Null,
            auto_pong: true,
            pings: 0,
        };
        let first = e.raw(T).await.expect("open packet");
        assert!(
            first.starts_with('0'),
            "first frame must be the open packet: {first}"
        );
        e.open = serde_json::from_str(&first[1..]).expect("open json");
        e
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    /// Next text frame (pings answered and skipped when `auto_pong`).
    pub async fn raw(&mut self, timeout: Duration) -> Result<String, End> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(End::Timeout),
                Ok(None) => return Err(End::Reset),
                Ok(Some(Err(_))) => return Err(End::Reset),
                Ok(Some(Ok(Message::Close(_)))) => return Err(End::CloseFrame),
                Ok(Some(Ok(Message::Text(t)))) => {
                    let t = t.to_string();
                    if t == "2" {
                        self.pings += 1;
                        if self.auto_pong {
                            self.send("3").await;
                            continue;
                        }
                    }
                    return Ok(t);
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends `40<ns>,<auth>` and waits for the ack; returns the sid, or the frame that came instead.
    pub async fn connect_ns(&mut self, ns: &str, auth: Option<Value>) -> Result<String, String> {
        let frame = match auth {
            Some(a) => format!("40{ns},{a}"),
            None => format!("40{ns},"),
        };
        self.send(&frame).await;
        let f = self.raw(T).await.map_err(|e| format!("{e:?}"))?;
        let prefix = format!("40{ns},");
        match f.strip_prefix(&prefix) {
            Some(rest) => {
                let v: Value = serde_json::from_str(rest).map_err(|_| f.clone())?;
                Ok(v["sid"].as_str().unwrap_or_default().to_string())
            }
            None => Err(f),
        }
    }

    pub async fn emit(&mut self, ns: &str, event: &str, payload: Value) {
        self.send(&format!("42{ns},{}", json!([event, payload])))
            .await;
    }

    /// Next EVENT on `ns` as (name, first arg); other frames are returned as `Err`.
    pub async fn event(&mut self, ns: &str) -> Result<(String, Value), String> {
        let f = self.raw(T).await.map_err(|e| format!("{e:?}"))?;
        parse_event(ns, &f).ok_or(f)
    }

    /// Reads events until one named `name` (others collected and returned too).
    pub async fn until(
        &mut self,
        ns: &str,
        pred: impl Fn(&str, &Value) -> bool,
    ) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (n, v) = self.event(ns).await.expect("event");
            let stop = pred(&n, &v);
            seen.push((n, v));
            if stop {
                return seen;
            }
        }
    }

    /// Collects `agent_event` payloads until a `done`.
    pub async fn turn(&mut self, ns: &str) -> Vec<Value> {
        self.until(ns, |n, v| n == "agent_event" && v["type"] == "done")
            .await
            .into_iter()
            .filter(|(n, _)| n == "agent_event")
            .map(|(_, v)| v)
            .collect()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub fn parse_event(ns: &str, f: &str) -> Option<(String, Value)> {
    let rest = f.strip_prefix("42")?;
    let rest = if ns == "/" {
        rest
    } else {
        rest.strip_prefix(ns)?.strip_prefix(',')?
    };
    let arr: Value = serde_json::from_str(rest).ok()?;
    Some((
        arr[0].as_str()?.to_string(),
        arr.get(1).cloned().unwrap_or(Value::Null),
    ))
}

/// REST helper: `method path` with headers, returns (status, headers, json body).
pub async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(String, String)],
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = http().request(method, format!("{base}/api/v1/agent{path}"));
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.expect("send");
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.expect("body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, h, v)
}

pub fn token_headers(token: &str) -> Vec<(String, String)> {
    vec![("x-platos-session-token".into(), token.to_string())]
}

//! The HTTP turn lane (docs/wire.md §8.2): `POST /threads/{threadId}/stream`
//! answered with `text/event-stream`, for networks where a WebSocket upgrade
//! does not get through.
//!
//! One task per turn owns the response: it parses the body with the SDK's
//! one event-stream parser ([`crate::sse`], shared with the V1 reader) and
//! hands each event's JSON to the [`TurnStream`](super::TurnStream) through
//! a bounded channel, so a slow consumer slows the reading (TCP pushes back
//! on the server) instead of losing events. Decoding happens on the
//! consumer's side, as on the socket lane, so both lanes yield the same
//! [`Event`](platos_events::Event)s.
//!
//! What differs from the socket, and why:
//! - `heartbeat` events (and `_seq`) exist only on this lane: heartbeats
//!   are read as keep-alive and not handed on, `_seq` is an ignored field,
//!   so a consumer sees the same events whichever lane carried them;
//! - there is no `stop` message: closing the request is what stops the
//!   server's turn, so [`stop`](super::TurnStream::stop) and dropping the
//!   stream both close it, and the stream ends at once (no `done` follows);
//! - approvals are answered over REST (`approvals().resolve`), the lane has
//!   no way to send anything once the request is made;
//! - no resume: the server keeps no cursor (§8.2), so a lost connection is
//!   a network error, never a silent gap;
//! - no pings: a body that carries nothing, not even a heartbeat, for
//!   `http_silence` is a dead connection, and the caller's idle limit
//!   counts events, not heartbeats.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::Instrument;

use super::approvals::{self, Answer};
use super::classify;
use super::connection::TurnCommand;
use super::turn::{Ending, Item};
use crate::client::PlatosClient;
use crate::error::{Error, Result};
use crate::sse;
use crate::transport::{IDEMPOTENCY_KEY, error_from_response, transport_error};

/// The operation the transport sends this lane as (`threads_stream` in
/// spec/openapi.yaml): no per-try time limit on it (a turn streams for as
/// long as it runs), retried with its idempotency key.
static OPERATION: crate::request::Operation<crate::retry::Idempotency> =
    crate::request::Operation {
        id: "threads_stream",
        method: reqwest::Method::POST,
        path: "/api/v1/agent/threads/{threadId}/stream",
        rule: crate::retry::Idempotency::Key,
        json: false,
        streams: true,
    };

/// The largest event (or line) accepted: the socket lane's message cap.
const MAX_EVENT_BYTES: usize = super::dial::MAX_MESSAGE_BYTES;

/// What the stream reads: an event's JSON, or the terminal error.
pub(crate) type Receiver = mpsc::Receiver<Result<Item>>;

/// How long the lane waits, and for what.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    /// The caller's idle limit: this long without an event (heartbeats do
    /// not count) ends the turn with `turn_idle`.
    pub(crate) idle: Option<Duration>,
    /// This long without a byte (not even a heartbeat): the connection is
    /// dead.
    pub(crate) silence: Duration,
}

/// Starts the turn's task; the stream reads `Receiver`, the handle sends
/// [`TurnCommand`]s to the task.
pub(crate) fn start(
    client: PlatosClient,
    thread_id: &str,
    body: Value,
    key: String,
    buffer: usize,
    watch: Watch,
) -> (Receiver, mpsc::UnboundedSender<TurnCommand>) {
    let (events, reader) = mpsc::channel(buffer.max(1));
    let (commands, inbox) = mpsc::unbounded_channel();
    let url = stream_url(client.base_url(), thread_id);
    let span = super::turn::span(thread_id, "http");
    let task = Task {
        client,
        events,
        inbox,
        watch,
    };
    tokio::spawn(run(task, url, body, key, span.clone()).instrument(span));
    (reader, commands)
}

/// `<base>/api/v1/agent/threads/{threadId}/stream`, the id one encoded
/// path segment.
fn stream_url(base: &str, thread_id: &str) -> Result<url::Url> {
    let thread_id = crate::request::path_id(thread_id)?;
    let mut url =
        url::Url::parse(base).map_err(|e| Error::config(format!("base URL {base:?}: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| Error::config(format!("base URL {base:?} cannot have a path")))?
        .pop_if_empty()
        .extend(["api", "v1", "agent", "threads", thread_id, "stream"]);
    Ok(url)
}

/// How the task's reading ended.
enum Flow {
    /// Keep reading.
    Go,
    /// Stop or drop: close the request (which stops the server's turn);
    /// which of the two, for the turn's span.
    Close(Ending),
}

/// Acts on a command from the stream or its handles.
fn command(client: &PlatosClient, command: Option<TurnCommand>) -> Flow {
    match command {
        Some(TurnCommand::Approve(answer)) => {
            tokio::spawn(resolve(client.clone(), answer));
            Flow::Go
        }
        Some(TurnCommand::Stop) => Flow::Close(Ending::Stopped),
        Some(TurnCommand::Dropped) | None => Flow::Close(Ending::Dropped),
    }
}

/// Sends an approval's decision over REST and reports the outcome.
async fn resolve(client: PlatosClient, answer: Answer) {
    let result = approvals::resolve_over_rest(&client, answer.approval_id, &answer.decision).await;
    let _ = answer.reply.send(result);
}

/// What the turn's task owns.
struct Task {
    client: PlatosClient,
    events: mpsc::Sender<Result<Item>>,
    inbox: mpsc::UnboundedReceiver<TurnCommand>,
    watch: Watch,
}

/// The turn's task, in its `platos.turn` span: reads, then records how it
/// ended.
async fn run(task: Task, url: Result<url::Url>, body: Value, key: String, span: tracing::Span) {
    let mut sent = 0;
    pump(task, url, body, key, &mut sent)
        .await
        .record(&span, sent);
}

/// Ends the stream with `error`.
async fn fail(events: &mpsc::Sender<Result<Item>>, error: Error) -> Ending {
    let ending = Ending::failed(&error);
    let _ = events.send(Err(error)).await;
    ending
}

/// Reads the turn until it ends; returns how, counting in `sent` the
/// events handed to the stream.
async fn pump(
    task: Task,
    url: Result<url::Url>,
    body: Value,
    key: String,
    sent: &mut u64,
) -> Ending {
    let Task {
        client,
        events,
        mut inbox,
        watch,
    } = task;
    let url = match url {
        Ok(url) => url,
        Err(e) => return fail(&events, e).await,
    };
    let opening = open(&client, url, &body, &key);
    tokio::pin!(opening);
    let response = loop {
        tokio::select! {
            biased;
            c = inbox.recv() => match command(&client, c) {
                Flow::Go => continue,
                Flow::Close(how) => return how,
            },
            opened = &mut opening => break opened,
        }
    };
    let mut response = match response {
        Ok(r) => r,
        Err(e) => return fail(&events, e).await,
    };
    // Like the socket lane's first item: the lane is open and authorised.
    let connected = platos_events::Event::Connected(Default::default());
    if events.send(Ok(Item::made(connected))).await.is_err() {
        return Ending::Dropped;
    }
    *sent += 1;
    let mut parser = sse::Parser::new(sse::Limits::bytes(MAX_EVENT_BYTES));
    let mut items = Vec::new();
    // A turn ends with `done`, or with one `error` and the end of the body.
    let mut failed = false;
    // The idle limit counts from the last event; heartbeats do not move it.
    let mut idle_until = watch.idle.map(|idle| Instant::now() + idle);
    loop {
        let chunk = tokio::select! {
            biased;
            c = inbox.recv() => match command(&client, c) {
                Flow::Go => continue,
                Flow::Close(how) => return how,
            },
            () = sleep_until(idle_until) => {
                let idle = watch.idle.unwrap_or_default();
                // Returning closes the request, which stops the server's turn.
                return fail(&events, super::turn::idle_error(idle)).await;
            }
            chunk = tokio::time::timeout(watch.silence, response.chunk()) => match chunk {
                Ok(chunk) => chunk,
                Err(_) => {
                    let e = Error::network(
                        format!(
                            "the HTTP turn stream carried nothing, not even a heartbeat, for {} s",
                            watch.silence.as_secs_f64()
                        ),
                        None,
                    );
                    return fail(&events, e).await;
                }
            },
        };
        let bytes: Bytes = match chunk {
            Ok(Some(bytes)) => bytes,
            Ok(None) if failed => return Ending::ErrorEvent,
            Ok(None) => {
                let e = Error::network("the HTTP stream ended before the turn's done", None);
                return fail(&events, e).await;
            }
            Err(e) => return fail(&events, transport_error(e)).await,
        };
        if let Err(too_large) = parser.feed(&bytes, &mut items) {
            let e = Error::stream_of(
                crate::error::StreamCode::PayloadTooLarge,
                too_large.to_string(),
            );
            return fail(&events, e).await;
        }
        for item in items.drain(..) {
            // Comments and `retry:` mean nothing here: there is no resume.
            let sse::Item::Event(event) = item else {
                continue;
            };
            let (done, error) = {
                let route = classify::route(&event.data);
                match route.kind.as_deref() {
                    Some("heartbeat") => continue,
                    kind => (kind == Some("done"), kind == Some("error")),
                }
            };
            failed |= error;
            if let Some(idle) = watch.idle {
                idle_until = Some(Instant::now() + idle);
            }
            let frame = Utf8Bytes::from(event.data);
            let end = frame.len();
            let item = Item::AgentJson {
                frame,
                start: 0,
                end,
            };
            // Waits for room, but still hears a stop meanwhile.
            let permit = loop {
                tokio::select! {
                    biased;
                    c = inbox.recv() => match command(&client, c) {
                        Flow::Go => continue,
                        Flow::Close(how) => return how,
                    },
                    permit = events.reserve() => break permit,
                }
            };
            match permit {
                Ok(permit) => permit.send(Ok(item)),
                // The stream is gone: closing the request stops the turn.
                Err(_) => return Ending::Dropped,
            }
            *sent += 1;
            if done {
                return Ending::Done;
            }
        }
    }
}

/// Waits until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Makes the request (auth, refresh and retries of the REST transport; the
/// idempotency key makes a retry safe) and checks it answers a stream.
async fn open(
    client: &PlatosClient,
    url: url::Url,
    body: &Value,
    key: &str,
) -> Result<reqwest::Response> {
    let request = client
        .http()
        .post(url)
        .header(IDEMPOTENCY_KEY, key)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(body)
        .build()
        .map_err(|e| Error::config(format!("building the request: {e}")))?;
    let limit = client.shared().timeout;
    let response = tokio::time::timeout(limit, client.exec_raw(request, &OPERATION))
        .await
        .map_err(|_| Error::timeout(format!("no answer to the turn within {limit:?}"), None))??;
    if !response.status().is_success() {
        let proxy = client.shared().proxy_shown.as_deref();
        return Err(error_from_response(response).await.via_proxy(proxy));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("text/event-stream") {
        return Err(Error::stream_of(
            crate::error::StreamCode::ProtocolError,
            format!("the turn was answered with {content_type:?}, not text/event-stream"),
        ));
    }
    Ok(response)
}

//! The turn loop (wire.md §4.1–§4.4): one spawned task per `threads.send`.
//!
//! The task owns the WebSocket. It connects and authenticates, sends the
//! `message` once the namespace connect is acknowledged, then reads frames:
//! pings are answered at once, `agent_event`s are decoded and handed to the
//! consumer through a bounded channel with `try_send`, so nothing the
//! consumer does (or fails to do) can delay a pong. Commands from the
//! consumer (`stop`, approval answers) arrive on a second channel; dropping
//! the consumer's end of the event channel is the "stream dropped" signal.
//!
//! A lost connection (close, reset, silence past `pingInterval +
//! pingTimeout`) is retried with exponential backoff up to the turn's
//! budget; the new connection sends `resume_stream` and `join_thread`, never
//! `message` again. A refused or expired token is refreshed once through the
//! client's single-flight refresh and the connection retried at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use platos_events::Event;
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::engineio::{self, Handshake};
use super::queue::{Refused, Writer};
use super::socketio;
use crate::client::{PlatosClient, Shared};
use crate::config::{ReconnectConfig, Secret};
use crate::error::{Error, Result};
use crate::retry;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest WebSocket message accepted from the server. Not the open
/// packet's `maxPayload`: that is what the server accepts from us, and a
/// server legitimately sends more (a large artifact's `finalContent`).
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// How long after the connect ack a server that never sends `connected`
/// is given before the client speaks anyway.
const READY_GRACE: Duration = Duration::from_millis(1000);
/// The longest a full buffer holds the socket unread; on a connection it is
/// also at most half the server's `pingTimeout`.
const MAX_LAG_GRACE: Duration = Duration::from_secs(5);
/// Frames handled back to back before the consumer is woken and commands
/// are looked at.
const BURST: usize = 64;
/// How long after `stop` the server gets to send its final `done`.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a clean close waits for the server's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the consumer asks of the socket task.
pub(crate) enum Command {
    /// Send `stop {threadId}` and end after the server's `done`.
    Stop,
    /// Send `approval_response` and report the server's acknowledgement.
    Approval {
        approval_id: String,
        payload: Value,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// What the socket task hands the stream.
///
/// `agent_event`s are decoded by the stream, on the consumer's thread: the
/// socket task only checks the frame and reads its `type`, so it stays
/// quick to answer pings, decoding runs beside the socket reading, and
/// every allocation of a decoded event is made and freed by one thread
/// (cross-thread frees contend on the allocator's locks).
pub(crate) enum Item {
    /// An `agent_event` argument as JSON text: `frame[start..end]`, sharing
    /// the frame's bytes.
    AgentJson {
        frame: Utf8Bytes,
        start: usize,
        end: usize,
    },
    /// An `agent_event` argument already parsed (packets off the fast path).
    AgentValue(Value),
    /// An event the client made (lifecycle, socket errors).
    Event(Box<Event>),
}

impl Item {
    fn made(event: Event) -> Item {
        Item::Event(Box::new(event))
    }
}

/// Why a connection (or an attempt at one) ended.
enum End {
    /// The turn is over (`done`, or stopped): close cleanly, end the stream.
    Finished,
    /// The consumer dropped the stream: send `stop`, close, end.
    Abandoned,
    /// The connection was lost: reconnect if the budget allows.
    Lost(String),
    /// The server refused or expired the session token: refresh once.
    AuthRefused {
        code: Option<String>,
        message: String,
        raw: String,
    },
    /// The stream ends with this error as its last item.
    Failed(Error),
}

/// A connected, namespace-acknowledged socket.
struct Conn {
    ws: Socket,
    handshake: Handshake,
    opened_at: Instant,
}

/// What woke the session loop.
enum Wake {
    Command(Option<Command>),
    Frame(Option<std::result::Result<Message, tungstenite::Error>>),
    Abandoned,
    Silent,
    Ready,
    StopGrace,
}

pub(crate) struct Turn {
    client: PlatosClient,
    shared: Arc<Shared>,
    thread_id: String,
    namespace: String,
    /// The `message` payload until it is sent: it is sent exactly once.
    message: Option<Value>,
    budget: u32,
    events: Writer<Item>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    /// Reconnect attempts since the last connection that delivered an event.
    attempt: u32,
    /// Whether a refused token may still be refreshed (re-armed by an event).
    refresh_allowed: bool,
    stop_requested: bool,
    /// The gateway sent `connected` on the current connection.
    server_ready: bool,
    /// The consumer was given `connected` for the current connection.
    announced: bool,
    /// How long a full buffer may hold the socket unread (see `push`).
    lag_grace: Duration,
    /// A rate-limit refusal waiting for the socket-level `done` that follows it.
    rate_limit: Option<Error>,
    /// Approval answers received while not connected.
    queued_approvals: Vec<(String, Value, oneshot::Sender<Result<()>>)>,
    /// Approval answers sent and waiting for `approval_ack`.
    awaiting_ack: HashMap<String, Vec<oneshot::Sender<Result<()>>>>,
}

impl Turn {
    pub(crate) fn new(
        client: PlatosClient,
        thread_id: String,
        message: Value,
        budget: u32,
        events: Writer<Item>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let shared = client.shared().clone();
        Turn {
            namespace: shared.namespace.clone(),
            shared,
            client,
            thread_id,
            message: Some(message),
            budget,
            events,
            commands,
            commands_open: true,
            attempt: 0,
            refresh_allowed: true,
            stop_requested: false,
            server_ready: false,
            announced: false,
            lag_grace: MAX_LAG_GRACE,
            rate_limit: None,
            queued_approvals: Vec::new(),
            awaiting_ack: HashMap::new(),
        }
    }

    /// Runs the turn to its end. The queue is finished (with the terminal
    /// error, if any) before the socket's closing handshake, so the consumer
    /// sees the end as soon as it is known.
    pub(crate) async fn run(mut self) {
        let (result, socket) = self.drive().await;
        self.events.finish(result.err());
        if let Some(mut ws) = socket {
            let _ = timeout(CLOSE_GRACE, async {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }

    /// Connects, reconnects and refreshes until the turn ends. Returns the
    /// outcome and, after a clean ending, the socket still to be closed.
    async fn drive(&mut self) -> (Result<()>, Option<Socket>) {
        let mut gap: Option<String> = None;
        loop {
            // Read the token afresh: a REST call may have refreshed it.
            let token = self.shared.auth.session_token();
            let (end, was_connected) = match self.connect(token.as_ref()).await {
                Ok(mut conn) => {
                    let end = self.session(&mut conn, gap.take()).await;
                    match end {
                        End::Finished | End::Abandoned | End::Failed(_) => {
                            self.say_goodbye(&mut conn.ws, &end).await;
                            return (finish(end), Some(conn.ws));
                        }
                        // `disconnected` pairs with a `connected` the consumer saw.
                        End::Lost(_) | End::AuthRefused { .. } => (end, self.announced),
                    }
                }
                Err(end) => (end, false),
            };

            let mut immediate = false;
            let reason = match end {
                End::Finished | End::Abandoned | End::Failed(_) => return (finish(end), None),
                End::Lost(reason) => reason,
                End::AuthRefused { code, message, raw } => {
                    let refreshed = match &token {
                        Some(refused) if self.refresh_allowed && self.shared.auth.can_refresh() => {
                            self.refresh_allowed = false;
                            self.shared.auth.refresh_after(refused, 401).await
                        }
                        _ => None,
                    };
                    if refreshed.is_none() {
                        return (Err(Error::auth_refused(code, message, raw)), None);
                    }
                    immediate = true;
                    format!("session token refused: {message}")
                }
            };
            tracing::debug!(thread_id = %self.thread_id, %reason, "realtime connection lost");
            self.fail_awaiting_acks();
            if was_connected
                && let Err(end) = self
                    .push(Item::made(Event::disconnected(Some(reason.clone()))))
                    .await
            {
                return (finish(end), None);
            }

            self.attempt += 1;
            if self.attempt > self.budget {
                let error = Error::network(
                    format!(
                        "realtime connection lost ({reason}); gave up after {} reconnect attempts",
                        self.budget
                    ),
                    None,
                );
                return (Err(error), None);
            }
            if let Err(end) = self
                .push(Item::made(Event::reconnecting(self.attempt)))
                .await
            {
                return (finish(end), None);
            }
            if !immediate {
                let delay = reconnect_delay(&self.shared.reconnect, self.attempt);
                if let Err(end) = self.pause(delay).await {
                    return (finish(end), None);
                }
            }
            gap = Some(reason);
        }
    }

    // ---- connecting -------------------------------------------------------

    /// Opens the WebSocket and joins the namespace, bounded by the client
    /// timeout, while still listening to the consumer.
    async fn connect(&mut self, token: Option<&Secret>) -> std::result::Result<Conn, End> {
        self.events.flush();
        let url = engineio::socket_url(&self.shared.base_url)
            .map_err(|e| End::Failed(Error::config(e.to_string())))?;
        let mut request = url
            .into_client_request()
            .map_err(|e| End::Failed(Error::config(format!("realtime URL: {e}"))))?;
        let headers = request.headers_mut();
        if let Ok(ua) = HeaderValue::from_str(&self.shared.user_agent) {
            headers.insert("user-agent", ua);
        }
        for (name, value) in self.client.inner().auth_headers(token) {
            match HeaderValue::from_str(&value) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                Err(_) => tracing::warn!(header = name, "header value is not valid HTTP; not sent"),
            }
        }

        let limit = self.shared.timeout;
        let namespace = self.namespace.clone();
        let handshake = timeout(
            limit,
            open(
                request,
                self.shared.tls.websocket_connector(),
                &namespace,
                self.auth_payload(token),
            ),
        );
        tokio::pin!(handshake);
        loop {
            tokio::select! {
                biased;
                result = &mut handshake => {
                    return match result {
                        Ok(result) => result,
                        Err(_) => Err(End::Lost(format!("no connect ack within {limit:?}"))),
                    };
                }
                () = self.events.closed() => return Err(End::Abandoned),
                command = self.commands.recv(), if self.commands_open => self.on_idle_command(command)?,
            }
        }
    }

    /// The CONNECT auth payload (wire.md §4.1–§4.2): the token, and the
    /// scope for gateways that read it from there.
    fn auth_payload(&self, token: Option<&Secret>) -> Value {
        let mut auth = Map::new();
        if let Some(token) = token {
            auth.insert("token".into(), Value::from(token.expose()));
        }
        if let Some(scope) = &self.client.inner().scope {
            auth.insert(
                "organizationId".into(),
                Value::from(scope.organization_id.as_str()),
            );
            auth.insert("projectId".into(), Value::from(scope.project_id.as_str()));
            auth.insert(
                "environmentId".into(),
                Value::from(scope.environment_id.as_str()),
            );
            if let Some(user) = &scope.user_id {
                auth.insert("userId".into(), Value::from(user.as_str()));
            }
        }
        Value::Object(auth)
    }

    /// Sleeps before a reconnect, still listening to the consumer.
    async fn pause(&mut self, delay: Duration) -> std::result::Result<(), End> {
        self.events.flush();
        let until = sleep_until(Instant::now() + delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                () = &mut until => return Ok(()),
                () = self.events.closed() => return Err(End::Abandoned),
                command = self.commands.recv(), if self.commands_open => {
                    self.on_idle_command(command)?;
                    // A stop is worth a connection now, not after the backoff.
                    if self.stop_requested {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A command that arrives while no connection is up.
    fn on_idle_command(&mut self, command: Option<Command>) -> std::result::Result<(), End> {
        match command {
            None => self.commands_open = false,
            // Nothing was sent yet: nothing to stop server-side.
            Some(Command::Stop) if self.message.is_some() => return Err(End::Finished),
            // Delivered once the connection is back.
            Some(Command::Stop) => self.stop_requested = true,
            Some(Command::Approval {
                approval_id,
                payload,
                reply,
            }) => self.queued_approvals.push((approval_id, payload, reply)),
        }
        Ok(())
    }

    // ---- one connection ---------------------------------------------------

    /// Runs one acknowledged connection until it ends.
    ///
    /// Nothing is sent until the gateway says the socket is ready: a refused
    /// token is not a CONNECT_ERROR but an `error` event after the ack
    /// (wire.md §4.2), so a `message` sent right after the ack could go to a
    /// socket about to be refused, and would then never be sent again.
    /// Gateways announce success with the `connected` event; for servers
    /// that never send it, [`READY_GRACE`] after the ack counts as ready.
    async fn session(&mut self, conn: &mut Conn, gap: Option<String>) -> End {
        let mut gap = gap;
        let mut ready = false;
        let mut burst = 0;
        self.server_ready = false;
        self.announced = false;

        self.lag_grace = MAX_LAG_GRACE.min(conn.handshake.ping_timeout / 2);
        let silence = conn.handshake.silence_limit();
        let ping_timer = sleep_until(conn.opened_at + silence);
        tokio::pin!(ping_timer);
        let ready_timer = sleep_until(Instant::now() + READY_GRACE);
        tokio::pin!(ready_timer);
        let stop_timer = sleep_until(Instant::now() + STOP_GRACE);
        tokio::pin!(stop_timer);

        loop {
            if !ready && self.server_ready {
                ready = true;
                if let Err(end) = self.start(conn, gap.take()).await {
                    return end;
                }
                if self.stop_requested {
                    stop_timer.as_mut().reset(Instant::now() + STOP_GRACE);
                }
            }
            // Frames already received are handled in bursts without waking
            // the consumer; it is woken once, when the socket would block.
            let ready_frame = if burst < BURST {
                conn.ws.next().now_or_never()
            } else {
                None
            };
            let wake = match ready_frame {
                Some(frame) => {
                    burst += 1;
                    Wake::Frame(frame)
                }
                None => {
                    burst = 0;
                    self.events.flush();
                    // Biased: commands first so `stop` is not starved by a
                    // flood of frames.
                    tokio::select! {
                        biased;
                        command = self.commands.recv(), if self.commands_open => Wake::Command(command),
                        frame = conn.ws.next() => Wake::Frame(frame),
                        () = self.events.closed() => Wake::Abandoned,
                        () = &mut ping_timer => Wake::Silent,
                        () = &mut ready_timer, if !ready => Wake::Ready,
                        () = &mut stop_timer, if self.stop_requested && ready => Wake::StopGrace,
                    }
                }
            };
            let outcome = match wake {
                Wake::Ready => {
                    tracing::debug!("no `connected` event from the server; speaking anyway");
                    self.server_ready = true;
                    Ok(())
                }
                Wake::Command(command) if !ready => self.on_idle_command(command),
                Wake::Command(None) => {
                    self.commands_open = false;
                    Ok(())
                }
                Wake::Command(Some(Command::Stop)) => {
                    if self.stop_requested {
                        Ok(())
                    } else {
                        self.stop_requested = true;
                        stop_timer.as_mut().reset(Instant::now() + STOP_GRACE);
                        self.send_event(&mut conn.ws, "stop", &self.thread_ref())
                            .await
                    }
                }
                Wake::Command(Some(Command::Approval {
                    approval_id,
                    payload,
                    reply,
                })) => {
                    self.send_approval(&mut conn.ws, approval_id, payload, reply)
                        .await
                }
                Wake::Frame(None) => Err(self.lost("the server closed the connection")),
                Wake::Frame(Some(Err(e))) => Err(self.socket_error(e)),
                Wake::Frame(Some(Ok(Message::Text(text)))) => {
                    self.on_text(conn, &text, ping_timer.as_mut(), silence)
                        .await
                }
                Wake::Frame(Some(Ok(Message::Binary(_)))) => Err(End::Failed(Error::stream(
                    Some("protocol_error".into()),
                    "binary WebSocket frames are not supported",
                ))),
                Wake::Frame(Some(Ok(Message::Close(_)))) => {
                    Err(self.lost("the server closed the WebSocket"))
                }
                // WebSocket-level pings are answered by tungstenite.
                Wake::Frame(Some(Ok(_))) => Ok(()),
                Wake::Abandoned => Err(End::Abandoned),
                Wake::Silent => Err(self.lost(format!(
                    "no ping from the server for {} ms",
                    silence.as_millis()
                ))),
                Wake::StopGrace => Err(End::Finished),
            };
            if let Err(end) = outcome {
                return end;
            }
        }
    }

    /// First words on a new connection: the message on the first one;
    /// `resume_stream` and `join_thread` on a reconnect, so events routed to
    /// the thread's room reach this new socket (the gateway sends a turn's
    /// events to the socket that emitted `message`, which is gone).
    async fn start(
        &mut self,
        conn: &mut Conn,
        gap: Option<String>,
    ) -> std::result::Result<(), End> {
        self.push(Item::made(Event::connected())).await?;
        self.announced = true;
        if let Some(payload) = self.message.take() {
            let frame = event_frame(&self.namespace, "message", &payload)?;
            if let Some(max) = conn.handshake.max_payload
                && frame.len() > max
            {
                return Err(End::Failed(Error::stream(
                    Some("payload_too_large".into()),
                    format!(
                        "the message is {} bytes; the server accepts at most {max}",
                        frame.len()
                    ),
                )));
            }
            send_text(&mut conn.ws, frame).await?;
            tracing::debug!(thread_id = %self.thread_id, "message sent");
        } else {
            self.push(Item::made(Event::stream_gap(gap, Some(self.attempt))))
                .await?;
            let thread = self.thread_ref();
            self.send_event(&mut conn.ws, "resume_stream", &thread)
                .await?;
            self.send_event(&mut conn.ws, "join_thread", &thread)
                .await?;
        }
        if self.stop_requested {
            self.send_event(&mut conn.ws, "stop", &self.thread_ref())
                .await?;
        }
        for (approval_id, payload, reply) in std::mem::take(&mut self.queued_approvals) {
            self.send_approval(&mut conn.ws, approval_id, payload, reply)
                .await?;
        }
        Ok(())
    }

    /// One WebSocket text message.
    async fn on_text(
        &mut self,
        conn: &mut Conn,
        text: &Utf8Bytes,
        ping_timer: Pin<&mut Sleep>,
        silence: Duration,
    ) -> std::result::Result<(), End> {
        match engineio::decode(text.as_str()).map_err(|e| End::Failed(e.into()))? {
            engineio::Packet::Ping(payload) => {
                ping_timer.reset(Instant::now() + silence);
                send_text(&mut conn.ws, engineio::pong(payload)).await
            }
            engineio::Packet::Message(packet) => self.on_packet(text, packet).await,
            engineio::Packet::Close => Err(self.lost("the server closed the Engine.IO session")),
            engineio::Packet::Open(_)
            | engineio::Packet::Pong(_)
            | engineio::Packet::Upgrade
            | engineio::Packet::Noop => Ok(()),
        }
    }

    /// One Socket.IO packet, a slice of `frame`.
    async fn on_packet(&mut self, frame: &Utf8Bytes, packet: &str) -> std::result::Result<(), End> {
        // The hot path: an `agent_event` goes to the stream as a slice of
        // the frame, checked but not decoded here (see `Item::AgentJson`).
        if let Some(peeked) = socketio::peek_event(packet)
            && peeked.name == "agent_event"
            && peeked.namespace == self.namespace
        {
            let start = (peeked.arg.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
            let item = Item::AgentJson {
                frame: frame.clone(),
                start,
                end: start.saturating_add(peeked.arg.len()),
            };
            // `event_type` borrows the tag, so it can only say `done` where
            // the text holds `"done"` verbatim: the substring test skips a
            // second scan of every other event and changes no answer.
            let done = peeked.arg.contains(r#""done""#) && event_type(peeked.arg) == Some("done");
            return self.on_agent_event(item, done).await;
        }
        let packet = socketio::decode(packet).map_err(|e| End::Failed(e.into()))?;
        if packet.namespace() != self.namespace {
            tracing::trace!(
                namespace = packet.namespace(),
                "packet for another namespace"
            );
            return Ok(());
        }
        match packet {
            socketio::Packet::Event { name, args, .. } => {
                let data = args.into_iter().next().unwrap_or(Value::Null);
                self.on_event(&name, data).await
            }
            socketio::Packet::Disconnect { .. } => Err(self.lost("the server left the namespace")),
            socketio::Packet::ConnectError { data, .. } => Err(connect_refused(&data)),
            socketio::Packet::Connect { .. } | socketio::Packet::Ack { .. } => Ok(()),
        }
    }

    /// One server event (wire.md §4.3).
    async fn on_event(&mut self, name: &str, data: Value) -> std::result::Result<(), End> {
        match name {
            "agent_event" => {
                let done = data.get("type").and_then(Value::as_str) == Some("done");
                self.on_agent_event(Item::AgentValue(data), done).await
            }
            "connected" => {
                self.server_ready = true;
                Ok(())
            }
            "error" => self.on_socket_error(data).await,
            "done" => {
                if let Some(error) = self.rate_limit.take() {
                    return Err(End::Failed(error));
                }
                // A socket-level `done` without a preceding refusal: the
                // turn is over all the same; surface it as the done event.
                let event = with_type(data, "done")
                    .and_then(|v| Event::from_value(v).ok())
                    .unwrap_or_else(|| Event::Done(Default::default()));
                self.push(Item::made(event)).await?;
                Err(End::Finished)
            }
            "server.deprecation" => {
                let field = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                tracing::warn!(
                    code = %field("code"),
                    remove_after = %field("removeAfter"),
                    "Platos server deprecation: {}",
                    field("message")
                );
                Ok(())
            }
            "approval_ack" => {
                self.settle_approval(&data, Ok(()));
                Ok(())
            }
            "approval_response_error" => {
                let message = data
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the server refused the approval response")
                    .to_owned();
                let error = Error::stream(Some("approval_response_error".into()), message);
                self.settle_approval(&data, Err(error));
                Ok(())
            }
            other => {
                tracing::trace!(event = other, "socket event ignored");
                Ok(())
            }
        }
    }

    /// One `agent_event`; `done` ends the turn after it is handed over.
    async fn on_agent_event(&mut self, item: Item, done: bool) -> std::result::Result<(), End> {
        // An event proves the connection and the token good.
        self.attempt = 0;
        self.refresh_allowed = true;
        self.push(item).await?;
        if done { Err(End::Finished) } else { Ok(()) }
    }

    /// The gateway's socket-level `error` event (wire.md §4.2–§4.3).
    async fn on_socket_error(&mut self, data: Value) -> std::result::Result<(), End> {
        let code = data.get("code").and_then(Value::as_str).map(str::to_owned);
        let message = data
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("socket error")
            .to_owned();
        if code.as_deref() == Some("rate_limit") {
            let retry_after = data
                .get("retryAfterSeconds")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            // Ends the stream at the socket-level `done` that follows (or
            // when the connection drops first).
            self.rate_limit = Some(Error::rate_limited(
                code,
                message,
                retry_after,
                data.to_string(),
            ));
            return Ok(());
        }
        if is_token_refusal(code.as_deref(), &message) {
            return Err(End::AuthRefused {
                code,
                message,
                raw: data.to_string(),
            });
        }
        let event = with_type(data, "socket_error")
            .and_then(|v| Event::from_value(v).ok())
            .filter(|e| matches!(e, Event::SocketError(_)))
            .unwrap_or_else(|| Event::socket_error(message, code));
        self.push(Item::made(event)).await
    }

    /// Sends `approval_response` and remembers who waits for the ack.
    async fn send_approval(
        &mut self,
        ws: &mut Socket,
        approval_id: String,
        payload: Value,
        reply: oneshot::Sender<Result<()>>,
    ) -> std::result::Result<(), End> {
        if let Err(end) = self.send_event(ws, "approval_response", &payload).await {
            let _ = reply.send(Err(Error::network(
                "the connection was lost while sending the approval",
                None,
            )));
            return Err(end);
        }
        self.awaiting_ack
            .entry(approval_id)
            .or_default()
            .push(reply);
        Ok(())
    }

    fn settle_approval(&mut self, data: &Value, result: Result<()>) {
        let id = data.get("approvalId").and_then(Value::as_str);
        let waiters = match id.and_then(|id| self.awaiting_ack.remove(id)) {
            Some(waiters) => waiters,
            // A refusal without an id answers the oldest question we asked.
            None if result.is_err() => match self.awaiting_ack.keys().next().cloned() {
                Some(any) => self.awaiting_ack.remove(&any).unwrap_or_default(),
                None => return,
            },
            None => return,
        };
        for waiter in waiters {
            let _ = waiter.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::stream(e.code().map(str::to_owned), e.message())),
            });
        }
    }

    fn fail_awaiting_acks(&mut self) {
        for (_, waiters) in self.awaiting_ack.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(Error::network(
                    "the connection was lost before the server acknowledged the approval; \
                     it may or may not have been received",
                    None,
                )));
            }
        }
    }

    /// Last words before a clean close: `stop` when the consumer left
    /// mid-turn, then leave the namespace. The close frame follows in `run`.
    async fn say_goodbye(&self, ws: &mut Socket, end: &End) {
        if matches!(end, End::Abandoned) && !self.stop_requested && self.message.is_none() {
            tracing::debug!(thread_id = %self.thread_id, "stream dropped mid-turn: sending stop");
            let _ = self.send_event(ws, "stop", &self.thread_ref()).await;
        }
        let _ = send_text(
            ws,
            engineio::message(&socketio::disconnect(&self.namespace)),
        )
        .await;
    }

    // ---- helpers ----------------------------------------------------------

    /// Hands one item to the consumer.
    ///
    /// With room in the buffer this never waits. With the buffer full the
    /// task stops reading the socket (TCP holds the server back) and waits
    /// for room, but only for [`Turn::lag_grace`], which is shorter than the
    /// server's `pingTimeout`: a ping that arrives meanwhile is still read
    /// and answered in time, so a consumer that is briefly slower (or
    /// descheduled) costs nothing, while one that stays behind ends the
    /// stream with an explicit `consumer_lagged` error instead of losing
    /// events or the connection.
    async fn push(&mut self, item: Item) -> std::result::Result<(), End> {
        let item = match self.events.try_push(item) {
            Ok(()) => return Ok(()),
            Err(Refused::Gone) => return Err(End::Abandoned),
            Err(Refused::Full(item)) => item,
        };
        match timeout(self.lag_grace, self.events.room()).await {
            Ok(true) => match self.events.try_push(item) {
                Ok(()) => Ok(()),
                // Only this task pushes, so room stays room; but never panic.
                Err(_) => Err(End::Abandoned),
            },
            Ok(false) => Err(End::Abandoned),
            Err(_) => Err(End::Failed(Error::stream(
                Some("consumer_lagged".into()),
                format!(
                    "the consumer stayed {} events behind for {} ms; the stream was ended \
                     rather than dropping events (read faster, or raise the client's \
                     stream_buffer)",
                    self.events.capacity(),
                    self.lag_grace.as_millis()
                ),
            ))),
        }
    }

    /// A lost connection, unless a rate-limit refusal or a stop explains it.
    fn lost(&mut self, reason: impl Into<String>) -> End {
        if let Some(error) = self.rate_limit.take() {
            return End::Failed(error);
        }
        if self.stop_requested {
            return End::Finished;
        }
        End::Lost(reason.into())
    }

    fn socket_error(&mut self, e: tungstenite::Error) -> End {
        match classify_ws_error(e) {
            End::Lost(reason) => self.lost(reason),
            other => other,
        }
    }

    fn thread_ref(&self) -> Value {
        let mut m = Map::new();
        m.insert("threadId".into(), Value::from(self.thread_id.as_str()));
        Value::Object(m)
    }

    async fn send_event(
        &self,
        ws: &mut Socket,
        name: &str,
        data: &Value,
    ) -> std::result::Result<(), End> {
        send_text(ws, event_frame(&self.namespace, name, data)?).await
    }
}

/// The pause before reconnect attempt `attempt` (from 1):
/// `min(max_delay, base_delay · 2^(attempt−1))`, jittered (wire.md §4.4).
fn reconnect_delay(config: &ReconnectConfig, attempt: u32) -> Duration {
    retry::jittered(
        retry::exponential(
            config.base_delay,
            config.max_delay,
            attempt.saturating_sub(1),
        ),
        config.jitter,
    )
}

/// Turns how the loop ended into what the stream's tail says.
fn finish(end: End) -> Result<()> {
    match end {
        End::Failed(error) => Err(error),
        End::AuthRefused { code, message, raw } => Err(Error::auth_refused(code, message, raw)),
        End::Lost(reason) => Err(Error::network(reason, None)),
        End::Finished | End::Abandoned => Ok(()),
    }
}

/// Dials, reads the open packet, joins `namespace` with `auth` and waits
/// for the acknowledgement, answering pings all along.
async fn open(
    request: tungstenite::handshake::client::Request,
    connector: Option<tokio_tungstenite::Connector>,
    namespace: &str,
    auth: Value,
) -> std::result::Result<Conn, End> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let (mut ws, _response) =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
            .await
            .map_err(upgrade_error)?;

    let handshake = loop {
        let text = next_text(&mut ws).await?;
        match engineio::decode(&text).map_err(|e| End::Failed(e.into()))? {
            engineio::Packet::Open(handshake) => break handshake,
            engineio::Packet::Noop => {}
            _ => {
                return Err(End::Failed(Error::stream(
                    Some("protocol_error".into()),
                    "the server did not start with an Engine.IO open packet",
                )));
            }
        }
    };
    let opened_at = Instant::now();
    tracing::debug!(sid = %handshake.sid, "engine.io session open");
    send_text(
        &mut ws,
        engineio::message(&socketio::connect(namespace, &auth)),
    )
    .await?;

    loop {
        let text = next_text(&mut ws).await?;
        let packet = match engineio::decode(&text).map_err(|e| End::Failed(e.into()))? {
            engineio::Packet::Ping(payload) => {
                send_text(&mut ws, engineio::pong(payload)).await?;
                continue;
            }
            engineio::Packet::Close => {
                return Err(End::Lost(
                    "the server closed the session before the connect ack".into(),
                ));
            }
            engineio::Packet::Message(packet) => packet,
            _ => continue,
        };
        match socketio::decode(packet).map_err(|e| End::Failed(e.into()))? {
            p if p.namespace() != namespace => {}
            socketio::Packet::Connect { .. } => {
                return Ok(Conn {
                    ws,
                    handshake,
                    opened_at,
                });
            }
            socketio::Packet::ConnectError { data, .. } => return Err(connect_refused(&data)),
            socketio::Packet::Disconnect { .. } => {
                return Err(End::Lost(
                    "the server left the namespace before the connect ack".into(),
                ));
            }
            socketio::Packet::Event { name, args, .. } if name == "error" => {
                let data = args.into_iter().next().unwrap_or(Value::Null);
                let code = data.get("code").and_then(Value::as_str).map(str::to_owned);
                let message = data
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if is_token_refusal(code.as_deref(), &message) {
                    return Err(End::AuthRefused {
                        code,
                        message,
                        raw: data.to_string(),
                    });
                }
            }
            socketio::Packet::Event { .. } | socketio::Packet::Ack { .. } => {}
        }
    }
}

/// The next text message, skipping WebSocket control frames.
async fn next_text(ws: &mut Socket) -> std::result::Result<tungstenite::Utf8Bytes, End> {
    loop {
        match ws.next().await {
            None => return Err(End::Lost("the server closed the connection".into())),
            Some(Err(e)) => return Err(classify_ws_error(e)),
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Binary(_))) => {
                return Err(End::Failed(Error::stream(
                    Some("protocol_error".into()),
                    "binary WebSocket frames are not supported",
                )));
            }
            Some(Ok(Message::Close(_))) => {
                return Err(End::Lost("the server closed the WebSocket".into()));
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn send_text(ws: &mut Socket, frame: String) -> std::result::Result<(), End> {
    ws.send(Message::text(frame))
        .await
        .map_err(|e| End::Lost(format!("sending failed: {e}")))
}

fn event_frame(namespace: &str, name: &str, data: &Value) -> std::result::Result<String, End> {
    socketio::event(namespace, name, data)
        .map(|packet| engineio::message(&packet))
        .map_err(|e| End::Failed(Error::stream(None, format!("encoding `{name}`: {e}"))))
}

/// A failed WebSocket upgrade.
fn upgrade_error(e: tungstenite::Error) -> End {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let message = format!("the WebSocket upgrade was refused with HTTP {status}");
            match status {
                401 | 403 => End::AuthRefused {
                    code: None,
                    message,
                    raw: body,
                },
                429 | 500.. => End::Lost(message),
                _ => End::Failed(Error::stream(Some("upgrade_refused".into()), message)),
            }
        }
        tungstenite::Error::Url(e) => End::Failed(Error::config(format!("realtime URL: {e}"))),
        tungstenite::Error::HttpFormat(e) => {
            End::Failed(Error::config(format!("realtime upgrade request: {e}")))
        }
        e @ tungstenite::Error::Tls(_) => End::Failed(Error::network(
            format!("TLS handshake failed: {e}"),
            Some(Box::new(e)),
        )),
        // tokio-rustls reports a refused certificate as an I/O error
        // wrapping the rustls error; retrying cannot fix it.
        tungstenite::Error::Io(e) if is_tls_refusal(&e) => End::Failed(Error::network(
            format!("TLS handshake failed: {e}"),
            Some(Box::new(e)),
        )),
        other => End::Lost(format!("connecting failed: {other}")),
    }
}

#[cfg(feature = "rustls")]
fn is_tls_refusal(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(not(feature = "rustls"))]
fn is_tls_refusal(_: &std::io::Error) -> bool {
    false
}

/// A read error on an established WebSocket.
fn classify_ws_error(e: tungstenite::Error) -> End {
    use tungstenite::error::ProtocolError as Ws;
    match e {
        tungstenite::Error::Capacity(e) => End::Failed(Error::stream(
            Some("payload_too_large".into()),
            format!("the server sent a message over the {MAX_MESSAGE_BYTES}-byte limit: {e}"),
        )),
        tungstenite::Error::Utf8(e) => End::Failed(Error::stream(
            Some("protocol_error".into()),
            format!("the server sent a text frame that is not UTF-8: {e}"),
        )),
        tungstenite::Error::Protocol(Ws::ResetWithoutClosingHandshake) => {
            End::Lost("the connection was reset".into())
        }
        tungstenite::Error::Protocol(e) => End::Failed(Error::stream(
            Some("protocol_error".into()),
            format!("WebSocket protocol violation: {e}"),
        )),
        other => End::Lost(format!("connection error: {other}")),
    }
}

/// A CONNECT_ERROR (`44`): an auth-like refusal is retried after a token
/// refresh; anything else ends the stream.
fn connect_refused(data: &Value) -> End {
    let message = socketio::Packet::connect_error_message(data);
    let code = data
        .get("data")
        .and_then(|d| d.get("code"))
        .or_else(|| data.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let lower = message.to_ascii_lowercase();
    let auth_like = is_token_refusal(code.as_deref(), &message)
        || [
            "auth",
            "token",
            "session",
            "unauthori",
            "forbidden",
            "expired",
            "jwt",
        ]
        .iter()
        .any(|word| lower.contains(word));
    if auth_like {
        End::AuthRefused {
            code,
            message,
            raw: data.to_string(),
        }
    } else {
        End::Failed(Error::stream(
            Some(code.unwrap_or_else(|| "connect_error".into())),
            format!("the server refused the namespace connect: {message}"),
        ))
    }
}

/// Whether a socket `error` means the token was refused or expired
/// (wire.md §4.2): the gateway then disconnects, and a fresh token helps.
fn is_token_refusal(code: Option<&str>, message: &str) -> bool {
    if matches!(code, Some("SESSION_EXPIRED" | "SESSION_REVOKED_OR_EXPIRED")) {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    lower.contains("invalid or expired session token")
        || lower.contains("must provide a session token")
        || lower.starts_with("missing auth")
}

/// The `type` of an event object, read without building it.
fn event_type(json: &str) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<&'a str>,
    }
    serde_json::from_str::<Typed<'_>>(json).ok()?.kind
}

/// `data` as an object with `type` set, for events the gateway sends
/// outside `agent_event`.
fn with_type(data: Value, kind: &str) -> Option<Value> {
    let mut map = match data {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => return None,
    };
    map.insert("type".into(), Value::from(kind));
    Some(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reconnect_delays_double_from_half_a_second_up_to_ten() {
        let exact = ReconnectConfig::default().with_jitter(0.0);
        let secs: Vec<f64> = (1..=7)
            .map(|k| reconnect_delay(&exact, k).as_secs_f64())
            .collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        let jittered = ReconnectConfig::default();
        for k in 1..=7 {
            let nominal = reconnect_delay(&exact, k).as_secs_f64();
            for _ in 0..50 {
                let d = reconnect_delay(&jittered, k).as_secs_f64();
                assert!(
                    d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                    "{k}: {d}"
                );
            }
        }
    }

    #[test]
    fn token_refusals() {
        assert!(is_token_refusal(Some("SESSION_EXPIRED"), "whatever"));
        assert!(is_token_refusal(Some("SESSION_REVOKED_OR_EXPIRED"), ""));
        assert!(is_token_refusal(None, "Invalid or expired session token."));
        assert!(is_token_refusal(
            None,
            "External WS connections must provide a session token in auth"
        ));
        assert!(is_token_refusal(
            None,
            "Missing auth — need organizationId, projectId, environmentId, userId"
        ));
        assert!(!is_token_refusal(Some("rate_limit"), "slow down"));
        assert!(!is_token_refusal(None, "threadId is required"));
    }

    #[test]
    fn connect_errors_split_into_auth_and_terminal() {
        assert!(matches!(
            connect_refused(&json!({"message": "Authentication error"})),
            End::AuthRefused { .. }
        ));
        assert!(matches!(
            connect_refused(&json!({"message": "jwt expired"})),
            End::AuthRefused { .. }
        ));
        match connect_refused(&json!({"message": "Invalid namespace"})) {
            End::Failed(e) => {
                assert_eq!(e.code(), Some("connect_error"));
                assert!(e.message().contains("Invalid namespace"));
            }
            _ => panic!("not terminal"),
        }
    }

    #[test]
    fn event_type_is_read_without_decoding() {
        assert_eq!(
            event_type(r#"{"text":"x","type":"done","n":[1,{"type":"no"}]}"#),
            Some("done")
        );
        assert_eq!(
            event_type(r#"{"result":{"type":"done"},"type":"token"}"#),
            Some("token")
        );
        assert_eq!(event_type(r#"{"text":"x"}"#), None);
        // The `"done"` pre-test in `on_packet` relies on this: an escaped
        // tag is not borrowed, so it never reads as `done`.
        assert_eq!(event_type(r#"{"type":"d\u006fne"}"#), None);
        assert_eq!(event_type("[1]"), None);
    }

    #[test]
    fn with_type_tags_objects_only() {
        assert_eq!(
            with_type(json!({"stopped": true}), "done"),
            Some(json!({"type": "done", "stopped": true}))
        );
        assert_eq!(
            with_type(Value::Null, "done"),
            Some(json!({"type": "done"}))
        );
        assert_eq!(with_type(json!([1]), "done"), None);
    }

    #[test]
    fn ws_errors() {
        assert!(matches!(
            classify_ws_error(tungstenite::Error::ConnectionClosed),
            End::Lost(_)
        ));
        assert!(matches!(
            classify_ws_error(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
            )),
            End::Lost(_)
        ));
        match classify_ws_error(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: 2,
                max_size: 1,
            },
        )) {
            End::Failed(e) => assert_eq!(e.code(), Some("payload_too_large")),
            _ => panic!(),
        }
    }
}

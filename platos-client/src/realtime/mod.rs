//! Realtime streaming of a turn: `threads.send` over Socket.IO (docs/realtime.md).
//!
//! Inside, each layer is its own module, read top to bottom: `engineio`
//! (Engine.IO v4 framing over WebSocket text messages), `socketio`
//! (Socket.IO v5 packets inside Engine.IO messages), `dial` (the WebSocket
//! upgrade, the namespace connect and its acknowledgement), `classify`
//! (what each gateway event means, as pure functions), `approvals` (the
//! ordered book of approval answers awaiting the server), `queue` (the
//! bounded hand-off to a stream), `turn` (a turn's phase and hand-off),
//! `connection` (one shared connection: routing, reconnects, stop),
//! `pool` (which connection carries a new turn) and `reconcile` (what
//! became of a turn silent after a reconnect, read over REST).
//!
//! # Connections
//!
//! Turns of one client (and its clones) share connections per namespace
//! and scope: the gateway tags every `agent_event` with `threadId`
//! (docs/realtime.md §3), so a connection routes each event to its turn. A new
//! turn goes to the least loaded connection below
//! [`RealtimeConfig::max_turns_per_connection`]; past that a new connection
//! is dialed, up to [`RealtimeConfig::max_connections`], with at most
//! [`RealtimeConfig::max_concurrent_dials`] handshakes in flight. A
//! connection without turns closes after [`RealtimeConfig::idle_timeout`]
//! (default: at once). On a warm connection a turn's `message` goes out at
//! once and its first event comes one round trip later; a cold one first
//! pays TCP, TLS, the upgrade and the namespace connect.
//!
//! A connection sends its turns' `message`s at once (one live turn per
//! thread). The gateway's refusals (`error {code:"rate_limit"}` then
//! `done`) carry no `threadId`; a refused message hears nothing else and an
//! accepted one always hears its events, so a refusal is attributed by
//! elimination among the unanswered turns, never guessed (docs/realtime.md
//! §5). Untagged `approval_needed` / `approval_resolved` reach every turn of their agent
//! on the connection. With
//! [`SendOptions::dedicated_connection`](SendOptions::dedicated_connection)
//! a turn gets a connection of its own: no neighbours to share a full
//! buffer's grace or a refusal's attribution with,
//! at the price of a full handshake and a socket per turn.
//! [`RealtimeConfig::per_agent_namespace`] connects each turn to its
//! agent's namespace `/agent/{agentId}`, the gateway's announced successor
//! of the shared `/agent`; connections are then shared per agent.
//!
//! Each connection task owns its socket. A turn buffers at most
//! [`RealtimeConfig::turn_buffer_bytes`] (and the client's `stream_buffer`
//! events); when it is full the connection stops reading until the
//! consumer makes room (docs/realtime.md §5): a turn alone on its
//! connection waits as long as its consumer takes, turns that share it
//! wait at most [`RealtimeConfig::backpressure_grace`], after which the full
//! turn alone ends with an explicit `consumer_lagged` error after every
//! event it holds (never silent loss). A dropped connection is redialed once for all its
//! turns (one token refresh through the client's single flight), each live
//! turn's thread is re-joined and each gets a `stream_gap`. `stop`,
//! approval answers and dropping a stream act on their turn alone.
//!
//! # Memory
//!
//! A live turn costs its bookkeeping on the connection and its stream
//! (a few hundred bytes, plus the message text the stream keeps for a
//! check after a reconnect) plus the events it buffers: each buffered
//! `agent_event` shares the bytes of the WebSocket message it came in, so
//! a turn holds at most `turn_buffer_bytes` of messages (plus one message
//! it could not fit, each at most 16 MiB, the largest accepted; gateway
//! events are typically a few hundred bytes). A connection adds an 8 KiB read buffer, unbuffered writes and
//! its TCP/TLS state, shared by its turns. Measured by the `realtime_scale`
//! bench (README, "Realtime at scale"), a concurrent turn together with the
//! task consuming it adds about 3 KB (10,000 turns) to 5 KB (1,000 turns)
//! of peak RSS.
//!
//! On each connection the client waits for the namespace ack and then for
//! the gateway's `connected` event before sending anything: a refused token
//! is announced after the ack (docs/realtime.md §2), and a `message` sent to a
//! socket about to be refused would be lost. Servers that never send
//! `connected` are spoken to 1 s after the ack. After a reconnect the new
//! socket sends `resume_stream` (parity with the other SDKs; current
//! gateways ignore it) and `join_thread`; a `message` of which nothing was
//! heard before the drop is sent again with its `idempotencyKey` (the server
//! runs one turn per key), an answered one never (docs/realtime.md §4).
//!
//! # Items of a [`TurnStream`]
//!
//! - `Ok(event)`: an `agent_event` decoded into [`Event`] (unknown types as
//!   [`Event::Unknown`] with their raw JSON), or a lifecycle event the client
//!   makes: `connected` on every (re)connect, `disconnected {reason}` when a
//!   connection drops, `reconnecting {attempt}` before each new try,
//!   `stream_gap` after a reconnect (events sent while disconnected are lost:
//!   the gateway keeps no per-thread buffer, so refetch `threads.messages`),
//!   `recovered_message` when a turn silent after a reconnect was found
//!   answered in the thread's messages (after a second `stream_gap`; the
//!   stream then ends; docs/realtime.md §6),
//!   and `socket_error {message, code}` for the gateway's socket-level
//!   `error` events that are neither rate limits nor token refusals.
//! - `Err(Error::Decode(_))`: a known event type with a malformed body,
//!   naming the type and the field. **Not terminal**: one bad event does not
//!   lose the rest of the turn; the stream carries on.
//! - Any other `Err` is the **last** item: a rate-limit refusal
//!   ([`Error::RateLimited`] with `retry_after`), a token the server refused
//!   that refresh could not fix ([`Error::Auth`]), reconnect budget exhausted
//!   ([`Error::Network`]), a protocol violation, an oversize message or a
//!   consumer that stopped reading while sharing its connection
//!   ([`Error::Stream`], with an [`Error::stream_code`] such as
//!   `protocol_error`, `payload_too_large`, `consumer_lagged`,
//!   `connect_error`).
//!
//! The stream ends (`None`) after the turn's `done` event.
//!
//! [`Error::RateLimited`]: crate::Error::RateLimited
//! [`Error::Auth`]: crate::Error::Auth
//! [`Error::Network`]: crate::Error::Network
//! [`Error::Stream`]: crate::Error::Stream
//! [`Error::stream_code`]: crate::Error::stream_code

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;

use futures::Stream;
use futures::future::BoxFuture;
use platos_events::Event;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::config::Scope;
use crate::error::{Error, Result};

mod approvals;
mod classify;
mod connection;
mod context;
mod dial;
pub(crate) mod engineio;
mod http;
mod pool;
mod queue;
mod reconcile;
mod rfc3339;
pub(crate) mod socketio;
mod turn;

pub(crate) use context::{Context, Rest, Shared};
pub(crate) use pool::Pool;
pub use pool::RealtimeConfig;

use approvals::Answer;
use connection::{ToConn, TurnCommand};
use queue::Reader;
use turn::{Item, Liveness, Turn, TurnId};

/// Options of one `threads.send` call. Every field is optional; absent
/// fields are left out of the `message` payload (docs/realtime.md §3).
///
/// ```
/// use platos_client::SendOptions;
///
/// let options = SendOptions::new()
///     .agent_id("agent_1")
///     .context("ticket", "T-42")
///     .dynamic_block("customer_tier", "gold")
///     .attachment_id("file_9")
///     .reconnect_attempts(2);
/// assert_eq!(options.agent_id.as_deref(), Some("agent_1"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SendOptions {
    /// `agentId`: the agent that answers.
    pub agent_id: Option<String>,
    /// `contextType`: what the conversation is about (with `context_id`).
    pub context_type: Option<String>,
    /// `contextId`
    pub context_id: Option<String>,
    /// `dynamicBlocks`: values for the agent's dynamic prompt blocks.
    pub dynamic_blocks: Option<BTreeMap<String, String>>,
    /// `attachmentIds`: uploaded files the message refers to.
    pub attachment_ids: Option<Vec<String>>,
    /// `modelLabel`: which of the agent's model routes to use.
    pub model_label: Option<String>,
    /// `replyToMessageId`
    pub reply_to_message_id: Option<String>,
    /// `idempotencyKey`: the server runs a turn once per key. Minted (UUID
    /// v4) when not given, so a message the server already received is
    /// never run twice.
    pub idempotency_key: Option<String>,
    /// Reconnect attempts for this turn, overriding the client's
    /// [`ReconnectConfig::max_attempts`](crate::ReconnectConfig).
    pub reconnect_attempts: Option<u32>,
    /// The scope this turn acts in, overriding the client's default.
    pub scope: Option<Scope>,
    /// Run this turn on a connection of its own instead of a shared one
    /// (see the [module docs](self#connections)).
    pub dedicated_connection: Option<bool>,
    /// End the turn with a `turn_idle` stream error (after sending `stop`,
    /// or closing the request on the HTTP lane, where heartbeats do not
    /// count as events) when no event comes for this long (off by default:
    /// long tool calls and approvals awaiting a human are normal). After a reconnect the
    /// client's [`RealtimeConfig::turn_check_after_reconnect`] applies
    /// until an event comes.
    pub idle_limit: Option<std::time::Duration>,
    /// Which lane carries the turn (see [`Transport`]); the client's choice
    /// ([`Transport::WebSocket`]) when not given.
    pub transport: Option<Transport>,
    /// `outputSchema`: a JSON Schema the answer must satisfy; the result
    /// arrives as a `structured_output` event. Only the HTTP lane carries
    /// it (the socket's `message` has no such field), so a turn with a
    /// schema and no transport goes over HTTP.
    pub output_schema: Option<Value>,
}

/// The lane a turn streams over. Both yield the same [`TurnStream`] of the
/// same [`Event`]s; only the way there differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Socket.IO over WebSocket (docs/wire.md §4): shared connections,
    /// reconnects with `stream_gap`, approvals and `stop` on the socket.
    #[default]
    WebSocket,
    /// Server-sent events over a plain HTTP request (docs/wire.md §8.2):
    /// one request per turn, through proxies that refuse WebSocket
    /// upgrades. Closing the request stops the turn; approvals go over REST;
    /// a lost connection is an error (the lane has no resume).
    Http,
    /// WebSocket first; when the upgrade is answered by something that is
    /// not the Platos gateway (a non-101 answer with an HTML page,
    /// e.g. a proxy's 403 or 502 page), the turn is sent over HTTP instead
    /// and the client (with its clones) keeps using HTTP from then on. A
    /// fallback happens only before the turn was sent, so it never runs
    /// twice.
    Auto,
}

impl SendOptions {
    /// No options: the server's defaults.
    pub fn new() -> Self {
        SendOptions::default()
    }

    crate::request::setters! {
        /// Sets `agentId`.
        agent_id: String,
        /// Sets `contextType` alone.
        context_type: String,
        /// Sets `contextId` alone.
        context_id: String,
        /// Sets `modelLabel`.
        model_label: String,
        /// Sets `replyToMessageId`.
        reply_to_message_id: String,
        /// Sets `idempotencyKey` (1–255 characters from `A–Z a–z 0–9 _ . : -`).
        idempotency_key: String,
        /// Sets the scope of this turn.
        scope: Scope,
    }

    /// Sets `contextType` and `contextId`.
    pub fn context(
        mut self,
        context_type: impl Into<String>,
        context_id: impl Into<String>,
    ) -> Self {
        self.context_type = Some(context_type.into());
        self.context_id = Some(context_id.into());
        self
    }

    /// Adds one entry to `dynamicBlocks`.
    pub fn dynamic_block(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dynamic_blocks
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), value.into());
        self
    }

    /// Replaces `dynamicBlocks`.
    pub fn dynamic_blocks<K, V>(mut self, blocks: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.dynamic_blocks = Some(
            blocks
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Adds one id to `attachmentIds`.
    pub fn attachment_id(mut self, id: impl Into<String>) -> Self {
        self.attachment_ids
            .get_or_insert_with(Vec::new)
            .push(id.into());
        self
    }

    /// Replaces `attachmentIds`.
    pub fn attachment_ids<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.attachment_ids = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`idle_limit`](Self::idle_limit).
    pub fn idle_limit(mut self, limit: std::time::Duration) -> Self {
        self.idle_limit = Some(limit);
        self
    }

    /// Sets how many times this turn may reconnect.
    pub fn reconnect_attempts(mut self, attempts: u32) -> Self {
        self.reconnect_attempts = Some(attempts);
        self
    }

    /// Runs this turn on a connection of its own (see the [module
    /// docs](self#connections)).
    pub fn dedicated_connection(mut self, dedicated: bool) -> Self {
        self.dedicated_connection = Some(dedicated);
        self
    }

    /// Chooses the lane (see [`Transport`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Sets `outputSchema`, a JSON Schema object (see
    /// [`output_schema`](Self::output_schema) the field, and
    /// `Threads::ask_typed` for a schema made from a Rust type).
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }
}

/// The lane a client remembers after an automatic fallback, shared by its
/// clones: 0 until a fallback happens, then `HTTP`.
#[derive(Debug, Default)]
pub(crate) struct LaneMemory(AtomicU8);

const HTTP: u8 = 1;

impl LaneMemory {
    fn http(&self) -> bool {
        self.0.load(Ordering::Relaxed) == HTTP
    }

    fn remember_http(&self) {
        self.0.store(HTTP, Ordering::Relaxed);
    }
}

/// The lane a turn takes, from its options and what the client remembers.
fn lane_of(client: &Context, options: &SendOptions) -> Result<(Transport, bool)> {
    let auto_http = client.shared().pool.lanes().http();
    match (options.transport, &options.output_schema) {
        (Some(Transport::WebSocket), Some(_)) => Err(Error::config(
            "outputSchema travels only on the HTTP lane: use Transport::Http or Transport::Auto",
        )),
        (Some(Transport::Http), _) | (None, Some(_)) | (Some(Transport::Auto), Some(_)) => {
            Ok((Transport::Http, false))
        }
        (Some(Transport::Auto), None) if auto_http => Ok((Transport::Http, false)),
        (Some(Transport::Auto), None) => Ok((Transport::WebSocket, true)),
        _ => Ok((Transport::WebSocket, false)),
    }
}

/// The body of `POST /threads/{threadId}/stream` (docs/wire.md §8.2): the
/// `message` payload less what the route does not read (the thread is in
/// the path, the key in the `idempotency-key` header), plus `outputSchema`.
fn http_body(mut payload: Value, options: &SendOptions) -> (Value, String) {
    let mut key = String::new();
    if let Value::Object(map) = &mut payload {
        for field in ["threadId", "contextType", "contextId", "replyToMessageId"] {
            map.remove(field);
        }
        if let Some(Value::String(k)) = map.remove("idempotencyKey") {
            key = k;
        }
        if let Some(schema) = &options.output_schema {
            map.insert("outputSchema".into(), schema.clone());
        }
    }
    (payload, key)
}

/// The `message` event's payload (docs/realtime.md §3): absent options are left out.
fn message_payload(thread_id: &str, message: &str, options: &SendOptions) -> Value {
    let mut payload = Map::new();
    payload.insert("message".into(), message.into());
    payload.insert("threadId".into(), thread_id.into());
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            payload.insert(key.into(), value);
        }
    };
    put("agentId", options.agent_id.clone().map(Value::from));
    put("contextType", options.context_type.clone().map(Value::from));
    put("contextId", options.context_id.clone().map(Value::from));
    put(
        "dynamicBlocks",
        options.dynamic_blocks.as_ref().map(|blocks| {
            Value::Object(
                blocks
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            )
        }),
    );
    put(
        "attachmentIds",
        options.attachment_ids.clone().map(Value::from),
    );
    put("modelLabel", options.model_label.clone().map(Value::from));
    put(
        "replyToMessageId",
        options.reply_to_message_id.clone().map(Value::from),
    );
    let key = options
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    put("idempotencyKey", Some(Value::from(key)));
    Value::Object(payload)
}

/// Starts a turn: sends `message` to `thread_id` and streams the answer.
///
/// The turn is placed on a connection right away (see the [module
/// docs](self#connections)); called outside a Tokio runtime, the stream
/// yields one configuration error.
pub(crate) fn send(
    client: &Context,
    thread_id: String,
    message: String,
    options: SendOptions,
) -> TurnStream {
    // One key for the turn whichever lane carries it (an automatic turn
    // may move to HTTP).
    let mut options = options;
    options
        .idempotency_key
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    let client = match &options.scope {
        Some(scope) => client.with_scope(scope.clone()),
        None => client.clone(),
    };
    let shared = client.shared();
    let id = shared.pool.next_turn_id();
    let lane = match tokio::runtime::Handle::try_current() {
        Err(_) => Err(Error::config(
            "threads.send needs a Tokio runtime (call it from within one)",
        )),
        Ok(_) => lane_of(&client, &options),
    };
    let fallback = match lane {
        Ok((Transport::Http, _)) => return send_http(&client, id, thread_id, &message, &options),
        Ok((_, fallback)) => fallback,
        Err(_) => false,
    };
    let (events, reader) =
        queue::queue(shared.stream_buffer, shared.pool.config().turn_buffer_bytes);
    let placed = lane.and_then(|_| namespace_of(&shared.namespace, shared.pool.config(), &options));
    let commands = match placed {
        Ok(namespace) => {
            let payload = message_payload(&thread_id, &message, &options);
            let budget = options
                .reconnect_attempts
                .unwrap_or(shared.reconnect.max_attempts);
            let turn = Turn::new(
                id,
                thread_id.clone(),
                options.agent_id.clone(),
                budget,
                payload,
                Liveness {
                    idle: options.idle_limit,
                    after_reconnect: shared.pool.config().turn_check_after_reconnect,
                },
                events,
            )
            .with_span(turn::span(&thread_id, "websocket"));
            let dedicated = options.dedicated_connection == Some(true);
            shared.pool.place(&client, namespace, turn, dedicated)
        }
        Err(error) => {
            events.finish(Some(error));
            // A closed channel: the handle's calls find the turn over.
            mpsc::unbounded_channel().0
        }
    };
    let commands = Commands::Socket(commands);
    let message_for_check = message.clone();
    let fallback = fallback.then(|| {
        Box::new(Fallback {
            client: client.clone(),
            message,
            options,
        })
    });
    TurnStream {
        events: Source::Socket(reader),
        check: Check::armed(&client, message_for_check),
        handle: TurnHandle {
            thread_id,
            turn: id,
            commands,
            ack_timeout: shared.timeout,
            client: client.clone(),
        },
        fallback,
        delivered: false,
    }
}

/// Starts the turn on the HTTP lane.
fn send_http(
    client: &Context,
    id: TurnId,
    thread_id: String,
    message: &str,
    options: &SendOptions,
) -> TurnStream {
    let shared = client.shared();
    let (body, key) = http_body(message_payload(&thread_id, message, options), options);
    let watch = http::Watch {
        idle: options.idle_limit,
        silence: shared.pool.config().http_silence,
    };
    let (reader, commands) = http::start(
        client.clone(),
        &thread_id,
        body,
        key,
        shared.stream_buffer,
        watch,
    );
    TurnStream {
        events: Source::Http(reader),
        // The HTTP lane has no reconnects, so nothing to check after one.
        check: Check::armed(client, message.to_owned()),
        handle: TurnHandle {
            thread_id,
            turn: id,
            commands: Commands::Http(commands),
            ack_timeout: shared.timeout,
            client: client.clone(),
        },
        fallback: None,
        delivered: false,
    }
}

/// What an automatic turn needs to move to the HTTP lane.
struct Fallback {
    client: Context,
    message: String,
    options: SendOptions,
}

/// The namespace a turn connects to: the client's, or with
/// [`RealtimeConfig::per_agent_namespace`] its agent's `/agent/{agentId}`.
fn namespace_of(base: &str, config: &RealtimeConfig, options: &SendOptions) -> Result<String> {
    match &options.agent_id {
        Some(agent) if config.per_agent_namespace => {
            // A `,` would end the namespace inside a Socket.IO packet.
            let safe = !agent.is_empty()
                && agent
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
            if !safe {
                return Err(Error::config(format!(
                    "agent id {agent:?} cannot name a namespace (use A-Z a-z 0-9 - _ . :)"
                )));
            }
            Ok(format!("{}/{agent}", base.trim_end_matches('/')))
        }
        _ => Ok(base.to_owned()),
    }
}

/// The answer to a [`threads.send`](crate::PlatosClient) call: a stream of
/// [`Event`]s ending after the turn's `done` (see the [module
/// docs](self) for what the items mean).
///
/// Dropping the stream before `done` sends `stop {threadId}` so the turn
/// stops (and stops costing) server-side; its connection does that in the
/// background (and closes when no turn is left on it), `Drop` never blocks.
///
/// ```no_run
/// # async fn demo(client: platos_client::PlatosClient) -> platos_client::Result<()> {
/// use futures::StreamExt;
/// use platos_client::Decision;
/// use platos_events::Event;
///
/// let mut stream = client.threads().send("thread_1", "Hello!");
/// while let Some(event) = stream.next().await {
///     match event? {
///         Event::Token(token) => print!("{}", token.text),
///         Event::ApprovalNeeded(approval) => {
///             stream.approval_response(approval.approval_id.clone(), Decision::approve()).await?;
///         }
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use = "a turn runs while its stream is alive; dropping it stops the turn"]
pub struct TurnStream {
    events: Source,
    /// The check of a turn gone silent after a reconnect (`reconcile`).
    check: Check,
    handle: TurnHandle,
    /// Set for a [`Transport::Auto`] turn on the socket lane until its first item.
    fallback: Option<Box<Fallback>>,
    /// An item was handed out: the turn can no longer change lanes.
    delivered: bool,
}

/// Where a stream's items come from.
enum Source {
    Socket(Reader<Item>),
    Http(http::Receiver),
}

impl Source {
    fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<Result<Item>>> {
        match self {
            Source::Socket(reader) => reader.poll_pop(cx),
            Source::Http(reader) => reader.poll_recv(cx),
        }
    }

    fn lane(&self) -> Transport {
        match self {
            Source::Socket(_) => Transport::WebSocket,
            Source::Http(_) => Transport::Http,
        }
    }

    fn len(&self) -> usize {
        match self {
            Source::Socket(reader) => reader.len(),
            Source::Http(reader) => reader.len(),
        }
    }
}

/// Where a stream is with the check of its turn over REST.
enum Check {
    /// Not needed so far; what it would need.
    Armed {
        client: Context,
        message: String,
        /// When the turn was asked for, by this machine's clock.
        sent_at: std::time::SystemTime,
    },
    /// Reading the thread's messages. (In a mutex only so the stream stays
    /// `Sync`; it is reached through `&mut`, never locked.)
    Running(std::sync::Mutex<BoxFuture<'static, Vec<Result<Event>>>>),
    /// Its verdict, yielded in order; the stream ends after it.
    Done(std::vec::IntoIter<Result<Event>>),
}

impl Check {
    /// Not needed yet: what a check would need, stamped now.
    fn armed(client: &Context, message: String) -> Self {
        Check::Armed {
            client: client.clone(),
            message,
            sent_at: std::time::SystemTime::now(),
        }
    }
}

impl TurnStream {
    /// The thread this turn runs in.
    pub fn thread_id(&self) -> &str {
        &self.handle.thread_id
    }

    /// The lane the turn streams over now: [`Transport::WebSocket`] or
    /// [`Transport::Http`] (an automatic turn tells which it took once its
    /// first item is read).
    pub fn transport(&self) -> Transport {
        self.events.lane()
    }

    /// Asks the server to stop the turn (`stop {threadId}`). The stream
    /// then yields what the server still sends, normally a `done` with
    /// `stopped: true`, and ends; if the server does not answer within a
    /// few seconds the connection is closed and the stream ends anyway.
    /// On the HTTP lane the request is closed, which stops the turn, and
    /// the stream ends at once.
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Answers an `approval_needed` event with `decision` over the socket
    /// (`approval_response {approvalId, approved, comment?}`) and waits for
    /// the server's `approval_ack`. The same decision can be made over REST
    /// with `approvals().resolve`, which is what this call does on the HTTP
    /// lane (the lane cannot send anything once the request is made) and
    /// for a decision with edited arguments (the socket has no field for
    /// them).
    ///
    /// Fails with [`Error::Stream`] (code
    /// `approval_response_error`) when the server refuses it, with a
    /// network error when the turn or its connection ends first, and with a
    /// timeout when no acknowledgement comes within the client's timeout.
    pub async fn approval_response(
        &self,
        approval_id: impl Into<String>,
        decision: crate::Decision,
    ) -> Result<()> {
        self.handle.approval_response(approval_id, decision).await
    }

    /// A cloneable handle to stop the turn or answer approvals from another
    /// task while this stream is being read.
    pub fn handle(&self) -> TurnHandle {
        self.handle.clone()
    }

    /// Reads the turn to its end and gives it as one value, the same
    /// [`TurnResult`](crate::TurnResult) the one-shot calls answer (on either lane).
    ///
    /// The turn is read to its end even when an event is malformed; the
    /// first such decode error is then returned rather than a result that
    /// misses an event. A terminal stream error is returned as is. Turns
    /// that need an approval must be answered from another task (see
    /// [`handle`](Self::handle)): this call does not return before `done`.
    pub async fn collect_turn(mut self) -> Result<crate::TurnResult> {
        use futures::StreamExt;
        let mut events = Vec::new();
        let mut malformed = None;
        while let Some(item) = self.next().await {
            match item {
                Ok(event) => events.push(event),
                Err(e @ Error::Decode(_)) => {
                    malformed.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match malformed {
            Some(e) => Err(e),
            None => Ok(crate::TurnResult::from_events(
                self.handle.thread_id.clone(),
                events,
            )),
        }
    }

    /// Reads the turn to its end and decodes its structured answer into `T`
    /// (see [`crate::structured`]). Send the turn with `T`'s schema, e.g.
    /// with [`Threads::ask_structured`](crate::requests::Threads::ask_structured).
    pub async fn collect_structured<T: serde::de::DeserializeOwned>(
        self,
    ) -> Result<crate::Structured<T>> {
        self.collect_turn().await?.structured()
    }
}

impl Drop for TurnStream {
    fn drop(&mut self) {
        // Fails only when the connection is gone, and the turn with it.
        self.handle.command(TurnCommand::Dropped);
    }
}

impl Stream for TurnStream {
    type Item = Result<Event>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.check {
                Check::Armed { .. } => break,
                Check::Running(check) => {
                    let check = check.get_mut().unwrap_or_else(|e| e.into_inner());
                    let items = std::task::ready!(check.as_mut().poll(cx));
                    this.check = Check::Done(items.into_iter());
                }
                Check::Done(items) => return Poll::Ready(items.next()),
            }
        }
        let mut item = std::task::ready!(this.events.poll_next(cx));
        if let Some(Err(e)) = &item
            && !this.delivered
            && e.stream_code() == Some(crate::error::StreamCode::UpgradeBlocked)
            && let Some(fallback) = this.fallback.take()
        {
            // Nothing was sent on the socket (the upgrade failed), so the
            // turn goes over HTTP with the same idempotency key.
            tracing::debug!(
                reason = e.message(),
                "WebSocket refused; the turn goes over HTTP"
            );
            let client = &fallback.client;
            client.shared().pool.lanes().remember_http();
            let mut replacement = send_http(
                client,
                this.handle.turn,
                this.handle.thread_id.clone(),
                &fallback.message,
                &fallback.options,
            );
            std::mem::swap(&mut this.events, &mut replacement.events);
            std::mem::swap(&mut this.handle, &mut replacement.handle);
            // `replacement` now holds the socket turn: dropping it tells
            // its (failed) connection to forget it.
            drop(replacement);
            item = std::task::ready!(this.events.poll_next(cx));
        }
        if item.is_some() {
            this.delivered = true;
            this.fallback = None;
        }
        if let Some(Ok(Item::Check(silent))) = item {
            let Check::Armed {
                client,
                message,
                sent_at,
            } = std::mem::replace(&mut this.check, Check::Done(Vec::new().into_iter()))
            else {
                return Poll::Ready(None);
            };
            let thread = this.handle.thread_id.clone();
            let check =
                async move { reconcile::check(&client, &thread, &message, sent_at, silent).await };
            this.check = Check::Running(std::sync::Mutex::new(Box::pin(check)));
            return self.poll_next(cx);
        }
        Poll::Ready(item.map(|item| match item {
            Ok(Item::AgentJson { frame, start, end }) => match frame.get(start..end) {
                Some(json) => Event::from_json(json).map_err(decode_error),
                None => Err(Error::decode(
                    None,
                    "agent_event",
                    "frame slice out of range",
                    b"",
                )),
            },
            Ok(Item::AgentValue(payload)) => decode_agent_event(payload),
            Ok(Item::Event(event)) => Ok(*event),
            // Handled above; a second one has nothing left to check.
            Ok(Item::Check(_)) => Err(Error::stream_of(
                crate::error::StreamCode::TurnLost,
                "the turn went silent after a reconnect",
            )),
            // The terminal error, after the last event.
            Err(error) => Err(error),
        }))
    }
}

/// Decodes an `agent_event` payload; a known type with a malformed body is
/// a decode error naming the type and the field.
pub(crate) fn decode_agent_event(data: Value) -> Result<Event> {
    Event::from_value(data).map_err(decode_error)
}

/// An event decode error as an SDK error: its path is `<type>.<field>`,
/// or the type alone for the event object itself.
fn decode_error(e: platos_events::DecodeError) -> Error {
    let path = match (e.kind(), e.path()) {
        (Some(kind), Some(".") | Some("") | None) => kind.to_owned(),
        (Some(kind), Some(path)) => format!("{kind}.{path}"),
        (None, _) => "agent_event".to_owned(),
    };
    Error::decode(None, path, e.to_string(), b"")
}

impl fmt::Debug for TurnStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnStream")
            .field("thread_id", &self.handle.thread_id)
            .field("buffered", &self.events.len())
            .field("lane", &self.events.lane())
            .finish_non_exhaustive()
    }
}

/// Stops a turn or answers its approvals from anywhere; obtained from
/// [`TurnStream::handle`]. Cheap to clone. Once the turn has ended its
/// calls do nothing ([`stop`](Self::stop)) or fail
/// ([`approval_response`](Self::approval_response)).
#[derive(Clone)]
pub struct TurnHandle {
    thread_id: String,
    turn: TurnId,
    commands: Commands,
    ack_timeout: std::time::Duration,
    /// For decisions that go over REST.
    client: Context,
}

/// Where a turn's commands go: its connection (which also takes the
/// pool's `Attach`), or its HTTP task (which takes turn commands only).
#[derive(Clone)]
enum Commands {
    Socket(mpsc::UnboundedSender<ToConn>),
    Http(mpsc::UnboundedSender<TurnCommand>),
}

impl TurnHandle {
    /// See [`TurnStream::stop`].
    pub fn stop(&self) {
        // Fails only when the turn is over, when there is nothing to stop.
        self.command(TurnCommand::Stop);
    }

    /// Sends a command; false when the turn is over.
    fn command(&self, command: TurnCommand) -> bool {
        match &self.commands {
            Commands::Socket(commands) => commands.send(ToConn::Turn(self.turn, command)).is_ok(),
            Commands::Http(commands) => commands.send(command).is_ok(),
        }
    }

    /// See [`TurnStream::approval_response`].
    pub async fn approval_response(
        &self,
        approval_id: impl Into<String>,
        decision: crate::Decision,
    ) -> Result<()> {
        let approval_id = approval_id.into();
        if decision.edited_args().is_some() {
            return approvals::resolve_over_rest(&self.client, approval_id, &decision).await;
        }
        let (reply, answer) = oneshot::channel();
        let ended = || Error::network("the turn ended before the approval was sent", None);
        let sent = self.command(TurnCommand::Approve(Answer {
            approval_id,
            decision,
            reply,
        }));
        if !sent {
            return Err(ended());
        }
        match tokio::time::timeout(self.ack_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ended()),
            Err(_) => Err(Error::timeout(
                "no approval_ack from the server within the client timeout",
                None,
            )),
        }
    }
}

impl fmt::Debug for TurnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnHandle")
            .field("thread_id", &self.thread_id)
            .finish_non_exhaustive()
    }
}

/// A frame that is not valid Engine.IO / Socket.IO.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProtocolError {
    message: String,
}

/// How much of an offending frame an error quotes.
const EXCERPT_CHARS: usize = 120;

impl ProtocolError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ProtocolError {
            message: message.into(),
        }
    }

    /// An error quoting the start of the offending frame (server-sent
    /// frames only: the frames we send carry the token).
    pub(crate) fn with_excerpt(message: impl Into<String>, frame: &str) -> Self {
        let mut message = message.into();
        let excerpt: String = frame.chars().take(EXCERPT_CHARS).collect();
        message.push_str(" (frame: `");
        message.push_str(&excerpt);
        if excerpt.len() < frame.len() {
            message.push('…');
        }
        message.push_str("`)");
        ProtocolError { message }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::stream_of(crate::error::StreamCode::ProtocolError, e.message)
    }
}

/// The same error again, for each turn of a connection that fails as a
/// whole (errors are not `Clone`: a source error cannot be copied, so a
/// copy keeps its message).
pub(crate) fn replicate(error: &Error) -> Error {
    match error {
        Error::Auth(api) => Error::Auth(api.clone()),
        Error::NotFound(api) => Error::NotFound(api.clone()),
        Error::Validation(api) => Error::Validation(api.clone()),
        Error::RateLimited(api) => Error::RateLimited(api.clone()),
        Error::Server(api) => Error::Server(api.clone()),
        Error::Refused(api) => Error::Refused(api.clone()),
        Error::Network(e) => Error::network(e.message.clone(), None),
        Error::Proxy(e) => Error::proxy(e.message.clone()),
        Error::Timeout(e) => Error::timeout(e.message.clone(), None),
        Error::Decode(e) => Error::Decode(e.clone()),
        Error::Config(message) => Error::Config(message.clone()),
        Error::Stream(e) => Error::Stream(e.clone()),
        Error::Upload(e) => Error::Upload(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_payload_omits_absent_options_and_mints_a_key() {
        let a = message_payload("t1", "hi", &SendOptions::new());
        let b = message_payload("t1", "hi", &SendOptions::new());
        let key = a["idempotencyKey"].as_str().unwrap().to_owned();
        assert_eq!(
            uuid::Uuid::parse_str(&key).map(|u| u.get_version_num()),
            Ok(4)
        );
        assert_ne!(a["idempotencyKey"], b["idempotencyKey"]);
        assert_eq!(
            a,
            json!({"message": "hi", "threadId": "t1", "idempotencyKey": key})
        );
    }

    #[test]
    fn message_payload_carries_every_option() {
        let options = SendOptions::new()
            .agent_id("a1")
            .context("ticket", "T-1")
            .dynamic_block("tier", "gold")
            .dynamic_block("lang", "fr")
            .attachment_id("f1")
            .attachment_id("f2")
            .model_label("fast")
            .reply_to_message_id("m0")
            .idempotency_key("key-1")
            .reconnect_attempts(1);
        assert_eq!(
            message_payload("t1", "hi", &options),
            json!({
                "message": "hi",
                "threadId": "t1",
                "agentId": "a1",
                "contextType": "ticket",
                "contextId": "T-1",
                "dynamicBlocks": {"tier": "gold", "lang": "fr"},
                "attachmentIds": ["f1", "f2"],
                "modelLabel": "fast",
                "replyToMessageId": "m0",
                "idempotencyKey": "key-1",
            })
        );
    }

    #[test]
    fn the_http_body_keeps_what_the_stream_route_reads_and_moves_the_key_to_a_header() {
        let options = SendOptions::new()
            .agent_id("a1")
            .context("ticket", "T-1")
            .dynamic_block("tier", "gold")
            .attachment_id("f1")
            .model_label("fast")
            .reply_to_message_id("m0")
            .idempotency_key("key-1")
            .output_schema(json!({"type": "object"}));
        let (body, key) = http_body(message_payload("t1", "hi", &options), &options);
        assert_eq!(key, "key-1");
        assert_eq!(
            body,
            json!({
                "message": "hi",
                "agentId": "a1",
                "dynamicBlocks": {"tier": "gold"},
                "attachmentIds": ["f1"],
                "modelLabel": "fast",
                "outputSchema": {"type": "object"},
            })
        );
    }

    #[test]
    fn the_lane_follows_the_options_and_what_the_client_remembers() {
        let client = crate::PlatosClient::builder()
            .base_url("http://127.0.0.1:9")
            .session_token("t")
            .build()
            .unwrap()
            .realtime_context();
        let lane = |options: SendOptions| lane_of(&client, &options).map_err(|e| e.to_string());
        let schema = || json!({"type": "object"});
        assert_eq!(lane(SendOptions::new()), Ok((Transport::WebSocket, false)));
        let http = SendOptions::new().transport(Transport::Http);
        assert_eq!(lane(http), Ok((Transport::Http, false)));
        let auto = SendOptions::new().transport(Transport::Auto);
        assert_eq!(lane(auto.clone()), Ok((Transport::WebSocket, true)));
        // A schema only travels over HTTP.
        assert_eq!(
            lane(SendOptions::new().output_schema(schema())),
            Ok((Transport::Http, false))
        );
        let ws = SendOptions::new().transport(Transport::WebSocket);
        assert!(lane(ws.output_schema(schema())).is_err());
        // After a fallback, every clone goes straight to HTTP.
        client.clone().shared().pool.lanes().remember_http();
        assert_eq!(lane(auto), Ok((Transport::Http, false)));
    }

    #[test]
    fn malformed_known_events_name_type_and_field() {
        let e = decode_agent_event(json!({"type": "token", "text": 5})).unwrap_err();
        assert!(matches!(e, Error::Decode(_)));
        assert_eq!(e.decode_path(), Some("token.text"));
        assert!(e.message().contains("token"), "{}", e.message());

        let e = decode_agent_event(json!({"type": "tool_call", "params": {}})).unwrap_err();
        assert!(e.decode_path().unwrap().starts_with("tool_call"), "{e}");

        let e = decode_agent_event(json!("nope")).unwrap_err();
        assert_eq!(e.decode_path(), Some("agent_event"));

        let unknown = decode_agent_event(json!({"type": "brand_new", "x": 1})).unwrap();
        assert_eq!(unknown.to_value(), json!({"type": "brand_new", "x": 1}));
    }

    #[test]
    fn protocol_errors_become_stream_errors() {
        let e: Error = ProtocolError::new("bad").into();
        assert_eq!(e.code(), Some("protocol_error"));
        assert_eq!(e.message(), "bad");
    }

    #[test]
    fn a_stream_without_a_runtime_yields_one_config_error() {
        let client = crate::PlatosClient::builder()
            .base_url("http://127.0.0.1:9")
            .session_token("t")
            .build()
            .unwrap()
            .realtime_context();
        let stream = send(&client, "t1".into(), "hi".into(), SendOptions::new());
        let items: Vec<_> = futures::executor::block_on_stream(stream).collect();
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(Error::Config(_))));
    }
}

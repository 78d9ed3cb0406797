//! One turn as its connection sees it: where it is in its life ([`Phase`])
//! and the bounded hand-off to its [`TurnStream`](super::TurnStream).
//!
//! A full hand-off keeps what it could not take ([`Turn::push`]) and the
//! connection stops reading until the consumer makes room
//! (docs/realtime.md §5): backpressure, not loss.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use platos_events::Event;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::queue::{Refused, Weigh, Writer};
use crate::error::{Error, StreamCode};

/// Identifies a turn within its client.
pub(crate) type TurnId = u64;

/// What the connection hands the stream.
///
/// `agent_event`s are decoded by the stream, on the consumer's thread: the
/// connection only checks the frame and reads its routing fields, so it
/// stays quick to answer pings, decoding runs beside the socket reading,
/// and every allocation of a decoded event is made and freed by one thread
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
    /// The turn went silent after a reconnect: the stream reads the
    /// thread's messages to learn its fate (`reconcile`), then ends.
    Check(Duration),
}

/// What an item a stream did not yet read is counted as: its frame's
/// bytes, shared or not (a frame shared by several turns counts in each).
const MADE_ITEM_BYTES: usize = 256;

impl Weigh for Item {
    fn weight(&self) -> usize {
        match self {
            Item::AgentJson { frame, .. } => frame.len(),
            Item::AgentValue(_) | Item::Event(_) => MADE_ITEM_BYTES,
            Item::Check(_) => 0,
        }
    }
}

impl Item {
    pub(crate) fn made(event: Event) -> Item {
        Item::Event(Box::new(event))
    }

    /// The same item for a second turn (approval events reach every turn
    /// of their agent); frames are shared, not copied.
    pub(crate) fn share(&self) -> Item {
        match self {
            Item::AgentJson { frame, start, end } => Item::AgentJson {
                frame: frame.clone(),
                start: *start,
                end: *end,
            },
            Item::AgentValue(value) => Item::AgentValue(value.clone()),
            Item::Event(event) => Item::Event(event.clone()),
            Item::Check(silent) => Item::Check(*silent),
        }
    }
}

/// Where a turn is.
pub(crate) enum Phase {
    /// Its `message` waits for a ready connection and for no other live
    /// turn of its thread.
    Queued { message: Value },
    /// The message went out on the current connection and nothing of the
    /// turn was heard yet. If that connection is lost, the message is sent
    /// again after the reconnect with the same `idempotencyKey` (the server
    /// runs one turn per key): a drop right after the handshake may have
    /// swallowed it, and waiting for a turn that never started would end
    /// only with the lost-turn check.
    Sent { message: Value },
    /// The server answered; events flow. The message is never sent again.
    Live,
    /// `stop` was asked for; `sent` once it went out on a connection. The
    /// turn ends at its `done`, or when the stop grace passes.
    Stopping { sent: bool },
}

/// How long a started turn may stay silent, and what silence means.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Liveness {
    /// The caller's idle limit (off by default): silence this long ends the
    /// turn with `turn_idle`.
    pub(crate) idle: Option<Duration>,
    /// After a reconnect, silence this long gets the turn checked over REST.
    pub(crate) after_reconnect: Duration,
}

/// Which silence limit applies to a started turn now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Silence {
    /// Events flow on the connection that sent the message (or one since):
    /// the caller's idle limit, if any.
    Normal,
    /// Reconnected and nothing heard since: the turn may have died with
    /// the gateway that ran it.
    Reconnected,
}

/// The consumer dropped the stream.
#[derive(Debug)]
pub(crate) struct Gone;

/// The stream error of a turn that heard nothing for its idle limit (on
/// either lane; the turn is stopped).
pub(crate) fn idle_error(limit: Duration) -> Error {
    Error::stream_of(
        StreamCode::TurnIdle,
        format!(
            "no event for {} s, the turn's idle limit; the turn was stopped",
            limit.as_secs_f64()
        ),
    )
}

pub(crate) struct Turn {
    pub(crate) id: TurnId,
    pub(crate) thread_id: String,
    /// The agent that answers, when known: untagged approval events go to
    /// the turns of their agent.
    pub(crate) agent_id: Option<String>,
    /// Reconnects this turn accepts.
    pub(crate) budget: u32,
    pub(crate) phase: Phase,
    /// The stream was given `connected` for the current connection, so a
    /// loss is announced with `disconnected`.
    pub(crate) announced: bool,
    /// Items were added since the stream was last woken.
    pub(crate) unflushed: bool,
    pub(crate) liveness: Liveness,
    pub(crate) silence: Silence,
    /// When the turn last heard from the server (or was (re)started),
    /// kept only while a silence limit applies.
    pub(crate) heard_at: Instant,
    events: Writer<Item>,
    /// Items the full hand-off could not take yet, in order; while any
    /// wait, the connection reads nothing (at most one frame's worth).
    held: VecDeque<Item>,
    /// `platos.turn` ([`span`]): open while the turn is, fields recorded as
    /// they become known.
    pub(crate) span: tracing::Span,
    reconnects: u32,
    delivered: u64,
    /// How the turn ends when it ends without an error.
    ending: Ending,
}

/// The span of one turn, on either lane, a child of the caller's current
/// span: `thread_id` and `transport` at once, `connection` (the client's
/// number for it) when placed, `reconnects` as they happen, then `events`
/// handed to the stream and `outcome` ([`Ending`]) when it closes. Ids and counts only: never the message, an
/// event's content or a credential.
pub(crate) fn span(thread_id: &str, transport: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: "platos_client::turn",
        "platos.turn",
        thread_id = %thread_id,
        transport,
        connection = tracing::field::Empty,
        reconnects = 0u32,
        events = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// How a turn ended, on either lane, as its span records it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ending {
    /// The turn's `done` arrived.
    Done,
    /// `stop` was asked for (the server's final `done` or the grace ended it).
    Stopped,
    /// The consumer dropped the stream.
    Dropped,
    /// Silent after a reconnect: handed to the stream's REST check.
    Checked,
    /// The HTTP lane's body ended after the turn's `error` event.
    ErrorEvent,
    /// Nothing could reach the connection any more.
    Orphaned,
    /// The stream ended with this error (its code, else its kind).
    Failed(String),
}

impl Ending {
    pub(crate) fn failed(error: &Error) -> Ending {
        Ending::Failed(error.code().unwrap_or(error.kind()).to_owned())
    }

    fn as_str(&self) -> &str {
        match self {
            Ending::Done => "done",
            Ending::Stopped => "stopped",
            Ending::Dropped => "dropped",
            Ending::Checked => "checked",
            Ending::ErrorEvent => "error_event",
            Ending::Orphaned => "orphaned",
            Ending::Failed(code) => code,
        }
    }

    /// Closes the record of a turn: `events` handed to its stream, and how
    /// it ended.
    pub(crate) fn record(&self, span: &tracing::Span, events: u64) {
        span.record("events", events);
        span.record("outcome", self.as_str());
        tracing::debug!(parent: span, "turn ended");
    }
}

impl Turn {
    pub(crate) fn new(
        id: TurnId,
        thread_id: String,
        agent_id: Option<String>,
        budget: u32,
        message: Value,
        liveness: Liveness,
        events: Writer<Item>,
    ) -> Turn {
        Turn {
            id,
            thread_id,
            agent_id,
            budget,
            phase: Phase::Queued { message },
            announced: false,
            unflushed: false,
            liveness,
            silence: Silence::Normal,
            heard_at: Instant::now(),
            events,
            held: VecDeque::new(),
            span: tracing::Span::none(),
            reconnects: 0,
            delivered: 0,
            ending: Ending::Orphaned,
        }
    }

    /// Gives the turn its span (the socket lane's, see [`span`]).
    pub(crate) fn with_span(mut self, span: tracing::Span) -> Turn {
        self.span = span;
        self
    }

    /// The connection numbered `id` carries the turn.
    pub(crate) fn placed_on(&self, id: u64) {
        self.span.record("connection", id);
    }

    /// The turn lives through one more reconnect.
    pub(crate) fn reconnecting(&mut self) {
        self.reconnects += 1;
        self.span.record("reconnects", self.reconnects);
    }

    /// How the turn ends if it ends without an error (`done`, `stopped`…).
    pub(crate) fn ends_as(&mut self, ending: Ending) {
        self.ending = ending;
    }

    /// The silence this turn is allowed now, if any.
    pub(crate) fn silence_limit(&self) -> Option<Duration> {
        match self.silence {
            Silence::Normal => self.liveness.idle,
            Silence::Reconnected => Some(self.liveness.after_reconnect),
        }
    }

    /// When its silence limit runs out, if one applies.
    pub(crate) fn silent_at(&self) -> Option<Instant> {
        self.silence_limit().map(|limit| self.heard_at + limit)
    }

    /// The server spoke for this turn; `reconnected` starts the watch that
    /// follows a reconnect. Returns the new deadline, if any.
    pub(crate) fn heard(&mut self, silence: Silence, now: Instant) -> Option<Instant> {
        self.silence = silence;
        if self.silence_limit().is_some() {
            self.heard_at = now;
        }
        self.silent_at()
    }

    /// After a lost connection: a message nothing was heard of goes back to
    /// the queue, to be sent again with its key. True when it did.
    pub(crate) fn requeue_unanswered(&mut self) -> bool {
        match std::mem::replace(&mut self.phase, Phase::Live) {
            Phase::Sent { message } => {
                self.phase = Phase::Queued { message };
                true
            }
            other => {
                self.phase = other;
                false
            }
        }
    }

    /// The server spoke for this turn: its message is answered. True when
    /// this is the first word since it was sent.
    pub(crate) fn answered(&mut self) -> bool {
        let first = matches!(self.phase, Phase::Sent { .. });
        if first {
            self.phase = Phase::Live;
        }
        first
    }

    /// Whether the turn's message went out.
    pub(crate) fn started(&self) -> bool {
        !matches!(self.phase, Phase::Queued { .. })
    }

    /// Hands one item to the stream without waiting; a full hand-off keeps
    /// it (see [`is_full`](Self::is_full)).
    pub(crate) fn push(&mut self, item: Item) -> Result<(), Gone> {
        self.delivered += 1;
        if !self.held.is_empty() {
            self.held.push_back(item);
            return Ok(());
        }
        match self.events.try_push(item) {
            Ok(()) => {
                self.unflushed = true;
                Ok(())
            }
            Err(Refused::Full(item)) => {
                self.held.push_back(item);
                Ok(())
            }
            Err(Refused::Gone) => Err(Gone),
        }
    }

    /// Whether items wait for room in the hand-off.
    pub(crate) fn is_full(&self) -> bool {
        !self.held.is_empty()
    }

    /// Moves held items into the hand-off while it has room.
    pub(crate) fn release(&mut self) -> Result<(), Gone> {
        while let Some(item) = self.held.pop_front() {
            match self.events.try_push(item) {
                Ok(()) => self.unflushed = true,
                Err(Refused::Full(item)) => {
                    self.held.push_front(item);
                    break;
                }
                Err(Refused::Gone) => return Err(Gone),
            }
        }
        Ok(())
    }

    /// Where the hand-off signals that it drained.
    pub(crate) fn on_drain(&mut self, drain: Arc<Notify>) {
        self.events.on_drain(drain);
    }

    /// Wakes the stream if items wait for it.
    pub(crate) fn flush(&mut self) {
        if std::mem::take(&mut self.unflushed) {
            self.events.flush();
        }
    }

    /// Ends the stream: `tail` follows the last item. The span closes
    /// with the turn.
    pub(crate) fn finish(self, tail: Option<Error>) {
        match &tail {
            Some(error) => Ending::failed(error),
            None => self.ending,
        }
        .record(&self.span, self.delivered);
        // What was held goes in past the bound: the turn adds nothing more.
        for item in self.held {
            self.events.force_push(item);
        }
        self.events.finish(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::queue;

    fn turn(idle: Option<Duration>) -> Turn {
        let (events, _reader) = queue::queue(4, 1 << 20);
        let liveness = Liveness {
            idle,
            after_reconnect: Duration::from_secs(120),
        };
        Turn::new(1, "t".into(), None, 5, Value::Null, liveness, events)
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_idle_limit_only_a_reconnect_starts_a_watch() {
        let mut turn = turn(None);
        assert_eq!(turn.heard(Silence::Normal, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(7)).await;
        let reconnected = Instant::now();
        assert_eq!(
            turn.heard(Silence::Reconnected, Instant::now()),
            Some(reconnected + Duration::from_secs(120))
        );
        // The first event after the reconnect ends the watch.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(turn.heard(Silence::Normal, Instant::now()), None);
        assert_eq!(turn.silent_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limit_moves_with_each_event_and_yields_to_the_reconnect_check() {
        let mut turn = turn(Some(Duration::from_secs(30)));
        let started = Instant::now();
        assert_eq!(
            turn.heard(Silence::Normal, Instant::now()),
            Some(started + Duration::from_secs(30))
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            turn.heard(Silence::Normal, Instant::now()),
            Some(started + Duration::from_secs(50))
        );
        assert_eq!(
            turn.heard(Silence::Reconnected, Instant::now()),
            Some(started + Duration::from_secs(140))
        );
        assert_eq!(turn.silence_limit(), Some(Duration::from_secs(120)));
    }
}

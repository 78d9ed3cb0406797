//! One turn as its connection sees it: where it is in its life ([`Phase`])
//! and the bounded hand-off to its [`TurnStream`](super::TurnStream).
//!
//! A connection carries many turns, so a turn's consumer may never hold the
//! socket back: a full hand-off ends that turn alone with
//! `consumer_lagged` (after every event it already holds), and the other
//! turns read on.

use std::time::Duration;

use platos_events::Event;
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::queue::{Refused, Writer};
use crate::error::Error;

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
    /// Its `message` waits for a ready connection, for the connection's
    /// unanswered-message slot, and for no other live turn of its thread.
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
    /// A rate-limit refusal waits for the socket-level `done` after it.
    Refused(Error),
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

/// Why an item did not reach the stream.
pub(crate) enum Undelivered {
    /// The consumer dropped the stream.
    Gone,
    /// The consumer is a whole buffer behind: the turn ends with this.
    Lagged(Error),
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
    pub(crate) fn heard(&mut self, silence: Silence) -> Option<Instant> {
        self.silence = silence;
        // The clock is read only for watched turns: most turns have none.
        if self.silence_limit().is_some() {
            self.heard_at = Instant::now();
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

    /// The server spoke for this turn: its message is answered.
    pub(crate) fn answered(&mut self) {
        if matches!(self.phase, Phase::Sent { .. }) {
            self.phase = Phase::Live;
        }
    }

    /// Whether the turn's message went out.
    pub(crate) fn started(&self) -> bool {
        !matches!(self.phase, Phase::Queued { .. })
    }

    /// Hands one item to the stream without waiting (see the module docs).
    pub(crate) fn push(&mut self, item: Item) -> Result<(), Undelivered> {
        match self.events.try_push(item) {
            Ok(()) => {
                self.unflushed = true;
                self.delivered += 1;
                Ok(())
            }
            Err(Refused::Gone) => Err(Undelivered::Gone),
            Err(Refused::Full(_)) => Err(Undelivered::Lagged(Error::stream(
                Some("consumer_lagged".into()),
                format!(
                    "the consumer fell {} events behind; the stream was ended rather than \
                     dropping events or holding back the other turns of its connection \
                     (read faster, or raise the client's stream_buffer)",
                    self.events.capacity()
                ),
            ))),
        }
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
        self.events.finish(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::queue;

    fn turn(idle: Option<Duration>) -> Turn {
        let (events, _reader) = queue::queue(4);
        let liveness = Liveness {
            idle,
            after_reconnect: Duration::from_secs(120),
        };
        Turn::new(1, "t".into(), None, 5, Value::Null, liveness, events)
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_idle_limit_only_a_reconnect_starts_a_watch() {
        let mut turn = turn(None);
        assert_eq!(turn.heard(Silence::Normal), None);
        tokio::time::advance(Duration::from_secs(7)).await;
        let reconnected = Instant::now();
        assert_eq!(
            turn.heard(Silence::Reconnected),
            Some(reconnected + Duration::from_secs(120))
        );
        // The first event after the reconnect ends the watch.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(turn.heard(Silence::Normal), None);
        assert_eq!(turn.silent_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limit_moves_with_each_event_and_yields_to_the_reconnect_check() {
        let mut turn = turn(Some(Duration::from_secs(30)));
        let started = Instant::now();
        assert_eq!(
            turn.heard(Silence::Normal),
            Some(started + Duration::from_secs(30))
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            turn.heard(Silence::Normal),
            Some(started + Duration::from_secs(50))
        );
        assert_eq!(
            turn.heard(Silence::Reconnected),
            Some(started + Duration::from_secs(140))
        );
        assert_eq!(turn.silence_limit(), Some(Duration::from_secs(120)));
    }
}

//! One turn as its connection sees it: where it is in its life ([`Phase`])
//! and the bounded hand-off to its [`TurnStream`](super::TurnStream).
//!
//! A connection carries many turns, so a turn's consumer may never hold the
//! socket back: a full hand-off ends that turn alone with
//! `consumer_lagged` (after every event it already holds), and the other
//! turns read on.

use platos_events::Event;
use serde_json::Value;
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
        }
    }
}

/// Where a turn is.
pub(crate) enum Phase {
    /// Its `message` waits for a ready connection, for the connection's
    /// unanswered-message slot, and for no other live turn of its thread.
    Queued { message: Value },
    /// The message was sent (exactly once); events flow.
    Live,
    /// `stop` was asked for; `sent` once it went out on a connection. The
    /// turn ends at its `done`, or when the stop grace passes.
    Stopping { sent: bool },
    /// A rate-limit refusal waits for the socket-level `done` after it.
    Refused(Error),
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
    events: Writer<Item>,
}

impl Turn {
    pub(crate) fn new(
        id: TurnId,
        thread_id: String,
        agent_id: Option<String>,
        budget: u32,
        message: Value,
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
            events,
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

    /// Ends the stream: `tail` follows the last item.
    pub(crate) fn finish(self, tail: Option<Error>) {
        self.events.finish(tail);
    }
}

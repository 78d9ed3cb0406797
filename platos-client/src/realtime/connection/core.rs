//! The connection's logic without I/O: [`Core`] takes an [`Input`] (a
//! caller's command, a dial's result, a text frame, a fault, a timer, a
//! consumer's drain) and answers with [`Action`]s (dial, send this frame,
//! refresh the token, drop or close the socket, leave the pool) plus two
//! questions the driver asks after each step: when to wake it next
//! ([`Core::deadline`]) and whether to read the socket ([`Core::reading`]).
//! Deliveries go straight into each turn's in-memory hand-off (no I/O,
//! read back by the tests).
//!
//! The connection's life is [`Link`]: `Dialing` → `Joining` (acked, waiting
//! for the gateway's `connected`) → `Ready` → on a loss `Pausing` (or
//! `Refreshing` after a refused token) → `Dialing` again, until `Closed`.
//! What each frame means and who receives it is in the [module
//! docs](super); the rules are docs/realtime.md §1–§6.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platos_events::Event;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{ToConn, TurnCommand};
use crate::config::ReconnectConfig;
use crate::error::{Error, StreamCode};
use crate::realtime::approvals::{Answer, Approvals};
use crate::realtime::classify::{self, Fault, Signal};
use crate::realtime::engineio::{self, Handshake};
use crate::realtime::replicate;
use crate::realtime::socketio;
use crate::realtime::turn::{Ending, Item, Phase, Silence, Turn, TurnId};
use crate::retry;

/// How long after the connect ack a server that never sends `connected`
/// is given before the client speaks anyway.
const READY_GRACE: Duration = Duration::from_millis(1000);
/// How long after `stop` the server gets to send the turn's final `done`.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the connection is told.
pub(crate) enum Input {
    /// A command from the pool or a turn's handle.
    Command(ToConn),
    /// The dial asked for with [`Action::Dial`] ended: the server's open
    /// packet and when the socket opened (its ping deadline counts from
    /// then), or why not.
    Dialed(Result<(Handshake, Instant), Fault>),
    /// A WebSocket text message.
    Text(Utf8Bytes),
    /// The socket failed (read or write), or the server closed it.
    Fault(Fault),
    /// The refresh asked for with [`Action::Refresh`] ended: whether a new
    /// token came.
    Refreshed(bool),
    /// The pool let the connection go ([`Action::Retire`] succeeded).
    Retired,
    /// Nothing can reach the connection any more.
    Orphaned,
    /// The deadline passed ([`Core::deadline`]).
    Tick,
    /// A consumer made room in its turn's hand-off.
    Drained,
}

/// What the connection asks of its driver, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Open a socket (with the client's current token) and join the
    /// namespace; answer with [`Input::Dialed`].
    Dial,
    /// Write this text frame.
    Send(String),
    /// Refresh the token the last dial used (the client's single flight);
    /// answer with [`Input::Refreshed`].
    Refresh,
    /// Forget the socket without a goodbye: it is lost.
    Drop,
    /// Leave the pool if no command waits; answer with [`Input::Retired`]
    /// if it did.
    Retire,
    /// Take no more commands: those already sent come back as inputs.
    Fail,
    /// Leave the namespace, close the socket cleanly, and end.
    Close,
}

/// Where the connection is in its life.
#[derive(Debug)]
enum Link {
    /// Waiting for the dial; `gap` is why the previous socket was lost.
    Dialing { gap: Option<String> },
    /// Acknowledged; nothing is sent until the gateway's `connected` or
    /// `until` (docs/realtime.md §2).
    Joining { gap: Option<String>, until: Instant },
    /// Messages may go.
    Ready { idle_since: Option<Instant> },
    /// The reconnect delay; a `stop` cuts it short.
    Pausing { until: Instant, gap: String },
    /// A refused token is being refreshed.
    Refreshing {
        gap: String,
        refusal: (Option<String>, String, String),
    },
    /// Over.
    Closed,
}

/// Backpressure: some turn's hand-off is full, so the socket is not read.
#[derive(Debug, Clone, Copy)]
struct Pressure {
    /// Since when another turn shares the connection with the full one:
    /// after [`Settings::grace`] the full turns end alone.
    shared_since: Option<Instant>,
}

/// What a connection is configured with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How long the connection stays open without turns.
    pub(crate) idle: Duration,
    /// The client's timeout: how long a `message` may stay unanswered
    /// before a refusal can no longer be its.
    pub(crate) timeout: Duration,
    pub(crate) reconnect: ReconnectConfig,
    /// How long turns sharing the connection wait for a full one
    /// ([`RealtimeConfig::backpressure_grace`](super::super::RealtimeConfig::backpressure_grace)).
    pub(crate) grace: Duration,
}

pub(crate) struct Core {
    namespace: String,
    settings: Settings,
    link: Link,
    /// Turns placed here and not yet ended (the pool reads it).
    load: Arc<AtomicUsize>,
    /// Given to each turn's hand-off: rung when a full one drains.
    drain: Arc<Notify>,
    turns: HashMap<TurnId, Turn>,
    /// The started turn of each thread: events are routed by `threadId`.
    threads: HashMap<String, TurnId>,
    /// Turns waiting to send their `message`, in arrival order.
    queued: VecDeque<TurnId>,
    /// The turns whose `message` is unanswered, and since when, oldest
    /// first: the candidates of an untagged refusal.
    unanswered: VecDeque<(TurnId, Instant)>,
    /// Rate-limit refusals not yet attributed (docs/realtime.md §5): they
    /// belong to unanswered turns, and a refused turn never hears anything
    /// else, so once as many refusals wait as turns are unanswered, those
    /// turns are the refused ones.
    refusals: VecDeque<Error>,
    /// Socket-level `done`s still owed by refusals (each is followed by one).
    dones_owed: usize,
    approvals: Approvals,
    /// Stop graces running out, earliest first.
    stops: BinaryHeap<Reverse<(Instant, TurnId)>>,
    /// Silence limits of watched turns, earliest first; an entry is checked
    /// against its turn when it comes due (events move a turn's deadline
    /// without touching the heap).
    silences: BinaryHeap<Reverse<(Instant, TurnId)>>,
    /// The socket's ping deadline and the silence that sets it.
    ping_due: Option<Instant>,
    silence: Duration,
    max_payload: Option<usize>,
    /// Reconnect attempts since an event last proved the connection good.
    attempt: u32,
    /// Whether a refused token may still be refreshed: spent by a refresh,
    /// re-armed when the gateway accepts a token (its `connected` event) or
    /// an event arrives. A token refused again before either is final, so a
    /// server that refuses every token cannot loop; one that expires later,
    /// in a long silent turn, is refreshed again.
    refresh_allowed: bool,
    pressure: Option<Pressure>,
    /// A hand-off may have filled since backpressure was last looked at
    /// (so the turns are scanned only then, not on every frame).
    maybe_full: bool,
    /// Why the connection failed, for commands that still arrive.
    failed: Option<Error>,
    /// The time of the step being taken.
    now: Instant,
    out: VecDeque<Action>,
}

impl Core {
    /// A connection that starts by dialing.
    pub(crate) fn new(
        namespace: String,
        settings: Settings,
        load: Arc<AtomicUsize>,
        drain: Arc<Notify>,
    ) -> Core {
        Core {
            namespace,
            settings,
            link: Link::Dialing { gap: None },
            load,
            drain,
            turns: HashMap::new(),
            threads: HashMap::new(),
            queued: VecDeque::new(),
            unanswered: VecDeque::new(),
            refusals: VecDeque::new(),
            dones_owed: 0,
            approvals: Approvals::default(),
            stops: BinaryHeap::new(),
            silences: BinaryHeap::new(),
            ping_due: None,
            silence: Duration::ZERO,
            max_payload: None,
            attempt: 0,
            refresh_allowed: true,
            pressure: None,
            maybe_full: false,
            failed: None,
            now: Instant::now(),
            out: VecDeque::from([Action::Dial]),
        }
    }

    /// The next thing to do, in order.
    pub(crate) fn next_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// Whether the driver should read the socket: it is joined, and no
    /// turn's hand-off is full.
    pub(crate) fn reading(&self) -> bool {
        self.pressure.is_none() && matches!(self.link, Link::Joining { .. } | Link::Ready { .. })
    }

    /// Whether a full hand-off waits for its consumer ([`Input::Drained`]).
    pub(crate) fn pressed(&self) -> bool {
        self.pressure.is_some()
    }

    /// Whether no turn is here.
    pub(crate) fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// When to send [`Input::Tick`] next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let link = match &self.link {
            Link::Joining { until, .. } | Link::Pausing { until, .. } => Some(*until),
            Link::Ready {
                idle_since: Some(since),
            } => Some(*since + self.settings.idle),
            _ => None,
        };
        let ready = matches!(self.link, Link::Ready { .. });
        let grace = self
            .pressure
            .and_then(|p| p.shared_since)
            .map(|since| since + self.settings.grace);
        [
            link,
            self.ping_due.filter(|_| self.reading()),
            grace,
            self.unanswered
                .front()
                .filter(|_| ready)
                .map(|(_, since)| *since + self.settings.timeout),
            self.stops
                .peek()
                .filter(|_| ready)
                .map(|Reverse((at, _))| *at),
            self.silences
                .peek()
                .filter(|_| ready)
                .map(|Reverse((at, _))| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Wakes every stream that has new items (before the driver waits).
    pub(crate) fn flush(&mut self) {
        for turn in self.turns.values_mut() {
            turn.flush();
        }
    }

    /// One step.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) {
        self.now = now;
        match input {
            Input::Command(command) => self.command(command, now),
            Input::Dialed(Ok((handshake, opened_at))) => {
                if let Link::Dialing { gap } = &mut self.link {
                    let gap = gap.take();
                    self.silence = handshake.silence_limit();
                    self.ping_due = Some(opened_at + self.silence);
                    self.max_payload = handshake.max_payload;
                    self.link = Link::Joining {
                        gap,
                        until: now + READY_GRACE,
                    };
                }
            }
            Input::Dialed(Err(fault)) | Input::Fault(fault) => self.fault(fault, now),
            Input::Text(text) => {
                if matches!(self.link, Link::Joining { .. } | Link::Ready { .. })
                    && let Err(fault) = self.on_text(&text, now)
                {
                    self.fault(fault, now);
                }
            }
            Input::Refreshed(refreshed) => {
                if let Link::Refreshing { gap, refusal } =
                    std::mem::replace(&mut self.link, Link::Closed)
                {
                    if refreshed {
                        self.lost(&gap);
                        self.link = Link::Dialing { gap: Some(gap) };
                        self.out.push_back(Action::Dial);
                    } else {
                        let (code, message, raw) = refusal;
                        self.fail(Error::auth_refused(code, message, raw));
                    }
                }
            }
            Input::Retired => {
                self.link = Link::Closed;
                self.out.push_back(Action::Close);
            }
            Input::Orphaned => {
                let ids: Vec<TurnId> = self.turns.keys().copied().collect();
                for id in ids {
                    self.end(id, None);
                }
                self.link = Link::Closed;
                self.out.push_back(Action::Close);
            }
            Input::Tick => self.tick(now),
            Input::Drained => self.drained(),
        }
        self.settle(now);
    }

    // ---- after each step ----------------------------------------------------

    /// What follows from the state whatever the input was: backpressure,
    /// the idle time, leaving the pool.
    fn settle(&mut self, now: Instant) {
        if matches!(self.link, Link::Closed) {
            return;
        }
        self.press(now);
        let offline = matches!(
            self.link,
            Link::Dialing { .. } | Link::Pausing { .. } | Link::Refreshing { .. }
        );
        let idle = self.settings.idle;
        let retire = match &mut self.link {
            Link::Ready { idle_since } if self.turns.is_empty() => {
                let since = *idle_since.get_or_insert(now);
                since + idle <= now
            }
            Link::Ready { idle_since } => {
                *idle_since = None;
                false
            }
            _ => offline && self.turns.is_empty(),
        };
        if retire && self.out.back() != Some(&Action::Retire) {
            self.out.push_back(Action::Retire);
        }
    }

    /// Starts, keeps or ends backpressure (docs/realtime.md §5): a full
    /// hand-off stops the reading; a turn alone waits for its consumer as
    /// long as it takes, turns that share the connection wait at most the
    /// grace, then the full ones end alone.
    fn press(&mut self, now: Instant) {
        if !self.maybe_full && self.pressure.is_none() {
            return;
        }
        let full: Vec<TurnId> = self
            .turns
            .values()
            .filter(|t| t.is_full())
            .map(|t| t.id)
            .collect();
        self.maybe_full = !full.is_empty();
        if full.is_empty() {
            if self.pressure.take().is_some() && self.ping_due.is_some() {
                // Pings were not read meanwhile: the deadline restarts.
                self.ping_due = Some(now + self.silence);
            }
            return;
        }
        let shared = self.turns.len() > 1;
        let pressure = self.pressure.get_or_insert(Pressure { shared_since: None });
        pressure.shared_since = match pressure.shared_since {
            Some(since) if shared => Some(since),
            None if shared => Some(now),
            _ => None,
        };
        let Some(since) = pressure.shared_since else {
            return;
        };
        if since + self.settings.grace > now {
            return;
        }
        let grace = self.settings.grace;
        for id in full {
            let error = Error::stream_of(
                StreamCode::ConsumerLagged,
                format!(
                    "the consumer read nothing for {} s while its buffer was full and other \
                     turns shared its connection; the stream was ended rather than dropping \
                     events or holding the other turns back (read faster, or raise \
                     RealtimeConfig::turn_buffer_bytes or backpressure_grace)",
                    grace.as_secs_f64()
                ),
            );
            if self.ready() {
                self.finish(id, Some(error));
            } else {
                self.end(id, Some(error));
            }
        }
        self.pressure = None;
        self.press(now);
    }

    /// A consumer made room: held items move on.
    fn drained(&mut self) {
        let ids: Vec<TurnId> = self
            .turns
            .values()
            .filter(|t| t.is_full())
            .map(|t| t.id)
            .collect();
        for id in ids {
            let gone = self
                .turns
                .get_mut(&id)
                .is_some_and(|t| t.release().is_err());
            if gone {
                self.abandon(id);
            }
        }
    }

    fn ready(&self) -> bool {
        matches!(self.link, Link::Ready { .. })
    }

    // ---- commands -----------------------------------------------------------

    fn command(&mut self, command: ToConn, now: Instant) {
        if let Some(error) = &self.failed {
            match command {
                ToConn::Attach(turn) => {
                    self.load.fetch_sub(1, Ordering::AcqRel);
                    turn.finish(Some(replicate(error)));
                }
                ToConn::Turn(_, TurnCommand::Approve(answer)) => {
                    let _ = answer.reply.send(Err(replicate(error)));
                }
                ToConn::Turn(_, TurnCommand::Stop | TurnCommand::Dropped) => {}
            }
            return;
        }
        if !self.ready() {
            return self.offline_command(command);
        }
        match command {
            ToConn::Attach(turn) => {
                let id = turn.id;
                self.attach(*turn);
                self.greet(id, None, now);
                self.start_next(now);
            }
            ToConn::Turn(id, TurnCommand::Stop) => match self.turns.get(&id).map(|t| &t.phase) {
                Some(Phase::Queued { .. }) => self.end_as(id, Ending::Stopped),
                Some(Phase::Live | Phase::Sent { .. }) => self.send_stop(id, now),
                _ => {}
            },
            ToConn::Turn(id, TurnCommand::Dropped) => self.abandon(id),
            ToConn::Turn(_, TurnCommand::Approve(answer)) => self.send_approval(answer),
        }
    }

    /// A command while not ready: held until the connection is.
    fn offline_command(&mut self, command: ToConn) {
        match command {
            ToConn::Attach(turn) => self.attach(*turn),
            ToConn::Turn(id, TurnCommand::Stop) => {
                match self.turns.get_mut(&id).map(|t| &mut t.phase) {
                    // Nothing was sent: nothing to stop server-side.
                    Some(Phase::Queued { .. }) => self.end_as(id, Ending::Stopped),
                    Some(phase @ (Phase::Live | Phase::Sent { .. })) => {
                        *phase = Phase::Stopping { sent: false };
                        // A stop is worth a connection now, not after the pause.
                        if let Link::Pausing { gap, .. } = &mut self.link {
                            let gap = std::mem::take(gap);
                            self.link = Link::Dialing { gap: Some(gap) };
                            self.out.push_back(Action::Dial);
                        }
                    }
                    _ => {}
                }
            }
            ToConn::Turn(id, TurnCommand::Dropped) => self.end_as(id, Ending::Dropped),
            ToConn::Turn(_, TurnCommand::Approve(answer)) => self.approvals.hold(answer),
        }
    }

    fn attach(&mut self, mut turn: Turn) {
        turn.on_drain(self.drain.clone());
        self.queued.push_back(turn.id);
        self.turns.insert(turn.id, turn);
    }

    fn send_stop(&mut self, id: TurnId, now: Instant) {
        let Some(turn) = self.turns.get_mut(&id) else {
            return;
        };
        turn.phase = Phase::Stopping { sent: true };
        let thread = thread_ref(&turn.thread_id);
        self.stops.push(Reverse((now + STOP_GRACE, id)));
        self.emit("stop", &thread);
    }

    /// The consumer left: a started turn is stopped server-side (so it
    /// stops costing), then forgotten.
    fn abandon(&mut self, id: TurnId) {
        let ready = self.ready();
        let Some(turn) = self.turns.get_mut(&id) else {
            return;
        };
        turn.ends_as(Ending::Dropped);
        if !ready {
            return self.end(id, None);
        }
        if matches!(turn.phase, Phase::Live | Phase::Sent { .. }) {
            tracing::debug!(parent: &turn.span, "stream dropped mid-turn: sending stop");
            let thread = thread_ref(&turn.thread_id);
            self.emit("stop", &thread);
        }
        self.finish(id, None);
    }

    /// Sends `approval_response` and remembers who waits for the answer.
    fn send_approval(&mut self, answer: Answer) {
        let Some(payload) = answer.decision.socket_payload(&answer.approval_id) else {
            // Edited arguments travel over REST only; the handle sends
            // those there, so none should reach the socket.
            let _ = answer.reply.send(Err(Error::config(
                "a decision that edits arguments is sent over REST",
            )));
            return;
        };
        match event_frame(&self.namespace, "approval_response", &payload) {
            Ok(frame) => {
                self.out.push_back(Action::Send(frame));
                self.approvals.sent(answer.approval_id, answer.reply);
            }
            Err(error) => {
                let _ = answer.reply.send(Err(error));
            }
        }
    }

    // ---- faults and reconnects ---------------------------------------------

    fn fault(&mut self, fault: Fault, now: Instant) {
        if matches!(self.link, Link::Closed | Link::Refreshing { .. }) {
            return;
        }
        match fault {
            Fault::Failed(error) => self.fail(error),
            Fault::Lost(reason) => {
                tracing::debug!(%reason, turns = self.turns.len(), "realtime connection lost");
                self.drop_socket();
                self.lost(&reason);
                let delay = reconnect_delay(&self.settings.reconnect, self.attempt);
                self.link = Link::Pausing {
                    until: now + delay,
                    gap: reason,
                };
            }
            Fault::AuthRefused { code, message, raw } => {
                self.drop_socket();
                if !self.refresh_allowed {
                    return self.fail(Error::auth_refused(code, message, raw));
                }
                self.refresh_allowed = false;
                self.link = Link::Refreshing {
                    gap: format!("session token refused: {message}"),
                    refusal: (code, message, raw),
                };
                self.out.push_back(Action::Refresh);
            }
        }
    }

    /// The socket is gone: nothing queued for it goes out.
    fn drop_socket(&mut self) {
        self.out.retain(|a| !matches!(a, Action::Send(_)));
        self.out.push_back(Action::Drop);
        self.ping_due = None;
        self.pressure = None;
    }

    /// The connection is gone: what each turn hears, and who gives up.
    fn lost(&mut self, reason: &str) {
        self.approvals.connection_lost();
        self.unanswered.clear();
        self.refusals.clear();
        self.dones_owed = 0;
        self.stops.clear();
        self.attempt += 1;
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            let Some(turn) = self.turns.get_mut(&id) else {
                continue;
            };
            match std::mem::replace(&mut turn.phase, Phase::Live) {
                // The stop went out; the turn is over for us.
                Phase::Stopping { sent: true } => {
                    self.end_as(id, Ending::Stopped);
                    continue;
                }
                phase => turn.phase = phase,
            }
            let announced = std::mem::take(&mut turn.announced);
            if announced
                && !self.deliver_offline(id, Item::made(Event::disconnected(Some(reason.into()))))
            {
                continue;
            }
            let Some(turn) = self.turns.get_mut(&id) else {
                continue;
            };
            if self.attempt > turn.budget {
                let error = Error::network(
                    format!(
                        "realtime connection lost ({reason}); gave up after {} reconnect attempts",
                        turn.budget
                    ),
                    None,
                );
                self.end(id, Some(error));
                continue;
            }
            turn.reconnecting();
            self.deliver_offline(id, Item::made(Event::reconnecting(self.attempt)));
        }
    }

    /// Hands an item over while disconnected; false when the turn ended.
    fn deliver_offline(&mut self, id: TurnId, item: Item) -> bool {
        let Some(turn) = self.turns.get_mut(&id) else {
            return false;
        };
        let pushed = turn.push(item);
        self.maybe_full |= turn.is_full();
        match pushed {
            Ok(_) => true,
            Err(_gone) => {
                self.end_as(id, Ending::Dropped);
                false
            }
        }
    }

    /// Every turn ends with `error`, and so does the connection.
    fn fail(&mut self, error: Error) {
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            self.end(id, Some(replicate(&error)));
        }
        for answer in self.approvals.take_unsent() {
            let _ = answer.reply.send(Err(replicate(&error)));
        }
        self.approvals.connection_lost();
        self.failed = Some(error);
        self.link = Link::Closed;
        self.out.push_back(Action::Fail);
        self.out.push_back(Action::Close);
    }

    // ---- timers -------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        if self.reading() && self.ping_due.is_some_and(|due| due <= now) {
            let millis = self.silence.as_millis();
            return self.fault(
                Fault::Lost(format!("no ping from the server for {millis} ms")),
                now,
            );
        }
        match &mut self.link {
            Link::Joining { gap, until } if *until <= now => {
                tracing::debug!("no `connected` event from the server; speaking anyway");
                let gap = gap.take();
                self.become_ready(gap, now);
            }
            Link::Pausing { until, gap } if *until <= now => {
                let gap = std::mem::take(gap);
                self.link = Link::Dialing { gap: Some(gap) };
                self.out.push_back(Action::Dial);
            }
            Link::Ready { .. } => self.chores(now),
            _ => {}
        }
    }

    fn chores(&mut self, now: Instant) {
        while let Some(&(id, since)) = self.unanswered.front()
            && since + self.settings.timeout <= now
        {
            // The turn goes on, but a later refusal can no longer be its.
            tracing::debug!(turn = id, "no answer to `message` within the timeout");
            self.unanswered.pop_front();
        }
        self.attribute();
        while let Some(Reverse((at, id))) = self.stops.peek().copied() {
            if at > now {
                break;
            }
            self.stops.pop();
            if let Some(turn) = self.turns.get_mut(&id)
                && matches!(turn.phase, Phase::Stopping { .. })
            {
                turn.ends_as(Ending::Stopped);
                self.finish(id, None);
            }
        }
        while let Some(Reverse((at, id))) = self.silences.peek().copied()
            && at <= now
        {
            self.silences.pop();
            let Some(turn) = self.turns.get(&id) else {
                continue;
            };
            if !matches!(turn.phase, Phase::Live | Phase::Sent { .. }) {
                continue;
            }
            match turn.silent_at() {
                None => {}
                Some(at) if at > now => self.silences.push(Reverse((at, id))),
                Some(_) => self.silent(id),
            }
        }
        self.start_next(now);
    }

    /// Turn `id` heard nothing for its silence limit (docs/realtime.md §6).
    fn silent(&mut self, id: TurnId) {
        let Some(turn) = self.turns.get(&id) else {
            return;
        };
        let limit = turn.silence_limit().unwrap_or_default();
        match turn.silence {
            // The gateway that ran the turn may be gone, and the turn with
            // it: the stream asks the thread. No `stop`: the turn may still
            // be running, and its answer is wanted.
            Silence::Reconnected => {
                tracing::debug!(parent: &turn.span, "silent after a reconnect: checking");
                self.deliver(id, Item::Check(limit), true);
            }
            // The caller's idle limit: the turn is given up, so it is
            // stopped rather than left running and costing.
            Silence::Normal => {
                let thread = thread_ref(&turn.thread_id);
                self.emit("stop", &thread);
                self.finish(id, Some(crate::realtime::turn::idle_error(limit)));
            }
        }
    }

    // ---- a ready connection -------------------------------------------------

    /// First words on a ready connection: each turn hears `connected`;
    /// after a reconnect each started turn hears `stream_gap` and its
    /// thread is re-joined (the gateway routes a turn's events to the
    /// socket that sent `message`, which is gone) with `resume_stream`
    /// first for parity with the other SDKs. Then waiting messages go out.
    fn become_ready(&mut self, gap: Option<String>, now: Instant) {
        self.link = Link::Ready { idle_since: None };
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            self.greet(id, gap.as_deref(), now);
        }
        for answer in self.approvals.take_unsent() {
            self.send_approval(answer);
        }
        self.start_next(now);
    }

    /// Tells one turn the connection is up and rejoins its thread.
    fn greet(&mut self, id: TurnId, gap: Option<&str>, now: Instant) {
        if !self.deliver(id, Item::made(Event::connected()), false) {
            return;
        }
        let Some(turn) = self.turns.get_mut(&id) else {
            return;
        };
        turn.announced = true;
        if !turn.started() {
            return;
        }
        let thread = thread_ref(&turn.thread_id);
        let stop = matches!(turn.phase, Phase::Stopping { sent: false });
        if gap.is_some()
            && let Some(at) = turn.heard(Silence::Reconnected, now)
        {
            self.silences.push(Reverse((at, id)));
        }
        let gap = Item::made(Event::stream_gap(
            gap.map(str::to_owned),
            Some(self.attempt),
        ));
        if !self.deliver(id, gap, false) {
            return;
        }
        self.emit("resume_stream", &thread);
        self.emit("join_thread", &thread);
        if stop {
            self.send_stop(id, now);
        }
        // Its message may never have reached the server: it goes out again
        // (same key, so at most one turn runs) once the slot is free.
        if let Some(turn) = self.turns.get_mut(&id)
            && turn.requeue_unanswered()
        {
            tracing::debug!(parent: &turn.span, "no answer before the drop: sending the message again");
            if self.threads.get(&turn.thread_id) == Some(&id) {
                self.threads.remove(&turn.thread_id);
            }
            self.queued.push_front(id);
        }
    }

    /// Sends every waiting `message` whose thread has no other live turn
    /// here (pipelined: docs/realtime.md §5 says why attribution stays exact).
    fn start_next(&mut self, now: Instant) {
        while self.ready() {
            let threads = &self.threads;
            let turns = &self.turns;
            let Some(position) = self.queued.iter().position(|id| {
                turns
                    .get(id)
                    .is_some_and(|t| !threads.contains_key(&t.thread_id))
            }) else {
                return;
            };
            let Some(id) = self.queued.remove(position) else {
                return;
            };
            let Some(turn) = self.turns.get_mut(&id) else {
                continue;
            };
            let Phase::Queued { message } = std::mem::replace(&mut turn.phase, Phase::Live) else {
                continue;
            };
            let frame = event_frame(&self.namespace, "message", &message);
            turn.phase = Phase::Sent { message };
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => {
                    self.end(id, Some(error));
                    continue;
                }
            };
            if let Some(max) = self.max_payload
                && frame.len() > max
            {
                let error = Error::stream_of(
                    StreamCode::PayloadTooLarge,
                    format!(
                        "the message is {} bytes; the server accepts at most {max}",
                        frame.len()
                    ),
                );
                self.end(id, Some(error));
                continue;
            }
            self.threads.insert(turn.thread_id.clone(), id);
            // A message sent again after a reconnect stays watched: the
            // server may have run the turn while we were away and ignore
            // the repeated key, and then nothing more comes.
            if let Some(at) = turn.heard(turn.silence, now) {
                self.silences.push(Reverse((at, id)));
            }
            self.unanswered.push_back((id, now));
            tracing::debug!(parent: &turn.span, "message sent");
            self.out.push_back(Action::Send(frame));
        }
    }

    /// Hands an item to turn `id`; `last` ends the turn after it. Returns
    /// whether the turn is still live.
    fn deliver(&mut self, id: TurnId, item: Item, last: bool) -> bool {
        let Some(turn) = self.turns.get_mut(&id) else {
            return false;
        };
        if last {
            turn.ends_as(match item {
                Item::Check(_) => Ending::Checked,
                _ => Ending::Done,
            });
        }
        let pushed = turn.push(item);
        self.maybe_full |= turn.is_full();
        match pushed {
            Ok(_) if last => {
                self.finish(id, None);
                false
            }
            Ok(_) => true,
            Err(_gone) => {
                self.abandon(id);
                false
            }
        }
    }

    /// Ends turn `id` on a live connection: its thread is left when the
    /// connection stays open for others, and the next message may go.
    fn finish(&mut self, id: TurnId, tail: Option<Error>) {
        let Some((started, thread)) = self
            .turns
            .get(&id)
            .map(|t| (t.started(), t.thread_id.clone()))
        else {
            return;
        };
        self.end(id, tail);
        if started && (!self.turns.is_empty() || !self.settings.idle.is_zero()) {
            self.emit("leave_thread", &thread_ref(&thread));
        }
        self.start_next(self.now);
    }

    /// Ends turn `id` without an error, as `ending`.
    fn end_as(&mut self, id: TurnId, ending: Ending) {
        if let Some(turn) = self.turns.get_mut(&id) {
            turn.ends_as(ending);
        }
        self.end(id, None);
    }

    /// Forgets turn `id` and ends its stream with `tail`.
    fn end(&mut self, id: TurnId, tail: Option<Error>) {
        let Some(turn) = self.turns.remove(&id) else {
            return;
        };
        if self.threads.get(&turn.thread_id) == Some(&id) {
            self.threads.remove(&turn.thread_id);
        }
        let was_unanswered = self.unanswered.len();
        self.unanswered.retain(|(waiting, _)| *waiting != id);
        if !turn.started() {
            self.queued.retain(|queued| *queued != id);
        }
        self.load.fetch_sub(1, Ordering::AcqRel);
        turn.finish(tail);
        if self.unanswered.len() != was_unanswered {
            self.attribute();
        }
    }

    /// Ends the turns a waiting refusal must belong to: when as many
    /// refusals wait as turns are unanswered, each of those turns is
    /// refused (a refused `message` gets nothing but its refusal, an
    /// accepted one always gets events). Which of them gets which refusal
    /// is not on the wire; only their `retryAfterSeconds` may differ.
    fn attribute(&mut self) {
        if self.refusals.is_empty() {
            return;
        }
        if self.unanswered.is_empty() {
            // Nothing sent here explains them.
            tracing::warn!("a rate-limit refusal that answers no message");
            let refusals: Vec<Error> = self.refusals.drain(..).collect();
            for error in refusals {
                let event = Event::socket_error(error.message(), error.code().map(Into::into));
                self.broadcast(event);
            }
            return;
        }
        if self.refusals.len() < self.unanswered.len() {
            return;
        }
        let refused: Vec<TurnId> = self.unanswered.drain(..).map(|(id, _)| id).collect();
        for id in refused {
            if let Some(error) = self.refusals.pop_front() {
                if self.ready() {
                    self.finish(id, Some(error));
                } else {
                    self.end(id, Some(error));
                }
            }
        }
    }

    fn emit(&mut self, name: &str, data: &Value) {
        match event_frame(&self.namespace, name, data) {
            Ok(frame) => self.out.push_back(Action::Send(frame)),
            // Our own small objects always encode.
            Err(error) => tracing::warn!(%error, "could not encode `{name}`"),
        }
    }

    // ---- what the server says -----------------------------------------------

    /// One WebSocket text message.
    fn on_text(&mut self, text: &Utf8Bytes, now: Instant) -> Result<(), Fault> {
        match engineio::decode(text.as_str()).map_err(|e| Fault::Failed(e.into()))? {
            engineio::Packet::Ping(payload) => {
                self.ping_due = Some(now + self.silence);
                self.out.push_back(Action::Send(engineio::pong(payload)));
                Ok(())
            }
            engineio::Packet::Message(packet) => self.on_packet(text, packet, now),
            engineio::Packet::Close => Err(Fault::Lost(
                "the server closed the Engine.IO session".into(),
            )),
            engineio::Packet::Open(_)
            | engineio::Packet::Pong(_)
            | engineio::Packet::Upgrade
            | engineio::Packet::Noop => Ok(()),
        }
    }

    /// One Socket.IO packet, a slice of `frame`.
    fn on_packet(&mut self, frame: &Utf8Bytes, packet: &str, now: Instant) -> Result<(), Fault> {
        // The hot path: an `agent_event` goes to its stream as a slice of
        // the frame, its routing fields read but the event not built.
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
            let route = classify::route(peeked.arg);
            let to = Recipients::of(
                route.thread_id.as_deref(),
                route.agent_id.as_deref(),
                route.is_approval(),
            );
            self.on_agent_event(to, item, route.is_done(), now);
            return Ok(());
        }
        let packet = socketio::decode(packet).map_err(|e| Fault::Failed(e.into()))?;
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
                self.on_signal(classify::classify(&name, data), now)
            }
            socketio::Packet::Disconnect { .. } => {
                Err(Fault::Lost("the server left the namespace".into()))
            }
            socketio::Packet::ConnectError { data, .. } => Err(classify::connect_refused(&data)),
            socketio::Packet::Connect { .. } | socketio::Packet::Ack { .. } => Ok(()),
        }
    }

    /// One server event other than a hot-path `agent_event` (docs/realtime.md §3).
    fn on_signal(&mut self, signal: Signal, now: Instant) -> Result<(), Fault> {
        match signal {
            Signal::AgentEvent(data) => {
                let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
                let (kind, thread, agent) = (text("type"), text("threadId"), text("agentId"));
                let approval = matches!(
                    kind.as_deref(),
                    Some("approval_needed" | "approval_resolved")
                );
                let to = Recipients::of(thread.as_deref(), agent.as_deref(), approval);
                let done = kind.as_deref() == Some("done");
                self.on_agent_event(to, Item::AgentValue(data), done, now);
            }
            Signal::Ready => {
                self.refresh_allowed = true;
                if let Link::Joining { gap, .. } = &mut self.link {
                    let gap = gap.take();
                    self.become_ready(gap, now);
                }
            }
            Signal::TokenRefused { code, message, raw } => {
                return Err(Fault::AuthRefused { code, message, raw });
            }
            Signal::RateLimited(error) => {
                // Its `done` follows; the refusal is the turn's ending.
                self.dones_owed += 1;
                self.refusals.push_back(error);
                self.attribute();
            }
            Signal::SocketError(event) => match self.unanswered.len() {
                0 => self.broadcast(event),
                // Which unanswered turn it is about is not on the wire:
                // each of them hears it (it does not end them).
                _ => {
                    let ids: Vec<TurnId> = self.unanswered.iter().map(|(id, _)| *id).collect();
                    for id in ids {
                        self.deliver(id, Item::made(event.clone()), false);
                    }
                }
            },
            Signal::SocketDone(event) => {
                if self.dones_owed > 0 {
                    self.dones_owed -= 1;
                    return Ok(());
                }
                let target = match self.unanswered.len() {
                    0 => self.only_started(),
                    1 => self.unanswered.front().map(|(id, _)| *id),
                    _ => None,
                };
                match target {
                    Some(id) => {
                        self.deliver(id, Item::made(event), true);
                    }
                    None => {
                        tracing::warn!("a socket-level `done` that answers no one turn; ignored")
                    }
                }
            }
            Signal::ApprovalAnswer {
                approval_id,
                result,
            } => self.approvals.settle(approval_id.as_deref(), &result),
            Signal::Deprecation {
                code,
                message,
                remove_after,
            } => tracing::warn!(%code, %remove_after, "Platos server deprecation: {message}"),
            Signal::Ignored => {}
        }
        Ok(())
    }

    /// One `agent_event` for `to`; `done` ends the turn after it.
    fn on_agent_event(&mut self, to: Recipients<'_>, item: Item, done: bool, now: Instant) {
        match to {
            Recipients::Thread(thread) => match self.threads.get(thread) {
                Some(&id) => {
                    self.answered(id, now);
                    self.deliver(id, item, done);
                }
                None => tracing::trace!(thread_id = thread, "event of a thread with no turn here"),
            },
            Recipients::Agent(agent) => {
                let ids: Vec<TurnId> = self
                    .turns
                    .values()
                    .filter(|t| {
                        t.started()
                            && match (agent, &t.agent_id) {
                                (Some(agent), Some(own)) => agent == own,
                                _ => true,
                            }
                    })
                    .map(|t| t.id)
                    .collect();
                for id in ids {
                    self.deliver(id, item.share(), false);
                }
            }
            Recipients::Untagged => match self.only_started() {
                Some(id) => {
                    self.answered(id, now);
                    self.deliver(id, item, done);
                }
                None => tracing::warn!(
                    turns = self.turns.len(),
                    "an agent_event without threadId on a connection with several turns; dropped"
                ),
            },
        }
    }

    /// An event for `id` arrived: its message is answered, and an event
    /// proves the connection and the token good.
    fn answered(&mut self, id: TurnId, now: Instant) {
        self.attempt = 0;
        self.refresh_allowed = true;
        let mut first = false;
        if let Some(turn) = self.turns.get_mut(&id) {
            first = turn.answered();
            let was = turn.silence;
            // A reconnected turn back to its idle limit needs an entry
            // for it; otherwise its entry stands and is moved when due.
            if let Some(at) = turn.heard(Silence::Normal, now)
                && was == Silence::Reconnected
            {
                self.silences.push(Reverse((at, id)));
            }
        }
        if first {
            self.unanswered.retain(|(waiting, _)| *waiting != id);
            self.attribute();
        }
    }

    /// The one started turn, if there is exactly one.
    fn only_started(&self) -> Option<TurnId> {
        let mut started = self.turns.values().filter(|t| t.started());
        match (started.next(), started.next()) {
            (Some(turn), None) => Some(turn.id),
            _ => None,
        }
    }

    /// A socket `error` no message explains: every started turn hears it.
    fn broadcast(&mut self, event: Event) {
        let ids: Vec<TurnId> = self
            .turns
            .values()
            .filter(|t| t.started())
            .map(|t| t.id)
            .collect();
        for id in ids {
            self.deliver(id, Item::made(event.clone()), false);
        }
    }
}

/// What an `agent_event` says about who gets it.
pub(super) enum Recipients<'a> {
    Thread(&'a str),
    /// An untagged approval event: the turns of this agent.
    Agent(Option<&'a str>),
    Untagged,
}

impl<'a> Recipients<'a> {
    pub(super) fn of(thread: Option<&'a str>, agent: Option<&'a str>, approval: bool) -> Self {
        match thread {
            Some(thread) => Recipients::Thread(thread),
            None if approval => Recipients::Agent(agent),
            None => Recipients::Untagged,
        }
    }
}

fn thread_ref(thread_id: &str) -> Value {
    let mut m = Map::new();
    m.insert("threadId".into(), Value::from(thread_id));
    Value::Object(m)
}

fn event_frame(namespace: &str, name: &str, data: &Value) -> Result<String, Error> {
    socketio::event(namespace, name, data)
        .map(|packet| engineio::message(&packet))
        .map_err(|e| Error::stream(None, format!("encoding `{name}`: {e}")))
}

/// The pause before reconnect attempt `attempt` (from 1):
/// `min(max_delay, base_delay · 2^(attempt−1))`, jittered (docs/realtime.md §4).
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

/// Tables of inputs and the actions they give, on a paused clock. Each
/// past bug of the realtime lane has its table (named by the commit that
/// fixed it), and so does every way a turn ends.
#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use futures::task::noop_waker;
    use serde_json::json;
    use tokio::sync::oneshot;

    use super::*;
    use crate::decision::Decision;
    use crate::realtime::queue::{self, Reader};
    use crate::realtime::turn::Liveness;

    /// One row: an input and the actions it gives, a wait, or what a
    /// stream read since the last look.
    enum Row {
        In(Input, &'static [&'static str]),
        Wait(u64),
        Reads(TurnId, &'static [&'static str]),
        /// The consumer of a turn takes this many items.
        Take(TurnId, usize),
        Reading(bool),
    }
    use Row::*;

    struct Rig {
        core: Core,
        readers: HashMap<TurnId, Reader<Item>>,
        load: Arc<AtomicUsize>,
        /// Per turn: hand-off bound in events.
        capacity: usize,
    }

    const NS: &str = "/agent";

    fn settings() -> Settings {
        Settings {
            idle: Duration::ZERO,
            timeout: Duration::from_secs(30),
            reconnect: ReconnectConfig::default().with_jitter(0.0),
            grace: Duration::from_secs(1),
        }
    }

    impl Rig {
        fn new(capacity: usize) -> Rig {
            Rig::with(capacity, settings())
        }

        fn with(capacity: usize, settings: Settings) -> Rig {
            let load = Arc::new(AtomicUsize::new(0));
            let core = Core::new(NS.into(), settings, load.clone(), Arc::new(Notify::new()));
            Rig {
                core,
                readers: HashMap::new(),
                load,
                capacity,
            }
        }

        /// A turn on thread `th{id}` with key `k{id}`.
        fn turn(&mut self, id: TurnId, budget: u32, idle: Option<u64>) -> Input {
            let (events, reader) = queue::queue(self.capacity, 1 << 20);
            self.readers.insert(id, reader);
            self.load.fetch_add(1, Ordering::AcqRel);
            let message = json!({"message": "hi", "threadId": format!("th{id}"), "idempotencyKey": format!("k{id}")});
            let liveness = Liveness {
                idle: idle.map(Duration::from_secs),
                after_reconnect: Duration::from_secs(120),
            };
            let turn = Turn::new(
                id,
                format!("th{id}"),
                None,
                budget,
                message,
                liveness,
                events,
            );
            Input::Command(ToConn::Attach(Box::new(turn)))
        }

        fn actions(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.core.next_action())
                .map(render)
                .collect()
        }

        async fn run(&mut self, rows: Vec<Row>) {
            for (n, row) in rows.into_iter().enumerate() {
                match row {
                    In(input, expected) => {
                        self.core.handle(input, Instant::now());
                        assert_eq!(self.actions(), expected, "row {n}");
                    }
                    Wait(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    Reads(id, expected) => {
                        assert_eq!(self.read(id, usize::MAX), expected, "row {n}")
                    }
                    Take(id, count) => {
                        self.read(id, count);
                    }
                    Reading(on) => assert_eq!(self.core.reading(), on, "row {n}"),
                }
            }
        }

        /// What turn `id`'s stream reads now (at most `count` items).
        fn read(&mut self, id: TurnId, count: usize) -> Vec<String> {
            let Some(reader) = self.readers.get_mut(&id) else {
                return vec![];
            };
            let waker = noop_waker();
            let mut cx = Context::from_waker(&waker);
            let mut out = Vec::new();
            while out.len() < count {
                match reader.poll_pop(&mut cx) {
                    Poll::Ready(Some(Ok(item))) => out.push(kind(&item)),
                    Poll::Ready(Some(Err(e))) => {
                        out.push(format!("Err({})", e.code().unwrap_or(e.kind())))
                    }
                    Poll::Ready(None) => {
                        out.push("end".into());
                        self.readers.remove(&id);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            out
        }
    }

    fn kind(item: &Item) -> String {
        match item {
            Item::AgentJson { frame, start, end } => {
                let v: Value = serde_json::from_str(&frame[*start..*end]).unwrap_or_default();
                v["type"].as_str().unwrap_or("?").to_owned()
            }
            Item::AgentValue(v) => v["type"].as_str().unwrap_or("?").to_owned(),
            Item::Event(e) => e.kind().to_owned(),
            Item::Check(_) => "check".into(),
        }
    }

    /// An action as a table cell: `dial`, `pong`, or an event's name with
    /// its thread (and a message's key).
    fn render(action: Action) -> String {
        match action {
            Action::Send(frame) if frame.starts_with('3') => "pong".into(),
            Action::Send(frame) => {
                let json = frame.trim_start_matches("42/agent,");
                let v: Value = serde_json::from_str(json).unwrap_or_default();
                let mut cell = v[0].as_str().unwrap_or("?").to_owned();
                for field in ["threadId", "approvalId", "idempotencyKey"] {
                    if let Some(value) = v[1][field].as_str() {
                        cell.push(' ');
                        cell.push_str(value);
                    }
                }
                cell
            }
            other => format!("{other:?}").to_lowercase(),
        }
    }

    fn dialed() -> Input {
        let handshake = Handshake {
            sid: "s".into(),
            ping_interval: Duration::from_secs(300),
            ping_timeout: Duration::from_secs(20),
            max_payload: Some(1_000_000),
        };
        Input::Dialed(Ok((handshake, Instant::now())))
    }

    fn text(s: String) -> Input {
        Input::Text(s.into())
    }

    fn connected() -> Input {
        text(r#"42/agent,["connected",{"status":"ok"}]"#.into())
    }

    fn event(id: TurnId, kind: &str) -> Input {
        text(format!(
            r#"42/agent,["agent_event",{{"type":"{kind}","text":"x","threadId":"th{id}"}}]"#
        ))
    }

    fn socket(name: &str, data: Value) -> Input {
        text(format!("42/agent,{}", json!([name, data])))
    }

    fn lost() -> Input {
        Input::Fault(Fault::Lost("reset".into()))
    }

    fn refused() -> Input {
        socket(
            "error",
            json!({"code": "SESSION_EXPIRED", "message": "expired"}),
        )
    }

    fn stop(id: TurnId) -> Input {
        Input::Command(ToConn::Turn(id, TurnCommand::Stop))
    }

    /// A ready connection carrying turn 1, its message sent.
    fn started(capacity: usize) -> (Rig, Vec<Row>) {
        let mut rig = Rig::new(capacity);
        let t1 = rig.turn(1, 5, None);
        let rows = vec![
            In(t1, &[]),
            In(dialed(), &[]),
            In(connected(), &["message th1 k1"]),
        ];
        (rig, rows)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_turn_and_the_connection_retires_with_it() {
        let mut rig = Rig::new(64);
        assert_eq!(rig.actions(), ["dial"]);
        let t1 = rig.turn(1, 5, None);
        rig.run(vec![
            In(t1, &[]),
            Reading(false),
            In(dialed(), &[]),
            Reading(true),
            In(connected(), &["message th1 k1"]),
            In(event(1, "token"), &[]),
            In(event(2, "token"), &[]), // another thread's: nobody here
            In(text("2".into()), &["pong"]),
            In(event(1, "done"), &["retire"]),
            Reads(1, &["connected", "token", "done", "end"]),
            In(Input::Retired, &["close"]),
        ])
        .await;
        assert_eq!(rig.load.load(Ordering::Acquire), 0);
    }

    /// 2a52cb6: nothing is said before the gateway's `connected` (a refused
    /// token comes after the ack); a server that never sends it is spoken
    /// to after the grace.
    #[tokio::test(start_paused = true)]
    async fn speaks_only_after_connected_or_the_grace() {
        let mut rig = Rig::new(64);
        rig.actions();
        let t1 = rig.turn(1, 5, None);
        rig.run(vec![
            In(t1, &[]),
            In(dialed(), &[]),
            Wait(999),
            In(Input::Tick, &[]),
            Wait(1),
            In(Input::Tick, &["message th1 k1"]),
            Reads(1, &["connected"]),
        ])
        .await;
    }

    /// a62a694: a drop right after `connected`, before anything of the
    /// turn was heard: the message goes again, with its key, after the
    /// reconnect.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_message_is_sent_again_after_a_drop() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            In(lost(), &["drop"]),
            Reads(1, &["connected", "disconnected", "reconnecting"]),
            Wait(499),
            In(Input::Tick, &[]),
            Wait(1),
            In(Input::Tick, &["dial"]),
            In(dialed(), &[]),
            In(
                connected(),
                &["resume_stream th1", "join_thread th1", "message th1 k1"],
            ),
            Reads(1, &["connected", "stream_gap"]),
            In(event(1, "token"), &[]),
            // Answered now: a second drop does not send it again.
            In(lost(), &["drop"]),
            Wait(500),
            In(Input::Tick, &["dial"]),
            In(dialed(), &[]),
            In(connected(), &["resume_stream th1", "join_thread th1"]),
        ]);
        rig.run(rows).await;
    }

    /// 513f7aa: the message sent again after a reconnect keeps the
    /// reconnect watch: a server that already ran the turn (and ignores the
    /// repeated key) sends nothing more, and the turn is checked.
    #[tokio::test(start_paused = true)]
    async fn a_message_sent_again_keeps_the_reconnect_watch() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            In(lost(), &["drop"]),
            Wait(500),
            In(Input::Tick, &["dial"]),
            In(dialed(), &[]),
            In(
                connected(),
                &["resume_stream th1", "join_thread th1", "message th1 k1"],
            ),
            Wait(119_999),
            In(Input::Tick, &["pong"; 0]),
        ]);
        rig.run(rows).await;
        // Pings keep the socket; the turn's watch runs out at 120 s.
        rig.run(vec![
            In(text("2".into()), &["pong"]),
            Wait(1),
            In(Input::Tick, &["retire"]),
            Reads(
                1,
                &[
                    "connected",
                    "disconnected",
                    "reconnecting",
                    "connected",
                    "stream_gap",
                    "check",
                    "end",
                ],
            ),
        ])
        .await;
    }

    /// 589e136: the gateway's `connected` re-arms the refresh, so a token
    /// that expires again later is refreshed again; refused again before
    /// any `connected`, it is final.
    #[tokio::test(start_paused = true)]
    async fn a_token_is_refreshed_again_after_connected_but_not_in_a_loop() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            In(event(1, "token"), &[]),
            In(refused(), &["drop", "refresh"]),
            In(Input::Refreshed(true), &["dial"]),
            In(dialed(), &[]),
            In(connected(), &["resume_stream th1", "join_thread th1"]),
            // Expires again in a long turn: refreshed again.
            In(refused(), &["drop", "refresh"]),
            In(Input::Refreshed(true), &["dial"]),
            In(dialed(), &[]),
            // Refused before `connected`: no second refresh.
            In(refused(), &["drop", "fail", "close"]),
            Reads(
                1,
                &[
                    "connected",
                    "token",
                    "disconnected",
                    "reconnecting",
                    "connected",
                    "stream_gap",
                    "disconnected",
                    "reconnecting",
                    "Err(SESSION_EXPIRED)",
                    "end",
                ],
            ),
        ]);
        rig.run(rows).await;
        assert_eq!(rig.load.load(Ordering::Acquire), 0);
    }

    /// e4ea81d: a stop asked for while offline: a queued turn just ends, a
    /// started one cuts the reconnect pause short and its stop goes out on
    /// the new connection.
    #[tokio::test(start_paused = true)]
    async fn a_stop_while_offline() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        let t2 = rig.turn(2, 5, None);
        rows.extend([
            In(event(1, "token"), &[]),
            In(lost(), &["drop"]),
            In(t2, &[]),
            In(stop(2), &[]),
            Reads(2, &["end"]),
            In(stop(1), &["dial"]),
            In(dialed(), &[]),
            In(
                connected(),
                &["resume_stream th1", "join_thread th1", "stop th1"],
            ),
            In(event(1, "done"), &["retire"]),
        ]);
        rig.run(rows).await;
    }

    /// 1a9986d: the budget counts reconnects in a row that delivered
    /// nothing, not reconnects in a turn's life.
    #[tokio::test(start_paused = true)]
    async fn the_reconnect_budget_counts_reconnects_in_a_row() {
        let mut rig = Rig::new(64);
        rig.actions();
        let t1 = rig.turn(1, 1, None);
        let mut rows = vec![
            In(t1, &[]),
            In(dialed(), &[]),
            In(connected(), &["message th1 k1"]),
        ];
        for _ in 0..3 {
            rows.extend([
                In(event(1, "token"), &[]),
                In(lost(), &["drop"]),
                Wait(500),
                In(Input::Tick, &["dial"]),
                In(dialed(), &[]),
                In(connected(), &["resume_stream th1", "join_thread th1"]),
            ]);
        }
        // A fourth loss with nothing heard since the third: over budget.
        rows.extend([
            Take(1, 100),
            In(lost(), &["drop", "retire"]),
            Reads(1, &["disconnected", "Err(network)", "end"]),
        ]);
        rig.run(rows).await;
    }

    /// The burst (issue 18): a turn alone on its connection is never ended
    /// for a slow consumer; the reading stops until it makes room.
    #[tokio::test(start_paused = true)]
    async fn a_burst_on_a_turn_alone_stops_the_reading_not_the_turn() {
        let (mut rig, mut rows) = started(4);
        rig.actions();
        rows.extend([
            In(event(1, "token"), &[]),
            In(event(1, "token"), &[]),
            In(event(1, "token"), &[]), // connected + 3 tokens: full
            Reading(true),
            In(event(1, "token"), &[]),
            Reading(false),
        ]);
        rig.run(rows).await;
        assert_eq!(
            rig.core.deadline(),
            None,
            "alone: no grace, no ping deadline"
        );
        rig.run(vec![
            Wait(3_600_000),
            In(Input::Tick, &[]),
            Reading(false),
            Take(1, 2),
            In(Input::Drained, &[]),
            Reading(true),
            In(event(1, "done"), &["retire"]),
            Reads(1, &["token", "token", "token", "done", "end"]),
        ])
        .await;
    }

    /// Turns sharing a connection wait at most the grace for a full one,
    /// which then ends alone; the other reads on.
    #[tokio::test(start_paused = true)]
    async fn a_full_turn_sharing_its_connection_ends_after_the_grace() {
        let (mut rig, mut rows) = started(3);
        rig.actions();
        let t2 = rig.turn(2, 5, None);
        rows.extend([
            In(event(1, "token"), &[]),
            In(t2, &["message th2 k2"]),
            In(event(1, "token"), &[]),
            In(event(2, "token"), &[]),
            In(event(1, "token"), &[]), // held: turn 1 is full
            Reading(false),
            Wait(999),
            In(Input::Tick, &[]),
            Wait(1),
            In(Input::Tick, &["leave_thread th1"]),
            Reading(true),
            Reads(
                1,
                &[
                    "connected",
                    "token",
                    "token",
                    "token",
                    "Err(consumer_lagged)",
                    "end",
                ],
            ),
            In(event(2, "done"), &["retire"]),
            Reads(2, &["connected", "token", "done", "end"]),
        ]);
        rig.run(rows).await;
    }

    /// A shared full turn whose consumer reads within the grace goes on.
    #[tokio::test(start_paused = true)]
    async fn a_full_turn_that_drains_within_the_grace_goes_on() {
        let (mut rig, mut rows) = started(3);
        rig.actions();
        let t2 = rig.turn(2, 5, None);
        rows.extend([
            In(t2, &["message th2 k2"]),
            In(event(1, "token"), &[]),
            In(event(1, "token"), &[]),
            In(event(1, "token"), &[]),
            Reading(false),
            Wait(900),
            Take(1, 3),
            In(Input::Drained, &[]),
            Reading(true),
            Wait(5000),
            In(Input::Tick, &[]),
            In(event(1, "done"), &["leave_thread th1"]),
            Reads(1, &["token", "done", "end"]),
        ]);
        rig.run(rows).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_stops_the_turn() {
        let mut rig = Rig::new(64);
        rig.actions();
        let t1 = rig.turn(1, 5, Some(30));
        rig.run(vec![
            In(t1, &[]),
            In(dialed(), &[]),
            In(connected(), &["message th1 k1"]),
            Wait(20_000),
            In(event(1, "token"), &[]),
            Wait(29_999),
            In(Input::Tick, &[]),
            Wait(1),
            In(Input::Tick, &["stop th1", "retire"]),
            Reads(1, &["connected", "token", "Err(turn_idle)", "end"]),
        ])
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_at_the_servers_done_or_after_the_stop_grace() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        let t2 = rig.turn(2, 5, None);
        rows.extend([
            In(event(1, "token"), &[]),
            In(t2, &["message th2 k2"]),
            In(event(2, "token"), &[]),
            In(stop(1), &["stop th1"]),
            In(stop(2), &["stop th2"]),
            In(event(1, "done"), &["leave_thread th1"]),
            Wait(5000),
            In(Input::Tick, &["retire"]),
            Reads(1, &["connected", "token", "done", "end"]),
            Reads(2, &["connected", "token", "end"]),
        ]);
        rig.run(rows).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_stream_stops_its_turn() {
        let (mut rig, rows) = started(64);
        rig.actions();
        rig.run(rows).await;
        rig.readers.remove(&1);
        let dropped = Input::Command(ToConn::Turn(1, TurnCommand::Dropped));
        rig.run(vec![In(dropped, &["stop th1", "retire"])]).await;
        // A consumer gone without a word is found at the next event.
        let (mut rig, rows) = started(64);
        rig.actions();
        rig.run(rows).await;
        rig.readers.remove(&1);
        rig.run(vec![In(event(1, "token"), &["stop th1", "retire"])])
            .await;
    }

    fn rate_limit() -> Input {
        socket(
            "error",
            json!({"code": "rate_limit", "message": "slow down", "retryAfterSeconds": 3}),
        )
    }

    /// A rate limit answers the one unanswered message at once; the `done`
    /// after it is the refusal's.
    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_ends_the_unanswered_turn() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            In(rate_limit(), &["retire"]),
            // (The pool has not answered the retire yet: asked again.)
            In(socket("done", json!({"stopped": true})), &["retire"]),
            Reads(1, &["connected", "Err(rate_limit)", "end"]),
            In(Input::Retired, &["close"]),
        ]);
        rig.run(rows).await;
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_and_a_refused_connect_fail_every_turn() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            In(text("9nonsense".into()), &["fail", "close"]),
            Reads(1, &["connected", "Err(protocol_error)", "end"]),
        ]);
        rig.run(rows).await;
        // Commands that still arrive find the failure.
        let t2 = rig.turn(2, 5, None);
        rig.run(vec![In(t2, &[]), Reads(2, &["Err(protocol_error)", "end"])])
            .await;
        assert_eq!(rig.load.load(Ordering::Acquire), 0);

        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            In(
                text(r#"44/agent,{"message":"no such namespace"}"#.into()),
                &["fail", "close"],
            ),
            Reads(1, &["connected", "Err(connect_error)", "end"]),
        ]);
        rig.run(rows).await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_ping_for_the_silence_limit_is_a_lost_connection() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        rows.extend([
            Wait(319_999),
            In(text("2".into()), &["pong"]),
            Wait(319_999),
            In(Input::Tick, &[]),
            Wait(1),
            In(Input::Tick, &["drop"]),
            Reads(1, &["connected", "disconnected", "reconnecting"]),
        ]);
        rig.run(rows).await;
    }

    #[tokio::test(start_paused = true)]
    async fn approvals_are_answered_by_id_and_held_while_offline() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        let (reply, mut answered) = oneshot::channel();
        let approve = Input::Command(ToConn::Turn(
            1,
            TurnCommand::Approve(Answer {
                approval_id: "a1".into(),
                decision: Decision::approve(),
                reply,
            }),
        ));
        rows.extend([
            In(event(1, "token"), &[]),
            In(lost(), &["drop"]),
            In(approve, &[]),
            Wait(500),
            In(Input::Tick, &["dial"]),
            In(dialed(), &[]),
            In(
                connected(),
                &[
                    "resume_stream th1",
                    "join_thread th1",
                    "approval_response a1",
                ],
            ),
            In(socket("approval_ack", json!({"approvalId": "a1"})), &[]),
        ]);
        rig.run(rows).await;
        assert!(matches!(answered.try_recv(), Ok(Ok(()))));
    }

    /// Starts are pipelined (issue 18); an untagged refusal waits until
    /// the turns that answer have ruled themselves out.
    #[tokio::test(start_paused = true)]
    async fn pipelined_starts_and_refusals_attributed_by_elimination() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        let t2 = rig.turn(2, 5, None);
        let t3 = rig.turn(3, 5, None);
        rows.extend([
            In(t2, &["message th2 k2"]),
            In(t3, &["message th3 k3"]),
            // Three unanswered, one refusal: not yet known whose.
            In(rate_limit(), &[]),
            In(socket("done", json!({"stopped": true})), &[]),
            // An untagged error reaches every unanswered turn, ends none.
            In(
                socket(
                    "error",
                    json!({"code": "AGENT_SCOPE_MISMATCH", "message": "no"}),
                ),
                &[],
            ),
            In(event(1, "token"), &[]),
            Reads(2, &["connected", "socket_error"]),
            // Turn 3 answers too: the refusal was turn 2's.
            In(event(3, "token"), &["leave_thread th2"]),
            Reads(2, &["Err(rate_limit)", "end"]),
            Reads(1, &["connected", "socket_error", "token"]),
            Reads(3, &["connected", "socket_error", "token"]),
        ]);
        rig.run(rows).await;
    }

    /// As many refusals as unanswered turns: each of them is refused.
    #[tokio::test(start_paused = true)]
    async fn as_many_refusals_as_unanswered_turns_refuse_them_all() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        let t2 = rig.turn(2, 5, None);
        rows.extend([
            In(t2, &["message th2 k2"]),
            In(rate_limit(), &[]),
            In(rate_limit(), &["leave_thread th1", "retire"]),
            In(socket("done", json!({"stopped": true})), &["retire"]),
            In(socket("done", json!({"stopped": true})), &["retire"]),
            Reads(1, &["connected", "Err(rate_limit)", "end"]),
            Reads(2, &["connected", "Err(rate_limit)", "end"]),
        ]);
        rig.run(rows).await;
    }

    /// A turn of a thread with a live turn here waits for it: events are
    /// routed by thread.
    #[tokio::test(start_paused = true)]
    async fn a_second_turn_of_a_thread_waits_for_the_first() {
        let (mut rig, mut rows) = started(64);
        rig.actions();
        let (events, reader) = queue::queue(64, 1 << 20);
        rig.readers.insert(9, reader);
        rig.load.fetch_add(1, Ordering::AcqRel);
        let liveness = Liveness {
            idle: None,
            after_reconnect: Duration::from_secs(120),
        };
        let again = json!({"message": "again", "threadId": "th1", "idempotencyKey": "k9"});
        let turn = Turn::new(9, "th1".into(), None, 5, again, liveness, events);
        rows.extend([
            In(Input::Command(ToConn::Attach(Box::new(turn))), &[]),
            In(event(1, "done"), &["leave_thread th1", "message th1 k9"]),
            In(event(1, "token"), &[]),
            Reads(9, &["connected", "token"]),
        ]);
        rig.run(rows).await;
    }
}

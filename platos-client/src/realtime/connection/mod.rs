//! One shared connection: a spawned task that owns a WebSocket joined to
//! one namespace and carries the turns the [pool](super::pool) places on it.
//!
//! The task dials (paced by the pool), then reads frames: pings are
//! answered at once; every `agent_event` is routed by its `threadId`
//! (docs/realtime.md §3) to its turn's bounded hand-off without waiting, so no
//! consumer can hold the socket or the other turns back. What carries no
//! `threadId` is attributed by rule, never guessed:
//!
//! - `approval_needed` / `approval_resolved` name their agent: they reach
//!   every live turn of that agent (and turns whose agent is not known).
//! - A socket-level `error` / `done` (a rate limit, `AGENT_SCOPE_MISMATCH`)
//!   answers the one turn whose `message` is still unanswered: a connection
//!   sends a `message` only when no other is waiting for its first event,
//!   so there is at most one. With none waiting, an `error` reaches every
//!   live turn as a `socket_error` event and a `done` ends nothing.
//! - Other untagged events go to the connection's only started turn, and
//!   are dropped with a warning when there are several.
//!
//! A lost connection is redialed once for all its turns (one token refresh
//! through the client's single flight); each live turn then gets
//! `connected` and `stream_gap`, and its thread is re-joined. `stop`,
//! approvals and a dropped stream act on their turn alone. With no turns
//! left the connection closes, at once or after the idle time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use platos_events::Event;
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

mod inbound;

use inbound::Step;

use super::approvals::{Answer, Approvals};
use super::classify::Fault;
use super::dial::{self, Conn};
use super::turn::{Ending, Item, Phase, Silence, Turn, TurnId, Undelivered};
use super::{engineio, replicate, socketio};
use crate::client::PlatosClient;
use crate::config::{ReconnectConfig, Secret};
use crate::error::Error;
use crate::retry;

/// How long after the connect ack a server that never sends `connected`
/// is given before the client speaks anyway.
const READY_GRACE: Duration = Duration::from_millis(1000);
/// Frames handled back to back before the streams are woken and commands
/// are looked at.
const BURST: usize = 64;
/// How long after `stop` the server gets to send the turn's final `done`.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a clean close waits for the server's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the pool and the turns' handles ask of a connection.
pub(crate) enum ToConn {
    /// Carry this turn.
    Attach(Box<Turn>),
    /// Send `stop {threadId}`; the turn ends after the server's `done`.
    Stop(TurnId),
    /// The stream was dropped: stop the turn server-side, forget it.
    Dropped(TurnId),
    /// Send an approval answer and report the server's acknowledgement.
    Approval(Answer),
}

/// The connection's place in the pool, left when it closes.
pub(crate) trait Seat: Send + Sync + 'static {
    /// Leaves the pool if `unused()` holds, under the pool's lock (so no
    /// turn is placed meanwhile). Returns whether it left.
    fn leave_if(&self, unused: &mut dyn FnMut() -> bool) -> bool;
}

pub(crate) struct Connection {
    /// The client's number for this connection (in logs and turn spans).
    id: u64,
    client: PlatosClient,
    namespace: String,
    /// How long the connection stays open without turns.
    idle: Duration,
    seat: Box<dyn Seat>,
    /// Paces handshakes across the client.
    dials: Arc<Semaphore>,
    /// Turns placed here and not yet ended (the pool reads it).
    load: Arc<AtomicUsize>,
    commands: mpsc::UnboundedReceiver<ToConn>,
    turns: HashMap<TurnId, Turn>,
    /// The started turn of each thread: events are routed by `threadId`.
    threads: HashMap<String, TurnId>,
    /// Turns waiting to send their `message`, in arrival order.
    queued: VecDeque<TurnId>,
    /// The turn whose `message` is unanswered, and since when.
    unanswered: Option<(TurnId, Instant)>,
    approvals: Approvals,
    /// Stop graces running out, earliest first.
    stops: BinaryHeap<Reverse<(Instant, TurnId)>>,
    /// Silence limits of watched turns, earliest first; an entry is checked
    /// against its turn when it comes due (events move a turn's deadline
    /// without touching the heap).
    silences: BinaryHeap<Reverse<(Instant, TurnId)>>,
    /// The gateway said the socket is ready (or the grace passed).
    ready: bool,
    /// A stop asked for while disconnected cuts the reconnect pause short.
    hurry: bool,
    /// Reconnect attempts since an event last proved the connection good.
    attempt: u32,
    /// Whether a refused token may still be refreshed: spent by a refresh,
    /// re-armed when the gateway accepts a token (its `connected` event) or
    /// an event arrives. A token refused again before either is final, so a
    /// server that refuses every token cannot loop; one that expires later,
    /// in a long silent turn, is refreshed again.
    refresh_allowed: bool,
}

/// Why a connection stops serving.
enum Exit {
    /// No turns left, and the pool let the connection go.
    Unused,
    Fault(Fault),
}

impl Connection {
    // Each argument is a distinct thing the pool hands over; a struct
    // holding them would only be this call spelled twice.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        client: PlatosClient,
        namespace: String,
        idle: Duration,
        seat: Box<dyn Seat>,
        dials: Arc<Semaphore>,
        load: Arc<AtomicUsize>,
        commands: mpsc::UnboundedReceiver<ToConn>,
    ) -> Connection {
        Connection {
            id,
            client,
            namespace,
            idle,
            seat,
            dials,
            load,
            commands,
            turns: HashMap::new(),
            threads: HashMap::new(),
            queued: VecDeque::new(),
            unanswered: None,
            approvals: Approvals::default(),
            stops: BinaryHeap::new(),
            silences: BinaryHeap::new(),
            ready: false,
            hurry: false,
            attempt: 0,
            refresh_allowed: true,
        }
    }

    /// Serves until no turn is left (or none can be served).
    pub(crate) async fn run(mut self) {
        let mut gap: Option<String> = None;
        loop {
            // Read the token afresh: a REST call may have refreshed it.
            let token = self.client.shared().auth.session_token();
            let exit = match self.dial(token.clone()).await {
                Ok(mut conn) => {
                    let exit = self.session(&mut conn, gap.take()).await;
                    match exit {
                        Exit::Unused => {
                            dial::close(conn.ws, &self.namespace, CLOSE_GRACE).await;
                            return;
                        }
                        Exit::Fault(Fault::Failed(error)) => {
                            self.fail(error);
                            dial::close(conn.ws, &self.namespace, CLOSE_GRACE).await;
                            return;
                        }
                        lost => lost,
                    }
                }
                Err(exit) => exit,
            };

            let mut immediate = false;
            let reason = match exit {
                Exit::Unused => return,
                Exit::Fault(Fault::Failed(error)) => return self.fail(error),
                Exit::Fault(Fault::Lost(reason)) => reason,
                Exit::Fault(Fault::AuthRefused { code, message, raw }) => {
                    let auth = &self.client.shared().auth;
                    let refreshed = match &token {
                        Some(refused) if self.refresh_allowed && auth.can_refresh() => {
                            self.refresh_allowed = false;
                            auth.refresh_after(refused, 401).await
                        }
                        _ => None,
                    };
                    if refreshed.is_none() {
                        return self.fail(Error::auth_refused(code, message, raw));
                    }
                    immediate = true;
                    format!("session token refused: {message}")
                }
            };
            tracing::debug!(connection = self.id, %reason, turns = self.turns.len(), "realtime connection lost");
            self.lost(&reason);
            if self.turns.is_empty() && self.retire() {
                return;
            }
            if !immediate {
                let delay = reconnect_delay(&self.client.shared().reconnect, self.attempt);
                if self.pause(delay).await.is_err() {
                    return;
                }
            }
            gap = Some(reason);
        }
    }

    // ---- while disconnected -------------------------------------------------

    /// Dials (when the pool's pacing lets it), still taking commands.
    async fn dial(&mut self, token: Option<Secret>) -> Result<Conn, Exit> {
        self.flush();
        let (client, namespace, dials) = (
            self.client.clone(),
            self.namespace.clone(),
            self.dials.clone(),
        );
        let dialing = async move {
            // The semaphore is never closed; without a permit, dial anyway.
            let _permit = dials.acquire_owned().await.ok();
            dial::dial(&client, &namespace, token.as_ref()).await
        };
        tokio::pin!(dialing);
        loop {
            tokio::select! {
                biased;
                dialed = &mut dialing => return dialed.map_err(Exit::Fault),
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return Err(self.orphaned());
                    };
                    self.offline_command(command);
                    if self.turns.is_empty() && self.retire() {
                        return Err(Exit::Unused);
                    }
                }
            }
        }
    }

    /// Sleeps before a reconnect, still taking commands; a `stop` is worth
    /// a connection now, not after the pause.
    async fn pause(&mut self, delay: Duration) -> Result<(), Exit> {
        self.flush();
        let until = sleep_until(Instant::now() + delay);
        tokio::pin!(until);
        self.hurry = false;
        loop {
            tokio::select! {
                biased;
                () = &mut until => return Ok(()),
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return Err(self.orphaned());
                    };
                    self.offline_command(command);
                    if self.turns.is_empty() && self.retire() {
                        return Err(Exit::Unused);
                    }
                    if self.hurry {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A command while no connection is up: held until one is.
    fn offline_command(&mut self, command: ToConn) {
        match command {
            ToConn::Attach(turn) => self.attach(*turn),
            ToConn::Stop(id) => match self.turns.get_mut(&id).map(|t| &mut t.phase) {
                // Nothing was sent: nothing to stop server-side.
                Some(Phase::Queued { .. }) => self.end_as(id, Ending::Stopped),
                Some(phase @ (Phase::Live | Phase::Sent { .. })) => {
                    *phase = Phase::Stopping { sent: false };
                    self.hurry = true;
                }
                _ => {}
            },
            ToConn::Dropped(id) => self.end_as(id, Ending::Dropped),
            ToConn::Approval(answer) => self.approvals.hold(answer),
        }
    }

    /// Nothing can reach the connection any more (the pool let it go and
    /// every stream and handle is gone): it ends with whatever is left.
    fn orphaned(&mut self) -> Exit {
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            self.end(id, None);
        }
        Exit::Unused
    }

    fn attach(&mut self, turn: Turn) {
        turn.placed_on(self.id);
        self.queued.push_back(turn.id);
        self.turns.insert(turn.id, turn);
    }

    /// The connection is gone: what each turn hears, and who gives up.
    fn lost(&mut self, reason: &str) {
        self.approvals.connection_lost();
        self.unanswered = None;
        self.stops.clear();
        self.ready = false;
        self.attempt += 1;
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            let Some(turn) = self.turns.get_mut(&id) else {
                continue;
            };
            match std::mem::replace(&mut turn.phase, Phase::Live) {
                // The refusal explains the drop.
                Phase::Refused(error) => {
                    self.end(id, Some(error));
                    continue;
                }
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
        match turn.push(item) {
            Ok(()) => true,
            Err(Undelivered::Gone) => {
                self.end_as(id, Ending::Dropped);
                false
            }
            Err(Undelivered::Lagged(error)) => {
                self.end(id, Some(error));
                false
            }
        }
    }

    // ---- one connection -----------------------------------------------------

    /// Runs one acknowledged connection until it ends.
    ///
    /// Nothing is sent until the gateway says the socket is ready: a refused
    /// token is not a CONNECT_ERROR but an `error` event after the ack
    /// (docs/realtime.md §2), so a `message` sent right after the ack could go to a
    /// socket about to be refused, and would then never be sent again.
    /// Gateways announce success with the `connected` event; for servers
    /// that never send it, [`READY_GRACE`] after the ack counts as ready.
    async fn session(&mut self, conn: &mut Conn, mut gap: Option<String>) -> Exit {
        let mut server_ready = false;
        let mut burst = 0;
        let silence = conn.handshake.silence_limit();
        let ping_timer = sleep_until(conn.opened_at + silence);
        tokio::pin!(ping_timer);
        let ready_timer = sleep_until(Instant::now() + READY_GRACE);
        tokio::pin!(ready_timer);
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        let chores = sleep_until(far());
        tokio::pin!(chores);
        let mut chores_at: Option<Instant> = None;
        let mut idle_since: Option<Instant> = None;

        loop {
            if !self.ready && server_ready {
                self.ready = true;
                if let Err(fault) = self.on_ready(conn, gap.take()).await {
                    return Exit::Fault(fault);
                }
            }
            if self.ready && self.turns.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since + self.idle <= Instant::now() && self.retire() {
                    return Exit::Unused;
                }
            } else {
                idle_since = None;
            }
            // Frames already received are handled in bursts without waking
            // the streams; they are woken once, when the socket would block.
            let frame = if burst < BURST {
                conn.ws.next().now_or_never()
            } else {
                None
            };
            let frame = match frame {
                Some(frame) => {
                    burst += 1;
                    frame
                }
                None => {
                    burst = 0;
                    self.flush();
                    let next = self.next_chore(idle_since);
                    if next != chores_at {
                        chores_at = next;
                        chores.as_mut().reset(next.unwrap_or_else(far));
                    }
                    // Biased: commands first so `stop` is not starved by a
                    // flood of frames.
                    tokio::select! {
                        biased;
                        command = self.commands.recv() => {
                            let Some(command) = command else {
                                return self.orphaned();
                            };
                            if let Err(fault) = self.command(conn, command).await {
                                return Exit::Fault(fault);
                            }
                            continue;
                        }
                        frame = conn.ws.next() => frame,
                        () = &mut ping_timer => {
                            return Exit::Fault(Fault::Lost(format!(
                                "no ping from the server for {} ms",
                                silence.as_millis()
                            )));
                        }
                        () = &mut ready_timer, if !server_ready => {
                            tracing::debug!("no `connected` event from the server; speaking anyway");
                            server_ready = true;
                            continue;
                        }
                        () = &mut chores, if chores_at.is_some() => {
                            chores_at = None;
                            if let Err(fault) = self.chores(conn).await {
                                return Exit::Fault(fault);
                            }
                            continue;
                        }
                    }
                }
            };
            let outcome = match frame {
                None => Err(Fault::Lost("the server closed the connection".into())),
                Some(Err(e)) => Err(dial::classify_ws_error(e)),
                Some(Ok(Message::Text(text))) => {
                    self.on_text(conn, &text, ping_timer.as_mut(), silence)
                        .await
                }
                Some(Ok(Message::Binary(_))) => Err(dial::binary_frame()),
                Some(Ok(Message::Close(_))) => {
                    Err(Fault::Lost("the server closed the WebSocket".into()))
                }
                // WebSocket-level pings are answered by tungstenite.
                Some(Ok(_)) => Ok(Step::Go),
            };
            match outcome {
                Ok(Step::Go) => {}
                Ok(Step::Ready) => {
                    server_ready = true;
                    self.refresh_allowed = true;
                }
                Err(fault) => return Exit::Fault(fault),
            }
        }
    }

    /// First words on a ready connection: each turn hears `connected`;
    /// after a reconnect each started turn hears `stream_gap` and its
    /// thread is re-joined (the gateway routes a turn's events to the
    /// socket that sent `message`, which is gone) with `resume_stream`
    /// first for parity with the other SDKs. Then waiting messages go out.
    async fn on_ready(&mut self, conn: &mut Conn, gap: Option<String>) -> Result<(), Fault> {
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            self.greet(conn, id, gap.as_deref()).await?;
        }
        for answer in self.approvals.take_unsent() {
            self.send_approval(conn, answer).await?;
        }
        self.start_next(conn).await
    }

    /// Tells one turn the connection is up and rejoins its thread.
    async fn greet(&mut self, conn: &mut Conn, id: TurnId, gap: Option<&str>) -> Result<(), Fault> {
        if !self
            .deliver(conn, id, Item::made(Event::connected()), false)
            .await?
        {
            return Ok(());
        }
        let Some(turn) = self.turns.get_mut(&id) else {
            return Ok(());
        };
        turn.announced = true;
        if !turn.started() {
            return Ok(());
        }
        let thread = thread_ref(&turn.thread_id);
        let stop = matches!(turn.phase, Phase::Stopping { sent: false });
        if gap.is_some()
            && let Some(at) = turn.heard(Silence::Reconnected)
        {
            self.silences.push(Reverse((at, id)));
        }
        let gap = Item::made(Event::stream_gap(
            gap.map(str::to_owned),
            Some(self.attempt),
        ));
        if !self.deliver(conn, id, gap, false).await? {
            return Ok(());
        }
        self.emit(conn, "resume_stream", &thread).await?;
        self.emit(conn, "join_thread", &thread).await?;
        if stop {
            self.send_stop(conn, id).await?;
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
        Ok(())
    }

    /// Sends the next waiting `message`, if no other is unanswered.
    async fn start_next(&mut self, conn: &mut Conn) -> Result<(), Fault> {
        while self.ready && self.unanswered.is_none() {
            let threads = &self.threads;
            let turns = &self.turns;
            let Some(position) = self.queued.iter().position(|id| {
                turns
                    .get(id)
                    .is_some_and(|t| !threads.contains_key(&t.thread_id))
            }) else {
                return Ok(());
            };
            let Some(id) = self.queued.remove(position) else {
                return Ok(());
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
            if let Some(max) = conn.handshake.max_payload
                && frame.len() > max
            {
                let error = Error::stream(
                    Some("payload_too_large".into()),
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
            if let Some(at) = turn.heard(turn.silence) {
                self.silences.push(Reverse((at, id)));
            }
            self.unanswered = Some((id, Instant::now()));
            dial::send_text(&mut conn.ws, frame).await?;
            tracing::debug!(parent: &turn.span, "message sent");
        }
        Ok(())
    }

    /// The earliest timed chore: an unanswered message given up on, a stop
    /// grace ending, the idle time ending.
    fn next_chore(&self, idle_since: Option<Instant>) -> Option<Instant> {
        let timeout = self.client.shared().timeout;
        [
            self.unanswered.map(|(_, since)| since + timeout),
            self.stops.peek().map(|Reverse((at, _))| *at),
            self.silences
                .peek()
                .filter(|_| self.ready)
                .map(|Reverse((at, _))| *at),
            idle_since.map(|since| since + self.idle),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn chores(&mut self, conn: &mut Conn) -> Result<(), Fault> {
        let now = Instant::now();
        if let Some((id, since)) = self.unanswered
            && since + self.client.shared().timeout <= now
        {
            // A server that never answers must not stall the connection:
            // the turn goes on, but a later refusal can no longer be its.
            tracing::debug!(turn = id, "no answer to `message` within the timeout");
            self.unanswered = None;
        }
        while let Some(Reverse((at, id))) = self.stops.peek().copied() {
            if at > now {
                break;
            }
            self.stops.pop();
            if let Some(turn) = self.turns.get_mut(&id)
                && matches!(turn.phase, Phase::Stopping { .. })
            {
                turn.ends_as(Ending::Stopped);
                self.finish(conn, id, None).await?;
            }
        }
        // Only on a ready connection: a reconnect restarts the watch.
        while self.ready
            && let Some(Reverse((at, id))) = self.silences.peek().copied()
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
                Some(_) => self.silent(conn, id).await?,
            }
        }
        self.start_next(conn).await
    }

    /// Turn `id` heard nothing for its silence limit (docs/realtime.md §6).
    async fn silent(&mut self, conn: &mut Conn, id: TurnId) -> Result<(), Fault> {
        let Some(turn) = self.turns.get(&id) else {
            return Ok(());
        };
        let limit = turn.silence_limit().unwrap_or_default();
        match turn.silence {
            // The gateway that ran the turn may be gone, and the turn with
            // it: the stream asks the thread. No `stop`: the turn may still
            // be running, and its answer is wanted.
            Silence::Reconnected => {
                tracing::debug!(parent: &turn.span, "silent after a reconnect: checking");
                self.deliver(conn, id, Item::Check(limit), true)
                    .await
                    .map(drop)
            }
            // The caller's idle limit: the turn is given up, so it is
            // stopped rather than left running and costing.
            Silence::Normal => {
                let thread = thread_ref(&turn.thread_id);
                self.emit(conn, "stop", &thread).await?;
                let error = Error::stream(
                    Some("turn_idle".into()),
                    format!(
                        "no event for {} s, the turn's idle limit; the turn was stopped",
                        limit.as_secs_f64()
                    ),
                );
                self.finish(conn, id, Some(error)).await
            }
        }
    }

    /// A command while connected.
    async fn command(&mut self, conn: &mut Conn, command: ToConn) -> Result<(), Fault> {
        if !self.ready {
            self.offline_command(command);
            return Ok(());
        }
        match command {
            ToConn::Attach(turn) => {
                let id = turn.id;
                self.attach(*turn);
                self.greet(conn, id, None).await?;
                self.start_next(conn).await
            }
            ToConn::Stop(id) => match self.turns.get(&id).map(|t| &t.phase) {
                Some(Phase::Queued { .. }) => {
                    self.end_as(id, Ending::Stopped);
                    Ok(())
                }
                Some(Phase::Live | Phase::Sent { .. }) => self.send_stop(conn, id).await,
                _ => Ok(()),
            },
            ToConn::Dropped(id) => self.abandon(conn, id).await,
            ToConn::Approval(answer) => self.send_approval(conn, answer).await,
        }
    }

    async fn send_stop(&mut self, conn: &mut Conn, id: TurnId) -> Result<(), Fault> {
        let Some(turn) = self.turns.get_mut(&id) else {
            return Ok(());
        };
        turn.phase = Phase::Stopping { sent: true };
        let thread = thread_ref(&turn.thread_id);
        self.stops.push(Reverse((Instant::now() + STOP_GRACE, id)));
        self.emit(conn, "stop", &thread).await
    }

    /// The consumer left: a started turn is stopped server-side (so it
    /// stops costing), then forgotten.
    async fn abandon(&mut self, conn: &mut Conn, id: TurnId) -> Result<(), Fault> {
        let Some(turn) = self.turns.get_mut(&id) else {
            return Ok(());
        };
        turn.ends_as(Ending::Dropped);
        if matches!(
            turn.phase,
            Phase::Live | Phase::Sent { .. } | Phase::Refused(_)
        ) {
            tracing::debug!(parent: &turn.span, "stream dropped mid-turn: sending stop");
            let thread = thread_ref(&turn.thread_id);
            self.emit(conn, "stop", &thread).await?;
        }
        self.finish(conn, id, None).await
    }

    /// Sends `approval_response` and remembers who waits for the answer.
    async fn send_approval(&mut self, conn: &mut Conn, answer: Answer) -> Result<(), Fault> {
        let frame = match event_frame(&self.namespace, "approval_response", &answer.payload) {
            Ok(frame) => frame,
            Err(error) => {
                let _ = answer.reply.send(Err(error));
                return Ok(());
            }
        };
        if let Err(fault) = dial::send_text(&mut conn.ws, frame).await {
            let _ = answer.reply.send(Err(Error::network(
                "the connection was lost while sending the approval",
                None,
            )));
            return Err(fault);
        }
        self.approvals.sent(answer.approval_id, answer.reply);
        Ok(())
    }

    /// Hands an item to turn `id`; `last` ends the turn after it. Returns
    /// whether the turn is still live.
    async fn deliver(
        &mut self,
        conn: &mut Conn,
        id: TurnId,
        item: Item,
        last: bool,
    ) -> Result<bool, Fault> {
        let Some(turn) = self.turns.get_mut(&id) else {
            return Ok(false);
        };
        if last {
            turn.ends_as(match item {
                Item::Check(_) => Ending::Checked,
                _ => Ending::Done,
            });
        }
        match turn.push(item) {
            Ok(()) if last => self.finish(conn, id, None).await.map(|()| false),
            Ok(()) => Ok(true),
            Err(Undelivered::Gone) => self.abandon(conn, id).await.map(|()| false),
            // No `stop`: the turn's result stays retrievable over REST.
            Err(Undelivered::Lagged(error)) => {
                self.finish(conn, id, Some(error)).await.map(|()| false)
            }
        }
    }

    /// Ends turn `id` on a live connection: its thread is left when the
    /// connection stays open for others, and the next message may go.
    async fn finish(
        &mut self,
        conn: &mut Conn,
        id: TurnId,
        tail: Option<Error>,
    ) -> Result<(), Fault> {
        let Some(thread) = self
            .turns
            .get(&id)
            .map(|t| (t.started(), t.thread_id.clone()))
        else {
            return Ok(());
        };
        self.end(id, tail);
        if thread.0 && (!self.turns.is_empty() || !self.idle.is_zero()) {
            self.emit(conn, "leave_thread", &thread_ref(&thread.1))
                .await?;
        }
        self.start_next(conn).await
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
        if self.unanswered.is_some_and(|(waiting, _)| waiting == id) {
            self.unanswered = None;
        }
        if !turn.started() {
            self.queued.retain(|queued| *queued != id);
        }
        self.load.fetch_sub(1, Ordering::AcqRel);
        turn.finish(tail);
    }

    /// Every turn ends with `error`, and so does the connection.
    fn fail(&mut self, error: Error) {
        self.seat.leave_if(&mut || true);
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                ToConn::Attach(turn) => self.attach(*turn),
                ToConn::Approval(answer) => {
                    let _ = answer.reply.send(Err(replicate(&error)));
                }
                ToConn::Stop(_) | ToConn::Dropped(_) => {}
            }
        }
        let ids: Vec<TurnId> = self.turns.keys().copied().collect();
        for id in ids {
            self.end(id, Some(replicate(&error)));
        }
    }

    /// Leaves the pool if no turn is here or on its way.
    fn retire(&mut self) -> bool {
        let commands = &self.commands;
        let turns = &self.turns;
        self.seat
            .leave_if(&mut || turns.is_empty() && commands.is_empty())
    }

    /// Wakes every stream that has new items.
    fn flush(&mut self) {
        for turn in self.turns.values_mut() {
            turn.flush();
        }
    }

    async fn emit(&self, conn: &mut Conn, name: &str, data: &Value) -> Result<(), Fault> {
        let frame = event_frame(&self.namespace, name, data).map_err(Fault::Failed)?;
        dial::send_text(&mut conn.ws, frame).await
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

#[cfg(test)]
mod tests {
    use super::inbound::Recipients;
    use super::*;

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
    fn untagged_events_are_attributed_by_rule() {
        assert!(matches!(
            Recipients::of(Some("t"), Some("a"), true),
            Recipients::Thread("t")
        ));
        assert!(matches!(
            Recipients::of(None, Some("a"), true),
            Recipients::Agent(Some("a"))
        ));
        assert!(matches!(
            Recipients::of(None, Some("a"), false),
            Recipients::Untagged
        ));
    }
}

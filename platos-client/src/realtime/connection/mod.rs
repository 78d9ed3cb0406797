//! One shared connection: a spawned task that owns a WebSocket joined to
//! one namespace and carries the turns the [pool](super::pool) places on it.
//!
//! What the connection does is decided by [`core::Core`], a state machine
//! without I/O; this task only drives it: it dials when told to, writes
//! the frames it is given, reads frames while the core is reading, and
//! feeds it commands, frames, faults, timers and drains.
//!
//! Every `agent_event` is routed by its `threadId` (docs/realtime.md §3)
//! to its turn's bounded hand-off without waiting. What carries no
//! `threadId` is attributed by rule, never guessed:
//!
//! - `approval_needed` / `approval_resolved` name their agent: they reach
//!   every live turn of that agent (and turns whose agent is not known).
//! - A rate-limit refusal (`error` then `done`) belongs to a turn whose
//!   `message` is unanswered; messages are pipelined, so it is attributed
//!   by elimination (docs/realtime.md §5): turns that hear an event were
//!   not refused, and once as many refusals wait as turns are unanswered,
//!   those turns are the refused ones. Any other socket-level `error`
//!   reaches every unanswered turn (every live turn when none is) as a
//!   `socket_error` event.
//! - Other untagged events go to the connection's only started turn, and
//!   are dropped with a warning when there are several.
//!
//! A full hand-off stops the reading (docs/realtime.md §5): a turn alone
//! waits for its consumer, turns that share the connection wait at most
//! [`RealtimeConfig::backpressure_grace`](super::RealtimeConfig::backpressure_grace)
//! before the full one ends alone with `consumer_lagged`.
//!
//! A lost connection is redialed once for all its turns (one token refresh
//! through the client's single flight); each live turn then gets
//! `connected` and `stream_gap`, and its thread is re-joined. `stop`,
//! approvals and a dropped stream act on their turn alone. With no turns
//! left the connection closes, at once or after the idle time.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

pub(crate) mod core;

use self::core::{Action, Core, Input, Settings};
use super::approvals::Answer;
use super::classify::Fault;
use super::dial::{self, Conn};
use super::turn::{Turn, TurnId};
use crate::config::Secret;
use crate::realtime::Context;

/// Frames handled back to back before the streams are woken and commands
/// are looked at.
const BURST: usize = 64;
/// How long a clean close waits for the server's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the pool and the turns' handles ask of a connection.
pub(crate) enum ToConn {
    /// Carry this turn.
    Attach(Box<Turn>),
    /// A command for one of its turns.
    Turn(TurnId, TurnCommand),
}

/// What a turn's stream and handles ask, on either lane.
pub(crate) enum TurnCommand {
    /// Stop the turn: `stop {threadId}` on the socket (the turn ends after
    /// the server's `done`), closing the request on the HTTP lane.
    Stop,
    /// The stream was dropped: stop the turn server-side, forget it.
    Dropped,
    /// Send an approval's decision and report the server's acknowledgement.
    Approve(Answer),
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
    client: Context,
    namespace: String,
    seat: Box<dyn Seat>,
    /// Paces handshakes across the client.
    dials: Arc<Semaphore>,
    commands: mpsc::UnboundedReceiver<ToConn>,
    core: Core,
    /// Rung by a turn's hand-off that drained after it was full.
    drain: Arc<Notify>,
}

impl Connection {
    // Each argument is a distinct thing the pool hands over; a struct
    // holding them would only be this call spelled twice.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        client: Context,
        namespace: String,
        idle: Duration,
        seat: Box<dyn Seat>,
        dials: Arc<Semaphore>,
        load: Arc<AtomicUsize>,
        commands: mpsc::UnboundedReceiver<ToConn>,
    ) -> Connection {
        let shared = client.shared();
        let settings = Settings {
            idle,
            timeout: shared.timeout,
            reconnect: shared.reconnect.clone(),
            grace: shared.pool.config().backpressure_grace,
        };
        let drain = Arc::new(Notify::new());
        let core = Core::new(namespace.clone(), settings, load, drain.clone());
        Connection {
            id,
            client,
            namespace,
            seat,
            dials,
            commands,
            core,
            drain,
        }
    }

    /// Drives the core until it closes.
    pub(crate) async fn run(mut self) {
        let mut socket: Option<Conn> = None;
        let mut dialing: Option<BoxFuture<'static, Result<Conn, Fault>>> = None;
        let mut refreshing: Option<BoxFuture<'static, bool>> = None;
        // The token the last dial used: a refusal refreshes that one.
        let mut token: Option<Secret> = None;
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        let timer = sleep_until(far());
        tokio::pin!(timer);
        let mut timer_at: Option<Instant> = None;
        let mut burst = 0;
        loop {
            // What the core asked for, in order; a failed write is its input.
            while let Some(action) = self.core.next_action() {
                match action {
                    Action::Dial => {
                        token = self.client.shared().auth.session_token();
                        let (client, namespace, dials, token) = (
                            self.client.clone(),
                            self.namespace.clone(),
                            self.dials.clone(),
                            token.clone(),
                        );
                        dialing = Some(Box::pin(async move {
                            // The semaphore is never closed; without a permit, dial anyway.
                            let _permit = dials.acquire_owned().await.ok();
                            dial::dial(&client, &namespace, token.as_ref()).await
                        }));
                    }
                    Action::Send(frame) => {
                        if let Some(conn) = &mut socket
                            && let Err(fault) = dial::send_text(&mut conn.ws, frame).await
                        {
                            self.core.handle(Input::Fault(fault), Instant::now());
                        }
                    }
                    Action::Refresh => {
                        let client = self.client.clone();
                        let refused = token.clone();
                        refreshing = Some(Box::pin(async move {
                            let auth = &client.shared().auth;
                            match &refused {
                                Some(refused) if auth.can_refresh() => {
                                    auth.refresh_after(refused, 401).await.is_some()
                                }
                                _ => false,
                            }
                        }));
                    }
                    Action::Drop => socket = None,
                    Action::Retire => {
                        let (core, commands) = (&self.core, &self.commands);
                        if self
                            .seat
                            .leave_if(&mut || core.is_empty() && commands.is_empty())
                        {
                            self.core.handle(Input::Retired, Instant::now());
                        }
                    }
                    Action::Fail => {
                        self.seat.leave_if(&mut || true);
                        self.commands.close();
                        while let Ok(command) = self.commands.try_recv() {
                            self.core.handle(Input::Command(command), Instant::now());
                        }
                    }
                    Action::Close => {
                        if let Some(conn) = socket.take() {
                            dial::close(conn.ws, &self.namespace, CLOSE_GRACE).await;
                        }
                        return;
                    }
                }
            }

            // Frames already received are handled in bursts without waking
            // the streams; they are woken once, when the socket would block.
            let reading = self.core.reading() && socket.is_some();
            if reading && burst < BURST {
                let ready = socket
                    .as_mut()
                    .and_then(|conn| conn.ws.next().now_or_never());
                if let Some(frame) = ready {
                    burst += 1;
                    let input = frame_input(frame);
                    if let Some(input) = input {
                        self.core.handle(input, Instant::now());
                    }
                    continue;
                }
            }
            burst = 0;
            self.core.flush();
            let next = self.core.deadline();
            if next != timer_at {
                timer_at = next;
                timer.as_mut().reset(next.unwrap_or_else(far));
            }
            let pressed = self.core.pressed();
            let input = tokio::select! {
                // Biased: commands first so `stop` is not starved by a
                // flood of frames.
                biased;
                command = self.commands.recv() => match command {
                    Some(ToConn::Attach(turn)) => {
                        turn.placed_on(self.id);
                        Some(Input::Command(ToConn::Attach(turn)))
                    }
                    Some(command) => Some(Input::Command(command)),
                    None => Some(Input::Orphaned),
                },
                dialed = async { match dialing.as_mut() { Some(d) => d.await, None => std::future::pending().await } } => {
                    dialing = None;
                    Some(match dialed {
                        Ok(conn) => {
                            let opened = (conn.handshake.clone(), conn.opened_at);
                            socket = Some(conn);
                            Input::Dialed(Ok(opened))
                        }
                        Err(fault) => Input::Dialed(Err(fault)),
                    })
                }
                refreshed = async { match refreshing.as_mut() { Some(r) => r.await, None => std::future::pending().await } } => {
                    refreshing = None;
                    Some(Input::Refreshed(refreshed))
                }
                frame = async { match socket.as_mut() { Some(conn) if reading => conn.ws.next().await, _ => std::future::pending().await } } => {
                    burst = 1;
                    frame_input(frame)
                }
                () = self.drain.notified(), if pressed => Some(Input::Drained),
                () = &mut timer, if timer_at.is_some() => {
                    timer_at = None;
                    Some(Input::Tick)
                }
            };
            if let Some(input) = input {
                self.core.handle(input, Instant::now());
            }
        }
    }
}

/// What a read from the socket tells the core (nothing for WebSocket-level
/// pings, which tungstenite answers).
fn frame_input(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Option<Input> {
    Some(match frame {
        None => Input::Fault(Fault::Lost("the server closed the connection".into())),
        Some(Err(e)) => Input::Fault(dial::classify_ws_error(e)),
        Some(Ok(Message::Text(text))) => Input::Text(text),
        Some(Ok(Message::Binary(_))) => Input::Fault(dial::binary_frame()),
        Some(Ok(Message::Close(_))) => {
            Input::Fault(Fault::Lost("the server closed the WebSocket".into()))
        }
        Some(Ok(_)) => return None,
    })
}

//! What the server says on a connection: each Engine.IO frame, the
//! Socket.IO packet in it, and the turn (or turns) each event belongs to,
//! by the rules in the [module docs](super).

use std::cmp::Reverse;
use std::pin::Pin;
use std::time::Duration;

use platos_events::Event;
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Connection;
use crate::realtime::classify::{self, Fault, Signal};
use crate::realtime::dial::{self, Conn};
use crate::realtime::turn::{Item, Phase, Silence, TurnId};
use crate::realtime::{engineio, socketio};

impl Connection {
    /// One WebSocket text message.
    pub(super) async fn on_text(
        &mut self,
        conn: &mut Conn,
        text: &Utf8Bytes,
        ping_timer: Pin<&mut Sleep>,
        silence: Duration,
    ) -> Result<Step, Fault> {
        match engineio::decode(text.as_str()).map_err(|e| Fault::Failed(e.into()))? {
            engineio::Packet::Ping(payload) => {
                ping_timer.reset(Instant::now() + silence);
                dial::send_text(&mut conn.ws, engineio::pong(payload)).await?;
                Ok(Step::Go)
            }
            engineio::Packet::Message(packet) => self.on_packet(conn, text, packet).await,
            engineio::Packet::Close => Err(Fault::Lost(
                "the server closed the Engine.IO session".into(),
            )),
            engineio::Packet::Open(_)
            | engineio::Packet::Pong(_)
            | engineio::Packet::Upgrade
            | engineio::Packet::Noop => Ok(Step::Go),
        }
    }

    /// One Socket.IO packet, a slice of `frame`.
    pub(super) async fn on_packet(
        &mut self,
        conn: &mut Conn,
        frame: &Utf8Bytes,
        packet: &str,
    ) -> Result<Step, Fault> {
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
            self.on_agent_event(conn, to, item, route.is_done()).await?;
            return Ok(Step::Go);
        }
        let packet = socketio::decode(packet).map_err(|e| Fault::Failed(e.into()))?;
        if packet.namespace() != self.namespace {
            tracing::trace!(
                namespace = packet.namespace(),
                "packet for another namespace"
            );
            return Ok(Step::Go);
        }
        match packet {
            socketio::Packet::Event { name, args, .. } => {
                let data = args.into_iter().next().unwrap_or(Value::Null);
                self.on_signal(conn, classify::classify(&name, data)).await
            }
            socketio::Packet::Disconnect { .. } => {
                Err(Fault::Lost("the server left the namespace".into()))
            }
            socketio::Packet::ConnectError { data, .. } => Err(classify::connect_refused(&data)),
            socketio::Packet::Connect { .. } | socketio::Packet::Ack { .. } => Ok(Step::Go),
        }
    }

    /// One server event other than a hot-path `agent_event` (docs/realtime.md §3).
    pub(super) async fn on_signal(
        &mut self,
        conn: &mut Conn,
        signal: Signal,
    ) -> Result<Step, Fault> {
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
                self.on_agent_event(conn, to, Item::AgentValue(data), done)
                    .await?;
            }
            Signal::Ready => return Ok(Step::Ready),
            Signal::TokenRefused { code, message, raw } => {
                return Err(Fault::AuthRefused { code, message, raw });
            }
            Signal::RateLimited(error) => match self.unanswered {
                Some((id, _)) => {
                    if let Some(turn) = self.turns.get_mut(&id)
                        && matches!(turn.phase, Phase::Live | Phase::Sent { .. })
                    {
                        turn.phase = Phase::Refused(error);
                    }
                }
                None => {
                    tracing::warn!("a rate-limit refusal that answers no message");
                    let event = Event::socket_error(error.message(), error.code().map(Into::into));
                    self.broadcast(conn, event).await?;
                }
            },
            Signal::SocketError(event) => match self.unanswered {
                Some((id, _)) => {
                    self.deliver(conn, id, Item::made(event), false).await?;
                }
                None => self.broadcast(conn, event).await?,
            },
            Signal::SocketDone(event) => {
                let target = match self.unanswered {
                    Some((id, _)) => Some(id),
                    None => self.only_started(),
                };
                match target {
                    Some(id) => match self.turns.get_mut(&id).map(|t| &mut t.phase) {
                        Some(Phase::Refused(_)) => {
                            let Some(Phase::Refused(error)) = self
                                .turns
                                .get_mut(&id)
                                .map(|t| std::mem::replace(&mut t.phase, Phase::Live))
                            else {
                                return Ok(Step::Go);
                            };
                            self.finish(conn, id, Some(error)).await?;
                        }
                        Some(_) => {
                            self.deliver(conn, id, Item::made(event), true).await?;
                        }
                        None => {}
                    },
                    None => tracing::warn!("a socket-level `done` that answers no turn; ignored"),
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
        Ok(Step::Go)
    }

    /// One `agent_event` for `to`; `done` ends the turn after it.
    pub(super) async fn on_agent_event(
        &mut self,
        conn: &mut Conn,
        to: Recipients<'_>,
        item: Item,
        done: bool,
    ) -> Result<(), Fault> {
        match to {
            Recipients::Thread(thread) => match self.threads.get(thread) {
                Some(&id) => {
                    self.answered(conn, id).await?;
                    self.deliver(conn, id, item, done).await?;
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
                    self.deliver(conn, id, item.share(), false).await?;
                }
            }
            Recipients::Untagged => match self.only_started() {
                Some(id) => {
                    self.answered(conn, id).await?;
                    self.deliver(conn, id, item, done).await?;
                }
                None => tracing::warn!(
                    turns = self.turns.len(),
                    "an agent_event without threadId on a connection with several turns; dropped"
                ),
            },
        }
        Ok(())
    }

    /// An event for `id` arrived: its message is answered, and an event
    /// proves the connection and the token good.
    pub(super) async fn answered(&mut self, conn: &mut Conn, id: TurnId) -> Result<(), Fault> {
        self.attempt = 0;
        self.refresh_allowed = true;
        if let Some(turn) = self.turns.get_mut(&id) {
            turn.answered();
            let was = turn.silence;
            // A reconnected turn back to its idle limit needs an entry
            // for it; otherwise its entry stands and is moved when due.
            if let Some(at) = turn.heard(Silence::Normal)
                && was == Silence::Reconnected
            {
                self.silences.push(Reverse((at, id)));
            }
        }
        if self.unanswered.is_some_and(|(waiting, _)| waiting == id) {
            self.unanswered = None;
            self.start_next(conn).await?;
        }
        Ok(())
    }

    /// The one started turn, if there is exactly one.
    pub(super) fn only_started(&self) -> Option<TurnId> {
        let mut started = self.turns.values().filter(|t| t.started());
        match (started.next(), started.next()) {
            (Some(turn), None) => Some(turn.id),
            _ => None,
        }
    }

    /// A socket `error` no message explains: every started turn hears it.
    pub(super) async fn broadcast(&mut self, conn: &mut Conn, event: Event) -> Result<(), Fault> {
        let ids: Vec<TurnId> = self
            .turns
            .values()
            .filter(|t| t.started())
            .map(|t| t.id)
            .collect();
        for id in ids {
            self.deliver(conn, id, Item::made(event.clone()), false)
                .await?;
        }
        Ok(())
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

/// What a frame asked of the session loop.
pub(super) enum Step {
    Go,
    /// The gateway sent `connected`.
    Ready,
}

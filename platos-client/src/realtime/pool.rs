//! The connection manager: which connection carries a new turn.
//!
//! Turns of one client share connections per namespace and scope (the
//! endpoint and the credential are the client's own, so they are part of
//! the key by construction; clones of a client share its pool). A turn goes
//! to the least loaded connection below [`RealtimeConfig::max_turns_per_connection`];
//! a new connection is opened only when every one is full and fewer than
//! [`RealtimeConfig::max_connections`] exist, otherwise the turn waits on
//! the least loaded one. Handshakes are paced by a client-wide limit on
//! dials in flight, so a burst of turns is not a burst of handshakes.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::Context;
use super::connection::{Connection, Seat, ToConn};
use super::turn::{Turn, TurnId};

/// How the realtime lane uses connections; set with
/// [`PlatosClientBuilder::realtime`](crate::PlatosClientBuilder::realtime).
///
/// ```
/// use std::time::Duration;
/// use platos_client::RealtimeConfig;
///
/// let config = RealtimeConfig::default()
///     .idle_timeout(Duration::from_secs(30))
///     .max_turns_per_connection(200)
///     .per_agent_namespace(true);
/// assert_eq!(config.max_turns_per_connection, 200);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RealtimeConfig {
    /// How long a connection without turns stays open for the next one
    /// (default zero: it closes with its last turn). A warm connection
    /// starts a turn in one round trip instead of a TCP, TLS, upgrade and
    /// namespace handshake; it holds a socket on the gateway meanwhile.
    pub idle_timeout: Duration,
    /// Turns one connection carries at most (default 100).
    pub max_turns_per_connection: usize,
    /// Connections per namespace and scope at most (default 100); past it,
    /// new turns wait on the least loaded connection.
    pub max_connections: usize,
    /// Handshakes in flight at once, client-wide (default 4).
    pub max_concurrent_dials: usize,
    /// Connect each turn to its agent's namespace `/agent/{agentId}` (the
    /// gateway's announced successor of the shared `/agent`) instead of the
    /// client's namespace; turns without an agent id use the client's.
    pub per_agent_namespace: bool,
    /// After a reconnect, how long a turn may hear nothing before the
    /// thread's messages are read to learn what became of it (default
    /// 120 s; docs/realtime.md §6). The gateway keeps no per-thread buffer
    /// and a direct-mode turn dies with its gateway process, so without a
    /// limit such a turn would wait forever. Long enough for a slow tool
    /// call (tens of seconds are normal) on a gateway that kept the turn:
    /// a check that finds no answer ends the stream with `turn_lost`.
    pub turn_check_after_reconnect: Duration,
    /// How long a turn on the HTTP lane may carry nothing at all, not even
    /// the server's heartbeat (every 15 s, docs/wire.md §8.2), before the
    /// connection counts as dead: the stream ends with a network error
    /// (default 60 s, four heartbeats).
    pub http_silence: Duration,
    /// The bytes of received events one socket turn may hold unread
    /// (default 1 MiB; also bounded by the client's `stream_buffer` events).
    /// A full turn stops its connection's reading until its consumer makes
    /// room (docs/realtime.md §5): backpressure, never loss.
    pub turn_buffer_bytes: usize,
    /// How long turns sharing a connection wait for one whose buffer is
    /// full (default 10 s) before that turn alone ends with
    /// `consumer_lagged`. A turn alone on its connection waits for its
    /// consumer as long as it takes.
    pub backpressure_grace: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            idle_timeout: Duration::ZERO,
            max_turns_per_connection: 100,
            max_connections: 100,
            max_concurrent_dials: 4,
            per_agent_namespace: false,
            turn_check_after_reconnect: Duration::from_secs(120),
            http_silence: Duration::from_secs(60),
            turn_buffer_bytes: 1 << 20,
            backpressure_grace: Duration::from_secs(10),
        }
    }
}

impl RealtimeConfig {
    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sets [`max_turns_per_connection`](Self::max_turns_per_connection) (at least 1).
    pub fn max_turns_per_connection(mut self, turns: usize) -> Self {
        self.max_turns_per_connection = turns.max(1);
        self
    }

    /// Sets [`max_connections`](Self::max_connections) (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`max_concurrent_dials`](Self::max_concurrent_dials) (at least 1).
    pub fn max_concurrent_dials(mut self, dials: usize) -> Self {
        self.max_concurrent_dials = dials.max(1);
        self
    }

    /// Sets [`turn_check_after_reconnect`](Self::turn_check_after_reconnect).
    pub fn turn_check_after_reconnect(mut self, silence: Duration) -> Self {
        self.turn_check_after_reconnect = silence;
        self
    }

    /// Sets [`http_silence`](Self::http_silence) (at least 1 ms).
    pub fn http_silence(mut self, silence: Duration) -> Self {
        self.http_silence = silence.max(Duration::from_millis(1));
        self
    }

    /// Sets [`turn_buffer_bytes`](Self::turn_buffer_bytes) (at least 1 KiB).
    pub fn turn_buffer_bytes(mut self, bytes: usize) -> Self {
        self.turn_buffer_bytes = bytes.max(1024);
        self
    }

    /// Sets [`backpressure_grace`](Self::backpressure_grace).
    pub fn backpressure_grace(mut self, grace: Duration) -> Self {
        self.backpressure_grace = grace;
        self
    }

    /// Sets [`per_agent_namespace`](Self::per_agent_namespace).
    pub fn per_agent_namespace(mut self, on: bool) -> Self {
        self.per_agent_namespace = on;
        self
    }
}

/// The connections of one client.
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: RealtimeConfig,
    members: Mutex<HashMap<String, Vec<Member>>>,
    dials: Arc<Semaphore>,
    next_turn: AtomicU64,
    next_connection: AtomicU64,
    /// The lane automatic turns take (after a fallback: HTTP).
    lanes: super::LaneMemory,
}

/// A pooled connection as the pool sees it.
struct Member {
    id: u64,
    commands: mpsc::UnboundedSender<ToConn>,
    load: Arc<AtomicUsize>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Member>>> {
        // Nothing panics while holding the lock; recover rather than spread one.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pool {
    pub(crate) fn new(config: RealtimeConfig) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                dials: Arc::new(Semaphore::new(config.max_concurrent_dials.max(1))),
                config,
                members: Mutex::new(HashMap::new()),
                next_turn: AtomicU64::new(1),
                next_connection: AtomicU64::new(1),
                lanes: super::LaneMemory::default(),
            }),
        }
    }

    pub(crate) fn config(&self) -> &RealtimeConfig {
        &self.inner.config
    }

    pub(crate) fn lanes(&self) -> &super::LaneMemory {
        &self.inner.lanes
    }

    pub(crate) fn next_turn_id(&self) -> TurnId {
        self.inner.next_turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Places `turn` on a connection to `namespace` (a new one of its own
    /// when `dedicated`) and returns where its commands go. Needs a Tokio
    /// runtime.
    pub(crate) fn place(
        &self,
        client: &Context,
        namespace: String,
        turn: Turn,
        dedicated: bool,
    ) -> mpsc::UnboundedSender<ToConn> {
        if dedicated {
            let id = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
            let (commands, _) = self.spawn(id, client, namespace, Box::new(Alone), Duration::ZERO);
            return attach(&commands, turn).unwrap_or(commands);
        }
        let key = key(client, &namespace);
        let config = &self.inner.config;
        let mut members = self.inner.lock();
        let list = members.entry(key.clone()).or_default();
        list.retain(|m| !m.commands.is_closed());
        let least = |list: &[Member], below: Option<usize>| {
            list.iter()
                .map(|m| (m.load.load(Ordering::Acquire), m))
                .filter(|(load, _)| below.is_none_or(|cap| *load < cap))
                .min_by_key(|(load, _)| *load)
                .map(|(_, m)| (m.commands.clone(), m.load.clone()))
        };
        let chosen = least(list, Some(config.max_turns_per_connection)).or_else(|| {
            if list.len() < config.max_connections {
                None
            } else {
                least(list, None)
            }
        });
        let (commands, load) = match chosen {
            Some(chosen) => chosen,
            None => {
                let id = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
                let seat = Box::new(Pooled {
                    pool: Arc::downgrade(&self.inner),
                    key,
                    id,
                });
                let (commands, load) = self.spawn(id, client, namespace, seat, config.idle_timeout);
                list.push(Member {
                    id,
                    commands: commands.clone(),
                    load: load.clone(),
                });
                (commands, load)
            }
        };
        load.fetch_add(1, Ordering::AcqRel);
        match attach(&commands, turn) {
            None => commands,
            // Unreachable while the member is listed (a connection leaves
            // the pool before it stops reading); the stream then ends.
            Some(other) => other,
        }
    }

    fn spawn(
        &self,
        id: u64,
        client: &Context,
        namespace: String,
        seat: Box<dyn Seat>,
        idle: Duration,
    ) -> (mpsc::UnboundedSender<ToConn>, Arc<AtomicUsize>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let load = Arc::new(AtomicUsize::new(0));
        let connection = Connection::new(
            id,
            client.clone(),
            namespace,
            idle,
            seat,
            self.inner.dials.clone(),
            load.clone(),
            receiver,
        );
        tokio::spawn(connection.run());
        (commands, load)
    }
}

/// Sends `turn` to a connection; `Some` (a closed sender) when it is gone,
/// in which case the turn's stream has ended.
fn attach(
    commands: &mpsc::UnboundedSender<ToConn>,
    turn: Turn,
) -> Option<mpsc::UnboundedSender<ToConn>> {
    match commands.send(ToConn::Attach(Box::new(turn))) {
        Ok(()) => None,
        Err(mpsc::error::SendError(ToConn::Attach(turn))) => {
            turn.finish(Some(crate::error::Error::network(
                "the realtime connection closed before the turn could start",
                None,
            )));
            Some(commands.clone())
        }
        Err(_) => Some(commands.clone()),
    }
}

/// Connections are shared per namespace and scope (user token included,
/// hashed: it is never kept in the clear twice).
fn key(client: &Context, namespace: &str) -> String {
    let mut key = namespace.to_owned();
    if let Some(scope) = &client.scope {
        for part in [
            scope.organization_id.as_str(),
            scope.project_id.as_str(),
            scope.environment_id.as_str(),
            scope.user_id.as_deref().unwrap_or(""),
        ] {
            key.push('\0');
            key.push_str(part);
        }
        if let Some(token) = &scope.user_token {
            let mut hasher = DefaultHasher::new();
            token.expose().hash(&mut hasher);
            key.push('\0');
            key.push_str(&hasher.finish().to_string());
        }
    }
    key
}

/// A pooled connection's seat.
struct Pooled {
    pool: Weak<Inner>,
    key: String,
    id: u64,
}

impl Seat for Pooled {
    fn leave_if(&self, unused: &mut dyn FnMut() -> bool) -> bool {
        let Some(pool) = self.pool.upgrade() else {
            return unused();
        };
        let mut members = pool.lock();
        if !unused() {
            return false;
        }
        if let Some(list) = members.get_mut(&self.key) {
            list.retain(|m| m.id != self.id);
            if list.is_empty() {
                members.remove(&self.key);
            }
        }
        true
    }
}

/// A dedicated connection: in no pool.
struct Alone;

impl Seat for Alone {
    fn leave_if(&self, unused: &mut dyn FnMut() -> bool) -> bool {
        unused()
    }
}

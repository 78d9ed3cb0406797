//! Fault knobs. Connection faults act at the TCP level, under socketioxide, so they
//! behave like a real network: a dropped connection is closed without a WebSocket
//! close frame, a silenced one stops carrying anything (pings included) while the
//! TCP connection stays open.
//!
//! One file per concern: the [`Faults`] handle and its knobs (here), canned
//! REST answers (`rest.rs`), socket refusals (`socket.rs`), and the TCP layer
//! that drops, silences or kills connections under the server (`tcp.rs`).

mod rest;
mod restart;
mod socket;
mod tcp;
mod upload;

pub use rest::RestFault;
pub use restart::Restart;
pub(crate) use restart::TurnSlot;
pub use socket::SocketRefusal;
pub(crate) use tcp::FaultListener;
use tcp::{ConnAction, ConnCtl, ConnMode, Milestone};
pub use tcp::{HandshakeStep, RawFrame};
pub use upload::UploadFault;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::record::Recorder;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct FaultsInner {
    rest: Mutex<VecDeque<RestFault>>,
    rest_delay: Mutex<Duration>,
    uploads: Mutex<VecDeque<upload::UploadFault>>,
    trigger: Mutex<Option<(u64, ConnAction)>>,
    step_drop: Mutex<Option<HandshakeStep>>,
    conns: Mutex<Vec<Weak<ConnCtl>>>,
    refusals: Mutex<VecDeque<SocketRefusal>>,
    pub(crate) event_delay: Mutex<Duration>,
    pub(crate) approval_every_turn: AtomicBool,
    agent_frames: AtomicU64,
    failed_handshakes: AtomicU64,
    /// Answer every `/socket.io/` upgrade with this status and an HTML page (0: off).
    upgrade_refusal: std::sync::atomic::AtomicU16,
    sse_heartbeat: Mutex<Duration>,
    sse_heartbeats: AtomicU64,
    io: Mutex<Option<socketioxide::SocketIo>>,
    restarts: Mutex<restart::Restarts>,
    /// Turns running per epoch (see `restart.rs`).
    running: watch::Sender<BTreeMap<u64, usize>>,
    /// The current epoch (restarts so far).
    epochs: watch::Sender<u64>,
    recorder: Recorder,
    shutdown: watch::Receiver<bool>,
}

/// Shared fault and behaviour knobs; cheap to clone, usable while a test runs.
#[derive(Clone)]
pub struct Faults {
    pub(crate) inner: Arc<FaultsInner>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    pub(crate) fn new(
        recorder: Recorder,
        shutdown: watch::Receiver<bool>,
        event_delay: Duration,
        approval_every_turn: bool,
    ) -> Self {
        Faults {
            inner: Arc::new(FaultsInner {
                rest: Mutex::default(),
                rest_delay: Mutex::default(),
                uploads: Mutex::default(),
                trigger: Mutex::default(),
                step_drop: Mutex::default(),
                conns: Mutex::default(),
                refusals: Mutex::default(),
                event_delay: Mutex::new(event_delay),
                approval_every_turn: AtomicBool::new(approval_every_turn),
                agent_frames: AtomicU64::new(0),
                failed_handshakes: AtomicU64::new(0),
                upgrade_refusal: std::sync::atomic::AtomicU16::new(0),
                sse_heartbeat: Mutex::new(Duration::from_secs(15)),
                sse_heartbeats: AtomicU64::new(0),
                io: Mutex::default(),
                restarts: Mutex::default(),
                running: restart::running(),
                epochs: watch::Sender::new(0),
                recorder,
                shutdown,
            }),
        }
    }

    pub(crate) fn set_io(&self, io: socketioxide::SocketIo) {
        *lock(&self.inner.io) = Some(io);
    }

    fn io(&self) -> Option<socketioxide::SocketIo> {
        lock(&self.inner.io).clone()
    }

    // ---- REST ----

    /// Queues a canned answer; queued faults are used in order, each for its `times` calls.
    pub fn fail_next_rest(&self, fault: RestFault) {
        lock(&self.inner.rest).push_back(fault);
    }

    /// Shorthand: the next `n` REST calls answer `status` with `body`.
    pub fn fail_next_rest_n(&self, n: u32, status: u16, body: Value) {
        self.fail_next_rest(RestFault::new(status, body).times(n));
    }

    /// Drops every queued REST fault.
    pub fn clear_rest_faults(&self) {
        lock(&self.inner.rest).clear();
    }

    /// Delays every REST answer by `d` (zero turns it off).
    pub fn set_rest_delay(&self, d: Duration) {
        *lock(&self.inner.rest_delay) = d;
    }

    pub(crate) fn rest_delay(&self) -> Duration {
        *lock(&self.inner.rest_delay)
    }

    pub(crate) fn take_rest_fault(&self, path: &str) -> Option<RestFault> {
        let mut q = lock(&self.inner.rest);
        let idx = q.iter().position(|f| {
            f.path_contains.as_deref().is_none_or(|p| path.contains(p))
                && (!f.v1_only || crate::v1::is_v1_path(path))
        })?;
        let f = q.get_mut(idx)?;
        let out = f.clone();
        f.times = f.times.saturating_sub(1);
        if f.times == 0 {
            q.remove(idx);
        }
        Some(out)
    }

    // ---- connections ----

    /// After `n` more `agent_event` frames have been fully written (counted over all
    /// connections), close that connection without a WebSocket close frame. One-shot.
    pub fn drop_socket_after_events(&self, n: u64) {
        *lock(&self.inner.trigger) = Some((n.max(1), ConnAction::Drop));
    }

    /// After `n` more `agent_event` frames, the connection goes silent: nothing more is
    /// written (no pings, no events) but TCP stays open, so only the client's liveness
    /// check can notice. One-shot.
    pub fn silence_socket_after_events(&self, n: u64) {
        *lock(&self.inner.trigger) = Some((n.max(1), ConnAction::Silence));
    }

    /// Cancels an armed `*_after_events` trigger.
    pub fn disarm(&self) {
        *lock(&self.inner.trigger) = None;
    }

    fn live_ws(&self) -> Vec<Arc<ConnCtl>> {
        let mut conns = lock(&self.inner.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| c.websocket.load(Ordering::SeqCst))
            .collect()
    }

    /// Closes every open WebSocket connection now, without a close frame. Returns how many.
    pub fn drop_sockets_now(&self) -> usize {
        let conns = self.live_ws();
        for c in &conns {
            c.set(ConnMode::Killed);
        }
        self.inner
            .recorder
            .fault_fired(format!("dropped {} connection(s)", conns.len()));
        conns.len()
    }

    /// Silences every open WebSocket connection now (see [`Faults::silence_socket_after_events`]).
    pub fn silence_sockets_now(&self) -> usize {
        let conns = self.live_ws();
        for c in &conns {
            c.set(ConnMode::Silent);
        }
        self.inner
            .recorder
            .fault_fired(format!("silenced {} connection(s)", conns.len()));
        conns.len()
    }

    /// The next connection to reach `step` of the Socket.IO handshake is dropped there
    /// (no close frame). One-shot; arming again replaces it.
    pub fn drop_next_handshake_at(&self, step: HandshakeStep) {
        *lock(&self.inner.step_drop) = Some(step);
    }

    /// Consumes the armed handshake drop if it is for `step`.
    pub(crate) fn take_step_drop(&self, step: HandshakeStep) -> bool {
        let mut armed = lock(&self.inner.step_drop);
        if *armed == Some(step) {
            *armed = None;
            drop(armed);
            self.inner
                .recorder
                .fault_fired(format!("dropped a connection at handshake step {step:?}"));
            true
        } else {
            false
        }
    }

    /// Writes `frame` on every open WebSocket connection, between two of the server's
    /// own frames (at the next one it writes, pings included). Returns how many.
    pub fn inject_frame(&self, frame: &RawFrame) -> usize {
        let bytes: Arc<[u8]> = frame.encode().into();
        let conns = self.live_ws();
        for c in &conns {
            lock(&c.inject).push_back(bytes.clone());
        }
        self.inner.recorder.fault_fired(format!(
            "injected a raw frame into {} connection(s)",
            conns.len()
        ));
        conns.len()
    }

    /// The next `n` Engine.IO handshakes (new `/socket.io/` connections) are answered
    /// `503` before any upgrade, e.g. to exhaust a client's reconnect attempts.
    pub fn fail_next_handshakes(&self, n: u64) {
        self.inner.failed_handshakes.store(n, Ordering::SeqCst);
    }

    /// Like a proxy that will not tunnel WebSockets: every Engine.IO upgrade is answered
    /// `status` (e.g. 403 or 502) with a `text/html` page, until `None`.
    pub fn refuse_upgrades(&self, status: Option<u16>) {
        self.inner
            .upgrade_refusal
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    pub(crate) fn upgrade_refusal(&self) -> Option<u16> {
        Some(self.inner.upgrade_refusal.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// Interval of the HTTP lane's `heartbeat` frames (default 15 s, as the server's).
    pub fn set_sse_heartbeat(&self, every: Duration) {
        *lock(&self.inner.sse_heartbeat) = every.max(Duration::from_millis(1));
    }

    pub(crate) fn sse_heartbeat(&self) -> Duration {
        *lock(&self.inner.sse_heartbeat)
    }

    /// Heartbeat frames written on the HTTP lane so far.
    pub fn sse_heartbeats_sent(&self) -> u64 {
        self.inner.sse_heartbeats.load(Ordering::SeqCst)
    }

    pub(crate) fn count_sse_heartbeat(&self) {
        self.inner.sse_heartbeats.fetch_add(1, Ordering::SeqCst);
        self.inner.recorder.touch();
    }

    /// Consumes one handshake failure if armed.
    pub(crate) fn take_handshake_failure(&self) -> bool {
        self.inner
            .failed_handshakes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Kills every connection (REST keep-alive included); used on shutdown.
    pub(crate) fn kill_all(&self) {
        let conns = lock(&self.inner.conns);
        for c in conns.iter().filter_map(Weak::upgrade) {
            c.set(ConnMode::Killed);
        }
    }

    /// Number of `agent_event` frames written so far over all connections.
    pub fn agent_event_frames(&self) -> u64 {
        self.inner.agent_frames.load(Ordering::SeqCst)
    }

    // ---- socket events ----

    /// Emits `event` with `payload` to every socket of every namespace.
    pub async fn emit_to_sockets(&self, event: &str, payload: &Value) {
        if let Some(io) = self.io() {
            for ns in io.nsps() {
                let _ = ns.emit(event, payload).await;
            }
        }
    }

    /// Server-side namespace disconnect (`41<ns>,`) of every socket.
    pub async fn disconnect_sockets(&self) {
        if let Some(io) = self.io() {
            for ns in io.nsps() {
                let _ = ns.disconnect().await;
            }
        }
    }

    /// Emits the socket `error` event with `payload` to every socket, then optionally
    /// disconnects them (e.g. `{code:"SESSION_EXPIRED", message}` + disconnect).
    pub async fn send_socket_error(&self, payload: Value, disconnect: bool) {
        self.emit_to_sockets("error", &payload).await;
        if disconnect {
            self.disconnect_sockets().await;
        }
    }

    /// The next `message` is answered with `refusal` instead of a turn.
    pub fn refuse_next_message(&self, refusal: SocketRefusal) {
        lock(&self.inner.refusals).push_back(refusal);
    }

    pub(crate) fn take_refusal(&self) -> Option<SocketRefusal> {
        lock(&self.inner.refusals).pop_front()
    }

    // ---- scripted agent ----

    /// Pause between consecutive events of a scripted turn (default from the builder, 0).
    pub fn set_event_delay(&self, d: Duration) {
        *lock(&self.inner.event_delay) = d;
    }

    pub(crate) fn event_delay(&self) -> Duration {
        *lock(&self.inner.event_delay)
    }

    /// When on, every turn asks for approval (not only messages mentioning "approval").
    pub fn set_approval_every_turn(&self, on: bool) {
        self.inner.approval_every_turn.store(on, Ordering::SeqCst);
    }

    fn register(&self) -> Arc<ConnCtl> {
        let ctl = Arc::new(ConnCtl {
            mode: Mutex::new(ConnMode::Normal),
            read_waker: Mutex::new(None),
            websocket: AtomicBool::new(false),
            inject: Mutex::default(),
        });
        let mut conns = lock(&self.inner.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&ctl));
        ctl
    }

    /// Called after each outgoing write that completed a milestone of the connection.
    fn on_milestone(&self, ctl: &ConnCtl, m: Milestone) {
        match m {
            Milestone::AgentEvent => self.on_agent_frame(ctl),
            Milestone::Step(step) => {
                if self.take_step_drop(step) {
                    ctl.set(ConnMode::Killed);
                }
            }
        }
    }

    /// Called after each complete outgoing WebSocket frame that is an `agent_event`.
    fn on_agent_frame(&self, ctl: &ConnCtl) {
        self.inner.agent_frames.fetch_add(1, Ordering::SeqCst);
        self.inner.recorder.touch();
        let fire = {
            let mut t = lock(&self.inner.trigger);
            match t.as_mut() {
                Some((n, action)) => {
                    *n -= 1;
                    if *n == 0 {
                        let a = *action;
                        *t = None;
                        Some(a)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        match fire {
            Some(ConnAction::Drop) => {
                ctl.set(ConnMode::Killed);
                self.inner
                    .recorder
                    .fault_fired("dropped connection after agent_event frames".into());
            }
            Some(ConnAction::Silence) => {
                ctl.set(ConnMode::Silent);
                self.inner
                    .recorder
                    .fault_fired("silenced connection after agent_event frames".into());
            }
            None => {}
        }
    }
}

//! Fault knobs. Connection faults act at the TCP level, under socketioxide, so they
//! behave like a real network: a dropped connection is closed without a WebSocket
//! close frame, a silenced one stops carrying anything (pings included) while the
//! TCP connection stays open.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::record::Recorder;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A canned answer for the next REST calls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestFault {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Value::Null` → empty body).
    pub body: Value,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// How many calls it answers (default 1).
    pub times: u32,
    /// Only calls whose path contains this (default: every REST call).
    pub path_contains: Option<String>,
    /// Only calls to V1 operator routes (`/api/v1/...` outside `/api/v1/agent`,
    /// provider keys, `/mcp/...`).
    pub v1_only: bool,
}

impl RestFault {
    /// `status` with `body`, once, on any REST path.
    pub fn new(status: u16, body: Value) -> Self {
        RestFault {
            status,
            body,
            headers: Vec::new(),
            times: 1,
            path_contains: None,
            v1_only: false,
        }
    }

    /// 503 in the framework shape.
    pub fn unavailable() -> Self {
        Self::new(
            503,
            json!({"statusCode": 503, "message": "Service Unavailable", "error": "Service Unavailable"}),
        )
    }

    /// 500 in the framework shape.
    pub fn internal() -> Self {
        Self::new(
            500,
            json!({"statusCode": 500, "message": "Internal server error", "error": "Internal Server Error"}),
        )
    }

    /// 429 with `Retry-After: <secs>` and the V1 envelope `RATE_LIMITED`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            429,
            crate::rest::v1_error(
                "RATE_LIMITED",
                "rate_limited",
                "Too many requests",
                Some(retry_after_secs),
            ),
        )
        .header("retry-after", retry_after_secs.to_string())
    }

    /// 503 `TRANSPORT_SHUTTING_DOWN` (V1 envelope with `retryAfterSec`) and
    /// `Retry-After: <secs>`, on V1 operator routes only.
    pub fn shutting_down(retry_after_secs: u64) -> Self {
        Self::new(
            503,
            crate::rest::v1_error(
                "TRANSPORT_SHUTTING_DOWN",
                "transport_shutting_down",
                "The server is shutting down; retry on another instance.",
                Some(retry_after_secs),
            ),
        )
        .header("retry-after", retry_after_secs.to_string())
        .v1_only()
    }

    /// 503 `IDEMPOTENCY_STORE_UNAVAILABLE` (V1 envelope) with `Retry-After: 1`.
    pub fn idempotency_store_unavailable() -> Self {
        Self::new(
            503,
            crate::rest::v1_error(
                "IDEMPOTENCY_STORE_UNAVAILABLE",
                "idempotency_store_unavailable",
                "The idempotency store is unavailable; retry shortly.",
                Some(1),
            ),
        )
        .header("retry-after", "1")
    }

    /// 503 `{code:"ARTIFACTS_UNAVAILABLE", message}` on the next `/artifacts` call.
    pub fn artifacts_unavailable() -> Self {
        Self::new(
            503,
            json!({"code": "ARTIFACTS_UNAVAILABLE", "message": "Artifacts are temporarily unavailable"}),
        )
        .path_contains("/artifacts")
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers this many calls (0 is treated as 1).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n.max(1);
        self
    }

    /// Restricts the fault to the V1 operator routes.
    pub fn v1_only(mut self) -> Self {
        self.v1_only = true;
        self
    }

    /// Restricts the fault to paths containing `s`.
    pub fn path_contains(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }
}

/// What the server does instead of running the turn for the next `message`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SocketRefusal {
    /// Events emitted in order, `(name, payload)` (e.g. `("error", {...})`, `("done", {"stopped":true})`).
    pub events: Vec<(String, Value)>,
    /// Disconnect the namespace (`41/agent,`) afterwards.
    pub disconnect: bool,
}

impl SocketRefusal {
    /// `error {code:"rate_limit", message, retryAfterSeconds, scope:"user", limit:10}` then socket-level `done {stopped:true}`.
    pub fn rate_limit(retry_after_secs: u64) -> Self {
        SocketRefusal {
            events: vec![
                (
                    "error".into(),
                    json!({"code": "rate_limit", "message": "Rate limit exceeded", "retryAfterSeconds": retry_after_secs, "scope": "user", "limit": 10}),
                ),
                ("done".into(), json!({"stopped": true})),
            ],
            disconnect: false,
        }
    }

    /// `error {code:"SESSION_EXPIRED", message}` then disconnect.
    pub fn session_expired() -> Self {
        SocketRefusal {
            events: vec![(
                "error".into(),
                json!({"code": "SESSION_EXPIRED", "message": "Session expired"}),
            )],
            disconnect: true,
        }
    }

    /// Any events, optionally followed by a disconnect.
    pub fn custom(events: Vec<(String, Value)>, disconnect: bool) -> Self {
        SocketRefusal { events, disconnect }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnMode {
    Normal,
    Silent,
    Killed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnAction {
    Drop,
    Silence,
}

struct ConnCtl {
    mode: Mutex<ConnMode>,
    read_waker: Mutex<Option<Waker>>,
    /// True once the connection carries WebSocket frames (after a `101`).
    websocket: AtomicBool,
}

impl ConnCtl {
    fn set(&self, mode: ConnMode) {
        *lock(&self.mode) = mode;
        if let Some(w) = lock(&self.read_waker).take() {
            w.wake();
        }
    }
    fn mode(&self) -> ConnMode {
        *lock(&self.mode)
    }
}

pub(crate) struct FaultsInner {
    rest: Mutex<VecDeque<RestFault>>,
    rest_delay: Mutex<Duration>,
    trigger: Mutex<Option<(u64, ConnAction)>>,
    conns: Mutex<Vec<Weak<ConnCtl>>>,
    refusals: Mutex<VecDeque<SocketRefusal>>,
    pub(crate) event_delay: Mutex<Duration>,
    pub(crate) approval_every_turn: AtomicBool,
    agent_frames: AtomicU64,
    failed_handshakes: AtomicU64,
    io: Mutex<Option<socketioxide::SocketIo>>,
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
                trigger: Mutex::default(),
                conns: Mutex::default(),
                refusals: Mutex::default(),
                event_delay: Mutex::new(event_delay),
                approval_every_turn: AtomicBool::new(approval_every_turn),
                agent_frames: AtomicU64::new(0),
                failed_handshakes: AtomicU64::new(0),
                io: Mutex::default(),
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

    /// The next `n` Engine.IO handshakes (new `/socket.io/` connections) are answered
    /// `503` before any upgrade, e.g. to exhaust a client's reconnect attempts.
    pub fn fail_next_handshakes(&self, n: u64) {
        self.inner.failed_handshakes.store(n, Ordering::SeqCst);
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
        });
        let mut conns = lock(&self.inner.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&ctl));
        ctl
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

/// Accepts TCP connections and wraps each in a [`FaultIo`].
pub(crate) struct FaultListener {
    pub listener: TcpListener,
    pub faults: Faults,
}

impl axum::serve::Listener for FaultListener {
    type Io = FaultIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let ctl = self.faults.register();
                    return (
                        FaultIo {
                            inner: Some(stream),
                            ctl,
                            faults: self.faults.clone(),
                            out: OutParser::default(),
                        },
                        addr,
                    );
                }
                // Transient accept errors (EMFILE…): back off briefly like axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Follows the server→client byte stream: first the HTTP response head (to spot a
/// `101` upgrade), then unmasked WebSocket frames, so faults fire on frame boundaries.
#[derive(Debug, Default)]
struct OutParser {
    state: OutState,
    head: Vec<u8>,
    frame_head: Vec<u8>,
    payload_left: u64,
    payload_prefix: Vec<u8>,
    opcode: u8,
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum OutState {
    #[default]
    HttpHead,
    Passthrough,
    FrameHead,
    Payload,
}

const PREFIX_KEEP: usize = 96;

/// Header length and payload length of a server (unmasked) frame, if `h` holds enough bytes.
fn frame_lengths(h: &[u8]) -> Option<(usize, u64)> {
    let b1 = *h.get(1)?;
    let masked = b1 & 0x80 != 0;
    let mask_len = if masked { 4 } else { 0 };
    match b1 & 0x7f {
        126 => {
            let l = u16::from_be_bytes([*h.get(2)?, *h.get(3)?]);
            Some((4 + mask_len, u64::from(l)))
        }
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(h.get(2..10)?);
            Some((10 + mask_len, u64::from_be_bytes(b)))
        }
        l => Some((2 + mask_len, u64::from(l))),
    }
}

fn is_agent_event(opcode: u8, prefix: &[u8]) -> bool {
    if opcode != 1 || !prefix.starts_with(b"42") {
        return false;
    }
    let rest = &prefix[2..];
    let rest = if rest.first() == Some(&b'/') {
        match rest.iter().position(|b| *b == b',') {
            Some(i) => &rest[i + 1..],
            None => return false,
        }
    } else {
        rest
    };
    // An optional ack id could precede the array; servers do not put one on emits.
    rest.starts_with(b"[\"agent_event\"")
}

impl OutParser {
    /// How many bytes of `buf` may be written without crossing the end of a frame.
    fn max_write(&self, buf: &[u8]) -> usize {
        match self.state {
            OutState::HttpHead | OutState::Passthrough => buf.len(),
            OutState::Payload => {
                usize::try_from(self.payload_left.min(buf.len() as u64)).unwrap_or(buf.len())
            }
            OutState::FrameHead => {
                let mut h = self.frame_head.clone();
                h.extend_from_slice(&buf[..buf.len().min(16)]);
                match frame_lengths(&h) {
                    Some((hl, pl)) => {
                        let total = (hl - self.frame_head.len()) as u64 + pl;
                        usize::try_from(total.min(buf.len() as u64)).unwrap_or(buf.len())
                    }
                    None => buf.len(),
                }
            }
        }
    }

    /// Consumes written bytes; returns true when a complete `agent_event` frame ended.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut agent = false;
        while !bytes.is_empty() {
            match self.state {
                OutState::Passthrough => return agent,
                OutState::HttpHead => {
                    let take = bytes.len().min(8192);
                    self.head.extend_from_slice(&bytes[..take]);
                    if let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let upgraded = self.head.starts_with(b"HTTP/1.1 101");
                        let extra = self.head.len() - (end + 4);
                        let consumed = take - extra;
                        self.head.clear();
                        self.state = if upgraded {
                            OutState::FrameHead
                        } else {
                            // Plain HTTP: keep-alive responses are not followed further.
                            OutState::Passthrough
                        };
                        bytes = &bytes[consumed..];
                    } else {
                        bytes = &bytes[take..];
                        if self.head.len() > 16384 {
                            self.state = OutState::Passthrough;
                        }
                    }
                }
                OutState::FrameHead => {
                    self.frame_head.push(bytes[0]);
                    bytes = &bytes[1..];
                    if let Some((hl, pl)) = frame_lengths(&self.frame_head)
                        && self.frame_head.len() == hl
                    {
                        self.opcode = self.frame_head[0] & 0x0f;
                        self.frame_head.clear();
                        self.payload_prefix.clear();
                        self.payload_left = pl;
                        self.state = OutState::Payload;
                        if pl == 0 {
                            self.state = OutState::FrameHead;
                        }
                    }
                }
                OutState::Payload => {
                    let n = usize::try_from(self.payload_left.min(bytes.len() as u64))
                        .unwrap_or(bytes.len());
                    let keep = PREFIX_KEEP.saturating_sub(self.payload_prefix.len()).min(n);
                    self.payload_prefix.extend_from_slice(&bytes[..keep]);
                    self.payload_left -= n as u64;
                    bytes = &bytes[n..];
                    if self.payload_left == 0 {
                        self.state = OutState::FrameHead;
                        if is_agent_event(self.opcode, &self.payload_prefix) {
                            agent = true;
                        }
                    }
                }
            }
        }
        agent
    }

    fn is_websocket(&self) -> bool {
        matches!(self.state, OutState::FrameHead | OutState::Payload)
    }
}

/// A TCP stream whose fate the fault knobs control.
pub(crate) struct FaultIo {
    inner: Option<TcpStream>,
    ctl: Arc<ConnCtl>,
    faults: Faults,
    out: OutParser,
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection dropped by fault knob",
    )
}

impl AsyncRead for FaultIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ctl.mode() == ConnMode::Killed {
            return Poll::Ready(Err(killed()));
        }
        *lock(&self.ctl.read_waker) = Some(cx.waker().clone());
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(killed()));
        };
        Pin::new(inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.ctl.mode() {
            ConnMode::Killed => return Poll::Ready(Err(killed())),
            ConnMode::Silent => return Poll::Ready(Ok(buf.len())),
            ConnMode::Normal => {}
        }
        let limit = self.out.max_write(buf).max(1).min(buf.len());
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(killed()));
        };
        match Pin::new(inner).poll_write(cx, &buf[..limit]) {
            Poll::Ready(Ok(n)) => {
                let agent = this.out.feed(&buf[..n]);
                if this.out.is_websocket() {
                    this.ctl.websocket.store(true, Ordering::SeqCst);
                }
                if agent {
                    this.faults.on_agent_frame(&this.ctl);
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.ctl.mode() {
            ConnMode::Killed => return Poll::Ready(Err(killed())),
            ConnMode::Silent => return Poll::Ready(Ok(())),
            ConnMode::Normal => {}
        }
        match self.inner.as_mut() {
            Some(i) => Pin::new(i).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.ctl.mode() {
            ConnMode::Killed => return Poll::Ready(Err(killed())),
            // Silent: the peer must not learn that the server gave up on it.
            ConnMode::Silent => return Poll::Ready(Ok(())),
            ConnMode::Normal => {}
        }
        match self.inner.as_mut() {
            Some(i) => Pin::new(i).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for FaultIo {
    fn drop(&mut self) {
        if self.ctl.mode() != ConnMode::Silent {
            return;
        }
        // Keep a silenced connection open (reading and discarding) until the client
        // gives up or the server shuts down, so only the client's liveness check fires.
        let (Some(mut stream), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut shutdown = self.faults.inner.shutdown.clone();
        rt.spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                tokio::select! {
                    r = stream.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parser_counts_agent_event_frames_and_bounds_writes() {
        let mut p = OutParser::default();
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert!(!p.feed(head));
        assert!(p.is_websocket());
        let big = format!(
            "42/agent,[\"agent_event\",{{\"text\":\"{}\"}}]",
            "x".repeat(300)
        );
        let mut stream = frame(b"2");
        stream.extend(frame(big.as_bytes()));
        stream.extend(frame(b"42/agent,[\"connected\",{}]"));
        // First write stops at the end of the ping frame.
        assert_eq!(p.max_write(&stream), 3);
        assert!(!p.feed(&stream[..3]));
        let rest = &stream[3..];
        let n = p.max_write(rest);
        assert_eq!(n, 4 + big.len());
        // Split the agent frame in two writes: only the end counts.
        assert!(!p.feed(&rest[..10]));
        assert!(p.feed(&rest[10..n]));
        assert!(!p.feed(&rest[n..]));
    }

    #[test]
    fn plain_http_is_not_followed() {
        let mut p = OutParser::default();
        assert!(!p.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"));
        assert!(!p.is_websocket());
        assert!(is_agent_event(1, b"42[\"agent_event\",{}]"));
        assert!(!is_agent_event(1, b"42/agent,[\"connected\",{}]"));
    }
}

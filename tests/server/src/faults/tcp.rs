//! The TCP layer under socketioxide: each accepted connection is wrapped so
//! a test can drop it (no close frame), silence it (nothing flows, the socket
//! stays open) or kill it, drop it at a chosen step of the Socket.IO
//! handshake, slip raw frames (garbage, oversize) between the server's own,
//! and so `agent_event` frames can be counted.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::{Faults, lock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnMode {
    Normal,
    Silent,
    Killed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnAction {
    Drop,
    Silence,
}

/// A step of the Socket.IO handshake at which a connection can be dropped
/// ([`Faults::drop_next_handshake_at`](super::Faults::drop_next_handshake_at)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeStep {
    /// Instead of writing the `101 Switching Protocols` answer to the upgrade.
    Upgrade,
    /// Right after the Engine.IO open packet (`0{"sid",…}`).
    Open,
    /// Right after the namespace CONNECT ack (`40/agent,{"sid"}`).
    NamespaceAck,
    /// Right after the gateway's `connected` event.
    Connected,
}

/// A raw WebSocket frame the server writes between its own
/// ([`Faults::inject_frame`](super::Faults::inject_frame)), as a broken or hostile
/// server would.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawFrame {
    /// A text frame carrying these bytes (they need not be UTF-8 nor Engine.IO).
    Text(Vec<u8>),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A text frame of this many bytes (`4` then `x`s: an Engine.IO message),
    /// larger than any client should accept.
    Oversize(usize),
}

impl RawFrame {
    /// The frame as written on the wire: FIN, opcode, unmasked length, payload.
    pub(super) fn encode(&self) -> Vec<u8> {
        let (opcode, payload) = match self {
            RawFrame::Text(b) => (0x1, b.clone()),
            RawFrame::Binary(b) => (0x2, b.clone()),
            RawFrame::Oversize(n) => {
                let mut b = vec![b'x'; (*n).max(1)];
                b[0] = b'4';
                (0x1, b)
            }
        };
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= usize::from(u16::MAX) => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&payload);
        f
    }
}

/// What one write completed, as far as the fault knobs care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Milestone {
    Step(HandshakeStep),
    AgentEvent,
}

pub(super) struct ConnCtl {
    pub(super) mode: Mutex<ConnMode>,
    pub(super) read_waker: Mutex<Option<Waker>>,
    /// True once the connection carries WebSocket frames (after a `101`).
    pub(super) websocket: AtomicBool,
    /// Raw frames to write at the next frame boundary, before the server's own.
    pub(super) inject: Mutex<VecDeque<Arc<[u8]>>>,
}

impl ConnCtl {
    pub(super) fn set(&self, mode: ConnMode) {
        *lock(&self.mode) = mode;
        if let Some(w) = lock(&self.read_waker).take() {
            w.wake();
        }
    }
    pub(super) fn mode(&self) -> ConnMode {
        *lock(&self.mode)
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
                            injecting: None,
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

/// The milestone a complete server frame marks, from its opcode and first bytes.
fn frame_milestone(opcode: u8, prefix: &[u8]) -> Option<Milestone> {
    if opcode != 1 {
        return None;
    }
    if is_event(prefix, "agent_event") {
        Some(Milestone::AgentEvent)
    } else if is_event(prefix, "connected") {
        Some(Milestone::Step(HandshakeStep::Connected))
    } else if prefix.starts_with(b"40") {
        Some(Milestone::Step(HandshakeStep::NamespaceAck))
    } else if prefix.first() == Some(&b'0') {
        Some(Milestone::Step(HandshakeStep::Open))
    } else {
        None
    }
}

#[cfg(test)]
fn is_agent_event(opcode: u8, prefix: &[u8]) -> bool {
    opcode == 1 && is_event(prefix, "agent_event")
}

/// Whether a Socket.IO EVENT packet (`42[/ns,]["name",…`) names `name`.
fn is_event(prefix: &[u8], name: &str) -> bool {
    if !prefix.starts_with(b"42") {
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
    let quoted = format!("[\"{name}\"");
    rest.starts_with(quoted.as_bytes())
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

    /// Whether the next byte written starts a frame (where a raw frame may be slipped in).
    fn at_frame_boundary(&self) -> bool {
        self.state == OutState::FrameHead && self.frame_head.is_empty()
    }

    /// Whether `buf`, about to be written, starts the `101` answer to an upgrade.
    fn starts_upgrade(&self, buf: &[u8]) -> bool {
        self.state == OutState::HttpHead && self.head.is_empty() && buf.starts_with(b"HTTP/1.1 101")
    }

    /// Consumes written bytes; returns what they completed (the `101` head and at most
    /// the frames after it in the same write: [`OutParser::max_write`] stops at a frame's end).
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<Milestone> {
        let mut done = Vec::new();
        while !bytes.is_empty() {
            match self.state {
                OutState::Passthrough => return done,
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
                        done.extend(frame_milestone(self.opcode, &self.payload_prefix));
                    }
                }
            }
        }
        done
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
    /// A slipped-in frame being written, and how much of it is out.
    injecting: Option<(Arc<[u8]>, usize)>,
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
        if self.out.starts_upgrade(buf) && self.faults.take_step_drop(HandshakeStep::Upgrade) {
            self.ctl.set(ConnMode::Killed);
            return Poll::Ready(Err(killed()));
        }
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(killed()));
        };
        // A frame slipped in goes out whole, between two of the server's frames.
        if this.injecting.is_none() && this.out.at_frame_boundary() {
            this.injecting = lock(&this.ctl.inject).pop_front().map(|f| (f, 0));
        }
        while let Some((frame, sent)) = this.injecting.as_mut() {
            match Pin::new(&mut *inner).poll_write(cx, &frame[*sent..]) {
                Poll::Ready(Ok(n)) => {
                    *sent += n;
                    if *sent >= frame.len() || n == 0 {
                        this.injecting = None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let limit = this.out.max_write(buf).max(1).min(buf.len());
        match Pin::new(inner).poll_write(cx, &buf[..limit]) {
            Poll::Ready(Ok(n)) => {
                let done = this.out.feed(&buf[..n]);
                if this.out.is_websocket() {
                    this.ctl.websocket.store(true, Ordering::SeqCst);
                }
                for m in done {
                    this.faults.on_milestone(&this.ctl, m);
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
        assert!(p.feed(head).is_empty());
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
        assert!(p.feed(&stream[..3]).is_empty());
        assert!(p.at_frame_boundary());
        let rest = &stream[3..];
        let n = p.max_write(rest);
        assert_eq!(n, 4 + big.len());
        // Split the agent frame in two writes: only the end counts.
        assert!(p.feed(&rest[..10]).is_empty());
        assert!(!p.at_frame_boundary());
        assert_eq!(p.feed(&rest[10..n]), [Milestone::AgentEvent]);
        assert_eq!(
            p.feed(&rest[n..]),
            [Milestone::Step(HandshakeStep::Connected)]
        );
    }

    #[test]
    fn parser_marks_each_handshake_step() {
        let mut p = OutParser::default();
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert!(p.starts_upgrade(head));
        let mut bytes = head.to_vec();
        bytes.extend(frame(br#"0{"sid":"x","pingInterval":25000}"#));
        // The head and the open packet in one write: both are reported.
        assert_eq!(p.feed(&bytes), [Milestone::Step(HandshakeStep::Open)]);
        assert!(!p.starts_upgrade(b"HTTP/1.1 101"));
        assert_eq!(
            p.feed(&frame(br#"40/agent,{"sid":"y"}"#)),
            [Milestone::Step(HandshakeStep::NamespaceAck)]
        );
        assert_eq!(
            p.feed(&frame(br#"42/agent,["connected",{}]"#)),
            [Milestone::Step(HandshakeStep::Connected)]
        );
        assert!(p.feed(&frame(b"2")).is_empty());
    }

    #[test]
    fn raw_frames_encode_every_length_form() {
        let mut p = OutParser::default();
        p.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        for f in [
            RawFrame::Text(b"garbage".to_vec()),
            RawFrame::Binary(vec![0; 300]),
            RawFrame::Oversize(70_000),
        ] {
            let bytes = f.encode();
            // The parser follows it to its end: the next byte is a frame boundary.
            assert_eq!(p.max_write(&bytes), bytes.len());
            p.feed(&bytes);
            assert!(p.at_frame_boundary(), "{f:?}");
        }
    }

    #[test]
    fn plain_http_is_not_followed() {
        let mut p = OutParser::default();
        assert!(
            p.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .is_empty()
        );
        assert!(!p.is_websocket());
        assert!(is_agent_event(1, b"42[\"agent_event\",{}]"));
        assert!(!is_agent_event(1, b"42/agent,[\"connected\",{}]"));
    }
}

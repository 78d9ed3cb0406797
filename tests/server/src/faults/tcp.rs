//! The TCP layer under socketioxide: each accepted connection is wrapped so
//! a test can drop it (no close frame), silence it (nothing flows, the socket
//! stays open) or kill it, and so `agent_event` frames can be counted.

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

pub(super) struct ConnCtl {
    pub(super) mode: Mutex<ConnMode>,
    pub(super) read_waker: Mutex<Option<Waker>>,
    /// True once the connection carries WebSocket frames (after a `101`).
    pub(super) websocket: AtomicBool,
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

//! Engine.IO v4 framing over the WebSocket transport (docs/realtime.md §1).
//!
//! Every WebSocket text message is one Engine.IO packet: its first character
//! is the packet type, the rest is the payload. Only the WebSocket transport
//! is spoken (no long-polling, no upgrade dance), so the packets that matter
//! are `open`, `close`, `ping`/`pong`, `message` and `noop`. Pure functions;
//! no I/O.

use std::time::Duration;

use serde::Deserialize;

use super::ProtocolError;

/// Where a base URL's Socket.IO endpoint lives, relative to the base.
const SOCKET_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// The Engine.IO `pingInterval` / `pingTimeout` a server announces when it
/// omits them (the reference server's defaults).
const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(25_000);
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_millis(20_000);

/// One decoded Engine.IO packet; payloads borrow from the frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Packet<'a> {
    /// `0{...}`: the server's handshake.
    Open(Handshake),
    /// `1`: the server closes the session.
    Close,
    /// `2[payload]`: heartbeat from the server; answer with a pong.
    Ping(&'a str),
    /// `3[payload]`
    Pong(&'a str),
    /// `4<payload>`: a Socket.IO packet.
    Message(&'a str),
    /// `5`: transport upgrade (never expected on a WebSocket-only session).
    Upgrade,
    /// `6`
    Noop,
}

/// What the `open` packet announces.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Handshake {
    /// The Engine.IO session id (diagnostics only).
    pub(crate) sid: String,
    /// How often the server pings.
    pub(crate) ping_interval: Duration,
    /// How long the server waits for a pong.
    pub(crate) ping_timeout: Duration,
    /// The largest message the server accepts from us, in bytes.
    pub(crate) max_payload: Option<usize>,
}

impl Handshake {
    /// With no ping for this long the connection is dead (docs/realtime.md §1).
    pub(crate) fn silence_limit(&self) -> Duration {
        self.ping_interval.saturating_add(self.ping_timeout)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHandshake {
    #[serde(default)]
    sid: String,
    ping_interval: Option<u64>,
    ping_timeout: Option<u64>,
    max_payload: Option<u64>,
}

/// Decodes one WebSocket text message.
pub(crate) fn decode(frame: &str) -> Result<Packet<'_>, ProtocolError> {
    let mut chars = frame.char_indices();
    let Some((_, kind)) = chars.next() else {
        return Err(ProtocolError::new("empty Engine.IO frame"));
    };
    let payload = &frame[kind.len_utf8()..];
    match kind {
        '0' => parse_handshake(payload).map(Packet::Open),
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping(payload)),
        '3' => Ok(Packet::Pong(payload)),
        '4' => Ok(Packet::Message(payload)),
        '5' => Ok(Packet::Upgrade),
        '6' => Ok(Packet::Noop),
        _ => Err(ProtocolError::with_excerpt(
            "unknown Engine.IO packet type",
            frame,
        )),
    }
}

fn parse_handshake(payload: &str) -> Result<Handshake, ProtocolError> {
    let raw: RawHandshake = serde_json::from_str(payload).map_err(|e| {
        ProtocolError::with_excerpt(format!("malformed Engine.IO open packet: {e}"), payload)
    })?;
    let millis = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
    Ok(Handshake {
        sid: raw.sid,
        ping_interval: millis(raw.ping_interval, DEFAULT_PING_INTERVAL),
        ping_timeout: millis(raw.ping_timeout, DEFAULT_PING_TIMEOUT),
        max_payload: raw
            .max_payload
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0),
    })
}

/// The answer to a ping: a pong echoing its payload (`2probe` → `3probe`).
pub(crate) fn pong(ping_payload: &str) -> String {
    let mut out = String::with_capacity(1 + ping_payload.len());
    out.push('3');
    out.push_str(ping_payload);
    out
}

/// Wraps a Socket.IO packet in an Engine.IO `message`.
pub(crate) fn message(socketio_packet: &str) -> String {
    let mut out = String::with_capacity(1 + socketio_packet.len());
    out.push('4');
    out.push_str(socketio_packet);
    out
}

/// The WebSocket URL of a base URL's Socket.IO endpoint: `http` → `ws`,
/// `https` → `wss`, a path prefix kept (docs/realtime.md §1).
pub(crate) fn socket_url(base_url: &str) -> Result<String, ProtocolError> {
    let base = base_url.trim().trim_end_matches('/');
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| ProtocolError::new(format!("base URL `{base}` has no scheme")))?;
    let ws_scheme = if scheme.eq_ignore_ascii_case("http") {
        "ws"
    } else if scheme.eq_ignore_ascii_case("https") {
        "wss"
    } else {
        return Err(ProtocolError::new(format!(
            "base URL `{base}` must start with http:// or https://"
        )));
    };
    Ok(format!("{ws_scheme}://{rest}{SOCKET_PATH}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_reference_open_packet() {
        let p = decode(r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":10000,"maxPayload":1000000}"#)
            .unwrap();
        let Packet::Open(h) = p else {
            panic!("not open: {p:?}")
        };
        assert_eq!(h.sid, "abc");
        assert_eq!(h.ping_interval, Duration::from_secs(25));
        assert_eq!(h.ping_timeout, Duration::from_secs(10));
        assert_eq!(h.max_payload, Some(1_000_000));
        assert_eq!(h.silence_limit(), Duration::from_secs(35));
    }

    #[test]
    fn open_packet_defaults_and_errors() {
        let Packet::Open(h) = decode(r#"0{"sid":"x","extra":true}"#).unwrap() else {
            panic!()
        };
        assert_eq!(h.ping_interval, DEFAULT_PING_INTERVAL);
        assert_eq!(h.ping_timeout, DEFAULT_PING_TIMEOUT);
        assert_eq!(h.max_payload, None);
        assert!(decode("0").is_err());
        assert!(decode("0{not json").is_err());
        assert!(decode(r#"0{"pingInterval":"soon"}"#).is_err());
        assert!(decode(r#"0{"pingInterval":-5}"#).is_err());
    }

    #[test]
    fn decodes_every_packet_type() {
        assert_eq!(decode("1").unwrap(), Packet::Close);
        assert_eq!(decode("2").unwrap(), Packet::Ping(""));
        assert_eq!(decode("2probe").unwrap(), Packet::Ping("probe"));
        assert_eq!(decode("3").unwrap(), Packet::Pong(""));
        assert_eq!(decode("40/agent,").unwrap(), Packet::Message("0/agent,"));
        assert_eq!(decode("5").unwrap(), Packet::Upgrade);
        assert_eq!(decode("6").unwrap(), Packet::Noop);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(decode("").is_err());
        assert!(decode("9").is_err());
        assert!(decode("x42").is_err());
        // A multi-byte first character must not split a code point.
        assert!(decode("é4").is_err());
        assert!(decode("🙂").is_err());
    }

    #[test]
    fn error_excerpts_are_bounded() {
        let long = format!("x{}", "y".repeat(10_000));
        let e = decode(&long).unwrap_err();
        assert!(e.to_string().len() < 300, "{}", e);
    }

    #[test]
    fn encodes_pong_and_message() {
        assert_eq!(pong(""), "3");
        assert_eq!(pong("probe"), "3probe");
        assert_eq!(message("2/agent,[\"x\"]"), "42/agent,[\"x\"]");
    }

    #[test]
    fn socket_urls() {
        assert_eq!(
            socket_url("http://platos:3100").unwrap(),
            "ws://platos:3100/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url("https://platos.example.com/").unwrap(),
            "wss://platos.example.com/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url("https://example.com/platos/v2").unwrap(),
            "wss://example.com/platos/v2/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url("HTTP://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"
        );
        assert!(socket_url("ftp://x").is_err());
        assert!(socket_url("nonsense").is_err());
    }
}

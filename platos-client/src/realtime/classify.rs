//! What the gateway's events mean (docs/realtime.md §2–§3), as pure functions:
//! no I/O, no state. The handshake ([`super::dial`]) and the connection
//! ([`super::connection`]) both ask these functions, so a refusal reads the
//! same wherever it arrives.

use std::borrow::Cow;
use std::time::Duration;

use platos_events::Event;
use serde_json::{Map, Value};

use super::socketio;
use crate::error::Error;

/// Why a connection (or an attempt at one) cannot go on.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The connection was lost: reconnect if the budget allows.
    Lost(String),
    /// The server refused or expired the session token: refresh once.
    AuthRefused {
        code: Option<String>,
        message: String,
        raw: String,
    },
    /// Retrying cannot help: every turn of the connection ends with this.
    Failed(Error),
}

/// Where an `agent_event` goes, read without building the event.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Route<'a> {
    pub(crate) kind: Option<Cow<'a, str>>,
    pub(crate) thread_id: Option<Cow<'a, str>>,
    pub(crate) agent_id: Option<Cow<'a, str>>,
}

impl Route<'_> {
    pub(crate) fn is_done(&self) -> bool {
        self.kind.as_deref() == Some("done")
    }

    /// Approval events may come without `threadId`; they name their agent.
    pub(crate) fn is_approval(&self) -> bool {
        matches!(
            self.kind.as_deref(),
            Some("approval_needed" | "approval_resolved")
        )
    }
}

/// Reads the top-level `type`, `threadId` and `agentId` of an event object;
/// nested objects are skipped, not built. Anything that is not an object
/// with string fields routes nowhere (the consumer's decode reports it).
pub(crate) fn route(json: &str) -> Route<'_> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
        #[serde(rename = "threadId", borrow, default)]
        thread_id: Option<Cow<'a, str>>,
        #[serde(rename = "agentId", borrow, default)]
        agent_id: Option<Cow<'a, str>>,
    }
    match serde_json::from_str::<Raw<'_>>(json) {
        Ok(raw) => Route {
            kind: raw.kind,
            thread_id: raw.thread_id,
            agent_id: raw.agent_id,
        },
        Err(_) => Route::default(),
    }
}

/// A server event other than the hot-path `agent_event` text.
#[derive(Debug)]
pub(crate) enum Signal {
    /// An `agent_event` that came off the fast path (already parsed).
    AgentEvent(Value),
    /// The gateway accepted the socket (`connected`).
    Ready,
    /// The token was refused or expired: the gateway disconnects next.
    TokenRefused {
        code: Option<String>,
        message: String,
        raw: String,
    },
    /// A rate-limit refusal of the turn just started; a socket-level
    /// `done` follows it.
    RateLimited(Error),
    /// Any other socket-level `error`, as the typed event the stream yields.
    SocketError(Event),
    /// A socket-level `done` (after a refusal), as the stream's done event.
    SocketDone(Event),
    /// `approval_ack` (`Ok`) or `approval_response_error` (`Err`).
    ApprovalAnswer {
        approval_id: Option<String>,
        result: Result<(), Error>,
    },
    /// `server.deprecation`: logged.
    Deprecation {
        code: String,
        message: String,
        remove_after: String,
    },
    /// Anything else (`joined_thread`, `thread_event`, new events).
    Ignored,
}

/// What the event `name` with first argument `data` means.
pub(crate) fn classify(name: &str, data: Value) -> Signal {
    let text = |data: &Value, key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
    match name {
        "agent_event" => Signal::AgentEvent(data),
        "connected" => Signal::Ready,
        "error" => socket_error(data),
        "done" => Signal::SocketDone(
            with_type(data, "done")
                .and_then(|v| Event::from_value(v).ok())
                .unwrap_or_else(|| Event::Done(Default::default())),
        ),
        "approval_ack" => Signal::ApprovalAnswer {
            approval_id: text(&data, "approvalId"),
            result: Ok(()),
        },
        "approval_response_error" => Signal::ApprovalAnswer {
            approval_id: text(&data, "approvalId"),
            result: Err(Error::stream_of(
                crate::error::StreamCode::ApprovalResponseError,
                text(&data, "error")
                    .unwrap_or_else(|| "the server refused the approval response".into()),
            )),
        },
        "server.deprecation" => Signal::Deprecation {
            code: text(&data, "code").unwrap_or_default(),
            message: text(&data, "message").unwrap_or_default(),
            remove_after: text(&data, "removeAfter").unwrap_or_default(),
        },
        _ => Signal::Ignored,
    }
}

/// The gateway's socket-level `error` event.
fn socket_error(data: Value) -> Signal {
    let code = data.get("code").and_then(Value::as_str).map(str::to_owned);
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("socket error")
        .to_owned();
    if is_token_refusal(code.as_deref(), &message) {
        return Signal::TokenRefused {
            code,
            message,
            raw: data.to_string(),
        };
    }
    if code.as_deref() == Some("rate_limit") {
        let retry_after = data
            .get("retryAfterSeconds")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        return Signal::RateLimited(Error::rate_limited(
            code,
            message,
            retry_after,
            data.to_string(),
        ));
    }
    let event = with_type(data, "socket_error")
        .and_then(|v| Event::from_value(v).ok())
        .filter(|e| matches!(e, Event::SocketError(_)))
        .unwrap_or_else(|| Event::socket_error(message, code));
    Signal::SocketError(event)
}

/// Whether a socket `error` means the token was refused or expired
/// (docs/realtime.md §2): the gateway then disconnects, and a fresh token helps.
pub(crate) fn is_token_refusal(code: Option<&str>, message: &str) -> bool {
    if matches!(code, Some("SESSION_EXPIRED" | "SESSION_REVOKED_OR_EXPIRED")) {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    lower.contains("invalid or expired session token")
        || lower.contains("must provide a session token")
        || lower.starts_with("missing auth")
}

/// A CONNECT_ERROR (`44`): an auth-like refusal is retried after a token
/// refresh; anything else ends every turn of the connection.
pub(crate) fn connect_refused(data: &Value) -> Fault {
    let message = socketio::Packet::connect_error_message(data);
    let code = data
        .get("data")
        .and_then(|d| d.get("code"))
        .or_else(|| data.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let lower = message.to_ascii_lowercase();
    let auth_like = is_token_refusal(code.as_deref(), &message)
        || [
            "auth",
            "token",
            "session",
            "unauthori",
            "forbidden",
            "expired",
            "jwt",
        ]
        .iter()
        .any(|word| lower.contains(word));
    if auth_like {
        Fault::AuthRefused {
            code,
            message,
            raw: data.to_string(),
        }
    } else {
        Fault::Failed(Error::stream(
            Some(code.unwrap_or_else(|| crate::error::StreamCode::ConnectError.as_str().into())),
            format!("the server refused the namespace connect: {message}"),
        ))
    }
}

/// `data` as an object with `type` set, for events the gateway sends
/// outside `agent_event`.
fn with_type(data: Value, kind: &str) -> Option<Value> {
    let mut map = match data {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => return None,
    };
    map.insert("type".into(), Value::from(kind));
    Some(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_read_top_level_fields_only() {
        let r = route(r#"{"text":"x","type":"done","threadId":"t1","n":[{"type":"no"}]}"#);
        assert!(r.is_done());
        assert_eq!(r.thread_id.as_deref(), Some("t1"));
        let r = route(r#"{"result":{"type":"done","threadId":"x"},"type":"token"}"#);
        assert_eq!(r.kind.as_deref(), Some("token"));
        assert_eq!(r.thread_id, None);
        // Escapes are read, not refused.
        assert_eq!(
            route(r#"{"threadId":"t\u0031"}"#).thread_id.as_deref(),
            Some("t1")
        );
        let r = route(r#"{"type":"approval_needed","agentId":"a1"}"#);
        assert!(r.is_approval());
        assert_eq!(r.agent_id.as_deref(), Some("a1"));
        assert_eq!(route("[1]"), Route::default());
        assert_eq!(route(r#"{"threadId":5}"#), Route::default());
    }

    #[test]
    fn token_refusals() {
        assert!(is_token_refusal(Some("SESSION_EXPIRED"), "whatever"));
        assert!(is_token_refusal(Some("SESSION_REVOKED_OR_EXPIRED"), ""));
        assert!(is_token_refusal(None, "Invalid or expired session token."));
        assert!(is_token_refusal(
            None,
            "External WS connections must provide a session token in auth"
        ));
        assert!(is_token_refusal(
            None,
            "Missing auth — need organizationId, projectId, environmentId, userId"
        ));
        assert!(!is_token_refusal(Some("rate_limit"), "slow down"));
        assert!(!is_token_refusal(None, "threadId is required"));
    }

    #[test]
    fn socket_errors_split_into_refusals_and_events() {
        assert!(matches!(
            classify("error", json!({"code": "SESSION_EXPIRED", "message": "x"})),
            Signal::TokenRefused { .. }
        ));
        match classify(
            "error",
            json!({"code": "rate_limit", "message": "slow", "retryAfterSeconds": 2}),
        ) {
            Signal::RateLimited(e) => assert_eq!(e.retry_after(), Some(Duration::from_secs(2))),
            other => panic!("{other:?}"),
        }
        match classify(
            "error",
            json!({"code": "AGENT_SCOPE_MISMATCH", "message": "no"}),
        ) {
            Signal::SocketError(Event::SocketError(e)) => {
                assert_eq!(e.code.as_deref(), Some("AGENT_SCOPE_MISMATCH"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("done", json!({"stopped": true})),
            Signal::SocketDone(Event::Done(_))
        ));
        assert!(matches!(
            classify("done", json!([1])),
            Signal::SocketDone(Event::Done(_))
        ));
    }

    #[test]
    fn approval_answers_carry_their_id() {
        match classify("approval_response_error", json!({"error": "gone"})) {
            Signal::ApprovalAnswer {
                approval_id: None,
                result: Err(e),
            } => {
                assert_eq!(e.code(), Some("approval_response_error"));
                assert_eq!(e.message(), "gone");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("approval_ack", json!({"approvalId": "a"})),
            Signal::ApprovalAnswer { approval_id: Some(id), result: Ok(()) } if id == "a"
        ));
    }

    #[test]
    fn connect_errors_split_into_auth_and_terminal() {
        assert!(matches!(
            connect_refused(&json!({"message": "Authentication error"})),
            Fault::AuthRefused { .. }
        ));
        assert!(matches!(
            connect_refused(&json!({"message": "jwt expired"})),
            Fault::AuthRefused { .. }
        ));
        match connect_refused(&json!({"message": "Invalid namespace"})) {
            Fault::Failed(e) => {
                assert_eq!(e.code(), Some("connect_error"));
                assert!(e.message().contains("Invalid namespace"));
            }
            _ => panic!("not terminal"),
        }
    }
}

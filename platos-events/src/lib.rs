//! Typed Platos stream events.
//!
//! [`Event`] is one event of a `threads.send` stream: an `agent_event`
//! payload from the realtime gateway, or a lifecycle event the client makes
//! itself ([`Event::Connected`], [`Event::Disconnected`],
//! [`Event::Reconnecting`], [`Event::StreamGap`], [`Event::SocketError`]).
//! The per-event structs and the enum are generated from
//! `spec/events.schema.json` by `cargo xtask codegen`.
//!
//! Decoding is strict about the events it knows and lenient about the rest:
//!
//! - the `type` tag picks the variant; a known `type` whose body does not
//!   match its schema is a [`DecodeError`] naming the event and the field;
//! - an unknown `type` becomes [`Event::Unknown`] with the raw JSON intact,
//!   because servers add event types over time;
//! - fields the schema does not list are kept in each struct's `extra` map,
//!   so decoding and re-encoding loses nothing.
//!
//! ```
//! use platos_events::Event;
//!
//! let event = Event::from_json(r#"{"type":"token","text":"Hel","threadId":"t1"}"#)?;
//! match &event {
//!     Event::Token(token) => assert_eq!(token.text, "Hel"),
//!     other => panic!("unexpected {}", other.kind()),
//! }
//! assert_eq!(event.thread_id(), Some("t1"));
//! assert_eq!(
//!     event.to_value(),
//!     serde_json::json!({"type": "token", "text": "Hel", "threadId": "t1"})
//! );
//! # Ok::<(), platos_events::DecodeError>(())
//! ```
//!
//! Numbers: money (`costCents`) is `f64` and token counts are `u64`, so an
//! integer-valued `costCents` such as `3` re-encodes as `3.0` (the same
//! number, a different JSON spelling).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

#[allow(
    clippy::large_enum_variant,
    reason = "events are short-lived values; boxing would cost an allocation per token"
)]
#[allow(clippy::derivable_impls, clippy::clone_on_copy, clippy::to_string_trait_impl)]
// prettyplease's layout is the committed form; rustfmt would fight the
// drift check.
#[rustfmt::skip]
mod generated;

pub use generated::*;

mod fast;

/// Longest error detail kept in a [`DecodeError`]: serde quotes the offending
/// value, and a multi-megabyte string does not belong in an error message.
const MAX_DETAIL_CHARS: usize = 300;

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The text is not JSON.
    #[error("event is not valid JSON: {message}")]
    Syntax {
        /// What the JSON parser reported.
        message: String,
    },
    /// The JSON is not an object.
    #[error("event is not a JSON object (found {found})")]
    NotAnObject {
        /// The JSON type found instead (`array`, `string`, …).
        found: &'static str,
    },
    /// The object has no `type`, or its `type` is not a string.
    #[error("event has no string `type` field")]
    MissingType,
    /// The `type` is known but the body does not match its schema.
    #[error("malformed `{kind}` event at `{path}`: {message}")]
    Malformed {
        /// The event's `type`.
        kind: String,
        /// JSON path of the field at fault, `.` for the event object itself
        /// (for example a missing required field).
        path: String,
        /// What was wrong.
        message: String,
    },
}

impl DecodeError {
    /// The `type` of the event that failed, when it had a known one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            DecodeError::Malformed { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// JSON path of the field at fault, for a malformed known event.
    pub fn path(&self) -> Option<&str> {
        match self {
            DecodeError::Malformed { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Decodes the body of one known event kind (see `Event::decoder`).
pub(crate) type BodyDecoder = fn(Value) -> Result<Event, DecodeError>;

/// Decodes an event body (the object without `type`), reporting the path of
/// the first field at fault.
pub(crate) fn decode_body<T>(kind: &str, body: Value) -> Result<T, DecodeError>
where
    T: serde::de::DeserializeOwned,
{
    // Plain serde first: tracking the path costs a key copy per field, and
    // only an error needs it. Borrowing keeps `body` for that re-run.
    if untracked_first()
        && let Ok(decoded) = T::deserialize(&body)
    {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(body).map_err(|err| {
        let path = truncate(&err.path().to_string());
        DecodeError::Malformed {
            kind: kind.to_string(),
            path,
            message: truncate(&err.into_inner().to_string()),
        }
    })
}

#[cfg(test)]
thread_local! {
    /// Set by tests that need the reference decoder (path tracking only) to
    /// compare the fast paths against.
    pub(crate) static TRACKED_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn untracked_first() -> bool {
    #[cfg(test)]
    {
        !TRACKED_ONLY.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// Encodes an event body and writes the `type` tag back.
pub(crate) fn encode_body<T: Serialize>(kind: &str, body: &T) -> Value {
    // Serialising these structs cannot fail (string keys, no fallible
    // `Serialize` impls); should it ever, keep the tag rather than panic.
    let mut map = match serde_json::to_value(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => Map::new(),
    };
    map.insert("type".to_string(), Value::String(kind.to_string()));
    Value::Object(map)
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Event {
    /// Decodes one event object.
    ///
    /// A known `type` with a body that does not match its schema is an
    /// error; an unknown `type` becomes [`Event::Unknown`] holding `value`
    /// unchanged.
    pub fn from_value(value: Value) -> Result<Event, DecodeError> {
        let Value::Object(mut map) = value else {
            return Err(DecodeError::NotAnObject {
                found: json_type_name(&value),
            });
        };
        let kind = match map.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            _ => return Err(DecodeError::MissingType),
        };
        match Event::decoder(&kind) {
            Some(decode) => {
                map.remove("type");
                decode(Value::Object(map))
            }
            None => Ok(Event::Unknown {
                kind,
                raw: Value::Object(map),
            }),
        }
    }

    /// Parses and decodes one event from JSON text (see [`Event::from_value`]).
    ///
    /// The result is exactly `from_value` of the parsed text; a known event
    /// that decodes cleanly is read straight from the text, without the
    /// intermediate `Value`.
    pub fn from_json(text: &str) -> Result<Event, DecodeError> {
        if let Some(event) = fast::decode(text) {
            return Ok(event);
        }
        let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::Syntax {
            message: truncate(&e.to_string()),
        })?;
        Event::from_value(value)
    }

    /// Encodes the event as its wire JSON, `type` included. Optional fields
    /// that are unset are left out, so `Event::connected()` encodes as
    /// `{"type":"connected"}`. [`Event::Unknown`] returns its raw JSON.
    pub fn to_value(&self) -> Value {
        match self.encode_known() {
            Some(value) => value,
            None => match self {
                Event::Unknown { raw, .. } => raw.clone(),
                // encode_known covers every other variant.
                other => encode_body(other.kind(), &Map::new()),
            },
        }
    }

    /// Encodes the event as compact JSON text (see [`Event::to_value`]).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// `{"type":"connected"}`: the socket (re)connected.
    pub fn connected() -> Event {
        Event::Connected(ConnectedEvent::default())
    }

    /// `{"type":"disconnected","reason":…}`: the connection dropped.
    pub fn disconnected(reason: Option<String>) -> Event {
        Event::Disconnected(DisconnectedEvent {
            reason,
            ..DisconnectedEvent::default()
        })
    }

    /// `{"type":"reconnecting","attempt":k}`: about to retry, `attempt` from 1.
    pub fn reconnecting(attempt: u32) -> Event {
        Event::Reconnecting(ReconnectingEvent {
            attempt,
            extra: Map::new(),
            reply_to_message_id: None,
            retry_count: None,
            thread_id: None,
        })
    }

    /// `{"type":"stream_gap",…}`: reconnected; events may have been missed,
    /// so callers should refetch `threads.messages`.
    pub fn stream_gap(reason: Option<String>, attempt: Option<u32>) -> Event {
        Event::StreamGap(StreamGapEvent {
            reason,
            attempt,
            ..StreamGapEvent::default()
        })
    }

    /// `{"type":"recovered_message","messageId":…,"text":…}`: after a
    /// reconnect, the turn's answer was found persisted in the thread.
    pub fn recovered_message(message_id: impl Into<String>, text: impl Into<String>) -> Event {
        Event::RecoveredMessage(RecoveredMessageEvent {
            message_id: message_id.into(),
            text: text.into(),
            cost_cents: None,
            created_at: None,
            input_tokens: None,
            output_tokens: None,
            reply_to_message_id: None,
            thread_id: None,
            extra: Map::new(),
        })
    }

    /// `{"type":"socket_error","message":…,"code":…}`: the gateway sent the
    /// socket-level `error` event.
    pub fn socket_error(message: impl Into<String>, code: Option<String>) -> Event {
        Event::SocketError(SocketErrorEvent {
            message: message.into(),
            code,
            extra: Map::new(),
            limit: None,
            reply_to_message_id: None,
            retry_after_seconds: None,
            scope: None,
            thread_id: None,
        })
    }

    /// Whether this is a known event type ([`KNOWN_KINDS`]), as opposed to
    /// [`Event::Unknown`].
    pub fn is_known(&self) -> bool {
        !matches!(self, Event::Unknown { .. })
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Event::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Value> for Event {
    type Error = DecodeError;

    fn try_from(value: Value) -> Result<Self, DecodeError> {
        Event::from_value(value)
    }
}

impl From<Event> for Value {
    fn from(event: Event) -> Self {
        match event {
            Event::Unknown { raw, .. } => raw,
            known => known.to_value(),
        }
    }
}

impl std::str::FromStr for Event {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Event::from_json(text)
    }
}

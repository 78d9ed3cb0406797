//! What the server does instead of running the next turn.

use serde_json::{Value, json};

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

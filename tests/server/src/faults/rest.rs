//! Canned answers for the next REST calls.

use serde_json::{Value, json};

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

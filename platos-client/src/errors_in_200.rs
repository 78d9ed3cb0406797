//! Refusals the server answers with HTTP 200.
//!
//! The memory routes (`/api/v1/memory`, docs/wire.md §3.11), one thread's
//! cost (§3.6) and the durable approval resolve (§3.4) catch their own
//! failures and answer `200 {error, status?, validationErrors?}`.
//! [`lift`] gives such an answer the status its body names, so the one
//! classification of refusals (`transport::error_from_response`) turns it into
//! the same [`Error`](crate::Error) any other route's refusal becomes.

use serde_json::Value;

/// The path prefixes whose routes answer refusals with HTTP 200.
const PREFIXES: [&str; 4] = [
    "/api/v1/memory",
    "/api/v1/platos/memory",
    "/api/v1/agent/monitoring/cost/thread",
    "/api/v1/agent/durable-approvals",
];

/// Whether the route at `path` (a spec path template) may hide a refusal in a 200.
pub(crate) fn applies(path: &str) -> bool {
    PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The status a 2xx body claims, when it is a refusal: an object whose
/// `error` is a string and whose `status` is a 4xx or 5xx (400 when absent
/// or not an error status, as the server's own default is).
pub(crate) fn refusal_status(body: &[u8]) -> Option<u16> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    object.get("error")?.as_str()?;
    let status = object
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..600).contains(s))
        .unwrap_or(400);
    Some(status)
}

/// Reads a 2xx answer (at most `limit` bytes, like any answer) and gives it
/// the status its body claims when the body is a refusal.
pub(crate) async fn lift(
    response: reqwest::Response,
    limit: u64,
) -> reqwest::Result<reqwest::Response> {
    let version = response.version();
    let status = response.status();
    let headers = response.headers().clone();
    // Over the limit fails here as it would while decoding.
    let response = crate::body::limit_body(response, limit);
    let body = crate::body::read_capped(response, usize::MAX).await?;
    let status = refusal_status(&body)
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .unwrap_or(status);
    let mut rebuilt = http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok(reqwest::Response::from(rebuilt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_routes_apply() {
        assert!(applies("/api/v1/memory"));
        assert!(applies("/api/v1/memory/{id}"));
        assert!(applies("/api/v1/platos/memory/search"));
        assert!(applies("/api/v1/agent/monitoring/cost/thread/{threadId}"));
        assert!(applies("/api/v1/agent/durable-approvals/{token}/resolve"));
        assert!(!applies("/api/v1/agent/monitoring/cost"));
        assert!(!applies("/api/v1/agent/approvals/{approvalId}/resolve"));
        assert!(!applies("/api/v1/memoryx"));
        assert!(!applies("/api/v1/agent/threads"));
    }

    #[test]
    fn a_refusal_body_names_its_status() {
        assert_eq!(
            refusal_status(br#"{"error":"memory not found","status":404}"#),
            Some(404)
        );
        assert_eq!(
            refusal_status(br#"{"error":"bad","status":400,"validationErrors":["x"]}"#),
            Some(400)
        );
        // No status, or one that is not an error: the server's default, 400.
        assert_eq!(refusal_status(br#"{"error":"q is required"}"#), Some(400));
        assert_eq!(
            refusal_status(br#"{"error":"odd","status":200}"#),
            Some(400)
        );
        // Answers that are not refusals stay answers.
        assert_eq!(refusal_status(br#"{"memory":{"id":"m1"}}"#), None);
        assert_eq!(refusal_status(br#"{"error":{"code":"X"}}"#), None);
        assert_eq!(refusal_status(b"[]"), None);
        assert_eq!(refusal_status(b"not json"), None);
    }
}

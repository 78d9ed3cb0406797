//! The runtime's cap on the public write routes (docs/wire.md §3.10): on
//! these prefixes a request that carries a body (any method but GET, HEAD,
//! OPTIONS and DELETE) must declare a finite `Content-Length` of at most
//! 256 KiB, else `413 {"error":"payload_too_large","limit":262144}` before a
//! byte of the body is read. A chunked body declares no length and is refused.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

/// The capped prefixes: the guest-token mint and the entity session mint
/// (both authenticate after the body is parsed, so the cap runs first).
const CAPPED: [&str; 2] = ["/api/v1/public", "/api/v1/entities"];

/// Upstream's cap on those prefixes.
pub(super) const PUBLIC_BODY_CAP: u64 = 256 * 1024;

fn capped(path: &str) -> bool {
    CAPPED.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Middleware: refuses a body of unknown or excessive length on a capped prefix.
pub(super) async fn cap(req: Request, next: Next) -> Response {
    let skipped = [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE];
    if skipped.contains(req.method()) || !capped(req.uri().path()) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n <= PUBLIC_BODY_CAP => next.run(req).await,
        _ => super::json_resp(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "payload_too_large", "limit": PUBLIC_BODY_CAP}),
        ),
    }
}

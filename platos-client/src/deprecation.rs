//! Answers that announce their route's end.
//!
//! A server marks a route it will remove with `Deprecation`, `Sunset` and
//! `Link` headers (RFC 8594; the old `/api/v1/platos/memory` prefix does). The
//! transport shows every answer's headers to [`note`], which logs one WARN per
//! route for the life of the process, so a busy client does not flood its logs.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use reqwest::header::HeaderMap;

/// The routes already reported, by operation id.
fn reported() -> &'static Mutex<HashSet<&'static str>> {
    static REPORTED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    REPORTED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Logs a deprecation announced by `headers`, once per `operation`.
/// Answers whether this call logged it.
pub(crate) fn note(operation: &'static str, path: &str, headers: &HeaderMap) -> bool {
    let Some(deprecation) = headers.get("deprecation") else {
        return false;
    };
    let first = match reported().lock() {
        Ok(mut seen) => seen.insert(operation),
        // A panic elsewhere while holding the set: report rather than hide.
        Err(poisoned) => poisoned.into_inner().insert(operation),
    };
    if !first {
        return false;
    }
    let text = |v: Option<&reqwest::header::HeaderValue>| {
        v.and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    };
    tracing::warn!(
        operation,
        path,
        deprecation = %text(Some(deprecation)),
        sunset = %text(headers.get("sunset")),
        link = %text(headers.get("link")),
        "the server marks this route deprecated; it stops answering after the sunset date"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_deprecated_route_is_reported_once() {
        let mut headers = HeaderMap::new();
        assert!(
            !note("test_plain", "/x", &headers),
            "no header, nothing to say"
        );
        headers.insert("deprecation", HeaderValue::from_static("true"));
        headers.insert(
            "sunset",
            HeaderValue::from_static("Wed, 30 Jun 2027 00:00:00 GMT"),
        );
        assert!(note("test_old", "/api/v1/platos/memory", &headers));
        assert!(
            !note("test_old", "/api/v1/platos/memory", &headers),
            "once per route"
        );
        assert!(note("test_other", "/api/v1/platos/memory/search", &headers));
    }
}

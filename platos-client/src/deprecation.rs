//! Answers that announce their route's end.
//!
//! A server marks a route it will remove with `Deprecation`, `Sunset` and
//! `Link` headers (RFC 8594; the old `/api/v1/platos/memory` prefix does). The
//! transport shows every answer's headers to [`note`], which logs one WARN per
//! route for the life of the process, so a busy client does not flood its logs.
//! A generated call's route is its operation; a raw call's is its method and
//! path, since every raw call shares one operation name.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use reqwest::header::HeaderMap;

/// The routes already reported.
fn reported() -> &'static Mutex<HashSet<String>> {
    static REPORTED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    REPORTED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Logs a deprecation announced by `headers`, once per `route` (the
/// operation id of a generated call, `METHOD path` of a raw one).
/// Answers whether this call logged it.
pub(crate) fn note(operation: &str, route: &str, path: &str, headers: &HeaderMap) -> bool {
    let Some(deprecation) = headers.get("deprecation") else {
        return false;
    };
    let first = match reported().lock() {
        Ok(mut seen) => seen.insert(route.to_owned()),
        // A panic elsewhere while holding the set: report rather than hide.
        Err(poisoned) => poisoned.into_inner().insert(route.to_owned()),
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
            !note("test_plain", "test_plain", "/x", &headers),
            "no header, nothing to say"
        );
        headers.insert("deprecation", HeaderValue::from_static("true"));
        headers.insert(
            "sunset",
            HeaderValue::from_static("Wed, 30 Jun 2027 00:00:00 GMT"),
        );
        let old = "/api/v1/platos/memory";
        assert!(note("test_old", "test_old", old, &headers));
        assert!(
            !note("test_old", "test_old", old, &headers),
            "once per route"
        );
        assert!(note(
            "test_other",
            "test_other",
            "/api/v1/platos/memory/search",
            &headers
        ));
        // Raw calls share an operation name; each of their routes is its own.
        assert!(note("raw", "GET /api/v1/platos/memory", old, &headers));
        assert!(note("raw", "POST /api/v1/platos/memory", old, &headers));
        assert!(!note("raw", "GET /api/v1/platos/memory", old, &headers));
    }
}

//! The runtime's compatibility aliases and the headers that announce their
//! end (docs/wire.md §3.11): every answer under an alias prefix carries
//! `Deprecation: true`, `Sunset` (an HTTP-date) and a `Link` to the same path
//! under the canonical prefix, `rel="successor-version"`. Status and body are
//! the canonical route's: the alias is the same handlers mounted twice.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// One alias: its prefix, the prefix it moved to, and its sunset (HTTP-date).
pub(super) struct Alias {
    pub(super) alias: &'static str,
    pub(super) canonical: &'static str,
    sunset: &'static str,
}

/// Upstream's one alias: the memory routes' old prefix, sunset 2027-03-31.
pub(super) const ALIASES: [Alias; 1] = [Alias {
    alias: "/api/v1/platos/memory",
    canonical: "/api/v1/memory",
    sunset: "Wed, 31 Mar 2027 00:00:00 GMT",
}];

/// The alias covering `path` as a path (`/api/v1/platos/memoryx` is not one).
fn alias_of(path: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| {
        path.strip_prefix(a.alias)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Middleware: adds the three headers to every answer under an alias.
pub(super) async fn signal(req: Request, next: Next) -> Response {
    let alias = alias_of(req.uri().path());
    let successor = alias.map(|a| {
        let rest = &req.uri().path()[a.alias.len()..];
        format!("<{}{rest}>; rel=\"successor-version\"", a.canonical)
    });
    let mut response = next.run(req).await;
    if let (Some(a), Some(link)) = (alias, successor) {
        let headers = response.headers_mut();
        headers.insert("deprecation", HeaderValue::from_static("true"));
        headers.insert("sunset", HeaderValue::from_static(a.sunset));
        if let Ok(link) = HeaderValue::from_str(&link) {
            headers.insert("link", link);
        }
    }
    response
}

//! Proxies, the same on every lane (README, "Proxies and TLS").
//!
//! By default the SDK follows `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` (upper or lower case) exactly as reqwest does, by using the
//! same matcher reqwest uses (hyper-util's), for the realtime socket too.
//! A builder can name one proxy for everything, or none. REST goes through
//! reqwest's proxy support; the socket opens an HTTP `CONNECT` tunnel here,
//! with Basic credentials from the proxy URL.

// The socket's half (tunnels, TLS streams) is used only by the realtime lanes.
#![cfg_attr(not(feature = "realtime"), allow(dead_code, unused_imports))]

use http::HeaderValue;
use hyper_util::client::proxy::matcher::Matcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Secret;
use crate::error::{Error, Result};

/// The most a proxy's answer to `CONNECT` may take before its blank line.
const MAX_ANSWER_BYTES: usize = 8 * 1024;

/// Which proxy the SDK's connections go through.
#[derive(Clone, Debug, Default)]
pub(crate) enum ProxyChoice {
    /// What the environment says, as reqwest reads it.
    #[default]
    Environment,
    /// This proxy for every destination (the URL may carry credentials).
    Url(Secret),
    /// Direct connections only, whatever the environment says.
    Off,
}

/// A proxy choice, checked and ready for both lanes.
#[derive(Clone)]
pub(crate) struct Proxies {
    choice: ProxyChoice,
    matcher: Option<std::sync::Arc<Matcher>>,
}

/// Where one connection goes first: the proxy, and what to tell it.
pub(crate) struct Route {
    /// `host:port` of the proxy.
    pub(crate) authority: String,
    /// The proxy for messages: scheme, host and port, never credentials.
    pub(crate) shown: String,
    /// `Proxy-Authorization`, from the URL's credentials.
    pub(crate) auth: Option<HeaderValue>,
}

impl Proxies {
    /// Checks an explicit proxy URL: a config error names what is wrong
    /// with it, never the URL itself (it may hold a password).
    pub(crate) fn new(choice: ProxyChoice) -> Result<Self> {
        let matcher = match &choice {
            ProxyChoice::Environment => Some(std::sync::Arc::new(Matcher::from_system())),
            ProxyChoice::Url(url) => {
                check_url(url.expose())?;
                Some(std::sync::Arc::new(
                    Matcher::builder().all(url.expose().to_owned()).build(),
                ))
            }
            ProxyChoice::Off => None,
        };
        Ok(Proxies { choice, matcher })
    }

    /// Applies the choice to the SDK's own reqwest client.
    pub(crate) fn configure_http(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder> {
        Ok(match &self.choice {
            // reqwest reads the environment itself, with the same matcher.
            ProxyChoice::Environment => builder,
            ProxyChoice::Url(url) => builder.proxy(
                reqwest::Proxy::all(url.expose())
                    .map_err(|_| Error::config("the proxy URL is not valid"))?,
            ),
            ProxyChoice::Off => builder.no_proxy(),
        })
    }

    /// The proxy for a connection to `target` (`http://` or `https://`
    /// URI of the destination), or `None` to go direct.
    pub(crate) fn route(&self, target: &http::Uri) -> Result<Option<Route>> {
        let Some(intercept) = self.matcher.as_ref().and_then(|m| m.intercept(target)) else {
            return Ok(None);
        };
        let uri = intercept.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        if scheme != "http" {
            // reqwest speaks TLS and SOCKS to proxies; the socket lane does not (yet).
            return Err(Error::config(format!(
                "the realtime socket can use only http:// proxies, not {scheme}://"
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::config("the proxy URL has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Some(Route {
            shown: format!("http://{authority}"),
            authority,
            auth: intercept.basic_auth().cloned(),
        }))
    }
}

impl Proxies {
    /// The proxy connections to `base_url` go through, as messages show it
    /// (scheme, host and port; never credentials), or `None` when direct.
    pub(crate) fn shown_for(&self, base_url: &str) -> Option<String> {
        let target: http::Uri = base_url.parse().ok()?;
        let intercept = self.matcher.as_ref()?.intercept(&target)?;
        let uri = intercept.uri();
        let host = uri.host()?;
        let scheme = uri.scheme_str().unwrap_or("http");
        Some(match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        })
    }
}

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // ProxyChoice's Url is a Secret: it prints as ***.
        f.debug_struct("Proxies")
            .field("choice", &self.choice)
            .finish()
    }
}

fn check_url(raw: &str) -> Result<()> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| Error::config(format!("the proxy URL is not valid: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::config(format!(
            "the proxy URL must be http:// or https://, not {}://",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config("the proxy URL has no host"));
    }
    Ok(())
}

/// Asks the proxy on `stream` for a tunnel to `target` (`host:port`) and
/// reads its answer; on success the stream then carries the tunnel.
pub(crate) async fn tunnel<S>(stream: &mut S, target: &str, route: &Route) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = route.auth.as_ref().and_then(|v| v.to_str().ok()) {
        request.push_str("Proxy-Authorization: ");
        request.push_str(auth);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| {
        Error::network(
            format!("the proxy {} dropped the tunnel request: {e}", route.shown),
            Some(Box::new(e)),
        )
    };
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;

    // Read byte by byte up to the blank line: nothing past it may be taken
    // from the stream, it belongs to the tunnel.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_ANSWER_BYTES {
            return Err(Error::proxy(format!(
                "the proxy {} answered CONNECT with more than {MAX_ANSWER_BYTES} bytes of headers",
                route.shown
            )));
        }
        let byte = stream.read_u8().await.map_err(io)?;
        head.push(byte);
    }
    match answer_status(&head) {
        Some(status) if (200..300).contains(&status) => Ok(()),
        Some(407) => Err(Error::proxy(format!(
            "the proxy {} wants credentials (407): {}",
            route.shown,
            if route.auth.is_some() {
                "the ones in the proxy URL were refused"
            } else {
                "put them in the proxy URL (http://user:password@host:port)"
            }
        ))),
        Some(status) => Err(Error::proxy(format!(
            "the proxy {} refused the tunnel to {target} with {status}",
            route.shown
        ))),
        None => Err(Error::proxy(format!(
            "the proxy {} answered CONNECT with something that is not HTTP",
            route.shown
        ))),
    }
}

/// The status of an HTTP/1.x answer head (`HTTP/1.1 200 Connection established`).
fn answer_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?;
    if status.len() != 3 {
        return None;
    }
    status.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(auth: bool) -> Route {
        Route {
            authority: "proxy.test:3128".into(),
            shown: "http://proxy.test:3128".into(),
            auth: auth.then(|| HeaderValue::from_static("Basic dTpw")),
        }
    }

    async fn answer(bytes: &[u8], auth: bool) -> (Result<()>, String) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        server.write_all(bytes).await.unwrap();
        // The proxy has said all it will: the client sees the end after it.
        server.shutdown().await.unwrap();
        let result = tunnel(&mut client, "platos.test:443", &route(auth)).await;
        drop(client);
        let mut sent = String::new();
        server.read_to_string(&mut sent).await.unwrap();
        (result, sent)
    }

    #[tokio::test]
    async fn a_tunnel_is_asked_with_credentials_and_its_answer_read_exactly() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\nTLS-BYTES")
            .await
            .unwrap();
        tunnel(&mut client, "platos.test:443", &route(true))
            .await
            .unwrap();
        // What follows the blank line is the tunnel's, untouched.
        let mut rest = [0u8; 9];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TLS-BYTES");
        drop(client);
        let mut sent = String::new();
        server.read_to_string(&mut sent).await.unwrap();
        assert_eq!(
            sent,
            "CONNECT platos.test:443 HTTP/1.1\r\nHost: platos.test:443\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn refusals_are_typed_and_name_the_proxy_without_credentials() {
        let (result, sent) =
            answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", false).await;
        assert!(!sent.contains("Proxy-Authorization"));
        let e = result.unwrap_err();
        assert_eq!(e.kind(), "proxy");
        assert!(!e.is_retryable());
        assert!(e.message().contains("http://proxy.test:3128"), "{e}");
        assert!(e.message().contains("407"), "{e}");

        let (result, _) = answer(b"HTTP/1.1 407 No\r\n\r\n", true).await;
        assert!(result.unwrap_err().message().contains("refused"));

        let (result, _) = answer(b"HTTP/1.1 502 Bad Gateway\r\n\r\n", false).await;
        assert!(result.unwrap_err().message().contains("502"));

        let (result, _) = answer(b"SSH-2.0-OpenSSH\r\n\r\n", false).await;
        assert_eq!(result.unwrap_err().kind(), "proxy");

        // A proxy that hangs up mid-answer: a network error, not a panic.
        let (result, _) = answer(b"HTTP/1.1 200", false).await;
        assert_eq!(result.unwrap_err().kind(), "network");

        // Endless headers are cut at the limit.
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_ANSWER_BYTES + 10));
        let (result, _) = answer(&endless, false).await;
        assert!(result.unwrap_err().message().contains("more than"));
    }

    #[test]
    fn explicit_urls_are_checked_without_echoing_them() {
        for bad in ["not a url", "ftp://u:hunter2@proxy:21", "http://u:hunter2@"] {
            let e = Proxies::new(ProxyChoice::Url(Secret::new(bad))).unwrap_err();
            assert_eq!(e.kind(), "config");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let ok =
            Proxies::new(ProxyChoice::Url(Secret::new("http://u:hunter2@proxy:3128"))).unwrap();
        assert!(!format!("{ok:?}").contains("hunter2"));
        let route = ok
            .route(&"https://platos.test/".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(route.authority, "proxy:3128");
        assert_eq!(route.shown, "http://proxy:3128");
        assert!(route.auth.is_some());
        assert!(
            Proxies::new(ProxyChoice::Off)
                .unwrap()
                .route(&"https://platos.test/".parse().unwrap())
                .unwrap()
                .is_none()
        );
    }
}

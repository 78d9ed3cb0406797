//! How the SDK reaches the server: one network configuration (TLS, proxy,
//! the caller's own HTTP client) that both builders gather and every lane
//! uses. REST and the HTTP turn lane go through reqwest configured here; the
//! realtime socket's connection is opened here too (TCP, a proxy tunnel,
//! TLS), so the two can never disagree about roots or proxies.

#[cfg(feature = "realtime")]
use std::pin::Pin;
#[cfg(feature = "realtime")]
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(feature = "realtime")]
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
#[cfg(feature = "realtime")]
use tokio::net::TcpStream;

use crate::config::Secret;
use crate::error::{Error, Result};
use crate::proxy::{Proxies, ProxyChoice};
use crate::tls::{Identity, Tls};

/// What a builder was told about the network.
#[derive(Clone, Default)]
pub(crate) struct NetOptions {
    pub(crate) extra_roots: Vec<Vec<u8>>,
    pub(crate) identity: Option<Identity>,
    pub(crate) proxy: ProxyChoice,
    pub(crate) http_client: Option<reqwest::Client>,
}

impl NetOptions {
    pub(crate) fn client_identity(&mut self, cert_pem: Vec<u8>, key_pem: Secret) {
        self.identity = Some(Identity { cert_pem, key_pem });
    }

    /// Checks everything (certificates, keys, the proxy URL) and builds the
    /// HTTP client, unless the caller brought one.
    pub(crate) fn build(self, connect_timeout: Duration) -> Result<Net> {
        let tls = Tls::new(&self.extra_roots, self.identity.as_ref())?;
        let proxies = Proxies::new(self.proxy)?;
        let own_client = self.http_client.is_none();
        let http = match self.http_client {
            Some(client) => client,
            None => {
                let builder = tls
                    .configure_http(reqwest::Client::builder())
                    .connect_timeout(connect_timeout)
                    // reqwest strips `Authorization` on a cross-origin
                    // redirect but would forward the session token, user
                    // token and scope headers; the API never redirects, so
                    // a 3xx surfaces as a refusal instead.
                    .redirect(reqwest::redirect::Policy::none());
                proxies
                    .configure_http(builder)?
                    .build()
                    .map_err(|e| Error::config(format!("building the HTTP client: {e}")))?
            }
        };
        Ok(Net {
            tls,
            proxies,
            http,
            own_client,
        })
    }
}

impl std::fmt::Debug for NetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetOptions")
            .field("extra_roots", &self.extra_roots.len())
            .field("identity", &self.identity.is_some())
            .field("proxy", &self.proxy)
            .field("http_client", &self.http_client.is_some())
            .finish()
    }
}

/// The checked network configuration of a client.
#[derive(Clone)]
pub(crate) struct Net {
    // Read by the realtime socket's dialer; REST has them in its client.
    #[cfg_attr(not(feature = "realtime"), allow(dead_code))]
    tls: Tls,
    proxies: Proxies,
    pub(crate) http: reqwest::Client,
    /// The SDK built `http` (with `proxies`); false when the caller handed
    /// in a client, whose proxy settings the SDK does not know.
    own_client: bool,
}

impl Net {
    /// The proxy REST calls to `base_url` go through, for error messages.
    pub(crate) fn rest_proxy_shown(&self, base_url: &str) -> Option<String> {
        self.own_client
            .then(|| self.proxies.shown_for(base_url))
            .flatten()
    }
}

/// A connection the SDK opened itself (the realtime socket's).
#[cfg(feature = "realtime")]
pub(crate) enum NetStream {
    Plain(TcpStream),
    Tls(Box<crate::tls::Stream>),
}

#[cfg(feature = "realtime")]
impl Net {
    /// Opens a connection to `host:port`, through the proxy the rules pick
    /// for `scheme://host` and with TLS when `tls` is set. Errors say which
    /// hop failed; a refused certificate or proxy is not worth retrying and
    /// comes back as `Err((error, false))`.
    pub(crate) async fn connect(
        &self,
        host: &str,
        port: u16,
        tls: bool,
    ) -> std::result::Result<NetStream, (Error, bool)> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let scheme = if tls { "https" } else { "http" };
        let uri: http::Uri = format!("{scheme}://{target}/").parse().map_err(|e| {
            (
                Error::config(format!("bad realtime host `{host}`: {e}")),
                false,
            )
        })?;
        let route = self.proxies.route(&uri).map_err(|e| (e, false))?;
        let tcp = match &route {
            None => TcpStream::connect(&target).await.map_err(|e| {
                let msg = format!("connecting to {target} failed: {e}");
                (Error::network(msg, Some(Box::new(e))), true)
            })?,
            Some(proxy) => {
                let mut tcp = TcpStream::connect(&proxy.authority).await.map_err(|e| {
                    let msg = format!("connecting to the proxy {} failed: {e}", proxy.shown);
                    (Error::network(msg, Some(Box::new(e))), true)
                })?;
                crate::proxy::tunnel(&mut tcp, &target, proxy)
                    .await
                    .map_err(|e| {
                        let retry = e.is_retryable();
                        (e, retry)
                    })?;
                tcp
            }
        };
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok(NetStream::Plain(tcp));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.tls.connect(host, tcp).await {
            Ok(stream) => Ok(NetStream::Tls(Box::new(stream))),
            Err(e) if crate::tls::is_refusal(&e) => Err((
                Error::network(
                    format!("the TLS handshake with {target} was refused: {e}"),
                    Some(Box::new(e)),
                ),
                false,
            )),
            Err(e) => Err((
                Error::network(
                    format!("the TLS handshake with {target} failed: {e}"),
                    Some(Box::new(e)),
                ),
                true,
            )),
        }
    }
}

#[cfg(feature = "realtime")]
impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

#[cfg(feature = "realtime")]
impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

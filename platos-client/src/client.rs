//! [`PlatosClient`] and its builder.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Auth, DEFAULT_REFRESH_TIMEOUT, RefreshContext, Refresher, refresher};
#[cfg(feature = "realtime")]
use crate::config::ReconnectConfig;
use crate::config::{RetryConfig, Scope, Secret};
use crate::error::{BoxError, Error, Result};
#[cfg(feature = "realtime")]
use crate::net::Net;
use crate::net::NetOptions;
use crate::proxy::ProxyChoice;
use crate::transport::Inner;

/// The default per-try timeout (docs/wire.md §2).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The realtime namespace served by current gateways.
pub const DEFAULT_NAMESPACE: &str = "/agent";
/// Events buffered between the socket task and a slow consumer by default.
#[cfg(feature = "realtime")]
pub const DEFAULT_STREAM_BUFFER: usize = 1024;
/// The `User-Agent` every request carries.
pub const USER_AGENT: &str = concat!("platos-client-rust/", env!("CARGO_PKG_VERSION"));

/// Settings shared by every handle of one client and by its streams.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) auth: Auth,
    pub(crate) retry: RetryConfig,
    #[cfg(feature = "realtime")]
    pub(crate) reconnect: ReconnectConfig,
    /// One try of a REST call.
    pub(crate) timeout: Duration,
    pub(crate) user_agent: String,
    #[cfg(feature = "realtime")]
    pub(crate) namespace: String,
    pub(crate) idempotency_keys: bool,
    #[cfg(feature = "realtime")]
    pub(crate) stream_buffer: usize,
    pub(crate) max_response_bytes: u64,
    /// The realtime lanes open their connections with these settings.
    #[cfg(feature = "realtime")]
    pub(crate) net: Net,
    /// The REST lane's client (the SDK's own, or the one the caller handed in).
    pub(crate) http: reqwest::Client,
    /// The proxy REST calls go through, for error messages.
    pub(crate) proxy_shown: Option<String>,
    /// The realtime connections of this client and its clones.
    #[cfg(feature = "realtime")]
    pub(crate) realtime: crate::realtime::Pool,
}

/// A Platos client. Cheap to clone; clones share connections, settings and
/// the current session token.
///
/// ```no_run
/// # async fn demo() -> platos_client::Result<()> {
/// let client = platos_client::PlatosClient::builder()
///     .base_url("https://platos.example.com")
///     .session_token("<minted by your backend>")
///     .build()?;
/// for agent in client.agents().list().send().await? {
///     println!("{:?}", agent.name);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PlatosClient {
    inner: Arc<Inner>,
}

impl PlatosClient {
    /// Starts configuring a client.
    pub fn builder() -> PlatosClientBuilder {
        PlatosClientBuilder::default()
    }

    /// A handle whose calls act in `scope` instead of the default scope.
    /// Shares everything else (connections, token, settings) with `self`.
    pub fn with_scope(&self, scope: Scope) -> Self {
        PlatosClient {
            inner: Arc::new(Inner {
                shared: self.shared().clone(),
                scope: Some(scope),
                call_timeout: self.inner().call_timeout,
            }),
        }
    }

    /// A handle whose REST calls each end within `timeout`, their retries
    /// and waits between tries included: a call still unanswered then fails
    /// with [`Error::Timeout`]. Overrides the builder's
    /// [`call_timeout`](PlatosClientBuilder::call_timeout) for the calls made
    /// through the returned handle (a call's own `.timeout(..)` still wins);
    /// shares everything else with `self`. Streams (turns) are not REST
    /// calls: their limits are in [`RealtimeConfig`](crate::RealtimeConfig).
    pub fn with_call_timeout(&self, timeout: Duration) -> Self {
        PlatosClient {
            inner: Arc::new(Inner {
                shared: self.shared().clone(),
                scope: self.inner().scope.clone(),
                call_timeout: Some(timeout),
            }),
        }
    }

    /// The base URL calls go to (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.shared().base_url
    }

    /// The scope calls made through this handle act in.
    pub fn scope(&self) -> Option<&Scope> {
        self.inner().scope.as_ref()
    }

    /// The session token now in force (after any refresh); `None` in api-key mode.
    pub fn session_token(&self) -> Option<Secret> {
        self.shared().auth.session_token()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner().shared
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.shared().http
    }
}

impl fmt::Debug for PlatosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatosClient")
            .field("base_url", &self.shared().base_url)
            .field("auth", &self.shared().auth)
            .field("scope", &self.inner().scope)
            .finish_non_exhaustive()
    }
}

/// Configures a [`PlatosClient`]. Every setting but the base URL and one
/// credential has a default.
#[derive(Default)]
#[must_use]
pub struct PlatosClientBuilder {
    base_url: Option<String>,
    session_token: Option<Secret>,
    api_key: Option<Secret>,
    scope: Option<Scope>,
    refresher: Option<Refresher>,
    refresh_timeout: Option<Duration>,
    retry: Option<RetryConfig>,
    #[cfg(feature = "realtime")]
    reconnect: Option<ReconnectConfig>,
    timeout: Option<Duration>,
    call_timeout: Option<Duration>,
    user_agent: Option<String>,
    #[cfg(feature = "realtime")]
    namespace: Option<String>,
    idempotency_keys: Option<bool>,
    #[cfg(feature = "realtime")]
    stream_buffer: Option<usize>,
    max_response_bytes: Option<u64>,
    net: NetOptions,
    #[cfg(feature = "realtime")]
    realtime: Option<crate::realtime::RealtimeConfig>,
}

impl PlatosClientBuilder {
    /// Where Platos runs, e.g. `https://platos.example.com`. A trailing `/`
    /// is dropped; a path prefix is kept.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Authenticate with a session token minted by your backend (recommended).
    pub fn session_token(mut self, token: impl Into<Secret>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// Authenticate server-to-server with an api key; requires a [`scope`](Self::scope).
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The default scope of every call (per-call: [`PlatosClient::with_scope`]).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Called when the server refuses the session token (401/403, or an
    /// expired token on the realtime socket). Return `Ok(Some(new_token))`
    /// to replay the call with it; `Ok(None)` lets the refusal stand.
    /// Concurrent refusals share one call.
    pub fn on_token_refresh<F, Fut, E>(mut self, callback: F) -> Self
    where
        F: Fn(RefreshContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Option<String>, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.refresher = Some(refresher(callback));
        self
    }

    /// How long `on_token_refresh` may take (default 30 s). A refresh that
    /// takes longer has failed: the calls waiting on it fail with their auth
    /// error, and the next refusal asks again.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = Some(timeout);
        self
    }

    /// Retry policy for REST calls.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Reconnect policy for realtime streams.
    #[cfg(feature = "realtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
    pub fn reconnect(mut self, reconnect: ReconnectConfig) -> Self {
        self.reconnect = Some(reconnect);
        self
    }

    /// Time limit of one try of a REST call (default 30 s), and of
    /// opening a connection. A call is tried up to
    /// `1 + RetryConfig::max_retries` times; bound the whole call with
    /// [`call_timeout`](Self::call_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Time limit of a whole REST call, every try and every wait between
    /// tries included (default: none beyond the tries' own limits). A call
    /// past it fails with [`Error::Timeout`]; a retry that could not finish
    /// in the time left is not started. Per handle:
    /// [`PlatosClient::with_call_timeout`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// Replaces the `User-Agent` (default `platos-client-rust/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The realtime namespace (default `/agent`).
    #[cfg(feature = "realtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
    pub fn realtime_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Whether POST/PATCH calls carry an auto-minted `idempotency-key`
    /// (default on). Without one they are sent once, never retried.
    pub fn idempotency_keys(mut self, enabled: bool) -> Self {
        self.idempotency_keys = Some(enabled);
        self
    }

    /// How realtime turns share connections (see [`crate::RealtimeConfig`]).
    #[cfg(feature = "realtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
    pub fn realtime(mut self, config: crate::realtime::RealtimeConfig) -> Self {
        self.realtime = Some(config);
        self
    }

    /// How many events a realtime stream buffers for its consumer (default
    /// 1024; on the socket lane also bounded by
    /// [`RealtimeConfig::turn_buffer_bytes`](crate::RealtimeConfig::turn_buffer_bytes)).
    /// A full buffer slows the reading rather than losing events
    /// (docs/realtime.md §5).
    #[cfg(feature = "realtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
    pub fn stream_buffer(mut self, events: usize) -> Self {
        self.stream_buffer = Some(events);
        self
    }

    /// The largest success answer a REST call reads (default 16 MiB); a
    /// larger one fails the call with a decode error naming the limit, and
    /// the rest is not read. Error answers are read up to 64 KiB.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = Some(bytes);
        self
    }

    /// Trusts an extra root certificate (PEM, possibly several, or DER) on
    /// every lane, beside the platform's roots. Checked by
    /// [`build`](Self::build).
    pub fn add_root_certificate(mut self, pem_or_der: impl Into<Vec<u8>>) -> Self {
        self.net.extra_roots.push(pem_or_der.into());
        self
    }

    /// Presents this client certificate (mutual TLS) on every lane: the
    /// certificate chain and its private key (PKCS#8, or with rustls also
    /// PKCS#1 or SEC1), both PEM. Checked by [`build`](Self::build).
    pub fn client_identity(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        private_key_pem: impl Into<Secret>,
    ) -> Self {
        self.net
            .client_identity(cert_chain_pem.into(), private_key_pem.into());
        self
    }

    /// Sends every connection (REST, the realtime socket, the HTTP turn
    /// lane) through this proxy, e.g. `http://user:password@proxy:3128`,
    /// instead of what `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`
    /// say (the default, read as reqwest reads them). The realtime socket
    /// tunnels with HTTP `CONNECT`, so it needs an `http://` proxy.
    /// A malformed URL fails [`build`](Self::build).
    pub fn proxy(mut self, url: impl Into<Secret>) -> Self {
        self.net.proxy = ProxyChoice::Url(url.into());
        self
    }

    /// Connects directly on every lane, whatever the proxy variables say.
    pub fn no_proxy(mut self) -> Self {
        self.net.proxy = ProxyChoice::Off;
        self
    }

    /// Sends REST calls and HTTP-lane turns with this client, e.g. the one
    /// your application already configured (pools, DNS, middleware-free
    /// settings). The SDK still adds its headers to every request, sets each
    /// try's timeout, retries, and bounds what it reads.
    ///
    /// The client must not follow redirects (build it with
    /// `redirect(reqwest::redirect::Policy::none())`): the SDK's headers
    /// carry credentials a redirect would forward. This builder's TLS
    /// ([`add_root_certificate`](Self::add_root_certificate),
    /// [`client_identity`](Self::client_identity)) and proxy settings then
    /// apply only to the realtime socket, which the SDK opens itself.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.net.http_client = Some(client);
        self
    }

    /// Checks the configuration and builds the client. Fails, before
    /// anything is sent, on a missing base URL, a missing or double
    /// credential, or api-key mode without a complete scope.
    pub fn build(self) -> Result<PlatosClient> {
        let base_url = crate::config::base_url(self.base_url)?;

        // Checked here: the transport would otherwise send no User-Agent at all.
        if let Some(ua) = &self.user_agent
            && http::HeaderValue::from_str(ua).is_err()
        {
            return Err(Error::config(
                "the user agent is not a valid HTTP header value",
            ));
        }

        let refresh_ignored = self.api_key.is_some() && self.refresher.is_some();
        if self.scope.as_ref().is_some_and(|s| !s.is_complete()) {
            return Err(Error::config(
                "scope needs non-empty organizationId, projectId and environmentId",
            ));
        }
        let auth = match (self.session_token, self.api_key) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "give either a session token or an api key, not both",
                ));
            }
            (None, None) => {
                return Err(Error::config(
                    "a credential is required: a session token or an api key",
                ));
            }
            (Some(token), None) if token.expose().trim().is_empty() => {
                return Err(Error::config("the session token is empty"));
            }
            (Some(token), None) => Auth::session(
                token,
                self.refresher,
                self.refresh_timeout.unwrap_or(DEFAULT_REFRESH_TIMEOUT),
            ),
            (None, Some(key)) if key.expose().trim().is_empty() => {
                return Err(Error::config("the api key is empty"));
            }
            (None, Some(key)) => {
                if self.scope.is_none() {
                    return Err(Error::config(
                        "api-key mode needs a scope (organizationId, projectId, environmentId)",
                    ));
                }
                Auth::api_key(key)
            }
        };
        if refresh_ignored {
            tracing::debug!("token refresh is ignored in api-key mode");
        }

        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let net = self.net.build(timeout)?;
        let http = net.http.clone();
        let proxy_shown = net.rest_proxy_shown(&base_url);

        #[cfg(feature = "realtime")]
        let mut namespace = self
            .namespace
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        #[cfg(feature = "realtime")]
        if !namespace.starts_with('/') {
            namespace.insert(0, '/');
        }

        let shared = Arc::new(Shared {
            base_url,
            auth,
            retry: self.retry.unwrap_or_default(),
            #[cfg(feature = "realtime")]
            reconnect: self.reconnect.unwrap_or_default(),
            timeout,
            user_agent: self.user_agent.unwrap_or_else(|| USER_AGENT.to_owned()),
            #[cfg(feature = "realtime")]
            namespace,
            idempotency_keys: self.idempotency_keys.unwrap_or(true),
            #[cfg(feature = "realtime")]
            stream_buffer: self.stream_buffer.unwrap_or(DEFAULT_STREAM_BUFFER).max(1),
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(crate::body::DEFAULT_MAX_RESPONSE_BYTES),
            #[cfg(feature = "realtime")]
            net,
            http,
            proxy_shown,
            #[cfg(feature = "realtime")]
            realtime: crate::realtime::Pool::new(self.realtime.unwrap_or_default()),
        });
        Ok(PlatosClient {
            inner: Arc::new(Inner {
                shared,
                scope: self.scope,
                call_timeout: self.call_timeout,
            }),
        })
    }
}

impl fmt::Debug for PlatosClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatosClientBuilder")
            .field("base_url", &self.base_url)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("scope", &self.scope)
            .field("refresh", &self.refresher.is_some())
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

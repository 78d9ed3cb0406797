//! The V1 (core-api) operator client.
//!
//! A separate client from [`crate::PlatosClient`]: the V1 routes are the
//! operator control plane, authenticated with an operator credential sent as
//! `Authorization: Bearer <token>` (never the end-user
//! `X-Platos-Session-Token`). Today it carries the resumable event streams
//! ([`V1Client::environment_streams`], docs/v1-stream.md); the generated V1
//! REST operations attach to the same client.
//!
//! ```no_run
//! use futures::StreamExt;
//! use platos_client::v1::V1Client;
//!
//! # async fn run() -> platos_client::Result<()> {
//! let client = V1Client::builder()
//!     .base_url("https://platos.example.com")
//!     .operator_token("<operator credential>")
//!     .build()?;
//! let mut stream = client
//!     .environment_streams()
//!     .read("env_1", "turn-7")
//!     .open()?;
//! while let Some(frame) = stream.next().await {
//!     let frame = frame?;
//!     println!("{} #{}: {:?}", frame.t, frame.seq, frame.fields);
//! }
//! println!("ended: {:?}", stream.end());
//! # Ok(()) }
//! ```

mod frame;
mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};

use crate::client::{DEFAULT_TIMEOUT, USER_AGENT as DEFAULT_USER_AGENT};
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::tls::Tls;
use crate::transport::{error_from_response, transport_error};

pub use frame::{Frame, FrameType, StreamMeta};
pub use stream::{
    Admission, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_RECONNECTS, EventStream,
    ReadEventStream, ReaderEvent, StreamEnd, StreamPosition,
};

/// The V1 operator client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct V1Client {
    shared: Arc<Shared>,
}

struct Shared {
    base_url: String,
    operator_token: Option<Secret>,
    user_agent: HeaderValue,
    http: reqwest::Client,
}

impl V1Client {
    /// Starts configuring a client.
    pub fn builder() -> V1ClientBuilder {
        V1ClientBuilder::default()
    }

    /// The base URL calls go to (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// `environmentStreams`: read an environment's journaled event streams.
    pub fn environment_streams(&self) -> EnvironmentStreams {
        EnvironmentStreams {
            client: self.clone(),
        }
    }

    /// Sends one event-stream request (docs/v1-stream.md, "Request"):
    /// `GET` with `accept: text/event-stream`, the operator credential and,
    /// when resuming, `last-event-id`. A non-2xx answer is read into the
    /// one [`Error`] (the V1 envelope reachable through [`Error::refusal`]).
    async fn open_event_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<stream::Opened> {
        let url = format!("{}{}", self.shared.base_url, path);
        let mut request = self
            .shared
            .http
            .get(url)
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .header(USER_AGENT, self.shared.user_agent.clone());
        if let Some(token) = &self.shared.operator_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| Error::config("the operator token is not a valid header value"))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(cursor) = last_event_id {
            let value = HeaderValue::from_str(cursor).map_err(|_| {
                Error::config("the resume cursor cannot be sent as a Last-Event-ID header")
            })?;
            request = request.header("last-event-id", value);
        }
        let response = request.send().await.map_err(transport_error)?;
        if !response.status().is_success() {
            return Err(error_from_response(response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = futures::stream::unfold(Some(response), |response| async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(response))),
                Ok(None) => None,
                // One error ends the body: nothing is read after it.
                Err(e) => Some((Err(transport_error(e)), None)),
            }
        });
        Ok(stream::Opened {
            content_type,
            body: Box::pin(body),
        })
    }
}

impl fmt::Debug for V1Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V1Client")
            .field("base_url", &self.shared.base_url)
            .field("operator_token", &self.shared.operator_token)
            .finish_non_exhaustive()
    }
}

/// Configures a [`V1Client`].
#[derive(Default)]
#[must_use]
pub struct V1ClientBuilder {
    base_url: Option<String>,
    operator_token: Option<Secret>,
    connect_timeout: Option<Duration>,
    user_agent: Option<String>,
    extra_root_certs: Vec<Vec<u8>>,
}

impl V1ClientBuilder {
    /// Where Platos runs, e.g. `https://platos.example.com`. A trailing `/`
    /// is dropped; a path prefix is kept.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The operator credential, sent as `Authorization: Bearer <token>`.
    /// Without one, requests carry no credential (the server refuses them
    /// unless something in between authenticates the caller).
    pub fn operator_token(mut self, token: impl Into<Secret>) -> Self {
        self.operator_token = Some(token.into());
        self
    }

    /// Time limit for establishing a connection (default 30 s). An open
    /// event stream has no overall limit; see
    /// [`ReadEventStream::idle_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Replaces the `User-Agent` (default `platos-client-rust/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Trusts an extra root certificate (PEM or DER).
    pub fn add_root_certificate(mut self, pem_or_der: impl Into<Vec<u8>>) -> Self {
        self.extra_root_certs.push(pem_or_der.into());
        self
    }

    /// Checks the configuration and builds the client; nothing is sent.
    pub fn build(self) -> Result<V1Client> {
        let raw_url = self
            .base_url
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| Error::config("a base URL is required"))?;
        let base_url = raw_url.trim().trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base_url)
            .map_err(|e| Error::config(format!("base URL `{base_url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::config(format!(
                "base URL `{base_url}` must start with http:// or https://"
            )));
        }
        if self
            .operator_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(Error::config("the operator token is empty"));
        }
        let user_agent =
            HeaderValue::from_str(self.user_agent.as_deref().unwrap_or(DEFAULT_USER_AGENT))
                .map_err(|_| Error::config("the user agent is not a valid HTTP header value"))?;
        let tls = Tls::new(&self.extra_root_certs)?;
        let http = tls.http_client(self.connect_timeout.unwrap_or(DEFAULT_TIMEOUT))?;
        Ok(V1Client {
            shared: Arc::new(Shared {
                base_url,
                operator_token: self.operator_token,
                user_agent,
                http,
            }),
        })
    }
}

impl fmt::Debug for V1ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V1ClientBuilder")
            .field("base_url", &self.base_url)
            .field("operator_token", &self.operator_token)
            .finish_non_exhaustive()
    }
}

/// `client.environment_streams()`: the journaled event streams of an
/// environment.
#[derive(Debug, Clone)]
pub struct EnvironmentStreams {
    client: V1Client,
}

impl EnvironmentStreams {
    /// `GET /api/v1/environments/{environmentId}/streams/{streamId}` as a
    /// resumable stream of frames. Returns options; nothing is sent until
    /// the stream from [`ReadEventStream::open`] is first polled.
    pub fn read(
        &self,
        environment_id: impl Into<String>,
        stream_id: impl Into<String>,
    ) -> ReadEventStream {
        ReadEventStream::new(self.client.clone(), environment_id.into(), stream_id.into())
    }
}

/// Builds a V1 path from a template's literal parts and its parameters,
/// each percent-encoded as one segment (like `encodeURIComponent`). An empty
/// parameter, `.` or `..` would name another route: refused before sending.
pub(crate) fn v1_path(parts: &[(&str, Option<(&str, &str)>)]) -> Result<String> {
    // Everything but the unreserved characters `encodeURIComponent` keeps.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    let mut path = String::new();
    for (literal, param) in parts {
        path.push_str(literal);
        if let Some((name, value)) = param {
            if value.is_empty() || *value == "." || *value == ".." {
                return Err(Error::config(format!(
                    "path parameter {name} is required and must not be empty, `.` or `..`"
                )));
            }
            path.extend(percent_encoding::utf8_percent_encode(value, SEGMENT));
        }
    }
    Ok(path)
}

/// The connection seam of the reader: the real one is an HTTP request;
/// unit tests script connections without sockets.
pub(crate) type Connect =
    Arc<dyn Fn(Option<String>) -> BoxFuture<'static, Result<stream::Opened>> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_segments_and_refuse_empty_ones() {
        let path = v1_path(&[
            ("/api/v1/environments/", Some(("environmentId", "env 1/ü"))),
            ("/streams/", Some(("streamId", "turn-7.a~b"))),
        ])
        .expect("valid");
        assert_eq!(
            path,
            "/api/v1/environments/env%201%2F%C3%BC/streams/turn-7.a~b"
        );
        for bad in ["", ".", ".."] {
            let err = v1_path(&[("/x/", Some(("streamId", bad)))]).unwrap_err();
            assert!(matches!(err, Error::Config(_)));
            assert!(err.message().contains("streamId"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_operator_token() {
        let builder = V1Client::builder()
            .base_url("http://127.0.0.1:1/")
            .operator_token("op-secret-123");
        assert!(!format!("{builder:?}").contains("op-secret-123"));
        let client = builder.build().expect("valid");
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
        let shown = format!("{client:?}");
        assert!(!shown.contains("op-secret-123"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn build_refuses_bad_configuration() {
        assert!(V1Client::builder().build().is_err());
        assert!(V1Client::builder().base_url("ftp://x").build().is_err());
        assert!(
            V1Client::builder()
                .base_url("http://x")
                .operator_token("  ")
                .build()
                .is_err()
        );
    }
}

//! Every REST wire decision, in one place.
//!
//! A generated request builds its URL and body and hands them to
//! [`PlatosClient::call`] here, which sends them through `execute` (the
//! headers of docs/wire.md §1.1, the idempotency key of §2, retries per §2,
//! the token refresh of §1.3) and reads the answer, all within the call's
//! [`CallOptions`]; the `finish` functions then decode it (or make a decode
//! error keeping the status); a refusal is a classified [`Error`]. Only the
//! decode is generic over the answer's type: every operation shares one
//! sending future, which keeps the crate's compiled code small. Namespaces
//! never touch HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::PlatosClient;
use crate::auth::Mode;
use crate::client::Shared;
use crate::config::{Scope, Secret};
use crate::error::{ApiError, Error, Result};
use crate::request::{CallOptions, Operation};
use crate::retry::{self, Idempotency};
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
use crate::auth::SESSION_TOKEN;

/// The state the generated client carries: shared settings plus the scope
/// of this handle (a per-call scope makes a new handle, not a new client).
#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) scope: Option<Scope>,
    /// The limit of a whole call made through this handle.
    pub(crate) call_timeout: Option<std::time::Duration>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("base_url", &self.shared.base_url)
            .field("auth", &self.shared.auth)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Inner {
    /// Fails when api-key mode has no complete scope to send.
    pub(crate) fn check_scope(&self) -> Result<()> {
        let complete = self.scope.as_ref().is_some_and(Scope::is_complete);
        if matches!(self.shared.auth.mode(), Mode::ApiKey(_)) && !complete {
            return Err(Error::config(
                "api-key mode needs a scope with organizationId, projectId and environmentId",
            ));
        }
        Ok(())
    }
}

impl Inner {
    /// The auth and scope headers, set on a request (without collecting them
    /// first: this runs on every try).
    fn set_auth_headers(&self, request: &mut reqwest::Request, token: Option<&Secret>) {
        crate::auth::each_header(
            self.shared.auth.mode(),
            token,
            self.scope.as_ref(),
            |name, value| set_header(request, name, value),
        );
    }
}

fn set_header(request: &mut reqwest::Request, name: &'static str, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(mut v) => {
            if name == SESSION_TOKEN || name == "authorization" || name == "x-platos-user-token" {
                v.set_sensitive(true);
            }
            request
                .headers_mut()
                .insert(HeaderName::from_static(name), v);
        }
        // A value with control characters cannot be sent; the server then
        // answers as if it were absent, which is the honest outcome.
        Err(_) => tracing::warn!(header = name, "header value is not valid HTTP; not sent"),
    }
}

/// A call's answer read whole (or its body left unread when the caller
/// needs none): what a generated call decodes, without awaiting anything.
pub(crate) struct Fetched {
    pub(crate) status: u16,
    /// The server answered from its record of the idempotency key (V1).
    #[cfg(feature = "v1")]
    pub(crate) replayed: bool,
    pub(crate) body: Bytes,
}

/// What a call came back with: a 2xx answer, its body not yet read.
pub(crate) struct Answer {
    response: reqwest::Response,
    limit: u64,
}

impl Answer {
    pub(crate) fn new(response: reqwest::Response, limit: u64) -> Self {
        Answer { response, limit }
    }

    pub(crate) fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// The body, up to the client's `max_response_bytes`.
    async fn bytes(self) -> Result<(u16, Bytes)> {
        let status = self.status();
        let too_large = || {
            let big = crate::body::BodyTooLarge {
                limit: self.limit,
                status,
            };
            Error::decode(Some(status), ".", big.to_string(), b"")
        };
        if self
            .response
            .content_length()
            .is_some_and(|n| n > self.limit)
        {
            return Err(too_large());
        }
        let mut response = self.response;
        let mut first: Option<Bytes> = None;
        let mut more = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let seen = first.as_ref().map_or(0, Bytes::len) + more.len() + chunk.len();
            if seen as u64 > self.limit {
                return Err(too_large());
            }
            match &first {
                None => first = Some(chunk),
                Some(_) => more.extend_from_slice(&chunk),
            }
        }
        let body = match first {
            None => Bytes::new(),
            Some(first) if more.is_empty() => first,
            Some(first) => {
                let mut all = BytesMut::with_capacity(first.len() + more.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&more);
                all.freeze()
            }
        };
        Ok((status, body))
    }

    /// Reads the answer whole within the client's `max_response_bytes`, or
    /// drops an unneeded body unread.
    pub(crate) async fn fetch(self, read_body: bool) -> Result<Fetched> {
        #[cfg(feature = "v1")]
        let replayed = self
            .response
            .headers()
            .get(REPLAYED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let (status, body) = if read_body {
            self.bytes().await?
        } else {
            (self.status(), Bytes::new())
        };
        Ok(Fetched {
            status,
            #[cfg(feature = "v1")]
            replayed,
            body,
        })
    }

    /// The body as JSON, `null` when empty (a V1 `raw` call's answer).
    #[cfg(feature = "v1")]
    pub(crate) async fn finish_json(self) -> Result<serde_json::Value> {
        let (status, body) = self.bytes().await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        decode(Some(status), &body)
    }
}

/// The header an idempotent replay is marked with (V1, docs/v1.md).
#[cfg(feature = "v1")]
const REPLAYED: &str = "idempotency-replayed";

// What a generated call's answer becomes. Only these (and `decode`) are
// generic over the answer's type: the sending and reading before them is
// one state machine every operation shares (`PlatosClient::call`).

/// The main client's answers: the value alone.
pub(crate) fn finish<T: DeserializeOwned>(fetched: Fetched) -> Result<T> {
    decode(Some(fetched.status), &fetched.body)
}

/// An envelope (a list's page), an empty body read as `{}`: an older
/// server's way of saying "empty list" (every envelope field is optional).
pub(crate) fn finish_envelope<T: DeserializeOwned>(fetched: Fetched) -> Result<T> {
    if fetched.body.iter().all(u8::is_ascii_whitespace) {
        return decode(Some(fetched.status), b"{}");
    }
    decode(Some(fetched.status), &fetched.body)
}

/// An answer without a body the caller needs.
pub(crate) fn finish_unit(_: Fetched) -> Result<()> {
    Ok(())
}

impl PlatosClient {
    /// One generated call, whole: sent (headers, key, retries, refresh) and
    /// its answer read, all within the call's own deadline. Every operation
    /// runs this one (non-generic) future; only its decode is per type.
    pub(crate) async fn call(
        &self,
        prepared: Result<crate::request::Prepared<Idempotency>>,
        options: &CallOptions,
        read_body: bool,
    ) -> Result<Fetched> {
        let prepared = prepared?;
        crate::request::deadline(options.deadline, async {
            let answer = self
                .execute(prepared.operation, prepared.url, prepared.body, options)
                .await?;
            answer.fetch(read_body).await
        })
        .await
    }
}

impl PlatosClient {
    /// Sends one generated call: its URL and body, the operation it is,
    /// and the call's own options.
    pub(crate) async fn execute(
        &self,
        operation: &'static Operation<Idempotency>,
        url: String,
        body: Option<Vec<u8>>,
        options: &CallOptions,
    ) -> Result<Answer> {
        let inner = self.inner();
        inner.check_scope()?;
        let shared = &inner.shared;
        let url = reqwest::Url::parse(&url)
            .map_err(|e| Error::config(format!("the request URL {url:?} is not valid: {e}")))?;
        let mut request = reqwest::Request::new(operation.method.clone(), url);
        let headers = request.headers_mut();
        if operation.json {
            headers.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(body) = body {
            *request.body_mut() = Some(body.into());
        }
        if let Some(key) = &options.idempotency_key {
            set_header(&mut request, IDEMPOTENCY_KEY, key);
        }
        // The call's own deadline wins over the client's.
        let limit = options.deadline.or(inner.call_timeout);
        let proxy = shared.proxy_shown.as_deref();
        let response = self
            .exec_within(request, operation, limit)
            .await
            .map_err(|e| transport_error(e).via_proxy(proxy))?;
        // Routes that answer refusals with HTTP 200 get the status their body names.
        let response =
            if response.status().is_success() && crate::errors_in_200::applies(operation.path) {
                crate::errors_in_200::lift(response, shared.max_response_bytes)
                    .await
                    .map_err(|e| transport_error(e).via_proxy(proxy))?
            } else {
                response
            };
        if !response.status().is_success() {
            return Err(error_from_response(response).await.via_proxy(proxy));
        }
        Ok(Answer::new(response, shared.max_response_bytes))
    }

    /// Sends a built request with the transport's headers, key, retries
    /// and refresh, in one `platos.request` span (operation, method, path
    /// template, then status, attempts and duration: never a header, never
    /// an id).
    pub(crate) async fn exec(
        &self,
        request: reqwest::Request,
        operation: &Operation<Idempotency>,
    ) -> reqwest::Result<reqwest::Response> {
        self.exec_within(request, operation, self.inner().call_timeout)
            .await
    }

    /// [`exec`](Self::exec) with the whole call bounded by `limit`: every
    /// try's timeout is cut to what is left of it, and no wait outlasts it.
    pub(crate) async fn exec_within(
        &self,
        request: reqwest::Request,
        operation: &Operation<Idempotency>,
        limit: Option<std::time::Duration>,
    ) -> reqwest::Result<reqwest::Response> {
        let span = request_span(operation.id, operation.path, request.method());
        let started = std::time::Instant::now();
        let result = self
            .exec_with_retries(request, operation, limit, &span)
            .instrument(span.clone())
            .await;
        record_outcome(&span, &result, started);
        result
    }

    /// [`exec`](Self::exec) for a request built by hand (a stream, `raw`):
    /// a 2xx body is capped at the client's `max_response_bytes` as it is read.
    pub(crate) async fn exec_raw(
        &self,
        request: reqwest::Request,
        operation: &Operation<Idempotency>,
    ) -> Result<reqwest::Response> {
        self.inner().check_scope()?;
        let proxy = self.shared().proxy_shown.as_deref();
        let response = self
            .exec(request, operation)
            .await
            .map_err(|e| transport_error(e).via_proxy(proxy))?;
        if !response.status().is_success() {
            return Ok(response);
        }
        let limit = self.shared().max_response_bytes;
        // A raw call to a route that answers refusals with HTTP 200 is read
        // by the same rule as the generated call (`errors_in_200.rs`).
        if crate::errors_in_200::applies(response.url().path()) {
            return crate::errors_in_200::lift(response, limit)
                .await
                .map_err(|e| transport_error(e).via_proxy(proxy));
        }
        Ok(crate::body::limit_body(response, limit))
    }
}

/// Reports a deprecated route once: a generated call by its operation, a
/// raw call (no path template) by its method and path.
fn note_deprecation(operation: &Operation<Idempotency>, response: &reqwest::Response) {
    if operation.path.is_empty() {
        let path = response.url().path();
        let route = format!("{} {path}", operation.method);
        crate::deprecation::note(operation.id, &route, path, response.headers());
    } else {
        crate::deprecation::note(
            operation.id,
            operation.id,
            operation.path,
            response.headers(),
        );
    }
}

/// The span of one REST call; `status`, `attempts` and `duration_ms` are
/// recorded as they become known.
pub(crate) fn request_span(
    operation: &'static str,
    path: &'static str,
    method: &reqwest::Method,
) -> tracing::Span {
    tracing::info_span!(
        "platos.request",
        operation,
        method = %method,
        path,
        status = tracing::field::Empty,
        attempts = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

/// Records how a call ended on its span.
pub(crate) fn record_outcome(
    span: &tracing::Span,
    result: &reqwest::Result<reqwest::Response>,
    started: std::time::Instant,
) {
    if span.is_disabled() {
        return;
    }
    if let Ok(response) = result {
        span.record("status", response.status().as_u16());
    }
    span.record("duration_ms", started.elapsed().as_millis() as u64);
}

impl PlatosClient {
    async fn exec_with_retries(
        &self,
        mut request: reqwest::Request,
        operation: &Operation<Idempotency>,
        limit: Option<std::time::Duration>,
        span: &tracing::Span,
    ) -> reqwest::Result<reqwest::Response> {
        let inner = self.inner();
        let shared = &inner.shared;
        let config = &shared.retry;
        let http = &shared.http;

        let headers = request.headers_mut();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(ua) = HeaderValue::from_str(&shared.user_agent) {
            headers.insert(reqwest::header::USER_AGENT, ua);
        }
        let mints = operation.rule == Idempotency::Key && shared.idempotency_keys;
        if mints && !request.headers().contains_key(IDEMPOTENCY_KEY) {
            let key = uuid::Uuid::new_v4().to_string();
            set_header(&mut request, IDEMPOTENCY_KEY, &key);
        }
        let replay_safe = retry::is_replay_safe(
            operation.rule,
            request.headers().contains_key(IDEMPOTENCY_KEY),
        );
        // A streamed answer lasts as long as it runs: its reader bounds the
        // wait for the answer's head instead (a reqwest timeout covers the body).
        let streamed = operation.streams;
        // Each try's reqwest timeout covers its body too, so cutting the
        // try's limit to what is left bounds the whole call, body included.
        let deadline = limit
            .filter(|_| !streamed)
            .map(|limit| tokio::time::Instant::now() + limit);
        let remaining =
            || deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));

        let mut refreshed = false;
        let mut retries = 0u32;
        let mut waited = std::time::Duration::ZERO;
        let mut attempts = 0u32;
        loop {
            // Every request sent counts, the replay after a refresh too.
            attempts += 1;
            span.record("attempts", attempts);
            // Read on every try: a retry after another call refreshed the
            // token sends the new one instead of collecting a needless 401.
            let (token, epoch) = shared.auth.session_token_with_epoch();
            // An anonymous route gets no credential, so nothing to refresh either.
            let anonymous = operation.credentials == crate::request::Credentials::Omitted;
            let token = token.filter(|_| !anonymous);
            let mut attempt = match request.try_clone() {
                Some(r) => r,
                // Streaming bodies cannot be replayed: send the original once.
                None => {
                    if !anonymous {
                        inner.set_auth_headers(&mut request, token.as_ref());
                    }
                    if !streamed {
                        *request.timeout_mut() =
                            Some(retry::try_timeout(shared.timeout, remaining()));
                    }
                    return http.execute(request).await;
                }
            };
            if !anonymous {
                inner.set_auth_headers(&mut attempt, token.as_ref());
            }
            if !streamed {
                *attempt.timeout_mut() = Some(retry::try_timeout(shared.timeout, remaining()));
            }
            tracing::debug!(
                operation = operation.id,
                method = %operation.method,
                retries,
                "platos request"
            );
            let result = http.execute(attempt).await;

            let (result, asked) = match result {
                Ok(response) => {
                    note_deprecation(operation, &response);
                    let status = response.status().as_u16();
                    if status == 401 || status == 403 {
                        let refused = token.as_ref().filter(|_| shared.auth.can_refresh());
                        let Some(refused) = refused.filter(|_| !refreshed) else {
                            return Ok(response);
                        };
                        // A 403's code says whether the token or the caller
                        // is refused; only the first can be fixed by a new one.
                        let (response, code) = peek_code(response).await?;
                        if !crate::auth::refresh_may_help(status, code.as_deref()) {
                            tracing::debug!(
                                operation = operation.id,
                                status,
                                ?code,
                                "refusal is not about the token; no refresh"
                            );
                            return Ok(response);
                        }
                        refreshed = true;
                        // The replay reads the stored new token.
                        let new = shared.auth.refresh_after_since(refused, status, epoch);
                        if new.await.is_some() {
                            continue;
                        }
                        return Ok(response);
                    }
                    if (200..300).contains(&status) || !retry::is_retryable_status(status) {
                        return Ok(response);
                    }
                    let asked = retry::retry_after(response.headers(), SystemTime::now());
                    (Ok(response), asked)
                }
                // The proxy's refusal stands until the configuration changes.
                Err(e) if is_proxy_refusal(&e) => {
                    tracing::debug!(operation = operation.id, "proxy refused; not retried");
                    return Err(e);
                }
                Err(e) => (Err(e), None),
            };
            let wait = match retry::plan(config, retries, waited, asked, replay_safe)
                .and_then(|wait| retry::within(wait, remaining()))
            {
                Ok(wait) => wait,
                Err(stop) => {
                    tracing::debug!(operation = operation.id, retries, ?stop, "not retried");
                    return result;
                }
            };
            tracing::debug!(operation = operation.id, retries, ?wait, "retrying");
            retries += 1;
            waited += wait;
            drop(result);
            tokio::time::sleep(wait).await;
        }
    }
}

/// Reads a refusal's body for its code and hands back an equivalent response
/// (the body is small: it is an error answer).
async fn peek_code(
    response: reqwest::Response,
) -> reqwest::Result<(reqwest::Response, Option<String>)> {
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = crate::body::read_capped(response, crate::error::KEPT_BODY_BYTES).await?;
    let code = ApiError::parse(status.as_u16(), None, None, None, &body).code;
    let mut rebuilt = http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok((reqwest::Response::from(rebuilt), code))
}

/// Reads a raw response (for `bgo.raw`, which has no generated operation).
pub(crate) async fn read_json(response: reqwest::Response) -> Result<serde_json::Value> {
    let status = response.status();
    if !status.is_success() {
        return Err(error_from_response(response).await);
    }
    let bytes = response.bytes().await.map_err(transport_error)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    decode::<serde_json::Value>(Some(status.as_u16()), &bytes)
}

pub(crate) use crate::json_path::decode;

pub(crate) async fn error_from_response(response: reqwest::Response) -> Error {
    let status = response.status();
    // Only a proxy answers 407: the request never reached Platos.
    if status == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Error::proxy(
            "the proxy asks for credentials (HTTP 407); put them in the proxy URL \
             (the builder's `proxy`, or HTTPS_PROXY / HTTP_PROXY / ALL_PROXY)",
        );
    }
    let headers = response.headers().clone();
    // What an error keeps is all that is read: a huge error body is not.
    let body = match crate::body::read_capped(response, crate::error::KEPT_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => return transport_error(e),
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Error::from_api(ApiError::parse(
        status.as_u16(),
        status.canonical_reason(),
        request_id,
        retry::retry_after(&headers, SystemTime::now()),
        &body,
    ))
}

/// Whether reqwest failed because the proxy would not open a tunnel (its
/// connector's error reads `tunnel error: …`, e.g. `proxy authorization
/// required` for a 407; pinned by the consumer proxy tests).
fn is_proxy_refusal(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.to_string().starts_with("tunnel error: ") {
            return true;
        }
        cause = err.source();
    }
    false
}

pub(crate) fn transport_error(e: reqwest::Error) -> Error {
    if let Some(big) = crate::body::too_large(&e) {
        return Error::decode(Some(big.status), ".", big.to_string(), b"");
    }
    if is_proxy_refusal(&e) {
        let target = e
            .url()
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        let mut root: &dyn std::error::Error = &e;
        while let Some(next) = root.source() {
            root = next;
        }
        return Error::proxy(format!(
            "the proxy would not open a tunnel to {target} ({}); check the proxy URL's \
             credentials (the builder's `proxy`, or HTTPS_PROXY / HTTP_PROXY / ALL_PROXY)",
            root.to_string().trim_start_matches("tunnel error: ")
        ));
    }
    // reqwest's Display names the URL; ours carries no credentials (those
    // travel in headers), so the message is safe to show.
    let mut message = e.to_string();
    // reqwest's own line ("error sending request") hides the cause a user
    // can act on ("Connection refused"): add the innermost one.
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let root = cause.to_string();
    if !message.contains(&root) {
        message = format!("{message}: {root}");
    }
    if e.is_timeout() {
        Error::timeout(message, Some(Box::new(e)))
    } else {
        Error::network(message, Some(Box::new(e)))
    }
}

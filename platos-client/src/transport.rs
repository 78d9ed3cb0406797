//! Every REST wire decision, in one place.
//!
//! The generated client builds each request (path, query, body) and hands it
//! to [`ClientHooks::exec`] here, which adds the headers of docs/wire.md §1.1,
//! mints the idempotency key of §2, retries per §2 and refreshes the token
//! per §1.3. What comes back is turned into SDK values or a classified
//! [`Error`] by [`finish`] and its siblings. Namespaces never touch HTTP.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo, ResponseValue};
use reqwest::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::auth::Mode;
use crate::client::Shared;
use crate::config::{Scope, Secret};
use crate::error::{ApiError, Error, Result};
use crate::generated::Client;
use crate::retry::{self, Idempotency};

pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
const SESSION_TOKEN: &str = "x-platos-session-token";

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

    /// The auth and scope headers for a request or a WebSocket upgrade, with
    /// `token` as the session token in session mode.
    pub(crate) fn auth_headers(&self, token: Option<&Secret>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        match self.shared.auth.mode() {
            Mode::Session => {
                if let Some(token) = token {
                    headers.push((SESSION_TOKEN, token.expose().to_owned()));
                }
            }
            Mode::ApiKey(key) => {
                headers.push(("authorization", format!("Bearer {}", key.expose())));
            }
        }
        if let Some(scope) = &self.scope {
            headers.extend(scope.headers().map(|(k, v)| (k, v.to_owned())));
        }
        headers
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

impl ClientHooks<Inner> for Client {
    /// Api-key mode cannot act without a scope; a handle made with
    /// `with_scope` may carry an incomplete one, so refuse before sending.
    async fn pre<E>(
        &self,
        _request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> std::result::Result<(), progenitor_client::Error<E>> {
        self.inner()
            .check_scope()
            .map_err(|e| progenitor_client::Error::Custom(e.message().to_owned()))
    }

    /// One `platos.request` span per call (operation, method, path template,
    /// then status, attempts and duration): never a header, never an id.
    async fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let span = request_span(info, request.method());
        let started = std::time::Instant::now();
        let result = self
            .exec_with_retries(request, info, &span)
            .instrument(span.clone())
            .await;
        record_outcome(&span, &result, started);
        result
    }
}

/// The span of one REST call; `status`, `attempts` and `duration_ms` are
/// recorded as they become known.
pub(crate) fn request_span(info: &OperationInfo, method: &reqwest::Method) -> tracing::Span {
    let path = path_template(info.operation_id).unwrap_or("");
    tracing::info_span!(
        "platos.request",
        operation = info.operation_id,
        method = %method,
        path,
        status = tracing::field::Empty,
        attempts = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

/// The spec's path of an operation of any compiled-in API.
fn path_template(operation_id: &str) -> Option<&'static str> {
    if let Some(path) = crate::namespaces::path_template(operation_id) {
        return Some(path);
    }
    #[cfg(feature = "v1")]
    if let Some(path) = crate::v1::path_template(operation_id) {
        return Some(path);
    }
    #[cfg(feature = "realtime")]
    if operation_id == crate::realtime::HTTP_OPERATION {
        return Some(crate::realtime::HTTP_PATH_TEMPLATE);
    }
    None
}

/// The operation of a turn streamed over the HTTP lane, when compiled in.
#[cfg(feature = "realtime")]
const STREAMED_TURN: Option<&str> = Some(crate::realtime::HTTP_OPERATION);
#[cfg(not(feature = "realtime"))]
const STREAMED_TURN: Option<&str> = None;

/// Records how a call ended on its span.
pub(crate) fn record_outcome(
    span: &tracing::Span,
    result: &reqwest::Result<reqwest::Response>,
    started: std::time::Instant,
) {
    if let Ok(response) = result {
        span.record("status", response.status().as_u16());
    }
    span.record("duration_ms", started.elapsed().as_millis() as u64);
}

impl Client {
    async fn exec_with_retries(
        &self,
        mut request: reqwest::Request,
        info: &OperationInfo,
        span: &tracing::Span,
    ) -> reqwest::Result<reqwest::Response> {
        let inner = self.inner();
        let shared = &inner.shared;
        let config = &shared.retry;

        let headers = request.headers_mut();
        // progenitor adds `api-version`; neither published SDK sends it, and
        // the wire stays identical to theirs.
        headers.remove("api-version");
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(ua) = HeaderValue::from_str(&shared.user_agent) {
            headers.insert(reqwest::header::USER_AGENT, ua);
        }
        // reqwest form-encodes query values (space as `+`); the wire spells a
        // space `%20`, like every path segment (docs/wire.md §3.3). A literal `+`
        // is already `%2B` here, so the swap is exact.
        if let Some(query) = request.url().query().filter(|q| q.contains('+')) {
            let query = query.replace('+', "%20");
            request.url_mut().set_query(Some(&query));
        }
        let method = request.method().clone();
        let rule = crate::namespaces::idempotency(info.operation_id)
            .unwrap_or_else(|| Idempotency::of_method(&method));
        let mints = rule == Idempotency::Key && shared.idempotency_keys;
        if mints && !request.headers().contains_key(IDEMPOTENCY_KEY) {
            let key = uuid::Uuid::new_v4().to_string();
            set_header(&mut request, IDEMPOTENCY_KEY, &key);
        }
        let replay_safe =
            retry::is_replay_safe(rule, request.headers().contains_key(IDEMPOTENCY_KEY));
        // A streamed turn lasts as long as the turn: its lane bounds the wait
        // for the answer's head instead (a reqwest timeout covers the body).
        let streamed = STREAMED_TURN == Some(info.operation_id);
        // Each try's reqwest timeout covers its body too, so cutting the
        // try's limit to what is left bounds the whole call, body included.
        let deadline = inner
            .call_timeout
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
            let mut attempt = match request.try_clone() {
                Some(r) => r,
                // Streaming bodies cannot be replayed: send the original once.
                None => {
                    for (name, value) in inner.auth_headers(token.as_ref()) {
                        set_header(&mut request, name, &value);
                    }
                    if !streamed {
                        *request.timeout_mut() =
                            Some(retry::try_timeout(shared.timeout, remaining()));
                    }
                    return self.client().execute(request).await;
                }
            };
            for (name, value) in inner.auth_headers(token.as_ref()) {
                set_header(&mut attempt, name, &value);
            }
            if !streamed {
                *attempt.timeout_mut() = Some(retry::try_timeout(shared.timeout, remaining()));
            }
            tracing::debug!(
                operation = info.operation_id,
                method = %method,
                retries,
                "platos request"
            );
            let result = self.client().execute(attempt).await;

            let (result, asked) = match result {
                Ok(response) => {
                    let path = path_template(info.operation_id).unwrap_or("");
                    crate::deprecation::note(info.operation_id, path, response.headers());
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
                                operation = info.operation_id,
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
                    note_status(status);
                    if (200..300).contains(&status) {
                        if crate::errors_in_200::applies(path) {
                            return crate::errors_in_200::lift(response, shared.max_response_bytes)
                                .await;
                        }
                        return Ok(crate::body::limit_body(response, shared.max_response_bytes));
                    }
                    if !retry::is_retryable_status(status) {
                        return Ok(response);
                    }
                    let asked = retry::retry_after(response.headers(), SystemTime::now());
                    (Ok(response), asked)
                }
                // The proxy's refusal stands until the configuration changes.
                Err(e) if is_proxy_refusal(&e) => {
                    tracing::debug!(operation = info.operation_id, "proxy refused; not retried");
                    return Err(e);
                }
                Err(e) => (Err(e), None),
            };
            let wait = match retry::plan(config, retries, waited, asked, replay_safe)
                .and_then(|wait| retry::within(wait, remaining()))
            {
                Ok(wait) => wait,
                Err(stop) => {
                    tracing::debug!(operation = info.operation_id, retries, ?stop, "not retried");
                    return result;
                }
            };
            tracing::debug!(operation = info.operation_id, retries, ?wait, "retrying");
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

tokio::task_local! {
    /// The status of the answer a generated call is decoding: progenitor
    /// drops it before a 2xx body fails to decode, and the error keeps it.
    static STATUS: Cell<Option<u16>>;
}

/// What a generated call came back with, and the status it was answered.
pub(crate) struct Answer<T> {
    result: std::result::Result<ResponseValue<T>, progenitor_client::Error<()>>,
    status: Option<u16>,
}

/// Runs a generated call, noting the status its answer had.
pub(crate) async fn send<T, F>(call: F) -> Answer<T>
where
    F: Future<Output = std::result::Result<ResponseValue<T>, progenitor_client::Error<()>>>,
{
    STATUS
        .scope(Cell::new(None), async {
            let result = call.await;
            Answer {
                result,
                status: STATUS.with(Cell::get),
            }
        })
        .await
}

/// Notes the status of an answer (from the `exec` hooks).
pub(crate) fn note_status(status: u16) {
    let _ = STATUS.try_with(|cell| cell.set(Some(status)));
}

/// Turns a generated call's outcome into the value or a classified error.
pub(crate) async fn finish<T: DeserializeOwned>(answer: Answer<T>) -> Result<T> {
    finish_response(answer).await.map(ResponseValue::into_inner)
}

/// Like [`finish`], keeping the answer's status and headers.
pub(crate) async fn finish_response<T: DeserializeOwned>(
    answer: Answer<T>,
) -> Result<ResponseValue<T>> {
    match answer.result {
        Ok(value) => Ok(value),
        Err(e) => Err(classify::<T>(e, answer.status).await),
    }
}

/// Like [`finish`], but a 404 is the answer "absent".
pub(crate) async fn finish_optional<T: DeserializeOwned>(answer: Answer<T>) -> Result<Option<T>> {
    match finish(answer).await {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Like [`finish`], but an empty 2xx body reads as `{}`: an older server's
/// way of saying "empty list" (every envelope field is optional).
pub(crate) async fn finish_envelope<T: DeserializeOwned>(answer: Answer<T>) -> Result<T> {
    match answer.result {
        Ok(value) => Ok(value.into_inner()),
        Err(progenitor_client::Error::InvalidResponsePayload(bytes, _))
            if bytes.iter().all(u8::is_ascii_whitespace) =>
        {
            decode(answer.status, b"{}")
        }
        Err(e) => Err(classify::<T>(e, answer.status).await),
    }
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

/// Decodes JSON, naming the path of the first field that does not fit.
pub(crate) fn decode<T: DeserializeOwned>(status: Option<u16>, bytes: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error::decode(status, path, e.into_inner().to_string(), bytes)
    })
}

/// Classifies a failed generated call; `status` is the answer's, when the
/// body of a 2xx answer is what failed.
pub(crate) async fn classify<T: DeserializeOwned>(
    error: progenitor_client::Error<()>,
    status: Option<u16>,
) -> Error {
    use progenitor_client::Error as P;
    match error {
        P::UnexpectedResponse(response) => error_from_response(response).await,
        P::CommunicationError(e) | P::ResponseBodyError(e) | P::InvalidUpgrade(e) => {
            transport_error(e)
        }
        P::InvalidResponsePayload(bytes, fallback) => match decode::<T>(status, &bytes) {
            Err(e) => e,
            // serde_path_to_error accepted what serde_json refused: keep serde's word.
            Ok(_) => Error::decode(status, ".", fallback.to_string(), &bytes),
        },
        P::ErrorResponse(value) => Error::from_api(ApiError::parse(
            value.status().as_u16(),
            value.status().canonical_reason(),
            None,
            None,
            b"",
        )),
        P::InvalidRequest(message) | P::Custom(message) => Error::config(message),
    }
}

pub(crate) async fn error_from_response(response: reqwest::Response) -> Error {
    let status = response.status();
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

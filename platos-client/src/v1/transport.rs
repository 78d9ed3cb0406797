//! Every V1 REST wire decision, in one place (docs/wire.md §9).
//!
//! A generated request builds its URL and body and hands them to
//! [`V1Client::execute`] here, which adds the operator credential and the
//! idempotency key its class asks for (the caller's, the builder's factory's
//! or a minted one, made once per logical call, before the first try, so
//! every retry carries the same one), and retries network failures, 5xx and
//! 429 for every method, as the V1 contract allows (a key makes a retried
//! write safe; `exempt` and `not-applicable` operations are safe by nature).
//! Answers come back as [`Reply`]: the envelope the server sent, whole, and
//! whether it was a replay (`idempotency-replayed: true`).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::V1Client;
use crate::config::{RetryConfig, Secret};
use crate::error::{Error, Result};
use crate::request::{CallOptions, Operation};
use crate::retry;
use crate::transport::{Answer, Fetched, error_from_response, transport_error};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How an operation treats `idempotency-key` (`x-platos-idempotency-class`
/// in `spec/v1.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyClass {
    /// The server refuses the call without a key (one-time secrets).
    Required,
    /// The server de-duplicates by the key when one is sent.
    Accepted,
    /// The server ignores a key.
    Exempt,
    /// A read: keys do not apply.
    NotApplicable,
}

/// Makes the idempotency key of a call: given the operation id.
pub type KeyFactory = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What every V1 request and event stream of one client shares.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    /// The proxy calls go through, for error messages.
    pub(crate) proxy_shown: Option<String>,
    pub(crate) operator_token: Option<Secret>,
    pub(crate) user_agent: HeaderValue,
    pub(crate) retry: RetryConfig,
    pub(crate) key_factory: Option<KeyFactory>,
    pub(crate) max_response_bytes: u64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("operator_token", &self.operator_token)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A valid key: 1–255 characters from `A–Z a–z 0–9 _ . : -`.
fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

impl V1Client {
    /// Sends one generated call: its URL and body, the operation it is,
    /// and the call's own options.
    pub(crate) async fn execute(
        &self,
        operation: &Operation<KeyClass>,
        url: String,
        body: Option<Vec<u8>>,
        options: &CallOptions,
    ) -> Result<Answer> {
        let shared = self.shared();
        let url = reqwest::Url::parse(&url)
            .map_err(|e| Error::config(format!("the request URL {url:?} is not valid: {e}")))?;
        let mut request = reqwest::Request::new(operation.method.clone(), url);
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, shared.user_agent.clone());
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        // An operation with `security: []` (sign-in) goes without the token.
        let token = shared
            .operator_token
            .as_ref()
            .filter(|_| operation.credentials == crate::request::Credentials::Sent);
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| Error::config("the operator token is not a valid header value"))?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        if matches!(operation.rule, KeyClass::Required | KeyClass::Accepted) {
            let key = match (&options.idempotency_key, &shared.key_factory) {
                (Some(key), _) => key.clone(),
                (None, Some(factory)) => factory(operation.id),
                (None, None) => uuid::Uuid::new_v4().to_string(),
            };
            if !valid_key(&key) {
                return Err(Error::config(format!(
                    "the idempotency key for {} must be 1-255 characters of A-Z a-z 0-9 _ . : -; \
                     a call whose key cannot be sent is not sent",
                    operation.id
                )));
            }
            let value = HeaderValue::from_str(&key)
                .map_err(|_| Error::config("the idempotency key is not a valid header value"))?;
            request.headers_mut().insert(IDEMPOTENCY_KEY, value);
        }
        if let Some(body) = body {
            *request.body_mut() = Some(body.into());
        }
        let span = crate::transport::request_span(operation.id, operation.path, &operation.method);
        let started = std::time::Instant::now();
        let result = self
            .exec_with_retries(request, operation, &span)
            .instrument(span.clone())
            .await;
        crate::transport::record_outcome(&span, &result, started);
        let proxy = shared.proxy_shown.as_deref();
        let response = result.map_err(|e| transport_error(e).via_proxy(proxy))?;
        if !response.status().is_success() {
            return Err(error_from_response(response).await.via_proxy(proxy));
        }
        Ok(Answer::new(response, shared.max_response_bytes))
    }

    /// Sends with retries: network failures, 5xx and 429 (after its
    /// `Retry-After` when it fits the configured cap), up to the budget.
    async fn exec_with_retries(
        &self,
        request: reqwest::Request,
        operation: &Operation<KeyClass>,
        span: &tracing::Span,
    ) -> reqwest::Result<reqwest::Response> {
        let shared = self.shared();
        let config = &shared.retry;
        let mut retries = 0u32;
        let mut waited = std::time::Duration::ZERO;
        loop {
            span.record("attempts", retries + 1);
            let Some(attempt) = request.try_clone() else {
                return shared.http.execute(request).await;
            };
            let result = shared.http.execute(attempt).await;
            let result = match result {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if !retry::is_retryable_status(response.status().as_u16()) => {
                    return Ok(response);
                }
                other => other,
            };
            let asked = match &result {
                Ok(response) => retry::retry_after(response.headers(), SystemTime::now()),
                Err(_) => None,
            };
            // Every V1 method may be repeated: writes carry their key.
            let wait = match retry::plan(config, retries, waited, asked, true) {
                Ok(wait) => wait,
                Err(stop) => {
                    tracing::debug!(operation = operation.id, retries, ?stop, "v1: not retried");
                    return result;
                }
            };
            tracing::debug!(operation = operation.id, retries, ?wait, "v1: retrying");
            retries += 1;
            waited += wait;
            drop(result);
            tokio::time::sleep(wait).await;
        }
    }
}

/// A V1 answer: the envelope the server sent ([`body`](Self::body),
/// [`into_inner`](Self::into_inner)) and how it was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    value: T,
    status: u16,
    replayed: bool,
}

impl<T> Reply<T> {
    /// The envelope the server sent (`{data, meta}` or `{data, page}`).
    pub fn body(&self) -> &T {
        &self.value
    }

    /// The answer itself.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Whether the server replayed a stored answer for this idempotency key
    /// (`idempotency-replayed: true`) instead of acting again.
    pub fn replayed(&self) -> bool {
        self.replayed
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// The answer decoded, with its status and whether it was a replay.
pub(crate) fn finish<T: DeserializeOwned>(fetched: Fetched) -> Result<Reply<T>> {
    let (status, replayed) = (fetched.status, fetched.replayed);
    Ok(Reply {
        value: crate::transport::finish(fetched)?,
        status,
        replayed,
    })
}

/// The envelope alone (paging reads `page` and `data` from it).
pub(crate) fn finish_envelope<T: DeserializeOwned>(fetched: Fetched) -> Result<T> {
    crate::transport::finish(fetched)
}

/// An answer without a body the caller needs, with its status.
pub(crate) fn finish_unit(fetched: Fetched) -> Result<Reply<()>> {
    Ok(Reply {
        value: (),
        status: fetched.status,
        replayed: fetched.replayed,
    })
}

impl V1Client {
    /// One generated call, whole: sent (headers, key, retries) and its
    /// answer read, within the call's own deadline; the one future every
    /// V1 operation runs (only the decode is per type).
    pub(crate) async fn call(
        &self,
        prepared: Result<crate::request::Prepared<KeyClass>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_servers_alphabet() {
        assert!(valid_key("01JD-stable.key:1_a"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(valid_key(&"k".repeat(255)));
    }
}

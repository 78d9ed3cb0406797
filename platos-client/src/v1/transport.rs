//! Every V1 REST wire decision, in one place (docs/wire.md §9).
//!
//! The generated V1 client builds each request and hands it here: [`pre`]
//! adds the operator credential and the idempotency key its class asks for
//! (minted once per logical call, before the first try, so every retry
//! carries the same one), and [`exec`] retries network failures, 5xx and
//! 429 for every method, as the V1 contract allows (a key makes a retried
//! write safe; `exempt` and `not-applicable` operations are safe by
//! nature). Answers come back as [`Reply`]: the envelope the server sent,
//! whole, and whether it was a replay (`idempotency-replayed: true`).
//!
//! [`pre`]: ClientHooks::pre
//! [`exec`]: ClientHooks::exec

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo, ResponseValue};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::generated::Client;
use crate::config::{RetryConfig, Secret};
use crate::error::Result;
use crate::retry;
pub(crate) use crate::transport::send;
use crate::transport::{Answer, finish_response, note_status};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotency-replayed";

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
    pub(crate) operator_token: Option<Secret>,
    pub(crate) user_agent: HeaderValue,
    pub(crate) retry: RetryConfig,
    pub(crate) key_factory: Option<KeyFactory>,
    pub(crate) max_response_bytes: u64,
}

/// The state the generated V1 client carries.
#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("operator_token", &self.shared.operator_token)
            .field("retry", &self.shared.retry)
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// The key a caller gave this call (`.idempotency_key(..)`).
    static CALL_KEY: Option<String>;
}

/// Runs a generated call with the caller's idempotency key, if any.
pub(crate) async fn with_key<T, F>(key: Option<String>, call: F) -> Answer<T>
where
    F: Future<Output = std::result::Result<ResponseValue<T>, progenitor_client::Error<()>>>,
{
    CALL_KEY.scope(key, send(call)).await
}

/// A valid key: 1–255 characters from `A–Z a–z 0–9 _ . : -`.
fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

impl ClientHooks<Inner> for Client {
    /// Credential and key: refused here, before anything is sent, when the
    /// key a `required` operation needs cannot be made.
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        info: &OperationInfo,
    ) -> std::result::Result<(), progenitor_client::Error<E>> {
        let shared = &self.inner().shared;
        let headers = request.headers_mut();
        headers.remove("api-version");
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, shared.user_agent.clone());
        if request.body().is_none() {
            request.headers_mut().remove(CONTENT_TYPE);
        }
        if let Some(token) = &shared.operator_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| custom("the operator token is not a valid header value"))?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let class = super::namespaces::idempotency(info.operation_id);
        if matches!(class, Some(KeyClass::Required | KeyClass::Accepted)) {
            let given = CALL_KEY.try_with(Clone::clone).ok().flatten();
            let key = match (given, &shared.key_factory) {
                (Some(key), _) => key,
                (None, Some(factory)) => factory(info.operation_id),
                (None, None) => uuid::Uuid::new_v4().to_string(),
            };
            if !valid_key(&key) {
                return Err(custom(&format!(
                    "the idempotency key for {} must be 1-255 characters of A-Z a-z 0-9 _ . : -; \
                     a call whose key cannot be sent is not sent",
                    info.operation_id
                )));
            }
            let value = HeaderValue::from_str(&key)
                .map_err(|_| custom("the idempotency key is not a valid header value"))?;
            request.headers_mut().insert(IDEMPOTENCY_KEY, value);
        }
        Ok(())
    }

    /// Sends with retries: network failures, 5xx and 429 (after its
    /// `Retry-After` when it fits the configured cap), up to the budget.
    async fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let span = crate::transport::request_span(info, request.method());
        let started = std::time::Instant::now();
        let result = self
            .exec_with_retries(request, info, &span)
            .instrument(span.clone())
            .await;
        crate::transport::record_outcome(&span, &result, started);
        result
    }
}

impl Client {
    async fn exec_with_retries(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
        span: &tracing::Span,
    ) -> reqwest::Result<reqwest::Response> {
        let config = &self.inner().shared.retry;
        let mut retries = 0u32;
        let mut waited = std::time::Duration::ZERO;
        loop {
            span.record("attempts", retries + 1);
            let Some(attempt) = request.try_clone() else {
                return self.client().execute(request).await;
            };
            let result = self.client().execute(attempt).await;
            if let Ok(response) = &result {
                note_status(response.status().as_u16());
            }
            let result = match result {
                Ok(response) if response.status().is_success() => {
                    let limit = self.inner().shared.max_response_bytes;
                    return Ok(crate::body::limit_body(response, limit));
                }
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
                    tracing::debug!(
                        operation = info.operation_id,
                        retries,
                        ?stop,
                        "v1: not retried"
                    );
                    return result;
                }
            };
            tracing::debug!(
                operation = info.operation_id,
                retries,
                ?wait,
                "v1: retrying"
            );
            retries += 1;
            waited += wait;
            drop(result);
            tokio::time::sleep(wait).await;
        }
    }
}

fn custom<E>(message: &str) -> progenitor_client::Error<E> {
    progenitor_client::Error::Custom(message.to_owned())
}

/// A V1 answer: the envelope the server sent (reach it through `Deref` or
/// [`into_inner`](Self::into_inner)) and how it was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    value: T,
    status: u16,
    replayed: bool,
}

impl<T> Reply<T> {
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

impl<T> Deref for Reply<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Turns a generated call's outcome into a [`Reply`] or the one error
/// (the V1 envelope reachable through `Error::refusal`).
pub(crate) async fn finish<T: DeserializeOwned>(answer: Answer<T>) -> Result<Reply<T>> {
    match finish_response(answer).await {
        Ok(value) => {
            let replayed = value
                .headers()
                .get(REPLAYED)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let status = value.status().as_u16();
            Ok(Reply {
                value: value.into_inner(),
                status,
                replayed,
            })
        }
        Err(e) => Err(e),
    }
}

/// The envelope alone (paging reads `page` and `data` from it).
pub(crate) async fn finish_envelope<T: DeserializeOwned>(answer: Answer<T>) -> Result<T> {
    finish(answer).await.map(Reply::into_inner)
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

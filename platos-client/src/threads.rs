//! [`Threads::send`]: a turn streamed over the realtime socket (docs/wire.md,
//! "Realtime"). The rest of `client.threads()` is generated from the spec.
//! Also where the client meets its realtime lanes: the [`realtime::Context`]
//! a turn gets, and the REST calls it may make ([`realtime::Rest`]).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::client::PlatosClient;
use crate::config::Scope;
use crate::decision::Decision;
use crate::error::Result;
use crate::realtime::{self, SendOptions, TurnStream};
use crate::requests::Threads;
use crate::types::Message;

/// The operation the transport sends the HTTP lane as (`threads_stream` in
/// spec/openapi.yaml): no per-try time limit on it (a turn streams for as
/// long as it runs), retried with its idempotency key.
static STREAM_OPERATION: crate::request::Operation<crate::retry::Idempotency> =
    crate::request::Operation {
        id: "threads_stream",
        method: reqwest::Method::POST,
        path: "/api/v1/agent/threads/{threadId}/stream",
        rule: crate::retry::Idempotency::Key,
        json: false,
        streams: true,
        credentials: crate::request::Credentials::Sent,
    };

impl PlatosClient {
    /// What this handle's turns take from it.
    pub(crate) fn realtime_context(&self) -> realtime::Context {
        realtime::Context::new(
            self.shared().realtime.clone(),
            self.inner().scope.clone(),
            Arc::new(self.clone()),
        )
    }
}

impl realtime::Rest for PlatosClient {
    fn thread_messages(
        &self,
        thread_id: String,
        page: u64,
        limit: u64,
    ) -> BoxFuture<'static, Result<Vec<Message>>> {
        let client = self.clone();
        async move {
            client
                .threads()
                .messages(thread_id)
                .limit(limit)
                .page(page)
                .send()
                .await
        }
        .boxed()
    }

    fn resolve_approval(
        &self,
        approval_id: String,
        decision: Decision,
    ) -> BoxFuture<'static, Result<()>> {
        let client = self.clone();
        async move {
            client
                .approvals()
                .resolve(approval_id, decision)
                .send()
                .await
                .map(drop)
        }
        .boxed()
    }

    fn open_stream(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'static, Result<reqwest::Response>> {
        let client = self.clone();
        async move {
            let response = client.exec_raw(request, &STREAM_OPERATION).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let proxy = client.shared().proxy_shown.as_deref();
            Err(crate::transport::error_from_response(response)
                .await
                .via_proxy(proxy))
        }
        .boxed()
    }

    fn with_scope(&self, scope: Scope) -> Arc<dyn realtime::Rest> {
        Arc::new(PlatosClient::with_scope(self, scope))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
impl Threads<'_> {
    /// Sends `message` to the thread's agent and streams the turn: tokens,
    /// tool calls, approvals, artifacts, cost, `done`.
    pub fn send(&self, thread_id: impl Into<String>, message: impl Into<String>) -> TurnStream {
        self.send_with(thread_id, message, SendOptions::default())
    }

    /// [`send`](Self::send) with options (agent id, context, dynamic blocks,
    /// attachments, model label, idempotency key, reconnect budget, scope).
    pub fn send_with(
        &self,
        thread_id: impl Into<String>,
        message: impl Into<String>,
        options: SendOptions,
    ) -> TurnStream {
        realtime::send(
            &self.client.realtime_context(),
            thread_id.into(),
            message.into(),
            options,
        )
    }
}

#[cfg(feature = "structured")]
#[cfg_attr(docsrs, doc(cfg(feature = "structured")))]
impl Threads<'_> {
    /// Sends `message` with `T`'s JSON Schema as `outputSchema` over the
    /// HTTP lane (the only one that carries it), reads the turn to its end
    /// and decodes the `structured_output` into `T` (see
    /// [`crate::structured`] for the dialect and the errors).
    pub async fn ask_structured<T>(
        &self,
        thread_id: impl Into<String>,
        message: impl Into<String>,
        options: SendOptions,
    ) -> crate::Result<crate::Structured<T>>
    where
        T: schemars::JsonSchema + serde::de::DeserializeOwned,
    {
        let options = options.output_schema(crate::output_schema::<T>());
        self.send_with(thread_id, message, options)
            .collect_structured()
            .await
    }
}

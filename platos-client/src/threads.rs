//! [`Threads::send`]: a turn streamed over the realtime socket (docs/wire.md,
//! "Realtime"). The rest of `client.threads()` is generated from the spec.

use crate::realtime::{self, SendOptions, TurnStream};
use crate::requests::Threads;

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
        realtime::send(self.client, thread_id.into(), message.into(), options)
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

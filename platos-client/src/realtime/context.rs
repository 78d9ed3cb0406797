//! What the realtime lanes take from the client that starts a turn, and
//! nothing more: its settings, credentials and connections ([`Shared`]), the
//! scope of the handle, and the few REST calls a turn may make ([`Rest`]).
//! Nothing in `realtime/` names `PlatosClient`; the client builds a
//! [`Context`] when a turn starts (threads.rs), so the lanes can be reasoned
//! about, and compiled out, on their own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::pool::Pool;
use crate::auth::Auth;
use crate::config::{ReconnectConfig, Scope, Secret};
use crate::decision::Decision;
use crate::error::Result;
use crate::net::Net;
use crate::types::Message;

/// One client's realtime settings, credentials and connections, shared by
/// every handle and turn of it.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) user_agent: String,
    /// A handshake's limit, and an acknowledgement's.
    pub(crate) timeout: Duration,
    pub(crate) reconnect: ReconnectConfig,
    /// The client's namespace (`/agent` unless configured).
    pub(crate) namespace: String,
    /// Events a turn buffers for a slow consumer.
    pub(crate) stream_buffer: usize,
    /// How the socket connects (TLS, proxy).
    pub(crate) net: Net,
    /// The session token or api key, and its refresh; shared with REST, so a
    /// refresh by either lane serves both.
    pub(crate) auth: Arc<Auth>,
    /// The connections, and the lane the client remembers.
    pub(crate) pool: Pool,
}

/// The REST calls a turn makes, through the client's own transport (auth,
/// refresh, retries, limits).
pub(crate) trait Rest: Send + Sync {
    /// One page of a thread's messages: the lost-turn check reads them.
    fn thread_messages(
        &self,
        thread_id: String,
        page: u64,
        limit: u64,
    ) -> BoxFuture<'static, Result<Vec<Message>>>;

    /// Answers an approval over REST (the HTTP lane, and edited arguments).
    fn resolve_approval(
        &self,
        approval_id: String,
        decision: Decision,
    ) -> BoxFuture<'static, Result<()>>;

    /// Sends the HTTP lane's request for a turn's event stream; a non-2xx
    /// answer is the one `Error`, a 2xx body capped as REST bodies are.
    fn open_stream(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'static, Result<reqwest::Response>>;

    /// The same calls in another scope.
    fn with_scope(&self, scope: Scope) -> Arc<dyn Rest>;
}

/// What a turn's lanes hold: cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    shared: Arc<Shared>,
    /// The scope the turn acts in.
    pub(crate) scope: Option<Scope>,
    pub(crate) rest: Arc<dyn Rest>,
}

impl Context {
    pub(crate) fn new(shared: Arc<Shared>, scope: Option<Scope>, rest: Arc<dyn Rest>) -> Self {
        Context {
            shared,
            scope,
            rest,
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The same client in another scope (a turn's own `SendOptions::scope`).
    pub(crate) fn with_scope(&self, scope: Scope) -> Self {
        Context {
            shared: self.shared.clone(),
            rest: self.rest.with_scope(scope.clone()),
            scope: Some(scope),
        }
    }

    /// The auth and scope headers of the WebSocket upgrade, with `token` as
    /// the session token in session mode.
    pub(crate) fn auth_headers(&self, token: Option<&Secret>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        crate::auth::each_header(
            self.shared.auth.mode(),
            token,
            self.scope.as_ref(),
            |name, value| headers.push((name, value.to_owned())),
        );
        headers
    }
}

//! `client.threads()`: conversations with an agent (wire.md §3.3), and
//! [`Threads::send`], which streams a turn over the realtime socket (§4).

use crate::PlatosClient;
use crate::error::Result;
use crate::paging::Page;
use crate::realtime::{self, SendOptions, TurnStream};
use crate::request::{Envelope, apply, into_future, list_builder, path_id, setters};
use crate::transport::{finish, finish_envelope, finish_optional};
use crate::types::{Artifact, CreateThreadRequest, Message, Thread};

/// Threads namespace.
#[derive(Debug, Clone, Copy)]
pub struct Threads<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Threads (conversations) in scope.
    pub fn threads(&self) -> Threads<'_> {
        Threads { client: self }
    }
}

impl Threads<'_> {
    /// Opens a thread with an agent (`POST /threads`). The agent id is
    /// required: the server refuses a thread without one.
    pub fn create(&self, agent_id: impl Into<String>) -> CreateThread {
        CreateThread {
            client: self.client.clone(),
            agent_id: agent_id.into(),
            title: None,
        }
    }

    /// Lists threads (`GET /threads`).
    pub fn list(&self) -> ListThreads {
        ListThreads {
            client: self.client.clone(),
            agent_id: None,
            limit: None,
            status: None,
            offset: None,
            page: None,
            tag: None,
            pinned: None,
            archived: None,
        }
    }

    /// One thread; `None` when the server answers 404.
    pub async fn get(&self, thread_id: &str) -> Result<Option<Thread>> {
        finish_optional(
            self.client
                .api
                .threads_get()
                .thread_id(path_id(thread_id)?)
                .send()
                .await,
        )
        .await
    }

    /// A thread's messages, oldest first.
    pub fn messages(&self, thread_id: impl Into<String>) -> ListMessages {
        ListMessages {
            client: self.client.clone(),
            thread_id: thread_id.into(),
            limit: None,
            offset: None,
            page: None,
        }
    }

    /// A thread's artifacts.
    pub fn artifacts(&self, thread_id: impl Into<String>) -> ListArtifacts {
        ListArtifacts {
            client: self.client.clone(),
            thread_id: thread_id.into(),
            limit: None,
            offset: None,
            page: None,
        }
    }

    /// Archives a thread.
    pub async fn archive(&self, thread_id: &str) -> Result<()> {
        finish(
            self.client
                .api
                .threads_archive()
                .thread_id(path_id(thread_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Restores an archived thread.
    pub async fn unarchive(&self, thread_id: &str) -> Result<()> {
        finish(
            self.client
                .api
                .threads_unarchive()
                .thread_id(path_id(thread_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Deletes a thread (the server archives it: a soft delete).
    pub async fn delete(&self, thread_id: &str) -> Result<()> {
        finish(
            self.client
                .api
                .threads_delete()
                .thread_id(path_id(thread_id)?)
                .send()
                .await,
        )
        .await
    }

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

/// Builder for [`Threads::create`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct CreateThread {
    client: PlatosClient,
    agent_id: String,
    title: Option<String>,
}

impl CreateThread {
    setters! {
        /// The thread's title (sent as `null` when not set, like the Python SDK).
        title: String,
    }

    /// Sends the call.
    pub async fn send(self) -> Result<Thread> {
        let body = CreateThreadRequest {
            agent_id: self.agent_id,
            title: self.title,
        };
        finish(self.client.api.threads_create().body(body).send().await).await
    }
}
into_future!(CreateThread => Thread);

/// Builder for [`Threads::list`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListThreads {
    client: PlatosClient,
    agent_id: Option<String>,
    limit: Option<u64>,
    status: Option<String>,
    offset: Option<u64>,
    page: Option<u64>,
    tag: Option<String>,
    pinned: Option<bool>,
    archived: Option<String>,
}

impl ListThreads {
    setters! {
        /// Only this agent's threads.
        agent_id: String,
        /// Page size.
        limit: u64,
        /// Thread status (`active`, `archived`, …).
        status: String,
        /// Items to skip.
        offset: u64,
        /// Page number.
        page: u64,
        /// Only threads with this tag.
        tag: String,
        /// Only pinned (or unpinned) threads.
        pinned: bool,
        /// `true` to include archived threads, `only` for archived alone.
        archived: String,
    }

    async fn fetch(self) -> Result<Page<Thread>> {
        let call = apply!(
            self.client.api.threads_list(),
            self,
            [agent_id, limit, status, offset, page, tag, pinned, archived]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListThreads => Thread, paged, page);

/// Builder for [`Threads::messages`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListMessages {
    client: PlatosClient,
    thread_id: String,
    limit: Option<u64>,
    offset: Option<u64>,
    page: Option<u64>,
}

impl ListMessages {
    setters! {
        /// Page size.
        limit: u64,
        /// Items to skip.
        offset: u64,
        /// Page number.
        page: u64,
    }

    async fn fetch(self) -> Result<Page<Message>> {
        let call = apply!(
            self.client
                .api
                .threads_messages()
                .thread_id(path_id(&self.thread_id)?),
            self,
            [limit, offset, page]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListMessages => Message, paged, page);

/// Builder for [`Threads::artifacts`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListArtifacts {
    client: PlatosClient,
    thread_id: String,
    limit: Option<u64>,
    offset: Option<u64>,
    page: Option<u64>,
}

impl ListArtifacts {
    setters! {
        /// Page size.
        limit: u64,
        /// Items to skip.
        offset: u64,
        /// Page number.
        page: u64,
    }

    async fn fetch(self) -> Result<Page<Artifact>> {
        let call = apply!(
            self.client
                .api
                .threads_artifacts()
                .thread_id(path_id(&self.thread_id)?),
            self,
            [limit, offset, page]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListArtifacts => Artifact, paged, page);

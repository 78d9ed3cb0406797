//! `client.agents()`: the agents in scope and their versions (wire.md §3.2).

use crate::PlatosClient;
use crate::error::Result;
use crate::paging::Page;
use crate::request::{Envelope, apply, list_builder, path_id, setters};
use crate::transport::{finish_envelope, finish_optional};
use crate::types::{Agent, AgentVersion};

/// Agents namespace.
#[derive(Debug, Clone, Copy)]
pub struct Agents<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Agents in scope.
    pub fn agents(&self) -> Agents<'_> {
        Agents { client: self }
    }
}

impl Agents<'_> {
    /// Lists agents (`GET /agents`).
    pub fn list(&self) -> ListAgents {
        ListAgents {
            client: self.client.clone(),
            page: None,
            limit: None,
            offset: None,
            search: None,
            status: None,
        }
    }

    /// One agent; `None` when the server answers 404.
    pub async fn get(&self, agent_id: &str) -> Result<Option<Agent>> {
        finish_optional(
            self.client
                .api
                .agents_get()
                .agent_id(path_id(agent_id)?)
                .send()
                .await,
        )
        .await
    }

    /// An agent's versions (`GET /agents/{agentId}/versions`).
    pub fn list_versions(&self, agent_id: impl Into<String>) -> ListAgentVersions {
        ListAgentVersions {
            client: self.client.clone(),
            agent_id: agent_id.into(),
            cursor: None,
            take: None,
            offset: None,
        }
    }
}

/// Builder for [`Agents::list`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListAgents {
    client: PlatosClient,
    page: Option<u64>,
    limit: Option<u64>,
    offset: Option<u64>,
    search: Option<String>,
    status: Option<String>,
}

impl ListAgents {
    setters! {
        /// Page number (server-side paging).
        page: u64,
        /// Page size.
        limit: u64,
        /// Items to skip.
        offset: u64,
        /// Text search on name/slug.
        search: String,
        /// `active` or `paused`.
        status: String,
    }

    async fn fetch(self) -> Result<Page<Agent>> {
        let call = apply!(
            self.client.api.agents_list(),
            self,
            [page, limit, offset, search, status]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListAgents => Agent, paged, page);

/// Builder for [`Agents::list_versions`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListAgentVersions {
    client: PlatosClient,
    agent_id: String,
    cursor: Option<String>,
    take: Option<u64>,
    offset: Option<u64>,
}

impl ListAgentVersions {
    setters! {
        /// Opaque cursor from a previous page.
        cursor: String,
        /// Page size.
        take: u64,
        /// Items to skip.
        offset: u64,
    }

    async fn fetch(self) -> Result<Page<AgentVersion>> {
        let call = apply!(
            self.client
                .api
                .agents_list_versions()
                .agent_id(path_id(&self.agent_id)?),
            self,
            [cursor, take, offset]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListAgentVersions => AgentVersion);

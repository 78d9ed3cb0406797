//! `client.monitoring()`: runs, traces and costs (wire.md §3.6).

use crate::PlatosClient;
use crate::error::Result;
use crate::paging::Page;
use crate::request::{Envelope, apply, into_future, list_builder, path_id, setters};
use crate::transport::{finish, finish_envelope};
use crate::types::{CostByAgentRow, Run, ScopeCost, ThreadTrace};

/// Monitoring namespace.
#[derive(Debug, Clone, Copy)]
pub struct Monitoring<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Runs, traces and costs.
    pub fn monitoring(&self) -> Monitoring<'_> {
        Monitoring { client: self }
    }
}

impl Monitoring<'_> {
    /// Seed-era run list (`GET /monitoring/runs`); current servers may
    /// answer 404, which is a not-found error.
    pub fn runs(&self) -> ListRuns {
        ListRuns {
            client: self.client.clone(),
            agent_id: None,
            thread_id: None,
            status: None,
            limit: None,
        }
    }

    /// A thread's full trace: messages, spans, timeline and rollup.
    pub async fn traces(&self, thread_id: &str) -> Result<ThreadTrace> {
        finish(
            self.client
                .api
                .monitoring_trace()
                .thread_id(path_id(thread_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Cost per agent over the last `days` (default 30).
    pub fn cost_by_agent(&self) -> CostByAgent {
        CostByAgent {
            client: self.client.clone(),
            days: None,
            limit: None,
            offset: None,
            search: None,
        }
    }

    /// The scope's cost on one day.
    pub fn cost_by_scope(&self) -> CostByScope {
        CostByScope {
            client: self.client.clone(),
            date: None,
        }
    }
}

/// Builder for [`Monitoring::runs`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListRuns {
    client: PlatosClient,
    agent_id: Option<String>,
    thread_id: Option<String>,
    status: Option<String>,
    limit: Option<u64>,
}

impl ListRuns {
    setters! {
        /// Only this agent's runs.
        agent_id: String,
        /// Only this thread's runs.
        thread_id: String,
        /// Only runs in this status.
        status: String,
        /// At most this many.
        limit: u64,
    }

    async fn fetch(self) -> Result<Page<Run>> {
        let call = apply!(
            self.client.api.monitoring_runs(),
            self,
            [agent_id, thread_id, status, limit]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListRuns => Run);

/// Builder for [`Monitoring::cost_by_agent`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct CostByAgent {
    client: PlatosClient,
    days: Option<u64>,
    limit: Option<u64>,
    offset: Option<u64>,
    search: Option<String>,
}

impl CostByAgent {
    setters! {
        /// Window in days (default 30, max 3650).
        days: u64,
        /// Page size.
        limit: u64,
        /// Rows to skip.
        offset: u64,
        /// Agent name search.
        search: String,
    }

    async fn fetch(self) -> Result<Page<CostByAgentRow>> {
        let call = apply!(
            self.client.api.monitoring_cost_by_agent(),
            self,
            [days, limit, offset, search]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(CostByAgent => CostByAgentRow, paged);

/// Builder for [`Monitoring::cost_by_scope`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct CostByScope {
    client: PlatosClient,
    date: Option<String>,
}

impl CostByScope {
    setters! {
        /// The day, `YYYY-MM-DD` (the server's default when not set).
        date: String,
    }

    /// Sends the call; the answer is returned whole.
    pub async fn send(self) -> Result<ScopeCost> {
        let call = apply!(self.client.api.monitoring_cost(), self, [date]);
        finish(call.send().await).await
    }
}
into_future!(CostByScope => ScopeCost);

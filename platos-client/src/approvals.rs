//! `client.approvals()`: human-in-the-loop decisions (wire.md §3.4).
//!
//! Follows the server, not the TypeScript SDK: the list answer is read from
//! `rows`, and a resolution is `{approved, comment?, editedArgs?}`.

use crate::PlatosClient;
use crate::error::Result;
use crate::paging::Page;
use crate::request::{Envelope, apply, into_future, list_builder, path_id, setters};
use crate::transport::{finish, finish_envelope, finish_optional};
use crate::types::{Approval, ApprovalResolution, ResolveApprovalRequest};

/// Approvals namespace.
#[derive(Debug, Clone, Copy)]
pub struct Approvals<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Human-in-the-loop approvals.
    pub fn approvals(&self) -> Approvals<'_> {
        Approvals { client: self }
    }
}

impl Approvals<'_> {
    /// Lists approvals (`GET /monitoring/approvals`, operator-only).
    pub fn list(&self) -> ListApprovals {
        ListApprovals {
            client: self.client.clone(),
            thread_id: None,
            agent_id: None,
            status: None,
            source: None,
            since_days: None,
            limit: None,
            offset: None,
            search: None,
        }
    }

    /// One approval; `None` when the server answers 404.
    pub async fn get(&self, approval_id: &str) -> Result<Option<Approval>> {
        finish_optional(
            self.client
                .api
                .approvals_get()
                .approval_id(path_id(approval_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Approves (`true`) or rejects (`false`) a pending approval.
    pub fn resolve(&self, approval_id: impl Into<String>, approved: bool) -> ResolveApproval {
        ResolveApproval {
            client: self.client.clone(),
            approval_id: approval_id.into(),
            approved,
            comment: None,
            edited_args: None,
        }
    }
}

/// Builder for [`Approvals::list`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListApprovals {
    client: PlatosClient,
    thread_id: Option<String>,
    agent_id: Option<String>,
    status: Option<String>,
    source: Option<String>,
    since_days: Option<u64>,
    limit: Option<u64>,
    offset: Option<u64>,
    search: Option<String>,
}

impl ListApprovals {
    setters! {
        /// Only this thread's approvals.
        thread_id: String,
        /// Only this agent's approvals.
        agent_id: String,
        /// `pending`, `approved`, `rejected` or `timed_out`.
        status: String,
        /// `request_approval`, `cancel_run` or `mcp_tool_call`.
        source: String,
        /// Only approvals created in the last N days.
        since_days: u64,
        /// Page size.
        limit: u64,
        /// Items to skip.
        offset: u64,
        /// Text search.
        search: String,
    }

    async fn fetch(self) -> Result<Page<Approval>> {
        let call = apply!(
            self.client.api.approvals_list(),
            self,
            [
                thread_id, agent_id, status, source, since_days, limit, offset, search
            ]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListApprovals => Approval, paged);

/// A JSON object (`editedArgs`).
type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Builder for [`Approvals::resolve`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ResolveApproval {
    client: PlatosClient,
    approval_id: String,
    approved: bool,
    comment: Option<String>,
    edited_args: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ResolveApproval {
    setters! {
        /// A note recorded with the decision.
        comment: String,
        /// Replacement arguments for the tool call being approved.
        edited_args: JsonObject,
    }

    /// Sends the decision. Resolving an already-resolved approval answers
    /// with its recorded outcome (`persisted: true`), not an error.
    pub async fn send(self) -> Result<ApprovalResolution> {
        let body = ResolveApprovalRequest {
            approved: self.approved,
            comment: self.comment,
            edited_args: self.edited_args.unwrap_or_default(),
        };
        finish(
            self.client
                .api
                .approvals_resolve()
                .approval_id(path_id(&self.approval_id)?)
                .body(body)
                .send()
                .await,
        )
        .await
    }
}
into_future!(ResolveApproval => ApprovalResolution);

//! `client.budgets()`: spending caps and where spending stands (wire.md
//! §3.5). Read-only: caps are managed in the dashboard. Money is in
//! fractional cents (`f64`).

use crate::PlatosClient;
use crate::error::Result;
use crate::paging::Page;
use crate::request::{Envelope, apply, into_future, list_builder, setters};
use crate::transport::{finish, finish_envelope};
use crate::types::{BudgetCap, BudgetStatusResponse};

/// Budgets namespace.
#[derive(Debug, Clone, Copy)]
pub struct Budgets<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Budget caps and status.
    pub fn budgets(&self) -> Budgets<'_> {
        Budgets { client: self }
    }
}

impl Budgets<'_> {
    /// Lists budget caps (`GET /budgets`).
    pub fn list(&self) -> ListBudgets {
        ListBudgets {
            client: self.client.clone(),
            page: None,
            limit: None,
            offset: None,
        }
    }

    /// Spending against each cap now, and whether calls are blocked.
    pub fn status(&self) -> BudgetStatusQuery {
        BudgetStatusQuery {
            client: self.client.clone(),
            agent_id: None,
            user_id: None,
        }
    }
}

/// Builder for [`Budgets::list`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListBudgets {
    client: PlatosClient,
    page: Option<u64>,
    limit: Option<u64>,
    offset: Option<u64>,
}

impl ListBudgets {
    setters! {
        /// Page number.
        page: u64,
        /// Page size.
        limit: u64,
        /// Items to skip.
        offset: u64,
    }

    async fn fetch(self) -> Result<Page<BudgetCap>> {
        let call = apply!(self.client.api.budgets_list(), self, [page, limit, offset]);
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListBudgets => BudgetCap, paged, page);

/// Builder for [`Budgets::status`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct BudgetStatusQuery {
    client: PlatosClient,
    agent_id: Option<String>,
    user_id: Option<String>,
}

impl BudgetStatusQuery {
    setters! {
        /// Include this agent's caps.
        agent_id: String,
        /// Include this user's caps.
        user_id: String,
    }

    /// Sends the call; the answer is returned whole.
    pub async fn send(self) -> Result<BudgetStatusResponse> {
        let call = apply!(self.client.api.budgets_status(), self, [agent_id, user_id]);
        finish(call.send().await).await
    }
}
into_future!(BudgetStatusQuery => BudgetStatusResponse);

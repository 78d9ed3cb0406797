//! `client.jobs()`: background jobs as current servers serve them
//! (wire.md §3.8).

use crate::PlatosClient;
use crate::error::{Error, Result};
use crate::paging::Page;
use crate::request::{Envelope, apply, list_builder, path_id, setters};
use crate::transport::{finish, finish_envelope};
use crate::types::{
    CreateJobRequest, DispatchJobRequest, DispatchResult, Job, JobEnvelope, UpdateJobRequest,
};

/// Jobs namespace.
#[derive(Debug, Clone, Copy)]
pub struct Jobs<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Background jobs.
    pub fn jobs(&self) -> Jobs<'_> {
        Jobs { client: self }
    }
}

impl Jobs<'_> {
    /// Lists jobs (`GET /jobs`).
    pub fn list(&self) -> ListJobs {
        ListJobs {
            client: self.client.clone(),
            page: None,
            limit: None,
            offset: None,
            search: None,
            status: None,
        }
    }

    /// Creates a job; a duplicate `jobId` is a 409 refusal.
    pub async fn create(&self, job: CreateJobRequest) -> Result<Job> {
        unwrap_job(finish(self.client.api.jobs_create().body(job).send().await).await?)
    }

    /// One job (404 is an error: a job id is usually known to exist).
    pub async fn get(&self, job_id: &str) -> Result<Job> {
        unwrap_job(
            finish(
                self.client
                    .api
                    .jobs_get()
                    .job_id(path_id(job_id)?)
                    .send()
                    .await,
            )
            .await?,
        )
    }

    /// Changes any subset of a job's fields.
    pub async fn update(&self, job_id: &str, changes: UpdateJobRequest) -> Result<Job> {
        unwrap_job(
            finish(
                self.client
                    .api
                    .jobs_update()
                    .job_id(path_id(job_id)?)
                    .body(changes)
                    .send()
                    .await,
            )
            .await?,
        )
    }

    /// Deletes a job.
    pub async fn delete(&self, job_id: &str) -> Result<()> {
        // The `{deleted}` answer is ignored, so an empty one (204) is fine.
        finish_envelope(
            self.client
                .api
                .jobs_delete()
                .job_id(path_id(job_id)?)
                .send()
                .await,
        )
        .await?;
        Ok(())
    }

    /// Runs a job now with `payload`.
    pub async fn dispatch(
        &self,
        job_id: &str,
        payload: serde_json::Map<String, serde_json::Value>,
    ) -> Result<DispatchResult> {
        finish(
            self.client
                .api
                .jobs_dispatch()
                .job_id(path_id(job_id)?)
                .body(DispatchJobRequest { payload })
                .send()
                .await,
        )
        .await
    }
}

/// `{job, syntaxError?}` → the job. A handler syntax error is logged: the
/// server saved the job all the same.
fn unwrap_job(envelope: JobEnvelope) -> Result<Job> {
    if let Some(syntax_error) = &envelope.syntax_error {
        tracing::warn!(%syntax_error, "the server reported a syntax error in the job handler");
    }
    envelope
        .job
        .ok_or_else(|| Error::decode(None, "job", "the answer has no `job`", b""))
}

/// Builder for [`Jobs::list`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListJobs {
    client: PlatosClient,
    page: Option<u64>,
    limit: Option<u64>,
    offset: Option<u64>,
    search: Option<String>,
    status: Option<String>,
}

impl ListJobs {
    setters! {
        /// Page number.
        page: u64,
        /// Page size.
        limit: u64,
        /// Items to skip.
        offset: u64,
        /// Text search.
        search: String,
        /// `PENDING`, `ACTIVE`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
        status: String,
    }

    async fn fetch(self) -> Result<Page<Job>> {
        let call = apply!(
            self.client.api.jobs_list(),
            self,
            [page, limit, offset, search, status]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListJobs => Job, paged, page);

//! `client.bgo()`: the seed-era background-operation routes under
//! `/trigger/...` (wire.md §3.7). Current servers serve [`jobs`](crate::Jobs)
//! instead; these stay for servers that still speak them.
//! `client.trigger()` is the deprecated name of the same namespace.

use http::Method;
use progenitor_client::{ClientHooks, OperationInfo};

use crate::PlatosClient;
use crate::error::{Error, Result};
use crate::paging::Page;
use crate::request::{Envelope, apply, into_future, list_builder, path_id, setters};
use crate::transport::{decode, finish, finish_envelope, read_json, transport_error};
use crate::types::{
    Batch, BatchHandle, BgoRun, BgoSchedule, BgoTask, CancelRunResponse, CreateScheduleRequest,
    RunHandle, TriggerBatchRequest, TriggerOptions, TriggerTaskRequest,
};

/// The REST prefix `raw` paths are relative to.
const API_PREFIX: &str = "/api/v1/agent";

/// Background-operations namespace.
#[derive(Debug, Clone, Copy)]
pub struct Bgo<'c> {
    client: &'c PlatosClient,
}

impl PlatosClient {
    /// Background operations (`/trigger/...` routes).
    pub fn bgo(&self) -> Bgo<'_> {
        Bgo { client: self }
    }

    /// The old name of [`bgo`](Self::bgo); the same object.
    #[deprecated(since = "0.1.0", note = "use `bgo()`")]
    pub fn trigger(&self) -> Bgo<'_> {
        self.bgo()
    }
}

impl<'c> Bgo<'c> {
    /// Task definitions.
    pub fn tasks(&self) -> BgoTasks<'c> {
        BgoTasks {
            client: self.client,
        }
    }

    /// Task runs.
    pub fn runs(&self) -> BgoRuns<'c> {
        BgoRuns {
            client: self.client,
        }
    }

    /// Cron schedules.
    pub fn schedules(&self) -> BgoSchedules<'c> {
        BgoSchedules {
            client: self.client,
        }
    }

    /// Batch triggers.
    pub fn batches(&self) -> BgoBatches<'c> {
        BgoBatches {
            client: self.client,
        }
    }

    /// Escape hatch: any method on any path under `/api/v1/agent` (a path
    /// already starting with `/api/` is used as is), with the client's auth,
    /// retries and error handling. Returns the raw JSON (`null` for an
    /// empty body).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        self.client.inner().check_scope()?;
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::config(format!("`{method}` is not an HTTP method")))?;
        let path = if path.starts_with("/api/") {
            path.to_owned()
        } else {
            format!("{API_PREFIX}/{}", path.trim_start_matches('/'))
        };
        let url = format!("{}{}", self.client.base_url(), path);
        let mut request = self.client.http().request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let request = request
            .build()
            .map_err(|e| Error::config(format!("building the request: {e}")))?;
        let info = OperationInfo {
            operation_id: "bgo_raw",
        };
        let response = self
            .client
            .api
            .exec(request, &info)
            .await
            .map_err(transport_error)?;
        read_json(response).await
    }
}

/// The options sent when none are given: `{}` (wire.md §3.7).
fn options_or_empty(options: Option<TriggerOptions>) -> Result<TriggerOptions> {
    options.map_or_else(|| decode(None, b"{}"), Ok)
}

/// `bgo().tasks()`.
#[derive(Debug, Clone, Copy)]
pub struct BgoTasks<'c> {
    client: &'c PlatosClient,
}

impl BgoTasks<'_> {
    /// Lists task definitions.
    pub async fn list(&self) -> Result<Vec<BgoTask>> {
        let answer = finish_envelope(self.client.api.bgo_tasks_list().send().await).await?;
        Ok(answer.into_page().items)
    }

    /// Triggers a run of `task_id` with `payload`.
    pub fn trigger(&self, task_id: impl Into<String>, payload: serde_json::Value) -> TriggerTask {
        TriggerTask {
            client: self.client.clone(),
            task_id: task_id.into(),
            payload,
            options: None,
        }
    }
}

/// Builder for [`BgoTasks::trigger`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct TriggerTask {
    client: PlatosClient,
    task_id: String,
    payload: serde_json::Value,
    options: Option<TriggerOptions>,
}

impl TriggerTask {
    setters! {
        /// Run options (`{}` when not set).
        options: TriggerOptions,
    }

    /// Sends the call.
    pub async fn send(self) -> Result<RunHandle> {
        let body = TriggerTaskRequest {
            payload: self.payload,
            options: options_or_empty(self.options)?,
        };
        finish(
            self.client
                .api
                .bgo_tasks_trigger()
                .task_id(path_id(&self.task_id)?)
                .body(body)
                .send()
                .await,
        )
        .await
    }
}
into_future!(TriggerTask => RunHandle);

/// `bgo().runs()`.
#[derive(Debug, Clone, Copy)]
pub struct BgoRuns<'c> {
    client: &'c PlatosClient,
}

impl BgoRuns<'_> {
    /// Lists runs.
    pub fn list(&self) -> ListBgoRuns {
        ListBgoRuns {
            client: self.client.clone(),
            task_id: None,
            status: None,
            limit: None,
        }
    }

    /// One run.
    pub async fn get(&self, run_id: &str) -> Result<BgoRun> {
        finish(
            self.client
                .api
                .bgo_runs_get()
                .run_id(path_id(run_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Cancels a run.
    pub async fn cancel(&self, run_id: &str) -> Result<CancelRunResponse> {
        finish(
            self.client
                .api
                .bgo_runs_cancel()
                .run_id(path_id(run_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Starts a new run with the same payload.
    pub async fn replay(&self, run_id: &str) -> Result<RunHandle> {
        finish(
            self.client
                .api
                .bgo_runs_replay()
                .run_id(path_id(run_id)?)
                .send()
                .await,
        )
        .await
    }
}

/// Builder for [`BgoRuns::list`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct ListBgoRuns {
    client: PlatosClient,
    task_id: Option<String>,
    status: Option<String>,
    limit: Option<u64>,
}

impl ListBgoRuns {
    setters! {
        /// Only this task's runs.
        task_id: String,
        /// Only runs in this status.
        status: String,
        /// At most this many.
        limit: u64,
    }

    async fn fetch(self) -> Result<Page<BgoRun>> {
        let call = apply!(
            self.client.api.bgo_runs_list(),
            self,
            [task_id, status, limit]
        );
        Ok(finish_envelope(call.send().await).await?.into_page())
    }
}
list_builder!(ListBgoRuns => BgoRun);

/// `bgo().schedules()`.
#[derive(Debug, Clone, Copy)]
pub struct BgoSchedules<'c> {
    client: &'c PlatosClient,
}

impl BgoSchedules<'_> {
    /// Lists schedules.
    pub async fn list(&self) -> Result<Vec<BgoSchedule>> {
        let answer = finish_envelope(self.client.api.bgo_schedules_list().send().await).await?;
        Ok(answer.into_page().items)
    }

    /// Creates a schedule (`taskId`, `cron`, optional `timezone`, `payload`).
    pub async fn create(&self, schedule: CreateScheduleRequest) -> Result<BgoSchedule> {
        finish(
            self.client
                .api
                .bgo_schedules_create()
                .body(schedule)
                .send()
                .await,
        )
        .await
    }

    /// Turns a schedule on.
    pub async fn activate(&self, schedule_id: &str) -> Result<BgoSchedule> {
        finish(
            self.client
                .api
                .bgo_schedules_activate()
                .schedule_id(path_id(schedule_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Turns a schedule off.
    pub async fn deactivate(&self, schedule_id: &str) -> Result<BgoSchedule> {
        finish(
            self.client
                .api
                .bgo_schedules_deactivate()
                .schedule_id(path_id(schedule_id)?)
                .send()
                .await,
        )
        .await
    }

    /// Deletes a schedule.
    pub async fn delete(&self, schedule_id: &str) -> Result<()> {
        finish(
            self.client
                .api
                .bgo_schedules_delete()
                .schedule_id(path_id(schedule_id)?)
                .send()
                .await,
        )
        .await
    }
}

/// `bgo().batches()`.
#[derive(Debug, Clone, Copy)]
pub struct BgoBatches<'c> {
    client: &'c PlatosClient,
}

impl BgoBatches<'_> {
    /// Triggers one run of `task_id` per payload.
    pub fn trigger(
        &self,
        task_id: impl Into<String>,
        payloads: Vec<serde_json::Value>,
    ) -> TriggerBatch {
        TriggerBatch {
            client: self.client.clone(),
            task_id: task_id.into(),
            payloads,
            options: None,
        }
    }

    /// One batch and its runs.
    pub async fn get(&self, batch_id: &str) -> Result<Batch> {
        finish(
            self.client
                .api
                .bgo_batches_get()
                .batch_id(path_id(batch_id)?)
                .send()
                .await,
        )
        .await
    }
}

/// Builder for [`BgoBatches::trigger`].
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct TriggerBatch {
    client: PlatosClient,
    task_id: String,
    payloads: Vec<serde_json::Value>,
    options: Option<TriggerOptions>,
}

impl TriggerBatch {
    setters! {
        /// Options applied to every run (`{}` when not set).
        options: TriggerOptions,
    }

    /// Sends the call.
    pub async fn send(self) -> Result<BatchHandle> {
        let body = TriggerBatchRequest {
            payloads: self.payloads,
            options: options_or_empty(self.options)?,
        };
        finish(
            self.client
                .api
                .bgo_batches_trigger()
                .task_id(path_id(&self.task_id)?)
                .body(body)
                .send()
                .await,
        )
        .await
    }
}
into_future!(TriggerBatch => BatchHandle);

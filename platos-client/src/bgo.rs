//! `client.bgo()`: the seed-era background-operation routes under
//! `/trigger/...` (docs/wire.md, "bgo"). Current servers serve
//! [`jobs`](crate::requests::Jobs) instead; these stay for servers that still speak
//! them. The namespaces are generated from the spec; what lives here is the
//! escape hatch [`Bgo::raw`] and the deprecated `trigger()` alias.

use http::Method;

use crate::PlatosClient;
use crate::error::{Error, Result};
use crate::request::Operation;
use crate::requests::Bgo;
use crate::retry::Idempotency;
use crate::transport::read_json;

/// The REST prefix `raw` paths are relative to.
const API_PREFIX: &str = "/api/v1/agent";

impl PlatosClient {
    /// The old name of [`bgo`](Self::bgo); the same object.
    #[deprecated(since = "0.1.0", note = "use `bgo()`")]
    pub fn trigger(&self) -> Bgo<'_> {
        self.bgo()
    }
}

impl Bgo<'_> {
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
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::config(format!("`{method}` is not an HTTP method")))?;
        let path = if path.starts_with("/api/") {
            path.to_owned()
        } else {
            format!("{API_PREFIX}/{}", path.trim_start_matches('/'))
        };
        let url = format!("{}{}", self.client.base_url(), path);
        // Retried by the rule of its method, as any call.
        let operation = Operation {
            id: "bgo_raw",
            rule: Idempotency::of_method(&method),
            method: method.clone(),
            path: "",
            json: true,
            streams: false,
            credentials: crate::request::Credentials::Sent,
        };
        let mut request = self.client.http().request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let request = request
            .build()
            .map_err(|e| Error::config(format!("building the request: {e}")))?;
        let response = self.client.exec_raw(request, &operation).await?;
        read_json(response).await
    }
}

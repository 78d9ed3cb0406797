//! `client.raw(method, path)`: any route, as JSON, through the client's own
//! transport (auth and token refresh, retries, idempotency keys, the answer
//! size limit, typed errors). For routes the SDK has no method for yet, and
//! for tools that are driven by the spec rather than by types (the `platos`
//! command line sends every generated command through it).
//!
//! The path is a template: each `{name}` is filled by [`RawRequest::param`]
//! with the value percent-encoded as one segment, so an id holding `/` or
//! `?` cannot address another route. A template left with an unfilled
//! `{name}` is refused before anything is sent.

use http::Method;
use progenitor_client::{ClientHooks, OperationInfo};

use crate::PlatosClient;
use crate::error::{Error, Result};
use crate::transport::{read_json, transport_error};

/// What a raw call is named in spans and idempotency rules when the caller
/// does not name a spec operation.
const RAW_OPERATION: &str = "raw";

/// One raw call, built by [`PlatosClient::raw`] (or `V1Client::raw`) and
/// sent with [`send`](Self::send).
#[must_use = "a raw request does nothing until it is sent"]
#[derive(Debug, Clone)]
pub struct RawRequest<C> {
    client: C,
    method: String,
    template: String,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<serde_json::Value>,
    operation: &'static str,
}

impl<C> RawRequest<C> {
    fn new(client: C, method: &str, template: &str) -> Self {
        RawRequest {
            client,
            method: method.to_owned(),
            template: template.to_owned(),
            params: Vec::new(),
            query: Vec::new(),
            body: None,
            operation: RAW_OPERATION,
        }
    }

    /// Fills `{name}` in the path with `value`, percent-encoded as one
    /// segment (like `encodeURIComponent`).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Adds a query pair (repeat the name for a list).
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// The JSON body.
    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Names the spec operation (`threads_create`) this call is: its
    /// idempotency rule applies and spans carry its name. Without it the
    /// call is `raw` and follows its method's default rule (POST and PATCH
    /// carry a key minted once per call).
    pub fn operation(mut self, operation_id: &'static str) -> Self {
        self.operation = operation_id;
        self
    }

    /// The path with every `{name}` filled in.
    fn path(&self) -> Result<String> {
        let mut path = String::with_capacity(self.template.len());
        let mut rest = self.template.as_str();
        while let Some(open) = rest.find('{') {
            path.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                Error::config(format!("unclosed `{{` in path `{}`", self.template))
            })?;
            let name = &after[..close];
            let value = self
                .params
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| Error::config(format!("path parameter {name} is not given")))?;
            path.push_str(&encode_segment(name, value)?);
            rest = &after[close + 1..];
        }
        path.push_str(rest);
        Ok(path)
    }

    fn method(&self) -> Result<Method> {
        Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::config(format!("`{}` is not an HTTP method", self.method)))
    }

    fn build(&self, http: &reqwest::Client, base_url: &str) -> Result<reqwest::Request> {
        let url = format!("{base_url}{}", self.path()?);
        let mut request = http.request(self.method()?, url);
        if !self.query.is_empty() {
            request = request.query(&self.query);
        }
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        request
            .build()
            .map_err(|e| Error::config(format!("building the request: {e}")))
    }
}

/// One path segment, percent-encoded; empty, `.` and `..` would name another
/// route and are refused.
fn encode_segment(name: &str, value: &str) -> Result<String> {
    // Everything but the unreserved characters `encodeURIComponent` keeps.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    if value.is_empty() || value == "." || value == ".." {
        return Err(Error::config(format!(
            "path parameter {name} must not be empty, `.` or `..`"
        )));
    }
    Ok(percent_encoding::utf8_percent_encode(value, SEGMENT).to_string())
}

impl PlatosClient {
    /// Escape hatch: `method` on `path` (a template under the base URL,
    /// such as `/api/v1/agent/threads/{threadId}`) with this client's auth,
    /// retries, idempotency keys and errors; answers the raw JSON (`null`
    /// for an empty body).
    ///
    /// ```no_run
    /// # async fn demo(client: platos_client::PlatosClient) -> platos_client::Result<()> {
    /// let thread = client
    ///     .raw("GET", "/api/v1/agent/threads/{threadId}")
    ///     .param("threadId", "thr_1")
    ///     .send()
    ///     .await?;
    /// println!("{}", thread["title"]);
    /// # Ok(()) }
    /// ```
    pub fn raw(&self, method: &str, path: &str) -> RawRequest<&PlatosClient> {
        RawRequest::new(self, method, path)
    }
}

impl RawRequest<&PlatosClient> {
    /// Sends the call.
    pub async fn send(self) -> Result<serde_json::Value> {
        let client = self.client;
        client.inner().check_scope()?;
        let request = self.build(client.http(), client.base_url())?;
        let info = OperationInfo {
            operation_id: self.operation,
        };
        let response = client
            .api
            .exec(request, &info)
            .await
            .map_err(transport_error)?;
        read_json(response).await
    }
}

#[cfg(feature = "v1")]
impl crate::v1::V1Client {
    /// Escape hatch: `method` on `path` (a template under the base URL, such
    /// as `/api/v1/organizations/{organizationId}/members`) with the operator
    /// credential, retries and errors of this client; answers the raw JSON
    /// envelope (`null` for a 204). Name the spec operation with
    /// [`RawRequest::operation`] to send the idempotency key its class asks for.
    pub fn raw(&self, method: &str, path: &str) -> RawRequest<&crate::v1::V1Client> {
        RawRequest::new(self, method, path)
    }
}

#[cfg(feature = "v1")]
impl RawRequest<&crate::v1::V1Client> {
    /// Sends the call.
    pub async fn send(self) -> Result<serde_json::Value> {
        let client = self.client;
        let mut request = self.build(&client.shared().http, client.base_url())?;
        let info = OperationInfo {
            operation_id: self.operation,
        };
        client
            .api
            .pre::<()>(&mut request, &info)
            .await
            .map_err(|e| Error::config(e.to_string()))?;
        let response = client
            .api
            .exec(request, &info)
            .await
            .map_err(transport_error)?;
        read_json(response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(template: &str) -> RawRequest<()> {
        RawRequest::new((), "GET", template)
    }

    #[test]
    fn fills_the_template_with_encoded_segments() {
        let path = request("/api/v1/agent/threads/{threadId}/messages")
            .param("threadId", "a b/c?d")
            .path()
            .expect("filled");
        assert_eq!(path, "/api/v1/agent/threads/a%20b%2Fc%3Fd/messages");
    }

    #[test]
    fn refuses_missing_empty_and_dot_segments() {
        let missing = request("/x/{id}").path().unwrap_err();
        assert!(matches!(missing, Error::Config(_)));
        assert!(missing.message().contains("id"), "{missing}");
        for bad in ["", ".", ".."] {
            let err = request("/x/{id}").param("id", bad).path().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad:?}");
        }
        assert!(request("/x/{id").param("id", "1").path().is_err());
    }

    #[test]
    fn refuses_a_method_that_is_not_one() {
        let err = RawRequest::new((), "GE T", "/x").method().unwrap_err();
        assert!(matches!(err, Error::Config(_)));
    }
}

//! `client.raw(method, path)`: any route, as JSON, through the client's own
//! transport (auth and token refresh, retries, idempotency keys, the answer
//! size limit, typed errors). For routes the SDK has no method for yet, and
//! for tools that are driven by the spec rather than by types (the `platos`
//! command line sends every generated command through it).
//!
//! A raw call is retried by the rule of its method, like any call: POST and
//! PATCH carry an idempotency key minted once per call (V1: every write
//! does; routes that do not key ignore it), unless [`RawRequest::once`]
//! says a repeat could act twice.
//!
//! The path is a template: each `{name}` is filled by [`RawRequest::param`]
//! with the value percent-encoded as one segment, so an id holding `/` or
//! `?` cannot address another route. A template left with an unfilled
//! `{name}` is refused before anything is sent.

use http::Method;

use crate::PlatosClient;
use crate::error::{Error, Result};
use crate::request::{Credentials, Operation};
use crate::retry::Idempotency;
use crate::transport::read_json;

/// What a raw call is named in spans when the caller does not name it.
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
    once: bool,
    credentials: Credentials,
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
            once: false,
            credentials: Credentials::Sent,
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

    /// Names the call in spans and logs (the spec's `operationId`, such
    /// as `threads_create`); `raw` otherwise.
    pub fn operation(mut self, operation_id: &'static str) -> Self {
        self.operation = operation_id;
        self
    }

    /// Sends the call without the client's credentials (auth header,
    /// session token, scope headers): for routes that read none, such as
    /// the guest-token mint (`security: []` in the spec).
    pub fn anonymous(mut self) -> Self {
        self.credentials = Credentials::Omitted;
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

    /// The URL: the filled path, then the query (a space spelled `%20`,
    /// as on every other call).
    fn url(&self, base_url: &str) -> Result<String> {
        let mut url = format!("{base_url}{}", self.path()?);
        if !self.query.is_empty() {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish();
            // The serializer spells a space `+` and a literal `+` `%2B`: the swap is exact.
            url.push('?');
            url.push_str(&query.replace('+', "%20"));
        }
        Ok(url)
    }

    fn body_bytes(&self) -> Result<Option<Vec<u8>>> {
        self.body
            .as_ref()
            .map(|body| {
                serde_json::to_vec(body)
                    .map_err(|e| Error::config(format!("encoding the body: {e}")))
            })
            .transpose()
    }

    fn build(&self, http: &reqwest::Client, base_url: &str) -> Result<reqwest::Request> {
        let mut request = http.request(self.method()?, self.url(base_url)?);
        if let Some(body) = self.body_bytes()? {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
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
    /// Sends the call once, without an idempotency key, and never again:
    /// for routes where a repeat could act twice and the server does not
    /// de-duplicate (`x-platos-idempotency: once` in the spec, such as a
    /// tool's test call). (Agent API: every V1 write may be repeated.)
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// Sends the call.
    pub async fn send(self) -> Result<serde_json::Value> {
        let client = self.client;
        let method = self.method()?;
        let rule = if self.once {
            Idempotency::Once
        } else {
            Idempotency::of_method(&method)
        };
        let operation = Operation {
            id: self.operation,
            method,
            path: "",
            rule,
            json: true,
            streams: false,
            credentials: self.credentials,
        };
        let request = self.build(client.http(), client.base_url())?;
        let response = client.exec_raw(request, &operation).await?;
        read_json(response).await
    }
}

#[cfg(feature = "v1")]
impl crate::v1::V1Client {
    /// Escape hatch: `method` on `path` (a template under the base URL, such
    /// as `/api/v1/organizations/{organizationId}/members`) with the operator
    /// credential, retries and errors of this client; answers the raw JSON
    /// envelope (`null` for a 204). Every write carries an idempotency key
    /// minted once per call and reused on every retry (routes that do not
    /// key ignore it), so every call may be retried, as the V1 contract says.
    pub fn raw(&self, method: &str, path: &str) -> RawRequest<&crate::v1::V1Client> {
        RawRequest::new(self, method, path)
    }
}

#[cfg(feature = "v1")]
impl RawRequest<&crate::v1::V1Client> {
    /// Sends the call.
    pub async fn send(self) -> Result<serde_json::Value> {
        use crate::v1::KeyClass;
        let client = self.client;
        let method = self.method()?;
        // A key on every write: routes that key de-duplicate on it, the
        // others do not read it.
        let rule = if method == Method::GET || method == Method::HEAD {
            KeyClass::NotApplicable
        } else {
            KeyClass::Accepted
        };
        let operation = Operation {
            id: self.operation,
            method,
            path: "",
            rule,
            json: true,
            streams: false,
            credentials: self.credentials,
        };
        let url = self.url(client.base_url())?;
        let body = self.body_bytes()?;
        let answer = client
            .execute(&operation, url, body, &Default::default())
            .await?;
        answer.finish_json().await
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
    fn spells_a_space_in_the_query_as_percent_20() {
        let url = request("/x")
            .query("q", "a b+c")
            .url("http://h")
            .expect("url");
        assert_eq!(url, "http://h/x?q=a%20b%2Bc");
    }

    #[test]
    fn refuses_a_method_that_is_not_one() {
        let err = RawRequest::new((), "GE T", "/x").method().unwrap_err();
        assert!(matches!(err, Error::Config(_)));
    }
}

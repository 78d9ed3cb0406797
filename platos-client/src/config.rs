//! Client configuration values: scope, retry policy, secrets.
//!
//! Everything here is plain data. The builder in [`crate::client`] checks it;
//! [`crate::transport`] and [`crate::realtime`] act on it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A secret string (token, api key, user token) that never prints.
///
/// `Debug` and `Display` show `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// The tenant a call acts in: organization, project, environment and
/// optionally the end user.
///
/// Sent as the `X-Platos-*` headers (docs/wire.md §1.1) and in the realtime
/// connect payload. A client has a default scope; `PlatosClient::with_scope`
/// overrides it for the calls made through the returned handle.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Scope {
    /// `organizationId`
    pub organization_id: String,
    /// `projectId`
    pub project_id: String,
    /// `environmentId`
    pub environment_id: String,
    /// `userId`: the end user the call speaks for.
    pub user_id: Option<String>,
    /// Opaque end-user token, sent as `X-Platos-User-Token`.
    pub user_token: Option<Secret>,
}

impl Scope {
    /// A scope without a user.
    pub fn new(
        organization_id: impl Into<String>,
        project_id: impl Into<String>,
        environment_id: impl Into<String>,
    ) -> Self {
        Scope {
            organization_id: organization_id.into(),
            project_id: project_id.into(),
            environment_id: environment_id.into(),
            user_id: None,
            user_token: None,
        }
    }

    /// Sets the end user's id.
    pub fn with_user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the opaque end-user token.
    pub fn with_user_token(mut self, user_token: impl Into<Secret>) -> Self {
        self.user_token = Some(user_token.into());
        self
    }

    /// The header pairs this scope adds to a request (docs/wire.md §1.1).
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (
                "x-platos-organization-id",
                Some(self.organization_id.as_str()),
            ),
            ("x-platos-project-id", Some(self.project_id.as_str())),
            (
                "x-platos-environment-id",
                Some(self.environment_id.as_str()),
            ),
            ("x-platos-user-id", self.user_id.as_deref()),
            (
                "x-platos-user-token",
                self.user_token.as_ref().map(Secret::expose),
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
    }

    pub(crate) fn is_complete(&self) -> bool {
        !self.organization_id.trim().is_empty()
            && !self.project_id.trim().is_empty()
            && !self.environment_id.trim().is_empty()
    }
}

/// Checks a configured base URL: present, an `http(s)` URL; a trailing `/`
/// is dropped, a path prefix kept.
pub(crate) fn base_url(raw: Option<String>) -> crate::Result<String> {
    let raw = raw
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| crate::Error::config("a base URL is required"))?;
    let base_url = raw.trim().trim_end_matches('/').to_owned();
    let parsed = url::Url::parse(&base_url)
        .map_err(|e| crate::Error::config(format!("base URL `{base_url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(crate::Error::config(format!(
            "base URL `{base_url}` must start with http:// or https://"
        )));
    }
    Ok(base_url)
}

/// When and how often failed calls are tried again (docs/wire.md §2).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Tries after the first one. Default 3.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time. Default 250 ms.
    pub base_delay: Duration,
    /// Upper bound of the exponential delay. Default 10 s.
    pub max_delay: Duration,
    /// Each delay is multiplied by a uniform factor in `[1 - jitter, 1 + jitter]`. Default 0.2.
    pub jitter: f64,
    /// A server's `Retry-After` is honoured up to this long; a longer one
    /// ends the call at once with the rate-limit (or server) error, which
    /// carries the server's [`retry_after`](crate::Error::retry_after).
    /// Default 60 s.
    pub max_retry_after: Duration,
    /// The longest one call waits between its tries, all waits together; a
    /// retry that would exceed it is not made. Default 60 s.
    pub max_total_wait: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(60),
            max_total_wait: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// Never retry.
    pub fn disabled() -> Self {
        RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        }
    }

    /// Sets the number of retries after the first try.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets the first delay and the cap of the exponential backoff.
    pub fn with_delays(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max;
        self
    }

    /// Sets the jitter fraction (clamped to `0.0..=1.0`).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = clamp_jitter(jitter);
        self
    }

    /// Sets the longest `Retry-After` the client will wait.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets the longest one call waits between tries, all waits together.
    pub fn with_max_total_wait(mut self, max: Duration) -> Self {
        self.max_total_wait = max;
        self
    }
}

/// How the realtime stream reconnects after losing its connection (docs/wire.md §4.4).
#[cfg(feature = "realtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReconnectConfig {
    /// Reconnects in a row that delivered nothing before a turn's stream
    /// fails: any event the connection delivers restores the whole budget, so
    /// a long turn on a flaky network survives as long as it makes progress.
    /// Default 5.
    pub max_attempts: u32,
    /// Delay before attempt k is `min(max_delay, base_delay · 2^(k−1))`. Default 0.5 s.
    pub base_delay: Duration,
    /// Default 10 s.
    pub max_delay: Duration,
    /// Jitter fraction applied to each delay. Default 0.2.
    pub jitter: f64,
}

#[cfg(feature = "realtime")]
impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

#[cfg(feature = "realtime")]
impl ReconnectConfig {
    /// Sets the number of reconnect attempts.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets the first delay and the cap.
    pub fn with_delays(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max;
        self
    }

    /// Sets the jitter fraction (clamped to `0.0..=1.0`).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = clamp_jitter(jitter);
        self
    }
}

/// A jitter fraction that cannot make a delay negative or NaN.
fn clamp_jitter(jitter: f64) -> f64 {
    if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

//! Credentials and single-flight token refresh (docs/wire.md §1.1, §1.3).
//!
//! One [`Auth`] is shared by every clone of a client and by its realtime
//! streams, so a token refreshed by one call is the token every later call and
//! every reconnect uses. Refresh is coalesced: however many calls fail with
//! the same token at once, the callback runs once and all of them replay with
//! its answer. A refresh that failed is shared by the calls that were sent
//! with the same token before it failed (N calls failing together cost one
//! callback call either way); a call sent after the failure asks again, so one
//! failed refresh (say, the backend was briefly down) does not disable
//! refreshing for good.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::Secret;
use crate::error::BoxError;

/// What the refresh callback is told.
#[derive(Clone)]
#[non_exhaustive]
pub struct RefreshContext {
    /// The token the server refused.
    pub current_token: Secret,
    /// The HTTP status that triggered the refresh (401 or 403; 401 for
    /// realtime refusals, which carry no status).
    pub status: u16,
}

impl fmt::Debug for RefreshContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshContext")
            .field("current_token", &"***")
            .field("status", &self.status)
            .finish()
    }
}

type RefreshFuture = Pin<Box<dyn Future<Output = Result<Option<String>, BoxError>> + Send>>;

/// How long `on_token_refresh` may take by default.
pub(crate) const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// The token-refresh callback, type-erased.
pub(crate) type Refresher = Arc<dyn Fn(RefreshContext) -> RefreshFuture + Send + Sync>;

pub(crate) fn refresher<F, Fut, E>(f: F) -> Refresher
where
    F: Fn(RefreshContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<String>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    Arc::new(move |ctx| {
        let fut = f(ctx);
        Box::pin(async move { fut.await.map_err(Into::into) })
    })
}

/// Which credential the client presents.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// `X-Platos-Session-Token`, refreshable.
    Session,
    /// `Authorization: Bearer` plus scope headers; never refreshed.
    ApiKey(Secret),
}

/// The credential and scope headers of one request (docs/wire.md §1.1), in
/// the order they are sent: what REST and the WebSocket upgrade both send,
/// `token` being the current session token in session mode.
pub(crate) fn each_header(
    mode: &Mode,
    token: Option<&Secret>,
    scope: Option<&crate::config::Scope>,
    mut put: impl FnMut(&'static str, &str),
) {
    match mode {
        Mode::Session => {
            if let Some(token) = token {
                put(SESSION_TOKEN, token.expose());
            }
        }
        Mode::ApiKey(key) => put("authorization", &format!("Bearer {}", key.expose())),
    }
    for (name, value) in scope.into_iter().flat_map(crate::config::Scope::headers) {
        put(name, value);
    }
}

/// The header a session token travels in.
pub(crate) const SESSION_TOKEN: &str = "x-platos-session-token";

pub(crate) struct Auth {
    mode: Mode,
    state: Mutex<TokenState>,
    refresher: Option<Refresher>,
    /// How long the callback may take; past it, the refresh has failed.
    refresh_timeout: Duration,
    /// Held while the callback runs so concurrent failures wait for its answer.
    refresh_gate: tokio::sync::Mutex<()>,
}

struct TokenState {
    token: Option<Secret>,
    /// Refresh attempts finished so far; a call notes it when it reads the
    /// token, to tell failures it shares from failures that predate it.
    epoch: u64,
    /// The token whose refresh failed, and the epoch that failure ended.
    failed: Option<(Secret, u64)>,
}

impl Auth {
    pub(crate) fn session(
        token: Secret,
        refresher: Option<Refresher>,
        refresh_timeout: Duration,
    ) -> Self {
        Auth {
            mode: Mode::Session,
            state: Mutex::new(TokenState {
                token: Some(token),
                epoch: 0,
                failed: None,
            }),
            refresher,
            refresh_timeout,
            refresh_gate: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn api_key(key: Secret) -> Self {
        Auth {
            mode: Mode::ApiKey(key),
            state: Mutex::new(TokenState {
                token: None,
                epoch: 0,
                failed: None,
            }),
            refresher: None,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            refresh_gate: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The session token now in force (None in api-key mode).
    pub(crate) fn session_token(&self) -> Option<Secret> {
        self.session_token_with_epoch().0
    }

    /// The session token now in force and the refresh epoch it was read
    /// in, for [`refresh_after_since`](Self::refresh_after_since).
    pub(crate) fn session_token_with_epoch(&self) -> (Option<Secret>, u64) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.token.clone(), state.epoch)
    }

    /// Whether a refused call may be refreshed and replayed.
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self.mode, Mode::Session) && self.refresher.is_some()
    }

    /// Called after `refused` was refused with `status`. Returns the token to
    /// replay with, or None when the refusal stands. Shares a refresh that
    /// failed while this caller waited for the gate.
    #[cfg(any(test, feature = "realtime"))]
    pub(crate) async fn refresh_after(&self, refused: &Secret, status: u16) -> Option<Secret> {
        let epoch = self.session_token_with_epoch().1;
        self.refresh_after_since(refused, status, epoch).await
    }

    /// Like [`refresh_after`](Self::refresh_after) for a call that read
    /// `refused` in `epoch`: a refresh of that token that failed after the
    /// call read it is shared, not repeated.
    pub(crate) async fn refresh_after_since(
        &self,
        refused: &Secret,
        status: u16,
        epoch: u64,
    ) -> Option<Secret> {
        let refresher = self.refresher.as_ref().filter(|_| self.can_refresh())?;
        let _gate = self.refresh_gate.lock().await;
        {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match &state.token {
                // Someone refreshed while we waited: replay with theirs.
                Some(current) if current != refused => return Some(current.clone()),
                _ => {}
            }
            if let Some((failed, at)) = &state.failed
                && failed == refused
                && *at > epoch
            {
                return None;
            }
        }
        let call = refresher(RefreshContext {
            current_token: refused.clone(),
            status,
        });
        // A hung callback must not hold every refused call (and reconnect)
        // forever: past its time it has failed, and the next refusal may ask
        // again.
        let answer = match tokio::time::timeout(self.refresh_timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "on_token_refresh did not answer within {:?}",
                self.refresh_timeout
            )
            .into()),
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.epoch += 1;
        match answer {
            Ok(Some(new)) if !new.is_empty() && new != refused.expose() => {
                let new = Secret::new(new);
                state.token = Some(new.clone());
                state.failed = None;
                Some(new)
            }
            Ok(_) => {
                state.failed = Some((refused.clone(), state.epoch));
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "token refresh callback failed");
                state.failed = Some((refused.clone(), state.epoch));
                None
            }
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Session => "session-token",
            Mode::ApiKey(_) => "api-key",
        };
        f.debug_struct("Auth")
            .field("mode", &mode)
            .field("refresh", &self.refresher.is_some())
            .finish()
    }
}

/// 403 codes a new token of the same caller cannot lift: the caller is not
/// allowed, whatever its token (docs/wire.md, "Who may call what").
const NOT_AUTH_403: &[&str] = &[
    "OPERATOR_ONLY",
    "AGENT_SCOPE_MISMATCH",
    "RATING_ACTOR_FORBIDDEN",
    "FORBIDDEN_SCOPE",
    "MISSING_PERMISSION",
    "IMPERSONATION_FORBIDDEN",
];

/// Whether asking `on_token_refresh` can help with a refusal: on a 401, and
/// on a 403 unless its code says the caller (not the token) is refused.
pub(crate) fn refresh_may_help(status: u16, code: Option<&str>) -> bool {
    match status {
        401 => true,
        403 => !code.is_some_and(|c| NOT_AUTH_403.contains(&c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_refreshes_coalesce() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let auth = Arc::new(Auth::session(
            Secret::new("old"),
            Some(refresher(move |_ctx| {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, BoxError>(Some("new".to_string()))
                }
            })),
            DEFAULT_REFRESH_TIMEOUT,
        ));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.refresh_after(&Secret::new("old"), 401).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().expose(), "new");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(auth.session_token().unwrap().expose(), "new");
    }

    #[tokio::test]
    async fn a_failed_refresh_is_shared_only_by_calls_sent_before_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let auth = Auth::session(
            Secret::new("old"),
            Some(refresher(move |ctx: RefreshContext| {
                c.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, BoxError>(Some(ctx.current_token.expose().to_string())) }
            })),
            DEFAULT_REFRESH_TIMEOUT,
        );
        let (token, epoch) = auth.session_token_with_epoch();
        let token = token.unwrap();
        // Two calls sent with the same token: the second shares the failure.
        assert!(auth.refresh_after_since(&token, 401, epoch).await.is_none());
        assert!(auth.refresh_after_since(&token, 401, epoch).await.is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A call sent after the failure asks again.
        assert!(auth.refresh_after(&token, 401).await.is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A callback that never answers fails the calls waiting on it once its
    /// time is up, and the next refusal asks again.
    #[tokio::test(start_paused = true)]
    async fn a_hung_refresh_times_out_and_the_next_refusal_asks_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let auth = Arc::new(Auth::session(
            Secret::new("old"),
            Some(refresher(move |_ctx| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, BoxError>(Some("new".to_string()))
                }
            })),
            Duration::from_secs(5),
        ));
        let started = tokio::time::Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.refresh_after(&Secret::new("old"), 401).await })
            })
            .collect();
        for w in waiters {
            assert!(w.await.unwrap().is_none(), "the refusal stands");
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one hung call, shared");
        let new = auth.refresh_after(&Secret::new("old"), 401).await;
        assert_eq!(new.unwrap().expose(), "new");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = Auth::api_key(Secret::new("sk_live_very_secret"));
        assert!(!format!("{auth:?}").contains("very_secret"));
        let ctx = RefreshContext {
            current_token: Secret::new("tok_secret"),
            status: 401,
        };
        assert!(!format!("{ctx:?}").contains("tok_secret"));
    }
}

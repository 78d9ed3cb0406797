//! Credentials on the wire (docs/wire.md §1.1) and token refresh (§1.3),
//! including 100 concurrent refusals coalesced into one refresh.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use platos_client::{Error, PlatosClient, RefreshContext, Scope, USER_AGENT};
use platos_integration_tests::recorder::{Answer, Recorded, Recorder};
use serde_json::json;

const OLD: &str = "tok_old_session";
const NEW: &str = "tok_new_session";

const SCOPE_HEADERS: [&str; 5] = [
    "x-platos-organization-id",
    "x-platos-project-id",
    "x-platos-environment-id",
    "x-platos-user-id",
    "x-platos-user-token",
];

fn agents_ok() -> Answer {
    Answer::json(200, json!({"agents": []}))
}

fn refused(status: u16) -> Answer {
    Answer::json(
        status,
        json!({"statusCode": status, "message": "Invalid or expired session token", "error": "Unauthorized"}),
    )
}

fn scope() -> Scope {
    Scope::new("org_1", "prj_1", "env_1")
}

fn assert_common(r: &Recorded) {
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("platos-client-rust/"));
    assert_eq!(
        r.header("api-version"),
        None,
        "no header the other SDKs do not send"
    );
}

#[tokio::test]
async fn session_token_mode_headers() {
    let recorder = Recorder::start().await;
    recorder.push(agents_ok());
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token(OLD)
        .build()
        .unwrap();
    client.agents().list().await.unwrap();
    let r = recorder.only();
    assert_common(&r);
    assert_eq!(r.header("x-platos-session-token"), Some(OLD));
    assert_eq!(r.header("authorization"), None);
    for h in SCOPE_HEADERS {
        assert_eq!(r.header(h), None, "{h} without a scope");
    }
}

#[tokio::test]
async fn session_token_with_scope_user_and_user_token() {
    let recorder = Recorder::start().await;
    recorder.push(agents_ok());
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token(OLD)
        .scope(scope().with_user_id("u_1").with_user_token("utok_1"))
        .build()
        .unwrap();
    client.agents().list().await.unwrap();
    let r = recorder.only();
    assert_common(&r);
    assert_eq!(r.header("x-platos-session-token"), Some(OLD));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("x-platos-organization-id"), Some("org_1"));
    assert_eq!(r.header("x-platos-project-id"), Some("prj_1"));
    assert_eq!(r.header("x-platos-environment-id"), Some("env_1"));
    assert_eq!(r.header("x-platos-user-id"), Some("u_1"));
    assert_eq!(r.header("x-platos-user-token"), Some("utok_1"));
}

#[tokio::test]
async fn api_key_mode_headers() {
    let recorder = Recorder::start().await;
    recorder.push_n(2, agents_ok());
    let with_user = PlatosClient::builder()
        .base_url(recorder.url())
        .api_key("key_1")
        .scope(scope().with_user_id("u_1"))
        .build()
        .unwrap();
    with_user.agents().list().await.unwrap();
    let without_user = PlatosClient::builder()
        .base_url(recorder.url())
        .api_key("key_1")
        .scope(scope())
        .build()
        .unwrap();
    without_user.agents().list().await.unwrap();

    let seen = recorder.requests();
    for r in &seen {
        assert_common(r);
        assert_eq!(r.header("authorization"), Some("Bearer key_1"));
        assert_eq!(r.header("x-platos-session-token"), None);
        assert_eq!(r.header("x-platos-organization-id"), Some("org_1"));
        assert_eq!(r.header("x-platos-project-id"), Some("prj_1"));
        assert_eq!(r.header("x-platos-environment-id"), Some("env_1"));
        assert_eq!(r.header("x-platos-user-token"), None);
    }
    assert_eq!(seen[0].header("x-platos-user-id"), Some("u_1"));
    assert_eq!(seen[1].header("x-platos-user-id"), None);
}

#[tokio::test]
async fn with_scope_changes_that_handle_only() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| agents_ok());
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .api_key("key_1")
        .scope(scope().with_user_id("u_default"))
        .build()
        .unwrap();
    let other = client.with_scope(
        Scope::new("org_2", "prj_2", "env_2")
            .with_user_id("u_2")
            .with_user_token("utok_2"),
    );
    assert_eq!(other.scope().unwrap().organization_id, "org_2");
    assert_eq!(client.scope().unwrap().organization_id, "org_1");

    client.agents().list().await.unwrap();
    other.agents().list().await.unwrap();
    other.threads().create("ag_1").await.unwrap_err(); // 200 {agents} is not a thread
    client.agents().list().await.unwrap();

    let seen = recorder.requests();
    assert_eq!(seen.len(), 4);
    let org = |r: &Recorded| r.header("x-platos-organization-id").map(str::to_owned);
    assert_eq!(org(&seen[0]).as_deref(), Some("org_1"));
    assert_eq!(seen[0].header("x-platos-user-id"), Some("u_default"));
    assert_eq!(seen[0].header("x-platos-user-token"), None);
    for r in &seen[1..3] {
        assert_eq!(org(r).as_deref(), Some("org_2"));
        assert_eq!(r.header("x-platos-project-id"), Some("prj_2"));
        assert_eq!(r.header("x-platos-environment-id"), Some("env_2"));
        assert_eq!(r.header("x-platos-user-id"), Some("u_2"));
        assert_eq!(r.header("x-platos-user-token"), Some("utok_2"));
        assert_eq!(r.header("authorization"), Some("Bearer key_1"));
    }
    assert_eq!(
        org(&seen[3]).as_deref(),
        Some("org_1"),
        "the default is untouched"
    );
    assert_eq!(seen[3].header("x-platos-user-token"), None);
}

#[tokio::test]
async fn user_agent_can_be_replaced() {
    let recorder = Recorder::start().await;
    recorder.push(agents_ok());
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token(OLD)
        .user_agent("my-app/1.2")
        .build()
        .unwrap();
    client.agents().list().await.unwrap();
    assert_eq!(recorder.only().header("user-agent"), Some("my-app/1.2"));
}

/// Records every refresh call and answers with `answer(call number)`.
#[derive(Clone, Default)]
struct Refresher {
    calls: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Refresher {
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn calls(&self) -> Vec<(String, u16)> {
        self.calls.lock().unwrap().clone()
    }

    fn client<F>(&self, url: &str, answer: F) -> PlatosClient
    where
        F: Fn(usize) -> Result<Option<String>, String> + Send + Sync + 'static,
    {
        let calls = self.calls.clone();
        PlatosClient::builder()
            .base_url(url)
            .session_token(OLD)
            .on_token_refresh(move |ctx: RefreshContext| {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    calls.push((ctx.current_token.expose().to_owned(), ctx.status));
                    calls.len()
                };
                let result = answer(n);
                async move { result }
            })
            .build()
            .unwrap()
    }
}

/// 401 (or `status`) to anything but the new token.
fn only_new_token(status: u16) -> impl Fn(&Recorded) -> Answer + Send + Sync + 'static {
    move |r| {
        if r.header("x-platos-session-token") == Some(NEW) {
            agents_ok()
        } else {
            refused(status)
        }
    }
}

#[tokio::test]
async fn refresh_on_401_replays_once_and_keeps_the_new_token() {
    let recorder = Recorder::start().await;
    recorder.respond_with(only_new_token(401));
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |_| Ok(Some(NEW.to_owned())));

    client.agents().list().await.unwrap();
    assert_eq!(refresher.calls(), [(OLD.to_owned(), 401)]);
    let seen = recorder.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("x-platos-session-token"), Some(OLD));
    assert_eq!(seen[1].header("x-platos-session-token"), Some(NEW));
    assert_eq!(seen[0].path, seen[1].path);
    assert_eq!(client.session_token().unwrap().expose(), NEW);

    // Later calls, and clones and scoped handles, use the new token directly.
    client.agents().list().await.unwrap();
    client.clone().agents().list().await.unwrap();
    client.with_scope(scope()).agents().list().await.unwrap();
    let seen = recorder.requests();
    assert_eq!(seen.len(), 5);
    assert!(
        seen[2..]
            .iter()
            .all(|r| r.header("x-platos-session-token") == Some(NEW))
    );
    assert_eq!(refresher.count(), 1);
}

#[tokio::test]
async fn refresh_on_403_too() {
    let recorder = Recorder::start().await;
    recorder.respond_with(only_new_token(403));
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |_| Ok(Some(NEW.to_owned())));
    client.agents().list().await.unwrap();
    assert_eq!(refresher.calls(), [(OLD.to_owned(), 403)]);
    assert_eq!(recorder.count(), 2);
}

/// A 403 whose code refuses the caller, not the token: a new token cannot
/// help, so nothing is re-minted and the call is sent once; the error says
/// which credential the route needs.
#[tokio::test]
async fn a_403_refusing_the_caller_asks_no_refresh() {
    let bodies = [
        ("OPERATOR_ONLY", json!({"error": "OPERATOR_ONLY"})),
        (
            "RATING_ACTOR_FORBIDDEN",
            json!({"code": "RATING_ACTOR_FORBIDDEN", "message": "EndUser-only"}),
        ),
        (
            "AGENT_SCOPE_MISMATCH",
            json!({"error": {"code": "AGENT_SCOPE_MISMATCH", "title": "pinned to another agent"}}),
        ),
    ];
    for (code, body) in bodies {
        let recorder = Recorder::start().await;
        recorder.respond_with(move |_| Answer::json(403, body.clone()));
        let refresher = Refresher::default();
        let client = refresher.client(&recorder.url(), |_| Ok(Some(NEW.to_owned())));
        let e = client.agents().list().await.unwrap_err();
        assert!(matches!(e, Error::Auth(_)), "{code}: {e:?}");
        assert_eq!(e.code(), Some(code));
        assert_eq!(refresher.count(), 0, "{code}: no refresh");
        assert_eq!(recorder.count(), 1, "{code}: sent once");
        assert_eq!(client.session_token().unwrap().expose(), OLD);
        if code == "OPERATOR_ONLY" {
            assert!(
                e.message().contains("operator credential"),
                "{}",
                e.message()
            );
        }
    }
}

/// A 403 without a code (or with one that is about the token) may be an
/// expired token: refresh is asked, as on a 401.
#[tokio::test]
async fn a_403_about_the_token_still_refreshes() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|r: &Recorded| {
        if r.header("x-platos-session-token") == Some(NEW) {
            agents_ok()
        } else {
            Answer::json(
                403,
                json!({"error": {"code": "SESSION_EXPIRED", "title": "expired"}}),
            )
        }
    });
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |_| Ok(Some(NEW.to_owned())));
    client.agents().list().await.unwrap();
    assert_eq!(refresher.calls(), [(OLD.to_owned(), 403)]);
    assert_eq!(recorder.count(), 2);
}

#[tokio::test]
async fn a_post_is_replayed_with_the_same_idempotency_key() {
    let recorder = Recorder::start().await;
    recorder
        .push(refused(401))
        .push(Answer::json(201, json!({"id": "th_1", "agentId": "ag_1"})));
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |_| Ok(Some(NEW.to_owned())));
    let thread = client.threads().create("ag_1").title("t").await.unwrap();
    assert_eq!(thread.id, "th_1");
    let seen = recorder.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].header("idempotency-key").is_some());
    assert_eq!(
        seen[0].header("idempotency-key"),
        seen[1].header("idempotency-key")
    );
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(seen[1].header("x-platos-session-token"), Some(NEW));
}

#[tokio::test]
async fn refusal_stands_when_refresh_gives_nothing_usable() {
    type Answerer = fn(usize) -> Result<Option<String>, String>;
    let cases: [(&str, Answerer); 4] = [
        ("None", |_| Ok(None)),
        ("same token", |_| Ok(Some(OLD.to_owned()))),
        ("empty token", |_| Ok(Some(String::new()))),
        ("error", |_| Err("backend down".to_owned())),
    ];
    for (name, answer) in cases {
        let recorder = Recorder::start().await;
        recorder.respond_with(|_| refused(401).header("x-request-id", "req_401"));
        let refresher = Refresher::default();
        let client = refresher.client(&recorder.url(), answer);
        let e = client.agents().list().await.unwrap_err();
        assert!(matches!(e, Error::Auth(_)), "{name}: {e:?}");
        assert_eq!(e.status(), Some(401), "{name}");
        assert_eq!(e.message(), "Invalid or expired session token", "{name}");
        assert_eq!(
            e.request_id(),
            Some("req_401"),
            "{name}: the original answer"
        );
        assert_eq!(recorder.count(), 1, "{name}: not replayed");
        assert_eq!(refresher.count(), 1, "{name}");
        assert_eq!(client.session_token().unwrap().expose(), OLD, "{name}");
    }
}

#[tokio::test]
async fn a_refused_replay_is_not_refreshed_again() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| refused(401));
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |n| Ok(Some(format!("tok_{n}"))));
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert_eq!(recorder.count(), 2, "original + one replay");
    assert_eq!(refresher.count(), 1);
}

#[tokio::test]
async fn a_later_refusal_asks_again_after_a_failed_refresh() {
    // A refresh that failed once (the backend was down) must not disable
    // refreshing for good: the next refused call asks again.
    let recorder = Recorder::start().await;
    recorder.respond_with(only_new_token(401));
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |n| {
        if n == 1 {
            Err("backend down".to_owned())
        } else {
            Ok(Some(NEW.to_owned()))
        }
    });
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    client.agents().list().await.unwrap();
    assert_eq!(refresher.count(), 2);
    assert_eq!(client.session_token().unwrap().expose(), NEW);
}

#[tokio::test]
async fn api_key_mode_never_refreshes() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| refused(401));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .api_key("key_1")
        .scope(scope())
        .on_token_refresh(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(Some(NEW.to_owned())) }
        })
        .build()
        .unwrap();
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert_eq!(recorder.count(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(client.session_token().is_none());
}

#[tokio::test]
async fn without_a_callback_a_401_surfaces() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| refused(401));
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token(OLD)
        .build()
        .unwrap();
    let e = client.threads().get("th_1").await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert_eq!(recorder.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_refusals_share_one_refresh() {
    let recorder = Arc::new(Recorder::start().await);
    recorder.respond_with(only_new_token(401));
    let refresher = Refresher::default();
    let calls = refresher.calls.clone();
    let rec = recorder.clone();
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token(OLD)
        .on_token_refresh(move |ctx: RefreshContext| {
            calls
                .lock()
                .unwrap()
                .push((ctx.current_token.expose().to_owned(), ctx.status));
            // Answer only once all 100 calls were sent with the old token,
            // so every one of them is refused while this refresh runs.
            let rec = rec.clone();
            async move {
                rec.wait_for(100).await;
                Ok::<_, std::io::Error>(Some(NEW.to_owned()))
            }
        })
        .build()
        .unwrap();

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.agents().list().await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        t.await.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 100);
    assert_eq!(refresher.calls(), [(OLD.to_owned(), 401)], "one refresh");
    let seen = recorder.requests();
    let with = |t: &str| {
        seen.iter()
            .filter(|r| r.header("x-platos-session-token") == Some(t))
            .count()
    };
    assert_eq!(
        with(OLD),
        100,
        "every call was first sent with the old token"
    );
    assert_eq!(
        with(NEW),
        100,
        "every call replayed with the new token once"
    );
    assert_eq!(seen.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refusals_share_one_failed_refresh() {
    let recorder = Arc::new(Recorder::start().await);
    recorder.respond_with(|_| refused(401));
    let refresher = Refresher::default();
    let calls = refresher.calls.clone();
    let rec = recorder.clone();
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token(OLD)
        .on_token_refresh(move |ctx: RefreshContext| {
            calls
                .lock()
                .unwrap()
                .push((ctx.current_token.expose().to_owned(), ctx.status));
            let rec = rec.clone();
            async move {
                rec.wait_for(20).await;
                Err::<Option<String>, _>("backend down")
            }
        })
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.agents().list().await })
        })
        .collect();
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert!(matches!(e, Error::Auth(_)), "{e:?}");
    }
    assert_eq!(
        refresher.count(),
        1,
        "the calls sent before the failure share it"
    );
    assert_eq!(recorder.count(), 20, "nothing replayed");

    // A call sent after the failure asks again.
    client.agents().list().await.unwrap_err();
    assert_eq!(refresher.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_uses_a_token_another_call_refreshed_meanwhile() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|r| {
        if r.header("x-platos-session-token") == Some(NEW) {
            agents_ok()
        } else if r.path.ends_with("/threads") {
            Answer::empty(503).header("retry-after", "10")
        } else {
            refused(401)
        }
    });
    let refresher = Refresher::default();
    let client = refresher.client(&recorder.url(), |_| Ok(Some(NEW.to_owned())));

    // A: refused with 503, waits 10 s before its retry.
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.threads().list().await }
    });
    recorder.wait_for(1).await;
    // B: refused with 401, refreshes.
    client.agents().list().await.unwrap();
    a.await.unwrap().unwrap();

    let seen = recorder.requests();
    let tokens: Vec<_> = seen
        .iter()
        .map(|r| {
            (
                r.path.rsplit('/').next().unwrap().to_owned(),
                r.header("x-platos-session-token").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        tokens,
        [
            ("threads".to_owned(), OLD.to_owned()),
            ("agents".to_owned(), OLD.to_owned()),
            ("agents".to_owned(), NEW.to_owned()),
            ("threads".to_owned(), NEW.to_owned()),
        ]
    );
    assert_eq!(refresher.count(), 1);
}

//! Secrets (session token, api key, user token, refreshed token) never
//! appear in `Debug`/`Display` of the client, its builder, `Scope`, `Secret`,
//! `RefreshContext`, request builders, or any error the REST layer produces
//! (including their source chains); redirects are not followed. Tracing
//! output is checked in `rest_logs.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use platos_client::{Error, PlatosClient, RefreshContext, RetryConfig, Scope, Secret};
use platos_integration_tests::recorder::{Answer, Recorder};
use serde_json::json;

const SESSION: &str = "tok_SECRET_session_7f3a9c";
const REFRESHED: &str = "tok_SECRET_refreshed_5b1e";
const API_KEY: &str = "key_SECRET_apikey_91bc0d";
const USER_TOKEN: &str = "utok_SECRET_user_44d2aa";
const SECRETS: [&str; 4] = [SESSION, REFRESHED, API_KEY, USER_TOKEN];

/// Every rendering of `value` we can think of: Debug, pretty Debug.
fn debug_forms(value: &dyn std::fmt::Debug) -> Vec<String> {
    vec![format!("{value:?}"), format!("{value:#?}")]
}

fn assert_clean(what: &str, texts: &[String]) {
    for text in texts {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{what} leaks `{secret}`:\n{text}");
            // Not even a recognisable fragment.
            assert!(!text.contains("SECRET"), "{what} leaks a fragment:\n{text}");
        }
    }
}

/// Display and Debug of an error and of every error in its source chain.
fn error_forms(e: &Error) -> Vec<String> {
    let mut texts = debug_forms(e);
    texts.push(e.to_string());
    texts.push(e.message().to_owned());
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        source = s.source();
    }
    texts
}

fn user_scope() -> Scope {
    Scope::new("org_1", "prj_1", "env_1")
        .with_user_id("u_1")
        .with_user_token(USER_TOKEN)
}

fn session_client(url: &str) -> PlatosClient {
    PlatosClient::builder()
        .base_url(url)
        .session_token(SESSION)
        .scope(user_scope())
        .retry(RetryConfig::disabled())
        .on_token_refresh(|_ctx: RefreshContext| async {
            Ok::<_, std::io::Error>(Some(REFRESHED.to_owned()))
        })
        .build()
        .unwrap()
}

fn api_key_client(url: &str) -> PlatosClient {
    PlatosClient::builder()
        .base_url(url)
        .api_key(API_KEY)
        .scope(user_scope())
        .retry(RetryConfig::disabled())
        .build()
        .unwrap()
}

#[test]
fn values_and_builders_hide_secrets() {
    let secret = Secret::new(SESSION);
    let mut texts = debug_forms(&secret);
    texts.push(secret.to_string());
    assert_eq!(secret.expose(), SESSION, "the value is still there");
    assert_clean("Secret", &texts);

    assert_clean("Scope", &debug_forms(&user_scope()));

    let ctx_debug = {
        // RefreshContext is non-exhaustive: capture one from a real refresh.
        let captured: Arc<Mutex<Option<String>>> = Arc::default();
        let c = captured.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let recorder = Recorder::start().await;
            recorder
                .push(Answer::json(401, json!({"message": "expired"})))
                .push(Answer::json(200, json!({"agents": []})));
            let client = PlatosClient::builder()
                .base_url(recorder.url())
                .session_token(SESSION)
                .on_token_refresh(move |ctx: RefreshContext| {
                    assert_eq!(ctx.current_token.expose(), SESSION);
                    *c.lock().unwrap() = Some(format!("{ctx:?} {ctx:#?} {}", ctx.current_token));
                    async { Ok::<_, std::io::Error>(Some(REFRESHED.to_owned())) }
                })
                .build()
                .unwrap();
            client.agents().list().await.unwrap();
            // The refreshed token is held, and hidden, too.
            assert_clean("client after refresh", &debug_forms(&client));
            let token = client.session_token().unwrap();
            assert_eq!(token.expose(), REFRESHED);
            assert_clean(
                "refreshed Secret",
                &[format!("{token:?}"), token.to_string()],
            );
        });
        let text = captured.lock().unwrap().clone();
        text.expect("the callback ran")
    };
    assert_clean("RefreshContext", &[ctx_debug]);

    let builder = PlatosClient::builder()
        .base_url("http://127.0.0.1:9")
        .session_token(SESSION)
        .api_key(API_KEY)
        .scope(user_scope());
    assert_clean("builder", &debug_forms(&builder));
    // The same builder fails (both credentials): the error is clean too.
    let e = builder.build().unwrap_err();
    assert_clean("config error", &error_forms(&e));

    let session = session_client("http://127.0.0.1:9");
    let api = api_key_client("http://127.0.0.1:9");
    let scoped = api.with_scope(Scope::new("o", "p", "e").with_user_token(USER_TOKEN));
    for (what, client) in [
        ("session client", &session),
        ("api-key client", &api),
        ("scoped handle", &scoped),
    ] {
        assert_clean(what, &debug_forms(client));
        assert_clean(what, &debug_forms(&client.scope()));
        assert_clean(what, &debug_forms(&client.agents().list().limit(5)));
        assert_clean(
            what,
            &debug_forms(&client.threads().create("ag_1").title("x")),
        );
        assert_clean(
            what,
            &debug_forms(
                &client
                    .approvals()
                    .resolve("a", platos_client::Decision::approve()),
            ),
        );
        assert_clean(what, &debug_forms(&client.jobs()));
    }
}

#[tokio::test(start_paused = true)]
async fn every_rest_error_hides_secrets() {
    let recorder = Recorder::start().await;
    let session = session_client(&recorder.url());
    let api = api_key_client(&recorder.url());
    let mut errors: Vec<(String, Error)> = Vec::new();

    // 401 whose refresh replay is refused again, and a plain 401 in api-key mode.
    recorder.push_n(
        2,
        Answer::json(401, json!({"statusCode": 401, "message": "Unauthorized"})),
    );
    errors.push((
        "401 after refresh".into(),
        session.agents().list().await.unwrap_err(),
    ));
    recorder.push(Answer::json(
        401,
        json!({"error": {"code": "UNAUTHENTICATED", "title": "no"}}),
    ));
    errors.push(("401 api key".into(), api.agents().list().await.unwrap_err()));

    for (status, body) in [
        (400, json!({"message": "bad", "validationErrors": ["x"]})),
        (403, json!({"error": "OPERATOR_ONLY"})),
        (404, json!({"error": "Agent not found", "agentId": "a"})),
        (409, json!({"code": "IDEMPOTENCY_REQUEST_MISMATCH"})),
        (
            422,
            json!({"error": {"code": "V", "fields": [{"field": "f", "message": "m"}]}}),
        ),
        (
            429,
            json!({"error": {"code": "RATE_LIMITED", "retryAfterSec": 1}}),
        ),
        (500, json!({"statusCode": 500, "message": "boom"})),
        (503, json!({"code": "ARTIFACTS_UNAVAILABLE"})),
    ] {
        recorder.push(Answer::json(status, body.clone()));
        errors.push((
            format!("{status} api key"),
            api.threads().list().await.unwrap_err(),
        ));
        recorder.push(Answer::json(status, body));
        errors.push((
            format!("{status} session"),
            session.threads().create("ag").await.unwrap_err(),
        ));
    }
    recorder.push(Answer::text(502, "<html>bad gateway</html>"));
    errors.push(("text".into(), api.jobs().get("j").await.unwrap_err()));
    recorder.push(Answer::raw_json(200, r#"{"id":"ag","maxSteps":"x"}"#));
    errors.push(("decode".into(), api.agents().get("ag").await.unwrap_err()));
    recorder.push(Answer::raw_json(200, r#"{"agents":["#));
    errors.push((
        "truncated".into(),
        session.agents().list().await.unwrap_err(),
    ));
    recorder.push(Answer::hangup());
    errors.push(("hang-up".into(), session.agents().list().await.unwrap_err()));
    recorder.push(Answer::json(200, json!({})).delayed(Duration::from_secs(3600)));
    let slow = PlatosClient::builder()
        .base_url(recorder.url())
        .api_key(API_KEY)
        .scope(user_scope())
        .timeout(Duration::from_secs(1))
        .retry(RetryConfig::disabled())
        .build()
        .unwrap();
    errors.push(("timeout".into(), slow.agents().list().await.unwrap_err()));
    errors.push((
        "raw config".into(),
        api.bgo().raw("B A D", "x", None).await.unwrap_err(),
    ));

    // Connection refused, in both modes.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}");
    errors.push((
        "refused session".into(),
        session_client(&dead).agents().list().await.unwrap_err(),
    ));
    errors.push((
        "refused api key".into(),
        api_key_client(&dead)
            .threads()
            .create("a")
            .await
            .unwrap_err(),
    ));

    let kinds: Vec<&str> = errors
        .iter()
        .map(|(_, e)| match e {
            Error::Network(_) => "network",
            Error::Timeout(_) => "timeout",
            Error::Auth(_) => "auth",
            Error::Decode(_) => "decode",
            _ => "other",
        })
        .collect();
    for kind in ["network", "timeout", "auth", "decode"] {
        assert!(kinds.contains(&kind), "the suite produced no {kind} error");
    }
    // reqwest's own error (the source of network errors) names the URL,
    // which carries no secret.
    let network = errors
        .iter()
        .find(|(_, e)| matches!(e, Error::Network(_)))
        .map(|(_, e)| e)
        .unwrap();
    let source = std::error::Error::source(network).expect("reqwest error kept");
    assert!(source.to_string().contains("127.0.0.1"), "{source}");

    for (what, e) in &errors {
        assert_clean(what, &error_forms(e));
    }
}

#[tokio::test]
async fn redirects_never_carry_credentials_elsewhere() {
    // reqwest drops `Authorization` on a cross-origin redirect, but not the
    // session token, the user token or the scope headers: the client must
    // not follow redirects at all.
    let elsewhere = Recorder::start().await;
    elsewhere.respond_with(|_| Answer::json(200, json!({"agents": [], "id": "th_1"})));
    let platos = Recorder::start().await;
    let target = format!("{}/api/v1/agent/agents", elsewhere.url());
    for status in [301, 302, 303, 307, 308] {
        platos.push(Answer::empty(status).header("location", &target));
        let e = session_client(&platos.url())
            .agents()
            .list()
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(status), "{e:?}");
        assert!(matches!(e, Error::Refused(_)), "{e:?}");
        platos.push(Answer::empty(status).header("location", &target));
        let e = api_key_client(&platos.url())
            .threads()
            .create("ag_1")
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(status), "{e:?}");
        assert_clean("redirect error", &error_forms(&e));
    }
    let leaked: Vec<_> = elsewhere
        .requests()
        .iter()
        .flat_map(|r| r.headers.clone())
        .filter(|(k, _)| k.starts_with("x-platos") || k == "authorization")
        .collect();
    assert_eq!(elsewhere.count(), 0, "followed a redirect; sent {leaked:?}");
}

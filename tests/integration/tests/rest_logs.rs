//! The SDK's tracing output never contains a secret. Alone in its test
//! binary: tracing caches callsite interest process-wide, so a thread-local
//! subscriber can miss events while other tests run in parallel.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use platos_client::{PlatosClient, RefreshContext, RetryConfig, Scope};
use platos_integration_tests::recorder::{Answer, Recorder};
use serde_json::json;

const SESSION: &str = "tok_SECRET_session_7f3a9c";
const REFRESHED: &str = "tok_SECRET_refreshed_5b1e";
const API_KEY: &str = "key_SECRET_apikey_91bc0d";
const USER_TOKEN: &str = "utok_SECRET_user_44d2aa";
const SECRETS: [&str; 4] = [SESSION, REFRESHED, API_KEY, USER_TOKEN];

fn user_scope() -> Scope {
    Scope::new("org_1", "prj_1", "env_1")
        .with_user_id("u_1")
        .with_user_token(USER_TOKEN)
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

// ------------------------------------------------------------- tracing

/// A subscriber that writes every span field and event field it sees.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut out = self.0.lock().unwrap();
        let _ = write!(out, "\nspan {}", attrs.metadata().name());
        attrs.record(&mut Fields(&mut out));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = self.0.lock().unwrap();
        let _ = write!(
            out,
            "\n{} {}",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Fields(&mut out));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `body` on a current-thread runtime (every task on this thread,
/// under a thread-local subscriber that captures everything; `paused`
/// starts its clock paused): what it returned, and the log.
fn logged<T>(paused: bool, body: impl std::future::Future<Output = T>) -> (T, String) {
    let capture = Capture::default();
    let logs = capture.0.clone();
    let _guard = tracing::subscriber::set_default(capture);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .unwrap();
    let out = rt.block_on(body);
    let logs = logs.lock().unwrap().clone();
    (out, logs)
}

#[test]
fn tracing_output_hides_secrets() {
    let ((), logs) = logged(true, async {
        let recorder = Recorder::start().await;
        recorder
            .push(Answer::json(401, json!({"message": "expired"})))
            .push(Answer::json(503, json!({})))
            .push(Answer::json(200, json!({"agents": []})))
            .push(Answer::json(200, json!({"id": "th_1"})))
            .push(Answer::json(401, json!({})))
            .push(Answer::json(401, json!({})));
        let client = PlatosClient::builder()
            .base_url(recorder.url())
            .session_token(SESSION)
            .scope(user_scope())
            .on_token_refresh(|_ctx: RefreshContext| async {
                Ok::<_, std::io::Error>(Some(REFRESHED.to_owned()))
            })
            .build()
            .unwrap();
        client.agents().list().await.unwrap();
        client.threads().create("ag_1").await.unwrap();
        let failing = PlatosClient::builder()
            .base_url(recorder.url())
            .session_token(SESSION)
            .on_token_refresh(|_ctx: RefreshContext| async {
                Err::<Option<String>, _>(std::io::Error::other("refresh backend down"))
            })
            .build()
            .unwrap();
        failing.agents().list().await.unwrap_err();
        api_key_client(&recorder.url())
            .agents()
            .list()
            .await
            .unwrap_err();
    });
    assert!(
        logs.contains("platos request"),
        "the SDK logged its requests:\n{logs}"
    );
    assert!(logs.contains("retrying"), "{logs}");
    // One span per call: operation, method and path template (no ids), then
    // the attempts, the final status and the duration.
    assert!(
        logs.contains(
            "span platos.request operation=\"agents_list\" method=GET path=\"/api/v1/agent/agents\""
        ),
        "{logs}"
    );
    assert!(
        logs.contains(" attempts=3"),
        "refused, refreshed, 503, ok: {logs}"
    );
    assert!(logs.contains(" status=200"), "{logs}");
    assert!(logs.contains(" status=401"), "{logs}");
    assert!(logs.contains(" duration_ms="), "{logs}");
    assert!(logs.contains("refresh backend down"), "{logs}");
    for secret in SECRETS {
        assert!(
            !logs.contains(secret),
            "tracing output leaks `{secret}`:\n{logs}"
        );
    }
    assert!(
        !logs.contains("SECRET"),
        "tracing output leaks a fragment:\n{logs}"
    );
}

/// One `platos.turn` span per turn on either lane: the thread, the lane,
/// the connection, the reconnects it lived through, then what it handed
/// the stream and how it ended; no credential and no message text, TRACE
/// included.
#[test]
fn each_turn_has_a_span_with_its_thread_connection_reconnects_and_outcome() {
    const TEXT: &str = "a private question [tokens=4]";
    let (token, logs) = logged(false, async {
        // Events 30 ms apart: the reconnect is back before the turn's `done`.
        let server = platos_test_server::TestServer::builder()
            .event_delay(std::time::Duration::from_millis(30))
            .start()
            .await
            .unwrap();
        let token = server.session_token();
        let client = platos_integration_tests::realtime::client(&server.base_url(), &token);
        server.faults().drop_socket_after_events(3);
        let ws = platos_integration_tests::realtime::collect(
            client.threads().send(platos_test_server::SEED_THREAD, TEXT),
        )
        .await;
        assert!(matches!(ws.last(), Some(Ok(platos_events::Event::Done(_)))));
        let http = platos_integration_tests::realtime::collect(client.threads().send_with(
            platos_test_server::SEED_THREAD,
            TEXT,
            platos_client::SendOptions::new().transport(platos_client::Transport::Http),
        ))
        .await;
        assert!(matches!(
            http.last(),
            Some(Ok(platos_events::Event::Done(_)))
        ));
        server.shutdown().await;
        token
    });
    let thread = platos_test_server::SEED_THREAD;
    assert!(
        logs.contains(&format!(
            "span platos.turn thread_id={thread} transport=\"websocket\" reconnects=0"
        )),
        "{logs}"
    );
    assert!(logs.contains(" connection=1"), "{logs}");
    assert!(logs.contains(" reconnects=1"), "{logs}");
    assert!(
        logs.contains(&format!(
            "span platos.turn thread_id={thread} transport=\"http\""
        )),
        "{logs}"
    );
    assert_eq!(
        logs.matches(" outcome=\"done\"").count(),
        2,
        "both turns ended with done: {logs}"
    );
    assert!(logs.contains(" events="), "{logs}");
    assert!(
        logs.contains(
            "span platos.request operation=\"threads_stream\" method=POST \
             path=\"/api/v1/agent/threads/{threadId}/stream\""
        ),
        "{logs}"
    );
    assert!(!logs.contains(&token), "the session token leaks:\n{logs}");
    assert!(
        !logs.contains("private question"),
        "the message leaks:\n{logs}"
    );
}

/// An answer carrying `Deprecation` is logged at WARN with its sunset date,
/// once per route however many calls get it.
#[test]
fn a_deprecated_route_is_logged_once_at_warn_with_its_sunset() {
    let ((), logs) = logged(false, async {
        let recorder = Recorder::start().await;
        let deprecated = || {
            Answer::json(200, json!({"memories": [], "total": 0}))
                .header("deprecation", "true")
                .header("sunset", "Wed, 30 Jun 2027 00:00:00 GMT")
                .header("link", "</api/v1/memory>; rel=\"successor-version\"")
        };
        recorder
            .push(deprecated())
            .push(deprecated())
            .push(deprecated());
        let client = api_key_client(&recorder.url());
        for _ in 0..3 {
            client.memory().list().await.unwrap();
        }
    });
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with("WARN") && l.contains("deprecated"))
        .collect();
    assert_eq!(warnings.len(), 1, "once per route:\n{logs}");
    assert!(
        warnings[0].contains("sunset=Wed, 30 Jun 2027 00:00:00 GMT"),
        "{logs}"
    );
    assert!(warnings[0].contains("operation=\"memory_list\""), "{logs}");
    assert!(warnings[0].contains("successor-version"), "{logs}");
}

/// The runtime's deprecated `/api/v1/platos/memory` alias, called through
/// `client.raw()` against the test server (which answers it with upstream's
/// `Deprecation`, `Sunset` and `Link`): one WARN per route with the sunset
/// date, and the alias reaches the same memories as the new prefix.
#[test]
fn the_old_memory_prefix_warns_once_per_route_through_raw_calls() {
    let ((), logs) = logged(false, async {
        let server = platos_test_server::TestServer::start().await.unwrap();
        let scope = server.scope();
        let client = PlatosClient::builder()
            .base_url(server.base_url())
            .api_key(server.api_key())
            .scope(
                Scope::new(
                    &scope.organization_id,
                    &scope.project_id,
                    &scope.environment_id,
                )
                .with_user_id(server.user_id()),
            )
            .build()
            .unwrap();
        let created = client
            .raw("POST", "/api/v1/platos/memory")
            .body(json!({"content": "Prefers tea"}))
            .send()
            .await
            .unwrap();
        for _ in 0..3 {
            let listed = client
                .raw("GET", "/api/v1/platos/memory")
                .send()
                .await
                .unwrap();
            assert_eq!(listed["memories"][0]["id"], created["memory"]["id"]);
        }
        let hits = client
            .raw("GET", "/api/v1/platos/memory/search")
            .query("q", "tea")
            .send()
            .await
            .unwrap();
        assert_eq!(hits["hits"].as_array().map(Vec::len), Some(1));
        // The same memory under the new prefix, which announces nothing.
        assert_eq!(client.memory().list().await.unwrap().len(), 1);
        // A refusal the alias answers in an HTTP 200 is an error on a raw call too.
        let missing = client
            .raw("POST", "/api/v1/platos/memory/{id}")
            .param("id", "no-such-memory")
            .body(json!({"content": "x"}))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(missing, platos_client::Error::NotFound(_)),
            "{missing:?}"
        );
    });
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with("WARN") && l.contains("deprecated"))
        .collect();
    // POST and GET on the prefix, GET on search, POST on one memory: four routes.
    assert_eq!(warnings.len(), 4, "once per route:\n{logs}");
    for w in &warnings {
        assert!(w.contains("sunset=Wed, 31 Mar 2027 00:00:00 GMT"), "{w}");
        assert!(w.contains("rel=\"successor-version\""), "{w}");
    }
    let search = warnings
        .iter()
        .find(|w| w.contains("path=\"/api/v1/platos/memory/search\""))
        .expect("the search route's warning");
    assert!(search.contains("link=</api/v1/memory/search>"), "{search}");
}

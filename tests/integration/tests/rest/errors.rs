//! How server answers and failures become `platos_client::Error`: every
//! error-body shape of docs/wire.md §3.1 × every status class, decode errors,
//! configuration errors (nothing sent), connection refused and timeouts.

use std::time::Duration;

use platos_client::{Error, PlatosClient, RetryConfig, Scope};
use platos_integration_tests::recorder::{Answer, Recorder};
use serde_json::{Value, json};

fn client(url: &str) -> PlatosClient {
    PlatosClient::builder()
        .base_url(url)
        .session_token("tok_errors")
        .retry(RetryConfig::disabled())
        .build()
        .expect("client builds")
}

const STATUSES: [u16; 9] = [400, 401, 403, 404, 409, 422, 429, 500, 503];

/// The variant a status must map to (docs/wire.md §3.1).
fn class_of(status: u16) -> &'static str {
    match status {
        400 | 422 => "Validation",
        401 | 403 => "Auth",
        404 => "NotFound",
        429 => "RateLimited",
        s if s >= 500 => "Server",
        _ => "Refused",
    }
}

fn class(e: &Error) -> &'static str {
    match e {
        Error::Validation(_) => "Validation",
        Error::Auth(_) => "Auth",
        Error::NotFound(_) => "NotFound",
        Error::RateLimited(_) => "RateLimited",
        Error::Server(_) => "Server",
        Error::Refused(_) => "Refused",
        Error::Network(_) => "Network",
        Error::Timeout(_) => "Timeout",
        Error::Decode(_) => "Decode",
        Error::Config(_) => "Config",
        _ => "other",
    }
}

fn reason(status: u16) -> &'static str {
    http_reason(status).unwrap_or("request failed")
}

fn http_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => return None,
    })
}

/// One error-body shape: the answer for a status, and what the error must say.
struct Shape {
    name: &'static str,
    body: fn(u16) -> Answer,
    code: Option<&'static str>,
    message: fn(u16) -> String,
    validation: &'static [&'static str],
    /// Retry-After carried by the body (V1 `retryAfterSec`).
    retry_after: Option<Duration>,
}

fn long_text() -> String {
    // Multi-byte characters: the cut is 200 characters, not bytes.
    format!("upstream exploded: {}", "é".repeat(400))
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "framework",
            body: |s| {
                Answer::json(
                    s,
                    json!({"statusCode": s, "message": format!("framework says {s}"), "error": reason(s)}),
                )
            },
            code: None,
            message: |s| format!("framework says {s}"),
            validation: &[],
            retry_after: None,
        },
        Shape {
            name: "legacy error code + message",
            body: |s| {
                Answer::json(
                    s,
                    json!({"error": "OPERATOR_ONLY", "message": "operators only"}),
                )
            },
            code: Some("OPERATOR_ONLY"),
            message: |_| "operators only".into(),
            validation: &[],
            retry_after: None,
        },
        Shape {
            name: "legacy error code alone",
            body: |s| Answer::json(s, json!({"error": "OPERATOR_ONLY"})),
            code: Some("OPERATOR_ONLY"),
            message: |_| {
                "OPERATOR_ONLY: this call needs an operator credential (an operator's session \
                 token or a direct-mode api key); an end user's token cannot make it"
                    .into()
            },
            validation: &[],
            retry_after: None,
        },
        Shape {
            name: "legacy code",
            body: |s| {
                Answer::json(
                    s,
                    json!({"code": "INVALID_PAGINATION", "message": "bad page"}),
                )
            },
            code: Some("INVALID_PAGINATION"),
            message: |_| "bad page".into(),
            validation: &[],
            retry_after: None,
        },
        Shape {
            name: "legacy error text",
            body: |s| Answer::json(s, json!({"error": "Agent not found", "agentId": "ag_1"})),
            code: None,
            message: |_| "Agent not found".into(),
            validation: &[],
            retry_after: None,
        },
        Shape {
            name: "validationErrors",
            body: |s| {
                Answer::json(
                    s,
                    json!({"statusCode": s, "message": "invalid", "validationErrors": ["agentId is required", "limit must be > 0"]}),
                )
            },
            code: None,
            message: |_| "invalid".into(),
            validation: &["agentId is required", "limit must be > 0"],
            retry_after: None,
        },
        Shape {
            name: "V1 envelope",
            body: |s| {
                Answer::json(
                    s,
                    json!({"error": {"code": "RATE_LIMITED", "title": "rate_limited", "body": "slow down",
                        "errorId": "err_body", "traceRef": "tr_1", "version": "1",
                        "fields": [{"field": "agentId", "code": "required", "message": "is required"}],
                        "retryAfterSec": 5}}),
                )
            },
            code: Some("RATE_LIMITED"),
            message: |_| "RATE_LIMITED: rate_limited".into(),
            validation: &["agentId: is required"],
            retry_after: Some(Duration::from_secs(5)),
        },
        Shape {
            name: "non-JSON text",
            body: |s| Answer::text(s, &long_text()),
            code: None,
            message: |_| long_text().chars().take(200).collect(),
            validation: &[],
            retry_after: None,
        },
        Shape {
            name: "empty body",
            body: Answer::empty,
            code: None,
            message: |s| reason(s).into(),
            validation: &[],
            retry_after: None,
        },
    ]
}

#[tokio::test]
async fn every_shape_and_status_class() {
    let recorder = Recorder::start().await;
    let client = client(&recorder.url());
    let mut failures = Vec::new();
    let mut cases = 0;
    for shape in shapes() {
        for status in STATUSES {
            cases += 1;
            let request_id = format!("req-{status}");
            let answer = (shape.body)(status).header("x-request-id", &request_id);
            let raw_body = String::from_utf8_lossy(&answer.body).into_owned();
            recorder.push(answer);
            let Err(e) = client.agents().list().send().await else {
                failures.push(format!("{} {status}: succeeded", shape.name));
                continue;
            };
            let mut problems = Vec::new();
            if class(&e) != class_of(status) {
                problems.push(format!("variant {}", class(&e)));
            }
            if e.status() != Some(status) {
                problems.push(format!("status {:?}", e.status()));
            }
            if e.code() != shape.code {
                problems.push(format!("code {:?}", e.code()));
            }
            if e.message() != (shape.message)(status) {
                problems.push(format!("message {:?}", e.message()));
            }
            // The header wins over a V1 errorId.
            if e.request_id() != Some(request_id.as_str()) {
                problems.push(format!("request_id {:?}", e.request_id()));
            }
            if e.validation_errors() != shape.validation {
                problems.push(format!("validation_errors {:?}", e.validation_errors()));
            }
            if e.retry_after() != shape.retry_after {
                problems.push(format!("retry_after {:?}", e.retry_after()));
            }
            let retryable = status == 429 || status >= 500;
            if e.is_retryable() != retryable {
                problems.push(format!("is_retryable {}", e.is_retryable()));
            }
            if e.body() != Some(raw_body.as_str()) {
                problems.push("body() is not the raw body".into());
            }
            if !e.to_string().contains(e.message()) {
                problems.push(format!("Display {e} lacks the message"));
            }
            if !problems.is_empty() {
                failures.push(format!("{} {status}: {}", shape.name, problems.join(", ")));
            }
        }
    }
    assert_eq!(
        recorder.count(),
        cases,
        "one request per case, never retried"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn v1_error_id_is_the_request_id_without_the_header() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(
        503,
        json!({"error": {"code": "IDEMPOTENCY_STORE_UNAVAILABLE", "title": "unavailable", "errorId": "err_42", "version": "1"}}),
    ));
    let e = client(&recorder.url())
        .threads()
        .create("ag_1")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    assert_eq!(e.request_id(), Some("err_42"));
    assert_eq!(e.code(), Some("IDEMPOTENCY_STORE_UNAVAILABLE"));
    assert_eq!(e.message(), "IDEMPOTENCY_STORE_UNAVAILABLE: unavailable");
}

#[tokio::test]
async fn retry_after_header_wins_over_the_body() {
    let recorder = Recorder::start().await;
    recorder.push(
        Answer::json(
            429,
            json!({"error": {"code": "RATE_LIMITED", "retryAfterSec": 30}}),
        )
        .header("retry-after", "2"),
    );
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::RateLimited(_)), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert!(e.is_retryable());
}

#[tokio::test]
async fn other_4xx_is_a_generic_refusal() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(
        410,
        json!({"statusCode": 410, "message": "gone", "error": "Gone"}),
    ));
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e:?}");
    assert_eq!(e.status(), Some(410));
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn wrong_typed_field_is_a_decode_error_naming_the_field() {
    let recorder = Recorder::start().await;
    let client = client(&recorder.url());

    let body = r#"{"id":"ag_1","name":"Support","maxSteps":"ten"}"#;
    recorder.push(Answer::raw_json(200, body));
    let e = client.agents().get("ag_1").await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert_eq!(e.decode_path(), Some("maxSteps"));
    assert_eq!(e.body(), Some(body));
    // The status of the answer whose body did not fit is kept.
    assert_eq!(e.status(), Some(200));
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("maxSteps"), "{e}");

    let body = r#"{"agents":[{"id":"ag_1"},{"id":5}],"total":2}"#;
    recorder.push(Answer::raw_json(200, body));
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert_eq!(e.decode_path(), Some("agents[1].id"));
    assert_eq!(e.body(), Some(body));

    let body = r#"{"job":{"id":"job_1","isActive":"yes"}}"#;
    recorder.push(Answer::raw_json(200, body));
    let e = client.jobs().get("job_1").await.unwrap_err();
    assert_eq!(e.decode_path(), Some("job.isActive"), "{e:?}");
}

#[tokio::test]
async fn truncated_json_is_a_decode_error_keeping_the_body() {
    let recorder = Recorder::start().await;
    let client = client(&recorder.url());
    for body in [
        r#"{"agents":[{"id":"ag_1","name":"Sup"#,
        "{",
        "not json at all",
    ] {
        recorder.push(Answer::raw_json(200, body.to_owned()));
        let e = client.agents().list().await.unwrap_err();
        assert!(matches!(e, Error::Decode(_)), "{body}: {e:?}");
        assert_eq!(e.body(), Some(body));
        assert!(e.decode_path().is_some());
        assert_eq!(e.status(), Some(200), "{body}");
    }
    // The same for an object answer (not an envelope).
    recorder.push(Answer::raw_json(201, r#"{"id":"th_1","title":"#));
    let e = client.threads().get("th_1").await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert_eq!(e.status(), Some(201));
}

#[tokio::test]
async fn huge_bodies_are_capped_in_errors() {
    let recorder = Recorder::start().await;
    let client = client(&recorder.url());
    const KEPT: usize = 64 * 1024;

    // A 4 MiB non-JSON error page.
    let page = "x".repeat(4 * 1024 * 1024);
    recorder.push(Answer::text(502, &page));
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    assert_eq!(e.message().chars().count(), 200);
    assert_eq!(e.body().map(str::len), Some(KEPT));
    assert!(format!("{e:?}").len() < 2_000, "Debug stays small");
    assert!(e.to_string().len() < 2_000, "Display stays small");

    // A 4 MiB 200 answer that breaks at the very end.
    let mut broken = String::from(r#"{"agents":[{"id":"ag_1","note":""#);
    broken.push_str(&"y".repeat(4 * 1024 * 1024));
    broken.push_str(r#""},{"id":7}]}"#);
    recorder.push(Answer::raw_json(200, broken));
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert_eq!(e.decode_path(), Some("agents[1].id"));
    assert_eq!(e.body().map(str::len), Some(KEPT));
    assert!(format!("{e:?}").len() < 2_000, "Debug stays small");

    // A large valid answer decodes.
    let agents: Vec<Value> = (0..5_000)
        .map(|i| json!({"id": format!("ag_{i}"), "name": "n".repeat(200)}))
        .collect();
    recorder.push(Answer::json(200, json!({ "agents": agents })));
    assert_eq!(client.agents().list().await.unwrap().len(), 5_000);
}

#[tokio::test]
async fn configuration_errors_send_nothing() {
    let recorder = Recorder::start().await;
    let url = recorder.url();
    let scope = || Scope::new("org_1", "prj_1", "env_1");
    let cases: Vec<(&str, platos_client::PlatosClientBuilder)> = vec![
        (
            "missing base URL",
            PlatosClient::builder().session_token("t"),
        ),
        (
            "empty base URL",
            PlatosClient::builder().base_url("").session_token("t"),
        ),
        (
            "blank base URL",
            PlatosClient::builder().base_url("   ").session_token("t"),
        ),
        ("no credential", PlatosClient::builder().base_url(&url)),
        (
            "both credentials",
            PlatosClient::builder()
                .base_url(&url)
                .session_token("t")
                .api_key("k")
                .scope(scope()),
        ),
        (
            "api key without scope",
            PlatosClient::builder().base_url(&url).api_key("k"),
        ),
        (
            "empty session token",
            PlatosClient::builder().base_url(&url).session_token(""),
        ),
        (
            "empty api key",
            PlatosClient::builder()
                .base_url(&url)
                .api_key(" ")
                .scope(scope()),
        ),
        (
            "incomplete scope",
            PlatosClient::builder()
                .base_url(&url)
                .api_key("k")
                .scope(Scope::new("org_1", "", "env_1")),
        ),
        (
            "bad URL scheme",
            PlatosClient::builder()
                .base_url(url.replace("http://", "ftp://"))
                .session_token("t"),
        ),
        (
            "user agent with a line break",
            PlatosClient::builder()
                .base_url(&url)
                .session_token("t")
                .user_agent("app/1\r\nx-evil: 1"),
        ),
        (
            "not a URL",
            PlatosClient::builder()
                .base_url("127.0.0.1 port 80")
                .session_token("t"),
        ),
    ];
    for (name, builder) in cases {
        match builder.build() {
            Err(e @ Error::Config(_)) => {
                assert!(!e.message().is_empty(), "{name}");
                assert!(e.status().is_none() && !e.is_retryable(), "{name}");
            }
            other => panic!("{name}: want Error::Config, got {other:?}"),
        }
    }

    // Arguments that cannot make a request fail before sending too.
    let client = client(&url);
    for id in ["", ".", ".."] {
        let e = client.agents().get(id).await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "agents.get({id:?}): {e:?}");
        let e = client.jobs().delete(id).await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "jobs.delete({id:?}): {e:?}");
    }
    let e = client
        .bgo()
        .raw("NOT A METHOD", "x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    // Beyond what the wire's int64 can carry.
    let e = client.agents().list().limit(u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");

    // An api-key client with a scope works and sends the headers.
    let ok = PlatosClient::builder()
        .base_url(format!("{url}/"))
        .api_key("k")
        .scope(scope())
        .build()
        .expect("valid api-key client");
    assert_eq!(ok.base_url(), url, "trailing slash dropped");

    // A per-call scope that is incomplete cannot stand in for one in api-key mode.
    let partial = ok.with_scope(Scope::new("org", "", "env"));
    let e = partial.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let e = partial
        .bgo()
        .raw("GET", "trigger/tasks", None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(recorder.count(), 0, "nothing was sent");
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(200, json!({"agents": []})));
    let client = PlatosClient::builder()
        .base_url(format!("{}/platos/", recorder.url()))
        .session_token("t")
        .build()
        .unwrap();
    client.agents().list().await.unwrap();
    assert_eq!(recorder.only().path, "/platos/api/v1/agent/agents");
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    // A port that was just free: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = client(&format!("http://127.0.0.1:{port}"))
        .agents()
        .list()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Network(_)), "{e:?}");
    assert_eq!(e.status(), None);
    assert!(e.is_retryable());
    assert!(std::error::Error::source(&e).is_some(), "keeps the cause");
}

#[tokio::test]
async fn hang_up_before_answering_is_a_network_error() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::hangup());
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Network(_)), "{e:?}");
    assert_eq!(recorder.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_is_a_timeout_error() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(200, json!({"agents": []})).delayed(Duration::from_secs(3600)));
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .timeout(Duration::from_secs(2))
        .retry(RetryConfig::disabled())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert!(e.is_retryable());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3),
        "timed out after {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_then_surface() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| Answer::empty(200).delayed(Duration::from_secs(3600)));
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let e = client.threads().list().await.unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert_eq!(recorder.count(), 4, "first try + 3 retries");
}

#[tokio::test]
async fn deletes_accept_an_empty_answer() {
    // The answer of a delete is ignored: 204 or an empty 200 is success.
    let recorder = Recorder::start().await;
    let client = client(&recorder.url());
    for status in [200, 204] {
        recorder.push(Answer::empty(status));
        client.jobs().delete("job_1").await.unwrap();
        recorder.push(Answer::empty(status));
        client.threads().delete("th_1").await.unwrap();
        recorder.push(Answer::empty(status));
        client.bgo().schedules().delete("sch_1").await.unwrap();
    }
    assert_eq!(recorder.count(), 6);
}

#[tokio::test]
async fn framework_validation_messages_array() {
    // NestJS's ValidationPipe: `message` is an array of strings.
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(
        400,
        json!({"statusCode": 400, "message": ["agentId should not be empty", "title must be a string"], "error": "Bad Request"}),
    ));
    let e = client(&recorder.url())
        .threads()
        .create("")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation(_)), "{e:?}");
    assert_eq!(
        e.message(),
        "Bad Request",
        "docs/wire.md: a non-string message is skipped"
    );
    assert_eq!(
        e.validation_errors(),
        ["agentId should not be empty", "title must be a string"]
    );
}

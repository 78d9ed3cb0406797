//! Retries, backoff, Retry-After and idempotency keys (docs/wire.md §2), timed
//! by a paused tokio clock: the recorder runs in the test's current-thread
//! runtime, so the instants it records are virtual and the delays between
//! tries are exactly the client's sleeps.

use std::time::{Duration, SystemTime};

use platos_client::{Error, PlatosClient, RetryConfig};
use platos_integration_tests::recorder::{Answer, Recorded, Recorder};
use serde_json::json;
use tokio::time::Instant;

fn builder(url: &str) -> platos_client::PlatosClientBuilder {
    PlatosClient::builder()
        .base_url(url)
        .session_token("tok_retry")
}

fn client(url: &str) -> PlatosClient {
    builder(url).build().expect("client builds")
}

fn unavailable() -> Answer {
    Answer::json(
        503,
        json!({"statusCode": 503, "message": "try later", "error": "Service Unavailable"}),
    )
}

fn gaps(seen: &[Recorded]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// `d` is within the ±20 % jitter band around `nominal` (plus the 1 ms
/// rounding of tokio timers).
fn in_band(d: Duration, nominal: Duration) -> bool {
    d >= nominal.mul_f64(0.8) && d <= nominal.mul_f64(1.2) + Duration::from_millis(2)
}

#[tokio::test(start_paused = true)]
async fn get_on_503_is_tried_four_times_with_jittered_backoff() {
    let recorder = Recorder::start().await;
    recorder.push_n(4, unavailable());
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    assert_eq!(e.status(), Some(503));
    let seen = recorder.requests();
    assert_eq!(seen.len(), 4, "first try + 3 retries");
    for (n, gap) in gaps(&seen).into_iter().enumerate() {
        let nominal = Duration::from_millis(250 * 2u64.pow(n as u32));
        assert!(
            in_band(gap, nominal),
            "retry {n}: waited {gap:?}, nominal {nominal:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_without_jitter_is_exact_and_capped() {
    let recorder = Recorder::start().await;
    recorder.push_n(6, unavailable());
    let client = builder(&recorder.url())
        .retry(
            RetryConfig::default()
                .with_max_retries(5)
                .with_jitter(0.0)
                .with_delays(Duration::from_millis(100), Duration::from_millis(500)),
        )
        .build()
        .unwrap();
    client.threads().list().await.unwrap_err();
    let ms: Vec<u128> = gaps(&recorder.requests())
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(ms, [100, 200, 400, 500, 500]);
}

#[tokio::test(start_paused = true)]
async fn the_last_answer_surfaces_and_a_success_ends_retrying() {
    let recorder = Recorder::start().await;
    recorder
        .push_n(3, unavailable())
        .push(Answer::json(500, json!({"message": "last straw"})));
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.message(), "last straw");

    let recorder = Recorder::start().await;
    recorder
        .push(unavailable())
        .push(Answer::empty(502))
        .push(Answer::json(200, json!({"agents": [{"id": "ag_1"}]})));
    let agents = client(&recorder.url()).agents().list().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(recorder.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn max_retries_is_honoured() {
    for (retries, tries) in [(0, 1), (1, 2), (5, 6)] {
        let recorder = Recorder::start().await;
        recorder.respond_with(|_| unavailable());
        let client = builder(&recorder.url())
            .retry(RetryConfig::default().with_max_retries(retries))
            .build()
            .unwrap();
        client.agents().list().await.unwrap_err();
        assert_eq!(recorder.count(), tries, "max_retries {retries}");
    }
}

#[tokio::test(start_paused = true)]
async fn post_without_idempotency_key_is_sent_once() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| unavailable());
    let client = builder(&recorder.url())
        .idempotency_keys(false)
        .build()
        .unwrap();
    let e = client.threads().create("ag_1").await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    let only = recorder.only();
    assert_eq!(only.method, "POST");
    assert_eq!(only.header("idempotency-key"), None);

    // PATCH too, and a network failure is not replayed either.
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| Answer::hangup());
    let client = builder(&recorder.url())
        .idempotency_keys(false)
        .build()
        .unwrap();
    let e = client
        .jobs()
        .update("job_1", Default::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Network(_)), "{e:?}");
    assert_eq!(recorder.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_with_key_is_retried_with_the_same_key() {
    let recorder = Recorder::start().await;
    recorder.push_n(4, unavailable());
    let client = client(&recorder.url());
    let e = client.threads().create("ag_1").await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    let seen = recorder.requests();
    assert_eq!(seen.len(), 4);
    let key = seen[0].header("idempotency-key").expect("a key").to_owned();
    let uuid = uuid::Uuid::parse_str(&key).expect("the key is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    for r in &seen {
        assert_eq!(r.header("idempotency-key"), Some(key.as_str()));
        assert_eq!(r.header_count("idempotency-key"), 1);
        assert_eq!(r.json(), Some(json!({"agentId": "ag_1", "title": null})));
    }

    // The next logical call mints a new key; a network failure is replayed.
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::hangup())
        .push(Answer::json(200, json!({"job": {"id": "job_1"}})));
    let client = builder(&recorder.url()).build().unwrap();
    client
        .jobs()
        .update("job_1", Default::default())
        .await
        .unwrap();
    let seen = recorder.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "PATCH");
    let k0 = seen[0].header("idempotency-key").unwrap();
    assert_eq!(seen[1].header("idempotency-key"), Some(k0));
    assert_ne!(k0, key, "a new key per logical call");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_retry_after_seconds() {
    let recorder = Recorder::start().await;
    recorder
        .push(
            Answer::json(
                429,
                json!({"error": {"code": "RATE_LIMITED", "title": "rate_limited"}}),
            )
            .header("retry-after", "2"),
        )
        .push(Answer::json(200, json!({"threads": []})));
    let started = Instant::now();
    client(&recorder.url()).threads().list().await.unwrap();
    let seen = recorder.requests();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_secs(2) && gap < Duration::from_millis(2500),
        "waited {gap:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_retry_after_http_date() {
    let recorder = Recorder::start().await;
    // HTTP dates have 1 s resolution and use the wall clock: the wait is
    // between 4 and 5 s, far from any backoff delay.
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
    recorder
        .push(Answer::empty(429).header("retry-after", &at))
        .push(Answer::json(200, json!({"agents": []})));
    client(&recorder.url()).agents().list().await.unwrap();
    let gap = gaps(&recorder.requests())[0];
    assert!(
        gap >= Duration::from_secs(3) && gap <= Duration::from_millis(5010),
        "waited {gap:?}"
    );
}

/// A server that asks for a longer wait than the client makes is answered at
/// once: the call ends with its error and the server's `Retry-After`,
/// instead of holding the caller for the cap and trying again too early.
#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_ends_the_call_at_once() {
    for (status, cap, asked) in [
        (429, Some(Duration::from_secs(5)), "3600"),
        (503, None, "86400"),
    ] {
        let recorder = Recorder::start().await;
        recorder
            .push(Answer::json(status, json!({"message": "later"})).header("retry-after", asked))
            .push(Answer::json(200, json!({"agents": []})));
        let retry = match cap {
            Some(cap) => RetryConfig::default().with_max_retry_after(cap),
            None => RetryConfig::default(),
        };
        let client = builder(&recorder.url()).retry(retry).build().unwrap();
        let started = Instant::now();
        let e = client.agents().list().await.unwrap_err();
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "{status}: no wait at all"
        );
        assert_eq!(recorder.count(), 1, "{status}: not tried again");
        assert_eq!(e.status(), Some(status));
        assert_eq!(
            e.retry_after(),
            Some(Duration::from_secs(asked.parse().unwrap())),
            "{status}: the server's wait is on the error"
        );
    }

    // Within the cap it is waited exactly.
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::empty(429).header("retry-after", "5"))
        .push(Answer::json(200, json!({"agents": []})));
    let client = builder(&recorder.url())
        .retry(RetryConfig::default().with_max_retry_after(Duration::from_secs(5)))
        .build()
        .unwrap();
    client.agents().list().await.unwrap();
    let gap = gaps(&recorder.requests())[0];
    assert!(
        gap >= Duration::from_secs(5) && gap < Duration::from_millis(5010),
        "waited {gap:?}"
    );
}

/// All waits of one call together stay within `max_total_wait`: a retry
/// that would pass it is not made.
#[tokio::test(start_paused = true)]
async fn one_call_waits_at_most_its_total_budget() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| {
        Answer::json(503, json!({"message": "busy"})).header("retry-after", "20")
    });
    let client = builder(&recorder.url())
        .retry(
            RetryConfig::default()
                .with_max_retries(10)
                .with_max_total_wait(Duration::from_secs(50)),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    // 20 s + 20 s fit in 50 s; a third wait would not.
    assert_eq!(recorder.count(), 3);
    assert_eq!(started.elapsed(), Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_without_retry_after_backs_off_then_surfaces() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| Answer::json(429, json!({"message": "slow down"})));
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::RateLimited(_)), "{e:?}");
    let seen = recorder.requests();
    assert_eq!(seen.len(), 4);
    for (n, gap) in gaps(&seen).into_iter().enumerate() {
        let nominal = Duration::from_millis(250 * 2u64.pow(n as u32));
        assert!(in_band(gap, nominal), "retry {n}: waited {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_never_retried() {
    for status in [400, 401, 403, 404, 409, 422, 418] {
        let recorder = Recorder::start().await;
        recorder.respond_with(move |_| Answer::json(status, json!({"message": "no"})));
        // No refresh callback: a 401 is final.
        let e = client(&recorder.url()).agents().list().await.unwrap_err();
        assert_eq!(recorder.count(), 1, "status {status} was retried");
        assert_eq!(e.status(), Some(status));
        if status == 401 || status == 403 {
            assert!(matches!(e, Error::Auth(_)), "{e:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn network_errors_on_get_are_retried() {
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::hangup())
        .push(Answer::hangup())
        .push(Answer::json(200, json!({"agents": [{"id": "ag_1"}]})));
    let agents = client(&recorder.url()).agents().list().await.unwrap();
    assert_eq!(agents.len(), 1);
    let seen = recorder.requests();
    assert_eq!(seen.len(), 3);
    let g = gaps(&seen);
    assert!(in_band(g[0], Duration::from_millis(250)), "{g:?}");
    assert!(in_band(g[1], Duration::from_millis(500)), "{g:?}");

    // Exhausted: the network error surfaces after 4 tries.
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| Answer::hangup());
    let e = client(&recorder.url()).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Network(_)), "{e:?}");
    assert_eq!(recorder.count(), 4);
}

#[tokio::test(start_paused = true)]
async fn delete_is_retried_without_a_key() {
    // DELETE is idempotent by definition: retried, and no key is minted.
    let recorder = Recorder::start().await;
    recorder
        .push(unavailable())
        .push(Answer::json(200, json!({"deleted": true})));
    client(&recorder.url())
        .jobs()
        .delete("job_1")
        .await
        .unwrap();
    let seen = recorder.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.header("idempotency-key").is_none()));
}

/// `.timeout(d)` on a request bounds the whole call: tries and the waits
/// between them. A wait that would end past it is not taken: the call ends
/// then with the last try's error, and no try starts after the deadline.
#[tokio::test(start_paused = true)]
async fn a_calls_timeout_bounds_its_retries_and_waits() {
    let recorder = Recorder::start().await;
    recorder.push_n(2, unavailable());
    let client = builder(&recorder.url())
        .retry(
            RetryConfig::default()
                .with_jitter(0.0)
                .with_delays(Duration::from_millis(400), Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client
        .agents()
        .list()
        .timeout(Duration::from_millis(1000))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    // Tries at 0 and 400 ms; the next would start at 1200 ms, past the
    // deadline, so the call ends at 400 ms with the 503.
    assert_eq!(started.elapsed(), Duration::from_millis(400));
    assert_eq!(recorder.count(), 2);

    // Within its deadline a call is untouched.
    recorder.push(Answer::json(200, json!({"agents": []})));
    let agents = client
        .agents()
        .list()
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(agents.is_empty());
}

/// A call's own `.timeout(d)` wins over the client's `call_timeout`, both
/// ways: longer lets the retries run, shorter cuts them.
#[tokio::test(start_paused = true)]
async fn a_calls_timeout_overrides_the_clients() {
    let recorder = Recorder::start().await;
    let client = builder(&recorder.url())
        .retry(
            RetryConfig::default()
                .with_jitter(0.0)
                .with_delays(Duration::from_millis(400), Duration::from_secs(10)),
        )
        .call_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    // The client's 300 ms leaves no room for the 400 ms wait: one try.
    recorder.push_n(2, unavailable());
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    assert_eq!(recorder.count(), 1);

    // The call's own 5 s does: the second 503 is retried and the third try answers.
    recorder.push(Answer::json(200, json!({"agents": []})));
    let agents = client
        .agents()
        .list()
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(agents.is_empty());
    assert_eq!(recorder.count(), 3);
}

//! What a call does on the network beyond the API: compressed answers
//! (decoded as read, the size limit on the decoded bytes), whole-call
//! timeouts on a paused clock, and a caller's own HTTP client.

use std::io::Write;
use std::time::Duration;

use platos_client::{Error, PlatosClient, RetryConfig};
use platos_integration_tests::recorder::{Answer, Recorder};
use serde_json::json;
use tokio::time::Instant;

fn agents_page() -> serde_json::Value {
    json!({"agents": [{"id": "agt_1", "name": "Support", "status": "active"}], "total": 1})
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn compressed(encoding: &str, body: &[u8]) -> Answer {
    let bytes = match encoding {
        "gzip" => gzip(body),
        "zstd" => zstd::encode_all(body, 3).unwrap(),
        "br" => {
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &body[..], &mut out, &Default::default()).unwrap();
            out
        }
        other => panic!("{other}"),
    };
    Answer::raw(200, bytes)
        .header("content-type", "application/json")
        .header("content-encoding", encoding)
}

#[tokio::test]
async fn gzip_zstd_and_brotli_answers_are_asked_for_and_decoded() {
    let recorder = Recorder::start().await;
    let body = serde_json::to_vec(&agents_page()).unwrap();
    for encoding in ["gzip", "zstd", "br"] {
        recorder.push(compressed(encoding, &body));
    }
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .build()
        .unwrap();
    for encoding in ["gzip", "zstd", "br"] {
        let agents = client
            .agents()
            .list()
            .await
            .unwrap_or_else(|e| panic!("{encoding}: {e}"));
        assert_eq!(agents.len(), 1, "{encoding}");
        assert_eq!(agents[0].id, "agt_1");
    }
    let asked = recorder.requests()[0]
        .header("accept-encoding")
        .unwrap_or("")
        .to_owned();
    for encoding in ["gzip", "zstd", "br"] {
        assert!(asked.contains(encoding), "accept-encoding: {asked}");
    }
}

/// 64 MiB of zeros gzip to 64 KiB: the limit counts decoded bytes, so the
/// call fails naming it once 1 MiB is decoded, and nothing more is read.
#[tokio::test]
async fn a_decompression_bomb_fails_at_the_decoded_size_limit() {
    let recorder = Recorder::start().await;
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 256 << 10, "{} bytes", bomb.len());
    recorder.push(
        Answer::raw(200, bomb)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip"),
    );
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .max_response_bytes(1 << 20)
        .build()
        .unwrap();
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert!(
        e.message().contains("1048576-byte limit"),
        "{}",
        e.message()
    );
}

/// A server that never answers: each try is cut at the call's time left,
/// so the call ends at its timeout, not after four 30-s tries.
#[tokio::test(start_paused = true)]
async fn a_hung_server_fails_within_the_call_timeout() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| Answer::json(200, json!({})).delayed(Duration::from_secs(3600)));
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .call_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.agents().list().await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(
        recorder.count(),
        1,
        "no retry could finish in the time left"
    );

    // Without a call timeout the same server holds the call for every try.
    let unbounded = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .timeout(Duration::from_secs(2))
        .retry(RetryConfig::default().with_jitter(0.0))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = unbounded.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    // 4 tries of 2 s and waits of 0.25 + 0.5 + 1 s.
    assert_eq!(
        started.elapsed().as_millis() / 100,
        97,
        "{:?}",
        started.elapsed()
    );

    // A handle's own limit wins over the client's (none here).
    let started = Instant::now();
    let e = unbounded
        .with_call_timeout(Duration::from_millis(2500))
        .agents()
        .list()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Retries stop when the next wait would end past the call's timeout: the
/// caller gets the last answer's error at once instead of a doomed wait.
#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_call_timeout_cannot_be_met() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|_| {
        Answer::json(503, json!({"message": "later"})).header("retry-after", "2")
    });
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("t")
        .call_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    // Tries at 0 s, 2 s, 4 s; a wait to 6 s would pass the 5-s limit.
    assert_eq!(recorder.count(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A caller's reqwest client sends the calls: its own defaults stay, the
/// SDK still adds its headers and retries.
#[tokio::test]
async fn the_callers_http_client_sends_with_the_sdks_headers_and_retries() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(503, json!({"message": "later"})));
    recorder.push(Answer::json(200, agents_page()));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-app-trace", "from-the-app".parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client = PlatosClient::builder()
        .base_url(recorder.url())
        .session_token("tok_app")
        .retry(
            RetryConfig::default().with_delays(Duration::from_millis(1), Duration::from_millis(1)),
        )
        .http_client(http)
        .build()
        .unwrap();
    let agents = client.agents().list().await.unwrap();
    assert_eq!(agents.len(), 1);
    let seen = recorder.requests();
    assert_eq!(seen.len(), 2, "the 503 was retried");
    for r in &seen {
        assert_eq!(r.header("x-app-trace"), Some("from-the-app"));
        assert_eq!(r.header("x-platos-session-token"), Some("tok_app"));
        assert!(
            r.header("user-agent")
                .unwrap_or("")
                .starts_with("platos-client-rust/")
        );
    }
}

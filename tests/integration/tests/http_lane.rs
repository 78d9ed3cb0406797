//! Turns over the HTTP lane (`POST /threads/{id}/stream`, docs/wire.md §8.2) against
//! the test server: the same events as the socket, approvals over REST, stop on
//! drop, the automatic fallback behind a proxy that refuses WebSocket upgrades,
//! whole turns as one value, and typed structured output.

use std::time::Duration;

use platos_client::{Decision, Error, PlatosClient, SendOptions, Transport};
use platos_events::Event;
use platos_integration_tests::realtime::{DEADLINE, collect, kinds, next};
use platos_test_server::{SEED_THREAD, TestServer};
use serde::Deserialize;
use serde_json::{Value, json};

fn client(server: &TestServer) -> PlatosClient {
    platos_integration_tests::realtime::client(&server.base_url(), &server.session_token())
}

fn over(transport: Transport) -> SendOptions {
    SendOptions::new().transport(transport)
}

/// The server's events of a turn as JSON, without what differs by nature between two
/// runs (fresh ids, the client-made lifecycle events, the HTTP lane's `_seq`).
fn comparable(items: &[Result<Event, Error>]) -> Vec<Value> {
    items
        .iter()
        .map(|i| i.as_ref().expect("no error items"))
        .filter(|e| !matches!(e, Event::Connected(_)))
        .map(|e| {
            let mut v = e.to_value();
            if let Some(map) = v.as_object_mut() {
                map.remove("_seq");
            }
            for id in [
                "messageId",
                "callId",
                "runId",
                "approvalId",
                "artifactId",
                "createdAt",
            ] {
                if v.get(id).is_some() {
                    v[id] = json!("<id>");
                }
            }
            v
        })
        .collect()
}

/// One turn over `transport` on a fresh server (artifact revisions count per thread).
async fn one_turn(transport: Transport, message: &str) -> (Vec<Result<Event, Error>>, TestServer) {
    let server = TestServer::builder().start().await.unwrap();
    // Heartbeats interleave with the events; the stream never shows them.
    server.faults().set_sse_heartbeat(Duration::from_millis(1));
    server.faults().set_event_delay(Duration::from_millis(2));
    let stream = client(&server)
        .threads()
        .send_with(SEED_THREAD, message, over(transport));
    (collect(stream).await, server)
}

#[tokio::test]
async fn a_turn_streams_the_same_events_over_http_websocket_and_automatic() {
    let message = "hello [tokens=4] [unknown-event]";
    let (ws, _) = one_turn(Transport::WebSocket, message).await;
    let (http, server) = one_turn(Transport::Http, message).await;
    let (auto, _) = one_turn(Transport::Auto, message).await;

    assert_eq!(kinds(&http)[0], "connected");
    assert_eq!(kinds(&http).last().map(String::as_str), Some("done"));
    assert!(
        !kinds(&http).contains(&"heartbeat".to_string()),
        "{:?}",
        kinds(&http)
    );
    assert!(server.faults().sse_heartbeats_sent() > 0);
    // `_seq` numbers the frames of the HTTP lane (heartbeats included) and rides
    // along as an extra field, as §4 asks of every lane.
    let seqs: Vec<u64> = http
        .iter()
        .filter_map(|e| e.as_ref().unwrap().to_value()["_seq"].as_u64())
        .collect();
    assert_eq!(seqs.len(), http.len() - 1);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(comparable(&ws), comparable(&http));
    assert_eq!(comparable(&ws), comparable(&auto));

    // The request carried the key as a header and the §8.2 body, nothing else.
    let requests = server.recorder().requests_to("/stream");
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        r.path,
        format!("/api/v1/agent/threads/{SEED_THREAD}/stream")
    );
    let key = r
        .headers
        .iter()
        .find(|(k, _)| k == "idempotency-key")
        .map(|(_, v)| v.clone());
    assert!(key.is_some_and(|k| uuid::Uuid::parse_str(&k).is_ok()));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json!({"message": message}));
}

#[tokio::test]
async fn a_caller_key_goes_out_as_the_idempotency_key_header() {
    let server = TestServer::builder().start().await.unwrap();
    let options = over(Transport::Http)
        .idempotency_key("turn-key-1")
        .agent_id(platos_test_server::SEED_AGENT_SUPPORT);
    let items = collect(
        client(&server)
            .threads()
            .send_with(SEED_THREAD, "hi", options),
    )
    .await;
    assert_eq!(kinds(&items).last().map(String::as_str), Some("done"));
    let r = &server.recorder().requests_to("/stream")[0];
    assert!(
        r.headers
            .contains(&("idempotency-key".into(), "turn-key-1".into()))
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"message": "hi", "agentId": platos_test_server::SEED_AGENT_SUPPORT})
    );
}

#[tokio::test]
async fn an_approval_pauses_the_http_turn_until_answered_over_rest() {
    let server = TestServer::builder().start().await.unwrap();
    let mut stream = client(&server).threads().send_with(
        SEED_THREAD,
        "needs approval [tokens=2]",
        over(Transport::Http),
    );
    let approval_id = loop {
        match next(&mut stream).await {
            Some(Ok(Event::ApprovalNeeded(a))) => break a.approval_id.clone(),
            Some(_) => {}
            None => panic!("ended before approval_needed"),
        }
    };
    stream
        .approval_response(approval_id.clone(), Decision::reject().with_comment("no"))
        .await
        .unwrap();
    let rest = collect(stream).await;
    let Ok(Event::ApprovalResolved(resolved)) = &rest[0] else {
        panic!("{:?}", kinds(&rest))
    };
    assert_eq!(resolved.approval_id, approval_id);
    assert_eq!(resolved.status, "rejected");
    assert_eq!(kinds(&rest).last().map(String::as_str), Some("done"));
    let resolves = server.recorder().requests_to("/resolve");
    assert_eq!(resolves.len(), 1);
}

#[tokio::test]
async fn dropping_the_http_stream_stops_the_turn_on_the_server() {
    let server = TestServer::builder().start().await.unwrap();
    server.faults().set_sse_heartbeat(Duration::from_millis(5));
    let mut stream =
        client(&server)
            .threads()
            .send_with(SEED_THREAD, "wait [hang]", over(Transport::Http));
    // `[hang]` holds the turn after its first token until it is stopped.
    loop {
        match next(&mut stream).await {
            Some(Ok(Event::Token(_))) => break,
            Some(_) => {}
            None => panic!("ended before the first token"),
        }
    }
    // Heartbeats keep the held turn's stream alive and are never handed on.
    assert!(
        server
            .recorder()
            .wait_until(DEADLINE, |_| server.faults().sse_heartbeats_sent() >= 2)
            .await
    );
    drop(stream);
    assert!(
        server
            .recorder()
            .wait_until(DEADLINE, |_| server
                .turn_statuses(SEED_THREAD)
                .contains(&"stopped"))
            .await,
        "{:?}",
        server.turn_statuses(SEED_THREAD)
    );
}

#[tokio::test]
async fn stop_closes_the_request_and_ends_the_stream() {
    let server = TestServer::builder().start().await.unwrap();
    let mut stream =
        client(&server)
            .threads()
            .send_with(SEED_THREAD, "wait [hang]", over(Transport::Http));
    loop {
        if let Some(Ok(Event::Token(_))) = next(&mut stream).await {
            break;
        }
    }
    stream.stop();
    let rest = collect(stream).await;
    assert!(rest.is_empty(), "{:?}", kinds(&rest));
    assert!(
        server
            .recorder()
            .wait_until(DEADLINE, |_| server
                .turn_statuses(SEED_THREAD)
                .contains(&"stopped"))
            .await
    );
}

#[tokio::test]
async fn automatic_falls_back_to_http_behind_a_proxy_and_remembers() {
    for status in [403, 502] {
        let server = TestServer::builder().start().await.unwrap();
        server.faults().refuse_upgrades(Some(status));
        let client = client(&server);
        let message = "hello [tokens=2]";

        // WebSocket alone cannot get through, and says why.
        let ws = collect(client.threads().send_with(
            SEED_THREAD,
            message,
            over(Transport::WebSocket),
        ))
        .await;
        assert_eq!(kinds(&ws), ["Err(upgrade_blocked)"], "status {status}");
        let handshakes = server.recorder().handshake_count();

        let mut auto = client
            .threads()
            .send_with(SEED_THREAD, message, over(Transport::Auto));
        let first = next(&mut auto).await;
        assert!(matches!(first, Some(Ok(Event::Connected(_)))), "{first:?}");
        assert_eq!(auto.transport(), Transport::Http);
        let rest = collect(auto).await;
        assert_eq!(kinds(&rest).last().map(String::as_str), Some("done"));
        assert_eq!(server.recorder().handshake_count(), handshakes + 1);

        // The client (and its clones) now go straight to HTTP.
        let again = client
            .clone()
            .threads()
            .send_with(SEED_THREAD, message, over(Transport::Auto));
        assert_eq!(again.transport(), Transport::Http);
        let items = collect(again).await;
        assert_eq!(kinds(&items).last().map(String::as_str), Some("done"));
        assert_eq!(server.recorder().handshake_count(), handshakes + 1);
        assert_eq!(server.recorder().requests_to("/stream").len(), 2);
    }
}

#[tokio::test]
async fn a_streamed_turn_collects_into_the_one_shot_result_on_both_lanes() {
    let server = TestServer::builder().start().await.unwrap();
    let client = client(&server);
    for transport in [Transport::WebSocket, Transport::Http] {
        let turn = client
            .threads()
            .send_with(SEED_THREAD, "hello [tokens=3]", over(transport))
            .collect_turn()
            .await
            .unwrap();
        assert_eq!(turn.text, "w1 w2 w3 ");
        assert_eq!(turn.thread_id, SEED_THREAD);
        let persisted = turn
            .events
            .iter()
            .find_map(|e| match e {
                Event::MessagePersisted(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            turn.message_id.as_deref(),
            Some(persisted.message_id.as_str())
        );
        assert_eq!(turn.cost_cents, persisted.cost_cents);
        assert_eq!(turn.input_tokens, persisted.input_tokens);
        assert_eq!(turn.output_tokens, persisted.output_tokens);
        assert!(matches!(turn.events.last(), Some(Event::Done(_))));
        assert_eq!(turn.structured_output, None);
    }
}

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Review {
    summary: String,
    rating: u8,
    mood: Mood,
    author: Author,
    follow_up: Option<String>,
    tags: Vec<String>,
}

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mood {
    Happy,
    Neutral,
    Upset,
}

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
struct Author {
    name: String,
    email: Option<String>,
}

#[tokio::test]
async fn a_typed_structured_answer_round_trips_over_http() {
    let server = TestServer::builder().start().await.unwrap();
    let answer = client(&server)
        .threads()
        .ask_structured::<Review>(SEED_THREAD, "review this", SendOptions::new())
        .await
        .unwrap();
    assert_eq!(
        answer.value,
        Review {
            summary: "example".into(),
            rating: 1,
            mood: Mood::Happy,
            author: Author {
                name: "example".into(),
                email: Some("example".into())
            },
            follow_up: Some("example".into()),
            tags: vec!["example".into()],
        }
    );
    assert_eq!(answer.retry_count, 0);
    // The schema went out as `outputSchema`, over HTTP (the socket cannot carry it).
    let r = &server.recorder().requests_to("/stream")[0];
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["outputSchema"],
        platos_client::output_schema::<Review>()
    );
    assert_eq!(
        body["outputSchema"]["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[tokio::test]
async fn the_one_shot_call_sends_the_schema_and_decodes_the_same_type() {
    let server = TestServer::builder().start().await.unwrap();
    let schema = platos_client::output_schema::<Author>();
    let Value::Object(schema) = schema else {
        panic!()
    };
    let turn = client(&server)
        .agents()
        .ask(platos_test_server::SEED_AGENT_SUPPORT, "who wrote it")
        .output_schema(schema)
        .await;
    // The one-shot route of the test server does not run the schema: it proves the
    // field is sent and that a missing structured_output is a typed decode error.
    let turn = turn.unwrap();
    let e = turn.structured::<Author>().unwrap_err();
    assert_eq!(e.decode_path(), Some("structured_output"));
    let r = &server.recorder().requests_to("/messages")[0];
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body["outputSchema"]["properties"]["name"].is_object());
}

#[tokio::test]
async fn a_schema_the_runtime_gave_up_on_is_a_validation_error_listing_why() {
    let server = TestServer::builder().start().await.unwrap();
    let e = client(&server)
        .threads()
        .ask_structured::<Review>(SEED_THREAD, "review [invalid-output]", SendOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation(_)), "{e:?}");
    assert_eq!(e.code(), Some("structured_output_invalid"));
    assert_eq!(
        e.validation_errors(),
        ["/rating: must be integer", "/summary: is required"]
    );
}

#[tokio::test]
async fn an_object_that_does_not_fit_the_type_names_the_field() {
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    struct Wants {
        #[allow(dead_code)]
        author: Strict,
    }
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    struct Strict {
        #[allow(dead_code)]
        name: u32,
    }
    let server = TestServer::builder().start().await.unwrap();
    // The server answers the schema it was sent (Review's); the caller decodes another type.
    let turn = client(&server)
        .threads()
        .send_with(
            SEED_THREAD,
            "review",
            SendOptions::new().output_schema(platos_client::output_schema::<Review>()),
        )
        .collect_turn()
        .await
        .unwrap();
    assert!(turn.structured::<Review>().is_ok());
    let e = turn.structured::<Wants>().unwrap_err();
    assert_eq!(e.decode_path(), Some("object.author.name"), "{e}");
}

#[tokio::test]
async fn a_schema_on_the_websocket_lane_is_refused_before_sending() {
    let server = TestServer::builder().start().await.unwrap();
    let options = over(Transport::WebSocket).output_schema(json!({"type": "object"}));
    let items = collect(
        client(&server)
            .threads()
            .send_with(SEED_THREAD, "x", options),
    )
    .await;
    assert_eq!(kinds(&items), ["Err(config)"]);
    assert_eq!(server.recorder().handshake_count(), 0);
}

#[tokio::test]
async fn http_lane_refusals_are_the_usual_errors() {
    let server = TestServer::builder().start().await.unwrap();
    let items = collect(client(&server).threads().send_with(
        "thread_missing",
        "x",
        over(Transport::Http),
    ))
    .await;
    assert_eq!(items.len(), 1);
    assert!(
        matches!(items[0], Err(Error::NotFound(_))),
        "{:?}",
        kinds(&items)
    );
}

/// The idle limit counts events, not heartbeats: a turn that only sends
/// heartbeats ends with `turn_idle`, and closing the request stops it.
#[tokio::test]
async fn the_idle_limit_ends_an_http_turn_that_only_sends_heartbeats() {
    let server = TestServer::start().await.unwrap();
    server.faults().set_sse_heartbeat(Duration::from_millis(20));
    let before = server.turn_statuses(SEED_THREAD).len();
    let options = over(Transport::Http).idle_limit(Duration::from_millis(400));
    let items = collect(
        client(&server)
            .threads()
            .send_with(SEED_THREAD, "[hang]", options),
    )
    .await;
    let Some(Err(e)) = items.last() else {
        panic!("{:?}", kinds(&items))
    };
    assert_eq!(e.code(), Some("turn_idle"), "{e}");
    assert!(server.faults().sse_heartbeats_sent() >= 5);
    assert!(
        server
            .recorder()
            .wait_until(DEADLINE, |_| server.turn_statuses(SEED_THREAD).len()
                > before)
            .await
    );
    assert_eq!(server.turn_statuses(SEED_THREAD)[before..], ["stopped"]);
}

/// A stream that carries nothing at all, not even heartbeats, is a dead
/// connection after `http_silence`.
#[tokio::test]
async fn an_http_stream_without_even_heartbeats_is_dead_after_the_silence_limit() {
    let server = TestServer::start().await.unwrap();
    server.faults().set_sse_heartbeat(Duration::from_secs(3600));
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .realtime(platos_client::RealtimeConfig::default().http_silence(Duration::from_millis(400)))
        .build()
        .unwrap();
    let items = collect(
        client
            .threads()
            .send_with(SEED_THREAD, "[hang]", over(Transport::Http)),
    )
    .await;
    let Some(Err(e)) = items.last() else {
        panic!("{:?}", kinds(&items))
    };
    assert!(matches!(e, Error::Network(_)), "{e:?}");
    assert!(e.message().contains("not even a heartbeat"), "{e}");
    // Only the events before the hang came through.
    assert!(
        kinds(&items).contains(&"token".to_owned()),
        "{:?}",
        kinds(&items)
    );
}

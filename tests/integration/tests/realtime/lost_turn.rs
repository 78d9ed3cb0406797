//! A turn the gateway loses across a restart ends with what the thread
//! proves (docs/realtime.md §6): the persisted answer, a failure, or
//! `turn_lost`; a durable turn keeps streaming. The test server's
//! `restart_realtime` kills or keeps the turns; `[hang]` holds the turn
//! after its first token until the restart, so nothing depends on timing.

use std::time::Duration;

use platos_client::{Error, PlatosClient, RealtimeConfig, ReconnectConfig};
use platos_events::Event;
use platos_integration_tests::realtime::{NodeServer, collect, kinds, lost_turn_client, next};
use platos_test_server::{RestFault, Restart, SEED_AGENT_SUPPORT, SEED_THREAD, TestServer};

/// Short, so the check comes quickly once the restart left the turn silent.
const CHECK: Duration = Duration::from_millis(200);

/// Starts a held turn, reads to its first token, restarts the realtime side
/// with `restart`, and reads the rest of the stream.
async fn restarted(
    server: &TestServer,
    restart: Restart,
    check: Duration,
) -> Vec<Result<Event, Error>> {
    let client = lost_turn_client(&server.base_url(), &server.session_token(), check);
    let mut stream = client
        .threads()
        .send(SEED_THREAD, "[hang] [tokens=5] restart me");
    loop {
        match next(&mut stream).await {
            Some(Ok(Event::Token(_))) => break,
            Some(_) => {}
            None => panic!("the stream ended before its first token"),
        }
    }
    server.faults().restart_realtime(restart).await;
    collect(stream).await
}

/// The items from the reconnect's `stream_gap` on.
fn after_reconnect(items: &[Result<Event, Error>]) -> &[Result<Event, Error>] {
    let k = kinds(items);
    let at = k
        .iter()
        .position(|k| k == "disconnected")
        .unwrap_or_else(|| panic!("no reconnect in {k:?}"));
    assert_eq!(
        k[at..at + 4],
        ["disconnected", "reconnecting", "connected", "stream_gap"],
        "{k:?}"
    );
    &items[at + 4..]
}

#[tokio::test]
async fn an_answer_persisted_before_the_restart_is_recovered_and_the_stream_ends() {
    let server = TestServer::start().await.unwrap();
    let items = restarted(&server, Restart::PersistAnswer, CHECK).await;
    let rest = after_reconnect(&items);
    assert_eq!(
        kinds(rest),
        ["stream_gap", "recovered_message"],
        "{:?}",
        kinds(&items)
    );
    let Ok(Event::RecoveredMessage(recovered)) = &rest[1] else {
        panic!("{rest:?}")
    };
    assert_eq!(recovered.text, "w1 w2 w3 w4 w5 ");
    let client = lost_turn_client(&server.base_url(), &server.session_token(), CHECK);
    let messages = client.threads().messages(SEED_THREAD).await.unwrap();
    let persisted = messages
        .iter()
        .rfind(|m| m.role.as_deref() == Some("assistant"))
        .unwrap();
    assert_eq!(recovered.message_id, persisted.id);
    assert_eq!(
        recovered.cost_cents,
        persisted.response_json.as_ref().unwrap()["cost_cents"].as_f64()
    );
    assert!(recovered.input_tokens.is_some() && recovered.output_tokens.is_some());
    assert_eq!(recovered.thread_id.as_deref(), Some(SEED_THREAD));
    // Reconnected once, the message never sent again, then the REST check.
    let recorder = server.recorder();
    assert_eq!(recorder.socket_events_named("message").len(), 1);
    assert_eq!(recorder.socket_events_named("join_thread").len(), 1);
    assert!(
        !recorder
            .requests_to(&format!("/threads/{SEED_THREAD}/messages"))
            .is_empty()
    );
}

#[tokio::test]
async fn a_failure_recorded_in_the_thread_ends_with_turn_failed() {
    let server = TestServer::start().await.unwrap();
    let items = restarted(&server, Restart::PersistFailure, CHECK).await;
    let rest = after_reconnect(&items);
    assert_eq!(kinds(rest), ["Err(turn_failed)"], "{:?}", kinds(&items));
    let Err(error) = &rest[0] else { unreachable!() };
    assert!(matches!(error, Error::Stream(_)), "{error:?}");
    assert!(error.message().contains("restarted mid-turn"), "{error}");
    assert!(error.message().contains("aborted"), "{error}");
}

#[tokio::test]
async fn a_turn_the_thread_knows_nothing_of_ends_with_turn_lost() {
    let server = TestServer::start().await.unwrap();
    let items = restarted(&server, Restart::Forget, CHECK).await;
    let rest = after_reconnect(&items);
    assert_eq!(kinds(rest), ["Err(turn_lost)"], "{:?}", kinds(&items));
    let Err(error) = &rest[0] else { unreachable!() };
    assert!(error.message().contains("may still complete"), "{error}");
    assert!(error.message().contains("threads().messages"), "{error}");
}

#[tokio::test]
async fn a_check_whose_rest_call_fails_ends_with_turn_lost_naming_the_failure() {
    let server = TestServer::start().await.unwrap();
    server
        .faults()
        .fail_next_rest(RestFault::internal().path_contains("/messages").times(100));
    let items = restarted(&server, Restart::PersistAnswer, CHECK).await;
    let rest = after_reconnect(&items);
    // The answer is there, but unreadable: nothing is claimed.
    assert_eq!(kinds(rest), ["Err(turn_lost)"], "{:?}", kinds(&items));
    let Err(error) = &rest[0] else { unreachable!() };
    assert!(
        error
            .message()
            .contains("reading the thread's messages failed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_durable_turn_keeps_streaming_after_the_reconnect_without_a_check() {
    let server = TestServer::start().await.unwrap();
    // The default check (minutes): a durable turn never gets near it.
    let items = restarted(
        &server,
        Restart::Durable,
        RealtimeConfig::default().turn_check_after_reconnect,
    )
    .await;
    let rest = after_reconnect(&items);
    let k = kinds(rest);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert!(k.iter().any(|k| k == "token"), "{k:?}");
    assert!(k.iter().any(|k| k == "message_persisted"), "{k:?}");
    assert!(
        !k.iter()
            .any(|k| k == "recovered_message" || k == "stream_gap"),
        "{k:?}"
    );
    let recorder = server.recorder();
    assert_eq!(recorder.socket_events_named("message").len(), 1);
    assert!(recorder.requests_to("/messages").is_empty());
}

#[tokio::test]
async fn a_turn_silent_past_its_idle_limit_is_stopped_with_turn_idle() {
    let server = TestServer::start().await.unwrap();
    let client = lost_turn_client(&server.base_url(), &server.session_token(), CHECK);
    let options = platos_client::SendOptions::new().idle_limit(Duration::from_millis(200));
    let items = collect(
        client
            .threads()
            .send_with(SEED_THREAD, "[hang] wait", options),
    )
    .await;
    let k = kinds(&items);
    assert_eq!(
        k.last().map(String::as_str),
        Some("Err(turn_idle)"),
        "{k:?}"
    );
    // Given up, so stopped server-side rather than left running.
    assert!(
        server
            .recorder()
            .wait_for_socket_event("stop", platos_integration_tests::realtime::DEADLINE)
            .await
            .is_some()
    );
}

/// The measured case: the Node `socket.io` gateway process is killed mid-turn
/// and a new one starts on the same port. The client reconnects (re-joins,
/// never re-sends the message); the new process knows nothing of the turn,
/// so the check ends the stream with `turn_lost` instead of waiting forever.
#[tokio::test]
async fn node_a_gateway_process_restarted_mid_turn_ends_the_turn_with_turn_lost() {
    let mut node = NodeServer::start(&[("TOKENS", "300"), ("HOLD_AFTER_TOKENS", "3")]).await;
    let port = node.port.to_string();
    let client = PlatosClient::builder()
        .base_url(node.base_url())
        .session_token("tok")
        // Room for a Node process to start: up to 50 tries, 20–200 ms apart.
        .reconnect(
            ReconnectConfig::default()
                .with_delays(Duration::from_millis(20), Duration::from_millis(200))
                .with_jitter(0.0)
                .with_max_attempts(50),
        )
        .realtime(RealtimeConfig::default().turn_check_after_reconnect(CHECK))
        .build()
        .unwrap();
    let mut stream = client.threads().send("th1", "hi");
    let mut seen = 0;
    while seen < 3 {
        match next(&mut stream).await {
            Some(Ok(Event::Token(_))) => seen += 1,
            Some(_) => {}
            None => panic!("the stream ended before three tokens"),
        }
    }
    node.kill().await;
    let fresh = NodeServer::start(&[("PORT", &port)]).await;
    let items = collect(stream).await;
    let k = kinds(&items);
    assert_eq!(
        k.last().map(String::as_str),
        Some("Err(turn_lost)"),
        "{k:?}"
    );
    let gap = k
        .iter()
        .position(|k| k == "stream_gap")
        .expect("no stream_gap");
    assert_eq!(k[gap - 1], "connected", "{k:?}");
    assert!(!k.iter().any(|k| k == "token" || k == "done"), "{k:?}");
    // The new process saw the re-join and the REST check, never the message.
    assert_eq!(fresh.received("join_thread").len(), 1);
    assert!(fresh.received("message").is_empty());
    assert!(
        fresh
            .lines()
            .iter()
            .any(|l| l == "HTTP GET /api/v1/agent/threads/th1/messages"),
        "{:?}",
        fresh.lines()
    );
}

#[tokio::test]
async fn turns_sharing_a_connection_are_each_checked_against_their_own_thread() {
    let server = TestServer::start().await.unwrap();
    for thread in ["th_a", "th_b"] {
        server.insert_thread(thread, SEED_AGENT_SUPPORT);
    }
    let client = lost_turn_client(&server.base_url(), &server.session_token(), CHECK);
    let mut a = client.threads().send("th_a", "[hang] [tokens=2] a");
    let mut b = client.threads().send("th_b", "[hang] [tokens=3] b");
    for stream in [&mut a, &mut b] {
        while !matches!(next(stream).await, Some(Ok(Event::Token(_)))) {}
    }
    server
        .faults()
        .restart_realtime(Restart::PersistAnswer)
        .await;
    let (a, b) = tokio::join!(collect(a), collect(b));
    for (items, thread, text) in [(a, "th_a", "w1 w2 "), (b, "th_b", "w1 w2 w3 ")] {
        let rest = after_reconnect(&items);
        assert_eq!(kinds(rest), ["stream_gap", "recovered_message"], "{thread}");
        let Ok(Event::RecoveredMessage(recovered)) = &rest[1] else {
            unreachable!()
        };
        assert_eq!(
            (recovered.text.as_str(), recovered.thread_id.as_deref()),
            (text, Some(thread))
        );
    }
    // One connection before the restart and one after, each thread re-joined.
    let recorder = server.recorder();
    assert_eq!(recorder.connect_count(), 2);
    assert_eq!(recorder.socket_events_named("join_thread").len(), 2);
}

/// The server took the message and its answer was persisted while the
/// client heard nothing of it: the message is sent again after the
/// reconnect (the server ignores the repeated key), and the silent turn is
/// still checked, so its answer is recovered instead of awaited forever.
#[tokio::test]
async fn a_resent_message_the_server_already_answered_is_checked_and_recovered() {
    let server = TestServer::builder()
        .event_delay(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let client = lost_turn_client(&server.base_url(), &server.session_token(), CHECK);
    let stream = client
        .threads()
        .send(SEED_THREAD, "[tokens=3] answered unseen");
    let reading = tokio::spawn(collect(stream));
    let recorder = server.recorder();
    let deadline = Duration::from_secs(20);
    assert!(
        recorder
            .wait_for_socket_event("message", deadline)
            .await
            .is_some()
    );
    // Before the turn's first event (each waits 300 ms): the turn dies at it
    // with its answer persisted, then every socket drops.
    server
        .faults()
        .restart_realtime(Restart::PersistAnswer)
        .await;
    let items = reading.await.unwrap();
    let k = kinds(&items);
    assert_eq!(
        k.last().map(String::as_str),
        Some("recovered_message"),
        "{k:?}"
    );
    assert_eq!(recorder.socket_events_named("message").len(), 2, "{k:?}");
}

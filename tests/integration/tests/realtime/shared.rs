//! Many turns on one connection, against the Platos test server
//! (socketioxide): routing by `threadId`, approvals, a refusal attributed to
//! the right turn, one reconnect for every live turn, a stalled consumer
//! beside a healthy one, stop and drop acting on one turn, per-agent
//! namespaces, dedicated and capped connections, a warm connection reused.

use std::time::Duration;

use platos_client::{Decision, Error, PlatosClient, RealtimeConfig, SendOptions, TurnStream};
use platos_events::Event;
use platos_integration_tests::realtime::{collect, kinds, next};
use platos_test_server::{SEED_AGENT_RESEARCH, SEED_AGENT_SUPPORT, SocketRefusal, TestServer};
use serde_json::json;

fn client_with(server: &TestServer, config: RealtimeConfig) -> PlatosClient {
    PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .reconnect(platos_integration_tests::realtime::fast_reconnect())
        .realtime(config)
        .build()
        .unwrap()
}

fn client(server: &TestServer) -> PlatosClient {
    client_with(server, RealtimeConfig::default())
}

/// A server with threads `th_0..n` of the support agent.
async fn server_with_threads(n: usize, delay: Duration) -> TestServer {
    let server = TestServer::builder()
        .event_delay(delay)
        .start()
        .await
        .unwrap();
    for i in 0..n {
        server.insert_thread(&format!("th_{i}"), SEED_AGENT_SUPPORT);
    }
    server
}

/// Reads a stream up to and including its first event of `kind`.
async fn until(stream: &mut TurnStream, kind: &str) -> Vec<Result<Event, Error>> {
    let mut seen = Vec::new();
    loop {
        let item = next(stream).await.expect("ended early");
        let found = matches!(&item, Ok(e) if e.kind() == kind);
        seen.push(item);
        if found {
            return seen;
        }
    }
}

/// Every agent event of `items` belongs to `thread`.
fn assert_thread(items: &[Result<Event, Error>], thread: &str) {
    for item in items.iter().flatten() {
        if let Some(t) = item.thread_id() {
            assert_eq!(t, thread, "{:?}", item.kind());
        }
    }
}

fn count(k: &[String], kind: &str) -> usize {
    k.iter().filter(|x| *x == kind).count()
}

#[tokio::test]
async fn two_turns_of_one_agent_share_one_connection_and_get_their_own_events() {
    let server = server_with_threads(2, Duration::from_millis(2)).await;
    let client = client(&server);
    let options = || SendOptions::new().agent_id(SEED_AGENT_SUPPORT);
    let a = client.threads().send_with("th_0", "[tokens=6]", options());
    let b = client.threads().send_with("th_1", "[tokens=9]", options());
    let (a, b) = tokio::join!(collect(a), collect(b));
    let (ka, kb) = (kinds(&a), kinds(&b));
    assert_eq!(ka.first().map(String::as_str), Some("connected"), "{ka:?}");
    assert_eq!(ka.last().map(String::as_str), Some("done"), "{ka:?}");
    assert_eq!(kb.last().map(String::as_str), Some("done"), "{kb:?}");
    assert_eq!(count(&ka, "token"), 6);
    assert_eq!(count(&kb, "token"), 9);
    assert_thread(&a, "th_0");
    assert_thread(&b, "th_1");

    let recorder = server.recorder();
    assert_eq!(recorder.connect_count(), 1);
    let messages = recorder.socket_events_named("message");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].socket_id, messages[1].socket_id);
}

#[tokio::test]
async fn an_approval_on_a_shared_connection_is_answered_for_its_turn_only() {
    let server = server_with_threads(2, Duration::ZERO).await;
    let client = client(&server);
    let mut asking = client.threads().send("th_0", "needs approval [tokens=2]");
    let quiet = client.threads().send("th_1", "[tokens=3]");
    let before = until(&mut asking, "approval_needed").await;
    let Some(Ok(Event::ApprovalNeeded(approval))) = before.last() else {
        panic!()
    };
    let quiet = collect(quiet).await;
    asking
        .approval_response(approval.approval_id.clone(), Decision::approve())
        .await
        .unwrap();
    let rest = collect(asking).await;
    let k = kinds(&rest);
    assert!(k.contains(&"approval_resolved".to_owned()), "{k:?}");
    assert_eq!(k.last().map(String::as_str), Some("done"));
    let kq = kinds(&quiet);
    assert!(!kq.iter().any(|k| k.starts_with("approval")), "{kq:?}");
    assert_eq!(kq.last().map(String::as_str), Some("done"));
    assert_eq!(server.recorder().connect_count(), 1);
    assert_eq!(
        server.recorder().socket_events_named("approval_response")[0].payload,
        json!({"approvalId": approval.approval_id, "approved": true})
    );
}

#[tokio::test]
async fn a_refusal_ends_the_turn_whose_message_is_unanswered_and_no_other() {
    let server = server_with_threads(2, Duration::from_millis(5)).await;
    let client = client(&server);
    let mut running = client.threads().send("th_0", "[tokens=20]");
    // th_0's message is answered: the next message is the only unanswered one.
    let head = until(&mut running, "status").await;
    server
        .faults()
        .refuse_next_message(SocketRefusal::rate_limit(3));
    let refused = collect(client.threads().send("th_1", "hi")).await;
    assert_eq!(kinds(&refused), ["connected", "Err(rate_limit)"]);
    let Err(e) = &refused[1] else { panic!() };
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));

    let rest = collect(running).await;
    let k = kinds(&rest);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert!(!k.iter().any(|k| k.starts_with("Err")), "{k:?}");
    assert_eq!(count(&k, "token"), 20);
    assert_thread(&head, "th_0");
    assert_eq!(server.recorder().connect_count(), 1);
}

#[tokio::test]
async fn a_dropped_connection_reconnects_once_for_every_live_turn() {
    let server = server_with_threads(3, Duration::from_millis(30)).await;
    let client = client(&server);
    let mut streams: Vec<TurnStream> = (0..3)
        .map(|i| client.threads().send(format!("th_{i}"), "[tokens=12]"))
        .collect();
    // Every turn is running (its first event arrived) before the drop.
    for stream in &mut streams {
        until(stream, "status").await;
    }
    assert_eq!(server.faults().drop_sockets_now(), 1);
    let results = futures::future::join_all(streams.into_iter().map(collect)).await;
    for (i, items) in results.iter().enumerate() {
        let k = kinds(items);
        let at = k
            .iter()
            .position(|k| k == "disconnected")
            .unwrap_or_else(|| panic!("{k:?}"));
        assert_eq!(
            k[at..at + 4],
            ["disconnected", "reconnecting", "connected", "stream_gap"],
            "{k:?}"
        );
        assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
        assert_thread(items, &format!("th_{i}"));
    }
    let recorder = server.recorder();
    assert_eq!(recorder.connect_count(), 2, "one reconnect for all turns");
    assert_eq!(recorder.socket_events_named("message").len(), 3);
    let mut joined: Vec<String> = recorder
        .socket_events_named("join_thread")
        .iter()
        .map(|e| e.payload["threadId"].as_str().unwrap().to_owned())
        .collect();
    joined.sort();
    assert_eq!(joined, ["th_0", "th_1", "th_2"]);
    let second = &recorder.connects()[1].socket_id;
    assert!(
        recorder
            .socket_events_named("join_thread")
            .iter()
            .all(|e| &e.socket_id == second)
    );
}

#[tokio::test]
async fn a_stalled_consumer_ends_alone_after_the_grace_while_its_neighbour_finishes() {
    // Events 5 ms apart: the reading consumer keeps up with a 16-event buffer.
    let server = server_with_threads(2, Duration::from_millis(5)).await;
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .stream_buffer(16)
        .realtime(RealtimeConfig::default().backpressure_grace(Duration::from_millis(200)))
        .build()
        .unwrap();
    let stalled = client.threads().send("th_0", "[tokens=60]");
    // Read to the end while the other stream is never polled.
    let healthy = collect(client.threads().send("th_1", "[tokens=5]")).await;
    let kh = kinds(&healthy);
    assert_eq!(kh.last().map(String::as_str), Some("done"), "{kh:?}");
    assert!(!kh.iter().any(|k| k.starts_with("Err")), "{kh:?}");

    let items = collect(stalled).await;
    let k = kinds(&items);
    assert!(k.len() >= 17, "{k:?}");
    assert_eq!(k[0], "connected");
    assert_eq!(k.last().map(String::as_str), Some("Err(consumer_lagged)"));
    assert_eq!(server.recorder().connect_count(), 1);
    // No stop: the lagging turn's result stays retrievable over REST.
    assert!(server.recorder().socket_events_named("stop").is_empty());
}

#[tokio::test]
async fn stop_and_a_dropped_stream_act_on_their_turn_only() {
    let server = server_with_threads(3, Duration::from_millis(2)).await;
    let client = client(&server);
    let mut stopped = client.threads().send("th_0", "[hang]");
    let mut dropped = client.threads().send("th_1", "[hang]");
    let going = client.threads().send("th_2", "[tokens=30]");
    until(&mut stopped, "token").await;
    until(&mut dropped, "token").await;
    stopped.stop();
    drop(dropped);
    let stopped = collect(stopped).await;
    let Some(Ok(Event::Done(done))) = stopped.last() else {
        panic!("{:?}", kinds(&stopped))
    };
    assert_eq!(done.stopped, Some(true));
    let going = collect(going).await;
    let k = kinds(&going);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert_eq!(count(&k, "token"), 30);

    let recorder = server.recorder();
    let mut stops: Vec<String> = recorder
        .socket_events_named("stop")
        .iter()
        .map(|e| e.payload["threadId"].as_str().unwrap().to_owned())
        .collect();
    stops.sort();
    assert_eq!(stops, ["th_0", "th_1"]);
    assert_eq!(recorder.connect_count(), 1);
}

#[tokio::test]
async fn per_agent_namespaces_share_a_connection_per_agent() {
    let server = TestServer::start().await.unwrap();
    server.insert_thread("th_s1", SEED_AGENT_SUPPORT);
    server.insert_thread("th_s2", SEED_AGENT_SUPPORT);
    server.insert_thread("th_r", SEED_AGENT_RESEARCH);
    let client = client_with(&server, RealtimeConfig::default().per_agent_namespace(true));
    let send = |thread: &str, agent: &str| {
        client
            .threads()
            .send_with(thread, "[tokens=2]", SendOptions::new().agent_id(agent))
    };
    let (s1, s2, r) = tokio::join!(
        collect(send("th_s1", SEED_AGENT_SUPPORT)),
        collect(send("th_s2", SEED_AGENT_SUPPORT)),
        collect(send("th_r", SEED_AGENT_RESEARCH)),
    );
    for items in [&s1, &s2, &r] {
        let k = kinds(items);
        assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    }
    let mut namespaces: Vec<String> = server
        .recorder()
        .connects()
        .iter()
        .map(|c| c.namespace.clone())
        .collect();
    namespaces.sort();
    assert_eq!(
        namespaces,
        [
            format!("/agent/{SEED_AGENT_RESEARCH}"),
            format!("/agent/{SEED_AGENT_SUPPORT}")
        ]
    );

    // An agent id that cannot name a namespace is a configuration error.
    let bad = collect(send("th_r", "a,b")).await;
    assert_eq!(kinds(&bad), ["Err(config)"]);
}

#[tokio::test]
async fn a_dedicated_turn_and_a_full_connection_get_connections_of_their_own() {
    let server = server_with_threads(3, Duration::from_millis(2)).await;
    let client = client(&server);
    let (a, b) = tokio::join!(
        collect(client.threads().send("th_0", "[tokens=3]")),
        collect(client.threads().send_with(
            "th_1",
            "[tokens=3]",
            SendOptions::new().dedicated_connection(true)
        )),
    );
    assert_eq!(kinds(&a).last().map(String::as_str), Some("done"));
    assert_eq!(kinds(&b).last().map(String::as_str), Some("done"));
    assert_eq!(server.recorder().connect_count(), 2);

    server.recorder().clear();
    let capped = client_with(
        &server,
        RealtimeConfig::default().max_turns_per_connection(1),
    );
    let (a, b) = tokio::join!(
        collect(capped.threads().send("th_0", "[tokens=3]")),
        collect(capped.threads().send("th_2", "[tokens=3]")),
    );
    assert_eq!(kinds(&a).last().map(String::as_str), Some("done"));
    assert_eq!(kinds(&b).last().map(String::as_str), Some("done"));
    assert_eq!(server.recorder().connect_count(), 2);
}

#[tokio::test]
async fn a_warm_connection_carries_the_next_turns() {
    let server = server_with_threads(1, Duration::ZERO).await;
    let warm = client_with(
        &server,
        RealtimeConfig::default().idle_timeout(Duration::from_secs(60)),
    );
    for _ in 0..3 {
        let items = collect(warm.threads().send("th_0", "[tokens=1]")).await;
        assert_eq!(kinds(&items).last().map(String::as_str), Some("done"));
    }
    assert_eq!(server.recorder().connect_count(), 1);
    let messages = server.recorder().socket_events_named("message");
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|m| m.socket_id == messages[0].socket_id)
    );
    assert!(server.recorder().socket_events_named("stop").is_empty());
}

/// Answers the client's next `message` with a tagged `status`; returns its thread.
async fn answer_next(conn: &mut platos_integration_tests::realtime::RawConn) -> String {
    let message = conn.expect_event("message").await;
    let thread = message["threadId"].as_str().unwrap().to_owned();
    conn.agent_event(json!({"type": "status", "status": "thinking", "threadId": thread}))
        .await;
    thread
}

#[tokio::test]
async fn untagged_events_follow_the_rules_never_a_guess() {
    let server = platos_integration_tests::realtime::RawServer::start(move |mut conn| {
        async move {
            conn.handshake().await;
            // Starts are pipelined: every message comes before any answer.
            let mut threads = Vec::new();
            for _ in 0..3 {
                let message = conn.expect_event("message").await;
                threads.push(message["threadId"].as_str().unwrap().to_owned());
            }
            for thread in &threads {
                conn.agent_event(json!({"type": "status", "status": "thinking", "threadId": thread}))
                    .await;
            }
            // An approval without threadId names its agent; an error with no
            // message unanswered concerns every turn.
            conn.agent_event(
                json!({"type": "approval_needed", "approvalId": "ap1", "action": "refund", "agentId": "a1"}),
            )
            .await;
            conn.emit("error", json!({"code": "SOMETHING", "message": "heads up"}))
                .await;
            // An untagged token has no single owner here: dropped, not guessed.
            conn.agent_event(json!({"type": "token", "text": "whose?"}))
                .await;
            for thread in threads {
                conn.agent_event(json!({"type": "done", "threadId": thread}))
                    .await;
            }
            conn.drain().await;
        }
    })
    .await;
    let client = platos_integration_tests::realtime::client(&server.base_url(), "t");
    let send = |thread: &str, agent: &str| {
        collect(
            client
                .threads()
                .send_with(thread, "hi", SendOptions::new().agent_id(agent)),
        )
    };
    let (a, b, c) = tokio::join!(send("th1", "a1"), send("th2", "a1"), send("th3", "a2"));
    let of_a1 = [
        "connected",
        "status",
        "approval_needed",
        "socket_error",
        "done",
    ];
    assert_eq!(kinds(&a), of_a1);
    assert_eq!(kinds(&b), of_a1);
    assert_eq!(kinds(&c), ["connected", "status", "socket_error", "done"]);
}

#[tokio::test]
async fn a_socket_refusal_belongs_to_the_unanswered_turn() {
    let server = platos_integration_tests::realtime::RawServer::start(|mut conn| async move {
        conn.handshake().await;
        let running = answer_next(&mut conn).await;
        conn.expect_event("message").await;
        conn.emit(
            "error",
            json!({"code": "AGENT_SCOPE_MISMATCH", "message": "token pinned to another agent"}),
        )
        .await;
        conn.emit("done", json!({"stopped": true})).await;
        conn.agent_event(json!({"type": "token", "text": "still here", "threadId": running}))
            .await;
        conn.agent_event(json!({"type": "done", "threadId": running}))
            .await;
        conn.drain().await;
    })
    .await;
    let client = platos_integration_tests::realtime::client(&server.base_url(), "t");
    let (running, refused) = tokio::join!(
        collect(client.threads().send("th1", "hi")),
        collect(client.threads().send("th2", "hi")),
    );
    assert_eq!(kinds(&running), ["connected", "status", "token", "done"]);
    assert_eq!(kinds(&refused), ["connected", "socket_error", "done"]);
    let Ok(Event::SocketError(e)) = &refused[1] else {
        panic!()
    };
    assert_eq!(e.code.as_deref(), Some("AGENT_SCOPE_MISMATCH"));
}

#[tokio::test]
async fn an_expired_session_is_refreshed_once_for_every_turn_of_the_connection() {
    let server = server_with_threads(3, Duration::from_millis(30)).await;
    let fresh = server.mint(&server.token_spec(server.user_id()).times(0, 7200));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c, f) = (calls.clone(), fresh.clone());
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .reconnect(platos_integration_tests::realtime::fast_reconnect())
        .on_token_refresh(move |_ctx| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let f = f.clone();
            async move { Ok::<_, Error>(Some(f)) }
        })
        .build()
        .unwrap();
    let mut streams: Vec<TurnStream> = (0..3)
        .map(|i| client.threads().send(format!("th_{i}"), "[tokens=10]"))
        .collect();
    for stream in &mut streams {
        until(stream, "status").await;
    }
    server
        .faults()
        .send_socket_error(
            json!({"code": "SESSION_EXPIRED", "message": "Session expired"}),
            true,
        )
        .await;
    let results = futures::future::join_all(streams.into_iter().map(collect)).await;
    for items in &results {
        let k = kinds(items);
        assert!(k.contains(&"stream_gap".to_owned()), "{k:?}");
        assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let connects = server.recorder().connects();
    assert_eq!(connects.len(), 2, "one reconnect for all turns");
    assert_eq!(connects[1].auth["token"], fresh.as_str());
}

#[tokio::test]
async fn an_idle_connection_leaves_its_threads_and_closes_after_the_idle_time() {
    let (tx, mut closed) = platos_integration_tests::realtime::observations();
    let server = platos_integration_tests::realtime::RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            conn.handshake().await;
            let thread = answer_next(&mut conn).await;
            conn.agent_event(json!({"type": "done", "threadId": thread}))
                .await;
            let _ = tx.send(conn.drain().await);
        }
    })
    .await;
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token("t")
        .realtime(RealtimeConfig::default().idle_timeout(Duration::from_millis(50)))
        .build()
        .unwrap();
    let items = collect(client.threads().send("th1", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "status", "done"]);
    // The connection outlives the turn, then closes on its own.
    let frames = tokio::time::timeout(platos_integration_tests::realtime::DEADLINE, closed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        frames,
        [
            r#"42/agent,["leave_thread",{"threadId":"th1"}]"#,
            "41/agent,"
        ]
    );
}

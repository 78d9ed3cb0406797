//! `threads.send` against the Platos-compatible test server (socketioxide,
//! the gateway's `/agent` behaviour, fault knobs, recordings).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platos_client::{Decision, Error, PlatosClient, Scope, SendOptions};
use platos_events::Event;
use platos_integration_tests::realtime::{DEADLINE, collect, fast_reconnect, kinds, next};
use platos_test_server::{HandshakeStep, RawFrame, SEED_THREAD, SocketRefusal, TestServer};
use serde_json::json;

fn client(server: &TestServer) -> PlatosClient {
    platos_integration_tests::realtime::client(&server.base_url(), &server.session_token())
}

fn position(kinds: &[String], kind: &str) -> usize {
    kinds
        .iter()
        .position(|k| k == kind)
        .unwrap_or_else(|| panic!("no `{kind}` in {kinds:?}"))
}

#[tokio::test]
async fn a_full_turn_yields_every_event_type_and_takes_an_approval_over_the_socket() {
    let server = TestServer::builder()
        .deprecation(true)
        .start()
        .await
        .unwrap();
    // The token the client holds (a fresh mint in a later second differs).
    let token = server.session_token();
    let mut stream = platos_integration_tests::realtime::client(&server.base_url(), &token)
        .threads()
        .send(SEED_THREAD, "needs approval [tokens=3] [unknown-event]");

    let mut seen = Vec::new();
    let approval_id = loop {
        match next(&mut stream).await {
            Some(Ok(Event::ApprovalNeeded(a))) => break a.approval_id.clone(),
            Some(item) => seen.push(item),
            None => panic!("ended before approval_needed: {:?}", kinds(&seen)),
        }
    };
    stream
        .approval_response(approval_id, Decision::approve().with_comment("fine"))
        .await
        .unwrap();
    let rest = collect(stream).await;

    assert_eq!(
        kinds(&seen),
        [
            "connected",
            "status",
            "meta",
            "x_future_event",
            "thinking",
            "status",
            "tool_call",
            "tool_result"
        ]
    );
    assert_eq!(
        kinds(&rest),
        [
            "approval_resolved",
            "artifact_start",
            "artifact_delta",
            "artifact_delta",
            "artifact_delta",
            "artifact_committed",
            "status",
            "token",
            "token",
            "token",
            "message_persisted",
            "done"
        ]
    );
    let Ok(Event::Unknown { raw, .. }) = &seen[3] else {
        panic!()
    };
    assert_eq!(raw["payload"], json!({"a": 1}));
    let Ok(Event::MessagePersisted(cost)) = &rest[10] else {
        panic!()
    };
    assert!(cost.cost_cents.unwrap() > 0.0);
    assert!(
        rest.iter()
            .all(|e| e.as_ref().unwrap().thread_id() == Some(SEED_THREAD))
    );

    let recorder = server.recorder();
    let messages = recorder.socket_events_named("message");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].payload["message"],
        "needs approval [tokens=3] [unknown-event]"
    );
    assert!(messages[0].payload["idempotencyKey"].is_string());
    // One connection; no `join_thread` needed on it (the sender gets the events).
    assert_eq!(recorder.connect_count(), 1);
    assert!(recorder.socket_events_named("join_thread").is_empty());
    assert_eq!(recorder.connects()[0].auth["token"], token.as_str());
    assert_eq!(
        recorder.socket_events_named("approval_response")[0].payload,
        json!({"approvalId": messages_approval(&rest), "approved": true, "comment": "fine"})
    );
}

fn messages_approval(rest: &[Result<Event, Error>]) -> String {
    match &rest[0] {
        Ok(Event::ApprovalResolved(r)) => r.approval_id.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn pings_every_100ms_during_a_3s_turn_keep_the_connection() {
    let server = TestServer::builder()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .event_delay(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let items = collect(client(&server).threads().send(SEED_THREAD, "[tokens=18]")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let k = kinds(&items);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert!(!k.iter().any(|k| k == "reconnecting"), "{k:?}");
    assert_eq!(server.recorder().handshake_count(), 1);
    assert_eq!(server.recorder().connect_count(), 1);
}

#[tokio::test]
async fn a_consumer_stalled_past_the_ping_timeout_keeps_the_connection_and_loses_nothing() {
    let server = TestServer::builder()
        .ping_interval(Duration::from_millis(50))
        .ping_timeout(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut stream = client(&server).threads().send(SEED_THREAD, "[tokens=5]");
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(Event::Connected(_)))
    ));
    // The whole turn is sent while nobody reads the stream...
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while server.faults().agent_event_frames() < 19 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn was not sent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and the consumer stays away for 8× the server's ping timeout.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let items = collect(stream).await;
    let k = kinds(&items);
    assert_eq!(k.first().map(String::as_str), Some("status"));
    assert_eq!(k.last().map(String::as_str), Some("done"));
    assert_eq!(k.iter().filter(|k| *k == "token").count(), 5);
    assert!(
        !k.iter()
            .any(|k| k.starts_with("Err") || k == "reconnecting"),
        "{k:?}"
    );
    assert_eq!(server.recorder().connect_count(), 1);
}

#[tokio::test]
async fn a_server_drop_mid_turn_reconnects_with_resume_and_join_and_no_second_message() {
    let server = TestServer::builder()
        .event_delay(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    server.faults().drop_socket_after_events(3);
    let items = collect(client(&server).threads().send(SEED_THREAD, "[tokens=10]")).await;
    let k = kinds(&items);
    let dropped = position(&k, "disconnected");
    assert_eq!(
        k[dropped..dropped + 4],
        ["disconnected", "reconnecting", "connected", "stream_gap"],
        "{k:?}"
    );
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    let Ok(Event::StreamGap(gap)) = &items[dropped + 3] else {
        panic!()
    };
    assert_eq!(gap.attempt, Some(1));
    assert_eq!(
        items[dropped + 3].as_ref().unwrap().to_value()["type"],
        "stream_gap"
    );

    let recorder = server.recorder();
    assert_eq!(recorder.socket_events_named("message").len(), 1);
    let resume = recorder.socket_events_named("resume_stream");
    let join = recorder.socket_events_named("join_thread");
    assert_eq!(resume.len(), 1);
    assert_eq!(join.len(), 1);
    assert_eq!(join[0].payload, json!({"threadId": SEED_THREAD}));
    assert_ne!(
        join[0].socket_id,
        recorder.socket_events_named("message")[0].socket_id
    );
}

#[tokio::test]
async fn session_expired_mid_turn_refreshes_once_and_reconnects_with_the_new_token() {
    let server = TestServer::builder()
        .event_delay(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    let fresh = server.mint(&server.token_spec(server.user_id()).times(0, 7200));
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, f) = (calls.clone(), fresh.clone());
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .reconnect(fast_reconnect())
        .on_token_refresh(move |_ctx| {
            c.fetch_add(1, Ordering::SeqCst);
            let f = f.clone();
            async move { Ok::<_, Error>(Some(f)) }
        })
        .build()
        .unwrap();
    let mut stream = client.threads().send(SEED_THREAD, "[tokens=10]");
    loop {
        if let Some(Ok(Event::Token(_))) = next(&mut stream).await {
            break;
        }
    }
    server
        .faults()
        .send_socket_error(
            json!({"code": "SESSION_EXPIRED", "message": "Session expired"}),
            true,
        )
        .await;
    let rest = collect(stream).await;
    let k = kinds(&rest);
    let dropped = position(&k, "disconnected");
    assert_eq!(
        k[dropped..dropped + 4],
        ["disconnected", "reconnecting", "connected", "stream_gap"],
        "{k:?}"
    );
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert!(!k.iter().any(|k| k == "socket_error"), "{k:?}");
    let Ok(Event::Disconnected(d)) = &rest[dropped] else {
        panic!()
    };
    assert!(
        d.reason.as_deref().unwrap().contains("Session expired"),
        "{d:?}"
    );

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(client.session_token().unwrap().expose(), fresh);
    let connects = server.recorder().connects();
    assert_eq!(connects.len(), 2);
    assert_eq!(connects[1].auth["token"], fresh.as_str());
    assert_eq!(server.recorder().socket_events_named("message").len(), 1);
}

#[tokio::test]
async fn a_refresh_that_gives_nothing_ends_with_an_auth_error() {
    let server = TestServer::start().await.unwrap();
    server
        .faults()
        .refuse_next_message(SocketRefusal::session_expired());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .on_token_refresh(move |_ctx| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<Option<String>, Error>(None) }
        })
        .build()
        .unwrap();
    let items = collect(client.threads().send(SEED_THREAD, "hi")).await;
    assert_eq!(kinds(&items), ["connected", "Err(SESSION_EXPIRED)"]);
    assert!(matches!(items[1], Err(Error::Auth(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_token_at_connect_refreshes_through_the_same_single_flight() {
    let server = TestServer::start().await.unwrap();
    let expired = server.mint(&server.token_spec(server.user_id()).times(-7200, -3600));
    let fresh = server.session_token();
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, f) = (calls.clone(), fresh.clone());
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(expired)
        .reconnect(fast_reconnect())
        .on_token_refresh(move |_ctx| {
            c.fetch_add(1, Ordering::SeqCst);
            let f = f.clone();
            async move { Ok::<_, Error>(Some(f)) }
        })
        .build()
        .unwrap();
    // A REST call and a turn refused at the same time: one refresh.
    let turn = client.threads().send(SEED_THREAD, "[tokens=1]");
    let threads = client.threads();
    let (rest_call, items) = tokio::join!(threads.get(SEED_THREAD), collect(turn));
    assert!(rest_call.unwrap().is_some());
    let k = kinds(&items);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(server.recorder().socket_events_named("message").len(), 1);
}

#[tokio::test]
async fn a_malformed_known_event_is_a_decode_error_and_the_turn_continues() {
    let server = TestServer::start().await.unwrap();
    let items = collect(
        client(&server)
            .threads()
            .send(SEED_THREAD, "[malformed] [tokens=2]"),
    )
    .await;
    let k = kinds(&items);
    assert_eq!(
        k[..4],
        ["connected", "status", "meta", "Err(decode)"],
        "{k:?}"
    );
    assert_eq!(k.last().map(String::as_str), Some("done"));
    let Err(e) = &items[3] else { panic!() };
    assert!(e.decode_path().unwrap().starts_with("token"), "{e}");
    assert!(e.to_string().contains("text"), "{e}");
}

#[tokio::test]
async fn dropping_the_stream_stops_the_turn_server_side() {
    let server = TestServer::start().await.unwrap();
    let mut stream = client(&server).threads().send(SEED_THREAD, "[hang]");
    loop {
        if let Some(Ok(Event::Token(_))) = next(&mut stream).await {
            break;
        }
    }
    assert_eq!(server.running_turns(), 1);
    drop(stream);
    let stop = server
        .recorder()
        .wait_for_socket_event("stop", DEADLINE)
        .await
        .expect("the server never received stop");
    assert_eq!(stop.payload, json!({"threadId": SEED_THREAD}));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while server.running_turns() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn kept running"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn stop_yields_the_servers_stopped_done_and_ends() {
    let server = TestServer::start().await.unwrap();
    let mut stream = client(&server).threads().send(SEED_THREAD, "[hang]");
    loop {
        if let Some(Ok(Event::Token(_))) = next(&mut stream).await {
            break;
        }
    }
    stream.stop();
    let rest = collect(stream).await;
    assert_eq!(kinds(&rest), ["done"]);
    let Ok(Event::Done(done)) = &rest[0] else {
        panic!()
    };
    assert_eq!(done.stopped, Some(true));
    assert_eq!(server.recorder().socket_events_named("stop").len(), 1);
}

#[tokio::test]
async fn a_rate_limit_refusal_is_a_rate_limited_error() {
    let server = TestServer::start().await.unwrap();
    server
        .faults()
        .refuse_next_message(SocketRefusal::rate_limit(7));
    let items = collect(client(&server).threads().send(SEED_THREAD, "hi")).await;
    assert_eq!(kinds(&items), ["connected", "Err(rate_limit)"]);
    let Err(e) = &items[1] else { panic!() };
    assert!(matches!(e, Error::RateLimited(_)));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.is_retryable());
}

#[tokio::test]
async fn api_key_mode_with_a_per_call_scope_sends_the_scope_in_the_connect_payload() {
    let server = TestServer::start().await.unwrap();
    let seeded = server.scope().clone();
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .api_key(server.api_key())
        .scope(Scope::new("org_other", "proj_other", "env_other").with_user_id("u_other"))
        .build()
        .unwrap();
    let scope = Scope::new(
        seeded.organization_id.clone(),
        seeded.project_id.clone(),
        seeded.environment_id.clone(),
    )
    .with_user_id(server.user_id());
    let items = collect(client.threads().send_with(
        SEED_THREAD,
        "[tokens=1]",
        SendOptions::new().scope(scope).agent_id("agent_x"),
    ))
    .await;
    let k = kinds(&items);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    let connect = &server.recorder().connects()[0];
    assert_eq!(
        connect.auth,
        json!({"organizationId": seeded.organization_id, "projectId": seeded.project_id,
               "environmentId": seeded.environment_id, "userId": server.user_id()})
    );
    let message = &server.recorder().socket_events_named("message")[0];
    assert_eq!(message.payload["agentId"], "agent_x");
}

/// The reconnect budget counts reconnects in a row that delivered nothing:
/// with a budget of one, a turn whose connection drops three times survives,
/// because each reconnect delivers events before the next drop.
#[tokio::test]
async fn progress_restores_the_reconnect_budget() {
    let server = TestServer::builder()
        .event_delay(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .reconnect(fast_reconnect().with_max_attempts(1))
        .build()
        .unwrap();
    server.faults().drop_socket_after_events(3);
    let turn = tokio::spawn(collect(client.threads().send(SEED_THREAD, "[tokens=40]")));
    for connects in 2..=3 {
        // Each reconnect is made, then the next drop is armed.
        assert!(
            server
                .recorder()
                .wait_for_connects(connects, DEADLINE)
                .await,
            "reconnect {connects}"
        );
        server.faults().drop_socket_after_events(3);
    }
    let items = turn.await.unwrap();
    let k = kinds(&items);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    let gaps = k.iter().filter(|k| *k == "stream_gap").count();
    assert_eq!(gaps, 3, "three drops, each reconnected: {k:?}");
}

/// A connection dropped at any step of its handshake is dialled again and the
/// turn completes, its `message` sent once.
#[tokio::test]
async fn a_drop_at_each_handshake_step_is_redialled_and_the_turn_completes() {
    for step in [
        HandshakeStep::Upgrade,
        HandshakeStep::Open,
        HandshakeStep::NamespaceAck,
        HandshakeStep::Connected,
    ] {
        let server = TestServer::start().await.unwrap();
        server.faults().drop_next_handshake_at(step);
        let items = collect(client(&server).threads().send(SEED_THREAD, "[tokens=3]")).await;
        let k = kinds(&items);
        let fired = server.recorder().faults_fired();
        assert_eq!(fired.len(), 1, "{step:?}: {fired:?}");
        assert!(fired[0].contains(&format!("{step:?}")), "{fired:?}");
        assert_eq!(
            k.last().map(String::as_str),
            Some("done"),
            "{step:?}: {k:?}"
        );
        assert_eq!(
            k.iter().filter(|k| *k == "token").count(),
            3,
            "{step:?}: {k:?}"
        );
        assert_eq!(
            server.recorder().socket_events_named("message").len(),
            1,
            "{step:?}"
        );
    }
}

/// Raw frames slipped between the server's own: garbage and an oversize
/// message end the turn with a typed error naming what happened.
#[tokio::test]
async fn garbage_and_oversize_frames_end_the_turn_with_typed_errors() {
    for (frame, code) in [
        (
            RawFrame::Text(b"\xff not engine.io".to_vec()),
            "protocol_error",
        ),
        (RawFrame::Oversize((16 << 20) + 1), "payload_too_large"),
    ] {
        let server = TestServer::builder()
            .event_delay(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let mut stream = client(&server).threads().send(SEED_THREAD, "[tokens=50]");
        loop {
            match next(&mut stream).await {
                Some(Ok(Event::Token(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(server.faults().inject_frame(&frame), 1);
        let rest = collect(stream).await;
        let Some(Err(e)) = rest.last() else {
            panic!("{:?}", kinds(&rest))
        };
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(
            rest.iter().filter(|i| i.is_err()).count() == 1,
            "{:?}",
            kinds(&rest)
        );
    }
}

/// A drop after the server took the `message` but before any event: the
/// message goes out again with the same key, the server runs one turn, and
/// the stream says events may have been missed.
#[tokio::test]
async fn a_message_resent_after_a_drop_keeps_its_key_and_runs_one_turn() {
    let server = TestServer::builder()
        .event_delay(Duration::from_millis(400))
        .start()
        .await
        .unwrap();
    let before = server.turn_statuses(SEED_THREAD).len();
    let stream = client(&server).threads().send(SEED_THREAD, "[tokens=2]");
    let reading = tokio::spawn(collect(stream));
    let recorder = server.recorder();
    assert!(
        recorder
            .wait_for_socket_event("message", DEADLINE)
            .await
            .is_some()
    );
    // Before the first event (each waits 400 ms).
    assert_eq!(server.faults().drop_sockets_now(), 1);
    let items = reading.await.unwrap();
    let k = kinds(&items);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert!(position(&k, "stream_gap") < position(&k, "status"), "{k:?}");
    let messages = recorder.socket_events_named("message");
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].payload["idempotencyKey"],
        messages[1].payload["idempotencyKey"]
    );
    assert_ne!(messages[0].socket_id, messages[1].socket_id);
    assert_eq!(server.turn_statuses(SEED_THREAD)[before..], ["completed"]);
}

/// A token that expires again later in a long silent turn is refreshed
/// again: the gateway's `connected` proved the last one good.
#[tokio::test]
async fn a_token_expiring_twice_in_a_silent_turn_is_refreshed_twice() {
    let server = TestServer::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    // A new token each time (a refresh giving back the refused one fails).
    let fresh: Vec<String> = (1..=3)
        .map(|n| server.mint(&server.token_spec(server.user_id()).times(-n, 7200)))
        .collect();
    let c = calls.clone();
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.session_token())
        .reconnect(fast_reconnect())
        .on_token_refresh(move |_ctx| {
            let f = fresh[c.fetch_add(1, Ordering::SeqCst).min(2)].clone();
            async move { Ok::<_, Error>(Some(f)) }
        })
        .build()
        .unwrap();
    // `[hang]`: one token, then nothing until `stop`.
    let mut stream = client.threads().send(SEED_THREAD, "[hang]");
    let expired = json!({"code": "SESSION_EXPIRED", "message": "Session expired"});
    for connected in 1..=3 {
        // Wait for the (re)connect to be ready before the token "expires".
        let mut seen = 0;
        while seen < 1 {
            match next(&mut stream).await {
                Some(Ok(Event::Connected(_))) => seen += 1,
                Some(Ok(_)) => {}
                other => panic!("after {connected} connect(s): {other:?}"),
            }
        }
        if connected < 3 {
            server
                .faults()
                .send_socket_error(expired.clone(), true)
                .await;
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    stream.stop();
    let rest = collect(stream).await;
    assert_eq!(
        kinds(&rest).last().map(String::as_str),
        Some("done"),
        "{:?}",
        kinds(&rest)
    );
}

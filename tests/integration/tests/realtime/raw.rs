//! `threads.send` against a raw, scripted Engine.IO server: the wire
//! details and the misbehaviours a real Socket.IO server never produces
//! (malformed frames, oversize messages, ping silence, CONNECT_ERROR,
//! connections that die on every try).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platos_client::{Decision, Error, PlatosClient, Scope, SendOptions};
use platos_events::Event;
use platos_integration_tests::realtime::{
    RawConn, RawServer, client, collect, fast_reconnect, kinds, next, observations,
};
use serde_json::{Value, json};

/// A turn whose events the script sends after the handshake.
async fn scripted_turn(conn: &mut RawConn, events: &[Value]) {
    conn.handshake().await;
    conn.expect_event("message").await;
    for event in events {
        conn.agent_event(event.clone()).await;
    }
}

#[tokio::test]
async fn handshake_upgrade_and_message_payload_follow_the_wire() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            // A ping before the connect ack must be answered too.
            conn.open(60_000, 60_000).await;
            conn.send("2").await;
            // The connect and the pong, in whichever order they come.
            let (mut pong, mut auth) = (None, None);
            while pong.is_none() || auth.is_none() {
                let frame = conn.recv().await.expect("client left");
                match frame.strip_prefix("40/agent,") {
                    Some(json) => auth = Some(serde_json::from_str::<Value>(json).unwrap()),
                    None => pong = Some(frame),
                }
            }
            let auth = auth.unwrap();
            // Nothing but the connect may arrive before the ack: the
            // reference server closes the connection otherwise.
            let early = tokio::time::timeout(Duration::from_millis(100), conn.recv()).await;
            conn.send(r#"40/agent,{"sid":"n1"}"#).await;
            // Nor between the ack and the gateway's `connected` (a refused
            // token is announced there, after the ack).
            let before_ready = tokio::time::timeout(Duration::from_millis(100), conn.recv()).await;
            assert!(
                before_ready.is_err(),
                "{before_ready:?} sent before `connected`"
            );
            conn.emit("connected", json!({"status": "ok"})).await;
            let message = conn.expect_event("message").await;
            conn.agent_event(json!({"type": "done"})).await;
            let rest = conn.drain().await;
            let _ = tx.send((
                conn.uri.clone(),
                conn.headers.clone(),
                pong,
                auth,
                early.ok(),
                message,
                rest,
            ));
        }
    })
    .await;

    let client = PlatosClient::builder()
        .base_url(format!("{}/platos/", server.base_url()))
        .session_token("tok_abc")
        .scope(Scope::new("org1", "proj1", "env1").with_user_id("user1"))
        .build()
        .unwrap();
    let options = SendOptions::new()
        .agent_id("agent_1")
        .context("ticket", "T-9")
        .dynamic_block("tier", "gold")
        .attachment_ids(["f1", "f2"])
        .model_label("fast")
        .reply_to_message_id("m0")
        .idempotency_key("idem-1");
    let items = collect(client.threads().send_with("th 1", "Hello", options)).await;
    assert_eq!(kinds(&items), ["connected", "done"]);

    let (uri, headers, pong, auth, early, message, rest) = seen.recv().await.unwrap();
    assert_eq!(uri, "/platos/socket.io/?EIO=4&transport=websocket");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-platos-session-token"), Some("tok_abc"));
    assert_eq!(header("x-platos-organization-id"), Some("org1"));
    assert_eq!(header("x-platos-user-id"), Some("user1"));
    assert!(
        header("user-agent")
            .unwrap()
            .starts_with("platos-client-rust/")
    );
    assert_eq!(pong.as_deref(), Some("3"));
    assert_eq!(
        auth,
        json!({"token": "tok_abc", "organizationId": "org1", "projectId": "proj1",
               "environmentId": "env1", "userId": "user1"})
    );
    assert_eq!(early, None, "a frame arrived before the connect ack");
    assert_eq!(
        message,
        json!({
            "message": "Hello", "threadId": "th 1", "agentId": "agent_1",
            "contextType": "ticket", "contextId": "T-9", "dynamicBlocks": {"tier": "gold"},
            "attachmentIds": ["f1", "f2"], "modelLabel": "fast", "replyToMessageId": "m0",
            "idempotencyKey": "idem-1",
        })
    );
    // Clean end: leave the namespace; no stop after a finished turn.
    assert_eq!(rest, ["41/agent,"]);
}

#[tokio::test]
async fn a_server_that_never_sends_connected_gets_the_message_after_a_grace() {
    let server = RawServer::start(|mut conn| async move {
        conn.open(60_000, 60_000).await;
        conn.read_connect().await;
        conn.send(r#"40/agent,{"sid":"n"}"#).await;
        conn.expect_event("message").await;
        conn.agent_event(json!({"type": "done"})).await;
        conn.drain().await;
    })
    .await;
    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "done"]);
}

#[tokio::test]
async fn every_ping_is_answered_while_the_consumer_does_not_poll() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            conn.handshake_with(50, 50).await;
            conn.expect_event("message").await;
            conn.agent_event(json!({"type": "token", "text": "a"}))
                .await;
            // 20 pings, each answered before the next is sent.
            let mut answered = 0;
            for _ in 0..20 {
                conn.send("2").await;
                match conn.recv().await.as_deref() {
                    Some("3") => answered += 1,
                    other => panic!("expected a pong, got {other:?}"),
                }
            }
            conn.agent_event(json!({"type": "done"})).await;
            let _ = tx.send(answered);
            conn.drain().await;
        }
    })
    .await;

    let client = client(&server.base_url(), "t");
    let mut stream = client.threads().send("th", "hi");
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(Event::Connected(_)))
    ));
    // Not polling the stream while the server pings.
    let answered = tokio::time::timeout(platos_integration_tests::realtime::DEADLINE, seen.recv())
        .await
        .unwrap();
    assert_eq!(answered, Some(20));
    let rest = collect(stream).await;
    assert_eq!(kinds(&rest), ["token", "done"]);
}

#[tokio::test]
async fn ping_silence_past_interval_plus_timeout_reconnects_with_resume_and_join() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            if conn.index == 0 {
                // 40 + 40 ms heartbeat, then silence: no ping ever comes.
                conn.handshake_with(40, 40).await;
                conn.expect_event("message").await;
                conn.agent_event(json!({"type": "token", "text": "a"}))
                    .await;
                conn.drain().await;
            } else {
                conn.handshake().await;
                let first = conn.next_event().await.unwrap();
                let second = conn.next_event().await.unwrap();
                let _ = tx.send((first, second));
                conn.agent_event(json!({"type": "done"})).await;
                conn.drain().await;
            }
        }
    })
    .await;

    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(
        kinds(&items),
        [
            "connected",
            "token",
            "disconnected",
            "reconnecting",
            "connected",
            "stream_gap",
            "done"
        ]
    );
    let Ok(Event::Disconnected(d)) = &items[2] else {
        panic!()
    };
    assert!(d.reason.as_deref().unwrap().contains("no ping"), "{d:?}");
    let Ok(Event::Reconnecting(r)) = &items[3] else {
        panic!()
    };
    assert_eq!(r.attempt, 1);
    assert_eq!(
        items[3].as_ref().unwrap().to_value(),
        json!({"type": "reconnecting", "attempt": 1})
    );
    let (first, second) = seen.recv().await.unwrap();
    assert_eq!(
        first,
        ("resume_stream".to_owned(), json!({"threadId": "th"}))
    );
    assert_eq!(
        second,
        ("join_thread".to_owned(), json!({"threadId": "th"}))
    );
}

#[tokio::test]
async fn reconnect_budget_exhaustion_ends_with_a_network_error_and_one_message() {
    let messages = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (m, c) = (messages.clone(), connections.clone());
    let server = RawServer::start(move |mut conn| {
        let (m, c) = (m.clone(), c.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            conn.handshake().await;
            if conn.index == 0 {
                conn.expect_event("message").await;
                m.fetch_add(1, Ordering::SeqCst);
            } else {
                // Whatever arrives on a reconnect, it must not be `message`.
                while let Ok(Some((name, _))) =
                    tokio::time::timeout(Duration::from_millis(20), conn.next_event()).await
                {
                    if name == "message" {
                        m.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            // Drop the connection without a close frame.
            drop(conn);
        }
    })
    .await;

    let client = client(&server.base_url(), "t");
    let items = collect(client.threads().send_with(
        "th",
        "hi",
        SendOptions::new().reconnect_attempts(2),
    ))
    .await;
    assert_eq!(
        kinds(&items),
        [
            "connected",
            "disconnected",
            "reconnecting",
            "connected",
            "stream_gap",
            "disconnected",
            "reconnecting",
            "connected",
            "stream_gap",
            "disconnected",
            "Err(network)"
        ]
    );
    let Some(Err(e)) = items.last() else { panic!() };
    assert!(
        e.message().contains("gave up after 2 reconnect attempts"),
        "{e}"
    );
    assert!(e.is_retryable());
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    assert_eq!(messages.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connect_that_never_succeeds_also_uses_the_budget() {
    // A port with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let items = collect(client(&base, "t").threads().send_with(
        "th",
        "hi",
        SendOptions::new().reconnect_attempts(1),
    ))
    .await;
    assert_eq!(kinds(&items), ["reconnecting", "Err(network)"]);
}

#[tokio::test]
async fn connect_error_that_looks_like_auth_refreshes_once_and_retries() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            conn.open(60_000, 60_000).await;
            let auth = conn.read_connect().await;
            let _ = tx.send(auth["token"].clone());
            if auth["token"] == "old" {
                conn.send(r#"44/agent,{"message":"Authentication error: jwt expired"}"#)
                    .await;
                conn.drain().await;
                return;
            }
            conn.ack().await;
            conn.expect_event("message").await;
            conn.agent_event(json!({"type": "done"})).await;
            conn.drain().await;
        }
    })
    .await;

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token("old")
        .reconnect(fast_reconnect())
        .on_token_refresh(move |ctx| {
            c.fetch_add(1, Ordering::SeqCst);
            assert_eq!(ctx.current_token.expose(), "old");
            async { Ok::<_, Error>(Some("new".to_owned())) }
        })
        .build()
        .unwrap();
    let items = collect(client.threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["reconnecting", "connected", "done"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.recv().await.unwrap(), "old");
    assert_eq!(seen.recv().await.unwrap(), "new");
    assert_eq!(client.session_token().unwrap().expose(), "new");
}

#[tokio::test]
async fn connect_error_without_refresh_or_not_about_auth_is_terminal() {
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    let server = RawServer::start(move |mut conn| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            conn.open(60_000, 60_000).await;
            let auth = conn.read_connect().await;
            let refusal = if auth["token"] == "auth" {
                r#"44/agent,{"message":"Unauthorized"}"#
            } else {
                r#"44/agent,{"message":"Invalid namespace"}"#
            };
            conn.send(refusal).await;
            conn.drain().await;
        }
    })
    .await;

    // Auth-like, but no refresh callback: the refusal stands.
    let items = collect(
        client(&server.base_url(), "auth")
            .threads()
            .send("th", "hi"),
    )
    .await;
    assert_eq!(kinds(&items), ["Err(auth)"]);
    assert!(
        items[0]
            .as_ref()
            .unwrap_err()
            .message()
            .contains("Unauthorized")
    );

    // Not about auth: a terminal stream error, no retry.
    let items = collect(
        client(&server.base_url(), "other")
            .threads()
            .send("th", "hi"),
    )
    .await;
    assert_eq!(kinds(&items), ["Err(connect_error)"]);
    assert!(
        items[0]
            .as_ref()
            .unwrap_err()
            .message()
            .contains("Invalid namespace")
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalid_token_error_event_without_refresh_ends_with_an_auth_error() {
    let server = RawServer::start(|mut conn| async move {
        conn.handshake().await;
        conn.emit(
            "error",
            json!({"message": "Invalid or expired session token."}),
        )
        .await;
        conn.send("41/agent,").await;
        conn.drain().await;
    })
    .await;
    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "Err(auth)"]);
    let Some(Err(e)) = items.last() else { panic!() };
    assert!(matches!(e, Error::Auth(_)));
    assert_eq!(e.message(), "Invalid or expired session token.");
}

#[tokio::test]
async fn other_socket_errors_are_typed_events_and_the_turn_goes_on() {
    let server = RawServer::start(|mut conn| async move {
        scripted_turn(&mut conn, &[]).await;
        conn.emit("error", json!({"code": "BAD_INPUT", "message": "threadId is required", "hint": 1}))
            .await;
        conn.emit("server.deprecation", json!({"code": "SHARED_AGENT_NAMESPACE", "message": "move", "removeAfter": "2027-01-01"}))
            .await;
        conn.emit("joined_thread", json!({"threadId": "th"})).await;
        conn.agent_event(json!({"type": "done"})).await;
        conn.drain().await;
    })
    .await;
    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "socket_error", "done"]);
    let Ok(Event::SocketError(e)) = &items[1] else {
        panic!()
    };
    assert_eq!(e.code.as_deref(), Some("BAD_INPUT"));
    assert_eq!(e.message, "threadId is required");
    assert_eq!(
        items[1].as_ref().unwrap().to_value(),
        json!({"type": "socket_error", "code": "BAD_INPUT", "message": "threadId is required", "hint": 1})
    );
}

#[tokio::test]
async fn malformed_frames_are_terminal_protocol_errors() {
    for bad in [
        "9nonsense",
        r#"42/agent,["agent_event",{"type":"token""#,
        "42/agent,{}",
        r#"451-/agent,["agent_event",{"_placeholder":true,"num":0}]"#,
    ] {
        let server = RawServer::start(move |mut conn| async move {
            scripted_turn(&mut conn, &[json!({"type": "token", "text": "a"})]).await;
            conn.send(bad).await;
            conn.drain().await;
        })
        .await;
        let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
        assert_eq!(
            kinds(&items),
            ["connected", "token", "Err(protocol_error)"],
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_oversize_message_is_a_typed_error() {
    let server = RawServer::start(|mut conn| async move {
        scripted_turn(&mut conn, &[]).await;
        let huge = format!(
            "42/agent,{}",
            json!(["agent_event", {"type": "token", "text": "x".repeat(16 << 20)}])
        );
        conn.send(huge).await;
        conn.drain().await;
    })
    .await;
    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "Err(payload_too_large)"]);
}

#[tokio::test]
async fn a_message_over_the_server_max_payload_is_refused_before_sending() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            let open = json!({"sid": "s", "upgrades": [], "pingInterval": 60000, "pingTimeout": 60000, "maxPayload": 100});
            conn.send(format!("0{open}")).await;
            conn.read_connect().await;
            conn.ack().await;
            let _ = tx.send(conn.drain().await);
        }
    })
    .await;
    let items = collect(
        client(&server.base_url(), "t")
            .threads()
            .send("th", "x".repeat(200)),
    )
    .await;
    assert_eq!(kinds(&items), ["connected", "Err(payload_too_large)"]);
    let frames = seen.recv().await.unwrap();
    assert!(
        frames.iter().all(|f| !f.contains("\"message\"")),
        "{frames:?}"
    );
}

#[tokio::test]
async fn a_malformed_known_event_is_a_decode_error_and_the_turn_continues() {
    let server = RawServer::start(|mut conn| async move {
        scripted_turn(
            &mut conn,
            &[
                json!({"type": "tool_call", "name": "search", "params": "not an object", "callId": "c"}),
                json!({"type": "x_future_event", "payload": [1, 2]}),
                json!({"type": "token", "text": "ok"}),
                json!({"type": "done"}),
            ],
        )
        .await;
        conn.drain().await;
    })
    .await;
    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(
        kinds(&items),
        [
            "connected",
            "Err(decode)",
            "x_future_event",
            "token",
            "done"
        ]
    );
    let Err(e) = &items[1] else { panic!() };
    assert_eq!(e.decode_path(), Some("tool_call.params"));
    assert!(e.to_string().contains("tool_call"), "{e}");
    let Ok(Event::Unknown { kind, raw }) = &items[2] else {
        panic!()
    };
    assert_eq!(kind, "x_future_event");
    assert_eq!(raw, &json!({"type": "x_future_event", "payload": [1, 2]}));
}

#[tokio::test]
async fn rate_limit_refusal_is_a_rate_limited_error_with_retry_after() {
    let server = RawServer::start(|mut conn| async move {
        conn.handshake().await;
        conn.expect_event("message").await;
        conn.emit(
            "error",
            json!({"code": "rate_limit", "message": "Too many messages", "retryAfterSeconds": 7, "scope": "user", "limit": 10}),
        )
        .await;
        conn.emit("done", json!({"stopped": true})).await;
        conn.drain().await;
    })
    .await;
    let items = collect(client(&server.base_url(), "t").threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "Err(rate_limit)"]);
    let Some(Err(e)) = items.last() else { panic!() };
    assert!(matches!(e, Error::RateLimited(_)));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(e.message(), "Too many messages");
}

#[tokio::test]
async fn stop_sends_stop_and_ends_after_the_servers_done() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            scripted_turn(&mut conn, &[json!({"type": "token", "text": "a"})]).await;
            let stop = conn.expect_event("stop").await;
            conn.agent_event(json!({"type": "done", "stopped": true}))
                .await;
            let _ = tx.send((stop, conn.drain().await));
        }
    })
    .await;
    let mut stream = client(&server.base_url(), "t").threads().send("th", "hi");
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(Event::Connected(_)))
    ));
    assert!(matches!(next(&mut stream).await, Some(Ok(Event::Token(_)))));
    stream.stop();
    let rest = collect(stream).await;
    assert_eq!(kinds(&rest), ["done"]);
    let (stop, after) = seen.recv().await.unwrap();
    assert_eq!(stop, json!({"threadId": "th"}));
    assert_eq!(after, ["41/agent,"]);
}

#[tokio::test]
async fn stop_during_a_reconnect_pause_reconnects_at_once_to_deliver_it() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            conn.handshake().await;
            if conn.index == 0 {
                conn.expect_event("message").await;
                return; // dropped mid-turn
            }
            let mut names = Vec::new();
            while let Some((name, _)) = conn.next_event().await {
                names.push(name.clone());
                if name == "stop" {
                    conn.agent_event(json!({"type": "done", "stopped": true}))
                        .await;
                    break;
                }
            }
            let _ = tx.send(names);
            conn.drain().await;
        }
    })
    .await;
    // A 60 s backoff: the test only ends in time if stop cuts it short.
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token("t")
        .reconnect(
            platos_client::ReconnectConfig::default()
                .with_delays(Duration::from_secs(60), Duration::from_secs(60))
                .with_jitter(0.0),
        )
        .build()
        .unwrap();
    let mut stream = client.threads().send("th", "hi");
    loop {
        if let Some(Ok(Event::Reconnecting(_))) = next(&mut stream).await {
            break;
        }
    }
    stream.stop();
    let rest = collect(stream).await;
    assert_eq!(kinds(&rest), ["connected", "stream_gap", "done"]);
    assert_eq!(
        seen.recv().await.unwrap(),
        ["resume_stream", "join_thread", "stop"]
    );
}

#[tokio::test]
async fn dropping_the_stream_sends_stop_then_leaves() {
    let (tx, mut seen) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            scripted_turn(&mut conn, &[json!({"type": "token", "text": "a"})]).await;
            let _ = tx.send(conn.drain().await);
        }
    })
    .await;
    let mut stream = client(&server.base_url(), "t").threads().send("th", "hi");
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(Event::Connected(_)))
    ));
    assert!(matches!(next(&mut stream).await, Some(Ok(Event::Token(_)))));
    drop(stream);
    let frames = tokio::time::timeout(platos_integration_tests::realtime::DEADLINE, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        frames,
        [r#"42/agent,["stop",{"threadId":"th"}]"#, "41/agent,"]
    );
}

#[tokio::test]
async fn a_consumer_alone_that_does_not_read_holds_the_socket_and_loses_nothing() {
    let (tx, mut written) = observations();
    let server = RawServer::start(move |mut conn| {
        let tx = tx.clone();
        async move {
            conn.handshake_with(60_000, 60_000).await;
            conn.expect_event("message").await;
            for i in 0..50 {
                conn.agent_event(json!({"type": "token", "text": format!("t{i}")}))
                    .await;
            }
            conn.agent_event(json!({"type": "done"})).await;
            let _ = tx.send(Vec::<String>::new());
            conn.drain().await;
        }
    })
    .await;
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token("t")
        .stream_buffer(8)
        .build()
        .unwrap();
    let stream = client.threads().send("th", "hi");
    // Not a single poll until the server wrote the whole turn: the turn is
    // alone on its connection, so its full buffer stops the reading
    // (docs/realtime.md §5) instead of ending the turn.
    tokio::time::timeout(platos_integration_tests::realtime::DEADLINE, written.recv())
        .await
        .unwrap()
        .unwrap();
    let items = collect(stream).await;
    let mut expected = vec!["connected".to_owned()];
    expected.extend((0..50).map(|_| "token".to_owned()));
    expected.push("done".to_owned());
    assert_eq!(kinds(&items), expected);
    let tokens: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            Ok(Event::Token(t)) => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    let sent: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    assert_eq!(tokens, sent);
}

#[tokio::test]
async fn approval_response_over_the_socket_is_acknowledged() {
    let server = RawServer::start(|mut conn| async move {
        scripted_turn(
            &mut conn,
            &[json!({"type": "approval_needed", "approvalId": "ap1", "action": "refund"})],
        )
        .await;
        let answer = conn.expect_event("approval_response").await;
        assert_eq!(
            answer,
            json!({"approvalId": "ap1", "approved": true, "comment": "ok"})
        );
        conn.emit(
            "approval_ack",
            json!({"approvalId": "ap1", "received": true}),
        )
        .await;
        let answer = conn.expect_event("approval_response").await;
        conn.emit(
            "approval_response_error",
            json!({"approvalId": answer["approvalId"], "error": "Approval not found"}),
        )
        .await;
        conn.agent_event(json!({"type": "done"})).await;
        conn.drain().await;
    })
    .await;
    let mut stream = client(&server.base_url(), "t").threads().send("th", "hi");
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(Event::Connected(_)))
    ));
    let Some(Ok(Event::ApprovalNeeded(ap))) = next(&mut stream).await else {
        panic!()
    };
    stream
        .approval_response(
            ap.approval_id.clone(),
            Decision::approve().with_comment("ok"),
        )
        .await
        .unwrap();
    let e = stream
        .handle()
        .approval_response("nope", Decision::reject())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("approval_response_error"));
    assert_eq!(e.message(), "Approval not found");
    assert_eq!(kinds(&collect(stream).await), ["done"]);
}

#[tokio::test]
async fn lifecycle_events_serialise_like_the_python_sdk() {
    assert_eq!(Event::connected().to_value(), json!({"type": "connected"}));
    assert_eq!(
        Event::disconnected(Some("io server disconnect".into())).to_value(),
        json!({"type": "disconnected", "reason": "io server disconnect"})
    );
    assert_eq!(
        Event::reconnecting(2).to_value(),
        json!({"type": "reconnecting", "attempt": 2})
    );
    // A stream's items are Send + 'static + Unpin.
    fn assert_stream<S: futures::Stream<Item = Result<Event, Error>> + Send + Unpin + 'static>(
        _: &S,
    ) {
    }
    let server = RawServer::start(|mut conn| async move {
        scripted_turn(&mut conn, &[json!({"type": "done"})]).await;
        conn.drain().await;
    })
    .await;
    let stream = client(&server.base_url(), "t").threads().send("th", "hi");
    assert_stream(&stream);
    let _: Value = serde_json::to_value(
        collect(stream)
            .await
            .into_iter()
            .map(|i| i.unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
}

#[tokio::test]
async fn wss_uses_the_clients_tls_trust_settings() {
    let server = RawServer::start_tls(|mut conn| async move {
        scripted_turn(&mut conn, &[json!({"type": "done"})]).await;
        conn.drain().await;
    })
    .await;
    assert!(server.base_url().starts_with("https://"));

    // Trusted through the client's extra root (the same trust REST uses).
    let trusted = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token("t")
        .add_root_certificate(platos_integration_tests::realtime::TEST_CA_PEM)
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let items = collect(trusted.threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["connected", "done"]);

    // Not trusted: a terminal network error, not a reconnect loop.
    let before = server.accepted.load(Ordering::SeqCst);
    let untrusted = client(&server.base_url(), "t");
    let items = collect(untrusted.threads().send("th", "hi")).await;
    assert_eq!(kinds(&items), ["Err(network)"]);
    assert!(
        items[0].as_ref().unwrap_err().message().contains("TLS"),
        "{items:?}"
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), before + 1);
}

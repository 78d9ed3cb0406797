//! The `/agent` namespace end to end over raw Engine.IO text frames.

mod common;

use std::time::Duration;

use common::{Eio, End, T, call, token_headers};
use platos_test_server::{SocketRefusal, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

const NS: &str = "/agent";

async fn new_thread(s: &TestServer, token: &str) -> String {
    let (st, _, t) = call(
        &s.base_url(),
        Method::POST,
        "/threads",
        &token_headers(token),
        Some(json!({"agentId": "agent_support", "title": null})),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    t["id"].as_str().expect("id").to_string()
}

async fn connected(s: &TestServer, token: &str) -> Eio {
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    c.connect_ns(NS, Some(json!({"token": token})))
        .await
        .expect("connect ack");
    let (name, v) = c.event(NS).await.expect("connected event");
    assert_eq!(name, "connected");
    assert_eq!(v["status"], "ok");
    c
}

fn types(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test]
async fn full_turn_framing_and_persistence() {
    let s = TestServer::start().await.expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;

    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    assert_eq!(c.open["pingInterval"], 25000);
    assert_eq!(c.open["pingTimeout"], 10000);
    assert!(c.open["sid"].is_string());
    let sid = c
        .connect_ns(NS, Some(json!({"token": token})))
        .await
        .expect("ack");
    assert!(!sid.is_empty());
    let (name, v) = c.event(NS).await.expect("connected");
    assert_eq!(name, "connected");
    assert_eq!(v["organizationId"], "org_test");
    assert_eq!(v["userId"], "user_test");
    assert_eq!(v["socketId"], sid.as_str());

    c.emit(
        NS,
        "message",
        json!({"message": "hello [tokens=3]", "threadId": thread}),
    )
    .await;
    let evs = c.turn(NS).await;
    assert_eq!(
        types(&evs),
        [
            "status",
            "meta",
            "thinking",
            "status",
            "tool_call",
            "tool_result",
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
    assert!(evs.iter().all(|e| e["threadId"] == thread.as_str()));
    assert_eq!(evs[1]["thread_id"], thread.as_str());
    assert_eq!(evs[1]["agent_id"], "agent_support");
    assert_eq!(evs[4]["callId"], evs[5]["callId"]);
    let persisted = &evs[15];
    for f in ["costCents", "inputTokens", "outputTokens", "totalTokens"] {
        assert!(persisted[f].is_number(), "{f} in {persisted}");
    }
    assert_eq!(
        persisted["totalTokens"].as_u64(),
        Some(
            persisted["inputTokens"].as_u64().unwrap_or(0)
                + persisted["outputTokens"].as_u64().unwrap_or(0)
        )
    );
    let tokens: String = evs
        .iter()
        .filter(|e| e["type"] == "token")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(tokens, "w1 w2 w3 ");
    assert_eq!(evs[16]["usage"]["inputTokens"], persisted["inputTokens"]);
    // Every agent_event went out as exactly one counted WebSocket frame.
    assert!(
        s.recorder()
            .wait_until(T, |_| s.faults().agent_event_frames() == 17)
            .await
    );

    let (_, _, msgs) = call(
        &s.base_url(),
        Method::GET,
        &format!("/threads/{thread}/messages"),
        &token_headers(&token),
        None,
    )
    .await;
    let msgs = msgs["messages"].as_array().expect("messages").clone();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"], "hello [tokens=3]");
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], "w1 w2 w3 ");
    assert_eq!(msgs[1]["id"], persisted["messageId"]);
    let (_, _, arts) = call(
        &s.base_url(),
        Method::GET,
        &format!("/threads/{thread}/artifacts"),
        &token_headers(&token),
        None,
    )
    .await;
    assert_eq!(arts["artifacts"][0]["content"], evs[10]["finalContent"]);

    let (st, _, trace) = call(
        &s.base_url(),
        Method::GET,
        &format!("/monitoring/trace/{thread}"),
        &token_headers(&s.operator_token()),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(trace["spans"][0]["startTimeUnixNano"].is_string());
    assert_eq!(trace["rollup"]["totalMessages"], 2);

    // Leaving cleanly: 41 then close.
    c.send("41/agent,").await;
    c.close().await;
    let rec = s.recorder();
    assert_eq!(rec.socket_events_named("message").len(), 1);
    assert_eq!(rec.handshake_count(), 1);
    assert_eq!(rec.connect_count(), 1);
}

#[tokio::test]
async fn refused_token_is_an_error_event_then_disconnect() {
    let s = TestServer::start().await.expect("server");
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    let sid = c
        .connect_ns(NS, Some(json!({"token": "not.a.jwt"})))
        .await
        .expect("the connect itself is accepted, not a CONNECT_ERROR");
    assert!(!sid.is_empty());
    let (name, v) = c.event(NS).await.expect("error event");
    assert_eq!(name, "error");
    assert_eq!(v, json!({"message": "Invalid or expired session token."}));
    assert_eq!(c.raw(T).await.as_deref(), Ok("41/agent,"));
    assert!(s.recorder().connects()[0].refused.is_some());

    // Another secret, via the upgrade header.
    let other = platos_test_server::mint_token("another-secret-of-16+chars", &s.token_spec("u1"));
    let mut c = Eio::connect(&s.socket_url(), &[("x-platos-session-token", &other)]).await;
    c.connect_ns(NS, None).await.expect("ack");
    let (name, v) = c.event(NS).await.expect("error event");
    assert_eq!(
        (name.as_str(), v["message"].as_str()),
        ("error", Some("Invalid or expired session token."))
    );

    // No token and no scope at all.
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    c.connect_ns(NS, None).await.expect("ack");
    let (name, v) = c.event(NS).await.expect("error event");
    assert_eq!(name, "error");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Missing auth")
    );
}

#[tokio::test]
async fn direct_scope_from_upgrade_headers_and_from_auth_payload() {
    let s = TestServer::start().await.expect("server");
    let h = [
        ("x-platos-organization-id", "org_test"),
        ("x-platos-project-id", "proj_test"),
        ("x-platos-environment-id", "env_test"),
        ("x-platos-user-id", "user_test"),
    ];
    let mut c = Eio::connect(&s.socket_url(), &h).await;
    c.connect_ns(NS, None).await.expect("ack");
    let (name, v) = c.event(NS).await.expect("connected");
    assert_eq!(
        (name.as_str(), &v["projectId"]),
        ("connected", &json!("proj_test"))
    );

    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    c.connect_ns(NS, Some(json!({"organizationId": "o2", "projectId": "p2", "environmentId": "e2", "userId": "u2"})))
        .await
        .expect("ack");
    let (name, v) = c.event(NS).await.expect("connected");
    assert_eq!(
        (name.as_str(), &v["organizationId"]),
        ("connected", &json!("o2"))
    );
    // The seeded thread belongs to another scope: the turn is refused as not found.
    c.emit(
        NS,
        "message",
        json!({"message": "hi", "threadId": "thr_seed"}),
    )
    .await;
    let evs = c.turn(NS).await;
    assert_eq!(evs[0]["type"], "error");
    assert_eq!(evs[0]["code"], "not_found");
}

#[tokio::test]
async fn server_pings_and_drops_a_client_that_never_pongs() {
    let s = TestServer::builder()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .start()
        .await
        .expect("server");
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    assert_eq!(c.open["pingInterval"], 100);
    // Answering pings keeps the connection up across several intervals.
    c.connect_ns(NS, Some(json!({"token": s.session_token()})))
        .await
        .expect("ack");
    let _ = c.event(NS).await.expect("connected");
    assert_eq!(c.raw(Duration::from_millis(500)).await, Err(End::Timeout));
    assert!(c.pings >= 2, "pings seen: {}", c.pings);
    // Not answering: the server gives up after pingInterval + pingTimeout.
    c.auto_pong = false;
    assert_eq!(c.raw(T).await.as_deref(), Ok("2"));
    let end = loop {
        match c.raw(T).await {
            Ok(f) if f == "2" => continue,
            Ok(f) => panic!("unexpected frame {f}"),
            Err(e) => break e,
        }
    };
    assert_ne!(end, End::Timeout);
}

#[tokio::test]
async fn stop_aborts_a_hanging_turn() {
    let s = TestServer::start().await.expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;
    let mut c = connected(&s, &token).await;
    c.emit(
        NS,
        "message",
        json!({"message": "[hang] go", "threadId": thread}),
    )
    .await;
    c.until(NS, |n, v| n == "agent_event" && v["type"] == "token")
        .await;
    assert_eq!(s.running_turns(), 1);
    c.emit(NS, "stop", json!({"threadId": thread})).await;
    let got = s
        .recorder()
        .wait_for_socket_event("stop", T)
        .await
        .expect("stop recorded");
    assert_eq!(got.payload["threadId"], thread.as_str());
    let evs = c.turn(NS).await;
    assert_eq!(evs.last().expect("done")["stopped"], true);
    assert_eq!(evs.last().expect("done")["threadId"], thread.as_str());
    assert!(s.recorder().wait_until(T, |_| s.running_turns() == 0).await);
}

#[tokio::test]
async fn approval_pauses_until_socket_or_rest_resolution() {
    let s = TestServer::start().await.expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;
    let mut c = connected(&s, &token).await;

    c.emit(
        NS,
        "message",
        json!({"message": "this needs approval", "threadId": thread}),
    )
    .await;
    let seen = c
        .until(NS, |n, v| {
            n == "agent_event" && v["type"] == "approval_needed"
        })
        .await;
    let id = seen.last().expect("needed").1["approvalId"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        s.pending_approvals(s.scope()),
        vec!["apr_seed_pending".to_string(), id.clone()]
    );
    c.emit(
        NS,
        "approval_response",
        json!({"approvalId": id, "approved": true}),
    )
    .await;
    let (name, ack) = c.event(NS).await.expect("ack");
    assert_eq!(
        (name.as_str(), ack),
        ("approval_ack", json!({"approvalId": id, "received": true}))
    );
    let evs = c.turn(NS).await;
    assert_eq!(evs[0]["type"], "approval_resolved");
    assert_eq!(evs[0]["status"], "approved");
    assert_eq!(evs.last().expect("done")["type"], "done");

    // Second turn resolved (rejected) over REST.
    c.emit(
        NS,
        "message",
        json!({"message": "approval again", "threadId": thread}),
    )
    .await;
    let seen = c
        .until(NS, |n, v| {
            n == "agent_event" && v["type"] == "approval_needed"
        })
        .await;
    let id = seen.last().expect("needed").1["approvalId"]
        .as_str()
        .expect("id")
        .to_string();
    let (st, _, r) = call(
        &s.base_url(),
        Method::POST,
        &format!("/approvals/{id}/resolve"),
        &token_headers(&token),
        Some(json!({"approved": false, "comment": "no"})),
    )
    .await;
    assert_eq!(
        (st, r),
        (
            200,
            json!({"resolved": true, "approvalId": id, "approved": false})
        )
    );
    let evs = c.turn(NS).await;
    assert_eq!(evs[0]["status"], "rejected");
    assert_eq!(evs[0]["respondedBy"], "user_test");
}

#[tokio::test]
async fn drop_after_n_events_closes_without_close_frame() {
    let s = TestServer::start().await.expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;
    let mut c = connected(&s, &token).await;
    s.faults().drop_socket_after_events(3);
    c.emit(NS, "message", json!({"message": "x", "threadId": thread}))
        .await;
    for _ in 0..3 {
        let (n, _) = c.event(NS).await.expect("event before the drop");
        assert_eq!(n, "agent_event");
    }
    assert_eq!(c.raw(T).await, Err(End::Reset));
    assert_eq!(s.recorder().faults_fired().len(), 1);
    // Reconnect, join the thread: later events of the same turn arrive.
    let mut c = connected(&s, &token).await;
    c.emit(NS, "resume_stream", json!({"threadId": thread}))
        .await;
    c.emit(NS, "join_thread", json!({"threadId": thread})).await;
    let seen = c
        .until(NS, |n, v| {
            n == "joined_thread" || (n == "agent_event" && v["type"] == "done")
        })
        .await;
    assert!(!seen.is_empty());
    assert!(
        s.recorder()
            .wait_for_socket_event("resume_stream", T)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn silenced_connection_stops_pings_but_stays_open() {
    let s = TestServer::builder()
        .ping_interval(Duration::from_millis(50))
        .ping_timeout(Duration::from_millis(50))
        .start()
        .await
        .expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;
    let mut c = connected(&s, &token).await;
    s.faults().silence_socket_after_events(2);
    c.emit(NS, "message", json!({"message": "x", "threadId": thread}))
        .await;
    for _ in 0..2 {
        assert_eq!(c.event(NS).await.expect("event").0, "agent_event");
    }
    let pings = c.pings;
    // Several server ping periods (and its own timeout) pass: nothing, not even a close.
    assert_eq!(c.raw(Duration::from_millis(600)).await, Err(End::Timeout));
    assert_eq!(c.pings, pings);
}

#[tokio::test]
async fn rate_limit_refusal_and_session_expiry_events() {
    let s = TestServer::start().await.expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;
    let mut c = connected(&s, &token).await;
    s.faults().refuse_next_message(SocketRefusal::rate_limit(7));
    c.emit(NS, "message", json!({"message": "x", "threadId": thread}))
        .await;
    let (n, v) = c.event(NS).await.expect("error");
    assert_eq!(
        (n.as_str(), &v["code"], &v["retryAfterSeconds"]),
        ("error", &json!("rate_limit"), &json!(7))
    );
    assert_eq!(
        c.event(NS).await.expect("done"),
        ("done".to_string(), json!({"stopped": true}))
    );

    s.faults()
        .send_socket_error(
            json!({"code": "SESSION_EXPIRED", "message": "Session expired"}),
            true,
        )
        .await;
    let (n, v) = c.event(NS).await.expect("error");
    assert_eq!(
        (n.as_str(), &v["code"]),
        ("error", &json!("SESSION_EXPIRED"))
    );
    assert_eq!(c.raw(T).await.as_deref(), Ok("41/agent,"));
}

#[tokio::test]
async fn deprecation_notice_when_enabled() {
    let s = TestServer::builder()
        .deprecation(true)
        .start()
        .await
        .expect("server");
    let mut c = connected(&s, &s.session_token()).await;
    let (n, v) = c.event(NS).await.expect("deprecation");
    assert_eq!(
        (n.as_str(), &v["code"]),
        ("server.deprecation", &json!("SHARED_AGENT_NAMESPACE"))
    );
}

#[tokio::test]
async fn per_agent_namespace_and_message_idempotency_key() {
    let s = TestServer::start().await.expect("server");
    let token = s.session_token();
    let thread = new_thread(&s, &token).await;
    let ns = "/agent/agent_support";
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    c.connect_ns(ns, Some(json!({"token": token})))
        .await
        .expect("ack");
    assert_eq!(c.event(ns).await.expect("connected").0, "connected");
    let msg = json!({"message": "x [tokens=1]", "threadId": thread, "idempotencyKey": "k1"});
    c.emit(ns, "message", msg.clone()).await;
    let first = c.turn(ns).await;
    assert_eq!(first.last().expect("done")["type"], "done");
    // The same key again: recorded, but no second turn.
    c.emit(ns, "message", msg).await;
    c.emit(ns, "join_thread", json!({"threadId": thread})).await;
    let (n, v) = c.event(ns).await.expect("joined");
    assert_eq!(
        (n.as_str(), v),
        ("joined_thread", json!({"threadId": thread}))
    );
    assert_eq!(s.recorder().socket_events_named("message").len(), 2);
    assert_eq!(s.recorder().socket_events()[0].namespace, ns);
}

#[tokio::test]
async fn failed_handshakes_refuse_the_upgrade() {
    let s = TestServer::start().await.expect("server");
    s.faults().fail_next_handshakes(2);
    for _ in 0..2 {
        let r = tokio_tungstenite::connect_async(s.socket_url()).await;
        assert!(r.is_err(), "upgrade must be refused");
    }
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    c.connect_ns(NS, Some(json!({"token": s.session_token()})))
        .await
        .expect("third handshake works");
    assert_eq!(s.recorder().handshake_count(), 3);
}

#[tokio::test]
async fn an_expiring_token_gets_session_expired_then_disconnect() {
    let s = TestServer::builder()
        .expire_sessions(true)
        .start()
        .await
        .expect("server");
    // `exp` is in whole seconds: the token expires within 2-3 s, time
    // enough to connect on a loaded machine (with 1 s it sometimes expired
    // before the handshake) and well inside the 5-s wait for the event.
    let short = s.mint(&s.token_spec(s.user_id()).times(0, 3));
    let mut c = connected(&s, &short).await;
    let (n, v) = c.event(NS).await.expect("error");
    assert_eq!(
        (n.as_str(), v),
        (
            "error",
            json!({"code": "SESSION_EXPIRED", "message": "Session expired"})
        )
    );
    assert_eq!(c.raw(T).await.as_deref(), Ok("41/agent,"));
}

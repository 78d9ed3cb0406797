//! The core realtime scenarios against the Node `socket.io` 4.8 server
//! (the implementation Platos runs): tests/node/server.js, started as a
//! child process per test. Needs Node.js 18+ and `npm ci --prefix tests/node`;
//! without them these tests fail with a message saying so.

use platos_client::{Error, PlatosClient, RealtimeConfig, SendOptions};
use platos_events::Event;
use platos_integration_tests::realtime::{NodeServer, client, collect, kinds, next};
use serde_json::json;

fn tokens(items: &[Result<Event, Error>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(Event::Token(t)) => Some(t.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn node_full_turn() {
    let node = NodeServer::start(&[("TOKENS", "3")]).await;
    let items = collect(client(&node.base_url(), "tok").threads().send("th1", "hi")).await;
    assert_eq!(
        kinds(&items),
        [
            "connected",
            "status",
            "meta",
            "token",
            "token",
            "token",
            "tool_call",
            "tool_result",
            "message_persisted",
            "done"
        ]
    );
    assert_eq!(tokens(&items), ["tok0 ", "tok1 ", "tok2 "]);
    let Ok(Event::Done(done)) = items.last().unwrap() else {
        panic!()
    };
    assert_eq!(
        items.last().unwrap().as_ref().unwrap().thread_id(),
        Some("th1")
    );
    assert!(done.usage.is_some());

    node.wait_for("the client leaves", |n| {
        n.lines().iter().any(|l| l.starts_with("DISCONNECT 1"))
    })
    .await;
    let messages = node.received("message");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1["message"], "hi");
    assert_eq!(messages[0].1["threadId"], "th1");
    assert!(messages[0].1["idempotencyKey"].is_string());
    // The token went in the CONNECT auth payload and the upgrade header.
    let connect = node
        .lines()
        .into_iter()
        .find(|l| l.starts_with("CONNECT 1 "))
        .unwrap();
    let auth: serde_json::Value = serde_json::from_str(&connect["CONNECT 1 ".len()..]).unwrap();
    assert_eq!(auth["token"], "present");
    assert_eq!(auth["headerToken"], "tok");
    // A clean leave, not a transport error.
    assert!(
        node.lines()
            .contains(&"DISCONNECT 1 client namespace disconnect".to_owned()),
        "{:?}",
        node.lines()
    );
}

#[tokio::test]
async fn node_pings_every_100ms_during_a_3s_turn_keep_the_connection() {
    let node = NodeServer::start(&[
        ("PING_INTERVAL_MS", "100"),
        // Room for a loaded 2-core CI machine: 100 ms made a stalled pong
        // (not the client) end the connection there.
        ("PING_TIMEOUT_MS", "500"),
        ("TOKENS", "30"),
        ("TOKEN_DELAY_MS", "100"),
    ])
    .await;
    let items = collect(client(&node.base_url(), "tok").threads().send("th", "hi")).await;
    let k = kinds(&items);
    assert_eq!(k.first().map(String::as_str), Some("connected"));
    assert_eq!(k.last().map(String::as_str), Some("done"));
    assert!(
        !k.iter().any(|k| k == "reconnecting" || k == "disconnected"),
        "{k:?}"
    );
    assert_eq!(tokens(&items).len(), 30);
    assert_eq!(
        node.lines()
            .iter()
            .filter(|l| l.starts_with("CONNECT "))
            .count(),
        1
    );
}

#[tokio::test]
async fn node_drop_mid_turn_reconnects_resumes_and_never_resends_the_message() {
    let node = NodeServer::start(&[("TOKENS", "4"), ("DROP_AFTER_TOKENS", "2")]).await;
    let items = collect(client(&node.base_url(), "tok").threads().send("th", "hi")).await;
    assert_eq!(
        kinds(&items),
        [
            "connected",
            "status",
            "meta",
            "token",
            "token",
            "disconnected",
            "reconnecting",
            "connected",
            "stream_gap",
            "token",
            "token",
            "tool_call",
            "tool_result",
            "message_persisted",
            "done"
        ]
    );
    assert_eq!(tokens(&items), ["tok0 ", "tok1 ", "tok2 ", "tok3 "]);
    let Ok(Event::Reconnecting(r)) = &items[6] else {
        panic!()
    };
    assert_eq!(r.attempt, 1);

    assert_eq!(node.received("message").len(), 1);
    assert_eq!(
        node.received("resume_stream"),
        [(2, json!({"threadId": "th"}))]
    );
    assert_eq!(
        node.received("join_thread"),
        [(2, json!({"threadId": "th"}))]
    );
}

#[tokio::test]
async fn node_dropping_the_stream_stops_the_turn_server_side() {
    let node = NodeServer::start(&[("TOKENS", "100000"), ("TOKEN_DELAY_MS", "10")]).await;
    let mut stream = client(&node.base_url(), "tok").threads().send("th", "hi");
    loop {
        if let Some(Ok(Event::Token(_))) = next(&mut stream).await {
            break;
        }
    }
    drop(stream);
    node.wait_for("stop then leave", |n| {
        !n.received("stop").is_empty() && n.lines().iter().any(|l| l.starts_with("DISCONNECT 1"))
    })
    .await;
    assert_eq!(node.received("stop"), [(1, json!({"threadId": "th"}))]);
}

#[tokio::test]
async fn node_stop_ends_with_the_servers_stopped_done() {
    let node = NodeServer::start(&[("TOKENS", "100000"), ("TOKEN_DELAY_MS", "10")]).await;
    let mut stream = client(&node.base_url(), "tok").threads().send("th", "hi");
    loop {
        if let Some(Ok(Event::Token(_))) = next(&mut stream).await {
            break;
        }
    }
    stream.stop();
    let rest = collect(stream).await;
    let Some(Ok(Event::Done(done))) = rest.last() else {
        panic!("{:?}", kinds(&rest))
    };
    assert_eq!(done.stopped, Some(true));
    assert!(
        rest[..rest.len() - 1]
            .iter()
            .all(|i| matches!(i, Ok(Event::Token(_))))
    );
    assert_eq!(node.received("stop").len(), 1);
}

fn count(node: &NodeServer, prefix: &str) -> usize {
    node.lines()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn node_concurrent_turns_share_one_connection() {
    let node = NodeServer::start(&[("TOKENS", "5"), ("TOKEN_DELAY_MS", "5")]).await;
    let client = client(&node.base_url(), "tok");
    let turns = ["th_a", "th_b", "th_c"].map(|t| collect(client.threads().send(t, "hi")));
    let results = futures::future::join_all(turns).await;
    for (items, thread) in results.iter().zip(["th_a", "th_b", "th_c"]) {
        let k = kinds(items);
        assert_eq!(k.first().map(String::as_str), Some("connected"), "{k:?}");
        assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
        assert_eq!(tokens(items).len(), 5);
        for event in items.iter().flatten() {
            if let Some(t) = event.thread_id() {
                assert_eq!(t, thread);
            }
        }
    }
    assert_eq!(count(&node, "CONNECT "), 1);
    let messages = node.received("message");
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|(conn, _)| *conn == 1));
}

#[tokio::test]
async fn node_a_drop_with_several_live_turns_reconnects_once_and_rejoins_each() {
    // Tokens 100 ms apart: all three turns start (one round trip each)
    // long before the first one's second token drops the connection.
    let node = NodeServer::start(&[
        ("TOKENS", "4"),
        ("TOKEN_DELAY_MS", "100"),
        ("DROP_AFTER_TOKENS", "2"),
    ])
    .await;
    let client = client(&node.base_url(), "tok");
    let turns = ["th_a", "th_b", "th_c"].map(|t| collect(client.threads().send(t, "hi")));
    let results = futures::future::join_all(turns).await;
    for items in &results {
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
    }
    assert_eq!(count(&node, "CONNECT "), 2, "one reconnect for all turns");
    assert_eq!(node.received("message").len(), 3);
    let mut joined: Vec<(u32, String)> = node
        .received("join_thread")
        .into_iter()
        .map(|(conn, p)| (conn, p["threadId"].as_str().unwrap().to_owned()))
        .collect();
    joined.sort();
    assert_eq!(
        joined,
        [
            (2, "th_a".to_owned()),
            (2, "th_b".to_owned()),
            (2, "th_c".to_owned())
        ]
    );
}

#[tokio::test]
async fn node_per_agent_namespaces() {
    let node = NodeServer::start(&[("TOKENS", "2")]).await;
    let client = PlatosClient::builder()
        .base_url(node.base_url())
        .session_token("tok")
        .realtime(RealtimeConfig::default().per_agent_namespace(true))
        .build()
        .unwrap();
    let send = |thread: &str, agent: &str| {
        collect(
            client
                .threads()
                .send_with(thread, "hi", SendOptions::new().agent_id(agent)),
        )
    };
    let (a, b, c) = tokio::join!(send("t1", "ag_1"), send("t2", "ag_1"), send("t3", "ag_2"));
    for items in [&a, &b, &c] {
        assert_eq!(kinds(items).last().map(String::as_str), Some("done"));
    }
    let mut namespaces: Vec<String> = node
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("CONNECT "))
        .map(|l| {
            let json = &l[l.find(' ').unwrap() + 1..];
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            v["namespace"].as_str().unwrap().to_owned()
        })
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, ["/agent/ag_1", "/agent/ag_2"]);
}

#[tokio::test]
async fn node_a_stalled_consumer_ends_alone_after_the_grace_while_its_neighbour_finishes() {
    // Events 5 ms apart: the reading consumer keeps up with a 16-event buffer.
    let node = NodeServer::start(&[("TOKENS", "60"), ("TOKEN_DELAY_MS", "5")]).await;
    let client = PlatosClient::builder()
        .base_url(node.base_url())
        .session_token("tok")
        .stream_buffer(16)
        .realtime(
            RealtimeConfig::default().backpressure_grace(std::time::Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let stalled = client.threads().send("th_stalled", "hi");
    let healthy = collect(client.threads().send("th_healthy", "hi")).await;
    let k = kinds(&healthy);
    assert_eq!(k.last().map(String::as_str), Some("done"), "{k:?}");
    assert_eq!(tokens(&healthy).len(), 60);
    let items = collect(stalled).await;
    let k = kinds(&items);
    // What it held, in order, then the error.
    assert!(k.len() >= 17, "{k:?}");
    assert_eq!(k.last().map(String::as_str), Some("Err(consumer_lagged)"));
    assert!(
        k[..k.len() - 1].iter().all(|k| !k.starts_with("Err")),
        "{k:?}"
    );
    assert_eq!(count(&node, "CONNECT "), 1);
    assert!(node.received("stop").is_empty());
}

/// Counts a turn's tokens and reports how it ended, doing nothing else.
async fn count_tokens(mut stream: platos_client::TurnStream) -> (usize, String) {
    use futures::StreamExt;
    let mut tokens = 0;
    let mut last = String::from("nothing");
    while let Some(item) = stream.next().await {
        last = match item {
            Ok(Event::Token(_)) => {
                tokens += 1;
                continue;
            }
            Ok(event) => event.kind().to_owned(),
            Err(e) => format!("Err({})", e.code().unwrap_or(e.kind())),
        };
    }
    (tokens, last)
}

/// Issue 18's burst: five 100,000-token turns back to back, sent by the
/// Node peer with no delay, read by a consumer that only counts. The
/// connection outruns the consumer; each turn is alone on its connection,
/// so the reading stops until the consumer makes room: no turn ends early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_a_burst_of_five_100k_token_turns_reaches_a_counting_consumer_whole() {
    let node = NodeServer::start(&[("TOKENS", "100000"), ("QUIET", "1")]).await;
    let client = client(&node.base_url(), "tok");
    let mut outcomes = Vec::new();
    for i in 0..5 {
        outcomes.push(count_tokens(client.threads().send(format!("burst{i}"), "hi")).await);
    }
    assert_eq!(outcomes, vec![(100_000, "done".to_owned()); 5]);
}

/// The same burst on three turns sharing one connection, each read by its
/// own counting consumer: a full turn holds the others back at most the
/// grace, and a consumer that keeps reading drains well within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_three_bursting_turns_sharing_a_connection_all_finish() {
    let node = NodeServer::start(&[("TOKENS", "100000"), ("QUIET", "1")]).await;
    let client = client(&node.base_url(), "tok");
    let turns = (0..3).map(|i| {
        tokio::spawn(count_tokens(
            client.threads().send(format!("shared{i}"), "hi"),
        ))
    });
    let outcomes: Vec<_> = futures::future::join_all(turns)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outcomes, vec![(100_000, "done".to_owned()); 3]);
    assert_eq!(count(&node, "CONNECT "), 1);
}

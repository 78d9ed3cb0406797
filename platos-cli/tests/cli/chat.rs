//! `platos chat`: piped messages, approvals answered, Ctrl-C.

use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

use crate::support::{DEADLINE, finish, interrupt, line_containing, platos, run, stderr_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_chat_answers_the_approval_with_yes() {
    let server = TestServer::start().await.expect("server");
    let thread = run(
        platos(
            &server,
            &["threads", "create", SEED_AGENT_SUPPORT, "--json"],
        ),
        "",
    )
    .await
    .json();
    let thread = thread["id"].as_str().expect("id").to_owned();

    let out = run(
        platos(&server, &["chat", "--thread", &thread, "--yes"]),
        "send the report, approval needed\n",
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("Here is what I found"), "{out:?}");
    assert!(out.stderr.contains("[tool call: lookup]"), "{out:?}");
    assert!(
        out.stderr.contains("[approval send_email: approved]"),
        "{out:?}"
    );
    assert!(out.stderr.contains("[cost: "), "{out:?}");
    assert_eq!(server.turn_statuses(&thread), ["completed"]);
    let answered = server.recorder().socket_events_named("approval_response");
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0].payload["approved"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_yes_the_next_line_answers_and_http_works_too() {
    let server = TestServer::start().await.expect("server");
    let out = run(
        platos(
            &server,
            &["chat", "--agent", SEED_AGENT_SUPPORT, "--transport", "http"],
        ),
        "approval please\nn\n[tokens=3] and then\n",
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr.contains("approve? [y/N]"), "{out:?}");
    assert!(
        out.stderr.contains("[approval send_email: rejected]"),
        "{out:?}"
    );
    // The second message was a turn of its own.
    assert!(out.stdout.contains("w1 w2 w3"), "{out:?}");
    assert_eq!(out.stderr.matches("[cost: ").count(), 2, "{out:?}");
    // The HTTP lane answers approvals over REST.
    let resolved = server.recorder().requests_to("/resolve");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0].json().expect("body")["approved"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_turn_on_the_server() {
    let server = TestServer::start().await.expect("server");
    let thread = run(
        platos(
            &server,
            &["threads", "create", SEED_AGENT_SUPPORT, "--json"],
        ),
        "",
    )
    .await
    .json();
    let thread = thread["id"].as_str().expect("id").to_owned();
    let mut cmd = platos(
        &server,
        &["chat", "--thread", &thread, "--transport", "websocket"],
    );
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        // `[hang]`: the scripted turn stops after its first token until `stop` arrives.
        stdin
            .write_all(b"[hang] tell me everything\n")
            .await
            .expect("write");
    }
    server
        .recorder()
        .wait_for_socket_event("message", DEADLINE)
        .await
        .expect("the turn was sent");
    interrupt(&child);
    server
        .recorder()
        .wait_for_socket_event("stop", DEADLINE)
        .await
        .expect("Ctrl-C sent stop");
    let out = finish(child).await;
    assert_eq!(
        out.code(),
        Some(0),
        "stdin ended after the stopped turn: {out:?}"
    );
    assert!(out.stderr.contains("[stopped]"), "{out:?}");
    assert_eq!(server.turn_statuses(&thread), ["stopped"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_with_no_turn_running_quits() {
    let server = TestServer::start().await.expect("server");
    let mut cmd = platos(&server, &["chat", "--agent", SEED_AGENT_SUPPORT]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    // Held open until it has exited: end of input would end it too (exit 0).
    let stdin = child.stdin.take().expect("stdin");
    let mut stderr = stderr_lines(&mut child);
    // Ready once it has opened its thread; stdin stays open, so it waits for a line.
    line_containing(&mut stderr, "[thread: ").await;
    interrupt(&child);
    let out = finish(child).await;
    drop(stdin);
    assert_eq!(out.code(), Some(130), "{out:?}");
    assert_eq!(server.running_turns(), 0);
}

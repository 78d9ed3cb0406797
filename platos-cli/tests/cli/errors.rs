//! Failures: one line `error: …` and the documented exit code, never a panic.

use platos_test_server::TestServer;

use crate::support::{bare, platos, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_exits_2_with_one_line() {
    let server = TestServer::start().await.expect("server");
    for args in [
        &["threads", "list", "--bogus"][..],
        &["threads", "get"],
        &["threads", "list", "--limit", "many"],
        &["nonsense"],
        &["chat", "--agent", "a", "--thread", "t"],
        &["chat", "--transport", "pigeon"],
    ] {
        let out = run(platos(&server, args), "").await;
        out.failed(2);
    }
    // Nothing was sent for any of them.
    assert!(
        server.recorder().requests().is_empty(),
        "{:?}",
        server.recorder().requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_call_with_an_end_users_token_says_what_is_needed() {
    let server = TestServer::start().await.expect("server");
    let out = run(platos(&server, &["agents", "list"]), "").await;
    let line = out.failed(1);
    assert!(line.contains("403 OPERATOR_ONLY"), "{line}");
    assert!(
        line.contains("hint: this call needs an operator credential"),
        "{line}"
    );
    assert!(!line.contains(&server.session_token()), "{line}");

    // The V1 API refuses an end user's token too, with its own code.
    let mut v1 = platos(&server, &["v1", "organizations", "list"]);
    v1.env("PLATOS_OPERATOR_TOKEN", server.session_token());
    let out = run(v1, "").await;
    let line = out.failed(1);
    assert!(
        line.contains("FORBIDDEN_SCOPE") && line.contains("operator credential"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_3() {
    // A port that was just free: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = bare(&[
        "threads",
        "list",
        "--base-url",
        &format!("http://127.0.0.1:{port}"),
    ]);
    cmd.env("PLATOS_SESSION_TOKEN", "t");
    let out = run(cmd, "").await;
    assert!(out.failed(3).contains("is the server running"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_is_usage() {
    let out = run(bare(&["threads", "list"]), "").await;
    assert!(out.failed(2).contains("PLATOS_BASE_URL"), "{out:?}");
    let out = run(
        bare(&["threads", "list", "--base-url", "http://127.0.0.1:9"]),
        "",
    )
    .await;
    assert!(out.failed(2).contains("no credential"), "{out:?}");
    let out = run(
        bare(&[
            "v1",
            "organizations",
            "list",
            "--base-url",
            "http://127.0.0.1:9",
        ]),
        "",
    )
    .await;
    assert!(out.failed(2).contains("PLATOS_OPERATOR_TOKEN"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_what_was_refused() {
    let server = TestServer::start().await.expect("server");
    // A thread that does not exist: refused before any turn, not as a turn's error.
    let out = run(
        platos(&server, &["chat", "--thread", "thr_missing"]),
        "hello\n",
    )
    .await;
    assert!(out.failed(1).contains("404"), "{out:?}");
    assert!(server.recorder().socket_events_named("message").is_empty());

    // A V1 refusal names the refused input.
    let out = run(
        platos(
            &server,
            &[
                "v1",
                "environment-end-users",
                "list",
                "env_test",
                "--limit",
                "1000",
            ],
        ),
        "",
    )
    .await;
    let line = out.failed(1);
    assert!(
        line.contains("INVALID_REQUEST") && line.contains("query.limit"),
        "{line}"
    );
}

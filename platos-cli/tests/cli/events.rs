//! `platos events tail`: frames as lines, the resume position on exit, and
//! a second tail from that position reading only what came after.

use platos_test_server::TestServer;
use serde_json::json;

use crate::support::{
    finish, interrupt, line_containing, platos, rest, stderr_lines, stdout_lines,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_where_to_resume_and_resumes_there() {
    let server = TestServer::start().await.expect("server");
    let streams = server.v1_streams();
    for i in 1..=3 {
        streams.append(
            "env_test",
            "turn-1",
            "assistant.delta",
            json!({"text": format!("part {i}")}),
        );
    }
    let mut child = platos(&server, &["events", "tail", "env_test", "turn-1"])
        .spawn()
        .expect("spawn");
    let mut stdout = stdout_lines(&mut child);
    line_containing(&mut stdout, "part 3").await;
    // The journal has no end yet: the tail waits for more until Ctrl-C.
    interrupt(&child);
    let stderr = stderr_lines(&mut child);
    let out = finish(child).await;
    assert_eq!(out.code(), Some(130), "{out:?}");
    let said = rest(stderr).await;
    let from = said
        .lines()
        .find_map(|l| l.strip_prefix("resume: --from "))
        .unwrap_or_else(|| panic!("no resume position in {said:?}"))
        .to_owned();
    assert_eq!(
        from,
        format!("{}:3", streams.cursor("env_test", "turn-1", 3))
    );

    streams.append(
        "env_test",
        "turn-1",
        "assistant.delta",
        json!({"text": "part 4"}),
    );
    streams.append("env_test", "turn-1", "turn.done", json!({}));
    let mut child = platos(
        &server,
        &["events", "tail", "env_test", "turn-1", "--from", &from],
    )
    .spawn()
    .expect("spawn");
    let stdout = stdout_lines(&mut child);
    let printed = rest(stdout).await;
    let out = finish(child).await;
    assert_eq!(out.code(), Some(0), "ended by turn.done: {out:?} {printed}");
    let seqs: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(seqs, ["4", "5"], "{printed}");
    assert!(out.stderr.contains(":5"), "{out:?}");
    // The second tail sent the printed cursor as Last-Event-ID.
    let sent: Vec<Option<String>> = streams
        .connections()
        .iter()
        .map(|c| c.last_event_id.clone())
        .collect();
    assert_eq!(
        sent.last().cloned().flatten().as_deref(),
        from.rsplit_once(':').map(|(c, _)| c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_position_is_a_usage_error() {
    let server = TestServer::start().await.expect("server");
    let out = crate::support::run(
        platos(
            &server,
            &["events", "tail", "env_test", "s", "--from", "nope"],
        ),
        "",
    )
    .await;
    assert!(out.failed(2).contains("CURSOR:SEQ"), "{out:?}");
}

//! `platos approvals watch`: pending approvals answered as they are found.

use platos_test_server::{SEED_APPROVAL_APPROVED, SEED_APPROVAL_PENDING, TestServer};

use crate::support::{finish, interrupt, line_containing, platos, stdout_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_yes_approves_what_is_pending_and_ctrl_c_ends_it() {
    let server = TestServer::start().await.expect("server");
    assert!(
        server
            .pending_approvals(server.scope())
            .contains(&SEED_APPROVAL_PENDING.to_owned())
    );
    let mut child = platos(&server, &["--operator", "approvals", "watch", "--yes"])
        .spawn()
        .expect("spawn");
    let mut stdout = stdout_lines(&mut child);
    let line = line_containing(&mut stdout, SEED_APPROVAL_PENDING).await;
    assert!(line.ends_with("approved"), "{line}");
    interrupt(&child);
    let out = finish(child).await;
    assert_eq!(out.code(), Some(130), "{out:?}");
    assert!(
        !server
            .pending_approvals(server.scope())
            .contains(&SEED_APPROVAL_PENDING.to_owned())
    );
    // The one already approved was left alone.
    let resolved = server.recorder().requests_to("/resolve");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(!resolved[0].path.contains(SEED_APPROVAL_APPROVED));
}

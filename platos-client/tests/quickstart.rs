//! Runs the quick start as a user would (a separate process) and checks
//! what it prints: against the embedded server, against a server given by
//! environment variables, and with the mistakes a user can make.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

/// The example binary, next to this test's binary. Built (or found fresh) by
/// cargo once per run: `cargo test --test quickstart` alone does not build
/// examples, and a stale binary would test old code.
fn quickstart() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>/deps/<test>");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-q",
                    "-p",
                    "platos-client",
                    "--example",
                    "quickstart",
                ])
                .status()
                .expect("run cargo");
            assert!(status.success(), "building the quick start failed");
            profile_dir
                .join("examples")
                .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

fn run(envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(quickstart());
    for var in [
        "PLATOS_BASE_URL",
        "PLATOS_SESSION_TOKEN",
        "PLATOS_API_KEY",
        "PLATOS_ORGANIZATION_ID",
        "PLATOS_PROJECT_ID",
        "PLATOS_ENVIRONMENT_ID",
        "PLATOS_USER_ID",
        "PLATOS_AGENT_ID",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run the quick start")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How the run's credential may rate the answer.
#[derive(Clone, Copy)]
enum Caller {
    /// An end user's session token: rates it.
    EndUser,
    /// An api key (an operator): refused by the server, said in one line.
    Operator,
}

/// Checks a successful run's transcript.
fn assert_full_turn(out: &Output, caller: Caller) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rating_line = match caller {
        Caller::EndUser => "[answer rated: up]",
        Caller::Operator => "[not rated: ratings are for end users]",
    };
    assert!(stdout.contains(rating_line), "{stdout}");
    assert!(stdout.contains("thread: "), "{stdout}");
    assert!(
        stdout.contains("[approval needed: send_email] approving"),
        "{stdout}"
    );
    // The streamed answer arrives token by token and is printed whole.
    assert!(
        stdout.contains("Here is what I found about \"Summarise today's inbox"),
        "{stdout}"
    );
    let cost_line = stdout
        .lines()
        .find(|l| l.starts_with("turn cost: "))
        .unwrap_or_else(|| panic!("no cost line in:\n{stdout}"));
    let cents: f64 = cost_line["turn cost: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unparsable cost line {cost_line:?}"));
    assert!(cents > 0.0, "{cost_line}");
    assert!(cost_line.contains("input +") && cost_line.contains("output tokens"));
}

/// A failed run prints exactly one line and no panic or backtrace.
fn assert_one_line_error(out: &Output, expected: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("quickstart: "), "{stderr}");
    assert!(lines[0].contains(expected), "want {expected:?} in {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
}

#[test]
fn runs_against_the_embedded_server_by_default() {
    let out = run(&[]);
    assert!(
        text(&out.stdout).contains("no PLATOS_BASE_URL: using the embedded server"),
        "{}",
        text(&out.stdout)
    );
    assert_full_turn(&out, Caller::EndUser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_a_configured_server_in_both_auth_modes() {
    let server = TestServer::start().await.expect("server starts");
    let url = server.base_url();
    let token = server.session_token();
    let scope = server.scope().clone();

    let session = run(&[
        ("PLATOS_BASE_URL", &url),
        ("PLATOS_AGENT_ID", SEED_AGENT_SUPPORT),
        ("PLATOS_SESSION_TOKEN", &token),
    ]);
    assert!(!text(&session.stdout).contains("embedded server"));
    assert_full_turn(&session, Caller::EndUser);

    let direct = run(&[
        ("PLATOS_BASE_URL", &url),
        ("PLATOS_API_KEY", server.api_key()),
        ("PLATOS_ORGANIZATION_ID", &scope.organization_id),
        ("PLATOS_PROJECT_ID", &scope.project_id),
        ("PLATOS_ENVIRONMENT_ID", &scope.environment_id),
        ("PLATOS_USER_ID", server.user_id()),
        ("PLATOS_AGENT_ID", SEED_AGENT_SUPPORT),
    ]);
    assert_full_turn(&direct, Caller::Operator);

    // Both runs asked the server to rate (the operator's was refused, above).
    let ratings = server
        .recorder()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/rating"))
        .count();
    assert_eq!(ratings, 2);

    // Both runs really reached this server: two threads were created.
    let creates = server
        .recorder()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/agent/threads")
        .count();
    assert_eq!(creates, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_mistakes_print_one_clear_line() {
    let server = TestServer::start().await.expect("server starts");
    let url = server.base_url();

    let refused = run(&[
        ("PLATOS_BASE_URL", &url),
        ("PLATOS_AGENT_ID", SEED_AGENT_SUPPORT),
        ("PLATOS_SESSION_TOKEN", "not.a.token"),
    ]);
    assert_one_line_error(&refused, "authentication failed (401)");

    let bad_url = run(&[
        ("PLATOS_BASE_URL", "platos.example.com"),
        ("PLATOS_SESSION_TOKEN", "t"),
    ]);
    assert_one_line_error(&bad_url, "is not a URL");

    let no_credential = run(&[("PLATOS_BASE_URL", &url)]);
    assert_one_line_error(&no_credential, "also set PLATOS_SESSION_TOKEN");

    let no_agent = run(&[("PLATOS_BASE_URL", &url), ("PLATOS_SESSION_TOKEN", "t")]);
    assert_one_line_error(&no_agent, "also set PLATOS_AGENT_ID");

    let partial_scope = run(&[
        ("PLATOS_BASE_URL", &url),
        ("PLATOS_API_KEY", "k"),
        ("PLATOS_ORGANIZATION_ID", "org"),
    ]);
    assert_one_line_error(&partial_scope, "PLATOS_PROJECT_ID");
}

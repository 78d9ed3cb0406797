//! On a terminal (a pseudo-terminal from util-linux `script`): the spinner
//! until a turn's first event, `NO_COLOR`, and a credential typed without
//! echo.

use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

use crate::support::{on_terminal, platos, run, temp_dir};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn server_env(server: &TestServer, no_color: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PLATOS_BASE_URL", server.base_url()),
        ("PLATOS_SESSION_TOKEN", server.session_token().to_string()),
        ("XDG_CONFIG_HOME", temp_dir().display().to_string()),
    ];
    if no_color {
        env.push(("NO_COLOR", "1".to_owned()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_on_a_terminal_spins_until_its_first_event_unless_no_color() {
    let server = TestServer::start().await.expect("server");
    for (no_color, spins) in [(false, true), (true, false)] {
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
        let (code, shown) = on_terminal(
            &server_env(&server, no_color),
            &["chat", "--thread", &thread, "--yes"],
            &[("> ", "hello there")],
            "[cost: ",
        )
        .await;
        assert_eq!(code, Some(0), "{shown}");
        assert!(shown.contains("Here is what I found"), "{shown}");
        assert_eq!(
            shown.contains(FRAMES),
            spins,
            "NO_COLOR={no_color}: {shown:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_typed_on_a_terminal_is_not_echoed() {
    let server = TestServer::start().await.expect("server");
    let env = server_env(&server, false);
    let config = std::path::PathBuf::from(&env[2].1).join("platos/config.toml");
    let (code, shown) = on_terminal(
        &env,
        &["auth", "login", "--base-url", &server.base_url()],
        &[("(not shown as you type): ", "typed-secret-4711")],
        "saved profile",
    )
    .await;
    assert_eq!(code, Some(0), "{shown}");
    assert!(!shown.contains("typed-secret-4711"), "echoed: {shown}");
    let saved = std::fs::read_to_string(&config).expect("config written");
    assert!(saved.contains("typed-secret-4711"), "{saved}");
}

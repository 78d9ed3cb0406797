//! `platos auth login` and the profile file, `platos token mint`, `completions`.

use platos_test_server::TestServer;

use crate::support::{bare, platos, run, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_writes_a_private_profile_that_later_commands_use() {
    let server = TestServer::start().await.expect("server");
    let config = temp_dir();
    let token = server.session_token();
    let mut login = bare(&[
        "auth",
        "login",
        "--profile",
        "work",
        "--base-url",
        &server.base_url(),
    ]);
    login.env("XDG_CONFIG_HOME", &config);
    let out = run(login, &format!("{token}\n")).await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        !out.stdout.contains(&token) && !out.stderr.contains(&token),
        "{out:?}"
    );

    let file = config.join("platos/config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let mut list = bare(&["threads", "list", "--profile", "work", "--json"]);
    list.env("XDG_CONFIG_HOME", &config);
    assert!(run(list, "").await.json()["threads"].is_array());

    // The environment wins over the profile; a flag wins over both.
    let mut env_wins = bare(&["threads", "list", "--profile", "work"]);
    env_wins
        .env("XDG_CONFIG_HOME", &config)
        .env("PLATOS_SESSION_TOKEN", "not-a-token");
    assert!(run(env_wins, "").await.failed(1).contains("401"));
    let mut flag_wins = bare(&[
        "threads",
        "list",
        "--profile",
        "work",
        "--base-url",
        "http://127.0.0.1:9",
    ]);
    flag_wins.env("XDG_CONFIG_HOME", &config);
    run(flag_wins, "").await.failed(3);

    let mut unknown = bare(&["threads", "list", "--profile", "home"]);
    unknown.env("XDG_CONFIG_HOME", &config);
    assert!(
        run(unknown, "")
            .await
            .failed(2)
            .contains("no profile `home`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_is_an_end_users_credential() {
    let server = TestServer::start().await.expect("server");
    let scope = server.scope();
    let mut mint = bare(&["token", "mint", "--user", "user_minted"]);
    mint.env("PLATOS_ENTITY_SECRET", server.secret())
        .env("PLATOS_ENTITY_ID", server.entity_id())
        .env("PLATOS_ORGANIZATION_ID", &scope.organization_id)
        .env("PLATOS_PROJECT_ID", &scope.project_id)
        .env("PLATOS_ENVIRONMENT_ID", &scope.environment_id);
    let out = run(mint, "").await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    let token = out.stdout.trim().to_owned();
    let mut create = platos(&server, &["threads", "create", "agent_support", "--json"]);
    create.env("PLATOS_SESSION_TOKEN", &token);
    assert_eq!(run(create, "").await.json()["userId"], "user_minted");

    let out = run(bare(&["token", "mint"]), "").await;
    assert!(out.failed(2).contains("PLATOS_ENTITY_SECRET"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(bare(&["completions", shell]), "").await;
        assert_eq!(out.code(), Some(0), "{shell}: {out:?}");
        assert!(
            out.stdout.contains("platos") && out.stdout.contains("threads"),
            "{shell}"
        );
    }
    run(bare(&["completions", "tcsh"]), "").await.failed(2);
}

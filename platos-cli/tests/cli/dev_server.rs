//! `platos dev-server`, then the commands a new user runs against it with
//! the settings it printed.

use crate::support::{bare, finish, interrupt, line_containing, run, stdout_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_starts_a_dev_server_and_chats() {
    let mut server = bare(&["dev-server", "--port", "0"]).spawn().expect("spawn");
    let mut stdout = stdout_lines(&mut server);
    let mut settings = Vec::new();
    for name in [
        "PLATOS_BASE_URL",
        "PLATOS_SESSION_TOKEN",
        "PLATOS_AGENT_ID",
        "PLATOS_OPERATOR_TOKEN",
    ] {
        let line = line_containing(&mut stdout, &format!("export {name}=")).await;
        let value = line
            .split_once('=')
            .map(|(_, v)| v.trim_matches('\''))
            .expect("NAME=value")
            .to_owned();
        settings.push((name, value));
    }
    let with_settings = |args: &[&str]| {
        let mut cmd = bare(args);
        for (name, value) in &settings {
            cmd.env(name, value);
        }
        cmd
    };
    let agent = settings[2].1.clone();
    let thread = run(with_settings(&["threads", "create", &agent, "--json"]), "")
        .await
        .json();
    let thread = thread["id"].as_str().expect("id").to_owned();
    let chat = run(
        with_settings(&["chat", "--thread", &thread, "--yes"]),
        "what is new? approval needed\n",
    )
    .await;
    assert_eq!(chat.code(), Some(0), "{chat:?}");
    assert!(chat.stdout.contains("Here is what I found"), "{chat:?}");
    assert!(chat.stderr.contains("approved"), "{chat:?}");
    // The operator credential it printed works on the operator routes.
    let agents = run(
        with_settings(&["--operator", "agents", "list", "--json"]),
        "",
    )
    .await
    .json();
    assert!(agents.to_string().contains(&agent));

    interrupt(&server);
    let out = finish(server).await;
    assert_eq!(
        out.code(),
        Some(0),
        "Ctrl-C stops the dev server cleanly: {out:?}"
    );
}

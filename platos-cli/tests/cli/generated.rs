//! The generated commands: one per namespace of both specs, `--all` paging,
//! `--body`, and `--help` naming every namespace.

use platos_test_server::{
    SEED_AGENT_SUPPORT, SEED_APPROVAL_PENDING, SEED_JOB_ID, SEED_THREAD, TestServer,
};

use crate::support::{platos, run, spec_namespaces};

/// One command per namespace: (namespace, args, something the answer must hold).
const AGENT_CALLS: &[(&str, &[&str], &str)] = &[
    (
        "agents",
        &["--operator", "agents", "get", SEED_AGENT_SUPPORT],
        "Support Agent",
    ),
    (
        "threads",
        &["threads", "get", SEED_THREAD],
        SEED_AGENT_SUPPORT,
    ),
    (
        "approvals",
        &["--operator", "approvals", "get", SEED_APPROVAL_PENDING],
        "refund_order",
    ),
    (
        "budgets",
        &["--operator", "budgets", "list"],
        "cap_scope_day",
    ),
    (
        "monitoring",
        &["--operator", "monitoring", "traces", SEED_THREAD],
        SEED_THREAD,
    ),
    ("bgo", &["bgo", "tasks", "list"], "tasks"),
    ("bgo tasks", &["bgo", "tasks", "list"], "tasks"),
    ("bgo runs", &["bgo", "runs", "list"], "runs"),
    ("bgo schedules", &["bgo", "schedules", "list"], "schedules"),
    ("bgo batches", &["bgo", "batches", "get", "batch_none"], ""),
    ("tools", &["tools", "list"], "lookup"),
    (
        "attachments",
        &[
            "attachments",
            "presign",
            SEED_AGENT_SUPPORT,
            SEED_THREAD,
            "text/plain",
            "5",
        ],
        "uploadUrl",
    ),
    ("memory", &["memory", "create", "likes tea"], "likes tea"),
    // The seeded agents are not public: the server's 404 (below).
    ("tokens", &["tokens", "guest", SEED_AGENT_SUPPORT], ""),
    (
        "jobs",
        &["--operator", "jobs", "get", SEED_JOB_ID],
        SEED_JOB_ID,
    ),
];

const V1_CALLS: &[(&str, &[&str], &str)] = &[
    (
        "provider-keys",
        &[
            "v1",
            "provider-keys",
            "rotate-secret",
            platos_test_server::SEED_PROVIDER_KEY,
            "env_test",
            "sk-new",
        ],
        "data",
    ),
    (
        "bff-magic-link",
        &["v1", "bff-magic-link", "start", "op@example.test"],
        "expiresAt",
    ),
    ("bff-session", &["v1", "bff-session", "sign-out"], ""),
    (
        "environment-end-users",
        &["v1", "environment-end-users", "list", "env_test"],
        "eu_1",
    ),
    (
        "environment-variables",
        &["v1", "environment-variables", "list", "env_test"],
        "LOG_LEVEL",
    ),
    (
        "environment-scope",
        &[
            "v1",
            "environment-scope",
            "resolve",
            "production",
            "test-org",
            "test-project",
        ],
        "env_test",
    ),
    (
        "identity-session",
        &["v1", "identity-session", "get"],
        "sessionId",
    ),
    (
        "invitations",
        &["v1", "invitations", "issue", "org_test", "new@example.test"],
        "invitationId",
    ),
    (
        "organizations",
        &["v1", "organizations", "list"],
        "test-org",
    ),
    (
        "organization-members",
        &["v1", "organization-members", "list", "org_test"],
        "mem_user_admin",
    ),
    ("projects", &["v1", "projects", "list"], "test-project"),
    (
        "mcp-entity-tokens",
        &["v1", "mcp-entity-tokens", "list", "ent_crm", "env_test"],
        "data",
    ),
    (
        "mcp-organization-policies",
        &["v1", "mcp-organization-policies", "list", "env_test"],
        "shell.*",
    ),
    (
        "mcp-platform-tokens",
        &["v1", "mcp-platform-tokens", "list", "env_test"],
        "data",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_working_generated_command() {
    let server = TestServer::start().await.expect("server");
    // `messages` needs a message id: the seeded thread's assistant message.
    let messages = run(
        platos(&server, &["threads", "messages", SEED_THREAD, "--json"]),
        "",
    )
    .await
    .json();
    let assistant = messages["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "assistant")
        .and_then(|m| m["id"].as_str())
        .expect("an assistant message")
        .to_owned();
    let rating = ["messages", "rating", assistant.as_str()];
    let mut calls: Vec<(&str, Vec<&str>, &str)> = AGENT_CALLS
        .iter()
        .chain(V1_CALLS)
        .map(|(ns, args, want)| (*ns, args.to_vec(), *want))
        .collect();
    calls.push(("messages", rating.to_vec(), "aggregate"));

    for (namespace, args, want) in &calls {
        let mut with_json = args.clone();
        with_json.push("--json");
        let out = run(platos(&server, &with_json), "").await;
        if *namespace == "bgo batches" || *namespace == "tokens" {
            // An unknown batch, an agent that is not public: the server's
            // 404, as exit 1 with one line.
            assert!(out.failed(1).contains("404"), "{out:?}");
            continue;
        }
        let answer = out.json();
        assert!(
            answer.to_string().contains(want),
            "{namespace}: {want:?} not in {answer}"
        );
    }
    // The table covers every namespace of both specs.
    for ns in spec_namespaces("openapi.yaml")
        .iter()
        .chain(&spec_namespaces("v1.yaml"))
    {
        let ns = ns.replace('.', " ");
        if ns == "environment-streams" {
            continue; // only a stream: `events tail` (tests/cli/events.rs)
        }
        assert!(
            calls.iter().any(|(n, _, _)| *n == ns),
            "no call for namespace {ns}"
        );
    }
    // `security: []` in the spec: the guest-token mint goes without credentials.
    let guest = server.recorder().requests_to("/guest-token");
    assert!(
        !guest.is_empty()
            && guest.iter().all(|r| {
                r.header("authorization").is_none() && r.header("x-platos-session-token").is_none()
            }),
        "{guest:?}"
    );
    // Each went through the SDK's transport: V1 writes carry an idempotency key.
    let invite = server.recorder().requests_to("/invitations");
    assert!(
        invite.iter().all(|r| r.header("idempotency-key").is_some()),
        "{invite:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_print_a_table_and_all_follows_pages() {
    let server = TestServer::start().await.expect("server");
    for _ in 0..2 {
        run(
            platos(&server, &["threads", "create", SEED_AGENT_SUPPORT]),
            "",
        )
        .await
        .json();
    }
    let table = run(platos(&server, &["threads", "list"]), "").await;
    assert_eq!(table.code(), Some(0), "{table:?}");
    let mut lines = table.stdout.lines();
    assert!(
        lines.next().expect("header").starts_with("id "),
        "{table:?}"
    );
    assert_eq!(lines.count(), 3, "{table:?}");

    server.recorder().clear();
    let all = run(
        platos(
            &server,
            &["threads", "list", "--limit", "1", "--all", "--json"],
        ),
        "",
    )
    .await
    .json();
    assert_eq!(all["threads"].as_array().map(Vec::len), Some(3), "{all}");
    let offsets: Vec<String> = server
        .recorder()
        .requests_to("/threads")
        .iter()
        .filter_map(|r| {
            r.query_pairs()
                .into_iter()
                .find(|(k, _)| k == "offset")
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(offsets, ["0", "1", "2"]);

    // Cursor paging (V1): every page through `page.nextCursor`.
    let users = run(
        platos(
            &server,
            &[
                "v1",
                "environment-end-users",
                "list",
                "env_test",
                "--limit",
                "2",
                "--all",
                "--json",
            ],
        ),
        "",
    )
    .await
    .json();
    assert_eq!(users["data"].as_array().map(Vec::len), Some(5), "{users}");
    let cursors: Vec<Option<String>> = server
        .recorder()
        .requests_to("/end-users")
        .iter()
        .map(|r| {
            r.query_pairs()
                .into_iter()
                .find(|(k, _)| k == "cursor")
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(cursors.len(), 3, "{cursors:?}");
    assert!(cursors[0].is_none() && cursors[1].is_some() && cursors[2].is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_come_from_flags_files_and_stdin() {
    let server = TestServer::start().await.expect("server");
    let file = crate::support::temp_dir().join("thread.json");
    std::fs::write(
        &file,
        r#"{"agentId": "agent_support", "title": "from a file"}"#,
    )
    .expect("write");
    let arg = format!("@{}", file.display());
    let from_file = run(
        platos(&server, &["threads", "create", "--body", &arg, "--json"]),
        "",
    )
    .await
    .json();
    assert_eq!(from_file["title"], "from a file");

    let from_stdin = run(
        platos(
            &server,
            &[
                "threads",
                "create",
                "--body",
                "-",
                "--title",
                "flag wins",
                "--json",
            ],
        ),
        r#"{"agentId": "agent_support", "title": "stdin"}"#,
    )
    .await
    .json();
    assert_eq!(from_stdin["title"], "flag wins");
    assert_eq!(from_stdin["agentId"], SEED_AGENT_SUPPORT);

    let missing = run(platos(&server, &["threads", "create", "--body", "{}"]), "").await;
    assert!(missing.failed(2).contains("agentId"), "{missing:?}");
    let bad = run(
        platos(&server, &["threads", "create", "--body", "{not json"]),
        "",
    )
    .await;
    assert!(bad.failed(2).contains("--body"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_namespace_of_both_specs() {
    let server = TestServer::start().await.expect("server");
    let help = run(platos(&server, &["--help"]), "").await;
    assert_eq!(help.code(), Some(0));
    let v1_help = run(platos(&server, &["v1", "--help"]), "").await;
    assert_eq!(v1_help.code(), Some(0));
    let listed = |text: &str, name: &str| {
        text.lines()
            .any(|l| l.trim_start().starts_with(&format!("{name} ")))
    };
    for ns in spec_namespaces("openapi.yaml") {
        let top = ns.split('.').next().unwrap_or(&ns);
        assert!(
            listed(&help.stdout, top),
            "{top} not in --help:\n{}",
            help.stdout
        );
    }
    for ns in spec_namespaces("v1.yaml") {
        assert!(
            listed(&v1_help.stdout, &ns),
            "{ns} not in v1 --help:\n{}",
            v1_help.stdout
        );
    }
    assert!(
        help.stdout.contains("Exit codes: 0 ok, 1"),
        "{}",
        help.stdout
    );
}

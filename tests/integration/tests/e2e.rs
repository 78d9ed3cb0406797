//! End to end against the Platos-compatible server, every layer real:
//! mint → list → create → stream → approve → messages → trace/cost, then
//! the other namespaces, auth rules, scope isolation and a retried outage.

use std::time::Duration;

use futures::StreamExt;
use platos_client::mint::{MintOptions, mint_session_token};
use platos_client::types::{CreateJobRequest, UpdateJobRequest};
use platos_client::{Error, Event, PlatosClient, Rating, RetryConfig, Scope, ToolStatus};
use platos_test_server::{RestFault, SEED_AGENT_SUPPORT, TestServer};
use serde_json::json;

fn user_client(server: &TestServer) -> PlatosClient {
    let scope = server.scope();
    let token = mint_session_token(
        &MintOptions::new(server.secret(), server.entity_id())
            .scope(
                &scope.organization_id,
                &scope.project_id,
                &scope.environment_id,
            )
            .user_id(server.user_id()),
    )
    .expect("mint");
    PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(token)
        .build()
        .expect("client")
}

fn operator_client(server: &TestServer) -> PlatosClient {
    let scope = server.scope();
    PlatosClient::builder()
        .base_url(server.base_url())
        .api_key(server.api_key())
        .scope(
            Scope::new(
                &scope.organization_id,
                &scope.project_id,
                &scope.environment_id,
            )
            .with_user_id(server.user_id()),
        )
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_turn_with_an_approval_shows_up_in_messages_trace_and_cost() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let operator = operator_client(&server);

    // Agents are operator-only on the server.
    let agents = operator.agents().list().await.unwrap();
    assert!(agents.iter().any(|a| a.id == SEED_AGENT_SUPPORT));
    assert!(
        operator
            .agents()
            .get(SEED_AGENT_SUPPORT)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        operator
            .agents()
            .get("agent_missing")
            .await
            .unwrap()
            .is_none()
    );
    let versions = operator
        .agents()
        .list_versions(SEED_AGENT_SUPPORT)
        .await
        .unwrap();
    assert!(!versions.is_empty());

    let thread = client
        .threads()
        .create(SEED_AGENT_SUPPORT)
        .title("e2e")
        .await
        .unwrap();
    assert_eq!(thread.title.as_deref(), Some("e2e"));
    assert_eq!(
        client
            .threads()
            .get(&thread.id)
            .await
            .unwrap()
            .map(|t| t.id),
        Some(thread.id.clone())
    );

    let mut turn = client.threads().send(
        &thread.id,
        "Draft the reply and ask for approval [tokens=5]",
    );
    let (mut text, mut kinds, mut persisted, mut resolution) = (String::new(), vec![], None, None);
    while let Some(item) = turn.next().await {
        let event = item.expect("no stream errors");
        kinds.push(event.kind().to_owned());
        match event {
            Event::Token(t) => text.push_str(&t.text),
            Event::ApprovalNeeded(a) => {
                resolution = Some(
                    client
                        .approvals()
                        .resolve(
                            &a.approval_id,
                            platos_client::Decision::approve().with_comment("looks right"),
                        )
                        .await
                        .unwrap(),
                );
            }
            Event::MessagePersisted(m) => persisted = Some(m),
            Event::Done(_) => break,
            _ => {}
        }
    }
    assert_eq!(text, "w1 w2 w3 w4 w5 ");
    assert_eq!(resolution.and_then(|r| r.resolved), Some(true));
    for kind in [
        "connected",
        "approval_needed",
        "approval_resolved",
        "artifact_committed",
        "message_persisted",
        "done",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    let persisted = persisted.expect("message_persisted");
    let cost = persisted.cost_cents.expect("cost");
    assert!(cost > 0.0);

    // The turn is persisted: the user's message and the streamed answer.
    let messages = client.threads().messages(&thread.id).await.unwrap();
    let roles: Vec<_> = messages.iter().filter_map(|m| m.role.as_deref()).collect();
    assert_eq!(roles, ["user", "assistant"]);
    let answer = messages[1].content.as_deref().unwrap_or_default();
    assert_eq!(answer.trim_end(), text.trim_end());
    assert_eq!(messages[1].id, persisted.message_id);
    let artifacts = client.threads().artifacts(&thread.id).await.unwrap();
    assert_eq!(artifacts.len(), 1);

    // Operators see the approval, the trace and the cost of that turn.
    let approvals = operator
        .approvals()
        .list()
        .thread_id(&thread.id)
        .await
        .unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].status.as_deref(), Some("approved"));
    let trace = operator.monitoring().traces(&thread.id).await.unwrap();
    let rollup = trace.rollup.expect("rollup");
    assert_eq!(rollup.total_messages, Some(2));
    let traced = rollup.total_cost_cents.expect("trace cost");
    assert!((traced - cost).abs() < 1e-9, "{traced} vs {cost}");
    let rows = operator.monitoring().cost_by_agent().await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.agent_id.as_deref() == Some(SEED_AGENT_SUPPORT))
        .expect("a cost row for the agent");
    assert!(row.cost_cents.unwrap_or(0.0) >= cost);

    // End users may not read operator routes.
    let e = client.approvals().list().await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert_eq!(e.code(), Some("OPERATOR_ONLY"));

    // Archive, restore, delete.
    client.threads().archive(&thread.id).await.unwrap();
    client.threads().unarchive(&thread.id).await.unwrap();
    client.threads().delete(&thread.id).await.unwrap();
}

#[tokio::test]
async fn other_namespaces_work_against_the_server() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    // Budgets and jobs are operator-only on the server; bgo stays open to end users.
    let operator = operator_client(&server);

    let caps = operator.budgets().list().await.unwrap();
    assert!(!caps.is_empty());
    let status = operator
        .budgets()
        .status()
        .agent_id(SEED_AGENT_SUPPORT)
        .await
        .unwrap();
    assert_eq!(status.blocked, Some(false));

    let job = operator
        .jobs()
        .create(CreateJobRequest {
            job_id: "e2e-job".into(),
            display_name: "E2E".into(),
            handler: "export default async () => ({ ok: true })".into(),
            allowed_agent_ids: vec![],
            description: None,
            invocation_type: None,
            max_retries: None,
            payload_schema: Default::default(),
            schedule_cron: None,
            schedule_timezone: None,
            timeout: None,
        })
        .await
        .unwrap();
    assert_eq!(job.syntax_error, None);
    let job = job.job;
    assert_eq!(job.job_id.as_deref(), Some("e2e-job"));
    // Job routes address the internal `id`, not the `jobId` key.
    let id = job.id.clone();
    let mut payload = serde_json::Map::new();
    payload.insert("n".into(), json!(1));
    // Dispatched while active: an inactive job is "not found or inactive".
    let dispatched = operator.jobs().dispatch(&id, payload).await.unwrap();
    assert_eq!(dispatched.job_id.as_deref(), Some(id.as_str()));
    let dup = operator
        .jobs()
        .create(CreateJobRequest {
            job_id: "e2e-job".into(),
            display_name: "again".into(),
            handler: "x".into(),
            allowed_agent_ids: vec![],
            description: None,
            invocation_type: None,
            max_retries: None,
            payload_schema: Default::default(),
            schedule_cron: None,
            schedule_timezone: None,
            timeout: None,
        })
        .await
        .unwrap_err();
    assert_eq!(dup.status(), Some(409));
    let updated = operator
        .jobs()
        .update(
            &id,
            UpdateJobRequest {
                is_active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.job.is_active, Some(false));
    assert_eq!(
        operator.jobs().get(&id).await.unwrap().display_name,
        Some("E2E".into())
    );
    let listed = operator.jobs().list().into_stream().count().await;
    assert!(listed >= 2, "seeded job + ours: {listed}");
    operator.jobs().delete(&id).await.unwrap();
    assert!(matches!(
        operator.jobs().get(&id).await,
        Err(Error::NotFound(_))
    ));

    let tasks = client.bgo().tasks().list().await.unwrap();
    let task = tasks[0].id.clone().expect("task id");
    let run = client
        .bgo()
        .tasks()
        .trigger(&task, json!({"to": "a@example.com"}))
        .await
        .unwrap();
    let run_id = run.id.clone().expect("run id");
    let runs = client.bgo().runs().list().task_id(&task).await.unwrap();
    assert!(
        runs.iter()
            .any(|r| r.id.as_deref() == Some(run_id.as_str()))
    );
    let raw = client
        .bgo()
        .raw("GET", &format!("/trigger/runs/{run_id}"), None)
        .await
        .unwrap();
    assert_eq!(raw["id"], json!(run_id));
}

#[tokio::test]
async fn scopes_are_isolated() {
    let server = TestServer::start().await.unwrap();
    let client = operator_client(&server);
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();

    let elsewhere =
        client.with_scope(Scope::new("org_other", "proj_other", "env_other").with_user_id("u"));
    let theirs = elsewhere.threads().list().await.unwrap();
    assert!(theirs.iter().all(|t| t.id != thread.id));
    assert!(elsewhere.threads().get(&thread.id).await.unwrap().is_none());
    let ours = client.threads().list().await.unwrap();
    assert!(ours.iter().any(|t| t.id == thread.id));
}

#[tokio::test]
async fn a_brief_outage_is_retried_transparently() {
    let server = TestServer::start().await.unwrap();
    // An operator token: `/agents` is operator-only.
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(server.operator_token())
        .retry(
            RetryConfig::default().with_delays(Duration::from_millis(1), Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    server
        .faults()
        .fail_next_rest(RestFault::unavailable().times(2));
    let agents = client.agents().list().await.unwrap();
    assert!(!agents.is_empty());
    let tries = server.recorder().requests_to("/agents").len();
    assert_eq!(tries, 3, "two 503s, then the answer");

    // A create retried after a 503 carries the same idempotency key each time.
    server
        .faults()
        .fail_next_rest(RestFault::unavailable().times(1));
    client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    let creates = server.recorder().requests_to("/threads");
    assert_eq!(creates.len(), 2);
    let keys: Vec<_> = creates
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert!(keys[0].is_some());
    assert_eq!(keys[0], keys[1]);
}

/// The end user rates the answer of a streamed turn; the operator reads the
/// totals but may not rate; refusals that are about the caller ask no refresh.
#[tokio::test]
async fn ratings_follow_the_servers_rules() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    let mut turn = client.threads().send(&thread.id, "Hello");
    let mut message_id = None;
    while let Some(event) = turn.next().await {
        match event.unwrap() {
            Event::MessagePersisted(m) => message_id = Some(m.message_id),
            Event::Done(_) => break,
            _ => {}
        }
    }
    let message_id = message_id.expect("message_persisted");

    let record = client
        .messages()
        .rate(&message_id, Rating::Down)
        .comment("too long")
        .await
        .unwrap();
    assert_eq!(record.rating, Some(-1));
    assert_eq!(record.comment.as_deref(), Some("too long"));
    // Rating again overwrites the one row.
    let again = client
        .messages()
        .rate(&message_id, Rating::Up)
        .await
        .unwrap();
    assert_eq!(again.id, record.id);
    let rating = client
        .messages()
        .rating(&message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rating.user_rating.map(|r| r.rating), Some(Some(1)));
    let aggregate = rating.aggregate.unwrap();
    assert_eq!((aggregate.ups, aggregate.downs), (Some(1), Some(0)));

    // Operators (an api key here) are refused with a code, sent once.
    let operator = operator_client(&server);
    let before = server.recorder().requests().len();
    let e = operator
        .messages()
        .rate(&message_id, Rating::Up)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e:?}");
    assert_eq!(e.code(), Some("RATING_ACTOR_FORBIDDEN"));
    assert_eq!(server.recorder().requests().len(), before + 1);

    assert!(client.messages().unrate(&message_id).await.unwrap());
    assert!(!client.messages().unrate(&message_id).await.unwrap());
    assert!(
        client
            .messages()
            .rating("msg_unknown")
            .await
            .unwrap()
            .is_none()
    );
}

/// One turn over plain HTTP: the answer carries the text, the typed events
/// and the message id, and the turn is persisted like a streamed one.
#[tokio::test]
async fn a_one_shot_turn_answers_the_whole_turn() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);

    // Without a thread the agent opens one.
    let first = client
        .agents()
        .ask(SEED_AGENT_SUPPORT, "What is on today?")
        .model_label("fast")
        .await
        .unwrap();
    assert!(first.text.contains("What is on today?"), "{}", first.text);
    assert!(!first.thread_id.is_empty());
    let message_id = first.message_id.clone().expect("message id");
    assert!(first.cost_cents.unwrap() > 0.0);
    assert!(first.input_tokens.is_some() && first.output_tokens.is_some());
    let tokens: String = first
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Token(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, first.text);
    assert!(matches!(first.events.last(), Some(Event::Done(_))));

    // The same thread continues over threads().ask.
    let second = client
        .threads()
        .ask(&first.thread_id, "And tomorrow?")
        .await
        .unwrap();
    assert_eq!(second.thread_id, first.thread_id);
    assert_ne!(second.message_id.as_deref(), Some(message_id.as_str()));
    let messages = client.threads().messages(&first.thread_id).await.unwrap();
    assert_eq!(messages.len(), 4, "two user and two assistant messages");

    // The persisted answer can be rated.
    client
        .messages()
        .rate(&message_id, Rating::Up)
        .await
        .unwrap();

    let e = client
        .threads()
        .ask(&first.thread_id, "")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation(_)), "{e:?}");
}

/// The tool registry is readable in scope; enabling and testing are
/// operators' (an end user gets OPERATOR_ONLY at once).
#[tokio::test]
async fn tools_are_listed_searched_toggled_and_tested() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let operator = operator_client(&server);

    let all = client.tools().list().await.unwrap();
    assert!(all.len() >= 5, "{all:?}");
    let search = client.tools().list().category("search").await.unwrap();
    assert!(!search.is_empty() && search.len() < all.len());
    let found = client.tools().search("weather").limit(3).await.unwrap();
    assert_eq!(
        found.first().and_then(|t| t.name.as_deref()),
        Some("get_weather")
    );
    let stats = client.tools().stats().await.unwrap().expect("stats");
    assert_eq!(stats.total_tools, Some(all.len() as i64));

    let page = operator.tools().matrix().limit(2).await.unwrap();
    let aggregates = page.aggregates.clone().unwrap();
    let rows: Vec<_> = operator
        .tools()
        .matrix()
        .limit(2)
        .into_stream()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows.len() as i64,
        page.total.unwrap(),
        "every row, two a page"
    );
    let disabled_before = aggregates.disabled.unwrap();

    let row = rows
        .iter()
        .find(|r| r.enabled == Some(true) && r.dispatchable == Some(true))
        .expect("a dispatchable mapping");
    let (entity, tool) = (
        row.entity_id.clone().unwrap(),
        row.tool_name.clone().unwrap(),
    );

    let e = client
        .tools()
        .set_enabled(&entity, &tool, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("OPERATOR_ONLY"));
    let done = operator
        .tools()
        .set_enabled(&entity, &tool, false)
        .await
        .unwrap();
    assert_eq!(done.enabled, Some(false));
    let disabled = operator
        .tools()
        .matrix()
        .status(ToolStatus::Disabled)
        .await
        .unwrap();
    assert_eq!(
        disabled.aggregates.unwrap().disabled,
        Some(disabled_before + 1)
    );
    assert!(disabled.rows.iter().all(|r| r.enabled == Some(false)));

    let mut params = serde_json::Map::new();
    params.insert("q".into(), json!("x"));
    let tested = operator
        .tools()
        .test(row.tool_id.clone().unwrap(), params.clone())
        .await
        .unwrap();
    assert!(matches!(tested.status, Some(200 | 502)), "{tested:?}");
    let executed = operator
        .tools()
        .execute("lookup")
        .params(params)
        .await
        .unwrap();
    assert_eq!(executed.ok, Some(true), "{executed:?}");
}

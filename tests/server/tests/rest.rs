//! REST routes with plain reqwest: shapes, auth, isolation, idempotency, faults.

mod common;

use std::time::Duration;

use common::{Eio, call, http, token_headers};
use platos_test_server::{RestFault, Scope, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

fn direct(scope: &Scope, user: Option<&str>, key: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("authorization".into(), format!("Bearer {key}")),
        (
            "x-platos-organization-id".into(),
            scope.organization_id.clone(),
        ),
        ("x-platos-project-id".into(), scope.project_id.clone()),
        (
            "x-platos-environment-id".into(),
            scope.environment_id.clone(),
        ),
    ];
    if let Some(u) = user {
        h.push(("x-platos-user-id".into(), u.into()));
    }
    h
}

#[tokio::test]
async fn agents_list_envelope_pagination_and_errors() {
    let s = TestServer::start().await.expect("server");
    let h = token_headers(&s.operator_token());
    let b = s.base_url();
    let (st, _, v) = call(&b, Method::GET, "/agents", &h, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["agents"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["items"], v["agents"]);
    assert_eq!(
        (v["total"].clone(), v["hasMore"].clone()),
        (json!(2), json!(false))
    );

    let (_, _, v) = call(&b, Method::GET, "/agents?limit=1&offset=1", &h, None).await;
    assert_eq!(v["agents"][0]["id"], "agent_research");
    assert_eq!(
        (
            v["limit"].clone(),
            v["offset"].clone(),
            v["hasMore"].clone()
        ),
        (json!(1), json!(1), json!(false))
    );
    let p = &v["pagination"];
    assert_eq!(
        (
            p["page"].clone(),
            p["totalPages"].clone(),
            p["from"].clone(),
            p["to"].clone()
        ),
        (json!(2), json!(2), json!(2), json!(2))
    );
    assert_eq!(
        (p["hasPrevious"].clone(), p["isLastPage"].clone()),
        (json!(true), json!(true))
    );
    let (_, _, v) = call(&b, Method::GET, "/agents?page=1&limit=1", &h, None).await;
    assert_eq!(
        (v["agents"][0]["id"].clone(), v["hasMore"].clone()),
        (json!("agent_support"), json!(true))
    );
    let (_, _, v) = call(&b, Method::GET, "/agents?status=paused", &h, None).await;
    assert_eq!(v["agents"].as_array().map(Vec::len), Some(1));

    let (st, _, v) = call(&b, Method::GET, "/agents?limit=abc", &h, None).await;
    assert_eq!((st, v["code"].clone()), (400, json!("INVALID_PAGINATION")));
    let (st, _, v) = call(&b, Method::GET, "/agents/nope", &h, None).await;
    assert_eq!(
        (st, v),
        (404, json!({"error": "Agent not found", "agentId": "nope"}))
    );
    let (st, _, v) = call(&b, Method::GET, "/agents/agent_support/versions", &h, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["versions"][0]["versionNumber"], 2);
    assert_eq!(v["versions"][0]["isCurrent"], true);
}

#[tokio::test]
async fn threads_crud_and_soft_delete() {
    let s = TestServer::start().await.expect("server");
    let h = token_headers(&s.session_token());
    let b = s.base_url();
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"title": null})),
    )
    .await;
    assert_eq!(
        (st, v["message"].clone(), v["statusCode"].clone()),
        (400, json!("agentId is required"), json!(400))
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "ghost", "title": null})),
    )
    .await;
    assert_eq!((st, v["error"].clone()), (404, json!("Agent not found")));
    let (st, _, t) = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "agent_support", "title": "T"})),
    )
    .await;
    assert_eq!(st, 201);
    for f in [
        "id",
        "agentId",
        "organizationId",
        "projectId",
        "environmentId",
        "userId",
        "status",
        "turnCount",
        "tags",
        "createdAt",
        "updatedAt",
    ] {
        assert!(!t[f].is_null(), "missing {f}");
    }
    assert!(t["archivedAt"].is_null() && t["pinnedAt"].is_null() && t["parentThreadId"].is_null());
    let id = t["id"].as_str().expect("id").to_string();
    let (st, _, g) = call(&b, Method::GET, &format!("/threads/{id}"), &h, None).await;
    assert_eq!((st, g["title"].clone()), (200, json!("T")));
    let (_, _, l) = call(
        &b,
        Method::GET,
        "/threads?agentId=agent_support&limit=1",
        &h,
        None,
    )
    .await;
    assert_eq!(l["threads"][0]["id"], id.as_str());
    assert_eq!(l["total"], 2); // plus the seeded thread

    let (st, _, _) = call(
        &b,
        Method::POST,
        &format!("/threads/{id}/archive"),
        &h,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (_, _, l) = call(&b, Method::GET, "/threads", &h, None).await;
    assert_eq!(l["total"], 1);
    let (_, _, l) = call(&b, Method::GET, "/threads?archived=only", &h, None).await;
    assert_eq!(l["threads"][0]["id"], id.as_str());
    call(
        &b,
        Method::POST,
        &format!("/threads/{id}/unarchive"),
        &h,
        None,
    )
    .await;
    let (_, _, g) = call(&b, Method::GET, &format!("/threads/{id}"), &h, None).await;
    assert_eq!(
        (g["status"].clone(), g["archivedAt"].clone()),
        (json!("active"), Value::Null)
    );
    let (st, _, d) = call(&b, Method::DELETE, &format!("/threads/{id}"), &h, None).await;
    assert_eq!((st, d["archived"].clone()), (200, json!(true)));
    assert!(d["archivedAt"].is_string());

    let (st, _, v) = call(&b, Method::GET, "/threads/a%2Fb%20c", &h, None).await;
    assert_eq!(
        (st, v),
        (
            404,
            json!({"statusCode": 404, "message": "Thread not found", "error": "Not Found"})
        )
    );
    assert_eq!(s.recorder().requests_to("/threads/a%2Fb%20c").len(), 1);
    let (_, _, m) = call(
        &b,
        Method::GET,
        "/threads/thr_seed/messages?limit=1&offset=1",
        &h,
        None,
    )
    .await;
    assert_eq!(
        (m["messages"][0]["role"].clone(), m["total"].clone()),
        (json!("assistant"), json!(2))
    );
}

#[tokio::test]
async fn auth_refusals() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let unauthorized = json!({"statusCode": 401, "message": "Unauthorized"});
    let (st, _, v) = call(&b, Method::GET, "/threads", &[], None).await;
    assert_eq!((st, &v), (401, &unauthorized));
    let bad_sig = platos_test_server::mint_token("some-other-secret-xyz", &s.token_spec("u"));
    let expired = s.mint(&s.token_spec("u").times(-7200, -1));
    let future = s.mint(&s.token_spec("u").times(120, 3600));
    let wrong_entity = s.mint(&platos_test_server::TokenSpec::new(
        s.scope().clone(),
        "u",
        "ent_other",
    ));
    for t in [bad_sig, expired, future, wrong_entity, "garbage".into()] {
        let (st, _, v) = call(&b, Method::GET, "/threads", &token_headers(&t), None).await;
        assert_eq!((st, &v), (401, &unauthorized), "token {t}");
    }
    // A little clock skew is fine.
    let skewed = s.mint(&s.token_spec("u").times(30, 3600));
    assert_eq!(
        call(&b, Method::GET, "/threads", &token_headers(&skewed), None)
            .await
            .0,
        200
    );

    let (st, _, _) = call(
        &b,
        Method::GET,
        "/threads",
        &direct(s.scope(), None, "wrong"),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let only_key = vec![(
        "authorization".to_string(),
        format!("Bearer {}", s.api_key()),
    )];
    assert_eq!(
        call(&b, Method::GET, "/threads", &only_key, None).await.0,
        400
    );
    assert_eq!(
        call(&b, Method::GET, "/threads", &s.direct_headers(), None)
            .await
            .0,
        200
    );

    // Operator-only reads: an end user is refused, an operator token and an api key pass.
    let user = token_headers(&s.session_token());
    for path in [
        "/agents",
        "/agents/agent_support",
        "/agents/agent_support/versions",
        "/budgets",
        "/budgets/status",
        "/monitoring/runs",
        "/monitoring/approvals",
        "/monitoring/approvals/apr_seed_pending",
        "/monitoring/cost-by-agent",
        "/monitoring/cost",
        "/jobs",
        "/jobs/job_seed_1",
    ] {
        let (st, _, v) = call(&b, Method::GET, path, &user, None).await;
        assert_eq!(
            (st, v["error"].clone()),
            (403, json!("OPERATOR_ONLY")),
            "{path}"
        );
        assert_eq!(
            call(
                &b,
                Method::GET,
                path,
                &token_headers(&s.operator_token()),
                None
            )
            .await
            .0,
            200,
            "{path}"
        );
        assert_eq!(
            call(&b, Method::GET, path, &s.direct_headers(), None)
                .await
                .0,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn scope_isolation() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let other = Scope::new("org_b", "proj_b", "env_b");
    let hb = direct(&other, Some("ub"), s.api_key());
    // The other scope gets its own copy of the seed agents.
    let (st, _, t) = call(
        &b,
        Method::POST,
        "/threads",
        &hb,
        Some(json!({"agentId": "agent_support", "title": "b"})),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(t["organizationId"], "org_b");
    let id = t["id"].as_str().expect("id");
    let ha = s.direct_headers();
    assert_eq!(
        call(&b, Method::GET, &format!("/threads/{id}"), &ha, None)
            .await
            .0,
        404
    );
    let (_, _, l) = call(&b, Method::GET, "/threads", &ha, None).await;
    assert!(
        l["threads"]
            .as_array()
            .expect("list")
            .iter()
            .all(|t| t["id"] != id)
    );
    let (_, _, l) = call(&b, Method::GET, "/threads", &hb, None).await;
    assert_eq!(l["total"], 1);
    // Same scope, different end user: invisible too.
    let other_user = s.mint(&s.token_spec("someone_else"));
    assert_eq!(
        call(
            &b,
            Method::GET,
            "/threads/thr_seed",
            &token_headers(&other_user),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &b,
            Method::GET,
            "/threads/thr_seed",
            &token_headers(&s.session_token()),
            None
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn idempotency_replay_mismatch_and_malformed() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let mut h = token_headers(&s.session_token());
    h.push(("idempotency-key".into(), "key-1:a.b_c".into()));
    let body = json!({"agentId": "agent_support", "title": "once"});
    let (st1, h1, t1) = call(&b, Method::POST, "/threads", &h, Some(body.clone())).await;
    let (st2, h2, t2) = call(&b, Method::POST, "/threads", &h, Some(body)).await;
    assert_eq!((st1, st2), (201, 201));
    assert_eq!(t1["id"], t2["id"]);
    assert!(h1.get("idempotency-replayed").is_none());
    assert_eq!(
        h2.get("idempotency-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "agent_support", "title": "other"})),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (409, json!("IDEMPOTENCY_REQUEST_MISMATCH"))
    );
    let mut bad = token_headers(&s.session_token());
    bad.push(("idempotency-key".into(), "has space".into()));
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads",
        &bad,
        Some(json!({"agentId": "agent_support"})),
    )
    .await;
    assert_eq!(
        (
            st,
            v["error"]["code"].clone(),
            v["error"]["version"].clone()
        ),
        (400, json!("IDEMPOTENCY_KEY_MALFORMED"), json!("1"))
    );
    // No key: two calls, two threads.
    let h = token_headers(&s.session_token());
    let a = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "agent_support"})),
    )
    .await
    .2;
    let c = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "agent_support"})),
    )
    .await
    .2;
    assert_ne!(a["id"], c["id"]);
}

#[tokio::test]
async fn approvals_list_get_resolve() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let op = token_headers(&s.operator_token());
    let (st, _, v) = call(
        &b,
        Method::GET,
        "/monitoring/approvals?status=pending",
        &op,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["rows"][0]["id"], "apr_seed_pending");
    assert_eq!(v["items"], v["rows"]);
    assert_eq!(
        (v["total"].clone(), v["pendingCount"].clone()),
        (json!(1), json!(1))
    );
    let (_, _, v) = call(&b, Method::GET, "/monitoring/approvals", &op, None).await;
    assert_eq!(
        (v["total"].clone(), v["pendingCount"].clone()),
        (json!(2), json!(1))
    );
    let (st, _, a) = call(
        &b,
        Method::GET,
        "/monitoring/approvals/apr_seed_pending",
        &op,
        None,
    )
    .await;
    assert_eq!(
        (st, a["status"].clone(), a["approvalId"].clone()),
        (200, json!("pending"), json!("apr_seed_pending"))
    );
    let user = token_headers(&s.session_token());
    let path = "/approvals/apr_seed_pending/resolve";
    let (st, _, _) = call(
        &b,
        Method::POST,
        path,
        &user,
        Some(json!({"approved": true, "editedArgs": "nope"})),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _, v) = call(
        &b,
        Method::POST,
        path,
        &user,
        Some(json!({"approved": true, "editedArgs": {"amountCents": 10}})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"resolved": true, "approvalId": "apr_seed_pending", "approved": true, "editedArgsApplied": true})
        )
    );
    let (_, _, v) = call(
        &b,
        Method::POST,
        path,
        &user,
        Some(json!({"approved": false})),
    )
    .await;
    assert_eq!(
        v,
        json!({"resolved": true, "approvalId": "apr_seed_pending", "approved": true, "status": "approved", "persisted": true})
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/approvals/ghost/resolve",
        &user,
        Some(json!({"approved": true})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            404,
            json!({"error": "Approval not found in this scope", "approvalId": "ghost"})
        )
    );
    let (_, _, a) = call(
        &b,
        Method::GET,
        "/monitoring/approvals/apr_seed_pending",
        &op,
        None,
    )
    .await;
    assert_eq!(
        (
            a["status"].clone(),
            a["respondedBy"].clone(),
            a["editedArgs"].clone()
        ),
        (
            json!("approved"),
            json!("user_test"),
            json!({"amountCents": 10})
        )
    );
}

#[tokio::test]
async fn budgets_monitoring_and_cost() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let h = s.direct_headers();
    let (_, _, v) = call(&b, Method::GET, "/budgets", &h, None).await;
    assert_eq!(v["caps"].as_array().map(Vec::len), Some(2));
    assert!(v["caps"][0]["alertEmails"].is_string());
    let (_, _, v) = call(
        &b,
        Method::GET,
        "/budgets/status?agentId=agent_support",
        &h,
        None,
    )
    .await;
    assert_eq!(
        (v["caps"].as_array().map(Vec::len), v["blocked"].clone()),
        (Some(2), json!(false))
    );
    let (_, _, v) = call(&b, Method::GET, "/budgets/status", &h, None).await;
    assert_eq!(v["caps"].as_array().map(Vec::len), Some(1));
    let (_, _, t) = call(&b, Method::GET, "/monitoring/trace/thr_seed", &h, None).await;
    assert_eq!(t["spans"][0]["startTimeUnixNano"], "1768039200000000000");
    assert_eq!(t["rollup"]["totalMessages"], 2);
    assert_eq!(
        t["spanTree"][0]["children"].as_array().map(Vec::len),
        Some(1)
    );
    let (st, _, _) = call(&b, Method::GET, "/monitoring/trace/ghost", &h, None).await;
    assert_eq!(st, 404);
    let (_, _, c) = call(
        &b,
        Method::GET,
        "/monitoring/cost-by-agent?days=3650",
        &h,
        None,
    )
    .await;
    assert_eq!(c["rows"][0]["agentId"], "agent_support");
    assert!(c["fetchedAt"].is_string());
    assert_eq!(
        call(
            &b,
            Method::GET,
            "/monitoring/cost-by-agent?days=0",
            &h,
            None
        )
        .await
        .0,
        400
    );
    let (_, _, c) = call(
        &b,
        Method::GET,
        "/monitoring/cost?date=2026-01-10",
        &h,
        None,
    )
    .await;
    assert_eq!(
        (c["tasks"].clone(), c["costCents"].clone()),
        (json!(1), json!(0.0054))
    );
    assert_eq!(
        call(
            &b,
            Method::GET,
            "/monitoring/cost?date=10-01-2026",
            &h,
            None
        )
        .await
        .0,
        400
    );
    let (_, _, r) = call(
        &b,
        Method::GET,
        "/monitoring/runs?threadId=thr_seed",
        &h,
        None,
    )
    .await;
    assert_eq!(r["runs"][0]["status"], "completed");
}

#[tokio::test]
async fn jobs_crud_and_dispatch() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let h = s.direct_headers();
    let body =
        json!({"jobId": "reindex", "displayName": "Reindex", "handler": "export default () => 1"});
    let (st, _, v) = call(&b, Method::POST, "/jobs", &h, Some(body.clone())).await;
    assert_eq!(
        (
            st,
            v["job"]["jobId"].clone(),
            v["job"]["isActive"].clone(),
            v["syntaxError"].clone()
        ),
        (201, json!("reindex"), json!(true), Value::Null)
    );
    // Addressed by the internal id, not by the jobId key.
    let id = v["job"]["id"].as_str().expect("id").to_string();
    assert_ne!(id, "reindex");
    assert_eq!(
        call(&b, Method::GET, "/jobs/reindex", &h, None).await.0,
        404
    );
    let (st, _, v) = call(&b, Method::GET, &format!("/jobs/{id}"), &h, None).await;
    assert_eq!((st, v["job"]["jobId"].clone()), (200, json!("reindex")));

    let (st, _, v) = call(&b, Method::POST, "/jobs", &h, Some(body)).await;
    assert_eq!(
        (st, v["message"].clone()),
        (
            409,
            json!("A job with this jobId already exists in this scope")
        )
    );
    for (bad, message) in [
        (
            json!({"jobId": "Bad_Id", "displayName": "x", "handler": "x"}),
            "jobId must be 1-64 lowercase alphanumeric + hyphens",
        ),
        (
            json!({"jobId": "ok-id", "handler": "x"}),
            "displayName is required",
        ),
        (
            json!({"jobId": "ok-id", "displayName": "x", "handler": " "}),
            "handler source is required",
        ),
    ] {
        let (st, _, v) = call(&b, Method::POST, "/jobs", &h, Some(bad)).await;
        assert_eq!((st, v["message"].clone()), (400, json!(message)));
    }
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/jobs",
        &h,
        Some(json!({"jobId": "typed", "displayName": "x", "handler": "x", "timeout": "soon"})),
    )
    .await;
    assert_eq!(
        (st, v["validationErrors"].clone()),
        (400, json!(["timeout must be a non-negative integer"]))
    );

    // A handler that does not compile is stored, FAILED: inactive, with the error.
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/jobs",
        &h,
        Some(json!({"jobId": "broken", "displayName": "Broken", "handler": "export default () => {"})),
    )
    .await;
    assert_eq!(
        (st, v["syntaxError"].clone(), v["job"]["isActive"].clone()),
        (
            201,
            json!("SyntaxError: Unexpected end of input"),
            json!(false)
        )
    );
    let broken = v["job"]["id"].as_str().expect("id").to_string();
    let (_, _, v) = call(
        &b,
        Method::PATCH,
        &format!("/jobs/{broken}"),
        &h,
        Some(json!({"handler": "export default () => {}"})),
    )
    .await;
    assert_eq!(
        (
            v["syntaxError"].clone(),
            v["job"]["isActive"].clone(),
            v["job"]["handlerVersion"].clone()
        ),
        (Value::Null, json!(true), json!(2))
    );
    let (_, _, v) = call(
        &b,
        Method::PATCH,
        &format!("/jobs/{broken}"),
        &h,
        Some(json!({"handler": "export default () => 1)"})),
    )
    .await;
    assert_eq!(
        (v["syntaxError"].clone(), v["job"]["isActive"].clone()),
        (json!("SyntaxError: Unexpected token ')'"), json!(false))
    );

    let (_, _, v) = call(
        &b,
        Method::PATCH,
        &format!("/jobs/{id}"),
        &h,
        Some(json!({"isActive": false})),
    )
    .await;
    assert_eq!(
        (v["job"]["isActive"].clone(), v["syntaxError"].clone()),
        (json!(false), Value::Null)
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        &format!("/jobs/{id}/dispatch"),
        &h,
        Some(json!({"payload": {}})),
    )
    .await;
    assert_eq!(
        (st, v["message"].clone()),
        (404, json!("Job not found or inactive"))
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/jobs/job_seed_1/dispatch",
        &h,
        Some(json!({"payload": {"a": 1}})),
    )
    .await;
    assert_eq!(
        (st, v),
        (200, json!({"accepted": true, "jobId": "job_seed_1"}))
    );
    let (_, _, v) = call(&b, Method::GET, "/jobs?search=night", &h, None).await;
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        call(&b, Method::DELETE, &format!("/jobs/{id}"), &h, None)
            .await
            .2,
        json!({"deleted": true})
    );
    let (st, _, v) = call(&b, Method::GET, &format!("/jobs/{id}"), &h, None).await;
    assert_eq!((st, v["message"].clone()), (404, json!("Job not found")));
    assert_eq!(
        call(&b, Method::DELETE, &format!("/jobs/{id}"), &h, None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn jobs_dispatch_without_a_runtime_is_not_accepted() {
    let s = TestServer::builder()
        .job_runtime(false)
        .start()
        .await
        .expect("server");
    let (st, _, v) = call(
        &s.base_url(),
        Method::POST,
        "/jobs/job_seed_1/dispatch",
        &s.direct_headers(),
        Some(json!({"payload": {}})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"accepted": false, "message": "The durable Job runtime is not configured.", "jobId": "job_seed_1"})
        )
    );
}

#[tokio::test]
async fn bgo_trigger_routes() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let h = s.direct_headers();
    let (_, _, v) = call(&b, Method::GET, "/trigger/tasks", &h, None).await;
    assert_eq!(v["tasks"].as_array().map(Vec::len), Some(2));
    let (st, _, r) = call(
        &b,
        Method::POST,
        "/trigger/tasks/send-email/trigger",
        &h,
        Some(json!({"payload": {"to": "x"}, "options": {"idempotencyKey": "k", "tags": ["a"]}})),
    )
    .await;
    assert_eq!(st, 201);
    let run = r["id"].as_str().expect("run id").to_string();
    assert!(r["publicAccessToken"].is_string());
    let (_, _, r2) = call(
        &b,
        Method::POST,
        "/trigger/tasks/send-email/trigger",
        &h,
        Some(json!({"payload": {"to": "y"}, "options": {"idempotencyKey": "k"}})),
    )
    .await;
    assert_eq!(r2["id"], run.as_str());
    let (_, _, l) = call(
        &b,
        Method::GET,
        "/trigger/runs?taskId=send-email&status=QUEUED&limit=5",
        &h,
        None,
    )
    .await;
    assert_eq!(l["runs"][0]["id"], run.as_str());
    assert_eq!(
        call(&b, Method::GET, &format!("/trigger/runs/{run}"), &h, None)
            .await
            .2["payload"],
        json!({"to": "x"})
    );
    assert_eq!(
        call(
            &b,
            Method::POST,
            &format!("/trigger/runs/{run}/cancel"),
            &h,
            None
        )
        .await
        .2,
        json!({"status": "CANCELED"})
    );
    let (_, _, rp) = call(
        &b,
        Method::POST,
        &format!("/trigger/runs/{run}/replay"),
        &h,
        None,
    )
    .await;
    assert_ne!(rp["id"], run.as_str());
    let (st, _, sc) = call(
        &b,
        Method::POST,
        "/trigger/schedules",
        &h,
        Some(json!({"taskId": "nightly-report", "cron": "0 3 * * *"})),
    )
    .await;
    assert_eq!(
        (st, sc["timezone"].clone(), sc["active"].clone()),
        (201, json!("UTC"), json!(true))
    );
    let sid = sc["id"].as_str().expect("id");
    assert_eq!(
        call(
            &b,
            Method::POST,
            &format!("/trigger/schedules/{sid}/deactivate"),
            &h,
            None
        )
        .await
        .2["active"],
        false
    );
    assert_eq!(
        call(
            &b,
            Method::POST,
            &format!("/trigger/schedules/{sid}/activate"),
            &h,
            None
        )
        .await
        .2["active"],
        true
    );
    assert_eq!(
        call(&b, Method::GET, "/trigger/schedules", &h, None)
            .await
            .2["schedules"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        call(
            &b,
            Method::DELETE,
            &format!("/trigger/schedules/{sid}"),
            &h,
            None
        )
        .await
        .0,
        200
    );
    let (_, _, bt) = call(
        &b,
        Method::POST,
        "/trigger/batches/send-email",
        &h,
        Some(json!({"payloads": [1, 2], "options": {}})),
    )
    .await;
    assert_eq!(bt["runIds"].as_array().map(Vec::len), Some(2));
    let (_, _, g) = call(
        &b,
        Method::GET,
        &format!("/trigger/batches/{}", bt["batchId"].as_str().expect("id")),
        &h,
        None,
    )
    .await;
    assert_eq!(g["runIds"], bt["runIds"]);
    assert_eq!(
        call(&b, Method::GET, "/trigger/runs/ghost", &h, None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn rest_fault_knobs_and_recording() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    // An operator: `/agents` is operator-only.
    let h = token_headers(&s.operator_token());
    s.faults().fail_next_rest(RestFault::unavailable().times(2));
    s.faults()
        .fail_next_rest(RestFault::rate_limited(3).path_contains("/agents"));
    assert_eq!(call(&b, Method::GET, "/threads", &h, None).await.0, 503);
    assert_eq!(call(&b, Method::GET, "/threads", &h, None).await.0, 503);
    // The path-restricted fault waits for its path.
    assert_eq!(call(&b, Method::GET, "/threads", &h, None).await.0, 200);
    let (st, hd, v) = call(&b, Method::GET, "/agents", &h, None).await;
    assert_eq!(st, 429);
    assert_eq!(
        hd.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(
        (
            v["error"]["code"].clone(),
            v["error"]["retryAfterSec"].clone()
        ),
        (json!("RATE_LIMITED"), json!(3))
    );
    assert_eq!(call(&b, Method::GET, "/agents", &h, None).await.0, 200);

    s.faults()
        .fail_next_rest(RestFault::artifacts_unavailable());
    assert_eq!(
        call(&b, Method::GET, "/threads/thr_seed", &h, None).await.0,
        200
    );
    let (st, _, v) = call(&b, Method::GET, "/threads/thr_seed/artifacts", &h, None).await;
    assert_eq!(
        (st, v["code"].clone()),
        (503, json!("ARTIFACTS_UNAVAILABLE"))
    );
    s.faults()
        .fail_next_rest(RestFault::idempotency_store_unavailable());
    let (st, hd, v) = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "agent_support"})),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (503, json!("IDEMPOTENCY_STORE_UNAVAILABLE"))
    );
    assert_eq!(
        hd.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );

    s.faults().set_rest_delay(Duration::from_millis(50));
    let t0 = std::time::Instant::now();
    call(&b, Method::GET, "/agents", &h, None).await;
    assert!(t0.elapsed() >= Duration::from_millis(50));
    s.faults().set_rest_delay(Duration::ZERO);

    let r = http()
        .post(format!("{b}/api/v1/agent/threads?x=a%20b"))
        .header("X-Platos-Session-Token", s.session_token())
        .header("X-Custom", "Yes")
        .body(r#"{"agentId":"agent_support","title":null}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let rec = s
        .recorder()
        .requests_to("/threads")
        .pop()
        .expect("recorded");
    assert_eq!(
        (rec.method.as_str(), rec.query.as_deref()),
        ("POST", Some("x=a%20b"))
    );
    assert_eq!(rec.header("x-custom"), Some("Yes"));
    assert!(
        rec.headers
            .iter()
            .any(|(k, _)| k == "x-platos-session-token")
    );
    assert_eq!(rec.json().expect("json")["title"], Value::Null);
    assert!(
        s.recorder()
            .wait_for_requests("/agents", 3, common::T)
            .await
    );
}

#[tokio::test]
async fn seed_off_insert_agent_and_shutdown() {
    let s = TestServer::builder()
        .seed(false)
        .start()
        .await
        .expect("server");
    let b = s.base_url();
    let h = s.direct_headers();
    let (_, _, v) = call(&b, Method::GET, "/agents", &h, None).await;
    assert_eq!(
        (v["total"].clone(), v["agents"].clone()),
        (json!(0), json!([]))
    );
    assert_eq!(
        call(&b, Method::GET, "/threads/thr_seed", &h, None).await.0,
        404
    );
    s.insert_agent(
        s.scope(),
        json!({"id": "a1", "name": "A1", "isActive": true}),
    );
    let (st, _, t) = call(
        &b,
        Method::POST,
        "/threads",
        &h,
        Some(json!({"agentId": "a1", "title": null})),
    )
    .await;
    assert_eq!((st, t["agentId"].clone()), (201, json!("a1")));
    assert!(
        TestServer::builder()
            .secret("too-short")
            .start()
            .await
            .is_err()
    );

    s.shutdown().await;
    let r = http().get(format!("{b}/api/v1/agent/agents")).send().await;
    assert!(r.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn trace_and_thread_cost_are_ownership_gated() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let owner = token_headers(&s.session_token());
    let stranger = token_headers(&s.mint(&s.token_spec("user_other")));
    let not_found = json!({"statusCode": 404, "message": "Thread not found", "error": "Not Found"});
    for path in [
        "/monitoring/trace/thr_seed",
        "/monitoring/cost/thread/thr_seed",
    ] {
        for h in [
            owner.clone(),
            token_headers(&s.operator_token()),
            s.direct_headers(),
        ] {
            assert_eq!(call(&b, Method::GET, path, &h, None).await.0, 200, "{path}");
        }
        let (st, _, v) = call(&b, Method::GET, path, &stranger, None).await;
        assert_eq!((st, &v), (404, &not_found), "{path}");
    }
    let (_, _, v) = call(
        &b,
        Method::GET,
        "/monitoring/cost/thread/thr_seed",
        &owner,
        None,
    )
    .await;
    assert_eq!(
        (
            v["threadId"].clone(),
            v["costCents"].clone(),
            v["inputTokens"].clone(),
            v["outputTokens"].clone(),
            v["turnCount"].clone(),
            v["turns"][0]["turnId"].clone()
        ),
        (
            json!("thr_seed"),
            json!(0.0054),
            json!(12),
            json!(6),
            json!(1),
            json!("turn_seed")
        )
    );
    let (st, _, v) = call(
        &b,
        Method::GET,
        "/monitoring/cost/thread/ghost",
        &owner,
        None,
    )
    .await;
    assert_eq!((st, v), (404, not_found));
}

fn event_types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn one_shot_turns_answer_persist_and_replay() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let user = token_headers(&s.session_token());
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads/thr_seed/messages",
        &user,
        Some(json!({"message": "where is my order?"})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        v["text"],
        json!("Here is what I found about \"where is my order?\".")
    );
    assert_eq!(v["threadId"], "thr_seed");
    let types = event_types(&v["events"]);
    assert_eq!(
        types[..7],
        [
            "status",
            "meta",
            "thinking",
            "status",
            "tool_call",
            "tool_result",
            "status"
        ]
    );
    assert_eq!(types[types.len() - 2..], ["message_persisted", "done"]);
    let events = v["events"].as_array().expect("events");
    let tokens: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(json!(tokens), v["text"]);
    let persisted = &events[events.len() - 2];
    assert_eq!(persisted["messageId"], v["messageId"]);
    assert_eq!(persisted["costCents"], v["costCents"]);
    assert_eq!(
        events[events.len() - 1]["usage"]["costCents"],
        v["costCents"]
    );
    assert!(events.iter().all(|e| e["threadId"] == "thr_seed"));

    // Both messages are on the thread; the assistant's id is the announced messageId.
    let (_, _, m) = call(&b, Method::GET, "/threads/thr_seed/messages", &user, None).await;
    let msgs = m["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 4);
    assert_eq!(
        (msgs[2]["role"].clone(), msgs[2]["content"].clone()),
        (json!("user"), json!("where is my order?"))
    );
    assert_eq!(
        (
            msgs[3]["role"].clone(),
            msgs[3]["id"].clone(),
            msgs[3]["content"].clone()
        ),
        (
            json!("assistant"),
            v["messageId"].clone(),
            v["text"].clone()
        )
    );
    let (_, _, t) = call(&b, Method::GET, "/threads/thr_seed", &user, None).await;
    assert_eq!(t["turnCount"], 2);
    let (_, _, c) = call(
        &b,
        Method::GET,
        "/monitoring/cost/thread/thr_seed",
        &user,
        None,
    )
    .await;
    assert_eq!(c["turnCount"], 2);

    // `[tokens=N]` works here too.
    let (_, _, v) = call(
        &b,
        Method::POST,
        "/threads/thr_seed/messages",
        &user,
        Some(json!({"message": "[tokens=2]", "agentId": "agent_research"})),
    )
    .await;
    assert_eq!(v["text"], "w1 w2 ");
    assert_eq!(v["events"][0]["agentId"], "agent_research");

    // Refusals.
    let required = json!({"error": "message is required in the request body"});
    for body in [json!({}), json!({"message": "  "}), json!({"message": 7})] {
        for path in [
            "/threads/thr_seed/messages",
            "/agents/agent_support/messages",
        ] {
            let (st, _, v) = call(&b, Method::POST, path, &user, Some(body.clone())).await;
            assert_eq!((st, &v), (400, &required), "{path} {body}");
        }
    }
    let stranger = token_headers(&s.mint(&s.token_spec("user_other")));
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads/thr_seed/messages",
        &stranger,
        Some(json!({"message": "hi"})),
    )
    .await;
    assert_eq!((st, v["message"].clone()), (404, json!("Thread not found")));
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/agents/ghost/messages",
        &user,
        Some(json!({"message": "hi"})),
    )
    .await;
    assert_eq!(
        (st, v),
        (404, json!({"error": "Agent not found", "agentId": "ghost"}))
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/threads/thr_seed/messages",
        &user,
        Some(json!({"message": "hi", "attachmentIds": "a"})),
    )
    .await;
    assert_eq!(
        (st, v["error"].clone()),
        (400, json!("attachmentIds must be an array of strings"))
    );
}

#[tokio::test]
async fn agent_one_shot_creates_a_thread_and_honours_idempotency_keys() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let user = token_headers(&s.session_token());
    let mut keyed = user.clone();
    keyed.push(("idempotency-key".into(), "turn-key-1".into()));
    let body = json!({"message": "first", "attachmentIds": [], "modelLabel": "fast"});
    let (st, h1, first) = call(
        &b,
        Method::POST,
        "/agents/agent_support/messages",
        &keyed,
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 200);
    assert!(h1.get("idempotency-replayed").is_none());
    let thread = first["threadId"].as_str().expect("threadId").to_string();
    assert_ne!(thread, "thr_seed");
    let (st, _, t) = call(&b, Method::GET, &format!("/threads/{thread}"), &user, None).await;
    assert_eq!(
        (st, t["agentId"].clone(), t["userId"].clone()),
        (200, json!("agent_support"), json!(s.user_id()))
    );

    // The same key again: the first answer, no second turn, no second thread.
    let (st, h2, again) = call(
        &b,
        Method::POST,
        "/agents/agent_support/messages",
        &keyed,
        Some(body),
    )
    .await;
    assert_eq!((st, &again), (200, &first));
    assert_eq!(
        h2.get("idempotency-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let (_, _, m) = call(
        &b,
        Method::GET,
        &format!("/threads/{thread}/messages"),
        &user,
        None,
    )
    .await;
    assert_eq!(m["messages"].as_array().map(Vec::len), Some(2));
    let (_, _, l) = call(&b, Method::GET, "/threads", &user, None).await;
    assert_eq!(l["threads"].as_array().map(Vec::len), Some(2));

    // With a threadId the turn lands on that thread.
    let (_, _, v) = call(
        &b,
        Method::POST,
        "/agents/agent_support/messages",
        &user,
        Some(json!({"message": "second", "threadId": thread})),
    )
    .await;
    assert_eq!(v["threadId"], json!(thread));
    let (_, _, m) = call(
        &b,
        Method::GET,
        &format!("/threads/{thread}/messages"),
        &user,
        None,
    )
    .await;
    assert_eq!(m["messages"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn message_ratings() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let user = token_headers(&s.session_token());
    let (_, _, turn) = call(
        &b,
        Method::POST,
        "/threads/thr_seed/messages",
        &user,
        Some(json!({"message": "rate me"})),
    )
    .await;
    let mid = turn["messageId"].as_str().expect("messageId").to_string();
    let path = format!("/messages/{mid}/rating");

    let (st, _, v) = call(&b, Method::POST, &path, &user, Some(json!({"rating": 1}))).await;
    assert_eq!(st, 200);
    let r = &v["rating"];
    assert_eq!(
        (
            r["messageId"].clone(),
            r["threadId"].clone(),
            r["agentId"].clone(),
            r["agentVersionId"].clone(),
            r["userId"].clone(),
            r["rating"].clone(),
            r["comment"].clone()
        ),
        (
            json!(mid),
            json!("thr_seed"),
            json!("agent_support"),
            json!("ver_support_2"),
            json!(s.user_id()),
            json!(1),
            Value::Null
        )
    );
    assert!(r["id"].is_string() && r["createdAt"].is_string() && r["updatedAt"].is_string());
    // Re-rating overwrites the same row.
    let (_, _, v2) = call(
        &b,
        Method::POST,
        &path,
        &user,
        Some(json!({"rating": -1, "comment": "wrong order"})),
    )
    .await;
    assert_eq!(
        (
            v2["rating"]["id"].clone(),
            v2["rating"]["rating"].clone(),
            v2["rating"]["comment"].clone(),
            v2["rating"]["createdAt"].clone()
        ),
        (
            r["id"].clone(),
            json!(-1),
            json!("wrong order"),
            r["createdAt"].clone()
        )
    );
    let (st, _, g) = call(&b, Method::GET, &path, &user, None).await;
    assert_eq!(st, 200);
    assert_eq!(g["userRating"], v2["rating"]);
    assert_eq!(g["aggregate"], json!({"ups": 0, "downs": 1}));
    // Operators read the aggregate, have no rating of their own, and may not write.
    let op = token_headers(&s.operator_token());
    let (_, _, g) = call(&b, Method::GET, &path, &op, None).await;
    assert_eq!(
        (g["userRating"].clone(), g["aggregate"].clone()),
        (Value::Null, json!({"ups": 0, "downs": 1}))
    );
    for h in [op.clone(), s.direct_headers()] {
        for method in [Method::POST, Method::DELETE] {
            let (st, _, v) = call(&b, method, &path, &h, Some(json!({"rating": 1}))).await;
            assert_eq!(
                (st, v["code"].clone()),
                (403, json!("RATING_ACTOR_FORBIDDEN"))
            );
            assert!(v["message"].is_string());
        }
    }
    for bad in [json!({"rating": 2}), json!({"rating": "1"}), json!({})] {
        let (st, _, v) = call(&b, Method::POST, &path, &user, Some(bad)).await;
        assert_eq!(
            (st, v["message"].clone()),
            (400, json!("rating must be 1 or -1"))
        );
    }
    // Unknown, user-authored and invisible messages are all 404 {code, message}.
    let stranger = token_headers(&s.mint(&s.token_spec("user_other")));
    for (h, p) in [
        (user.clone(), "/messages/nope/rating".to_string()),
        (user.clone(), "/messages/msg_seed_1/rating".to_string()),
        (stranger.clone(), path.clone()),
    ] {
        let (st, _, v) = call(&b, Method::POST, &p, &h, Some(json!({"rating": 1}))).await;
        assert_eq!(
            (st, v["code"].clone()),
            (404, json!("MESSAGE_NOT_FOUND")),
            "{p}"
        );
        assert!(v["message"].is_string());
        assert_eq!(call(&b, Method::GET, &p, &h, None).await.0, 404, "{p}");
    }
    // The seeded assistant message is rateable too.
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/messages/msg_seed_2/rating",
        &user,
        Some(json!({"rating": 1, "comment": null})),
    )
    .await;
    assert_eq!((st, v["rating"]["rating"].clone()), (200, json!(1)));

    let (_, _, d) = call(&b, Method::DELETE, &path, &user, None).await;
    assert_eq!(d, json!({"removed": true}));
    let (_, _, d) = call(&b, Method::DELETE, &path, &user, None).await;
    assert_eq!(d, json!({"removed": false}));
    let (_, _, g) = call(&b, Method::GET, &path, &user, None).await;
    assert_eq!(
        (g["userRating"].clone(), g["aggregate"].clone()),
        (Value::Null, json!({"ups": 0, "downs": 0}))
    );
}

#[tokio::test]
async fn tools_registry_is_open_to_end_users() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let user = token_headers(&s.session_token());
    let (st, _, v) = call(&b, Method::GET, "/tools", &user, None).await;
    assert_eq!((st, v["total"].clone()), (200, json!(5)));
    let lookup = &v["tools"][0];
    assert_eq!(
        (
            lookup["id"].clone(),
            lookup["name"].clone(),
            lookup["category"].clone(),
            lookup["entityIds"].clone()
        ),
        (
            json!("tool_lookup"),
            json!("lookup"),
            json!("search"),
            json!(["ent_crm", "ent_docs"])
        )
    );
    assert_eq!(lookup["paramSchema"]["required"], json!(["query"]));
    let (_, _, v) = call(&b, Method::GET, "/tools?category=search", &user, None).await;
    assert_eq!(v["total"], 2);

    let (st, _, v) = call(&b, Method::GET, "/tools/search?q=email", &user, None).await;
    assert_eq!(
        (
            st,
            v["query"].clone(),
            v["total"].clone(),
            v["results"][0]["name"].clone()
        ),
        (200, json!("email"), json!(1), json!("send_email"))
    );
    // "a" is in every description: the limit cuts the results, not the total.
    let (_, _, v) = call(&b, Method::GET, "/tools/search?q=a&limit=2", &user, None).await;
    assert_eq!(
        (v["results"].as_array().map(Vec::len), v["total"].clone()),
        (Some(2), json!(5))
    );
    let (_, _, v) = call(&b, Method::GET, "/tools/search?q=a", &user, None).await;
    assert_eq!(v["results"].as_array().map(Vec::len), Some(5));
    let (_, _, v) = call(
        &b,
        Method::GET,
        "/tools/search?q=a&entity=ent_docs",
        &user,
        None,
    )
    .await;
    assert_eq!(v["total"], 2);
    for bad in ["/tools/search", "/tools/search?q=a&limit=0"] {
        assert_eq!(
            call(&b, Method::GET, bad, &user, None).await.0,
            400,
            "{bad}"
        );
    }

    let (st, _, v) = call(&b, Method::GET, "/tools/stats", &user, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["totalTools"].clone(),
            v["totalMappings"].clone(),
            v["entities"].clone(),
            v["dispatchable"].clone(),
            v["disabled"].clone(),
            v["unavailable"].clone(),
            v["categories"]["search"].clone()
        ),
        (
            json!(5),
            json!(6),
            json!(5),
            json!(4),
            json!(1),
            json!(1),
            json!(2)
        )
    );
    assert!(v["indexedAt"].is_string());

    let (st, _, v) = call(&b, Method::GET, "/tools/matrix", &user, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["environmentId"].clone(),
            v["total"].clone(),
            v["aggregates"].clone()
        ),
        (
            json!(s.scope().environment_id),
            json!(6),
            json!({"dispatchable": 4, "unavailable": 1, "disabled": 1})
        )
    );
    assert_eq!(v["items"], v["rows"]);
    assert!(v["pagination"].is_object() && v["fetchedAt"].is_string());
    let row = &v["rows"][0];
    let mut keys: Vec<&str> = row
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "callbackUrl",
            "category",
            "description",
            "dispatchable",
            "enabled",
            "entityId",
            "entityPk",
            "health",
            "paramSchema",
            "toolId",
            "toolName"
        ]
    );
    let mut hkeys: Vec<&str> = row["health"]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    hkeys.sort_unstable();
    assert_eq!(
        hkeys,
        [
            "avgLatencyMs",
            "failCount",
            "lastCalledAt",
            "lastStatus",
            "p95LatencyMs",
            "totalCalls",
            "totalFailures"
        ]
    );
    let (_, _, v) = call(
        &b,
        Method::GET,
        "/tools/matrix?status=disabled",
        &user,
        None,
    )
    .await;
    assert_eq!(
        (v["total"].clone(), v["rows"][0]["toolName"].clone()),
        (json!(1), json!("refund_order"))
    );
    // Aggregates ignore the status filter.
    assert_eq!(v["aggregates"]["dispatchable"], 4);
    let (_, _, v) = call(
        &b,
        Method::GET,
        "/tools/matrix?status=unavailable",
        &user,
        None,
    )
    .await;
    assert_eq!(
        (
            v["rows"][0]["toolName"].clone(),
            v["rows"][0]["dispatchable"].clone()
        ),
        (json!("create_ticket"), json!(false))
    );
    let (_, _, v) = call(
        &b,
        Method::GET,
        "/tools/matrix?entityId=ent_docs",
        &user,
        None,
    )
    .await;
    assert_eq!(v["total"], 2);
    let (_, _, v) = call(&b, Method::GET, "/tools/matrix?limit=2&page=2", &user, None).await;
    assert_eq!(
        (v["offset"].clone(), v["hasMore"].clone()),
        (json!(2), json!(true))
    );
    let (_, _, v) = call(&b, Method::GET, "/tools/matrix?search=weather", &user, None).await;
    assert_eq!(v["total"], 1);
    assert_eq!(
        call(&b, Method::GET, "/tools/matrix?status=broken", &user, None)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn tools_operator_actions() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let user = token_headers(&s.session_token());
    let op = token_headers(&s.operator_token());
    for (method, path, body) in [
        (
            Method::PATCH,
            "/tools/ent_shop/refund_order/enabled",
            json!({"enabled": true}),
        ),
        (
            Method::POST,
            "/tools/tool_lookup/test",
            json!({"params": {}}),
        ),
        (Method::POST, "/tools/execute", json!({"tool": "lookup"})),
    ] {
        let (st, _, v) = call(&b, method, path, &user, Some(body)).await;
        assert_eq!(
            (st, v["error"].clone()),
            (403, json!("OPERATOR_ONLY")),
            "{path}"
        );
    }

    // setEnabled shows in the matrix.
    let (st, _, v) = call(
        &b,
        Method::PATCH,
        "/tools/ent_shop/refund_order/enabled",
        &op,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"ok": true, "entityId": "ent_shop", "toolName": "refund_order", "enabled": true})
        )
    );
    let (_, _, m) = call(&b, Method::GET, "/tools/matrix", &user, None).await;
    assert_eq!(
        m["aggregates"],
        json!({"dispatchable": 5, "unavailable": 1, "disabled": 0})
    );
    let (st, _, v) = call(
        &b,
        Method::PATCH,
        "/tools/ent_crm/refund_order/enabled",
        &s.direct_headers(),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(
        (st, v["message"].clone()),
        (404, json!("Tool mapping not found for this scope"))
    );
    assert_eq!(
        call(
            &b,
            Method::PATCH,
            "/tools/ent_shop/refund_order/enabled",
            &op,
            Some(json!({"enabled": "yes"}))
        )
        .await
        .0,
        400
    );

    // test: 200 through a reachable entity, 502 through an unreachable one.
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/tools/tool_lookup/test",
        &op,
        Some(json!({"params": {"query": "x"}, "sourceEntityId": "ent_docs", "headers": {"x-a": "1"}})),
    )
    .await;
    assert_eq!(
        (
            st,
            v["status"].clone(),
            v["body"]["entityId"].clone(),
            v["body"]["params"].clone()
        ),
        (200, json!(200), json!("ent_docs"), json!({"query": "x"}))
    );
    assert!(v["headers"].is_object() && v["durationMs"].is_u64() && v.get("error").is_none());
    let (_, _, v) = call(
        &b,
        Method::POST,
        "/tools/tool_create_ticket/test",
        &op,
        Some(json!({"params": {"title": "t"}})),
    )
    .await;
    assert_eq!(
        (v["status"].clone(), v["headers"].clone()),
        (json!(502), json!({}))
    );
    assert!(v["error"].is_string());
    let (_, _, m) = call(
        &b,
        Method::GET,
        "/tools/matrix?entityId=ent_helpdesk",
        &op,
        None,
    )
    .await;
    assert_eq!(
        (
            m["rows"][0]["health"]["totalCalls"].clone(),
            m["rows"][0]["health"]["failCount"].clone()
        ),
        (json!(10), json!(6))
    );
    let (st, _, v) = call(&b, Method::POST, "/tools/ghost/test", &op, Some(json!({}))).await;
    assert_eq!(
        (st, v),
        (
            404,
            json!({"error": "Tool not found in scope", "toolId": "ghost"})
        )
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/tools/tool_lookup/test",
        &op,
        Some(json!({"sourceEntityId": "ent_shop"})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            404,
            json!({"error": "Entity not found for this tool", "toolId": "tool_lookup"})
        )
    );

    // execute: by name or id through the first dispatchable entity.
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/tools/execute",
        &op,
        Some(json!({"tool": "lookup", "params": {"query": "q"}, "purpose": "demo"})),
    )
    .await;
    assert_eq!(
        (
            st,
            v["ok"].clone(),
            v["toolId"].clone(),
            v["entityId"].clone(),
            v["result"].clone()
        ),
        (
            200,
            json!(true),
            json!("tool_lookup"),
            json!("ent_crm"),
            json!({"tool": "lookup", "params": {"query": "q"}, "purpose": "demo"})
        )
    );
    let (_, _, v) = call(
        &b,
        Method::POST,
        "/tools/execute",
        &op,
        Some(json!({"tool": "tool_create_ticket"})),
    )
    .await;
    assert_eq!(
        (
            v["ok"].clone(),
            v["entityId"].clone(),
            v["error"].is_string()
        ),
        (json!(false), Value::Null, true)
    );
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/tools/execute",
        &op,
        Some(json!({"tool": "nope"})),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            404,
            json!({"error": "Tool not found in scope", "tool": "nope"})
        )
    );
    assert_eq!(
        call(&b, Method::POST, "/tools/execute", &op, Some(json!({})))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn tool_test_is_rate_limited_per_user_and_scope() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let op = token_headers(&s.operator_token());
    let body = json!({"params": {"query": "x"}});
    for i in 0..20 {
        let (st, _, _) = call(
            &b,
            Method::POST,
            "/tools/tool_lookup/test",
            &op,
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, 200, "call {i}");
    }
    let (st, _, v) = call(
        &b,
        Method::POST,
        "/tools/tool_lookup/test",
        &op,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (st, v),
        (
            429,
            json!({"error": "Rate limit exceeded for tool test", "limit": 20, "retryAfter": 60})
        )
    );
    // Another operator (the api key acting for the seeded user) has its own allowance.
    let (st, _, _) = call(
        &b,
        Method::POST,
        "/tools/tool_lookup/test",
        &s.direct_headers(),
        Some(body),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_socket_turns_message_persisted_id_is_rateable() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let token = s.session_token();
    let user = token_headers(&token);
    let mut c = Eio::connect(&s.socket_url(), &[]).await;
    c.connect_ns("/agent", Some(json!({"token": token})))
        .await
        .expect("ack");
    c.emit(
        "/agent",
        "message",
        json!({"message": "socket turn", "threadId": "thr_seed"}),
    )
    .await;
    let evs = c.turn("/agent").await;
    let mid = evs
        .iter()
        .find(|e| e["type"] == "message_persisted")
        .and_then(|e| e["messageId"].as_str())
        .expect("message_persisted")
        .to_string();
    let (st, _, v) = call(
        &b,
        Method::POST,
        &format!("/messages/{mid}/rating"),
        &user,
        Some(json!({"rating": 1})),
    )
    .await;
    assert_eq!(
        (
            st,
            v["rating"]["messageId"].clone(),
            v["rating"]["agentId"].clone()
        ),
        (200, json!(mid), json!("agent_support"))
    );
}

#[tokio::test]
async fn tool_mappings_are_per_scope() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let other = Scope::new("org_b", "proj_b", "env_b");
    let theirs = direct(&other, Some("u"), s.api_key());
    // The second scope gets its own copy of the seeded tools on first use.
    let (st, _, v) = call(
        &b,
        Method::PATCH,
        "/tools/ent_crm/lookup/enabled",
        &theirs,
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!((st, v["enabled"].clone()), (200, json!(false)));
    let (_, _, m) = call(
        &b,
        Method::GET,
        "/tools/matrix?status=disabled",
        &theirs,
        None,
    )
    .await;
    assert_eq!(m["environmentId"], "env_b");
    assert_eq!(m["total"], 2);
    let (_, _, m) = call(
        &b,
        Method::GET,
        "/tools/matrix?status=disabled",
        &s.direct_headers(),
        None,
    )
    .await;
    assert_eq!(
        (m["total"].clone(), m["rows"][0]["toolName"].clone()),
        (json!(1), json!("refund_order"))
    );
}

#[tokio::test]
async fn job_writes_are_operator_only_and_refused_before_any_change() {
    let s = TestServer::start().await.expect("server");
    let b = s.base_url();
    let user = token_headers(&s.session_token());
    for (method, path, body) in [
        (
            Method::POST,
            "/jobs",
            json!({"jobId": "mine", "displayName": "Mine", "handler": "x"}),
        ),
        (
            Method::PATCH,
            "/jobs/job_seed_1",
            json!({"displayName": "Renamed"}),
        ),
        (Method::DELETE, "/jobs/job_seed_1", Value::Null),
        (
            Method::POST,
            "/jobs/job_seed_1/dispatch",
            json!({"payload": {}}),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (st, _, v) = call(&b, method, path, &user, body).await;
        assert_eq!(
            (st, v["error"].clone()),
            (403, json!("OPERATOR_ONLY")),
            "{path}"
        );
    }
    let (_, _, v) = call(&b, Method::GET, "/jobs", &s.direct_headers(), None).await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["jobs"][0]["displayName"], "Nightly digest");
    assert_eq!(v["jobs"][0]["lastStartedAt"], Value::Null);
}

//! The V1 operator routes with plain reqwest over loopback: each family, the
//! idempotency classes, cursor paging, auth and the retry knobs.

mod common;

use common::http;
use platos_test_server::{RestFault, SEED_POLICY, SEED_PROVIDER_KEY, TestServer};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// One answer: status, headers, JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An operator client for one server: Bearer operator token unless told otherwise.
struct V1 {
    server: TestServer,
    token: String,
}

impl V1 {
    async fn start() -> V1 {
        let server = TestServer::start().await.expect("server");
        let token = server.operator_token();
        V1 { server, token }
    }

    fn env(&self) -> String {
        self.server.scope().environment_id.clone()
    }

    fn org(&self) -> String {
        self.server.scope().organization_id.clone()
    }

    /// A call with the operator token and `extra` headers.
    async fn call(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        raw(&self.server, method, path, &headers, body).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, &[], None).await
    }

    /// A call carrying `idempotency-key: key`.
    async fn keyed(&self, method: Method, path: &str, key: &str, body: Value) -> Answer {
        self.call(method, path, &[("idempotency-key", key)], Some(body))
            .await
    }
}

/// A call with exactly `headers` (no credential unless listed).
async fn raw(
    server: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut rb = http().request(method, format!("{}{path}", server.base_url()));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn assert_envelope(a: &Answer, status: u16, code: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{}", a.body);
    let e = &a.body["error"];
    for member in ["title", "body", "errorId", "traceRef"] {
        assert!(e[member].is_string(), "{member} missing in {e}");
    }
    assert_eq!(e["version"], "1");
}

fn ids(v: &Value, member: &str) -> Vec<String> {
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|r| r[member].as_str().expect("id").to_owned())
        .collect()
}

fn platform_mint_body(env: &str, name: &str) -> Value {
    json!({"environmentId": env, "name": name, "permissions": ["tools:read"], "tier": "scope", "ttlSeconds": null})
}

// ---------- auth ----------

#[tokio::test]
async fn operator_bearer_is_required_and_the_session_token_header_is_refused() {
    let v1 = V1::start().await;
    let s = &v1.server;
    let none = raw(s, Method::GET, "/api/v1/organizations", &[], None).await;
    assert_envelope(&none, 401, "UNAUTHENTICATED");
    let bad = raw(
        s,
        Method::GET,
        "/api/v1/organizations",
        &[("authorization", "Bearer nope")],
        None,
    )
    .await;
    assert_envelope(&bad, 401, "UNAUTHENTICATED");

    // Even beside a valid operator Bearer, and even with an operator token in it.
    let session = v1.token.clone();
    let with_session = v1
        .call(
            Method::GET,
            "/api/v1/organizations",
            &[("x-platos-session-token", &session)],
            None,
        )
        .await;
    assert_envelope(&with_session, 401, "UNAUTHENTICATED");
    let only_session = raw(
        s,
        Method::GET,
        "/api/v1/identity/session",
        &[("x-platos-session-token", &session)],
        None,
    )
    .await;
    assert_envelope(&only_session, 401, "UNAUTHENTICATED");

    // The stream route shares the check.
    let stream = v1
        .call(
            Method::GET,
            "/api/v1/environments/env_test/streams/st_1",
            &[("x-platos-session-token", &session)],
            None,
        )
        .await;
    assert_envelope(&stream, 401, "UNAUTHENTICATED");

    let end_user = format!("Bearer {}", s.session_token());
    let refused = raw(
        s,
        Method::GET,
        "/mcp/platform/tokens?environmentId=env_test",
        &[("authorization", &end_user)],
        None,
    )
    .await;
    assert_envelope(&refused, 403, "FORBIDDEN_SCOPE");

    // `security: []`: no credential needed.
    let start = raw(
        s,
        Method::POST,
        "/api/v1/bff/magic-link",
        &[],
        Some(json!({"email": "a@example.test"})),
    )
    .await;
    assert_eq!(start.status, 202, "{}", start.body);

    let ok = v1.get("/api/v1/organizations").await;
    assert_eq!(ok.status, 200);
}

// ---------- idempotency ----------

#[tokio::test]
async fn required_class_needs_a_key_replays_once_and_refuses_a_mismatch() {
    let v1 = V1::start().await;
    let env = v1.env();
    let body = platform_mint_body(&env, "ci");

    let missing = v1
        .call(
            Method::POST,
            "/mcp/platform/tokens",
            &[],
            Some(body.clone()),
        )
        .await;
    assert_envelope(&missing, 400, "IDEMPOTENCY_KEY_REQUIRED");
    let malformed = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "has space",
            body.clone(),
        )
        .await;
    assert_envelope(&malformed, 400, "IDEMPOTENCY_KEY_MALFORMED");
    let too_long = "k".repeat(256);
    let malformed = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            &too_long,
            body.clone(),
        )
        .await;
    assert_envelope(&malformed, 400, "IDEMPOTENCY_KEY_MALFORMED");

    let first = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "key-1:a.b_c",
            body.clone(),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.header("idempotency-replayed"), None);
    assert!(
        first.body["data"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    let replay = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "key-1:a.b_c",
            body.clone(),
        )
        .await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    assert_eq!(
        replay.body, first.body,
        "the same secret, not a second token"
    );

    let list = v1
        .get(&format!("/mcp/platform/tokens?environmentId={env}"))
        .await;
    assert_eq!(
        ids(&list.body, "tokenId"),
        vec![
            first.body["data"]["tokenId"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        ]
    );

    let mismatch = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "key-1:a.b_c",
            platform_mint_body(&env, "other"),
        )
        .await;
    assert_envelope(&mismatch, 409, "IDEMPOTENCY_REQUEST_MISMATCH");

    // The key is per operation: the same key on another operation is a new call.
    let entity = v1
        .keyed(
            Method::POST,
            "/mcp/entity/ent_crm/tokens",
            "key-1:a.b_c",
            json!({"environmentId": env, "label": "crm", "scopes": [], "mcpUserId": null, "ttlSeconds": 60}),
        )
        .await;
    assert_eq!(
        (entity.status, entity.header("idempotency-replayed")),
        (201, None),
        "{}",
        entity.body
    );
}

#[tokio::test]
async fn accepted_class_replays_with_a_key_and_runs_without_one() {
    let v1 = V1::start().await;
    let org = |slug: &str| json!({"name": "Acme", "slug": slug});
    let first = v1
        .keyed(
            Method::POST,
            "/api/v1/organizations",
            "org-key",
            org("acme"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let replay = v1
        .keyed(
            Method::POST,
            "/api/v1/organizations",
            "org-key",
            org("acme"),
        )
        .await;
    assert_eq!(
        (replay.status, replay.header("idempotency-replayed")),
        (201, Some("true"))
    );
    assert_eq!(replay.body, first.body);

    // Without a key the same request runs again: the slug is now taken.
    let again = v1
        .call(
            Method::POST,
            "/api/v1/organizations",
            &[],
            Some(org("acme")),
        )
        .await;
    assert_envelope(&again, 409, "TENANCY_SLUG_TAKEN");
    // Refusals are stored too: a replay of a refused call answers the refusal.
    let refused = v1
        .keyed(
            Method::POST,
            "/api/v1/organizations",
            "org-key-2",
            org("acme"),
        )
        .await;
    let refused_again = v1
        .keyed(
            Method::POST,
            "/api/v1/organizations",
            "org-key-2",
            org("acme"),
        )
        .await;
    assert_eq!((refused.status, refused_again.status), (409, 409));
    assert_eq!(refused_again.header("idempotency-replayed"), Some("true"));
    assert_eq!(refused_again.body, refused.body);

    let orgs = v1.get("/api/v1/organizations").await;
    assert_eq!(
        orgs.body["data"].as_array().map(Vec::len),
        Some(2),
        "seeded + acme once"
    );
}

#[tokio::test]
async fn exempt_class_ignores_the_key_header() {
    let v1 = V1::start().await;
    let env = v1.env();
    let minted = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "m1",
            platform_mint_body(&env, "x"),
        )
        .await;
    let id = minted.body["data"]["tokenId"]
        .as_str()
        .expect("tokenId")
        .to_owned();
    let path = format!("/mcp/platform/tokens/{id}/revoke");
    let body = json!({"environmentId": env});
    let first = v1
        .keyed(Method::POST, &path, "not valid!", body.clone())
        .await;
    assert_eq!(
        first.status, 200,
        "a malformed key is not even read: {}",
        first.body
    );
    assert_eq!(first.body["data"]["newlyRevoked"], true);
    let second = v1.keyed(Method::POST, &path, "not valid!", body).await;
    assert_eq!(second.header("idempotency-replayed"), None);
    assert_eq!(second.body["data"]["newlyRevoked"], false);
    assert_eq!(second.body["data"]["previousState"], "revoked");
}

// ---------- paging ----------

#[tokio::test]
async fn end_users_walk_every_page_with_limit_two() {
    let v1 = V1::start().await;
    let base = format!("/api/v1/environments/{}/end-users", v1.env());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=2&cursor={c}"),
            None => format!("{base}?limit=2"),
        };
        let a = v1.get(&path).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let page = &a.body["page"];
        assert_eq!(
            page["cursor"],
            cursor.clone().map_or(Value::Null, Value::from)
        );
        assert_eq!(
            (page["limit"].clone(), page["total"].clone()),
            (json!(2), json!(5))
        );
        seen.extend(ids(&a.body, "endUserId"));
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(page["hasMore"], true);
                cursor = Some(next.to_owned());
            }
            None => {
                assert_eq!(page["hasMore"], false);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["eu_1", "eu_2", "eu_3", "eu_4", "eu_5"]);

    let all = v1.get(&base).await;
    assert_eq!(all.body["page"]["limit"], 25, "default limit");
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=forged"] {
        let a = v1.get(&format!("{base}?{bad}")).await;
        assert_envelope(&a, 400, "INVALID_REQUEST");
        let field = a.body["error"]["fields"][0]["field"].as_str().unwrap_or("");
        assert!(
            bad.starts_with(field.trim_start_matches("query.")),
            "{bad}: {field}"
        );
    }
}

// ---------- tenancy ----------

#[tokio::test]
async fn tenancy_organizations_members_invitations_projects_and_scope() {
    let v1 = V1::start().await;
    let org = v1.org();
    let orgs = v1.get("/api/v1/organizations").await;
    assert_eq!(orgs.body["data"][0]["id"], org.as_str());
    assert_eq!(orgs.body["data"][0]["membership"]["role"], "OWNER");
    assert_eq!(
        orgs.body["page"],
        json!({"cursor": null, "nextCursor": null, "limit": 1, "hasMore": false, "total": 1})
    );

    let members = v1
        .get(&format!("/api/v1/organizations/{org}/members"))
        .await;
    assert_eq!(members.status, 200);
    let roles: Vec<(String, String)> = members.body["data"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap_or("").into(),
                m["role"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("user_operator".into(), "OWNER".into())),
        "{roles:?}"
    );

    let path = format!("/api/v1/organizations/{org}/members/mem_user_admin");
    let demoted = v1
        .call(Method::PATCH, &path, &[], Some(json!({"role": "MEMBER"})))
        .await;
    assert_eq!(demoted.body["data"]["changed"], true, "{}", demoted.body);
    let same = v1
        .call(Method::PATCH, &path, &[], Some(json!({"role": "MEMBER"})))
        .await;
    assert_eq!(same.body["data"]["changed"], false);
    let last_owner = v1
        .call(
            Method::PATCH,
            &format!("/api/v1/organizations/{org}/members/mem_user_operator"),
            &[],
            Some(json!({"role": "ADMIN"})),
        )
        .await;
    assert_envelope(&last_owner, 409, "TENANCY_LAST_OWNER");
    let bad_role = v1
        .call(Method::PATCH, &path, &[], Some(json!({"role": "KING"})))
        .await;
    assert_envelope(&bad_role, 400, "INVALID_REQUEST");
    assert_eq!(bad_role.body["error"]["fields"][0]["field"], "body.role");
    let unknown = v1.get("/api/v1/organizations/org_nope/members").await;
    assert_envelope(&unknown, 404, "TENANCY_NOT_FOUND");

    // An invitation to another operator, accepted by them.
    let invitee = "user_guest";
    let email = format!("{invitee}@example.test");
    let inv_path = format!("/api/v1/organizations/{org}/invitations");
    let first = v1
        .call(Method::POST, &inv_path, &[], Some(json!({"email": email})))
        .await;
    assert_eq!(
        (first.status, first.body["data"]["supersededCount"].clone()),
        (201, json!(0))
    );
    let second = v1
        .call(
            Method::POST,
            &inv_path,
            &[],
            Some(json!({"email": email, "role": "ADMIN"})),
        )
        .await;
    assert_eq!(second.body["data"]["supersededCount"], 1);
    assert!(second.body["data"].get("token").is_none());
    let token = v1
        .server
        .v1_api()
        .invitation_token(&email)
        .expect("invitation token");
    let wrong = v1
        .call(
            Method::POST,
            "/api/v1/invitations/accept",
            &[],
            Some(json!({"token": token})),
        )
        .await;
    assert_envelope(&wrong, 403, "TENANCY_INVITATION_EMAIL_MISMATCH");
    let guest = v1
        .server
        .mint(&v1.server.token_spec(invitee).operator(true));
    let accept = raw(
        &v1.server,
        Method::POST,
        "/api/v1/invitations/accept",
        &[("authorization", &format!("Bearer {guest}"))],
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(accept.status, 200, "{}", accept.body);
    assert_eq!(
        (
            accept.body["data"]["organizationId"].clone(),
            accept.body["data"]["role"].clone()
        ),
        (json!(org), json!("ADMIN"))
    );

    // A project with its first environment, then resolved by slugs.
    let created = v1
        .call(
            Method::POST,
            "/api/v1/projects",
            &[],
            Some(json!({"organizationId": org, "name": "Shop", "slug": "shop", "environmentName": "Staging", "environmentSlug": "staging"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let env_id = created.body["data"]["environment"]["id"].clone();
    let projects = v1.get("/api/v1/projects").await;
    assert_eq!(projects.body["data"].as_array().map(Vec::len), Some(2));
    let scope = v1
        .get("/api/v1/environments/by-slugs?organizationSlug=test-org&projectSlug=shop&environmentSlug=staging&access=secret%3Amutate")
        .await;
    assert_eq!(scope.status, 200, "{}", scope.body);
    assert_eq!(scope.body["data"]["environment"]["id"], env_id);
    assert_eq!(scope.body["data"]["access"], "secret:mutate");
    assert_eq!(scope.body["data"]["organizationRole"], "OWNER");
    let missing = v1.get("/api/v1/environments/by-slugs?organizationSlug=test-org&projectSlug=shop&environmentSlug=nope").await;
    assert_envelope(&missing, 404, "TENANCY_NOT_FOUND");
    let incomplete = v1
        .get("/api/v1/environments/by-slugs?organizationSlug=test-org")
        .await;
    assert_envelope(&incomplete, 400, "INVALID_REQUEST");
    let fields: Vec<&str> = incomplete.body["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["query.projectSlug", "query.environmentSlug"]);
    let bad_access = v1.get("/api/v1/environments/by-slugs?organizationSlug=test-org&projectSlug=shop&environmentSlug=staging&access=root").await;
    assert_envelope(&bad_access, 400, "TRANSPORT_REQUEST_INVALID");
    let no_body = v1
        .call(
            Method::POST,
            "/api/v1/projects",
            &[],
            Some(json!({"organizationId": org})),
        )
        .await;
    assert_envelope(&no_body, 400, "INVALID_REQUEST");
    assert_eq!(
        no_body.body["error"]["fields"].as_array().map(Vec::len),
        Some(4)
    );
}

// ---------- environment ----------

#[tokio::test]
async fn environment_variables_and_end_users() {
    let v1 = V1::start().await;
    let env = v1.env();
    let vars = v1
        .get(&format!("/api/v1/environments/{env}/variables"))
        .await;
    let secret = vars.body["data"]
        .as_array()
        .expect("vars")
        .iter()
        .find(|v| v["key"] == "OPENAI_API_KEY")
        .cloned()
        .expect("secret var");
    assert_eq!(
        (
            secret["value"].clone(),
            secret["hasSecret"].clone(),
            secret["kind"].clone()
        ),
        (Value::Null, json!(true), json!("SECRET"))
    );
    assert!(!vars.body.to_string().contains("sk-seeded-secret"));

    let path = format!("/api/v1/environments/{env}/variables/API_TOKEN");
    let set = v1
        .call(
            Method::PUT,
            &path,
            &[],
            Some(json!({"value": "s3cret", "secret": true})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        (
            set.body["data"]["value"].clone(),
            set.body["data"]["version"].clone()
        ),
        (Value::Null, json!(1))
    );
    let plain = v1
        .call(Method::PUT, &path, &[], Some(json!({"value": "visible"})))
        .await;
    assert_eq!(
        (
            plain.body["data"]["value"].clone(),
            plain.body["data"]["version"].clone(),
            plain.body["data"]["kind"].clone()
        ),
        (json!("visible"), json!(2), json!("PLAIN"))
    );
    let missing = v1.call(Method::PUT, &path, &[], Some(json!({}))).await;
    assert_envelope(&missing, 400, "INVALID_REQUEST");
    assert_eq!(
        missing.body["error"]["fields"],
        json!([{"field": "body.value", "code": "required", "message": "value is required (a string)"}])
    );
    let not_json = raw(
        &v1.server,
        Method::PUT,
        &path,
        &[
            ("authorization", &format!("Bearer {}", v1.token)),
            ("content-type", "application/json"),
        ],
        None,
    )
    .await;
    assert_envelope(&not_json, 400, "INVALID_REQUEST");

    let users = format!("/api/v1/environments/{env}/end-users");
    let disabled = v1.get(&format!("{users}?status=disabled")).await;
    assert_eq!(ids(&disabled.body, "endUserId"), ["eu_3"]);
    let search = v1.get(&format!("{users}?search=BOB")).await;
    assert_eq!(ids(&search.body, "endUserId"), ["eu_2"]);
    let bad = v1.get(&format!("{users}?status=gone")).await;
    assert_envelope(&bad, 400, "INVALID_END_USER_FILTER");
    let unknown = v1.get("/api/v1/environments/env_nope/variables").await;
    assert_envelope(&unknown, 404, "TENANCY_NOT_FOUND");
}

// ---------- identity ----------

#[tokio::test]
async fn identity_magic_link_session_cookie_and_sign_out() {
    let v1 = V1::start().await;
    let s = &v1.server;
    let email = "user_operator@example.test";
    let start_body = json!({"email": email});
    let start = raw(
        s,
        Method::POST,
        "/api/v1/bff/magic-link",
        &[("idempotency-key", "ml-1")],
        Some(start_body.clone()),
    )
    .await;
    assert_eq!(start.status, 202);
    assert_eq!(start.body["data"]["email"], email);
    let replay = raw(
        s,
        Method::POST,
        "/api/v1/bff/magic-link",
        &[("idempotency-key", "ml-1")],
        Some(start_body),
    )
    .await;
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    assert_eq!(
        s.v1_api().mailed_links(email),
        1,
        "a replay mails no second link"
    );
    let link = s.v1_api().magic_link_token(email).expect("mailed link");
    assert!(!start.body.to_string().contains(&link));

    let complete = raw(
        s,
        Method::POST,
        "/api/v1/bff/magic-link/complete",
        &[],
        Some(json!({"token": link})),
    )
    .await;
    assert_eq!(complete.status, 200, "{}", complete.body);
    assert_eq!(complete.body["data"]["userId"], "user_operator");
    let cookie = complete.header("set-cookie").expect("cookie").to_owned();
    let session_id = complete.body["data"]["sessionId"]
        .as_str()
        .expect("sessionId");
    assert!(
        cookie.starts_with(&format!("__Host-platos_session={session_id};")),
        "{cookie}"
    );
    let spent = raw(
        s,
        Method::POST,
        "/api/v1/bff/magic-link/complete",
        &[],
        Some(json!({"token": link})),
    )
    .await;
    assert_envelope(&spent, 401, "UNAUTHENTICATED");

    let exchange = raw(
        s,
        Method::POST,
        "/api/v1/bff/session",
        &[],
        Some(json!({"token": v1.token})),
    )
    .await;
    assert_eq!(exchange.status, 200, "{}", exchange.body);
    assert!(
        exchange
            .header("set-cookie")
            .is_some_and(|c| c.contains(&v1.token))
    );
    let session = v1.get("/api/v1/identity/session").await;
    assert_eq!(
        session.body["data"], exchange.body["data"],
        "the same session"
    );
    assert_eq!(session.body["data"]["actorUserId"], "user_operator");
    let bad = raw(
        s,
        Method::POST,
        "/api/v1/bff/session",
        &[],
        Some(json!({"token": "nope"})),
    )
    .await;
    assert_envelope(&bad, 401, "UNAUTHENTICATED");

    let out = v1
        .call(
            Method::DELETE,
            "/api/v1/bff/session",
            &[("idempotency-key", "out-1")],
            None,
        )
        .await;
    assert_eq!((out.status, out.body.clone()), (204, Value::Null));
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let anonymous = raw(s, Method::DELETE, "/api/v1/bff/session", &[], None).await;
    assert_eq!(
        anonymous.status, 204,
        "sign-out reveals nothing about the token"
    );
}

// ---------- MCP ----------

#[tokio::test]
async fn mcp_tokens_mint_list_revoke_and_policies() {
    let v1 = V1::start().await;
    let env = v1.env();
    let minted = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "p1",
            platform_mint_body(&env, "ci"),
        )
        .await;
    let id = minted.body["data"]["tokenId"]
        .as_str()
        .expect("id")
        .to_owned();
    let secret = minted.body["data"]["token"]
        .as_str()
        .expect("secret")
        .to_owned();
    let list = v1
        .get(&format!("/mcp/platform/tokens?environmentId={env}"))
        .await;
    let row = &list.body["data"][0];
    assert_eq!(
        (
            row["tokenId"].as_str(),
            row["state"].as_str(),
            row["tier"].as_str()
        ),
        (Some(id.as_str()), Some("active"), Some("scope"))
    );
    assert!(row.get("token").is_none() && !list.body.to_string().contains(&secret));

    let revoke = format!("/mcp/platform/tokens/{id}/revoke");
    let first = v1
        .call(
            Method::POST,
            &revoke,
            &[],
            Some(json!({"environmentId": env})),
        )
        .await;
    assert_eq!(
        (
            first.body["data"]["newlyRevoked"].clone(),
            first.body["data"]["previousState"].clone()
        ),
        (json!(true), json!("active"))
    );
    let again = v1
        .call(
            Method::POST,
            &revoke,
            &[],
            Some(json!({"environmentId": env})),
        )
        .await;
    assert_eq!(again.body["data"]["newlyRevoked"], false);
    assert_eq!(
        again.body["data"]["revokedAt"],
        first.body["data"]["revokedAt"]
    );
    let list = v1
        .get(&format!("/mcp/platform/tokens?environmentId={env}"))
        .await;
    assert_eq!(list.body["data"][0]["state"], "revoked");
    let unknown = v1
        .call(
            Method::POST,
            "/mcp/platform/tokens/tok_nope/revoke",
            &[],
            Some(json!({"environmentId": env})),
        )
        .await;
    assert_envelope(&unknown, 404, "CREDENTIAL_NOT_FOUND");
    let no_env = v1.get("/mcp/platform/tokens").await;
    assert_eq!(
        no_env.body["error"]["fields"][0]["field"],
        "query.environmentId"
    );
    let bad_mint = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "p2",
            json!({"environmentId": env, "name": "x", "permissions": [], "tier": "root"}),
        )
        .await;
    let fields: Vec<&str> = bad_mint.body["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["body.permissions", "body.tier", "body.ttlSeconds"]);

    // Entity tokens: listed per entity, revoked through DELETE with the query environment.
    let body = json!({"environmentId": env, "label": "crm", "scopes": ["read"], "mcpUserId": "eu_1", "ttlSeconds": 3600});
    let e = v1
        .keyed(Method::POST, "/mcp/entity/ent_crm/tokens", "e1", body)
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    assert_eq!(e.body["data"]["tier"], Value::Null);
    let eid = e.body["data"]["tokenId"].as_str().expect("id").to_owned();
    let listed = v1
        .get(&format!("/mcp/entity/ent_crm/tokens?environmentId={env}"))
        .await;
    assert_eq!(ids(&listed.body, "tokenId"), vec![eid.clone()]);
    assert_eq!(listed.body["data"][0]["principalId"], "eu_1");
    let other = v1
        .get(&format!("/mcp/entity/ent_docs/tokens?environmentId={env}"))
        .await;
    assert_eq!(other.body["page"]["total"], 0);
    let del = v1
        .call(
            Method::DELETE,
            &format!("/mcp/entity/ent_crm/tokens/{eid}?environmentId={env}"),
            &[],
            None,
        )
        .await;
    assert_eq!(del.body["data"]["newlyRevoked"], true, "{}", del.body);

    // Organization policies.
    let policies = format!("/mcp/platform/environments/{env}/policies");
    let list = v1.get(&policies).await;
    assert_eq!(ids(&list.body, "policyId"), [SEED_POLICY]);
    let paged = v1.get(&format!("{policies}?limit=5")).await;
    assert_envelope(&paged, 400, "INVALID_REQUEST");
    let set = v1
        .call(
            Method::PUT,
            &policies,
            &[],
            Some(json!({"pattern": "crm.*", "state": "auto_allow"})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let replaced = v1
        .call(
            Method::PUT,
            &policies,
            &[],
            Some(json!({"pattern": "crm.*", "state": "block"})),
        )
        .await;
    assert_eq!(
        replaced.body["data"]["policyId"],
        set.body["data"]["policyId"]
    );
    let unsupported = v1
        .call(
            Method::PUT,
            &policies,
            &[],
            Some(json!({"pattern": "x", "state": "require_approval"})),
        )
        .await;
    assert_envelope(&unsupported, 400, "TOOLS_POLICY_EFFECT_UNSUPPORTED");
    let remove = format!("{policies}/{SEED_POLICY}");
    let gone = v1.call(Method::DELETE, &remove, &[], None).await;
    assert_eq!(
        gone.body["data"],
        json!({"policyId": SEED_POLICY, "deleted": true})
    );
    let none = v1.call(Method::DELETE, &remove, &[], None).await;
    assert_eq!(
        (none.status, none.body["data"]["deleted"].clone()),
        (200, json!(false))
    );
    let list = v1.get(&policies).await;
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1));
}

// ---------- provider keys ----------

#[tokio::test]
async fn provider_key_rotation_is_keyed_and_never_echoes_the_secret() {
    let v1 = V1::start().await;
    let env = v1.env();
    let path = format!("/api/v1/agent/providers/keys/{SEED_PROVIDER_KEY}/rotate-secret");
    let body = json!({"environmentId": env, "plaintext": "sk-new-material"});
    let unkeyed = v1.call(Method::POST, &path, &[], Some(body.clone())).await;
    assert_envelope(&unkeyed, 400, "IDEMPOTENCY_KEY_REQUIRED");
    let rotated = v1.keyed(Method::POST, &path, "rot-1", body.clone()).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["data"]["providerKeyId"], SEED_PROVIDER_KEY);
    assert!(!rotated.body.to_string().contains("sk-new-material"));
    let replay = v1.keyed(Method::POST, &path, "rot-1", body.clone()).await;
    assert_eq!(
        (replay.header("idempotency-replayed"), &replay.body),
        (Some("true"), &rotated.body)
    );
    let unknown = v1
        .keyed(
            Method::POST,
            "/api/v1/agent/providers/keys/pk_nope/rotate-secret",
            "rot-2",
            body,
        )
        .await;
    assert_envelope(&unknown, 404, "PROVIDERS_KEY_NOT_FOUND");
    let empty = v1
        .keyed(
            Method::POST,
            &path,
            "rot-3",
            json!({"environmentId": env, "plaintext": ""}),
        )
        .await;
    assert_eq!(empty.body["error"]["fields"][0]["field"], "body.plaintext");
}

// ---------- knobs and recording ----------

#[tokio::test]
async fn retry_knobs_answer_only_v1_routes_and_every_call_is_recorded() {
    let v1 = V1::start().await;
    let s = &v1.server;
    s.faults()
        .fail_next_rest(RestFault::shutting_down(3).times(2));
    // The agent surface is not a V1 operator route: untouched by the knob.
    let agents = raw(
        s,
        Method::GET,
        "/api/v1/agent/agents",
        &[("x-platos-session-token", &v1.token)],
        None,
    )
    .await;
    assert_eq!(agents.status, 200);
    for _ in 0..2 {
        let a = v1.get("/api/v1/projects").await;
        assert_envelope(&a, 503, "TRANSPORT_SHUTTING_DOWN");
        assert_eq!(a.body["error"]["retryAfterSec"], 3);
        assert_eq!(a.header("retry-after"), Some("3"));
    }
    assert_eq!(v1.get("/api/v1/projects").await.status, 200);

    s.faults()
        .fail_next_rest(RestFault::rate_limited(7).v1_only());
    let limited = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "rl-1",
            platform_mint_body(&v1.env(), "x"),
        )
        .await;
    assert_envelope(&limited, 429, "RATE_LIMITED");
    assert_eq!(limited.header("retry-after"), Some("7"));
    // The refused attempt stored nothing: the retry under the same key mints.
    let retried = v1
        .keyed(
            Method::POST,
            "/mcp/platform/tokens",
            "rl-1",
            platform_mint_body(&v1.env(), "x"),
        )
        .await;
    assert_eq!(
        (retried.status, retried.header("idempotency-replayed")),
        (201, None)
    );

    let recorded = s.recorder().requests_to("/mcp/platform/tokens");
    let last = recorded.last().expect("recorded");
    assert_eq!(
        (last.method.as_str(), last.query.as_deref()),
        ("POST", None)
    );
    assert_eq!(last.header("idempotency-key"), Some("rl-1"));
    assert_eq!(last.json().map(|b| b["name"].clone()), Some(json!("x")));
    let listed = v1
        .get(&format!(
            "/mcp/platform/tokens?environmentId={}&limit=1",
            v1.env()
        ))
        .await;
    assert_eq!(listed.status, 200);
    let recorded = s.recorder().requests_to("/mcp/platform/tokens");
    assert_eq!(
        recorded.last().and_then(|r| r.query.clone()).as_deref(),
        Some("environmentId=env_test&limit=1")
    );
}

// ---------- the conformance fixtures against this server ----------

/// Every request of `spec/conformance/v1.json`, sent as written (the fixture's
/// operator token swapped for a real one), reaches a V1 route that understands it:
/// the answer is an envelope, a well-formed request is never refused for its shape,
/// key or credential, and a success has the fixture's status.
#[tokio::test]
async fn conformance_fixture_requests_are_understood_by_the_server() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/conformance/v1.json"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("v1.json")).expect("json");
    let server = TestServer::builder()
        .scope(platos_test_server::Scope::new("org_1", "proj_1", "env_1"))
        .start()
        .await
        .expect("server");
    let bearer = format!("Bearer {}", server.operator_token());
    let entries = doc["entries"].as_array().expect("entries");
    for (i, e) in entries.iter().enumerate() {
        let name = e["name"].as_str().unwrap_or("");
        let req = &e["request"];
        let method =
            Method::from_bytes(req["method"].as_str().unwrap_or("").as_bytes()).expect("method");
        let query: Vec<(String, String)> = req["query"]
            .as_object()
            .expect("query")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        let mut url = reqwest::Url::parse(&format!(
            "{}{}",
            server.base_url(),
            req["path"].as_str().unwrap_or("")
        ))
        .expect("url");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(&query);
        }
        let key = format!("conformance-{i}");
        let mut headers: Vec<(&str, &str)> = Vec::new();
        let sent = &req["headers"];
        if sent.get("authorization").is_some() {
            headers.push(("authorization", &bearer));
        }
        if sent["idempotency-key"] == "<uuid>" {
            headers.push(("idempotency-key", &key));
        }
        let mut rb = http().request(method, url);
        for (k, v) in &headers {
            rb = rb.header(*k, *v);
        }
        if !req["body"].is_null() {
            rb = rb
                .header("content-type", "application/json")
                .body(req["body"].to_string());
        }
        let r = rb.send().await.expect("send");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let expected = e["response"]["status"].as_u64().unwrap_or(0) as u16;
        if status == 204 {
            assert_eq!((status, text.as_str()), (expected, ""), "{name}");
            continue;
        }
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: not JSON: {text}"));
        if (200..300).contains(&status) {
            assert_eq!(status, expected, "{name}: {body}");
            assert!(body.get("data").is_some(), "{name}: {body}");
            continue;
        }
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: not a V1 envelope: {body}"));
        let expected_code = e["error"]["code"].as_str().unwrap_or("");
        let shape_refusals = [
            "INVALID_REQUEST",
            "IDEMPOTENCY_KEY_REQUIRED",
            "IDEMPOTENCY_KEY_MALFORMED",
            "FORBIDDEN_SCOPE",
        ];
        assert!(
            code == expected_code || !shape_refusals.contains(&code),
            "{name}: refused for its shape: {body}"
        );
        if sent.get("authorization").is_some() {
            assert_ne!(code, "UNAUTHENTICATED", "{name}");
        }
    }
}

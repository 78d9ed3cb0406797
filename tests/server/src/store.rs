//! In-memory data: every object is kept as the JSON the real server would answer,
//! so handlers filter and patch JSON directly and never drift from the wire shape.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::Scope;

/// Now, from the system clock (chrono's `clock` feature would pull in time-zone crates).
pub(crate) fn utc_now() -> chrono::DateTime<chrono::Utc> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    chrono::DateTime::from_timestamp(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
    .unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

/// RFC 3339 with milliseconds and `Z`, like the Node server's `Date.toISOString()`.
pub(crate) fn now_iso() -> String {
    utc_now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn now_nanos() -> u128 {
    let now = crate::store::utc_now();
    u128::try_from(now.timestamp_nanos_opt().unwrap_or_default()).unwrap_or_default()
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A decision delivered to a turn paused on `approval_needed`.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub approved: bool,
    pub responded_by: String,
}

/// One finished (or stopped) turn, kept for traces, runs and cost reports.
#[derive(Debug, Clone)]
pub(crate) struct TurnRecord {
    pub id: String,
    pub scope: Scope,
    pub thread_id: String,
    pub agent_id: String,
    pub status: &'static str,
    pub created_at: String,
    pub start_nanos: u128,
    pub end_nanos: u128,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_cents: f64,
    pub tool_calls: u64,
    pub day: String,
}

#[derive(Debug, Clone)]
pub(crate) struct IdemEntry {
    pub fingerprint: String,
    pub answer: Option<StoredAnswer>,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Store {
    pub agents: Vec<Value>,
    pub versions: Vec<Value>,
    pub threads: Vec<Value>,
    pub messages: Vec<Value>,
    pub artifacts: Vec<Value>,
    pub approvals: Vec<Value>,
    pub caps: Vec<Value>,
    pub jobs: Vec<Value>,
    pub tasks: Vec<Value>,
    pub runs: Vec<Value>,
    pub schedules: Vec<Value>,
    pub batches: Vec<Value>,
    pub turns: Vec<TurnRecord>,
    /// RatingRecords of `/messages/{id}/rating`, one per (message, end user).
    pub ratings: Vec<Value>,
    /// Tool registry entries (`/tools`), scoped.
    pub tools: Vec<Value>,
    /// Tool ↔ entity mappings: the rows of `/tools/matrix`, scoped.
    pub tool_mappings: Vec<Value>,
    /// `/tools/{id}/test` calls per (identity, scope): window start and count.
    pub tool_tests: HashMap<String, (tokio::time::Instant, u32)>,
    pub idempotency: HashMap<String, IdemEntry>,
    /// Turns paused on an approval, keyed by approval id.
    pub waiting: HashMap<String, oneshot::Sender<Decision>>,
    /// `(threadId, idempotencyKey)` of every `message` that started a turn.
    pub message_keys: std::collections::HashSet<(String, String)>,
    /// Scopes that already received their copy of the seed data.
    pub provisioned: Vec<Scope>,
    /// Memories of `/api/v1/memory`, scoped, one owner each.
    pub memories: Vec<Value>,
    /// Knowledge-graph entities of `/api/v1/memory/graph`, scoped, one owner each.
    pub memory_entities: Vec<Value>,
    /// Knowledge-graph relationships between one owner's entities.
    pub memory_relationships: Vec<Value>,
    /// Reserved attachments (`/attachments/presigned`) and what their PUT received.
    pub attachments: Vec<Value>,
    /// The largest attachment `/attachments/presigned` accepts (`None`: upstream's 20 MiB).
    pub attachment_max_bytes: Option<u64>,
    /// Durable approvals' waitpoints by token: `None` while open, then the decision.
    pub waitpoints: HashMap<String, Option<Value>>,
    /// The server runs no durable engine: `/durable-approvals/*` answers 503.
    pub durable_disabled: bool,
    /// Guest tokens minted per client address (`/api/v1/public/guest-token`).
    pub guest_tokens: HashMap<String, u32>,
    pub seed: bool,
}

pub(crate) fn in_scope(v: &Value, scope: &Scope) -> bool {
    v["organizationId"] == scope.organization_id.as_str()
        && v["projectId"] == scope.project_id.as_str()
        && v["environmentId"] == scope.environment_id.as_str()
}

pub(crate) fn scope_fields(scope: &Scope) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("organizationId".into(), json!(scope.organization_id));
    m.insert("projectId".into(), json!(scope.project_id));
    m.insert("environmentId".into(), json!(scope.environment_id));
    m
}

fn with_scope(scope: &Scope, v: Value) -> Value {
    let mut v = v;
    if let Value::Object(o) = &mut v {
        o.extend(scope_fields(scope));
    }
    v
}

/// Seeded agent ids (present in every scope that calls the server while seeding is on).
pub const SEED_AGENT_SUPPORT: &str = "agent_support";
/// Second seeded agent: paused (`isActive: false`), one version.
pub const SEED_AGENT_RESEARCH: &str = "agent_research";
/// Seeded thread in the primary scope, owned by the seeded user, with two messages.
pub const SEED_THREAD: &str = "thr_seed";
/// Seeded pending approval on [`SEED_THREAD`] (no turn waits on it).
pub const SEED_APPROVAL_PENDING: &str = "apr_seed_pending";
/// Seeded approval already approved.
pub const SEED_APPROVAL_APPROVED: &str = "apr_seed_approved";
/// Seeded job's external key (`jobId`).
pub const SEED_JOB: &str = "nightly-digest";
/// Seeded job's internal `id`: the one `/jobs/{id}` routes address.
pub const SEED_JOB_ID: &str = "job_seed_1";
/// Seeded tool ids (`/tools`), in every scope: `lookup`, `send_email`, `refund_order`
/// (its mapping disabled), `create_ticket` (unavailable), `get_weather`.
pub const SEED_TOOLS: [&str; 5] = [
    "tool_lookup",
    "tool_send_email",
    "tool_refund_order",
    "tool_create_ticket",
    "tool_get_weather",
];
/// Seeded background task ids (`/trigger/tasks`).
pub const SEED_TASKS: [&str; 2] = ["send-email", "nightly-report"];

impl Store {
    pub(crate) fn new(seed: bool, primary: &Scope, user_id: &str) -> Self {
        let mut s = Store {
            seed,
            ..Store::default()
        };
        if seed {
            s.provision(primary);
            s.seed_primary(primary, user_id);
        }
        s
    }

    /// Gives a scope its own copy of the seeded agents, versions, caps and tasks
    /// the first time it is seen, so any scope a test invents is usable.
    pub(crate) fn provision(&mut self, scope: &Scope) {
        if !self.seed || self.provisioned.contains(scope) {
            return;
        }
        self.provisioned.push(scope.clone());
        let created = "2026-01-05T09:00:00.000Z";
        let agent = |id: &str, name: &str, slug: &str, active: bool, current: &str| {
            with_scope(
                scope,
                json!({
                    "id": id, "name": name, "slug": slug, "model": "gpt-4o-mini",
                    "systemPrompt": format!("You are {name}."), "maxSteps": 8, "contextLimit": 32000,
                    "historyMode": "full", "toolMode": "auto", "executionMode": "direct",
                    "isActive": active, "currentVersionId": current, "canaryVersionId": null,
                    "canaryPercent": 0, "visibility": "private",
                    "promptBlocks": [{"id": "pb1", "kind": "text", "text": "Be concise."}],
                    "modelRoutes": null,
                    "createdAt": created, "updatedAt": created
                }),
            )
        };
        self.agents.push(agent(
            SEED_AGENT_SUPPORT,
            "Support Agent",
            "support",
            true,
            "ver_support_2",
        ));
        self.agents.push(agent(
            SEED_AGENT_RESEARCH,
            "Research Agent",
            "research",
            false,
            "ver_research_1",
        ));
        let version = |id: &str, agent: &str, n: u32, current: bool, note: Value| {
            with_scope(
                scope,
                json!({
                    "id": id, "agentId": agent, "versionNumber": n, "createdBy": "user_admin",
                    "note": note, "snapshot": {"model": "gpt-4o-mini", "maxSteps": 8},
                    "createdAt": format!("2026-01-0{n}T09:00:00.000Z"), "isCurrent": current, "isCanary": false
                }),
            )
        };
        self.versions.push(version(
            "ver_support_1",
            SEED_AGENT_SUPPORT,
            1,
            false,
            json!("initial"),
        ));
        self.versions.push(version(
            "ver_support_2",
            SEED_AGENT_SUPPORT,
            2,
            true,
            json!("tone tweak"),
        ));
        self.versions.push(version(
            "ver_research_1",
            SEED_AGENT_RESEARCH,
            1,
            true,
            Value::Null,
        ));
        let cap = |id: &str, scope_type: &str, target: Value, period: &str, limit: f64| {
            with_scope(
                scope,
                json!({
                    "id": id, "scopeType": scope_type, "targetId": target.clone(), "period": period,
                    "limitCents": limit, "runsLimit": null, "alertThresholds": [50, 80, 100],
                    "alertWebhookUrl": null, "alertEmails": "ops@example.com", "overrideUntil": null,
                    "enabled": true, "tier": "llm",
                    "agentId": if scope_type == "agent" { target } else { Value::Null },
                    "createdAt": created, "updatedAt": created
                }),
            )
        };
        self.caps
            .push(cap("cap_scope_day", "scope", Value::Null, "day", 500.0));
        self.caps.push(cap(
            "cap_support_month",
            "agent",
            json!(SEED_AGENT_SUPPORT),
            "month",
            2500.5,
        ));
        self.seed_tools(scope);
        for (id, desc) in SEED_TASKS
            .iter()
            .zip(["Send a transactional email", "Build the nightly report"])
        {
            self.tasks.push(with_scope(
                scope,
                json!({"id": id, "slug": id, "description": desc, "createdAt": created}),
            ));
        }
    }

    /// Five tools over four entities; `lookup` is served by two. One mapping is disabled
    /// (`refund_order`) and one is unavailable (`create_ticket`: no callback, failing).
    fn seed_tools(&mut self, scope: &Scope) {
        let tools = [
            (
                SEED_TOOLS[0],
                "lookup",
                "search",
                "Search the knowledge base for an answer.",
                json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
            ),
            (
                SEED_TOOLS[1],
                "send_email",
                "communication",
                "Send an email to a customer.",
                json!({"type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}}, "required": ["to", "subject"]}),
            ),
            (
                SEED_TOOLS[2],
                "refund_order",
                "commerce",
                "Refund an order, fully or partly.",
                json!({"type": "object", "properties": {"orderId": {"type": "string"}, "amountCents": {"type": "integer"}}, "required": ["orderId"]}),
            ),
            (
                SEED_TOOLS[3],
                "create_ticket",
                "support",
                "Open a support ticket.",
                json!({"type": "object", "properties": {"title": {"type": "string"}, "priority": {"type": "string", "enum": ["low", "high"]}}, "required": ["title"]}),
            ),
            (
                SEED_TOOLS[4],
                "get_weather",
                "search",
                "Current weather for a city.",
                json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            ),
        ];
        for (id, name, category, description, schema) in tools {
            self.tools.push(with_scope(
                scope,
                json!({"id": id, "name": name, "description": description, "category": category,
                       "paramSchema": schema, "createdAt": "2026-01-05T09:00:00.000Z"}),
            ));
        }
        let health = |status: Value,
                      fails: u64,
                      total: u64,
                      failures: u64,
                      avg: u64,
                      p95: u64,
                      last: Value| {
            json!({"lastStatus": status, "failCount": fails, "totalCalls": total, "totalFailures": failures,
                   "avgLatencyMs": avg, "p95LatencyMs": p95, "lastCalledAt": last})
        };
        let seen = json!("2026-01-10T10:00:01.000Z");
        let mappings = [
            (
                SEED_TOOLS[0],
                "lookup",
                "ent_crm",
                "crm",
                Some("https://crm.example.com/platos/tools"),
                true,
                health(json!("ok"), 0, 120, 2, 85, 240, seen.clone()),
            ),
            (
                SEED_TOOLS[0],
                "lookup",
                "ent_docs",
                "docs",
                Some("https://docs.example.com/platos/tools"),
                true,
                health(json!("ok"), 0, 40, 0, 60, 110, seen.clone()),
            ),
            (
                SEED_TOOLS[1],
                "send_email",
                "ent_mailer",
                "mailer",
                Some("https://mail.example.com/platos/tools"),
                true,
                health(json!("ok"), 0, 12, 1, 300, 900, seen.clone()),
            ),
            (
                SEED_TOOLS[2],
                "refund_order",
                "ent_shop",
                "shop",
                Some("https://shop.example.com/platos/tools"),
                false,
                health(json!("ok"), 0, 3, 0, 150, 200, seen.clone()),
            ),
            (
                SEED_TOOLS[3],
                "create_ticket",
                "ent_helpdesk",
                "helpdesk",
                None,
                true,
                health(json!("error"), 5, 9, 7, 2000, 5000, seen),
            ),
            (
                SEED_TOOLS[4],
                "get_weather",
                "ent_docs",
                "docs",
                Some("https://docs.example.com/platos/tools"),
                true,
                health(Value::Null, 0, 0, 0, 0, 0, Value::Null),
            ),
        ];
        for (tool_id, name, entity, pk, url, enabled, health) in mappings {
            self.tool_mappings.push(with_scope(
                scope,
                json!({"toolId": tool_id, "toolName": name, "entityId": entity, "entityPk": pk,
                       "callbackUrl": url, "enabled": enabled, "health": health}),
            ));
        }
    }

    fn seed_primary(&mut self, scope: &Scope, user_id: &str) {
        let t0 = "2026-01-10T10:00:00.000Z";
        let t1 = "2026-01-10T10:00:02.000Z";
        self.threads.push(with_scope(
            scope,
            json!({
                "id": SEED_THREAD, "agentId": SEED_AGENT_SUPPORT, "userId": user_id,
                "endUserId": user_id, "title": "Seeded conversation", "status": "active",
                "turnCount": 1, "tags": ["seed"], "pinnedAt": null, "archivedAt": null,
                "parentThreadId": null, "createdAt": t0, "updatedAt": t1
            }),
        ));
        self.messages.push(json!({
            "id": "msg_seed_1", "turnId": "turn_seed", "threadId": SEED_THREAD, "role": "user",
            "content": "Hello?", "toolCalls": null, "thinkingContent": null, "responseJson": null,
            "createdAt": t0
        }));
        self.messages.push(json!({
            "id": "msg_seed_2", "turnId": "turn_seed", "threadId": SEED_THREAD, "role": "assistant",
            "content": "Hi! How can I help?", "toolCalls": null, "thinkingContent": null,
            "responseJson": {"model": "gpt-4o-mini", "usage": {"inputTokens": 12, "outputTokens": 6},
                              "cost_cents": 0.0054, "latency_ms": 820},
            "createdAt": t1
        }));
        self.approvals.push(approval_json(
            scope,
            SEED_APPROVAL_PENDING,
            SEED_AGENT_SUPPORT,
            SEED_THREAD,
            "refund_order",
            json!({"orderId": "ord_42", "amountCents": 1999}),
            t0,
        ));
        let mut approved = approval_json(
            scope,
            SEED_APPROVAL_APPROVED,
            SEED_AGENT_SUPPORT,
            SEED_THREAD,
            "send_email",
            json!({"to": "a@example.com"}),
            "2026-01-09T10:00:00.000Z",
        );
        resolve_approval_json(&mut approved, true, "user_admin", Some("ok"), None);
        self.approvals.push(approved);
        self.jobs.push(with_scope(
            scope,
            json!({
                "id": SEED_JOB_ID, "jobId": SEED_JOB, "displayName": "Nightly digest",
                "description": "Mails the daily digest", "invocationType": "scheduled",
                "scheduleCron": "0 3 * * *", "scheduleTimezone": "UTC", "allowedAgentIds": [],
                "payloadSchema": null, "handler": "export default async () => ({ ok: true })",
                "timeout": 60, "maxRetries": 2, "isActive": true, "handlerVersion": 1,
                "createdBy": "user_admin", "createdAt": t0, "updatedAt": t0, "lastStartedAt": null
            }),
        ));
        self.turns.push(TurnRecord {
            id: "turn_seed".into(),
            scope: scope.clone(),
            thread_id: SEED_THREAD.into(),
            agent_id: SEED_AGENT_SUPPORT.into(),
            status: "completed",
            created_at: t0.into(),
            start_nanos: 1_768_039_200_000_000_000,
            end_nanos: 1_768_039_202_000_000_000,
            input_tokens: 12,
            output_tokens: 6,
            cost_cents: 0.0054,
            tool_calls: 0,
            day: "2026-01-10".into(),
        });
    }
}

pub(crate) fn approval_json(
    scope: &Scope,
    id: &str,
    agent_id: &str,
    thread_id: &str,
    action: &str,
    args: Value,
    created: &str,
) -> Value {
    let deadline = chrono::DateTime::parse_from_rfc3339(created)
        .map(|d| {
            (d + chrono::Duration::seconds(600))
                .to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .ok();
    with_scope(
        scope,
        json!({
            "id": id, "approvalId": id, "source": "request_approval", "agentId": agent_id,
            "threadId": thread_id, "requestedBy": agent_id, "action": action,
            "details": {"summary": format!("{action} needs a human decision"), "args": args.clone()},
            "status": "pending", "timeoutSeconds": 600, "createdAt": created, "updatedAt": created,
            "resolvedAt": null, "respondedBy": null, "comment": null, "deadlineAt": deadline,
            "secondsRemaining": 600, "expired": false, "toolName": action, "args": args
        }),
    )
}

pub(crate) fn resolve_approval_json(
    v: &mut Value,
    approved: bool,
    by: &str,
    comment: Option<&str>,
    edited: Option<&Value>,
) {
    let now = now_iso();
    v["status"] = json!(if approved { "approved" } else { "rejected" });
    v["resolvedAt"] = json!(now);
    v["updatedAt"] = json!(now);
    v["respondedBy"] = json!(by);
    v["comment"] = comment.map_or(Value::Null, |c| json!(c));
    v["secondsRemaining"] = Value::Null;
    if let Some(e) = edited {
        v["editedArgs"] = e.clone();
    }
}

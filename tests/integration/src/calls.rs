//! The one dispatcher from a call's name (`"threads.list"`, as
//! `spec/conformance/rest.json` spells it) and JSON arguments (named as on
//! the wire, camelCase) to the real SDK call. The conformance suite feeds it
//! rest.json entries; the parity suite feeds it the calls it also makes
//! through the Python SDK. The answer comes back as JSON: the SDK value
//! serialised with serde (a `TurnResult` with its events as on the wire).

use platos_client::types::{
    CreateJobRequest, CreateScheduleRequest, TriggerOptions, UpdateJobRequest,
};
use platos_client::v1::{Reply, V1Client};
use platos_client::{Decision, Error, PlatosClient, Rating, TurnResult};
use serde_json::{Map, Value};

fn s<'a>(args: &'a Value, key: &str) -> &'a str {
    args[key]
        .as_str()
        .unwrap_or_else(|| panic!("arg `{key}` must be a string: {args}"))
}

/// An optional string argument; `null` is "not given".
fn opt_s(args: &Value, key: &str) -> Option<String> {
    args.get(key).filter(|v| !v.is_null()).map(|v| {
        v.as_str()
            .unwrap_or_else(|| panic!("arg `{key}` must be a string"))
            .to_owned()
    })
}

fn opt_u(args: &Value, key: &str) -> Option<u64> {
    args.get(key).map(|v| {
        v.as_u64()
            .unwrap_or_else(|| panic!("arg `{key}` must be an unsigned integer"))
    })
}

fn obj(args: &Value, key: &str) -> Map<String, Value> {
    args[key]
        .as_object()
        .unwrap_or_else(|| panic!("arg `{key}` must be an object"))
        .clone()
}

/// The approval decision `args` describe: `approved`, `comment?`, `editedArgs?`.
fn decision(args: &Value) -> Decision {
    let approved = args["approved"].as_bool().expect("approved is a bool");
    let mut decision = if approved {
        Decision::approve()
    } else {
        Decision::reject()
    };
    if let Some(c) = opt_s(args, "comment") {
        decision = decision.with_comment(c);
    }
    if args.get("editedArgs").is_some() {
        decision = decision.with_edited_args(obj(args, "editedArgs"));
    }
    decision
}

/// Sets the builder's optional arguments that `args` carries.
macro_rules! opts {
    ($b:ident, $args:expr, str: [$($sk:literal => $sf:ident),* $(,)?], u64: [$($uk:literal => $uf:ident),* $(,)?]) => {{
        $( if let Some(v) = opt_s($args, $sk) { $b = $b.$sf(v); } )*
        $( if let Some(v) = opt_u($args, $uk) { $b = $b.$uf(v); } )*
        $b
    }};
}

fn strings(args: &Value, key: &str) -> Option<Vec<String>> {
    args.get(key).map(|v| {
        v.as_array()
            .unwrap_or_else(|| panic!("arg `{key}` must be an array"))
            .iter()
            .map(|s| s.as_str().expect("strings").to_owned())
            .collect()
    })
}

/// A whole turn as JSON, its events as they go on the wire.
fn turn(t: TurnResult) -> Value {
    serde_json::json!({
        "text": t.text,
        "threadId": t.thread_id,
        "messageId": t.message_id,
        "costCents": t.cost_cents,
        "inputTokens": t.input_tokens,
        "outputTokens": t.output_tokens,
        "events": t.events.iter().map(|e| e.to_value()).collect::<Vec<_>>(),
    })
}

fn json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("SDK values serialise")
}

/// Calls the SDK method `call` names with the arguments of `args`.
pub async fn invoke(client: &PlatosClient, call: &str, args: &Value) -> Result<Value, Error> {
    Ok(match call {
        "agents.list" => {
            let mut b = client.agents().list();
            b = opts!(b, args, str: ["search" => search, "status" => status],
                u64: ["page" => page, "limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "agents.get" => json(client.agents().get(s(args, "agentId")).await?),
        "agents.list_versions" => {
            let mut b = client.agents().list_versions(s(args, "agentId"));
            b = opts!(b, args, str: ["cursor" => cursor], u64: ["take" => take, "offset" => offset]);
            json(b.await?)
        }
        "threads.create" => {
            let mut b = client.threads().create(s(args, "agentId"));
            if let Some(t) = opt_s(args, "title") {
                b = b.title(t);
            }
            json(b.await?)
        }
        "threads.list" => {
            let mut b = client.threads().list();
            b = opts!(b, args,
                str: ["agentId" => agent_id, "status" => status, "tag" => tag, "archived" => archived],
                u64: ["limit" => limit, "offset" => offset, "page" => page]);
            if let Some(p) = args.get("pinned") {
                b = b.pinned(p.as_bool().expect("pinned is a bool"));
            }
            json(b.await?)
        }
        "threads.get" => json(client.threads().get(s(args, "threadId")).await?),
        "threads.messages" => {
            let mut b = client.threads().messages(s(args, "threadId"));
            b = opts!(b, args, str: [], u64: ["limit" => limit, "offset" => offset, "page" => page]);
            json(b.await?)
        }
        "threads.artifacts" => {
            let mut b = client.threads().artifacts(s(args, "threadId"));
            b = opts!(b, args, str: [], u64: ["limit" => limit, "offset" => offset, "page" => page]);
            json(b.await?)
        }
        "threads.archive" => json(client.threads().archive(s(args, "threadId")).await?),
        "threads.unarchive" => json(client.threads().unarchive(s(args, "threadId")).await?),
        "threads.delete" => json(client.threads().delete(s(args, "threadId")).await?),
        "threads.update" => {
            let mut b = client.threads().update(s(args, "threadId"));
            b = opts!(b, args, str: ["title" => title, "status" => status], u64: []);
            json(b.await?)
        }
        "threads.rename" => {
            let mut b = client.threads().rename(s(args, "threadId"));
            if let Some(t) = opt_s(args, "title") {
                b = b.title(t);
            }
            json(b.await?)
        }
        "threads.pin" => {
            let mut b = client.threads().pin(s(args, "threadId"));
            if let Some(p) = args.get("pinned") {
                b = b.pinned(p.as_bool().expect("pinned is a bool"));
            }
            json(b.await?)
        }
        "threads.set_tags" => {
            let tags: Vec<String> = serde_json::from_value(args["tags"].clone()).expect("tags");
            json(client.threads().set_tags(s(args, "threadId"), tags).await?)
        }
        "threads.fork" => {
            let mut b = client
                .threads()
                .fork(s(args, "threadId"), s(args, "upToMessageId"));
            if let Some(t) = opt_s(args, "title") {
                b = b.title(t);
            }
            json(b.await?)
        }
        "threads.edit_and_rerun" => json(
            client
                .threads()
                .edit_and_rerun(s(args, "threadId"), s(args, "messageId"))
                .content(s(args, "content"))
                .await?,
        ),
        "threads.retry" => json(
            client
                .threads()
                .retry(s(args, "threadId"), s(args, "messageId"))
                .await?,
        ),
        "threads.replies" => json(
            client
                .threads()
                .replies(s(args, "threadId"), s(args, "messageId"))
                .await?,
        ),
        "threads.reply_counts" => json(
            client
                .threads()
                .reply_counts(s(args, "threadId"), s(args, "messageIds"))
                .await?,
        ),
        "attachments.presign" => {
            let bytes = opt_i(args, "bytes").expect("bytes");
            let mut b = client
                .attachments()
                .presign(bytes)
                .agent_id(s(args, "agentId"))
                .thread_id(s(args, "threadId"))
                .mime_type(s(args, "mimeType"));
            b = opts!(b, args, str: ["filename" => filename, "kind" => kind], u64: []);
            json(b.await?)
        }
        "tokens.guest" => {
            let mut b = client.tokens().guest(s(args, "agentId"));
            b = opts!(b, args, str: ["environmentId" => environment_id], u64: []);
            json(b.await?)
        }
        "tokens.session" => {
            let body = serde_json::from_value(args["body"].clone()).expect("a SessionTokenRequest");
            json(client.tokens().session(s(args, "entityId"), body).await?)
        }
        "memory.list" => {
            let mut b = client.memory().list();
            b = opts!(b, args, str: ["userId" => user_id, "kind" => kind, "agentId" => agent_id],
                u64: ["limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "memory.create" => {
            let mut b = client.memory().create(s(args, "content"));
            b = opts!(b, args, str: ["kind" => kind, "userId" => user_id, "agentId" => agent_id], u64: []);
            json(b.await?)
        }
        "memory.update" => {
            let mut b = client.memory().update(s(args, "id"));
            b = opts!(b, args, str: ["content" => content, "kind" => kind], u64: []);
            json(b.await?)
        }
        "memory.search" => {
            let mut b = client.memory().search(s(args, "q"));
            b = opts!(b, args, str: ["kind" => kind], u64: ["limit" => limit]);
            json(b.await?)
        }
        "memory.delete" => json(client.memory().delete(s(args, "id")).await?),
        "memory.extract" => json(client.memory().extract(s(args, "threadId")).await?),
        "memory.export" => {
            let mut b = client.memory().export();
            b = opts!(b, args, str: ["userId" => user_id], u64: []);
            json(b.await?)
        }
        "memory.import" => {
            let bundle = serde_json::from_value(args["bundle"].clone()).expect("a MemoryBundle");
            let mut b = client.memory().import(bundle);
            b = opts!(b, args, str: ["mode" => mode, "userId" => user_id], u64: []);
            json(b.await?)
        }
        "memory.relate" => {
            let mut b = client.memory().relate();
            b = opts!(b, args,
                str: ["fromEntityKey" => from_entity_key, "toEntityKey" => to_entity_key,
                      "relationshipType" => relationship_type, "fromLabel" => from_label,
                      "toLabel" => to_label, "userId" => user_id],
                u64: []);
            json(b.await?)
        }
        "memory.archive" => json(client.memory().archive(s(args, "id")).await?),
        "memory.restore" => json(client.memory().restore(s(args, "id")).await?),
        "memory.graph_entities" => {
            let mut b = client.memory().graph_entities();
            b = opts!(b, args, str: ["entityType" => entity_type], u64: ["limit" => limit]);
            json(b.await?)
        }
        "memory.graph_relationships" => {
            json(client.memory().graph_relationships(s(args, "id")).await?)
        }
        "memory.graph_path" => {
            let mut b = client.memory().graph_path(s(args, "from"), s(args, "to"));
            b = opts!(b, args, str: [], u64: ["maxHops" => max_hops]);
            json(b.await?)
        }
        "approvals.list" => {
            let mut b = client.approvals().list();
            b = opts!(b, args,
                str: ["threadId" => thread_id, "agentId" => agent_id, "status" => status,
                      "source" => source, "search" => search],
                u64: ["sinceDays" => since_days, "limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "approvals.get" => json(client.approvals().get(s(args, "approvalId")).await?),
        "approvals.resolve" => json(
            client
                .approvals()
                .resolve(s(args, "approvalId"), decision(args))
                .await?,
        ),
        "approvals.resolve_durable" => json(
            client
                .approvals()
                .resolve_durable(s(args, "token"), decision(args))
                .await?,
        ),
        "budgets.list" => {
            let mut b = client.budgets().list();
            b = opts!(b, args, str: [], u64: ["page" => page, "limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "budgets.status" => {
            let mut b = client.budgets().status();
            b = opts!(b, args, str: ["agentId" => agent_id, "userId" => user_id], u64: []);
            json(b.await?)
        }
        "monitoring.runs" => {
            let mut b = client.monitoring().runs();
            b = opts!(b, args,
                str: ["agentId" => agent_id, "threadId" => thread_id, "status" => status],
                u64: ["limit" => limit]);
            json(b.await?)
        }
        "monitoring.traces" => json(client.monitoring().traces(s(args, "threadId")).await?),
        "monitoring.cost_by_agent" => {
            let mut b = client.monitoring().cost_by_agent();
            b = opts!(b, args, str: ["search" => search],
                u64: ["days" => days, "limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "monitoring.cost_thread" => {
            json(client.monitoring().cost_thread(s(args, "threadId")).await?)
        }
        "monitoring.cost_by_scope" => {
            let mut b = client.monitoring().cost_by_scope();
            b = opts!(b, args, str: ["date" => date], u64: []);
            json(b.await?)
        }
        "bgo.tasks.list" => json(client.bgo().tasks().list().await?),
        "bgo.tasks.trigger" => {
            let mut b = client
                .bgo()
                .tasks()
                .trigger(s(args, "taskId"), args["payload"].clone());
            if let Some(o) = args.get("options") {
                let o: TriggerOptions = serde_json::from_value(o.clone()).expect("options");
                b = b.options(o);
            }
            json(b.await?)
        }
        "bgo.runs.list" => {
            let mut b = client.bgo().runs().list();
            b = opts!(b, args, str: ["taskId" => task_id, "status" => status], u64: ["limit" => limit]);
            json(b.await?)
        }
        "bgo.runs.get" => json(client.bgo().runs().get(s(args, "runId")).await?),
        "bgo.runs.cancel" => json(client.bgo().runs().cancel(s(args, "runId")).await?),
        "bgo.runs.replay" => json(client.bgo().runs().replay(s(args, "runId")).await?),
        "bgo.schedules.list" => json(client.bgo().schedules().list().await?),
        "bgo.schedules.create" => {
            let req: CreateScheduleRequest =
                serde_json::from_value(args.clone()).expect("schedule args");
            json(client.bgo().schedules().create(req).await?)
        }
        "bgo.schedules.activate" => json(
            client
                .bgo()
                .schedules()
                .activate(s(args, "scheduleId"))
                .await?,
        ),
        "bgo.schedules.deactivate" => json(
            client
                .bgo()
                .schedules()
                .deactivate(s(args, "scheduleId"))
                .await?,
        ),
        "bgo.schedules.delete" => json(
            client
                .bgo()
                .schedules()
                .delete(s(args, "scheduleId"))
                .await?,
        ),
        "bgo.batches.trigger" => {
            let payloads = args["payloads"].as_array().expect("payloads").clone();
            let mut b = client.bgo().batches().trigger(s(args, "taskId"), payloads);
            if let Some(o) = args.get("options") {
                let o: TriggerOptions = serde_json::from_value(o.clone()).expect("options");
                b = b.options(o);
            }
            json(b.await?)
        }
        "bgo.batches.get" => json(client.bgo().batches().get(s(args, "batchId")).await?),
        "bgo.raw" => json(
            client
                .bgo()
                .raw(
                    s(args, "method"),
                    s(args, "path"),
                    args.get("body").cloned(),
                )
                .await?,
        ),
        "jobs.list" => {
            let mut b = client.jobs().list();
            b = opts!(b, args, str: ["search" => search, "status" => status],
                u64: ["page" => page, "limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "jobs.create" => {
            let req: CreateJobRequest = serde_json::from_value(args.clone()).expect("job args");
            json(client.jobs().create(req).await?)
        }
        "jobs.get" => json(client.jobs().get(s(args, "jobId")).await?),
        "jobs.update" => {
            let req: UpdateJobRequest =
                serde_json::from_value(args["changes"].clone()).expect("job changes");
            json(client.jobs().update(s(args, "jobId"), req).await?)
        }
        "jobs.delete" => json(client.jobs().delete(s(args, "jobId")).await?),
        "jobs.dispatch" => json(
            client
                .jobs()
                .dispatch(s(args, "jobId"), obj(args, "payload"))
                .await?,
        ),
        "threads.ask" => {
            let mut b = client
                .threads()
                .ask(s(args, "threadId"), s(args, "message"));
            b = opts!(b, args, str: ["agentId" => agent_id], u64: []);
            if let Some(ids) = strings(args, "attachmentIds") {
                b = b.attachment_ids(ids);
            }
            turn(b.await?)
        }
        "agents.ask" => {
            let mut b = client.agents().ask(s(args, "agentId"), s(args, "message"));
            b = opts!(b, args,
                str: ["threadId" => thread_id, "systemPromptOverride" => system_prompt_override,
                      "modelLabel" => model_label],
                u64: []);
            if args.get("outputSchema").is_some() {
                b = b.output_schema(obj(args, "outputSchema"));
            }
            turn(b.await?)
        }
        "messages.rate" => {
            let rating = match s(args, "rating") {
                "up" => Rating::Up,
                "down" => Rating::Down,
                other => panic!("rating `{other}`"),
            };
            let mut b = client.messages().rate(s(args, "messageId"), rating);
            b = opts!(b, args, str: ["comment" => comment], u64: []);
            json(b.await?)
        }
        "messages.unrate" => json(client.messages().unrate(s(args, "messageId")).await?),
        "messages.rating" => json(client.messages().rating(s(args, "messageId")).await?),
        "tools.list" => {
            let mut b = client.tools().list();
            b = opts!(b, args, str: ["category" => category], u64: []);
            json(b.await?)
        }
        "tools.search" => {
            let mut b = client.tools().search(s(args, "q"));
            b = opts!(b, args, str: ["entity" => entity], u64: ["limit" => limit]);
            json(b.await?)
        }
        "tools.stats" => json(client.tools().stats().await?),
        "tools.matrix" => {
            let mut b = client.tools().matrix();
            b = opts!(b, args,
                str: ["search" => search, "category" => category, "status" => status,
                      "entityId" => entity_id],
                u64: ["page" => page, "limit" => limit, "offset" => offset]);
            json(b.await?)
        }
        "tools.set_enabled" => json(
            client
                .tools()
                .set_enabled(
                    s(args, "entityId"),
                    s(args, "toolName"),
                    args["enabled"].as_bool().expect("enabled"),
                )
                .await?,
        ),
        "tools.test" => {
            let mut b = client.tools().test(s(args, "toolId"), obj(args, "params"));
            b = opts!(b, args, str: ["sourceEntityId" => source_entity_id], u64: []);
            json(b.await?)
        }
        "tools.execute" => {
            let mut b = client.tools().execute(s(args, "tool"));
            b = opts!(b, args, str: ["purpose" => purpose], u64: []);
            if args.get("params").is_some() {
                b = b.params(obj(args, "params"));
            }
            json(b.await?)
        }
        other => panic!("rest.json names an unknown call `{other}`"),
    })
}

/// A V1 call's answer as JSON (the envelope, whole) and whether the server
/// replayed it for its idempotency key.
pub struct V1Answer {
    pub body: Value,
    pub replayed: bool,
    pub status: u16,
}

fn reply<T: serde::Serialize>(r: Reply<T>) -> V1Answer {
    V1Answer {
        replayed: r.replayed(),
        status: r.status(),
        body: json(r.into_inner()),
    }
}

fn opt_i(args: &Value, key: &str) -> Option<i64> {
    args.get(key).filter(|v| !v.is_null()).map(|v| {
        v.as_i64()
            .unwrap_or_else(|| panic!("arg `{key}` must be an integer"))
    })
}

/// Sets the caller's idempotency key when `args` carries one.
macro_rules! key {
    ($b:ident, $args:expr) => {{
        if let Some(k) = opt_s($args, "idempotencyKey") {
            $b = $b.idempotency_key(k);
        }
        $b
    }};
}

/// Calls the V1 method `call` (`<tag>.<method>` of `spec/v1.yaml`) with the
/// named wire arguments of `args`.
pub async fn invoke_v1(client: &V1Client, call: &str, args: &Value) -> Result<V1Answer, Error> {
    Ok(match call {
        "provider_keys.rotate_secret" => {
            let mut b = client
                .provider_keys()
                .rotate_secret(s(args, "id"))
                .environment_id(s(args, "environmentId"))
                .plaintext(s(args, "plaintext"));
            b = key!(b, args);
            reply(b.await?)
        }
        "bff_magic_link.start" => {
            let mut b = client.bff_magic_link().start(s(args, "email"));
            b = key!(b, args);
            reply(b.await?)
        }
        "bff_magic_link.complete" => {
            reply(client.bff_magic_link().complete(s(args, "token")).await?)
        }
        "bff_session.exchange" => {
            let mut b = client.bff_session().exchange(s(args, "token"));
            b = key!(b, args);
            reply(b.await?)
        }
        "bff_session.sign_out" => {
            let mut b = client.bff_session().sign_out();
            b = key!(b, args);
            reply(b.await?)
        }
        "environment_scope.resolve" => {
            let mut b = client
                .environment_scope()
                .resolve()
                .organization_slug(s(args, "organizationSlug"))
                .project_slug(s(args, "projectSlug"))
                .environment_slug(s(args, "environmentSlug"));
            if let Some(a) = opt_s(args, "access") {
                b = b.access(a);
            }
            reply(b.await?)
        }
        "environment_end_users.list" => {
            let mut b = client
                .environment_end_users()
                .list(s(args, "environmentId"));
            b = opts!(b, args, str: ["cursor" => cursor, "search" => search, "status" => status],
                u64: ["limit" => limit]);
            reply(b.await?)
        }
        "environment_variables.list" => reply(
            client
                .environment_variables()
                .list(s(args, "environmentId"))
                .await?,
        ),
        "environment_variables.set" => {
            let mut b = client
                .environment_variables()
                .set(s(args, "environmentId"), s(args, "key"))
                .value(s(args, "value"));
            if let Some(secret) = args.get("secret").and_then(Value::as_bool) {
                b = b.secret(secret);
            }
            b = key!(b, args);
            reply(b.await?)
        }
        "identity_session.get" => reply(client.identity_session().get().await?),
        "invitations.accept" => {
            let mut b = client.invitations().accept(s(args, "token"));
            b = key!(b, args);
            reply(b.await?)
        }
        "invitations.issue" => {
            let mut b = client
                .invitations()
                .issue(s(args, "organizationId"), s(args, "email"));
            if let Some(role) = opt_s(args, "role") {
                b = b.role(role);
            }
            b = key!(b, args);
            reply(b.await?)
        }
        "organizations.list" => reply(client.organizations().list().await?),
        "organizations.create" => {
            let mut b = client
                .organizations()
                .create(s(args, "name"), s(args, "slug"));
            b = key!(b, args);
            reply(b.await?)
        }
        "organization_members.list" => reply(
            client
                .organization_members()
                .list(s(args, "organizationId"))
                .await?,
        ),
        "organization_members.change_role" => {
            let mut b = client.organization_members().change_role(
                s(args, "organizationId"),
                s(args, "membershipId"),
                s(args, "role"),
            );
            b = key!(b, args);
            reply(b.await?)
        }
        "projects.list" => reply(client.projects().list().await?),
        "projects.create" => {
            let mut b = client
                .projects()
                .create()
                .organization_id(s(args, "organizationId"))
                .name(s(args, "name"))
                .slug(s(args, "slug"))
                .environment_name(s(args, "environmentName"))
                .environment_slug(s(args, "environmentSlug"));
            b = key!(b, args);
            reply(b.await?)
        }
        "mcp_entity_tokens.list" => {
            let mut b = client
                .mcp_entity_tokens()
                .list(s(args, "entityId"), s(args, "environmentId"));
            b = opts!(b, args, str: ["cursor" => cursor], u64: ["limit" => limit]);
            reply(b.await?)
        }
        "mcp_entity_tokens.mint" => {
            let mut b = client
                .mcp_entity_tokens()
                .mint(
                    s(args, "entityId"),
                    strings(args, "scopes").unwrap_or_default(),
                )
                .environment_id(s(args, "environmentId"))
                .label(s(args, "label"));
            b = opts!(b, args, str: ["mcpUserId" => mcp_user_id], u64: []);
            if let Some(ttl) = opt_i(args, "ttlSeconds") {
                b = b.ttl_seconds(ttl);
            }
            b = key!(b, args);
            reply(b.await?)
        }
        "mcp_entity_tokens.revoke" => reply(
            client
                .mcp_entity_tokens()
                .revoke(s(args, "entityId"), s(args, "tokenId"))
                .environment_id(s(args, "environmentId"))
                .await?,
        ),
        "mcp_organization_policies.list" => reply(
            client
                .mcp_organization_policies()
                .list(s(args, "environmentId"))
                .await?,
        ),
        "mcp_organization_policies.set" => {
            let mut b = client.mcp_organization_policies().set(
                s(args, "environmentId"),
                s(args, "pattern"),
                s(args, "state"),
            );
            b = key!(b, args);
            reply(b.await?)
        }
        "mcp_organization_policies.remove" => {
            let mut b = client
                .mcp_organization_policies()
                .remove(s(args, "environmentId"), s(args, "policyId"));
            b = key!(b, args);
            reply(b.await?)
        }
        "mcp_platform_tokens.list" => {
            let mut b = client.mcp_platform_tokens().list(s(args, "environmentId"));
            b = opts!(b, args, str: ["cursor" => cursor], u64: ["limit" => limit]);
            reply(b.await?)
        }
        "mcp_platform_tokens.mint" => {
            let mut b = client.mcp_platform_tokens().mint(
                s(args, "environmentId"),
                s(args, "name"),
                strings(args, "permissions").unwrap_or_default(),
                s(args, "tier"),
            );
            if let Some(ttl) = opt_i(args, "ttlSeconds") {
                b = b.ttl_seconds(ttl);
            }
            b = key!(b, args);
            reply(b.await?)
        }
        "mcp_platform_tokens.revoke" => reply(
            client
                .mcp_platform_tokens()
                .revoke(s(args, "id"), s(args, "environmentId"))
                .await?,
        ),
        other => panic!("v1.json names an unknown call `{other}`"),
    })
}

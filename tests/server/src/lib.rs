//! A Platos-compatible in-memory server for tests and the quick start.
//!
//! It speaks the Platos wire protocol (REST under `/api/v1/agent` as `spec/openapi.yaml`
//! describes it, Socket.IO v4 on `/agent`) and is deliberately independent of
//! `platos-client`: JSON is built by hand and tokens are verified with
//! `jsonwebtoken`, so a client bug cannot be mirrored by the server.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use platos_test_server::TestServer;
//! let server = TestServer::start().await?;
//! let url = server.base_url(); // http://127.0.0.1:PORT
//! let token = server.session_token(); // end-user token for the seeded scope
//! # let _ = (url, token); Ok(()) }
//! ```
//!
//! The binary serves the same thing for humans:
//! `cargo run -p platos-test-server -- --port 3100` prints the URL, the seeded scope,
//! the secret, the api key and ready-made end-user and operator tokens
//! (`--help` lists `--secret`, `--api-key`, ping and pacing options, `--no-seed`,
//! `--no-job-runtime`).
//!
//! # Seeded data (unless `seed(false)`)
//!
//! | What | Value |
//! |---|---|
//! | scope | [`DEFAULT_ORGANIZATION_ID`] / [`DEFAULT_PROJECT_ID`] / [`DEFAULT_ENVIRONMENT_ID`] |
//! | user | [`DEFAULT_USER_ID`] |
//! | entity / secret / api key | [`DEFAULT_ENTITY_ID`], [`DEFAULT_SECRET`], [`DEFAULT_API_KEY`] |
//! | agents | [`SEED_AGENT_SUPPORT`] (active, versions `ver_support_1`, `ver_support_2`), [`SEED_AGENT_RESEARCH`] (paused, `ver_research_1`) |
//! | thread | [`SEED_THREAD`] (2 messages, 1 turn in traces/costs) |
//! | approvals | [`SEED_APPROVAL_PENDING`], [`SEED_APPROVAL_APPROVED`] |
//! | budgets | `cap_scope_day` (scope, day, 500¢), `cap_support_month` (agent, month, 2500.5¢) |
//! | jobs | [`SEED_JOB_ID`] (internal id, what `/jobs/{id}` takes), key [`SEED_JOB`] |
//! | bgo tasks | [`SEED_TASKS`] |
//! | tools | [`SEED_TOOLS`]: `lookup` (search; entities `ent_crm`, `ent_docs`), `send_email` (communication; `ent_mailer`), `refund_order` (commerce; `ent_shop`, **disabled**), `create_ticket` (support; `ent_helpdesk`, **unavailable**: no callback URL, 5 failures), `get_weather` (search; `ent_docs`) |
//!
//! Any other scope a caller uses gets its own copy of the agents, versions, caps,
//! tools and tasks on first use (same ids), so two-scope isolation tests need no setup.
//!
//! # Authentication rules
//!
//! * `X-Platos-Session-Token`: HS256 JWT signed with the entity secret; claims
//!   `organizationId, projectId, environmentId, userId, entityId` (must equal the
//!   server's entity id), `iat`, `exp` (epoch seconds). Expired, bad signature,
//!   `iat` more than 60 s ahead, missing claim → `401 {"statusCode":401,"message":"Unauthorized"}`.
//! * Direct mode: `Authorization: Bearer <api key>` plus the `X-Platos-Organization-Id`,
//!   `-Project-Id`, `-Environment-Id` (and optional `-User-Id`) headers; missing scope → 400.
//! * **Who is an operator**: a session token only when it carries the claim
//!   `"role": "operator"` ([`TestServer::operator_token`]); direct (api-key) mode always,
//!   with or without `X-Platos-User-Id`: the api key is the backend's own credential
//!   (server to server), and the user id only says whose threads it creates and whose
//!   budget it asks about. Everyone else is an end user.
//! * **Operator-only** (end users get `403 {"error":"OPERATOR_ONLY","message":…}`):
//!   agents list/get/versions, budgets list/status, the monitoring dashboards (runs,
//!   cost-by-agent, cost, approvals list/get), all six jobs routes, and the tool
//!   actions setEnabled/test/execute. Reading the tool registry (list, search, stats,
//!   matrix) is open to any caller in the scope, like the real server.
//! * **Ownership-gated** (the thread's owner or an operator; anyone else gets the
//!   framework 404 `"Thread not found"`): threads and their messages/artifacts,
//!   one-shot turns, `/monitoring/trace/{threadId}`, `/monitoring/cost/thread/{threadId}`;
//!   a message can be rated or read only when its thread is visible (else 404).
//! * **End-user only**: rating writes (`POST`/`DELETE /messages/{id}/rating`); operator
//!   tokens and api-key callers get `403 {"code":"RATING_ACTOR_FORBIDDEN","message":…}`.
//! * Open to every caller in scope: threads, approval *resolve*, bgo (`/trigger/*`).
//! * Socket: token from the CONNECT auth `token` or the `x-platos-session-token`
//!   upgrade header; else direct scope from the auth payload or `x-platos-*` headers
//!   (`userId` required; no api key is read, like the gateway). A refusal is an
//!   `error {message}` event followed by a namespace disconnect, never a CONNECT_ERROR.
//!
//! # REST routes (`/api/v1/agent/...`)
//!
//! Lists answer the envelope `{<name>, items, total, limit, offset, hasMore, pagination,
//! filters}`; a bad `limit`/`offset`/`page` is `400 {"code":"INVALID_PAGINATION"}`.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /agents` (`page, limit, offset, search, status`), `GET /agents/{id}`, `GET /agents/{id}/versions` (`cursor, take, offset`) | envelope `agents` / Agent (404 `{error:"Agent not found", agentId}`) / envelope `versions` |
//! | `POST /threads`, `GET /threads`, `GET|DELETE /threads/{id}`, `GET /threads/{id}/messages`, `GET /threads/{id}/artifacts`, `POST /threads/{id}/archive|unarchive` | Thread (201) / envelope `threads` / Thread, `{archived, archivedAt}` / envelope `messages` / envelope `artifacts` / Thread |
//! | `POST /threads/{id}/messages` `{message, agentId?, attachmentIds?}` | one-shot turn, below |
//! | `POST /agents/{id}/messages` `{message, threadId?, attachmentIds?, outputSchema?, systemPromptOverride?, modelLabel?}` | one-shot turn; without `threadId` a new thread owned by the caller |
//! | `GET /monitoring/approvals`, `GET /monitoring/approvals/{id}`, `POST /approvals/{id}/resolve` `{approved, comment?, editedArgs?}` | envelope `rows` + `pendingCount, fetchedAt` / Approval / receipt `{resolved, approvalId, approved, …}` |
//! | `POST /durable-approvals/{token}/resolve` `{approved, comment?, approvalId?}` | `{resolved: true, token, approved}`; an unknown or completed waitpoint is HTTP 200 `{resolved: false, error}` ([`TestServer::open_waitpoint`]) |
//! | `GET /budgets`, `GET /budgets/status` (`agentId, userId`) | envelope `caps` / `{caps:[BudgetStatus], blocked, reason?}` |
//! | `GET /monitoring/runs`, `GET /monitoring/trace/{threadId}`, `GET /monitoring/cost-by-agent` (`days`), `GET /monitoring/cost` (`date`) | envelope `runs` / ThreadTrace / envelope `rows` + `fetchedAt` / cost object |
//! | `GET /monitoring/cost/thread/{threadId}` | `{threadId, costCents, inputTokens, outputTokens, tasks, turnCount, turns:[{turnId, agentId, status, createdAt, inputTokens, outputTokens, costCents}], fetchedAt}` |
//! | `GET /jobs`, `POST /jobs`, `GET|PATCH|DELETE /jobs/{id}`, `POST /jobs/{id}/dispatch` `{payload}` | see Jobs below |
//! | `GET|POST|DELETE /messages/{messageId}/rating` | see Ratings below |
//! | `GET /tools`, `/tools/search`, `/tools/stats`, `/tools/matrix`, `PATCH /tools/{entityId}/{toolName}/enabled`, `POST /tools/{toolId}/test`, `POST /tools/execute` | see Tools below |
//! | `/trigger/tasks`, `/trigger/runs`, `/trigger/schedules`, `/trigger/batches` | the deprecated bgo surface |
//! | `GET /openapi.json` (no credential) | every REST route this server answers (V1 and the event stream included) as an OpenAPI 3.1 document marked `x-platos-inventory: test-server`, listed from the table that builds the router (`routes.rs`); `cargo xtask spec-diff` compares it with `spec/` |
//!
//! Beside `/api/v1/agent`: the memory routes (`/api/v1/memory…`, list, create, update,
//! delete, search, extract, export, import, relate, archive, restore and the graph;
//! refusals in HTTP 200 `{error, status}`; an end user acts on their own memories only),
//! mounted again under the deprecated `/api/v1/platos/memory`, whose every answer carries
//! `Deprecation`, `Sunset` and `Link`; and the token mints (`POST /api/v1/public/guest-token`,
//! `POST /api/v1/entities/{id}/session-tokens`), where a body needs a `Content-Length` of at
//! most 256 KiB (else `413 {"error":"payload_too_large","limit":262144}`, chunked included).
//!
//! **One-shot turns** answer `200 {text, threadId, events, costCents, messageId}`: `events`
//! is the scripted agent's `agent_event` list (`status thinking`, `meta`, `thinking`,
//! `status executing`, `tool_call`, `tool_result`, `status generating`, N×`token` quoting
//! the message, `message_persisted {messageId, costCents, …}`, `done {usage}`; `[tokens=N]`
//! works, up to 10 000), each with `threadId`. The user and assistant messages, the turn (trace, costs)
//! and the thread's `turnCount` are persisted before the answer. A missing or blank
//! `message` is `400 {"error":"message is required in the request body"}`; a repeated
//! `idempotency-key` replays the first answer (`Idempotency-Replayed: true`), no second turn.
//!
//! **Jobs** are addressed by the internal `id` ([`SEED_JOB_ID`]), not the `jobId` key.
//! `POST` answers `201 {job, syntaxError}`, `PATCH` `{job, syntaxError}`; a handler with
//! unbalanced `{}`/`[]`/`()` gets `syntaxError: "SyntaxError: …"` and is stored inactive.
//! 400 `"jobId must be 1-64 lowercase alphanumeric + hyphens"`, `"displayName is
//! required"`, `"handler source is required"`; 409 `"A job with this jobId already exists
//! in this scope"`; 404 `"Job not found"`. Dispatch answers `{accepted:true, jobId}`
//! (`jobId` = the addressed id), 404 `"Job not found or inactive"`, and with
//! [`TestServerBuilder::job_runtime`]`(false)` `200 {accepted:false, message, jobId}`.
//!
//! **Ratings**: the id is the `messageId` of `message_persisted` (an assistant message,
//! socket or one-shot turn). `POST {rating: 1|-1, comment?}` → `{rating: RatingRecord}`
//! (one row per message and end user; re-rating overwrites), `DELETE` → `{removed}`,
//! `GET` → `{userRating: RatingRecord|null, aggregate:{ups, downs}}`. RatingRecord:
//! `id, messageId, threadId, agentId, agentVersionId|null, userId, rating, comment|null,
//! createdAt, updatedAt`. 400 `"rating must be 1 or -1"`; 404 `{code:"MESSAGE_NOT_FOUND",
//! message}`.
//!
//! **Tools**: `GET /tools?category=` → `{tools, total}` (tool: `id, name, description,
//! category, paramSchema, entityIds`); `GET /tools/search?q=&limit=&entity=` → `{query,
//! results, total}` (results are tools plus `score`, best first; default limit 15, `q`
//! required); `GET /tools/stats` → `{totalTools, totalMappings, entities, dispatchable,
//! disabled, unavailable, categories:{name: count}, indexedAt}`; `GET /tools/matrix`
//! (`page, limit, offset, search, category, status, entityId`) → envelope `rows` +
//! `environmentId, aggregates{dispatchable, unavailable, disabled}, fetchedAt` (aggregates
//! ignore `status`); row `toolId, toolName, description, category, paramSchema, entityId,
//! entityPk, callbackUrl, enabled, dispatchable, health{lastStatus, failCount, totalCalls,
//! totalFailures, avgLatencyMs, p95LatencyMs, lastCalledAt}`. `PATCH …/enabled
//! {enabled}` → `{ok:true, entityId, toolName, enabled}` (404 `"Tool mapping not found for
//! this scope"`). `POST /tools/{toolId}/test {params, sourceEntityId?, headers?}` →
//! `{status:200, headers, body:{ok, tool, entityId, params}, durationMs}` or, for an
//! entity without a callback URL, `{status:502, headers:{}, body:null, durationMs, error}`;
//! the call counts in the mapping's health; 404 `{error:"Tool not found in scope", toolId}`
//! / `{error:"Entity not found for this tool", toolId}`; the 21st call in 60 s per user and
//! scope is `429 {error:"Rate limit exceeded for tool test", limit:20, retryAfter:60}`.
//! `POST /tools/execute {tool, params?, purpose?}` (tool name or id) → `{ok:true, toolId,
//! toolName, entityId, result:{tool, params, purpose}, durationMs}` through the first
//! dispatchable entity, `{ok:false, toolId, toolName, entityId:null, error, durationMs:0}`
//! when none, 404 `{error:"Tool not found in scope", tool}`.
//!
//! # The scripted agent (socket `message`)
//!
//! Every `message {message, threadId}` on a thread visible to the socket streams
//! `agent_event`s to the room `thread:{id}` (the sender joins it; `join_thread`
//! joins too): `status thinking`, `meta` (snake_case), `thinking`, `status executing`,
//! `tool_call`, `tool_result`, [`approval_needed` … `approval_resolved`],
//! `artifact_start`, 3×`artifact_delta`, `artifact_committed`, `status generating`,
//! N×`token`, `message_persisted`, `done {usage}`. User and assistant messages,
//! the artifact, the approval and the turn's trace/cost are persisted.
//! Text markers (case-insensitive) change the script:
//!
//! | Marker | Effect |
//! |---|---|
//! | contains `approval` | pauses on `approval_needed` until resolved by REST or `approval_response` (also for every turn with [`Faults::set_approval_every_turn`]) |
//! | `[tokens=N]` | exactly N `token` events `w1 `, `w2 `, … |
//! | `[hang]` | stops after the first `token` until `stop` arrives, or until [`Faults::restart_realtime`] (which kills it, or lets a durable turn go on) |
//! | `[error]` | `error {code:"provider_unavailable"}` then `done {aborted:true}` |
//! | `[unknown-event]` | adds an event of unknown type `x_future_event` after `meta` |
//! | `[malformed]` | adds `{type:"token"}` without `text` after `meta` |
//!
//! `stop {threadId}` aborts the thread's turns: `agent_event {type:"done", threadId, stopped:true}`.
//! A `message` repeating an `idempotencyKey` already used on the thread starts no turn.
//! [`Faults::set_event_delay`] spaces the events out.
//!
//! # Fault knobs ([`TestServer::faults`], usable while a test runs)
//!
//! | Call | Effect |
//! |---|---|
//! | [`Faults::fail_next_rest`]`(`[`RestFault`]`)` | the next call(s) answer a canned status/body/headers (`RestFault::unavailable()`, `::internal()`, `::rate_limited(secs)`, `::shutting_down(secs)`, `::new(status, body)`, `.times(n)`, `.header(k, v)`, `.path_contains(s)`, `.v1_only()`) |
//! | [`Faults::set_rest_delay`] | every REST answer waits first |
//! | [`Faults::drop_socket_after_events`]`(n)` | after the n-th `agent_event` frame is fully written, the TCP connection closes without a WebSocket close frame |
//! | [`Faults::silence_socket_after_events`]`(n)` / [`Faults::silence_sockets_now`] | the connection carries nothing more (no pings, no events) yet stays open: only the client's `pingInterval + pingTimeout` check can notice |
//! | [`Faults::drop_sockets_now`] | every WebSocket connection closes now, no close frame |
//! | [`Faults::send_socket_error`]`(json, disconnect)` | socket `error` event to every socket (e.g. `SESSION_EXPIRED`), optionally followed by `41<ns>,` |
//! | [`Faults::refuse_next_message`]`(`[`SocketRefusal`]`)` | the next `message` gets e.g. `SocketRefusal::rate_limit(secs)` (`error {code:"rate_limit",…}` + socket-level `done {stopped:true}`) instead of a turn |
//! | [`Faults::fail_next_handshakes`]`(n)` | the next n Engine.IO upgrades answer 503 |
//! | [`Faults::drop_next_handshake_at`]`(`[`HandshakeStep`]`)` | the next connection to reach that step is dropped there: instead of the `101` (`Upgrade`), right after the Engine.IO open packet (`Open`), the namespace ack (`NamespaceAck`) or the gateway's `connected` event (`Connected`) |
//! | [`Faults::inject_frame`]`(&`[`RawFrame`]`)` | a raw frame on every open WebSocket, between two of the server's own: `Text(bytes)` (any bytes, e.g. garbage), `Binary(bytes)`, `Oversize(n)` (an n-byte message) |
//! | [`Faults::emit_to_sockets`], [`Faults::disconnect_sockets`] | arbitrary server events, server-side namespace disconnect |
//! | [`Faults::set_event_delay`], [`Faults::set_approval_every_turn`] | scripted agent pacing and approvals |
//! | [`Faults::restart_realtime`]`(`[`Restart`]`)` | a gateway restart: `Durable` drops every socket and the turns pump on to their thread's room once it is re-joined; `Forget`, `PersistAnswer`, `PersistFailure` kill the running turns at their next event (persisting nothing, the answer, or an assistant message with `responseJson.error`), wait for them, then drop every socket |
//! | [`Faults::refuse_upgrades`]`(Some(status))` | every `/socket.io/` upgrade gets `status` with a `text/html` page, like a proxy that will not tunnel |
//! | [`Faults::set_sse_heartbeat`] | interval of the HTTP lane's `heartbeat` frames (default 15 s); [`Faults::sse_heartbeats_sent`] counts them |
//!
//! # HTTP turn lane
//!
//! `POST /api/v1/agent/threads/{threadId}/stream` runs the socket's scripted turn (same
//! events, markers and approval pause) as SSE: `id: n` / `data: <event + "_seq": n>`,
//! heartbeats sharing the numbering, the response closed after `done`; closing the
//! request stops the turn (its turn record says `stopped`). With `outputSchema` the
//! turn adds `structured_output {object, retryCount: 0}` (an object built to satisfy
//! the schema) before `message_persisted`; with the `[invalid-output]` marker it ends
//! instead with `error {code:"structured_output_invalid", validationErrors, retryCount}`.
//!
//! # V1 event streams ([`TestServer::v1_streams`])
//!
//! `GET /api/v1/environments/{environmentId}/streams/{streamId}` (operator Bearer token
//! only) reads an in-memory journal ([`V1Streams::append`], [`V1Streams::go_offline`]);
//! each connection follows the next queued [`StreamPlan`] (refuse, redeliver, skip a
//! seq, cut inside a frame or a character, heartbeats, `retry:`, a minted
//! `stream.error`, split writes) and is recorded as a [`StreamConnection`] (the
//! `Last-Event-ID` sent, the meta's `replayFrom`, the seqs written, how it ended).
//!
//! # V1 operator API (`spec/v1.yaml`, [`TestServer::v1_api`])
//!
//! The 27 JSON operations, in memory. Shared rules, in this order:
//!
//! * An `X-Platos-Session-Token` header is refused on every V1 route: 401
//!   `UNAUTHENTICATED`. Auth is the stream route's: `Authorization: Bearer <operator
//!   token>` ([`TestServer::operator_token`]); none or invalid → 401 `UNAUTHENTICATED`,
//!   an end-user token → 403 `FORBIDDEN_SCOPE`. Magic-link start/complete and session
//!   exchange read no credential; sign-out takes one or none. Refusals are the V1
//!   envelope `{error:{code, title, body, errorId, traceRef, version:"1", fields?,
//!   retryAfterSec?}}`.
//! * `x-platos-idempotency-class`: `required` without `idempotency-key` → 400
//!   `IDEMPOTENCY_KEY_REQUIRED`; `required`/`accepted` with a key not 1–255 of
//!   `A–Z a–z 0–9 _ . : -` → 400 `IDEMPOTENCY_KEY_MALFORMED`; the first answer (refusals
//!   included, 5xx excepted) is stored per (caller, operation, key) and a repeat with
//!   the same path and body answers it again with `idempotency-replayed: true` and no
//!   second effect; another path or body → 409 `IDEMPOTENCY_REQUEST_MISMATCH`.
//!   `exempt`/`not-applicable` never read the header.
//! * A body that is not a JSON object, or bad fields, → 400 `INVALID_REQUEST` with
//!   `fields:[{field:"body.<name>"|"query.<name>", code, message}]`, every problem at once.
//! * Items are `{data, meta:{contractVersion:"1"}}`; collections `{data, page:{cursor,
//!   nextCursor, limit, hasMore, total}}`. Paged lists (end users, platform and entity
//!   tokens) take `cursor` (opaque, `pg1.<hex offset>`) and `limit` (default 25, 1–100,
//!   else 400 `INVALID_REQUEST` on `query.limit`/`query.cursor`; a cursor past the
//!   end is an empty last page); unpaged ones answer
//!   every row with `nextCursor: null`, `hasMore: false`, `limit` = `total` = rows.
//! * Any operator with no membership becomes OWNER of the seeded organization on its
//!   first call. Environment-scoped routes answer 404 `TENANCY_NOT_FOUND` for an
//!   environment outside the caller's organizations.
//!
//! Seeded (with `seed(true)`): organization = the scope's (`slug` `test-org`; ADMIN
//! `mem_user_admin`, MEMBER `mem_user_member`), project (`test-project`), environment
//! (`production`); variables `LOG_LEVEL`, `REGION` (PLAIN) and `OPENAI_API_KEY` (SECRET:
//! `value: null`, `hasSecret: true`); end users `eu_1`…`eu_5` (`eu_3` disabled);
//! policy [`SEED_POLICY`] (`shell.*` → `block`); provider key [`SEED_PROVIDER_KEY`].
//!
//! | Route | Class | Answer |
//! |---|---|---|
//! | `GET /api/v1/organizations` | n/a | unpaged, each with `membership {id, role, deactivatedAt}` |
//! | `POST /api/v1/organizations` `{name, slug}` | accepted | 201; 409 `TENANCY_SLUG_TAKEN` |
//! | `GET /api/v1/organizations/{id}/members` | n/a | unpaged; OWNER/ADMIN only (403 `TENANCY_FORBIDDEN`); 404 `TENANCY_NOT_FOUND` |
//! | `PATCH /api/v1/organizations/{id}/members/{membershipId}` `{role}` | accepted | `{changed}`; 409 `TENANCY_LAST_OWNER` |
//! | `POST /api/v1/organizations/{id}/invitations` `{email, role?}` | accepted | 201 `{invitationId, expiresAt, supersededCount}` (token via [`V1Api::invitation_token`]) |
//! | `POST /api/v1/invitations/accept` `{token}` | accepted | `{organizationId, role, membershipId}`; 404 `TENANCY_INVITATION_NOT_FOUND`, 403 `TENANCY_INVITATION_EMAIL_MISMATCH` (an operator's address is `<userId>@example.test`) |
//! | `GET /api/v1/projects`, `POST /api/v1/projects` `{organizationId, name, slug, environmentName, environmentSlug}` | n/a, accepted | unpaged (`through: "organization"`) / 201 `{project, environment, membership}` |
//! | `GET /api/v1/environments/by-slugs?organizationSlug&projectSlug&environmentSlug&access?` | n/a | the scope; 404 `TENANCY_NOT_FOUND`, 400 `TRANSPORT_REQUEST_INVALID` (access), 403 `TENANCY_ENVIRONMENT_FORBIDDEN` |
//! | `GET /api/v1/environments/{id}/variables`, `PUT …/variables/{key}` `{value, secret?}` | n/a, accepted | unpaged / the metadata (secret → `value: null`), `version` +1 per write |
//! | `GET /api/v1/environments/{id}/end-users?cursor&limit&search&status` | n/a | paged; 400 `INVALID_END_USER_FILTER` |
//! | `POST /api/v1/bff/magic-link` `{email}` | accepted | 202 `{email, expiresAt}` (link via [`V1Api::magic_link_token`]) |
//! | `POST /api/v1/bff/magic-link/complete` `{token}` | exempt | `{userId, sessionId, expiresAt}` + `Set-Cookie: __Host-platos_session=…`; 401 `UNAUTHENTICATED` once spent or unknown |
//! | `POST /api/v1/bff/session` `{token}`, `DELETE /api/v1/bff/session` | accepted | OperatorSession + cookie (the token) / 204, cookie cleared |
//! | `GET /api/v1/identity/session` | n/a | OperatorSession `{sessionId, actorUserId, effectiveUserId, email, expiresAt, mfaVerifiedAt: null, impersonating: null}` |
//! | `GET|POST /mcp/platform/tokens` (`environmentId` query / body `{environmentId, name, permissions, tier, ttlSeconds}`) | n/a, required | paged credentials / 201 with the one-time `token` |
//! | `POST /mcp/platform/tokens/{id}/revoke` `{environmentId}` | exempt | `{tokenId, label, revokedAt, newlyRevoked, previousState, revokedBy}`; 404 `CREDENTIAL_NOT_FOUND` |
//! | `GET|POST /mcp/entity/{entityId}/tokens`, `DELETE …/tokens/{tokenId}?environmentId` | n/a, required, exempt | as the platform tokens (`tier: null`, `principalId` = `mcpUserId` or the entity) |
//! | `GET|PUT /mcp/platform/environments/{id}/policies`, `DELETE …/policies/{policyId}` | n/a, accepted, accepted | unpaged (`limit`/`cursor` refused) / upsert by `pattern` (400 `TOOLS_POLICY_EFFECT_UNSUPPORTED` for `require_approval`) / `{policyId, deleted}` |
//! | `POST /api/v1/agent/providers/keys/{id}/rotate-secret` `{environmentId, plaintext}` | required | the key's metadata; 404 `PROVIDERS_KEY_NOT_FOUND` |
//!
//! Retries: `faults().fail_next_rest(RestFault::shutting_down(secs).times(n))` (503
//! `TRANSPORT_SHUTTING_DOWN`, `retryAfterSec`, `Retry-After`) or
//! `RestFault::rate_limited(secs).v1_only()` (429 `RATE_LIMITED`, `Retry-After`) answer
//! only V1 routes and store nothing, so a retry under the same key runs. Every V1
//! request is recorded like the REST ones.
//!
//! # Recording ([`TestServer::recorder`])
//!
//! [`Recorder::requests`] (method, raw path, raw query, lower-cased headers, body),
//! [`Recorder::socket_events`] (socket id, namespace, name, payload),
//! [`Recorder::connects`] (auth payload, upgrade headers, refusal),
//! [`Recorder::handshake_count`], [`Recorder::connect_count`], [`Recorder::faults_fired`].
//! Waits wake on every new record, no polling: [`Recorder::wait_for_socket_event`]
//! (e.g. "the server received `stop`"), [`Recorder::wait_for_requests`],
//! [`Recorder::wait_for_connects`], [`Recorder::wait_until`].

mod auth;
mod faults;
mod record;
mod rest;
mod routes;
mod schema;
mod script;
mod socket;
mod storage;
mod store;
mod v1;
mod v1_stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::response::IntoResponse;
use tokio::sync::watch;

pub use auth::{TokenSpec, mint_token};
pub use faults::{Faults, HandshakeStep, RawFrame, RestFault, Restart, SocketRefusal, UploadFault};
pub use record::{RecordedConnect, RecordedRequest, RecordedSocketEvent, Recorder};
pub use store::{
    SEED_AGENT_RESEARCH, SEED_AGENT_SUPPORT, SEED_APPROVAL_APPROVED, SEED_APPROVAL_PENDING,
    SEED_JOB, SEED_JOB_ID, SEED_TASKS, SEED_THREAD, SEED_TOOLS,
};
pub use v1::V1Api;
pub use v1::data::{SEED_POLICY, SEED_PROVIDER_KEY};
pub use v1_stream::{
    ConnectionEnd, Cut, StreamConnection, StreamPlan, V1Streams, encode_cursor, journal_id,
};

/// Seeded organization id.
pub const DEFAULT_ORGANIZATION_ID: &str = "org_test";
/// Seeded project id.
pub const DEFAULT_PROJECT_ID: &str = "proj_test";
/// Seeded environment id.
pub const DEFAULT_ENVIRONMENT_ID: &str = "env_test";
/// Seeded end user (owner of [`SEED_THREAD`]).
pub const DEFAULT_USER_ID: &str = "user_test";
/// The entity whose secret signs session tokens.
pub const DEFAULT_ENTITY_ID: &str = "ent_test";
/// Default entity secret (HS256 key).
pub const DEFAULT_SECRET: &str = "platos-test-secret-0123456789abcdef";
/// Default api key for direct mode.
pub const DEFAULT_API_KEY: &str = "pk_test_platos_0123456789";
/// Default Socket.IO namespace.
pub const DEFAULT_NAMESPACE: &str = "/agent";

/// The scope tuple.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `organizationId`
    pub organization_id: String,
    /// `projectId`
    pub project_id: String,
    /// `environmentId`
    pub environment_id: String,
}

impl Scope {
    /// Builds a scope.
    pub fn new(
        organization_id: impl Into<String>,
        project_id: impl Into<String>,
        environment_id: impl Into<String>,
    ) -> Self {
        Scope {
            organization_id: organization_id.into(),
            project_id: project_id.into(),
            environment_id: environment_id.into(),
        }
    }

    pub(crate) fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.organization_id, self.project_id, self.environment_id
        )
    }
}

pub(crate) struct Config {
    pub secret: String,
    pub entity_id: String,
    pub api_key: String,
    pub namespace: String,
    pub deprecation: bool,
    pub expire_sessions: bool,
    pub job_runtime: bool,
}

pub(crate) struct Shared {
    pub cfg: Config,
    store: Mutex<store::Store>,
    pub recorder: Recorder,
    pub faults: Faults,
    pub v1: V1Streams,
    pub v1_api: V1Api,
    sockets: Mutex<HashMap<String, socket::SockAuth>>,
    #[allow(clippy::type_complexity)]
    turns: Mutex<HashMap<String, Vec<(String, watch::Sender<bool>)>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, store::Store> {
        lock(&self.store)
    }
    pub(crate) fn v1_data(&self) -> MutexGuard<'_, v1::V1Data> {
        self.v1_api.lock()
    }
    pub(crate) fn sockets(&self) -> MutexGuard<'_, HashMap<String, socket::SockAuth>> {
        lock(&self.sockets)
    }
    #[allow(clippy::type_complexity)]
    pub(crate) fn turns(
        &self,
    ) -> MutexGuard<'_, HashMap<String, Vec<(String, watch::Sender<bool>)>>> {
        lock(&self.turns)
    }
}

/// Options for [`TestServer`]. Obtained from [`TestServer::builder`].
/// `Debug` hides the secret and the api key.
#[derive(Clone)]
#[must_use]
pub struct TestServerBuilder {
    bind: SocketAddr,
    secret: String,
    entity_id: String,
    api_key: String,
    scope: Scope,
    user_id: String,
    namespace: String,
    ping_interval: Duration,
    ping_timeout: Duration,
    seed: bool,
    deprecation: bool,
    expire_sessions: bool,
    job_runtime: bool,
    event_delay: Duration,
    approval_every_turn: bool,
}

impl std::fmt::Debug for TestServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServerBuilder")
            .field("bind", &self.bind)
            .field("secret", &"***")
            .field("entity_id", &self.entity_id)
            .field("api_key", &"***")
            .field("scope", &self.scope)
            .field("user_id", &self.user_id)
            .field("namespace", &self.namespace)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        TestServerBuilder {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret: DEFAULT_SECRET.into(),
            entity_id: DEFAULT_ENTITY_ID.into(),
            api_key: DEFAULT_API_KEY.into(),
            scope: Scope::new(
                DEFAULT_ORGANIZATION_ID,
                DEFAULT_PROJECT_ID,
                DEFAULT_ENVIRONMENT_ID,
            ),
            user_id: DEFAULT_USER_ID.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(10),
            seed: true,
            deprecation: false,
            expire_sessions: false,
            job_runtime: true,
            event_delay: Duration::ZERO,
            approval_every_turn: false,
        }
    }
}

impl TestServerBuilder {
    /// Address to bind (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }
    /// Port on 127.0.0.1.
    pub fn port(mut self, port: u16) -> Self {
        self.bind.set_port(port);
        self
    }
    /// Entity secret verifying session tokens (at least 16 characters).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = secret.into();
        self
    }
    /// Entity id tokens must carry.
    pub fn entity_id(mut self, id: impl Into<String>) -> Self {
        self.entity_id = id.into();
        self
    }
    /// Api key accepted in direct mode.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }
    /// Primary (seeded) scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
    /// Seeded end user.
    pub fn user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = user.into();
        self
    }
    /// Socket.IO namespace (default `/agent`; `/agent/{agentId}` style children also work).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }
    /// Engine.IO ping interval (default 25 s).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }
    /// Engine.IO ping timeout (default 10 s).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }
    /// Seed data on/off (default on).
    pub fn seed(mut self, on: bool) -> Self {
        self.seed = on;
        self
    }
    /// Emit `server.deprecation` after `connected` on the shared namespace.
    pub fn deprecation(mut self, on: bool) -> Self {
        self.deprecation = on;
        self
    }
    /// When a socket's session token expires while connected, emit `error
    /// {code:"SESSION_EXPIRED", message:"Session expired"}` and disconnect, like the
    /// gateway (default off: a timer per socket would fire early under a paused clock).
    pub fn expire_sessions(mut self, on: bool) -> Self {
        self.expire_sessions = on;
        self
    }
    /// Whether the durable job runtime is configured (default on). Off, `POST
    /// /jobs/{id}/dispatch` answers 200 `{accepted:false, message:"The durable Job runtime
    /// is not configured.", jobId}` like a server without one.
    pub fn job_runtime(mut self, on: bool) -> Self {
        self.job_runtime = on;
        self
    }
    /// Initial pause between scripted events (see [`Faults::set_event_delay`]).
    pub fn event_delay(mut self, d: Duration) -> Self {
        self.event_delay = d;
        self
    }
    /// Every turn asks for approval.
    pub fn approval_every_turn(mut self, on: bool) -> Self {
        self.approval_every_turn = on;
        self
    }

    /// Binds and starts serving.
    pub async fn start(self) -> anyhow::Result<TestServer> {
        anyhow::ensure!(
            self.secret.chars().count() >= 16,
            "the entity secret must be at least 16 characters"
        );
        let listener = tokio::net::TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let recorder = Recorder::default();
        let faults = Faults::new(
            recorder.clone(),
            shutdown_rx.clone(),
            self.event_delay,
            self.approval_every_turn,
        );
        let shared = Arc::new(Shared {
            cfg: Config {
                secret: self.secret.clone(),
                entity_id: self.entity_id.clone(),
                api_key: self.api_key.clone(),
                namespace: self.namespace.clone(),
                deprecation: self.deprecation,
                expire_sessions: self.expire_sessions,
                job_runtime: self.job_runtime,
            },
            store: Mutex::new(store::Store::new(self.seed, &self.scope, &self.user_id)),
            recorder: recorder.clone(),
            faults: faults.clone(),
            v1: V1Streams::default(),
            v1_api: V1Api::new(self.seed, &self.scope),
            sockets: Mutex::default(),
            turns: Mutex::default(),
        });
        let (layer, io) = socketioxide::SocketIo::builder()
            // A scripted turn emits without pause; socketioxide drops what does not fit
            // a socket's buffer (128 packets by default), so long turns (`[tokens=N]`,
            // the benches) need room for every event.
            .max_buffer_size(1 << 16)
            .ping_interval(self.ping_interval)
            .ping_timeout(self.ping_timeout)
            .build_layer();
        socket::setup(&io, shared.clone());
        faults.set_io(io.clone());
        let rec = recorder.clone();
        let hs_faults = faults.clone();
        let app = rest::router(shared.clone())
            .layer(layer)
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let rec = rec.clone();
                    let faults = hs_faults.clone();
                    async move {
                        let uri = req.uri();
                        if uri.path().contains("/socket.io")
                            && !uri.query().unwrap_or("").contains("sid=")
                        {
                            rec.count_handshake();
                            if let Some(status) = faults.upgrade_refusal() {
                                return proxy_refusal(status);
                            }
                            if faults.take_handshake_failure() {
                                return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                            }
                        }
                        next.run(req).await
                    }
                },
            ));
        let fl = faults::FaultListener {
            listener,
            faults: faults.clone(),
        };
        let mut stop = shutdown_rx.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(fl, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(TestServer {
            addr,
            shared,
            io,
            shutdown: shutdown_tx,
            task: Some(task),
            scope: self.scope,
            user_id: self.user_id,
        })
    }
}

/// A proxy's refusal of a WebSocket upgrade: its own HTML page, not Engine.IO's JSON.
fn proxy_refusal(status: u16) -> axum::response::Response {
    let status =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/html")],
        format!(
            "<html><body><h1>{status}</h1><p>WebSocket upgrades are not allowed.</p></body></html>"
        ),
    )
        .into_response()
}

/// A running server. Stops when dropped or on [`TestServer::shutdown`].
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    io: socketioxide::SocketIo,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    scope: Scope,
    user_id: String,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts a server with default options on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::builder().start().await
    }

    /// Options.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket`.
    pub fn socket_url(&self) -> String {
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.addr)
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Entity secret.
    pub fn secret(&self) -> &str {
        &self.shared.cfg.secret
    }

    /// Entity id tokens must carry.
    pub fn entity_id(&self) -> &str {
        &self.shared.cfg.entity_id
    }

    /// Api key for direct mode.
    pub fn api_key(&self) -> &str {
        &self.shared.cfg.api_key
    }

    /// The seeded scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The seeded end user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Socket.IO namespace.
    pub fn namespace(&self) -> &str {
        &self.shared.cfg.namespace
    }

    /// Fault and behaviour knobs.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The V1 event-stream journal, its per-connection plans and records.
    pub fn v1_streams(&self) -> &V1Streams {
        &self.shared.v1
    }

    /// The V1 operator API's data: what only an inbox would see (magic-link and
    /// invitation tokens).
    pub fn v1_api(&self) -> &V1Api {
        &self.shared.v1_api
    }

    /// The status (`completed`, `failed`, `stopped`) of each finished turn on `thread_id`,
    /// oldest first; a turn is recorded (and the recorder touched) before its `done`.
    pub fn turn_statuses(&self, thread_id: &str) -> Vec<&'static str> {
        let st = self.shared.store();
        st.turns
            .iter()
            .filter(|t| t.thread_id == thread_id)
            .map(|t| t.status)
            .collect()
    }

    /// What the server received.
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// A token spec for `user_id` in the seeded scope, valid one hour.
    pub fn token_spec(&self, user_id: &str) -> TokenSpec {
        TokenSpec::new(self.scope.clone(), user_id, self.entity_id())
    }

    /// Signs a token spec with this server's secret.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        mint_token(self.secret(), spec)
    }

    /// End-user session token for the seeded user and scope (valid one hour).
    pub fn session_token(&self) -> String {
        self.mint(&self.token_spec(&self.user_id))
    }

    /// Operator session token (`role: "operator"`) for the seeded scope.
    pub fn operator_token(&self) -> String {
        self.mint(&self.token_spec("user_operator").operator(true))
    }

    /// Headers for direct mode in the seeded scope (`authorization` + `x-platos-*`).
    pub fn direct_headers(&self) -> Vec<(String, String)> {
        vec![
            ("authorization".into(), format!("Bearer {}", self.api_key())),
            (
                "x-platos-organization-id".into(),
                self.scope.organization_id.clone(),
            ),
            ("x-platos-project-id".into(), self.scope.project_id.clone()),
            (
                "x-platos-environment-id".into(),
                self.scope.environment_id.clone(),
            ),
            ("x-platos-user-id".into(), self.user_id.clone()),
        ]
    }

    /// Ids of approvals currently pending in `scope` (any thread).
    pub fn pending_approvals(&self, scope: &Scope) -> Vec<String> {
        self.shared
            .store()
            .approvals
            .iter()
            .filter(|a| store::in_scope(a, scope) && a["status"] == "pending")
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Number of turns currently running (not yet done or stopped).
    pub fn running_turns(&self) -> usize {
        self.shared.turns().values().map(Vec::len).sum()
    }

    /// Adds an agent (raw JSON, like the server answers it) to `scope`; `id` is required.
    pub fn insert_agent(&self, scope: &Scope, mut agent: serde_json::Value) {
        if let serde_json::Value::Object(o) = &mut agent {
            o.extend(store::scope_fields(scope));
        }
        self.shared.store().agents.push(agent);
    }

    /// Sets the largest attachment `/attachments/presigned` accepts (upstream's
    /// default is 20 MiB).
    pub fn set_max_attachment_bytes(&self, max: u64) {
        self.shared.store().attachment_max_bytes = Some(max);
    }

    /// What the storage received for an attachment: its size and the FNV-1a
    /// hash of its bytes (hex), once a PUT completed.
    pub fn uploaded(&self, attachment_id: &str) -> Option<(u64, String)> {
        let st = self.shared.store();
        let a = st
            .attachments
            .iter()
            .find(|a| a["attachment"]["id"] == attachment_id)?;
        let r = &a["received"];
        Some((r["bytes"].as_u64()?, r["fnv1a"].as_str()?.to_owned()))
    }

    /// Opens a durable approval's waitpoint: `POST
    /// /durable-approvals/{token}/resolve` completes it once.
    pub fn open_waitpoint(&self, token: &str) {
        self.shared
            .store()
            .waitpoints
            .insert(token.to_owned(), None);
    }

    /// The decision a waitpoint was completed with (`{approved, comment,
    /// respondedBy, respondedAt}`), once it was.
    pub fn waitpoint(&self, token: &str) -> Option<serde_json::Value> {
        self.shared.store().waitpoints.get(token).cloned().flatten()
    }

    /// Runs the server without a durable engine: resolving a waitpoint answers 503.
    pub fn disable_durable_approvals(&self) {
        self.shared.store().durable_disabled = true;
    }

    /// Adds a thread of `agent_id`, owned by the server's user, to the primary
    /// scope: a realtime turn can run on it (e.g. several turns at once).
    pub fn insert_thread(&self, thread_id: &str, agent_id: &str) {
        let mut thread = serde_json::json!({
            "id": thread_id, "agentId": agent_id, "userId": self.user_id,
            "endUserId": self.user_id, "title": null, "status": "active", "turnCount": 0,
            "tags": [], "pinnedAt": null, "archivedAt": null, "parentThreadId": null,
            "createdAt": "2026-01-10T10:00:00.000Z", "updatedAt": "2026-01-10T10:00:00.000Z"
        });
        if let serde_json::Value::Object(o) = &mut thread {
            o.extend(store::scope_fields(&self.scope));
        }
        self.shared.store().threads.push(thread);
    }

    /// Stops the server: closes every socket and connection, then waits for the serve task.
    pub async fn shutdown(mut self) {
        self.io.clone().close().await;
        self.stop_now();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    fn stop_now(&self) {
        let _ = self.shutdown.send(true);
        self.shared.faults.kill_all();
        for (_, aborts) in self.shared.turns().drain() {
            for (_, a) in aborts {
                let _ = a.send(true);
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_now();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

//! The `/agent` Socket.IO namespace with the gateway's rules and a scripted agent.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{Caller, header, verify_token};
use crate::faults::{Restart, TurnSlot};
use crate::record::{RecordedConnect, RecordedSocketEvent};
use crate::rest::{Resolution, resolve_approval, thread_index};
use crate::store::{Decision, TurnRecord, approval_json, new_id, now_iso, now_nanos};
use crate::{Scope, Shared};

pub(crate) const MSG_INVALID_TOKEN: &str = "Invalid or expired session token.";
pub(crate) const MSG_MISSING_AUTH: &str =
    "Missing auth — need organizationId, projectId, environmentId, userId (or a session token).";

/// Auth outcome for one socket, decided before the CONNECT ack.
#[derive(Clone)]
pub(crate) enum SockAuth {
    Ok(Caller),
    Refused(&'static str),
}

fn auth_str<'a>(auth: &'a Value, k: &str) -> Option<&'a str> {
    auth.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn decide(sh: &Shared, socket: &SocketRef, auth: &Value) -> SockAuth {
    let h = &socket.req_parts().headers;
    let token = auth_str(auth, "token").or_else(|| header(h, "x-platos-session-token"));
    if let Some(t) = token {
        return match verify_token(&sh.cfg, t) {
            Ok(c) => SockAuth::Ok(c),
            Err(_) => SockAuth::Refused(MSG_INVALID_TOKEN),
        };
    }
    let pick = |a: &str, hn: &str| {
        auth_str(auth, a)
            .or_else(|| header(h, hn))
            .map(str::to_string)
    };
    match (
        pick("organizationId", "x-platos-organization-id"),
        pick("projectId", "x-platos-project-id"),
        pick("environmentId", "x-platos-environment-id"),
        pick("userId", "x-platos-user-id"),
    ) {
        (Some(o), Some(p), Some(e), Some(u)) => {
            let scope = Scope::new(o, p, e);
            SockAuth::Ok(Caller {
                identity: format!("socket:{}", scope.key()),
                scope,
                user_id: Some(u),
                // The gateway trusts direct-mode callers as the backend itself.
                operator: true,
                exp: None,
            })
        }
        _ => SockAuth::Refused(MSG_MISSING_AUTH),
    }
}

pub(crate) fn setup(io: &SocketIo, sh: Arc<Shared>) {
    let h = handler(sh.clone());
    io.ns(sh.cfg.namespace.clone(), h.clone());
    // Per-agent namespaces (`/agent/{agentId}`) behave the same.
    let _ = io.dyn_ns(format!("{}/{{agentId}}", sh.cfg.namespace), h);
}

fn handler(
    sh: Arc<Shared>,
) -> impl ConnectHandler<socketioxide::adapter::LocalAdapter, (SocketRef,)> {
    let sh_mw = sh.clone();
    let middleware = move |socket: SocketRef, TryData(auth): TryData<Value>| {
        let sh = sh_mw.clone();
        async move {
            let auth = auth.unwrap_or(Value::Null);
            let decision = decide(&sh, &socket, &auth);
            let sid = socket.id.to_string();
            sh.recorder.push_connect(RecordedConnect {
                socket_id: sid.clone(),
                namespace: socket.ns().to_string(),
                auth,
                headers: socket
                    .req_parts()
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_ascii_lowercase(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                refused: None,
            });
            sh.sockets().insert(sid, decision);
            // Registered before the CONNECT ack goes out, so an event sent right after
            // the ack always finds its handler.
            register(&sh, &socket);
            Ok::<(), Infallible>(())
        }
    };
    let connected = move |socket: SocketRef| {
        let sh = sh.clone();
        async move {
            let sid = socket.id.to_string();
            let decision = sh.sockets().get(&sid).cloned();
            match decision {
                Some(SockAuth::Ok(c)) => {
                    let _ = socket.emit(
                        "connected",
                        &json!({
                            "status": "ok", "organizationId": c.scope.organization_id,
                            "projectId": c.scope.project_id, "environmentId": c.scope.environment_id,
                            "userId": c.user_id, "socketId": sid
                        }),
                    );
                    if sh.cfg.expire_sessions
                        && let Some(exp) = c.exp
                    {
                        tokio::spawn(expire_at(socket.clone(), exp));
                    }
                    if sh.cfg.deprecation && socket.ns() == sh.cfg.namespace {
                        let _ = socket.emit(
                            "server.deprecation",
                            &json!({
                                "code": "SHARED_AGENT_NAMESPACE",
                                "message": "The shared /agent namespace is deprecated; connect to /agent/{agentId}.",
                                "removeAfter": "2027-06-30"
                            }),
                        );
                    }
                }
                Some(SockAuth::Refused(why)) => refuse(&sh, socket, why),
                None => refuse(&sh, socket, MSG_INVALID_TOKEN),
            }
        }
    };
    connected.with(middleware)
}

/// Like the gateway: when the token's `exp` passes on a live socket, `error
/// {code:"SESSION_EXPIRED", message}` then disconnect.
async fn expire_at(socket: SocketRef, exp: i64) {
    let now = crate::store::utc_now().timestamp();
    let wait = u64::try_from(exp.saturating_sub(now)).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    if socket.connected() {
        let _ = socket.emit(
            "error",
            &json!({"code": "SESSION_EXPIRED", "message": "Session expired"}),
        );
        let _ = socket.disconnect();
    }
}

/// The gateway's refusal: accept the connect, emit `error {message}`, disconnect.
fn refuse(sh: &Shared, socket: SocketRef, why: &str) {
    let sid = socket.id.to_string();
    sh.recorder.set_refused(&sid, why);
    let _ = socket.emit("error", &json!({ "message": why }));
    let _ = socket.disconnect();
}

fn caller_of(sh: &Shared, socket: &SocketRef) -> Option<Caller> {
    match sh.sockets().get(&socket.id.to_string()) {
        Some(SockAuth::Ok(c)) => Some(c.clone()),
        _ => None,
    }
}

fn record(sh: &Shared, socket: &SocketRef, event: &str, payload: &Value) {
    sh.recorder.push_event(RecordedSocketEvent {
        socket_id: socket.id.to_string(),
        namespace: socket.ns().to_string(),
        event: event.to_string(),
        payload: payload.clone(),
    });
}

fn payload(d: Result<Value, socketioxide::ParserError>) -> Value {
    d.unwrap_or(Value::Null)
}

fn room(thread_id: &str) -> String {
    format!("thread:{thread_id}")
}

fn register(sh: &Arc<Shared>, socket: &SocketRef) {
    let s1 = sh.clone();
    socket.on(
        "message",
        move |socket: SocketRef, io: SocketIo, TryData(d): TryData<Value>| {
            let sh = s1.clone();
            async move {
                let d = payload(d);
                record(&sh, &socket, "message", &d);
                let Some(caller) = caller_of(&sh, &socket) else {
                    return;
                };
                on_message(sh, io, socket, caller, d);
            }
        },
    );
    let s2 = sh.clone();
    socket.on(
        "join_thread",
        move |socket: SocketRef, TryData(d): TryData<Value>| {
            let sh = s2.clone();
            async move {
                let d = payload(d);
                let thread = d.get("threadId").and_then(Value::as_str);
                let joined = match (caller_of(&sh, &socket), thread) {
                    (Some(_), Some(t)) => {
                        socket.join(room(t));
                        true
                    }
                    _ => false,
                };
                // Recorded once joined: a turn waiting for the join may pump at once.
                record(&sh, &socket, "join_thread", &d);
                if let (true, Some(t)) = (joined, thread) {
                    let _ = socket.emit("joined_thread", &json!({ "threadId": t }));
                }
            }
        },
    );
    let s3 = sh.clone();
    socket.on(
        "leave_thread",
        move |socket: SocketRef, TryData(d): TryData<Value>| {
            let sh = s3.clone();
            async move {
                let d = payload(d);
                record(&sh, &socket, "leave_thread", &d);
                if let Some(t) = d.get("threadId").and_then(Value::as_str) {
                    socket.leave(room(t));
                }
            }
        },
    );
    let s4 = sh.clone();
    socket.on(
        "stop",
        move |socket: SocketRef, TryData(d): TryData<Value>| {
            let sh = s4.clone();
            async move {
                let d = payload(d);
                record(&sh, &socket, "stop", &d);
                if caller_of(&sh, &socket).is_none() {
                    return;
                }
                if let Some(t) = d.get("threadId").and_then(Value::as_str)
                    && let Some(aborts) = sh.turns().remove(t)
                {
                    for (_, a) in aborts {
                        let _ = a.send(true);
                    }
                }
            }
        },
    );
    let s5 = sh.clone();
    socket.on(
        "approval_response",
        move |socket: SocketRef, TryData(d): TryData<Value>| {
            let sh = s5.clone();
            async move {
                let d = payload(d);
                record(&sh, &socket, "approval_response", &d);
                let Some(caller) = caller_of(&sh, &socket) else {
                    return;
                };
                let id = d.get("approvalId").and_then(Value::as_str).unwrap_or("");
                let Some(approved) = d.get("approved").and_then(Value::as_bool) else {
                    let _ = socket.emit(
                        "approval_response_error",
                        &json!({"approvalId": id, "error": "approved must be a boolean"}),
                    );
                    return;
                };
                let comment = d.get("comment").and_then(Value::as_str);
                let by = caller.user_id.clone().unwrap_or_else(|| "operator".into());
                match resolve_approval(&sh, &caller.scope, id, approved, &by, comment, None) {
                    Resolution::Resolved(_) => {
                        let _ = socket
                            .emit("approval_ack", &json!({"approvalId": id, "received": true}));
                    }
                    Resolution::Already(_) => {
                        let _ = socket.emit(
                            "approval_response_error",
                            &json!({"approvalId": id, "error": "Approval already resolved"}),
                        );
                    }
                    Resolution::NotFound => {
                        let _ = socket.emit(
                            "approval_response_error",
                            &json!({"approvalId": id, "error": "Approval not found in this scope"}),
                        );
                    }
                }
            }
        },
    );
    let s6 = sh.clone();
    // `resume_stream` has no handler on current gateways: recorded, otherwise ignored.
    socket.on_fallback(
        move |socket: SocketRef, Event(e): Event, TryData(d): TryData<Value>| {
            let sh = s6.clone();
            async move {
                record(&sh, &socket, &e, &payload(d));
            }
        },
    );
    let s7 = sh.clone();
    socket.on_disconnect(move |socket: SocketRef| {
        let sh = s7.clone();
        async move {
            sh.sockets().remove(&socket.id.to_string());
        }
    });
}

/// Knobs a message's text can carry (documented in the crate docs).
struct Script {
    approval: bool,
    hang: bool,
    fail: bool,
    unknown_event: bool,
    malformed: bool,
    tokens: Option<usize>,
}

fn script_of(sh: &Shared, text: &str) -> Script {
    let lower = text.to_lowercase();
    let tokens = lower.find("[tokens=").and_then(|i| {
        let rest = &lower[i + 8..];
        rest[..rest.find(']')?].parse::<usize>().ok()
    });
    Script {
        approval: lower.contains("approval")
            || sh
                .faults
                .inner
                .approval_every_turn
                .load(std::sync::atomic::Ordering::SeqCst),
        hang: lower.contains("[hang]"),
        fail: lower.contains("[error]"),
        unknown_event: lower.contains("[unknown-event]"),
        malformed: lower.contains("[malformed]"),
        tokens,
    }
}

fn on_message(sh: Arc<Shared>, io: SocketIo, socket: SocketRef, caller: Caller, d: Value) {
    let reply_to = d
        .get("replyToMessageId")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(r) = sh.faults.take_refusal() {
        for (name, p) in &r.events {
            let _ = socket.emit(name.as_str(), p);
        }
        if r.disconnect {
            let _ = socket.disconnect();
        }
        return;
    }
    let thread_id = d.get("threadId").and_then(Value::as_str).unwrap_or("");
    let text = d.get("message").and_then(Value::as_str);
    let fail = |message: &str, code: &str| {
        let mut e =
            json!({"type": "error", "message": message, "code": code, "threadId": thread_id});
        let mut done = json!({"type": "done", "threadId": thread_id});
        if let Some(r) = &reply_to {
            e["replyToMessageId"] = json!(r);
            done["replyToMessageId"] = json!(r);
        }
        let _ = socket.emit("agent_event", &e);
        let _ = socket.emit("agent_event", &done);
    };
    let (Some(text), false) = (text, thread_id.is_empty()) else {
        fail("message and threadId are required", "invalid_request");
        return;
    };
    let agent_id = {
        let st = sh.store();
        match thread_index(&st, thread_id, &caller) {
            Some(i) => st.threads[i]["agentId"].as_str().unwrap_or("").to_string(),
            None => {
                drop(st);
                fail("Thread not found", "not_found");
                return;
            }
        }
    };
    socket.join(room(thread_id));
    // Like the server, a repeated `idempotencyKey` on the same thread starts no second turn.
    if let Some(k) = d.get("idempotencyKey").and_then(Value::as_str)
        && !sh
            .store()
            .message_keys
            .insert((thread_id.to_string(), k.to_string()))
    {
        return;
    }
    let sink = Sink::Room {
        io,
        ns: socket.ns().to_string(),
    };
    start_turn(
        &sh,
        &caller.scope,
        thread_id,
        agent_id,
        reply_to,
        text,
        sink,
        None,
    );
}

/// Where a scripted turn's events go: the socket room of its thread, or the
/// HTTP lane's response (crate::http_lane), which adds `_seq` and heartbeats.
pub(crate) enum Sink {
    Room { io: SocketIo, ns: String },
    Http(mpsc::Sender<Value>),
}

/// Starts the scripted turn (the same for both lanes) and returns its stop key: sending
/// `true` on the thread's entry in `Shared::turns` with that key aborts it.
/// `output_schema` adds a `structured_output` event (or, with the `[invalid-output]`
/// marker, the runtime's `structured_output_invalid` error) before `message_persisted`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_turn(
    sh: &Arc<Shared>,
    scope: &Scope,
    thread_id: &str,
    agent_id: String,
    reply_to: Option<String>,
    text: &str,
    sink: Sink,
    output_schema: Option<Value>,
) -> String {
    let (tx, rx) = watch::channel(false);
    let key = new_id();
    sh.turns()
        .entry(thread_id.to_string())
        .or_default()
        .push((key.clone(), tx));
    sh.recorder.touch();
    let slot = sh.faults.turn_slot();
    let turn = Turn {
        epoch: slot.epoch,
        _slot: slot,
        sh: sh.clone(),
        sink,
        scope: scope.clone(),
        thread_id: thread_id.to_string(),
        agent_id,
        reply_to,
        text: text.to_string(),
        abort: rx,
        key: key.clone(),
        output_schema,
    };
    tokio::spawn(turn.run());
    key
}

/// How long a durable turn waits for a client to re-join its thread after
/// a restart before it pumps on anyway.
const REJOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The answer's token texts.
fn chunks(sc: &Script, text: &str, approved: bool) -> Vec<String> {
    match sc.tokens {
        Some(n) => (1..=n).map(|i| format!("w{i} ")).collect(),
        None => {
            let answer = if approved {
                format!("Here is what I found about \"{text}\".")
            } else {
                "The action was rejected, so I did not run it.".to_string()
            };
            answer.split_inclusive(' ').map(str::to_string).collect()
        }
    }
}

struct Turn {
    sh: Arc<Shared>,
    sink: Sink,
    scope: Scope,
    thread_id: String,
    agent_id: String,
    reply_to: Option<String>,
    text: String,
    abort: watch::Receiver<bool>,
    key: String,
    /// Counts the turn as running until it ends (a restart waits for it).
    _slot: TurnSlot,
    /// The realtime epoch the turn runs in (`Faults::restart_realtime`).
    epoch: u64,
    output_schema: Option<Value>,
}

/// Why a turn ended before its last event.
enum Stopped {
    /// `stop` was asked for.
    Asked,
    /// A simulated restart killed it (never [`Restart::Durable`]).
    Died(Restart),
}

/// How a turn that was not stopped ended, with its final `done` event.
enum Ended {
    Completed(u64, u64, f64, Value),
    Failed(Value),
}

impl Turn {
    async fn emit(&mut self, ev: Value) -> Result<(), Stopped> {
        if *self.abort.borrow() {
            return Err(Stopped::Asked);
        }
        let delay = self.sh.faults.event_delay();
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.abort.wait_for(|a| *a) => return Err(Stopped::Asked),
            }
        }
        self.survive_restart().await?;
        self.emit_unchecked(ev).await
    }

    /// Right before an event: a restart since the turn's epoch kills it, or
    /// (durable) holds it until a client re-joins its thread.
    async fn survive_restart(&mut self) -> Result<(), Stopped> {
        let Some((restart, joins, epoch)) = self.sh.faults.restarted_since(self.epoch) else {
            return Ok(());
        };
        if restart != Restart::Durable {
            return Err(Stopped::Died(restart));
        }
        let thread = self.thread_id.clone();
        let rejoined = self.sh.recorder.wait_until(REJOIN_WAIT, |r| {
            r.socket_events_named("join_thread")
                .iter()
                .skip(joins)
                .any(|e| e.payload["threadId"] == thread.as_str())
        });
        tokio::select! {
            _ = rejoined => {}
            _ = self.abort.wait_for(|a| *a) => return Err(Stopped::Asked),
        }
        self.epoch = epoch;
        Ok(())
    }

    /// What a restart that kills the turn leaves in the thread.
    fn die(&self, restart: Restart, turn_id: &str, sc: &Script) {
        let message = match restart {
            Restart::PersistAnswer => {
                let chunks = chunks(sc, &self.text, true);
                let input = 40 + (self.text.len() as u64) / 4;
                let output = chunks.len() as u64 * 2 + 8;
                let cost = (input as f64) * 0.015 / 100.0 + (output as f64) * 0.06 / 100.0;
                json!({
                    "id": new_id(), "turnId": turn_id, "threadId": self.thread_id,
                    "role": "assistant", "content": chunks.concat(), "toolCalls": null,
                    "thinkingContent": null,
                    "responseJson": {"model": "gpt-4o-mini",
                                     "usage": {"inputTokens": input, "outputTokens": output,
                                               "totalTokens": input + output},
                                     "cost_cents": cost},
                    "createdAt": now_iso()
                })
            }
            Restart::PersistFailure => json!({
                "id": new_id(), "turnId": turn_id, "threadId": self.thread_id,
                "role": "assistant", "content": "", "toolCalls": null, "thinkingContent": null,
                "responseJson": {"error": {"message": "The gateway restarted mid-turn.",
                                           "code": "aborted"}},
                "createdAt": now_iso()
            }),
            _ => return,
        };
        self.sh.store().messages.push(message);
    }

    async fn run(mut self) {
        let start = now_nanos();
        let created_at = now_iso();
        let turn_id = new_id();
        let script = script_of(&self.sh, &self.text);
        self.sh.store().messages.push(json!({
            "id": new_id(), "turnId": turn_id, "threadId": self.thread_id, "role": "user",
            "content": self.text, "toolCalls": null, "thinkingContent": null, "responseJson": null,
            "createdAt": created_at
        }));
        let outcome = self.script(&turn_id, &script).await;
        if let Err(Stopped::Died(restart)) = outcome {
            self.die(restart, &turn_id, &script);
            let mut turns = self.sh.turns();
            if let Some(list) = turns.get_mut(&self.thread_id) {
                list.retain(|(k, _)| *k != self.key);
                if list.is_empty() {
                    turns.remove(&self.thread_id);
                }
            }
            return;
        }
        let (status, input, output, cost, last) = match outcome {
            Ok(Ended::Completed(i, o, c, done)) => ("completed", i, o, c, done),
            Ok(Ended::Failed(done)) => ("failed", 0, 0, 0.0, done),
            Err(_) => (
                "stopped",
                0,
                0,
                0.0,
                json!({"type": "done", "stopped": true}),
            ),
        };
        let end = now_nanos().max(start + 1_000_000);
        // Everything a test may read after `done` is in place before `done` goes out.
        {
            let mut st = self.sh.store();
            if let Some(t) = st
                .threads
                .iter_mut()
                .find(|t| t["id"] == self.thread_id.as_str())
            {
                t["turnCount"] = json!(t["turnCount"].as_u64().unwrap_or(0) + 1);
                t["updatedAt"] = json!(now_iso());
            }
            st.turns.push(TurnRecord {
                id: turn_id,
                scope: self.scope.clone(),
                thread_id: self.thread_id.clone(),
                agent_id: self.agent_id.clone(),
                status,
                day: created_at[..10].to_string(),
                created_at,
                start_nanos: start,
                end_nanos: end,
                input_tokens: input,
                output_tokens: output,
                cost_cents: cost,
                tool_calls: u64::from(status == "completed"),
            });
        }
        {
            let mut turns = self.sh.turns();
            if let Some(list) = turns.get_mut(&self.thread_id) {
                list.retain(|(k, _)| *k != self.key);
                if list.is_empty() {
                    turns.remove(&self.thread_id);
                }
            }
        }
        self.sh.recorder.touch();
        let _ = self.emit_unchecked(last).await;
    }

    /// Emits even after a stop (the final `done`); `Err` when the HTTP client is gone.
    async fn emit_unchecked(&self, mut ev: Value) -> Result<(), Stopped> {
        ev["threadId"] = json!(self.thread_id);
        if let Some(r) = &self.reply_to {
            ev["replyToMessageId"] = json!(r);
        }
        match &self.sink {
            Sink::Room { io, ns } => {
                if let Some(ns) = io.of(ns) {
                    let _ = ns.to(room(&self.thread_id)).emit("agent_event", &ev).await;
                }
                Ok(())
            }
            Sink::Http(tx) => tx.send(ev).await.map_err(|_| Stopped::Asked),
        }
    }

    /// The scripted turn up to (not including) its final `done`; `Err` when stopped.
    async fn script(&mut self, turn_id: &str, sc: &Script) -> Result<Ended, Stopped> {
        let agent = self.agent_id.clone();
        self.emit(json!({"type": "status", "status": "thinking", "agentId": agent}))
            .await?;
        let run_id = format!("run_{}", &turn_id.replace('-', "")[..16]);
        self.emit(
            json!({"type": "meta", "thread_id": self.thread_id, "agent_id": agent,
                         "runId": run_id, "durable": false}),
        )
        .await?;
        if sc.unknown_event {
            self.emit(json!({"type": "x_future_event", "payload": {"a": 1}}))
                .await?;
        }
        if sc.malformed {
            self.emit(json!({"type": "token"})).await?;
        }
        if sc.fail {
            self.emit(json!({"type": "error", "message": "Scripted provider failure", "code": "provider_unavailable"}))
                .await?;
            return Ok(Ended::Failed(json!({"type": "done", "aborted": true})));
        }
        let thinking = "Looking up what the user asked.";
        self.emit(json!({"type": "thinking", "text": thinking}))
            .await?;
        self.emit(json!({"type": "status", "status": "executing", "agentId": agent}))
            .await?;
        let call_id = format!("call_{}", &new_id()[..8]);
        let params = json!({"query": self.text});
        let result = json!({"hits": 2, "top": "Platos quick start"});
        self.emit(
            json!({"type": "tool_call", "name": "lookup", "params": params, "callId": call_id}),
        )
        .await?;
        self.emit(
            json!({"type": "tool_result", "name": "lookup", "result": result, "callId": call_id,
                         "display": {"kind": "card", "summary": "2 results"}}),
        )
        .await?;
        let mut approved = true;
        if sc.approval {
            approved = self.approval(&agent).await?;
        }
        let (artifact_id, key, revision, content) = self.artifact().await?;
        self.emit(json!({"type": "status", "status": "generating", "agentId": agent}))
            .await?;
        let chunks = chunks(sc, &self.text, approved);
        let mut first = true;
        for c in &chunks {
            self.emit(json!({"type": "token", "text": c})).await?;
            if first && sc.hang {
                // Holds the turn open until `stop` so cancellation can be tested
                // deterministically, or until a restart (which kills it, or with a
                // durable restart lets it go on once its thread is re-joined).
                let epoch = self.epoch;
                let mut epochs = self.sh.faults.epochs();
                tokio::select! {
                    _ = self.abort.wait_for(|a| *a) => return Err(Stopped::Asked),
                    _ = epochs.wait_for(|e| *e > epoch) => {}
                }
                self.survive_restart().await?;
            }
            first = false;
        }
        if let Some(schema) = self.output_schema.clone() {
            if self.text.to_lowercase().contains("[invalid-output]") {
                self.emit(json!({"type": "error", "code": "structured_output_invalid",
                    "message": "The answer did not match the output schema after 2 retries.",
                    "validationErrors": ["/rating: must be integer", "/summary: is required"],
                    "retryCount": 2}))
                    .await?;
                return Ok(Ended::Failed(json!({"type": "done", "aborted": true})));
            }
            let object = crate::schema::example(&schema);
            self.emit(json!({"type": "structured_output", "object": object, "retryCount": 0}))
                .await?;
        }
        let content_text: String = chunks.concat();
        let input = 40 + (self.text.len() as u64) / 4;
        let output = chunks.len() as u64 * 2 + 8;
        let cost = (input as f64) * 0.015 / 100.0 + (output as f64) * 0.06 / 100.0;
        let message_id = new_id();
        {
            let mut st = self.sh.store();
            st.messages.push(json!({
                "id": message_id, "turnId": turn_id, "threadId": self.thread_id, "role": "assistant",
                "content": content_text,
                "toolCalls": [{"name": "lookup", "params": params, "result": result, "error": null}],
                "thinkingContent": thinking,
                "responseJson": {"model": "gpt-4o-mini",
                                 "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
                                 "cost_cents": cost, "latency_ms": 420, "artifact_id": artifact_id,
                                 "artifact_key": key, "artifact_revision": revision, "artifact_chars": content.len()},
                "createdAt": now_iso()
            }));
        }
        self.emit(json!({"type": "message_persisted", "messageId": message_id, "costCents": cost,
                         "inputTokens": input, "outputTokens": output, "totalTokens": input + output}))
            .await?;
        let done = json!({"type": "done", "usage": {
            "promptTokens": input, "completionTokens": output, "totalTokens": input + output,
            "cachedTokens": 0, "costCents": cost, "inputTokens": input, "outputTokens": output,
            "cacheCreationInputTokens": 0, "cacheReadInputTokens": 0, "reasoningTokens": 0}});
        Ok(Ended::Completed(input, output, cost, done))
    }

    async fn approval(&mut self, agent: &str) -> Result<bool, Stopped> {
        let id = new_id();
        let args = json!({"to": "customer@example.com", "subject": "Your answer"});
        let (tx, mut rx) = oneshot::channel::<Decision>();
        {
            let mut st = self.sh.store();
            st.approvals.push(approval_json(
                &self.scope,
                &id,
                agent,
                &self.thread_id,
                "send_email",
                args.clone(),
                &now_iso(),
            ));
            st.waiting.insert(id.clone(), tx);
        }
        self.emit(
            json!({"type": "approval_needed", "approvalId": id, "action": "send_email",
                         "details": {"summary": "Send the answer by email", "args": args},
                         "agentId": agent, "requestedBy": agent}),
        )
        .await?;
        let decision = tokio::select! {
            d = &mut rx => d.ok(),
            _ = self.abort.wait_for(|a| *a) => None,
        };
        let Some(d) = decision else {
            self.sh.store().waiting.remove(&id);
            return Err(Stopped::Asked);
        };
        self.emit(json!({"type": "approval_resolved", "approvalId": id,
                         "status": if d.approved { "approved" } else { "rejected" },
                         "respondedBy": d.responded_by, "agentId": agent}))
            .await?;
        Ok(d.approved)
    }

    async fn artifact(&mut self) -> Result<(String, String, u64, String), Stopped> {
        let key = "summary".to_string();
        let (artifact_id, revision) = {
            let st = self.sh.store();
            let prev: Vec<&Value> = st
                .artifacts
                .iter()
                .filter(|a| {
                    a["threadId"] == self.thread_id.as_str() && a["artifactKey"] == key.as_str()
                })
                .collect();
            (new_id(), prev.len() as u64 + 1)
        };
        let op = if revision == 1 { "generate" } else { "revise" };
        self.emit(
            json!({"type": "artifact_start", "artifactId": artifact_id, "artifactKey": key,
                         "kind": "markdown", "revision": revision, "title": "Summary", "op": op}),
        )
        .await?;
        let chunks = ["# Summary\n", "\nThe user asked: ", self.text.as_str()];
        let content: String = chunks.concat();
        let owned: Vec<String> = chunks.iter().map(|c| c.to_string()).collect();
        for c in owned {
            self.emit(json!({"type": "artifact_delta", "artifactId": artifact_id, "artifactKey": key, "chunk": c}))
                .await?;
        }
        let created = now_iso();
        self.sh.store().artifacts.push(json!({
            "id": artifact_id, "threadId": self.thread_id, "artifactKey": key, "kind": "markdown",
            "revision": revision, "title": "Summary", "language": null, "content": content,
            "createdAt": created
        }));
        self.emit(
            json!({"type": "artifact_committed", "artifactId": artifact_id, "artifactKey": key,
                         "kind": "markdown", "revision": revision, "title": "Summary",
                         "finalContent": content, "createdAt": created}),
        )
        .await?;
        Ok((artifact_id, key, revision, content))
    }
}

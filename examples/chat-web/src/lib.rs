//! A browser chat on the Platos Rust SDK, small enough to copy.
//!
//! The backend holds the credentials: it mints the user's session token
//! (locally, with the entity secret) and relays each turn to the browser as
//! server-sent events. The browser gets no token. Routes:
//!
//! | Route | What it does |
//! |---|---|
//! | `GET /` | the page (`page.html`: plain HTML and a little JS, no build step) |
//! | `POST /api/thread` | a new thread → `{threadId}` |
//! | `GET /api/stream?threadId&message&attachmentIds` | one turn as SSE: every event as JSON (`token`, `tool_call`, `approval_needed`, `done`, …) |
//! | `POST /api/stop` `{threadId}` | stops the thread's running turn |
//! | `POST /api/approve` `{threadId, approvalId, approved}` | answers an approval of the running turn |
//! | `GET /api/messages?threadId` | the thread's messages (for edit) |
//! | `POST /api/edit` `{threadId, messageId, content}` | edit-and-rerun: the page then streams the new turn |
//! | `POST /api/upload?threadId&filename` | the body (with its `Content-Type` and `Content-Length`) streamed on into an attachment → `{attachmentId, bytes}` |
//!
//! An upload is never held in memory: the browser's body is handed to
//! `attachments().upload` as a reader of the length the request declared,
//! and the SDK streams it to storage as it arrives (a 100 MB file costs what
//! a 100 KB one does). The service's size limit is the SDK's to enforce,
//! before anything is sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use platos_client::mint::{MintOptions, mint_session_token};
use platos_client::realtime::TurnHandle;
use platos_client::{Decision, PlatosClient, SendOptions, UploadSource};
use serde::Deserialize;
use serde_json::{Value, json};

/// Where the backend's Platos is and who the page's user is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Platos base URL.
    pub base_url: String,
    /// The entity's service secret (mints the user's session token).
    pub secret: String,
    /// The entity id.
    pub entity_id: String,
    /// Organization, project, environment.
    pub scope: (String, String, String),
    /// The end user this demo speaks for (a real app: the logged-in user).
    pub user_id: String,
    /// The agent the threads talk to.
    pub agent_id: String,
}

struct App {
    client: PlatosClient,
    agent_id: String,
    /// The running turn of each thread, for stop and approve.
    turns: Mutex<HashMap<String, TurnHandle>>,
}

type Shared = State<Arc<App>>;

/// The app's router.
pub fn router(settings: &Settings) -> anyhow::Result<Router> {
    let (org, project, env) = &settings.scope;
    let token = mint_session_token(
        &MintOptions::new(settings.secret.clone(), settings.entity_id.clone())
            .scope(org, project, env)
            .user_id(settings.user_id.clone()),
    )?;
    let client = PlatosClient::builder()
        .base_url(&settings.base_url)
        .session_token(token)
        .build()?;
    let app = Arc::new(App {
        client,
        agent_id: settings.agent_id.clone(),
        turns: Mutex::default(),
    });
    Ok(Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route("/api/thread", post(new_thread))
        .route("/api/stream", get(stream))
        .route("/api/stop", post(stop))
        .route("/api/approve", post(approve))
        .route("/api/messages", get(messages))
        .route("/api/edit", post(edit))
        // The upload is streamed, not buffered: no body limit of axum's applies.
        .route(
            "/api/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .with_state(app))
}

/// An SDK error as a JSON answer the page shows.
fn failure(e: platos_client::Error) -> Response {
    let status = e
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        Json(json!({"error": e.to_string(), "code": e.code()})),
    )
        .into_response()
}

async fn new_thread(State(app): Shared) -> Response {
    match app.client.threads().create(&app.agent_id).await {
        Ok(t) => Json(json!({"threadId": t.id})).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    thread_id: String,
    message: String,
    #[serde(default)]
    attachment_ids: String,
}

async fn stream(
    State(app): Shared,
    Query(q): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let ids: Vec<String> = q
        .attachment_ids
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let turn = app.client.threads().send_with(
        &q.thread_id,
        q.message,
        SendOptions::new().attachment_ids(ids),
    );
    lock(&app.turns).insert(q.thread_id.clone(), turn.handle());
    let (thread, done) = (q.thread_id, app.clone());
    let events = turn
        .map(|item| {
            let data = match item {
                Ok(event) => event.to_value(),
                Err(e) => json!({"type": "error", "message": e.to_string(), "code": e.code()}),
            };
            Ok(SseEvent::default().data(data.to_string()))
        })
        // The page closes the EventSource on this marker instead of reconnecting.
        .chain(futures::stream::once(async move {
            lock(&done.turns).remove(&thread);
            Ok(SseEvent::default().event("end").data("{}"))
        }));
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThreadRef {
    thread_id: String,
}

async fn stop(State(app): Shared, Json(r): Json<ThreadRef>) -> StatusCode {
    match lock(&app.turns).get(&r.thread_id) {
        Some(turn) => {
            turn.stop();
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Approve {
    thread_id: String,
    approval_id: String,
    approved: bool,
}

async fn approve(State(app): Shared, Json(a): Json<Approve>) -> Response {
    let Some(turn) = lock(&app.turns).get(&a.thread_id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let decision = if a.approved {
        Decision::approve()
    } else {
        Decision::reject()
    };
    match turn.approval_response(a.approval_id, decision).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

async fn messages(State(app): Shared, Query(r): Query<ThreadRef>) -> Response {
    match app.client.threads().messages(&r.thread_id).await {
        Ok(list) => Json(json!(list)).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Edit {
    thread_id: String,
    message_id: String,
    content: String,
}

async fn edit(State(app): Shared, Json(e): Json<Edit>) -> Response {
    let edited = app
        .client
        .threads()
        .edit_and_rerun(&e.thread_id, &e.message_id)
        .content(e.content)
        .await;
    match edited {
        Ok(m) => Json(json!({"message": m})).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadQuery {
    thread_id: String,
    #[serde(default)]
    filename: Option<String>,
}

async fn upload(
    State(app): Shared,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mime = header("content-type")
        .filter(|m| m.contains('/'))
        .unwrap_or("application/octet-stream")
        .to_owned();
    // The presigned URL is signed for an exact length, so the relay needs it
    // up front: a browser's `fetch` with a File sends it.
    let Some(len) = header("content-length").and_then(|v| v.parse::<u64>().ok()) else {
        return (
            StatusCode::LENGTH_REQUIRED,
            Json(json!({"error": "an upload needs a Content-Length"})),
        )
            .into_response();
    };
    // The request body as a reader: read as the SDK sends, never whole.
    let chunks = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let source = UploadSource::reader(tokio_util::io::StreamReader::new(chunks), len);
    let mut up = app
        .client
        .attachments()
        .upload(&app.agent_id, &q.thread_id, source)
        .mime_type(mime);
    if let Some(name) = q.filename {
        up = up.filename(name);
    }
    match up.await {
        Ok(done) => {
            let value: Value = json!({"attachmentId": done.attachment_id, "bytes": done.bytes});
            Json(value).into_response()
        }
        Err(e) => failure(e),
    }
}

/// Settings for the embedded test server: its secret, entity and scope,
/// its user, and its seeded support agent.
pub fn embedded_settings(server: &platos_test_server::TestServer) -> Settings {
    let scope = server.scope();
    Settings {
        base_url: server.base_url(),
        secret: server.secret().to_owned(),
        entity_id: server.entity_id().to_owned(),
        scope: (
            scope.organization_id.clone(),
            scope.project_id.clone(),
            scope.environment_id.clone(),
        ),
        user_id: server.user_id().to_owned(),
        agent_id: platos_test_server::SEED_AGENT_SUPPORT.to_owned(),
    }
}

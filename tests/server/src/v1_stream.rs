//! V1 event streams: `GET /api/v1/environments/{environmentId}/streams/{streamId}`
//! over an in-memory journal, with per-connection fault plans and records.
//!
//! What the route does (docs/v1-stream.md in the SDK repository describes the wire):
//!
//! * Auth: operator only, `Authorization: Bearer <operator session token>` (a token
//!   with `role: "operator"`), the check every V1 route shares (`crate::v1`): an
//!   `X-Platos-Session-Token` header beside it is refused. The journal key is
//!   `<token's environmentId>/<streamId>`; the path's environment is not trusted,
//!   like the real server.
//! * Refusals before the stream opens are V1 envelopes: 401 `UNAUTHENTICATED`, 403
//!   `FORBIDDEN_SCOPE` (not an operator), 404 `STREAM_NOT_FOUND`, 400
//!   `STREAM_CURSOR_UNREADABLE` (a `Last-Event-ID` this journal did not issue), or
//!   whatever a [`StreamPlan::refuse`] says.
//! * The body: `event: stream_meta` (`replayFrom` = the `Last-Event-ID` sent, or null),
//!   then every journaled frame after the cursor with its `id:` cursor. After a terminal
//!   frame (`turn.done`, `stream.error`, `stream.offline`) the connection closes;
//!   otherwise it stays open and delivers frames as they are appended.
//! * Cursor = `"1." + len(journalId) + "." + journalId + seq`.
//!
//! A test queues [`StreamPlan`]s; connection N follows the N-th plan still queued (the
//! default plan when none is). Every connection is recorded ([`StreamConnection`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use crate::Shared;
use crate::auth::header as header_value;
use crate::routes::Routes;

/// The first frame's `ts`; frame `n` has `ts = BASE_TS + n`.
const BASE_TS: i64 = 1_757_900_000_000;

/// What one connection should do differently from a well-behaved server.
/// Build with [`StreamPlan::deliver`] (or `default()`) and the chained knobs.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StreamPlan {
    /// Refuse before the stream opens: status and V1 `code`.
    pub refuse: Option<(u16, String)>,
    /// Start this many already-applied frames before the cursor (redelivery).
    pub redeliver: u64,
    /// Leave these sequence numbers out (a gap).
    pub skip: Vec<u64>,
    /// Write `retry: <ms>` before the meta.
    pub retry_ms: Option<u64>,
    /// Write this many `: keep-alive` comments right after the meta.
    pub heartbeats: usize,
    /// Deliver at most this many frames, then end the connection as [`Self::cut`] says.
    pub frames: Option<usize>,
    /// How the connection ends after [`Self::frames`] frames.
    pub cut: Cut,
    /// After the delivered frames, a transport-minted `stream.error` with this code
    /// (no `id:`, `seq` = last delivered + 1), then close.
    pub error: Option<String>,
    /// Write the body in pieces cut at these byte offsets (of the whole body).
    pub split_at: Vec<usize>,
    /// Override the meta's `sv`.
    pub meta_sv: Option<i64>,
    /// Override the meta's `replayFrom` (`Some(None)` = null).
    pub meta_replay_from: Option<Option<String>>,
    /// Leave the meta out.
    pub no_meta: bool,
}

/// How a connection ends after its planned frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// Close cleanly between frames.
    #[default]
    Close,
    /// Write the next frame up to the middle of its JSON, then end the body.
    InsideFrame,
    /// Write the next frame up to the middle of its first multi-byte character
    /// (its payload must have one), then close cleanly.
    InsideChar,
    /// Keep the connection open, delivering nothing more.
    Hold,
}

impl StreamPlan {
    /// A well-behaved connection (knobs chain on it).
    pub fn deliver() -> Self {
        StreamPlan::default()
    }
    /// Refuse with `status` and a V1 envelope of `code`.
    pub fn refuse(status: u16, code: impl Into<String>) -> Self {
        StreamPlan {
            refuse: Some((status, code.into())),
            ..StreamPlan::default()
        }
    }
    /// Deliver `n` frames, then end as `cut` says.
    pub fn frames(mut self, n: usize, cut: Cut) -> Self {
        self.frames = Some(n);
        self.cut = cut;
        self
    }
    /// Resend `n` frames from before the cursor first.
    pub fn redeliver(mut self, n: u64) -> Self {
        self.redeliver = n;
        self
    }
    /// Leave out `seq`.
    pub fn skip(mut self, seq: u64) -> Self {
        self.skip.push(seq);
        self
    }
    /// Write `retry: ms` first.
    pub fn retry_ms(mut self, ms: u64) -> Self {
        self.retry_ms = Some(ms);
        self
    }
    /// `n` heartbeat comments after the meta.
    pub fn heartbeats(mut self, n: usize) -> Self {
        self.heartbeats = n;
        self
    }
    /// End with a transport-minted `stream.error {code}`.
    pub fn error(mut self, code: impl Into<String>) -> Self {
        self.error = Some(code.into());
        self
    }
    /// Split the body into writes at these byte offsets.
    pub fn split_at(mut self, offsets: &[usize]) -> Self {
        self.split_at = offsets.to_vec();
        self
    }
    /// Send `sv` in the meta.
    pub fn meta_sv(mut self, sv: i64) -> Self {
        self.meta_sv = Some(sv);
        self
    }
    /// Send this `replayFrom` in the meta whatever the request asked.
    pub fn meta_replay_from(mut self, replay_from: Option<&str>) -> Self {
        self.meta_replay_from = Some(replay_from.map(str::to_owned));
        self
    }
    /// Send no meta at all.
    pub fn no_meta(mut self) -> Self {
        self.no_meta = true;
        self
    }
}

/// How a recorded connection ended on the server's side.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEnd {
    /// Refused before the stream opened: status and code.
    Refused(u16, String),
    /// Still open.
    Open,
    /// Closed after the planned or terminal frames.
    Closed,
    /// Aborted or closed inside a frame.
    Severed,
}

/// One request to the stream route, as the server saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConnection {
    /// The path's `streamId`.
    pub stream_id: String,
    /// The `Last-Event-ID` header sent, if any.
    pub last_event_id: Option<String>,
    /// The `Authorization` header sent, if any.
    pub authorization: Option<String>,
    /// The `Accept` header sent, if any.
    pub accept: Option<String>,
    /// Whether an `X-Platos-Session-Token` header was sent.
    pub sent_session_token: bool,
    /// The `replayFrom` the meta carried (`None` also when no meta was sent).
    pub replay_from: Option<String>,
    /// The `seq` of every frame written whole, in order.
    pub seqs: Vec<u64>,
    /// How it ended.
    pub end: ConnectionEnd,
}

#[derive(Debug, Clone)]
struct Journaled {
    seq: u64,
    t: String,
    fields: Map<String, Value>,
}

#[derive(Default)]
struct Data {
    journals: HashMap<String, Vec<Journaled>>,
    plans: VecDeque<StreamPlan>,
    connections: Vec<StreamConnection>,
}

/// The journal, the queued plans and the connection records. Cheap to clone.
#[derive(Clone)]
pub struct V1Streams {
    data: Arc<Mutex<Data>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for V1Streams {
    fn default() -> Self {
        V1Streams {
            data: Arc::default(),
            version: Arc::new(watch::channel(0).0),
        }
    }
}

impl std::fmt::Debug for V1Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V1Streams").finish_non_exhaustive()
    }
}

/// `<environmentId>/<streamId>`: the journal key.
pub fn journal_id(environment_id: &str, stream_id: &str) -> String {
    format!("{environment_id}/{stream_id}")
}

/// The cursor of frame `seq` of a journal.
pub fn encode_cursor(journal_id: &str, seq: u64) -> String {
    format!("1.{}.{journal_id}{seq}", journal_id.len())
}

/// `(journal id, seq)` of a cursor this server issued.
fn decode_cursor(cursor: &str) -> Option<(String, u64)> {
    let rest = cursor.strip_prefix("1.")?;
    let (len, rest) = rest.split_once('.')?;
    let len: usize = len.parse().ok()?;
    let id = rest.get(..len)?;
    let seq = rest.get(len..)?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.to_owned(), seq.parse().ok()?))
}

impl V1Streams {
    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Appends a frame `{t, …fields}` to the journal of `environment_id/stream_id`
    /// (created on first use); returns its `seq`.
    pub fn append(&self, environment_id: &str, stream_id: &str, t: &str, fields: Value) -> u64 {
        let fields = match fields {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        let seq = {
            let mut data = self.lock();
            let journal = data
                .journals
                .entry(journal_id(environment_id, stream_id))
                .or_default();
            let seq = journal.len() as u64 + 1;
            journal.push(Journaled {
                seq,
                t: t.to_owned(),
                fields,
            });
            seq
        };
        self.bump();
        seq
    }

    /// Appends a `stream.offline` frame naming its own cursor as `resumeFrom`.
    pub fn go_offline(&self, environment_id: &str, stream_id: &str) -> u64 {
        let id = journal_id(environment_id, stream_id);
        let next = self.lock().journals.get(&id).map_or(0, Vec::len) as u64 + 1;
        self.append(
            environment_id,
            stream_id,
            "stream.offline",
            json!({"resumeFrom": encode_cursor(&id, next)}),
        )
    }

    /// The cursor of frame `seq` of `environment_id/stream_id`.
    pub fn cursor(&self, environment_id: &str, stream_id: &str, seq: u64) -> String {
        encode_cursor(&journal_id(environment_id, stream_id), seq)
    }

    /// The next connection (after those already planned) follows `plan`.
    pub fn plan(&self, plan: StreamPlan) {
        self.lock().plans.push_back(plan);
    }

    /// Every connection so far, in arrival order.
    pub fn connections(&self) -> Vec<StreamConnection> {
        self.lock().connections.clone()
    }

    /// Waits until at least `n` connections were recorded and none is still being
    /// written (each is refused, open or closed); `false` on timeout.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if self.lock().connections.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    fn record(&self, connection: StreamConnection) -> usize {
        let index = {
            let mut data = self.lock();
            data.connections.push(connection);
            data.connections.len() - 1
        };
        self.bump();
        index
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut StreamConnection)) {
        if let Some(c) = self.lock().connections.get_mut(index) {
            f(c);
        }
        self.bump();
    }
}

pub(crate) fn routes() -> Routes {
    Routes::new("").get(
        "/api/v1/environments/{environment_id}/streams/{stream_id}",
        read_stream,
    )
}

fn refusal(status: u16, code: &str, fields: Option<Value>) -> Response {
    let mut envelope = crate::rest::v1_error(code, &code.to_ascii_lowercase(), code, None);
    if let Some(fields) = fields {
        envelope["error"]["fields"] = fields;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(envelope)).into_response()
}

/// The flat frame JSON: reserved keys first, payload merged in.
fn frame_json(seq: u64, t: &str, fields: &Map<String, Value>) -> String {
    let mut out = format!(
        "{{\"sv\":1,\"t\":{},\"seq\":{seq},\"ts\":{}",
        Value::from(t),
        BASE_TS + seq as i64
    );
    for (k, v) in fields {
        out.push_str(&format!(",{}:{}", Value::from(k.as_str()), v));
    }
    out.push('}');
    out
}

fn frame_event(cursor: Option<&str>, seq: u64, t: &str, fields: &Map<String, Value>) -> String {
    let id = cursor.map(|c| format!("id: {c}\n")).unwrap_or_default();
    format!("{id}data: {}\n\n", frame_json(seq, t, fields))
}

fn is_terminal(t: &str) -> bool {
    matches!(t, "turn.done" | "stream.error" | "stream.offline")
}

async fn read_stream(
    State(s): State<Arc<Shared>>,
    Path((_environment_id, stream_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let streams = s.v1.clone();
    let last_event_id = header_value(&headers, "last-event-id").map(str::to_owned);
    let mut connection = StreamConnection {
        stream_id: stream_id.clone(),
        last_event_id: last_event_id.clone(),
        authorization: header_value(&headers, "authorization").map(str::to_owned),
        accept: header_value(&headers, "accept").map(str::to_owned),
        sent_session_token: headers.contains_key("x-platos-session-token"),
        replay_from: None,
        seqs: Vec::new(),
        end: ConnectionEnd::Open,
    };
    let refuse = |mut connection: StreamConnection, status: u16, code: &str, fields| {
        connection.end = ConnectionEnd::Refused(status, code.to_owned());
        streams.record(connection);
        refusal(status, code, fields)
    };

    let caller = match crate::v1::operator_caller(&s, &headers) {
        Ok(caller) => caller,
        Err((status, code)) => return refuse(connection, status, code, None),
    };
    let plan = streams.lock().plans.pop_front().unwrap_or_default();
    if let Some((status, code)) = &plan.refuse {
        return refuse(connection, *status, code, None);
    }
    let journal = journal_id(&caller.scope.environment_id, &stream_id);
    if !streams.lock().journals.contains_key(&journal) {
        return refuse(connection, 404, "STREAM_NOT_FOUND", None);
    }
    let after = match &last_event_id {
        None => 0,
        Some(cursor) => match decode_cursor(cursor) {
            Some((id, seq)) if id == journal => seq,
            _ => {
                let fields = json!([{"field": "Last-Event-ID", "code": "malformed",
                    "message": "Send back an id this service issued on this stream."}]);
                return refuse(connection, 400, "STREAM_CURSOR_UNREADABLE", Some(fields));
            }
        },
    };
    let replay_from = plan
        .meta_replay_from
        .clone()
        .unwrap_or(last_event_id.clone());
    connection.replay_from = if plan.no_meta {
        None
    } else {
        replay_from.clone()
    };
    let index = streams.record(connection);

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(write_connection(
        streams.clone(),
        index,
        journal,
        after,
        replay_from,
        plan,
        tx,
    ));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-transform"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Writes one connection's body as its plan says, recording each whole frame.
async fn write_connection(
    streams: V1Streams,
    index: usize,
    journal: String,
    after: u64,
    replay_from: Option<String>,
    plan: StreamPlan,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut writer = Writer {
        tx,
        written: 0,
        splits: plan.split_at.clone(),
    };
    let mut head = String::new();
    if let Some(ms) = plan.retry_ms {
        head.push_str(&format!("retry: {ms}\n\n"));
    }
    if !plan.no_meta {
        let replay = replay_from.map_or(Value::Null, Value::from);
        head.push_str(&format!(
            "event: stream_meta\ndata: {{\"sv\":{},\"replayFrom\":{replay}}}\n\n",
            plan.meta_sv.unwrap_or(1)
        ));
    }
    for _ in 0..plan.heartbeats {
        head.push_str(": keep-alive\n\n");
    }
    if writer.write(head.as_bytes()).await.is_err() {
        return;
    }

    let mut next = after.saturating_sub(plan.redeliver) + 1;
    let mut delivered = 0usize;
    let mut last_seq = after;
    let mut version = streams.version.subscribe();
    loop {
        version.borrow_and_update();
        if plan.frames == Some(delivered) && matches!(plan.cut, Cut::Close | Cut::Hold) {
            cut(&streams, index, &mut writer, plan.cut, "").await;
            return;
        }
        let frame = streams
            .lock()
            .journals
            .get(&journal)
            .and_then(|j| j.get(next as usize - 1).cloned());
        let Some(frame) = frame else {
            if let Some(code) = &plan.error {
                // Caught up: the transport mints its terminal (no `id:`, next seq).
                let seq = last_seq + 1;
                let fields = json!({"code": code});
                let fields = fields.as_object().cloned().unwrap_or_default();
                let event = frame_event(None, seq, "stream.error", &fields);
                if writer.write(event.as_bytes()).await.is_err() {
                    return;
                }
                streams.update(index, |c| c.seqs.push(seq));
                break;
            }
            // Caught up: wait for an append, or for the client to go away.
            tokio::select! {
                changed = version.changed() => if changed.is_err() { return },
                _ = writer.tx.closed() => {
                    streams.update(index, |c| c.end = ConnectionEnd::Closed);
                    return;
                }
            }
            continue;
        };
        next += 1;
        if plan.skip.contains(&frame.seq) {
            continue;
        }
        let event = frame_event(
            Some(&encode_cursor(&journal, frame.seq)),
            frame.seq,
            &frame.t,
            &frame.fields,
        );
        if plan.frames == Some(delivered) {
            cut(&streams, index, &mut writer, plan.cut, &event).await;
            return;
        }
        if writer.write(event.as_bytes()).await.is_err() {
            return;
        }
        delivered += 1;
        last_seq = last_seq.max(frame.seq);
        streams.update(index, |c| c.seqs.push(frame.seq));
        if is_terminal(&frame.t) {
            break;
        }
    }
    streams.update(index, |c| c.end = ConnectionEnd::Closed);
}

/// Ends a connection inside (or instead of) `event`.
async fn cut(streams: &V1Streams, index: usize, writer: &mut Writer, how: Cut, event: &str) {
    match how {
        Cut::Close => streams.update(index, |c| c.end = ConnectionEnd::Closed),
        Cut::Hold => {
            writer.tx.closed().await;
            streams.update(index, |c| c.end = ConnectionEnd::Closed);
        }
        Cut::InsideFrame => {
            let half = event.len() / 2;
            let at = (0..=half)
                .rev()
                .find(|i| event.is_char_boundary(*i))
                .unwrap_or(0);
            // The body then ends: a clean close, so the torn bytes are surely
            // delivered (an aborted body may drop what hyper still buffers).
            let _ = writer.write(&event.as_bytes()[..at]).await;
            streams.update(index, |c| c.end = ConnectionEnd::Severed);
        }
        Cut::InsideChar => {
            // One byte into the first multi-byte character.
            let at = event
                .char_indices()
                .find(|(_, ch)| ch.len_utf8() > 1)
                .map_or(event.len() / 2, |(i, _)| i + 1);
            let _ = writer.write(&event.as_bytes()[..at]).await;
            streams.update(index, |c| c.end = ConnectionEnd::Severed);
        }
    }
}

/// Sends body bytes, cutting them into separate writes at the planned offsets.
struct Writer {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    written: usize,
    splits: Vec<usize>,
}

impl Writer {
    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), ()> {
        while !bytes.is_empty() {
            let end = self.written + bytes.len();
            let take = self
                .splits
                .iter()
                .copied()
                .filter(|at| *at > self.written && *at < end)
                .min()
                .map_or(bytes.len(), |at| at - self.written);
            let (piece, rest) = bytes.split_at(take);
            self.tx
                .send(Ok(Bytes::copy_from_slice(piece)))
                .await
                .map_err(|_| ())?;
            self.written += piece.len();
            bytes = rest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let id = journal_id("env_fixture_alpha", "turn-fixture-7");
        assert_eq!(
            encode_cursor(&id, 1),
            "1.32.env_fixture_alpha/turn-fixture-71"
        );
        assert_eq!(decode_cursor(&encode_cursor(&id, 12)), Some((id, 12)));
        for bad in [
            "",
            "2.3.a/b1",
            "1.x.a/b1",
            "1.3.a/b",
            "1.3.a/bx",
            "1.99.a/b1",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn frames_are_flat_with_reserved_keys_first() {
        let fields = json!({"text": "wö"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            frame_event(Some("c1"), 1, "assistant.delta", &fields),
            "id: c1\ndata: {\"sv\":1,\"t\":\"assistant.delta\",\"seq\":1,\"ts\":1757900000001,\"text\":\"wö\"}\n\n"
        );
    }
}

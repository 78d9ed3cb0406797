//! What the server saw: REST requests, socket events, connects and handshakes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

/// One REST request as received (recorded before any fault knob acts on it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path as sent, still percent-encoded (e.g. `/api/v1/agent/threads/a%2Fb`).
    pub path: String,
    /// Raw query string without `?`, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Raw body bytes.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// First value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Body parsed as JSON (`None` when empty or not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Query parameters split on `&` and `=`, still percent-encoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect()
    }
}

/// One Socket.IO event a client sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedSocketEvent {
    /// Socket.IO socket id.
    pub socket_id: String,
    /// Namespace, e.g. `/agent`.
    pub namespace: String,
    /// Event name (`message`, `stop`, `join_thread`, `resume_stream`, …).
    pub event: String,
    /// First argument of the event (`null` when none).
    pub payload: Value,
}

/// One namespace CONNECT the server processed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedConnect {
    /// Socket.IO socket id.
    pub socket_id: String,
    /// Namespace, e.g. `/agent`.
    pub namespace: String,
    /// The CONNECT auth payload (`null` for a bare `40/agent,`). A `token` in it is kept.
    pub auth: Value,
    /// Upgrade request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// `None` when accepted; otherwise the `error` message the server sent before disconnecting.
    pub refused: Option<String>,
}

#[derive(Default)]
struct Data {
    requests: Vec<RecordedRequest>,
    events: Vec<RecordedSocketEvent>,
    connects: Vec<RecordedConnect>,
    handshakes: u64,
    faults_fired: Vec<String>,
}

/// Read access to everything the server recorded, plus waits that wake on each new record.
/// Cheap to clone; every clone sees the same data.
#[derive(Clone)]
pub struct Recorder {
    data: Arc<Mutex<Data>>,
    version: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            data: Arc::default(),
            version: Arc::new(watch::channel(0).0),
        }
    }
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panicking test thread must not hide the records from the others.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Wakes waiters without recording anything (turn start/end, agent frames).
    pub(crate) fn touch(&self) {
        self.bump();
    }

    pub(crate) fn push_request(&self, r: RecordedRequest) {
        self.lock().requests.push(r);
        self.bump();
    }

    pub(crate) fn push_event(&self, e: RecordedSocketEvent) {
        self.lock().events.push(e);
        self.bump();
    }

    pub(crate) fn push_connect(&self, c: RecordedConnect) {
        self.lock().connects.push(c);
        self.bump();
    }

    pub(crate) fn set_refused(&self, socket_id: &str, why: &str) {
        if let Some(c) = self
            .lock()
            .connects
            .iter_mut()
            .rev()
            .find(|c| c.socket_id == socket_id)
        {
            c.refused = Some(why.to_string());
        }
        self.bump();
    }

    pub(crate) fn count_handshake(&self) {
        self.lock().handshakes += 1;
        self.bump();
    }

    pub(crate) fn fault_fired(&self, what: String) {
        self.lock().faults_fired.push(what);
        self.bump();
    }

    /// Every REST request so far (under `/api/…`; Socket.IO transport requests excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// REST requests whose path ends with `suffix` (e.g. `"/threads"`).
    pub fn requests_to(&self, suffix: &str) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Every socket event clients sent, in arrival order.
    pub fn socket_events(&self) -> Vec<RecordedSocketEvent> {
        self.lock().events.clone()
    }

    /// Socket events with the given name.
    pub fn socket_events_named(&self, event: &str) -> Vec<RecordedSocketEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.event == event)
            .cloned()
            .collect()
    }

    /// Every namespace CONNECT processed (accepted or refused).
    pub fn connects(&self) -> Vec<RecordedConnect> {
        self.lock().connects.clone()
    }

    /// Number of namespace CONNECTs processed.
    pub fn connect_count(&self) -> usize {
        self.lock().connects.len()
    }

    /// Number of Engine.IO handshakes (new `/socket.io/` connections without a `sid`).
    pub fn handshake_count(&self) -> u64 {
        self.lock().handshakes
    }

    /// Descriptions of connection faults that fired (e.g. `"drop after 3 agent_event frames"`).
    pub fn faults_fired(&self) -> Vec<String> {
        self.lock().faults_fired.clone()
    }

    /// Forgets everything recorded so far (counters included).
    pub fn clear(&self) {
        *self.lock() = Data::default();
        self.bump();
    }

    /// Waits until `cond` holds; `false` on timeout. `cond` is checked now, after every
    /// new record, when a turn starts or ends ([`crate::TestServer::running_turns`]) and
    /// after every `agent_event` frame written ([`crate::Faults::agent_event_frames`]).
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Recorder) -> bool) -> bool {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if cond(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return cond(self),
            }
        }
    }

    /// Waits for the `n`-th (1-based) socket event named `event`, counting those already recorded.
    pub async fn wait_for_socket_event_n(
        &self,
        event: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<RecordedSocketEvent> {
        self.wait_until(timeout, |r| r.socket_events_named(event).len() >= n.max(1))
            .await
            .then(|| {
                self.socket_events_named(event)
                    .into_iter()
                    .nth(n.saturating_sub(1))
            })
            .flatten()
    }

    /// Waits for the first socket event named `event` (returns at once if already recorded).
    pub async fn wait_for_socket_event(
        &self,
        event: &str,
        timeout: Duration,
    ) -> Option<RecordedSocketEvent> {
        self.wait_for_socket_event_n(event, 1, timeout).await
    }

    /// Waits until at least `n` REST requests whose path ends with `suffix` were recorded.
    pub async fn wait_for_requests(&self, suffix: &str, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |r| r.requests_to(suffix).len() >= n)
            .await
    }

    /// Waits until at least `n` namespace CONNECTs were processed.
    pub async fn wait_for_connects(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |r| r.connect_count() >= n).await
    }
}

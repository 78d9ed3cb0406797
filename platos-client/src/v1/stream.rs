//! The resumable V1 event-stream reader (docs/v1-stream.md).
//!
//! Shaped like kube-rs' `runtime::watcher`: the reader is an explicit state
//! machine whose phases are an enum ([`Phase`]); what one parsed event means
//! is decided by a pure function ([`step`], with [`Admission::of`] and
//! [`StreamEnd::of_terminal`]); whether and when to reconnect is decided
//! apart ([`Budget`], [`reconnect_delay`]). The only I/O is in
//! [`Reader::next`], which drives the phases.
//!
//! In one sentence: every connection must open with a `stream_meta` naming
//! the cursor we sent; frames are applied strictly in `seq` order (a
//! duplicate is dropped, a gap abandons the connection and re-reads from the
//! last applied cursor at once); `turn.done` and `stream.error` end the
//! stream, `stream.offline` and any other end reconnect with `Last-Event-ID`,
//! until too many reconnects in a row apply nothing.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

use super::frame::{Frame, StreamMeta, read_frame, read_meta};
use super::payload::FramePayload;
use super::{Connect, V1Client, v1_path};
use crate::error::{Error, Result, StreamViolation};
use crate::retry;
use crate::sse;

/// Reconnects in a row that may apply no frame before the stream gives up.
pub const DEFAULT_MAX_RECONNECTS: u32 = 5;
/// A connection that delivers nothing for this long (three missed 15 s
/// heartbeats) is abandoned and resumed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// The largest line or event the reader buffers: four times the server's
/// 64 KiB frame cap.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;
/// First reconnect delay after progress, when the server sent no `retry:`.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Cap of the exponential reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The body of one connection, chunk by chunk.
pub(crate) type Body = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A connection the server accepted (2xx).
pub(crate) struct Opened {
    pub(crate) content_type: Option<String>,
    pub(crate) body: Body,
}

// ---------------------------------------------------------------- public values

/// What the reader did with a frame, by its `seq` against the last applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// The next frame in order: applied and handed to the caller.
    Apply,
    /// Already applied (the server redelivered it): dropped.
    Duplicate,
    /// Frames are missing before it: the connection is abandoned and the
    /// stream re-read from the last applied cursor.
    Gap {
        /// How many frames are missing.
        missing: u64,
    },
}

impl Admission {
    /// Admits `seq` after `last_seq` was applied (0: nothing applied yet).
    pub(crate) fn of(last_seq: u64, seq: u64) -> Admission {
        if seq <= last_seq {
            Admission::Duplicate
        } else if seq - last_seq > 1 {
            Admission::Gap {
                missing: seq - last_seq - 1,
            }
        } else {
            Admission::Apply
        }
    }
}

/// How a connection, and finally the stream, ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// `turn.done`: the stream is complete. Final.
    Completed,
    /// `stream.error`: the server ended the stream with `code`. Final, and
    /// not an `Err`: the caller decides what a failed stream means.
    Failed {
        /// The frame's `code`, when it had a non-empty one.
        code: Option<String>,
    },
    /// `stream.offline`: the server paused the stream; the reader resumes
    /// after `resume_from`.
    Interrupted {
        /// The frame's own `resumeFrom`, else the last applied cursor.
        resume_from: String,
    },
    /// The connection ended without a terminal frame (closed, broken, idle);
    /// the reader resumes after `resume_from` (from the start when `None`).
    Severed {
        /// The last applied cursor.
        resume_from: Option<String>,
    },
}

impl StreamEnd {
    /// Classifies an applied frame: `None` when it is not terminal.
    /// `last_event_id` is the cursor after applying it.
    pub(crate) fn of_terminal(frame: &Frame, last_event_id: Option<&str>) -> Option<StreamEnd> {
        let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
        match frame.payload() {
            FramePayload::TurnDone(_) => Some(StreamEnd::Completed),
            FramePayload::StreamError(e) => Some(StreamEnd::Failed {
                code: non_empty(e.code.as_deref()),
            }),
            // A `resumeFrom` that cannot travel as a header is treated as absent.
            FramePayload::StreamOffline(o) => Some(
                match non_empty(o.resume_from.as_deref())
                    .filter(|c| http::HeaderValue::from_str(c).is_ok())
                    .or(non_empty(last_event_id))
                {
                    Some(resume_from) => StreamEnd::Interrupted { resume_from },
                    None => StreamEnd::Severed { resume_from: None },
                },
            ),
            _ => None,
        }
    }

    /// Whether the reader reconnects after this end.
    pub fn is_resumable(&self) -> bool {
        matches!(
            self,
            StreamEnd::Interrupted { .. } | StreamEnd::Severed { .. }
        )
    }
}

/// Where a reader got to: the cursor and the `seq` of the last applied
/// frame. Save it to resume in another process with
/// [`ReadEventStream::resume_from`]; the cursor alone is not enough, because
/// the reader needs the `seq` to drop what the server redelivers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    last_event_id: String,
    last_seq: u64,
}

impl StreamPosition {
    /// A saved position. Refused: an empty cursor, one that cannot be a
    /// header value, or `last_seq` 0.
    pub fn new(last_event_id: impl Into<String>, last_seq: u64) -> Result<Self> {
        let last_event_id = last_event_id.into();
        if last_event_id.is_empty() || http::HeaderValue::from_str(&last_event_id).is_err() {
            return Err(Error::config(
                "a resume position needs a non-empty cursor that is a valid header value",
            ));
        }
        if last_seq == 0 {
            return Err(Error::config(
                "a resume position needs a last_seq of at least 1",
            ));
        }
        Ok(StreamPosition {
            last_event_id,
            last_seq,
        })
    }

    /// A position from saved parts that may be missing: both absent is "from
    /// the start" (`None`); one without the other is refused, because a
    /// cursor without its `seq` would re-apply redelivered frames and a
    /// `seq` without its cursor would skip frames.
    pub fn from_parts(
        last_event_id: Option<String>,
        last_seq: Option<u64>,
    ) -> Result<Option<Self>> {
        match (last_event_id, last_seq) {
            (None, None) => Ok(None),
            (Some(id), Some(seq)) => StreamPosition::new(id, seq).map(Some),
            _ => Err(Error::config(
                "last_event_id and last_seq resume together; give both or neither",
            )),
        }
    }

    /// The cursor of the last applied frame (sent as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The `seq` of the last applied frame.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// What the reader is doing, for observers ([`ReadEventStream::on_event`]):
/// per connection, the cursor sent, the meta read, each admission and how
/// the connection ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReaderEvent {
    /// A request is being sent, with this `Last-Event-ID` (none: from the start).
    Connecting {
        /// The header value sent.
        last_event_id: Option<String>,
    },
    /// The connection's `stream_meta` was read and checked.
    Opened {
        /// The meta.
        meta: StreamMeta,
    },
    /// A frame was admitted.
    Admitted {
        /// Its `seq`.
        seq: u64,
        /// The decision.
        admission: Admission,
    },
    /// The connection ended this way (a gap ends it without an end: the
    /// admission says why).
    Ended {
        /// The end.
        end: StreamEnd,
    },
    /// The request was refused before the stream opened.
    Refused {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// The V1 error code, when the server sent one.
        code: Option<String>,
        /// Whether the reader tries again (5xx, 429, network).
        retrying: bool,
    },
}

type Observer = Arc<dyn Fn(&ReaderEvent) + Send + Sync>;

// ---------------------------------------------------------------- the builder

/// Options of one stream read: where to resume, how patient to be.
/// Obtained from [`super::EnvironmentStreams::read`]; [`open`](Self::open)
/// makes the stream.
#[must_use]
pub struct ReadEventStream {
    client: V1Client,
    environment_id: String,
    stream_id: String,
    options: Options,
}

#[derive(Clone)]
struct Options {
    position: Option<StreamPosition>,
    max_reconnects: u32,
    idle_timeout: Duration,
    max_event_bytes: usize,
    observer: Option<Observer>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            position: None,
            max_reconnects: DEFAULT_MAX_RECONNECTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            observer: None,
        }
    }
}

impl ReadEventStream {
    pub(crate) fn new(client: V1Client, environment_id: String, stream_id: String) -> Self {
        ReadEventStream {
            client,
            environment_id,
            stream_id,
            options: Options::default(),
        }
    }

    /// Resumes after a position an earlier reader reported
    /// ([`EventStream::position`]): the first request already carries its
    /// cursor, and frames up to its `seq` are dropped if redelivered.
    pub fn resume_from(mut self, position: StreamPosition) -> Self {
        self.options.position = Some(position);
        self
    }

    /// Reconnects in a row that may apply no frame (default 5). Any applied
    /// frame restores the budget; 0 never reconnects.
    pub fn max_reconnects(mut self, n: u32) -> Self {
        self.options.max_reconnects = n;
        self
    }

    /// How long a connection may deliver nothing, heartbeats included,
    /// before it is abandoned and resumed (default 45 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.idle_timeout = timeout;
        self
    }

    /// The largest line or event the reader buffers (default 256 KiB); a
    /// larger one ends the stream with
    /// [`StreamViolation::EventTooLarge`].
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.options.max_event_bytes = bytes;
        self
    }

    /// Called with every [`ReaderEvent`], in order, on the task polling
    /// the stream. Keep it quick.
    pub fn on_event(mut self, observer: impl Fn(&ReaderEvent) + Send + Sync + 'static) -> Self {
        self.options.observer = Some(Arc::new(observer));
        self
    }

    /// Makes the stream. Refuses an empty (or `.`/`..`) id before anything
    /// is sent; the first request goes out when the stream is first polled.
    pub fn open(self) -> Result<EventStream> {
        let path = v1_path(&[
            (
                "/api/v1/environments/",
                Some(("environmentId", &self.environment_id)),
            ),
            ("/streams/", Some(("streamId", &self.stream_id))),
        ])?;
        let client = self.client;
        let path: Arc<str> = Arc::from(path);
        let connect: Connect = Arc::new(move |last_event_id: Option<String>| {
            let client = client.clone();
            let path = path.clone();
            Box::pin(async move {
                client
                    .open_event_stream(&path, last_event_id.as_deref())
                    .await
            })
        });
        Ok(EventStream::new(connect, self.options))
    }
}

impl fmt::Debug for ReadEventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadEventStream")
            .field("environment_id", &self.environment_id)
            .field("stream_id", &self.stream_id)
            .field("position", &self.options.position)
            .field("max_reconnects", &self.options.max_reconnects)
            .field("idle_timeout", &self.options.idle_timeout)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------- the stream

/// A resumable stream of applied [`Frame`]s, in `seq` order, each once.
///
/// Ends (`None`) after a final frame (`turn.done`, `stream.error`) or after
/// an `Err`: a refusal that is not retryable, a protocol violation
/// ([`Error::stream_violation`]) or an exhausted reconnect budget. Where it
/// got to and how it ended stay readable afterwards.
pub struct EventStream {
    frames: BoxStream<'static, Result<Frame>>,
    progress: Arc<Mutex<Progress>>,
}

#[derive(Debug, Default)]
struct Progress {
    last_event_id: Option<String>,
    last_seq: u64,
    end: Option<StreamEnd>,
    reconnects: u32,
}

impl EventStream {
    fn new(connect: Connect, options: Options) -> Self {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let reader = Reader::new(connect, options, progress.clone());
        let frames = futures::stream::unfold(reader, |mut reader| async move {
            reader.next().await.map(|item| (item, reader))
        })
        .boxed();
        EventStream { frames, progress }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The position to save for a later resume (`None` until a frame with a
    /// cursor was applied).
    pub fn position(&self) -> Option<StreamPosition> {
        let p = self.progress();
        let last_event_id = p.last_event_id.clone()?;
        (p.last_seq > 0).then_some(StreamPosition {
            last_event_id,
            last_seq: p.last_seq,
        })
    }

    /// The cursor of the last applied frame that carried one.
    pub fn last_event_id(&self) -> Option<String> {
        self.progress().last_event_id.clone()
    }

    /// The `seq` of the last applied frame (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.progress().last_seq
    }

    /// How the latest connection ended; after the stream ends, how the
    /// stream ended.
    pub fn end(&self) -> Option<StreamEnd> {
        self.progress().end.clone()
    }

    /// Every reconnect so far (productive or not).
    pub fn reconnects(&self) -> u32 {
        self.progress().reconnects
    }
}

impl Stream for EventStream {
    type Item = Result<Frame>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.frames.poll_next_unpin(cx)
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("progress", &*self.progress())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------- the machine

/// The reader's phases.
enum Phase {
    /// About to (re)connect after `delay`, sending `resume` as `Last-Event-ID`.
    Connecting {
        resume: Option<String>,
        delay: Duration,
    },
    /// A connection is open.
    Open(Box<Connection>),
    /// The stream ends with this error at the next poll.
    Failing(Error),
    /// Nothing more.
    Finished,
}

/// One open connection.
struct Connection {
    body: Body,
    parser: sse::Parser,
    items: VecDeque<sse::Item>,
    /// The `Last-Event-ID` this connection's request carried.
    sent: Option<String>,
    /// `None` until the connection's `stream_meta` was read.
    meta: Option<StreamMeta>,
}

/// What one parsed item means. Pure: no I/O, no reader state changed.
enum Step {
    Nothing,
    Retry(Duration),
    Opened(StreamMeta),
    Admit(Frame, Admission),
    Violation(Error),
}

fn step(item: sse::Item, meta: Option<&StreamMeta>, sent: Option<&str>, last_seq: u64) -> Step {
    let event = match item {
        sse::Item::Comment(_) => return Step::Nothing,
        sse::Item::Retry(delay) => return Step::Retry(delay),
        sse::Item::Event(event) => event,
    };
    match (event.event.as_str(), meta) {
        // A repeated meta changes nothing: the connection's was checked.
        ("stream_meta", Some(_)) => Step::Nothing,
        ("stream_meta", None) => match read_meta(&event.data, sent) {
            Ok(meta) => Step::Opened(meta),
            Err(e) => Step::Violation(e),
        },
        ("message", None) => Step::Violation(Error::violation(
            StreamViolation::MetaMissing,
            "a frame arrived before stream_meta",
        )),
        ("message", Some(_)) => match read_frame(&event.data, &event.id) {
            Ok(frame) => {
                let admission = Admission::of(last_seq, frame.seq);
                Step::Admit(frame, admission)
            }
            Err(e) => Step::Violation(e),
        },
        // Other named events carry no frames.
        _ => Step::Nothing,
    }
}

/// Reconnects in a row that applied nothing, against the allowance.
#[derive(Debug, Clone, Copy)]
struct Budget {
    max: u32,
    fruitless: u32,
}

impl Budget {
    /// Spends one reconnect; `None` when the run of fruitless reconnects
    /// has used the allowance up.
    fn spend(&mut self) -> Option<u32> {
        (self.fruitless < self.max).then(|| {
            self.fruitless += 1;
            self.fruitless
        })
    }

    fn restore(&mut self) {
        self.fruitless = 0;
    }
}

/// The delay before fruitless reconnect `n` (1-based): exponential from the
/// server's `retry:` (else 250 ms), capped at 10 s or the server's value.
fn reconnect_delay(retry_hint: Option<Duration>, n: u32) -> Duration {
    let base = retry_hint.unwrap_or(BACKOFF_BASE);
    retry::exponential(base, BACKOFF_MAX.max(base), n.saturating_sub(1))
}

fn is_event_stream(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// What the next reconnect waits for.
enum Wait {
    /// No wait: frames were skipped and must be re-read now.
    None,
    /// The backoff, or this long when the server said so (429 `Retry-After`).
    Backoff(Option<Duration>),
}

struct Reader {
    connect: Connect,
    idle_timeout: Duration,
    limits: sse::Limits,
    observer: Option<Observer>,
    progress: Arc<Mutex<Progress>>,
    last_event_id: Option<String>,
    last_seq: u64,
    budget: Budget,
    retry_hint: Option<Duration>,
    phase: Phase,
}

impl Reader {
    fn new(connect: Connect, options: Options, progress: Arc<Mutex<Progress>>) -> Self {
        let (last_event_id, last_seq) = match options.position {
            Some(p) => (Some(p.last_event_id), p.last_seq),
            None => (None, 0),
        };
        let reader = Reader {
            connect,
            idle_timeout: options.idle_timeout,
            limits: sse::Limits::bytes(options.max_event_bytes),
            observer: options.observer,
            progress,
            phase: Phase::Connecting {
                resume: last_event_id.clone(),
                delay: Duration::ZERO,
            },
            last_event_id,
            last_seq,
            budget: Budget {
                max: options.max_reconnects,
                fruitless: 0,
            },
            retry_hint: None,
        };
        reader.publish(None, false);
        reader
    }

    fn observe(&self, event: ReaderEvent) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    /// Mirrors the cursor (and an end, a reconnect) where the caller reads it.
    fn publish(&self, end: Option<&StreamEnd>, reconnected: bool) {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.last_event_id.clone_from(&self.last_event_id);
        p.last_seq = self.last_seq;
        if let Some(end) = end {
            p.end = Some(end.clone());
        }
        if reconnected {
            p.reconnects += 1;
        }
    }

    fn end_connection(&self, end: StreamEnd) {
        self.publish(Some(&end), false);
        self.observe(ReaderEvent::Ended { end });
    }

    /// Schedules the next connection, or the exhaustion error.
    fn reconnect(&mut self, resume: Option<String>, wait: Wait) {
        self.phase = match self.budget.spend() {
            Some(n) => {
                self.publish(None, true);
                let delay = match wait {
                    Wait::None => Duration::ZERO,
                    Wait::Backoff(Some(asked)) => asked,
                    Wait::Backoff(None) => reconnect_delay(self.retry_hint, n),
                };
                Phase::Connecting { resume, delay }
            }
            None => Phase::Failing(Error::violation(
                StreamViolation::ReconnectsExhausted,
                format!(
                    "{} reconnects in a row applied no frame",
                    self.budget.fruitless
                ),
            )),
        };
    }

    async fn next(&mut self) -> Option<Result<Frame>> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Finished) {
                Phase::Finished => return None,
                Phase::Failing(e) => return Some(Err(e)),
                Phase::Connecting { resume, delay } => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    self.connect_now(resume).await;
                }
                Phase::Open(mut connection) => {
                    if let Some(item) = connection.items.pop_front() {
                        if let Some(out) = self.on_item(connection, item) {
                            return Some(out);
                        }
                    } else {
                        self.read_more(connection).await;
                    }
                }
            }
        }
    }

    async fn connect_now(&mut self, resume: Option<String>) {
        self.observe(ReaderEvent::Connecting {
            last_event_id: resume.clone(),
        });
        let answer = tokio::time::timeout(self.idle_timeout, (self.connect)(resume.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(Error::timeout(
                    "the stream did not answer within the idle timeout",
                    None,
                ))
            });
        match answer {
            Ok(opened) if is_event_stream(opened.content_type.as_deref()) => {
                self.phase = Phase::Open(Box::new(Connection {
                    body: opened.body,
                    parser: sse::Parser::new(self.limits),
                    items: VecDeque::new(),
                    sent: resume,
                    meta: None,
                }));
            }
            Ok(opened) => {
                self.phase = Phase::Failing(Error::violation(
                    StreamViolation::MediaType,
                    format!(
                        "the answer is {:?}, not text/event-stream",
                        opened.content_type.unwrap_or_default()
                    ),
                ));
            }
            Err(e) => {
                let retrying = e.is_retryable();
                self.observe(ReaderEvent::Refused {
                    status: e.status(),
                    code: e.code().map(str::to_owned),
                    retrying,
                });
                if retrying {
                    // Same cursor: nothing was read.
                    self.reconnect(resume, Wait::Backoff(e.retry_after()));
                } else {
                    self.phase = Phase::Failing(e);
                }
            }
        }
    }

    /// Acts on one parsed item; `Some` is what the caller gets next.
    fn on_item(
        &mut self,
        mut connection: Box<Connection>,
        item: sse::Item,
    ) -> Option<Result<Frame>> {
        let step = step(
            item,
            connection.meta.as_ref(),
            connection.sent.as_deref(),
            self.last_seq,
        );
        match step {
            Step::Nothing => self.phase = Phase::Open(connection),
            Step::Retry(delay) => {
                self.retry_hint = Some(delay);
                self.phase = Phase::Open(connection);
            }
            Step::Opened(meta) => {
                connection.meta = Some(meta.clone());
                self.phase = Phase::Open(connection);
                self.observe(ReaderEvent::Opened { meta });
            }
            Step::Violation(e) => return Some(Err(e)),
            Step::Admit(frame, admission) => {
                self.observe(ReaderEvent::Admitted {
                    seq: frame.seq,
                    admission,
                });
                match admission {
                    Admission::Duplicate => self.phase = Phase::Open(connection),
                    Admission::Gap { .. } => {
                        drop(connection);
                        self.reconnect(self.last_event_id.clone(), Wait::None);
                    }
                    Admission::Apply => return Some(Ok(self.apply(connection, frame))),
                }
            }
        }
        None
    }

    fn apply(&mut self, connection: Box<Connection>, frame: Frame) -> Frame {
        self.last_seq = frame.seq;
        if let Some(id) = &frame.id {
            self.last_event_id = Some(id.clone());
        }
        self.budget.restore();
        self.publish(None, false);
        match StreamEnd::of_terminal(&frame, self.last_event_id.as_deref()) {
            None => self.phase = Phase::Open(connection),
            Some(end) => {
                drop(connection);
                let resume = match &end {
                    StreamEnd::Interrupted { resume_from } => Some(resume_from.clone()),
                    _ => self.last_event_id.clone(),
                };
                let resumable = end.is_resumable();
                self.end_connection(end);
                if resumable {
                    self.reconnect(resume, Wait::Backoff(None));
                }
            }
        }
        frame
    }

    async fn read_more(&mut self, mut connection: Box<Connection>) {
        let chunk = tokio::time::timeout(self.idle_timeout, connection.body.next()).await;
        if let Ok(Some(Ok(bytes))) = chunk {
            let mut items = Vec::new();
            match connection.parser.feed(&bytes, &mut items) {
                Ok(()) => {
                    connection.items.extend(items);
                    self.phase = Phase::Open(connection);
                }
                Err(too_large) => {
                    self.phase = Phase::Failing(Error::violation(
                        StreamViolation::EventTooLarge,
                        too_large.to_string(),
                    ));
                }
            }
            return;
        }
        // Closed, broken or idle: whatever was unterminated is discarded
        // with the parser.
        drop(connection);
        self.end_connection(StreamEnd::Severed {
            resume_from: self.last_event_id.clone(),
        });
        self.reconnect(self.last_event_id.clone(), Wait::Backoff(None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use tokio::time::Instant;

    // ------------------------------------------------------------ pure parts

    #[test]
    fn admission_grid() {
        for last in 0..=4u64 {
            for seq in 1..=6u64 {
                let expected = if seq <= last {
                    Admission::Duplicate
                } else if seq == last + 1 {
                    Admission::Apply
                } else {
                    Admission::Gap {
                        missing: seq - last - 1,
                    }
                };
                assert_eq!(Admission::of(last, seq), expected, "last {last} seq {seq}");
            }
        }
        assert_eq!(Admission::of(0, 2), Admission::Gap { missing: 1 });
        assert_eq!(Admission::of(4, 4), Admission::Duplicate);
    }

    fn frame(t: &str, fields: serde_json::Value) -> Frame {
        let mut value = serde_json::json!({"sv": 1, "t": t, "seq": 3, "ts": 3});
        if let (Some(o), serde_json::Value::Object(f)) = (value.as_object_mut(), fields) {
            o.extend(f);
        }
        read_frame(&value.to_string(), "").expect("valid frame")
    }

    #[test]
    fn end_grid() {
        use serde_json::json;
        let c2 = Some("c2");
        let of = |t: &str, f: serde_json::Value, c: Option<&str>| {
            StreamEnd::of_terminal(&frame(t, f), c)
        };
        assert_eq!(of("assistant.delta", json!({"text": ""}), c2), None);
        assert_eq!(of("turn.done", json!({}), c2), Some(StreamEnd::Completed));
        assert_eq!(
            of("stream.error", json!({"code": "STREAM_CURSOR_EXPIRED"}), c2),
            Some(StreamEnd::Failed {
                code: Some("STREAM_CURSOR_EXPIRED".into())
            })
        );
        assert_eq!(
            of("stream.error", json!({"code": ""}), c2),
            Some(StreamEnd::Failed { code: None })
        );
        assert_eq!(
            of("stream.error", json!({}), None),
            Some(StreamEnd::Failed { code: None })
        );
        assert_eq!(
            of("stream.offline", json!({"resumeFrom": "c5"}), c2),
            Some(StreamEnd::Interrupted {
                resume_from: "c5".into()
            })
        );
        assert_eq!(
            of("stream.offline", json!({}), c2),
            Some(StreamEnd::Interrupted {
                resume_from: "c2".into()
            })
        );
        assert_eq!(
            of("stream.offline", json!({}), None),
            Some(StreamEnd::Severed { resume_from: None })
        );
        assert_eq!(
            of("stream.offline", json!({"resumeFrom": ""}), None),
            Some(StreamEnd::Severed { resume_from: None })
        );
        assert_eq!(
            of("stream.offline", json!({"resumeFrom": "c\n5"}), c2),
            Some(StreamEnd::Interrupted {
                resume_from: "c2".into()
            })
        );
        assert!(!StreamEnd::Completed.is_resumable());
        assert!(!StreamEnd::Failed { code: None }.is_resumable());
        assert!(StreamEnd::Severed { resume_from: None }.is_resumable());
    }

    #[test]
    fn positions_resume_together() {
        assert_eq!(StreamPosition::from_parts(None, None).expect("ok"), None);
        let p = StreamPosition::from_parts(Some("c3".into()), Some(3))
            .expect("ok")
            .expect("some");
        assert_eq!((p.last_event_id(), p.last_seq()), ("c3", 3));
        for (id, seq) in [(Some("c3".to_owned()), None), (None, Some(3))] {
            let e = StreamPosition::from_parts(id, seq).unwrap_err();
            assert!(e.message().contains("together"), "{e}");
        }
        assert!(StreamPosition::new("", 3).is_err());
        assert!(StreamPosition::new("c\n3", 3).is_err());
        assert!(StreamPosition::new("c3", 0).is_err());
    }

    #[test]
    fn media_types() {
        assert!(is_event_stream(Some("text/event-stream")));
        assert!(is_event_stream(Some("Text/Event-Stream; charset=utf-8")));
        assert!(!is_event_stream(Some("application/json")));
        assert!(!is_event_stream(None));
    }

    #[test]
    fn budget_counts_a_run_not_a_lifetime() {
        let mut budget = Budget {
            max: 2,
            fruitless: 0,
        };
        assert_eq!(budget.spend(), Some(1));
        assert_eq!(budget.spend(), Some(2));
        assert_eq!(budget.spend(), None);
        budget.restore();
        assert_eq!(budget.spend(), Some(1));
        let mut never = Budget {
            max: 0,
            fruitless: 0,
        };
        assert_eq!(never.spend(), None);
    }

    #[test]
    fn delays_grow_from_the_servers_retry() {
        let ms = Duration::from_millis;
        assert_eq!(reconnect_delay(None, 1), ms(250));
        assert_eq!(reconnect_delay(None, 3), ms(1000));
        assert_eq!(reconnect_delay(None, 30), ms(10_000));
        assert_eq!(reconnect_delay(Some(ms(1500)), 1), ms(1500));
        assert_eq!(reconnect_delay(Some(ms(1500)), 2), ms(3000));
        assert_eq!(reconnect_delay(Some(ms(30_000)), 4), ms(30_000));
    }

    // ------------------------------------------------ scripted connections
    //
    // The reader against scripted connections (no sockets) under a paused
    // clock: delays are asserted exactly, and the idle timeout fires only
    // because the clock was advanced past it.

    enum Script {
        /// Answer 2xx with these chunks, then close (or hang when `hang`).
        Body {
            content_type: &'static str,
            chunks: Vec<Vec<u8>>,
            hang: bool,
        },
        /// Refuse with this status and body.
        Refuse(u16, &'static str, Option<Duration>),
    }

    fn body(chunks: &[&str]) -> Script {
        Script::Body {
            content_type: "text/event-stream; charset=utf-8",
            chunks: chunks.iter().map(|c| c.as_bytes().to_vec()).collect(),
            hang: false,
        }
    }

    fn hanging(chunks: &[&str]) -> Script {
        match body(chunks) {
            Script::Body {
                content_type,
                chunks,
                ..
            } => Script::Body {
                content_type,
                chunks,
                hang: true,
            },
            other => other,
        }
    }

    /// The cursors each connection sent and when.
    type Log = Arc<Mutex<Vec<(Option<String>, Instant)>>>;

    fn scripted(scripts: Vec<Script>) -> (Connect, Log) {
        let scripts = Arc::new(Mutex::new(VecDeque::from(scripts)));
        let log: Log = Arc::default();
        let seen = log.clone();
        let connect: Connect = Arc::new(move |cursor: Option<String>| {
            seen.lock().unwrap().push((cursor, Instant::now()));
            let next = scripts.lock().unwrap().pop_front();
            Box::pin(async move {
                match next {
                    Some(Script::Body {
                        content_type,
                        chunks,
                        hang,
                    }) => {
                        let chunks =
                            futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
                        let body: Body = if hang {
                            Box::pin(chunks.chain(futures::stream::pending()))
                        } else {
                            Box::pin(chunks)
                        };
                        Ok(Opened {
                            content_type: Some(content_type.to_owned()),
                            body,
                        })
                    }
                    Some(Script::Refuse(status, body, retry_after)) => Err(Error::from_api(
                        ApiError::parse(status, None, None, retry_after, body.as_bytes()),
                    )),
                    None => Err(Error::network("script exhausted", None)),
                }
            })
        });
        (connect, log)
    }

    fn meta(replay_from: Option<&str>) -> String {
        let replay = replay_from.map_or("null".to_owned(), |c| format!("\"{c}\""));
        format!("event: stream_meta\ndata: {{\"sv\":1,\"replayFrom\":{replay}}}\n\n")
    }

    fn delta(seq: u64) -> String {
        format!(
            "id: c{seq}\ndata: {{\"sv\":1,\"t\":\"assistant.delta\",\"seq\":{seq},\"ts\":{seq},\"text\":\"{seq}\"}}\n\n"
        )
    }

    fn done(seq: u64) -> String {
        format!("id: c{seq}\ndata: {{\"sv\":1,\"t\":\"turn.done\",\"seq\":{seq},\"ts\":{seq}}}\n\n")
    }

    fn open(scripts: Vec<Script>, options: Options) -> (EventStream, Log) {
        let (connect, log) = scripted(scripts);
        (EventStream::new(connect, options), log)
    }

    async fn drain(stream: &mut EventStream) -> (Vec<u64>, Option<Error>) {
        let mut applied = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(frame) => applied.push(frame.seq),
                Err(e) => return (applied, Some(e)),
            }
        }
        (applied, None)
    }

    fn cursors(log: &Log) -> Vec<Option<String>> {
        log.lock().unwrap().iter().map(|(c, _)| c.clone()).collect()
    }

    fn gaps(log: &Log) -> Vec<Duration> {
        let log = log.lock().unwrap();
        log.windows(2).map(|w| w[1].1 - w[0].1).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn fruitless_reconnects_back_off_and_exhaust_the_budget() {
        let c1 = meta(Some("c1"));
        let (mut stream, log) = open(
            vec![
                body(&[&meta(None), &delta(1)]),
                body(&[&c1]),
                body(&[&c1, ": keep-alive\n\n"]),
                body(&[&c1]),
            ],
            Options {
                max_reconnects: 3,
                ..Options::default()
            },
        );
        let (applied, error) = drain(&mut stream).await;
        assert_eq!(applied, [1]);
        let error = error.expect("exhausted");
        assert_eq!(
            error.stream_violation(),
            Some(StreamViolation::ReconnectsExhausted)
        );
        let c1 = Some("c1".to_owned());
        assert_eq!(cursors(&log), [None, c1.clone(), c1.clone(), c1]);
        let ms = Duration::from_millis;
        assert_eq!(gaps(&log), [ms(250), ms(500), ms(1000)]);
        assert_eq!(stream.reconnects(), 3);
        assert_eq!(
            stream.end(),
            Some(StreamEnd::Severed {
                resume_from: Some("c1".into())
            })
        );
        assert_eq!(stream.next().await.map(|r| r.is_ok()), None, "ended");
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_retry_sets_the_reconnect_delay() {
        let (mut stream, log) = open(
            vec![
                body(&["retry: 1500\n", &meta(None), &delta(1)]),
                body(&[&meta(Some("c1")), &done(2)]),
            ],
            Options::default(),
        );
        let (applied, error) = drain(&mut stream).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(applied, [1, 2]);
        assert_eq!(gaps(&log), [Duration::from_millis(1500)]);
        assert_eq!(stream.end(), Some(StreamEnd::Completed));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_abandoned_after_the_timeout() {
        let (mut stream, log) = open(
            vec![
                hanging(&[&meta(None), &delta(1)]),
                body(&[&meta(Some("c1")), &done(2)]),
            ],
            Options::default(),
        );
        let (applied, error) = drain(&mut stream).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(applied, [1, 2]);
        assert_eq!(cursors(&log), [None, Some("c1".into())]);
        // 45 s of silence, then the first backoff step.
        assert_eq!(
            gaps(&log),
            [DEFAULT_IDLE_TIMEOUT + Duration::from_millis(250)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_re_reads_at_once_from_the_applied_cursor() {
        let (mut stream, log) = open(
            vec![
                body(&[&meta(None), &delta(1), &delta(2), &delta(4)]),
                body(&[&meta(Some("c2")), &delta(3), &delta(4), &done(5)]),
            ],
            Options::default(),
        );
        let (applied, error) = drain(&mut stream).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(applied, [1, 2, 3, 4, 5]);
        assert_eq!(cursors(&log), [None, Some("c2".into())]);
        assert_eq!(gaps(&log), [Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_retry_or_end() {
        // 429 waits what it was told; 503 backs off; both keep the cursor.
        let (mut stream, log) = open(
            vec![
                body(&[&meta(None), &delta(1)]),
                Script::Refuse(
                    429,
                    r#"{"error":{"code":"RATE_LIMITED"}}"#,
                    Some(Duration::from_secs(7)),
                ),
                Script::Refuse(
                    503,
                    r#"{"error":{"code":"STREAM_JOURNAL_UNAVAILABLE"}}"#,
                    None,
                ),
                body(&[&meta(Some("c1")), &done(2)]),
            ],
            Options::default(),
        );
        let (applied, error) = drain(&mut stream).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(applied, [1, 2]);
        let c1 = Some("c1".to_owned());
        assert_eq!(cursors(&log), [None, c1.clone(), c1.clone(), c1]);
        let ms = Duration::from_millis;
        assert_eq!(gaps(&log), [ms(250), ms(7000), ms(1000)]);

        // A 4xx is final: one request, the envelope in the error.
        let (mut stream, log) = open(
            vec![Script::Refuse(
                409,
                r#"{"error":{"code":"STREAM_CURSOR_EXPIRED","title":"gone","errorId":"err_1"}}"#,
                None,
            )],
            Options::default(),
        );
        let (applied, error) = drain(&mut stream).await;
        assert!(applied.is_empty());
        let error = error.expect("refused");
        assert_eq!(error.status(), Some(409));
        assert_eq!(error.code(), Some("STREAM_CURSOR_EXPIRED"));
        assert_eq!(error.refusal().map(|r| r.error_id.as_str()), Some("err_1"));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn violations_end_the_stream() {
        let cases: Vec<(Script, StreamViolation)> = vec![
            (
                Script::Body {
                    content_type: "application/json",
                    chunks: vec![],
                    hang: false,
                },
                StreamViolation::MediaType,
            ),
            (body(&[&delta(1)]), StreamViolation::MetaMissing),
            (
                body(&["event: stream_meta\ndata: {}\n\n"]),
                StreamViolation::MetaMalformed,
            ),
            (
                body(&["event: stream_meta\ndata: {\"sv\":2,\"replayFrom\":null}\n\n"]),
                StreamViolation::VersionUnsupported,
            ),
            (body(&[&meta(Some("c9"))]), StreamViolation::ReplayMismatch),
            (
                body(&[
                    &meta(None),
                    "data: {\"sv\":1,\"t\":\"x\",\"seq\":0,\"ts\":1}\n\n",
                ]),
                StreamViolation::FrameMalformed,
            ),
            (
                body(&[&meta(None), &format!("data: {}\n\n", "x".repeat(300))]),
                StreamViolation::EventTooLarge,
            ),
        ];
        for (script, expected) in cases {
            let (mut stream, log) = open(
                vec![script],
                Options {
                    max_event_bytes: 256,
                    ..Options::default()
                },
            );
            let (applied, error) = drain(&mut stream).await;
            assert!(applied.is_empty());
            let error = error.expect("violation");
            assert_eq!(error.stream_violation(), Some(expected), "{error}");
            assert_eq!(error.code(), Some(expected.code()));
            assert_eq!(log.lock().unwrap().len(), 1, "{expected}: no reconnect");
        }
    }
}

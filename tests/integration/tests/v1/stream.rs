//! The V1 resumable event-stream reader against the test server's stream route, over
//! real HTTP on loopback: one scenario per reader rule of docs/v1-stream.md.
//!
//! Each scenario asserts, per connection, both what the reader did (the Last-Event-ID
//! it sent, the meta it read, each admission, the seqs it applied, how the connection
//! ended; from `ReaderEvent`s) and what the server saw and wrote. A reader that
//! re-applied frames, applied a torn one, or resumed from the wrong cursor produces
//! different per-connection lists even where the concatenated text would match.
//!
//! No sleeps: reconnect delays are shortened by the server's own `retry: 1`, and
//! every wait is bounded by [`DEADLINE`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use platos_client::v1::{
    Admission, EventStream, Frame, FramePayload, FrameType, ReadEventStream, ReaderEvent,
    StreamEnd, StreamPosition, V1Client,
};
use platos_client::{Error, StreamViolation};
use platos_test_server::{ConnectionEnd, Cut, StreamConnection, StreamPlan, TestServer};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);
const STREAM: &str = "turn-fixture-7";

/// What the reader did on one connection.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    sent: Option<String>,
    /// The meta's `(sv, replayFrom)`.
    meta: Option<(i64, Option<String>)>,
    admissions: Vec<(u64, Admission)>,
    applied: Vec<u64>,
    end: Option<StreamEnd>,
    refused: Option<(Option<u16>, Option<String>, bool)>,
}

struct Fixture {
    server: TestServer,
    /// The token the client sends (minting again could land in another second).
    operator_token: String,
    client: V1Client,
    events: Arc<Mutex<Vec<ReaderEvent>>>,
}

impl Fixture {
    async fn start() -> Fixture {
        let server = TestServer::start().await.expect("server");
        let operator_token = server.operator_token();
        let client = V1Client::builder()
            .base_url(server.base_url())
            .operator_token(operator_token.clone())
            .build()
            .expect("client");
        Fixture {
            server,
            operator_token,
            client,
            events: Arc::default(),
        }
    }

    fn env(&self) -> String {
        self.server.scope().environment_id.clone()
    }

    fn cursor(&self, seq: u64) -> String {
        self.server.v1_streams().cursor(&self.env(), STREAM, seq)
    }

    fn c(&self, seq: u64) -> Option<String> {
        Some(self.cursor(seq))
    }

    fn append(&self, t: &str, fields: Value) -> u64 {
        self.server
            .v1_streams()
            .append(&self.env(), STREAM, t, fields)
    }

    fn deltas(&self, texts: &[&str]) {
        for text in texts {
            self.append("assistant.delta", json!({ "text": text }));
        }
    }

    fn done(&self) -> u64 {
        self.append("turn.done", json!({}))
    }

    fn plan(&self, plan: StreamPlan) {
        self.server.v1_streams().plan(plan);
    }

    /// The read builder with the observer recording every reader event.
    fn read(&self) -> ReadEventStream {
        let events = self.events.clone();
        self.client
            .environment_streams()
            .read(self.env(), STREAM)
            .on_event(move |e| events.lock().unwrap().push(e.clone()))
    }

    /// The reader's events grouped per connection.
    fn seen(&self) -> Vec<Seen> {
        let mut out: Vec<Seen> = Vec::new();
        for event in self.events.lock().unwrap().iter() {
            if let ReaderEvent::Connecting { last_event_id } = event {
                out.push(Seen {
                    sent: last_event_id.clone(),
                    ..Seen::default()
                });
                continue;
            }
            let seen = out.last_mut().expect("an event before any connection");
            match event {
                ReaderEvent::Opened { meta } => {
                    seen.meta = Some((meta.sv, meta.replay_from.clone()))
                }
                ReaderEvent::Admitted { seq, admission } => {
                    seen.admissions.push((*seq, *admission));
                    if *admission == Admission::Apply {
                        seen.applied.push(*seq);
                    }
                }
                ReaderEvent::Ended { end } => seen.end = Some(end.clone()),
                ReaderEvent::Refused {
                    status,
                    code,
                    retrying,
                } => seen.refused = Some((*status, code.clone(), *retrying)),
                other => panic!("unexpected reader event {other:?}"),
            }
        }
        out
    }

    fn server_connections(&self) -> Vec<StreamConnection> {
        self.server.v1_streams().connections()
    }

    /// Waits until the server recorded `n` connections and every one stopped writing.
    async fn settled(&self, n: usize) -> Vec<StreamConnection> {
        let streams = self.server.v1_streams();
        assert!(
            streams.wait_for_connections(n, DEADLINE).await,
            "{n} connections expected, got {:?}",
            streams.connections()
        );
        let ok = self
            .server
            .recorder()
            .wait_until(DEADLINE, |_| {
                streams
                    .connections()
                    .iter()
                    .all(|c| c.end != ConnectionEnd::Open)
            })
            .await;
        assert!(ok, "connections still open: {:?}", streams.connections());
        self.server_connections()
    }
}

/// Reads the stream to its end (bounded): the applied frames and the error, if any.
async fn drain(stream: &mut EventStream) -> (Vec<Frame>, Option<Error>) {
    tokio::time::timeout(DEADLINE, async {
        let mut frames = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(frame) => frames.push(frame),
                Err(e) => return (frames, Some(e)),
            }
        }
        (frames, None)
    })
    .await
    .expect("the stream did not end in time")
}

fn seqs(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.seq).collect()
}

fn text(frames: &[Frame]) -> String {
    frames
        .iter()
        .filter_map(|f| match f.payload() {
            FramePayload::AssistantDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect()
}

fn applied(seqs: &[u64]) -> Vec<(u64, Admission)> {
    seqs.iter().map(|s| (*s, Admission::Apply)).collect()
}

/// The meta a connection resuming after `cursor` must read.
fn meta(cursor: Option<String>) -> Option<(i64, Option<String>)> {
    Some((1, cursor))
}

fn severed(cursor: Option<String>) -> Option<StreamEnd> {
    Some(StreamEnd::Severed {
        resume_from: cursor,
    })
}

// ------------------------------------------------------------------- scenarios

#[tokio::test]
async fn severed_mid_frame_resumes_after_the_last_whole_frame() {
    let f = Fixture::start().await;
    f.deltas(&["Hel", "lo, ", "wö", "rld", "!"]);
    f.done();
    // Frames 1-3 (with a heartbeat after the meta, in writes cut at chosen
    // offsets), then the connection dies inside frame 4's JSON.
    f.plan(
        StreamPlan::deliver()
            .retry_ms(1)
            .heartbeats(1)
            .split_at(&[45, 54, 200, 230])
            .frames(3, Cut::InsideFrame),
    );
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(seqs(&frames), [1, 2, 3, 4, 5, 6]);
    assert_eq!(text(&frames), "Hello, wörld!");

    let seen = f.seen();
    assert_eq!(
        seen,
        [
            Seen {
                sent: None,
                meta: meta(None),
                admissions: applied(&[1, 2, 3]),
                applied: vec![1, 2, 3],
                end: severed(f.c(3)),
                refused: None,
            },
            Seen {
                sent: f.c(3),
                meta: meta(f.c(3)),
                admissions: applied(&[4, 5, 6]),
                applied: vec![4, 5, 6],
                end: Some(StreamEnd::Completed),
                refused: None,
            },
        ]
    );
    let server = f.settled(2).await;
    assert_eq!(server[0].last_event_id, None);
    assert_eq!(server[0].seqs, [1, 2, 3]);
    assert_eq!(server[0].end, ConnectionEnd::Severed);
    assert_eq!(server[1].last_event_id, f.c(3));
    assert_eq!(server[1].seqs, [4, 5, 6]);
    assert_eq!(stream.end(), Some(StreamEnd::Completed));
    assert_eq!(stream.reconnects(), 1);
    assert_eq!(
        stream.position(),
        Some(StreamPosition::new(f.cursor(6), 6).expect("valid"))
    );
}

#[tokio::test]
async fn severed_inside_a_character_does_not_tear_it() {
    let f = Fixture::start().await;
    f.deltas(&["a", "wö"]);
    f.done();
    // The connection closes cleanly between the two bytes of `ö`.
    f.plan(StreamPlan::deliver().retry_ms(1).frames(1, Cut::InsideChar));
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text(&frames), "awö");

    let seen = f.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].applied.as_slice(), &seen[0].end),
        (&[1][..], &severed(f.c(1)))
    );
    assert_eq!(seen[1].sent, f.c(1));
    assert_eq!(seen[1].admissions, applied(&[2, 3]));
    let server = f.settled(2).await;
    assert_eq!(server[0].seqs, [1]);
    assert_eq!(server[0].end, ConnectionEnd::Severed);
    assert_eq!(server[1].last_event_id, f.c(1));
}

#[tokio::test]
async fn a_redelivered_frame_is_dropped() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b", "c"]);
    f.done();
    f.plan(StreamPlan::deliver().retry_ms(1).frames(2, Cut::Close));
    // At-least-once: the second connection starts one frame before the cursor.
    f.plan(StreamPlan::deliver().redeliver(1));
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        seqs(&frames),
        [1, 2, 3, 4],
        "frame 2 reached the caller once"
    );
    assert_eq!(text(&frames), "abc");

    let seen = f.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].admissions, applied(&[1, 2]));
    assert_eq!(seen[0].end, severed(f.c(2)));
    assert_eq!(seen[1].sent, f.c(2));
    assert_eq!(
        seen[1].admissions,
        [
            (2, Admission::Duplicate),
            (3, Admission::Apply),
            (4, Admission::Apply)
        ]
    );
    assert_eq!(seen[1].applied, [3, 4]);
    let server = f.settled(2).await;
    assert_eq!(server[1].seqs, [2, 3, 4], "the server did redeliver");
}

#[tokio::test]
async fn a_gap_is_re_read_from_the_last_applied_cursor() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b", "c", "d"]);
    f.done();
    // Frame 3 is lost on the first connection, which then stays open.
    f.plan(StreamPlan::deliver().skip(3).frames(3, Cut::Hold));
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(seqs(&frames), [1, 2, 3, 4, 5]);
    assert_eq!(text(&frames), "abcd");

    let seen = f.seen();
    assert_eq!(
        seen[0],
        Seen {
            sent: None,
            meta: meta(None),
            admissions: vec![
                (1, Admission::Apply),
                (2, Admission::Apply),
                (4, Admission::Gap { missing: 1 })
            ],
            applied: vec![1, 2],
            end: None,
            refused: None,
        }
    );
    // Resumed after frame 2's cursor, not frame 4's: frame 3 is recovered.
    assert_eq!(seen[1].sent, f.c(2));
    assert_eq!(seen[1].admissions, applied(&[3, 4, 5]));
    let server = f.settled(2).await;
    assert_eq!(server[0].seqs, [1, 2, 4]);
    assert_eq!(server[0].end, ConnectionEnd::Closed, "the reader hung up");
    assert_eq!(server[1].last_event_id, f.c(2));
    assert_eq!(server[1].seqs, [3, 4, 5]);
}

#[tokio::test]
async fn offline_resumes_from_the_cursor_it_names() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b"]);
    let offline = f.server.v1_streams().go_offline(&f.env(), STREAM);
    assert_eq!(offline, 3);
    f.deltas(&["c"]);
    f.done();
    f.plan(StreamPlan::deliver().retry_ms(1));
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(seqs(&frames), [1, 2, 3, 4, 5]);
    assert_eq!(frames[2].t, FrameType::StreamOffline);

    let seen = f.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].applied, [1, 2, 3]);
    assert_eq!(
        seen[0].end,
        Some(StreamEnd::Interrupted {
            resume_from: f.cursor(3)
        })
    );
    assert_eq!(seen[1].sent, f.c(3));
    assert_eq!(seen[1].meta, meta(f.c(3)));
    assert_eq!(seen[1].admissions, applied(&[4, 5]));
    let server = f.settled(2).await;
    assert_eq!(server[0].seqs, [1, 2, 3]);
    assert_eq!(server[1].last_event_id, f.c(3));
    assert_eq!(stream.end(), Some(StreamEnd::Completed));
}

#[tokio::test]
async fn a_stream_error_is_final_and_keeps_the_last_cursor() {
    let f = Fixture::start().await;
    f.deltas(&["a"]);
    // The transport mints `stream.error` without `id:`, numbered lastSeq + 1.
    f.plan(StreamPlan::deliver().error("STREAM_CREDENTIAL_EXPIRED"));
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(
        error.is_none(),
        "a failed stream is an end, not an Err: {error:?}"
    );
    assert_eq!(seqs(&frames), [1, 2]);
    assert_eq!(frames[1].t, FrameType::StreamError);
    // No `id:` line: the event carries the persisted id buffer (frame 1's cursor).
    assert_eq!(frames[1].id, f.c(1));

    let seen = f.seen();
    assert_eq!(seen.len(), 1, "nothing reconnects");
    assert_eq!(seen[0].admissions, applied(&[1, 2]));
    let failed = Some(StreamEnd::Failed {
        code: Some("STREAM_CREDENTIAL_EXPIRED".into()),
    });
    assert_eq!(seen[0].end, failed);
    assert_eq!(stream.end(), failed);
    assert_eq!(stream.last_event_id(), f.c(1));
    assert_eq!(stream.last_seq(), 2);
    assert_eq!(stream.reconnects(), 0);
    assert_eq!(f.settled(1).await[0].seqs, [1, 2]);
}

#[tokio::test]
async fn a_later_reader_resumes_from_a_saved_position() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b", "c", "d"]);
    f.done();

    // The first reader takes three frames, saves where it got to and goes away.
    let mut first = f.read().open().expect("valid");
    for expected in 1..=3 {
        let frame = first.next().await.expect("a frame").expect("no error");
        assert_eq!(frame.seq, expected);
    }
    let saved = first.position().expect("a position");
    drop(first);
    let (id, seq) = (saved.last_event_id().to_owned(), saved.last_seq());
    assert_eq!((id.as_str(), seq), (f.cursor(3).as_str(), 3));

    // One without the other is refused before anything is sent.
    assert!(StreamPosition::from_parts(Some(id.clone()), None).is_err());
    assert!(StreamPosition::from_parts(None, Some(seq)).is_err());

    f.events.lock().unwrap().clear();
    let position = StreamPosition::from_parts(Some(id), Some(seq))
        .expect("valid")
        .expect("some");
    let mut second = f.read().resume_from(position).open().expect("valid");
    let (frames, error) = drain(&mut second).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(seqs(&frames), [4, 5]);
    let seen = f.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sent, f.c(3), "the first request carries the cursor");
    assert_eq!(seen[0].meta, meta(f.c(3)));
    assert_eq!(seen[0].admissions, applied(&[4, 5]));
    let server = f.settled(2).await;
    assert_eq!(server[1].last_event_id, f.c(3));
    assert_eq!(server[1].seqs, [4, 5]);
    assert_eq!(second.reconnects(), 0);
}

#[tokio::test]
async fn a_retryable_refusal_keeps_the_cursor() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b", "c"]);
    f.done();
    f.plan(StreamPlan::deliver().retry_ms(1).frames(2, Cut::Close));
    f.plan(StreamPlan::refuse(503, "STREAM_JOURNAL_UNAVAILABLE"));
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(seqs(&frames), [1, 2, 3, 4]);

    let seen = f.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].end, severed(f.c(2)));
    assert_eq!(seen[1].sent, f.c(2));
    assert_eq!(
        seen[1].refused,
        Some((Some(503), Some("STREAM_JOURNAL_UNAVAILABLE".into()), true))
    );
    assert_eq!((seen[1].meta.clone(), seen[1].admissions.len()), (None, 0));
    assert_eq!(seen[2].sent, f.c(2), "the same cursor again");
    assert_eq!(seen[2].admissions, applied(&[3, 4]));
    let server = f.settled(3).await;
    let sent: Vec<_> = server.iter().map(|c| c.last_event_id.clone()).collect();
    assert_eq!(sent, [None, f.c(2), f.c(2)]);
    assert_eq!(
        server[1].end,
        ConnectionEnd::Refused(503, "STREAM_JOURNAL_UNAVAILABLE".into())
    );
    assert_eq!(stream.reconnects(), 2);
}

#[tokio::test]
async fn an_expired_cursor_is_a_final_refusal_with_its_envelope() {
    let f = Fixture::start().await;
    f.deltas(&["a"]);
    f.plan(StreamPlan::refuse(409, "STREAM_CURSOR_EXPIRED"));
    let position = StreamPosition::new(f.cursor(1), 1).expect("valid");
    let mut stream = f.read().resume_from(position).open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(frames.is_empty());
    let error = error.expect("refused");
    assert!(matches!(error, Error::Refused(_)), "{error:?}");
    assert_eq!(error.status(), Some(409));
    assert_eq!(error.code(), Some("STREAM_CURSOR_EXPIRED"));
    let refusal = error.refusal().expect("the V1 envelope");
    assert_eq!(refusal.code, "STREAM_CURSOR_EXPIRED");
    assert!(refusal.error_id.starts_with("err_"), "{refusal:?}");
    assert!(refusal.trace_ref.starts_with("trace_"), "{refusal:?}");
    assert_eq!(refusal.version, "1");
    assert_eq!(f.settled(1).await.len(), 1, "exactly one request");
    assert_eq!(
        f.seen()[0].refused,
        Some((Some(409), Some("STREAM_CURSOR_EXPIRED".into()), false))
    );

    // A cursor the server never issued: 400 with the field named.
    let f = Fixture::start().await;
    f.deltas(&["a"]);
    let forged = StreamPosition::new("1.5.other1", 1).expect("valid");
    let mut stream = f.read().resume_from(forged).open().expect("valid");
    let error = drain(&mut stream).await.1.expect("refused");
    assert_eq!(error.code(), Some("STREAM_CURSOR_UNREADABLE"));
    let fields = &error.refusal().expect("envelope").fields;
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].field.as_str(), fields[0].code.as_str()),
        ("Last-Event-ID", "malformed")
    );
}

#[tokio::test]
async fn progress_restores_the_reconnect_budget() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b", "c"]);
    f.done();
    // A proxy that cuts every connection after one frame.
    f.plan(StreamPlan::deliver().retry_ms(1).frames(1, Cut::Close));
    f.plan(StreamPlan::deliver().frames(1, Cut::Close));
    f.plan(StreamPlan::deliver().frames(1, Cut::Close));
    let mut stream = f.read().max_reconnects(1).open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(seqs(&frames), [1, 2, 3, 4]);
    let seen = f.seen();
    let per_connection: Vec<_> = seen
        .iter()
        .map(|s| (s.sent.clone(), s.applied.clone()))
        .collect();
    assert_eq!(
        per_connection,
        [
            (None, vec![1]),
            (f.c(1), vec![2]),
            (f.c(2), vec![3]),
            (f.c(3), vec![4])
        ]
    );
    assert_eq!(stream.reconnects(), 3);
    assert_eq!(f.settled(4).await.len(), 4);
}

#[tokio::test]
async fn a_fruitless_run_exhausts_the_budget() {
    let f = Fixture::start().await;
    f.deltas(&["a", "b"]);
    f.plan(StreamPlan::deliver().retry_ms(1).frames(1, Cut::Close));
    // Meta and a heartbeat only: opening is not progress.
    f.plan(StreamPlan::deliver().heartbeats(1).frames(0, Cut::Close));
    f.plan(StreamPlan::deliver().frames(1, Cut::Close));
    f.plan(StreamPlan::deliver().frames(0, Cut::Close));
    f.plan(StreamPlan::deliver().heartbeats(1).frames(0, Cut::Close));
    let mut stream = f.read().max_reconnects(2).open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert_eq!(seqs(&frames), [1, 2]);
    let error = error.expect("exhausted");
    assert_eq!(
        error.stream_violation(),
        Some(StreamViolation::ReconnectsExhausted)
    );
    assert_eq!(error.code(), Some("STREAM_RECONNECTS_EXHAUSTED"));
    let seen = f.seen();
    let sent: Vec<_> = seen.iter().map(|s| s.sent.clone()).collect();
    assert_eq!(sent, [None, f.c(1), f.c(1), f.c(2), f.c(2)]);
    let applied: Vec<_> = seen.iter().map(|s| s.applied.clone()).collect();
    assert_eq!(applied, [vec![1], vec![], vec![2], vec![], vec![]]);
    assert_eq!(
        stream.reconnects(),
        4,
        "the budget counts the run, not the lifetime"
    );
    assert_eq!(stream.end(), severed(f.c(2)));
    let server = f.settled(5).await;
    let server_sent: Vec<_> = server.iter().map(|c| c.last_event_id.clone()).collect();
    assert_eq!(server_sent, sent);
}

#[tokio::test]
async fn protocol_violations_are_typed_and_final() {
    let cases = [
        (
            StreamPlan::deliver().no_meta(),
            StreamViolation::MetaMissing,
        ),
        (
            StreamPlan::deliver().meta_sv(2),
            StreamViolation::VersionUnsupported,
        ),
        (
            StreamPlan::deliver().meta_replay_from(Some("1.3.x/y9")),
            StreamViolation::ReplayMismatch,
        ),
    ];
    for (plan, violation) in cases {
        let f = Fixture::start().await;
        f.deltas(&["a"]);
        f.done();
        f.plan(plan);
        let mut stream = f.read().open().expect("valid");
        let (frames, error) = drain(&mut stream).await;
        assert!(frames.is_empty(), "{violation}: nothing applied");
        let error = error.expect("a violation");
        assert_eq!(error.stream_violation(), Some(violation), "{error}");
        assert_eq!(f.seen().len(), 1, "{violation}: no reconnect");
    }
}

#[tokio::test]
async fn unknown_frame_types_pass_through_raw() {
    let f = Fixture::start().await;
    f.append(
        "x.future_event",
        json!({"answer": 42, "nested": {"k": [1, 2]}}),
    );
    f.done();
    let mut stream = f.read().open().expect("valid");
    let (frames, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames[0].t, FrameType::Unknown("x.future_event".into()));
    assert_eq!(
        Value::Object(frames[0].fields.clone()),
        json!({"answer": 42, "nested": {"k": [1, 2]}})
    );
    assert_eq!(frames[0].ts, 1_757_900_000_001);
    assert_eq!(frames[1].t, FrameType::TurnDone);
}

#[tokio::test]
async fn the_request_is_an_operator_get_for_an_event_stream() {
    let f = Fixture::start().await;
    f.done();
    let mut stream = f.read().open().expect("valid");
    assert!(drain(&mut stream).await.1.is_none());
    let server = f.settled(1).await;
    let expected_auth = format!("Bearer {}", f.operator_token);
    assert_eq!(
        server[0].authorization.as_deref(),
        Some(expected_auth.as_str())
    );
    assert_eq!(server[0].accept.as_deref(), Some("text/event-stream"));
    assert!(!server[0].sent_session_token);
    let requests = f.server.recorder().requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.path,
        format!("/api/v1/environments/{}/streams/{STREAM}", f.env())
    );
    assert_eq!(r.query, None);
    assert_eq!(r.header("idempotency-key"), None);
    assert_eq!(r.header("last-event-id"), None);
    assert!(r.body.is_empty());

    // Ids are path segments, percent-encoded; an empty one is refused unsent.
    let err = f
        .client
        .environment_streams()
        .read("", STREAM)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let mut other = f
        .client
        .environment_streams()
        .read("env a/b", "s?1")
        .open()
        .expect("valid");
    let error = drain(&mut other).await.1.expect("unknown stream");
    assert_eq!(error.code(), Some("STREAM_NOT_FOUND"));
    let requests = f.server.recorder().requests();
    assert_eq!(requests.len(), 2, "the empty id sent nothing");
    assert_eq!(
        requests[1].path,
        "/api/v1/environments/env%20a%2Fb/streams/s%3F1"
    );
}

#[tokio::test]
async fn end_user_credentials_are_refused() {
    let f = Fixture::start().await;
    f.done();
    let end_user = V1Client::builder()
        .base_url(f.server.base_url())
        .operator_token(f.server.session_token())
        .build()
        .expect("client");
    let mut stream = end_user
        .environment_streams()
        .read(f.env(), STREAM)
        .open()
        .expect("valid");
    let error = drain(&mut stream).await.1.expect("refused");
    assert!(matches!(error, Error::Auth(_)), "{error:?}");
    assert_eq!(error.code(), Some("FORBIDDEN_SCOPE"));
    assert_eq!(f.settled(1).await.len(), 1, "not retried");
}

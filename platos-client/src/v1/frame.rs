//! What one V1 event carries: the `stream_meta` that opens a connection and
//! the flat frames after it (docs/v1-stream.md, "Meta" and "Frames"), and
//! the checks that turn a malformed one into a typed violation. The payload
//! types and `FrameType` are generated from `spec/v1-frames.schema.json`
//! (`payload.rs`); this file reads the envelope and hands the rest over.

use std::fmt;

use serde_json::{Map, Value};

use super::payload::{FramePayload, FrameType};
use crate::error::{Error, StreamViolation};

/// Stream versions this reader understands (`sv` band).
pub(crate) const SUPPORTED_VERSIONS: std::ops::RangeInclusive<i64> = 1..=1;
/// The largest integer a JSON number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// The keys the frame envelope reserves; everything else is payload.
const RESERVED: [&str; 4] = ["sv", "t", "seq", "ts"];

/// The `stream_meta` event that opens every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamMeta {
    /// `sv`: the stream version.
    pub sv: i64,
    /// `replayFrom`: the cursor the server resumes after (the request's
    /// `Last-Event-ID`), or `None` when reading from the start.
    pub replay_from: Option<String>,
}

/// One applied frame: `{sv, t, seq, ts, …payload}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Frame {
    /// `sv`: the stream version the frame was written in.
    pub sv: i64,
    /// `t`: what the frame is.
    pub t: FrameType,
    /// `seq`: position in the stream, from 1, without gaps.
    pub seq: u64,
    /// `ts`: when the frame was written, epoch milliseconds.
    pub ts: i64,
    /// The payload: every member but the reserved `sv`, `t`, `seq`, `ts`, as
    /// received. [`Frame::payload`] has the same members typed.
    pub fields: Map<String, Value>,
    /// The event's last-event-id: its `id:` cursor, or, for an event without
    /// an `id:` line (a transport-minted `stream.error`), the cursor before it
    /// (the id buffer persists across events). `None` when there is none.
    pub id: Option<String>,
    /// The payload typed by `t` (docs/v1-stream.md, "Payloads"). Boxed: the
    /// largest payload is several times the rest of the frame, which moves
    /// through the reader by value.
    payload: Box<FramePayload>,
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Frame {
    /// A payload member as a string, when it is one.
    #[deprecated(
        since = "0.1.0",
        note = "read the typed payload instead: `frame.payload()`, e.g. `FramePayload::AssistantDelta(d)` and `d.text`"
    )]
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The payload typed by the frame's `t`: one variant per type the stream
    /// contract names, with the members the schema names as fields and any
    /// other member in its `extra` map; [`FramePayload::Unknown`] for a type
    /// this SDK does not know.
    ///
    /// ```
    /// # use platos_client::v1::{Frame, FramePayload};
    /// fn print_answer(frame: &Frame) {
    ///     if let FramePayload::AssistantDelta(delta) = frame.payload() {
    ///         print!("{}", delta.text);
    ///     }
    /// }
    /// ```
    pub fn payload(&self) -> &FramePayload {
        &self.payload
    }

    /// The typed payload, by value.
    pub fn into_payload(self) -> FramePayload {
        *self.payload
    }
}

/// Types the members of a known frame type (the generated
/// `FramePayload::decode` calls this); the error names the member at fault.
pub(super) fn decode_payload<T>(fields: &Map<String, Value>) -> Result<T, String>
where
    T: serde::de::DeserializeOwned,
{
    // Plain serde first: tracking the path costs a key copy per member, and
    // only an error needs it.
    if let Ok(payload) = T::deserialize(fields) {
        return Ok(payload);
    }
    match serde_path_to_error::deserialize::<_, T>(fields) {
        Ok(payload) => Ok(payload),
        Err(e) => {
            let path = e.path().to_string();
            let at = if path == "." {
                "the payload".to_owned()
            } else {
                format!("`{path}`")
            };
            Err(format!("{at}: {}", e.into_inner()))
        }
    }
}

/// An integer-valued JSON number (`1` or `1.0`).
fn integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    })
}

fn violation(violation: StreamViolation, message: impl Into<String>) -> Error {
    Error::violation(violation, message)
}

/// Reads and checks `stream_meta` against the cursor this request sent.
pub(crate) fn read_meta(data: &str, sent: Option<&str>) -> Result<StreamMeta, Error> {
    let malformed = |why: &str| {
        violation(
            StreamViolation::MetaMalformed,
            format!("stream_meta {why}: {}", preview(data)),
        )
    };
    let value: Value = serde_json::from_str(data).map_err(|_| malformed("is not JSON"))?;
    let object = value
        .as_object()
        .ok_or_else(|| malformed("is not an object"))?;
    let sv = object
        .get("sv")
        .and_then(integer)
        .ok_or_else(|| malformed("has no integer `sv`"))?;
    let replay_from = match object.get("replayFrom") {
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        _ => return Err(malformed("has no string-or-null `replayFrom`")),
    };
    if !SUPPORTED_VERSIONS.contains(&sv) {
        return Err(violation(
            StreamViolation::VersionUnsupported,
            format!(
                "stream version {sv} is not one this SDK reads ({}..={})",
                SUPPORTED_VERSIONS.start(),
                SUPPORTED_VERSIONS.end()
            ),
        ));
    }
    if replay_from.as_deref() != sent {
        return Err(violation(
            StreamViolation::ReplayMismatch,
            format!(
                "the server replays from {:?} but the request asked for {:?}",
                replay_from, sent
            ),
        ));
    }
    Ok(StreamMeta { sv, replay_from })
}

/// Reads and checks one frame; `id` is the event's cursor (empty: none).
pub(crate) fn read_frame(data: &str, id: &str) -> Result<Frame, Error> {
    let malformed = |why: &str| {
        violation(
            StreamViolation::FrameMalformed,
            format!("frame {why}: {}", preview(data)),
        )
    };
    let value: Value = serde_json::from_str(data).map_err(|_| malformed("is not JSON"))?;
    let Value::Object(mut fields) = value else {
        return Err(malformed("is not an object"));
    };
    let sv = fields
        .get("sv")
        .and_then(integer)
        .ok_or_else(|| malformed("has no integer `sv`"))?;
    let t = fields
        .get("t")
        .and_then(Value::as_str)
        .map(FrameType::from_wire)
        .ok_or_else(|| malformed("has no string `t`"))?;
    let seq = fields
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|s| (1..=MAX_SAFE_INTEGER).contains(s))
        .ok_or_else(|| malformed("has no `seq` that is a safe integer >= 1"))?;
    let ts = fields
        .get("ts")
        .and_then(|v| integer(v).or_else(|| v.as_f64().map(|f| f as i64)))
        .ok_or_else(|| malformed("has no number `ts`"))?;
    for key in RESERVED {
        fields.remove(key);
    }
    // Typed from the members already parsed: no second parse of the text.
    let payload = FramePayload::decode(&t, &fields)
        .map_err(|why| malformed(&format!("`{t}` has a malformed payload ({why})")))?;
    Ok(Frame {
        sv,
        t,
        seq,
        ts,
        fields,
        id: (!id.is_empty()).then(|| id.to_owned()),
        payload: Box::new(payload),
    })
}

/// The start of a payload, for an error message (frames can be 64 KiB).
fn preview(data: &str) -> String {
    const MAX: usize = 120;
    match data.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &data[..at]),
        None => data.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::payload::FramePayload;

    fn code(e: Error) -> StreamViolation {
        e.stream_violation().expect("a violation")
    }

    #[test]
    fn meta_checks() {
        let meta = read_meta(r#"{"sv":1,"replayFrom":null}"#, None).expect("valid");
        assert_eq!(meta.replay_from, None);
        let meta = read_meta(r#"{"sv":1,"replayFrom":"c3"}"#, Some("c3")).expect("valid");
        assert_eq!(meta.replay_from.as_deref(), Some("c3"));

        use StreamViolation as V;
        for (data, sent, expected) in [
            ("nope", None, V::MetaMalformed),
            ("[1]", None, V::MetaMalformed),
            (r#"{"replayFrom":null}"#, None, V::MetaMalformed),
            (r#"{"sv":"1","replayFrom":null}"#, None, V::MetaMalformed),
            (r#"{"sv":1}"#, None, V::MetaMalformed),
            (r#"{"sv":1,"replayFrom":3}"#, None, V::MetaMalformed),
            (r#"{"sv":2,"replayFrom":null}"#, None, V::VersionUnsupported),
            (r#"{"sv":0,"replayFrom":null}"#, None, V::VersionUnsupported),
            (r#"{"sv":1,"replayFrom":"c1"}"#, None, V::ReplayMismatch),
            (
                r#"{"sv":1,"replayFrom":null}"#,
                Some("c1"),
                V::ReplayMismatch,
            ),
            (
                r#"{"sv":1,"replayFrom":"c2"}"#,
                Some("c1"),
                V::ReplayMismatch,
            ),
        ] {
            assert_eq!(code(read_meta(data, sent).unwrap_err()), expected, "{data}");
        }
    }

    #[test]
    fn frame_shape() {
        let frame = read_frame(
            r#"{"sv":1,"t":"assistant.delta","seq":3,"ts":1757900000003,"text":"wö"}"#,
            "c3",
        )
        .expect("valid");
        assert_eq!(frame.t, FrameType::AssistantDelta);
        assert_eq!((frame.sv, frame.seq, frame.ts), (1, 3, 1757900000003));
        match frame.payload() {
            FramePayload::AssistantDelta(d) => {
                assert_eq!(d.text, "wö");
                assert!(d.extra.is_empty(), "reserved keys are not payload");
            }
            other => panic!("not typed: {other:?}"),
        }
        assert_eq!(frame.fields.len(), 1, "reserved keys are not payload");
        assert_eq!(frame.id.as_deref(), Some("c3"));

        let frame =
            read_frame(r#"{"sv":1,"t":"x.future","seq":1,"ts":1.5,"n":[1]}"#, "").expect("valid");
        assert_eq!(frame.t, FrameType::Unknown("x.future".into()));
        assert_eq!(frame.t.as_str(), "x.future");
        assert_eq!(frame.id, None);
        let FramePayload::Unknown { t, fields } = frame.payload() else {
            panic!("an unknown type is delivered raw: {:?}", frame.payload());
        };
        assert_eq!((t.as_str(), fields), ("x.future", &frame.fields));
        assert_eq!(frame.payload().frame_type(), frame.t);
    }

    #[test]
    fn payload_members_are_typed_and_unknown_ones_kept() {
        let frame = read_frame(
            r#"{"sv":1,"t":"tool_call.result","seq":1,"ts":1,"status":"error","ms":12.5,
                "error":{"kind":"provider","code":"E1","agentToldUser":true,"later":1},"callId":"c"}"#,
            "",
        )
        .expect("valid");
        let FramePayload::ToolCallResult(r) = frame.payload() else {
            panic!("{:?}", frame.payload());
        };
        assert_eq!((r.status.as_deref(), r.ms), (Some("error"), Some(12.5)));
        let error = r.error.as_ref().expect("error");
        assert_eq!(
            (error.kind.as_deref(), error.agent_told_user),
            (Some("provider"), Some(true))
        );
        assert_eq!(error.extra.get("later"), Some(&Value::from(1)));
        assert_eq!(r.extra.get("callId"), Some(&Value::from("c")));
    }

    #[test]
    fn wrong_typed_payload_members_are_malformed_frames() {
        for (data, member) in [
            (
                r#"{"sv":1,"t":"assistant.delta","seq":1,"ts":1,"text":5}"#,
                "`text`",
            ),
            (r#"{"sv":1,"t":"assistant.delta","seq":1,"ts":1}"#, "text"),
            (
                r#"{"sv":1,"t":"stream.error","seq":1,"ts":1,"code":false}"#,
                "`code`",
            ),
            (
                r#"{"sv":1,"t":"turn.done","seq":1,"ts":1,"usage":{"output":"many"}}"#,
                "`usage.output`",
            ),
        ] {
            let e = read_frame(data, "").unwrap_err();
            assert_eq!(
                e.stream_violation(),
                Some(StreamViolation::FrameMalformed),
                "{data}"
            );
            assert!(e.to_string().contains(member), "{data}: {e}");
        }
    }

    #[test]
    fn malformed_frames() {
        for data in [
            "not json",
            "[]",
            r#"{"t":"a","seq":1,"ts":1}"#,
            r#"{"sv":1,"seq":1,"ts":1}"#,
            r#"{"sv":1,"t":5,"seq":1,"ts":1}"#,
            r#"{"sv":1,"t":"a","ts":1}"#,
            r#"{"sv":1,"t":"a","seq":0,"ts":1}"#,
            r#"{"sv":1,"t":"a","seq":-1,"ts":1}"#,
            r#"{"sv":1,"t":"a","seq":1.5,"ts":1}"#,
            r#"{"sv":1,"t":"a","seq":9007199254740992,"ts":1}"#,
            r#"{"sv":1,"t":"a","seq":"1","ts":1}"#,
            r#"{"sv":1,"t":"a","seq":1}"#,
            r#"{"sv":1,"t":"a","seq":1,"ts":"now"}"#,
        ] {
            assert_eq!(
                code(read_frame(data, "").unwrap_err()),
                StreamViolation::FrameMalformed,
                "{data}"
            );
        }
        let max = r#"{"sv":1,"t":"a","seq":9007199254740991,"ts":1}"#;
        assert!(read_frame(max, "").is_ok());
    }

    #[test]
    fn every_known_type_round_trips() {
        for t in [
            "meta",
            "reasoning.delta",
            "tool_call.start",
            "tool_call.result",
            "assistant.delta",
            "message_persisted",
            "turn.done",
            "stream.error",
            "stream.offline",
        ] {
            let parsed = FrameType::from_wire(t);
            assert!(!matches!(parsed, FrameType::Unknown(_)), "{t}");
            assert_eq!(parsed.as_str(), t);
        }
    }
}

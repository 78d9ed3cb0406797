//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not part
//! of the API). Each takes arbitrary input and must return without
//! panicking, whatever the bytes; the invariants each checks are the ones a
//! caller relies on. The inputs under `fuzz/regressions/<target>/` run here
//! on stable as ordinary tests.

use crate::error::ApiError;
use crate::realtime::{engineio, socketio};
use crate::sse;

/// An Engine.IO text frame: decodes or refuses with a typed error.
pub fn engineio_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = engineio::decode(text);
    }
}

/// A Socket.IO packet (an Engine.IO message payload), and the cheap peek the
/// connection uses to route it, which must agree with a full decode on the
/// event name.
pub fn socketio_packet(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = socketio::decode(text);
        let _ = socketio::peek_event(text);
    }
}

/// An agent event from JSON text: known kinds decode or name the field at
/// fault; unknown kinds come back raw. Whatever decodes re-encodes and
/// decodes to the same event.
pub fn event_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(event) = platos_events::Event::from_json(text)
    {
        let again = platos_events::Event::from_json(&event.to_json());
        assert_eq!(again.ok().as_ref(), Some(&event), "round trip of {text}");
    }
}

/// An error answer's body under every status class: parsed into the one
/// error without panicking, its kept body never longer than the cap.
pub fn error_body(data: &[u8]) {
    for status in [400, 401, 403, 404, 409, 422, 429, 500, 503] {
        let e = ApiError::parse(status, None, None, None, data);
        assert!(e.body.len() <= 64 * 1024 + 3, "kept body is capped");
    }
}

/// An event stream fed in the chunks the first byte picks: whatever the
/// split, the items are the same as fed whole, and no line or event grows
/// past the limits.
pub fn sse_stream(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let limits = sse::Limits::bytes(4096);
    let whole = feed(limits, &[body]);
    let step = usize::from(split).max(1);
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    let split_up = feed(limits, &chunks);
    assert_eq!(whole, split_up, "chunking changed what was parsed");
}

/// A V1 frame's data: read or refused with a typed violation; a frame that
/// reads has a payload of its own `t`, whose members are all among the
/// frame's members (typing invents none).
#[cfg(feature = "v1")]
pub fn v1_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(frame) = crate::v1::read_frame(text, "")
    {
        assert_eq!(frame.payload().frame_type(), frame.t, "{text}");
        if let serde_json::Value::Object(members) = frame.payload().to_value() {
            for key in members.keys() {
                assert!(frame.fields.contains_key(key), "{key} invented: {text}");
            }
        }
    }
}

fn feed(limits: sse::Limits, chunks: &[&[u8]]) -> Result<Vec<sse::Item>, ()> {
    let mut parser = sse::Parser::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out).map_err(|_| ())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every saved input of every target (crashes found by fuzzing are kept
    /// here, so a fix stays fixed on stable).
    #[test]
    fn saved_fuzz_inputs_stay_fixed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        type Target = fn(&[u8]);
        let targets: Vec<(&str, Target)> = vec![
            ("engineio_frame", super::engineio_frame),
            ("socketio_packet", super::socketio_packet),
            ("event_json", super::event_json),
            ("error_body", super::error_body),
            ("sse_stream", super::sse_stream),
            #[cfg(feature = "v1")]
            ("v1_frame", super::v1_frame),
        ];
        let mut ran = 0;
        for (name, target) in targets {
            let dir = root.join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                panic!("no regression inputs in {}", dir.display());
            };
            for entry in entries {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                ran += 1;
            }
        }
        assert!(ran >= 5, "ran {ran} saved inputs");
    }
}

//! The cross-language fixtures of `spec/conformance/events/` against the
//! Rust decoder.

use std::collections::BTreeSet;
use std::path::PathBuf;

use platos_events::{DecodeError, Event, KNOWN_KINDS};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/conformance/events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn fixture_array(name: &str) -> Vec<Value> {
    match fixture(name) {
        Value::Array(items) => items,
        other => panic!("{name} must be an array, got {other}"),
    }
}

/// Equality as the fixture README defines it: numbers by value, and an
/// object key holding `null` equal to the key being absent.
fn equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equivalent(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x
                .iter()
                .chain(y.iter())
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect();
            keys.into_iter().all(|k| {
                equivalent(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        _ => a == b,
    }
}

#[test]
fn every_sample_round_trips() {
    let samples = fixture_array("samples.json");
    let mut outputs = Vec::new();
    for sample in &samples {
        let event = Event::from_value(sample.clone())
            .unwrap_or_else(|e| panic!("sample {sample} failed to decode: {e}"));
        assert!(event.is_known(), "sample {sample} decoded as Unknown");
        assert_eq!(Some(event.kind()), sample["type"].as_str());
        let encoded = event.to_value();
        assert!(
            equivalent(sample, &encoded),
            "round trip changed the event:\n  in:  {sample}\n  out: {encoded}"
        );
        // Encoding is stable: decoding the output gives the same event.
        let again = Event::from_value(encoded.clone()).expect("re-decoding the output");
        assert_eq!(again, event);
        // The serde impls agree with from_value / to_value.
        let via_serde: Event = serde_json::from_value(sample.clone()).expect("serde decode");
        assert_eq!(via_serde, event);
        assert_eq!(serde_json::to_value(&event).expect("serde encode"), encoded);
        outputs.push(encoded);
    }
    // Sorted keys: the snapshot must not depend on serde_json's
    // `preserve_order` feature, which another crate could switch on.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("samples_round_trip", outputs);
    });
}

#[test]
fn samples_cover_every_known_kind() {
    let samples = fixture_array("samples.json");
    let seen: BTreeSet<&str> = samples.iter().filter_map(|s| s["type"].as_str()).collect();
    let missing: Vec<&&str> = KNOWN_KINDS.iter().filter(|k| !seen.contains(**k)).collect();
    assert!(missing.is_empty(), "no sample for {missing:?}");
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    let sample = serde_json::json!({
        "type": "token", "text": "kept", "seq": 17, "nested": {"a": [1, 2]}
    });
    let Event::Token(token) = Event::from_value(sample.clone()).expect("decodes") else {
        panic!("not a token");
    };
    assert_eq!(token.extra.get("seq"), Some(&serde_json::json!(17)));
    assert_eq!(Event::Token(token).to_value(), sample);
}

#[test]
fn malformed_samples_give_the_expected_error() {
    for case in fixture_array("malformed.json") {
        let name = case["name"].as_str().expect("case name");
        let result = match case.get("text") {
            Some(text) => Event::from_json(text.as_str().expect("text is a string")),
            None => Event::from_value(case["input"].clone()),
        };
        let err = match result {
            Ok(event) => panic!("{name}: decoded as {event:?}, expected an error"),
            Err(err) => err,
        };
        let expected = &case["error"];
        let category = match &err {
            DecodeError::Syntax { .. } => "syntax",
            DecodeError::NotAnObject { .. } => "not_an_object",
            DecodeError::MissingType => "missing_type",
            DecodeError::Malformed { .. } => "malformed",
            other => panic!("{name}: unexpected error variant {other:?}"),
        };
        assert_eq!(
            Some(category),
            expected["category"].as_str(),
            "{name}: {err}"
        );
        assert_eq!(err.kind(), expected["kind"].as_str(), "{name}: {err}");
        assert_eq!(err.path(), expected["path"].as_str(), "{name}: {err}");
        // The same input through serde fails too, with the same message.
        if let Some(input) = case.get("input") {
            let via_serde = serde_json::from_value::<Event>(input.clone())
                .expect_err("serde decode must fail as well");
            assert_eq!(via_serde.to_string(), err.to_string(), "{name}");
        }
    }
}

#[test]
fn malformed_error_names_the_event_and_the_field() {
    let err = Event::from_json(r#"{"type":"token","text":5}"#).expect_err("bad text");
    assert_eq!(
        err.to_string(),
        "malformed `token` event at `text`: invalid type: integer `5`, expected a string"
    );
}

#[test]
fn unknown_types_pass_through_unchanged() {
    for sample in fixture_array("unknown.json") {
        let event = Event::from_value(sample.clone())
            .unwrap_or_else(|e| panic!("unknown sample {sample} was rejected: {e}"));
        let Event::Unknown { kind, raw } = &event else {
            panic!("{sample} decoded as a known event {event:?}");
        };
        assert_eq!(Some(kind.as_str()), sample["type"].as_str());
        assert_eq!(raw, &sample);
        assert!(!event.is_known());
        // Exact, not merely equivalent: `12.0` stays `12.0`.
        assert_eq!(event.to_value(), sample);
        assert_eq!(event.to_json(), sample.to_string());
        assert_eq!(Value::from(event), sample);
    }
}

#[test]
fn lifecycle_events_serialise_like_the_python_sdk() {
    assert_eq!(Event::connected().to_json(), r#"{"type":"connected"}"#);
    assert_eq!(
        Event::disconnected(Some("transport close".into())).to_value(),
        serde_json::json!({"type": "disconnected", "reason": "transport close"})
    );
    assert_eq!(
        Event::disconnected(None).to_value(),
        serde_json::json!({"type": "disconnected"})
    );
    assert_eq!(
        Event::reconnecting(2).to_value(),
        serde_json::json!({"type": "reconnecting", "attempt": 2})
    );
    assert_eq!(
        Event::stream_gap(Some("ping timeout".into()), Some(1)).to_value(),
        serde_json::json!({"type": "stream_gap", "reason": "ping timeout", "attempt": 1})
    );
    assert_eq!(
        Event::recovered_message("m1", "Hi.").to_value(),
        serde_json::json!({"type": "recovered_message", "messageId": "m1", "text": "Hi."})
    );
    assert_eq!(
        Event::socket_error("Session expired.", Some("SESSION_EXPIRED".into())).to_value(),
        serde_json::json!({"type": "socket_error", "message": "Session expired.", "code": "SESSION_EXPIRED"})
    );
}

#[test]
fn envelope_accessors_read_every_variant() {
    let cases = [
        (
            r#"{"type":"token","text":"a","threadId":"t1","replyToMessageId":"m1"}"#,
            Some("t1"),
            Some("m1"),
        ),
        (
            r#"{"type":"message_persisted","messageId":"m","threadId":"t2"}"#,
            Some("t2"),
            None,
        ),
        // meta: the gateway's camelCase threadId wins over the snake_case one.
        (
            r#"{"type":"meta","thread_id":"snake","threadId":"camel"}"#,
            Some("camel"),
            None,
        ),
        (
            r#"{"type":"meta","thread_id":"snake"}"#,
            Some("snake"),
            None,
        ),
        (
            r#"{"type":"citation","threadId":"t3","replyToMessageId":"m3"}"#,
            Some("t3"),
            Some("m3"),
        ),
        (r#"{"type":"done"}"#, None, None),
    ];
    for (text, thread, reply) in cases {
        let event = Event::from_json(text).expect(text);
        assert_eq!(event.thread_id(), thread, "{text}");
        assert_eq!(event.reply_to_message_id(), reply, "{text}");
    }
}

#[test]
fn integral_money_reencodes_as_a_float() {
    // Documented caveat of f64 money: same number, different spelling.
    let event = Event::from_json(
        r#"{"type":"message_persisted","messageId":"m","threadId":"t","costCents":3}"#,
    )
    .expect("decodes");
    assert_eq!(event.to_value()["costCents"], serde_json::json!(3.0));
}

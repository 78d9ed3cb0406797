//! Odd inputs never panic, and errors stay small.

use std::path::PathBuf;

use platos_events::{DecodeError, Event};
use serde_json::{Value, json};

#[test]
fn odd_values_are_errors_or_unknown_never_panics() {
    let huge = "x".repeat(4 * 1024 * 1024);
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "not_an_object"),
        (json!([1, 2, 3]), "not_an_object"),
        (json!(0), "not_an_object"),
        (json!(-1.5e300), "not_an_object"),
        (json!(null), "not_an_object"),
        (json!(true), "not_an_object"),
        (json!("done"), "not_an_object"),
        (json!({}), "missing_type"),
        (json!({"type": 5}), "missing_type"),
        (json!({"type": ["token"]}), "missing_type"),
        (json!({"type": {"name": "token"}}), "missing_type"),
        (json!({"type": true}), "missing_type"),
        (json!({"type": "token"}), "malformed"),
        (json!({"type": "token", "text": huge.clone()}), "ok"),
        (
            json!({"type": "token", "text": "a", "threadId": huge.clone()}),
            "ok",
        ),
        (json!({"type": huge.clone()}), "unknown"),
        (json!({"type": "done", "usage": huge.clone()}), "malformed"),
        (
            json!({"type": "done", "usage": {"inputTokens": 1e300}}),
            "malformed",
        ),
        (
            json!({"type": "done", "usage": {"inputTokens": u64::MAX}}),
            "ok",
        ),
        (json!({"type": "done", "usage": {"costCents": -0.0}}), "ok"),
        (json!({"type": "safety_flags", "flags": {}}), "malformed"),
        (
            json!({"type": "safety_flags", "flags": [null]}),
            "malformed",
        ),
        (
            json!({"type": "tool_call", "name": "", "params": {}, "callId": ""}),
            "ok",
        ),
        (
            json!({"type": "message_boundary", "type2": "x", "": ""}),
            "ok",
        ),
        // An error event must survive odd auxiliary fields: losing the error
        // itself to a decode failure would hide why the turn failed.
        (
            json!({"type": "error", "message": "m", "flags": {"x": 1}, "validationErrors": "bad", "limit": "ten"}),
            "ok",
        ),
    ];
    for (input, expected) in cases {
        let shown: String = input.to_string().chars().take(80).collect();
        let outcome = match Event::from_value(input) {
            Ok(Event::Unknown { .. }) => "unknown",
            Ok(_) => "ok",
            Err(DecodeError::NotAnObject { .. }) => "not_an_object",
            Err(DecodeError::MissingType) => "missing_type",
            Err(err @ DecodeError::Malformed { .. }) => {
                // serde quotes offending values; a 4 MiB string must not end
                // up in the message.
                assert!(err.to_string().len() < 1024, "{shown}: error too long");
                "malformed"
            }
            Err(other) => panic!("{shown}: unexpected {other:?}"),
        };
        assert_eq!(outcome, expected, "{shown}");
    }
}

#[test]
fn odd_texts_are_errors_never_panics() {
    let deep_array = "[".repeat(100_000);
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let deep_in_event = format!(
        "{{\"type\":\"tool_result\",\"name\":\"n\",\"callId\":\"c\",\"result\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let texts: Vec<&str> = vec![
        "",
        " ",
        "{",
        "}",
        "nul",
        "{\"type\":\"token\",\"text\":\"\\ud800\"}",
        "{\"type\":\"token\",\"text\":\"a\"} trailing",
        "\u{feff}{\"type\":\"done\"}",
        &deep_array,
        &deep_object,
        &deep_in_event,
    ];
    for text in texts {
        let shown: String = text.chars().take(40).collect();
        match Event::from_json(text) {
            Err(DecodeError::Syntax { message }) => {
                assert!(message.len() < 1024, "{shown}: message too long")
            }
            other => panic!("{shown:?}: expected a syntax error, got {other:?}"),
        }
    }
}

/// Every field of every sample swapped for values of every JSON type: the
/// decoder either rejects the result with an error naming that event, or
/// accepts it and re-encodes it stably. Deterministic, no randomness.
#[test]
fn field_type_swaps_on_every_sample() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/conformance/events/samples.json");
    let text = std::fs::read_to_string(&path).expect("samples.json");
    let samples: Vec<Value> = serde_json::from_str(&text).expect("samples.json parses");
    let replacements = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(""),
        json!([]),
        json!({}),
        json!([{}]),
    ];
    let mut tried = 0;
    for sample in &samples {
        let Value::Object(fields) = sample else {
            panic!("sample {sample} is not an object");
        };
        let kind = fields["type"].as_str().expect("sample type");
        for key in fields.keys().filter(|k| *k != "type") {
            for replacement in &replacements {
                let mut mutated = fields.clone();
                mutated.insert(key.clone(), replacement.clone());
                tried += 1;
                match Event::from_value(Value::Object(mutated)) {
                    Ok(event) => {
                        assert_eq!(event.kind(), kind);
                        let again = Event::from_value(event.to_value()).expect("re-decodes");
                        assert_eq!(again, event);
                    }
                    Err(err) => {
                        assert_eq!(err.kind(), Some(kind), "{err}");
                        let path = err.path().expect("malformed errors carry a path");
                        assert!(
                            path == key
                                || path.starts_with(&format!("{key}."))
                                || path.starts_with(&format!("{key}["))
                                || path == ".",
                            "{kind}.{key} = {replacement}: error at unrelated path `{path}`"
                        );
                    }
                }
            }
        }
    }
    assert!(tried > 1000, "only {tried} mutations tried");
}

//! A value that satisfies a JSON Schema, for the scripted agent's `structured_output`.
//!
//! Covers what `schemars` emits for Rust types (draft 2020-12): `$ref` into `$defs` (or
//! `definitions`), `type` as a string or a list (`["string", "null"]` for `Option`),
//! `enum`, `const`, `oneOf`/`anyOf`/`allOf`, objects with every property filled in (so
//! optional fields are exercised as present), arrays of one item, `minimum`, and the
//! `date-time` format. Recursion stops at a fixed depth with `null`.

use serde_json::{Map, Value, json};

const MAX_DEPTH: usize = 16;

/// An instance of `schema`.
pub(crate) fn example(schema: &Value) -> Value {
    generate(schema, schema, 0)
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn generate(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Value::Object(s) = schema else {
        return Value::Null;
    };
    if let Some(target) = s
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve(root, r))
    {
        return generate(target, root, depth + 1);
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(first) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = s.get(key).and_then(Value::as_array) {
            // The first alternative that is not just `null`.
            let pick = options
                .iter()
                .find(|o| o.get("type") != Some(&json!("null")))
                .or(options.first());
            if let Some(pick) = pick {
                return generate(pick, root, depth + 1);
            }
        }
    }
    let kind = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    out.insert(name.clone(), generate(prop, root, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => match s.get("items") {
            Some(items) => json!([generate(items, root, depth + 1)]),
            None => json!([]),
        },
        "string" => match s.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            _ => json!("example"),
        },
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0).max(1)),
        "number" => json!(
            s.get("minimum")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
                .max(1.5)
        ),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_options_enums_and_nesting() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "score": {"type": ["integer", "null"], "minimum": 3},
                "mood": {"$ref": "#/$defs/Mood"},
                "inner": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "$defs": {
                "Mood": {"oneOf": [{"const": "happy"}, {"const": "sad"}]},
                "Inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
            }
        });
        assert_eq!(
            example(&schema),
            json!({"name": "example", "score": 3, "mood": "happy", "inner": {"ok": true},
                   "tags": ["example"]})
        );
    }

    #[test]
    fn recursion_is_bounded() {
        let schema = json!({"$ref": "#"});
        assert_eq!(example(&schema), Value::Null);
    }
}

//! Where in a JSON text a decode failed, as the path of the field that did
//! not fit (`agents[1].id`, formatted as `serde_path_to_error` does).
//!
//! An answer is decoded by one plain serde_json pass; only a failure pays
//! for the path, by re-reading the text up to the error's position.
//! Tracking the path while decoding instead would compile every answer
//! type's decoder a second time (a large share of the crate's build).

use crate::error::{Error, Result};

/// Decodes JSON; a body that does not fit is a decode error naming the
/// field's path and keeping the status and (a bounded copy of) the body.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    status: Option<u16>,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| failure(status, bytes, &e))
}

/// The error for a text serde_json refused (not generic: one copy).
fn failure(status: Option<u16>, bytes: &[u8], e: &serde_json::Error) -> Error {
    let message = e.to_string();
    // A missing field is reported at the end of the object that lacks it:
    // the path is that object's, not its last member's.
    let container = message.starts_with("missing field");
    let path = at(bytes, offset(bytes, e.line(), e.column()), container);
    Error::decode(status, path, message, bytes)
}

/// The byte offset serde_json's (1-based line, column) points at.
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].iter().position(|&b| b == b'\n') {
            Some(n) => start += n + 1,
            None => return text.len(),
        }
    }
    (start + column).min(text.len())
}

/// One open container while scanning.
enum Open {
    /// An object and the key of the member being read (`None` between
    /// members).
    Object(Option<String>),
    /// An array and the index of the element being read.
    Array(usize),
}

/// The path of the value being read at `offset`; with `container`, the
/// path of the innermost object instead of its current member.
fn at(text: &[u8], offset: usize, container: bool) -> String {
    let mut end = offset.min(text.len());
    // serde_json reports a missing field just past the `}` it read.
    if container && end > 0 && text[end - 1] == b'}' {
        end -= 1;
    }
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    while i < end {
        match text[i] {
            b'{' => open.push(Open::Object(None)),
            b'[' => open.push(Open::Array(0)),
            b'}' | b']' => {
                open.pop();
            }
            b',' => match open.last_mut() {
                Some(Open::Array(index)) => *index += 1,
                Some(Open::Object(key)) => *key = None,
                None => {}
            },
            b'"' => {
                let close = string_end(text, i);
                if let Some(Open::Object(key @ None)) = open.last_mut() {
                    let raw = &text[i..close.min(text.len())];
                    *key = Some(
                        serde_json::from_slice::<String>(raw)
                            .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned()),
                    );
                }
                i = close;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if let (true, Some(Open::Object(key))) = (container, open.last_mut()) {
        *key = None;
    }
    let mut path = String::new();
    for part in &open {
        match part {
            Open::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Open::Object(None) => {}
            Open::Array(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    path
}

/// The index just past the string opening at `start` (or the text's end).
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        id: String,
        #[serde(default)]
        n: Option<u32>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        agents: Vec<Inner>,
        #[serde(default)]
        job: Option<Inner>,
        #[serde(rename = "maxSteps", default)]
        max_steps: Option<i64>,
        #[serde(default)]
        map: std::collections::BTreeMap<String, Inner>,
    }

    /// The path serde_path_to_error names for the same text.
    fn tracked(text: &str) -> String {
        let de = &mut serde_json::Deserializer::from_str(text);
        let e = serde_path_to_error::deserialize::<_, Outer>(de).unwrap_err();
        e.path().to_string()
    }

    fn located(text: &str) -> String {
        let e = decode::<Outer>(Some(200), text.as_bytes()).unwrap_err();
        e.decode_path().unwrap().to_owned()
    }

    #[test]
    fn names_the_same_path_as_tracking_it_would() {
        for text in [
            r#"{"maxSteps":"ten"}"#,
            r#"{"agents":[{"id":"a"},{"id":5}]}"#,
            r#"{"job":{"id":"j","n":"yes"}}"#,
            r#"{"job":{"n":1}}"#,
            r#"{"agents":[{"id":"a"},{"n":1}]}"#,
            r#"{"agents":[{"id":"a","tags":["x",7]}]}"#,
            r#"{"agents":5}"#,
            r#"{"agents":[{"id":"a"}, 7]}"#,
            r#"{"map":{"k\"ey":{"id":1}}}"#,
            r#"{"map":{"a":{"id":"x"},"b":{"n":2}}}"#,
            "{\n  \"agents\": [\n    {\"id\": \"a\"},\n    {\"id\": false}\n  ]\n}",
            r#"{"agents":[{"id":"a,b]}{"},{"id":[]}]}"#,
            r#"{"job":{}}"#,
            r#"{"agents":[{}]}"#,
            r#"{"job":{"n":1 } }"#,
            r#"{"agents":[{"id":"a"},{"id":"b","n":-1}]}"#,
            r#"[1]"#,
            r#"7"#,
        ] {
            assert_eq!(located(text), tracked(text), "{text}");
        }
    }

    #[test]
    fn a_truncated_or_broken_text_still_names_a_path() {
        for text in [
            r#"{"agents":[{"id":"ag_1","name":"Sup"#,
            "{",
            "",
            "not json",
            r#"{"job":{"id":"\"#,
        ] {
            let e = decode::<Outer>(None, text.as_bytes()).unwrap_err();
            assert!(e.decode_path().is_some_and(|p| !p.is_empty()), "{text}");
        }
    }
}

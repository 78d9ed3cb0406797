//! The fast path of [`Event::from_json`]: deserialize the event struct
//! straight from the text, with no intermediate `serde_json::Value` and no
//! field-path tracking.
//!
//! The slow path (parse into a `Value`, strip `type`, decode through
//! `serde_path_to_error`) is what defines the result. This path only ever
//! answers when it reaches the same event the slow path would; anything
//! else (an error of any kind, an unknown `type`, a repeated `type` key) is
//! reported as "no answer" and the caller re-runs the text through the slow
//! path, so error values, paths and `Event::Unknown` come from one place.
//! Errors are rare on a live stream, so the double parse they cost is not a
//! concern; a token event is decoded here in one pass.
//!
//! Where the slow path strips `type` from the map before decoding the body,
//! [`SkipType`] hides the `type` entry from the struct's `Deserialize`, so it
//! never reaches the flattened `extra` map (which would cost a buffered
//! key, a value and a map insert per event, only to be removed again).

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
    value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer},
};

use crate::Event;

/// Decodes `text` without building a `Value`. `None` means "ask the slow
/// path": the text is not a known event that decodes cleanly.
pub(crate) fn decode(text: &str) -> Option<Event> {
    let mut out = None;
    match decode_with(text, None, &mut out) {
        Attempt::Done => out,
        Attempt::Fallback => None,
        // `type` is not the first key: find it with a cheap borrowed pass
        // (serde skips every other value), then decode with it known.
        Attempt::NeedTag => {
            let tag: Tag<'_> = serde_json::from_str(text).ok()?;
            match decode_with(text, Some(&tag.kind), &mut out) {
                Attempt::Done => out,
                Attempt::Fallback | Attempt::NeedTag => None,
            }
        }
    }
}

/// The `type` of an event object, and nothing else. A repeated `type` key is
/// an error here (serde rejects duplicate fields), which sends the text to
/// the slow path, where the last one wins as it always has.
#[derive(serde::Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

enum Attempt {
    /// The event is in `out`.
    Done,
    /// `type` is not the first key and no tag was given.
    NeedTag,
    Fallback,
}

/// One pass over `text` as an object, decoding into `out`. With `kind`
/// given, the body is decoded as that kind and the `type` entry is skipped
/// wherever it is; without, `type` must be the first key.
fn decode_with(text: &str, kind: Option<&str>, out: &mut Option<Event>) -> Attempt {
    let mut need_tag = false;
    let mut de = serde_json::Deserializer::from_str(text);
    let visitor = EventVisitor {
        kind,
        need_tag: &mut need_tag,
        out: &mut *out,
    };
    // Trailing characters are an error on the slow path too.
    match de.deserialize_map(visitor).and_then(|()| de.end()) {
        Ok(()) if out.is_some() => Attempt::Done,
        Ok(()) => Attempt::Fallback,
        Err(_) if need_tag => Attempt::NeedTag,
        Err(_) => Attempt::Fallback,
    }
}

struct EventVisitor<'k, 'f> {
    kind: Option<&'k str>,
    /// Set when the visitor gave up because `type` was not the first key;
    /// the error it returns says nothing more.
    need_tag: &'f mut bool,
    out: &'f mut Option<Event>,
}

impl<'de> Visitor<'de> for EventVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (kind, type_seen) = match self.kind {
            Some(kind) => (Cow::Borrowed(kind), false),
            None => {
                match map.next_key_seed(KeySeed)? {
                    Some(key) if key == "type" => {}
                    _ => {
                        *self.need_tag = true;
                        return Err(de::Error::custom("`type` is not the first key"));
                    }
                }
                (map.next_value_seed(KeySeed)?, true)
            }
        };
        let body = SkipType {
            inner: map,
            type_seen,
        };
        if Event::deserialize_known(&kind, MapAccessDeserializer::new(body), self.out)? {
            Ok(())
        } else {
            // Unknown kinds keep their raw JSON: the slow path's job.
            Err(de::Error::custom("unknown event type"))
        }
    }
}

/// The event object's entries minus `type`: the body the slow path decodes
/// after `map.remove("type")`. A second `type` entry is an error, because
/// the slow path would have taken the last one as the tag.
struct SkipType<A> {
    inner: A,
    type_seen: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipType<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key_seed(KeySeed)? else {
                return Ok(None);
            };
            if key == "type" {
                if self.type_seen {
                    return Err(de::Error::custom("repeated `type`"));
                }
                self.type_seen = true;
                self.inner.next_value::<IgnoredAny>()?;
                continue;
            }
            return match key {
                Cow::Borrowed(key) => seed
                    .deserialize(BorrowedStrDeserializer::<A::Error>::new(key))
                    .map(Some),
                Cow::Owned(key) => seed
                    .deserialize(StringDeserializer::<A::Error>::new(key))
                    .map(Some),
            };
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A string, borrowed from the text when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::decode;
    use crate::{DecodeError, Event};

    /// What `from_json` returned before either fast path existed: parse,
    /// then decode with path tracking only.
    fn slow(text: &str) -> Result<Event, DecodeError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::Syntax {
            message: e.to_string(),
        })?;
        crate::TRACKED_ONLY.with(|t| t.set(true));
        let event = Event::from_value(value);
        crate::TRACKED_ONLY.with(|t| t.set(false));
        event
    }

    fn conformance(name: &str) -> Vec<Value> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../spec/conformance/events")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("conformance file is readable");
        serde_json::from_str(&text).expect("conformance file is a JSON array")
    }

    /// Texts that stress the fast path: every sample and malformed input,
    /// each also with `type` moved last, a repeated `type`, an unknown
    /// field, escaped keys, whitespace and trailing garbage.
    fn corpus() -> Vec<String> {
        let mut objects: Vec<Value> = conformance("samples.json");
        objects.extend(conformance("unknown.json"));
        for case in conformance("malformed.json") {
            if let Some(input) = case.get("input") {
                objects.push(input.clone());
            }
        }
        let mut texts = Vec::new();
        for object in objects {
            texts.push(object.to_string());
            let Value::Object(map) = object else { continue };
            let Some(kind) = map.get("type").cloned() else {
                continue;
            };
            let mut rest = map.clone();
            rest.remove("type");
            let body = Value::Object(rest.clone()).to_string();
            let inner = body.trim_start_matches('{').trim_end_matches('}');
            let sep = if inner.is_empty() { "" } else { "," };
            texts.push(format!("{{{inner}{sep}\"type\":{kind}}}"));
            texts.push(format!(
                "{{\"type\":{kind}{sep}{inner}{sep}\"type\":{kind}}}"
            ));
            texts.push(format!(
                "{{\"type\":{kind}{sep}{inner},\"type\":\"zz_unknown\"}}"
            ));
            texts.push(format!(
                "{{\"type\":\"zz_unknown\"{sep}{inner},\"type\":{kind}}}"
            ));
            texts.push(format!(
                "{{\"type\":{kind}{sep}{inner},\"x-extra\":{{\"type\":1}}}}"
            ));
            texts.push(format!("{{\"\\u0074ype\":{kind}{sep}{inner}}}"));
            texts.push(format!(
                "{{\"t\\u0065xt\":\"esc\",\"type\":{kind}{sep}{inner}}}"
            ));
            texts.push(format!(" {{ \"type\" : {kind} {sep} {inner} }} \n"));
            texts.push(format!("{{\"type\":{kind}{sep}{inner}}} x"));
            texts.push(format!("{{\"type\":{kind}{sep}{inner}"));
            texts.push(format!("{{\"type\":{kind}{sep}{inner}}}{{}}"));
        }
        for odd in [
            "",
            "null",
            "[]",
            "{}",
            "{\"type\":null}",
            "{\"type\":\"token\"",
            "{\"type\":\"token\",}",
            "{\"type\":\"token\",\"text\":\"a\",\"text\":\"b\"}",
            "{\"text\":\"a\",\"type\":\"token\",\"text\":\"b\"}",
        ] {
            texts.push(odd.to_string());
        }
        texts.push(json!({"type": "token", "text": "x".repeat(100_000)}).to_string());
        texts
    }

    #[test]
    fn the_fast_path_answers_only_what_the_slow_path_would() {
        let mut answered = 0;
        for text in corpus() {
            let expected = slow(&text);
            if let Some(event) = decode(&text) {
                answered += 1;
                assert_eq!(Ok(&event), expected.as_ref(), "fast path differs on {text}");
            }
            // The public entry points give the slow path's answer either way.
            assert_eq!(
                Event::from_json(&text),
                expected,
                "from_json differs on {text}"
            );
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                assert_eq!(
                    Event::from_value(value),
                    expected,
                    "from_value differs on {text}"
                );
            }
        }
        assert!(
            answered > 100,
            "the fast path answered only {answered} texts"
        );
    }

    #[test]
    fn every_known_sample_takes_the_fast_path() {
        for sample in conformance("samples.json") {
            let text = sample.to_string();
            let expected = slow(&text).expect("samples decode");
            if expected.is_known() {
                assert_eq!(decode(&text), Some(expected), "{text}");
            }
        }
    }

    #[test]
    fn unknown_fields_and_a_late_type_stay_out_of_extra() {
        let text = r#"{"text":"a","zz":{"type":1},"type":"token"}"#;
        let Some(Event::Token(token)) = decode(text) else {
            panic!("token expected");
        };
        assert_eq!(token.extra.len(), 1);
        assert_eq!(token.extra.get("zz"), Some(&json!({"type": 1})));
    }
}

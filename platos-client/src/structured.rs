//! Typed structured output: a Rust type's JSON Schema sent as `outputSchema`,
//! and the `structured_output` event's `object` decoded back into that type
//! (docs/wire.md §5, §8).
//!
//! # The schema sent
//!
//! [`output_schema`] is `schemars` 1.x's schema for `T` (JSON Schema draft
//! 2020-12, with its `$schema` key), as `serde` would serialise `T`:
//! - a struct is an `object` with its fields as `properties`; fields that
//!   are not `Option` (and have no `#[serde(default)]`) are `required`;
//! - `Option<U>` is `U` or `null` (`"type": ["string", "null"]`, or an
//!   `anyOf` with `{"type": "null"}` for a referenced type) and is left out
//!   of `required`: the model may omit it or send `null`, both decode as
//!   `None`;
//! - a unit-only enum is a string `enum` (`#[serde(rename_all = …)]`
//!   applies); an enum with data is a `oneOf` of its variants in serde's
//!   tagging (externally tagged unless told otherwise);
//! - nested types are `$defs` entries reached by `$ref`.
//!
//! # Failures
//!
//! - The runtime checks the answer against the schema and retries the
//!   model; when it gives up it sends `error {code:
//!   "structured_output_invalid", validationErrors}`: that becomes
//!   [`Error::Validation`] with code `structured_output_invalid` and
//!   [`Error::validation_errors`] listing the server's findings.
//! - An object that does not decode into `T` locally is [`Error::Decode`]
//!   whose [`decode_path`](Error::decode_path) names the field
//!   (`object.address.city`).
//! - A turn that ends without either is [`Error::Decode`] at path
//!   `structured_output`.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, Error, Result};

/// The JSON Schema of `T`, as sent in `outputSchema` (see the [module
/// docs](self) for the dialect and how `Option`, enums and nested types
/// come out).
#[cfg(feature = "structured")]
#[cfg_attr(docsrs, doc(cfg(feature = "structured")))]
pub fn output_schema<T: schemars::JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// The `structured_output` event of a turn, undecoded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StructuredOutput {
    /// The object the runtime validated against the schema.
    pub object: Value,
    /// How many times the runtime re-asked the model (`retryCount`, or
    /// `attempts` from older servers).
    pub retry_count: Option<u32>,
}

impl StructuredOutput {
    /// Decodes the object into `T`; a mismatch names the field path.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Structured<T>> {
        let value = serde_path_to_error::deserialize(&self.object).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "object".to_owned()
            } else {
                format!("object.{path}")
            };
            let body = self.object.to_string();
            Error::decode(None, path, e.into_inner().to_string(), body.as_bytes())
        })?;
        Ok(Structured {
            value,
            retry_count: self.retry_count.unwrap_or(0),
        })
    }
}

/// A structured answer decoded into the caller's type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Structured<T> {
    /// The answer.
    pub value: T,
    /// How many times the runtime re-asked the model before the answer
    /// validated (0 when it did at once or the server did not say).
    pub retry_count: u32,
}

/// The error for a server-side `structured_output_invalid`.
pub(crate) fn invalid(message: &str, validation_errors: Option<&Value>) -> Error {
    let errors = match validation_errors {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.to_string()],
    };
    Error::Validation(Box::new(ApiError {
        // Not an HTTP answer: the verdict arrives as a stream event; 422 is
        // the status a REST validation failure has.
        status: 422,
        code: Some("structured_output_invalid".to_owned()),
        message: message.to_owned(),
        body: String::new(),
        request_id: None,
        validation_errors: errors,
        retry_after: None,
        refusal: None,
    }))
}

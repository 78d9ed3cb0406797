//! What the generated namespace layer (`namespaces.rs`) leans on: path-id
//! checks and list-envelope unwrapping, plus the setter macros of the
//! hand-written option types.

use crate::error::{Error, Result};

/// Checks an id that becomes a path segment. The generated client
/// percent-encodes segments, but `.`, `..` and the empty string survive
/// encoding and would change which route the URL names.
pub(crate) fn path_id(id: &str) -> Result<&str> {
    match id {
        "" | "." | ".." => Err(Error::config(format!(
            "`{id}` is not a usable id: it would change the request path"
        ))),
        _ => Ok(id),
    }
}

/// A list answer's items: the first non-empty of the envelope's keys (the
/// named array, then `items`, then a legacy key; `x-platos-list` in the spec).
pub(crate) fn first_non_empty<T, const N: usize>(candidates: [Vec<T>; N]) -> Vec<T> {
    candidates
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

/// Chainable setters for optional arguments stored as `Option` fields.
#[cfg(feature = "realtime")]
/// Each type must be a single token (use an alias for a path type).
macro_rules! setters {
    ($( $(#[$doc:meta])* $field:ident : $ty:tt ),* $(,)?) => {
        $( $crate::request::setter!($(#[$doc])* $field : $ty); )*
    };
}

/// One setter. Integers take the exact type so that a literal works:
/// `impl Into<u64>` would leave `.limit(5)` an ambiguous `i32`.
#[cfg(feature = "realtime")]
macro_rules! setter {
    ($(#[$doc:meta])* $field:ident : u64) => {
        $(#[$doc])*
        pub fn $field(mut self, value: u64) -> Self {
            self.$field = Some(value);
            self
        }
    };
    ($(#[$doc:meta])* $field:ident : $ty:tt) => {
        $(#[$doc])*
        pub fn $field(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
    };
}

#[cfg(feature = "realtime")]
pub(crate) use {setter, setters};

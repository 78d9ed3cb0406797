//! What the generated namespace layer (`namespaces.rs`) leans on: each
//! operation's static description, the URL builder (path segments and query
//! values encoded as the wire spells them), a call's own options, list
//! envelopes, plus the setter macros of the hand-written option types.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{Error, Result};

/// One operation of a spec, as the generated code states it: what the
/// transport needs to know besides the request itself. `R` is the spec's
/// idempotency rule (`retry::Idempotency`, `v1::KeyClass`).
#[derive(Debug)]
pub(crate) struct Operation<R: 'static> {
    /// The spec's `operationId` (logs and spans).
    pub(crate) id: &'static str,
    pub(crate) method: http::Method,
    /// The path template, ids left out (spans name it).
    pub(crate) path: &'static str,
    pub(crate) rule: R,
    /// The answer is JSON (sent as `accept: application/json`).
    pub(crate) json: bool,
    /// The answer is a stream that lasts as long as it runs: no per-try
    /// timeout covers its body (its reader bounds the wait instead).
    pub(crate) streams: bool,
    /// Whether the client's credentials go with the call.
    pub(crate) credentials: Credentials,
}

/// Whether a call carries the client's credentials (auth header, session
/// token, scope headers). The spec says so: an operation with `security: []`
/// (the guest-token mint) is anonymous and gets none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credentials {
    Sent,
    Omitted,
}

/// A generated call made ready to send: its operation, URL and body.
pub(crate) struct Prepared<R: 'static> {
    pub(crate) operation: &'static Operation<R>,
    pub(crate) url: String,
    pub(crate) body: Option<Vec<u8>>,
}

/// What one call sets for itself, beside its parameters; the send loop
/// reads it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallOptions {
    /// The whole call's deadline: every try, wait and the answer's body.
    pub(crate) deadline: Option<Duration>,
    /// The caller's idempotency key, instead of one minted for the call.
    pub(crate) idempotency_key: Option<String>,
}

/// Runs a call within its deadline, if it has one.
pub(crate) async fn deadline<T>(
    limit: Option<Duration>,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        None => call.await,
        Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| {
            Error::timeout(format!("the call did not finish within {limit:?}"), None)
        })?,
    }
}

/// A required argument taken by a setter: sending without it is refused.
pub(crate) fn needed<'a, T>(value: Option<&'a T>, name: &str) -> Result<&'a T> {
    value.ok_or_else(|| Error::config(format!("`{name}` is required: set it with `.{name}(..)`")))
}

/// A hand-written type sent whole as a request body (`x-platos-body:
/// {argument, type}` in the spec).
pub(crate) trait RestBody {
    fn rest_body(&self) -> serde_json::Value;
}

/// A 404 is the answer "absent".
pub(crate) fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a path segment encodes (what the generated clients always sent: a
/// `/` or `%` in an id stays inside its segment).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// What a query value encodes: all but `A-Z a-z 0-9 * - . _`, a space as
/// `%20` (docs/wire.md §3.3).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// A request URL, built in one string: base URL, path, query.
pub(crate) struct Url {
    text: String,
    has_query: bool,
}

impl Url {
    pub(crate) fn new(base_url: &str) -> Self {
        let mut text = String::with_capacity(base_url.len() + 96);
        text.push_str(base_url);
        Url {
            text,
            has_query: false,
        }
    }

    /// A literal part of the path template.
    pub(crate) fn literal(&mut self, part: &str) {
        self.text.push_str(part);
    }

    /// A path parameter, as one encoded segment.
    pub(crate) fn segment(&mut self, value: &str) -> Result<()> {
        self.text
            .extend(utf8_percent_encode(path_id(value)?, SEGMENT));
        Ok(())
    }

    /// One `key=value` of the query.
    pub(crate) fn query<V: QueryValue + ?Sized>(&mut self, key: &str, value: &V) {
        self.text.push(if self.has_query { '&' } else { '?' });
        self.has_query = true;
        self.text.extend(utf8_percent_encode(key, QUERY));
        self.text.push('=');
        value.write(&mut self.text);
    }

    pub(crate) fn into_string(self) -> String {
        self.text
    }
}

/// A count or size as the wire's int64; a larger one is refused unsent.
pub(crate) fn int64(name: &str, value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::config(format!("`{name}` is {value}, beyond the wire's int64")))
}

/// A value a query parameter takes.
pub(crate) trait QueryValue {
    fn write(&self, out: &mut String);
}

impl QueryValue for str {
    fn write(&self, out: &mut String) {
        out.extend(utf8_percent_encode(self, QUERY));
    }
}

impl QueryValue for String {
    fn write(&self, out: &mut String) {
        self.as_str().write(out);
    }
}

impl QueryValue for bool {
    fn write(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! display_query {
    ($($t:ty),*) => {$(
        impl QueryValue for $t {
            fn write(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
display_query!(u64, i64, f64);

/// A JSON body.
pub(crate) fn json<T: serde::Serialize + ?Sized>(body: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::config(format!("encoding the request body: {e}")))
}

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

//! Bounded reads of answers: no server can make the client buffer more than
//! it chose to. An error answer is read up to what an error keeps (64 KiB);
//! a success answer up to `max_response_bytes`, past which the call fails
//! with a decode error naming the limit, and the rest is never read (the
//! connection is dropped with the response).

use std::fmt;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// The default limit of a success answer's body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// A success answer grew past the limit (the source of the body error).
#[derive(Debug)]
pub(crate) struct BodyTooLarge {
    pub(crate) limit: u64,
    pub(crate) status: u16,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the answer is larger than the {}-byte limit (max_response_bytes); the rest was not read",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}

/// Reads at most `cap` bytes of a body; the rest is left unread.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> reqwest::Result<Bytes> {
    let mut out = BytesMut::new();
    while out.len() < cap {
        match response.chunk().await? {
            Some(chunk) => {
                let room = cap - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(out.freeze())
}

/// The same response, whose body fails with [`BodyTooLarge`] as soon as more
/// than `limit` bytes arrive (a `Content-Length` over it fails at once).
pub(crate) fn limit_body(response: reqwest::Response, limit: u64) -> reqwest::Response {
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let declared = response.content_length();
    let too_large = move || BodyTooLarge {
        limit,
        status: status.as_u16(),
    };
    let mut seen = 0u64;
    let mut refused = declared.is_some_and(|n| n > limit);
    let body = response.bytes_stream().map(move |chunk| {
        if refused {
            return Err(Box::new(too_large()) as crate::BoxError);
        }
        let chunk = chunk.map_err(|e| Box::new(e) as crate::BoxError)?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            refused = true;
            return Err(Box::new(too_large()) as crate::BoxError);
        }
        Ok(chunk)
    });
    let mut rebuilt = http::Response::new(reqwest::Body::wrap_stream(body));
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    reqwest::Response::from(rebuilt)
}

/// The [`BodyTooLarge`] behind an error, if that is what it was.
pub(crate) fn too_large<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTooLarge> {
    let mut cause: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<BodyTooLarge>() {
            return Some(t);
        }
        cause = c.source();
    }
    None
}

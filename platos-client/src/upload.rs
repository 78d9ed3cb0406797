//! `client.attachments().upload(agent, thread, source)`: an attachment in one call.
//!
//! Presign (the generated `attachments().presign`), then PUT the bytes to the
//! storage URL it returns with its headers and an exact `Content-Length`,
//! streamed in 64 KiB chunks (never the whole file in memory), reporting the
//! bytes sent. A network failure of the PUT is retried once while the URL is
//! still valid and the source can be read again (a path or bytes; a reader
//! cannot). Every way it can fail is an [`Error::Upload`] naming an
//! [`UploadFailure`]; a size over the server's `maxBytes` fails before a byte
//! is sent, and a source shorter or longer than declared fails the PUT
//! instead of storing a truncated file.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result, UploadError, UploadFailure};
use crate::namespaces::Attachments;

const CHUNK: usize = 64 * 1024;

/// What to upload.
pub struct UploadSource {
    kind: SourceKind,
}

enum SourceKind {
    Path(PathBuf),
    Bytes(Bytes),
    Reader {
        reader: Pin<Box<dyn AsyncRead + Send>>,
        len: u64,
    },
}

impl std::fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            SourceKind::Path(p) => f.debug_tuple("Path").field(p).finish(),
            SourceKind::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            SourceKind::Reader { len, .. } => f.debug_struct("Reader").field("len", len).finish(),
        }
    }
}

impl UploadSource {
    /// A file; its length is read from the file system, its name becomes
    /// the attachment's `filename` unless one is set.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        UploadSource {
            kind: SourceKind::Path(path.into()),
        }
    }

    /// Bytes already in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        UploadSource {
            kind: SourceKind::Bytes(bytes.into()),
        }
    }

    /// A reader that yields exactly `len` bytes. It is read once: a failed
    /// PUT of a reader is not retried.
    pub fn reader(reader: impl AsyncRead + Send + 'static, len: u64) -> Self {
        UploadSource {
            kind: SourceKind::Reader {
                reader: Box::pin(reader),
                len,
            },
        }
    }
}

/// Called with (bytes sent so far, total) as the upload streams.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// An upload being configured; `.send().await` (or `.await`) runs it.
#[must_use = "an upload does nothing until it is sent"]
pub struct Upload<'c> {
    attachments: Attachments<'c>,
    agent_id: String,
    thread_id: String,
    source: UploadSource,
    mime_type: Option<String>,
    filename: Option<String>,
    kind: Option<String>,
    progress: Option<Progress>,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("agent_id", &self.agent_id)
            .field("thread_id", &self.thread_id)
            .field("source", &self.source)
            .field("mime_type", &self.mime_type)
            .finish_non_exhaustive()
    }
}

/// A stored attachment: pass [`attachment_id`](Self::attachment_id) to
/// `SendOptions::attachment_ids`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Uploaded {
    /// The id a turn names the attachment by.
    pub attachment_id: String,
    /// The attachment as the server recorded it.
    pub attachment: Option<crate::types::Attachment>,
    /// Bytes sent.
    pub bytes: u64,
}

impl<'c> Attachments<'c> {
    /// Uploads `source` as an attachment of `thread_id` (a thread of
    /// `agent_id`) in one call: presign, then a streamed PUT.
    pub fn upload(
        &self,
        agent_id: impl Into<String>,
        thread_id: impl Into<String>,
        source: UploadSource,
    ) -> Upload<'c> {
        Upload {
            attachments: *self,
            agent_id: agent_id.into(),
            thread_id: thread_id.into(),
            source,
            mime_type: None,
            filename: None,
            kind: None,
            progress: None,
        }
    }
}

fn fail(failure: UploadFailure, message: impl Into<String>) -> Error {
    Error::Upload(Box::new(UploadError {
        failure,
        message: message.into(),
        status: None,
        code: None,
    }))
}

/// The upload failure a presign refusal stands for, by its code.
fn presign_failure(e: Error) -> Error {
    let failure = match e.code() {
        Some("ATTACHMENT_INVALID") => UploadFailure::Invalid,
        Some("ATTACHMENT_TOO_LARGE") => UploadFailure::TooLarge,
        Some("ATTACHMENT_QUOTA_EXCEEDED") => UploadFailure::QuotaExceeded,
        Some("ATTACHMENT_STORAGE_UNAVAILABLE") => UploadFailure::StorageUnavailable,
        Some("THREAD_NOT_FOUND") => UploadFailure::ThreadNotFound,
        _ => return e,
    };
    Error::Upload(Box::new(UploadError {
        failure,
        message: e.message().to_owned(),
        status: e.status(),
        code: e.code().map(str::to_owned),
    }))
}

impl Upload<'_> {
    /// The MIME type (default `application/octet-stream`).
    pub fn mime_type(mut self, value: impl Into<String>) -> Self {
        self.mime_type = Some(value.into());
        self
    }

    /// The file name the attachment keeps.
    pub fn filename(mut self, value: impl Into<String>) -> Self {
        self.filename = Some(value.into());
        self
    }

    /// `image`, `audio`, `video` or `document` (default: from the MIME type).
    pub fn kind(mut self, value: impl Into<String>) -> Self {
        self.kind = Some(value.into());
        self
    }

    /// Called with (bytes sent, total) after every chunk.
    pub fn on_progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Runs the upload.
    pub async fn send(self) -> Result<Uploaded> {
        let Upload {
            attachments,
            agent_id,
            thread_id,
            source,
            mime_type,
            filename,
            kind,
            progress,
        } = self;
        let (len, filename) = match &source.kind {
            SourceKind::Path(p) => {
                let meta = tokio::fs::metadata(p).await.map_err(|e| {
                    fail(
                        UploadFailure::Source,
                        format!("reading {}: {e}", p.display()),
                    )
                })?;
                let name =
                    filename.or_else(|| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                (meta.len(), name)
            }
            SourceKind::Bytes(b) => (b.len() as u64, filename),
            SourceKind::Reader { len, .. } => (*len, filename),
        };
        if len == 0 {
            return Err(fail(
                UploadFailure::Invalid,
                "an attachment cannot be empty",
            ));
        }
        let mime = mime_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        let bytes = i64::try_from(len).unwrap_or(i64::MAX);
        let mut presign = attachments
            .presign(bytes)
            .agent_id(agent_id)
            .thread_id(thread_id)
            .mime_type(mime.clone());
        if let Some(name) = filename {
            presign = presign.filename(name);
        }
        if let Some(kind) = kind {
            presign = presign.kind(kind);
        }
        let answer = presign.send().await.map_err(presign_failure)?;
        let attachment_id = answer.attachment_id.clone().ok_or_else(|| {
            fail(
                UploadFailure::MissingUploadUrl,
                "the presign answer has no attachmentId",
            )
        })?;
        let url = answer
            .upload_url
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                fail(
                    UploadFailure::MissingUploadUrl,
                    "the presign answer has no uploadUrl",
                )
            })?;
        if let Some(max) = answer.max_bytes.and_then(|m| u64::try_from(m).ok())
            && len > max
        {
            return Err(fail(
                UploadFailure::TooLarge,
                format!("{len} bytes is over the server's maxBytes ({max})"),
            ));
        }
        let expires = answer.expires_at.as_deref().and_then(epoch_seconds);
        let headers = answer.headers.clone();
        let http = attachments.client.http();
        let mut source = source;
        let mut tries = 0;
        loop {
            tries += 1;
            let body = open(&mut source, len, progress.clone()).await?;
            let mut request = http
                .put(&url)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header(reqwest::header::CONTENT_TYPE, &mime);
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            match request.body(body).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        break;
                    }
                    let text = crate::body::read_capped(response, 4096)
                        .await
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&text);
                    let failure = match status {
                        403 => UploadFailure::UrlExpired,
                        413 => UploadFailure::TooLarge,
                        _ => UploadFailure::StorageRefused,
                    };
                    return Err(Error::Upload(Box::new(UploadError {
                        failure,
                        message: format!(
                            "the storage refused the upload ({status}): {}",
                            text.chars().take(300).collect::<String>()
                        ),
                        status: Some(status),
                        code: None,
                    })));
                }
                Err(e) => {
                    if let Some(short) = source_failure(&e) {
                        return Err(short);
                    }
                    let valid = expires.is_none_or(|t| t > now_seconds());
                    if tries < 2 && valid && !matches!(source.kind, SourceKind::Reader { .. }) {
                        tracing::debug!(error = %e, "attachment PUT failed; retrying once");
                        continue;
                    }
                    return Err(fail(
                        UploadFailure::Network,
                        format!(
                            "the upload did not complete: {}",
                            crate::transport::transport_error(e)
                        ),
                    ));
                }
            }
        }
        Ok(Uploaded {
            attachment_id,
            attachment: answer.attachment.clone(),
            bytes: len,
        })
    }
}

impl<'c> std::future::IntoFuture for Upload<'c> {
    type Output = Result<Uploaded>;
    type IntoFuture = Pin<Box<dyn std::future::Future<Output = Result<Uploaded>> + Send + 'c>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Why a body stream stopped: the source did not match its declared length.
#[derive(Debug)]
struct LengthMismatch {
    declared: u64,
    actual: u64,
    more: bool,
}

impl std::fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.more {
            write!(
                f,
                "the source has more than the declared {} bytes",
                self.declared
            )
        } else {
            write!(
                f,
                "the source ended after {} of the declared {} bytes",
                self.actual, self.declared
            )
        }
    }
}

impl std::error::Error for LengthMismatch {}

/// The typed error for a body stream that failed because of its source.
fn source_failure(e: &reqwest::Error) -> Option<Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(m) = err.downcast_ref::<LengthMismatch>() {
            return Some(fail(UploadFailure::LengthMismatch, m.to_string()));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(m) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<LengthMismatch>())
        {
            return Some(fail(UploadFailure::LengthMismatch, m.to_string()));
        }
        cause = err.source();
    }
    None
}

type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// A streamed body of exactly `len` bytes from the source (reopened for a retry).
async fn open(
    source: &mut UploadSource,
    len: u64,
    progress: Option<Progress>,
) -> Result<reqwest::Body> {
    let reader: Reader = match &mut source.kind {
        SourceKind::Path(p) => Box::pin(tokio::fs::File::open(&*p).await.map_err(|e| {
            fail(
                UploadFailure::Source,
                format!("opening {}: {e}", p.display()),
            )
        })?),
        SourceKind::Bytes(b) => Box::pin(std::io::Cursor::new(b.clone())),
        SourceKind::Reader { reader, .. } => {
            // Read once: the slot keeps an empty reader for a (refused) retry.
            std::mem::replace(reader, Box::pin(tokio::io::empty()))
        }
    };
    let state = (reader, 0u64, vec![0u8; CHUNK], false);
    let stream = futures::stream::unfold(state, move |(mut reader, sent, mut buf, done)| {
        let progress = progress.clone();
        async move {
            if done || sent == len {
                return None;
            }
            let want = usize::try_from(len - sent).unwrap_or(usize::MAX).min(CHUNK);
            match reader.read(&mut buf[..want]).await {
                Ok(0) => Some((Err(mismatch(len, sent, false)), (reader, sent, buf, true))),
                Ok(n) => {
                    let sent = sent + n as u64;
                    if sent == len {
                        // The last chunk goes only once the source is known to
                        // end here: the HTTP layer stops reading at the
                        // Content-Length, so a longer source would otherwise
                        // be stored cut short without a word.
                        let mut probe = [0u8; 1];
                        match reader.read(&mut probe).await {
                            Ok(0) => {}
                            Ok(_) => {
                                let e = mismatch(len, sent + 1, true);
                                return Some((Err(e), (reader, sent, buf, true)));
                            }
                            Err(e) => return Some((Err(e), (reader, sent, buf, true))),
                        }
                    }
                    if let Some(p) = &progress {
                        p(sent, len);
                    }
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    Some((Ok(chunk), (reader, sent, buf, false)))
                }
                Err(e) => Some((Err(e), (reader, sent, buf, true))),
            }
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

fn mismatch(declared: u64, actual: u64, more: bool) -> std::io::Error {
    std::io::Error::other(LengthMismatch {
        declared,
        actual,
        more,
    })
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Epoch seconds of a UTC RFC 3339 time (`2026-12-06T12:00:00.000Z`), the
/// form `expiresAt` takes; `None` for anything else.
fn epoch_seconds(t: &str) -> Option<i64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.split('.').next()?;
    let mut c = time.splitn(3, ':').map(str::parse::<i64>);
    let (hh, mm, ss) = (c.next()?.ok()?, c.next()?.ok()?, c.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::epoch_seconds;

    #[test]
    fn expiry_times_parse() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            epoch_seconds("2026-12-06T12:30:15.123Z"),
            Some(1_796_560_215)
        );
        assert_eq!(epoch_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(epoch_seconds("2026-12-06 12:30:15"), None);
        assert_eq!(epoch_seconds("2026-13-06T12:30:15Z"), None);
    }
}

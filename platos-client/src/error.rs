//! The one error type of the SDK.
//!
//! Every failure, REST or realtime, is a [`Error`]. Its variants are the
//! classes callers branch on (the same classes the Python and TypeScript SDKs
//! use); the accessors on [`Error`] answer the common questions without a
//! `match`. Server answers are parsed from all three error-body shapes Platos
//! uses (docs/wire.md §3.1), so the message and code are the same whichever shape
//! a given route happens to send.

use std::fmt;
use std::time::Duration;

/// A boxed error from a lower layer, kept as the `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every fallible SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How much of a non-JSON error body becomes the message.
const MESSAGE_BODY_CHARS: usize = 200;
/// How much of a raw body an error keeps for [`Error::body`].
pub(crate) const KEPT_BODY_BYTES: usize = 64 * 1024;

/// Everything that can go wrong talking to Platos.
///
/// New classes may be added: match with a `_` arm, or use the accessors
/// ([`status`](Error::status), [`code`](Error::code),
/// [`is_retryable`](Error::is_retryable)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// 401 or 403: the credential is missing, expired, refused or not
    /// allowed to do this (operator-only routes answer end users with 403).
    Auth(Box<ApiError>),
    /// 404 on a call where "absent" is not a normal answer.
    NotFound(Box<ApiError>),
    /// 400 or 422: the request was malformed; see
    /// [`Error::validation_errors`].
    Validation(Box<ApiError>),
    /// 429, or a realtime rate-limit refusal; see [`Error::retry_after`].
    RateLimited(Box<ApiError>),
    /// 5xx after the configured retries.
    Server(Box<ApiError>),
    /// Any other refusal (409 conflict, other 4xx, unexpected statuses).
    Refused(Box<ApiError>),
    /// The request or connection failed below HTTP (DNS, refused, reset, TLS).
    Network(Box<TransportError>),
    /// A proxy would not carry the connection: it asked for credentials
    /// (407) or refused the tunnel. The message names the proxy (never its
    /// credentials). Not retried: the configuration must change.
    Proxy(Box<TransportError>),
    /// A try exceeded its time limit (after the configured retries).
    Timeout(Box<TransportError>),
    /// The server answered, but not with what the API describes.
    Decode(Box<DecodeError>),
    /// The client was configured in a way that cannot work; nothing was sent.
    Config(String),
    /// A realtime stream failed in a way that is not one of the above
    /// (protocol violation, consumer too slow, server refused the namespace).
    Stream(Box<StreamError>),
    /// An attachment upload failed ([`Error::upload_failure`] says how).
    Upload(Box<UploadError>),
}

/// How an attachment upload failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UploadFailure {
    /// The server refused the metadata (`ATTACHMENT_INVALID`, 400), or the source is empty.
    Invalid,
    /// Larger than the server accepts: over the presign answer's `maxBytes`
    /// (nothing was sent), `ATTACHMENT_TOO_LARGE` (413), or a 413 from storage.
    TooLarge,
    /// The organization's attachment quota is used up (`ATTACHMENT_QUOTA_EXCEEDED`, 413).
    QuotaExceeded,
    /// The server has no storage to upload to (`ATTACHMENT_STORAGE_UNAVAILABLE`, 503).
    StorageUnavailable,
    /// The thread is not the caller's, or not the agent's (`THREAD_NOT_FOUND`, 404).
    ThreadNotFound,
    /// The presign answer had no `uploadUrl` (or no `attachmentId`).
    MissingUploadUrl,
    /// The storage refused the URL (403): it expired, or the PUT did not match what was signed.
    UrlExpired,
    /// The storage answered another failure status.
    StorageRefused,
    /// The source yielded more or fewer bytes than its declared length; the PUT was abandoned.
    LengthMismatch,
    /// The source could not be read (a path that does not open).
    Source,
    /// The PUT failed below HTTP (after its one retry, when the source allowed one).
    Network,
}

/// An attachment upload's failure.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadError {
    pub(crate) failure: UploadFailure,
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
    pub(crate) code: Option<String>,
}

/// What the server said when it refused a call.
#[derive(Clone, PartialEq)]
pub struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    pub(crate) body: String,
    pub(crate) request_id: Option<String>,
    pub(crate) validation_errors: Vec<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) refusal: Option<Box<Refusal>>,
}

/// The V1 error envelope `{error:{code,title,body,errorId,traceRef,version,
/// fields?,retryAfterSec?}}`, as the server sent it (see docs/v1-stream.md).
///
/// Read with [`Error::refusal`]. Members the server left out are empty
/// strings, like the other SDKs read them; only `code` is required for a
/// body to count as an envelope.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Refusal {
    /// `code`, e.g. `STREAM_CURSOR_EXPIRED`.
    pub code: String,
    /// `title`: a short human-readable summary.
    pub title: String,
    /// `body`: the longer explanation.
    pub body: String,
    /// `errorId`: quote it when reporting the failure.
    pub error_id: String,
    /// `traceRef`: the server-side trace of the request.
    pub trace_ref: String,
    /// `version` of the envelope.
    pub version: String,
    /// `fields`: which inputs were refused and why.
    pub fields: Vec<RefusalField>,
    /// `retryAfterSec`, when the server said when to try again.
    pub retry_after_sec: Option<f64>,
}

/// One entry of a V1 envelope's `fields`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RefusalField {
    /// The input that was refused, e.g. `Last-Event-ID`.
    pub field: String,
    /// Why, as a code (e.g. `malformed`).
    pub code: String,
    /// Why, for humans.
    pub message: String,
}

/// A failure below HTTP.
#[derive(Debug)]
pub struct TransportError {
    pub(crate) message: String,
    pub(crate) source: Option<BoxError>,
}

/// A response (or stream frame) that did not match the expected shape.
#[derive(Clone, PartialEq)]
pub struct DecodeError {
    pub(crate) status: Option<u16>,
    pub(crate) path: String,
    pub(crate) message: String,
    pub(crate) body: String,
}

/// A realtime failure with the server's code, when it gave one.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamError {
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    pub(crate) violation: Option<StreamViolation>,
}

/// How a server broke the V1 event-stream protocol (docs/v1-stream.md,
/// "Violations"). Each is final: the reader stops and does not reconnect.
///
/// [`StreamViolation::code`] is also the [`Error::code`] of the error, so
/// code written against the other SDKs' `violation` strings keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamViolation {
    /// The answer was not `text/event-stream`.
    MediaType,
    /// A frame came before `stream_meta`.
    MetaMissing,
    /// `stream_meta` was not `{sv: integer, replayFrom: string|null}`.
    MetaMalformed,
    /// `stream_meta.sv` is a version this SDK does not read.
    VersionUnsupported,
    /// `stream_meta.replayFrom` is not the cursor the request sent.
    ReplayMismatch,
    /// A frame was not `{sv, t, seq, ts, …}` with `seq` a safe integer ≥ 1.
    FrameMalformed,
    /// Too many reconnects in a row applied no frame.
    ReconnectsExhausted,
    /// A line or an event exceeded the reader's size cap.
    EventTooLarge,
}

impl StreamViolation {
    /// The wire name, e.g. `STREAM_META_MISSING`.
    pub fn code(self) -> &'static str {
        match self {
            StreamViolation::MediaType => "STREAM_MEDIA_TYPE",
            StreamViolation::MetaMissing => "STREAM_META_MISSING",
            StreamViolation::MetaMalformed => "STREAM_META_MALFORMED",
            StreamViolation::VersionUnsupported => "STREAM_VERSION_UNSUPPORTED",
            StreamViolation::ReplayMismatch => "STREAM_REPLAY_MISMATCH",
            StreamViolation::FrameMalformed => "STREAM_FRAME_MALFORMED",
            StreamViolation::ReconnectsExhausted => "STREAM_RECONNECTS_EXHAUSTED",
            StreamViolation::EventTooLarge => "STREAM_EVENT_TOO_LARGE",
        }
    }
}

impl fmt::Display for StreamViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A stream error the SDK itself makes (not a code the server sent), as
/// [`Error::stream_code`] gives it. [`StreamCode::as_str`] is the
/// [`Error::code`] of the error, the same strings as before this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamCode {
    /// A frame that is not valid Engine.IO / Socket.IO, or an answer of the
    /// wrong media type (`protocol_error`).
    ProtocolError,
    /// A message larger than the server (or this SDK) accepts
    /// (`payload_too_large`).
    PayloadTooLarge,
    /// A turn silent after a reconnect whose answer the thread's messages
    /// do not hold (`turn_lost`; docs/realtime.md §6).
    TurnLost,
    /// A turn silent after a reconnect whose answer records a failure
    /// (`turn_failed`).
    TurnFailed,
    /// No event for the turn's idle limit; the turn was stopped (`turn_idle`).
    TurnIdle,
    /// A consumer that read nothing while its full buffer held back the
    /// other turns of its connection for the grace (`consumer_lagged`).
    ConsumerLagged,
    /// The WebSocket upgrade was answered by a proxy that will not tunnel
    /// it (`upgrade_blocked`).
    UpgradeBlocked,
    /// The WebSocket upgrade was refused otherwise (`upgrade_refused`).
    UpgradeRefused,
    /// The namespace connect was refused without a code (`connect_error`).
    ConnectError,
    /// The server refused an approval answer without a code
    /// (`approval_response_error`).
    ApprovalResponseError,
}

impl StreamCode {
    /// Every code, for tables and tests.
    pub const ALL: [StreamCode; 10] = [
        StreamCode::ProtocolError,
        StreamCode::PayloadTooLarge,
        StreamCode::TurnLost,
        StreamCode::TurnFailed,
        StreamCode::TurnIdle,
        StreamCode::ConsumerLagged,
        StreamCode::UpgradeBlocked,
        StreamCode::UpgradeRefused,
        StreamCode::ConnectError,
        StreamCode::ApprovalResponseError,
    ];

    /// The wire string, e.g. `consumer_lagged`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCode::ProtocolError => "protocol_error",
            StreamCode::PayloadTooLarge => "payload_too_large",
            StreamCode::TurnLost => "turn_lost",
            StreamCode::TurnFailed => "turn_failed",
            StreamCode::TurnIdle => "turn_idle",
            StreamCode::ConsumerLagged => "consumer_lagged",
            StreamCode::UpgradeBlocked => "upgrade_blocked",
            StreamCode::UpgradeRefused => "upgrade_refused",
            StreamCode::ConnectError => "connect_error",
            StreamCode::ApprovalResponseError => "approval_response_error",
        }
    }

    fn of(code: &str) -> Option<StreamCode> {
        StreamCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for StreamCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The class of the error as a stable lower-case name (`auth`,
    /// `not_found`, `validation`, `rate_limited`, `server`, `refused`,
    /// `network`, `timeout`, `decode`, `config`, `stream`): a label for
    /// metrics and logs that survives new classes (which get new names).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Auth(_) => "auth",
            Error::NotFound(_) => "not_found",
            Error::Validation(_) => "validation",
            Error::RateLimited(_) => "rate_limited",
            Error::Server(_) => "server",
            Error::Refused(_) => "refused",
            Error::Network(_) => "network",
            Error::Proxy(_) => "proxy",
            Error::Timeout(_) => "timeout",
            Error::Decode(_) => "decode",
            Error::Config(_) => "config",
            Error::Stream(_) => "stream",
            Error::Upload(_) => "upload",
        }
    }

    /// The HTTP status the server answered with, if the error came from an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Decode(e) => e.status,
            Error::Upload(e) => e.status,
            _ => self.api().map(|e| e.status).filter(|s| *s != 0),
        }
    }

    /// The machine-readable code: the V1 envelope's `error.code`, else a
    /// legacy `code`, else a legacy `error` that looks like a code
    /// (`OPERATOR_ONLY`); for realtime errors, the socket error's `code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Stream(e) => e.code.as_deref(),
            Error::Upload(e) => e.code.as_deref(),
            _ => self.api().and_then(|e| e.code.as_deref()),
        }
    }

    /// A human-readable message (the rule of docs/wire.md §3.1 for server answers).
    pub fn message(&self) -> &str {
        match self {
            Error::Network(e) | Error::Proxy(e) | Error::Timeout(e) => &e.message,
            Error::Decode(e) => &e.message,
            Error::Config(m) => m,
            Error::Stream(e) => &e.message,
            Error::Upload(e) => &e.message,
            _ => self.api().map_or("", |e| &e.message),
        }
    }

    /// The raw response body (capped at 64 KiB), when there was one.
    pub fn body(&self) -> Option<&str> {
        match self {
            Error::Decode(e) => Some(&e.body),
            _ => self.api().map(|e| e.body.as_str()),
        }
    }

    /// The server's request id (`x-request-id` header, else the V1 `errorId`).
    pub fn request_id(&self) -> Option<&str> {
        self.api().and_then(|e| e.request_id.as_deref())
    }

    /// `validationErrors` (or V1 `fields`) the server sent with a 400/422.
    pub fn validation_errors(&self) -> &[String] {
        self.api().map_or(&[], |e| &e.validation_errors)
    }

    /// The V1 error envelope of a refusal, with every member the server sent.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.api().and_then(|e| e.refusal.as_deref())
    }

    /// The SDK-made stream code of this error, if it is one
    /// ([`StreamCode`]); a code the server sent (a socket `error`'s) is
    /// only in [`code`](Self::code).
    pub fn stream_code(&self) -> Option<StreamCode> {
        match self {
            Error::Stream(e) if e.violation.is_none() => e.code.as_deref().and_then(StreamCode::of),
            _ => None,
        }
    }

    /// How an attachment upload failed, for an upload error.
    pub fn upload_failure(&self) -> Option<UploadFailure> {
        match self {
            Error::Upload(e) => Some(e.failure),
            _ => None,
        }
    }

    /// Which V1 event-stream rule the server broke, for a stream violation.
    pub fn stream_violation(&self) -> Option<StreamViolation> {
        match self {
            Error::Stream(e) => e.violation,
            _ => None,
        }
    }

    /// How long the server asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.api().and_then(|e| e.retry_after)
    }

    /// For a decode error, the JSON path of the field that did not fit.
    pub fn decode_path(&self) -> Option<&str> {
        match self {
            Error::Decode(e) => Some(&e.path),
            _ => None,
        }
    }

    /// Whether trying the same call again later may succeed: network
    /// failures, timeouts, 5xx and rate limits.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Network(_) | Error::Timeout(_) | Error::Server(_) | Error::RateLimited(_)
        )
    }

    fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Auth(e)
            | Error::NotFound(e)
            | Error::Validation(e)
            | Error::RateLimited(e)
            | Error::Server(e)
            | Error::Refused(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    pub(crate) fn network(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Network(Box::new(TransportError {
            message: message.into(),
            source,
        }))
    }

    pub(crate) fn proxy(message: impl Into<String>) -> Self {
        Error::Proxy(Box::new(TransportError {
            message: message.into(),
            source: None,
        }))
    }

    /// A proxy error, naming the proxy when it is known (`shown` never
    /// carries credentials); any other error unchanged.
    pub(crate) fn via_proxy(self, shown: Option<&str>) -> Self {
        match (self, shown) {
            (Error::Proxy(mut e), Some(proxy)) => {
                e.message = format!("proxy {proxy}: {}", e.message);
                Error::Proxy(e)
            }
            (other, _) => other,
        }
    }

    pub(crate) fn timeout(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Timeout(Box::new(TransportError {
            message: message.into(),
            source,
        }))
    }

    #[cfg(any(test, feature = "realtime"))]
    pub(crate) fn stream(code: Option<String>, message: impl Into<String>) -> Self {
        Error::Stream(Box::new(StreamError {
            code,
            message: message.into(),
            violation: None,
        }))
    }

    /// A stream error the SDK makes, with its code.
    #[cfg(any(test, feature = "realtime"))]
    pub(crate) fn stream_of(code: StreamCode, message: impl Into<String>) -> Self {
        Error::stream(Some(code.as_str().to_owned()), message)
    }

    /// A V1 event-stream protocol violation; its code is the violation's.
    #[cfg(any(test, feature = "v1"))]
    pub(crate) fn violation(violation: StreamViolation, message: impl Into<String>) -> Self {
        Error::Stream(Box::new(StreamError {
            code: Some(violation.code().to_owned()),
            message: message.into(),
            violation: Some(violation),
        }))
    }

    pub(crate) fn decode(
        status: Option<u16>,
        path: impl Into<String>,
        message: impl Into<String>,
        body: &[u8],
    ) -> Self {
        Error::Decode(Box::new(DecodeError {
            status,
            path: path.into(),
            message: message.into(),
            body: keep_body(body),
        }))
    }

    /// Classifies a server answer by status (docs/wire.md §3.1).
    pub(crate) fn from_api(api: ApiError) -> Self {
        let api = Box::new(api);
        match api.status {
            401 | 403 => Error::Auth(api),
            404 => Error::NotFound(api),
            400 | 422 => Error::Validation(api),
            429 => Error::RateLimited(api),
            s if s >= 500 => Error::Server(api),
            _ => Error::Refused(api),
        }
    }

    /// A realtime rate-limit refusal (`error {code:"rate_limit"}` on the socket).
    #[cfg(feature = "realtime")]
    pub(crate) fn rate_limited(
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        raw: String,
    ) -> Self {
        Error::RateLimited(Box::new(ApiError::realtime(
            code,
            message,
            retry_after,
            raw,
        )))
    }

    /// A realtime auth refusal (refused or expired token that refresh could not fix).
    #[cfg(feature = "realtime")]
    pub(crate) fn auth_refused(code: Option<String>, message: String, raw: String) -> Self {
        Error::Auth(Box::new(ApiError::realtime(code, message, None, raw)))
    }
}

impl ApiError {
    /// A refusal that came over the socket: no HTTP status (0), no request id.
    #[cfg(feature = "realtime")]
    fn realtime(
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        raw: String,
    ) -> Self {
        ApiError {
            status: 0,
            code,
            message,
            body: raw,
            request_id: None,
            validation_errors: Vec::new(),
            retry_after,
            refusal: None,
        }
    }

    /// Parses an error answer. `retry_after_header` is the already-parsed
    /// `Retry-After` header, which wins over a V1 body's `retryAfterSec`.
    pub(crate) fn parse(
        status: u16,
        reason: Option<&str>,
        request_id: Option<String>,
        retry_after_header: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let text = String::from_utf8_lossy(body);
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let obj = json.as_ref().and_then(|v| v.as_object());

        let v1 = obj.and_then(|o| o.get("error")).and_then(|e| e.as_object());
        let str_field = |key: &str| {
            obj.and_then(|o| o.get(key))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };

        let code = if let Some(v1) = v1 {
            v1.get("code").and_then(|c| c.as_str()).map(str::to_owned)
        } else if let Some(code) = str_field("code") {
            Some(code.to_owned())
        } else if obj.is_some_and(|o| o.contains_key("statusCode")) {
            // The framework shape's `error` is the reason phrase, not a code.
            None
        } else {
            str_field("error")
                .filter(|e| looks_like_code(e))
                .map(str::to_owned)
        };

        let message = if let Some(v1) = v1 {
            let code = v1.get("code").and_then(|c| c.as_str()).unwrap_or("error");
            match v1.get("title").and_then(|t| t.as_str()) {
                Some(title) if !title.is_empty() => format!("{code}: {title}"),
                _ => code.to_owned(),
            }
        } else if let Some(m) = str_field("message") {
            m.to_owned()
        } else if let Some(e) = str_field("error") {
            e.to_owned()
        } else if json.is_none() && !text.trim().is_empty() {
            text.chars().take(MESSAGE_BODY_CHARS).collect()
        } else {
            reason.unwrap_or("request failed").to_owned()
        };

        // The route is right and the token valid: the caller is an end user.
        let message = if code.as_deref() == Some("OPERATOR_ONLY") && message == "OPERATOR_ONLY" {
            "OPERATOR_ONLY: this call needs an operator credential (an operator's \
             session token or a direct-mode api key); an end user's token cannot make it"
                .to_owned()
        } else {
            message
        };

        let mut validation_errors: Vec<String> = obj
            .and_then(|o| o.get("validationErrors"))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // The framework's validation pipe sends its messages as a `message`
        // array (which is then not the message to show, per the rule above).
        if let Some(messages) = obj
            .and_then(|o| o.get("message"))
            .and_then(|m| m.as_array())
        {
            validation_errors.extend(
                messages
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned)),
            );
        }
        if let Some(fields) = v1.and_then(|v| v.get("fields")).and_then(|f| f.as_array()) {
            validation_errors.extend(fields.iter().filter_map(|f| {
                let field = f.get("field").and_then(|x| x.as_str()).unwrap_or("");
                let msg = f.get("message").and_then(|x| x.as_str()).unwrap_or("");
                (!field.is_empty() || !msg.is_empty()).then(|| format!("{field}: {msg}"))
            }));
        }

        let retry_after = retry_after_header.or_else(|| {
            v1.and_then(|v| v.get("retryAfterSec"))
                .and_then(|s| s.as_f64())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
        });

        let request_id = request_id.or_else(|| {
            v1.and_then(|v| v.get("errorId"))
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        });

        ApiError {
            status,
            code,
            message,
            body: keep_body(body),
            request_id,
            validation_errors,
            retry_after,
            refusal: v1.and_then(Refusal::read).map(Box::new),
        }
    }

    /// The HTTP status (0 for realtime refusals, which have none).
    pub fn status(&self) -> u16 {
        self.status
    }
}

impl Refusal {
    /// Reads an envelope's `error` object; `None` without a non-empty `code`.
    fn read(error: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        let text = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.as_str()).unwrap_or_default().to_owned()
        };
        let code = text(error.get("code"));
        if code.is_empty() {
            return None;
        }
        let fields = error
            .get("fields")
            .and_then(|f| f.as_array())
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| {
                        let field = f.get("field")?.as_str()?.to_owned();
                        let code = f.get("code")?.as_str()?.to_owned();
                        Some(RefusalField {
                            field,
                            code,
                            message: text(f.get("message")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Refusal {
            code,
            title: text(error.get("title")),
            body: text(error.get("body")),
            error_id: text(error.get("errorId")),
            trace_ref: text(error.get("traceRef")),
            version: text(error.get("version")),
            fields,
            retry_after_sec: error
                .get("retryAfterSec")
                .and_then(|s| s.as_f64())
                .filter(|s| s.is_finite() && *s >= 0.0),
        })
    }
}

/// `OPERATOR_ONLY` is a code; `Agent not found` is a message.
/// `OPERATOR_ONLY`, or a lower-case token with an underscore
/// (`payload_too_large`); never a reason phrase such as `Not Found`.
fn looks_like_code(s: &str) -> bool {
    let upper = s
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let snake = s.contains('_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    !s.is_empty() && (upper || snake)
}

fn keep_body(body: &[u8]) -> String {
    let end = body.len().min(KEPT_BODY_BYTES);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Auth(e) => write!(f, "authentication failed ({}): {}", e.status, e.message),
            Error::NotFound(e) => write!(f, "not found ({}): {}", e.status, e.message),
            Error::Validation(e) => write!(f, "invalid request ({}): {}", e.status, e.message),
            Error::RateLimited(e) => match e.retry_after {
                Some(d) => write!(f, "rate limited: {} (retry after {:?})", e.message, d),
                None => write!(f, "rate limited: {}", e.message),
            },
            Error::Server(e) => write!(f, "server error ({}): {}", e.status, e.message),
            Error::Refused(e) => write!(f, "request refused ({}): {}", e.status, e.message),
            Error::Network(e) => write!(f, "network error: {}", e.message),
            Error::Proxy(e) => write!(f, "proxy error: {}", e.message),
            Error::Timeout(e) => write!(f, "timed out: {}", e.message),
            Error::Decode(e) => write!(f, "unexpected response at `{}`: {}", e.path, e.message),
            Error::Config(m) => write!(f, "invalid client configuration: {m}"),
            Error::Stream(e) => match &e.code {
                Some(code) => write!(f, "stream error ({code}): {}", e.message),
                None => write!(f, "stream error: {}", e.message),
            },
            Error::Upload(e) => write!(f, "upload failed ({:?}): {}", e.failure, e.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Network(e) | Error::Proxy(e) | Error::Timeout(e) => e
                .source
                .as_ref()
                .map(|s| s.as_ref() as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

// Bodies can be large; Debug shows their size, not their bytes.
impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request_id", &self.request_id)
            .field("validation_errors", &self.validation_errors)
            .field("retry_after", &self.retry_after)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("status", &self.status)
            .field("path", &self.path)
            .field("message", &self.message)
            .field("body_len", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Error {
        Error::from_api(ApiError::parse(
            status,
            Some("Reason"),
            None,
            None,
            body.as_bytes(),
        ))
    }

    #[test]
    fn sdk_stream_codes_keep_their_wire_strings() {
        let wire: Vec<&str> = StreamCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            wire,
            [
                "protocol_error",
                "payload_too_large",
                "turn_lost",
                "turn_failed",
                "turn_idle",
                "consumer_lagged",
                "upgrade_blocked",
                "upgrade_refused",
                "connect_error",
                "approval_response_error",
            ]
        );
        for code in StreamCode::ALL {
            let e = Error::stream_of(code, "x");
            assert_eq!(e.code(), Some(code.as_str()));
            assert_eq!(e.stream_code(), Some(code));
        }
        // A code the server sent is not one the SDK made.
        assert_eq!(
            Error::stream(Some("SESSION_EXPIRED".into()), "x").stream_code(),
            None
        );
        let v = Error::violation(StreamViolation::MetaMissing, "x");
        assert_eq!(v.stream_code(), None);
    }

    #[test]
    fn framework_shape_has_message_and_no_code() {
        let e = parse(
            404,
            r#"{"statusCode":404,"message":"Thread not found","error":"Not Found"}"#,
        );
        assert!(matches!(e, Error::NotFound(_)));
        assert_eq!(e.message(), "Thread not found");
        assert_eq!(e.code(), None);
        assert_eq!(e.status(), Some(404));
    }

    #[test]
    fn legacy_codes() {
        let e = parse(
            403,
            r#"{"error":"OPERATOR_ONLY","message":"operators only"}"#,
        );
        assert!(matches!(e, Error::Auth(_)));
        assert_eq!(e.code(), Some("OPERATOR_ONLY"));
        assert_eq!(e.message(), "operators only");

        let e = parse(400, r#"{"code":"INVALID_PAGINATION","message":"bad page"}"#);
        assert!(matches!(e, Error::Validation(_)));
        assert_eq!(e.code(), Some("INVALID_PAGINATION"));

        let e = parse(404, r#"{"error":"Agent not found","agentId":"a1"}"#);
        assert_eq!(e.code(), None);
        assert_eq!(e.message(), "Agent not found");

        // The body cap's refusal names its code in lower case.
        let e = parse(413, r#"{"error":"payload_too_large","limit":262144}"#);
        assert!(matches!(e, Error::Refused(_)));
        assert_eq!(e.code(), Some("payload_too_large"));
        assert_eq!(e.status(), Some(413));
        assert_eq!(parse(401, r#"{"error":"unauthorized"}"#).code(), None);
    }

    #[test]
    fn v1_envelope() {
        let e = parse(
            429,
            r#"{"error":{"code":"RATE_LIMITED","title":"rate_limited","body":"slow down","errorId":"err_1","version":"1","retryAfterSec":5}}"#,
        );
        assert!(matches!(e, Error::RateLimited(_)));
        assert_eq!(e.code(), Some("RATE_LIMITED"));
        assert_eq!(e.message(), "RATE_LIMITED: rate_limited");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(e.request_id(), Some("err_1"));
        assert!(e.is_retryable());

        let e = parse(
            422,
            r#"{"error":{"code":"VALIDATION","fields":[{"field":"agentId","code":"required","message":"is required"}]}}"#,
        );
        assert_eq!(e.validation_errors(), ["agentId: is required"]);
        assert_eq!(e.message(), "VALIDATION");
    }

    #[test]
    fn v1_envelope_members_are_reachable() {
        let e = parse(
            400,
            r#"{"error":{"code":"STREAM_CURSOR_UNREADABLE","title":"t","body":"b","errorId":"err_9","traceRef":"trace_9","version":"1","retryAfterSec":2.5,"fields":[{"field":"Last-Event-ID","code":"malformed","message":"Send back an id this service issued on this stream."},{"field":3}]}}"#,
        );
        let r = e.refusal().expect("envelope");
        assert_eq!(r.code, "STREAM_CURSOR_UNREADABLE");
        assert_eq!((r.title.as_str(), r.body.as_str()), ("t", "b"));
        assert_eq!(r.error_id, "err_9");
        assert_eq!(r.trace_ref, "trace_9");
        assert_eq!(r.version, "1");
        assert_eq!(r.retry_after_sec, Some(2.5));
        assert_eq!(
            r.fields.len(),
            1,
            "an entry without string field/code is skipped"
        );
        assert_eq!(r.fields[0].field, "Last-Event-ID");
        assert_eq!(r.fields[0].code, "malformed");

        // Not an envelope: no code, or a legacy shape.
        assert!(parse(400, r#"{"error":{"title":"x"}}"#).refusal().is_none());
        assert!(
            parse(403, r#"{"error":"OPERATOR_ONLY"}"#)
                .refusal()
                .is_none()
        );
    }

    #[test]
    fn stream_violations_carry_their_code() {
        let e = Error::violation(StreamViolation::ReplayMismatch, "replayFrom was x");
        assert_eq!(e.code(), Some("STREAM_REPLAY_MISMATCH"));
        assert_eq!(e.stream_violation(), Some(StreamViolation::ReplayMismatch));
        assert!(!e.is_retryable());
        assert_eq!(Error::stream(None, "x").stream_violation(), None);
    }

    #[test]
    fn non_json_and_empty_bodies() {
        let long = "x".repeat(500);
        let e = parse(502, &long);
        assert!(matches!(e, Error::Server(_)));
        assert_eq!(e.message().len(), MESSAGE_BODY_CHARS);
        assert_eq!(e.body().map(str::len), Some(500));

        let e = parse(409, "");
        assert!(matches!(e, Error::Refused(_)));
        assert_eq!(e.message(), "Reason");

        let e = parse(400, r#"{"message":"bad","validationErrors":["a","b"]}"#);
        assert_eq!(e.validation_errors(), ["a", "b"]);
    }

    #[test]
    fn retryability() {
        assert!(parse(503, "").is_retryable());
        assert!(!parse(401, "").is_retryable());
        assert!(!parse(404, "").is_retryable());
        assert!(Error::network("reset", None).is_retryable());
        assert!(!Error::config("no url").is_retryable());
    }
}

//! One error type for every failure, with a stable kind and the Kling business-code table.

use std::fmt;
use std::sync::Arc;

use crate::task::TaskStatus;

/// The stable category of an [`Error`].
///
/// The string names returned by [`ErrorKind::as_str`] are the contract shared by
/// the Rust, Python and Node faces of klingwatch: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Credentials were refused (codes 1000–1004).
    Authentication,
    /// The account may not use this API, model or IP (1103, 1304).
    PermissionDenied,
    /// The account is suspended, in arrears or out of resources (1100–1102).
    Account,
    /// The request was refused as malformed, or failed local validation before sending.
    InvalidRequest,
    /// The task (or resource) does not exist (1203).
    NotFound,
    /// Refused by platform or content policy (1300, 1301).
    Policy,
    /// Too many requests or too many tasks in flight (1302, 1303).
    RateLimited,
    /// The server failed (5000–5002, 5xx without a known code).
    Server,
    /// A request timed out.
    Timeout,
    /// The connection failed or dropped.
    Connection,
    /// The response could not be decoded.
    Decode,
    /// The client is misconfigured (missing credentials, bad URL, bad CA file...).
    Config,
    /// A task ended with status `failed` and the caller asked for it to be raised.
    TaskFailed,
    /// A wait reached its deadline before the task ended.
    WaitTimeout,
    /// The operation was cancelled by the caller.
    Cancelled,
    /// A webhook signature did not verify.
    Signature,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::Authentication,
        ErrorKind::PermissionDenied,
        ErrorKind::Account,
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::Policy,
        ErrorKind::RateLimited,
        ErrorKind::Server,
        ErrorKind::Timeout,
        ErrorKind::Connection,
        ErrorKind::Decode,
        ErrorKind::Config,
        ErrorKind::TaskFailed,
        ErrorKind::WaitTimeout,
        ErrorKind::Cancelled,
        ErrorKind::Signature,
    ];

    /// The stable snake_case name of this kind (`"rate_limited"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Authentication => "authentication",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Account => "account",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Policy => "policy",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Decode => "decode",
            ErrorKind::Config => "config",
            ErrorKind::TaskFailed => "task_failed",
            ErrorKind::WaitTimeout => "wait_timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Signature => "signature",
        }
    }

    /// Parses a stable kind name.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the client does when it receives a business code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAction {
    /// Final: never retried.
    None,
    /// 1003/1004: sign a new token and retry once.
    ResignOnce,
    /// Retried with exponential backoff (reads and creates).
    Backoff,
    /// Retried with backoff whose first delay is at least one second (1303).
    BackoffMin1s,
    /// Retried with backoff for reads only: a create may already exist.
    BackoffReadsOnly,
}

impl RetryAction {
    /// The name used in `tests/vectors/errors.json`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryAction::None => "none",
            RetryAction::ResignOnce => "resign_once",
            RetryAction::Backoff => "backoff",
            RetryAction::BackoffMin1s => "backoff_min_1s",
            RetryAction::BackoffReadsOnly => "backoff_reads_only",
        }
    }
}

/// One row of the Kling business-code table (kling-api.md §5).
#[derive(Clone, Copy, Debug)]
pub struct CodeInfo {
    /// The business code.
    pub code: i64,
    /// The HTTP status the server sends it with.
    pub http_status: u16,
    /// The stable kind it maps to.
    pub kind: ErrorKind,
    /// Whether a status query is retried on it.
    pub retryable: bool,
    /// The client's action.
    pub action: RetryAction,
    /// What the code means.
    pub meaning: &'static str,
}

const fn row(
    http_status: u16,
    code: i64,
    kind: ErrorKind,
    action: RetryAction,
    meaning: &'static str,
) -> CodeInfo {
    let retryable = matches!(
        action,
        RetryAction::Backoff | RetryAction::BackoffMin1s | RetryAction::BackoffReadsOnly
    );
    CodeInfo {
        code,
        http_status,
        kind,
        retryable,
        action,
        meaning,
    }
}

use ErrorKind as K;
use RetryAction as A;

/// The business-code table: the single place where codes map to kinds and retry actions.
pub const CODE_TABLE: &[CodeInfo] = &[
    row(
        401,
        1000,
        K::Authentication,
        A::None,
        "authentication failed",
    ),
    row(401, 1001, K::Authentication, A::None, "authorization empty"),
    row(
        401,
        1002,
        K::Authentication,
        A::None,
        "authorization invalid",
    ),
    row(
        401,
        1003,
        K::Authentication,
        A::ResignOnce,
        "token not yet valid",
    ),
    row(401, 1004, K::Authentication, A::ResignOnce, "token expired"),
    row(429, 1100, K::Account, A::None, "abnormal account status"),
    row(429, 1101, K::Account, A::None, "account in arrears"),
    row(
        429,
        1102,
        K::Account,
        A::None,
        "resource pack exhausted or expired",
    ),
    row(
        403,
        1103,
        K::PermissionDenied,
        A::None,
        "no access to this API or model",
    ),
    row(
        400,
        1200,
        K::InvalidRequest,
        A::None,
        "invalid request parameters",
    ),
    row(400, 1201, K::InvalidRequest, A::None, "invalid parameter"),
    row(404, 1202, K::InvalidRequest, A::None, "invalid method"),
    row(
        404,
        1203,
        K::NotFound,
        A::None,
        "requested resource does not exist",
    ),
    row(400, 1300, K::Policy, A::None, "blocked by platform policy"),
    row(
        400,
        1301,
        K::Policy,
        A::None,
        "content security policy triggered",
    ),
    row(429, 1302, K::RateLimited, A::Backoff, "too many requests"),
    row(
        429,
        1303,
        K::RateLimited,
        A::BackoffMin1s,
        "over the concurrency limit",
    ),
    row(
        429,
        1304,
        K::PermissionDenied,
        A::None,
        "IP whitelist policy",
    ),
    row(
        500,
        5000,
        K::Server,
        A::BackoffReadsOnly,
        "server internal error",
    ),
    row(
        503,
        5001,
        K::Server,
        A::BackoffReadsOnly,
        "temporarily unavailable",
    ),
    row(
        504,
        5002,
        K::Server,
        A::BackoffReadsOnly,
        "server internal timeout",
    ),
];

/// Looks a business code up in [`CODE_TABLE`].
pub fn code_info(code: i64) -> Option<&'static CodeInfo> {
    CODE_TABLE.iter().find(|r| r.code == code)
}

/// The kind and retryability of a response that carries no known business code,
/// decided by its HTTP status alone.
pub fn status_fallback(http_status: u16) -> (ErrorKind, bool) {
    match http_status {
        401 => (K::Authentication, false),
        403 => (K::PermissionDenied, false),
        404 => (K::NotFound, false),
        408 => (K::Timeout, true),
        429 => (K::RateLimited, true),
        400..=499 => (K::InvalidRequest, false),
        500..=599 => (K::Server, true),
        // A 2xx/3xx that still carried an error envelope: treat as a server fault, final.
        _ => (K::Server, false),
    }
}

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    http_status: Option<u16>,
    kling_code: Option<i64>,
    request_id: Option<String>,
    task_id: Option<String>,
    external_task_id: Option<String>,
    retryable: bool,
    attempts: u32,
    retry_after: Option<std::time::Duration>,
    last_status: Option<TaskStatus>,
    outcome_unknown: bool,
    source: Option<Source>,
}

/// Every failure klingwatch reports.
///
/// Cheap to clone. Never contains a secret: messages are built from codes, statuses
/// and short body snippets, never from credentials or tokens.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

/// `Result` with klingwatch's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`; every other field empty.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                http_status: None,
                kling_code: None,
                request_id: None,
                task_id: None,
                external_task_id: None,
                retryable: false,
                attempts: 0,
                retry_after: None,
                last_status: None,
                outcome_unknown: false,
                source: None,
            }),
        }
    }

    /// An `invalid_request` error raised before anything was sent.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidRequest, message)
    }

    /// A `config` error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    /// The error for an API answer: business code (if any) and HTTP status decide the kind.
    pub fn from_api(
        http_status: u16,
        code: Option<i64>,
        message: &str,
        request_id: Option<String>,
    ) -> Error {
        let (kind, retryable) = match code.and_then(code_info) {
            Some(info) => (info.kind, info.retryable),
            None => status_fallback(http_status),
        };
        let text = match code {
            Some(c) => format!(
                "{} (HTTP {}, code {}): {}",
                kind.as_str(),
                http_status,
                c,
                message
            ),
            None => format!("{} (HTTP {}): {}", kind.as_str(), http_status, message),
        };
        let mut e = Error::new(kind, text);
        e.inner.http_status = Some(http_status);
        e.inner.kling_code = code;
        e.inner.request_id = request_id;
        e.inner.retryable = retryable;
        e
    }

    /// The error as one JSON object with stable snake_case keys: `kind`, `message`,
    /// `http_status`, `kling_code`, `request_id`, `task_id`, `retryable`, `attempts`,
    /// `outcome_unknown` (a create that may have made the task), `cause` ([`Error::cause_text`])
    /// (secret-free, like every field of an error). Bindings rebuild their error from this.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind().as_str(),
            "message": self.message(),
            "http_status": self.http_status(),
            "kling_code": self.kling_code(),
            "request_id": self.request_id(),
            "task_id": self.task_id(),
            "retryable": self.is_retryable(),
            "attempts": self.attempts(),
            "outcome_unknown": self.is_outcome_unknown(),
            "cause": self.cause_text(),
        })
    }

    /// The chain of underlying causes (transport, TLS, JSON errors), outermost first, joined
    /// by `": "`; `None` when the error has no source. Secret-free like the message.
    pub fn cause_text(&self) -> Option<String> {
        let mut parts = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            parts.push(e.to_string());
            next = e.source();
        }
        (!parts.is_empty()).then(|| parts.join(": "))
    }

    /// The error a binding reports when it caught a panic of the core (so no panic ever
    /// crosses into Python or JavaScript as anything but a klingwatch error).
    pub fn from_panic() -> Error {
        Error::new(
            ErrorKind::Config,
            "internal error in klingwatch (a panic was caught); please report it",
        )
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// Human-readable message (secret-free).
    pub fn message(&self) -> &str {
        &self.inner.message
    }
    /// HTTP status of the last response, if one arrived.
    pub fn http_status(&self) -> Option<u16> {
        self.inner.http_status
    }
    /// Kling business code of the last response, if any.
    pub fn kling_code(&self) -> Option<i64> {
        self.inner.kling_code
    }
    /// `request_id` of the last response, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }
    /// The task this error concerns, if known.
    pub fn task_id(&self) -> Option<&str> {
        self.inner.task_id.as_deref()
    }
    /// The caller's `external_task_id` of a create whose outcome is unknown.
    pub fn external_task_id(&self) -> Option<&str> {
        self.inner.external_task_id.as_deref()
    }
    /// Whether the failure is transient (the client may already have retried it).
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable
    }
    /// Number of HTTP attempts made (0 when nothing was sent).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }
    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.inner.retry_after
    }
    /// For `wait_timeout`: the last status seen before the deadline.
    pub fn last_status(&self) -> Option<&TaskStatus> {
        self.inner.last_status.as_ref()
    }
    /// For creates: true when the task may or may not exist (5xx, timeout or dropped
    /// connection on a create that could not be looked up).
    pub fn is_outcome_unknown(&self) -> bool {
        self.inner.outcome_unknown
    }

    pub(crate) fn with_http_status(mut self, s: u16) -> Self {
        self.inner.http_status = Some(s);
        self
    }
    pub(crate) fn with_retryable(mut self, r: bool) -> Self {
        self.inner.retryable = r;
        self
    }
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        self.inner.attempts = n;
        self
    }
    pub(crate) fn with_retry_after(mut self, d: Option<std::time::Duration>) -> Self {
        self.inner.retry_after = d;
        self
    }
    /// Attaches the task id this error concerns.
    pub fn with_task_id(mut self, id: impl Into<String>) -> Self {
        self.inner.task_id = Some(id.into());
        self
    }
    pub(crate) fn with_external_task_id(mut self, id: Option<String>) -> Self {
        self.inner.external_task_id = id;
        self
    }
    pub(crate) fn with_last_status(mut self, s: Option<TaskStatus>) -> Self {
        self.inner.last_status = s;
        self
    }
    pub(crate) fn with_outcome_unknown(mut self) -> Self {
        self.inner.outcome_unknown = true;
        self
    }
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }
    pub(crate) fn set_message(&mut self, message: String) {
        self.inner.message = message;
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(id) = &self.inner.request_id {
            write!(f, " [request_id {id}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind.as_str())
            .field("message", &i.message);
        if let Some(v) = i.http_status {
            d.field("http_status", &v);
        }
        if let Some(v) = i.kling_code {
            d.field("kling_code", &v);
        }
        if let Some(v) = &i.request_id {
            d.field("request_id", v);
        }
        if let Some(v) = &i.task_id {
            d.field("task_id", v);
        }
        if let Some(v) = &i.external_task_id {
            d.field("external_task_id", v);
        }
        if let Some(v) = &i.last_status {
            d.field("last_status", &v.as_str());
        }
        d.field("retryable", &i.retryable)
            .field("attempts", &i.attempts);
        if i.outcome_unknown {
            d.field("outcome_unknown", &true);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

//! `Client` and `ClientBuilder`: regions, base URL, timeouts, TLS, and the one request path
//! every call goes through (sign, send, classify, retry, parse).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::auth::{
    Clock, Credentials, SystemClock, TokenProvider, DEFAULT_REFRESH_MARGIN, DEFAULT_TTL_SECS,
};
use crate::direct::{body_too_large, retry_after_of, timed_out, Direct, Received};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::{should_retry, Idempotency, RetryBudget, RetryPolicy};
use crate::task::{not_an_object, text_json_type, validate_task_id, Task, TaskKind};

/// Env var overriding the base URL.
pub const ENV_BASE_URL: &str = "KLING_BASE_URL";
/// Largest response body accepted by default (16 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("klingwatch/", env!("CARGO_PKG_VERSION"));

/// The Kling API region, which picks the default host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Region {
    /// `https://api-singapore.klingai.com` (default).
    #[default]
    Global,
    /// `https://api-beijing.klingai.com`.
    China,
}

impl Region {
    /// The region's base URL.
    pub const fn base_url(self) -> &'static str {
        match self {
            Region::Global => "https://api-singapore.klingai.com",
            Region::China => "https://api-beijing.klingai.com",
        }
    }
    /// The stable name (`"global"`, `"china"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Region::Global => "global",
            Region::China => "china",
        }
    }
}

impl std::str::FromStr for Region {
    type Err = Error;
    fn from_str(s: &str) -> Result<Region> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" | "singapore" | "intl" => Ok(Region::Global),
            "china" | "cn" | "beijing" => Ok(Region::China),
            other => Err(Error::config(format!(
                "unknown region {other:?}; expected \"global\" or \"china\""
            ))),
        }
    }
}

/// How a task is looked up by its `external_task_id` (the wire form is not settled by the
/// official documentation, see kling-api.md §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalIdLookup {
    /// `GET {kind path}/{external_task_id}` (the documented form; default).
    #[default]
    Path,
    /// `GET {kind path}?external_task_id=...`.
    Query,
}

/// Builds a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    credentials: Option<Credentials>,
    access_key: Option<String>,
    secret_key: Option<String>,
    api_key: Option<String>,
    region: Region,
    base_url: Option<String>,
    connect_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    ca_pem: Vec<Vec<u8>>,
    clock: Option<Arc<dyn Clock>>,
    token_ttl: i64,
    token_margin: Duration,
    max_creates_in_flight: Option<usize>,
    auto_external_task_id: bool,
    external_id_lookup: ExternalIdLookup,
    max_body_bytes: usize,
    user_agent: Option<String>,
    pool_idle: Duration,
    keep_alive: crate::direct::KeepAlive,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("credentials", &self.credentials)
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            credentials: None,
            access_key: None,
            secret_key: None,
            api_key: None,
            region: Region::Global,
            base_url: None,
            connect_timeout: Duration::from_secs(10),
            pool_idle: POOL_IDLE,
            keep_alive: crate::direct::KeepAlive::default(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            ca_pem: Vec::new(),
            clock: None,
            token_ttl: DEFAULT_TTL_SECS,
            token_margin: DEFAULT_REFRESH_MARGIN,
            max_creates_in_flight: None,
            auto_external_task_id: false,
            external_id_lookup: ExternalIdLookup::Path,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            user_agent: None,
        }
    }
}

impl ClientBuilder {
    /// Uses these credentials (beats every other source).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }
    /// Sets the AccessKey (the SecretKey may come from the env).
    pub fn access_key(mut self, access_key: impl Into<String>) -> Self {
        self.access_key = Some(access_key.into());
        self
    }
    /// Sets the SecretKey.
    pub fn secret_key(mut self, secret_key: impl Into<String>) -> Self {
        self.secret_key = Some(secret_key.into());
        self
    }
    /// Sets a static API key.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }
    /// Picks the region's host (ignored when a base URL is set).
    pub fn region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }
    /// Overrides the base URL (beats `KLING_BASE_URL` and the region).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// How long an idle connection is kept open (default 60 s, as reqwest's pool). For tests
    /// that watch connections close; not part of the bindings' options.
    #[doc(hidden)]
    pub fn pool_idle_timeout(mut self, t: Duration) -> Self {
        self.pool_idle = t;
        self
    }

    /// How often an HTTP/2 connection is pinged, and how long an unanswered ping may take
    /// before the connection counts as dead (default 20 s and 10 s). A dead connection's
    /// calls fail as retryable `connection` errors and the next call opens a new one, so a
    /// connection that a NAT or load balancer dropped silently does not hold calls until
    /// their timeout. Both must be positive.
    pub fn http2_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = crate::direct::KeepAlive { interval, timeout };
        self
    }

    /// TCP/TLS connect timeout (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }
    /// Whole-request timeout, per attempt (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Retries after the first attempt (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.retry.max_retries = n;
        self
    }
    /// Replaces the whole retry policy.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Trusts an extra CA certificate (PEM), on top of the system roots.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem.push(pem.into());
        self
    }
    /// Uses `clock` for token times (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Token lifetime in seconds (default 1800).
    pub fn token_ttl_secs(mut self, ttl: i64) -> Self {
        self.token_ttl = ttl;
        self
    }
    /// Re-sign the token when less than this is left (default 60 s).
    pub fn token_refresh_margin(mut self, margin: Duration) -> Self {
        self.token_margin = margin;
        self
    }
    /// Queue creates locally beyond `n` in flight, instead of meeting 1303.
    pub fn max_creates_in_flight(mut self, n: usize) -> Self {
        self.max_creates_in_flight = Some(n.max(1));
        self
    }
    /// Give every create without an `external_task_id` a generated one, so that a create
    /// whose answer is lost can be looked up instead of being reported as unknown.
    pub fn auto_external_task_id(mut self, on: bool) -> Self {
        self.auto_external_task_id = on;
        self
    }
    /// How lookups by `external_task_id` are sent.
    pub fn external_id_lookup(mut self, how: ExternalIdLookup) -> Self {
        self.external_id_lookup = how;
        self
    }
    /// Largest accepted response body (default 16 MiB).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    /// Appends a product token to the user agent (`klingwatch/x.y.z <suffix>`).
    pub fn user_agent_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.user_agent = Some(suffix.into());
        self
    }

    /// Builds the client: resolves credentials (explicit, then env) and the base URL
    /// (explicit, then `KLING_BASE_URL`, then the region). Sends nothing.
    pub fn build(self) -> Result<Client> {
        crate::install_crypto_provider();
        let credentials = match self.credentials {
            Some(c) => c,
            None => Credentials::resolve(
                self.access_key.as_deref(),
                self.secret_key.as_deref(),
                self.api_key.as_deref(),
            )?,
        };
        let base = match self.base_url.filter(|u| !u.trim().is_empty()) {
            Some(u) => u,
            None => std::env::var(crate::client::ENV_BASE_URL)
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| self.region.base_url().to_owned()),
        };
        let shown = redact_userinfo(&base);
        let parsed = url::Url::parse(base.trim())
            .map_err(|e| Error::config(format!("invalid base URL {shown:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::config(format!(
                "invalid base URL {shown:?}: expected http(s)://host[:port]"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            // Kling authenticates with a Bearer token; credentials in the URL would end up in
            // reprs and logs.
            return Err(Error::config(format!(
                "invalid base URL {shown:?}: it must not contain user:password@ (pass \
                 credentials as access_key/secret_key or api_key)"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::config(
                "the base URL must not have a query or fragment",
            ));
        }
        let base_url = parsed.as_str().trim_end_matches('/').to_owned();
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::config("timeouts must be positive"));
        }
        if self.keep_alive.interval.is_zero() || self.keep_alive.timeout.is_zero() {
            return Err(Error::config(
                "the HTTP/2 keep-alive interval and timeout must be positive",
            ));
        }
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let auth = TokenProvider::new(&credentials, clock, self.token_ttl, self.token_margin)?;
        let ua = match &self.user_agent {
            Some(s) => format!("{USER_AGENT} {s}"),
            None => USER_AGENT.to_owned(),
        };
        let mut http = reqwest::Client::builder()
            .user_agent(ua.clone())
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(self.pool_idle)
            .http2_keep_alive_interval(self.keep_alive.interval)
            .http2_keep_alive_timeout(self.keep_alive.timeout)
            .http2_keep_alive_while_idle(true);
        for pem in &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::config(format!("the CA certificate is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(Error::config(
                    "the CA certificate file holds no certificate",
                ));
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| {
            Error::config(format!("cannot build the HTTP client: {e}")).with_source(e)
        })?;
        let direct = Direct::for_base(
            &parsed,
            &self.ca_pem,
            self.connect_timeout,
            self.pool_idle,
            self.keep_alive,
            &ua,
        )?;
        let budget = RetryBudget::new(self.retry.budget_capacity, self.retry.budget_ratio);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                base: parsed,
                auth,
                budget,
                retry: self.retry,
                create_slots: self
                    .max_creates_in_flight
                    .map(|n| Arc::new(Semaphore::new(n))),
                auto_external_task_id: self.auto_external_task_id,
                external_id_lookup: self.external_id_lookup,
                max_body_bytes: self.max_body_bytes,
                timeout: self.timeout,
                pool: PoolGate::default(),
                direct,
            }),
        })
    }
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: String,
    /// `base_url` parsed once: each request only sets its path (see [`Client::url`]).
    base: url::Url,
    pub(crate) auth: TokenProvider,
    pub(crate) budget: RetryBudget,
    pub(crate) retry: RetryPolicy,
    pub(crate) create_slots: Option<Arc<Semaphore>>,
    pub(crate) auto_external_task_id: bool,
    pub(crate) external_id_lookup: ExternalIdLookup,
    pub(crate) max_body_bytes: usize,
    pub(crate) timeout: Duration,
    pub(crate) pool: PoolGate,
    /// The direct transport of API calls (`None`: a proxy applies, reqwest carries them all).
    direct: Option<Direct>,
}

/// How long an idle connection stays in the pool.
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(60);
/// Without a response for this long, the pool is treated as empty (cold).
const COLD_AFTER: Duration = Duration::from_secs(50);
/// After an opening request fails to get any response, callers stop queueing behind a single
/// opener for this long (so an unreachable host fails a batch in parallel, not in series).
const OPEN_FAILURE_GRACE: Duration = Duration::from_secs(5);

/// Lets one request open the connection while the pool is cold. Without it, a burst of
/// concurrent first requests (a `get_many` at concurrency 64, say) each opens its own TLS
/// connection before ALPN tells the pool that one HTTP/2 connection would carry them all:
/// 64 handshakes where one is needed. With it, the first request goes alone and the others
/// follow on its connection as soon as it answers.
pub(crate) struct PoolGate {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 of the last response (any HTTP status); 0 = never.
    last_response: AtomicU64,
    /// Milliseconds since `epoch` + 1 of the last opening attempt that got no response.
    last_open_failure: AtomicU64,
    opening: tokio::sync::Mutex<()>,
}

impl Default for PoolGate {
    fn default() -> Self {
        PoolGate {
            epoch: Instant::now(),
            last_response: AtomicU64::new(0),
            last_open_failure: AtomicU64::new(0),
            opening: tokio::sync::Mutex::new(()),
        }
    }
}

impl PoolGate {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn within(&self, stamp: &AtomicU64, window: Duration) -> bool {
        let t = stamp.load(Ordering::Relaxed);
        t != 0 && self.now().saturating_sub(t) < window.as_millis() as u64
    }

    fn is_cold(&self) -> bool {
        !self.within(&self.last_response, COLD_AFTER)
    }

    fn responded(&self) {
        self.last_response.store(self.now(), Ordering::Relaxed);
    }
}

/// The Kling API client. Cheap to clone (one connection pool and one token cache shared by
/// all clones); safe to use from many tasks and threads at once.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("auth", &self.inner.auth)
            .field("max_retries", &self.inner.retry.max_retries)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    /// Kept as text: a task's typed fields are read from it and the text becomes
    /// [`Task::raw`] (no tree is built for it).
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

/// One logical API call (rebuilt for every attempt).
pub(crate) struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Bytes>,
    pub idempotency: Idempotency,
    pub task_id: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub(crate) fn get(path: String) -> Self {
        Call {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            idempotency: Idempotency::Read,
            task_id: None,
        }
    }
}

/// The successful answer of a call: `data` (as received; `None` when absent or null) and
/// the `request_id`.
pub(crate) struct Answer {
    pub data: Option<Box<RawValue>>,
    #[allow(dead_code)]
    pub request_id: Option<String>,
}

impl Answer {
    /// The JSON type of `data` ("null" when absent), for messages and dispatch.
    pub(crate) fn json_type(&self) -> &'static str {
        self.data
            .as_deref()
            .map_or("null", |raw| text_json_type(raw.get()))
    }

    /// `data` as one task object.
    pub(crate) fn task(self, kind: TaskKind) -> Result<Task> {
        match self.data {
            Some(raw) => Task::from_raw(kind, raw),
            None => Err(not_an_object("null")),
        }
    }

    /// `data` as a list, each entry still as text (a task object, for [`Task::from_raw`]).
    pub(crate) fn items(self) -> Result<Vec<Box<RawValue>>> {
        match self.data {
            Some(raw) if text_json_type(raw.get()) == "an array" => serde_json::from_str(raw.get())
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Decode,
                        format!("cannot read the list of tasks: {e}"),
                    )
                    .with_source(e)
                }),
            _ => Err(Error::new(
                ErrorKind::Decode,
                format!("expected a list of tasks, got {}", self.json_type()),
            )),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty body".to_owned();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = clean.chars().take(120).collect();
    format!("non-JSON body: {short:?}")
}

/// Maps a transport error to a typed error (no URL: it could carry credentials of a proxy).
pub(crate) fn transport_error(e: reqwest::Error) -> Error {
    let detail = crate::direct::detail(&e);
    let e = e.without_url();
    if e.is_timeout() {
        timed_out().with_source(e)
    } else if e.is_builder() {
        Error::new(
            ErrorKind::Config,
            format!("cannot build the request: {detail}"),
        )
        .with_source(e)
    } else if e.is_connect() {
        Error::new(
            ErrorKind::Connection,
            format!("connection failed: {detail}"),
        )
        .with_retryable(true)
        .with_source(e)
    } else {
        Error::new(ErrorKind::Connection, format!("connection error: {detail}"))
            .with_retryable(true)
            .with_source(e)
    }
}

impl Client {
    /// A builder with defaults (env fills what is not given at `build`).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from the environment only.
    pub fn from_env() -> Result<Client> {
        ClientBuilder::default().build()
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The current bearer token, signed or reused from the cache (no request is sent).
    pub fn token(&self) -> Result<String> {
        self.inner.auth.token()
    }

    /// The token provider (signature counts, for tests and metrics).
    pub fn token_provider(&self) -> &TokenProvider {
        &self.inner.auth
    }

    /// Retries left in this client's retry budget.
    pub fn retry_budget_remaining(&self) -> u64 {
        self.inner.budget.remaining()
    }

    /// The per-attempt request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// [`Client::send_once`] behind the pool gate (see [`PoolGate`]).
    async fn send(&self, call: &Call<'_>, auth: HeaderValue) -> Result<Answer> {
        let gate = &self.inner.pool;
        if gate.is_cold() {
            let opener = gate.opening.lock().await;
            if gate.is_cold() && !gate.within(&gate.last_open_failure, OPEN_FAILURE_GRACE) {
                let r = self.send_once(call, auth).await;
                if gate.is_cold() {
                    gate.last_open_failure.store(gate.now(), Ordering::Relaxed);
                }
                drop(opener);
                return r;
            }
        }
        self.send_once(call, auth).await
    }

    /// The URL of `path` (an API path; any task id in it was validated).
    fn url(&self, path: &str) -> url::Url {
        let mut url = self.inner.base.clone();
        match self.inner.base.path().trim_end_matches('/') {
            "" => url.set_path(path),
            prefix => url.set_path(&format!("{prefix}{path}")),
        }
        url
    }

    /// The request target (path and query) of `call`, as [`Client::url`] and
    /// `query_pairs_mut` would make it. A path made only of characters the URL parser never
    /// changes (every checked task id of letters, digits, `-`, `_`, ...) is joined to the base
    /// path as it is, without parsing a URL per request; any other path goes through
    /// [`Client::url`], so percent-encoding and dot segments follow one rule.
    fn request_target(&self, call: &Call<'_>) -> String {
        let verbatim = call.path.starts_with('/')
            && !call.path.contains("/.")
            && call
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b));
        let mut target = if verbatim {
            let prefix = self.inner.base.path().trim_end_matches('/');
            let mut t = String::with_capacity(prefix.len() + call.path.len() + 64);
            t.push_str(prefix);
            t.push_str(&call.path);
            t
        } else {
            self.url(&call.path).path().to_owned()
        };
        if !call.query.is_empty() {
            target.push('?');
            let start = target.len();
            url::form_urlencoded::Serializer::for_suffix(&mut target, start)
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        target
    }

    async fn send_once(&self, call: &Call<'_>, auth: HeaderValue) -> Result<Answer> {
        let received = match &self.inner.direct {
            Some(direct) => {
                let inner = &*self.inner;
                direct
                    .send(
                        &call.method,
                        self.request_target(call),
                        &auth,
                        call.body.as_ref(),
                        inner.timeout,
                        inner.max_body_bytes,
                    )
                    .await?
            }
            // Boxed: reqwest's request state is large; every caller's future would carry it.
            None => Box::pin(self.send_reqwest(call, self.url(&call.path), auth)).await?,
        };
        self.inner.pool.responded();
        self.answer(received)
    }

    /// Sends `call` to `url` with reqwest (API calls through a proxy).
    async fn send_reqwest(
        &self,
        call: &Call<'_>,
        url: url::Url,
        auth: HeaderValue,
    ) -> Result<Received> {
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, auth);
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut resp = req.send().await.map_err(transport_error)?;
        self.inner.pool.responded();
        let status = resp.status().as_u16();
        let retry_after = retry_after_of(resp.headers());
        let cap = self.inner.max_body_bytes;
        if resp.content_length().is_some_and(|n| n as usize > cap) {
            return Err(body_too_large(cap, status));
        }
        let mut body = BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return Err(body_too_large(cap, status));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(transport_error(e).with_http_status(status)),
            }
        }
        Ok(Received {
            status,
            retry_after,
            body: body.freeze(),
        })
    }

    /// The answer of an HTTP exchange: the envelope's `data` on success, else the error its
    /// HTTP status and business code make.
    fn answer(&self, received: Received) -> Result<Answer> {
        let Received {
            status,
            retry_after,
            body,
        } = received;
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(env) if (200..300).contains(&status) && env.code == Some(0) => Ok(Answer {
                data: env.data,
                request_id: env.request_id,
            }),
            Ok(env) => {
                let code = env.code.filter(|c| *c != 0);
                let message = env.message.unwrap_or_default();
                let message = if message.is_empty() && code.is_none() {
                    "response without a business code".to_owned()
                } else {
                    message
                };
                Err(Error::from_api(status, code, &message, env.request_id)
                    .with_retry_after(retry_after))
            }
            Err(e) if status >= 400 => Err(Error::from_api(status, None, &snippet(&body), None)
                .with_retry_after(retry_after)
                .with_source(e)),
            Err(e) => Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "cannot decode the response (HTTP {status}): {e}; {}",
                    snippet(&body)
                ),
            )
            .with_http_status(status)
            .with_source(e)),
        }
    }

    /// Sends `call` with signing, re-sign-once on 1003/1004, and retries per the policy.
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Answer> {
        let inner = &*self.inner;
        let mut attempts = 0u32;
        let mut retries = 0u32;
        let mut resigned = false;
        loop {
            attempts += 1;
            let (auth, generation) = inner.auth.authorization()?;
            let outcome = self.send(&call, auth).await;
            let err = match outcome {
                Ok(answer) => {
                    inner.budget.deposit();
                    return Ok(answer);
                }
                Err(e) => e.with_attempts(attempts),
            };
            let err = match call.task_id {
                Some(id) if err.task_id().is_none() => err.with_task_id(id),
                _ => err,
            };
            tracing::debug!(
                method = %call.method, path = %call.path, attempt = attempts,
                kind = err.kind().as_str(), code = ?err.kling_code(), status = ?err.http_status(),
                "kling request failed"
            );
            if matches!(err.kling_code(), Some(1003 | 1004))
                && !resigned
                && inner.auth.invalidate(generation)
            {
                resigned = true;
                continue;
            }
            if retries < inner.retry.max_retries && should_retry(&err, call.idempotency) {
                if inner.budget.try_withdraw() {
                    retries += 1;
                    let delay = inner.retry.delay(retries, &err);
                    tracing::debug!(
                        delay_ms = delay.as_millis() as u64,
                        retry = retries,
                        "retrying"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
                let mut err = err;
                let msg = format!("{} (retry budget exhausted)", err.message());
                err.set_message(msg);
                return Err(err);
            }
            return Err(err);
        }
    }

    /// Reads one task by id.
    pub async fn get_task(&self, kind: TaskKind, task_id: &str) -> Result<Task> {
        validate_task_id(task_id)?;
        let mut call = Call::get(format!("{}/{}", kind.path(), task_id));
        call.task_id = Some(task_id);
        let answer = self.execute(call).await?;
        answer.task(kind).map_err(|e| e.with_task_id(task_id))
    }

    /// Reads one image-generation task by id.
    pub async fn get_image_task(&self, task_id: &str) -> Result<Task> {
        self.get_task(TaskKind::ImageGeneration, task_id).await
    }

    /// Looks a task up by the caller's `external_task_id` (wire form per
    /// [`ExternalIdLookup`]).
    pub async fn get_task_by_external_id(
        &self,
        kind: TaskKind,
        external_task_id: &str,
    ) -> Result<Task> {
        validate_task_id(external_task_id)
            .map_err(|e| Error::invalid(e.message().replace("task id", "external_task_id")))?;
        let call = match self.inner.external_id_lookup {
            ExternalIdLookup::Path => Call::get(format!("{}/{}", kind.path(), external_task_id)),
            ExternalIdLookup::Query => {
                let mut c = Call::get(kind.path().to_owned());
                c.query
                    .push(("external_task_id", external_task_id.to_owned()));
                c
            }
        };
        let answer = self.execute(call).await?;
        // The path form answers one task, the query form a list of them.
        if answer.json_type() != "an array" {
            return answer.task(kind);
        }
        match answer.items()?.into_iter().next() {
            Some(raw) => Task::from_raw(kind, raw),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no task with external_task_id {external_task_id:?}"),
            )),
        }
    }

    /// One page of tasks, newest first. `page` in 1..=1000, `page_size` in 1..=500.
    pub async fn list_tasks(&self, kind: TaskKind, page: u32, page_size: u32) -> Result<Vec<Task>> {
        if !(1..=1000).contains(&page) {
            return Err(Error::invalid(format!(
                "page must be in 1..=1000, got {page}"
            )));
        }
        if !(1..=500).contains(&page_size) {
            return Err(Error::invalid(format!(
                "page_size must be in 1..=500, got {page_size}"
            )));
        }
        let mut call = Call::get(kind.path().to_owned());
        call.query.push(("pageNum", page.to_string()));
        call.query.push(("pageSize", page_size.to_string()));
        let answer = self.execute(call).await?;
        match answer.json_type() {
            "null" => Ok(Vec::new()),
            _ => answer
                .items()?
                .into_iter()
                .map(|raw| Task::from_raw(kind, raw))
                .collect(),
        }
    }

    /// Every task of `kind`, page by page (stops at the first short page, or page 1000).
    /// An error is yielded once and ends the stream.
    pub fn iter_tasks(
        &self,
        kind: TaskKind,
        page_size: u32,
    ) -> impl Stream<Item = Result<Task>> + Send + 'static {
        let client = self.clone();
        let state = (client, 1u32, false);
        futures::stream::unfold(state, move |(client, page, done)| async move {
            if done {
                return None;
            }
            match client.list_tasks(kind, page, page_size).await {
                Ok(tasks) => {
                    let last = (tasks.len() as u32) < page_size || page >= 1000;
                    Some((Ok(tasks), (client, page + 1, last)))
                }
                Err(e) => Some((Err(e), (client, page, true))),
            }
        })
        .flat_map(|page: Result<Vec<Task>>| match page {
            Ok(tasks) => futures::stream::iter(tasks.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => futures::stream::iter(vec![Err(e)]),
        })
    }
}

use futures::StreamExt as _;

/// A URL as it may be shown in an error: anything between `scheme://` and the last `@` of the
/// authority (a `user:password`) is replaced by `***`.
fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_owned(),
        };
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod request_target_tests {
    use super::*;

    /// What the URL parser makes of `path` and `query` on `base`: the rule the direct
    /// transport's verbatim join must match.
    fn by_url(client: &Client, call: &Call<'_>) -> String {
        let mut url = client.url(&call.path);
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    #[test]
    fn the_request_target_is_what_the_url_parser_makes() {
        let ids = [
            "861416123930365952",
            "CjhA-_x.y~z",
            "a!$&'()*+,;=:@b",
            "é中文",
            "a b",
            "a\"<>`{}|^b",
            ".hidden",
            "a.",
            "...x",
        ];
        let queries: [Vec<(&'static str, String)>; 3] = [
            vec![],
            vec![("pageNum", "1".into()), ("pageSize", "500".into())],
            vec![("external_task_id", "a b&c=d/é?#".into())],
        ];
        for base in [
            "https://api.example.com",
            "https://api.example.com/",
            "http://127.0.0.1:8080/kling/",
            "http://[::1]:9/a%20b/c d",
        ] {
            let client = Client::builder()
                .access_key("ak")
                .secret_key("sk")
                .base_url(base)
                .build()
                .unwrap();
            for id in ids {
                for query in &queries {
                    let mut call = Call::get(format!("/v1/images/generations/{id}"));
                    call.query = query.clone();
                    assert_eq!(
                        client.request_target(&call),
                        by_url(&client, &call),
                        "{base} {id:?} {query:?}"
                    );
                }
            }
        }
    }
}

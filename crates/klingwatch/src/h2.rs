//! The direct HTTP/2 transport of API calls over TLS: hyper's HTTP/2 client on one rustls
//! connection, without reqwest's per-request layers (URL re-parsing, header-map clones for
//! redirects and retries, the legacy pool's checkout). It carries every API call of a client
//! whose base URL is `https://` and whose requests do not go through a proxy; reqwest carries
//! the rest (plain HTTP, proxies, a server that does not offer HTTP/2, result downloads).
//!
//! One difference remains: reqwest follows redirects, this transport does not (a 3xx answer
//! is reported as the error it makes). The Kling API answers its calls directly; a redirect
//! of an authenticated API call to another origin would lose its `Authorization` header in
//! reqwest as well.
//!
//! Both transports trust the same roots (the platform's plus the client's extra CAs, through
//! rustls-platform-verifier, as reqwest does), send the same headers and produce the same
//! [`Received`] or the same error kinds, so the one request path in `client.rs` parses and
//! classifies their answers alike. Measured against the reqwest path on the TLS emulator (20,000
//! status queries at concurrency 64, 2 cores): ~40 % less client CPU per query
//! (docs/benchmarks.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use reqwest::Method;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

use crate::client::POOL_IDLE;
use crate::error::{Error, ErrorKind, Result};
use crate::retry::parse_retry_after;

/// An HTTP answer as both transports hand it to the request path.
pub(crate) struct Received {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// The `Retry-After` of an answer, as both transports read it.
pub(crate) fn retry_after_of(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The error of an answer whose body exceeds the client's `cap`.
pub(crate) fn body_too_large(cap: usize, status: u16) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("response body larger than the {cap}-byte limit"),
    )
    .with_http_status(status)
}

/// A request (or the opening of its connection) that outlasted its deadline.
pub(crate) fn timed_out() -> Error {
    Error::new(ErrorKind::Timeout, "request timed out").with_retryable(true)
}

/// How often an idle-looking connection with requests in flight is pinged, and how long a
/// ping may go unanswered before the connection counts as dead (its requests fail as
/// connection errors and the next call opens a new one).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Immediate re-sends of a request the server refused without processing it (HTTP/2
/// REFUSED_STREAM, or a graceful GOAWAY), as reqwest does for its protocol NACKs.
const NACK_RESENDS: u32 = 2;

type Sender = SendRequest<Full<Bytes>>;

pub(crate) struct DirectH2 {
    host: String,
    /// `https://host:port`: what the TCP connector dials (hyper-util's, as reqwest's: every
    /// resolved address in turn, IPv6 and IPv4 raced after 300 ms, TCP_NODELAY).
    target: http::Uri,
    connector: HttpConnector,
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    user_agent: HeaderValue,
    /// The open connection, if any (a clone is a handle onto it).
    current: Mutex<Option<Sender>>,
    /// When a call last took the connection (ms since `epoch`): one idle for longer than
    /// reqwest's pool keeps them is closed and a new one opened (a NAT or load balancer may
    /// have dropped it silently).
    epoch: Instant,
    last_used: AtomicU64,
    /// One opening at a time; callers that waited on a failed opening fail with it.
    opening: tokio::sync::Mutex<()>,
    failed_openings: AtomicU64,
    last_failure: Mutex<(ErrorKind, String)>,
    /// Set when the server did not choose HTTP/2: every call then goes through reqwest.
    unavailable: AtomicBool,
}

impl DirectH2 {
    /// The transport for `base` (an `https://` URL), or `None` when reqwest must carry the
    /// calls: plain HTTP, or a proxy configured in the environment (reqwest applies the
    /// proxy variables, `NO_PROXY` included).
    pub(crate) fn for_base(
        base: &url::Url,
        extra_ca_pem: &[Vec<u8>],
        connect_timeout: Duration,
        user_agent: &str,
    ) -> Result<Option<DirectH2>> {
        if base.scheme() != "https" || proxied(base) {
            return Ok(None);
        }
        let Some(host) = base.host_str() else {
            return Ok(None);
        };
        let port = base.port_or_known_default().unwrap_or(443);
        let target: http::Uri = format!("https://{host}:{port}")
            .parse()
            .map_err(|e| Error::config(format!("invalid base URL host: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // `host_str` keeps an IPv6 literal's brackets; the name to verify goes without them.
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| Error::config(format!("invalid host name {name:?}: {e}")))?;
        let mut extra = Vec::new();
        for pem in extra_ca_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    Error::config(format!("the CA certificate is not valid PEM: {e}"))
                })?;
                extra.push(cert);
            }
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let verifier = if extra.is_empty() {
            rustls_platform_verifier::Verifier::new(provider.clone())
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        }
        .map_err(|e| Error::config(format!("cannot set up TLS verification: {e}")))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| Error::config("the user agent is not a valid header value"))?;
        Ok(Some(DirectH2 {
            host: name,
            target,
            connector,
            server_name,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            connect_timeout,
            user_agent,
            current: Mutex::new(None),
            epoch: Instant::now(),
            last_used: AtomicU64::new(0),
            opening: tokio::sync::Mutex::new(()),
            failed_openings: AtomicU64::new(0),
            last_failure: Mutex::new((ErrorKind::Connection, String::new())),
            unavailable: AtomicBool::new(false),
        }))
    }

    /// False once the server turned HTTP/2 down (the caller then uses reqwest).
    pub(crate) fn available(&self) -> bool {
        !self.unavailable.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The open connection, unless it closed or sat idle too long (then it is let go).
    fn live(&self) -> Option<Sender> {
        let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now_ms();
        let idle = now.saturating_sub(self.last_used.load(Ordering::Relaxed));
        if g.as_ref().is_some_and(|s| s.is_closed()) || idle > POOL_IDLE.as_millis() as u64 {
            *g = None;
        }
        let s = g.as_ref().cloned();
        if s.is_some() {
            self.last_used.store(now, Ordering::Relaxed);
        }
        s
    }

    /// A handle onto the open connection, opening one if needed. `Ok(None)`: the server does
    /// not speak HTTP/2 (use reqwest).
    async fn sender(&self) -> Result<Option<Sender>> {
        if let Some(s) = self.live() {
            return Ok(Some(s));
        }
        let failures_before = self.failed_openings.load(Ordering::Acquire);
        let _opening = self.opening.lock().await;
        if let Some(s) = self.live() {
            return Ok(Some(s));
        }
        if !self.available() {
            return Ok(None);
        }
        if self.failed_openings.load(Ordering::Acquire) != failures_before {
            // The opening this caller queued behind failed: fail with it rather than try
            // again in series (an unreachable host fails a burst in parallel).
            let (kind, msg) = self
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(Error::new(kind, msg).with_retryable(true));
        }
        match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(Ok(Some(s))) => {
                self.last_used.store(self.now_ms(), Ordering::Relaxed);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                Ok(Some(s))
            }
            Ok(Ok(None)) => {
                self.unavailable.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Ok(Err(e)) => Err(self.opening_failed(e)),
            Err(_) => Err(self.opening_failed(
                Error::new(
                    ErrorKind::Connection,
                    "connection failed: connect timed out",
                )
                .with_retryable(true),
            )),
        }
    }

    fn opening_failed(&self, e: Error) -> Error {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            (e.kind(), e.message().to_owned());
        self.failed_openings.fetch_add(1, Ordering::Release);
        e
    }

    /// TCP, TLS (ALPN), then the HTTP/2 handshake; the connection runs on its own task.
    async fn open(&self) -> Result<Option<Sender>> {
        let mut connector = self.connector.clone();
        let tcp = tower_service::Service::call(&mut connector, self.target.clone())
            .await
            .map_err(connect_error)?
            .into_inner();
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(connect_error)?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            tracing::debug!(host = %self.host, "the server did not choose HTTP/2; using reqwest");
            return Ok(None);
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(connect_error)?;
        let host = self.host.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%host, error = %e, "HTTP/2 connection ended");
            }
        });
        Ok(Some(sender))
    }

    /// Sends one request and reads its answer within `timeout`. `Ok(None)`: HTTP/2 is not
    /// available from this server; send it with reqwest instead.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send(
        &self,
        method: &Method,
        url: &url::Url,
        auth: &HeaderValue,
        body: Option<&Bytes>,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<Option<Received>> {
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|e| Error::config(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let mut resends = 0;
            loop {
                let Some(mut sender) = self.sender().await? else {
                    return Ok(None);
                };
                let mut req = http::Request::builder()
                    .method(method.clone())
                    .uri(uri.clone())
                    .header(AUTHORIZATION, auth.clone())
                    .header(USER_AGENT, self.user_agent.clone())
                    .header(ACCEPT, HeaderValue::from_static("*/*"));
                if body.is_some() {
                    req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                let req = req
                    .body(Full::new(body.cloned().unwrap_or_default()))
                    .map_err(|e| Error::config(format!("cannot build the request: {e}")))?;
                match sender.send_request(req).await {
                    Ok(resp) => return read(resp, max_body_bytes).await.map(Some),
                    Err(e) if resends < NACK_RESENDS && not_processed(&e) => {
                        resends += 1;
                        tracing::debug!(error = %e, "request refused unprocessed; sending again");
                        continue;
                    }
                    Err(e) => return Err(request_error(e)),
                }
            }
        };
        // Boxed: the exchange's state is large, and moving it into the timeout (and the
        // timeout into the caller's future) costs more than one allocation.
        match tokio::time::timeout(timeout, Box::pin(exchange)).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    }
}

/// The answer's status, `Retry-After` and body (at most `cap` bytes).
async fn read(resp: http::Response<hyper::body::Incoming>, cap: usize) -> Result<Received> {
    let status = resp.status().as_u16();
    let retry_after = retry_after_of(resp.headers());
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(body_too_large(cap, status));
    }
    let mut incoming = resp.into_body();
    // A body in one DATA frame (the usual case) is kept as it is; more are gathered.
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| request_error(e).with_http_status(status))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len();
        if len > cap {
            return Err(body_too_large(cap, status));
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(declared.map_or(f.len() * 2, |n| n as usize));
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                more = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&data),
        }
    }
    let body = match (first, more) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    };
    Ok(Received {
        status,
        retry_after,
        body,
    })
}

/// Whether reqwest would send requests to `base` through a proxy: the matcher its
/// `system-proxy` feature uses (the proxy variables, `NO_PROXY` included, and the operating
/// system's proxy settings where there are any).
fn proxied(base: &url::Url) -> bool {
    match base.as_str().parse::<http::Uri>() {
        Ok(uri) => Matcher::from_system().intercept(&uri).is_some(),
        Err(_) => true,
    }
}

/// The innermost cause's message: the detail of a transport error, with either transport.
pub(crate) fn detail(e: &(dyn std::error::Error + 'static)) -> String {
    let mut detail = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    detail
}

/// A failure to open the connection; a connect timeout is a `timeout`, as reqwest reports it.
fn connect_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = src {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return timed_out().with_source(e);
        }
        src = s.source();
    }
    Error::new(
        ErrorKind::Connection,
        format!("connection failed: {}", detail(&e)),
    )
    .with_retryable(true)
    .with_source(e)
}

fn request_error(e: hyper::Error) -> Error {
    Error::new(
        ErrorKind::Connection,
        format!("connection error: {}", detail(&e)),
    )
    .with_retryable(true)
    .with_source(e)
}

/// A request the server did not process: never sent (the connection was already gone), refused
/// (REFUSED_STREAM), or cut by a graceful GOAWAY. Safe to send again, even a create.
fn not_processed(e: &hyper::Error) -> bool {
    if e.is_canceled() {
        return true;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h2e) = s.downcast_ref::<h2::Error>() {
            return h2e.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2e.is_go_away()
                    && h2e.is_remote()
                    && h2e.reason() == Some(h2::Reason::NO_ERROR));
        }
        src = s.source();
    }
    false
}

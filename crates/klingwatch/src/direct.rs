//! The direct transport of API calls: the `h2` crate's HTTP/2 client on one rustls
//! connection, or hyper's HTTP/1.1 client on a pool of connections (plain HTTP, or a TLS
//! server that does not offer HTTP/2), without reqwest's per-request layers (URL re-parsing,
//! header-map clones for redirects and retries, the legacy pool's checkout and client clones).
//! HTTP/2 goes to `h2` directly (the crate hyper's own HTTP/2 is built on): hyper's layer
//! sends each request through a channel to the connection's task and spawns a task per
//! request to await its answer; here the calling task opens the stream and awaits it.
//!
//! It carries every API call whose requests do not go through a proxy; reqwest carries
//! proxied calls and result downloads.
//!
//! One difference remains: reqwest follows redirects, this transport does not (a 3xx answer
//! is reported as the error it makes). The Kling API answers its calls directly; a redirect
//! of an authenticated API call to another origin would lose its `Authorization` header in
//! reqwest as well.
//!
//! Both transports trust the same roots (the platform's plus the client's extra CAs, through
//! rustls-platform-verifier, as reqwest does), send the same headers and produce the same
//! [`Received`] or the same error kinds, so the one request path in `client.rs` parses and
//! classifies their answers alike. Measured against the reqwest path (20,000 status queries at
//! concurrency 64, 2 cores): ~40 % less client CPU per query over HTTP/2 on the TLS emulator,
//! and less over HTTP/1.1 as well (docs/benchmarks.md).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT,
};
use reqwest::Method;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

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

/// How often an HTTP/2 connection is pinged (`interval`), and how long a ping may go
/// unanswered (`timeout`) before the connection counts as dead: its requests fail as
/// connection errors and the next call opens a new one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeepAlive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(10),
        }
    }
}
/// Immediate re-sends of a request the server refused without processing it (HTTP/2
/// REFUSED_STREAM, or a graceful GOAWAY), as reqwest does for its protocol NACKs.
const NACK_RESENDS: u32 = 2;

/// HTTP/2 flow-control windows, hyper's client defaults: a large list page is not held up
/// waiting for window updates.
const H2_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

type H1Sender = http1::SendRequest<Full<Bytes>>;

/// A handle onto the HTTP/2 connection (clones share it). `closed` is set when the connection
/// ended, or refused a new stream (a GOAWAY, a broken connection): calls then open another.
#[derive(Clone)]
struct H2Sender {
    send: h2::client::SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl H2Sender {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A connection handle: HTTP/2 (shared by every call) or HTTP/1.1 (one call at a time; `true`
/// when it was taken from the pool rather than just opened).
enum Conn {
    H2(H2Sender),
    H1(H1Sender, bool),
}

/// The transport's connections. A reaper task (`reaping` while it runs) closes those idle for
/// longer than `idle_for` (reqwest's pool does the same): a socket is not held open for a
/// server that never closes it.
struct Pool {
    epoch: Instant,
    /// Milliseconds an idle connection is kept.
    idle_for: u64,
    /// The open HTTP/2 connection, if any (a clone is a handle onto it).
    current: Mutex<Option<H2Sender>>,
    /// When a call last took the HTTP/2 connection (ms since `epoch`): a connection idle for
    /// longer than `idle_for` is closed and a new one opened (a NAT or load balancer may have
    /// dropped it silently).
    last_used: AtomicU64,
    /// Idle HTTP/1.1 connections, the most recently used last, each with when it was checked
    /// in (ms since `epoch`).
    idle: Mutex<Vec<(H1Sender, u64)>>,
    reaping: AtomicBool,
}

impl Pool {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Starts the reaper unless one runs (needs a tokio runtime: called from a request).
    fn reap(self: &Arc<Pool>) {
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap_idle(Arc::downgrade(self)));
        }
    }

    /// Closes what sat idle too long; true while anything is left to watch.
    fn reap_once(&self) -> bool {
        let now = self.now_ms();
        let oldest_kept = now.saturating_sub(self.idle_for);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(s, at)| *at >= oldest_kept && !s.is_closed());
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let h2_idle = now.saturating_sub(self.last_used.load(Ordering::Relaxed));
        if current
            .as_ref()
            .is_some_and(|s| s.is_closed() || h2_idle > self.idle_for)
        {
            *current = None;
        }
        let left = !idle.is_empty() || current.is_some();
        if !left {
            // Cleared under the locks: a connection kept after this starts a new reaper.
            self.reaping.store(false, Ordering::Release);
        }
        left
    }
}

/// TCP keepalive of every connection, as reqwest sets it: an idle connection a NAT or load
/// balancer dropped silently is found dead by the kernel, not by the next call's timeout.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// What the server speaks, once known.
const PROTO_UNKNOWN: u8 = 0;
const PROTO_H2: u8 = 1;
const PROTO_H1: u8 = 2;

pub(crate) struct Direct {
    host: String,
    /// `scheme://host:port`: what the TCP connector dials (hyper-util's, as reqwest's: every
    /// resolved address in turn, IPv6 and IPv4 raced after 300 ms, TCP_NODELAY).
    target: http::Uri,
    /// The `Host` header of HTTP/1.1 requests (HTTP/2 sends the URI's authority).
    host_header: HeaderValue,
    /// The scheme and authority of HTTP/2 requests' URIs (the base URL's, as it was given:
    /// the port only when the URL names one).
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    connector: HttpConnector,
    /// TLS for an `https://` base URL (ALPN `h2`, `http/1.1`); `None` for plain HTTP.
    tls: Option<(ServerName<'static>, tokio_rustls::TlsConnector)>,
    connect_timeout: Duration,
    keep_alive: KeepAlive,
    user_agent: HeaderValue,
    /// `PROTO_*`: plain HTTP is HTTP/1.1 from the start; over TLS the first connection's ALPN
    /// decides.
    proto: AtomicU8,
    pool: Arc<Pool>,
    /// One HTTP/2 opening at a time; callers that waited on a failed opening fail with it.
    opening: tokio::sync::Mutex<()>,
    failed_openings: AtomicU64,
    last_failure: Mutex<(ErrorKind, String)>,
}

impl Direct {
    /// The transport for `base`, or `None` when reqwest must carry the calls: a proxy
    /// configured in the environment or the system (reqwest applies it, `NO_PROXY` included).
    pub(crate) fn for_base(
        base: &url::Url,
        extra_ca_pem: &[Vec<u8>],
        connect_timeout: Duration,
        pool_idle: Duration,
        keep_alive: KeepAlive,
        user_agent: &str,
    ) -> Result<Option<Direct>> {
        let https = match base.scheme() {
            "https" => true,
            "http" => false,
            _ => return Ok(None),
        };
        if proxied(base) {
            return Ok(None);
        }
        let Some(host) = base.host_str() else {
            return Ok(None);
        };
        let port = base
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        let target: http::Uri = format!("{}://{host}:{port}", base.scheme())
            .parse()
            .map_err(|e| Error::config(format!("invalid base URL host: {e}")))?;
        let authority = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let host_header = HeaderValue::from_str(&authority)
            .map_err(|_| Error::config("the base URL's host is not a valid header value"))?;
        let scheme = if https {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let authority = http::uri::Authority::try_from(authority)
            .map_err(|e| Error::config(format!("invalid base URL host: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        connector.set_keepalive_interval(Some(TCP_KEEPALIVE));
        connector.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        // `host_str` keeps an IPv6 literal's brackets; the name to verify goes without them.
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = if https {
            Some(tls_connector(&name, extra_ca_pem)?)
        } else {
            None
        };
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| Error::config("the user agent is not a valid header value"))?;
        Ok(Some(Direct {
            host: name,
            target,
            host_header,
            scheme,
            authority,
            connector,
            tls,
            connect_timeout,
            keep_alive,
            user_agent,
            proto: AtomicU8::new(if https { PROTO_UNKNOWN } else { PROTO_H1 }),
            pool: Arc::new(Pool {
                epoch: Instant::now(),
                idle_for: pool_idle.as_millis() as u64,
                current: Mutex::new(None),
                last_used: AtomicU64::new(0),
                idle: Mutex::new(Vec::new()),
                reaping: AtomicBool::new(false),
            }),
            opening: tokio::sync::Mutex::new(()),
            failed_openings: AtomicU64::new(0),
            last_failure: Mutex::new((ErrorKind::Connection, String::new())),
        }))
    }

    /// The open HTTP/2 connection, unless it closed or sat idle too long (then it is let go).
    fn live(&self) -> Option<H2Sender> {
        let pool = &*self.pool;
        let mut g = pool.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = pool.now_ms();
        let idle = now.saturating_sub(pool.last_used.load(Ordering::Relaxed));
        if g.as_ref().is_some_and(|s| s.is_closed()) || idle > pool.idle_for {
            *g = None;
        }
        let s = g.as_ref().cloned();
        if s.is_some() {
            pool.last_used.store(now, Ordering::Relaxed);
        }
        s
    }

    /// A connection for one request: the HTTP/2 connection (opened by one caller at a time),
    /// or an idle HTTP/1.1 connection, or a new one.
    async fn checkout(&self) -> Result<Conn> {
        loop {
            if self.proto.load(Ordering::Relaxed) == PROTO_H1 {
                if let Some(s) = self.idle_h1().await {
                    return Ok(Conn::H1(s, true));
                }
                // Every idle connection is busy: open one more, as reqwest's pool does.
                return match self.open_in_time().await? {
                    // The server offers HTTP/2 again: every call shares this connection now.
                    Conn::H2(s) => Ok(Conn::H2(self.adopt_h2(s))),
                    conn => Ok(conn),
                };
            }
            if let Some(s) = self.live() {
                return Ok(Conn::H2(s));
            }
            let failures_before = self.failed_openings.load(Ordering::Acquire);
            let _opening = self.opening.lock().await;
            if self.proto.load(Ordering::Relaxed) == PROTO_H1 {
                continue; // the opening this caller waited for found an HTTP/1.1 server
            }
            if let Some(s) = self.live() {
                return Ok(Conn::H2(s));
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
            return match self.open_in_time().await {
                Ok(Conn::H2(s)) => Ok(Conn::H2(self.adopt_h2(s))),
                Ok(conn) => Ok(conn),
                Err(e) => Err(self.opening_failed(e)),
            };
        }
    }

    /// Makes `s` the HTTP/2 connection every call shares.
    fn adopt_h2(&self, s: H2Sender) -> H2Sender {
        let pool = &self.pool;
        pool.last_used.store(pool.now_ms(), Ordering::Relaxed);
        *pool.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        self.proto.store(PROTO_H2, Ordering::Relaxed);
        pool.reap();
        s
    }

    /// The most recently used idle HTTP/1.1 connection that is still open and ready; closed
    /// ones and ones idle longer than the pool keeps them are dropped on the way.
    async fn idle_h1(&self) -> Option<H1Sender> {
        loop {
            let (mut s, _) = {
                let pool = &*self.pool;
                let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                // Checked in oldest first: the expired ones are at the front.
                let oldest_kept = pool.now_ms().saturating_sub(pool.idle_for);
                let expired = idle.iter().take_while(|(_, at)| *at < oldest_kept).count();
                idle.drain(..expired);
                idle.pop()?
            };
            if !s.is_closed() && s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    /// Puts an HTTP/1.1 connection whose answer was read in full back in the pool, and starts
    /// the reaper if none runs.
    fn checkin(&self, s: H1Sender) {
        if s.is_closed() {
            return;
        }
        let pool = &self.pool;
        let now = pool.now_ms();
        pool.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((s, now));
        pool.reap();
    }

    fn opening_failed(&self, e: Error) -> Error {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            (e.kind(), e.message().to_owned());
        self.failed_openings.fetch_add(1, Ordering::Release);
        e
    }

    /// [`Direct::open`] within the connect timeout. Boxed: unboxed, the opening's state (the
    /// TCP connector's, the TLS handshake's) is part of every request's exchange future, which
    /// `send` allocates per request (4,520 bytes; 1,448 with the opening boxed), though a
    /// request opens a connection once in thousands.
    async fn open_in_time(&self) -> Result<Conn> {
        tokio::time::timeout(self.connect_timeout, Box::pin(self.open()))
            .await
            .unwrap_or_else(|_| Err(connect_timed_out()))
    }

    /// TCP, TLS (ALPN) where the base URL is `https://`, then the HTTP/2 or HTTP/1.1
    /// handshake; the connection runs on its own task.
    async fn open(&self) -> Result<Conn> {
        let mut connector = self.connector.clone();
        let tcp = tower_service::Service::call(&mut connector, self.target.clone())
            .await
            .map_err(connect_error)?
            .into_inner();
        let Some((server_name, tls)) = &self.tls else {
            return self.handshake_h1(tcp).await;
        };
        let tls = tls
            .connect(server_name.clone(), tcp)
            .await
            .map_err(connect_error)?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            if self.proto.swap(PROTO_H1, Ordering::Relaxed) != PROTO_H1 {
                tracing::debug!(host = %self.host, "the server did not choose HTTP/2; using HTTP/1.1");
            }
            return self.handshake_h1(tls).await;
        }
        let (send, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(connect_error)?;
        let sender = H2Sender {
            send,
            closed: Arc::new(AtomicBool::new(false)),
        };
        let ping_pong = connection.ping_pong();
        // Not a handle: the connection ends once the pool and the calls let theirs go.
        let closed = sender.closed.clone();
        let host = self.host.clone();
        let every = self.keep_alive;
        tokio::spawn(async move {
            tokio::select! {
                r = connection => {
                    if let Err(e) = r {
                        tracing::debug!(%host, error = %e, "HTTP/2 connection ended");
                    }
                }
                _ = keep_alive(ping_pong, every) => {
                    tracing::debug!(%host, "HTTP/2 ping unanswered; closing the connection");
                }
            }
            // Dropping the connection fails the streams still open on it.
            closed.store(true, Ordering::Release);
        });
        Ok(Conn::H2(sender))
    }

    async fn handshake_h1<T>(&self, io: T) -> Result<Conn>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(connect_error)?;
        self.run_connection(connection, "HTTP/1.1");
        Ok(Conn::H1(sender, false))
    }

    /// Drives a connection on its own task until it closes.
    fn run_connection<C>(&self, connection: C, protocol: &'static str)
    where
        C: std::future::Future<Output = std::result::Result<(), hyper::Error>> + Send + 'static,
    {
        let host = self.host.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%host, error = %e, "{protocol} connection ended");
            }
        });
    }

    /// One exchange on the HTTP/2 connection: the stream opened by the calling task (waiting
    /// while the server's stream limit is reached), the body sent, the answer read.
    async fn send_h2(
        &self,
        s: H2Sender,
        req: http::Request<()>,
        body: Option<&Bytes>,
        max_body_bytes: usize,
    ) -> std::result::Result<Received, Sent> {
        let refused = |e: h2::Error| {
            // The connection takes no new stream (GOAWAY, broken): the next call opens one.
            s.close();
            Sent::Refused(e)
        };
        let mut send = s.send.clone().ready().await.map_err(refused)?;
        let body = body.filter(|b| !b.is_empty());
        let (answer, mut stream) = send.send_request(req, body.is_none()).map_err(refused)?;
        if let Some(b) = body {
            // Queued whatever the window: h2 sends it as the server grants capacity. A server
            // may answer before reading the body and reset the stream with NO_ERROR (RFC 9113
            // section 8.1): the stream is then closed here, yet its answer stands, so a failure
            // to send is not the exchange's outcome; the answer (or its error) below is.
            if let Err(e) = stream.send_data(b.clone(), true) {
                tracing::trace!(error = %e, "request body not sent; reading the answer");
            }
        }
        let resp = answer.await.map_err(|e| {
            if e.is_go_away() || e.is_io() {
                s.close();
            }
            if not_processed_h2(&e) {
                Sent::Refused(e)
            } else {
                Sent::Failed(request_error(e))
            }
        })?;
        read(resp.map(Incoming::H2), max_body_bytes)
            .await
            .map_err(Sent::Failed)
    }

    /// Sends one request to `target` (path and query, already encoded) and reads its answer
    /// within `timeout`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send(
        &self,
        method: &Method,
        target: String,
        auth: &HeaderValue,
        body: Option<&Bytes>,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<Received> {
        let path_and_query = http::uri::PathAndQuery::try_from(target)
            .map_err(|e| Error::config(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let mut resends = 0;
            loop {
                let conn = self.checkout().await?;
                let uri = match &conn {
                    Conn::H2(_) => {
                        let mut parts = http::uri::Parts::default();
                        parts.scheme = Some(self.scheme.clone());
                        parts.authority = Some(self.authority.clone());
                        parts.path_and_query = Some(path_and_query.clone());
                        http::Uri::from_parts(parts)
                            .map_err(|e| Error::config(format!("cannot build the request: {e}")))?
                    }
                    // HTTP/1.1 without a proxy: the request target in origin form.
                    Conn::H1(..) => http::Uri::from(path_and_query.clone()),
                };
                let mut req = http::Request::new(());
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri;
                let headers = req.headers_mut();
                headers.reserve(5);
                if let Conn::H1(..) = conn {
                    // HTTP/2 sends the URI's authority instead.
                    headers.insert(HOST, self.host_header.clone());
                }
                headers.insert(AUTHORIZATION, auth.clone());
                headers.insert(USER_AGENT, self.user_agent.clone());
                headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
                if body.is_some() {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                let (mut s, reused) = match conn {
                    Conn::H2(s) => match self.send_h2(s, req, body, max_body_bytes).await {
                        Ok(received) => return Ok(received),
                        Err(Sent::Refused(e)) if resends < NACK_RESENDS => {
                            resends += 1;
                            tracing::debug!(error = %e, "request refused unprocessed; sending again");
                            continue;
                        }
                        Err(Sent::Refused(e)) => return Err(request_error(e)),
                        Err(Sent::Failed(e)) => return Err(e),
                    },
                    Conn::H1(s, reused) => (s, reused),
                };
                let req = req.map(|()| Full::new(body.cloned().unwrap_or_default()));
                match s.send_request(req).await {
                    Ok(resp) => {
                        let received = read(resp.map(Incoming::H1), max_body_bytes).await?;
                        // Read in full: the HTTP/1.1 connection can carry the next call.
                        self.checkin(s);
                        return Ok(received);
                    }
                    // A pooled HTTP/1.1 connection that closed before the request was written
                    // (it was never sent): try the next one, as hyper-util's pool does, without
                    // counting it (the exchange's timeout still bounds the loop).
                    Err(e) if reused && e.is_canceled() => {
                        tracing::debug!(error = %e, "pooled connection closed; sending on another");
                        continue;
                    }
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

/// The reaper of a [`Pool`]: every `idle_for`, closes the connections idle for longer; ends
/// when nothing is left to watch or the transport is gone.
async fn reap_idle(pool: std::sync::Weak<Pool>) {
    /// Clears `reaping` if the task is torn down with its runtime (`armed`).
    struct Done {
        pool: std::sync::Weak<Pool>,
        armed: bool,
    }
    impl Drop for Done {
        fn drop(&mut self) {
            if let (true, Some(p)) = (self.armed, self.pool.upgrade()) {
                p.reaping.store(false, Ordering::Release);
            }
        }
    }
    let Some(every) = pool
        .upgrade()
        .map(|p| Duration::from_millis(p.idle_for.max(10)))
    else {
        return;
    };
    let mut done = Done {
        pool: pool.clone(),
        armed: true,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else {
            return;
        };
        if !p.reap_once() {
            // `reaping` was cleared under the pool's locks; another reaper may run already.
            done.armed = false;
            return;
        }
    }
}

/// How an HTTP/2 exchange did not produce an answer.
enum Sent {
    /// The server did not process the request (the stream was never opened, refused, or cut
    /// by a graceful GOAWAY): safe to send again, even a create.
    Refused(h2::Error),
    Failed(Error),
}

/// Keeps pinging an HTTP/2 connection; returns when a ping goes unanswered (or cannot be
/// sent), which ends the connection's task and so the connection.
async fn keep_alive(ping_pong: Option<h2::PingPong>, every: KeepAlive) {
    let Some(mut ping_pong) = ping_pong else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every.interval).await;
        match tokio::time::timeout(every.timeout, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            _ => return,
        }
    }
}

/// An answer's body, from either protocol.
enum Incoming {
    H1(hyper::body::Incoming),
    H2(h2::RecvStream),
}

impl Incoming {
    /// The next piece of the body; HTTP/2 flow-control capacity is given back as it is read.
    async fn data(&mut self) -> Option<Result<Bytes>> {
        match self {
            Incoming::H1(b) => loop {
                match b.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => return Some(Ok(data)),
                        Err(_) => continue, // trailers
                    },
                    Err(e) => return Some(Err(request_error(e))),
                }
            },
            Incoming::H2(b) => match b.data().await? {
                Ok(data) => {
                    let _ = b.flow_control().release_capacity(data.len());
                    Some(Ok(data))
                }
                Err(e) => Some(Err(request_error(e))),
            },
        }
    }
}

/// The answer's status, `Retry-After` and body (at most `cap` bytes).
async fn read(resp: http::Response<Incoming>, cap: usize) -> Result<Received> {
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
    while let Some(data) = incoming.data().await {
        let data = data.map_err(|e| e.with_http_status(status))?;
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

/// The TLS side of a connection to `name`: the platform's roots plus `extra_ca_pem` (as
/// reqwest trusts), ALPN `h2` then `http/1.1`.
fn tls_connector(
    name: &str,
    extra_ca_pem: &[Vec<u8>],
) -> Result<(ServerName<'static>, tokio_rustls::TlsConnector)> {
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| Error::config(format!("invalid host name {name:?}: {e}")))?;
    let mut extra = Vec::new();
    for pem in extra_ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert
                .map_err(|e| Error::config(format!("the CA certificate is not valid PEM: {e}")))?;
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
    Ok((
        server_name,
        tokio_rustls::TlsConnector::from(Arc::new(config)),
    ))
}

/// An opening that outlasted the connect timeout.
fn connect_timed_out() -> Error {
    Error::new(
        ErrorKind::Connection,
        "connection failed: connect timed out",
    )
    .with_retryable(true)
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

fn request_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
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
            return not_processed_h2(h2e);
        }
        src = s.source();
    }
    false
}

/// An HTTP/2 stream the server refused (REFUSED_STREAM) or cut by a graceful GOAWAY.
fn not_processed_h2(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR))
}

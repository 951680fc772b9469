//! The server: binding, the accept loop (plain HTTP or TLS, HTTP/1.1 and HTTP/2), graceful
//! shutdown, and a blocking wrapper that owns its own tokio runtime.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::config::MockConfig;
use crate::routes;
use crate::tls;

/// A running emulator on the current tokio runtime.
pub struct MockServer {
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    cancel: CancellationToken,
    done: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("url", &self.url)
            .finish()
    }
}

fn url_host(host: &str, ip: IpAddr, tls: bool) -> String {
    if tls && (ip.is_loopback() || ip.is_unspecified()) {
        return "localhost".to_string();
    }
    if ip.is_unspecified() {
        return if ip.is_ipv4() {
            "127.0.0.1".into()
        } else {
            "[::1]".into()
        };
    }
    if host.parse::<IpAddr>().is_err() && !host.is_empty() {
        return host.to_string(); // a DNS name as given
    }
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl MockServer {
    /// Bind, spawn the server on the current tokio runtime and return once it is listening.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        let host = config
            .host
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let listener = TcpListener::bind((host.as_str(), config.port)).await?;
        let addr = listener.local_addr()?;
        let scheme = if config.tls { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}:{}",
            url_host(&host, addr.ip(), config.tls),
            addr.port()
        );

        if !config.tls && config.ca_pem_path.is_some() {
            tracing::warn!("a CA output path is set but TLS is off: no CA is written");
        }
        let tls = if config.tls {
            Some(tls::generate(&host, config.http1_only)?)
        } else {
            None
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        if let (Some(pem), Some(path)) = (&ca_pem, &config.ca_pem_path) {
            std::fs::write(path, pem)?;
        }
        let acceptor = tls.map(|t| t.acceptor);

        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared::new(&config, url.clone(), cancel.clone()));
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            shared,
            cancel.clone(),
            done_tx,
        ));
        tracing::info!(%url, tls = config.tls, "klingwatch-mock started");
        Ok(MockServer {
            addr,
            url,
            ca_pem,
            cancel,
            done: Some(done_rx),
        })
    }

    /// Start on a dedicated runtime thread, for non-async callers.
    pub fn start_blocking(config: MockConfig) -> io::Result<BlockingMockServer> {
        BlockingMockServer::start(config)
    }

    /// Base URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA certificate a client must trust (TLS mode only).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish (up to 2 s).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    done: oneshot::Sender<()>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let watcher = graceful.watcher();
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            /// Counts the connection as open (and as an API connection once it carried an
            /// API request) until this task ends (closed, or torn down).
            struct Open(Arc<Shared>, Arc<AtomicBool>);
            impl Drop for Open {
                fn drop(&mut self) {
                    self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
                    if self.1.load(Ordering::Relaxed) {
                        self.0.open_api_connections.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            shared.open_connections.fetch_add(1, Ordering::Relaxed);
            let api = Arc::new(AtomicBool::new(false));
            let _open = Open(shared.clone(), api.clone());
            match acceptor {
                None => serve(stream, shared, api, watcher).await,
                Some(acceptor) => {
                    let tls =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    match tls {
                        Ok(Ok(s)) => serve(s, shared, api, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
    }
    tracing::info!("klingwatch-mock stopped");
    let _ = done.send(());
}

async fn serve<S>(
    io: S,
    shared: Arc<Shared>,
    api: Arc<AtomicBool>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        if !api.load(Ordering::Relaxed) && !req.uri().path().starts_with("/__mock") {
            api.store(true, Ordering::Relaxed);
            shared.open_api_connections.fetch_add(1, Ordering::Relaxed);
            shared.api_connections.fetch_add(1, Ordering::Relaxed);
        }
        routes::handle(shared.clone(), req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// A running emulator with its own runtime thread, for synchronous callers.
pub struct BlockingMockServer {
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for BlockingMockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingMockServer")
            .field("url", &self.url)
            .finish()
    }
}

impl BlockingMockServer {
    /// Start the emulator on a new thread that owns a 2-worker tokio runtime.
    pub fn start(config: MockConfig) -> io::Result<BlockingMockServer> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("klingwatch-mock".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("klingwatch-mock-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match MockServer::start(config).await {
                        Ok(server) => {
                            let _ =
                                ready_tx.send(Ok((server.addr(), server.url(), server.ca_pem())));
                            let _ = stop_rx.await;
                            server.stop().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok((addr, url, ca_pem))) => Ok(BlockingMockServer {
                addr,
                url,
                ca_pem,
                stop_tx: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "klingwatch-mock thread exited before starting",
                ))
            }
        }
    }

    /// Base URL (see [`MockServer::url`]).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA certificate a client must trust (TLS mode only).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Stop the server and join its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BlockingMockServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

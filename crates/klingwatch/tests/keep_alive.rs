//! HTTP/2 keep-alive: a connection that goes silent (a NAT or load balancer that dropped it
//! without a reset) is found dead by an unanswered ping, its calls fail as retryable
//! connection errors well before their timeout, and the next call opens a new connection.
//!
//! The emulator answers every ping (hyper's HTTP/2 server does so by itself), so the silence
//! comes from a TCP relay between the client and the TLS emulator that stops relaying, in both
//! directions, the connections it carries when told to, while keeping their sockets open.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::H;
use klingwatch::RetryPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay to `upstream` whose current connections can be silenced.
struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    silenced: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let silenced: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let (a, s) = (accepted.clone(), silenced.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let quiet = Arc::new(AtomicBool::new(false));
                s.lock().unwrap().push(quiet.clone());
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pipe(dr, uw, quiet.clone()), pipe(ur, dw, quiet));
                });
            }
        });
        Relay {
            addr,
            accepted,
            silenced,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every connection relayed so far stops carrying bytes (its sockets stay open).
    fn silence_current(&self) {
        for q in self.silenced.lock().unwrap().iter() {
            q.store(true, Ordering::SeqCst);
        }
    }
}

/// Copies `from` to `to` until either ends, or forever holds what it reads once `quiet`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    quiet: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if quiet.load(Ordering::SeqCst) {
            // Silent, not closed: the peer sees neither data nor FIN nor RST.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The emulator's URL with the relay's port in place of its own (same host name, so the
/// emulator's certificate still matches).
fn via(h: &H, relay: &Relay) -> String {
    let port = h.mock.addr().port().to_string();
    let url = h.url.trim_end_matches('/');
    let host = url
        .strip_suffix(port.as_str())
        .and_then(|u| u.strip_suffix(':'))
        .expect("the emulator's URL ends with its port");
    format!("{host}:{}", relay.addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_http2_connection_is_found_by_ping_and_replaced() {
    let h = H::start_tls().await;
    let id = h.seed_status("succeed").await;
    let relay = Relay::start(h.mock.addr()).await;
    let client = |retries: u32| {
        h.builder()
            .base_url(via(&h, &relay))
            .http2_keep_alive(Duration::from_millis(200), Duration::from_millis(300))
            .timeout(Duration::from_secs(20))
            .retry_policy(RetryPolicy {
                max_retries: retries,
                initial_backoff: Duration::from_millis(20),
                ..Default::default()
            })
            .build()
            .unwrap()
    };

    // Without retries: the call on the silent connection fails as a retryable connection
    // error once a ping goes unanswered, not at its 20 s timeout.
    let once = client(0);
    assert_eq!(once.get_image_task(&id).await.unwrap().id, id);
    assert_eq!(relay.accepted(), 1, "the first call opened one connection");
    relay.silence_current();
    let t0 = Instant::now();
    let err = once.get_image_task(&id).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err.kind().as_str(), "connection", "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(
        took < Duration::from_secs(5),
        "the dead connection was found after {took:?}"
    );
    // The next call opens a new connection, and it answers.
    assert_eq!(once.get_image_task(&id).await.unwrap().id, id);
    assert_eq!(relay.accepted(), 2);

    // With retries (the default policy's behaviour): the same silence costs the caller a
    // short delay, and the call succeeds on a new connection.
    let retried = client(2);
    assert_eq!(retried.get_image_task(&id).await.unwrap().id, id);
    assert_eq!(relay.accepted(), 3);
    relay.silence_current();
    let t0 = Instant::now();
    let task = retried.get_image_task(&id).await.unwrap();
    assert_eq!(task.id, id);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(relay.accepted(), 4, "the retry went on a new connection");
}

#[test]
fn keep_alive_settings_must_be_positive() {
    for (interval, timeout) in [
        (Duration::ZERO, Duration::from_secs(1)),
        (Duration::from_secs(1), Duration::ZERO),
    ] {
        let err = klingwatch::Client::builder()
            .access_key("ak")
            .secret_key("sk")
            .http2_keep_alive(interval, timeout)
            .build()
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "config", "{err}");
    }
}

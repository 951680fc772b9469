//! klingwatch: sign Kling AI credentials and track Kling generation tasks.
//!
//! ```no_run
//! # async fn demo() -> klingwatch::Result<()> {
//! let client = klingwatch::Client::builder().build()?; // KLING_ACCESS_KEY / KLING_SECRET_KEY
//! let task = client.wait_image_task("930810057590833241", Default::default()).await?;
//! for image in &task.images {
//!     println!("{}", image.url);
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod batch;
pub mod callback;
pub mod client;
pub mod create;
mod direct;
pub mod download;
pub mod error;
pub mod retry;
pub mod task;
pub mod wait;

pub use auth::{sign_jwt, Clock, Credentials, ManualClock, Secret, SystemClock, TokenProvider};
pub use batch::BatchItem;
pub use callback::{
    parse_callback, parse_callback_as, sign_webhook, verify_webhook, verify_webhook_at,
};
pub use client::{Client, ClientBuilder, ExternalIdLookup, Region};
pub use create::{validate_create_body, ImageGenerationRequest};
pub use error::{Error, ErrorKind, Result, RetryAction, CODE_TABLE};
pub use retry::RetryPolicy;
pub use task::{validate_task_id, Image, RawAsText, RawJson, Task, TaskKind, TaskStatus, Video};
pub use tokio_util::sync::CancellationToken;
pub use wait::{OnUpdate, TaskUpdate, WaitOptions, WatchOptions};

/// Installs rustls' ring provider as the process default if none is installed yet
/// (reqwest is built without a provider of its own). Harmless to call repeatedly.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The environment variable that sets [`runtime_threads`].
pub const RUNTIME_THREADS_ENV: &str = "KLINGWATCH_RUNTIME_THREADS";

/// How many threads the tokio runtime of a binding (Python, Node; see [`start_runtime`]) or the
/// CLI gets: `KLINGWATCH_RUNTIME_THREADS` when it is a positive number, else 1.
///
/// One thread is the default because the work is I/O: an HTTP/2 connection multiplexes every
/// request on one connection task, and a call's future runs best beside it. Measured with 20,000
/// status queries at concurrency 64 over TLS on 2 cores, one worker with the batch spawned on it
/// used ~30 % less CPU and answered ~20 % faster than a worker per core with the batch polled
/// from the calling thread (docs/benchmarks.md). Raise it for CPU-heavy use (thousands of
/// concurrent TLS handshakes, say).
pub fn runtime_threads() -> usize {
    parse_runtime_threads(std::env::var(RUNTIME_THREADS_ENV).ok().as_deref())
}

/// Starts the tokio runtime a binding (Python, Node) runs the core's work on, for the rest of
/// the process (it is never dropped), with [`runtime_threads`] threads named `thread_name`.
///
/// With one thread (the default) it is a current-thread runtime driven by a thread of its
/// own: any thread may spawn onto it, or `block_on` it (that future is polled on the calling
/// thread, its I/O and timers on the runtime's thread). Over plain HTTP/1.1 (a connection task
/// per connection) this answered a batch with ~30 % less CPU per query than a one-worker
/// multi-thread runtime making the same syscalls (where in tokio's scheduler the difference
/// goes was not found); over HTTP/2 the two were level (docs/benchmarks.md, 2026-12-05). With
/// more threads it is a multi-thread runtime with that many workers.
/// A failure to start it is a `config` error.
pub fn start_runtime(thread_name: &str) -> Result<&'static tokio::runtime::Runtime> {
    let failed =
        |e: std::io::Error| Error::config(format!("could not start the tokio runtime: {e}"));
    let threads = runtime_threads();
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = builder
        .enable_all()
        .thread_name(thread_name)
        .build()
        .map_err(failed)?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    if threads == 1 {
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(failed)?;
    }
    Ok(rt)
}

fn parse_runtime_threads(v: Option<&str>) -> usize {
    v.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

#[cfg(test)]
mod runtime_threads_tests {
    /// The started runtime runs work spawned from any thread, and `block_on` from another
    /// thread completes I/O and timers (driven by the runtime's own thread).
    #[test]
    fn started_runtime_runs_spawned_work_and_block_on_from_other_threads() {
        let rt = super::start_runtime("klingwatch-test").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
        });
        let name = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("spawned work ran");
        assert_eq!(name.as_deref(), Some("klingwatch-test"));
        let joined = std::thread::spawn(move || {
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let (a, b) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                a.is_ok() && b.is_ok()
            })
        })
        .join()
        .unwrap();
        assert!(joined);
    }

    #[test]
    fn defaults_to_one_and_reads_positive_numbers() {
        use super::parse_runtime_threads as p;
        assert_eq!(p(None), 1);
        assert_eq!(p(Some("4")), 4);
        assert_eq!(p(Some(" 2 ")), 2);
        assert_eq!(p(Some("0")), 1);
        assert_eq!(p(Some("many")), 1);
    }
}

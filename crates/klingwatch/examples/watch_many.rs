//! Benchmark: watch N tasks (default 10,000) on an emulator and report the peak RSS of this
//! process and the detection lag of each terminal state (observed − server `updated_at`).
//!
//! ```sh
//! cargo build --release -p klingwatch-mock --example watch_many -p klingwatch
//! target/release/klingwatch-mock --port 18080 --concurrency-limit 100000 \
//!     --processing-after-ms 2000 --finish-after-ms 20000 &
//! target/release/examples/watch_many http://127.0.0.1:18080 10000
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use klingwatch::{Client, TaskKind, WatchOptions};
use serde_json::json;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::main]
async fn main() -> klingwatch::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18080".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let client = Client::builder()
        .access_key("klingwatch-test-ak")
        .secret_key("klingwatch-test-sk")
        .base_url(url)
        .build()?;
    let started = std::time::Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let c = client.clone();
            async move {
                c.create_task(
                    TaskKind::ImageGeneration,
                    json!({"prompt": format!("bench {i}")}),
                )
                .await
                .map(|t| t.id)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<klingwatch::Result<_>>()?;
    println!(
        "created {} tasks in {:.1}s; RSS high-water {} KiB",
        ids.len(),
        started.elapsed().as_secs_f64(),
        vm_hwm_kib()
    );
    let opts = WatchOptions {
        timeout: Duration::from_secs(300),
        poll_interval: Duration::from_secs(1),
        max_poll_interval: Duration::from_secs(10),
        concurrency: 64,
        cancel: None,
    };
    let mut lags: Vec<i64> = Vec::with_capacity(n);
    let mut updates = 0usize;
    let mut errors = 0usize;
    let mut stream = std::pin::pin!(client.watch(TaskKind::ImageGeneration, ids, opts));
    while let Some(item) = stream.next().await {
        match item {
            Ok(u) => {
                updates += 1;
                if u.task.is_terminal() {
                    lags.push(now_ms() - u.task.updated_at_ms.unwrap_or(0));
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("{e}");
            }
        }
    }
    lags.sort_unstable();
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "watched {n} tasks: {} terminal, {updates} updates, {errors} errors, total {:.1}s",
        lags.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "detection lag ms: p50 {} p99 {} max {} (poll interval grows 1 s -> 10 s)",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("peak RSS (VmHWM): {:.1} MiB", vm_hwm_kib() as f64 / 1024.0);
    Ok(())
}

//! Soak: N status queries (default 100,000) through one client while the emulator injects
//! faults into ~10 % of requests (errors of every retry class, 429s, HTML 502s, truncated and
//! dropped responses, slow responses). Checks that every id gets exactly one result or one
//! typed error, that retries stay within the budget, and that RSS stays flat after warm-up.
//!
//! ```sh
//! cargo build --release -p klingwatch-mock --example soak -p klingwatch
//! target/release/klingwatch-mock --port 18081 &
//! target/release/examples/soak http://127.0.0.1:18081 100000
//! ```
//! Exit status 0 only when every check holds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use klingwatch::{Client, RetryPolicy, TaskKind};
use serde_json::json;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18081".into());
    let total: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rounds = 10usize;
    let per_round = total / rounds;
    klingwatch::install_crypto_provider();
    let http = reqwest::Client::new();
    let ctl = |path: &str| format!("{url}/__mock{path}");
    http.post(ctl("/reset")).send().await.unwrap();
    // One real task per query of a round (get_many shares one request among duplicate ids,
    // so every id of a round is distinct): per_round tasks, each queried once per round.
    use futures::StreamExt;
    let ids: Vec<String> = futures::stream::iter(0..per_round)
        .map(|i| {
            let http = http.clone();
            let url = ctl("/tasks");
            async move {
                let status = ["succeed", "processing", "failed", "submitted"][i % 4];
                let v: serde_json::Value = http
                    .post(url)
                    .json(&json!({ "status": status }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let v = if v["data"].is_object() {
                    v["data"].clone()
                } else {
                    v
                };
                v["task_id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // ~10 % of requests meet a fault: the mix shared with the Python and Node soaks.
    let mix: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/soak.json"
        ))
        .expect("tests/soak.json"),
    )
    .expect("tests/soak.json parses");
    for fault in mix["faults"].as_array().expect("faults") {
        let mut f = fault.clone();
        f["times"] = json!(0);
        f["match"] = json!({"path_prefix": "/v1/images/generations/"});
        http.post(ctl("/faults")).json(&f).send().await.unwrap();
    }
    let client = Client::builder()
        .access_key(klingwatch_mock::DEFAULT_ACCESS_KEY)
        .secret_key(klingwatch_mock::DEFAULT_SECRET_KEY)
        .base_url(url.clone())
        .timeout(Duration::from_secs(1))
        .retry_policy(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            concurrency_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(1),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();

    let started = Instant::now();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let (mut oks, mut errs, mut attempts_total) = (0usize, 0usize, 0u64);
    let mut rss = Vec::new();
    let mut ok = true;
    for round in 0..rounds {
        let batch: Vec<&str> = (0..per_round)
            .map(|i| ids[i % ids.len()].as_str())
            .collect();
        let results = client.get_many(TaskKind::ImageGeneration, &batch, 64).await;
        if results.len() != batch.len() {
            eprintln!("LOST: {} results for {} ids", results.len(), batch.len());
            ok = false;
        }
        for (r, id) in results.iter().zip(&batch) {
            match r {
                Ok(t) => {
                    oks += 1;
                    attempts_total += 1;
                    if t.id != *id {
                        eprintln!("MISMATCH: asked {id}, got {}", t.id);
                        ok = false;
                    }
                }
                Err(e) => {
                    errs += 1;
                    attempts_total += u64::from(e.attempts());
                    *kinds.entry(e.kind().as_str().to_owned()).or_default() += 1;
                    if e.task_id() != Some(*id) {
                        eprintln!("ERROR WITHOUT ITS ID: {e:?}");
                        ok = false;
                    }
                }
            }
        }
        rss.push(rss_kib());
        println!(
            "round {:>2}: {:>7} queries, {:>6} ok, {:>5} errors, RSS {:>6} KiB, retry budget {}",
            round + 1,
            (round + 1) * per_round,
            oks,
            errs,
            rss_kib(),
            client.retry_budget_remaining()
        );
    }
    let elapsed = started.elapsed();
    let warm = rss[1].max(1);
    let peak_after = *rss[1..].iter().max().unwrap();
    let growth = (peak_after as f64 / warm as f64 - 1.0) * 100.0;
    let log: serde_json::Value = http
        .get(ctl("/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fired: u64 = log["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fired"].as_u64().unwrap_or(0))
        .sum();
    println!("---");
    println!(
        "queries: {} in {:.1} s ({:.0}/s)",
        oks + errs,
        elapsed.as_secs_f64(),
        (oks + errs) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "results: {oks} tasks + {errs} typed errors = {} (asked {})",
        oks + errs,
        per_round * rounds
    );
    println!("errors by kind: {kinds:?}");
    println!("faults fired by the emulator: {fired}");
    for f in log["faults"].as_array().unwrap() {
        println!(
            "  {:<16} code {:<5} p={:<6} fired {}",
            f["fault"].as_str().unwrap_or("?"),
            f["code"],
            f["probability"],
            f["fired"]
        );
    }
    println!("attempts reported by the typed errors + one per task: {attempts_total}");
    println!("RSS after warm-up: {warm} KiB, peak after: {peak_after} KiB, growth {growth:.1} %");
    if oks + errs != per_round * rounds {
        ok = false;
    }
    if growth > 10.0 {
        eprintln!("RSS grew more than 10 %");
        ok = false;
    }
    // Retries are bounded: at most max_retries per query, and by the budget overall.
    if attempts_total > (oks + errs) as u64 * 4 {
        eprintln!("retries unbounded");
        ok = false;
    }
    println!("{}", if ok { "SOAK OK" } else { "SOAK FAILED" });
    std::process::exit(if ok { 0 } else { 1 });
}

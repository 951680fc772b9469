//! klingwatch Rust client for bench/run.
//!
//! `klingwatch-bench get-many BASE_URL IDS_FILE CONCURRENCY [CA_PEM]`: one `Client::get_many`
//! over every id of the file; prints one JSON line (n, ok, errors, seconds, req/s).
//! `klingwatch-bench sign N`: cost of `sign_jwt` (a fresh token) and of `Client::token()`
//! (the cached token), in ns per call.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use klingwatch::{sign_jwt, Client, TaskKind};

const AK: &str = "klingwatch-test-ak";
const SK: &str = "klingwatch-test-sk";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("get-many") if args.len() >= 4 => get_many(&args[1], &args[2], &args[3], args.get(4)),
        Some("sign") => sign(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200_000)),
        _ => {
            eprintln!(
                "usage: klingwatch-bench get-many URL IDS_FILE CONCURRENCY [CA_PEM] | sign [N]"
            );
            std::process::exit(2);
        }
    }
}

fn get_many(url: &str, ids_file: &str, conc: &str, ca: Option<&String>) {
    let ids: Vec<String> = std::fs::read_to_string(ids_file)
        .expect("ids file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let conc: usize = conc.parse().expect("concurrency");
    let mut b = Client::builder()
        .access_key(AK)
        .secret_key(SK)
        .base_url(url);
    if let Some(ca) = ca {
        b = b.ca_cert_pem(std::fs::read(ca).expect("CA file"));
    }
    let client = b.build().expect("client");
    // KW_BENCH_RUNTIME picks how the batch is driven (see docs/benchmarks.md): `current`
    // (default: one current-thread runtime, `#[tokio::main(flavor = "current_thread")]`,
    // what the CLI uses), `block-on` (multi-thread runtime, the batch future on the calling
    // thread, as plain `#[tokio::main]`), `spawn` (the batch future spawned onto a worker,
    // as the bindings did until 2026-12-05), `started` (the batch spawned onto
    // `klingwatch::start_runtime`'s runtime from another thread, as the bindings do).
    let mode = std::env::var("KW_BENCH_RUNTIME").unwrap_or_else(|_| "current".into());
    if mode == "started" {
        let rt = klingwatch::start_runtime("klingwatch-bench").expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel();
        let t0 = Instant::now();
        rt.spawn(async move {
            let results = client.get_many(TaskKind::ImageGeneration, &ids, conc).await;
            let _ = tx.send((results, t0.elapsed().as_secs_f64()));
        });
        let (results, secs) = rx.recv().expect("batch task");
        return report(&results, secs);
    }
    let rt = if mode == "current" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        // KW_BENCH_WORKERS: worker threads of the multi-thread runtime (default: one per core).
        if let Some(n) = std::env::var("KW_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()) {
            b.worker_threads(n);
        }
        b.enable_all().build()
    }
    .expect("runtime");
    let t0 = Instant::now();
    let results = if mode == "spawn" {
        let ids = ids.clone();
        let c = client.clone();
        rt.block_on(async move {
            tokio::spawn(async move { c.get_many(TaskKind::ImageGeneration, &ids, conc).await })
                .await
                .expect("batch task")
        })
    } else {
        rt.block_on(client.get_many(TaskKind::ImageGeneration, &ids, conc))
    };
    let secs = t0.elapsed().as_secs_f64();
    report(&results, secs);
}

fn report(results: &[klingwatch::Result<klingwatch::Task>], secs: f64) {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("first error: {e}");
    }
    println!(
        "{{\"n\":{},\"ok\":{},\"errors\":{},\"seconds\":{:.4},\"rps\":{:.1}}}",
        results.len(),
        ok,
        results.len() - ok,
        secs,
        results.len() as f64 / secs
    );
}

fn sign(n: u32) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut len = 0usize;
    let t0 = Instant::now();
    for i in 0..n {
        len += sign_jwt(AK, SK, now + i64::from(i % 7), 1800)
            .unwrap()
            .len();
    }
    let fresh = t0.elapsed().as_nanos() as f64 / f64::from(n);
    let client = Client::builder()
        .access_key(AK)
        .secret_key(SK)
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    let t0 = Instant::now();
    for _ in 0..n {
        len += client.token().unwrap().len();
    }
    let cached = t0.elapsed().as_nanos() as f64 / f64::from(n);
    assert!(len > 0);
    println!("{{\"fresh_ns\":{fresh:.0},\"cached_ns\":{cached:.0}}}");
}

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
    // KW_BENCH_RUNTIME picks how the batch is driven (profiling aid, see docs/benchmarks.md):
    // `block-on` (default: multi-thread runtime, the batch future on the calling thread, as
    // a binding's block_on does), `spawn` (the batch future spawned onto a worker, beside
    // the connection tasks), `current` (one current-thread runtime).
    let mode = std::env::var("KW_BENCH_RUNTIME").unwrap_or_else(|_| "block-on".into());
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
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("first error: {e}");
    }
    println!(
        "{{\"n\":{},\"ok\":{},\"errors\":{},\"seconds\":{:.4},\"rps\":{:.1}}}",
        ids.len(),
        ok,
        ids.len() - ok,
        secs,
        ids.len() as f64 / secs
    );
    // KW_BENCH_SERIALISE=1: after the timed batch (and so outside its req/s, but inside the
    // process CPU that bench/run reports, hence off there), what the bindings add per result.
    if std::env::var_os("KW_BENCH_SERIALISE").is_some() {
        serialise_costs(&results);
    }
}

/// Prints the cost of turning the batch into the one JSON string the bindings hand over:
/// `Task::to_json` per task (a Value tree, raw body cloned) + `to_string`, against the same
/// bytes written straight from the typed task with serde.
fn serialise_costs(results: &[klingwatch::Result<klingwatch::Task>]) {
    // What the bindings add after the batch: each task as `Task::to_json` (a Value tree,
    // raw body included) and the whole array as one JSON string.
    // Run twice; the second (warm allocator) is the figure reported.
    let warm = |results: &[klingwatch::Result<klingwatch::Task>]| {
        serde_json::Value::Array(
            results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|t| t.to_json())
                .collect(),
        )
        .to_string()
        .len()
    };
    let t0j = Instant::now();
    let _ = warm(results);
    let to_json_cold_secs = t0j.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let text = serde_json::Value::Array(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|t| t.to_json())
            .collect(),
    )
    .to_string();
    let to_json_secs = t1.elapsed().as_secs_f64();
    // The share of the raw body in that: clone + serialise `raw` alone.
    let t2 = Instant::now();
    let raw_len: usize = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|t| serde_json::Value::Object(t.raw.clone()).to_string().len())
        .sum();
    let raw_secs = t2.elapsed().as_secs_f64();
    // The same JSON written straight from the typed task (serde, no Value tree, raw body
    // serialised by reference): what `to_json` could cost.
    let t3 = Instant::now();
    let direct = direct_json(&results);
    let direct_secs = t3.elapsed().as_secs_f64();
    assert_eq!(direct.len(), text.len(), "same bytes as to_json");
    let text_len = text.len();
    drop(text);
    println!(
        "{{\"to_json_cold_seconds\":{:.4},\"to_json_seconds\":{:.4},\"json_bytes\":{},\"raw_only_seconds\":{:.4},\"raw_bytes\":{},\"direct_json_seconds\":{:.4}}}",
        to_json_cold_secs, to_json_secs, text_len, raw_secs, raw_len, direct_secs
    );
}

fn direct_json(results: &[klingwatch::Result<klingwatch::Task>]) -> String {
    use serde_json::json;
    let mut out = Vec::with_capacity(results.len() * 800);
    out.push(b'[');
    let mut first = true;
    for t in results.iter().filter_map(|r| r.as_ref().ok()) {
        if !first {
            out.push(b',');
        }
        first = false;
        // Key order as Task::to_json.
        let images: Vec<_> = t
            .images
            .iter()
            .map(|i| json!({"index": i.index, "url": &i.url, "watermark_url": &i.watermark_url}))
            .collect();
        #[derive(serde::Serialize)]
        struct View<'a> {
            id: &'a str,
            kind: &'a str,
            status: &'a str,
            status_msg: &'a Option<String>,
            external_task_id: &'a Option<String>,
            created_at_ms: Option<i64>,
            updated_at_ms: Option<i64>,
            final_unit_deduction: &'a Option<String>,
            images: Vec<serde_json::Value>,
            videos: Vec<serde_json::Value>,
            raw: &'a serde_json::Map<String, serde_json::Value>,
        }
        serde_json::to_writer(
            &mut out,
            &View {
                id: &t.id,
                kind: t.kind.as_str(),
                status: t.status.as_str(),
                status_msg: &t.status_msg,
                external_task_id: &t.external_task_id,
                created_at_ms: t.created_at_ms,
                updated_at_ms: t.updated_at_ms,
                final_unit_deduction: &t.final_unit_deduction,
                images,
                videos: Vec::new(),
                raw: &t.raw,
            },
        )
        .expect("serialise");
    }
    out.push(b']');
    String::from_utf8(out).expect("utf-8")
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

//! Micro-benchmarks of the hot paths: fresh JWT signing, cached token fetch, task parsing.
//! Run: `cargo bench -p klingwatch --bench core`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use klingwatch::{sign_jwt, Client, ManualClock, Task, TaskKind};
use std::hint::black_box;

const BODY: &str = r#"{"code":0,"message":"SUCCEED","request_id":"req-1","data":{"task_id":"t-doc","task_status":"succeed","task_status_msg":"","final_unit_deduction":"2","watermark_info":{"enabled":true},"task_info":{"external_task_id":"my-ext-1"},"created_at":1722769557708,"updated_at":1722769560112,"task_result":{"images":[{"index":0,"url":"https://example.invalid/0.png","watermark_url":"https://example.invalid/0w.png"},{"index":1,"url":"https://example.invalid/1.png","watermark_url":"https://example.invalid/1w.png"}]}}}"#;

#[derive(serde::Deserialize)]
struct Envelope {
    data: serde_json::Value,
}

fn benches(c: &mut Criterion) {
    c.bench_function("sign_jwt (fresh)", |b| {
        b.iter(|| {
            sign_jwt(
                black_box("AK_TEST_0001"),
                black_box("SK_TEST_SECRET_0001"),
                black_box(1_764_000_000),
                1800,
            )
        })
    });
    let client = Client::builder()
        .access_key("AK_TEST_0001")
        .secret_key("SK_TEST_SECRET_0001")
        .base_url("http://127.0.0.1:9")
        .clock(Arc::new(Arc::new(ManualClock::new(1_764_000_000))))
        .token_refresh_margin(Duration::from_secs(60))
        .build()
        .unwrap();
    client.token().unwrap();
    c.bench_function("token (cached)", |b| {
        b.iter(|| client.token_provider().token())
    });
    c.bench_function("parse sample body (envelope + task)", |b| {
        b.iter(|| {
            let env: Envelope = serde_json::from_str(black_box(BODY)).unwrap();
            Task::from_value(TaskKind::ImageGeneration, env.data).unwrap()
        })
    });
}

criterion_group! {
    name = core;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(core);

//! Request path against the emulator: error table, retries, Retry-After, budget, auth, ids,
//! response vectors, transport faults and listing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast_policy, vector, H};
use futures::StreamExt;
use klingwatch::{ManualClock, RetryPolicy, Task, TaskKind, TaskStatus};
use serde_json::json;

const IMG: &str = "/v1/images/generations";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_row_maps_kind_retryability_and_attempts() {
    let h = H::start().await;
    let rows = vector("errors.json");
    let rows = rows["rows"].as_array().unwrap();
    assert!(rows.len() >= 20);
    for row in rows {
        let status = row["http_status"].as_u64().unwrap() as u16;
        let code = row["code"].as_i64().unwrap();
        let kind = row["kind"].as_str().unwrap();
        let retryable = row["retryable"].as_bool().unwrap();
        let action = row["action"].as_str().unwrap();
        h.clear_faults().await;
        h.clear_log().await;
        let id = h.seed_status("succeed").await;
        h.fault(json!({"fault": "error", "times": 0, "http_status": status, "code": code, "message": "boom",
                       "match": {"task_id": id}}))
            .await;
        let client = h.client();
        let err = client
            .get_image_task(&id)
            .await
            .expect_err("fault must surface");
        let expected_attempts = if retryable {
            3
        } else if action == "resign_once" {
            2
        } else {
            1
        };
        assert_eq!(err.kind().as_str(), kind, "code {code}: {err:?}");
        assert_eq!(err.kling_code(), Some(code), "code {code}");
        assert_eq!(err.http_status(), Some(status), "code {code}");
        assert_eq!(err.is_retryable(), retryable, "code {code}");
        assert_eq!(err.attempts(), expected_attempts, "code {code}: {err:?}");
        assert_eq!(err.task_id(), Some(id.as_str()));
        assert_eq!(
            h.count(&id).await,
            expected_attempts as usize,
            "log for code {code}"
        );
        if action == "resign_once" {
            assert_eq!(
                client.token_provider().signatures(),
                2,
                "code {code} re-signs once"
            );
        }
    }
}

async fn retry_after_spacing(value: String) {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    h.fault(
        json!({"fault": "error", "times": 1, "http_status": 503, "code": 5001, "retry_after": value,
                   "match": {"task_id": id}}),
    )
    .await;
    let task = h
        .client()
        .get_image_task(&id)
        .await
        .expect("succeeds after Retry-After");
    assert_eq!(task.status, TaskStatus::Succeed);
    let log = h.requests().await;
    assert_eq!(log.len(), 2, "{log:?}");
    let gap = log[1]["at_ms"].as_i64().unwrap() - log[0]["at_ms"].as_i64().unwrap();
    assert!(
        gap >= 900,
        "Retry-After {value:?} not honoured: gap {gap} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_honoured() {
    retry_after_spacing("1".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_is_honoured() {
    let when = std::time::SystemTime::now() + Duration::from_secs(2);
    retry_after_spacing(httpdate::fmt_http_date(when)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_exhaustion_stops_retrying() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    h.fault(json!({"fault": "error", "times": 0, "http_status": 503, "match": {"task_id": id}}))
        .await;
    let client = h
        .builder()
        .retry_policy(RetryPolicy {
            budget_capacity: 2,
            budget_ratio: 0.0,
            ..fast_policy()
        })
        .build()
        .unwrap();
    let e1 = client.get_image_task(&id).await.unwrap_err();
    assert_eq!(e1.attempts(), 3);
    assert_eq!(h.count(&id).await, 3);
    assert_eq!(client.retry_budget_remaining(), 0);
    let e2 = client.get_image_task(&id).await.unwrap_err();
    assert_eq!(e2.attempts(), 1, "{e2:?}");
    assert!(e2.message().contains("budget"), "{}", e2.message());
    assert_eq!(h.count(&id).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_resigned_exactly_once() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    h.clock(3600).await;
    let client = h.client();
    let err = client.get_image_task(&id).await.unwrap_err();
    assert_eq!(err.kling_code(), Some(1004), "{err:?}");
    assert_eq!(err.kind().as_str(), "authentication");
    assert_eq!(err.attempts(), 2);
    assert_eq!(client.token_provider().signatures(), 2);
    assert_eq!(h.count(&id).await, 2);
    // Back in sync: the next call works with a fresh token.
    h.clock(0).await;
    client
        .get_image_task(&id)
        .await
        .expect("works once clocks agree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_clock_reuses_then_refreshes_the_token() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let clock = Arc::new(ManualClock::new(now));
    let client = h.builder().clock(clock.clone()).build().unwrap();
    client.get_image_task(&id).await.unwrap();
    let t1 = client.token().unwrap();
    assert_eq!(client.token_provider().signatures(), 1);
    clock.advance(1000);
    client.get_image_task(&id).await.unwrap();
    assert_eq!(
        client.token_provider().signatures(),
        1,
        "token with 800 s left is reused"
    );
    assert_eq!(client.token().unwrap(), t1);
    // 59 s left (< 60 s margin): re-signed. Move the server clock too so the new token is valid there.
    clock.advance(741);
    h.clock(1741).await;
    client.get_image_task(&id).await.unwrap();
    assert_eq!(
        client.token_provider().signatures(),
        2,
        "token with < 60 s left is refreshed"
    );
    assert_ne!(client.token().unwrap(), t1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token() {
    let h = H::start().await;
    let id = h.seed_status("processing").await;
    let client = h.client();
    // Spawned, so that calls really run in parallel on both worker threads.
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let c = client.clone();
            let id = id.clone();
            tokio::spawn(async move { c.get_image_task(&id).await })
        })
        .collect();
    let results = futures::future::join_all(handles).await;
    assert!(results.iter().all(|r| r
        .as_ref()
        .unwrap()
        .as_ref()
        .is_ok_and(|t| t.status == TaskStatus::Processing)));
    assert_eq!(client.token_provider().signatures(), 1);
    assert_eq!(h.count(&id).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_task_ids_are_refused_locally() {
    let h = H::start().await;
    let client = h.client();
    let long = "x".repeat(300);
    for bad in [
        "",
        "a/b",
        "../x",
        "x?y",
        "a#b",
        "%2e%2e",
        "a b",
        long.as_str(),
        "a\u{2028}b",
    ] {
        let err = client.get_image_task(bad).await.expect_err(bad);
        assert_eq!(err.kind().as_str(), "invalid_request", "{bad:?}");
        assert_eq!(err.attempts(), 0, "{bad:?}");
    }
    assert!(h.requests().await.is_empty(), "nothing may be sent");
}

fn check_expect(name: &str, task: &Task, expect: &serde_json::Value) {
    assert_eq!(task.id, expect["id"].as_str().unwrap(), "{name}");
    assert_eq!(
        task.status.as_str(),
        expect["status"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        task.status_msg.as_deref(),
        expect["status_msg"].as_str(),
        "{name}"
    );
    assert_eq!(
        task.external_task_id.as_deref(),
        expect["external_task_id"].as_str(),
        "{name}"
    );
    assert_eq!(
        task.created_at_ms,
        expect["created_at_ms"].as_i64(),
        "{name}"
    );
    assert_eq!(
        task.updated_at_ms,
        expect["updated_at_ms"].as_i64(),
        "{name}"
    );
    let images: Vec<&str> = task.images.iter().map(|i| i.url.as_str()).collect();
    let want: Vec<&str> = expect["image_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(images, want, "{name}");
    if let Some(v) = expect.get("video_urls") {
        let got: Vec<&str> = task.videos.iter().map(|v| v.url.as_str()).collect();
        let want: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{name}");
    }
    if let Some(d) = expect.get("video_durations_s") {
        let got: Vec<Option<f64>> = task.videos.iter().map(|v| v.duration_s).collect();
        let want: Vec<Option<f64>> = d.as_array().unwrap().iter().map(|v| v.as_f64()).collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(
        task.is_terminal(),
        expect["is_terminal"].as_bool().unwrap(),
        "{name}"
    );
    if let Some(k) = expect.get("raw_keeps").and_then(|v| v.as_str()) {
        assert!(task.raw.contains_key(k), "{name}: raw keeps {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_vectors_parse_as_expected() {
    let h = H::start().await;
    let v = vector("responses.json");
    let mut checked = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let body = &case["body"];
        if case["expect"].is_null() || body.get("data").is_none() {
            // Error case: serve the same code/status through the emulator.
            let code = body["code"].as_i64().unwrap();
            let row = vector("errors.json")["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["code"].as_i64() == Some(code))
                .cloned()
                .expect("code in errors.json");
            let id = h.seed_status("succeed").await;
            h.fault(json!({"fault": "error", "times": 1, "http_status": row["http_status"], "code": code,
                           "message": body["message"], "match": {"task_id": id}}))
                .await;
            let client = h.builder().max_retries(0).build().unwrap();
            let err = client.get_image_task(&id).await.unwrap_err();
            assert_eq!(err.kind().as_str(), row["kind"].as_str().unwrap(), "{name}");
            assert_eq!(
                err.is_retryable(),
                row["retryable"].as_bool().unwrap(),
                "{name}"
            );
            assert_eq!(err.kling_code(), Some(code));
            checked += 1;
            continue;
        }
        let kind = if case["expect"].get("video_urls").is_some() {
            TaskKind::TextToVideo
        } else {
            TaskKind::ImageGeneration
        };
        let task =
            Task::from_value(kind, body["data"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_expect(name, &task, &case["expect"]);
        checked += 1;
    }
    assert!(checked >= 7, "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_task_served_by_the_emulator_parses() {
    let h = H::start().await;
    let id = h
        .seed(json!({"status": "succeed", "n": 2, "external_task_id": "ext-seeded"}))
        .await;
    let t = h.client().get_image_task(&id).await.unwrap();
    assert_eq!(t.id, id);
    assert_eq!(t.status, TaskStatus::Succeed);
    assert_eq!(t.external_task_id.as_deref(), Some("ext-seeded"));
    assert_eq!(t.images.len(), 2);
    assert!(t.created_at_ms.is_some() && t.updated_at_ms.is_some());
    let by_ext = h
        .client()
        .get_task_by_external_id(TaskKind::ImageGeneration, "ext-seeded")
        .await
        .unwrap();
    assert_eq!(by_ext.id, id);
}

async fn fault_then(h: &H, id: &str, spec: serde_json::Value) -> klingwatch::Result<Task> {
    h.clear_faults().await;
    h.clear_log().await;
    let mut spec = spec;
    spec["match"] = json!({"task_id": id});
    h.fault(spec).await;
    h.client().get_image_task(id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_and_body_faults_are_typed() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;

    let e = fault_then(&h, &id, json!({"fault": "html_502", "times": 0}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind().as_str(), e.http_status(), e.attempts()),
        ("server", Some(502), 3),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let e = fault_then(
        &h,
        &id,
        json!({"fault": "empty_body", "times": 0, "http_status": 504}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.kind().as_str(), e.http_status()),
        ("server", Some(504)),
        "{e:?}"
    );
    assert_eq!(h.count(&id).await, 3);

    let e = fault_then(&h, &id, json!({"fault": "malformed_json", "times": 0}))
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "decode", "{e:?}");

    let e = fault_then(
        &h,
        &id,
        json!({"fault": "ok_with_code", "times": 0, "code": 5000}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.kind().as_str(), e.kling_code()),
        ("server", Some(5000)),
        "{e:?}"
    );

    for fault in ["truncated_body", "drop_connection"] {
        let e = fault_then(&h, &id, json!({"fault": fault, "times": 0}))
            .await
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "connection", "{fault}: {e:?}");
        assert!(e.is_retryable());
        assert_eq!(e.attempts(), 3, "{fault}");
        let t = fault_then(&h, &id, json!({"fault": fault, "times": 1}))
            .await
            .expect(fault);
        assert_eq!(t.status, TaskStatus::Succeed);
        assert_eq!(h.count(&id).await, 2, "{fault}: one failure then success");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_response_times_out() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    h.fault(json!({"fault": "delay", "times": 0, "delay_ms": 2000, "match": {"task_id": id}}))
        .await;
    let client = h
        .builder()
        .timeout(Duration::from_millis(300))
        .max_retries(1)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let e = client.get_image_task(&id).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "timeout", "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(e.attempts(), 2);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_paging_is_validated_and_iterated() {
    let h = H::start().await;
    let client = h.client();
    for (page, size) in [(0, 10), (1001, 10), (1, 501), (1, 0)] {
        let e = client
            .list_tasks(TaskKind::ImageGeneration, page, size)
            .await
            .unwrap_err();
        assert_eq!(
            e.kind().as_str(),
            "invalid_request",
            "page {page} size {size}"
        );
    }
    assert!(h.requests().await.is_empty());
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(h.seed_status("succeed").await);
    }
    let page1 = client
        .list_tasks(TaskKind::ImageGeneration, 1, 3)
        .await
        .unwrap();
    assert_eq!(page1.len(), 3);
    let all: Vec<Task> = client
        .iter_tasks(TaskKind::ImageGeneration, 3)
        .map(|r| r.unwrap())
        .collect()
        .await;
    let mut got: Vec<String> = all.iter().map(|t| t.id.clone()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    // 3 pages: 3 + 3 + 1 (short page ends the stream); plus the single list call above.
    let lists = h
        .requests()
        .await
        .into_iter()
        .filter(|r| r["path"] == IMG)
        .count();
    assert_eq!(lists, 4);
}

/// A clock slow enough that concurrent callers all miss the token cache at once.
struct SlowClock;

impl klingwatch::Clock for SlowClock {
    fn now_unix(&self) -> i64 {
        std::thread::sleep(Duration::from_millis(3));
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cache_misses_sign_once() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    let client = h.builder().clock(Arc::new(SlowClock)).build().unwrap();
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let c = client.clone();
            let id = id.clone();
            tokio::spawn(async move { c.get_image_task(&id).await })
        })
        .collect();
    for r in futures::future::join_all(handles).await {
        r.unwrap().unwrap();
    }
    assert_eq!(
        client.token_provider().signatures(),
        1,
        "single-flight signing"
    );

    // Same from plain OS threads released together on a fresh client.
    let client = h.builder().clock(Arc::new(SlowClock)).build().unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                c.token().unwrap()
            })
        })
        .collect();
    let tokens: std::collections::HashSet<String> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        client.token_provider().signatures(),
        1,
        "single-flight signing across threads"
    );
    client.get_image_task(&id).await.unwrap();
    assert_eq!(client.token_provider().signatures(), 1);
}

//! Edge cases of watch, external-id lookup and create queueing.

mod common;

use std::time::Duration;

use common::H;
use futures::StreamExt;
use klingwatch::{
    CancellationToken, ExternalIdLookup, ImageGenerationRequest, TaskKind, TaskStatus, WatchOptions,
};
use serde_json::json;

fn opts() -> WatchOptions {
    WatchOptions {
        timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(30),
        max_poll_interval: Duration::from_millis(60),
        concurrency: 8,
        cancel: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_bad_and_unknown_ids_and_dedups() {
    let h = H::start().await;
    let good = h.seed_status("succeed").await;
    let ids = vec![
        good.clone(),
        "a/b".to_string(),
        "missing-7".to_string(),
        good.clone(),
    ];
    let items: Vec<_> = tokio::time::timeout(
        Duration::from_secs(5),
        h.client()
            .watch(TaskKind::ImageGeneration, ids, opts())
            .collect::<Vec<_>>(),
    )
    .await
    .expect("stream ends");
    let oks: Vec<_> = items.iter().filter_map(|r| r.as_ref().ok()).collect();
    let errs: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(oks.len(), 1, "{items:?}");
    assert_eq!(oks[0].task.id, good);
    let mut kinds: Vec<&str> = errs.iter().map(|e| e.kind().as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["invalid_request", "not_found"]);
    assert_eq!(h.count(&good).await, 1, "duplicate id watched once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_times_out_and_cancels() {
    let h = H::start().await;
    let p = h.seed_status("processing").await;
    let items: Vec<_> = h
        .client()
        .watch(
            TaskKind::ImageGeneration,
            vec![p.clone()],
            WatchOptions {
                timeout: Duration::from_millis(200),
                ..opts()
            },
        )
        .collect()
        .await;
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.kind().as_str(), "wait_timeout");
    assert_eq!(last.task_id(), Some(p.as_str()));
    assert_eq!(last.last_status(), Some(&TaskStatus::Processing));

    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c2.cancel();
    });
    let items: Vec<_> = tokio::time::timeout(
        Duration::from_secs(3),
        h.client()
            .watch(
                TaskKind::ImageGeneration,
                vec![p.clone()],
                WatchOptions {
                    cancel: Some(cancel),
                    ..opts()
                },
            )
            .collect::<Vec<_>>(),
    )
    .await
    .expect("cancel ends the stream");
    assert_eq!(
        items.last().unwrap().as_ref().unwrap_err().kind().as_str(),
        "cancelled"
    );
    let before = h.count(&p).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.count(&p).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_id_lookup_query_form() {
    let h = H::start().await;
    let id = h
        .seed(json!({"status": "succeed", "external_task_id": "ext-q-1"}))
        .await;
    let client = h
        .builder()
        .external_id_lookup(ExternalIdLookup::Query)
        .build()
        .unwrap();
    let t = client
        .get_task_by_external_id(TaskKind::ImageGeneration, "ext-q-1")
        .await
        .unwrap();
    assert_eq!(t.id, id);
    let log = h.requests().await;
    assert!(
        log[0]["query"]
            .as_str()
            .unwrap()
            .contains("external_task_id=ext-q-1"),
        "{log:?}"
    );
    let e = client
        .get_task_by_external_id(TaskKind::ImageGeneration, "a/b")
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "invalid_request");
    assert_eq!(h.requests().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_over_the_concurrency_limit_are_typed_1303() {
    let h = H::start().await;
    h.config(json!({"concurrency_limit": 3, "processing_after_ms": 100, "finish_after_ms": 200}))
        .await;
    let client = h.builder().max_creates_in_flight(3).build().unwrap();
    let futs = (0..6).map(|i| {
        let c = client.clone();
        async move {
            c.create_image_task(&ImageGenerationRequest::new(format!("fox {i}")))
                .await
        }
    });
    let results = futures::future::join_all(futs).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    // Creates are answered at once, so the local queue alone cannot keep the server under its
    // limit; whatever happens, the emulator never holds more than it allows and 1303 is typed.
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kling_code(), Some(1303), "{e:?}");
            assert_eq!(e.kind().as_str(), "rate_limited");
        }
    }
    assert!(ok >= 3, "{results:?}");
}

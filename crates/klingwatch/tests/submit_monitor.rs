//! Creating, waiting, batch reads, watching and downloading against the emulator.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::H;
use futures::StreamExt;
use klingwatch::{
    CancellationToken, ImageGenerationRequest, TaskKind, TaskStatus, WaitOptions, WatchOptions,
};
use serde_json::json;

const IMG: &str = "/v1/images/generations";

async fn fast_lifecycle(h: &H) {
    h.config(json!({"processing_after_ms": 100, "finish_after_ms": 300, "time_scale": 1.0}))
        .await;
}

fn wait_opts() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(30),
        max_poll_interval: Duration::from_millis(80),
        ..Default::default()
    }
}

async fn posts(h: &H) -> usize {
    h.requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == IMG)
        .count()
}

async fn listed(h: &H) -> usize {
    h.client()
        .list_tasks(TaskKind::ImageGeneration, 1, 500)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_succeeds() {
    let h = H::start().await;
    let t = h
        .client()
        .create_image_task(&ImageGenerationRequest::new("a red fox"))
        .await
        .unwrap();
    assert!(!t.id.is_empty());
    assert_eq!(t.status, TaskStatus::Submitted);
    assert_eq!(listed(&h).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_retries_a_concurrency_limit_once() {
    let h = H::start().await;
    h.fault(json!({"fault": "rate_limit", "times": 1, "http_status": 429, "code": 1303, "match": {"method": "POST"}})).await;
    let t = h
        .client()
        .create_image_task(&ImageGenerationRequest::new("fox"))
        .await
        .unwrap();
    assert_eq!(posts(&h).await, 2);
    let list = h
        .client()
        .list_tasks(TaskKind::ImageGeneration, 1, 50)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, t.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_server_error_with_external_id_does_not_duplicate() {
    let h = H::start().await;
    h.fault(json!({"fault": "error", "times": 1, "http_status": 500, "code": 5000, "match": {"method": "POST"}})).await;
    let req = ImageGenerationRequest {
        external_task_id: Some("ext-dup-1".into()),
        ..ImageGenerationRequest::new("fox")
    };
    let t = h.client().create_image_task(&req).await.unwrap();
    assert_eq!(t.external_task_id.as_deref(), Some("ext-dup-1"));
    assert_eq!(posts(&h).await, 2, "looked up, found nothing, sent again");
    let lookups = h
        .requests()
        .await
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().contains("ext-dup-1"))
        .count();
    assert_eq!(lookups, 1);
    assert_eq!(listed(&h).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_server_error_without_external_id_is_outcome_unknown() {
    let h = H::start().await;
    h.fault(json!({"fault": "error", "times": 1, "http_status": 500, "code": 5000, "match": {"method": "POST"}})).await;
    let e = h
        .client()
        .create_image_task(&ImageGenerationRequest::new("fox"))
        .await
        .unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert_eq!(e.kind().as_str(), "server");
    assert_eq!(posts(&h).await, 1, "a create is not blindly re-sent");
    assert_eq!(listed(&h).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_external_task_id_recovers() {
    let h = H::start().await;
    h.fault(json!({"fault": "error", "times": 1, "http_status": 500, "code": 5000, "match": {"method": "POST"}})).await;
    let client = h.builder().auto_external_task_id(true).build().unwrap();
    let t = client
        .create_image_task(&ImageGenerationRequest::new("fox"))
        .await
        .unwrap();
    assert!(
        t.external_task_id
            .as_deref()
            .is_some_and(|e| e.starts_with("kw-")),
        "{t:?}"
    );
    assert_eq!(posts(&h).await, 2);
    assert_eq!(listed(&h).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_validation_sends_nothing() {
    let h = H::start().await;
    let client = h.client();
    let bad = [
        ImageGenerationRequest::new(""),
        ImageGenerationRequest {
            n: Some(10),
            ..ImageGenerationRequest::new("x")
        },
        ImageGenerationRequest {
            aspect_ratio: Some("5:4".into()),
            ..ImageGenerationRequest::new("x")
        },
        ImageGenerationRequest::new("p".repeat(2501)),
        ImageGenerationRequest {
            external_task_id: Some("a/b".into()),
            ..ImageGenerationRequest::new("x")
        },
    ];
    for req in &bad {
        let e = client.create_image_task(req).await.unwrap_err();
        assert_eq!(e.kind().as_str(), "invalid_request", "{req:?}");
    }
    assert!(h.requests().await.is_empty());
    // The 2500-char boundary is accepted.
    client
        .create_image_task(&ImageGenerationRequest::new("p".repeat(2500)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_reaches_succeed_with_one_update_per_status() {
    let h = H::start().await;
    fast_lifecycle(&h).await;
    let client = h.client();
    let t = client
        .create_image_task(&ImageGenerationRequest::new("fox"))
        .await
        .unwrap();
    type Seen = Vec<(Option<TaskStatus>, TaskStatus)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s2 = seen.clone();
    let opts = WaitOptions {
        on_update: Some(Arc::new(move |u: &klingwatch::TaskUpdate| {
            s2.lock()
                .unwrap()
                .push((u.previous.clone(), u.task.status.clone()));
            Ok(())
        })),
        ..wait_opts()
    };
    let done = client.wait_image_task(&t.id, opts).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeed);
    assert!(!done.images.is_empty());
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(seen.last().unwrap().1, TaskStatus::Succeed);
    assert_eq!(seen[0].0, None);
    for w in seen.windows(2) {
        assert_ne!(w[0].1, w[1].1, "one update per status change: {seen:?}");
        assert_eq!(w[1].0.as_ref(), Some(&w[0].1));
    }
    let polls = h.count(&t.id).await;
    assert!(polls > seen.len(), "more polls ({polls}) than updates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_a_failed_task() {
    let h = H::start().await;
    fast_lifecycle(&h).await;
    let client = h.client();
    let t = client
        .create_image_task(&ImageGenerationRequest::new("fox [fail]"))
        .await
        .unwrap();
    let done = client
        .wait_image_task(&t.id, wait_opts())
        .await
        .expect("a failed task is a result");
    assert_eq!(done.status, TaskStatus::Failed);
    let e = done.raise_for_failure().unwrap_err();
    assert_eq!(e.kind().as_str(), "task_failed");
    assert_eq!(e.task_id(), Some(t.id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_deadline_gives_wait_timeout() {
    let h = H::start().await;
    let id = h.seed_status("processing").await;
    let opts = WaitOptions {
        timeout: Duration::from_millis(250),
        ..wait_opts()
    };
    let started = std::time::Instant::now();
    let e = h.client().wait_image_task(&id, opts).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "wait_timeout");
    assert_eq!(e.task_id(), Some(id.as_str()));
    assert_eq!(e.last_status(), Some(&TaskStatus::Processing));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_cancellation_stops_polling() {
    let h = H::start().await;
    let id = h.seed_status("processing").await;
    let cancel = CancellationToken::new();
    let opts = WaitOptions {
        cancel: Some(cancel.clone()),
        ..wait_opts()
    };
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.cancel();
    });
    let e = h.client().wait_image_task(&id, opts).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "cancelled");
    let before = h.count(&id).await;
    assert!(before >= 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.count(&id).await, before, "no polls after cancellation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_rides_out_a_transient_outage() {
    let h = H::start().await;
    let id = h.seed_status("succeed").await;
    h.fault(json!({"fault": "error", "times": 0, "http_status": 503, "code": 5001, "match": {"task_id": id}})).await;
    let client = h.client();
    let waiter = {
        let id = id.clone();
        tokio::spawn(async move { client.wait_image_task(&id, wait_opts()).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let failed = h.count(&id).await;
    assert!(failed >= 3, "polled through the outage: {failed}");
    h.clear_faults().await;
    let t = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(t.status, TaskStatus::Succeed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_on_unknown_task_ends_at_once() {
    let h = H::start().await;
    let started = std::time::Instant::now();
    let e = h
        .client()
        .wait_image_task("no-such-task-42", wait_opts())
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "not_found", "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(h.count("no-such-task-42").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_keeps_order_and_dedups() {
    let h = H::start().await;
    let a = h.seed_status("succeed").await;
    let b = h.seed_status("processing").await;
    let ids = vec![
        a.clone(),
        "a/b".to_string(),
        "missing-1".to_string(),
        a.clone(),
        b.clone(),
        a.clone(),
    ];
    let out = h
        .client()
        .get_many(TaskKind::ImageGeneration, &ids, 4)
        .await;
    assert_eq!(out.len(), ids.len());
    assert_eq!(out[0].as_ref().unwrap().id, a);
    assert_eq!(
        out[1].as_ref().unwrap_err().kind().as_str(),
        "invalid_request"
    );
    assert_eq!(out[2].as_ref().unwrap_err().kind().as_str(), "not_found");
    assert_eq!(out[3].as_ref().unwrap().id, a);
    assert_eq!(out[4].as_ref().unwrap().status, TaskStatus::Processing);
    assert_eq!(out[5].as_ref().unwrap().id, a);
    assert_eq!(h.count(&a).await, 1, "duplicates are queried once");
    assert_eq!(h.count(&b).await, 1);
    assert_eq!(h.requests().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_with_converts_each_result_once_in_input_order() {
    let h = H::start().await;
    let a = h.seed_status("succeed").await;
    let b = h.seed_status("failed").await;
    let ids = vec![b.clone(), a.clone(), "missing-2".to_string(), b.clone()];
    let mut calls = 0;
    let out: Vec<String> = h
        .client()
        .get_many_with(TaskKind::ImageGeneration, &ids, 2, |r| {
            calls += 1;
            match r {
                Ok(t) => format!("{}={}", t.id, t.status),
                Err(e) => format!("error:{}", e.kind().as_str()),
            }
        })
        .await;
    assert_eq!(
        out,
        [
            format!("{b}=failed"),
            format!("{a}=succeed"),
            "error:not_found".to_string(),
            format!("{b}=failed"),
        ]
    );
    assert_eq!(calls, 3, "one conversion per unique id");
    assert_eq!(h.count(&b).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_chunks_answers_every_position_and_stops_when_dropped() {
    let h = H::start().await;
    let a = h.seed_status("succeed").await;
    let b = h.seed_status("failed").await;
    let slow = h.seed_status("processing").await;
    h.fault(json!({"fault": "delay", "times": 0, "delay_ms": 3000, "match": {"task_id": slow}}))
        .await;
    let ids = vec![
        a.clone(),
        b.clone(),
        "x/y".to_string(),
        a.clone(),
        slow.clone(),
    ];
    let mut chunks = Box::pin(
        h.client()
            .get_many_chunks(TaskKind::ImageGeneration, &ids, 8),
    );
    let mut seen: HashMap<Vec<usize>, String> = HashMap::new();
    while seen.len() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(2), chunks.next())
            .await
            .expect("the fast answers come before the slow one")
            .expect("the stream is not over")
            .expect("no panic");
        assert!(!chunk.is_empty(), "a chunk holds at least one answer");
        for item in chunk {
            let shown = match item.result {
                Ok(t) => format!("{}={}", t.id, t.status),
                Err(e) => format!("error:{}", e.kind().as_str()),
            };
            assert!(seen.insert(item.positions, shown).is_none(), "each id once");
        }
    }
    assert_eq!(seen[&vec![0, 3]], format!("{a}=succeed"));
    assert_eq!(seen[&vec![1]], format!("{b}=failed"));
    assert_eq!(seen[&vec![2]], "error:invalid_request");
    // Dropping the stream aborts the query still in flight: the emulator sees the client
    // go away (499) long before its 3 s delay ends.
    drop(chunks);
    let started = std::time::Instant::now();
    let statuses = loop {
        let statuses: Vec<i64> = h
            .requests()
            .await
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(&slow)))
            .filter_map(|r| r["status"].as_i64())
            .collect();
        if !statuses.is_empty() || started.elapsed() > Duration::from_secs(2) {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(statuses, [499], "the slow query was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_a_thousand_tasks() {
    let h = H::start().await;
    fast_lifecycle(&h).await;
    let client = h.client();
    let seeded: Vec<String> = futures::stream::iter(0..990)
        .map(|i| {
            let h = &h;
            async move {
                h.seed_status(if i % 10 == 0 { "failed" } else { "succeed" })
                    .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut ids = seeded;
    for _ in 0..10 {
        ids.push(
            client
                .create_image_task(&ImageGenerationRequest::new("fox"))
                .await
                .unwrap()
                .id,
        );
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);
    let opts = WatchOptions {
        timeout: Duration::from_secs(20),
        poll_interval: Duration::from_millis(50),
        max_poll_interval: Duration::from_millis(100),
        concurrency: 64,
        cancel: None,
    };
    let stream = client.watch(TaskKind::ImageGeneration, ids.clone(), opts);
    let updates: Vec<_> = tokio::time::timeout(Duration::from_secs(25), stream.collect::<Vec<_>>())
        .await
        .expect("stream ends");
    let mut terminal: HashMap<String, TaskStatus> = HashMap::new();
    for u in updates {
        let u = u.expect("no errors");
        if u.task.is_terminal() {
            assert!(
                terminal
                    .insert(u.task.id.clone(), u.task.status.clone())
                    .is_none(),
                "one terminal update per id"
            );
        }
    }
    assert_eq!(terminal.len(), 1000);
    for id in &ids {
        assert!(terminal.contains_key(id), "{id}");
    }
    assert_eq!(
        terminal
            .values()
            .filter(|s| **s == TaskStatus::Failed)
            .count(),
        99
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_writes_pngs_and_refuses_unfinished_tasks() {
    let h = H::start().await;
    let client = h.client();
    let id = h.seed(json!({"status": "succeed", "n": 2})).await;
    let task = client.get_image_task(&id).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = client.download_results(&task, dir.path()).await.unwrap();
    assert_eq!(files.len(), 2);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            f.display()
        );
        assert_eq!(f.extension().unwrap(), "png");
    }
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 2, "no temporary files left");

    let pid = h.seed_status("processing").await;
    let pending = client.get_image_task(&pid).await.unwrap();
    let e = client
        .download_results(&pending, dir.path())
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "invalid_request");
    let fid = h
        .seed(json!({"status": "failed", "status_msg": "bad pixels"}))
        .await;
    let failed = client.get_image_task(&fid).await.unwrap();
    let e = client
        .download_results(&failed, dir.path())
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "task_failed");
    assert!(e.message().contains("bad pixels"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

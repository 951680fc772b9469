//! Security: secrets and tokens never leak (errors, Debug, logs at TRACE level), and ids that
//! try path injection are refused before any request.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::H;
use klingwatch::{Client, RetryPolicy, TaskKind, WaitOptions};
use klingwatch_mock::{MockConfig, DEFAULT_ACCESS_KEY};
use serde_json::json;

const SECRET: &str = "sk-LEAKCANARY-7f3a9c1e2b";
const API_KEY: &str = "ak-LEAKCANARY-api-5d8e";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, text: &str, tokens: &[String]) {
    assert!(!text.contains(SECRET), "SecretKey leaked in {what}: {text}");
    assert!(!text.contains(API_KEY), "API key leaked in {what}: {text}");
    for t in tokens {
        assert!(!text.contains(t.as_str()), "a full token leaked in {what}");
        // The signature part alone is as good as the token for nobody, but never print it.
        let sig = t.rsplit('.').next().unwrap();
        assert!(!text.contains(sig), "a token signature leaked in {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_leak_on_any_error_path() {
    let logs = Buf::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();

    let mut cfg = MockConfig::default();
    cfg.accounts.push(klingwatch_mock::Account {
        access_key: "leak-ak".into(),
        secret_key: SECRET.into(),
    });
    cfg.api_keys.push(API_KEY.into());
    let h = H::start_with(cfg).await;
    let policy = RetryPolicy {
        max_retries: 1,
        initial_backoff: Duration::from_millis(5),
        concurrency_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let jwt = Client::builder()
        .access_key("leak-ak")
        .secret_key(SECRET)
        .base_url(h.url.clone())
        .retry_policy(policy.clone())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let bearer = Client::builder()
        .api_key(API_KEY)
        .base_url(h.url.clone())
        .retry_policy(policy.clone())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let wrong = Client::builder()
        .access_key(DEFAULT_ACCESS_KEY)
        .secret_key(SECRET)
        .base_url(h.url.clone())
        .retry_policy(policy)
        .build()
        .unwrap();
    let tokens = vec![jwt.token().unwrap(), wrong.token().unwrap()];

    let matrix: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../tests/faults.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let mut texts = vec![
        format!("{jwt:?}"),
        format!("{bearer:?}"),
        format!("{wrong:?}"),
    ];
    for row in matrix["rows"].as_array().unwrap() {
        for client in [&jwt, &bearer] {
            let id = h.seed_status("succeed").await;
            if !row["fault"].is_null() {
                let mut f = row["fault"].clone();
                f["match"] = json!({ "task_id": id });
                if f["retry_after"]
                    .as_str()
                    .is_some_and(|s| s.starts_with('@'))
                {
                    f["retry_after"] = json!("0");
                }
                h.fault(f).await;
            }
            if let Err(e) = client.get_image_task(&id).await {
                texts.push(format!("{e}"));
                texts.push(format!("{e:?}"));
            }
        }
    }
    // Wrong secret (1000-range), bad input, a create refused by validation, a timed-out wait.
    for e in [
        wrong.get_image_task("123").await.unwrap_err(),
        jwt.get_image_task("../etc").await.unwrap_err(),
        jwt.create_task(TaskKind::ImageGeneration, json!({}))
            .await
            .unwrap_err(),
        jwt.wait(
            TaskKind::ImageGeneration,
            &h.seed_status("processing").await,
            WaitOptions {
                timeout: Duration::from_millis(100),
                ..WaitOptions::default()
            },
        )
        .await
        .unwrap_err(),
    ] {
        texts.push(format!("{e}"));
        texts.push(format!("{e:?}"));
    }
    for (i, t) in texts.iter().enumerate() {
        assert_clean(&format!("error/debug text #{i}"), t, &tokens);
    }
    let log = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(
        log.len() > 1000,
        "TRACE logging captured too little to mean anything"
    );
    assert_clean("TRACE logs", &log, &tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_ids_are_refused_before_any_request() {
    let h = H::start().await;
    let client = h.client();
    let huge = "9".repeat(10 * 1024);
    let bad: Vec<&str> = vec![
        "../x",
        "..",
        ".",
        "%2e%2e",
        "%2E%2E%2F",
        "?x=1",
        "a?x=",
        "#frag",
        "a/b",
        "a\\b",
        "a\u{2028}b",
        "a\u{2029}b",
        "a\u{FF0F}b",
        "a\u{2215}b",
        "\u{FF0E}\u{FF0E}\u{FF0F}x",
        "a\u{0000}b",
        "a\r\nX-Injected: 1",
        huge.as_str(),
        "",
    ];
    for id in &bad {
        let e = client.get_image_task(id).await.unwrap_err();
        assert_eq!(e.kind().as_str(), "invalid_request", "{id:?}");
        assert_eq!(e.attempts(), 0);
        let e = client
            .get_task_by_external_id(TaskKind::ImageGeneration, id)
            .await
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "invalid_request", "external {id:?}");
        let e = client
            .wait(TaskKind::TextToVideo, id, WaitOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "invalid_request", "wait {id:?}");
    }
    let many = client.get_many(TaskKind::ImageGeneration, &bad, 8).await;
    assert_eq!(many.len(), bad.len());
    assert!(many.iter().all(|r| r
        .as_ref()
        .is_err_and(|e| e.kind().as_str() == "invalid_request")));
    assert!(
        h.requests().await.is_empty(),
        "nothing may reach the server"
    );
}

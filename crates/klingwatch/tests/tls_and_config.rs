//! TLS trust, API-key auth, base URL and region configuration, and the out-of-order rule.

mod common;

use common::H;
use klingwatch::{Client, Region, Task, TaskKind};
use klingwatch_mock::{MockConfig, DEFAULT_API_KEY};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_is_trusted_only_with_its_ca() {
    let h = H::start_with(MockConfig {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(h.url.starts_with("https://"), "{}", h.url);
    let ca = h.mock.ca_pem().expect("a CA in TLS mode");
    let untrusted = h.builder().max_retries(0).build().unwrap();
    let err = untrusted.get_image_task("123").await.unwrap_err();
    assert_eq!(err.kind().as_str(), "connection", "{err}");
    let trusted = h.builder().ca_cert_pem(ca.into_bytes()).build().unwrap();
    let err = trusted.get_image_task("123").await.unwrap_err();
    assert_eq!(
        err.kind().as_str(),
        "not_found",
        "TLS handshake passed, the server answered: {err}"
    );
    let bad = h
        .builder()
        .ca_cert_pem(b"not a pem".to_vec())
        .build()
        .unwrap_err();
    assert_eq!(bad.kind().as_str(), "config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_sent_as_the_bearer() {
    let h = H::start().await;
    let client = Client::builder()
        .api_key(DEFAULT_API_KEY)
        .base_url(h.url.clone())
        .build()
        .unwrap();
    let created = client
        .create_task(TaskKind::ImageGeneration, json!({"prompt": "a cat"}))
        .await
        .unwrap();
    let read = client.get_image_task(&created.id).await.unwrap();
    assert_eq!(read.id, created.id);
    assert_eq!(client.token().unwrap(), DEFAULT_API_KEY);
    let wrong = Client::builder()
        .api_key("nope")
        .base_url(h.url.clone())
        .build()
        .unwrap();
    let err = wrong.get_image_task(&created.id).await.unwrap_err();
    assert_eq!(
        (err.kind().as_str(), err.kling_code()),
        ("authentication", Some(1002)),
        "an unknown key is not a JWT: malformed"
    );
    assert!(!format!("{err:?}{err}").contains("nope"));
}

#[test]
fn base_url_and_region_configuration() {
    let b = || Client::builder().access_key("ak").secret_key("sk");
    if std::env::var("KLING_BASE_URL").is_err() {
        assert_eq!(
            b().build().unwrap().base_url(),
            "https://api-singapore.klingai.com"
        );
        assert_eq!(
            b().region(Region::China).build().unwrap().base_url(),
            "https://api-beijing.klingai.com"
        );
    }
    assert_eq!(
        b().base_url("http://127.0.0.1:8080/")
            .build()
            .unwrap()
            .base_url(),
        "http://127.0.0.1:8080"
    );
    for bad in ["ftp://x", "not a url", "http://h/?q=1"] {
        assert_eq!(
            b().base_url(bad).build().unwrap_err().kind().as_str(),
            "config",
            "{bad}"
        );
    }
    // Credentials in the URL are refused, and never quoted back (well-formed or not).
    for bad in [
        "http://user:s3cr3t-in-url@127.0.0.1:8080",
        "https://:s3cr3t-in-url@api.example",
        "http://user:s3cr3t-in-url@",
        "user:s3cr3t-in-url@host",
    ] {
        let err = b().base_url(bad).build().unwrap_err();
        assert_eq!(err.kind().as_str(), "config", "{bad}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cr3t-in-url"), "{bad} -> {shown}");
    }
    assert_eq!("cn".parse::<Region>().unwrap(), Region::China);
    assert_eq!(
        "mars".parse::<Region>().unwrap_err().kind().as_str(),
        "config"
    );
}

#[test]
fn newest_updated_at_wins_when_updates_arrive_out_of_order() {
    let t = |status: &str, updated: i64| {
        Task::from_value(
            TaskKind::ImageGeneration,
            json!({"task_id": "t", "task_status": status, "updated_at": updated}),
        )
        .unwrap()
    };
    let processing = t("processing", 2000);
    let late_submitted = t("submitted", 1000);
    let succeed = t("succeed", 3000);
    assert!(
        !processing.is_superseded_by(&late_submitted),
        "an older callback never replaces a newer poll"
    );
    assert!(processing.is_superseded_by(&succeed));
    assert!(!succeed.is_superseded_by(&processing));
    // Same timestamp: a terminal status beats a non-terminal one.
    assert!(t("processing", 3000).is_superseded_by(&t("succeed", 3000)));
    assert!(!t("succeed", 3000).is_superseded_by(&t("processing", 3000)));
}

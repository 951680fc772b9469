#![allow(dead_code)]
//! Shared harness: an emulator, a fast client and the control API.

use std::time::Duration;

use klingwatch::{Client, ClientBuilder, RetryPolicy};
use klingwatch_mock::{MockConfig, MockServer, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY};
use serde_json::{json, Value};

pub struct H {
    pub mock: MockServer,
    pub http: reqwest::Client,
    pub url: String,
}

pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(20),
        concurrency_backoff: Duration::from_millis(50),
        ..Default::default()
    }
}

impl H {
    pub async fn start() -> H {
        H::start_with(MockConfig::default()).await
    }

    /// An emulator serving HTTPS with its own CA (`mock.ca_pem()`).
    pub async fn start_tls() -> H {
        H::start_with(MockConfig {
            tls: true,
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(config: MockConfig) -> H {
        klingwatch::install_crypto_provider();
        let mock = MockServer::start(config).await.expect("mock starts");
        let url = mock.url();
        let mut http = reqwest::Client::builder();
        if let Some(ca) = mock.ca_pem() {
            http = http.add_root_certificate(
                reqwest::Certificate::from_pem(ca.as_bytes()).expect("the emulator's CA"),
            );
        }
        H {
            mock,
            http: http.build().expect("control client"),
            url,
        }
    }

    /// A client builder for this emulator (trusting its CA in TLS mode).
    pub fn builder(&self) -> ClientBuilder {
        let b = self.untrusting_builder();
        match self.mock.ca_pem() {
            Some(ca) => b.ca_cert_pem(ca.into_bytes()),
            None => b,
        }
    }

    /// [`H::builder`] without the emulator's CA.
    pub fn untrusting_builder(&self) -> ClientBuilder {
        Client::builder()
            .access_key(DEFAULT_ACCESS_KEY)
            .secret_key(DEFAULT_SECRET_KEY)
            .base_url(self.url.clone())
            .retry_policy(fast_policy())
    }

    pub fn client(&self) -> Client {
        self.builder().build().expect("client builds")
    }

    pub async fn ctl(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/__mock{}", self.url, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control request");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "control {path} failed: {status} {v}");
        v
    }

    pub async fn fault(&self, spec: Value) {
        self.ctl(reqwest::Method::POST, "/faults", Some(spec)).await;
    }

    pub async fn clear_faults(&self) {
        self.ctl(reqwest::Method::DELETE, "/faults", None).await;
    }

    pub async fn requests(&self) -> Vec<Value> {
        let v = self.ctl(reqwest::Method::GET, "/requests", None).await;
        v["requests"].as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_log(&self) {
        self.ctl(reqwest::Method::DELETE, "/requests", None).await;
    }

    pub async fn config(&self, body: Value) {
        self.ctl(reqwest::Method::POST, "/config", Some(body)).await;
    }

    pub async fn clock(&self, offset_secs: i64) {
        self.ctl(
            reqwest::Method::POST,
            "/clock",
            Some(json!({ "offset_secs": offset_secs })),
        )
        .await;
    }

    /// Seeds a task with a fixed status; returns its id.
    pub async fn seed(&self, body: Value) -> String {
        let v = self.ctl(reqwest::Method::POST, "/tasks", Some(body)).await;
        let v = if v.get("data").is_some_and(|d| d.is_object()) {
            v["data"].clone()
        } else {
            v
        };
        v["task_id"].as_str().expect("seeded task id").to_owned()
    }

    pub async fn seed_status(&self, status: &str) -> String {
        self.seed(json!({ "status": status })).await
    }

    /// `n` tasks seeded with `status`.
    pub async fn seed_many(&self, n: usize, status: &str) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(self.seed_status(status).await);
        }
        ids
    }

    /// One counter of the emulator's `/__mock/stats` (`connections`, `open_connections`,
    /// `api_connections`, `open_api_connections`).
    pub async fn stat(&self, name: &str) -> u64 {
        self.ctl(reqwest::Method::GET, "/stats", None).await[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in /__mock/stats"))
    }

    /// Requests in the log whose path contains `needle`.
    pub async fn count(&self, needle: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|r| r["path"].as_str().unwrap_or("").contains(needle))
            .count()
    }
}

pub fn vector(name: &str) -> Value {
    let path = format!("{}/../../tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vector file"))
        .expect("vector json")
}

//! Shared helpers of the emulator's integration tests: an HTTP client, PyJWT-style token
//! signing and control-API shortcuts.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use klingwatch_mock::{MockConfig, MockServer, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY};
use serde_json::{json, Value};
use sha2::Sha256;

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> reqwest::Client {
    install_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token exactly as the official PyJWT sample makes it.
pub fn jwt_with(ak: &str, sk: &str, exp: i64, nbf: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{ak}","exp":{exp},"nbf":{nbf}}}"#));
    let mut mac = Hmac::<Sha256>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// A valid token of the default test account.
pub fn token() -> String {
    let now = now_secs();
    jwt_with(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, now + 1800, now - 5)
}

pub fn bearer() -> String {
    format!("Bearer {}", token())
}

/// Fast lifecycle: processing after 40 ms, terminal after 120 ms.
pub fn fast_config() -> MockConfig {
    let mut c = MockConfig::default();
    c.timing.processing_after = Duration::from_millis(40);
    c.timing.finish_after = Duration::from_millis(120);
    c
}

pub struct Harness {
    pub server: MockServer,
    pub url: String,
    pub http: reqwest::Client,
    pub auth: String,
}

impl Harness {
    pub async fn start(config: MockConfig) -> Harness {
        let server = MockServer::start(config).await.unwrap();
        let url = server.url();
        Harness {
            server,
            url,
            http: client(),
            auth: bearer(),
        }
    }

    pub async fn fast() -> Harness {
        Harness::start(fast_config()).await
    }

    /// GET an authenticated `/v1` path; returns (status, json body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{}", self.url, path))
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    /// POST JSON to an authenticated `/v1` path.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{}", self.url, path))
            .header("Authorization", &self.auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    /// Create an image generation task; returns its data.
    pub async fn create(&self, body: Value) -> Value {
        let (s, v) = self.post("/v1/images/generations", body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["code"], 0);
        v["data"].clone()
    }

    /// Call the control API.
    pub async fn ctl(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}/__mock{}", self.url, path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        assert!(r.status().is_success(), "control {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn ctl_post(&self, path: &str, body: Value) -> Value {
        self.ctl(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn fault(&self, spec: Value) -> i64 {
        self.ctl_post("/faults", spec).await["id"].as_i64().unwrap()
    }

    pub async fn requests(&self) -> Vec<Value> {
        self.ctl(reqwest::Method::GET, "/requests", None).await["requests"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn clock(&self, offset_secs: i64) {
        self.ctl_post("/clock", json!({ "offset_secs": offset_secs }))
            .await;
    }
}

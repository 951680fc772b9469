//! Emulator configuration: accounts, API keys, lifecycle timing, limits, TLS and webhook signing.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::FaultSpec;

/// AccessKey of the documented default test account.
pub const DEFAULT_ACCESS_KEY: &str = "klingwatch-test-ak";
/// SecretKey of the documented default test account.
pub const DEFAULT_SECRET_KEY: &str = "klingwatch-test-sk";
/// The documented default test API key.
pub const DEFAULT_API_KEY: &str = "klingwatch-test-api-key";

/// One AccessKey/SecretKey pair the emulator accepts (HS256 JWT, `iss` = access key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The AccessKey (the JWT `iss` claim).
    pub access_key: String,
    /// The SecretKey (the HS256 key, as UTF-8 bytes).
    pub secret_key: String,
}

impl Account {
    /// Build an account from an AccessKey and a SecretKey.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Account {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Account")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Lifecycle durations of created tasks.
///
/// A task is `submitted` until `processing_after`, `processing` until `finish_after`, then
/// terminal (`succeed`, or `failed` when its prompt holds a failure marker). Both durations are
/// multiplied by `time_scale` (0.01 = 100 times faster).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Time from creation to `processing`.
    pub processing_after: Duration,
    /// Time from creation to the terminal status.
    pub finish_after: Duration,
    /// Multiplier applied to both durations.
    pub time_scale: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            processing_after: Duration::from_secs(1),
            finish_after: Duration::from_secs(4),
            time_scale: 1.0,
        }
    }
}

impl Timing {
    /// Scaled `(processing_after, finish_after)` in milliseconds; `finish >= processing`.
    pub(crate) fn scaled_ms(&self) -> (i64, i64) {
        let scale = if self.time_scale.is_finite() && self.time_scale >= 0.0 {
            self.time_scale
        } else {
            1.0
        };
        let p = (self.processing_after.as_secs_f64() * 1000.0 * scale).round();
        let f = (self.finish_after.as_secs_f64() * 1000.0 * scale).round();
        let p = p.clamp(0.0, 1e15) as i64;
        let f = (f.clamp(0.0, 1e15) as i64).max(p);
        (p, f)
    }
}

/// Full configuration of one emulator instance.
#[derive(Clone)]
pub struct MockConfig {
    /// Interface to bind (default `127.0.0.1`).
    pub host: String,
    /// Port to bind; 0 picks an ephemeral port (default).
    pub port: u16,
    /// Serve HTTPS with a freshly generated certificate for `localhost` and `127.0.0.1`.
    pub tls: bool,
    /// When `tls`, write the CA certificate PEM that clients must trust to this path.
    pub ca_pem_path: Option<PathBuf>,
    /// When `tls`, offer only HTTP/1.1 in ALPN (a server without HTTP/2, as some proxies and
    /// load balancers are).
    pub http1_only: bool,
    /// Accepted AccessKey/SecretKey pairs.
    pub accounts: Vec<Account>,
    /// Accepted API keys (sent as-is as the bearer token).
    pub api_keys: Vec<String>,
    /// Task lifecycle durations.
    pub timing: Timing,
    /// Running (non-terminal) tasks per account before create answers 429/1303.
    pub concurrency_limit: usize,
    /// Standard Webhooks secret (`whsec_...`); when set, callbacks are signed.
    pub webhook_secret: Option<String>,
    /// Seed of the deterministic generators (task ids, fault probabilities).
    pub seed: u64,
    /// Faults installed at start (and re-installed by `POST /__mock/reset`).
    pub faults: Vec<FaultSpec>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            tls: false,
            ca_pem_path: None,
            http1_only: false,
            accounts: vec![Account::new(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)],
            api_keys: vec![DEFAULT_API_KEY.to_string()],
            timing: Timing::default(),
            concurrency_limit: 100,
            webhook_secret: None,
            seed: 0,
            faults: Vec::new(),
        }
    }
}

impl std::fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets (secret keys, API keys, webhook secret) are never printed.
        f.debug_struct("MockConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_pem_path", &self.ca_pem_path)
            .field("http1_only", &self.http1_only)
            .field("accounts", &self.accounts)
            .field(
                "api_keys",
                &format_args!("<{} redacted>", self.api_keys.len()),
            )
            .field("timing", &self.timing)
            .field("concurrency_limit", &self.concurrency_limit)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("seed", &self.seed)
            .field("faults", &self.faults)
            .finish()
    }
}

impl MockConfig {
    /// Convenience: the default config with a time scale (e.g. `0.01` for 100x faster tasks).
    pub fn with_time_scale(mut self, time_scale: f64) -> Self {
        self.timing.time_scale = time_scale;
        self
    }
}

/// The JSON configuration file accepted by `--config` (every field optional).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<bool>,
    #[serde(alias = "ca_out")]
    pub ca_pem_path: Option<PathBuf>,
    pub accounts: Option<Vec<Account>>,
    pub api_keys: Option<Vec<String>>,
    pub processing_after_ms: Option<u64>,
    pub finish_after_ms: Option<u64>,
    pub time_scale: Option<f64>,
    pub concurrency_limit: Option<usize>,
    pub webhook_secret: Option<String>,
    pub seed: Option<u64>,
    pub faults: Option<Vec<FaultSpec>>,
}

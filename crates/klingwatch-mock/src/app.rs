//! The shared application state of one emulator instance and its clock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Identity};
use crate::callbacks::CallbackClient;
use crate::config::{MockConfig, Timing};
use crate::faults::{FaultSpec, Faults};
use crate::reqlog::RequestLog;
use crate::state::Store;

/// Settings changeable at run time through `POST /__mock/config`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Runtime {
    pub timing: Timing,
    pub concurrency_limit: usize,
}

/// Everything a request handler needs.
pub(crate) struct Shared {
    pub auth: Authenticator,
    pub store: RwLock<Store>,
    clock_offset_ms: AtomicI64,
    runtime: RwLock<Runtime>,
    pub initial: Runtime,
    pub initial_faults: Vec<FaultSpec>,
    pub faults: Faults,
    pub log: RequestLog,
    /// Base URL of this instance (result file URLs point here).
    pub base_url: String,
    /// The webhook secret as configured (`whsec_...`).
    pub webhook_secret: Option<String>,
    pub cancel: CancellationToken,
    /// Bumped by reset so that pending callback timers stop.
    pub generation: AtomicU64,
    /// Connections accepted so far (TCP, before any TLS handshake).
    pub connections: AtomicU64,
    /// Connections open now (accepted and not yet closed).
    pub open_connections: AtomicU64,
    /// Open connections that have carried a request to the API (not only to `/__mock`): what
    /// a client under test holds open, whatever a test's control client does.
    pub open_api_connections: AtomicU64,
    /// Connections so far that carried a request to the API.
    pub api_connections: AtomicU64,
    pub callbacks: CallbackClient,
    pub seed: u64,
    /// Identity used by `POST /__mock/tasks` when none is named.
    pub default_identity: Option<Identity>,
}

/// Real wall clock in Unix milliseconds.
pub(crate) fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shared {
    pub(crate) fn new(config: &MockConfig, base_url: String, cancel: CancellationToken) -> Self {
        let auth = Authenticator::new(&config.accounts, &config.api_keys);
        let default_identity = config
            .accounts
            .first()
            .and_then(|a| auth.account_identity(&a.access_key))
            .or_else(|| {
                config
                    .api_keys
                    .first()
                    .and_then(|k| auth.api_key_identity(k))
            });
        let initial = Runtime {
            timing: config.timing,
            concurrency_limit: config.concurrency_limit,
        };
        let faults = Faults::new(config.seed);
        for f in &config.faults {
            faults.add(f.clone());
        }
        Shared {
            auth,
            store: RwLock::new(Store::new(config.seed)),
            clock_offset_ms: AtomicI64::new(0),
            runtime: RwLock::new(initial),
            initial,
            initial_faults: config.faults.clone(),
            faults,
            log: RequestLog::new(),
            base_url,
            webhook_secret: config.webhook_secret.clone(),
            cancel,
            generation: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            open_api_connections: AtomicU64::new(0),
            api_connections: AtomicU64::new(0),
            callbacks: CallbackClient::new(),
            seed: config.seed,
            default_identity,
        }
    }

    /// Emulator clock in Unix milliseconds (wall clock plus the configured offset).
    pub(crate) fn now_ms(&self) -> i64 {
        wall_ms() + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Clock offset in milliseconds.
    pub(crate) fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Set the clock offset in milliseconds.
    pub(crate) fn set_clock_offset_ms(&self, ms: i64) {
        self.clock_offset_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn runtime(&self) -> Runtime {
        *self.runtime.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_runtime(&self, r: Runtime) {
        *self.runtime.write().unwrap_or_else(|e| e.into_inner()) = r;
    }

    pub(crate) fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn store_mut(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Back to the state right after start (tasks, faults, log, clock, run-time settings).
    pub(crate) fn reset(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.store_mut().clear();
        self.faults.clear();
        self.faults.reseed(self.seed);
        for f in &self.initial_faults {
            self.faults.add(f.clone());
        }
        self.log.clear();
        self.set_clock_offset_ms(0);
        self.set_runtime(self.initial);
        self.auth.clear_cache();
    }
}

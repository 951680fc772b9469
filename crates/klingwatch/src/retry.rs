//! The retry policy: which failures are retried, how long to wait, and the retry budget.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::error::{code_info, Error, ErrorKind, RetryAction};

/// Retry settings of a client.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// First backoff (default 0.5 s); doubles each retry.
    pub initial_backoff: Duration,
    /// Backoff cap (default 8 s).
    pub max_backoff: Duration,
    /// Minimum first delay on 1303 "over the concurrency limit" (default 1 s).
    pub concurrency_backoff: Duration,
    /// The longest `Retry-After` honoured (default 60 s); longer values are capped.
    pub max_retry_after: Duration,
    /// Retry budget: retries allowed beyond the earned ones (default 100).
    pub budget_capacity: u32,
    /// Retry budget: fraction of a retry earned by each successful request (default 0.2).
    pub budget_ratio: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            concurrency_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            budget_capacity: 100,
            budget_ratio: 0.2,
        }
    }
}

/// Whether a request may be repeated without risk of duplicating a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads: retried on every transient failure.
    Read,
    /// Creates: retried only on refusals (1302/1303), where no task was made.
    Create,
}

/// Decides whether `err` is retried for a request of `idempotency`.
pub fn should_retry(err: &Error, idempotency: Idempotency) -> bool {
    if !err.is_retryable() {
        return false;
    }
    match idempotency {
        Idempotency::Read => true,
        Idempotency::Create => {
            matches!(
                err.kling_code().and_then(code_info).map(|i| i.action),
                Some(RetryAction::Backoff | RetryAction::BackoffMin1s)
            ) || (err.kind() == ErrorKind::RateLimited && err.kling_code().is_none())
        }
    }
}

/// Whether a failed create might nonetheless have created the task.
pub fn create_outcome_unknown(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::Decode
    )
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based) after `err`: the server's
    /// `Retry-After` when sent (capped), else exponential backoff with equal jitter;
    /// at least `concurrency_backoff` after a 1303.
    pub fn delay(&self, retry: u32, err: &Error) -> Duration {
        if let Some(ra) = err.retry_after() {
            return ra.min(self.max_retry_after);
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(20));
        let base = exp.min(self.max_backoff);
        let half = base / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos() as u64))
        };
        let mut delay = half + jitter;
        let min1s = err.kling_code().and_then(code_info).map(|i| i.action)
            == Some(RetryAction::BackoffMin1s);
        if min1s && delay < self.concurrency_backoff {
            delay = self.concurrency_backoff;
        }
        delay
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A per-client token bucket of retries, so that a mass outage does not become a retry
/// storm: each retry spends one token, each success earns `ratio` of one.
#[derive(Debug)]
pub struct RetryBudget {
    /// Milli-tokens available.
    balance: AtomicI64,
    capacity: i64,
    earn: i64,
}

impl RetryBudget {
    /// A full budget of `capacity` retries, earning `ratio` retry per success.
    pub fn new(capacity: u32, ratio: f64) -> RetryBudget {
        let capacity = i64::from(capacity) * 1000;
        RetryBudget {
            balance: AtomicI64::new(capacity),
            capacity,
            earn: (ratio.clamp(0.0, 1.0) * 1000.0) as i64,
        }
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b >= 1000).then_some(b - 1000)
            })
            .is_ok()
    }

    /// Credits a successful request.
    pub fn deposit(&self) {
        if self.earn == 0 {
            return;
        }
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b < self.capacity).then_some((b + self.earn).min(self.capacity))
            });
    }

    /// Whole retries left.
    pub fn remaining(&self) -> u64 {
        (self.balance.load(Ordering::Acquire).max(0) / 1000) as u64
    }
}

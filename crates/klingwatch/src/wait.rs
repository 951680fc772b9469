//! Waiting for tasks: polling with growing, jittered intervals, a deadline, cancellation,
//! and watching many tasks at once with one shared concurrency limit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::task::{validate_task_id, Task, TaskKind, TaskStatus};

/// Called on each status change of a waited task; an error ends the wait with that error.
pub type OnUpdate = Arc<dyn Fn(&TaskUpdate) -> Result<()> + Send + Sync>;

/// Options of [`Client::wait`].
#[derive(Clone)]
pub struct WaitOptions {
    /// Overall deadline (default 10 min).
    pub timeout: Duration,
    /// First poll interval (default 1 s).
    pub poll_interval: Duration,
    /// Interval cap (default 10 s); intervals grow ×1.5 with ±10 % jitter.
    pub max_poll_interval: Duration,
    /// Called on each status change (not each poll).
    pub on_update: Option<OnUpdate>,
    /// Cancels the wait (dropping the future cancels too).
    pub cancel: Option<CancellationToken>,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(10),
            on_update: None,
            cancel: None,
        }
    }
}

impl fmt::Debug for WaitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitOptions")
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("on_update", &self.on_update.is_some())
            .finish()
    }
}

impl WaitOptions {
    fn check(&self) -> Result<()> {
        if self.poll_interval.is_zero() || self.max_poll_interval < self.poll_interval {
            return Err(Error::invalid(
                "poll_interval must be positive and at most max_poll_interval",
            ));
        }
        Ok(())
    }
}

/// Options of [`Client::watch`].
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Overall deadline (default 10 min); tasks still running then end with `wait_timeout`.
    pub timeout: Duration,
    /// First poll interval of each task (default 1 s).
    pub poll_interval: Duration,
    /// Interval cap (default 10 s).
    pub max_poll_interval: Duration,
    /// Queries in flight at once, shared by all tasks (default 16).
    pub concurrency: usize,
    /// Cancels the watch (dropping the stream cancels too).
    pub cancel: Option<CancellationToken>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(10),
            concurrency: 16,
            cancel: None,
        }
    }
}

/// A status change: the task as now seen, and the status before (None on first sight).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskUpdate {
    /// The task as now seen.
    pub task: Task,
    /// The previous status, or None when this is the first observation.
    pub previous: Option<TaskStatus>,
}

pub(crate) fn next_interval(current: Duration, max: Duration) -> Duration {
    current.mul_f64(1.5).min(max)
}

pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..=1.1))
}

fn wait_timeout(task_id: &str, last: Option<TaskStatus>, timeout: Duration) -> Error {
    let seen = last.as_ref().map(|s| s.as_str()).unwrap_or("nothing yet");
    Error::new(
        ErrorKind::WaitTimeout,
        format!(
            "task {task_id} did not finish within {:.1}s (last status: {seen})",
            timeout.as_secs_f64()
        ),
    )
    .with_task_id(task_id)
    .with_last_status(last)
}

fn cancelled(task_id: Option<&str>) -> Error {
    let e = Error::new(ErrorKind::Cancelled, "cancelled by the caller");
    match task_id {
        Some(id) => e.with_task_id(id),
        None => e,
    }
}

impl Client {
    /// The status changes of one task until it ends: each item is an update; the last one
    /// is terminal, or an error (`wait_timeout`, `cancelled`, or a final API error).
    /// Transient failures (rate limits, 5xx, dropped connections) are absorbed.
    pub fn wait_updates(
        &self,
        kind: TaskKind,
        task_id: &str,
        options: WaitOptions,
    ) -> impl Stream<Item = Result<TaskUpdate>> + Send + 'static {
        let client = self.clone();
        let id = task_id.to_owned();
        let (tx, rx) = mpsc::channel::<Result<TaskUpdate>>(4);
        let fut = async move {
            if let Err(e) = validate_task_id(&id).and_then(|_| options.check()) {
                let _ = tx.send(Err(e)).await;
                return;
            }
            let deadline = Instant::now() + options.timeout;
            let cancel = options.cancel.clone().unwrap_or_default();
            let mut interval = options.poll_interval;
            let mut last: Option<TaskStatus> = None;
            loop {
                let poll = tokio::time::timeout_at(deadline, client.get_task(kind, &id));
                let outcome = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => { let _ = tx.send(Err(cancelled(Some(&id)))).await; return; }
                    _ = tx.closed() => return,
                    r = poll => r,
                };
                match outcome {
                    Err(_elapsed) => {
                        let _ = tx.send(Err(wait_timeout(&id, last, options.timeout))).await;
                        return;
                    }
                    Ok(Ok(task)) => {
                        if last.as_ref() != Some(&task.status) {
                            let terminal = task.is_terminal();
                            let previous = last.replace(task.status.clone());
                            if tx.send(Ok(TaskUpdate { task, previous })).await.is_err() || terminal
                            {
                                return;
                            }
                        }
                    }
                    Ok(Err(e)) if e.is_retryable() => {
                        tracing::debug!(task_id = %id, kind = e.kind().as_str(), "transient error while waiting; polling on");
                    }
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    let _ = tx.send(Err(wait_timeout(&id, last, options.timeout))).await;
                    return;
                }
                let sleep_until = (now + jittered(interval)).min(deadline);
                interval = next_interval(interval, options.max_poll_interval);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => { let _ = tx.send(Err(cancelled(Some(&id)))).await; return; }
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep_until(sleep_until) => {}
                }
                if Instant::now() >= deadline {
                    let _ = tx.send(Err(wait_timeout(&id, last, options.timeout))).await;
                    return;
                }
            }
        };
        tokio::spawn(fut);
        tokio_stream_from(rx)
    }

    /// Polls a task until it is `succeed` or `failed` and returns it (a failed task is
    /// returned, not raised: see [`Task::raise_for_failure`]).
    ///
    /// `on_update` runs on each status change; if it returns an error the wait ends with it.
    /// Deadline → `wait_timeout` (with the task id and last status); cancellation →
    /// `cancelled`. Dropping the future stops the polling.
    pub async fn wait(&self, kind: TaskKind, task_id: &str, options: WaitOptions) -> Result<Task> {
        let on_update = options.on_update.clone();
        let mut updates = std::pin::pin!(self.wait_updates(kind, task_id, options));
        while let Some(item) = updates.next().await {
            let update = item?;
            if let Some(cb) = &on_update {
                cb(&update)?;
            }
            if update.task.is_terminal() {
                return Ok(update.task);
            }
        }
        Err(cancelled(Some(task_id)))
    }

    /// [`Client::wait`] for an image-generation task.
    pub async fn wait_image_task(&self, task_id: &str, options: WaitOptions) -> Result<Task> {
        self.wait(TaskKind::ImageGeneration, task_id, options).await
    }

    /// Watches many tasks: yields an update each time one changes status, and one error per
    /// task that fails for good (invalid id, not found, auth...) or is still running at the
    /// deadline (`wait_timeout`). Ends when every task is accounted for. Each task keeps its
    /// own poll schedule; finished tasks are no longer polled; queries share one limit.
    /// Memory is O(number of tasks). Duplicate ids are watched once.
    pub fn watch(
        &self,
        kind: TaskKind,
        task_ids: Vec<String>,
        options: WatchOptions,
    ) -> impl Stream<Item = Result<TaskUpdate>> + Send + 'static {
        let client = self.clone();
        let (tx, rx) = mpsc::channel::<Result<TaskUpdate>>(256);
        tokio::spawn(async move { watch_driver(client, kind, task_ids, options, tx).await });
        tokio_stream_from(rx)
    }
}

struct Watched {
    id: String,
    last: Option<TaskStatus>,
    interval: Duration,
    done: bool,
}

async fn watch_driver(
    client: Client,
    kind: TaskKind,
    ids: Vec<String>,
    options: WatchOptions,
    tx: mpsc::Sender<Result<TaskUpdate>>,
) {
    if options.poll_interval.is_zero() || options.max_poll_interval < options.poll_interval {
        let _ = tx
            .send(Err(Error::invalid(
                "poll_interval must be positive and at most max_poll_interval",
            )))
            .await;
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut tasks: Vec<Watched> = Vec::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Err(e) = validate_task_id(&id) {
            if tx.send(Err(e.with_task_id(id))).await.is_err() {
                return;
            }
            continue;
        }
        tasks.push(Watched {
            id,
            last: None,
            interval: options.poll_interval,
            done: false,
        });
    }
    drop(seen);
    let start = Instant::now();
    let deadline = start + options.timeout;
    let cancel = options.cancel.clone().unwrap_or_default();
    let concurrency = options.concurrency.max(1);
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> =
        (0..tasks.len()).map(|i| Reverse((start, i))).collect();
    let mut remaining = tasks.len();
    let mut inflight = FuturesUnordered::new();
    while remaining > 0 {
        let now = Instant::now();
        while inflight.len() < concurrency {
            match due.peek() {
                Some(Reverse((at, _))) if *at <= now => {
                    let Reverse((_, i)) = due.pop().expect("peeked");
                    let c = client.clone();
                    let id = tasks[i].id.clone();
                    inflight.push(async move { (i, c.get_task(kind, &id).await) });
                }
                _ => break,
            }
        }
        let next_due = due
            .peek()
            .map(|Reverse((at, _))| *at)
            .unwrap_or(deadline)
            .min(deadline);
        let can_start_more = inflight.len() < concurrency;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => { let _ = tx.send(Err(cancelled(None))).await; return; }
            _ = tx.closed() => return,
            Some((i, result)) = inflight.next(), if !inflight.is_empty() => {
                let w = &mut tasks[i];
                match result {
                    Ok(task) => {
                        let terminal = task.is_terminal();
                        if w.last.as_ref() != Some(&task.status) {
                            let previous = w.last.replace(task.status.clone());
                            if tx.send(Ok(TaskUpdate { task, previous })).await.is_err() { return; }
                        }
                        if terminal {
                            w.done = true;
                            remaining -= 1;
                        } else {
                            due.push(Reverse((Instant::now() + jittered(w.interval), i)));
                            w.interval = next_interval(w.interval, options.max_poll_interval);
                        }
                    }
                    Err(e) if e.is_retryable() => {
                        due.push(Reverse((Instant::now() + jittered(w.interval), i)));
                        w.interval = next_interval(w.interval, options.max_poll_interval);
                    }
                    Err(e) => {
                        w.done = true;
                        remaining -= 1;
                        if tx.send(Err(e)).await.is_err() { return; }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_due), if can_start_more || inflight.is_empty() => {}
        }
        if Instant::now() >= deadline && remaining > 0 {
            drop(inflight);
            for w in tasks.iter_mut().filter(|w| !w.done) {
                let err = wait_timeout(&w.id, w.last.take(), options.timeout);
                if tx.send(Err(err)).await.is_err() {
                    return;
                }
            }
            return;
        }
    }
}

/// Adapts an mpsc receiver into a `Stream`.
fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

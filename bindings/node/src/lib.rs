//! Node bindings for klingwatch (napi-rs). Every rule lives in the core crate; this only converts.
//!
//! Tasks cross the boundary as JSON text written by serde straight from the core's `Task` (no
//! value tree), already in the camelCase shape of the JS `Task` ([`JsTask`]: this binding's
//! one mapping of the core's fields); the server's object travels as its received text, inline
//! for a single task and, in a `getMany` chunk, beside the JSON in one buffer. Errors are thrown as a JS `Error` whose message is
//! `KLINGWATCH_ERROR:` followed by a JSON payload (kind, message, httpStatus, klingCode,
//! requestId, taskId, retryable, attempts); `index.js` turns it into a `KlingError`.
//! Cancellation goes through numbered cancel tokens: the JS layer makes one per call with an
//! `AbortSignal` and cancels it on `abort`. Every sync entry point catches panics
//! (`catch_unwind`) and async ones settle as rejections, so no panic unwinds into Node;
//! `index.js` turns any native error into a `KlingError`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::stream::{Stream, StreamExt};
use klingwatch::{
    BatchItem, Error, ErrorKind, Image, Task, TaskKind, TaskStatus, TaskUpdate, Video, WaitOptions,
    WatchOptions,
};
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Gives napi a one-worker tokio runtime before any call uses it (its default is a worker per
/// core). It only carries promises: the core's work runs on [`core_rt`]. Should the runtime
/// fail to start, napi makes its default one on first use.
#[napi_derive::module_init]
fn init_runtime() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("klingwatch-napi")
            .build();
        if let Ok(rt) = rt {
            napi::bindgen_prelude::create_custom_tokio_runtime(rt);
        }
    });
}

/// The runtime the core's work runs on, one per process (`klingwatch::start_runtime`: the
/// core's rule for every binding): HTTP connections, calls, batches and pollers, so that a
/// batch runs beside its connections. napi's runtime only waits for it (one hand-off per call,
/// or per `getMany` chunk).
fn core_rt() -> klingwatch::Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<klingwatch::Result<&'static tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| klingwatch::start_runtime("klingwatch-node"))
        .clone()
}

/// Runs `f` inside [`core_rt`]'s context (the core spawns pollers and connections there).
fn within_core<T>(f: impl FnOnce() -> T) -> napi::Result<T> {
    let _entered = core_rt().map_err(to_js)?.enter();
    Ok(f())
}

/// Runs `fut` as a task on [`core_rt`] and waits for it: a panic in it becomes the core's
/// `from_panic` error, and dropping the returned future aborts the task.
async fn on_core<T: Send + 'static>(
    fut: impl Future<Output = klingwatch::Result<T>> + Send + 'static,
) -> klingwatch::Result<T> {
    let task = tokio_util::task::AbortOnDropHandle::new(core_rt()?.spawn(fut));
    match task.await {
        Ok(r) => r,
        Err(_) => Err(Error::from_panic()),
    }
}

/// The prefix of every native error message carrying a JSON payload.
const ERROR_PREFIX: &str = "KLINGWATCH_ERROR:";

/// Version of the native addon.
#[napi(catch_unwind)]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The core's error object with camelCase keys (what `KlingError.fromPayload` reads).
fn error_value(err: &Error) -> Value {
    camel_keys(err.to_json())
}

/// Renames the snake_case keys of the core's JSON to camelCase: the top-level keys and those
/// of nested objects, never the keys inside `raw` (the server's own object). Only errors go
/// through it (rare, so building their value is fine); tasks are written as [`JsTask`].
fn camel_keys(v: Value) -> Value {
    fn camel(k: &str) -> String {
        let mut out = String::with_capacity(k.len());
        let mut up = false;
        for c in k.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    }
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if k == "raw" { v } else { camel_keys(v) };
                    (camel(&k), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

/// Converts a core error into the JS error the JS layer recognises.
fn to_js(err: Error) -> napi::Error {
    napi::Error::from_reason(format!("{ERROR_PREFIX}{}", error_value(&err)))
}

/// Runs a sync entry point; a panic becomes the core's `from_panic` error (a `KlingError`).
fn guard<T>(f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(to_js(Error::from_panic())))
}

/// Runs an async entry point; a panic becomes the core's `from_panic` error.
async fn guard_async<T>(fut: impl Future<Output = napi::Result<T>>) -> napi::Result<T> {
    futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut))
        .await
        .unwrap_or_else(|_| Err(to_js(Error::from_panic())))
}

/// Panics on purpose, to test that no panic reaches JS as anything but a `KlingError`.
#[napi(catch_unwind)]
pub fn panic_for_tests() -> napi::Result<()> {
    guard(|| panic!("panic_for_tests"))
}

/// The async twin of [`panic_for_tests`].
#[napi]
pub async fn panic_for_tests_async() -> napi::Result<()> {
    guard_async(async { panic!("panic_for_tests_async") }).await
}

fn kind_of(kind: Option<String>) -> napi::Result<TaskKind> {
    match kind {
        None => Ok(TaskKind::ImageGeneration),
        Some(k) => k.parse::<TaskKind>().map_err(to_js),
    }
}

fn millis(name: &str, v: f64) -> napi::Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        return Err(to_js(Error::invalid(format!(
            "{name} must be a finite number >= 0"
        ))));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

/// JSON text of `v`, written straight with serde. Serialising a task cannot fail in practice
/// (string keys, non-finite floats become `null`); if it ever did, it is a decode error, not
/// a panic.
fn json_text<T: Serialize + ?Sized>(v: &T) -> klingwatch::Result<String> {
    serde_json::to_string(v).map_err(serialise_error)
}

fn serialise_error(e: serde_json::Error) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("could not serialise the result: {e}"),
    )
}

/// A task as the JS `Task` constructor reads it: the camelCase properties of the public API,
/// in their final form (the constructor copies them; `images` and `videos` are used as
/// parsed), with the server's object as JSON text (`raw`). In a `getMany` chunk the same
/// fields travel as a [`ChunkRow`], with `raw` and `images` in the chunk's buffer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsTask<'a> {
    id: &'a str,
    kind: TaskKind,
    status: &'a TaskStatus,
    is_terminal: bool,
    status_msg: &'a Option<String>,
    external_task_id: &'a Option<String>,
    created_at_ms: Option<i64>,
    updated_at_ms: Option<i64>,
    final_unit_deduction: &'a Option<String>,
    images: JsImages<'a>,
    videos: JsVideos<'a>,
    raw: &'a str,
}

impl<'a> JsTask<'a> {
    fn new(t: &'a Task) -> JsTask<'a> {
        JsTask {
            id: &t.id,
            kind: t.kind,
            status: &t.status,
            is_terminal: t.is_terminal(),
            status_msg: &t.status_msg,
            external_task_id: &t.external_task_id,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            final_unit_deduction: &t.final_unit_deduction,
            images: JsImages(&t.images),
            videos: JsVideos(&t.videos),
            raw: t.raw.as_str(),
        }
    }
}

/// `images` as `[{index, url, watermarkUrl}]`.
struct JsImages<'a>(&'a [Image]);

impl Serialize for JsImages<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct JsImage<'a> {
            index: u32,
            url: &'a str,
            watermark_url: &'a Option<String>,
        }
        s.collect_seq(self.0.iter().map(|i| JsImage {
            index: i.index,
            url: &i.url,
            watermark_url: &i.watermark_url,
        }))
    }
}

/// `videos` as `[{id, url, watermarkUrl, durationS}]`.
struct JsVideos<'a>(&'a [Video]);

impl Serialize for JsVideos<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct JsVideo<'a> {
            id: &'a str,
            url: &'a str,
            watermark_url: &'a Option<String>,
            duration_s: Option<f64>,
        }
        s.collect_seq(self.0.iter().map(|v| JsVideo {
            id: &v.id,
            url: &v.url,
            watermark_url: &v.watermark_url,
            duration_s: v.duration_s,
        }))
    }
}

/// A task as JSON text ([`JsTask`], `raw` inline).
fn task_json(task: &Task) -> klingwatch::Result<String> {
    json_text(&JsTask::new(task))
}

/// A status change: `{"task": {...}, "previous": "submitted" | null}`.
fn update_json(u: &TaskUpdate) -> klingwatch::Result<String> {
    #[derive(Serialize)]
    struct UpdateView<'a> {
        task: JsTask<'a>,
        previous: Option<&'a str>,
    }
    json_text(&UpdateView {
        task: JsTask::new(&u.task),
        previous: u.previous.as_ref().map(|s| s.as_str()),
    })
}

/// One row of a `getManyStream` chunk, a JSON array (no keys to write or to parse): for a
/// task `[positions, id, kind, status, isTerminal, statusMsg, externalTaskId, createdAtMs,
/// updatedAtMs, finalUnitDeduction, videos, rawStart, rawEnd, imagesStart, imagesEnd]`, the
/// fields of [`JsTask`] in its order (what `Task`'s row constructor in `index.js` reads),
/// and for an error `[positions, error]` (the camelCase payload of [`error_value`]).
enum ChunkRow<'a> {
    Task(&'a [usize], JsTask<'a>, Spans),
    Error(&'a [usize], Value),
}

/// Where a task's `raw` and `images` texts are in its chunk's buffer.
struct Spans {
    raw: (usize, usize),
    images: (usize, usize),
}

impl Spans {
    /// Writes the texts of `t` at the end of `buf`.
    fn write(t: &Task, buf: &mut Vec<u8>) -> klingwatch::Result<Spans> {
        let start = buf.len();
        buf.extend_from_slice(t.raw.as_str().as_bytes());
        let raw_end = buf.len();
        serde_json::to_writer(&mut *buf, &JsImages(&t.images)).map_err(serialise_error)?;
        Ok(Spans {
            raw: (start, raw_end),
            images: (raw_end, buf.len()),
        })
    }
}

impl Serialize for ChunkRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        match self {
            ChunkRow::Task(positions, t, spans) => {
                let mut row = s.serialize_tuple(15)?;
                row.serialize_element(positions)?;
                row.serialize_element(t.id)?;
                row.serialize_element(&t.kind)?;
                row.serialize_element(t.status)?;
                row.serialize_element(&t.is_terminal)?;
                row.serialize_element(t.status_msg)?;
                row.serialize_element(t.external_task_id)?;
                row.serialize_element(&t.created_at_ms)?;
                row.serialize_element(&t.updated_at_ms)?;
                row.serialize_element(t.final_unit_deduction)?;
                row.serialize_element(&t.videos)?;
                row.serialize_element(&spans.raw.0)?;
                row.serialize_element(&spans.raw.1)?;
                row.serialize_element(&spans.images.0)?;
                row.serialize_element(&spans.images.1)?;
                row.end()
            }
            ChunkRow::Error(positions, e) => (positions, e).serialize(s),
        }
    }
}

/// One chunk of `getManyStream`: `json` is an array of [`ChunkRow`]s, written by serde in
/// one pass, and `raws` holds, for each task, the server's object as received and then its
/// images as JSON (`[{index, url, watermarkUrl}]`): each task row gives both spans. The
/// buffer is handed to JS without a copy and lives outside the JS heap, so the garbage
/// collector never copies these texts, and `JSON.parse` of a chunk builds only the small
/// fields; a `Task` parses its `images` and `raw` from the buffer on first read, and keeps
/// the buffer until both were read.
#[napi(object)]
pub struct NativeChunk {
    pub json: String,
    pub raws: Buffer,
}

fn chunk_out(chunk: Vec<BatchItem>) -> klingwatch::Result<NativeChunk> {
    // The raw texts, and about as much again for the images' JSON.
    let size = chunk
        .iter()
        .map(|i| i.result.as_ref().map_or(0, |t| 2 * t.raw.as_str().len()))
        .sum();
    let mut raws = Vec::with_capacity(size);
    let rows = chunk
        .iter()
        .map(|item| {
            let positions = item.positions.as_slice();
            Ok(match &item.result {
                Ok(t) => ChunkRow::Task(positions, JsTask::new(t), Spans::write(t, &mut raws)?),
                Err(e) => ChunkRow::Error(positions, error_value(e)),
            })
        })
        .collect::<klingwatch::Result<Vec<ChunkRow<'_>>>>()?;
    Ok(NativeChunk {
        json: json_text(&rows)?,
        raws: raws.into(),
    })
}

fn cancelled_error() -> Error {
    Error::new(ErrorKind::Cancelled, "the operation was aborted")
}

// ---- cancellation -------------------------------------------------------------------------

fn cancel_tokens() -> &'static Mutex<(u32, HashMap<u32, CancellationToken>)> {
    static T: OnceLock<Mutex<(u32, HashMap<u32, CancellationToken>)>> = OnceLock::new();
    T.get_or_init(|| Mutex::new((0, HashMap::new())))
}

/// Makes a cancel token and returns its id.
#[napi(catch_unwind)]
pub fn cancel_token_new() -> u32 {
    let mut g = cancel_tokens().lock().unwrap_or_else(|e| e.into_inner());
    g.0 = g.0.wrapping_add(1);
    let id = g.0;
    g.1.insert(id, CancellationToken::new());
    id
}

/// Cancels the token `id` (every operation using it fails with `cancelled`).
#[napi(catch_unwind)]
pub fn cancel_token_cancel(id: u32) {
    let g = cancel_tokens().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = g.1.get(&id) {
        t.cancel();
    }
}

/// Forgets the token `id` (call when the operation ended).
#[napi(catch_unwind)]
pub fn cancel_token_drop(id: u32) {
    let mut g = cancel_tokens().lock().unwrap_or_else(|e| e.into_inner());
    g.1.remove(&id);
}

fn token_of(id: Option<u32>) -> Option<CancellationToken> {
    let id = id?;
    let g = cancel_tokens().lock().unwrap_or_else(|e| e.into_inner());
    Some(g.1.get(&id).cloned().unwrap_or_else(|| {
        let t = CancellationToken::new();
        t.cancel();
        t
    }))
}

/// Runs `fut` on [`core_rt`] unless the token is cancelled first (dropping `fut` cancels the
/// Rust work).
async fn cancellable<T: Send + 'static>(
    token: Option<CancellationToken>,
    fut: impl Future<Output = klingwatch::Result<T>> + Send + 'static,
) -> klingwatch::Result<T> {
    on_core(async move {
        match token {
            None => fut.await,
            Some(t) => {
                tokio::select! {
                    biased;
                    _ = t.cancelled() => Err(cancelled_error()),
                    r = fut => r,
                }
            }
        }
    })
    .await
}

// ---- client ---------------------------------------------------------------------------------

/// Options of `new NativeClient(...)`.
#[napi(object)]
pub struct NativeClientOptions {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub api_key: Option<String>,
    pub region: Option<String>,
    pub base_url: Option<String>,
    pub timeout_ms: Option<f64>,
    pub max_retries: Option<u32>,
    /// PEM text of an extra CA certificate.
    pub ca_cert: Option<String>,
    /// Lifetime of the signed JWTs in seconds (default 1800).
    pub token_ttl_sec: Option<i64>,
    /// Re-sign a JWT when less than this many seconds are left (default 60).
    pub token_refresh_margin_sec: Option<i64>,
}

/// The native client: wraps `klingwatch::Client` (cheap to clone, thread-safe).
#[napi]
pub struct NativeClient {
    inner: klingwatch::Client,
}

#[napi]
impl NativeClient {
    #[napi(constructor, catch_unwind)]
    pub fn new(options: Option<NativeClientOptions>) -> napi::Result<Self> {
        guard(move || {
            let o = options.unwrap_or(NativeClientOptions {
                access_key: None,
                secret_key: None,
                api_key: None,
                region: None,
                base_url: None,
                timeout_ms: None,
                max_retries: None,
                ca_cert: None,
                token_ttl_sec: None,
                token_refresh_margin_sec: None,
            });
            let mut b = klingwatch::Client::builder();
            if let Some(r) = o.region {
                b = b.region(r.parse::<klingwatch::Region>().map_err(to_js)?);
            }
            if let Some(t) = o.timeout_ms {
                b = b.timeout(millis("timeoutMs", t)?);
            }
            if let Some(n) = o.max_retries {
                b = b.max_retries(n);
            }
            if let Some(v) = o.access_key {
                b = b.access_key(v);
            }
            if let Some(v) = o.secret_key {
                b = b.secret_key(v);
            }
            if let Some(v) = o.api_key {
                b = b.api_key(v);
            }
            if let Some(v) = o.base_url {
                b = b.base_url(v);
            }
            if let Some(pem) = o.ca_cert {
                b = b.ca_cert_pem(pem.into_bytes());
            }
            if let Some(ttl) = o.token_ttl_sec {
                b = b.token_ttl_secs(ttl);
            }
            if let Some(m) = o.token_refresh_margin_sec {
                let m = u64::try_from(m)
                    .map_err(|_| to_js(Error::config("tokenRefreshMarginSec must be >= 0")))?;
                b = b.token_refresh_margin(Duration::from_secs(m));
            }
            // Building the reqwest client may need the runtime context (resolver, timers).
            let inner = within_core(move || b.build())?.map_err(to_js)?;
            Ok(NativeClient { inner })
        })
    }

    #[napi(catch_unwind)]
    pub fn base_url(&self) -> String {
        self.inner.base_url().to_owned()
    }

    #[napi(catch_unwind)]
    pub fn token(&self) -> napi::Result<String> {
        guard(move || self.inner.token().map_err(to_js))
    }

    /// How many JWTs this client has signed so far.
    #[napi(catch_unwind)]
    pub fn token_signatures(&self) -> f64 {
        self.inner.token_provider().signatures() as f64
    }

    #[napi]
    pub async fn get_task_by_external_id(
        &self,
        kind: Option<String>,
        external_task_id: String,
        cancel: Option<u32>,
    ) -> napi::Result<String> {
        guard_async(async move {
            let kind = kind_of(kind)?;
            let token = token_of(cancel);
            let c = self.inner.clone();
            cancellable(token, async move {
                c.get_task_by_external_id(kind, &external_task_id).await
            })
            .await
            .and_then(|t| task_json(&t))
            .map_err(to_js)
        })
        .await
    }

    /// The tasks of `kind`, page by page: a stream of task JSON texts.
    #[napi(catch_unwind)]
    pub fn iter_tasks(
        &self,
        kind: Option<String>,
        page_size: u32,
        cancel: Option<u32>,
    ) -> napi::Result<NativeStream> {
        guard(move || {
            let kind = kind_of(kind)?;
            let stream = self
                .inner
                .iter_tasks(kind, page_size)
                .map(|r| r.and_then(|t| task_json(&t)).map(Either::A));
            Ok(NativeStream::new(Box::pin(stream), token_of(cancel)))
        })
    }

    /// The status changes of one task until it ends: a stream of update JSON texts
    /// (`{"task", "previous"}`); the last one is terminal, or an error.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn wait_updates(
        &self,
        kind: Option<String>,
        task_id: String,
        timeout_ms: Option<f64>,
        poll_interval_ms: Option<f64>,
        max_poll_interval_ms: Option<f64>,
        cancel: Option<u32>,
    ) -> napi::Result<NativeStream> {
        guard(move || {
            let kind = kind_of(kind)?;
            let mut options = wait_options(timeout_ms, poll_interval_ms, max_poll_interval_ms)?;
            let token = token_of(cancel);
            options.cancel = token.clone();
            let c = self.inner.clone();
            // The core spawns its poller on the runtime: enter it.
            let stream = within_core(move || c.wait_updates(kind, &task_id, options))?
                .map(|r| r.and_then(|u| update_json(&u)).map(Either::A));
            Ok(NativeStream::new(Box::pin(stream), token))
        })
    }

    /// Watches many tasks: a stream of update JSON texts; a task failing for good is an
    /// error item (which ends the stream, as in Python).
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn watch(
        &self,
        kind: Option<String>,
        task_ids: Vec<String>,
        timeout_ms: Option<f64>,
        poll_interval_ms: Option<f64>,
        max_poll_interval_ms: Option<f64>,
        concurrency: Option<u32>,
        cancel: Option<u32>,
    ) -> napi::Result<NativeStream> {
        guard(move || {
            let kind = kind_of(kind)?;
            // The same timing options as a wait, parsed once.
            let timing = wait_options(timeout_ms, poll_interval_ms, max_poll_interval_ms)?;
            let mut options = WatchOptions {
                timeout: timing.timeout,
                poll_interval: timing.poll_interval,
                max_poll_interval: timing.max_poll_interval,
                ..WatchOptions::default()
            };
            if let Some(n) = concurrency {
                options.concurrency = n.max(1) as usize;
            }
            let token = token_of(cancel);
            options.cancel = token.clone();
            let c = self.inner.clone();
            let stream = within_core(move || c.watch(kind, task_ids, options))?
                .map(|r| r.and_then(|u| update_json(&u)).map(Either::A));
            Ok(NativeStream::new(Box::pin(stream), token))
        })
    }

    /// Saves the results of a succeeded task (given as its kind and raw server object) into
    /// `dir`; returns the file paths in order.
    #[napi]
    pub async fn download_results(
        &self,
        kind: Option<String>,
        raw_task: String,
        dir: String,
        cancel: Option<u32>,
    ) -> napi::Result<Vec<String>> {
        guard_async(async move {
            let kind = kind_of(kind)?;
            let task = Task::from_json_slice(kind, raw_task.as_bytes()).map_err(to_js)?;
            let token = token_of(cancel);
            let c = self.inner.clone();
            cancellable(token, async move { c.download_results(&task, &dir).await })
                .await
                .map(|paths| {
                    paths
                        .into_iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect()
                })
                .map_err(to_js)
        })
        .await
    }

    #[napi]
    pub async fn get_task(
        &self,
        kind: Option<String>,
        task_id: String,
        cancel: Option<u32>,
    ) -> napi::Result<String> {
        guard_async(async move {
            let kind = kind_of(kind)?;
            let token = token_of(cancel);
            let c = self.inner.clone();
            cancellable(token, async move { c.get_task(kind, &task_id).await })
                .await
                .and_then(|t| task_json(&t))
                .map_err(to_js)
        })
        .await
    }

    #[napi]
    pub async fn list_tasks(
        &self,
        kind: Option<String>,
        page: u32,
        page_size: u32,
        cancel: Option<u32>,
    ) -> napi::Result<String> {
        guard_async(async move {
            let kind = kind_of(kind)?;
            let token = token_of(cancel);
            let c = self.inner.clone();
            cancellable(
                token,
                async move { c.list_tasks(kind, page, page_size).await },
            )
            .await
            .and_then(|ts| json_text(&ts.iter().map(JsTask::new).collect::<Vec<_>>()))
            .map_err(to_js)
        })
        .await
    }

    /// `getMany` as the core's `get_many_chunks`, which JS converts while the rest of the
    /// batch is in flight: a stream of [`NativeChunk`]s, whose `json` is an array of
    /// [`ChunkRow`]s (every input position of one id, and its task or error). Closing the
    /// stream (or cancelling its token) aborts the queries.
    #[napi(catch_unwind)]
    pub fn get_many_stream(
        &self,
        kind: Option<String>,
        task_ids: Vec<String>,
        concurrency: u32,
        cancel: Option<u32>,
    ) -> napi::Result<NativeStream> {
        guard(move || {
            let kind = kind_of(kind)?;
            let token = token_of(cancel);
            let c = self.inner.clone();
            let chunks = c
                .get_many_chunks(kind, &task_ids, concurrency.max(1) as usize)
                .map(|r| r.and_then(chunk_out).map(Either::B));
            Ok(NativeStream::new(Box::pin(chunks), token))
        })
    }

    /// `body` is the JSON text of the create request (snake_case wire fields).
    #[napi]
    pub async fn create_task(
        &self,
        kind: Option<String>,
        body: String,
        cancel: Option<u32>,
    ) -> napi::Result<String> {
        guard_async(async move {
            let kind = kind_of(kind)?;
            let body: Value = serde_json::from_str(&body)
                .map_err(|e| to_js(Error::invalid(format!("the body is not valid JSON: {e}"))))?;
            if !matches!(body, Value::Object(_)) {
                return Err(to_js(Error::invalid(
                    "the create body must be a JSON object",
                )));
            }
            let token = token_of(cancel);
            let c = self.inner.clone();
            cancellable(token, async move { c.create_task(kind, body).await })
                .await
                .and_then(|t| task_json(&t))
                .map_err(to_js)
        })
        .await
    }

    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub async fn wait(
        &self,
        kind: Option<String>,
        task_id: String,
        timeout_ms: Option<f64>,
        poll_interval_ms: Option<f64>,
        max_poll_interval_ms: Option<f64>,
        cancel: Option<u32>,
    ) -> napi::Result<String> {
        guard_async(async move {
            let kind = kind_of(kind)?;
            let mut options = wait_options(timeout_ms, poll_interval_ms, max_poll_interval_ms)?;
            let token = token_of(cancel);
            options.cancel = token.clone();
            let c = self.inner.clone();
            cancellable(token, async move { c.wait(kind, &task_id, options).await })
                .await
                .and_then(|t| task_json(&t))
                .map_err(to_js)
        })
        .await
    }
}

fn wait_options(
    timeout_ms: Option<f64>,
    poll_interval_ms: Option<f64>,
    max_poll_interval_ms: Option<f64>,
) -> napi::Result<WaitOptions> {
    let mut options = WaitOptions::default();
    if let Some(v) = timeout_ms {
        options.timeout = millis("timeoutMs", v)?;
    }
    if let Some(v) = poll_interval_ms {
        options.poll_interval = millis("pollIntervalMs", v)?;
    }
    if let Some(v) = max_poll_interval_ms {
        options.max_poll_interval = millis("maxPollIntervalMs", v)?;
    }
    Ok(options)
}

// ---- streams ----------------------------------------------------------------------------------

/// An item of a [`NativeStream`]: a JSON text (a task, an update) or a `getMany` chunk.
type StreamItem = Either<String, NativeChunk>;
type ItemStream = Pin<Box<dyn Stream<Item = klingwatch::Result<StreamItem>> + Send>>;

/// A pull-style stream for JS async iterators: `next()` resolves the next item (a JSON text,
/// or a chunk for `getManyStream`) or `null` at the end, and rejects with the item's error (which ends the stream).
/// `close()` (or the object being collected) drops the Rust stream, which stops its poller.
#[napi]
pub struct NativeStream {
    stream: Arc<tokio::sync::Mutex<Option<ItemStream>>>,
    closed: CancellationToken,
    cancel: Option<CancellationToken>,
}

impl NativeStream {
    fn new(stream: ItemStream, cancel: Option<CancellationToken>) -> NativeStream {
        NativeStream {
            stream: Arc::new(tokio::sync::Mutex::new(Some(stream))),
            closed: CancellationToken::new(),
            cancel,
        }
    }
}

#[napi]
impl NativeStream {
    /// The next item, or null once the stream ended (or was closed).
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Either<String, NativeChunk>>> {
        let stream = self.stream.clone();
        let closed = self.closed.clone();
        let cancel = self.cancel.clone().unwrap_or_default();
        // Polled on the core's runtime, where the stream's work (a batch, a poller) runs.
        guard_async(async move {
            on_core(async move {
                let mut slot = stream.lock().await;
                let Some(s) = slot.as_mut() else {
                    return Ok(None);
                };
                let item = tokio::select! {
                    biased;
                    _ = closed.cancelled() => None,
                    _ = cancel.cancelled() => Some(Err(cancelled_error())),
                    item = s.next() => item,
                };
                match item {
                    Some(Ok(item)) => Ok(Some(item)),
                    Some(Err(e)) => {
                        *slot = None;
                        Err(e)
                    }
                    None => {
                        *slot = None;
                        Ok(None)
                    }
                }
            })
            .await
            .map_err(to_js)
        })
        .await
    }

    /// Ends the stream now: its Rust work (polling) stops.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.closed.cancel();
        if let Ok(mut g) = self.stream.try_lock() {
            *g = None;
        }
    }
}

// ---- free functions ---------------------------------------------------------------------------

#[napi(catch_unwind)]
pub fn sign_jwt(
    access_key: String,
    secret_key: String,
    now: Option<i64>,
    ttl: Option<i64>,
) -> napi::Result<String> {
    guard(move || {
        let now = match now {
            Some(n) => n,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        };
        klingwatch::sign_jwt(&access_key, &secret_key, now, ttl.unwrap_or(1800)).map_err(to_js)
    })
}

#[napi(catch_unwind)]
pub fn parse_callback(body: String) -> napi::Result<String> {
    guard(move || {
        klingwatch::parse_callback(body.as_bytes())
            .and_then(|t| task_json(&t))
            .map_err(to_js)
    })
}

/// Parses a task response body as `kind` (`{code, data, ...}` envelope or bare task).
#[napi(catch_unwind)]
pub fn parse_task(kind: Option<String>, body: String) -> napi::Result<String> {
    guard(move || {
        let kind = kind_of(kind)?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| to_js(Error::invalid(format!("the body is not valid JSON: {e}"))))?;
        let data = match v.get("data") {
            Some(d) if v.get("code").is_some() => d.clone(),
            _ => v,
        };
        Task::from_value(kind, data)
            .and_then(|t| task_json(&t))
            .map_err(to_js)
    })
}

#[napi(catch_unwind)]
pub fn verify_webhook(
    secret: String,
    headers: Vec<Vec<String>>,
    body: String,
    tolerance_sec: Option<f64>,
) -> napi::Result<()> {
    guard(move || {
        let tolerance = millis("toleranceSec", tolerance_sec.unwrap_or(300.0) * 1000.0)?;
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter(|p| p.len() == 2)
            .map(|p| (p[0].as_str(), p[1].as_str()))
            .collect();
        klingwatch::verify_webhook(&secret, &pairs, body.as_bytes(), tolerance).map_err(to_js)
    })
}

/// The error an API answer with this HTTP status and business code becomes (JSON payload).
#[napi(catch_unwind)]
pub fn error_for_api(http_status: u32, code: Option<i64>, message: String) -> String {
    let status = u16::try_from(http_status).unwrap_or(0);
    error_value(&Error::from_api(status, code, &message, None)).to_string()
}

/// The stable names of every error kind, in the core's order.
#[napi(catch_unwind)]
pub fn error_kinds() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// The stable names of every task kind.
#[napi(catch_unwind)]
pub fn task_kinds() -> Vec<&'static str> {
    TaskKind::ALL.iter().map(|k| k.as_str()).collect()
}

//! `klingwatch._native`: a thin pyo3 layer over the `klingwatch` core.
//!
//! Every rule lives in the core; this module only converts. Tasks cross the boundary as
//! JSON text (the Python layer builds `klingwatch.Task` from it) and errors are raised as
//! the `klingwatch.errors` class matching the core's error kind.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use klingwatch::{Error, ErrorKind, Task, TaskKind, TaskUpdate, WaitOptions, WatchOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::{json, Value};

/// The one tokio runtime every client of this process shares.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("klingwatch-py")
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| {
        to_py(Error::config(format!(
            "could not start the tokio runtime: {e}"
        )))
    })
}

/// Converts a core error into the matching `klingwatch.errors` exception.
fn to_py(err: Error) -> PyErr {
    Python::attach(|py| match build_py_err(py, &err) {
        Ok(e) => e,
        Err(e) => e,
    })
}

fn build_py_err(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let errors = py.import("klingwatch.errors")?;
    let exc = errors.getattr("_from_native")?.call1((
        err.kind().as_str(),
        err.message(),
        err.http_status(),
        err.kling_code(),
        err.request_id(),
        err.task_id(),
        err.is_retryable(),
        err.attempts(),
    ))?;
    Ok(PyErr::from_value(exc))
}

fn kind_of(kind: &str) -> PyResult<TaskKind> {
    kind.parse::<TaskKind>().map_err(to_py)
}

fn secs(name: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a finite number >= 0")))
}

/// A task as a JSON object (the fields of `klingwatch.Task`).
fn task_value(task: &Task) -> Value {
    task.to_json()
}

fn task_json(task: &Task) -> String {
    task_value(task).to_string()
}

fn parse_body(body: &str) -> PyResult<Value> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| to_py(Error::invalid(format!("the body is not valid JSON: {e}"))))?;
    if !matches!(v, Value::Object(_)) {
        return Err(to_py(Error::invalid(
            "the create body must be a JSON object",
        )));
    }
    Ok(v)
}

/// The native client: wraps `klingwatch::Client` (cheap to clone, thread-safe).
#[pyclass(frozen, module = "klingwatch._native")]
struct NativeClient {
    inner: klingwatch::Client,
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (access_key=None, secret_key=None, api_key=None, region="global", base_url=None, timeout=30.0, max_retries=3, ca_cert=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        access_key: Option<String>,
        secret_key: Option<String>,
        api_key: Option<String>,
        region: &str,
        base_url: Option<String>,
        timeout: f64,
        max_retries: u32,
        ca_cert: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let region = region.parse::<klingwatch::Region>().map_err(to_py)?;
        let mut b = klingwatch::Client::builder()
            .region(region)
            .timeout(secs("timeout", timeout)?)
            .max_retries(max_retries);
        if let Some(v) = access_key {
            b = b.access_key(v);
        }
        if let Some(v) = secret_key {
            b = b.secret_key(v);
        }
        if let Some(v) = api_key {
            b = b.api_key(v);
        }
        if let Some(v) = base_url {
            b = b.base_url(v);
        }
        if let Some(pem) = ca_cert {
            b = b.ca_cert_pem(pem);
        }
        // Building the reqwest client may need the runtime context (resolver, timers).
        let rt = runtime()?;
        let _guard = rt.enter();
        let inner = b.build().map_err(to_py)?;
        Ok(NativeClient { inner })
    }

    fn base_url(&self) -> String {
        self.inner.base_url().to_owned()
    }

    fn token(&self, py: Python<'_>) -> PyResult<String> {
        let c = self.inner.clone();
        py.detach(move || c.token()).map_err(to_py)
    }

    fn get_task(&self, py: Python<'_>, kind: &str, task_id: String) -> PyResult<String> {
        let kind = kind_of(kind)?;
        let c = self.inner.clone();
        let rt = runtime()?;
        py.detach(move || rt.block_on(async move { c.get_task(kind, &task_id).await }))
            .map(|t| task_json(&t))
            .map_err(to_py)
    }

    fn get_task_by_external_id(
        &self,
        py: Python<'_>,
        kind: &str,
        external_task_id: String,
    ) -> PyResult<String> {
        let kind = kind_of(kind)?;
        let c = self.inner.clone();
        let rt = runtime()?;
        py.detach(move || {
            rt.block_on(async move { c.get_task_by_external_id(kind, &external_task_id).await })
        })
        .map(|t| task_json(&t))
        .map_err(to_py)
    }

    fn list_tasks(
        &self,
        py: Python<'_>,
        kind: &str,
        page: u32,
        page_size: u32,
    ) -> PyResult<String> {
        let kind = kind_of(kind)?;
        let c = self.inner.clone();
        let rt = runtime()?;
        py.detach(move || rt.block_on(async move { c.list_tasks(kind, page, page_size).await }))
            .map(|ts| Value::Array(ts.iter().map(task_value).collect()).to_string())
            .map_err(to_py)
    }

    /// One entry per id: the task JSON (str) or the exception instance.
    fn get_many(
        &self,
        py: Python<'_>,
        kind: &str,
        task_ids: Vec<String>,
        concurrency: usize,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let kind = kind_of(kind)?;
        let c = self.inner.clone();
        let rt = runtime()?;
        let results = py.detach(move || {
            rt.block_on(async move { c.get_many(kind, &task_ids, concurrency).await })
        });
        results
            .into_iter()
            .map(|r| match r {
                Ok(t) => Ok(task_json(&t).into_pyobject(py)?.into_any().unbind()),
                Err(e) => Ok(build_py_err(py, &e)?.into_value(py).into_any()),
            })
            .collect()
    }

    fn create_task(&self, py: Python<'_>, kind: &str, body: &str) -> PyResult<String> {
        let kind = kind_of(kind)?;
        let body = parse_body(body)?;
        let c = self.inner.clone();
        let rt = runtime()?;
        py.detach(move || rt.block_on(async move { c.create_task(kind, body).await }))
            .map(|t| task_json(&t))
            .map_err(to_py)
    }

    /// Waits for a task; `on_update(update_json)` is called with the GIL on each status
    /// change, and an exception it raises ends the wait and propagates unchanged.
    #[pyo3(signature = (kind, task_id, timeout=600.0, poll_interval=1.0, max_poll_interval=10.0, on_update=None))]
    #[allow(clippy::too_many_arguments)]
    fn wait(
        &self,
        py: Python<'_>,
        kind: &str,
        task_id: String,
        timeout: f64,
        poll_interval: f64,
        max_poll_interval: f64,
        on_update: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let kind = kind_of(kind)?;
        let raised: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
        let cb: Option<klingwatch::OnUpdate> = on_update.map(|f| {
            let raised = raised.clone();
            let cb: klingwatch::OnUpdate = Arc::new(move |u: &TaskUpdate| {
                let text = update_json(u);
                Python::attach(|py| match f.call1(py, (text,)) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        Err(Error::invalid("the on_update callback raised"))
                    }
                })
            });
            cb
        });
        let options = WaitOptions {
            timeout: secs("timeout", timeout)?,
            poll_interval: secs("poll_interval", poll_interval)?,
            max_poll_interval: secs("max_poll_interval", max_poll_interval)?,
            on_update: cb,
            ..WaitOptions::default()
        };
        let c = self.inner.clone();
        let rt = runtime()?;
        let r =
            py.detach(move || rt.block_on(async move { c.wait(kind, &task_id, options).await }));
        if let Some(e) = raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        r.map(|t| task_json(&t)).map_err(to_py)
    }

    /// Every task of `kind`, page by page: an iterator of task JSON or exception instances.
    fn iter_tasks(&self, kind: &str, page_size: u32) -> PyResult<TaskIter> {
        let kind = kind_of(kind)?;
        let rt = runtime()?;
        let _guard = rt.enter();
        let stream = self.inner.iter_tasks(kind, page_size);
        Ok(TaskIter {
            stream: Mutex::new(Some(Box::pin(stream))),
        })
    }

    /// Watches many tasks: an iterator of update JSON strings or exception instances.
    #[pyo3(signature = (kind, task_ids, timeout=600.0, poll_interval=1.0, max_poll_interval=10.0, concurrency=16))]
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        kind: &str,
        task_ids: Vec<String>,
        timeout: f64,
        poll_interval: f64,
        max_poll_interval: f64,
        concurrency: usize,
    ) -> PyResult<UpdateIter> {
        let kind = kind_of(kind)?;
        let options = WatchOptions {
            timeout: secs("timeout", timeout)?,
            poll_interval: secs("poll_interval", poll_interval)?,
            max_poll_interval: secs("max_poll_interval", max_poll_interval)?,
            concurrency,
            ..WatchOptions::default()
        };
        let rt = runtime()?;
        let _guard = rt.enter();
        let stream = self.inner.watch(kind, task_ids, options);
        Ok(UpdateIter {
            stream: Mutex::new(Some(Box::pin(stream))),
        })
    }

    fn __repr__(&self) -> String {
        format!("<klingwatch Client base_url={:?}>", self.inner.base_url())
    }
}

fn update_json(u: &TaskUpdate) -> String {
    json!({"task": task_value(&u.task), "previous": u.previous.as_ref().map(|s| s.as_str())})
        .to_string()
}

type UpdateStream = Pin<Box<dyn Stream<Item = klingwatch::Result<TaskUpdate>> + Send>>;

/// Iterator over a core update stream; each `__next__` waits with the GIL released.
/// Yields the update as JSON text, or the exception instance of a per-task error.
#[pyclass(module = "klingwatch._native")]
struct UpdateIter {
    stream: Mutex<Option<UpdateStream>>,
}

#[pymethods]
impl UpdateIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let rt = runtime()?;
        let item = py.detach(|| {
            let mut guard = self.stream.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                None => None,
                Some(s) => {
                    let item = rt.block_on(s.next());
                    if item.is_none() {
                        *guard = None;
                    }
                    item
                }
            }
        });
        match item {
            None => Ok(None),
            Some(Ok(u)) => Ok(Some(update_json(&u).into_pyobject(py)?.into_any().unbind())),
            Some(Err(e)) => Ok(Some(build_py_err(py, &e)?.into_value(py).into_any())),
        }
    }

    /// Stops the watch (drops the stream, which cancels the polling).
    fn close(&self, py: Python<'_>) {
        let s = py.detach(|| self.stream.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(s);
    }
}

type TaskStream = Pin<Box<dyn Stream<Item = klingwatch::Result<Task>> + Send>>;

/// Iterator over the core's `iter_tasks` stream (GIL released while waiting).
#[pyclass(module = "klingwatch._native")]
struct TaskIter {
    stream: Mutex<Option<TaskStream>>,
}

#[pymethods]
impl TaskIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let rt = runtime()?;
        let item = py.detach(|| {
            let mut guard = self.stream.lock().unwrap_or_else(|p| p.into_inner());
            let item = guard.as_mut().and_then(|s| rt.block_on(s.next()));
            if item.is_none() {
                *guard = None;
            }
            item
        });
        match item {
            None => Ok(None),
            Some(Ok(t)) => Ok(Some(task_json(&t).into_pyobject(py)?.into_any().unbind())),
            Some(Err(e)) => Ok(Some(build_py_err(py, &e)?.into_value(py).into_any())),
        }
    }
}

#[pyfunction]
#[pyo3(signature = (access_key, secret_key, now=None, ttl=1800))]
fn sign_jwt(
    py: Python<'_>,
    access_key: String,
    secret_key: String,
    now: Option<i64>,
    ttl: i64,
) -> PyResult<String> {
    let now = match now {
        Some(n) => n,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    py.detach(move || klingwatch::sign_jwt(&access_key, &secret_key, now, ttl))
        .map_err(to_py)
}

#[pyfunction]
fn parse_callback(body: &[u8]) -> PyResult<String> {
    klingwatch::parse_callback(body)
        .map(|t| task_json(&t))
        .map_err(to_py)
}

#[pyfunction]
#[pyo3(signature = (secret, headers, body, tolerance=300.0))]
fn verify_webhook(
    py: Python<'_>,
    secret: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    tolerance: f64,
) -> PyResult<()> {
    let tolerance = secs("tolerance", tolerance)?;
    py.detach(move || {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        klingwatch::verify_webhook(&secret, &pairs, &body, tolerance)
    })
    .map_err(to_py)
}

/// The stable names of every error kind, in the core's order.
#[pyfunction]
fn error_kinds() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// The stable names of every task kind.
#[pyfunction]
fn task_kinds() -> Vec<&'static str> {
    TaskKind::ALL.iter().map(|k| k.as_str()).collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeClient>()?;
    m.add_class::<UpdateIter>()?;
    m.add_class::<TaskIter>()?;
    m.add_function(wrap_pyfunction!(sign_jwt, m)?)?;
    m.add_function(wrap_pyfunction!(parse_callback, m)?)?;
    m.add_function(wrap_pyfunction!(verify_webhook, m)?)?;
    m.add_function(wrap_pyfunction!(error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(task_kinds, m)?)?;
    Ok(())
}

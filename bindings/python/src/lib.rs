//! `klingwatch._native`: a thin pyo3 layer over the `klingwatch` core.
//!
//! Every rule lives in the core; this module only converts. Tasks cross the boundary as
//! `klingwatch.Task` objects built here from the typed core `Task` (see `task_py`; nothing
//! is parsed twice), and errors as the
//! `klingwatch.errors` class matching the core's error kind (built from `Error::to_json`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use klingwatch::{
    BatchItem, Error, ErrorKind, Task, TaskKind, TaskUpdate, WaitOptions, WatchOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use serde_json::Value;

#[cfg(unix)]
mod aio;

/// The tokio runtime every client of this process shares, one per process: after
/// `os.fork()` the parent's worker threads do not exist in the child, so the child gets a
/// fresh runtime (the parent's is left untouched, never dropped).
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = *slot {
        if owner == pid {
            return Ok(rt);
        }
    }
    let rt = klingwatch::start_runtime("klingwatch-py").map_err(to_py)?;
    *slot = Some((pid, rt));
    Ok(rt)
}

/// The runtime pyo3-async-runtimes spawns `AsyncClient` work on: ours (per process), so
/// sync and async calls share one connection pool and fork is handled in one place.
struct KwRuntime;

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<pyo3_async_runtimes::TaskLocals>;
}

impl pyo3_async_runtimes::generic::Runtime for KwRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // Counted from now until the task is done or dropped (see `_quiesce`).
        let task = InFlight::enter();
        let fut = async move {
            let _task = task;
            fut.await
        };
        // Every async entry point calls `runtime()?` before converting its future, so this
        // only re-reads the per-process runtime.
        match runtime() {
            Ok(rt) => rt.spawn(fut),
            Err(_) => tokio::spawn(fut),
        }
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        // pyo3-async-runtimes resolves asyncio futures from here: counted as well.
        let task = InFlight::enter();
        let f = move || {
            let _task = task;
            f()
        };
        match runtime() {
            Ok(rt) => rt.spawn_blocking(f),
            Err(_) => tokio::task::spawn_blocking(f),
        }
    }
}

/// The `AsyncClient` tasks alive on this process's runtime (spawned, or blocking ones). A task
/// of pyo3-async-runtimes' path takes the GIL when it ends (to resolve its asyncio future):
/// were it to do so while the interpreter finalizes, the thread would be torn down inside Rust
/// and the process abort. `_quiesce`, run at exit, waits for them; the bridged calls of
/// [`aio`] never take the GIL, but are counted too, so that an exit lets calls still in flight
/// end (at most 2 s) on either path. Counted per process: a child of `os.fork()` has none of
/// its parent's tasks.
pub(crate) struct InFlight;

/// `(process id, tasks)`, and the condition `_quiesce` waits on.
static IN_FLIGHT: (Mutex<(u32, usize)>, std::sync::Condvar) =
    (Mutex::new((0, 0)), std::sync::Condvar::new());

impl InFlight {
    pub(crate) fn enter() -> InFlight {
        let pid = std::process::id();
        let mut g = IN_FLIGHT.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 != pid {
            *g = (pid, 0);
        }
        g.1 += 1;
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = IN_FLIGHT.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 == std::process::id() {
            g.1 = g.1.saturating_sub(1);
            if g.1 == 0 {
                IN_FLIGHT.1.notify_all();
            }
        }
    }
}

/// Waits (GIL released) until no `AsyncClient` task of this process is left on the runtime,
/// at most `timeout` seconds; returns whether none is left. The clients register it with
/// `atexit`, so the interpreter never finalizes under a task about to take the GIL.
#[pyfunction]
fn _quiesce(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let timeout = secs("timeout", timeout)?;
    Ok(py.detach(|| {
        let pid = std::process::id();
        let g = IN_FLIGHT.0.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = IN_FLIGHT
            .1
            .wait_timeout_while(g, timeout, |g| g.0 == pid && g.1 > 0)
            .unwrap_or_else(|p| p.into_inner());
        g.0 != pid || g.1 == 0
    }))
}

impl pyo3_async_runtimes::generic::ContextExt for KwRuntime {
    fn scope<F, R>(
        locals: pyo3_async_runtimes::TaskLocals,
        fut: F,
    ) -> Pin<Box<dyn std::future::Future<Output = R> + Send>>
    where
        F: std::future::Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<pyo3_async_runtimes::TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Runs a core future as a Python awaitable on our runtime, resolved on the event loop's
/// thread through its [`aio`] bridge (or, on a loop that cannot watch a socket, by
/// pyo3-async-runtimes). Cancelling the asyncio task drops the Rust future, which stops its
/// requests and polling. A panic becomes a `KlingError`, never a `PanicException`.
fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = klingwatch::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let rt = runtime()?;
    #[cfg(unix)]
    let fut = match aio::bridged(py, rt, fut)? {
        Ok(awaitable) => return Ok(awaitable),
        Err(fut) => fut,
    };
    #[cfg(not(unix))]
    let _ = rt;
    pyo3_async_runtimes::generic::future_into_py::<KwRuntime, _, T>(py, async move {
        match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut)).await {
            Ok(r) => r.map_err(to_py),
            Err(_) => Err(to_py(Error::from_panic())),
        }
    })
}

/// Runs blocking core work with the GIL released; a panic becomes a `KlingError`.
fn blocking<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> klingwatch::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(Error::from_panic()))
    })
    .map_err(to_py)
}

/// Where a blocking call's future is polled.
#[derive(Clone, Copy)]
enum Drive {
    /// Spawned on the runtime's worker, beside the connection tasks (no thread hand-off per
    /// response); the calling thread only waits.
    Spawned,
    /// Polled on the calling thread: `wait` with an `on_update` callback, so the callback
    /// runs on the caller's thread and a slow callback never holds the runtime's worker.
    Here,
}

/// Runs a core future to completion from a Python thread with the GIL released (see
/// [`run_on`]).
fn run<T: Send + 'static>(
    py: Python<'_>,
    fut: impl std::future::Future<Output = klingwatch::Result<T>> + Send + 'static,
) -> PyResult<T> {
    run_on(py, Drive::Spawned, fut)
}

/// Runs a core future to completion with the GIL released. While it waits, the calling thread
/// checks for signals every 100 ms (a no-op off the main thread), so Ctrl-C ends a long call
/// with KeyboardInterrupt and stops the work (which drops its requests). A panic becomes a
/// `KlingError`; so does a blocking call made from inside another one (an `on_update`
/// callback calling the client), which would otherwise deadlock or panic.
fn run_on<T: Send + 'static>(
    py: Python<'_>,
    drive: Drive,
    fut: impl std::future::Future<Output = klingwatch::Result<T>> + Send + 'static,
) -> PyResult<T> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(to_py(Error::config(
            "a blocking klingwatch call cannot run inside another one (for example from the \
             on_update callback of Client.wait): record the update in the callback and call \
             the client after wait returns, or use AsyncClient",
        )));
    }
    let rt = runtime()?;
    let out = py.detach(|| {
        let fut = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut));
        let mut spawned = None;
        let work: Pin<Box<dyn std::future::Future<Output = klingwatch::Result<T>> + Send>> =
            match drive {
                Drive::Spawned => {
                    let handle = rt.spawn(fut);
                    spawned = Some(handle.abort_handle());
                    Box::pin(async move {
                        match handle.await {
                            Ok(Ok(r)) => r,
                            // A panic inside the work, or the task torn down with the runtime.
                            Ok(Err(_)) | Err(_) => Err(Error::from_panic()),
                        }
                    })
                }
                Drive::Here => {
                    Box::pin(async move { fut.await.unwrap_or_else(|_| Err(Error::from_panic())) })
                }
            };
        rt.block_on(async {
            let mut work = work;
            let period = Duration::from_millis(100);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    r = &mut work => return Ok(r),
                    _ = tick.tick() => {
                        if let Err(interrupted) = Python::attach(|py| py.check_signals()) {
                            if let Some(abort) = &spawned {
                                abort.abort();
                            }
                            return Err(interrupted);
                        }
                    }
                }
            }
        })
    });
    match out {
        Ok(r) => r.map_err(to_py),
        Err(interrupted) => Err(interrupted),
    }
}

/// Converts a core error into the matching `klingwatch.errors` exception.
pub(crate) fn to_py(err: Error) -> PyErr {
    Python::attach(|py| match build_py_err(py, &err) {
        Ok(e) => e,
        Err(e) => e,
    })
}

fn build_py_err(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let errors = py.import("klingwatch.errors")?;
    let exc = errors
        .getattr("_from_json")?
        .call1((err.to_json().to_string(),))?;
    Ok(PyErr::from_value(exc))
}

/// The `klingwatch.errors` exception object of a core error (for results that carry errors
/// as values, like `get_many`).
fn py_error<'py>(py: Python<'py>, err: &Error) -> Bound<'py, PyAny> {
    match build_py_err(py, err) {
        Ok(e) | Err(e) => e.into_value(py).into_bound(py).into_any(),
    }
}

fn kind_of(kind: &str) -> PyResult<TaskKind> {
    kind.parse::<TaskKind>().map_err(to_py)
}

fn secs(name: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a finite number >= 0")))
}

/// What builds `klingwatch.Task` objects here: the class and its enums, handed over once by
/// `klingwatch._task` as it is imported (`_register_task_class`).
struct TaskClass {
    /// The class's `tp_alloc`, which `object.__new__` calls: a `Task` without running its
    /// `__init__`, and without a Python call (and its argument tuple) per task.
    alloc: pyo3::ffi::allocfunc,
    cls: Py<PyAny>,
    /// [`TASK_SLOTS`] as Python strings.
    slots: Vec<Py<pyo3::types::PyString>>,
    /// The `TaskStatus` and `TaskKind` member of each wire value (an unknown one stays a str).
    statuses: Vec<(String, Py<PyAny>)>,
    kinds: Vec<(String, Py<PyAny>)>,
}

/// The slots of `klingwatch.Task`, in `task_py`'s order: the one list of them (the module
/// exports it as `TASK_SLOTS`, which `Task` takes as its `__slots__`).
const TASK_SLOTS: [&str; 11] = [
    "id",
    "kind",
    "status",
    "status_msg",
    "external_task_id",
    "final_unit_deduction",
    "_created",
    "_updated",
    "_images",
    "_videos",
    "_raw",
];

static TASK_CLASS: Mutex<Option<Arc<TaskClass>>> = Mutex::new(None);

fn task_class() -> PyResult<Arc<TaskClass>> {
    TASK_CLASS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(
                "klingwatch._native is used through the klingwatch package (import klingwatch)",
            )
        })
}

fn members(d: &Bound<'_, pyo3::types::PyDict>) -> PyResult<Vec<(String, Py<PyAny>)>> {
    d.iter()
        .map(|(k, v)| Ok((k.extract::<String>()?, v.unbind())))
        .collect()
}

/// Called once by `klingwatch._task`: the `Task` class (whose slots must be [`TASK_SLOTS`])
/// and its `{wire value: member}` maps of `TaskStatus` and `TaskKind`.
#[pyfunction]
fn _register_task_class(
    py: Python<'_>,
    cls: Bound<'_, pyo3::types::PyType>,
    statuses: Bound<'_, pyo3::types::PyDict>,
    kinds: Bound<'_, pyo3::types::PyDict>,
) -> PyResult<()> {
    for name in TASK_SLOTS {
        // Each must be a slot of the class (a member descriptor), not a property.
        let d = cls.getattr(name)?;
        if !d.hasattr("__set__")? || d.hasattr("fget")? {
            return Err(PyValueError::new_err(format!(
                "Task.{name} is not a slot of the class"
            )));
        }
    }
    // SAFETY: a live type object (a class, so a heap type: its slots can be read on every
    // Python this module supports), the GIL held.
    let alloc = unsafe { pyo3::ffi::PyType_GetSlot(cls.as_type_ptr(), pyo3::ffi::Py_tp_alloc) };
    if alloc.is_null() {
        return Err(PyValueError::new_err("Task has no tp_alloc"));
    }
    let class = TaskClass {
        // SAFETY: the `Py_tp_alloc` slot holds an `allocfunc`.
        alloc: unsafe { std::mem::transmute::<*mut std::ffi::c_void, pyo3::ffi::allocfunc>(alloc) },
        cls: cls.clone().into_any().unbind(),
        slots: TASK_SLOTS
            .iter()
            .map(|n| pyo3::types::PyString::intern(py, n).unbind())
            .collect(),
        statuses: members(&statuses)?,
        kinds: members(&kinds)?,
    };
    *TASK_CLASS.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(class));
    Ok(())
}

/// Hands `obj` (back) to the cyclic GC unless it is tracked already: `Task` calls it as it
/// caches a container it built on first read (see [`task_py`]).
#[pyfunction]
fn _gc_track(obj: &Bound<'_, PyAny>) {
    // SAFETY: a live object, the GIL held; only a GC type's object is tracked, once.
    unsafe {
        let p = obj.as_ptr();
        if pyo3::ffi::PyType_IS_GC(pyo3::ffi::Py_TYPE(p)) != 0
            && pyo3::ffi::PyObject_GC_IsTracked(p) == 0
        {
            pyo3::ffi::PyObject_GC_Track(p.cast());
        }
    }
}

/// The enum member of a wire value, or the value as a str when it is not one.
fn member<'py>(py: Python<'py>, of: &[(String, Py<PyAny>)], v: &str) -> Bound<'py, PyAny> {
    match of.iter().find(|(k, _)| k == v) {
        Some((_, m)) => m.bind(py).clone(),
        None => pyo3::types::PyString::new(py, v).into_any(),
    }
}

/// A `klingwatch.Task`, built here without `Task.__init__` or any Python code: its slots
/// hold the typed fields, and the fields that cost to build stay in native form until
/// first read (`Task.created_at` and friends build and cache them): `_created`/`_updated`
/// as Unix ms, `_images` as one flat tuple of `index, url, watermark_url` per image,
/// `_videos` one of `id, url, watermark_url, duration_s` per video, and `_raw` the server's
/// object as JSON text (parsed only when `Task.raw` is read). Flat tuples (not a tuple per
/// image) halve the containers the cyclic GC counts and traverses per task. Built in Python
/// from a record tuple, a task of a batch cost about 1 µs more on the calling thread, a
/// tenth of a `get_many`'s time over TLS (docs/benchmarks.md, 2026-12-04).
fn task_py<'py>(py: Python<'py>, tc: &TaskClass, task: &Task) -> PyResult<Bound<'py, PyAny>> {
    let mut images: Vec<Bound<'py, PyAny>> = Vec::with_capacity(task.images.len() * 3);
    for i in &task.images {
        images.push(i.index.into_pyobject(py)?.into_any());
        images.push(i.url.as_str().into_pyobject(py)?.into_any());
        images.push(i.watermark_url.as_deref().into_pyobject(py)?);
    }
    let mut videos: Vec<Bound<'py, PyAny>> = Vec::with_capacity(task.videos.len() * 4);
    for v in &task.videos {
        videos.push(v.id.as_str().into_pyobject(py)?.into_any());
        videos.push(v.url.as_str().into_pyobject(py)?.into_any());
        videos.push(v.watermark_url.as_deref().into_pyobject(py)?);
        videos.push(v.duration_s.into_pyobject(py)?);
    }
    let values: [Bound<'py, PyAny>; 11] = [
        task.id.as_str().into_pyobject(py)?.into_any(),
        member(py, &tc.kinds, task.kind.as_str()),
        member(py, &tc.statuses, task.status.as_str()),
        task.status_msg.as_deref().into_pyobject(py)?,
        task.external_task_id.as_deref().into_pyobject(py)?,
        task.final_unit_deduction.as_deref().into_pyobject(py)?,
        task.created_at_ms.into_pyobject(py)?.into_any(),
        task.updated_at_ms.into_pyobject(py)?.into_any(),
        PyTuple::new(py, images)?.into_any(),
        PyTuple::new(py, videos)?.into_any(),
        task.raw.as_str().into_pyobject(py)?.into_any(),
    ];
    // SAFETY: the class's own allocator with the class (kept alive by `tc`), the GIL held;
    // null means an exception is set. The new reference is owned by `obj`.
    let obj = unsafe {
        let p = (tc.alloc)(tc.cls.as_ptr().cast(), 0);
        if p.is_null() {
            return Err(PyErr::fetch(py));
        }
        Bound::from_owned_ptr(py, p)
    };
    // Out of the cyclic GC's lists, as CPython does with a tuple of atoms: every slot holds a
    // str, int, None, enum member or tuple of those, so no cycle can run through the task.
    // Its containers are built on first read (the `raw` dict, the `images` list), and
    // `Task` hands the task back to the GC (`_gc_track`) as it caches one. A batch's tasks
    // all outlive it, so the collections during a batch no longer traverse them.
    // SAFETY: a live object of a GC type, just made, the GIL held.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
    for (name, value) in tc.slots.iter().zip(values.iter()) {
        // The generic setter, as `object.__setattr__` is: `Task.__setattr__` refuses every
        // assignment (a Task is immutable once built).
        // SAFETY: three live objects, the GIL held; -1 means an exception is set.
        if unsafe {
            pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr())
        } == -1
        {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(obj)
}

/// Frees what a batch chunk holds on the runtime's worker, which allocated it. Freed on the
/// Python thread, every string would go back to the worker's malloc arena under that arena's
/// lock while the worker keeps allocating from it: profiled, a tenth of a `get_many`'s CPU
/// went to that lock's futex calls (docs/benchmarks.md, 2026-12-02).
fn free_on_runtime<T: Send + 'static>(items: T) {
    match runtime() {
        Ok(rt) => {
            rt.spawn(async move { drop(items) });
        }
        Err(_) => drop(items),
    }
}

/// A status change as `(Task, previous status or None)`.
fn update_py(py: Python<'_>, u: TaskUpdate) -> PyResult<Bound<'_, PyAny>> {
    let previous = u.previous.as_ref().map(|s| s.as_str().to_owned());
    let task = task_py(py, &*task_class()?, &u.task)?;
    Ok((task, previous).into_pyobject(py)?.into_any())
}

/// A task for Python (see [`task_py`]).
struct PyTask(Task);

impl<'py> IntoPyObject<'py> for PyTask {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        task_py(py, &*task_class()?, &self.0)
    }
}

/// Tasks for Python: a list of `klingwatch.Task`.
struct PyTasks(Vec<Task>);

impl<'py> IntoPyObject<'py> for PyTasks {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let tc = task_class()?;
        py_list(py, self.0, |t| task_py(py, &tc, &t))
    }
}

/// A Python list of `items`, each converted by `f`.
fn py_list<'py, T>(
    py: Python<'py>,
    items: Vec<T>,
    f: impl FnMut(T) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let items = items.into_iter().map(f).collect::<PyResult<Vec<_>>>()?;
    Ok(pyo3::types::PyList::new(py, items)?.into_any())
}

/// What a stream yields: tasks (`iter_tasks`), status changes (`watch`, `wait_updates`) or
/// chunks of a batch (`get_many_chunks`).
enum Item {
    Task(Task),
    Update(TaskUpdate),
    /// Answers of a batch: every input position of an id, and its task or error.
    Chunk(Vec<BatchItem>),
}

/// One stream item for Python: a Task, an update `(Task, previous)`, or the
/// `KlingError` of a failure (returned, not raised: the Python layer decides).
struct PyItem(klingwatch::Result<Item>);

impl<'py> IntoPyObject<'py> for PyItem {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        match self.0 {
            Ok(Item::Task(t)) => task_py(py, &*task_class()?, &t),
            Ok(Item::Update(u)) => update_py(py, u),
            Ok(Item::Chunk(chunk)) => {
                // A flat list, `position, Task or error` per input position (no pair tuple
                // per task): a duplicate id gets a Task (or error object) of its own, as
                // `Task.raw` is a dict its caller may change.
                let tc = task_class()?;
                let mut flat = Vec::with_capacity(chunk.len() * 2);
                for BatchItem { positions, result } in &chunk {
                    match result {
                        Ok(task) => {
                            for p in positions {
                                flat.push(p.into_pyobject(py)?.into_any());
                                flat.push(task_py(py, &tc, task)?);
                            }
                        }
                        Err(e) => {
                            for p in positions {
                                flat.push(p.into_pyobject(py)?.into_any());
                                flat.push(py_error(py, e));
                            }
                        }
                    }
                }
                free_on_runtime(chunk);
                Ok(pyo3::types::PyList::new(py, flat)?.into_any())
            }
            Err(e) => Ok(py_error(py, &e)),
        }
    }
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

type ItemStream = Pin<Box<dyn Stream<Item = klingwatch::Result<Item>> + Send>>;

/// The options shared by `wait`, `wait_updates` and `watch`.
fn wait_options(timeout: f64, poll_interval: f64, max_poll_interval: f64) -> PyResult<WaitOptions> {
    Ok(WaitOptions {
        timeout: secs("timeout", timeout)?,
        poll_interval: secs("poll_interval", poll_interval)?,
        max_poll_interval: secs("max_poll_interval", max_poll_interval)?,
        ..WaitOptions::default()
    })
}

/// The native client: wraps `klingwatch::Client` (cheap to clone, thread-safe).
#[pyclass(frozen, module = "klingwatch._native")]
struct NativeClient {
    inner: klingwatch::Client,
    /// The process that built it: a client's connections and runtime do not survive
    /// `os.fork()`, so using it in a child is refused with a clear error instead of hanging.
    pid: u32,
}

impl NativeClient {
    fn client(&self) -> PyResult<klingwatch::Client> {
        if std::process::id() != self.pid {
            return Err(to_py(Error::config(
                "this client was created in another process (before os.fork()); create a new \
                 client in this process",
            )));
        }
        Ok(self.inner.clone())
    }

    fn stream_iter(&self, stream: ItemStream) -> StreamIter {
        StreamIter {
            stream: Arc::new(tokio::sync::Mutex::new(Some(stream))),
        }
    }
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (access_key=None, secret_key=None, api_key=None, region="global", base_url=None, timeout=30.0, max_retries=3, ca_cert=None, token_ttl=None, token_refresh_margin=None))]
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
        token_ttl: Option<i64>,
        token_refresh_margin: Option<f64>,
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
        if let Some(ttl) = token_ttl {
            b = b.token_ttl_secs(ttl);
        }
        if let Some(m) = token_refresh_margin {
            b = b.token_refresh_margin(secs("token_refresh_margin", m)?);
        }
        // Building the reqwest client may need the runtime context (resolver, timers).
        let rt = runtime()?;
        let _guard = rt.enter();
        let inner = b.build().map_err(to_py)?;
        Ok(NativeClient {
            inner,
            pid: std::process::id(),
        })
    }

    fn base_url(&self) -> String {
        self.inner.base_url().to_owned()
    }

    /// How many JWTs this client has signed (one per refresh, however many callers).
    fn token_signatures(&self) -> u64 {
        self.inner.token_provider().signatures()
    }

    fn token(&self, py: Python<'_>) -> PyResult<String> {
        let c = self.client()?;
        blocking(py, move || c.token())
    }

    fn get_task(&self, py: Python<'_>, kind: &str, task_id: String) -> PyResult<PyTask> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        run(py, async move { c.get_task(kind, &task_id).await }).map(PyTask)
    }

    fn get_task_by_external_id(
        &self,
        py: Python<'_>,
        kind: &str,
        external_task_id: String,
    ) -> PyResult<PyTask> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        run(py, async move {
            c.get_task_by_external_id(kind, &external_task_id).await
        })
        .map(PyTask)
    }

    fn list_tasks(
        &self,
        py: Python<'_>,
        kind: &str,
        page: u32,
        page_size: u32,
    ) -> PyResult<PyTasks> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        run(py, async move { c.list_tasks(kind, page, page_size).await }).map(PyTasks)
    }

    /// The core's `get_many_chunks` as a stream: each item is a flat list, `input position,
    /// Task or KlingError` for each answer that arrived since the previous item. The queries
    /// run on their own task, so Python places one chunk while the rest of the batch is in
    /// flight; closing the stream aborts them.
    fn get_many_chunks(
        &self,
        kind: &str,
        task_ids: Vec<String>,
        concurrency: usize,
    ) -> PyResult<StreamIter> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        let chunks = c
            .get_many_chunks(kind, &task_ids, concurrency)
            .map(|r| r.map(Item::Chunk));
        Ok(self.stream_iter(Box::pin(chunks)))
    }

    fn create_task(&self, py: Python<'_>, kind: &str, body: &str) -> PyResult<PyTask> {
        let kind = kind_of(kind)?;
        let body = parse_body(body)?;
        let c = self.client()?;
        run(py, async move { c.create_task(kind, body).await }).map(PyTask)
    }

    /// Saves the results of a succeeded task (given as its JSON) into `directory`.
    fn download_results(
        &self,
        py: Python<'_>,
        kind: &str,
        task: &str,
        directory: std::path::PathBuf,
    ) -> PyResult<Vec<std::path::PathBuf>> {
        let task = task_from_json(kind, task)?;
        let c = self.client()?;
        run(
            py,
            async move { c.download_results(&task, &directory).await },
        )
    }

    /// Waits for a task; `on_update(update_dict)` is called with the GIL on each status
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
    ) -> PyResult<PyTask> {
        let kind = kind_of(kind)?;
        let raised: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
        let cb: Option<klingwatch::OnUpdate> = on_update.map(|f| {
            let raised = raised.clone();
            let cb: klingwatch::OnUpdate = Arc::new(move |u: &TaskUpdate| {
                let update = u.clone();
                Python::attach(
                    |py| match update_py(py, update).and_then(|a| f.call1(py, (a,))) {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            Err(Error::invalid("the on_update callback raised"))
                        }
                    },
                )
            });
            cb
        });
        let options = WaitOptions {
            on_update: cb,
            ..wait_options(timeout, poll_interval, max_poll_interval)?
        };
        let c = self.client()?;
        // With a callback, the wait is polled here so that the callback runs on this thread.
        let drive = if options.on_update.is_some() {
            Drive::Here
        } else {
            Drive::Spawned
        };
        let r = run_on(
            py,
            drive,
            async move { c.wait(kind, &task_id, options).await },
        );
        if let Some(e) = raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        r.map(PyTask)
    }

    /// The status changes of one task until it ends (updates; the last is terminal, or an
    /// error). Backs `AsyncClient.wait`, whose callback runs on the loop.
    fn wait_updates(
        &self,
        kind: &str,
        task_id: String,
        timeout: f64,
        poll_interval: f64,
        max_poll_interval: f64,
    ) -> PyResult<StreamIter> {
        let kind = kind_of(kind)?;
        let options = wait_options(timeout, poll_interval, max_poll_interval)?;
        let c = self.client()?;
        let _guard = runtime()?.enter();
        let stream = c
            .wait_updates(kind, &task_id, options)
            .map(|r| r.map(Item::Update));
        Ok(self.stream_iter(Box::pin(stream)))
    }

    /// Every task of `kind`, page by page (Tasks, or an error).
    fn iter_tasks(&self, kind: &str, page_size: u32) -> PyResult<StreamIter> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        let _guard = runtime()?.enter();
        let stream = c.iter_tasks(kind, page_size).map(|r| r.map(Item::Task));
        Ok(self.stream_iter(Box::pin(stream)))
    }

    /// Watches many tasks (updates, and per-task errors).
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
    ) -> PyResult<StreamIter> {
        let kind = kind_of(kind)?;
        let timing = wait_options(timeout, poll_interval, max_poll_interval)?;
        let options = WatchOptions {
            timeout: timing.timeout,
            poll_interval: timing.poll_interval,
            max_poll_interval: timing.max_poll_interval,
            concurrency,
            ..WatchOptions::default()
        };
        let c = self.client()?;
        let _guard = runtime()?.enter();
        let stream = c
            .watch(kind, task_ids, options)
            .map(|r| r.map(Item::Update));
        Ok(self.stream_iter(Box::pin(stream)))
    }

    // ---- asyncio: the same calls as awaitables (cancelling the task drops the Rust work) ----

    fn token_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client()?;
        awaitable(py, async move { c.token() })
    }

    fn get_task_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        task_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        awaitable(
            py,
            async move { c.get_task(kind, &task_id).await.map(PyTask) },
        )
    }

    fn get_task_by_external_id_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        external_task_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        awaitable(py, async move {
            c.get_task_by_external_id(kind, &external_task_id)
                .await
                .map(PyTask)
        })
    }

    fn list_tasks_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        page: u32,
        page_size: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = kind_of(kind)?;
        let c = self.client()?;
        awaitable(py, async move {
            c.list_tasks(kind, page, page_size).await.map(PyTasks)
        })
    }

    fn create_task_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        body: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = kind_of(kind)?;
        let body = parse_body(body)?;
        let c = self.client()?;
        awaitable(
            py,
            async move { c.create_task(kind, body).await.map(PyTask) },
        )
    }

    fn download_results_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        task: &str,
        directory: std::path::PathBuf,
    ) -> PyResult<Bound<'py, PyAny>> {
        let task = task_from_json(kind, task)?;
        let c = self.client()?;
        awaitable(
            py,
            async move { c.download_results(&task, &directory).await },
        )
    }

    fn __repr__(&self) -> String {
        format!("<klingwatch Client base_url={:?}>", self.inner.base_url())
    }
}

/// Rebuilds a core task from the JSON of `Task.to_dict()`'s `raw` object.
fn task_from_json(kind: &str, raw: &str) -> PyResult<Task> {
    let kind = kind_of(kind)?;
    Task::from_json_slice(kind, raw.as_bytes()).map_err(to_py)
}

/// A core stream of tasks, updates or batch chunks (see [`PyItem`]), iterable both ways: `__next__` blocks with the GIL released,
/// `__anext__` is an awaitable. `close()` (or dropping it) stops the polling behind it.
#[pyclass(frozen, module = "klingwatch._native")]
struct StreamIter {
    stream: Arc<tokio::sync::Mutex<Option<ItemStream>>>,
}

async fn next_item(stream: Arc<tokio::sync::Mutex<Option<ItemStream>>>) -> Option<PyItem> {
    let mut guard = stream.lock().await;
    let item = match guard.as_mut() {
        Some(s) => s.next().await,
        None => None,
    };
    if item.is_none() {
        *guard = None;
    }
    item.map(PyItem)
}

/// An item of a stream as it arrived on the runtime, not yet Python objects: the awaitable of
/// `next_async` resolves on the runtime's worker, which would otherwise build every record of
/// a batch chunk there, holding the GIL, while the requests wait. `take()` builds them on the
/// thread that awaited (the event loop's).
#[pyclass(frozen, module = "klingwatch._native")]
struct Arrived(Mutex<Option<PyItem>>);

#[pymethods]
impl Arrived {
    /// The item (a Task, an update, a chunk or a `KlingError`); None once taken.
    fn take(&self) -> Option<PyItem> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[pymethods]
impl StreamIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next item, or None at the end.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyItem>> {
        let stream = self.stream.clone();
        run(py, async move { Ok(next_item(stream).await) })
    }

    /// An awaitable of the next item as [`Arrived`] (its `take()` gives the item), or of None
    /// at the end.
    fn next_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream.clone();
        awaitable(py, async move {
            Ok(next_item(stream)
                .await
                .map(|item| Arrived(Mutex::new(Some(item)))))
        })
    }

    /// Stops the stream (drops it, which cancels the polling).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let rt = runtime()?;
        let stream = self.stream.clone();
        let taken = blocking(py, move || {
            Ok(rt.block_on(async move { stream.lock().await.take() }))
        })?;
        drop(taken);
        Ok(())
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
fn parse_callback(body: &[u8]) -> PyResult<PyTask> {
    klingwatch::parse_callback(body).map(PyTask).map_err(to_py)
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

/// Panics inside the guarded paths (blocking, or as an awaitable): exercises the guard that
/// turns any panic into a `KlingError`. Used by the test suite only.
#[pyfunction]
#[pyo3(signature = (awaitable_=false))]
fn _panic_for_tests(py: Python<'_>, awaitable_: bool) -> PyResult<Py<PyAny>> {
    fn boom() -> klingwatch::Result<()> {
        panic!("deliberate panic (klingwatch test)")
    }
    if awaitable_ {
        Ok(awaitable(py, async { boom() })?.unbind())
    } else {
        blocking(py, boom)?;
        Ok(py.None())
    }
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

/// mimalloc for the module's own (Rust) allocations: a query's allocations in hyper, serde
/// and the batch cost less CPU than with glibc's allocator (docs/benchmarks.md, 2026-12-06
/// late evening: 10-16 % less user CPU per `Client.get_many` query).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options, set before the module allocates (its arenas are reserved on first
/// use). With its defaults it commits whole arenas, and the watch of 10,000 tasks peaked at
/// 58.7 MiB against 43.1 MiB with glibc's allocator; committed on demand, in arenas reserved
/// 32 MiB at a time, it peaked at 44.2 MiB. A `MIMALLOC_*` variable in the environment
/// (read by mimalloc as the module is loaded) still wins, and an option whose value is not
/// mimalloc v3's default (another mimalloc, whose option table differs) is left alone.
fn tune_allocator() {
    // `mi_option_e` in the vendored mimalloc v3's `mimalloc.h`, with its defaults.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const ARENA_RESERVE: libmimalloc_sys::mi_option_t = 23;
    const DEFAULT_RESERVE_KIB: std::ffi::c_long = if cfg!(target_pointer_width = "64") {
        1024 * 1024
    } else {
        128 * 1024
    };
    for (option, env, default, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 2, 0),
        (
            ARENA_RESERVE,
            "MIMALLOC_ARENA_RESERVE",
            DEFAULT_RESERVE_KIB,
            32 * 1024,
        ),
    ] {
        // SAFETY: reads and a store in mimalloc's option table, done once at import (under
        // the GIL, before any thread of this module starts).
        unsafe {
            if std::env::var_os(env).is_none() && libmimalloc_sys::mi_option_get(option) == default
            {
                libmimalloc_sys::mi_option_set(option, value);
            }
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    tune_allocator();
    m.add_class::<NativeClient>()?;
    m.add_class::<StreamIter>()?;
    m.add_class::<Arrived>()?;
    m.add_function(wrap_pyfunction!(sign_jwt, m)?)?;
    m.add_function(wrap_pyfunction!(parse_callback, m)?)?;
    m.add_function(wrap_pyfunction!(verify_webhook, m)?)?;
    m.add_function(wrap_pyfunction!(error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(task_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(_quiesce, m)?)?;
    m.add_function(wrap_pyfunction!(_register_task_class, m)?)?;
    m.add_function(wrap_pyfunction!(_gc_track, m)?)?;
    m.add("TASK_SLOTS", PyTuple::new(m.py(), TASK_SLOTS)?)?;
    Ok(())
}

//! `AsyncClient` awaitables resolved on their event loop's thread, in batches.
//!
//! pyo3-async-runtimes resolves each asyncio future from a blocking-pool thread of the
//! runtime that takes the GIL for it (a thread wake-up, a GIL hand-off with the event loop's
//! thread and a `call_soon_threadsafe` per awaitable). Here the runtime never takes the GIL:
//! a finished call queues its outcome, still Rust data, and wakes the loop through a socket
//! the loop watches (`loop.add_reader`), writing at most one byte however many calls finish
//! meanwhile. The loop's thread then converts every queued outcome to Python objects and
//! resolves its future, one wake-up for them all.
//!
//! A loop that cannot watch a socket (`add_reader` is missing on Windows' proactor loop) gets
//! pyo3-async-runtimes' path, [`crate::awaitable`]'s fallback.
//!
//! Measured (docs/benchmarks.md, 2026-12-06, by hand over TLS): one `get_task` per id under
//! `asyncio.gather`, 20,000 ids at concurrency 64, went from 10.8–11.3k to 29.3–30.1k
//! queries/s, and from 122–127 to 36–37 µs of CPU per query.

use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use klingwatch::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{intern, IntoPyObjectExt};

/// Builds a finished call's Python result (or exception) on the loop's thread.
type Resolve = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// What the runtime's tasks share with the loop's reader.
struct Shared {
    /// Finished calls: each asyncio future with the outcome to give it.
    ready: Mutex<Vec<(Py<PyAny>, Resolve)>>,
    /// A byte is on its way to the loop (set by the first call to finish, cleared by the
    /// reader before it takes the queue).
    signalled: AtomicBool,
    tx: UnixStream,
}

impl Shared {
    fn push(&self, fut: Py<PyAny>, resolve: Resolve) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((fut, resolve));
        if !self.signalled.swap(true, Ordering::AcqRel) {
            // Non-blocking; the socket never fills (one byte per reader run). On a closed
            // loop nobody reads it, and the outcome stays queued: `asyncio.run` cancels its
            // tasks before it closes the loop, which aborts their calls before they finish.
            loop {
                match (&self.tx).write(&[1]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // Sent, or a byte is waiting already.
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // Not sent (out of buffers): the next call to finish tries again rather
                    // than every later one counting on a byte that never left.
                    Err(_) => self.signalled.store(false, Ordering::Release),
                }
                break;
            }
        }
    }
}

/// One event loop's end of the bridge: the socket it watches and the queue it drains.
#[pyclass(frozen, module = "klingwatch._native")]
pub(crate) struct LoopBridge {
    shared: Arc<Shared>,
    rx: UnixStream,
    /// The process that made it: a child of `os.fork()` makes its own.
    pid: u32,
}

#[pymethods]
impl LoopBridge {
    /// The loop's reader callback: resolves every queued future. Never raises.
    fn _drain(&self, py: Python<'_>) {
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        // Cleared before the queue is taken: a call finishing after this point writes a byte
        // again, so none waits for a later, unrelated wake-up.
        self.shared.signalled.store(false, Ordering::Release);
        let ready =
            std::mem::take(&mut *self.shared.ready.lock().unwrap_or_else(|p| p.into_inner()));
        for (fut, resolve) in ready {
            let fut = fut.bind(py);
            // A cancelled future (its task was cancelled) takes no result.
            let done = fut
                .call_method0(intern!(py, "done"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(true);
            if done {
                continue;
            }
            let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resolve(py)))
                .unwrap_or_else(|_| Err(crate::to_py(Error::from_panic())));
            let _ = match resolved {
                Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)),
                Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
            };
        }
    }
}

/// The done-callback of a bridged future: stops the Rust work when the future is cancelled
/// (once resolved, its task has ended and the abort does nothing).
#[pyclass(frozen, module = "klingwatch._native")]
struct AbortOnDone(tokio::task::AbortHandle);

#[pymethods]
impl AbortOnDone {
    fn __call__(&self, _fut: &Bound<'_, PyAny>) {
        self.0.abort();
    }
}

/// `{loop: LoopBridge or None}`, weakly keyed (a closed loop's bridge goes with the loop).
static BRIDGES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The running loop and its bridge (made on first use), or None for a loop that cannot watch
/// a socket. Raises RuntimeError outside a running loop, as `asyncio.get_running_loop` does.
fn bridge_of<'py>(
    py: Python<'py>,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, LoopBridge>>)> {
    let get_loop = GET_RUNNING_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    let event_loop = get_loop.bind(py).call0()?;
    let bridges = BRIDGES
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("weakref")?
                    .getattr("WeakKeyDictionary")?
                    .call0()?
                    .unbind(),
            )
        })?
        .bind(py);
    let known = bridges.call_method1(intern!(py, "get"), (&event_loop, false))?;
    let pid = std::process::id();
    if known.is_none() {
        return Ok((event_loop, None));
    }
    if let Ok(b) = known.cast::<LoopBridge>() {
        // A loop carried over os.fork() shares its selector and the bridge's socket with the
        // parent: changing either would take the parent's wake-ups, so the child's calls on
        // it take the fallback. (Running such a loop in the child while the parent's calls
        // finish would let the child read the parent's wake-up bytes, as it would asyncio's
        // own; asyncio does not support a loop used across fork.)
        let b = (b.get().pid == pid).then(|| b.clone());
        return Ok((event_loop, b));
    }
    let made = make_bridge(py, &event_loop, pid)?;
    bridges.set_item(&event_loop, made.as_ref())?;
    Ok((event_loop, made))
}

fn make_bridge<'py>(
    py: Python<'py>,
    event_loop: &Bound<'py, PyAny>,
    pid: u32,
) -> PyResult<Option<Bound<'py, LoopBridge>>> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let fd = rx.as_raw_fd();
    let bridge = Bound::new(
        py,
        LoopBridge {
            shared: Arc::new(Shared {
                ready: Mutex::new(Vec::new()),
                signalled: AtomicBool::new(false),
                tx,
            }),
            rx,
            pid,
        },
    )?;
    match event_loop.call_method1(intern!(py, "add_reader"), (fd, bridge.getattr("_drain")?)) {
        Ok(_) => Ok(Some(bridge)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyNotImplementedError>(py) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fut` as an asyncio future of the running loop, resolved through its bridge; `fut` given
/// back (`Ok(Err(fut))`) when the loop has none, for pyo3-async-runtimes' path.
pub(crate) fn bridged<'py, F, T>(
    py: Python<'py>,
    rt: &'static tokio::runtime::Runtime,
    fut: F,
) -> PyResult<std::result::Result<Bound<'py, PyAny>, F>>
where
    F: std::future::Future<Output = klingwatch::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let (event_loop, Some(bridge)) = bridge_of(py)? else {
        return Ok(Err(fut));
    };
    let py_fut = event_loop.call_method0(intern!(py, "create_future"))?;
    let shared = bridge.get().shared.clone();
    let target = py_fut.clone().unbind();
    // Counted as the fallback's tasks are: the exit waits for calls still in flight
    // (`_quiesce`), whichever path they took.
    let in_flight = crate::InFlight::enter();
    let task = rt.spawn(async move {
        let _in_flight = in_flight;
        let out = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut))
            .await
            .unwrap_or_else(|_| Err(Error::from_panic()));
        shared.push(
            target,
            Box::new(move |py| match out {
                Ok(v) => v.into_py_any(py),
                Err(e) => Err(crate::to_py(e)),
            }),
        );
    });
    py_fut.call_method1(
        intern!(py, "add_done_callback"),
        (AbortOnDone(task.abort_handle()),),
    )?;
    Ok(Ok(py_fut))
}

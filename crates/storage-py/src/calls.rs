//! How a native call runs: as an asyncio awaitable, or, with `blocking`, to completion on
//! the caller's thread with the GIL released (LangGraph's sync methods), on this
//! package's runtime (`runtime.rs`).

use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;
use pythonize::pythonize;
use serde::Serialize;

use crate::errors::to_py_err;
use crate::runtime;

/// Runs `fut` on the shared tokio runtime: as an asyncio awaitable, or, with `blocking`,
/// to completion with the GIL released (LangGraph's sync methods). The result crosses as
/// its serde shape.
pub(crate) fn finish<'py, T, F>(
    py: Python<'py>,
    blocking: bool,
    fut: F,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Serialize + Send + 'static,
    F: Future<Output = storage_core::Result<T>> + Send + 'static,
{
    finish_with(py, blocking, fut, pythonized::<T>)
}

/// [`finish`] with the result converted by `convert`.
pub(crate) fn finish_with<'py, T, F>(
    py: Python<'py>,
    blocking: bool,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = storage_core::Result<T>> + Send + 'static,
{
    if blocking {
        let runtime = runtime::handle();
        let mut fut = Box::pin(fut);
        // A call that needs no I/O (the memory backend, a cache hit) is done at its first
        // poll: it keeps the GIL, since handing the GIL over and taking it back costs far
        // more than the call when other Python threads wait for it. Anything that waits
        // releases the GIL and finishes on the runtime; so does a read an embedded backend
        // would run on this thread (`forbid`), which then runs here with the GIL released.
        let first = {
            let _context = runtime.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            storage_core::blocking::forbid(|| fut.as_mut().poll(&mut cx))
        };
        let result = match first {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => match wait_interruptibly(py, &runtime, fut.as_mut()) {
                Ok(result) => result,
                Err(interrupted) => {
                    // Dropped inside the runtime, as a cancelled task is: a group-commit
                    // flush left unfinished moves onto a task of its own from there.
                    let _context = runtime.enter();
                    drop(fut);
                    return Err(interrupted);
                }
            },
        };
        return deliver(py, result, convert).map(|object| object.into_bound(py));
    }
    if runtime::exiting() {
        // No tokio thread may hand a result to asyncio any more (an `atexit` hook that runs
        // after this package's): the call runs on this thread and its future is done.
        let future = py
            .import("asyncio")?
            .call_method0("get_running_loop")?
            .call_method0("create_future")?;
        match finish_with(py, true, fut, convert) {
            Ok(value) => future.call_method1("set_result", (value,))?,
            Err(err) => future.call_method1("set_exception", (err.into_value(py),))?,
        };
        return Ok(future);
    }
    pyo3_async_runtimes::generic::future_into_py::<runtime::Tokio, _, _>(py, async move {
        let result = fut.await;
        runtime::attach(|py| deliver(py, result, convert)).unwrap_or_else(|| {
            Err(pyo3::exceptions::PyRuntimeError::new_err(
                "the interpreter is exiting",
            ))
        })
    })
}

/// How often a blocking call that waits looks for a signal such as Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Runs `fut` to completion with the GIL released, running Python's signal handlers every
/// [`SIGNAL_CHECK`] while it waits: one that raises (Ctrl-C's `KeyboardInterrupt`) ends
/// the wait with its exception and drops the call, as Python's own blocking calls do. A
/// call dropped so may or may not have taken effect, like one that timed out.
fn wait_interruptibly<F: Future + Send>(
    py: Python<'_>,
    runtime: &tokio::runtime::Handle,
    mut fut: std::pin::Pin<&mut F>,
) -> PyResult<F::Output>
where
    F::Output: Send,
{
    loop {
        // The timer is made inside the runtime, which it needs.
        let slice = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await })
        });
        match slice {
            Ok(output) => return Ok(output),
            Err(_waiting) => py.check_signals()?,
        }
    }
}

fn deliver<T>(
    py: Python<'_>,
    result: storage_core::Result<T>,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    match result {
        Ok(value) => convert(py, value),
        Err(err) => Err(to_py_err(py, &err)),
    }
}

fn pythonized<T: Serialize>(py: Python<'_>, value: T) -> PyResult<Py<PyAny>> {
    Ok(pythonize(py, &value)?.unbind())
}

//! The tokio runtime every call runs on, owned by this module rather than taken from
//! `pyo3-async-runtimes`' global one, for two moments of a Python process's life:
//!
//! - **`os.fork()`.** A child inherits the parent's runtime without its threads: a call
//!   spawned or waited on there never ends, and not even Ctrl-C stops it (gunicorn
//!   `--preload`, celery's prefork pool, `multiprocessing` with the fork start method).
//!   A hook registered with `os.register_at_fork` counts forks in the child, and the
//!   first call after one builds a fresh runtime; the inherited one is left alone (its
//!   threads are the parent's, so dropping it would wait for them forever). A `Storage`
//!   made before the fork is refused in the child (`NativeStorage::storage`): its
//!   connections and files belong to the parent. While a fork is under way no tokio
//!   thread attaches to the interpreter (the `before` hook waits for those attached):
//!   CPython's after-fork code in the child takes a lock that such a thread may hold.
//! - **Interpreter exit.** A tokio thread that finishes an async call attaches to Python
//!   to hand the result over; doing so while the interpreter finalizes crashes the process
//!   (SIGSEGV, or "Fatal Python error: PyGILState_Release"). An `atexit` hook, which runs
//!   before finalization, waits for the threads attached now and stops any more from
//!   attaching ([`attach`]); a call still running then is dropped unanswered, and an
//!   async call made later (by an `atexit` hook that runs after this one) runs on its
//!   caller's thread ([`exiting`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, Runtime as GenericRuntime};
use pyo3_async_runtimes::TaskLocals;
use tokio::runtime::{Handle, Runtime};

/// Forks this process has gone through, as counted in each child.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// The runtime of this process and the fork count it was built at.
static CURRENT: Mutex<Option<(u64, Runtime)>> = Mutex::new(None);

/// The fork count the current runtime was built at (`u64::MAX`: none yet), readable
/// without the lock.
static BUILT_AT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Whether the interpreter is exiting: no tokio thread attaches to it any more.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Forks under way (by as many threads): tokio threads wait to attach until none is.
static FORKING: AtomicUsize = AtomicUsize::new(0);

/// Tokio threads attached (or about to attach) to the interpreter. Counted rather than
/// locked: a thread waiting for the GIL while another forks does not exist in the child,
/// and the child sets the count back to 0.
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// How long the exit and fork hooks wait for attached threads to finish.
const ATTACHED_WAIT: Duration = Duration::from_secs(2);

/// The forks counted so far: a `Storage` remembers it to know the process it was made in.
pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Acquire)
}

/// Whether the exit hook has run: a tokio thread can no longer hand a result to asyncio.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// The runtime of this process, built at first use and again after a fork. Past the
/// fast path only threads holding the GIL come here, so a fork (which holds it) never
/// finds the lock held by another thread.
pub(crate) fn handle() -> Handle {
    let forks = forks();
    // On a thread of the runtime (spawning from a task) it is at hand without the lock: a
    // tokio thread must never hold the lock, since a fork by another thread would leave
    // the child's copy of it held.
    if BUILT_AT.load(Ordering::Acquire) == forks {
        if let Ok(handle) = Handle::try_current() {
            return handle;
        }
    }
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((built_at, runtime)) = current.as_ref() {
        if *built_at == forks {
            return runtime.handle().clone();
        }
    }
    if let Some((_, inherited)) = current.take() {
        // Its threads exist only in the parent: dropping it would wait for them forever.
        std::mem::forget(inherited);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agent-storage")
        .build()
        .expect("building the tokio runtime");
    let handle = runtime.handle().clone();
    *current = Some((forks, runtime));
    BUILT_AT.store(forks, Ordering::Release);
    handle
}

/// Runs `f` attached to the interpreter, unless it is exiting (then `None`): the only way
/// a tokio thread may attach.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    loop {
        // Counted first, then the flags read (all sequentially consistent): either this
        // thread sees a hook's flag, or the hook sees this thread's count and waits for it.
        ATTACHED.fetch_add(1, Ordering::SeqCst);
        if FORKING.load(Ordering::SeqCst) > 0 {
            ATTACHED.fetch_sub(1, Ordering::SeqCst);
            while FORKING.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        let result = (!EXITING.load(Ordering::SeqCst)).then(|| Python::attach(f));
        ATTACHED.fetch_sub(1, Ordering::SeqCst);
        return result;
    }
}

/// Waits, with the GIL released so that they can finish, at most [`ATTACHED_WAIT`] for the
/// tokio threads attached now.
fn wait_for_attached(py: Python<'_>) {
    py.detach(|| {
        let deadline = Instant::now() + ATTACHED_WAIT;
        while ATTACHED.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// `os.register_at_fork(before=...)`: no tokio thread attaches until the fork is done.
#[pyfunction]
fn _before_fork(py: Python<'_>) {
    FORKING.fetch_add(1, Ordering::SeqCst);
    wait_for_attached(py);
}

/// `os.register_at_fork(after_in_parent=...)`.
#[pyfunction]
fn _after_fork_in_parent() {
    FORKING.fetch_sub(1, Ordering::SeqCst);
}

/// `os.register_at_fork(after_in_child=...)`: counts the fork in the child, where no
/// tokio thread of the parent exists.
#[pyfunction]
fn _after_fork_in_child() {
    ATTACHED.store(0, Ordering::SeqCst);
    FORKS.fetch_add(1, Ordering::AcqRel);
    FORKING.store(0, Ordering::SeqCst);
}

/// `atexit`: lets no more tokio threads attach, and waits for those attached now.
#[pyfunction]
fn _before_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    wait_for_attached(py);
}

/// Registers the two hooks with the interpreter.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    // Where there is no fork (Windows), there is no hook either.
    if let Ok(register_at_fork) = py.import("os")?.getattr("register_at_fork") {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("before", wrap_pyfunction!(_before_fork, module)?)?;
        kwargs.set_item(
            "after_in_parent",
            wrap_pyfunction!(_after_fork_in_parent, module)?,
        )?;
        kwargs.set_item(
            "after_in_child",
            wrap_pyfunction!(_after_fork_in_child, module)?,
        )?;
        register_at_fork.call((), Some(&kwargs))?;
    }
    let before_exit = wrap_pyfunction!(_before_exit, module)?;
    py.import("atexit")?
        .getattr("register")?
        .call1((before_exit,))?;
    Ok(())
}

/// This module's runtime as `pyo3-async-runtimes` drives asyncio awaitables on it.
pub(crate) struct Tokio;

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<TaskLocals>;
}

impl GenericRuntime for Tokio {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        handle().spawn(fut)
    }

    /// `f` hands a result to the asyncio loop, attached to the interpreter: skipped when
    /// it is exiting (see [`attach`]).
    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        handle().spawn_blocking(move || {
            attach(|_| f());
        })
    }
}

impl ContextExt for Tokio {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|cell| cell.get().cloned())
            .unwrap_or_default()
    }
}

//! A backend wrapper that injects faults, for millisecond-scale tests of whatever sits
//! above a backend (failover, retries, group commit).
//!
//! [`FaultyBackend`] passes every call to the backend it wraps unless a [`Fault`] is armed
//! for it. Faults are chosen per call by a [`Target`] (every call, reads, writes, or one
//! operation by name) and can be changed while the backend is in use, so a test can bring
//! a "server" down and back up at will.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use storage_core::{ErrorKind, SessionStore, StorageBackend};
//! use storage_testkit::fault::{Fault, FaultyBackend, Target};
//!
//! # fn inner() -> Arc<dyn StorageBackend> { unimplemented!() }
//! # async fn example() {
//! let backend = FaultyBackend::new(inner());
//! backend.set(Target::Reads, Fault::Hang);
//! // get_session now never answers; a caller's deadline must end it.
//! let late = tokio::time::timeout(Duration::from_millis(10), backend.get_session("s")).await;
//! assert!(late.is_err());
//! backend.set(Target::Reads, Fault::Error(ErrorKind::Connection));
//! backend.clear();
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage_core::operation::Dispatch;
use storage_core::{async_trait, Call, ErrorKind, Reply, Result, StorageBackend, StorageError};

/// What happens to a call a fault is armed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fails before reaching the backend, with an error of this kind (temporary where the
    /// kind is temporary by default).
    Error(ErrorKind),
    /// Never answers (until the fault is cleared: calls already hanging stay hung, as on a
    /// stopped server).
    Hang,
    /// Reaches the backend after this delay.
    Latency(Duration),
    /// Reaches the backend, which applies it, and then fails with a temporary `Connection`
    /// error: the outcome a caller cannot tell from a failure.
    FailAfterApply,
}

/// Which calls a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every call.
    All,
    /// Calls that change nothing (lifecycle reads such as `health_check` included).
    Reads,
    /// Calls that may change stored data.
    Writes,
    /// One operation, by its contract name (`append_message`, `health_check`, ...).
    Operation(&'static str),
}

impl Target {
    fn matches(&self, call: &Call) -> bool {
        match self {
            Target::All => true,
            Target::Reads => !call.describe().is_write(),
            Target::Writes => call.describe().is_write(),
            Target::Operation(name) => call.name() == *name,
        }
    }
}

/// A backend that injects faults into the calls of the backend it wraps; see the module
/// docs.
#[derive(Debug, Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn StorageBackend>,
    faults: Arc<Mutex<Vec<(Target, Fault)>>>,
    calls: Arc<AtomicU64>,
    injected: Arc<AtomicU64>,
}

impl FaultyBackend {
    /// Wraps `inner`, with no fault armed.
    pub fn new(inner: Arc<dyn StorageBackend>) -> Self {
        FaultyBackend {
            inner,
            faults: Arc::default(),
            calls: Arc::default(),
            injected: Arc::default(),
        }
    }

    /// Arms `fault` for the calls `target` selects, replacing a fault armed for the same
    /// target. The first armed fault whose target matches a call wins.
    pub fn set(&self, target: Target, fault: Fault) {
        let mut faults = self.lock();
        faults.retain(|(armed, _)| *armed != target);
        faults.push((target, fault));
    }

    /// Disarms every fault: calls reach the backend again.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The backend underneath, without faults.
    pub fn inner(&self) -> &Arc<dyn StorageBackend> {
        &self.inner
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls a fault was injected into so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Target, Fault)>> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fault_for(&self, call: &Call) -> Option<Fault> {
        self.lock()
            .iter()
            .find(|(target, _)| target.matches(call))
            .map(|(_, fault)| fault.clone())
    }
}

fn injected_error(kind: ErrorKind, call: &Call) -> StorageError {
    StorageError::new(kind, format!("injected fault on {}", call.name()))
        .with_backend("faulty")
        .with_operation(call.name())
}

#[async_trait]
impl Dispatch for FaultyBackend {
    fn label(&self) -> &'static str {
        self.inner.name()
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let Some(fault) = self.fault_for(&call) else {
            return call.apply(self.inner.as_ref()).await;
        };
        self.injected.fetch_add(1, Ordering::SeqCst);
        match fault {
            Fault::Error(kind) => Err(injected_error(kind, &call)),
            Fault::Hang => std::future::pending().await,
            Fault::Latency(delay) => {
                tokio::time::sleep(delay).await;
                call.apply(self.inner.as_ref()).await
            }
            Fault::FailAfterApply => {
                call.apply(self.inner.as_ref()).await?;
                Err(injected_error(ErrorKind::Connection, &call))
            }
        }
    }
}

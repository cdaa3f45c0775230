//! Failover: a primary and a fallback backend behind one [`StorageBackend`], so no
//! acknowledged write is lost while the primary is down.
//!
//! A circuit breaker decides where operations go. While it is closed, reads go to the
//! primary (a temporary failure is answered from the fallback) and writes go to the primary
//! and are mirrored to the fallback, the primary's answer deciding. It opens after
//! [`FailoverSettings::failure_threshold`] consecutive temporary failures, or at once when a
//! write is journaled. While it is open, reads go to the fallback, and writes:
//!
//! - in [`FailoverMode::DualWrite`], fail with the primary's temporary error;
//! - in [`FailoverMode::Failover`], are performed on the fallback and, before they are
//!   acknowledged, appended to a durable [`Journal`] (fsynced; it survives a restart of the
//!   process, which then starts with the breaker open).
//!
//! A probe calls the primary's `health_check` every [`FailoverSettings::probe_interval_ms`];
//! after [`FailoverSettings::recovery_probes`] healthy answers in a row it replays the journal
//! to the primary in order, one write at a time, recording each replayed line, and closes
//! the breaker once the journal is empty and no outage write is in flight. Replays are
//! idempotent where the contract allows (client message ids, checkpoint ids, writes keyed by
//! task and index, imports); `docs/operations.md` names the writes that are not.
//!
//! Every call of the primary gets a deadline of its own
//! ([`FailoverSettings::attempt_timeout_ms`]): a primary that accepts connections and never
//! answers fails like one that is down, opens the breaker, and reads go to the fallback.
//!
//! `FailoverBackend` implements [`Dispatch`](storage_core::operation::Dispatch): the policy
//! is written once (`dispatch.rs`), over the calls of the one table of operations in
//! `storage_core::operation`, and the journal stores those calls. Streams keep their
//! semantics: an artifact stream goes to the primary as a stream and is mirrored to the
//! fallback by streaming it back, and while the primary is down a streamed save is
//! journaled only up to [`FailoverSettings::max_journaled_stream_bytes`].

mod call;
mod dispatch;
mod journal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storage_core::{Call, Result, StorageBackend, StorageError};

pub use self::call::Replayed;
pub use self::journal::Journal;

/// What happens to writes while the primary is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverMode {
    /// Writes go to both backends; the primary's answer decides, so they fail while it is
    /// down. Reads still go to the fallback.
    DualWrite,
    /// Writes the primary cannot take are accepted by the fallback and journaled, then
    /// replayed to the primary when it returns.
    Failover,
}

/// Thresholds and the journal's place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverSettings {
    /// The write mode.
    pub mode: FailoverMode,
    /// Consecutive temporary failures of the primary that open the breaker.
    pub failure_threshold: u32,
    /// Time between health probes of the primary while the breaker is open, in ms.
    pub probe_interval_ms: u64,
    /// Consecutive healthy probes before the journal is replayed and the breaker closes.
    pub recovery_probes: u32,
    /// Directory of the journal (`journal.jsonl`, `journal.done`).
    pub journal_dir: PathBuf,
    /// Deadline of each read of the primary (and of the probe's health check), in ms (0:
    /// none). A read that passes it is a temporary failure: it counts toward opening the
    /// breaker and is answered by the fallback.
    pub attempt_timeout_ms: u64,
    /// Deadline of each write of the primary, in ms (0: none). A write that passes it
    /// counts toward opening the breaker and is journaled if it is idempotent. Longer than
    /// the read deadline by default, since a write may carry a large value. Streamed saves,
    /// `initialize`, cleanup and the replay have no deadline.
    pub write_attempt_timeout_ms: u64,
    /// The largest streamed artifact save journaled while the primary is down, in bytes;
    /// a larger one fails with a temporary `Connection` error and stores nothing.
    pub max_journaled_stream_bytes: u64,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            mode: FailoverMode::Failover,
            failure_threshold: 3,
            probe_interval_ms: 500,
            recovery_probes: 2,
            journal_dir: PathBuf::from(".storage/failover"),
            attempt_timeout_ms: 2_000,
            write_attempt_timeout_ms: 10_000,
            max_journaled_stream_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Where the breaker stands, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverStatus {
    /// Whether the primary is considered down (reads go to the fallback).
    pub open: bool,
    /// Journaled writes not yet replayed.
    pub journal_pending: u64,
    /// Writes journaled since this value was built.
    pub journaled: u64,
    /// Journaled writes replayed to the primary.
    pub replayed: u64,
    /// Journaled writes the primary refused for good on replay (see the operations guide).
    pub refused: u64,
}

/// A primary and a fallback with a circuit breaker and a journal; see the module docs.
#[derive(Clone)]
pub struct FailoverBackend {
    inner: Arc<Inner>,
}

struct Inner {
    primary: Arc<dyn StorageBackend>,
    fallback: Arc<dyn StorageBackend>,
    settings: FailoverSettings,
    journal: Journal,
    open: AtomicBool,
    failures: AtomicU32,
    /// Outage writes hold it shared across "fallback write + journal append"; closing the
    /// breaker takes it exclusively, so no journaled write can slip in behind the replay.
    gate: tokio::sync::RwLock<()>,
    prober: Mutex<Option<tokio::task::JoinHandle<()>>>,
    journaled: AtomicU64,
    replayed: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for FailoverBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverBackend")
            .field("primary", &self.inner.primary)
            .field("fallback", &self.inner.fallback)
            .field("settings", &self.inner.settings)
            .field("open", &self.inner.open.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(prober) = self
            .prober
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            prober.abort();
        }
    }
}

impl FailoverBackend {
    /// Pairs `primary` with `fallback` and opens the journal. A journal left with
    /// unreplayed writes (a process that stopped during an outage) starts the breaker
    /// open; `initialize` starts the probe that replays it.
    pub fn new(
        primary: Arc<dyn StorageBackend>,
        fallback: Arc<dyn StorageBackend>,
        settings: FailoverSettings,
    ) -> Result<Self> {
        if settings.failure_threshold == 0 || settings.recovery_probes == 0 {
            return Err(StorageError::config(
                "failover.failure_threshold and failover.recovery_probes must be at least 1",
            ));
        }
        let journal = Journal::open(&settings.journal_dir)?;
        let open = journal.pending() > 0;
        Ok(FailoverBackend {
            inner: Arc::new(Inner {
                primary,
                fallback,
                settings,
                journal,
                open: AtomicBool::new(open),
                failures: AtomicU32::new(0),
                gate: tokio::sync::RwLock::new(()),
                prober: Mutex::new(None),
                journaled: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        })
    }

    /// The breaker and journal figures.
    pub fn status(&self) -> FailoverStatus {
        let inner = &self.inner;
        FailoverStatus {
            open: inner.open.load(Ordering::SeqCst),
            journal_pending: inner.journal.pending(),
            journaled: inner.journaled.load(Ordering::Relaxed),
            replayed: inner.replayed.load(Ordering::Relaxed),
            refused: inner.refused.load(Ordering::Relaxed),
        }
    }

    /// Waits until the breaker is closed and the journal empty, or `timeout` passes;
    /// returns whether it happened.
    pub async fn wait_until_recovered(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status();
            if !status.open && status.journal_pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn primary(&self) -> &dyn StorageBackend {
        self.inner.primary.as_ref()
    }

    fn fallback(&self) -> &dyn StorageBackend {
        self.inner.fallback.as_ref()
    }

    fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::SeqCst)
    }

    fn record_success(&self) {
        self.inner.failures.store(0, Ordering::Relaxed);
    }

    fn record_failure(&self) {
        let failures = self.inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.inner.settings.failure_threshold {
            self.trip();
        }
    }

    /// Opens the breaker and makes sure the probe runs.
    fn trip(&self) {
        if !self.inner.open.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                primary = self.inner.primary.name(),
                fallback = self.inner.fallback.name(),
                "failover: primary down, serving from the fallback"
            );
        }
        self.ensure_prober();
    }

    fn ensure_prober(&self) {
        let mut prober = self
            .inner
            .prober
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prober.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *prober = Some(runtime.spawn(probe(Arc::downgrade(&self.inner))));
    }
}

/// The probe: while the breaker is open, checks the primary; once it is healthy, replays
/// the journal in order and closes the breaker.
async fn probe(inner: Weak<Inner>) {
    let mut healthy = 0;
    loop {
        let interval = match inner.upgrade() {
            Some(inner) => Duration::from_millis(inner.settings.probe_interval_ms),
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        if !inner.open.load(Ordering::SeqCst) {
            return;
        }
        let check = Call::HealthCheck {};
        match within(
            inner.settings.attempt_timeout_ms,
            &check,
            inner.primary.as_ref(),
        )
        .await
        {
            Ok(storage_core::Reply::HealthCheck(status)) if status.healthy => healthy += 1,
            _ => {
                healthy = 0;
                continue;
            }
        }
        if healthy < inner.settings.recovery_probes {
            continue;
        }
        // A primary that was down when the process started was never initialized; doing it
        // again is harmless (`initialize` is idempotent).
        if let Err(err) = inner.primary.initialize().await {
            tracing::warn!(error = %err, "failover: the recovered primary does not initialize");
            healthy = 0;
            continue;
        }
        match replay(&inner).await {
            Ok(true) => {
                tracing::info!(
                    primary = inner.primary.name(),
                    "failover: journal replayed, primary serving again"
                );
                return;
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "failover: replay stopped; retrying after the next probes");
                healthy = 0;
            }
        }
    }
}

/// Replays every journaled write; closes the breaker and returns `true` once nothing is
/// left and no outage write is in flight.
async fn replay(inner: &Arc<Inner>) -> Result<bool> {
    loop {
        let journal = inner.journal.clone();
        let batch = tokio::task::spawn_blocking(move || journal.unreplayed())
            .await
            .map_err(|err| StorageError::backend(format!("failover journal task: {err}")))??;
        if batch.is_empty() {
            let _closing = inner.gate.write().await;
            if inner.journal.pending() > 0 {
                continue;
            }
            let journal = inner.journal.clone();
            let cleared = tokio::task::spawn_blocking(move || journal.clear_if_replayed())
                .await
                .map_err(|err| StorageError::backend(format!("failover journal task: {err}")))??;
            if cleared {
                inner.failures.store(0, Ordering::Relaxed);
                inner.open.store(false, Ordering::SeqCst);
                return Ok(true);
            }
            continue;
        }
        for (position, call) in batch {
            match call::replay(&call, inner.primary.as_ref()).await? {
                Replayed::Applied => inner.replayed.fetch_add(1, Ordering::Relaxed),
                Replayed::Refused => inner.refused.fetch_add(1, Ordering::Relaxed),
            };
            let journal = inner.journal.clone();
            tokio::task::spawn_blocking(move || journal.mark_done(position))
                .await
                .map_err(|err| StorageError::backend(format!("failover journal task: {err}")))??;
        }
    }
}

/// Applies `call` to `backend` within `timeout_ms` (0: no deadline); past it, a temporary
/// `Timeout` naming the backend and the call.
async fn within(
    timeout_ms: u64,
    call: &Call,
    backend: &dyn StorageBackend,
) -> Result<storage_core::Reply> {
    if timeout_ms == 0 {
        return call.apply(backend).await;
    }
    match tokio::time::timeout(Duration::from_millis(timeout_ms), call.apply(backend)).await {
        Ok(result) => result,
        Err(_) => Err(StorageError::timeout(format!(
            "no answer within failover.attempt_timeout_ms ({timeout_ms} ms)"
        ))
        .with_backend(backend.name())
        .with_operation(call.name())),
    }
}

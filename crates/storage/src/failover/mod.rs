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
//! The policy is written once, in `FailoverBackend::read` and `FailoverBackend::write`;
//! each contract method only names its call (and, for a write, the [`WriteCall`] that
//! journals it).

mod call;
mod journal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage_core::{
    Artifact, ArtifactMeta, ArtifactStore, BackendMetrics, BatchCreate, ChannelVersions,
    Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore, CheckpointTuple,
    ConversationStore, ExpectedVersion, HealthStatus, Message, MessageRange, NewArtifact,
    NewMessage, NewSession, Page, PendingWrite, Result, Session, SessionQuery, SessionStatus,
    SessionStore, SessionUpdate, StorageBackend, StorageError, TaskContext, TaskContextStore,
};

pub use self::call::{Replayed, WriteCall};
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
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            mode: FailoverMode::Failover,
            failure_threshold: 3,
            probe_interval_ms: 500,
            recovery_probes: 2,
            journal_dir: PathBuf::from(".storage/failover"),
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

    /// Runs a read: on the fallback while the breaker is open, else on the primary with
    /// the fallback answering a temporary failure.
    async fn read<'a, T: Send>(
        &'a self,
        run: impl Fn(&'a dyn StorageBackend) -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    ) -> Result<T> {
        if self.is_open() {
            return run(self.fallback()).await;
        }
        match run(self.primary()).await {
            Ok(value) => {
                self.record_success();
                Ok(value)
            }
            Err(err) if err.is_temporary() => {
                self.record_failure();
                run(self.fallback()).await
            }
            Err(err) => Err(err),
        }
    }

    /// Runs a write under the breaker and the mode; `call` is what the journal keeps.
    async fn write<'a, T: Send>(
        &'a self,
        call: impl FnOnce() -> WriteCall + Send + 'a,
        run: impl Fn(&'a dyn StorageBackend) -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    ) -> Result<T> {
        if !self.is_open() {
            match run(self.primary()).await {
                Ok(value) => {
                    self.record_success();
                    if let Err(err) = run(self.fallback()).await {
                        tracing::debug!(error = %err, "failover: mirroring to the fallback failed");
                    }
                    return Ok(value);
                }
                Err(err) if err.is_temporary() => {
                    self.record_failure();
                    if self.inner.settings.mode == FailoverMode::DualWrite {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        } else if self.inner.settings.mode == FailoverMode::DualWrite {
            return Err(StorageError::connection(
                "the primary is down and failover.mode is dual_write: writes wait for it",
            )
            .with_temporary(true));
        }
        // The outage path: the fallback answers, the journal keeps the write for the
        // primary. The breaker opens first so that every later write queues behind this one.
        let _in_flight = self.inner.gate.read().await;
        self.trip();
        let value = run(self.fallback()).await?;
        let journal = self.inner.journal.clone();
        let call = call();
        tokio::task::spawn_blocking(move || journal.append(&call))
            .await
            .map_err(|err| StorageError::backend(format!("failover journal task: {err}")))??;
        self.inner.journaled.fetch_add(1, Ordering::Relaxed);
        Ok(value)
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
        match inner.primary.health_check().await {
            Ok(status) if status.healthy => healthy += 1,
            _ => {
                healthy = 0;
                continue;
            }
        }
        if healthy < inner.settings.recovery_probes {
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
            match call.replay(inner.primary.as_ref()).await? {
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

#[async_trait]
impl SessionStore for FailoverBackend {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        self.write(
            || WriteCall::CreateSession {
                session: session.clone(),
            },
            |b| b.create_session(session.clone()),
        )
        .await
    }

    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        self.write(
            || WriteCall::CreateSessions {
                sessions: sessions.clone(),
            },
            |b| b.create_sessions(sessions.clone()),
        )
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.read(|b| b.get_session(id)).await
    }

    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        self.read(|b| b.get_sessions(ids)).await
    }

    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        self.write(
            || WriteCall::UpdateSession {
                id: id.to_owned(),
                update: update.clone(),
            },
            |b| b.update_session(id, update.clone()),
        )
        .await
    }

    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        self.write(
            || WriteCall::EndSession {
                id: id.to_owned(),
                status,
            },
            |b| b.end_session(id, status),
        )
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        self.write(
            || WriteCall::DeleteSession { id: id.to_owned() },
            |b| b.delete_session(id),
        )
        .await
    }

    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        self.read(|b| b.list_sessions(query.clone())).await
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        self.write(
            || WriteCall::ImportSession {
                session: session.clone(),
            },
            |b| b.import_session(session.clone()),
        )
        .await
    }
}

/// Messages journaled without a client id get one, so that their replay is idempotent.
fn with_client_ids(messages: &[NewMessage]) -> Vec<NewMessage> {
    messages
        .iter()
        .map(|message| {
            let mut message = message.clone();
            if message.client_id.is_none() {
                message.client_id = Some(format!("failover-{}", storage_core::new_checkpoint_id()));
            }
            message
        })
        .collect()
}

#[async_trait]
impl ConversationStore for FailoverBackend {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let mut stored = self.append_messages(session_id, vec![message]).await?;
        stored
            .pop()
            .ok_or_else(|| StorageError::backend("an append returned no message"))
    }

    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        // Ids are given before the first attempt, so the fallback and the journal agree.
        let messages = if self.inner.settings.mode == FailoverMode::Failover {
            with_client_ids(&messages)
        } else {
            messages
        };
        self.write(
            || WriteCall::AppendMessages {
                session_id: session_id.to_owned(),
                messages: messages.clone(),
            },
            |b| b.append_messages(session_id, messages.clone()),
        )
        .await
    }

    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.read(|b| b.get_conversation_history(session_id, limit))
            .await
    }

    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        self.read(|b| b.get_messages(session_id, range)).await
    }

    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        self.write(
            || WriteCall::PopLastMessage {
                session_id: session_id.to_owned(),
            },
            |b| b.pop_last_message(session_id),
        )
        .await
    }

    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        self.write(
            || WriteCall::ClearConversation {
                session_id: session_id.to_owned(),
            },
            |b| b.clear_conversation(session_id),
        )
        .await
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        self.write(
            || WriteCall::ImportMessages {
                session_id: session_id.to_owned(),
                messages: messages.clone(),
            },
            |b| b.import_messages(session_id, messages.clone()),
        )
        .await
    }
}

#[async_trait]
impl CheckpointStore for FailoverBackend {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        self.write(
            || WriteCall::PutCheckpoint {
                checkpoint: checkpoint.clone(),
                new_versions: new_versions.clone(),
            },
            |b| b.put_checkpoint(checkpoint.clone(), new_versions.clone()),
        )
        .await
    }

    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        self.read(|b| b.get_checkpoint(thread_id, namespace, checkpoint_id))
            .await
    }

    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        self.read(|b| b.list_checkpoints(query.clone())).await
    }

    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, Value)>,
    ) -> Result<()> {
        self.write(
            || WriteCall::PutWrites {
                key: key.clone(),
                task_id: task_id.to_owned(),
                task_path: task_path.to_owned(),
                writes: writes.clone(),
            },
            |b| b.put_writes(key.clone(), task_id, task_path, writes.clone()),
        )
        .await
    }

    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        self.read(|b| b.get_writes(key.clone())).await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        self.write(
            || WriteCall::DeleteThread {
                thread_id: thread_id.to_owned(),
            },
            |b| b.delete_thread(thread_id),
        )
        .await
    }

    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        self.write(
            || WriteCall::PruneCheckpoints {
                thread_id: thread_id.to_owned(),
                keep_last,
            },
            |b| b.prune_checkpoints(thread_id, keep_last),
        )
        .await
    }

    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        self.write(
            || WriteCall::CopyThread {
                source_thread_id: source_thread_id.to_owned(),
                target_thread_id: target_thread_id.to_owned(),
            },
            |b| b.copy_thread(source_thread_id, target_thread_id),
        )
        .await
    }

    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        self.write(
            || WriteCall::DeleteForRuns {
                run_ids: run_ids.to_vec(),
            },
            |b| b.delete_for_runs(run_ids),
        )
        .await
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.read(|b| b.list_thread_ids(after, limit)).await
    }
}

#[async_trait]
impl TaskContextStore for FailoverBackend {
    async fn get_task_context(&self, session_id: &str) -> Result<Option<TaskContext>> {
        self.read(|b| b.get_task_context(session_id)).await
    }

    async fn store_task_context(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> Result<TaskContext> {
        self.write(
            || WriteCall::StoreTaskContext {
                session_id: session_id.to_owned(),
                value: value.clone(),
                expected,
            },
            |b| b.store_task_context(session_id, value.clone(), expected),
        )
        .await
    }

    async fn delete_task_context(&self, session_id: &str) -> Result<bool> {
        self.write(
            || WriteCall::DeleteTaskContext {
                session_id: session_id.to_owned(),
            },
            |b| b.delete_task_context(session_id),
        )
        .await
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        self.write(
            || WriteCall::ImportTaskContext {
                context: context.clone(),
            },
            |b| b.import_task_context(context.clone()),
        )
        .await
    }
}

#[async_trait]
impl ArtifactStore for FailoverBackend {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        self.write(
            || WriteCall::SaveArtifact {
                scope: scope.to_owned(),
                name: name.to_owned(),
                content_type: artifact.content_type.clone(),
                data: artifact.data.clone(),
                metadata: artifact.metadata.clone(),
            },
            |b| b.save_artifact(scope, name, artifact.clone()),
        )
        .await
    }

    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>> {
        self.read(|b| b.get_artifact(scope, name, version)).await
    }

    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>> {
        self.read(|b| b.get_artifact_meta(scope, name, version))
            .await
    }

    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        self.read(|b| b.list_artifacts(scope)).await
    }

    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        self.read(|b| b.list_artifact_versions(scope, name)).await
    }

    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        self.write(
            || WriteCall::DeleteArtifact {
                scope: scope.to_owned(),
                name: name.to_owned(),
                version,
            },
            |b| b.delete_artifact(scope, name, version),
        )
        .await
    }

    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        self.write(
            || WriteCall::ClearArtifacts {
                scope: scope.to_owned(),
            },
            |b| b.clear_artifacts(scope),
        )
        .await
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.read(|b| b.list_artifact_scopes(after, limit)).await
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        self.write(
            || WriteCall::ImportArtifact {
                meta: artifact.meta.clone(),
                data: artifact.data.clone(),
            },
            |b| b.import_artifact(artifact.clone()),
        )
        .await
    }
}

#[async_trait]
impl StorageBackend for FailoverBackend {
    fn name(&self) -> &'static str {
        self.inner.primary.name()
    }

    /// Initializes the fallback, then the primary; a primary that is down (a temporary
    /// error) opens the breaker instead of failing. Starts the probe when the breaker is
    /// open (for example with a journal left by an earlier process).
    async fn initialize(&self) -> Result<()> {
        self.fallback().initialize().await?;
        match self.primary().initialize().await {
            Ok(()) => {}
            Err(err) if err.is_temporary() => self.trip(),
            Err(err) => return Err(err),
        }
        if self.is_open() {
            self.ensure_prober();
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        if let Some(prober) = self
            .inner
            .prober
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            prober.abort();
        }
        let (primary, fallback) = tokio::join!(self.primary().close(), self.fallback().close());
        primary.and(fallback)
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let status = self.status();
        let mut health = match self.primary().health_check().await {
            Ok(health) => health,
            Err(err) if err.is_temporary() => {
                let mut health = self.fallback().health_check().await?;
                health
                    .details
                    .insert("primary_error".into(), err.to_string());
                health
            }
            Err(err) => return Err(err),
        };
        health
            .details
            .insert("failover_open".into(), status.open.to_string());
        health.details.insert(
            "failover_journal_pending".into(),
            status.journal_pending.to_string(),
        );
        Ok(health)
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        let status = self.status();
        let mut metrics = self.read(|b| b.get_metrics()).await?;
        metrics
            .counters
            .insert("failover_journaled".into(), status.journaled);
        metrics
            .counters
            .insert("failover_replayed".into(), status.replayed);
        metrics
            .counters
            .insert("failover_refused".into(), status.refused);
        metrics.gauges.insert(
            "failover_journal_pending".into(),
            status.journal_pending as f64,
        );
        metrics
            .gauges
            .insert("failover_open".into(), f64::from(u8::from(status.open)));
        Ok(metrics)
    }

    /// Runs on the primary (and the fallback, best effort); not journaled: while the
    /// primary is down it runs on the fallback only.
    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        if self.is_open() {
            return self.fallback().cleanup_expired_sessions(max_idle).await;
        }
        let removed = self.primary().cleanup_expired_sessions(max_idle).await?;
        let _ = self.fallback().cleanup_expired_sessions(max_idle).await;
        Ok(removed)
    }
}

/// Replaces the route of every kind that has a configured fallback with a
/// [`FailoverBackend`] over (its route, the fallback); kinds with the same pair share one.
/// `built` holds the backends built so far (each once), and gains the fallbacks.
pub(crate) fn wrap_routes(
    config: &crate::config::StorageConfig,
    built: &mut Vec<(crate::config::BackendName, Arc<dyn StorageBackend>)>,
    by_kind: &mut [Option<Arc<dyn StorageBackend>>; 5],
) -> Result<()> {
    use crate::config::BackendName;
    let mut pairs: Vec<(BackendName, BackendName, Arc<dyn StorageBackend>)> = Vec::new();
    for kind in crate::Kind::ALL {
        let Some(fallback_name) = config.failover.fallbacks.get(kind) else {
            continue;
        };
        let primary_name = config.backend_of(kind);
        if let Some((_, _, shared)) = pairs
            .iter()
            .find(|(p, f, _)| *p == primary_name && *f == fallback_name)
        {
            by_kind[kind.index()] = Some(shared.clone());
            continue;
        }
        let fallback = match built.iter().find(|(name, _)| *name == fallback_name) {
            Some((_, backend)) => backend.clone(),
            None => {
                let backend = crate::factory::build_backend(fallback_name, config, None)?;
                built.push((fallback_name, backend.clone()));
                backend
            }
        };
        let primary = by_kind[kind.index()]
            .clone()
            .ok_or_else(|| StorageError::config(format!("kind {kind} has no route")))?;
        let mut settings = config.failover.settings();
        settings.journal_dir = settings
            .journal_dir
            .join(format!("{primary_name}-{fallback_name}"));
        let wrapped: Arc<dyn StorageBackend> =
            Arc::new(FailoverBackend::new(primary, fallback, settings)?);
        pairs.push((primary_name, fallback_name, wrapped.clone()));
        by_kind[kind.index()] = Some(wrapped);
    }
    Ok(())
}

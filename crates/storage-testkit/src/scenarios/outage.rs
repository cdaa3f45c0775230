//! The outage scenario: a concurrent workload through a failover backend whose primary
//! server is killed and restarted, after which the primary holds every acknowledged write
//! exactly once.
//!
//! What the scenario needs from the test, as traits (the testkit cannot see the facade):
//!
//! - a [`Server`]: connects new backends to it, kills it (SIGKILL, keeping every write it
//!   acknowledged) and starts it again on the same port and data;
//! - a [`FailoverHarness`]: opens the failover backend under test over a primary, with its
//!   journal and a fallback in directories the scenario gives (so both outlive a process,
//!   for [`Process::Restarted`]), as a [`FailoverUnderTest`] (what the workload calls, the
//!   breaker's figures, waiting for recovery).
//!
//! The workload ([`run_until`]), its [`Record`] and the final check ([`assert_primary_holds`])
//! are public so that other fault tests (a primary that hangs rather than dies) reuse them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use storage_core::{
    async_trait, Checkpoint, CheckpointQuery, ErrorKind, MessageRange, NewMessage, NewSession,
    StorageBackend,
};

/// Concurrent tasks of the workload, each on its own session and thread.
pub const TASKS: usize = 8;

/// A throwaway server the scenario kills and restarts.
pub trait Server: Send + Sync {
    /// A new backend (its own connections) on the server.
    fn connect(&self) -> Arc<dyn StorageBackend>;
    /// Kills the server (SIGKILL); it must keep every write it acknowledged.
    fn kill(&self);
    /// Starts it again on the same port and data.
    fn restart(&self);
}

/// The breaker's and the journal's figures (what `FailoverBackend::status` reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailoverFigures {
    /// Whether the breaker is open (reads go to the fallback).
    pub open: bool,
    /// Journaled writes not yet replayed.
    pub journal_pending: u64,
    /// Writes journaled by this backend.
    pub journaled: u64,
    /// Journaled writes replayed to the primary.
    pub replayed: u64,
    /// Journaled writes the primary refused on replay.
    pub refused: u64,
}

/// A failover backend under test.
#[async_trait]
pub trait FailoverUnderTest: Send + Sync {
    /// What the workload calls: the failover backend, or a facade over it.
    fn storage(&self) -> Arc<dyn StorageBackend>;
    /// The breaker's and the journal's figures now.
    fn status(&self) -> FailoverFigures;
    /// Waits until the breaker is closed and the journal empty, or `timeout` passes;
    /// returns whether it happened.
    async fn wait_until_recovered(&self, timeout: Duration) -> bool;
}

/// Opens failover backends for a scenario.
#[async_trait]
pub trait FailoverHarness: Send + Sync {
    /// A new, initialized failover backend over `primary`, its journal in `journal_dir` and
    /// its fallback's data in `fallback_dir`. Opened again on the same directories (a
    /// restarted process), it must find the journal and the fallback's data again.
    async fn open(
        &self,
        primary: Arc<dyn StorageBackend>,
        journal_dir: &Path,
        fallback_dir: &Path,
    ) -> Box<dyn FailoverUnderTest>;
}

/// What happens to the process using the failover backend during the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// It keeps running throughout.
    Kept,
    /// It goes away while the primary is down: its failover backend is dropped and a new
    /// one opened on the same journal and fallback directories (as a restarted process
    /// would) before the primary returns.
    Restarted,
}

/// When things happen, in operations of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Operations of the whole workload.
    pub total_ops: u64,
    /// Operations before the primary is killed.
    pub kill_at: u64,
    /// Operations after which the first process goes away ([`Process::Restarted`]).
    pub process_ends_at: u64,
    /// Operations before the primary is restarted.
    pub restart_at: u64,
}

impl Plan {
    /// A workload of `total_ops` operations: the primary is killed at about a quarter of
    /// it, the first process ends ([`Process::Restarted`]) at about a half, the primary is
    /// restarted at two thirds.
    pub fn of(total_ops: u64) -> Self {
        Plan {
            total_ops,
            kill_at: total_ops * 5 / 21,
            process_ends_at: total_ops * 10 / 21,
            restart_at: total_ops * 14 / 21,
        }
    }
}

impl Default for Plan {
    /// 10,500 operations: killed at 2,500, process ends at 5,000, restarted at 7,000.
    fn default() -> Self {
        Plan::of(10_500)
    }
}

/// Replaying thousands of journaled writes one at a time on a loaded machine is slow; this
/// bounds a hang, not a speed.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(600);

/// What the workload saw.
#[derive(Debug, Default)]
pub struct Record {
    /// (task, client id, started after the fault) of every acknowledged append.
    pub messages: Mutex<Vec<(usize, String, bool)>>,
    /// (task, checkpoint id, started after the fault) of every acknowledged checkpoint.
    pub checkpoints: Mutex<Vec<(usize, String, bool)>>,
    /// Operations completed (writes and reads).
    pub ops: AtomicU64,
    /// Reads that succeeded while the primary was down.
    pub outage_reads: AtomicU64,
    /// The slowest read while the primary was down.
    pub slowest_outage_read: Mutex<Duration>,
    /// Operations that failed, with their errors.
    pub failures: Mutex<Vec<String>>,
    /// Set once the primary has been killed (or stopped), and kept.
    pub primary_killed: AtomicBool,
    /// Set while the primary is down (from the fault to its end).
    pub primary_down: AtomicBool,
}

impl Record {
    /// Acknowledged writes (appends and checkpoints) that started before the fault, and
    /// after it.
    pub fn acknowledged(&self) -> (usize, usize) {
        let messages = self.messages.lock().unwrap();
        let checkpoints = self.checkpoints.lock().unwrap();
        let after = messages.iter().filter(|(_, _, after)| *after).count()
            + checkpoints.iter().filter(|(_, _, after)| *after).count();
        (messages.len() + checkpoints.len() - after, after)
    }

    /// Panics listing the first failures, if any operation failed.
    pub fn assert_no_failures(&self) {
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
}

/// The session of workload task `task`.
pub fn session_id(task: usize) -> String {
    format!("session-{task}")
}

/// The checkpoint thread of workload task `task`.
pub fn thread_id(task: usize) -> String {
    format!("thread-{task}")
}

/// Creates the workload's sessions (those that exist already are kept).
pub async fn create_sessions(storage: &dyn StorageBackend) {
    for task in 0..TASKS {
        match storage
            .create_session(NewSession::new(session_id(task), "user"))
            .await
        {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => panic!("{err}"),
        }
    }
}

/// Runs the workload on `storage` until `record.ops` reaches `until`. Each task appends
/// messages with client ids, stores a checkpoint every tenth step and reads its history
/// every fifth step. `label` keeps client ids of separate runs apart.
pub async fn run_until(
    storage: Arc<dyn StorageBackend>,
    record: Arc<Record>,
    label: String,
    until: u64,
) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let storage = storage.clone();
            let record = record.clone();
            let label = label.clone();
            tokio::spawn(async move {
                let mut step = 0u64;
                while record.ops.load(Ordering::SeqCst) < until {
                    step += 1;
                    let after_kill = record.primary_killed.load(Ordering::SeqCst);
                    let client_id = format!("{label}-{task}-{step}");
                    let message = NewMessage::new("user", json!(step)).with_client_id(&client_id);
                    match storage.append_message(&session_id(task), message).await {
                        Ok(_) => record
                            .messages
                            .lock()
                            .unwrap()
                            .push((task, client_id, after_kill)),
                        Err(err) => record.failures.lock().unwrap().push(err.to_string()),
                    }
                    record.ops.fetch_add(1, Ordering::SeqCst);
                    if step % 10 == 0 {
                        let after_kill = record.primary_killed.load(Ordering::SeqCst);
                        let id = storage_core::new_checkpoint_id();
                        let mut checkpoint = Checkpoint::new(thread_id(task), "", &id);
                        checkpoint.metadata.insert("step".into(), json!(step));
                        match storage.put_checkpoint(checkpoint, Default::default()).await {
                            Ok(()) => record
                                .checkpoints
                                .lock()
                                .unwrap()
                                .push((task, id, after_kill)),
                            Err(err) => record.failures.lock().unwrap().push(err.to_string()),
                        }
                        record.ops.fetch_add(1, Ordering::SeqCst);
                    }
                    if step % 5 == 0 {
                        let down = record.primary_down.load(Ordering::SeqCst);
                        let started = Instant::now();
                        match storage.get_conversation_history(&session_id(task), 5).await {
                            Ok(history) => {
                                assert!(!history.is_empty());
                                if down {
                                    record.outage_reads.fetch_add(1, Ordering::SeqCst);
                                    let took = started.elapsed();
                                    let mut slowest = record.slowest_outage_read.lock().unwrap();
                                    *slowest = (*slowest).max(took);
                                }
                            }
                            Err(err) => {
                                record.failures.lock().unwrap().push(format!("read: {err}"))
                            }
                        }
                        record.ops.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Waits until `ops` reaches `target`.
pub async fn wait_for_ops(record: &Record, target: u64) {
    while record.ops.load(Ordering::SeqCst) < target {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many times each id occurs in `ids`.
fn occurrences<'a>(ids: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, u32> {
    let mut counts = HashMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// Checks that `stored` (ids of one task's records on the primary) holds each of
/// `acknowledged` exactly once and nothing else: every write of the workload was
/// acknowledged (failures are checked before), so anything more is a duplicate or a stray.
fn assert_exactly_once(what: &str, task: usize, stored: &[&str], acknowledged: &[&str]) {
    let stored = occurrences(stored.iter().copied());
    let mut duplicated: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    duplicated.sort();
    assert!(
        duplicated.is_empty(),
        "task {task}: {} {what} stored more than once, e.g. {:?}",
        duplicated.len(),
        duplicated.first()
    );
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains_key(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "task {task}: {} acknowledged {what} missing on the primary, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let acknowledged = occurrences(acknowledged.iter().copied());
    let stray: Vec<_> = stored
        .keys()
        .filter(|id| !acknowledged.contains_key(**id))
        .collect();
    assert!(
        stray.is_empty(),
        "task {task}: {} {what} on the primary were never acknowledged, e.g. {:?}",
        stray.len(),
        stray.first()
    );
}

/// Checks the primary: every acknowledged message (by client id) and checkpoint (by id),
/// from before the fault as well as after it, is there exactly once.
pub async fn assert_primary_holds(primary: &dyn StorageBackend, record: &Record) {
    for task in 0..TASKS {
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            let page = primary
                .get_messages(&session_id(task), MessageRange::after(after, 1000))
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.sequence;
            stored.extend(page.into_iter().map(|m| m.client_id.unwrap_or_default()));
        }
        let messages = record.messages.lock().unwrap().clone();
        let acknowledged: Vec<&str> = messages
            .iter()
            .filter(|(t, _, _)| *t == task)
            .map(|(_, id, _)| id.as_str())
            .collect();
        let stored: Vec<&str> = stored.iter().map(String::as_str).collect();
        assert_exactly_once("messages", task, &stored, &acknowledged);

        let checkpoints = primary
            .list_checkpoints(CheckpointQuery::thread(thread_id(task)))
            .await
            .unwrap();
        let stored: Vec<&str> = checkpoints
            .iter()
            .map(|t| t.checkpoint.id.as_str())
            .collect();
        let acked = record.checkpoints.lock().unwrap().clone();
        let acknowledged: Vec<&str> = acked
            .iter()
            .filter(|(t, _, _)| *t == task)
            .map(|(_, id, _)| id.as_str())
            .collect();
        assert_exactly_once("checkpoints", task, &stored, &acknowledged);
    }
}

/// A fresh temporary directory, removed on drop.
fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("storage-{label}-"))
        .tempdir()
        .expect("cannot create a temporary directory")
}

/// The outage scenario every primary goes through: a concurrent workload of
/// `plan.total_ops` operations through the failover backend; the server is killed at
/// `plan.kill_at`; writes keep going (to the fallback and the journal), and with `process`
/// the failover's process keeps running or is replaced; the server is restarted at
/// `plan.restart_at` and the journal replayed. Then nothing failed, reads during the outage
/// succeeded, and the primary holds every acknowledged write, from before the kill and
/// after it, exactly once. Prints its figures and timings.
pub async fn primary_killed_mid_workload(
    server: &dyn Server,
    harness: &dyn FailoverHarness,
    label: &str,
    process: Process,
    plan: Plan,
) {
    let started = Instant::now();
    let journal = temp_dir("journal");
    let fallback_dir = temp_dir("fallback");
    let record = Arc::new(Record::default());

    let failover = harness
        .open(server.connect(), journal.path(), fallback_dir.path())
        .await;
    create_sessions(failover.storage().as_ref()).await;
    let first_until = match process {
        Process::Kept => plan.total_ops,
        Process::Restarted => plan.process_ends_at,
    };
    let workload = tokio::spawn(run_until(
        failover.storage(),
        record.clone(),
        format!("{label}-first"),
        first_until,
    ));
    wait_for_ops(&record, plan.kill_at).await;
    let killed_at = started.elapsed();
    server.kill();
    record.primary_killed.store(true, Ordering::SeqCst);
    record.primary_down.store(true, Ordering::SeqCst);

    let (failover, workload, first_journaled) = match process {
        Process::Kept => (failover, workload, 0),
        Process::Restarted => {
            workload.await.unwrap();
            let status = failover.status();
            assert!(status.journal_pending > 0, "{status:?}");
            // The process goes away: nothing of it is left but its files.
            drop(failover);
            let failover = harness
                .open(server.connect(), journal.path(), fallback_dir.path())
                .await;
            assert!(
                failover.status().open,
                "a pending journal starts the breaker open"
            );
            let workload = tokio::spawn(run_until(
                failover.storage(),
                record.clone(),
                format!("{label}-second"),
                plan.total_ops,
            ));
            (failover, workload, status.journaled)
        }
    };
    wait_for_ops(&record, plan.restart_at).await;
    let status = failover.status();
    assert!(status.open && status.journal_pending > 0, "{status:?}");
    let restarted_at = started.elapsed();
    server.restart();
    record.primary_down.store(false, Ordering::SeqCst);
    workload.await.unwrap();
    let workload_done_at = started.elapsed();
    assert!(
        failover.wait_until_recovered(RECOVERY_TIMEOUT).await,
        "{:?}",
        failover.status()
    );
    let recovered_at = started.elapsed();

    record.assert_no_failures();
    let status = failover.status();
    let (before, after) = record.acknowledged();
    println!(
        "{label} ({process:?}): {ops} ops, {before} writes acknowledged before the kill, \
         {after} after it, {reads} reads during the outage (slowest {slowest:.1?}), \
         {journaled} journaled, {replayed} replayed; killed at {killed_at:.1?}, restarted \
         at {restarted_at:.1?}, workload done at {workload_done_at:.1?}, recovered at \
         {recovered_at:.1?}",
        ops = record.ops.load(Ordering::SeqCst),
        reads = record.outage_reads.load(Ordering::SeqCst),
        slowest = *record.slowest_outage_read.lock().unwrap(),
        journaled = first_journaled + status.journaled,
        replayed = status.replayed,
    );
    assert!(record.ops.load(Ordering::SeqCst) >= plan.total_ops);
    assert!(before > 0 && after > 0);
    assert!(record.outage_reads.load(Ordering::SeqCst) > 0);
    assert!(status.replayed > 0 && status.refused == 0, "{status:?}");
    assert_primary_holds(server.connect().as_ref(), &record).await;
}

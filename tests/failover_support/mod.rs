//! A concurrent write workload through the facade over a [`FailoverBackend`], with the
//! record of every acknowledged write, and the check that the primary holds each of them
//! exactly once.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use storage::failover::{FailoverBackend, FailoverMode, FailoverSettings};
use storage::Storage;
use storage_core::prelude::*;
use storage_core::{Checkpoint, CheckpointQuery, MessageRange};

pub const TASKS: usize = 8;

/// What the workload saw.
#[derive(Debug, Default)]
pub struct Record {
    /// (task, client id, started after the primary was killed) of every acknowledged append.
    pub messages: Mutex<Vec<(usize, String, bool)>>,
    /// (task, checkpoint id, started after the kill) of every acknowledged checkpoint.
    pub checkpoints: Mutex<Vec<(usize, String, bool)>>,
    /// Operations completed (writes and reads).
    pub ops: AtomicU64,
    /// Reads that succeeded while the primary was down.
    pub outage_reads: AtomicU64,
    /// Operations that failed, with their errors.
    pub failures: Mutex<Vec<String>>,
    /// Set once the primary has been killed, and kept.
    pub primary_killed: AtomicBool,
    /// Set while the primary is down (from the kill to its restart).
    pub primary_down: AtomicBool,
}

impl Record {
    /// Acknowledged writes (appends and checkpoints) that started before the kill, and
    /// after it.
    pub fn acknowledged(&self) -> (usize, usize) {
        let messages = self.messages.lock().unwrap();
        let checkpoints = self.checkpoints.lock().unwrap();
        let after = messages.iter().filter(|(_, _, after)| *after).count()
            + checkpoints.iter().filter(|(_, _, after)| *after).count();
        (messages.len() + checkpoints.len() - after, after)
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "storage-{label}-{}",
            storage_core::new_checkpoint_id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn settings(journal_dir: &std::path::Path) -> FailoverSettings {
    FailoverSettings {
        mode: FailoverMode::Failover,
        failure_threshold: 1,
        probe_interval_ms: 100,
        recovery_probes: 2,
        journal_dir: journal_dir.to_owned(),
        ..FailoverSettings::default()
    }
}

/// The facade over `failover`, without a read cache (the test reads what is stored).
pub fn facade(failover: FailoverBackend) -> Storage {
    Storage::builder(Arc::new(failover)).cache(None).build()
}

pub fn session_id(task: usize) -> String {
    format!("session-{task}")
}

pub fn thread_id(task: usize) -> String {
    format!("thread-{task}")
}

pub async fn create_sessions(storage: &Storage) {
    for task in 0..TASKS {
        match storage
            .create_session(NewSession::new(session_id(task), "user"))
            .await
        {
            Ok(_) => {}
            Err(err) if err.kind() == storage_core::ErrorKind::AlreadyExists => {}
            Err(err) => panic!("{err}"),
        }
    }
}

/// Runs the workload on `storage` until `record.ops` reaches `until`. Each task appends
/// messages with client ids, stores a checkpoint every tenth step and reads its history
/// every fifth step. `label` keeps client ids of separate runs apart.
pub async fn run_until(storage: Arc<Storage>, record: Arc<Record>, label: String, until: u64) {
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
                        match storage.get_conversation_history(&session_id(task), 5).await {
                            Ok(history) => {
                                assert!(!history.is_empty());
                                if down {
                                    record.outage_reads.fetch_add(1, Ordering::SeqCst);
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
/// from before the kill as well as after it, is there exactly once.
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

/// The primary of the outage scenario: a throwaway server the test kills and restarts.
pub trait Primary {
    /// A new backend (its own connections) on the server.
    fn connect(&self) -> Arc<dyn StorageBackend>;
    /// Kills the server (SIGKILL); it must keep every write it acknowledged.
    fn kill(&self);
    /// Starts it again on the same port and data.
    fn restart(&self);
}

/// What happens to the process using the facade during the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// It keeps running throughout.
    Kept,
    /// It goes away while the primary is down: its `FailoverBackend` is dropped and a new
    /// one opened on the same journal and fallback directories (as a restarted process
    /// would) before the primary returns.
    Restarted,
}

/// Operations of the whole workload.
const TOTAL_OPS: u64 = 10_500;
/// Operations before the primary is killed.
const KILL_AT: u64 = 2_500;
/// Operations after which the first process goes away ([`Process::Restarted`]).
const PROCESS_ENDS_AT: u64 = 5_000;
/// Operations before the primary is restarted.
const RESTART_AT: u64 = 7_000;
/// Replaying thousands of journaled writes one at a time on a loaded machine is slow; this
/// bounds a hang, not a speed.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(600);

/// A facade over a new `FailoverBackend` on `primary`, with a fallback in object storage
/// under `fallback_dir` (so it outlives the process, as the journal does).
async fn open_facade(
    primary: Arc<dyn StorageBackend>,
    journal: &TempDir,
    fallback_dir: &TempDir,
) -> (FailoverBackend, Arc<Storage>) {
    let config = storage_object::ObjectConfig {
        url: format!("file://{}", fallback_dir.path().display()),
        namespace: "fallback".into(),
        ..storage_object::ObjectConfig::default()
    };
    let fallback: Arc<dyn StorageBackend> =
        Arc::new(storage_object::ObjectBackend::new(config).unwrap());
    let failover = FailoverBackend::new(primary, fallback, settings(journal.path())).unwrap();
    let storage = Arc::new(facade(failover.clone()));
    storage.initialize().await.unwrap();
    (failover, storage)
}

/// The outage scenario every primary goes through: a concurrent workload of more than
/// 10,000 operations through the facade; the primary is killed a quarter of the way in;
/// writes keep going (to the fallback and the journal), with `process` the facade's
/// process keeps running or is replaced; the primary is restarted and the journal
/// replayed. Then nothing failed, reads during the outage succeeded, and the primary
/// holds every acknowledged write, from before the kill and after it, exactly once.
pub async fn primary_killed_mid_workload(primary: &impl Primary, label: &str, process: Process) {
    let started = std::time::Instant::now();
    let journal = TempDir::new("journal");
    let fallback_dir = TempDir::new("fallback");
    let record = Arc::new(Record::default());

    let (failover, storage) = open_facade(primary.connect(), &journal, &fallback_dir).await;
    create_sessions(&storage).await;
    let first_until = match process {
        Process::Kept => TOTAL_OPS,
        Process::Restarted => PROCESS_ENDS_AT,
    };
    let workload = tokio::spawn(run_until(
        storage.clone(),
        record.clone(),
        format!("{label}-first"),
        first_until,
    ));
    wait_for_ops(&record, KILL_AT).await;
    let killed_at = started.elapsed();
    primary.kill();
    record.primary_killed.store(true, Ordering::SeqCst);
    record.primary_down.store(true, Ordering::SeqCst);

    let (failover, workload, first_journaled) = match process {
        Process::Kept => (failover, workload, 0),
        Process::Restarted => {
            workload.await.unwrap();
            let status = failover.status();
            assert!(status.journal_pending > 0, "{status:?}");
            // The process goes away: nothing of it is left but its files.
            drop((failover, storage));
            let (failover, storage) = open_facade(primary.connect(), &journal, &fallback_dir).await;
            assert!(
                failover.status().open,
                "a pending journal starts the breaker open"
            );
            let workload = tokio::spawn(run_until(
                storage,
                record.clone(),
                format!("{label}-second"),
                TOTAL_OPS,
            ));
            (failover, workload, status.journaled)
        }
    };
    wait_for_ops(&record, RESTART_AT).await;
    let status = failover.status();
    assert!(status.open && status.journal_pending > 0, "{status:?}");
    let restarted_at = started.elapsed();
    primary.restart();
    record.primary_down.store(false, Ordering::SeqCst);
    workload.await.unwrap();
    let workload_done_at = started.elapsed();
    assert!(
        failover.wait_until_recovered(RECOVERY_TIMEOUT).await,
        "{:?}",
        failover.status()
    );
    let recovered_at = started.elapsed();

    let failures = record.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let status = failover.status();
    let (before, after) = record.acknowledged();
    println!(
        "{label} ({process:?}): {ops} ops, {before} writes acknowledged before the kill, \
         {after} after it, {reads} reads during the outage, {journaled} journaled, \
         {replayed} replayed; killed at {killed_at:.1?}, restarted at {restarted_at:.1?}, \
         workload done at {workload_done_at:.1?}, recovered at {recovered_at:.1?}",
        ops = record.ops.load(Ordering::SeqCst),
        reads = record.outage_reads.load(Ordering::SeqCst),
        journaled = first_journaled + status.journaled,
        replayed = status.replayed,
    );
    assert!(record.ops.load(Ordering::SeqCst) >= 10_000);
    assert!(before > 0 && after > 0);
    assert!(record.outage_reads.load(Ordering::SeqCst) > 0);
    assert!(status.replayed > 0 && status.refused == 0, "{status:?}");
    assert_primary_holds(primary.connect().as_ref(), &record).await;
}

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
    /// (task, client id, started after the primary was stopped) of every acknowledged append.
    pub messages: Mutex<Vec<(usize, String, bool)>>,
    /// (task, checkpoint id, started after the stop) of every acknowledged checkpoint.
    pub checkpoints: Mutex<Vec<(usize, String, bool)>>,
    /// Operations completed (writes and reads).
    pub ops: AtomicU64,
    /// Reads that succeeded while the primary was down.
    pub outage_reads: AtomicU64,
    /// Operations that failed, with their errors.
    pub failures: Mutex<Vec<String>>,
    /// Set once the primary has been stopped.
    pub primary_stopped: AtomicBool,
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
pub async fn run_until(storage: Arc<Storage>, record: Arc<Record>, label: &str, until: u64) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let storage = storage.clone();
            let record = record.clone();
            let label = label.to_owned();
            tokio::spawn(async move {
                let mut step = 0u64;
                while record.ops.load(Ordering::SeqCst) < until {
                    step += 1;
                    let after_stop = record.primary_stopped.load(Ordering::SeqCst);
                    let client_id = format!("{label}-{task}-{step}");
                    let message = NewMessage::new("user", json!(step)).with_client_id(&client_id);
                    match storage.append_message(&session_id(task), message).await {
                        Ok(_) => record
                            .messages
                            .lock()
                            .unwrap()
                            .push((task, client_id, after_stop)),
                        Err(err) => record.failures.lock().unwrap().push(err.to_string()),
                    }
                    record.ops.fetch_add(1, Ordering::SeqCst);
                    if step % 10 == 0 {
                        let id = storage_core::new_checkpoint_id();
                        let mut checkpoint = Checkpoint::new(thread_id(task), "", &id);
                        checkpoint.metadata.insert("step".into(), json!(step));
                        match storage.put_checkpoint(checkpoint, Default::default()).await {
                            Ok(()) => record
                                .checkpoints
                                .lock()
                                .unwrap()
                                .push((task, id, after_stop)),
                            Err(err) => record.failures.lock().unwrap().push(err.to_string()),
                        }
                        record.ops.fetch_add(1, Ordering::SeqCst);
                    }
                    if step % 5 == 0 {
                        let down = record.primary_stopped.load(Ordering::SeqCst);
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

/// Checks the primary: every acknowledged write that started after the primary was
/// stopped (and, with `all`, every acknowledged write) is there, and no client id or
/// checkpoint id is stored twice.
pub async fn assert_primary_holds(primary: &dyn StorageBackend, record: &Record, all: bool) {
    for task in 0..TASKS {
        let mut stored: HashMap<String, u32> = HashMap::new();
        let mut after = 0;
        loop {
            let page = primary
                .get_messages(&session_id(task), MessageRange::after(after, 1000))
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.sequence;
            for message in page {
                *stored
                    .entry(message.client_id.clone().unwrap_or_default())
                    .or_default() += 1;
            }
        }
        let duplicated: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            duplicated.is_empty(),
            "task {task}: duplicated {duplicated:?}"
        );
        let messages = record.messages.lock().unwrap().clone();
        let missing: Vec<_> = messages
            .iter()
            .filter(|(t, id, after_stop)| {
                *t == task && (all || *after_stop) && !stored.contains_key(id)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "task {task}: {} acknowledged messages missing, e.g. {:?}",
            missing.len(),
            missing.first()
        );

        let checkpoints = primary
            .list_checkpoints(CheckpointQuery::thread(thread_id(task)))
            .await
            .unwrap();
        let ids: HashMap<&str, ()> = checkpoints
            .iter()
            .map(|t| (t.checkpoint.id.as_str(), ()))
            .collect();
        assert_eq!(ids.len(), checkpoints.len());
        let acked = record.checkpoints.lock().unwrap().clone();
        let missing: Vec<_> = acked
            .iter()
            .filter(|(t, id, after_stop)| {
                *t == task && (all || *after_stop) && !ids.contains_key(id.as_str())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "task {task}: checkpoints missing {missing:?}"
        );
    }
}

/// The outage scenario both primaries go through: a concurrent workload of more than
/// 10,000 operations through the facade, with an in-process fallback; `stop` kills the
/// primary a quarter of the way in, `start` brings it back after the writes have gone to
/// the journal. After the replay, nothing failed, reads during the outage succeeded, and
/// the primary holds every write acknowledged since the kill exactly once.
pub async fn primary_killed_mid_workload(
    primary: Arc<dyn StorageBackend>,
    label: &'static str,
    stop: impl FnOnce(),
    start: impl FnOnce(),
) {
    let journal = TempDir::new("journal");
    let fallback: Arc<dyn StorageBackend> =
        Arc::new(storage_memory::MemoryBackend::new("fallback").unwrap());
    let failover =
        FailoverBackend::new(primary.clone(), fallback, settings(journal.path())).unwrap();
    let storage = Arc::new(facade(failover.clone()));
    storage.initialize().await.unwrap();
    create_sessions(&storage).await;

    let record = Arc::new(Record::default());
    let workload = tokio::spawn(run_until(storage.clone(), record.clone(), label, 10_500));
    wait_for_ops(&record, 2_500).await;
    stop();
    record.primary_stopped.store(true, Ordering::SeqCst);
    wait_for_ops(&record, 6_000).await;
    assert!(failover.status().open);
    assert!(failover.status().journal_pending > 0);
    start();
    workload.await.unwrap();
    assert!(
        failover
            .wait_until_recovered(Duration::from_secs(120))
            .await,
        "{:?}",
        failover.status()
    );

    let failures = record.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(record.ops.load(Ordering::SeqCst) >= 10_000);
    assert!(record.outage_reads.load(Ordering::SeqCst) > 0);
    let status = failover.status();
    assert!(status.replayed > 0 && status.refused == 0, "{status:?}");
    assert_primary_holds(primary.as_ref(), &record, false).await;
}

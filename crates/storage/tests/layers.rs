//! The layers around every operation: the read cache never serves a stale value after a
//! write through the facade, metrics count every call, retries ride out a Redis restart
//! for idempotent operations only, and group commit acknowledges only what is stored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage::config::{CacheSettings, GroupCommitSettings, RetrySettings};
use storage::Storage;
use storage_core::prelude::*;
use storage_core::{ChannelVersions, Checkpoint, CheckpointQuery, ErrorKind, StorageBackend};
use storage_memory::MemoryBackend;

fn memory_storage() -> Storage {
    Storage::builder(Arc::new(MemoryBackend::new("layers").unwrap()))
        .cache(Some(CacheSettings::default()))
        .build()
}

#[tokio::test]
async fn cache_serves_hits_and_never_a_stale_read_after_a_write() {
    let storage = memory_storage();
    storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    for round in 1..=20u64 {
        // Read twice (the second is a hit), write, then the next read must see the write.
        storage.get_session("s1").await.unwrap();
        storage.get_session("s1").await.unwrap();
        storage
            .update_session("s1", SessionUpdate::default().request(1))
            .await
            .unwrap();
        let read = storage.get_session("s1").await.unwrap().unwrap();
        assert_eq!(read.metrics.request_count, round);

        storage
            .store_task_context("s1", json!(round), ExpectedVersion::Any)
            .await
            .unwrap();
        assert_eq!(
            storage.get_task_context("s1").await.unwrap().unwrap().value,
            json!(round)
        );

        let mut checkpoint = Checkpoint::new("t1", "", storage_core::new_checkpoint_id());
        checkpoint.metadata.insert("round".into(), json!(round));
        storage
            .put_checkpoint(checkpoint.clone(), Default::default())
            .await
            .unwrap();
        let latest = storage
            .get_checkpoint("t1", "", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.checkpoint.id, checkpoint.id);
        storage
            .put_writes(
                checkpoint.key(),
                "task",
                "",
                vec![("c".into(), json!(round).into())],
            )
            .await
            .unwrap();
        let latest = storage
            .get_checkpoint("t1", "", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            latest.pending_writes.len(),
            1,
            "writes invalidate the latest tuple"
        );

        let saved = storage
            .save_json("scope", "doc", &json!(round))
            .await
            .unwrap();
        let meta = storage
            .get_artifact_meta("scope", "doc", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(meta.version, saved.version);
    }
    storage.delete_session("s1").await.unwrap();
    assert_eq!(storage.get_session("s1").await.unwrap(), None);
    assert_eq!(storage.get_task_context("s1").await.unwrap(), None);
    let stats = storage.cache_stats().unwrap();
    assert!(stats.hits >= 20, "{stats:?}");
}

/// Two services on one store (here two facades on one embedded file, as two processes
/// would be), each built from the default settings: a read never answers what this
/// facade read before the other one's write. LangGraph resumes a thread from its latest
/// checkpoint, so a latest served from a cache after another worker's step would fork
/// the thread from a stale parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_settings_a_write_through_another_facade_is_read_at_once() {
    let root = tempfile::tempdir().unwrap();
    let mut config = storage::StorageConfig::default();
    config.sqlite.path = root.path().join("storage.db");
    config.object.url = format!("file://{}", root.path().join("objects").display());
    let (first, second) = (
        Storage::from_config(config.clone()).unwrap(),
        Storage::from_config(config).unwrap(),
    );
    first.initialize().await.unwrap();
    second.initialize().await.unwrap();

    first
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    first
        .store_task_context("s1", json!("first"), ExpectedVersion::Any)
        .await
        .unwrap();
    let (older, versions) = numbered_checkpoint("t1", 1);
    first.put_checkpoint(older, versions).await.unwrap();
    // What the first facade has read, it could answer again from memory.
    first.get_session("s1").await.unwrap().unwrap();
    first.get_task_context("s1").await.unwrap().unwrap();
    first.get_checkpoint("t1", "", None).await.unwrap().unwrap();

    second
        .update_session("s1", SessionUpdate::default().request(1))
        .await
        .unwrap();
    second
        .store_task_context("s1", json!("second"), ExpectedVersion::Any)
        .await
        .unwrap();
    let (newer, versions) = numbered_checkpoint("t1", 2);
    second
        .put_checkpoint(newer.clone(), versions)
        .await
        .unwrap();

    let session = first.get_session("s1").await.unwrap().unwrap();
    assert_eq!(session.metrics.request_count, 1, "a stale session");
    let context = first.get_task_context("s1").await.unwrap().unwrap();
    assert_eq!(context.value, json!("second"), "a stale task context");
    let latest = first.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, newer.id, "a stale latest checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_never_see_a_value_older_than_the_last_acknowledged_write() {
    let storage = Arc::new(memory_storage());
    storage
        .create_session(NewSession::new("hot", "u1"))
        .await
        .unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let storage = storage.clone();
            tokio::spawn(async move {
                for _ in 0..2000 {
                    storage.get_session("hot").await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for expected in 1..=300u64 {
        storage
            .update_session("hot", SessionUpdate::default().request(1))
            .await
            .unwrap();
        let read = storage.get_session("hot").await.unwrap().unwrap();
        assert_eq!(
            read.metrics.request_count, expected,
            "stale read after a write"
        );
    }
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn after_close_the_cache_answers_nothing() {
    let storage = memory_storage();
    storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    storage.get_session("s1").await.unwrap();
    storage.close().await.unwrap();
    let err = storage.get_session("s1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
}

#[tokio::test]
async fn metrics_count_calls_errors_and_latency_per_operation() {
    let storage = memory_storage();
    storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    let err = storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    for _ in 0..10 {
        storage.get_session("s1").await.unwrap();
    }
    let stats = storage.operation_stats();
    let create = stats
        .iter()
        .find(|s| s.operation == "create_session")
        .unwrap();
    assert_eq!((create.count, create.errors), (2, 1));
    let get = stats.iter().find(|s| s.operation == "get_session").unwrap();
    assert_eq!(
        (get.count, get.errors, get.backend.as_str()),
        (10, 0, "memory")
    );
    assert!(
        get.p50_ms <= get.p95_ms && get.p95_ms <= get.p99_ms,
        "{get:?}"
    );
    let metrics = storage.get_metrics().await.unwrap();
    assert_eq!(metrics.counters["op.get_session.memory.count"], 10);
    assert!(metrics.gauges.contains_key("op.get_session.memory.p99_ms"));
    assert!(metrics.counters["cache.hits"] >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_ride_out_a_redis_restart_for_idempotent_operations_only() {
    let server = storage_testkit::servers::redis::RedisServer::start();
    let config = storage_redis::RedisConfig::new(server.url())
        .with_namespace("retry")
        .with_timeouts(
            Duration::from_millis(200),
            Duration::from_millis(200),
            Duration::from_millis(500),
        );
    let backend = Arc::new(storage_redis::RedisBackend::new(config).unwrap());
    let storage = Storage::builder(backend)
        .cache(None)
        .retry(RetrySettings {
            max_attempts: 30,
            initial_backoff_ms: 50,
            max_backoff_ms: 200,
        })
        .build();
    storage.initialize().await.unwrap();
    storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();

    server.stop();
    // Not idempotent: fails at once with a temporary error rather than being repeated.
    let err = storage
        .create_session(NewSession::new("s2", "u1"))
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");

    let restart = tokio::task::spawn_blocking({
        let server = Arc::new(server);
        move || {
            std::thread::sleep(Duration::from_millis(700));
            server.restart();
            server
        }
    });
    // Idempotent: retried until the server is back.
    let read = storage.get_session("s1").await;
    let _server = restart.await.unwrap();
    let read = read.unwrap();
    assert!(read.is_none() || read.unwrap().id == "s1");
}

/// A facade with group commit (batches of at most 16) over a memory backend, and that
/// backend, to check what is stored behind the facade.
fn grouped_over_memory() -> (Arc<MemoryBackend>, Arc<Storage>) {
    let memory = Arc::new(MemoryBackend::new("group").unwrap());
    let storage = Storage::builder(memory.clone())
        .group_commit(GroupCommitSettings {
            enabled: true,
            max_batch: 16,
        })
        .build();
    (memory, Arc::new(storage))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_acknowledges_every_append_once_stored_in_order() {
    let (memory, storage) = grouped_over_memory();
    storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let storage = storage.clone();
            let memory = memory.clone();
            tokio::spawn(async move {
                let message = NewMessage::new("user", json!(i)).with_client_id(format!("c{i}"));
                let stored = storage.append_message("s1", message).await.unwrap();
                // Acknowledged means stored: the backend itself has it now.
                let window = memory
                    .get_messages("s1", MessageRange::after(stored.sequence - 1, 1))
                    .await
                    .unwrap();
                assert_eq!(window[0].content, json!(i));
                stored.sequence
            })
        })
        .collect();
    let mut sequences = Vec::new();
    for task in tasks {
        sequences.push(task.await.unwrap());
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=64).collect::<Vec<u64>>());
    // A bad message fails alone, before it can fail a batch.
    let err = storage
        .append_message("s1", NewMessage::new("", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A replayed client id returns the stored message.
    let again = storage
        .append_message("s1", NewMessage::new("user", json!(5)).with_client_id("c5"))
        .await
        .unwrap();
    assert_eq!(again.content, json!(5));
    assert_eq!(
        storage
            .get_conversation_history("s1", 100)
            .await
            .unwrap()
            .len(),
        64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_acknowledges_every_checkpoint_once_stored() {
    let (memory, storage) = grouped_over_memory();
    // 8 threads, 8 checkpoints each, every put from its own task.
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let (storage, memory) = (storage.clone(), memory.clone());
            tokio::spawn(async move {
                let thread = format!("t{}", i % 8);
                let id = format!("cp-{i:03}");
                let mut checkpoint = Checkpoint::new(thread.as_str(), "", id.as_str());
                checkpoint
                    .channel_versions
                    .insert("step".into(), i.to_string());
                checkpoint
                    .channel_values
                    .insert("step".into(), json!(i).into());
                let versions = checkpoint.all_versions();
                storage.put_checkpoint(checkpoint, versions).await.unwrap();
                // Acknowledged means stored: the backend itself has it now.
                let stored = memory.get_checkpoint(&thread, "", Some(&id)).await.unwrap();
                assert_eq!(
                    stored.unwrap().checkpoint.channel_values["step"],
                    json!(i).into()
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for thread in 0..8 {
        let listed = memory
            .list_checkpoints(CheckpointQuery::thread(format!("t{thread}")))
            .await
            .unwrap();
        assert_eq!(listed.len(), 8);
    }
    // A bad put fails alone, before it can fail a batch.
    let bad = Checkpoint::new("t0", "", "cp-bad");
    let err = storage
        .put_checkpoint(bad, [("x".to_owned(), "1".to_owned())].into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn routed_delete_and_cleanup_reach_every_backend() {
    let sessions = Arc::new(MemoryBackend::new("a").unwrap());
    let others: Arc<dyn StorageBackend> = Arc::new(MemoryBackend::new("b").unwrap());
    let storage = Storage::builder(sessions)
        .route(storage::Kind::Conversations, others.clone())
        .route(storage::Kind::TaskContext, others.clone())
        .build();
    assert_eq!(storage.name(), "routed");
    for id in ["s1", "s2"] {
        storage
            .create_session(NewSession::new(id, "u"))
            .await
            .unwrap();
        storage
            .append_message(id, NewMessage::new("user", "hi"))
            .await
            .unwrap();
        storage
            .store_task_context(id, json!(1), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    assert!(storage.delete_session("s1").await.unwrap());
    assert!(others
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(others.get_task_context("s1").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        storage
            .cleanup_expired_sessions(Duration::from_millis(5))
            .await
            .unwrap(),
        1
    );
    assert!(others
        .get_conversation_history("s2", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(others.get_task_context("s2").await.unwrap(), None);
    let health = storage.health(true).await;
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.backends.len(), 2);
    assert_eq!(health.deep.len(), 5);
}

#[tokio::test]
async fn scheduled_cleanup_removes_idle_sessions() {
    let storage = Arc::new(memory_storage());
    storage
        .create_session(NewSession::new("idle", "u"))
        .await
        .unwrap();
    let task = storage.spawn_cleanup(Duration::from_millis(30), Duration::from_millis(10));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while storage.get_session("idle").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "cleanup never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.stop();
}

/// Checkpoint `cp-{n}` of `thread`, whose one channel `ch` holds `n` at version `n`, and
/// its new versions.
fn numbered_checkpoint(thread: &str, n: u32) -> (Checkpoint, ChannelVersions) {
    let mut cp = Checkpoint::new(thread, "", format!("cp-{n}"));
    cp.channel_versions.insert("ch".into(), n.to_string());
    cp.channel_values.insert("ch".into(), json!(n).into());
    let new = cp.all_versions();
    (cp, new)
}

/// A facade with group commit over `inner`, whose batches each take `flush` to store, so
/// the puts made meanwhile queue up into the next batch.
fn grouped_with_slow_flushes(inner: Arc<dyn StorageBackend>, flush: Duration) -> Arc<Storage> {
    use storage_testkit::fault::{Fault, FaultyBackend, Target};
    let faulty = Arc::new(FaultyBackend::new(inner));
    faulty.set(Target::Operation("put_checkpoints"), Fault::Latency(flush));
    Arc::new(
        Storage::builder(faulty)
            .group_commit(GroupCommitSettings {
                enabled: true,
                ..GroupCommitSettings::default()
            })
            .build(),
    )
}

/// A caller cancelled while its flush stores a batch that holds other callers' writes
/// (a timeout, a dropped future) does not take their writes down with it: each of them is
/// answered with the true outcome, and the batch is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_survives_the_cancellation_of_the_flushing_caller() {
    let inner: Arc<dyn StorageBackend> = Arc::new(MemoryBackend::new("gc_cancel").unwrap());
    let storage = grouped_with_slow_flushes(inner.clone(), Duration::from_millis(300));
    let put = |n: u32| {
        let storage = storage.clone();
        async move {
            let (cp, new) = numbered_checkpoint("t", n);
            storage.put_checkpoint(cp, new).await
        }
    };
    // 1 flushes alone for 300 ms; 2 then 3 queue behind it and form the next batch, which
    // 2 (first in line for the flush lock) stores, and 2 is cancelled half way through.
    let first = tokio::spawn(put(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(tokio::time::timeout(Duration::from_millis(400), put(2)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = tokio::spawn(put(3));
    first.await.unwrap().unwrap();
    assert!(
        second.await.unwrap().is_err(),
        "the second caller timed out"
    );
    third
        .await
        .unwrap()
        .expect("the third write is answered with its outcome");
    for n in 1..=3 {
        let id = format!("cp-{n}");
        assert!(
            inner
                .get_checkpoint("t", "", Some(&id))
                .await
                .unwrap()
                .is_some(),
            "{id} is stored"
        );
    }
}

/// A memory backend with a fault: `fault` sees every call first and may fail it (or panic,
/// as a backend with a bug would); the calls it lets through reach the memory backend.
#[derive(Debug)]
struct Faulty {
    inner: MemoryBackend,
    fault: fn(&storage_core::Call) -> storage_core::Result<()>,
}

impl Faulty {
    fn new(namespace: &str, fault: fn(&storage_core::Call) -> storage_core::Result<()>) -> Self {
        Faulty {
            inner: MemoryBackend::new(namespace).unwrap(),
            fault,
        }
    }
}

#[storage_core::async_trait]
impl storage_core::Dispatch for Faulty {
    fn label(&self) -> &'static str {
        "memory"
    }
    async fn dispatch(
        &self,
        call: storage_core::Call,
    ) -> storage_core::Result<storage_core::Reply> {
        (self.fault)(&call)?;
        call.apply(&self.inner).await
    }
}

/// The flush runs in the flushing caller's own task: a panic in it still answers that
/// caller with an error rather than unwinding through it, and releases the lane, so the
/// thread's next put is answered too.
#[tokio::test]
async fn a_panicking_flush_fails_its_caller_and_frees_the_lane() {
    let storage = Storage::builder(Arc::new(Faulty::new("gc_panic", |call| {
        if let storage_core::Call::PutCheckpoints { .. } = call {
            panic!("a bug in the backend");
        }
        Ok(())
    })))
    .group_commit(GroupCommitSettings {
        enabled: true,
        ..GroupCommitSettings::default()
    })
    .build();
    for n in 1..=2 {
        let (cp, new) = numbered_checkpoint("t", n);
        let err = tokio::time::timeout(Duration::from_secs(5), storage.put_checkpoint(cp, new))
            .await
            .expect("the put is answered")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    }
}

/// Group commit batches puts of different threads together, yet a batch that fails for
/// something one thread sent fails only that thread's callers: every other put in it is
/// stored and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_whose_puts_fail_fails_only_its_own_callers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Batches that held a put of `bad` beside other threads' puts, and were refused.
    static MIXED_BATCHES_REFUSED: AtomicUsize = AtomicUsize::new(0);
    let refusing = Arc::new(Faulty::new("gc_isolation", |call| {
        let storage_core::Call::PutCheckpoints { puts } = call else {
            return Ok(());
        };
        if !puts.iter().any(|(cp, _)| cp.thread_id == "bad") {
            return Ok(());
        }
        if puts.iter().any(|(cp, _)| cp.thread_id != "bad") {
            MIXED_BATCHES_REFUSED.fetch_add(1, Ordering::SeqCst);
        }
        Err(storage_core::StorageError::backend("thread bad is refused").with_temporary(false))
    }));
    // Each flush takes 50 ms, so the puts queued behind it form mixed batches.
    let storage = grouped_with_slow_flushes(refusing.clone(), Duration::from_millis(50));
    let threads: Vec<String> = (0..16)
        .map(|i| format!("t{i}"))
        .chain(["bad".to_owned()])
        .collect();
    let puts: Vec<_> = (0..3u32)
        .flat_map(|round| threads.iter().map(move |thread| (round, thread.clone())))
        .map(|(round, thread)| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let (cp, new) = numbered_checkpoint(&thread, round);
                (thread, storage.put_checkpoint(cp, new).await)
            })
        })
        .collect();
    for put in puts {
        let (thread, outcome) = put.await.unwrap();
        if thread == "bad" {
            let err = outcome.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
            assert!(err.to_string().contains("thread bad is refused"), "{err}");
        } else {
            outcome.unwrap_or_else(|err| panic!("{thread}'s put failed with bad's: {err}"));
        }
    }
    assert!(
        MIXED_BATCHES_REFUSED.load(Ordering::SeqCst) > 0,
        "no batch held bad's puts beside another thread's"
    );
    for thread in threads.iter().filter(|thread| *thread != "bad") {
        let stored = refusing
            .list_checkpoints(CheckpointQuery::thread(thread.as_str()))
            .await
            .unwrap();
        assert_eq!(stored.len(), 3, "{thread}'s puts are stored");
    }
}

/// A kind whose retention sweep fails does not stop the other kinds: each still runs, and
/// the failure comes back once they have.
#[tokio::test]
async fn a_failing_retention_sweep_leaves_the_other_kinds_to_run() {
    let storage = Storage::builder(Arc::new(Faulty::new("failing_sweeps", |call| {
        if let storage_core::Call::RetainMessages { .. } = call {
            return Err(storage_core::StorageError::backend(
                "the message store is broken",
            ));
        }
        Ok(())
    })))
    .build();
    for step in 0..3 {
        storage
            .append_message("s1", NewMessage::new("user", json!(step)))
            .await
            .unwrap();
        storage
            .store_context(ContextScope::App, json!(step), ExpectedVersion::Any, 10)
            .await
            .unwrap();
    }
    let mut retention = storage::config::RetentionSettings::default();
    retention.messages.keep_last = Some(1);
    retention.context_versions.keep_last = Some(1);
    let err = storage.apply_retention(&retention).await.unwrap_err();
    assert!(
        err.to_string().contains("the message store is broken"),
        "{err}"
    );
    let versions = storage
        .list_context_versions(ContextScope::App, None, 10)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1, "context versions were still swept");
    let history = storage.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(history.len(), 3);
}

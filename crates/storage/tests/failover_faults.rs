//! Failover and the facade's layers under injected faults (`storage_testkit::fault`), at
//! millisecond scale: the breaker opens on errors and on hangs, probes while open and
//! closes after replaying the journal; dual-write; writes of unknown outcome; retries;
//! streams, batches and `artifact_exists` with their real semantics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use storage::config::RetrySettings;
use storage::failover::{FailoverBackend, FailoverMode, FailoverSettings};
use storage::Storage;
use storage_core::prelude::*;
use storage_core::{ByteStream, Bytes, Checkpoint, ErrorKind, Metadata};
use storage_memory::MemoryBackend;
use storage_testkit::fault::{Fault, FaultyBackend, Target};

struct Setup {
    primary: FaultyBackend,
    fallback: Arc<dyn StorageBackend>,
    failover: FailoverBackend,
    _journal: tempfile::TempDir,
}

fn memory(namespace: &str) -> Arc<dyn StorageBackend> {
    Arc::new(MemoryBackend::new(namespace).unwrap())
}

fn setup(mode: FailoverMode, tune: impl FnOnce(&mut FailoverSettings)) -> Setup {
    let primary = FaultyBackend::new(memory("primary"));
    let fallback = memory("fallback");
    let journal = tempfile::tempdir().unwrap();
    let mut settings = FailoverSettings {
        mode,
        failure_threshold: 2,
        probe_interval_ms: 10,
        recovery_probes: 2,
        journal_dir: journal.path().to_owned(),
        // Generous, so a loaded machine never trips the breaker by accident; the hang test
        // sets its own.
        attempt_timeout_ms: 5_000,
        write_attempt_timeout_ms: 5_000,
        ..FailoverSettings::default()
    };
    tune(&mut settings);
    let failover =
        FailoverBackend::new(Arc::new(primary.clone()), fallback.clone(), settings).unwrap();
    Setup {
        primary,
        fallback,
        failover,
        _journal: journal,
    }
}

async fn recovered(failover: &FailoverBackend) {
    assert!(
        failover.wait_until_recovered(Duration::from_secs(20)).await,
        "{:?}",
        failover.status()
    );
}

#[tokio::test]
async fn errors_open_the_breaker_and_reads_go_to_the_fallback() {
    let s = setup(FailoverMode::Failover, |_| {});
    s.failover.initialize().await.unwrap();
    s.failover
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    s.primary
        .set(Target::All, Fault::Error(ErrorKind::Connection));
    for _ in 0..2 {
        let session = s.failover.get_session("s1").await.unwrap();
        assert_eq!(
            session.unwrap().user_id,
            "alice",
            "answered by the fallback"
        );
    }
    assert!(s.failover.status().open, "two failures open the breaker");
    let session = s.failover.get_session("s1").await.unwrap();
    assert!(session.is_some(), "open: read from the fallback");
}

#[tokio::test]
async fn a_hanging_primary_opens_the_breaker_and_reads_fail_over_within_the_deadline() {
    let s = setup(FailoverMode::Failover, |settings| {
        settings.attempt_timeout_ms = 100;
    });
    s.failover.initialize().await.unwrap();
    s.failover
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    s.primary.set(Target::All, Fault::Hang);
    for _ in 0..2 {
        let started = Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(5), s.failover.get_session("s1"))
            .await
            .expect("a read of a hanging primary must not hang");
        assert!(read.unwrap().is_some());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(s.failover.status().open, "hangs count as failures");
    // Writes of a hanging primary are journaled too, and replayed once it answers.
    let appended = tokio::time::timeout(
        Duration::from_secs(5),
        s.failover
            .append_message("s1", NewMessage::new("user", "during").with_client_id("c1")),
    )
    .await
    .expect("a write of a hanging primary must not hang")
    .unwrap();
    assert_eq!(appended.sequence, 1);
    s.primary.clear();
    recovered(&s.failover).await;
    let stored = s.primary.inner().get_conversation_history("s1", 10).await;
    assert_eq!(stored.unwrap().len(), 1);
}

#[tokio::test]
async fn the_probe_keeps_the_breaker_open_until_the_primary_answers_then_replays_and_closes() {
    let s = setup(FailoverMode::Failover, |_| {});
    s.failover.initialize().await.unwrap();
    s.primary
        .set(Target::All, Fault::Error(ErrorKind::Connection));
    // Two failed reads open the breaker; from then on every write is journaled, those
    // that are not idempotent (a create, an update) included.
    for _ in 0..2 {
        assert!(s.failover.get_session("s1").await.unwrap().is_none());
    }
    assert!(s.failover.status().open);
    s.failover
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    for step in 0..5 {
        s.failover
            .append_message("s1", NewMessage::new("user", json!(step)))
            .await
            .unwrap();
    }
    s.failover
        .update_session("s1", SessionUpdate::default().request(5))
        .await
        .unwrap();
    assert_eq!(s.failover.status().journal_pending, 7);
    // Appends without a client id were given one, so their replay is idempotent.
    // Half open: the probe calls the primary's health check and finds it still down.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = s.failover.status();
    assert!(status.open && status.journal_pending == 7, "{status:?}");
    assert!(s.primary.injected() > 7, "the probe kept asking");
    s.primary.clear();
    recovered(&s.failover).await;
    let primary = s.primary.inner();
    let history = primary.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(history.len(), 5, "each journaled append replayed once");
    let session = primary.get_session("s1").await.unwrap().unwrap();
    assert_eq!(session.metrics.request_count, 1, "the update replayed once");
    assert_eq!(s.failover.status().replayed, 7);
}

#[tokio::test]
async fn dual_write_fails_writes_while_the_primary_is_down_and_journals_nothing() {
    let s = setup(FailoverMode::DualWrite, |_| {});
    s.failover.initialize().await.unwrap();
    s.failover
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    assert!(
        s.fallback.get_session("s1").await.unwrap().is_some(),
        "mirrored"
    );
    s.primary
        .set(Target::All, Fault::Error(ErrorKind::Connection));
    for _ in 0..3 {
        let err = s
            .failover
            .append_message("s1", NewMessage::new("user", "x"))
            .await
            .unwrap_err();
        assert!(err.is_temporary(), "{err}");
    }
    assert!(s.failover.get_session("s1").await.unwrap().is_some());
    assert_eq!(s.failover.status().journal_pending, 0);
    assert!(s
        .fallback
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_write_of_unknown_outcome_is_journaled_only_if_idempotent() {
    let s = setup(FailoverMode::Failover, |settings| {
        settings.failure_threshold = 10;
    });
    s.failover.initialize().await.unwrap();
    s.failover
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    // The primary applies each write, then the connection "drops".
    s.primary.set(Target::Writes, Fault::FailAfterApply);
    let err = s
        .failover
        .update_session("s1", SessionUpdate::default().request(3))
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    s.failover
        .append_message("s1", NewMessage::new("user", "x").with_client_id("c1"))
        .await
        .expect("an idempotent write is journaled");
    assert_eq!(s.failover.status().journal_pending, 1);
    s.primary.clear();
    recovered(&s.failover).await;
    let primary = s.primary.inner();
    let session = primary.get_session("s1").await.unwrap().unwrap();
    assert_eq!(
        session.metrics.request_count, 1,
        "applied once, never replayed"
    );
    let history = primary.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(history.len(), 1, "the replay found the client id stored");
}

#[tokio::test]
async fn the_facade_retries_idempotent_writes_only() {
    let backend = FaultyBackend::new(memory("retry"));
    let storage = Storage::builder(Arc::new(backend.clone()))
        .cache(None)
        .retry(RetrySettings {
            max_attempts: 3,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
        })
        .build();
    storage
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    backend.set(Target::Operation("append_message"), Fault::FailAfterApply);
    let calls = backend.calls();
    storage
        .append_message("s1", NewMessage::new("user", "once"))
        .await
        .unwrap_err();
    assert_eq!(backend.calls(), calls + 1, "not idempotent: one attempt");
    storage
        .append_message("s1", NewMessage::new("user", "again").with_client_id("c1"))
        .await
        .unwrap_err();
    assert_eq!(backend.calls(), calls + 4, "idempotent: three attempts");
    backend.clear();
    let history = storage.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(history.len(), 2, "each stored once: {history:?}");
}

#[tokio::test]
async fn batches_and_exists_reach_the_primary_as_themselves() {
    let s = setup(FailoverMode::Failover, |_| {});
    s.failover.initialize().await.unwrap();
    // If failover split the batch into single puts, these would fail.
    s.primary.set(
        Target::Operation("put_checkpoint"),
        Fault::Error(ErrorKind::Unsupported),
    );
    let puts = (0..5)
        .map(|_| {
            let checkpoint = Checkpoint::new("t1", "", storage_core::new_checkpoint_id());
            (checkpoint, Default::default())
        })
        .collect();
    s.failover.put_checkpoints(puts).await.unwrap();
    let listed = s
        .primary
        .inner()
        .list_checkpoints(storage_core::CheckpointQuery::thread("t1"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 5);
    // `artifact_exists` is the primary's own, not a default over `get_artifact_meta`.
    s.primary.set(
        Target::Operation("artifact_exists"),
        Fault::Error(ErrorKind::Unsupported),
    );
    let err = s
        .failover
        .artifact_exists("scope", "name", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

fn chunks(size: usize) -> ByteStream {
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let count = size / chunk.len();
    futures::stream::iter((0..count).map(move |_| Ok(chunk.clone()))).boxed()
}

#[tokio::test]
async fn streams_go_to_the_primary_as_streams_and_are_journaled_only_up_to_the_bound() {
    let s = setup(FailoverMode::Failover, |settings| {
        settings.max_journaled_stream_bytes = 1024 * 1024;
    });
    s.failover.initialize().await.unwrap();
    // The primary's own streaming calls are used, not defaults over whole values.
    s.primary.set(
        Target::Operation("save_artifact"),
        Fault::Error(ErrorKind::Unsupported),
    );
    s.primary.set(
        Target::Operation("get_artifact"),
        Fault::Error(ErrorKind::Unsupported),
    );
    let meta = s
        .failover
        .save_artifact_stream(
            "run",
            "big.bin",
            "application/octet-stream",
            Metadata::new(),
            chunks(4 << 20),
            None,
        )
        .await
        .unwrap();
    assert_eq!(meta.size, 4 << 20);
    let (_, content) = s
        .failover
        .open_artifact_stream("run", "big.bin", None)
        .await
        .unwrap()
        .unwrap();
    let read: usize = content
        .map(|chunk| chunk.unwrap().len())
        .collect::<Vec<_>>()
        .await
        .iter()
        .sum();
    assert_eq!(read, 4 << 20);
    let mirrored = s
        .fallback
        .get_artifact_meta("run", "big.bin", None)
        .await
        .unwrap();
    assert_eq!(
        mirrored.unwrap().sha256,
        meta.sha256,
        "streamed back into the fallback"
    );

    // The primary goes down: a small stream is journaled, a large one refused whole.
    s.primary
        .set(Target::All, Fault::Error(ErrorKind::Connection));
    s.failover.get_session("probe-1").await.unwrap();
    s.failover.get_session("probe-2").await.unwrap();
    assert!(s.failover.status().open);
    let small = s
        .failover
        .save_artifact_stream(
            "run",
            "small.bin",
            "application/octet-stream",
            Metadata::new(),
            chunks(512 * 1024),
            None,
        )
        .await
        .unwrap();
    assert_eq!(small.size, 512 * 1024);
    let err = s
        .failover
        .save_artifact_stream(
            "run",
            "large.bin",
            "application/octet-stream",
            Metadata::new(),
            chunks(2 << 20),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.is_temporary() && err.to_string().contains("max_journaled_stream_bytes"));
    assert!(s
        .fallback
        .get_artifact_meta("run", "large.bin", None)
        .await
        .unwrap()
        .is_none());
    s.primary.clear();
    recovered(&s.failover).await;
    let replayed = s
        .primary
        .inner()
        .get_artifact_meta("run", "small.bin", None)
        .await
        .unwrap();
    assert_eq!(replayed.unwrap().sha256, small.sha256);
}

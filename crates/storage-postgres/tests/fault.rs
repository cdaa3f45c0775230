//! Faults: the server goes away mid-workload and comes back on the same port.
//!
//! During the outage every operation fails with a temporary `Connection` error within the
//! configured timeouts; after the restart the same backend value works again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storage_core::ext::TaskContextStoreExt;
use storage_core::{
    ConversationStore, ErrorKind, NewMessage, NewSession, SessionStore, StorageBackend,
    StorageError,
};
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::servers::postgres::PostgresServer;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
const WAIT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// What one failing call may take: a connect attempt, a wait for a pooled connection, and
/// scheduling slack on a busy 2-core machine.
const FAILURE_BOUND: Duration = Duration::from_millis(4_000);

fn assert_outage_error(err: &StorageError, elapsed: Duration) {
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.is_temporary(), "{err}");
    assert!(elapsed < FAILURE_BOUND, "failed after {elapsed:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_with_connection_errors_and_the_backend_recovers() {
    // Its own cluster: this test stops it, so it can never be a shared one.
    let server = PostgresServer::start();
    let config = PostgresConfig::from_url(server.url())
        .with_namespace("fault_test")
        .with_pool_size(4)
        .with_timeouts(CONNECT_TIMEOUT, WAIT_TIMEOUT, Duration::from_secs(5));
    let backend = Arc::new(PostgresBackend::new(config).unwrap());
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();

    // A workload appending in the background, across the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let backend = backend.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let message = NewMessage::new("user", format!("w{worker}"));
                    match backend.append_message("s1", message).await {
                        Ok(_) => ok += 1,
                        Err(err) => {
                            assert_outage_error(&err, started.elapsed());
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = backend.get_conversation_history("s1", 1).await.unwrap();
    assert_eq!(before.len(), 1, "the workload was running");

    server.stop();
    // Every kind of call fails the same way while the server is down.
    for _ in 0..3 {
        let started = Instant::now();
        let err = backend.get_session("s1").await.unwrap_err();
        assert_outage_error(&err, started.elapsed());
        let started = Instant::now();
        let err = backend
            .store_task_context(
                "s1",
                serde_json::json!(1),
                storage_core::ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert_outage_error(&err, started.elapsed());
        let started = Instant::now();
        let err = backend.health_check().await.unwrap_err();
        assert_outage_error(&err, started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.resume();
    // The same backend value, not rebuilt: the pool drops its dead connections and opens
    // new ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match backend.get_session("s1").await {
            Ok(session) => {
                assert!(session.is_some());
                break;
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
                assert!(
                    Instant::now() < deadline,
                    "no recovery after restart: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total_failed = 0;
    for worker in workers {
        let (ok, failed) = worker.await.unwrap();
        assert!(ok > 0);
        total_failed += failed;
    }
    assert!(total_failed > 0, "the workload saw the outage");

    // After recovery, sequences are still gapless and strictly increasing.
    for _ in 0..10 {
        backend
            .append_message("s1", NewMessage::new("user", "after"))
            .await
            .unwrap();
    }
    let history = backend
        .get_conversation_history("s1", 10_000)
        .await
        .unwrap();
    let sequences: Vec<u64> = history.iter().map(|m| m.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let health = backend.health_check().await.unwrap();
    assert!(health.healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_backend_fails_with_connection() {
    let backend = PostgresBackend::new(
        PostgresConfig::from_url(storage_testkit::servers::postgres::postgres_url())
            .with_namespace("fault_closed"),
    )
    .unwrap();
    backend.initialize().await.unwrap();
    backend.close().await.unwrap();
    let err = backend.get_session("x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let err = backend.initialize().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_a_temporary_timeout_error() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let config = PostgresConfig::from_url(&url)
        .with_namespace("fault_statement_timeout")
        .with_timeouts(CONNECT_TIMEOUT, WAIT_TIMEOUT, Duration::from_millis(200));
    let backend = PostgresBackend::new(config).unwrap();
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("locked", "u"))
        .await
        .unwrap();

    // Another connection holds the session's row lock, so the update waits past its
    // statement timeout and the server cancels it.
    let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .batch_execute(
            "BEGIN; SELECT 1 FROM fault_statement_timeout.sessions WHERE id = 'locked' FOR UPDATE",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let err = backend
        .update_session("locked", storage_core::SessionUpdate::default().request(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_temporary());
    assert!(started.elapsed() < FAILURE_BOUND);
    holder.batch_execute("ROLLBACK").await.unwrap();

    // Nothing was applied, and the backend works on.
    let session = backend
        .update_session("locked", storage_core::SessionUpdate::default().request(1))
        .await
        .unwrap();
    assert_eq!(session.metrics.request_count, 1);
}

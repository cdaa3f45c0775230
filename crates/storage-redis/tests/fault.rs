//! Stopping the server in the middle of a workload: operations fail with temporary
//! `Connection` errors within the configured timeouts, and the same backend value works
//! again once the server is back on the same port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use storage_core::{
    ErrorKind, NewMessage, NewSession, SessionStore, SessionUpdate, StorageBackend,
};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::redis::RedisServer;

const CONNECT: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_millis(1000);
const COMMAND: Duration = Duration::from_millis(1000);
/// The longest any single call may take during the outage: one connect attempt plus one
/// command deadline, with room for a loaded machine.
const OUTAGE_CALL_LIMIT: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_gives_temporary_connection_errors_and_recovery_needs_no_rebuild() {
    // Our own server: a fault test never stops a shared one.
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url())
        .with_namespace("fault_test")
        .with_pool_size(4)
        .with_timeouts(CONNECT, WAIT, COMMAND);
    let backend: Arc<dyn StorageBackend> = Arc::new(RedisBackend::new(config).unwrap());
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();

    // A workload of appends and updates runs on 4 tasks while the server goes away.
    let stop_at = Instant::now() + Duration::from_millis(300);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut successes = 0u32;
                let until = stop_at + Duration::from_millis(1200);
                let mut i = 0;
                while Instant::now() < until {
                    i += 1;
                    let started = Instant::now();
                    let result = if i % 2 == 0 {
                        backend
                            .append_message(
                                "s1",
                                NewMessage::new("user", json!(format!("{worker}-{i}"))),
                            )
                            .await
                            .map(|_| ())
                    } else {
                        backend
                            .update_session("s1", SessionUpdate::default().request(1))
                            .await
                            .map(|_| ())
                    };
                    let took = started.elapsed();
                    match result {
                        Ok(()) => successes += 1,
                        Err(err) => errors.push((err, took)),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (successes, errors)
            })
        })
        .collect();

    tokio::time::sleep_until(stop_at.into()).await;
    server.stop();

    let mut total_errors = 0;
    for worker in workers {
        let (successes, errors) = worker.await.expect("no worker panics");
        assert!(successes > 0, "the workload ran before the outage");
        for (err, took) in errors {
            total_errors += 1;
            assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
            assert!(err.is_temporary(), "{err}");
            assert!(took <= OUTAGE_CALL_LIMIT, "a call hung for {took:?}: {err}");
        }
    }
    assert!(total_errors > 0, "the outage was noticed");

    // While the server is down, a fresh call fails fast too, and health says so.
    let started = Instant::now();
    let err = backend.get_session("s1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.is_temporary());
    assert!(started.elapsed() <= OUTAGE_CALL_LIMIT);
    assert!(backend.health_check().await.is_err());

    // Back on the same port (empty: the throwaway server keeps nothing): the same value works.
    server.restart();
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("s2", "u1"))
        .await
        .unwrap();
    let message = backend
        .append_message("s2", NewMessage::new("user", json!("after")))
        .await
        .unwrap();
    assert_eq!(message.sequence, 1);
    assert!(backend.health_check().await.unwrap().healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_a_restart_without_initialize() {
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url())
        .with_namespace("fault_scripts")
        .with_timeouts(CONNECT, WAIT, COMMAND);
    let backend = RedisBackend::new(config).unwrap();
    backend.initialize().await.unwrap();
    server.stop();
    server.restart();
    // The restarted server has no scripts cached: EVALSHA's NOSCRIPT is answered by loading.
    backend
        .create_session(NewSession::new("s", "u"))
        .await
        .unwrap();
    assert_eq!(
        backend.get_session("s").await.unwrap().unwrap().user_id,
        "u"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_backend_fails_with_connection() {
    let server = RedisServer::start();
    let backend =
        RedisBackend::new(RedisConfig::new(server.url()).with_namespace("fault_close")).unwrap();
    backend.initialize().await.unwrap();
    backend.close().await.unwrap();
    let err = backend.get_session("s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_connection_error_not_a_hang() {
    // A port nothing listens on.
    let port = storage_testkit::servers::free_port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .with_namespace("fault_unreachable")
        .with_timeouts(CONNECT, WAIT, COMMAND);
    let backend = RedisBackend::new(config).unwrap();
    let started = Instant::now();
    let err = backend.initialize().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.is_temporary());
    assert!(started.elapsed() <= OUTAGE_CALL_LIMIT);
}

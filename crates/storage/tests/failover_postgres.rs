//! Failover with a throwaway PostgreSQL primary (its own cluster, stopped with an
//! immediate shutdown as a crash would): killed in the middle of a concurrent workload of
//! more than 10,000 operations through the facade, restarted, and after the journal's
//! replay it holds every write acknowledged since the kill exactly once; reads never
//! failed. The second test also drops the whole facade during the outage and builds a new
//! one on the same journal and fallback directory before the primary returns.
//!
//! The throwaway cluster runs with `synchronous_commit=off`, so commits acknowledged just
//! before the kill may be lost by the server itself; writes started before the kill are
//! therefore checked for duplicates only.

mod failover_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use failover_support::*;
use storage::failover::FailoverBackend;
use storage_core::StorageBackend;
use storage_object::{ObjectBackend, ObjectConfig};
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::servers::postgres::PostgresServer;

fn primary(server: &PostgresServer) -> Arc<dyn StorageBackend> {
    let config = PostgresConfig::from_url(server.url())
        .with_namespace("failover")
        .with_pool_size(8)
        .with_timeouts(
            Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_secs(5),
        );
    Arc::new(PostgresBackend::new(config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_primary_killed_mid_workload_loses_no_acknowledged_write() {
    let server = PostgresServer::start();
    let primary = primary(&server);
    primary_killed_mid_workload(primary, "p", || server.stop(), || server.resume()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_rebuilt_during_the_outage_replays_the_surviving_journal() {
    let server = PostgresServer::start();
    let journal = TempDir::new("journal");
    let fallback_dir = TempDir::new("fallback");
    let fallback = || -> Arc<dyn StorageBackend> {
        let config = ObjectConfig {
            url: format!("file://{}", fallback_dir.path().display()),
            namespace: "fallback".into(),
            ..ObjectConfig::default()
        };
        Arc::new(ObjectBackend::new(config).unwrap())
    };
    let record = Arc::new(Record::default());

    // The first process: writes, loses its primary, keeps writing, and goes away.
    {
        let failover =
            FailoverBackend::new(primary(&server), fallback(), settings(journal.path())).unwrap();
        let storage = Arc::new(facade(failover.clone()));
        storage.initialize().await.unwrap();
        create_sessions(&storage).await;
        let workload = tokio::spawn(run_until(storage.clone(), record.clone(), "first", 5_000));
        wait_for_ops(&record, 1_500).await;
        server.stop();
        record.primary_stopped.store(true, Ordering::SeqCst);
        workload.await.unwrap();
        assert!(failover.status().journal_pending > 0);
    }

    // The second process: starts with the journal left behind, the primary still down.
    let primary = primary(&server);
    let failover =
        FailoverBackend::new(primary.clone(), fallback(), settings(journal.path())).unwrap();
    assert!(
        failover.status().open,
        "a pending journal starts the breaker open"
    );
    let storage = Arc::new(facade(failover.clone()));
    storage.initialize().await.unwrap();
    let workload = tokio::spawn(run_until(storage.clone(), record.clone(), "second", 10_500));
    wait_for_ops(&record, 7_000).await;
    server.resume();
    workload.await.unwrap();
    assert!(
        failover
            .wait_until_recovered(Duration::from_secs(180))
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
    assert!(record.outage_reads.load(Ordering::SeqCst) > 0);
    assert_eq!(failover.status().refused, 0);
    assert_primary_holds(primary.as_ref(), &record, false).await;
}

//! Failover with a throwaway Redis primary (started and stopped by this test) and an
//! in-process fallback: the primary is killed in the middle of a concurrent workload of
//! more than 10,000 operations through the facade, restarted, and after the journal's
//! replay holds every write acknowledged since the kill exactly once; reads never failed.
//!
//! The throwaway Redis keeps nothing across a kill (no persistence), so writes
//! acknowledged before the kill are lost by the server itself; those are not checked.

mod failover_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use failover_support::*;
use storage::failover::FailoverBackend;
use storage_core::StorageBackend;
use storage_memory::MemoryBackend;
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_primary_killed_mid_workload_loses_no_acknowledged_write() {
    let server = RedisServer::start();
    let journal = TempDir::new("journal");
    let config = RedisConfig::new(server.url())
        .with_namespace("failover")
        .with_pool_size(8);
    let primary: Arc<dyn StorageBackend> = Arc::new(RedisBackend::new(config).unwrap());
    let fallback: Arc<dyn StorageBackend> = Arc::new(MemoryBackend::new("fallback").unwrap());
    let failover =
        FailoverBackend::new(primary.clone(), fallback, settings(journal.path())).unwrap();
    let storage = Arc::new(facade(failover.clone()));
    storage.initialize().await.unwrap();
    create_sessions(&storage).await;

    let record = Arc::new(Record::default());
    let workload = tokio::spawn(run_until(storage.clone(), record.clone(), "r", 10_500));
    wait_for_ops(&record, 2_500).await;
    server.stop();
    record.primary_stopped.store(true, Ordering::SeqCst);
    wait_for_ops(&record, 6_000).await;
    assert!(failover.status().open);
    assert!(failover.status().journal_pending > 0);
    server.restart();
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

//! Failover with a throwaway Redis primary (started and stopped by this test) and an
//! in-process fallback: the primary is killed in the middle of a concurrent workload of
//! more than 10,000 operations through the facade, restarted, and after the journal's
//! replay holds every write acknowledged since the kill exactly once; reads never failed.
//!
//! The throwaway Redis keeps nothing across a kill (no persistence), so writes
//! acknowledged before the kill are lost by the server itself; those are not checked.

mod failover_support;

use std::sync::Arc;

use failover_support::*;
use storage_core::StorageBackend;
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_primary_killed_mid_workload_loses_no_acknowledged_write() {
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url())
        .with_namespace("failover")
        .with_pool_size(8);
    let primary: Arc<dyn StorageBackend> = Arc::new(RedisBackend::new(config).unwrap());
    primary_killed_mid_workload(primary, "r", || server.stop(), || server.restart()).await;
}

//! Failover with a throwaway Redis primary (its own durable server: append-only file,
//! fsynced before each reply) killed with SIGKILL in the middle of a concurrent workload of
//! more than 10,000 operations through the facade, restarted, and after the journal's
//! replay holding every acknowledged write, from before the kill and after it, exactly
//! once; reads during the outage succeeded. The second test also replaces the facade's
//! process during the outage (a new one on the same journal) before the primary returns.
//! The scenario is the testkit's `scenarios::outage::primary_killed_mid_workload`.

mod failover_support;

use std::sync::Arc;

use failover_support::Harness;
use storage_core::StorageBackend;
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::scenarios::outage::{primary_killed_mid_workload, Plan, Process, Server};
use storage_testkit::servers::redis::RedisServer;

struct Redis(RedisServer);

impl Server for Redis {
    fn connect(&self) -> Arc<dyn StorageBackend> {
        let config = RedisConfig::new(self.0.url())
            .with_namespace("failover")
            .with_pool_size(8);
        Arc::new(RedisBackend::new(config).unwrap())
    }

    fn kill(&self) {
        self.0.stop();
    }

    fn restart(&self) {
        self.0.restart();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_primary_killed_mid_workload_loses_no_acknowledged_write() {
    let primary = Redis(RedisServer::durable());
    let harness = Harness::default();
    primary_killed_mid_workload(&primary, &harness, "redis", Process::Kept, Plan::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_process_restarted_during_the_outage_replays_the_surviving_journal() {
    let primary = Redis(RedisServer::durable());
    let harness = Harness::default();
    primary_killed_mid_workload(
        &primary,
        &harness,
        "redis",
        Process::Restarted,
        Plan::default(),
    )
    .await;
}

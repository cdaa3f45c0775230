//! Failover with a throwaway PostgreSQL primary (its own durable cluster:
//! `synchronous_commit=on`) whose postmaster and backends are killed with SIGKILL in the
//! middle of a concurrent workload of more than 10,000 operations through the facade,
//! restarted, and after the journal's replay holding every acknowledged write, from before
//! the kill and after it, exactly once; reads during the outage succeeded. The second test
//! also replaces the facade's process during the outage (a new one on the same journal)
//! before the primary returns. The scenario is the testkit's
//! `scenarios::outage::primary_killed_mid_workload`.

mod failover_support;

use std::sync::Arc;
use std::time::Duration;

use failover_support::Harness;
use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::scenarios::outage::{primary_killed_mid_workload, Plan, Process, Server};
use storage_testkit::servers::postgres::PostgresServer;

struct Postgres(PostgresServer);

impl Server for Postgres {
    fn connect(&self) -> Arc<dyn StorageBackend> {
        let config = PostgresConfig::from_url(self.0.url())
            .with_namespace("failover")
            .with_pool_size(8)
            .with_timeouts(
                Duration::from_millis(500),
                Duration::from_millis(500),
                Duration::from_secs(5),
            );
        Arc::new(PostgresBackend::new(config).unwrap())
    }

    fn kill(&self) {
        self.0.stop();
    }

    fn restart(&self) {
        self.0.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_primary_killed_mid_workload_loses_no_acknowledged_write() {
    let primary = Postgres(PostgresServer::durable());
    let harness = Harness::default();
    primary_killed_mid_workload(
        &primary,
        &harness,
        "postgres",
        Process::Kept,
        Plan::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_process_restarted_during_the_outage_replays_the_surviving_journal() {
    let primary = Postgres(PostgresServer::durable());
    let harness = Harness::default();
    primary_killed_mid_workload(
        &primary,
        &harness,
        "postgres",
        Process::Restarted,
        Plan::default(),
    )
    .await;
}

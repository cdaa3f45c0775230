//! Failover with a primary that hangs rather than dies: a throwaway Redis or PostgreSQL
//! server stopped with SIGSTOP (connections stay open, nothing is answered) in the middle
//! of a concurrent workload through the facade over a `FailoverBackend` with a 200 ms
//! attempt deadline and a breaker that opens at the first failure. While it is stopped,
//! every operation succeeds: reads from the fallback (each well within 5 s), writes on the
//! fallback and in the journal. It is then let go on (SIGCONT), stopped once more while the
//! journal is being replayed, let go on again, and after recovery the primary holds every
//! acknowledged write exactly once: writes it received before it hung and carried out
//! after SIGCONT, past their deadline, are not duplicated by the replay.
//!
//! The workload, its record and the final check are the testkit's
//! (`scenarios::outage`); the server handles' `pause`/`unpause` send the signals.

mod failover_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_support::{Harness, TempDir};
use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::scenarios::outage::{
    assert_primary_holds, create_sessions, run_until, wait_for_ops, FailoverUnderTest, Record,
    RECOVERY_TIMEOUT,
};
use storage_testkit::servers::postgres::PostgresServer;
use storage_testkit::servers::redis::RedisServer;

/// A server the test stops (SIGSTOP) and lets go on (SIGCONT).
trait Pausable {
    /// A new backend (its own connections) on the server.
    fn connect(&self) -> Arc<dyn StorageBackend>;
    fn pause(&self);
    fn unpause(&self);
}

struct Redis(RedisServer);

impl Pausable for Redis {
    fn connect(&self) -> Arc<dyn StorageBackend> {
        let config = RedisConfig::new(self.0.url())
            .with_namespace("hang")
            .with_pool_size(8);
        Arc::new(RedisBackend::new(config).unwrap())
    }

    fn pause(&self) {
        self.0.pause();
    }

    fn unpause(&self) {
        self.0.unpause();
    }
}

struct Postgres(PostgresServer);

impl Pausable for Postgres {
    fn connect(&self) -> Arc<dyn StorageBackend> {
        let config = PostgresConfig::from_url(self.0.url())
            .with_namespace("hang")
            .with_pool_size(8)
            .with_timeouts(
                Duration::from_millis(500),
                Duration::from_millis(500),
                Duration::from_secs(5),
            );
        Arc::new(PostgresBackend::new(config).unwrap())
    }

    fn pause(&self) {
        self.0.pause();
    }

    fn unpause(&self) {
        self.0.unpause();
    }
}

/// Operations of the first phase (the hang in its middle).
const FIRST_PHASE_OPS: u64 = 1_500;
/// Operations before the server is stopped.
const PAUSE_AT: u64 = 400;
/// Operations before it is let go on.
const UNPAUSE_AT: u64 = 1_100;
/// Operations of the second phase, run while the server is stopped during the replay.
const SECOND_PHASE_OPS: u64 = 300;
/// The slowest a read may be while the primary hangs.
const READ_BOUND: Duration = Duration::from_secs(5);

async fn primary_hangs_mid_workload(server: &dyn Pausable, label: &str) {
    let started = Instant::now();
    let journal = TempDir::new("journal");
    let fallback_dir = TempDir::new("fallback");
    let harness = Harness {
        adjust: |settings| {
            settings.attempt_timeout_ms = 200;
            settings.write_attempt_timeout_ms = 200;
            settings.failure_threshold = 1;
        },
    };
    let failover = harness
        .open_backend(server.connect(), journal.path(), fallback_dir.path())
        .await;
    let record = Arc::new(Record::default());
    create_sessions(failover.storage.as_ref()).await;
    let workload = tokio::spawn(run_until(
        failover.storage.clone(),
        record.clone(),
        format!("{label}-first"),
        FIRST_PHASE_OPS,
    ));

    wait_for_ops(&record, PAUSE_AT).await;
    server.pause();
    let paused_at = started.elapsed();
    record.primary_killed.store(true, Ordering::SeqCst);
    record.primary_down.store(true, Ordering::SeqCst);
    wait_for_ops(&record, UNPAUSE_AT).await;
    let status = failover.status();
    assert!(
        status.open && status.journaled > 0,
        "the breaker opens and writes are journaled while the primary hangs: {status:?}"
    );
    record.primary_down.store(false, Ordering::SeqCst);
    server.unpause();
    let unpaused_at = started.elapsed();
    workload.await.unwrap();

    // Stopped once more while the journal is replayed (if the replay has not finished by
    // the time it starts): the replay waits, the breaker stays open, operations go on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while failover.status().replayed == 0 && failover.status().open && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during_replay = failover.status();
    server.pause();
    record.primary_down.store(true, Ordering::SeqCst);
    let second = tokio::spawn(run_until(
        failover.storage.clone(),
        record.clone(),
        format!("{label}-second"),
        FIRST_PHASE_OPS + SECOND_PHASE_OPS,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    record.primary_down.store(false, Ordering::SeqCst);
    server.unpause();
    second.await.unwrap();
    assert!(
        failover.wait_until_recovered(RECOVERY_TIMEOUT).await,
        "{:?}",
        failover.status()
    );
    let recovered_at = started.elapsed();

    record.assert_no_failures();
    let status = failover.status();
    let slowest = *record.slowest_outage_read.lock().unwrap();
    let (before, after) = record.acknowledged();
    println!(
        "{label} (paused): {ops} ops, {before} writes acknowledged before the pause, \
         {after} after it, {reads} reads while paused (slowest {slowest:.1?}), {journaled} \
         journaled, {replayed} replayed (replay under way at the second pause: {during_replay:?}); \
         paused at {paused_at:.1?}, let go on at {unpaused_at:.1?}, recovered at {recovered_at:.1?}",
        ops = record.ops.load(Ordering::SeqCst),
        reads = record.outage_reads.load(Ordering::SeqCst),
        journaled = status.journaled,
        replayed = status.replayed,
    );
    assert!(record.outage_reads.load(Ordering::SeqCst) > 0);
    assert!(
        slowest <= READ_BOUND,
        "a read took {slowest:?} while the primary hung"
    );
    assert!(before > 0 && after > 0);
    assert!(status.replayed > 0 && status.refused == 0, "{status:?}");
    assert_primary_holds(server.connect().as_ref(), &record).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_primary_stopped_with_sigstop_serves_from_the_fallback_and_recovers() {
    let server = Redis(RedisServer::durable());
    primary_hangs_mid_workload(&server, "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_primary_stopped_with_sigstop_serves_from_the_fallback_and_recovers() {
    let server = Postgres(PostgresServer::durable());
    primary_hangs_mid_workload(&server, "postgres").await;
}

//! A master demoted to a replica under the pool, as a failover leaves the old master.
//!
//! A write it refuses (`READONLY`) is a temporary `Backend` error that says why. The pooled
//! connections opened before that refusal are not handed out again: the next write opens
//! a new connection, which a proxy (standing in for the DNS name a failover re-points, as
//! managed Redis services do) now leads to the new master. Before, the pool kept handing
//! out connections to the old master (its recycling PING still succeeds on a replica), and
//! every write failed until the process restarted.

use deadpool_redis::redis;
use storage_core::prelude::*;
use storage_core::{ErrorKind, NewSession, StorageError};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::scenarios::demotion;
use storage_testkit::servers::proxy::SwitchProxy;
use storage_testkit::servers::redis::RedisServer;

fn backend_at(url: String) -> RedisBackend {
    RedisBackend::new(
        RedisConfig::new(url)
            .with_namespace("demoted")
            .with_pool_size(4),
    )
    .unwrap()
}

fn assert_replica_refusal(err: &StorageError) {
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.is_temporary(),
        "a replica's refusal is temporary: {err}"
    );
    assert!(err.to_string().contains("replica"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_pool_leaves_the_demoted_master() {
    let old_master = RedisServer::start();
    let new_master = RedisServer::start();
    let proxy = SwitchProxy::to(old_master.port());
    let backend = backend_at(format!("redis://127.0.0.1:{}", proxy.port()));
    backend.initialize().await.unwrap();
    demotion::fill_pool(&backend, 4).await;

    // The failover: the old master follows the new one; new connections lead to the new one.
    let old = backend_at(old_master.url());
    let () = old
        .raw_query(
            redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(new_master.port()),
        )
        .await
        .unwrap();
    proxy.switch_to(new_master.port());
    demotion::writes_leave_the_demoted_primary(&backend, &backend_at(new_master.url()), "replica")
        .await;
}

/// Connections opened to the server, from its own statistics.
async fn connections_received(backend: &RedisBackend) -> u64 {
    let info: String = backend
        .raw_query(redis::cmd("INFO").arg("stats"))
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A server that stays a replica: every write is refused, reads go on, and the pool does
/// not reopen its connections at each refusal (it did: about one new connection per call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lasting_replica_does_not_churn_the_pool() {
    let master = RedisServer::start();
    let replica = RedisServer::start();
    let backend = backend_at(replica.url());
    backend.initialize().await.unwrap();
    let () = backend
        .raw_query(redis::cmd("REPLICAOF").arg("127.0.0.1").arg(master.port()))
        .await
        .unwrap();
    let observer = backend_at(replica.url());
    let before = connections_received(&observer).await;
    let started = std::time::Instant::now();
    for round in 0..30 {
        let err = backend
            .create_session(NewSession::new(format!("s{round}"), "u"))
            .await
            .unwrap_err();
        assert_replica_refusal(&err);
        let reads: Vec<_> = (0..8).map(|_| backend.get_session("s")).collect();
        for read in futures::future::join_all(reads).await {
            read.unwrap();
        }
    }
    let opened = connections_received(&observer).await - before;
    // A pool of 4 may be reopened once per pause (1 s), plus the observer's own.
    let pauses = started.elapsed().as_secs() + 2;
    assert!(
        opened <= 4 * pauses + 2,
        "{opened} connections opened in {:?} of refused writes",
        started.elapsed()
    );
}

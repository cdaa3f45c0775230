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
use storage_core::{ErrorKind, NewMessage, NewSession, StorageError};
use storage_redis::{RedisBackend, RedisConfig};
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
    backend
        .create_session(NewSession::new("s", "u"))
        .await
        .unwrap();
    // Fill the pool with connections to the old master.
    let warm: Vec<_> = (0..4).map(|_| backend.get_session("s")).collect();
    for read in futures::future::join_all(warm).await {
        read.unwrap();
    }

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

    let err = backend
        .create_session(NewSession::new("s2", "u"))
        .await
        .unwrap_err();
    assert_replica_refusal(&err);
    // The refusal retired every connection to the old master: the next writes land on the
    // new one.
    backend
        .create_session(NewSession::new("s2", "u"))
        .await
        .unwrap_or_else(|err| panic!("the write after the refusal: {err}"));
    for n in 0..4 {
        backend
            .append_message("s2", NewMessage::new("user", format!("m{n}")))
            .await
            .unwrap_or_else(|err| panic!("write {n} after the failover: {err}"));
    }
    let on_new = backend_at(new_master.url());
    let history = on_new.get_conversation_history("s2", 10).await.unwrap();
    assert_eq!(history.len(), 4, "the writes reached the new master");
}

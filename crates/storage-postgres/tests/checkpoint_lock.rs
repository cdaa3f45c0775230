//! Checkpoint puts against the removals of a thread's values (prune, retention, delete,
//! copy) under READ COMMITTED. A removal decides which stored channel values no surviving
//! checkpoint uses, then deletes them; a put that committed in between naming one of
//! them (a value it re-sends finds stored and keeps, `ON CONFLICT DO NOTHING`) would read
//! back without it. So puts hold the thread's advisory lock shared until they commit and
//! removals take it exclusively: a put waits while a removal holds it, a removal waits for
//! the puts under way. The holders here are raw transactions, so the waits are certain;
//! a wait is seen in `pg_locks`, never guessed from a sleep.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage_core::{
    new_checkpoint_id, ChannelVersions, Checkpoint, CheckpointStore, StorageBackend,
};
use storage_postgres::{PostgresBackend, PostgresConfig};
use tokio_postgres::NoTls;

async fn backend(namespace: &str) -> Arc<PostgresBackend> {
    let url = storage_testkit::servers::postgres::postgres_url();
    let b = PostgresBackend::new(PostgresConfig::from_url(url).with_namespace(namespace)).unwrap();
    b.initialize().await.unwrap();
    Arc::new(b)
}

async fn connect() -> tokio_postgres::Client {
    let url = storage_testkit::servers::postgres::postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The key the backend's per-thread advisory lock is taken on.
fn lock_key(b: &PostgresBackend, thread_id: &str) -> String {
    format!("storage-postgres:thread:{}:{thread_id}", b.schema())
}

/// A checkpoint of `thread` whose channel `x` is at `version`; the value is sent.
fn checkpoint(thread: &str, version: &str) -> (Checkpoint, ChannelVersions) {
    let mut checkpoint = Checkpoint::new(thread, "", new_checkpoint_id());
    checkpoint
        .channel_versions
        .insert("x".into(), version.into());
    checkpoint
        .channel_values
        .insert("x".into(), json!({ "x": version }).into());
    let new_versions = checkpoint.channel_versions.clone();
    (checkpoint, new_versions)
}

/// A transaction that holds `thread`'s lock exclusively, as a removal does, until the
/// caller sends `COMMIT` on it.
async fn removal_holding(b: &PostgresBackend, thread: &str) -> tokio_postgres::Client {
    let remover = connect().await;
    remover.batch_execute("BEGIN").await.unwrap();
    remover
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&lock_key(b, thread)],
        )
        .await
        .unwrap();
    remover
}

/// Waits until some transaction waits for the thread's lock in `mode` (`ShareLock` for a
/// put, `ExclusiveLock` for a removal) or `task` has finished without waiting; gives up
/// after 20 seconds. Whether `task` waited is for the caller to check.
async fn until_waiting<T>(
    observer: &tokio_postgres::Client,
    key: &str,
    mode: &str,
    task: &tokio::task::JoinHandle<T>,
) {
    for _ in 0..2_000 {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND mode = $2 AND objsubid = 1 \
                 AND classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid \
                 AND objid = (hashtextextended($1, 0) & 4294967295)::oid",
                &[&key, &mode],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 || task.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_waits_while_a_removal_holds_its_threads_lock() {
    let b = backend("t_ckpt_lock_put").await;
    let remover = removal_holding(&b, "t1").await;
    let (held, held_versions) = checkpoint("t1", "1");
    let put = {
        let b = b.clone();
        tokio::spawn(async move { b.put_checkpoint(held, held_versions).await.unwrap() })
    };
    let observer = connect().await;
    until_waiting(&observer, &lock_key(&b, "t1"), "ShareLock", &put).await;
    assert!(!put.is_finished(), "the put of t1 waits for the lock");
    // Another thread's put does not wait.
    let (other, other_versions) = checkpoint("t2", "1");
    tokio::time::timeout(
        Duration::from_secs(20),
        b.put_checkpoint(other, other_versions),
    )
    .await
    .expect("a put of another thread does not wait")
    .unwrap();
    assert!(!put.is_finished(), "the put of t1 still waits");
    remover.batch_execute("COMMIT").await.unwrap();
    put.await.unwrap();
    let got = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(
        got.checkpoint.channel_values["x"],
        json!({ "x": "1" }).into()
    );
}

/// A batch of puts over several threads (group commit's one statement) takes the lock of
/// every thread it writes: it waits while a removal holds any of them, then stores all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_while_a_removal_holds_any_of_its_threads_locks() {
    let b = backend("t_ckpt_lock_batch").await;
    let remover = removal_holding(&b, "t2").await;
    let batch = vec![
        checkpoint("t1", "1"),
        checkpoint("t3", "1"),
        checkpoint("t2", "1"),
        checkpoint("t1", "2"),
    ];
    let put = {
        let b = b.clone();
        tokio::spawn(async move { b.put_checkpoints(batch).await.unwrap() })
    };
    let observer = connect().await;
    until_waiting(&observer, &lock_key(&b, "t2"), "ShareLock", &put).await;
    assert!(!put.is_finished(), "the batch waits for t2's lock");
    remover.batch_execute("COMMIT").await.unwrap();
    put.await.unwrap();
    for (thread, version) in [("t1", "2"), ("t2", "1"), ("t3", "1")] {
        let got = b.get_checkpoint(thread, "", None).await.unwrap().unwrap();
        assert_eq!(
            got.checkpoint.channel_values["x"],
            json!({ "x": version }).into(),
            "{thread}"
        );
    }
}

/// x at version 1, then 2, then 3, indexed by a prune that keeps them all; then a put
/// under way, as PUT runs it: the thread's lock shared, then a checkpoint newer than every
/// other naming x at version 1, whose value it finds stored and keeps. `remove` keeps the
/// newest checkpoint only: it must wait for the put, index its checkpoint, and keep the
/// value the put named though every indexed checkpoint naming it goes.
async fn a_removal_waits_for_a_put_under_way_and_keeps_the_value_it_names(
    namespace: &str,
    remove: impl FnOnce(Arc<PostgresBackend>) -> tokio::task::JoinHandle<u64>,
) {
    let b = backend(namespace).await;
    for version in ["1", "2", "3"] {
        let (checkpoint, new_versions) = checkpoint("t1", version);
        b.put_checkpoint(checkpoint, new_versions).await.unwrap();
    }
    assert_eq!(b.prune_checkpoints("t1", 100).await.unwrap(), 0);
    let (fork, _) = checkpoint("t1", "1");
    let writer = connect().await;
    writer
        .batch_execute(&format!("SET search_path = \"{}\"; BEGIN", b.schema()))
        .await
        .unwrap();
    writer
        .execute(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))",
            &[&lock_key(&b, "t1")],
        )
        .await
        .unwrap();
    let record = storage_core::wire::encode(&{
        let mut bare = fork.clone();
        bare.channel_values.clear();
        bare
    })
    .unwrap();
    let value = storage_core::wire::encode_value(&fork.channel_values["x"]).unwrap();
    writer
        .execute(
            "INSERT INTO checkpoint_blobs (thread_id, ns, channel, version, value) \
             VALUES ('t1', '', 'x', '1', $1) ON CONFLICT DO NOTHING",
            &[&value],
        )
        .await
        .unwrap();
    writer
        .execute(
            "INSERT INTO checkpoints (thread_id, ns, checkpoint_id, channels, versions, \
             metadata, record) VALUES ('t1', '', $1, ARRAY['x'], ARRAY['1'], '{}', $2)",
            &[&fork.id, &record],
        )
        .await
        .unwrap();
    let removal = remove(b.clone());
    let observer = connect().await;
    until_waiting(&observer, &lock_key(&b, "t1"), "ExclusiveLock", &removal).await;
    let waited = !removal.is_finished();
    writer.batch_execute("COMMIT").await.unwrap();
    let removed = removal.await.unwrap();
    let got = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(got.checkpoint.id, fork.id);
    assert_eq!(
        got.checkpoint.channel_values.get("x"),
        Some(&json!({ "x": "1" }).into()),
        "the value the put named survives the removal"
    );
    assert!(waited, "the removal waits for the put under way");
    // It ran after the put: the fork is the newest, the three older ones go.
    assert_eq!(removed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_waits_for_a_put_under_way_and_keeps_the_value_it_names() {
    a_removal_waits_for_a_put_under_way_and_keeps_the_value_it_names("t_ckpt_lock_prune", |b| {
        tokio::spawn(async move { b.prune_checkpoints("t1", 1).await.unwrap() })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_waits_for_a_put_under_way_and_keeps_the_value_it_names() {
    a_removal_waits_for_a_put_under_way_and_keeps_the_value_it_names("t_ckpt_lock_sweep", |b| {
        tokio::spawn(async move {
            let keep_newest = storage_core::Retention {
                created_before: None,
                keep_last: Some(1),
            };
            b.retain_checkpoints(keep_newest).await.unwrap()
        })
    })
    .await;
}

//! `delete_for_runs` takes no thread lock, so it can race a removal's index step: it waits
//! on the row the index step updated, and must still delete the users rows that step added
//! (its first statement's snapshot predates them; the rows are deleted by a second one).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage_core::{ChannelVersions, Checkpoint, CheckpointStore, StorageBackend};
use storage_postgres::{PostgresBackend, PostgresConfig};
use tokio_postgres::NoTls;

const INDEX_CHECKPOINTS: &str = "\
WITH fresh AS (
    UPDATE checkpoints SET indexed = true
    WHERE thread_id = $1 AND NOT indexed
    RETURNING ns, checkpoint_id, channels, versions
)
INSERT INTO checkpoint_value_users (thread_id, ns, channel, version, checkpoint_id)
SELECT $1, f.ns, v.channel, v.version, f.checkpoint_id
FROM fresh f, unnest(f.channels, f.versions) AS v(channel, version)
ON CONFLICT DO NOTHING";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_runs_racing_an_index_step_leaves_no_users_rows() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let ns = "t_review_race";
    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace(ns)).unwrap();
    b.initialize().await.unwrap();
    let b = Arc::new(b);
    let mut cp = Checkpoint::new("t", "", "cp-1");
    cp.metadata.insert("run_id".into(), json!("r1"));
    cp.channel_versions.insert("a".into(), "1".into());
    cp.channel_values.insert("a".into(), json!(1).into());
    let new: ChannelVersions = cp.channel_versions.clone();
    b.put_checkpoint(cp, new).await.unwrap();

    let (remover, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    remover
        .batch_execute(&format!("SET search_path = {ns}; BEGIN"))
        .await
        .unwrap();
    // A removal's index step, under the thread's lock, not yet committed.
    remover
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("storage-postgres:thread:{}:t", b.schema())],
        )
        .await
        .unwrap();
    remover.execute(INDEX_CHECKPOINTS, &[&"t"]).await.unwrap();
    let delete = {
        let b = b.clone();
        tokio::spawn(async move { b.delete_for_runs(&["r1".into()]).await.unwrap() })
    };
    // Let delete_for_runs take its snapshot and wait on the row lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!delete.is_finished(), "delete_for_runs waits for the row");
    remover.batch_execute("COMMIT").await.unwrap();
    assert_eq!(delete.await.unwrap(), 1);
    let left: i64 = remover
        .query_one(
            "SELECT count(*) FROM checkpoint_value_users WHERE thread_id = 't'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let checkpoints: i64 = remover
        .query_one(
            "SELECT count(*) FROM checkpoints WHERE thread_id = 't'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(checkpoints, 0);
    assert_eq!(
        left, 0,
        "users rows of the deleted checkpoint are left behind"
    );
}

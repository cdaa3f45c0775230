//! `checkpoint_value_users` (V6): which checkpoints name which channel value, built by
//! the removals (prune, retention, delete) for the checkpoints stored since the series'
//! last removal, never by puts. Checked here against a recount from the checkpoints'
//! version arrays after every path that adds, replaces, copies or removes checkpoints,
//! and against checkpoints the previous release wrote (before V6, and beside this release
//! during a rolling upgrade, with its own statements planted as raw SQL): every survivor
//! reads whole, and a value only removed checkpoints named is gone.

use std::sync::Arc;

use serde_json::{json, Value};
use storage_core::{ChannelVersions, Checkpoint, StorageBackend};
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::data::{checkpoint, checkpoint_ids, cp_id, json_of, keep_last, versions};

mod previous_release;

/// Users rows that differ from the recount: a pair an indexed checkpoint names without
/// its row, a row no indexed checkpoint's arrays hold (an unindexed one has none).
const MISLISTED: &str = "
    WITH recount AS (
        SELECT c.thread_id, c.ns, v.channel, v.version, c.checkpoint_id
        FROM checkpoints c, unnest(c.channels, c.versions) AS v(channel, version)
        WHERE c.indexed
    ),
    listed AS (SELECT thread_id, ns, channel, version, checkpoint_id FROM checkpoint_value_users)
    SELECT 'missing ' || r::text FROM (SELECT * FROM recount EXCEPT SELECT * FROM listed) r
    UNION ALL
    SELECT 'extra ' || l::text FROM (SELECT * FROM listed EXCEPT SELECT * FROM recount) l";

/// The versions of channel `b` stored for `thread` (namespace ""), sorted.
const STORED_B: &str = "SELECT version FROM checkpoint_blobs \
     WHERE thread_id = $1 AND ns = '' AND channel = 'b' ORDER BY version";

async fn connect(url: &str, namespace: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path = {namespace}"))
        .await
        .unwrap();
    client
}

async fn backend(url: &str, namespace: &str) -> Arc<dyn StorageBackend> {
    let b =
        PostgresBackend::new(PostgresConfig::from_url(url.to_owned()).with_namespace(namespace))
            .unwrap();
    b.initialize().await.unwrap();
    Arc::new(b)
}

async fn assert_listed_exactly(client: &tokio_postgres::Client, step: &str) {
    let wrong: Vec<String> = client
        .query(MISLISTED, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(wrong.is_empty(), "after {step}: {wrong:?}");
}

async fn stored_b(client: &tokio_postgres::Client, thread: &str) -> Vec<String> {
    client
        .query(STORED_B, &[&thread])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Checkpoint `n` of `thread`: `a` at version `a1` ("shared"), `b` at `b{b}` (the number
/// `b`).
fn numbered(thread: &str, n: u32, b: u32) -> Checkpoint {
    let mut cp = checkpoint(
        thread,
        "",
        &cp_id(n),
        &[
            ("a", "a1", json!("shared")),
            ("b", &format!("b{b}"), json!(b)),
        ],
    );
    cp.parent_id = (n > 1).then(|| cp_id(n - 1));
    cp
}

/// The values `numbered(.., b)` names.
fn values_of(b: u32) -> Value {
    json!({"a": "shared", "b": b})
}

/// The versions a put of `numbered(.., n, b)` stores: `b`'s when it is new, `a`'s with
/// the first.
fn new_versions(n: u32, b: u32, b_is_new: bool) -> ChannelVersions {
    let b_version = format!("b{b}");
    let mut pairs = vec![];
    if n == 1 {
        pairs.push(("a", "a1"));
    }
    if b_is_new {
        pairs.push(("b", b_version.as_str()));
    }
    versions(&pairs)
}

async fn put(b: &Arc<dyn StorageBackend>, thread: &str, n: u32, value: u32, new: bool) {
    b.put_checkpoint(numbered(thread, n, value), new_versions(n, value, new))
        .await
        .unwrap();
}

/// Asserts that `thread` holds exactly `expected` (checkpoint number, `b` it names), each
/// read whole.
async fn assert_survivors(b: &Arc<dyn StorageBackend>, thread: &str, expected: &[(u32, u32)]) {
    let ids: Vec<String> = expected.iter().map(|(n, _)| cp_id(*n)).collect();
    assert_eq!(checkpoint_ids(b, thread, "").await, ids, "{thread}");
    for (n, value) in expected {
        let tuple = b
            .get_checkpoint(thread, "", Some(&cp_id(*n)))
            .await
            .unwrap()
            .unwrap();
        let values: serde_json::Map<String, Value> = tuple
            .checkpoint
            .channel_values
            .iter()
            .map(|(channel, value)| (channel.clone(), json_of(value)))
            .collect();
        assert_eq!(Value::Object(values), values_of(*value), "{thread}/{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_table_matches_a_recount_after_every_path() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let namespace = "t_value_users";
    previous_release::schema_at(&url, namespace, 0).await;
    let b = backend(&url, namespace).await;
    let client = connect(&url, namespace).await;
    let t = "users";
    for n in 1..=5 {
        put(&b, t, n, n, true).await;
    }
    assert_listed_exactly(&client, "puts (nothing indexed)").await;
    assert_eq!(b.retain_checkpoints(keep_last(3)).await.unwrap(), 2);
    assert_listed_exactly(&client, "a sweep").await;
    assert_eq!(stored_b(&client, t).await, ["b3", "b4", "b5"]);
    // 6 forks from 3 after 3 was indexed: it names b3 and stores nothing.
    put(&b, t, 6, 3, false).await;
    // 5 stored again naming 4's value instead of its own: its users rows go with its
    // versions, and it is indexed anew by the next removal.
    put(&b, t, 5, 4, false).await;
    assert_listed_exactly(&client, "a fork and a replaced checkpoint").await;
    assert_eq!(b.copy_thread(t, "users-copy").await.unwrap(), 4);
    assert_listed_exactly(&client, "a copy").await;
    // 7 of a run, indexed by a prune that keeps everything, then its run deleted.
    let mut seven = numbered(t, 7, 7);
    seven.metadata = storage_testkit::data::obj(json!({"run_id": "users-run"}));
    b.put_checkpoint(seven, new_versions(7, 7, true))
        .await
        .unwrap();
    assert_eq!(b.prune_checkpoints(t, 100).await.unwrap(), 0);
    assert_listed_exactly(&client, "a prune removing nothing").await;
    assert_eq!(
        b.delete_for_runs(&["users-run".to_owned()]).await.unwrap(),
        1
    );
    assert_listed_exactly(&client, "delete_for_runs").await;
    // 3, 4, 5 (naming b4) and 6 (naming b3): keeping 1 removes 3, 4 and 5, and b3 stays
    // for 6 though every checkpoint that stored or named it before is gone.
    assert_eq!(b.retain_checkpoints(keep_last(1)).await.unwrap(), 3 + 3);
    assert_listed_exactly(&client, "a sweep after a fork").await;
    assert_survivors(&b, t, &[(6, 3)]).await;
    assert_survivors(&b, "users-copy", &[(6, 3)]).await;
    // b5 was named by no survivor once 5 was replaced; b7 went with delete_for_runs, which
    // leaves values (see DELETE_FOR_RUNS).
    assert_eq!(stored_b(&client, t).await, ["b3", "b5", "b7"]);
    b.delete_thread(t).await.unwrap();
    assert_listed_exactly(&client, "delete_thread").await;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM checkpoint_value_users WHERE thread_id = $1",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_survivors(&b, "users-copy", &[(6, 3)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_the_previous_release_are_swept_whole() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let namespace = "t_value_users_compat";
    let t = "old";
    // The previous release's schema (version 5) and its puts: 1..4, each storing its `b`.
    let old = previous_release::schema_at(&url, namespace, 5).await;
    for n in 1..=4 {
        previous_release::put_checkpoint(
            &old,
            namespace,
            &numbered(t, n, n),
            &new_versions(n, n, true),
        )
        .await;
    }
    let b = backend(&url, namespace).await;
    // The first sweep indexes what the previous release stored.
    assert_eq!(b.retain_checkpoints(keep_last(3)).await.unwrap(), 1);
    assert_listed_exactly(&old, "the first sweep").await;
    assert_survivors(&b, t, &[(2, 2), (3, 3), (4, 4)]).await;
    assert_eq!(stored_b(&old, t).await, ["b2", "b3", "b4"]);
    // A rolling upgrade: the previous release still writes. It stores 4 again (indexed by
    // the sweep) naming 2's value, which its statement leaves `indexed` alone for, and
    // adds 5 naming 3's value.
    previous_release::put_checkpoint(
        &old,
        namespace,
        &numbered(t, 4, 2),
        &new_versions(4, 2, false),
    )
    .await;
    previous_release::put_checkpoint(
        &old,
        namespace,
        &numbered(t, 5, 3),
        &new_versions(5, 3, false),
    )
    .await;
    assert_listed_exactly(&old, "the previous release's puts").await;
    // Removing 2 and 3 keeps the values 4 and 5 name now.
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 2);
    assert_listed_exactly(&old, "a sweep after the previous release's puts").await;
    assert_survivors(&b, t, &[(4, 2), (5, 3)]).await;
    // b4 stays: no removed checkpoint named it when 4 stopped naming it.
    assert_eq!(stored_b(&old, t).await, ["b2", "b3", "b4"]);
    // The previous release removes 5 (as its removals did, leaving 5's users rows
    // behind); a fork 6 names b3 again and 7 stores b7. Keeping 1 removes 4 and 6, and
    // with them b2 and b3: the rows 5 left name b3 but keep nothing.
    old.execute(
        "DELETE FROM checkpoints WHERE thread_id = $1 AND checkpoint_id = $2",
        &[&t, &cp_id(5)],
    )
    .await
    .unwrap();
    put(&b, t, 6, 3, false).await;
    put(&b, t, 7, 7, true).await;
    assert_eq!(b.retain_checkpoints(keep_last(1)).await.unwrap(), 2);
    assert_survivors(&b, t, &[(7, 7)]).await;
    assert_eq!(stored_b(&old, t).await, ["b4", "b7"]);
}

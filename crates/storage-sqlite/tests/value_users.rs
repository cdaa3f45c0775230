//! The index of which checkpoints use each channel value (V5's `checkpoint_value_users`,
//! built by removals, never by puts): a removal keeps every value a survivor uses, whether
//! this release or the previous one stored the survivor (before or after the migration,
//! by a new put or by replacing a stored one); the index equals a recount from the rows'
//! `versions` after every path; and a sweep does not read the survivors it keeps.

use std::sync::Arc;

use serde_json::{json, Value};
use storage_core::StorageBackend;
use storage_testkit::data::{checkpoint, checkpoint_ids, cp_id, json_of, keep_last, obj, versions};

mod chain;
mod previous_release;

use chain::{backend, chained, connection, numbered, put_chain};

/// Uses an indexed checkpoint's `versions` names that the index lacks (a value a removal
/// could lose), and index rows no indexed checkpoint's `versions` names (stale).
const MISINDEXED: &str = "
    WITH expected AS (
        SELECT c.thread_id, c.ns, j.key AS channel, j.value AS version, c.checkpoint_id
        FROM \"{ns}.checkpoints\" AS c, json_each(c.versions) AS j WHERE c.indexed = 1),
    actual AS (
        SELECT thread_id, ns, channel, version, checkpoint_id
        FROM \"{ns}.checkpoint_value_users\")
    SELECT 'missing ' || thread_id || '/' || ns || '/' || checkpoint_id || ' ' || channel
        || '=' || version
    FROM (SELECT * FROM expected EXCEPT SELECT * FROM actual)
    UNION ALL
    SELECT 'stale ' || thread_id || '/' || ns || '/' || checkpoint_id || ' ' || channel
        || '=' || version
    FROM (SELECT * FROM actual EXCEPT SELECT * FROM expected)";

/// The values checkpoint `n` of `thread` reads back with, as `{channel: value}`.
async fn values(b: &Arc<dyn StorageBackend>, thread: &str, n: u32) -> Value {
    let tuple = b
        .get_checkpoint(thread, "", Some(&cp_id(n)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{thread}/{n} is gone"));
    Value::Object(
        tuple
            .checkpoint
            .channel_values
            .iter()
            .map(|(channel, value)| (channel.clone(), json_of(value)))
            .collect(),
    )
}

/// The stored values of `thread`, as `channel=version`, sorted.
fn stored_values(conn: &rusqlite::Connection, ns: &str, thread: &str) -> Vec<String> {
    conn.prepare(&format!(
        "SELECT channel || '=' || version FROM \"{ns}.checkpoint_blobs\" \
         WHERE thread_id = ?1 ORDER BY channel, version"
    ))
    .unwrap()
    .query_map([thread], |row| row.get(0))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_the_previous_release_stored_keep_every_value_a_survivor_uses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    let ns = "old";
    // Stored by the previous release (schema version 4): a chain 1..6, and 7 forked from 2
    // (it names 2's `a`, stores nothing).
    {
        let conn = previous_release::schema_at(&path, ns, 4);
        for n in 1..=6 {
            let (cp, new) = chained("t", n);
            previous_release::put_checkpoint(&conn, ns, &cp, &new);
        }
        let fork = numbered("t", 7, &[("a", "a2"), ("s", "s1")]);
        previous_release::put_checkpoint(&conn, ns, &fork, &versions(&[]));
    }
    let b = backend(&path, ns).await;
    // A previous-release process still writes after the migration: 8 stores `a8`.
    let conn = connection(&path);
    let (eight, new) = chained("t", 8);
    previous_release::put_checkpoint(&conn, ns, &eight, &new);

    assert_eq!(b.retain_checkpoints(keep_last(3)).await.unwrap(), 5);
    assert_eq!(
        checkpoint_ids(&b, "t", "").await,
        vec![cp_id(6), cp_id(7), cp_id(8)]
    );
    assert_eq!(values(&b, "t", 6).await, json!({"a": "a6", "s": "s1"}));
    assert_eq!(values(&b, "t", 7).await, json!({"a": "a2", "s": "s1"}));
    assert_eq!(values(&b, "t", 8).await, json!({"a": "a8", "s": "s1"}));
    assert_eq!(
        stored_values(&conn, ns, "t"),
        strings(&["a=a2", "a=a6", "a=a8", "s=s1"])
    );

    // The previous release replaces indexed 7 in place: it now names 6's `a`. Removing 6
    // must keep `a6` (7's index rows still said `a2`), and drop `a2`, which no one names.
    let seven = numbered("t", 7, &[("a", "a6"), ("s", "s1")]);
    previous_release::put_checkpoint(&conn, ns, &seven, &versions(&[]));
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 1);
    assert_eq!(values(&b, "t", 7).await, json!({"a": "a6", "s": "s1"}));
    assert_eq!(values(&b, "t", 8).await, json!({"a": "a8", "s": "s1"}));
    // `a2` was named by no removed checkpoint: only prune's sweep of the thread finds it.
    assert_eq!(b.prune_checkpoints("t", 2).await.unwrap(), 0);
    assert_eq!(
        stored_values(&conn, ns, "t"),
        strings(&["a=a6", "a=a8", "s=s1"])
    );

    // The previous release removes 7 (it knows nothing of the index; 7's index rows stay)
    // and a new 9 names `a6`; removing 8 keeps `a6` for 9, then removing 9 drops it
    // although 7's stale index row still names it.
    conn.execute(
        &format!("DELETE FROM \"{ns}.checkpoints\" WHERE thread_id = 't' AND checkpoint_id = ?1"),
        [cp_id(7)],
    )
    .unwrap();
    let nine = numbered("t", 9, &[("a", "a6"), ("s", "s1")]);
    b.put_checkpoint(nine, versions(&[])).await.unwrap();
    assert_eq!(b.retain_checkpoints(keep_last(1)).await.unwrap(), 1);
    assert_eq!(values(&b, "t", 9).await, json!({"a": "a6", "s": "s1"}));
    let (ten, new) = chained("t", 10);
    b.put_checkpoint(ten, new).await.unwrap();
    assert_eq!(b.retain_checkpoints(keep_last(1)).await.unwrap(), 1);
    assert_eq!(values(&b, "t", 10).await, json!({"a": "a10", "s": "s1"}));
    assert_eq!(stored_values(&conn, ns, "t"), strings(&["a=a10", "s=s1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_or_a_replaced_map_after_indexing_keeps_the_older_values_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fork.db");
    let b = backend(&path, "fork").await;
    put_chain(&b, "t", 1..=20).await;
    // Indexes 6..20.
    assert_eq!(b.retain_checkpoints(keep_last(15)).await.unwrap(), 5);
    // 21 forks from 7; 18 is put again naming 8's `a`.
    let fork = numbered("t", 21, &[("a", "a7"), ("s", "s1")]);
    b.put_checkpoint(fork, versions(&[])).await.unwrap();
    let replaced = numbered("t", 18, &[("a", "a8"), ("s", "s1")]);
    b.put_checkpoint(replaced, versions(&[])).await.unwrap();
    // Removes 6..16, among them 7 and 8.
    assert_eq!(b.retain_checkpoints(keep_last(5)).await.unwrap(), 11);
    assert_eq!(values(&b, "t", 21).await, json!({"a": "a7", "s": "s1"}));
    assert_eq!(values(&b, "t", 18).await, json!({"a": "a8", "s": "s1"}));
    let conn = connection(&path);
    assert_eq!(
        stored_values(&conn, "fork", "t"),
        strings(&["a=a17", "a=a18", "a=a19", "a=a20", "a=a7", "a=a8", "s=s1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_equals_a_recount_after_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recount.db");
    let ns = "recount";
    let b = backend(&path, ns).await;
    let conn = connection(&path);
    let sql = MISINDEXED.replace("{ns}", ns);
    let check = |step: &str| {
        let wrong: Vec<String> = conn
            .prepare(&sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(wrong.is_empty(), "after {step}: {wrong:?}");
    };
    let indexed = |thread: &str| -> i64 {
        conn.query_row(
            &format!(
                "SELECT count(*) FROM \"{ns}.checkpoints\" WHERE thread_id = ?1 AND indexed = 1"
            ),
            [thread],
            |row| row.get(0),
        )
        .unwrap()
    };

    put_chain(&b, "t", 1..=6).await;
    check("put");
    let batch = (7..=8).map(|n| chained("t", n)).collect();
    b.put_checkpoints(batch).await.unwrap();
    check("batch put");
    assert_eq!(indexed("t"), 0, "a put indexes nothing");
    assert_eq!(b.retain_checkpoints(keep_last(6)).await.unwrap(), 2);
    check("retention");
    assert_eq!(indexed("t"), 6);
    let replaced = numbered("t", 5, &[("a", "a3"), ("s", "s1")]);
    b.put_checkpoint(replaced, versions(&[])).await.unwrap();
    check("put replacing an indexed checkpoint");
    assert_eq!(indexed("t"), 5);
    assert_eq!(b.copy_thread("t", "t2").await.unwrap(), 6);
    check("copy");
    // Another namespace of the copy, for prune.
    let child = checkpoint("t2", "child", &cp_id(1), &[("c", "c1", json!("c1"))]);
    b.put_checkpoint(child, versions(&[("c", "c1")]))
        .await
        .unwrap();
    for thread in ["t", "t2"] {
        let (mut cp, new) = chained(thread, 9);
        cp.metadata = obj(json!({"run_id": "r"}));
        b.put_checkpoint(cp, new).await.unwrap();
    }
    assert_eq!(b.delete_for_runs(&["r".to_owned()]).await.unwrap(), 2);
    check("delete_for_runs");
    assert_eq!(b.prune_checkpoints("t2", 2).await.unwrap(), 4);
    check("prune");
    assert_eq!(indexed("t2"), 3);
    assert_eq!(values(&b, "t2", 8).await, json!({"a": "a8", "s": "s1"}));
    b.delete_thread("t").await.unwrap();
    check("delete_thread");
    let left: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM \"{ns}.checkpoint_value_users\" WHERE thread_id = 't'"),
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

/// A sweep removing 10 checkpoints reads the 10 and what was put since the series' last
/// sweep, never the `versions` of the checkpoints it keeps: those of the kept checkpoints
/// indexed by the last sweep are made unreadable (bypassing the trigger that would
/// unindex them), and the sweep still succeeds and keeps their values. A sweep that reads
/// the survivors' maps fails on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_reads_the_versions_of_indexed_survivors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.db");
    let ns = "cost";
    let b = backend(&path, ns).await;
    put_chain(&b, "t", 1..=30).await;
    assert_eq!(b.retain_checkpoints(keep_last(20)).await.unwrap(), 10);
    put_chain(&b, "t", 31..=40).await;
    let conn = connection(&path);
    conn.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS \"{ns}.checkpoints_versions_replaced\""
    ))
    .unwrap();
    // 21..30 survive the next sweep (11..20 go).
    let spoiled = conn
        .execute(
            &format!(
                "UPDATE \"{ns}.checkpoints\" SET versions = 'unreadable' \
                 WHERE thread_id = 't' AND checkpoint_id BETWEEN ?1 AND ?2"
            ),
            [cp_id(21), cp_id(30)],
        )
        .unwrap();
    assert_eq!(spoiled, 10);
    assert_eq!(b.retain_checkpoints(keep_last(20)).await.unwrap(), 10);
    let mut expected: Vec<String> = (21..=40).map(|n| format!("a=a{n}")).collect();
    expected.push("s=s1".to_owned());
    expected.sort();
    assert_eq!(stored_values(&conn, ns, "t"), expected);
}

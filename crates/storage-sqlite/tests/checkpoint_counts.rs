//! The count of each checkpoint series' indexed checkpoints (V6's `checkpoint_series`, kept
//! by triggers): it equals a recount after every path, whoever runs it (this release, or the
//! previous one during a rolling upgrade), a namespace migrated from version 5 counts what
//! the previous release's removals indexed, and a `keep_last` sweep takes how many go from
//! the count instead of stepping over the checkpoints it keeps.

use serde_json::json;
use storage_testkit::data::{checkpoint, checkpoint_ids, cp_id, keep_last, obj, versions};

mod chain;
mod previous_release;

use chain::{backend, chained, connection, put_chain};

/// Series whose stored count differs from a recount of their indexed rows, as
/// `thread/ns stored=.. actual=..` (a series counted 0 with no indexed row is right).
const MISCOUNTED: &str = "
    WITH actual AS (
        SELECT thread_id, ns, count(*) AS n FROM \"{ns}.checkpoints\"
        WHERE indexed <> 0 GROUP BY thread_id, ns),
    stored AS (SELECT thread_id, ns, indexed AS n FROM \"{ns}.checkpoint_series\")
    SELECT s.thread_id || '/' || s.ns || ' stored=' || s.n || ' actual=' || coalesce(a.n, 0)
    FROM stored AS s LEFT JOIN actual AS a ON a.thread_id = s.thread_id AND a.ns = s.ns
    WHERE s.n <> coalesce(a.n, 0)
    UNION ALL
    SELECT a.thread_id || '/' || a.ns || ' stored=none actual=' || a.n
    FROM actual AS a LEFT JOIN stored AS s ON s.thread_id = a.thread_id AND s.ns = a.ns
    WHERE s.thread_id IS NULL";

/// The previous release's index step (V5's `index_series`), verbatim: what its removals
/// ran before they removed.
const PREVIOUS_INDEX_USERS: &str = "INSERT OR IGNORE INTO \"{ns}.checkpoint_value_users\" \
     (thread_id, ns, channel, version, checkpoint_id) \
     SELECT c.thread_id, c.ns, j.key, j.value, c.checkpoint_id \
     FROM \"{ns}.checkpoints\" AS c CROSS JOIN json_each(c.versions) AS j \
     WHERE c.thread_id = ?1 AND c.ns = ?2 AND c.indexed = 0";
const PREVIOUS_MARK_INDEXED: &str = "UPDATE \"{ns}.checkpoints\" SET indexed = 1 \
     WHERE thread_id = ?1 AND ns = ?2 AND indexed = 0";

fn previous_index(conn: &rusqlite::Connection, ns: &str, thread: &str) {
    for sql in [PREVIOUS_INDEX_USERS, PREVIOUS_MARK_INDEXED] {
        conn.execute(&sql.replace("{ns}", ns), (thread, ""))
            .unwrap();
    }
}

fn miscounted(conn: &rusqlite::Connection, ns: &str) -> Vec<String> {
    conn.prepare(&MISCOUNTED.replace("{ns}", ns))
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_equals_a_recount_after_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.db");
    let ns = "count";
    let b = backend(&path, ns).await;
    let conn = connection(&path);
    let check =
        |step: &str| assert_eq!(miscounted(&conn, ns), Vec::<String>::new(), "after {step}");

    put_chain(&b, "t", 1..=6).await;
    let batch = (7..=8).map(|n| chained("t", n)).collect();
    b.put_checkpoints(batch).await.unwrap();
    check("puts");
    assert_eq!(b.retain_checkpoints(keep_last(6)).await.unwrap(), 2);
    check("retention");
    // This release's put replacing an indexed checkpoint's map (V5's trigger unindexes it),
    // then the previous release's.
    let five = checkpoint("t", "", &cp_id(5), &[("a", "a3", json!("a3"))]);
    b.put_checkpoint(five, versions(&[])).await.unwrap();
    check("put replacing an indexed checkpoint");
    previous_index(&conn, ns, "t");
    check("the previous release's index step");
    let six = checkpoint("t", "", &cp_id(6), &[("a", "a4", json!("a4"))]);
    previous_release::put_checkpoint(&conn, ns, &six, &versions(&[]));
    check("the previous release's put replacing an indexed checkpoint");
    // A put repeating a checkpoint's map leaves it indexed.
    let (seven, _) = chained("t", 7);
    b.put_checkpoint(seven, versions(&[])).await.unwrap();
    check("put repeating an indexed checkpoint");
    assert_eq!(b.copy_thread("t", "t2").await.unwrap(), 6);
    let child = checkpoint("t2", "child", &cp_id(1), &[("c", "c1", json!("c1"))]);
    b.put_checkpoint(child, versions(&[("c", "c1")]))
        .await
        .unwrap();
    check("copy");
    for thread in ["t", "t2"] {
        let (mut cp, new) = chained(thread, 9);
        cp.metadata = obj(json!({"run_id": "r"}));
        b.put_checkpoint(cp, new).await.unwrap();
    }
    assert_eq!(b.retain_checkpoints(keep_last(10)).await.unwrap(), 0);
    check("a sweep removing nothing");
    assert_eq!(b.delete_for_runs(&["r".to_owned()]).await.unwrap(), 2);
    check("delete_for_runs");
    assert_eq!(b.prune_checkpoints("t2", 2).await.unwrap(), 4);
    check("prune");
    // The previous release deletes an indexed checkpoint, and a whole thread.
    conn.execute(
        &format!("DELETE FROM \"{ns}.checkpoints\" WHERE thread_id = 't' AND checkpoint_id = ?1"),
        [cp_id(8)],
    )
    .unwrap();
    check("the previous release's delete");
    b.delete_thread("t").await.unwrap();
    check("delete_thread");
    let rows: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM \"{ns}.checkpoint_series\" WHERE thread_id = 't'"),
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "delete_thread leaves no count behind");
    // What retention keeps follows the count exactly.
    assert_eq!(b.retain_checkpoints(keep_last(1)).await.unwrap(), 1);
    check("retention of t2");
    assert_eq!(checkpoint_ids(&b, "t2", "").await, vec![cp_id(8)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_migrated_from_version_5_counts_what_its_removals_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("migrated.db");
    let ns = "migrated";
    {
        // The previous release (version 5) stored 1..10, a removal of it indexed them, and
        // it stored 11 and 12 after.
        let conn = previous_release::schema_at(&path, ns, 5);
        for n in 1..=10 {
            let (cp, new) = chained("t", n);
            previous_release::put_checkpoint(&conn, ns, &cp, &new);
        }
        previous_index(&conn, ns, "t");
        for n in 11..=12 {
            let (cp, new) = chained("t", n);
            previous_release::put_checkpoint(&conn, ns, &cp, &new);
        }
    }
    let b = backend(&path, ns).await;
    let conn = connection(&path);
    assert_eq!(miscounted(&conn, ns), Vec::<String>::new());
    assert_eq!(b.retain_checkpoints(keep_last(5)).await.unwrap(), 7);
    assert_eq!(
        checkpoint_ids(&b, "t", "").await,
        (8..=12).map(cp_id).collect::<Vec<_>>()
    );
    assert_eq!(miscounted(&conn, ns), Vec::<String>::new());
}

/// A `keep_last` sweep takes how many checkpoints go from the count (plus the unindexed
/// ones), never by stepping over the kept ones: with the count planted at 0, a series of
/// 20 indexed and 10 unindexed checkpoints looks like 10, so keeping 20 removes nothing.
/// A sweep that walks the kept ids (the code before V6) removes 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_last_sweep_counts_instead_of_walking_the_kept_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("walk.db");
    let ns = "walk";
    let b = backend(&path, ns).await;
    put_chain(&b, "t", 1..=25).await;
    assert_eq!(b.retain_checkpoints(keep_last(20)).await.unwrap(), 5);
    put_chain(&b, "t", 26..=35).await;
    let conn = connection(&path);
    conn.execute(
        &format!("UPDATE \"{ns}.checkpoint_series\" SET indexed = 0 WHERE thread_id = 't'"),
        [],
    )
    .unwrap();
    assert_eq!(b.retain_checkpoints(keep_last(20)).await.unwrap(), 0);
    assert_eq!(checkpoint_ids(&b, "t", "").await.len(), 30);
}

//! The checkpoint counts retention's `keep_last` trusts (V7): the count deltas of a series
//! sum to its indexed rows after every path that stores, indexes, replaces, copies or
//! removes checkpoints, of this release or of the previous one (version 6, its statements
//! quoted as raw SQL) running beside it, and the migration backfills what that release
//! indexed. A sweep racing `delete_for_runs` (no thread lock) and puts keeps what some
//! serial order of them keeps.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use storage_core::{Checkpoint, StorageBackend};
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::data::{checkpoint, checkpoint_ids, cp_id, keep_last, obj, versions};

mod previous_release;

/// Series whose deltas do not sum to their indexed rows.
const MISCOUNTED: &str = "
    WITH counted AS (
        SELECT thread_id, ns, sum(delta) AS n FROM checkpoint_count_deltas
        GROUP BY thread_id, ns
    ),
    actual AS (
        SELECT thread_id, ns, count(*) FILTER (WHERE indexed) AS n FROM checkpoints
        GROUP BY thread_id, ns
    )
    SELECT thread_id || '/' || ns || ': ' || coalesce(c.n, 0) || ' counted, '
        || coalesce(a.n, 0) || ' indexed'
    FROM counted c FULL JOIN actual a USING (thread_id, ns)
    WHERE coalesce(c.n, 0) <> coalesce(a.n, 0)";

async fn assert_counted(client: &tokio_postgres::Client, step: &str) {
    let wrong: Vec<String> = client
        .query(MISCOUNTED, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(wrong.is_empty(), "after {step}: {wrong:?}");
}

async fn backend(url: &str, namespace: &str) -> Arc<dyn StorageBackend> {
    let b =
        PostgresBackend::new(PostgresConfig::from_url(url.to_owned()).with_namespace(namespace))
            .unwrap();
    b.initialize().await.unwrap();
    Arc::new(b)
}

/// Checkpoint `n` of `(thread, ns)` naming `a` at version `a{v}`, of run `run`.
fn numbered(thread: &str, ns: &str, n: u32, v: u32, run: Option<&str>) -> Checkpoint {
    let mut cp = checkpoint(thread, ns, &cp_id(n), &[("a", &format!("a{v}"), json!(v))]);
    if let Some(run) = run {
        cp.metadata = obj(json!({ "run_id": run }));
    }
    cp
}

async fn put(b: &Arc<dyn StorageBackend>, thread: &str, ns: &str, n: u32, v: u32) {
    let cp = numbered(thread, ns, n, v, None);
    let new = versions(&[("a", &format!("a{v}"))]);
    b.put_checkpoint(cp, new).await.unwrap();
}

async fn old_put(old: &tokio_postgres::Client, schema: &str, thread: &str, n: u32, v: u32) {
    let cp = numbered(thread, "", n, v, None);
    let new = versions(&[("a", &format!("a{v}"))]);
    previous_release::put_checkpoint(old, schema, &cp, &new).await;
}

async fn ids(b: &Arc<dyn StorageBackend>, thread: &str, ns: &str) -> Vec<String> {
    checkpoint_ids(b, thread, ns).await
}

fn numbers(ns: impl IntoIterator<Item = u32>) -> Vec<String> {
    ns.into_iter().map(cp_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_a_recount_after_every_path() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let schema = "t_checkpoint_counts";
    let t = "t";
    // The previous release (version 6) stores 1..6 and 1..3 in `sub`, and its sweep
    // indexes `""` and removes 1 and 2.
    let mut old = previous_release::schema_at(&url, schema, 6).await;
    for n in 1..=6 {
        old_put(&old, schema, t, n, n).await;
    }
    for n in 1..=3 {
        let cp = numbered(t, "sub", n, n, None);
        previous_release::put_checkpoint(&old, schema, &cp, &versions(&[("a", "a1")])).await;
    }
    let removed = previous_release::v6_remove_before(&mut old, schema, t, "", &cp_id(3)).await;
    assert_eq!(removed, 2);
    let b = backend(&url, schema).await;
    assert_counted(&old, "the migration's backfill").await;
    for n in 7..=9 {
        put(&b, t, "", n, n).await;
    }
    assert_counted(&old, "puts").await;
    // 3..9 by count: the backfilled 4 and the unindexed 3.
    assert_eq!(b.retain_checkpoints(keep_last(5)).await.unwrap(), 2);
    assert_eq!(ids(&b, t, "").await, numbers(5..=9));
    assert_counted(&old, "a sweep").await;
    // Replacing the versions of indexed 8 (this release) and 9 (the previous one)
    // unindexes them.
    put(&b, t, "", 8, 80).await;
    old_put(&old, schema, t, 9, 90).await;
    assert_counted(&old, "checkpoints stored again with other versions").await;
    assert_eq!(b.retain_checkpoints(keep_last(4)).await.unwrap(), 1);
    assert_eq!(ids(&b, t, "").await, numbers(6..=9));
    assert_counted(&old, "a sweep after replaced checkpoints").await;
    assert_eq!(b.copy_thread(t, "copy").await.unwrap(), 4 + 3);
    assert_counted(&old, "a copy").await;
    // 10 of a run, indexed by a prune keeping everything, then its run deleted.
    let ten = numbered(t, "", 10, 10, Some("run"));
    b.put_checkpoint(ten, versions(&[("a", "a10")]))
        .await
        .unwrap();
    assert_eq!(b.prune_checkpoints(t, 100).await.unwrap(), 0);
    assert_counted(&old, "a prune removing nothing").await;
    assert_eq!(b.delete_for_runs(&["run".to_owned()]).await.unwrap(), 1);
    assert_counted(&old, "delete_for_runs").await;
    assert_eq!(b.prune_checkpoints(t, 2).await.unwrap(), 2 + 1);
    assert_eq!(ids(&b, t, "").await, numbers(8..=9));
    assert_eq!(ids(&b, t, "sub").await, numbers(2..=3));
    assert_counted(&old, "a prune").await;
    // The previous release beside this one: its puts, then its sweep removing 8.
    old_put(&old, schema, t, 11, 11).await;
    old_put(&old, schema, t, 12, 12).await;
    let removed = previous_release::v6_remove_before(&mut old, schema, t, "", &cp_id(9)).await;
    assert_eq!(removed, 1);
    assert_counted(&old, "the previous release's puts and sweep").await;
    // 9, 11, 12 and the copy's 6..9 and 1..3 in `sub`, all by count.
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 1 + 2 + 1);
    assert_eq!(ids(&b, t, "").await, numbers([11, 12]));
    assert_eq!(ids(&b, "copy", "").await, numbers(8..=9));
    assert_eq!(ids(&b, "copy", "sub").await, numbers(2..=3));
    assert_counted(&old, "a sweep after the previous release's").await;
    // The removals fold a series' deltas into one row.
    let deltas: i64 = old
        .query_one(
            "SELECT count(*) FROM checkpoint_count_deltas WHERE thread_id = $1 AND ns = ''",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert!(deltas <= 1, "{deltas} delta rows after a sweep");
    old.query_one(previous_release::V6_DELETE_THREAD, &[&"copy"])
        .await
        .unwrap();
    assert_counted(&old, "the previous release's delete_thread").await;
    assert_eq!(b.delete_thread(t).await.unwrap(), 2 + 2);
    assert_counted(&old, "delete_thread").await;
    let left: i64 = old
        .query_one(
            "SELECT count(*) FROM checkpoint_count_deltas WHERE thread_id = $1",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "delete_thread leaves count deltas");
}

/// What a sweep keeping `keep` leaves of `1..=total` (checkpoint numbers) when it runs
/// after the first `put` of them were stored, before or after the run `run` is deleted,
/// and the rest are stored after it.
fn serial_outcomes(total: u32, puts_after: u32, run: &BTreeSet<u32>, keep: usize) -> Vec<Vec<u32>> {
    let mut outcomes = Vec::new();
    for stored in (total - puts_after)..=total {
        let later = stored + 1..=total;
        for run_first in [true, false] {
            let visible: Vec<u32> = (1..=stored)
                .filter(|n| !run_first || !run.contains(n))
                .collect();
            let mut kept: Vec<u32> = visible[visible.len().saturating_sub(keep)..]
                .iter()
                .copied()
                .filter(|n| !run.contains(n))
                .collect();
            kept.extend(later.clone());
            outcomes.push(kept);
        }
    }
    outcomes
}

/// Runs `$op` again after a temporary error, as a caller would. A sweep and
/// `delete_for_runs` can deadlock (PostgreSQL aborts one of them, 40P01, a temporary
/// error): the sweep's index step locks the series' unindexed rows and its removal then
/// the removed ones, while `delete_for_runs` locks its run's rows in its own order. That
/// predates the counts (the code before V7 deadlocked in 2 of 10 runs of this test); the
/// counts' triggers only insert, so they add no lock to wait for.
macro_rules! retried {
    ($op:expr) => {{
        let mut tries = 0;
        loop {
            match $op.await {
                Ok(value) => break value,
                Err(err) if err.is_temporary() && tries < 10 => tries += 1,
                Err(err) => panic!("{err}"),
            }
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_racing_delete_for_runs_and_puts_keeps_a_serial_outcome() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let schema = "t_checkpoint_counts_race";
    let client = previous_release::schema_at(&url, schema, 0).await;
    let b = backend(&url, schema).await;
    let (first, total, keep) = (40, 50, 10);
    for round in 0..8 {
        let t = format!("race-{round}");
        let run = format!("run-{round}");
        // Every third of the first 40 belongs to the run; the first 20 are indexed.
        let members: BTreeSet<u32> = (1..=first).filter(|n| n % 3 == 0).collect();
        for n in 1..=first {
            let r = members.contains(&n).then_some(run.as_str());
            let cp = numbered(&t, "", n, n, r);
            b.put_checkpoint(cp, versions(&[("a", &format!("a{n}"))]))
                .await
                .unwrap();
            if n == 20 {
                b.prune_checkpoints(&t, 100).await.unwrap();
            }
        }
        let sweep = {
            let b = b.clone();
            tokio::spawn(async move { retried!(b.retain_checkpoints(keep_last(keep as u64))) })
        };
        let delete = {
            let (b, run) = (b.clone(), run.clone());
            tokio::spawn(async move { retried!(b.delete_for_runs(std::slice::from_ref(&run))) })
        };
        for n in first + 1..=total {
            put(&b, &t, "", n, n).await;
        }
        sweep.await.unwrap();
        // How many it finds depends on whether the sweep removed them first.
        delete.await.unwrap();
        let survivors = ids(&b, &t, "").await;
        let outcomes = serial_outcomes(total, total - first, &members, keep);
        assert!(
            outcomes
                .iter()
                .any(|o| numbers(o.iter().copied()) == survivors),
            "round {round}: {survivors:?} is no serial outcome"
        );
        assert_counted(&client, &format!("round {round}")).await;
    }
}

/// The counts add no lock between a removal and `delete_for_runs`: while a removal's index
/// step (which counts the rows it indexes) is uncommitted, `delete_for_runs` deleting an
/// indexed checkpoint of the same series (which counts it too) completes. A counter row
/// updated by both would make it wait, and deadlock once the removal went on to delete
/// that checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_runs_never_waits_for_a_removals_count() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let schema = "t_checkpoint_counts_wait";
    let mut remover = previous_release::schema_at(&url, schema, 0).await;
    let b = backend(&url, schema).await;
    let t = "wait";
    let one = numbered(t, "", 1, 1, Some("run"));
    b.put_checkpoint(one, versions(&[("a", "a1")]))
        .await
        .unwrap();
    assert_eq!(b.prune_checkpoints(t, 100).await.unwrap(), 0);
    put(&b, t, "", 2, 2).await;
    let tx = remover.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("storage-postgres:thread:{schema}:{t}")],
    )
    .await
    .unwrap();
    let indexed = tx
        .execute(previous_release::V6_INDEX_CHECKPOINTS, &[&t, &""])
        .await
        .unwrap();
    assert_eq!(indexed, 1, "the index step lists 2's one value");
    let delete = {
        let b = b.clone();
        tokio::spawn(async move { b.delete_for_runs(&["run".to_owned()]).await })
    };
    let deleted = tokio::time::timeout(std::time::Duration::from_secs(10), delete)
        .await
        .expect("delete_for_runs waits for the removal")
        .unwrap()
        .unwrap();
    assert_eq!(deleted, 1);
    tx.commit().await.unwrap();
    assert_counted(&remover, "a removal beside delete_for_runs").await;
}

/// A sweep with an age limit alone walks from the oldest checkpoint and never counts the
/// series (for a series never removed from, the count reads every row): with a count row
/// planted whose sum overflows `bigint`, a sweep finding nothing expired succeeds where a
/// `keep_last` sweep, which must count, fails; once the row is gone, the age sweep removes
/// what expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_limit_alone_never_counts_the_series() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let schema = "t_checkpoint_counts_age";
    let admin = previous_release::schema_at(&url, schema, 0).await;
    let b = backend(&url, schema).await;
    for n in 1..=5 {
        put(&b, "age", "", n, n).await;
    }
    admin
        .batch_execute(
            "INSERT INTO checkpoint_count_deltas (thread_id, ns, delta) \
             VALUES ('age', '', 9223372036854775807), ('age', '', 9223372036854775807)",
        )
        .await
        .unwrap();
    let long_ago = storage_core::Retention {
        created_before: Some(storage_core::time::from_micros(0)),
        keep_last: None,
    };
    assert_eq!(b.retain_checkpoints(long_ago).await.unwrap(), 0);
    assert!(b.retain_checkpoints(keep_last(2)).await.is_err());
    admin
        .batch_execute("DELETE FROM checkpoint_count_deltas WHERE delta > 1000000")
        .await
        .unwrap();
    let everything = storage_core::Retention {
        created_before: Some(storage_core::time::now()),
        keep_last: None,
    };
    assert_eq!(b.retain_checkpoints(everything).await.unwrap(), 4);
    assert_eq!(ids(&b, "age", "").await, numbers([5]));
    assert_counted(&admin, "an age sweep").await;
}

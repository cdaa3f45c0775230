//! Removing checkpoints: prune, retention's range removal, `delete_thread` and
//! `delete_for_runs`, with the `checkpoint_value_users` index step (V6) and the count
//! deltas (V7) they keep. Every removal but `delete_for_runs` holds the thread's exclusive
//! lock ([`lock_thread`]).

use storage_core::validate::{validate_id, validate_ids, validate_limit};
use storage_core::StorageError;
use tokio_postgres::types::ToSql;

use crate::backend::{to_i64, to_u64, PostgresBackend};
use crate::checkpoints::lock_thread;
use crate::error::PgResult;
use crate::sql::Sql;

const DELETE_THREAD: &str = "\
WITH c AS (DELETE FROM checkpoints WHERE thread_id = $1 RETURNING 1),
b AS (DELETE FROM checkpoint_blobs WHERE thread_id = $1),
w AS (DELETE FROM checkpoint_writes WHERE thread_id = $1),
u AS (DELETE FROM checkpoint_value_users WHERE thread_id = $1)
SELECT count(*) FROM c";

/// Lists the users of every value that the unindexed checkpoints of thread `$1` (of its
/// namespace `$2`, or of all when NULL) name, and marks them indexed: afterwards, under
/// the thread's lock, `checkpoint_value_users` names every checkpoint using a value.
/// The rows a removal indexes were added since the series' last removal (or written by
/// a writer that does not index: the previous release, a copy), so this costs what was
/// added, found through the partial index on unindexed rows. A users row left by a
/// checkpoint the previous release deleted and that was stored again may already be
/// there (`ON CONFLICT DO NOTHING`).
const INDEX_CHECKPOINTS: &str = "\
WITH fresh AS (
    UPDATE checkpoints SET indexed = true
    WHERE thread_id = $1 AND ($2::text IS NULL OR ns = $2) AND NOT indexed
    RETURNING ns, checkpoint_id, channels, versions
)
INSERT INTO checkpoint_value_users (thread_id, ns, channel, version, checkpoint_id)
SELECT $1, f.ns, v.channel, v.version, f.checkpoint_id
FROM fresh f, unnest(f.channels, f.versions) AS v(channel, version)
ON CONFLICT DO NOTHING";

/// What every removal of checkpoints does after its `doomed` CTE, which deletes them and
/// returns their `thread_id, ns, checkpoint_id, channels, versions`: removes their
/// pending writes.
macro_rules! removed_writes {
    () => {
        "
writes AS (
    DELETE FROM checkpoint_writes w USING doomed d
    WHERE w.thread_id = d.thread_id AND w.ns = d.ns AND w.checkpoint_id = d.checkpoint_id
)"
    };
}

/// After [`removed_writes!`], in a removal that holds the thread's lock: removes the
/// removed checkpoints' rows in `checkpoint_value_users` (`named`: each removed
/// checkpoint's (channel, version) pairs, looked up by the full key). The lock is what
/// makes the statement's snapshot hold every users row of them: [`DELETE_FOR_RUNS`],
/// which takes no lock, deletes them in a statement of its own instead.
macro_rules! removed_users {
    () => {
        ",
named AS (
    SELECT d.thread_id, d.ns, d.checkpoint_id, v.channel, v.version
    FROM doomed d, unnest(d.channels, d.versions) AS v(channel, version)
),
unlisted AS (
    DELETE FROM checkpoint_value_users u USING named n
    WHERE u.thread_id = n.thread_id AND u.ns = n.ns AND u.channel = n.channel
      AND u.version = n.version AND u.checkpoint_id = n.checkpoint_id
)"
    };
}

/// After [`removed_users!`], in a statement following [`INDEX_CHECKPOINTS`] under the
/// thread's lock: deletes each value a removed checkpoint named that no surviving
/// checkpoint uses. Only the removed checkpoints' values are candidates, and each is
/// looked up in `checkpoint_value_users` by its key, stopping at the first user that
/// survives: the statement's snapshot still holds the removed checkpoints and their users
/// rows, so those are passed over (at most as many as were removed), and so are rows of
/// checkpoints that are gone (left by the previous release's removals). Nothing here
/// reads the survivors' version arrays.
macro_rules! unused_values {
    () => {
        ",
blobs AS (
    DELETE FROM checkpoint_blobs b
    USING (SELECT DISTINCT thread_id, ns, channel, version FROM named) c
    WHERE b.thread_id = c.thread_id AND b.ns = c.ns AND b.channel = c.channel
      AND b.version = c.version
      AND NOT EXISTS (
        SELECT 1 FROM checkpoint_value_users u
        JOIN checkpoints s ON s.thread_id = u.thread_id AND s.ns = u.ns
            AND s.checkpoint_id = u.checkpoint_id
        WHERE u.thread_id = c.thread_id AND u.ns = c.ns AND u.channel = c.channel
          AND u.version = c.version
          AND NOT EXISTS (SELECT 1 FROM doomed d WHERE d.thread_id = u.thread_id
              AND d.ns = u.ns AND d.checkpoint_id = u.checkpoint_id))
)"
    };
}

/// Keeps the newest `$2` (at least 1) per namespace of thread `$1`, with
/// [`removed_writes!`], [`removed_users!`] and [`unused_values!`]: each namespace's `$2`-th newest id is found
/// by ranking its ids (an index-only scan), and the checkpoints below it are one
/// primary-key range.
const PRUNE: &str = concat!(
    "\
WITH cutoffs AS (
    SELECT ns, checkpoint_id AS keep_from FROM (
        SELECT ns, checkpoint_id,
               row_number() OVER (PARTITION BY ns ORDER BY checkpoint_id DESC) AS rank
        FROM checkpoints WHERE thread_id = $1
    ) ranked WHERE rank = $2
),
doomed AS (
    DELETE FROM checkpoints c USING cutoffs k
    WHERE c.thread_id = $1 AND c.ns = k.ns AND c.checkpoint_id < k.keep_from
    RETURNING c.thread_id, c.ns, c.checkpoint_id, c.channels, c.versions
),",
    removed_writes!(),
    removed_users!(),
    unused_values!(),
    "
SELECT count(*) FROM doomed"
);

/// [`PRUNE`] for one namespace's oldest-first prefix (retention): removes the checkpoints
/// of `($1, $2)` below the id `$3`.
const REMOVE_BEFORE: &str = concat!(
    "\
WITH doomed AS (
    DELETE FROM checkpoints WHERE thread_id = $1 AND ns = $2 AND checkpoint_id < $3
    RETURNING thread_id, ns, checkpoint_id, channels, versions
),",
    removed_writes!(),
    removed_users!(),
    unused_values!(),
    "
SELECT count(*) FROM doomed"
);

/// Folds the count deltas (V7) of thread `$1` (of its namespace `$2`, or of all when NULL)
/// into one row per series, dropping a zero sum, so a sweep's count reads a handful of
/// rows. Run under the thread's lock, after the removal: only folds and thread deletes
/// (under the same lock) delete deltas, so the rows this deletes are not locked by anyone,
/// and a delta committing meanwhile (a `delete_for_runs`) is not in the snapshot, stays,
/// and is counted with the folded sum.
const FOLD_COUNTS: &str = "\
WITH folded AS (
    DELETE FROM checkpoint_count_deltas WHERE thread_id = $1 AND ($2::text IS NULL OR ns = $2)
    RETURNING ns, delta
)
INSERT INTO checkpoint_count_deltas (thread_id, ns, delta)
SELECT $1, ns, sum(delta) FROM folded GROUP BY ns HAVING sum(delta) <> 0";

/// Drops the count deltas of thread `$1` after [`DELETE_THREAD`], in a statement of its
/// own: the delete waited for every transaction holding one of the thread's rows (a
/// `delete_for_runs`) to commit, so this statement's snapshot holds their deltas, and
/// under the thread's lock no row of the thread is stored meanwhile: they sum to zero.
const DROP_COUNTS: &str = "DELETE FROM checkpoint_count_deltas WHERE thread_id = $1";

/// Removes the checkpoints of the runs `$1` with [`removed_writes!`] and returns them with
/// their (channel, version) pairs, for [`UNLIST_USERS`]; their values stay (this takes no
/// thread's lock, so it cannot tell which values stay unused).
const DELETE_FOR_RUNS: &str = concat!(
    "\
WITH doomed AS (
    DELETE FROM checkpoints WHERE run_id = ANY($1::text[])
    RETURNING thread_id, ns, checkpoint_id, channels, versions
),",
    removed_writes!(),
    "
SELECT thread_id, ns, checkpoint_id, channels, versions FROM doomed"
);

/// Deletes the `checkpoint_value_users` rows of checkpoints [`DELETE_FOR_RUNS`] removed, by
/// their full keys, in a statement of its own: a removal that indexed one of them and
/// committed while `DELETE_FOR_RUNS` waited on its row has users rows that statement's
/// snapshot does not hold, and a later statement's does.
const UNLIST_USERS: &str = "\
DELETE FROM checkpoint_value_users u
USING unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS n(thread_id, ns, checkpoint_id, channel, version)
WHERE u.thread_id = n.thread_id AND u.ns = n.ns AND u.channel = n.channel
  AND u.version = n.version AND u.checkpoint_id = n.checkpoint_id";

/// Removes the checkpoints of `(thread, namespace)` below `end` with their pending writes
/// and the values no later checkpoint names ([`REMOVE_BEFORE`]); how many it removed.
/// The caller holds the thread's lock ([`lock_thread`]).
pub(crate) async fn remove_before(
    tx: &impl Sql,
    thread_id: &str,
    namespace: &str,
    end: &str,
) -> PgResult<u64> {
    remove_indexed(
        tx,
        thread_id,
        Some(namespace),
        REMOVE_BEFORE,
        &[&thread_id, &namespace, &end],
    )
    .await
}

/// Planner settings for the rest of a removal's transaction. The removal's CTEs are sized
/// by estimates (`doomed`: a third of the namespace for `checkpoint_id < $3` in a generic
/// plan; `named`: ten pairs per checkpoint), hundreds or thousands of rows where a sweep
/// removes ten, and the `indexed` column's statistics lag the sweeps that set it; with
/// them the planner hashed the users, blobs and writes tables whole (sequential scans)
/// and scanned `checkpoints` for the unindexed rows: 66 ms per sweep at 10,000
/// checkpoints, against 0.8 ms as nested loops of key lookups (EXPLAIN ANALYZE). Every
/// step of a removal is a lookup by key, so those plans are the ones wanted whatever the
/// statistics say; `set_config(.., true)` ends with the transaction.
const KEY_LOOKUP_PLANS: &str = "SELECT set_config('enable_seqscan', 'off', true), \
     set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)";

/// Takes the thread's lock exclusively ([`lock_thread`](crate::checkpoints::lock_thread))
/// and sets [`KEY_LOOKUP_PLANS`] for the rest of the transaction, in one round trip: a
/// retention sweep's probe counts the series' unindexed rows through the partial index,
/// which stale statistics on `indexed` made the planner replace by a scan of the table.
pub(crate) async fn lock_for_removal(tx: &impl Sql, schema: &str, thread_id: &str) -> PgResult<()> {
    let plans = tx.statement(KEY_LOOKUP_PLANS).await?;
    let lock = tx.statement(crate::checkpoints::LOCK_THREAD).await?;
    let key = crate::checkpoints::thread_lock_key(schema, thread_id);
    futures::future::try_join(tx.run_query(&plans, &[]), tx.run_query(&lock, &[&key])).await?;
    Ok(())
}

/// Runs [`INDEX_CHECKPOINTS`] for the thread (one namespace or all), then `removal`, a
/// statement returning how many checkpoints it removed, which relies on the index being
/// complete; both planned under [`KEY_LOOKUP_PLANS`]. The caller holds the thread's lock.
/// Then [`FOLD_COUNTS`]. The four statements are sent before the first answer is awaited:
/// tokio-postgres sends a prepared statement when its future is first polled, and
/// `try_join4` polls them in order, so the server runs them in that order, in one round
/// trip.
async fn remove_indexed(
    tx: &impl Sql,
    thread_id: &str,
    namespace: Option<&str>,
    removal: &str,
    params: &[&(dyn ToSql + Sync)],
) -> PgResult<u64> {
    let plans = tx.statement(KEY_LOOKUP_PLANS).await?;
    let index = tx.statement(INDEX_CHECKPOINTS).await?;
    let removal = tx.statement(removal).await?;
    let fold = tx.statement(FOLD_COUNTS).await?;
    let (_, _, rows, _) = futures::future::try_join4(
        tx.run_query(&plans, &[]),
        tx.run_execute(&index, &[&thread_id, &namespace]),
        tx.run_query(&removal, params),
        tx.run_execute(&fold, &[&thread_id, &namespace]),
    )
    .await?;
    let removed = rows
        .first()
        .map(|row| row.get(0))
        .ok_or_else(|| StorageError::backend("a removal returned no count"))?;
    Ok(to_u64(removed))
}

impl PostgresBackend {
    pub(crate) async fn delete_thread_op(&self, thread_id: &str) -> PgResult<u64> {
        validate_id("thread id", thread_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_thread(&tx, self.schema(), thread_id).await?;
        let deleted = tx.one(DELETE_THREAD, &[&thread_id]).await?.get(0);
        tx.exec(DROP_COUNTS, &[&thread_id]).await?;
        tx.commit().await?;
        Ok(to_u64(deleted))
    }

    pub(crate) async fn prune_checkpoints_op(
        &self,
        thread_id: &str,
        keep_last: usize,
    ) -> PgResult<u64> {
        validate_id("thread id", thread_id)?;
        validate_limit("checkpoints to keep", keep_last)?;
        let keep = to_i64(keep_last as u64);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // After the lock, the index and PRUNE's snapshot hold every put of the thread that
        // ever committed, and no put commits before it has: what it finds unused stays
        // unused.
        lock_thread(&tx, self.schema(), thread_id).await?;
        let pruned = remove_indexed(&tx, thread_id, None, PRUNE, &[&thread_id, &keep]).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    pub(crate) async fn delete_for_runs_op(&self, run_ids: &[String]) -> PgResult<u64> {
        validate_ids("run id", run_ids.iter().map(String::as_str))?;
        if run_ids.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let removed = tx.rows(DELETE_FOR_RUNS, &[&run_ids]).await?;
        // One entry per (removed checkpoint, channel it names), as UNLIST_USERS' columns.
        let (mut threads, mut namespaces, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        let (mut channels, mut versions) = (Vec::<String>::new(), Vec::<String>::new());
        for row in &removed {
            let (thread, namespace, id): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let named: Vec<String> = row.get(3);
            threads.extend(std::iter::repeat_n(thread, named.len()));
            namespaces.extend(std::iter::repeat_n(namespace, named.len()));
            ids.extend(std::iter::repeat_n(id, named.len()));
            channels.extend(named);
            versions.extend(row.get::<_, Vec<String>>(4));
        }
        if !channels.is_empty() {
            tx.one(KEY_LOOKUP_PLANS, &[]).await?;
            tx.exec(
                UNLIST_USERS,
                &[&threads, &namespaces, &ids, &channels, &versions],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(removed.len() as u64)
    }
}

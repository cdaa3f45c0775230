//! Checkpoints, channel blobs and pending writes.
//!
//! A checkpoint row holds the wire-encoded checkpoint without its channel values, the
//! channel versions as two parallel arrays, and the metadata as `jsonb` for list filters.
//! Channel values live in `checkpoint_blobs`, one row per (thread, namespace, channel,
//! version); reading a checkpoint looks its version arrays up in that table by the full
//! key, so it never touches the values of other checkpoints (see `checkpoint_read`).

use std::collections::BTreeMap;

use serde_json::Value;
use storage_core::checkpoint::{
    indexed_writes, validate_get_checkpoint, validate_put_writes, validate_puts,
};
use storage_core::validate::{validate_id, validate_ids, validate_limit};
use storage_core::{
    wire, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointSearch,
    CheckpointTuple, Page, PendingWrite, StorageError,
};
use tokio_postgres::types::ToSql;

use crate::backend::{to_i64, to_u64, PostgresBackend};
use crate::checkpoint_read::Selection;
use crate::error::PgResult;
use crate::sql::Sql;

/// Stores the new blobs and the checkpoint in one statement, so they become visible
/// together or not at all. A stored blob is never replaced; a stored checkpoint id is.
///
/// Both inserts draw their rows from `lock`, the thread's advisory lock taken shared
/// (`$12` is [`thread_lock_key`]), so neither runs before it is granted and it is held
/// until the put commits: puts of a thread run side by side, but never while a removal of
/// the thread's values (prune, retention, delete, copy: the exclusive [`lock_thread`])
/// holds it, and such a removal waits until every put under way has committed. Without
/// it a put could name a stored value (ON CONFLICT DO NOTHING keeps the stored row) that a
/// removal had already decided no checkpoint uses, commit, and lose it to the delete.
const PUT: &str = "\
WITH lock AS (
    SELECT pg_advisory_xact_lock_shared(hashtextextended($12, 0))
),
blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, ns, channel, version, value)
    SELECT $1, $2, b.channel, b.version, b.value
    FROM lock, UNNEST($8::text[], $9::text[], $10::bytea[]) AS b(channel, version, value)
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoints (thread_id, ns, checkpoint_id, run_id, channels, versions, metadata, record)
SELECT $1, $2, $3, $4, $5, $6, $7, $11 FROM lock
ON CONFLICT (thread_id, ns, checkpoint_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, channels = EXCLUDED.channels, versions = EXCLUDED.versions,
    metadata = EXCLUDED.metadata, record = EXCLUDED.record";

const PUT_WRITES: &str = "\
WITH first_wins AS (
    INSERT INTO checkpoint_writes (thread_id, ns, checkpoint_id, task_id, idx, record)
    SELECT $1, $2, $3, $4, w.idx, w.record FROM UNNEST($5::bigint[], $6::bytea[]) AS w(idx, record)
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoint_writes (thread_id, ns, checkpoint_id, task_id, idx, record)
SELECT $1, $2, $3, $4, w.idx, w.record FROM UNNEST($7::bigint[], $8::bytea[]) AS w(idx, record)
ON CONFLICT (thread_id, ns, checkpoint_id, task_id, idx) DO UPDATE SET record = EXCLUDED.record";

const GET_WRITES: &str = "SELECT record FROM checkpoint_writes \
     WHERE thread_id = $1 AND ns = $2 AND checkpoint_id = $3";

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

const THREAD_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = $1)";

const LOCK_THREAD: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

const COPY_THREAD: &str = "\
WITH c AS (
    INSERT INTO checkpoints (thread_id, ns, checkpoint_id, run_id, channels, versions, metadata, record)
    SELECT $2, ns, checkpoint_id, run_id, channels, versions, metadata, record
    FROM checkpoints WHERE thread_id = $1
    RETURNING 1
),
b AS (
    INSERT INTO checkpoint_blobs (thread_id, ns, channel, version, value)
    SELECT $2, ns, channel, version, value FROM checkpoint_blobs WHERE thread_id = $1
    ON CONFLICT DO NOTHING
),
w AS (
    INSERT INTO checkpoint_writes (thread_id, ns, checkpoint_id, task_id, idx, record)
    SELECT $2, ns, checkpoint_id, task_id, idx, record FROM checkpoint_writes WHERE thread_id = $1
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM c";

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

/// The escape character of [`filterable`].
const ESCAPE: char = '\u{E000}';

/// Metadata as stored in the `jsonb` column that list filters query.
///
/// `jsonb` cannot hold U+0000, so every string (keys included) is escaped injectively:
/// U+E000 becomes U+E000 `e` and U+0000 becomes U+E000 `0`. Filter values go through the
/// same mapping, so equality on the escaped form is exactly equality on the original, and
/// strings without either character, the usual case, are stored unchanged.
pub(crate) fn filterable(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(escape(s)),
        Value::Array(items) => Value::Array(items.iter().map(filterable).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (escape(key), filterable(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn escape(s: &str) -> String {
    if !s.contains(['\0', ESCAPE]) {
        return s.to_owned();
    }
    let mut escaped = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            ESCAPE => escaped.extend([ESCAPE, 'e']),
            '\0' => escaped.extend([ESCAPE, '0']),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The key of a thread's advisory lock. Advisory locks are database-wide, hence the
/// schema in the key.
pub(crate) fn thread_lock_key(schema: &str, thread_id: &str) -> String {
    format!("storage-postgres:thread:{schema}:{thread_id}")
}

/// Takes the thread's advisory lock exclusively for the rest of the transaction: copies
/// into the thread, prunes, deletes and retention sweeps of it queue up behind each other
/// and behind the puts under way, which hold it shared ([`PUT`]); new puts wait. Every
/// statement after it sees what those puts committed (READ COMMITTED takes a snapshot per
/// statement), and no put commits until this transaction has.
pub(crate) async fn lock_thread(tx: &impl Sql, schema: &str, thread_id: &str) -> PgResult<()> {
    tx.one(LOCK_THREAD, &[&thread_lock_key(schema, thread_id)])
        .await?;
    Ok(())
}

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
    pub(crate) async fn put_checkpoint_op(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> PgResult<()> {
        checkpoint.validate_put(&new_versions)?;
        let row = PutRow::encode(checkpoint, &new_versions, self.schema())?;
        self.client().await?.exec(PUT, &row.params()).await?;
        Ok(())
    }

    /// One transaction for the batch, its puts pipelined: BEGIN, one round trip for the
    /// puts, COMMIT. A batch of one is a plain put, atomic by itself.
    pub(crate) async fn put_checkpoints_op(
        &self,
        puts: Vec<(Checkpoint, ChannelVersions)>,
    ) -> PgResult<()> {
        validate_puts(&puts)?;
        let mut rows = puts
            .into_iter()
            .map(|(checkpoint, new_versions)| {
                PutRow::encode(checkpoint, &new_versions, self.schema())
            })
            .collect::<PgResult<Vec<_>>>()?;
        // The same (thread, namespace) order in every batch keeps two concurrent batches
        // from taking row locks (and the threads' shared locks, against the exclusive
        // ones of removals) in opposite orders. Within one (thread, namespace) the
        // stable sort keeps the caller's order: a repeated id ends as its last put, and a
        // (channel, version) keeps the value of its first put.
        rows.sort_by(|a, b| a.chain().cmp(&b.chain()));
        let params: Vec<_> = rows.iter().map(PutRow::params).collect();
        let mut client = self.client().await?;
        if let [only] = params.as_slice() {
            // One statement is atomic by itself: a batch of one costs what a put costs.
            client.exec(PUT, only).await?;
            return Ok(());
        }
        let tx = client.transaction().await?;
        let statement = tx.statement(PUT).await?;
        // The puts are pipelined: every one is sent before the first answer is awaited.
        futures::future::try_join_all(
            params
                .iter()
                .map(|params| tx.run_execute(&statement, params)),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn get_checkpoint_op(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> PgResult<Option<CheckpointTuple>> {
        validate_get_checkpoint(thread_id, namespace, checkpoint_id)?;
        let selection = Selection {
            thread_id: Some(thread_id),
            namespace: Some(namespace),
            checkpoint_id,
            limit: Some(1),
            ..Selection::default()
        };
        Ok(self.read_checkpoints(selection).await?.into_iter().next())
    }

    pub(crate) async fn list_checkpoints_op(
        &self,
        query: CheckpointQuery,
    ) -> PgResult<Vec<CheckpointTuple>> {
        query.validate()?;
        let (filter_keys, filter_values) = query
            .filter
            .iter()
            .map(|(key, value)| (escape(key), filterable(value)))
            .unzip();
        let selection = Selection {
            thread_id: Some(&query.thread_id),
            namespace: query.namespace.as_deref(),
            checkpoint_id: None,
            before: query.before.as_deref(),
            filter_keys,
            filter_values,
            limit: query.limit.map(|limit| to_i64(limit as u64)),
        };
        self.read_checkpoints(selection).await
    }

    /// Every thread's checkpoints in one statement, newest first, on the index by id.
    pub(crate) async fn search_checkpoints_op(
        &self,
        search: CheckpointSearch,
    ) -> PgResult<Page<CheckpointTuple>> {
        search.validate()?;
        if search.limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        let (filter_keys, filter_values) = search
            .filter
            .iter()
            .map(|(key, value)| (escape(key), filterable(value)))
            .unzip();
        let selection = Selection {
            thread_id: None,
            namespace: search.namespace.as_deref(),
            checkpoint_id: None,
            before: search.before.as_deref(),
            filter_keys,
            filter_values,
            // One past the page, so the page knows whether another follows.
            limit: Some(to_i64(search.limit as u64).saturating_add(1)),
        };
        let found = self.read_checkpoints(selection).await?;
        Ok(storage_core::search::page_of(found, search.limit))
    }

    pub(crate) async fn put_writes_op(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, storage_core::ChannelValue)>,
    ) -> PgResult<()> {
        validate_put_writes(&key, task_id, &writes)?;
        // Within one call a special channel written twice keeps its last value and a
        // normal index its first, as across calls; one row per index reaches the database.
        let mut first_wins: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        let mut last_wins: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for (write, replaces) in indexed_writes(task_id, task_path, writes) {
            let record = wire::encode_write(&write)?;
            if replaces {
                last_wins.insert(write.index, record);
            } else {
                first_wins.entry(write.index).or_insert(record);
            }
        }
        let (first_indexes, first_records): (Vec<i64>, Vec<Vec<u8>>) =
            first_wins.into_iter().unzip();
        let (last_indexes, last_records): (Vec<i64>, Vec<Vec<u8>>) = last_wins.into_iter().unzip();
        if first_indexes.is_empty() && last_indexes.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        client
            .exec(
                PUT_WRITES,
                &[
                    &key.thread_id,
                    &key.namespace,
                    &key.checkpoint_id,
                    &task_id,
                    &first_indexes,
                    &first_records,
                    &last_indexes,
                    &last_records,
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn get_writes_op(&self, key: CheckpointKey) -> PgResult<Vec<PendingWrite>> {
        key.validate()?;
        let client = self.client().await?;
        let rows = client
            .rows(
                GET_WRITES,
                &[&key.thread_id, &key.namespace, &key.checkpoint_id],
            )
            .await?;
        let records: Vec<&[u8]> = rows.iter().map(|row| row.get(0)).collect();
        Ok(wire::decode_writes(records)?)
    }

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

    pub(crate) async fn copy_thread_op(&self, source: &str, target: &str) -> PgResult<u64> {
        validate_id("source thread id", source)?;
        validate_id("target thread id", target)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Two copies into one target queue up here, so the emptiness check holds until
        // commit.
        lock_thread(&tx, self.schema(), target).await?;
        if tx.one(THREAD_EXISTS, &[&target]).await?.get::<_, bool>(0) {
            return Err(StorageError::already_exists(format!(
                "thread {target:?} already has checkpoints"
            ))
            .into());
        }
        let copied: i64 = tx.one(COPY_THREAD, &[&source, &target]).await?.get(0);
        if copied == 0 {
            return Err(
                StorageError::not_found(format!("thread {source:?} has no checkpoints")).into(),
            );
        }
        tx.commit().await?;
        Ok(to_u64(copied))
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

/// The parameters of one [`PUT`], owned, so a batch can hold many of them.
struct PutRow {
    thread_id: String,
    namespace: String,
    checkpoint_id: String,
    run_id: Option<String>,
    channels: Vec<String>,
    versions: Vec<String>,
    metadata: Value,
    blob_channels: Vec<String>,
    blob_versions: Vec<String>,
    blob_values: Vec<Vec<u8>>,
    record: Vec<u8>,
    lock_key: String,
}

impl PutRow {
    /// Encodes a validated put: the record without its channel values, which go to blobs.
    fn encode(
        mut checkpoint: Checkpoint,
        new_versions: &ChannelVersions,
        schema: &str,
    ) -> PgResult<Self> {
        let mut blob_channels = Vec::new();
        let mut blob_versions = Vec::new();
        let mut blob_values = Vec::new();
        for (channel, version, value) in checkpoint.new_blobs(new_versions) {
            blob_channels.push(channel.to_owned());
            blob_versions.push(version.to_owned());
            blob_values.push(wire::encode_value(value)?);
        }
        let channels = checkpoint.channel_versions.keys().cloned().collect();
        let versions = checkpoint.channel_versions.values().cloned().collect();
        let run_id = checkpoint
            .metadata
            .get("run_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let metadata = filterable(&Value::Object(checkpoint.metadata.clone()));
        checkpoint.channel_values.clear();
        let record = wire::encode(&checkpoint)?;
        let lock_key = thread_lock_key(schema, &checkpoint.thread_id);
        Ok(PutRow {
            thread_id: checkpoint.thread_id,
            namespace: checkpoint.namespace,
            checkpoint_id: checkpoint.id,
            run_id,
            channels,
            versions,
            metadata,
            blob_channels,
            blob_versions,
            blob_values,
            record,
            lock_key,
        })
    }

    /// The checkpoint chain this put belongs to: every key it writes starts with it.
    fn chain(&self) -> (&str, &str) {
        (&self.thread_id, &self.namespace)
    }

    /// The parameters in [`PUT`]'s order.
    fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.thread_id,
            &self.namespace,
            &self.checkpoint_id,
            &self.run_id,
            &self.channels,
            &self.versions,
            &self.metadata,
            &self.blob_channels,
            &self.blob_versions,
            &self.blob_values,
            &self.record,
            &self.lock_key,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escaping_is_injective_and_leaves_plain_strings_alone() {
        assert_eq!(escape("plain"), "plain");
        let samples = [
            "a\0b",
            "a\u{E000}0b",
            "a\u{E000}b",
            "\0",
            "\u{E000}e",
            "\u{E000}",
        ];
        let escaped: std::collections::HashSet<String> =
            samples.iter().map(|s| escape(s)).collect();
        assert_eq!(escaped.len(), samples.len());
        assert!(escaped.iter().all(|s| !s.contains('\0')));
        let meta = json!({"k\0": ["x\0", {"y\0": 1}]});
        assert_eq!(
            filterable(&meta),
            json!({"k\u{E000}0": ["x\u{E000}0", {"y\u{E000}0": 1}]})
        );
    }
}

//! Checkpoints, channel blobs and pending writes.
//!
//! A checkpoint row holds the wire-encoded checkpoint without its channel values, the
//! channel versions as two parallel arrays, and the metadata as `jsonb` for list filters.
//! Channel values live in `checkpoint_blobs`, one row per (thread, namespace, channel,
//! version); reading a checkpoint looks its version arrays up in that table by the full
//! key, so it never touches the values of other checkpoints (see `checkpoint_read`).
//! Removals (prune, retention, deletes) are in `checkpoint_removal`.

use std::collections::BTreeMap;

use serde_json::Value;
use storage_core::checkpoint::{
    indexed_writes, validate_get_checkpoint, validate_put_writes, validate_puts,
};
use storage_core::validate::validate_id;
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

/// A batch of puts (of any threads) in one statement: the multi-row form of [`PUT`], one
/// round trip and one commit, where a pipeline in a transaction was three round trips and
/// a statement per put. The shared locks of every thread in the batch (`$14`, each key
/// once, sorted, so two batches take them in the same order) are granted before any row is
/// inserted, as in [`PUT`]. Row `i`'s channels and versions are the slice
/// `$5[$7[i]:$8[i]]` (and of `$6`) of the flattened arrays. Blobs are inserted in the
/// batch's order, so a (channel, version) keeps its first put's value; a checkpoint id
/// appears once (its last put: see [`PutBatch`]).
const PUT_MANY: &str = "\
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(hashtextextended(k.key, 0))
    FROM UNNEST($14::text[]) WITH ORDINALITY AS k(key, position) ORDER BY k.position
),
lock AS MATERIALIZED (SELECT count(*) FROM locked),
blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, ns, channel, version, value)
    SELECT b.thread_id, b.ns, b.channel, b.version, b.value
    FROM lock, UNNEST($9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[])
        WITH ORDINALITY AS b(thread_id, ns, channel, version, value, position)
    ORDER BY b.position
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoints (thread_id, ns, checkpoint_id, run_id, channels, versions, metadata, record)
SELECT c.thread_id, c.ns, c.checkpoint_id, c.run_id,
    ($5::text[])[c.first:c.last], ($6::text[])[c.first:c.last], c.metadata, c.record
FROM lock, UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $7::int4[], $8::int4[],
        $15::jsonb[], $16::bytea[])
    AS c(thread_id, ns, checkpoint_id, run_id, first, last, metadata, record)
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

const THREAD_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = $1)";

pub(crate) const LOCK_THREAD: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

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

    /// The batch in one statement ([`PUT_MANY`]), atomic by itself. A batch of one is a
    /// plain put.
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
        if rows.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        if let [only] = rows.as_slice() {
            // One statement is atomic by itself: a batch of one costs what a put costs.
            client.exec(PUT, &only.params()).await?;
            return Ok(());
        }
        let batch = PutBatch::of(rows)?;
        client.exec(PUT_MANY, &batch.params()).await?;
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

    /// The checkpoint's key: its chain and id.
    fn key(&self) -> (&str, &str, &str) {
        (&self.thread_id, &self.namespace, &self.checkpoint_id)
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

/// The columns of [`PUT_MANY`]: the rows of a batch of puts, one array per column.
#[derive(Default)]
struct PutBatch {
    thread_ids: Vec<String>,
    namespaces: Vec<String>,
    checkpoint_ids: Vec<String>,
    run_ids: Vec<Option<String>>,
    channels: Vec<String>,
    versions: Vec<String>,
    firsts: Vec<i32>,
    lasts: Vec<i32>,
    metadata: Vec<Value>,
    records: Vec<Vec<u8>>,
    blob_thread_ids: Vec<String>,
    blob_namespaces: Vec<String>,
    blob_channels: Vec<String>,
    blob_versions: Vec<String>,
    blob_values: Vec<Vec<u8>>,
    lock_keys: Vec<String>,
}

impl PutBatch {
    /// The batch of `rows`, in their order. Every put's blobs go in (a stored value is
    /// never replaced, so the first put of a (channel, version) keeps it, as when the puts
    /// run one after another); a checkpoint id put twice is stored once, as its last put,
    /// which is what running them in order leaves (one statement may not upsert a row twice).
    fn of(rows: Vec<PutRow>) -> PgResult<Self> {
        let last_put: std::collections::HashMap<_, _> = rows
            .iter()
            .enumerate()
            .map(|(position, row)| (row.key(), position))
            .collect();
        let kept: Vec<bool> = rows
            .iter()
            .enumerate()
            .map(|(position, row)| last_put[&row.key()] == position)
            .collect();
        let mut batch = PutBatch::default();
        for (row, kept) in rows.into_iter().zip(kept) {
            let blob_count = row.blob_values.len();
            batch
                .blob_thread_ids
                .extend(std::iter::repeat_n(row.thread_id.clone(), blob_count));
            batch
                .blob_namespaces
                .extend(std::iter::repeat_n(row.namespace.clone(), blob_count));
            batch.blob_channels.extend(row.blob_channels);
            batch.blob_versions.extend(row.blob_versions);
            batch.blob_values.extend(row.blob_values);
            batch.lock_keys.push(row.lock_key);
            if !kept {
                continue;
            }
            // PostgreSQL arrays count from 1; an empty slice is `[n + 1:n]`.
            batch.firsts.push(array_position(batch.channels.len() + 1)?);
            batch.channels.extend(row.channels);
            batch.versions.extend(row.versions);
            batch.lasts.push(array_position(batch.channels.len())?);
            batch.thread_ids.push(row.thread_id);
            batch.namespaces.push(row.namespace);
            batch.checkpoint_ids.push(row.checkpoint_id);
            batch.run_ids.push(row.run_id);
            batch.metadata.push(row.metadata);
            batch.records.push(row.record);
        }
        // Every batch takes the locks in one order, each once.
        batch.lock_keys.sort();
        batch.lock_keys.dedup();
        Ok(batch)
    }

    /// The parameters in [`PUT_MANY`]'s order.
    fn params(&self) -> [&(dyn ToSql + Sync); 16] {
        [
            &self.thread_ids,
            &self.namespaces,
            &self.checkpoint_ids,
            &self.run_ids,
            &self.channels,
            &self.versions,
            &self.firsts,
            &self.lasts,
            &self.blob_thread_ids,
            &self.blob_namespaces,
            &self.blob_channels,
            &self.blob_versions,
            &self.blob_values,
            &self.lock_keys,
            &self.metadata,
            &self.records,
        ]
    }
}

/// A position in a PostgreSQL array (an `int4`).
fn array_position(position: usize) -> PgResult<i32> {
    i32::try_from(position).map_err(|_| {
        StorageError::invalid_input("a batch of checkpoint puts names over 2^31 channels").into()
    })
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

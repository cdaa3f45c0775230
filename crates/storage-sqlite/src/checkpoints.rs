//! Checkpoints, channel blobs and pending writes.
//!
//! A checkpoint row holds the wire-encoded checkpoint without its channel values (its
//! `channel_versions` and metadata are inside). Channel values live in `checkpoint_blobs`,
//! one row per (thread, namespace, channel, version); reading a checkpoint looks up each
//! of its versions by the blob table's full primary key, so it never touches the values of
//! other checkpoints. A put stores its new blobs and its row in one write job, so they
//! become visible together or not at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::Value;
use storage_core::checkpoint::{
    indexed_writes, sort_writes, validate_get_checkpoint, validate_put_writes, validate_puts,
};
use storage_core::validate::{validate_id, validate_ids, validate_limit};
use storage_core::{
    wire, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointTuple,
    PendingWrite, StorageError,
};

use crate::backend::SqliteBackend;
use crate::checkpoint_removal;
use crate::engine::Db;
use crate::error::SqlResult;

/// A stored blob is never replaced.
const PUT_BLOB: &str = "INSERT INTO \"{ns}.checkpoint_blobs\" \
     (thread_id, ns, channel, version, value) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";

/// A stored checkpoint id is replaced; its row stays unindexed (`indexed` keeps its
/// default, or V5's trigger clears it when the map changes): see `checkpoint_removal`.
const PUT_CHECKPOINT: &str = "INSERT INTO \"{ns}.checkpoints\" \
     (thread_id, ns, checkpoint_id, run_id, versions, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (thread_id, ns, checkpoint_id) DO UPDATE SET \
     run_id = excluded.run_id, versions = excluded.versions, record = excluded.record";

/// One checkpoint with its values and pending writes, in one statement (so one snapshot,
/// with no transaction around it): `{which}` selects the checkpoint row; its channel values
/// are looked up by the blob table's full key, one per entry of its `versions`; part 0 is
/// the row, part 1 a channel value, part 2 a pending write.
const GET: &str = "WITH c AS MATERIALIZED (\
     SELECT checkpoint_id, versions, record FROM \"{ns}.checkpoints\" \
     WHERE thread_id = ?1 AND ns = ?2 {which} LIMIT 1) \
     SELECT 0, c.checkpoint_id, c.record FROM c \
     UNION ALL \
     SELECT 1, j.key, b.value FROM c CROSS JOIN json_each(c.versions) AS j \
     CROSS JOIN \"{ns}.checkpoint_blobs\" AS b \
     ON b.thread_id = ?1 AND b.ns = ?2 AND b.channel = j.key AND b.version = j.value \
     UNION ALL \
     SELECT 2, NULL, w.record FROM c CROSS JOIN \"{ns}.checkpoint_writes\" AS w \
     ON w.thread_id = ?1 AND w.ns = ?2 AND w.checkpoint_id = c.checkpoint_id";

/// [`GET`] of the latest checkpoint: the greatest id, through the key. Built once: a read
/// is tens of microseconds, and building the text each time was a measurable part of it.
fn get_latest_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| GET.replace("{which}", "ORDER BY checkpoint_id DESC"))
}

/// [`GET`] of one checkpoint id.
fn get_by_id_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| GET.replace("{which}", "AND checkpoint_id = ?3"))
}

/// The channel values of a list of `[namespace, channel, version]` keys (a JSON array in
/// `?2`), each looked up by the full primary key; rows come back with the key's position.
/// `CROSS JOIN` keeps the key list as the outer loop.
const BLOBS: &str = "SELECT j.key, b.value FROM json_each(?2) AS j \
     CROSS JOIN \"{ns}.checkpoint_blobs\" AS b \
     ON b.thread_id = ?1 AND b.ns = j.value ->> 0 AND b.channel = j.value ->> 1 \
     AND b.version = j.value ->> 2";

/// The pending writes of a list of `[namespace, checkpoint id]` (a JSON array in `?2`),
/// with the position of the checkpoint each belongs to.
const WRITES_OF: &str = "SELECT j.key, w.record FROM json_each(?2) AS j \
     CROSS JOIN \"{ns}.checkpoint_writes\" AS w \
     ON w.thread_id = ?1 AND w.ns = j.value ->> 0 AND w.checkpoint_id = j.value ->> 1";

/// The pending writes of one checkpoint id.
const WRITES: &str = "SELECT record FROM \"{ns}.checkpoint_writes\" \
     WHERE thread_id = ?1 AND ns = ?2 AND checkpoint_id = ?3";

const WRITE_FIRST_WINS: &str = "INSERT INTO \"{ns}.checkpoint_writes\" \
     (thread_id, ns, checkpoint_id, task_id, idx, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT DO NOTHING";

const WRITE_LAST_WINS: &str = "INSERT INTO \"{ns}.checkpoint_writes\" \
     (thread_id, ns, checkpoint_id, task_id, idx, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (thread_id, ns, checkpoint_id, task_id, idx) DO UPDATE SET record = excluded.record";

const DELETE_CHECKPOINTS: &str = "DELETE FROM \"{ns}.checkpoints\" WHERE thread_id = ?1";
const DELETE_BLOBS: &str = "DELETE FROM \"{ns}.checkpoint_blobs\" WHERE thread_id = ?1";
const DELETE_WRITES: &str = "DELETE FROM \"{ns}.checkpoint_writes\" WHERE thread_id = ?1";

const THREAD_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM \"{ns}.checkpoints\" WHERE thread_id = ?1)";
/// The copies are unindexed (`indexed` is not copied).
const COPY_CHECKPOINTS: &str = "INSERT INTO \"{ns}.checkpoints\" \
     (thread_id, ns, checkpoint_id, run_id, versions, record) \
     SELECT ?2, ns, checkpoint_id, run_id, versions, record FROM \"{ns}.checkpoints\" WHERE thread_id = ?1";
const COPY_BLOBS: &str = "INSERT INTO \"{ns}.checkpoint_blobs\" \
     (thread_id, ns, channel, version, value) \
     SELECT ?2, ns, channel, version, value FROM \"{ns}.checkpoint_blobs\" WHERE thread_id = ?1 \
     ON CONFLICT DO NOTHING";
const COPY_WRITES: &str = "INSERT INTO \"{ns}.checkpoint_writes\" \
     (thread_id, ns, checkpoint_id, task_id, idx, record) \
     SELECT ?2, ns, checkpoint_id, task_id, idx, record FROM \"{ns}.checkpoint_writes\" \
     WHERE thread_id = ?1 ON CONFLICT DO NOTHING";

/// One validated put, encoded on the caller's task: the record without its channel
/// values, and the new blobs.
pub(crate) struct PutRow {
    thread_id: String,
    namespace: String,
    checkpoint_id: String,
    run_id: Option<String>,
    versions: String,
    blobs: Vec<(String, String, Vec<u8>)>,
    record: Vec<u8>,
}

impl PutRow {
    /// Encodes a validated put.
    pub(crate) fn encode(
        mut checkpoint: Checkpoint,
        new_versions: &ChannelVersions,
    ) -> SqlResult<Self> {
        let blobs = checkpoint
            .new_blobs(new_versions)
            .map(|(channel, version, value)| {
                Ok((
                    channel.to_owned(),
                    version.to_owned(),
                    wire::encode_value(value)?,
                ))
            })
            .collect::<storage_core::Result<Vec<_>>>()?;
        let run_id = checkpoint
            .metadata
            .get("run_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let versions = serde_json::to_string(&checkpoint.channel_versions).map_err(|err| {
            StorageError::serialization(format!("cannot encode channel versions: {err}"))
        })?;
        checkpoint.channel_values.clear();
        let record = wire::encode(&checkpoint)?;
        Ok(PutRow {
            versions,
            thread_id: checkpoint.thread_id,
            namespace: checkpoint.namespace,
            checkpoint_id: checkpoint.id,
            run_id,
            blobs,
            record,
        })
    }

    /// Stores the blobs, then the row.
    pub(crate) fn store(&self, db: &Db<'_>) -> SqlResult<()> {
        if !self.blobs.is_empty() {
            let mut put = db.prepare(PUT_BLOB)?;
            for (channel, version, value) in &self.blobs {
                put.execute((&self.thread_id, &self.namespace, channel, version, value))?;
            }
        }
        db.prepare(PUT_CHECKPOINT)?.execute((
            &self.thread_id,
            &self.namespace,
            &self.checkpoint_id,
            &self.run_id,
            &self.versions,
            &self.record,
        ))?;
        Ok(())
    }
}

/// Selected checkpoints with their values and pending writes; the row's key is
/// authoritative over the record's copy.
///
/// Two statements whatever the number of checkpoints and channels: one reads every
/// distinct (namespace, channel, version) the checkpoints name, each by the blob table's
/// full primary key (`json_each` over the list of keys drives the lookups, so the
/// statement text is one, cached, for any number of channels); the other reads the pending
/// writes of every checkpoint the same way. Consecutive checkpoints of a chain mostly
/// share their versions (a step changes one channel of ten), so a listing reads and
/// decodes each shared value once.
fn fill(
    db: &Db<'_>,
    thread_id: &str,
    selected: Vec<(String, String, Checkpoint)>,
) -> SqlResult<Vec<CheckpointTuple>> {
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    // Each distinct key once, in `keys`; per checkpoint, the key position of each channel
    // (in `channel_versions` order).
    let mut positions: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut keys: Vec<[&str; 3]> = Vec::new();
    let mut channel_keys: Vec<Vec<usize>> = Vec::with_capacity(selected.len());
    for (namespace, _, checkpoint) in &selected {
        let mut of_checkpoint = Vec::with_capacity(checkpoint.channel_versions.len());
        for (channel, version) in &checkpoint.channel_versions {
            let position = *positions
                .entry((namespace, channel, version))
                .or_insert_with(|| {
                    keys.push([namespace, channel, version]);
                    keys.len() - 1
                });
            of_checkpoint.push(position);
        }
        channel_keys.push(of_checkpoint);
    }
    let mut values: Vec<Option<storage_core::ChannelValue>> = vec![None; keys.len()];
    if !keys.is_empty() {
        let keys = serde_json::to_string(&keys)
            .map_err(|err| StorageError::serialization(format!("blob keys: {err}")))?;
        let mut statement = db.prepare(BLOBS)?;
        let mut rows = statement.query((thread_id, keys))?;
        while let Some(row) = rows.next()? {
            let position = usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX);
            let value = wire::decode_value(row.get_ref(1)?.as_blob()?)?;
            if let Some(slot) = values.get_mut(position) {
                *slot = Some(value);
            }
        }
    }
    let ids: Vec<[&str; 2]> = selected
        .iter()
        .map(|(namespace, id, _)| [namespace.as_str(), id.as_str()])
        .collect();
    let mut writes: Vec<Vec<PendingWrite>> = vec![Vec::new(); selected.len()];
    {
        let ids = serde_json::to_string(&ids)
            .map_err(|err| StorageError::serialization(format!("checkpoint ids: {err}")))?;
        let mut statement = db.prepare(WRITES_OF)?;
        let mut rows = statement.query((thread_id, ids))?;
        while let Some(row) = rows.next()? {
            let position = usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX);
            let write = wire::decode_write(row.get_ref(1)?.as_blob()?)?;
            if let Some(list) = writes.get_mut(position) {
                list.push(write);
            }
        }
    }
    let mut tuples = Vec::with_capacity(selected.len());
    for (((namespace, id, mut checkpoint), mut pending_writes), of_checkpoint) in
        selected.into_iter().zip(writes).zip(channel_keys)
    {
        for (channel, position) in checkpoint.channel_versions.keys().zip(of_checkpoint) {
            // A channel whose version has no stored value is absent.
            if let Some(value) = &values[position] {
                checkpoint
                    .channel_values
                    .insert(channel.clone(), value.clone());
            }
        }
        checkpoint.thread_id = thread_id.to_owned();
        checkpoint.namespace = namespace;
        checkpoint.id = id;
        sort_writes(&mut pending_writes);
        tuples.push(CheckpointTuple {
            checkpoint,
            pending_writes,
        });
    }
    Ok(tuples)
}

fn writes(
    db: &Db<'_>,
    thread_id: &str,
    namespace: &str,
    checkpoint_id: &str,
) -> SqlResult<Vec<PendingWrite>> {
    let mut statement = db.prepare(WRITES)?;
    let mut rows = statement.query((thread_id, namespace, checkpoint_id))?;
    let mut writes = Vec::new();
    while let Some(row) = rows.next()? {
        writes.push(wire::decode_write(row.get_ref(0)?.as_blob()?)?);
    }
    sort_writes(&mut writes);
    Ok(writes)
}

fn list(db: &Db<'_>, query: &CheckpointQuery) -> SqlResult<Vec<CheckpointTuple>> {
    // One statement text per shape of the query, each planned for its index.
    let mut sql = String::from(
        "SELECT ns, checkpoint_id, record FROM \"{ns}.checkpoints\" WHERE thread_id = ?1",
    );
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&query.thread_id];
    if let Some(namespace) = &query.namespace {
        params.push(namespace);
        sql.push_str(&format!(" AND ns = ?{}", params.len()));
    }
    if let Some(before) = &query.before {
        params.push(before);
        sql.push_str(&format!(" AND checkpoint_id < ?{}", params.len()));
    }
    sql.push_str(" ORDER BY checkpoint_id DESC, ns");
    let mut statement = db.prepare(&sql)?;
    let mut selected = Vec::new();
    {
        let mut rows = statement.query(params.as_slice())?;
        while let Some(row) = rows.next()? {
            if query.limit.is_some_and(|limit| selected.len() >= limit) {
                break;
            }
            let namespace: String = row.get(0)?;
            let id: String = row.get(1)?;
            let checkpoint: Checkpoint = wire::decode(row.get_ref(2)?.as_blob()?)?;
            // The metadata filter runs on the decoded record (core's exact, type-strict
            // rule); values are read only for the checkpoints returned.
            if query.admits(&namespace, &id, &checkpoint.metadata) {
                selected.push((namespace, id, checkpoint));
            }
        }
    }
    fill(db, &query.thread_id, selected)
}

impl SqliteBackend {
    pub(crate) async fn put_checkpoint_op(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> SqlResult<()> {
        checkpoint.validate_put(&new_versions)?;
        let row = PutRow::encode(checkpoint, &new_versions)?;
        self.engine.write(move |db| row.store(db)).await
    }

    /// One write job for the batch: all of it commits or none.
    pub(crate) async fn put_checkpoints_op(
        &self,
        puts: Vec<(Checkpoint, ChannelVersions)>,
    ) -> SqlResult<()> {
        validate_puts(&puts)?;
        let rows = puts
            .into_iter()
            .map(|(checkpoint, new_versions)| PutRow::encode(checkpoint, &new_versions))
            .collect::<SqlResult<Vec<_>>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.engine
            .write(move |db| rows.iter().try_for_each(|row| row.store(db)))
            .await
    }

    pub(crate) async fn get_checkpoint_op(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> SqlResult<Option<CheckpointTuple>> {
        validate_get_checkpoint(thread_id, namespace, checkpoint_id)?;
        let (thread_id, namespace) = (thread_id.to_owned(), namespace.to_owned());
        let checkpoint_id = checkpoint_id.map(str::to_owned);
        self.engine
            .read(move |db| {
                let sql = match checkpoint_id {
                    None => get_latest_sql(),
                    Some(_) => get_by_id_sql(),
                };
                let mut statement = db.prepare(sql)?;
                let mut rows = match &checkpoint_id {
                    None => statement.query((&thread_id, &namespace))?,
                    Some(id) => statement.query((&thread_id, &namespace, id))?,
                };
                let mut found: Option<(String, Checkpoint)> = None;
                let mut values = Vec::new();
                let mut pending_writes = Vec::new();
                while let Some(row) = rows.next()? {
                    let data = row.get_ref(2)?.as_blob()?;
                    match row.get::<_, i64>(0)? {
                        0 => found = Some((row.get(1)?, wire::decode(data)?)),
                        1 => values.push((row.get::<_, String>(1)?, wire::decode_value(data)?)),
                        _ => pending_writes.push(wire::decode_write(data)?),
                    }
                }
                let Some((id, mut checkpoint)) = found else {
                    return Ok(None);
                };
                // A channel whose version has no stored value is absent.
                checkpoint.channel_values = values.into_iter().collect();
                checkpoint.thread_id = thread_id;
                checkpoint.namespace = namespace;
                checkpoint.id = id;
                sort_writes(&mut pending_writes);
                Ok(Some(CheckpointTuple {
                    checkpoint,
                    pending_writes,
                }))
            })
            .await
    }

    pub(crate) async fn list_checkpoints_op(
        &self,
        query: CheckpointQuery,
    ) -> SqlResult<Vec<CheckpointTuple>> {
        query.validate()?;
        self.engine
            .read(move |db| db.snapshot(|db| list(db, &query)))
            .await
    }

    pub(crate) async fn put_writes_op(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, storage_core::ChannelValue)>,
    ) -> SqlResult<()> {
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
        if first_wins.is_empty() && last_wins.is_empty() {
            return Ok(());
        }
        let task_id = task_id.to_owned();
        self.engine
            .write(move |db| {
                let key = (&key.thread_id, &key.namespace, &key.checkpoint_id, &task_id);
                for (sql, rows) in [
                    (WRITE_FIRST_WINS, &first_wins),
                    (WRITE_LAST_WINS, &last_wins),
                ] {
                    if rows.is_empty() {
                        continue;
                    }
                    let mut statement = db.prepare(sql)?;
                    for (index, record) in rows {
                        statement.execute((key.0, key.1, key.2, key.3, index, record))?;
                    }
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn get_writes_op(&self, key: CheckpointKey) -> SqlResult<Vec<PendingWrite>> {
        key.validate()?;
        self.engine
            .read(move |db| writes(db, &key.thread_id, &key.namespace, &key.checkpoint_id))
            .await
    }

    pub(crate) async fn delete_thread_op(&self, thread_id: &str) -> SqlResult<u64> {
        validate_id("thread id", thread_id)?;
        let thread_id = thread_id.to_owned();
        self.engine
            .write(move |db| {
                checkpoint_removal::delete_thread_index(db, &thread_id)?;
                let removed = db.prepare(DELETE_CHECKPOINTS)?.execute([&thread_id])?;
                db.prepare(DELETE_BLOBS)?.execute([&thread_id])?;
                db.prepare(DELETE_WRITES)?.execute([&thread_id])?;
                Ok(removed as u64)
            })
            .await
    }

    /// Keeps the newest `keep_last` per namespace, and every blob a survivor names.
    pub(crate) async fn prune_checkpoints_op(
        &self,
        thread_id: &str,
        keep_last: usize,
    ) -> SqlResult<u64> {
        validate_id("thread id", thread_id)?;
        validate_limit("checkpoints to keep", keep_last)?;
        let thread_id = thread_id.to_owned();
        self.engine
            .write(move |db| checkpoint_removal::prune(db, &thread_id, keep_last))
            .await
    }

    pub(crate) async fn copy_thread_op(&self, source: &str, target: &str) -> SqlResult<u64> {
        validate_id("source thread id", source)?;
        validate_id("target thread id", target)?;
        let (source, target) = (source.to_owned(), target.to_owned());
        self.engine
            .write(move |db| {
                // The writer holds the write lock: the emptiness check holds until commit.
                let occupied: bool = db
                    .prepare(THREAD_EXISTS)?
                    .query_row([&target], |row| row.get(0))?;
                if occupied {
                    return Err(StorageError::already_exists(format!(
                        "thread {target:?} already has checkpoints"
                    ))
                    .into());
                }
                let copied = db.prepare(COPY_CHECKPOINTS)?.execute((&source, &target))?;
                if copied == 0 {
                    return Err(StorageError::not_found(format!(
                        "thread {source:?} has no checkpoints"
                    ))
                    .into());
                }
                db.prepare(COPY_BLOBS)?.execute((&source, &target))?;
                db.prepare(COPY_WRITES)?.execute((&source, &target))?;
                Ok(copied as u64)
            })
            .await
    }

    /// Removes the runs' checkpoints, and the values only they used.
    pub(crate) async fn delete_for_runs_op(&self, run_ids: &[String]) -> SqlResult<u64> {
        validate_ids("run id", run_ids.iter().map(String::as_str))?;
        if run_ids.is_empty() {
            return Ok(0);
        }
        let run_ids = run_ids.to_vec();
        self.engine
            .write(move |db| checkpoint_removal::delete_for_runs(db, &run_ids))
            .await
    }
}

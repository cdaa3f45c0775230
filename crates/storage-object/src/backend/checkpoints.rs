//! Checkpoints. Channel values are immutable objects per (channel, version), created with
//! `PutMode::Create` so a stored value is never replaced; the checkpoint record (without
//! values) is written after them, so a checkpoint and its values become visible together.
//! Normal pending writes are created with `Create` (first writer wins), special ones
//! overwritten (last writer wins). Removing checkpoints never deletes a value at once: a
//! put may name a stored value without re-sending it, so the values the removed records
//! used are named in a marker and collected later if unused (see `unused_values`); a
//! record is created with `Create`, and one that replaces a stored id names the versions it
//! dropped the same way.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use storage_core::carried::admit;

use async_trait::async_trait;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::Value;
use storage_core::checkpoint::{indexed_writes, validate_get_checkpoint, validate_put_writes};
use storage_core::validate::{validate_id, validate_ids, validate_limit};
use storage_core::{
    wire, ChannelValue, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery,
    CheckpointStore, CheckpointTuple, PendingWrite, Result, Retention, StorageError,
};

use super::unused_values::ValueKey;
use super::{in_order, retention, ObjectBackend};
use crate::keys::{parts_after, take_id};
use crate::recent::REMEMBERED;

#[async_trait]
impl CheckpointStore for ObjectBackend {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        let checkpoint = admit("put_checkpoint", checkpoint)?;
        self.op("put_checkpoint", async {
            checkpoint.validate_put(&new_versions)?;
            let (thread, ns) = (&checkpoint.thread_id, &checkpoint.namespace);
            in_order(
                16,
                checkpoint
                    .new_blobs(&new_versions)
                    .map(|(channel, version, value)| async move {
                        let path = self.keys().blob(thread, ns, channel, version);
                        self.objects()
                            .create(&path, wire::encode_value(value)?)
                            .await
                            .map(|_| ())
                    }),
            )
            .await?;
            let mut record = checkpoint.clone();
            record.channel_values.clear();
            if let Some(run_id) = record.metadata.get("run_id").and_then(Value::as_str) {
                validate_id("run id", run_id)?;
                let marker = self.keys().run_marker(run_id, thread, ns, &record.id);
                self.objects().put(&marker, Vec::new()).await?;
            }
            let path = self.keys().checkpoint(thread, ns, &record.id);
            let bytes = wire::encode(&record)?;
            // Created if absent (LangGraph's case: a new id each step), at the cost of a
            // plain write; an id put again is a replacement (see `replace_record`).
            if !self.objects().create(&path, bytes.clone()).await? {
                self.replace_record(&record, bytes).await?;
            }
            self.recent()
                .put(&self.keys().checkpoints(thread, ns), &record.id);
            Ok(())
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        self.op("get_checkpoint", async {
            validate_get_checkpoint(thread_id, namespace, checkpoint_id)?;
            let id = match checkpoint_id {
                Some(id) => id.to_owned(),
                None => {
                    let chain = [namespace.to_owned()];
                    if let Some(mut newest) = self.newest_records(thread_id, &chain, 1).await? {
                        return match newest.pop() {
                            Some(record) => self.tuple(record).await.map(Some),
                            None => Ok(None),
                        };
                    }
                    match self.checkpoint_ids(thread_id, namespace).await?.pop() {
                        Some(id) => id,
                        None => return Ok(None),
                    }
                }
            };
            match self.read_record(thread_id, namespace, &id).await? {
                Some(record) => self.tuple(record).await.map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let query = admit("list_checkpoints", query)?;
        self.op("list_checkpoints", async {
            query.validate()?;
            let namespaces = match &query.namespace {
                Some(ns) => vec![ns.clone()],
                None => self.thread_namespaces(&query.thread_id).await?,
            };
            if let (None, true, Some(limit @ 1..=REMEMBERED)) =
                (&query.before, query.filter.is_empty(), query.limit)
            {
                if let Some(records) = self
                    .newest_records(&query.thread_id, &namespaces, limit)
                    .await?
                {
                    return in_order(8, records.into_iter().map(|record| self.tuple(record))).await;
                }
            }
            // Newest first; across namespaces, equal ids by namespace ascending.
            let mut candidates: Vec<(String, String)> = Vec::new();
            for ns in namespaces {
                for id in self.checkpoint_ids(&query.thread_id, &ns).await? {
                    if query
                        .before
                        .as_deref()
                        .is_none_or(|before| id.as_str() < before)
                    {
                        candidates.push((ns.clone(), id));
                    }
                }
            }
            candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let limit = query.limit.unwrap_or(usize::MAX);
            let mut records = Vec::new();
            // Records are read in small batches, in order, until the limit is reached: only
            // what is returned (plus what the filter rejects) is read.
            for batch in candidates.chunks(16) {
                let read = in_order(
                    16,
                    batch
                        .iter()
                        .map(|(ns, id)| self.read_record(&query.thread_id, ns, id)),
                )
                .await?;
                for record in read.into_iter().flatten() {
                    if records.len() < limit
                        && query.admits(&record.namespace, &record.id, &record.metadata)
                    {
                        records.push(record);
                    }
                }
                if records.len() >= limit {
                    break;
                }
            }
            in_order(8, records.into_iter().map(|record| self.tuple(record))).await
        })
        .await
    }

    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, ChannelValue)>,
    ) -> Result<()> {
        let writes = admit("put_writes", writes)?;
        self.op("put_writes", async {
            validate_put_writes(&key, task_id, &writes)?;
            let key = &key;
            in_order(
                16,
                indexed_writes(task_id, task_path, writes).into_iter().map(
                    |(write, replaces)| async move {
                        let path = self.keys().write(
                            &key.thread_id,
                            &key.namespace,
                            &key.checkpoint_id,
                            &write.task_id,
                            write.index,
                        );
                        let bytes = wire::encode_write(&write)?;
                        if replaces {
                            self.objects().put(&path, bytes).await
                        } else {
                            self.objects().create(&path, bytes).await.map(|_| ())
                        }
                    },
                ),
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        self.op("get_writes", async {
            key.validate()?;
            self.writes_of(&key.thread_id, &key.namespace, &key.checkpoint_id)
                .await
        })
        .await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        self.op("delete_thread", async {
            validate_id("thread id", thread_id)?;
            let mut removed = 0;
            for ns in self.thread_namespaces(thread_id).await? {
                let ids = self.checkpoint_ids(thread_id, &ns).await?;
                removed += ids.len() as u64;
                self.remove_run_markers(thread_id, &ns, &ids).await?;
            }
            // Records first, so that nothing half-deleted is visible as a checkpoint.
            for ns in self.thread_namespaces(thread_id).await? {
                self.objects()
                    .delete_all(&self.keys().checkpoints(thread_id, &ns))
                    .await?;
            }
            self.objects()
                .delete_all(&self.keys().thread(thread_id))
                .await?;
            // The values are gone: so is what markers say about them.
            self.objects()
                .delete_all(&self.keys().thread_unused_values(thread_id))
                .await?;
            Ok(removed)
        })
        .await
    }

    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        self.op("prune_checkpoints", async {
            validate_id("thread id", thread_id)?;
            validate_limit("checkpoints to keep", keep_last)?;
            let mut removed = 0;
            for ns in self.thread_namespaces(thread_id).await? {
                let mut ids = self.checkpoint_ids(thread_id, &ns).await?;
                ids.truncate(ids.len().saturating_sub(keep_last));
                let doomed = self.read_records(thread_id, &ns, &ids).await?;
                removed += self.retire_checkpoints(thread_id, &ns, &doomed).await?;
            }
            Ok(removed)
        })
        .await
    }

    async fn retain_checkpoints(&self, retention: Retention) -> Result<u64> {
        self.op("retain_checkpoints", async {
            if !retention::admits(&retention)? {
                return Ok(0);
            }
            // Every thread directory, from delimiter listings (a thread holding no
            // record finds nothing to trim), rather than `list_thread_ids`, which lists
            // every object of every thread to find those with records.
            let threads = self.ids_below(&self.keys().threads()).await?;
            let threads = &threads;
            retention::sweep(
                "checkpoints",
                |after: Option<String>, limit| async move {
                    Ok(threads
                        .iter()
                        .filter(|id| after.as_ref().is_none_or(|after| *id > after))
                        .take(limit)
                        .cloned()
                        .collect())
                },
                |thread_id| async move {
                    let mut removed = 0;
                    for ns in self.thread_namespaces(&thread_id).await? {
                        removed += self.retain_chain(&thread_id, &ns, &retention).await?;
                    }
                    Ok(removed)
                },
            )
            .await
        })
        .await
    }

    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        self.op("copy_thread", async {
            validate_id("thread id", source_thread_id)?;
            validate_id("thread id", target_thread_id)?;
            let namespaces = self.thread_namespaces(source_thread_id).await?;
            let mut sources = Vec::new();
            for ns in &namespaces {
                for id in self.checkpoint_ids(source_thread_id, ns).await? {
                    sources.push((ns.clone(), id));
                }
            }
            if sources.is_empty() {
                return Err(StorageError::not_found(format!(
                    "thread {source_thread_id:?} has no checkpoints to copy"
                )));
            }
            for ns in self.thread_namespaces(target_thread_id).await? {
                if !self.checkpoint_ids(target_thread_id, &ns).await?.is_empty() {
                    return Err(StorageError::already_exists(format!(
                        "thread {target_thread_id:?} already has checkpoints"
                    )));
                }
            }
            // Values and writes first, records last: the copy becomes visible whole.
            for ns in &namespaces {
                let from = self.keys().chain(source_thread_id, ns);
                let to = self.keys().chain(target_thread_id, ns).to_string();
                let records = self.keys().checkpoints(source_thread_id, ns);
                let others: Vec<Path> = self
                    .objects()
                    .list(&from)
                    .await?
                    .into_iter()
                    .filter(|path| path.prefix_match(&records).is_none())
                    .collect();
                in_order(
                    16,
                    others.iter().map(|path| {
                        let rest = parts_after(path, &from).join("/");
                        let target = Path::from(format!("{to}/{rest}"));
                        async move {
                            self.objects()
                                .store
                                .copy(path, &target)
                                .await
                                .map_err(crate::error::classify)
                        }
                    }),
                )
                .await?;
            }
            in_order(
                16,
                sources.iter().map(|(ns, id)| async move {
                    let Some(mut record) = self.read_record(source_thread_id, ns, id).await? else {
                        return Ok(());
                    };
                    record.thread_id = target_thread_id.to_owned();
                    if let Some(run_id) = record.metadata.get("run_id").and_then(Value::as_str) {
                        let marker = self.keys().run_marker(run_id, target_thread_id, ns, id);
                        self.objects().put(&marker, Vec::new()).await?;
                    }
                    let path = self.keys().checkpoint(target_thread_id, ns, id);
                    self.objects().put(&path, wire::encode(&record)?).await
                }),
            )
            .await?;
            Ok(sources.len() as u64)
        })
        .await
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.op("list_thread_ids", async {
            validate_limit("thread id limit", limit)?;
            storage_core::policy::check_after("thread listing cursor", after)?;
            // A thread is listed when one of its namespaces has a checkpoint record.
            let prefix = self.keys().threads();
            self.list_ids_with(&prefix, "checkpoints", after, limit)
                .await
        })
        .await
    }

    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        self.op("delete_for_runs", async {
            validate_ids("run id", run_ids.iter().map(String::as_str))?;
            let runs: HashSet<&str> = run_ids.iter().map(String::as_str).collect();
            let mut doomed: BTreeMap<(String, String), Vec<Checkpoint>> = BTreeMap::new();
            for run_id in &runs {
                let prefix = self.keys().run(run_id);
                for path in self.objects().list(&prefix).await? {
                    let parts = parts_after(&path, &prefix);
                    let Some((thread, a)) = take_id(&parts) else {
                        continue;
                    };
                    let Some((ns, b)) = take_id(&parts[a..]) else {
                        continue;
                    };
                    let Some((id, _)) = take_id(&parts[a + b..]) else {
                        continue;
                    };
                    // The record may have been replaced with another run id since.
                    let record = self.read_record(&thread, &ns, &id).await?.filter(|r| {
                        r.metadata
                            .get("run_id")
                            .and_then(Value::as_str)
                            .is_some_and(|run| runs.contains(run))
                    });
                    match record {
                        Some(record) => doomed.entry((thread, ns)).or_default().push(record),
                        None => self.objects().delete(&path).await?,
                    }
                }
            }
            let mut removed = 0;
            for ((thread, ns), mut records) in doomed {
                records.sort_by(|a, b| a.id.cmp(&b.id));
                records.dedup_by(|a, b| a.id == b.id);
                removed += self.retire_checkpoints(&thread, &ns, &records).await?;
            }
            Ok(removed)
        })
        .await
    }
}

impl ObjectBackend {
    /// The checkpoint namespaces of a thread that hold anything: one delimiter listing of
    /// the thread's directory (see [`ObjectBackend::ids_below`]).
    pub(super) async fn thread_namespaces(&self, thread_id: &str) -> Result<Vec<String>> {
        self.ids_below(&self.keys().thread(thread_id)).await
    }

    pub(super) async fn read_record(
        &self,
        thread_id: &str,
        namespace: &str,
        id: &str,
    ) -> Result<Option<Checkpoint>> {
        let path = self.keys().checkpoint(thread_id, namespace, id);
        self.objects()
            .get(&path)
            .await?
            .map(|bytes| wire::decode(&bytes))
            .transpose()
    }

    /// The checkpoint with its values resolved and its pending writes.
    async fn tuple(&self, record: Checkpoint) -> Result<CheckpointTuple> {
        let (thread, ns) = (&record.thread_id, &record.namespace);
        let values = in_order(
            16,
            record
                .channel_versions
                .iter()
                .map(|(channel, version)| async move {
                    let path = self.keys().blob(thread, ns, channel, version);
                    let value = self.objects().get(&path).await?;
                    value
                        .map(|bytes| wire::decode_value(&bytes).map(|v| (channel.clone(), v)))
                        .transpose()
                }),
        )
        .await?;
        let pending_writes = self.writes_of(thread, ns, &record.id).await?;
        let mut checkpoint = record.clone();
        checkpoint.channel_values = values.into_iter().flatten().collect();
        Ok(CheckpointTuple {
            checkpoint,
            pending_writes,
        })
    }

    async fn writes_of(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &str,
    ) -> Result<Vec<PendingWrite>> {
        let prefix = self.keys().writes(thread_id, namespace, checkpoint_id);
        let paths = self.objects().list(&prefix).await?;
        let writes = in_order(16, paths.iter().map(|path| self.objects().get(path))).await?;
        wire::decode_writes(writes.into_iter().flatten())
    }

    async fn remove_run_markers(
        &self,
        thread_id: &str,
        namespace: &str,
        ids: &[String],
    ) -> Result<()> {
        let records = in_order(
            16,
            ids.iter()
                .map(|id| self.read_record(thread_id, namespace, id)),
        )
        .await?;
        self.remove_markers_of(records.iter().flatten()).await
    }

    /// Removes the run markers of `records`.
    async fn remove_markers_of(&self, records: impl Iterator<Item = &Checkpoint>) -> Result<()> {
        let markers: Vec<Path> = records
            .filter_map(|record| {
                let run = record.metadata.get("run_id")?.as_str()?;
                Some(
                    self.keys()
                        .run_marker(run, &record.thread_id, &record.namespace, &record.id),
                )
            })
            .collect();
        self.objects().delete_many(markers).await
    }

    /// The records of `ids` that are stored, in the order of `ids`.
    pub(super) async fn read_records(
        &self,
        thread_id: &str,
        namespace: &str,
        ids: &[String],
    ) -> Result<Vec<Checkpoint>> {
        let records = in_order(
            16,
            ids.iter()
                .map(|id| self.read_record(thread_id, namespace, id)),
        )
        .await?;
        Ok(records.into_iter().flatten().collect())
    }

    /// Removes the checkpoints `doomed` (their records as read, in id order) with their
    /// writes and run markers: how a prune, a retention sweep and `delete_for_runs` all
    /// remove checkpoints. One record at a time, oldest first, so a reader of the chain
    /// never sees a hole. No value is deleted and no survivor is read: a marker written
    /// before the first record goes names every value the doomed records used, and
    /// `collect_garbage` deletes those that no checkpoint stored then uses (see
    /// `unused_values`), so the cost follows what is removed, not what stays.
    pub(super) async fn retire_checkpoints(
        &self,
        thread_id: &str,
        namespace: &str,
        doomed: &[Checkpoint],
    ) -> Result<u64> {
        if doomed.is_empty() {
            return Ok(0);
        }
        let theirs: BTreeSet<ValueKey> = doomed
            .iter()
            .flat_map(|record| record.channel_versions.clone())
            .collect();
        let marker = self.mark_unused(thread_id, namespace, &theirs).await?;
        self.remove_markers_of(doomed.iter()).await?;
        for record in doomed {
            self.objects()
                .delete(&self.keys().checkpoint(thread_id, namespace, &record.id))
                .await?;
            self.objects()
                .delete_all(&self.keys().writes(thread_id, namespace, &record.id))
                .await?;
        }
        self.touch_marker(marker).await?;
        Ok(doomed.len() as u64)
    }

    /// Writes `record` over the stored checkpoint of its id. The values the stored one
    /// used and `record` does not may now be unused, and a fork of the stored one may be
    /// naming them without re-sending them: a marker names them as a removal's does, so
    /// that `collect_garbage` judges them by the time they stopped being used. A stored
    /// record that does not decode is replaced without one (its values stay).
    async fn replace_record(&self, record: &Checkpoint, bytes: Vec<u8>) -> Result<()> {
        let (thread, ns) = (&record.thread_id, &record.namespace);
        let path = self.keys().checkpoint(thread, ns, &record.id);
        let old = match self.read_record(thread, ns, &record.id).await {
            Ok(old) => old,
            Err(err) if err.kind() == storage_core::ErrorKind::Serialization => None,
            Err(err) => return Err(err),
        };
        let dropped: BTreeSet<ValueKey> = old
            .into_iter()
            .flat_map(|old| old.channel_versions)
            .filter(|(channel, version)| record.channel_versions.get(channel) != Some(version))
            .collect();
        let marker = self.mark_unused(thread, ns, &dropped).await?;
        self.objects().put(&path, bytes).await?;
        self.touch_marker(marker).await
    }
}

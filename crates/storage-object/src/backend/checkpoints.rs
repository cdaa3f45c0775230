//! Checkpoints. Channel values are immutable objects per (channel, version), created with
//! `PutMode::Create` so a stored value is never replaced; the checkpoint record (without
//! values) is written after them, so a checkpoint and its values become visible together.
//! Normal pending writes are created with `Create` (first writer wins), special ones
//! overwritten (last writer wins). Removing checkpoints never deletes a value at once: a
//! put may name a stored value without re-sending it, so the values left unused are
//! collected later (see `unused_values`).

use std::collections::{BTreeMap, HashSet};
use storage_core::carried::admit;

use async_trait::async_trait;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::Value;
use storage_core::checkpoint::{
    indexed_writes, sort_writes, validate_checkpoint_namespace, validate_put_writes,
};
use storage_core::validate::{validate_id, validate_ids, validate_limit};
use storage_core::{
    wire, ChannelValue, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery,
    CheckpointStore, CheckpointTuple, PendingWrite, Result, Retention, StorageError,
};

use super::{in_order, retention, ObjectBackend};
use crate::keys::{parts_after, take_id};

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
            self.objects().put(&path, wire::encode(&record)?).await
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
            validate_id("thread id", thread_id)?;
            validate_checkpoint_namespace(namespace)?;
            if let Some(id) = checkpoint_id {
                validate_id("checkpoint id", id)?;
            }
            let id = match checkpoint_id {
                Some(id) => id.to_owned(),
                None => match self.checkpoint_ids(thread_id, namespace).await?.pop() {
                    Some(id) => id,
                    None => return Ok(None),
                },
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
                let keep = ids.split_off(ids.len().saturating_sub(keep_last));
                removed += self.remove_checkpoints(thread_id, &ns, &ids, &keep).await?;
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
            retention::sweep(
                "checkpoints",
                |after: Option<String>, limit| async move {
                    self.list_thread_ids(after.as_deref(), limit).await
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
            let mut doomed: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
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
                    let still = self
                        .read_record(&thread, &ns, &id)
                        .await?
                        .and_then(|r| {
                            r.metadata
                                .get("run_id")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .is_some_and(|run| runs.contains(run.as_str()));
                    if still {
                        doomed.entry((thread, ns)).or_default().push(id);
                    } else {
                        self.objects().delete(&path).await?;
                    }
                }
            }
            let mut removed = 0;
            for ((thread, ns), mut ids) in doomed {
                ids.sort();
                ids.dedup();
                let all = self.checkpoint_ids(&thread, &ns).await?;
                let keep: Vec<String> = all.into_iter().filter(|id| !ids.contains(id)).collect();
                removed += self.remove_checkpoints(&thread, &ns, &ids, &keep).await?;
            }
            Ok(removed)
        })
        .await
    }
}

impl ObjectBackend {
    /// The checkpoint ids of (thread, namespace), ascending.
    pub(super) async fn checkpoint_ids(
        &self,
        thread_id: &str,
        namespace: &str,
    ) -> Result<Vec<String>> {
        let prefix = self.keys().checkpoints(thread_id, namespace);
        let mut ids: Vec<String> = self
            .objects()
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|path| take_id(&parts_after(path, &prefix)).map(|(id, _)| id))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The checkpoint namespaces of a thread that hold anything.
    pub(super) async fn thread_namespaces(&self, thread_id: &str) -> Result<Vec<String>> {
        let prefix = self.keys().thread(thread_id);
        let listing = self
            .objects()
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map(|listing| listing.common_prefixes)
            .or_else(|err| match err {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                err => Err(crate::error::classify(err)),
            })?;
        // An encoded namespace may span several segments: decode from full paths instead
        // when a prefix continues (`j` segments); list those recursively.
        let mut namespaces = Vec::new();
        for common in listing {
            let parts = parts_after(&common, &prefix);
            let Some(first) = parts.first() else { continue };
            if !first.starts_with('i') {
                continue;
            }
            let full: Vec<String> = self
                .objects()
                .list(&common)
                .await?
                .first()
                .map(|path| parts_after(path, &prefix))
                .unwrap_or_default();
            if let Some((ns, _)) = take_id(&full) {
                namespaces.push(ns);
            }
        }
        namespaces.sort();
        namespaces.dedup();
        Ok(namespaces)
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
        let mut writes: Vec<PendingWrite> = writes
            .into_iter()
            .flatten()
            .map(|bytes| wire::decode_write(&bytes))
            .collect::<Result<_>>()?;
        sort_writes(&mut writes);
        Ok(writes)
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

    /// Removes checkpoints (records first) with their writes; the values no checkpoint
    /// of `keep` uses are left to `collect_garbage` (see `unused_values`).
    async fn remove_checkpoints(
        &self,
        thread_id: &str,
        namespace: &str,
        doomed: &[String],
        keep: &[String],
    ) -> Result<u64> {
        if doomed.is_empty() {
            return Ok(0);
        }
        let unused = self.unused_values(thread_id, namespace, keep, None).await?;
        let marker = self.mark_unused(thread_id, namespace, &unused).await?;
        self.remove_run_markers(thread_id, namespace, doomed)
            .await?;
        let records: Vec<Path> = doomed
            .iter()
            .map(|id| self.keys().checkpoint(thread_id, namespace, id))
            .collect();
        self.objects().delete_many(records).await?;
        for id in doomed {
            self.objects()
                .delete_all(&self.keys().writes(thread_id, namespace, id))
                .await?;
        }
        self.touch_marker(marker).await?;
        Ok(doomed.len() as u64)
    }

    /// Removes the checkpoints `doomed` (records read, oldest first) of a retention sweep
    /// as [`Self::remove_checkpoints`] does, but one record at a time oldest first, so a
    /// reader never sees a hole; the values they used that no checkpoint of `keep` uses
    /// are left to `collect_garbage`.
    pub(super) async fn retire_checkpoints(
        &self,
        thread_id: &str,
        namespace: &str,
        doomed: &[Checkpoint],
        keep: &[String],
    ) -> Result<u64> {
        if doomed.is_empty() {
            return Ok(0);
        }
        let theirs = doomed
            .iter()
            .flat_map(|record| record.channel_versions.clone())
            .collect();
        let unused = self
            .unused_values(thread_id, namespace, keep, Some(theirs))
            .await?;
        let marker = self.mark_unused(thread_id, namespace, &unused).await?;
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
}

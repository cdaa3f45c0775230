use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;
use storage_core::carried::admit;

use async_trait::async_trait;
use serde_json::Value;
use storage_core::checkpoint::{
    indexed_writes, sort_writes, validate_get_checkpoint, validate_put_writes,
};
use storage_core::validate::{validate_id, validate_ids, validate_limit};
use storage_core::{
    ChannelValue, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore,
    CheckpointTuple, PendingWrite, Result, Retention, StorageError,
};

use super::MemoryBackend;
use crate::store::{Chain, Record, Thread};

#[async_trait]
impl CheckpointStore for MemoryBackend {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        let checkpoint = admit("put_checkpoint", checkpoint)?;
        self.op("put_checkpoint", |data| {
            checkpoint.validate_put(&new_versions)?;
            let mut thread = data
                .threads
                .entry(checkpoint.thread_id.clone())
                .or_default();
            let chain = thread
                .namespaces
                .entry(checkpoint.namespace.clone())
                .or_default();
            for (channel, version, value) in checkpoint.new_blobs(&new_versions) {
                let versions = chain.blobs.entry(channel.to_owned()).or_default();
                versions
                    .entry(version.to_owned())
                    .or_insert_with(|| Arc::new(value.clone()));
            }
            let mut checkpoint = checkpoint;
            checkpoint.channel_values.clear();
            let values = chain.values_of(&checkpoint);
            chain.insert_record(Record { checkpoint, values });
            Ok(())
        })
    }

    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        self.op("get_checkpoint", |data| {
            validate_get_checkpoint(thread_id, namespace, checkpoint_id)?;
            let Some(thread) = data.threads.get(thread_id) else {
                return Ok(None);
            };
            let Some(chain) = thread.namespaces.get(namespace) else {
                return Ok(None);
            };
            let record = match checkpoint_id {
                Some(id) => chain.checkpoints.get(id),
                None => chain.checkpoints.values().next_back(),
            };
            Ok(record.map(|record| chain.tuple(record)))
        })
    }

    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let query = admit("list_checkpoints", query)?;
        self.op("list_checkpoints", |data| {
            query.validate()?;
            let Some(thread) = data.threads.get(&query.thread_id) else {
                return Ok(Vec::new());
            };
            // Newest first; across namespaces, equal ids by namespace ascending. Each
            // namespace is walked newest first from `before` and the walks are merged, so a
            // listing reads what it returns, not the thread's history.
            let before = query
                .before
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded);
            let mut walks: Vec<_> = thread
                .namespaces
                .iter()
                .filter(|(namespace, _)| query.namespace.as_ref().is_none_or(|ns| ns == *namespace))
                .map(|(namespace, chain)| {
                    let newest_first = chain
                        .checkpoints
                        .range::<str, _>((Bound::Unbounded, before))
                        .rev()
                        .map(|(_, record)| record)
                        .filter(|record| {
                            let checkpoint = &record.checkpoint;
                            query.admits(namespace, &checkpoint.id, &checkpoint.metadata)
                        });
                    (chain, newest_first.peekable())
                })
                .collect();
            let limit = query.limit.unwrap_or(usize::MAX);
            let mut found = Vec::new();
            while found.len() < limit {
                // Walks are in namespace order: the first holding the greatest id wins ties.
                let mut next: Option<(usize, &str)> = None;
                for (position, (_, walk)) in walks.iter_mut().enumerate() {
                    if let Some(record) = walk.peek() {
                        let record_id = record.checkpoint.id.as_str();
                        if next.is_none_or(|(_, id)| record_id > id) {
                            next = Some((position, record_id));
                        }
                    }
                }
                let Some((position, _)) = next else { break };
                let (chain, walk) = &mut walks[position];
                let record = walk.next().expect("peeked");
                // Values are resolved only for the checkpoints returned.
                found.push(chain.tuple(record));
            }
            Ok(found)
        })
    }

    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, ChannelValue)>,
    ) -> Result<()> {
        let writes = admit("put_writes", writes)?;
        self.op("put_writes", |data| {
            validate_put_writes(&key, task_id, &writes)?;
            let mut thread = data.threads.entry(key.thread_id.clone()).or_default();
            let chain = thread.namespaces.entry(key.namespace.clone()).or_default();
            let stored = chain.writes.entry(key.checkpoint_id.clone()).or_default();
            for (write, replaces) in indexed_writes(task_id, task_path, writes) {
                let slot = (write.task_id.clone(), write.index);
                if replaces || !stored.contains_key(&slot) {
                    stored.insert(slot, write);
                }
            }
            Ok(())
        })
    }

    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        self.op("get_writes", |data| {
            key.validate()?;
            let writes = data
                .threads
                .get(&key.thread_id)
                .and_then(|thread| {
                    thread
                        .namespaces
                        .get(&key.namespace)
                        .map(|chain| chain.writes_of(&key.checkpoint_id))
                })
                .unwrap_or_default();
            Ok(writes)
        })
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        self.op("delete_thread", |data| {
            validate_id("thread id", thread_id)?;
            Ok(data
                .threads
                .remove(thread_id)
                .map_or(0, |(_, thread)| thread.checkpoint_count()))
        })
    }

    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        self.op("prune_checkpoints", |data| {
            validate_id("thread id", thread_id)?;
            validate_limit("checkpoints to keep", keep_last)?;
            let Some(mut thread) = data.threads.get_mut(thread_id) else {
                return Ok(0);
            };
            let mut removed = 0;
            for chain in thread.namespaces.values_mut() {
                let doomed: Vec<String> = chain
                    .checkpoints
                    .keys()
                    .rev()
                    .skip(keep_last)
                    .cloned()
                    .collect();
                removed += chain.remove_checkpoints(&doomed);
            }
            Ok(removed)
        })
    }

    async fn retain_checkpoints(&self, retention: Retention) -> Result<u64> {
        self.op("retain_checkpoints", |data| {
            retention.check()?;
            if retention.is_unbounded() {
                return Ok(0);
            }
            let mut removed = 0;
            for mut thread in data.threads.iter_mut() {
                for chain in thread.namespaces.values_mut() {
                    let expired = retention.expired_prefix_in(
                        chain.checkpoints.len(),
                        chain
                            .checkpoints
                            .values()
                            .map(|record| record.checkpoint.created_at.to_utc()),
                    );
                    let doomed: Vec<String> =
                        chain.checkpoints.keys().take(expired).cloned().collect();
                    removed += chain.remove_checkpoints(&doomed);
                }
            }
            Ok(removed)
        })
    }

    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        self.op("copy_thread", |data| {
            validate_id("thread id", source_thread_id)?;
            validate_id("thread id", target_thread_id)?;
            // Clone first and release the source: holding one map entry while taking
            // another can deadlock when both live in the same shard.
            let source = data
                .threads
                .get(source_thread_id)
                .map(|thread| thread.clone());
            let Some(mut copy) = source.filter(|thread| thread.checkpoint_count() > 0) else {
                return Err(StorageError::not_found(format!(
                    "thread {source_thread_id:?} has no checkpoints to copy"
                )));
            };
            copy.retarget(target_thread_id);
            let mut target = data.threads.entry(target_thread_id.to_owned()).or_default();
            if target.checkpoint_count() > 0 {
                return Err(StorageError::already_exists(format!(
                    "thread {target_thread_id:?} already has checkpoints"
                )));
            }
            let copied = copy.checkpoint_count();
            *target = copy;
            Ok(copied)
        })
    }

    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        self.op("delete_for_runs", |data| {
            validate_ids("run id", run_ids.iter().map(String::as_str))?;
            if run_ids.is_empty() {
                return Ok(0);
            }
            let runs: HashSet<&str> = run_ids.iter().map(String::as_str).collect();
            let mut removed = 0;
            for mut thread in data.threads.iter_mut() {
                for chain in thread.namespaces.values_mut() {
                    let doomed: Vec<String> = chain
                        .checkpoints
                        .values()
                        .filter(|record| {
                            record
                                .checkpoint
                                .metadata
                                .get("run_id")
                                .and_then(Value::as_str)
                                .is_some_and(|run| runs.contains(run))
                        })
                        .map(|record| record.checkpoint.id.clone())
                        .collect();
                    removed += chain.remove_checkpoints(&doomed);
                }
            }
            Ok(removed)
        })
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.op("list_thread_ids", |data| {
            validate_limit("thread id limit", limit)?;
            storage_core::policy::check_after("thread listing cursor", after)?;
            let mut ids: Vec<String> = data
                .threads
                .iter()
                .filter(|thread| after.is_none_or(|after| thread.key().as_str() > after))
                .filter(|thread| {
                    thread
                        .namespaces
                        .values()
                        .any(|chain| !chain.checkpoints.is_empty())
                })
                .map(|thread| thread.key().clone())
                .collect();
            ids.sort_unstable();
            ids.truncate(limit);
            Ok(ids)
        })
    }
}

impl Thread {
    fn checkpoint_count(&self) -> u64 {
        self.namespaces
            .values()
            .map(|chain| chain.checkpoints.len() as u64)
            .sum()
    }

    fn retarget(&mut self, thread_id: &str) {
        for chain in self.namespaces.values_mut() {
            for record in chain.checkpoints.values_mut() {
                record.checkpoint.thread_id = thread_id.to_owned();
            }
        }
    }
}

impl Chain {
    /// The checkpoint with its channel values and its pending writes.
    fn tuple(&self, record: &Record) -> CheckpointTuple {
        let mut checkpoint = record.checkpoint.clone();
        let named = &record.checkpoint.channel_versions;
        let mut values = Vec::with_capacity(named.len());
        for ((channel, version), value) in named.iter().zip(&record.values) {
            // A value stored after the record (a later put of the same version) is in
            // `blobs` only.
            let value = value
                .as_deref()
                .or_else(|| self.blob(channel, version).map(Arc::as_ref));
            if let Some(value) = value {
                values.push((channel.clone(), value.clone()));
            }
        }
        // Already in channel order: the map is built without a search per entry.
        checkpoint.channel_values = values.into_iter().collect();
        let pending_writes = self.writes_of(&checkpoint.id);
        CheckpointTuple {
            checkpoint,
            pending_writes,
        }
    }

    fn writes_of(&self, checkpoint_id: &str) -> Vec<PendingWrite> {
        let mut writes: Vec<PendingWrite> = self
            .writes
            .get(checkpoint_id)
            .map(|stored| stored.values().cloned().collect())
            .unwrap_or_default();
        sort_writes(&mut writes);
        writes
    }

    /// The values `checkpoint` names, in the order of its `channel_versions` (see
    /// [`Record::values`]). A step changes few channels, so each version the chain's newest
    /// record also names is taken from it, by a walk of both maps in channel order; only
    /// the others are looked up. The newest record's value is the one in `blobs`: a value
    /// stays as stored while any record names it.
    fn values_of(&self, checkpoint: &Checkpoint) -> Vec<Option<Arc<ChannelValue>>> {
        let newest = self.checkpoints.values().next_back();
        let mut known = newest
            .map(|record| {
                record
                    .checkpoint
                    .channel_versions
                    .iter()
                    .zip(&record.values)
            })
            .into_iter()
            .flatten()
            .peekable();
        checkpoint
            .channel_versions
            .iter()
            .map(|(channel, version)| {
                while known.next_if(|((known, _), _)| *known < channel).is_some() {}
                match known.peek() {
                    Some(((known, known_version), Some(value)))
                        if *known == channel && *known_version == version =>
                    {
                        Some(Arc::clone(value))
                    }
                    _ => self.blob(channel, version).cloned(),
                }
            })
            .collect()
    }

    /// The value stored for `channel` at `version`, if any.
    fn blob(&self, channel: &str, version: &str) -> Option<&Arc<ChannelValue>> {
        self.blobs.get(channel)?.get(version)
    }

    /// Stores a record, counting the values it uses; a record it replaces releases its own.
    fn insert_record(&mut self, record: Record) {
        for (channel, version) in &record.checkpoint.channel_versions {
            *self
                .uses
                .entry((channel.clone(), version.clone()))
                .or_default() += 1;
        }
        let id = record.checkpoint.id.clone();
        if let Some(replaced) = self.checkpoints.insert(id, record) {
            self.release(&replaced.checkpoint);
        }
    }

    /// Releases the values `record` used; a value no stored checkpoint uses any more goes.
    fn release(&mut self, record: &Checkpoint) {
        for (channel, version) in &record.channel_versions {
            let key = (channel.clone(), version.clone());
            let Some(count) = self.uses.get_mut(&key) else {
                continue;
            };
            *count -= 1;
            if *count > 0 {
                continue;
            }
            self.uses.remove(&key);
            if let Some(versions) = self.blobs.get_mut(channel) {
                versions.remove(version);
                if versions.is_empty() {
                    self.blobs.remove(channel);
                }
            }
        }
    }

    /// Removes checkpoints with their writes, and every value no remaining checkpoint uses,
    /// at a cost proportional to what is removed.
    fn remove_checkpoints(&mut self, ids: &[String]) -> u64 {
        let mut removed = 0;
        for id in ids {
            self.writes.remove(id);
            if let Some(record) = self.checkpoints.remove(id) {
                self.release(&record.checkpoint);
                removed += 1;
            }
        }
        removed
    }
}

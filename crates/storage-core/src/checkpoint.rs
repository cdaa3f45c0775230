//! Workflow checkpoints, following LangGraph's checkpointer contract.
//!
//! A checkpoint is addressed by (thread id, namespace, checkpoint id); the namespace is `""`
//! unless the caller names one (LangGraph's `checkpoint_ns`). Checkpoint ids sort
//! lexicographically in creation order ([`new_checkpoint_id`] makes such ids), so "latest"
//! is "greatest id".
//!
//! Channel values are stored once per (channel, version): a checkpoint names the version of
//! every channel in `channel_versions`, and `put_checkpoint` writes a value only for the
//! channels in `new_versions`. Reading resolves each named version to its stored value; a
//! channel with no stored value for its version is absent from `channel_values`.

use std::collections::BTreeMap;

use crate::channel_value::ChannelValue;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::json::Metadata;
use crate::time;
use crate::validate::{validate_id, validate_ids};

/// Channel name to version. Versions are opaque strings compared for equality only.
pub type ChannelVersions = BTreeMap<String, String>;

/// A workflow snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The thread (one workflow run history).
    pub thread_id: String,
    /// The namespace within the thread (`""` for the root graph, else a subgraph's path).
    pub namespace: String,
    /// The checkpoint's id; ids sort in creation order.
    pub id: String,
    /// The id of the checkpoint this one follows, as the caller names it.
    pub parent_id: Option<String>,
    /// Channel values; on write only those in `new_versions` are stored.
    pub channel_values: BTreeMap<String, ChannelValue>,
    /// The version of every channel at this checkpoint.
    pub channel_versions: ChannelVersions,
    /// Per node, the channel versions it has seen.
    pub versions_seen: BTreeMap<String, ChannelVersions>,
    /// Free-form metadata (LangGraph: `source`, `step`, `run_id`, ...); list filters match it.
    pub metadata: Metadata,
    /// When the checkpoint was taken (LangGraph's `ts`), as the caller gives it: the instant
    /// and its offset read back unchanged, to the nanosecond. The text may differ: it is
    /// written as RFC 3339 with `Z` for a zero offset and 0, 3, 6 or 9 fractional digits
    /// (`+00:00` reads back as `Z`, `.1` as `.100`).
    pub created_at: CheckpointTime,
    /// The checkpoint format version of the caller's framework (LangGraph's `v`, 4 in
    /// LangGraph 0.4 and later), stored and returned as given. Records written before the
    /// field existed read as [`LEGACY_FORMAT_VERSION`].
    #[serde(default = "legacy_format_version")]
    pub format_version: u32,
    /// The channels the step that produced this checkpoint updated (LangGraph's
    /// `updated_channels`), stored and returned as given; `None` when the caller does not
    /// say, and for records written before the field existed (which therefore read back
    /// byte for byte as they were written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_channels: Option<Vec<String>>,
}

/// A checkpoint's timestamp: a point in time with the offset the caller wrote it in.
pub type CheckpointTime = chrono::DateTime<chrono::FixedOffset>;

/// The format version [`Checkpoint::new`] sets: LangGraph's current `v`.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 4;

/// The format version of a record written before checkpoints carried one: LangGraph's
/// first format.
pub const LEGACY_FORMAT_VERSION: u32 = 1;

fn legacy_format_version() -> u32 {
    LEGACY_FORMAT_VERSION
}

impl Checkpoint {
    /// An empty checkpoint in `namespace` of `thread_id`, taken now.
    pub fn new(
        thread_id: impl Into<String>,
        namespace: impl Into<String>,
        id: impl Into<String>,
    ) -> Self {
        Checkpoint {
            thread_id: thread_id.into(),
            namespace: namespace.into(),
            id: id.into(),
            parent_id: None,
            channel_values: BTreeMap::new(),
            channel_versions: ChannelVersions::new(),
            versions_seen: BTreeMap::new(),
            metadata: Metadata::new(),
            created_at: time::now().fixed_offset(),
            format_version: CHECKPOINT_FORMAT_VERSION,
            updated_channels: None,
        }
    }

    /// The address of this checkpoint.
    pub fn key(&self) -> CheckpointKey {
        CheckpointKey {
            thread_id: self.thread_id.clone(),
            namespace: self.namespace.clone(),
            checkpoint_id: self.id.clone(),
        }
    }

    /// Checks ids and that every new version is the version the checkpoint names,
    /// before any I/O.
    pub fn validate_put(&self, new_versions: &ChannelVersions) -> Result<()> {
        validate_id("thread id", &self.thread_id)?;
        validate_checkpoint_namespace(&self.namespace)?;
        validate_id("checkpoint id", &self.id)?;
        if let Some(parent) = &self.parent_id {
            validate_id("parent checkpoint id", parent)?;
        }
        validate_ids(
            "channel name",
            self.channel_versions.keys().map(String::as_str),
        )?;
        crate::policy::check_channel_versions(&self.channel_versions)?;
        crate::policy::check_channel_versions(new_versions)?;
        for (node, seen) in &self.versions_seen {
            validate_id("node name in versions_seen", node)?;
            crate::policy::check_channel_versions(seen)?;
        }
        for (channel, value) in &self.channel_values {
            value.check(&format!("value of channel {channel:?}"))?;
        }
        crate::policy::check_metadata("checkpoint metadata", &self.metadata)?;
        if let Some(updated) = &self.updated_channels {
            validate_ids("updated channel name", updated.iter().map(String::as_str))?;
        }
        for (channel, version) in new_versions {
            match self.channel_versions.get(channel) {
                Some(named) if named == version => {}
                Some(named) => {
                    return Err(StorageError::invalid_input(format!(
                        "new version {version:?} of channel {channel:?} differs from the \
                         checkpoint's version {named:?}"
                    )))
                }
                None => {
                    return Err(StorageError::invalid_input(format!(
                        "new version of channel {channel:?} is not in the checkpoint's \
                         channel_versions"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The blobs a put stores: (channel, version, value) for each new version that has a
    /// value. A new version without a value marks the channel empty at that version.
    pub fn new_blobs<'a>(
        &'a self,
        new_versions: &'a ChannelVersions,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a ChannelValue)> + 'a {
        new_versions.iter().filter_map(move |(channel, version)| {
            self.channel_values
                .get(channel)
                .map(|value| (channel.as_str(), version.as_str(), value))
        })
    }

    /// Every channel version of this checkpoint, as the caller passes `new_versions` when
    /// it wants every channel stored (the seed's `store_checkpoint`).
    pub fn all_versions(&self) -> ChannelVersions {
        self.channel_versions.clone()
    }
}

/// The address of one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckpointKey {
    /// The thread.
    pub thread_id: String,
    /// The namespace within the thread.
    pub namespace: String,
    /// The checkpoint id.
    pub checkpoint_id: String,
}

impl CheckpointKey {
    /// A key in the root namespace `""`.
    pub fn new(thread_id: impl Into<String>, checkpoint_id: impl Into<String>) -> Self {
        CheckpointKey {
            thread_id: thread_id.into(),
            namespace: String::new(),
            checkpoint_id: checkpoint_id.into(),
        }
    }
    /// Sets the namespace.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
    /// Checks the three ids, before any I/O.
    pub fn validate(&self) -> Result<()> {
        validate_get_checkpoint(&self.thread_id, &self.namespace, Some(&self.checkpoint_id))
    }
}

/// Checks a `get_checkpoint` call (a checkpoint's address; without an id, the latest of the
/// (thread, namespace)), before any I/O.
///
/// ```
/// use storage_core::checkpoint::validate_get_checkpoint;
/// assert!(validate_get_checkpoint("thread-1", "", None).is_ok());
/// assert!(validate_get_checkpoint("", "", Some("1")).is_err());
/// ```
pub fn validate_get_checkpoint(
    thread_id: &str,
    namespace: &str,
    checkpoint_id: Option<&str>,
) -> Result<()> {
    validate_id("thread id", thread_id)?;
    validate_checkpoint_namespace(namespace)?;
    match checkpoint_id {
        Some(id) => validate_id("checkpoint id", id),
        None => Ok(()),
    }
}

/// Checks a checkpoint namespace: `""` (the root) or a valid id.
pub fn validate_checkpoint_namespace(namespace: &str) -> Result<()> {
    if namespace.is_empty() {
        Ok(())
    } else {
        validate_id("checkpoint namespace", namespace)
    }
}

/// A write a task made towards the next checkpoint, stored before that checkpoint exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The task that wrote.
    pub task_id: String,
    /// The task's path in the graph; writes are returned ordered by it first.
    pub task_path: String,
    /// Position in the task's write list, or a fixed negative index for a special channel.
    pub index: i64,
    /// The channel written.
    pub channel: String,
    /// The value written.
    pub value: ChannelValue,
}

/// LangGraph's error channel.
pub const ERROR_CHANNEL: &str = "__error__";
/// LangGraph's scheduled channel.
pub const SCHEDULED_CHANNEL: &str = "__scheduled__";
/// LangGraph's interrupt channel.
pub const INTERRUPT_CHANNEL: &str = "__interrupt__";
/// LangGraph's resume channel.
pub const RESUME_CHANNEL: &str = "__resume__";

/// The fixed index of a special channel, or `None` for a normal one.
///
/// A write to a special channel replaces an earlier one at the same (task, index):
/// last writer wins. A write to a normal channel is kept only if its (task, index) is
/// free: first writer wins.
pub fn special_write_index(channel: &str) -> Option<i64> {
    match channel {
        ERROR_CHANNEL => Some(-1),
        SCHEDULED_CHANNEL => Some(-2),
        INTERRUPT_CHANNEL => Some(-3),
        RESUME_CHANNEL => Some(-4),
        _ => None,
    }
}

/// Turns a task's `(channel, value)` list into the writes to store, each with its index
/// (position, or the special channel's fixed index) and whether it replaces an existing
/// write at the same (task, index).
pub fn indexed_writes(
    task_id: &str,
    task_path: &str,
    writes: Vec<(String, ChannelValue)>,
) -> Vec<(PendingWrite, bool)> {
    writes
        .into_iter()
        .enumerate()
        .map(|(position, (channel, value))| {
            let special = special_write_index(&channel);
            let index = special.unwrap_or(position as i64);
            let write = PendingWrite {
                task_id: task_id.to_owned(),
                task_path: task_path.to_owned(),
                index,
                channel,
                value,
            };
            (write, special.is_some())
        })
        .collect()
}

/// Checks a `put_writes` call, before any I/O.
pub fn validate_put_writes(
    key: &CheckpointKey,
    task_id: &str,
    writes: &[(String, ChannelValue)],
) -> Result<()> {
    key.validate()?;
    validate_id("task id", task_id)?;
    validate_ids(
        "channel name",
        writes.iter().map(|(channel, _)| channel.as_str()),
    )?;
    writes.iter().try_for_each(|(channel, value)| {
        value.check(&format!(
            "value of the pending write to channel {channel:?}"
        ))
    })
}

/// Sorts writes into the order they are returned in: (task path, task id, index).
pub fn sort_writes(writes: &mut [PendingWrite]) {
    writes.sort_by(|a, b| {
        (&a.task_path, &a.task_id, a.index).cmp(&(&b.task_path, &b.task_id, b.index))
    });
}

/// A checkpoint with the writes pending against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointTuple {
    /// The checkpoint, with its channel values resolved.
    pub checkpoint: Checkpoint,
    /// Writes stored against its id, ordered by (task path, task id, index).
    pub pending_writes: Vec<PendingWrite>,
}

/// What [`CheckpointStore::list_checkpoints`] returns.
///
/// Newest first (greatest id; across namespaces, ties by namespace ascending); then
/// `before` keeps only strictly older ids; then `filter` keeps only checkpoints whose
/// metadata has every given top-level key with an equal value; then `limit` cuts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointQuery {
    /// The thread to list.
    pub thread_id: String,
    /// Only this namespace; `None` lists every namespace of the thread.
    pub namespace: Option<String>,
    /// Only ids strictly less than this one.
    pub before: Option<String>,
    /// At most this many; `Some(0)` lists nothing, as in LangGraph.
    pub limit: Option<usize>,
    /// Exact, type-strict, AND-ed match on top-level metadata keys.
    pub filter: Metadata,
}

impl CheckpointQuery {
    /// Every checkpoint of `thread_id` in the root namespace.
    pub fn thread(thread_id: impl Into<String>) -> Self {
        CheckpointQuery {
            thread_id: thread_id.into(),
            namespace: Some(String::new()),
            ..Self::default()
        }
    }

    /// Checks ids and limit, before any I/O.
    pub fn validate(&self) -> Result<()> {
        validate_id("thread id", &self.thread_id)?;
        if let Some(namespace) = &self.namespace {
            validate_checkpoint_namespace(namespace)?;
        }
        if let Some(before) = &self.before {
            validate_id("checkpoint id", before)?;
        }
        crate::policy::check_metadata("checkpoint list filter", &self.filter)
    }

    /// Whether a checkpoint in `namespace` with `id` and `metadata` is in the result,
    /// before the limit is applied.
    pub fn admits(&self, namespace: &str, id: &str, metadata: &Metadata) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.before.as_deref().is_none_or(|before| id < before)
            && crate::json::metadata_matches(metadata, &self.filter)
    }
}

/// Validates every put of a batch, naming the position of the first bad one.
pub fn validate_puts(puts: &[(Checkpoint, ChannelVersions)]) -> Result<()> {
    for (position, (checkpoint, new_versions)) in puts.iter().enumerate() {
        checkpoint.validate_put(new_versions).map_err(|err| {
            StorageError::new(
                err.kind(),
                format!("checkpoint {position} of the batch: {}", err.message()),
            )
        })?;
    }
    Ok(())
}

/// A batch of puts grouped by thread: the threads in order of first appearance, each
/// thread's puts in the batch's order, and for each put (by position) the group it went
/// to. How a batch is stored thread by thread.
///
/// ```
/// use storage_core::checkpoint::group_by_thread;
/// use storage_core::Checkpoint;
///
/// let put = |thread: &str, id: &str| (Checkpoint::new(thread, "", id), Default::default());
/// let (groups, group_of) = group_by_thread(vec![put("a", "1"), put("b", "2"), put("a", "3")]);
/// assert_eq!(groups.len(), 2);
/// assert_eq!(groups[0][1].0.id, "3");
/// assert_eq!(group_of, [0, 1, 0]);
/// ```
#[allow(clippy::type_complexity)]
pub fn group_by_thread(
    puts: Vec<(Checkpoint, ChannelVersions)>,
) -> (Vec<Vec<(Checkpoint, ChannelVersions)>>, Vec<usize>) {
    let mut groups: Vec<Vec<(Checkpoint, ChannelVersions)>> = Vec::new();
    let mut group_of = Vec::with_capacity(puts.len());
    for put in puts {
        let group = match groups
            .iter()
            .position(|group| group[0].0.thread_id == put.0.thread_id)
        {
            Some(group) => group,
            None => {
                groups.push(Vec::new());
                groups.len() - 1
            }
        };
        groups[group].push(put);
        group_of.push(group);
    }
    (groups, group_of)
}

/// Makes a new checkpoint id: a UUIDv7 string.
///
/// Ids made by one process sort, as strings, in the order they were made, even within one
/// millisecond and across threads; ids from different processes sort by their time.
///
/// ```
/// let a = storage_core::new_checkpoint_id();
/// let b = storage_core::new_checkpoint_id();
/// assert!(a < b);
/// ```
pub fn new_checkpoint_id() -> String {
    // `now_v7` shares one context per process that keeps ids strictly increasing.
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// Checkpoint storage.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Stores a checkpoint and the channel values of `new_versions`, visible together or
    /// not at all. Storing an existing id again replaces its record; a stored value for a
    /// (channel, version) is never replaced.
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()>;

    /// Stores several checkpoints, each exactly as [`put_checkpoint`](Self::put_checkpoint)
    /// would, in order (a later put of the same id replaces an earlier one): what group
    /// commit sends as one batch. Every item is validated before any is stored, so bad input
    /// stores nothing. Backends with transactions store the batch atomically; the others
    /// store item by item, so an error may leave part of the batch stored, and since each
    /// put replaces its record, retrying the whole batch is safe.
    ///
    /// The default stores each thread's items one after another through `put_checkpoint`,
    /// and different threads' items at the same time.
    async fn put_checkpoints(&self, puts: Vec<(Checkpoint, ChannelVersions)>) -> Result<()> {
        let puts = crate::carried::admit("put_checkpoints", puts)?;
        validate_puts(&puts)?;
        let (threads, _) = group_by_thread(puts);
        futures::future::try_join_all(threads.into_iter().map(|thread| async move {
            for (checkpoint, new_versions) in thread {
                self.put_checkpoint(checkpoint, new_versions).await?;
            }
            Ok::<(), StorageError>(())
        }))
        .await?;
        Ok(())
    }

    /// The checkpoint with `checkpoint_id`, or with the greatest id in (thread, namespace)
    /// when `checkpoint_id` is `None`. An unknown id is `None`, never the latest.
    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>>;

    /// Checkpoints of a thread; see [`CheckpointQuery`]. Channel values are loaded only for
    /// the checkpoints returned.
    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>>;

    /// Stores a task's writes against a checkpoint id (which may not be stored yet). Each
    /// write gets its position as index, or its special channel's fixed index; a normal
    /// write keeps the first value stored at its (task, index), a special one the last.
    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, ChannelValue)>,
    ) -> Result<()>;

    /// The writes stored against a checkpoint id, ordered by (task path, task id, index).
    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>>;

    /// Checkpoints of every thread, newest first, with their values and pending writes
    /// (LangGraph's `list` without a thread); see [`CheckpointSearch`](crate::CheckpointSearch)
    /// for order, filter and paging.
    ///
    /// The default searches thread by thread through `list_thread_ids` and
    /// `list_checkpoints`.
    async fn search_checkpoints(
        &self,
        search: crate::CheckpointSearch,
    ) -> Result<crate::Page<CheckpointTuple>> {
        let search = crate::carried::admit("search_checkpoints", search)?;
        crate::search::search_thread_by_thread(self, search).await
    }

    /// For each of `channels`, its history before the checkpoint `key` names: the value of
    /// the nearest ancestor that stores one (walking the parent chain from the target's
    /// parent) and the channel's writes from that ancestor up to the target's parent,
    /// oldest first (see [`ChannelHistory`](crate::ChannelHistory)). LangGraph's delta
    /// channels rebuild their state from it. `None` when the target is not stored; the
    /// walk ends at a parent that is not stored.
    ///
    /// The default reads one ancestor at a time through `get_checkpoint`.
    async fn delta_channel_history(
        &self,
        key: CheckpointKey,
        channels: Vec<String>,
    ) -> Result<Option<BTreeMap<String, crate::ChannelHistory>>> {
        crate::delta::walk_with_reads(self, key, channels).await
    }

    /// Removes every checkpoint, value and write of the thread, in every namespace.
    /// Returns how many checkpoints were removed.
    async fn delete_thread(&self, thread_id: &str) -> Result<u64>;

    /// Keeps the newest `keep_last` checkpoints of each namespace of the thread and removes
    /// the rest with their writes, and every value they used that no survivor uses (a value
    /// no checkpoint named any more before the prune, one `delete_for_runs` left, may stay
    /// until the thread is deleted: unreadable, it takes only space). `keep_last` must be at
    /// least 1 (`InvalidInput` otherwise; use `delete_thread` to remove everything). Returns
    /// how many checkpoints were removed.
    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64>;

    /// Applies `retention` to every thread namespace (the series is one thread and
    /// namespace's checkpoints, by id); a removed checkpoint takes its pending writes and
    /// every value it used that no survivor uses: see [`crate::retention`] for the rule (an oldest-first
    /// prefix of expired records, never the newest, one atomic step per series) and the
    /// cost. Returns how many checkpoints it removed. `keep_last` of 0 is `InvalidInput`; a
    /// retention without limits removes nothing.
    async fn retain_checkpoints(&self, retention: crate::Retention) -> Result<u64>;

    /// Copies a whole thread (every namespace, checkpoint, value and write, with their ids)
    /// to `target_thread_id`, which must have no checkpoints (`AlreadyExists` otherwise).
    /// A source without checkpoints is `NotFound`. Returns how many checkpoints were copied.
    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64>;

    /// Removes, in every thread and namespace, each checkpoint whose metadata `run_id` is
    /// one of `run_ids`, with its writes. Returns how many checkpoints were removed.
    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64>;

    /// Thread ids with at least one checkpoint, sorted, greater than `after`, at most
    /// `limit` (1 or more) of them: how `storectl migrate` finds every thread. Backends
    /// that cannot enumerate answer `Unsupported`.
    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let _ = (after, limit);
        Err(StorageError::unsupported(
            "this backend cannot list thread ids",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checkpoint_ids_increase_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let ids: Vec<String> = (0..20_000).map(|_| new_checkpoint_id()).collect();
                    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
                    ids
                })
            })
            .collect();
        let mut all: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }

    #[test]
    fn special_writes_take_fixed_indexes() {
        let writes = indexed_writes(
            "t",
            "p",
            vec![
                ("a".into(), json!(1).into()),
                (ERROR_CHANNEL.into(), json!("boom").into()),
                ("b".into(), json!(2).into()),
            ],
        );
        let summary: Vec<(i64, bool)> = writes
            .iter()
            .map(|(w, replace)| (w.index, *replace))
            .collect();
        assert_eq!(summary, vec![(0, false), (-1, true), (2, false)]);
    }

    #[test]
    fn new_versions_must_match_the_checkpoint() {
        let mut cp = Checkpoint::new("t", "", "1");
        cp.channel_versions.insert("a".into(), "2".into());
        let ok: ChannelVersions = [("a".to_string(), "2".to_string())].into();
        let stale: ChannelVersions = [("a".to_string(), "1".to_string())].into();
        let unknown: ChannelVersions = [("b".to_string(), "1".to_string())].into();
        assert!(cp.validate_put(&ok).is_ok());
        assert!(cp.validate_put(&stale).is_err());
        assert!(cp.validate_put(&unknown).is_err());
    }

    #[test]
    fn records_of_the_previous_release_still_read() {
        let record = br#"{"v":1,"kind":"checkpoint","data":{"thread_id":"t","namespace":"",
            "id":"c","parent_id":null,"channel_values":{},"channel_versions":{},
            "versions_seen":{},"metadata":{},"created_at":"2026-01-01T00:00:00.000001Z"}}"#;
        let checkpoint: Checkpoint = crate::wire::decode(record).unwrap();
        assert_eq!(checkpoint.format_version, LEGACY_FORMAT_VERSION);
        assert_eq!(
            checkpoint.created_at.to_rfc3339(),
            "2026-01-01T00:00:00.000001+00:00"
        );
    }
}

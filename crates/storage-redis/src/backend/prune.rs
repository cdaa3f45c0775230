//! Removing a namespace's oldest checkpoints (`prune_checkpoints` and retention sweeps), with
//! their pending writes and every channel value no remaining checkpoint names, at a cost
//! that follows what is removed rather than the namespace's size.
//!
//! Which values are still named comes from the namespace's lazy index (`users`, `unidx`,
//! `idx`: see `scripts/checkpoint_index.rs`), trusted only while `idx` equals the change
//! counter `chg`. Trusted, a prune reads just the victims (the oldest ids, by rank), the
//! checkpoints put since the last prune and the counts of the fields they name, and takes
//! the victims' names off. Otherwise (a previous release or a replacing put, delete or
//! copy changed the namespace since) it counts every surviving record once, as the
//! previous release did on every prune, and the script replaces the index with the count.
//! Either way one script applies the removal only if `chg` still holds what was read
//! first, so nothing it decided from can have changed; if it moved, the prune reads again.

use std::collections::{BTreeMap, BTreeSet};

use deadpool_redis::redis;
use storage_core::time::Timestamp;
use storage_core::{wire, Checkpoint, Result, Retention, StorageError};

use super::{RedisBackend, INDEX_BATCH};
use crate::error::BACKEND;
use crate::keys::{blob_field, ThreadKeys};

/// How often prune retries a namespace that changed under it.
const PRUNE_ATTEMPTS: usize = 8;
/// Ids per `HMGET` of records or counts.
const READ_BATCH: usize = 1_000;
/// (field, count) pairs per script when an index is rebuilt, so no script runs long.
const COUNTS_PER_SCRIPT: usize = 2_000;

/// What a prune keeps of one checkpoint namespace.
#[derive(Debug, Clone, Copy)]
pub(super) enum Keep<'a> {
    /// The newest n checkpoints (`prune_checkpoints`).
    Newest(usize),
    /// What the retention leaves (`retain_checkpoints`).
    Unexpired(&'a Retention),
}

/// A checkpoint's age, for the rule.
pub(super) fn created_at(record: Option<&[u8]>) -> Result<Timestamp> {
    match record {
        Some(record) => Ok(Timestamp::from(
            wire::decode::<Checkpoint>(record)?.created_at,
        )),
        // An id without a record: never removed for its age.
        None => Ok(Timestamp::MAX_UTC),
    }
}

/// The blob fields a stored record names.
fn fields_of(record: &[u8]) -> Result<impl Iterator<Item = String>> {
    let checkpoint: Checkpoint = wire::decode(record)?;
    Ok(checkpoint
        .channel_versions
        .into_iter()
        .map(|(channel, version)| blob_field(&channel, &version)))
}

/// What the removal script writes besides removing the victims.
struct Plan {
    /// Whether `users` is replaced (counted from every survivor) rather than updated.
    rebuild: bool,
    /// (blob field, count) for `users`.
    counts: Vec<(String, i64)>,
    /// Blob fields no remaining checkpoint names.
    unused: Vec<String>,
}

impl RedisBackend {
    /// Removes the checkpoints of one namespace that `keep` does not keep, with their
    /// pending writes and every channel value no survivor uses, in one script that
    /// refuses when the namespace changed since it was read (then reads it again).
    ///
    /// "Changed" is the namespace's change counter (`chg`), which every script that adds,
    /// replaces or removes a checkpoint bumps: the size alone misses a removal and a put
    /// in between, or a put that replaces a checkpoint, and such a put may use a value
    /// (a fork names an older checkpoint's version without sending the value again) that
    /// the reads here did not see, which the script would then delete.
    pub(super) async fn prune_namespace(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        keep: Keep<'_>,
    ) -> Result<u64> {
        for _ in 0..PRUNE_ATTEMPTS {
            // The counter first: a change after it is read, or before the script, makes the
            // script refuse, whatever this reads afterwards.
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(thread.changes(hex_ns));
            pipe.cmd("GET").arg(thread.indexed_at(hex_ns));
            pipe.cmd("ZCARD").arg(thread.ids(hex_ns));
            let (changes, indexed_at, len): (Option<String>, Option<String>, usize) =
                self.client.pipeline(&pipe).await?;
            let victims = self.victims(thread, hex_ns, len, keep).await?;
            if victims.is_empty() {
                return Ok(0);
            }
            let plan = if changes.is_some() && changes == indexed_at {
                self.updated_counts(thread, hex_ns, &victims).await?
            } else {
                self.recounted(thread, hex_ns, victims.len()).await?
            };
            let changes = changes.unwrap_or_default();
            if let Some(removed) = self
                .apply_prune(thread, hex_ns, len, &changes, &victims, plan)
                .await?
            {
                return Ok(removed);
            }
        }
        Err(
            StorageError::conflict("the thread kept changing while it was pruned; try again")
                .with_temporary(true),
        )
    }

    /// The ids `keep` removes from a namespace of `len`, oldest first: only the oldest ids
    /// are read (by rank; all scores are 0, so rank order is id order), and for a cutoff
    /// their records until the first survivor.
    async fn victims(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        len: usize,
        keep: Keep<'_>,
    ) -> Result<Vec<String>> {
        let retention = match keep {
            Keep::Newest(kept) => {
                return self.oldest(thread, hex_ns, len.saturating_sub(kept)).await
            }
            Keep::Unexpired(retention) => retention,
        };
        let ids = thread.ids(hex_ns);
        if retention.created_before.is_none() {
            // Counted out by number alone: no reads but the ids themselves.
            let count = (0..len.saturating_sub(1))
                .take_while(|&position| retention.is_expired(position, len, Timestamp::MAX_UTC))
                .count();
            return self.oldest(thread, hex_ns, count).await;
        }
        let mut victims = Vec::new();
        // Never the newest.
        while victims.len() + 1 < len {
            let start = victims.len();
            let end = (start + INDEX_BATCH).min(len - 1);
            let batch: Vec<String> = self
                .client
                .query(redis::cmd("ZRANGE").arg(&ids).arg(start).arg(end - 1))
                .await?;
            if batch.is_empty() {
                // The namespace shrank since its size was read: the script will refuse.
                break;
            }
            let records = self.records(thread, hex_ns, &batch).await?;
            for (id, record) in batch.into_iter().zip(records) {
                if !retention.is_expired(victims.len(), len, created_at(record.as_deref())?) {
                    return Ok(victims);
                }
                victims.push(id);
            }
        }
        Ok(victims)
    }

    /// The `count` oldest ids of a namespace.
    async fn oldest(&self, thread: &ThreadKeys, hex_ns: &str, count: usize) -> Result<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        self.client
            .query(
                redis::cmd("ZRANGE")
                    .arg(thread.ids(hex_ns))
                    .arg(0)
                    .arg(count - 1),
            )
            .await
    }

    /// The stored records of `ids`, in order (`None` for an id without one).
    async fn records(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.hash_values(&thread.records(hex_ns), ids).await
    }

    /// `HMGET` of `fields` of `key` in batches, one pipeline.
    async fn hash_values<T: redis::FromRedisValue>(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<T>>> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for batch in fields.chunks(READ_BATCH) {
            pipe.cmd("HMGET").arg(key).arg(batch);
        }
        let parts: Vec<Vec<Option<T>>> = self.client.pipeline(&pipe).await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// With a current index: the counts of the fields the checkpoints put since the last
    /// prune and the victims name, after adding the first and taking off the second; a
    /// field a victim named that ends at 0 is unused.
    async fn updated_counts(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        victims: &[String],
    ) -> Result<Plan> {
        let unindexed: Vec<String> = self
            .client
            .query(redis::cmd("SMEMBERS").arg(thread.unindexed(hex_ns)))
            .await?;
        let mut delta: BTreeMap<String, i64> = BTreeMap::new();
        // An id both put since and removed now adds and takes off the same names.
        for (ids, by) in [(&unindexed[..], 1), (victims, -1)] {
            for record in self.records(thread, hex_ns, ids).await?.iter().flatten() {
                for field in fields_of(record)? {
                    *delta.entry(field).or_default() += by;
                }
            }
        }
        let fields: Vec<String> = delta.keys().cloned().collect();
        let stored: Vec<Option<i64>> = self.hash_values(&thread.users(hex_ns), &fields).await?;
        let mut plan = Plan {
            rebuild: false,
            counts: Vec::new(),
            unused: Vec::new(),
        };
        for ((field, by), stored) in delta.into_iter().zip(stored) {
            let count = stored.unwrap_or(0) + by;
            if count <= 0 {
                plan.unused.push(field);
            } else if by != 0 {
                plan.counts.push((field, count));
            }
        }
        Ok(plan)
    }

    /// Without a current index: the counts from every survivor (the ids after the first
    /// `removed` by rank), and every stored blob none of them names.
    async fn recounted(&self, thread: &ThreadKeys, hex_ns: &str, removed: usize) -> Result<Plan> {
        let survivors: Vec<String> = self
            .client
            .query(
                redis::cmd("ZRANGE")
                    .arg(thread.ids(hex_ns))
                    .arg(removed)
                    .arg(-1),
            )
            .await?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for record in self
            .records(thread, hex_ns, &survivors)
            .await?
            .iter()
            .flatten()
        {
            for field in fields_of(record)? {
                *counts.entry(field).or_default() += 1;
            }
        }
        let stored: Vec<String> = self
            .client
            .query(redis::cmd("HKEYS").arg(thread.blobs(hex_ns)))
            .await?;
        let named: BTreeSet<&String> = counts.keys().collect();
        let unused = stored.into_iter().filter(|f| !named.contains(f)).collect();
        Ok(Plan {
            rebuild: true,
            counts: counts.into_iter().collect(),
            unused,
        })
    }

    /// Runs the removal script; `None` if it refused (the namespace changed since `len`
    /// and `changes` were read). A rebuilt index too large for one script is completed by
    /// further scripts, each refusing if the namespace changed meanwhile (the index then
    /// stays stale, and the next prune rebuilds it).
    async fn apply_prune(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        len: usize,
        changes: &str,
        victims: &[String],
        plan: Plan,
    ) -> Result<Option<u64>> {
        let ttl = super::ttl_ms(self.config.checkpoint_ttl_secs);
        let expected = len.to_string();
        let mode = if plan.rebuild { "rebuild" } else { "delta" };
        let mut parts = plan.counts.chunks(COUNTS_PER_SCRIPT);
        let first = parts.next().unwrap_or_default();
        let complete = if parts.len() == 0 { "1" } else { "0" };
        let victim_count = victims.len().to_string();
        let writes_prefix = format!("{}:w:{hex_ns}:", thread.base);
        let count_strings: Vec<String> = first.iter().map(|(_, count)| count.to_string()).collect();
        let pair_count = first.len().to_string();
        let mut args: Vec<&[u8]> = vec![
            ttl.as_bytes(),
            expected.as_bytes(),
            changes.as_bytes(),
            mode.as_bytes(),
            complete.as_bytes(),
            victim_count.as_bytes(),
            writes_prefix.as_bytes(),
        ];
        args.extend(victims.iter().map(|id| id.as_bytes()));
        args.push(pair_count.as_bytes());
        for ((field, _), count) in first.iter().zip(&count_strings) {
            args.push(field.as_bytes());
            args.push(count.as_bytes());
        }
        args.extend(plan.unused.iter().map(|field| field.as_bytes()));
        let (removed, now): (i64, String) = self
            .client
            .eval(
                &self.scripts.prune_namespace,
                &[
                    &thread.ids(hex_ns),
                    &thread.records(hex_ns),
                    &thread.write_ids(hex_ns),
                    &thread.blobs(hex_ns),
                    &thread.changes(hex_ns),
                    &thread.users(hex_ns),
                    &thread.unindexed(hex_ns),
                    &thread.indexed_at(hex_ns),
                ],
                &args,
            )
            .await?;
        if removed < 0 {
            return Ok(None);
        }
        let remaining = parts.len();
        for (i, part) in parts.enumerate() {
            let last = if i + 1 == remaining { "1" } else { "0" };
            let count_strings: Vec<String> =
                part.iter().map(|(_, count)| count.to_string()).collect();
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes(), now.as_bytes(), last.as_bytes()];
            for ((field, _), count) in part.iter().zip(&count_strings) {
                args.push(field.as_bytes());
                args.push(count.as_bytes());
            }
            // The removal has happened: a part that fails only leaves the index stale (the
            // next prune rebuilds it), so the prune still reports what it removed.
            let wrote: Result<i64> = self
                .client
                .eval(
                    &self.scripts.index_users,
                    &[
                        &thread.users(hex_ns),
                        &thread.changes(hex_ns),
                        &thread.indexed_at(hex_ns),
                    ],
                    &args,
                )
                .await;
            match wrote {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(backend = BACKEND, error = %err,
                        "writing the rest of a rebuilt checkpoint index failed; the next prune rebuilds it");
                    break;
                }
            }
        }
        Ok(Some(removed as u64))
    }
}

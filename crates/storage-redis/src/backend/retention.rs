//! Retention sweeps (see `storage_core::retention`), and the checkpoint prune they share
//! with `prune_checkpoints`.
//!
//! A sweep finds its series with the same `SCAN` the migration listings use (on a cluster,
//! every master), one page of keys at a time: a conversation is a `msgs` key, a context
//! scope a `ctxv` key, an artifact a `vers:<name>` key, a checkpoint namespace an
//! `ids:<ns>` key. Messages, context versions and artifact versions are each trimmed by one
//! script on the series' slot (`scripts/retention.rs`) that decides and removes together.
//! A checkpoint namespace is first probed (its size and oldest checkpoint: O(1)); only
//! when the oldest has expired does it go through the prune path, which decides from the
//! oldest records and removes in one script that refuses if the namespace changed since it
//! was read (its change counter moved: then it reads again), taking the removed
//! checkpoints' writes and every channel value no survivor uses.

use std::collections::BTreeSet;
use storage_core::retention::series_outcome;

use deadpool_redis::redis;
use storage_core::time::Timestamp;
use storage_core::{wire, Checkpoint, Result, Retention, StorageError};

use super::{op, RedisBackend, INDEX_BATCH};
use crate::keys::{blob_field, ThreadKeys};
use crate::pool::KeyScan;
use crate::scripts::Lua;

/// Keys asked for per `SCAN` round trip.
const SCAN_COUNT: usize = 1_000;
/// How often prune retries a namespace that changed under it.
const PRUNE_ATTEMPTS: usize = 8;

/// What a prune keeps of one checkpoint namespace.
#[derive(Debug, Clone, Copy)]
pub(super) enum Keep<'a> {
    /// The newest n checkpoints (`prune_checkpoints`).
    Newest(usize),
    /// What the retention leaves (`retain_checkpoints`).
    Unexpired(&'a Retention),
}

/// The checked retention, or `None` when it removes nothing (no I/O then).
fn admitted(retention: Retention) -> Result<Option<Retention>> {
    retention.check()?;
    Ok((!retention.is_unbounded()).then_some(retention))
}

/// The ARGV of a retention script: `keep_last` or '', then the cutoff's whole seconds and
/// nanoseconds since the epoch, or '' and ''.
fn script_args(retention: &Retention) -> [String; 3] {
    let keep = retention
        .keep_last
        .map(|keep| keep.to_string())
        .unwrap_or_default();
    match retention.created_before {
        Some(cutoff) => [
            keep,
            cutoff.timestamp().to_string(),
            cutoff.timestamp_subsec_nanos().to_string(),
        ],
        None => [keep, String::new(), String::new()],
    }
}

/// A checkpoint's age, for the rule.
fn created_at(record: Option<&[u8]>) -> Result<Timestamp> {
    match record {
        Some(record) => Ok(Timestamp::from(
            wire::decode::<Checkpoint>(record)?.created_at,
        )),
        // An id without a record: never removed for its age.
        None => Ok(Timestamp::MAX_UTC),
    }
}

impl RedisBackend {
    /// Runs `script` with `args` on every series whose key matches `pattern`, a page of
    /// keys at a time; `keys_of` gives a matched key's script keys (`None` to skip it).
    async fn sweep_scripted(
        &self,
        pattern: &str,
        script: &Lua,
        retention: &Retention,
        keys_of: impl Fn(&str) -> Option<Vec<String>>,
    ) -> Result<u64> {
        let args = script_args(retention);
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        let mut scan = KeyScan::new(pattern, SCAN_COUNT);
        let mut removed = 0;
        while let Some(page) = self.client.scan_page(&mut scan).await? {
            for key in page {
                let Some(keys) = keys_of(&key) else {
                    continue;
                };
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                removed += self.client.eval::<u64>(script, &keys, &args).await?;
            }
        }
        Ok(removed)
    }

    pub(super) async fn retain_messages_op(&self, retention: Retention) -> Result<u64> {
        async {
            let Some(retention) = admitted(retention)? else {
                return Ok(0);
            };
            let pattern = self.keys.scan_pattern("s", "msgs");
            self.sweep_scripted(&pattern, &self.scripts.retain_messages, &retention, |key| {
                let id = self.keys.id_in_key("s", key)?;
                let keys = self.keys.session(&id);
                Some(keys.removal().map(str::to_owned).to_vec())
            })
            .await
        }
        .await
        .map_err(op("retain_messages"))
    }

    pub(super) async fn retain_context_versions_op(&self, retention: Retention) -> Result<u64> {
        async {
            let Some(retention) = admitted(retention)? else {
                return Ok(0);
            };
            // Only versioned scopes: a session's context from a release before scopes is
            // one version, which retention keeps.
            let pattern = self.keys.scan_pattern("[sc]", "ctxv");
            self.sweep_scripted(&pattern, &self.scripts.retain_context, &retention, |key| {
                let scope = self.keys.context_scope_in_key(key)?;
                let keys = self.keys.context(&scope);
                Some(keys.script_keys().into_iter().map(str::to_owned).collect())
            })
            .await
        }
        .await
        .map_err(op("retain_context_versions"))
    }

    pub(super) async fn retain_artifact_versions_op(&self, retention: Retention) -> Result<u64> {
        async {
            let Some(retention) = admitted(retention)? else {
                return Ok(0);
            };
            let pattern = self.keys.scan_pattern("a", "vers:*");
            self.sweep_scripted(&pattern, &self.scripts.retain_artifact, &retention, |key| {
                let scope = self.keys.id_in_key("a", key)?;
                let name = crate::keys::decode_id(self.keys.suffix_in_key(key, ":vers:")?)?;
                let keys = self.keys.scope(&scope);
                Some(vec![
                    keys.versions(&name),
                    keys.metas(&name),
                    keys.contents(&name),
                ])
            })
            .await
        }
        .await
        .map_err(op("retain_artifact_versions"))
    }

    pub(super) async fn retain_checkpoints_op(&self, retention: Retention) -> Result<u64> {
        async {
            let Some(retention) = admitted(retention)? else {
                return Ok(0);
            };
            let mut scan = KeyScan::new(&self.keys.scan_pattern("t", "ids:*"), SCAN_COUNT);
            let mut removed = 0;
            while let Some(page) = self.client.scan_page(&mut scan).await? {
                for key in page {
                    let series = self
                        .keys
                        .id_in_key("t", &key)
                        .zip(self.keys.suffix_in_key(&key, ":ids:").map(str::to_owned));
                    let Some((thread_id, hex_ns)) = series else {
                        continue;
                    };
                    let thread = self.keys.thread(&thread_id);
                    // A busy namespace (prune keeps losing to puts) or an undecodable record
                    // leaves this namespace for the next sweep, not the rest of the store.
                    let outcome = async {
                        if !self.oldest_expires(&thread, &hex_ns, &retention).await? {
                            return Ok(0);
                        }
                        self.prune_namespace(&thread, &hex_ns, Keep::Unexpired(&retention))
                            .await
                    }
                    .await;
                    removed += series_outcome("checkpoints", &thread_id, outcome)?;
                }
            }
            Ok(removed)
        }
        .await
        .map_err(op("retain_checkpoints"))
    }

    /// Whether the oldest checkpoint of a namespace has expired (and is not its newest):
    /// the O(1) probe that leaves a namespace with nothing to remove untouched.
    async fn oldest_expires(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        retention: &Retention,
    ) -> Result<bool> {
        let ids = thread.ids(hex_ns);
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(&ids);
        pipe.cmd("ZRANGE")
            .arg(&ids)
            .arg("-")
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(1);
        let (len, oldest): (usize, Vec<String>) = self.client.pipeline(&pipe).await?;
        let Some(oldest) = oldest.first().filter(|_| len > 1) else {
            return Ok(false);
        };
        if retention.is_expired(0, len, Timestamp::MAX_UTC) {
            return Ok(true);
        }
        if retention.created_before.is_none() {
            return Ok(false);
        }
        let record: Option<Vec<u8>> = self
            .client
            .query(redis::cmd("HGET").arg(thread.records(hex_ns)).arg(oldest))
            .await?;
        Ok(retention.is_expired(0, len, created_at(record.as_deref())?))
    }

    /// How many of `ids` (newest first) have expired from the oldest on: ages are read
    /// from the oldest only until the first survivor.
    async fn expired_checkpoints(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        ids: &[String],
        retention: &Retention,
    ) -> Result<usize> {
        let len = ids.len();
        let mut expired = 0;
        if retention.created_before.is_none() {
            while expired + 1 < len && retention.is_expired(expired, len, Timestamp::MAX_UTC) {
                expired += 1;
            }
            return Ok(expired);
        }
        while expired + 1 < len {
            // Oldest first, never the newest (index 0).
            let end = len - expired;
            let start = end.saturating_sub(INDEX_BATCH).max(1);
            let batch: Vec<&String> = ids[start..end].iter().rev().collect();
            let records: Vec<Option<Vec<u8>>> = self
                .client
                .query(redis::cmd("HMGET").arg(thread.records(hex_ns)).arg(&batch))
                .await?;
            for record in &records {
                if !retention.is_expired(expired, len, created_at(record.as_deref())?) {
                    return Ok(expired);
                }
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Removes the checkpoints of one namespace that `keep` does not keep, with their
    /// pending writes and every channel value no survivor uses, in one script that
    /// refuses when the namespace changed since it was read (then reads it again).
    ///
    /// "Changed" is the namespace's change counter (`chg`), which every script that adds,
    /// replaces or removes a checkpoint bumps: the size alone misses a removal and a put
    /// in between, or a put that replaces a checkpoint, and such a put may use a value
    /// (a fork names an older checkpoint's version without sending the value again) that
    /// the survivors read here do not, which the script would then delete.
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
            pipe.cmd("ZRANGE")
                .arg(thread.ids(hex_ns))
                .arg("+")
                .arg("-")
                .arg("BYLEX")
                .arg("REV");
            let (changes, ids): (Option<String>, Vec<String>) = self.client.pipeline(&pipe).await?;
            let kept = match keep {
                Keep::Newest(n) => n,
                Keep::Unexpired(retention) => {
                    ids.len()
                        - self
                            .expired_checkpoints(thread, hex_ns, &ids, retention)
                            .await?
                }
            };
            if ids.len() <= kept {
                return Ok(0);
            }
            let (survivors, victims) = ids.split_at(kept);
            let mut used = BTreeSet::new();
            if !survivors.is_empty() {
                let records: Vec<Option<Vec<u8>>> = self
                    .client
                    .query(
                        redis::cmd("HMGET")
                            .arg(thread.records(hex_ns))
                            .arg(survivors),
                    )
                    .await?;
                for record in records.into_iter().flatten() {
                    let checkpoint: Checkpoint = wire::decode(&record)?;
                    for (channel, version) in &checkpoint.channel_versions {
                        used.insert(blob_field(channel, version));
                    }
                }
            }
            let fields: Vec<String> = self
                .client
                .query(redis::cmd("HKEYS").arg(thread.blobs(hex_ns)))
                .await?;
            let expected = ids.len().to_string();
            let changes = changes.unwrap_or_default();
            let victim_count = victims.len().to_string();
            let writes_prefix = format!("{}:w:{hex_ns}:", thread.base);
            let mut args: Vec<&[u8]> = vec![
                expected.as_bytes(),
                changes.as_bytes(),
                victim_count.as_bytes(),
                writes_prefix.as_bytes(),
            ];
            args.extend(victims.iter().map(|id| id.as_bytes()));
            args.extend(
                fields
                    .iter()
                    .filter(|f| !used.contains(*f))
                    .map(|f| f.as_bytes()),
            );
            let removed: i64 = self
                .client
                .eval(
                    &self.scripts.prune_namespace,
                    &[
                        &thread.ids(hex_ns),
                        &thread.records(hex_ns),
                        &thread.write_ids(hex_ns),
                        &thread.blobs(hex_ns),
                        &thread.changes(hex_ns),
                    ],
                    &args,
                )
                .await?;
            if removed >= 0 {
                return Ok(removed as u64);
            }
        }
        Err(
            StorageError::conflict("the thread kept changing while it was pruned; try again")
                .with_temporary(true),
        )
    }
}

//! Retention sweeps (see `storage_core::retention`), and the checkpoint prune they share
//! with `prune_checkpoints`.
//!
//! A sweep finds its series with the same `SCAN` the migration listings use (on a cluster,
//! every master), one page of keys at a time: a conversation is a `msgs` key, a context
//! scope a `ctxv` key, an artifact a `vers:<name>` key, a checkpoint namespace an
//! `ids:<ns>` key. Messages, context versions and artifact versions are each trimmed by one
//! script on the series' slot (`scripts/retention.rs`) that decides and removes together.
//! A checkpoint namespace is first probed (its size and oldest checkpoint: O(1)); only
//! when the oldest has expired does it go through the prune path (`prune.rs`), which reads
//! the oldest records and removes in one script that refuses if the namespace changed
//! since it was read (its change counter moved: then it reads again), taking the removed
//! checkpoints' writes and every channel value no survivor uses.

use storage_core::retention::series_outcome;

use deadpool_redis::redis;
use storage_core::time::Timestamp;
use storage_core::{Result, Retention};

use super::prune::{created_at, Keep};
use super::{op, RedisBackend};
use crate::keys::ThreadKeys;
use crate::pool::KeyScan;
use crate::scripts::Lua;

/// Keys asked for per `SCAN` round trip.
const SCAN_COUNT: usize = 1_000;

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
}

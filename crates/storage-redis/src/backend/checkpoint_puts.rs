//! Checkpoint puts: one script call per checkpoint (see `scripts/checkpoint_index.rs`),
//! then the run index. A batch (what group commit sends) is one pipeline of those calls on
//! a standalone server, and one pipeline per thread on a cluster (a thread's keys share
//! one slot), so it costs a round trip where one call per put cost one each.

use std::collections::BTreeMap;

use deadpool_redis::redis::{self, Cmd, Value};
use storage_core::checkpoint::{group_by_thread, validate_puts};
use storage_core::{wire, ChannelVersions, Checkpoint, Result};

use super::{ttl_ms, RedisBackend};
use crate::error::{classify, unexpected_reply};
use crate::keys::{blob_field, encode_id};
use crate::scripts::Lua;

/// One put as the script takes it: its keys, its arguments, and the record it stores (the
/// checkpoint without its values), which the run index is written from.
struct PutCall {
    keys: [String; 8],
    args: Vec<Vec<u8>>,
    record: Checkpoint,
}

impl RedisBackend {
    /// The script call that stores `checkpoint` (validated) and its new values.
    fn put_call(&self, checkpoint: Checkpoint, new_versions: &ChannelVersions) -> Result<PutCall> {
        let thread = self.keys.thread(&checkpoint.thread_id);
        let hex_ns = encode_id(&checkpoint.namespace);
        let mut args = vec![
            ttl_ms(self.config.checkpoint_ttl_secs).into_bytes(),
            hex_ns.clone().into_bytes(),
            checkpoint.id.clone().into_bytes(),
        ];
        let mut blobs = Vec::new();
        for (channel, version, value) in checkpoint.new_blobs(new_versions) {
            blobs.push(blob_field(channel, version).into_bytes());
            blobs.push(wire::encode_value(value)?);
        }
        let mut record = checkpoint;
        record.channel_values = BTreeMap::new();
        args.push(wire::encode(&record)?);
        args.extend(blobs);
        Ok(PutCall {
            keys: [
                thread.namespaces(),
                thread.ids(&hex_ns),
                thread.records(&hex_ns),
                thread.blobs(&hex_ns),
                thread.changes(&hex_ns),
                thread.users(&hex_ns),
                thread.unindexed(&hex_ns),
                thread.indexed_at(&hex_ns),
            ],
            args,
            record,
        })
    }

    /// `put_checkpoint`, validated: the script, then the run index.
    pub(super) async fn put_one(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        checkpoint.validate_put(&new_versions)?;
        let call = self.put_call(checkpoint, &new_versions)?;
        self.put_validated(call).await
    }

    /// One validated put: its script, then the run index.
    async fn put_validated(&self, call: PutCall) -> Result<()> {
        self.run_script(&call).await?;
        // After the script: `delete_for_runs` drops entries whose checkpoint it does not
        // find, so an entry written before would be lost to a concurrent removal.
        self.index_runs([&call.record]).await
    }

    /// One put's script, by its hash (loaded again should the server have lost it).
    async fn run_script(&self, call: &PutCall) -> Result<()> {
        let keys: Vec<&str> = call.keys.iter().map(String::as_str).collect();
        let args: Vec<&[u8]> = call.args.iter().map(Vec::as_slice).collect();
        self.client
            .eval::<()>(&self.scripts.put_checkpoint, &keys, &args)
            .await
    }

    /// `put_checkpoints`: every put validated first, then the scripts in the batch's order
    /// (one pipeline, or one per thread on a cluster, threads side by side), then the run
    /// index of them all. As with one call per put, an error may leave some of the batch
    /// stored; each put replaces its record, so the batch can be sent again.
    pub(super) async fn put_many(&self, puts: Vec<(Checkpoint, ChannelVersions)>) -> Result<()> {
        validate_puts(&puts)?;
        if puts.is_empty() {
            return Ok(());
        }
        let groups = if self.client.pool.is_cluster() {
            group_by_thread(puts).0
        } else {
            vec![puts]
        };
        let mut calls = Vec::with_capacity(groups.len());
        for group in groups {
            calls.push(
                group
                    .into_iter()
                    .map(|(checkpoint, new_versions)| self.put_call(checkpoint, &new_versions))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        futures::future::try_join_all(calls.iter().map(|group| async move {
            if let [call] = &group[..] {
                // A put alone (group commit with one caller) costs what a plain put costs.
                return self.run_script(call).await;
            }
            let pipe = script_pipeline(&self.scripts.put_checkpoint, group);
            let replies: Vec<Value> = self.client.pipeline(&pipe).await?;
            if replies.len() != group.len() {
                return Err(unexpected_reply("put_checkpoint batch"));
            }
            // An error in the pipeline's replies fails the batch, shown to the pool (a
            // demoted master's `READONLY` retires its connections) and classified as a
            // single put's would be.
            match replies.into_iter().find_map(|reply| match reply {
                Value::ServerError(err) => Some(redis::RedisError::from(err)),
                _ => None,
            }) {
                Some(err) => {
                    self.client.pool.note(&err);
                    Err(classify(err))
                }
                None => Ok(()),
            }
        }))
        .await?;
        self.index_runs(calls.iter().flatten().map(|call| &call.record))
            .await
    }
}

/// The calls of one script on keys of one slot, in order, as one pipeline: the first sent
/// with the script's source, which loads it should the server have lost it (a restart, a
/// `SCRIPT FLUSH`), the others by its hash, which costs the server no hashing of the source.
fn script_pipeline(script: &Lua, calls: &[PutCall]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for (at, call) in calls.iter().enumerate() {
        let mut cmd: Cmd = if at == 0 {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(&script.source);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(script.script.get_hash());
            cmd
        };
        cmd.arg(call.keys.len()).arg(&call.keys[..]);
        for arg in &call.args {
            cmd.arg(arg.as_slice());
        }
        pipe.add_command(cmd);
    }
    pipe
}

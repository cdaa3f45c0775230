//! Checkpoint puts: one script call per checkpoint (see `scripts/checkpoint_index.rs`),
//! then the run index. A batch (what group commit sends) is one pipeline of those calls on
//! a standalone server, and one pipeline per thread on a cluster (a thread's keys share
//! one slot), cut at 64 puts or 1 MiB, so it costs a round trip where one call per put
//! cost one each.

use std::collections::BTreeMap;

use deadpool_redis::redis::{self, Value};
use storage_core::checkpoint::{group_by_thread, validate_puts};
use storage_core::{wire, ChannelVersions, Checkpoint, Result, StorageError};

use super::{ttl_ms, RedisBackend};
use crate::error::{classify, unexpected_reply};
use crate::keys::{blob_field, encode_id};
use crate::pool::{eval_cmd, evalsha_cmd};
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
    /// (pipelines of at most [`PIPELINE_PUTS`] puts or [`PIPELINE_BYTES`]; one thread's
    /// after another on a cluster, threads side by side), then the run index of every put
    /// the server stored. A pipeline is not a transaction: a put the server refuses does
    /// not stop the others, so an error may leave any part of the batch stored (each put
    /// replaces its record, so the batch can be sent again), and what was stored is still
    /// in the run index.
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
        // Every group runs to its end, so a failure in one does not keep another's stored
        // puts out of the run index.
        let outcomes =
            futures::future::join_all(calls.iter().map(|group| self.put_group(group))).await;
        let mut stored = Vec::new();
        let mut failure = None;
        for (group, (done, error)) in calls.iter().zip(outcomes) {
            let records = group.iter().zip(done);
            stored.extend(records.filter_map(|(call, stored)| stored.then_some(&call.record)));
            failure = graver(failure, error);
        }
        let indexed = self.index_runs(stored).await;
        match failure {
            Some(err) => Err(err),
            None => indexed,
        }
    }

    /// The scripts of one slot's puts, in order: whether each was stored (as far as known:
    /// none after a pipeline that got no answer), and the gravest error.
    async fn put_group(&self, group: &[PutCall]) -> (Vec<bool>, Option<StorageError>) {
        if let [call] = group {
            // A put alone (group commit with one caller) costs what a plain put costs.
            return match self.run_script(call).await {
                Ok(()) => (vec![true], None),
                Err(err) => (vec![false], Some(err)),
            };
        }
        let mut done = Vec::with_capacity(group.len());
        let mut failure = None;
        for chunk in pipeline_chunks(group) {
            let pipe = script_pipeline(&self.scripts.put_checkpoint, chunk);
            let replies = match self.client.pipeline::<Vec<Value>>(&pipe).await {
                Ok(replies) if replies.len() == chunk.len() => replies,
                Ok(_) => return (done, graver(failure, Some(unexpected_reply("put batch")))),
                Err(err) => return (done, graver(failure, Some(err))),
            };
            for reply in replies {
                match reply {
                    Value::ServerError(err) => {
                        // Shown to the pool (a demoted master's `READONLY` retires its
                        // connections) and classified as a single put's would be.
                        let err = redis::RedisError::from(err);
                        self.client.pool.note(&err);
                        failure = graver(failure, Some(classify(err)));
                        done.push(false);
                    }
                    _ => done.push(true),
                }
            }
        }
        (done, failure)
    }
}

/// Most puts in one pipeline, and (past the first put) most bytes: each pipeline has the
/// command timeout to itself, as each put alone had.
const PIPELINE_PUTS: usize = 64;
const PIPELINE_BYTES: usize = 1 << 20;

/// `group` cut into pipelines of at most [`PIPELINE_PUTS`] puts and, unless one put is
/// larger alone, [`PIPELINE_BYTES`].
fn pipeline_chunks(group: &[PutCall]) -> Vec<&[PutCall]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (at, call) in group.iter().enumerate() {
        let size: usize = call.args.iter().map(Vec::len).sum();
        if at > start && (at - start == PIPELINE_PUTS || bytes + size > PIPELINE_BYTES) {
            chunks.push(&group[start..at]);
            (start, bytes) = (at, 0);
        }
        bytes += size;
    }
    chunks.push(&group[start..]);
    chunks
}

/// The error a batch answers with: a temporary one if any put met one (every caller then
/// tries again), else the first.
fn graver(kept: Option<StorageError>, new: Option<StorageError>) -> Option<StorageError> {
    match (kept, new) {
        (Some(kept), Some(new)) if !kept.is_temporary() && new.is_temporary() => Some(new),
        (kept, new) => kept.or(new),
    }
}

/// The calls of one script on keys of one slot, in order, as one pipeline: the first sent
/// with the script's source, which loads it should the server have lost it (a restart, a
/// `SCRIPT FLUSH`), the others by its hash, which costs the server no hashing of the source.
fn script_pipeline(script: &Lua, calls: &[PutCall]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    // Each reply is read, errors included: a refused put does not hide the others' outcome.
    pipe.ignore_errors();
    for (at, call) in calls.iter().enumerate() {
        pipe.add_command(if at == 0 {
            eval_cmd(script, &call.keys, &call.args)
        } else {
            evalsha_cmd(script, &call.keys, &call.args)
        });
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_of(bytes: usize) -> PutCall {
        PutCall {
            keys: Default::default(),
            args: vec![vec![0; bytes]],
            record: Checkpoint::new("t", "", "1"),
        }
    }

    fn lengths(group: &[PutCall]) -> Vec<usize> {
        pipeline_chunks(group)
            .iter()
            .map(|chunk| chunk.len())
            .collect()
    }

    #[test]
    fn pipelines_are_cut_by_count_and_by_bytes() {
        let small: Vec<_> = (0..150).map(|_| call_of(100)).collect();
        assert_eq!(lengths(&small), [64, 64, 22]);
        let large: Vec<_> = (0..5).map(|_| call_of(400 << 10)).collect();
        assert_eq!(lengths(&large), [2, 2, 1]);
        // A put larger than the limit alone is a pipeline of its own, never none.
        let huge = [call_of(100), call_of(3 << 20), call_of(100)];
        assert_eq!(lengths(&huge), [1, 1, 1]);
        assert_eq!(lengths(&[call_of(10)]), [1]);
    }
}

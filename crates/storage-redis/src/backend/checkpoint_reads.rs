//! Checkpoint reads: get, list and the delta channel history, each one script call (see
//! `scripts/checkpoint_reads.rs`). The script hands back each record with the values its
//! channel versions name and its pending writes; the client checks that what the script
//! read from the record is what the record says, and reads by itself, as the previous
//! release did, any checkpoint the script could not (an older or damaged record).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use deadpool_redis::redis::{self, Value};
use storage_core::delta::{validate_history_request, walk_with_reads, HistoryWalk};
use storage_core::{
    wire, ChannelHistory, ChannelValue, Checkpoint, CheckpointKey, CheckpointQuery,
    CheckpointTuple, Result, StorageError,
};

use super::{corrupt, RedisBackend};
use crate::error::unexpected_reply;
use crate::keys::{blob_field, decode_id, encode_id, ThreadKeys};
use crate::pool::from_value;

/// One checkpoint as a read script returns it: hex namespace, id, record, whether the
/// script read the record's channel versions (1) or not (0), the blob fields it derived,
/// pending writes.
type ScriptTuple = (String, String, Vec<u8>, i64, Vec<String>, Vec<Vec<u8>>);

/// What get returns: the values (hex ns, blob field, value, ...), the checkpoints.
type ScriptReply = (Vec<Option<Vec<u8>>>, Vec<ScriptTuple>);

/// What list returns: get's reply, then the id below which a next call goes on, if any.
type ListReply = (Vec<Option<Vec<u8>>>, Vec<ScriptTuple>, Option<String>);

/// One ancestor as the history script returns it: id, record, (channel, blob field,
/// value) triples, pending writes.
type ScriptAncestor = (String, Vec<u8>, Vec<Option<Vec<u8>>>, Vec<Vec<u8>>);

/// A checkpoint read back: complete, or its record alone when the script's reading of it
/// cannot be trusted and its values and writes are still to be read.
enum Read {
    Done(CheckpointTuple),
    Pending(Checkpoint),
}

impl Read {
    fn checkpoint(&self) -> &Checkpoint {
        match self {
            Read::Done(tuple) => &tuple.checkpoint,
            Read::Pending(checkpoint) => checkpoint,
        }
    }
}

fn utf8(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The channel values a read script returned, each (hex ns, blob field) once, decoded on
/// first use: consecutive checkpoints share most of their values.
struct Values {
    raw: HashMap<(String, String), Option<Vec<u8>>>,
    decoded: HashMap<(String, String), ChannelValue>,
}

impl Values {
    fn new(flat: Vec<Option<Vec<u8>>>) -> Result<Self> {
        let mut raw = HashMap::with_capacity(flat.len() / 3);
        let mut flat = flat.into_iter();
        while let (Some(hex_ns), Some(field), Some(value)) = (flat.next(), flat.next(), flat.next())
        {
            let (Some(hex_ns), Some(field)) = (utf8(hex_ns), utf8(field)) else {
                return Err(unexpected_reply("channel value without its field"));
            };
            raw.insert((hex_ns, field), value);
        }
        Ok(Values {
            raw,
            decoded: HashMap::new(),
        })
    }

    fn decode(&mut self, key: &(String, String)) -> Result<Option<ChannelValue>> {
        if let Some(value) = self.decoded.get(key) {
            return Ok(Some(value.clone()));
        }
        let Some(Some(bytes)) = self.raw.get(key) else {
            return Ok(None);
        };
        let value = wire::decode_value(bytes)?;
        self.decoded.insert(key.clone(), value.clone());
        Ok(Some(value))
    }
}

/// The checkpoint of a script's tuple with its values and writes, if the script read the
/// very channel versions the record holds (under the id and namespace it was read at).
fn read_tuple(
    (hex_ns, id, record, readable, fields, writes): ScriptTuple,
    values: &mut Values,
) -> Result<(String, Read)> {
    let checkpoint: Checkpoint = wire::decode(&record)?;
    let namespace = decode_id(&hex_ns).ok_or_else(|| corrupt("checkpoint namespace"))?;
    let named: HashSet<&str> = fields.iter().map(String::as_str).collect();
    let versions = &checkpoint.channel_versions;
    let trusted = readable == 1
        && checkpoint.id == id
        && encode_id(&checkpoint.namespace) == hex_ns
        && fields.len() == versions.len()
        && named.len() == versions.len();
    let mut keys = Vec::with_capacity(versions.len());
    for (channel, version) in versions.iter().take_while(|_| trusted) {
        let key = (hex_ns.clone(), blob_field(channel, version));
        if !named.contains(key.1.as_str()) || !values.raw.contains_key(&key) {
            break;
        }
        keys.push((channel, key));
    }
    if !trusted || keys.len() != versions.len() {
        return Ok((namespace, Read::Pending(checkpoint)));
    }
    let mut channel_values = BTreeMap::new();
    for (channel, key) in keys {
        if let Some(value) = values.decode(&key)? {
            channel_values.insert(channel.clone(), value);
        }
    }
    let mut checkpoint = checkpoint;
    checkpoint.channel_values.extend(channel_values);
    let pending_writes = wire::decode_writes(&writes)?;
    Ok((
        namespace,
        Read::Done(CheckpointTuple {
            checkpoint,
            pending_writes,
        }),
    ))
}

impl RedisBackend {
    /// Completes the reads the script could not, in one more round trip for all of them.
    async fn finish(&self, thread: &ThreadKeys, reads: Vec<Read>) -> Result<Vec<CheckpointTuple>> {
        let pending: Vec<Checkpoint> = reads
            .iter()
            .filter_map(|read| match read {
                Read::Pending(checkpoint) => Some(checkpoint.clone()),
                Read::Done(_) => None,
            })
            .collect();
        let mut loaded = self.load_tuples(thread, pending).await?.into_iter();
        reads
            .into_iter()
            .map(|read| match read {
                Read::Done(tuple) => Ok(tuple),
                Read::Pending(_) => loaded
                    .next()
                    .ok_or_else(|| unexpected_reply("missing checkpoint")),
            })
            .collect()
    }

    /// A checkpoint (the greatest id when `id` is `None`) with its values and writes.
    pub(super) async fn read_checkpoint(
        &self,
        thread: &ThreadKeys,
        hex_ns: &str,
        id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        let found: Option<ScriptReply> = self
            .client
            .eval(
                &self.scripts.get_checkpoint,
                &[&thread.base],
                &[hex_ns.as_bytes(), id.unwrap_or("").as_bytes()],
            )
            .await?;
        let Some((values, found)) = found else {
            return Ok(None);
        };
        let mut values = Values::new(values)?;
        let mut reads = Vec::with_capacity(1);
        for tuple in found {
            reads.push(read_tuple(tuple, &mut values)?.1);
        }
        Ok(self.finish(thread, reads).await?.pop())
    }

    /// The checkpoints `query` admits, newest first (ties by namespace), with values and
    /// writes.
    pub(super) async fn read_list(&self, query: &CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let thread = self.keys.thread(&query.thread_id);
        let (one, hex_ns) = match &query.namespace {
            Some(namespace) => ("1", encode_id(namespace)),
            None => ("0", String::new()),
        };
        let mut max = query
            .before
            .as_ref()
            .map_or_else(|| "+".to_owned(), |b| format!("({b}"));
        let filter = if query.filter.is_empty() {
            Vec::new()
        } else {
            serde_json::to_vec(&query.filter).map_err(|err| {
                StorageError::serialization(format!("cannot encode the list filter: {err}"))
            })?
        };
        let mut reads = Vec::new();
        // A call examines a bounded number of records; the next goes on below where it
        // stopped, until the limit is met after the exact filter or nothing is left.
        loop {
            let wanted = query.limit.map(|limit| limit - reads.len());
            let limit = wanted.map(|l| l.to_string()).unwrap_or_default();
            let (values, found, resume): ListReply = self
                .client
                .eval(
                    &self.scripts.list_checkpoints,
                    &[&thread.base],
                    &[
                        one.as_bytes(),
                        hex_ns.as_bytes(),
                        max.as_bytes(),
                        limit.as_bytes(),
                        &filter,
                    ],
                )
                .await?;
            let mut values = Values::new(values)?;
            for tuple in found {
                let (namespace, read) = read_tuple(tuple, &mut values)?;
                let checkpoint = read.checkpoint();
                // The script's filter keeps every match but may keep more (see the script).
                if query.admits(&namespace, &checkpoint.id, &checkpoint.metadata) {
                    reads.push(read);
                }
            }
            match resume {
                Some(below) if query.limit.is_none_or(|limit| reads.len() < limit) => {
                    max = format!("({below}");
                }
                _ => break,
            }
        }
        let mut tuples = self.finish(&thread, reads).await?;
        tuples.sort_by(|a, b| {
            let (a, b) = (&a.checkpoint, &b.checkpoint);
            b.id.cmp(&a.id).then_with(|| a.namespace.cmp(&b.namespace))
        });
        if let Some(limit) = query.limit {
            tuples.truncate(limit);
        }
        Ok(tuples)
    }

    /// Resolves channel values and pending writes of checkpoints of one thread.
    async fn load_tuples(
        &self,
        thread: &ThreadKeys,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<Vec<CheckpointTuple>> {
        if checkpoints.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for checkpoint in &checkpoints {
            let hex_ns = encode_id(&checkpoint.namespace);
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(thread.blobs(&hex_ns));
            for (channel, version) in &checkpoint.channel_versions {
                hmget.arg(blob_field(channel, version));
            }
            if checkpoint.channel_versions.is_empty() {
                pipe.cmd("ECHO").arg("");
            } else {
                pipe.add_command(hmget);
            }
            pipe.cmd("HVALS")
                .arg(thread.writes(&hex_ns, &checkpoint.id));
        }
        let replies: Vec<Value> = self.client.pipeline(&pipe).await?;
        let mut replies = replies.into_iter();
        let mut tuples = Vec::with_capacity(checkpoints.len());
        for mut checkpoint in checkpoints {
            let values = replies
                .next()
                .ok_or_else(|| unexpected_reply("missing blobs"))?;
            let writes = replies
                .next()
                .ok_or_else(|| unexpected_reply("missing writes"))?;
            if !checkpoint.channel_versions.is_empty() {
                let values: Vec<Option<Vec<u8>>> = from_value(values, "channel values")?;
                for (channel, value) in checkpoint.channel_versions.keys().zip(values) {
                    if let Some(bytes) = value {
                        checkpoint
                            .channel_values
                            .insert(channel.clone(), wire::decode_value(&bytes)?);
                    }
                }
            }
            let writes: Vec<Vec<u8>> = from_value(writes, "pending writes")?;
            let pending_writes = wire::decode_writes(&writes)?;
            tuples.push(CheckpointTuple {
                checkpoint,
                pending_writes,
            });
        }
        Ok(tuples)
    }

    /// For each of `channels`, its history before the checkpoint `key` names: the walk of
    /// `storage_core::delta::walk_with_reads`, done by one script.
    pub(super) async fn channel_history(
        &self,
        key: CheckpointKey,
        channels: Vec<String>,
    ) -> Result<Option<BTreeMap<String, ChannelHistory>>> {
        validate_history_request(&key, &channels)?;
        let thread = self.keys.thread(&key.thread_id);
        let hex_ns = encode_id(&key.namespace);
        let mut args: Vec<&[u8]> = vec![hex_ns.as_bytes(), key.checkpoint_id.as_bytes()];
        args.extend(channels.iter().map(|channel| channel.as_bytes()));
        let reply: Option<Vec<Value>> = self
            .client
            .eval(&self.scripts.channel_history, &[&thread.base], &args)
            .await?;
        let Some(reply) = reply else {
            return Ok(None);
        };
        let mut reply = reply.into_iter();
        let (Some(record), Some(complete)) = (reply.next(), reply.next()) else {
            return Err(unexpected_reply("channel history without its target"));
        };
        let target: Checkpoint = wire::decode(&from_value::<Vec<u8>>(record, "checkpoint")?)?;
        let ancestors = reply
            .map(|ancestor| from_value::<ScriptAncestor>(ancestor, "ancestor"))
            .collect::<Result<Vec<_>>>()?;
        let walked = if from_value::<i64>(complete, "walk state")? == 1 {
            walk_ancestors(&key, &channels, target, ancestors)?
        } else {
            None
        };
        match walked {
            Some(histories) => Ok(Some(histories)),
            None => walk_with_reads(self, key, channels).await,
        }
    }
}

/// Folds in the ancestors the script walked, checking each against its record as the
/// walk by reads would have read it; `None` where they differ.
fn walk_ancestors(
    key: &CheckpointKey,
    channels: &[String],
    target: Checkpoint,
    ancestors: Vec<ScriptAncestor>,
) -> Result<Option<BTreeMap<String, ChannelHistory>>> {
    if target.id != key.checkpoint_id || target.namespace != key.namespace {
        return Ok(None);
    }
    let mut walk = HistoryWalk::new(channels);
    let mut open: BTreeSet<&str> = channels.iter().map(String::as_str).collect();
    let mut next = target.parent_id;
    for (id, record, found, writes) in ancestors {
        let mut checkpoint: Checkpoint = wire::decode(&record)?;
        if next.as_deref() != Some(id.as_str())
            || checkpoint.id != id
            || checkpoint.namespace != key.namespace
            || !checkpoint.channel_values.is_empty()
            || found.len() % 3 != 0
        {
            return Ok(None);
        }
        let expected: BTreeMap<&str, String> = open
            .iter()
            .filter_map(|channel| {
                let version = checkpoint.channel_versions.get(*channel)?;
                Some((*channel, blob_field(channel, version)))
            })
            .collect();
        let mut seeds = Vec::new();
        let mut named = 0;
        let mut found = found.into_iter();
        while let (Some(channel), Some(field), Some(value)) =
            (found.next(), found.next(), found.next())
        {
            let (Some(channel), Some(field)) = (utf8(channel), utf8(field)) else {
                return Ok(None);
            };
            if expected.get(channel.as_str()) != Some(&field) {
                return Ok(None);
            }
            named += 1;
            if let Some(value) = value {
                seeds.push((channel, value));
            }
        }
        if named != expected.len() {
            return Ok(None);
        }
        for (channel, value) in seeds {
            open.remove(channel.as_str());
            let value = wire::decode_value(&value)?;
            checkpoint.channel_values.insert(channel, value);
        }
        next = checkpoint.parent_id.clone();
        walk.take(CheckpointTuple {
            checkpoint,
            pending_writes: wire::decode_writes(&writes)?,
        });
    }
    Ok(Some(walk.finish()))
}

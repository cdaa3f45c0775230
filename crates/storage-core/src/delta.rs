//! Delta channel history: what LangGraph needs to rebuild a channel that is checkpointed as
//! a snapshot now and then and as writes in between.
//!
//! A checkpoint's pending writes are what the step after it wrote; applied to its channel
//! values they give its child. So the state of a channel at a target checkpoint is the
//! value stored at the nearest ancestor that stores one (the *seed*), followed by the
//! writes stored against that ancestor and every checkpoint after it up to the target's
//! parent. [`CheckpointStore::delta_channel_history`] returns exactly that, per channel.

use std::collections::{BTreeMap, BTreeSet};

use crate::channel_value::ChannelValue;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointKey, CheckpointStore, CheckpointTuple, PendingWrite};
use crate::error::Result;
use crate::validate::validate_id;

/// The most channels one [`CheckpointStore::delta_channel_history`] call may name.
pub const MAX_HISTORY_CHANNELS: usize = 1_000;

/// One channel's history before a target checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelHistory {
    /// The id of the nearest ancestor of the target (its parent first) that stores a value
    /// for the channel; `None` when no ancestor does.
    pub seed_checkpoint_id: Option<String>,
    /// That ancestor's value for the channel.
    pub seed: Option<ChannelValue>,
    /// The channel's writes stored against the seed's checkpoint and every checkpoint
    /// after it up to the target's parent (against every ancestor when there is no seed),
    /// oldest checkpoint first; within one checkpoint in (task path, task id, index)
    /// order, so writes without a task path come first.
    pub writes: Vec<PendingWrite>,
}

/// Checks the channel names of a history request, before any I/O.
pub fn validate_history_request(key: &CheckpointKey, channels: &[String]) -> Result<()> {
    key.validate()?;
    if channels.len() > MAX_HISTORY_CHANNELS {
        return Err(crate::StorageError::invalid_input(format!(
            "a delta channel history request names {} channels; the limit is \
             {MAX_HISTORY_CHANNELS}",
            channels.len()
        )));
    }
    channels
        .iter()
        .try_for_each(|channel| validate_id("channel name", channel))
}

/// The histories being built from the target's ancestors, read nearest first (the parent
/// first): each ancestor is folded in as it is read, so a walk keeps only the histories.
#[derive(Debug)]
pub struct HistoryWalk {
    /// Requested channels whose seed has not been found yet.
    open: BTreeSet<String>,
    /// Writes gathered nearest first, reversed by [`HistoryWalk::finish`].
    histories: BTreeMap<String, ChannelHistory>,
}

impl HistoryWalk {
    /// A walk for `channels`, before any ancestor is read.
    pub fn new(channels: &[String]) -> Self {
        HistoryWalk {
            open: channels.iter().cloned().collect(),
            histories: channels
                .iter()
                .map(|channel| (channel.clone(), ChannelHistory::default()))
                .collect(),
        }
    }

    /// Whether a channel still needs older ancestors.
    pub fn wants_more(&self) -> bool {
        !self.open.is_empty()
    }

    /// Folds in the next ancestor, with its channel values resolved and its pending writes.
    pub fn take(&mut self, mut ancestor: CheckpointTuple) {
        for write in ancestor.pending_writes.iter().rev() {
            if self.open.contains(&write.channel) {
                if let Some(history) = self.histories.get_mut(&write.channel) {
                    history.writes.push(write.clone());
                }
            }
        }
        let checkpoint = &mut ancestor.checkpoint;
        let histories = &mut self.histories;
        self.open
            .retain(|channel| match checkpoint.channel_values.remove(channel) {
                Some(seed) => {
                    if let Some(history) = histories.get_mut(channel) {
                        history.seed_checkpoint_id = Some(checkpoint.id.clone());
                        history.seed = Some(seed);
                    }
                    false
                }
                None => true,
            });
    }

    /// The histories, each channel's writes oldest first.
    pub fn finish(mut self) -> BTreeMap<String, ChannelHistory> {
        for history in self.histories.values_mut() {
            history.writes.reverse();
        }
        self.histories
    }
}

/// The history read through [`CheckpointStore::get_checkpoint`], one read per ancestor:
/// what a backend without a native walk does.
pub async fn walk_with_reads<S: CheckpointStore + ?Sized>(
    store: &S,
    key: CheckpointKey,
    channels: Vec<String>,
) -> Result<Option<BTreeMap<String, ChannelHistory>>> {
    validate_history_request(&key, &channels)?;
    let Some(target) = store
        .get_checkpoint(&key.thread_id, &key.namespace, Some(&key.checkpoint_id))
        .await?
    else {
        return Ok(None);
    };
    let mut walk = HistoryWalk::new(&channels);
    let mut seen = BTreeSet::from([target.checkpoint.id.clone()]);
    let mut next = target.checkpoint.parent_id;
    while let Some(id) = next {
        // A parent chain the caller made circular ends where it repeats.
        if !walk.wants_more() || !seen.insert(id.clone()) {
            break;
        }
        let Some(ancestor) = store
            .get_checkpoint(&key.thread_id, &key.namespace, Some(&id))
            .await?
        else {
            break;
        };
        next = ancestor.checkpoint.parent_id.clone();
        walk.take(ancestor);
    }
    Ok(Some(walk.finish()))
}

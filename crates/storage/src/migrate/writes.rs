//! Replays stored pending writes through `put_writes`, each at its own (task, index).
//!
//! `put_writes` gives a normal write its position in the call's list as index, keeps the
//! first value stored at a (task, index), and gives special channels a fixed negative
//! index where the last value wins. A stored set of writes is reproduced exactly by:
//! one call per normal write, in index order, whose list puts the write at its index and
//! fills the positions before it with writes that cannot change anything (a position
//! already stored, whose first value wins, or a special channel of the same task, whose
//! true value is written again at the end); then every special write. Replaying twice
//! therefore stores nothing new.

use std::collections::BTreeMap;

use storage_core::{CheckpointKey, PendingWrite, Result, StorageBackend, StorageError};

/// Stores `writes` (as read from a source backend) against `key` in `target`.
pub(super) async fn replay(
    target: &dyn StorageBackend,
    key: &CheckpointKey,
    writes: Vec<PendingWrite>,
) -> Result<()> {
    let mut by_task: BTreeMap<String, Vec<PendingWrite>> = BTreeMap::new();
    for write in writes {
        by_task
            .entry(write.task_id.clone())
            .or_default()
            .push(write);
    }
    for (task_id, writes) in by_task {
        let (mut normal, special): (Vec<_>, Vec<_>) =
            writes.into_iter().partition(|write| write.index >= 0);
        normal.sort_by_key(|write| write.index);
        let filler = special
            .first()
            .map(|write| (write.channel.clone(), write.value.clone()));
        let mut list: Vec<(String, storage_core::ChannelValue)> = Vec::new();
        for write in &normal {
            let index = usize::try_from(write.index).unwrap_or(usize::MAX);
            while list.len() < index {
                let stored = normal
                    .iter()
                    .find(|w| w.index == list.len() as i64)
                    .map(|w| (w.channel.clone(), w.value.clone()));
                let fill = stored.or_else(|| filler.clone()).ok_or_else(|| {
                    StorageError::invalid_input(format!(
                        "pending writes of task {task_id:?} at {key:?} leave index {} \
                         empty with no special write to hold it; they cannot be replayed",
                        list.len()
                    ))
                })?;
                list.push(fill);
            }
            list.truncate(index);
            list.push((write.channel.clone(), write.value.clone()));
            target
                .put_writes(key.clone(), &task_id, &write.task_path, list.clone())
                .await?;
        }
        for write in special {
            target
                .put_writes(
                    key.clone(),
                    &task_id,
                    &write.task_path,
                    vec![(write.channel, write.value)],
                )
                .await?;
        }
    }
    Ok(())
}

//! Slot stubs: how a retention sweep frees the content of the messages it removed.
//!
//! A slot cannot be deleted once the head has passed it: an appender still holding an
//! older head would create it again, and its message would be lost. A slot whose numbers
//! all lie at or below the head's floor is instead replaced by a *stub* (the same numbers
//! as `skip`, no messages): creating it still fails, and no reader of a head ever asks
//! for a number in it. The sweep stubs the slots its commit put below the floor; if it
//! dies before, `collect_garbage` stubs them (and those of cleared conversations).

use std::collections::BTreeMap;

use object_store::ObjectMeta;
use storage_core::wire;
use storage_core::{ErrorKind, Result};

use super::conversation::Slot;
use super::conversation_head::Head;
use super::{in_order, ObjectBackend};
use crate::keys::{parse_number, parts_after, take_id};

/// The stub of the slot at `first` whose next slot is at `next`.
fn stub(first: u64, next: u64) -> Slot {
    Slot {
        first,
        skip: next - first,
        messages: Vec::new(),
    }
}

impl ObjectBackend {
    /// After a retention commit raised the head's floor from `old` to `new`: replaces
    /// each slot whose numbers all lie at or below `new` by a stub without messages. The
    /// stub keeps the slot's numbers taken (an appender holding an older head must still
    /// fail to create it) and frees the content. Reads the slot keys from `old` on and, when
    /// a batch straddled `old` and now lies at or below `new`, probes down for its start.
    pub(super) async fn stub_slots(&self, session_id: &str, old: u64, new: u64) -> Result<()> {
        use futures::TryStreamExt;
        let prefix = self.keys().conversation(session_id).join("messages");
        let offset = self.keys().message_slot(session_id, old.max(1) - 1);
        let mut listing = self
            .objects()
            .store
            .list_with_offset(Some(&prefix), &offset);
        // Slot starts above `old - 1`, up to the first one past `new + 1`.
        let mut firsts = Vec::new();
        let mut past = Vec::new();
        while let Some(meta) = listing.try_next().await.map_err(crate::error::classify)? {
            let Some(first) = meta.location.filename().and_then(parse_number) else {
                continue;
            };
            if first > new + 1 {
                past.push(first);
                if self.objects().lists_in_order() {
                    break;
                }
            } else {
                firsts.push(first);
            }
        }
        drop(listing);
        firsts.sort_unstable();
        // The batch holding `old + 1` starts below `old` when no slot starts at `old + 1`;
        // it can become a stub only if the next slot starts at or below `new + 1`, and
        // only then is its start probed for: the probe costs the numbers of that batch
        // removed before, so a sweep that leaves the batch straddling the floor (most
        // sweeps, when a batch is large) reads nothing below `old`.
        if old > 0 && firsts.first().is_some_and(|&first| first > old + 1) {
            for below in (1..old).rev() {
                let path = self.keys().message_slot(session_id, below);
                if let Some(bytes) = self.objects().get(&path).await? {
                    if wire::decode::<Slot>(&bytes)?.last() > old {
                        firsts.insert(0, below);
                    }
                    break;
                }
            }
        }
        // A floor never goes down: lower now, the conversation was removed and started
        // over since the commit, and these slots are another history's.
        let cell = self.keys().conversation_head(session_id);
        if self
            .read_cell::<Head>(&cell)
            .await?
            .is_none_or(|head| head.floor < new)
        {
            return Ok(());
        }
        if let Some(&next) = past.iter().min() {
            firsts.push(next);
        }
        let stubs = firsts
            .windows(2)
            .filter(|pair| pair[1] <= new + 1)
            .map(|pair| {
                let stub = stub(pair[0], pair[1]);
                async move {
                    let path = self.keys().message_slot(session_id, stub.first);
                    self.objects().put(&path, wire::encode(&stub)?).await
                }
            });
        in_order(8, stubs).await.map(|_| ())
    }

    /// Stubs the slots older than `cutoff` (ms since the epoch) that lie wholly at or
    /// below their conversation's floor and are not stubs yet (told by their size);
    /// returns how many. The head is read after the listing; a floor never goes down.
    pub(super) async fn collect_slots(&self, cutoff: i64) -> Result<u64> {
        let prefix = self.keys().conversations();
        let mut slots: BTreeMap<String, Vec<(u64, ObjectMeta)>> = BTreeMap::new();
        for meta in self.objects().list_meta(&prefix).await? {
            let parts = parts_after(&meta.location, &prefix);
            let Some((session_id, used)) = take_id(&parts) else {
                continue;
            };
            let [kind, first] = &parts[used..] else {
                continue;
            };
            let Some(first) = parse_number(first).filter(|_| kind == "messages") else {
                continue;
            };
            slots.entry(session_id).or_default().push((first, meta));
        }
        let mut stubbed = 0;
        for (session_id, mut listed) in slots {
            let cell = self.keys().conversation_head(&session_id);
            let floor = match self.read_cell::<Head>(&cell).await {
                Ok(head) => head.map_or(0, |head| head.floor),
                // An unreadable head says nothing about its slots: leave them.
                Err(err) if err.kind() == ErrorKind::Serialization => continue,
                Err(err) => return Err(err),
            };
            listed.sort_by_key(|(first, _)| *first);
            let mut writes = Vec::new();
            for pair in listed.windows(2) {
                let ((first, meta), (next, _)) = (&pair[0], &pair[1]);
                if *next > floor + 1 {
                    break;
                }
                let stub = wire::encode(&stub(*first, *next))?;
                if !super::gc::still_young(meta.last_modified.timestamp_millis(), cutoff)
                    && meta.size != stub.len() as u64
                {
                    writes.push((meta.location.clone(), stub));
                }
            }
            stubbed += writes.len() as u64;
            in_order(
                8,
                writes
                    .into_iter()
                    .map(|(path, stub)| async move { self.objects().put(&path, stub).await }),
            )
            .await?;
        }
        Ok(stubbed)
    }
}

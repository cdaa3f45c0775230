//! The head cell of a conversation: which sequence numbers hold a live message, and where
//! the summaries of compactions and the messages they kept are.
//!
//! Every change of a conversation other than an append (pop, clear, rewind, compaction) is
//! one compare-and-set of this cell, so it is atomic for readers, who read the head first
//! and then only the numbers it says are live. Dead numbers are kept compact: the
//! cleared-through `floor`, single `popped` numbers, and `gaps` (runs removed at once by a
//! rewind or skipped by an import), so a rewind or a compaction writes a head whose size
//! does not grow with what it removed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use storage_core::wire::WireRecord;
use storage_core::{Message, Result, StorageError};

/// The head cell of a conversation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Head {
    /// The highest sequence whose slot the head has caught up with.
    pub(super) last: u64,
    /// Messages up to and including this sequence were removed (cleared, or replaced by a
    /// summary above it).
    pub(super) floor: u64,
    /// Popped sequences above the floor.
    pub(super) popped: BTreeSet<u64>,
    /// Runs of removed sequences above the floor, first to last inclusive, disjoint from
    /// each other and from `popped`. Absent in heads of the release before rewinds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) gaps: BTreeMap<u64, u64>,
    /// Live summary messages by sequence. Absent in heads of the release before compaction.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) summaries: BTreeMap<u64, SummaryEntry>,
    /// Summary sequence to the id of the object holding the messages it replaced and kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) kept: BTreeMap<u64, String>,
    /// Where the newest slots start (at most [`SLOT_STARTS_KEPT`]), ascending, so a read
    /// of recent messages fetches the slots holding them instead of probing down from
    /// each message for the start of its batch (one missing object per message of the
    /// batch). A hint only: a slot key, once created, always starts a batch (sequences
    /// are never reused), but heads of earlier releases lack it and drop it when they
    /// write, so a message no hint covers is found by probing, as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) slot_starts: Vec<u64>,
}

/// How many slot starts a head keeps: the last 10 turns of a conversation appended a
/// message or two at a time fit in them.
pub(super) const SLOT_STARTS_KEPT: usize = 64;

impl WireRecord for Head {
    const KIND: &'static str = "conversation_head";
}

/// A live summary message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SummaryEntry {
    /// The lowest original sequence it stands for (`Compacted::from`): removing it removes
    /// the kept messages of every summary sequence from here to its own.
    pub(super) from: u64,
    /// The compaction that stored it, naming its object; absent for a summary stored in a
    /// slot (an imported one), which is read like any message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<String>,
    /// Its client id, when stored by a compaction: such a summary is not in the client id
    /// index (that index may still name the slot message it replaced at this number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_id: Option<String>,
}

/// An object a head change stopped naming, deleted once the change is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unnamed {
    /// A compaction's summary message: sequence, compaction id.
    Summary(u64, String),
    /// What a summary kept: summary sequence, compaction id.
    Kept(u64, String),
}

/// Checks an id the head names before it becomes a path segment.
pub(super) fn checked_id(id: &str) -> Result<&str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StorageError::serialization(format!(
            "conversation head names compaction {id:?}, which is not alphanumeric"
        )));
    }
    Ok(id)
}

impl Head {
    /// Notes that a slot starts at `first`, above every slot noted before.
    pub(super) fn note_slot_start(&mut self, first: u64) {
        if self.slot_starts.last().is_some_and(|&last| last >= first) {
            return;
        }
        self.slot_starts.push(first);
        let over = self.slot_starts.len().saturating_sub(SLOT_STARTS_KEPT);
        self.slot_starts.drain(..over);
    }

    /// The start of the newest noted slot at or below `sequence`: where the batch holding
    /// it starts, unless a slot the head did not note starts between the two.
    pub(super) fn noted_slot_start(&self, sequence: u64) -> Option<u64> {
        let above = self.slot_starts.partition_point(|&first| first <= sequence);
        above.checked_sub(1).map(|index| self.slot_starts[index])
    }

    /// The removed run holding `sequence`, if any.
    fn gap_at(&self, sequence: u64) -> Option<(u64, u64)> {
        self.gaps
            .range(..=sequence)
            .next_back()
            .map(|(&start, &end)| (start, end))
            .filter(|&(_, end)| end >= sequence)
    }

    pub(super) fn is_live(&self, sequence: u64) -> bool {
        sequence > self.floor
            && sequence <= self.last
            && !self.popped.contains(&sequence)
            && self.gap_at(sequence).is_none()
    }

    /// The id of the compaction whose summary is stored at `sequence`, if one is.
    pub(super) fn stored_summary(&self, sequence: u64) -> Option<&str> {
        self.summaries
            .get(&sequence)
            .and_then(|entry| entry.id.as_deref())
    }

    /// How many live messages lie in `from..=to`; costs the popped numbers and gaps in it.
    pub(super) fn live_in(&self, from: u64, to: u64) -> u64 {
        let from = from.max(self.floor.saturating_add(1));
        let to = to.min(self.last);
        if from > to {
            return 0;
        }
        let popped = self.popped.range(from..=to).count() as u64;
        let gapped: u64 = self
            .gaps
            .range(..=to)
            .filter(|(_, &end)| end >= from)
            .map(|(&start, &end)| end.min(to) - start.max(from) + 1)
            .sum();
        to - from + 1 - popped - gapped
    }

    /// The live sequences in `low..=high`: the first `limit` of them going forward, or the
    /// last `limit` going backward; ascending either way. Gaps are stepped over whole.
    pub(super) fn live_window(&self, low: u64, high: u64, limit: usize, forward: bool) -> Vec<u64> {
        let low = low.max(self.floor.saturating_add(1));
        let high = high.min(self.last);
        let mut found = Vec::with_capacity(limit.min(1024));
        if low > high {
            return found;
        }
        if forward {
            let mut s = low;
            while s <= high && found.len() < limit {
                if let Some((_, end)) = self.gap_at(s) {
                    s = end.saturating_add(1);
                    continue;
                }
                if !self.popped.contains(&s) {
                    found.push(s);
                }
                s += 1;
            }
        } else {
            let mut s = high;
            while s >= low && found.len() < limit {
                if let Some((start, _)) = self.gap_at(s) {
                    s = start - 1;
                    continue;
                }
                if !self.popped.contains(&s) {
                    found.push(s);
                }
                s -= 1;
            }
            found.reverse();
        }
        found
    }

    /// The newest live sequence.
    pub(super) fn newest_live(&self) -> Option<u64> {
        self.live_window(1, self.last, 1, false).pop()
    }

    /// Where the live message with `client_id` is, given the sequence the client id index
    /// names: a summary stored by a compaction carries its client id here; a slot's message
    /// is where the index says, unless a compaction's summary replaced it at that number.
    pub(super) fn client_id_owner(&self, client_id: &str, indexed: Option<u64>) -> Option<u64> {
        let summary = self
            .summaries
            .iter()
            .find(|(_, entry)| entry.id.is_some() && entry.client_id.as_deref() == Some(client_id));
        if let Some((&sequence, _)) = summary {
            return Some(sequence);
        }
        indexed.filter(|&s| self.is_live(s) && self.stored_summary(s).is_none())
    }

    /// Marks `from..=to` removed, and raises the floor over removed numbers right above it.
    pub(super) fn hide(&mut self, from: u64, to: u64) {
        let from = from.max(self.floor.saturating_add(1));
        if from > to {
            return;
        }
        if from == to && self.gap_at(from).is_none() {
            self.popped.insert(from);
        } else {
            let (mut start, mut end) = (from, to);
            let touching: Vec<(u64, u64)> = self
                .gaps
                .range(..=to.saturating_add(1))
                .filter(|(_, &e)| e.saturating_add(1) >= from)
                .map(|(&s, &e)| (s, e))
                .collect();
            for (s, e) in touching {
                self.gaps.remove(&s);
                start = start.min(s);
                end = end.max(e);
            }
            let mut inside = self.popped.split_off(&start);
            if let Some(after) = end.checked_add(1) {
                let mut above = inside.split_off(&after);
                self.popped.append(&mut above);
            }
            self.gaps.insert(start, end);
        }
        loop {
            let next = self.floor.saturating_add(1);
            if self.popped.remove(&next) {
                self.floor = next;
            } else if let Some(end) = self.gaps.remove(&next) {
                self.floor = end;
            } else {
                break;
            }
        }
    }

    /// Removes the live messages in `from..=to` (pop, rewind): summaries among them go with
    /// what they kept, by the nesting rule of `storage_core::compaction`. Returns the
    /// objects no longer named.
    pub(super) fn remove(&mut self, from: u64, to: u64) -> Vec<Unnamed> {
        let mut unnamed = Vec::new();
        if from > to {
            return unnamed;
        }
        let dying: Vec<u64> = self.summaries.range(from..=to).map(|(&s, _)| s).collect();
        for sequence in dying {
            let Some(entry) = self.summaries.remove(&sequence) else {
                continue;
            };
            if let Some(id) = entry.id {
                unnamed.push(Unnamed::Summary(sequence, id));
            }
            let nested: Vec<u64> = self
                .kept
                .range(entry.from..=sequence)
                .map(|(&s, _)| s)
                .collect();
            for summary in nested {
                if let Some(id) = self.kept.remove(&summary) {
                    unnamed.push(Unnamed::Kept(summary, id));
                }
            }
        }
        self.hide(from, to);
        unnamed
    }

    /// Removes every message and everything kept.
    pub(super) fn clear(&mut self) -> Vec<Unnamed> {
        let summaries = std::mem::take(&mut self.summaries);
        let kept = std::mem::take(&mut self.kept);
        let mut unnamed: Vec<Unnamed> = summaries
            .into_iter()
            .filter_map(|(s, entry)| entry.id.map(|id| Unnamed::Summary(s, id)))
            .collect();
        unnamed.extend(kept.into_iter().map(|(s, id)| Unnamed::Kept(s, id)));
        self.floor = self.last;
        self.popped.clear();
        self.gaps.clear();
        unnamed
    }

    /// Replaces every message up to `up_to` (which is live) by the summary `entry` at
    /// `up_to`; `kept_id` names the object of the replaced messages when they are kept,
    /// otherwise what earlier summaries up to `up_to` kept is dropped. Returns the objects
    /// no longer named.
    pub(super) fn compact(
        &mut self,
        up_to: u64,
        entry: SummaryEntry,
        kept_id: Option<String>,
    ) -> Vec<Unnamed> {
        let mut unnamed = Vec::new();
        let above = self.summaries.split_off(&(up_to + 1));
        for (s, replaced) in std::mem::replace(&mut self.summaries, above) {
            if let Some(id) = replaced.id {
                unnamed.push(Unnamed::Summary(s, id));
            }
        }
        match kept_id {
            // Earlier summaries' kept messages stay readable: the new summary keeps them.
            Some(id) => {
                if let Some(old) = self.kept.insert(up_to, id) {
                    unnamed.push(Unnamed::Kept(up_to, old));
                }
            }
            None => {
                let above = self.kept.split_off(&(up_to + 1));
                for (s, id) in std::mem::replace(&mut self.kept, above) {
                    unnamed.push(Unnamed::Kept(s, id));
                }
            }
        }
        // `up_to` is live, so no popped number or gap straddles it.
        self.floor = self.floor.max(up_to - 1);
        self.popped = self.popped.split_off(&up_to);
        self.gaps = self.gaps.split_off(&up_to);
        self.summaries.insert(up_to, entry);
        unnamed
    }

    /// Records the live summaries a slot brings (imported messages that carry
    /// `compacted`), so that removing them applies the nesting rule like any summary.
    pub(super) fn note_summaries(&mut self, messages: &[Message]) {
        for message in messages {
            if !self.is_live(message.sequence) {
                continue;
            }
            if let Some(compacted) = message.compacted {
                self.summaries.insert(
                    message.sequence,
                    SummaryEntry {
                        from: compacted.from,
                        id: None,
                        client_id: None,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(last: u64) -> Head {
        Head {
            last,
            ..Head::default()
        }
    }

    fn entry(from: u64, id: &str) -> SummaryEntry {
        SummaryEntry {
            from,
            id: Some(id.to_owned()),
            client_id: None,
        }
    }

    #[test]
    fn heads_of_the_release_before_compaction_read() {
        let bytes =
            br#"{"v":1,"kind":"conversation_head","data":{"last":4,"floor":1,"popped":[3]}}"#;
        let h: Head = storage_core::wire::decode(bytes).unwrap();
        assert_eq!(h.live_window(1, 10, 10, true), vec![2, 4]);
        assert_eq!(h.live_in(1, 10), 2);
        assert!(h.summaries.is_empty() && h.kept.is_empty());
        // Written back without the new fields while they are empty.
        let written = String::from_utf8(storage_core::wire::encode(&h).unwrap()).unwrap();
        assert!(!written.contains("gaps") && !written.contains("summaries"));
    }

    #[test]
    fn gaps_merge_and_raise_the_floor() {
        let mut h = head(20);
        h.hide(5, 5);
        h.hide(10, 12);
        h.hide(13, 15);
        assert_eq!(h.gaps, BTreeMap::from([(10, 15)]));
        assert_eq!(h.live_in(1, 20), 20 - 1 - 6);
        assert_eq!(h.live_window(4, 20, 3, true), vec![4, 6, 7]);
        assert_eq!(h.live_window(1, 17, 3, false), vec![9, 16, 17]);
        h.hide(7, 18);
        assert_eq!(h.gaps, BTreeMap::from([(7, 18)]));
        assert_eq!(h.newest_live(), Some(20));
        h.hide(1, 4);
        assert_eq!((h.floor, h.popped.len()), (5, 0));
        h.hide(6, 6);
        assert_eq!((h.floor, h.gaps.len()), (18, 0));
        assert_eq!(h.live_window(1, 20, 10, true), vec![19, 20]);
    }

    #[test]
    fn compaction_and_the_nesting_rule() {
        let mut h = head(12);
        h.hide(2, 2);
        assert!(h.compact(4, entry(1, "a"), Some("a".into())).is_empty());
        assert_eq!((h.floor, h.popped.len()), (3, 0));
        assert_eq!(h.live_window(1, 12, 3, true), vec![4, 5, 6]);
        let unnamed = h.compact(6, entry(1, "b"), Some("b".into()));
        assert_eq!(unnamed, vec![Unnamed::Summary(4, "a".into())]);
        assert_eq!(h.kept.len(), 2);
        // Removing the outer summary drops both kept sets.
        let unnamed = h.remove(4, 12);
        assert_eq!(
            unnamed,
            vec![
                Unnamed::Summary(6, "b".into()),
                Unnamed::Kept(4, "a".into()),
                Unnamed::Kept(6, "b".into())
            ]
        );
        assert_eq!(h.newest_live(), None);
        assert_eq!(h.floor, 12);
    }

    #[test]
    fn a_dropping_compaction_drops_what_earlier_summaries_kept() {
        let mut h = head(10);
        h.compact(3, entry(1, "a"), Some("a".into()));
        let unnamed = h.compact(5, entry(1, "b"), None);
        assert_eq!(
            unnamed,
            vec![
                Unnamed::Summary(3, "a".into()),
                Unnamed::Kept(3, "a".into())
            ]
        );
        assert!(h.kept.is_empty());
        assert_eq!(h.client_id_owner("x", Some(5)), None);
        assert_eq!(h.client_id_owner("x", Some(6)), Some(6));
    }
}

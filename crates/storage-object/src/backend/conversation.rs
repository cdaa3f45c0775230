//! Conversations. Each append creates one immutable *slot* object at the next sequence
//! number with `PutMode::Create` (a batch is one slot holding all its messages): creating
//! the slot is the commit, so numbers are gapless and never handed out twice. The *head*
//! cell (see [`super::conversation_head`]) may lag behind the slots; every writer first
//! helps it forward past any slot already created, so a writer that died right after its
//! slot delays nobody. Everything else (pop, clear, rewind, compaction) is one
//! compare-and-set of the head; compaction and rewind are in [`super::compaction`].

use std::collections::BTreeMap;
use storage_core::carried::admit;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use storage_core::compaction::validate_compact;
use storage_core::conversation::{validate_append, validate_import};
use storage_core::validate::validate_id;
use storage_core::wire::{self, WireRecord};
use storage_core::{
    time, ConversationStore, Message, MessageRange, NewMessage, Result, Retention, StorageError,
};

use super::conversation_head::Head;
use super::{in_order, retention, Change, ObjectBackend};
use crate::store::Token;

/// One append: consecutive messages from `first`; or, for an import, `skip` numbers that
/// are hidden as the head moves past them, followed by consecutive messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Slot {
    pub(super) first: u64,
    /// Numbers from `first` that hold no message (an imported conversation's gaps, or a
    /// retention stub's removed messages).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) skip: u64,
    pub(super) messages: Vec<Message>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl WireRecord for Slot {
    const KIND: &'static str = "message_slot";
}

impl Slot {
    pub(super) fn last(&self) -> u64 {
        self.first + self.skip + self.messages.len() as u64 - 1
    }
    fn get(&self, sequence: u64) -> Option<&Message> {
        sequence
            .checked_sub(self.first + self.skip)
            .and_then(|offset| self.messages.get(offset as usize))
    }
}

/// Client message id to the sequence it was stored at.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClientIdEntry {
    sequence: u64,
}

impl WireRecord for ClientIdEntry {
    const KIND: &'static str = "client_id";
}

#[async_trait]
impl ConversationStore for ObjectBackend {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let message = admit("append_message", message)?;
        self.op("append_message", async {
            validate_id("session id", session_id)?;
            message.validate()?;
            let mut stored = self.append(session_id, vec![message]).await?;
            stored
                .pop()
                .ok_or_else(|| StorageError::backend("an append returned no message"))
        })
        .await
    }

    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let messages = admit("append_messages", messages)?;
        self.op("append_messages", async {
            validate_append(session_id, &messages)?;
            if messages.is_empty() {
                return Ok(Vec::new());
            }
            self.append(session_id, messages).await
        })
        .await
    }

    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.get_messages(session_id, MessageRange::last(limit))
            .await
    }

    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        self.op("get_messages", async {
            validate_id("session id", session_id)?;
            range.validate()?;
            let Some((low, high)) = range.bounds() else {
                return Ok(Vec::new());
            };
            for attempt in 0..super::CAS_ATTEMPTS {
                crate::store::backoff(attempt.min(4)).await;
                let (head, _) = self.sync_head(session_id).await?;
                let sequences = head.live_window(low, high, range.limit, range.is_forward());
                // `None`: a summary was removed since the head was read; read it again.
                if let Some(messages) = self.read_live(session_id, &head, &sequences).await? {
                    return Ok(messages);
                }
            }
            Err(too_many_writers())
        })
        .await
    }

    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        self.op("pop_last_message", async {
            validate_id("session id", session_id)?;
            for attempt in 0..super::CAS_ATTEMPTS {
                crate::store::backoff(attempt).await;
                let (mut head, token) = self.sync_head(session_id).await?;
                let Some(newest) = head.newest_live() else {
                    return Ok(None);
                };
                let Some(mut read) = self.read_live(session_id, &head, &[newest]).await? else {
                    continue;
                };
                let unnamed = head.remove(newest, newest);
                if self.write_head(session_id, token.as_ref(), &head).await? {
                    self.delete_unnamed(session_id, unnamed).await;
                    return Ok(read.pop());
                }
            }
            Err(too_many_writers())
        })
        .await
    }

    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        self.op("clear_conversation", async {
            validate_id("session id", session_id)?;
            for attempt in 0..super::CAS_ATTEMPTS {
                crate::store::backoff(attempt).await;
                let (mut head, token) = self.sync_head(session_id).await?;
                let live = head.live_in(1, head.last);
                if live == 0 {
                    return Ok(0);
                }
                let unnamed = head.clear();
                if self.write_head(session_id, token.as_ref(), &head).await? {
                    self.delete_unnamed(session_id, unnamed).await;
                    return Ok(live);
                }
            }
            Err(too_many_writers())
        })
        .await
    }

    async fn compact_conversation(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message> {
        let summary = admit("compact_conversation", summary)?;
        self.op("compact_conversation", async {
            validate_compact(session_id, up_to, &summary)?;
            self.compact(session_id, up_to, summary, keep_replaced)
                .await
        })
        .await
    }

    async fn get_replaced_messages(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>> {
        self.op("get_replaced_messages", async {
            validate_id("session id", session_id)?;
            self.replaced_messages(session_id, summary_sequence).await
        })
        .await
    }

    async fn rewind_conversation(&self, session_id: &str, sequence: u64) -> Result<u64> {
        self.op("rewind_conversation", async {
            validate_id("session id", session_id)?;
            self.rewind(session_id, sequence).await
        })
        .await
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let messages = admit("import_messages", messages)?;
        self.op("import_messages", async {
            validate_import(session_id, &messages)?;
            let mut pending: BTreeMap<u64, Message> =
                messages.into_iter().map(|m| (m.sequence, m)).collect();
            let mut stored = 0;
            let mut lost_races = 0;
            while lost_races < super::CAS_ATTEMPTS {
                crate::store::backoff(lost_races.min(4)).await;
                let (head, _) = self.sync_head(session_id).await?;
                // A number the head has passed was handed out here: left as it is.
                pending = pending.split_off(&(head.last + 1));
                let Some(&start) = pending.keys().next() else {
                    return Ok(stored);
                };
                let first = head.last + 1;
                let slot = if start > first {
                    Slot {
                        first,
                        skip: start - first,
                        messages: Vec::new(),
                    }
                } else {
                    let mut run = Vec::new();
                    while let Some(message) = pending.get(&(first + run.len() as u64)) {
                        if let Some(client_id) = &message.client_id {
                            if self
                                .client_id_owner(session_id, &head, client_id)
                                .await?
                                .is_some()
                            {
                                break;
                            }
                        }
                        run.push(message.clone());
                    }
                    if run.is_empty() {
                        // Its client id is taken: the number stays hidden.
                        Slot {
                            first,
                            skip: 1,
                            messages: Vec::new(),
                        }
                    } else {
                        Slot {
                            first,
                            skip: 0,
                            messages: run,
                        }
                    }
                };
                let path = self.keys().message_slot(session_id, first);
                if self.objects().create(&path, wire::encode(&slot)?).await? {
                    stored += slot.messages.len() as u64;
                    self.advance_head(session_id, &slot).await?;
                } else {
                    lost_races += 1;
                }
            }
            Err(too_many_writers())
        })
        .await
    }

    async fn retain_messages(&self, retention: Retention) -> Result<u64> {
        self.op("retain_messages", async {
            if !retention::admits(&retention)? {
                return Ok(0);
            }
            // Conversation directories from delimiter listings (see `ids_below`), not a
            // listing of every slot and client id below them; one without a live message
            // trims nothing.
            let sessions = &self.ids_below(&self.keys().conversations()).await?;
            retention::sweep(
                "messages",
                |after: Option<String>, limit| async move {
                    Ok(sessions
                        .iter()
                        .filter(|id| after.as_ref().is_none_or(|after| *id > after))
                        .take(limit)
                        .cloned()
                        .collect())
                },
                |session_id| async move { self.retain_conversation(&session_id, &retention).await },
            )
            .await
        })
        .await
    }

    async fn list_conversation_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.op("list_conversation_ids", async {
            storage_core::validate::validate_limit("conversation id limit", limit)?;
            // Slots of cleared messages may remain: such an id is listed, and reads empty.
            let prefix = self.keys().conversations();
            self.list_ids_under(&prefix, Some("messages"), after, limit)
                .await
        })
        .await
    }
}

impl ObjectBackend {
    /// Where the live message with `client_id` is, if one has it: the head names the
    /// client ids of compactions' summaries, the index those of slots' messages.
    async fn client_id_owner(
        &self,
        session_id: &str,
        head: &Head,
        client_id: &str,
    ) -> Result<Option<u64>> {
        if let Some(sequence) = head.client_id_owner(client_id, None) {
            return Ok(Some(sequence));
        }
        let path = self.keys().client_id(session_id, client_id);
        let Some(bytes) = self.objects().get(&path).await? else {
            return Ok(None);
        };
        let entry: ClientIdEntry = wire::decode(&bytes)?;
        Ok(head.client_id_owner(client_id, Some(entry.sequence)))
    }

    pub(super) async fn write_head(
        &self,
        session_id: &str,
        token: Option<&Token>,
        head: &Head,
    ) -> Result<bool> {
        self.objects()
            .cell_write(
                &self.keys().conversation_head(session_id),
                token,
                wire::encode(head)?,
            )
            .await
    }

    /// The head, caught up with every slot already created (helping their writers: the
    /// slot's client ids are indexed before the head moves past it).
    pub(super) async fn sync_head(&self, session_id: &str) -> Result<(Head, Option<Token>)> {
        let cell = self.keys().conversation_head(session_id);
        loop {
            let (head, token) = match self.objects().cell_read(&cell).await? {
                Some((bytes, token)) => (wire::decode::<Head>(&bytes)?, Some(token)),
                None => (Head::default(), None),
            };
            let next = self.keys().message_slot(session_id, head.last + 1);
            let Some(bytes) = self.objects().get(&next).await? else {
                return Ok((head, token));
            };
            let slot: Slot = wire::decode(&bytes)?;
            self.advance_head(session_id, &slot).await?;
        }
    }

    /// Indexes the slot's client ids, then moves the head past the slot; returns the head
    /// past it (as written, or as found when another writer moved it first).
    async fn advance_head(&self, session_id: &str, slot: &Slot) -> Result<Head> {
        in_order(
            8,
            slot.messages.iter().filter_map(|message| {
                let client_id = message.client_id.as_ref()?;
                let entry = ClientIdEntry {
                    sequence: message.sequence,
                };
                Some(async move {
                    let path = self.keys().client_id(session_id, client_id);
                    self.objects().put(&path, wire::encode(&entry)?).await
                })
            }),
        )
        .await?;
        let (first, last) = (slot.first, slot.last());
        self.modify_cell(
            &self.keys().conversation_head(session_id),
            |head: Option<Head>| {
                let mut head = head.unwrap_or_default();
                if head.last >= last || head.last + 1 != first {
                    return Ok(Change::Keep(head));
                }
                // Numbers an import skips hold no message.
                head.hide(first, first + slot.skip - 1);
                // A compaction that committed after this slot's writer looked its client
                // ids up holds one for its summary: that message is hidden, so no client
                // id is ever live twice (the writer returns the summary).
                for message in &slot.messages {
                    let taken = message
                        .client_id
                        .as_deref()
                        .is_some_and(|id| head.client_id_owner(id, None).is_some());
                    if taken {
                        head.hide(message.sequence, message.sequence);
                    }
                }
                head.last = last;
                head.note_slot_start(first);
                head.note_summaries(&slot.messages);
                Ok(Change::Write(head.clone(), head))
            },
        )
        .await
    }

    /// Appends `messages` as one slot; those whose client id is stored come back as stored.
    async fn append(&self, session_id: &str, messages: Vec<NewMessage>) -> Result<Vec<Message>> {
        for attempt in 0..super::CAS_ATTEMPTS {
            crate::store::backoff(attempt.min(4)).await;
            let (head, _) = self.sync_head(session_id).await?;
            // After the sync every client id of every slot up to the head is indexed.
            let known = in_order(
                8,
                messages
                    .iter()
                    .map(|message| self.stored_for_client_id(session_id, &head, message)),
            )
            .await?;
            let first = head.last + 1;
            let mut fresh: Vec<Message> = messages
                .iter()
                .zip(&known)
                .filter(|(_, known)| known.is_none())
                .enumerate()
                .map(|(offset, (message, _))| {
                    message
                        .clone()
                        .into_message(session_id, first + offset as u64, time::now())
                })
                .collect();
            if !fresh.is_empty() {
                let slot = Slot {
                    first,
                    skip: 0,
                    messages: fresh.clone(),
                };
                let path = self.keys().message_slot(session_id, first);
                if !self.objects().create(&path, wire::encode(&slot)?).await? {
                    continue;
                }
                let head = self.advance_head(session_id, &slot).await?;
                fresh = self.as_stored(session_id, &head, fresh).await?;
            }
            let mut fresh = fresh.into_iter();
            return known
                .into_iter()
                .map(|known| {
                    known
                        .or_else(|| fresh.next())
                        .ok_or_else(|| StorageError::backend("append lost a message"))
                })
                .collect();
        }
        Err(too_many_writers())
    }

    /// Appended messages as stored: one whose client id a compaction's summary took
    /// before its slot became visible was hidden, and the summary is what is stored.
    async fn as_stored(
        &self,
        session_id: &str,
        head: &Head,
        appended: Vec<Message>,
    ) -> Result<Vec<Message>> {
        let mut stored = Vec::with_capacity(appended.len());
        for message in appended {
            let owner = message
                .client_id
                .as_deref()
                .filter(|_| !head.is_live(message.sequence))
                .and_then(|id| head.client_id_owner(id, None));
            let summary = match owner {
                Some(sequence) => self
                    .read_live(session_id, head, &[sequence])
                    .await?
                    .and_then(|mut read| read.pop()),
                None => None,
            };
            stored.push(summary.unwrap_or(message));
        }
        Ok(stored)
    }

    /// The live stored message with `message`'s client id, if any.
    pub(super) async fn stored_for_client_id(
        &self,
        session_id: &str,
        head: &Head,
        message: &NewMessage,
    ) -> Result<Option<Message>> {
        let Some(client_id) = &message.client_id else {
            return Ok(None);
        };
        let Some(sequence) = self.client_id_owner(session_id, head, client_id).await? else {
            return Ok(None);
        };
        // A summary removed since the head was read released its client id: not stored.
        Ok(self
            .read_live(session_id, head, &[sequence])
            .await?
            .and_then(|mut read| read.pop())
            .filter(|stored| stored.client_id.as_ref() == Some(client_id)))
    }

    /// The live messages at `sequences` (ascending) as of `head`: compactions' summaries
    /// from their objects, the others from their slots. `None` when a summary's object is
    /// gone, or a slot emptied by a retention sweep, which means the head has changed
    /// since it was read.
    pub(super) async fn read_live(
        &self,
        session_id: &str,
        head: &Head,
        sequences: &[u64],
    ) -> Result<Option<Vec<Message>>> {
        let (summaries, in_slots): (Vec<u64>, Vec<u64>) = sequences
            .iter()
            .partition(|&&s| head.stored_summary(s).is_some());
        let mut messages = self.read_messages(session_id, head, &in_slots).await?;
        if messages.len() < in_slots.len() {
            // A retention sweep raised the floor and emptied slots since the head was read:
            // what is missing is a prefix that is gone now; read the head again.
            let cell = self.keys().conversation_head(session_id);
            let now = self.read_cell::<Head>(&cell).await?;
            if now.is_some_and(|now| now.floor > head.floor) {
                return Ok(None);
            }
        }
        for sequence in summaries {
            let Some(id) = head.stored_summary(sequence) else {
                continue;
            };
            let Some(summary) = self.read_summary(session_id, sequence, id).await? else {
                return Ok(None);
            };
            messages.push(summary);
        }
        messages.sort_by_key(|m| m.sequence);
        Ok(Some(messages))
    }

    /// The messages at `sequences` (ascending), reading each slot once: first the slots
    /// the head notes as holding them, then each sequence none of those holds as a slot
    /// key of its own. A sequence inside a batch is found in the slot where the batch
    /// starts, below it.
    async fn read_messages(
        &self,
        session_id: &str,
        head: &Head,
        sequences: &[u64],
    ) -> Result<Vec<Message>> {
        let read_slots = |firsts: Vec<u64>| {
            in_order(
                16,
                firsts.into_iter().map(|first| async move {
                    let bytes = self
                        .objects()
                        .get(&self.keys().message_slot(session_id, first))
                        .await?;
                    bytes.map(|b| wire::decode::<Slot>(&b)).transpose()
                }),
            )
        };
        // The message at `sequence` in the slot read that starts nearest below it.
        fn held(slots: &BTreeMap<u64, Slot>, sequence: u64) -> Option<&Message> {
            slots
                .range(..=sequence)
                .next_back()
                .and_then(|(_, slot)| slot.get(sequence))
        }
        let mut noted: Vec<u64> = sequences
            .iter()
            .filter_map(|&sequence| head.noted_slot_start(sequence))
            .collect();
        noted.dedup();
        let mut slots: BTreeMap<u64, Slot> = BTreeMap::new();
        for slot in read_slots(noted).await?.into_iter().flatten() {
            slots.insert(slot.first, slot);
        }
        let direct: Vec<u64> = sequences
            .iter()
            .copied()
            .filter(|&sequence| held(&slots, sequence).is_none())
            .collect();
        for slot in read_slots(direct).await?.into_iter().flatten() {
            slots.insert(slot.first, slot);
        }
        let mut messages = Vec::with_capacity(sequences.len());
        for &sequence in sequences {
            if let Some(message) = held(&slots, sequence) {
                messages.push(message.clone());
                continue;
            }
            let mut below = sequence;
            while below > 1 {
                below -= 1;
                if let Some(bytes) = self
                    .objects()
                    .get(&self.keys().message_slot(session_id, below))
                    .await?
                {
                    let slot: Slot = wire::decode(&bytes)?;
                    slots.insert(slot.first, slot);
                    break;
                }
            }
            if let Some(message) = held(&slots, sequence) {
                messages.push(message.clone());
            }
        }
        Ok(messages)
    }
}

/// A change that kept losing its compare-and-set to other writers.
pub(super) fn too_many_writers() -> StorageError {
    StorageError::backend("too many concurrent writers on one conversation").with_temporary(true)
}

//! Conversations. Each append creates one immutable *slot* object at the next sequence
//! number with `PutMode::Create` (a batch is one slot holding all its messages): creating
//! the slot is the commit, so numbers are gapless and never handed out twice. The *head*
//! cell (last sequence, cleared-through floor, popped numbers) may lag behind the slots;
//! every writer first helps it forward past any slot already created, so a writer that died
//! right after its slot delays nobody.

use std::collections::{BTreeMap, BTreeSet};
use storage_core::carried::admit;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use storage_core::conversation::{validate_append, validate_import};
use storage_core::validate::validate_id;
use storage_core::wire::{self, WireRecord};
use storage_core::{
    time, ConversationStore, Message, MessageRange, NewMessage, Result, StorageError,
};

use super::{in_order, Change, ObjectBackend};
use crate::store::Token;

/// The head cell of a conversation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Head {
    /// The highest sequence whose slot the head has caught up with.
    last: u64,
    /// Messages up to and including this sequence were cleared.
    floor: u64,
    /// Popped sequences above the floor.
    popped: BTreeSet<u64>,
}

impl WireRecord for Head {
    const KIND: &'static str = "conversation_head";
}

impl Head {
    fn is_live(&self, sequence: u64) -> bool {
        sequence > self.floor && sequence <= self.last && !self.popped.contains(&sequence)
    }
}

/// One append: consecutive messages from `first`; or, for an import, `skip` numbers that
/// are hidden as the head moves past them, followed by consecutive messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot {
    first: u64,
    /// Numbers from `first` that hold no message (an imported conversation's gaps).
    #[serde(default, skip_serializing_if = "is_zero")]
    skip: u64,
    messages: Vec<Message>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl WireRecord for Slot {
    const KIND: &'static str = "message_slot";
}

impl Slot {
    fn last(&self) -> u64 {
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
            let (head, _) = self.sync_head(session_id).await?;
            let Some((low, high)) = range.bounds() else {
                return Ok(Vec::new());
            };
            let low = low.max(head.floor + 1);
            let high = high.min(head.last);
            let mut sequences = Vec::with_capacity(range.limit.min(1024));
            if low <= high {
                if range.is_forward() {
                    let mut s = low;
                    while s <= high && sequences.len() < range.limit {
                        if head.is_live(s) {
                            sequences.push(s);
                        }
                        s += 1;
                    }
                } else {
                    let mut s = high;
                    while s >= low && sequences.len() < range.limit {
                        if head.is_live(s) {
                            sequences.push(s);
                        }
                        s -= 1;
                    }
                    sequences.reverse();
                }
            }
            self.read_messages(session_id, &sequences).await
        })
        .await
    }

    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        self.op("pop_last_message", async {
            validate_id("session id", session_id)?;
            for attempt in 0..super::CAS_ATTEMPTS {
                crate::store::backoff(attempt).await;
                let (mut head, token) = self.sync_head(session_id).await?;
                let Some(newest) = (head.floor + 1..=head.last)
                    .rev()
                    .find(|s| head.is_live(*s))
                else {
                    return Ok(None);
                };
                let message = self.read_messages(session_id, &[newest]).await?.pop();
                head.popped.insert(newest);
                if self.write_head(session_id, token.as_ref(), &head).await? {
                    return Ok(message);
                }
            }
            Err(
                StorageError::backend("too many concurrent writers on one conversation")
                    .with_temporary(true),
            )
        })
        .await
    }

    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        self.op("clear_conversation", async {
            validate_id("session id", session_id)?;
            for attempt in 0..super::CAS_ATTEMPTS {
                crate::store::backoff(attempt).await;
                let (head, token) = self.sync_head(session_id).await?;
                let live = head.last - head.floor - head.popped.len() as u64;
                if live == 0 {
                    return Ok(0);
                }
                let cleared = Head {
                    last: head.last,
                    floor: head.last,
                    popped: BTreeSet::new(),
                };
                if self
                    .write_head(session_id, token.as_ref(), &cleared)
                    .await?
                {
                    return Ok(live);
                }
            }
            Err(
                StorageError::backend("too many concurrent writers on one conversation")
                    .with_temporary(true),
            )
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
                        if self.client_id_is_live(session_id, &head, message).await? {
                            break;
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
            Err(
                StorageError::backend("too many concurrent writers on one conversation")
                    .with_temporary(true),
            )
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
    /// Whether `message`'s client id is stored for a live message.
    async fn client_id_is_live(
        &self,
        session_id: &str,
        head: &Head,
        message: &Message,
    ) -> Result<bool> {
        let Some(client_id) = &message.client_id else {
            return Ok(false);
        };
        let path = self.keys().client_id(session_id, client_id);
        let Some(bytes) = self.objects().get(&path).await? else {
            return Ok(false);
        };
        let entry: ClientIdEntry = wire::decode(&bytes)?;
        Ok(head.is_live(entry.sequence))
    }

    async fn write_head(
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
    async fn sync_head(&self, session_id: &str) -> Result<(Head, Option<Token>)> {
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

    /// Indexes the slot's client ids, then moves the head past the slot.
    async fn advance_head(&self, session_id: &str, slot: &Slot) -> Result<()> {
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
                    return Ok(Change::Keep(()));
                }
                if slot.skip > 0 {
                    // Hidden numbers: raise the floor when nothing below them is live,
                    // else mark each popped.
                    let nothing_live = head.last - head.floor == head.popped.len() as u64;
                    if nothing_live {
                        head.floor = first + slot.skip - 1;
                        head.popped.clear();
                    } else {
                        head.popped.extend(first..first + slot.skip);
                    }
                }
                head.last = last;
                Ok(Change::Write(head, ()))
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
            let fresh: Vec<Message> = messages
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
                self.advance_head(session_id, &slot).await?;
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
        Err(
            StorageError::backend("too many concurrent writers on one conversation")
                .with_temporary(true),
        )
    }

    /// The live stored message with `message`'s client id, if any.
    async fn stored_for_client_id(
        &self,
        session_id: &str,
        head: &Head,
        message: &NewMessage,
    ) -> Result<Option<Message>> {
        let Some(client_id) = &message.client_id else {
            return Ok(None);
        };
        let path = self.keys().client_id(session_id, client_id);
        let Some(bytes) = self.objects().get(&path).await? else {
            return Ok(None);
        };
        let entry: ClientIdEntry = wire::decode(&bytes)?;
        if !head.is_live(entry.sequence) {
            return Ok(None);
        }
        Ok(self
            .read_messages(session_id, &[entry.sequence])
            .await?
            .pop()
            .filter(|stored| stored.client_id.as_ref() == Some(client_id)))
    }

    /// The messages at `sequences` (ascending), reading each slot once. A sequence inside
    /// a batch is found in the slot where the batch starts, below it.
    async fn read_messages(&self, session_id: &str, sequences: &[u64]) -> Result<Vec<Message>> {
        let mut slots: BTreeMap<u64, Slot> = BTreeMap::new();
        let direct = in_order(
            16,
            sequences.iter().map(|&s| async move {
                let bytes = self
                    .objects()
                    .get(&self.keys().message_slot(session_id, s))
                    .await?;
                bytes.map(|b| wire::decode::<Slot>(&b)).transpose()
            }),
        )
        .await?;
        for slot in direct.into_iter().flatten() {
            slots.insert(slot.first, slot);
        }
        let mut messages = Vec::with_capacity(sequences.len());
        for &sequence in sequences {
            let covering = |slots: &BTreeMap<u64, Slot>| {
                slots
                    .range(..=sequence)
                    .next_back()
                    .and_then(|(_, slot)| slot.get(sequence).cloned())
            };
            if let Some(message) = covering(&slots) {
                messages.push(message);
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
            if let Some(message) = covering(&slots) {
                messages.push(message);
            }
        }
        Ok(messages)
    }
}

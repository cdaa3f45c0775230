use async_trait::async_trait;
use storage_core::carried::admit;
use storage_core::compaction::{summarize, validate_compact};
use storage_core::conversation::{validate_append, validate_import};
use storage_core::validate::validate_id;
use storage_core::{time, ConversationStore, Message, MessageRange, NewMessage, Result, Retention};

use super::MemoryBackend;
use crate::store::Conversation;

#[async_trait]
impl ConversationStore for MemoryBackend {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let message = admit("append_message", message)?;
        self.op("append_message", |data| {
            validate_id("session id", session_id)?;
            message.validate()?;
            let mut conversation = data.conversations.entry(session_id.to_owned()).or_default();
            Ok(conversation.append(session_id, message))
        })
    }

    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let messages = admit("append_messages", messages)?;
        self.op("append_messages", |data| {
            validate_append(session_id, &messages)?;
            if messages.is_empty() {
                return Ok(Vec::new());
            }
            // One entry lock for the whole batch: its numbers are consecutive.
            let mut conversation = data.conversations.entry(session_id.to_owned()).or_default();
            Ok(messages
                .into_iter()
                .map(|message| conversation.append(session_id, message))
                .collect())
        })
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
        self.op("get_messages", |data| {
            validate_id("session id", session_id)?;
            range.validate()?;
            Ok(data
                .conversations
                .get(session_id)
                .map(|conversation| conversation.window(range))
                .unwrap_or_default())
        })
    }

    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        self.op("pop_last_message", |data| {
            validate_id("session id", session_id)?;
            let Some(mut conversation) = data.conversations.get_mut(session_id) else {
                return Ok(None);
            };
            let popped = conversation.messages.pop_back();
            if let Some(popped) = &popped {
                conversation.forget(std::slice::from_ref(popped));
            }
            Ok(popped)
        })
    }

    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        self.op("clear_conversation", |data| {
            validate_id("session id", session_id)?;
            let Some(mut conversation) = data.conversations.get_mut(session_id) else {
                return Ok(0);
            };
            let removed = conversation.messages.len() as u64;
            conversation.messages.clear();
            conversation.client_ids.clear();
            conversation.replaced.clear();
            Ok(removed)
        })
    }

    async fn compact_conversation(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message> {
        let summary = admit("compact_conversation", summary)?;
        self.op("compact_conversation", |data| {
            validate_compact(session_id, up_to, &summary)?;
            // One entry lock: readers see the prefix or the summary, never both.
            let Some(mut conversation) = data.conversations.get_mut(session_id) else {
                return summarize(session_id, up_to, &[], summary, keep_replaced, time::now());
            };
            if let Some(stored) = summary
                .client_id
                .as_ref()
                .and_then(|id| conversation.client_ids.get(id))
                .and_then(|sequence| conversation.find(*sequence))
            {
                return Ok(stored.clone());
            }
            let end = conversation
                .messages
                .partition_point(|m| m.sequence <= up_to);
            let message = summarize(
                session_id,
                up_to,
                &conversation.messages.make_contiguous()[..end],
                summary,
                keep_replaced,
                time::now(),
            )?;
            let replaced: Vec<Message> = conversation.messages.drain(..end).collect();
            if keep_replaced {
                // Earlier summaries among them keep what they kept: they stay readable.
                conversation.release_client_ids(&replaced);
                conversation.replaced.insert(up_to, replaced);
            } else {
                conversation.release_client_ids(&replaced);
                conversation
                    .replaced
                    .retain(|sequence, _| *sequence > up_to);
            }
            if let Some(client_id) = &message.client_id {
                conversation.client_ids.insert(client_id.clone(), up_to);
            }
            conversation.messages.push_front(message.clone());
            Ok(message)
        })
    }

    async fn get_replaced_messages(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>> {
        self.op("get_replaced_messages", |data| {
            validate_id("session id", session_id)?;
            Ok(data
                .conversations
                .get(session_id)
                .and_then(|conversation| conversation.replaced.get(&summary_sequence).cloned())
                .unwrap_or_default())
        })
    }

    async fn rewind_conversation(&self, session_id: &str, sequence: u64) -> Result<u64> {
        self.op("rewind_conversation", |data| {
            validate_id("session id", session_id)?;
            let Some(mut conversation) = data.conversations.get_mut(session_id) else {
                return Ok(0);
            };
            let keep = conversation
                .messages
                .partition_point(|m| m.sequence <= sequence);
            let removed: Vec<Message> = conversation.messages.drain(keep..).collect();
            conversation.forget(&removed);
            Ok(removed.len() as u64)
        })
    }

    async fn retain_messages(&self, retention: Retention) -> Result<u64> {
        self.op("retain_messages", |data| {
            retention.check()?;
            if retention.is_unbounded() {
                return Ok(0);
            }
            // One entry lock per conversation: its trim is one step for appends and reads.
            Ok(data
                .conversations
                .iter_mut()
                .map(|mut conversation| conversation.retain(&retention))
                .sum())
        })
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let mut messages = admit("import_messages", messages)?;
        self.op("import_messages", |data| {
            validate_import(session_id, &messages)?;
            messages.sort_by_key(|message| message.sequence);
            if messages.is_empty() {
                return Ok(0);
            }
            let mut conversation = data.conversations.entry(session_id.to_owned()).or_default();
            let mut stored = 0;
            for message in messages {
                if message.sequence <= conversation.last_sequence {
                    continue;
                }
                conversation.last_sequence = message.sequence;
                let client_id_taken = message
                    .client_id
                    .as_ref()
                    .is_some_and(|id| conversation.client_ids.contains_key(id));
                if client_id_taken {
                    continue;
                }
                if let Some(client_id) = &message.client_id {
                    conversation
                        .client_ids
                        .insert(client_id.clone(), message.sequence);
                }
                conversation.messages.push_back(message);
                stored += 1;
            }
            Ok(stored)
        })
    }

    async fn list_conversation_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.op("list_conversation_ids", |data| {
            storage_core::validate::validate_limit("conversation id limit", limit)?;
            let mut ids: Vec<String> = data
                .conversations
                .iter()
                .filter(|entry| after.is_none_or(|after| entry.key().as_str() > after))
                .filter(|entry| !entry.messages.is_empty())
                .map(|entry| entry.key().clone())
                .collect();
            ids.sort_unstable();
            ids.truncate(limit);
            Ok(ids)
        })
    }
}

impl Conversation {
    /// Appends under the caller's entry lock; a stored client id returns its message.
    fn append(&mut self, session_id: &str, message: NewMessage) -> Message {
        if let Some(existing) = message
            .client_id
            .as_ref()
            .and_then(|id| self.client_ids.get(id))
        {
            if let Some(stored) = self.find(*existing) {
                return stored.clone();
            }
        }
        self.last_sequence += 1;
        let stored = message.into_message(session_id, self.last_sequence, time::now());
        if let Some(client_id) = &stored.client_id {
            self.client_ids.insert(client_id.clone(), stored.sequence);
        }
        self.messages.push_back(stored.clone());
        stored
    }

    /// Releases the client ids of removed messages, and drops what removed summaries kept:
    /// the kept messages of every summary whose sequence lies in a removed summary's range
    /// (see `storage_core::compaction`).
    fn forget(&mut self, removed: &[Message]) {
        self.release_client_ids(removed);
        for compacted in removed.iter().filter_map(|message| message.compacted) {
            let nested: Vec<u64> = self
                .replaced
                .range(compacted.from..=compacted.to)
                .map(|(sequence, _)| *sequence)
                .collect();
            for sequence in nested {
                self.replaced.remove(&sequence);
            }
        }
    }

    /// Removes the expired prefix of the conversation (see `storage_core::retention`),
    /// reading only what it removes and the message that ends it.
    fn retain(&mut self, retention: &Retention) -> u64 {
        let expired = retention.expired_prefix_in(
            self.messages.len(),
            self.messages.iter().map(|message| message.created_at),
        );
        let removed: Vec<Message> = self.messages.drain(..expired).collect();
        self.forget(&removed);
        removed.len() as u64
    }

    fn release_client_ids(&mut self, removed: &[Message]) {
        for message in removed {
            if let Some(client_id) = &message.client_id {
                self.client_ids.remove(client_id);
            }
        }
    }

    fn find(&self, sequence: u64) -> Option<&Message> {
        self.messages
            .binary_search_by_key(&sequence, |m| m.sequence)
            .ok()
            .map(|position| &self.messages[position])
    }

    /// The messages of `range`, oldest first; cost proportional to the window, not the
    /// conversation.
    fn window(&self, range: MessageRange) -> Vec<Message> {
        let Some((low, high)) = range.bounds() else {
            return Vec::new();
        };
        let start = self.messages.partition_point(|m| m.sequence < low);
        let end = self.messages.partition_point(|m| m.sequence <= high);
        let (start, end) = if range.is_forward() {
            (start, end.min(start.saturating_add(range.limit)))
        } else {
            (start.max(end.saturating_sub(range.limit)), end)
        };
        self.messages.range(start..end).cloned().collect()
    }
}

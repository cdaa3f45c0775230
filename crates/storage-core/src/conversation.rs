//! Conversation history: ordered, append-mostly messages per session.
//!
//! Order is the sequence number, never the clock: every append gets the next number from 1,
//! gapless and strictly increasing, and a number is never handed out twice for a session
//! (not after `pop_last_message`, not after `clear_conversation`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StorageError};
use crate::json::Metadata;
use crate::time::Timestamp;
use crate::validate::{validate_id, validate_limit};

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The session the message belongs to.
    pub session_id: String,
    /// Position in the conversation, from 1.
    pub sequence: u64,
    /// Who spoke: `user`, `assistant`, `system`, `tool`, or anything the caller uses.
    pub role: String,
    /// The content, any JSON value (a string, or structured parts).
    pub content: Value,
    /// The caller's id for the message, which makes appends idempotent.
    pub client_id: Option<String>,
    /// Free-form metadata.
    pub metadata: Metadata,
    /// When the message was stored.
    pub created_at: Timestamp,
    /// The turn it belongs to; see [`crate::turns`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// Ids of the tool calls this message makes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<String>,
    /// The id of the tool call whose result this message is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result_for: Option<String>,
    /// Set on a summary that replaced earlier messages; see
    /// [`ConversationStore::compact_conversation`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted: Option<crate::compaction::Compacted>,
}

/// What a caller gives to append a message.
///
/// ```
/// use serde_json::json;
/// use storage_core::NewMessage;
///
/// let msg = NewMessage::new("user", json!("hello")).with_client_id("req-17");
/// assert_eq!(msg.client_id.as_deref(), Some("req-17"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Who spoke.
    pub role: String,
    /// The content.
    pub content: Value,
    /// The caller's id: appending a message whose client id is already stored returns the
    /// stored message and appends nothing, so retries and replays are safe.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// The turn it belongs to: consecutive messages with the same turn id are one turn
    /// (see [`crate::turns`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// Ids of the tool calls this message makes (an assistant message asking for tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<String>,
    /// The id of the tool call whose result this message is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result_for: Option<String>,
}

impl NewMessage {
    /// A message without client id or metadata.
    pub fn new(role: impl Into<String>, content: impl Into<Value>) -> Self {
        NewMessage {
            role: role.into(),
            content: content.into(),
            client_id: None,
            metadata: Metadata::new(),
            turn_id: None,
            tool_calls: Vec::new(),
            tool_result_for: None,
        }
    }
    /// Sets the client message id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
    /// Places the message in a turn.
    pub fn in_turn(mut self, turn_id: impl Into<String>) -> Self {
        self.turn_id = Some(turn_id.into());
        self
    }
    /// Marks the message as making these tool calls.
    pub fn calling_tools<I: Into<String>>(mut self, call_ids: impl IntoIterator<Item = I>) -> Self {
        self.tool_calls = call_ids.into_iter().map(Into::into).collect();
        self
    }
    /// Marks the message as the result of the tool call `call_id`.
    pub fn tool_result_for(mut self, call_id: impl Into<String>) -> Self {
        self.tool_result_for = Some(call_id.into());
        self
    }

    /// Checks the role, the client id, and the content and metadata against the
    /// [input policy](crate::policy), before any I/O.
    pub fn validate(&self) -> Result<()> {
        validate_id("message role", &self.role)?;
        if let Some(client_id) = &self.client_id {
            validate_id("client message id", client_id)?;
        }
        validate_turn(&self.turn_id, &self.tool_calls, &self.tool_result_for)?;
        crate::policy::check_json("message content", &self.content)?;
        crate::policy::check_metadata("message metadata", &self.metadata)
    }

    /// The stored message this becomes at `sequence`.
    pub fn into_message(self, session_id: &str, sequence: u64, now: Timestamp) -> Message {
        Message {
            session_id: session_id.to_owned(),
            sequence,
            role: self.role,
            content: self.content,
            client_id: self.client_id,
            metadata: self.metadata,
            created_at: now,
            turn_id: self.turn_id,
            tool_calls: self.tool_calls,
            tool_result_for: self.tool_result_for,
            compacted: None,
        }
    }
}

/// The most tool calls one message may make.
pub const MAX_TOOL_CALLS: usize = 256;

/// Checks a message's turn id and tool call ids, before any I/O.
fn validate_turn(
    turn_id: &Option<String>,
    tool_calls: &[String],
    tool_result_for: &Option<String>,
) -> Result<()> {
    if let Some(turn_id) = turn_id {
        validate_id("turn id", turn_id)?;
    }
    if tool_calls.len() > MAX_TOOL_CALLS {
        return Err(StorageError::invalid_input(format!(
            "a message makes {} tool calls; the limit is {MAX_TOOL_CALLS}",
            tool_calls.len()
        )));
    }
    crate::validate::validate_ids("tool call id", tool_calls.iter().map(String::as_str))?;
    if let Some(call_id) = tool_result_for {
        validate_id("tool call id", call_id)?;
    }
    Ok(())
}

/// Checks a batch for [`ConversationStore::append_messages`]: the session id, every message,
/// and no client id repeated within the batch.
pub fn validate_append(session_id: &str, messages: &[NewMessage]) -> Result<()> {
    validate_id("session id", session_id)?;
    let mut seen = std::collections::HashSet::new();
    for message in messages {
        message.validate()?;
        if let Some(client_id) = &message.client_id {
            if !seen.insert(client_id.as_str()) {
                return Err(StorageError::invalid_input(format!(
                    "client message id {client_id:?} appears twice in one batch"
                )));
            }
        }
    }
    Ok(())
}

/// A window of a conversation, for [`ConversationStore::get_messages`].
///
/// With `after` set, the page is the first `limit` messages whose sequence is greater than
/// `after` (paging forward). Otherwise it is the last `limit` messages whose sequence is
/// less than `before` (paging backward; no `before` means from the end). Either way, the
/// messages come back oldest first. Both bounds may be set together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRange {
    /// Only messages with a greater sequence.
    pub after: Option<u64>,
    /// Only messages with a smaller sequence.
    pub before: Option<u64>,
    /// At most this many (1 or more).
    pub limit: usize,
}

impl MessageRange {
    /// The last `limit` messages.
    pub fn last(limit: usize) -> Self {
        MessageRange {
            after: None,
            before: None,
            limit,
        }
    }
    /// The first `limit` messages after `sequence`.
    pub fn after(sequence: u64, limit: usize) -> Self {
        MessageRange {
            after: Some(sequence),
            before: None,
            limit,
        }
    }
    /// The last `limit` messages before `sequence`.
    pub fn before(sequence: u64, limit: usize) -> Self {
        MessageRange {
            after: None,
            before: Some(sequence),
            limit,
        }
    }

    /// Checks the limit, before any I/O.
    pub fn validate(&self) -> Result<()> {
        validate_limit("message limit", self.limit)
    }

    /// Whether the window reads forward from `after`.
    pub fn is_forward(&self) -> bool {
        self.after.is_some()
    }

    /// The inclusive sequence bounds of the window, `None` if it is empty.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        let low = self.after.map_or(Some(1), |after| after.checked_add(1))?;
        let high = self
            .before
            .map_or(Some(u64::MAX), |before| before.checked_sub(1))?;
        (low <= high).then_some((low, high))
    }
}

/// Conversation storage.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Appends one message and returns it with its sequence number. If the message's client
    /// id is already stored for the session, returns the stored message and appends nothing.
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message>;

    /// Appends messages as one unit: all of them get consecutive sequence numbers, or none is
    /// stored. Messages whose client id is already stored come back as stored and take no
    /// number. The result is in input order.
    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>>;

    /// The last `limit` messages, oldest first, at a cost independent of the history's
    /// length.
    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// A window of the conversation, oldest first; see [`MessageRange`].
    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>>;

    /// Removes and returns the newest message. Its number is not reused.
    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>>;

    /// Removes every message of the session (and what summaries among them kept) and
    /// returns how many there were. Numbers are not reused: the next append continues
    /// after the highest number ever handed out.
    async fn clear_conversation(&self, session_id: &str) -> Result<u64>;

    /// Replaces every stored message with a sequence up to `up_to` by `summary`, stored at
    /// `up_to` with [`Message::compacted`] naming what it replaced, in one atomic step: a
    /// reader sees either the old prefix or the summary, never both or neither. Later
    /// messages keep their numbers. With `keep_replaced` the replaced messages stay
    /// readable through [`get_replaced_messages`](Self::get_replaced_messages); without,
    /// they are dropped (with what earlier summaries among them kept). Either way their
    /// client ids are released. The message at `up_to` must be stored (`InvalidInput`
    /// otherwise, also for a session without messages) and must not itself be a summary (`Conflict`: a compaction already ends
    /// there). If the summary's client id is already stored, returns the stored message
    /// and changes nothing. See [`crate::compaction`].
    async fn compact_conversation(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message>;

    /// The messages the summary at `summary_sequence` replaced and kept, oldest first;
    /// empty when it kept none, was removed, or is not a summary.
    async fn get_replaced_messages(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>>;

    /// Removes every message with a sequence above `sequence` (and what summaries among
    /// them kept) in one atomic step, and returns how many messages it removed. Numbers
    /// are not reused: the next append continues after the highest number ever handed out.
    async fn rewind_conversation(&self, session_id: &str, sequence: u64) -> Result<u64>;

    /// Applies `retention` to every conversation (the series is a session's stored
    /// messages): see [`crate::retention`] for the rule (an oldest-first prefix of expired
    /// records, never the newest, one atomic step per series) and the cost. Returns how
    /// many messages it removed. `keep_last` of 0 is `InvalidInput`; a retention without
    /// limits removes nothing.
    async fn retain_messages(&self, retention: crate::Retention) -> Result<u64>;

    /// Stores messages of `session_id` at the sequence numbers they carry, with their
    /// client ids and timestamps, for moving data between backends. Taken in ascending
    /// sequence order, a message is stored only if its sequence is above every number the
    /// session has handed out (stored, popped or cleared: a number is never reused) and its
    /// client id is not stored for a live message; so importing twice adds nothing. The
    /// session's counter is raised to at least the highest sequence given, so a later
    /// append never reuses a number. Every message must name `session_id` and a
    /// sequence of 1 or more (`InvalidInput` before any I/O). Returns how many messages
    /// were stored. Backends that cannot answer `Unsupported`.
    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let _ = (session_id, messages);
        Err(StorageError::unsupported(
            "this backend cannot import messages",
        ))
    }

    /// Session ids that may hold messages, whether or not the session has a record:
    /// every session with a stored message is listed (an id whose messages were all
    /// removed may be listed too), sorted, greater than `after`, at most `limit` (1 or
    /// more) of them. How `storectl migrate` finds conversations without a session record.
    /// Backends that cannot enumerate answer `Unsupported`.
    async fn list_conversation_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let _ = (after, limit);
        Err(StorageError::unsupported(
            "this backend cannot list conversation ids",
        ))
    }
}

/// Checks a batch for [`ConversationStore::import_messages`], before any I/O.
pub fn validate_import(session_id: &str, messages: &[Message]) -> Result<()> {
    validate_id("session id", session_id)?;
    for message in messages {
        if message.session_id != session_id {
            return Err(StorageError::invalid_input(format!(
                "message of session {:?} imported into session {session_id:?}",
                message.session_id
            )));
        }
        if message.sequence == 0 {
            return Err(StorageError::invalid_input(
                "imported message has sequence 0; sequences start at 1",
            ));
        }
        crate::policy::check_imported_number("imported message sequence", message.sequence)?;
        validate_id("message role", &message.role)?;
        if let Some(client_id) = &message.client_id {
            validate_id("client message id", client_id)?;
        }
        validate_turn(
            &message.turn_id,
            &message.tool_calls,
            &message.tool_result_for,
        )?;
        crate::policy::check_json("message content", &message.content)?;
        crate::policy::check_metadata("message metadata", &message.metadata)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds() {
        assert_eq!(MessageRange::last(5).bounds(), Some((1, u64::MAX)));
        assert_eq!(MessageRange::after(3, 5).bounds(), Some((4, u64::MAX)));
        assert_eq!(MessageRange::before(3, 5).bounds(), Some((1, 2)));
        assert_eq!(MessageRange::before(1, 5).bounds(), None);
        assert_eq!(MessageRange::after(u64::MAX, 5).bounds(), None);
        let both = MessageRange {
            after: Some(5),
            before: Some(6),
            limit: 1,
        };
        assert_eq!(both.bounds(), None);
    }

    #[test]
    fn a_message_of_the_previous_release_reads_unchanged() {
        let old = br#"{"v":1,"kind":"message","data":{"session_id":"s","sequence":3,"role":"assistant","content":"Here is the plan.","client_id":"req-17","metadata":{},"created_at":"2025-03-14T09:31:02.120Z"}}"#;
        let message: Message = crate::wire::decode(old).unwrap();
        assert_eq!(message.sequence, 3);
        assert_eq!(message.turn_id, None);
        assert!(message.tool_calls.is_empty());
        assert_eq!(message.tool_result_for, None);
        // Without turn fields it is written exactly as that release wrote it.
        assert_eq!(crate::wire::encode(&message).unwrap(), old.to_vec());
    }

    #[test]
    fn batch_rejects_repeated_client_ids() {
        let msgs = vec![
            NewMessage::new("user", "a").with_client_id("x"),
            NewMessage::new("user", "b").with_client_id("x"),
        ];
        assert!(validate_append("s", &msgs).is_err());
    }
}

//! Compaction: a summary message replaces a prefix of a conversation.
//!
//! [`ConversationStore::compact_conversation`](crate::ConversationStore::compact_conversation)
//! replaces the stored messages up to a sequence number by one summary, stored at that
//! number, in one atomic step; later messages keep their numbers, so a reader's cursor
//! stays valid. The summary records what it replaced ([`Compacted`]): the range of
//! original sequence numbers it stands for (an earlier summary inside the range widens it
//! to that summary's own range), how many stored messages it replaced, and whether they
//! were kept. Kept messages are read with
//! [`get_replaced_messages`](crate::ConversationStore::get_replaced_messages) and removed
//! with their summary (by `pop_last_message`, `rewind_conversation`,
//! `clear_conversation`, the session's removal, or a later compaction that drops it).
//!
//! What summaries kept nests: a kept compaction that replaces an earlier summary keeps it
//! among its messages, and the earlier summary's own kept messages stay readable by its
//! sequence. The kept messages under a summary at `to` are therefore exactly those kept
//! under the sequences `from..=to` of its [`Compacted`] range, and removing the summary
//! removes them all: a backend drops the kept messages of every summary sequence in the
//! removed summary's range. A compaction that drops (`keep_replaced: false`) drops the kept
//! messages of every summary sequence up to its `up_to`.
//!
//! Every backend builds the summary with [`summarize`], inside its atomic step, from the
//! messages it replaces.

use serde::{Deserialize, Serialize};

use crate::conversation::{Message, NewMessage};
use crate::error::{Result, StorageError};
use crate::time::Timestamp;
use crate::validate::validate_id;

/// What a summary message replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compacted {
    /// The lowest original sequence the summary stands for.
    pub from: u64,
    /// The highest: the summary's own sequence.
    pub to: u64,
    /// How many stored messages it replaced (an earlier summary counts as one).
    pub replaced: u64,
    /// Whether they were kept, readable with `get_replaced_messages`.
    pub kept: bool,
}

/// Checks a compaction before any I/O: the session id, `up_to` (1 or more) and the
/// summary.
pub fn validate_compact(session_id: &str, up_to: u64, summary: &NewMessage) -> Result<()> {
    validate_id("session id", session_id)?;
    if up_to == 0 {
        return Err(StorageError::invalid_input(
            "a compaction ends at sequence 1 or more",
        ));
    }
    summary.validate()
}

/// The summary message a compaction stores, from the messages it replaces (every stored
/// message with a sequence up to `up_to`, oldest first); `InvalidInput` when no message is
/// stored at `up_to`, `Conflict` when the message there is already a summary.
///
/// ```
/// use serde_json::json;
/// use storage_core::compaction::summarize;
/// use storage_core::NewMessage;
///
/// let now = storage_core::time::now();
/// let replaced: Vec<_> = (1..=3)
///     .map(|n| NewMessage::new("user", json!(n)).into_message("s1", n, now))
///     .collect();
/// let summary = summarize("s1", 3, &replaced, NewMessage::new("system", "earlier: 1-3"), true, now).unwrap();
/// let compacted = summary.compacted.unwrap();
/// assert_eq!((summary.sequence, compacted.from, compacted.replaced), (3, 1, 3));
/// ```
pub fn summarize(
    session_id: &str,
    up_to: u64,
    replaced: &[Message],
    summary: NewMessage,
    keep_replaced: bool,
    now: Timestamp,
) -> Result<Message> {
    let Some(last) = replaced.last().filter(|last| last.sequence == up_to) else {
        return Err(StorageError::invalid_input(format!(
            "no message of session {session_id:?} is stored at sequence {up_to}; a \
             compaction ends at a stored message"
        )));
    };
    if last.compacted.is_some() {
        return Err(StorageError::conflict(format!(
            "the messages of session {session_id:?} through sequence {up_to} are already \
             compacted"
        )));
    }
    let from = replaced.first().map_or(up_to, |first| {
        first.compacted.map_or(first.sequence, |c| c.from)
    });
    let mut message = summary.into_message(session_id, up_to, now);
    message.compacted = Some(Compacted {
        from,
        to: up_to,
        replaced: replaced.len() as u64,
        kept: keep_replaced,
    });
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(n: u64) -> Message {
        NewMessage::new("user", json!(n)).into_message("s", n, crate::time::now())
    }

    #[test]
    fn rules() {
        let now = crate::time::now();
        let summary = || NewMessage::new("system", "sum");
        let err = summarize("s", 4, &[at(1), at(2)], summary(), false, now).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        let err = summarize("s", 4, &[], summary(), false, now).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        let first = summarize("s", 2, &[at(1), at(2)], summary(), false, now).unwrap();
        let err =
            summarize("s", 2, std::slice::from_ref(&first), summary(), false, now).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        // An earlier summary in the range widens the range to its own.
        let second = summarize("s", 5, &[first, at(4), at(5)], summary(), true, now).unwrap();
        let compacted = second.compacted.unwrap();
        assert_eq!(
            (compacted.from, compacted.to, compacted.replaced),
            (1, 5, 3)
        );
        assert!(validate_compact("s", 0, &summary()).is_err());
    }
}

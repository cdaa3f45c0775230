//! Conversation history that fits agents: whole turns, and tool calls kept with their
//! results.
//!
//! A *turn* is a run of consecutive messages (in sequence order) that carry the same
//! [`turn_id`](crate::Message::turn_id); a message without a turn id is a turn of its own.
//! Appending a turn's messages in one [`append_messages`](ConversationStore::append_messages)
//! keeps them consecutive whatever else is appended concurrently.
//!
//! A message names the tool calls it makes ([`tool_calls`](crate::Message::tool_calls)) and
//! the call whose result it is ([`tool_result_for`](crate::Message::tool_result_for)). A
//! window that holds a result without its call would hand a model an orphaned tool result;
//! [`HistoryWindow::LastMessages`] with `keep_tool_pairs` never does.
//!
//! Every window is read backward from the end in pages, at a cost that depends on the
//! window's size (and the distance to a result's call), never on the history's length, on
//! every backend. Messages always come back in sequence order, oldest first.

use std::collections::HashSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::conversation::{ConversationStore, Message, MessageRange};
use crate::error::Result;
use crate::validate::{validate_id, validate_limit};

/// How many messages before its start [`HistoryWindow::LastMessages`] reads to find the
/// calls of the tool results it holds; a result whose call is further back (or not stored)
/// is left out of the window instead.
pub const MAX_TOOL_PAIR_DISTANCE: usize = 1_000;

/// The messages read per round trip while walking backward.
const PAGE: usize = 64;

/// Which end of a conversation to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryWindow {
    /// The last `limit` messages. With `keep_tool_pairs`, the window also reaches back to
    /// the call of every tool result it holds (so it may hold more than `limit`
    /// messages), and leaves out a result whose call is not within the
    /// [`MAX_TOOL_PAIR_DISTANCE`] messages before the last `limit`.
    LastMessages {
        /// At most this many (1 or more), before reaching back for calls.
        limit: usize,
        /// Never hand out a tool result without its call.
        keep_tool_pairs: bool,
    },
    /// Every message of the last `turns` turns (1 or more).
    LastTurns {
        /// How many turns.
        turns: usize,
    },
}

/// Turn-aware reads over any [`ConversationStore`].
///
/// ```
/// use storage_core::turns::{ConversationStoreExt, HistoryWindow};
/// use storage_core::{ConversationStore, Message, Result};
///
/// async fn prompt(store: &dyn ConversationStore, session: &str) -> Result<Vec<Message>> {
///     store.get_history_window(session, HistoryWindow::LastTurns { turns: 3 }).await
/// }
/// ```
#[async_trait]
pub trait ConversationStoreExt: ConversationStore {
    /// The messages `window` selects, oldest first; see [`HistoryWindow`].
    async fn get_history_window(
        &self,
        session_id: &str,
        window: HistoryWindow,
    ) -> Result<Vec<Message>> {
        validate_id("session id", session_id)?;
        match window {
            HistoryWindow::LastMessages {
                limit,
                keep_tool_pairs,
            } => {
                validate_limit("message limit", limit)?;
                let last = self.get_conversation_history(session_id, limit).await?;
                if keep_tool_pairs {
                    with_tool_pairs(self, session_id, last).await
                } else {
                    Ok(last)
                }
            }
            HistoryWindow::LastTurns { turns } => {
                validate_limit("turn count", turns)?;
                last_turns(self, session_id, turns).await
            }
        }
    }
}

impl<S: ConversationStore + ?Sized> ConversationStoreExt for S {}

/// Whether `newer` continues the turn of `older` (its predecessor in sequence order).
fn same_turn(older: &Message, newer: &Message) -> bool {
    older.turn_id.is_some() && older.turn_id == newer.turn_id
}

/// The messages before `first` (exclusive), oldest first, at most `limit`.
async fn page_before<S: ConversationStore + ?Sized>(
    store: &S,
    session_id: &str,
    first: u64,
    limit: usize,
) -> Result<Vec<Message>> {
    store
        .get_messages(session_id, MessageRange::before(first, limit))
        .await
}

async fn last_turns<S: ConversationStore + ?Sized>(
    store: &S,
    session_id: &str,
    turns: usize,
) -> Result<Vec<Message>> {
    let mut newest_first: Vec<Message> = Vec::new();
    let mut complete = 0;
    let mut page = store.get_conversation_history(session_id, PAGE).await?;
    loop {
        let exhausted = page.len() < PAGE;
        for message in page.into_iter().rev() {
            if let Some(newer) = newest_first.last() {
                // A message outside the newer one's turn completes that turn.
                if !same_turn(&message, newer) {
                    complete += 1;
                    if complete == turns {
                        newest_first.reverse();
                        return Ok(newest_first);
                    }
                }
            }
            newest_first.push(message);
        }
        let oldest = match newest_first.last() {
            Some(oldest) if !exhausted => oldest.sequence,
            _ => break,
        };
        page = page_before(store, session_id, oldest, PAGE).await?;
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// The tool calls whose results `window` holds without the call.
fn missing_calls(window: &[Message]) -> Vec<String> {
    let called: HashSet<&str> = window
        .iter()
        .flat_map(|message| message.tool_calls.iter().map(String::as_str))
        .collect();
    let mut missing: Vec<String> = window
        .iter()
        .filter_map(|message| message.tool_result_for.as_deref())
        .filter(|call| !called.contains(call))
        .map(str::to_owned)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

async fn with_tool_pairs<S: ConversationStore + ?Sized>(
    store: &S,
    session_id: &str,
    window: Vec<Message>,
) -> Result<Vec<Message>> {
    let window_len = window.len();
    let mut messages = window;
    // The window is `messages[start..]`; what lies before it was read to find calls.
    let mut start = 0;
    let mut unreachable: HashSet<String> = HashSet::new();
    let mut more_before = true;
    loop {
        let missing: Vec<String> = missing_calls(&messages[start..])
            .into_iter()
            .filter(|call| !unreachable.contains(call))
            .collect();
        if missing.is_empty() {
            break;
        }
        let positions: Vec<Option<usize>> = missing
            .iter()
            .map(|call| {
                messages[..start]
                    .iter()
                    .rposition(|message| message.tool_calls.contains(call))
            })
            .collect();
        if let Some(earliest) = positions.iter().copied().collect::<Option<Vec<_>>>() {
            // Every call was read: start at the earliest (what that brings in is checked
            // on the next round).
            start = earliest.into_iter().min().unwrap_or(start);
            continue;
        }
        let read = messages.len() - window_len;
        if more_before && read < MAX_TOOL_PAIR_DISTANCE {
            let want = PAGE.min(MAX_TOOL_PAIR_DISTANCE - read);
            let page = page_before(store, session_id, messages[0].sequence, want).await?;
            more_before = page.len() == want;
            start += page.len();
            messages.splice(0..0, page);
            continue;
        }
        for (call, position) in missing.into_iter().zip(positions) {
            if position.is_none() {
                unreachable.insert(call);
            }
        }
    }
    messages.drain(..start);
    messages.retain(|message| {
        message
            .tool_result_for
            .as_ref()
            .is_none_or(|call| !unreachable.contains(call))
    });
    Ok(messages)
}

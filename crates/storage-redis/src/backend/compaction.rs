//! Compaction, rewind and the read of kept messages.
//!
//! The summary is built by `storage_core::compaction::summarize` from the messages it
//! replaces, which Lua cannot do, so a compaction reads the prefix, builds the summary,
//! then runs one script that applies it only if the prefix is still what was read (and
//! retries otherwise): the swap itself is one script on the session's slot, so readers see
//! the prefix or the summary, never both or neither. Rewind is one script. The scripts are
//! in `scripts/conversation.rs`.

use deadpool_redis::redis::Value;
use storage_core::compaction::{summarize, validate_compact};
use storage_core::validate::validate_id;
use storage_core::{time, wire, Message, NewMessage, Result, StorageError};

use super::{decode_messages, ttl_ms, RedisBackend};
use crate::error::unexpected_reply;
use crate::pool::from_value;

/// How often a compaction reads the prefix again after it changed under it. Only removals
/// of the prefix (pops, rewinds, clears, other compactions) change it, and each makes
/// progress, so running out means the conversation is being rewritten as fast as it is
/// read.
const COMPACT_ATTEMPTS: usize = 16;

/// What the read of the prefix found.
enum Prefix {
    /// The summary's client id is stored: this message has it (encoded).
    Stored(Vec<u8>),
    /// The stored members up to the compaction's end, oldest first.
    Members(Vec<Vec<u8>>),
}

impl RedisBackend {
    pub(super) async fn compact(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message> {
        validate_compact(session_id, up_to, &summary)?;
        let keys = self.keys.session(session_id);
        let ttl = ttl_ms(self.config.conversation_ttl_secs);
        let up_to_arg = up_to.to_string();
        let client_id = summary.client_id.clone().unwrap_or_default();
        let keep = if keep_replaced { "1" } else { "0" };
        for _ in 0..COMPACT_ATTEMPTS {
            let members = match self.read_prefix(session_id, &up_to_arg, &client_id).await? {
                Prefix::Stored(member) => return wire::decode(&member),
                Prefix::Members(members) => members,
            };
            let replaced = decode_messages(members.clone())?;
            let message = summarize(
                session_id,
                up_to,
                &replaced,
                summary.clone(),
                keep_replaced,
                time::now(),
            )?;
            let encoded = wire::encode(&message)?;
            // `summarize` refuses an empty prefix, so there is a first and a last.
            let (Some(first), Some(last)) = (members.first(), members.last()) else {
                return Err(unexpected_reply("a summary built from no messages"));
            };
            let count = members.len().to_string();
            let mut reply: Vec<Value> = self
                .client
                .eval(
                    &self.scripts.compact,
                    &keys.compaction(),
                    &[
                        ttl.as_bytes(),
                        up_to_arg.as_bytes(),
                        count.as_bytes(),
                        first,
                        last,
                        &encoded,
                        client_id.as_bytes(),
                        keep.as_bytes(),
                    ],
                )
                .await?;
            if reply.is_empty() {
                return Err(unexpected_reply("empty compaction reply"));
            }
            match from_value::<i64>(reply.remove(0), "compaction status")? {
                1 => return Ok(message),
                0 => return wire::decode(&stored_member(reply)?),
                _ => continue,
            }
        }
        Err(StorageError::conflict(format!(
            "the messages of session {session_id:?} through sequence {up_to} changed under \
             the compaction {COMPACT_ATTEMPTS} times; try again"
        )))
    }

    async fn read_prefix(&self, session_id: &str, up_to: &str, client_id: &str) -> Result<Prefix> {
        let keys = self.keys.session(session_id);
        let mut reply: Vec<Value> = self
            .client
            .eval(
                &self.scripts.read_prefix,
                &[&keys.messages, &keys.client_ids],
                &[up_to.as_bytes(), client_id.as_bytes()],
            )
            .await?;
        if reply.is_empty() {
            return Err(unexpected_reply("empty prefix reply"));
        }
        if from_value::<i64>(reply.remove(0), "prefix status")? == 0 {
            return stored_member(reply).map(Prefix::Stored);
        }
        reply
            .into_iter()
            .map(|member| from_value(member, "stored message"))
            .collect::<Result<_>>()
            .map(Prefix::Members)
    }

    pub(super) async fn replaced(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>> {
        validate_id("session id", session_id)?;
        let keys = self.keys.session(session_id);
        let members: Vec<Vec<u8>> = self
            .client
            .eval(
                &self.scripts.replaced_messages,
                &[&keys.kept],
                &[summary_sequence.to_string().as_bytes()],
            )
            .await?;
        decode_messages(members)
    }

    pub(super) async fn rewind(&self, session_id: &str, sequence: u64) -> Result<u64> {
        validate_id("session id", session_id)?;
        let keys = self.keys.session(session_id);
        self.client
            .eval(
                &self.scripts.rewind,
                &keys.removal(),
                &[sequence.to_string().as_bytes()],
            )
            .await
    }
}

/// The member a reply of `{0, stored member}` names (the status already taken off).
fn stored_member(reply: Vec<Value>) -> Result<Vec<u8>> {
    let member = reply
        .into_iter()
        .next()
        .ok_or_else(|| unexpected_reply("no stored message in the reply"))?;
    from_value(member, "stored message")
}

//! Compaction and rewind, and the messages summaries kept (`replaced_messages`).
//!
//! Both run as one write job: the writer's transaction holds SQLite's write lock, so
//! appends, pops and other compactions of the session wait for it, and a reader's
//! statement sees the snapshot before or after the job, never part of it. Each touches
//! only the rows it replaces or removes (primary-key ranges), never the rest of the
//! history. Which kept messages go with a removed summary is decided by the
//! `compacted_from` column (see `migrations/V3__compaction.sql` and
//! `storage_core::compaction`).

use rusqlite::OptionalExtension;
use storage_core::compaction::{summarize, validate_compact};
use storage_core::validate::validate_id;
use storage_core::{time, wire, Message, NewMessage};

use crate::backend::{to_i64, SqliteBackend};
use crate::conversation::{decode, BY_CLIENT_ID};
use crate::engine::Db;
use crate::error::SqlResult;

/// The messages a compaction replaces, oldest first.
const PREFIX: &str = "SELECT sequence, record FROM \"{ns}.messages\" \
     WHERE session_id = ?1 AND sequence <= ?2 ORDER BY sequence";

/// Copies the replaced messages under the summary's sequence, records unchanged.
const KEEP_PREFIX: &str = "INSERT INTO \"{ns}.replaced_messages\" \
     (session_id, summary_sequence, sequence, record) \
     SELECT session_id, ?2, sequence, record FROM \"{ns}.messages\" \
     WHERE session_id = ?1 AND sequence <= ?2";

/// A dropping compaction drops what every summary up to its sequence kept.
const DROP_KEPT_UP_TO: &str = "DELETE FROM \"{ns}.replaced_messages\" \
     WHERE session_id = ?1 AND summary_sequence <= ?2";

const DELETE_PREFIX: &str =
    "DELETE FROM \"{ns}.messages\" WHERE session_id = ?1 AND sequence <= ?2";

const INSERT_SUMMARY: &str = "INSERT INTO \"{ns}.messages\" \
     (session_id, sequence, client_id, record, compacted_from) VALUES (?1, ?2, ?3, ?4, ?5)";

const KEPT: &str = "SELECT sequence, record FROM \"{ns}.replaced_messages\" \
     WHERE session_id = ?1 AND summary_sequence = ?2 ORDER BY sequence";

const DROP_KEPT_RANGE: &str = "DELETE FROM \"{ns}.replaced_messages\" \
     WHERE session_id = ?1 AND summary_sequence BETWEEN ?2 AND ?3";

/// The summaries a rewind or a retention sweep removes, with their ranges: a scan of the
/// removed rows only.
const SUMMARIES_IN: &str = "SELECT sequence, compacted_from FROM \"{ns}.messages\" \
     WHERE session_id = ?1 AND sequence BETWEEN ?2 AND ?3 AND compacted_from IS NOT NULL";

const DELETE_RANGE: &str =
    "DELETE FROM \"{ns}.messages\" WHERE session_id = ?1 AND sequence BETWEEN ?2 AND ?3";

/// Drops what a removed summary at `to` kept: the kept messages of every summary sequence
/// in its range `from..=to`, nested compactions included.
pub(crate) fn drop_kept(db: &Db<'_>, session_id: &str, from: i64, to: i64) -> SqlResult<()> {
    db.prepare(DROP_KEPT_RANGE)?
        .execute((session_id, from, to))?;
    Ok(())
}

/// The compaction, inside the writer's transaction.
fn compact(
    db: &Db<'_>,
    session_id: &str,
    up_to: u64,
    summary: NewMessage,
    keep_replaced: bool,
) -> SqlResult<Message> {
    if let Some(client_id) = &summary.client_id {
        let stored = db
            .prepare(BY_CLIENT_ID)?
            .query_row((session_id, client_id), |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        if let Some((sequence, record)) = stored {
            return decode(session_id, sequence, &record);
        }
    }
    let end = to_i64(up_to);
    // Decoded before anything changes: `summarize` needs the replaced messages, and a
    // record that cannot be decoded fails the compaction instead of being moved unread.
    let replaced = {
        let mut statement = db.prepare(PREFIX)?;
        let mut rows = statement.query((session_id, end))?;
        let mut replaced = Vec::new();
        while let Some(row) = rows.next()? {
            replaced.push(decode(session_id, row.get(0)?, row.get_ref(1)?.as_blob()?)?);
        }
        replaced
    };
    let message = summarize(
        session_id,
        up_to,
        &replaced,
        summary,
        keep_replaced,
        time::now(),
    )?;
    let record = wire::encode(&message)?;
    if keep_replaced {
        // What earlier summaries among them kept stays under their own sequences.
        db.prepare(KEEP_PREFIX)?.execute((session_id, end))?;
    } else {
        db.prepare(DROP_KEPT_UP_TO)?.execute((session_id, end))?;
    }
    db.prepare(DELETE_PREFIX)?.execute((session_id, end))?;
    let from = message.compacted.map(|compacted| to_i64(compacted.from));
    db.prepare(INSERT_SUMMARY)?
        .execute((session_id, end, &message.client_id, record, from))?;
    Ok(message)
}

/// Removes the messages numbered `low..=high`, with what the summaries among them kept,
/// inside the writer's transaction; how many messages (summaries once) it removed. The
/// rewind (a tail) and retention (a head) of a conversation.
pub(crate) fn remove_range(db: &Db<'_>, session_id: &str, low: i64, high: i64) -> SqlResult<u64> {
    let summaries: Vec<(i64, i64)> = db
        .prepare(SUMMARIES_IN)?
        .query_map((session_id, low, high), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (to, from) in summaries {
        drop_kept(db, session_id, from, to)?;
    }
    Ok(db.prepare(DELETE_RANGE)?.execute((session_id, low, high))? as u64)
}

/// The rewind, inside the writer's transaction; how many messages it removed.
fn rewind(db: &Db<'_>, session_id: &str, sequence: i64) -> SqlResult<u64> {
    match sequence.checked_add(1) {
        Some(low) => remove_range(db, session_id, low, i64::MAX),
        None => Ok(0),
    }
}

impl SqliteBackend {
    pub(crate) async fn compact_conversation_op(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> SqlResult<Message> {
        validate_compact(session_id, up_to, &summary)?;
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| compact(db, &session_id, up_to, summary, keep_replaced))
            .await
    }

    pub(crate) async fn get_replaced_messages_op(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> SqlResult<Vec<Message>> {
        validate_id("session id", session_id)?;
        let summary_sequence = to_i64(summary_sequence);
        let session_id = session_id.to_owned();
        self.engine
            .read(move |db| {
                let mut statement = db.prepare(KEPT)?;
                let mut rows = statement.query((&session_id, summary_sequence))?;
                let mut messages = Vec::new();
                while let Some(row) = rows.next()? {
                    let record = row.get_ref(1)?.as_blob()?;
                    messages.push(decode(&session_id, row.get(0)?, record)?);
                }
                Ok(messages)
            })
            .await
    }

    pub(crate) async fn rewind_conversation_op(
        &self,
        session_id: &str,
        sequence: u64,
    ) -> SqlResult<u64> {
        validate_id("session id", session_id)?;
        let sequence = to_i64(sequence);
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| rewind(db, &session_id, sequence))
            .await
    }
}

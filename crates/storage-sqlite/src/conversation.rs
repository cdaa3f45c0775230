//! Conversation history: one row per message keyed by (session, sequence), and a counter
//! row per session holding the highest sequence ever handed out. Compaction, rewind and
//! the messages summaries kept are in `compaction.rs`.

use rusqlite::OptionalExtension;
use storage_core::conversation::validate_append;
use storage_core::validate::validate_id;
use storage_core::{time, wire, Message, MessageRange, NewMessage};

use crate::backend::{to_i64, to_u64, SqliteBackend};
use crate::compaction::drop_kept;
use crate::engine::Db;
use crate::error::SqlResult;

pub(crate) const BY_CLIENT_ID: &str = "SELECT sequence, record FROM \"{ns}.messages\" \
     WHERE session_id = ?1 AND client_id = ?2";

/// Takes `?2` numbers from the session's counter; returns the new highest one.
const TAKE_SEQUENCES: &str = "INSERT INTO \"{ns}.message_counters\" AS c \
     (session_id, last_sequence) VALUES (?1, ?2) ON CONFLICT (session_id) \
     DO UPDATE SET last_sequence = c.last_sequence + excluded.last_sequence \
     RETURNING last_sequence";

/// Stores one message under its number.
const INSERT: &str = "INSERT INTO \"{ns}.messages\" (session_id, sequence, client_id, record) \
     VALUES (?1, ?2, ?3, ?4)";

const LAST_N: &str = "SELECT sequence, record FROM \"{ns}.messages\" WHERE session_id = ?1 \
     AND sequence BETWEEN ?2 AND ?3 ORDER BY sequence DESC LIMIT ?4";

const FIRST_N: &str = "SELECT sequence, record FROM \"{ns}.messages\" WHERE session_id = ?1 \
     AND sequence BETWEEN ?2 AND ?3 ORDER BY sequence ASC LIMIT ?4";

const NEWEST: &str =
    "SELECT sequence, record, compacted_from FROM \"{ns}.messages\" WHERE session_id = ?1 \
     ORDER BY sequence DESC LIMIT 1";

const DELETE_ONE: &str = "DELETE FROM \"{ns}.messages\" WHERE session_id = ?1 AND sequence = ?2";

const CLEAR: &str = "DELETE FROM \"{ns}.messages\" WHERE session_id = ?1";
const CLEAR_KEPT: &str = "DELETE FROM \"{ns}.replaced_messages\" WHERE session_id = ?1";

/// A stored message; the row's session and sequence are authoritative over the record's.
pub(crate) fn decode(session_id: &str, sequence: i64, record: &[u8]) -> SqlResult<Message> {
    let mut message: Message = wire::decode(record)?;
    message.session_id = session_id.to_owned();
    message.sequence = to_u64(sequence);
    Ok(message)
}

/// Appends in the writer's transaction: messages whose client id is stored come back as
/// stored; the others take consecutive numbers from the counter, in input order. The
/// writer holds SQLite's write lock, so numbers are gapless across threads and processes.
pub(crate) fn append(
    db: &Db<'_>,
    session_id: &str,
    drafts: Vec<Message>,
    records: Vec<Vec<u8>>,
) -> SqlResult<Vec<Message>> {
    let mut results: Vec<Option<Message>> = Vec::with_capacity(drafts.len());
    let mut fresh = Vec::new();
    for (position, draft) in drafts.iter().enumerate() {
        let stored = match &draft.client_id {
            Some(client_id) => db
                .prepare(BY_CLIENT_ID)?
                .query_row((session_id, client_id), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .optional()?,
            None => None,
        };
        match stored {
            Some((sequence, record)) => results.push(Some(decode(session_id, sequence, &record)?)),
            None => {
                results.push(None);
                fresh.push(position);
            }
        }
    }
    if !fresh.is_empty() {
        let count = fresh.len() as i64;
        let last: i64 = db
            .prepare(TAKE_SEQUENCES)?
            .query_row((session_id, count), |row| row.get(0))?;
        let mut insert = db.prepare(INSERT)?;
        for (rank, position) in fresh.into_iter().enumerate() {
            let sequence = last - count + 1 + rank as i64;
            let draft = &drafts[position];
            insert.execute((session_id, sequence, &draft.client_id, &records[position]))?;
            let mut message = draft.clone();
            message.sequence = to_u64(sequence);
            results[position] = Some(message);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

impl SqliteBackend {
    pub(crate) async fn append_messages_op(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> SqlResult<Vec<Message>> {
        validate_append(session_id, &messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let now = time::now();
        // Records are encoded here, on the caller's task, not on the one writer thread;
        // the row's sequence column is the number (see `decode`).
        let drafts: Vec<Message> = messages
            .into_iter()
            .map(|message| message.into_message(session_id, 0, now))
            .collect();
        let records = drafts
            .iter()
            .map(wire::encode)
            .collect::<storage_core::Result<Vec<_>>>()?;
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| append(db, &session_id, drafts, records))
            .await
    }

    pub(crate) async fn get_messages_op(
        &self,
        session_id: &str,
        range: MessageRange,
    ) -> SqlResult<Vec<Message>> {
        validate_id("session id", session_id)?;
        range.validate()?;
        let Some((low, high)) = range.bounds() else {
            return Ok(Vec::new());
        };
        let (low, high, limit) = (to_i64(low), to_i64(high), to_i64(range.limit as u64));
        let forward = range.is_forward();
        let session_id = session_id.to_owned();
        self.engine
            .read(move |db| {
                let mut statement = db.prepare(if forward { FIRST_N } else { LAST_N })?;
                let mut rows = statement.query((&session_id, low, high, limit))?;
                let mut messages = Vec::new();
                while let Some(row) = rows.next()? {
                    let record = row.get_ref(1)?.as_blob()?;
                    messages.push(decode(&session_id, row.get(0)?, record)?);
                }
                if !forward {
                    messages.reverse();
                }
                Ok(messages)
            })
            .await
    }

    pub(crate) async fn pop_last_message_op(&self, session_id: &str) -> SqlResult<Option<Message>> {
        validate_id("session id", session_id)?;
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| {
                let newest = db
                    .prepare(NEWEST)?
                    .query_row([&session_id], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, Option<i64>>(2)?,
                        ))
                    })
                    .optional()?;
                let Some((sequence, record, compacted_from)) = newest else {
                    return Ok(None);
                };
                // Decoded before it is removed: a record that cannot be decoded stays.
                let message = decode(&session_id, sequence, &record)?;
                db.prepare(DELETE_ONE)?.execute((&session_id, sequence))?;
                if let Some(from) = compacted_from {
                    drop_kept(db, &session_id, from, sequence)?;
                }
                Ok(Some(message))
            })
            .await
    }

    pub(crate) async fn clear_conversation_op(&self, session_id: &str) -> SqlResult<u64> {
        validate_id("session id", session_id)?;
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| {
                db.prepare(CLEAR_KEPT)?.execute([&session_id])?;
                Ok(db.prepare(CLEAR)?.execute([&session_id])? as u64)
            })
            .await
    }
}

//! Conversation history: one row per message keyed by (session, sequence), and a counter
//! row per session holding the highest sequence ever handed out. Compaction, rewind and
//! the messages summaries kept are in `compaction.rs`, with the lock that orders every
//! change to a session's messages except appends and imports.

use storage_core::conversation::validate_append;
use storage_core::validate::validate_id;
use storage_core::{time, wire, Message, MessageRange, NewMessage, StorageError};
use tokio_postgres::Row;

use crate::backend::{to_i64, to_u64, PostgresBackend};
use crate::compaction::{drop_kept, lock_session};
use crate::error::PgResult;
use crate::sql::Sql;

/// Appends a batch in one statement: finds the messages whose client id is already stored,
/// takes consecutive numbers for the others from the session's counter (the upsert holds the
/// counter's row lock until commit, so concurrent appends to a session queue up and numbers
/// stay gapless), inserts them, and returns per input position the number and, for a
/// message already stored, its record.
///
/// Two appends racing with the same client id: the later one sees the earlier one's row
/// only after the statement started, so its insert hits `messages_by_client_id`; the whole
/// statement (counter included) rolls back and is retried, and then finds the stored row.
pub const APPEND: &str = "\
WITH input AS (
    SELECT i.client_id, i.record, i.ord
    FROM UNNEST($2::text[], $3::bytea[]) WITH ORDINALITY AS i(client_id, record, ord)
),
existing AS (
    SELECT m.client_id, m.sequence, m.record FROM messages m
    WHERE m.session_id = $1 AND m.client_id = ANY($2::text[])
),
fresh AS (
    SELECT i.client_id, i.record, i.ord, row_number() OVER (ORDER BY i.ord) AS rank
    FROM input i
    WHERE i.client_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM existing e WHERE e.client_id = i.client_id)
),
counter AS (
    INSERT INTO message_counters AS c (session_id, last_sequence, stored)
    SELECT $1, count(*), count(*) FROM fresh HAVING count(*) > 0
    ON CONFLICT (session_id)
    DO UPDATE SET last_sequence = c.last_sequence + EXCLUDED.last_sequence,
        stored = c.stored + EXCLUDED.stored
    RETURNING c.last_sequence - (SELECT count(*) FROM fresh) AS base
),
inserted AS (
    INSERT INTO messages (session_id, sequence, client_id, record)
    SELECT $1, counter.base + f.rank, f.client_id, f.record FROM fresh f CROSS JOIN counter
)
SELECT f.ord, counter.base + f.rank AS sequence, NULL::bytea AS record
FROM fresh f CROSS JOIN counter
UNION ALL
SELECT i.ord, e.sequence, e.record FROM input i JOIN existing e ON e.client_id = i.client_id";

/// How often an append is retried after losing a client-id race. Each retry follows a
/// commit of the same client id by another append, so the next attempt finds it.
const APPEND_ATTEMPTS: usize = 8;

const LAST_N: &str = "SELECT sequence, record FROM messages WHERE session_id = $1 \
     AND sequence BETWEEN $2 AND $3 ORDER BY sequence DESC LIMIT $4";

const FIRST_N: &str = "SELECT sequence, record FROM messages WHERE session_id = $1 \
     AND sequence BETWEEN $2 AND $3 ORDER BY sequence ASC LIMIT $4";

/// Pops the newest message, under the session's lock (see `compaction.rs`).
const POP: &str = "DELETE FROM messages WHERE session_id = $1 AND sequence = (\
     SELECT max(sequence) FROM messages WHERE session_id = $1) \
     RETURNING sequence, record, compacted_from";

const CLEAR: &str = "DELETE FROM messages WHERE session_id = $1";
const CLEAR_KEPT: &str = "DELETE FROM replaced_messages WHERE session_id = $1";

/// A stored message; the row's session and sequence are authoritative over the record's.
pub(crate) fn decode(session_id: &str, sequence: i64, record: &[u8]) -> PgResult<Message> {
    let mut message: Message = wire::decode(record)?;
    message.session_id = session_id.to_owned();
    message.sequence = to_u64(sequence);
    Ok(message)
}

pub(crate) fn decode_row(session_id: &str, row: &Row) -> PgResult<Message> {
    decode(session_id, row.get(0), row.get(1))
}

impl PostgresBackend {
    pub(crate) async fn append_messages_op(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> PgResult<Vec<Message>> {
        validate_append(session_id, &messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let now = time::now();
        // Records are encoded before the number is known; the row's sequence column is the
        // number (see `decode`).
        let drafts: Vec<Message> = messages
            .into_iter()
            .map(|message| message.into_message(session_id, 0, now))
            .collect();
        let client_ids: Vec<Option<&str>> = drafts.iter().map(|m| m.client_id.as_deref()).collect();
        let records = drafts
            .iter()
            .map(wire::encode)
            .collect::<storage_core::Result<Vec<_>>>()?;
        let client = self.client().await?;
        let mut attempt = 1;
        let rows = loop {
            match client
                .rows(APPEND, &[&session_id, &client_ids, &records])
                .await
            {
                Err(err)
                    if attempt < APPEND_ATTEMPTS
                        && err.is_unique_violation(Some("messages_by_client_id")) =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let mut results: Vec<Option<Message>> = vec![None; drafts.len()];
        for row in &rows {
            let position = usize::try_from(row.get::<_, i64>(0) - 1).unwrap_or(usize::MAX);
            let sequence: i64 = row.get(1);
            let message = match row.get::<_, Option<&[u8]>>(2) {
                Some(stored) => decode(session_id, sequence, stored)?,
                None => {
                    let mut message = drafts[position].clone();
                    message.sequence = to_u64(sequence);
                    message
                }
            };
            results[position] = Some(message);
        }
        results
            .into_iter()
            .map(|message| {
                message.ok_or_else(|| {
                    StorageError::backend("append returned no row for a message").into()
                })
            })
            .collect()
    }

    pub(crate) async fn get_messages_op(
        &self,
        session_id: &str,
        range: MessageRange,
    ) -> PgResult<Vec<Message>> {
        validate_id("session id", session_id)?;
        range.validate()?;
        let Some((low, high)) = range.bounds() else {
            return Ok(Vec::new());
        };
        let (low, high, limit) = (to_i64(low), to_i64(high), to_i64(range.limit as u64));
        let sql = if range.is_forward() { FIRST_N } else { LAST_N };
        let client = self.client().await?;
        let rows = client
            .rows(sql, &[&session_id, &low, &high, &limit])
            .await?;
        let mut messages = rows
            .iter()
            .map(|row| decode_row(session_id, row))
            .collect::<PgResult<Vec<_>>>()?;
        if !range.is_forward() {
            messages.reverse();
        }
        Ok(messages)
    }

    pub(crate) async fn pop_last_message_op(&self, session_id: &str) -> PgResult<Option<Message>> {
        validate_id("session id", session_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_session(&tx, session_id).await?;
        let Some(row) = tx.opt(POP, &[&session_id]).await? else {
            return Ok(None);
        };
        // Decoded before the commit: a record that cannot be decoded stays.
        let message = decode_row(session_id, &row)?;
        if let Some(from) = row.get::<_, Option<i64>>(2) {
            drop_kept(&tx, session_id, from, row.get(0)).await?;
        }
        tx.commit().await?;
        Ok(Some(message))
    }

    pub(crate) async fn clear_conversation_op(&self, session_id: &str) -> PgResult<u64> {
        validate_id("session id", session_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_session(&tx, session_id).await?;
        tx.exec(CLEAR_KEPT, &[&session_id]).await?;
        let removed = tx.exec(CLEAR, &[&session_id]).await?;
        tx.commit().await?;
        Ok(removed)
    }
}

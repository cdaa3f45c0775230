//! Compaction and rewind, the messages summaries kept (`replaced_messages`), and the lock
//! that orders the changes to a session's messages.
//!
//! Compaction, rewind, pop and clear each run in one transaction that first locks the
//! session's `message_counters` row (`FOR UPDATE`, the row an append's counter upsert
//! locks), in a statement of its own. Under READ COMMITTED every later statement then
//! takes its snapshot after the lock was granted, so it sees everything the session's
//! previous holder committed: a compaction reads the prefix it replaces as the last
//! append, pop or rewind left it, and a rewind, pop or clear that waited for a compaction
//! sees its summary (a statement that started before the compaction committed would not
//! see the summary's row, and would leave it behind). Appends queue behind the lock too,
//! so the numbers they take are never in a replaced prefix. A session with no counter row
//! has no messages an append could race; the statements run all the same.
//!
//! A reader's statement sees one snapshot: the prefix or the summary, never both or
//! neither. Each operation touches only the rows it replaces or removes (primary-key
//! ranges). Which kept messages go with a removed summary is decided by the
//! `compacted_from` column (see `migrations/V4__compaction.sql` and
//! `storage_core::compaction`).

use storage_core::compaction::{summarize, validate_compact};
use storage_core::validate::validate_id;
use storage_core::{time, wire, Message, NewMessage};

use crate::backend::{to_i64, to_u64, PostgresBackend};
use crate::conversation::{decode, decode_row};
use crate::error::PgResult;
use crate::sql::Sql;

const LOCK_SESSION: &str = "SELECT 1 FROM message_counters WHERE session_id = $1 FOR UPDATE";

const BY_CLIENT_ID: &str =
    "SELECT sequence, record FROM messages WHERE session_id = $1 AND client_id = $2";

/// The messages a compaction replaces, oldest first.
const PREFIX: &str = "SELECT sequence, record FROM messages \
     WHERE session_id = $1 AND sequence <= $2 ORDER BY sequence";

/// Moves the replaced messages under the summary's sequence, records unchanged; what
/// earlier summaries among them kept stays under their own sequences.
const MOVE_PREFIX: &str = "\
WITH moved AS (
    DELETE FROM messages WHERE session_id = $1 AND sequence <= $2 RETURNING sequence, record
)
INSERT INTO replaced_messages (session_id, summary_sequence, sequence, record)
SELECT $1, $2, sequence, record FROM moved";

/// Drops the replaced messages, and what every summary up to the new one's sequence kept.
const DROP_PREFIX: &str = "\
WITH kept AS (
    DELETE FROM replaced_messages WHERE session_id = $1 AND summary_sequence <= $2
)
DELETE FROM messages WHERE session_id = $1 AND sequence <= $2";

/// The summary, counted in `stored` (see V5: inserts count where they take their number).
const INSERT_SUMMARY: &str = "WITH summary AS (INSERT INTO messages \
     (session_id, sequence, client_id, record, compacted_from) VALUES ($1, $2, $3, $4, $5) \
     RETURNING 1) \
     UPDATE message_counters SET stored = stored + (SELECT count(*) FROM summary) \
     WHERE session_id = $1";

const KEPT: &str = "SELECT sequence, record FROM replaced_messages \
     WHERE session_id = $1 AND summary_sequence = $2 ORDER BY sequence";

const DROP_KEPT_RANGE: &str = "DELETE FROM replaced_messages \
     WHERE session_id = $1 AND summary_sequence BETWEEN $2 AND $3";

/// Removes the messages numbered `$2..=$3` (a rewind's tail, a retention sweep's head);
/// returns how many messages it removed and the removed summaries' ranges (`from`, `to`).
const REMOVE_RANGE: &str = "\
WITH removed AS (
    DELETE FROM messages WHERE session_id = $1 AND sequence BETWEEN $2 AND $3
    RETURNING sequence, compacted_from
)
SELECT (SELECT count(*) FROM removed),
       ARRAY(SELECT compacted_from FROM removed WHERE compacted_from IS NOT NULL
             ORDER BY sequence),
       ARRAY(SELECT sequence FROM removed WHERE compacted_from IS NOT NULL ORDER BY sequence)";

/// Takes the session's lock for the rest of the transaction (see the module docs).
pub(crate) async fn lock_session(tx: &impl Sql, session_id: &str) -> PgResult<()> {
    tx.rows(LOCK_SESSION, &[&session_id]).await?;
    Ok(())
}

/// Drops what a removed summary at `to` kept: the kept messages of every summary sequence
/// in its range `from..=to`, nested compactions included.
pub(crate) async fn drop_kept(tx: &impl Sql, session_id: &str, from: i64, to: i64) -> PgResult<()> {
    tx.exec(DROP_KEPT_RANGE, &[&session_id, &from, &to]).await?;
    Ok(())
}

/// Removes the messages numbered `low..=high` with what the summaries among them kept, in
/// a transaction holding the session's lock; how many messages (summaries once) it removed.
pub(crate) async fn remove_range(
    tx: &impl Sql,
    session_id: &str,
    low: i64,
    high: i64,
) -> PgResult<u64> {
    let row = tx.one(REMOVE_RANGE, &[&session_id, &low, &high]).await?;
    let froms: Vec<i64> = row.get(1);
    let tos: Vec<i64> = row.get(2);
    for (from, to) in froms.into_iter().zip(tos) {
        drop_kept(tx, session_id, from, to).await?;
    }
    Ok(to_u64(row.get(0)))
}

impl PostgresBackend {
    pub(crate) async fn compact_conversation_op(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> PgResult<Message> {
        validate_compact(session_id, up_to, &summary)?;
        let end = to_i64(up_to);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_session(&tx, session_id).await?;
        if let Some(client_id) = &summary.client_id {
            if let Some(row) = tx.opt(BY_CLIENT_ID, &[&session_id, client_id]).await? {
                return decode_row(session_id, &row);
            }
        }
        // Decoded before anything changes: `summarize` needs the replaced messages, and a
        // record that cannot be decoded fails the compaction instead of being moved unread.
        let replaced = tx
            .rows(PREFIX, &[&session_id, &end])
            .await?
            .iter()
            .map(|row| decode_row(session_id, row))
            .collect::<PgResult<Vec<_>>>()?;
        let message = summarize(
            session_id,
            up_to,
            &replaced,
            summary,
            keep_replaced,
            time::now(),
        )?;
        let record = wire::encode(&message)?;
        let sql = if keep_replaced {
            MOVE_PREFIX
        } else {
            DROP_PREFIX
        };
        tx.exec(sql, &[&session_id, &end]).await?;
        // A statement of its own: inserting at `up_to` in the statement that deletes the
        // row there could meet that row in the primary key.
        let from = message.compacted.map(|compacted| to_i64(compacted.from));
        tx.exec(
            INSERT_SUMMARY,
            &[&session_id, &end, &message.client_id, &record, &from],
        )
        .await?;
        tx.commit().await?;
        Ok(message)
    }

    pub(crate) async fn get_replaced_messages_op(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> PgResult<Vec<Message>> {
        validate_id("session id", session_id)?;
        let summary_sequence = to_i64(summary_sequence);
        let client = self.client().await?;
        client
            .rows(KEPT, &[&session_id, &summary_sequence])
            .await?
            .iter()
            .map(|row| decode(session_id, row.get(0), row.get(1)))
            .collect()
    }

    pub(crate) async fn rewind_conversation_op(
        &self,
        session_id: &str,
        sequence: u64,
    ) -> PgResult<u64> {
        validate_id("session id", session_id)?;
        let sequence = to_i64(sequence);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(low) = sequence.checked_add(1) else {
            return Ok(0);
        };
        lock_session(&tx, session_id).await?;
        let removed = remove_range(&tx, session_id, low, i64::MAX).await?;
        tx.commit().await?;
        Ok(removed)
    }
}

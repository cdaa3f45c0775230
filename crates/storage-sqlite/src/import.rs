//! Exact imports and enumeration for moving data between backends (`storectl migrate`).
//!
//! Every import is idempotent: a row that is already there is kept (messages, artifact
//! versions), and the counters are raised with `max`, never lowered. Task contexts import
//! and enumerate in `task_context.rs`, beside the stores they share their writes with.

use rusqlite::OptionalExtension;
use storage_core::validate::validate_limit;
use storage_core::{wire, Artifact, Message, Session};

use crate::backend::{to_i64, SqliteBackend};
use crate::error::SqlResult;

const IMPORT_SESSION: &str = "INSERT INTO \"{ns}.sessions\" \
     (id, user_id, status, last_activity_us, record) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, status = excluded.status, \
     last_activity_us = excluded.last_activity_us, record = excluded.record";

const LAST_SEQUENCE: &str =
    "SELECT last_sequence FROM \"{ns}.message_counters\" WHERE session_id = ?1";
/// An imported summary keeps its range in `compacted_from` (see `compaction.rs`).
const IMPORT_MESSAGE: &str = "INSERT INTO \"{ns}.messages\" \
     (session_id, sequence, client_id, record, compacted_from) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT DO NOTHING";
const RAISE_SEQUENCE: &str = "INSERT INTO \"{ns}.message_counters\" AS c \
     (session_id, last_sequence) VALUES (?1, ?2) ON CONFLICT (session_id) \
     DO UPDATE SET last_sequence = max(c.last_sequence, excluded.last_sequence)";

const IMPORT_ARTIFACT: &str = "INSERT INTO \"{ns}.artifacts\" (scope, name, version, meta, data) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
const RAISE_ARTIFACT_COUNTER: &str = "INSERT INTO \"{ns}.artifact_counters\" AS a \
     (scope, name, next_version) VALUES (?1, ?2, ?3 + 1) ON CONFLICT (scope, name) \
     DO UPDATE SET next_version = max(a.next_version, excluded.next_version)";

const THREAD_IDS: &str = "SELECT DISTINCT thread_id FROM \"{ns}.checkpoints\" \
     WHERE thread_id > ?1 ORDER BY thread_id LIMIT ?2";
const CONVERSATION_IDS: &str = "SELECT DISTINCT session_id FROM \"{ns}.messages\" \
     WHERE session_id > ?1 ORDER BY session_id LIMIT ?2";
const SCOPES: &str = "SELECT DISTINCT scope FROM \"{ns}.artifact_counters\" \
     WHERE scope > ?1 ORDER BY scope LIMIT ?2";

impl SqliteBackend {
    pub(crate) async fn import_session_op(&self, session: Session) -> SqlResult<()> {
        storage_core::session::validate_import(&session)?;
        let record = wire::encode(&session)?;
        let activity = storage_core::time::to_micros(session.last_activity);
        self.engine
            .write(move |db| {
                db.prepare(IMPORT_SESSION)?.execute((
                    &session.id,
                    &session.user_id,
                    session.status.as_str(),
                    activity,
                    record,
                ))?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn import_messages_op(
        &self,
        session_id: &str,
        messages: Vec<Message>,
    ) -> SqlResult<u64> {
        storage_core::conversation::validate_import(session_id, &messages)?;
        if messages.is_empty() {
            return Ok(0);
        }
        let rows = messages
            .iter()
            .map(|m| {
                let from = m.compacted.map(|compacted| to_i64(compacted.from));
                Ok((
                    to_i64(m.sequence),
                    m.client_id.clone(),
                    wire::encode(m)?,
                    from,
                ))
            })
            .collect::<storage_core::Result<Vec<_>>>()?;
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| {
                // Numbers at or below the counter were handed out before (and maybe
                // popped): they are never reused, so those messages are not stored again.
                let last: i64 = db
                    .prepare(LAST_SEQUENCE)?
                    .query_row([&session_id], |row| row.get(0))
                    .optional()?
                    .unwrap_or(0);
                let mut inserted = 0;
                let mut insert = db.prepare(IMPORT_MESSAGE)?;
                let mut sorted: Vec<_> = rows.iter().collect();
                sorted.sort_by_key(|row| row.0);
                for (sequence, client_id, record, from) in sorted {
                    if *sequence > last {
                        inserted +=
                            insert.execute((&session_id, sequence, client_id, record, from))?;
                    }
                }
                let highest = rows.iter().map(|row| row.0).max().unwrap_or(0);
                db.prepare(RAISE_SEQUENCE)?
                    .execute((&session_id, highest))?;
                Ok(inserted as u64)
            })
            .await
    }

    pub(crate) async fn import_artifact_op(&self, artifact: Artifact) -> SqlResult<bool> {
        storage_core::artifact::validate_import(&artifact)?;
        storage_core::artifact::check_artifact_size(
            artifact.meta.size,
            Some(self.config.artifact_limit()),
        )?;
        let record = wire::encode(&artifact.meta)?;
        let version = to_i64(artifact.meta.version);
        self.engine
            .write(move |db| {
                let meta = &artifact.meta;
                let inserted = db.prepare(IMPORT_ARTIFACT)?.execute((
                    &meta.scope,
                    &meta.name,
                    version,
                    record,
                    &artifact.data[..],
                ))?;
                db.prepare(RAISE_ARTIFACT_COUNTER)?
                    .execute((&meta.scope, &meta.name, version))?;
                Ok(inserted > 0)
            })
            .await
    }

    pub(crate) async fn list_thread_ids_op(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> SqlResult<Vec<String>> {
        self.list_ids(THREAD_IDS, "thread id limit", after, limit)
            .await
    }

    pub(crate) async fn list_conversation_ids_op(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> SqlResult<Vec<String>> {
        self.list_ids(CONVERSATION_IDS, "conversation id limit", after, limit)
            .await
    }

    pub(crate) async fn list_artifact_scopes_op(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> SqlResult<Vec<String>> {
        self.list_ids(SCOPES, "artifact scope limit", after, limit)
            .await
    }

    async fn list_ids(
        &self,
        sql: &'static str,
        what: &str,
        after: Option<&str>,
        limit: usize,
    ) -> SqlResult<Vec<String>> {
        validate_limit(what, limit)?;
        storage_core::policy::check_after("listing cursor", after)?;
        // Ids are never empty, so "" sorts before every one of them.
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.engine
            .read(move |db| {
                Ok(db
                    .prepare(sql)?
                    .query_map((&after, limit), |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
    }
}

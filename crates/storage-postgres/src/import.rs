//! Exact imports and enumeration for moving data between backends (`storectl migrate`).
//!
//! Every import is one idempotent statement: a row that is already there is kept
//! (messages, artifact versions), and the counters are raised with `GREATEST`, never
//! lowered. Task contexts import and enumerate in `task_context.rs`, beside the stores they
//! share their writes with.

use storage_core::validate::validate_limit;
use storage_core::{wire, Artifact, Message, Session};

use crate::backend::{to_i64, to_u64, PostgresBackend};
use crate::error::PgResult;
use crate::sql::Sql;

const IMPORT_SESSION: &str =
    "INSERT INTO sessions (id, user_id, status, last_activity_us, record) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, \
     status = EXCLUDED.status, last_activity_us = EXCLUDED.last_activity_us, \
     record = EXCLUDED.record";

const IMPORT_MESSAGES: &str = "\
WITH input AS (
    SELECT * FROM UNNEST($2::bigint[], $3::text[], $4::bytea[], $5::bigint[])
        AS i(sequence, client_id, record, compacted_from)
),
inserted AS (
    INSERT INTO messages (session_id, sequence, client_id, record, compacted_from)
    SELECT $1, sequence, client_id, record, compacted_from FROM input
    WHERE sequence > COALESCE(
        (SELECT last_sequence FROM message_counters WHERE session_id = $1), 0)
    ORDER BY sequence
    ON CONFLICT DO NOTHING RETURNING 1
),
counter AS (
    INSERT INTO message_counters AS c (session_id, last_sequence, stored)
    SELECT $1, max(sequence), (SELECT count(*) FROM inserted) FROM input HAVING count(*) > 0
    ON CONFLICT (session_id)
    DO UPDATE SET last_sequence = GREATEST(c.last_sequence, EXCLUDED.last_sequence),
        stored = c.stored + EXCLUDED.stored
)
SELECT count(*) FROM inserted";

const IMPORT_ARTIFACT: &str = "\
WITH inserted AS (
    INSERT INTO artifacts (scope, name, version, meta, data) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT DO NOTHING RETURNING 1
),
counter AS (
    INSERT INTO artifact_counters AS a (scope, name, next_version, stored)
    VALUES ($1, $2, $3 + 1, (SELECT count(*) FROM inserted))
    ON CONFLICT (scope, name)
    DO UPDATE SET next_version = GREATEST(a.next_version, EXCLUDED.next_version),
        stored = a.stored + EXCLUDED.stored
)
SELECT count(*) FROM inserted";

const THREAD_IDS: &str = "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > $1 \
     ORDER BY thread_id LIMIT $2";

const CONVERSATION_IDS: &str = "SELECT DISTINCT session_id FROM messages \
     WHERE session_id > $1 ORDER BY session_id LIMIT $2";

const SCOPES: &str = "SELECT DISTINCT scope FROM artifact_counters WHERE scope > $1 \
     ORDER BY scope LIMIT $2";

impl PostgresBackend {
    pub(crate) async fn import_session_op(&self, session: Session) -> PgResult<()> {
        storage_core::session::validate_import(&session)?;
        let record = wire::encode(&session)?;
        let activity = storage_core::time::to_micros(session.last_activity);
        let client = self.client().await?;
        client
            .exec(
                IMPORT_SESSION,
                &[
                    &session.id,
                    &session.user_id,
                    &session.status.as_str(),
                    &activity,
                    &record,
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn import_messages_op(
        &self,
        session_id: &str,
        messages: Vec<Message>,
    ) -> PgResult<u64> {
        storage_core::conversation::validate_import(session_id, &messages)?;
        if messages.is_empty() {
            return Ok(0);
        }
        let sequences: Vec<i64> = messages.iter().map(|m| to_i64(m.sequence)).collect();
        let client_ids: Vec<Option<&str>> =
            messages.iter().map(|m| m.client_id.as_deref()).collect();
        let records = messages
            .iter()
            .map(wire::encode)
            .collect::<storage_core::Result<Vec<_>>>()?;
        // An imported summary keeps its range in `compacted_from` (see `compaction.rs`).
        let compacted_from: Vec<Option<i64>> = messages
            .iter()
            .map(|m| m.compacted.map(|compacted| to_i64(compacted.from)))
            .collect();
        let client = self.client().await?;
        let row = client
            .one(
                IMPORT_MESSAGES,
                &[
                    &session_id,
                    &sequences,
                    &client_ids,
                    &records,
                    &compacted_from,
                ],
            )
            .await?;
        Ok(to_u64(row.get(0)))
    }

    pub(crate) async fn import_artifact_op(&self, artifact: Artifact) -> PgResult<bool> {
        storage_core::artifact::validate_import(&artifact)?;
        storage_core::artifact::check_artifact_size(
            artifact.meta.size,
            Some(self.config.artifact_limit()),
        )?;
        let meta = &artifact.meta;
        let record = wire::encode(meta)?;
        let version = to_i64(meta.version);
        let data: &[u8] = &artifact.data;
        let client = self.client().await?;
        let row = client
            .one(
                IMPORT_ARTIFACT,
                &[&meta.scope, &meta.name, &version, &record, &data],
            )
            .await?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    pub(crate) async fn list_thread_ids_op(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> PgResult<Vec<String>> {
        self.list_ids(THREAD_IDS, "thread id limit", after, limit)
            .await
    }

    pub(crate) async fn list_conversation_ids_op(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> PgResult<Vec<String>> {
        self.list_ids(CONVERSATION_IDS, "conversation id limit", after, limit)
            .await
    }

    pub(crate) async fn list_artifact_scopes_op(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> PgResult<Vec<String>> {
        self.list_ids(SCOPES, "artifact scope limit", after, limit)
            .await
    }

    async fn list_ids(
        &self,
        sql: &str,
        what: &str,
        after: Option<&str>,
        limit: usize,
    ) -> PgResult<Vec<String>> {
        validate_limit(what, limit)?;
        storage_core::policy::check_after("listing cursor", after)?;
        // Ids are never empty, so "" sorts before every one of them.
        let after = after.unwrap_or("");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client.rows(sql, &[&after, &limit]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

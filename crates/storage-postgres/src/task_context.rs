//! Task context: one row per session; the version column is the compare-and-set token.
//!
//! Each expectation is one statement whose row lock makes it atomic: `Any` is an upsert
//! that increments the version, `Absent` an insert that does nothing on conflict, and
//! `Exactly(v)` an update guarded by `version = v`. No row back means the expectation did
//! not hold, and nothing changed.

use serde_json::Value;
use storage_core::validate::validate_id;
use storage_core::{time, wire, ExpectedVersion, StorageError, TaskContext};

use crate::backend::{to_u64, PostgresBackend, Sql};
use crate::error::PgResult;

const SELECT: &str = "SELECT version, record FROM task_contexts WHERE session_id = $1";

const STORE_ANY: &str = "INSERT INTO task_contexts AS t (session_id, version, record) \
     VALUES ($1, 1, $2) ON CONFLICT (session_id) \
     DO UPDATE SET version = t.version + 1, record = EXCLUDED.record RETURNING version";

const STORE_ABSENT: &str = "INSERT INTO task_contexts (session_id, version, record) \
     VALUES ($1, 1, $2) ON CONFLICT (session_id) DO NOTHING RETURNING version";

const STORE_EXACTLY: &str = "UPDATE task_contexts SET version = version + 1, record = $2 \
     WHERE session_id = $1 AND version = $3 RETURNING version";

const DELETE: &str = "DELETE FROM task_contexts WHERE session_id = $1";

impl PostgresBackend {
    pub(crate) async fn get_task_context_op(
        &self,
        session_id: &str,
    ) -> PgResult<Option<TaskContext>> {
        validate_id("session id", session_id)?;
        let client = self.client().await?;
        let Some(row) = client.opt(SELECT, &[&session_id]).await? else {
            return Ok(None);
        };
        let mut context: TaskContext = wire::decode(row.get::<_, &[u8]>(1))?;
        context.session_id = session_id.to_owned();
        context.version = to_u64(row.get(0));
        Ok(Some(context))
    }

    pub(crate) async fn store_task_context_op(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> PgResult<TaskContext> {
        storage_core::task_context::validate_store(session_id, &value)?;
        // The version column is authoritative; the record's copy is filled in on read.
        let mut context = TaskContext {
            session_id: session_id.to_owned(),
            value,
            version: 0,
            updated_at: time::now(),
        };
        let record = wire::encode(&context)?;
        let client = self.client().await?;
        let stored = match expected {
            ExpectedVersion::Any => client.opt(STORE_ANY, &[&session_id, &record]).await?,
            ExpectedVersion::Absent => client.opt(STORE_ABSENT, &[&session_id, &record]).await?,
            ExpectedVersion::Exactly(version) => match i64::try_from(version) {
                Ok(version) => {
                    client
                        .opt(STORE_EXACTLY, &[&session_id, &record, &version])
                        .await?
                }
                Err(_) => None,
            },
        };
        match stored {
            Some(row) => {
                context.version = to_u64(row.get(0));
                Ok(context)
            }
            None => {
                let current = client
                    .opt(SELECT, &[&session_id])
                    .await?
                    .map(|row| to_u64(row.get(0)));
                // The expectation failed when the statement ran; report it with the version
                // seen now (which another writer may have moved on since).
                Err(match expected.next_version(session_id, current) {
                    Err(conflict) => conflict,
                    Ok(_) => StorageError::conflict(format!(
                        "task context of session {session_id:?} changed concurrently"
                    )),
                }
                .into())
            }
        }
    }

    pub(crate) async fn delete_task_context_op(&self, session_id: &str) -> PgResult<bool> {
        validate_id("session id", session_id)?;
        let client = self.client().await?;
        Ok(client.exec(DELETE, &[&session_id]).await? > 0)
    }
}

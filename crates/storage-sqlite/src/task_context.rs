//! Task context: one row per session; the version column is the compare-and-set token.
//!
//! A store reads the current version and writes the next one in the writer's transaction,
//! which holds SQLite's write lock: no other writer (thread or process) runs in between,
//! so the expectation checked is the one that holds when the row is written.

use rusqlite::OptionalExtension;
use serde_json::Value;
use storage_core::validate::validate_id;
use storage_core::{time, wire, ExpectedVersion, TaskContext};

use crate::backend::{to_i64, to_u64, SqliteBackend};
use crate::error::SqlResult;

const SELECT: &str = "SELECT version, record FROM \"{ns}.task_contexts\" WHERE session_id = ?1";

const VERSION: &str = "SELECT version FROM \"{ns}.task_contexts\" WHERE session_id = ?1";

const STORE: &str = "INSERT INTO \"{ns}.task_contexts\" (session_id, version, record) \
     VALUES (?1, ?2, ?3) ON CONFLICT (session_id) \
     DO UPDATE SET version = excluded.version, record = excluded.record";

const DELETE: &str = "DELETE FROM \"{ns}.task_contexts\" WHERE session_id = ?1";

impl SqliteBackend {
    pub(crate) async fn get_task_context_op(
        &self,
        session_id: &str,
    ) -> SqlResult<Option<TaskContext>> {
        validate_id("session id", session_id)?;
        let session_id = session_id.to_owned();
        self.engine
            .read(move |db| {
                let row = db
                    .prepare(SELECT)?
                    .query_row([&session_id], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()?;
                let Some((version, record)) = row else {
                    return Ok(None);
                };
                let mut context: TaskContext = wire::decode(&record)?;
                context.session_id = session_id;
                context.version = to_u64(version);
                Ok(Some(context))
            })
            .await
    }

    pub(crate) async fn store_task_context_op(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> SqlResult<TaskContext> {
        storage_core::task_context::validate_store(session_id, &value)?;
        // The version column is authoritative; the record's copy is filled in on read.
        let mut context = TaskContext {
            session_id: session_id.to_owned(),
            value,
            version: 0,
            updated_at: time::now(),
        };
        let record = wire::encode(&context)?;
        let session_id = session_id.to_owned();
        let version = self
            .engine
            .write(move |db| {
                let current: Option<i64> = db
                    .prepare(VERSION)?
                    .query_row([&session_id], |row| row.get(0))
                    .optional()?;
                let next = expected.next_version(&session_id, current.map(to_u64))?;
                db.prepare(STORE)?
                    .execute((&session_id, to_i64(next), record))?;
                Ok(next)
            })
            .await?;
        context.version = version;
        Ok(context)
    }

    pub(crate) async fn delete_task_context_op(&self, session_id: &str) -> SqlResult<bool> {
        validate_id("session id", session_id)?;
        let session_id = session_id.to_owned();
        self.engine
            .write(move |db| Ok(db.prepare(DELETE)?.execute([&session_id])? > 0))
            .await
    }
}

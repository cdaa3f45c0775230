use async_trait::async_trait;
use serde_json::Value;
use storage_core::carried::admit;
use storage_core::validate::validate_id;
use storage_core::{time, ExpectedVersion, Result, TaskContext, TaskContextStore};

use super::{Change, ObjectBackend};

#[async_trait]
impl TaskContextStore for ObjectBackend {
    async fn list_task_context_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.op("list_task_context_ids", async {
            storage_core::validate::validate_limit("task context id limit", limit)?;
            let prefix = self.keys().contexts();
            self.list_ids_under(&prefix, None, after, limit).await
        })
        .await
    }

    async fn get_task_context(&self, session_id: &str) -> Result<Option<TaskContext>> {
        self.op("get_task_context", async {
            validate_id("session id", session_id)?;
            self.read_cell(&self.keys().context(session_id)).await
        })
        .await
    }

    async fn store_task_context(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> Result<TaskContext> {
        let value = admit("store_task_context", value)?;
        self.op("store_task_context", async {
            storage_core::task_context::validate_store(session_id, &value)?;
            // The compare-and-set re-checks the expectation against every value it reads.
            self.modify_cell(
                &self.keys().context(session_id),
                |current: Option<TaskContext>| {
                    let version = expected.next_version(session_id, current.map(|c| c.version))?;
                    let context = TaskContext {
                        session_id: session_id.to_owned(),
                        value: value.clone(),
                        version,
                        updated_at: time::now(),
                    };
                    Ok(Change::Write(context.clone(), context))
                },
            )
            .await
        })
        .await
    }

    async fn delete_task_context(&self, session_id: &str) -> Result<bool> {
        self.op("delete_task_context", async {
            validate_id("session id", session_id)?;
            self.objects()
                .cell_delete(&self.keys().context(session_id))
                .await
        })
        .await
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        self.op("import_task_context", async {
            storage_core::task_context::validate_import(&context)?;
            self.modify_cell(
                &self.keys().context(&context.session_id),
                |current: Option<TaskContext>| {
                    if current.is_some_and(|stored| stored.version >= context.version) {
                        Ok(Change::Keep(false))
                    } else {
                        Ok(Change::Write(context.clone(), true))
                    }
                },
            )
            .await
        })
        .await
    }
}

//! Task context: one versioned value per session, updated with compare-and-set.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StorageError};
use crate::time::Timestamp;

/// A session's task context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskContext {
    /// The session it belongs to.
    pub session_id: String,
    /// The value.
    pub value: Value,
    /// Starts at 1 and increases by one on every store.
    pub version: u64,
    /// When it was last stored.
    pub updated_at: Timestamp,
}

/// What a store expects the current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Store whatever is there (last writer wins).
    Any,
    /// Store only if there is no context yet.
    Absent,
    /// Store only if the current version is exactly this one.
    Exactly(u64),
}

impl ExpectedVersion {
    /// Checks `current` (the stored version, `None` if absent) against the expectation and
    /// returns the version the store creates, or `Conflict`.
    pub fn next_version(self, session_id: &str, current: Option<u64>) -> Result<u64> {
        let matches = match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::Absent => current.is_none(),
            ExpectedVersion::Exactly(expected) => current == Some(expected),
        };
        if matches {
            Ok(current.unwrap_or(0) + 1)
        } else {
            Err(StorageError::conflict(format!(
                "task context of session {session_id:?} is at version {}; expected {}",
                current.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                self.describe()
            )))
        }
    }

    fn describe(self) -> String {
        match self {
            ExpectedVersion::Any => "any".into(),
            ExpectedVersion::Absent => "none".into(),
            ExpectedVersion::Exactly(version) => version.to_string(),
        }
    }
}

/// Task-context storage.
#[async_trait]
pub trait TaskContextStore: Send + Sync {
    /// The session's context, or `None`.
    async fn get_task_context(&self, session_id: &str) -> Result<Option<TaskContext>>;

    /// Stores `value` as the session's context if `expected` holds, and returns the stored
    /// context with its new version; `Conflict` (changing nothing) if it does not.
    async fn store_task_context(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> Result<TaskContext>;

    /// Removes the session's context; returns whether there was one.
    async fn delete_task_context(&self, session_id: &str) -> Result<bool>;

    /// Stores `context` exactly as given (value, version and time), for moving data between
    /// backends, unless the stored context already has that version or a newer one.
    /// Returns whether it was stored. Importing twice has the effect of importing once. A
    /// version of 0 is `InvalidInput`. Backends that cannot answer `Unsupported`.
    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let _ = context;
        Err(StorageError::unsupported(
            "this backend cannot import task context",
        ))
    }

    /// Session ids with a stored task context, whether or not the session has a record,
    /// sorted, greater than `after`, at most `limit` (1 or more) of them: how `storectl
    /// migrate` finds task contexts without a session record. Backends that cannot
    /// enumerate answer `Unsupported`.
    async fn list_task_context_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let _ = (after, limit);
        Err(StorageError::unsupported(
            "this backend cannot list task context ids",
        ))
    }
}

/// Checks a [`TaskContextStore::store_task_context`] call, before any I/O: the session id,
/// and the value against the [input policy](crate::policy).
pub fn validate_store(session_id: &str, value: &Value) -> Result<()> {
    crate::validate::validate_id("session id", session_id)?;
    crate::policy::check_json("task context value", value)
}

/// Checks a context for [`TaskContextStore::import_task_context`], before any I/O.
pub fn validate_import(context: &TaskContext) -> Result<()> {
    validate_store(&context.session_id, &context.value)?;
    if context.version == 0 {
        return Err(StorageError::invalid_input(
            "imported task context has version 0; versions start at 1",
        ));
    }
    crate::policy::check_imported_number("imported task context version", context.version)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert_eq!(ExpectedVersion::Any.next_version("s", None).unwrap(), 1);
        assert_eq!(ExpectedVersion::Any.next_version("s", Some(4)).unwrap(), 5);
        assert_eq!(ExpectedVersion::Absent.next_version("s", None).unwrap(), 1);
        assert!(ExpectedVersion::Absent.next_version("s", Some(1)).is_err());
        assert_eq!(
            ExpectedVersion::Exactly(2)
                .next_version("s", Some(2))
                .unwrap(),
            3
        );
        let err = ExpectedVersion::Exactly(1)
            .next_version("s", Some(2))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        assert!(ExpectedVersion::Exactly(1).next_version("s", None).is_err());
    }
}

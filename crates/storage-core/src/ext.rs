//! Typed conveniences over the object-safe store traits.
//!
//! Blanket-implemented for every store (including `dyn` ones), so `use storage_core::ext::*`
//! is all a caller needs.

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::artifact::{ArtifactMeta, ArtifactStore, NewArtifact};
use crate::checkpoint::{Checkpoint, CheckpointStore, CheckpointTuple};
use crate::error::{Result, StorageError};
use serde_json::Value;

use crate::task_context::{
    merge_contexts, ContextScope, ExpectedVersion, MergedContext, TaskContext, TaskContextStore,
    DEFAULT_KEEP_VERSIONS,
};

/// A session's own task context, and typed task context.
///
/// ```
/// use storage_core::ext::TaskContextStoreExt;
/// use storage_core::{ExpectedVersion, Result, TaskContextStore};
///
/// async fn advance(store: &dyn TaskContextStore) -> Result<u64> {
///     let (steps, version) = store
///         .get_task_context_as::<Vec<String>>("s1")
///         .await?
///         .unwrap_or_default();
///     let mut steps = steps;
///     steps.push("act".into());
///     let expected = if version == 0 { ExpectedVersion::Absent } else { ExpectedVersion::Exactly(version) };
///     store.store_task_context_as("s1", &steps, expected).await
/// }
/// ```
#[async_trait]
pub trait TaskContextStoreExt: TaskContextStore {
    /// The session's own current context, or `None`.
    async fn get_task_context(&self, session_id: &str) -> Result<Option<TaskContext>> {
        self.get_context(ContextScope::session(session_id), None)
            .await
    }

    /// Stores the session's own context, keeping [`DEFAULT_KEEP_VERSIONS`] versions; see
    /// [`TaskContextStore::store_context`].
    async fn store_task_context(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> Result<TaskContext> {
        self.store_context(
            ContextScope::session(session_id),
            value,
            expected,
            DEFAULT_KEEP_VERSIONS,
        )
        .await
    }

    /// Removes the session's own context with its versions; returns whether there was one.
    async fn delete_task_context(&self, session_id: &str) -> Result<bool> {
        self.delete_context(ContextScope::session(session_id)).await
    }

    /// The session's view: the application's context, then the user's (when `user_id` is
    /// given), then the session's own, merged by [`merge_contexts`] (the more specific
    /// scope wins). The three are read concurrently; `None` when none exists.
    async fn get_merged_context(
        &self,
        session_id: &str,
        user_id: Option<&str>,
    ) -> Result<Option<MergedContext>> {
        let user = async {
            match user_id {
                Some(user_id) => self.get_context(ContextScope::user(user_id), None).await,
                None => Ok(None),
            }
        };
        let (app, user, session) = futures::try_join!(
            self.get_context(ContextScope::App, None),
            user,
            self.get_context(ContextScope::session(session_id), None),
        )?;
        Ok(merge_contexts(
            [app, user, session].into_iter().flatten().collect(),
        ))
    }

    /// The session's own context decoded as `T`, with its version.
    async fn get_task_context_as<T: DeserializeOwned>(
        &self,
        session_id: &str,
    ) -> Result<Option<(T, u64)>> {
        match self.get_task_context(session_id).await? {
            None => Ok(None),
            Some(context) => {
                let value = serde_json::from_value(context.value).map_err(|err| {
                    StorageError::serialization(format!(
                        "task context of session {session_id:?} does not decode as {}: {err}",
                        std::any::type_name::<T>()
                    ))
                })?;
                Ok(Some((value, context.version)))
            }
        }
    }

    /// Stores `value` encoded as JSON as the session's own context; returns the new version.
    async fn store_task_context_as<T: Serialize + Sync>(
        &self,
        session_id: &str,
        value: &T,
        expected: ExpectedVersion,
    ) -> Result<u64> {
        let value = serde_json::to_value(value)?;
        Ok(self
            .store_task_context(session_id, value, expected)
            .await?
            .version)
    }
}

impl<S: TaskContextStore + ?Sized> TaskContextStoreExt for S {}

/// Artifacts holding JSON documents.
#[async_trait]
pub trait ArtifactStoreExt: ArtifactStore {
    /// Saves `value` as `application/json`.
    async fn save_json<T: Serialize + Sync>(
        &self,
        scope: &str,
        name: &str,
        value: &T,
    ) -> Result<ArtifactMeta> {
        let data = serde_json::to_vec(value)?;
        self.save_artifact(scope, name, NewArtifact::new("application/json", data))
            .await
    }

    /// Reads a version (`None`: latest) and decodes it as `T`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<T>> {
        match self.get_artifact(scope, name, version).await? {
            None => Ok(None),
            Some(artifact) => Ok(Some(serde_json::from_slice(&artifact.data)?)),
        }
    }
}

impl<S: ArtifactStore + ?Sized> ArtifactStoreExt for S {}

/// The seed's simpler checkpoint calls, on the same contract.
#[async_trait]
pub trait CheckpointStoreExt: CheckpointStore {
    /// Stores a checkpoint with every channel value it carries.
    async fn store_checkpoint(&self, checkpoint: Checkpoint) -> Result<()> {
        let versions = checkpoint.all_versions();
        self.put_checkpoint(checkpoint, versions).await
    }

    /// The latest checkpoint of a thread's root namespace.
    async fn get_latest_checkpoint(&self, thread_id: &str) -> Result<Option<CheckpointTuple>> {
        self.get_checkpoint(thread_id, "", None).await
    }
}

impl<S: CheckpointStore + ?Sized> CheckpointStoreExt for S {}

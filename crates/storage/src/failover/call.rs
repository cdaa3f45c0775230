//! Writes as data: what the journal stores and replays.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage_core::{
    Artifact, ArtifactMeta, Bytes, ChannelVersions, Checkpoint, CheckpointKey, ErrorKind,
    ExpectedVersion, Message, Metadata, NewArtifact, NewMessage, NewSession, Result, Session,
    SessionStatus, SessionUpdate, StorageBackend, TaskContext,
};

/// One write of the contract with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum WriteCall {
    CreateSession {
        session: NewSession,
    },
    CreateSessions {
        sessions: Vec<NewSession>,
    },
    UpdateSession {
        id: String,
        update: SessionUpdate,
    },
    EndSession {
        id: String,
        status: SessionStatus,
    },
    DeleteSession {
        id: String,
    },
    ImportSession {
        session: Session,
    },
    AppendMessages {
        session_id: String,
        messages: Vec<NewMessage>,
    },
    PopLastMessage {
        session_id: String,
    },
    ClearConversation {
        session_id: String,
    },
    ImportMessages {
        session_id: String,
        messages: Vec<Message>,
    },
    PutCheckpoint {
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    },
    PutWrites {
        key: CheckpointKey,
        task_id: String,
        task_path: String,
        writes: Vec<(String, Value)>,
    },
    DeleteThread {
        thread_id: String,
    },
    PruneCheckpoints {
        thread_id: String,
        keep_last: usize,
    },
    CopyThread {
        source_thread_id: String,
        target_thread_id: String,
    },
    DeleteForRuns {
        run_ids: Vec<String>,
    },
    StoreTaskContext {
        session_id: String,
        value: Value,
        expected: ExpectedVersion,
    },
    DeleteTaskContext {
        session_id: String,
    },
    ImportTaskContext {
        context: TaskContext,
    },
    SaveArtifact {
        scope: String,
        name: String,
        content_type: String,
        data: Bytes,
        metadata: Metadata,
    },
    DeleteArtifact {
        scope: String,
        name: String,
        version: Option<u64>,
    },
    ClearArtifacts {
        scope: String,
    },
    ImportArtifact {
        meta: ArtifactMeta,
        data: Bytes,
    },
}

/// What replaying one journaled write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// The primary applied it (or already had it).
    Applied,
    /// The primary refused it for good (a conflict, a missing record): it is skipped and
    /// counted, never retried.
    Refused,
}

impl WriteCall {
    /// Performs the write on `backend`; on replay, answers that mean "already there"
    /// (`AlreadyExists` of a create) count as applied, and other permanent refusals as
    /// refused. Temporary errors are returned so the replay stops and resumes later.
    pub async fn replay(&self, backend: &dyn StorageBackend) -> Result<Replayed> {
        let outcome = self.apply(backend).await;
        match outcome {
            Ok(()) => Ok(Replayed::Applied),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(Replayed::Applied),
            Err(err) if err.is_temporary() => Err(err),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::Conflict | ErrorKind::NotFound | ErrorKind::InvalidInput
                ) =>
            {
                tracing::warn!(error = %err, "failover replay: the primary refused a journaled write");
                Ok(Replayed::Refused)
            }
            Err(err) => Err(err),
        }
    }

    async fn apply(&self, b: &dyn StorageBackend) -> Result<()> {
        match self.clone() {
            WriteCall::CreateSession { session } => b.create_session(session).await.map(drop),
            WriteCall::CreateSessions { sessions } => b.create_sessions(sessions).await.map(drop),
            WriteCall::UpdateSession { id, update } => {
                b.update_session(&id, update).await.map(drop)
            }
            WriteCall::EndSession { id, status } => b.end_session(&id, status).await.map(drop),
            WriteCall::DeleteSession { id } => b.delete_session(&id).await.map(drop),
            WriteCall::ImportSession { session } => b.import_session(session).await,
            WriteCall::AppendMessages {
                session_id,
                messages,
            } => b.append_messages(&session_id, messages).await.map(drop),
            WriteCall::PopLastMessage { session_id } => {
                b.pop_last_message(&session_id).await.map(drop)
            }
            WriteCall::ClearConversation { session_id } => {
                b.clear_conversation(&session_id).await.map(drop)
            }
            WriteCall::ImportMessages {
                session_id,
                messages,
            } => b.import_messages(&session_id, messages).await.map(drop),
            WriteCall::PutCheckpoint {
                checkpoint,
                new_versions,
            } => b.put_checkpoint(checkpoint, new_versions).await,
            WriteCall::PutWrites {
                key,
                task_id,
                task_path,
                writes,
            } => b.put_writes(key, &task_id, &task_path, writes).await,
            WriteCall::DeleteThread { thread_id } => b.delete_thread(&thread_id).await.map(drop),
            WriteCall::PruneCheckpoints {
                thread_id,
                keep_last,
            } => b.prune_checkpoints(&thread_id, keep_last).await.map(drop),
            WriteCall::CopyThread {
                source_thread_id,
                target_thread_id,
            } => b
                .copy_thread(&source_thread_id, &target_thread_id)
                .await
                .map(drop),
            WriteCall::DeleteForRuns { run_ids } => b.delete_for_runs(&run_ids).await.map(drop),
            WriteCall::StoreTaskContext {
                session_id,
                value,
                expected,
            } => b
                .store_task_context(&session_id, value, expected)
                .await
                .map(drop),
            WriteCall::DeleteTaskContext { session_id } => {
                b.delete_task_context(&session_id).await.map(drop)
            }
            WriteCall::ImportTaskContext { context } => {
                b.import_task_context(context).await.map(drop)
            }
            WriteCall::SaveArtifact {
                scope,
                name,
                content_type,
                data,
                metadata,
            } => {
                let artifact = NewArtifact {
                    content_type,
                    data,
                    metadata,
                };
                b.save_artifact(&scope, &name, artifact).await.map(drop)
            }
            WriteCall::DeleteArtifact {
                scope,
                name,
                version,
            } => b.delete_artifact(&scope, &name, version).await.map(drop),
            WriteCall::ClearArtifacts { scope } => b.clear_artifacts(&scope).await.map(drop),
            WriteCall::ImportArtifact { meta, data } => {
                b.import_artifact(Artifact { meta, data }).await.map(drop)
            }
        }
    }
}

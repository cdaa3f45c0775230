//! Replaying journaled calls, and reading journal lines written before calls were the
//! journal's format.

use serde::Deserialize;
use serde_json::Value;
use storage_core::task_context::DEFAULT_KEEP_VERSIONS;
use storage_core::{
    Artifact, ArtifactMeta, Bytes, Call, ContextScope, ErrorKind, ExpectedVersion, Metadata,
    NewArtifact,
};
use storage_core::{Result, StorageBackend};

/// What replaying one journaled write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// The primary applied it (or already had it).
    Applied,
    /// The primary refused it for good (a conflict, a missing record): it is skipped and
    /// counted, never retried.
    Refused,
}

/// Performs a journaled `call` on `backend`; answers that mean "already there"
/// (`AlreadyExists` of a create) count as applied, and other permanent refusals as
/// refused. Temporary errors are returned so the replay stops and resumes later.
pub(crate) async fn replay(call: &Call, backend: &dyn StorageBackend) -> Result<Replayed> {
    let described = call.describe();
    if !described.is_write() || described.kind.is_none() {
        // Only writes of a kind are ever journaled: a line naming anything else (a read, a
        // `close`) was not written by failover and is skipped, not performed.
        tracing::warn!(
            operation = call.name(),
            "failover replay: a journal line that is not a write is skipped"
        );
        return Ok(Replayed::Refused);
    }
    match call.apply(backend).await {
        Ok(_) => Ok(Replayed::Applied),
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

/// Writes whose journal lines had another shape: before the journal stored [`Call`]s an
/// artifact's fields stood beside the scope instead of in an object, and before contexts
/// had scopes a context was a session's.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum EarlierLine {
    SaveArtifact {
        scope: String,
        name: String,
        content_type: String,
        data: Bytes,
        metadata: Metadata,
    },
    ImportArtifact {
        meta: ArtifactMeta,
        data: Bytes,
    },
    /// A session's context before contexts had scopes and kept versions.
    StoreTaskContext {
        session_id: String,
        value: Value,
        expected: ExpectedVersion,
    },
    DeleteTaskContext {
        session_id: String,
    },
}

/// Reads one journal line, in today's format or the earlier one.
pub(crate) fn parse_line(line: &str) -> serde_json::Result<Call> {
    serde_json::from_str(line).or_else(|err| match serde_json::from_str(line) {
        Ok(EarlierLine::SaveArtifact {
            scope,
            name,
            content_type,
            data,
            metadata,
        }) => Ok(Call::SaveArtifact {
            scope,
            name,
            artifact: NewArtifact {
                content_type,
                data,
                metadata,
            },
        }),
        Ok(EarlierLine::ImportArtifact { meta, data }) => Ok(Call::ImportArtifact {
            artifact: Artifact { meta, data },
        }),
        Ok(EarlierLine::StoreTaskContext {
            session_id,
            value,
            expected,
        }) => Ok(Call::StoreContext {
            scope: ContextScope::Session(session_id),
            value,
            expected,
            keep_versions: DEFAULT_KEEP_VERSIONS,
        }),
        Ok(EarlierLine::DeleteTaskContext { session_id }) => Ok(Call::DeleteContext {
            scope: ContextScope::Session(session_id),
        }),
        Err(_) => Err(err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_the_earlier_format_still_read() {
        let save = r#"{"op":"save_artifact","scope":"run-1","name":"a.txt","content_type":"text/plain","data":[104,105],"metadata":{"k":1}}"#;
        match parse_line(save).unwrap() {
            Call::SaveArtifact {
                scope,
                name,
                artifact,
            } => {
                assert_eq!((scope.as_str(), name.as_str()), ("run-1", "a.txt"));
                assert_eq!(&artifact.data[..], b"hi");
                assert_eq!(artifact.metadata["k"], 1);
            }
            other => panic!("read as {}", other.name()),
        }
        let append = r#"{"op":"append_messages","session_id":"s","messages":[{"role":"user","content":"hi","client_id":"c1","metadata":{}}]}"#;
        assert_eq!(parse_line(append).unwrap().name(), "append_messages");
        let store = r#"{"op":"store_task_context","session_id":"s","value":{"step":2},"expected":{"Exactly":1}}"#;
        match parse_line(store).unwrap() {
            Call::StoreContext {
                scope,
                value,
                expected,
                keep_versions,
            } => {
                assert_eq!(scope, ContextScope::session("s"));
                assert_eq!(value, serde_json::json!({"step": 2}));
                assert_eq!(expected, ExpectedVersion::Exactly(1));
                assert_eq!(keep_versions, DEFAULT_KEEP_VERSIONS);
            }
            other => panic!("read as {}", other.name()),
        }
        let delete = r#"{"op":"delete_task_context","session_id":"s"}"#;
        assert_eq!(parse_line(delete).unwrap().name(), "delete_context");
        let import = r#"{"op":"import_task_context","context":{"session_id":"s","value":1,"version":3,"updated_at":"2026-11-01T10:00:00Z"}}"#;
        match parse_line(import).unwrap() {
            Call::ImportTaskContext { context } => {
                assert_eq!(context.scope, ContextScope::session("s"));
                assert_eq!(context.version, 3);
            }
            other => panic!("read as {}", other.name()),
        }
        assert!(parse_line(r#"{"op":"no_such_write"}"#).is_err());
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn only_writes_of_a_kind_are_replayed() {
        use storage_core::SessionStore;
        let backend = storage_memory::MemoryBackend::new("replay").unwrap();
        for line in [r#"{"op":"close"}"#, r#"{"op":"get_session","id":"s"}"#] {
            let call = parse_line(line).unwrap();
            assert_eq!(replay(&call, &backend).await.unwrap(), Replayed::Refused);
        }
        let create = parse_line(
            r#"{"op":"create_session","session":{"id":"s","user_id":"u","metadata":{}}}"#,
        )
        .unwrap();
        assert_eq!(replay(&create, &backend).await.unwrap(), Replayed::Applied);
        assert!(
            backend.get_session("s").await.unwrap().is_some(),
            "not closed"
        );
    }
}

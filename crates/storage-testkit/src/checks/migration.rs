//! The calls `storectl migrate` relies on: exact, idempotent imports and sorted listings of
//! every thread and artifact scope.

use std::time::Duration;
use storage_core::ext::TaskContextStoreExt;

use serde_json::json;
use storage_core::{
    Artifact, ArtifactMeta, Checkpoint, ContextScope, ErrorKind, ExpectedVersion, Message,
    MessageRange, Metadata, NewArtifact, NewMessage, Session, SessionMetrics, SessionQuery,
    SessionStatus, TaskContext, Timestamp,
};

use crate::data::assert_kind;
use crate::TestContext;

fn at(seconds: i64) -> Timestamp {
    storage_core::time::from_micros(seconds * 1_000_000 + 123_456)
}

fn old_session(id: &str, user: &str) -> Session {
    let mut metadata = Metadata::new();
    metadata.insert("step".into(), json!("plan"));
    Session {
        id: id.into(),
        user_id: user.into(),
        status: SessionStatus::Completed,
        metadata,
        metrics: SessionMetrics {
            request_count: 41,
            total_processing_ms: 9_000,
            error_count: 3,
            last_error: Some("tool failed".into()),
        },
        created_at: at(1_600_000_000),
        last_activity: at(1_600_000_100),
        ended_at: Some(at(1_600_000_100)),
    }
}

fn message(session: &str, sequence: u64, client_id: Option<&str>) -> Message {
    Message {
        session_id: session.into(),
        sequence,
        role: "user".into(),
        content: json!(format!("message {sequence}")),
        client_id: client_id.map(str::to_owned),
        metadata: Metadata::new(),
        created_at: at(1_600_000_000 + sequence as i64),
        turn_id: None,
        tool_calls: Vec::new(),
        tool_result_for: None,
        compacted: None,
    }
}

fn artifact(scope: &str, name: &str, version: u64, content: &str) -> Artifact {
    Artifact {
        meta: ArtifactMeta {
            scope: scope.into(),
            name: name.into(),
            version,
            content_type: "text/plain".into(),
            size: content.len() as u64,
            sha256: storage_core::artifact::sha256_hex(content.as_bytes()),
            metadata: Metadata::new(),
            created_at: at(1_600_000_000 + version as i64),
        },
        data: content.as_bytes().to_vec().into(),
    }
}

/// An imported session reads back exactly, timestamps included; importing again replaces
/// it; listing and cleanup go by the imported activity.
pub async fn import_session_stores_the_exact_record(ctx: TestContext) {
    let b = &ctx.backend;
    let session = old_session("s1", "u1");
    b.import_session(session.clone()).await.unwrap();
    b.import_session(session.clone()).await.unwrap();
    assert_eq!(b.get_session("s1").await.unwrap(), Some(session.clone()));
    b.create_session(storage_core::NewSession::new("s2", "u1"))
        .await
        .unwrap();
    let page = b
        .list_sessions(SessionQuery {
            user_id: Some("u1".into()),
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s2", "s1"]);
    let mut moved = session.clone();
    moved.user_id = "u2".into();
    b.import_session(moved.clone()).await.unwrap();
    assert_eq!(b.get_session("s1").await.unwrap(), Some(moved));
    let u1 = b
        .list_sessions(SessionQuery {
            user_id: Some("u1".into()),
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(u1.items.len(), 1, "{u1:?}");
    let removed = b
        .cleanup_expired_sessions(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(b.get_session("s1").await.unwrap(), None);
    assert!(b.get_session("s2").await.unwrap().is_some());
}

/// Imported messages keep their sequence numbers, client ids and times; a number already
/// handed out, or a live client id, is left alone; the next append continues after the
/// highest imported number.
pub async fn import_messages_keeps_sequences_and_stores_once(ctx: TestContext) {
    let b = &ctx.backend;
    let batch = vec![
        message("s1", 1, Some("c1")),
        message("s1", 2, None),
        message("s1", 5, Some("c5")),
    ];
    assert_eq!(b.import_messages("s1", batch.clone()).await.unwrap(), 3);
    assert_eq!(b.import_messages("s1", batch.clone()).await.unwrap(), 0);
    let mut changed = message("s1", 2, None);
    changed.content = json!("not stored");
    let later = vec![
        message("s1", 8, None),
        message("s1", 7, Some("c1")),
        message("s1", 3, None),
        changed,
    ];
    assert_eq!(b.import_messages("s1", later).await.unwrap(), 1);
    let stored = b
        .get_messages("s1", MessageRange::after(0, 10))
        .await
        .unwrap();
    let expected = vec![
        batch[0].clone(),
        batch[1].clone(),
        batch[2].clone(),
        message("s1", 8, None),
    ];
    assert_eq!(stored, expected);
    let next = b
        .append_message("s1", NewMessage::new("user", "next"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 9);
    let replay = b
        .append_message("s1", NewMessage::new("user", "again").with_client_id("c5"))
        .await
        .unwrap();
    assert_eq!(replay, batch[2]);
    assert_kind(
        b.import_messages("s1", vec![message("other", 9, None)])
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        b.import_messages("s1", vec![message("s1", 0, None)]).await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(b.get_conversation_history("s1", 10).await.unwrap().len(), 5);
    b.pop_last_message("s1").await.unwrap();
    // A popped number is never handed out again, not by an import either.
    assert_eq!(
        b.import_messages("s1", vec![message("s1", 9, None)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(b.get_conversation_history("s1", 10).await.unwrap().len(), 4);
}

/// An imported task context keeps its version and time and never replaces a newer one;
/// compare-and-set continues from the imported version.
pub async fn import_task_context_keeps_its_version(ctx: TestContext) {
    let b = &ctx.backend;
    let context = TaskContext {
        scope: ContextScope::session("s1"),
        value: json!({"plan": [1, 2]}),
        version: 7,
        updated_at: at(1_600_000_000),
    };
    assert!(b.import_task_context(context.clone()).await.unwrap());
    assert!(!b.import_task_context(context.clone()).await.unwrap());
    let older = TaskContext {
        version: 5,
        value: json!("old"),
        ..context.clone()
    };
    assert!(!b.import_task_context(older).await.unwrap());
    assert_eq!(b.get_task_context("s1").await.unwrap(), Some(context));
    let next = b
        .store_task_context("s1", json!("next"), ExpectedVersion::Exactly(7))
        .await
        .unwrap();
    assert_eq!(next.version, 8);
    let zero = TaskContext {
        scope: ContextScope::session("s2"),
        value: json!(null),
        version: 0,
        updated_at: at(0),
    };
    assert_kind(b.import_task_context(zero).await, ErrorKind::InvalidInput);
    assert_eq!(b.get_task_context("s2").await.unwrap(), None);
    // A shared scope's versions imported oldest first are its history.
    let scope = ContextScope::user("u1");
    for version in [3, 4, 9] {
        let imported = TaskContext {
            scope: scope.clone(),
            value: json!(version),
            version,
            updated_at: at(1_600_000_000 + version as i64),
        };
        assert!(b.import_task_context(imported.clone()).await.unwrap());
        assert_eq!(
            b.get_context(scope.clone(), Some(version)).await.unwrap(),
            Some(imported)
        );
    }
    let history = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    let versions: Vec<u64> = history.iter().map(|context| context.version).collect();
    assert_eq!(versions, vec![9, 4, 3]);
    // An import trims nothing, however long the history: a scope that kept more than the
    // default moves whole.
    let long = ContextScope::user("long");
    let count = u64::from(storage_core::task_context::DEFAULT_KEEP_VERSIONS) + 5;
    for version in 1..=count {
        let imported = TaskContext {
            scope: long.clone(),
            value: json!(version),
            version,
            updated_at: at(1_600_000_000),
        };
        assert!(b.import_task_context(imported).await.unwrap());
    }
    let kept = b
        .list_context_versions(long.clone(), None, 1_000)
        .await
        .unwrap();
    assert_eq!(kept.len() as u64, count);
    // The next store trims as it asks.
    b.store_context(
        long.clone(),
        json!("next"),
        ExpectedVersion::Exactly(count),
        2,
    )
    .await
    .unwrap();
    let kept = b.list_context_versions(long, None, 1_000).await.unwrap();
    let versions: Vec<u64> = kept.iter().map(|context| context.version).collect();
    assert_eq!(versions, vec![count + 1, count]);
}

/// Imported artifact versions keep their numbers, metadata and content; a stored version
/// is left alone; the next save continues after the highest imported version.
pub async fn import_artifact_keeps_versions(ctx: TestContext) {
    let b = &ctx.backend;
    let v0 = artifact("run", "report.md", 0, "first");
    let v2 = artifact("run", "report.md", 2, "third");
    assert!(b.import_artifact(v2.clone()).await.unwrap());
    assert!(b.import_artifact(v0.clone()).await.unwrap());
    assert!(!b.import_artifact(v0.clone()).await.unwrap());
    let versions = b.list_artifact_versions("run", "report.md").await.unwrap();
    assert_eq!(versions, vec![v0.meta.clone(), v2.meta.clone()]);
    assert_eq!(
        b.get_artifact("run", "report.md", Some(2)).await.unwrap(),
        Some(v2)
    );
    let next = b
        .save_artifact("run", "report.md", NewArtifact::new("text/plain", "x"))
        .await
        .unwrap();
    assert_eq!(next.version, 3);
    let mut forged = artifact("run", "forged", 0, "content");
    forged.meta.sha256 = storage_core::artifact::sha256_hex(b"other");
    assert_kind(b.import_artifact(forged).await, ErrorKind::InvalidInput);
    assert!(!b.artifact_exists("run", "forged", None).await.unwrap());
}

/// Thread ids with checkpoints come back sorted, paged by `after`, and only this
/// namespace's.
pub async fn list_thread_ids_pages_in_order(ctx: TestContext) {
    let b = &ctx.backend;
    let threads = ["t-c", "t-a", "t:{*}", "t-b"];
    for thread in threads {
        let checkpoint = Checkpoint::new(thread, "", storage_core::new_checkpoint_id());
        b.put_checkpoint(checkpoint, Default::default())
            .await
            .unwrap();
    }
    let sub = Checkpoint::new("t-d", "sub", storage_core::new_checkpoint_id());
    b.put_checkpoint(sub, Default::default()).await.unwrap();
    let other = ctx.other_namespace().await;
    let elsewhere = Checkpoint::new("t-0", "", storage_core::new_checkpoint_id());
    other
        .put_checkpoint(elsewhere, Default::default())
        .await
        .unwrap();
    let first = b.list_thread_ids(None, 2).await.unwrap();
    assert_eq!(first, ["t-a", "t-b"]);
    let rest = b.list_thread_ids(Some("t-b"), 10).await.unwrap();
    assert_eq!(rest, ["t-c", "t-d", "t:{*}"]);
    b.delete_thread("t-c").await.unwrap();
    let all = b.list_thread_ids(None, 10).await.unwrap();
    assert_eq!(all, ["t-a", "t-b", "t-d", "t:{*}"]);
    assert_kind(b.list_thread_ids(None, 0).await, ErrorKind::InvalidInput);
}

/// Artifact scopes with at least one version come back sorted, paged by `after`, and only
/// this namespace's.
pub async fn list_artifact_scopes_pages_in_order(ctx: TestContext) {
    let b = &ctx.backend;
    for scope in ["s-c", "s-a", "s:{*}", "s-b"] {
        b.save_artifact(scope, "a", NewArtifact::new("text/plain", "x"))
            .await
            .unwrap();
    }
    let other = ctx.other_namespace().await;
    other
        .save_artifact("s-0", "a", NewArtifact::new("text/plain", "x"))
        .await
        .unwrap();
    assert_eq!(
        b.list_artifact_scopes(None, 2).await.unwrap(),
        ["s-a", "s-b"]
    );
    assert_eq!(
        b.list_artifact_scopes(Some("s-b"), 10).await.unwrap(),
        ["s-c", "s:{*}"]
    );
    b.delete_artifact("s-a", "a", None).await.unwrap();
    b.clear_artifacts("s-c").await.unwrap();
    assert_eq!(
        b.list_artifact_scopes(None, 10).await.unwrap(),
        ["s-b", "s:{*}"]
    );
    assert_kind(
        b.list_artifact_scopes(None, 0).await,
        ErrorKind::InvalidInput,
    );
}

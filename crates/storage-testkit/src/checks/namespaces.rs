//! Namespaces: two backends on one server in different namespaces never see or delete
//! each other's data; two backends in the same namespace share it.

use std::time::Duration;
use storage_core::ext::TaskContextStoreExt;

use serde_json::json;
use storage_core::{
    CheckpointQuery, ExpectedVersion, NewArtifact, NewMessage, NewSession, SessionQuery,
};

use crate::data::{checkpoint, obj};
use crate::TestContext;

/// Sessions, conversations and contexts of one namespace are invisible from another.
pub async fn sessions_are_invisible_across_namespaces(ctx: TestContext) {
    let other = ctx.other_namespace().await;
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    b.append_message("s1", NewMessage::new("user", "hi").with_client_id("c1"))
        .await
        .unwrap();
    b.store_task_context("s1", json!(1), ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(other.get_session("s1").await.unwrap(), None);
    assert!(other
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(other.get_task_context("s1").await.unwrap(), None);
    assert!(other
        .list_sessions(SessionQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // The same ids live independently in the other namespace.
    other
        .create_session(NewSession::new("s1", "u2"))
        .await
        .unwrap();
    let theirs = other
        .append_message("s1", NewMessage::new("user", "x").with_client_id("c1"))
        .await
        .unwrap();
    assert_eq!(theirs.sequence, 1);
    assert!(other.delete_session("s1").await.unwrap());
    assert_eq!(b.get_session("s1").await.unwrap().unwrap().user_id, "u1");
    assert_eq!(b.get_conversation_history("s1", 10).await.unwrap().len(), 1);
}

/// Checkpoints of one namespace are invisible from another, and deleting there deletes
/// nothing here.
pub async fn checkpoints_are_invisible_across_namespaces(ctx: TestContext) {
    let other = ctx.other_namespace().await;
    let mut cp = checkpoint("t1", "", "cp-1", &[("a", "1", json!(1))]);
    cp.metadata = obj(json!({"run_id": "r1"}));
    let new = cp.all_versions();
    ctx.backend.put_checkpoint(cp, new).await.unwrap();
    assert_eq!(other.get_checkpoint("t1", "", None).await.unwrap(), None);
    assert!(other
        .list_checkpoints(CheckpointQuery::thread("t1"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(other.delete_thread("t1").await.unwrap(), 0);
    assert_eq!(other.delete_for_runs(&["r1".to_string()]).await.unwrap(), 0);
    assert_eq!(other.prune_checkpoints("t1", 1).await.unwrap(), 0);
    assert!(ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .is_some());
}

/// Artifacts of one namespace are invisible from another; clearing there clears nothing here.
pub async fn artifacts_are_invisible_across_namespaces(ctx: TestContext) {
    let other = ctx.other_namespace().await;
    ctx.backend
        .save_artifact("run1", "a", NewArtifact::new("text/plain", "x"))
        .await
        .unwrap();
    assert!(!other.artifact_exists("run1", "a", None).await.unwrap());
    assert!(other.list_artifacts("run1").await.unwrap().is_empty());
    assert_eq!(other.clear_artifacts("run1").await.unwrap(), 0);
    assert_eq!(
        other
            .save_artifact("run1", "a", NewArtifact::new("text/plain", "y"))
            .await
            .unwrap()
            .version,
        0
    );
    assert_eq!(
        ctx.backend
            .get_artifact("run1", "a", None)
            .await
            .unwrap()
            .unwrap()
            .data,
        "x".as_bytes()
    );
}

/// Cleanup removes idle sessions of its own namespace only.
pub async fn cleanup_stays_in_its_namespace(ctx: TestContext) {
    let other = ctx.other_namespace().await;
    ctx.backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    other
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        other
            .cleanup_expired_sessions(Duration::from_millis(10))
            .await
            .unwrap(),
        1
    );
    assert!(ctx.backend.get_session("s1").await.unwrap().is_some());
}

/// A second backend value on the same namespace (another process) sees the same data and
/// continues the same sequences.
pub async fn same_namespace_is_shared(ctx: TestContext) {
    let twin = ctx.same_namespace().await;
    ctx.backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    ctx.backend
        .append_message("s1", NewMessage::new("user", "a"))
        .await
        .unwrap();
    assert!(twin.get_session("s1").await.unwrap().is_some());
    assert_eq!(
        twin.append_message("s1", NewMessage::new("user", "b"))
            .await
            .unwrap()
            .sequence,
        2
    );
    let stored = ctx
        .backend
        .store_task_context("s1", json!(1), ExpectedVersion::Absent)
        .await
        .unwrap();
    assert_eq!(twin.get_task_context("s1").await.unwrap(), Some(stored));
}

/// Hostile ids used in another namespace (creating, deleting, clearing, expiring) never
/// reach this namespace's records with the same ids.
pub async fn hostile_ids_stay_in_their_namespace(ctx: TestContext) {
    let other = ctx.other_namespace().await;
    let b = &ctx.backend;
    for id in crate::data::HOSTILE_IDS {
        b.create_session(NewSession::new(*id, *id)).await.unwrap();
        b.append_message(id, NewMessage::new("user", *id))
            .await
            .unwrap();
        let cp = checkpoint(id, "", id, &[("ch", "1", json!(id))]);
        let new = cp.all_versions();
        b.put_checkpoint(cp, new).await.unwrap();
        b.save_artifact(id, id, NewArtifact::new("text/plain", "x"))
            .await
            .unwrap();
    }
    for id in crate::data::HOSTILE_IDS {
        other
            .create_session(NewSession::new(*id, *id))
            .await
            .unwrap();
        assert!(other.delete_session(id).await.unwrap());
        assert_eq!(other.clear_conversation(id).await.unwrap(), 0);
        assert_eq!(other.delete_thread(id).await.unwrap(), 0);
        assert_eq!(other.clear_artifacts(id).await.unwrap(), 0);
    }
    other
        .cleanup_expired_sessions(Duration::ZERO)
        .await
        .unwrap();
    for id in crate::data::HOSTILE_IDS {
        assert!(b.get_session(id).await.unwrap().is_some(), "session {id:?}");
        assert_eq!(
            b.get_conversation_history(id, 5).await.unwrap().len(),
            1,
            "history {id:?}"
        );
        assert!(
            b.get_checkpoint(id, "", None).await.unwrap().is_some(),
            "thread {id:?}"
        );
        assert!(
            b.artifact_exists(id, id, None).await.unwrap(),
            "scope {id:?}"
        );
    }
}

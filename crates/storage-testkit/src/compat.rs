//! What task contexts written by the previous release (one per session, before scopes and
//! kept versions) must read as on every backend. A backend's compatibility test plants, in
//! that release's layout, the contexts of sessions `s1` (version 3, value
//! `{"plan": ["a", "b"], "step": 3}`, stored at 2026-11-01T10:00:00.123456Z), `s:2`
//! (`"just text"`) and `idle` (anything), opens the backend and calls
//! [`previous_release_contexts_read`].

use std::time::Duration;

use serde_json::json;
use storage_core::prelude::*;
use storage_core::{ErrorKind, StorageBackend};

/// Checks the planted contexts through the new contract: each is its session scope's
/// current (and only) version, compare-and-set continues from it, and removing a session
/// removes its migrated context and nothing else. Panics on a violation.
pub async fn previous_release_contexts_read(b: &dyn StorageBackend) {
    let s1 = ContextScope::session("s1");
    let current = b.get_context(s1.clone(), None).await.unwrap().unwrap();
    assert_eq!(current.scope, s1);
    assert_eq!(current.version, 3);
    assert_eq!(current.value, json!({"plan": ["a", "b"], "step": 3}));
    assert_eq!(
        current.updated_at,
        "2026-11-01T10:00:00.123456Z"
            .parse::<storage_core::Timestamp>()
            .unwrap()
    );
    assert_eq!(
        b.get_context(s1.clone(), Some(3)).await.unwrap(),
        Some(current.clone())
    );
    assert_eq!(b.get_context(s1.clone(), Some(2)).await.unwrap(), None);
    assert_eq!(
        b.list_context_versions(s1.clone(), None, 10).await.unwrap(),
        vec![current.clone()]
    );
    assert_eq!(
        b.get_task_context("s:2").await.unwrap().unwrap().value,
        json!("just text")
    );

    let scopes = b.list_context_scopes(None, 10).await.unwrap();
    assert_eq!(
        scopes,
        vec![
            ContextScope::session("idle"),
            ContextScope::session("s1"),
            ContextScope::session("s:2"),
        ]
    );

    // Compare-and-set continues from the old version.
    let err = b
        .store_context(s1.clone(), json!("lost"), ExpectedVersion::Absent, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let next = b
        .store_context(s1.clone(), json!("next"), ExpectedVersion::Exactly(3), 10)
        .await
        .unwrap();
    assert_eq!(next.version, 4);
    let history = b.list_context_versions(s1.clone(), None, 10).await.unwrap();
    assert_eq!(history, vec![next, current]);

    // Removing the sessions removes their migrated contexts, and only theirs.
    for id in ["s:2", "idle"] {
        b.create_session(NewSession::new(id, "u1")).await.unwrap();
    }
    assert!(b.delete_session("s:2").await.unwrap());
    assert_eq!(b.get_task_context("s:2").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let removed = b
        .cleanup_expired_sessions(Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        b.list_context_versions(ContextScope::session("idle"), None, 10)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        b.list_context_scopes(None, 10).await.unwrap(),
        vec![ContextScope::session("s1")]
    );
}

//! What data written by the previous release must read as on every backend. A backend's
//! compatibility tests plant it in that release's layout, open the backend and call these.
//!
//! [`previous_release_contexts_read`]: task contexts (one per session, before scopes and
//! kept versions) of sessions `s1` (version 3, value `{"plan": ["a", "b"], "step": 3}`,
//! stored at 2026-11-01T10:00:00.123456Z), `s:2` (`"just text"`) and `idle` (anything).

use std::time::Duration;

use serde_json::json;
use storage_core::prelude::*;
use storage_core::{ErrorKind, MessageRange, StorageBackend};

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

/// Checks messages the previous release wrote through compaction, rewind and pop: session
/// `s1` holds messages 1 to 5 (contents `"m1"` to `"m5"`, client ids `c1` to `c5`) and
/// session `s2` messages 1 and 2 (`"m1"`, `"m2"`), planted in that release's layout. Panics
/// on a violation.
pub async fn previous_release_messages_compact(b: &dyn StorageBackend) {
    let old = b
        .get_messages("s1", MessageRange::after(0, 100))
        .await
        .unwrap();
    let numbers: Vec<u64> = old.iter().map(|m| m.sequence).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
    assert_eq!(old[1].content, json!("m2"));
    assert!(old.iter().all(|m| m.compacted.is_none()));

    let summary = b
        .compact_conversation("s1", 3, NewMessage::new("system", json!("1-3")), true)
        .await
        .unwrap();
    let compacted = summary.compacted.unwrap();
    assert_eq!(
        (compacted.from, compacted.to, compacted.replaced),
        (1, 3, 3)
    );
    assert_eq!(b.get_replaced_messages("s1", 3).await.unwrap(), old[..3]);
    // The replaced client ids are free; numbering continues from the old counter.
    let again = b
        .append_message(
            "s1",
            NewMessage::new("user", json!("again")).with_client_id("c2"),
        )
        .await
        .unwrap();
    assert_eq!(again.sequence, 6);
    assert_eq!(b.rewind_conversation("s1", 2).await.unwrap(), 4);
    assert!(b.get_replaced_messages("s1", 3).await.unwrap().is_empty());
    assert!(b
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());

    // An old message pops as before.
    let popped = b.pop_last_message("s2").await.unwrap().unwrap();
    assert_eq!((popped.sequence, popped.content), (2, json!("m2")));
    assert_eq!(b.clear_conversation("s2").await.unwrap(), 1);
}

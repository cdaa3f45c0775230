//! Lifecycle, health, metrics and expiry cleanup.

use std::time::Duration;
use storage_core::ext::TaskContextStoreExt;

use serde_json::json;
use storage_core::{ExpectedVersion, NewMessage, NewSession, SessionUpdate};

use crate::TestContext;

/// `initialize` may be called again, and keeps the data.
pub async fn initialize_is_idempotent(ctx: TestContext) {
    ctx.backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    ctx.backend.initialize().await.unwrap();
    ctx.backend.initialize().await.unwrap();
    assert!(ctx.backend.get_session("s1").await.unwrap().is_some());
}

/// A working backend reports itself healthy, under its own name.
pub async fn health_check_reports_healthy(ctx: TestContext) {
    let health = ctx.backend.health_check().await.unwrap();
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.backend, ctx.backend.name());
    assert!(health.latency_ms >= 0.0 && health.latency_ms.is_finite());
}

/// Metrics name their backend.
pub async fn metrics_name_their_backend(ctx: TestContext) {
    let metrics = ctx.backend.get_metrics().await.unwrap();
    assert_eq!(metrics.backend, ctx.backend.name());
}

/// Cleanup removes sessions idle longer than the limit, with their conversation and
/// context, and keeps the recently active ones whole.
pub async fn cleanup_removes_idle_sessions_with_their_data(ctx: TestContext) {
    let b = &ctx.backend;
    for id in ["old1", "old2", "touched"] {
        b.create_session(NewSession::new(id, "u1")).await.unwrap();
        b.append_message(id, NewMessage::new("user", "hi"))
            .await
            .unwrap();
        b.store_task_context(id, json!(id), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.update_session("touched", SessionUpdate::default().request(1))
        .await
        .unwrap();
    b.create_session(NewSession::new("fresh", "u1"))
        .await
        .unwrap();
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(600))
            .await
            .unwrap(),
        2
    );
    for id in ["old1", "old2"] {
        assert_eq!(b.get_session(id).await.unwrap(), None);
        assert!(b.get_conversation_history(id, 10).await.unwrap().is_empty());
        assert_eq!(b.get_task_context(id).await.unwrap(), None);
    }
    for id in ["touched", "fresh"] {
        assert!(b.get_session(id).await.unwrap().is_some(), "{id} kept");
    }
    assert_eq!(
        b.get_conversation_history("touched", 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(b.get_task_context("touched").await.unwrap().is_some());
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
}

/// Ended sessions expire by their last activity like any other, and a deleted session is
/// not counted again.
pub async fn cleanup_counts_each_session_once(ctx: TestContext) {
    let b = &ctx.backend;
    for id in ["a", "b", "c"] {
        b.create_session(NewSession::new(id, "u1")).await.unwrap();
    }
    b.end_session("b", storage_core::SessionStatus::Completed)
        .await
        .unwrap();
    b.delete_session("c").await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(10))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(10))
            .await
            .unwrap(),
        0
    );
}

/// After `close`, operations fail with a `Connection` error (no panic, no hang), and the
/// data is still there for a backend that was not closed.
pub async fn operations_after_close_fail_as_connection(ctx: TestContext) {
    ctx.backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    ctx.backend.close().await.unwrap();
    let err = ctx.backend.get_session("s1").await.unwrap_err();
    assert_eq!(err.kind(), storage_core::ErrorKind::Connection, "{err}");
    let err = ctx
        .backend
        .append_message("s1", NewMessage::new("user", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), storage_core::ErrorKind::Connection, "{err}");
    let twin = ctx.same_namespace().await;
    assert!(twin.get_session("s1").await.unwrap().is_some());
}

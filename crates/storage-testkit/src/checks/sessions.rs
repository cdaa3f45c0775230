//! Sessions: create, read, atomic update, end, delete, batch, list.

use std::collections::BTreeSet;
use std::time::Duration;
use storage_core::ext::TaskContextStoreExt;

use serde_json::json;
use storage_core::{ErrorKind, NewSession, SessionQuery, SessionStatus, SessionUpdate};

use crate::data::{assert_kind, obj};
use crate::TestContext;

/// A created session reads back whole, active, with zero metrics.
pub async fn create_then_get(ctx: TestContext) {
    let b = &ctx.backend;
    let meta = obj(json!({"model": "gpt", "tags": ["a", "b"], "depth": {"x": 1}}));
    let created = b
        .create_session(NewSession::new("s1", "u1").with_metadata(meta.clone()))
        .await
        .unwrap();
    assert_eq!(created.id, "s1");
    assert_eq!(created.user_id, "u1");
    assert_eq!(created.status, SessionStatus::Active);
    assert_eq!(created.metadata, meta);
    assert_eq!(created.metrics, Default::default());
    assert_eq!(created.ended_at, None);
    assert_eq!(created.created_at, created.last_activity);
    assert_eq!(b.get_session("s1").await.unwrap(), Some(created));
}

/// Creating a live id again is `AlreadyExists` and leaves the first record untouched.
pub async fn create_existing_is_already_exists(ctx: TestContext) {
    let b = &ctx.backend;
    let first = b
        .create_session(NewSession::new("s1", "u1").with_metadata(obj(json!({"v": 1}))))
        .await
        .unwrap();
    let again = b
        .create_session(NewSession::new("s1", "u2").with_metadata(obj(json!({"v": 2}))))
        .await;
    assert_kind(again, ErrorKind::AlreadyExists);
    assert_eq!(b.get_session("s1").await.unwrap(), Some(first));
}

/// Sixteen concurrent creates of one id: exactly one succeeds.
pub async fn concurrent_creates_have_one_winner(ctx: TestContext) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                b.create_session(NewSession::new("race", format!("u{i}")))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => winners += 1,
            Err(err) => assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}"),
        }
    }
    assert_eq!(winners, 1);
}

/// An absent session reads as `None`.
pub async fn get_missing_is_none(ctx: TestContext) {
    assert_eq!(ctx.backend.get_session("nobody").await.unwrap(), None);
}

/// Updating or ending an absent session is `NotFound` and creates nothing.
pub async fn update_or_end_missing_is_not_found(ctx: TestContext) {
    let b = &ctx.backend;
    assert_kind(
        b.update_session("nobody", SessionUpdate::default().request(1))
            .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        b.end_session("nobody", SessionStatus::Completed).await,
        ErrorKind::NotFound,
    );
    assert_eq!(b.get_session("nobody").await.unwrap(), None);
}

/// A metadata patch merges at the top level: keys replace, `null` removes, nested objects
/// are replaced whole, untouched keys stay.
pub async fn update_merges_metadata_top_level(ctx: TestContext) {
    let b = &ctx.backend;
    let meta =
        obj(json!({"keep": 1, "replace": "old", "remove": true, "nested": {"a": 1, "b": 2}}));
    b.create_session(NewSession::new("s1", "u1").with_metadata(meta))
        .await
        .unwrap();
    let update = SessionUpdate {
        metadata_patch: obj(
            json!({"replace": "new", "remove": null, "nested": {"c": 3}, "added": [1]}),
        ),
        ..SessionUpdate::default()
    };
    let updated = b.update_session("s1", update).await.unwrap();
    let expected = obj(json!({"keep": 1, "replace": "new", "nested": {"c": 3}, "added": [1]}));
    assert_eq!(updated.metadata, expected);
    assert_eq!(
        b.get_session("s1").await.unwrap().unwrap().metadata,
        expected
    );
}

/// Request count, processing time and error marks add up; the last error is kept.
pub async fn update_counts_requests_time_and_errors(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    b.update_session("s1", SessionUpdate::default().request(100))
        .await
        .unwrap();
    b.update_session("s1", SessionUpdate::default().request(50).error("first"))
        .await
        .unwrap();
    let last = b
        .update_session("s1", SessionUpdate::default().error("second"))
        .await
        .unwrap();
    assert_eq!(last.metrics.request_count, 2);
    assert_eq!(last.metrics.total_processing_ms, 150);
    assert_eq!(last.metrics.error_count, 2);
    assert_eq!(last.metrics.last_error.as_deref(), Some("second"));
    assert_eq!(
        b.get_session("s1").await.unwrap().unwrap().metrics,
        last.metrics
    );
}

/// 64 concurrent increments from many tasks add exactly 64, and every patch lands.
pub async fn concurrent_increments_are_exact(ctx: TestContext) {
    ctx.backend
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                let update = SessionUpdate::default()
                    .request(2)
                    .patch(format!("k{i}"), json!(i));
                b.update_session("s1", update).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let session = ctx.backend.get_session("s1").await.unwrap().unwrap();
    assert_eq!(session.metrics.request_count, 64);
    assert_eq!(session.metrics.total_processing_ms, 128);
    assert_eq!(session.metadata.len(), 64, "every concurrent patch is kept");
}

/// Ending records the status and the end time, and keeps the session readable.
pub async fn end_records_status_and_time(ctx: TestContext) {
    let b = &ctx.backend;
    let created = b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    let ended = b.end_session("s1", SessionStatus::Failed).await.unwrap();
    assert_eq!(ended.status, SessionStatus::Failed);
    let ended_at = ended.ended_at.expect("end time recorded");
    assert!(ended_at >= created.created_at);
    assert_eq!(b.get_session("s1").await.unwrap(), Some(ended));
}

/// Every update moves the last activity forward.
pub async fn update_advances_last_activity(ctx: TestContext) {
    let b = &ctx.backend;
    let created = b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let updated = b
        .update_session("s1", SessionUpdate::default())
        .await
        .unwrap();
    assert!(updated.last_activity > created.last_activity);
    assert_eq!(updated.created_at, created.created_at);
}

/// Deleting a session removes its conversation and task context with it, and nothing else.
pub async fn delete_removes_conversation_and_context(ctx: TestContext) {
    let b = &ctx.backend;
    for id in ["s1", "s2"] {
        b.create_session(NewSession::new(id, "u1")).await.unwrap();
        b.append_message(id, storage_core::NewMessage::new("user", "hi"))
            .await
            .unwrap();
        b.store_task_context(id, json!({"id": id}), storage_core::ExpectedVersion::Any)
            .await
            .unwrap();
    }
    assert!(b.delete_session("s1").await.unwrap());
    assert_eq!(b.get_session("s1").await.unwrap(), None);
    assert!(b
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.get_task_context("s1").await.unwrap(), None);
    assert!(b.get_session("s2").await.unwrap().is_some());
    assert_eq!(b.get_conversation_history("s2", 10).await.unwrap().len(), 1);
    assert!(b.get_task_context("s2").await.unwrap().is_some());
    assert!(
        !b.delete_session("s1").await.unwrap(),
        "a second delete finds nothing"
    );
}

/// A deleted id can be created again, from scratch.
pub async fn delete_then_recreate_starts_fresh(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    b.update_session("s1", SessionUpdate::default().request(5))
        .await
        .unwrap();
    b.delete_session("s1").await.unwrap();
    let again = b.create_session(NewSession::new("s1", "u2")).await.unwrap();
    assert_eq!(again.user_id, "u2");
    assert_eq!(again.metrics.request_count, 0);
}

/// A batch create stores the new ids and reports, without touching, the existing ones.
pub async fn batch_create_reports_existing(ctx: TestContext) {
    let b = &ctx.backend;
    let existing = b
        .create_session(NewSession::new("s2", "u0").with_metadata(obj(json!({"old": true}))))
        .await
        .unwrap();
    let batch = (1..=4)
        .map(|i| NewSession::new(format!("s{i}"), "u1"))
        .collect();
    let outcome = b.create_sessions(batch).await.unwrap();
    let created: Vec<&str> = outcome.created.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(created, ["s1", "s3", "s4"]);
    assert_eq!(outcome.already_existed, ["s2"]);
    assert_eq!(b.get_session("s2").await.unwrap(), Some(existing));
    for id in ["s1", "s3", "s4"] {
        assert_eq!(b.get_session(id).await.unwrap().unwrap().user_id, "u1");
    }
}

/// An id repeated within a batch, or an invalid id, fails the batch before anything is stored.
pub async fn batch_create_rejects_bad_batches_whole(ctx: TestContext) {
    let b = &ctx.backend;
    let repeated = vec![
        NewSession::new("a", "u"),
        NewSession::new("b", "u"),
        NewSession::new("a", "u"),
    ];
    assert_kind(b.create_sessions(repeated).await, ErrorKind::InvalidInput);
    let invalid = vec![NewSession::new("c", "u"), NewSession::new("", "u")];
    assert_kind(b.create_sessions(invalid).await, ErrorKind::InvalidInput);
    for id in ["a", "b", "c"] {
        assert_eq!(
            b.get_session(id).await.unwrap(),
            None,
            "{id} must not be stored"
        );
    }
    assert!(b
        .create_sessions(Vec::new())
        .await
        .unwrap()
        .created
        .is_empty());
}

/// A batch get answers in input order, with `None` for absent ids and repeats allowed.
pub async fn batch_get_keeps_input_order(ctx: TestContext) {
    let b = &ctx.backend;
    let batch = (0..50)
        .map(|i| NewSession::new(format!("s{i}"), "u1"))
        .collect();
    b.create_sessions(batch).await.unwrap();
    let ids: Vec<String> = ["s7", "missing", "s0", "s49", "s7"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let got = b.get_sessions(&ids).await.unwrap();
    let got_ids: Vec<Option<&str>> = got
        .iter()
        .map(|s| s.as_ref().map(|s| s.id.as_str()))
        .collect();
    assert_eq!(
        got_ids,
        [Some("s7"), None, Some("s0"), Some("s49"), Some("s7")]
    );
    assert!(b.get_sessions(&[]).await.unwrap().is_empty());
}

/// Listing filters by user and by status, and returns whole records.
pub async fn list_filters_by_user_and_status(ctx: TestContext) {
    let b = &ctx.backend;
    for (id, user) in [
        ("a1", "alice"),
        ("a2", "alice"),
        ("a3", "alice"),
        ("b1", "bob"),
    ] {
        b.create_session(NewSession::new(id, user).with_metadata(obj(json!({"id": id}))))
            .await
            .unwrap();
    }
    b.end_session("a2", SessionStatus::Completed).await.unwrap();
    let ids = |page: storage_core::Page<storage_core::Session>| -> BTreeSet<String> {
        page.items.into_iter().map(|s| s.id).collect()
    };
    let alice = SessionQuery {
        user_id: Some("alice".into()),
        ..SessionQuery::default()
    };
    assert_eq!(
        ids(b.list_sessions(alice.clone()).await.unwrap()),
        ["a1", "a2", "a3"].map(String::from).into()
    );
    let alice_active = SessionQuery {
        status: Some(SessionStatus::Active),
        ..alice
    };
    let page = b.list_sessions(alice_active).await.unwrap();
    assert!(
        page.items.iter().all(|s| s.metadata["id"] == json!(s.id)),
        "whole records"
    );
    assert_eq!(ids(page), ["a1", "a3"].map(String::from).into());
    let completed = SessionQuery {
        status: Some(SessionStatus::Completed),
        ..SessionQuery::default()
    };
    assert_eq!(
        ids(b.list_sessions(completed).await.unwrap()),
        ["a2"].map(String::from).into()
    );
    let nobody = SessionQuery {
        user_id: Some("carol".into()),
        ..SessionQuery::default()
    };
    let page = b.list_sessions(nobody).await.unwrap();
    assert!(page.items.is_empty() && page.next_cursor.is_none());
}

/// Listing orders by last activity, most recent first.
pub async fn list_orders_by_last_activity(ctx: TestContext) {
    let b = &ctx.backend;
    for id in ["s1", "s2", "s3"] {
        b.create_session(NewSession::new(id, "u1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    b.update_session("s1", SessionUpdate::default())
        .await
        .unwrap();
    let page = b.list_sessions(SessionQuery::default()).await.unwrap();
    let order: Vec<&str> = page.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["s1", "s3", "s2"]);
}

/// Paging with the cursor visits every session exactly once, in order.
pub async fn list_pages_cover_everything_once(ctx: TestContext) {
    let b = &ctx.backend;
    let batch = (0..25)
        .map(|i| NewSession::new(format!("s{i:02}"), "u1"))
        .collect();
    b.create_sessions(batch).await.unwrap();
    for i in [3, 9, 17] {
        b.update_session(&format!("s{i:02}"), SessionUpdate::default())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let query = SessionQuery {
            limit: 7,
            cursor,
            ..SessionQuery::default()
        };
        let page = b.list_sessions(query).await.unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items);
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let unique: BTreeSet<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(unique.len(), 25);
    let in_order = seen.windows(2).all(|pair| {
        let (a, b) = (&pair[0], &pair[1]);
        a.last_activity > b.last_activity || (a.last_activity == b.last_activity && a.id < b.id)
    });
    assert!(in_order, "pages follow most-recent-first order");
    let first_three: BTreeSet<&str> = seen[..3].iter().map(|s| s.id.as_str()).collect();
    assert_eq!(first_three, ["s03", "s09", "s17"].into());
}

/// A malformed cursor or a zero limit is `InvalidInput`.
pub async fn list_rejects_bad_cursor_and_limit(ctx: TestContext) {
    let b = &ctx.backend;
    let bad_cursor = SessionQuery {
        cursor: Some("not a cursor".into()),
        ..SessionQuery::default()
    };
    assert_kind(b.list_sessions(bad_cursor).await, ErrorKind::InvalidInput);
    let zero = SessionQuery {
        limit: 0,
        ..SessionQuery::default()
    };
    assert_kind(b.list_sessions(zero).await, ErrorKind::InvalidInput);
}

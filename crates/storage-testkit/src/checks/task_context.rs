//! Task context: versions and compare-and-set.

use serde_json::json;
use storage_core::ext::TaskContextStoreExt;
use storage_core::{ErrorKind, ExpectedVersion};

use crate::data::assert_kind;
use crate::TestContext;

/// An absent context reads as `None`; deleting it reports there was none.
pub async fn missing_is_none(ctx: TestContext) {
    assert_eq!(ctx.backend.get_task_context("s1").await.unwrap(), None);
    assert!(!ctx.backend.delete_task_context("s1").await.unwrap());
}

/// Storing without expectation overwrites, and the version increases on every store.
pub async fn store_overwrites_and_versions_increase(ctx: TestContext) {
    let b = &ctx.backend;
    let first = b
        .store_task_context("s1", json!({"step": 1}), ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = b
        .store_task_context("s1", json!({"step": 2}), ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let read = b.get_task_context("s1").await.unwrap().unwrap();
    assert_eq!(read, second);
    assert_eq!(
        (read.session_id(), &read.value),
        (Some("s1"), &json!({"step": 2}))
    );
}

/// A stale expected version is `Conflict` and changes nothing; the current one succeeds.
pub async fn stale_version_conflicts_and_changes_nothing(ctx: TestContext) {
    let b = &ctx.backend;
    b.store_task_context("s1", json!("v1"), ExpectedVersion::Absent)
        .await
        .unwrap();
    let current = b
        .store_task_context("s1", json!("v2"), ExpectedVersion::Exactly(1))
        .await
        .unwrap();
    assert_kind(
        b.store_task_context("s1", json!("lost"), ExpectedVersion::Exactly(1))
            .await,
        ErrorKind::Conflict,
    );
    assert_kind(
        b.store_task_context("s1", json!("lost"), ExpectedVersion::Absent)
            .await,
        ErrorKind::Conflict,
    );
    assert_kind(
        b.store_task_context("s1", json!("lost"), ExpectedVersion::Exactly(7))
            .await,
        ErrorKind::Conflict,
    );
    assert_eq!(b.get_task_context("s1").await.unwrap(), Some(current));
    assert_kind(
        b.store_task_context("s2", json!("x"), ExpectedVersion::Exactly(1))
            .await,
        ErrorKind::Conflict,
    );
    assert_eq!(b.get_task_context("s2").await.unwrap(), None);
}

/// Sixteen concurrent compare-and-sets from one version: exactly one wins.
pub async fn concurrent_compare_and_set_has_one_winner(ctx: TestContext) {
    ctx.backend
        .store_task_context("s1", json!(0), ExpectedVersion::Any)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                b.store_task_context("s1", json!(i), ExpectedVersion::Exactly(1))
                    .await
            })
        })
        .collect();
    let mut winner = None;
    for task in tasks {
        match task.await.unwrap() {
            Ok(stored) => {
                assert!(winner.is_none(), "two compare-and-sets won");
                winner = Some(stored);
            }
            Err(err) => assert_eq!(err.kind(), ErrorKind::Conflict, "{err}"),
        }
    }
    let winner = winner.expect("one compare-and-set wins");
    assert_eq!(winner.version, 2);
    assert_eq!(
        ctx.backend.get_task_context("s1").await.unwrap(),
        Some(winner)
    );
}

/// A read-modify-write loop with retries on conflict loses no update under concurrency.
pub async fn optimistic_loop_loses_no_update(ctx: TestContext) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    loop {
                        let current = b.get_task_context("counter").await.unwrap();
                        let (count, expected) = match &current {
                            None => (0, ExpectedVersion::Absent),
                            Some(c) => (
                                c.value.as_u64().unwrap(),
                                ExpectedVersion::Exactly(c.version),
                            ),
                        };
                        match b
                            .store_task_context("counter", json!(count + 1), expected)
                            .await
                        {
                            Ok(_) => break,
                            Err(err) => assert_eq!(err.kind(), ErrorKind::Conflict, "{err}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored = ctx
        .backend
        .get_task_context("counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, json!(40));
    assert_eq!(stored.version, 40);
}

/// Delete removes one session's context; a new store starts at version 1 again.
pub async fn delete_is_per_session(ctx: TestContext) {
    let b = &ctx.backend;
    b.store_task_context("s1", json!(1), ExpectedVersion::Any)
        .await
        .unwrap();
    b.store_task_context("s1", json!(2), ExpectedVersion::Any)
        .await
        .unwrap();
    b.store_task_context("s2", json!("other"), ExpectedVersion::Any)
        .await
        .unwrap();
    assert!(b.delete_task_context("s1").await.unwrap());
    assert_eq!(b.get_task_context("s1").await.unwrap(), None);
    assert_eq!(
        b.get_task_context("s2").await.unwrap().unwrap().value,
        json!("other")
    );
    assert_eq!(
        b.store_task_context("s1", json!(3), ExpectedVersion::Absent)
            .await
            .unwrap()
            .version,
        1
    );
}

/// The typed extension stores and reads a caller's own type.
pub async fn typed_round_trip(ctx: TestContext) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Plan {
        steps: Vec<String>,
        done: bool,
    }
    let plan = Plan {
        steps: vec!["search".into(), "summarize".into()],
        done: false,
    };
    let b = &ctx.backend;
    let version = b
        .store_task_context_as("s1", &plan, ExpectedVersion::Absent)
        .await
        .unwrap();
    assert_eq!(
        b.get_task_context_as::<Plan>("s1").await.unwrap(),
        Some((plan, version))
    );
    let wrong = b.get_task_context_as::<Vec<u8>>("s1").await;
    assert_kind(wrong, ErrorKind::Serialization);
}

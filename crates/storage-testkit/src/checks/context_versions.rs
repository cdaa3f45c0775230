//! Task context versions and shared scopes: every store keeps the earlier versions up to
//! the number it names, and contexts are addressed by scope (session, user, application).

use std::time::Duration;

use serde_json::json;
use storage_core::ext::TaskContextStoreExt;
use storage_core::task_context::{DEFAULT_KEEP_VERSIONS, MAX_KEEP_VERSIONS};
use storage_core::{ContextScope, ErrorKind, ExpectedVersion, NewSession, TaskContext};

use crate::data::assert_kind;
use crate::TestContext;

fn versions_of(contexts: &[TaskContext]) -> Vec<u64> {
    contexts.iter().map(|context| context.version).collect()
}

/// Every store keeps the earlier versions: each reads back by number with its own value,
/// the current one reads without a number, and a number never stored reads as `None`.
pub async fn earlier_versions_read_back(ctx: TestContext) {
    let b = &ctx.backend;
    let scope = ContextScope::session("s1");
    let mut stored = Vec::new();
    for step in 1..=5 {
        stored.push(
            b.store_context(
                scope.clone(),
                json!({"step": step}),
                ExpectedVersion::Any,
                10,
            )
            .await
            .unwrap(),
        );
    }
    for context in &stored {
        let read = b
            .get_context(scope.clone(), Some(context.version))
            .await
            .unwrap();
        assert_eq!(read.as_ref(), Some(context), "version {}", context.version);
        assert_eq!(context.value, json!({"step": context.version}));
    }
    assert_eq!(
        b.get_context(scope.clone(), None).await.unwrap().as_ref(),
        stored.last()
    );
    assert_eq!(
        b.get_task_context("s1").await.unwrap().as_ref(),
        stored.last()
    );
    assert_eq!(b.get_context(scope.clone(), Some(6)).await.unwrap(), None);
    assert_eq!(
        b.get_context(ContextScope::session("s2"), Some(1))
            .await
            .unwrap(),
        None
    );
    assert_kind(b.get_context(scope, Some(0)).await, ErrorKind::InvalidInput);
}

/// Versions list newest first, page with `before` and cover every kept version once.
pub async fn versions_list_newest_first_in_pages(ctx: TestContext) {
    let b = &ctx.backend;
    let scope = ContextScope::user("u1");
    assert!(b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap()
        .is_empty());
    for step in 1..=7 {
        b.store_context(scope.clone(), json!(step), ExpectedVersion::Any, 100)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    for _ in 0..10 {
        let page = b
            .list_context_versions(scope.clone(), before, 3)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        assert!(
            before.is_none_or(|before| page[0].version < before),
            "a page ignores `before`"
        );
        for context in &page {
            assert_eq!(context.value, json!(context.version));
            assert_eq!(context.scope, scope);
        }
        before = page.last().map(|context| context.version);
        seen.extend(versions_of(&page));
    }
    assert_eq!(seen, vec![7, 6, 5, 4, 3, 2, 1]);
    let below_five = b
        .list_context_versions(scope.clone(), Some(5), 100)
        .await
        .unwrap();
    assert_eq!(versions_of(&below_five), vec![4, 3, 2, 1]);
    assert!(b
        .list_context_versions(scope.clone(), Some(1), 10)
        .await
        .unwrap()
        .is_empty());
    assert_kind(
        b.list_context_versions(scope, None, 0).await,
        ErrorKind::InvalidInput,
    );
}

/// A store keeping `n` versions trims the older ones in the same step; trimmed versions
/// never come back, and a bad `keep_versions` is refused with nothing changed.
pub async fn retention_keeps_the_newest_versions(ctx: TestContext) {
    let b = &ctx.backend;
    let scope = ContextScope::session("s1");
    for step in 1..=5 {
        b.store_context(scope.clone(), json!(step), ExpectedVersion::Any, 3)
            .await
            .unwrap();
    }
    let kept = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    assert_eq!(versions_of(&kept), vec![5, 4, 3]);
    for trimmed in [1, 2] {
        assert_eq!(
            b.get_context(scope.clone(), Some(trimmed)).await.unwrap(),
            None
        );
    }
    // Keeping more later does not bring trimmed versions back.
    b.store_context(scope.clone(), json!(6), ExpectedVersion::Exactly(5), 100)
        .await
        .unwrap();
    let kept = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    assert_eq!(versions_of(&kept), vec![6, 5, 4, 3]);
    // Keeping one drops every earlier version.
    b.store_context(scope.clone(), json!(7), ExpectedVersion::Any, 1)
        .await
        .unwrap();
    let kept = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    assert_eq!(versions_of(&kept), vec![7]);
    for keep in [0, MAX_KEEP_VERSIONS + 1] {
        assert_kind(
            b.store_context(scope.clone(), json!("refused"), ExpectedVersion::Any, keep)
                .await,
            ErrorKind::InvalidInput,
        );
    }
    assert_eq!(
        b.get_context(scope.clone(), None)
            .await
            .unwrap()
            .unwrap()
            .value,
        json!(7)
    );
    // The session shortcut keeps the documented default.
    for step in 8..=(8 + u64::from(DEFAULT_KEEP_VERSIONS)) {
        b.store_task_context("s1", json!(step), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let newest = 8 + u64::from(DEFAULT_KEEP_VERSIONS);
    let all = b
        .list_context_versions(scope.clone(), None, 1_000)
        .await
        .unwrap();
    assert_eq!(all.len(), DEFAULT_KEEP_VERSIONS as usize);
    assert_eq!(all[0].version, newest);
    assert_eq!(
        all.last().unwrap().version,
        newest + 1 - u64::from(DEFAULT_KEEP_VERSIONS)
    );
}

/// A compare-and-set that fails adds no version and trims nothing.
pub async fn a_conflict_adds_no_version(ctx: TestContext) {
    let b = &ctx.backend;
    let scope = ContextScope::App;
    for step in 1..=3 {
        b.store_context(scope.clone(), json!(step), ExpectedVersion::Any, 3)
            .await
            .unwrap();
    }
    assert_kind(
        b.store_context(scope.clone(), json!("lost"), ExpectedVersion::Exactly(2), 1)
            .await,
        ErrorKind::Conflict,
    );
    assert_kind(
        b.store_context(scope.clone(), json!("lost"), ExpectedVersion::Absent, 1)
            .await,
        ErrorKind::Conflict,
    );
    let kept = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    assert_eq!(versions_of(&kept), vec![3, 2, 1]);
    assert_eq!(kept[0].value, json!(3));
}

/// Sixteen stores race, each keeping four versions, while readers list: every store gets
/// its own version, and exactly the four newest remain, each with the value its store got.
pub async fn concurrent_stores_race_retention_exactly(ctx: TestContext) {
    let scope = ContextScope::session("race");
    let stores: Vec<_> = (0..16)
        .map(|i| {
            let (b, scope) = (ctx.backend.clone(), scope.clone());
            tokio::spawn(async move {
                b.store_context(scope, json!({"writer": i}), ExpectedVersion::Any, 4)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (b, scope) = (ctx.backend.clone(), scope.clone());
            tokio::spawn(async move {
                for _ in 0..16 {
                    let page = b
                        .list_context_versions(scope.clone(), None, 10)
                        .await
                        .unwrap();
                    let versions = versions_of(&page);
                    // After the store of version v exactly min(4, v) versions are kept,
                    // contiguous: no reader sees more, fewer or a gap.
                    let expected = page.first().map_or(0, |newest| newest.version.min(4));
                    assert_eq!(page.len() as u64, expected, "kept versions: {versions:?}");
                    assert!(
                        versions.windows(2).all(|pair| pair[0] == pair[1] + 1),
                        "kept versions are not the newest, contiguous: {versions:?}"
                    );
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for store in stores {
        results.push(store.await.unwrap());
    }
    for reader in readers {
        reader.await.unwrap();
    }
    let mut versions = versions_of(&results);
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=16).collect::<Vec<u64>>(),
        "every store has its own version"
    );
    let kept = ctx
        .backend
        .list_context_versions(scope, None, 10)
        .await
        .unwrap();
    assert_eq!(versions_of(&kept), vec![16, 15, 14, 13]);
    for context in kept {
        let stored = results
            .iter()
            .find(|r| r.version == context.version)
            .unwrap();
        assert_eq!(&context, stored);
    }
}

/// Deleting a context removes every version; the next store starts at 1.
pub async fn delete_removes_every_version(ctx: TestContext) {
    let b = &ctx.backend;
    let scope = ContextScope::user("u1");
    for step in 1..=3 {
        b.store_context(scope.clone(), json!(step), ExpectedVersion::Any, 10)
            .await
            .unwrap();
    }
    assert!(b.delete_context(scope.clone()).await.unwrap());
    assert!(!b.delete_context(scope.clone()).await.unwrap());
    for version in [None, Some(1), Some(3)] {
        assert_eq!(b.get_context(scope.clone(), version).await.unwrap(), None);
    }
    assert!(b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap()
        .is_empty());
    let again = b
        .store_context(scope.clone(), json!("again"), ExpectedVersion::Absent, 10)
        .await
        .unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(
        versions_of(&b.list_context_versions(scope, None, 10).await.unwrap()),
        vec![1]
    );
}

/// Session, user and application scopes are separate contexts with their own versions,
/// even where a session and a user share an id.
pub async fn scopes_are_separate_contexts(ctx: TestContext) {
    let b = &ctx.backend;
    let scopes = [
        ContextScope::App,
        ContextScope::user("x"),
        ContextScope::user("y"),
        ContextScope::session("x"),
    ];
    for (i, scope) in scopes.iter().enumerate() {
        for _ in 0..=i {
            b.store_context(scope.clone(), json!(scope.key()), ExpectedVersion::Any, 10)
                .await
                .unwrap();
        }
    }
    for (i, scope) in scopes.iter().enumerate() {
        let current = b.get_context(scope.clone(), None).await.unwrap().unwrap();
        assert_eq!(current.scope, *scope);
        assert_eq!(current.value, json!(scope.key()));
        assert_eq!(current.version, i as u64 + 1, "{scope}");
    }
    assert!(b.delete_context(ContextScope::session("x")).await.unwrap());
    assert_eq!(
        b.get_context(ContextScope::user("x"), None)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    assert_kind(
        b.store_context(ContextScope::user(""), json!(1), ExpectedVersion::Any, 1)
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        b.get_context(ContextScope::user("tab\there"), None).await,
        ErrorKind::InvalidInput,
    );
}

/// Deleting a session, or cleaning it up as idle, removes its own context and never a
/// shared one.
pub async fn session_removal_keeps_shared_contexts(ctx: TestContext) {
    let b = &ctx.backend;
    for id in ["gone", "idle"] {
        b.create_session(NewSession::new(id, "u1")).await.unwrap();
        b.store_task_context(id, json!("own"), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    b.store_context(
        ContextScope::user("u1"),
        json!("shared"),
        ExpectedVersion::Any,
        10,
    )
    .await
    .unwrap();
    b.store_context(
        ContextScope::App,
        json!("everyone"),
        ExpectedVersion::Any,
        10,
    )
    .await
    .unwrap();
    assert!(b.delete_session("gone").await.unwrap());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(500))
            .await
            .unwrap(),
        1
    );
    for id in ["gone", "idle"] {
        assert_eq!(b.get_task_context(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(
        b.get_context(ContextScope::user("u1"), None)
            .await
            .unwrap()
            .unwrap()
            .value,
        json!("shared")
    );
    assert_eq!(
        b.get_context(ContextScope::App, None)
            .await
            .unwrap()
            .unwrap()
            .value,
        json!("everyone")
    );
}

/// A session's merged view: the session's keys over the user's over the application's.
pub async fn merged_view_prefers_the_most_specific_scope(ctx: TestContext) {
    let b = &ctx.backend;
    assert_eq!(b.get_merged_context("s1", Some("u1")).await.unwrap(), None);
    b.store_context(
        ContextScope::App,
        json!({"tone": "formal", "locale": "en", "limit": 10}),
        ExpectedVersion::Any,
        10,
    )
    .await
    .unwrap();
    b.store_context(
        ContextScope::user("u1"),
        json!({"locale": "fr"}),
        ExpectedVersion::Any,
        10,
    )
    .await
    .unwrap();
    b.store_task_context(
        "s1",
        json!({"limit": 3, "goal": "refund"}),
        ExpectedVersion::Any,
    )
    .await
    .unwrap();
    let merged = b
        .get_merged_context("s1", Some("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        merged.value,
        json!({"tone": "formal", "locale": "fr", "limit": 3, "goal": "refund"})
    );
    let sources: Vec<_> = merged.sources.iter().map(|s| s.scope.clone()).collect();
    assert_eq!(
        sources,
        vec![
            ContextScope::App,
            ContextScope::user("u1"),
            ContextScope::session("s1")
        ]
    );
    let without_user = b.get_merged_context("s1", None).await.unwrap().unwrap();
    assert_eq!(without_user.value["locale"], json!("en"));
}

/// Sixteen compare-and-sets on one user's shared context from one version: exactly one
/// wins, and the history holds exactly its value.
pub async fn shared_compare_and_set_has_one_winner(ctx: TestContext) {
    let scope = ContextScope::user("team");
    ctx.backend
        .store_context(scope.clone(), json!("start"), ExpectedVersion::Absent, 10)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (b, scope) = (ctx.backend.clone(), scope.clone());
            tokio::spawn(async move {
                b.store_context(scope, json!(i), ExpectedVersion::Exactly(1), 10)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(stored) => winners.push(stored),
            Err(err) => assert_eq!(err.kind(), ErrorKind::Conflict, "{err}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one compare-and-set wins");
    let kept = ctx
        .backend
        .list_context_versions(scope, None, 10)
        .await
        .unwrap();
    assert_eq!(versions_of(&kept), vec![2, 1]);
    assert_eq!(kept[0], winners[0]);
}

/// Every scope with a context is listed once, in key order, page by page.
pub async fn context_scopes_list_in_pages(ctx: TestContext) {
    let b = &ctx.backend;
    let mut expected = vec![
        ContextScope::App,
        ContextScope::session("s:1"),
        ContextScope::session("s2"),
        ContextScope::user("s:1"),
        ContextScope::user("u1"),
    ];
    for scope in &expected {
        b.store_context(scope.clone(), json!(1), ExpectedVersion::Any, 2)
            .await
            .unwrap();
    }
    b.store_context(
        ContextScope::user("deleted"),
        json!(1),
        ExpectedVersion::Any,
        2,
    )
    .await
    .unwrap();
    b.delete_context(ContextScope::user("deleted"))
        .await
        .unwrap();
    expected.sort_by_key(ContextScope::key);
    let mut listed = Vec::new();
    let mut after: Option<ContextScope> = None;
    for _ in 0..10 {
        let page = b.list_context_scopes(after.clone(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        assert!(
            after
                .as_ref()
                .is_none_or(|after| page[0].key() > after.key()),
            "a page ignores `after`"
        );
        after = page.last().cloned();
        listed.extend(page);
    }
    assert_eq!(listed, expected);
    assert_kind(
        b.list_context_scopes(None, 0).await,
        ErrorKind::InvalidInput,
    );
}

//! Conversation history: sequences, idempotent appends, last-N, paging, pop, clear.

use std::collections::BTreeSet;

use serde_json::json;
use storage_core::{ErrorKind, MessageRange, NewMessage};

use crate::data::{assert_kind, content, obj};
use crate::TestContext;

fn msg(n: usize) -> NewMessage {
    NewMessage::new(if n % 2 == 0 { "user" } else { "assistant" }, content(n))
}

async fn append_n(ctx: &TestContext, session: &str, n: usize) {
    for i in 1..=n {
        ctx.backend.append_message(session, msg(i)).await.unwrap();
    }
}

fn sequences(messages: &[storage_core::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.sequence).collect()
}

/// Appends get 1, 2, 3, ... and every field reads back as written.
pub async fn append_assigns_sequences_from_one(ctx: TestContext) {
    let b = &ctx.backend;
    let meta = obj(json!({"tokens": 12, "tool": null}));
    let first = b
        .append_message(
            "s1",
            NewMessage::new("user", json!([{"type": "text", "text": "hi"}]))
                .with_metadata(meta.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            first.sequence,
            first.session_id.as_str(),
            first.role.as_str()
        ),
        (1, "s1", "user")
    );
    assert_eq!(first.metadata, meta);
    assert_eq!(first.client_id, None);
    let second = b
        .append_message("s1", NewMessage::new("assistant", "hello"))
        .await
        .unwrap();
    assert_eq!(second.sequence, 2);
    assert_eq!(second.content, json!("hello"));
    let history = b.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(history, vec![first, second]);
}

/// 256 appends from 16 concurrent tasks get exactly 1..=256: no gap, no duplicate.
pub async fn concurrent_appends_are_gapless(ctx: TestContext) {
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..16 {
                    let m = b.append_message("s1", msg(task * 16 + i)).await.unwrap();
                    got.push(m.sequence);
                }
                assert!(
                    got.windows(2).all(|w| w[0] < w[1]),
                    "one task's appends are ordered"
                );
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=256).collect::<Vec<u64>>());
    let stored = ctx
        .backend
        .get_conversation_history("s1", 1000)
        .await
        .unwrap();
    assert_eq!(sequences(&stored), (1..=256).collect::<Vec<u64>>());
}

/// Appending a stored client id again returns the stored message and adds nothing.
pub async fn client_id_replay_adds_nothing(ctx: TestContext) {
    let b = &ctx.backend;
    let first = b
        .append_message("s1", msg(1).with_client_id("req-1"))
        .await
        .unwrap();
    b.append_message("s1", msg(2)).await.unwrap();
    let replay = b
        .append_message(
            "s1",
            NewMessage::new("user", "different content").with_client_id("req-1"),
        )
        .await
        .unwrap();
    assert_eq!(replay, first);
    assert_eq!(
        sequences(&b.get_conversation_history("s1", 10).await.unwrap()),
        [1, 2]
    );
    let next = b.append_message("s1", msg(3)).await.unwrap();
    assert_eq!(next.sequence, 3, "a replay takes no number");
    let other = b
        .append_message("s2", msg(1).with_client_id("req-1"))
        .await
        .unwrap();
    assert_eq!(other.session_id, "s2", "client ids are per session");
}

/// Concurrent appends of one client id store it once, and all callers see that message.
pub async fn concurrent_replays_store_once(ctx: TestContext) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                b.append_message("s1", msg(1).with_client_id("once"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap().sequence);
    }
    assert_eq!(seen, [1].into());
    assert_eq!(
        ctx.backend
            .get_conversation_history("s1", 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// History returns the last N, oldest first.
pub async fn history_is_last_n_oldest_first(ctx: TestContext) {
    append_n(&ctx, "s1", 30).await;
    let last5 = ctx.backend.get_conversation_history("s1", 5).await.unwrap();
    assert_eq!(sequences(&last5), [26, 27, 28, 29, 30]);
    assert_eq!(last5[0].content, content(26));
    let all = ctx
        .backend
        .get_conversation_history("s1", 100)
        .await
        .unwrap();
    assert_eq!(sequences(&all), (1..=30).collect::<Vec<u64>>());
}

/// An unknown session has an empty history; a zero limit is `InvalidInput`.
pub async fn history_edge_cases(ctx: TestContext) {
    let b = &ctx.backend;
    assert!(b
        .get_conversation_history("nobody", 10)
        .await
        .unwrap()
        .is_empty());
    assert_kind(
        b.get_conversation_history("nobody", 0).await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        b.get_messages("nobody", MessageRange::last(0)).await,
        ErrorKind::InvalidInput,
    );
}

/// Paging forward with `after` returns the next `limit` messages, oldest first.
pub async fn paging_forward_after(ctx: TestContext) {
    append_n(&ctx, "s1", 20).await;
    let b = &ctx.backend;
    assert_eq!(
        sequences(
            &b.get_messages("s1", MessageRange::after(0, 4))
                .await
                .unwrap()
        ),
        [1, 2, 3, 4]
    );
    assert_eq!(
        sequences(
            &b.get_messages("s1", MessageRange::after(17, 10))
                .await
                .unwrap()
        ),
        [18, 19, 20]
    );
    assert!(b
        .get_messages("s1", MessageRange::after(20, 10))
        .await
        .unwrap()
        .is_empty());
    let window = MessageRange {
        after: Some(5),
        before: Some(9),
        limit: 10,
    };
    assert_eq!(
        sequences(&b.get_messages("s1", window).await.unwrap()),
        [6, 7, 8]
    );
}

/// Paging backward with `before` returns the `limit` messages just before it, oldest first.
pub async fn paging_backward_before(ctx: TestContext) {
    append_n(&ctx, "s1", 20).await;
    let b = &ctx.backend;
    assert_eq!(
        sequences(
            &b.get_messages("s1", MessageRange::before(11, 3))
                .await
                .unwrap()
        ),
        [8, 9, 10]
    );
    assert_eq!(
        sequences(
            &b.get_messages("s1", MessageRange::before(3, 10))
                .await
                .unwrap()
        ),
        [1, 2]
    );
    assert!(b
        .get_messages("s1", MessageRange::before(1, 10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        sequences(&b.get_messages("s1", MessageRange::last(2)).await.unwrap()),
        [19, 20]
    );
}

/// A batch append gets consecutive numbers after what is stored, in input order.
pub async fn batch_append_is_consecutive(ctx: TestContext) {
    let b = &ctx.backend;
    append_n(&ctx, "s1", 2).await;
    let stored = b
        .append_messages("s1", (3..=7).map(msg).collect())
        .await
        .unwrap();
    assert_eq!(sequences(&stored), [3, 4, 5, 6, 7]);
    assert_eq!(stored[0].content, content(3));
    assert!(b
        .append_messages("s1", Vec::new())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.append_message("s1", msg(8)).await.unwrap().sequence, 8);
}

/// Concurrent batches interleave as whole units: each batch's numbers are consecutive.
pub async fn concurrent_batches_stay_whole(ctx: TestContext) {
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                let batch = (0..8).map(|i| msg(task * 8 + i)).collect();
                sequences(&b.append_messages("s1", batch).await.unwrap())
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let got = task.await.unwrap();
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 1),
            "batch is consecutive: {got:?}"
        );
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=64).collect::<Vec<u64>>());
}

/// Messages of a batch whose client id is stored come back as stored and take no number.
pub async fn batch_append_dedupes_stored_client_ids(ctx: TestContext) {
    let b = &ctx.backend;
    let first = b
        .append_message("s1", msg(1).with_client_id("a"))
        .await
        .unwrap();
    let batch = vec![
        msg(2).with_client_id("b"),
        msg(9).with_client_id("a"),
        msg(3),
    ];
    let stored = b.append_messages("s1", batch).await.unwrap();
    assert_eq!(sequences(&stored), [2, 1, 3]);
    assert_eq!(stored[1], first);
    assert_eq!(
        sequences(&b.get_conversation_history("s1", 10).await.unwrap()),
        [1, 2, 3]
    );
}

/// A batch that repeats a client id, or holds an invalid message, stores nothing.
pub async fn batch_append_rejects_bad_batches_whole(ctx: TestContext) {
    let b = &ctx.backend;
    let repeated = vec![
        msg(1).with_client_id("x"),
        msg(2),
        msg(3).with_client_id("x"),
    ];
    assert_kind(
        b.append_messages("s1", repeated).await,
        ErrorKind::InvalidInput,
    );
    let invalid = vec![msg(1), NewMessage::new("", "no role")];
    assert_kind(
        b.append_messages("s1", invalid).await,
        ErrorKind::InvalidInput,
    );
    assert!(b
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.append_message("s1", msg(1)).await.unwrap().sequence, 1);
}

/// Pop removes and returns the newest message; its number is never handed out again,
/// and its client id is free again.
pub async fn pop_last_does_not_reuse_numbers(ctx: TestContext) {
    let b = &ctx.backend;
    append_n(&ctx, "s1", 2).await;
    let third = b
        .append_message("s1", msg(3).with_client_id("c"))
        .await
        .unwrap();
    assert_eq!(b.pop_last_message("s1").await.unwrap(), Some(third));
    assert_eq!(
        sequences(&b.get_conversation_history("s1", 10).await.unwrap()),
        [1, 2]
    );
    let next = b
        .append_message("s1", msg(4).with_client_id("c"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 4);
    assert_eq!(next.content, content(4));
}

/// Popping an empty or unknown conversation returns `None`.
pub async fn pop_last_on_empty_is_none(ctx: TestContext) {
    let b = &ctx.backend;
    assert_eq!(b.pop_last_message("nobody").await.unwrap(), None);
    append_n(&ctx, "s1", 1).await;
    assert!(b.pop_last_message("s1").await.unwrap().is_some());
    assert_eq!(b.pop_last_message("s1").await.unwrap(), None);
}

/// Clear removes every message and reports how many; numbering continues after it.
pub async fn clear_keeps_numbering(ctx: TestContext) {
    let b = &ctx.backend;
    append_n(&ctx, "s1", 5).await;
    append_n(&ctx, "s2", 2).await;
    assert_eq!(b.clear_conversation("s1").await.unwrap(), 5);
    assert!(b
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.clear_conversation("s1").await.unwrap(), 0);
    assert_eq!(b.append_message("s1", msg(6)).await.unwrap().sequence, 6);
    assert_eq!(
        b.get_conversation_history("s2", 10).await.unwrap().len(),
        2,
        "other sessions untouched"
    );
}

/// Order is the sequence, never the clock: history is sorted by sequence even when
/// messages carry arbitrary content.
pub async fn conversations_are_per_session(ctx: TestContext) {
    let b = &ctx.backend;
    for i in 0..6 {
        let session = if i % 2 == 0 { "even" } else { "odd" };
        b.append_message(session, msg(i)).await.unwrap();
    }
    let even = b.get_conversation_history("even", 10).await.unwrap();
    assert_eq!(sequences(&even), [1, 2, 3]);
    assert!(even.iter().all(|m| m.session_id == "even"));
    assert_eq!(
        even.iter().map(|m| m.content.clone()).collect::<Vec<_>>(),
        [content(0), content(2), content(4)]
    );
}

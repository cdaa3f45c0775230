//! Compaction (a summary replaces a prefix) and rewind (the tail after a sequence number
//! is removed), each one atomic step.

use serde_json::json;
use storage_core::compaction::Compacted;
use storage_core::{ErrorKind, Message, MessageRange, NewMessage};

use crate::data::assert_kind;
use crate::TestContext;

fn numbered(count: u64) -> Vec<NewMessage> {
    (1..=count)
        .map(|n| NewMessage::new("user", json!(n)).with_client_id(format!("c{n}")))
        .collect()
}

fn summary(text: &str) -> NewMessage {
    NewMessage::new("system", json!(text))
}

fn sequences(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.sequence).collect()
}

async fn everything(ctx: &TestContext, session: &str) -> Vec<Message> {
    ctx.backend
        .get_messages(session, MessageRange::after(0, 1_000))
        .await
        .unwrap()
}

/// A summary replaces the prefix at the prefix's last number; later messages keep theirs,
/// numbering continues, and the rules on `up_to` are the same everywhere.
pub async fn a_summary_replaces_the_prefix(ctx: TestContext) {
    let b = &ctx.backend;
    b.append_messages("s1", numbered(10)).await.unwrap();
    let stored = b
        .compact_conversation("s1", 6, summary("1-6 in short"), false)
        .await
        .unwrap();
    assert_eq!(stored.sequence, 6);
    assert_eq!(
        stored.compacted,
        Some(Compacted {
            from: 1,
            to: 6,
            replaced: 6,
            kept: false
        })
    );
    let all = everything(&ctx, "s1").await;
    assert_eq!(sequences(&all), vec![6, 7, 8, 9, 10]);
    assert_eq!(all[0], stored);
    assert_eq!(
        b.get_conversation_history("s1", 2).await.unwrap()[0].sequence,
        9
    );
    assert!(b.get_replaced_messages("s1", 6).await.unwrap().is_empty());
    // Replaced client ids are released; numbering continues after the highest.
    let again = b
        .append_message(
            "s1",
            NewMessage::new("user", json!("again")).with_client_id("c2"),
        )
        .await
        .unwrap();
    assert_eq!(again.sequence, 11);
    // The rules on `up_to`.
    assert_kind(
        b.compact_conversation("s1", 6, summary("again"), false)
            .await,
        ErrorKind::Conflict,
    );
    assert_kind(
        b.compact_conversation("s1", 12, summary("nothing there"), false)
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        b.compact_conversation("s1", 0, summary("zero"), false)
            .await,
        ErrorKind::InvalidInput,
    );
    assert_kind(
        b.compact_conversation("nobody", 1, summary("empty"), false)
            .await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        sequences(&everything(&ctx, "s1").await),
        vec![6, 7, 8, 9, 10, 11]
    );
    // A later compaction covers the earlier summary and widens its range.
    let wider = b
        .compact_conversation("s1", 8, summary("1-8"), false)
        .await
        .unwrap();
    let compacted = wider.compacted.unwrap();
    assert_eq!(
        (compacted.from, compacted.to, compacted.replaced),
        (1, 8, 3)
    );
    assert_eq!(sequences(&everything(&ctx, "s1").await), vec![8, 9, 10, 11]);
}

/// Kept messages read back by their summary's number, nested compactions included, and
/// are dropped with their summary.
pub async fn kept_messages_read_back_and_go_with_their_summary(ctx: TestContext) {
    let b = &ctx.backend;
    let originals = b.append_messages("s1", numbered(12)).await.unwrap();
    b.compact_conversation("s1", 4, summary("1-4"), true)
        .await
        .unwrap();
    assert_eq!(
        b.get_replaced_messages("s1", 4).await.unwrap(),
        originals[..4]
    );
    let outer = b
        .compact_conversation("s1", 6, summary("1-6"), true)
        .await
        .unwrap();
    let kept = b.get_replaced_messages("s1", 6).await.unwrap();
    assert_eq!(sequences(&kept), vec![4, 5, 6]);
    assert_eq!(kept[0].compacted.map(|c| c.to), Some(4));
    assert_eq!(&kept[1..], &originals[4..6]);
    assert_eq!(outer.compacted.map(|c| (c.from, c.replaced)), Some((1, 3)));
    assert_eq!(
        b.get_replaced_messages("s1", 4).await.unwrap(),
        originals[..4]
    );
    assert!(b.get_replaced_messages("s1", 5).await.unwrap().is_empty());
    // A compaction that drops takes the nested kept messages with it.
    b.compact_conversation("s1", 8, summary("1-8"), false)
        .await
        .unwrap();
    for summary_at in [4, 6, 8] {
        assert!(b
            .get_replaced_messages("s1", summary_at)
            .await
            .unwrap()
            .is_empty());
    }
    // Removing a kept summary removes what it kept: by rewind, by pop, by clear.
    b.compact_conversation("s1", 10, summary("1-10"), true)
        .await
        .unwrap();
    assert_eq!(b.get_replaced_messages("s1", 10).await.unwrap().len(), 3);
    assert_eq!(b.rewind_conversation("s1", 9).await.unwrap(), 3);
    assert!(b.get_replaced_messages("s1", 10).await.unwrap().is_empty());
    // A rewind into a kept summary's range drops what it kept and what the summaries it
    // kept kept.
    b.append_messages("nest", numbered(8)).await.unwrap();
    b.compact_conversation("nest", 4, summary("1-4"), true)
        .await
        .unwrap();
    b.compact_conversation("nest", 6, summary("1-6"), true)
        .await
        .unwrap();
    assert_eq!(b.get_replaced_messages("nest", 4).await.unwrap().len(), 4);
    assert_eq!(b.rewind_conversation("nest", 5).await.unwrap(), 3);
    for summary_at in [4, 6] {
        assert!(b
            .get_replaced_messages("nest", summary_at)
            .await
            .unwrap()
            .is_empty());
    }
    b.append_messages("s2", numbered(3)).await.unwrap();
    b.compact_conversation("s2", 3, summary("all"), true)
        .await
        .unwrap();
    assert_eq!(b.pop_last_message("s2").await.unwrap().unwrap().sequence, 3);
    assert!(b.get_replaced_messages("s2", 3).await.unwrap().is_empty());
    b.append_messages("s3", numbered(3)).await.unwrap();
    b.compact_conversation("s3", 2, summary("1-2"), true)
        .await
        .unwrap();
    assert_eq!(b.clear_conversation("s3").await.unwrap(), 2);
    assert!(b.get_replaced_messages("s3", 2).await.unwrap().is_empty());
}

/// A summary's client id makes a compaction safe to retry.
pub async fn a_retried_compaction_with_a_client_id_changes_nothing(ctx: TestContext) {
    let b = &ctx.backend;
    b.append_messages("s1", numbered(5)).await.unwrap();
    let first = b
        .compact_conversation("s1", 3, summary("1-3").with_client_id("sum-1"), true)
        .await
        .unwrap();
    let retried = b
        .compact_conversation("s1", 3, summary("1-3").with_client_id("sum-1"), true)
        .await
        .unwrap();
    assert_eq!(retried, first);
    assert_eq!(sequences(&everything(&ctx, "s1").await), vec![3, 4, 5]);
    assert_eq!(b.get_replaced_messages("s1", 3).await.unwrap().len(), 3);
}

/// Writers append while two compactions of the same prefix race and readers read: exactly
/// one compaction wins, every appended message is kept with its number, and every read
/// holds either the whole prefix or the summary, never both or neither.
pub async fn compaction_racing_appends_is_exact(ctx: TestContext) {
    let b = &ctx.backend;
    b.append_messages("s1", numbered(20)).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let text = format!("w{writer}-{i}");
                    b.append_message("s1", NewMessage::new("user", json!(text)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let compactions: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let b = ctx.backend.clone();
            tokio::spawn(
                async move { b.compact_conversation("s1", 20, summary(name), false).await },
            )
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    let read = b
                        .get_messages("s1", MessageRange::after(0, 1_000))
                        .await
                        .unwrap();
                    let prefix = read.iter().filter(|m| m.sequence < 20).count();
                    let summaries = read.iter().filter(|m| m.compacted.is_some()).count();
                    assert!(
                        (prefix == 19 && summaries == 0) || (prefix == 0 && summaries == 1),
                        "a read saw {prefix} prefix messages and {summaries} summaries"
                    );
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in writers.into_iter().chain(readers) {
        task.await.unwrap();
    }
    let mut won = Vec::new();
    for task in compactions {
        match task.await.unwrap() {
            Ok(stored) => won.push(stored),
            Err(err) => assert_eq!(err.kind(), ErrorKind::Conflict, "{err}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one compaction wins");
    let all = everything(&ctx, "s1").await;
    assert_eq!(all.len(), 41);
    assert_eq!(all[0], won[0]);
    assert_eq!(sequences(&all[1..]), (21..=60).collect::<Vec<u64>>());
}

/// Rewind removes exactly the messages after a number; numbers are not reused, and a
/// rewind racing appends loses nothing appended after it.
pub async fn rewind_removes_the_tail_and_keeps_numbering(ctx: TestContext) {
    let b = &ctx.backend;
    b.append_messages("s1", numbered(10)).await.unwrap();
    assert_eq!(b.rewind_conversation("s1", 6).await.unwrap(), 4);
    assert_eq!(
        sequences(&everything(&ctx, "s1").await),
        (1..=6).collect::<Vec<u64>>()
    );
    assert_eq!(b.rewind_conversation("s1", 6).await.unwrap(), 0);
    assert_eq!(b.rewind_conversation("s1", 100).await.unwrap(), 0);
    assert_eq!(b.rewind_conversation("nobody", 1).await.unwrap(), 0);
    // A removed message's client id is free again; numbers continue after the highest.
    let next = b
        .append_message(
            "s1",
            NewMessage::new("user", json!("again")).with_client_id("c9"),
        )
        .await
        .unwrap();
    assert_eq!(next.sequence, 11);
    assert_eq!(b.rewind_conversation("s1", 0).await.unwrap(), 7);
    assert!(everything(&ctx, "s1").await.is_empty());

    // Racing appends: whatever the rewind removed plus whatever is left above its number
    // is exactly what was appended.
    // Every append that started after the rewind returned is kept.
    b.append_messages("s2", numbered(5)).await.unwrap();
    let rewound = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (b, rewound) = (ctx.backend.clone(), rewound.clone());
            tokio::spawn(async move {
                let mut after_rewind = Vec::new();
                for i in 0..10 {
                    let late = rewound.load(std::sync::atomic::Ordering::SeqCst);
                    let stored = b
                        .append_message("s2", NewMessage::new("user", json!(i)))
                        .await
                        .unwrap();
                    if late {
                        after_rewind.push(stored.sequence);
                    }
                    tokio::task::yield_now().await;
                }
                after_rewind
            })
        })
        .collect();
    let rewind = {
        let (b, rewound) = (ctx.backend.clone(), rewound.clone());
        tokio::spawn(async move {
            let removed = b.rewind_conversation("s2", 5).await.unwrap();
            rewound.store(true, std::sync::atomic::Ordering::SeqCst);
            removed
        })
    };
    let mut after_rewind = Vec::new();
    for writer in writers {
        after_rewind.extend(writer.await.unwrap());
    }
    let removed = rewind.await.unwrap();
    let left = everything(&ctx, "s2").await;
    let kept: std::collections::HashSet<u64> = sequences(&left).into_iter().collect();
    for sequence in after_rewind {
        assert!(
            kept.contains(&sequence),
            "{sequence}, appended after the rewind, is gone"
        );
    }
    assert_eq!(sequences(&left[..5]), vec![1, 2, 3, 4, 5]);
    assert_eq!(removed + (left.len() as u64 - 5), 40);
    assert!(left
        .windows(2)
        .all(|pair| pair[0].sequence < pair[1].sequence));
}

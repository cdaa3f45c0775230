//! Forking a session (and its checkpoint thread) into one that shares nothing writable.

use serde_json::json;
use storage_core::fork::{Fork, ForkExt, ThreadFork};
use storage_core::prelude::*;
use storage_core::{ErrorKind, MessageRange};

use crate::data::{assert_kind, checkpoint, cp_id, versions};
use crate::TestContext;

fn fork(at: u64, thread: Option<ThreadFork>) -> Fork {
    Fork {
        source_session: "s1".into(),
        new_session: "s1-fork".into(),
        at_sequence: at,
        thread,
    }
}

/// A fork holds the conversation up to its number (same numbers), the session's context
/// with its versions and the thread up to its checkpoint; writing to either side leaves
/// the other as it was.
pub async fn a_fork_copies_and_shares_nothing_writable(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    let originals = b
        .append_messages(
            "s1",
            (1..=8)
                .map(|n| NewMessage::new("user", json!(n)).in_turn("t"))
                .collect(),
        )
        .await
        .unwrap();
    for step in 1..=3 {
        b.store_task_context("s1", json!({"step": step}), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let mut parent = None;
    for n in 1..=4 {
        let mut cp = checkpoint(
            "s1",
            "",
            &cp_id(n),
            &[("messages", &n.to_string(), json!(n))],
        );
        cp.parent_id = parent.clone();
        b.put_checkpoint(cp, versions(&[("messages", &n.to_string())]))
            .await
            .unwrap();
        b.put_writes(
            CheckpointKey::new("s1", cp_id(n)),
            "task",
            "",
            vec![("messages".into(), json!(n * 10).into())],
        )
        .await
        .unwrap();
        parent = Some(cp_id(n));
    }
    let thread = ThreadFork {
        source_thread: "s1".into(),
        new_thread: "s1-fork".into(),
        checkpoint_id: cp_id(3),
    };
    let session = b.fork_session(fork(5, Some(thread))).await.unwrap();
    assert_eq!(session.user_id, "alice");
    assert_eq!(
        session.metadata["forked_from"],
        json!({"session": "s1", "sequence": 5})
    );

    let copied = b
        .get_messages("s1-fork", MessageRange::after(0, 100))
        .await
        .unwrap();
    assert_eq!(copied.len(), 5);
    for (copy, original) in copied.iter().zip(&originals) {
        assert_eq!(copy.session_id, "s1-fork");
        assert_eq!(
            (copy.sequence, &copy.content),
            (original.sequence, &original.content)
        );
        assert_eq!(copy.turn_id, original.turn_id);
    }
    let versions_copied = b
        .list_context_versions(ContextScope::session("s1-fork"), None, 10)
        .await
        .unwrap();
    assert_eq!(versions_copied.len(), 3);
    assert_eq!(versions_copied[0].value, json!({"step": 3}));
    let latest = b
        .get_checkpoint("s1-fork", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.checkpoint.id, cp_id(3));
    assert_eq!(
        latest.checkpoint.channel_values["messages"],
        json!(3).into()
    );
    assert_eq!(latest.pending_writes.len(), 1);
    let listed = b
        .list_checkpoints(CheckpointQuery::thread("s1-fork"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);

    // Nothing writable is shared.
    let next = b
        .append_message("s1-fork", NewMessage::new("user", "fork only"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 6);
    b.store_task_context("s1-fork", json!("fork"), ExpectedVersion::Exactly(3))
        .await
        .unwrap();
    b.delete_thread("s1-fork").await.unwrap();
    assert_eq!(
        b.get_conversation_history("s1", 100).await.unwrap(),
        originals
    );
    assert_eq!(
        b.get_task_context("s1").await.unwrap().unwrap().value,
        json!({"step": 3})
    );
    assert_eq!(
        b.get_checkpoint("s1", "", None)
            .await
            .unwrap()
            .unwrap()
            .checkpoint
            .id,
        cp_id(4)
    );

    // The rules.
    assert_kind(
        b.fork_session(fork(5, None)).await,
        ErrorKind::AlreadyExists,
    );
    let missing = Fork {
        source_session: "nobody".into(),
        ..fork(1, None)
    };
    assert_kind(b.fork_session(missing).await, ErrorKind::NotFound);
    let onto_itself = Fork {
        new_session: "s1".into(),
        ..fork(1, None)
    };
    assert_kind(b.fork_session(onto_itself).await, ErrorKind::InvalidInput);
    let unknown_checkpoint = Fork {
        new_session: "s1-other".into(),
        thread: Some(ThreadFork {
            source_thread: "s1".into(),
            new_thread: "s1-other".into(),
            checkpoint_id: "no-such".into(),
        }),
        ..fork(1, None)
    };
    assert_kind(
        b.fork_session(unknown_checkpoint).await,
        ErrorKind::NotFound,
    );
    assert_eq!(b.get_session("s1-other").await.unwrap(), None);
}

/// A compacted conversation forks with its summary, which keeps nothing in the fork;
/// a number inside a summary's range cannot be forked at.
pub async fn a_compacted_conversation_forks_with_its_summary(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    b.append_messages(
        "s1",
        (1..=6).map(|n| NewMessage::new("user", json!(n))).collect(),
    )
    .await
    .unwrap();
    b.compact_conversation("s1", 4, NewMessage::new("system", "1-4"), true)
        .await
        .unwrap();
    assert_kind(b.fork_session(fork(2, None)).await, ErrorKind::InvalidInput);
    assert_eq!(b.get_session("s1-fork").await.unwrap(), None);
    b.fork_session(fork(5, None)).await.unwrap();
    let copied = b
        .get_messages("s1-fork", MessageRange::after(0, 100))
        .await
        .unwrap();
    let numbers: Vec<u64> = copied.iter().map(|m| m.sequence).collect();
    assert_eq!(numbers, vec![4, 5]);
    let compacted = copied[0].compacted.expect("the summary is copied");
    assert_eq!(
        (compacted.from, compacted.to, compacted.kept),
        (1, 4, false)
    );
    assert!(b
        .get_replaced_messages("s1-fork", 4)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.get_replaced_messages("s1", 4).await.unwrap().len(), 4);
}

/// A fork taken while others append holds exactly the messages up to its number.
pub async fn a_fork_during_appends_holds_exactly_its_prefix(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    let prefix = b
        .append_messages(
            "s1",
            (1..=30)
                .map(|n| NewMessage::new("user", json!(n)))
                .collect(),
        )
        .await
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    b.append_message("s1", NewMessage::new("user", json!(format!("late {i}"))))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let forked = {
        let b = ctx.backend.clone();
        tokio::spawn(async move { b.fork_session(fork(30, None)).await })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    forked.await.unwrap().unwrap();
    let copied = b
        .get_messages("s1-fork", MessageRange::after(0, 100))
        .await
        .unwrap();
    let contents: Vec<_> = copied.iter().map(|m| m.content.clone()).collect();
    let expected: Vec<_> = prefix.iter().map(|m| m.content.clone()).collect();
    assert_eq!(contents, expected);
    assert_eq!(
        b.get_conversation_history("s1", 100).await.unwrap().len(),
        70
    );
}

//! Retention: one policy (keep the last N, a maximum age) over messages, context versions,
//! checkpoints and artifact versions, trimming an oldest-first prefix of each series and
//! never its newest record (see `storage_core::retention`).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::json;
use storage_core::time::Timestamp;
use storage_core::{
    ArtifactMeta, ChannelVersions, CheckpointKey, ContextScope, ErrorKind, ExpectedVersion,
    Message, MessageRange, NewArtifact, NewMessage, Retention, StorageBackend, TaskContext,
};

use crate::data::{assert_kind, checkpoint, checkpoint_ids, cp_id, json_of, keep_last, versions};
use crate::TestContext;

fn created_before(at: Timestamp) -> Retention {
    Retention {
        created_before: Some(at),
        keep_last: None,
    }
}

fn days_ago(days: i64) -> Timestamp {
    storage_core::time::now() - chrono::Duration::days(days)
}

fn sequences(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|message| message.sequence).collect()
}

async fn all_messages(b: &Arc<dyn StorageBackend>, session: &str) -> Vec<Message> {
    b.get_messages(session, MessageRange::after(0, 10_000))
        .await
        .unwrap()
}

async fn append_n(b: &Arc<dyn StorageBackend>, session: &str, n: usize) {
    for i in 0..n {
        b.append_message(session, NewMessage::new("user", json!({"n": i})))
            .await
            .unwrap();
    }
}

fn old_message(session: &str, sequence: u64, created_at: Timestamp) -> Message {
    let mut message = NewMessage::new("user", json!({"imported": sequence}))
        .into_message(session, sequence, created_at);
    message.client_id = Some(format!("imported-{sequence}"));
    message
}

async fn context_versions(b: &Arc<dyn StorageBackend>, scope: &ContextScope) -> Vec<u64> {
    b.list_context_versions(scope.clone(), None, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|context| context.version)
        .collect()
}

async fn store_n(b: &Arc<dyn StorageBackend>, scope: &ContextScope, n: u64) {
    for step in 0..n {
        b.store_context(
            scope.clone(),
            json!({"step": step}),
            ExpectedVersion::Any,
            1_000,
        )
        .await
        .unwrap();
    }
}

/// Puts checkpoints `first..=last` of a chain in `namespace`; the channel `a` is written by
/// the first only (so survivors share its value), `b` by every one.
async fn put_chain(
    b: &Arc<dyn StorageBackend>,
    thread: &str,
    namespace: &str,
    numbers: std::ops::RangeInclusive<u32>,
    created_at: Option<Timestamp>,
) {
    let first = *numbers.start();
    for n in numbers {
        let b_version = format!("{n:04}");
        let mut cp = checkpoint(
            thread,
            namespace,
            &cp_id(n),
            &[("a", "0001", json!("shared")), ("b", &b_version, json!(n))],
        );
        cp.parent_id = (n > 1).then(|| cp_id(n - 1));
        if let Some(at) = created_at {
            cp.created_at = at.fixed_offset();
        }
        let new_versions: ChannelVersions = if n == first {
            versions(&[("a", "0001"), ("b", &b_version)])
        } else {
            versions(&[("b", &b_version)])
        };
        b.put_checkpoint(cp, new_versions).await.unwrap();
        b.put_writes(
            CheckpointKey::new(thread, cp_id(n)).in_namespace(namespace),
            "task",
            "",
            vec![("b".into(), json!(n).into())],
        )
        .await
        .unwrap();
    }
}

fn text(body: &str) -> NewArtifact {
    NewArtifact::new("text/plain", body.as_bytes().to_vec())
}

async fn artifact_versions(b: &Arc<dyn StorageBackend>, scope: &str, name: &str) -> Vec<u64> {
    b.list_artifact_versions(scope, name)
        .await
        .unwrap()
        .iter()
        .map(|meta| meta.version)
        .collect()
}

/// `keep_last` keeps the newest messages of every conversation with their numbers; the
/// next append continues the numbering, a removed message's client id is free again, and a
/// second sweep removes nothing.
pub async fn messages_keep_the_newest_with_their_numbers(ctx: TestContext) {
    let b = &ctx.backend;
    b.append_message("s1", NewMessage::new("user", "first").with_client_id("c-1"))
        .await
        .unwrap();
    append_n(b, "s1", 9).await;
    append_n(b, "s2", 3).await;
    append_n(b, "s3", 1).await;
    assert_eq!(b.retain_messages(keep_last(4)).await.unwrap(), 6);
    assert_eq!(sequences(&all_messages(b, "s1").await), vec![7, 8, 9, 10]);
    assert_eq!(sequences(&all_messages(b, "s2").await), vec![1, 2, 3]);
    assert_eq!(sequences(&all_messages(b, "s3").await), vec![1]);
    assert_eq!(b.retain_messages(keep_last(4)).await.unwrap(), 0);
    let again = b
        .append_message("s1", NewMessage::new("user", "again").with_client_id("c-1"))
        .await
        .unwrap();
    assert_eq!(again.sequence, 11, "numbers are not reused");
    assert_eq!(
        sequences(&b.get_conversation_history("s1", 2).await.unwrap()),
        vec![10, 11]
    );
    assert_eq!(b.retain_messages(keep_last(1)).await.unwrap(), 4 + 2);
    assert_eq!(sequences(&all_messages(b, "s1").await), vec![11]);
    assert_eq!(sequences(&all_messages(b, "s2").await), vec![3]);
}

/// A maximum age removes the old prefix of each conversation, never its newest message,
/// and stops at the first message young enough to stay.
pub async fn messages_older_than_the_cutoff_go(ctx: TestContext) {
    let b = &ctx.backend;
    let old = days_ago(10);
    let recent = days_ago(0);
    let imported: Vec<Message> = (1..=5).map(|n| old_message("s1", n, old)).collect();
    assert_eq!(b.import_messages("s1", imported).await.unwrap(), 5);
    append_n(b, "s1", 2).await;
    let all_old: Vec<Message> = (1..=3).map(|n| old_message("s2", n, old)).collect();
    b.import_messages("s2", all_old).await.unwrap();
    let out_of_order = vec![
        old_message("s3", 1, old),
        old_message("s3", 2, recent),
        old_message("s3", 3, old),
        old_message("s3", 4, recent),
    ];
    b.import_messages("s3", out_of_order).await.unwrap();
    let removed = b
        .retain_messages(created_before(days_ago(1)))
        .await
        .unwrap();
    assert_eq!(removed, 5 + 2 + 1);
    assert_eq!(sequences(&all_messages(b, "s1").await), vec![6, 7]);
    assert_eq!(sequences(&all_messages(b, "s2").await), vec![3]);
    assert_eq!(sequences(&all_messages(b, "s3").await), vec![2, 3, 4]);
    let both = Retention {
        created_before: Some(days_ago(1)),
        keep_last: Some(1),
    };
    assert_eq!(b.retain_messages(both).await.unwrap(), 1 + 2);
    assert_eq!(sequences(&all_messages(b, "s3").await), vec![4]);
}

/// A summary removed by retention takes the originals it kept, and counts once.
pub async fn a_removed_summary_takes_what_it_kept(ctx: TestContext) {
    let b = &ctx.backend;
    append_n(b, "s1", 6).await;
    let summary = b
        .compact_conversation("s1", 3, NewMessage::new("system", "summary"), true)
        .await
        .unwrap();
    assert_eq!(summary.sequence, 3);
    assert_eq!(b.get_replaced_messages("s1", 3).await.unwrap().len(), 3);
    // The series is the summary and 4, 5, 6.
    assert_eq!(b.retain_messages(keep_last(3)).await.unwrap(), 1);
    assert_eq!(sequences(&all_messages(b, "s1").await), vec![4, 5, 6]);
    assert!(b.get_replaced_messages("s1", 3).await.unwrap().is_empty());
    assert_eq!(
        b.append_message("s1", NewMessage::new("user", "next"))
            .await
            .unwrap()
            .sequence,
        7
    );
}

/// `keep_last` and a maximum age apply to every scope's versions, shared scopes too, and
/// never to the current version; the next store continues the numbering.
pub async fn context_versions_keep_the_newest(ctx: TestContext) {
    let b = &ctx.backend;
    let session = ContextScope::session("s1");
    let app = ContextScope::App;
    let user = ContextScope::user("u1");
    store_n(b, &session, 10).await;
    store_n(b, &app, 2).await;
    store_n(b, &user, 1).await;
    assert_eq!(b.retain_context_versions(keep_last(3)).await.unwrap(), 7);
    assert_eq!(context_versions(b, &session).await, vec![10, 9, 8]);
    assert_eq!(context_versions(b, &app).await, vec![2, 1]);
    assert_eq!(context_versions(b, &user).await, vec![1]);
    assert_eq!(b.get_context(session.clone(), Some(7)).await.unwrap(), None);
    assert_eq!(
        b.get_context(session.clone(), None)
            .await
            .unwrap()
            .unwrap()
            .value,
        json!({"step": 9})
    );
    assert_eq!(b.retain_context_versions(keep_last(3)).await.unwrap(), 0);
    let next = b
        .store_context(
            session.clone(),
            json!("next"),
            ExpectedVersion::Exactly(10),
            100,
        )
        .await
        .unwrap();
    assert_eq!(next.version, 11);
    assert_eq!(context_versions(b, &session).await, vec![11, 10, 9, 8]);

    // Age: imported versions carry their time.
    let old = days_ago(10);
    let scope = ContextScope::user("u2");
    for version in 1..=4 {
        let updated_at = if version == 3 { days_ago(0) } else { old };
        let context = TaskContext {
            scope: scope.clone(),
            value: json!({"v": version}),
            version,
            updated_at,
        };
        assert!(b.import_task_context(context).await.unwrap());
    }
    let all_old = ContextScope::user("u3");
    for version in 1..=2 {
        b.import_task_context(TaskContext {
            scope: all_old.clone(),
            value: json!(version),
            version,
            updated_at: old,
        })
        .await
        .unwrap();
    }
    assert_eq!(
        b.retain_context_versions(created_before(days_ago(1)))
            .await
            .unwrap(),
        2 + 1
    );
    assert_eq!(context_versions(b, &scope).await, vec![4, 3]);
    assert_eq!(context_versions(b, &all_old).await, vec![2]);
    assert_eq!(context_versions(b, &session).await, vec![11, 10, 9, 8]);
}

/// Context versions count by number, as a store's `keep_versions` does: `keep_last` keeps
/// the versions numbered above `current - keep_last`, so a number an import skipped takes a
/// place among the newest (and a sweep costs the same however many versions a scope holds).
pub async fn context_keep_last_counts_version_numbers(ctx: TestContext) {
    let b = &ctx.backend;
    let scope = ContextScope::user("u1");
    for version in [1, 2, 5, 6] {
        b.import_task_context(TaskContext {
            scope: scope.clone(),
            value: json!(version),
            version,
            updated_at: storage_core::time::now(),
        })
        .await
        .unwrap();
    }
    assert_eq!(b.retain_context_versions(keep_last(3)).await.unwrap(), 2);
    assert_eq!(context_versions(b, &scope).await, vec![6, 5]);
    assert_eq!(b.retain_context_versions(keep_last(3)).await.unwrap(), 0);
    assert_eq!(b.retain_context_versions(keep_last(1)).await.unwrap(), 1);
    assert_eq!(context_versions(b, &scope).await, vec![6]);
}

/// Checkpoint retention works per (thread, namespace): the newest checkpoints stay with
/// their pending writes and every value they use (also one written by a removed
/// checkpoint); removed checkpoints take their writes.
pub async fn checkpoints_keep_the_newest_per_namespace(ctx: TestContext) {
    let b = &ctx.backend;
    put_chain(b, "t1", "", 1..=5, None).await;
    put_chain(b, "t1", "sub", 1..=3, None).await;
    put_chain(b, "t2", "", 1..=1, None).await;
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 3 + 1);
    assert_eq!(checkpoint_ids(b, "t1", "").await, vec![cp_id(4), cp_id(5)]);
    assert_eq!(
        checkpoint_ids(b, "t1", "sub").await,
        vec![cp_id(2), cp_id(3)]
    );
    assert_eq!(checkpoint_ids(b, "t2", "").await, vec![cp_id(1)]);
    for (thread, namespace, n) in [("t1", "", 4), ("t1", "", 5), ("t1", "sub", 2)] {
        let tuple = b
            .get_checkpoint(thread, namespace, Some(&cp_id(n)))
            .await
            .unwrap()
            .unwrap();
        let values = &tuple.checkpoint.channel_values;
        assert_eq!(
            json_of(&values["a"]),
            json!("shared"),
            "{thread}/{namespace}/{n}"
        );
        assert_eq!(json_of(&values["b"]), json!(n));
        assert_eq!(tuple.pending_writes.len(), 1);
    }
    let removed = CheckpointKey::new("t1", cp_id(3));
    assert!(b.get_writes(removed).await.unwrap().is_empty());
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 0);

    // Age: the checkpoint's own time.
    put_chain(b, "t3", "", 1..=3, Some(days_ago(10))).await;
    put_chain(b, "t3", "", 4..=5, None).await;
    put_chain(b, "t4", "", 1..=2, Some(days_ago(10))).await;
    assert_eq!(
        b.retain_checkpoints(created_before(days_ago(1)))
            .await
            .unwrap(),
        3 + 1
    );
    assert_eq!(checkpoint_ids(b, "t3", "").await, vec![cp_id(4), cp_id(5)]);
    assert_eq!(checkpoint_ids(b, "t4", "").await, vec![cp_id(2)]);
    let latest = b.get_checkpoint("t3", "", None).await.unwrap().unwrap();
    assert_eq!(
        json_of(&latest.checkpoint.channel_values["a"]),
        json!("shared")
    );
}

/// Artifact retention keeps the newest versions of every name with their content; the
/// next save continues the numbering.
pub async fn artifact_versions_keep_the_newest(ctx: TestContext) {
    let b = &ctx.backend;
    for i in 0..5 {
        b.save_artifact("run1", "a", text(&format!("a{i}")))
            .await
            .unwrap();
    }
    b.save_artifact("run1", "b", text("b0")).await.unwrap();
    b.save_artifact("run2", "a", text("x0")).await.unwrap();
    b.save_artifact("run2", "a", text("x1")).await.unwrap();
    assert_eq!(b.retain_artifact_versions(keep_last(2)).await.unwrap(), 3);
    assert_eq!(artifact_versions(b, "run1", "a").await, vec![3, 4]);
    assert_eq!(artifact_versions(b, "run1", "b").await, vec![0]);
    assert_eq!(artifact_versions(b, "run2", "a").await, vec![0, 1]);
    assert_eq!(b.get_artifact("run1", "a", Some(2)).await.unwrap(), None);
    let kept = b.get_artifact("run1", "a", Some(3)).await.unwrap().unwrap();
    assert_eq!(kept.data, Bytes::from_static(b"a3"));
    assert_eq!(b.retain_artifact_versions(keep_last(2)).await.unwrap(), 0);
    let next = b.save_artifact("run1", "a", text("a5")).await.unwrap();
    assert_eq!(next.version, 5);

    // Age: imported versions carry their time.
    let old = days_ago(10);
    for (name, version) in [("c", 0), ("c", 1), ("c", 2), ("d", 0), ("d", 1)] {
        let data = Bytes::from(format!("old{version}"));
        let meta = ArtifactMeta {
            scope: "run3".into(),
            name: name.into(),
            version,
            content_type: "text/plain".into(),
            size: data.len() as u64,
            sha256: storage_core::artifact::sha256_hex(&data),
            metadata: Default::default(),
            created_at: old,
        };
        assert!(b
            .import_artifact(storage_core::Artifact { meta, data })
            .await
            .unwrap());
    }
    b.save_artifact("run3", "c", text("new")).await.unwrap();
    assert_eq!(
        b.retain_artifact_versions(created_before(days_ago(1)))
            .await
            .unwrap(),
        3 + 1
    );
    assert_eq!(artifact_versions(b, "run3", "c").await, vec![3]);
    assert_eq!(artifact_versions(b, "run3", "d").await, vec![1]);
    assert_eq!(artifact_versions(b, "run1", "a").await, vec![3, 4, 5]);
}

/// `keep_last` of 0 is refused by every sweep and changes nothing; a retention without
/// limits removes nothing.
pub async fn keep_last_zero_is_refused_and_no_limit_removes_nothing(ctx: TestContext) {
    let b = &ctx.backend;
    append_n(b, "s1", 3).await;
    store_n(b, &ContextScope::session("s1"), 3).await;
    put_chain(b, "t1", "", 1..=3, None).await;
    for i in 0..3 {
        b.save_artifact("run1", "a", text(&format!("a{i}")))
            .await
            .unwrap();
    }
    for retention in [keep_last(0), Retention::default()] {
        let refused = retention.keep_last == Some(0);
        let outcomes = [
            b.retain_messages(retention).await,
            b.retain_context_versions(retention).await,
            b.retain_checkpoints(retention).await,
            b.retain_artifact_versions(retention).await,
        ];
        for outcome in outcomes {
            if refused {
                assert_kind(outcome, ErrorKind::InvalidInput);
            } else {
                assert_eq!(outcome.unwrap(), 0);
            }
        }
    }
    assert_eq!(all_messages(b, "s1").await.len(), 3);
    assert_eq!(
        context_versions(b, &ContextScope::session("s1"))
            .await
            .len(),
        3
    );
    assert_eq!(checkpoint_ids(b, "t1", "").await.len(), 3);
    assert_eq!(artifact_versions(b, "run1", "a").await, vec![0, 1, 2]);
}

/// A sweep removes only from its own namespace.
pub async fn retention_stays_in_its_namespace(ctx: TestContext) {
    let other = ctx.other_namespace().await;
    for backend in [&ctx.backend, &other] {
        append_n(backend, "s1", 3).await;
        store_n(backend, &ContextScope::App, 3).await;
    }
    assert_eq!(other.retain_messages(keep_last(1)).await.unwrap(), 2);
    assert_eq!(
        other.retain_context_versions(keep_last(1)).await.unwrap(),
        2
    );
    assert_eq!(all_messages(&ctx.backend, "s1").await.len(), 3);
    assert_eq!(
        context_versions(&ctx.backend, &ContextScope::App)
            .await
            .len(),
        3
    );
}

/// One racing write: the writer's index and the write's index give the number stored.
type RacingWrite = Arc<dyn Fn(usize, usize) -> BoxFuture<'static, u64> + Send + Sync>;

/// Runs `writers` tasks making `per_writer` writes each beside a task sweeping 8 times,
/// while the caller reads the series 8 times through `read`, which must always see a
/// contiguous run of numbers (no hole). Returns every number the writes got, sorted.
async fn race_writes_and_sweeps(
    writers: usize,
    per_writer: usize,
    write: RacingWrite,
    sweep: impl Fn() -> BoxFuture<'static, ()> + Send + 'static,
    read: impl Fn() -> BoxFuture<'static, Vec<u64>>,
) -> Vec<u64> {
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let write = write.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..per_writer {
                    got.push(write(writer, i).await);
                }
                got
            })
        })
        .collect();
    let sweeper = tokio::spawn(async move {
        for _ in 0..8 {
            sweep().await;
            tokio::task::yield_now().await;
        }
    });
    for _ in 0..8 {
        let seen = read().await;
        assert!(
            seen.windows(2).all(|pair| pair[0].abs_diff(pair[1]) == 1),
            "a read during the race has a hole: {seen:?}"
        );
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    sweeper.await.unwrap();
    all.sort_unstable();
    all
}

/// A version store racing retention: two writers store 12 versions each while sweeps keep
/// the newest 3. Every store gets its own version, every listing during the race is a
/// contiguous run ending at a current version, and after a last sweep exactly the
/// newest 3 remain.
pub async fn a_version_store_racing_retention_is_exact(ctx: TestContext) {
    let b = ctx.backend.clone();
    let scope = ContextScope::session("s1");
    let store: RacingWrite = {
        let (b, scope) = (b.clone(), scope.clone());
        Arc::new(move |_, step| {
            let (b, scope) = (b.clone(), scope.clone());
            Box::pin(async move {
                b.store_context(scope, json!(step), ExpectedVersion::Any, 1_000)
                    .await
                    .unwrap()
                    .version
            })
        })
    };
    let sweeper = b.clone();
    let reader = (b.clone(), scope.clone());
    let all = race_writes_and_sweeps(
        2,
        12,
        store,
        move || {
            let b = sweeper.clone();
            Box::pin(async move {
                b.retain_context_versions(keep_last(3)).await.unwrap();
            })
        },
        move || {
            let (b, scope) = reader.clone();
            Box::pin(async move { context_versions(&b, &scope).await })
        },
    )
    .await;
    assert_eq!(all, (1..=24).collect::<Vec<u64>>());
    b.retain_context_versions(keep_last(3)).await.unwrap();
    assert_eq!(context_versions(&b, &scope).await, vec![24, 23, 22]);
    assert_eq!(
        b.get_context(scope, None).await.unwrap().unwrap().version,
        24
    );
}

/// Appends racing retention: four writers append 10 messages each while sweeps keep the
/// newest 5. Every append keeps its own number, every read is contiguous, and after a last
/// sweep exactly the newest 5 remain.
pub async fn appends_racing_retention_keep_their_numbers(ctx: TestContext) {
    let b = ctx.backend.clone();
    let append: RacingWrite = {
        let b = b.clone();
        Arc::new(move |writer, i| {
            let b = b.clone();
            Box::pin(async move {
                let message =
                    NewMessage::new("user", json!(i)).with_client_id(format!("w{writer}-{i}"));
                b.append_message("s1", message).await.unwrap().sequence
            })
        })
    };
    let (sweeper, reader) = (b.clone(), b.clone());
    let all = race_writes_and_sweeps(
        4,
        10,
        append,
        move || {
            let b = sweeper.clone();
            Box::pin(async move {
                b.retain_messages(keep_last(5)).await.unwrap();
            })
        },
        move || {
            let b = reader.clone();
            Box::pin(async move { sequences(&all_messages(&b, "s1").await) })
        },
    )
    .await;
    assert_eq!(all, (1..=40).collect::<Vec<u64>>());
    b.retain_messages(keep_last(5)).await.unwrap();
    assert_eq!(
        sequences(&all_messages(&b, "s1").await),
        vec![36, 37, 38, 39, 40]
    );
}

/// Checkpoint puts and artifact saves racing retention: sweeps keeping the newest 2 never
/// take the latest checkpoint's values or the latest artifact's content, and after a last
/// sweep exactly the newest 2 of each remain.
pub async fn puts_and_saves_racing_retention_keep_the_latest(ctx: TestContext) {
    let b = ctx.backend.clone();
    let putter = {
        let b = b.clone();
        tokio::spawn(async move {
            put_chain(&b, "t1", "", 1..=12, None).await;
        })
    };
    let saver = {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..12 {
                b.save_artifact("run1", "a", text(&format!("a{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let sweeper = {
        let b = b.clone();
        tokio::spawn(async move {
            for _ in 0..8 {
                b.retain_checkpoints(keep_last(2)).await.unwrap();
                b.retain_artifact_versions(keep_last(2)).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..8 {
        if let Some(latest) = b.get_checkpoint("t1", "", None).await.unwrap() {
            assert_eq!(
                json_of(&latest.checkpoint.channel_values["a"]),
                json!("shared"),
                "the latest checkpoint lost a value"
            );
        }
        if let Some(latest) = b.get_artifact("run1", "a", None).await.unwrap() {
            assert_eq!(
                latest.data,
                Bytes::from(format!("a{}", latest.meta.version))
            );
        }
    }
    putter.await.unwrap();
    saver.await.unwrap();
    sweeper.await.unwrap();
    b.retain_checkpoints(keep_last(2)).await.unwrap();
    b.retain_artifact_versions(keep_last(2)).await.unwrap();
    assert_eq!(
        checkpoint_ids(&b, "t1", "").await,
        vec![cp_id(11), cp_id(12)]
    );
    let latest = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(json_of(&latest.checkpoint.channel_values["b"]), json!(12));
    assert_eq!(artifact_versions(&b, "run1", "a").await, vec![10, 11]);
}

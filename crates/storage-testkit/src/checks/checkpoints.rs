//! Checkpoints: LangGraph's checkpointer contract.

use serde_json::json;
use storage_core::checkpoint::{ERROR_CHANNEL, INTERRUPT_CHANNEL, RESUME_CHANNEL};
use storage_core::{CheckpointKey, CheckpointQuery, ErrorKind, PendingWrite};

use crate::data::{assert_kind, checkpoint, cp_id, json_of, obj, versions};
use crate::TestContext;

async fn put_simple(ctx: &TestContext, thread: &str, ns: &str, n: u32) {
    let cp = checkpoint(thread, ns, &cp_id(n), &[("step", &n.to_string(), json!(n))]);
    let new = cp.all_versions();
    ctx.backend.put_checkpoint(cp, new).await.unwrap();
}

async fn listed(ctx: &TestContext, query: CheckpointQuery) -> Vec<String> {
    let tuples = ctx.backend.list_checkpoints(query).await.unwrap();
    tuples.into_iter().map(|t| t.checkpoint.id).collect()
}

fn ids(ns: &[u32]) -> Vec<String> {
    ns.iter().map(|n| cp_id(*n)).collect()
}

/// A stored checkpoint reads back by id with every field.
pub async fn put_then_get_by_id(ctx: TestContext) {
    let mut cp = checkpoint(
        "t1",
        "",
        "cp-1",
        &[("messages", "1", json!(["hi"])), ("count", "1", json!(3))],
    );
    cp.parent_id = Some("cp-0".into());
    cp.metadata = obj(json!({"source": "loop", "step": 1, "writes": {"node": {"x": 1}}}));
    cp.versions_seen
        .insert("node".into(), versions(&[("messages", "1")]));
    let new = cp.all_versions();
    ctx.backend.put_checkpoint(cp.clone(), new).await.unwrap();
    let tuple = ctx
        .backend
        .get_checkpoint("t1", "", Some("cp-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tuple.checkpoint, cp);
    assert!(tuple.pending_writes.is_empty());
}

/// Without an id, get returns the greatest id, whatever order they were stored in.
pub async fn latest_is_greatest_id(ctx: TestContext) {
    for n in [2, 5, 1, 4, 3] {
        put_simple(&ctx, "t1", "", n).await;
    }
    let latest = ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.checkpoint.id, cp_id(5));
    assert_eq!(latest.checkpoint.channel_values["step"], json!(5).into());
}

/// An unknown explicit id is `None`, never the latest; an empty thread has no latest.
pub async fn unknown_id_is_none_not_latest(ctx: TestContext) {
    put_simple(&ctx, "t1", "", 1).await;
    let b = &ctx.backend;
    assert_eq!(
        b.get_checkpoint("t1", "", Some("cp-999999")).await.unwrap(),
        None
    );
    assert_eq!(
        b.get_checkpoint("t1", "other-ns", Some(&cp_id(1)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.get_checkpoint("empty-thread", "", None).await.unwrap(),
        None
    );
}

/// Namespaces of one thread are separate chains, each with its own latest.
pub async fn namespaces_are_separate_chains(ctx: TestContext) {
    put_simple(&ctx, "t1", "", 1).await;
    put_simple(&ctx, "t1", "", 3).await;
    put_simple(&ctx, "t1", "child:abc", 2).await;
    let b = &ctx.backend;
    assert_eq!(
        b.get_checkpoint("t1", "", None)
            .await
            .unwrap()
            .unwrap()
            .checkpoint
            .id,
        cp_id(3)
    );
    let child = b
        .get_checkpoint("t1", "child:abc", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (child.checkpoint.id, child.checkpoint.namespace),
        (cp_id(2), "child:abc".to_string())
    );
    assert_eq!(
        listed(&ctx, CheckpointQuery::thread("t1")).await,
        ids(&[3, 1])
    );
}

/// Listing is newest first; `before` keeps strictly older ids; `limit` cuts after that.
pub async fn list_order_before_and_limit(ctx: TestContext) {
    for n in [3, 1, 5, 2, 4] {
        put_simple(&ctx, "t1", "", n).await;
    }
    assert_eq!(
        listed(&ctx, CheckpointQuery::thread("t1")).await,
        ids(&[5, 4, 3, 2, 1])
    );
    let before = CheckpointQuery {
        before: Some(cp_id(4)),
        ..CheckpointQuery::thread("t1")
    };
    assert_eq!(listed(&ctx, before.clone()).await, ids(&[3, 2, 1]));
    let limited = CheckpointQuery {
        limit: Some(2),
        ..before
    };
    assert_eq!(listed(&ctx, limited).await, ids(&[3, 2]));
    let top = CheckpointQuery {
        limit: Some(1),
        ..CheckpointQuery::thread("t1")
    };
    assert_eq!(listed(&ctx, top).await, ids(&[5]));
    assert!(listed(&ctx, CheckpointQuery::thread("no-thread"))
        .await
        .is_empty());
}

/// Listing returns whole tuples: channel values and pending writes of each checkpoint.
pub async fn list_returns_values_and_writes(ctx: TestContext) {
    put_simple(&ctx, "t1", "", 1).await;
    put_simple(&ctx, "t1", "", 2).await;
    let key = CheckpointKey::new("t1", cp_id(1));
    ctx.backend
        .put_writes(key, "task", "", vec![("ch".into(), json!("w").into())])
        .await
        .unwrap();
    let tuples = ctx
        .backend
        .list_checkpoints(CheckpointQuery::thread("t1"))
        .await
        .unwrap();
    assert_eq!(tuples[0].checkpoint.channel_values["step"], json!(2).into());
    assert!(tuples[0].pending_writes.is_empty());
    assert_eq!(tuples[1].checkpoint.channel_values["step"], json!(1).into());
    assert_eq!(tuples[1].pending_writes.len(), 1);
}

/// The metadata filter is exact, type-strict and AND-ed over top-level keys.
pub async fn list_filter_is_exact_and_type_strict(ctx: TestContext) {
    let metas = [
        json!({"source": "loop", "step": 1, "run_id": "r1"}),
        json!({"source": "input", "step": 1, "run_id": "r1"}),
        json!({"source": "loop", "step": "1", "run_id": "r2"}),
        json!({"source": "loop", "step": 2, "tags": ["a", "b"]}),
    ];
    for (n, meta) in metas.iter().enumerate() {
        let mut cp = checkpoint("t1", "", &cp_id(n as u32), &[]);
        cp.metadata = obj(meta.clone());
        ctx.backend
            .put_checkpoint(cp, Default::default())
            .await
            .unwrap();
    }
    let filter = |f: serde_json::Value| CheckpointQuery {
        filter: obj(f),
        ..CheckpointQuery::thread("t1")
    };
    assert_eq!(
        listed(&ctx, filter(json!({"source": "loop"}))).await,
        ids(&[3, 2, 0])
    );
    assert_eq!(
        listed(&ctx, filter(json!({"source": "loop", "step": 1}))).await,
        ids(&[0])
    );
    assert_eq!(listed(&ctx, filter(json!({"step": "1"}))).await, ids(&[2]));
    assert_eq!(
        listed(&ctx, filter(json!({"run_id": "r1"}))).await,
        ids(&[1, 0])
    );
    assert!(
        listed(&ctx, filter(json!({"tags": ["a"]})))
            .await
            .is_empty(),
        "no containment"
    );
    assert_eq!(
        listed(&ctx, filter(json!({"tags": ["a", "b"]}))).await,
        ids(&[3])
    );
    assert!(listed(&ctx, filter(json!({"missing": "x"})))
        .await
        .is_empty());
}

/// Without a namespace, listing covers every namespace of the thread, newest first.
pub async fn list_without_namespace_covers_all(ctx: TestContext) {
    put_simple(&ctx, "t1", "", 1).await;
    put_simple(&ctx, "t1", "sub", 2).await;
    put_simple(&ctx, "t1", "", 3).await;
    put_simple(&ctx, "t2", "", 4).await;
    let all = CheckpointQuery {
        namespace: None,
        ..CheckpointQuery::thread("t1")
    };
    let tuples = ctx.backend.list_checkpoints(all).await.unwrap();
    let got: Vec<(String, String)> = tuples
        .into_iter()
        .map(|t| (t.checkpoint.namespace, t.checkpoint.id))
        .collect();
    assert_eq!(
        got,
        [
            ("".into(), cp_id(3)),
            ("sub".into(), cp_id(2)),
            ("".into(), cp_id(1))
        ]
    );
}

/// Across namespaces, listing merges them newest first with equal ids in namespace order,
/// and `before`, the metadata filter and `limit` apply to the merged order, not to each
/// namespace: the page is the newest matching checkpoints of the whole thread.
pub async fn list_across_namespaces_merges_before_filter_and_limit(ctx: TestContext) {
    // (namespace, id, kept by the filter)
    let stored = [
        ("b", 1, true),
        ("", 2, true),
        ("a", 2, true),
        ("b", 2, false),
        ("a", 3, false),
        ("", 4, true),
        ("b", 4, true),
        ("a", 5, true),
        ("", 6, false),
        ("b", 7, true),
    ];
    for (ns, n, kept) in stored {
        let mut cp = checkpoint("t1", ns, &cp_id(n), &[("step", &n.to_string(), json!(n))]);
        cp.metadata = obj(json!({"source": if kept { "loop" } else { "input" }}));
        let new = cp.all_versions();
        ctx.backend.put_checkpoint(cp, new).await.unwrap();
    }
    let page = |before: Option<u32>, limit: Option<usize>| CheckpointQuery {
        namespace: None,
        before: before.map(cp_id),
        limit,
        filter: obj(json!({"source": "loop"})),
        ..CheckpointQuery::thread("t1")
    };
    let listed_with_ns = |query: CheckpointQuery| async {
        let tuples = ctx.backend.list_checkpoints(query).await.unwrap();
        tuples
            .into_iter()
            .map(|t| {
                assert_eq!(
                    t.checkpoint.channel_values["step"],
                    json!(cp_number(&t.checkpoint.id)).into(),
                    "each listed checkpoint carries its own values"
                );
                (t.checkpoint.namespace, cp_number(&t.checkpoint.id))
            })
            .collect::<Vec<_>>()
    };
    let all: Vec<(String, u32)> = [
        ("b", 7),
        ("a", 5),
        ("", 4),
        ("b", 4),
        ("", 2),
        ("a", 2),
        ("b", 1),
    ]
    .into_iter()
    .map(|(ns, n)| (ns.to_owned(), n))
    .collect();
    assert_eq!(listed_with_ns(page(None, None)).await, all);
    assert_eq!(listed_with_ns(page(None, Some(3))).await, all[..3]);
    assert_eq!(listed_with_ns(page(Some(5), Some(3))).await, all[2..5]);
    assert_eq!(listed_with_ns(page(Some(4), Some(2))).await, all[4..6]);
    assert_eq!(listed_with_ns(page(Some(2), None)).await, all[6..]);
}

/// The number `n` of an id made by [`cp_id`].
fn cp_number(id: &str) -> u32 {
    id.strip_prefix("cp-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{id:?} is not a test checkpoint id"))
}

/// A checkpoint that changes one of ten channels stores one value; reading it resolves
/// the other nine from the values stored with earlier checkpoints.
pub async fn unchanged_channels_are_not_rewritten(ctx: TestContext) {
    let channels: Vec<(String, serde_json::Value)> = (0..10)
        .map(|i| (format!("ch{i}"), json!({"v": i})))
        .collect();
    let mut first = checkpoint("t1", "", &cp_id(1), &[]);
    for (name, value) in &channels {
        first.channel_versions.insert(name.clone(), "1".into());
        first
            .channel_values
            .insert(name.clone(), value.clone().into());
    }
    let new = first.all_versions();
    ctx.backend
        .put_checkpoint(first.clone(), new)
        .await
        .unwrap();
    let mut second = first.clone();
    second.id = cp_id(2);
    second.parent_id = Some(cp_id(1));
    second.channel_versions.insert("ch3".into(), "2".into());
    // Only the changed channel's value is handed over, as LangGraph does.
    second.channel_values = [("ch3".to_string(), json!("changed").into())].into();
    ctx.backend
        .put_checkpoint(second, versions(&[("ch3", "2")]))
        .await
        .unwrap();
    let read = ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap()
        .checkpoint;
    assert_eq!(read.channel_values.len(), 10);
    assert_eq!(read.channel_values["ch3"], json!("changed").into());
    assert_eq!(read.channel_values["ch7"], json!({"v": 7}).into());
    let old = ctx
        .backend
        .get_checkpoint("t1", "", Some(&cp_id(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.checkpoint.channel_values["ch3"], json!({"v": 3}).into());
}

/// A channel not in `channel_versions` is absent on read, and so is a channel whose new
/// version carries no value (an empty channel).
pub async fn channels_without_values_are_absent(ctx: TestContext) {
    let mut cp = checkpoint("t1", "", &cp_id(1), &[("a", "1", json!(1))]);
    cp.channel_versions.insert("empty".into(), "1".into());
    cp.channel_values
        .insert("unversioned".into(), json!("ignored").into());
    let new = versions(&[("a", "1"), ("empty", "1")]);
    ctx.backend.put_checkpoint(cp, new).await.unwrap();
    let read = ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap()
        .checkpoint;
    assert_eq!(
        read.channel_values,
        [("a".to_string(), json!(1).into())].into()
    );
    assert_eq!(
        read.channel_versions,
        versions(&[("a", "1"), ("empty", "1")])
    );
}

/// Storing an id again replaces its record (metadata, parent) but never a stored value of
/// a (channel, version).
pub async fn put_again_replaces_record_not_values(ctx: TestContext) {
    let mut cp = checkpoint("t1", "", &cp_id(1), &[("a", "1", json!("first"))]);
    cp.metadata = obj(json!({"attempt": 1}));
    let new = cp.all_versions();
    ctx.backend
        .put_checkpoint(cp.clone(), new.clone())
        .await
        .unwrap();
    cp.metadata = obj(json!({"attempt": 2}));
    cp.channel_values.insert("a".into(), json!("second").into());
    ctx.backend.put_checkpoint(cp, new).await.unwrap();
    let read = ctx
        .backend
        .get_checkpoint("t1", "", Some(&cp_id(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.checkpoint.metadata, obj(json!({"attempt": 2})));
    assert_eq!(read.checkpoint.channel_values["a"], json!("first").into());
    assert_eq!(listed(&ctx, CheckpointQuery::thread("t1")).await.len(), 1);
}

/// The parent is the id the caller names, even one that is not stored.
pub async fn parent_is_what_the_caller_names(ctx: TestContext) {
    let mut cp = checkpoint("t1", "", &cp_id(2), &[]);
    cp.parent_id = Some("never-stored".into());
    ctx.backend
        .put_checkpoint(cp, Default::default())
        .await
        .unwrap();
    let read = ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.checkpoint.parent_id.as_deref(), Some("never-stored"));
}

/// New versions that disagree with the checkpoint are `InvalidInput`, storing nothing.
pub async fn inconsistent_new_versions_store_nothing(ctx: TestContext) {
    let cp = checkpoint("t1", "", &cp_id(1), &[("a", "2", json!(1))]);
    let stale = versions(&[("a", "1")]);
    assert_kind(
        ctx.backend.put_checkpoint(cp.clone(), stale).await,
        ErrorKind::InvalidInput,
    );
    let unknown = versions(&[("b", "1")]);
    assert_kind(
        ctx.backend.put_checkpoint(cp, unknown).await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        ctx.backend.get_checkpoint("t1", "", None).await.unwrap(),
        None
    );
}

/// Normal writes: the first value at a (task, index) wins.
pub async fn normal_writes_first_writer_wins(ctx: TestContext) {
    let key = CheckpointKey::new("t1", cp_id(1));
    let b = &ctx.backend;
    b.put_writes(
        key.clone(),
        "task1",
        "",
        vec![("a".into(), json!(1).into()), ("b".into(), json!(2).into())],
    )
    .await
    .unwrap();
    b.put_writes(
        key.clone(),
        "task1",
        "",
        vec![
            ("a".into(), json!(10).into()),
            ("b".into(), json!(20).into()),
            ("c".into(), json!(30).into()),
        ],
    )
    .await
    .unwrap();
    let writes = b.get_writes(key).await.unwrap();
    let got: Vec<(i64, &str, serde_json::Value)> = writes
        .iter()
        .map(|w| (w.index, w.channel.as_str(), json_of(&w.value)))
        .collect();
    assert_eq!(
        got,
        [(0, "a", json!(1)), (1, "b", json!(2)), (2, "c", json!(30))]
    );
}

/// Special channels take fixed negative indexes and the last value wins, decided per
/// write even within a call that also holds normal writes.
pub async fn special_writes_last_writer_wins(ctx: TestContext) {
    let key = CheckpointKey::new("t1", cp_id(1));
    let b = &ctx.backend;
    b.put_writes(
        key.clone(),
        "task1",
        "",
        vec![
            ("a".into(), json!(1).into()),
            (ERROR_CHANNEL.into(), json!("e1").into()),
        ],
    )
    .await
    .unwrap();
    b.put_writes(
        key.clone(),
        "task1",
        "",
        vec![
            ("a".into(), json!(2).into()),
            (ERROR_CHANNEL.into(), json!("e2").into()),
            (INTERRUPT_CHANNEL.into(), json!("i").into()),
        ],
    )
    .await
    .unwrap();
    b.put_writes(
        key.clone(),
        "task1",
        "",
        vec![(RESUME_CHANNEL.into(), json!("r").into())],
    )
    .await
    .unwrap();
    let writes = b.get_writes(key).await.unwrap();
    let got: Vec<(i64, &str, serde_json::Value)> = writes
        .iter()
        .map(|w| (w.index, w.channel.as_str(), json_of(&w.value)))
        .collect();
    assert_eq!(
        got,
        [
            (-4, RESUME_CHANNEL, json!("r")),
            (-3, INTERRUPT_CHANNEL, json!("i")),
            (-1, ERROR_CHANNEL, json!("e2")),
            (0, "a", json!(1))
        ]
    );
}

/// Writes come back ordered by (task path, task id, index), whatever order they came in.
pub async fn writes_are_ordered_by_path_task_index(ctx: TestContext) {
    let key = CheckpointKey::new("t1", cp_id(1)).in_namespace("ns");
    let b = &ctx.backend;
    let two = || {
        vec![
            ("x".to_string(), json!(0).into()),
            ("y".to_string(), json!(1).into()),
        ]
    };
    b.put_writes(key.clone(), "task-b", "path-1", two())
        .await
        .unwrap();
    b.put_writes(key.clone(), "task-z", "path-0", two())
        .await
        .unwrap();
    b.put_writes(key.clone(), "task-a", "path-1", two())
        .await
        .unwrap();
    let writes = b.get_writes(key).await.unwrap();
    let got: Vec<(&str, &str, i64)> = writes
        .iter()
        .map(|w| (w.task_path.as_str(), w.task_id.as_str(), w.index))
        .collect();
    assert_eq!(
        got,
        [
            ("path-0", "task-z", 0),
            ("path-0", "task-z", 1),
            ("path-1", "task-a", 0),
            ("path-1", "task-a", 1),
            ("path-1", "task-b", 0),
            ("path-1", "task-b", 1)
        ]
    );
}

/// Writes may arrive before their checkpoint is stored; they belong to its id, and a newer
/// checkpoint starts with none.
pub async fn writes_belong_to_their_checkpoint_id(ctx: TestContext) {
    let b = &ctx.backend;
    let key = CheckpointKey::new("t1", cp_id(1));
    b.put_writes(
        key.clone(),
        "task",
        "",
        vec![("a".into(), json!("early").into())],
    )
    .await
    .unwrap();
    assert_eq!(b.get_writes(key.clone()).await.unwrap().len(), 1);
    put_simple(&ctx, "t1", "", 1).await;
    let tuple = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    let expected = PendingWrite {
        task_id: "task".into(),
        task_path: String::new(),
        index: 0,
        channel: "a".into(),
        value: json!("early").into(),
    };
    assert_eq!(tuple.pending_writes, vec![expected]);
    put_simple(&ctx, "t1", "", 2).await;
    assert!(b
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap()
        .pending_writes
        .is_empty());
    assert!(b
        .get_writes(CheckpointKey::new("t1", cp_id(1)).in_namespace("other"))
        .await
        .unwrap()
        .is_empty());
}

/// Concurrent puts of distinct checkpoints all become visible, each whole.
pub async fn concurrent_puts_are_all_visible(ctx: TestContext) {
    let tasks: Vec<_> = (0..32u32)
        .map(|n| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                let cp = checkpoint(
                    "t1",
                    "",
                    &cp_id(n),
                    &[
                        ("a", &n.to_string(), json!(n)),
                        ("b", &n.to_string(), json!([n])),
                    ],
                );
                let new = cp.all_versions();
                b.put_checkpoint(cp, new).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let tuples = ctx
        .backend
        .list_checkpoints(CheckpointQuery::thread("t1"))
        .await
        .unwrap();
    assert_eq!(tuples.len(), 32);
    for tuple in tuples {
        let n: u32 = tuple.checkpoint.id[3..].parse().unwrap();
        assert_eq!(tuple.checkpoint.channel_values["a"], json!(n).into());
        assert_eq!(tuple.checkpoint.channel_values["b"], json!([n]).into());
    }
}

/// A batch of puts across threads stores each as `put_checkpoint` would, in the caller's
/// order within a thread whatever the ids: a repeated id ends as its last put, and a
/// (channel, version) keeps the value of the first put that carries it.
pub async fn batch_put_stores_each_in_order(ctx: TestContext) {
    let b = &ctx.backend;
    let first = checkpoint("t1", "", &cp_id(1), &[("a", "1", json!("first"))]);
    let mut again = checkpoint("t1", "", &cp_id(1), &[("a", "1", json!("ignored"))]);
    again.metadata = obj(json!({"step": 2}));
    let other = checkpoint("t2", "sub", &cp_id(7), &[("b", "3", json!([3]))]);
    let next = checkpoint("t1", "", &cp_id(2), &[("a", "2", json!("second"))]);
    // The greater id first: its value of (c, 1) is the one stored.
    let later_id = checkpoint("t1", "", &cp_id(9), &[("c", "1", json!("kept"))]);
    let earlier_id = checkpoint("t1", "", &cp_id(8), &[("c", "1", json!("dropped"))]);
    let puts = [first, other, again, next, later_id, earlier_id]
        .into_iter()
        .map(|cp| {
            let new = cp.all_versions();
            (cp, new)
        })
        .collect();
    b.put_checkpoints(puts).await.unwrap();
    let one = b
        .get_checkpoint("t1", "", Some(&cp_id(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.checkpoint.metadata, obj(json!({"step": 2})));
    assert_eq!(one.checkpoint.channel_values["a"], json!("first").into());
    let eight = b
        .get_checkpoint("t1", "", Some(&cp_id(8)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(eight.checkpoint.channel_values["c"], json!("kept").into());
    assert_eq!(
        listed(&ctx, CheckpointQuery::thread("t1")).await,
        ids(&[9, 8, 2, 1])
    );
    let seven = b.get_checkpoint("t2", "sub", None).await.unwrap().unwrap();
    assert_eq!(seven.checkpoint.id, cp_id(7));
    assert_eq!(seven.checkpoint.channel_values["b"], json!([3]).into());
    b.put_checkpoints(Vec::new()).await.unwrap();
}

/// One bad put fails the whole batch with `InvalidInput` naming its position, before
/// anything in the batch is stored.
pub async fn batch_put_with_a_bad_item_stores_nothing(ctx: TestContext) {
    let good = checkpoint("t1", "", &cp_id(1), &[("a", "1", json!(1))]);
    let bad = checkpoint("t2", "", &cp_id(2), &[("a", "1", json!(1))]);
    let bad_versions = versions(&[("a", "9")]);
    let good_versions = good.all_versions();
    let result = ctx
        .backend
        .put_checkpoints(vec![(good, good_versions), (bad, bad_versions)])
        .await;
    let message = assert_kind(result, ErrorKind::InvalidInput);
    assert!(message.contains("checkpoint 1 of the batch"), "{message}");
    for thread in ["t1", "t2"] {
        assert!(ctx
            .backend
            .get_checkpoint(thread, "", None)
            .await
            .unwrap()
            .is_none());
    }
}

/// Deleting a thread removes every namespace's checkpoints and writes, and no other thread.
pub async fn delete_thread_removes_every_namespace(ctx: TestContext) {
    let b = &ctx.backend;
    put_simple(&ctx, "t1", "", 1).await;
    put_simple(&ctx, "t1", "sub", 2).await;
    put_simple(&ctx, "t2", "", 3).await;
    b.put_writes(
        CheckpointKey::new("t1", cp_id(1)),
        "task",
        "",
        vec![("a".into(), json!(1).into())],
    )
    .await
    .unwrap();
    assert_eq!(b.delete_thread("t1").await.unwrap(), 2);
    assert_eq!(b.get_checkpoint("t1", "", None).await.unwrap(), None);
    assert_eq!(b.get_checkpoint("t1", "sub", None).await.unwrap(), None);
    assert!(b
        .get_writes(CheckpointKey::new("t1", cp_id(1)))
        .await
        .unwrap()
        .is_empty());
    assert!(b.get_checkpoint("t2", "", None).await.unwrap().is_some());
    assert_eq!(b.delete_thread("t1").await.unwrap(), 0);
    put_simple(&ctx, "t1", "", 9).await;
    let fresh = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(
        fresh.checkpoint.channel_values["step"],
        json!(9).into(),
        "no stale value survives"
    );
}

/// Pruning keeps the newest N per namespace, drops the others' writes, and keeps every
/// value a survivor still uses.
pub async fn prune_keeps_newest_and_shared_values(ctx: TestContext) {
    let b = &ctx.backend;
    // ch "shared" is written once by checkpoint 1 and used by every later checkpoint.
    for n in 1..=5u32 {
        let mut cp = checkpoint("t1", "", &cp_id(n), &[("step", &n.to_string(), json!(n))]);
        cp.channel_versions.insert("shared".into(), "1".into());
        cp.channel_values
            .insert("shared".into(), json!("from-1").into());
        let new = if n == 1 {
            cp.all_versions()
        } else {
            versions(&[("step", &n.to_string())])
        };
        b.put_checkpoint(cp, new).await.unwrap();
        b.put_writes(
            CheckpointKey::new("t1", cp_id(n)),
            "task",
            "",
            vec![("w".into(), json!(n).into())],
        )
        .await
        .unwrap();
    }
    for n in 11..=13 {
        put_simple(&ctx, "t1", "sub", n).await;
    }
    assert_eq!(b.prune_checkpoints("t1", 2).await.unwrap(), 3 + 1);
    assert_eq!(
        listed(&ctx, CheckpointQuery::thread("t1")).await,
        ids(&[5, 4])
    );
    let sub = CheckpointQuery {
        namespace: Some("sub".into()),
        ..CheckpointQuery::thread("t1")
    };
    assert_eq!(listed(&ctx, sub).await, ids(&[13, 12]));
    let latest = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(
        latest.checkpoint.channel_values["shared"],
        json!("from-1").into()
    );
    assert_eq!(latest.pending_writes.len(), 1);
    assert!(b
        .get_writes(CheckpointKey::new("t1", cp_id(1)))
        .await
        .unwrap()
        .is_empty());
    assert_kind(b.prune_checkpoints("t1", 0).await, ErrorKind::InvalidInput);
}

/// Copying a thread copies every namespace, id, parent, metadata, value and write.
pub async fn copy_thread_copies_everything(ctx: TestContext) {
    let b = &ctx.backend;
    let mut cp = checkpoint("src", "", &cp_id(1), &[("a", "1", json!("one"))]);
    cp.metadata = obj(json!({"run_id": "r"}));
    let new = cp.all_versions();
    b.put_checkpoint(cp, new).await.unwrap();
    let mut second = checkpoint("src", "", &cp_id(2), &[("b", "1", json!("two"))]);
    second.channel_versions.insert("a".into(), "1".into());
    second.parent_id = Some(cp_id(1));
    b.put_checkpoint(second, versions(&[("b", "1")]))
        .await
        .unwrap();
    put_simple(&ctx, "src", "sub", 3).await;
    b.put_writes(
        CheckpointKey::new("src", cp_id(2)),
        "task",
        "p",
        vec![("w".into(), json!(1).into())],
    )
    .await
    .unwrap();
    assert_eq!(b.copy_thread("src", "dst").await.unwrap(), 3);
    let all = |thread: &str| CheckpointQuery {
        namespace: None,
        ..CheckpointQuery::thread(thread)
    };
    let source = b.list_checkpoints(all("src")).await.unwrap();
    let copy = b.list_checkpoints(all("dst")).await.unwrap();
    assert_eq!(copy.len(), 3);
    for (s, c) in source.iter().zip(&copy) {
        let mut expected = s.clone();
        expected.checkpoint.thread_id = "dst".into();
        assert_eq!(c, &expected);
    }
    assert_eq!(copy[1].checkpoint.channel_values["a"], json!("one").into());
    assert_eq!(copy[1].pending_writes.len(), 1);
    b.delete_thread("src").await.unwrap();
    assert_eq!(
        b.list_checkpoints(all("dst")).await.unwrap(),
        copy,
        "the copy stands alone"
    );
}

/// Copying onto a thread with checkpoints is `AlreadyExists`; copying an empty thread is
/// `NotFound`; neither changes anything.
pub async fn copy_thread_refuses_occupied_or_missing(ctx: TestContext) {
    put_simple(&ctx, "src", "", 1).await;
    put_simple(&ctx, "dst", "", 2).await;
    assert_kind(
        ctx.backend.copy_thread("src", "dst").await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(
        listed(&ctx, CheckpointQuery::thread("dst")).await,
        ids(&[2])
    );
    assert_kind(
        ctx.backend.copy_thread("missing", "new").await,
        ErrorKind::NotFound,
    );
    assert!(listed(&ctx, CheckpointQuery::thread("new"))
        .await
        .is_empty());
}

/// Deleting for runs removes, in every thread and namespace, the checkpoints whose
/// `run_id` is listed, with their writes, and nothing else.
pub async fn delete_for_runs_removes_matching(ctx: TestContext) {
    let b = &ctx.backend;
    let runs = [
        ("t1", "", "r1"),
        ("t1", "sub", "r1"),
        ("t2", "", "r2"),
        ("t2", "", "r3"),
        ("t3", "", "r1"),
    ];
    for (n, (thread, ns, run)) in runs.iter().enumerate() {
        let mut cp = checkpoint(thread, ns, &cp_id(n as u32), &[("a", "1", json!(n))]);
        cp.metadata = obj(json!({"run_id": run}));
        let new = cp.all_versions();
        b.put_checkpoint(cp, new).await.unwrap();
        b.put_writes(
            CheckpointKey::new(*thread, cp_id(n as u32)).in_namespace(*ns),
            "task",
            "",
            vec![("w".into(), json!(n).into())],
        )
        .await
        .unwrap();
    }
    let removed = b
        .delete_for_runs(&["r1".to_string(), "r3".to_string(), "r9".to_string()])
        .await
        .unwrap();
    assert_eq!(removed, 4);
    assert_eq!(b.get_checkpoint("t1", "", None).await.unwrap(), None);
    assert_eq!(b.get_checkpoint("t1", "sub", None).await.unwrap(), None);
    assert_eq!(b.get_checkpoint("t3", "", None).await.unwrap(), None);
    let left = b.get_checkpoint("t2", "", None).await.unwrap().unwrap();
    assert_eq!(left.checkpoint.id, cp_id(2));
    assert_eq!(left.pending_writes.len(), 1);
    assert!(b
        .get_writes(CheckpointKey::new("t2", cp_id(3)))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.delete_for_runs(&[]).await.unwrap(), 0);
}

/// UUIDv7 ids from `new_checkpoint_id` make "latest" the last one stored.
pub async fn generated_ids_order_checkpoints(ctx: TestContext) {
    let mut last = String::new();
    for step in 0..20 {
        let id = storage_core::new_checkpoint_id();
        let cp = checkpoint("t1", "", &id, &[("step", &step.to_string(), json!(step))]);
        let new = cp.all_versions();
        ctx.backend.put_checkpoint(cp, new).await.unwrap();
        last = id;
    }
    let latest = ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.checkpoint.id, last);
    assert_eq!(latest.checkpoint.channel_values["step"], json!(19).into());
}

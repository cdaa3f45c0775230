//! Channel values and the checkpoints that use them: a value is stored once per (thread,
//! namespace, channel, version) and used by every checkpoint whose map names it, so a
//! backend that removes checkpoints (prune, `delete_for_runs`, retention) must know which
//! values a survivor still uses, whatever path stored or copied that survivor. These
//! checks walk every such path and then read each survivor whole.

use std::sync::Arc;

use serde_json::{json, Value};
use storage_core::{ChannelVersions, Checkpoint, StorageBackend};

use crate::data::{checkpoint, checkpoint_ids, cp_id, json_of, keep_last, obj, versions};
use crate::TestContext;

/// A checkpoint `n` of `thread` naming `channels` (channel, version, value), child of
/// `parent`.
fn numbered(thread: &str, n: u32, parent: u32, channels: &[(&str, &str, Value)]) -> Checkpoint {
    let mut cp = checkpoint(thread, "", &cp_id(n), channels);
    cp.parent_id = (parent > 0).then(|| cp_id(parent));
    cp
}

async fn put(b: &Arc<dyn StorageBackend>, cp: Checkpoint, new: &[(&str, &str)]) {
    b.put_checkpoint(cp, versions(new)).await.unwrap();
}

/// Asserts the checkpoint reads back with exactly `expected` as its values.
async fn assert_values(b: &Arc<dyn StorageBackend>, thread: &str, n: u32, expected: Value) {
    let tuple = b
        .get_checkpoint(thread, "", Some(&cp_id(n)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{thread}/{n} is gone"));
    assert_eq!(
        values_json(&tuple.checkpoint),
        expected,
        "values of {thread}/{n}"
    );
}

/// A checkpoint's channel values as one JSON object.
fn values_json(checkpoint: &Checkpoint) -> Value {
    Value::Object(
        checkpoint
            .channel_values
            .iter()
            .map(|(channel, value)| (channel.clone(), json_of(value)))
            .collect(),
    )
}

/// Every path that stores, replaces, copies or removes checkpoints, then removals of the
/// older ones: each survivor keeps every value it names, including values an earlier,
/// removed checkpoint stored, values a replaced record no longer names, and values a batch
/// or a copy carries.
pub async fn values_survive_every_checkpoint_path(ctx: TestContext) {
    let b = &ctx.backend;
    let t = "values";
    // 1..4: `a` stored by 1 and named by all; `b` stored by each.
    for n in 1..=4u32 {
        let version = format!("b{n}");
        let new: Vec<(&str, &str)> = if n == 1 {
            vec![("a", "a1"), ("b", &version)]
        } else {
            vec![("b", &version)]
        };
        let cp = numbered(
            t,
            n,
            n - 1,
            &[("a", "a1", json!("shared")), ("b", &version, json!(n))],
        );
        put(b, cp, &new).await;
    }
    // 4 again: the record now names `c` (new) instead of its own `b`, and 3's `b`.
    let cp = numbered(
        t,
        4,
        3,
        &[
            ("a", "a1", json!("shared")),
            ("b", "b3", json!(3)),
            ("c", "c4", json!("four")),
        ],
    );
    put(b, cp, &[("c", "c4")]).await;
    // 5 forks from 2: it stores nothing and names what 2 stored.
    let cp = numbered(
        t,
        5,
        2,
        &[("a", "a1", json!("shared")), ("b", "b2", json!(2))],
    );
    put(b, cp, &[]).await;
    // 6 and 7 in one batch; 7 names the `d` that 6 stores in the same batch.
    let six = numbered(
        t,
        6,
        5,
        &[
            ("a", "a1", json!("shared")),
            ("b", "b2", json!(2)),
            ("d", "d6", json!("six")),
        ],
    );
    let seven = numbered(
        t,
        7,
        6,
        &[
            ("a", "a1", json!("shared")),
            ("b", "b7", json!("seven")),
            ("d", "d6", json!("six")),
        ],
    );
    let batch: Vec<(Checkpoint, ChannelVersions)> = vec![
        (six, versions(&[("d", "d6")])),
        (seven, versions(&[("b", "b7")])),
    ];
    b.put_checkpoints(batch).await.unwrap();
    let copy = "values-copy";
    assert_eq!(b.copy_thread(t, copy).await.unwrap(), 7);
    // 8 in both threads, of a run that is then deleted: it stored a `b` nobody else names.
    for thread in [t, copy] {
        let mut cp = numbered(
            thread,
            8,
            7,
            &[("a", "a1", json!("shared")), ("b", "b8", json!("eight"))],
        );
        cp.metadata = obj(json!({"run_id": "values-run"}));
        put(b, cp, &[("b", "b8")]).await;
    }
    assert_eq!(
        b.delete_for_runs(&["values-run".to_owned()]).await.unwrap(),
        2
    );
    assert_eq!(b.prune_checkpoints(copy, 4).await.unwrap(), 3);

    let six_values = json!({"a": "shared", "b": 2, "d": "six"});
    let seven_values = json!({"a": "shared", "b": "seven", "d": "six"});
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 5 + 2);
    for thread in [t, copy] {
        assert_eq!(
            checkpoint_ids(b, thread, "").await,
            vec![cp_id(6), cp_id(7)],
            "{thread}"
        );
        assert_values(b, thread, 6, six_values.clone()).await;
        assert_values(b, thread, 7, seven_values.clone()).await;
    }

    // After the sweep: 9 names only values that 6 stored or kept; it stores nothing. Then
    // only 9 is kept, and it still reads whole.
    let cp = numbered(
        t,
        9,
        6,
        &[
            ("a", "a1", json!("shared")),
            ("b", "b2", json!(2)),
            ("d", "d6", json!("six")),
        ],
    );
    put(b, cp, &[]).await;
    assert_eq!(b.retain_checkpoints(keep_last(1)).await.unwrap(), 2 + 1);
    assert_eq!(checkpoint_ids(b, t, "").await, vec![cp_id(9)]);
    assert_values(b, t, 9, six_values).await;

    // The copy owns its values: deleting the original takes none of them.
    b.delete_thread(t).await.unwrap();
    assert_eq!(checkpoint_ids(b, copy, "").await, vec![cp_id(7)]);
    assert_values(b, copy, 7, seven_values).await;
}

/// The values of every checkpoint a read returns, by checkpoint id.
fn values_by_id(tuples: &[storage_core::CheckpointTuple]) -> Vec<(String, String, Value)> {
    tuples
        .iter()
        .map(|tuple| {
            (
                tuple.checkpoint.thread_id.clone(),
                tuple.checkpoint.id.clone(),
                values_json(&tuple.checkpoint),
            )
        })
        .collect()
}

/// A read of several checkpoints hands each one every value it names, also the values it
/// shares with the others in the same read (a backend may fetch a shared value once), and
/// keys values by thread as well: two threads' equal (channel, version) stay apart.
pub async fn a_read_gives_each_checkpoint_its_shared_values(ctx: TestContext) {
    let b = &ctx.backend;
    let t = "shared-read";
    // 1..3 all name `a` (stored by 1); 2 and 3 share `b` b2; 3 stores `c`.
    put(
        b,
        numbered(
            t,
            1,
            0,
            &[("a", "a1", json!("shared")), ("b", "b1", json!(1))],
        ),
        &[("a", "a1"), ("b", "b1")],
    )
    .await;
    put(
        b,
        numbered(
            t,
            2,
            1,
            &[("a", "a1", json!("shared")), ("b", "b2", json!(2))],
        ),
        &[("b", "b2")],
    )
    .await;
    let three = numbered(
        t,
        3,
        2,
        &[
            ("a", "a1", json!("shared")),
            ("b", "b2", json!(2)),
            ("c", "c3", json!("three")),
        ],
    );
    put(b, three, &[("c", "c3")]).await;
    // Another thread with the same ids, channels and versions but other values.
    let other = "shared-read-other";
    put(
        b,
        numbered(
            other,
            3,
            0,
            &[("a", "a1", json!("other")), ("b", "b2", json!(-2))],
        ),
        &[("a", "a1"), ("b", "b2")],
    )
    .await;
    let expected = |thread: &str, n: u32, values: Value| (thread.to_owned(), cp_id(n), values);
    let one = expected(t, 1, json!({"a": "shared", "b": 1}));
    let two = expected(t, 2, json!({"a": "shared", "b": 2}));
    let three = expected(t, 3, json!({"a": "shared", "b": 2, "c": "three"}));
    let listed = b
        .list_checkpoints(storage_core::CheckpointQuery::thread(t))
        .await
        .unwrap();
    assert_eq!(
        values_by_id(&listed),
        vec![three.clone(), two.clone(), one.clone()]
    );
    let mut query = storage_core::CheckpointQuery::thread(t);
    query.limit = Some(2);
    let page = b.list_checkpoints(query).await.unwrap();
    assert_eq!(values_by_id(&page), vec![three.clone(), two]);
    let found = b
        .search_checkpoints(storage_core::CheckpointSearch::newest(100))
        .await
        .unwrap()
        .items;
    let found: Vec<_> = values_by_id(&found)
        .into_iter()
        .filter(|(thread, ..)| thread == t || thread == other)
        .collect();
    let other_three = expected(other, 3, json!({"a": "other", "b": -2}));
    assert_eq!(
        found,
        vec![
            three,
            other_three,
            expected(t, 2, json!({"a": "shared", "b": 2})),
            one
        ]
    );
}

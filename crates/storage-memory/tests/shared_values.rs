//! A read hands out the stored JSON values themselves, shared, not copies: what makes a
//! get or a list cost a reference count per value instead of a copy of it. Sharing must
//! never let a caller change what is stored: a value read is changed only through
//! `Arc::make_mut`, which copies it while the store still holds it.

use std::sync::Arc;

use serde_json::json;
use storage_core::{ChannelValue, CheckpointQuery, CheckpointStore};
use storage_memory::MemoryBackend;
use storage_testkit::data::{checkpoint, cp_id, json_of, versions};

fn shared(value: &ChannelValue) -> &Arc<serde_json::Value> {
    match value {
        ChannelValue::Json(json) => json,
        ChannelValue::Typed(typed) => panic!("expected JSON, got {typed:?}"),
    }
}

#[tokio::test]
async fn reads_share_the_stored_value_and_changing_a_read_one_leaves_it_stored() {
    let backend = MemoryBackend::new("shared_values").unwrap();
    let stored = json!({"messages": ["hello"], "text": "x".repeat(2_000)});
    backend
        .put_checkpoint(
            checkpoint("t", "", &cp_id(1), &[("a", "1", stored.clone())]),
            versions(&[("a", "1")]),
        )
        .await
        .unwrap();

    let got = backend
        .get_checkpoint("t", "", None)
        .await
        .unwrap()
        .unwrap();
    let listed = backend
        .list_checkpoints(CheckpointQuery::thread("t"))
        .await
        .unwrap();
    let (got_value, listed_value) = (
        shared(&got.checkpoint.channel_values["a"]),
        shared(&listed[0].checkpoint.channel_values["a"]),
    );
    assert!(
        Arc::ptr_eq(got_value, listed_value),
        "a get and a list hand out one stored value, not two copies"
    );

    let mut changed = got.checkpoint.channel_values["a"].clone();
    let ChannelValue::Json(json) = &mut changed else {
        unreachable!()
    };
    Arc::make_mut(json)["messages"] = json!(["changed by the caller"]);
    let again = backend
        .get_checkpoint("t", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json_of(&again.checkpoint.channel_values["a"]), stored);
    assert_eq!(
        json_of(&changed)["messages"],
        json!(["changed by the caller"])
    );
}

/// A stored value is freed with the last checkpoint that names it, and kept while one
/// remains: the store counts each value's users per (channel, version).
#[tokio::test]
async fn a_value_goes_with_its_last_user_and_stays_while_one_remains() {
    let backend = MemoryBackend::new("value_users").unwrap();
    let first = json!({"text": "x".repeat(100)});
    // The first checkpoint stores a@1, the second names it without storing it again, the
    // third stores a@2.
    let puts = [
        (1, "1", first.clone(), versions(&[("a", "1")])),
        (2, "1", first.clone(), versions(&[])),
        (3, "2", json!(2), versions(&[("a", "2")])),
    ];
    for (id, version, value, new_versions) in puts {
        backend
            .put_checkpoint(
                checkpoint("t", "", &cp_id(id), &[("a", version, value)]),
                new_versions,
            )
            .await
            .unwrap();
    }
    let read = backend
        .get_checkpoint("t", "", Some(&cp_id(1)))
        .await
        .unwrap()
        .unwrap();
    let held = Arc::clone(shared(&read.checkpoint.channel_values["a"]));
    drop(read);
    assert_eq!(Arc::strong_count(&held), 2, "stored once, and held here");

    assert_eq!(backend.prune_checkpoints("t", 2).await.unwrap(), 1);
    assert_eq!(
        Arc::strong_count(&held),
        2,
        "the second checkpoint still names it"
    );
    assert_eq!(backend.prune_checkpoints("t", 1).await.unwrap(), 1);
    assert_eq!(Arc::strong_count(&held), 1, "freed with its last user");
    let kept = backend
        .get_checkpoint("t", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json_of(&kept.checkpoint.channel_values["a"]), json!(2));
}

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

//! A stored checkpoint keeps the values it named when it was stored, resolved once; a
//! value that arrives later for a version it names must still read with it, as every
//! backend that looks values up at read time gives it.

use serde_json::json;
use storage_core::{CheckpointQuery, CheckpointStore};
use storage_memory::MemoryBackend;
use storage_testkit::data::{checkpoint, cp_id, json_of, versions};

#[tokio::test]
async fn a_value_stored_after_a_checkpoint_that_names_it_reads_with_it() {
    let backend = MemoryBackend::new("late_values").unwrap();
    // 1 names `a` at `a1` and `b` at `b1` but stores only `b`: `a1` has no value yet.
    let mut first = checkpoint("t", "", &cp_id(1), &[("b", "b1", json!("b"))]);
    first.channel_versions.insert("a".into(), "a1".into());
    backend
        .put_checkpoint(first, versions(&[("b", "b1")]))
        .await
        .unwrap();
    let read = backend.get_checkpoint("t", "", Some(&cp_id(1))).await;
    let values = read.unwrap().unwrap().checkpoint.channel_values;
    assert_eq!(values.keys().collect::<Vec<_>>(), ["b"]);

    // 2 stores `a1`; 1 names it, so 1 now reads it too, by get and by list.
    let second = checkpoint(
        "t",
        "",
        &cp_id(2),
        &[("a", "a1", json!("late")), ("b", "b1", json!("b"))],
    );
    backend
        .put_checkpoint(second, versions(&[("a", "a1")]))
        .await
        .unwrap();
    let read = backend.get_checkpoint("t", "", Some(&cp_id(1))).await;
    let values = read.unwrap().unwrap().checkpoint.channel_values;
    assert_eq!(json_of(&values["a"]), json!("late"));
    assert_eq!(json_of(&values["b"]), json!("b"));
    let listed = backend
        .list_checkpoints(CheckpointQuery::thread("t"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    for tuple in listed {
        let values = &tuple.checkpoint.channel_values;
        assert_eq!(
            json_of(&values["a"]),
            json!("late"),
            "{}",
            tuple.checkpoint.id
        );
        assert_eq!(json_of(&values["b"]), json!("b"), "{}", tuple.checkpoint.id);
    }
}

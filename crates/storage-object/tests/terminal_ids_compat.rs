//! An id whose hex fills its last key segment (63, 126, 189 or 252 bytes) and ends its key
//! (a checkpoint id, a channel version, a client message id) now ends with an empty `j`
//! segment, so that on local files a longer id that starts with it can have the folder it
//! needs. The previous release wrote such objects at the key without that segment. Planted
//! there (the same bytes: only the keys changed), they still read, a put of the same id
//! replaces them where they are, and removing their record removes them; on local files,
//! where the old key is a file, and in memory, where keys are plain strings as on S3.

use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::json;
use storage_core::{
    Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore, ConversationStore, NewMessage,
    StorageBackend,
};
use storage_object::{ObjectBackend, ObjectConfig};

fn full(c: char) -> String {
    std::iter::repeat_n(c, 63).collect()
}

/// Every object key under `root`, sorted.
async fn keys_under(b: &ObjectBackend, root: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = b
        .object_store()
        .list(Some(&Path::from(root)))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Stores a checkpoint (id, channel version and run marker of full-segment ids) with one
/// pending write, and a message with a full-segment client id; then moves every object
/// whose key ends with the empty `j` to the key the previous release used. Returns those
/// old keys.
async fn plant(b: &ObjectBackend, root: &str) -> Vec<String> {
    let mut cp = Checkpoint::new("t", "", full('c'));
    cp.channel_versions.insert("ch".into(), full('9'));
    cp.channel_values
        .insert("ch".into(), json!("old value").into());
    cp.metadata.insert("run_id".into(), json!("r1"));
    let new = cp.all_versions();
    b.put_checkpoint(cp, new).await.unwrap();
    let key = CheckpointKey::new("t", full('c'));
    b.put_writes(key, "task", "", vec![("w".into(), json!(1).into())])
        .await
        .unwrap();
    b.append_message(
        "s",
        NewMessage::new("user", "first").with_client_id(full('m')),
    )
    .await
    .unwrap();

    let store = b.object_store();
    let mut old_keys = Vec::new();
    for key in keys_under(b, root).await {
        let Some(old) = key.strip_suffix("/j") else {
            continue;
        };
        let bytes = store.get(&Path::from(key.as_str())).await.unwrap();
        let bytes = bytes.bytes().await.unwrap();
        store.delete(&Path::from(key.as_str())).await.unwrap();
        store.put(&Path::from(old), bytes.into()).await.unwrap();
        old_keys.push(old.to_owned());
    }
    old_keys.sort();
    old_keys
}

async fn old_keys_read_and_are_replaced_in_place(b: ObjectBackend, root: &str) {
    let b = &b;
    let old_keys = plant(b, root).await;
    // The checkpoint record, its value, its run marker and the client id.
    assert_eq!(old_keys.len(), 4, "{old_keys:#?}");

    let tuple = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(tuple.checkpoint.id, full('c'));
    assert_eq!(tuple.checkpoint.channel_versions["ch"], full('9'));
    assert_eq!(
        tuple.checkpoint.channel_values["ch"],
        json!("old value").into()
    );
    assert_eq!(tuple.pending_writes.len(), 1);
    let by_id = b.get_checkpoint("t", "", Some(&full('c'))).await.unwrap();
    assert_eq!(by_id, Some(tuple.clone()));
    let listed = b
        .list_checkpoints(CheckpointQuery::thread("t"))
        .await
        .unwrap();
    assert_eq!(listed, vec![tuple.clone()]);

    // A replayed client id finds the message it named.
    let replay = NewMessage::new("user", "again").with_client_id(full('m'));
    let stored = b.append_message("s", replay).await.unwrap();
    assert_eq!((stored.sequence, stored.content), (1, json!("first")));
    assert_eq!(b.get_conversation_history("s", 10).await.unwrap().len(), 1);

    // Put again, the record is replaced at its old key; no key of the new form appears.
    let mut again = tuple.checkpoint.clone();
    again.metadata.insert("step".into(), json!(2));
    b.put_checkpoint(again, Default::default()).await.unwrap();
    let read = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(read.checkpoint.metadata["step"], json!(2));
    assert_eq!(
        read.checkpoint.channel_values["ch"],
        json!("old value").into()
    );
    let keys = keys_under(b, root).await;
    assert!(keys.iter().all(|key| !key.ends_with("/j")), "{keys:#?}");
    assert!(old_keys.iter().all(|old| keys.contains(old)), "{keys:#?}");

    // Removed with its record: the record and its run marker.
    assert_eq!(b.delete_for_runs(&["r1".to_string()]).await.unwrap(), 1);
    assert_eq!(b.get_checkpoint("t", "", None).await.unwrap(), None);
    let keys = keys_under(b, root).await;
    let gone: Vec<&String> = old_keys
        .iter()
        .filter(|old| old.contains("/checkpoints/") || old.contains("/runs/"))
        .collect();
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|old| !keys.contains(old)), "{keys:#?}");

    // Now a longer id that starts with the old one has the folder it needs.
    let longer = format!("{}d", full('c'));
    let cp = Checkpoint::new("t", "", longer.clone());
    b.put_checkpoint(cp, Default::default()).await.unwrap();
    let latest = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, longer);
}

#[tokio::test]
async fn old_terminal_keys_on_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let backend = ObjectBackend::new(ObjectConfig::new(url).with_namespace("compat")).unwrap();
    backend.initialize().await.unwrap();
    old_keys_read_and_are_replaced_in_place(backend, "compat").await;
}

#[tokio::test]
async fn old_terminal_keys_in_memory() {
    let config = ObjectConfig::new("memory://").with_namespace("compat");
    let backend = ObjectBackend::new(config).unwrap();
    backend.initialize().await.unwrap();
    old_keys_read_and_are_replaced_in_place(backend, "compat").await;
}

/// Where both keys hold an object (a process of the previous release wrote the old key
/// beside this release's, as S3 allows), the old one is the record for reads and writes
/// alike: a put is read back, never hidden behind the other (found in review: reads
/// preferred the new key while puts went to the old one).
#[tokio::test]
async fn with_both_keys_the_old_one_is_read_and_written() {
    // `memory://` is one store per process: a namespace of its own beside the test above.
    let config = ObjectConfig::new("memory://").with_namespace("compat_both");
    let b = ObjectBackend::new(config).unwrap();
    b.initialize().await.unwrap();
    let mut cp = Checkpoint::new("t", "", full('c'));
    cp.metadata.insert("step".into(), json!(1));
    b.put_checkpoint(cp.clone(), Default::default())
        .await
        .unwrap();
    let store = b.object_store();
    let new_key = keys_under(&b, "compat_both")
        .await
        .into_iter()
        .find(|key| key.contains("/checkpoints/") && key.ends_with("/j"))
        .unwrap();
    let bytes = store.get(&Path::from(new_key.as_str())).await.unwrap();
    let old_key = Path::from(new_key.strip_suffix("/j").unwrap());
    store
        .put(&old_key, bytes.bytes().await.unwrap().into())
        .await
        .unwrap();

    cp.metadata.insert("step".into(), json!(2));
    b.put_checkpoint(cp, Default::default()).await.unwrap();
    let read = b.get_checkpoint("t", "", Some(&full('c'))).await.unwrap();
    assert_eq!(read.unwrap().checkpoint.metadata["step"], json!(2));
    let latest = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.metadata["step"], json!(2));
    assert_eq!(b.delete_thread("t").await.unwrap(), 1);
    assert!(keys_under(&b, "compat_both/threads").await.is_empty());
}

//! What a retention sweep of messages leaves in the store: the slots of removed messages
//! become stubs without their content (their numbers stay taken, so an appender holding
//! an older head cannot create them again), a batch straddling the cut stays whole, and
//! `collect_garbage` stubs the full slots a sweep dying after its commit would leave.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::json;
use storage_core::{ConversationStore, MessageRange, NewMessage, Retention, StorageBackend};
use storage_object::{ObjectBackend, ObjectConfig};

/// Each slot's number and whether it still holds the marker its messages carry.
async fn slots(backend: &ObjectBackend, session: &str) -> Vec<(u64, bool)> {
    let prefix = Path::from(format!(
        "r/conversations/i{}/messages",
        hex::encode(session)
    ));
    let store = backend.object_store();
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    let mut found = Vec::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let first: u64 = meta.location.filename().unwrap().parse().unwrap();
        let full = String::from_utf8_lossy(&bytes).contains("marker");
        found.push((first, full));
    }
    found.sort();
    found
}

fn keep_last(n: u64) -> Retention {
    Retention {
        created_before: None,
        keep_last: Some(n),
    }
}

#[tokio::test]
async fn removed_messages_leave_stubs_and_leftovers_are_stubbed_by_gc() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("r")).unwrap();
    b.initialize().await.unwrap();
    for n in 1..=4 {
        b.append_message("s1", NewMessage::new("user", json!({"marker": n})))
            .await
            .unwrap();
    }
    // A batch of three: 5, 6, 7.
    let batch = (5..=7)
        .map(|n| NewMessage::new("user", json!({"marker": n})))
        .collect();
    b.append_messages("s1", batch).await.unwrap();
    b.append_message("s1", NewMessage::new("user", json!({"marker": 8})))
        .await
        .unwrap();

    // Keeping 3 removes 1..=5: slots 1..4 go empty, the batch at 5 still holds 6 and 7.
    assert_eq!(b.retain_messages(keep_last(3)).await.unwrap(), 5);
    assert_eq!(
        slots(&b, "s1").await,
        vec![
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (5, true),
            (8, true)
        ]
    );
    let read = b
        .get_messages("s1", MessageRange::after(0, 100))
        .await
        .unwrap();
    assert_eq!(
        read.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    // Now the batch goes too, found by probing below the old floor.
    assert_eq!(b.retain_messages(keep_last(1)).await.unwrap(), 2);
    assert_eq!(
        slots(&b, "s1").await,
        vec![
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (5, false),
            (8, true)
        ]
    );
    // Numbers continue; nothing is left for the collector.
    let next = b
        .append_message("s1", NewMessage::new("user", json!({"marker": 9})))
        .await
        .unwrap();
    assert_eq!(next.sequence, 9);
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.message_slots, 0, "{report:?}");

    // A floor raised without the stubs (a sweep that died after its commit, or a clear):
    // the collector empties every slot wholly below it, never the newest.
    for n in 1..=3 {
        b.append_message("s2", NewMessage::new("user", json!({"marker": n})))
            .await
            .unwrap();
    }
    b.clear_conversation("s2").await.unwrap();
    let report = b.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.message_slots, 0, "too young: {report:?}");
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.message_slots, 2, "{report:?}");
    assert_eq!(
        slots(&b, "s2").await,
        vec![(1, false), (2, false), (3, true)]
    );
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.message_slots, 0, "{report:?}");
}

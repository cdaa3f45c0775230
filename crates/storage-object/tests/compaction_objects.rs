//! The objects compactions write: exactly those the conversation head names remain after
//! each change; what a compaction dying midway leaves is never read, and
//! `collect_garbage` removes it once older than its grace period, and nothing else.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::json;
use storage_core::{ConversationStore, MessageRange, NewMessage, SessionStore, StorageBackend};
use storage_object::{ObjectBackend, ObjectConfig};

/// The paths under `prefix`, after it, sorted.
async fn objects(backend: &ObjectBackend, prefix: &str) -> Vec<String> {
    let path = Path::from(prefix);
    let mut paths: Vec<String> = backend
        .object_store()
        .list(Some(&path))
        .map_ok(|meta| meta.location.to_string()[prefix.len() + 1..].to_owned())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

/// `<20-digit sequence>/<kind>` of each compaction object, ids left out.
fn shapes(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|path| {
            let parts: Vec<&str> = path.split('/').collect();
            format!("{}/{}", parts[0], parts[2])
        })
        .collect()
}

#[tokio::test]
async fn only_named_compaction_objects_remain_and_leftovers_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("c")).unwrap();
    b.initialize().await.unwrap();
    b.create_session(storage_core::NewSession::new("s1", "u1"))
        .await
        .unwrap();
    let batch = (1..=10)
        .map(|n| NewMessage::new("user", json!(n)).with_client_id(format!("c{n}")))
        .collect();
    b.append_messages("s1", batch).await.unwrap();
    let prefix = format!("c/compactions/i{}", hex::encode("s1"));
    let n = |sequence: u64| format!("{sequence:020}");

    b.compact_conversation("s1", 4, NewMessage::new("system", "1-4"), true)
        .await
        .unwrap();
    b.compact_conversation("s1", 6, NewMessage::new("system", "1-6"), true)
        .await
        .unwrap();
    // The summary at 4 is kept inside what 6 replaced: its own object is gone.
    let named = objects(&b, &prefix).await;
    assert_eq!(
        shapes(&named),
        vec![
            format!("{}/replaced", n(4)),
            format!("{}/replaced", n(6)),
            format!("{}/summary", n(6)),
        ]
    );

    // What compactions that died before their commit leave behind: never read.
    let summary = named[2].clone();
    let bytes = b
        .object_store()
        .get(&Path::from(format!("{prefix}/{summary}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let leftovers = [
        format!("{}/0190aa0000000000000000000000dead/summary", n(8)),
        format!("{}/0190aa0000000000000000000000dead/replaced", n(6)),
        format!("{}/0190aa0000000000000000000000beef/summary", n(6)),
    ];
    for leftover in &leftovers {
        let path = Path::from(format!("{prefix}/{leftover}"));
        b.object_store()
            .put(&path, bytes.clone().into())
            .await
            .unwrap();
    }
    let all = b
        .get_messages("s1", MessageRange::after(0, 100))
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].content, json!("1-6"));
    assert_eq!(all[2].content, json!(8));
    assert_eq!(b.get_replaced_messages("s1", 6).await.unwrap().len(), 3);
    assert!(b.get_replaced_messages("s1", 8).await.unwrap().is_empty());

    // Young leftovers are not examined; old ones go, the named objects stay.
    let report = b
        .collect_garbage(storage_object::DEFAULT_GARBAGE_GRACE)
        .await
        .unwrap();
    assert_eq!(report.compaction_objects, 0, "{report:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.compaction_objects, 3, "{report:?}");
    assert_eq!(objects(&b, &prefix).await, named);

    // A compaction that drops deletes what it unnamed; a rewind below the summary too.
    b.compact_conversation("s1", 8, NewMessage::new("system", "1-8"), false)
        .await
        .unwrap();
    assert_eq!(
        shapes(&objects(&b, &prefix).await),
        vec![format!("{}/summary", n(8))]
    );
    assert_eq!(b.rewind_conversation("s1", 7).await.unwrap(), 3);
    assert!(objects(&b, &prefix).await.is_empty());
    assert_eq!(
        b.append_message("s1", NewMessage::new("user", "next"))
            .await
            .unwrap()
            .sequence,
        11
    );

    // The session's removal takes every compaction object with it.
    b.compact_conversation("s1", 11, NewMessage::new("system", "all"), true)
        .await
        .unwrap();
    assert_eq!(objects(&b, &prefix).await.len(), 2);
    assert!(b.delete_session("s1").await.unwrap());
    assert!(objects(&b, &prefix).await.is_empty());
}

/// An append that looked its client id up before a compaction committed a summary with the
/// same client id, and created its slot after: the slot's message is hidden when the head
/// moves past it, and the summary is the one message with that client id.
#[tokio::test]
async fn a_slot_racing_a_summary_for_its_client_id_is_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("r")).unwrap();
    let batch = (1..=3).map(|n| NewMessage::new("user", json!(n))).collect();
    b.append_messages("s1", batch).await.unwrap();
    let summary = b
        .compact_conversation(
            "s1",
            3,
            NewMessage::new("system", "1-3").with_client_id("sum"),
            false,
        )
        .await
        .unwrap();
    // The slot such an append creates, written as the append would.
    let late = NewMessage::new("user", "late")
        .with_client_id("sum")
        .into_message("s1", 4, storage_core::time::now());
    let slot = json!({"v": 1, "kind": "message_slot", "data": {"first": 4, "messages": [late]}});
    let path = format!("r/conversations/i{}/messages/{:020}", hex::encode("s1"), 4);
    b.object_store()
        .put(&Path::from(path), serde_json::to_vec(&slot).unwrap().into())
        .await
        .unwrap();
    let all = b
        .get_messages("s1", MessageRange::after(0, 10))
        .await
        .unwrap();
    assert_eq!(all, vec![summary.clone()]);
    let again = b
        .append_message("s1", NewMessage::new("user", "x").with_client_id("sum"))
        .await
        .unwrap();
    assert_eq!(again, summary);
    let next = b
        .append_message("s1", NewMessage::new("user", "next"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 5);
}

//! JSON nested thousands of levels deep, handed to the facade and to failover, is refused
//! as `InvalidInput` on a tokio worker's stack: wrappers copy a call's arguments (a retry,
//! a mirror), and copying or dropping such a value recursively overflows the stack.

use std::sync::Arc;

use serde_json::Value;
use storage::failover::{FailoverBackend, FailoverSettings};
use storage::Storage;
use storage_core::prelude::*;
use storage_core::{CheckpointKey, ErrorKind};
use storage_memory::MemoryBackend;

/// Arrays and objects in turn, built from the inside out (no recursion; `json!` would
/// copy the inner value through `to_value`, recursively).
fn nested(levels: usize) -> Value {
    let mut value = Value::from(1);
    for level in 0..levels {
        value = if level % 2 == 0 {
            Value::Array(vec![value])
        } else {
            let mut map = serde_json::Map::new();
            map.insert("k".into(), value);
            Value::Object(map)
        };
    }
    value
}

fn memory(namespace: &str) -> Arc<dyn StorageBackend> {
    Arc::new(MemoryBackend::new(namespace).unwrap())
}

async fn refuses_deep_values(storage: Arc<dyn StorageBackend>) {
    storage
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    let err = storage
        .store_task_context("s1", nested(10_000), ExpectedVersion::Any)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("64"), "{err}");
    let err = storage
        .append_message("s1", NewMessage::new("user", nested(10_000)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let key = CheckpointKey::new("t1", "c1");
    let err = storage
        .put_writes(key, "task", "", vec![("channel".into(), nested(10_000))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // Nothing was stored, and the store still answers.
    assert!(storage.get_task_context("s1").await.unwrap().is_none());
    let history = storage.get_conversation_history("s1", 10).await.unwrap();
    assert!(history.is_empty());
}

/// Runs `check` on a tokio worker thread (its default 2 MiB stack), not the test thread.
async fn on_a_worker(storage: Arc<dyn StorageBackend>) {
    tokio::spawn(refuses_deep_values(storage)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_refuses_ten_thousand_levels_without_overflowing() {
    on_a_worker(Arc::new(Storage::builder(memory("facade")).build())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_refuses_ten_thousand_levels_without_overflowing() {
    let journal = tempfile::tempdir().unwrap();
    let settings = FailoverSettings {
        journal_dir: journal.path().to_owned(),
        ..FailoverSettings::default()
    };
    let failover = FailoverBackend::new(memory("primary"), memory("fallback"), settings).unwrap();
    let storage = Storage::builder(Arc::new(failover)).build();
    on_a_worker(Arc::new(storage)).await;
}

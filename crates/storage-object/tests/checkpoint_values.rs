//! Channel values a prune or retention sweep leaves unused are collected later, by
//! `collect_garbage`, not at once: a put that forks from an older checkpoint names a value
//! without re-sending it, and when its record lands after the sweep listed the survivors
//! (here: right after the sweep, which makes the race deterministic) it must still read
//! back with that value. Collection re-checks every candidate against the checkpoints
//! stored at that time and removes only what none of them uses.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use serde_json::json;
use storage_core::{ChannelVersions, Checkpoint, CheckpointStore, Retention, StorageBackend};
use storage_object::{ObjectBackend, ObjectConfig};

const THREAD: &str = "t1";

async fn backend(dir: &tempfile::TempDir) -> ObjectBackend {
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("gc")).unwrap();
    b.initialize().await.unwrap();
    b
}

/// Checkpoint `id` with channel `a` at `version`; stores the value when `value` is given.
async fn put(b: &ObjectBackend, id: &str, version: &str, value: Option<i64>) {
    let mut cp = Checkpoint::new(THREAD, "", id);
    cp.channel_versions.insert("a".into(), version.into());
    let mut new_versions = ChannelVersions::new();
    if let Some(value) = value {
        cp.channel_values.insert("a".into(), json!(value).into());
        new_versions.insert("a".into(), version.into());
    }
    b.put_checkpoint(cp, new_versions).await.unwrap();
}

/// The value of channel `a` checkpoint `id` reads back with.
async fn value_of(b: &ObjectBackend, id: &str) -> Option<serde_json::Value> {
    let tuple = b.get_checkpoint(THREAD, "", Some(id)).await.unwrap()?;
    tuple
        .checkpoint
        .channel_values
        .get("a")
        .and_then(|v| v.as_json().cloned())
}

/// How many channel values the thread stores.
async fn stored_values(b: &ObjectBackend) -> usize {
    let prefix = Path::from(format!("gc/threads/i{}", hex::encode(THREAD)));
    let paths: Vec<String> = b
        .object_store()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.iter().filter(|p| p.contains("/blobs/")).count()
}

/// Checkpoints 1..3 with `a` at versions 1, 2, 3; `trim` keeps the newest 2, so `a`=1 is
/// unused; then a fork of checkpoint 1 names `a`=1 without re-sending it.
async fn fork_after_trim(trim: impl AsyncFnOnce(&ObjectBackend) -> u64) {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    assert_eq!(trim(&b).await, 1, "checkpoint 1 is removed");
    assert_eq!(value_of(&b, "0001").await, None, "checkpoint 1 is gone");

    // The fork lands after the sweep decided that `a`=1 was unused.
    put(&b, "0004", "1", None).await;
    assert_eq!(
        value_of(&b, "0004").await,
        Some(json!(10)),
        "the fork reads back with the value it names"
    );
    assert_eq!(stored_values(&b).await, 3);

    // A grace longer than the markers' age collects nothing.
    let report = b.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.checkpoint_values, 0);

    // Collection keeps `a`=1 (used again); nothing else is unused yet.
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 0);
    assert_eq!(value_of(&b, "0004").await, Some(json!(10)));
    assert_eq!(stored_values(&b).await, 3);

    // Pruning to the newest checkpoint leaves `a`=2 and `a`=3 unused: they stay until
    // collected, then go; `a`=1 stays with the fork.
    assert_eq!(b.prune_checkpoints(THREAD, 1).await.unwrap(), 2);
    assert_eq!(stored_values(&b).await, 3);
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 2);
    assert_eq!(stored_values(&b).await, 1);
    assert_eq!(value_of(&b, "0004").await, Some(json!(10)));
    let again = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        again.checkpoint_values, 0,
        "markers are removed once handled"
    );
}

#[tokio::test]
async fn a_fork_after_a_prune_keeps_the_value_it_names() {
    fork_after_trim(async |b: &ObjectBackend| b.prune_checkpoints(THREAD, 2).await.unwrap()).await;
}

#[tokio::test]
async fn a_fork_after_a_retention_sweep_keeps_the_value_it_names() {
    fork_after_trim(async |b: &ObjectBackend| {
        b.retain_checkpoints(Retention {
            created_before: None,
            keep_last: Some(2),
        })
        .await
        .unwrap()
    })
    .await;
}

#[tokio::test]
async fn collection_within_the_grace_period_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    assert_eq!(b.prune_checkpoints(THREAD, 1).await.unwrap(), 2);
    assert_eq!(stored_values(&b).await, 3, "values wait for collection");
    let report = b.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.checkpoint_values, 0);
    assert_eq!(stored_values(&b).await, 3, "younger than the grace period");
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 2);
    assert_eq!(stored_values(&b).await, 1);
    assert_eq!(value_of(&b, "0003").await, Some(json!(30)));
}

#[tokio::test]
async fn a_prune_that_died_before_removing_its_records_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    // A prune that wrote its marker (naming `a`=1) and died before deleting checkpoint 1:
    // the same state as a prune that finished and checkpoint 1 written again.
    assert_eq!(b.prune_checkpoints(THREAD, 2).await.unwrap(), 1);
    put(&b, "0001", "1", Some(10)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 0, "checkpoint 1 still uses `a`=1");
    assert_eq!(value_of(&b, "0001").await, Some(json!(10)));
    assert_eq!(stored_values(&b).await, 3);
    // The marker is gone; a later prune names the value again.
    assert_eq!(b.prune_checkpoints(THREAD, 2).await.unwrap(), 1);
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 1);
    assert_eq!(stored_values(&b).await, 2);
    assert_eq!(value_of(&b, "0003").await, Some(json!(30)));
}

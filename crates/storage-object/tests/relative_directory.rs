//! A backend opened on a relative `file://` URL (the embedded default is
//! `file://./.storage`) keeps the directory it opened when the process changes its working
//! directory afterwards: its reads, listings and garbage collection all see that directory.
//! Listings that read the directory itself once rebuilt the path from the URL, so after a
//! change of directory they listed an empty one: `list_checkpoints` returned nothing, and a
//! collection deleted a value a kept checkpoint uses (found in review). One test binary of
//! its own, one test: the working directory is process-wide.

use std::time::Duration;

use serde_json::json;
use storage_core::{
    ChannelVersions, Checkpoint, CheckpointQuery, CheckpointStore, Retention, StorageBackend,
};
use storage_object::{ObjectBackend, ObjectConfig};

#[tokio::test]
async fn a_relative_directory_stays_the_one_opened() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    listings_follow_the_directory_opened(first.path(), second.path()).await;
    collection_keeps_used_values(first.path(), second.path()).await;
}

async fn listings_follow_the_directory_opened(first: &std::path::Path, second: &std::path::Path) {
    std::env::set_current_dir(first).unwrap();
    let b = ObjectBackend::new(ObjectConfig::new("file://./store").with_namespace("cwd")).unwrap();
    b.initialize().await.unwrap();
    for n in 1..=3 {
        let mut cp = Checkpoint::new("t", "", format!("cp-{n}"));
        cp.channel_values.insert("a".into(), json!(n).into());
        b.put_checkpoint(cp, ChannelVersions::new()).await.unwrap();
    }
    std::env::set_current_dir(second).unwrap();
    // Reads and writes still go to `first/store` (object_store canonicalized it at open).
    let mut cp = Checkpoint::new("t", "", "cp-4");
    cp.channel_values.insert("a".into(), json!(4).into());
    b.put_checkpoint(cp, ChannelVersions::new()).await.unwrap();
    assert!(b
        .get_checkpoint("t", "", Some("cp-2"))
        .await
        .unwrap()
        .is_some());
    let all = b
        .list_checkpoints(CheckpointQuery::thread("t"))
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "list_checkpoints after a change of directory");
}

async fn put(b: &ObjectBackend, id: &str, version: &str, value: Option<i64>) {
    let mut cp = Checkpoint::new("t", "", id);
    cp.channel_versions.insert("a".into(), version.into());
    let mut new_versions = ChannelVersions::new();
    if let Some(value) = value {
        cp.channel_values.insert("a".into(), json!(value).into());
        new_versions.insert("a".into(), version.into());
    }
    b.put_checkpoint(cp, new_versions).await.unwrap();
}

async fn value_of(b: &ObjectBackend, id: &str) -> Option<serde_json::Value> {
    let tuple = b.get_checkpoint("t", "", Some(id)).await.unwrap()?;
    tuple
        .checkpoint
        .channel_values
        .get("a")
        .and_then(|v| v.as_json().cloned())
}

async fn collection_keeps_used_values(first: &std::path::Path, second: &std::path::Path) {
    std::env::set_current_dir(first).unwrap();
    let b =
        ObjectBackend::new(ObjectConfig::new("file://./store-gc").with_namespace("gc")).unwrap();
    b.initialize().await.unwrap();
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    let keep_two = Retention {
        created_before: None,
        keep_last: Some(2),
    };
    assert_eq!(b.retain_checkpoints(keep_two).await.unwrap(), 1);
    // A fork of checkpoint 1 names `a`=1 without re-sending it (its marker is a candidate).
    put(&b, "0004", "1", None).await;
    assert_eq!(value_of(&b, "0004").await, Some(json!(10)));
    std::env::set_current_dir(second).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        value_of(&b, "0004").await,
        Some(json!(10)),
        "kept checkpoint lost its value; collected {}",
        report.checkpoint_values
    );
}

//! Task context archives that a store or delete dying midway leaves behind: readers never
//! see them (they are below the head's floor, or of a history that was deleted), and
//! `collect_garbage` removes them once older than its grace period, and nothing else.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::json;
use storage_core::{ContextScope, ExpectedVersion, StorageBackend, TaskContextStore};
use storage_object::{ObjectBackend, ObjectConfig};

async fn archives(backend: &ObjectBackend, prefix: &str) -> Vec<String> {
    let prefix = Path::from(prefix);
    let mut paths: Vec<String> = backend
        .object_store()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

#[tokio::test]
async fn leftover_archives_are_invisible_and_collected() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("gc")).unwrap();
    b.initialize().await.unwrap();
    let scope = ContextScope::user("u1");
    for step in 1..=5 {
        b.store_context(scope.clone(), json!(step), ExpectedVersion::Any, 3)
            .await
            .unwrap();
    }
    let prefix = format!("gc/context_versions/user/i{}", hex::encode("u1"));
    let kept = archives(&b, &prefix).await;
    assert_eq!(kept.len(), 2, "versions 3 and 4 are archived: {kept:?}");
    let lineage = kept[0].split('/').rev().nth(1).unwrap().to_owned();

    // What a store that died before trimming, and a delete that died before removing the
    // archives of the history it deleted, leave behind.
    let bytes = b
        .object_store()
        .get(&Path::from(kept[0].as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let leftovers = [
        format!("{prefix}/{lineage}/{:020}", 1),
        format!("{prefix}/{lineage}/{:020}", 2),
        format!("{prefix}/0190aa0000000000000000000000dead/{:020}", 4),
    ];
    for path in &leftovers {
        b.object_store()
            .put(&Path::from(path.as_str()), bytes.clone().into())
            .await
            .unwrap();
    }
    for version in [1, 2] {
        assert_eq!(
            b.get_context(scope.clone(), Some(version)).await.unwrap(),
            None
        );
    }
    let listed = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    let versions: Vec<u64> = listed.iter().map(|c| c.version).collect();
    assert_eq!(versions, vec![5, 4, 3]);

    // Young leftovers are not examined; old ones go, the kept archives stay.
    let report = b
        .collect_garbage(storage_object::DEFAULT_GARBAGE_GRACE)
        .await
        .unwrap();
    assert_eq!(report.context_versions, 0, "{report:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.context_versions, 3, "{report:?}");
    assert_eq!(archives(&b, &prefix).await, kept);
    let listed = b.list_context_versions(scope, None, 10).await.unwrap();
    assert_eq!(listed.len(), 3);
}

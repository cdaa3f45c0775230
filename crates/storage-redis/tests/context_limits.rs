//! The largest task context version Redis holds exactly: Lua and sorted-set scores are
//! doubles, so a store past 2^53 would compute the same version twice. It is refused
//! instead of overwriting the stored version.

use serde_json::json;
use storage_core::policy::MAX_IMPORTED_NUMBER;
use storage_core::{
    time, ContextScope, ErrorKind, ExpectedVersion, StorageBackend, TaskContext, TaskContextStore,
};
use storage_redis::{RedisBackend, RedisConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_past_exact_numbers_is_refused_and_changes_nothing() {
    let url = storage_testkit::servers::redis::redis_url();
    let namespace = format!("limits_{}", std::process::id());
    let b = RedisBackend::new(RedisConfig::new(url).with_namespace(namespace)).unwrap();
    b.initialize().await.unwrap();
    let scope = ContextScope::user("big");
    b.delete_context(scope.clone()).await.unwrap();
    let imported = TaskContext {
        scope: scope.clone(),
        value: json!("top"),
        version: MAX_IMPORTED_NUMBER,
        updated_at: time::now(),
    };
    assert!(b.import_task_context(imported).await.unwrap());
    let next = b
        .store_context(scope.clone(), json!("next"), ExpectedVersion::Any, 10)
        .await
        .unwrap();
    assert_eq!(next.version, MAX_IMPORTED_NUMBER + 1);
    let err = b
        .store_context(scope.clone(), json!("lost"), ExpectedVersion::Any, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("exactly"), "{err}");
    let current = b.get_context(scope.clone(), None).await.unwrap().unwrap();
    assert_eq!(
        (current.version, current.value),
        (next.version, json!("next"))
    );
    let kept = b.list_context_versions(scope, None, 10).await.unwrap();
    assert_eq!(kept.len(), 2);
}

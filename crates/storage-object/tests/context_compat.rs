//! Task contexts written by the release before scopes and kept versions read through this
//! one: the old record, planted as raw objects exactly where and as that release wrote them
//! (`contexts/<sid>/<cell>`, a `task_context` record naming `session_id`), is the session
//! scope's current version, is listed as a scope, keeps working with compare-and-set, and
//! goes with its session. Run on local files (a cell is a directory of version objects)
//! and on S3 (a cell is one `cell` object).

use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::json;
use storage_core::ext::TaskContextStoreExt;
use storage_core::{
    ContextScope, ErrorKind, ExpectedVersion, SessionStore, StorageBackend, TaskContext,
    TaskContextStore,
};
use storage_object::{ObjectBackend, ObjectConfig};

/// The bytes the release before scopes stored for a session's context: its wire envelope
/// around `{session_id, value, version, updated_at}`, in that field order.
fn old_record(session_id: &str, value: serde_json::Value, version: u64) -> Vec<u8> {
    format!(
        r#"{{"v":1,"kind":"task_context","data":{{"session_id":{},"value":{},"version":{version},"updated_at":"2026-11-01T10:00:00.123456Z"}}}}"#,
        serde_json::to_string(session_id).unwrap(),
        value,
    )
    .into_bytes()
}

/// The context the old record stands for.
fn expected(session_id: &str, value: serde_json::Value, version: u64) -> TaskContext {
    TaskContext {
        scope: ContextScope::session(session_id),
        value,
        version,
        updated_at: "2026-11-01T10:00:00.123456Z".parse().unwrap(),
    }
}

/// Plants the old release's objects of `session_id`'s context under the namespace root
/// `root` (the URL prefix and namespace): on local files, the cell directory holds the
/// versions of the cell the old release had not yet collected (the highest is the
/// value); elsewhere, one `cell` object.
async fn plant(backend: &ObjectBackend, root: &str, local: bool, session_id: &str, version: u64) {
    let cell = format!("{root}/contexts/i{}", hex::encode(session_id));
    let store = backend.object_store();
    if local {
        for older in version.saturating_sub(1).max(1)..=version {
            let path = Path::from(format!("{cell}/{older:020}"));
            let value = json!({"step": older, "notes": ["é", 1.5]});
            store
                .put(&path, old_record(session_id, value, older).into())
                .await
                .unwrap();
        }
    } else {
        let path = Path::from(format!("{cell}/cell"));
        let value = json!({"step": version, "notes": ["é", 1.5]});
        store
            .put(&path, old_record(session_id, value, version).into())
            .await
            .unwrap();
    }
}

/// Every object under `prefix`.
async fn objects_under(backend: &ObjectBackend, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = Path::from(prefix);
    backend
        .object_store()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

async fn old_contexts_read_through_the_new_layout(backend: ObjectBackend, root: &str, local: bool) {
    let b = &backend;
    plant(b, root, local, "legacy-1", 3).await;
    plant(b, root, local, "legacy-2", 1).await;
    let scope = ContextScope::session("legacy-1");
    let old = expected("legacy-1", json!({"step": 3, "notes": ["é", 1.5]}), 3);

    // The current version, by either call and by number; the old release kept no other.
    assert_eq!(
        b.get_task_context("legacy-1").await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        b.get_context(scope.clone(), Some(3)).await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(b.get_context(scope.clone(), Some(2)).await.unwrap(), None);
    assert_eq!(
        b.list_context_versions(scope.clone(), None, 10)
            .await
            .unwrap(),
        vec![old.clone()]
    );

    // Listed with the contexts of this release, in key order.
    b.store_context(
        ContextScope::user("u1"),
        json!("shared"),
        ExpectedVersion::Any,
        5,
    )
    .await
    .unwrap();
    b.store_context(ContextScope::App, json!("app"), ExpectedVersion::Any, 5)
        .await
        .unwrap();
    assert_eq!(
        b.list_context_scopes(None, 10).await.unwrap(),
        vec![
            ContextScope::App,
            scope.clone(),
            ContextScope::session("legacy-2"),
            ContextScope::user("u1"),
        ]
    );
    assert_eq!(
        b.list_context_scopes(Some(scope.clone()), 1).await.unwrap(),
        vec![ContextScope::session("legacy-2")]
    );

    // Compare-and-set continues from the old version, which is then kept as an earlier one.
    let err = b
        .store_task_context("legacy-1", json!("stale"), ExpectedVersion::Exactly(2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = b
        .store_task_context("legacy-1", json!("new"), ExpectedVersion::Absent)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let next = b
        .store_task_context("legacy-1", json!("new"), ExpectedVersion::Exactly(3))
        .await
        .unwrap();
    assert_eq!((next.version, next.scope.clone()), (4, scope.clone()));
    assert_eq!(
        b.get_context(scope.clone(), Some(3)).await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        b.list_context_versions(scope.clone(), None, 10)
            .await
            .unwrap(),
        vec![next.clone(), old.clone()]
    );
    let kept_one = b
        .store_context(scope.clone(), json!("only"), ExpectedVersion::Exactly(4), 1)
        .await
        .unwrap();
    assert_eq!(
        b.list_context_versions(scope.clone(), None, 10)
            .await
            .unwrap(),
        vec![kept_one]
    );

    // Removing the sessions removes their contexts, old or not, and nothing shared.
    assert!(
        !b.delete_session("legacy-1").await.unwrap(),
        "no session record"
    );
    assert!(
        !b.delete_session("legacy-2").await.unwrap(),
        "no session record"
    );
    assert_eq!(b.get_task_context("legacy-1").await.unwrap(), None);
    assert_eq!(b.get_task_context("legacy-2").await.unwrap(), None);
    for session_id in ["legacy-1", "legacy-2"] {
        let id = hex::encode(session_id);
        assert_eq!(
            objects_under(b, &format!("{root}/contexts/i{id}")).await,
            Vec::<String>::new()
        );
        assert_eq!(
            objects_under(b, &format!("{root}/context_versions/i{id}")).await,
            Vec::<String>::new()
        );
    }
    assert_eq!(
        b.list_context_scopes(None, 10).await.unwrap(),
        vec![ContextScope::App, ContextScope::user("u1")]
    );
    let next = b
        .store_task_context("legacy-1", json!(1), ExpectedVersion::Absent)
        .await
        .unwrap();
    assert_eq!(next.version, 1, "a removed context starts again at 1");
}

#[tokio::test]
async fn old_contexts_on_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let backend = ObjectBackend::new(ObjectConfig::new(url).with_namespace("compat")).unwrap();
    backend.initialize().await.unwrap();
    old_contexts_read_through_the_new_layout(backend, "compat", true).await;
}

#[tokio::test]
async fn old_contexts_on_s3() {
    let target = storage_testkit::servers::s3::s3_target();
    let namespace = format!("compat_{}", uuid::Uuid::now_v7().simple());
    let config = ObjectConfig::new(format!("s3://{}/compat", target.bucket))
        .with_namespace(&namespace)
        .with_option("aws_endpoint", target.endpoint)
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", target.access_key_id)
        .with_option("aws_secret_access_key", target.secret_access_key)
        .with_option("aws_region", target.region);
    let backend = ObjectBackend::new(config).unwrap();
    backend.initialize().await.unwrap();
    old_contexts_read_through_the_new_layout(backend, &format!("compat/{namespace}"), false).await;
}

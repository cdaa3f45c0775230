//! Task contexts written by the release before scopes (one hash per session,
//! `<prefix>{<ns>:s:<hex session>}:ctx`, written by that release's store script, quoted
//! below verbatim) read through this release as the session scope's current version: by
//! version, in the version listing, in the scope listing, with compare-and-set, import,
//! `delete_context`, `delete_session` and idle cleanup.

use std::time::Duration;

use deadpool_redis::redis;
use serde_json::{json, Value};
use storage_core::ext::TaskContextStoreExt;
use storage_core::{
    time, ContextScope, ErrorKind, ExpectedVersion, NewSession, SessionStore, StorageBackend,
    TaskContext, TaskContextStore,
};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::redis::RedisServer;

const PREFIX: &str = "oldrel";
const NAMESPACE: &str = "compat";

/// The previous release's `STORE_TASK_CONTEXT` with the part of its prelude it uses
/// (`git show 7290236~1:crates/storage-redis/src/scripts.rs`). KEYS: task context. ARGV:
/// ttl, mode (any|absent|exact), expected version, updated µs, value.
const OLD_STORE_TASK_CONTEXT: &str = r#"
local function touch(key, ttl)
  if ttl ~= '0' then redis.call('PEXPIRE', key, ttl) end
end
local current = redis.call('HGET', KEYS[1], 'version')
if (ARGV[2] == 'absent' and current) or (ARGV[2] == 'exact' and current ~= ARGV[3]) then
  return {0, current or ''}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'v', '1', 'updated', ARGV[4], 'value', ARGV[5])
touch(KEYS[1], ARGV[1])
return {1, version}
"#;

/// The previous release's key of a session's task context, spelled out here rather than
/// taken from the crate, so a change of layout cannot hide from this test.
fn old_key(session: &str) -> String {
    format!("{PREFIX}{{{NAMESPACE}:s:{}}}:ctx", hex(session))
}

fn hex(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Stores `value` as the previous release did (`ExpectedVersion::Any`, no TTL) at
/// `micros`; returns the version it reported.
async fn old_store(b: &RedisBackend, session: &str, value: &Value, micros: i64) -> i64 {
    let reply: (i64, i64) = b
        .raw_query(
            redis::cmd("EVAL")
                .arg(OLD_STORE_TASK_CONTEXT)
                .arg(1)
                .arg(old_key(session))
                .arg("0")
                .arg("any")
                .arg("")
                .arg(micros)
                .arg(serde_json::to_string(value).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(reply.0, 1);
    reply.1
}

async fn exists(b: &RedisBackend, key: &str) -> bool {
    b.raw_query::<i64>(redis::cmd("EXISTS").arg(key))
        .await
        .unwrap()
        == 1
}

fn at(micros: i64) -> time::Timestamp {
    time::from_micros(micros)
}

async fn setup() -> (RedisServer, RedisBackend) {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(server.url()).with_namespace(NAMESPACE);
    config.key_prefix = PREFIX.to_owned();
    let backend = RedisBackend::new(config).unwrap();
    backend.initialize().await.unwrap();
    (server, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_context_reads_as_the_session_scopes_current_version() {
    let (_server, b) = setup().await;
    let t1 = 1_780_000_000_000_000;
    let t2 = t1 + 1_500;
    old_store(&b, "s-old", &json!({"step": 1}), t1).await;
    assert_eq!(old_store(&b, "s-old", &json!({"step": 2}), t2).await, 2);
    let scope = ContextScope::session("s-old");
    let expected = TaskContext {
        scope: scope.clone(),
        value: json!({"step": 2}),
        version: 2,
        updated_at: at(t2),
    };

    assert_eq!(
        b.get_context(scope.clone(), None).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        b.get_context(scope.clone(), Some(2)).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(b.get_context(scope.clone(), Some(1)).await.unwrap(), None);
    assert_eq!(
        b.get_task_context("s-old").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        b.list_context_versions(scope.clone(), None, 10)
            .await
            .unwrap(),
        vec![expected.clone()]
    );
    assert_eq!(
        b.list_context_versions(scope.clone(), Some(3), 10)
            .await
            .unwrap(),
        vec![expected.clone()]
    );
    assert!(b
        .list_context_versions(scope.clone(), Some(2), 10)
        .await
        .unwrap()
        .is_empty());

    b.store_context(ContextScope::App, json!("shared"), ExpectedVersion::Any, 5)
        .await
        .unwrap();
    assert_eq!(
        b.list_context_scopes(None, 10).await.unwrap(),
        vec![ContextScope::App, scope.clone()]
    );
    assert_eq!(
        b.list_context_scopes(Some(ContextScope::App), 10)
            .await
            .unwrap(),
        vec![scope.clone()]
    );
    // Reading changed nothing: the old hash is still all there is.
    assert!(exists(&b, &old_key("s-old")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_and_import_continue_an_old_context() {
    let (_server, b) = setup().await;
    let t1 = 1_780_000_000_000_000;
    old_store(&b, "s-old", &json!({"step": 1}), t1).await;
    old_store(&b, "s-old", &json!({"step": 2}), t1 + 1).await;
    let scope = ContextScope::session("s-old");

    for refused in [ExpectedVersion::Absent, ExpectedVersion::Exactly(1)] {
        let err = b
            .store_context(scope.clone(), json!("no"), refused, 10)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
    assert!(
        exists(&b, &old_key("s-old")).await,
        "a refused store moves nothing"
    );

    let stored = b
        .store_task_context("s-old", json!({"step": 3}), ExpectedVersion::Exactly(2))
        .await
        .unwrap();
    assert_eq!(stored.version, 3);
    assert!(
        !exists(&b, &old_key("s-old")).await,
        "the store moved the old hash"
    );
    let versions = b
        .list_context_versions(scope.clone(), None, 10)
        .await
        .unwrap();
    let numbers: Vec<u64> = versions.iter().map(|c| c.version).collect();
    assert_eq!(numbers, [3, 2]);
    assert_eq!(versions[1].value, json!({"step": 2}));
    assert_eq!(versions[1].updated_at, at(t1 + 1));

    // Keeping one version trims the old one with the store.
    b.store_context(
        scope.clone(),
        json!({"step": 4}),
        ExpectedVersion::Exactly(3),
        1,
    )
    .await
    .unwrap();
    assert_eq!(b.get_context(scope.clone(), Some(2)).await.unwrap(), None);
    assert_eq!(
        b.list_context_versions(scope, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // An import meets the old version as the current one.
    old_store(&b, "s-imp", &json!("old"), t1).await;
    let imp = ContextScope::session("s-imp");
    let import = |version: u64| TaskContext {
        scope: imp.clone(),
        value: json!({"imported": version}),
        version,
        updated_at: at(t1 + 10),
    };
    assert!(!b.import_task_context(import(1)).await.unwrap());
    assert!(b.import_task_context(import(4)).await.unwrap());
    let numbers: Vec<u64> = b
        .list_context_versions(imp, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(numbers, [4, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_context_or_its_session_removes_the_old_hash() {
    let (_server, b) = setup().await;
    let t1 = 1_780_000_000_000_000;
    old_store(&b, "s-ctx", &json!(1), t1).await;
    assert!(b
        .delete_context(ContextScope::session("s-ctx"))
        .await
        .unwrap());
    assert!(!exists(&b, &old_key("s-ctx")).await);
    assert!(!b
        .delete_context(ContextScope::session("s-ctx"))
        .await
        .unwrap());
    let restarted = b
        .store_task_context("s-ctx", json!(2), ExpectedVersion::Absent)
        .await
        .unwrap();
    assert_eq!(
        restarted.version, 1,
        "a store after the delete starts again at 1"
    );

    b.create_session(NewSession::new("s-del", "u1"))
        .await
        .unwrap();
    old_store(&b, "s-del", &json!(1), t1).await;
    assert!(b.delete_session("s-del").await.unwrap());
    assert!(!exists(&b, &old_key("s-del")).await);
    assert_eq!(b.get_task_context("s-del").await.unwrap(), None);

    b.create_session(NewSession::new("s-idle", "u1"))
        .await
        .unwrap();
    old_store(&b, "s-idle", &json!(1), t1).await;
    b.store_context(
        ContextScope::user("u1"),
        json!("kept"),
        ExpectedVersion::Any,
        3,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let removed = b
        .cleanup_expired_sessions(Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!exists(&b, &old_key("s-idle")).await);
    assert_eq!(
        b.list_context_scopes(None, 10).await.unwrap(),
        vec![ContextScope::session("s-ctx"), ContextScope::user("u1")],
        "a user's context outlives the user's sessions"
    );
}

//! Task contexts the previous release wrote read through this one: a namespace left at
//! schema version 1 (one `task_contexts` row per session), its rows planted with raw SQL
//! exactly as that release's `store_task_context` wrote them, then opened by this release,
//! which migrates it. Each context is its session scope's current version, is listed, and
//! keeps working with compare-and-set; deleting or cleaning up its session removes it.

use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

mod previous_release;

const NAMESPACE: &str = "old";

/// Rows as the previous release wrote them: the version column is authoritative, and the
/// record is the context encoded with `session_id` and version 0.
const OLD_CONTEXTS: [(&str, i64, &str); 3] = [
    (
        "s1",
        3,
        r#"{"v":1,"kind":"task_context","data":{"session_id":"s1","value":{"plan":["a","b"],"step":3},"version":0,"updated_at":"2026-11-01T10:00:00.123456Z"}}"#,
    ),
    (
        "s:2",
        1,
        r#"{"v":1,"kind":"task_context","data":{"session_id":"s:2","value":"just text","version":0,"updated_at":"2026-11-02T08:30:00Z"}}"#,
    ),
    (
        "idle",
        7,
        r#"{"v":1,"kind":"task_context","data":{"session_id":"idle","value":[1,2,3],"version":0,"updated_at":"2026-10-01T00:00:00Z"}}"#,
    ),
];

/// The namespace the previous release left (its only migration), with its contexts.
fn plant_previous_release(path: &std::path::Path) {
    let conn = previous_release::schema_at(path, NAMESPACE, 1);
    for (session_id, version, record) in OLD_CONTEXTS {
        conn.execute(
            &format!(
                "INSERT INTO \"{NAMESPACE}.task_contexts\" (session_id, version, record) \
                 VALUES (?1, ?2, ?3)"
            ),
            (session_id, version, record.as_bytes()),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_of_the_previous_release_are_their_session_scopes_current_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    plant_previous_release(&path);

    let b = SqliteBackend::new(SqliteConfig::new(&path).with_namespace(NAMESPACE)).unwrap();
    b.initialize().await.unwrap();

    storage_testkit::compat::previous_release_contexts_read(&b).await;

    // The old table is gone, not left for a process of the previous release to write to.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old_tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [format!("{NAMESPACE}.task_contexts")],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(old_tables, 0);
}

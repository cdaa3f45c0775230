//! The stored counts retention's `keep_last` trusts (V4's `stored` columns): exact after
//! every path that adds or removes messages or artifact versions, and backfilled for what
//! the previous release stored (a namespace left at schema version 3, rows planted with raw
//! SQL as that release wrote them), so the first sweep by count removes exactly the oldest.

use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

mod previous_release;

const NAMESPACE: &str = "counted";

/// Series whose count differs from their rows, and counters of names without a version.
const MISCOUNTED: &str = "
    SELECT 'messages ' || c.session_id || ': ' || c.stored || ' counted, ' || count(m.sequence)
    FROM \"{ns}.message_counters\" AS c LEFT JOIN \"{ns}.messages\" AS m
        ON m.session_id = c.session_id
    GROUP BY c.session_id HAVING c.stored <> count(m.sequence)
    UNION ALL
    SELECT 'messages without a counter: ' || session_id FROM \"{ns}.messages\"
    WHERE session_id NOT IN (SELECT session_id FROM \"{ns}.message_counters\")
    UNION ALL
    SELECT 'artifacts ' || c.scope || '/' || c.name || ': ' || c.stored || ' counted, '
        || count(a.version)
    FROM \"{ns}.artifact_counters\" AS c LEFT JOIN \"{ns}.artifacts\" AS a
        ON a.scope = c.scope AND a.name = c.name
    GROUP BY c.scope, c.name HAVING c.stored <> count(a.version) OR c.stored = 0
    UNION ALL
    SELECT 'artifacts without a counter: ' || scope || '/' || name FROM \"{ns}.artifacts\" AS a
    WHERE NOT EXISTS (SELECT 1 FROM \"{ns}.artifact_counters\" AS c
        WHERE c.scope = a.scope AND c.name = a.name)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stay_exact_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counts.db");
    let b = SqliteBackend::new(SqliteConfig::new(&path).with_namespace(NAMESPACE)).unwrap();
    b.initialize().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let sql = MISCOUNTED.replace("{ns}", NAMESPACE);
    storage_testkit::counts::every_path(&b, async |step| {
        let wrong: Vec<String> = conn
            .prepare(&sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(wrong.is_empty(), "after {step}: {wrong:?}");
    })
    .await;
}

/// The namespace the previous release left (version 3), with its messages and artifact
/// versions.
fn plant_previous_release(path: &std::path::Path, ns: &str) {
    let conn = previous_release::schema_at(path, ns, 3);
    previous_release::plant_messages(&conn, ns);
    // As a save did: the counter first (the next version), then the version.
    for (name, count) in [("a", 4_u64), ("b", 1)] {
        conn.execute(
            &format!(
                "INSERT INTO \"{ns}.artifact_counters\" (scope, name, next_version) \
                 VALUES ('run1', ?1, ?2)"
            ),
            (name, count),
        )
        .unwrap();
        for version in 0..count {
            let meta = storage_testkit::counts::artifact_meta_record("run1", name, version);
            conn.execute(
                &format!(
                    "INSERT INTO \"{ns}.artifacts\" (scope, name, version, meta, data) \
                     VALUES ('run1', ?1, ?2, ?3, x'78')"
                ),
                (name, version, meta),
            )
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_the_previous_release_are_swept_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    plant_previous_release(&path, "old");
    let b = SqliteBackend::new(SqliteConfig::new(&path).with_namespace("old")).unwrap();
    b.initialize().await.unwrap();
    storage_testkit::counts::previous_release_swept_by_count(&b).await;
}

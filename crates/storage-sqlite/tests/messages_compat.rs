//! Messages the previous release wrote read and compact through this one: a namespace left
//! at schema version 2 (no `replaced_messages`, no `messages.compacted_from`), its rows
//! planted with raw SQL as that release's appends wrote them, then opened by this release,
//! which migrates it. The messages read back, compact (keeping what they replaced), and
//! rewind and pop as any message.

use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

const NAMESPACE: &str = "old";

/// The previous release's migrations, recorded as its `schema.rs` did.
const PREVIOUS: [(u32, &str, &str); 2] = [
    (
        1,
        "initial_schema",
        include_str!("../migrations/V1__initial_schema.sql"),
    ),
    (
        2,
        "context_versions",
        include_str!("../migrations/V2__context_versions.sql"),
    ),
];
const MIGRATION_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"{ns}.schema_migrations\" (\
     version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at_us INTEGER NOT NULL)";

/// A message record as the previous release encoded it (sequence 0: the row's column is
/// the number).
fn old_record(session_id: &str, n: i64) -> String {
    format!(
        r#"{{"v":1,"kind":"message","data":{{"session_id":"{session_id}","sequence":0,"role":"user","content":"m{n}","client_id":"c{n}","metadata":{{}},"created_at":"2026-11-01T10:00:0{n}Z"}}}}"#
    )
}

fn plant_previous_release(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    conn.execute_batch(&MIGRATION_TABLE.replace("{ns}", NAMESPACE))
        .unwrap();
    for (version, name, script) in PREVIOUS {
        conn.execute_batch(&script.replace("{ns}", NAMESPACE))
            .unwrap();
        conn.execute(
            &format!(
                "INSERT INTO \"{NAMESPACE}.schema_migrations\" (version, name, applied_at_us) \
                 VALUES (?1, ?2, 1790000000000000)"
            ),
            (version, name),
        )
        .unwrap();
    }
    for (session_id, count) in [("s1", 5), ("s2", 2)] {
        for n in 1..=count {
            conn.execute(
                &format!(
                    "INSERT INTO \"{NAMESPACE}.messages\" (session_id, sequence, client_id, record) \
                     VALUES (?1, ?2, ?3, ?4)"
                ),
                (
                    session_id,
                    n,
                    format!("c{n}"),
                    old_record(session_id, n).as_bytes(),
                ),
            )
            .unwrap();
        }
        conn.execute(
            &format!(
                "INSERT INTO \"{NAMESPACE}.message_counters\" (session_id, last_sequence) \
                 VALUES (?1, ?2)"
            ),
            (session_id, count),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_previous_release_compact_rewind_and_pop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    plant_previous_release(&path);

    let b = SqliteBackend::new(SqliteConfig::new(&path).with_namespace(NAMESPACE)).unwrap();
    b.initialize().await.unwrap();

    storage_testkit::compat::previous_release_messages_compact(&b).await;
}

//! A namespace as an earlier release left it, for the compatibility tests: that release's
//! migrations recorded as its `schema.rs` did, and its rows planted with raw SQL as its
//! code wrote them.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

/// The migrations of the earlier releases, oldest first; a release at version `n` had
/// the first `n`.
const MIGRATIONS: [(u32, &str, &str); 5] = [
    (
        1,
        "initial_schema",
        include_str!("../../migrations/V1__initial_schema.sql"),
    ),
    (
        2,
        "context_versions",
        include_str!("../../migrations/V2__context_versions.sql"),
    ),
    (
        3,
        "compaction",
        include_str!("../../migrations/V3__compaction.sql"),
    ),
    (
        4,
        "stored_counts",
        include_str!("../../migrations/V4__stored_counts.sql"),
    ),
    (
        5,
        "value_users",
        include_str!("../../migrations/V5__value_users.sql"),
    ),
];
const MIGRATION_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"{ns}.schema_migrations\" (\
     version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at_us INTEGER NOT NULL)";

/// The database file at `path` (WAL), namespace `ns` at migration `version`, as the
/// release that stopped there left it.
pub fn schema_at(path: &std::path::Path, ns: &str, version: usize) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    conn.execute_batch(&MIGRATION_TABLE.replace("{ns}", ns))
        .unwrap();
    for (number, name, script) in &MIGRATIONS[..version] {
        conn.execute_batch(&script.replace("{ns}", ns)).unwrap();
        conn.execute(
            &format!(
                "INSERT INTO \"{ns}.schema_migrations\" (version, name, applied_at_us) \
                 VALUES (?1, ?2, 1790000000000000)"
            ),
            (number, name),
        )
        .unwrap();
    }
    conn
}

/// A message record as the earlier releases encoded it (sequence 0: the row's column is
/// the number).
pub fn old_message_record(session_id: &str, n: i64) -> String {
    format!(
        r#"{{"v":1,"kind":"message","data":{{"session_id":"{session_id}","sequence":0,"role":"user","content":"m{n}","client_id":"c{n}","metadata":{{}},"created_at":"2026-11-01T10:00:0{n}Z"}}}}"#
    )
}

/// Messages as the earlier releases' appends wrote them into `ns`: `s1` with 5 (client ids
/// `c1`..), `s2` with 2, each session's counter at its last number.
pub fn plant_messages(conn: &rusqlite::Connection, ns: &str) {
    for (session_id, count) in [("s1", 5), ("s2", 2)] {
        for n in 1..=count {
            conn.execute(
                &format!(
                    "INSERT INTO \"{ns}.messages\" (session_id, sequence, client_id, record) \
                     VALUES (?1, ?2, ?3, ?4)"
                ),
                (
                    session_id,
                    n,
                    format!("c{n}"),
                    old_message_record(session_id, n).as_bytes(),
                ),
            )
            .unwrap();
        }
        conn.execute(
            &format!(
                "INSERT INTO \"{ns}.message_counters\" (session_id, last_sequence) \
                 VALUES (?1, ?2)"
            ),
            (session_id, count),
        )
        .unwrap();
    }
}

/// A checkpoint put as the earlier releases stored it into `ns`: its new values (a stored
/// value is never replaced), then its row, replacing a stored one in place; the row names
/// no column an earlier release did not have.
pub fn put_checkpoint(
    conn: &rusqlite::Connection,
    ns: &str,
    checkpoint: &storage_core::Checkpoint,
    new_versions: &storage_core::ChannelVersions,
) {
    for (channel, version, value) in checkpoint.new_blobs(new_versions) {
        conn.execute(
            &format!(
                "INSERT INTO \"{ns}.checkpoint_blobs\" (thread_id, ns, channel, version, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING"
            ),
            (
                &checkpoint.thread_id,
                &checkpoint.namespace,
                channel,
                version,
                storage_core::wire::encode_value(value).unwrap(),
            ),
        )
        .unwrap();
    }
    let run_id = checkpoint
        .metadata
        .get("run_id")
        .and_then(serde_json::Value::as_str);
    let versions = serde_json::to_string(&checkpoint.channel_versions).unwrap();
    let mut record = checkpoint.clone();
    record.channel_values.clear();
    conn.execute(
        &format!(
            "INSERT INTO \"{ns}.checkpoints\" \
             (thread_id, ns, checkpoint_id, run_id, versions, record) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (thread_id, ns, checkpoint_id) DO UPDATE SET \
             run_id = excluded.run_id, versions = excluded.versions, record = excluded.record"
        ),
        (
            &checkpoint.thread_id,
            &checkpoint.namespace,
            &checkpoint.id,
            run_id,
            versions,
            storage_core::wire::encode(&record).unwrap(),
        ),
    )
    .unwrap();
}

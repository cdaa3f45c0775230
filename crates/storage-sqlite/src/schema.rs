//! The schema: numbered SQL scripts embedded in the crate, applied by
//! [`SqliteBackend::initialize`](crate::SqliteBackend).
//!
//! Why not refinery (which PostgreSQL uses) or `PRAGMA user_version`: every table name
//! carries the namespace (several namespaces may share one file), so the scripts are
//! templates filled in at run time, and the applied versions are per namespace, which one
//! `user_version` per file cannot record. refinery's rusqlite driver also reads the applied
//! versions before it opens its (`DEFERRED`) transaction, so two processes initializing one
//! file at once could both decide to apply the same script. Here a migration is a write job like any other: it runs in
//! the writer's `BEGIN IMMEDIATE` transaction, so concurrent initializers (threads or
//! processes) take turns on SQLite's write lock, and each applies only what the other has
//! not. Applied versions are recorded in `"<namespace>.schema_migrations"`; running again
//! applies nothing.

use crate::engine::Db;
use crate::error::SqlResult;

/// The migrations, in order: (version, name, script with `{ns}` for the namespace).
const MIGRATIONS: &[(u32, &str, &str)] = &[
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
    (
        3,
        "compaction",
        include_str!("../migrations/V3__compaction.sql"),
    ),
    (
        4,
        "stored_counts",
        include_str!("../migrations/V4__stored_counts.sql"),
    ),
    (
        5,
        "value_users",
        include_str!("../migrations/V5__value_users.sql"),
    ),
    (
        6,
        "checkpoint_counts",
        include_str!("../migrations/V6__checkpoint_counts.sql"),
    ),
];

/// The table, per namespace, recording applied migration versions.
pub const MIGRATION_TABLE: &str = "schema_migrations";

/// The highest migration version this release ships.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"{ns}.schema_migrations\" (\
     version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at_us INTEGER NOT NULL)";
const APPLIED: &str = "SELECT coalesce(max(version), 0) FROM \"{ns}.schema_migrations\"";
const RECORD: &str =
    "INSERT INTO \"{ns}.schema_migrations\" (version, name, applied_at_us) VALUES (?1, ?2, ?3)";

/// Applies the pending migrations; runs inside the writer's transaction.
pub(crate) fn migrate(db: &Db<'_>, ns: &str) -> SqlResult<u32> {
    db.conn.execute_batch(&CREATE_TABLE.replace("{ns}", ns))?;
    let applied: u32 = db.prepare(APPLIED)?.query_row([], |row| row.get(0))?;
    for (version, name, script) in MIGRATIONS {
        if *version <= applied {
            continue;
        }
        db.conn.execute_batch(&script.replace("{ns}", ns))?;
        let now = storage_core::time::to_micros(storage_core::time::now());
        db.prepare(RECORD)?.execute((version, name, now))?;
    }
    Ok(latest_version())
}

/// The applied schema version of the namespace, if it was initialized.
pub(crate) fn applied_version(db: &Db<'_>) -> SqlResult<Option<u32>> {
    match db.prepare(APPLIED) {
        Ok(mut statement) => Ok(Some(statement.query_row([], |row| row.get(0))?)),
        // No migration table: the namespace was never initialized.
        Err(rusqlite::Error::SqliteFailure(_, Some(message)))
            if message.contains("no such table") =>
        {
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_numbered_in_order_and_name_the_namespace() {
        let versions: Vec<u32> = super::MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(versions.first(), Some(&1));
        for (_, _, script) in super::MIGRATIONS {
            assert!(script.contains("\"{ns}."));
        }
    }
}

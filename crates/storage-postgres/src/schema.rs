//! The schema: versioned migrations embedded in the crate, applied by
//! [`PostgresBackend::initialize`](crate::PostgresBackend) through refinery.
//!
//! Several processes may initialize the same namespace at once. Each takes a session-level
//! advisory lock keyed on the schema name, on a connection of its own that is closed
//! afterwards (so a cancelled `initialize` can never leave the lock held on a pooled
//! connection), then creates the schema if needed and applies the pending migrations in one
//! transaction. Applied versions are recorded in the schema's `schema_migrations` table;
//! running again applies nothing, and when every migration is applied already it writes
//! nothing either (no lock, no `CREATE SCHEMA`), so a standby or a read-only role opens.

use std::error::Error as _;

use storage_core::StorageError;

use crate::error::{Failure, PgResult};

refinery::embed_migrations!("migrations");

/// The table, inside the namespace's schema, recording applied migration versions.
pub const MIGRATION_TABLE: &str = "schema_migrations";

/// The highest migration version this release ships.
pub fn latest_version() -> u32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| migration.version())
        .max()
        .unwrap_or(0)
}

/// Creates the schema and applies pending migrations, under the namespace's advisory lock.
/// A schema that is current already is left alone without a write.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> PgResult<()> {
    match schema_state(client, schema).await {
        SchemaState::Current => return Ok(()),
        SchemaState::Foreign(why) => {
            return Err(Failure::Storage(StorageError::config(format!(
                "postgres schema {schema:?} {why}: open it with the release that migrated it"
            ))))
        }
        SchemaState::NeedsMigration => {}
    }
    let lock_key = format!("storage-postgres:migrate:{schema}");
    client
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&lock_key],
        )
        .await?;
    let applied = apply(client, schema).await;
    // Unlocking can only fail if the connection is gone, which releases the lock anyway;
    // the caller drops this connection either way.
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            &[&lock_key],
        )
        .await;
    applied
}

/// What the schema's `schema_migrations` says, read without a write.
enum SchemaState {
    /// Exactly this release's migrations, each with its checksum (what refinery would
    /// verify before applying nothing): nothing to do, so `initialize` opens a standby, a
    /// server in `default_transaction_read_only` or a read-only role.
    Current,
    /// Some of this release's migrations are missing (or the table cannot be read yet: no
    /// schema, no table, no privilege): the migration proper runs, with its errors.
    NeedsMigration,
    /// Versions this release does not ship, or shipped with other contents, or a table of
    /// another shape: no migration may run, on any server.
    Foreign(String),
}

async fn schema_state(client: &tokio_postgres::Client, schema: &str) -> SchemaState {
    // The schema name is a validated namespace ([a-z0-9_]).
    let query = format!("SELECT version, checksum FROM \"{schema}\".{MIGRATION_TABLE}");
    let Ok(rows) = client.query(&query, &[]).await else {
        return SchemaState::NeedsMigration;
    };
    let runner = migrations::runner();
    let embedded: std::collections::BTreeMap<i64, String> = runner
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.checksum().to_string()))
        .collect();
    let (mut unknown, mut changed) = (Vec::new(), Vec::new());
    for row in &rows {
        let (Ok(version), Ok(checksum)) = (
            row.try_get::<_, i32>(0),
            row.try_get::<_, Option<String>>(1),
        ) else {
            return SchemaState::Foreign(format!(
                "has a {MIGRATION_TABLE} table of another shape than this release's (integer \
                 version, text checksum)"
            ));
        };
        match embedded.get(&i64::from(version)) {
            None => unknown.push(version),
            Some(shipped) if checksum.as_deref() != Some(shipped.as_str()) => changed.push(version),
            Some(_) => {}
        }
    }
    if !unknown.is_empty() || !changed.is_empty() {
        return SchemaState::Foreign(format!(
            "holds migrations this release does not ship (versions {unknown:?}) or ships \
             with other contents (versions {changed:?})"
        ));
    }
    if rows.len() == embedded.len() {
        SchemaState::Current
    } else {
        SchemaState::NeedsMigration
    }
}

async fn apply(client: &mut tokio_postgres::Client, schema: &str) -> PgResult<()> {
    // The schema name is a validated namespace ([a-z0-9_]); quoting keeps it an identifier.
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await?;
    let mut runner = migrations::runner().set_grouped(true);
    runner
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await
        .map_err(|err| Failure::Storage(migration_error(schema, &err)))?;
    Ok(())
}

/// A refinery error as ours: a lost connection stays a temporary `Connection` error.
fn migration_error(schema: &str, err: &refinery::Error) -> StorageError {
    let message = format!("migrating schema {schema:?} failed: {err}");
    let mut source = err.source();
    while let Some(current) = source {
        if let Some(driver) = current.downcast_ref::<tokio_postgres::Error>() {
            if driver.as_db_error().is_none() {
                return StorageError::connection(message);
            }
        }
        source = current.source();
    }
    StorageError::backend(message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        let runner = super::migrations::runner();
        // Embedded in the order the directory lists them, which is no particular order;
        // refinery sorts them by version before applying.
        let mut versions: Vec<u32> = runner
            .get_migrations()
            .iter()
            .map(|m| m.version())
            .collect();
        versions.sort_unstable();
        let expected: Vec<u32> = (1..=versions.len() as u32).collect();
        assert_eq!(versions, expected);
        assert_eq!(super::latest_version(), *versions.last().unwrap());
    }
}

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
    if is_current(client).await {
        return Ok(());
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

/// Whether exactly this release's migrations are applied, each with its checksum (what
/// refinery would verify before applying nothing). Read only: so `initialize` opens a
/// standby, a server in `default_transaction_read_only` or a read-only role once the schema
/// exists. Any failure to tell (no table yet, no privilege) answers `false`, and the
/// migration proper runs, with its errors.
async fn is_current(client: &mut tokio_postgres::Client) -> bool {
    // The connection's search_path is the namespace's schema.
    let Ok(applied) = refinery::AsyncMigrate::get_applied_migrations(client, MIGRATION_TABLE).await
    else {
        return false;
    };
    let runner = migrations::runner();
    let embedded = runner.get_migrations();
    applied.len() == embedded.len()
        && embedded.iter().all(|migration| {
            applied.iter().any(|done| {
                done.version() == migration.version() && done.checksum() == migration.checksum()
            })
        })
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

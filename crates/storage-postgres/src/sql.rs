//! The one path every statement takes: [`Sql`], on a pooled connection or a transaction.

use async_trait::async_trait;
use storage_core::StorageError;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::error::PgResult;

/// Prepared, cached statements on a pooled connection or inside a transaction.
///
/// Every statement goes through here: it is prepared once per connection (deadpool's
/// statement cache) and always executed with parameters, never with values in its text.
#[async_trait]
pub(crate) trait Sql: Send + Sync {
    /// The cached prepared statement for `sql`.
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error>;
    /// Runs a prepared statement and returns its rows.
    async fn run_query(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>;
    /// Runs a prepared statement and returns how many rows it affected.
    async fn run_execute(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>;

    /// Every row of `sql`.
    async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.run_query(&statement, params).await?)
    }

    /// The first row of `sql`, if any.
    async fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Option<Row>> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    /// The one row `sql` always returns (an aggregate).
    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Row> {
        self.opt(sql, params).await?.ok_or_else(|| {
            StorageError::backend(format!("statement returned no row: {sql}")).into()
        })
    }

    /// How many rows `sql` affected.
    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
        let statement = self.statement(sql).await?;
        Ok(self.run_execute(&statement, params).await?)
    }
}

#[async_trait]
impl Sql for deadpool_postgres::ClientWrapper {
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.prepare_cached(sql).await
    }
    async fn run_query(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        tokio_postgres::Client::query(self, statement, params).await
    }
    async fn run_execute(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        tokio_postgres::Client::execute(self, statement, params).await
    }
}

#[async_trait]
impl Sql for deadpool_postgres::Transaction<'_> {
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.prepare_cached(sql).await
    }
    async fn run_query(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        tokio_postgres::Transaction::query(self, statement, params).await
    }
    async fn run_execute(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        tokio_postgres::Transaction::execute(self, statement, params).await
    }
}

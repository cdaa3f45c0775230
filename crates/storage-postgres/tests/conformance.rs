//! The whole conformance suite against PostgreSQL: `STORAGE_TEST_POSTGRES_URL`, or a
//! throwaway cluster started for this test process.

use std::sync::Arc;

use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    let config = PostgresConfig::from_url(storage_testkit::servers::postgres::postgres_url())
        .with_namespace(namespace)
        .with_pool_size(8);
    Arc::new(PostgresBackend::new(config).expect("valid postgres config"))
}

storage_testkit::conformance_tests!(backend);

//! The conformance suite on a real S3-protocol server: `STORAGE_TEST_S3_URL`, or a
//! throwaway moto server this test process starts and stops.

use std::sync::Arc;

use storage_core::StorageBackend;
use storage_object::{ObjectBackend, ObjectConfig};

/// A backend on the test S3 server for `namespace`.
pub fn s3_config(namespace: &str) -> ObjectConfig {
    let target = storage_testkit::servers::s3::s3_target();
    ObjectConfig::new(format!("s3://{}/conformance", target.bucket))
        .with_namespace(namespace)
        .with_option("aws_endpoint", target.endpoint)
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", target.access_key_id)
        .with_option("aws_secret_access_key", target.secret_access_key)
        .with_option("aws_region", target.region)
}

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    Arc::new(ObjectBackend::new(s3_config(&namespace)).expect("valid object config"))
}

storage_testkit::conformance_tests!(backend);

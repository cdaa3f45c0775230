//! S3 throttling (`503 SlowDown`), between the backend and a real S3-protocol server (moto).
//!
//! Throttling that ends within the retry budget (`object.max_retries`, backing off from
//! 50 ms, and `object.retry_timeout_ms`) is not seen by the caller: object_store retries,
//! and the write lands. Throttling that outlasts it is a
//! temporary `Backend` error that says so (it was a permanent "object store error"), the
//! refused write stored nothing, and the same backend writes once the throttling stops.

use std::time::Duration;

use storage_core::prelude::*;
use storage_core::{ErrorKind, NewArtifact};
use storage_object::{ObjectBackend, ObjectConfig};
use storage_testkit::servers::proxy::ThrottlingProxy;
use storage_testkit::servers::s3::MotoServer;

const BUCKET: &str = "throttled";

/// A backend on the S3 endpoint at loopback `port`, with its retry budget.
fn backend_at(port: u16, max_retries: usize, retry_timeout: Duration) -> ObjectBackend {
    let mut config = ObjectConfig::new(format!("s3://{BUCKET}/artifacts"))
        .with_namespace("throttled")
        .with_option("aws_endpoint", format!("http://127.0.0.1:{port}"))
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", "testing")
        .with_option("aws_secret_access_key", "testing")
        .with_option("aws_region", "us-east-1");
    config.max_retries = max_retries;
    config.retry_timeout_ms = u64::try_from(retry_timeout.as_millis()).unwrap();
    ObjectBackend::new(config).unwrap()
}

fn backend_through(
    proxy: &ThrottlingProxy,
    max_retries: usize,
    retry_timeout: Duration,
) -> ObjectBackend {
    backend_at(proxy.port(), max_retries, retry_timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_temporary_and_stores_nothing() {
    let moto = MotoServer::start();
    moto.create_bucket(BUCKET);
    let port = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();

    // Throttling shorter than the retry budget: the save waits it out.
    let proxy = ThrottlingProxy::to(port, true);
    let patient = backend_through(&proxy, 20, Duration::from_secs(20));
    let ends = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.throttle(false);
    };
    let (saved, ()) = tokio::join!(
        patient.save_artifact("run", "a", NewArtifact::new("text/plain", "first")),
        ends
    );
    saved.unwrap();
    assert!(proxy.refused() >= 1, "the save was never throttled");
    let read = patient
        .get_artifact("run", "a", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.data, b"first".as_slice());

    // Throttling that outlasts it, on a client that has not connected yet.
    proxy.throttle(true);
    let hasty = backend_through(&proxy, 3, Duration::from_millis(300));
    let err = hasty
        .save_artifact("run", "b", NewArtifact::new("text/plain", "second"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.is_temporary(), "throttling is temporary: {err}");
    assert!(err.to_string().contains("throttling"), "{err}");
    assert!(err.to_string().contains("503"), "{err}");

    proxy.throttle(false);
    assert!(hasty
        .get_artifact("run", "b", None)
        .await
        .unwrap()
        .is_none());
    hasty
        .save_artifact("run", "b", NewArtifact::new("text/plain", "second"))
        .await
        .unwrap();
    let read = hasty.get_artifact("run", "b", None).await.unwrap().unwrap();
    assert_eq!(read.data, b"second".as_slice());
}

/// A full disk behind S3 (MinIO answers `507 XMinioStorageFull`) is the full-disk error,
/// and an endpoint nobody listens on, after retries, a lost connection: both were a
/// `Timeout` that the store "did not answer in time" (the retry error's text names its
/// `retry_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_and_a_dead_endpoint_are_named_after_retries() {
    let moto = MotoServer::start();
    let port = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let full =
        ThrottlingProxy::answering(port, true, 507, "Insufficient Storage", "XMinioStorageFull");
    let err = backend_through(&full, 2, Duration::from_secs(5))
        .save_artifact("run", "a", NewArtifact::new("text/plain", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.is_temporary(), "{err}");
    assert!(err.to_string().contains("disk is full"), "{err}");

    let dead = storage_testkit::servers::free_port();
    let err = backend_at(dead, 2, Duration::from_secs(5))
        .save_artifact("run", "a", NewArtifact::new("text/plain", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}

//! A server that accepts TCP and never answers: `initialize` and `health_check` fail with a
//! `Connection` or `Timeout` error within the connect and command timeouts (plus slack for
//! a loaded machine), naming the host and port, never showing the password.

use std::time::{Duration, Instant};

use storage_core::{ErrorKind, StorageBackend, StorageError};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::hung::HungServer;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Correctness bound, not a benchmark: the connect timeout and generous slack.
const BOUND: Duration = Duration::from_secs(6);
const PASSWORD: &str = "hung/pa#ss w?rd@x";

fn config(port: u16) -> RedisConfig {
    let url = format!(
        "redis://:{}@127.0.0.1:{port}/0",
        "hung%2Fpa%23ss%20w%3Frd%40x"
    );
    RedisConfig::new(url)
        .with_namespace("hung_test")
        .with_timeouts(CONNECT_TIMEOUT, CONNECT_TIMEOUT, CONNECT_TIMEOUT)
}

/// Awaits `call`, failing the test (instead of hanging it) past the bound.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("no answer within {BOUND:?}: the call hangs"))
}

fn check(err: &StorageError, elapsed: Duration, port: u16) {
    let shown = err.to_string();
    assert!(
        matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
        "{shown}"
    );
    assert!(err.is_temporary(), "{shown}");
    assert!(elapsed < BOUND, "took {elapsed:?}: {shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains("hung%2Fpa"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_and_health_are_bounded_by_the_connect_timeout() {
    let server = HungServer::start();
    let backend = RedisBackend::new(config(server.port())).unwrap();

    let started = Instant::now();
    let err = bounded(backend.initialize()).await.unwrap_err();
    check(&err, started.elapsed(), server.port());

    let started = Instant::now();
    let err = bounded(backend.health_check()).await.unwrap_err();
    check(&err, started.elapsed(), server.port());
    assert!(server.accepted() >= 1, "the test server was never reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_with_its_cause() {
    let port = storage_testkit::servers::free_port();
    let backend = RedisBackend::new(config(port)).unwrap();
    let started = Instant::now();
    let err = bounded(backend.initialize()).await.unwrap_err();
    check(&err, started.elapsed(), port);
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let shown = err.to_string().to_ascii_lowercase();
    assert_eq!(
        shown.matches("refused").count(),
        1,
        "the cause is said exactly once: {shown}"
    );
}

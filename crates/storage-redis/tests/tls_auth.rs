//! Live TLS and password authentication against throwaway servers: `requirepass`, TLS
//! (`rediss://`) with the server's certificate verified against a test authority, and the
//! clear, secret-free errors of a wrong password or an untrusted certificate.

use std::time::Duration;

use storage_core::{ErrorKind, NewSession, SessionStore, StorageBackend, StorageError};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::redis::RedisServer;
use storage_testkit::servers::tls::{Security, TestCerts};

/// Every character a careless URL trips on.
const PASSWORD: &str = "p/a#b?c@d:e'f\"g h%i\\jé漢";
const WRONG: &str = "wr/ong#pass word";

fn config(url: String, ca: Option<std::path::PathBuf>) -> RedisConfig {
    RedisConfig {
        tls_ca_file: ca,
        ..RedisConfig::new(url)
            .with_namespace("tls_auth")
            .with_pool_size(2)
            .with_timeouts(
                Duration::from_secs(3),
                Duration::from_secs(3),
                Duration::from_secs(5),
            )
    }
}

fn assert_hidden(err: &StorageError) {
    let shown = format!("{err} {err:?}");
    for secret in [PASSWORD, WRONG, "p%2Fa%23b", "wr%2Fong"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

async fn round_trip(backend: &RedisBackend) {
    backend.initialize().await.unwrap();
    let id = format!("s-{}", uuid::Uuid::now_v7().simple());
    backend
        .create_session(NewSession::new(id.as_str(), "alice"))
        .await
        .unwrap();
    let session = backend.get_session(&id).await.unwrap().unwrap();
    assert_eq!(session.user_id, "alice");
    backend.health_check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_right_wrong_and_missing_password() {
    let server = RedisServer::secured(Security::password(PASSWORD));
    round_trip(&RedisBackend::new(config(server.url_with_password(PASSWORD), None)).unwrap()).await;

    for url in [server.url_with_password(WRONG), server.url()] {
        let backend = RedisBackend::new(config(url, None)).unwrap();
        let err = backend.initialize().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(!err.is_temporary(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{err}"
        );
        assert_hidden(&err);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_verified_certificate_and_a_password() {
    let server = RedisServer::secured(Security::tls(Some(PASSWORD)));
    let ca = server.ca_file().unwrap().to_owned();
    assert!(server.url().starts_with("rediss://"));
    round_trip(
        &RedisBackend::new(config(server.url_with_password(PASSWORD), Some(ca.clone()))).unwrap(),
    )
    .await;

    // An authority the client does not trust, or the system roots: refused, Config.
    let dir = tempfile::tempdir().unwrap();
    let untrusted = TestCerts::untrusted_ca(dir.path());
    for trusted in [Some(untrusted), None] {
        let backend =
            RedisBackend::new(config(server.url_with_password(PASSWORD), trusted)).unwrap();
        let err = backend.initialize().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(!err.is_temporary(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{err}"
        );
        assert_hidden(&err);
    }

    // A wrong password over TLS.
    let backend = RedisBackend::new(config(server.url_with_password(WRONG), Some(ca))).unwrap();
    let err = backend.initialize().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_hidden(&err);
}

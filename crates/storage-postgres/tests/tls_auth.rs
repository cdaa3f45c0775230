//! Live TLS and password authentication against throwaway clusters: a scram-sha-256
//! password, TLS with the server's certificate verified against a test authority, and
//! the clear, secret-free errors of a wrong password or an untrusted certificate.

use std::time::Duration;

use storage_core::{ErrorKind, NewSession, SessionStore, StorageBackend, StorageError};
use storage_postgres::{PostgresBackend, PostgresConfig, TlsMode};
use storage_testkit::servers::postgres::PostgresServer;
use storage_testkit::servers::tls::{Security, TestCerts};

/// Every character a careless URL or connection string trips on.
const PASSWORD: &str = "p/a#b?c@d:e'f\"g h%i\\jé漢";
const WRONG: &str = "wr/ong#pass word";

fn config(url: String) -> PostgresConfig {
    PostgresConfig::from_url(url)
        .with_namespace("tls_auth")
        .with_pool_size(2)
        .with_timeouts(
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
}

fn assert_hidden(err: &StorageError) {
    let shown = format!("{err} {err:?}");
    for secret in [PASSWORD, WRONG, "p%2Fa%23b", "wr%2Fong"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

async fn round_trip(backend: &PostgresBackend) {
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
async fn scram_password_in_url_and_in_parts() {
    let server = PostgresServer::secured(Security::password(PASSWORD));
    // In the URL, percent-encoded.
    let backend = PostgresBackend::new(config(server.url_with_password(PASSWORD))).unwrap();
    round_trip(&backend).await;
    // In the parts, as it is.
    let parts = PostgresConfig {
        url: None,
        host: "127.0.0.1".into(),
        port: server.port(),
        user: "postgres".into(),
        password: Some(PASSWORD.into()),
        ..config(String::new())
    };
    round_trip(&PostgresBackend::new(parts).unwrap()).await;

    // A wrong password: Config, not temporary, naming the server, hiding the secrets.
    let wrong = PostgresBackend::new(config(server.url_with_password(WRONG))).unwrap();
    let err = wrong.initialize().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{err}"
    );
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    assert_hidden(&err);
    // No password at all.
    let none = PostgresBackend::new(config(server.url())).unwrap();
    let err = none.initialize().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_hidden(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_verified_certificate_and_a_password() {
    let server = PostgresServer::secured(Security::tls(Some(PASSWORD)));
    let ca = server.ca_file().unwrap().to_owned();
    let tls = |url: String, ca: Option<std::path::PathBuf>| PostgresConfig {
        tls: TlsMode::Require,
        tls_ca_file: ca,
        ..config(url)
    };
    // Verified against the test authority; the host name 127.0.0.1 is in the certificate.
    round_trip(
        &PostgresBackend::new(tls(server.url_with_password(PASSWORD), Some(ca.clone()))).unwrap(),
    )
    .await;
    // `sslmode=require` in the URL asks for TLS too.
    let url = format!("{}?sslmode=require", server.url_with_password(PASSWORD));
    round_trip(
        &PostgresBackend::new(PostgresConfig {
            tls_ca_file: Some(ca.clone()),
            ..config(url)
        })
        .unwrap(),
    )
    .await;

    // Plain text is refused by the server (hostssl only).
    let plain = PostgresBackend::new(config(server.url_with_password(PASSWORD))).unwrap();
    let err = plain.initialize().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_hidden(&err);

    // A certificate from an authority the client does not trust: refused, Config.
    let dir = tempfile::tempdir().unwrap();
    let untrusted = TestCerts::untrusted_ca(dir.path());
    for ca in [Some(untrusted), None] {
        let backend = PostgresBackend::new(tls(server.url_with_password(PASSWORD), ca)).unwrap();
        let err = backend.initialize().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(!err.is_temporary(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{err}"
        );
        assert!(err.to_string().contains("certificate"), "{err}");
        assert_hidden(&err);
    }

    // A wrong password over TLS.
    let err = PostgresBackend::new(tls(server.url_with_password(WRONG), Some(ca)))
        .unwrap()
        .initialize()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_hidden(&err);
}

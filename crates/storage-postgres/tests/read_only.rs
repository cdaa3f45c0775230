//! A server that turns read-only under the pool, as a failover's old primary does.
//!
//! A write it refuses (SQLSTATE 25006) is a temporary `Backend` error that says why, and
//! changes nothing. The pooled connections opened before that refusal are not handed out
//! again: the next write opens a new connection, which a proxy (standing in for the DNS name
//! or load balancer a failover re-points) now leads to the new primary. Before, the pool
//! kept handing out the connection to the old primary, and every write failed until the
//! process restarted.

use storage_core::prelude::*;
use storage_core::{ErrorKind, NewMessage, NewSession, StorageError};
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::scenarios::demotion;
use storage_testkit::servers::postgres::PostgresServer;
use storage_testkit::servers::proxy::SwitchProxy;
use tokio_postgres::NoTls;

/// Runs each statement on its own (`ALTER SYSTEM` refuses a multi-statement string, which
/// is one transaction).
async fn sql(url: &str, statements: &[&str]) {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    for statement in statements {
        client.batch_execute(statement).await.unwrap();
    }
    drop(client);
    let _ = driver.await;
}

/// Turns `default_transaction_read_only` on or off for every session of the server, the
/// open ones included (a reload reaches them).
async fn set_read_only(server: &PostgresServer, on: bool) {
    let value = if on { "on" } else { "off" };
    sql(
        &server.url(),
        &[
            "SET default_transaction_read_only = off",
            &format!("ALTER SYSTEM SET default_transaction_read_only = {value}"),
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    // The reload reaches each backend process at its next command; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

fn backend_at(url: String) -> PostgresBackend {
    let config = PostgresConfig::from_url(url)
        .with_namespace("read_only_test")
        .with_pool_size(4);
    PostgresBackend::new(config).unwrap()
}

fn assert_read_only_refusal(err: &StorageError) {
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.is_temporary(),
        "a standby's refusal is temporary: {err}"
    );
    let shown = err.to_string();
    assert!(shown.contains("read-only"), "{shown}");
    assert!(shown.contains("25006"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_refuses_writes_for_now_and_changes_nothing() {
    let server = PostgresServer::start();
    let backend = backend_at(server.url());
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("s", "u"))
        .await
        .unwrap();
    backend
        .append_message("s", NewMessage::new("user", "before"))
        .await
        .unwrap();

    set_read_only(&server, true).await;
    let err = backend
        .append_message("s", NewMessage::new("user", "refused"))
        .await
        .unwrap_err();
    assert_read_only_refusal(&err);
    // Reads go on; the refused write left nothing.
    let history = backend.get_conversation_history("s", 10).await.unwrap();
    assert_eq!(history.len(), 1);
    // A process opening the storage now (a reader, `storectl ui`) initializes: the schema
    // is current, so nothing is written (it failed on `CREATE SCHEMA IF NOT EXISTS`).
    let reader = backend_at(server.url());
    reader.initialize().await.unwrap();
    assert_eq!(
        reader
            .get_conversation_history("s", 10)
            .await
            .unwrap()
            .len(),
        1
    );

    set_read_only(&server, false).await;
    backend
        .append_message("s", NewMessage::new("user", "after"))
        .await
        .unwrap();
    let contents: Vec<String> = backend
        .get_conversation_history("s", 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.content.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["before", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_pool_leaves_the_old_primary() {
    let old_primary = PostgresServer::start();
    let new_primary = PostgresServer::start();
    // The new primary holds the schema too (it would be a copy of the old one).
    backend_at(new_primary.url()).initialize().await.unwrap();
    let proxy = SwitchProxy::to(old_primary.port());
    let url = old_primary.url().replace(
        &format!(":{}/", old_primary.port()),
        &format!(":{}/", proxy.port()),
    );
    assert_ne!(url, old_primary.url(), "the URL goes through the proxy");
    let backend = backend_at(url);
    backend.initialize().await.unwrap();
    demotion::fill_pool(&backend, 4).await;

    // The failover: the old primary turns read-only, new connections lead to the new one.
    set_read_only(&old_primary, true).await;
    proxy.switch_to(new_primary.port());
    demotion::writes_leave_the_demoted_primary(
        &backend,
        &backend_at(new_primary.url()),
        "read-only",
    )
    .await;
}

/// A schema a newer release migrated (a version this one does not ship) is refused as
/// such, before any write, on a writable server and on a read-only one alike (on a
/// read-only one it was the read-only error, which invites a retry that cannot help).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_a_newer_release_migrated_is_refused_as_such() {
    let server = PostgresServer::start();
    backend_at(server.url()).initialize().await.unwrap();
    sql(
        &server.url(),
        &[
            "INSERT INTO read_only_test.schema_migrations (version, name, applied_on, checksum) \
           VALUES (99, 'future', '', '1')",
        ],
    )
    .await;
    let assert_refused = |err: StorageError| {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(!err.is_temporary(), "{err}");
        assert!(err.to_string().contains("[99]"), "{err}");
    };
    assert_refused(backend_at(server.url()).initialize().await.unwrap_err());
    set_read_only(&server, true).await;
    assert_refused(backend_at(server.url()).initialize().await.unwrap_err());
}

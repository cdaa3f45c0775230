//! A session's activity indexes live in another slot than its record, so no script writes
//! both, and a failure can land between the two. A new or imported session is indexed
//! first: a write refused after that leaves an index entry without its record, which
//! readers skip, never a session that no listing or cleanup finds.
//!
//! The server refuses the index write itself here: an ACL user whose key patterns leave out
//! one index key gets `NOPERM` for it and nothing else, as a full server or a dropped
//! connection could refuse one command of the two.

use deadpool_redis::redis;
use storage_core::prelude::*;
use storage_core::{NewSession, SessionQuery};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::servers::redis::RedisServer;

const NAMESPACE: &str = "order";

/// A backend on the default user (every key), and one on user `app`, whose keys are set
/// per test with [`allow_keys`].
fn backends(server: &RedisServer) -> (RedisBackend, RedisBackend) {
    let admin = RedisBackend::new(RedisConfig::new(server.url()).with_namespace(NAMESPACE));
    let url = format!("redis://app:secret@127.0.0.1:{}", server.port());
    let app = RedisBackend::new(RedisConfig::new(url).with_namespace(NAMESPACE));
    (admin.unwrap(), app.unwrap())
}

/// Gives user `app` every command and exactly these key patterns.
async fn allow_keys(admin: &RedisBackend, patterns: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg(
        &[
            "SETUSER",
            "app",
            "on",
            ">secret",
            "&*",
            "+@all",
            "resetkeys",
        ][..],
    );
    for pattern in patterns {
        cmd.arg(format!("~{pattern}"));
    }
    let () = admin.raw_query(&cmd).await.unwrap();
}

/// Every key of this namespace's records (`storage{order:...}`) and the namespace-wide
/// keys named, leaving the others out.
fn records_and(namespace_keys: &[&str]) -> Vec<String> {
    let mut patterns = vec![format!("storage{{{NAMESPACE}:*")];
    patterns.extend(
        namespace_keys
            .iter()
            .map(|key| format!("storage{{{NAMESPACE}}}:{key}")),
    );
    patterns
}

async fn allow(admin: &RedisBackend, patterns: Vec<String>) {
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    allow_keys(admin, &patterns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_index_write_fails_is_not_left_unlisted() {
    let server = RedisServer::start();
    let (admin, app) = backends(&server);
    admin.initialize().await.unwrap();
    allow(&admin, records_and(&["user:*", "run:*"])).await;

    let err = app
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission"), "{err}");
    let listed = |page: storage_core::Page<storage_core::Session>| {
        page.items.iter().any(|session| session.id == "s1")
    };
    let exists = admin.get_session("s1").await.unwrap().is_some();
    let is_listed = listed(admin.list_sessions(SessionQuery::default()).await.unwrap());
    assert!(
        !exists || is_listed,
        "a failed create left session s1 stored but in no listing (so no cleanup finds it)"
    );

    // An import (as `storectl migrate` makes) refused the same way.
    let imported = NewSession::new("s2", "u1").into_session(storage_core::time::now());
    app.import_session(imported).await.unwrap_err();
    let exists = admin.get_session("s2").await.unwrap().is_some();
    let is_listed = admin
        .list_sessions(SessionQuery::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|session| session.id == "s2");
    assert!(
        !exists || is_listed,
        "a failed import left session s2 stored but in no listing"
    );

    // With the index writable again, the retried create is stored and listed.
    allow_keys(&admin, &["*"]).await;
    app.create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    assert!(listed(
        admin.list_sessions(SessionQuery::default()).await.unwrap()
    ));
    let for_user = SessionQuery {
        user_id: Some("u1".into()),
        ..SessionQuery::default()
    };
    assert!(listed(admin.list_sessions(for_user).await.unwrap()));
}

/// A create, or an import with an hour-old activity (as `storectl migrate` brings), racing
/// a delete of the same id: whichever wins, a stored session is listed, and one that is
/// gone leaves no entry behind. (A delete removed the entries of a create or import that
/// stored its record in between: 29 of 400 creates after indexing moved first; an import's
/// old score was not protected by a bound on scores either.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_racing_a_delete_of_the_same_id_is_listed_if_stored() {
    let server = RedisServer::start();
    let (admin, _) = backends(&server);
    admin.initialize().await.unwrap();
    let backend = std::sync::Arc::new(admin);
    let mut unlisted = Vec::new();
    let mut leftover = Vec::new();
    for round in 0..600u64 {
        // Each id is written three times: created, imported, created again.
        let id = format!("r{}", round / 3);
        let (writer, deleter) = (backend.clone(), backend.clone());
        let (written_id, deleted_id) = (id.clone(), id.clone());
        let write = tokio::spawn(async move {
            let session = NewSession::new(written_id, "u");
            if round % 3 == 1 {
                let an_hour_ago = storage_core::time::now() - std::time::Duration::from_secs(3_600);
                let mut imported = session.into_session(an_hour_ago);
                imported.last_activity = an_hour_ago;
                writer.import_session(imported).await
            } else {
                writer.create_session(session).await.map(drop)
            }
        });
        let delete = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_micros(round % 7 * 20)).await;
            deleter.delete_session(&deleted_id).await
        });
        let _ = write.await.unwrap();
        delete.await.unwrap().unwrap();
        let stored = backend.get_session(&id).await.unwrap().is_some();
        let indexed: Option<f64> = backend
            .raw_query(
                redis::cmd("ZSCORE")
                    .arg(format!("storage{{{NAMESPACE}}}:activity"))
                    .arg(&id),
            )
            .await
            .unwrap();
        if stored && indexed.is_none() {
            unlisted.push(id);
        } else if !stored && indexed.is_some() {
            leftover.push(id);
        }
    }
    assert!(
        unlisted.is_empty(),
        "stored but in no listing: {unlisted:?}"
    );
    // A stale entry is harmless (readers skip it) and cleanup removes it.
    backend
        .cleanup_expired_sessions(std::time::Duration::ZERO)
        .await
        .unwrap();
    let entries: Vec<String> = backend
        .raw_query(
            redis::cmd("ZRANGE")
                .arg(format!("storage{{{NAMESPACE}}}:activity"))
                .arg(0)
                .arg(-1),
        )
        .await
        .unwrap();
    assert!(
        entries.is_empty(),
        "left after cleanup: {entries:?} (before: {leftover:?})"
    );
}

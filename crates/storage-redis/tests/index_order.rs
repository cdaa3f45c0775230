//! Writes whose namespace-wide index lives in another slot than the record (the session
//! activity indexes, the run index of checkpoints) cannot be one script, so a failure can
//! land between the two. The index is written first: a write refused after it leaves an
//! index entry without its record, which readers skip, never a record that no listing,
//! cleanup or `delete_for_runs` finds.
//!
//! The server refuses the index write itself here: an ACL user whose key patterns leave out
//! one index key gets `NOPERM` for it and nothing else, as a full server or a dropped
//! connection could refuse one command of the two.

use deadpool_redis::redis;
use serde_json::json;
use storage_core::prelude::*;
use storage_core::{Checkpoint, NewSession, SessionQuery};
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

fn checkpoint(thread: &str, id: &str, run: &str) -> Checkpoint {
    let mut cp = Checkpoint::new(thread, "", id);
    cp.channel_versions.insert("state".into(), "1".into());
    cp.channel_values.insert("state".into(), json!(id).into());
    cp.metadata.insert("run_id".into(), json!(run));
    cp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_run_index_write_fails_is_still_deleted_with_its_run() {
    let server = RedisServer::start();
    let (admin, app) = backends(&server);
    admin.initialize().await.unwrap();
    let no_run_index = || records_and(&["activity", "user:*"]);

    allow(&admin, no_run_index()).await;
    let cp = checkpoint("t", "cp-1", "r1");
    let new = cp.all_versions();
    app.put_checkpoint(cp, new).await.unwrap_err();
    allow_keys(&admin, &["*"]).await;
    app.delete_for_runs(&["r1".to_owned()]).await.unwrap();
    assert!(
        admin
            .get_checkpoint("t", "", Some("cp-1"))
            .await
            .unwrap()
            .is_none(),
        "a checkpoint of run r1 survived delete_for_runs"
    );

    // A copy whose run index write fails, the same way.
    let cp = checkpoint("src", "cp-2", "r2");
    let new = cp.all_versions();
    app.put_checkpoint(cp, new).await.unwrap();
    allow(&admin, no_run_index()).await;
    app.copy_thread("src", "dst").await.unwrap_err();
    allow_keys(&admin, &["*"]).await;
    app.delete_for_runs(&["r2".to_owned()]).await.unwrap();
    for thread in ["src", "dst"] {
        assert!(
            admin
                .get_checkpoint(thread, "", None)
                .await
                .unwrap()
                .is_none(),
            "a checkpoint of run r2 survived delete_for_runs in thread {thread}"
        );
    }
}

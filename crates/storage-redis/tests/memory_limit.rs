//! Redis with a memory limit, on throwaway servers.
//!
//! Under `maxmemory-policy noeviction` a full server refuses writes: each refusal is a
//! temporary `Backend` error that says Redis is out of memory (it was a permanent "redis
//! error" before), nothing acknowledged is lost, and the same backend writes again once
//! the limit is raised. A server that may evict keys (`maxmemory` with another policy)
//! would drop acknowledged writes under pressure, so `initialize` refuses it with a
//! `Config` error naming the node and both settings, unless `redis.allow_eviction` accepts
//! the loss, and `health_check` names it in its details.

use deadpool_redis::redis;
use serde_json::json;
use storage_core::ext::TaskContextStoreExt;
use storage_core::prelude::*;
use storage_core::{
    CheckpointKey, ErrorKind, ExpectedVersion, NewArtifact, NewMessage, NewSession, StorageError,
};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{filled_checkpoint, filler};
use storage_testkit::servers::redis::{RedisCluster, RedisServer};

fn cmd(name: &str, args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(name);
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

async fn config_set(backend: &RedisBackend, name: &str, value: &str) {
    let () = backend
        .raw_query(&cmd("CONFIG", &["SET", name, value]))
        .await
        .unwrap();
}

async fn used_memory(backend: &RedisBackend) -> u64 {
    let info: String = backend.raw_query(&cmd("INFO", &["memory"])).await.unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What was acknowledged, by kind (the `n` of each write).
#[derive(Default)]
struct Acked {
    messages: Vec<usize>,
    checkpoints: Vec<usize>,
    writes: Vec<usize>,
    artifacts: Vec<usize>,
    sessions: Vec<usize>,
    contexts: Vec<usize>,
}

const KINDS: usize = 6;

/// Asserts a refused write says what happened and invites a retry.
fn assert_out_of_memory(what: &str, err: &StorageError) {
    assert_eq!(err.kind(), ErrorKind::Backend, "{what}: {err}");
    assert!(
        err.is_temporary(),
        "{what}: a full server is temporary: {err}"
    );
    assert!(err.to_string().contains("out of memory"), "{what}: {err}");
}

/// Keeps the `n` of an acknowledged write; marks its kind refused on an error, which must
/// be the out-of-memory one.
fn note<T>(result: Result<T, StorageError>, what: &str, n: usize, acked: &mut Vec<usize>) -> bool {
    match result {
        Ok(_) => {
            acked.push(n);
            false
        }
        Err(err) => {
            assert_out_of_memory(what, &err);
            true
        }
    }
}

/// Writes one of each kind, numbered `n`; returns which kinds were refused.
async fn write_each(backend: &RedisBackend, n: usize, acked: &mut Acked) -> [bool; KINDS] {
    let message = backend
        .append_message("s", NewMessage::new("user", filler(n, 1_000).as_str()))
        .await;
    let cp = filled_checkpoint(n);
    let new = cp.all_versions();
    let checkpoint = backend.put_checkpoint(cp, new).await;
    let writes = backend
        .put_writes(
            CheckpointKey::new("w", format!("cp-{n:08}")),
            "task",
            "",
            vec![("state".into(), json!(filler(n, 1_000)).into())],
        )
        .await;
    let artifact = backend
        .save_artifact(
            "run",
            &format!("a{n:08}"),
            NewArtifact::new("text/plain", filler(n, 4_000)),
        )
        .await;
    let session = backend
        .create_session(NewSession::new(format!("s{n:08}"), "u"))
        .await;
    let context = backend
        .store_task_context(
            &format!("c{n:08}"),
            json!({ "n": n, "pad": filler(n, 500) }),
            ExpectedVersion::Any,
        )
        .await;
    [
        note(message, "append_message", n, &mut acked.messages),
        note(checkpoint, "put_checkpoint", n, &mut acked.checkpoints),
        note(writes, "put_writes", n, &mut acked.writes),
        note(artifact, "save_artifact", n, &mut acked.artifacts),
        note(session, "create_session", n, &mut acked.sessions),
        note(context, "store_task_context", n, &mut acked.contexts),
    ]
}

async fn assert_all_read(backend: &RedisBackend, acked: &Acked) {
    let history = backend
        .get_conversation_history("s", acked.messages.len() + 10)
        .await
        .unwrap();
    let contents: Vec<String> = history
        .iter()
        .map(|m| m.content.as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = acked.messages.iter().map(|&n| filler(n, 1_000)).collect();
    assert_eq!(
        contents, expected,
        "the conversation is what was acknowledged"
    );
    for &n in &acked.checkpoints {
        let id = format!("cp-{n:08}");
        let tuple = backend.get_checkpoint("t", "", Some(&id)).await.unwrap();
        let tuple = tuple.unwrap_or_else(|| panic!("checkpoint {id} acknowledged, then lost"));
        let expected = filled_checkpoint(n);
        assert_eq!(tuple.checkpoint.channel_values, expected.channel_values);
        assert_eq!(tuple.checkpoint.channel_versions, expected.channel_versions);
    }
    for &n in &acked.writes {
        let writes = backend
            .get_writes(CheckpointKey::new("w", format!("cp-{n:08}")))
            .await
            .unwrap();
        assert_eq!(writes.len(), 1, "writes {n}");
        assert_eq!(writes[0].value, json!(filler(n, 1_000)).into());
    }
    for &n in &acked.artifacts {
        let artifact = backend
            .get_artifact("run", &format!("a{n:08}"), None)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("artifact {n} acknowledged, then lost"));
        assert_eq!(artifact.data, filler(n, 4_000).as_bytes());
    }
    for &n in &acked.sessions {
        let session = backend.get_session(&format!("s{n:08}")).await.unwrap();
        assert!(session.is_some(), "session {n} acknowledged, then lost");
    }
    for &n in &acked.contexts {
        let context = backend
            .get_task_context(&format!("c{n:08}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("context {n} acknowledged, then lost"));
        assert_eq!(context.value["n"], json!(n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_writes_for_now_and_loses_nothing() {
    let server = RedisServer::start();
    let backend = RedisBackend::new(RedisConfig::new(server.url()).with_namespace("full")).unwrap();
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("s", "u"))
        .await
        .unwrap();
    let limit = used_memory(&backend).await + 3_000_000;
    config_set(&backend, "maxmemory-policy", "noeviction").await;
    config_set(&backend, "maxmemory", &limit.to_string()).await;
    // A limit under `noeviction` loses nothing: the backend takes it.
    backend.initialize().await.unwrap();

    let mut acked = Acked::default();
    let mut refused = [false; KINDS];
    let mut n = 0;
    while refused.contains(&false) {
        n += 1;
        assert!(n < 100_000, "the server never filled");
        for (kind, now) in refused
            .iter_mut()
            .zip(write_each(&backend, n, &mut acked).await)
        {
            *kind |= now;
        }
    }
    assert!(
        !acked.messages.is_empty() && !acked.checkpoints.is_empty(),
        "writes were taken before the server filled"
    );
    assert_all_read(&backend, &acked).await;
    let health = backend.health_check().await.unwrap();
    assert!(health.healthy, "noeviction loses nothing: {health:?}");
    assert_eq!(health.details["maxmemory_policy"], "noeviction");

    // Room again: the same backend writes every kind, and has lost nothing.
    config_set(&backend, "maxmemory", "0").await;
    n += 1;
    assert_eq!(write_each(&backend, n, &mut acked).await, [false; KINDS]);
    assert_all_read(&backend, &acked).await;
}

/// The backend a test configures, for the server at `url`.
fn backend_for(url: &str, change: impl FnOnce(&mut RedisConfig)) -> RedisBackend {
    let mut config = RedisConfig::new(url).with_namespace("evict");
    change(&mut config);
    RedisBackend::new(config).unwrap()
}

fn assert_refused(err: &StorageError, port: u16, policy: &str) {
    let shown = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Config, "{shown}");
    assert!(!err.is_temporary(), "{shown}");
    for part in [
        format!("127.0.0.1:{port}"),
        format!("maxmemory-policy {policy}"),
        "noeviction".to_owned(),
        "redis.allow_eviction".to_owned(),
    ] {
        assert!(shown.contains(&part), "{part:?} missing from: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_may_evict_keys_is_refused_unless_allowed() {
    let server = RedisServer::start();
    let port = server.port();
    let url = server.url();
    let running = backend_for(&url, |_| {});
    running.initialize().await.unwrap();
    assert!(running.health_check().await.unwrap().healthy);

    // No limit: no policy evicts.
    config_set(&running, "maxmemory-policy", "allkeys-lru").await;
    backend_for(&url, |_| {}).initialize().await.unwrap();

    config_set(&running, "maxmemory", "100mb").await;
    let err = backend_for(&url, |_| {}).initialize().await.unwrap_err();
    assert_refused(&err, port, "allkeys-lru");
    // A backend opened before the change sees it in its health (which stays healthy: the
    // server serves).
    let health = running.health_check().await.unwrap();
    assert!(health.healthy, "{health:?}");
    assert!(
        health.details["eviction"].contains("allkeys-lru"),
        "{health:?}"
    );
    assert_eq!(health.details["maxmemory"], (100u64 << 20).to_string());

    // Accepted by the configuration: it opens and is healthy, the risk still shown.
    let allowed = backend_for(&url, |config| config.allow_eviction = true);
    allowed.initialize().await.unwrap();
    let health = allowed.health_check().await.unwrap();
    assert!(health.healthy, "{health:?}");
    assert!(health.details.contains_key("eviction"), "{health:?}");

    // A volatile policy evicts only keys with a TTL: none without a configured TTL.
    config_set(&running, "maxmemory-policy", "volatile-lru").await;
    backend_for(&url, |_| {}).initialize().await.unwrap();
    let expiring = backend_for(&url, |config| config.checkpoint_ttl_secs = Some(3_600));
    let err = expiring.initialize().await.unwrap_err();
    assert_refused(&err, port, "volatile-lru");
    assert!(err.to_string().contains("_ttl_secs"), "{err}");
    // A TTL of 0 sets no expiry.
    backend_for(&url, |config| config.checkpoint_ttl_secs = Some(0))
        .initialize()
        .await
        .unwrap();

    config_set(&running, "maxmemory-policy", "noeviction").await;
    expiring.initialize().await.unwrap();
    assert!(expiring.health_check().await.unwrap().healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_read_info_is_let_through() {
    let server = RedisServer::start();
    let admin = backend_for(&server.url(), |_| {});
    let () = admin
        .raw_query(&cmd(
            "ACL",
            &[
                "SETUSER", "app", "on", ">secret", "~*", "&*", "+@all", "-info",
            ],
        ))
        .await
        .unwrap();
    config_set(&admin, "maxmemory", "100mb").await;
    config_set(&admin, "maxmemory-policy", "allkeys-lru").await;
    let url = format!("redis://app:secret@127.0.0.1:{}", server.port());
    let app = backend_for(&url, |_| {});
    // The policy cannot be read: a warning, not a refusal (the user cannot run health
    // checks either, which need INFO).
    app.initialize().await.unwrap();
    app.append_message("s", NewMessage::new("user", "hi"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_that_may_evict_keys_is_named() {
    let cluster = RedisCluster::start();
    let cluster_backend =
        || RedisBackend::new(RedisConfig::cluster(cluster.urls()).with_namespace("evict")).unwrap();
    cluster_backend().initialize().await.unwrap();
    let node = &cluster.nodes()[1];
    let direct = backend_for(&node.url(), |_| {});
    config_set(&direct, "maxmemory", "100mb").await;
    config_set(&direct, "maxmemory-policy", "allkeys-lfu").await;
    let err = cluster_backend().initialize().await.unwrap_err();
    assert_refused(&err, node.port(), "allkeys-lfu");
    let health = cluster_backend().health_check().await.unwrap();
    assert!(
        health.details["eviction"].contains(&format!(":{}", node.port())),
        "{health:?}"
    );
    assert_eq!(health.details["maxmemory_policy"], "allkeys-lfu");
}

//! A batch of checkpoint puts (`put_checkpoints`, what group commit sends) is a pipeline,
//! not a transaction: a put the server refuses does not stop the puts after it, and every
//! put the server stored is in the run index, so `delete_for_runs` finds it.

use deadpool_redis::redis;
use serde_json::json;
use storage_core::{CheckpointQuery, CheckpointStore, ErrorKind, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{checkpoint, cp_id, obj, versions};
use storage_testkit::servers::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_put_leaves_the_others_stored_and_in_the_run_index() {
    let server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_namespace("refused")).unwrap();
    b.initialize().await.unwrap();
    // Thread "bad"'s namespace set is a string, so its put script fails with WRONGTYPE.
    let bad_key = format!("storage{{refused:t:{}}}:nss", hex("bad"));
    b.raw_query::<String>(redis::cmd("SET").arg(&bad_key).arg("not a set"))
        .await
        .unwrap();
    let put = |thread: &str, n: u32| {
        let step = n.to_string();
        let mut cp = checkpoint(thread, "", &cp_id(n), &[("c", &step, json!(n))]);
        cp.metadata = obj(json!({ "run_id": "run", "step": n }));
        (cp, versions(&[("c", &step)]))
    };
    let batch = vec![
        put("good", 1),
        put("bad", 2),
        put("good", 3),
        put("other", 4),
    ];
    let err = b.put_checkpoints(batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");

    let listed = |thread: &'static str| {
        let b = &b;
        async move {
            b.list_checkpoints(CheckpointQuery::thread(thread))
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.checkpoint.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("good").await, [cp_id(3), cp_id(1)]);
    assert_eq!(listed("other").await, [cp_id(4)]);
    // Every stored put is in the run index: deleting the run removes all three.
    assert_eq!(b.delete_for_runs(&["run".to_owned()]).await.unwrap(), 3);
    assert!(listed("good").await.is_empty());
    assert!(listed("other").await.is_empty());
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

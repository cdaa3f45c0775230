//! `cargo xtask bench redis` (or `cargo bench -p storage-redis`): the shared workload on a
//! throwaway `redis-server` (or `STORAGE_TEST_REDIS_URL`), then ours against the same Redis
//! commands issued raw through the same pool, interleaved, with the ours/raw ratio, at
//! concurrency 1 and 32.
//!
//! Flags: `--ops N` (default 20000), `--history 1000,100000`, `--concurrency 1,32`.

use std::sync::Arc;

use serde_json::json;
use storage_core::{time, wire, ConversationStore, NewMessage, SessionStore, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::bench::{
    compare_interleaved, print_history_ratio, runtime_for, BenchOp, Workload,
};

fn main() {
    let workload = Workload {
        ops: 20_000,
        checkpoint_ops: 5_000,
        history_lengths: vec![1_000, 100_000],
        concurrency: vec![1, 32],
    }
    .from_args();
    let url = storage_testkit::servers::redis::redis_url();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("redis backend on {url}; {cores} cores");
    for &concurrency in &workload.concurrency {
        let run = Workload {
            concurrency: vec![concurrency],
            ..workload.clone()
        };
        runtime_for(concurrency).block_on(async {
            let namespace = format!("bench_{}_c{concurrency}", std::process::id());
            let config = RedisConfig::new(url.clone())
                .with_namespace(namespace)
                .with_pool_size(32);
            let backend = Arc::new(RedisBackend::new(config).expect("config"));
            backend.initialize().await.expect("initialize");
            let rows = run.run(backend.clone()).await;
            compare_with_raw(&backend, concurrency, workload.ops).await;
            print_history_ratio(&rows, &workload.history_lengths, concurrency);
            let _ = backend.close().await;
        });
    }
}

/// Ours against the raw driver doing the identical work through the same pool: the same
/// `HGETALL` for a session, and the same script with a message encoded the same way for an
/// append.
async fn compare_with_raw(backend: &Arc<RedisBackend>, concurrency: usize, ops: usize) {
    let ids: Arc<Vec<String>> = Arc::new(
        (0..ops.min(1000))
            .map(|i| format!("c{concurrency}-s{i}"))
            .collect(),
    );
    let op = |body: fn(
        Arc<RedisBackend>,
        String,
        usize,
    ) -> futures::future::BoxFuture<'static, ()>|
     -> BenchOp {
        let (b, ids) = (backend.clone(), ids.clone());
        Arc::new(move |i| body(b.clone(), ids[i % ids.len()].clone(), i))
    };
    let ours_get = op(|b, id, _| {
        Box::pin(async move { assert!(b.get_session(&id).await.unwrap().is_some()) })
    });
    let raw_get = op(|b, id, _| {
        Box::pin(async move {
            let mut cmd = deadpool_redis::redis::cmd("HGETALL");
            cmd.arg(b.session_key(&id));
            let fields: std::collections::HashMap<String, String> =
                b.raw_query(&cmd).await.unwrap();
            assert!(!fields.is_empty());
        })
    });
    compare_interleaved("get_session", concurrency, ops, ours_get, raw_get).await;
    let ours_append = op(|b, id, i| {
        Box::pin(async move {
            b.append_message(&id, message(i)).await.unwrap();
        })
    });
    let raw_append = op(|b, id, i| {
        Box::pin(async move {
            let record = message(i).into_message(&id, 0, time::now());
            let encoded = wire::encode(&record).unwrap();
            let cmd = b.raw_append_command(&id, "", &encoded);
            // {1, the sequence number stored at}
            let reply: Vec<i64> = b.raw_query(&cmd).await.unwrap();
            assert_eq!(reply.len(), 2);
        })
    });
    compare_interleaved("append_message", concurrency, ops, ours_append, raw_append).await;
}

fn message(i: usize) -> NewMessage {
    NewMessage::new("user", json!({"text": "benchmark message body", "i": i}))
}

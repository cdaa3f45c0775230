//! `cargo xtask bench redis` (or `cargo bench -p storage-redis`): the shared workload on a
//! throwaway `redis-server` (or `STORAGE_TEST_REDIS_URL`), then the same Redis commands
//! issued raw through the same pool, with the ours/raw ratio, at concurrency 1 and 32.
//!
//! Flags: `--ops N` (default 20000), `--history 1000,100000`, `--concurrency 1,32`.

use std::sync::Arc;

use serde_json::json;
use storage_core::{time, wire, NewMessage, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::bench::{measure, print_ratio, Measurement, Workload};

fn main() {
    let workload = Workload {
        ops: 20_000,
        checkpoint_ops: 5_000,
        history_lengths: vec![1_000, 100_000],
        concurrency: vec![1, 32],
    }
    .from_args();
    let url = storage_testkit::servers::redis::redis_url();
    println!(
        "redis backend on {url}; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for &concurrency in &workload.concurrency {
        let runtime = if concurrency == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        }
        .expect("tokio runtime");
        let run = Workload {
            concurrency: vec![concurrency],
            ..workload.clone()
        };
        runtime.block_on(async {
            let namespace = format!("bench_{}_c{concurrency}", std::process::id());
            let config = RedisConfig::new(url.clone())
                .with_namespace(namespace)
                .with_pool_size(32);
            let backend = Arc::new(RedisBackend::new(config).expect("config"));
            backend.initialize().await.expect("initialize");
            let rows = run.run(backend.clone()).await;
            let raw = raw_rows(&backend, concurrency, workload.ops).await;
            let find = |rows: &[Measurement], name: &str| {
                rows.iter().find(|m| m.name == name).map(|m| m.ops_per_sec)
            };
            for (ours, raw_name) in [
                ("get_session", "raw_get_session"),
                ("append_message", "raw_append_message"),
            ] {
                if let (Some(a), Some(b)) = (find(&rows, ours), find(&raw, raw_name)) {
                    print_ratio(&format!("{ours} ops/s ours/raw (c{concurrency})"), a, b);
                }
            }
            let p50 = |name: &str| {
                rows.iter()
                    .find(|m| m.name == name)
                    .map(|m| m.p50.as_secs_f64())
            };
            let lengths = &workload.history_lengths;
            if let (Some(first), Some(last)) = (lengths.first(), lengths.last()) {
                if let (Some(short), Some(long)) = (
                    p50(&format!("history_last50@{first}")),
                    p50(&format!("history_last50@{last}")),
                ) {
                    print_ratio(
                        &format!(
                            "history_last50 p50 us, {last} vs {first} messages (c{concurrency})"
                        ),
                        long * 1e6,
                        short * 1e6,
                    );
                }
            }
        });
    }
}

/// The raw driver doing the identical work through the same pool: the same `HGETALL`
/// for a session, and the same script with a message encoded the same way for an append.
async fn raw_rows(backend: &Arc<RedisBackend>, concurrency: usize, ops: usize) -> Vec<Measurement> {
    let tag = format!("c{concurrency}");
    let ids: Arc<Vec<String>> =
        Arc::new((0..ops.min(1000)).map(|i| format!("{tag}-s{i}")).collect());
    let mut rows = Vec::new();
    let b = backend.clone();
    let pool = ids.clone();
    let row = measure("raw_get_session", concurrency, ops, move |i| {
        let b = b.clone();
        let key = b.session_key(&pool[i % pool.len()]);
        async move {
            let mut cmd = deadpool_redis::redis::cmd("HGETALL");
            cmd.arg(key);
            let fields: std::collections::HashMap<String, String> =
                b.raw_query(&cmd).await.unwrap();
            assert!(!fields.is_empty());
        }
    })
    .await;
    println!("{}", row.row());
    rows.push(row);
    let b = backend.clone();
    let pool = ids.clone();
    let row = measure("raw_append_message", concurrency, ops, move |i| {
        let b = b.clone();
        let session = pool[i % pool.len()].clone();
        async move {
            let message =
                NewMessage::new("user", json!({"text": "benchmark message body", "i": i}))
                    .into_message(&session, 0, time::now());
            let encoded = wire::encode(&message).unwrap();
            let cmd = b.raw_append_command(&session, "", &encoded);
            let members: Vec<Vec<u8>> = b.raw_query(&cmd).await.unwrap();
            assert_eq!(members.len(), 1);
        }
    })
    .await;
    println!("{}", row.row());
    rows.push(row);
    let _ = backend.close().await;
    rows
}

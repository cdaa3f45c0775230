//! `cargo xtask bench redis` (or `cargo bench -p storage-redis`): the shared workload on a
//! throwaway `redis-server` (or `STORAGE_TEST_REDIS_URL`), then ours against the same Redis
//! commands issued raw through the same pool, interleaved, with the ours/raw ratio, at
//! concurrency 1 and 32. With `--langgraph`, only LangGraph's checkpoint workload beside raw
//! commands (`storage_testkit::langgraph_bench`), 5,000 operations per phase.
//!
//! Flags: `--ops N` (default 20000), `--history 1000,100000`, `--concurrency 1,32`,
//! `--langgraph`.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::json;
use storage_core::Checkpoint;
use storage_core::{time, wire, ConversationStore, NewMessage, SessionStore, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::bench::{
    compare_interleaved, print_history_ratio, runtime_for, BenchOp, Workload,
};
use storage_testkit::langgraph_bench::{self, RawCheckpointer};

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
    if langgraph_bench::requested() {
        return langgraph(&url, &workload);
    }
    for &concurrency in &workload.concurrency {
        let run = Workload {
            concurrency: vec![concurrency],
            ..workload.clone()
        };
        runtime_for(concurrency).block_on(async {
            let namespace = format!("bench_{}_c{concurrency}", std::process::id());
            let backend = redis_backend(&url, namespace).await;
            let rows = run.run(backend.clone()).await;
            compare_with_raw(&backend, concurrency, workload.ops).await;
            print_history_ratio(&rows, &workload.history_lengths, concurrency);
            let _ = backend.close().await;
        });
    }
}

async fn redis_backend(url: &str, namespace: String) -> Arc<RedisBackend> {
    let config = RedisConfig::new(url.to_owned())
        .with_namespace(namespace)
        .with_pool_size(32);
    let backend = Arc::new(RedisBackend::new(config).expect("config"));
    backend.initialize().await.expect("initialize");
    backend
}

/// `--langgraph`: LangGraph's workload beside raw commands through the same pool (see
/// `storage_testkit::langgraph_bench`), at each concurrency.
fn langgraph(url: &str, workload: &Workload) {
    let title = "redis backend vs raw commands (one string per checkpoint, a sorted set of ids)";
    langgraph_bench::run(title, workload, |concurrency| async move {
        let namespace = format!("bench_{}_lg{concurrency}", std::process::id());
        let backend = redis_backend(url, namespace.clone()).await;
        let raw: Arc<dyn RawCheckpointer> = Arc::new(RawKeys::load(&backend, &namespace).await);
        let backend: Arc<dyn StorageBackend> = backend;
        (backend, raw)
    });
}

/// The raw driver's keys, through the backend's pool: a checkpoint is one string of its
/// whole record and a member of its thread's sorted set of ids, stored by one script call;
/// the newest are read by one script call (`ZREVRANGE` then `MGET`).
#[derive(Clone)]
struct RawKeys {
    backend: Arc<RedisBackend>,
    prefix: Arc<str>,
    put_sha: Arc<str>,
    newest_sha: Arc<str>,
}

const RAW_PUT: &str = "redis.call('SET', KEYS[1] .. ARGV[1], ARGV[2]) \
     redis.call('ZADD', KEYS[2], 0, ARGV[1]) return 1";
const RAW_NEWEST: &str = "local ids = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1) \
     if #ids == 0 then return {} end \
     for i, id in ipairs(ids) do ids[i] = KEYS[1] .. id end \
     return redis.call('MGET', unpack(ids))";

impl RawKeys {
    async fn load(backend: &Arc<RedisBackend>, namespace: &str) -> Self {
        let load = |body: &str| {
            let mut cmd = deadpool_redis::redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(body);
            let backend = backend.clone();
            async move { backend.raw_query::<String>(&cmd).await.unwrap() }
        };
        RawKeys {
            backend: backend.clone(),
            prefix: format!("raw:{namespace}").into(),
            put_sha: load(RAW_PUT).await.into(),
            newest_sha: load(RAW_NEWEST).await.into(),
        }
    }

    /// The thread's record prefix and sorted set: one hash slot per thread.
    fn keys(&self, thread: &str) -> (String, String) {
        (
            format!("{}:{{{thread}}}:cp:", self.prefix),
            format!("{}:{{{thread}}}:ids", self.prefix),
        )
    }
}

impl RawCheckpointer for RawKeys {
    fn put(&self, checkpoint: Checkpoint, record: Vec<u8>) -> BoxFuture<'static, ()> {
        let (records, ids) = self.keys(&checkpoint.thread_id);
        let mut cmd = deadpool_redis::redis::cmd("EVALSHA");
        cmd.arg(&*self.put_sha)
            .arg(2)
            .arg(records)
            .arg(ids)
            .arg(&checkpoint.id)
            .arg(record);
        let backend = self.backend.clone();
        Box::pin(async move {
            backend.raw_query::<i64>(&cmd).await.unwrap();
        })
    }

    fn put_write(
        &self,
        thread: String,
        task: String,
        channel: String,
        value: Vec<u8>,
    ) -> BoxFuture<'static, ()> {
        let mut cmd = deadpool_redis::redis::cmd("HSET");
        cmd.arg(format!("{}:{{{thread}}}:writes:pending", self.prefix))
            .arg(format!("{task}:0:{channel}"))
            .arg(value);
        let backend = self.backend.clone();
        Box::pin(async move {
            backend.raw_query::<i64>(&cmd).await.unwrap();
        })
    }

    fn newest(&self, thread: String, limit: usize) -> BoxFuture<'static, Vec<Vec<u8>>> {
        let (records, ids) = self.keys(&thread);
        let mut cmd = deadpool_redis::redis::cmd("EVALSHA");
        cmd.arg(&*self.newest_sha)
            .arg(2)
            .arg(records)
            .arg(ids)
            .arg(limit);
        let backend = self.backend.clone();
        Box::pin(async move { backend.raw_query(&cmd).await.unwrap() })
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

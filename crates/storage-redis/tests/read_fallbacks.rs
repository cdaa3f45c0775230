//! The checkpoint read scripts read a record's channel versions (and a list filter's
//! metadata, the history walk's parent ids) inside Redis; where that reading cannot be
//! trusted the client reads the way the previous release did. These check that the answer
//! is then exactly the previous one: a record stored under another id, a filter that only
//! the client decides exactly, and the history walk against the walk by reads.

use deadpool_redis::redis;
use serde_json::{json, Value};
use storage_core::delta::walk_with_reads;
use storage_core::{
    CheckpointKey, CheckpointQuery, CheckpointStore, CheckpointTuple, StorageBackend,
};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{checkpoint, cp_id, obj, versions};

async fn backend() -> RedisBackend {
    let url = storage_testkit::servers::redis::redis_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("rf_{nanos:x}");
    let b = RedisBackend::new(RedisConfig::new(url).with_namespace(namespace)).unwrap();
    b.initialize().await.unwrap();
    b
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a thread's checkpoint records in `namespace` (layout: docs/backends/redis.md).
fn records_key(b: &RedisBackend, thread: &str, namespace: &str) -> String {
    b.session_key("x").replace(
        ":s:78}:session",
        &format!(":t:{}}}:cp:{}", hex(thread), hex(namespace)),
    )
}

/// Puts checkpoints 1..=n of `thread` in the root namespace, each with a parent, the
/// values of channel "a" (new every step), "b" (once) and "d" (every third step), a write
/// to "d" and `metadata(n)`.
async fn chain(b: &RedisBackend, thread: &str, n: u32, metadata: impl Fn(u32) -> Value) {
    for i in 1..=n {
        let step = i.to_string();
        let mut channels = vec![("a", step.as_str(), json!(i)), ("b", "1", json!("b"))];
        if i % 3 == 0 {
            channels.push(("d", step.as_str(), json!(["d", i])));
        }
        let mut cp = checkpoint(thread, "", &cp_id(i), &channels);
        cp.parent_id = (i > 1).then(|| cp_id(i - 1));
        cp.metadata = obj(metadata(i));
        let mut new = versions(&[("a", &step)]);
        if i == 1 {
            new.insert("b".into(), "1".into());
        }
        if i % 3 == 0 {
            new.insert("d".into(), step.clone());
        }
        b.put_checkpoint(cp, new).await.unwrap();
        let key = CheckpointKey::new(thread, cp_id(i));
        b.put_writes(key, "t", "", vec![("d".into(), json!(i).into())])
            .await
            .unwrap();
    }
}

async fn get(b: &RedisBackend, thread: &str, id: &str) -> CheckpointTuple {
    b.get_checkpoint(thread, "", Some(id))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_stored_under_another_id_reads_as_before() {
    let b = backend().await;
    chain(&b, "t", 3, |i| json!({ "step": i })).await;
    let first = get(&b, "t", &cp_id(1)).await;
    let record: Vec<u8> = b
        .raw_query(
            redis::cmd("HGET")
                .arg(records_key(&b, "t", ""))
                .arg(cp_id(1)),
        )
        .await
        .unwrap();
    let _: i64 = b
        .raw_query(
            redis::cmd("HSET")
                .arg(records_key(&b, "t", ""))
                .arg(cp_id(2))
                .arg(record),
        )
        .await
        .unwrap();
    // The previous release read the record it found and that record's values and writes.
    assert_eq!(get(&b, "t", &cp_id(2)).await, first);
    let listed = b
        .list_checkpoints(CheckpointQuery::thread("t"))
        .await
        .unwrap();
    let ids: Vec<_> = listed.iter().map(|t| t.checkpoint.id.clone()).collect();
    assert_eq!(ids, [cp_id(3), cp_id(1), cp_id(1)]);
    assert_eq!(listed[1], first);
    assert_eq!(listed[2], first);
    // The walk from 3 reads 2's field, which holds 1's record, whose parent is none.
    let key = CheckpointKey::new("t", cp_id(3));
    let channels = vec!["d".to_owned(), "a".to_owned()];
    let walked = b
        .delta_channel_history(key.clone(), channels.clone())
        .await
        .unwrap();
    assert_eq!(walked, walk_with_reads(&b, key, channels).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_only_the_client_decides_still_fills_the_limit() {
    let b = backend().await;
    // Lua reads `{}` and `[]` alike, and 2^53 + 1 as 2^53.
    chain(
        &b,
        "empty",
        4,
        |i| json!({ "x": if i == 1 { json!({}) } else { json!([]) } }),
    )
    .await;
    chain(
        &b,
        "big",
        4,
        |i| json!({ "n": if i == 1 { 9_007_199_254_740_992_u64 } else { 9_007_199_254_740_993 } }),
    )
    .await;
    for (thread, filter) in [
        ("empty", json!({ "x": {} })),
        ("big", json!({ "n": 9_007_199_254_740_992_u64 })),
    ] {
        let query = CheckpointQuery {
            limit: Some(1),
            filter: obj(filter),
            ..CheckpointQuery::thread(thread)
        };
        let found = b.list_checkpoints(query.clone()).await.unwrap();
        assert_eq!(found, [get(&b, thread, &cp_id(1)).await], "{thread}");
        let all = CheckpointQuery {
            namespace: None,
            ..query
        };
        assert_eq!(b.list_checkpoints(all).await.unwrap().len(), 1, "{thread}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_walk_is_the_walk_by_reads() {
    let b = backend().await;
    chain(&b, "t", 10, |i| json!({ "step": i })).await;
    // A parent chain the caller made circular: 2's parent is 9.
    let mut looped = checkpoint("loop", "", &cp_id(2), &[("a", "2", json!(2))]);
    looped.parent_id = Some(cp_id(9));
    b.put_checkpoint(looped, versions(&[("a", "2")]))
        .await
        .unwrap();
    let mut nine = checkpoint("loop", "", &cp_id(9), &[("a", "2", json!(2))]);
    nine.parent_id = Some(cp_id(2));
    b.put_checkpoint(nine, versions(&[])).await.unwrap();
    let cases: [(&str, u32, &[&str]); 7] = [
        ("t", 10, &["d"]),
        ("t", 10, &["a", "b", "d"]),
        ("t", 8, &["b", "missing"]),
        ("t", 2, &["d"]),
        ("t", 1, &["a"]),
        ("t", 11, &["a"]),
        ("loop", 9, &["d", "a"]),
    ];
    for (thread, target, channels) in cases {
        let key = CheckpointKey::new(thread, cp_id(target));
        let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        let walked = b
            .delta_channel_history(key.clone(), channels.clone())
            .await
            .unwrap();
        let by_reads = walk_with_reads(&b, key, channels).await.unwrap();
        assert_eq!(walked, by_reads, "{thread} {target}");
    }
    let histories = b
        .delta_channel_history(CheckpointKey::new("t", cp_id(10)), vec!["d".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(histories["d"].seed_checkpoint_id, Some(cp_id(9)));
    assert_eq!(histories["d"].writes.len(), 1);
}

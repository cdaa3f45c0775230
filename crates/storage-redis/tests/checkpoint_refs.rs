//! The use counts that let a checkpoint prune cost what it removes (`scripts/checkpoint.rs`):
//! after every path that adds or removes checkpoints they equal a recount over the stored
//! records; a namespace the previous release wrote (no counts) is pruned by reading its
//! survivors and keeps every value they use; and a namespace a previous release changed
//! after its counts were made (a rolling upgrade) is not trusted.

use std::collections::{BTreeMap, HashMap};

use deadpool_redis::redis;
use serde_json::json;
use storage_core::{wire, ChannelValue, Checkpoint, CheckpointStore, Retention, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{cp_id, versions};

fn backend() -> (RedisBackend, String) {
    let url = storage_testkit::servers::redis::redis_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("refs_{nanos:x}_{}", std::process::id());
    let b = RedisBackend::new(RedisConfig::new(url).with_namespace(namespace.clone())).unwrap();
    (b, namespace)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The key of a thread's `suffix` key for checkpoint namespace `ns`, as `keys.rs` lays it
/// out with the default prefix.
fn key(namespace: &str, thread: &str, suffix: &str, ns: &str) -> String {
    format!(
        "storage{{{namespace}:t:{}}}:{suffix}:{}",
        hex(thread),
        hex(ns)
    )
}

fn field(channel: &str, version: &str) -> String {
    format!("{}:{}", hex(channel), hex(version))
}

/// The previous release's put script, verbatim with the prelude functions it calls: what
/// planted data looks like.
const OLD_PUT: &str = r#"
local function touch(key, ttl)
  if ttl ~= '0' then redis.call('PEXPIRE', key, ttl) end
end
local function changed(key)
  if redis.call('INCR', key) == 1 then
    local now = redis.call('TIME')
    redis.call('SET', key, now[1] .. string.format('%06d', tonumber(now[2])))
  end
end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) end
changed(KEYS[5])
for k = 1, 5 do touch(KEYS[k], ARGV[1]) end
"#;

/// Puts `cp` (values for `new` versions) as the previous release did.
async fn old_put(b: &RedisBackend, namespace: &str, cp: &Checkpoint, new: &[(&str, &str)]) {
    let ns = &cp.namespace;
    let t = &cp.thread_id;
    let mut record = cp.clone();
    record.channel_values = BTreeMap::new();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(OLD_PUT).arg(5);
    cmd.arg(format!("storage{{{namespace}:t:{}}}:nss", hex(t)));
    for suffix in ["ids", "cp", "blobs", "chg"] {
        cmd.arg(key(namespace, t, suffix, ns));
    }
    cmd.arg("0")
        .arg(hex(ns))
        .arg(&cp.id)
        .arg(wire::encode(&record).unwrap());
    for (channel, version) in new {
        cmd.arg(field(channel, version))
            .arg(wire::encode_value(&cp.channel_values[*channel]).unwrap());
    }
    let () = b.raw_query(&cmd).await.unwrap();
}

/// Checkpoint `n` of `thread` naming `channels` (channel, version), with values for
/// those whose version is `n`.
fn cp(thread: &str, n: u32, channels: &[(&str, u32)]) -> (Checkpoint, Vec<(String, String)>) {
    let mut c = Checkpoint::new(thread, "", cp_id(n));
    let mut new = Vec::new();
    for (channel, version) in channels {
        c.channel_versions
            .insert((*channel).into(), version.to_string());
        if *version == n {
            c.channel_values
                .insert((*channel).into(), json!(format!("{channel}{n}")).into());
            new.push(((*channel).to_owned(), version.to_string()));
        }
    }
    (c, new)
}

fn value(text: String) -> ChannelValue {
    json!(text).into()
}

/// Reads checkpoint `n` of `thread` and checks it has every value it names.
async fn assert_values(b: &RedisBackend, thread: &str, n: u32) {
    let tuple = b
        .get_checkpoint(thread, "", Some(&cp_id(n)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("checkpoint {n} is gone"));
    let c = tuple.checkpoint;
    for (channel, version) in &c.channel_versions {
        assert_eq!(
            c.channel_values.get(channel),
            Some(&value(format!("{channel}{version}"))),
            "checkpoint {n} lost {channel}@{version}"
        );
    }
}

/// The namespace's counts as stored, and as a recount over its records gives; with the
/// blob fields stored.
async fn counts(
    b: &RedisBackend,
    namespace: &str,
    thread: &str,
) -> (HashMap<String, u64>, HashMap<String, u64>, Vec<String>) {
    let stored: HashMap<String, u64> = b
        .raw_query(redis::cmd("HGETALL").arg(key(namespace, thread, "refs", "")))
        .await
        .unwrap();
    let records: HashMap<String, Vec<u8>> = b
        .raw_query(redis::cmd("HGETALL").arg(key(namespace, thread, "cp", "")))
        .await
        .unwrap();
    let mut recount = HashMap::new();
    for record in records.values() {
        let c: Checkpoint = wire::decode(record).unwrap();
        for (channel, version) in &c.channel_versions {
            *recount.entry(field(channel, version)).or_default() += 1;
        }
    }
    recount.insert("~".to_owned(), records.len() as u64);
    let blobs: Vec<String> = b
        .raw_query(redis::cmd("HKEYS").arg(key(namespace, thread, "blobs", "")))
        .await
        .unwrap();
    (stored, recount, blobs)
}

/// Counts equal the recount, and every stored value is one a checkpoint names (a removal
/// took the values nothing uses any more).
async fn assert_counted(b: &RedisBackend, namespace: &str, thread: &str, step: &str) {
    let (stored, recount, blobs) = counts(b, namespace, thread).await;
    assert_eq!(stored, recount, "after {step}");
    for blob in blobs {
        assert!(
            recount.contains_key(&blob),
            "after {step}: {blob} is unused"
        );
    }
}

fn keep_last(n: u64) -> Retention {
    Retention {
        created_before: None,
        keep_last: Some(n),
    }
}

async fn put(b: &RedisBackend, (c, new): (Checkpoint, Vec<(String, String)>)) {
    let new = new
        .iter()
        .map(|(channel, version)| (channel.as_str(), version.as_str()))
        .collect::<Vec<_>>();
    b.put_checkpoint(c, versions(&new)).await.unwrap();
}

/// A channel whose name a key or a Lua pattern could mistake: the counts are keyed by the
/// same hex fields the values are.
const B: &str = "b:é😀\"{x}%";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_a_recount_after_every_path() {
    let (b, ns) = backend();
    b.initialize().await.unwrap();
    // A batch put (group commit's path) of three checkpoints, the second tagged with a run.
    let mut batch = Vec::new();
    for n in 1..=3 {
        let (mut c, new) = cp("t", n, &[("a", n), (B, 1)]);
        if n == 2 {
            c.metadata.insert("run_id".into(), json!("r"));
        }
        let new: Vec<(&str, &str)> = new.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect();
        batch.push((c, versions(&new)));
    }
    b.put_checkpoints(batch).await.unwrap();
    assert_counted(&b, &ns, "t", "a batch put").await;
    // A fork: checkpoint 4 names checkpoint 1's version of "a" without its value.
    put(&b, cp("t", 4, &[("a", 1), (B, 4)])).await;
    assert_counted(&b, &ns, "t", "a fork").await;
    // Checkpoint 3 put again under its id with another map.
    put(&b, cp("t", 3, &[("a", 2), (B, 3), ("c", 3)])).await;
    assert_counted(&b, &ns, "t", "an upsert").await;
    // Put again with the same map: nothing changes.
    put(&b, cp("t", 3, &[("a", 2), (B, 3), ("c", 3)])).await;
    assert_counted(&b, &ns, "t", "the same upsert").await;
    assert_eq!(b.copy_thread("t", "t2").await.unwrap(), 4);
    assert_counted(&b, &ns, "t2", "copy_thread").await;
    assert_eq!(b.delete_for_runs(&["r".to_owned()]).await.unwrap(), 2);
    assert_counted(&b, &ns, "t", "delete_for_runs").await;
    assert_counted(&b, &ns, "t2", "delete_for_runs").await;
    for n in 5..=8 {
        put(&b, cp("t", n, &[("a", 1), (B, n)])).await;
    }
    assert_eq!(b.prune_checkpoints("t", 4).await.unwrap(), 3);
    assert_counted(&b, &ns, "t", "prune_checkpoints").await;
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 2 + 1);
    assert_counted(&b, &ns, "t", "retain_checkpoints").await;
    assert_counted(&b, &ns, "t2", "retain_checkpoints").await;
    for n in [7, 8] {
        assert_values(&b, "t", n).await;
    }
    for n in [3, 4] {
        assert_values(&b, "t2", n).await;
    }
    // Every checkpoint gone by run, then the namespace starts again.
    let (mut c, new) = cp("t3", 1, &[("a", 1)]);
    c.metadata.insert("run_id".into(), json!("r3"));
    put(&b, (c, new)).await;
    assert_eq!(b.delete_for_runs(&["r3".to_owned()]).await.unwrap(), 1);
    assert_counted(&b, &ns, "t3", "removing the only checkpoint").await;
    put(&b, cp("t3", 2, &[("a", 2)])).await;
    assert_counted(&b, &ns, "t3", "a put after the namespace emptied").await;
    assert_eq!(b.delete_thread("t").await.unwrap(), 2);
    let left: i64 = b
        .raw_query(redis::cmd("EXISTS").arg(key(&ns, "t", "refs", "")))
        .await
        .unwrap();
    assert_eq!(left, 0, "delete_thread leaves the counts");
}

/// Checkpoints planted exactly as the previous release wrote them (no counts), checkpoint
/// 3 naming a value only checkpoint 1 (removed) stored: a sweep keeps every value a
/// survivor uses, and builds the counts, so the next sweep (proportional) does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_release_namespace_is_swept_without_losing_values() {
    let (b, ns) = backend();
    b.initialize().await.unwrap();
    let planted = [
        cp("t", 1, &[("a", 1), ("b", 1)]),
        cp("t", 2, &[("a", 2), ("b", 1)]),
        cp("t", 3, &[("a", 1), ("b", 3)]),
        cp("t", 4, &[("a", 4), ("b", 3)]),
    ];
    for (c, new) in &planted {
        let new: Vec<(&str, &str)> = new.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect();
        old_put(&b, &ns, c, &new).await;
    }
    // A put into the namespace the previous release filled leaves its counts absent.
    put(&b, cp("t", 5, &[("a", 4), ("b", 5)])).await;
    let (stored, _, _) = counts(&b, &ns, "t").await;
    assert!(stored.is_empty(), "counts made from part of the namespace");
    assert_eq!(b.retain_checkpoints(keep_last(3)).await.unwrap(), 2);
    for n in 3..=5 {
        assert_values(&b, "t", n).await;
    }
    assert_counted(&b, &ns, "t", "the fallback sweep").await;
    // Now counted: a fork naming checkpoint 3's values, then a sweep removing 3 and 4.
    put(&b, cp("t", 6, &[("a", 1), ("b", 3)])).await;
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 2);
    for n in 5..=6 {
        assert_values(&b, "t", n).await;
    }
    assert_counted(&b, &ns, "t", "the counted sweep").await;
    // A previous release still writing (a rolling upgrade) puts a checkpoint naming
    // checkpoint 5's value without counting it: the counts are not trusted any more.
    let (c, _) = cp("t", 7, &[("a", 4), ("b", 5)]);
    old_put(&b, &ns, &c, &[]).await;
    assert_eq!(b.prune_checkpoints("t", 1).await.unwrap(), 2);
    assert_values(&b, "t", 7).await;
    assert_counted(&b, &ns, "t", "a prune after an uncounted put").await;
}

//! Edges of the lazy value-users index (see `docs/backends/redis.md`): values a namespace's
//! last checkpoints left behind, the rebuild and the delta written in parts, and prunes in
//! parts racing puts and forks that name values without sending them.

use std::collections::BTreeMap;

use deadpool_redis::redis;
use serde_json::json;
use storage_core::{wire, Checkpoint, CheckpointStore, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{checkpoint, cp_id, versions};

fn hex(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}
fn key(namespace: &str, thread: &str, kind: &str) -> String {
    format!("storage{{{namespace}:t:{}}}:{kind}:", hex(thread))
}
fn field(channel: &str, version: &str) -> String {
    format!("{}:{}", hex(channel), hex(version))
}
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}_{nanos:x}_{}", std::process::id())
}
fn standalone(namespace: &str) -> RedisBackend {
    let url = storage_testkit::servers::redis::redis_url();
    RedisBackend::new(RedisConfig::new(url).with_namespace(namespace)).unwrap()
}
async fn get<T: redis::FromRedisValue>(b: &RedisBackend, cmd: &mut redis::Cmd) -> T {
    b.raw_query(cmd).await.unwrap()
}
async fn value_of(b: &RedisBackend, id: u32, channel: &str) -> Option<serde_json::Value> {
    let tuple = b
        .get_checkpoint("t", "", Some(&cp_id(id)))
        .await
        .unwrap()
        .unwrap();
    tuple
        .checkpoint
        .channel_values
        .get(channel)
        .map(storage_testkit::data::json_of)
}
async fn put(b: &RedisBackend, id: u32, channels: &[(&str, &str, serde_json::Value)]) {
    let cp = checkpoint("t", "", &cp_id(id), channels);
    let new = cp.channel_versions.clone();
    b.put_checkpoint(cp, new).await.unwrap();
}

/// Finding 1: `delete_for_runs` empties a namespace, its values stay in `blobs`; the next
/// put finds `ids` empty and starts a fresh index that does not know them, so no prune
/// in delta mode ever removes them (the previous release's prune did), and a later put
/// that names the same channel version (versions restart when a namespace starts over)
/// reads the orphan instead of the value it sent (HSETNX keeps the orphan).
#[tokio::test]
async fn values_orphaned_by_an_emptied_namespace_are_pruned() {
    let ns = unique("orphan");
    let b = standalone(&ns);
    b.initialize().await.unwrap();
    let mut cp = checkpoint("t", "", &cp_id(1), &[("a", "1", json!("old run"))]);
    cp.metadata.insert("run_id".into(), json!("r"));
    let new = cp.channel_versions.clone();
    b.put_checkpoint(cp, new).await.unwrap();
    assert_eq!(b.delete_for_runs(&["r".to_owned()]).await.unwrap(), 1);
    put(&b, 2, &[("a", "2", json!(2))]).await;
    put(&b, 3, &[("a", "3", json!(3))]).await;
    assert_eq!(b.prune_checkpoints("t", 1).await.unwrap(), 1);
    let orphan: i64 = get(
        &b,
        redis::cmd("HEXISTS")
            .arg(key(&ns, "t", "blobs"))
            .arg(field("a", "1")),
    )
    .await;
    // A new run of the thread names version 1 of "a" again, with its own value.
    put(&b, 4, &[("a", "1", json!("new run"))]).await;
    assert_eq!(value_of(&b, 4, "a").await, Some(json!("new run")));
    assert_eq!(orphan, 0, "a value no checkpoint names survived the prune");
}

/// The rebuild written in parts (more than 2,000 named fields): after it the index is
/// current and exact, and the values the survivors name are all there.
#[tokio::test]
async fn a_rebuild_in_parts_is_exact() {
    let ns = unique("parts");
    let b = standalone(&ns);
    b.initialize().await.unwrap();
    let names: Vec<String> = (0..2_500).map(|i| format!("c{i}")).collect();
    let wide = |n: u32, version: &'static str| {
        names
            .iter()
            .map(|c| (c.as_str(), version, json!(n)))
            .collect::<Vec<_>>()
    };
    put(&b, 1, &[("x", "1", json!(1))]).await;
    put(&b, 2, &wide(2, "2")).await;
    // A replace makes the index stale: the next prune rebuilds it from 2,501 fields.
    put(&b, 2, &wide(2, "2")).await;
    put(&b, 3, &[("x", "3", json!(3))]).await;
    assert_eq!(b.prune_checkpoints("t", 2).await.unwrap(), 1);
    assert!(
        check_exact(&b, &ns).await,
        "the rebuilt index is not current"
    );
    // Delta mode next, also in parts: 2,500 new counts (c*:4) and 2,500 fields to drop.
    put(&b, 4, &wide(4, "4")).await;
    put(&b, 5, &[("x", "5", json!(5))]).await;
    assert_eq!(b.prune_checkpoints("t", 2).await.unwrap(), 2);
    assert!(
        check_exact(&b, &ns).await,
        "the delta in parts left it stale"
    );
    let fields: i64 = get(&b, redis::cmd("HLEN").arg(key(&ns, "t", "blobs"))).await;
    assert_eq!(fields, 2_500 + 1, "cp 4's c*:4 and cp 5's x:5");
    assert_eq!(value_of(&b, 4, "c2499").await, Some(json!(4)));
}

/// Whether `idx == chg`, asserting then that users + unidx equal a recount.
async fn check_exact(b: &RedisBackend, ns: &str) -> bool {
    let chg: Option<String> = get(b, redis::cmd("GET").arg(key(ns, "t", "chg"))).await;
    let idx: Option<String> = get(b, redis::cmd("GET").arg(key(ns, "t", "idx"))).await;
    if chg.is_none() || chg != idx {
        return false;
    }
    let records: BTreeMap<String, Vec<u8>> =
        get(b, redis::cmd("HGETALL").arg(key(ns, "t", "cp"))).await;
    let names = |r: &[u8]| {
        let cp: Checkpoint = wire::decode(r).unwrap();
        cp.channel_versions
            .iter()
            .map(|(c, v)| field(c, v))
            .collect::<Vec<_>>()
    };
    let mut recount: BTreeMap<String, i64> = BTreeMap::new();
    for r in records.values() {
        for f in names(r) {
            *recount.entry(f).or_default() += 1;
        }
    }
    let mut indexed: BTreeMap<String, i64> =
        get(b, redis::cmd("HGETALL").arg(key(ns, "t", "users"))).await;
    let unidx: Vec<String> = get(b, redis::cmd("SMEMBERS").arg(key(ns, "t", "unidx"))).await;
    for id in &unidx {
        for f in names(&records[id]) {
            *indexed.entry(f).or_default() += 1;
        }
    }
    assert_eq!(indexed, recount);
    let _ = versions(&[]);
    true
}

/// Prunes (rebuilds and deltas written in parts) racing puts and forks: no value a stored
/// checkpoint names is lost, and a current index is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prunes_in_parts_racing_puts_keep_every_named_value() {
    let ns = unique("race");
    let b = std::sync::Arc::new(standalone(&ns));
    b.initialize().await.unwrap();
    let names: Vec<String> = (0..2_200).map(|i| format!("c{i}")).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (b, done) = (b.clone(), done.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = b.prune_checkpoints("t", 3).await;
                rounds += 1;
            }
            rounds
        })
    };
    for k in 1..=25u32 {
        let version = k.to_string();
        let channels: Vec<_> = names
            .iter()
            .map(|c| (c.as_str(), version.as_str(), json!(k)))
            .collect();
        put(&b, 2 * k, &channels).await;
        // A fork of the newest, naming its values without sending them.
        let mut fork = Checkpoint::new("t", "", cp_id(2 * k + 1));
        fork.parent_id = Some(cp_id(2 * k));
        fork.channel_versions = names.iter().map(|c| (c.clone(), version.clone())).collect();
        b.put_checkpoint(fork, versions(&[])).await.unwrap();
        if k % 5 == 0 {
            // A replace now and then makes the index stale, so prunes rebuild.
            put(&b, 2 * k, &channels).await;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = pruner.await.unwrap();
    let records: BTreeMap<String, Vec<u8>> =
        get(&b, redis::cmd("HGETALL").arg(key(&ns, "t", "cp"))).await;
    let blobs: Vec<String> = get(&b, redis::cmd("HKEYS").arg(key(&ns, "t", "blobs"))).await;
    let blobs: std::collections::BTreeSet<String> = blobs.into_iter().collect();
    for (id, r) in &records {
        let cp: Checkpoint = wire::decode(r).unwrap();
        for (c, v) in &cp.channel_versions {
            assert!(
                blobs.contains(&field(c, v)),
                "{id} lost {c}:{v} ({rounds} prunes)"
            );
        }
    }
    check_exact(&b, &ns).await;
    b.prune_checkpoints("t", 2).await.unwrap();
    assert!(check_exact(&b, &ns).await);
    eprintln!(
        "{rounds} prunes raced the puts; {} checkpoints left",
        records.len()
    );
}

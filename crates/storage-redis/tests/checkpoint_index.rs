//! The lazy index of channel value users a checkpoint namespace keeps for its prunes
//! (`users`, `unidx`, `idx` beside the change counter `chg`): whenever it claims to be
//! current (`idx == chg`) it matches a recount from the stored records, after every path
//! that changes a namespace, on a server and on a Cluster; a previous release's puts and
//! prunes (their scripts quoted below verbatim), which bump `chg` but not `idx`, make the
//! next prune recount instead of trusting it, so no value a survivor names is deleted.
//! Also its edges: values a namespace's last checkpoints left behind, the rebuild and the
//! delta written in parts, and prunes in parts racing puts and forks that name values
//! without sending them.

use std::collections::BTreeMap;

use deadpool_redis::redis;
use serde_json::json;
use storage_core::{wire, Checkpoint, CheckpointStore, Retention, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{checkpoint, cp_id, versions};

/// The previous release's `PUT_CHECKPOINT` with the part of its prelude it uses
/// (`git show de50905:crates/storage-redis/src/scripts.rs`). KEYS: namespaces, ids,
/// records, blobs, changes. ARGV: ttl, hex ns, id, record, then blob field/value pairs.
const OLD_PUT_CHECKPOINT: &str = r#"
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

/// The previous release's `PRUNE_NAMESPACE` with the part of its prelude it uses (same
/// commit). KEYS: ids, records, write ids, blobs, changes. ARGV: expected number of ids,
/// expected change counter, number of victims n, the prefix of the victims' write keys,
/// n victim ids, then blob fields to remove.
const OLD_PRUNE_NAMESPACE: &str = r#"
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function changed(key)
  if redis.call('INCR', key) == 1 then
    local now = redis.call('TIME')
    redis.call('SET', key, now[1] .. string.format('%06d', tonumber(now[2])))
  end
end
if redis.call('ZCARD', KEYS[1]) ~= tonumber(ARGV[1])
  or (redis.call('GET', KEYS[5]) or '') ~= ARGV[2] then
  return -1
end
local n = tonumber(ARGV[3])
for i = 5, 4 + n do
  local id = ARGV[i]
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('SREM', KEYS[3], hex(id))
  redis.call('DEL', ARGV[4] .. hex(id))
end
for i = 5 + n, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
if n > 0 then changed(KEYS[5]) end
return n
"#;

const PREFIX: &str = "storage";

fn hex(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A namespace's keys as this and the previous release spell them, written out here so a
/// change of layout cannot hide from these tests.
struct Keys {
    base: String,
    ns: String,
}

impl Keys {
    fn new(namespace: &str, thread: &str) -> Self {
        Keys {
            base: format!("{PREFIX}{{{namespace}:t:{}}}", hex(thread)),
            ns: hex(""),
        }
    }
    fn key(&self, kind: &str) -> String {
        format!("{}:{kind}:{}", self.base, self.ns)
    }
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

fn cluster(namespace: &str) -> RedisBackend {
    let urls = storage_testkit::servers::redis::redis_cluster_urls();
    RedisBackend::new(
        RedisConfig::cluster(urls)
            .with_namespace(namespace)
            .with_pool_size(4),
    )
    .unwrap()
}

/// Checkpoint `n` of `thread` writing version `n` of channel "a" and, for even `n`,
/// version `n` of channel "b".
fn step(thread: &str, n: u32) -> (Checkpoint, storage_core::ChannelVersions) {
    let v = n.to_string();
    let mut channels = vec![("a", v.as_str(), json!(n))];
    if n % 2 == 0 {
        channels.push(("b", v.as_str(), json!(format!("b{n}"))));
    }
    let cp = checkpoint(thread, "", &cp_id(n), &channels);
    let new = cp.channel_versions.clone();
    (cp, new)
}

/// Checkpoint `id` naming version `n` of "a" without sending it (a fork of checkpoint n).
fn fork_of(thread: &str, id: u32, n: u32) -> Checkpoint {
    let mut cp = Checkpoint::new(thread, "", cp_id(id));
    cp.parent_id = Some(cp_id(n));
    cp.channel_versions = versions(&[("a", &n.to_string())]);
    cp
}

fn field(channel: &str, version: &str) -> String {
    format!("{}:{}", hex(channel), hex(version))
}

async fn get<T: redis::FromRedisValue>(b: &RedisBackend, cmd: &mut redis::Cmd) -> T {
    b.raw_query(cmd).await.unwrap()
}

/// Whether the namespace's index claims to be current (`idx == chg`).
async fn is_current(b: &RedisBackend, keys: &Keys) -> bool {
    let chg: Option<String> = get(b, redis::cmd("GET").arg(keys.key("chg"))).await;
    let idx: Option<String> = get(b, redis::cmd("GET").arg(keys.key("idx"))).await;
    chg.is_some() && chg == idx
}

/// Asserts that a current index, `users` plus the names of the `unidx` checkpoints, counts
/// exactly what the stored records name; returns whether it was current.
async fn check_index(b: &RedisBackend, keys: &Keys) -> bool {
    if !is_current(b, keys).await {
        return false;
    }
    let records: BTreeMap<String, Vec<u8>> =
        get(b, redis::cmd("HGETALL").arg(keys.key("cp"))).await;
    let names = |record: &[u8]| {
        let cp: Checkpoint = wire::decode(record).unwrap();
        cp.channel_versions
            .iter()
            .map(|(c, v)| field(c, v))
            .collect::<Vec<_>>()
    };
    let mut recount: BTreeMap<String, i64> = BTreeMap::new();
    for record in records.values() {
        for f in names(record) {
            *recount.entry(f).or_default() += 1;
        }
    }
    let mut indexed: BTreeMap<String, i64> =
        get(b, redis::cmd("HGETALL").arg(keys.key("users"))).await;
    let unindexed: Vec<String> = get(b, redis::cmd("SMEMBERS").arg(keys.key("unidx"))).await;
    for id in &unindexed {
        let record = records
            .get(id)
            .unwrap_or_else(|| panic!("unindexed {id} is not stored"));
        for f in names(record) {
            *indexed.entry(f).or_default() += 1;
        }
    }
    assert_eq!(indexed, recount, "the index differs from a recount");
    true
}

async fn put(b: &RedisBackend, thread: &str, n: u32) {
    let (cp, new) = step(thread, n);
    b.put_checkpoint(cp, new).await.unwrap();
}

async fn value_of(b: &RedisBackend, thread: &str, id: u32) -> Option<serde_json::Value> {
    let tuple = b
        .get_checkpoint(thread, "", Some(&cp_id(id)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("checkpoint {id} is gone"));
    tuple
        .checkpoint
        .channel_values
        .get("a")
        .map(storage_testkit::data::json_of)
}

fn keep_last(n: u64) -> Retention {
    Retention {
        created_before: None,
        keep_last: Some(n),
    }
}

/// Every path that changes a namespace, each followed by the recount check; the paths that
/// keep the index current must leave it current.
async fn index_follows_every_path(b: RedisBackend, namespace: &str) {
    b.initialize().await.unwrap();
    let keys = Keys::new(namespace, "t");
    for n in 1..=6 {
        put(&b, "t", n).await;
        assert!(check_index(&b, &keys).await, "put {n} left the index stale");
    }
    b.put_checkpoint(fork_of("t", 7, 2), versions(&[]))
        .await
        .unwrap();
    assert!(check_index(&b, &keys).await, "a fork left the index stale");

    assert_eq!(b.prune_checkpoints("t", 5).await.unwrap(), 2);
    assert!(check_index(&b, &keys).await, "prune left the index stale");
    assert_eq!(b.retain_checkpoints(keep_last(4)).await.unwrap(), 1);
    assert!(check_index(&b, &keys).await, "a sweep left the index stale");
    // Checkpoint 7 names checkpoint 2's value, which prune kept.
    assert_eq!(value_of(&b, "t", 7).await, Some(json!(2)));

    // A put again under a stored id makes the index stale; the next prune recounts.
    b.put_checkpoint(fork_of("t", 6, 4), versions(&[]))
        .await
        .unwrap();
    assert!(
        !check_index(&b, &keys).await,
        "a replace kept the index current"
    );
    put(&b, "t", 8).await;
    assert!(!is_current(&b, &keys).await, "a put trusted a stale index");
    assert_eq!(b.prune_checkpoints("t", 4).await.unwrap(), 1);
    assert!(
        check_index(&b, &keys).await,
        "a rebuild left the index stale"
    );

    // delete_for_runs makes it stale; the next sweep rebuilds it.
    let (mut cp, new) = step("t", 9);
    cp.metadata.insert("run_id".into(), json!("r"));
    b.put_checkpoint(cp, new).await.unwrap();
    assert!(check_index(&b, &keys).await);
    assert_eq!(b.delete_for_runs(&["r".to_owned()]).await.unwrap(), 1);
    assert!(
        !check_index(&b, &keys).await,
        "a delete kept the index current"
    );
    put(&b, "t", 10).await;
    assert_eq!(b.retain_checkpoints(keep_last(4)).await.unwrap(), 1);
    assert!(check_index(&b, &keys).await, "a sweep left the index stale");

    // A copy's target starts stale, and its first prune rebuilds.
    let copy_keys = Keys::new(namespace, "copy");
    assert_eq!(b.copy_thread("t", "copy").await.unwrap(), 4);
    check_index(&b, &copy_keys).await;
    put(&b, "copy", 11).await;
    check_index(&b, &copy_keys).await;
    assert_eq!(b.prune_checkpoints("copy", 4).await.unwrap(), 1);
    assert!(check_index(&b, &copy_keys).await);
    assert_eq!(value_of(&b, "copy", 7).await, Some(json!(2)));

    // delete_thread removes the index with the rest; a thread put anew starts a fresh one.
    assert_eq!(b.delete_thread("t").await.unwrap(), 4);
    for kind in ["users", "unidx", "idx"] {
        let exists: i64 = get(&b, redis::cmd("EXISTS").arg(keys.key(kind))).await;
        assert_eq!(exists, 0, "delete_thread left {kind}");
    }
    put(&b, "t", 1).await;
    put(&b, "t", 2).await;
    assert!(
        check_index(&b, &keys).await,
        "a fresh thread's index is stale"
    );
}

#[tokio::test]
async fn index_follows_every_path_on_a_server() {
    let namespace = unique("index");
    index_follows_every_path(standalone(&namespace), &namespace).await;
}

#[tokio::test]
async fn index_follows_every_path_on_a_cluster() {
    let namespace = unique("index");
    index_follows_every_path(cluster(&namespace), &namespace).await;
}

/// A checkpoint put by the previous release: its put script, with this release's record.
async fn old_put(b: &RedisBackend, keys: &Keys, cp: &Checkpoint) {
    let mut record = cp.clone();
    record.channel_values = BTreeMap::new();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(OLD_PUT_CHECKPOINT)
        .arg(5)
        .arg(format!("{}:nss", keys.base))
        .arg(keys.key("ids"))
        .arg(keys.key("cp"))
        .arg(keys.key("blobs"))
        .arg(keys.key("chg"))
        .arg("0")
        .arg(&keys.ns)
        .arg(&cp.id)
        .arg(wire::encode(&record).unwrap());
    for (channel, value) in &cp.channel_values {
        let version = &cp.channel_versions[channel];
        cmd.arg(field(channel, version))
            .arg(wire::encode_value(value).unwrap());
    }
    let () = get(b, &mut cmd).await;
}

/// The previous release's prune of the oldest checkpoint, removing the blobs `unused`.
async fn old_prune_oldest(b: &RedisBackend, keys: &Keys, unused: &[String]) {
    let len: i64 = get(b, redis::cmd("ZCARD").arg(keys.key("ids"))).await;
    let chg: String = get(b, redis::cmd("GET").arg(keys.key("chg"))).await;
    let oldest: Vec<String> = get(b, redis::cmd("ZRANGE").arg(keys.key("ids")).arg(0).arg(0)).await;
    let removed: i64 = get(
        b,
        redis::cmd("EVAL")
            .arg(OLD_PRUNE_NAMESPACE)
            .arg(5)
            .arg(keys.key("ids"))
            .arg(keys.key("cp"))
            .arg(keys.key("wids"))
            .arg(keys.key("blobs"))
            .arg(keys.key("chg"))
            .arg(len)
            .arg(chg)
            .arg(1)
            .arg(format!("{}:w:{}:", keys.base, keys.ns))
            .arg(&oldest[0])
            .arg(unused),
    )
    .await;
    assert_eq!(removed, 1);
}

/// Previous-release writes between this release's puts and its prunes: the index they did
/// not keep is distrusted (their scripts bump `chg`), so a value only they name survives.
async fn old_release_writes_are_not_trusted(b: RedisBackend, namespace: &str) {
    b.initialize().await.unwrap();
    let keys = Keys::new(namespace, "t");
    for n in 1..=3 {
        put(&b, "t", n).await;
    }
    assert!(check_index(&b, &keys).await);
    // The old release puts a fork of checkpoint 1 (naming its value, sending none); the
    // index, which counts checkpoint 1 as the value's only user, does not know it.
    old_put(&b, &keys, &fork_of("t", 4, 1)).await;
    put(&b, "t", 5).await;
    assert_eq!(b.retain_checkpoints(keep_last(4)).await.unwrap(), 1);
    assert_eq!(value_of(&b, "t", 4).await, Some(json!(1)));
    assert!(check_index(&b, &keys).await);

    // The old release prunes checkpoint 2 (and its values, unused by the others), then a
    // fork of checkpoint 3 is put by this release while the index is stale.
    old_prune_oldest(&b, &keys, &[field("a", "2"), field("b", "2")]).await;
    b.put_checkpoint(fork_of("t", 6, 3), versions(&[]))
        .await
        .unwrap();
    assert_eq!(b.prune_checkpoints("t", 3).await.unwrap(), 1);
    assert_eq!(value_of(&b, "t", 6).await, Some(json!(3)));
    assert!(check_index(&b, &keys).await);
}

#[tokio::test]
async fn old_release_writes_are_not_trusted_on_a_server() {
    let namespace = unique("upgrade");
    old_release_writes_are_not_trusted(standalone(&namespace), &namespace).await;
}

#[tokio::test]
async fn old_release_writes_are_not_trusted_on_a_cluster() {
    let namespace = unique("upgrade");
    old_release_writes_are_not_trusted(cluster(&namespace), &namespace).await;
}

/// A fork naming an older checkpoint's value, put after a sweep, keeps that value when the
/// next sweep removes the checkpoint that stored it.
#[tokio::test]
async fn a_fork_put_after_a_sweep_keeps_its_value() {
    let namespace = unique("fork");
    let b = standalone(&namespace);
    b.initialize().await.unwrap();
    let keys = Keys::new(&namespace, "t");
    for n in 1..=3 {
        put(&b, "t", n).await;
    }
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 1);
    b.put_checkpoint(fork_of("t", 4, 2), versions(&[]))
        .await
        .unwrap();
    assert_eq!(b.retain_checkpoints(keep_last(2)).await.unwrap(), 1);
    assert_eq!(value_of(&b, "t", 4).await, Some(json!(2)));
    assert!(check_index(&b, &keys).await);
    // Checkpoint 1's value, which nothing names any more, went with it.
    let exists: i64 = get(
        &b,
        redis::cmd("HEXISTS")
            .arg(keys.key("blobs"))
            .arg(field("a", "1")),
    )
    .await;
    assert_eq!(exists, 0);
}

/// Past 10,000 ids waiting to be indexed a put stops tracking and drops them, so memory
/// stays bounded when no prune runs; the next prune rebuilds the index.
#[tokio::test]
async fn puts_stop_tracking_past_the_cap() {
    use futures::StreamExt;
    const CAP: u32 = 10_000;
    let namespace = unique("cap");
    let b = standalone(&namespace);
    b.initialize().await.unwrap();
    let keys = Keys::new(&namespace, "t");
    futures::stream::iter(1..=CAP)
        .map(|n| put(&b, "t", n))
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let waiting: i64 = get(&b, redis::cmd("SCARD").arg(keys.key("unidx"))).await;
    assert_eq!(waiting, i64::from(CAP));
    assert!(is_current(&b, &keys).await);
    put(&b, "t", CAP + 1).await;
    let exists: i64 = get(&b, redis::cmd("EXISTS").arg(keys.key("unidx"))).await;
    assert_eq!(exists, 0, "unidx outgrew its cap");
    assert!(!is_current(&b, &keys).await);
    assert_eq!(
        b.prune_checkpoints("t", 10).await.unwrap(),
        u64::from(CAP) - 9
    );
    assert!(check_index(&b, &keys).await);
}

/// The value checkpoint `id` of thread "t" reads for `channel`.
async fn channel_value(b: &RedisBackend, id: u32, channel: &str) -> Option<serde_json::Value> {
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
/// Puts checkpoint `id` of thread "t" storing every value it names.
async fn put_values(b: &RedisBackend, id: u32, channels: &[(&str, &str, serde_json::Value)]) {
    let cp = checkpoint("t", "", &cp_id(id), channels);
    let new = cp.channel_versions.clone();
    b.put_checkpoint(cp, new).await.unwrap();
}

/// `delete_for_runs` empties a namespace, its values stay in `blobs`; the next
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
    put_values(&b, 2, &[("a", "2", json!(2))]).await;
    put_values(&b, 3, &[("a", "3", json!(3))]).await;
    assert_eq!(b.prune_checkpoints("t", 1).await.unwrap(), 1);
    let orphan: i64 = get(
        &b,
        redis::cmd("HEXISTS")
            .arg(Keys::new(&ns, "t").key("blobs"))
            .arg(field("a", "1")),
    )
    .await;
    // A new run of the thread names version 1 of "a" again, with its own value.
    put_values(&b, 4, &[("a", "1", json!("new run"))]).await;
    assert_eq!(channel_value(&b, 4, "a").await, Some(json!("new run")));
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
    put_values(&b, 1, &[("x", "1", json!(1))]).await;
    put_values(&b, 2, &wide(2, "2")).await;
    // A replace makes the index stale: the next prune rebuilds it from 2,501 fields.
    put_values(&b, 2, &wide(2, "2")).await;
    put_values(&b, 3, &[("x", "3", json!(3))]).await;
    assert_eq!(b.prune_checkpoints("t", 2).await.unwrap(), 1);
    assert!(
        check_index(&b, &Keys::new(&ns, "t")).await,
        "the rebuilt index is not current"
    );
    // Delta mode next, also in parts: 2,500 new counts (c*:4) and 2,500 fields to drop.
    put_values(&b, 4, &wide(4, "4")).await;
    put_values(&b, 5, &[("x", "5", json!(5))]).await;
    assert_eq!(b.prune_checkpoints("t", 2).await.unwrap(), 2);
    assert!(
        check_index(&b, &Keys::new(&ns, "t")).await,
        "the delta in parts left it stale"
    );
    let fields: i64 = get(&b, redis::cmd("HLEN").arg(Keys::new(&ns, "t").key("blobs"))).await;
    assert_eq!(fields, 2_500 + 1, "cp 4's c*:4 and cp 5's x:5");
    assert_eq!(channel_value(&b, 4, "c2499").await, Some(json!(4)));
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
        put_values(&b, 2 * k, &channels).await;
        // A fork of the newest, naming its values without sending them.
        let mut fork = Checkpoint::new("t", "", cp_id(2 * k + 1));
        fork.parent_id = Some(cp_id(2 * k));
        fork.channel_versions = names.iter().map(|c| (c.clone(), version.clone())).collect();
        b.put_checkpoint(fork, versions(&[])).await.unwrap();
        if k % 5 == 0 {
            // A replace now and then makes the index stale, so prunes rebuild.
            put_values(&b, 2 * k, &channels).await;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = pruner.await.unwrap();
    let records: BTreeMap<String, Vec<u8>> =
        get(&b, redis::cmd("HGETALL").arg(Keys::new(&ns, "t").key("cp"))).await;
    let blobs: Vec<String> = get(
        &b,
        redis::cmd("HKEYS").arg(Keys::new(&ns, "t").key("blobs")),
    )
    .await;
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
    check_index(&b, &Keys::new(&ns, "t")).await;
    b.prune_checkpoints("t", 2).await.unwrap();
    assert!(check_index(&b, &Keys::new(&ns, "t")).await);
    eprintln!(
        "{rounds} prunes raced the puts; {} checkpoints left",
        records.len()
    );
}

//! Channel values a prune or retention sweep leaves unused are collected later, by
//! `collect_garbage`, not at once: a put that forks from an older checkpoint names a value
//! without re-sending it, and when its record lands after the sweep listed the survivors
//! (here: right after the sweep, which makes the race deterministic) it must still read
//! back with that value. Collection re-checks every candidate against the checkpoints
//! stored at that time and removes only what none of them uses.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use serde_json::json;
use storage_core::{ChannelVersions, Checkpoint, CheckpointStore, Retention, StorageBackend};
use storage_object::{ObjectBackend, ObjectConfig};

const THREAD: &str = "t1";

async fn backend(dir: &tempfile::TempDir) -> ObjectBackend {
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("gc")).unwrap();
    b.initialize().await.unwrap();
    b
}

/// Checkpoint `id` with channel `a` at `version`; stores the value when `value` is given.
async fn put(b: &ObjectBackend, id: &str, version: &str, value: Option<i64>) {
    let mut cp = Checkpoint::new(THREAD, "", id);
    cp.channel_versions.insert("a".into(), version.into());
    let mut new_versions = ChannelVersions::new();
    if let Some(value) = value {
        cp.channel_values.insert("a".into(), json!(value).into());
        new_versions.insert("a".into(), version.into());
    }
    b.put_checkpoint(cp, new_versions).await.unwrap();
}

/// The value of channel `a` checkpoint `id` reads back with.
async fn value_of(b: &ObjectBackend, id: &str) -> Option<serde_json::Value> {
    let tuple = b.get_checkpoint(THREAD, "", Some(id)).await.unwrap()?;
    tuple
        .checkpoint
        .channel_values
        .get("a")
        .and_then(|v| v.as_json().cloned())
}

/// How many channel values the thread stores.
async fn stored_values(b: &ObjectBackend) -> usize {
    let prefix = Path::from(format!("gc/threads/i{}", hex::encode(THREAD)));
    let paths: Vec<String> = b
        .object_store()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.iter().filter(|p| p.contains("/blobs/")).count()
}

/// Checkpoints 1..3 with `a` at versions 1, 2, 3; `trim` keeps the newest 2, so `a`=1 is
/// unused; then a fork of checkpoint 1 names `a`=1 without re-sending it.
async fn fork_after_trim(trim: impl AsyncFnOnce(&ObjectBackend) -> u64) {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    assert_eq!(trim(&b).await, 1, "checkpoint 1 is removed");
    assert_eq!(value_of(&b, "0001").await, None, "checkpoint 1 is gone");

    // The fork lands after the sweep decided that `a`=1 was unused.
    put(&b, "0004", "1", None).await;
    assert_eq!(
        value_of(&b, "0004").await,
        Some(json!(10)),
        "the fork reads back with the value it names"
    );
    assert_eq!(stored_values(&b).await, 3);

    // A grace longer than the markers' age collects nothing.
    let report = b.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.checkpoint_values, 0);

    // Collection keeps `a`=1 (used again); nothing else is unused yet.
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 0);
    assert_eq!(value_of(&b, "0004").await, Some(json!(10)));
    assert_eq!(stored_values(&b).await, 3);

    // Pruning to the newest checkpoint leaves `a`=2 and `a`=3 unused: they stay until
    // collected, then go; `a`=1 stays with the fork.
    assert_eq!(b.prune_checkpoints(THREAD, 1).await.unwrap(), 2);
    assert_eq!(stored_values(&b).await, 3);
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 2);
    assert_eq!(stored_values(&b).await, 1);
    assert_eq!(value_of(&b, "0004").await, Some(json!(10)));
    let again = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        again.checkpoint_values, 0,
        "markers are removed once handled"
    );
}

#[tokio::test]
async fn a_fork_after_a_prune_keeps_the_value_it_names() {
    fork_after_trim(async |b: &ObjectBackend| b.prune_checkpoints(THREAD, 2).await.unwrap()).await;
}

#[tokio::test]
async fn a_fork_after_a_retention_sweep_keeps_the_value_it_names() {
    fork_after_trim(async |b: &ObjectBackend| {
        b.retain_checkpoints(Retention {
            created_before: None,
            keep_last: Some(2),
        })
        .await
        .unwrap()
    })
    .await;
}

#[tokio::test]
async fn collection_within_the_grace_period_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    assert_eq!(b.prune_checkpoints(THREAD, 1).await.unwrap(), 2);
    assert_eq!(stored_values(&b).await, 3, "values wait for collection");
    let report = b.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.checkpoint_values, 0);
    assert_eq!(stored_values(&b).await, 3, "younger than the grace period");
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 2);
    assert_eq!(stored_values(&b).await, 1);
    assert_eq!(value_of(&b, "0003").await, Some(json!(30)));
}

#[tokio::test]
async fn a_prune_that_died_before_removing_its_records_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for v in 1..=3 {
        put(&b, &format!("000{v}"), &v.to_string(), Some(v * 10)).await;
    }
    // A prune that wrote its marker (naming `a`=1) and died before deleting checkpoint 1:
    // the same state as a prune that finished and checkpoint 1 written again.
    assert_eq!(b.prune_checkpoints(THREAD, 2).await.unwrap(), 1);
    put(&b, "0001", "1", Some(10)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 0, "checkpoint 1 still uses `a`=1");
    assert_eq!(value_of(&b, "0001").await, Some(json!(10)));
    assert_eq!(stored_values(&b).await, 3);
    // The marker is gone; a later prune names the value again.
    assert_eq!(b.prune_checkpoints(THREAD, 2).await.unwrap(), 1);
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 1);
    assert_eq!(stored_values(&b).await, 2);
    assert_eq!(value_of(&b, "0003").await, Some(json!(30)));
}

/// The file of checkpoint `id`'s record in namespace "" of [`THREAD`].
fn record_file(dir: &tempfile::TempDir, id: &str) -> std::path::PathBuf {
    dir.path()
        .join("gc/threads")
        .join(format!("i{}", hex::encode(THREAD)))
        .join("i")
        .join("checkpoints")
        .join(format!("i{}", hex::encode(id)))
}

/// Checkpoint `id` with channel `a` at `version` (stored) and channel `s` at `shared`
/// (stored only when `send_shared`).
async fn put_two(b: &ObjectBackend, id: &str, version: &str, shared: &str, send_shared: bool) {
    let mut cp = Checkpoint::new(THREAD, "", id);
    let mut new_versions = ChannelVersions::new();
    cp.channel_versions.insert("a".into(), version.into());
    cp.channel_values
        .insert("a".into(), json!(format!("a{version}")).into());
    new_versions.insert("a".into(), version.into());
    cp.channel_versions.insert("s".into(), shared.into());
    if send_shared {
        cp.channel_values
            .insert("s".into(), json!(format!("s{shared}")).into());
        new_versions.insert("s".into(), shared.into());
    }
    b.put_checkpoint(cp, new_versions).await.unwrap();
}

/// Both channels checkpoint `id` reads back with.
async fn values_of(
    b: &ObjectBackend,
    id: &str,
) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let tuple = b
        .get_checkpoint(THREAD, "", Some(id))
        .await
        .unwrap()
        .unwrap();
    let get = |channel: &str| {
        tuple
            .checkpoint
            .channel_values
            .get(channel)
            .and_then(|v| v.as_json().cloned())
    };
    (get("a"), get("s"))
}

/// A retention sweep reads the checkpoints it removes and none it keeps (so its cost
/// follows what it removes): a survivor that does not decode does not stop it (it did
/// when the sweep read the survivors to find the values still used). Collection, which
/// reads every record, leaves that chain alone until the record decodes again, then
/// removes exactly the values no survivor uses.
#[tokio::test]
async fn a_sweep_reads_no_survivor_and_collection_keeps_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    // `s`=1 is shared by all five (sent by the first), `a` is each one's own.
    for n in 1..=5 {
        put_two(&b, &format!("000{n}"), &n.to_string(), "1", n == 1).await;
    }
    assert_eq!(stored_values(&b).await, 6);
    let newest = record_file(&dir, "0005");
    let good = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, b"\0").unwrap();

    let keep_two = Retention {
        created_before: None,
        keep_last: Some(2),
    };
    assert_eq!(
        b.retain_checkpoints(keep_two).await.unwrap(),
        3,
        "the undecodable survivor is not read"
    );
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        report.checkpoint_values, 0,
        "a chain whose records do not all decode keeps its values"
    );
    assert_eq!(stored_values(&b).await, 6);

    std::fs::write(&newest, good).unwrap();
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 3, "a1..a3; `s`=1 is still used");
    assert_eq!(stored_values(&b).await, 3);
    for n in [4, 5] {
        assert_eq!(
            values_of(&b, &format!("000{n}")).await,
            (Some(json!(format!("a{n}"))), Some(json!("s1")))
        );
    }
    let again = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(again.checkpoint_values, 0);
}

/// A value named by an old marker (a removed checkpoint used it) whose last user was
/// removed only recently is kept until that removal's marker is old too: a fork of that
/// user may still be landing.
#[tokio::test]
async fn a_value_whose_last_user_went_recently_waits_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    put_two(&b, "0001", "1", "1", true).await;
    put_two(&b, "0002", "2", "1", false).await;
    put_two(&b, "0003", "3", "3", true).await;
    assert_eq!(
        b.prune_checkpoints(THREAD, 2).await.unwrap(),
        1,
        "checkpoint 1"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        b.prune_checkpoints(THREAD, 1).await.unwrap(),
        1,
        "checkpoint 2"
    );

    // The first marker is older than the grace, the second is not: `s`=1, named by
    // both, stays; a1 goes.
    let report = b
        .collect_garbage(Duration::from_millis(1000))
        .await
        .unwrap();
    assert_eq!(report.checkpoint_values, 1);
    // A fork of checkpoint 2 read before its removal lands now.
    put_two(&b, "0004", "2", "1", false).await;
    assert_eq!(
        values_of(&b, "0004").await,
        (Some(json!("a2")), Some(json!("s1")))
    );
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 0, "the fork uses a2 and s1 again");
    assert_eq!(
        b.prune_checkpoints(THREAD, 1).await.unwrap(),
        1,
        "checkpoint 3"
    );
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 2, "a3 and s3");
    assert_eq!(
        values_of(&b, "0004").await,
        (Some(json!("a2")), Some(json!("s1")))
    );
}

/// Putting a stored checkpoint id again with other versions leaves the versions it named
/// before unused: they are named in a marker as a removal's are, so a value that an old
/// marker names is kept while a fork of the replaced record may still be landing, and
/// collected once unused for the grace period.
#[tokio::test]
async fn replacing_a_checkpoint_names_the_versions_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    put_two(&b, "0001", "1", "1", true).await;
    put_two(&b, "0002", "2", "1", false).await;
    put_two(&b, "0003", "3", "3", true).await;
    let keep_two = Retention {
        created_before: None,
        keep_last: Some(2),
    };
    assert_eq!(b.retain_checkpoints(keep_two).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Checkpoint 2 put again without `s`=1.
    put_two(&b, "0002", "2", "3", false).await;
    assert_eq!(
        values_of(&b, "0002").await,
        (Some(json!("a2")), Some(json!("s3")))
    );
    let report = b
        .collect_garbage(Duration::from_millis(1000))
        .await
        .unwrap();
    assert_eq!(
        report.checkpoint_values, 1,
        "a1 only; `s`=1 was used until the put"
    );
    // A fork of checkpoint 2 as it was before, read before the put, lands now.
    put_two(&b, "0004", "2", "1", false).await;
    assert_eq!(
        values_of(&b, "0004").await,
        (Some(json!("a2")), Some(json!("s1")))
    );
    // The fork put again without `s`: nothing uses `s`=1 any more.
    let mut cp = Checkpoint::new(THREAD, "", "0004");
    cp.channel_versions.insert("a".into(), "2".into());
    b.put_checkpoint(cp, ChannelVersions::new()).await.unwrap();
    // A marker written in the same millisecond as the collection is not yet older than a
    // grace of zero.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 1, "s1");
    assert_eq!(stored_values(&b).await, 3, "a2, a3 and s3");
    assert_eq!(values_of(&b, "0004").await, (Some(json!("a2")), None));
    assert_eq!(
        values_of(&b, "0002").await,
        (Some(json!("a2")), Some(json!("s3")))
    );
}

/// A marker as the release before wrote it (it named only the values no survivor used,
/// as a JSON list of `[channel, version]`, under `unused_values/<thread>/<ns>/<uuid>`),
/// planted beside records of a chain, is collected by the rules of this release: the value
/// it names that no record uses goes, and a sweep of this release removing more keeps
/// every value a survivor reads.
#[tokio::test]
async fn a_marker_of_the_release_before_is_collected_alike() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(&dir).await;
    for n in 1..=4 {
        put_two(&b, &format!("000{n}"), &n.to_string(), "1", n == 1).await;
    }
    // As the release before left it after pruning checkpoint 0000 (which used `a`=0).
    put_two(&b, "0000", "0", "1", false).await;
    std::fs::remove_file(record_file(&dir, "0000")).unwrap();
    let marker = dir
        .path()
        .join("gc/unused_values")
        .join(format!("i{}", hex::encode(THREAD)))
        .join("i")
        .join("0190aaaa00007000800000000000000a");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, br#"[["a","0"]]"#).unwrap();
    assert_eq!(stored_values(&b).await, 6);

    let keep_two = Retention {
        created_before: None,
        keep_last: Some(2),
    };
    assert_eq!(b.retain_checkpoints(keep_two).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        report.checkpoint_values, 3,
        "a0 (old marker), a1 and a2 (the sweep)"
    );
    assert!(!marker.exists());
    for n in [3, 4] {
        assert_eq!(
            values_of(&b, &format!("000{n}")).await,
            (Some(json!(format!("a{n}"))), Some(json!("s1")))
        );
    }
}

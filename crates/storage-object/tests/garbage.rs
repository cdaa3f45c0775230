//! Garbage collection of orphaned artifact content. Worker processes (this test binary run
//! again, selected by `OBJECT_GC_WORKER`) save large artifacts in parts and are SIGKILLed
//! mid-upload, thirty times; their dead uploads leave data objects no version references
//! and, on a local directory, staging files. Collection then removes every one of them and
//! no committed version is lost: every version listed reads back with its digest. A save
//! still running while collection runs with the real grace period is not touched.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use storage_core::{ArtifactStore, Metadata, StorageBackend};
use storage_object::{ObjectBackend, ObjectConfig, DEFAULT_GARBAGE_GRACE};

const MIB: usize = 1024 * 1024;
/// The size of each artifact a worker saves: 7 MiB, in parts.
const ARTIFACT: usize = 7 * MIB;
const CHUNK: usize = 256 * 1024;

fn s3_config(namespace: &str) -> ObjectConfig {
    let target = storage_testkit::servers::s3::s3_target();
    ObjectConfig::new(format!("s3://{}/gc", target.bucket))
        .with_namespace(namespace)
        .with_option("aws_endpoint", target.endpoint)
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", target.access_key_id)
        .with_option("aws_secret_access_key", target.secret_access_key)
        .with_option("aws_region", target.region)
}

fn config_for(store: &str, namespace: &str) -> ObjectConfig {
    let mut config = if store == "s3" {
        s3_config(namespace)
    } else {
        ObjectConfig::new(store).with_namespace(namespace)
    };
    config.multipart_threshold_bytes = MIB as u64;
    config.part_size_bytes = if store == "s3" { 5 * MIB } else { MIB } as u64;
    config
}

/// The content of save `i` of `worker`: recognizable, and different per save.
fn chunk(worker: usize, i: usize, n: usize) -> Bytes {
    Bytes::from(vec![(worker * 31 + i * 7 + n) as u8; CHUNK])
}

/// What a worker does until it is killed: saves 7 MiB artifacts, slowly enough that a kill
/// lands mid-upload.
async fn work(backend: ObjectBackend, worker: usize) {
    for i in 0.. {
        let body = futures::stream::iter(0..ARTIFACT / CHUNK)
            .then(move |n| async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                Ok(chunk(worker, i, n))
            })
            .boxed();
        backend
            .save_artifact_stream(
                "scope",
                &format!("big-{worker}"),
                "application/octet-stream",
                Metadata::new(),
                body,
                None,
            )
            .await
            .unwrap();
    }
}

/// The worker entry point: does nothing unless started by [`kill_savers`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_worker_process() {
    let Ok(spec) = std::env::var("OBJECT_GC_WORKER") else {
        return;
    };
    let parts: Vec<&str> = spec.splitn(3, '|').collect();
    let (worker, namespace, store) = (parts[0].parse().unwrap(), parts[1], parts[2]);
    let backend = ObjectBackend::new(config_for(store, namespace)).unwrap();
    work(backend, worker).await;
}

fn spawn_worker(worker: usize, namespace: &str, store: &str, env: &[(String, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gc_worker_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("OBJECT_GC_WORKER", format!("{worker}|{namespace}|{store}"))
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts `workers` saving processes `rounds` times and SIGKILLs each after a random
/// 150 to 900 ms.
fn kill_savers(
    rounds: usize,
    workers: usize,
    namespace: &str,
    store: &str,
    env: &[(String, String)],
) {
    for _ in 0..rounds {
        let mut children: Vec<Child> = (0..workers)
            .map(|w| spawn_worker(w, namespace, store, env))
            .collect();
        std::thread::sleep(Duration::from_millis(150 + fastrand_ms(750)));
        for child in &mut children {
            assert!(
                child.try_wait().unwrap().is_none(),
                "a worker ended before it was killed"
            );
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(fastrand_ms(100)));
        }
    }
}

/// A pseudo-random number of milliseconds below `below`, from the clock.
fn fastrand_ms(below: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos / 1000) % below.max(1)
}

/// Every artifact data object of the namespace.
async fn data_objects(backend: &ObjectBackend, root: &str) -> BTreeSet<String> {
    let store = backend.object_store();
    let mut listing = store.list(Some(&Path::from(root)));
    let mut found = BTreeSet::new();
    while let Some(meta) = listing.next().await {
        let path = meta.unwrap().location.to_string();
        if path.contains("/artifacts/") && path.contains("/data/") {
            found.insert(path);
        }
    }
    found
}

/// Every staging file (`<object>#<digits>`) under `dir`.
fn staging_files(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name
                    .rsplit_once('#')
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                {
                    found.insert(entry.path().display().to_string());
                }
            }
        }
    }
    found
}

/// Every live version, as (name, version, sha256), after checking that each reads back
/// whole with the digest its metadata records.
async fn live_versions(backend: &ObjectBackend) -> BTreeSet<(String, u64, String)> {
    let mut live = BTreeSet::new();
    for name in backend.list_artifacts("scope").await.unwrap() {
        for meta in backend
            .list_artifact_versions("scope", &name)
            .await
            .unwrap()
        {
            let artifact = backend
                .get_artifact("scope", &name, Some(meta.version))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{name} v{} is listed but gone", meta.version));
            assert_eq!(artifact.data.len() as u64, meta.size);
            assert_eq!(hex::encode(Sha256::digest(&artifact.data)), meta.sha256);
            live.insert((name.clone(), meta.version, meta.sha256));
        }
    }
    live
}

fn namespace() -> String {
    format!(
        "gc_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_multipart_saves_leave_nothing_after_collection_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().display());
    let ns = namespace();
    let backend = ObjectBackend::new(config_for(&store, &ns)).unwrap();
    backend.initialize().await.unwrap();

    kill_savers(10, 3, &ns, &store, &[]);

    let live = live_versions(&backend).await;
    let data = data_objects(&backend, &ns).await;
    let staging = staging_files(dir.path());
    let orphans = data.len() - live.len() + staging.len();
    // The defect as found: the dead saves left content behind (on d331a1a nothing removes
    // it).
    assert!(
        orphans > 0,
        "30 kills left no orphan: the kills came too late"
    );

    let report = backend.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        report.data_objects as usize,
        data.len() - live.len(),
        "{report:?}"
    );
    assert_eq!(report.staging_files as usize, staging.len(), "{report:?}");
    assert!(staging_files(dir.path()).is_empty());
    assert_eq!(
        live_versions(&backend).await,
        live,
        "a live version was lost"
    );
    assert_eq!(
        data_objects(&backend, &ns).await.len(),
        live.len(),
        "orphans remain"
    );
    eprintln!(
        "local directory: {} live versions; collected {} data objects ({} bytes) and {} \
         staging files ({} bytes)",
        live.len(),
        report.data_objects,
        report.data_bytes,
        report.staging_files,
        report.staging_bytes
    );
    // Nothing is left to collect, and collecting again changes nothing.
    let again = backend.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!((again.data_objects, again.staging_files), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_multipart_saves_leave_nothing_after_collection_on_s3() {
    // Start (or find) the server here and hand it to the workers, so all use one bucket.
    let target = storage_testkit::servers::s3::s3_target();
    let env = vec![
        ("STORAGE_TEST_S3_URL".to_owned(), target.endpoint.clone()),
        ("STORAGE_TEST_S3_BUCKET".to_owned(), target.bucket.clone()),
    ];
    let ns = namespace();
    let backend = ObjectBackend::new(config_for("s3", &ns)).unwrap();
    backend.initialize().await.unwrap();

    kill_savers(4, 2, &ns, "s3", &env);

    let root = format!("gc/{ns}");
    let live = live_versions(&backend).await;
    let data = data_objects(&backend, &root).await;
    let report = backend.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        report.data_objects as usize,
        data.len() - live.len(),
        "{report:?}"
    );
    assert_eq!(report.staging_files, 0);
    assert_eq!(
        live_versions(&backend).await,
        live,
        "a live version was lost"
    );
    assert_eq!(
        data_objects(&backend, &root).await.len(),
        live.len(),
        "orphans remain"
    );
}

/// A save whose upload is under way while collection runs with the real grace period
/// keeps its staging file and commits whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_in_progress_is_not_harmed_by_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().display());
    let ns = namespace();
    let backend = ObjectBackend::new(config_for(&store, &ns)).unwrap();
    backend.initialize().await.unwrap();

    let (send, receive) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = futures::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|chunk| (Ok(chunk), receive))
    })
    .boxed();
    let saver = backend.clone();
    let save = tokio::spawn(async move {
        saver
            .save_artifact_stream(
                "scope",
                "in-progress",
                "application/octet-stream",
                Metadata::new(),
                body,
                None,
            )
            .await
    });
    let mut content = Vec::new();
    for n in 0..12 {
        let chunk = chunk(9, 0, n);
        content.extend_from_slice(&chunk);
        send.send(chunk).await.unwrap();
    }
    // 3 MiB sent: the upload is in parts, its staging file on disk.
    let started = Instant::now();
    while staging_files(dir.path()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no staging file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let staging = staging_files(dir.path());

    let report = backend
        .collect_garbage(DEFAULT_GARBAGE_GRACE)
        .await
        .unwrap();
    assert_eq!(
        (report.data_objects, report.staging_files),
        (0, 0),
        "{report:?}"
    );
    assert!(report.too_young >= 1, "{report:?}");
    assert!(
        staging
            .iter()
            .all(|file| std::path::Path::new(file).exists()),
        "collection removed the staging file of a save in progress"
    );

    for n in 12..ARTIFACT / CHUNK {
        let chunk = chunk(9, 0, n);
        content.extend_from_slice(&chunk);
        send.send(chunk).await.unwrap();
    }
    drop(send);
    let meta = save.await.unwrap().unwrap();
    assert_eq!(meta.size as usize, ARTIFACT);
    assert_eq!(meta.sha256, hex::encode(Sha256::digest(&content)));
    // Collected right after the commit, even with no grace at all, the new version stays.
    let report = backend.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        (report.data_objects, report.staging_files),
        (0, 0),
        "{report:?}"
    );
    let read = backend
        .get_artifact("scope", "in-progress", Some(meta.version))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.data.as_ref(), content.as_slice());
}

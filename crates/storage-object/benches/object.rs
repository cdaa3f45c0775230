//! `cargo xtask bench object` (or `cargo bench -p storage-object`): the shared workload on
//! local files and on S3 (`STORAGE_TEST_S3_URL`, or a throwaway moto server), then artifact
//! save/get at 1 KiB, 1 MiB and 256 MiB through the backend and through object_store
//! directly (our/raw ratio), with throughput and peak resident memory (on local files once
//! with `fsync` on, the default, and once with it off), and a 1 GiB round trip with its
//! peak memory. The round trip runs in a fresh child process (this binary with
//! `--gib-child DIR`): an allocator keeps what earlier rows freed, so a peak read in this
//! process would count their leftovers; the child's `VmHWM` counts everything it ever held.
//!
//! Flags: `--ops N`, `--history a,b`, `--concurrency a,b` (shared workload), `--skip-local`,
//! `--skip-s3`, `--skip-workload`, `--skip-gib`, `--dir PATH` (where the local-file rows
//! write; the system's temporary directory if not given).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload, WriteMultipart};
use storage_core::{ArtifactStore, ByteStream};
use storage_object::{ObjectBackend, ObjectConfig};
use storage_testkit::bench::{alternating_calls, BenchOp, Workload};

const MIB: usize = 1024 * 1024;

/// Peak resident set size since the last reset, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// `size` bytes as a stream of 1 MiB chunks sharing one buffer: the source holds 1 MiB.
fn content(size: usize) -> ByteStream {
    let block = Bytes::from(vec![0x5a; MIB.min(size.max(1))]);
    let chunks = size.div_ceil(block.len().max(1));
    futures::stream::iter((0..chunks).map(move |i| {
        let len = block.len().min(size - i * block.len());
        Ok(block.slice(..len))
    }))
    .boxed()
}

fn args_have(flag: &str) -> bool {
    std::env::args().any(|arg| arg == flag)
}

fn arg_after(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == flag)?;
    args.get(at + 1).cloned()
}

fn s3_config(namespace: &str) -> ObjectConfig {
    let target = storage_testkit::servers::s3::s3_target();
    ObjectConfig::new(format!("s3://{}/bench", target.bucket))
        .with_namespace(namespace)
        .with_option("aws_endpoint", target.endpoint)
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", target.access_key_id)
        .with_option("aws_secret_access_key", target.secret_access_key)
        .with_option("aws_region", target.region)
}

fn main() {
    if let Some(dir) = arg_after("--gib-child") {
        gib_child(&dir);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // `--dir` puts the local-file rows elsewhere, e.g. on a tmpfs to take the disk out.
    let dir = match arg_after("--dir") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let namespace = format!("bench_{}", std::process::id());
    let local = ObjectBackend::new(
        ObjectConfig::new(format!("file://{}", dir.path().display())).with_namespace(&namespace),
    )
    .expect("config");
    let unflushed = ObjectBackend::new(
        ObjectConfig::new(format!("file://{}", dir.path().display()))
            .with_namespace(format!("{namespace}_unflushed"))
            .with_fsync(false),
    )
    .expect("config");
    println!(
        "object backend; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    runtime.block_on(async {
        if !args_have("--skip-local") {
            if !args_have("--skip-workload") {
                println!("\n== shared workload, local files ==");
                let workload = Workload {
                    ops: 2_000,
                    checkpoint_ops: 500,
                    history_lengths: vec![1_000, 10_000],
                    concurrency: vec![1, 32],
                }
                .from_args();
                workload.run(Arc::new(local.clone())).await;
            }
            println!("\n== artifacts, local files (fsync on, the default) ==");
            artifacts(&local, &[1024, MIB, 256 * MIB], 2_000).await;
            println!("\n== artifacts, local files, fsync off ==");
            artifacts(&unflushed, &[1024, MIB, 256 * MIB], 2_000).await;
            if !args_have("--skip-gib") {
                println!("\n== 1 GiB round trip, local files, fresh process ==");
                let child = std::process::Command::new(std::env::current_exe().expect("own path"))
                    .args(["--gib-child", &dir.path().display().to_string()])
                    .status()
                    .expect("run the round trip child");
                assert!(child.success(), "the 1 GiB round trip failed: {child}");
            }
        }
        if !args_have("--skip-s3") {
            let s3 = ObjectBackend::new(s3_config(&namespace)).expect("config");
            if !args_have("--skip-workload") {
                println!("\n== shared workload, S3 (moto, single-threaded) ==");
                let workload = Workload {
                    ops: 200,
                    checkpoint_ops: 100,
                    history_lengths: vec![100, 1_000],
                    concurrency: vec![1, 8],
                };
                workload.run(Arc::new(s3.clone())).await;
            }
            println!("\n== artifacts, S3 (moto) ==");
            artifacts(&s3, &[1024, MIB, 256 * MIB], 300).await;
        }
    });
}

/// Save and get through the backend (streaming) and through object_store directly, ours
/// and raw taking turns call by call (`alternating_calls`), so a shared machine's drift and
/// its disk's bursts hit both alike. Throughput is the size over the median call; the ratio
/// is given of the two medians and as the median of the turns' paired ratios.
async fn artifacts(backend: &ObjectBackend, sizes: &[usize], max_ops: usize) {
    for &size in sizes {
        let label = if size >= MIB {
            format!("{}MiB", size / MIB)
        } else {
            format!("{}KiB", size / 1024)
        };
        // Enough calls to time, at most 2 GiB a contender unless that leaves too few turns
        // for a median that one slow call cannot move.
        let turns = (2048 * MIB / size).clamp(16, max_ops);
        reset_peak();
        let raw_path = Path::from(format!("raw/{}/{label}", backend.config().namespace));
        let mib_per_sec = |latency: Duration| size as f64 / MIB as f64 / latency.as_secs_f64();
        // Saves first: the gets read what they stored.
        let rows = [
            (
                "save",
                save_ours(backend, &label, size),
                save_raw(backend, &raw_path, size),
            ),
            (
                "get",
                get_ours(backend, &label, size),
                get_raw(backend, &raw_path, size),
            ),
        ];
        for (what, ours, raw) in rows {
            flush_to_disk();
            alternating_calls(&format!("{what}_{label}"), ours, raw, turns)
                .await
                .print(&format!("{what}_{label} MiB/s"), mib_per_sec);
        }
        // An upper bound: the allocator may keep what earlier sizes freed.
        println!("{label}: peak resident {:.1} MiB", peak_rss_mib());
        // Gigabytes per size: removed before the next, so the disk (or tmpfs) never fills.
        backend.clear_artifacts("bench").await.expect("clear ours");
        let store = backend.object_store();
        let written: Vec<Path> = store
            .list(Some(&raw_path))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .expect("list raw");
        for path in written {
            store.delete(&path).await.expect("delete raw");
        }
    }
}

/// Writes every dirty page to disk (`sync`), so that a row does not pay for the writeback of
/// the row before it: with `fsync` off, gigabytes of saves would otherwise still be in the
/// page cache when the next row starts.
fn flush_to_disk() {
    let status = std::process::Command::new("sync")
        .status()
        .expect("run sync");
    assert!(status.success(), "sync failed: {status}");
}

/// Resets the peak so the next reading covers only what follows (Linux `clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn save_ours(backend: &ObjectBackend, label: &str, size: usize) -> BenchOp {
    let (backend, label) = (backend.clone(), label.to_owned());
    Arc::new(move |_| {
        let (backend, label) = (backend.clone(), label.clone());
        Box::pin(async move {
            backend
                .save_artifact_stream(
                    "bench",
                    &label,
                    "application/octet-stream",
                    Default::default(),
                    content(size),
                    None,
                )
                .await
                .expect("save");
        })
    })
}

fn get_ours(backend: &ObjectBackend, label: &str, size: usize) -> BenchOp {
    let (backend, label) = (backend.clone(), label.to_owned());
    Arc::new(move |_| {
        let (backend, label) = (backend.clone(), label.clone());
        Box::pin(async move {
            let (_, body) = backend
                .open_artifact_stream("bench", &label, None)
                .await
                .expect("open")
                .expect("stored");
            assert_eq!(drain(body).await, size);
        })
    })
}

/// A version record's size: what ours writes for one artifact version.
const RECORD_BYTES: usize = 400;

/// The object_store calls a save of ours makes, made directly: the version lookup (read the
/// latest-version hint, check the number after it) beside the content upload (one put below
/// the multipart threshold, a multipart upload of the same part size and concurrency above
/// it), then the version record created with `PutMode::Create`, then the hint rewritten.
fn save_raw(backend: &ObjectBackend, prefix: &Path, size: usize) -> BenchOp {
    let (store, config, prefix) = (
        backend.object_store(),
        backend.config().clone(),
        prefix.clone(),
    );
    // Each call writes a new content object and record, as each save of ours does.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Arc::new(move |_| {
        let call = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (store, config, prefix) = (store.clone(), config.clone(), prefix.clone());
        Box::pin(async move {
            let data = prefix.clone().join("data").join(call.to_string());
            let upload = async {
                if (size as u64) < config.multipart_threshold_bytes {
                    let chunks: Vec<Bytes> = content(size).try_collect().await.expect("content");
                    let payload: PutPayload = chunks.into_iter().collect();
                    store.put(&data, payload).await.expect("raw put");
                } else {
                    let upload = store.put_multipart(&data).await.expect("raw multipart");
                    let mut writer = WriteMultipart::new_with_chunk_size(
                        upload,
                        config.part_size_bytes as usize,
                    );
                    let mut chunks = content(size);
                    while let Some(chunk) = chunks.next().await {
                        writer
                            .wait_for_capacity(config.transfer_concurrency)
                            .await
                            .expect("capacity");
                        writer.put(chunk.expect("chunk"));
                    }
                    writer.finish().await.expect("raw finish");
                }
            };
            let lookup = async {
                // Read the hint's body too, as ours does: on local files that is a read of
                // its own after the open.
                if let Ok(hint) = store.get(&prefix.clone().join("latest")).await {
                    hint.bytes().await.expect("hint");
                }
                let next = prefix.clone().join("versions").join(call.to_string());
                assert!(store.head(&next).await.is_err(), "a fresh number");
            };
            futures::join!(upload, lookup);
            let record = prefix.clone().join("versions").join(call.to_string());
            store
                .put_opts(
                    &record,
                    PutPayload::from(vec![b' '; RECORD_BYTES]),
                    PutMode::Create.into(),
                )
                .await
                .expect("raw record");
            store
                .put(&prefix.clone().join("latest"), call.to_string().into())
                .await
                .expect("raw hint");
        })
    })
}

/// The object_store calls a streamed get of ours makes, made directly: read the hint, check
/// the number after it, read the version record, then ranged reads of one part each of the
/// content, the same number in flight.
fn get_raw(backend: &ObjectBackend, prefix: &Path, size: usize) -> BenchOp {
    let (store, prefix) = (backend.object_store(), prefix.clone());
    let config = backend.config().clone();
    Arc::new(move |_| {
        let (store, prefix) = (store.clone(), prefix.clone());
        let part = config.part_size_bytes;
        let ranges: Vec<std::ops::Range<u64>> = (0..(size as u64).div_ceil(part))
            .map(|i| i * part..((i + 1) * part).min(size as u64))
            .collect();
        let in_flight = config.transfer_concurrency;
        Box::pin(async move {
            let latest = store
                .get(&prefix.clone().join("latest"))
                .await
                .expect("hint");
            let latest: usize = String::from_utf8(latest.bytes().await.expect("hint").to_vec())
                .expect("utf-8")
                .parse()
                .expect("number");
            let versions = prefix.clone().join("versions");
            let after = versions.clone().join((latest + 1).to_string());
            assert!(store.head(&after).await.is_err(), "the newest number");
            let record = versions.join(latest.to_string());
            store
                .get(&record)
                .await
                .expect("record")
                .bytes()
                .await
                .expect("record");
            let data = prefix.clone().join("data").join("0");
            let body: ByteStream = futures::stream::iter(ranges)
                .map(move |range| {
                    let (store, data) = (store.clone(), data.clone());
                    async move {
                        store
                            .get_range(&data, range)
                            .await
                            .map_err(|err| storage_core::StorageError::backend(err.to_string()))
                    }
                })
                .buffered(in_flight)
                .boxed();
            assert_eq!(drain(body).await, size);
        })
    })
}

/// Reads a body to its end, returning its length.
async fn drain(body: ByteStream) -> usize {
    body.try_fold(0usize, |n, chunk| async move { Ok(n + chunk.len()) })
        .await
        .expect("read")
}

/// The 1 GiB round trip on local files under `dir`, alone in this process, with the
/// process's peak resident memory over its whole life.
fn gib_child(dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut config = ObjectConfig::new(format!("file://{dir}"))
        .with_namespace(format!("gib_{}", std::process::id()));
    if let Some(mib) = arg_after("--part-mib").and_then(|v| v.parse::<u64>().ok()) {
        config.part_size_bytes = mib * MIB as u64;
        config.multipart_threshold_bytes = mib * MIB as u64;
    }
    if let Some(n) = arg_after("--in-flight").and_then(|v| v.parse().ok()) {
        config.transfer_concurrency = n;
    }
    let backend = ObjectBackend::new(config).expect("config");
    let config = backend.config();
    println!(
        "part {} MiB, {} parts in flight each way",
        config.part_size_bytes as usize / MIB,
        config.transfer_concurrency
    );
    let started = Instant::now();
    runtime.block_on(round_trip(&backend, 1024 * MIB));
    println!(
        "1 GiB round trip: {:.1} s, peak resident {:.1} MiB over the whole process",
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
    );
}

/// Saves `size` bytes from a stream and reads them back as a stream, checking the digest.
async fn round_trip(backend: &ObjectBackend, size: usize) {
    let meta = backend
        .save_artifact_stream(
            "bench",
            "gib",
            "application/octet-stream",
            Default::default(),
            content(size),
            None,
        )
        .await
        .expect("save");
    let (_, body) = backend
        .open_artifact_stream("bench", "gib", None)
        .await
        .expect("open")
        .expect("stored");
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let read = body
        .try_fold((0usize, &mut hasher), |(n, h), chunk| async move {
            sha2::Digest::update(h, &chunk);
            Ok((n + chunk.len(), h))
        })
        .await
        .expect("read")
        .0;
    assert_eq!(read, size);
    assert_eq!(hex::encode(sha2::Digest::finalize(hasher)), meta.sha256);
    backend
        .delete_artifact("bench", "gib", None)
        .await
        .expect("delete");
}

//! `cargo xtask bench object` (or `cargo bench -p storage-object`): the shared workload on
//! local files and on S3 (`STORAGE_TEST_S3_URL`, or a throwaway moto server), then artifact
//! save/get at 1 KiB, 1 MiB and 256 MiB through the backend and through object_store
//! directly (our/raw ratio), with throughput and peak resident memory, and a 1 GiB round
//! trip with its peak memory.
//!
//! Flags: `--ops N`, `--history a,b`, `--concurrency a,b` (shared workload), `--skip-s3`,
//! `--skip-workload`, `--skip-gib`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use storage_core::{ArtifactStore, ByteStream};
use storage_object::{ObjectBackend, ObjectConfig};
use storage_testkit::bench::{print_ratio, Workload};

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

/// Resets the peak so the next reading covers only what follows (Linux `clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let namespace = format!("bench_{}", std::process::id());
    let local = ObjectBackend::new(
        ObjectConfig::new(format!("file://{}", dir.path().display())).with_namespace(&namespace),
    )
    .expect("config");
    println!(
        "object backend; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    runtime.block_on(async {
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
        println!("\n== artifacts, local files ==");
        artifacts(&local, &[1024, MIB, 256 * MIB]).await;
        if !args_have("--skip-gib") {
            println!("\n== 1 GiB round trip, local files ==");
            round_trip(&local, 1024 * MIB).await;
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
            artifacts(&s3, &[1024, MIB, 64 * MIB]).await;
        }
    });
}

/// Save and get through the backend (streaming) and through object_store directly.
async fn artifacts(backend: &ObjectBackend, sizes: &[usize]) {
    println!(
        "{:<24} {:>10} {:>10} {:>12}",
        "operation", "MiB/s", "seconds", "peak MiB"
    );
    let store = backend.object_store();
    let config = backend.config().clone();
    for &size in sizes {
        let label = if size >= MIB {
            format!("{}MiB", size / MIB)
        } else {
            format!("{}KiB", size / 1024)
        };
        let repeat = (64 * MIB / size).clamp(1, 200);
        let mib = (size * repeat) as f64 / MIB as f64;

        reset_peak();
        let started = Instant::now();
        for _ in 0..repeat {
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
        }
        let ours_save = row(&format!("save_{label}"), mib, started);

        reset_peak();
        let started = Instant::now();
        for _ in 0..repeat {
            let (_, body) = backend
                .open_artifact_stream("bench", &label, None)
                .await
                .expect("open")
                .expect("stored");
            let read = body
                .try_fold(0usize, |n, chunk| async move { Ok(n + chunk.len()) })
                .await
                .expect("read");
            assert_eq!(read, size);
        }
        let ours_get = row(&format!("get_{label}"), mib, started);

        // The same object_store calls, made directly: one put below the multipart threshold,
        // a multipart upload of the same part size above it; a streamed get.
        let path = Path::from(format!("raw/{}/{label}", config.namespace));
        reset_peak();
        let started = Instant::now();
        for _ in 0..repeat {
            if (size as u64) < config.multipart_threshold_bytes {
                let chunks: Vec<Bytes> = content(size).try_collect().await.expect("content");
                let payload: PutPayload = chunks.into_iter().collect();
                store.put(&path, payload).await.expect("raw put");
            } else {
                let upload = store.put_multipart(&path).await.expect("raw multipart");
                let mut writer =
                    WriteMultipart::new_with_chunk_size(upload, config.part_size_bytes as usize);
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
        }
        let raw_save = row(&format!("raw_save_{label}"), mib, started);

        reset_peak();
        let started = Instant::now();
        for _ in 0..repeat {
            let body = store.get(&path).await.expect("raw get").into_stream();
            let read = body
                .try_fold(0usize, |n, chunk| async move { Ok(n + chunk.len()) })
                .await
                .expect("raw read");
            assert_eq!(read, size);
        }
        let raw_get = row(&format!("raw_get_{label}"), mib, started);
        print_ratio(&format!("save_{label} MiB/s ours/raw"), ours_save, raw_save);
        print_ratio(&format!("get_{label} MiB/s ours/raw"), ours_get, raw_get);
    }
}

fn row(name: &str, mib: f64, started: Instant) -> f64 {
    let seconds = started.elapsed().as_secs_f64();
    let rate = mib / seconds;
    println!(
        "{name:<24} {rate:>10.1} {seconds:>10.3} {:>12.1}",
        peak_rss_mib()
    );
    rate
}

/// Saves `size` bytes from a stream and reads them back as a stream, checking the digest.
async fn round_trip(backend: &ObjectBackend, size: usize) {
    reset_peak();
    let before = peak_rss_mib();
    let started = Instant::now();
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
    let _ = backend.delete_artifact("bench", "gib", None).await;
    println!(
        "1 GiB round trip: {:.1} s, peak resident {:.1} MiB (baseline before {:.1} MiB)",
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
        before
    );
}

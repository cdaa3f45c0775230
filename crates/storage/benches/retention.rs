//! `cargo xtask bench retention` (or `cargo bench -p storage --bench retention`): what a
//! retention sweep costs, on every backend and kind.
//!
//! Removal: two namespaces hold one series of each kind, a small one (100 records) and a
//! large one (10,000). Every round adds 10 records to both and times one sweep keeping the
//! series' size, which removes exactly those 10 oldest; the small and the large case
//! alternate (interleaved), and the ratio of their medians is printed. A ratio near 1 means
//! the cost follows what is removed, not the series' length. Idle series: a third namespace
//! holds 1,000 series of 2 records of each kind, and a sweep that removes nothing is timed;
//! its median divided by the series is the cost of a series with nothing to remove.
//!
//! Flags: `--backends memory,sqlite,object,s3,redis,redis-cluster,postgres` (default all),
//! `--sizes 100,10000`, `--idle N` (default 1000), `--rounds N` (default 15).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use storage_core::{
    Checkpoint, ContextScope, ExpectedVersion, NewArtifact, NewMessage, Retention, StorageBackend,
};
use storage_testkit::bench::{print_ratio, runtime_for};

#[path = "support/backends.rs"]
mod backends;
use backends::{build, ALL};

/// Records each round adds to a series, and each sweep removes.
const ADDED: usize = 10;

struct Args {
    backends: Vec<String>,
    sizes: [usize; 2],
    idle: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut parsed = Args {
        backends: ALL.iter().map(|b| (*b).to_owned()).collect(),
        sizes: [100, 10_000],
        idle: 1_000,
        rounds: 15,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1);
        let number = |flag: &str| -> usize {
            value
                .unwrap_or_else(|| panic!("{flag} N"))
                .parse()
                .expect("a number")
        };
        match argv[i].as_str() {
            "--backends" => {
                parsed.backends = value
                    .expect("--backends a,b")
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                i += 1;
            }
            "--sizes" => {
                let sizes: Vec<usize> = value
                    .expect("--sizes SMALL,LARGE")
                    .split(',')
                    .map(|n| n.trim().parse().expect("a number"))
                    .collect();
                parsed.sizes = [sizes[0], sizes[1]];
                i += 1;
            }
            "--idle" => {
                parsed.idle = number("--idle");
                i += 1;
            }
            "--rounds" => {
                parsed.rounds = number("--rounds");
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

/// The four kinds a sweep trims.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Messages,
    ContextVersions,
    Checkpoints,
    ArtifactVersions,
}

const KINDS: [Kind; 4] = [
    Kind::Messages,
    Kind::ContextVersions,
    Kind::Checkpoints,
    Kind::ArtifactVersions,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Messages => "messages",
            Kind::ContextVersions => "context_versions",
            Kind::Checkpoints => "checkpoints",
            Kind::ArtifactVersions => "artifact_versions",
        }
    }

    /// Adds `count` records to series `series`, whose records so far number `stored`.
    async fn add(self, backend: &dyn StorageBackend, series: &str, stored: usize, count: usize) {
        match self {
            Kind::Messages => {
                for start in (0..count).step_by(1_000) {
                    let batch = (start..count.min(start + 1_000))
                        .map(|i| NewMessage::new("user", json!({"text": "retained", "i": i})))
                        .collect();
                    backend
                        .append_messages(series, batch)
                        .await
                        .expect("append");
                }
            }
            Kind::ContextVersions => {
                for step in 0..count {
                    backend
                        .store_context(
                            ContextScope::user(series),
                            json!({"plan": ["search"], "step": step}),
                            ExpectedVersion::Any,
                            1_000_000,
                        )
                        .await
                        .expect("store");
                }
            }
            Kind::Checkpoints => {
                for n in stored..stored + count {
                    let (checkpoint, new_versions) = chained_checkpoint(series, n);
                    backend
                        .put_checkpoint(checkpoint, new_versions)
                        .await
                        .expect("put");
                }
            }
            Kind::ArtifactVersions => {
                for n in 0..count {
                    let content = NewArtifact::new("text/plain", format!("version {n}"));
                    backend
                        .save_artifact("bench", series, content)
                        .await
                        .expect("save");
                }
            }
        }
    }

    async fn sweep(self, backend: &dyn StorageBackend, keep_last: usize) -> u64 {
        let retention = Retention {
            created_before: None,
            keep_last: Some(keep_last as u64),
        };
        match self {
            Kind::Messages => backend.retain_messages(retention).await,
            Kind::ContextVersions => backend.retain_context_versions(retention).await,
            Kind::Checkpoints => backend.retain_checkpoints(retention).await,
            Kind::ArtifactVersions => backend.retain_artifact_versions(retention).await,
        }
        .expect("sweep")
    }
}

/// Checkpoint `n` of a chain with three channels: `config` written once by the first,
/// `step` by every checkpoint, `notes` by every tenth.
fn chained_checkpoint(thread: &str, n: usize) -> (Checkpoint, storage_core::ChannelVersions) {
    let id = format!("cp-{n:08}");
    let mut checkpoint = Checkpoint::new(thread, "", id);
    checkpoint.parent_id = n.checked_sub(1).map(|parent| format!("cp-{parent:08}"));
    let notes = n / 10 * 10;
    let channels = [
        ("config", 0, json!({"model": "small"})),
        ("step", n, json!(n)),
        ("notes", notes, json!(format!("notes up to {notes}"))),
    ];
    let mut new_versions = storage_core::ChannelVersions::new();
    for (channel, version, value) in channels {
        let version = format!("{version:08}");
        checkpoint
            .channel_versions
            .insert(channel.into(), version.clone());
        checkpoint
            .channel_values
            .insert(channel.into(), value.into());
        if n == 0 || (channel == "step") || (channel == "notes" && n % 10 == 0) {
            new_versions.insert(channel.into(), version);
        }
    }
    (checkpoint, new_versions)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn main() {
    let args = args();
    println!(
        "retention sweeps; {} cores; series of {:?} records, {} removed per sweep, {} idle \
         series, {} rounds",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.sizes,
        ADDED,
        args.idle,
        args.rounds
    );
    let root = tempfile::tempdir().expect("a temporary directory");
    for name in &args.backends {
        runtime_for(1).block_on(async {
            let namespace = |case: &str| format!("ret_{case}_{}", std::process::id());
            let small = build(name, &namespace("small"), root.path(), None).await;
            let large = build(name, &namespace("large"), root.path(), None).await;
            let idle = build(name, &namespace("idle"), root.path(), None).await;
            println!("\n== {name}");
            for kind in KINDS {
                removal(kind, [&small, &large], &args).await;
                idle_series(kind, &idle, &args).await;
            }
            for backend in [small, large, idle] {
                backend.close().await.expect("close");
            }
        });
    }
}

/// Times sweeps removing [`ADDED`] records from a small and a large series, interleaved.
async fn removal(kind: Kind, backends: [&Arc<dyn StorageBackend>; 2], args: &Args) {
    let started = Instant::now();
    for (backend, size) in backends.iter().zip(args.sizes) {
        kind.add(backend.as_ref(), "series", 0, size).await;
    }
    println!(
        "{}: filled {:?} records in {:.1} s",
        kind.name(),
        args.sizes,
        started.elapsed().as_secs_f64()
    );
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut stored = args.sizes;
    // Round 0 warms up and is not counted.
    for round in 0..=args.rounds {
        for case in 0..2 {
            let backend = backends[case].as_ref();
            kind.add(backend, "series", stored[case], ADDED).await;
            stored[case] += ADDED;
            let started = Instant::now();
            let removed = kind.sweep(backend, args.sizes[case]).await;
            let elapsed = started.elapsed();
            assert_eq!(
                removed,
                ADDED as u64,
                "{} sweep of case {case}",
                kind.name()
            );
            if round > 0 {
                samples[case].push(elapsed);
            }
        }
    }
    let [small, large] = samples.map(median);
    let [small_size, large_size] = args.sizes;
    println!(
        "{}: sweep removing {ADDED} p50 {:.0} us @{small_size}, {:.0} us @{large_size}",
        kind.name(),
        small.as_secs_f64() * 1e6,
        large.as_secs_f64() * 1e6
    );
    print_ratio(
        &format!(
            "{} sweep p50 ns, {large_size} vs {small_size} records",
            kind.name()
        ),
        large.as_secs_f64() * 1e9,
        small.as_secs_f64() * 1e9,
    );
}

/// Times a sweep over `args.idle` series of 2 records that removes nothing.
async fn idle_series(kind: Kind, backend: &Arc<dyn StorageBackend>, args: &Args) {
    for series in 0..args.idle {
        kind.add(backend.as_ref(), &format!("idle-{series:06}"), 0, 2)
            .await;
    }
    let mut samples = Vec::new();
    for round in 0..=args.rounds.min(5) {
        let started = Instant::now();
        assert_eq!(kind.sweep(backend.as_ref(), 5).await, 0);
        if round > 0 {
            samples.push(started.elapsed());
        }
    }
    let sweep = median(samples);
    println!(
        "{}: sweep of {} idle series p50 {:.1} ms = {:.1} us per series",
        kind.name(),
        args.idle,
        sweep.as_secs_f64() * 1e3,
        sweep.as_secs_f64() * 1e6 / args.idle as f64
    );
}

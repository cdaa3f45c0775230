//! Operating commands: configuration, cleanup, bench, migrate.

use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use serde_json::json;
use storage::config::{KindRetention, LoadedConfig, RetentionSettings};
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;
use storage_core::Checkpoint;

use crate::cli::{RetainedKind, RetentionArgs};
use crate::failure::{Failure, Outcome};
use crate::open;
use crate::output::{Output, Table};
use crate::progress;

pub fn config_show(loaded: &LoadedConfig, out: &Output) -> Outcome {
    let entries = loaded.entries();
    let mut table = Table::new(["key", "value", "source", "env"]);
    for entry in &entries {
        let value = match &entry.value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        table.row([
            entry.key.clone(),
            value,
            entry.source.to_string(),
            entry.env.clone(),
        ]);
    }
    out.emit(&entries, &table);
    Ok(())
}

pub async fn cleanup(
    storage: &Storage,
    max_idle: Option<Duration>,
    artifact_grace: Option<Duration>,
    retention_args: &RetentionArgs,
    out: &Output,
) -> Outcome {
    let retention = retention_settings(storage, retention_args)?;
    // One call per step, each of which may take long (it scales with what it removes).
    let bar = progress::steps(out.json(), 3);
    bar.set_message("expired sessions");
    let removed = match max_idle {
        Some(max_idle) => Some(storage.cleanup_expired_sessions(max_idle).await?),
        None => None,
    };
    bar.inc(1);
    bar.set_message("retention");
    let retained = storage.apply_retention(&retention).await?;
    bar.inc(1);
    let mut table = Table::new(["removed", "count", "bytes"]);
    if let Some(removed) = removed {
        table.row([
            "expired sessions".to_owned(),
            removed.to_string(),
            String::new(),
        ]);
    }
    for ((kind, settings), (_, count)) in retention.kinds().into_iter().zip(retained.kinds()) {
        if settings.policy().is_unbounded() {
            continue;
        }
        table.row([
            format!("{} (retention)", kind.replace('_', " ")),
            count.to_string(),
            String::new(),
        ]);
    }
    #[cfg(feature = "object")]
    let garbage = {
        let grace = artifact_grace.unwrap_or_else(|| {
            let secs = storage
                .config()
                .map_or(24 * 3600, |c| c.cleanup.artifact_grace_secs);
            Duration::from_secs(secs)
        });
        bar.set_message("orphaned artifact content");
        let garbage = storage.collect_artifact_garbage(grace).await?;
        match &garbage {
            Some(report) => {
                let rows = [
                    (
                        "orphaned artifact data",
                        report.data_objects,
                        Some(report.data_bytes),
                    ),
                    ("unreadable context versions", report.context_versions, None),
                    ("unused checkpoint values", report.checkpoint_values, None),
                    ("message slots emptied", report.message_slots, None),
                    (
                        "orphaned compaction objects",
                        report.compaction_objects,
                        None,
                    ),
                    (
                        "abandoned staging files",
                        report.staging_files,
                        Some(report.staging_bytes),
                    ),
                ];
                for (what, count, bytes) in rows {
                    table.row([
                        what.to_owned(),
                        count.to_string(),
                        bytes.map_or_else(String::new, |bytes| bytes.to_string()),
                    ]);
                }
                table.footer(format!(
                    "{} object(s) younger than the grace period of {} s left alone",
                    report.too_young,
                    grace.as_secs()
                ));
            }
            None => table.footer("no object storage configured: nothing to collect".into()),
        }
        garbage
    };
    #[cfg(not(feature = "object"))]
    let garbage: Option<()> = {
        let _ = artifact_grace;
        None
    };
    bar.finish_and_clear();
    out.emit(
        &json!({"removed": removed, "retention": retained, "artifact_garbage": garbage}),
        &table,
    );
    Ok(())
}

/// The configuration's retention, with `--keep-last`/`--max-age` replacing the policy of
/// the kinds `--retain` names (all four by default).
fn retention_settings(
    storage: &Storage,
    args: &RetentionArgs,
) -> Result<RetentionSettings, Failure> {
    let mut settings = storage.configured_retention();
    if args.keep_last.is_none() && args.max_age.is_none() {
        if !args.retain.is_empty() {
            return Err(Failure::BadInput(
                "--retain names the kinds --keep-last and --max-age apply to; give at least one \
                 of them"
                    .into(),
            ));
        }
        return Ok(settings);
    }
    if args.max_age.is_some_and(|age| age.as_secs() == 0) {
        return Err(Failure::BadInput(
            "--max-age must be at least 1s: the age is counted in whole seconds".into(),
        ));
    }
    let policy = KindRetention {
        max_age_secs: args.max_age.map(|age| age.as_secs()),
        keep_last: args.keep_last,
    };
    let kinds = if args.retain.is_empty() {
        RetainedKind::value_variants()
    } else {
        args.retain.as_slice()
    };
    for kind in kinds {
        *match kind {
            RetainedKind::Messages => &mut settings.messages,
            RetainedKind::ContextVersions => &mut settings.context_versions,
            RetainedKind::Checkpoints => &mut settings.checkpoints,
            RetainedKind::ArtifactVersions => &mut settings.artifact_versions,
        } = policy;
    }
    Ok(settings)
}

#[derive(Debug, serde::Serialize)]
pub struct BenchRow {
    operation: String,
    concurrency: usize,
    ops: usize,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

impl From<storage_bench::Measurement> for BenchRow {
    fn from(m: storage_bench::Measurement) -> Self {
        BenchRow {
            operation: m.name,
            concurrency: m.concurrency,
            ops: m.ops,
            ops_per_sec: m.ops_per_sec,
            p50_us: m.p50.as_secs_f64() * 1e6,
            p99_us: m.p99.as_secs_f64() * 1e6,
        }
    }
}

/// Times the facade's own figures of merit on the configured backends: the cached
/// `get_session` against a backend round trip, and appends and checkpoint puts at
/// concurrency with and without group commit.
pub async fn bench(
    config: &StorageConfig,
    ops: usize,
    concurrency: usize,
    namespace: &str,
    out: &Output,
) -> Outcome {
    use storage_bench::measure;

    // Six measurements, each of `ops` operations: seconds to minutes on a network backend.
    let bar = progress::steps(out.json(), 6);
    bar.set_message("get_session (facade, cache hit)");

    let scratch = config.in_namespace(namespace);
    let mut cached = scratch.clone();
    cached.cache.enabled = true;
    cached.group_commit.enabled = false;
    let mut grouped = scratch.clone();
    grouped.group_commit.enabled = true;
    let storage: Arc<Storage> = Arc::new(open(cached).await?);
    let grouped: Arc<Storage> = Arc::new(open(grouped).await?);
    let raw = storage.backend_of(storage::Kind::Sessions);
    let run = format!("{:x}", std::process::id());
    let session = format!("bench-{run}");
    storage
        .create_session(NewSession::new(session.clone(), "bench"))
        .await?;
    let mut rows: Vec<BenchRow> = Vec::new();

    let s = storage.clone();
    let id = session.clone();
    rows.push(
        measure("get_session (facade, cache hit)", 1, ops, move |_| {
            let (s, id) = (s.clone(), id.clone());
            async move {
                s.get_session(&id).await.unwrap();
            }
        })
        .await
        .into(),
    );
    bar.inc(1);
    let r = raw.clone();
    let id = session.clone();
    rows.push(
        measure("get_session (backend round trip)", 1, ops, move |_| {
            let (r, id) = (r.clone(), id.clone());
            async move {
                r.get_session(&id).await.unwrap();
            }
        })
        .await
        .into(),
    );
    bar.inc(1);
    for (label, target) in [
        ("append_message (one call per append)", storage.clone()),
        ("append_message (group commit)", grouped.clone()),
    ] {
        let mut sessions = Vec::new();
        for i in 0..4 {
            let id = format!("bench-{run}-{}-{i}", rows.len());
            target
                .create_session(NewSession::new(id.clone(), "bench"))
                .await?;
            sessions.push(id);
        }
        let sessions = Arc::new(sessions);
        rows.push(
            measure(label, concurrency, ops, move |i| {
                let (t, sessions) = (target.clone(), sessions.clone());
                async move {
                    let session = &sessions[i % sessions.len()];
                    t.append_message(session, NewMessage::new("user", "bench"))
                        .await
                        .unwrap();
                }
            })
            .await
            .into(),
        );
        bar.inc(1);
    }
    for (label, target) in [
        ("put_checkpoint (one call per put)", storage.clone()),
        ("put_checkpoint (group commit)", grouped.clone()),
    ] {
        let threads: Arc<Vec<String>> = Arc::new(
            (0..8)
                .map(|i| format!("bench-{run}-{}-{i}", rows.len()))
                .collect(),
        );
        let written = threads.clone();
        rows.push(
            measure(label, concurrency, ops, move |i| {
                let (t, threads) = (target.clone(), threads.clone());
                async move {
                    let thread = &threads[i % threads.len()];
                    let mut checkpoint =
                        Checkpoint::new(thread.as_str(), "", storage_core::new_checkpoint_id());
                    checkpoint
                        .channel_versions
                        .insert("step".into(), i.to_string());
                    checkpoint
                        .channel_values
                        .insert("step".into(), json!(i).into());
                    let versions = checkpoint.all_versions();
                    t.put_checkpoint(checkpoint, versions).await.unwrap();
                }
            })
            .await
            .into(),
        );
        bar.inc(1);
        for thread in written.iter() {
            let _ = storage.delete_thread(thread).await;
        }
    }
    bar.finish_and_clear();
    // Everything else the bench wrote belongs to its sessions: remove them with their data.
    let _ = storage.cleanup_expired_sessions(Duration::ZERO).await;
    let _ = storage.close().await;
    let _ = grouped.close().await;

    let mut table = Table::new(["operation", "conc", "ops", "ops/s", "p50 us", "p99 us"]);
    for row in &rows {
        table.row([
            row.operation.clone(),
            row.concurrency.to_string(),
            row.ops.to_string(),
            format!("{:.0}", row.ops_per_sec),
            format!("{:.2}", row.p50_us),
            format!("{:.2}", row.p99_us),
        ]);
    }
    let hit_speedup = rows[1].p50_us / rows[0].p50_us.max(f64::MIN_POSITIVE);
    let group_speedup = rows[3].ops_per_sec / rows[2].ops_per_sec.max(f64::MIN_POSITIVE);
    let checkpoint_speedup = rows[5].ops_per_sec / rows[4].ops_per_sec.max(f64::MIN_POSITIVE);
    table.footer(format!(
        "cache hit vs backend round trip (p50): {hit_speedup:.1}x; group commit vs one call \
         at concurrency {concurrency}: appends {group_speedup:.1}x, checkpoint puts \
         {checkpoint_speedup:.1}x"
    ));
    out.emit(
        &json!({
            "rows": rows,
            "cache_hit_speedup": hit_speedup,
            "group_commit_speedup": group_speedup,
            "group_commit_checkpoint_speedup": checkpoint_speedup,
        }),
        &table,
    );
    Ok(())
}

pub async fn migrate(
    from: &str,
    to: &str,
    options: &storage::migrate::MigrateOptions,
    out: &Output,
) -> Outcome {
    let progress = progress::MigrateBar(progress::spinner(
        out.json(),
        "{spinner} {prefix:>9} {pos} items ({per_sec})",
    ));
    let report = storage::migrate::migrate_urls(from, to, options, &progress).await;
    progress.0.finish_and_clear();
    let report = report?;
    let copied = &report.copied;
    let mut table = Table::new(["kind", "copied", "source", "target"]);
    let counts = report.verification.as_ref().map(|v| &v.counts);
    let row = |kind: &str, copied: u64| {
        let count = counts.and_then(|c| c.get(kind));
        [
            kind.to_owned(),
            copied.to_string(),
            count.map_or_else(String::new, |c| c.source.to_string()),
            count.map_or_else(String::new, |c| c.target.to_string()),
        ]
    };
    table.row(row("sessions", copied.sessions));
    table.row(row("messages", copied.messages));
    table.row(row("task_contexts", copied.task_contexts));
    table.row(row("checkpoints", copied.checkpoints));
    table.row(row("pending_writes", copied.pending_writes));
    table.row(row("artifact_versions", copied.artifact_versions));
    let phases: Vec<String> = [
        "sessions",
        "without_session",
        "threads",
        "artifacts",
        "verify",
    ]
    .into_iter()
    .filter_map(|phase| {
        let ms = report.elapsed_ms.get(phase)?;
        Some(format!("{phase} {:.1} s", *ms as f64 / 1000.0))
    })
    .collect();
    table.footer(format!("time: {}", phases.join(", ")));
    if copied.conversations_without_session + copied.task_contexts_without_session > 0 {
        table.footer(format!(
            "copied without a session record: {} conversation(s), {} task context(s)",
            copied.conversations_without_session, copied.task_contexts_without_session
        ));
    }
    for item in &report.not_copied {
        table.footer(format!("not copied: {} ({})", item.what, item.reason));
    }
    match &report.verification {
        Some(verification) if verification.is_clean() => {
            table.footer("verified: source and target hold the same data".into());
        }
        Some(verification) => {
            for difference in verification.differences.iter().take(20) {
                table.footer(format!(
                    "difference: {} {:?}: {}",
                    difference.kind, difference.key, difference.problem
                ));
            }
            for note in &verification.not_compared {
                table.footer(format!("not compared: {note}"));
            }
            let unequal = verification
                .counts
                .iter()
                .filter(|(_, count)| count.source != count.target)
                .count();
            table.footer(format!(
                "verification FAILED: {} difference(s), {unequal} kind(s) with unequal \
                 counts, {} part(s) not compared",
                verification.differences.len(),
                verification.not_compared.len()
            ));
        }
        None => table.footer("not verified (--no-verify)".into()),
    }
    out.emit(&report, &table);
    match &report.verification {
        Some(verification) if !verification.is_clean() => Err(Failure::Failed(format!(
            "verification failed: {} difference(s), {} part(s) not compared",
            verification.differences.len(),
            verification.not_compared.len()
        ))),
        _ => Ok(()),
    }
}

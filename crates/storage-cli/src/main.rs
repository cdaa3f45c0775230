//! `storectl`: look into and operate a storage configured like the application using it
//! (`storage.toml`, `STORAGE_*` environment variables).
//!
//! Exit codes: 0 success; 1 backend failure (unreachable, timed out, failed, or unhealthy);
//! 2 bad input (usage, invalid arguments, invalid configuration); 3 not found.

mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use storage::config::ConfigLoader;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;
use storage_core::{ArtifactMeta, Checkpoint, ErrorKind, StorageError};

use crate::output::{Output, Table};

/// Inspect and operate agent storage (sessions, conversations, checkpoints, task context,
/// artifacts) through the same configuration the application uses.
#[derive(Debug, Parser)]
#[command(name = "storectl", version, about, long_about = None)]
struct Cli {
    /// Configuration file (default: $STORAGE_CONFIG_FILE, else ./storage.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy every kind of data from one backend to another, then verify the copy. Safe to
    /// run again after an interruption: nothing is stored twice.
    ///
    /// URLs: redis://HOST:PORT/DB, postgres://USER@HOST:PORT/DB, sqlite://PATH, file:///DIR,
    /// s3://BUCKET, each with an optional ?namespace=NAME.
    Migrate {
        /// The source backend's URL.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The target backend's URL.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Items read per page.
        #[arg(long, default_value_t = 200)]
        batch_size: usize,
        /// Items copied at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Skip the comparison at the end.
        #[arg(long)]
        no_verify: bool,
    },
    /// Check every configured backend.
    Health {
        /// Also write, read back and delete one record of each kind in a scratch namespace.
        #[arg(long)]
        deep: bool,
    },
    /// Show the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List or show sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// The last messages of a session's conversation.
    History {
        /// The session id.
        session: String,
        /// How many of the last messages.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The checkpoints of a thread, newest first.
    Checkpoints {
        /// The thread id.
        thread: String,
        /// Only this checkpoint namespace (default: every namespace).
        #[arg(long)]
        namespace: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// List or fetch artifacts.
    Artifacts {
        #[command(subcommand)]
        command: ArtifactsCommand,
    },
    /// Remove sessions idle longer than a duration, with their conversation and context;
    /// on object storage also collect orphaned artifact content (data no version
    /// references, abandoned upload staging files) older than the grace period.
    Cleanup {
        /// e.g. `30m`, `12h`, `7d`, `90s`.
        #[arg(long, value_parser = parse_duration)]
        max_idle: Duration,
        /// Orphaned artifact content younger than this is left alone, as it may belong to
        /// a save still running (default: `cleanup.artifact_grace_secs`, 24h).
        #[arg(long, value_parser = parse_duration)]
        artifact_grace: Option<Duration>,
    },
    /// Time common operations on the configured backends (in a scratch namespace).
    Bench {
        /// Operations per measurement.
        #[arg(long, default_value_t = 2000)]
        ops: usize,
        /// Concurrent callers of the append measurements.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The scratch namespace written to and cleaned afterwards.
        #[arg(long, default_value = "storectl_bench")]
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Every key with its value (secrets hidden) and where it came from.
    Show,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Sessions by most recent activity.
    List {
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// Only sessions in this status (active, completed, failed, cancelled, expired).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The `next_cursor` of a previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One session record.
    Show {
        /// The session id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ArtifactsCommand {
    /// Names in a scope, or the versions of one name.
    List {
        /// The scope.
        scope: String,
        /// A name, to list its versions.
        name: Option<String>,
    },
    /// One version's metadata, and its content to a file or stdout.
    Get {
        /// The scope.
        scope: String,
        /// The name.
        name: String,
        /// The version (default: latest).
        #[arg(long)]
        version: Option<u64>,
        /// Write the content here (`-` for stdout); without it only metadata is shown.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// What a command failed with, mapped to an exit code.
#[derive(Debug)]
enum Failure {
    NotFound(String),
    BadInput(String),
    Backend(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Backend(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::NotFound(_) => 3,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Failure::Backend(_) => "backend",
            Failure::BadInput(_) => "bad_input",
            Failure::NotFound(_) => "not_found",
        }
    }
    fn message(&self) -> &str {
        match self {
            Failure::NotFound(m) | Failure::BadInput(m) | Failure::Backend(m) => m,
        }
    }
}

impl From<StorageError> for Failure {
    fn from(err: StorageError) -> Self {
        match err.kind() {
            ErrorKind::NotFound => Failure::NotFound(err.to_string()),
            ErrorKind::InvalidInput | ErrorKind::Config | ErrorKind::AlreadyExists => {
                Failure::BadInput(err.to_string())
            }
            _ => Failure::Backend(err.to_string()),
        }
    }
}

type Outcome = Result<(), Failure>;

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 90s, 30m, 12h or 7d, got {text:?}"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    match run(&cli, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if cli.json {
                eprintln!(
                    "{}",
                    json!({"error": {"kind": failure.kind(), "message": failure.message()}})
                );
            } else {
                eprintln!("storectl: {}", failure.message());
            }
            ExitCode::from(failure.code())
        }
    }
}

fn loader(cli: &Cli) -> ConfigLoader {
    match &cli.config {
        Some(path) => ConfigLoader::new().file(path),
        None => ConfigLoader::new(),
    }
}

async fn open(config: StorageConfig) -> Result<Storage, Failure> {
    let storage = Storage::from_config(config)?;
    storage.initialize().await?;
    Ok(storage)
}

async fn run(cli: &Cli, out: &Output) -> Outcome {
    let loaded = loader(cli).load()?;
    if let Command::Config {
        command: ConfigCommand::Show,
    } = &cli.command
    {
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
        return Ok(());
    }
    if let Command::Bench {
        ops,
        concurrency,
        namespace,
    } = &cli.command
    {
        return bench(&loaded.config, *ops, *concurrency, namespace, out).await;
    }
    if let Command::Migrate {
        from,
        to,
        batch_size,
        concurrency,
        no_verify,
    } = &cli.command
    {
        let options = storage::migrate::MigrateOptions {
            batch_size: *batch_size,
            concurrency: *concurrency,
            verify: !no_verify,
        };
        return migrate(from, to, &options, cli.json, out).await;
    }
    let storage = open(loaded.config.clone()).await?;
    let result = command(cli, &storage, out).await;
    let _ = storage.close().await;
    result
}

async fn command(cli: &Cli, storage: &Storage, out: &Output) -> Outcome {
    match &cli.command {
        Command::Health { deep } => {
            let report = storage.health(*deep).await;
            let mut table = Table::new(["backend", "kinds", "healthy", "latency ms", "details"]);
            for backend in &report.backends {
                let kinds: Vec<&str> = backend.kinds.iter().map(|k| k.as_str()).collect();
                let mut details: Vec<String> = backend
                    .details
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                details.extend(backend.error.clone());
                table.row([
                    backend.backend.clone(),
                    kinds.join(","),
                    backend.healthy.to_string(),
                    format!("{:.2}", backend.latency_ms),
                    details.join(" "),
                ]);
            }
            for check in &report.deep {
                table.row([
                    check.backend.clone(),
                    format!("deep:{}", check.kind),
                    check.ok.to_string(),
                    format!("{:.2}", check.latency_ms),
                    check.problem.clone().unwrap_or_default(),
                ]);
            }
            out.emit(&report, &table);
            if report.healthy {
                Ok(())
            } else {
                Err(Failure::Backend("storage is unhealthy".into()))
            }
        }
        Command::Sessions { command } => match command {
            SessionsCommand::List {
                user,
                status,
                limit,
                cursor,
            } => {
                let status = status.as_deref().map(SessionStatus::parse).transpose()?;
                let page = storage
                    .list_sessions(SessionQuery {
                        user_id: user.clone(),
                        status,
                        limit: *limit,
                        cursor: cursor.clone(),
                    })
                    .await?;
                let mut table = Table::new([
                    "id",
                    "user",
                    "status",
                    "requests",
                    "errors",
                    "last activity",
                ]);
                for s in &page.items {
                    table.row([
                        s.id.clone(),
                        s.user_id.clone(),
                        s.status.to_string(),
                        s.metrics.request_count.to_string(),
                        s.metrics.error_count.to_string(),
                        s.last_activity.to_rfc3339(),
                    ]);
                }
                if let Some(next) = &page.next_cursor {
                    table.footer(format!("next page: --cursor {next}"));
                }
                out.emit(&page, &table);
                Ok(())
            }
            SessionsCommand::Show { id } => {
                let session = storage
                    .get_session(id)
                    .await?
                    .ok_or_else(|| Failure::NotFound(format!("no session {id:?}")))?;
                let mut table = Table::new(["field", "value"]);
                table.row(["id".into(), session.id.clone()]);
                table.row(["user".into(), session.user_id.clone()]);
                table.row(["status".into(), session.status.to_string()]);
                table.row(["created".into(), session.created_at.to_rfc3339()]);
                table.row(["last activity".into(), session.last_activity.to_rfc3339()]);
                table.row([
                    "ended".into(),
                    session.ended_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                ]);
                table.row(["requests".into(), session.metrics.request_count.to_string()]);
                table.row([
                    "processing ms".into(),
                    session.metrics.total_processing_ms.to_string(),
                ]);
                table.row(["errors".into(), session.metrics.error_count.to_string()]);
                table.row([
                    "metadata".into(),
                    serde_json::Value::Object(session.metadata.clone()).to_string(),
                ]);
                out.emit(&session, &table);
                Ok(())
            }
        },
        Command::History { session, limit } => {
            let messages = storage.get_conversation_history(session, *limit).await?;
            let mut table = Table::new(["seq", "role", "content", "client id", "created"]);
            for m in &messages {
                let content = match &m.content {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                table.row([
                    m.sequence.to_string(),
                    m.role.clone(),
                    content,
                    m.client_id.clone().unwrap_or_default(),
                    m.created_at.to_rfc3339(),
                ]);
            }
            out.emit(&messages, &table);
            Ok(())
        }
        Command::Checkpoints {
            thread,
            namespace,
            limit,
        } => {
            let tuples = storage
                .list_checkpoints(CheckpointQuery {
                    thread_id: thread.clone(),
                    namespace: namespace.clone(),
                    limit: Some(*limit),
                    ..CheckpointQuery::default()
                })
                .await?;
            let mut table = Table::new([
                "namespace",
                "id",
                "parent",
                "channels",
                "writes",
                "metadata",
            ]);
            for t in &tuples {
                let c = &t.checkpoint;
                table.row([
                    c.namespace.clone(),
                    c.id.clone(),
                    c.parent_id.clone().unwrap_or_default(),
                    c.channel_values.len().to_string(),
                    t.pending_writes.len().to_string(),
                    serde_json::Value::Object(c.metadata.clone()).to_string(),
                ]);
            }
            out.emit(&tuples, &table);
            Ok(())
        }
        Command::Artifacts { command } => artifacts(storage, command, out).await,
        Command::Cleanup {
            max_idle,
            artifact_grace,
        } => {
            let removed = storage.cleanup_expired_sessions(*max_idle).await?;
            let mut table = Table::new(["removed", "count", "bytes"]);
            table.row(["sessions".to_owned(), removed.to_string(), String::new()]);
            #[cfg(feature = "object")]
            let garbage = {
                let grace = artifact_grace.unwrap_or_else(|| {
                    let secs = storage
                        .config()
                        .map_or(24 * 3600, |c| c.cleanup.artifact_grace_secs);
                    Duration::from_secs(secs)
                });
                let garbage = storage.collect_artifact_garbage(grace).await?;
                match &garbage {
                    Some(report) => {
                        table.row([
                            "orphaned artifact data".to_owned(),
                            report.data_objects.to_string(),
                            report.data_bytes.to_string(),
                        ]);
                        table.row([
                            "abandoned staging files".to_owned(),
                            report.staging_files.to_string(),
                            report.staging_bytes.to_string(),
                        ]);
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
            out.emit(
                &json!({"removed": removed, "artifact_garbage": garbage}),
                &table,
            );
            Ok(())
        }
        Command::Config { .. } | Command::Bench { .. } | Command::Migrate { .. } => {
            unreachable!("handled before opening")
        }
    }
}

async fn artifacts(storage: &Storage, command: &ArtifactsCommand, out: &Output) -> Outcome {
    let meta_row = |m: &ArtifactMeta| {
        [
            m.name.clone(),
            m.version.to_string(),
            m.content_type.clone(),
            m.size.to_string(),
            m.sha256.clone(),
            m.created_at.to_rfc3339(),
        ]
    };
    let header = [
        "name",
        "version",
        "content type",
        "bytes",
        "sha256",
        "created",
    ];
    match command {
        ArtifactsCommand::List { scope, name: None } => {
            let names = storage.list_artifacts(scope).await?;
            let mut table = Table::new(["name"]);
            for name in &names {
                table.row([name.clone()]);
            }
            out.emit(&names, &table);
        }
        ArtifactsCommand::List {
            scope,
            name: Some(name),
        } => {
            let versions = storage.list_artifact_versions(scope, name).await?;
            if versions.is_empty() {
                return Err(Failure::NotFound(format!("no artifact {scope}/{name}")));
            }
            let mut table = Table::new(header);
            for meta in &versions {
                table.row(meta_row(meta));
            }
            out.emit(&versions, &table);
        }
        ArtifactsCommand::Get {
            scope,
            name,
            version,
            output,
        } => {
            let not_found = || {
                let which = version.map_or("latest".to_owned(), |v| format!("v{v}"));
                Failure::NotFound(format!("no artifact {scope}/{name} ({which})"))
            };
            match output {
                None => {
                    let meta = storage
                        .get_artifact_meta(scope, name, *version)
                        .await?
                        .ok_or_else(not_found)?;
                    let mut table = Table::new(header);
                    table.row(meta_row(&meta));
                    out.emit(&meta, &table);
                }
                Some(path) => {
                    let artifact = storage
                        .get_artifact(scope, name, *version)
                        .await?
                        .ok_or_else(not_found)?;
                    if path.as_os_str() == "-" {
                        use std::io::Write;
                        std::io::stdout().write_all(&artifact.data).map_err(|err| {
                            Failure::Backend(format!("cannot write stdout: {err}"))
                        })?;
                    } else {
                        std::fs::write(path, &artifact.data).map_err(|err| {
                            Failure::BadInput(format!("cannot write {}: {err}", path.display()))
                        })?;
                        let mut table = Table::new(header);
                        table.row(meta_row(&artifact.meta));
                        out.emit(&artifact.meta, &table);
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct BenchRow {
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
async fn bench(
    config: &StorageConfig,
    ops: usize,
    concurrency: usize,
    namespace: &str,
    out: &Output,
) -> Outcome {
    use storage_bench::measure;

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
                    checkpoint.channel_values.insert("step".into(), json!(i));
                    let versions = checkpoint.all_versions();
                    t.put_checkpoint(checkpoint, versions).await.unwrap();
                }
            })
            .await
            .into(),
        );
        for thread in written.iter() {
            let _ = storage.delete_thread(thread).await;
        }
    }
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

/// An indicatif spinner-with-count per phase; hidden when stderr is not a terminal or the
/// output is JSON.
struct Bar(indicatif::ProgressBar);

impl storage::migrate::Progress for Bar {
    fn phase(&self, name: &str) {
        self.0.set_prefix(name.to_owned());
        self.0.set_position(0);
    }

    fn advance(&self, items: u64) {
        self.0.inc(items);
    }
}

async fn migrate(
    from: &str,
    to: &str,
    options: &storage::migrate::MigrateOptions,
    json_output: bool,
    out: &Output,
) -> Outcome {
    use std::io::IsTerminal;
    let bar = if json_output || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {prefix:>9} {pos} items ({per_sec})")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    let progress = Bar(bar);
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
        Some(verification) if !verification.is_clean() => Err(Failure::Backend(format!(
            "verification failed: {} difference(s), {} part(s) not compared",
            verification.differences.len(),
            verification.not_compared.len()
        ))),
        _ => Ok(()),
    }
}

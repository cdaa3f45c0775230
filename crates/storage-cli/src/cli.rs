//! The command line: every command, flag and argument.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Inspect and operate agent storage (sessions, conversations, checkpoints, task context,
/// artifacts) through the same configuration the application uses.
#[derive(Debug, Parser)]
#[command(
    name = "storectl",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 success, 1 failure, 2 usage or bad input, 3 not found, \
                  4 backend unavailable.\nLogs: RUST_LOG (e.g. RUST_LOG=storage=debug), \
                  on stderr."
)]
pub struct Cli {
    /// Configuration file (default: $STORAGE_CONFIG_FILE, else ./storage.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables (errors and warnings: JSON lines on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// The data namespace of every backend (SQLite table prefix, Redis key prefix,
    /// PostgreSQL schema, object prefix, memory namespace), over the configuration's
    /// `*.namespace` keys. The quickstart example writes `quickstart`.
    #[arg(long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every kind of data from one backend to another, then verify the copy. Safe to
    /// run again after an interruption: nothing is stored twice.
    ///
    /// URLs: redis://HOST:PORT/DB, postgres://USER@HOST:PORT/DB, file:///DIR, s3://BUCKET,
    /// each with an optional ?namespace=NAME (the global --namespace does not apply).
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
    /// Check every configured backend; a backend that is down gets its error in its row.
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
    /// List, show or delete sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// A session's conversation: the last messages, a page, or new messages as they come.
    History(HistoryArgs),
    /// A thread's checkpoints: `checkpoints THREAD` lists them (newest first), `show` one
    /// with its channel values and pending writes, `chain` draws the parent links.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Checkpoints {
        #[command(subcommand)]
        command: Option<CheckpointsCommand>,
        #[command(flatten)]
        list: CheckpointListArgs,
    },
    /// A session's task context.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// List, fetch or delete artifacts.
    Artifacts {
        #[command(subcommand)]
        command: ArtifactsCommand,
    },
    /// Write a session and everything it owns (its record, messages, task context, the
    /// checkpoints of the thread with the session's id, the metadata of the artifacts in
    /// the scope with the session's id) as JSON Lines, one `{"kind": ..., ...}` per line.
    Export {
        /// The session id.
        session: String,
        /// Write here instead of stdout (then a summary is printed).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Remove sessions idle longer than a duration, with their conversation and context;
    /// apply each kind's retention (the configuration's `cleanup.retention.*`, or
    /// `--keep-last`/`--max-age`); on object storage also collect orphaned artifact content
    /// (data no version references, abandoned upload staging files) older than the grace
    /// period.
    Cleanup {
        /// Remove sessions idle longer than this, e.g. `30m`, `12h`, `7d`, `90s`; without
        /// it no session is removed.
        #[arg(long, value_parser = parse_duration)]
        max_idle: Option<Duration>,
        /// Orphaned artifact content younger than this is left alone, as it may belong to
        /// a save still running (default: `cleanup.artifact_grace_secs`, 24h).
        #[arg(long, value_parser = parse_duration)]
        artifact_grace: Option<Duration>,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// A read-only web inspector on 127.0.0.1: sessions, conversations, checkpoint chains,
    /// task context, artifacts, health and latency. Prints the URL as the first line of
    /// stdout, then serves until Ctrl-C. No page or request can change stored data.
    Ui(UiArgs),
    /// Time common operations on the configured backends (in a scratch namespace).
    Bench {
        /// Operations per measurement.
        #[arg(long, default_value_t = 2000)]
        ops: usize,
        /// Concurrent callers of the append measurements.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The scratch namespace written to and cleaned afterwards (never the data
        /// namespace: the bench removes every session in it).
        #[arg(long, default_value = "storectl_bench", value_name = "NAME")]
        scratch_namespace: String,
    },
}

/// The environment variable that can carry `storectl ui`'s token instead of `--token`.
pub const UI_TOKEN_ENV: &str = "STORAGE_UI_TOKEN";

/// `storectl ui`'s flags. Its `Debug` print hides the token.
#[derive(Args)]
pub struct UiArgs {
    /// The port to listen on (0: any free port; the URL printed names it).
    #[arg(long, default_value_t = 8737)]
    pub port: u16,
    /// The address to listen on. Anything but a loopback address is refused unless
    /// --allow-remote is given and a token is set.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Allow a non-loopback --bind (the token is then required on every request).
    #[arg(long)]
    pub allow_remote: bool,
    /// Require this token on every request: `Authorization: Bearer TOKEN`, or open the
    /// page once as URL?token=TOKEN (the browser then keeps it in a cookie). Prefer the
    /// environment variable, which other users cannot read in the process list.
    #[arg(long, env = UI_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

impl std::fmt::Debug for UiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiArgs")
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("allow_remote", &self.allow_remote)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every key with its value (secrets hidden) and where it came from.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
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
    #[command(visible_alias = "get")]
    Show {
        /// The session id.
        id: String,
    },
    /// Delete a session with its conversation and task context.
    Delete {
        /// The session id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The session id.
    pub session: String,
    /// How many messages (the last ones, or the first ones after --after).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only messages with a greater sequence number (page forward).
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// Only messages with a smaller sequence number (page backward).
    #[arg(long, value_name = "SEQ")]
    pub before: Option<u64>,
    /// Then keep polling for new messages and print them as they come, until Ctrl-C
    /// (with --json: one JSON object per message and line).
    #[arg(long)]
    pub follow: bool,
    /// How often --follow polls.
    #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DURATION")]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct CheckpointListArgs {
    /// The thread id.
    #[arg(required = true)]
    pub thread: Option<String>,
    /// Only this checkpoint namespace (default: every namespace).
    #[arg(long, visible_alias = "namespace-ns", value_name = "NS")]
    pub checkpoint_ns: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// A thread's checkpoints, newest first.
    List {
        #[command(flatten)]
        args: CheckpointListArgs,
    },
    /// One checkpoint (default: the latest) with its channel values and pending writes.
    Show {
        /// The thread id.
        thread: String,
        /// The checkpoint id (default: the latest in the checkpoint namespace).
        checkpoint: Option<String>,
        /// The checkpoint namespace.
        #[arg(
            long,
            visible_alias = "namespace-ns",
            default_value = "",
            value_name = "NS"
        )]
        checkpoint_ns: String,
    },
    /// A thread's checkpoints as a tree of parent links, per checkpoint namespace.
    Chain {
        /// The thread id.
        thread: String,
        /// Only this checkpoint namespace (default: every namespace).
        #[arg(long, visible_alias = "namespace-ns", value_name = "NS")]
        checkpoint_ns: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// The current task context, or one kept version of it.
    Get {
        #[command(flatten)]
        scope: ContextScopeArgs,
        /// This version instead of the current one.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// The kept versions, newest first.
    History {
        #[command(flatten)]
        scope: ContextScopeArgs,
        /// At most this many versions.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Only versions below this one (the next page).
        #[arg(long, value_name = "N")]
        before: Option<u64>,
    },
    /// Every scope with a context: `app`, `session:<id>`, `user:<id>`.
    Scopes {
        /// At most this many.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
        /// Only scopes after this one (the next page).
        #[arg(long, value_name = "SCOPE")]
        after: Option<String>,
    },
}

/// Whose context: a session's own (the positional id), or a shared scope.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ContextScopeArgs {
    /// The session id (its own context).
    pub session: Option<String>,
    /// A scope instead: `app`, `user:<id>` or `session:<id>`.
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
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
    /// Delete one version, or every version of a name.
    Delete {
        /// The scope.
        scope: String,
        /// The name.
        name: String,
        /// Only this version (default: every version).
        #[arg(long)]
        version: Option<u64>,
    },
}

/// A retention given on the command line, over the configuration's.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Keep only the newest N records of each series (each conversation, context scope,
    /// checkpoint namespace, artifact) of the kinds `--retain` names; the newest record of
    /// a series always stays.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_last: Option<u64>,
    /// Remove records older than this (e.g. `30d`) from the kinds `--retain` names,
    /// oldest first, never the newest record of a series.
    #[arg(long, value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// The kinds `--keep-last` and `--max-age` apply to, instead of their
    /// `cleanup.retention.<kind>` settings (default: all four).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    pub retain: Vec<RetainedKind>,
}

/// A kind that keeps a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetainedKind {
    /// Each conversation's messages.
    Messages,
    /// Each context scope's versions.
    ContextVersions,
    /// Each checkpoint thread and namespace's checkpoints.
    Checkpoints,
    /// Each artifact's versions.
    ArtifactVersions,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
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

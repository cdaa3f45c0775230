//! `storectl`: look into and operate a storage configured like the application using it
//! (`storage.toml`, `STORAGE_*` environment variables).
//!
//! Exit codes, the same on every command: 0 success; 1 failure (a backend error, a failed
//! verification or deep check); 2 usage or bad input (usage, invalid arguments, invalid
//! configuration); 3 not found (session, conversation, thread, checkpoint, context,
//! artifact); 4 backend unavailable (unreachable or timed out, or `health` found a backend
//! down). Under `--json` every error, clap's usage errors included, is one JSON object on
//! stderr: `{"error": {"kind", "message", "exit_code"}}`.

mod cli;
mod commands;
mod failure;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use storage::config::ConfigLoader;
use storage::{Storage, StorageConfig};
use storage_core::StorageBackend;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::commands::{checkpoints, export, health, inspect, ops, ui};
use crate::failure::{Failure, Outcome};
use crate::output::Output;

#[tokio::main]
async fn main() -> ExitCode {
    // Looked for before parsing, so that a usage error can already be JSON.
    let json_requested = std::env::args_os().any(|arg| arg == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err, json_requested),
    };
    init_logging(cli.json);
    let out = Output::new(cli.json);
    warn_unknown_env(&out);
    match run(&cli, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report(cli.json);
            ExitCode::from(failure.code())
        }
    }
}

/// Help and version as clap prints them; every other parse error exits with 2, as one
/// JSON object on stderr under `--json`.
fn usage_error(err: clap::Error, json_output: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if informational || !json_output {
        let _ = err.print();
        return ExitCode::from(if informational { 0 } else { 2 });
    }
    let failure = Failure::BadInput(err.render().to_string().trim_end().to_owned());
    eprintln!(
        "{}",
        serde_json::json!({"error": {
            "kind": "usage",
            "message": failure.message(),
            "exit_code": failure.code(),
        }})
    );
    ExitCode::from(failure.code())
}

/// `RUST_LOG` (e.g. `RUST_LOG=storage=debug,info`) selects what the libraries log, on
/// stderr. Without it: warnings for people, nothing under `--json` (stderr then carries
/// only JSON objects).
fn init_logging(json_output: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(if json_output { "off" } else { "warn" }));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A misspelt variable is otherwise ignored without a word.
fn warn_unknown_env(out: &Output) {
    // storectl's own variable, not a configuration key.
    let unknown = storage::config::unknown_env_vars()
        .into_iter()
        .filter(|unknown| unknown.name != cli::UI_TOKEN_ENV);
    for unknown in unknown {
        out.warn(
            "unknown_env",
            &unknown.to_string(),
            serde_json::json!({"variable": unknown.name, "suggestion": unknown.suggestion}),
        );
    }
}

/// The configuration sources, with `--namespace` over every backend's namespace key.
fn loader(cli: &Cli) -> ConfigLoader {
    let mut loader = match &cli.config {
        Some(path) => ConfigLoader::new().file(path),
        None => ConfigLoader::new(),
    };
    if let Some(namespace) = &cli.namespace {
        loader = loader.set("memory.namespace", namespace);
        #[cfg(feature = "redis")]
        {
            loader = loader.set("redis.namespace", namespace);
        }
        #[cfg(feature = "postgres")]
        {
            loader = loader.set("postgres.namespace", namespace);
        }
        #[cfg(feature = "object")]
        {
            loader = loader.set("object.namespace", namespace);
        }
        #[cfg(feature = "sqlite")]
        {
            loader = loader.set("sqlite.namespace", namespace);
        }
    }
    loader
}

pub(crate) async fn open(config: StorageConfig) -> Result<Storage, Failure> {
    let storage = Storage::from_config(config)?;
    storage.initialize().await?;
    Ok(storage)
}

async fn run(cli: &Cli, out: &Output) -> Outcome {
    if cli.namespace.is_some() {
        match &cli.command {
            Command::Migrate { .. } => {
                return Err(Failure::BadInput(
                    "--namespace does not apply to migrate: give each URL its \
                     ?namespace=NAME"
                        .into(),
                ))
            }
            Command::Bench { .. } => {
                return Err(Failure::BadInput(
                    "--namespace does not apply to bench, which writes to and clears a \
                     scratch namespace: use --scratch-namespace"
                        .into(),
                ))
            }
            _ => {}
        }
    }
    let loaded = loader(cli).load()?;
    match &cli.command {
        Command::Config {
            command: ConfigCommand::Show,
        } => ops::config_show(&loaded, out),
        Command::Bench {
            ops,
            concurrency,
            scratch_namespace,
        } => ops::bench(&loaded.config, *ops, *concurrency, scratch_namespace, out).await,
        Command::Migrate {
            from,
            to,
            batch_size,
            concurrency,
            no_verify,
        } => {
            let options = storage::migrate::MigrateOptions {
                batch_size: *batch_size,
                concurrency: *concurrency,
                verify: !no_verify,
            };
            ops::migrate(from, to, &options, out).await
        }
        Command::Health { deep } => health::run(loaded.config.clone(), *deep, out).await,
        Command::Ui(args) => ui::run(loaded.config.clone(), args, out).await,
        _ => {
            let storage = open(loaded.config.clone()).await?;
            let result = command(cli, &storage, out).await;
            let _ = storage.close().await;
            result
        }
    }
}

async fn command(cli: &Cli, storage: &Storage, out: &Output) -> Outcome {
    match &cli.command {
        Command::Sessions { command } => inspect::sessions(storage, command, out).await,
        Command::History(args) => inspect::history(storage, args, out).await,
        Command::Checkpoints { command, list } => {
            checkpoints::run(storage, command.as_ref(), list, out).await
        }
        Command::Context { command } => inspect::context(storage, command, out).await,
        Command::Artifacts { command } => inspect::artifacts(storage, command, out).await,
        Command::Export { session, output } => {
            export::run(storage, session, output.as_deref(), out).await
        }
        Command::Cleanup {
            max_idle,
            artifact_grace,
            retention,
        } => ops::cleanup(storage, *max_idle, *artifact_grace, retention, out).await,
        Command::Config { .. }
        | Command::Bench { .. }
        | Command::Migrate { .. }
        | Command::Health { .. }
        | Command::Ui(_) => {
            unreachable!("handled before opening")
        }
    }
}

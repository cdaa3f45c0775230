//! `storectl` for the person on call (issue 17): the built binary against the embedded
//! backend (a local directory) seeded through the library, and against a Redis URL nobody
//! listens on. Covers `--namespace`, warnings for misspelt `STORAGE_*` variables, the
//! commands that delete, show and export, `history --follow`, escaping and widths in
//! tables, JSON usage errors, the exit codes of unknown ids and of a down backend, and
//! `RUST_LOG`.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use storage::config::BackendName;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The one JSON error object on stderr.
    fn error(&self) -> Value {
        serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|err| panic!("stderr is not one JSON object ({err}):\n{}", self.stderr))
    }
}

fn command(dir: &std::path::Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new(cli_support::storectl_path());
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

/// Runs storectl in `dir` with only `env` as its `STORAGE_*` settings.
fn storectl(dir: &std::path::Path, env: &[(String, String)], args: &[&str]) -> Run {
    let output = command(dir, env, args).output().expect("storectl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A local directory, its library configuration in `namespace`, and the environment that
/// points storectl at the same directory (with the configuration's default namespace).
struct Local {
    _data: tempfile::TempDir,
    cwd: tempfile::TempDir,
    url: String,
    env: Vec<(String, String)>,
}

impl Local {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let url = format!("file://{}", data.path().display());
        let env = vec![
            ("STORAGE_BACKEND".to_owned(), "object".to_owned()),
            ("STORAGE_OBJECT__URL".to_owned(), url.clone()),
        ];
        Local {
            _data: data,
            cwd: tempfile::tempdir().unwrap(),
            url,
            env,
        }
    }

    async fn storage(&self, namespace: &str) -> Storage {
        let mut config = StorageConfig {
            backend: BackendName::Object,
            ..StorageConfig::default()
        };
        config.object.url = self.url.clone();
        config.object.namespace = namespace.to_owned();
        let storage = Storage::from_config(config).unwrap();
        storage.initialize().await.unwrap();
        storage
    }

    fn run(&self, args: &[&str]) -> Run {
        storectl(self.cwd.path(), &self.env, args)
    }
}

fn checkpoint(thread: &str, parent: Option<&str>, step: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(thread, "", storage_core::new_checkpoint_id());
    checkpoint.parent_id = parent.map(str::to_owned);
    checkpoint
        .channel_versions
        .insert("messages".into(), step.to_string());
    checkpoint
        .channel_values
        .insert("messages".into(), json!(format!("step {step}")).into());
    checkpoint.metadata.insert("step".into(), json!(step));
    checkpoint
}

/// What the quickstart leaves: a session with messages, a context, a checkpoint chain
/// with a fork and pending writes, and an artifact with two versions, all under `s1`.
/// Returns the checkpoint ids, oldest first.
async fn seed(storage: &Storage) -> Vec<String> {
    storage
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    for i in 1..=5 {
        storage
            .append_message("s1", NewMessage::new("user", format!("message {i}")))
            .await
            .unwrap();
    }
    storage
        .store_task_context("s1", json!({"plan": 1}), ExpectedVersion::Absent)
        .await
        .unwrap();
    storage
        .store_task_context("s1", json!({"plan": 2}), ExpectedVersion::Any)
        .await
        .unwrap();
    storage
        .store_context(
            storage_core::ContextScope::user("alice"),
            json!({"locale": "fr"}),
            ExpectedVersion::Any,
            10,
        )
        .await
        .unwrap();
    let root = checkpoint("s1", None, 0);
    let middle = checkpoint("s1", Some(&root.id), 1);
    let left = checkpoint("s1", Some(&middle.id), 2);
    let right = checkpoint("s1", Some(&middle.id), 2);
    let ids: Vec<String> = [&root, &middle, &left, &right]
        .iter()
        .map(|c| c.id.clone())
        .collect();
    for c in [root, middle, left, right] {
        let versions = c.all_versions();
        storage.put_checkpoint(c, versions).await.unwrap();
    }
    let key = CheckpointKey {
        thread_id: "s1".into(),
        namespace: String::new(),
        checkpoint_id: ids[3].clone(),
    };
    storage
        .put_writes(
            key,
            "task-1",
            "path",
            vec![("messages".into(), json!("pending").into())],
        )
        .await
        .unwrap();
    storage
        .save_json("s1", "report.json", &json!({"v": 0}))
        .await
        .unwrap();
    storage
        .save_json("s1", "report.json", &json!({"v": 1}))
        .await
        .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_flag_finds_the_quickstart_data() {
    let local = Local::new();
    let storage = local.storage("quickstart").await;
    seed(&storage).await;
    storage.close().await.unwrap();

    // The configuration's namespace (`default`) is empty: that is what the operator saw.
    let plain = local.run(&["sessions", "list"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(plain.stdout.contains("(none)"), "{}", plain.stdout);
    assert!(
        plain
            .stdout
            .contains("no sessions in namespace \"default\"; another one: --namespace"),
        "{}",
        plain.stdout
    );

    let ns = ["--namespace", "quickstart"];
    let list = local.run(&[&ns[..], &["--json", "sessions", "list"]].concat());
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.json()["items"][0]["id"], "s1");
    for args in [
        &["history", "s1"][..],
        &["checkpoints", "s1"],
        &["artifacts", "list", "s1"],
        &["context", "get", "s1"],
    ] {
        // The flag is global: before or after the command.
        let run = local.run(&[args, &ns[..]].concat());
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(!run.stdout.contains("(none)"), "{args:?}: {}", run.stdout);
    }
    let shown = local.run(&["--json", "--namespace", "quickstart", "config", "show"]);
    let entries = shown.json();
    let object_ns = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "object.namespace")
        .unwrap()
        .clone();
    assert_eq!(object_ns["value"], "quickstart", "{object_ns}");

    let bad = local.run(&["--namespace", "bad namespace!", "sessions", "list"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let migrate = local.run(&[
        "--namespace",
        "x",
        "migrate",
        "--from",
        "file:///a",
        "--to",
        "file:///b",
    ]);
    assert_eq!(migrate.code, 2, "{}", migrate.stderr);
}

#[test]
fn misspelt_variables_warn_with_the_closest_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("STORAGE_BAKEND".to_owned(), "memory".to_owned()),
        (
            "STORAGE_REDIS_URL".to_owned(),
            "redis://secret@h".to_owned(),
        ),
        ("STORAGE_TEST_REDIS_URL".to_owned(), "not config".to_owned()),
        ("STORAGE_BACKEND".to_owned(), "memory".to_owned()),
    ];
    let run = storectl(dir.path(), &env, &["config", "show"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("STORAGE_BAKEND matches no configuration key; did you mean STORAGE_BACKEND?"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean STORAGE_REDIS__URL?"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("STORAGE_TEST_"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret"), "values are never printed");

    let json_run = storectl(dir.path(), &env, &["--json", "config", "show"]);
    assert_eq!(json_run.code, 0, "{}", json_run.stderr);
    let warnings: Vec<Value> = json_run
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{}", json_run.stderr);
    assert_eq!(warnings[0]["warning"]["variable"], "STORAGE_BAKEND");
    assert_eq!(warnings[0]["warning"]["suggestion"], "STORAGE_BACKEND");
    assert_eq!(warnings[1]["warning"]["suggestion"], "STORAGE_REDIS__URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_page_follow_delete_and_export() {
    let local = Local::new();
    let storage = local.storage("default").await;
    let ids = seed(&storage).await;

    let context = local.run(&["--json", "context", "get", "s1"]);
    assert_eq!(context.code, 0, "{}", context.stderr);
    assert_eq!(context.json()["version"], 2);
    assert_eq!(context.json()["value"], json!({"plan": 2}));
    // Earlier versions are kept: history lists them newest first, get reads one.
    let history = local.run(&["--json", "context", "history", "s1"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let versions: Vec<(u64, serde_json::Value)> = history.json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["value"].clone()))
        .collect();
    assert_eq!(
        versions,
        vec![(2, json!({"plan": 2})), (1, json!({"plan": 1}))]
    );
    let first = local.run(&["--json", "context", "get", "s1", "--version", "1"]);
    assert_eq!(
        first.json()["value"],
        json!({"plan": 1}),
        "{}",
        first.stderr
    );
    let gone = local.run(&["context", "get", "s1", "--version", "3"]);
    assert_eq!(gone.code, 3, "{}", gone.stderr);
    // A shared scope, and the listing of scopes.
    let shared = local.run(&["--json", "context", "get", "--scope", "user:alice"]);
    assert_eq!(
        shared.json()["value"],
        json!({"locale": "fr"}),
        "{}",
        shared.stderr
    );
    let scopes = local.run(&["--json", "context", "scopes"]);
    assert_eq!(scopes.json()["scopes"], json!(["session:s1", "user:alice"]));
    let bad = local.run(&["context", "get", "--scope", "team:x"]);
    assert_eq!(bad.code, 2, "{}", bad.stdout);
    assert!(
        bad.stderr.contains("names no context scope"),
        "{}",
        bad.stderr
    );

    // The latest checkpoint (the right fork) with its value and its pending write.
    let shown = local.run(&["checkpoints", "show", "s1"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains(&ids[3]), "{}", shown.stdout);
    assert!(shown.stdout.contains("\"step 2\""), "{}", shown.stdout);
    assert!(shown.stdout.contains("task-1"), "{}", shown.stdout);
    assert!(shown.stdout.contains("\"pending\""), "{}", shown.stdout);
    let first = local.run(&["--json", "checkpoints", "show", "s1", &ids[0]]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json()["checkpoint"]["id"], ids[0].as_str());
    let explicit_ns = local.run(&["checkpoints", "show", "s1", "--checkpoint-ns", ""]);
    assert_eq!(explicit_ns.code, 0, "{}", explicit_ns.stderr);

    // root, middle on the same column, then the fork.
    let chain = local.run(&["checkpoints", "chain", "s1"]);
    assert_eq!(chain.code, 0, "{}", chain.stderr);
    let lines: Vec<&str> = chain.stdout.lines().collect();
    assert!(lines[1].starts_with(&ids[0]), "{}", chain.stdout);
    assert!(lines[2].starts_with(&ids[1]), "{}", chain.stdout);
    assert!(
        lines[3].starts_with(&format!("├── {}", ids[2])),
        "{}",
        chain.stdout
    );
    assert!(
        lines[4].starts_with(&format!("└── {}", ids[3])),
        "{}",
        chain.stdout
    );
    let links = local.run(&["--json", "checkpoints", "chain", "s1"]);
    assert_eq!(links.json().as_array().unwrap().len(), 4);

    let page = |args: &[&str]| -> Vec<u64> {
        let run = local.run(&[&["--json", "history", "s1"][..], args].concat());
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sequence"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(page(&["--after", "2", "--limit", "2"]), [3, 4]);
    assert_eq!(page(&["--before", "3"]), [1, 2]);

    // --follow: the page, then each new message as it is appended, until stopped.
    let mut child = command(
        local.cwd.path(),
        &local.env,
        &[
            "--json",
            "history",
            "s1",
            "--after",
            "3",
            "--follow",
            "--interval",
            "100ms",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next_sequence = || -> u64 {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from history --follow");
        let message: Value = serde_json::from_str(&line).unwrap();
        message["sequence"].as_u64().unwrap()
    };
    assert_eq!(next_sequence(), 4);
    assert_eq!(next_sequence(), 5);
    storage
        .append_message("s1", NewMessage::new("assistant", "late"))
        .await
        .unwrap();
    assert_eq!(next_sequence(), 6);
    // Ctrl-C ends following as a success.
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "history --follow ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");

    let deleted = local.run(&["artifacts", "delete", "s1", "report.json", "--version", "0"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let versions = local.run(&["--json", "artifacts", "list", "s1", "report.json"]);
    let left: Vec<u64> = versions
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(left, [1]);
    let again = local.run(&["artifacts", "delete", "s1", "report.json", "--version", "0"]);
    assert_eq!(again.code, 3, "{}", again.stderr);

    // Export: JSON Lines on stdout, no progress drawn on a pipe.
    let export = local.run(&["export", "s1"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert_eq!(
        export.stderr, "",
        "nothing on stderr when it is not a terminal"
    );
    let records: Vec<Value> = export
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(kinds[0], "session");
    assert_eq!(count("message"), 6);
    assert_eq!(count("task_context"), 2, "both kept versions");
    assert_eq!(count("checkpoint"), 4);
    assert_eq!(count("artifact"), 1);
    assert_eq!(kinds.last(), Some(&"summary"));
    assert_eq!(records.last().unwrap()["counts"]["pending_writes"], 1);
    let file = local.cwd.path().join("s1.jsonl");
    let to_file = local.run(&["--json", "export", "s1", "--output", file.to_str().unwrap()]);
    assert_eq!(to_file.code, 0, "{}", to_file.stderr);
    assert_eq!(to_file.json()["counts"]["messages"], 6);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), export.stdout);

    let cleanup = local.run(&["cleanup", "--max-idle", "30d"]);
    assert_eq!(cleanup.code, 0, "{}", cleanup.stderr);
    assert_eq!(cleanup.stderr, "", "no progress drawn on a pipe");

    let gone = local.run(&["sessions", "delete", "s1"]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    for args in [
        &["sessions", "delete", "s1"][..],
        &["sessions", "get", "s1"],
        &["history", "s1"],
        &["context", "get", "s1"],
    ] {
        let run = local.run(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
    }
    storage.close().await.unwrap();
}

/// Display columns, counting the CJK and emoji this test uses as two.
fn columns(text: &str) -> usize {
    text.chars()
        .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_escape_invisible_characters_align_wide_ones_and_keep_ids_whole() {
    let local = Local::new();
    let storage = local.storage("default").await;
    let long_id = format!("session-{}", "x".repeat(240));
    storage
        .create_session(NewSession::new(long_id.clone(), "alice"))
        .await
        .unwrap();
    let hostile = "evil\u{202E}txt.exe \u{200B}zero\u{2028}line\u{FEFF}bom";
    for (text, client) in [(hostile, "c0"), ("日本語😀", "c1"), ("abc", "c2")] {
        storage
            .append_message(
                &long_id,
                NewMessage::new("user", text).with_client_id(client),
            )
            .await
            .unwrap();
    }
    storage.close().await.unwrap();

    let list = local.run(&["sessions", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains(&long_id), "{}", list.stdout);

    let history = local.run(&["history", &long_id]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    for escaped in ["\\u{202E}", "\\u{200B}", "\\u{2028}", "\\u{FEFF}"] {
        assert!(
            history.stdout.contains(escaped),
            "{escaped}: {}",
            history.stdout
        );
    }
    for raw in ['\u{202E}', '\u{200B}', '\u{2028}', '\u{FEFF}'] {
        assert!(!history.stdout.contains(raw), "{raw:?} printed raw");
    }
    // The client id column starts at the same display column on every row.
    let starts: Vec<usize> = ["c0", "c1", "c2"]
        .iter()
        .map(|client| {
            let line = history
                .stdout
                .lines()
                .find(|line| line.contains(&format!("  {client}  ")))
                .unwrap_or_else(|| panic!("{client}: {}", history.stdout));
            columns(&line[..line.find(&format!("  {client}  ")).unwrap()])
        })
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "{starts:?}\n{}",
        history.stdout
    );
    // JSON is the stored text, unescaped.
    let json_history = local.run(&["--json", "history", &long_id]);
    assert_eq!(json_history.json()[0]["content"], hostile);
}

#[test]
fn usage_errors_are_json_under_json() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--json", "history"][..],
        &["sessions", "frobnicate", "--json"],
        &["--json", "history", "s1", "--limit", "many"],
    ] {
        let run = storectl(dir.path(), &[], args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        let error = run.error();
        assert_eq!(error["error"]["kind"], "usage", "{error}");
        assert_eq!(error["error"]["exit_code"], 2, "{error}");
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--help"));
    }
    let plain = storectl(dir.path(), &[], &["history"]);
    assert_eq!(plain.code, 2);
    assert!(plain.stderr.starts_with("error:"), "{}", plain.stderr);
    let help = storectl(dir.path(), &[], &["--json", "--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_exit_3_on_every_command() {
    let local = Local::new();
    let storage = local.storage("default").await;
    seed(&storage).await;
    storage.close().await.unwrap();
    for args in [
        &["sessions", "get", "nobody"][..],
        &["sessions", "delete", "nobody"],
        &["history", "nobody"],
        &["checkpoints", "nobody"],
        &["checkpoints", "list", "nobody"],
        &["checkpoints", "show", "nobody"],
        &["checkpoints", "show", "s1", "no-such-checkpoint"],
        &["checkpoints", "chain", "nobody"],
        &["checkpoints", "s1", "--checkpoint-ns", "other"],
        &["context", "get", "nobody"],
        &["context", "history", "nobody"],
        &["artifacts", "list", "nobody"],
        &["artifacts", "get", "s1", "nothing.json"],
        &["artifacts", "delete", "s1", "nothing.json"],
        &["export", "nobody"],
    ] {
        let run = local.run(&[&["--json"][..], args].concat());
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert_eq!(run.error()["error"]["kind"], "not_found", "{args:?}");
        assert_eq!(run.stdout, "", "{args:?}: no empty table");
    }
}

#[test]
fn health_prints_the_table_with_the_down_backends_error() {
    let local = Local::new();
    let port = storage_testkit::servers::free_port();
    let mut env = local.env.clone();
    env.extend([
        ("STORAGE_ROUTES__SESSIONS".to_owned(), "redis".to_owned()),
        (
            "STORAGE_REDIS__URL".to_owned(),
            format!("redis://:topsecret@127.0.0.1:{port}"),
        ),
        (
            "STORAGE_REDIS__CONNECT_TIMEOUT_MS".to_owned(),
            "300".to_owned(),
        ),
        ("STORAGE_RETRY__MAX_ATTEMPTS".to_owned(), "1".to_owned()),
    ]);
    let started = Instant::now();
    let run = storectl(local.cwd.path(), &env, &["health"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert!(rows[0].starts_with("backend"), "{}", run.stdout);
    let redis = rows
        .iter()
        .find(|row| row.starts_with("redis"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(redis.contains("false"), "{redis}");
    assert!(redis.contains(&format!("127.0.0.1:{port}")), "{redis}");
    let object = rows
        .iter()
        .find(|row| row.starts_with("object"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(object.contains("true"), "{object}");
    assert!(!run.stdout.contains("topsecret") && !run.stderr.contains("topsecret"));

    let json_run = storectl(local.cwd.path(), &env, &["--json", "health"]);
    assert_eq!(json_run.code, 4, "{}", json_run.stderr);
    let report = json_run.json();
    assert_eq!(report["healthy"], false);
    assert_eq!(report["backends"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(json_run.error()["error"]["kind"], "unavailable");
}

#[test]
fn rust_log_turns_on_the_libraries_logs() {
    let local = Local::new();
    // A limit of 0 fails in the facade, whose tracing layer logs failed operations at debug.
    let quiet = local.run(&["history", "s1", "--limit", "0"]);
    assert_eq!(quiet.code, 2, "{}", quiet.stderr);
    assert!(
        !quiet.stderr.contains("storage operation failed"),
        "{}",
        quiet.stderr
    );
    let mut env = local.env.clone();
    env.push(("RUST_LOG".to_owned(), "storage=debug".to_owned()));
    let logged = storectl(local.cwd.path(), &env, &["history", "s1", "--limit", "0"]);
    assert_eq!(logged.code, 2, "{}", logged.stderr);
    assert!(
        logged.stderr.contains("storage operation failed"),
        "{}",
        logged.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_drawn_on_a_terminal_only() {
    // `script` (util-linux) gives storectl a terminal; without it there is nothing to test.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to run storectl on a terminal");
        return;
    }
    let local = Local::new();
    let storage = local.storage("default").await;
    seed(&storage).await;
    storage.close().await.unwrap();
    let on_terminal = |args: &str| -> String {
        let line = format!("{} {args}", cli_support::storectl_path().display());
        let mut script = Command::new("script");
        script
            .current_dir(local.cwd.path())
            .args(["-qec", &line, "/dev/null"]);
        for (name, _) in std::env::vars() {
            if name.starts_with("STORAGE_") || name == "RUST_LOG" {
                script.env_remove(name);
            }
        }
        script.envs(local.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let output = script.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let drawn = on_terminal("export s1 --output s1.jsonl");
    assert!(
        drawn.contains("export") && drawn.contains("records"),
        "{drawn}"
    );
    let json = on_terminal("--json export s1 --output s1.jsonl");
    assert!(
        !json.contains("records"),
        "no progress under --json: {json}"
    );
    let cleanup = on_terminal("cleanup --max-idle 30d");
    assert!(cleanup.contains("expired sessions"), "{cleanup}");
}

//! `storectl` and secrets: `config show` (table and `--json`) never prints a password or a
//! credential option, whatever characters it holds; and `storectl health` against a server
//! that accepts TCP and never answers fails within its documented bound
//! (`retry.max_attempts` × the backend's connect timeout, plus backoff), naming the server
//! and never the password.

mod cli_support;

use std::process::Command;
use std::time::{Duration, Instant};

use storage_testkit::servers::hung::HungServer;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs storectl in `dir` with only `env` as its `STORAGE_*` settings.
fn storectl(dir: &std::path::Path, env: &[(String, String)], args: &[&str]) -> Run {
    let mut command = Command::new(cli_support::storectl_path());
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = command.output().expect("storectl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Passwords that broke redaction: `/`, `#`, `?` before the `@`, a space, quotes.
const PASSWORDS: [&str; 4] = ["p/a#b", "x?y@z/w", "sp ace'q\"d", "ünï/#code"];

#[test]
fn config_show_hides_passwords_and_credential_options() {
    let dir = tempfile::tempdir().unwrap();
    for pw in PASSWORDS {
        let env: Vec<(String, String)> = [
            (
                "STORAGE_POSTGRES__URL",
                format!("postgres://app:{pw}@127.0.0.1:5432/agents"),
            ),
            ("STORAGE_POSTGRES__PASSWORD", format!("\"{pw}\"")),
            (
                "STORAGE_REDIS__URL",
                format!("redis://:{pw}@127.0.0.1:6379/0"),
            ),
            (
                "STORAGE_OBJECT__OPTIONS__AZURE_STORAGE_ACCOUNT_KEY",
                format!("\"{pw}\""),
            ),
            (
                "STORAGE_OBJECT__OPTIONS__GOOGLE_SERVICE_ACCOUNT_KEY",
                format!("\"{pw}\""),
            ),
            (
                "STORAGE_OBJECT__OPTIONS__AZURE_STORAGE_SAS_TOKEN",
                format!("\"{pw}\""),
            ),
            (
                "STORAGE_OBJECT__OPTIONS__AWS_REGION",
                "us-east-1".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for args in [&["config", "show"][..], &["config", "show", "--json"][..]] {
            let run = storectl(dir.path(), &env, args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert!(
                !run.stdout.contains(pw) && !run.stderr.contains(pw),
                "{args:?} shows {pw:?}:\n{}{}",
                run.stdout,
                run.stderr
            );
            assert!(run.stdout.contains("127.0.0.1:5432"), "{}", run.stdout);
            assert!(run.stdout.contains("us-east-1"), "{}", run.stdout);
        }
        let json: serde_json::Value =
            serde_json::from_str(&storectl(dir.path(), &env, &["config", "show", "--json"]).stdout)
                .unwrap();
        let value = |key: &str| {
            json.as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["key"] == key)
                .map(|entry| entry["value"].clone())
        };
        for key in [
            "postgres.password",
            "object.options.azure_storage_account_key",
            "object.options.google_service_account_key",
            "object.options.azure_storage_sas_token",
        ] {
            assert_eq!(value(key), Some(serde_json::json!("***")), "{key}");
        }
        assert_eq!(
            value("postgres.url"),
            Some(serde_json::json!(
                "postgres://app:***@127.0.0.1:5432/agents"
            ))
        );
    }
}

/// `storectl health` against a hung server: exit code 4 (unavailable) within the bound.
fn health_is_bounded(backend: &str, url: String, password: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server_port = url
        .rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .unwrap()
        .to_owned();
    let connect_ms = 1_000u64;
    let attempts = 3u64;
    let upper = backend.to_ascii_uppercase();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), backend.to_owned()),
        (format!("STORAGE_{upper}__URL"), url),
        (
            format!("STORAGE_{upper}__CONNECT_TIMEOUT_MS"),
            connect_ms.to_string(),
        ),
        (
            "STORAGE_RETRY__MAX_ATTEMPTS".to_owned(),
            attempts.to_string(),
        ),
    ];
    let started = Instant::now();
    let run = storectl(dir.path(), &env, &["health"]);
    let elapsed = started.elapsed();
    // The documented bound (attempts × connect timeout, plus at most max_backoff_ms per
    // retry), plus generous slack for a loaded machine: a correctness bound, not a benchmark.
    let bound = Duration::from_millis(attempts * connect_ms + (attempts - 1) * 1_000)
        + Duration::from_secs(5);
    assert_eq!(run.code, 4, "unavailable: {}", run.stderr);
    assert!(
        elapsed < bound,
        "{backend}: took {elapsed:?}: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{server_port}")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(password), "{}", run.stderr);
    assert!(
        !run.stderr
            .contains("error connecting to server: error connecting to server"),
        "{}",
        run.stderr
    );
}

#[test]
fn health_against_a_hung_postgres_answers_within_its_bound() {
    let server = HungServer::start();
    health_is_bounded(
        "postgres",
        format!("postgres://app:hungpw@127.0.0.1:{}", server.port()),
        "hungpw",
    );
    assert!(server.accepted() >= 1, "the hung server was never reached");
}

#[test]
fn health_against_a_hung_redis_answers_within_its_bound() {
    let server = HungServer::start();
    health_is_bounded(
        "redis",
        format!("redis://:hungpw@127.0.0.1:{}", server.port()),
        "hungpw",
    );
    assert!(server.accepted() >= 1, "the hung server was never reached");
}

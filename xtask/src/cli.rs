//! Command-line handling: which task to run, and the cargo arguments each task builds.

use std::fmt;

/// The usage text printed by `--help`, by no arguments, and after a usage error.
pub const USAGE: &str = "\
Developer tasks of the storage workspace.

Usage: cargo xtask <task> [args]

Tasks:
  test [args]             cargo test --workspace (unit, integration and doc tests), then a
                          summary line `test: N passed, M failed[, K skipped]`.
                          Extra args go to `cargo test`: `-p storage-core`, a test name
                          filter, `-- --nocapture`. A package selection replaces --workspace;
                          selecting storage-tests builds storectl first (its tests run it).
                          Without args, or selecting storage-py, the Python package is then
                          built into target/py-venv (maturin develop) and pytest runs; its
                          counts join the summary.
  bench <backend> [args]  cargo bench -p storage-<backend> --bench <backend> -- [args]
                          Backends: memory, redis, postgres, object, sqlite.
  bench flat [args]       reads that must stay flat as data grows (a context version among
                          10 vs 10,000, the last 10 turns of 1e3 vs 1e6 messages) on every
                          backend: cargo bench -p storage --bench flat_reads -- [args]
  bench retention [args]  what a retention sweep costs: removing 10 records from a series
                          of 100 vs 10,000, and a sweep over 1,000 series with nothing to
                          remove, per kind and backend: cargo bench -p storage --bench
                          retention -- [args]
  bench group-commit [args]
                          checkpoint puts through the facade with group commit on
                          PostgreSQL (or Redis: --backend redis): cargo bench -p storage
                          --bench group_commit -- [args]
  bench python [args]     LangGraph's workload from Python: the package (a release wheel in
                          target/py-bench) against LangGraph's InMemorySaver, SqliteSaver
                          and PostgresSaver; args go to crates/storage-py/bench/langgraph_peer.py.
  lint                    cargo fmt --check, cargo clippy -D warnings, cargo doc -D warnings
  ci                      lint, then test (what .ci/run calls)
  help, -h, --help        this text

Every command is printed before it runs; the first failing step ends the task with a
non-zero exit status and names the step.
";

/// Backends that have a benchmark target named after them.
pub const BACKENDS: [&str; 5] = ["memory", "redis", "postgres", "object", "sqlite"];

/// The facade's benchmarks: (the name `bench` takes, the bench target in `storage`).
pub const FACADE_BENCHES: [(&str, &str); 3] = [
    ("flat", "flat_reads"),
    ("group-commit", "group_commit"),
    ("retention", "retention"),
];

/// `bench python`: the Python package against LangGraph's savers (not a cargo bench).
pub const PYTHON_BENCH: &str = "python";

/// A task chosen on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Print the usage text.
    Help,
    /// Run the workspace's tests; the arguments go to `cargo test`.
    Test { cargo_args: Vec<String> },
    /// Run one backend's benchmark binary; the arguments go to the binary.
    Bench {
        backend: String,
        bench_args: Vec<String>,
    },
    /// Formatting, clippy and rustdoc checks.
    Lint,
    /// Lint, then test.
    Ci,
}

/// A command line that names no valid task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Task, UsageError> {
    let Some((task, rest)) = args.split_first() else {
        return Ok(Task::Help);
    };
    match task.as_str() {
        "help" | "-h" | "--help" => Ok(Task::Help),
        "test" => Ok(Task::Test {
            cargo_args: rest.to_vec(),
        }),
        "bench" => parse_bench(rest),
        "lint" => no_arguments(task, rest).map(|()| Task::Lint),
        "ci" => no_arguments(task, rest).map(|()| Task::Ci),
        other => Err(UsageError(format!("unknown task `{other}`"))),
    }
}

fn parse_bench(args: &[String]) -> Result<Task, UsageError> {
    let facade: Vec<&str> = FACADE_BENCHES.iter().map(|(name, _)| *name).collect();
    let known = format!(
        "{}, {}, {PYTHON_BENCH}",
        BACKENDS.join(", "),
        facade.join(", ")
    );
    let Some((backend, rest)) = args.split_first() else {
        return Err(UsageError(format!(
            "`bench` needs a backend; known backends: {known}"
        )));
    };
    if !BACKENDS.contains(&backend.as_str())
        && !facade.contains(&backend.as_str())
        && backend != PYTHON_BENCH
    {
        return Err(UsageError(format!(
            "unknown backend `{backend}`; known backends: {known}"
        )));
    }
    // `bench memory -- --x` and `bench memory --x` mean the same: args for the bench binary.
    let rest = match rest.split_first() {
        Some((first, tail)) if first == "--" => tail,
        _ => rest,
    };
    Ok(Task::Bench {
        backend: backend.clone(),
        bench_args: rest.to_vec(),
    })
}

fn no_arguments(task: &str, rest: &[String]) -> Result<(), UsageError> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(UsageError(format!(
            "`{task}` takes no arguments, got `{arg}`"
        ))),
    }
}

/// The arguments of `cargo test` for `cargo xtask test <extra>`.
///
/// `--workspace` is added unless the extra arguments select packages themselves (cargo would
/// otherwise let `--workspace` win over `-p`). `--no-fail-fast` is added so that one failing
/// test binary does not hide the results of the others from the summary.
pub fn cargo_test_args(extra: &[String]) -> Vec<String> {
    let cargo_part = cargo_options(extra);
    let selects_packages = cargo_part.iter().any(|arg| {
        matches!(
            arg.as_str(),
            "-p" | "--package" | "--workspace" | "--all" | "--manifest-path"
        ) || arg.starts_with("--package=")
            || arg.starts_with("--manifest-path=")
            || (arg.starts_with("-p") && !arg.starts_with("--"))
    });
    let mut args = vec!["test".to_owned()];
    if !selects_packages {
        args.push("--workspace".to_owned());
    }
    if !cargo_part.iter().any(|arg| arg == "--no-fail-fast") {
        args.push("--no-fail-fast".to_owned());
    }
    args.extend(extra.iter().cloned());
    args
}

/// The arguments of the `cargo build` that `cargo xtask test <extra>` runs first, if any.
///
/// The full-stack tests (`tests/`, package `storage-tests`) run the `storectl` binary of
/// the same build. A workspace test run builds it anyway (storage-cli has an integration
/// test); a run that selects `storage-tests` gets it from this build: with S3 support (the
/// migration tests use moto) and the selected profile (`--release`, `--profile`).
pub fn storectl_build_args(extra: &[String]) -> Option<Vec<String>> {
    let test_args = cargo_test_args(extra);
    let cargo_part = cargo_options(extra);
    let whole_workspace = test_args
        .iter()
        .any(|arg| arg == "--workspace" || arg == "--all");
    if whole_workspace || !cargo_part.iter().any(|arg| arg.ends_with("storage-tests")) {
        return None;
    }
    let mut args = strings_of(&["build", "-p", "storage-cli", "--bins", "--features", "s3"]);
    let mut parts = cargo_part.iter();
    while let Some(arg) = parts.next() {
        if arg == "--release" || arg.starts_with("--profile=") {
            args.push(arg.clone());
        } else if arg == "--profile" {
            args.push(arg.clone());
            args.extend(parts.next().cloned());
        }
    }
    Some(args)
}

/// Whether `cargo xtask test <extra>` runs the Python package's tests: on a whole run
/// (no arguments) or when the arguments select `storage-py`; a test-name filter or another
/// package selection is about Rust tests.
pub fn runs_python_tests(extra: &[String]) -> bool {
    let cargo_part = cargo_options(extra);
    if extra.is_empty() {
        return true;
    }
    cargo_part.iter().enumerate().any(|(i, arg)| {
        arg == "-pstorage-py"
            || arg == "--package=storage-py"
            || (matches!(arg.as_str(), "-p" | "--package")
                && cargo_part
                    .get(i + 1)
                    .is_some_and(|next| next == "storage-py"))
    })
}

fn strings_of(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// The arguments of `cargo bench` for `cargo xtask bench <backend> <bench_args>`.
pub fn cargo_bench_args(backend: &str, bench_args: &[String]) -> Vec<String> {
    let (package, target) = match FACADE_BENCHES.iter().find(|(name, _)| *name == backend) {
        Some((_, target)) => ("storage".to_owned(), *target),
        None => (format!("storage-{backend}"), backend),
    };
    let mut args = vec![
        "bench".to_owned(),
        "-p".to_owned(),
        package,
        "--bench".to_owned(),
        target.to_owned(),
        "--".to_owned(),
    ];
    args.extend(bench_args.iter().cloned());
    args
}

/// The arguments meant for cargo itself: everything before a `--`, which starts the test
/// binaries' own arguments.
fn cargo_options(args: &[String]) -> &[String] {
    match args.iter().position(|arg| arg == "--") {
        Some(end) => &args[..end],
        None => args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn no_arguments_and_help_flags_print_usage() {
        assert_eq!(parse(&[]), Ok(Task::Help));
        for flag in ["help", "-h", "--help"] {
            assert_eq!(parse(&strings(&[flag])), Ok(Task::Help));
        }
    }

    #[test]
    fn test_passes_every_argument_through() {
        let task = parse(&strings(&[
            "test",
            "-p",
            "storage-core",
            "--",
            "--nocapture",
        ]));
        assert_eq!(
            task,
            Ok(Task::Test {
                cargo_args: strings(&["-p", "storage-core", "--", "--nocapture"])
            })
        );
    }

    #[test]
    fn storectl_is_built_first_only_for_a_run_of_storage_tests() {
        assert_eq!(storectl_build_args(&[]), None);
        assert_eq!(storectl_build_args(&strings(&["--workspace"])), None);
        assert_eq!(storectl_build_args(&strings(&["-p", "storage-core"])), None);
        assert_eq!(
            storectl_build_args(&strings(&["-p", "storage-tests", "--release"])),
            Some(strings(&[
                "build",
                "-p",
                "storage-cli",
                "--bins",
                "--features",
                "s3",
                "--release"
            ]))
        );
        assert_eq!(
            storectl_build_args(&strings(&[
                "-p",
                "storage-tests",
                "--profile",
                "ci",
                "--",
                "--release"
            ])),
            Some(strings(&[
                "build",
                "-p",
                "storage-cli",
                "--bins",
                "--features",
                "s3",
                "--profile",
                "ci"
            ]))
        );
    }

    #[test]
    fn cargo_test_covers_the_workspace_by_default() {
        assert_eq!(
            cargo_test_args(&[]),
            strings(&["test", "--workspace", "--no-fail-fast"])
        );
        assert_eq!(
            cargo_test_args(&strings(&["session", "--", "--nocapture"])),
            strings(&[
                "test",
                "--workspace",
                "--no-fail-fast",
                "session",
                "--",
                "--nocapture"
            ])
        );
    }

    #[test]
    fn a_package_selection_replaces_workspace() {
        for selection in [
            &["-p", "storage-core"][..],
            &["-pstorage-core"],
            &["--package", "storage-core"],
            &["--package=storage-core"],
            &["--manifest-path", "crates/storage-core/Cargo.toml"],
            &["--workspace"],
        ] {
            let args = cargo_test_args(&strings(selection));
            assert_eq!(
                args.iter().filter(|arg| *arg == "--workspace").count(),
                usize::from(selection == ["--workspace"]),
                "{selection:?}"
            );
            assert!(args.ends_with(&strings(selection)), "{args:?}");
        }
    }

    #[test]
    fn arguments_after_the_separator_are_not_cargo_options() {
        let args = cargo_test_args(&strings(&["--", "-p", "--no-fail-fast"]));
        assert_eq!(
            args,
            strings(&[
                "test",
                "--workspace",
                "--no-fail-fast",
                "--",
                "-p",
                "--no-fail-fast"
            ])
        );
    }

    #[test]
    fn python_tests_run_on_a_whole_run_or_for_storage_py() {
        assert!(runs_python_tests(&[]));
        assert!(runs_python_tests(&strings(&["-p", "storage-py"])));
        assert!(runs_python_tests(&strings(&["--package=storage-py"])));
        assert!(!runs_python_tests(&strings(&["-p", "storage-core"])));
        assert!(!runs_python_tests(&strings(&["session"])));
        assert!(!runs_python_tests(&strings(&["--", "-p", "storage-py"])));
    }

    #[test]
    fn no_fail_fast_is_not_repeated() {
        let args = cargo_test_args(&strings(&["--no-fail-fast"]));
        assert_eq!(args, strings(&["test", "--workspace", "--no-fail-fast"]));
    }

    #[test]
    fn bench_builds_the_backend_bench_command() {
        let task = parse(&strings(&["bench", "memory", "--quick"])).unwrap();
        assert_eq!(
            task,
            Task::Bench {
                backend: "memory".into(),
                bench_args: strings(&["--quick"])
            }
        );
        assert_eq!(
            cargo_bench_args("memory", &strings(&["--quick"])),
            strings(&[
                "bench",
                "-p",
                "storage-memory",
                "--bench",
                "memory",
                "--",
                "--quick"
            ])
        );
        assert_eq!(
            cargo_bench_args("flat", &strings(&["--backends", "memory"])),
            strings(&[
                "bench",
                "-p",
                "storage",
                "--bench",
                "flat_reads",
                "--",
                "--backends",
                "memory"
            ])
        );
        assert!(parse(&strings(&["bench", "group-commit"])).is_ok());
        // A separator typed by the user is not doubled.
        assert_eq!(
            parse(&strings(&["bench", "redis", "--", "--quick"])).unwrap(),
            Task::Bench {
                backend: "redis".into(),
                bench_args: strings(&["--quick"])
            }
        );
    }

    #[test]
    fn bench_python_takes_the_script_arguments() {
        let task = parse(&strings(&["bench", "python", "--", "--ops", "10"])).unwrap();
        assert_eq!(
            task,
            Task::Bench {
                backend: PYTHON_BENCH.into(),
                bench_args: strings(&["--ops", "10"])
            }
        );
    }

    #[test]
    fn bench_rejects_unknown_or_missing_backends_listing_the_known_ones() {
        for args in [&["bench", "mysql"][..], &["bench"]] {
            let err = parse(&strings(args)).unwrap_err();
            assert!(err.0.contains("memory, redis, postgres, object"), "{err}");
        }
        assert!(parse(&strings(&["bench", "mysql"]))
            .unwrap_err()
            .0
            .contains("`mysql`"));
    }

    #[test]
    fn lint_and_ci_take_no_arguments_and_unknown_tasks_fail() {
        assert_eq!(parse(&strings(&["lint"])), Ok(Task::Lint));
        assert_eq!(parse(&strings(&["ci"])), Ok(Task::Ci));
        assert!(parse(&strings(&["lint", "--fix"])).is_err());
        assert!(parse(&strings(&["ci", "x"])).is_err());
        assert!(parse(&strings(&["deploy"]))
            .unwrap_err()
            .0
            .contains("unknown task `deploy`"));
    }
}

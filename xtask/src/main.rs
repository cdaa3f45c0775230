//! `cargo xtask`: the storage workspace's developer tasks (test, bench, lint, ci).
//!
//! The cargo-xtask pattern: a plain binary of the workspace, run through the `xtask` alias in
//! `.cargo/config.toml`, so the tasks need nothing installed beyond the Rust toolchain.

mod cli;
mod python;
mod run;
mod summary;

use std::process::{Command, ExitCode};

use cli::Task;
use run::{Step, StepFailed};

/// Environment variables naming test servers that already run; for each one missing, the
/// testkit starts a throwaway server on a free loopback port inside the test process.
const TEST_SERVER_VARIABLES: [&str; 4] = [
    "STORAGE_TEST_REDIS_URL",
    "STORAGE_TEST_REDIS_CLUSTER_URLS",
    "STORAGE_TEST_POSTGRES_URL",
    "STORAGE_TEST_S3_URL",
];

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.into_string())
        .collect();
    let Ok(args) = args else {
        eprintln!("xtask: arguments must be valid UTF-8");
        return ExitCode::from(2);
    };
    let task = match cli::parse(&args) {
        Ok(task) => task,
        Err(err) => {
            eprintln!("xtask: {err}\nRun `cargo xtask --help` for the tasks.");
            return ExitCode::from(2);
        }
    };
    match run_task(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xtask: {failure}");
            ExitCode::FAILURE
        }
    }
}

fn run_task(task: Task) -> Result<(), StepFailed> {
    match task {
        Task::Help => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Task::Test { cargo_args } => test(&cargo_args),
        Task::Bench {
            backend,
            bench_args,
        } if backend == cli::PYTHON_BENCH => python::bench(&bench_args),
        Task::Bench {
            backend,
            bench_args,
        } => Step::cargo("bench", cli::cargo_bench_args(&backend, &bench_args)).run(),
        Task::Lint => lint(),
        Task::Ci => {
            eprintln!("== ci: lint ==");
            lint()?;
            eprintln!("== ci: test ==");
            test(&[])
        }
    }
}

/// Formatting, lints and rustdoc, each with warnings as errors; stops at the first failure.
fn lint() -> Result<(), StepFailed> {
    Step::cargo("fmt", strings(&["fmt", "--all", "--", "--check"])).run()?;
    Step::cargo(
        "clippy",
        strings(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )
    .run()?;
    Step::cargo("doc", strings(&["doc", "--workspace", "--no-deps"]))
        .env("RUSTDOCFLAGS", "-D warnings")
        .run()
}

/// Runs the tests (cargo's, then the Python package's when the run covers it) and prints
/// `test: N passed, M failed[, K skipped]` over both, whatever the outcome.
fn test(extra_args: &[String]) -> Result<(), StepFailed> {
    if let Some(build) = cli::storectl_build_args(extra_args) {
        Step::cargo("build storectl", build).run()?;
    }
    let step = Step::cargo("test", cli::cargo_test_args(extra_args));
    let (mut summary, result) = step.run_tests(prepare_test_environment);
    let python = cli::runs_python_tests(extra_args);
    // `-p storage-py` alone selects no libtest harness (its tests are pytest's).
    if result.is_ok() && summary.runs == 0 && !python {
        // No test binary reported anything: a filter matched no target, or output was lost.
        eprintln!("xtask: warning: `{}` reported no test results", step.name());
    }
    // The Python tests run after the cargo tests, even failed ones, so the summary is whole.
    let python_result = if python {
        let (python, python_result) = python::test();
        eprintln!("xtask: python {python}");
        if python_result.is_ok() && python.runs == 0 {
            eprintln!("xtask: warning: pytest reported no test results");
        }
        summary.add(python);
        python_result
    } else {
        Ok(())
    };
    println!("{summary}");
    result.and(python_result)
}

/// Prepares the environment every test process starts with.
///
/// The test servers are the testkit's business: a `STORAGE_TEST_*` variable set here or by the
/// caller wins, otherwise each test process starts throwaway servers on free loopback ports.
/// Anything the whole test run needs beforehand belongs in this function.
fn prepare_test_environment(_command: &mut Command) {
    let given: Vec<&str> = TEST_SERVER_VARIABLES
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
        .collect();
    // Names only: the URLs may carry passwords.
    if given.is_empty() {
        eprintln!("xtask: test servers: none given; the testkit starts throwaway servers");
    } else {
        eprintln!(
            "xtask: test servers: using {} from the environment; the testkit starts any other",
            given.join(", ")
        );
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

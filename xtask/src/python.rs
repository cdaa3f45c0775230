//! The Python package's tests: a venv under the target directory, the extension built into
//! it by maturin, then pytest, counted into the run's summary.

use std::path::{Path, PathBuf};

use crate::run::{workspace_root, Step, StepFailed};
use crate::summary::TestSummary;

/// The crate holding the Python package.
const CRATE: &str = "crates/storage-py";

/// Where the test venv lives: beside the build output, so `cargo clean` removes it too.
fn venv_dir() -> PathBuf {
    target_dir().join("py-venv")
}

fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    if target.is_absolute() {
        target
    } else {
        workspace_root().join(target)
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Creates the venv and installs `requirements` (a file of the crate) when they changed
/// since the last run (a copy of the file marks what is installed), so repeated runs spend
/// no time in pip.
fn prepare_venv(venv: &Path, requirements: &str) -> Result<PathBuf, StepFailed> {
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        Step::program(
            "python venv",
            "python3",
            vec!["-m".into(), "venv".into(), path_arg(venv)],
        )
        .run()?;
    }
    let requirements = workspace_root().join(CRATE).join(requirements);
    let installed = venv.join("requirements-installed.txt");
    let wanted = std::fs::read(&requirements).unwrap_or_default();
    if std::fs::read(&installed).ok().as_ref() != Some(&wanted) {
        pip_install(
            &python,
            "pip install",
            &["-r".into(), path_arg(&requirements)],
        )?;
        // Only a marker: failing to write it costs the next run a pip check, nothing more.
        let _ = std::fs::write(&installed, &wanted);
    }
    Ok(python)
}

/// `python -m pip install --quiet <args>`, as the step `name`.
fn pip_install(python: &Path, name: &str, args: &[String]) -> Result<(), StepFailed> {
    let mut command = vec![
        "-m".into(),
        "pip".into(),
        "install".into(),
        "--quiet".into(),
        "--disable-pip-version-check".into(),
    ];
    command.extend(args.iter().cloned());
    Step::program(name, python, command).run()
}

/// Builds the extension into the venv, then runs pytest. Returns pytest's counts whether or
/// not it failed.
///
/// Debug, not release: the tests wait on I/O, and a release build of the whole dependency
/// tree would cost minutes more. With `redis` and `postgres`, so the tests (LangGraph's
/// conformance suite included) also run against throwaway servers (those crates are built
/// for the cargo tests already).
pub fn test() -> (TestSummary, Result<(), StepFailed>) {
    let venv = venv_dir();
    let python = match prepare_venv(&venv, "requirements-dev.txt") {
        Ok(python) => python,
        Err(failed) => return (TestSummary::default(), Err(failed)),
    };
    let bin = venv.join("bin");
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths),
        ),
    )
    .unwrap_or_default();
    let build = Step::program(
        "maturin develop",
        bin.join("maturin"),
        vec![
            "develop".into(),
            "--quiet".into(),
            "--features".into(),
            "redis,postgres".into(),
            "--manifest-path".into(),
            format!("{CRATE}/Cargo.toml"),
        ],
    )
    .env("VIRTUAL_ENV", &path_arg(&venv));
    if let Err(failed) = build.run() {
        return (TestSummary::default(), Err(failed));
    }
    let pytest = Step::program(
        "pytest",
        &python,
        vec![
            "-m".into(),
            "pytest".into(),
            format!("{CRATE}/tests"),
            "-q".into(),
            // Every skip with its reason: a skipped test must never pass for a run one.
            "-rs".into(),
            "-p".into(),
            "no:cacheprovider".into(),
        ],
    );
    pytest.run_counting(
        |command| {
            command.env("PATH", &path).env("VIRTUAL_ENV", &venv);
        },
        TestSummary::add_pytest_line,
    )
}

/// `cargo xtask bench python [args]`: LangGraph's workload from Python, this package
/// against LangGraph's own savers. A release wheel (the figures are meant to be quoted) is
/// built and installed into its own venv, `target/py-bench`, beside LangGraph's savers.
pub fn bench(args: &[String]) -> Result<(), StepFailed> {
    let venv = target_dir().join("py-bench");
    let python = prepare_venv(&venv, "requirements-bench.txt")?;
    let wheels = venv.join("wheels");
    // Only the wheel built now may be installed: a failed removal shows up below.
    let _ = std::fs::remove_dir_all(&wheels);
    Step::program(
        "maturin build",
        venv.join("bin").join("maturin"),
        vec![
            "build".into(),
            "--release".into(),
            "--quiet".into(),
            "--features".into(),
            "redis,postgres".into(),
            "--manifest-path".into(),
            format!("{CRATE}/Cargo.toml"),
            "--out".into(),
            path_arg(&wheels),
        ],
    )
    .run()?;
    let wheel = std::fs::read_dir(&wheels)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        })
        .ok_or_else(|| StepFailed {
            step: "maturin build".into(),
            reason: format!("no wheel in {}", wheels.display()),
        })?;
    pip_install(
        &python,
        "pip install wheel",
        &[
            "--force-reinstall".into(),
            "--no-deps".into(),
            path_arg(&wheel),
        ],
    )?;
    let script = workspace_root().join(CRATE).join("bench/langgraph_peer.py");
    let mut bench_args = vec![path_arg(&script)];
    bench_args.extend(args.iter().cloned());
    Step::program("langgraph_peer.py", &python, bench_args).run()
}

//! Running one step: print the command, run it from the workspace root, report failure by name.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::summary::{LineSplitter, TestSummary};

/// One command of a task, with the name a failure report uses.
#[derive(Debug)]
pub struct Step {
    name: String,
    program: OsString,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Step {
    /// A cargo invocation, named `name` in failure reports.
    pub fn cargo(name: impl Into<String>, args: Vec<String>) -> Self {
        Self::program(name, cargo_program(), args)
    }

    /// Any other program (the Python steps), run from the workspace root like cargo.
    pub fn program(
        name: impl Into<String>,
        program: impl Into<OsString>,
        args: Vec<String>,
    ) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for this step only; it is shown in the printed command.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The step's name in failure reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .current_dir(workspace_root());
        command
    }

    fn announce(&self) {
        eprintln!("$ {self}");
    }

    fn failed(&self, reason: impl Into<String>) -> StepFailed {
        StepFailed {
            step: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Runs the step with inherited output.
    pub fn run(&self) -> Result<(), StepFailed> {
        self.announce();
        let status = self
            .command()
            .status()
            .map_err(|err| self.failed(format!("cannot start {}: {err}", self.program_name())))?;
        self.check(status)
    }

    /// Runs a `cargo test` step, streaming its standard output to ours while counting results.
    ///
    /// `configure` adds the test environment to the command (kept out of the printed command).
    /// The summary is returned whether or not the step failed, so it can always be printed.
    pub fn run_tests(
        &self,
        configure: impl FnOnce(&mut Command),
    ) -> (TestSummary, Result<(), StepFailed>) {
        self.run_counting(configure, TestSummary::add_line)
    }

    /// Runs a test step whose result lines `count` recognises (libtest's or pytest's),
    /// streaming its standard output to ours.
    pub fn run_counting(
        &self,
        configure: impl FnOnce(&mut Command),
        count: fn(&mut TestSummary, &str) -> bool,
    ) -> (TestSummary, Result<(), StepFailed>) {
        let mut command = self.command();
        command.stdout(Stdio::piped());
        configure(&mut command);
        let mut summary = TestSummary::default();
        let result = self.stream_tests(command, &mut summary, count);
        (summary, result)
    }

    fn stream_tests(
        &self,
        mut command: Command,
        summary: &mut TestSummary,
        count: fn(&mut TestSummary, &str) -> bool,
    ) -> Result<(), StepFailed> {
        self.announce();
        let mut child = command
            .spawn()
            .map_err(|err| self.failed(format!("cannot start {}: {err}", self.program_name())))?;
        let mut output = child.stdout.take().expect("stdout is piped");
        let mut splitter = LineSplitter::default();
        let mut stdout = io::stdout().lock();
        let mut buffer = [0_u8; 8192];
        let mut ends_with_newline = true;
        loop {
            let read = match output.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.failed(format!("cannot read the test output: {err}")));
                }
            };
            let chunk = &buffer[..read];
            // A closed terminal must not stop the tests; their exit status still decides.
            let _ = stdout.write_all(chunk).and_then(|()| stdout.flush());
            ends_with_newline = chunk.ends_with(b"\n");
            splitter.feed(chunk, |line| {
                count(summary, line);
            });
        }
        splitter.finish(|line| {
            count(summary, line);
        });
        if !ends_with_newline {
            let _ = writeln!(stdout);
        }
        drop(stdout);
        let status = child.wait().map_err(|err| {
            self.failed(format!("cannot wait for {}: {err}", self.program_name()))
        })?;
        self.check(status).map_err(|mut failure| {
            if summary.failed == 0 {
                failure.reason.push_str(
                    " without a failing test reported (a build error, or a test binary that crashed)",
                );
            }
            failure
        })
    }

    fn check(&self, status: ExitStatus) -> Result<(), StepFailed> {
        if status.success() {
            Ok(())
        } else {
            Err(self.failed(format!("`{self}` ended with {status}")))
        }
    }

    fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

impl fmt::Display for Step {
    /// The command as a shell would take it, e.g. `RUSTDOCFLAGS="-D warnings" cargo doc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{key}={} ", shell_quote(value))?;
        }
        let program = Path::new(&self.program);
        // `cargo` rather than the full path the `cargo xtask` alias passes in $CARGO.
        if self.program == cargo_program() {
            f.write_str("cargo")?;
        } else {
            f.write_str(&shell_quote(&program.to_string_lossy()))?;
        }
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// A step that did not succeed.
#[derive(Debug)]
pub struct StepFailed {
    /// The failed step's name.
    pub step: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step `{}` failed: {}", self.step, self.reason)
    }
}

/// Cargo as the `cargo xtask` alias ran it, so every step uses the same toolchain.
fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace root, so tasks behave the same from any directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Quotes an argument for display when a shell would otherwise split or expand it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        let mut quoted = String::with_capacity(arg.len() + 2);
        quoted.push('"');
        for c in arg.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_print_as_a_shell_would_take_them() {
        let step = Step::cargo(
            "doc",
            vec!["doc".into(), "--workspace".into(), "--no-deps".into()],
        )
        .env("RUSTDOCFLAGS", "-D warnings");
        assert_eq!(
            step.to_string(),
            r#"RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps"#
        );
        let step = Step::cargo(
            "test",
            vec!["test".into(), "a b".into(), String::new(), r#"$x"y"#.into()],
        );
        assert_eq!(step.to_string(), r#"cargo test "a b" "" "\$x\"y""#);
    }

    #[test]
    fn failures_name_the_step() {
        let failure = Step::cargo("clippy", vec![]).failed("exit status: 101");
        assert_eq!(
            failure.to_string(),
            "step `clippy` failed: exit status: 101"
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("xtask").join("Cargo.toml").is_file());
    }
}

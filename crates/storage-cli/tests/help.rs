//! The binary starts and prints its usage. The full-stack tests of `storectl` (against real
//! servers) are in the workspace's top-level `tests/` (package `storage-tests`); this test
//! also makes `cargo test --workspace` build the `storectl` binary they run.

use std::process::Command;

#[test]
fn help_exits_zero_and_names_the_commands() {
    let output = Command::new(env!("CARGO_BIN_EXE_storectl"))
        .arg("--help")
        .output()
        .expect("storectl runs");
    assert!(output.status.success(), "{output:?}");
    let usage = String::from_utf8_lossy(&output.stdout);
    for command in ["health", "migrate", "bench"] {
        assert!(usage.contains(command), "{command} missing from:\n{usage}");
    }
}

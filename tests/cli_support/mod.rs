//! Where the `storectl` binary is: these tests live outside its package, so cargo's
//! `CARGO_BIN_EXE_storectl` is not set for them.

use std::path::PathBuf;

/// The `storectl` binary of the same build as this test: `target/<profile>/storectl`, the
/// parent of the `deps` directory the test executable runs from. Panics, saying how to
/// build it, when it is missing.
pub fn storectl_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| {
            panic!(
                "the test executable {} is not in a cargo `deps` directory; cannot find storectl next to it",
                exe.display()
            )
        });
    let path = profile_dir.join(format!("storectl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: these tests run the storectl binary of the same build. Build it with \
         `cargo build -p storage-cli --features s3` (add `--release` for a release test run), \
         or run the tests with `cargo xtask test`, which builds it first",
        path.display()
    );
    path
}

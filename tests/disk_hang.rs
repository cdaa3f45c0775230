//! The embedded default on a disk that stops answering: an ext4 image mounted on a loop
//! device for the test and frozen with fsfreeze(8), so that every write to it blocks in
//! the kernel until it is thawed, as on a stalled network volume. The machine's root may
//! do this (nothing else is needed).
//!
//! Once a write is held by the frozen disk, later calls fail with a temporary `Timeout` at
//! their deadlines instead of hanging their callers, also calls from a thread that would
//! run them in place (a `block_on`, the Python package's sync calls), which the disk would
//! hold past any deadline: before `engine::stall`, a read from this test's thread that
//! had to update SQLite's shared memory was held until the disk thawed. Once thawed, the
//! same open store takes writes again; every write acknowledged before or after reads back
//! once, and a write that timed out is stored at most once (its outcome was unknown).
//! Then the same with every kind on the local directory, whose file calls run on tokio's
//! blocking threads.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod disk_support;

use storage::config::BackendName;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;
use storage_core::{ErrorKind, NewMessage};

/// An ext4 file system on a loop device, mounted on a fresh directory; thawed and unmounted
/// when dropped (also when a test panics while it is frozen).
struct Ext4 {
    mount_point: tempfile::TempDir,
    _image: tempfile::TempDir,
}

/// What mounting and freezing an image takes.
const NEEDS: &str = "root (loop devices, mount, fsfreeze) and e2fsprogs";

fn run(program: &str, args: &[&str]) {
    disk_support::run(program, args, NEEDS);
}

impl Ext4 {
    fn mount() -> Ext4 {
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("disk.ext4");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let image = image.to_str().unwrap();
        run("mkfs.ext4", &["-q", "-F", image]);
        let mount_point = tempfile::tempdir().unwrap();
        run(
            "mount",
            &["-o", "loop", image, mount_point.path().to_str().unwrap()],
        );
        Ext4 {
            mount_point,
            _image: image_dir,
        }
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// Freezes the file system; a thread thaws it after a minute whatever happens, so that
    /// a thread held by it (this test's, if the code under test regresses) cannot hang the
    /// run for good.
    fn freeze(&self) {
        let path = self.path().to_owned();
        run("fsfreeze", &["--freeze", path.to_str().unwrap()]);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            let _ = Command::new("fsfreeze")
                .arg("--unfreeze")
                .arg(&path)
                .status();
        });
    }

    fn thaw(&self) {
        run("fsfreeze", &["--unfreeze", self.path().to_str().unwrap()]);
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let path = self.mount_point.path();
        // Not frozen any more, as a rule: fsfreeze's complaint would only be noise.
        let _ = Command::new("fsfreeze")
            .arg("--unfreeze")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status();
        disk_support::unmount(path);
    }
}

fn config(backend: BackendName, dir: &Path) -> StorageConfig {
    let mut config = disk_support::config_on(backend, dir);
    config.timeouts.read_ms = 1_000;
    config.timeouts.write_ms = 1_000;
    // One attempt per call: each refusal then takes one deadline, not three.
    config.retry.max_attempts = 1;
    config
}

fn message(n: usize) -> NewMessage {
    NewMessage::new("user", format!("m{n:04}")).with_client_id(format!("c{n:04}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_disk_times_writes_out_and_loses_nothing() {
    frozen_disk_under(BackendName::Sqlite).await;
}

/// The same with every kind on the local directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_local_directory_times_writes_out_and_loses_nothing() {
    frozen_disk_under(BackendName::Object).await;
}

async fn frozen_disk_under(backend: BackendName) {
    let disk = Ext4::mount();
    let config = config(backend, disk.path());
    let storage = std::sync::Arc::new(Storage::from_config(config).unwrap());
    storage.initialize().await.unwrap();
    let mut acked = Vec::new();
    for n in 0..20 {
        storage.append_message("s1", message(n)).await.unwrap();
        acked.push(format!("m{n:04}"));
    }
    assert_eq!(
        storage
            .get_conversation_history("s1", 100)
            .await
            .unwrap()
            .len(),
        20
    );
    // One more commit after that read: the next read must then record in SQLite's shared
    // memory file how far it reads, and writing that page waits for the frozen disk.
    storage.append_message("s1", message(20)).await.unwrap();
    acked.push(format!("m{:04}", 20));

    disk.freeze();
    // A task's write goes to the writer thread, which the disk now holds: the caller's
    // deadline ends its wait.
    let task = storage.clone();
    let started = Instant::now();
    let first = tokio::spawn(async move { task.append_message("s1", message(21)).await });
    let err = first.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_temporary(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut maybe = vec![format!("m{:04}", 21)];

    // Then calls from this thread, which runs work in place where it may (as a `block_on`
    // or the Python package's sync calls do): held by the disk they would outlive every
    // deadline. Each answers within its deadline instead, whatever it answers.
    for n in 22..24 {
        let started = Instant::now();
        let result = storage.append_message("s1", message(n)).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "a write held for {took:?}");
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        maybe.push(format!("m{n:04}"));
        let started = Instant::now();
        let read = storage.get_conversation_history("s1", 100).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "a read held for {took:?}");
        if let Err(err) = read {
            assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        }
    }
    disk.thaw();

    // The same open store serves again; nothing acknowledged is lost, nothing doubled.
    for n in 24..30 {
        storage.append_message("s1", message(n)).await.unwrap();
        acked.push(format!("m{n:04}"));
    }
    let history = storage.get_conversation_history("s1", 100).await.unwrap();
    let contents: Vec<String> = history
        .iter()
        .map(|m| m.content.as_str().unwrap().to_owned())
        .collect();
    for content in &acked {
        let stored = contents.iter().filter(|c| *c == content).count();
        assert_eq!(stored, 1, "{content}");
    }
    for content in &maybe {
        let stored = contents.iter().filter(|c| *c == content).count();
        assert!(stored <= 1, "{content}");
    }
    storage.close().await.unwrap();
}

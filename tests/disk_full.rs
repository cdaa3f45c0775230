//! The embedded default on a disk that fills up: SQLite for sessions, conversations,
//! checkpoints and contexts, the local directory for artifacts, both on a small tmpfs
//! mounted for the test (the machine's root may mount; nothing else is needed). Then every
//! kind on the local directory, and the failover journal.
//!
//! Writes go on until every kind has been refused for lack of space. A refused write is a
//! temporary `Backend` error that says the disk is full (the local directory's was a
//! permanent one before this test), leaves no staging file behind, and every write
//! acknowledged before it reads back exactly, while the disk is full too; once the file
//! system grows, the same open store takes writes again, and a store opened afresh reads
//! everything acknowledged.

use std::path::{Path, PathBuf};

mod disk_support;

use disk_support::config_on;
use serde_json::json;
use storage::config::BackendName;
use storage::Storage;
use storage_core::prelude::*;
use storage_core::{ErrorKind, NewArtifact, NewMessage, StorageError};
use storage_testkit::data::{filled_checkpoint, filler};

/// A tmpfs of a given size mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

/// What mounting a tmpfs takes.
const NEEDS: &str = "root (or CAP_SYS_ADMIN)";

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let options = format!("size={size}");
        let point = dir.path().to_str().unwrap();
        disk_support::run(
            "mount",
            &["-t", "tmpfs", "-o", &options, "tmpfs", point],
            NEEDS,
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let options = format!("remount,size={size}");
        let point = self.path().to_str().unwrap();
        disk_support::run("mount", &["-o", &options, point], NEEDS);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        disk_support::unmount(self.dir.path());
    }
}

/// What was acknowledged.
#[derive(Default)]
struct Acked {
    messages: Vec<String>,
    checkpoints: Vec<String>,
    artifacts: Vec<String>,
}

/// Asserts a refused write says what happened and invites a retry.
fn assert_disk_full(what: &str, err: &StorageError) {
    assert_eq!(err.kind(), ErrorKind::Backend, "{what}: {err}");
    assert!(
        err.is_temporary(),
        "{what}: a full disk is temporary: {err}"
    );
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("full") || text.contains("no space"),
        "{what}: {err}"
    );
}

async fn write_until_refused(storage: &Storage, acked: &mut Acked) {
    let mut refused = [false; 3];
    let mut n = acked.messages.len() + acked.checkpoints.len() + acked.artifacts.len();
    while refused.contains(&false) {
        n += 1;
        assert!(n < 100_000, "the disk never filled");
        let content = filler(n, 1_000);
        match storage
            .append_message("s1", NewMessage::new("user", content.as_str()))
            .await
        {
            Ok(_) => acked.messages.push(content),
            Err(err) => {
                assert_disk_full("append_message", &err);
                refused[0] = true;
            }
        }
        let cp = filled_checkpoint(n);
        let new = cp.all_versions();
        let id = cp.id.clone();
        match storage.put_checkpoint(cp, new).await {
            Ok(()) => acked.checkpoints.push(id),
            Err(err) => {
                assert_disk_full("put_checkpoint", &err);
                refused[1] = true;
            }
        }
        let name = format!("a{n:08}");
        let data = filler(n, 8_000);
        match storage
            .save_artifact("run", &name, NewArtifact::new("text/plain", data))
            .await
        {
            Ok(_) => acked.artifacts.push(name),
            Err(err) => {
                assert_disk_full("save_artifact", &err);
                refused[2] = true;
            }
        }
    }
}

async fn assert_all_read(storage: &Storage, acked: &Acked) {
    let history = storage
        .get_conversation_history("s1", acked.messages.len() + 10)
        .await
        .unwrap();
    let contents: Vec<String> = history
        .iter()
        .map(|m| m.content.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, acked.messages);
    for id in &acked.checkpoints {
        let tuple = storage.get_checkpoint("t", "", Some(id)).await.unwrap();
        let tuple = tuple.unwrap_or_else(|| panic!("checkpoint {id} acknowledged, then lost"));
        let n: usize = id[3..].parse().unwrap();
        assert_eq!(
            tuple.checkpoint.channel_values["state"],
            json!(filler(n, 2_000)).into()
        );
    }
    for name in &acked.artifacts {
        let artifact = storage.get_artifact("run", name, None).await.unwrap();
        let artifact =
            artifact.unwrap_or_else(|| panic!("artifact {name} acknowledged, then lost"));
        let n: usize = name[1..].parse().unwrap();
        assert_eq!(artifact.data, filler(n, 8_000).as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers() {
    full_disk_on(BackendName::Sqlite).await;
}

/// The same with every kind on the local directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_directory_refuses_writes_loses_nothing_and_recovers() {
    full_disk_on(BackendName::Object).await;
}

async fn full_disk_on(backend: BackendName) {
    let config = |dir: &Path| config_on(backend, dir);
    let disk = Tmpfs::mount("3m");
    let storage = Storage::from_config(config(disk.path())).unwrap();
    storage.initialize().await.unwrap();
    let mut acked = Acked::default();

    write_until_refused(&storage, &mut acked).await;
    assert!(
        [&acked.messages, &acked.checkpoints, &acked.artifacts]
            .iter()
            .all(|kind| !kind.is_empty()),
        "each kind stored something before the disk filled"
    );
    assert_all_read(&storage, &acked).await;
    // A refused file write gives its room back: no staging file is left.
    let staged = staging_files(&disk.path().join("objects"));
    assert!(staged.is_empty(), "{staged:?}");

    // More room: the same open store writes again, and reads what it had.
    disk.resize("64m");
    write_until_refused_none(&storage, &mut acked).await;
    assert_all_read(&storage, &acked).await;
    storage.close().await.unwrap();

    let reopened = Storage::from_config(config(disk.path())).unwrap();
    reopened.initialize().await.unwrap();
    assert_all_read(&reopened, &acked).await;
    reopened.close().await.unwrap();
}

/// A few more writes of each kind, every one acknowledged.
async fn write_until_refused_none(storage: &Storage, acked: &mut Acked) {
    let start = acked.messages.len() + acked.checkpoints.len() + acked.artifacts.len() + 1_000;
    for n in start..start + 20 {
        let content = filler(n, 1_000);
        storage
            .append_message("s1", NewMessage::new("user", content.as_str()))
            .await
            .unwrap();
        acked.messages.push(content);
        let cp = filled_checkpoint(n);
        let new = cp.all_versions();
        let id = cp.id.clone();
        storage.put_checkpoint(cp, new).await.unwrap();
        acked.checkpoints.push(id);
        let name = format!("a{n:08}");
        storage
            .save_artifact(
                "run",
                &name,
                NewArtifact::new("text/plain", filler(n, 8_000)),
            )
            .await
            .unwrap();
        acked.artifacts.push(name);
    }
}

fn staging_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else if entry.file_name().to_string_lossy().contains('#') {
                found.push(entry.path());
            }
        }
    }
    found
}

/// The failover journal on a disk that fills: an append refused for lack of room is a
/// temporary error and leaves nothing of itself in the journal (no torn line for the next
/// append to be glued to), so the journal holds exactly the acknowledged writes, in order,
/// before and after the file system grows and after it is opened again.
#[test]
fn a_full_journal_holds_exactly_the_acknowledged_writes() {
    use storage::failover::Journal;
    use storage_core::Call;

    let disk = Tmpfs::mount("64k");
    let dir = disk.path().join("journal");
    let journal = Journal::open(&dir).unwrap();
    let call = |n: usize| Call::AppendMessage {
        session_id: "s1".into(),
        // Lines of ~700 bytes, which pages of 4,096 do not divide: the room runs out in
        // the middle of one.
        message: NewMessage::new("user", filler(n, 680).as_str()),
    };
    let mut acked = Vec::new();
    let mut refused = 0;
    for n in 0..1_000 {
        match journal.append(&call(n)) {
            Ok(()) => acked.push(n),
            Err(err) => {
                assert_disk_full("journal append", &err);
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 5, "the disk never filled");
    disk.resize("1m");
    for n in 1_000..1_010 {
        journal.append(&call(n)).unwrap();
        acked.push(n);
    }
    let contents = |journal: &Journal| -> Vec<usize> {
        journal
            .unreplayed()
            .unwrap()
            .into_iter()
            .map(|(_, call)| match call {
                Call::AppendMessage { message, .. } => {
                    message.content.as_str().unwrap()[..8].parse().unwrap()
                }
                other => panic!("not journaled: {other:?}"),
            })
            .collect()
    };
    assert_eq!(contents(&journal), acked);
    assert_eq!(journal.pending(), acked.len() as u64);
    drop(journal);
    let reopened = Journal::open(&dir).unwrap();
    assert_eq!(contents(&reopened), acked);
}

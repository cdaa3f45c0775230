//! What the checkpoint-removal tests share: a backend and a raw connection on one file, and
//! chains of checkpoints whose values tell which step stored them.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use storage_core::{ChannelVersions, Checkpoint, StorageBackend};
use storage_sqlite::{SqliteBackend, SqliteConfig};
use storage_testkit::data::{checkpoint, cp_id, versions};

/// A backend on `path`, namespace `ns`, initialized (migrated to the latest version).
pub async fn backend(path: &Path, ns: &str) -> Arc<dyn StorageBackend> {
    let b = SqliteBackend::new(SqliteConfig::new(path).with_namespace(ns)).unwrap();
    b.initialize().await.unwrap();
    Arc::new(b)
}

/// A raw connection of the test's own, as another process would have.
pub fn connection(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

/// Checkpoint `n` of `thread` (namespace "") naming `channels` as (channel, version), each
/// value the version's own name.
pub fn numbered(thread: &str, n: u32, channels: &[(&str, &str)]) -> Checkpoint {
    let channels: Vec<(&str, &str, Value)> = channels
        .iter()
        .map(|(channel, version)| (*channel, *version, json!(version)))
        .collect();
    checkpoint(thread, "", &cp_id(n), &channels)
}

/// Checkpoint `n` of a chain where `a` changes at every step and `s` (stored by 1) never.
pub fn chained(thread: &str, n: u32) -> (Checkpoint, ChannelVersions) {
    let a = format!("a{n}");
    let cp = numbered(thread, n, &[("a", &a), ("s", "s1")]);
    let new = if n == 1 {
        versions(&[("a", &a), ("s", "s1")])
    } else {
        versions(&[("a", &a)])
    };
    (cp, new)
}

/// Puts checkpoints `numbers` of `thread`'s chain, one by one.
pub async fn put_chain(
    b: &Arc<dyn StorageBackend>,
    thread: &str,
    numbers: std::ops::RangeInclusive<u32>,
) {
    for n in numbers {
        let (cp, new) = chained(thread, n);
        b.put_checkpoint(cp, new).await.unwrap();
    }
}

//! What the stored counts (V4's triggers) cost appends and saves: two namespaces at the
//! current schema, one with the count triggers dropped (an append or save as the previous
//! release ran it), timed alternately round by round; the medians per operation are
//! printed. Run by hand:
//! `cargo test -p storage-sqlite --release --test stored_counts_cost -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use serde_json::json;
use storage_core::prelude::*;
use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

const ROUNDS: usize = 15;
const OPS: u32 = 100;

async fn backend(path: &std::path::Path, counted: bool) -> SqliteBackend {
    let b = SqliteBackend::new(SqliteConfig::new(path)).unwrap();
    b.initialize().await.unwrap();
    if !counted {
        let conn = rusqlite::Connection::open(path).unwrap();
        for trigger in [
            "messages_stored_insert",
            "messages_stored_delete",
            "artifacts_stored_insert",
            "artifacts_stored_delete",
        ] {
            conn.execute_batch(&format!("DROP TRIGGER \"storage.{trigger}\""))
                .unwrap();
        }
    }
    b
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn appends_and_saves_with_and_without_counts() {
    let dir = tempfile::tempdir().unwrap();
    let both = [
        (
            "without counts",
            backend(&dir.path().join("uncounted.db"), false).await,
        ),
        (
            "with counts",
            backend(&dir.path().join("counted.db"), true).await,
        ),
    ];
    let mut times = vec![[Vec::new(), Vec::new(), Vec::new()]; 2];
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always runs on a warmer server.
        for turn in 0..2 {
            let i = (round + turn) % 2;
            let b = &both[i].1;
            let start = Instant::now();
            for n in 0..OPS {
                b.append_message("s1", NewMessage::new("user", json!(n)))
                    .await
                    .unwrap();
            }
            times[i][0].push(start.elapsed() / OPS);
            let start = Instant::now();
            for n in 0..OPS / 10 {
                let batch = (0..10)
                    .map(|k| NewMessage::new("user", json!([n, k])))
                    .collect();
                b.append_messages("s2", batch).await.unwrap();
            }
            times[i][1].push(start.elapsed() / (OPS / 10));
            let start = Instant::now();
            for n in 0..OPS {
                let body = format!("v{n}").into_bytes();
                b.save_artifact("run", "a", NewArtifact::new("text/plain", body))
                    .await
                    .unwrap();
            }
            times[i][2].push(start.elapsed() / OPS);
        }
    }
    for (i, (label, _)) in both.iter().enumerate() {
        let [append, batch, save] = times[i].clone();
        println!(
            "sqlite {label}: append {:?}, batch of 10 {:?}, save {:?} (medians of {ROUNDS} rounds)",
            median(append),
            median(batch),
            median(save)
        );
    }
}

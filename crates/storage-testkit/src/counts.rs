//! Stored counts: the SQL backends keep, per conversation and per artifact name, how many
//! records the series stores, and retention's `keep_last` trusts it to remove exactly the
//! oldest `stored - keep_last`. These scenarios drive every path that adds or removes
//! messages and artifact versions, with a backend-specific `check` comparing the counts
//! with the rows after each step, and sweep data a previous release stored without counts.

use serde_json::json;
use storage_core::fork::{Fork, ForkExt};
use storage_core::prelude::*;
use storage_core::{wire, ArtifactMeta, MessageRange, StorageBackend};

use crate::data::keep_last;

fn text(body: &str) -> NewArtifact {
    NewArtifact::new("text/plain", body.as_bytes().to_vec())
}

async fn sequences(b: &dyn StorageBackend, session_id: &str) -> Vec<u64> {
    b.get_messages(session_id, MessageRange::after(0, 1000))
        .await
        .unwrap()
        .iter()
        .map(|m| m.sequence)
        .collect()
}

async fn versions(b: &dyn StorageBackend, scope: &str, name: &str) -> Vec<u64> {
    b.list_artifact_versions(scope, name)
        .await
        .unwrap()
        .iter()
        .map(|meta| meta.version)
        .collect()
}

/// Every path that stores or removes messages or artifact versions, each followed by
/// `check(step)`, which must compare the backend's counts with its rows.
pub async fn every_path(b: &dyn StorageBackend, check: impl AsyncFn(&'static str)) {
    b.create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    for i in 0..6 {
        b.append_message(
            "s1",
            NewMessage::new("user", json!(i)).with_client_id(format!("c{i}")),
        )
        .await
        .unwrap();
    }
    check("append").await;
    // One of the batch is stored already: it takes no number and adds no row.
    let batch = vec![
        NewMessage::new("user", json!("b1")),
        NewMessage::new("user", json!("again")).with_client_id("c0"),
        NewMessage::new("user", json!("b2")),
    ];
    b.append_messages("s1", batch).await.unwrap();
    check("batch append").await;
    b.compact_conversation("s1", 3, NewMessage::new("system", json!("1-3")), true)
        .await
        .unwrap();
    check("compaction keeping what it replaced").await;
    b.compact_conversation("s1", 5, NewMessage::new("system", json!("..5")), false)
        .await
        .unwrap();
    check("compaction dropping what it replaced").await;
    assert_eq!(sequences(b, "s1").await, vec![5, 6, 7, 8]);
    b.pop_last_message("s1").await.unwrap().unwrap();
    check("pop").await;
    for i in 0..4 {
        b.append_message("s1", NewMessage::new("user", json!(i)))
            .await
            .unwrap();
    }
    assert_eq!(b.rewind_conversation("s1", 9).await.unwrap(), 3);
    check("rewind").await;

    let plain: Vec<_> = b
        .get_messages("s1", MessageRange::after(0, 100))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.compacted.is_none())
        .map(|mut m| {
            m.session_id = "s2".to_owned();
            m
        })
        .collect();
    assert_eq!(b.import_messages("s2", plain.clone()).await.unwrap(), 3);
    assert_eq!(b.import_messages("s2", plain).await.unwrap(), 0);
    check("import").await;
    b.fork_session(Fork {
        source_session: "s1".into(),
        new_session: "s3".into(),
        at_sequence: 7,
        thread: None,
    })
    .await
    .unwrap();
    assert_eq!(sequences(b, "s3").await, vec![5, 6, 7]);
    check("fork").await;
    assert_eq!(b.retain_messages(keep_last(2)).await.unwrap(), 2 + 1 + 1);
    check("retention").await;
    // A second sweep trusts the counts the first one left.
    assert_eq!(b.retain_messages(keep_last(1)).await.unwrap(), 3);
    assert_eq!(sequences(b, "s1").await, vec![9]);
    check("retention again").await;
    b.clear_conversation("s2").await.unwrap();
    check("clear").await;
    assert!(b.delete_session("s3").await.unwrap());
    check("session removal").await;
    b.append_message("s2", NewMessage::new("user", json!("after clear")))
        .await
        .unwrap();
    check("append after clear").await;

    for i in 0..5 {
        b.save_artifact("run1", "a", text(&format!("a{i}")))
            .await
            .unwrap();
    }
    b.save_artifact("run1", "b", text("b0")).await.unwrap();
    check("save").await;
    assert_eq!(b.delete_artifact("run1", "a", Some(1)).await.unwrap(), 1);
    check("delete one version").await;
    assert_eq!(b.retain_artifact_versions(keep_last(2)).await.unwrap(), 2);
    assert_eq!(versions(b, "run1", "a").await, vec![3, 4]);
    check("artifact retention").await;
    for version in [0, 3, 4] {
        let Some(mut artifact) = b.get_artifact("run1", "a", Some(version)).await.unwrap() else {
            continue;
        };
        artifact.meta.scope = "run2".to_owned();
        b.import_artifact(artifact.clone()).await.unwrap();
        // Stored already: nothing changes.
        assert!(!b.import_artifact(artifact).await.unwrap());
    }
    check("artifact import").await;
    assert_eq!(b.retain_artifact_versions(keep_last(1)).await.unwrap(), 2);
    check("artifact retention again").await;
    assert_eq!(b.delete_artifact("run1", "b", None).await.unwrap(), 1);
    check("delete every version").await;
    b.save_artifact("run1", "b", text("b again")).await.unwrap();
    check("save after delete").await;
    b.clear_artifacts("run2").await.unwrap();
    check("clear artifacts").await;
}

/// The metadata record of an artifact version as every release encoded it.
pub fn artifact_meta_record(scope: &str, name: &str, version: u64) -> Vec<u8> {
    let meta = ArtifactMeta {
        scope: scope.to_owned(),
        name: name.to_owned(),
        version,
        content_type: "text/plain".to_owned(),
        size: 1,
        sha256: storage_core::artifact::sha256_hex(b"x"),
        metadata: Default::default(),
        created_at: storage_core::time::now(),
    };
    wire::encode(&meta).unwrap()
}

/// What the previous release stored, without counts: conversations `s1` (messages 1-5)
/// and `s2` (1-2), artifact versions 0-3 of `run1/a` and 0 of `run1/b` (each content
/// `x`, metadata from [`artifact_meta_record`]). Sweeps by count remove exactly the oldest
/// beyond `keep_last`, and later ones keep counting right.
pub async fn previous_release_swept_by_count(b: &dyn StorageBackend) {
    assert_eq!(b.retain_messages(keep_last(3)).await.unwrap(), 2);
    assert_eq!(sequences(b, "s1").await, vec![3, 4, 5]);
    assert_eq!(sequences(b, "s2").await, vec![1, 2]);
    b.append_message("s1", NewMessage::new("user", json!("new")))
        .await
        .unwrap();
    assert_eq!(b.retain_messages(keep_last(3)).await.unwrap(), 1);
    assert_eq!(sequences(b, "s1").await, vec![4, 5, 6]);

    assert_eq!(b.retain_artifact_versions(keep_last(2)).await.unwrap(), 2);
    assert_eq!(versions(b, "run1", "a").await, vec![2, 3]);
    assert_eq!(versions(b, "run1", "b").await, vec![0]);
    b.save_artifact("run1", "a", text("new")).await.unwrap();
    assert_eq!(b.retain_artifact_versions(keep_last(2)).await.unwrap(), 1);
    assert_eq!(versions(b, "run1", "a").await, vec![3, 4]);
}

/// Times appends, batches of 10 appends and saves on `without` and `with` the counts,
/// alternating which goes first round by round, and prints the medians per operation
/// (labelled with `backend`): the backends' `stored_counts_cost` measurements.
pub async fn time_writes_with_and_without_counts(
    backend: &str,
    without: &dyn StorageBackend,
    with: &dyn StorageBackend,
) {
    use std::time::{Duration, Instant};
    const ROUNDS: usize = 15;
    const OPS: u32 = 100;
    let median = |mut xs: Vec<Duration>| {
        xs.sort();
        xs[xs.len() / 2]
    };
    let both = [("without counts", without), ("with counts", with)];
    let mut times = vec![[Vec::new(), Vec::new(), Vec::new()]; 2];
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always runs on a warmer server.
        for turn in 0..2 {
            let i = (round + turn) % 2;
            let b = both[i].1;
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
            "{backend} {label}: append {:?}, batch of 10 {:?}, save {:?} (medians of {ROUNDS} rounds)",
            median(append),
            median(batch),
            median(save)
        );
    }
}

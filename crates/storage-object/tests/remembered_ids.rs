//! The newest checkpoint ids a process remembers (`src/recent.rs`) only choose where a
//! listing starts: a process that remembers answers get-latest and newest-page reads
//! exactly as one that remembers nothing, for long ids (several path segments), several
//! namespaces with equal ids, on local files and in memory, after other processes' puts,
//! prunes and run deletions.

use serde_json::json;
use storage_core::{ChannelVersions, Checkpoint, CheckpointQuery, CheckpointStore, StorageBackend};
use storage_object::{ObjectBackend, ObjectConfig};

async fn open(url: &str) -> ObjectBackend {
    let b = ObjectBackend::new(ObjectConfig::new(url.to_owned()).with_namespace("rv")).unwrap();
    b.initialize().await.unwrap();
    b
}

async fn put(b: &ObjectBackend, ns: &str, id: &str) {
    let mut cp = Checkpoint::new("t", ns, id);
    let version = format!(
        "v{}",
        id.len() * 1000 + id.bytes().map(usize::from).sum::<usize>()
    );
    cp.channel_versions.insert("a".into(), version.clone());
    cp.channel_values.insert("a".into(), json!(id).into());
    let mut new = ChannelVersions::new();
    new.insert("a".into(), version);
    b.put_checkpoint(cp, new).await.unwrap();
}

fn q(ns: Option<&str>, limit: usize) -> CheckpointQuery {
    CheckpointQuery {
        thread_id: "t".into(),
        namespace: ns.map(str::to_owned),
        limit: Some(limit),
        ..CheckpointQuery::default()
    }
}

async fn answers(b: &ObjectBackend) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    for ns in [None, Some(""), Some("n")] {
        for limit in [1, 2, 3, 5, 10, 16] {
            let got = b.list_checkpoints(q(ns, limit)).await.unwrap();
            out.push(
                got.iter()
                    .map(|t| (t.checkpoint.namespace.clone(), t.checkpoint.id.clone()))
                    .collect(),
            );
        }
    }
    for ns in ["", "n"] {
        let latest = b.get_checkpoint("t", ns, None).await.unwrap();
        out.push(
            latest
                .map(|t| vec![(ns.to_owned(), t.checkpoint.id)])
                .unwrap_or_default(),
        );
    }
    out
}

async fn check(url: &str) {
    let full: String = "p".repeat(63);
    let ids: Vec<String> = vec![
        format!("{}", "p".repeat(62)),
        format!("{full}-"),
        format!("{full}."),
        format!("{full}a"),
        format!("{full}{full}x"),
        format!("{full}z"),
        "q".into(),
        "p".into(),
        format!("{full}b"),
        "o".repeat(100),
    ];
    let ours = open(url).await;
    let theirs = open(url).await;
    for (i, id) in ids.iter().enumerate() {
        put(&ours, "", id).await;
        if i % 2 == 0 {
            put(&ours, "n", id).await;
        }
    }
    // Ours remembers (a full listing), then reads with the hint.
    let cold = answers(&open(url).await).await;
    let _ = answers(&ours).await;
    assert_eq!(answers(&ours).await, cold, "after the first reads");
    // Another process adds and deletes.
    for id in [
        format!("{full}c"),
        format!("{full}{full}{full}"),
        "r".into(),
    ] {
        put(&theirs, "", &id).await;
        put(&theirs, "n", &id).await;
    }
    let cold = answers(&open(url).await).await;
    assert_eq!(answers(&ours).await, cold, "after another process's puts");
    theirs.prune_checkpoints("t", 4).await.unwrap();
    let cold = answers(&open(url).await).await;
    assert_eq!(answers(&ours).await, cold, "after another process's prune");
    for id in ["s", "o", "n"] {
        put(&ours, "", id).await;
    }
    let cold = answers(&open(url).await).await;
    assert_eq!(answers(&ours).await, cold, "after our puts");
}

#[tokio::test]
async fn local_files() {
    let dir = tempfile::tempdir().unwrap();
    check(&format!("file://{}", dir.path().display())).await;
}

#[tokio::test]
async fn memory() {
    check("memory://remembered-ids").await;
}

/// Another process removes the second newest of a remembered chain: the newest three are
/// then the newest, the third and the fourth (the boundary `above.len() + 1 < limit`).
#[tokio::test]
async fn a_page_after_another_process_removed_one_of_its_ids() {
    let url = "memory://remembered-boundary";
    let ours = open(url).await;
    let theirs = open(url).await;
    for n in 1..=12 {
        let mut cp = Checkpoint::new("t", "", format!("cp-{n:02}"));
        cp.metadata.insert("run_id".into(), json!(format!("r{n}")));
        ours.put_checkpoint(cp, ChannelVersions::new())
            .await
            .unwrap();
    }
    let ids = |tuples: Vec<storage_core::CheckpointTuple>| -> Vec<String> {
        tuples.into_iter().map(|t| t.checkpoint.id).collect()
    };
    assert_eq!(
        ids(ours.list_checkpoints(q(Some(""), 3)).await.unwrap()),
        ["cp-12", "cp-11", "cp-10"]
    );
    assert_eq!(theirs.delete_for_runs(&["r11".into()]).await.unwrap(), 1);
    assert_eq!(
        ids(ours.list_checkpoints(q(Some(""), 3)).await.unwrap()),
        ["cp-12", "cp-10", "cp-09"]
    );
}

//! Thread ids and checkpoint namespaces of 63 bytes or more take several path segments,
//! and ids that share their first 63 bytes share their first segment. Retention, prune and
//! listings enumerate threads and namespaces with delimiter listings (so that the cost
//! follows the number of series, not what they hold); every namespace and thread of such
//! a family must still be found, on a local directory (no listing order) and in memory
//! (key order).

use serde_json::json;
use storage_core::{
    ChannelVersions, Checkpoint, CheckpointQuery, CheckpointStore, Retention, StorageBackend,
};
use storage_object::{ObjectBackend, ObjectConfig};

fn family(stem: char) -> Vec<String> {
    let full: String = std::iter::repeat_n(stem, 63).collect();
    vec![
        String::new(),
        format!("{stem}"),
        full.clone(),
        format!("{full}a"),
        format!("{full}b"),
        format!("{full}{full}{full}"),
    ]
}

async fn check(b: &ObjectBackend) {
    let threads: Vec<String> = family('t').into_iter().filter(|t| !t.is_empty()).collect();
    let namespaces = family('n');
    for thread in &threads {
        for ns in &namespaces {
            for n in 1..=3 {
                let mut cp = Checkpoint::new(thread.as_str(), ns.as_str(), format!("cp-{n}"));
                cp.channel_versions.insert("a".into(), n.to_string());
                cp.channel_values.insert("a".into(), json!(n).into());
                let mut new = ChannelVersions::new();
                new.insert("a".into(), n.to_string());
                b.put_checkpoint(cp, new).await.unwrap();
            }
        }
    }
    for thread in &threads {
        let every_namespace = CheckpointQuery {
            namespace: None,
            ..CheckpointQuery::thread(thread.as_str())
        };
        let all = b.list_checkpoints(every_namespace).await.unwrap();
        assert_eq!(
            all.len(),
            3 * namespaces.len(),
            "thread of {} bytes",
            thread.len()
        );
    }
    // Age only first (the ordered path on memory), then a count.
    let age = Retention {
        created_before: Some(storage_core::time::now() + std::time::Duration::from_secs(60)),
        keep_last: None,
    };
    let per_series = (threads.len() * namespaces.len()) as u64;
    assert_eq!(b.retain_checkpoints(age).await.unwrap(), 2 * per_series);
    for thread in &threads {
        for ns in &namespaces {
            let query = CheckpointQuery {
                namespace: Some(ns.clone()),
                ..CheckpointQuery::thread(thread.as_str())
            };
            let left = b.list_checkpoints(query).await.unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].checkpoint.id, "cp-3");
            assert_eq!(left[0].checkpoint.channel_values["a"], json!(3).into());
        }
    }
    for thread in &threads {
        let mut cp = Checkpoint::new(thread.as_str(), "", "cp-4");
        cp.channel_versions.insert("a".into(), "3".into());
        b.put_checkpoint(cp, ChannelVersions::new()).await.unwrap();
    }
    let count = Retention {
        created_before: None,
        keep_last: Some(1),
    };
    assert_eq!(
        b.retain_checkpoints(count).await.unwrap(),
        threads.len() as u64
    );
    // Pending writes of a checkpoint id of 63 bytes and of one that continues it.
    let ids = family('c');
    for id in &ids[2..4] {
        let key = storage_core::CheckpointKey::new("w", id.as_str());
        let value = json!(id.len());
        b.put_writes(key, "task", "", vec![("ch".into(), value.into())])
            .await
            .unwrap();
    }
    for id in &ids[2..4] {
        let key = storage_core::CheckpointKey::new("w", id.as_str());
        let writes = b.get_writes(key).await.unwrap();
        assert_eq!(writes.len(), 1, "checkpoint id of {} bytes", id.len());
    }
    assert_eq!(b.delete_thread("w").await.unwrap(), 0);
    // Threads in the order that once let a thread's deletion take its longer namesakes.
    for thread in &threads {
        assert_eq!(
            b.delete_thread(thread).await.unwrap(),
            namespaces.len() as u64
        );
    }
}

#[tokio::test]
async fn long_ids_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("long")).unwrap();
    b.initialize().await.unwrap();
    check(&b).await;
}

#[tokio::test]
async fn long_ids_in_memory() {
    let url = format!("memory://long-ids-{}", std::process::id());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("long")).unwrap();
    b.initialize().await.unwrap();
    check(&b).await;
}

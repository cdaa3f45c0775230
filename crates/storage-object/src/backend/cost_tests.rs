//! What a checkpoint retention sweep lists and reads, counted on an in-memory store
//! (which, like S3, lists in key order): the records it reads are those it removes (plus
//! the one that ends an age prefix), never the survivors, and an age-only sweep stops
//! listing a chain's keys a batch past the first young record.

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use storage_core::{ChannelVersions, Checkpoint, CheckpointStore, Retention};

use super::counting_store::Counting;
use super::ObjectBackend;

/// A chain of `len` checkpoints in thread `t` whose first `old` are an hour old; each
/// writes its own value of `a`, and all share the value of `s` the first wrote.
async fn chain(len: usize, old: usize) -> (ObjectBackend, Arc<Counting>) {
    let store = Arc::new(Counting::new(Arc::new(InMemory::new())));
    let b = ObjectBackend::over(store.clone(), "cost");
    for n in 0..len {
        let mut cp = Checkpoint::new("t", "", format!("cp-{n:06}"));
        if n < old {
            cp.created_at = (storage_core::time::now() - Duration::from_secs(3600)).into();
        }
        let mut new = ChannelVersions::new();
        for (channel, version) in [("a", n), ("s", 0)] {
            cp.channel_versions
                .insert(channel.into(), version.to_string());
            if channel == "a" || n == 0 {
                cp.channel_values
                    .insert(channel.into(), serde_json::json!(n).into());
                new.insert(channel.into(), version.to_string());
            }
        }
        b.put_checkpoint(cp, new).await.unwrap();
    }
    store.take();
    (b, store)
}

#[tokio::test]
async fn an_age_sweep_reads_and_lists_in_proportion_to_what_it_removes() {
    let (b, store) = chain(300, 10).await;
    let age = Retention {
        created_before: Some(storage_core::time::now() - Duration::from_secs(1800)),
        keep_last: None,
    };
    assert_eq!(b.retain_checkpoints(age).await.unwrap(), 10);
    let (reads, record_keys, keys) = store.checkpoint_records();
    assert!(reads <= 10 + 16, "{reads} records read");
    assert!(
        record_keys <= 10 + 2 * 16,
        "{record_keys} record keys listed"
    );
    assert!(keys <= 10 + 2 * 16 + 4, "{keys} keys listed in all");
    let left = b
        .list_checkpoints(storage_core::CheckpointQuery::thread("t"))
        .await
        .unwrap();
    assert_eq!(left.len(), 290);
    assert_eq!(left.last().unwrap().checkpoint.channel_values.len(), 2);
}

#[tokio::test]
async fn a_count_sweep_reads_only_what_it_removes() {
    let (b, store) = chain(300, 0).await;
    let count = Retention {
        created_before: None,
        keep_last: Some(280),
    };
    assert_eq!(b.retain_checkpoints(count).await.unwrap(), 20);
    let (reads, record_keys, keys) = store.checkpoint_records();
    assert_eq!(reads, 20, "records read");
    // A count needs every record key of the chain, and nothing else listed.
    assert_eq!(record_keys, 300);
    assert!(keys <= 300 + 4, "{keys} keys listed in all");
    let oldest = b
        .get_checkpoint("t", "", Some("cp-000020"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(oldest.checkpoint.channel_values.len(), 2, "`s` is kept");
    // Markers written in the same millisecond as the collection are not yet older.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = b.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.checkpoint_values, 20, "a0..a19");
}

/// The ids of a newest-first read.
fn ids_of(tuples: &[storage_core::CheckpointTuple]) -> Vec<String> {
    tuples.iter().map(|t| t.checkpoint.id.clone()).collect()
}

fn newest(limit: usize) -> storage_core::CheckpointQuery {
    storage_core::CheckpointQuery {
        limit: Some(limit),
        ..storage_core::CheckpointQuery::thread("t")
    }
}

#[tokio::test]
async fn latest_and_newest_ten_list_only_ids_above_those_remembered() {
    let (b, store) = chain(300, 0).await;
    // The first read of the chain lists it whole and remembers its newest ids.
    b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    store.take();
    let latest = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, "cp-000299");
    assert_eq!(
        store.checkpoint_records(),
        (1, 0, 0),
        "one record read, nothing listed"
    );

    store.take();
    let page = b.list_checkpoints(newest(10)).await.unwrap();
    let expected: Vec<String> = (290..300).rev().map(|n| format!("cp-{n:06}")).collect();
    assert_eq!(ids_of(&page), expected);
    let (reads, record_keys, _) = store.checkpoint_records();
    assert_eq!(
        (reads, record_keys),
        (10, 9),
        "the ten read, the nine above the tenth listed"
    );
}

/// Another process's checkpoints of run `run` with these numbers.
async fn put_run(theirs: &ObjectBackend, run: &str, numbers: std::ops::Range<usize>) {
    for n in numbers {
        let mut cp = Checkpoint::new("t", "", format!("cp-{n:06}"));
        cp.metadata.insert("run_id".into(), serde_json::json!(run));
        theirs
            .put_checkpoint(cp, ChannelVersions::new())
            .await
            .unwrap();
    }
}

fn numbered(numbers: impl Iterator<Item = usize>) -> Vec<String> {
    numbers.map(|n| format!("cp-{n:06}")).collect()
}

#[tokio::test]
async fn what_other_processes_put_or_delete_is_seen_by_a_remembered_chain() {
    let (ours, store) = chain(30, 0).await;
    let theirs = ObjectBackend::over(store.clone(), "cost");
    assert_eq!(
        ids_of(&ours.list_checkpoints(newest(10)).await.unwrap()).len(),
        10
    );

    // Newer checkpoints put elsewhere are found by the listing above the remembered ids.
    put_run(&theirs, "r1", 30..33).await;
    let latest = ours.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, "cp-000032");
    let page = ids_of(&ours.list_checkpoints(newest(10)).await.unwrap());
    assert_eq!(page, numbered((23..33).rev()));

    // Removed elsewhere, the remembered newest ids are gone: too few are found above the
    // tenth, and the list falls back to a full listing.
    theirs.delete_for_runs(&["r1".into()]).await.unwrap();
    let page = ids_of(&ours.list_checkpoints(newest(10)).await.unwrap());
    assert_eq!(page, numbered((20..30).rev()));

    // The remembered latest is gone: its record is missing, and the get lists all.
    put_run(&theirs, "r2", 40..41).await;
    let latest = ours.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, "cp-000040");
    theirs.delete_for_runs(&["r2".into()]).await.unwrap();
    let latest = ours.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, "cp-000029");

    // Older ones pruned elsewhere: the tenth remembered is kept, then it is not.
    theirs.prune_checkpoints("t", 10).await.unwrap();
    let page = ids_of(&ours.list_checkpoints(newest(10)).await.unwrap());
    assert_eq!(page, numbered((20..30).rev()));
    theirs.prune_checkpoints("t", 5).await.unwrap();
    let page = ids_of(&ours.list_checkpoints(newest(10)).await.unwrap());
    assert_eq!(page, numbered((25..30).rev()));
}

/// The newest messages of a conversation appended in large batches are read from the
/// slots that hold them, which the head names: no probing down, one missing key at a
/// time, for the start of a batch (that cost a GET per message of the batch below the
/// one read: 960 for the last 40 of a batch of 1,000). Batches appended by a process that
/// did not note their starts are still found by probing.
#[tokio::test]
async fn the_newest_messages_of_a_large_batch_cost_a_few_requests() {
    use storage_core::{ConversationStore, NewMessage};
    let store = Arc::new(Counting::new(Arc::new(InMemory::new())));
    let b = ObjectBackend::over(store.clone(), "cost");
    for batch in 0..3u64 {
        let messages = (0..1_000)
            .map(|n| NewMessage::new("user", serde_json::json!(batch * 1_000 + n)))
            .collect();
        b.append_messages("s", messages).await.unwrap();
    }
    store.take();
    let newest = b.get_conversation_history("s", 40).await.unwrap();
    assert_eq!(newest.len(), 40);
    assert_eq!(newest[0].sequence, 2_961);
    assert_eq!(newest[39].content, serde_json::json!(2_999));
    let cost = store.take();
    // The head, the key past its last slot, and the slot holding the 40.
    assert!(cost.gets <= 3, "{cost:?}");
    // Across two batches: the tail of one and the head of the next, from their slots.
    let across = b
        .get_messages("s", storage_core::MessageRange::after(1_989, 21))
        .await
        .unwrap();
    assert_eq!(
        across.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        (1_990..=2_010).collect::<Vec<_>>()
    );
    assert!(store.take().gets <= 4);

    // A head written by an earlier release names no slot start: reads still find every
    // message, by probing.
    let cell = b.keys().conversation_head("s");
    let mut head: super::conversation_head::Head = b.read_cell(&cell).await.unwrap().unwrap();
    head.slot_starts.clear();
    let (_, token) = b.objects().cell_read(&cell).await.unwrap().unwrap();
    assert!(b.write_head("s", Some(&token), &head).await.unwrap());
    let probed = b.get_conversation_history("s", 40).await.unwrap();
    assert_eq!(probed, newest);
}

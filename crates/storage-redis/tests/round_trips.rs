//! Issue 15: every checkpoint read costs one round trip, whatever the history length and
//! however many namespaces the thread has: get (latest or by id, with values and pending
//! writes), list (one namespace or all, with a filter) and the delta channel history.
//!
//! Counted on a server of this test's own with `INFO stats`' `total_reads_processed`: the
//! server reads a client's socket once per request it is sent (a pipeline or a script call
//! alike), and commands a script runs inside the server read nothing. The previous release
//! took 2 requests for a get (the record, then a pipeline of its values and writes) and
//! 2 + 2 per namespace for a list of every namespace.

use deadpool_redis::redis;
use serde_json::json;
use storage_core::{CheckpointKey, CheckpointQuery, CheckpointStore, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{checkpoint, cp_id, obj, versions};
use storage_testkit::servers::redis::RedisServer;

/// The server's count of requests read and of `PING`s served.
async fn counters(b: &RedisBackend) -> (u64, u64) {
    let info: String = b
        .raw_query(redis::cmd("INFO").arg("stats").arg("commandstats"))
        .await
        .unwrap();
    let reads = info
        .lines()
        .find_map(|line| line.strip_prefix("total_reads_processed:"))
        .expect("INFO stats names total_reads_processed")
        .trim()
        .parse()
        .unwrap();
    let pings = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_ping:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap());
    (reads, pings)
}

/// The requests `op` sends, less the `PING` the pool sends to check a connection before
/// lending it (every operation has it, ours and raw alike) and the `INFO` of the count.
async fn round_trips<F: std::future::Future>(b: &RedisBackend, op: F) -> u64 {
    let (reads, pings) = counters(b).await;
    op.await;
    let (reads_after, pings_after) = counters(b).await;
    (reads_after - reads) - (pings_after - pings) - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_checkpoint_read_is_one_round_trip() {
    let server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_namespace("rt")).unwrap();
    b.initialize().await.unwrap();
    let namespaces = ["", "sub", "sub|inner"];
    for ns in namespaces {
        for n in 1..=30u32 {
            let id = cp_id(n);
            // "a" changes every tenth step, "b" never, "c" every step; "d" is a delta
            // channel: a value every tenth step, writes in between.
            let a = if n < 10 { 1 } else { n / 10 * 10 }.to_string();
            let step = n.to_string();
            let mut channels = vec![
                ("a", a.as_str(), json!({ "a": a })),
                ("b", "1", json!("constant")),
                ("c", step.as_str(), json!([n, ns])),
            ];
            if n % 10 == 0 {
                channels.push(("d", step.as_str(), json!(n)));
            }
            let mut cp = checkpoint("t", ns, &id, &channels);
            cp.parent_id = (n > 1).then(|| cp_id(n - 1));
            let source = if n % 2 == 0 { "loop" } else { "input" };
            cp.metadata = obj(json!({ "step": n, "source": source }));
            let mut new = versions(&[("c", &step)]);
            if n == 1 || n % 10 == 0 {
                new.insert("a".into(), a.clone());
                new.insert("b".into(), "1".into());
            }
            if n % 10 == 0 {
                new.insert("d".into(), step.clone());
            }
            b.put_checkpoint(cp, new).await.unwrap();
            let key = CheckpointKey::new("t", &id).in_namespace(ns);
            b.put_writes(key, "task", "", vec![("d".into(), json!(n).into())])
                .await
                .unwrap();
        }
    }
    // Checked here so a count of one is not a count of an empty answer.
    let latest = b.get_checkpoint("t", "sub", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.channel_values.len(), 4);
    assert_eq!(latest.checkpoint.id, cp_id(30));
    assert_eq!(latest.pending_writes.len(), 1);
    let all = CheckpointQuery {
        namespace: None,
        limit: Some(10),
        ..CheckpointQuery::thread("t")
    };
    assert_eq!(b.list_checkpoints(all.clone()).await.unwrap().len(), 10);
    let filtered = CheckpointQuery {
        filter: obj(json!({ "source": "loop" })),
        before: Some(cp_id(20)),
        ..all.clone()
    };
    let found = b.list_checkpoints(filtered.clone()).await.unwrap();
    assert_eq!(found.len(), 10);
    assert!(found.iter().all(|t| t.checkpoint.channel_values.len() >= 3));
    let key = CheckpointKey::new("t", cp_id(25));
    let history = b
        .delta_channel_history(key.clone(), vec!["d".into(), "b".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history["d"].seed_checkpoint_id, Some(cp_id(20)));
    assert_eq!(history["b"].seed_checkpoint_id, Some(cp_id(24)));
    assert_eq!(history["d"].writes.len(), 5);

    let seventh = cp_id(7);
    let by_id = b.get_checkpoint("t", "", Some(&seventh));
    assert_eq!(round_trips(&b, by_id).await, 1, "get by id");
    let latest = b.get_checkpoint("t", "sub", None);
    assert_eq!(round_trips(&b, latest).await, 1, "get latest");
    let one_namespace = b.list_checkpoints(CheckpointQuery {
        limit: Some(10),
        ..CheckpointQuery::thread("t")
    });
    assert_eq!(
        round_trips(&b, one_namespace).await,
        1,
        "list one namespace"
    );
    assert_eq!(
        round_trips(&b, b.list_checkpoints(all)).await,
        1,
        "list every namespace"
    );
    assert_eq!(
        round_trips(&b, b.list_checkpoints(filtered)).await,
        1,
        "list with a filter"
    );
    let history = b.delta_channel_history(key, vec!["d".into(), "b".into()]);
    assert_eq!(round_trips(&b, history).await, 1, "delta channel history");
}

/// A batch of checkpoint puts (what group commit sends) is one pipeline of the put script
/// and one of run-index writes, whatever the number of puts and threads; one call per put
/// took two requests each (its script, then its run index). Every put is stored, in the
/// batch's order: an id put twice keeps its second put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_checkpoint_puts_is_one_round_trip_and_its_run_index_another() {
    let server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_namespace("batch")).unwrap();
    b.initialize().await.unwrap();
    let put = |thread: &str, n: u32, run: &str| {
        let step = n.to_string();
        let mut cp = checkpoint(thread, "", &cp_id(n), &[("c", &step, json!([thread, n]))]);
        cp.metadata = obj(json!({ "run_id": run, "step": n }));
        (cp, versions(&[("c", &step)]))
    };
    // About 10 KB on the wire (the script's ~4 KB source with the first put, ~0.7 KB per
    // put after it): inside one 16 KB read of the server, so the count is one request.
    let mut batch: Vec<_> = (1..=8u32)
        .map(|n| put(&format!("t{}", n % 4), n, "first"))
        .collect();
    // The same id again, later in the batch: stored as this second put.
    batch.push(put("t1", 5, "second"));
    assert_eq!(round_trips(&b, b.put_checkpoints(batch)).await, 2);

    for n in 1..=8u32 {
        let thread = format!("t{}", n % 4);
        let stored = b
            .get_checkpoint(&thread, "", Some(&cp_id(n)))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("put {n} of {thread} is stored"));
        assert_eq!(
            stored.checkpoint.channel_values["c"],
            json!([thread, n]).into()
        );
        let run = if n == 5 { "second" } else { "first" };
        assert_eq!(stored.checkpoint.metadata["run_id"], json!(run), "put {n}");
    }
    // The run index holds every put: deleting the first run removes the seven puts left
    // in it, and the second run's put stays.
    b.delete_for_runs(&["first".to_owned()]).await.unwrap();
    let left: usize = futures::future::join_all(
        (0..4).map(|t| b.list_checkpoints(CheckpointQuery::thread(format!("t{t}")))),
    )
    .await
    .into_iter()
    .map(|listed| listed.unwrap().len())
    .sum();
    assert_eq!(left, 1);

    // A server that lost its scripts (a restart, `SCRIPT FLUSH`) gets the script's source
    // with the batch's first put, and stores the batch.
    b.raw_query::<String>(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    let batch: Vec<_> = (20..=22u32).map(|n| put("t9", n, "third")).collect();
    b.put_checkpoints(batch).await.unwrap();
    let listed = b
        .list_checkpoints(CheckpointQuery::thread("t9"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
}

/// How many times the server ran `command` (from a client or a script).
async fn command_calls(b: &RedisBackend, command: &str) -> u64 {
    let info: String = b
        .raw_query(redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// A long thread is read in bounded pieces: a listing without a limit, or with a filter
/// that matches little, is several script calls of at most a few hundred records each
/// (one script holds the whole server while it runs), pages its id indexes by their last
/// id rather than by offset (a filtered `limit=1` used to page one id at a time, each
/// page walking the index from the top), and still returns exactly the thread's
/// checkpoints in order, ties across namespaces included; a history walk longer than the
/// script's budget is finished by the client with the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_threads_are_read_in_bounded_script_calls() {
    let server = RedisServer::start();
    let b = RedisBackend::new(RedisConfig::new(server.url()).with_namespace("long")).unwrap();
    b.initialize().await.unwrap();
    // Three namespaces holding the same ids, so pieces of 512 records end inside runs of
    // equal ids.
    let (namespaces, ids) = (["", "a", "b"], 700u32);
    for ns in namespaces {
        let puts: Vec<_> = (1..=ids)
            .map(|n| {
                let step = n.to_string();
                let mut cp = checkpoint("t", ns, &cp_id(n), &[("c", &step, json!(n))]);
                cp.parent_id = (n > 1).then(|| cp_id(n - 1));
                cp.metadata = obj(json!({ "source": "loop" }));
                (cp, versions(&[("c", &step)]))
            })
            .collect();
        for batch in puts.chunks(100) {
            b.put_checkpoints(batch.to_vec()).await.unwrap();
        }
    }
    let every = CheckpointQuery {
        namespace: None,
        ..CheckpointQuery::thread("t")
    };
    let listed = b.list_checkpoints(every.clone()).await.unwrap();
    let expected: Vec<(String, String)> = (1..=ids)
        .rev()
        .flat_map(|n| namespaces.map(|ns| (ns.to_owned(), cp_id(n))))
        .collect();
    let got: Vec<(String, String)> = listed
        .iter()
        .map(|t| (t.checkpoint.namespace.clone(), t.checkpoint.id.clone()))
        .collect();
    assert_eq!(
        got, expected,
        "every checkpoint once, newest first, ties by namespace"
    );
    assert!(listed
        .iter()
        .all(|t| t.checkpoint.channel_values["c"] == json!(cp_number(&t.checkpoint.id)).into()));
    let calls = round_trips(&b, b.list_checkpoints(every.clone())).await;
    assert!(
        (5..=6).contains(&calls),
        "2,100 records in pieces of at most 512: {calls} calls"
    );

    let nothing = CheckpointQuery {
        filter: obj(json!({ "source": "input" })),
        limit: Some(1),
        ..every
    };
    let zranges = command_calls(&b, "zrange").await;
    assert!(b.list_checkpoints(nothing).await.unwrap().is_empty());
    let paged = command_calls(&b, "zrange").await - zranges;
    assert!(
        paged <= 60,
        "index pages of 256 ids, not of one: {paged} ZRANGEs"
    );

    let key = CheckpointKey::new("t", cp_id(ids));
    let never_seeded = vec!["unknown".to_owned(), "c".to_owned()];
    let history = b
        .delta_channel_history(key.clone(), never_seeded.clone())
        .await
        .unwrap()
        .unwrap();
    let by_reads = storage_core::delta::walk_with_reads(&b, key.clone(), never_seeded.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history, by_reads);
    assert_eq!(history["unknown"].seed_checkpoint_id, None);
    let walk = b.delta_channel_history(key, never_seeded);
    assert!(
        round_trips(&b, walk).await > 1,
        "a walk of {ids} ancestors is not one script call"
    );
}

fn cp_number(id: &str) -> u32 {
    id.strip_prefix("cp-").unwrap().parse().unwrap()
}

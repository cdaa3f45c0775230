//! What the stored counts' triggers (V5's, on deletes) cost appends and saves: two
//! namespaces at the current schema, one with the triggers dropped, timed alternately
//! round by round; the medians per operation are printed. (Appends and saves count in
//! their counter upsert, which this does not separate; an insert trigger, measured here
//! before it was replaced by that, cost an append about 50 us.) Run by hand:
//! `cargo test -p storage-postgres --release --test stored_counts_cost -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use serde_json::json;
use storage_core::prelude::*;
use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

const ROUNDS: usize = 15;
const OPS: u32 = 100;

async fn backend(url: &str, namespace: &str, counted: bool) -> PostgresBackend {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {namespace} CASCADE"))
        .await
        .unwrap();
    let b =
        PostgresBackend::new(PostgresConfig::from_url(url.to_owned()).with_namespace(namespace))
            .unwrap();
    b.initialize().await.unwrap();
    if !counted {
        client
            .batch_execute(&format!(
                "SET search_path = {namespace};
                 DROP TRIGGER messages_stored_delete ON messages;
                 DROP TRIGGER artifacts_stored_delete ON artifacts;"
            ))
            .await
            .unwrap();
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
    let url = storage_testkit::servers::postgres::postgres_url();
    let both = [
        (
            "without counts",
            backend(&url, "t_cost_uncounted", false).await,
        ),
        ("with counts", backend(&url, "t_cost_counted", true).await),
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
            "postgres {label}: append {:?}, batch of 10 {:?}, save {:?} (medians of {ROUNDS} rounds)",
            median(append),
            median(batch),
            median(save)
        );
    }
}

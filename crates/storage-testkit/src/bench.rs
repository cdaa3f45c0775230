//! The shared benchmark workload: the same operations timed on every backend, so figures
//! compare across backends and against each backend's raw driver.
//!
//! A backend's bench target (`harness = false`) builds a backend and calls [`Workload::run`];
//! `cargo xtask bench <backend>` runs it. Figures are printed, never asserted: targets are
//! read off the output, not enforced by timed tests. The timing itself ([`measure`],
//! [`Measurement`]) lives in the `storage-bench` crate, which `storectl bench` uses too.

use std::sync::Arc;
use std::time::{Duration, Instant};
use storage_core::ext::TaskContextStoreExt;

use serde_json::json;
use storage_core::{
    Checkpoint, ExpectedVersion, NewArtifact, NewMessage, NewSession, SessionUpdate, StorageBackend,
};

pub use storage_bench::{measure, Measurement};

/// Sizes of the shared workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Operations per measured session/conversation/artifact row.
    pub ops: usize,
    /// Operations per measured checkpoint row.
    pub checkpoint_ops: usize,
    /// Conversation lengths at which history last-50 is measured.
    pub history_lengths: Vec<usize>,
    /// Concurrency levels each row is measured at.
    pub concurrency: Vec<usize>,
}

impl Workload {
    /// Reads `--ops N`, `--history 1000,100000` and `--concurrency 1,32` from the command
    /// line over the given defaults, ignoring what cargo's bench runner adds (`--bench`).
    pub fn from_args(mut self) -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = args.get(i + 1);
            let list = |v: Option<&String>| -> Vec<usize> {
                v.map(|v| {
                    v.split(',')
                        .map(|n| n.trim().parse().expect("a number"))
                        .collect()
                })
                .expect("a value after the flag")
            };
            match args[i].as_str() {
                "--ops" => {
                    self.ops = value.expect("--ops N").parse().expect("--ops N");
                    self.checkpoint_ops = self.ops.min(self.checkpoint_ops);
                    i += 1;
                }
                "--history" => {
                    self.history_lengths = list(value);
                    i += 1;
                }
                "--concurrency" => {
                    self.concurrency = list(value);
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        self
    }

    /// Runs every row of the workload on `backend`, printing each as it completes, and
    /// returns them all.
    pub async fn run(&self, backend: Arc<dyn StorageBackend>) -> Vec<Measurement> {
        println!("{}", Measurement::header());
        let mut rows = Vec::new();
        let mut report = |m: Measurement| {
            println!("{}", m.row());
            rows.push(m);
        };
        for &conc in &self.concurrency {
            let tag = format!("c{conc}");
            let b = backend.clone();
            let t = tag.clone();
            report(
                measure("create_session", conc, self.ops, move |i| {
                    let b = b.clone();
                    let id = format!("{t}-s{i}");
                    async move {
                        b.create_session(NewSession::new(id, "bench-user"))
                            .await
                            .unwrap();
                    }
                })
                .await,
            );
            let ids: Arc<Vec<String>> = Arc::new(
                (0..self.ops.min(1000))
                    .map(|i| format!("{tag}-s{i}"))
                    .collect(),
            );
            let b = backend.clone();
            let pool = ids.clone();
            report(
                measure("get_session", conc, self.ops, move |i| {
                    let b = b.clone();
                    let pool = pool.clone();
                    async move {
                        let id = &pool[i % pool.len()];
                        assert!(b.get_session(id).await.unwrap().is_some());
                    }
                })
                .await,
            );
            let b = backend.clone();
            let pool = ids.clone();
            report(
                measure("update_session", conc, self.ops, move |i| {
                    let b = b.clone();
                    let pool = pool.clone();
                    async move {
                        let update = SessionUpdate::default().request(3);
                        b.update_session(&pool[i % pool.len()], update)
                            .await
                            .unwrap();
                    }
                })
                .await,
            );
            let b = backend.clone();
            let pool = ids.clone();
            report(
                measure("append_message", conc, self.ops, move |i| {
                    let b = b.clone();
                    let pool = pool.clone();
                    async move {
                        let session = &pool[i % pool.len()];
                        let message = NewMessage::new(
                            "user",
                            json!({"text": "benchmark message body", "i": i}),
                        );
                        b.append_message(session, message).await.unwrap();
                    }
                })
                .await,
            );
            for &length in &self.history_lengths {
                let session = format!("{tag}-history-{length}");
                fill_conversation(backend.as_ref(), &session, length).await;
                let b = backend.clone();
                report(
                    measure(
                        &format!("history_last50@{length}"),
                        conc,
                        self.ops,
                        move |_| {
                            let b = b.clone();
                            let session = session.clone();
                            async move {
                                assert_eq!(
                                    b.get_conversation_history(&session, 50)
                                        .await
                                        .unwrap()
                                        .len(),
                                    50.min(length)
                                );
                            }
                        },
                    )
                    .await,
                );
            }
            let b = backend.clone();
            let t = tag.clone();
            report(
                measure("put_checkpoint_10ch", conc, self.checkpoint_ops, move |i| {
                    let b = b.clone();
                    let thread = format!("{t}-thread-{}", i % 64);
                    async move {
                        let (checkpoint, new_versions) = ten_channel_checkpoint(&thread, i);
                        b.put_checkpoint(checkpoint, new_versions).await.unwrap();
                    }
                })
                .await,
            );
            let b = backend.clone();
            let t = tag.clone();
            report(
                measure("get_checkpoint_10ch", conc, self.checkpoint_ops, move |i| {
                    let b = b.clone();
                    let thread = format!("{t}-thread-{}", i % 64);
                    async move {
                        let tuple = b.get_checkpoint(&thread, "", None).await.unwrap().unwrap();
                        assert_eq!(tuple.checkpoint.channel_values.len(), 10);
                    }
                })
                .await,
            );
            let b = backend.clone();
            let t = tag.clone();
            let kib = bytes::Bytes::from(vec![7u8; 1024]);
            report(
                measure("save_artifact_1KiB", conc, self.ops, move |i| {
                    let b = b.clone();
                    let scope = format!("{t}-scope");
                    let artifact = NewArtifact::new("application/octet-stream", kib.clone());
                    async move {
                        b.save_artifact(&scope, &format!("a{}", i % 256), artifact)
                            .await
                            .unwrap();
                    }
                })
                .await,
            );
            let b = backend.clone();
            report(
                measure("get_artifact_1KiB", conc, self.ops, move |i| {
                    let b = b.clone();
                    let scope = format!("{tag}-scope");
                    async move {
                        let artifact = b
                            .get_artifact(&scope, &format!("a{}", i % 256), None)
                            .await
                            .unwrap();
                        assert_eq!(artifact.unwrap().data.len(), 1024);
                    }
                })
                .await,
            );
            let b = backend.clone();
            report(
                measure("store_task_context", conc, self.ops, move |i| {
                    let b = b.clone();
                    async move {
                        let session = format!("ctx-{}", i % 1000);
                        b.store_task_context(&session, json!({"step": i}), ExpectedVersion::Any)
                            .await
                            .unwrap();
                    }
                })
                .await,
            );
        }
        rows
    }
}

/// Appends `length` messages to `session` in batches.
pub async fn fill_conversation(backend: &dyn StorageBackend, session: &str, length: usize) {
    let mut stored = 0;
    while stored < length {
        let batch = (stored..length.min(stored + 1000))
            .map(|i| NewMessage::new("user", json!({"text": "history filler message", "i": i})))
            .collect::<Vec<_>>();
        stored += batch.len();
        backend.append_messages(session, batch).await.unwrap();
    }
}

/// Step `i` of one of 64 threads with ten channels: a thread's first step (`i < 64`)
/// stores all ten values at version 0; every later step changes a single channel, as a
/// LangGraph node typically does, and stores only that value.
pub fn ten_channel_checkpoint(
    thread: &str,
    i: usize,
) -> (Checkpoint, storage_core::ChannelVersions) {
    let changed = (i >= 64).then_some(i % 10);
    let mut checkpoint = Checkpoint::new(thread, "", storage_core::new_checkpoint_id());
    for channel in 0..10 {
        let version = if changed == Some(channel) { i + 1 } else { 0 };
        checkpoint
            .channel_versions
            .insert(format!("ch{channel}"), format!("{version:08}"));
        checkpoint.channel_values.insert(
            format!("ch{channel}"),
            json!({"channel": channel, "step": version}).into(),
        );
    }
    checkpoint.metadata.insert("step".into(), json!(i));
    let mut new_versions = checkpoint.channel_versions.clone();
    if let Some(changed) = changed {
        let name = format!("ch{changed}");
        new_versions.retain(|channel, _| *channel == name);
    }
    (checkpoint, new_versions)
}

/// Prints `label: a/b = ratio` for two figures measured in the same run.
pub fn print_ratio(label: &str, ours: f64, raw: f64) {
    println!("{label}: {ours:.0} / {raw:.0} = {:.3}", ours / raw);
}

/// One benchmarked call, boxed so ours and the raw driver's can be passed alike.
pub type BenchOp = Arc<dyn Fn(usize) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Rounds in which the contenders alternate in [`interleaved`].
pub const INTERLEAVED_ROUNDS: usize = 10;

/// Measures each contender in alternating rounds after one untimed warm-up round of each,
/// so drift in a shared machine's load hits all of them alike; prints and returns one
/// combined row per contender, in the order given.
pub async fn interleaved(
    concurrency: usize,
    ops: usize,
    contenders: &[(String, BenchOp)],
) -> Vec<Measurement> {
    let per_round = (ops / INTERLEAVED_ROUNDS).max(1);
    let run = |op: &BenchOp, label: &str| {
        let (op, label) = (op.clone(), label.to_owned());
        async move { measure(&label, concurrency, per_round, move |i| op(i)).await }
    };
    for (_, op) in contenders {
        run(op, "warm-up").await;
    }
    let mut rounds: Vec<Vec<Measurement>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..INTERLEAVED_ROUNDS {
        for ((name, op), measured) in contenders.iter().zip(rounds.iter_mut()) {
            measured.push(run(op, name).await);
        }
    }
    let rows: Vec<Measurement> = rounds.into_iter().map(combine).collect();
    for row in &rows {
        println!("{}", row.row());
    }
    rows
}

/// Ours and raw called one after the other, one call each per turn, whoever goes first
/// swapping every turn: the load of a shared machine and the state of its disk (a writeback
/// burst, a journal commit) change from one call to the next, and taking turns call by call
/// puts ours and raw under the same conditions down to single calls, with neither always
/// first. Two untimed warm-up turns come first.
///
/// ```
/// use std::sync::Arc;
/// use storage_testkit::bench::{alternating_calls, BenchOp};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // In a bench, `ours` goes through the backend and `raw` makes the same driver calls.
/// let yield_once = || -> BenchOp { Arc::new(|_| Box::pin(tokio::task::yield_now())) };
/// let paired = alternating_calls("yield", yield_once(), yield_once(), 20).await;
/// assert_eq!((paired.ours.ops, paired.raw.ops, paired.turns.len()), (20, 20, 20));
/// paired.print("yield calls/s", |latency| 1.0 / latency.as_secs_f64());
/// # });
/// ```
pub async fn alternating_calls(name: &str, ours: BenchOp, raw: BenchOp, turns: usize) -> Paired {
    let time = |op: &BenchOp, i: usize| {
        let call = op(i);
        async move {
            let started = Instant::now();
            call.await;
            started.elapsed()
        }
    };
    for i in 0..2 {
        time(&ours, i).await;
        time(&raw, i).await;
    }
    let mut turns_timed = Vec::with_capacity(turns);
    for i in 0..turns {
        let (ours_took, raw_took) = if i % 2 == 0 {
            let ours_took = time(&ours, i).await;
            (ours_took, time(&raw, i).await)
        } else {
            let raw_took = time(&raw, i).await;
            (time(&ours, i).await, raw_took)
        };
        turns_timed.push((ours_took, raw_took));
    }
    let row = |name: &str, took: &dyn Fn(&(Duration, Duration)) -> Duration| {
        let latencies = turns_timed.iter().map(|turn| took(turn).as_nanos() as u64);
        let elapsed = turns_timed.iter().map(took).sum();
        Measurement::from_latencies(name, 1, latencies.collect(), elapsed)
    };
    Paired {
        ours: row(&format!("{name} (alternating)"), &|turn| turn.0),
        raw: row(&format!("raw_{name} (alternating)"), &|turn| turn.1),
        turns: turns_timed,
    }
}

/// What [`alternating_calls`] measured: a row each for ours and raw, and every turn's pair.
#[derive(Debug, Clone)]
pub struct Paired {
    /// Ours, over all turns.
    pub ours: Measurement,
    /// Raw, over all turns.
    pub raw: Measurement,
    /// Each turn's latencies, (ours, raw).
    pub turns: Vec<(Duration, Duration)>,
}

impl Paired {
    /// The median over turns of ours/raw of `figure` (a figure where higher is better, such
    /// as MiB/s, computed from one call's latency): every ratio compares two calls made
    /// back to back, so drift cancels out of each. NaN when no turn was timed.
    pub fn median_ratio(&self, figure: impl Fn(Duration) -> f64) -> f64 {
        if self.turns.is_empty() {
            return f64::NAN;
        }
        let mut ratios: Vec<f64> = self
            .turns
            .iter()
            .map(|&(ours, raw)| figure(ours) / figure(raw))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let middle = ratios.len() / 2;
        if ratios.len() % 2 == 1 {
            ratios[middle]
        } else {
            (ratios[middle - 1] + ratios[middle]) / 2.0
        }
    }

    /// Prints both rows, `figure` of each row's median call as ours/raw, and the median of
    /// the turns' ratios ([`Paired::median_ratio`]).
    pub fn print(&self, label: &str, figure: impl Fn(Duration) -> f64) {
        println!("{}\n{}", self.ours.row(), self.raw.row());
        print_ratio(
            &format!("{label} (median call) ours/raw"),
            figure(self.ours.p50),
            figure(self.raw.p50),
        );
        println!(
            "{label} ours/raw: median of {} turns' ratios {:.3}",
            self.turns.len(),
            self.median_ratio(figure)
        );
    }
}

/// Ours against the raw driver doing the identical work, interleaved; prints the ops/s
/// ratio and returns (ours, raw).
pub async fn compare_interleaved(
    name: &str,
    concurrency: usize,
    ops: usize,
    ours: BenchOp,
    raw: BenchOp,
) -> (Measurement, Measurement) {
    let contenders = [(name.to_owned(), ours), (format!("raw_{name}"), raw)];
    let mut rows = interleaved(concurrency, ops, &contenders).await.into_iter();
    let (ours, raw) = (rows.next().expect("ours"), rows.next().expect("raw"));
    print_ratio(
        &format!("{name} ops/s ours/raw, interleaved (c{concurrency})"),
        ours.ops_per_sec,
        raw.ops_per_sec,
    );
    (ours, raw)
}

/// Rounds as one row: total ops over total time; the median of the rounds' percentiles.
pub fn combine(mut rounds: Vec<Measurement>) -> Measurement {
    assert!(!rounds.is_empty(), "no rounds to combine");
    let ops: usize = rounds.iter().map(|m| m.ops).sum();
    let seconds: f64 = rounds.iter().map(|m| m.ops as f64 / m.ops_per_sec).sum();
    let middle = rounds.len() / 2;
    rounds.sort_by_key(|m| m.p50);
    let p50 = rounds[middle].p50;
    rounds.sort_by_key(|m| m.p99);
    let p99 = rounds[middle].p99;
    Measurement {
        name: format!("{} (interleaved)", rounds[0].name),
        concurrency: rounds[0].concurrency,
        ops,
        ops_per_sec: ops as f64 / seconds,
        p50,
        p99,
    }
}

/// The runtime a row runs on, whatever its `concurrency`: tokio's multi-thread runtime,
/// the one a service runs (`#[tokio::main]`); one caller is one task calling in a loop.
/// (Until 2026-12-03 one caller ran on a current-thread runtime, which the SQLite backend
/// never blocks: its reads there go to reader threads, as they did everywhere before.)
pub fn runtime_for(_concurrency: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Prints how history last-50's median grows from the shortest to the longest measured
/// conversation.
pub fn print_history_ratio(rows: &[Measurement], lengths: &[usize], concurrency: usize) {
    let p50 = |length: &usize| {
        let name = format!("history_last50@{length}");
        rows.iter()
            .find(|m| m.name == name)
            .map(|m| m.p50.as_secs_f64() * 1e6)
    };
    if let (Some(first), Some(last)) = (lengths.first(), lengths.last()) {
        if let (Some(short), Some(long)) = (p50(first), p50(last)) {
            print_ratio(
                &format!("history_last50 p50 us, {last} vs {first} messages (c{concurrency})"),
                long,
                short,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An op that notes `who` each time it is called.
    fn noting(calls: &Arc<Mutex<Vec<&'static str>>>, who: &'static str) -> BenchOp {
        let calls = calls.clone();
        Arc::new(move |_| {
            calls.lock().unwrap().push(who);
            Box::pin(async {})
        })
    }

    #[tokio::test]
    async fn alternating_calls_take_turns_and_swap_who_goes_first() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let paired =
            alternating_calls("op", noting(&calls, "ours"), noting(&calls, "raw"), 4).await;
        let calls = calls.lock().unwrap().clone();
        // Two warm-up turns, then four timed ones, the first of each pair alternating.
        assert_eq!(
            calls,
            [
                "ours", "raw", "ours", "raw", // warm-up
                "ours", "raw", "raw", "ours", "ours", "raw", "raw", "ours",
            ]
        );
        assert_eq!(
            (paired.ours.ops, paired.raw.ops, paired.turns.len()),
            (4, 4, 4)
        );
        assert_eq!(paired.ours.name, "op (alternating)");
        assert_eq!(paired.raw.name, "raw_op (alternating)");
    }

    #[test]
    fn median_ratio_is_the_middle_turn_ratio() {
        let ms = Duration::from_millis;
        let paired = |turns: Vec<(Duration, Duration)>| Paired {
            ours: Measurement::from_latencies("ours", 1, vec![], ms(1)),
            raw: Measurement::from_latencies("raw", 1, vec![], ms(1)),
            turns,
        };
        let per_sec = |latency: Duration| 1.0 / latency.as_secs_f64();
        // Ratios 0.5, 1 and 2: one slow turn of either side does not move the median.
        let odd = paired(vec![(ms(2), ms(1)), (ms(1), ms(1)), (ms(1), ms(2))]);
        assert_eq!(odd.median_ratio(per_sec), 1.0);
        // Ratios 0.5, 1, 2 and 4: the mean of the middle two.
        let even = paired(vec![
            (ms(2), ms(1)),
            (ms(1), ms(1)),
            (ms(1), ms(2)),
            (ms(1), ms(4)),
        ]);
        assert_eq!(even.median_ratio(per_sec), 1.5);
        assert!(paired(vec![]).median_ratio(per_sec).is_nan());
    }
}

//! `cargo bench -p storage-core --bench wire`: what decoding the stored records of a
//! checkpoint read costs, per record, for the shapes LangGraph's workload stores: a pending
//! write and a channel value framed as typed bytes (LangGraph's serializer gives msgpack),
//! a channel value of about 2 KB of JSON, and a checkpoint record with ten channel
//! versions. A read of the latest checkpoint in that workload decodes one checkpoint
//! record, ten values and about 63 pending writes.
//!
//! Prints the median over rounds of the mean time per decode. Flags: `--rounds N`
//! (default 15), `--iterations N` decodes per round (default 20000).

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use storage_core::{wire, ChannelValue, Checkpoint, PendingWrite};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1))
            .map_or(default, |value| value.parse().expect("a number"))
    };
    let rounds = flag("--rounds", 15);
    let iterations = flag("--iterations", 20_000);

    let write = wire::encode_write(&PendingWrite {
        task_id: "1ef4a9b2-0007-6a3c-8000-5f1e2d3c4b5a".into(),
        task_path: "~__pregel_pull, agent".into(),
        index: 0,
        channel: "messages".into(),
        value: ChannelValue::typed("msgpack", vec![0x81u8; 220]),
    })
    .expect("encode");
    let typed =
        wire::encode_value(&ChannelValue::typed("msgpack", vec![0x81u8; 220])).expect("encode");
    let text = "lorem ipsum dolor sit amet ".repeat(70);
    let json_value = wire::encode_value(&json!({"channel": 3, "step": 17, "text": text}).into())
        .expect("encode");
    let mut checkpoint = Checkpoint::new("thread-7", "", "1f1ef12c-5f01-61e8-bffe-0489e594aa6b");
    checkpoint.parent_id = Some("1f1ef12c-5ed6-63a9-bffe-4b6e77a16599".into());
    for channel in 0..10 {
        checkpoint.channel_versions.insert(
            format!("ch{channel}"),
            format!("{:032}.0.{}", 7 + channel % 2, 0.329_664_893_638_822_45),
        );
    }
    checkpoint.metadata.insert("source".into(), json!("loop"));
    checkpoint.metadata.insert("step".into(), json!(62));
    let record = wire::encode(&checkpoint).expect("encode");

    type Decode<'a> = (&'a str, &'a [u8], fn(&[u8]));
    let cases: [Decode<'_>; 4] = [
        ("pending write, typed bytes", &write, |bytes| {
            black_box(wire::decode_write(bytes).expect("decode"));
        }),
        ("channel value, typed bytes", &typed, |bytes| {
            black_box(wire::decode_value(bytes).expect("decode"));
        }),
        ("channel value, 2 KB JSON", &json_value, |bytes| {
            black_box(wire::decode_value(bytes).expect("decode"));
        }),
        ("checkpoint record", &record, |bytes| {
            black_box(wire::decode::<Checkpoint>(bytes).expect("decode"));
        }),
    ];
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    // Cases interleaved round by round, so each sees the same machine.
    for _ in 0..rounds {
        for ((_, bytes, decode), times) in cases.iter().zip(&mut times) {
            let started = Instant::now();
            for _ in 0..iterations {
                decode(black_box(bytes));
            }
            times.push(started.elapsed().as_nanos() as f64 / iterations as f64);
        }
    }
    println!("wire decode, median of {rounds} rounds of {iterations}:");
    for ((name, bytes, _), mut times) in cases.iter().zip(times) {
        times.sort_by(f64::total_cmp);
        println!(
            "  {name:<28} {:>6} bytes  {:>7.0} ns",
            bytes.len(),
            times[times.len() / 2]
        );
    }
}

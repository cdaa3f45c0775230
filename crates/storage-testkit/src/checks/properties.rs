//! Property-based round trips: arbitrary JSON in every place a caller can put it comes
//! back exactly.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Number, Value};
use storage_core::ext::TaskContextStoreExt;
use storage_core::{ExpectedVersion, Metadata, NewArtifact, NewMessage, NewSession};

use crate::data::checkpoint;
use crate::TestContext;

/// How many generated cases each property runs.
const CASES: usize = 48;

/// Arbitrary JSON: any string (including NUL and non-BMP characters), integers over the
/// whole i64 and u64 range, finite floats, nested arrays and objects.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Arbitrary metadata objects.
pub fn metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..8)
        .prop_map(|map| map.into_iter().collect())
}

/// Draws `CASES` samples from `strategy` with a fixed seed, so a failure repeats.
fn samples<S: Strategy>(strategy: S) -> Vec<S::Value> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    (0..CASES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("strategy yields values")
                .current()
        })
        .collect()
}

/// Session metadata and message content and metadata round-trip exactly.
pub async fn session_and_message_json_round_trips(ctx: TestContext) {
    let b = &ctx.backend;
    for (i, (meta, content)) in samples((metadata(), json_value())).into_iter().enumerate() {
        let id = format!("s{i}");
        let created = b
            .create_session(NewSession::new(&id, "u").with_metadata(meta.clone()))
            .await
            .unwrap();
        assert_eq!(created.metadata, meta);
        assert_eq!(
            b.get_session(&id).await.unwrap().unwrap().metadata,
            meta,
            "case {i}"
        );
        let message = NewMessage::new("user", content.clone()).with_metadata(meta.clone());
        b.append_message(&id, message).await.unwrap();
        let read = b.get_conversation_history(&id, 1).await.unwrap().remove(0);
        assert_eq!((read.content, read.metadata), (content, meta), "case {i}");
    }
}

/// Checkpoint channel values, metadata and pending writes round-trip exactly.
pub async fn checkpoint_json_round_trips(ctx: TestContext) {
    let b = &ctx.backend;
    for (i, (value, meta)) in samples((json_value(), metadata())).into_iter().enumerate() {
        let thread = format!("t{i}");
        let mut cp = checkpoint(&thread, "", "cp", &[("ch", "1", value.clone())]);
        cp.metadata = meta.clone();
        let new = cp.all_versions();
        b.put_checkpoint(cp.clone(), new).await.unwrap();
        let key = cp.key();
        b.put_writes(
            key.clone(),
            "task",
            "",
            vec![("w".into(), value.clone().into())],
        )
        .await
        .unwrap();
        let read = b.get_checkpoint(&thread, "", None).await.unwrap().unwrap();
        assert_eq!(read.checkpoint, cp, "case {i}");
        assert_eq!(read.pending_writes[0].value, value.into(), "case {i}");
    }
}

/// Task context values and artifact metadata round-trip exactly.
pub async fn context_and_artifact_json_round_trips(ctx: TestContext) {
    let b = &ctx.backend;
    for (i, (value, meta)) in samples((json_value(), metadata())).into_iter().enumerate() {
        let id = format!("s{i}");
        b.store_task_context(&id, value.clone(), ExpectedVersion::Any)
            .await
            .unwrap();
        assert_eq!(
            b.get_task_context(&id).await.unwrap().unwrap().value,
            value,
            "case {i}"
        );
        let artifact =
            NewArtifact::new("application/json", value.to_string()).with_metadata(meta.clone());
        b.save_artifact("run", &id, artifact).await.unwrap();
        assert_eq!(
            b.get_artifact_meta("run", &id, None)
                .await
                .unwrap()
                .unwrap()
                .metadata,
            meta,
            "case {i}"
        );
    }
}

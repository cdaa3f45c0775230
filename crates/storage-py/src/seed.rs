//! The seed's record shapes, built from the Rust types: what the Python methods return.
//!
//! The seed's Python API predates the Rust types; these functions are the one place where
//! its field names (`session_id`, `timestamp`, `total_processing_time` in seconds, a
//! checkpoint's `data`) meet ours, so neither side has to change.

use serde_json::{json, Value};
use storage_core::{Checkpoint, CheckpointTuple, Message, Session};

/// A session as the seed returned it: a `metrics` sub-dict, times as ISO 8601 strings.
pub(crate) fn session(session: &Session) -> Value {
    let metrics = &session.metrics;
    json!({
        "session_id": session.id,
        "user_id": session.user_id,
        "status": session.status.as_str(),
        "metadata": session.metadata,
        "created_at": session.created_at.to_rfc3339(),
        "last_activity": session.last_activity.to_rfc3339(),
        "ended_at": session.ended_at.map(|at| at.to_rfc3339()),
        "metrics": {
            "request_count": metrics.request_count,
            // The seed counted seconds; the core counts whole milliseconds.
            "total_processing_time": metrics.total_processing_ms as f64 / 1000.0,
            "error_count": metrics.error_count,
            "last_error": metrics.last_error,
        },
    })
}

/// A message as the seed returned it (role, content, timestamp, metadata) plus its
/// sequence number and, when set, its turn id and tool-call links.
pub(crate) fn message(message: &Message) -> Value {
    let mut shape = json!({
        "role": message.role,
        "content": message.content,
        "timestamp": message.created_at.to_rfc3339(),
        "metadata": message.metadata,
        "sequence": message.sequence,
    });
    // The turn fields only when set, so the seed's shape is unchanged without them.
    if let Some(turn_id) = &message.turn_id {
        shape["turn_id"] = json!(turn_id);
    }
    if !message.tool_calls.is_empty() {
        shape["tool_calls"] = json!(message.tool_calls);
    }
    if let Some(call) = &message.tool_result_for {
        shape["tool_result_for"] = json!(call);
    }
    shape
}

/// The seed's checkpoint: `data` is stored as one channel per top-level key in the root
/// namespace of the thread named by the session id, each at the checkpoint id as its
/// version, so no checkpoint's value is shadowed by another's.
pub(crate) fn seed_checkpoint(
    session_id: &str,
    checkpoint_id: &str,
    data: serde_json::Map<String, Value>,
    metadata: serde_json::Map<String, Value>,
    parent_id: Option<String>,
) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(session_id, "", checkpoint_id);
    checkpoint.channel_versions = data
        .keys()
        .map(|channel| (channel.clone(), checkpoint_id.to_owned()))
        .collect();
    checkpoint.channel_values = data
        .into_iter()
        .map(|(channel, value)| (channel, value.into()))
        .collect();
    checkpoint.metadata = metadata;
    checkpoint.parent_id = parent_id;
    checkpoint
}

/// A stored checkpoint in the seed's shape.
pub(crate) fn checkpoint(tuple: &CheckpointTuple) -> Value {
    let checkpoint = &tuple.checkpoint;
    json!({
        "checkpoint_id": checkpoint.id,
        "session_id": checkpoint.thread_id,
        "parent_checkpoint_id": checkpoint.parent_id,
        "data": checkpoint.channel_values,
        "metadata": checkpoint.metadata,
        "created_at": checkpoint.created_at.to_rfc3339(),
    })
}

//! The JSON values each argument of a [`Call`](crate::Call) carries, so that a wrapper can
//! refuse a hostile value before it copies it.
//!
//! Copying or dropping a `serde_json::Value` recurses once per level. A backend measures
//! depth without recursion and refuses what is too deep, but a wrapper copies a call's
//! arguments (a retry, a mirror) before any backend sees them; at a few thousand levels
//! that copy overflows the stack. The blanket implementations in
//! [`operation`](crate::operation) therefore ask every argument, through [`Carried`], for
//! its deepest value first, and take a refused call apart without recursion.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::channel_value::ChannelValue;

use crate::artifact::{Artifact, NewArtifact};
use crate::checkpoint::{ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery};
use crate::conversation::{Message, MessageRange, NewMessage};
use crate::json::Metadata;
use crate::policy::{json_depth, MAX_JSON_DEPTH};
use crate::session::{NewSession, Session, SessionQuery, SessionStatus, SessionUpdate};
use crate::task_context::{ContextScope, ExpectedVersion, TaskContext};

/// Depth past which a wrapper refuses a call before copying it: far above
/// [`MAX_JSON_DEPTH`], which the backends enforce exactly, and far below what a copy can
/// survive.
pub const REFUSED_BEFORE_COPY_DEPTH: usize = 4 * MAX_JSON_DEPTH;

/// Refuses `argument` of `operation` when it carries JSON nested deeper than
/// [`REFUSED_BEFORE_COPY_DEPTH`], taking its values apart without recursion; otherwise
/// hands it back unchanged.
///
/// Every backend calls it first in each operation that takes caller JSON by value: its
/// validation then applies [`MAX_JSON_DEPTH`] exactly to what is left, and whatever that
/// refuses is shallow enough to drop the ordinary way. Without it, a backend called
/// directly would drop a refused value of some thousands of levels recursively and
/// overflow its stack.
///
/// ```
/// use serde_json::Value;
/// use storage_core::carried::admit;
///
/// let mut deep = Value::from(1);
/// for _ in 0..100_000 {
///     deep = Value::Array(vec![deep]);
/// }
/// let err = admit("store_task_context", deep).unwrap_err();
/// assert!(err.message().contains("depth limit is 64"), "{err}");
/// assert_eq!(admit("store_task_context", Value::from(1)).unwrap(), Value::from(1));
/// ```
pub fn admit<T: Carried>(operation: &'static str, mut argument: T) -> crate::Result<T> {
    let limit = REFUSED_BEFORE_COPY_DEPTH;
    if argument.depth(limit) <= limit {
        return Ok(argument);
    }
    let mut values = Vec::new();
    argument.take_values(&mut values);
    values.into_iter().for_each(crate::policy::dismantle);
    Err(too_deep(operation))
}

/// The error for a call refused by [`admit`] or
/// [`Call::refuse_if_too_deep`](crate::Call::refuse_if_too_deep).
pub(crate) fn too_deep(operation: &'static str) -> crate::StorageError {
    crate::StorageError::invalid_input(format!(
        "an argument of {operation} is nested more than {MAX_JSON_DEPTH} levels deep; the JSON \
         depth limit is {MAX_JSON_DEPTH}"
    ))
    .with_operation(operation)
}

/// The JSON values an argument carries.
pub trait Carried {
    /// The deepest value's depth, counted up to `limit + 1` at most.
    fn depth(&self, limit: usize) -> usize;
    /// Moves every value out, leaving `null`s, for [`dismantle`](crate::policy::dismantle).
    fn take_values(&mut self, out: &mut Vec<Value>);
}

macro_rules! carries_nothing {
    ($($ty:ty),* $(,)?) => {
        $(impl Carried for $ty {
            fn depth(&self, _limit: usize) -> usize {
                0
            }
            fn take_values(&mut self, _out: &mut Vec<Value>) {}
        })*
    };
}

carries_nothing!(
    String,
    Option<String>,
    usize,
    u64,
    Option<u64>,
    Duration,
    SessionStatus,
    SessionQuery,
    MessageRange,
    CheckpointKey,
    ExpectedVersion,
    ChannelVersions,
    u32,
    bool,
    ContextScope,
    Option<ContextScope>,
    crate::retention::Retention,
);

impl Carried for Value {
    fn depth(&self, limit: usize) -> usize {
        json_depth(self, limit)
    }
    fn take_values(&mut self, out: &mut Vec<Value>) {
        out.push(self.take());
    }
}

/// The deepest of some values, counted up to `limit + 1` at most.
fn deepest<'a>(values: impl Iterator<Item = &'a Value>, limit: usize) -> usize {
    values
        .map(|value| json_depth(value, limit))
        .max()
        .unwrap_or(0)
}

impl Carried for Metadata {
    fn depth(&self, limit: usize) -> usize {
        deepest(self.values(), limit)
    }
    fn take_values(&mut self, out: &mut Vec<Value>) {
        out.extend(self.values_mut().map(Value::take));
    }
}

impl Carried for ChannelValue {
    fn depth(&self, limit: usize) -> usize {
        self.as_json().map_or(0, |value| json_depth(value, limit))
    }
    fn take_values(&mut self, out: &mut Vec<Value>) {
        // A value shared with another holder is that holder's to drop.
        if let ChannelValue::Json(value) = self {
            if let Some(value) = Arc::get_mut(value) {
                out.push(value.take());
            }
        }
    }
}

impl Carried for std::collections::BTreeMap<String, ChannelValue> {
    fn depth(&self, limit: usize) -> usize {
        self.values()
            .map(|value| value.depth(limit))
            .max()
            .unwrap_or(0)
    }
    fn take_values(&mut self, out: &mut Vec<Value>) {
        self.values_mut().for_each(|value| value.take_values(out));
    }
}

impl<T: Carried> Carried for Vec<T> {
    fn depth(&self, limit: usize) -> usize {
        self.iter().map(|item| item.depth(limit)).max().unwrap_or(0)
    }
    fn take_values(&mut self, out: &mut Vec<Value>) {
        self.iter_mut().for_each(|item| item.take_values(out));
    }
}

impl<A: Carried, B: Carried> Carried for (A, B) {
    fn depth(&self, limit: usize) -> usize {
        self.0.depth(limit).max(self.1.depth(limit))
    }
    fn take_values(&mut self, out: &mut Vec<Value>) {
        self.0.take_values(out);
        self.1.take_values(out);
    }
}

/// Types whose JSON is some of their fields.
macro_rules! carries_fields {
    ($($ty:ty => $($field:ident).+ $(, $($more:ident).+)*;)*) => {
        $(impl Carried for $ty {
            fn depth(&self, limit: usize) -> usize {
                self.$($field).+.depth(limit)$(.max(self.$($more).+.depth(limit)))*
            }
            fn take_values(&mut self, out: &mut Vec<Value>) {
                self.$($field).+.take_values(out);
                $(self.$($more).+.take_values(out);)*
            }
        })*
    };
}

carries_fields!(
    NewSession => metadata;
    Session => metadata;
    SessionUpdate => metadata_patch;
    NewMessage => content, metadata;
    Message => content, metadata;
    Checkpoint => channel_values, metadata;
    CheckpointQuery => filter;
    crate::CheckpointSearch => filter;
    TaskContext => value;
    NewArtifact => metadata;
    Artifact => meta.metadata;
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::Call;
    use crate::task_context::ExpectedVersion;

    fn nested(levels: usize) -> Value {
        let mut value = Value::from(1);
        for level in 0..levels {
            value = if level % 2 == 0 {
                Value::Array(vec![value])
            } else {
                let mut map = serde_json::Map::new();
                map.insert("k".into(), value);
                Value::Object(map)
            };
        }
        value
    }

    #[test]
    fn a_call_ten_thousand_levels_deep_is_refused_and_freed_on_a_small_stack() {
        let refused = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let mut call = Call::StoreContext {
                    scope: ContextScope::session("s"),
                    value: nested(10_000),
                    expected: ExpectedVersion::Any,
                    keep_versions: 1,
                };
                let err = call.refuse_if_too_deep().unwrap_err();
                drop(call);
                err
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(refused.kind(), crate::ErrorKind::InvalidInput);
    }
}

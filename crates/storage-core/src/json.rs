//! JSON rules every backend applies the same way: metadata patches and metadata filters.

use serde_json::{Map, Value};

/// A JSON object, the shape of every `metadata` field.
pub type Metadata = Map<String, Value>;

/// Applies `patch` to `target` as a top-level merge: each key of the patch replaces the
/// target's value; a `null` in the patch removes the key. Nested objects are replaced whole.
///
/// ```
/// use serde_json::json;
/// use storage_core::json::merge_metadata;
///
/// let mut meta = json!({"a": 1, "b": {"x": 1}, "c": 3}).as_object().unwrap().clone();
/// let patch = json!({"b": {"y": 2}, "c": null, "d": 4}).as_object().unwrap().clone();
/// merge_metadata(&mut meta, &patch);
/// assert_eq!(serde_json::Value::Object(meta), json!({"a": 1, "b": {"y": 2}, "d": 4}));
/// ```
pub fn merge_metadata(target: &mut Metadata, patch: &Metadata) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// Whether `metadata` matches `filter`: every key of the filter is present with an equal
/// value (see [`json_equal`]). An empty filter matches everything.
pub fn metadata_matches(metadata: &Metadata, filter: &Metadata) -> bool {
    filter.iter().all(|(key, expected)| {
        metadata
            .get(key)
            .is_some_and(|actual| json_equal(actual, expected))
    })
}

/// Type-strict JSON equality: a string never equals a number, a bool never equals `0`/`1`,
/// `null` only equals `null`. Numbers compare by value (`1` equals `1.0`), as PostgreSQL's
/// `jsonb` does, so every backend answers a filter the same way.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn filter_is_type_strict_and_anded() {
        let meta = obj(json!({"step": 1, "source": "loop", "flag": true, "n": null}));
        assert!(metadata_matches(&meta, &obj(json!({}))));
        assert!(metadata_matches(
            &meta,
            &obj(json!({"step": 1, "source": "loop"}))
        ));
        assert!(metadata_matches(&meta, &obj(json!({"step": 1.0}))));
        assert!(!metadata_matches(&meta, &obj(json!({"step": "1"}))));
        assert!(!metadata_matches(&meta, &obj(json!({"flag": 1}))));
        assert!(!metadata_matches(
            &meta,
            &obj(json!({"step": 1, "source": "input"}))
        ));
        assert!(metadata_matches(&meta, &obj(json!({"n": null}))));
        assert!(!metadata_matches(&meta, &obj(json!({"missing": null}))));
    }

    #[test]
    fn nested_values_compare_exactly_not_by_containment() {
        let meta = obj(json!({"tags": [1, 2], "o": {"a": 1, "b": 2}}));
        assert!(!metadata_matches(&meta, &obj(json!({"tags": [1]}))));
        assert!(!metadata_matches(&meta, &obj(json!({"o": {"a": 1}}))));
        assert!(metadata_matches(
            &meta,
            &obj(json!({"o": {"b": 2, "a": 1}}))
        ));
    }
}

//! Channel values between Python and the core: typed bytes as the `(type, bytes)` tuple
//! LangGraph's `dumps_typed` returns and `loads_typed` takes, JSON as Python objects.
//!
//! A `(str, bytes)` tuple cannot be JSON (JSON has no bytes), so the two forms never
//! collide. The checkpoint and write shapes are otherwise the Rust types' serde shapes.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use pythonize::pythonize;
use serde_json::Value;
use std::collections::BTreeMap;

use storage_core::{
    ChannelHistory, ChannelValue, Checkpoint, CheckpointTuple, Page, PendingWrite, StorageError,
};

use crate::errors::to_py_err;
use crate::native::from_python;

fn invalid(py: Python<'_>, message: String) -> PyErr {
    to_py_err(py, &StorageError::invalid_input(message))
}

/// A value as the core stores it: `(type, bytes)` (or a `bytearray`) is typed bytes, any
/// other value JSON.
pub(crate) fn value_from_python(what: &str, value: &Bound<'_, PyAny>) -> PyResult<ChannelValue> {
    if let Ok(pair) = value.cast::<PyTuple>() {
        if pair.len() == 2 {
            let (tag, data) = (pair.get_item(0)?, pair.get_item(1)?);
            let bytes = if let Ok(bytes) = data.cast::<PyBytes>() {
                Some(bytes.as_bytes().to_vec())
            } else {
                data.cast::<PyByteArray>().ok().map(|array| array.to_vec())
            };
            if let Some(bytes) = bytes {
                let Ok(tag) = tag.cast::<PyString>() else {
                    return Err(invalid(
                        value.py(),
                        format!("{what}: the type tag of typed bytes must be a str"),
                    ));
                };
                return Ok(ChannelValue::typed(tag.to_str()?.to_owned(), bytes));
            }
        }
    }
    from_python::<Value>(what, value).map(ChannelValue::Json)
}

/// Typed bytes as `(type, bytes)`, JSON as Python objects.
pub(crate) fn value_to_python(py: Python<'_>, value: &ChannelValue) -> PyResult<Py<PyAny>> {
    match value {
        ChannelValue::Json(json) => Ok(pythonize(py, json)?.unbind()),
        ChannelValue::Typed(typed) => {
            let tag = PyString::new(py, &typed.type_tag);
            let bytes = PyBytes::new(py, &typed.bytes);
            Ok(PyTuple::new(py, [tag.into_any(), bytes.into_any()])?
                .into_any()
                .unbind())
        }
    }
}

/// A checkpoint in `storage_core::Checkpoint`'s serde shape, its `channel_values` read by
/// [`value_from_python`].
pub(crate) fn checkpoint_from_python(value: &Bound<'_, PyAny>) -> PyResult<Checkpoint> {
    let py = value.py();
    let dict = value
        .cast::<PyDict>()
        .map_err(|_| invalid(py, "checkpoint: expected a dict".into()))?
        .copy()?;
    let values = dict.get_item("channel_values")?;
    dict.set_item("channel_values", PyDict::new(py))?;
    let mut checkpoint: Checkpoint = from_python("checkpoint", dict.as_any())?;
    if let Some(values) = values {
        let values = values
            .cast::<PyDict>()
            .map_err(|_| invalid(py, "checkpoint: channel_values must be a dict".into()))?;
        for (channel, value) in values.iter() {
            let channel: String = channel
                .extract()
                .map_err(|_| invalid(py, "checkpoint: channel names must be str".into()))?;
            let value = value_from_python(&format!("value of channel {channel:?}"), &value)?;
            checkpoint.channel_values.insert(channel, value);
        }
    }
    Ok(checkpoint)
}

/// A task's writes, `[(channel, value), ...]`.
pub(crate) fn writes_from_python(
    writes: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, ChannelValue)>> {
    let py = writes.py();
    let mut out = Vec::new();
    for item in writes.try_iter()? {
        let item = item?;
        let (channel, value): (String, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            invalid(
                py,
                "pending writes: each write must be a (channel, value) pair".into(),
            )
        })?;
        let value = value_from_python(&format!("pending write to {channel:?}"), &value)?;
        out.push((channel, value));
    }
    Ok(out)
}

/// A checkpoint tuple as a dict of the Rust type's serde shape, with each value as
/// [`value_to_python`] gives it.
pub(crate) fn tuple_to_python(py: Python<'_>, mut tuple: CheckpointTuple) -> PyResult<Py<PyAny>> {
    let values = std::mem::take(&mut tuple.checkpoint.channel_values);
    let written: Vec<ChannelValue> = tuple
        .pending_writes
        .iter_mut()
        .map(|write| std::mem::replace(&mut write.value, ChannelValue::Json(Value::Null)))
        .collect();
    let dict = pythonize(py, &tuple)?.cast_into::<PyDict>()?;
    let checkpoint = dict
        .get_item("checkpoint")?
        .expect("a checkpoint tuple has a checkpoint");
    let channel_values = PyDict::new(py);
    for (channel, value) in &values {
        channel_values.set_item(channel, value_to_python(py, value)?)?;
    }
    checkpoint.set_item("channel_values", channel_values)?;
    let writes = dict
        .get_item("pending_writes")?
        .expect("a checkpoint tuple has pending writes")
        .cast_into::<PyList>()?;
    for (write, value) in writes.iter().zip(&written) {
        write.set_item("value", value_to_python(py, value)?)?;
    }
    Ok(dict.into_any().unbind())
}

/// `None` or one tuple.
pub(crate) fn optional_tuple_to_python(
    py: Python<'_>,
    tuple: Option<CheckpointTuple>,
) -> PyResult<Py<PyAny>> {
    match tuple {
        Some(tuple) => tuple_to_python(py, tuple),
        None => Ok(py.None()),
    }
}

/// A list of tuples.
pub(crate) fn tuples_to_python(
    py: Python<'_>,
    tuples: Vec<CheckpointTuple>,
) -> PyResult<Py<PyAny>> {
    let items = tuples
        .into_iter()
        .map(|tuple| tuple_to_python(py, tuple))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, items)?.into_any().unbind())
}

/// A page of tuples: `{"items": [...], "next_cursor": str | None}`.
pub(crate) fn page_to_python(py: Python<'_>, page: Page<CheckpointTuple>) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item("items", tuples_to_python(py, page.items)?)?;
    dict.set_item("next_cursor", page.next_cursor)?;
    Ok(dict.into_any().unbind())
}

/// Pending writes as a list of dicts (see [`write_to_python`]).
pub(crate) fn writes_to_python(py: Python<'_>, writes: Vec<PendingWrite>) -> PyResult<Py<PyAny>> {
    let items = writes
        .iter()
        .map(|write| write_to_python(py, write))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, items)?.into_any().unbind())
}

fn write_to_python(py: Python<'_>, write: &PendingWrite) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item("task_id", &write.task_id)?;
    dict.set_item("task_path", &write.task_path)?;
    dict.set_item("index", write.index)?;
    dict.set_item("channel", &write.channel)?;
    dict.set_item("value", value_to_python(py, &write.value)?)?;
    Ok(dict.into_any().unbind())
}

/// Delta channel histories, `None` for an unknown target: per channel
/// `{"seed_checkpoint_id": str | None, "seed": value (only when found), "writes": [...]}`.
pub(crate) fn histories_to_python(
    py: Python<'_>,
    histories: Option<BTreeMap<String, ChannelHistory>>,
) -> PyResult<Py<PyAny>> {
    let Some(histories) = histories else {
        return Ok(py.None());
    };
    let out = PyDict::new(py);
    for (channel, history) in &histories {
        let entry = PyDict::new(py);
        entry.set_item("seed_checkpoint_id", &history.seed_checkpoint_id)?;
        if let Some(seed) = &history.seed {
            entry.set_item("seed", value_to_python(py, seed)?)?;
        }
        let writes = history
            .writes
            .iter()
            .map(|write| write_to_python(py, write))
            .collect::<PyResult<Vec<_>>>()?;
        entry.set_item("writes", PyList::new(py, writes)?)?;
        out.set_item(channel, entry)?;
    }
    Ok(out.into_any().unbind())
}

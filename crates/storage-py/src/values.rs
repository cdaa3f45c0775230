//! Channel values between Python and the core: typed bytes as the `(type, bytes)` tuple
//! LangGraph's `dumps_typed` returns and `loads_typed` takes, JSON as Python objects.
//!
//! A `(str, bytes)` tuple cannot be JSON (JSON has no bytes), so the two forms never
//! collide. The checkpoint and write shapes are otherwise the Rust types' serde shapes.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping,
    PySequence, PySet, PyString, PyTuple,
};
use pythonize::{depythonize, pythonize};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

use storage_core::checkpoint::{ChannelVersions, CheckpointTime};
use storage_core::{ChannelHistory, ChannelValue, Checkpoint, CheckpointTuple, Page, PendingWrite};

use crate::errors::invalid_input;

/// A name inside what is converted (a channel's, a type tag): anything but a `str`, or a
/// `str` UTF-8 cannot encode, is the caller's `InvalidInputError`.
fn name(what: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    crate::args::text(value).map_err(|err| {
        if err.is_instance_of::<pyo3::exceptions::PyTypeError>(value.py()) {
            invalid_input(value.py(), format!("{what} must be a str"))
        } else {
            err
        }
    })
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
                let tag = name(&format!("{what}: the type tag of typed bytes"), &tag)?;
                return Ok(ChannelValue::typed(tag, bytes));
            }
        }
    }
    from_python::<Value>(what, value).map(ChannelValue::json)
}

/// A Python value as `T`; a value of the wrong shape, or one JSON cannot hold (see
/// [`unstorable`]), is the caller's `InvalidInputError`.
pub(crate) fn from_python<T: DeserializeOwned>(
    what: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<T> {
    refuse_unstorable(what, value)?;
    depythonize(value).map_err(|err| invalid_input(value.py(), format!("{what}: {err}")))
}

/// Refuses what [`unstorable`] finds, saying which rule it breaks.
fn refuse_unstorable(what: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let message = match unstorable(value, 0) {
        None => return Ok(()),
        Some(Unstorable::TooDeep) => format!(
            "{what} is nested more than {} levels deep; the JSON depth limit is {}",
            storage_core::policy::MAX_JSON_DEPTH,
            storage_core::policy::MAX_JSON_DEPTH
        ),
        Some(Unstorable::NonFinite(number)) => format!(
            "{what} holds the float {number}, which JSON cannot represent (only finite \
             numbers are stored)"
        ),
    };
    Err(invalid_input(value.py(), message))
}

/// Why a Python value cannot become the JSON the core stores, though it may convert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unstorable {
    /// Dicts, lists or tuples nested deeper than the core's
    /// [`REFUSED_BEFORE_COPY_DEPTH`](storage_core::carried::REFUSED_BEFORE_COPY_DEPTH):
    /// converting recurses once per level, so a hostile value (or one that contains
    /// itself) would overflow the interpreter's stack first.
    TooDeep,
    /// A NaN or an infinity: JSON has no such number, and the conversion would quietly
    /// store `null` in its place.
    NonFinite(f64),
}

/// What makes `value`, found `depth` levels down in what is being converted, unstorable,
/// measured with an explicit stack; `None` when nothing does.
pub(crate) fn unstorable(value: &Bound<'_, PyAny>, depth: usize) -> Option<Unstorable> {
    let limit = storage_core::carried::REFUSED_BEFORE_COPY_DEPTH;
    let mut stack = vec![(value.clone(), depth)];
    while let Some((value, depth)) = stack.pop() {
        // Every container depythonize descends into, not only dicts, lists and tuples: a
        // deeply nested (or self-containing) set, deque or mapping would otherwise
        // overflow the native stack and abort the interpreter.
        let children: Vec<Bound<'_, PyAny>> = if let Ok(dict) = value.cast::<PyDict>() {
            dict.values().iter().collect()
        } else if let Ok(list) = value.cast::<PyList>() {
            list.iter().collect()
        } else if let Ok(tuple) = value.cast::<PyTuple>() {
            tuple.iter().collect()
        } else if let Ok(float) = value.cast::<PyFloat>() {
            let number = float.value();
            if !number.is_finite() {
                return Some(Unstorable::NonFinite(number));
            }
            continue;
        } else if value.is_none()
            || value.is_instance_of::<PyString>()
            || value.is_instance_of::<PyInt>()
            || value.is_instance_of::<PyBytes>()
            || value.is_instance_of::<PyByteArray>()
        {
            continue;
        } else if let Ok(set) = value.cast::<PySet>() {
            set.iter().collect()
        } else if let Ok(set) = value.cast::<PyFrozenSet>() {
            set.iter().collect()
        } else if let Ok(mapping) = value.cast::<PyMapping>() {
            // One that cannot be read fails in depythonize, with its own error.
            match mapping.values() {
                Ok(values) => values.iter().collect(),
                Err(_) => continue,
            }
        } else if let Ok(sequence) = value.cast::<PySequence>() {
            match sequence
                .try_iter()
                .and_then(|items| items.collect::<PyResult<Vec<_>>>())
            {
                Ok(items) => items,
                Err(_) => continue,
            }
        } else {
            continue;
        };
        if depth >= limit {
            return Some(Unstorable::TooDeep);
        }
        stack.extend(children.into_iter().map(|child| (child, depth + 1)));
    }
    None
}

pub(crate) fn optional<T: DeserializeOwned + Default>(
    what: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<T> {
    match value {
        Some(value) if !value.is_none() => from_python(what, value),
        _ => Ok(T::default()),
    }
}

/// Typed bytes as `(type, bytes)`, JSON as Python objects.
pub(crate) fn value_to_python(py: Python<'_>, value: &ChannelValue) -> PyResult<Py<PyAny>> {
    match value {
        ChannelValue::Json(json) => Ok(pythonize(py, json.as_ref())?.unbind()),
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
        .map_err(|_| invalid_input(py, "checkpoint: expected a dict"))?;
    let values = dict.get_item("channel_values")?;
    // Either path would read a str as the sequence of its characters.
    if let Some(updated) = dict.get_item("updated_channels")? {
        if updated.is_instance_of::<PyString>() {
            return Err(invalid_input(
                py,
                "checkpoint: updated_channels must be a list of channel names, not a str",
            ));
        }
    }
    // The fields read directly when each has the plain type LangGraph's saver gives; any
    // other shape takes the serde path, which accepts and refuses exactly as before (and
    // words the error). The serde path copies the dict and walks it twice (depth, then
    // fields), which was most of a put's native time.
    let mut checkpoint = match checkpoint_fast(dict)? {
        Some(checkpoint) => checkpoint,
        None => {
            let dict = dict.copy()?;
            dict.set_item("channel_values", PyDict::new(py))?;
            from_python("checkpoint", dict.as_any())?
        }
    };
    if let Some(values) = values {
        let values = values
            .cast::<PyDict>()
            .map_err(|_| invalid_input(py, "checkpoint: channel_values must be a dict"))?;
        // A snapshot of the items: converting a value may run code that changes the dict,
        // which its live iterator would not survive.
        for item in values.items().iter() {
            let (channel, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let channel = name("checkpoint: a channel's name", &channel)?;
            let value = value_from_python(&format!("value of channel {channel:?}"), &value)?;
            checkpoint.channel_values.insert(channel, value);
        }
    }
    Ok(checkpoint)
}

/// [`checkpoint_from_python`]'s direct read (without `channel_values`); `None` when a
/// field is missing or of another type than the plain one.
fn checkpoint_fast(dict: &Bound<'_, PyDict>) -> PyResult<Option<Checkpoint>> {
    // Each field is looked up once; those present are counted, so that a dict holding any
    // other key (a non-str one, or one the struct ignores) takes the serde path, which
    // refuses non-str keys and depth-checks every value: both paths answer alike.
    let present = std::cell::Cell::new(usize::from(dict.contains("channel_values")?));
    let item = |key: &str| {
        let found = dict.get_item(key)?;
        present.set(present.get() + usize::from(found.is_some()));
        Ok::<_, PyErr>(found)
    };
    let (Some(thread_id), Some(namespace), Some(id)) = (
        plain_str(item("thread_id")?),
        plain_str(item("namespace")?),
        plain_str(item("id")?),
    ) else {
        return Ok(None);
    };
    let parent_id = match item("parent_id")? {
        None => None,
        Some(parent) if parent.is_none() => None,
        Some(parent) => match plain_str(Some(parent)) {
            Some(parent) => Some(parent),
            None => return Ok(None),
        },
    };
    let Some(channel_versions) = item("channel_versions")?.and_then(|v| versions_fast(&v)) else {
        return Ok(None);
    };
    let Some(seen) = item("versions_seen")? else {
        return Ok(None);
    };
    let Ok(seen) = seen.cast::<PyDict>() else {
        return Ok(None);
    };
    let mut versions_seen = BTreeMap::new();
    for (node, versions) in seen.iter() {
        let (Some(node), Some(versions)) = (plain_str(Some(node)), versions_fast(&versions)) else {
            return Ok(None);
        };
        versions_seen.insert(node, versions);
    }
    // Metadata is JSON: the same checks (one level down in the checkpoint) and the same
    // conversion as the serde path gives it, which words the error of what they refuse.
    let Some(metadata) = item("metadata")? else {
        return Ok(None);
    };
    if unstorable(&metadata, 1).is_some() {
        return Ok(None);
    }
    let Ok(metadata) = depythonize(&metadata) else {
        return Ok(None);
    };
    let Some(created_at) = plain_str(item("created_at")?).and_then(|ts| {
        let text = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&ts);
        CheckpointTime::deserialize(text).ok()
    }) else {
        return Ok(None);
    };
    let format_version = match item("format_version")? {
        None => storage_core::checkpoint::LEGACY_FORMAT_VERSION,
        Some(v) if v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>() => {
            match v.extract::<u32>() {
                Ok(v) => v,
                Err(_) => return Ok(None),
            }
        }
        Some(_) => return Ok(None),
    };
    let updated_channels = match item("updated_channels")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let Ok(list) = v.cast::<PyList>() else {
                return Ok(None);
            };
            let mut channels = Vec::with_capacity(list.len());
            for channel in list.iter() {
                let Some(channel) = plain_str(Some(channel)) else {
                    return Ok(None);
                };
                channels.push(channel);
            }
            Some(channels)
        }
    };
    if present.get() != dict.len() {
        return Ok(None);
    }
    Ok(Some(Checkpoint {
        thread_id,
        namespace,
        id,
        parent_id,
        channel_values: BTreeMap::new(),
        channel_versions,
        versions_seen,
        metadata,
        created_at,
        format_version,
        updated_channels,
    }))
}

/// A `str` as a `String`; `None` for anything else.
fn plain_str(value: Option<Bound<'_, PyAny>>) -> Option<String> {
    let value = value?;
    let text = value.cast::<PyString>().ok()?;
    text.to_str().ok().map(str::to_owned)
}

/// A dict of `str` to `str` as channel versions; `None` for any other shape (for the
/// serde path to accept or refuse).
pub(crate) fn versions_fast(value: &Bound<'_, PyAny>) -> Option<ChannelVersions> {
    let dict = value.cast::<PyDict>().ok()?;
    let mut versions = ChannelVersions::new();
    for (channel, version) in dict.iter() {
        versions.insert(plain_str(Some(channel))?, plain_str(Some(version))?);
    }
    Some(versions)
}

/// A task's writes, `[(channel, value), ...]`.
pub(crate) fn writes_from_python(
    writes: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, ChannelValue)>> {
    let py = writes.py();
    let mut out = Vec::new();
    for item in writes.try_iter()? {
        let item = item?;
        let (channel, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            item.extract().map_err(|_| {
                invalid_input(
                    py,
                    "pending writes: each write must be a (channel, value) pair",
                )
            })?;
        let channel = name("pending writes: a write's channel", &channel)?;
        let value = value_from_python(&format!("pending write to {channel:?}"), &value)?;
        out.push((channel, value));
    }
    Ok(out)
}

/// A checkpoint tuple as a dict of the Rust type's serde shape (its keys in the same
/// order), with each value as [`value_to_python`] gives it. Built field by field: going
/// through `pythonize` and then swapping the values in cost a get about a third more, and
/// the keys are interned strings rather than a new `str` each.
pub(crate) fn tuple_to_python(py: Python<'_>, tuple: CheckpointTuple) -> PyResult<Py<PyAny>> {
    // Every field by name, no `..`: a field added to `Checkpoint` fails to compile here
    // rather than going missing from Python's reads.
    let Checkpoint {
        thread_id,
        namespace,
        id,
        parent_id,
        channel_values,
        channel_versions,
        versions_seen,
        metadata,
        created_at,
        format_version,
        updated_channels,
    } = &tuple.checkpoint;
    let checkpoint = PyDict::new(py);
    checkpoint.set_item(intern!(py, "thread_id"), thread_id)?;
    checkpoint.set_item(intern!(py, "namespace"), namespace)?;
    checkpoint.set_item(intern!(py, "id"), id)?;
    checkpoint.set_item(intern!(py, "parent_id"), parent_id)?;
    let values = PyDict::new(py);
    for (channel, value) in channel_values {
        values.set_item(channel, value_to_python(py, value)?)?;
    }
    checkpoint.set_item(intern!(py, "channel_values"), values)?;
    checkpoint.set_item(
        intern!(py, "channel_versions"),
        versions_to_python(py, channel_versions)?,
    )?;
    let seen = PyDict::new(py);
    for (node, versions) in versions_seen {
        seen.set_item(node, versions_to_python(py, versions)?)?;
    }
    checkpoint.set_item(intern!(py, "versions_seen"), seen)?;
    checkpoint.set_item(intern!(py, "metadata"), pythonize(py, metadata)?)?;
    checkpoint.set_item(intern!(py, "created_at"), pythonize(py, created_at)?)?;
    checkpoint.set_item(intern!(py, "format_version"), format_version)?;
    if let Some(updated) = updated_channels {
        checkpoint.set_item(intern!(py, "updated_channels"), PyList::new(py, updated)?)?;
    }
    let writes = tuple
        .pending_writes
        .iter()
        .map(|write| write_to_python(py, write))
        .collect::<PyResult<Vec<_>>>()?;
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "checkpoint"), checkpoint)?;
    dict.set_item(intern!(py, "pending_writes"), PyList::new(py, writes)?)?;
    Ok(dict.into_any().unbind())
}

fn versions_to_python<'py>(
    py: Python<'py>,
    versions: &ChannelVersions,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (channel, version) in versions {
        dict.set_item(channel, version)?;
    }
    Ok(dict)
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

/// Pending writes as a list of tuples (see [`write_to_python`]).
pub(crate) fn writes_to_python(py: Python<'_>, writes: Vec<PendingWrite>) -> PyResult<Py<PyAny>> {
    let items = writes
        .iter()
        .map(|write| write_to_python(py, write))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, items)?.into_any().unbind())
}

/// A pending write as `(task_id, channel, value, task_path, index)`: LangGraph's pending
/// write first, so a reader unpacks it without a lookup per field. A tuple, not a dict: a
/// checkpoint can carry dozens of writes, and a dict per write cost a `get_tuple` with 63
/// of them about a fifth of its time.
fn write_to_python(py: Python<'_>, write: &PendingWrite) -> PyResult<Py<PyAny>> {
    let fields: [Py<PyAny>; 5] = [
        PyString::new(py, &write.task_id).into_any().unbind(),
        PyString::new(py, &write.channel).into_any().unbind(),
        value_to_python(py, &write.value)?,
        PyString::new(py, &write.task_path).into_any().unbind(),
        write.index.into_pyobject(py)?.into_any().unbind(),
    ];
    Ok(PyTuple::new(py, fields)?.into_any().unbind())
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

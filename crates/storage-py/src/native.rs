//! [`NativeStorage`]: the facade's operations as Python methods.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use storage::{ConfigLoader, Storage};
use storage_core::prelude::*;
use storage_core::{CheckpointSearch, Metadata, StorageError};

use crate::args;
use crate::calls::{finish, finish_with};
use crate::errors::{invalid_input, to_py_err};
use crate::runtime;
use crate::seed;
use crate::values::{self, from_python, optional};

/// One facade [`Storage`], shared by every call (it is `Send + Sync`; cloning the `Arc`
/// into each future keeps it alive for as long as a call runs).
#[pyclass(frozen, module = "agent_storage._native")]
#[derive(Debug)]
pub struct NativeStorage {
    /// Always set; taken only when dropped in a forked child (see the `Drop` impl).
    inner: Option<Arc<Storage>>,
    /// The forks the process had gone through when this was made (see `runtime`).
    forks: u64,
}

impl Drop for NativeStorage {
    /// In a child forked after this was made, the facade is forgotten rather than dropped:
    /// closing it would close the parent's connections and files and take locks that the
    /// parent's threads, absent here, may have held at the fork.
    fn drop(&mut self) {
        if self.forks != runtime::forks() {
            std::mem::forget(self.inner.take());
        }
    }
}

impl NativeStorage {
    /// The facade, for a call; refused in a child forked after this was made, whose copy
    /// of its connections, files and threads belongs to the parent.
    pub(crate) fn storage(&self) -> PyResult<Arc<Storage>> {
        if let Some(inner) = self
            .inner
            .as_ref()
            .filter(|_| self.forks == runtime::forks())
        {
            return Ok(inner.clone());
        }
        Python::attach(|py| {
            Err(to_py_err(
                py,
                &StorageError::unsupported(
                    "this Storage was made before os.fork(): its connections, files and \
                     threads belong to the parent process; make a new Storage in the child",
                ),
            ))
        })
    }
}

#[pymethods]
impl NativeStorage {
    /// Loads the configuration as the Rust facade does: `settings` (dotted keys such as
    /// `"memory.namespace"`, or whole sections as dicts) over `STORAGE_*` variables (unless
    /// `use_env` is false) over `config_file` (else `$STORAGE_CONFIG_FILE`, else
    /// `./storage.toml` if present) over the defaults.
    #[new]
    #[pyo3(signature = (settings=None, config_file=None, use_env=true))]
    fn new(
        py: Python<'_>,
        settings: Option<&Bound<'_, PyDict>>,
        config_file: Option<PathBuf>,
        use_env: bool,
    ) -> PyResult<Self> {
        let mut loader = ConfigLoader::new();
        if let Some(path) = config_file {
            loader = loader.file(path);
        }
        if !use_env {
            loader = loader.without_env();
        }
        // A snapshot of the items: converting a value may run code that changes the dict,
        // which its live iterator would not survive.
        let items = settings.map(|dict| dict.items());
        for item in items.iter().flat_map(|items| items.iter()) {
            let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let key = args::text(&key)?;
            let value: Value = from_python(&format!("setting {key:?}"), &value)?;
            loader = loader.set(&key, value);
        }
        let storage = loader
            .load()
            .and_then(|loaded| Storage::from_config(loaded.config))
            .map_err(|err| to_py_err(py, &err))?;
        Ok(NativeStorage {
            inner: Some(Arc::new(storage)),
            forks: runtime::forks(),
        })
    }

    /// The backend serving each kind, e.g. `{"sessions": "memory", ...}`.
    fn backends(&self) -> std::collections::BTreeMap<String, &'static str> {
        storage::Kind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind.to_string(), self.inner.as_ref()?.backend_name_of(kind))))
            .collect()
    }

    #[pyo3(signature = (blocking=false))]
    fn initialize<'py>(&self, py: Python<'py>, blocking: bool) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move { storage.initialize().await })
    }

    #[pyo3(signature = (blocking=false))]
    fn close<'py>(&self, py: Python<'py>, blocking: bool) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move { storage.close().await })
    }

    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move { storage.health_check().await })
    }

    fn get_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move { storage.get_metrics().await })
    }

    fn cleanup_expired_sessions<'py>(
        &self,
        py: Python<'py>,
        max_idle_seconds: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let max_idle = Duration::try_from_secs_f64(max_idle_seconds)
            .map_err(|err| invalid_input(py, format!("max idle time: {err}")))?;
        let storage = self.storage()?;
        finish(py, false, async move {
            storage.cleanup_expired_sessions(max_idle).await
        })
    }

    // --- sessions and conversation (the seed's shapes) ----------------------------------

    #[pyo3(signature = (session_id, user_id, metadata=None))]
    fn create_session<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::text)] user_id: String,
        metadata: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let metadata: Metadata = optional("session metadata", metadata)?;
        let storage = self.storage()?;
        finish(py, false, async move {
            let new = NewSession::new(session_id, user_id).with_metadata(metadata);
            Ok(seed::session(&storage.create_session(new).await?))
        })
    }

    fn get_session<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            Ok(storage
                .get_session(&session_id)
                .await?
                .map(|s| seed::session(&s)))
        })
    }

    /// Applies one update atomically; `SessionNotFoundError` when the session does not exist.
    #[pyo3(signature = (session_id, metadata_patch=None, add_requests=0, add_processing_ms=0, error=None))]
    fn update_session<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        metadata_patch: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::count)] add_requests: u64,
        #[pyo3(from_py_with = args::count)] add_processing_ms: u64,
        #[pyo3(from_py_with = args::optional_text)] error: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let update = SessionUpdate {
            metadata_patch: optional("session metadata patch", metadata_patch)?,
            add_requests,
            add_processing_ms,
            error,
        };
        let storage = self.storage()?;
        finish(py, false, async move {
            Ok(seed::session(
                &storage.update_session(&session_id, update).await?,
            ))
        })
    }

    /// Ends a session with `status`; `SessionNotFoundError` when the session does not exist.
    fn end_session<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::text)] status: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let status = SessionStatus::parse(&status).map_err(|err| to_py_err(py, &err))?;
        let storage = self.storage()?;
        finish(py, false, async move {
            Ok(seed::session(
                &storage.end_session(&session_id, status).await?,
            ))
        })
    }

    #[pyo3(signature = (
        session_id, role, content, metadata=None, client_id=None, turn_id=None,
        tool_calls=None, tool_result_for=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn append_message<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::text)] role: String,
        content: &Bound<'py, PyAny>,
        metadata: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::optional_text)] client_id: Option<String>,
        #[pyo3(from_py_with = args::optional_text)] turn_id: Option<String>,
        #[pyo3(from_py_with = args::optional_texts)] tool_calls: Option<Vec<String>>,
        #[pyo3(from_py_with = args::optional_text)] tool_result_for: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let content: Value = from_python("message content", content)?;
        let mut message =
            NewMessage::new(role, content).with_metadata(optional("message metadata", metadata)?);
        message.client_id = client_id;
        message.turn_id = turn_id;
        message.tool_calls = tool_calls.unwrap_or_default();
        message.tool_result_for = tool_result_for;
        let storage = self.storage()?;
        finish(py, false, async move {
            Ok(seed::message(
                &storage.append_message(&session_id, message).await?,
            ))
        })
    }

    fn get_conversation_history<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::count)] limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            let messages = storage.get_conversation_history(&session_id, limit).await?;
            Ok(messages.iter().map(seed::message).collect::<Vec<_>>())
        })
    }

    // --- artifacts (the second seed's ArtifactStore is built on these) --------------------

    /// Saves a new version of `name` in `scope`; returns its metadata.
    #[pyo3(signature = (scope, name, data, content_type, metadata=None, blocking=false))]
    #[allow(clippy::too_many_arguments)]
    fn save_artifact<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        #[pyo3(from_py_with = args::text)] name: String,
        data: Vec<u8>,
        #[pyo3(from_py_with = args::text)] content_type: String,
        metadata: Option<&Bound<'py, PyAny>>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let artifact = NewArtifact {
            content_type,
            data: data.into(),
            metadata: optional("artifact metadata", metadata)?,
        };
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.save_artifact(&scope, &name, artifact).await
        })
    }

    /// A version (`None`: the latest) as `{"meta": {...}, "data": bytes}`, or `None`.
    #[pyo3(signature = (scope, name, version=None, blocking=false))]
    fn get_artifact<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        #[pyo3(from_py_with = args::text)] name: String,
        #[pyo3(from_py_with = args::optional_count)] version: Option<u64>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.get_artifact(&scope, &name, version).await
        })
    }

    /// Whether the version (`None`: any version) exists.
    #[pyo3(signature = (scope, name, version=None, blocking=false))]
    fn artifact_exists<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        #[pyo3(from_py_with = args::text)] name: String,
        #[pyo3(from_py_with = args::optional_count)] version: Option<u64>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.artifact_exists(&scope, &name, version).await
        })
    }

    /// Removes every artifact of `scope`; returns how many versions went.
    #[pyo3(signature = (scope, blocking=false))]
    fn clear_artifacts<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.clear_artifacts(&scope).await
        })
    }

    // --- the seed's checkpoints -----------------------------------------------------------

    #[pyo3(signature = (session_id, checkpoint_id, data, metadata=None, parent_checkpoint_id=None))]
    fn store_seed_checkpoint<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::text)] checkpoint_id: String,
        data: &Bound<'py, PyAny>,
        metadata: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::optional_text)] parent_checkpoint_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let checkpoint = seed::seed_checkpoint(
            &session_id,
            &checkpoint_id,
            from_python("checkpoint data", data)?,
            optional("checkpoint metadata", metadata)?,
            parent_checkpoint_id,
        );
        let storage = self.storage()?;
        finish(py, false, async move {
            storage.store_checkpoint(checkpoint).await
        })
    }

    #[pyo3(signature = (session_id, checkpoint_id=None))]
    fn get_seed_checkpoint<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::optional_text)] checkpoint_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            let tuple = storage
                .get_checkpoint(&session_id, "", checkpoint_id.as_deref())
                .await?;
            Ok(tuple.as_ref().map(seed::checkpoint))
        })
    }

    fn list_seed_checkpoints<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::count)] limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query = CheckpointQuery {
            limit: Some(limit),
            ..CheckpointQuery::thread(session_id)
        };
        let storage = self.storage()?;
        finish(py, false, async move {
            let tuples = storage.list_checkpoints(query).await?;
            Ok(tuples.iter().map(seed::checkpoint).collect::<Vec<_>>())
        })
    }

    // --- LangGraph's checkpointer contract (the Rust types' own shapes) -------------------

    /// Stores a checkpoint (the serde shape of `storage_core::Checkpoint`, each channel value
    /// JSON or a `(type, bytes)` tuple) and the values of the channels in `new_versions`.
    #[pyo3(signature = (checkpoint, new_versions, blocking=false))]
    fn put_checkpoint<'py>(
        &self,
        py: Python<'py>,
        checkpoint: &Bound<'py, PyAny>,
        new_versions: &Bound<'py, PyAny>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let checkpoint = values::checkpoint_from_python(checkpoint)?;
        let new_versions = match values::versions_fast(new_versions) {
            Some(versions) => versions,
            None => from_python("new channel versions", new_versions)?,
        };
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.put_checkpoint(checkpoint, new_versions).await
        })
    }

    #[pyo3(signature = (thread_id, namespace, checkpoint_id=None, blocking=false))]
    fn get_checkpoint_tuple<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        #[pyo3(from_py_with = args::text)] namespace: String,
        #[pyo3(from_py_with = args::optional_text)] checkpoint_id: Option<String>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        let read = async move {
            storage
                .get_checkpoint(&thread_id, &namespace, checkpoint_id.as_deref())
                .await
        };
        finish_with(py, blocking, read, values::optional_tuple_to_python)
    }

    /// One thread's checkpoints, newest first; `namespace` `None` lists every namespace.
    #[pyo3(signature = (thread_id, namespace=None, before=None, limit=None, filter=None, blocking=false))]
    #[allow(clippy::too_many_arguments)]
    fn list_checkpoint_tuples<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        #[pyo3(from_py_with = args::optional_text)] namespace: Option<String>,
        #[pyo3(from_py_with = args::optional_text)] before: Option<String>,
        #[pyo3(from_py_with = args::optional_count)] limit: Option<usize>,
        filter: Option<&Bound<'py, PyAny>>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query = CheckpointQuery {
            thread_id,
            namespace,
            before,
            limit,
            filter: optional("checkpoint filter", filter)?,
        };
        let storage = self.storage()?;
        let read = async move { storage.list_checkpoints(query).await };
        finish_with(py, blocking, read, values::tuples_to_python)
    }

    /// Every thread's checkpoints, newest first, one page (`items`, `next_cursor`).
    #[pyo3(signature = (limit, namespace=None, before=None, filter=None, blocking=false))]
    fn search_checkpoints<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::count)] limit: usize,
        #[pyo3(from_py_with = args::optional_text)] namespace: Option<String>,
        #[pyo3(from_py_with = args::optional_text)] before: Option<String>,
        filter: Option<&Bound<'py, PyAny>>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let search = CheckpointSearch {
            namespace,
            before,
            limit,
            filter: optional("checkpoint filter", filter)?,
        };
        let storage = self.storage()?;
        let read = async move { storage.search_checkpoints(search).await };
        finish_with(py, blocking, read, values::page_to_python)
    }

    /// Stores a task's writes (`[(channel, value), ...]`, each value JSON or a
    /// `(type, bytes)` tuple) against a checkpoint id.
    #[pyo3(signature = (thread_id, namespace, checkpoint_id, task_id, task_path, writes, blocking=false))]
    #[allow(clippy::too_many_arguments)]
    fn put_writes<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        #[pyo3(from_py_with = args::text)] namespace: String,
        #[pyo3(from_py_with = args::text)] checkpoint_id: String,
        #[pyo3(from_py_with = args::text)] task_id: String,
        #[pyo3(from_py_with = args::text)] task_path: String,
        writes: &Bound<'py, PyAny>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let writes = values::writes_from_python(writes)?;
        let key = CheckpointKey::new(thread_id, checkpoint_id).in_namespace(namespace);
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.put_writes(key, &task_id, &task_path, writes).await
        })
    }

    /// Each channel's writes from the target's parent back to the nearest ancestor storing
    /// a value for it, and that value (LangGraph's delta channel history); `None` when the
    /// target is not stored.
    #[pyo3(signature = (thread_id, namespace, checkpoint_id, channels, blocking=false))]
    fn delta_channel_history<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        #[pyo3(from_py_with = args::text)] namespace: String,
        #[pyo3(from_py_with = args::text)] checkpoint_id: String,
        #[pyo3(from_py_with = args::texts)] channels: Vec<String>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = CheckpointKey::new(thread_id, checkpoint_id).in_namespace(namespace);
        let storage = self.storage()?;
        let read = async move { storage.delta_channel_history(key, channels).await };
        finish_with(py, blocking, read, values::histories_to_python)
    }

    #[pyo3(signature = (thread_id, blocking=false))]
    fn delete_thread<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.delete_thread(&thread_id).await
        })
    }

    #[pyo3(signature = (run_ids, blocking=false))]
    fn delete_for_runs<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::texts)] run_ids: Vec<String>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.delete_for_runs(&run_ids).await
        })
    }

    #[pyo3(signature = (source_thread_id, target_thread_id, blocking=false))]
    fn copy_thread<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] source_thread_id: String,
        #[pyo3(from_py_with = args::text)] target_thread_id: String,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage
                .copy_thread(&source_thread_id, &target_thread_id)
                .await
        })
    }

    #[pyo3(signature = (thread_id, keep_last, blocking=false))]
    fn prune_checkpoints<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        #[pyo3(from_py_with = args::count)] keep_last: usize,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, blocking, async move {
            storage.prune_checkpoints(&thread_id, keep_last).await
        })
    }
}

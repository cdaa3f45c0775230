//! The facade's calls beyond the seed's one-record ones, as Python methods of
//! [`NativeStorage`]: session batches, a checkpoint's pending writes, retention.

use pyo3::prelude::*;
use storage::config::RetentionSettings;
use storage_core::prelude::*;
use storage_core::{Metadata, NewSession};

use crate::args;
use crate::calls::{finish, finish_with};
use crate::native::NativeStorage;
use crate::values::from_python;
use crate::{seed, values};

#[pymethods]
impl NativeStorage {
    /// Creates sessions in one batch, `[(session_id, user_id, metadata | None), ...]`:
    /// `{"created": [session, ...], "already_existed": [session_id, ...]}`, both in input
    /// order. Ids with a live session are left untouched; bad input creates nothing.
    fn create_sessions<'py>(
        &self,
        py: Python<'py>,
        sessions: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let items: Vec<(String, String, Option<Metadata>)> = from_python("sessions", sessions)?;
        let new: Vec<NewSession> = items
            .into_iter()
            .map(|(session_id, user_id, metadata)| {
                NewSession::new(session_id, user_id).with_metadata(metadata.unwrap_or_default())
            })
            .collect();
        let storage = self.storage()?;
        finish(py, false, async move {
            let batch = storage.create_sessions(new).await?;
            Ok(serde_json::json!({
                "created": batch.created.iter().map(seed::session).collect::<Vec<_>>(),
                "already_existed": batch.already_existed,
            }))
        })
    }

    /// Reads sessions in one batch: a list in input order, `None` where there is none.
    fn get_sessions<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::texts)] session_ids: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            let sessions = storage.get_sessions(&session_ids).await?;
            Ok(sessions
                .iter()
                .map(|session| session.as_ref().map(seed::session))
                .collect::<Vec<_>>())
        })
    }

    /// The pending writes stored against a checkpoint id, ordered by (task path, task id,
    /// index): tuples `(task_id, channel, value, task_path, index)`.
    #[pyo3(signature = (thread_id, namespace, checkpoint_id, blocking=false))]
    fn get_writes<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] thread_id: String,
        #[pyo3(from_py_with = args::text)] namespace: String,
        #[pyo3(from_py_with = args::text)] checkpoint_id: String,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = CheckpointKey::new(thread_id, checkpoint_id).in_namespace(namespace);
        let storage = self.storage()?;
        let read = async move { storage.get_writes(key).await };
        finish_with(py, blocking, read, values::writes_to_python)
    }

    /// Applies retention to every kind it limits (`storage_core::retention`): `policy` in
    /// the shape of the `cleanup.retention` settings (`{"messages": {"keep_last": 100,
    /// "max_age_secs": 86400}, ...}`), or the configured one when `None`. Returns what each
    /// kind removed.
    #[pyo3(signature = (policy=None))]
    fn apply_retention<'py>(
        &self,
        py: Python<'py>,
        policy: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        let settings: RetentionSettings = match policy {
            Some(policy) if !policy.is_none() => from_python("retention policy", policy)?,
            _ => storage.configured_retention(),
        };
        finish(py, false, async move {
            storage.apply_retention(&settings).await
        })
    }
}

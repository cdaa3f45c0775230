//! Conversation beyond appends and history, as Python methods of [`NativeStorage`]:
//! turn-aware windows, compaction into a summary, rewind and fork.

use pyo3::prelude::*;
use serde_json::Value;
use storage_core::prelude::*;

use crate::args;
use crate::calls::finish;
use crate::errors::invalid_input;
use crate::native::NativeStorage;
use crate::seed;
use crate::values::{from_python, optional};

#[pymethods]
impl NativeStorage {
    /// The last `turns` turns whole, or the last `limit` messages (with
    /// `keep_tool_pairs`, never a tool result without its call); exactly one of `turns`
    /// and `limit`.
    #[pyo3(signature = (session_id, turns=None, limit=None, keep_tool_pairs=false))]
    fn get_history_window<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::optional_count)] turns: Option<usize>,
        #[pyo3(from_py_with = args::optional_count)] limit: Option<usize>,
        keep_tool_pairs: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let window = match (turns, limit) {
            (Some(_), None) if keep_tool_pairs => {
                return Err(invalid_input(
                    py,
                    "keep_tool_pairs applies to limit; whole turns already keep their pairs",
                ));
            }
            (Some(turns), None) => HistoryWindow::LastTurns { turns },
            (None, Some(limit)) => HistoryWindow::LastMessages {
                limit,
                keep_tool_pairs,
            },
            _ => {
                return Err(invalid_input(py, "give exactly one of turns and limit"));
            }
        };
        let storage = self.storage()?;
        finish(py, false, async move {
            let messages = storage.get_history_window(&session_id, window).await?;
            Ok(messages.iter().map(seed::message).collect::<Vec<_>>())
        })
    }

    /// Replaces the messages up to `up_to` by one summary message stored at `up_to`, in
    /// one atomic step; with `keep_replaced` the originals stay readable with
    /// `get_replaced_messages`. Returns the summary.
    #[pyo3(signature = (session_id, up_to, role, content, metadata=None, client_id=None, keep_replaced=false))]
    #[allow(clippy::too_many_arguments)]
    fn compact_conversation<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::count)] up_to: u64,
        #[pyo3(from_py_with = args::text)] role: String,
        content: &Bound<'py, PyAny>,
        metadata: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::optional_text)] client_id: Option<String>,
        keep_replaced: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let content: Value = from_python("summary content", content)?;
        let mut summary =
            NewMessage::new(role, content).with_metadata(optional("summary metadata", metadata)?);
        summary.client_id = client_id;
        let storage = self.storage()?;
        finish(py, false, async move {
            let stored = storage
                .compact_conversation(&session_id, up_to, summary, keep_replaced)
                .await?;
            Ok(seed::message(&stored))
        })
    }

    /// The messages the summary at `summary_sequence` replaced and kept, oldest first.
    fn get_replaced_messages<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::count)] summary_sequence: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            let kept = storage
                .get_replaced_messages(&session_id, summary_sequence)
                .await?;
            Ok(kept.iter().map(seed::message).collect::<Vec<_>>())
        })
    }

    /// Removes every message after `sequence` in one atomic step; how many it removed.
    fn rewind_conversation<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::count)] sequence: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            storage.rewind_conversation(&session_id, sequence).await
        })
    }

    /// A new session from `source_session`'s messages up to `at_sequence`, its own task
    /// context and, with `checkpoint_id`, its thread (named like the session) up to that
    /// checkpoint into a thread named like the new session. Returns the new session.
    #[pyo3(signature = (source_session, new_session, at_sequence, checkpoint_id=None))]
    fn fork_session<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] source_session: String,
        #[pyo3(from_py_with = args::text)] new_session: String,
        #[pyo3(from_py_with = args::count)] at_sequence: u64,
        #[pyo3(from_py_with = args::optional_text)] checkpoint_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let thread = checkpoint_id.map(|checkpoint_id| ThreadFork {
            source_thread: source_session.clone(),
            new_thread: new_session.clone(),
            checkpoint_id,
        });
        let fork = Fork {
            source_session,
            new_session,
            at_sequence,
            thread,
        };
        let storage = self.storage()?;
        finish(py, false, async move {
            Ok(seed::session(&storage.fork_session(fork).await?))
        })
    }
}

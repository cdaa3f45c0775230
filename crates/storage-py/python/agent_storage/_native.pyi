"""Type stubs of the native module (``crates/storage-py/src/native.rs``).

Methods without ``blocking`` return an awaitable. Methods with ``blocking`` return an
awaitable by default, and the result itself with ``blocking=True`` (the native runtime runs
the call to completion with the GIL released; a call that completes without waiting, such as
a memory-backend one, keeps it). Checkpoint values are JSON values or typed
bytes, the ``(type, bytes)`` tuples of LangGraph's ``dumps_typed``.
"""

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

__version__: str

JsonValue = Any
ChannelValue = JsonValue | tuple[str, bytes]

class NativeStorage:
    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        config_file: str | None = None,
        use_env: bool = True,
    ) -> None: ...
    def backends(self) -> dict[str, str]: ...
    def initialize(self, blocking: bool = False) -> Any: ...
    def close(self, blocking: bool = False) -> Any: ...
    def health_check(self) -> Awaitable[dict[str, Any]]: ...
    def get_metrics(self) -> Awaitable[dict[str, Any]]: ...
    def cleanup_expired_sessions(self, max_idle_seconds: float) -> Awaitable[int]: ...

    # sessions, conversation, task context (the first seed's shapes)
    def create_session(
        self, session_id: str, user_id: str, metadata: Mapping[str, Any] | None = None
    ) -> Awaitable[Any]: ...
    def get_session(self, session_id: str) -> Awaitable[dict[str, Any] | None]: ...
    def update_session(
        self,
        session_id: str,
        metadata_patch: Mapping[str, Any] | None = None,
        add_requests: int = 0,
        add_processing_ms: int = 0,
        error: str | None = None,
    ) -> Awaitable[Any]: ...
    def end_session(self, session_id: str, status: str) -> Awaitable[Any]: ...
    def append_message(
        self,
        session_id: str,
        role: str,
        content: JsonValue,
        metadata: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        turn_id: str | None = None,
        tool_calls: list[str] | None = None,
        tool_result_for: str | None = None,
    ) -> Awaitable[Any]: ...
    def get_conversation_history(
        self, session_id: str, limit: int
    ) -> Awaitable[list[dict[str, Any]]]: ...
    def get_history_window(
        self,
        session_id: str,
        turns: int | None = None,
        limit: int | None = None,
        keep_tool_pairs: bool = False,
    ) -> Awaitable[list[dict[str, Any]]]: ...
    def compact_conversation(
        self,
        session_id: str,
        up_to: int,
        role: str,
        content: JsonValue,
        metadata: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        keep_replaced: bool = False,
    ) -> Awaitable[dict[str, Any]]: ...
    def get_replaced_messages(
        self, session_id: str, summary_sequence: int
    ) -> Awaitable[list[dict[str, Any]]]: ...
    def rewind_conversation(self, session_id: str, sequence: int) -> Awaitable[int]: ...
    def fork_session(
        self,
        source_session: str,
        new_session: str,
        at_sequence: int,
        checkpoint_id: str | None = None,
    ) -> Awaitable[dict[str, Any]]: ...
    def get_task_context(self, session_id: str) -> Awaitable[dict[str, Any] | None]: ...
    def store_task_context(
        self, session_id: str, value: JsonValue, expected_version: int | None = None
    ) -> Awaitable[dict[str, Any]]: ...
    def get_context(
        self, scope: str, version: int | None = None
    ) -> Awaitable[dict[str, Any] | None]: ...
    def list_context_versions(
        self, scope: str, before: int | None = None, limit: int = 10
    ) -> Awaitable[list[dict[str, Any]]]: ...
    def store_context(
        self,
        scope: str,
        value: JsonValue,
        expected_version: int | None = None,
        keep_versions: int = 100,
    ) -> Awaitable[dict[str, Any]]: ...
    def delete_context(self, scope: str) -> Awaitable[bool]: ...
    def list_context_scopes(
        self, after: str | None = None, limit: int = 100
    ) -> Awaitable[list[str]]: ...
    def get_merged_context(
        self, session_id: str, user_id: str | None = None
    ) -> Awaitable[dict[str, Any] | None]: ...

    # artifacts
    def save_artifact(
        self,
        scope: str,
        name: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, Any] | None = None,
        blocking: bool = False,
    ) -> Any: ...
    def get_artifact(
        self, scope: str, name: str, version: int | None = None, blocking: bool = False
    ) -> Any: ...
    def artifact_exists(
        self, scope: str, name: str, version: int | None = None, blocking: bool = False
    ) -> Any: ...
    def clear_artifacts(self, scope: str, blocking: bool = False) -> Any: ...

    # the first seed's checkpoints
    def store_seed_checkpoint(
        self,
        session_id: str,
        checkpoint_id: str,
        data: Mapping[str, JsonValue],
        metadata: Mapping[str, Any] | None = None,
        parent_checkpoint_id: str | None = None,
    ) -> Awaitable[Any]: ...
    def get_seed_checkpoint(
        self, session_id: str, checkpoint_id: str | None = None
    ) -> Awaitable[dict[str, Any] | None]: ...
    def list_seed_checkpoints(self, session_id: str, limit: int) -> Awaitable[list[dict[str, Any]]]: ...

    # LangGraph's checkpointer contract
    def put_checkpoint(
        self, checkpoint: Mapping[str, Any], new_versions: Mapping[str, str], blocking: bool = False
    ) -> Any: ...
    def get_checkpoint_tuple(
        self,
        thread_id: str,
        namespace: str,
        checkpoint_id: str | None = None,
        blocking: bool = False,
    ) -> Any: ...
    def list_checkpoint_tuples(
        self,
        thread_id: str,
        namespace: str | None = None,
        before: str | None = None,
        limit: int | None = None,
        filter: Mapping[str, Any] | None = None,
        blocking: bool = False,
    ) -> Any: ...
    def search_checkpoints(
        self,
        limit: int,
        namespace: str | None = None,
        before: str | None = None,
        filter: Mapping[str, Any] | None = None,
        blocking: bool = False,
    ) -> Any: ...
    def put_writes(
        self,
        thread_id: str,
        namespace: str,
        checkpoint_id: str,
        task_id: str,
        task_path: str,
        writes: Sequence[tuple[str, ChannelValue]],
        blocking: bool = False,
    ) -> Any: ...
    def delta_channel_history(
        self,
        thread_id: str,
        namespace: str,
        checkpoint_id: str,
        channels: Sequence[str],
        blocking: bool = False,
    ) -> Any: ...
    def delete_thread(self, thread_id: str, blocking: bool = False) -> Any: ...
    def delete_for_runs(self, run_ids: Sequence[str], blocking: bool = False) -> Any: ...
    def copy_thread(
        self, source_thread_id: str, target_thread_id: str, blocking: bool = False
    ) -> Any: ...
    def prune_checkpoints(self, thread_id: str, keep_last: int, blocking: bool = False) -> Any: ...
    def get_writes(
        self, thread_id: str, namespace: str, checkpoint_id: str, blocking: bool = False
    ) -> Any: ...

    # batches and retention
    def create_sessions(
        self, sessions: Sequence[tuple[str, str, Mapping[str, Any] | None]]
    ) -> Awaitable[dict[str, Any]]: ...
    def get_sessions(self, session_ids: Sequence[str]) -> Awaitable[list[dict[str, Any] | None]]: ...
    def apply_retention(
        self, policy: Mapping[str, Any] | None = None
    ) -> Awaitable[dict[str, int]]: ...

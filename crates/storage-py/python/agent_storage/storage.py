"""The seed's Python interface over the native facade.

Each method is a thin ``async def`` that turns the seed's parameters into the native
call's; validation, records and semantics are the Rust core's.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping

from . import _native
from .errors import InvalidInputError, SessionNotFoundError


def id_list(what: str, ids: Iterable[str]) -> list[str]:
    """``ids`` as a list; a single ``str`` (or bytes) is refused rather than read as the
    sequence of its characters."""
    if isinstance(ids, (str, bytes, bytearray)):
        raise InvalidInputError(f"{what} must be a list of ids, not a single {type(ids).__name__}")
    return list(ids)


class Storage:
    """One storage for every kind of agent state, configured as the Rust facade is.

    ``settings`` (dotted keys such as ``"backend"`` or ``"object.root"``, or whole
    sections as dicts) win over ``STORAGE_*`` environment variables (ignored when
    ``use_env`` is false), which win over ``config_file`` (else ``$STORAGE_CONFIG_FILE``,
    else ``./storage.toml`` if present), which win over the defaults (the local
    directory ``./.storage``).
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        use_env: bool = True,
    ) -> None:
        # What this storage was configured with, for ``StorageAdapter``; private, since
        # settings may hold credentials (a URL with a password).
        self._settings: dict[str, Any] = dict(settings or {})
        self.config_file = os.fspath(config_file) if config_file else None
        self.use_env = use_env
        self._native = _native.NativeStorage(self._settings, self.config_file, use_env)

    @property
    def native(self) -> _native.NativeStorage:
        """The native object, for calls the seed interface does not cover."""
        return self._native

    def backends(self) -> dict[str, str]:
        """The backend serving each kind."""
        return self._native.backends()

    # --- lifecycle -----------------------------------------------------------------------

    async def initialize(self) -> None:
        await self._native.initialize()

    async def close(self) -> None:
        await self._native.close()

    async def __aenter__(self) -> "Storage":
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health_check(self) -> dict:
        return await self._native.health_check()

    async def get_metrics(self) -> dict:
        return await self._native.get_metrics()

    async def cleanup_expired_sessions(self, max_idle_hours: float = 24) -> int:
        return await self._native.cleanup_expired_sessions(max_idle_hours * 3600.0)

    # --- sessions ------------------------------------------------------------------------

    async def create_session(
        self, session_id: str, user_id: str, metadata: dict | None = None
    ) -> dict:
        return await self._native.create_session(session_id, user_id, metadata)

    async def get_session(self, session_id: str) -> dict | None:
        return await self._native.get_session(session_id)

    async def update_session(
        self,
        session_id: str,
        updates: dict | None = None,
        increment_requests: bool = False,
        add_processing_time: float = 0.0,
        mark_error: bool | str = False,
    ) -> bool:
        """Merges ``updates`` into the metadata and counts a request, processing time
        (seconds) and an error, atomically. ``False`` when the session does not exist.
        ``mark_error`` may be the error's message."""
        if isinstance(mark_error, str):
            error = mark_error
        else:
            error = "error marked by update_session" if mark_error else None
        millis = add_processing_time * 1000
        if not (math.isfinite(millis) and millis >= 0):
            raise InvalidInputError(
                "add_processing_time must be a finite number of seconds, 0 or more; "
                f"got {add_processing_time!r}"
            )
        try:
            await self._native.update_session(
                session_id,
                updates,
                1 if increment_requests else 0,
                round(millis),
                error,
            )
        except SessionNotFoundError:
            return False
        return True

    async def end_session(self, session_id: str, status: str = "completed") -> bool:
        """``False`` when the session does not exist."""
        try:
            await self._native.end_session(session_id, status)
        except SessionNotFoundError:
            return False
        return True

    # --- conversation --------------------------------------------------------------------

    async def add_conversation_message(
        self,
        session_id: str,
        role: str,
        content: Any,
        metadata: dict | None = None,
        *,
        client_id: str | None = None,
        turn_id: str | None = None,
        tool_calls: list[str] | None = None,
        tool_result_for: str | None = None,
    ) -> bool:
        """Appends a message; with ``client_id`` a retried append adds nothing.

        ``turn_id`` places it in a turn (consecutive messages with one turn id are one
        turn), ``tool_calls`` names the tool calls it makes and ``tool_result_for`` the call
        whose result it is."""
        await self._native.append_message(
            session_id,
            role,
            content,
            metadata,
            client_id,
            turn_id,
            tool_calls,
            tool_result_for,
        )
        return True

    async def get_conversation_history(self, session_id: str, limit: int = 50) -> list[dict]:
        """The last ``limit`` messages, oldest first."""
        return await self._native.get_conversation_history(session_id, limit)

    async def get_history_window(
        self,
        session_id: str,
        *,
        turns: int | None = None,
        limit: int | None = None,
        keep_tool_pairs: bool = False,
    ) -> list[dict]:
        """The last ``turns`` turns whole, or the last ``limit`` messages; with
        ``keep_tool_pairs`` never a tool result without its call. Oldest first."""
        return await self._native.get_history_window(session_id, turns, limit, keep_tool_pairs)

    async def compact_conversation(
        self,
        session_id: str,
        up_to: int,
        summary: Any,
        *,
        role: str = "system",
        metadata: dict | None = None,
        client_id: str | None = None,
        keep_replaced: bool = False,
    ) -> dict:
        """Replaces the messages up to ``up_to`` by one summary message stored at ``up_to``,
        atomically; later messages keep their numbers. With ``keep_replaced`` the originals
        stay readable with :meth:`get_replaced_messages`. Returns the summary message."""
        return await self._native.compact_conversation(
            session_id, up_to, role, summary, metadata, client_id, keep_replaced
        )

    async def get_replaced_messages(self, session_id: str, summary_sequence: int) -> list[dict]:
        """The messages a kept compaction replaced, oldest first."""
        return await self._native.get_replaced_messages(session_id, summary_sequence)

    async def rewind_conversation(self, session_id: str, sequence: int) -> int:
        """Removes every message after ``sequence`` atomically; how many it removed."""
        return await self._native.rewind_conversation(session_id, sequence)

    async def fork_session(
        self,
        source_session: str,
        new_session: str,
        at_sequence: int,
        *,
        checkpoint_id: str | None = None,
    ) -> dict:
        """A new session from ``source_session``'s messages up to ``at_sequence``, its own
        task context and, with ``checkpoint_id``, its thread up to that checkpoint (into
        the thread named like the new session). Returns the new session."""
        return await self._native.fork_session(
            source_session, new_session, at_sequence, checkpoint_id
        )

    # --- checkpoints (the seed's; LangGraph's saver is agent_storage.langgraph) ---------
    # A seed checkpoint's thread is ``thread_id`` (the seed's ``ICheckpointStorage`` and
    # ``ICheckpointerBackend`` name it so; agents usually pass the session id).

    async def store_checkpoint(
        self,
        thread_id: str,
        checkpoint_id: str,
        checkpoint_data: dict,
        metadata: dict | None = None,
        parent_checkpoint_id: str | None = None,
    ) -> bool:
        await self._native.store_seed_checkpoint(
            thread_id, checkpoint_id, checkpoint_data, metadata, parent_checkpoint_id
        )
        return True

    #: ``ICheckpointerBackend.put_checkpoint``: the same store as ``store_checkpoint``.
    put_checkpoint = store_checkpoint

    async def get_checkpoint(
        self, thread_id: str, checkpoint_id: str | None = None
    ) -> dict | None:
        """The named checkpoint, or the latest without an id."""
        return await self._native.get_seed_checkpoint(thread_id, checkpoint_id)

    async def list_checkpoints(self, thread_id: str, limit: int = 10) -> list[dict]:
        """Newest first."""
        return await self._native.list_seed_checkpoints(thread_id, limit)

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        task_id: str,
        writes_data: list[tuple[str, Any]],
        *,
        task_path: str = "",
    ) -> bool:
        """Stores a task's writes, ``[(channel, value), ...]``, against a checkpoint id
        (which need not be stored yet). A retried write keeps the first value stored at its
        (task, index); LangGraph's special channels (``__error__``, ``__interrupt__``, ...)
        keep the last."""
        await self._native.put_writes(
            thread_id, "", checkpoint_id, task_id, task_path, list(writes_data)
        )
        return True

    async def get_writes(self, thread_id: str, checkpoint_id: str) -> list[tuple[str, str, Any]]:
        """The writes stored against a checkpoint id as LangGraph's pending writes,
        ``(task_id, channel, value)``, ordered by task path, task id and index."""
        writes = await self._native.get_writes(thread_id, "", checkpoint_id)
        return [(task_id, channel, value) for task_id, channel, value, _, _ in writes]

    # --- batches -------------------------------------------------------------------------

    async def create_sessions(
        self, sessions: list[Mapping[str, Any] | tuple[str, str] | tuple[str, str, dict | None]]
    ) -> dict:
        """Creates many sessions in one batch, each a dict with ``session_id``,
        ``user_id`` and optional ``metadata`` (or a ``(session_id, user_id[, metadata])``
        tuple). Returns ``{"created": [session, ...], "already_existed": [session_id, ...]}``
        in input order: an id with a live session is left untouched, and bad input creates
        nothing."""
        items = []
        for position, session in enumerate(sessions):
            if isinstance(session, Mapping) and "session_id" in session and "user_id" in session:
                items.append(
                    (session["session_id"], session["user_id"], session.get("metadata"))
                )
            elif isinstance(session, (tuple, list)) and len(session) in (2, 3):
                items.append((session[0], session[1], session[2] if len(session) == 3 else None))
            else:
                raise InvalidInputError(
                    f"sessions[{position}]: expected a dict with session_id and user_id, or "
                    f"a (session_id, user_id[, metadata]) tuple; got {session!r:.200}"
                )
        return await self._native.create_sessions(items)

    async def get_sessions(self, session_ids: list[str]) -> list[dict | None]:
        """Reads many sessions in one batch: in input order, ``None`` where there is none."""
        return await self._native.get_sessions(id_list("session_ids", session_ids))

    # --- retention -----------------------------------------------------------------------

    async def apply_retention(self, policy: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Trims every history kind ``policy`` limits, oldest first and never the newest
        record of a series: ``{"messages": {"keep_last": 100}, "checkpoints":
        {"max_age_secs": 604800}, ...}`` (kinds ``messages``, ``context_versions``,
        ``checkpoints``, ``artifact_versions``), or the configured
        ``cleanup.retention`` when ``None``. Returns how many records each kind lost."""
        return await self._native.apply_retention(None if policy is None else dict(policy))

    # --- task context --------------------------------------------------------------------

    async def get_task_context(self, session_id: str) -> Any | None:
        record = await self._native.get_task_context(session_id)
        return None if record is None else record["value"]

    async def store_task_context(
        self, session_id: str, context: Any, expected_version: int | None = None
    ) -> bool:
        """Stores the context; with ``expected_version`` (0: none stored yet) only if the
        stored version is still that one, else :class:`ConflictError`."""
        await self._native.store_task_context(session_id, context, expected_version)
        return True

    # Scoped contexts: ``scope`` is ``"app"`` (every session of the namespace),
    # ``"user:<id>"`` (a user's sessions) or ``"session:<id>"`` (one session's own).

    async def get_context(self, scope: str, version: int | None = None) -> dict | None:
        """The scope's current context record, or its kept ``version``; ``None`` if none."""
        return await self._native.get_context(scope, version)

    async def list_context_versions(
        self, scope: str, *, before: int | None = None, limit: int = 10
    ) -> list[dict]:
        """The kept versions below ``before``, newest first."""
        return await self._native.list_context_versions(scope, before, limit)

    async def store_context(
        self,
        scope: str,
        context: Any,
        expected_version: int | None = None,
        *,
        keep_versions: int = 100,
    ) -> dict:
        """Stores the scope's next version (compare-and-set as in ``store_task_context``),
        keeping the ``keep_versions`` newest; returns the stored record."""
        return await self._native.store_context(scope, context, expected_version, keep_versions)

    async def delete_context(self, scope: str) -> bool:
        """Removes the scope's context with every version."""
        return await self._native.delete_context(scope)

    async def list_context_scopes(self, *, after: str | None = None, limit: int = 100) -> list[str]:
        """Every scope with a context, in key order."""
        return await self._native.list_context_scopes(after, limit)

    async def get_merged_context(self, session_id: str, user_id: str | None = None) -> Any | None:
        """The session's view: application, then user, then session context merged (the
        more specific scope wins per top-level key); ``None`` when none exists."""
        merged = await self._native.get_merged_context(session_id, user_id)
        return None if merged is None else merged["value"]

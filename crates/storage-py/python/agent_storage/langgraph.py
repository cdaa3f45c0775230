"""A LangGraph checkpointer over the Rust core: :class:`StorageSaver`.

LangGraph's checkpoint dict maps onto ``storage_core::Checkpoint``: ``v`` is
``format_version``, ``ts`` is ``created_at`` (its UTC offset kept), channel versions are
strings, metadata is stored as JSON. Ordering, ``before``, filters, limits, pending-write
indexes and deletion are the Rust core's (the same contract on every backend).

Channel values and pending writes are serialized with the saver's ``serde``
(``dumps_typed`` gives a type tag and bytes) and stored by the core as typed bytes: the
bytes as they are, on every backend, never base64. Values written by the previous release
of this saver (JSON ``{"__typed__": type, "b64": base64(bytes)}``) still read.
"""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

try:
    from langgraph.checkpoint.base import DeltaChannelHistory
except ImportError:  # a LangGraph before delta channels: the overrides are simply unused
    DeltaChannelHistory = dict  # type: ignore[misc,assignment]

from .storage import Storage, id_list

# The JSON wrapper of typed bytes written by the release before the core stored them raw.
_TYPED = "__typed__"
# Pages of the cross-thread search when the caller sets no limit.
_SEARCH_PAGE = 100

__all__ = ["StorageSaver"]


class StorageSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer storing in an :class:`agent_storage.Storage`.

    Sync methods wait on the native runtime with the GIL released; async ones are
    awaitables. Call ``storage.initialize()`` (or ``setup()``) first.
    """

    def __init__(self, storage: Storage, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.storage = storage
        self._native = storage.native

    def setup(self) -> None:
        """Initializes the storage (idempotent)."""
        self._native.initialize(blocking=True)

    async def asetup(self) -> None:
        await self._native.initialize()

    # --- values --------------------------------------------------------------------------

    def _load(self, stored: Any) -> Any:
        if isinstance(stored, tuple):
            return self.serde.loads_typed(stored)
        # A value the previous release stored inside JSON.
        return self.serde.loads_typed((stored[_TYPED], base64.b64decode(stored["b64"])))

    def _record(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[dict, dict]:
        configurable = config["configurable"]
        values = checkpoint["channel_values"]
        # The native layer stores a (str, bytes) tuple as typed bytes.
        dumps = self.serde.dumps_typed
        # Only the channels that changed carry a value: the others are stored already.
        channel_values = {
            channel: dumps(values[channel]) for channel in new_versions if channel in values
        }
        record = {
            "thread_id": configurable["thread_id"],
            "namespace": configurable.get("checkpoint_ns", ""),
            "id": checkpoint["id"],
            "parent_id": configurable.get("checkpoint_id"),
            "channel_values": channel_values,
            "channel_versions": {k: str(v) for k, v in checkpoint["channel_versions"].items()},
            "versions_seen": {
                node: {k: str(v) for k, v in seen.items()}
                for node, seen in checkpoint["versions_seen"].items()
            },
            "metadata": get_serializable_checkpoint_metadata(config, metadata),
            "created_at": checkpoint["ts"],
            "format_version": checkpoint["v"],
        }
        updated = checkpoint.get("updated_channels")
        if updated is not None:
            record["updated_channels"] = list(updated)
        return record, {k: str(v) for k, v in new_versions.items()}

    def _tuple(self, stored: dict) -> CheckpointTuple:
        record = stored["checkpoint"]
        thread_id, namespace = record["thread_id"], record["namespace"]
        # Typed bytes (every value this saver writes) go straight to the serializer; only a
        # value of the previous release takes `_load`'s JSON path. One bound method for the
        # whole tuple: a method call per value cost about a tenth of a get.
        loads, load = self.serde.loads_typed, self._load
        checkpoint: Checkpoint = {
            "v": record["format_version"],
            "id": record["id"],
            "ts": record["created_at"],
            "channel_values": {
                k: loads(v) if v.__class__ is tuple else load(v)
                for k, v in record["channel_values"].items()
            },
            "channel_versions": record["channel_versions"],
            "versions_seen": record["versions_seen"],
            # None: the caller did not say (LangGraph's "unknown").
            "updated_channels": record.get("updated_channels"),
        }
        parent = record.get("parent_id")
        return CheckpointTuple(
            config=_config(thread_id, namespace, record["id"]),
            checkpoint=checkpoint,
            metadata=record["metadata"],
            parent_config=_config(thread_id, namespace, parent) if parent else None,
            pending_writes=[
                (task_id, channel, loads(v) if v.__class__ is tuple else load(v))
                for task_id, channel, v, _, _ in stored["pending_writes"]
            ],
        )

    def _writes(self, writes: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        dumps = self.serde.dumps_typed
        return [(channel, dumps(value)) for channel, value in writes]

    def _histories(
        self, stored: dict | None, channels: Sequence[str]
    ) -> dict[str, DeltaChannelHistory]:
        """The native histories in LangGraph's shape; an unknown target has no seeds and
        no writes, as the base class answers."""
        result: dict[str, DeltaChannelHistory] = {}
        for channel in channels:
            history = (stored or {}).get(channel, {"writes": []})
            entry: DeltaChannelHistory = {
                "writes": [
                    (task_id, channel, self._load(value))
                    for task_id, channel, value, _, _ in history["writes"]
                ]
            }
            if "seed" in history:
                entry["seed"] = self._load(history["seed"])
            result[channel] = entry
        return result

    # --- sync ----------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        record, versions = self._record(config, checkpoint, metadata, new_versions)
        self._native.put_checkpoint(record, versions, blocking=True)
        return _config(record["thread_id"], record["namespace"], record["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        c = config["configurable"]
        self._native.put_writes(
            c["thread_id"],
            c.get("checkpoint_ns", ""),
            c["checkpoint_id"],
            task_id,
            task_path,
            self._writes(writes),
            blocking=True,
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        c = config["configurable"]
        stored = self._native.get_checkpoint_tuple(
            c["thread_id"], c.get("checkpoint_ns", ""), get_checkpoint_id(config), blocking=True
        )
        return None if stored is None else self._tuple(stored)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        plan = _ListPlan(config, filter, before, limit)
        if plan.done:
            return
        if plan.thread_id is not None:
            for stored in self._native.list_checkpoint_tuples(*plan.thread_args(), blocking=True):
                if plan.admits(stored):
                    yield self._tuple(stored)
            return
        while (args := plan.next_search()) is not None:
            page = self._native.search_checkpoints(*args, blocking=True)
            for stored in plan.take(page):
                yield self._tuple(stored)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """LangGraph's delta channel history in one native call (the base class walks
        the parent chain with one ``get_tuple`` per ancestor)."""
        if not channels:
            return {}
        latest = self.get_tuple(config) if _is_latest(config) else None
        target = _target(config, latest)
        if target is None:
            return self._histories(None, channels)
        stored = self._native.delta_channel_history(*target, list(channels), blocking=True)
        return self._histories(stored, channels)

    def delete_thread(self, thread_id: str) -> None:
        self._native.delete_thread(thread_id, blocking=True)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._native.delete_for_runs(id_list("run_ids", run_ids), blocking=True)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._native.copy_thread(source_thread_id, target_thread_id, blocking=True)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in _prune_threads(thread_ids, strategy):
            if strategy == "delete":
                self._native.delete_thread(thread_id, blocking=True)
            else:
                self._native.prune_checkpoints(thread_id, 1, blocking=True)

    # --- async ---------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        record, versions = self._record(config, checkpoint, metadata, new_versions)
        await self._native.put_checkpoint(record, versions)
        return _config(record["thread_id"], record["namespace"], record["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        c = config["configurable"]
        await self._native.put_writes(
            c["thread_id"],
            c.get("checkpoint_ns", ""),
            c["checkpoint_id"],
            task_id,
            task_path,
            self._writes(writes),
        )

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        if not channels:
            return {}
        latest = await self.aget_tuple(config) if _is_latest(config) else None
        target = _target(config, latest)
        if target is None:
            return self._histories(None, channels)
        stored = await self._native.delta_channel_history(*target, list(channels))
        return self._histories(stored, channels)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        c = config["configurable"]
        stored = await self._native.get_checkpoint_tuple(
            c["thread_id"], c.get("checkpoint_ns", ""), get_checkpoint_id(config)
        )
        return None if stored is None else self._tuple(stored)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        plan = _ListPlan(config, filter, before, limit)
        if plan.done:
            return
        if plan.thread_id is not None:
            for stored in await self._native.list_checkpoint_tuples(*plan.thread_args()):
                if plan.admits(stored):
                    yield self._tuple(stored)
            return
        while (args := plan.next_search()) is not None:
            page = await self._native.search_checkpoints(*args)
            for stored in plan.take(page):
                yield self._tuple(stored)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._native.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._native.delete_for_runs(id_list("run_ids", run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._native.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in _prune_threads(thread_ids, strategy):
            if strategy == "delete":
                await self._native.delete_thread(thread_id)
            else:
                await self._native.prune_checkpoints(thread_id, 1)

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """Zero-padded so that string order is numeric order (as InMemorySaver does)."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"


def _config(thread_id: str, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": namespace,
            "checkpoint_id": checkpoint_id,
        }
    }


def _prune_threads(thread_ids: Sequence[str], strategy: str) -> Sequence[str]:
    if strategy not in ("keep_latest", "delete"):
        raise ValueError(f"unknown prune strategy {strategy!r}")
    return thread_ids


class _ListPlan:
    """LangGraph's ``list`` arguments as native calls: one thread's listing, or the
    cross-thread search paged by its cursor until ``limit`` is reached."""

    def __init__(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> None:
        configurable = (config or {}).get("configurable", {})
        self.thread_id = configurable.get("thread_id")
        self.namespace = configurable.get("checkpoint_ns")
        # A checkpoint id in the config lists only that checkpoint (as InMemorySaver does).
        self.checkpoint_id = configurable.get("checkpoint_id")
        self.filter = filter or None
        self.before = get_checkpoint_id(before) if before else None
        self.limit = limit
        self.cursor = self.before
        self.done = limit is not None and limit <= 0

    def thread_args(self) -> tuple:
        # With a checkpoint id the limit applies after it is picked out.
        limit = None if self.checkpoint_id else self.limit
        return (self.thread_id, self.namespace, self.before, limit, self.filter)

    def admits(self, stored: dict) -> bool:
        return self.checkpoint_id is None or stored["checkpoint"]["id"] == self.checkpoint_id

    def next_search(self) -> tuple | None:
        if self.done:
            return None
        size = _SEARCH_PAGE if self.limit is None else self.limit
        return (size, self.namespace, self.cursor, self.filter)

    def take(self, page: dict) -> list[dict]:
        items = page["items"]
        if self.limit is not None:
            # A page may exceed its limit to keep equal ids together; LangGraph wants
            # at most `limit`.
            items = items[: self.limit]
            self.limit -= len(items)
        self.cursor = page.get("next_cursor")
        self.done = self.cursor is None or (self.limit is not None and self.limit <= 0)
        return items


def _is_latest(config: RunnableConfig) -> bool:
    """Whether `config` names no checkpoint id, so the thread's latest is meant."""
    return get_checkpoint_id(config) is None


def _target(
    config: RunnableConfig, latest: CheckpointTuple | None
) -> tuple[str, str, str] | None:
    """(thread, namespace, checkpoint id) of a delta history's target: the id `config`
    names, else that of `latest` (the thread's latest, read by the caller); `None` when the
    thread has no checkpoint."""
    c = config["configurable"]
    checkpoint_id = get_checkpoint_id(config)
    if checkpoint_id is None:
        if latest is None:
            return None
        checkpoint_id = latest.config["configurable"]["checkpoint_id"]
    return c["thread_id"], c.get("checkpoint_ns", ""), checkpoint_id

"""The seed's checkpointer-backend calls, session batches, retention, the factory and the
failover adapter."""

from __future__ import annotations

import socket

import pytest

import agent_storage as st
from agent_storage import StorageAdapter, StorageFactory, StorageType


def object_storage(path) -> st.Storage:
    return StorageFactory.create_storage_backend(
        StorageType.OBJECT, {"object_url": f"file://{path}"}, use_env=False
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_checkpointer_backend_calls_by_the_seeds_names(storage):
    assert await storage.put_checkpoint(
        thread_id="t1", checkpoint_id="c1", checkpoint_data={"step": 1}, metadata={"m": 1}
    )
    assert await storage.put_checkpoint("t1", "c2", {"step": 2}, parent_checkpoint_id="c1")
    latest = await storage.get_checkpoint(thread_id="t1")
    assert (latest["checkpoint_id"], latest["data"]) == ("c2", {"step": 2})
    assert latest["parent_checkpoint_id"] == "c1"
    listed = await storage.list_checkpoints(thread_id="t1", limit=10)
    assert [cp["checkpoint_id"] for cp in listed] == ["c2", "c1"]

    assert await storage.put_writes(
        thread_id="t1",
        checkpoint_id="c2",
        task_id="task-b",
        writes_data=[("answer", {"text": "hi", "n": 2**63 - 1}), ("log", "done")],
    )
    assert await storage.put_writes("t1", "c2", "task-a", [("answer", "first")])
    # A retried normal write keeps its first value.
    assert await storage.put_writes("t1", "c2", "task-a", [("answer", "again")])
    assert await storage.get_writes(thread_id="t1", checkpoint_id="c2") == [
        ("task-a", "answer", "first"),
        ("task-b", "answer", {"text": "hi", "n": 2**63 - 1}),
        ("task-b", "log", "done"),
    ]
    assert await storage.get_writes("t1", "unknown") == []


async def test_session_batches_keep_input_order(storage):
    await storage.create_session("s2", "bob")
    batch = await storage.create_sessions(
        [
            {"session_id": "s1", "user_id": "alice", "metadata": {"k": 1}},
            ("s2", "bob"),
            ("s3", "carol", None),
        ]
    )
    assert [s["session_id"] for s in batch["created"]] == ["s1", "s3"]
    assert batch["created"][0]["metadata"] == {"k": 1}
    assert batch["already_existed"] == ["s2"]
    got = await storage.get_sessions(["s3", "missing", "s1"])
    assert [s and s["session_id"] for s in got] == ["s3", None, "s1"]
    assert got[0] == await storage.get_session("s3")


async def test_a_bad_batch_creates_nothing(storage):
    with pytest.raises(st.InvalidInputError):
        await storage.create_sessions([("s1", "alice"), ("", "bob")])
    with pytest.raises(st.InvalidInputError):
        await storage.create_sessions([("s1", "alice", ["not", "a", "dict"])])
    assert await storage.get_sessions(["s1"]) == [None]


async def test_apply_retention_trims_oldest_first(storage):
    for i in range(5):
        await storage.add_conversation_message("s1", "user", f"m{i}")
    removed = await storage.apply_retention({"messages": {"keep_last": 2}})
    assert removed == {
        "messages": 3,
        "context_versions": 0,
        "checkpoints": 0,
        "artifact_versions": 0,
    }
    history = await storage.get_conversation_history("s1")
    assert [m["content"] for m in history] == ["m3", "m4"]
    assert [m["sequence"] for m in history] == [4, 5]
    # Nothing to do the second time; no policy at all removes nothing.
    assert (await storage.apply_retention({"messages": {"keep_last": 2}}))["messages"] == 0
    assert (await storage.apply_retention())["messages"] == 0


async def test_bad_retention_is_refused_and_removes_nothing(storage):
    for i in range(3):
        await storage.add_conversation_message("s1", "user", f"m{i}")
    with pytest.raises(st.InvalidInputError):
        await storage.apply_retention({"messages": {"keep_last": 0}})
    with pytest.raises(st.InvalidInputError, match="keep_lasts"):
        await storage.apply_retention({"messages": {"keep_lasts": 1}})
    assert len(await storage.get_conversation_history("s1")) == 3


async def test_apply_retention_without_a_policy_applies_the_configured_one(tmp_path):
    store = st.Storage(
        {
            "backend": "memory",
            "cleanup.retention.messages.keep_last": 1,
        },
        use_env=False,
    )
    await store.initialize()
    for i in range(3):
        await store.add_conversation_message("s1", "user", f"m{i}")
    assert (await store.apply_retention())["messages"] == 2
    assert [m["content"] for m in await store.get_conversation_history("s1")] == ["m2"]
    await store.close()


async def test_factory_builds_on_the_named_backend(tmp_path):
    store = object_storage(tmp_path / "objects")
    assert set(store.backends().values()) == {"object"}
    await store.initialize()
    await store.create_session("s1", "alice")
    assert (await store.get_session("s1"))["user_id"] == "alice"
    await store.close()
    assert list((tmp_path / "objects").iterdir()), "the object_url was not used"

    by_name = StorageFactory.create_storage_backend("memory", use_env=False)
    assert set(by_name.backends().values()) == {"memory"}
    with pytest.raises(st.StorageConfigError, match="nosuch"):
        StorageFactory.create_storage_backend("nosuch", use_env=False)
    with pytest.raises(st.StorageConfigError, match="no_such_key"):
        StorageFactory.create_storage_backend(
            StorageType.MEMORY, {"memory.no_such_key": 1}, use_env=False
        )


def test_the_adapter_refuses_a_fallback_on_the_primary_backend(tmp_path):
    with pytest.raises(st.StorageConfigError, match="fallback"):
        StorageAdapter(object_storage(tmp_path / "a"), object_storage(tmp_path / "b"))


def test_the_adapter_refuses_a_fallback_configured_elsewhere(tmp_path):
    """The fallback's own configuration file would be silently ignored."""
    config = tmp_path / "fallback.toml"
    config.write_text(f'[object]\nurl = "file://{tmp_path}/fallback"\n')
    fallback = StorageFactory.create_storage_backend(
        StorageType.OBJECT, config_file=config, use_env=False
    )
    primary = StorageFactory.create_storage_backend(StorageType.MEMORY, use_env=False)
    with pytest.raises(st.StorageConfigError, match="same configuration file"):
        StorageAdapter(primary, fallback)


def test_the_seeds_spelling_of_postgresql_is_accepted():
    assert StorageType("postgresql") is StorageType.POSTGRESQL
    assert StorageType("postgres") is StorageType.POSTGRESQL


async def test_the_adapter_fails_over_to_the_fallback_and_loses_nothing(tmp_path):
    """The primary is a Redis URL where nothing listens: every call is answered by the
    fallback through the facade's failover, and what was written is there to read."""
    try:
        primary = StorageFactory.create_storage_backend(
            StorageType.REDIS,
            {
                "redis_url": f"redis://127.0.0.1:{closed_port()}",
                "redis.connect_timeout_ms": 200,
            },
            use_env=False,
        )
    except st.StorageConfigError as err:
        pytest.skip(f"this build has no redis backend (build with --features redis): {err}")
    fallback = object_storage(tmp_path / "fallback")
    adapter = StorageAdapter(
        primary,
        fallback,
        {"failure_threshold": 1, "journal_dir": str(tmp_path / "journal")},
    )
    assert adapter.primary is primary and adapter.fallback is fallback
    assert adapter.backends()["sessions"] == "redis"
    # The first read finds the primary down and opens the breaker (threshold 1); the
    # writes then go to the fallback and its journal.
    assert await adapter.get_session("s1") is None
    await adapter.create_session("s1", "alice")
    await adapter.add_conversation_message("s1", "user", "hello")
    assert (await adapter.get_session("s1"))["user_id"] == "alice"
    history = await adapter.get_conversation_history("s1")
    assert [m["content"] for m in history] == ["hello"]
    # The journal holds the writes for the primary's return.
    assert list((tmp_path / "journal").iterdir())

"""The network backends, Redis and PostgreSQL, when this build has them and a server is at
hand.

`cargo xtask test` builds the extension with `--features redis,postgres` and, unless
STORAGE_TEST_REDIS_URL / STORAGE_TEST_POSTGRES_URL name servers, the fixtures in conftest
start throwaway ones on free loopback ports (as the Rust testkit does). Without the feature
or a server the tests are reported as skipped with the reason, never as passed.
"""

from __future__ import annotations

import pytest

import agent_storage as st
from agent_storage import Storage
from agent_storage.langgraph import StorageSaver

from .conftest import SERVER_BACKENDS, free_port, server_storage


@pytest.fixture(params=SERVER_BACKENDS)
async def server_store(request):
    store = server_storage(request, request.param)
    await store.initialize()
    yield store
    await store.close()


async def test_seed_interface_on_servers(server_store):
    store = server_store
    assert store.backends()["sessions"] in SERVER_BACKENDS
    await store.create_session("s1", "alice", {"a": 1})
    assert await store.update_session("s1", {"b": 2}, increment_requests=True)
    await store.add_conversation_message("s1", "user", "hi")
    await store.store_task_context("s1", {"plan": []}, expected_version=0)
    with pytest.raises(st.ConflictError):
        await store.store_task_context("s1", {"plan": []}, expected_version=0)
    session = await store.get_session("s1")
    assert session["metadata"] == {"a": 1, "b": 2}
    assert session["metrics"]["request_count"] == 1
    assert [m["content"] for m in await store.get_conversation_history("s1")] == ["hi"]
    assert (await store.health_check())["healthy"] is True
    assert await store.cleanup_expired_sessions(max_idle_hours=0) == 1


async def test_saver_on_servers(server_store):
    from langgraph.checkpoint.base import empty_checkpoint

    saver = StorageSaver(server_store)
    checkpoint = empty_checkpoint()
    version = saver.get_next_version(None, None)
    checkpoint["channel_values"] = {"a": b"bytes"}
    checkpoint["channel_versions"] = {"a": version}
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    stored = await saver.aput(config, checkpoint, {"step": 0}, {"a": version})
    await saver.aput_writes(stored, [("x", 1)], "task")
    got = await saver.aget_tuple(config)
    assert got.checkpoint["channel_values"] == {"a": b"bytes"}
    assert got.pending_writes == [("task", "x", 1)]
    await saver.adelete_thread("t1")
    assert await saver.aget_tuple(config) is None


async def test_unreachable_server_is_a_temporary_connection_error():
    port = free_port()
    try:
        store = Storage(
            {"backend": "redis", "redis.url": f"redis://127.0.0.1:{port}",
             "retry.max_attempts": 1},
            use_env=False,
        )
    except st.StorageConfigError as err:
        pytest.skip(f"this build has no Redis backend (build with --features redis): {err}")
    with pytest.raises(st.StorageConnectionError) as caught:
        await store.initialize()
        await store.get_session("s1")
    assert caught.value.temporary is True

"""A network backend: Redis, when this build has it and a server is at hand.

`cargo xtask test` builds the extension with `--features redis` and, unless
STORAGE_TEST_REDIS_URL names a server, starts a throwaway `redis-server` on a free
loopback port (as the Rust testkit does). Without the feature or a server the tests are
reported as skipped with the reason, never as passed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

import agent_storage as st
from agent_storage import Storage
from agent_storage.langgraph import StorageSaver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    given = os.environ.get("STORAGE_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no STORAGE_TEST_REDIS_URL and no redis-server on PATH")
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def redis_storage(redis_url):
    settings = {
        "backend": "redis",
        "redis.url": redis_url,
        # A namespace per test: two namespaces never see each other's data.
        "redis.namespace": f"py{uuid.uuid4().hex[:12]}",
    }
    try:
        store = Storage(settings, use_env=False)
    except st.StorageConfigError as err:
        pytest.skip(f"this build has no Redis backend (build with --features redis): {err}")
    await store.initialize()
    yield store
    await store.close()


async def test_seed_interface_on_redis(redis_storage):
    store = redis_storage
    assert store.backends()["sessions"] == "redis"
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


async def test_saver_on_redis(redis_storage):
    from langgraph.checkpoint.base import empty_checkpoint

    saver = StorageSaver(redis_storage)
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
    port = _free_port()
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

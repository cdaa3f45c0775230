"""A network backend, when this build has one and a server is named.

The default build (the facade's default features) has the memory and local-directory
backends only; a wheel built with `--features redis` (see docs/python.md) runs this
against the server in STORAGE_TEST_REDIS_URL. Otherwise the test is reported as skipped
with the reason, never as passed.
"""

from __future__ import annotations

import os
import uuid

import pytest

import agent_storage as st
from agent_storage import Storage


async def test_sessions_and_history_on_redis():
    url = os.environ.get("STORAGE_TEST_REDIS_URL")
    if not url:
        pytest.skip("STORAGE_TEST_REDIS_URL is not set: no Redis server to test against")
    settings = {"backend": "redis", "redis.url": url, "redis.namespace": f"py{uuid.uuid4().hex[:8]}"}
    try:
        store = Storage(settings, use_env=False)
    except st.StorageConfigError as err:
        pytest.skip(f"this build has no Redis backend (default features only): {err}")
    await store.initialize()
    try:
        await store.create_session("s1", "alice")
        await store.update_session("s1", increment_requests=True)
        await store.add_conversation_message("s1", "user", "hi")
        assert (await store.get_session("s1"))["metrics"]["request_count"] == 1
        assert [m["content"] for m in await store.get_conversation_history("s1")] == ["hi"]
        assert await store.cleanup_expired_sessions(max_idle_hours=0) == 1
    finally:
        await store.close()

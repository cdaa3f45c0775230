"""The seed's interface on every built-in backend."""

from __future__ import annotations

import asyncio
from collections import UserDict, deque

import pytest

import agent_storage as st
from agent_storage import Storage


async def test_create_and_get_session_in_the_seed_shape(storage):
    created = await storage.create_session("s1", "alice", {"topic": "trips"})
    assert created["session_id"] == "s1"
    assert created["user_id"] == "alice"
    assert created["status"] == "active"
    assert created["metadata"] == {"topic": "trips"}
    assert created["metrics"] == {
        "request_count": 0,
        "total_processing_time": 0.0,
        "error_count": 0,
        "last_error": None,
    }
    assert await storage.get_session("s1") == created
    assert await storage.get_session("missing") is None


async def test_create_twice_is_already_exists(storage):
    await storage.create_session("s1", "alice")
    with pytest.raises(st.AlreadyExistsError) as caught:
        await storage.create_session("s1", "bob")
    assert isinstance(caught.value, st.StorageError)
    assert caught.value.temporary is False
    assert caught.value.kind == "already_exists"
    assert caught.value.operation == "create_session"


async def test_update_session_merges_and_counts(storage):
    await storage.create_session("s1", "alice", {"a": 1})
    assert await storage.update_session("s1", {"b": 2}, increment_requests=True,
                                        add_processing_time=0.25)
    assert await storage.update_session("s1", mark_error="tool timed out")
    session = await storage.get_session("s1")
    assert session["metadata"] == {"a": 1, "b": 2}
    assert session["metrics"] == {
        "request_count": 1,
        "total_processing_time": 0.25,
        "error_count": 1,
        "last_error": "tool timed out",
    }


async def test_concurrent_increments_are_atomic(storage):
    await storage.create_session("s1", "alice")
    await asyncio.gather(
        *(storage.update_session("s1", increment_requests=True) for _ in range(32))
    )
    assert (await storage.get_session("s1"))["metrics"]["request_count"] == 32


async def test_missing_session_is_false_or_session_not_found(storage):
    assert await storage.update_session("missing", {"a": 1}) is False
    assert await storage.end_session("missing") is False
    with pytest.raises(st.SessionNotFoundError) as caught:
        await storage.native.end_session("missing", "completed")
    assert isinstance(caught.value, st.NotFoundError)
    assert caught.value.temporary is False


async def test_end_session(storage):
    await storage.create_session("s1", "alice")
    assert await storage.end_session("s1", status="failed")
    session = await storage.get_session("s1")
    assert session["status"] == "failed"
    assert session["ended_at"] is not None
    with pytest.raises(st.InvalidInputError):
        await storage.end_session("s1", status="no-such-status")


async def test_conversation_history_is_the_last_n_oldest_first(storage):
    await storage.create_session("s1", "alice")
    for i in range(5):
        assert await storage.add_conversation_message("s1", "user", f"m{i}", {"i": i})
    history = await storage.get_conversation_history("s1", limit=3)
    assert [m["content"] for m in history] == ["m2", "m3", "m4"]
    assert [m["sequence"] for m in history] == [3, 4, 5]
    assert set(history[0]) >= {"role", "content", "timestamp", "metadata"}
    assert history[0]["metadata"] == {"i": 2}
    assert len(await storage.get_conversation_history("s1")) == 5


async def test_client_id_makes_a_retried_append_harmless(storage):
    await storage.add_conversation_message("s1", "user", "hi", client_id="req-1")
    await storage.add_conversation_message("s1", "user", "hi", client_id="req-1")
    assert len(await storage.get_conversation_history("s1")) == 1


async def test_structured_content_round_trips(storage):
    content = {"parts": [{"text": "hi"}, {"image": None}], "n": 1.5}
    await storage.add_conversation_message("s1", "assistant", content)
    assert (await storage.get_conversation_history("s1"))[0]["content"] == content


async def test_seed_checkpoints(storage):
    assert await storage.get_checkpoint("s1") is None
    assert await storage.store_checkpoint("s1", "c1", {"step": 1, "plan": ["a"]})
    assert await storage.store_checkpoint("s1", "c2", {"step": 2}, {"node": "n"}, "c1")
    latest = await storage.get_checkpoint("s1")
    assert latest["checkpoint_id"] == "c2"
    assert latest["data"] == {"step": 2}
    assert latest["metadata"] == {"node": "n"}
    assert latest["parent_checkpoint_id"] == "c1"
    assert (await storage.get_checkpoint("s1", "c1"))["data"] == {"step": 1, "plan": ["a"]}
    assert await storage.get_checkpoint("s1", "unknown") is None
    listed = await storage.list_checkpoints("s1")
    assert [c["checkpoint_id"] for c in listed] == ["c2", "c1"]
    assert [c["checkpoint_id"] for c in await storage.list_checkpoints("s1", limit=1)] == ["c2"]


async def test_task_context_with_compare_and_set(storage):
    assert await storage.get_task_context("s1") is None
    assert await storage.store_task_context("s1", {"plan": ["search"]}, expected_version=0)
    assert await storage.get_task_context("s1") == {"plan": ["search"]}
    with pytest.raises(st.ConflictError) as caught:
        await storage.store_task_context("s1", {"plan": []}, expected_version=0)
    assert caught.value.temporary is False
    assert await storage.store_task_context("s1", {"plan": ["read"]}, expected_version=1)
    assert await storage.store_task_context("s1", {"plan": ["write"]})
    record = await storage.native.get_task_context("s1")
    assert record["version"] == 3
    assert record["value"] == {"plan": ["write"]}


async def test_scoped_contexts_keep_their_versions(storage):
    await storage.store_context("user:alice", {"locale": "fr"}, keep_versions=2)
    await storage.store_context("user:alice", {"locale": "de"}, expected_version=1, keep_versions=2)
    stored = await storage.store_context("user:alice", {"locale": "it"}, keep_versions=2)
    assert stored["version"] == 3 and stored["scope"] == "user:alice"
    versions = await storage.list_context_versions("user:alice")
    assert [v["version"] for v in versions] == [3, 2]
    assert (await storage.get_context("user:alice", 2))["value"] == {"locale": "de"}
    assert await storage.get_context("user:alice", 1) is None  # trimmed with the store of 3
    await storage.store_context("app", {"tone": "formal", "locale": "en"})
    await storage.store_task_context("s1", {"goal": "refund"})
    assert await storage.get_merged_context("s1", "alice") == {
        "tone": "formal",
        "locale": "it",
        "goal": "refund",
    }
    assert await storage.list_context_scopes() == ["app", "session:s1", "user:alice"]
    with pytest.raises(st.InvalidInputError):
        await storage.get_context("team:x")
    assert await storage.delete_context("user:alice") is True
    assert await storage.get_context("user:alice") is None


async def test_turn_windows_keep_turns_and_tool_pairs_whole(storage):
    add = storage.add_conversation_message
    await add("s1", "user", "question", turn_id="t1")
    await add("s1", "assistant", "calling", turn_id="t1", tool_calls=["c1"])
    await add("s1", "tool", {"price": 12}, turn_id="t1", tool_result_for="c1")
    await add("s1", "assistant", "it costs 12", turn_id="t1")
    await add("s1", "user", "thanks", turn_id="t2")
    last_turn = await storage.get_history_window("s1", turns=1)
    assert [m["content"] for m in last_turn] == ["thanks"]
    assert len(await storage.get_history_window("s1", turns=2)) == 5
    paired = await storage.get_history_window("s1", limit=3, keep_tool_pairs=True)
    assert [m["content"] for m in paired][0] == "calling"
    assert paired[0]["tool_calls"] == ["c1"] and paired[1]["tool_result_for"] == "c1"
    assert paired[0]["turn_id"] == "t1"
    with pytest.raises(st.InvalidInputError):
        await storage.get_history_window("s1", turns=1, limit=1)


async def test_compaction_rewind_and_fork(storage):
    await storage.create_session("s1", "alice")
    for n in range(1, 7):
        await storage.add_conversation_message("s1", "user", f"m{n}")
    summary = await storage.compact_conversation("s1", 4, "m1-m4 in short", keep_replaced=True)
    assert summary["sequence"] == 4 and summary["role"] == "system"
    history = await storage.get_conversation_history("s1")
    assert [m["sequence"] for m in history] == [4, 5, 6]
    kept = await storage.get_replaced_messages("s1", 4)
    assert [m["content"] for m in kept] == ["m1", "m2", "m3", "m4"]
    with pytest.raises(st.ConflictError):
        await storage.compact_conversation("s1", 4, "again")
    fork = await storage.fork_session("s1", "s1-b", 5)
    assert fork["metadata"]["forked_from"] == {"session": "s1", "sequence": 5}
    assert [m["sequence"] for m in await storage.get_conversation_history("s1-b")] == [4, 5]
    assert await storage.rewind_conversation("s1", 4) == 2
    assert [m["sequence"] for m in await storage.get_conversation_history("s1")] == [4]
    assert len(await storage.get_conversation_history("s1-b")) == 2


async def test_health_metrics_and_cleanup(storage):
    health = await storage.health_check()
    assert health["healthy"] is True
    metrics = await storage.get_metrics()
    assert isinstance(metrics["counters"], dict)
    await storage.create_session("idle", "alice")
    await storage.add_conversation_message("idle", "user", "hi")
    assert await storage.cleanup_expired_sessions(max_idle_hours=24) == 0
    await asyncio.sleep(0.01)
    assert await storage.cleanup_expired_sessions(max_idle_hours=0) == 1
    assert await storage.get_session("idle") is None
    assert await storage.get_conversation_history("idle") == []


async def test_hostile_nesting_is_invalid_input_not_a_crash(storage):
    # Converting a value recurses once per level: 100,000 levels, or a list that contains
    # itself, would overflow the interpreter's stack if converted before being measured.
    deep = "leaf"
    for level in range(100_000):
        deep = [deep] if level % 2 else {"k": deep}
    looped = []
    looped.append(looped)
    # Sets, deques and other mappings are converted too, so they are measured too.
    looped_deque: deque = deque()
    looped_deque.append(looped_deque)
    deep_sets: frozenset = frozenset()
    for _ in range(100_000):
        deep_sets = frozenset([deep_sets])
    looped_mapping = UserDict()
    looped_mapping["self"] = looped_mapping
    await storage.create_session("s1", "alice")
    for content in (deep, looped, looped_deque, deep_sets, looped_mapping):
        with pytest.raises(st.InvalidInputError) as caught:
            await storage.add_conversation_message("s1", "user", content)
        assert "depth limit is 64" in str(caught.value)
    with pytest.raises(st.InvalidInputError):
        await storage.create_session("s2", "alice", {"deep": deep})
    assert await storage.get_conversation_history("s1") == []


async def test_invalid_ids_are_invalid_input(storage):
    with pytest.raises(st.InvalidInputError) as caught:
        await storage.create_session("", "alice")
    assert isinstance(caught.value, ValueError)
    assert caught.value.kind == "invalid_input"
    assert caught.value.temporary is False
    with pytest.raises(st.InvalidInputError):
        await storage.create_session("s1", "alice", {"bad": object()})


async def test_operations_after_close_are_temporary_connection_errors(tmp_path):
    store = Storage({"backend": "memory"}, use_env=False)
    await store.initialize()
    await store.close()
    with pytest.raises(st.StorageConnectionError) as caught:
        await store.create_session("s1", "alice")
    assert caught.value.temporary is True
    assert isinstance(caught.value, ConnectionError)


async def test_data_persists_in_the_local_directory(tmp_path):
    settings = {"backend": "object", "object.url": f"file://{tmp_path}/store"}
    first = Storage(settings, use_env=False)
    await first.initialize()
    await first.create_session("s1", "alice")
    await first.close()
    second = Storage(settings, use_env=False)
    await second.initialize()
    assert (await second.get_session("s1"))["user_id"] == "alice"
    await second.close()


async def test_async_context_manager(tmp_path):
    async with Storage({"backend": "memory"}, use_env=False) as store:
        await store.create_session("s1", "alice")
        assert await store.get_session("s1") is not None

"""StorageSaver against LangGraph's contract, after LangGraph's own saver tests, sync and
async, on every built-in backend; then LangGraph's conformance suite."""

from __future__ import annotations

import base64
import os

import pytest
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.types import TASKS

import agent_storage as st
from agent_storage.langgraph import StorageSaver

from .conftest import BACKENDS, SERVER_BACKENDS, make_storage, server_storage


def config(thread: str, ns: str = "", checkpoint_id: str | None = None) -> dict:
    configurable = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


@pytest.fixture
async def saver(storage):
    return StorageSaver(storage)


def chain(saver, thread: str, n: int, ns: str = "", **metadata) -> list[dict]:
    """Puts n checkpoints, each the child of the previous, with a changing channel."""
    configs, parent = [], config(thread, ns)
    checkpoint = empty_checkpoint()
    for step in range(n):
        version = saver.get_next_version(checkpoint["channel_versions"].get("a"), None)
        checkpoint = create_checkpoint(checkpoint, None, step)
        checkpoint["channel_values"] = {"a": {"step": step, "bytes": b"\x00\xff"}}
        checkpoint["channel_versions"] = {"a": version}
        parent = saver.put(parent, checkpoint, {"source": "loop", "step": step, **metadata},
                           {"a": version})
        configs.append(parent)
    return configs


async def test_put_and_get_tuple_round_trip(saver):
    (first, second) = chain(saver, "t1", 2)
    latest = saver.get_tuple(config("t1"))
    assert latest.config == second
    assert latest.parent_config == first
    assert latest.checkpoint["channel_values"] == {"a": {"step": 1, "bytes": b"\x00\xff"}}
    assert latest.metadata["step"] == 1 and latest.metadata["source"] == "loop"
    assert latest.checkpoint["ts"] and latest.checkpoint["v"] >= 1
    assert saver.get_tuple(first).checkpoint["channel_values"]["a"]["step"] == 0
    assert saver.get_tuple(config("t1", checkpoint_id="unknown")) is None
    assert saver.get_tuple(config("t2")) is None
    assert (await saver.aget_tuple(config("t1"))).config == second


async def test_listed_checkpoints_sharing_a_value_do_not_share_its_object(saver):
    # Two checkpoints naming one stored value (a step that changed only channel "b").
    parent, checkpoint = config("t1"), empty_checkpoint()
    for step, changed in enumerate([("a", "b"), ("b",)]):
        checkpoint = create_checkpoint(checkpoint, None, step)
        new_versions = {
            c: saver.get_next_version(checkpoint["channel_versions"].get(c), None)
            for c in changed
        }
        checkpoint["channel_versions"] = {**checkpoint["channel_versions"], **new_versions}
        checkpoint["channel_values"] = {"a": {"kept": [1, 2]}, "b": step}
        parent = saver.put(parent, checkpoint, {"step": step}, new_versions)
    newer, older = list(saver.list(config("t1")))
    assert newer.checkpoint["channel_values"] == {"a": {"kept": [1, 2]}, "b": 1}
    assert older.checkpoint["channel_values"] == {"a": {"kept": [1, 2]}, "b": 0}
    newer.checkpoint["channel_values"]["a"]["kept"].append(3)
    assert older.checkpoint["channel_values"]["a"] == {"kept": [1, 2]}, "aliased"
    native = await saver.storage.native.list_checkpoint_tuples("t1")
    shared = [t["checkpoint"]["channel_values"]["a"] for t in native]
    assert shared[0] == shared[1] and type(shared[0]) is tuple


async def test_updated_channels_round_trip(saver):
    checkpoint = create_checkpoint(empty_checkpoint(), None, 1)
    checkpoint["updated_channels"] = ["a", "branch:to:agent"]
    put = saver.put(config("t1"), checkpoint, {"step": 1}, {})
    assert saver.get_tuple(put).checkpoint["updated_channels"] == ["a", "branch:to:agent"]
    child = create_checkpoint(checkpoint, None, 2)
    child["updated_channels"] = None
    await saver.aput(put, child, {"step": 2}, {})
    listed = [t.checkpoint["updated_channels"] for t in saver.list(config("t1"))]
    assert listed == [None, ["a", "branch:to:agent"]]


async def test_channel_left_out_of_versions_is_absent(saver):
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"a": 1, "b": 2}
    checkpoint["channel_versions"] = {"a": saver.get_next_version(None, None)}
    saver.put(config("t1"), checkpoint, {}, checkpoint["channel_versions"])
    assert saver.get_tuple(config("t1")).checkpoint["channel_values"] == {"a": 1}


async def test_list_newest_first_with_before_limit_and_filter(saver):
    configs = chain(saver, "t1", 4)
    ids = [c["configurable"]["checkpoint_id"] for c in configs]
    listed = [t.config["configurable"]["checkpoint_id"] for t in saver.list(config("t1"))]
    assert listed == ids[::-1]
    before = [t.checkpoint["id"] for t in saver.list(config("t1"), before=configs[2])]
    assert before == [ids[1], ids[0]]
    assert [t.checkpoint["id"] for t in saver.list(config("t1"), limit=2)] == ids[:1:-1]
    filtered = [t.checkpoint["id"] for t in saver.list(config("t1"), filter={"step": 2})]
    assert filtered == [ids[2]]
    assert list(saver.list(config("t1"), filter={"step": "2"})) == []
    alisted = [t.checkpoint["id"] async for t in saver.alist(config("t1"), limit=3)]
    assert alisted == ids[:0:-1]


async def test_list_without_a_thread_spans_every_thread(saver):
    chain(saver, "t1", 2)
    chain(saver, "t2", 3, ns="inner")
    everything = list(saver.list(None))
    assert len(everything) == 5
    ids = [t.checkpoint["id"] for t in everything]
    assert ids == sorted(ids, reverse=True)
    assert len(list(saver.list(None, limit=4))) == 4
    assert {t.config["configurable"]["thread_id"] for t in saver.list(None, filter={"step": 2})} == {"t2"}
    assert len([t async for t in saver.alist(None, limit=2)]) == 2


async def test_pending_writes_ordered_with_special_channels(saver):
    (head,) = chain(saver, "t1", 1)
    saver.put_writes(head, [("x", 1), ("y", {"v": 2})], "task-b", "path-b")
    saver.put_writes(head, [("x", 10)], "task-a", "path-a")
    # First writer wins for normal writes; error is last writer wins.
    saver.put_writes(head, [("x", 99)], "task-a", "path-a")
    saver.put_writes(head, [("__error__", "first")], "task-c", "path-c")
    await saver.aput_writes(head, [("__error__", "second")], "task-c", "path-c")
    saver.put_writes(head, [(TASKS, "sent")], "task-d", "path-d")
    writes = saver.get_tuple(config("t1")).pending_writes
    assert writes == [
        ("task-a", "x", 10),
        ("task-b", "x", 1),
        ("task-b", "y", {"v": 2}),
        ("task-c", "__error__", "second"),
        ("task-d", TASKS, "sent"),
    ]
    (child,) = [t for t in saver.list(config("t1"))]
    assert child.pending_writes == writes


async def test_writes_may_arrive_before_their_checkpoint(saver):
    early = config("t1", checkpoint_id="1ef00000-0000-7000-8000-000000000000")
    saver.put_writes(early, [("x", 1)], "task")
    checkpoint = empty_checkpoint()
    checkpoint["id"] = early["configurable"]["checkpoint_id"]
    saver.put(config("t1"), checkpoint, {}, {})
    assert saver.get_tuple(config("t1")).pending_writes == [("task", "x", 1)]


async def test_namespaces_are_separate(saver):
    chain(saver, "t1", 1)
    chain(saver, "t1", 2, ns="child")
    assert len(list(saver.list(config("t1")))) == 1
    assert len(list(saver.list(config("t1", "child")))) == 2
    # No namespace in the config lists every namespace of the thread.
    assert len(list(saver.list({"configurable": {"thread_id": "t1"}}))) == 3


async def test_delete_copy_and_prune(saver):
    chain(saver, "t1", 3)
    chain(saver, "t1", 1, ns="child")
    chain(saver, "t2", 2, run_id="run-2")
    saver.copy_thread("t1", "t3")
    assert len(list(saver.list({"configurable": {"thread_id": "t3"}}))) == 4
    saver.prune(["t3"])
    assert len(list(saver.list({"configurable": {"thread_id": "t3"}}))) == 2
    saver.delete_thread("t1")
    assert saver.get_tuple(config("t1")) is None
    assert saver.get_tuple(config("t1", "child")) is None
    await saver.adelete_for_runs(["run-2"])
    assert saver.get_tuple(config("t2")) is None
    await saver.aprune(["t3"], strategy="delete")
    assert list(saver.list(None)) == []
    with pytest.raises(ValueError):
        saver.prune(["t3"], strategy="sometimes")


async def test_next_versions_sort_as_strings(saver):
    versions = [None]
    for _ in range(12):
        versions.append(saver.get_next_version(versions[-1], None))
    assert versions[1:] == sorted(versions[1:])


@pytest.mark.parametrize("backend", BACKENDS + SERVER_BACKENDS)
async def test_langgraph_conformance_suite(backend, tmp_path, request):
    """LangGraph's own conformance suite, every capability (base and extended), on every
    backend: the embedded ones and, on throwaway servers, Redis and PostgreSQL."""
    from langgraph.checkpoint.conformance import checkpointer_test, validate

    counter = iter(range(1000))
    if backend in SERVER_BACKENDS:
        server_storage(request, backend)  # skips when this build lacks the backend

    @checkpointer_test(name=f"StorageSaver[{backend}]")
    async def factory():
        if backend in SERVER_BACKENDS:
            store = server_storage(request, backend)
        else:
            store = make_storage(backend, tmp_path / str(next(counter)))
        await store.initialize()
        yield StorageSaver(store)
        await store.close()

    report = await validate(factory)
    report.print_report()
    passed = sum(r.tests_passed for r in report.results.values())
    failures = [f for r in report.results.values() for f in r.failures]
    print(f"conformance[{backend}]: {passed} passed, {len(failures)} failed")
    assert failures == []
    assert report.passed_all()
    assert passed > 0


async def test_typed_bytes_cross_the_boundary_exactly(storage):
    native = storage.native
    payload = bytes(range(256)) * 4
    checkpoint = {
        "thread_id": "t1", "namespace": "", "id": "0001", "parent_id": None,
        "channel_values": {
            "typed": ("msgpack", payload),
            "from_bytearray": ("bytes", bytearray(b"\x00\x01")),
            "empty": ("empty", b""),
            "json": ["a", 1, {"b": None}],
        },
        "channel_versions": {"typed": "1", "from_bytearray": "1", "empty": "1", "json": "1"},
        "versions_seen": {}, "metadata": {}, "created_at": "2026-12-01T10:00:00.5+02:00",
        "format_version": 4,
    }
    await native.put_checkpoint(checkpoint, checkpoint["channel_versions"])
    await native.put_writes("t1", "", "0001", "task", "", [
        ("typed", ("msgpack", b"\x92\x01\x02")), ("json", {"k": [1]}),
    ])
    stored = await native.get_checkpoint_tuple("t1", "")
    values = stored["checkpoint"]["channel_values"]
    assert values == {
        "typed": ("msgpack", payload),
        "from_bytearray": ("bytes", b"\x00\x01"),
        "empty": ("empty", b""),
        "json": ["a", 1, {"b": None}],
    }
    assert type(values["typed"][1]) is bytes
    assert [w[2] for w in stored["pending_writes"]] == [
        ("msgpack", b"\x92\x01\x02"), {"k": [1]},
    ]
    listed = await native.list_checkpoint_tuples("t1")
    assert listed[0]["checkpoint"]["channel_values"] == values
    page = await native.search_checkpoints(10)
    assert page["items"][0]["checkpoint"]["channel_values"] == values

    with pytest.raises(st.InvalidInputError):
        await native.put_writes("t1", "", "0001", "task", "", [("x", (1, b"bytes"))])
    with pytest.raises(st.InvalidInputError):
        await native.put_writes("t1", "", "0001", "task", "", [("x", ("", b"bytes"))])


async def test_saver_stores_serialized_values_as_raw_bytes(tmp_path):
    """The local directory backend's files hold the serializer's bytes as they are:
    a 3 KB bytes value appears verbatim, and its base64 nowhere."""
    storage = make_storage("object", tmp_path)
    await storage.initialize()
    saver = StorageSaver(storage)
    blob = os.urandom(3000)
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"a": blob}
    checkpoint["channel_versions"] = {"a": saver.get_next_version(None, None)}
    stored_config = saver.put(config("t1"), checkpoint, {}, checkpoint["channel_versions"])
    saver.put_writes(stored_config, [("a", blob)], "task-1")
    assert saver.get_tuple(config("t1")).checkpoint["channel_values"]["a"] == blob
    assert saver.get_tuple(config("t1")).pending_writes[0][2] == blob
    files = [p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert sum(blob in data for data in files) == 2
    encoded = base64.b64encode(blob[:300])
    assert not any(encoded in data for data in files)
    await storage.close()


async def test_values_stored_by_the_previous_release_still_read(saver):
    """The previous release kept serialized values inside JSON as base64."""
    type_, data = saver.serde.dumps_typed({"answer": 42})
    legacy = {"__typed__": type_, "b64": base64.b64encode(data).decode("ascii")}
    checkpoint = {
        "thread_id": "old", "namespace": "", "id": "0001", "parent_id": None,
        "channel_values": {"a": legacy}, "channel_versions": {"a": "1"},
        "versions_seen": {}, "metadata": {}, "created_at": "2026-11-30T10:00:00+00:00",
        "format_version": 4,
    }
    await saver.storage.native.put_checkpoint(checkpoint, {"a": "1"})
    await saver.storage.native.put_writes("old", "", "0001", "task", "", [("a", legacy)])
    read = saver.get_tuple(config("old"))
    assert read.checkpoint["channel_values"] == {"a": {"answer": 42}}
    assert read.pending_writes[0][2] == {"answer": 42}


@pytest.mark.parametrize("use_async", [False, True])
async def test_delta_channel_history_matches_langgraphs_own_walk(saver, use_async):
    """The one-call override answers exactly what BaseCheckpointSaver's default walk
    (one get_tuple per ancestor) answers, seeds and write order included."""
    from langgraph.checkpoint.base import BaseCheckpointSaver

    parent = config("t1")
    checkpoint = empty_checkpoint()
    configs = []
    for step in range(6):
        checkpoint = create_checkpoint(checkpoint, None, step)
        # "a" is stored at steps 0 and 3, "b" only at step 0, "c" never.
        stored = {"a": {"v": step}} if step in (0, 3) else {}
        if step == 0:
            stored["b"] = b"seed-bytes"
        versions = {ch: saver.get_next_version(None, None) + f".{step}" for ch in stored}
        checkpoint["channel_values"] = stored
        checkpoint["channel_versions"] = {**checkpoint["channel_versions"], **versions}
        parent = saver.put(parent, checkpoint, {"step": step}, versions)
        configs.append(parent)
        saver.put_writes(parent, [("a", f"a{step}"), ("c", [step])], f"task-{step}", "p/2")
        saver.put_writes(parent, [("b", {"step": step}), ("a", f"a{step}-first")], "task-x", "")
    channels = ["a", "b", "c", "unknown"]
    for target in [configs[-1], configs[3], configs[1], config("t1"), config("missing")]:
        expected = BaseCheckpointSaver.get_delta_channel_history(
            saver, config=target, channels=channels
        )
        if use_async:
            got = await saver.aget_delta_channel_history(config=target, channels=channels)
        else:
            got = saver.get_delta_channel_history(config=target, channels=channels)
        assert got == expected, target
    assert saver.get_delta_channel_history(config=configs[-1], channels=[]) == {}

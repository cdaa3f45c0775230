"""Input a hostile or careless caller gives: every refusal is the caller's typed error
(a ``StorageError``, mostly ``InvalidInputError``), never a bare Python error, a panic, a
silently changed value or a wait that Ctrl-C cannot end."""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping

import pytest

import agent_storage as st
from agent_storage import ArtifactStoreConfiguration, ArtifactStoreError, ArtifactStoreFactory, Storage

from .conftest import make_storage


def _checkpoint(**over):
    record = {
        "thread_id": "t",
        "namespace": "",
        "id": "c1",
        "parent_id": None,
        "channel_values": {},
        "channel_versions": {},
        "versions_seen": {},
        "metadata": {},
        "created_at": "2024-01-01T00:00:00+00:00",
        "format_version": 4,
    }
    record.update(over)
    return record


# --- non-finite floats ------------------------------------------------------------------
# JSON has no NaN or infinity; the conversion to JSON would store null in their place, so
# they are refused wherever a value becomes JSON.


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
async def test_non_finite_float_is_refused_not_stored_as_none(storage, bad):
    await storage.create_session("s", "u")
    stored_as_none = []
    for label, call, read in [
        (
            "message content",
            lambda: storage.add_conversation_message("s", "user", {"score": bad}),
            lambda: storage.get_conversation_history("s", 1),
        ),
        (
            "task context",
            lambda: storage.store_task_context("s", {"score": bad}),
            lambda: storage.get_task_context("s"),
        ),
        (
            "session metadata",
            lambda: storage.create_session("s2", "u", {"score": bad}),
            lambda: storage.get_session("s2"),
        ),
    ]:
        try:
            await call()
        except st.InvalidInputError:
            continue
        stored_as_none.append((label, await read()))
    assert stored_as_none == [], f"{bad!r} was silently stored as null: {stored_as_none}"


def test_non_finite_float_in_langgraph_metadata_is_not_nulled(tmp_path):
    from langgraph.checkpoint.base import empty_checkpoint

    from agent_storage.langgraph import StorageSaver

    saver = StorageSaver(make_storage("memory", tmp_path))
    saver.setup()
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    try:
        stored = saver.put(config, empty_checkpoint(), {"score": float("nan")}, {})
    except st.InvalidInputError:
        return  # refusing it is fine too
    score = saver.get_tuple(stored).metadata["score"]
    assert isinstance(score, float) and math.isnan(score), f"metadata nan came back as {score!r}"


# --- a dict changed by the code its conversion runs -------------------------------------
# Converting a value runs the caller's code (a Mapping's methods); a dict that code changes
# is read from a snapshot of its items, not a live iterator (which panicked).


def test_channel_values_mutated_during_conversion_is_not_a_panic():
    storage = Storage({"backend": "memory"}, use_env=False)
    native = storage.native
    native.initialize(blocking=True)
    values: dict = {}

    class Grows(Mapping):
        def __getitem__(self, key):
            return 1

        def __iter__(self):
            values[f"extra{len(values)}"] = 1
            return iter(["a"])

        def __len__(self):
            return 1

    values["a"] = Grows()
    values["b"] = 2
    record = _checkpoint(channel_values=values, channel_versions={"a": "1", "b": "1"})
    try:
        native.put_checkpoint(record, {"a": "1", "b": "1"}, blocking=True)
    except BaseException as err:  # noqa: BLE001 - PanicException derives from BaseException
        assert isinstance(err, st.StorageError), f"{type(err).__module__}.{type(err).__name__}: {err}"


# --- Ctrl-C during a blocking call --------------------------------------------------------
# A sync call that waits runs Python's signal handlers as it waits: the handler's exception
# (Ctrl-C's KeyboardInterrupt) ends the call at once and reaches the caller as it is.


class _Interrupted(Exception):
    pass


def test_interrupt_during_a_failing_blocking_call_is_not_a_bare_runtime_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept())
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        storage = Storage(
            {
                "backend": "redis",
                "redis.url": f"redis://127.0.0.1:{port}",
                # The server accepts and never answers: the call would wait this long.
                "redis.connect_timeout_ms": 20_000,
            },
            use_env=False,
        )
    except st.StorageConfigError as err:
        listener.close()
        pytest.skip(f"this build has no redis backend: {err}")

    def handler(signum, frame):
        raise _Interrupted()

    previous = signal.signal(signal.SIGINT, handler)
    def interrupt_once_connected():
        # Once the call waits on the server that never answers, not before it starts.
        deadline = time.monotonic() + 10
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt_once_connected, daemon=True)
    try:
        timer.start()
        started = time.monotonic()
        with pytest.raises(BaseException) as caught:
            storage.native.initialize(blocking=True)
        waited = time.monotonic() - started
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
        listener.close()
    err = caught.value
    assert isinstance(err, _Interrupted), (
        f"got {type(err).__name__}({err}) with cause {err.__cause__!r}"
    )
    # Well before the connect timeout (a bound for a loaded machine, not a speed target).
    assert waited < 10, f"the interrupt ended the wait only after {waited:.1f} s"


# --- ArtifactStore: "anything else raises ArtifactStoreError" -----------------------------


@pytest.fixture
def artifact_store(tmp_path):
    return ArtifactStoreFactory(
        ArtifactStoreConfiguration(
            backend="memory",
            scope="hostile",
            use_env=False,
            settings={"sqlite.path": f"{tmp_path}/s.db", "object.url": f"file://{tmp_path}/o"},
        )
    ).create()


def test_artifact_save_of_unencodable_str_is_artifact_store_error(artifact_store):
    with pytest.raises(ArtifactStoreError):
        artifact_store.save("step", "lone \ud800 surrogate")
    assert not artifact_store.exists("step")


def test_artifact_save_of_too_deep_value_is_artifact_store_error(artifact_store):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ArtifactStoreError):
        artifact_store.save("step", deep)


def test_artifact_step_id_with_lone_surrogate_is_artifact_store_error(artifact_store):
    for call in (
        lambda: artifact_store.save("\udc80", "x"),
        lambda: artifact_store.get("\udc80"),
        lambda: artifact_store.exists("\udc80"),
    ):
        with pytest.raises(ArtifactStoreError):
            call()


# --- lone surrogates in id and string arguments -------------------------------------------
# A str UTF-8 cannot encode is refused as the same character inside a JSON value is.


async def test_lone_surrogate_in_string_arguments_is_invalid_input(storage):
    await storage.create_session("s", "u")
    for call in (
        lambda: storage.create_session("\ud800", "u"),
        lambda: storage.get_session("\ud800"),
        lambda: storage.add_conversation_message("s", "\ud800", "x"),
        lambda: storage.update_session("s", mark_error="\ud800"),
        lambda: storage.put_writes("s", "c1", "task", [("chan", ("\ud800", b"x"))]),
    ):
        with pytest.raises(st.InvalidInputError):
            await call()


# --- negative counts and bad durations ----------------------------------------------------
# A negative count is refused as 0 is where 0 is refused (not pyo3's OverflowError); the
# saver's list with a limit under 1 is empty, as InMemorySaver's is.


async def test_negative_counts_are_invalid_input(storage):
    await storage.create_session("s", "u")
    for call in (
        lambda: storage.get_conversation_history("s", -1),
        lambda: storage.list_checkpoints("s", -1),
        lambda: storage.rewind_conversation("s", -1),
        lambda: storage.store_task_context("s", 1, expected_version=-1),
        lambda: storage.store_context("app", 1, keep_versions=-1),
    ):
        with pytest.raises(st.InvalidInputError):
            await call()


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
async def test_update_session_bad_processing_time_is_invalid_input(storage, seconds):
    await storage.create_session("s", "u")
    with pytest.raises(st.InvalidInputError):
        await storage.update_session("s", add_processing_time=seconds)


def test_native_counts_and_ids_are_invalid_input_not_bare_errors():
    native = Storage({"backend": "memory"}, use_env=False).native
    native.initialize(blocking=True)
    for call in (
        lambda: native.prune_checkpoints("t", -1, blocking=True),
        lambda: native.get_checkpoint_tuple("t\ud800", "", None, blocking=True),
        lambda: native.delete_for_runs(["run", "\udc80"], blocking=True),
        lambda: native.list_checkpoint_tuples("t", "", None, 2**70, None, blocking=True),
    ):
        with pytest.raises(st.InvalidInputError):
            call()


def test_counts_take_any_index_and_lists_take_sequences():
    native = Storage({"backend": "memory"}, use_env=False).native
    native.initialize(blocking=True)

    class Index:
        def __init__(self, value):
            self.value = value

        def __index__(self):
            return self.value

    assert native.prune_checkpoints("t", Index(3), blocking=True) == 0
    with pytest.raises(st.InvalidInputError, match="expected 0 or more"):
        native.prune_checkpoints("t", Index(-1), blocking=True)
    with pytest.raises(st.InvalidInputError, match="expected 0 or more"):
        native.prune_checkpoints("t", -(2**200), blocking=True)
    with pytest.raises(TypeError):
        native.delete_for_runs({"run-a", "run-b"}, blocking=True)  # a set has no order


def test_saver_list_with_negative_limit_is_empty_like_in_memory_saver(tmp_path):
    from langgraph.checkpoint.base import empty_checkpoint

    from agent_storage.langgraph import StorageSaver

    saver = StorageSaver(make_storage("memory", tmp_path))
    saver.setup()
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    saver.put(config, empty_checkpoint(), {}, {})
    assert list(saver.list(None, limit=-1)) == []
    assert list(saver.list(config, limit=-1)) == []


# --- malformed batch items ----------------------------------------------------------------


async def test_create_sessions_malformed_item_is_invalid_input(storage):
    for sessions in ([("only-id",)], [{"session_id": "x"}]):
        with pytest.raises(st.InvalidInputError):
            await storage.create_sessions(sessions)


# --- a str where a list of str is expected ------------------------------------------------
# A str is a sequence of its characters to Python; where a list of ids or channels is
# asked for, one str is refused rather than read as one id per character.


def test_updated_channels_str_is_refused_not_split_into_characters():
    native = Storage({"backend": "memory"}, use_env=False).native
    native.initialize(blocking=True)
    try:
        native.put_checkpoint(_checkpoint(updated_channels="abc"), {}, blocking=True)
    except st.InvalidInputError:
        return
    stored = native.get_checkpoint_tuple("t", "", "c1", blocking=True)
    assert stored["checkpoint"]["updated_channels"] == "abc", stored["checkpoint"]["updated_channels"]


def test_saver_delete_for_runs_refuses_a_str(tmp_path):
    from langgraph.checkpoint.base import empty_checkpoint

    from agent_storage.langgraph import StorageSaver

    saver = StorageSaver(make_storage("memory", tmp_path))
    saver.setup()
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    saver.put(config, empty_checkpoint(), {"run_id": "a"}, {})
    with pytest.raises(st.InvalidInputError):
        saver.delete_for_runs("abc")  # would have deleted the runs "a", "b" and "c"
    assert saver.get_tuple(config) is not None


async def test_get_sessions_refuses_a_str(storage):
    await storage.create_session("a", "u")
    with pytest.raises((st.InvalidInputError, TypeError)):
        await storage.get_sessions("ab")

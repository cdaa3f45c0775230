"""The native checkpoint conversion both ways: ``put_checkpoint`` reads a checkpoint of
plain types field by field and hands any other shape to the serde conversion, and a read
builds the tuple field by field. Whichever way a checkpoint goes, what is accepted, what
is refused and what reads back must be what the serde conversion alone gave."""

from __future__ import annotations

import pytest

import agent_storage as st


def checkpoint(**fields) -> dict:
    record = {
        "thread_id": "t1", "namespace": "", "id": "0001", "parent_id": None,
        "channel_values": {"a": ("msgpack", b"\x01")}, "channel_versions": {"a": "1"},
        "versions_seen": {}, "metadata": {}, "created_at": "2026-12-01T10:00:00+00:00",
        "format_version": 4,
    }
    record.update(fields)
    return record


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_every_field_reads_back_as_written(storage):
    native = storage.native
    written = checkpoint(
        id="0002", parent_id="0001",
        channel_values={"a": ("msgpack", b"\x00\xff"), "b": {"json": [1, 2.5, None]}},
        channel_versions={"a": "2", "b": "1"},
        versions_seen={"node": {"a": "1"}, "other": {}},
        metadata={"source": "loop", "step": 3, "nested": {"list": [1, {"k": "v"}]}},
        created_at="2026-12-01T10:00:00.123456+02:00", format_version=4,
        updated_channels=["a"], unknown_key="ignored as before",
    )
    await native.put_checkpoint(written, {"a": "2", "b": "1"})
    stored = await native.get_checkpoint_tuple("t1", "", "0002")
    assert list(stored) == ["checkpoint", "pending_writes"]
    assert list(stored["checkpoint"]) == [
        "thread_id", "namespace", "id", "parent_id", "channel_values", "channel_versions",
        "versions_seen", "metadata", "created_at", "format_version", "updated_channels",
    ]
    expected = {k: v for k, v in written.items() if k != "unknown_key"}
    assert stored["checkpoint"] == expected
    assert stored["pending_writes"] == []


async def test_pending_writes_read_back_as_tuples_in_their_order(storage):
    native = storage.native
    await native.put_checkpoint(checkpoint(), {"a": "1"})
    await native.put_writes("t1", "", "0001", "task-b", "~1", [("x", ("msgpack", b"\x01"))])
    await native.put_writes("t1", "", "0001", "task-a", "~2", [("y", 1), ("__error__", "e")])
    expected = [
        ("task-b", "x", ("msgpack", b"\x01"), "~1", 0),
        ("task-a", "__error__", "e", "~2", -1),
        ("task-a", "y", 1, "~2", 0),
    ]
    stored = await native.get_checkpoint_tuple("t1", "")
    assert stored["pending_writes"] == expected
    assert await native.get_writes("t1", "", "0001") == expected
    listed = await native.list_checkpoint_tuples("t1")
    assert listed[0]["pending_writes"] == expected


async def test_optional_fields_default_as_before(storage):
    native = storage.native
    written = checkpoint()
    del written["parent_id"], written["format_version"]
    await native.put_checkpoint(written, {"a": "1"})
    stored = (await native.get_checkpoint_tuple("t1", ""))["checkpoint"]
    assert stored["parent_id"] is None
    assert stored["format_version"] == 1  # the legacy format version
    assert "updated_channels" not in stored


@pytest.mark.parametrize(("fields", "format_version", "updated_channels"), [
    # The serde conversion's leniencies, kept: a bool is a number, a tuple a sequence.
    ({"format_version": True}, 1, None),
    ({"updated_channels": ("a",)}, 4, ["a"]),
])
async def test_other_shapes_are_accepted_as_before(
    storage, fields, format_version, updated_channels
):
    await storage.native.put_checkpoint(checkpoint(**fields), {"a": "1"})
    stored = (await storage.native.get_checkpoint_tuple("t1", ""))["checkpoint"]
    assert stored["format_version"] == format_version
    assert stored.get("updated_channels") == updated_channels


@pytest.mark.parametrize("fields", [
    {"channel_versions": {"a": 1}},
    {"versions_seen": {"node": {"a": 1}}},
    {"format_version": 4.0},
    {"format_version": "4"},
    {"format_version": -1},
    {"created_at": "yesterday"},
    {"thread_id": 7},
    {"parent_id": 7},
    {"updated_channels": 7},
    # Not read as the sequence of its characters (it was, before 2026-12-04).
    {"updated_channels": "ab"},
    {"metadata": [1]},
    # Past the depth refused before any conversion, and past the JSON depth limit.
    {"metadata": {"deep": nested(300)}},
    {"metadata": {"deep": nested(100)}},
])
async def test_other_shapes_are_refused_as_before(storage, fields):
    with pytest.raises(st.InvalidInputError):
        await storage.native.put_checkpoint(checkpoint(**fields), {"a": "1"})


@pytest.mark.parametrize("missing", ["thread_id", "id", "channel_versions", "metadata"])
async def test_missing_fields_are_refused_as_before(storage, missing):
    written = checkpoint()
    del written[missing]
    with pytest.raises(st.InvalidInputError):
        await storage.native.put_checkpoint(written, {"a": "1"})


async def test_new_versions_of_another_shape_are_refused_as_before(storage):
    with pytest.raises(st.InvalidInputError):
        await storage.native.put_checkpoint(checkpoint(), {"a": 1})


async def test_keys_outside_the_record_are_refused_as_before(storage):
    # A key that is not a str, and a value too deep to measure under a key the record
    # does not have: refused as the serde conversion refuses them.
    not_a_str = checkpoint()
    not_a_str[1] = "x"
    looped: list = []
    looped.append(looped)
    for written in (not_a_str, checkpoint(extra=looped)):
        with pytest.raises(st.InvalidInputError):
            await storage.native.put_checkpoint(written, {"a": "1"})

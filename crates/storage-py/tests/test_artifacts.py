"""The second seed's ArtifactStore: save/get/exists/clear, errors, configuration layers,
and many Python threads at once."""

from __future__ import annotations

import threading

import pytest

import agent_storage as st
from agent_storage import (
    ArtifactStoreConfiguration,
    ArtifactStoreError,
    ArtifactStoreFactory,
    ArtifactStoreNotFoundError,
)

from .conftest import BACKENDS


def make(tmp_path, backend: str, scope: str | None = None, **kw) -> st.ArtifactStore:
    config = ArtifactStoreConfiguration(
        backend=backend,
        scope=scope,
        settings={"object.url": f"file://{tmp_path}/store", "sqlite.path": f"{tmp_path}/db.sqlite"},
        use_env=False,
        **kw,
    )
    return ArtifactStoreFactory(config).create()


class Report:
    """Stands for a pydantic model: saved as its JSON dump."""

    def model_dump(self, mode: str = "python") -> dict:
        return {"rows": 3, "mode": mode}


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_get_exists_clear(tmp_path, backend):
    store = make(tmp_path, backend, scope="run-1")
    assert not store.exists("step-1")
    with pytest.raises(ArtifactStoreNotFoundError) as missing:
        store.get("step-1")
    assert isinstance(missing.value, st.NotFoundError)
    assert isinstance(missing.value, ArtifactStoreError)

    assert store.save("step-1", "first") == 0
    assert store.save("step-1", "second, é😀") == 1
    assert store.get("step-1") == "second, é😀"
    for step, message in [
        ("bytes", b"\x00\xff raw"),
        ("empty-bytes", b""),
        ("dict", {"answer": 42, "nested": [1, None, "x"]}),
        ("list", [1, 2.5, True]),
        ("null", None),
        ("text-like-json", '{"not": "parsed"}'),
    ]:
        store.save(step, message)
        got = store.get(step)
        assert got == message and type(got) is type(message), step
    store.save("model", Report())
    assert store.get("model") == {"rows": 3, "mode": "json"}
    assert store.exists("step-1")

    other = st.ArtifactStore(store.storage, scope="run-2")
    other.save("step-1", "kept")
    assert store.clear() == 9
    assert not store.exists("step-1")
    assert other.get("step-1") == "kept"
    store.close()


def test_unsaveable_messages_are_refused_and_store_nothing(tmp_path):
    store = make(tmp_path, "memory")
    for bad in [object(), {"f": float("nan")}, {1j: 2}]:
        with pytest.raises(ArtifactStoreError):
            store.save("step", bad)
    assert not store.exists("step")
    with pytest.raises(ArtifactStoreError) as bad_id:
        store.save("", "x")
    assert bad_id.value.kind == "invalid_input"


async def test_async_twins(tmp_path):
    store = make(tmp_path, "object")
    assert await store.asave("s", {"a": 1}) == 0
    assert await store.aget("s") == {"a": 1}
    assert await store.aexists("s")
    assert await store.aclear() == 1
    with pytest.raises(ArtifactStoreNotFoundError):
        await store.aget("s")


def test_configuration_explicit_over_environment_over_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_OBJECT__URL", f"file://{tmp_path}/store")
    monkeypatch.setenv("STORAGE_SQLITE__PATH", f"{tmp_path}/db.sqlite")
    monkeypatch.delenv("ARTIFACT_STORE_BACKEND", raising=False)
    monkeypatch.delenv("ARTIFACT_STORE_SCOPE", raising=False)
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    default = ArtifactStoreFactory().create()
    assert default.storage.backends()["artifacts"] == "object"
    assert default.scope == "artifacts"

    monkeypatch.setenv("ARTIFACT_STORE_BACKEND", "memory")
    monkeypatch.setenv("ARTIFACT_STORE_SCOPE", "from-env")
    from_env = ArtifactStoreFactory(ArtifactStoreConfiguration()).create()
    assert from_env.storage.backends()["artifacts"] == "memory"
    assert from_env.scope == "from-env"

    explicit = ArtifactStoreFactory(
        ArtifactStoreConfiguration(backend="object", scope="explicit")
    ).create()
    assert explicit.storage.backends()["artifacts"] == "object"
    assert explicit.scope == "explicit"

    ignoring = ArtifactStoreFactory(ArtifactStoreConfiguration(use_env=False)).create()
    assert ignoring.scope == "artifacts"

    with pytest.raises(ArtifactStoreError):
        ArtifactStoreFactory(ArtifactStoreConfiguration(backend="floppy")).create()


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_threads_save_and_read_every_artifact(tmp_path, backend):
    store = make(tmp_path, backend)
    threads, per_thread = 16, 25
    errors: list[BaseException] = []
    shared_versions: list[int] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for i in range(per_thread):
                step = f"w{worker}-s{i}"
                message = {"worker": worker, "i": i, "pad": "x" * (i * 10)}
                store.save(step, message)
                assert store.get(step) == message
                assert store.exists(step)
                version = store.save("shared", f"{worker}-{i}")
                with lock:
                    shared_versions.append(version)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    for worker in range(threads):
        for i in range(per_thread):
            assert store.get(f"w{worker}-s{i}")["i"] == i
    # Every save of the shared step got its own version.
    assert sorted(shared_versions) == list(range(threads * per_thread))
    store.close()

"""Configuration layers, exactly the Rust facade's: settings > env > file > defaults."""

from __future__ import annotations

import pytest

import agent_storage as st
from agent_storage import Storage


def namespace_of(store: Storage) -> str:
    import asyncio

    return asyncio.run(store.health_check())["details"]["namespace"]


@pytest.fixture
def layered(tmp_path, monkeypatch):
    """A storage.toml in the working directory and a STORAGE_* variable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STORAGE_CONFIG_FILE", raising=False)
    (tmp_path / "storage.toml").write_text(
        'backend = "memory"\n[memory]\nnamespace = "from_file"\n'
    )
    return monkeypatch


def test_defaults_are_the_embedded_sqlite_file_and_local_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STORAGE_CONFIG_FILE", raising=False)
    backends = Storage(use_env=False).backends()
    assert backends.pop("artifacts") == "object"
    assert set(backends.values()) == {"sqlite"}


def test_file_over_defaults(layered):
    store = Storage(use_env=False)
    assert store.backends()["sessions"] == "memory"
    assert namespace_of(store) == "from_file"


def test_env_over_file(layered):
    layered.setenv("STORAGE_MEMORY__NAMESPACE", "from_env")
    assert namespace_of(Storage()) == "from_env"
    # use_env=False ignores the environment, as ConfigLoader::without_env does.
    assert namespace_of(Storage(use_env=False)) == "from_file"


def test_settings_over_env(layered):
    layered.setenv("STORAGE_MEMORY__NAMESPACE", "from_env")
    assert namespace_of(Storage({"memory.namespace": "from_code"})) == "from_code"
    assert namespace_of(Storage({"memory": {"namespace": "as_section"}})) == "as_section"


def test_explicit_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "other.toml"
    path.write_text('backend = "memory"\n[memory]\nnamespace = "other"\n')
    assert namespace_of(Storage(config_file=path, use_env=False)) == "other"
    with pytest.raises(st.StorageConfigError):
        Storage(config_file=tmp_path / "missing.toml", use_env=False)


def test_bad_settings_are_config_errors_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(st.StorageConfigError) as caught:
        Storage({"object.root": "/tmp"}, use_env=False)
    assert "object.root" in str(caught.value)
    assert caught.value.temporary is False


def test_providers_not_compiled_in_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # `cargo xtask test` builds every backend but no cloud provider of the object store.
    with pytest.raises(st.StorageConfigError) as caught:
        Storage({"backend": "object", "object.url": "s3://bucket/prefix"}, use_env=False)
    assert "S3" in str(caught.value) and "aws" in str(caught.value)
    assert caught.value.temporary is False


def test_every_error_kind_has_its_class():
    from agent_storage.errors import _from_native

    expected = {
        "not_found": st.NotFoundError,
        "already_exists": st.AlreadyExistsError,
        "conflict": st.ConflictError,
        "invalid_input": st.InvalidInputError,
        "unsupported": st.UnsupportedError,
        "config": st.StorageConfigError,
        "connection": st.StorageConnectionError,
        "timeout": st.StorageTimeoutError,
        "serialization": st.SerializationError,
        "backend": st.BackendError,
    }
    for kind, cls in expected.items():
        error = _from_native(kind, kind in ("connection", "timeout"), "redis", "get_session", "m")
        assert type(error) is cls and isinstance(error, st.StorageError)
        assert error.temporary == (kind in ("connection", "timeout"))
        assert (error.backend, error.operation, error.kind) == ("redis", "get_session", kind)
    assert type(_from_native("not_found", False, "", "update_session", "m")) is (
        st.SessionNotFoundError
    )

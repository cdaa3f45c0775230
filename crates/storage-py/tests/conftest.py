"""Fixtures: a fresh Storage on each backend the package is built with."""

from __future__ import annotations

import pytest

from agent_storage import Storage

# The backends compiled into the default build (the facade's default features).
BACKENDS = ["memory", "object"]


def make_storage(backend: str, tmp_path) -> Storage:
    """A storage on `backend` alone: no environment, no storage.toml, the local directory
    backend in a fresh temporary directory."""
    return Storage(
        {"backend": backend, "object.url": f"file://{tmp_path}/store"},
        use_env=False,
    )


@pytest.fixture(params=BACKENDS)
async def storage(request, tmp_path):
    store = make_storage(request.param, tmp_path)
    await store.initialize()
    yield store
    await store.close()

"""The second seed's artifact store: one artifact per pipeline step, over the Rust core.

``ArtifactStoreFactory(ArtifactStoreConfiguration(...)).create()`` gives an
:class:`ArtifactStore` whose ``save(step_id, message)`` stores a new version of the step's
artifact and ``get(step_id)`` returns the latest one, decoded to the type it was saved as:
``str`` (stored as UTF-8 text), ``bytes`` (as they are), or any JSON value (``dict``,
``list``, numbers, ``True``/``False``/``None``; an object with ``model_dump`` such as a
pydantic model is saved as its JSON dump and read back as a dict).

Configuration, highest first: the arguments given to :class:`ArtifactStoreConfiguration`,
then the environment (``ARTIFACT_STORE_BACKEND``, ``ARTIFACT_STORE_SCOPE``, and every
``STORAGE_*`` variable of the Rust facade), then the defaults (the facade's default backend
for artifacts, the local directory ``./.storage``; scope ``"artifacts"``).

Every method is thread-safe: the native calls release the GIL and the Rust core serializes
nothing per store. Sync methods wait on the native runtime; ``asave``, ``aget``,
``aexists`` and ``aclear`` are their awaitable twins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NotFoundError, StorageError
from .storage import Storage

__all__ = [
    "ArtifactStore",
    "ArtifactStoreConfiguration",
    "ArtifactStoreError",
    "ArtifactStoreFactory",
    "ArtifactStoreNotFoundError",
]

DEFAULT_SCOPE = "artifacts"
_TEXT = "text/plain; charset=utf-8"
_BYTES = "application/octet-stream"
_JSON = "application/json"


class ArtifactStoreError(StorageError):
    """An artifact store operation failed; ``__cause__`` is the storage error, and
    ``kind``/``temporary`` are copied from it."""

    def __init__(self, message: str, *, cause: StorageError | None = None) -> None:
        super().__init__(
            message,
            temporary=cause.temporary if cause else False,
            backend=cause.backend if cause else "",
            operation=cause.operation if cause else "",
        )
        if cause is not None:
            self.kind = cause.kind


class ArtifactStoreNotFoundError(ArtifactStoreError, NotFoundError):
    """No artifact is stored for the step."""

    kind = "not_found"


@dataclass
class ArtifactStoreConfiguration:
    """Where artifacts go.

    ``backend``: ``memory``, ``object`` (a local directory or S3, per ``settings``),
    ``sqlite``, ``redis`` or ``postgres``; ``None`` takes ``$ARTIFACT_STORE_BACKEND``, else
    the facade's configuration. ``scope``: the namespace of step ids, so several pipelines
    can share one backend; ``None`` takes ``$ARTIFACT_STORE_SCOPE``, else ``"artifacts"``.
    ``settings``: more facade settings (``{"object.url": "file:///data/artifacts"}``),
    over the ``STORAGE_*`` environment. ``use_env=False`` ignores the environment.
    """

    backend: str | None = None
    scope: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    use_env: bool = True

    def resolved_backend(self) -> str | None:
        if self.backend is not None:
            return self.backend
        return os.environ.get("ARTIFACT_STORE_BACKEND") if self.use_env else None

    def resolved_scope(self) -> str:
        if self.scope is not None:
            return self.scope
        if self.use_env and os.environ.get("ARTIFACT_STORE_SCOPE"):
            return os.environ["ARTIFACT_STORE_SCOPE"]
        return DEFAULT_SCOPE

    def storage_settings(self) -> dict[str, Any]:
        settings = dict(self.settings)
        backend = self.resolved_backend()
        if backend is not None:
            settings["routes.artifacts"] = backend
        return settings


class ArtifactStoreFactory:
    """Builds stores from one configuration."""

    def __init__(self, config: ArtifactStoreConfiguration | None = None) -> None:
        self.config = config or ArtifactStoreConfiguration()

    def create(self) -> "ArtifactStore":
        try:
            storage = Storage(self.config.storage_settings(), use_env=self.config.use_env)
            storage.native.initialize(blocking=True)
        except StorageError as err:
            raise ArtifactStoreError(f"cannot create the artifact store: {err}", cause=err) from err
        return ArtifactStore(storage, self.config.resolved_scope())


def _encode(message: Any) -> tuple[bytes, str]:
    if isinstance(message, str):
        try:
            return message.encode("utf-8"), _TEXT
        except UnicodeEncodeError as err:
            raise ArtifactStoreError(f"cannot save a str that UTF-8 cannot encode ({err})") from err
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message), _BYTES
    if hasattr(message, "model_dump"):
        message = message.model_dump(mode="json")
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8"), _JSON
    # RecursionError: nested deeper than the interpreter's stack allows.
    except (TypeError, ValueError, RecursionError) as err:
        raise ArtifactStoreError(
            f"cannot save a {type(message).__name__}: not str, bytes or JSON ({err})"
        ) from err


def _decode(stored: dict) -> Any:
    data: bytes = stored["data"]
    content_type = stored["meta"]["content_type"]
    if content_type == _TEXT:
        return data.decode("utf-8")
    if content_type == _JSON:
        return json.loads(data)
    return data


class ArtifactStore:
    """The step artifacts of one scope."""

    def __init__(self, storage: Storage, scope: str = DEFAULT_SCOPE) -> None:
        self.storage = storage
        self.scope = scope
        self._native = storage.native

    def _failed(self, what: str, step_id: str, err: StorageError) -> ArtifactStoreError:
        return ArtifactStoreError(f"{what} artifact of step {step_id!r}: {err}", cause=err)

    def save(self, step_id: str, message: Any) -> int:
        """Stores ``message`` as the newest version of the step's artifact; returns that
        version (0 for the first)."""
        data, content_type = _encode(message)
        try:
            meta = self._native.save_artifact(
                self.scope, step_id, data, content_type, blocking=True
            )
        except StorageError as err:
            raise self._failed("cannot save the", step_id, err) from err
        return meta["version"]

    def get(self, step_id: str) -> Any:
        """The newest version saved for the step; :class:`ArtifactStoreNotFoundError` if
        there is none."""
        try:
            stored = self._native.get_artifact(self.scope, step_id, blocking=True)
        except StorageError as err:
            raise self._failed("cannot read the", step_id, err) from err
        if stored is None:
            raise ArtifactStoreNotFoundError(f"no artifact for step {step_id!r}")
        return _decode(stored)

    def exists(self, step_id: str) -> bool:
        try:
            return self._native.artifact_exists(self.scope, step_id, blocking=True)
        except StorageError as err:
            raise self._failed("cannot look up the", step_id, err) from err

    def clear(self) -> int:
        """Removes every artifact of this store's scope (no other scope's); returns how
        many versions went."""
        try:
            return self._native.clear_artifacts(self.scope, blocking=True)
        except StorageError as err:
            raise ArtifactStoreError(f"cannot clear scope {self.scope!r}: {err}", cause=err) from err

    async def asave(self, step_id: str, message: Any) -> int:
        data, content_type = _encode(message)
        try:
            meta = await self._native.save_artifact(self.scope, step_id, data, content_type)
        except StorageError as err:
            raise self._failed("cannot save the", step_id, err) from err
        return meta["version"]

    async def aget(self, step_id: str) -> Any:
        try:
            stored = await self._native.get_artifact(self.scope, step_id)
        except StorageError as err:
            raise self._failed("cannot read the", step_id, err) from err
        if stored is None:
            raise ArtifactStoreNotFoundError(f"no artifact for step {step_id!r}")
        return _decode(stored)

    async def aexists(self, step_id: str) -> bool:
        try:
            return await self._native.artifact_exists(self.scope, step_id)
        except StorageError as err:
            raise self._failed("cannot look up the", step_id, err) from err

    async def aclear(self) -> int:
        try:
            return await self._native.clear_artifacts(self.scope)
        except StorageError as err:
            raise ArtifactStoreError(f"cannot clear scope {self.scope!r}: {err}", cause=err) from err

    def close(self) -> None:
        self._native.close(blocking=True)

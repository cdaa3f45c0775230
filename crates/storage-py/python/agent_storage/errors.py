"""Exceptions raised by agent_storage, one class per Rust ``storage_core::ErrorKind``.

Every error is a :class:`StorageError` carrying ``kind`` (the Rust kind's snake_case
name), ``temporary`` (worth a retry or a failover), ``backend`` and ``operation``. The
native module builds them through :func:`_from_native`, the only mapping table.
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of every storage error."""

    kind: str = "backend"

    def __init__(
        self,
        message: str,
        *,
        temporary: bool = False,
        backend: str = "",
        operation: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary
        self.backend = backend
        self.operation = operation


class NotFoundError(StorageError):
    kind = "not_found"


class SessionNotFoundError(NotFoundError):
    """A session operation named a session that does not exist."""


class AlreadyExistsError(StorageError):
    kind = "already_exists"


class ConflictError(StorageError):
    """A compare-and-set saw another version than expected."""

    kind = "conflict"


class InvalidInputError(StorageError, ValueError):
    """Input rejected before any I/O (bad id, too large, wrong shape)."""

    kind = "invalid_input"


class UnsupportedError(StorageError):
    kind = "unsupported"


class StorageConfigError(StorageError):
    kind = "config"


class StorageConnectionError(StorageError, ConnectionError):
    """The backend could not be reached or the connection was lost."""

    kind = "connection"


class StorageTimeoutError(StorageError, TimeoutError):
    kind = "timeout"


class SerializationError(StorageError):
    kind = "serialization"


class BackendError(StorageError):
    kind = "backend"


_BY_KIND: dict[str, type[StorageError]] = {
    cls.kind: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        InvalidInputError,
        UnsupportedError,
        StorageConfigError,
        StorageConnectionError,
        StorageTimeoutError,
        SerializationError,
        BackendError,
    )
}


def _from_native(
    kind: str, temporary: bool, backend: str, operation: str, message: str
) -> StorageError:
    """The exception for a Rust error (called by the native module only)."""
    cls = _BY_KIND.get(kind, StorageError)
    # NotFound from a session operation is about the session: the seed's own error.
    if cls is NotFoundError and operation in (
        "update_session",
        "end_session",
        "delete_session",
    ):
        cls = SessionNotFoundError
    error = cls(message, temporary=temporary, backend=backend, operation=operation)
    error.kind = kind
    return error

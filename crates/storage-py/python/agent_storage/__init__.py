"""agent_storage: typed async storage for AI agents over a Rust core.

- :class:`Storage`: sessions, conversation history, checkpoints, task context.
- :class:`StorageFactory`, :class:`StorageAdapter`: the seed's factory and failover adapter.
- :mod:`agent_storage.langgraph`: ``StorageSaver``, a LangGraph checkpointer.
- :mod:`agent_storage.artifacts`: the step artifact store (``ArtifactStoreFactory``).
- :mod:`agent_storage.errors`: one exception class per Rust error kind.
"""

from ._native import __version__
from .errors import (
    AlreadyExistsError,
    BackendError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    SerializationError,
    SessionNotFoundError,
    StorageConfigError,
    StorageConnectionError,
    StorageError,
    StorageTimeoutError,
    UnsupportedError,
)
from .artifacts import (
    ArtifactStore,
    ArtifactStoreConfiguration,
    ArtifactStoreError,
    ArtifactStoreFactory,
    ArtifactStoreNotFoundError,
)
from .factory import StorageAdapter, StorageFactory, StorageType
from .storage import Storage

__all__ = [
    "__version__",
    "Storage",
    "StorageFactory",
    "StorageType",
    "StorageAdapter",
    "StorageError",
    "NotFoundError",
    "SessionNotFoundError",
    "AlreadyExistsError",
    "ConflictError",
    "InvalidInputError",
    "UnsupportedError",
    "StorageConfigError",
    "StorageConnectionError",
    "StorageTimeoutError",
    "SerializationError",
    "BackendError",
    "ArtifactStore",
    "ArtifactStoreConfiguration",
    "ArtifactStoreError",
    "ArtifactStoreFactory",
    "ArtifactStoreNotFoundError",
]

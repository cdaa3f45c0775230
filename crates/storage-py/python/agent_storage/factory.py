"""The seed's storage factory and failover adapter, over the Rust facade.

``StorageFactory.create_storage_backend(StorageType.REDIS, {"redis_url": ...})`` builds a
:class:`~agent_storage.Storage` on one backend; ``StorageAdapter(primary, fallback)`` builds
one that serves every kind from ``primary`` and fails over to ``fallback`` with the
facade's failover (a breaker per kind, writes journaled while the primary is down and
replayed when it is back, nothing acknowledged lost): nothing of it is reimplemented here.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any, Mapping

from .errors import StorageConfigError
from .storage import Storage

#: The seed's configuration keys and the facade settings they set.
SEED_KEYS: dict[str, str] = {
    "redis_url": "redis.url",
    "postgresql_url": "postgres.url",
    "postgres_url": "postgres.url",
    "object_url": "object.url",
    "sqlite_path": "sqlite.path",
}


class StorageType(str, Enum):
    """The backends a factory can build on (the facade's backend names)."""

    MEMORY = "memory"
    REDIS = "redis"
    POSTGRESQL = "postgres"
    SQLITE = "sqlite"
    OBJECT = "object"

    @classmethod
    def _missing_(cls, value: object) -> "StorageType | None":
        # The seed spelled PostgreSQL out in full.
        return cls.POSTGRESQL if value == "postgresql" else None


def _settings_of(storage_type: StorageType | str, config: Mapping[str, Any] | None) -> dict:
    settings: dict[str, Any] = {"backend": StorageType(storage_type).value}
    for key, value in (config or {}).items():
        settings[SEED_KEYS.get(key, key)] = value
    return settings


class StorageFactory:
    """Builds storages the way the seed's factory did, on the facade's configuration."""

    @staticmethod
    def create_storage_backend(
        storage_type: StorageType | str,
        config: Mapping[str, Any] | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        use_env: bool = True,
    ) -> Storage:
        """A storage serving every kind from ``storage_type``. ``config`` takes the seed's
        keys (``redis_url``, ``postgresql_url``, ``object_url``, ``sqlite_path``) and any
        facade setting by its dotted key (``"redis.pool_size"``); it wins over the
        environment and the configuration file, as :class:`Storage` settings do. An unknown
        backend or key is a :class:`StorageConfigError` naming it."""
        try:
            settings = _settings_of(storage_type, config)
        except ValueError as err:
            raise StorageConfigError(f"unknown storage type {storage_type!r}") from err
        return Storage(settings, config_file=config_file, use_env=use_env)


class StorageAdapter(Storage):
    """The seed's adapter: ``primary`` serves every kind and ``fallback`` takes over while
    it is down, through the facade's failover (``failover.*`` settings: the breaker's
    threshold, the journal directory, ...). Both must come from
    :meth:`StorageFactory.create_storage_backend` or :class:`Storage` settings, on
    different backends; ``failover`` holds extra ``failover.*`` settings."""

    def __init__(
        self,
        primary: Storage,
        fallback: Storage,
        failover: Mapping[str, Any] | None = None,
    ) -> None:
        if (fallback.config_file, fallback.use_env) != (primary.config_file, primary.use_env):
            # One storage reads one file and one environment: the fallback's own would be
            # silently replaced by the primary's.
            raise StorageConfigError(
                "primary and fallback must read the same configuration file and environment "
                "(give the fallback's backend settings explicitly)"
            )
        settings = dict(primary._settings)
        for key, value in fallback._settings.items():
            if key == "backend" or key.startswith("routes"):
                continue
            if key in settings and settings[key] != value:
                raise StorageConfigError(
                    f"primary and fallback set {key!r} differently; one storage has one "
                    "configuration per backend"
                )
            settings[key] = value
        primary_backends = primary.backends()
        for kind, backend in fallback.backends().items():
            if backend == primary_backends[kind]:
                raise StorageConfigError(
                    f"the fallback of {kind} is its primary backend ({backend}); fail over "
                    "to a different backend"
                )
            settings[f"failover.fallbacks.{kind}"] = backend
        for key, value in (failover or {}).items():
            settings[key if key.startswith("failover.") else f"failover.{key}"] = value
        super().__init__(settings, config_file=primary.config_file, use_env=primary.use_env)
        self.primary = primary
        self.fallback = fallback

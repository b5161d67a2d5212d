"""The settings of `memsys worker` processes, read from the environment (beside the
data directory's own settings, memsys/config.py):

  MEMSYS_QUEUE_URL           the PostgreSQL procrastinate keeps its queue in; by default
                             MEMSYS_DATABASE_URL when that names PostgreSQL. Unset: no
                             workers, jobs run in the process that starts them (the
                             embedded default).
  MEMSYS_WORKER_CONCURRENCY  batches one worker runs at once (default 2)
  MEMSYS_LEASE_SECONDS       how long a worker holds a batch without renewing it (default
                             60); its heartbeat renews it every third of that, and a batch
                             whose lease ran out is taken over by another worker
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from memsys.config import ConfigError

_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    queue_url: str = ""
    concurrency: int = 2
    lease_seconds: float = 60.0

    @property
    def enabled(self) -> bool:
        """Whether jobs go to workers (a queue is configured)."""
        return bool(self.queue_url)

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.2, self.lease_seconds / 3)

    @property
    def secrets(self) -> list[str]:
        """What of the queue's URL must never be shown (its password)."""
        password = urlsplit(self.queue_url).password if self.queue_url else None
        return [password] if password else []

    @property
    def queue_name(self) -> str:
        """The queue's address without its password, for pages and logs."""
        if not self.queue_url:
            return ""
        parts = urlsplit(self.queue_url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path}"

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> "WorkerSettings":
        env = os.environ if env is None else env
        url = env.get("MEMSYS_QUEUE_URL", "").strip()
        if not url:
            database = env.get("MEMSYS_DATABASE_URL", "").strip()
            if database.split(":", 1)[0].lower() in _POSTGRES_SCHEMES:
                url = database
        if url and url.split(":", 1)[0].lower() not in _POSTGRES_SCHEMES:
            raise ConfigError("MEMSYS_QUEUE_URL must name a PostgreSQL database (postgresql://user@host:port/name)")
        url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            concurrency = int(env.get("MEMSYS_WORKER_CONCURRENCY", "2"))
            lease = float(env.get("MEMSYS_LEASE_SECONDS", "60"))
        except ValueError as e:
            raise ConfigError(f"MEMSYS_WORKER_CONCURRENCY and MEMSYS_LEASE_SECONDS take numbers: {e}") from e
        if concurrency < 1:
            raise ConfigError("MEMSYS_WORKER_CONCURRENCY must be at least 1")
        if lease < 1:
            raise ConfigError("MEMSYS_LEASE_SECONDS must be at least 1")
        return cls(url, concurrency, lease)

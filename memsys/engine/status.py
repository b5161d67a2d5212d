"""The status of the store and the embedder, the saved batch settings, and the memsys server
and cluster."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from memsys.access import action
from memsys.store.cluster import ClusterStatus, cluster_status
from memsys.audit import AuditAction
from memsys.config import BatchConfig, redact_url
from memsys.embeddings.endpoints import EndpointPool, EndpointStatus
from memsys.logs import default_actor
from memsys.space import SpaceReport, space_report
from memsys.store import server
from memsys.store.server import ServerState, ServerStatus
from memsys.store.server_log import WeaviateProblem, weaviate_problems
from memsys.engine.calls import ADMIN, OPERATOR, VIEWER, Calls
from memsys.engine.records import EmbedderStatus, StoreStatus


class Status(Calls):
    """Which Weaviate and which embedder memsys uses, and whether both answer."""

    @action(VIEWER, "reading the store's status")
    def store(self) -> StoreStatus:
        """Connects (embedded Weaviate starts on first use) and counts the memories."""
        info = self._engine.system.store.server_info()
        return StoreStatus(info["mode"], str(info["version"] or "?"), info["collection"], int(info["objects"]))

    @action(VIEWER, "reading the embedder's status")
    def embedder(self) -> EmbedderStatus:
        provider = self._engine.system.router.provider
        return EmbedderStatus(
            provider=provider.name,
            model=provider.model,
            dimensions=provider.dimensions,
            base_url=redact_url(provider.base_url),
            price_per_million_tokens=provider.price_per_million_tokens,
            max_inputs_per_request=provider.max_inputs_per_request,
        )

    # An admin's: it spends a real embedding call, bypassing the cache.
    @action(ADMIN, "checking the connections")
    def check_connections(self) -> StoreStatus:
        """Reach Weaviate and make one real embedding call (no cache); raises what fails."""
        status = self.store()
        self._engine.system.router.embed(["connection check"], kind="query", use_cache=False)
        return status

    @action(OPERATOR, "checking the embedding endpoints")
    def check_endpoints(self) -> list[EndpointStatus]:
        """Check that every configured embedding endpoint serves the same model (raises
        EmbeddingModelMismatchError naming the one that does not); returns each endpoint's
        state. With the local embedder or a single endpoint there is nothing to compare."""
        provider = self._engine.system.router.provider
        provider.verify()
        return provider.endpoint_status() if isinstance(provider, EndpointPool) else []


class Batch(Calls):
    """The saved batch settings new imports start from."""

    @property
    @action(VIEWER, "reading the batch settings")
    def path(self) -> Path:
        return self._engine.settings.batch_config_path

    @action(VIEWER, "reading the batch settings")
    def saved(self) -> BatchConfig:
        """The saved batch settings new imports start from; BatchConfig's defaults when
        none are saved. A saved file that no longer loads raises ConfigError naming the
        problem."""
        return BatchConfig.saved(self.path)

    @action(ADMIN, "saving batch settings")
    def save(self, config: BatchConfig) -> Path:
        """Save as the batch settings new imports (and MemorySystem's writes) start from."""
        config.validate()
        config.to_file(self.path)
        self._engine.system.batch_config = config
        return self.path


class Server(Calls):
    """The memsys server (embedded Weaviate of this data directory) and the cluster."""

    # Starting or stopping the shared server affects every user of the data directory.
    @action(ADMIN, "starting the memsys server", audit=AuditAction.SERVER_STARTED)
    def start(self, *, actor: str | None = None) -> tuple[ServerState, bool]:
        """Start this data directory's server in the background (it outlives this
        process); returns its state and whether this call started it. A start is recorded
        in the audit trail (a server that was already running is not)."""
        engine = self._engine
        self._require_embedded("start")
        state, started = server.ensure_server(engine.settings)
        if started:
            engine.audit_trail.record(AuditAction.SERVER_STARTED, actor or default_actor(), target=str(state.data_dir),
                                      details={"pid": state.pid, "url": state.url})
        return state, started

    @action(ADMIN, "stopping the memsys server", audit=AuditAction.SERVER_STOPPED)
    def stop(self, *, actor: str | None = None) -> ServerState | None:
        """Stop this data directory's server cleanly; returns what was stopped, if any. A
        stop is recorded in the audit trail (asking to stop a stopped server is not)."""
        engine = self._engine
        self._require_embedded("stop")
        state = server.stop_server(engine.settings)
        if state is not None:
            engine.audit_trail.record(AuditAction.SERVER_STOPPED, actor or default_actor(), target=str(state.data_dir),
                                      details={"pid": state.pid, "ran_seconds": round(time.time() - state.started_at, 1)})
        return state

    @action(VIEWER, "reading the server's status")
    def status(self, count_objects: bool = True) -> ServerStatus:
        """Running or not, where, since when, memory, objects, clients. Starts nothing."""
        return server.server_status(self._engine.settings, count_objects=count_objects)

    @action(OPERATOR, "reading where the data directory's space goes")
    def space(self) -> SpaceReport:
        """The data directory's size by part, its disk's free space, and a warning before
        Weaviate's disk-pressure thresholds."""
        return space_report(self._engine.settings)

    @action(VIEWER, "reading the cluster's status")
    def cluster(self) -> ClusterStatus:
        """Weaviate's nodes (down ones marked), shards, replication and consistency levels."""
        return cluster_status(self._engine.system.store)

    @action(VIEWER, "reading Weaviate's problems")
    def problems(self, since: dt.datetime | None = None, limit: int = 5) -> list[WeaviateProblem]:
        """What embedded Weaviate's own log reports that an operator must know (disk or
        memory pressure, a failed start, errors), newest last; by default the last day's."""
        settings = self._engine.settings
        if settings.weaviate_mode != "embedded":
            return []  # a server memsys does not run keeps its own log
        since = since or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        return weaviate_problems(server.log_file(settings), since=since, limit=limit)

    def _require_embedded(self, action: str) -> None:
        url = self._engine.settings.weaviate_url
        if url:
            raise ValueError(f"Weaviate is the server at {url}; memsys does not {action} that one")

"""The Python API for scripts, over one store and one embedding router: `embed_text`,
`embed_texts_batch`, `write_memory`, `write_memories_batch`, plus reading and searching.
`MemorySystem` holds the router and the store; the module-level functions use a
process-wide default system built from `Settings.load()` on first use. Jobs, imports and
the dashboard's operations are `memsys.engine`'s, built over a `MemorySystem`.
"""
from __future__ import annotations

import atexit
import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence


from memsys.config import BatchConfig, Settings
from memsys.embeddings.router import EmbeddingRouter
from memsys.embeddings.providers import EmbeddingProvider
from memsys.errors import (EmbedderMismatchError, FailedMemory, MemoryWriteError, StoreUnavailableError,
                           weaviate_errors)
from memsys.logs import configure_logging, event, get_logger
from memsys.models import DEFAULT_SOURCE, Memory, validate_memories
from memsys.store import SEARCH_MODES, MemoryFilter, MemoryStore, StoredMemory, settle
from memsys.store.cluster import down_nodes

# Hybrid search's default weight of meaning against keywords (Weaviate's own default).
HYBRID_ALPHA = 0.5
log = get_logger("api")
# How long search trusts its last look at which embedder made the collection's vectors.
_EMBEDDER_CHECK_SECONDS = 5.0


@dataclass
class WriteReport:
    """What one write did to each memory: written, updated (same content, new metadata,
    rewritten without embedding), unchanged (already stored as is) or failed."""

    uuids: list[str]  # per input, in input order
    written: list[int] = field(default_factory=list)  # input indexes
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # input index -> reason
    cache_hits: int = 0
    embedded: int = 0
    embedding_requests: int = 0  # requests sent to the embedding provider
    weaviate_batches: int = 0  # batches written to Weaviate


class MemorySystem:
    """One embedding router and one memory store, configured by one Settings: what this
    module's functions, the import pipeline and the engine embed, write and search through.

    `batch_config` governs `write_memories_batch`: it embeds and writes
    `default_batch_size` records at a time, through the cache when `enable_cache` is on.
    By default it is the saved batch settings of the data directory (BatchConfig's
    defaults when none are saved)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        router: EmbeddingRouter | None = None,
        store: MemoryStore | None = None,
        batch_config: BatchConfig | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        configure_logging(self.settings)
        self.router = router or EmbeddingRouter(self.settings)
        self.store = store or MemoryStore(self.settings, down_nodes=down_nodes)
        if self.store.embedder is None:
            self.store.embedder = embedder_record(self.router.provider)
        self._embedder_checked = False
        self._comparable: tuple[float, int, bool] | None = None  # (until, alias switches, answer) for search
        self.batch_config = batch_config or BatchConfig.saved(self.settings.batch_config_path)

    def with_collection(self, name: str, physical: bool = False) -> "MemorySystem":
        """The same router and connection, writing to another collection (with `physical`,
        exactly that collection, never an alias)."""
        return MemorySystem(self.settings, router=self.router, store=self.store.with_collection(name, physical=physical),
                            batch_config=self.batch_config)

    def close(self) -> None:
        self.store.close()
        self.router.close()

    # --- embeddings ----------------------------------------------------------------
    def embed_text(self, text: str) -> list[float]:
        return self.embed_texts_batch([text])[0]

    def embed_texts_batch(self, texts: list[str], metadata: list[dict[str, Any]] | None = None) -> list[list[float]]:
        return self.router.get_embeddings_batch(texts, metadata=metadata)

    # --- writes --------------------------------------------------------------------
    def write_memory(
        self,
        content: str,
        project: str,
        repo: str,
        agent: str,
        tags: list[str],
        source: str = DEFAULT_SOURCE,
    ) -> str:
        return self.write_memories_batch(
            [{"content": content, "project": project, "repo": repo, "agent": agent, "tags": tags, "source": source}]
        )[0]

    def write_memories_batch(self, memories: list[dict[str, Any]]) -> list[str]:
        """Validate all, then embed and write; returns one UUID per record, in order.

        A bad record raises ValueError naming its index and field, and nothing is written.
        A partial failure raises MemoryWriteError with the UUIDs written and the failed
        records with their reasons.
        """
        records = validate_memories(memories)
        report = self.write(records)
        if report.failed:
            failed = [
                FailedMemory(i, report.uuids[i], records[i].to_dict(), reason) for i, reason in sorted(report.failed.items())
            ]
            written = [report.uuids[i] for i in range(len(records)) if i not in report.failed]
            raise MemoryWriteError(written, failed)
        return report.uuids

    def write(self, records: Sequence[Memory], use_cache: bool | None = None) -> WriteReport:
        """Write validated memories, `default_batch_size` at a time: skip what is stored
        unchanged, embed the rest (through the cache unless `use_cache`, or else the batch
        config's `enable_cache`, says not to), write them, and say what happened to each."""
        if not self._embedder_checked:  # once per system: the collection's record does not change
            check_embedder(self)
            self._embedder_checked = True
        uuids = [m.uuid for m in records]
        report = WriteReport(uuids=uuids)
        cached = self.batch_config.enable_cache if use_cache is None else use_cache
        first: dict[str, int] = {}  # uuid -> index of its first occurrence in this call
        repeats: list[int] = []
        for i, m in enumerate(records):
            if m.uuid in first:
                repeats.append(i)  # the same memory twice in one call is written once
            else:
                first[m.uuid] = i
        distinct = list(first.values())
        size = self.batch_config.default_batch_size
        for start in range(0, len(distinct), size):
            self._write_batch(records, distinct[start:start + size], cached, report)
        for i in repeats:
            reason = report.failed.get(first[uuids[i]])
            if reason is None:
                report.unchanged.append(i)
            else:
                report.failed[i] = reason
        return report

    def _write_batch(self, records: Sequence[Memory], indexes: list[int], use_cache: bool, report: WriteReport) -> None:
        batch = [records[i] for i in indexes]
        existing = self.store.existing([m.uuid for m in batch])
        settled = settle(batch, existing)
        report.unchanged.extend(indexes[j] for j in settled.unchanged)
        if settled.to_update:
            updating = [batch[j] for j in settled.to_update]
            rewritten = self.store.rewrite(updating, [existing[m.uuid].created_at for m in updating])
            for k, j in enumerate(settled.to_update):
                if k in rewritten.failed:
                    report.failed[indexes[j]] = rewritten.failed[k]
                else:
                    report.updated.append(indexes[j])
        to_write = settled.to_write
        if not to_write:
            return
        writing = [batch[j] for j in to_write]
        embedding = self.router.embed([m.content for m in writing], use_cache=use_cache)
        report.cache_hits += embedding.cache_hits
        report.embedded += embedding.embedded
        report.embedding_requests += embedding.requests
        report.weaviate_batches += 1
        created = [existing[m.uuid].created_at if m.uuid in existing else None for m in writing]
        outcome = self.store.write(writing, embedding.vectors, created_at=created)
        for k, j in enumerate(to_write):
            if k in outcome.failed:
                report.failed[indexes[j]] = outcome.failed[k]
            else:
                report.written.append(indexes[j])

    # --- reads ---------------------------------------------------------------------
    def get_memory(self, uuid: str) -> StoredMemory | None:
        return self.store.get(uuid)

    def count_memories(self, project: str | None = None) -> int:
        return self.store.count(MemoryFilter(project=project))

    def search_memories(
        self,
        query: str,
        limit: int = 10,
        project: str | None = None,
        repo: str | None = None,
        agent: str | None = None,
        tags: Sequence[str] | None = None,
        mode: str = "hybrid",
        alpha: float = HYBRID_ALPHA,
    ) -> list[StoredMemory]:
        """Search memories: `hybrid` (default) fuses meaning (the query embedded as a query,
        memories were embedded as passages) with keywords (BM25), so an exact term such as
        a command name or an error code is found first; `vector` or `keyword` use one.
        `alpha` weighs them in hybrid: 1 = meaning only, 0 = keywords only. Each hit's
        `matched_by` says "meaning", "keyword" or "both". While the collection holds another
        embedder's vectors (a re-embed not yet switched), meaning cannot be compared: the
        search is by keywords, and its hits say so."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number of at least 1, got {limit!r}")
        if mode not in SEARCH_MODES:
            raise ValueError(f"search mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
        if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number from 0 to 1, got {alpha!r}")
        if mode != "keyword" and not self._vectors_comparable():
            mode = "keyword"
        vector = None if mode == "keyword" else self.router.embed([query], kind="query").vectors[0]
        where = MemoryFilter(project=project, repo=repo, agent=agent, tags=tuple(tags) if tags else None)
        return self.store.search(vector, limit=limit, where=where, text=query, mode=mode, alpha=float(alpha))

    def _vectors_comparable(self) -> bool:
        """Whether a query embedded now can be compared with the collection's vectors: they
        were made by the configured embedder (or the collection does not say). Two models of
        the same length give numbers Weaviate compares without a word, and mean nothing.

        Asked of Weaviate's schema at most every few seconds, and again at once after this
        process moved the alias (a re-embed's switch): a schema read waits for a Raft leader,
        which a cluster can be without for seconds. When it cannot be asked, the last answer
        stands (or yes): the search itself does not need the schema and still answers."""
        switches = self.store.alias_switches
        cached = self._comparable
        if cached is not None and cached[1] == switches and time.monotonic() < cached[0]:
            return cached[2]
        try:
            recorded = self.store.recorded_embedder()
        except weaviate_errors(StoreUnavailableError) as e:
            log.warning("cannot tell which embedder made the collection's vectors (%s); searching as before",
                        type(e).__name__, extra=event("search.embedder_unknown", reason=str(e)[:300]))
            return cached[2] if cached is not None else True
        comparable = recorded is None or same_embedder(self.router.provider, recorded)
        self._comparable = (time.monotonic() + _EMBEDDER_CHECK_SECONDS, switches, comparable)
        if not comparable:
            log.warning("searching by keywords only: %s holds vectors of %s, the embedder is set to %s",
                        self.store.collection_name, describe_embedder(recorded or {}),
                        describe_embedder(embedder_record(self.router.provider)),
                        extra=event("search.keywords_only", collection=self.store.collection_name))
        return comparable


def embedder_record(provider: EmbeddingProvider) -> dict[str, Any]:
    """What a collection records about the embedder of its vectors."""
    return {"provider": provider.name, "model": provider.model, "dimensions": provider.dimensions,
            "fingerprint": provider.fingerprint}


def same_embedder(provider: EmbeddingProvider, recorded: dict[str, Any]) -> bool:
    """Whether a collection's recorded embedder is `provider`'s model. A fingerprint
    recorded before the endpoint left it (it named the base URL) is the same model."""
    same = {provider.fingerprint, *(provider.legacy_fingerprint(u) for u in provider.base_urls)}
    return recorded.get("fingerprint") in same


def describe_embedder(record: dict[str, Any]) -> str:
    dims = f", {record['dimensions']} dimensions" if record.get("dimensions") else ""
    return f"{record.get('provider')} / {record.get('model')}{dims}"


def check_embedder(system: "MemorySystem") -> None:
    """Raise EmbedderMismatchError, naming both embedders and what to do, when the
    collection's vectors come from another embedder than the one configured."""
    current = embedder_record(system.router.provider)
    if not system.store.client.collections.exists(system.store.collection_name):
        # The first writer makes the collection: it is made for this system's embedder
        # (a store shared by two systems may have been given the other one's).
        system.store.embedder = current
    recorded = system.store.recorded_embedder()
    if recorded is None or same_embedder(system.router.provider, recorded):
        return
    live = system.store.live_collection()
    name = system.store.collection_name if live == system.store.collection_name else \
        f"{system.store.collection_name} ({live})"
    raise EmbedderMismatchError(
        f"collection {name} holds vectors of {describe_embedder(recorded)}, but the embedder "
        f"is set to {describe_embedder(current)}. Importing would mix two models' vectors. Set the embedding "
        f"settings back to {describe_embedder(recorded)}, re-embed the collection with the new embedder "
        f"(`python -m memsys reembed`, or Settings > Re-embed), or import into a new collection (MEMSYS_COLLECTION)"
    )


# --- the process-wide default system behind the module-level functions --------------
_default: MemorySystem | None = None
_default_lock = threading.Lock()


def get_default_system() -> MemorySystem:
    global _default
    with _default_lock:
        if _default is None:
            _default = MemorySystem()
        return _default


@atexit.register
def _close_default_system() -> None:
    """A script using this module's functions closes its Weaviate connection at exit.

    Then the objects still alive are frozen out of the garbage collector: the
    interpreter's last collection would otherwise walk every object of the Weaviate and
    OpenAI clients (about a third of a second, longer than a quick script's own work),
    only for the operating system to take the whole process's memory back anyway."""
    with _default_lock:
        if _default is not None:
            _default.close()
    gc.freeze()


def set_default_system(system: MemorySystem | None) -> None:
    """Use `system` behind the module-level functions (None: build one on next use)."""
    global _default
    with _default_lock:
        _default = system


def embed_text(text: str) -> list[float]:
    """Embed one text (as a document passage), through the cache."""
    return get_default_system().embed_text(text)


def embed_texts_batch(texts: list[str], metadata: list[dict[str, Any]] | None = None) -> list[list[float]]:
    """Embed texts in input order; only cache misses reach the provider."""
    return get_default_system().embed_texts_batch(texts, metadata=metadata)


def write_memory(content: str, project: str, repo: str, agent: str, tags: list[str], source: str = DEFAULT_SOURCE) -> str:
    return get_default_system().write_memory(content, project, repo, agent, tags, source)


def write_memories_batch(memories: list[dict[str, Any]]) -> list[str]:
    return get_default_system().write_memories_batch(memories)


def get_memory(uuid: str) -> StoredMemory | None:
    return get_default_system().get_memory(uuid)


def count_memories(project: str | None = None) -> int:
    return get_default_system().count_memories(project)


def search_memories(
    query: str,
    limit: int = 10,
    project: str | None = None,
    repo: str | None = None,
    agent: str | None = None,
    tags: Sequence[str] | None = None,
    mode: str = "hybrid",
    alpha: float = HYBRID_ALPHA,
) -> list[StoredMemory]:
    return get_default_system().search_memories(query, limit, project, repo, agent, tags, mode, alpha)

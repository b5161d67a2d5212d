"""The embedding router: cache lookup, de-duplication, provider requests sized to the
provider's limits, retries, and results in input order. Only cache misses reach the
provider, each distinct text once per call.
"""
from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from memsys.config import Settings, redact_url
from memsys.embeddings.cache import CacheDamagedError, EmbeddingCache, ModelInfo, make_key
from memsys.embeddings.health import CacheHealthReport, Progress, check_cache
from memsys.embeddings.factory import provider_from_settings
from memsys.embeddings.providers import EmbeddingProvider, Kind
from memsys.errors import EmbeddingProviderError, InputTooLongError
from memsys.retry import RetryPolicy

KINDS = ("passage", "query")
WARMUP_STEP = 64  # texts per warm-up call: one local-model request, a couple of seconds of work


@dataclass(frozen=True)
class WarmupReport:
    """What a warm-up did: texts read, how many the cache already had, how many were embedded
    now (the rest repeated a text seen earlier in the same warm-up)."""

    texts: int
    already_cached: int
    embedded: int
    seconds: float

    @property
    def repeats(self) -> int:
        return self.texts - self.already_cached - self.embedded


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order, plus what it took to get them."""

    vectors: np.ndarray  # float32, shape (len(texts), dimensions)
    cache_hits: int  # inputs answered from the cache
    embedded: int  # distinct texts sent to the provider
    requests: int  # provider requests that succeeded
    retries: int  # provider requests that were retried
    tokens: int  # tokens sent to the provider (0 where not counted)


class EmbeddingRouter:
    """Embeds texts through a persistent cache and one provider. Thread-safe."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        provider: EmbeddingProvider | None = None,
        cache: EmbeddingCache | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.provider = provider or provider_from_settings(self.settings)
        # `is None`, not `or`: an empty cache is falsy (it has a length) but must still be used.
        self.cache = cache if cache is not None else EmbeddingCache(
            self.settings.cache_dir,
            size_limit_bytes=self.settings.cache_size_limit_bytes,
            eviction_policy=self.settings.cache_eviction_policy,
        )
        self.retry = retry or RetryPolicy()
        self._lock = threading.Lock()
        self._other_caches: dict[Path, "EmbeddingRouter"] = {}
        self.session_hits = 0
        self.session_misses = 0
        self.migrated = self._move_endpoint_keyed_entries()

    def _move_endpoint_keyed_entries(self) -> int:
        """A cache may hold entries under keys that name an endpoint as well as the model;
        move this model's (any address: a moved server keeps its cache) to the model's key.
        Returns how many moved. A damaged cache is left for the health check."""
        provider = self.provider
        try:
            models = self.cache.models()
        except CacheDamagedError:
            return 0
        moved = 0
        for fp, info in models.items():
            if (fp != provider.fingerprint and info.base_url and info.provider == provider.name
                    and info.model == provider.model and provider.legacy_fingerprint(info.base_url) == fp):
                current = ModelInfo(provider.fingerprint, provider.name, provider.model, provider.base_url, info.dimensions)
                moved += self.cache.rekey_model(fp, current)
        return moved

    @property
    def cache_dir(self) -> Path:
        return self.cache.directory

    def close(self) -> None:
        """Let go of the calling thread's connections to the cache databases (diskcache
        keeps one per thread and opens it again on next use). A long-lived thread done with
        the cache (the job runner after a job) and the engine's close call this, so no file
        of the data directory stays open once the engine is closed."""
        self.cache.close()
        for other in list(self._other_caches.values()):
            other.close()

    def with_cache_dir(self, directory: Path) -> "EmbeddingRouter":
        """The same provider over the cache in another folder (a job whose BatchConfig names
        its own `cache_dir`); one router per folder for the life of this one."""
        if Path(directory) == Path(self.cache_dir):
            return self
        with self._lock:
            other = self._other_caches.get(Path(directory))
            if other is None:
                cache = EmbeddingCache(
                    Path(directory),
                    size_limit_bytes=self.settings.cache_size_limit_bytes,
                    eviction_policy=self.settings.cache_eviction_policy,
                )
                other = self._other_caches[Path(directory)] = EmbeddingRouter(
                    self.settings, provider=self.provider, cache=cache, retry=self.retry
                )
            return other

    # --- embedding texts, as lists of floats -----------------------------------------
    def get_embedding(self, text: str, use_cache: bool = True) -> list[float]:
        return self.get_embeddings_batch([text], use_cache=use_cache)[0]

    def get_embeddings_batch(
        self,
        texts: list[str],
        use_cache: bool = True,
        metadata: list[dict[str, Any]] | None = None,
    ) -> list[list[float]]:
        """Embed `texts` (documents, as passages) in input order.

        `metadata`, when given, has one dict (or None) per text; `{"input_type": "query"}`
        embeds that text as a search query instead of a passage.
        """
        kinds = _kinds_from_metadata(texts, metadata)
        result = self.embed(texts, use_cache=use_cache, kinds=kinds)
        return vectors_to_lists(result.vectors)

    def get_cache_info(self) -> dict[str, Any]:
        hits, misses = self.cache.lifetime_stats()
        by_model = self.cache.count_by_model()
        models = self.cache.models()
        lookups = hits + misses
        return {
            "num_entries": sum(by_model.values()),
            "total_size_bytes": self.cache.volume(),
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / lookups if lookups else 0.0,
            "session_hits": self.session_hits,
            "session_misses": self.session_misses,
            "directory": str(self.cache_dir),
            "provider": self.provider.name,
            "model": self.provider.model,
            "dimensions": self.provider.dimensions,
            "size_limit_bytes": self.cache.size_limit_bytes,
            "eviction_policy": self.cache.eviction_policy,
            # With policy "none" (the default) nothing is ever evicted and the limit is not enforced.
            "evicts": self.cache.eviction_policy != "none",
            "models": [
                {
                    "fingerprint": fp,
                    "provider": models[fp].provider if fp in models else "unknown",
                    "model": models[fp].model if fp in models else "unknown",
                    "base_url": models[fp].base_url if fp in models else "",
                    "dimensions": models[fp].dimensions if fp in models else None,
                    "entries": n,
                    "current": fp == self.provider.fingerprint,
                }
                for fp, n in sorted(by_model.items(), key=lambda kv: -kv[1])
            ],
        }

    # --- the engine's API -----------------------------------------------------------
    def embed(
        self,
        texts: Sequence[str],
        kind: Kind = "passage",
        use_cache: bool = True,
        kinds: Sequence[Kind] | None = None,
        retry: RetryPolicy | None = None,
    ) -> EmbeddingResult:
        """Embed texts; cached ones are not sent, duplicates are sent once. `retry`
        overrides the router's retry policy for this call (an import's BatchConfig)."""
        _check_texts(texts)
        n = len(texts)
        kinds = list(kinds) if kinds is not None else [kind] * n
        provider = self.provider
        unique, positions = _distinct(kinds, texts)
        fingerprint = provider.fingerprint
        keys = [make_key(fingerprint, k, t) for k, t in unique] if use_cache else []
        vectors, missing = self._cached(unique, keys, use_cache)
        hit_slots = len(unique) - len(missing)

        requests = retries = tokens = 0
        if missing:
            requests, retries, tokens = self._fetch(unique, missing, vectors, keys if use_cache else None, retry or self.retry)

        missed = np.zeros(len(unique), dtype=bool)
        missed[missing] = True
        cache_hits = int(n - missed[positions].sum()) if n else 0
        if use_cache:
            self.cache.record_lookups(hit_slots, len(missing))
            with self._lock:
                self.session_hits += hit_slots
                self.session_misses += len(missing)
        if isinstance(vectors, np.ndarray):
            table = vectors
        else:
            width = provider.dimensions or (vectors[0].shape[0] if vectors else 0)  # type: ignore[union-attr]
            table = np.stack(vectors) if vectors else np.empty((0, width), dtype=np.float32)  # type: ignore[arg-type]
        # Without duplicates every input is its own slot, in order: no copy needed.
        ordered = table if len(unique) == n else table[positions]
        return EmbeddingResult(
            vectors=ordered,
            cache_hits=cache_hits,
            embedded=len(missing),
            requests=requests,
            retries=retries,
            tokens=tokens,
        )

    def _cached(
        self, unique: list[tuple[str, str]], keys: list[str], use_cache: bool
    ) -> tuple[np.ndarray | list[np.ndarray | None], list[int]]:
        """The vectors of `unique` the cache holds (all missing without `use_cache`), and the
        slots still missing."""
        provider = self.provider
        dims = provider.dimensions
        if dims is not None:
            # Known size: cached rows land straight in one matrix, the provider fills the rest.
            if use_cache and unique:
                matrix, found = self.cache.get_matrix(keys, provider.fingerprint, dims)
            else:
                matrix, found = np.zeros((len(unique), dims), dtype=np.float32), np.zeros(len(unique), dtype=bool)
            return matrix, np.flatnonzero(~found).tolist()
        # Size not known until the provider first answers (OpenAI-compatible servers).
        cached = self.cache.get_many(keys, provider.fingerprint, None) if use_cache and unique else {}
        rows = [cached.get(key) for key in keys] if use_cache else [None] * len(unique)
        return rows, [slot for slot, v in enumerate(rows) if v is None]

    def _fetch(
        self,
        unique: list[tuple[str, str]],
        missing: list[int],
        vectors: np.ndarray | list[np.ndarray | None],
        keys: list[str] | None,
        retry: RetryPolicy,
    ) -> tuple[int, int, int]:
        provider = self.provider
        token_counts = self._token_counts([unique[s][1] for s in missing])
        requests = retries = 0
        for kind in KINDS:
            slots = [s for s in missing if unique[s][0] == kind]
            costs = [token_counts.get(unique[s][1], 0) for s in slots]
            cost_of = dict(zip(slots, costs))
            for batch in _split_requests(slots, costs, provider):
                retried = [0]
                batch_tokens = sum(cost_of[s] for s in batch)

                def on_retry(_e: BaseException, _attempt: int, _wait: float) -> None:
                    retried[0] += 1

                out = retry.run(
                    lambda: provider.embed_request([unique[s][1] for s in batch], kind, batch_tokens),  # type: ignore[arg-type]
                    is_retryable=lambda e: isinstance(e, EmbeddingProviderError) and e.retryable,
                    retry_after=lambda e: getattr(e, "retry_after", None),
                    on_retry=on_retry,
                    what=f"an embedding request of {len(batch)} texts to {provider.name}",
                )
                requests += 1
                retries += retried[0]
                for s, v in zip(batch, out):
                    vectors[s] = v
                if keys is not None:
                    dims = int(out.shape[1])
                    self.cache.register_model(
                        ModelInfo(provider.fingerprint, provider.name, provider.model, redact_url(provider.base_url) or "", dims)
                    )
                    self.cache.set_many(((keys[s], vectors[s]) for s in batch), provider.fingerprint)  # type: ignore[misc]
        return requests, retries, sum(token_counts.values()) if token_counts else 0

    def _token_counts(self, texts: list[str]) -> dict[str, int]:
        """Token counts where the provider has a hard limit; the local model windows long
        texts itself, so it needs none."""
        provider = self.provider
        if provider.name == "local":
            return {}
        counts: dict[str, int] = {}
        for i, text in enumerate(texts):
            n = provider.count_tokens(text)
            if n > provider.max_input_tokens:
                raise InputTooLongError(i, n, provider.max_input_tokens)
            counts[text] = n
        return counts

    def cached_texts(self, texts: Sequence[str], kind: Kind = "passage") -> set[str]:
        """Which of `texts` the cache already holds for the current model."""
        provider = self.provider
        by_key = {make_key(provider.fingerprint, kind, t): t for t in texts}
        found = self.cache.get_many(list(by_key), provider.fingerprint, provider.dimensions)
        return {by_key[k] for k in found}

    # --- cache operations -----------------------------------------------------------
    def warmup(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed and cache texts ahead of an import."""
        return self.embed(list(texts))

    def warm_up(
        self,
        texts: Iterable[str],
        progress: Callable[[int, int], None] | None = None,
        total: int = 0,
    ) -> WarmupReport:
        """Warm the cache from a stream of texts, WARMUP_STEP at a time, so a large file is
        never held whole; `progress(done, total)` after each step (`total` 0 when unknown)."""
        started = time.monotonic()
        done = hits = embedded = 0
        step: list[str] = []

        def flush() -> None:
            nonlocal done, hits, embedded
            result = self.embed(step)
            done += len(step)
            hits += result.cache_hits
            embedded += result.embedded
            step.clear()
            if progress is not None:
                progress(done, total)

        for text in texts:
            step.append(text)
            if len(step) == WARMUP_STEP:
                flush()
        if step:
            flush()
        return WarmupReport(done, hits, embedded, time.monotonic() - started)

    def check_cache(self, fix: bool = False, progress: Progress | None = None) -> CacheHealthReport:
        """Check the cache: diskcache's own consistency check, then every entry decoded and
        validated (dimension, finite numbers, the model its key names). `fix=True` removes
        what cannot be trusted and repairs what diskcache can; `progress(checked, total)`
        is called after each chunk. Safe while imports write to the same cache."""
        provider = self.provider
        known = {provider.fingerprint: provider.dimensions} if provider.dimensions else {}
        return check_cache(self.cache, known_dimensions=known, fix=fix, progress=progress)

    def clear(self) -> int:
        """Remove every cached vector; returns how many entries were removed."""
        with self._lock:
            self.session_hits = self.session_misses = 0
        return self.cache.clear()


def _distinct(kinds: Sequence[str], texts: Sequence[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The distinct (kind, text) pairs, in first-seen order, and where each input points."""
    slot_of: dict[tuple[str, str], int] = {}
    positions = np.empty(len(texts), dtype=np.int64)
    unique: list[tuple[str, str]] = []
    for i, pair in enumerate(zip(kinds, texts)):
        slot = slot_of.get(pair)
        if slot is None:
            slot = slot_of[pair] = len(unique)
            unique.append(pair)
        positions[i] = slot
    return unique, positions


def _split_requests(slots: list[int], costs: list[int], provider: EmbeddingProvider) -> Iterator[list[int]]:
    """Cut a list of texts into requests within the provider's input and token limits."""
    batch: list[int] = []
    budget = 0
    for slot, cost in zip(slots, costs):
        batch_full = len(batch) >= provider.max_inputs_per_request
        if batch and (batch_full or budget + cost > provider.max_tokens_per_request):
            yield batch
            batch, budget = [], 0
        batch.append(slot)
        budget += cost
    if batch:
        yield batch


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ValueError("texts must be a list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"text #{i} must be a string, got {type(t).__name__}")
        if not t.strip():
            raise ValueError(f"text #{i} is empty")


def _kinds_from_metadata(texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None) -> list[Kind] | None:
    if metadata is None:
        return None
    if isinstance(metadata, (str, bytes, Mapping)) or not isinstance(metadata, Sequence):
        raise ValueError("metadata must be a list with one dict per text")
    if len(metadata) != len(texts):
        raise ValueError(f"metadata has {len(metadata)} items but texts has {len(texts)}; they must be the same length")
    kinds: list[Kind] = []
    for i, m in enumerate(metadata):
        if m is None:
            kinds.append("passage")
            continue
        if not isinstance(m, Mapping):
            raise ValueError(f"metadata #{i} must be a dict, got {type(m).__name__}")
        kind = m.get("input_type", "passage")
        if kind not in KINDS:
            raise ValueError(f"metadata #{i}: input_type must be 'passage' or 'query', got {kind!r}")
        kinds.append(kind)
    return kinds


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Building millions of floats triggers the cyclic GC over and over for nothing:
    # floats and lists of floats cannot form cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def vectors_to_lists(vectors: np.ndarray) -> list[list[float]]:
    with _gc_paused():
        return vectors.tolist()

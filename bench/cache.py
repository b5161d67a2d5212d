"""Embedding cache benchmarks (TARGETS.md P2, P2l, and the health check's speed): 10,000 cached
vectors looked up in one call, against a loop of single diskcache gets and against the
seed's one-JSON-file-per-entry layout, all on the same vectors in this run. The cache is
filled directly with EmbeddingCache.set_many: cache lookups are what is measured, and no
provider is ever called (checked)."""
from __future__ import annotations

import gc
import hashlib
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.common import Result, timed
from memsys import EmbeddingRouter, Settings
from memsys.config import LOCAL_DIMENSIONS, LOCAL_MODEL
from memsys.embeddings.cache import EmbeddingCache, ModelInfo, decode_vector, make_key
from memsys.embeddings.providers import LocalProvider

N = 10_000


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median of `repeats` timed runs after one untimed warm-up run (page caches, imports)."""
    fn()
    times = []
    for _ in range(repeats):
        value, seconds = timed(fn)
        del value
        gc.collect()
        times.append(seconds)
    return statistics.median(times)


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="memsys-bench-cache-") as tmp:
        return _run(Path(tmp))


def _run(tmp: Path) -> list[Result]:
    provider = LocalProvider()
    fp = provider.fingerprint
    texts = [f"cached passage number {i} about vectors and memories" for i in range(N)]
    keys = [make_key(fp, "passage", t) for t in texts]
    vectors = np.random.default_rng(0).standard_normal((N, LOCAL_DIMENSIONS)).astype(np.float32)

    cache = EmbeddingCache(tmp / "cache")
    cache.register_model(ModelInfo(fp, "local", LOCAL_MODEL, "", LOCAL_DIMENSIONS))
    cache.set_many(zip(keys, vectors), fp)
    router = EmbeddingRouter(Settings(data_dir=tmp), provider=provider, cache=cache)

    # The seed's layout: one JSON file per entry, a list of floats, named by the text's hash.
    json_dir = tmp / "json"
    json_dir.mkdir()
    paths = [json_dir / f"{hashlib.sha256(t.encode()).hexdigest()}.json" for t in texts]
    for path, vector in zip(paths, vectors):
        path.write_text(json.dumps(vector.tolist()))

    def json_files() -> list[list[float]]:
        out = []
        for path in paths:
            with path.open("r") as f:
                out.append(json.load(f))
        return out

    def single_gets() -> list[np.ndarray]:
        get = cache.diskcache.get
        return [decode_vector(get(k), fp, LOCAL_DIMENSIONS) for k in keys]

    def single_gets_as_lists() -> list[list[float]]:
        return [v.tolist() for v in single_gets()]

    assert router.embed(texts).embedded == 0, "every text must come from the cache"
    assert np.array_equal(np.asarray(router.get_embeddings_batch(texts[:3])), vectors[:3])

    batch = median_seconds(lambda: router.get_embeddings_batch(texts), repeats=5)
    floor = median_seconds(vectors.tolist, repeats=5)  # numpy's own Python floats of the same vectors
    embed = median_seconds(lambda: router.embed(texts), repeats=5)
    gets = median_seconds(single_gets, repeats=3)
    gets_lists = median_seconds(single_gets_as_lists, repeats=3)
    files = median_seconds(json_files, repeats=3)
    check = median_seconds(router.check_cache, repeats=3)
    entries = len(cache)  # the vectors, the model record and the hit counter
    final = router.check_cache()
    assert final.ok and final.healthy == entries

    return [
        Result("P2l", f"get_embeddings_batch (lists) vs numpy's tolist() of the same vectors ({N:,})", floor / batch,
               "x", ">= 0.8x", floor / batch >= 0.8,
               f"{batch * 1e3:.0f} ms vs {floor * 1e3:.0f} ms ({N / batch:,.0f} vectors/s; ~3.8M float objects); "
               f"one JSON file per entry {files * 1e3:.0f} ms"),
        Result("P2", f"embed() (numpy, the import path) vs one JSON file per entry ({N:,})", files / embed, "x",
               ">= 15x", files / embed >= 15, f"{embed * 1e3:.0f} ms vs {files * 1e3:.0f} ms"),
        Result("P2", "embed() throughput (numpy)", N / embed, "vectors/s",
               ">= 100,000/s", N / embed >= 100_000),
        Result("P2", "get_embeddings_batch vs loop of single diskcache.get (lists)", gets_lists / batch, "x",
               "> 1x (ours)", gets_lists > batch, f"{gets_lists * 1e3:.0f} ms for the loop"),
        Result("P2", "embed() vs loop of single diskcache.get (numpy)", gets / embed, "x",
               "> 1x (ours)", gets > embed, f"{gets * 1e3:.0f} ms for the loop"),
        Result("R4", f"health check per 10,000 entries ({entries:,} checked)", check * 10_000 / entries, "s",
               "<= 1 s (ours)", check * 10_000 / entries <= 1.0),
    ]

"""One import in a fresh process, for P7: prints its peak resident memory as JSON.
Every vector is put in the cache first (random, normalised), so what is measured is the
pipeline's own memory, not the embedder's time. The job does not wait for Weaviate's
vector index (`_Unwaited`): that wait is Weaviate's work in Weaviate's process, 13 of the
14 minutes an import of 100,000 took here, while this process only polls; its memory is
the same either way. The collection is dropped at the end, its index queue with it.

Usage: python -m bench.memory_child CORPUS.jsonl DATA_DIR (the bench's: its memsys server)
"""
from __future__ import annotations

import json
import resource
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from memsys import MemorySystem, Settings
from memsys.embeddings.cache import make_key
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from memsys.store import MemoryStore
from memsys.store.cluster import down_nodes


class _Unwaited(MemoryStore):
    """The store, but a job's wait for the index queue to drain returns at once."""

    def wait_for_indexing(self, timeout: float = 900.0, poll: float = 0.1) -> float:
        return 0.0


def main(corpus: str, data_dir: str) -> None:
    settings = Settings.load(
        env={"MEMSYS_DATA_DIR": data_dir, "MEMSYS_COLLECTION": f"Mem_{uuid.uuid4().hex[:10]}"},
        secrets_path=Path("/none"),
    )
    system = MemorySystem(settings, store=_Unwaited(settings, down_nodes=down_nodes))
    provider = system.router.provider
    rng = np.random.default_rng(0)
    with open(corpus, encoding="utf-8") as f:
        batch = []
        for line in f:
            batch.append(json.loads(line)["content"])
            if len(batch) == 5000:
                _fill(system, provider, batch, rng)
                batch = []
        _fill(system, provider, batch, rng)
    engine = Engine(settings, system=system)
    job_id = engine.imports.create([Path(corpus)], MemoryDefaults("bench", "main", "bench"))
    start = time.perf_counter()
    job = engine.pipeline.run(job_id)
    seconds = time.perf_counter() - start
    if job.written != job.total:
        raise SystemExit(f"import incomplete: {job}")
    system.store.delete_all()
    print(json.dumps({"items": job.total, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "items_per_second": job.total / seconds}))


def _fill(system: MemorySystem, provider, texts: list[str], rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    if not texts:
        return
    vectors = rng.standard_normal((len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    system.router.cache.set_many(((make_key(provider.fingerprint, "passage", t), v) for t, v in zip(texts, vectors)),
                                 provider.fingerprint)


if __name__ == "__main__":
    main(*sys.argv[1:3])

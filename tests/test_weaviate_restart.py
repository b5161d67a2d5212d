"""Weaviate killed and started again in the middle of an import: the job recovers, or
records failures that "retry failed" then clears completely. Uses an embedded Weaviate
of its own, so killing it leaves the other tests alone."""
from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from weaviate.embedded import EmbeddedOptions, EmbeddedV4

from memsys import MemorySystem, Settings
from memsys.config import WEAVIATE_VERSION
from memsys.engine import Engine
from memsys.ingest.documents import MemoryDefaults
from memsys.store import embedded_environment

from conftest import free_port
from helpers import short_texts, write_rows_csv
from test_pipeline import SMALL_BATCHES


def weaviate_pids(port: int) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if any("weaviate-v" in part for part in cmd[:1]) and "--port" in cmd and str(port) in cmd:
            pids.append(proc.pid)
    return pids


@pytest.fixture
def own_weaviate(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings.load(
        env={
            "MEMSYS_DATA_DIR": str(tmp_path / "data"),
            "MEMSYS_WEAVIATE_PORT": str(free_port()),
            "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        },
        secrets_path=Path("/none"),
    )
    yield settings
    for pid in weaviate_pids(settings.weaviate_port):
        psutil.Process(pid).kill()


def start_again(settings: Settings) -> EmbeddedV4:
    db = EmbeddedV4(
        EmbeddedOptions(
            persistence_data_path=str(settings.weaviate_data_dir),
            binary_path=str(settings.weaviate_binary_dir),
            version=WEAVIATE_VERSION,
            port=settings.weaviate_port,
            grpc_port=settings.weaviate_grpc_port or 50060,
            additional_env_vars=embedded_environment(),
        )
    )
    db.start()
    return db


def test_weaviate_killed_mid_import_loses_nothing_after_retry_failed(own_weaviate: Settings, tmp_path: Path) -> None:
    system = MemorySystem(own_weaviate)
    engine = Engine(own_weaviate, system=system)
    assert system.count_memories() == 0  # starts embedded Weaviate
    write_rows_csv(tmp_path / "rows.csv", short_texts(600, "restart"))
    config = dataclasses.replace(SMALL_BATCHES, max_retries=2, base_retry_delay=0.2, max_retry_delay=0.5)
    job_id = engine.start_import(engine.spool_paths([tmp_path / "rows.csv"]), MemoryDefaults("p", "r", "a"), config=config)
    deadline = time.monotonic() + 120
    while engine.jobs.require(job_id).processed < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    [pid] = weaviate_pids(own_weaviate.weaviate_port)
    psutil.Process(pid).send_signal(signal.SIGKILL)
    time.sleep(3)  # batches fail while it is down
    restarted = start_again(own_weaviate)
    try:
        job = engine.runner.wait(job_id, timeout=300)
        assert job.written + job.unchanged + job.failed == job.total == 600
        if job.failed:
            assert set(engine.jobs.errors_by_type(job_id)) <= {"store_unavailable", "store_rejected"}
            engine.runner.retry_failed(job_id)
            job = engine.runner.wait(job_id, timeout=300)
        assert (job.state, job.written, job.failed) == ("completed", 600, 0)
        assert system.count_memories() == 600
    finally:
        engine.close()
        restarted.stop()

"""Weaviate killed in the middle of an import: the memsys server's supervisor starts it
again on the same ports, and the job recovers, or records failures that "retry failed"
then clears completely. Uses a memsys server of its own, so killing it leaves the other
tests alone."""
from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from memsys import MemorySystem, Settings
from memsys.store import server as memsys_server
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults

from conftest import settings_for
from helpers import short_texts, write_rows_csv
from test_pipeline import SMALL_BATCHES


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Settings]:
    settings = settings_for(tmp_path / "data")
    yield settings
    memsys_server.stop_server(settings)


def test_weaviate_killed_mid_import_loses_nothing_after_retry_failed(own_server: Settings, tmp_path: Path) -> None:
    system = MemorySystem(own_server)
    engine = Engine(own_server, system=system)
    assert system.count_memories() == 0  # starts the memsys server
    before = memsys_server.running_state(own_server)
    assert before is not None
    write_rows_csv(tmp_path / "rows.csv", short_texts(600, "restart"))
    config = dataclasses.replace(SMALL_BATCHES, max_retries=4, base_retry_delay=0.5, max_retry_delay=4.0)
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), MemoryDefaults("p", "r", "a"), config=config)
    deadline = time.monotonic() + 120
    while engine.job_store.require(job_id).processed < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    psutil.Process(before.weaviate_pid).send_signal(signal.SIGKILL)
    try:
        job = engine.runner.wait(job_id, timeout=300)
        after = memsys_server.running_state(own_server)
        assert after is not None and after.pid == before.pid and after.weaviate_pid != before.weaviate_pid
        assert (after.port, after.restarts) == (before.port, 1)
        assert job.written + job.unchanged + job.failed == job.total == 600
        if job.failed:
            assert set(engine.job_store.errors_by_type(job_id)) <= {"store_unavailable", "store_rejected"}
            engine.runner.retry_failed(job_id)
            job = engine.runner.wait(job_id, timeout=300)
        assert (job.state, job.written, job.failed) == ("completed", 600, 0)
        assert system.count_memories() == 600
    finally:
        engine.close()

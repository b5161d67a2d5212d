"""Weaviate with asynchronous indexing (its own embedded server, started once for this
module): a job counts as done only when the index queue has drained, so a search right
after the job finds every memory it imported."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from memsys import MemorySystem, Settings
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults

from conftest import free_port
from helpers import short_texts, write_rows_csv


@pytest.fixture(scope="module")
def async_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemorySystem]:
    data = tmp_path_factory.mktemp("async-indexing")
    settings = Settings.load(
        env={
            "MEMSYS_DATA_DIR": str(data),
            "MEMSYS_WEAVIATE_PORT": str(free_port()),
            "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
            "MEMSYS_ASYNC_INDEXING": "true",
        },
        secrets_path=Path("/none"),
    )
    system = MemorySystem(settings)
    system.store.client  # start the server now, not inside the test
    yield system
    system.close()


def test_a_search_right_after_the_job_finds_every_imported_memory(async_system: MemorySystem, tmp_path: Path) -> None:
    system = async_system.with_collection(f"Async_{uuid.uuid4().hex[:10]}")
    engine = Engine(async_system.settings.replace(data_dir=tmp_path / "data"), system=system)
    texts = short_texts(400, "async")
    write_rows_csv(tmp_path / "rows.csv", texts)
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), MemoryDefaults("p", "r", "a"))
    job = engine.jobs.wait(job_id, timeout=600)
    assert job.state == "completed" and job.written == 400
    queue = system.store.index_queue()
    assert queue.drained and queue.shards >= 1
    vectors = system.router.embed(texts).vectors
    found = {hit.content for v in vectors for hit in system.store.search(v, limit=1)}
    assert found == set(texts)
    engine.job_store.close()
    system.store.delete_all()


def test_async_indexing_is_on_in_the_embedded_server(async_system: MemorySystem) -> None:
    from memsys.store import embedded_environment

    assert embedded_environment(async_indexing=True)["ASYNC_INDEXING"] == "true"
    assert embedded_environment(async_indexing=True)["QUEUE_SCHEDULER_INTERVAL"] == "100ms"  # done soon after the last write
    assert "ASYNC_INDEXING" not in embedded_environment()
    assert async_system.settings.async_indexing

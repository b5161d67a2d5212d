"""A restore streams its file: batches are written while the next lines are read, a bad
line stops it with every batch before it written (and counted in the audit trail), and a
vector that is not a list of numbers is refused naming its line."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from memsys import MemorySystem
from memsys.engine import Engine
from memsys.models import Memory

DIMS = 384


@pytest.fixture
def engine(base_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    system = base_system.with_collection(f"Test_{uuid.uuid4().hex[:12]}")
    engine = Engine(system.settings.replace(data_dir=tmp_path / "data"), system=system)
    yield engine
    engine.job_store.close()
    system.store.delete_all()


def _lines(engine: Engine, n: int) -> list[str]:
    provider = engine.system.router.provider
    rng = np.random.default_rng(11)
    out = []
    for i in range(n):
        m = Memory(content=f"restored memory {i}", project="p", repo="r", agent="a", tags=("t",), chunk_index=i)
        vector = rng.standard_normal(DIMS).astype(np.float32)
        out.append(json.dumps({"id": m.uuid, **m.to_dict(), "created_at": "2025-03-04T05:06:07+00:00",
                               "vector": vector.tolist(), "embedder": provider.fingerprint, "embedder_name": "local"}))
    return out


def test_a_bad_line_stops_the_restore_with_every_batch_before_it_written(engine: Engine) -> None:
    lines = _lines(engine, 25)
    lines.insert(23, '{"content": "no project"}')
    with pytest.raises(ValueError, match=r"line 24: .*'project' is missing"):
        engine.memories.restore(lines, batch=4, actor="ops@example.com")
    # Batches of four up to line 20 were sent before line 24 was read; the three lines after
    # them were still waiting for a batch of their own.
    assert engine.memories.count() == 20
    record = engine.audit.records(action="memories.restored", actor="ops@example.com")[0]
    assert record.details["count"] == 20


def test_a_restore_writes_every_line_and_keeps_each_creation_time(engine: Engine) -> None:
    lines = _lines(engine, 23)
    assert engine.memories.restore(lines, batch=4) == 23
    stored = [m for m, _ in engine.system.store.scan()]
    assert len(stored) == 23
    assert {m.created_at.isoformat() for m in stored if m.created_at} == {"2025-03-04T05:06:07+00:00"}


@pytest.mark.parametrize("vector", [["0.1", "0.2"], [[0.1], [0.2]], [0.1, None], []])
def test_a_vector_that_is_not_a_list_of_numbers_is_refused_naming_its_line(engine: Engine, vector: object) -> None:
    record = json.loads(_lines(engine, 1)[0])
    record["vector"] = vector
    with pytest.raises(ValueError, match=r"line 1: 'vector' must be a list of numbers"):
        engine.memories.restore([json.dumps(record)])
    assert engine.memories.count() == 0

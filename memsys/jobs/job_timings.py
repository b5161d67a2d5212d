"""Where a job's time went, as the job database keeps it: the times a job records outside
its batches (reading the files, Weaviate lookups for many batches at once, waiting for
Weaviate's index at the end), each job's `JobTimings` built with its batches, the speed
recent jobs measured on this machine, and a job's failed items grouped by reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from memsys.jobs.metrics import BatchRecord, JobTimings, MeasuredSpeed
from memsys.jobs.schema import JobTables

_STAGES = ("read_seconds", "lookup_seconds", "index_wait_seconds")


@dataclass(frozen=True)
class FailureGroup:
    """Failed items of one job that share a reason: how many, and the names of the first few."""

    reason: str
    kind: str
    count: int
    items: tuple[str, ...]


class TimingTables(JobTables):
    """Stage times of jobs, and failures grouped by reason."""

    def add_stage_seconds(self, job_id: str, *, read: float = 0.0, lookup: float = 0.0, index_wait: float = 0.0) -> None:
        """Add to a job's time outside its batches (a resumed job adds its new run's)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET read_seconds = read_seconds + ?, lookup_seconds = lookup_seconds + ?,"
                       " index_wait_seconds = index_wait_seconds + ? WHERE id = ?",
                       (max(0.0, read), max(0.0, lookup), max(0.0, index_wait), job_id))

    def _batch_records(self, job_id: str) -> list[BatchRecord]:
        rows = self._rows("SELECT * FROM batches WHERE job_id = ? ORDER BY batch_no", (job_id,))
        return [BatchRecord(**{k: r[k] for k in r.keys()}) for r in rows]

    def timings(self, job_id: str) -> JobTimings | None:
        """Where the job's time went; None for an unknown job."""
        row = self._one(f"SELECT total, started_at, finished_at, {', '.join(_STAGES)} FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            return None
        return JobTimings.build(self._batch_records(job_id), memories=int(row["total"]), started_at=row["started_at"],
                                finished_at=row["finished_at"], read_seconds=float(row["read_seconds"]),
                                lookup_seconds=float(row["lookup_seconds"]),
                                index_wait_seconds=float(row["index_wait_seconds"]))

    def measured_speed(self, jobs: int = 10) -> MeasuredSpeed:
        """The speed of the last `jobs` completed jobs that did something (memsys/jobs/metrics.py)."""
        ids = [r["id"] for r in self._rows(
            "SELECT id FROM jobs WHERE state = 'completed' AND batches_done > 0 ORDER BY created_at DESC LIMIT ?", (jobs,))]
        return MeasuredSpeed.from_jobs(t for t in map(self.timings, ids) if t is not None)

    def failures_by_reason(self, job_id: str, names: int = 5) -> list[FailureGroup]:
        """The job's failed items grouped by reason, most first, each naming its first
        `names` items (the file, and where in it)."""
        groups = self._rows(
            "SELECT reason, error_type, COUNT(*) AS n, MIN(seq) AS first FROM items WHERE job_id = ? AND state = 'failed'"
            " GROUP BY reason, error_type ORDER BY n DESC, first", (job_id,))
        out = []
        for g in groups:
            items = self._rows("SELECT item FROM items WHERE job_id = ? AND state = 'failed' AND reason = ? AND error_type = ?"
                               " ORDER BY seq LIMIT ?", (job_id, g["reason"], g["error_type"], names))
            out.append(FailureGroup(g["reason"], g["error_type"] or "unknown", int(g["n"]), tuple(r["item"] for r in items)))
        return out

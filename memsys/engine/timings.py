"""Where an import's time went: reading, checking what is stored, embedding, writing and
waiting, with the overlap of its concurrent batches; its failed items grouped by reason;
and the speed recent imports measured on this machine."""
from __future__ import annotations

from memsys.access import action
from memsys.engine.calls import VIEWER, Calls
from memsys.jobs.job_timings import FailureGroup
from memsys.jobs.metrics import JobTimings, MeasuredSpeed


class Timings(Calls):
    """Where imports' time went, and why their items failed."""

    @action(VIEWER, "reading a job's metrics")
    def job(self, job_id: str) -> JobTimings | None:
        """The job's time by stage (memsys/jobs/metrics.py: `JobTimings`); None for an unknown job."""
        return self._engine.job_store.timings(job_id)

    @action(VIEWER, "reading a job's metrics")
    def failures(self, job_id: str, names: int = 5) -> list[FailureGroup]:
        """The job's failed items grouped by reason, most first, each naming its first `names` items."""
        return self._engine.job_store.failures_by_reason(job_id, names)

    @action(VIEWER, "reading a job's metrics")
    def speed(self) -> MeasuredSpeed:
        """Memories per second recent completed imports reached here, by stage."""
        return self._engine.job_store.measured_speed()

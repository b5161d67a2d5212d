"""Workers: the `memsys worker` processes that take jobs from the queue, as the CLI and
the dashboard show them (host, pid, the batches each holds, its last heartbeat), and
which worker read each part of a job's files and recorded each of its batches."""
from __future__ import annotations

from dataclasses import dataclass

from memsys.access import action
from memsys.engine.calls import VIEWER, Calls
from memsys.workers.leases import WorkerRow


@dataclass(frozen=True, slots=True)
class WorkersView:
    """What the workers page and `memsys workers` show."""

    enabled: bool  # jobs go to workers (a queue is configured)
    queue: str  # the queue's database, without its password
    lease_seconds: float
    workers: list[WorkerRow]


class Workers(Calls):
    """The worker processes and the batches they did."""

    @action(VIEWER, "seeing the workers")
    def list(self) -> WorkersView:
        engine = self._engine
        settings = engine.worker_settings
        return WorkersView(settings.enabled, settings.queue_name, settings.lease_seconds, engine.worker_leases.workers())

    @action(VIEWER, "seeing the workers")
    def batches(self, job_id: str) -> list[dict[str, object]]:
        """Each batch a worker ran for the job: its number, state, the worker that
        recorded it, its lease token, whether it was taken over and late writes refused."""
        return self._engine.worker_leases.lease_rows(job_id)

    @action(VIEWER, "seeing the workers")
    def reads(self, job_id: str) -> list[dict[str, object]]:
        """Each part of the job's files workers read (read 0 is their merge): its files,
        state, the worker that stored it, its lease token, whether it was taken over, late
        writes refused, pieces and pages read by OCR ([] for a job read in one piece)."""
        return self._engine.worker_leases.read_rows(job_id)

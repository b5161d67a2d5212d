"""What every group of the engine's calls shares: the resources of its engine (`Parts`), the
roles its records name, and the audit of an action that can be refused or fail."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Protocol

from memsys.access import Role
from memsys.api import MemorySystem
from memsys.audit import AuditAction, AuditOutcome, AuditTrail
from memsys.config import Settings
from memsys.engine.coalescer import WriteCoalescer
from memsys.jobs import JobRunner, JobStore
from memsys.jobs.sources import SourceTables
from memsys.jobs.api_tokens import ApiTokenTables
from memsys.logs import default_actor
from memsys.spool import Spool
from memsys.tasks import TaskRunner
from memsys.workers.reads import ReadLeases
from memsys.workers.runner import QueueRunner
from memsys.workers.settings import WorkerSettings


class Parts(Protocol):
    """The resources an engine's groups of calls share (`memsys.engine.core.Engine` has
    them): a group reaches them, never another group."""

    settings: Settings
    system: MemorySystem
    job_store: JobStore
    audit_trail: AuditTrail
    source_store: SourceTables
    spool: Spool
    runner: JobRunner | QueueRunner
    task_runner: TaskRunner
    write_queue: WriteCoalescer
    api_tokens: ApiTokenTables
    worker_settings: WorkerSettings
    worker_leases: ReadLeases


VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN


@contextmanager
def audited(trail: AuditTrail, action: AuditAction, actor: str | None, target: str,
            details: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Record `action` once the block ends: done (with what the block added to the
    details), refused (a ValueError: memsys said no) or failed (any other error)."""
    who = actor or default_actor()
    recorded = dict(details or {})
    try:
        yield recorded
    except ValueError as e:
        trail.record(action, who, target=target, outcome=AuditOutcome.REFUSED, details={**recorded, "reason": str(e)})
        raise
    except Exception as e:
        trail.record(action, who, target=target, outcome=AuditOutcome.FAILED,
                     details={**recorded, "reason": f"{type(e).__name__}: {e}"})
        raise
    trail.record(action, who, target=target, details=recorded)


class Calls:
    """One group of the engine's calls; every public call carries its `@action` record."""

    def __init__(self, engine: Parts) -> None:
        self._engine = engine

"""What every group of the engine's calls shares: its engine, the roles its records name, and
the audit of an action that can be refused or fail."""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from memsys.access import Role
from memsys.audit import AuditAction, AuditOutcome, AuditTrail
from memsys.logs import default_actor

if TYPE_CHECKING:
    from memsys.engine.core import Engine


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

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine

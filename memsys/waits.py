"""Time spent waiting, counted per thread: for the embedding provider's rate budget, and
before a retry. A job's batch reads its thread's total before and after a step, so the
Metrics page can tell waiting apart from working. Standard library only."""
from __future__ import annotations

import threading

_local = threading.local()


def add_wait(seconds: float) -> None:
    """Count `seconds` this thread spent waiting (a sleep before a retry, a rate budget)."""
    if seconds > 0:
        _local.total = getattr(_local, "total", 0.0) + seconds


def waited() -> float:
    """Seconds this thread has spent waiting so far; subtract two readings for a step's share."""
    return float(getattr(_local, "total", 0.0))

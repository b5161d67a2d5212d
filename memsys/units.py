"""Quantities written the way an operator reads them, shared by the CLI and the dashboard."""
from __future__ import annotations

_UNITS = ("bytes", "KB", "MB", "GB", "TB")


def plural(n: int, word: str, words: str | None = None) -> str:
    """plural(1, "memory", "memories") -> "1 memory"; plural(3, "file") -> "3 files"."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def size(n_bytes: int | float | None) -> str:
    """1536 -> "1.5 KB"; 0 -> "0 bytes"."""
    if n_bytes is None:
        return "unknown"
    value = float(n_bytes)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """75 -> "1 min 15 s"; None -> "—" (not known yet)."""
    if seconds is None or seconds != seconds or seconds < 0:  # NaN as well
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


# The words people read for what memsys counts and for a job's state: every page, the CLI
# and the README use these (tests/test_glossary.py checks the pages). A document is cut
# into memories; an import is a job.
COUNTED_UNIT = ("memory", "memories")
JOB_STATES = {
    "queued": "Waiting to start",
    "planning": "Reading files",
    "running": "Importing",
    "cancelling": "Stopping",
    "cancelled": "Cancelled",
    "completed": "Completed",
    "completed_with_failures": "Finished with failures",
    "failed": "Stopped by an error",
    "interrupted": "Interrupted (can be resumed)",
}


def job_state(state: str, failed: int = 0) -> str:
    """A job's state as people read it, from its stored state and its count of failures:
    one mapping for every page and the CLI ("completed" with a failure is "Finished with
    failures" everywhere)."""
    if state == "completed" and failed:
        state = "completed_with_failures"
    return JOB_STATES.get(state, state.replace("_", " ").capitalize())


def documents_title(names: list[str]) -> str:
    """An import's title from its files' names: "a.md", "a.md and b.md", or
    "8 documents: a.md, b.md and 6 more" (never every name)."""
    if len(names) <= 2:
        return " and ".join(names)
    return f"{len(names):,} documents: {names[0]}, {names[1]} and {len(names) - 2:,} more"

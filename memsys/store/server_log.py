"""Embedded Weaviate's own log, read for what an operator has to know: the server failing
to start or dying, disk or memory pressure that turns shards read-only, and other errors.
Weaviate writes JSON lines (`level`, `msg`, `time`); the memsys supervisor that runs it
adds plain lines ("<time> memsys-supervisor: <message>"). Only the end of the file is
read, so a long-lived log costs nothing; messages are scrubbed of secrets.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from memsys.logs import scrub_text

TAIL_BYTES = 1 << 20  # the newest MiB of the log: far more than the problems shown
_SUPERVISOR = " memsys-supervisor: "
# What each kind of problem means for the operator, in plain words.
KINDS = {
    "disk_pressure": "Weaviate is short of disk space: it stops taking writes (shards set read-only) until space is freed",
    "memory_pressure": "Weaviate is short of memory: it stops taking writes until memory is freed",
    "failed_start": "Weaviate failed to start or stopped unexpectedly",
    "error": "Weaviate reported an error",
}
# Logged at level error by every healthy 1.35 server when a collection is created with no
# DEFAULT_QUANTIZATION set ("invalid default quantization for hnsw index: "): not a problem.
_ORDINARY_ERRORS = ("error while setting default quantization: invalid default quantization for hnsw index:",)
_FAILED_START = ("did not start", "did not become ready", "kept dying", "giving up", "while starting", "exited with code")


@dataclass(frozen=True)
class WeaviateProblem:
    """One line of Weaviate's log that matters, classified."""

    time: dt.datetime | None
    kind: str  # a key of KINDS
    message: str

    @property
    def meaning(self) -> str:
        return KINDS[self.kind]


def _classify(level: str, message: str, supervisor: bool) -> str | None:
    text = message.lower()
    if "failed to read disk usage" in text:
        return "error"  # Weaviate could not measure the disk: no pressure known
    # Weaviate 1.35's words (adapters/repos/db/resource_use.go): "disk usage currently at
    # N%, threshold set to M%" past DISK_USE_WARNING_PERCENTAGE, "Set READONLY, disk usage
    # currently at ..." past DISK_USE_READONLY_PERCENTAGE; the same with "memory usage".
    if "disk usage" in text or "no space left" in text:
        return "disk_pressure"
    if "memory usage" in text:
        return "memory_pressure"
    if supervisor:
        # "exited with code 0" after a stop request is a clean stop, not a problem.
        if any(marker in text for marker in _FAILED_START) and "exited with code 0" not in text:
            return "failed_start"
        return None
    if level in ("fatal", "panic"):
        return "failed_start"
    if text.strip() in _ORDINARY_ERRORS:
        return None
    return "error" if level == "error" else None


def _parse(raw: str) -> WeaviateProblem | None:
    raw = raw.strip()
    if not raw:
        return None
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        level, message = str(data.get("level", "")).lower(), str(data.get("msg", ""))
        if data.get("error"):
            message = f"{message}: {data['error']}"
        when = _time(str(data.get("time", "")))
        kind = _classify(level, message, supervisor=False)
    elif _SUPERVISOR in raw:
        stamp, _, message = raw.partition(_SUPERVISOR)
        when = _time(stamp)
        kind = _classify("", message, supervisor=True)
    else:
        # Go's own output (a panic's stack) is not JSON: only its first line is worth showing.
        if not raw.startswith("panic:"):
            return None
        when, message, kind = None, raw, "failed_start"
    return WeaviateProblem(when, kind, scrub_text(message)) if kind else None


def _time(text: str) -> dt.datetime | None:
    for parse in (dt.datetime.fromisoformat, lambda t: dt.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z")):
        try:
            return parse(text.strip())
        except ValueError:
            continue
    return None


def _tail(path: Path, size: int) -> bytes:
    """The last `size` bytes of a file, from a line start; b"" when it is not there."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, 2)
            f.seek(max(0, end - size))
            data = f.read()
    except FileNotFoundError:
        return b""
    if end > size:
        data = data.partition(b"\n")[2]  # the first line may start mid-way
    return data


def weaviate_problems(path: Path, *, since: dt.datetime | None = None, limit: int = 20) -> list[WeaviateProblem]:
    """The newest `limit` problems in Weaviate's log at `path` (oldest first), from
    `since` on when given; [] when there is no log yet. A log rotated a moment ago is
    read together with its previous file (`<path>.1`), up to TAIL_BYTES in all."""
    data = _tail(path, TAIL_BYTES)
    if len(data) < TAIL_BYTES:
        data = _tail(path.with_name(path.name + ".1"), TAIL_BYTES - len(data)) + data
    if since is not None and not since.tzinfo:
        since = since.astimezone()
    found = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        problem = _parse(raw)
        if problem is None:
            continue
        if since is not None and problem.time is not None and problem.time < since:
            continue
        found.append(problem)
    return found[-limit:]

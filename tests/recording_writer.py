"""A writer for the scenario tests: a plain callable with the signature of
`memsys.write_memories_batch` that keeps what it was given and can be told to fail."""
from __future__ import annotations

from typing import Any

from memsys.models import Memory


class RecordingWriter:
    """Keeps every batch it is given and returns the memories' deterministic UUIDs; the
    calls numbered in `failing_calls` (1 = the first) raise `error` instead, as a store
    that is down would."""

    def __init__(self, failing_calls: tuple[int, ...] = (), error: Exception | None = None) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.calls = 0
        self.failing_calls = set(failing_calls)
        self.error = error or ConnectionError("Weaviate is not reachable")

    def __call__(self, records: list[dict[str, Any]]) -> list[str]:
        self.calls += 1
        if self.calls in self.failing_calls:
            raise self.error
        self.batches.append(list(records))
        return [Memory.from_dict(r).uuid for r in records]

    @property
    def contents(self) -> list[str]:
        return [r["content"] for batch in self.batches for r in batch]

"""How a job's pending items are cut into batches: each batch as large as the batch
settings allow for its longest text, under a cap that halves while the process uses too
much memory (`AdaptiveBatchSizer`) and under the provider's per-request limit.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

import psutil

from memsys.config import BatchConfig
from memsys.jobs.records import PendingItem


class AdaptiveBatchSizer:
    """The batch cap follows the process's resident memory: halved (not below
    `min_batch_size`) while it is over `memory_limit_mb`, grown by 10 (up to
    `max_batch_size`) while it is under half of it."""

    def __init__(self, config: BatchConfig, rss: Callable[[], int] | None = None) -> None:
        self.config = config
        self.cap = config.max_batch_size
        process = psutil.Process()
        self._rss = rss or (lambda: process.memory_info().rss)

    def observe(self) -> int:
        mb = self._rss() / 2**20
        limit = self.config.memory_limit_mb
        if mb > limit:
            self.cap = max(self.config.min_batch_size, self.cap // 2)
        elif mb < limit * 0.5:
            self.cap = min(self.config.max_batch_size, self.cap + 10)
        return self.cap


def plan_batches(items: Iterable[PendingItem], config: BatchConfig, cap: Callable[[], int], max_inputs: int) -> Iterator[list[PendingItem]]:
    """Group items into batches: a batch is as large as the batch settings' size for its
    longest text (`BatchConfig.get_batch_size_for_text`) allows, never over the adaptive cap (read once per batch) or the provider's
    per-request limit."""
    batch: list[PendingItem] = []
    limit = 0
    ceiling = min(cap(), max_inputs)
    for item in items:
        size = min(config.get_batch_size_for_text(item.memory["content"]), ceiling)
        new_limit = min(limit, size) if batch else size
        if batch and len(batch) + 1 > new_limit:
            yield batch
            ceiling = min(cap(), max_inputs)
            batch, new_limit = [], min(config.get_batch_size_for_text(item.memory["content"]), ceiling)
        batch.append(item)
        limit = new_limit
    if batch:
        yield batch


def plan_sizes(texts: Sequence[str], config: BatchConfig, max_inputs: int) -> list[int]:
    """The batch sizes an import of `texts` would use (for previews)."""
    items = (PendingItem(i, "", {"content": t}, "") for i, t in enumerate(texts))
    return [len(b) for b in plan_batches(items, config, lambda: config.max_batch_size, max_inputs)]


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`items` in lists of `size` (the last one shorter), read as they are needed."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

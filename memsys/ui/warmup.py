"""Cache warm-up in steps, so the page can show how far it has got."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from memsys.embeddings.router import EmbeddingRouter

STEP = 64  # texts per call: one local-model request, a couple of seconds of work


@dataclass(frozen=True)
class WarmupOutcome:
    texts: int
    already_cached: int
    embedded: int


def warm_up(router: EmbeddingRouter, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> WarmupOutcome:
    """Embed and cache `texts` (the router's warm-up) a step at a time."""
    cached = embedded = 0
    for start in range(0, len(texts), STEP):
        result = router.warmup(texts[start:start + STEP])
        cached += result.cache_hits
        embedded += result.embedded
        if progress is not None:
            progress(min(start + STEP, len(texts)), len(texts))
    return WarmupOutcome(len(texts), cached, embedded)

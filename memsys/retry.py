"""Retries with exponential backoff and jitter, honouring a server's Retry-After.
Only errors that say they are retryable are tried again; the rest raise at once.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if retry_after is not None and retry_after >= 0:
            # The server said how long; wait that long (bounded) plus a little jitter
            # so that parallel workers do not come back in the same instant.
            return min(retry_after, self.max_delay) + random.uniform(0, min(0.1, self.base_delay))
        backoff = self.base_delay * (2**attempt)
        return min(self.max_delay, backoff + random.uniform(0, self.base_delay))

    def run(
        self,
        fn: Callable[[], T],
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None] = lambda e: None,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - classified just below, re-raised if not retryable
                if attempt >= self.max_retries or not is_retryable(e):
                    raise
                wait = self.delay(attempt, retry_after(e))
                if on_retry is not None:
                    on_retry(e, attempt + 1, wait)
                sleep(wait)
                attempt += 1

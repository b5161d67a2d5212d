"""Retries with exponential backoff and jitter, honouring a server's Retry-After.
Only errors that say they are retryable are tried again; the rest raise at once.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from memsys.logs import event, get_logger
from memsys.waits import add_wait

T = TypeVar("T")
log = get_logger("retry")


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
        what: str = "a call",
    ) -> T:
        """`fn()`, tried again after each retryable error up to `max_retries` times; each
        retry is logged with what failed, why, and how long it waits. `what` names the call."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - classified just below, re-raised if not retryable
                if attempt >= self.max_retries or not is_retryable(e):
                    raise
                asked = retry_after(e)
                wait = self.delay(attempt, asked)
                log_retry(what, e, attempt + 1, self.max_retries, wait, asked)
                if on_retry is not None:
                    on_retry(e, attempt + 1, wait)
                sleep(wait)
                add_wait(wait)
                attempt += 1


def log_retry(what: str, error: BaseException, attempt: int, max_retries: int, wait: float,
              retry_after: float | None = None) -> None:
    """One line per retry: what is retried, the error, the attempt and the wait."""
    asked = f" (the server asked for {retry_after:g} s)" if retry_after is not None else ""
    log.warning("retrying %s in %.2f s%s, retry %d of %d, after %s: %s", what, wait, asked, attempt, max_retries,
                type(error).__name__, error,
                extra=event("retry", what=what, attempt=attempt, max_retries=max_retries, wait_seconds=round(wait, 3),
                            retry_after=retry_after, error=type(error).__name__, reason=str(error)))

"""Rate-limit budgets: how many requests and tokens per minute a provider takes, configured
or learned from its `x-ratelimit-*` headers. A request waits until the budget has room for
it (tokens counted before sending), so sending stays at the limit without crossing it; a
429 empties the budget and pauses sending for the Retry-After the server asked (and, when
the provider sends no headers to learn from, slows the configured rate down for a while).
Until the first answer says whether there is a limit, one request is sent at a time.
Thread-safe: every embedding thread of a process shares one budget per provider.
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping

from memsys.waits import add_wait

# How OpenAI (and servers copying it) spell durations in x-ratelimit-reset-*: "1s", "6m0s", "20ms".
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# After a 429 the rate is cut to this share, and grows back by `_RECOVERY` per good answer.
_SHRINK = 0.8
_FLOOR = 0.25
_RECOVERY = 0.02


def parse_duration(raw: str | None) -> float | None:
    """Seconds in "1s", "6m0s", "250ms" or a bare number; None if unreadable."""
    if not raw:
        return None
    raw = raw.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def rate_limit_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The x-ratelimit-* headers of a response (nothing else: no header that could hold a secret)."""
    if not headers:
        return {}
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


class _Bucket:
    """One limit as a token bucket: up to `capacity` units, refilled at limit/60 per second,
    the way OpenAI's limits behave. Call with the budget's lock held."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.per_minute = per_minute
        self.capacity = per_minute
        self.level = per_minute
        self.updated = now

    def refill(self, now: float, factor: float) -> None:
        rate = self.per_minute * factor / 60.0
        self.level = min(self.capacity, self.level + (now - self.updated) * rate)
        self.updated = now

    def wait(self, cost: float, factor: float) -> float:
        """Seconds until `cost` fits (a cost over the capacity waits for a full bucket)."""
        need = min(cost, self.capacity) - self.level
        return 0.0 if need <= 0 else need / (self.per_minute * factor / 60.0)

    def learn(self, limit: float | None, remaining: float | None, reset: float | None, now: float) -> None:
        if limit is not None and limit > 0:
            self.per_minute = limit
            self.capacity = limit
        if remaining is not None:
            if reset is not None and reset > 0 and limit:
                # reset = time until the provider's bucket is full again: its capacity follows.
                self.capacity = max(1.0, min(self.per_minute, remaining + reset * self.per_minute / 60.0))
            # Never above what the provider says is left; our own count may already know of
            # requests it has not seen yet, so keep the lower of the two.
            self.level = min(self.level, remaining)
        self.updated = now


@dataclass(frozen=True)
class BudgetStatus:
    """The budget in use, as progress shows it."""

    requests_per_minute: float | None  # the limit in force; None when none is known
    tokens_per_minute: float | None
    source: str  # "configured", "learned from the provider", "configured and learned", "no limit known"
    requests_last_minute: int
    tokens_last_minute: int
    in_flight: int
    rate_limited: int  # 429 answers so far
    paused_seconds: float  # left of a Retry-After pause
    speed: float  # share of the limit currently allowed (below 1 after a 429)

    def describe(self) -> str:
        parts = []
        if self.tokens_per_minute:
            parts.append(f"{self.tokens_last_minute:,} of {self.tokens_per_minute:,.0f} tokens/min")
        if self.requests_per_minute:
            parts.append(f"{self.requests_last_minute:,} of {self.requests_per_minute:,.0f} requests/min")
        if not parts:
            parts.append(f"{self.tokens_last_minute:,} tokens, {self.requests_last_minute:,} requests in the last minute")
        parts.append(f"{self.in_flight} in flight")
        if self.paused_seconds > 0:
            parts.append(f"paused {self.paused_seconds:.1f}s after a 429")
        return f"{', '.join(parts)} ({self.source})"


class RateBudget:
    """Requests and tokens per minute for one provider; `acquire` before sending, then
    `settle` with the response's headers (or `rate_limited` on a 429)."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        now = clock()
        self._configured = (requests_per_minute or None, tokens_per_minute or None)
        self._learned: tuple[float | None, float | None] = (None, None)
        self._requests = _Bucket(requests_per_minute, now) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, now) if tokens_per_minute else None
        self._factor = 1.0
        self._paused_until = 0.0
        self._in_flight = 0
        self._answered = False  # has any answer told whether the provider limits us?
        self._rate_limited = 0
        self._sent: deque[tuple[float, int]] = deque()  # (when, tokens) of the last minute

    def configure(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        """Set the configured limits (None or 0: none); learned limits still apply below them."""
        with self._cond:
            self._configured = (requests_per_minute or None, tokens_per_minute or None)
            now = self._clock()
            self._requests = self._limit(self._requests, 0, now)
            self._tokens = self._limit(self._tokens, 1, now)
            self._cond.notify_all()

    def _limit(self, bucket: _Bucket | None, which: int, now: float) -> _Bucket | None:
        values = [v for v in (self._configured[which], self._learned[which]) if v]
        if not values:
            return None
        limit = min(values)
        if bucket is None:
            return _Bucket(limit, now)
        bucket.refill(now, self._factor)
        bucket.per_minute = limit
        bucket.capacity = min(bucket.capacity, limit) if self._learned[which] else limit
        bucket.level = min(bucket.level, bucket.capacity)
        return bucket

    def acquire(self, tokens: int) -> None:
        """Wait until a request of `tokens` tokens fits the budget, then count it as sent."""
        with self._cond:
            entered = self._clock()
            while True:
                now = self._clock()
                wait = self._paused_until - now
                for bucket, cost in ((self._requests, 1), (self._tokens, tokens)):
                    if bucket is not None:
                        bucket.refill(now, self._factor)
                        wait = max(wait, bucket.wait(cost, self._factor))
                if self._requests is None and self._tokens is None and not self._answered and self._in_flight:
                    wait = max(wait, 1.0)  # slow start: the first answer's headers may name a limit
                if wait <= 0:
                    add_wait(now - entered)  # the batch's "waiting for the provider"
                    break
                # Woken early when a header or a new configuration changes the picture.
                self._cond.wait(min(wait, 1.0))
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= tokens
            self._in_flight += 1
            self._sent.append((now, tokens))
            self._forget_old(now)

    def settle(self, headers: Mapping[str, str] | None, failed: bool = False) -> None:
        """A request acquired earlier has its answer; learn from its rate-limit headers."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._answered = True
            self._learn(rate_limit_headers(headers))
            if not failed:
                self._factor = min(1.0, self._factor + _RECOVERY)
            self._cond.notify_all()

    def rate_limited(self, retry_after: float | None, headers: Mapping[str, str] | None) -> None:
        """A request got a 429: empty the budget, slow down, pause for Retry-After."""
        with self._cond:
            now = self._clock()
            self._in_flight = max(0, self._in_flight - 1)
            self._answered = True
            self._rate_limited += 1
            learned = rate_limit_headers(headers)
            if not (learned or any(self._learned)):
                # Nothing to learn the real limit from: the configured one is too high.
                self._factor = max(_FLOOR, self._factor * _SHRINK)
            self._learn(learned)
            for bucket in (self._requests, self._tokens):
                if bucket is not None:
                    bucket.refill(now, self._factor)
                    bucket.level = min(bucket.level, 0.0)
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + retry_after)
            self._cond.notify_all()

    def _learn(self, h: dict[str, str]) -> None:
        if not h:
            return
        now = self._clock()
        learned = list(self._learned)
        for which, name in ((0, "requests"), (1, "tokens")):
            limit = _number(h.get(f"x-ratelimit-limit-{name}"))
            remaining = _number(h.get(f"x-ratelimit-remaining-{name}"))
            reset = parse_duration(h.get(f"x-ratelimit-reset-{name}"))
            if limit is None and remaining is None:
                continue
            if limit is not None:
                learned[which] = limit
            self._learned = (learned[0], learned[1])
            bucket = self._limit(self._requests if which == 0 else self._tokens, which, now)
            if bucket is not None:
                configured = self._configured[which]
                # A configured limit below the provider's stays in force: learn only the level.
                bucket.learn(None if configured and limit and configured < limit else limit, remaining, reset, now)
            if which == 0:
                self._requests = bucket
            else:
                self._tokens = bucket

    def _forget_old(self, now: float) -> None:
        while self._sent and self._sent[0][0] < now - 60.0:
            self._sent.popleft()

    @property
    def limits(self) -> tuple[float | None, float | None]:
        """(requests, tokens) per minute in force."""
        with self._cond:
            return (self._requests.per_minute if self._requests else None,
                    self._tokens.per_minute if self._tokens else None)

    def status(self) -> BudgetStatus:
        with self._cond:
            now = self._clock()
            self._forget_old(now)
            configured = any(self._configured)
            learned = any(self._learned)
            source = ("configured and learned" if configured and learned else "configured" if configured
                      else "learned from the provider" if learned else "no limit known")
            return BudgetStatus(
                requests_per_minute=self._requests.per_minute if self._requests else None,
                tokens_per_minute=self._tokens.per_minute if self._tokens else None,
                source=source,
                requests_last_minute=len(self._sent),
                tokens_last_minute=sum(t for _, t in self._sent),
                in_flight=self._in_flight,
                rate_limited=self._rate_limited,
                paused_seconds=max(0.0, self._paused_until - now),
                speed=self._factor,
            )


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None

"""What every benchmark reports: a measured figure beside its target from TARGETS.md.
Figures are ratios measured within one run, so a noisy shared machine skews both sides."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    target_id: str  # "P1", "R4", ... from TARGETS.md
    name: str
    measured: float
    unit: str  # "x", "vectors/s", "s", ...
    target: str  # as TARGETS.md states it, e.g. ">= 30x"
    ok: bool
    detail: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "MISS"
        value = f"{self.measured:,.2f}{self.unit}" if self.unit == "x" else f"{self.measured:,.1f} {self.unit}"
        return f"{mark} {self.target_id:<4} {self.name:<58} {value:>16}   target {self.target:<14} {self.detail}"


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start

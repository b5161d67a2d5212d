"""A job's figures: `BatchRecord`, one batch as the job database keeps it so charts can
read any past job, and `BatchMetrics`, a job's totals rebuilt from those records (the
report `memsys jobs show` and `engine.jobs.metrics(job_id).print_summary()` print).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class BatchRecord:
    """One batch of one job: its size, timings, cache use and outcome."""

    job_id: str
    batch_no: int
    size: int
    embed_seconds: float
    write_seconds: float
    seconds: float
    cache_hits: int
    cache_misses: int
    written: int
    unchanged: int
    failed: int
    retries: int
    started_at: float
    finished_at: float
    error_type: str = ""
    updated: int = 0  # same content, new metadata: rewritten without embedding


class BatchMetrics:
    """A run's batch totals: items, successes, failures, cache use, timings and errors by
    kind. Its method names and (Chinese) summary keys are part of memsys's Python API
    (README, "Python API"): scripts that read the report depend on them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start_time = time.time()
        self.batch_count = 0
        self.total_items = 0
        self.successful_items = 0
        self.failed_items = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.processing_times: list[float] = []
        self.error_counts: defaultdict[str, int] = defaultdict(int)
        self._end_time: float | None = None

    def record_batch(self, batch_size: int, processing_time: float, success: bool, cache_hit_count: int = 0) -> None:
        """Record one batch as a whole: a failed batch counts all its items as failed
        (`record_items` records a batch whose items partly failed)."""
        self.batch_count += 1
        self.total_items += batch_size
        self.processing_times.append(processing_time)
        if success:
            self.successful_items += batch_size
        else:
            self.failed_items += batch_size
        self.cache_hits += cache_hit_count
        self.cache_misses += batch_size - cache_hit_count

    def record_items(self, succeeded: int, failed: int, processing_time: float, cache_hit_count: int, cache_miss_count: int) -> None:
        """Record one batch whose items partly failed: exact counts instead of all-or-nothing,
        and cache lookups as they happened (unchanged items need no lookup at all)."""
        self.batch_count += 1
        self.total_items += succeeded + failed
        self.successful_items += succeeded
        self.failed_items += failed
        self.processing_times.append(processing_time)
        self.cache_hits += cache_hit_count
        self.cache_misses += cache_miss_count

    def record_error(self, error_type: str) -> None:
        self.error_counts[error_type] += 1

    @property
    def elapsed(self) -> float:
        return (self._end_time or time.time()) - self.start_time

    @property
    def cache_hit_rate(self) -> float:
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else 0.0

    @property
    def items_per_second(self) -> float:
        return self.total_items / self.elapsed if self.elapsed > 0 else 0.0

    def get_summary(self) -> dict[str, Any]:
        """The run's figures under the summary's published (Chinese) keys."""
        total_time = self.elapsed
        avg = sum(self.processing_times) / len(self.processing_times) if self.processing_times else 0
        return {
            "总处理时间": f"{total_time:.2f}s",
            "平均批次处理时间": f"{avg:.2f}s",
            "总批次数": self.batch_count,
            "总项目数": self.total_items,
            "成功项目数": self.successful_items,
            "失败项目数": self.failed_items,
            "成功率": f"{self.successful_items / self.total_items * 100:.1f}%" if self.total_items > 0 else "0%",
            "缓存命中数": self.cache_hits,
            "缓存未命中数": self.cache_misses,
            "缓存命中率": f"{self.cache_hit_rate * 100:.1f}%" if (self.cache_hits + self.cache_misses) > 0 else "0%",
            "处理速度": f"{self.items_per_second:.1f} items/s" if total_time > 0 else "0 items/s",
            "错误统计": dict(self.error_counts),
        }

    def print_summary(self) -> None:
        summary = self.get_summary()
        print("\n📊 批量处理度量报告")
        print("=" * 50)
        for key, value in summary.items():
            if key == "错误统计":
                print(f"{key}:")
                for error_type, count in value.items():
                    print(f"  - {error_type}: {count}")
            else:
                print(f"{key}: {value}")

    @classmethod
    def from_batches(cls, batches: Iterable[BatchRecord], errors: dict[str, int] | None = None) -> "BatchMetrics":
        """Rebuild a job's metrics from its stored batches."""
        metrics = cls()
        first: float | None = None
        last: float | None = None
        for b in batches:
            metrics.record_items(b.written + b.unchanged, b.failed, b.seconds, b.cache_hits, b.cache_misses)
            first = b.started_at if first is None else min(first, b.started_at)
            last = b.finished_at if last is None else max(last, b.finished_at)
        if first is not None and last is not None:
            metrics.start_time, metrics._end_time = first, last
        for kind, n in (errors or {}).items():
            metrics.error_counts[kind] += n
        return metrics

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
    # Within `embed_seconds`: asking Weaviate what it holds, and the time in the embedder
    # (cache included), of which `provider_wait_seconds` went waiting for the provider's
    # rate budget or before a retry. Within `write_seconds`: `store_wait_seconds` before
    # Weaviate retries. Zero in batches recorded before these were measured.
    lookup_seconds: float = 0.0
    embedder_seconds: float = 0.0
    provider_wait_seconds: float = 0.0
    store_wait_seconds: float = 0.0
    tokens: int = 0  # sent to the provider (0 where the provider does not count them)


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


@dataclass(frozen=True)
class JobTimings:
    """Where one job's time went, stage by stage, from its stored batches and the times
    the job recorded outside them. Batches run concurrently (one is embedded while another
    is written), so `batch_seconds` (their times added up) is usually more than
    `batch_wall_seconds` (first batch start to last batch end): the stages overlap."""

    wall_seconds: float  # the job, start to end (or to now while it runs)
    read_seconds: float  # reading the files: opening, OCR, chunking (planning the job)
    lookup_seconds: float  # asking Weaviate what it already holds
    embedding_seconds: float  # in the embedder, cache included, waits left out
    writing_seconds: float  # writing to Weaviate, waits left out
    provider_wait_seconds: float  # for the provider's rate budget and before its retries
    store_wait_seconds: float  # before Weaviate retries, and for its index after the last write
    batch_seconds: float  # every batch's own time, added up
    batch_wall_seconds: float  # from the first batch's start to the last one's end
    memories: int  # the job's memories (items)
    embedded: int  # texts sent to the provider
    from_cache: int  # texts found in the embedding cache
    written: int  # memories written or rewritten
    unchanged: int  # already stored exactly so: nothing to do
    batches: int
    tokens: int

    @property
    def waiting_seconds(self) -> float:
        return self.provider_wait_seconds + self.store_wait_seconds

    @property
    def nothing_to_do(self) -> bool:
        """Nothing was embedded, taken from the cache or written: every memory was stored already."""
        return self.embedded == 0 and self.from_cache == 0 and self.written == 0

    @property
    def overlaps(self) -> bool:
        """Batches ran at the same time (their added-up time exceeds the time they took together)."""
        return self.batch_seconds > self.batch_wall_seconds * 1.05 and self.batches > 1

    @staticmethod
    def rate(memories: int, seconds: float) -> float | None:
        """Memories per second, or None when too little happened to say (under 10 ms)."""
        return memories / seconds if memories and seconds >= 0.01 else None

    @classmethod
    def build(cls, batches: Iterable[BatchRecord], *, memories: int, started_at: float | None,
              finished_at: float | None, read_seconds: float = 0.0, lookup_seconds: float = 0.0,
              index_wait_seconds: float = 0.0) -> "JobTimings":
        """A job's timings from its batches and its own recorded times (`lookup_seconds`:
        Weaviate lookups made for many batches at once)."""
        batches = list(batches)
        embedding = writing = provider_wait = store_wait = batch_seconds = 0.0
        for b in batches:
            lookup_seconds += b.lookup_seconds
            if b.embedder_seconds:
                embedding += max(0.0, b.embedder_seconds - b.provider_wait_seconds)
            elif b.cache_misses or b.cache_hits:
                # A batch recorded before the stages were measured: its preparation was embedding.
                embedding += b.embed_seconds
            writing += max(0.0, b.write_seconds - b.store_wait_seconds)
            provider_wait += b.provider_wait_seconds
            store_wait += b.store_wait_seconds
            batch_seconds += b.seconds
        first = min((b.started_at for b in batches), default=None)
        last = max((b.finished_at for b in batches), default=None)
        end = finished_at or time.time()
        return cls(
            wall_seconds=max(0.0, end - started_at) if started_at else 0.0,
            read_seconds=read_seconds, lookup_seconds=lookup_seconds, embedding_seconds=embedding,
            writing_seconds=writing, provider_wait_seconds=provider_wait,
            store_wait_seconds=store_wait + index_wait_seconds,
            batch_seconds=batch_seconds,
            batch_wall_seconds=(last - first) if first is not None and last is not None else 0.0,
            memories=memories,
            embedded=sum(b.cache_misses for b in batches),
            from_cache=sum(b.cache_hits for b in batches),
            written=sum(b.written + b.updated for b in batches),
            unchanged=sum(b.unchanged for b in batches),
            batches=len(batches),
            tokens=sum(b.tokens for b in batches),
        )


@dataclass(frozen=True)
class MeasuredSpeed:
    """How fast this machine went in recent jobs, in memories per second, for estimating
    the next one: embedding (an import's batches while it embeds, writing included, as
    they overlap), writing alone, and checking what Weaviate holds. None: not measured yet."""

    embedding: float | None
    writing: float | None
    checking: float | None
    jobs: int  # how many jobs the figures come from

    @classmethod
    def from_jobs(cls, timings: Iterable[JobTimings]) -> "MeasuredSpeed":
        embedded = embed_seconds = written = write_seconds = checked = check_seconds = 0.0
        used = 0
        for t in timings:
            counted = False
            if t.embedded and t.batch_wall_seconds > 0:
                embedded += t.embedded
                embed_seconds += t.batch_wall_seconds
                counted = True
            if t.written and t.writing_seconds > 0:
                written += t.written
                write_seconds += t.writing_seconds
                counted = True
            if t.memories and t.lookup_seconds > 0:
                checked += t.memories
                check_seconds += t.lookup_seconds
                counted = True
            used += counted
        return cls(
            embedding=embedded / embed_seconds if embed_seconds else None,
            writing=written / write_seconds if write_seconds else None,
            checking=checked / check_seconds if check_seconds else None,
            jobs=used,
        )

    def estimate(self, *, read_seconds: float, to_embed: int, to_write: int, to_check: int) -> float | None:
        """Seconds an import would take: reading as measured, then embedding `to_embed`
        texts, writing `to_write` memories that need no embedding, checking `to_check`
        memories against the store. None when a figure it needs was never measured."""
        seconds = read_seconds
        for count, rate in ((to_embed, self.embedding), (to_write, self.writing), (to_check, self.checking)):
            if count:
                if rate is None:
                    return None
                seconds += count / rate
        return seconds

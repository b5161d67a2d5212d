"""BatchConfig, batch planning, adaptive sizing, retries and BatchMetrics: the seed's
configuration and metrics, as plain objects."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from memsys.config import BatchConfig, ConfigError
from memsys.jobs import PendingItem
from memsys.jobs.metrics import BatchMetrics
from memsys.jobs.batching import AdaptiveBatchSizer, plan_batches
from memsys.retry import RetryPolicy


def test_defaults_are_the_seeds() -> None:
    c = BatchConfig()
    assert c.default_batch_size == 50 and c.max_retries == 3 and c.base_retry_delay == 1.0
    assert c.text_type_batch_sizes == {"short": 60, "medium": 40, "long": 25, "very_long": 15}
    assert c.enable_cache and c.continue_on_error and c.cache_dir == ".cache/embeddings"


@pytest.mark.parametrize(("length", "size"), [(0, 60), (99, 60), (100, 40), (499, 40), (500, 25), (1999, 25), (2000, 15), (9000, 15)])
def test_batch_size_follows_the_seeds_length_buckets(length: int, size: int) -> None:
    assert BatchConfig().get_batch_size_for_text("x" * length) == size


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"default_batch_size": 0}, "default_batch_size is 0; it must be a whole number of at least 1"),
        ({"base_retry_delay": -1.0}, "base_retry_delay is -1.0; it must be a number of seconds, 0 or more"),
        ({"text_type_batch_sizes": {"short": 0, "medium": 40, "long": 25, "very_long": 15}}, "text_type_batch_sizes.short is 0"),
        ({"text_type_batch_sizes": {"short": 60}}, "text_type_batch_sizes is missing medium, long, very_long"),
        ({"min_batch_size": 50, "max_batch_size": 10}, "min_batch_size (50) is larger than max_batch_size (10)"),
        ({"continue_on_error": "yes"}, "continue_on_error is 'yes'; it must be true or false"),
        ({"write_workers": 0}, "write_workers is 0"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        BatchConfig(**changes)  # type: ignore[arg-type]


def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"default_batch_size": 10, "batchsize": 5}))
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        BatchConfig.from_file(path)


def test_invalid_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text('{\n  "max_retries": 3,\n}')
    with pytest.raises(ConfigError, match=r"batch.json is not valid JSON: .* at line 3"):
        BatchConfig.from_file(path)


def test_to_file_and_from_file_round_trip(tmp_path: Path) -> None:
    original = BatchConfig(max_retries=5, text_type_batch_sizes={"short": 50, "medium": 30, "long": 20, "very_long": 10}, memory_limit_mb=512)
    path = tmp_path / "sub" / "batch.json"
    original.to_file(path)
    assert BatchConfig.from_file(path) == original


def item(seq: int, length: int) -> PendingItem:
    return PendingItem(seq, f"u{seq}", {"content": "x" * length}, f"item {seq}")


def test_batches_are_sized_by_their_longest_text() -> None:
    config = BatchConfig()
    items = [item(i, 50) for i in range(130)] + [item(200 + i, 600) for i in range(30)]
    sizes = [len(b) for b in plan_batches(items, config, lambda: 1000, max_inputs=2048)]
    # The third batch mixes the last 10 short texts with 15 long ones: 25, the long size.
    assert sizes == [60, 60, 25, 15]


def test_batches_never_exceed_the_providers_request_limit() -> None:
    sizes = [len(b) for b in plan_batches([item(i, 10) for i in range(100)], BatchConfig(), lambda: 1000, max_inputs=16)]
    assert max(sizes) == 16 and sum(sizes) == 100


def test_adaptive_sizer_halves_over_the_memory_limit_and_grows_back() -> None:
    readings = iter([3000, 3000, 100, 100])
    sizer = AdaptiveBatchSizer(BatchConfig(memory_limit_mb=1000, max_batch_size=200, min_batch_size=10), rss=lambda: next(readings) * 2**20)
    assert [sizer.observe() for _ in range(4)] == [100, 50, 60, 70]


def test_adaptive_sizer_never_goes_below_the_minimum() -> None:
    sizer = AdaptiveBatchSizer(BatchConfig(memory_limit_mb=64, max_batch_size=40, min_batch_size=10), rss=lambda: 10**12)
    assert [sizer.observe() for _ in range(4)] == [20, 10, 10, 10]


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=60)
    assert 7.0 <= policy.delay(0, retry_after=7.0) <= 7.1


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(max_retries=10, base_delay=1.0, max_delay=5.0)
    assert policy.delay(0) >= 1.0 and policy.delay(0) <= 2.0
    assert 4.0 <= policy.delay(2) <= 5.0
    assert policy.delay(9) == 5.0


def test_only_retryable_errors_are_retried() -> None:
    calls: list[int] = []
    slept: list[float] = []

    def fails_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "done"

    assert RetryPolicy(3, 0.01).run(fails_twice, is_retryable=lambda e: isinstance(e, TimeoutError), sleep=slept.append) == "done"
    assert len(calls) == 3 and len(slept) == 2

    def permanent() -> str:
        raise KeyError("bad")

    with pytest.raises(KeyError):
        RetryPolicy(3, 0.01).run(permanent, is_retryable=lambda e: isinstance(e, TimeoutError), sleep=slept.append)


def test_batch_metrics_summary_uses_the_seeds_figures() -> None:
    m = BatchMetrics()
    m.record_batch(50, 1.0, True, cache_hit_count=30)
    m.record_batch(50, 3.0, False, cache_hit_count=0)
    m.record_error("RateLimitError")
    s = m.get_summary()
    assert s["总批次数"] == 2 and s["总项目数"] == 100
    assert s["成功项目数"] == 50 and s["失败项目数"] == 50 and s["成功率"] == "50.0%"
    assert s["缓存命中数"] == 30 and s["缓存未命中数"] == 70 and s["缓存命中率"] == "30.0%"
    assert s["平均批次处理时间"] == "2.00s"
    assert s["错误统计"] == {"RateLimitError": 1}


def test_batch_metrics_print_summary_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    m = BatchMetrics()
    m.record_batch(10, 0.5, True, cache_hit_count=10)
    m.record_error("timeout")
    m.print_summary()
    out = capsys.readouterr().out
    assert "缓存命中率: 100.0%" in out and "  - timeout: 1" in out

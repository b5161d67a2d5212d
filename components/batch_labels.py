"""Batch settings as the dashboard edits them: plain labels for the length buckets, their
recommended batch sizes, and loading a configuration someone uploaded."""
from __future__ import annotations

import tempfile
from pathlib import Path, PurePath

from memsys.config import LENGTH_BUCKETS, LENGTH_LIMITS, RECOMMENDED_BATCH_SIZES, BatchConfig, ConfigProblem

BUCKET_LABELS = {"short": "Short memories", "medium": "Medium memories", "long": "Long memories", "very_long": "Very long memories"}


def _bucket_lengths() -> dict[str, str]:
    """"under 100 characters", "100–500 characters", ... from the limits BatchConfig uses."""
    lengths, low = {}, 0
    for bucket in LENGTH_BUCKETS:
        high = LENGTH_LIMITS.get(bucket)
        if high is None:
            lengths[bucket] = f"over {low:,} characters"
        elif low == 0:
            lengths[bucket] = f"under {high:,} characters"
        else:
            lengths[bucket] = f"{low:,}–{high:,} characters"
        low = high or low
    return lengths


BUCKET_LENGTHS = _bucket_lengths()


def recommended(bucket: str) -> str:
    low, high = RECOMMENDED_BATCH_SIZES[bucket]
    return f"recommended {low}–{high}"


def outside_recommended(config: BatchConfig) -> list[str]:
    """A sentence for each length bucket whose batch size is outside its recommended range."""
    sizes = config.text_type_batch_sizes or {}
    notes = []
    for bucket in LENGTH_BUCKETS:
        low, high = RECOMMENDED_BATCH_SIZES[bucket]
        if not low <= sizes[bucket] <= high:
            notes.append(
                f"{BUCKET_LABELS[bucket]} ({BUCKET_LENGTHS[bucket]}): a batch size of {sizes[bucket]} is outside the {recommended(bucket)}."
            )
    return notes


def config_from_upload(name: str, data: bytes) -> BatchConfig:
    """Read an uploaded JSON file exactly as `BatchConfig.from_file` reads one on disk,
    so its messages name the uploaded file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / (PurePath(name).name or "batch_config.json")
        path.write_bytes(data)
        return BatchConfig.from_file(path)


# Each BatchConfig field as the Batch settings page labels it: problems name the field the
# way the person sees it.
FIELD_LABELS = {
    "embed_workers": "Embedding workers", "write_workers": "Writing workers",
    "requests_per_minute": "Requests per minute", "tokens_per_minute": "Tokens per minute",
    "max_retries": "Retries per batch", "base_retry_delay": "First wait (seconds)",
    "max_retry_delay": "Longest wait (seconds)", "default_batch_size": "Records per write (Python API)",
    "min_batch_size": "Smallest batch", "max_batch_size": "Largest batch", "queue_depth": "Batches waiting",
    "memory_limit_mb": "Memory limit (MB)", "gc_frequency": "Free memory every N batches",
    "continue_on_error": "Continue after a failed batch", "enable_cache": "Use the embedding cache",
    "log_errors": "Log failed documents and memories",
    **{f"text_type_batch_sizes.{bucket}": label for bucket, label in BUCKET_LABELS.items()},
}


def labelled(message: str) -> str:
    """"max_retries is -2; ..." -> "“Retries per batch” is -2; ...": a problem with the
    fields named as the form labels them, so the person finds the field they typed in."""
    for name in sorted(FIELD_LABELS, key=len, reverse=True):
        message = message.replace(name, f"“{FIELD_LABELS[name]}”")
    return message[0].upper() + message[1:] if message else message


def labelled_problems(problems: list[ConfigProblem]) -> list[str]:
    return [labelled(p.message) for p in problems]
